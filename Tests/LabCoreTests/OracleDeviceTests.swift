import Foundation
import Testing
@testable import LabCore

/// The oracle's device question (OracleDevices.swift): what a device with an n-bit DMA mask can get from the
/// default area, and what each dma-alloc step will do, on predictions from the real rules.
@Suite struct OracleDeviceTests {
    func predict(_ mem: ByteSize, _ cma: String, config: KernelConfig? = nil) -> CMAPrediction {
        Oracle.predict(OracleInput(version: KernelVersion(6, 12, 117), config: config, machine: MachineSpec(memory: mem, type: .pc),
                                   commandLine: KernelCommandLine(parsing: "console=ttyS0 " + cma), initrdSize: 0xfc800,
                                   kernelImage: KernelImageInfo(initSize: 0xe10000, imageEnd: 0x1a18000)))
    }

    @Test func theSeedsAreaIsReachableByA32BitDevice() {
        let p = predict(.gib(4), "cma=1G@1-2G")
        let r = Oracle.reach(mask: 32, p)
        #expect(r.fromCMA == 1 << 30 && !r.uncertain)
        #expect(r.sentence.hasPrefix("a 32-bit device can allocate up to 1024 MiB from `reserved`"))
        #expect(Oracle.predictDMA(size: 1 << 30, mask: 32, held: 0, p) == .cma)
        // A second GiB does not fit beside the first: nothing that large is left anywhere.
        #expect(Oracle.predictDMA(size: 1 << 30, mask: 32, held: 1 << 30, p) == .failure)
        #expect(Oracle.predictDMA(size: 2 << 20, mask: 32, held: 1 << 30, p) == .buddy)
        // One page never comes from CMA (dma_alloc_contiguous leaves it to the buddy allocator).
        #expect(Oracle.predictDMA(size: 4096, mask: 32, held: 0, p) == .buddy)
    }

    @Test func anAreaAbove4GiBIsOutOfA32BitDevicesReach() {
        let p = predict(.gib(8), "cma=2G")
        #expect(p.area?.baseMin == 0x1_0000_0000)
        let r32 = Oracle.reach(mask: 32, p)
        #expect(r32.fromCMA == 0 && !r32.uncertain)
        #expect(r32.sentence.contains("gets nothing from `reserved`"))
        #expect(Oracle.predictDMA(size: 1 << 30, mask: 32, held: 0, p) == .failure)
        #expect(Oracle.predictDMA(size: 2 << 20, mask: 32, held: 0, p) == .buddy)
        #expect(Oracle.predictDMA(size: 1 << 30, mask: 64, held: 0, p) == .cma)
        #expect(Oracle.reach(mask: 36, p).fromCMA == 2 << 30)
        // Masks below 32 bits depend on ZONE_DMA: no prediction.
        #expect(Oracle.predictDMA(size: 1 << 20, mask: 24, held: 0, p) == nil)
    }

    @Test func noDMACMAOrNoAreaMeansNothingFromCMA() {
        let noDMACMA = predict(.gib(4), "cma=1G", config: KernelConfig(values: ["CONFIG_CMA": "y"]))
        #expect(noDMACMA.dmaCMA == false)
        #expect(Oracle.reach(mask: 64, noDMACMA).sentence.contains("no CONFIG_DMA_CMA"))
        let noArea = predict(.gib(4), "")
        #expect(Oracle.reach(mask: 64, noArea).fromCMA == 0)
        #expect(Oracle.predictDMA(size: 8 << 20, mask: 64, held: 0, noArea) == .failure)
    }

    @Test func dmaStepsAreComparedWithThePrediction() {
        let p = predict(.gib(8), "cma=2G")
        var o = Observations(profile: "x", image: "i", machine: MachineSpec(memory: .gib(8), type: .pc), commandLine: KernelCommandLine(parsing: "cma=2G"),
                             accelerator: "tcg", ending: .poweredOff, boot: BootLogFacts())
        func step(_ i: Int, _ a: DMAAllocation) -> StepRecord {
            var r = DMAAllocResult(status: a.errno); r.device = a
            return StepRecord(index: i, kind: .dmaAlloc, summary: "", seconds: 0, result: r)
        }
        o.steps = [step(0, DMAAllocation(maskBits: 32, call: .coherent, size: 1 << 30, errno: 12)),
                   step(1, DMAAllocation(maskBits: 64, call: .coherent, size: 1 << 30, errno: 0, id: 1, dmaAddress: 1 << 32, physicalAddress: 1 << 32, nanoseconds: 1, area: "reserved"))]
        #expect(Oracle.compareDevices(p, with: o).isEmpty)
        // A 32-bit device that got its GiB would contradict the oracle.
        o.steps[0] = step(0, DMAAllocation(maskBits: 32, call: .coherent, size: 1 << 30, errno: 0, id: 1, dmaAddress: 0x4000_0000, physicalAddress: 0x4000_0000, nanoseconds: 1))
        #expect(Oracle.compareDevices(p, with: o) == ["steps[0].dma-alloc: predicted failure, observed buddy"])
    }
}
