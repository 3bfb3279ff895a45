/// The physical memory a QEMU 7.2 x86_64 guest sees when cmalab boots it with `-kernel`/`-initrd` (SeaBIOS):
/// the RAM split below and above 4 GiB, the firmware's e820 map, and where QEMU loads the initrd.
/// Pure; every constant was measured on Debian's qemu-system-x86 7.2 (cma-reference.md §10).

/// A half-open range of guest physical addresses [start, end).
public struct AddressRange: Codable, Equatable, Hashable, Sendable, CustomStringConvertible {
    public var start: UInt64
    public var end: UInt64
    public init(_ start: UInt64, _ end: UInt64) { self.start = start; self.end = end }
    public var size: UInt64 { end > start ? end - start : 0 }
    public var isEmpty: Bool { end <= start }
    public func contains(_ other: AddressRange) -> Bool { other.start >= start && other.end <= end }
    public func overlaps(_ other: AddressRange) -> Bool { other.start < end && start < other.end }
    public func contains(address a: UInt64) -> Bool { a >= start && a < end }
    /// `[0x7f731000-0x7ffdffff]`, inclusive like the kernel prints ranges.
    public var description: String { "[\(hex(start))-\(hex(end &- 1))]" }
}

public struct GuestMemoryMap: Equatable, Sendable {
    public var machine: MachineType
    public var memory: UInt64
    /// RAM below 4 GiB: [0, lowRAMEnd).
    public var lowRAMEnd: UInt64
    /// RAM above 4 GiB: [4 GiB, highRAMEnd), or nil when all RAM is below 4 GiB.
    public var highRAMEnd: UInt64?
    /// The e820 map SeaBIOS hands the kernel (`BIOS-e820:` lines), in address order.
    public var e820: [MemoryRange]

    public static let fourGiB: UInt64 = 1 << 32

    /// How much of the top of low RAM the firmware keeps (e820 reserved, ACPI tables at its start): 128 KiB on pc
    /// and on q35. (cma-reference.md §10.2 lists 132 KiB for q35; the boots recorded in
    /// Tests/LabCoreTests/Fixtures/oracle-cases.tsv show 128 KiB on q35 too, with cmalab's devices.)
    public static func firmwareReserve(_ machine: MachineType) -> UInt64 { 0x20000 }
    /// The gap QEMU leaves between the initrd's highest address and the top of low RAM (its ACPI data size):
    /// 128 KiB on both machines in the recorded boots.
    public static func initrdGap(_ machine: MachineType) -> UInt64 { 0x20000 }

    /// The map a guest with `memory` bytes gets from `source` (`MachineSpec.memoryMapSource`).
    public init(_ source: MemoryMapSource, memory: UInt64) {
        switch source {
        case .e820(let machine), .deviceTree(let machine): self.init(machine: machine, memory: memory)
        }
    }

    /// Where RAM starts on QEMU's arm64 `virt` board (hw/arm/virt.c, `VIRT_MEM`).
    public static let virtRAMBase: UInt64 = 0x4000_0000

    /// The map of a `virt` guest: one RAM range from 0x40000000 (its device tree's `memory` nodes; a NUMA guest's
    /// nodes follow each other in order). It is kept in `e820` as `usable` ranges so the oracle and the drawing
    /// read both kinds of map the same way; nothing else in that list exists on `virt`.
    static func virt(memory: UInt64) -> GuestMemoryMap {
        let end = virtRAMBase + memory
        return GuestMemoryMap(machine: .virt, memory: memory, lowRAMEnd: min(end, fourGiB), highRAMEnd: nil,
                              e820: [MemoryRange(start: virtRAMBase, end: end - 1, type: "usable")])
    }

    init(machine: MachineType, memory: UInt64, lowRAMEnd: UInt64, highRAMEnd: UInt64?, e820: [MemoryRange]) {
        self.machine = machine; self.memory = memory; self.lowRAMEnd = lowRAMEnd; self.highRAMEnd = highRAMEnd; self.e820 = e820
    }

    /// The map of a `-M pc|q35 -m <memory>` guest; `maxRAMBelow4G` is `-M pc,max-ram-below-4g=` (nil: QEMU's default).
    public init(machine: MachineType, memory: UInt64, maxRAMBelow4G: UInt64? = nil) {
        if machine == .virt { self = .virt(memory: memory); return }
        self.machine = machine
        self.memory = memory
        var low: UInt64
        switch machine {
        // pc_piix.c: below 3.5 GiB all RAM is low; from 3.5 GiB on (gigabyte_align) 3 GiB is low.
        case .pc: low = memory >= 0xe000_0000 ? 0xc000_0000 : memory
        // pc_q35.c: from 2816 MiB on, 2 GiB is low; below, all of it (at most 0xb0000000).
        case .q35: low = memory >= 0xb000_0000 ? 0x8000_0000 : memory
        case .virt: low = memory   // not reached: handled above
        }
        // pc_piix.c with max-ram-below-4g: RAM past it goes above 4 GiB (gigabyte_align still caps it at 3 GiB).
        if machine == .pc, let m = maxRAMBelow4G, m > 0, memory >= m { low = min(m, 0xc000_0000) }
        lowRAMEnd = low
        highRAMEnd = memory > low ? Self.fourGiB + (memory - low) : nil
        let fw = Self.firmwareReserve(machine)
        var map: [MemoryRange] = [
            MemoryRange(start: 0, end: 0x9fbff, type: "usable"),
            MemoryRange(start: 0x9fc00, end: 0x9ffff, type: "reserved"),
            MemoryRange(start: 0xf0000, end: 0xfffff, type: "reserved"),
            MemoryRange(start: 0x100000, end: low - fw - 1, type: "usable"),
            MemoryRange(start: low - fw, end: low - 1, type: "reserved"),
        ]
        if machine == .q35 {
            map.append(MemoryRange(start: 0xb000_0000, end: 0xbfff_ffff, type: "reserved"))   // MMCONFIG
            map.append(MemoryRange(start: 0xfed1_c000, end: 0xfed1_ffff, type: "reserved"))
        }
        map.append(MemoryRange(start: 0xfffc_0000, end: 0xffff_ffff, type: "reserved"))
        if let high = highRAMEnd { map.append(MemoryRange(start: Self.fourGiB, end: high - 1, type: "usable")) }
        map.append(MemoryRange(start: 0xfd_0000_0000, end: 0xff_ffff_ffff, type: "reserved"))
        e820 = map.sorted { $0.start < $1.start }
    }

    /// The map the kernel of a guest works from: QEMU's for `machine`, then every `memmap=` of `commandLine`
    /// (Memmap.swift). `lowRAMEnd` stays QEMU's: it decides where QEMU puts the initrd, whatever the kernel is told.
    public static func kernelView(_ machine: MachineSpec, commandLine: KernelCommandLine) -> GuestMemoryMap {
        var map = GuestMemoryMap(machine: machine.type, memory: machine.memory.bytes, maxRAMBelow4G: machine.lowMemory?.bytes)
        map.e820 = Memmap.apply(commandLine, to: map.e820).map
        return map
    }

    /// The RAM the kernel's memblock manages, page-aligned as `e820__memblock_setup()` adds it (the first page and
    /// the partial page below 640 KiB are not RAM to it).
    public var memblockMemory: [AddressRange] {
        e820.filter { $0.type == "usable" }.compactMap { r in
            let start = max(r.start == 0 ? 0x1000 : r.start, 0x1000)
            let s = (start + 0xfff) & ~0xfff, e = (r.end &+ 1) & ~0xfff
            return e > s ? AddressRange(s, e) : nil
        }
    }

    /// `memblock_end_of_DRAM()`, also the x86 CMA limit (`max_pfn_mapped << PAGE_SHIFT`) and `highmem_start`.
    public var endOfRAM: UInt64 { memblockMemory.last?.end ?? 0 }

    /// Total RAM memblock knows (`memblock_phys_mem_size()`, the base of CMA_SIZE_PERCENTAGE).
    public var memblockSize: UInt64 { memblockMemory.reduce(0) { $0 + $1.size } }

    /// Where QEMU's x86_load_linux puts an initrd of `size` bytes: its highest address is
    /// min(the kernel header's initrd_addr_max, top of low RAM minus QEMU's ACPI gap) and the start is page aligned
    /// down. Returns the range the kernel reserves ([start, PAGE_ALIGN(start + size)), as `RAMDISK:` prints it).
    public func initrd(size: UInt64, initrdAddrMax: UInt64 = 0x7fff_ffff) -> AddressRange? {
        guard size > 0 else { return nil }
        let maxAddr = min(initrdAddrMax, lowRAMEnd - Self.initrdGap(machine) - 1)
        guard maxAddr > size else { return nil }
        let start = (maxAddr - size) & ~0xfff
        return AddressRange(start, (start + size + 0xfff) & ~0xfff)
    }

    /// True when [range) is entirely usable RAM.
    public func isRAM(_ range: AddressRange) -> Bool {
        memblockMemory.contains { $0.contains(range) }
    }

    /// The e820 ranges (or holes) a range touches that are not usable RAM, described for a user.
    public func nonRAMParts(of range: AddressRange) -> [String] {
        var out: [String] = []
        var cursor = range.start
        let usable = memblockMemory
        for r in usable where r.end > cursor && r.start < range.end {
            if r.start > cursor { out.append(describeGap(AddressRange(cursor, min(r.start, range.end)))) }
            cursor = max(cursor, r.end)
        }
        if cursor < range.end { out.append(describeGap(AddressRange(cursor, range.end))) }
        return out
    }

    func describeGap(_ gap: AddressRange) -> String {
        let kinds = e820.filter { $0.type != "usable" && AddressRange($0.start, $0.end &+ 1).overlaps(gap) }
            .map { "e820 \($0.type) [\(hex($0.start))-\(hex($0.end))]" }
        let what = kinds.isEmpty ? "a hole with no RAM" : "not RAM (\(kinds.joined(separator: ", ")))"
        return "\(gap) is \(what)"
    }

    /// One line per range for `explain`.
    public var summary: String {
        if machine == .virt {
            return "virt \(ByteSize(bytes: memory)): RAM [\(hex(Self.virtRAMBase))-\(hex(Self.virtRAMBase + memory - 1))]"
        }
        var s = "\(machine.rawValue) \(ByteSize(bytes: memory)): RAM [0-\(hex(lowRAMEnd - 1))]"
        if let high = highRAMEnd { s += " and [\(hex(Self.fourGiB))-\(hex(high - 1))]" }
        return s
    }
}
