import Glibc
import Testing
@testable import AgentCore
import LabProtocol

@Suite struct KmsgParserTests {
    @Test func plainRecord() throws {
        let record = try #require(Kmsg.parseRecord(Array("6,339,5140900,-;NET: Registered protocol family 10\n".utf8)))
        #expect(record == KmsgRecord(sequence: 339, priority: 6, facility: 0, timestampMicroseconds: 5_140_900,
                                     message: "NET: Registered protocol family 10"))
    }

    @Test func escapesAreDecoded() throws {
        let record = try #require(Kmsg.parseRecord(Array("4,340,5690716,-;cma: \\x41bc".utf8)))
        #expect(record.sequence == 340)
        #expect(record.priority == 4)
        #expect(record.message == "cma: Abc")
        let backslash = try #require(Kmsg.parseRecord(Array("6,1,0,-;a\\x5cb \\x7 \\xZZ \\x".utf8)))
        #expect(backslash.message == "a\\b \\x7 \\xZZ \\x")
    }

    @Test func facilityAndExtraFieldsAndContinuationLines() throws {
        let text = "30,1234,99,c,caller=T1;systemd[1]: started\n SUBSYSTEM=acpi\n DEVICE=+acpi:PNP0A03:00\n"
        let record = try #require(Kmsg.parseRecord(Array(text.utf8)))
        #expect(record.facility == 3)
        #expect(record.priority == 6)
        #expect(record.message == "systemd[1]: started")
    }

    @Test(arguments: ["", "no semicolon", "6,1,2;too few fields", "x,1,2,-;bad prio", "6,,2,-;empty seq",
                      "6,1,99999999999999999999999,-;overflow"])
    func malformedRecordsAreRejected(_ text: String) {
        #expect(Kmsg.parseRecord(Array(text.utf8)) == nil)
    }

    @Test func longMessagesAreCappedOnACharacterBoundary() throws {
        // 4095 ASCII bytes then a 2-byte character: the cut falls inside it.
        let body = String(repeating: "a", count: 4095) + "é" + String(repeating: "b", count: 100)
        let record = try #require(Kmsg.parseRecord(Array("6,1,0,-;\(body)".utf8)))
        #expect(record.message == String(repeating: "a", count: 4095))
        let fits = String(repeating: "a", count: 4094) + "é" + "tail"
        #expect(try #require(Kmsg.parseRecord(Array("6,1,0,-;\(fits)".utf8))).message == String(repeating: "a", count: 4094) + "é")
    }

    @Test func invalidUTF8IsRepaired() throws {
        let record = try #require(Kmsg.parseRecord(Array("6,1,0,-;bad \\xff byte".utf8)))
        #expect(record.message == "bad \u{FFFD} byte")
    }
}

/// Reads the host's real /dev/kmsg (needs root or dmesg_restrict=0).
@Suite struct KmsgDeviceTests {
    static var readable: Bool {
        let fd = open("/dev/kmsg", O_RDONLY | O_NONBLOCK)
        if fd >= 0 { close(fd) }
        return fd >= 0
    }

    @Test(.enabled(if: readable, "/dev/kmsg cannot be opened here"))
    func readsRealRecordsAndFilters() throws {
        let fixture = try Fixture()
        var paths = fixture.paths
        paths.kmsg = "/dev/kmsg"
        let agent = try AgentConnection(paths: paths)
        guard case let .kmsg(batch) = try agent.request(.kmsg(afterSequence: nil, maxRecords: 50)) else {
            Issue.record("not a kmsg batch"); return
        }
        try #require(batch.records.count >= 2)
        #expect(batch.records.count <= 50)
        let sequences = batch.records.map(\.sequence)
        #expect(zip(sequences, sequences.dropFirst()).allSatisfy { $0 < $1 })
        #expect(batch.nextSequence == sequences.last! + 1)
        #expect(batch.records.allSatisfy { $0.priority <= 7 })

        let cursor = sequences[sequences.count / 2]
        guard case let .kmsg(later) = try agent.request(.kmsg(afterSequence: cursor, maxRecords: 10)) else {
            Issue.record("not a kmsg batch"); return
        }
        #expect(!later.records.isEmpty)
        #expect(later.records.allSatisfy { $0.sequence > cursor })
        #expect(later.records.first?.sequence == cursor + 1 || later.missedRecords > 0)

        guard case let .kmsg(none) = try agent.request(.kmsg(afterSequence: cursor, maxRecords: 0)) else {
            Issue.record("not a kmsg batch"); return
        }
        #expect(none.records.isEmpty && none.nextSequence == cursor + 1)
    }

    @Test func missingDeviceIsENOENT() throws {
        let fixture = try Fixture()
        let agent = try AgentConnection(paths: fixture.paths)
        #expect(try agent.request(.kmsg(afterSequence: nil, maxRecords: 1)).failureErrno == ENOENT)
    }
}
