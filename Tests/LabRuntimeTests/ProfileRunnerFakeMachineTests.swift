import Foundation
import Testing
import LabCore
import LabProtocol
@testable import LabRuntime
import LabTestKit

/// ProfileRunner against FakeMachine: the whole run (boot, agent, steps, evaluation, artifacts) with the real
/// agent core in-process, in milliseconds.
@Suite struct ProfileRunnerFakeMachineTests {
    /// The repository's Profiles/ and the captured consoles of Tests/LabCoreTests/Fixtures.
    static let repo = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent().path

    static func profile(_ yaml: String) throws -> Profile { try Profile.parse(yaml, file: "test.yaml") }
    static func repoProfile(_ name: String) throws -> Profile {
        try Profile.parse(String(contentsOfFile: repo + "/Profiles/\(name).yaml", encoding: .utf8), file: name + ".yaml")
    }

    /// Runs `profile` on a fresh fake lab whose machine is `guest`. The lab (its run directories) lives as long
    /// as the caller keeps it.
    static func run(_ profile: Profile, _ guest: FakeGuest, config: [String] = []) throws -> (Verdict, FakeLauncher, FakeLab) {
        let lab = try FakeLab(config: config)
        let launcher = FakeLauncher(guest)
        let verdict = lab.runner(launcher).run(profile, image: FakeLab.image)
        return (verdict, launcher, lab)
    }

    static func failed(_ v: Verdict) -> String {
        v.checks.filter { !$0.passed }.map { "\($0.name): expected \($0.expected), observed \($0.observed)" }.joined(separator: "\n") + (v.error ?? "")
    }

    // MARK: - Steps

    @Test func allocAndFreeOnARealProfile() throws {
        let (v, launcher, _) = try Self.run(try Self.repoProfile("alloc-larger-than-area"), .cma64M())
        #expect(v.kind == .pass, "\(Self.failed(v))")
        let steps = try #require(v.observations?.steps)
        #expect(steps.map(\.status) == [ENOMEM, 0, 0])
        #expect(steps[1].areaAfter?.used == 16_384)
        #expect(steps[2].areaAfter?.used == 0)
        #expect(v.observations?.ending == .poweredOff)
        #expect(launcher.machines.first?.requests.contains(.poweroff) == true)
    }

    @Test func allocThatFailsUnexpectedlyFailsTheVerdict() throws {
        let p = try Self.profile("""
            name: alloc-too-much
            machine: {memory: 2G}
            cmdline: cma=64M
            expect: {outcome: reserved, size: 64M}
            steps:
              - alloc: {area: reserved, pages: 20000}
            """)
        let (v, _, _) = try Self.run(p, .cma64M())
        #expect(v.kind == .fail)
        #expect(v.checks.first { !$0.passed }?.name == "steps[0].alloc")
        #expect(v.checks.first { $0.name == "size" }?.passed == true)
    }

    @Test func pressureLendsCMAAndMlockedPagesMigrate() throws {
        let (v, _, _) = try Self.run(try Self.repoProfile("pressure-mlocked-migrates"), .cma512M())
        #expect(v.kind == .pass, "\(Self.failed(v))")
        let steps = try #require(v.observations?.steps)
        #expect(steps.map(\.kind) == [.pressure, .alloc, .release])
        #expect((steps[0].cmaLentPages ?? 0) > 0)
        #expect((steps[1].vmstatDelta?["pgmigrate_success"] ?? 0) > 0)
        #expect(steps[1].attemptNanoseconds == [2_500_000])
    }

    @Test func pinnedPressureMakesTheMeasuredAllocFailUntilReleased() throws {
        let (v, _, _) = try Self.run(try Self.repoProfile("pressure-pinned-fails"), .cma512M())
        #expect(v.kind == .pass, "\(Self.failed(v))")
        let steps = try #require(v.observations?.steps)
        #expect(steps[1].attemptErrnos == [EBUSY, EBUSY])
        #expect(steps[1].kernelMessages?.contains { $0.contains("ret: -16") } == true)
        #expect(steps[3].status == 0)
    }

    @Test func releaseGivesTheMemoryBack() throws {
        let p = try Self.profile("""
            name: pressure-release
            machine: {memory: 4G}
            cmdline: cma=1G@1-2G
            steps:
              - pressure: {size: 1G, kind: mixed}
              - release
            """)
        let (v, _, _) = try Self.run(p, .cma1G())
        #expect(v.kind == .pass, "\(Self.failed(v))")
        let steps = try #require(v.observations?.steps)
        let held = try #require(steps[0].after?.memFreeKiB), before = try #require(steps[0].before?.memFreeKiB)
        #expect(before - held == 1 << 20)
        #expect(steps[1].after?.memFreeKiB == before)
    }

    @Test func execStepScriptedAndRunByTheRealAgent() throws {
        let p = try Self.profile("""
            name: exec
            machine: {memory: 2G}
            steps:
              - exec: {command: "cat /sys/kernel/mm/transparent_hugepage/enabled", output: "never"}
              - exec: {command: "echo from the agent; exit 3", status: 3, output: "from the agent"}
            """)
        var guest = FakeGuest.cma64M()
        guest.shell = { $0.hasPrefix("cat /sys") ? ExecResult(termination: .exited(0), stdout: Array("always madvise [never]\n".utf8)) : nil }
        let (v, _, lab) = try Self.run(p, guest)
        #expect(v.kind == .pass, "\(Self.failed(v))")
        #expect(v.observations?.steps.map(\.status) == [0, 3])
        try withExtendedLifetime(lab) {
            let out = try String(contentsOfFile: v.runDirectory + "/step1-exec.out", encoding: .utf8)
            #expect(out == "from the agent\n")
        }
    }

    @Test func debugfsStepsAreSkippedWithoutCMADebugfs() throws {
        let (v, launcher, _) = try Self.run(try Self.repoProfile("alloc-larger-than-area"), .cma64M(), config: ["# CONFIG_CMA_DEBUGFS is not set"])
        #expect(v.kind == .pass, "\(Self.failed(v))")
        #expect(v.observations?.skippedSteps?.count == 3)
        #expect(launcher.machines.first?.requests.contains { if case .cmaAlloc = $0 { true } else { false } } == false)
    }

    // MARK: - Crashes, timeouts and a misbehaving agent

    @Test func expectedCrashAtBootPasses() throws {
        let console = try String(contentsOfFile: Self.repo + "/Tests/LabCoreTests/Fixtures/console-6.12-pc-4G-cma-1G@3G-4G-panic.log", encoding: .utf8)
        var guest = FakeGuest(areas: [], console: console.split(separator: "\n").map(String.init))
        guest.faults = [.panicAtBoot([])]
        let started = Date()
        let (v, launcher, _) = try Self.run(try Self.repoProfile("crash-fixed-in-ram-hole"), guest)
        #expect(v.kind == .pass, "\(Self.failed(v))")
        #expect(v.observations?.ending == .kernelCrash)
        #expect(v.observations?.crash?.kind == .panic)
        #expect(launcher.machines.first?.requests.isEmpty == true)
        #expect(Date().timeIntervalSince(started) < 2)
    }

    @Test func unexpectedCrashDuringAStepFails() throws {
        var guest = FakeGuest.cma64M()
        guest.faults = [.panic(on: .first("cmaAlloc"), lines: ["[    3.000000] BUG: unable to handle page fault for address: ffffea0003000000",
                                                               "[    3.000100] Kernel panic - not syncing: Fatal exception"])]
        let (v, _, _) = try Self.run(try Self.repoProfile("alloc-larger-than-area"), guest)
        #expect(v.kind == .fail)
        #expect(v.observations?.ending == .kernelCrash)
        #expect(v.observations?.crash?.summary.contains("page fault") == true || v.observations?.crash?.summary.contains("Fatal exception") == true)
        #expect(v.checks.contains { $0.name == "steps[0].alloc" && !$0.passed })
        #expect(v.consoleTail.last?.contains("Kernel panic") == true)
    }

    @Test func agentThatNeverSaysHelloIsABootTimeout() throws {
        var p = try Self.repoProfile("alloc-larger-than-area")
        p.timeout = 0.3
        var guest = FakeGuest.cma64M()
        guest.faults = [.neverReady]
        let started = Date()
        let (v, _, _) = try Self.run(p, guest)
        #expect(v.kind == .error)
        #expect(v.observations?.ending == .timeout)
        #expect(v.error?.contains("timed out") == true && v.error?.contains("the agent to start") == true, "\(v.error ?? "")")
        #expect(Date().timeIntervalSince(started) < 2)
    }

    @Test func agentDyingMidStepIsAKernelCrash() throws {
        var guest = FakeGuest.cma64M()
        // The second alloc: the first one (expected to fail) has been answered.
        guest.faults = [.agentDies(on: RequestMatcher { _, r in r == .cmaAlloc(area: "reserved", pages: 16_384) })]
        let (v, _, _) = try Self.run(try Self.repoProfile("alloc-larger-than-area"), guest)
        #expect(v.kind == .fail)
        #expect(v.observations?.crash?.summary.contains("Attempted to kill init") == true)
        #expect(v.observations?.steps.count == 1)
        #expect(v.checks.contains { $0.name == "steps[1].alloc" && $0.observed.contains("not run") })
    }

    @Test func machineVanishingMidStepIsALabError() throws {
        var guest = FakeGuest.cma64M()
        guest.faults = [.machineVanishes(on: .first("cmaFree"))]
        let (v, _, _) = try Self.run(try Self.repoProfile("alloc-larger-than-area"), guest)
        #expect(v.kind == .error)
        #expect(v.observations?.ending == .qemuFailed)
    }

    @Test func wrongAnswerFromTheAgentIsALabError() throws {
        var guest = FakeGuest.cma64M()
        guest.faults = [.answer(on: .first("meminfo"), with: .done)]
        let (v, _, _) = try Self.run(try Self.repoProfile("alloc-larger-than-area"), guest)
        #expect(v.kind == .error)
        #expect(v.error?.contains("unexpected answer to meminfo") == true, "\(v.error ?? "")")
        // The machine is still stopped: nothing keeps running after the verdict.
        #expect(v.observations?.ending == .labError)
    }

    @Test func garbageOnTheChannelIsSkipped() throws {
        var guest = FakeGuest.cma64M()
        guest.faults = [.garbageBefore(on: .number(2), bytes: Array(repeating: 0xA5, count: 3000) + Array("CMAL\u{1}garbage".utf8))]
        let (v, _, _) = try Self.run(try Self.repoProfile("alloc-larger-than-area"), guest)
        #expect(v.kind == .pass, "\(Self.failed(v))")
    }

    @Test func allocTimingsFromAnExpectedFailure() throws {
        let p = try Self.profile("""
            name: measured
            machine: {memory: 2G}
            cmdline: cma=64M
            steps:
              - alloc: {area: reserved, pages: all, repeat: 3, max-latency: 10ms}
            """)
        var guest = FakeGuest.cma64M()
        guest.allocNanoseconds = 50_000_000
        let (v, _, _) = try Self.run(p, guest)
        #expect(v.kind == .fail)
        #expect(v.checks.first { !$0.passed }?.name == "steps[0].alloc.latency")
        #expect(v.observations?.steps.first?.attemptErrnos == [0, 0, 0])
        #expect(v.observations?.steps.first?.areaAfter?.used == 16_384)
    }

    // MARK: - Impossible values

    /// A guest whose debugfs says base_pfn = 2^64-1 (e.g. a corrupted or hostile guest): cmalab must report it,
    /// not trap (Evaluate.mainArea multiplied it by 4096 unchecked and trapped before a verdict). Run in a child
    /// process so a trap would be observed as a failed exit.
    @Test func hugeBasePFNDoesNotTrap() async {
        await #expect(processExitsWith: .success) {
            var guest = FakeGuest.cma64M()
            guest.files = ["debug/cma/reserved/base_pfn": "18446744073709551615\n"]
            let profile = try! Profile.parse("name: huge-pfn\nmachine: {memory: 2G}\ncmdline: cma=64M\n", file: "t.yaml")
            let lab = try! FakeLab(directory: NSTemporaryDirectory() + "cmalab-fakelab-huge-pfn-\(getppid())")
            _ = lab.runner(FakeLauncher(guest)).run(profile, image: FakeLab.image)
        }
        FakeLab.remove(NSTemporaryDirectory() + "cmalab-fakelab-huge-pfn-\(getpid())")
    }

    /// A debugfs `used` above Int64.max (the guest's word) is clamped by AllocStep.checks, not a trap.
    @Test func hugeUsedCountDoesNotTrap() async {
        await #expect(processExitsWith: .success) {
            var guest = FakeGuest.cma64M()
            guest.files = ["debug/cma/reserved/used": "18446744073709551615\n"]
            let profile = try! Profile.parse("name: huge-used\nmachine: {memory: 2G}\ncmdline: cma=64M\nsteps:\n  - alloc: {area: reserved, pages: 1}\n", file: "t.yaml")
            let lab = try! FakeLab(directory: NSTemporaryDirectory() + "cmalab-fakelab-huge-used-\(getppid())")
            _ = lab.runner(FakeLauncher(guest)).run(profile, image: FakeLab.image)
        }
        FakeLab.remove(NSTemporaryDirectory() + "cmalab-fakelab-huge-used-\(getpid())")
    }

    @Test func nonNumericAndHugeMeminfoAreReportedNotTrapped() throws {
        var guest = FakeGuest.cma64M()
        guest.files = ["debug/cma/reserved/count": "lots\n", "proc/vmstat": "nr_free_cma 99999999999999999999\nnr_free_pages x\n"]
        let p = try Self.profile("name: odd\nmachine: {memory: 2G}\ncmdline: cma=64M\nexpect: {outcome: reserved}\n")
        let (v, _, _) = try Self.run(p, guest)
        #expect(v.kind == .pass, "\(Self.failed(v))")
        #expect(v.observations?.areas.first?.count == nil)
    }
}
