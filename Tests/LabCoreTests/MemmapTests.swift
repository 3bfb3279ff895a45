import Foundation
import Testing
@testable import LabCore

/// `memmap=` as the kernel applies it (Memmap.swift), checked against the `user-defined physical RAM map` two real
/// 6.12 boots printed (8 GiB pc guests: a reserved hole below 2 GiB; 4 GiB reserved from 4 GiB plus a `%` type
/// change), the oracle's prediction on those maps, a twin's parameters read back, and NUMA nodes for a twin.
@Suite struct MemmapTests {
    static let consoles = [
        ("console-6.12-pc-8G-memmap-hole-cma-1G@1-2G.log", ReservedArea(sizeMiB: 1024, base: 0x2000_0000, node: -1)),
        ("console-6.12-pc-8G-memmap-percent-cma-512M.log", ReservedArea(sizeMiB: 512, base: 0x2_0000_0000, node: -1)),
    ]

    @Test(arguments: consoles)
    func theKernelsUserDefinedMapIsReproduced(name: String, area: ReservedArea) throws {
        let facts = HostLog.read(try Fixture.text(name))
        let line = KernelCommandLine(parsing: try #require(facts.boot.commandLine))
        let (map, problems) = Memmap.apply(line, to: facts.boot.e820)
        #expect(problems.isEmpty)
        #expect(!facts.userMap.isEmpty)
        #expect(map == facts.userMap)
        #expect(facts.boot.reserved == [area])
    }

    @Test(arguments: consoles)
    func theOraclePredictsOnTheMapTheKernelUses(name: String, area: ReservedArea) throws {
        let facts = HostLog.read(try Fixture.text(name))
        let rd = try #require(facts.boot.ramdisk)
        let input = OracleInput(version: KernelVersion(6, 12, 117), config: nil, machine: MachineSpec(memory: .gib(8)),
                                commandLine: KernelCommandLine(parsing: try #require(facts.boot.commandLine)), initrdSize: rd.size)
        let p = Oracle.predict(input)
        #expect(p.outcome == .reserved)
        #expect(p.area?.baseMin == area.base && p.area?.baseMax == area.base, "\(p.summary)")
        #expect(p.assumptions.contains { $0.hasPrefix("`memmap=` gives the kernel its own map") })
        // Without the memmap= the prediction is elsewhere: the map matters.
        var plain = input
        plain.commandLine = KernelCommandLine(plain.commandLine.parameters.filter { $0.key != "memmap" })
        #expect(Oracle.predict(plain).area?.baseMin != area.base)
    }

    @Test func aTwinsParametersReadBackAsItsMap() throws {
        let host = HostLog.read(try Fixture.text("host-firecracker-24G-dmesg.log"))
        let plan = try TwinPlan.plan(map: host.effectiveMap, budget: 1500)
        let line = KernelCommandLine(parsing: plan.parameters.joined(separator: " "))
        let qemu = GuestMemoryMap(machine: .pc, memory: plan.machine.memory.bytes, maxRAMBelow4G: plan.lowMemory)
        #expect(Memmap.apply(line, to: qemu.e820).map == Memmap.sanitize(plan.map))
        #expect(GuestMemoryMap.kernelView(plan.machine, commandLine: line).lowRAMEnd == plan.lowMemory)
    }

    @Test func numbersAndOddInputsAreReadAsTheKernelReadsThem() {
        #expect(Memmap.memparse("0x1000@")! == (0x1000, "@"))
        #expect(Memmap.memparse("010")! == (8, ""))
        #expect(Memmap.memparse("4G$1")! == (4 << 30, "$1"))
        #expect(Memmap.memparse("0")! == (0, ""))
        #expect(Memmap.memparse("x") == nil)
        #expect(Memmap.memparse("99999999999999999999") == nil)
        #expect(Memmap.memparse("16E") == nil)
        let base = [MemoryRange(start: 0, end: 0x7fff_ffff, type: "usable")]
        // A limit, a range past the top of the address space, an unknown operator: the first applies, the rest are named.
        let (map, problems) = Memmap.apply(KernelCommandLine(parsing: "memmap=1G memmap=2G$0xffffffffffffffff memmap=1M^0x1000 memmap=junk"), to: base)
        #expect(map == [MemoryRange(start: 0, end: 0x3fff_ffff, type: "usable")])
        #expect(problems.count == 3)
        // ACPI data wins over reserved, reserved over usable; touching ranges of one type are one.
        let (m2, _) = Memmap.apply(KernelCommandLine(parsing: "memmap=exactmap memmap=1G@0 memmap=16M$0x1000000 memmap=8M#0x1000000 memmap=1G@0x40000000"), to: base)
        #expect(m2 == [MemoryRange(start: 0, end: 0xff_ffff, type: "usable"),
                       MemoryRange(start: 0x100_0000, end: 0x17f_ffff, type: "ACPI data"),
                       MemoryRange(start: 0x180_0000, end: 0x1ff_ffff, type: "reserved"),
                       MemoryRange(start: 0x200_0000, end: 0x7fff_ffff, type: "usable")])
    }

    /// A two-socket host: node 0 has low RAM and 2 GiB above 4 GiB, node 1 the next 4 GiB; the SRAT also lists a
    /// hot-pluggable range far past the RAM, as servers do.
    @Test func aTwoNodeHostGetsATwoNodeTwin() throws {
        let map = [MemoryRange(start: 0, end: 0x9fbff, type: "usable"),
                   MemoryRange(start: 0x10_0000, end: 0x7fff_ffff, type: "usable"),
                   MemoryRange(start: 0x8000_0000, end: 0xffff_ffff, type: "reserved"),
                   MemoryRange(start: 0x1_0000_0000, end: 0x2_7fff_ffff, type: "usable")]
        let srat = [NodeMemoryRange(node: 0, start: 0, end: 0x7fff_ffff), NodeMemoryRange(node: 0, start: 0x1_0000_0000, end: 0x1_7fff_ffff),
                    NodeMemoryRange(node: 1, start: 0x1_8000_0000, end: 0x2_7fff_ffff), NodeMemoryRange(node: 1, start: 0x100_0000_0000, end: 0x1ff_ffff_ffff)]
        let plan = try TwinPlan.plan(map: map, nodes: srat, budget: 1500)
        #expect(plan.lowMemory == 0x8000_0000)
        #expect(plan.machine.numaNodes == [.gib(4), .gib(4)])
        #expect(plan.machine.cpus == 2)
        // QEMU gives node 1 guest RAM from offset 4 GiB: physical 2 GiB low + [4 GiB, 6 GiB) is node 0.
        let nodes = Oracle.nodeMemory(map: GuestMemoryMap.kernelView(plan.machine, commandLine: KernelCommandLine(parsing: plan.parameters.joined(separator: " "))),
                                      nodes: plan.machine.numaNodes)
        #expect(nodes[1].first?.start == 0x1_8000_0000)

        let swapped = srat.map { NodeMemoryRange(node: 1 - $0.node, start: $0.start, end: $0.end) }
        let one = try TwinPlan.plan(map: map, nodes: swapped, budget: 1500)
        #expect(one.machine.numaNodes.isEmpty)
        #expect(one.notes.contains { $0.contains("not numbered 0, 1, ... in address order") })
        let interleaved = srat + [NodeMemoryRange(node: 1, start: 0x1000_0000, end: 0x1fff_ffff)]
        #expect(try TwinPlan.plan(map: map, nodes: interleaved, budget: 1500).notes.contains { $0.contains("interleaves") })
    }
}
