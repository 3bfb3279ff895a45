import Foundation
#if canImport(FoundationXML)
import FoundationXML
#endif
import Testing
@testable import LabCore

/// The replay's reports (ReplayReport.swift) from real consoles: the host is a 6 GiB-shaped guest with a reserved
/// hole (memmap=), read back as JSON, JUnit and HTML with both maps drawn; a hostile log name stays text.
@Suite struct ReplayReportTests {
    func result(log: String = "host.log") throws -> ReplayResult {
        let host = HostLog.read(try Fixture.text("console-6.12-pc-8G-memmap-hole-cma-1G@1-2G.log"))
        let plan = try TwinPlan.plan(map: host.effectiveMap, budget: 1500)
        var twinBoot = host.boot
        twinBoot.reserved = [ReservedArea(sizeMiB: 1024, base: 0x2400_0000, node: -1)]
        let o = Observations(profile: "replay", image: "cma-6.12", machine: plan.machine, commandLine: KernelCommandLine([]),
                             accelerator: "tcg", ending: .poweredOff, boot: twinBoot)
        let lines = Replay.compare(host: host.boot, twin: twinBoot)
        let replay = ReplayOutcome(parameters: "cma=1G@1-2G", observations: o, error: nil, oracle: nil, runDirectory: nil)
        var failed = host.boot
        failed.reserved = []; failed.failedMiB = [8192]; failed.failureReasons = ["cma: Size (0x200000000) of region at 0x0 exceeds limit (0x240000000)"]
        let t = ReplayOutcome(parameters: "cma=8G", observations: Observations(profile: "t", image: "cma-6.12", machine: plan.machine, commandLine: KernelCommandLine([]), accelerator: "tcg", ending: .poweredOff, boot: failed),
                              error: nil, oracle: nil, runDirectory: nil)
        let lost = ReplayOutcome(parameters: "cma=2G", observations: nil, error: "the twin timed out", oracle: nil, runDirectory: nil)
        return ReplayResult(log: log, host: host, twin: ReplayTwin(plan, kernel: "6.12.117"), lines: lines, replay: replay,
                            explanations: Replay.explanations(host: host, twinRelease: "6.12.117", plan: plan), tries: [t, lost])
    }

    @Test func jsonCarriesBothMapsAndReadsBack() throws {
        let r = try result()
        #expect(!r.reproduced)
        #expect(r.hostMap == r.host.userMap)
        #expect(r.hostMap.contains { $0.start == 0x6000_0000 && $0.type == "reserved" })
        let back = try JSONDecoder().decode(ReplayResult.self, from: try JSONEncoder().encode(r))
        #expect(back == r)
        #expect(back.schema == "cmalab-replay/1")
    }

    @Test func junitHasACasePerLineAndTry() throws {
        let x = ReplayReport.junit(try result())
        let doc = try XMLDocument(xmlString: x, options: [])
        let cases = try doc.nodes(forXPath: "//testcase")
        #expect(cases.count == 3)
        #expect(try doc.nodes(forXPath: "//failure").count == 1)
        #expect(try doc.nodes(forXPath: "//error").count == 1)
        #expect(x.contains("base: host 0x20000000, twin 0x24000000"))
    }

    @Test func htmlDrawsTheHostAndTheTwinAndEscapesTheLogName() throws {
        let h = ReplayReport.html(try result(log: "<script>alert(1)</script>&.log"))
        let doc = try XMLDocument(xmlString: h, options: [])
        #expect(try doc.nodes(forXPath: "//*[local-name()='svg']").count == 2)
        #expect(try doc.nodes(forXPath: "//*[local-name()='script']").isEmpty)
        #expect(h.contains("&lt;script&gt;"))
        #expect(h.contains("failed to reserve 8192 MiB"))
        #expect(h.contains("error: the twin timed out"))
        #expect(h.contains("differs"))
    }

    /// A shifted board (Fixtures/board-shifted-2G-at-0x80000000.log) whose twin printed its lines 1 GiB lower: the
    /// result says the board is arm64, keeps the window and the twin's nodes, counts pools as outcomes, and the
    /// HTML draws both maps with their pools.
    @Test func aBoardsResultKeepsItsWindowNodesAndPools() throws {
        let host = HostLog.read(try Fixture.text("board-shifted-2G-at-0x80000000.log"))
        let plan = try Replay.twin(for: host, commandLine: KernelCommandLine()).get()
        var twinBoot = BootLogFacts()
        twinBoot.reserved = [ReservedArea(sizeMiB: 128, base: 0xb5e0_0000, node: -1)]
        twinBoot.deviceTree.pools = [ReservedArea(sizeMiB: 64, base: 0x7000_0000)]
        let o = Observations(profile: "replay", image: "cma-6.12-arm64", machine: plan.machine, commandLine: KernelCommandLine([]),
                             accelerator: "tcg", ending: .poweredOff, boot: twinBoot)
        let replay = ReplayOutcome(parameters: "cma=128M", observations: o, error: nil, oracle: nil, runDirectory: nil)
        #expect(replay.outcome == "reserved 128 MiB at 0xb5e00000 (node -1); pool 64 MiB at 0x70000000")
        let r = ReplayResult(log: "board.log", host: host, twin: ReplayTwin(plan, kernel: "6.12.117"),
                             lines: Replay.compare(host: host.boot, twin: twinBoot, plan: plan), replay: replay, explanations: [], tries: [])
        #expect(r.reproduced)
        #expect(r.hostMap == [MemoryRange(start: 0x8000_0000, end: 0xffff_ffff, type: "usable")])
        #expect(r.twin.window?.host == 0x8000_0000)
        #expect(r.twin.deviceTree?.contains("vpu-pool@70000000 {") == true)
        let back = try JSONDecoder().decode(ReplayResult.self, from: try JSONEncoder().encode(r))
        #expect(back == r && back.host.architecture == .arm64)
        let h = ReplayReport.html(r)
        _ = try XMLDocument(xmlString: h, options: [])
        #expect(h.components(separatedBy: "<svg").count == 3)
        #expect(h.contains("0xb0000000") && h.contains("0x70000000"))
    }
}
