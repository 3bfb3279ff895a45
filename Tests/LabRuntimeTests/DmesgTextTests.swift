import Testing
import LabProtocol
@testable import LabRuntime

/// dmesg.txt: /dev/kmsg records rendered once, as `dmesg` prints them.
@Suite struct DmesgTextTests {
    @Test func recordsRenderAsDmesgLines() {
        let records = [
            KmsgRecord(sequence: 0, priority: 5, facility: 0, timestampMicroseconds: 0, message: "Linux version 6.12.117"),
            KmsgRecord(sequence: 1, priority: 6, facility: 0, timestampMicroseconds: 1_234_567, message: "cma: Reserved 64 MiB at 0x000000007b400000"),
        ]
        #expect(ProfileRunner.dmesgText(records) == "[    0.000000] Linux version 6.12.117\n[    1.234567] cma: Reserved 64 MiB at 0x000000007b400000\n")
        #expect(ProfileRunner.dmesgText([]) == "\n")
    }
}
