import Foundation
import Testing
@testable import LabCore

/// The device step kinds (Steps/DMA.swift, Steps/Heap.swift, `pressure: {pin: longterm}`): parsing and its
/// messages, what the guest's tools print, the checks, and the skip reasons.
@Suite struct DeviceStepTests {
    func profile(_ steps: String) throws -> Profile {
        try Profile.parse("name: p\nmachine: {memory: 4G}\ncmdline: cma=1G@1-2G\nsteps:\n" + steps, file: "p.yaml")
    }

    func message(_ steps: String) -> String? {
        do { _ = try profile(steps); return nil } catch { return (error as? InputError)?.description }
    }

    // MARK: - Parsing

    @Test func dmaAllocParses() throws {
        #expect(try profile("  - dma-alloc: {size: 1G, mask: 32, call: coherent, from: cma}\n  - dma-free\n").steps
            == [.dmaAlloc(DMAAllocStep(size: 1 << 30, mask: 32, call: .coherent, expectSuccess: true, from: .cma)), .dmaFree])
        #expect(try profile("  - dma-alloc: {size: 2M, mask: 64, call: pages, expect: failure, tolerance: 2%}\n").steps
            == [.dmaAlloc(DMAAllocStep(size: 2 << 20, mask: 64, call: .pages, expectSuccess: false, tolerance: .percent(2)))])
        #expect(Step.dmaAlloc(DMAAllocStep(size: 1, mask: 32)).kind == .dmaAlloc)
        #expect(Step.dmaFree.kind == .dmaFree && Step.dmaFree.usesTestDriver && !Step.dmaFree.usesCMADebugfs)
    }

    @Test func dmaAllocMessages() {
        #expect(message("  - dma-alloc: {size: 1G}\n") == "p.yaml:5:16: at `steps[0].dma-alloc`: missing required key `mask`: the device's DMA mask in bits, e.g. 32 for a 32-bit device")
        #expect(message("  - dma-alloc: {size: 1G, mask: 65}\n")?.contains("steps[0].dma-alloc.mask") == true)
        #expect(message("  - dma-alloc: {size: 0, mask: 32}\n")?.hasSuffix("size is more than 0 and at most 1T") == true)
        #expect(message("  - dma-alloc: {size: 1G, mask: 32, call: streaming}\n")?.contains("coherent, pages, noncoherent") == true)
        #expect(message("  - dma-alloc: {size: 1G, mask: 32, expect: failure, from: cma}\n")?.hasSuffix("`from` says where a successful allocation comes from: drop it with `expect: failure`") == true)
        #expect(message("  - dma-free: {id: 3}\n")?.hasSuffix("dma-free takes no settings: it frees every allocation of the earlier dma-alloc steps") == true)
    }

    @Test func heapParsesAndRefusesNamesOutsideTheSafeSet() throws {
        #expect(try profile("  - heap-alloc: {heap: reserved, size: 256M}\n  - heap-free\n").steps
            == [.heapAlloc(HeapAllocStep(heap: "reserved", size: 256 << 20)), .heapFree])
        #expect(try profile("  - heap-alloc: {heap: 'linux,cma', size: 1M, expect: failure}\n").steps
            == [.heapAlloc(HeapAllocStep(heap: "linux,cma", size: 1 << 20, expectSuccess: false))])
        for bad in ["'a b'", "'x;reboot'", "'../x'", "''", "'..'"] {
            #expect(message("  - heap-alloc: {heap: \(bad), size: 1M}\n")?.contains("only [A-Za-z0-9._,-]") == true, "\(bad)")
        }
    }

    @Test func longtermPinParses() throws {
        guard case .pressure(let p) = try profile("  - pressure: {size: 1G, pin: longterm}\n").steps[0] else { Issue.record("not a pressure"); return }
        #expect(p.longterm && !p.pin && p.usesTestDriver)
        #expect(p.guestScript(index: 0, target: 1 << 30).contains("hold-memory 1073741824 longterm >"))
        #expect(p.summary(target: 1 << 30) == "pressure 1G (1G) anon long-term pinned")
        #expect(message("  - pressure: {size: 1G, pin: forever}\n")?.hasSuffix("pin is true (vmsplice: references migration cannot move), false, or `longterm` (FOLL_LONGTERM: moved out of CMA first)") == true)
        #expect(message("  - pressure: {size: 1G, pin: longterm, mlock: true}\n")?.hasSuffix("give pin or mlock, not both") == true)
        #expect(message("  - pressure: {size: 1G, kind: file, pin: longterm}\n") != nil)
    }

    // MARK: - Skips

    @Test func unmetRequirementsNameTheOptionAndWhy() throws {
        let p = try profile("""
              - dma-alloc: {size: 1G, mask: 32, from: cma}
              - heap-alloc: {heap: reserved, size: 1M}
              - heap-alloc: {heap: system, size: 1M}
              - alloc: {area: reserved, pages: 1}

            """)
        let onlyModules = p.unmetRequirements(image: "img", isEnabled: { $0 == "MODULES" })
        #expect(onlyModules.map(\.index) == [0, 1, 2])
        #expect(onlyModules[0].reason == "image img has no CONFIG_DMA_CMA (the DMA API takes CMA memory only with CONFIG_DMA_CMA)")
        #expect(onlyModules[1].reason == "image img has no CONFIG_DMABUF_HEAPS (dma-buf heaps (/dev/dma_heap) need CONFIG_DMABUF_HEAPS)")
        let heapsButNoCMAHeap = p.unmetRequirements(image: "img", isEnabled: { ["MODULES", "DMA_CMA", "DMABUF_HEAPS", "DMABUF_HEAPS_SYSTEM"].contains($0) })
        #expect(heapsButNoCMAHeap.map(\.index) == [1])
        #expect(p.unmetRequirements(image: "img", isEnabled: { _ in true }).isEmpty)
    }

    // MARK: - What the guest prints

    @Test func dmaOutputParsing() {
        let step = DMAAllocStep(size: 1 << 30, mask: 32)
        let ok = DMAAllocation.parse("errno=0 id=3 dma=0x3f400000 phys=0x3f400000 ns=81234\n", step: step)
        #expect(ok == DMAAllocation(maskBits: 32, call: .coherent, size: 1 << 30, errno: 0, id: 3, dmaAddress: 0x3f40_0000,
                                    physicalAddress: 0x3f40_0000, nanoseconds: 81234))
        #expect(DMAAllocation.parse("errno=12\n", step: step) == DMAAllocation(maskBits: 32, call: .coherent, size: 1 << 30, errno: 12))
        // The guest's word: malformed lines give nothing, never a trap.
        for bad in ["", "errno=-1", "errno=0 id=3", "errno=0 id=99999999999 dma=0x0 phys=0x0 ns=1", "errno=0 id=1 dma=12 phys=0x0 ns=1",
                    "errno=0 id=1 dma=0xfffffffffffffffff phys=0x0 ns=1", "errno=99999999999"] {
            #expect(DMAAllocation.parse(bad, step: step) == nil, "\(bad)")
        }
        #expect(HeapAllocStep.errno(in: "errno=2 open /dev/dma_heap/x\n") == 2)
        #expect(HeapAllocStep.nanoseconds(in: "held 268435456 ns=1200\n") == 1200)
        #expect(HeapAllocStep.errno(in: "errno=abc\n") == nil)
    }

    @Test func areaHoldingAnAddressUsesCheckedArithmetic() {
        let areas = [snap(name: "reserved", basePFN: 0x3f400, count: 262144),
                     snap(name: "forged", basePFN: UInt64.max, count: UInt64.max)]
        #expect(DMAAllocation.area(holding: 0x3f40_0000, size: 1 << 30, in: areas)?.name == "reserved")
        #expect(DMAAllocation.area(holding: 0x3f40_0000, size: (1 << 30) + 4096, in: areas) == nil)
        #expect(DMAAllocation.area(holding: 0x1000, size: 4096, in: areas) == nil)
        #expect(DMAAllocation.area(holding: UInt64.max - 10, size: 4096, in: areas) == nil)
    }

    @Test func maskFit() {
        #expect(DMAAllocStep.fits(address: 0xc000_0000, size: 1 << 30, bits: 32))
        #expect(!DMAAllocStep.fits(address: 0xc000_1000, size: 1 << 30, bits: 32))
        #expect(DMAAllocStep.fits(address: UInt64.max, size: 1, bits: 64))
        #expect(!DMAAllocStep.fits(address: UInt64.max, size: 2, bits: 64))
    }

    // MARK: - Checks

    func context() -> StepCheckContext { StepCheckContext(name: "steps[0].dma-alloc", cmaTotal: 1 << 30, bootFree: nil) }
    func meminfo(_ label: String, cmaFreeKiB: UInt64) -> MeminfoSnapshot {
        MeminfoSnapshot(label: label, cmaTotalKiB: 1 << 20, cmaFreeKiB: cmaFreeKiB, memTotalKiB: 4 << 20, memFreeKiB: 3 << 20)
    }

    @Test func dmaChecksFromCMA() {
        let step = DMAAllocStep(size: 1 << 30, mask: 32, from: .cma)
        var r = DMAAllocResult(status: 0)
        r.device = DMAAllocation(maskBits: 32, call: .coherent, size: 1 << 30, errno: 0, id: 1, dmaAddress: 0x3f40_0000,
                                 physicalAddress: 0x3f40_0000, nanoseconds: 1, area: "reserved")
        r.before = meminfo("b", cmaFreeKiB: 1 << 20); r.after = meminfo("a", cmaFreeKiB: 0)
        r.areaBefore = snap(name: "reserved", basePFN: 0x3f400, count: 262144, used: 0)
        r.areaAfter = snap(name: "reserved", basePFN: 0x3f400, count: 262144, used: 262144)
        let checks = step.checks(r, context())
        #expect(checks.map(\.name) == ["steps[0].dma-alloc", "steps[0].dma-alloc.mask", "steps[0].dma-alloc.from",
                                       "steps[0].dma-alloc.cma-free-drop", "steps[0].dma-alloc.used-delta"])
        #expect(checks.allSatisfy { $0.passed })
        #expect(checks[0].observed == "success at dma 0x3f400000 (CMA area reserved)")
        #expect(checks[1].observed == "0x3f400000-0x7f3fffff")
    }

    /// Pages movable allocations borrowed from the area were not free before: CmaFree drops by less (seen: a
    /// 64 MiB dma_alloc_pages dropped CmaFree by 63484 kB on an 8 GiB guest with the area at 4 GiB).
    @Test func cmaFreeDropAllowsForPagesLentOutBefore() {
        let before = MeminfoSnapshot(label: "b", cmaTotalKiB: 262144, cmaFreeKiB: 262144 - 2052, memTotalKiB: 8 << 20, memFreeKiB: 7 << 20)
        let after = MeminfoSnapshot(label: "a", cmaTotalKiB: 262144, cmaFreeKiB: 262144 - 2052 - 63484, memTotalKiB: 8 << 20, memFreeKiB: 7 << 20)
        let ok = DMAAllocStep.cmaFreeDrop(size: 64 << 20, tolerance: .percent(1), before: before, after: after, usedBefore: 0, name: "d")
        #expect(ok?.passed == true)
        #expect(ok?.expected == "64M ±1% less up to 2052 kB lent out before")
        // Without lent pages the same drop is too small.
        let noLent = MeminfoSnapshot(label: "b", cmaTotalKiB: 262144, cmaFreeKiB: 262144, memTotalKiB: 8 << 20, memFreeKiB: 7 << 20)
        let short = MeminfoSnapshot(label: "a", cmaTotalKiB: 262144, cmaFreeKiB: 262144 - 63484, memTotalKiB: 8 << 20, memFreeKiB: 7 << 20)
        #expect(DMAAllocStep.cmaFreeDrop(size: 64 << 20, tolerance: .percent(1), before: noLent, after: short, usedBefore: 0, name: "d")?.passed == false)
        // More than the size never passes.
        let over = MeminfoSnapshot(label: "a", cmaTotalKiB: 262144, cmaFreeKiB: 262144 - 2052 - 70000, memTotalKiB: 8 << 20, memFreeKiB: 7 << 20)
        #expect(DMAAllocStep.cmaFreeDrop(size: 64 << 20, tolerance: .percent(1), before: before, after: over, usedBefore: 0, name: "d")?.passed == false)
    }

    @Test func dmaChecksCatchWrongSourceAndMask() {
        // A 32-bit device got memory above 4 GiB from the buddy allocator: both checks fail.
        let step = DMAAllocStep(size: 2 << 20, mask: 32, from: .cma)
        var r = DMAAllocResult(status: 0)
        r.device = DMAAllocation(maskBits: 32, call: .coherent, size: 2 << 20, errno: 0, id: 1, dmaAddress: 0x1_0000_0000,
                                 physicalAddress: 0x1_0000_0000, nanoseconds: 1)
        let checks = step.checks(r, context())
        #expect(checks.filter { !$0.passed }.map(\.name) == ["steps[0].dma-alloc.mask", "steps[0].dma-alloc.from"])
        #expect(checks[2].observed == "buddy")
        // Expected failure, observed ENOMEM.
        let failing = DMAAllocStep(size: 1 << 30, mask: 32, expectSuccess: false)
        var f = DMAAllocResult(status: 12)
        f.device = DMAAllocation(maskBits: 32, call: .coherent, size: 1 << 30, errno: 12)
        #expect(failing.checks(f, context()).map(\.observed) == ["failure (ENOMEM)"])
        #expect(failing.checks(f, context()).allSatisfy { $0.passed })
        #expect(!DMAAllocStep(size: 1 << 30, mask: 32).checks(f, context())[0].passed)
    }

    @Test func heapChecks() {
        let step = HeapAllocStep(heap: "reserved", size: 256 << 20)
        var r = HeapAllocResult(status: 0)
        r.before = meminfo("b", cmaFreeKiB: 1 << 20); r.after = meminfo("a", cmaFreeKiB: (1 << 20) - (256 << 10))
        r.areaBefore = snap(name: "reserved", used: 0)
        r.areaAfter = snap(name: "reserved", used: 65536)
        let ctx = StepCheckContext(name: "steps[0].heap-alloc", cmaTotal: 1 << 30, bootFree: nil)
        #expect(step.checks(r, ctx).allSatisfy { $0.passed })
        r.areaAfter = snap(name: "reserved", used: 100)
        #expect(step.checks(r, ctx).filter { !$0.passed }.map(\.name) == ["steps[0].heap-alloc.used-delta"])
        // The system heap has no area: only the result is checked.
        var s = HeapAllocResult(status: 0)
        s.before = meminfo("b", cmaFreeKiB: 1 << 20); s.after = meminfo("a", cmaFreeKiB: 1 << 20)
        #expect(HeapAllocStep(heap: "system", size: 1 << 20).checks(s, ctx).count == 1)
        #expect(HeapFreeStep.guestScript.contains("freed=$n"))
        #expect(step.guestScript(index: 2).contains("hold-heap 'reserved' 268435456 >/tmp/cmalab-heap-2.out"))
    }

    @Test func resultsRoundTripThroughTheRecord() throws {
        var r = DMAAllocResult(status: 0)
        r.device = DMAAllocation(maskBits: 64, call: .pages, size: 4096, errno: 0, id: 2, dmaAddress: 1, physicalAddress: 1, nanoseconds: 5, area: "reserved")
        let record = StepRecord(index: 0, kind: .dmaAlloc, summary: "s", seconds: 0, result: r)
        let decoded = try JSONDecoder().decode(StepRecord.self, from: JSONEncoder().encode(record))
        #expect(DMAAllocResult(decoded) == r)
        let free = DMAFreeResult(status: 0, freed: 3, before: nil, after: nil)
        #expect(DMAFreeResult(StepRecord(index: 1, kind: .dmaFree, summary: "f", seconds: 0, result: free)) == free)
    }
}

/// An area snapshot with only the fields a test sets.
private func snap(name: String, basePFN: UInt64? = nil, count: UInt64? = nil, used: UInt64? = nil) -> AreaSnapshot {
    AreaSnapshot(name: name, basePFN: basePFN, count: count, used: used, maxchunk: nil, orderPerBit: nil, sysfs: [:])
}
