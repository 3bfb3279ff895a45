import Foundation
import Testing
import LabCore
@testable import LabRuntime

extension Integration {
/// `cmalab replay` on host logs made here: cmalab's own guests booted with different shapes (a plain 4 GiB pc, a
/// hole punched with memmap= below and above 4 GiB, an 8 GiB and a 64 GiB guest with their areas above 4 GiB, a
/// fixed area, a size that fails, a q35 guest, whose twin is a pc with q35's map),
/// their consoles kept as the hosts' logs; every CMA line of each must be reproduced by its twin.
@Suite struct ReplayIntegrationTests {
    @Test(arguments: [
        ("pc", "4G", "cma=1G@1-2G"),
        ("pc", "4G", "memmap=512M$0x60000000 cma=1G@1-2G"),
        ("pc", "8G", "cma=2G"),
        ("pc", "2G", "cma=256M@512M"),
        ("pc", "2G", "cma=4G"),
        ("q35", "3G", "cma=512M"),
        ("pc", "64G", "cma=2G"),
        ("pc", "6G", "memmap=1G$0x140000000 cma=1G"),
    ])
    func aGuestsConsoleReplaysWithEveryCMALineReproduced(machine: String, memory: String, append: String) throws {
        let host = try IT.runCLI(["boot", "--accel", "tcg", "--machine", machine, "--memory", memory, "--append", append])
        #expect(host.status == 0, "\(host.stderr)")
        let log = try #require(host.stderr.components(separatedBy: "console log: ").last?.trimmingCharacters(in: .whitespacesAndNewlines))
        let replay = try IT.runCLI(["replay", "--image", "cma-6.12", log])
        #expect(replay.status == 0, "\(replay.stdout)\n\(replay.stderr)")
        let lines = replay.stdout.split(separator: "\n").filter { $0.hasPrefix("reproduced") || $0.hasPrefix("differs") }
        #expect(!lines.isEmpty && lines.allSatisfy { $0.hasPrefix("reproduced") }, "\(replay.stdout)")
    }


    /// The seed's own log (Linux 4.15, 4 GiB, `cma=1G@1-2G`, quoted, no memory map): the twin comes from the
    /// `Memory:` line; the outcome class and size are the host's, the base differs and the reasons are named.
    @Test(arguments: ["cma-6.12", "cma-6.1"])
    func theSeedsLogReplaysWithTheDifferencesNamed(image: String) throws {
        let log = IT.lab.paths.home + "/Tests/LabCoreTests/Fixtures/host-seed-4.15-quoted.log"
        let r = try IT.runCLI(["replay", "--image", image, log])
        #expect(r.status == 1, "\(r.stdout)\n\(r.stderr)")
        #expect(r.stdout.contains("missing: no `BIOS-e820:` lines"))
        #expect(r.stdout.contains("the log has no memory map: the twin is a plain QEMU pc guest of 4G"))
        #expect(r.stdout.contains("differs     cma: Reserved 1024 MiB at 0x40000000  →  twin: cma: Reserved 1024 MiB at 0x"))
        #expect(r.stdout.contains("could explain it: kernel: the host booted vmlinuz-4.15.0CMA20190430"))
    }
}
}
