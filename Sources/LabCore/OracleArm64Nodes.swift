/// The arm64 oracle's per-node areas (`numa_cma=`, `cma_pernuma=`): dma_numa_cma_reserve places them at the start
/// of dma_contiguous_reserve, each inside its own node, after each node's memory map (OracleArm64.swift). QEMU's
/// `-numa` nodes on `virt` get RAM in order from 0x40000000; the kernel learns them from the device tree's
/// `numa-node-id`s.
extension Oracle {
    /// dma_numa_cma_reserve on 6.12 with DMA_NUMA_CMA: for each online node, `pernuma<nid>` then `numa<nid>`, each
    /// with cma_declare_contiguous_nid on that node (top-down inside it; bottom-up from 4 GiB first when RAM reaches
    /// 4 GiB + size). Adds the areas to `taken` and to `p.nodeAreas` / `p.nodeFailures`.
    static func arm64NodeAreas(_ input: OracleInput, ram: AddressRange, align: UInt64, taken: inout [(AddressRange, String)], into p: inout CMAPrediction) {
        let v = input.version
        guard v >= KernelVersion(6, 6), input.config?.isEnabled("DMA_NUMA_CMA") ?? false else { return }
        var pernuma: UInt64?
        var numa: [Int: UInt64] = [:]
        for param in input.commandLine.parameters {
            guard let name = CMAFamilyParameter.Name(rawValue: param.key), let value = param.value else { continue }
            let parsed = CMAFamilyParameter.parse(name, value)
            switch name {
            case .cmaPernuma: pernuma = parsed.perNodeSize
            case .numaCMA: for n in parsed.nodes { numa[n.node] = n.size }
            default: break
            }
        }
        guard (pernuma ?? 0) > 0 || !numa.isEmpty else { return }
        let nodes = virtNodes(input.machine, ram: ram)
        var areas: [PredictedArea] = [], failures: [PredictedArea] = []
        let suffix = printsNode(v)
        func place(_ name: String, _ requested: UInt64, nid: Int) {
            let size = (requested + align - 1) & ~(align - 1)
            let free = freeRanges([nodes[nid]], minus: taken.map(\.0))
            var addr: UInt64?
            if bottomUpFrom4G(v), ram.end >= fourGiB + size { addr = bottomUp(free, size: size, align: align, start: fourGiB, end: ram.end) }
            if addr == nil { addr = topDown(free, size: size, align: align, start: 0, end: ram.end) }
            guard let a = addr else {
                failures.append(PredictedArea(name: name, sizeMiB: size / mib, sizeBytes: size, baseMin: 0, baseMax: 0, node: nid))
                p.messages.append("cma: Failed to reserve \(size / mib) MiB" + (suffix ? " on node \(nid)" : ""))
                p.reasoning.append("`\(name)`: no free \(ByteSize(bytes: size)) block in node \(nid)'s memory \(nodes[nid])")
                return
            }
            areas.append(PredictedArea(name: name, sizeMiB: size / mib, sizeBytes: size, baseMin: a, baseMax: a, node: nid))
            p.messages.append("cma: Reserved \(size / mib) MiB at \(pa(a))" + (suffix ? " on node \(nid)" : ""))
            p.reasoning.append("`\(name)`: \(ByteSize(bytes: size)) at \(hex(a)), top-down inside node \(nid) \(nodes[nid]) below its memory map")
            taken.append((AddressRange(a, a + size), "`\(name)`"))
        }
        for nid in nodes.indices {
            if let s = pernuma, s > 0 { place("pernuma\(nid)", s, nid: nid) }
            if let s = numa[nid], s > 0 { place("numa\(nid)", s, nid: nid) }
        }
        for nid in numa.keys.sorted() where nid >= nodes.count {
            p.reasoning.append("numa_cma= names node \(nid), which is not online: `invalid node \(nid) specified`")
        }
        if !areas.isEmpty { p.nodeAreas = areas }
        if !failures.isEmpty { p.nodeFailures = failures }
    }
}
