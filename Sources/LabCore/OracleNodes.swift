/// The oracle's per-node areas: `cma_pernuma=` and `numa_cma=` (6.6+ with CONFIG_DMA_NUMA_CMA) and `hugetlb_cma=`
/// (CONFIG_HUGETLBFS and a CPU with 1 GiB pages), in the order x86's setup_arch() reserves them (cma-reference.md
/// §2.4-2.5): dma_contiguous_reserve() first reserves, for each online node, `pernuma<nid>` then `numa<nid>`, then
/// the global area; hugetlb_cma_reserve() comes after, one `hugetlb<nid>` per node until the total is reached.
///
/// Each area goes through cma_declare_contiguous_nid(0, size, 0, align, ..., nid): bottom-up from 4 GiB inside the
/// node when the end of RAM is at least 4 GiB + size, else (or when that fails) top-down in the node's memory.
/// QEMU gives node 0 the first `numa[0]` bytes of guest RAM, node 1 the next, and so on (low RAM, then from 4 GiB).
/// Measured on 6.12 (Tests/LabCoreTests/Fixtures/oracle-cases.tsv, the `numa` and `hugetlb` rows).
extension Oracle {
    public static func predict(_ input: OracleInput) -> CMAPrediction {
        if input.machine.architecture == .arm64 { return predictArm64(input) }
        var p = predictGlobal(input)
        let v = input.version, config = input.config
        guard config?.isEnabled("CMA") ?? true else { return p }
        let map = GuestMemoryMap.kernelView(input.machine, commandLine: input.commandLine)
        let nodes = nodeMemory(map: map, nodes: input.machine.numaNodes)
        let numaCMA = v >= KernelVersion(6, 6) && config?.isEnabled("DMA_NUMA_CMA") == true
        let cpu = input.machine.cpuModel ?? ""
        let hugetlb = v >= KernelVersion(6, 6) && (config?.isEnabled("HUGETLBFS") ?? false)
            && (cpu == "max" || cpu == "host" || cpu.contains("+pdpe1gb"))
        var pernuma: UInt64?
        var numa: [Int: UInt64] = [:]
        var huge: CMAFamilyParameter?
        for param in input.commandLine.parameters {
            guard let name = CMAFamilyParameter.Name(rawValue: param.key), let value = param.value else { continue }
            let parsed = CMAFamilyParameter.parse(name, value)
            switch name {
            case .cmaPernuma where numaCMA: pernuma = parsed.perNodeSize
            case .numaCMA where numaCMA: for n in parsed.nodes { numa[n.node] = n.size }
            case .hugetlbCMA where hugetlb: huge = parsed
            default: break
            }
        }
        guard (pernuma ?? 0) > 0 || !numa.isEmpty || huge != nil else { return p }
        if !input.machine.numaNodes.isEmpty {
            p.assumptions.removeAll { $0.hasPrefix("NUMA guests are not modelled") }
            p.assumptions.append("QEMU gives the NUMA nodes guest RAM in order: " + nodes.enumerated()
                .map { "node \($0.offset) \($0.element.map(\.description).joined(separator: " + "))" }.joined(separator: ", "))
        }

        // What memblock holds before the first per-node area.
        let kernel = input.kernelImage ?? KernelImageInfo(initSize: 16 * mib)
        var taken: [AddressRange] = [AddressRange(0, mib), kernel.reserved]
        if let initrd = input.initrdSize.flatMap({ map.initrd(size: $0, initrdAddrMax: kernel.initrdAddrMax) }) { taken.append(initrd) }
        let fw = GuestMemoryMap.firmwareReserve(map.machine)
        taken.append(AddressRange(map.lowRAMEnd - fw, map.lowRAMEnd - fw + 0x2000))
        let bands = pageTableBand(map: map, reserved: taken, memoryGiB: input.machine.memory.bytes >> 30)
        var areas: [PredictedArea] = []
        var failures: [PredictedArea] = []
        var messages: [String] = [], reasoning: [String] = []
        let align = alignment(v, config).bytes
        let printsNode = printsNode(v)

        /// Places one area on `nid`; on success it joins `taken` (with its widest possible extent).
        func place(_ name: String, size requested: UInt64, align: UInt64, nid: Int) -> Bool {
            let size = (requested + align - 1) & ~(align - 1)
            let node = nodes[safe: nid] ?? []
            var found: [UInt64] = []
            for band in [bands.min, bands.max] {
                let free = freeRanges(node, minus: taken + [band])
                var addr: UInt64?
                if bottomUpFrom4G(v), map.endOfRAM >= fourGiB + size {
                    addr = bottomUp(free, size: size, align: align, start: fourGiB, end: map.endOfRAM)
                }
                if addr == nil { addr = topDown(free, size: size, align: align, start: 0, end: map.endOfRAM) }
                if let addr { found.append(addr) }
            }
            guard let lo = found.min(), let hi = found.max(), found.count == 2 else {
                failures.append(PredictedArea(name: name, sizeMiB: size / mib, sizeBytes: size, baseMin: 0, baseMax: 0, node: nid))
                messages.append("cma: Failed to reserve \(size / mib) MiB" + (printsNode ? " on node \(nid)" : ""))
                reasoning.append("`\(name)`: no free \(ByteSize(bytes: size)) block aligned to \(ByteSize(bytes: align)) in node \(nid)'s memory (-ENOMEM)")
                return false
            }
            areas.append(PredictedArea(name: name, sizeMiB: size / mib, sizeBytes: size, baseMin: lo, baseMax: hi, node: nid))
            if lo == hi { messages.append("cma: Reserved \(size / mib) MiB at \(pa(lo))" + (printsNode ? " on node \(nid)" : "")) }
            reasoning.append("`\(name)`: \(ByteSize(bytes: size)) on node \(nid) at \(lo == hi ? hex(lo) : "[\(hex(lo)), \(hex(hi))]") ("
                + (lo >= fourGiB && map.endOfRAM >= fourGiB + size ? "bottom-up from 4 GiB inside the node" : "top-down inside the node") + ")")
            taken.append(AddressRange(lo, hi + size))
            return true
        }

        let nodeCount = max(1, input.machine.numaNodes.count)
        for nid in 0..<nodeCount {
            if let s = pernuma, s > 0 { _ = place("pernuma\(nid)", size: s, align: align, nid: nid) }
            if let s = numa[nid], s > 0 { _ = place("numa\(nid)", size: s, align: align, nid: nid) }
        }
        for nid in numa.keys.sorted() where nid >= nodeCount {
            reasoning.append("numa_cma= names node \(nid), which is not online: `invalid node \(nid) specified`")
        }
        // The global area comes next and must avoid the per-node areas just reserved.
        if !areas.isEmpty {
            var again = input
            again.extraReserved = areas.map { AddressRange($0.baseMin, $0.baseMax + $0.sizeBytes) }
            let assumptions = p.assumptions
            p = predictGlobal(again)
            p.assumptions = assumptions
            reasoning.append("the global area is placed after them, around them")
        }
        if let g = p.area, p.outcome == .reserved || p.outcome == .kernelCrash { taken.append(AddressRange(g.baseMin, g.baseMax + g.sizeBytes)) }
        // The kernel prints the per-node lines before the global area's.
        p.messages = messages + p.messages
        messages = []
        if let huge {
            // hugetlb_cma_reserve(): gigantic pages (1 GiB) are the alignment and the size unit.
            let gig: UInt64 = 1 << 30
            if let per = huge.perNodeSize, per > 0 {
                let perNode = ((per + UInt64(nodeCount) - 1) / UInt64(nodeCount) + gig - 1) & ~(gig - 1)
                var reserved: UInt64 = 0
                reasoning.append("hugetlb_cma=\(ByteSize(bytes: per)): up to \(ByteSize(bytes: perNode)) per node (the total over \(nodeCount) node(s), rounded up to 1 GiB) until \(ByteSize(bytes: per)) is reached")
                for nid in 0..<nodeCount where reserved < per {
                    let size = min(perNode, ((per - reserved) + gig - 1) & ~(gig - 1))
                    if place("hugetlb\(nid)", size: size, align: gig, nid: nid) { reserved += size }
                }
            } else {
                for n in huge.nodes where n.node < nodeCount && n.size > 0 {
                    _ = place("hugetlb\(n.node)", size: (n.size + gig - 1) & ~(gig - 1), align: gig, nid: n.node)
                }
            }
        }
        p.messages += messages
        p.reasoning += reasoning
        p.nodeAreas = areas
        p.nodeFailures = failures.isEmpty ? nil : failures
        if p.outcome == .none {
            if !areas.isEmpty { p.outcome = .reserved; p.observableOutcome = .reserved }
            else if !failures.isEmpty { p.outcome = .failed; p.failure = .noRoom; p.observableOutcome = .failed }
        }
        return p
    }

    /// Each node's RAM as QEMU lays it out: consecutive slices of guest RAM, low RAM first, then from 4 GiB. A
    /// guest without nodes is one node 0 with all of memblock's memory.
    static func nodeMemory(map: GuestMemoryMap, nodes: [ByteSize]) -> [[AddressRange]] {
        guard !nodes.isEmpty else { return [map.memblockMemory] }
        func address(_ offset: UInt64) -> UInt64 { offset < map.lowRAMEnd ? offset : fourGiB + (offset - map.lowRAMEnd) }
        var out: [[AddressRange]] = []
        var offset: UInt64 = 0
        for size in nodes {
            let span = [AddressRange(offset, offset + size.bytes)]
            offset += size.bytes
            // The node's slice of RAM offsets, as addresses, clipped to memblock's memory.
            var ranges: [AddressRange] = []
            for r in span {
                var pieces: [AddressRange] = []
                if r.start < map.lowRAMEnd { pieces.append(AddressRange(r.start, min(r.end, map.lowRAMEnd))) }
                if r.end > map.lowRAMEnd { pieces.append(AddressRange(address(max(r.start, map.lowRAMEnd)), address(r.end - 1) + 1)) }
                for piece in pieces {
                    for m in map.memblockMemory where m.overlaps(piece) {
                        ranges.append(AddressRange(max(m.start, piece.start), min(m.end, piece.end)))
                    }
                }
            }
            out.append(ranges)
        }
        return out
    }

    /// Where the global area's `Reserved` line sits among the reserved lines: after the pernuma/numa areas.
    static func globalLineIndex(_ p: CMAPrediction) -> Int {
        (p.nodeAreas ?? []).filter { !$0.name.hasPrefix("hugetlb") }.count
    }

    /// The per-node areas against the `Reserved` lines, in order (pernuma/numa, the global one, hugetlb).
    static func compareNodeAreas(_ p: CMAPrediction, with o: Observations) -> [String] {
        guard let areas = p.nodeAreas else { return [] }
        var diffs: [String] = []
        let before = areas.filter { !$0.name.hasPrefix("hugetlb") }
        let after = areas.filter { $0.name.hasPrefix("hugetlb") }
        let global = p.area == nil || p.outcome == .failed ? 0 : 1
        let expected = before.count + global + after.count
        if o.boot.reserved.count != expected {
            diffs.append("areas: predicted \(expected) `Reserved` line(s) (\((before + after).map(\.name).joined(separator: ", "))\(global == 1 ? " and the global one" : "")), observed \(o.boot.reserved.count)")
            return diffs
        }
        for (i, a) in (before + after).enumerated() {
            let r = o.boot.reserved[i < before.count ? i : i + global]
            if r.sizeMiB != a.sizeMiB { diffs.append("\(a.name) size: predicted \(a.sizeMiB) MiB, observed \(r.sizeMiB) MiB") }
            if r.base < a.baseMin || r.base > a.baseMax {
                diffs.append("\(a.name) base: predicted \(a.exact ? hex(a.baseMin) : "[\(hex(a.baseMin)), \(hex(a.baseMax))]"), observed \(hex(r.base))")
            }
            if let n = a.node, let seen = r.node, n != seen { diffs.append("\(a.name) node: predicted \(n), observed \(seen)") }
        }
        return diffs
    }
}
