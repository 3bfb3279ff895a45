import Foundation
#if canImport(FoundationXML)
import FoundationXML
#endif
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

    /// A two-node host (SRAT nodes 4G+4G) with per-node areas: the twin gets the host's nodes, and every line,
    /// node included, is reproduced.
    @Test func aNUMAHostsPerNodeAreasAreReproduced() throws {
        let host = try IT.runCLI(["boot", "--accel", "tcg", "--memory", "8G", "--numa", "4G,4G",
                                  "--append", "numa_cma=1:128M cma_pernuma=64M cma=512M"])
        #expect(host.status == 0, "\(host.stderr)")
        let log = try #require(host.stderr.components(separatedBy: "console log: ").last?.trimmingCharacters(in: .whitespacesAndNewlines))
        let replay = try IT.runCLI(["replay", log])
        #expect(replay.status == 0, "\(replay.stdout)\n\(replay.stderr)")
        #expect(replay.stdout.contains("NUMA: 2 nodes as in the host's SRAT"))
        let lines = replay.stdout.split(separator: "\n").filter { $0.hasPrefix("reproduced") || $0.hasPrefix("differs") }
        #expect(lines.count == 4 && lines.allSatisfy { $0.hasPrefix("reproduced") }, "\(replay.stdout)")
        #expect(lines.contains { $0.hasSuffix("on node 1") })
    }

    /// A 512 GiB host (a real console of a 512 GiB pc guest, kept as a fixture) replays on this 24 GiB box.
    @Test func a512GiBHostReplaysHere() throws {
        let log = IT.lab.paths.home + "/Tests/LabCoreTests/Fixtures/host-qemu-512G-cma-4G.log"
        let r = try IT.runCLI(["replay", "--image", "cma-6.12", log])
        #expect(r.status == 0, "\(r.stdout)\n\(r.stderr)")
        #expect(r.stdout.contains("twin: pc, 512G of RAM"))
        #expect(r.stdout.contains("reproduced  cma: Reserved 4096 MiB at 0x100000000 on node -1"))
    }

    /// Three alternatives on one twin: the table with the oracle beside each, the reports (JSON with both maps,
    /// JUnit, HTML drawing both), and `explain --host` predicting the same without booting.
    @Test func alternativesGetATableReportsAndThePrediction() throws {
        let host = try IT.runCLI(["boot", "--accel", "tcg", "--memory", "6G", "--append", "memmap=1G$0x140000000 cma=1G"])
        #expect(host.status == 0, "\(host.stderr)")
        let log = try #require(host.stderr.components(separatedBy: "console log: ").last?.trimmingCharacters(in: .whitespacesAndNewlines))
        let dir = NSTemporaryDirectory() + "cmalab-replay-\(getpid())"
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let tries = ["cma=2G", "cma=512M@0x140000000", "cma=8G"]
        let r = try IT.runCLI(["replay", "--image", "cma-6.12", log, "--json", dir + "/r.json", "--junit", dir + "/r.xml", "--html", dir + "/r.html"]
                              + tries.flatMap { ["--try", $0] })
        #expect(r.status == 0, "\(r.stdout)\n\(r.stderr)")
        // 2 GiB finds no room in the 1 GiB pieces of RAM above 4 GiB; a fixed area over the hole crashes; 8 GiB exceeds the limit.
        #expect(r.stdout.contains("cma=2G                failed to reserve 2048 MiB"))
        #expect(r.stdout.contains("cma=512M@0x140000000  kernel crash:"))
        #expect(r.stdout.contains("cma=8G                failed to reserve 8192 MiB; Size (0x0000000200000000)"))
        let result = try JSONDecoder().decode(ReplayResult.self, from: Data(contentsOf: URL(fileURLWithPath: dir + "/r.json")))
        #expect(result.tries.map(\.parameters) == tries)
        #expect(result.tries.allSatisfy { $0.oracle?.agrees == true }, "\(result.tries.map(\.predicted))")
        #expect(result.replay.oracle?.agrees == true)
        #expect(result.hostMap.contains { $0.start == 0x1_4000_0000 && $0.type == "reserved" })
        #expect(result.twin.map.contains { $0.start == 0x1_4000_0000 && $0.end == 0x1_7fff_ffff && $0.type == "reserved" })
        let html = try String(contentsOfFile: dir + "/r.html", encoding: .utf8)
        #expect(html.components(separatedBy: "<svg").count == 3)
        #expect(html.contains("twin physical memory"))
        _ = try XMLDocument(contentsOf: URL(fileURLWithPath: dir + "/r.xml"), options: [])
        let junit = try String(contentsOfFile: dir + "/r.xml", encoding: .utf8)
        #expect(junit.contains("tests=\"4\" failures=\"0\" errors=\"0\""))

        let explain = try IT.runCLI(["explain", "--image", "cma-6.12", "--host", log] + tries.flatMap { ["--try", $0] })
        #expect(explain.status == 0, "\(explain.stderr)")
        for t in result.tries {
            #expect(explain.stdout.contains(t.oracle?.prediction.summary ?? "?"), "\(explain.stdout)")
        }
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
