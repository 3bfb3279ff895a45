import Foundation
import Testing
@testable import LabCore

/// Each step kind's room (Sources/LabCore/Steps/): its parsing, its guest scripts and its typed result.
@Suite struct StepKindTests {
    func steps(_ text: String) throws -> [Step] {
        try Profile.parse("name: p\nmachine: {memory: 4G}\ncmdline: cma=1G@1-2G\nsteps:\n" + text, file: "p.yaml").steps
    }

    func message(_ text: String) -> String? {
        do { _ = try steps(text); return nil } catch { return (error as? InputError)?.description }
    }

    // MARK: - Registry

    @Test func registryKeysAndKinds() {
        #expect(Step.syntax.map(\.key) == ["alloc", "free", "exec", "pressure", "release", "dma-alloc", "dma-free", "heap-alloc", "heap-free"])
        #expect(StepKind.allCases.map(\.rawValue) == ["alloc", "free", "exec", "pressure", "release", "dma-alloc", "dma-free", "heap-alloc", "heap-free"])
        #expect(Step.release.kind == .release && !Step.release.usesCMADebugfs)
        #expect(Step.measuredAlloc(MeasuredAlloc(area: "a", pages: nil)).kind == .alloc)
        #expect(Step.free(area: "a", pages: 1, tolerance: .bytes(0)).usesCMADebugfs)
        #expect(!Step.exec(command: "true", status: 0, output: nil, timeout: 1).usesCMADebugfs)
    }

    @Test func unknownAndDoubleKinds() {
        let unknown = message("  - sleep: 1\n")
        #expect(unknown?.hasPrefix("p.yaml:5:5: at `steps[0]`: unknown key `sleep`") == true)
        #expect(unknown?.hasSuffix("allowed keys: alloc, free, exec, pressure, release, dma-alloc, dma-free, heap-alloc, heap-free") == true)
        #expect(message("  - {alloc: {pages: 1}, free: {pages: 1}}\n") == "p.yaml:5:5: at `steps[0]`: give only one of alloc, free")
        #expect(message("  - alloc:\n") == "p.yaml:5:5: at `steps[0]`: needs one of: alloc, free, exec, pressure, release, dma-alloc, dma-free, heap-alloc, heap-free")
    }

    // MARK: - Parsing, one kind at a time

    @Test func alloc() throws {
        #expect(try steps("  - alloc: {area: cma1, pages: 10, expect: failure, tolerance: 2M}\n")
            == [.alloc(AllocStep(area: "cma1", pages: 10, expectSuccess: false, tolerance: .bytes(2 << 20)))])
        #expect(message("  - alloc: {pages: 10, expect: maybe}\n") == "p.yaml:5:32: at `steps[0].alloc.expect`: expect is `success` or `failure`")
    }

    @Test func free() throws {
        #expect(try steps("  - free: {pages: 5}\n") == [.free(FreeStep(area: "reserved", pages: 5, tolerance: Step.defaultFreeTolerance))])
        #expect(message("  - free: {area: reserved}\n") == "p.yaml:5:11: at `steps[0].free`: missing required key `pages`: how many pages to give back")
    }

    @Test func exec() throws {
        #expect(try steps("  - exec: uname -r\n") == [.exec(ExecStep(command: "uname -r", status: 0, output: nil, timeout: 60))])
        #expect(try steps("  - exec: {command: cat x, status: any, output: '^1$', timeout: 5}\n")
            == [.exec(ExecStep(command: "cat x", status: nil, output: "^1$", timeout: 5))])
        #expect(message("  - exec: {status: 0}\n") == "p.yaml:5:11: at `steps[0].exec`: missing required key `command`")
    }

    @Test func pressure() throws {
        #expect(try steps("  - pressure: {size: 512M, kind: file}\n") == [.pressure(PressureStep(target: .bytes(512 << 20), kind: .file))])
        #expect(try steps("  - pressure: {size: 50%, of: free, mlock: true}\n")
            == [.pressure(PressureStep(target: .percentOfFree(50), kind: .anon, pin: false, minInCMA: nil).with { $0.mlock = true })])
        #expect(message("  - pressure: {kind: anon}\n")
            == "p.yaml:5:15: at `steps[0].pressure`: missing required key `size`: how much to fill: bytes (1G) or a share of MemFree (80%)")
    }

    @Test func release() throws {
        #expect(try steps("  - release\n  - release:\n  - release: {}\n") == [.release, .release, .release])
        #expect(message("  - release: now\n") == "p.yaml:5:14: at `steps[0].release`: release takes no settings: write `- release`")
    }

    @Test func measuredAlloc() throws {
        #expect(try steps("  - alloc: {pages: all}\n") == [.measuredAlloc(MeasuredAlloc(area: "reserved", pages: nil))])
        #expect(try steps("  - alloc: {pages: 7, repeat: 2}\n") == [.measuredAlloc(MeasuredAlloc(area: "reserved", pages: 7, repeats: 2))])
        #expect(message("  - alloc: {repeat: 2}\n") == "p.yaml:5:12: at `steps[0].alloc`: missing required key `pages`: how many 4 KiB pages to allocate, or `all`")
    }

    // MARK: - Guest scripts

    @Test func pressureScriptForAnonymousMemory() {
        let step = PressureStep(target: .bytes(1 << 30))
        #expect(step.split(1 << 30).anon == 1 << 30 && step.split(1 << 30).file == 0)
        #expect(step.guestScript(index: 2, target: 1 << 30) == """
            set -e
            setsid /sbin/cmalab-agent hold-memory 1073741824 >/tmp/cmalab-pressure-2.out 2>&1 </dev/null &
            echo $! >/tmp/cmalab-pressure-2.pid
            while ! grep -q held /tmp/cmalab-pressure-2.out; do kill -0 $(cat /tmp/cmalab-pressure-2.pid) 2>/dev/null || { cat /tmp/cmalab-pressure-2.out; exit 1; }; sleep 0.2; done
            cat /tmp/cmalab-pressure-2.out

            """)
    }

    @Test func pressureScriptForFilesWritesWholeMiB() {
        let step = PressureStep(target: .bytes(0), kind: .file)
        #expect(step.guestScript(index: 0, target: (100 << 20) + 5) == """
            set -e
            mount -o remount,size=95% /tmp
            dd if=/dev/zero of=/tmp/cmalab-pressure-0.fill bs=1M count=100 2>/dev/null

            """)
        #expect(step.heldBytes(target: (100 << 20) + 5, output: "") == 100 << 20)
    }

    @Test func pressureScriptForMixedPinnedAndMlocked() {
        let pinned = PressureStep(target: .bytes(0), kind: .mixed, pin: true)
        let script = pinned.guestScript(index: 1, target: 64 << 20)
        #expect(pinned.split(64 << 20).anon == 32 << 20 && pinned.split(64 << 20).file == 32 << 20)
        #expect(script.contains("dd if=/dev/zero of=/tmp/cmalab-pressure-1.fill bs=1M count=32 2>/dev/null\n"))
        #expect(script.contains("setsid /sbin/cmalab-agent hold-memory 33554432 pin >/tmp/cmalab-pressure-1.out"))
        let mlocked = PressureStep(target: .bytes(0)).with { $0.mlock = true }
        #expect(mlocked.guestScript(index: 1, target: 4096).contains("hold-memory 4096 mlock >"))
        #expect(PressureStep(target: .percentOfFree(80), kind: .mixed, pin: true).summary(target: 64 << 20) == "pressure 80% of MemFree (64M) mixed pinned")
    }

    @Test func pressureHeldAndLent() {
        let mixed = PressureStep(target: .bytes(0), kind: .mixed)
        #expect(mixed.heldBytes(target: 64 << 20, output: "held 33554432\n") == 64 << 20)
        #expect(mixed.heldBytes(target: 64 << 20, output: "oops\n") == 32 << 20)
        let m = MeminfoSnapshot(label: "x", cmaTotalKiB: 1 << 20, cmaFreeKiB: (1 << 20) - 4096, memTotalKiB: nil, memFreeKiB: nil)
        #expect(PressureStep.lentPages(m, usedPages: 24) == 1000)
        #expect(PressureStep.lentPages(m, usedPages: 5000) == 0)
        #expect(PressureStep.lentPages(nil, usedPages: 0) == nil)
    }

    @Test func releaseScriptStopsHoldersAndDeletesFiles() {
        #expect(ReleaseStep.guestScript.hasPrefix("for f in /tmp/cmalab-pressure-*.pid; do\n"))
        #expect(ReleaseStep.guestScript.hasSuffix("\nrm -f /tmp/cmalab-pressure-*"))
    }

    @Test func measuredAllocGuestSide() {
        let m = MeasuredAlloc(area: "reserved", pages: nil, repeats: 3)
        #expect(m.attemptCommand(pages: 262144) == "/sbin/cmalab-agent timed-write '/sys/kernel/debug/cma/reserved/alloc' 262144")
        #expect(m.summary(pages: 262144) == "alloc 262144 pages from reserved (the whole area) × 3")
        let timed = MeasuredAlloc.parseTimedWrite("ns=1500 errno=12\n")
        #expect(timed?.0 == 1500 && timed?.1 == 12)
        #expect(MeasuredAlloc.parseTimedWrite("ns=1500\n") == nil)
        #expect(MeasuredAlloc.vmstatDelta(before: ["pgmigrate_success": 5, "nr_free_pages": 1], after: ["pgmigrate_success": 9, "nr_free_pages": 7, "compact_stall": 1])
            == ["pgmigrate_success": 4, "compact_stall": 1])
    }

    // MARK: - Typed results and their wire shape

    @Test func typedResultsKeepTheRecordShape() throws {
        let before = MeminfoSnapshot(label: "step0-pressure-before", cmaTotalKiB: 4, cmaFreeKiB: 4, memTotalKiB: 8, memFreeKiB: 8)
        var result = PressureStepResult(status: 0)
        result.before = before
        result.output = "held 4096\n"
        result.pressureBytes = 4096
        result.heldBytes = 4096
        result.cmaLentPages = 1
        let record = StepRecord(index: 0, kind: .pressure, summary: "p", seconds: 2, result: result)
        // The record as ProfileRunner filled it field by field before the kinds had typed results.
        var old = StepRecord(index: 0, kind: .pressure, summary: "p", status: 0, seconds: 2)
        old.before = before; old.output = "held 4096\n"; old.pressureBytes = 4096; old.heldBytes = 4096; old.cmaLentPages = 1
        #expect(record == old)
        #expect(PressureStepResult(record) == result)

        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys]
        let json = String(decoding: try encoder.encode(record), as: UTF8.self)
        #expect(json.contains("\"kind\":\"pressure\""))
        #expect(!json.contains("areaBefore") && !json.contains("attemptErrnos"))
        #expect(try JSONDecoder().decode(StepRecord.self, from: Data(json.utf8)) == record)

        let exec = ExecStepResult(status: 3, output: "x")
        #expect(ExecStepResult(StepRecord(index: 1, kind: .exec, summary: "c", seconds: 0, result: exec)) == exec)
        let write = CMAWriteResult(status: 12, before: nil, after: before, areaBefore: nil, areaAfter: nil)
        #expect(CMAWriteResult(StepRecord(index: 2, kind: .free, summary: "f", seconds: 0, result: write)) == write)
    }
}

extension PressureStep {
    /// A copy changed by `change`.
    func with(_ change: (inout PressureStep) -> Void) -> PressureStep {
        var copy = self
        change(&copy)
        return copy
    }
}
