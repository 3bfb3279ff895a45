import Foundation
#if canImport(FoundationXML)
import FoundationXML
#endif
import Testing
import LabCore
@testable import LabRuntime

extension IntegrationSecondLane {
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

    // MARK: - arm64 boards

    /// The board logs of Scripts/make-board-fixtures (real arm64 virt consoles; two with their addresses edited
    /// to move the RAM to 0x80000000 or cut a hole in it): each replays on a virt twin booted on cma-6.12-arm64
    /// (the default for an arm64 log), and every CMA line, pool lines included, is reproduced at the board's
    /// addresses.
    @Test(arguments: [
        ("board-virt-2G-dt-pool.log", ["Reserved memory: created CMA memory pool at 0x70000000, size 256 MiB",
                                       "Reserved memory: created CMA memory pool at 0x9e000000, size 32 MiB"]),
        ("board-virt-2G-nomap-hole.log", ["Reserved memory: created CMA memory pool at 0x5c000000, size 64 MiB"]),
        ("board-virt-2G-cma-overrides-dt.log", ["cma: Reserved 64 MiB at 0xb9e00000 on node -1"]),
        ("board-shifted-2G-at-0x80000000.log", ["cma: Reserved 128 MiB at 0xf5e00000 on node -1",
                                                "Reserved memory: created CMA memory pool at 0xb0000000, size 64 MiB"]),
        ("board-virt-4G-ram-hole.log", ["cma: Reserved 512 MiB at 0xd0000000 on node -1"]),
    ])
    func aBoardLogReplaysOnAVirtTwin(fixture: String, expected: [String]) throws {
        let log = IT.lab.paths.home + "/Tests/LabCoreTests/Fixtures/" + fixture
        let r = try IT.runCLI(["replay", log])
        #expect(r.status == 0, "\(r.stdout)\n\(r.stderr)")
        #expect(r.stdout.contains("an arm64 board"))
        #expect(r.stdout.contains("twin: virt (arm64)"))
        let lines = r.stdout.split(separator: "\n").filter { $0.hasPrefix("reproduced") || $0.hasPrefix("differs") }.map(String.init)
        #expect(lines == expected.map { "reproduced  " + $0 }, "\(r.stdout)")
        // The twin really was an arm64 virt guest with the planned nodes: its console says so.
        let run = try #require(r.stdout.components(separatedBy: "run directory: ").last?.split(separator: "\n").first.map(String.init))
        let console = try String(contentsOfFile: run + "/console.log", encoding: .utf8)
        #expect(console.contains("Machine model: linux,dummy-virt"))
        #expect(try String(contentsOfFile: run + "/qemu.argv", encoding: .utf8).contains("qemu-system-aarch64"))
    }

    /// A board log made here and now: an arm64 profile of the repository booted with `cmalab run`, its console kept
    /// as the board's log, replayed: the two pools it placed inside their alloc-ranges come back as static pools
    /// at the same places.
    @Test func aFreshArm64RunReplays() throws {
        let dir = NSTemporaryDirectory() + "cmalab-board-\(getpid())"
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let run = try IT.runCLI(["run", IT.lab.paths.home + "/Profiles/arm64/dt-alloc-ranges.yaml", "--json", dir + "/run.json"])
        #expect(run.status == 0, "\(run.stdout)\n\(run.stderr)")
        let json = try #require(JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: dir + "/run.json"))) as? [String: Any])
        let results = try #require(json["results"] as? [[String: Any]])
        var runDir = try #require(results.first?["runDirectory"] as? String)
        if !runDir.hasPrefix("/") { runDir = IT.lab.paths.home + "/" + runDir }
        let r = try IT.runCLI(["replay", runDir + "/console.log", "--json", dir + "/replay.json"])
        #expect(r.status == 0, "\(r.stdout)\n\(r.stderr)")
        #expect(r.stdout.contains("device-tree: linux,cma@5c000000: reg [0x5c000000-0x5fffffff], shared-dma-pool, reusable, linux,cma-default"))
        let result = try JSONDecoder().decode(ReplayResult.self, from: Data(contentsOf: URL(fileURLWithPath: dir + "/replay.json")))
        #expect(result.lines.count == 2 && result.reproduced, "\(result.lines)")
        #expect(result.host.architecture == .arm64)
        #expect(result.twin.machine.type == .virt && result.twin.machine.architecture == .arm64)
        #expect(result.twin.deviceTree?.contains("camera-pool@") == true)
        #expect(result.replay.oracle?.agrees == true, "\(result.replay.predicted)")
    }

    /// The shifted board: a --try on the same twin (its answer read back at board addresses by the reader, the
    /// twin's own shown), the JSON with the window, and `explain --host` predicting on the same twin.
    @Test func aShiftedBoardTakesTriesAndExplains() throws {
        let log = IT.lab.paths.home + "/Tests/LabCoreTests/Fixtures/board-shifted-2G-at-0x80000000.log"
        let dir = NSTemporaryDirectory() + "cmalab-board-shift-\(getpid())"
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let r = try IT.runCLI(["replay", log, "--try", "cma=256M", "--json", dir + "/r.json", "--html", dir + "/r.html"])
        #expect(r.status == 0, "\(r.stdout)\n\(r.stderr)")
        #expect(r.stdout.contains("reproduced  cma: Reserved 128 MiB at 0xf5e00000 on node -1"))
        #expect(r.stdout.contains("note: shifted: the board's RAM starts at 0x80000000"))
        let result = try JSONDecoder().decode(ReplayResult.self, from: Data(contentsOf: URL(fileURLWithPath: dir + "/r.json")))
        #expect(result.twin.window == AddressWindow(host: 0x8000_0000, twin: 0x4000_0000, size: 0x8000_0000))
        #expect(result.tries.count == 1 && result.tries[0].reserved.first?.sizeMiB == 256)
        #expect(result.tries[0].oracle?.agrees == true, "\(result.tries[0].predicted)")
        #expect(try String(contentsOfFile: dir + "/r.html", encoding: .utf8).contains("twin physical memory"))

        let explain = try IT.runCLI(["explain", "--host", log, "--try", "cma=256M"])
        #expect(explain.status == 0, "\(explain.stderr)")
        #expect(explain.stdout.contains("on this host, with cma-6.12-arm64's rules"))
        #expect(explain.stdout.contains(result.tries[0].oracle?.prediction.summary ?? "?"), "\(explain.stdout)")
        #expect(explain.stdout.contains("each board address is the twin's +0x40000000"))
    }
}
}
