/// The oracle on arm64 `virt` guests (6.12): where the device tree's reserved-memory pools go, whether `cma=`
/// bypasses the default pool, and where the `cma=` area goes below the DMA zone limit. The kernel's order:
///
/// 1. setup_machine_fdt holds the device tree blob (its `totalsize`); arm64_memblock_init the initrd and the kernel
///    (`_text`..`_end`); then early_init_fdt_scan_reserved_mem (drivers/of/of_reserved_mem.c): every `reg` node in
///    tree order (a no-map one over memory memblock already holds fails with -EBUSY), then each `size` node in tree
///    order, placed by memblock top-down inside each of its `alloc-ranges` in turn, or top-down anywhere without
///    them. Inside a range the direction follows the dynamic nodes placed so far (only those: the `reg` nodes join
///    the kernel's list later): bottom-up when the range starts inside one of them and does not end inside one,
///    top-down when it ends inside one and does not start inside one. A reusable shared-dma-pool is aligned to a
///    pageblock, anything else to `alignment` or 64 bytes. A placed node is set up at once: a
///    `linux,cma-default` pool with any `cma=` (even `cma=0`) is bypassed and its memory given back (it stays in
///    the list that steers later nodes); otherwise `Reserved memory: created CMA memory pool at ...`.
/// 2. unflatten_device_tree sets up the `reg` nodes (a pool not aligned to a pageblock is refused and freed); then
///    in bootmem_init sparse_init takes each node's memory map (2 MiB of `struct page` per 128 MiB section, 2 MiB
///    aligned) top-down in that node, below the few hundred KiB of early allocations at the node's top.
/// 3. dma_contiguous_reserve(arm64_dma_phys_limit): unless a default pool exists, the `cma=` (or .config) area,
///    placed by cma_declare_contiguous_nid as on x86, with the limit min_not_zero(`cma=`'s limit, the end of the
///    DMA zone): 4 GiB, or the end of RAM below it. A `cma=` limit above 4 GiB does not lift it.
///
/// Constants measured on QEMU 7.2's `virt` with cmalab's cma-6.12-arm64 (Tests/LabCoreTests/Fixtures/arm64-cases.tsv,
/// recorded by Scripts/record-arm64-cases; `memblock=debug` shows every reservation).
extension Oracle {
    /// Where QEMU's `virt` puts an initrd of `size` bytes: RAM base + min(RAM / 2, 128 MiB), its end page aligned
    /// (hw/arm/boot.c). The range is what arm64_memblock_init reserves.
    static func virtInitrd(memory: UInt64, size: UInt64) -> AddressRange? {
        guard size > 0 else { return nil }
        let start = GuestMemoryMap.virtRAMBase + min(memory / 2, 128 * mib)
        let (end, overflow) = start.addingReportingOverflow(size)
        guard !overflow, end <= 1 << 48 else { return nil }
        return AddressRange(start, (end + 0xfff) & ~0xfff)
    }

    /// Where QEMU's `virt` puts the device tree blob, 2 MiB aligned after the initrd (or the kernel), and what the
    /// kernel reserves for it: its `totalsize`. QEMU builds its own tree in 1 MiB; a `-dtb` file of `fileSize` bytes
    /// is opened into a buffer of (size + 10000) * 2 (load_device_tree leaves room for QEMU's edits), and that
    /// becomes the blob's totalsize.
    static func virtDeviceTreeBlob(after end: UInt64, fileSize: UInt64?) -> AddressRange {
        let start = (min(end, 1 << 48) + (2 * mib - 1)) & ~(2 * mib - 1)
        let size = fileSize.map { (min($0, 1 << 32) + 10_000) * 2 } ?? qemuTreeSize
        return AddressRange(start, start + size)
    }
    static let qemuTreeSize: UInt64 = 0x10_0000

    /// Each NUMA node's memory: the machine's `numa:` sizes in order from the RAM base; all of RAM as one node
    /// without them (the kernel fakes node 0).
    static func virtNodes(_ machine: MachineSpec, ram: AddressRange) -> [AddressRange] {
        guard !machine.numaNodes.isEmpty else { return [ram] }
        var nodes: [AddressRange] = [], cursor = ram.start
        for n in machine.numaNodes {
            let (end, overflow) = cursor.addingReportingOverflow(n.bytes)
            guard !overflow, cursor < ram.end else { break }
            nodes.append(AddressRange(cursor, min(end, ram.end)))
            cursor = end
        }
        return nodes
    }

    /// What arm64 takes in each node between the device tree's nodes and dma_contiguous_reserve: at the top of the
    /// node's free memory the small early allocations (page tables, the unflattened tree, node data: about 140 KiB
    /// in the top node with memblock=debug, a few KiB in the others; `earlyAllocations` stands for them), and below
    /// them sparse_init's memory map, 2 MiB of `struct page` per 128 MiB section, 2 MiB aligned, in that node.
    static func arm64EarlyAllocations(free: [AddressRange], nodes: [AddressRange]) -> [(AddressRange, String)] {
        var taken: [(AddressRange, String)] = []
        for (i, node) in nodes.enumerated() {
            let local = free.compactMap { r -> AddressRange? in
                let s = max(r.start, node.start), e = min(r.end, node.end)
                return e > s ? AddressRange(s, e) : nil
            }
            guard let small = topDown(local, size: earlyAllocations, align: 4096, start: node.start, end: node.end) else { continue }
            let early = AddressRange(small, small + earlyAllocations)
            taken.append((early, "node \(i)'s early allocations"))
            let map = (node.size + (128 * mib - 1)) / (128 * mib) * 2 * mib
            if let m = topDown(freeRanges(local, minus: [early]), size: map, align: 2 * mib, start: node.start, end: node.end) {
                taken.append((AddressRange(m, m + map), "node \(i)'s memory map (\(map / mib) MiB)"))
            }
        }
        return taken
    }
    static let earlyAllocations: UInt64 = 256 << 10

    /// The device tree's reserved-memory nodes (step 1, and the `reg` nodes' set-up of step 2): what they hold of
    /// memory (added to `taken`), the CMA pools made of them, and the lines the kernel prints.
    static func arm64ReservedMemory(_ tree: DeviceTree, ram: AddressRange, align: UInt64, slots: Int, bypass: Bool,
                                    taken: inout [(AddressRange, String)], into p: inout CMAPrediction) -> (pools: [PredictedArea], defaultPool: PredictedArea?) {
        var pools: [PredictedArea] = [], defaultPool: PredictedArea?
        // rmem_cma_setup for a node memblock holds; false when the kernel gives its memory back.
        func setUp(_ n: ReservedMemoryNode, _ r: AddressRange) -> Bool {
            guard n.effectiveCompatible == "shared-dma-pool" else { return true }
            if n.cmaDefault, bypass {
                p.messages.append("Reserved memory: bypass \(n.nodeName) node, using cmdline CMA params instead")
                p.reasoning.append("`cma=` is on the command line (any value, even 0), so rmem_cma_setup bypasses the default pool `\(n.nodeName)` and its memory goes back to memblock")
                return false
            }
            guard n.reusable, !n.noMap else { return true }
            guard (r.start | r.size) & (align - 1) == 0 else {
                p.messages.append("Reserved memory: incorrect alignment of CMA region")
                p.reasoning.append("`\(n.nodeName)` at \(r) is not aligned to a pageblock (\(ByteSize(bytes: align))): refused, its memory freed")
                return false
            }
            guard pools.count < slots else {
                p.messages.append("Reserved memory: unable to setup CMA region")
                p.reasoning.append("`\(n.nodeName)`: every one of the \(slots) CMA area slots is taken")
                return false
            }
            p.messages.append("Reserved memory: created CMA memory pool at \(pa(r.start)), size \(r.size / mib) MiB")
            let area = PredictedArea(name: n.nodeName, sizeMiB: r.size / mib, sizeBytes: r.size, baseMin: r.start, baseMax: r.start, node: nil)
            pools.append(area)
            if n.cmaDefault && defaultPool == nil { defaultPool = area }
            return true
        }
        // `reg` nodes first, in tree order: memblock_reserve, or memblock_mark_nomap unless memblock holds part.
        var regNodes: [(ReservedMemoryNode, AddressRange)] = []
        for n in tree.reservedMemory {
            guard let r = n.reg else { continue }
            let held = taken.filter { $0.0.overlaps(r) }.map(\.1)
            if n.noMap, !held.isEmpty, r.overlaps(ram) {
                p.messages.append("OF: reserved mem: Reserved memory: failed to reserve memory for node '\(n.nodeName)': base \(pa(r.start)), size \(r.size / mib) MiB")
                p.reasoning.append("`\(n.nodeName)` is no-map over \(held.joined(separator: ", ")), which memblock already holds: -EBUSY")
                continue
            }
            taken.append((r, "`\(n.nodeName)`"))
            regNodes.append((n, r))
        }
        // Then the dynamic ones, in tree order. `steering` is the kernel's reserved_mem[] at this point.
        var steering: [AddressRange] = []
        for n in tree.reservedMemory where n.reg == nil {
            guard let size = n.size else { continue }
            var a = n.alignment ?? 0
            if n.isCMAPool { a = max(a, align) }
            if a == 0 { a = 64 }
            let free = freeRanges([ram], minus: taken.map(\.0))
            var base: UInt64?, how = "top-down in RAM"
            if n.allocRanges.isEmpty {
                base = topDown(free, size: size, align: a, start: 0, end: UInt64.max)
            } else {
                for r in n.allocRanges {
                    let startsIn = steering.contains { r.start >= $0.start && r.start <= $0.end }
                    let endsIn = steering.contains { r.end >= $0.start && r.end <= $0.end }
                    let up = startsIn && !endsIn
                    base = up ? bottomUp(free, size: size, align: a, start: r.start, end: r.end)
                              : topDown(free, size: size, align: a, start: r.start, end: r.end)
                    how = "\(up ? "bottom-up (the range starts inside an earlier node)" : "top-down") in \(r)"
                    if base != nil { break }
                }
            }
            guard let b = base else {
                p.messages.append("OF: reserved mem: failed to allocate memory for node '\(n.name)': size \(size / mib) MiB")
                p.reasoning.append("`\(n.name)`: no free \(ByteSize(bytes: size)) block aligned to \(ByteSize(bytes: a)) in \(n.allocRanges.isEmpty ? "RAM" : n.allocRanges.map(\.description).joined(separator: ", "))")
                continue
            }
            let region = AddressRange(b, b + size)
            steering.append(region)
            p.reasoning.append("`\(n.name)`: \(ByteSize(bytes: size)) placed at \(hex(b)), \(how), aligned to \(ByteSize(bytes: a))")
            if setUp(n, region) { taken.append((region, "`\(n.name)`")) }
        }
        for (n, r) in regNodes where !setUp(n, r) {
            taken.removeAll { $0.0 == r && $0.1 == "`\(n.nodeName)`" }
        }
        return (pools, defaultPool)
    }

    static func predictArm64(_ input: OracleInput) -> CMAPrediction {
        let v = input.version, config = input.config
        let memory = input.machine.memory.bytes
        let ram = AddressRange(GuestMemoryMap.virtRAMBase, GuestMemoryMap.virtRAMBase + min(memory, 1 << 47))
        let hasCMA = config?.isEnabled("CMA") ?? true
        let hasDMACMA = hasCMA && (config?.isEnabled("DMA_CMA") ?? true)
        var p = CMAPrediction(kernel: v.description, machine: "virt, \(input.machine.memory)", outcome: .none,
                              observableOutcome: hasCMA ? .none : .notSupported)
        p.dmaCMA = hasDMACMA
        let line = input.commandLine
        let state = CMACommandLine(line)
        p.warnings = state.warnings
        if v.series != "6.12" { p.assumptions.append("the arm64 rules were measured on 6.12; \(v) gets them unchanged") }
        p.assumptions.append("QEMU 7.2 `virt`: RAM \(ram), one memory range per NUMA node; the kernel is not relocated (no KASLR seed)")
        if !hasDMACMA {
            p.outcome = .ignored
            p.unknownParameters = line.parameters.filter { $0.key == "cma" && $0.value != nil }.map { "cma=\($0.value!)" }
            p.reasoning.append(hasCMA ? "no CONFIG_DMA_CMA: `cma=` is an unknown parameter" : "no CONFIG_CMA: `cma=` is an unknown parameter")
            return p
        }
        let (align, alignWhy) = alignment(v, config)
        let node: Int? = printsNode(v) ? -1 : nil

        // 1. The blob, the initrd, the kernel; then the device tree's reserved-memory nodes.
        let kernel = input.kernelImage ?? KernelImageInfo(loadAddress: ram.start + 2 * mib, initSize: 32 * mib)
        var taken: [(AddressRange, String)] = [(kernel.reserved, "the kernel image")]
        let initrd = input.initrdSize.flatMap { virtInitrd(memory: memory, size: $0) }
        if let initrd {
            taken.append((initrd, "the initrd"))
            p.ramdisk = MemoryRange(start: initrd.start, end: initrd.end - 1)
        }
        let dtb = virtDeviceTreeBlob(after: initrd?.end ?? kernel.reserved.end, fileSize: input.deviceTreeBlobSize)
        taken.append((dtb, "the device tree blob"))
        p.assumptions.append("the kernel reserves \(kernel.reserved), the initrd \(initrd.map(\.description) ?? "(none)"), the device tree blob \(dtb) (\(input.deviceTreeBlobSize == nil ? "QEMU's own 1 MiB tree" : "the -dtb file, as QEMU loads it"))")
        // The cma= family's parameters the kernel does not know (numa_cma= before 6.6, ...) go to init.
        var family = p
        _ = otherAreas(input, into: &family)
        p.unknownParameters += family.unknownParameters
        let dt = arm64ReservedMemory(input.deviceTree, ram: ram, align: align, slots: areaSlots(v, config), bypass: state.size != nil,
                                     taken: &taken, into: &p)
        let pools = dt.pools
        p.deviceTreePools = pools

        // 2. Early allocations and each node's memory map.
        // A kernel without CONFIG_NUMA sees one node whatever QEMU's `-numa` says.
        var machine = input.machine
        if !(config?.isEnabled("NUMA") ?? true) { machine.numaNodes = [] }
        taken += arm64EarlyAllocations(free: freeRanges([ram], minus: taken.map(\.0)), nodes: virtNodes(machine, ram: ram))

        // 3. dma_contiguous_reserve: first the per-node areas (OracleArm64Nodes.swift).
        arm64NodeAreas(input, ram: ram, align: align, taken: &taken, into: &p)
        var size: UInt64, base: UInt64 = 0, limitCmdline: UInt64 = 0
        if let s = state.size {
            size = s; base = state.base; limitCmdline = state.limit
            p.reasoning.append("`cma=` gives size \(ByteSize(bytes: s))\(state.base != 0 || state.limit != 0 ? ", base \(hex(state.base)), limit \(hex(state.limit))" : "")")
        } else {
            size = defaultSize(config, map: GuestMemoryMap.virt(memory: memory), into: &p)
        }
        if let d = dt.defaultPool {
            p.outcome = .reserved
            p.deviceTreeDefault = d.name
            p.reasoning.append("the device tree's default pool `\(d.name)` is the global area: dma_contiguous_reserve reserves nothing more")
            return p
        }
        guard size != 0 else {
            // A run's outcome counts a device-tree node the kernel could not place or reserve as a failure.
            let nodeFailed = p.messages.contains { $0.hasPrefix("OF: reserved mem: ") && $0.contains("failed to ") }
            p.outcome = !pools.isEmpty ? .reserved : nodeFailed ? .failed : .none
            p.reasoning.append(pools.isEmpty ? "no global area is asked for" : "no global area beyond the device tree's pools")
            return p
        }
        let dmaLimit = min(fourGiB, ram.end)
        let memblockEnd = ram.end
        var fixed = state.size != nil && base &+ size == limitCmdline
        var limit = limitCmdline != 0 ? min(limitCmdline, dmaLimit) : dmaLimit
        p.reasoning.append("arm64 passes arm64_dma_phys_limit \(hex(dmaLimit)) (the DMA zone's end: 4 GiB, or the end of RAM below it)\(limitCmdline != 0 ? "; the limit is the lower of it and `cma=`'s own, \(hex(limitCmdline))" : ""); the request is \(fixed ? "fixed" : "a range request"); alignment \(alignWhy)")
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
        // Sizes and bases from the command line can be anything: past 2^48 nothing fits, so stop there.
        let (end, overflow) = base.addingReportingOverflow(size)
        if overflow || end > 1 << 48 {
            return failed(.exceedsLimit, nil, "base + size is past any arm64 physical address")
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
            guard busy.isEmpty else {
                return failed(.busy, nil, "the fixed area \(region) overlaps \(busy.joined(separator: ", ")), which memblock already holds (-EBUSY)")
            }
            p.area = PredictedArea(name: "reserved", sizeMiB: size / mib, sizeBytes: size, baseMin: base, baseMax: base, node: node)
            p.messages.append(reservedLine(base))
            if ram.contains(region) {
                p.outcome = .reserved
                p.reasoning.append("the fixed area \(region) is free RAM: reserved exactly there")
            } else {
                p.outcome = .kernelCrash
                p.reasoning.append("the fixed path does not check that \(region) is RAM (RAM is \(ram)): memblock reserves it, then the kernel faults on its missing `struct page`s when it activates the area (`Attempted to kill init!`; the console shows it only with earlycon)")
            }
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
            p.reasoning.append("top-down in [\(hex(base)), \(hex(limit))), below what the kernel took before: \(taken.map { "\($0.1) \($0.0)" }.joined(separator: ", "))")
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
            // 6.12 sets each dynamic pool up as it places it; 6.1 sets them all up afterwards in address order. Compare
            // by address, whatever order the kernel printed them in.
            for (a, r) in zip(pools.sorted { $0.baseMin < $1.baseMin }, seen.sorted { $0.base < $1.base }) {
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
