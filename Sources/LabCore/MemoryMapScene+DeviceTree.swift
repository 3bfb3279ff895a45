/// The memory picture of a device-tree guest (arm64 `virt`): there is no e820 map, so the regions come from the
/// kernel's memory node ranges (`Early memory node ranges`, `node N: [mem ...]`), with the device tree's reserved
/// regions on top: `no-map` ones cut out of RAM, the others named where they lie. CMA pools are drawn as marks
/// like any CMA area (their debugfs areas carry the node's name).
extension MemoryMapScene {
    /// Where QEMU's `virt` loads an arm64 Image (RAM base + 2 MiB; KernelImageInfo.arm64Header).
    public static let arm64KernelLoadAddress: UInt64 = GuestMemoryMap.virtRAMBase + (2 << 20)

    /// Regions from memory node ranges (inclusive ends) and `OF: reserved mem:` regions, with the addresses below and
    /// between them named as having no RAM (on `virt`, the board's devices sit below 0x40000000).
    static func regions(fromMemoryNodes nodes: [NodeMemoryRange], reserved: [ReservedMemoryRegion], upTo minimumEnd: UInt64) -> [Region] {
        var ram: [Region] = []
        let numa = Set(nodes.map(\.node)).count > 1
        for n in nodes.sorted(by: { $0.start < $1.start }) where n.end >= n.start {
            ram.append(Region(start: n.start, end: exclusiveEnd(n.end), kind: .usable, label: numa ? "memory (node \(n.node))" : "memory"))
        }
        // Cut the reserved regions out of RAM, in address order.
        for r in reserved.sorted(by: { $0.start < $1.start }) where r.end >= r.start && !r.reusable {
            let cut = (start: r.start, end: exclusiveEnd(r.end))
            var next: [Region] = []
            for region in ram {
                guard region.kind == .usable, cut.start < region.end, region.start < cut.end else { next.append(region); continue }
                if region.start < cut.start { next.append(Region(start: region.start, end: cut.start, kind: .usable, label: region.label)) }
                next.append(Region(start: max(region.start, cut.start), end: min(region.end, cut.end), kind: .reserved,
                                   label: (r.map ? "reserved " : "no-map ") + r.name))
                if cut.end < region.end { next.append(Region(start: cut.end, end: region.end, kind: .usable, label: region.label)) }
            }
            ram = next
        }
        var out: [Region] = []
        var cursor: UInt64 = 0
        for region in ram where region.end > cursor {
            if region.start > cursor { out.append(Region(start: cursor, end: region.start, kind: .unmapped, label: cursor == 0 ? "devices, no RAM" : "no RAM")) }
            out.append(Region(start: max(region.start, cursor), end: region.end, kind: region.kind, label: region.label))
            cursor = region.end
        }
        if minimumEnd > cursor { out.append(Region(start: cursor, end: minimumEnd, kind: .unmapped, label: "no RAM")) }
        return out
    }
}
