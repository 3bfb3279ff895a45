import Foundation
import Testing
@testable import LabCore

/// The memory picture of an arm64 `virt` guest, from a real boot (cma-6.12-arm64, 2 GiB, a 16 MiB no-map region at
/// 0x60000000 and a 64 MiB `linux,cma` pool whose window contains it; the console of Profiles/arm64/dt-nomap-hole).
@Suite struct DeviceTreeMapTests {
    static func observations() throws -> Observations {
        let lines = try Fixture.text("console-6.12-arm64-virt-2G-dt-nomap.log").split(separator: "\n").map(String.init)
        var o = Observations(profile: "dt-nomap-hole", image: "cma-6.12-arm64", machine: MachineSpec(memory: .gib(2), type: .virt, architecture: .arm64),
                             commandLine: KernelCommandLine(parsing: "console=ttyAMA0"), accelerator: "tcg", ending: .poweredOff,
                             boot: KernelLogParser.facts(from: lines))
        o.areas = [AreaSnapshot(name: "linux,cma", basePFN: 0x5c000, count: 16384, used: 0, maxchunk: nil, orderPerBit: 0, sysfs: [:])]
        return o
    }

    @Test func theBootFactsHoldTheDeviceTreeLines() throws {
        let facts = try Self.observations().boot
        #expect(facts.deviceTree.model == "linux,dummy-virt")
        #expect(facts.deviceTree.pools == [ReservedArea(sizeMiB: 64, base: 0x5c00_0000)])
        #expect(facts.deviceTree.regions.contains(ReservedMemoryRegion(start: 0x6000_0000, end: 0x60ff_ffff, map: false, reusable: false, name: "firmware@60000000")))
        // The memory node ranges come split at the no-map region (memblock keeps it as a range marked nomap).
        #expect(facts.nodeMemory == [NodeMemoryRange(node: 0, start: 0x4000_0000, end: 0x5fff_ffff),
                                     NodeMemoryRange(node: 0, start: 0x6000_0000, end: 0x60ff_ffff),
                                     NodeMemoryRange(node: 0, start: 0x6100_0000, end: 0xbfff_ffff)])
        #expect(facts.e820.isEmpty && facts.reserved.isEmpty)
    }

    @Test func regionsComeFromTheMemoryNodeWithTheNoMapRegionCutOut() throws {
        let scene = MemoryMapScene.build(try Self.observations())
        let r = scene.regions.map { ($0.start, $0.end, $0.kind, $0.label) }
        #expect(r.count == 4)
        #expect(r[0] == (0, 0x4000_0000, .unmapped, "devices, no RAM"))
        #expect(r[1] == (0x4000_0000, 0x6000_0000, .usable, "memory"))
        #expect(r[2] == (0x6000_0000, 0x6100_0000, .reserved, "no-map firmware@60000000"))
        #expect(r[3] == (0x6100_0000, 0xc000_0000, .usable, "memory"))
        // The kernel where QEMU's virt loads it, and the pool as a CMA area inside RAM.
        #expect(scene.marks.contains { $0.kind == .kernel && $0.start == 0x4020_0000 })
        #expect(scene.marks.contains { $0.kind == .cma && $0.name == "linux,cma" && $0.start == 0x5c00_0000 && $0.end == 0x6000_0000 })
        #expect(scene.notes.contains { $0.hasPrefix("A device-tree machine (linux,dummy-virt)") })
        #expect(!scene.notes.contains { $0.contains("no BIOS-e820 lines") })
    }

    @Test func theArchitectureOfAnELFFileIsItsMachineField() {
        var header = [UInt8](repeating: 0, count: 64)
        header[0...5] = [0x7f, 0x45, 0x4c, 0x46, 2, 1]
        header[18] = 183
        #expect(ELF64(header)?.architecture == .arm64)
        header[18] = 62
        #expect(ELF64(header)?.architecture == .x86_64)
        header[18] = 40   // 32-bit ARM
        #expect(ELF64(header)?.architecture == nil)
    }

    /// The device question on a device-tree default pool: a 32-bit device reaches the whole pool below 2 GiB.
    @Test func theDeviceTreeDefaultPoolIsWhatTheDMAAPIAsks() {
        var p = CMAPrediction(kernel: "6.12.117", machine: "virt, 2G", outcome: .reserved, observableOutcome: .reserved)
        p.dmaCMA = true
        p.deviceTreePools = [PredictedArea(name: "linux,cma", sizeMiB: 64, sizeBytes: 64 << 20, baseMin: 0x7c00_0000, baseMax: 0x7c00_0000, node: nil)]
        #expect(Oracle.reach(mask: 32, p).fromCMA == 0)
        p.deviceTreeDefault = "linux,cma"
        #expect(Oracle.reach(mask: 32, p).fromCMA == 64 << 20)
        #expect(Oracle.predictDMA(size: 16 << 20, mask: 32, held: 0, p) == .cma)
    }
}
