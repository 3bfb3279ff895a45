import Foundation
import Testing
import LabCore
@testable import LabRuntime

extension Integration {
/// `cmalab replay` on host logs made here: cmalab's own guests booted with different shapes (a plain 4 GiB pc, a
/// hole punched with memmap=, an 8 GiB guest with its area above 4 GiB, a fixed area, a size that fails),
/// their consoles kept as the hosts' logs; every CMA line of each must be reproduced by its twin.
@Suite struct ReplayIntegrationTests {
    @Test(arguments: [
        ("4G", "cma=1G@1-2G"),
        ("4G", "memmap=512M$0x60000000 cma=1G@1-2G"),
        ("8G", "cma=2G"),
        ("2G", "cma=256M@512M"),
        ("2G", "cma=4G"),
    ])
    func aGuestsConsoleReplaysWithEveryCMALineReproduced(memory: String, append: String) throws {
        let host = try IT.runCLI(["boot", "--accel", "tcg", "--memory", memory, "--append", append])
        #expect(host.status == 0, "\(host.stderr)")
        let log = try #require(host.stderr.components(separatedBy: "console log: ").last?.trimmingCharacters(in: .whitespacesAndNewlines))
        let replay = try IT.runCLI(["replay", "--image", "cma-6.12", log])
        #expect(replay.status == 0, "\(replay.stdout)\n\(replay.stderr)")
        let lines = replay.stdout.split(separator: "\n").filter { $0.hasPrefix("reproduced") || $0.hasPrefix("differs") }
        #expect(!lines.isEmpty && lines.allSatisfy { $0.hasPrefix("reproduced") }, "\(replay.stdout)")
    }
}
}
