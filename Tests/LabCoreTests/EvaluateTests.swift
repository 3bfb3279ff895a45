import Foundation
import Testing
@testable import LabCore

@Suite struct EvaluateTests {
    /// Observations as the seed run on 6.12 produced them (values from a real run).
    func seedObservations() throws -> (Observations, [String]) {
        let log = try Fixture.text("console-6.12-pc-4G-cma-1G@1-2G.log").split(whereSeparator: \.isNewline).map(String.init)
        var o = Observations(profile: "seed", image: "cma-6.12", machine: MachineSpec(memory: .gib(4)), commandLine: "cma=1G@1-2G",
                             accelerator: "tcg", ending: .poweredOff, boot: KernelLogParser.facts(from: log))
        o.configCMA = true
        o.meminfo = [MeminfoSnapshot(label: "boot", cmaTotalKiB: 1_048_576, cmaFreeKiB: 1_048_576, memTotalKiB: 4_020_000, memFreeKiB: 2_900_000)]
        o.areas = [AreaSnapshot(name: "reserved", basePFN: 0x3fc00, count: 262_144, used: 0, maxchunk: 262_144, orderPerBit: 0, sysfs: [:])]
        var alloc = StepRecord(index: 0, kind: .alloc, summary: "", status: 0, seconds: 0.1)
        alloc.before = o.meminfo[0]
        alloc.after = MeminfoSnapshot(label: "a", cmaTotalKiB: 1_048_576, cmaFreeKiB: 638_976, memTotalKiB: nil, memFreeKiB: nil)
        alloc.areaBefore = o.areas[0]
        alloc.areaAfter = AreaSnapshot(name: "reserved", basePFN: 0x3fc00, count: 262_144, used: 102_400, maxchunk: 159_744, orderPerBit: 0, sysfs: [:])
        var free = StepRecord(index: 1, kind: .free, summary: "", status: 0, seconds: 0.1)
        free.before = alloc.after
        free.after = MeminfoSnapshot(label: "f", cmaTotalKiB: 1_048_576, cmaFreeKiB: 1_040_000, memTotalKiB: nil, memFreeKiB: nil)
        free.areaBefore = alloc.areaAfter
        free.areaAfter = o.areas[0]
        o.steps = [alloc, free]
        return (o, log)
    }

    func profile(_ yaml: String) throws -> Profile { try Profile.parse("name: t\n" + yaml, file: "t.yaml") }

    @Test func seedPasses() throws {
        let (o, log) = try seedObservations()
        let p = try profile("""
            cmdline: cma=1G@1-2G
            expect: {outcome: reserved, areas: 1, size: 1G, within: [0, 2G], cma-total: 1G, memory-cma-reserved: 1048576K,
                     dmesg: {contains: "cma: Reserved 1024 MiB", absent: Failed}}
            steps: [{alloc: {pages: 102400}}, {free: {pages: 102400}}]
            """)
        let checks = Evaluate.checks(p, o, messages: log.map(KernelLog.stripTimestamp))
        let failed = checks.filter { !$0.passed }
        #expect(failed.isEmpty, "\(failed)")
        #expect(checks.count == 13)
        #expect(Evaluate.verdictKind(checks) == .pass)
    }

    @Test func wrongExpectationShowsExpectedAndObserved() throws {
        let (o, log) = try seedObservations()
        let p = try profile("expect: {size: 512M, base: 0x40000000, cma-total: 2G}\nsteps: [{alloc: {pages: 102400, expect: failure}}]")
        let failed = Evaluate.checks(p, o, messages: log.map(KernelLog.stripTimestamp)).filter { !$0.passed }
        #expect(failed.map(\.name) == ["size", "base", "cma-total", "steps[0].alloc", "steps[0].alloc.used-delta"])
        #expect(failed[0] == CheckResult(name: "size", expected: "512M", observed: "1G (debugfs reserved)", passed: false))
        #expect(failed[1] == CheckResult(name: "base", expected: "0x40000000", observed: "0x3fc00000", passed: false))
        #expect(failed[2].observed == "1048576 kB")
        #expect(failed[3].expected == "failure" && failed[3].observed == "success")
    }

    @Test func crashOutcomeAndStepsNotRun() throws {
        let log = try Fixture.text("console-6.12-pc-4G-cma-1G@3G-4G-panic.log").split(whereSeparator: \.isNewline).map(String.init)
        var watcher = ConsoleWatcher()
        for l in log { watcher.feed(Array((l + "\n").utf8)) }
        var o = Observations(profile: "c", image: "cma-6.12", machine: MachineSpec(memory: .gib(4)), commandLine: "", accelerator: "tcg", ending: .kernelCrash,
                             boot: KernelLogParser.facts(from: log))
        o.crash = watcher.crash
        let p = try profile("expect: {outcome: kernel-crash, crash: Attempted to kill init}\nsteps: [{exec: 'true'}]")
        let checks = Evaluate.checks(p, o, messages: log.map(KernelLog.stripTimestamp))
        #expect(checks[0].passed && checks[1].passed)
        #expect(checks[2] == CheckResult(name: "steps[0].exec", expected: "run", observed: "not run (kernel-crash)", passed: false))
    }

    @Test func outcomes() {
        var o = Observations(profile: "", image: "", machine: MachineSpec(memory: .gib(4)), commandLine: "", accelerator: "", ending: .poweredOff, boot: BootLogFacts())
        o.meminfo = [MeminfoSnapshot(label: "boot", cmaTotalKiB: nil, cmaFreeKiB: nil, memTotalKiB: 1, memFreeKiB: 1)]
        #expect(Evaluate.outcome(o) == .notSupported)
        o.meminfo[0].cmaTotalKiB = 0
        #expect(Evaluate.outcome(o) == Outcome.none)
        o.boot.failedMiB = [4096]
        #expect(Evaluate.outcome(o) == .failed)
        o.boot.reserved = [ReservedArea(sizeMiB: 4, base: 0x7f000000, node: -1)]
        #expect(Evaluate.outcome(o) == .reserved)
        o.ending = .kernelCrash
        #expect(Evaluate.outcome(o) == .kernelCrash)
    }

    /// On an image without CONFIG_CMA_DEBUGFS the runner skips alloc/free; the verdict says so and passes.
    @Test func skippedStepsPassAndSayWhy() throws {
        var (o, log) = try seedObservations()
        o.steps = []
        o.skippedSteps = [SkippedStep(index: 0, reason: "image x has no CONFIG_CMA_DEBUGFS"), SkippedStep(index: 1, reason: "image x has no CONFIG_CMA_DEBUGFS")]
        let p = try profile("machine: {memory: 4G}\ncmdline: cma=1G@1-2G\nexpect: {outcome: reserved, size: 1G}\nsteps: [{alloc: {pages: 102400}}, {free: {pages: 102400}}]\n")
        let checks = Evaluate.checks(p, o, messages: log.map(KernelLog.stripTimestamp))
        #expect(Evaluate.verdictKind(checks) == .pass)
        let skipped = checks.filter { $0.skipped == true }
        #expect(skipped.map(\.name) == ["steps[0].alloc", "steps[1].free"])
        #expect(skipped[0].observed == "skipped: image x has no CONFIG_CMA_DEBUGFS")
        let v = Verdict(profile: "t", image: "x", kind: .pass, checks: checks)
        #expect(Report.table([v], color: false).contains("2 step(s) skipped: image x has no CONFIG_CMA_DEBUGFS"))
    }
}
