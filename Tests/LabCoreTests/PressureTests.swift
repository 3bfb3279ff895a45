import Foundation
import Testing
@testable import LabCore

@Suite struct PressureTests {
    func profile(_ steps: String) throws -> Profile {
        try Profile.parse("name: p\nmachine: {memory: 4G}\ncmdline: cma=1G@1-2G\nsteps:\n" + steps, file: "p.yaml")
    }

    @Test func pressureAndMeasuredAllocParse() throws {
        let p = try profile("""
              - pressure: {size: 80%, of: free-outside-cma, kind: mixed, min-in-cma: 64M}
              - alloc: {pages: all, repeat: 3, max-latency: 60s, min-migrated: 1}
              - alloc: {area: reserved, pages: 100, expect: failure, max-latency: 500ms}
              - release
              - pressure: {size: 1G, pin: true}
              - release: {}
            """)
        #expect(p.steps == [
            .pressure(PressureStep(target: .percentOfFreeOutsideCMA(80), kind: .mixed, minInCMA: Approximate(bytes: 64 << 20))),
            .measuredAlloc(MeasuredAlloc(area: "reserved", pages: nil, repeats: 3, maxLatencySeconds: 60, minMigrated: 1)),
            .measuredAlloc(MeasuredAlloc(area: "reserved", pages: 100, expectSuccess: false, maxLatencySeconds: 0.5)),
            .release,
            .pressure(PressureStep(target: .bytes(1 << 30), pin: true)),
            .release,
        ])
        #expect(p.steps.map(\.kind) == [.pressure, .alloc, .alloc, .release, .pressure, .release])
        #expect(p.debugfsSteps == [1, 2])
        // A plain alloc stays plain.
        #expect(try profile("  - alloc: {pages: 10}\n").steps == [.alloc(area: "reserved", pages: 10, expectSuccess: true, tolerance: .percent(1))])
    }

    @Test func targetsInBytes() {
        #expect(PressureTarget.percentOfFree(50).bytes(memFreeKiB: 1000, cmaFreeKiB: 400) == 512_000)
        #expect(PressureTarget.percentOfFreeOutsideCMA(50).bytes(memFreeKiB: 1000, cmaFreeKiB: 400) == 307_200)
        #expect(PressureTarget.percentOfFreeOutsideCMA(50).bytes(memFreeKiB: 100, cmaFreeKiB: 400) == 0)
        #expect(PressureTarget.bytes(42).bytes(memFreeKiB: 0, cmaFreeKiB: 0) == 42)
    }

    @Test(arguments: [
        ("  - pressure: {size: 99%}\n", "p.yaml:5:22: at `steps[0].pressure.size`: a share of MemFree is above 0% and at most 95% (more starves the guest), found `99%`"),
        ("  - pressure: {size: 1G, of: free}\n", "p.yaml:5:30: at `steps[0].pressure.of`: `of` goes with a percentage size (e.g. size: 80%)"),
        ("  - pressure: {size: 50%, of: all}\n", "p.yaml:5:31: at `steps[0].pressure.of`: `of` is `free` (MemFree) or `free-outside-cma` (MemFree - CmaFree)"),
        ("  - pressure: {size: 1G, kind: file, pin: true}\n", "p.yaml:5:15: at `steps[0].pressure`: pin and mlock apply to anonymous memory: use kind anon or mixed"),
        ("  - pressure: {size: 1G, pin: true, mlock: true}\n", "p.yaml:5:15: at `steps[0].pressure`: give pin or mlock, not both"),
        ("  - alloc: {pages: all, tolerance: 1%}\n", "p.yaml:5:12: at `steps[0].alloc`: tolerance applies to a plain alloc; a measured alloc (pages: all, repeat, max-latency, min-migrated) checks used pages exactly"),
        ("  - alloc: {pages: 5, max-latency: soon}\n", "p.yaml:5:36: at `steps[0].alloc.max-latency`: a duration is like 30s, 1.5s or 500ms (up to 3600s), found `soon`"),
        ("  - release: {now: true}\n", "p.yaml:5:14: at `steps[0].release`: release takes no settings: write `- release`"),
    ])
    func badPressureInput(steps: String, message: String) {
        do { _ = try profile(steps); Issue.record("no error for \(steps)") } catch { #expect((error as? InputError)?.description == message) }
    }

    /// Values from a real 6.12 run of pressure-pinned-fails and pressure-whole-area.
    @Test func measuredChecks() throws {
        let p = try profile("""
              - pressure: {size: 80%, of: free-outside-cma, min-in-cma: 64M}
              - alloc: {pages: all, repeat: 3, max-latency: 2s, min-migrated: 1}
            """)
        var o = Observations(profile: "p", image: "cma-6.12", machine: MachineSpec(memory: .gib(4)), commandLine: "", accelerator: "tcg", ending: .poweredOff, boot: BootLogFacts())
        o.meminfo = [MeminfoSnapshot(label: "boot", cmaTotalKiB: 1 << 20, cmaFreeKiB: 1 << 20, memTotalKiB: nil, memFreeKiB: nil)]
        var pressure = StepRecord(index: 0, kind: .pressure, summary: "", status: 0, seconds: 9)
        pressure.heldBytes = 2_439_565_312
        pressure.cmaLentPages = 58_422
        var alloc = StepRecord(index: 1, kind: .alloc, summary: "", status: 0, seconds: 2)
        alloc.attemptErrnos = [0, 0, 0]
        alloc.attemptNanoseconds = [1_415_323_935, 23_501_163, 24_982_027]
        alloc.vmstatDelta = ["pgmigrate_success": 57_903, "pgmigrate_fail": 0]
        alloc.areaBefore = AreaSnapshot(name: "reserved", basePFN: 0x3f400, count: 262_144, used: 0, maxchunk: 262_144, orderPerBit: 0, sysfs: [:])
        alloc.areaAfter = AreaSnapshot(name: "reserved", basePFN: 0x3f400, count: 262_144, used: 262_144, maxchunk: 0, orderPerBit: 0, sysfs: [:])
        o.steps = [pressure, alloc]
        var checks = Evaluate.checks(p, o, messages: [])
        #expect(Evaluate.verdictKind(checks) == .pass, "\(checks.filter { !$0.passed })")
        #expect(checks.first { $0.name == "steps[1].alloc.latency" }?.observed == "min 24 ms, median 25 ms, max 1.42 s")
        #expect(checks.first { $0.name == "steps[0].pressure.in-cma" }?.passed == true)

        // Too slow, nothing migrated, one attempt failing: each is its own failed check.
        o.steps[1].attemptNanoseconds = [2_500_000_000, 1, 1]
        o.steps[1].vmstatDelta = ["pgmigrate_success": 0]
        o.steps[1].attemptErrnos = [0, 12, 0]
        o.steps[0].cmaLentPages = 10
        checks = Evaluate.checks(p, o, messages: [])
        #expect(Set(checks.filter { !$0.passed }.map(\.name)) == ["steps[0].pressure.in-cma", "steps[1].alloc.repeats", "steps[1].alloc.latency", "steps[1].alloc.migrated"])
    }

    @Test func diffShowsALatencyChange() {
        var a = Observations(profile: "p", image: "a", machine: MachineSpec(memory: .gib(4)), commandLine: "", accelerator: "tcg", ending: .poweredOff, boot: BootLogFacts())
        var b = a
        var s = StepRecord(index: 0, kind: .alloc, summary: "", status: 0, seconds: 1)
        s.attemptNanoseconds = [100_000_000, 110_000_000, 120_000_000]
        a.steps = [s]
        s.attemptNanoseconds = [130_000_000, 120_000_000, 125_000_000]
        b.steps = [s]
        #expect(ObservationDiff.compare(a, b).isEmpty)
        s.attemptNanoseconds = [400_000_000, 410_000_000, 390_000_000]
        b.steps = [s]
        #expect(ObservationDiff.compare(a, b).map(\.field) == ["steps[0] alloc latency"])
    }
}
