/// The oracle on arm64 `virt` guests (6.12): where the device tree's reserved-memory pools go, whether `cma=`
/// bypasses the default pool, and where the `cma=` area goes below the DMA zone limit. The kernel's order:
///
/// 1. arm64_memblock_init: memblock holds the initrd, then the kernel (`_text`..`_end`); then
///    early_init_fdt_scan_reserved_mem: the device tree blob itself, every `reg` node (no-map ones are marked
///    nomap, which memblock never hands out), then each `size` node in tree order, placed by memblock top-down
///    inside each of its `alloc-ranges` in turn (bottom-up when the range starts inside an earlier pool and does not
///    end inside one), or top-down anywhere without them; a reusable shared-dma-pool is aligned to a pageblock.
///    A dynamic pool is set up at once: a `linux,cma-default` node with `cma=` on the command line is bypassed and
///    its memory given back; otherwise `Reserved memory: created CMA memory pool at ...`.
/// 2. paging_init, unflatten_device_tree (which sets up the `reg` pools), and in bootmem_init sparse_init's
///    memory map: taken top-down from the end of RAM.
/// 3. dma_contiguous_reserve(arm64_dma_phys_limit): unless a default pool exists, the `cma=` (or .config) area,
///    placed by cma_declare_contiguous_nid as on x86, with the limit the end of the DMA zone (4 GiB, or the end of
///    RAM below it) unless `cma=` gives its own.
///
/// Constants measured on QEMU 7.2's `virt` with cmalab's cma-6.12-arm64 (Tests/LabCoreTests/Fixtures/arm64-cases.tsv).
extension Oracle {
    /// Where QEMU's `virt` puts an initrd of `size` bytes: RAM base + min(RAM / 2, 128 MiB), page aligned
    /// (hw/arm/boot.c). The range is what arm64_memblock_init reserves.
    static func virtInitrd(memory: UInt64, size: UInt64) -> AddressRange? {
        guard size > 0 else { return nil }
        let start = GuestMemoryMap.virtRAMBase + min(memory / 2, 128 * mib)
        return AddressRange(start, (start + size + 0xfff) & ~0xfff)
    }

    /// Where QEMU's `virt` puts the device tree blob: 2 MiB aligned after the initrd (or the kernel), in a region
    /// of `dtbSize` (QEMU's tree is under 1 MiB; the kernel reserves its `totalsize`).
    static func virtDeviceTreeBlob(after end: UInt64) -> AddressRange {
        let start = (end + (2 * mib - 1)) & ~(2 * mib - 1)
        return AddressRange(start, start + dtbSize)
    }
    static let dtbSize: UInt64 = 0x10_0000

    static func predictArm64(_ input: OracleInput) -> CMAPrediction {
        let v = input.version, config = input.config
        let memory = input.machine.memory.bytes
        let ram = AddressRange(GuestMemoryMap.virtRAMBase, GuestMemoryMap.virtRAMBase + memory)
        let hasCMA = config?.isEnabled("CMA") ?? true
        let hasDMACMA = hasCMA && (config?.isEnabled("DMA_CMA") ?? true)
        var p = CMAPrediction(kernel: v.description, machine: "virt, \(input.machine.memory)", outcome: .none,
                              observableOutcome: hasCMA ? .none : .notSupported)
        p.dmaCMA = hasDMACMA
        let line = input.commandLine
        let state = CMACommandLine(line)
        p.warnings = state.warnings
        if v.series != "6.12" { p.assumptions.append("the arm64 rules were measured on 6.12; \(v) gets them unchanged") }
        p.assumptions.append("QEMU 7.2 `virt`: RAM \(AddressRange(ram.start, ram.end)), one memory range; the kernel is not relocated (no KASLR seed)")
        if !hasDMACMA {
            p.outcome = .ignored
            p.unknownParameters = line.parameters.filter { $0.key == "cma" && $0.value != nil }.map { "cma=\($0.value!)" }
            p.reasoning.append(hasCMA ? "no CONFIG_DMA_CMA: `cma=` is an unknown parameter" : "no CONFIG_CMA: `cma=` is an unknown parameter")
            return p
        }
        let (align, alignWhy) = alignment(v, config)
        let node: Int? = printsNode(v) ? -1 : nil

        // 1. arm64_memblock_init.
        let kernel = input.kernelImage ?? KernelImageInfo(loadAddress: ram.start + 2 * mib, initSize: 32 * mib)
        var taken: [(AddressRange, String)] = [(kernel.reserved, "the kernel image")]
        let initrd = input.initrdSize.flatMap { virtInitrd(memory: memory, size: $0) }
        if let initrd {
            taken.append((initrd, "the initrd"))
            p.ramdisk = MemoryRange(start: initrd.start, end: initrd.end - 1)
        }
        let dtb = virtDeviceTreeBlob(after: initrd?.end ?? kernel.reserved.end)
        taken.append((dtb, "the device tree blob"))
        p.assumptions.append("the kernel reserves \(kernel.reserved), the initrd \(initrd.map(\.description) ?? "(none)"), the device tree blob \(dtb)")

        var pools: [PredictedArea] = []
        var defaultPool: PredictedArea?
        let tree = input.deviceTree.reservedMemory
        // `reg` nodes first, in tree order.
        var regPools: [(ReservedMemoryNode, AddressRange)] = []
        for n in tree { if let r = n.reg {
            if n.noMap, taken.contains(where: { $0.0.overlaps(r) }) {
                p.messages.append("OF: reserved mem: Reserved memory: failed to reserve memory for node '\(n.nodeName)': base \(pa(r.start)), size \(r.size / mib) MiB")
                p.reasoning.append("`\(n.nodeName)` is no-map over \(taken.filter { $0.0.overlaps(r) }.map(\.1).joined(separator: ", ")), which memblock already holds: -EBUSY")
                continue
            }
            taken.append((r, "`\(n.nodeName)`"))
            regPools.append((n, r))
        } }
        // Then the dynamic ones.
        var placed: [AddressRange] = regPools.map(\.1)
        for n in tree where n.reg == nil {
            guard let size = n.size else { continue }
            var a = n.alignment ?? 0
            if hasCMA, n.isCMAPool { a = max(a, align) }
            a = max(a, 4096)
            let free = freeRanges([ram], minus: taken.map(\.0))
            var base: UInt64?
            if n.allocRanges.isEmpty {
                base = topDown(free, size: size, align: a, start: 0, end: ram.end)
            } else {
                for r in n.allocRanges {
                    let startsIn = placed.contains { r.start >= $0.start && r.start <= $0.end }
                    let endsIn = placed.contains { r.end >= $0.start && r.end <= $0.end }
                    base = startsIn && !endsIn ? bottomUp(free, size: size, align: a, start: r.start, end: r.end)
                                               : topDown(free, size: size, align: a, start: r.start, end: r.end)
                    if base != nil { break }
                }
            }
            guard let b = base else {
                p.messages.append("OF: reserved mem: failed to allocate memory for node '\(n.name)': size \(size / mib) MiB")
                p.reasoning.append("`\(n.name)`: no free \(ByteSize(bytes: size)) block aligned to \(ByteSize(bytes: a)) in \(n.allocRanges.isEmpty ? "RAM" : n.allocRanges.map(\.description).joined(separator: ", "))")
                continue
            }
            let region = AddressRange(b, b + size)
            p.reasoning.append("`\(n.name)`: \(ByteSize(bytes: size)) placed at \(hex(b)) (memblock \(n.allocRanges.isEmpty ? "top-down in RAM" : "in its alloc-ranges"), aligned to \(ByteSize(bytes: a)))")
            if n.isCMAPool, n.cmaDefault, state.size != nil {
                p.messages.append("Reserved memory: bypass \(n.name) node, using cmdline CMA params instead")
                p.reasoning.append("`cma=` is on the command line, so rmem_cma_setup bypasses the default pool `\(n.name)` and its memory goes back to memblock")
                continue
            }
            taken.append((region, "`\(n.name)`"))
            placed.append(region)
            if n.isCMAPool {
                p.messages.append("Reserved memory: created CMA memory pool at \(pa(b)), size \(size / mib) MiB")
                let area = PredictedArea(name: n.name, sizeMiB: size / mib, sizeBytes: size, baseMin: b, baseMax: b, node: nil)
                pools.append(area)
                if n.cmaDefault && defaultPool == nil { defaultPool = area }
            }
        }
        for (n, r) in regPools where n.isCMAPool {
            if n.cmaDefault, state.size != nil {
                p.messages.append("Reserved memory: bypass \(n.nodeName) node, using cmdline CMA params instead")
                taken.removeAll { $0.0 == r }
                continue
            }
            guard r.start & (align - 1) == 0, r.size & (align - 1) == 0 else {
                p.messages.append("Reserved memory: incorrect alignment of CMA region")
                continue
            }
            p.messages.append("Reserved memory: created CMA memory pool at \(pa(r.start)), size \(r.size / mib) MiB")
            let area = PredictedArea(name: n.nodeName, sizeMiB: r.size / mib, sizeBytes: r.size, baseMin: r.start, baseMax: r.start, node: nil)
            pools.append(area)
            if n.cmaDefault && defaultPool == nil { defaultPool = area }
        }
        p.deviceTreePools = pools

        // 2. The top of RAM (of each node): the memory map and the early allocations.
        let bands = arm64Bands(input.machine, free: freeRanges([ram], minus: taken.map(\.0)))
        taken += bands.map { ($0, "the memory map and the early allocations at the top of RAM") }
        // 3. dma_contiguous_reserve: first the per-node areas (OracleArm64Nodes.swift).
        arm64NodeAreas(input, ram: ram, align: align, taken: &taken, into: &p)
        var size: UInt64, base: UInt64 = 0, limitCmdline: UInt64 = 0
        if let s = state.size {
            size = s; base = state.base; limitCmdline = state.limit
            p.reasoning.append("`cma=` gives size \(ByteSize(bytes: s))\(state.base != 0 || state.limit != 0 ? ", base \(hex(state.base)), limit \(hex(state.limit))" : "")")
        } else {
            var map = GuestMemoryMap.virt(memory: memory)
            map.e820 = [MemoryRange(start: ram.start, end: ram.end - 1, type: "usable")]
            size = defaultSize(config, map: map, into: &p)
        }
        if let d = defaultPool {
            p.outcome = .reserved
            p.deviceTreeDefault = d.name
            p.reasoning.append("the device tree's default pool `\(d.name)` is the global area: dma_contiguous_reserve reserves nothing more")
            return p
        }
        guard size != 0 else {
            p.outcome = .none
            p.reasoning.append(pools.isEmpty ? "no global area is asked for" : "no global area beyond the device tree's pools")
            if !pools.isEmpty { p.outcome = .reserved }
            return p
        }
        let dmaLimit = min(fourGiB, ram.end)
        let memblockEnd = ram.end
        var fixed = state.size != nil && base &+ size == limitCmdline
        var limit = limitCmdline != 0 ? limitCmdline : dmaLimit
        p.reasoning.append("arm64 passes arm64_dma_phys_limit \(hex(dmaLimit)) (the DMA zone's end: 4 GiB, or the end of RAM below it)\(limitCmdline != 0 ? ", and `cma=`'s own limit replaces it" : ""); the request is \(fixed ? "fixed" : "a range request"); alignment \(alignWhy)")
        func failed(_ why: PredictedFailure, _ reason: String?, _ text: String) -> CMAPrediction {
            var q = p
            q.outcome = pools.isEmpty ? .failed : .reserved
            q.failure = why
            if let reason { q.messages.append("cma: " + reason) }
            q.messages.append("cma: Failed to reserve \(size / mib) MiB" + (node.map { " on node \($0)" } ?? ""))
            q.reasoning.append(text)
            return q
        }
        guard areaSlots(v, config) > pools.count else {
            var q = p
            q.outcome = .failed; q.failure = .notEnoughSlots
            q.messages.append("cma: Not enough slots for CMA reserved regions!")
            return q
        }
        if fixed && base & (align - 1) != 0 {
            return failed(.mustBeAligned, "Region at \(pa(base)) must be aligned to \(pa(align)) bytes", "a fixed base must be a multiple of the alignment")
        }
        base = (base + align - 1) & ~(align - 1)
        size = (size + align - 1) & ~(align - 1)
        limit &= ~(align - 1)
        if base == 0 && fixed { fixed = false }
        if fixed && base < memblockEnd && base + size > memblockEnd {
            return failed(.lowHighBoundary, "Region at \(pa(base)) defined on low/high memory boundary (\(pa(memblockEnd)))", "a fixed area must not cross the end of RAM")
        }
        if limit == 0 || limit > memblockEnd { limit = memblockEnd }
        if base + size > limit {
            return failed(.exceedsLimit, "Size (\(pa(size))) of region at \(pa(base)) exceeds limit (\(pa(limit)))", "base + size is above the limit \(hex(limit))")
        }
        let reservedLine = { (b: UInt64) in "cma: Reserved \(size / mib) MiB at \(pa(b))" + (node.map { " on node \($0)" } ?? "") }
        if fixed {
            let region = AddressRange(base, base + size)
            let busy = taken.filter { $0.0.overlaps(region) }.map(\.1)
            guard busy.isEmpty, region.start >= ram.start else {
                return failed(.busy, nil, "the fixed area \(region) overlaps \(busy.isEmpty ? "memory that is not RAM (RAM starts at \(hex(ram.start)))" : busy.joined(separator: ", ")) (-EBUSY)")
            }
            p.area = PredictedArea(name: "reserved", sizeMiB: size / mib, sizeBytes: size, baseMin: base, baseMax: base, node: node)
            p.messages.append(reservedLine(base))
            p.outcome = .reserved
            return p
        }
        let free = freeRanges([ram], minus: taken.map(\.0))
        var addr: UInt64?
        if bottomUpFrom4G(v), memblockEnd >= fourGiB + size, limit > fourGiB {
            addr = bottomUp(free, size: size, align: align, start: fourGiB, end: limit)
            if addr != nil { p.reasoning.append("bottom-up from 4 GiB (RAM ends at \(hex(memblockEnd)) and the limit \(hex(limit)) is above 4 GiB)") }
        }
        if addr == nil {
            addr = topDown(free, size: size, align: align, start: base, end: limit)
            p.reasoning.append("top-down in [\(hex(base)), \(hex(limit))), below what the kernel took from the top of RAM first (\(bands.map(\.description).joined(separator: ", ")): the memory map and the early page tables)")
        }
        guard let lo = addr else {
            return failed(.noRoom, nil, "no free, aligned \(ByteSize(bytes: size)) block in [\(hex(base)), \(hex(limit))) (-ENOMEM)")
        }
        p.area = PredictedArea(name: "reserved", sizeMiB: size / mib, sizeBytes: size, baseMin: lo, baseMax: lo, node: node)
        p.outcome = .reserved
        p.messages.append(reservedLine(lo))
        return p
    }
}

extension Oracle {
    /// The device-tree half of a comparison: the pools created (base and size, in order), the nodes bypassed, and
    /// whether a node failed. Nothing when the prediction has no device-tree part (x86).
    static func compareDeviceTree(_ p: CMAPrediction, with o: Observations) -> [String] {
        guard let pools = p.deviceTreePools else { return [] }
        var diffs: [String] = []
        let seen = o.boot.deviceTree.pools
        if seen.count != pools.count {
            diffs.append("device-tree pools: predicted \(pools.count) (\(pools.map { "\($0.name) at \(hex($0.baseMin))" }.joined(separator: ", "))), observed \(seen.count)")
        } else {
            for (a, r) in zip(pools, seen) {
                if r.sizeMiB != a.sizeMiB { diffs.append("pool \(a.name): predicted \(a.sizeMiB) MiB, observed \(r.sizeMiB) MiB") }
                if r.base != a.baseMin { diffs.append("pool \(a.name): predicted base \(hex(a.baseMin)), observed \(hex(r.base))") }
            }
        }
        let bypassed = p.messages.compactMap { m -> String? in
            guard m.hasPrefix("Reserved memory: bypass ") else { return nil }
            return String(m.dropFirst("Reserved memory: bypass ".count).prefix { $0 != " " })
        }
        if bypassed != o.boot.deviceTree.bypassed {
            diffs.append("bypassed nodes: predicted \(bypassed), observed \(o.boot.deviceTree.bypassed)")
        }
        let failures = p.messages.filter { $0.hasPrefix("OF: reserved mem: ") && $0.contains("failed to ") }.count
        if failures != o.boot.deviceTree.failures.count {
            diffs.append("device-tree failures: predicted \(failures), observed \(o.boot.deviceTree.failures.count)")
        }
        return diffs
    }
}
