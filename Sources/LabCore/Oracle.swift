/// The CMA placement oracle: from a kernel (version and .config), a QEMU machine, the initrd and the kernel command
/// line, it predicts what the kernel will do with `cma=` before anything boots: which area it reserves (size after
/// alignment, exact base or a base range, name, node), which message it fails with, whether the kernel crashes, or
/// whether the kernel ignores the parameter. Pure. Every rule comes from cma-reference.md (measured on 6.1 and 6.12)
/// or from a real boot recorded in Tests/LabCoreTests/Fixtures/oracle-cases.tsv; the prediction lists the
/// assumptions it rests on.

/// Everything the oracle looks at.
public struct OracleInput: Sendable {
    public var version: KernelVersion
    /// The image's .config; nil assumes a cma-6.x test kernel (CMA, DMA_CMA, CMA_SIZE_MBYTES=0, 4 MiB alignment).
    public var config: KernelConfig?
    public var machine: MachineSpec
    /// The whole command line the kernel gets (the lab's own parameters included).
    public var commandLine: KernelCommandLine
    /// The size of the initrd QEMU loads (`-initrd`); nil when there is none.
    public var initrdSize: UInt64?
    /// The kernel image (its load address and extent); nil assumes 16 MiB and 16 MiB of extent.
    public var kernelImage: KernelImageInfo?
    /// Memory already taken by earlier CMA areas (the per-node ones, reserved before the global area).
    public var extraReserved: [AddressRange] = []
    /// The reserved-memory nodes added to an arm64 guest's device tree (OracleArm64.swift).
    public var deviceTree = DeviceTree()
    /// The size of the `-dtb` file an arm64 guest boots with; nil when QEMU builds the tree itself (no `-dtb`).
    public var deviceTreeBlobSize: UInt64?

    public init(version: KernelVersion, config: KernelConfig?, machine: MachineSpec, commandLine: KernelCommandLine,
                initrdSize: UInt64?, kernelImage: KernelImageInfo? = nil) {
        self.version = version; self.config = config; self.machine = machine; self.commandLine = commandLine
        self.initrdSize = initrdSize; self.kernelImage = kernelImage
    }
}

/// The predicted global area.
public struct PredictedArea: Codable, Equatable, Sendable {
    /// `reserved` for the global `cma=` area.
    public var name: String
    /// Size after alignment, as `Reserved N MiB` prints it.
    public var sizeMiB: UInt64
    public var sizeBytes: UInt64
    /// The base: exact when `baseMin == baseMax`, else the range the base will be in (inclusive).
    public var baseMin: UInt64
    public var baseMax: UInt64
    /// The node the kernel prints (`on node -1`, 6.6+); absent on kernels that do not print it.
    public var node: Int?
    public var exact: Bool { baseMin == baseMax }
}

/// What the oracle expects the kernel to do with the global `cma=` area.
public enum PredictedOutcome: String, Codable, Sendable, CaseIterable {
    /// `cma: Reserved ...` and the area is usable.
    case reserved
    /// `cma: Failed to reserve ...` (or `Not enough slots ...`): no area.
    case failed
    /// `cma: Reserved ...` for a fixed area over a RAM hole, then a panic when the area is activated.
    case kernelCrash = "kernel-crash"
    /// CMA is built but no global area is asked for (`cma=0`, no `cma=` with a zero default, a bare `cma`).
    case none
    /// The kernel cannot act on `cma=` (no CONFIG_CMA or no CONFIG_DMA_CMA): an unknown parameter passed to init.
    case ignored
}

/// Why a reservation fails (the reason line the kernel prints before `Failed to reserve`).
public enum PredictedFailure: String, Codable, Sendable, CaseIterable {
    case mustBeAligned = "must-be-aligned"
    case lowHighBoundary = "low-high-boundary"
    case exceedsLimit = "exceeds-limit"
    case notEnoughSlots = "not-enough-slots"
    /// A fixed area over memory memblock has already reserved (kernel, initrd, first MiB, ACPI tables): -EBUSY,
    /// only `Failed to reserve` is printed.
    case busy
    /// A range request with no free, aligned block large enough: -ENOMEM, only `Failed to reserve` is printed.
    case noRoom = "no-room"
}

public struct CMAPrediction: Codable, Equatable, Sendable {
    /// The kernel version the rules were applied for.
    public var kernel: String
    /// `pc, 4G`.
    public var machine: String
    public var outcome: PredictedOutcome
    /// The outcome a profile would observe (`expect.outcome` vocabulary): `ignored` is `not-supported` without
    /// CONFIG_CMA and `none` with CMA but no DMA_CMA.
    public var observableOutcome: Outcome
    public var area: PredictedArea?
    public var failure: PredictedFailure?
    /// The CMA lines the kernel will print, in order, exact text (without timestamps). A line whose base is only
    /// known as a range is left out (see `area`).
    public var messages: [String] = []
    /// The parameters the kernel will report as unknown and hand to init (`cma=64M`, `numa_cma=0:16M`).
    public var unknownParameters: [String] = []
    /// Where QEMU loads the initrd (`RAMDISK: [mem ...]`, inclusive end), when there is one.
    public var ramdisk: MemoryRange?
    /// The steps that led to the prediction, in the kernel's order.
    public var reasoning: [String] = []
    /// What the prediction takes for granted.
    public var assumptions: [String] = []
    /// What the kernel silently does with the parameters (octal, ignored suffixes, ...).
    public var warnings: [String] = []
    /// What `cma_pernuma=`, `numa_cma=` and `hugetlb_cma=` do on this kernel.
    public var otherAreas: [String] = []
    /// The per-node areas (`pernuma<nid>`, `numa<nid>`, `hugetlb<nid>`) the kernel will try to reserve, in its
    /// order; a `sizeMiB` of the area with baseMin > baseMax never happens: a failed one is in `nodeFailures`.
    /// Absent when no per-node parameter applies (OracleNodes.swift).
    public var nodeAreas: [PredictedArea]?
    /// Whether the DMA API takes from the global area (CONFIG_DMA_CMA); nil in predictions older than the field.
    public var dmaCMA: Bool?
    /// The CMA pools an arm64 guest's device tree makes (`Reserved memory: created CMA memory pool`), in the
    /// order the kernel prints them; absent on x86 (OracleArm64.swift).
    public var deviceTreePools: [PredictedArea]?
    /// The name of the pool among `deviceTreePools` that is the default CMA area (`linux,cma-default`, not bypassed):
    /// what the DMA API allocates from.
    public var deviceTreeDefault: String?
    /// The per-node areas predicted to fail (`name` and the MiB of `Failed to reserve N MiB on node N`).
    public var nodeFailures: [PredictedArea]?

    /// `reserved 64 MiB at 0x7b400000 (reserved, node -1)` and the like: one line.
    public var summary: String {
        switch outcome {
        case .reserved, .kernelCrash:
            let pools = (deviceTreePools ?? []).map { "\($0.name) \($0.sizeMiB) MiB at \(hex($0.baseMin))" }
            guard let a = area else { return pools.isEmpty ? outcome.rawValue : "device-tree pool(s): " + pools.joined(separator: ", ") }
            let base = a.exact ? hex(a.baseMin) : "a base in [\(hex(a.baseMin)), \(hex(a.baseMax))]"
            let node = a.node.map { ", node \($0)" } ?? ""
            let s = "reserved \(a.sizeMiB) MiB at \(base) (area `\(a.name)`\(node))"
            return outcome == .kernelCrash ? s + ", then a kernel crash when the area is activated" : s
        case .failed:
            return "failed (\(failure?.rawValue ?? "?")): " + (messages.last ?? "")
        case .none: return "no global CMA area"
        case .ignored: return "ignored: the kernel cannot act on cma= (\(observableOutcome.rawValue))"
        }
    }
}

/// The oracle's verdict on one run: its prediction, and whether the kernel did what it said.
public struct OracleCheck: Codable, Equatable, Sendable {
    public var prediction: CMAPrediction
    public var agrees: Bool
    /// What differed, one clause per difference, `; `-separated; absent when the prediction held.
    public var divergence: String?
    public init(prediction: CMAPrediction, agrees: Bool, divergence: String?) {
        self.prediction = prediction; self.agrees = agrees; self.divergence = divergence
    }
}

public enum Oracle {
    static let mib: UInt64 = 1 << 20
    static let fourGiB: UInt64 = 1 << 32

    // MARK: - Prediction

    /// The global area alone (the per-node areas are added by `predict`, in OracleNodes.swift).
    static func predictGlobal(_ input: OracleInput) -> CMAPrediction {
        let v = input.version
        let config = input.config
        let map = GuestMemoryMap.kernelView(input.machine, commandLine: input.commandLine)
        let machineText = "\(input.machine.type.rawValue), \(input.machine.memory)"
        let hasCMA = config?.isEnabled("CMA") ?? true
        let hasDMACMA = hasCMA && (config?.isEnabled("DMA_CMA") ?? true)
        var p = CMAPrediction(kernel: v.description, machine: machineText, outcome: .none, observableOutcome: hasCMA ? .none : .notSupported)
        p.dmaCMA = hasDMACMA
        let line = input.commandLine
        let state = CMACommandLine(line)
        p.warnings = state.warnings

        // Assumptions every prediction rests on.
        if !(v.series == "6.1" || v.series == "6.12") {
            p.assumptions.append("the rules were measured on 6.1 and 6.12; \(v) gets the rules of its version range from cma-reference.md")
        }
        if config == nil { p.assumptions.append("no .config: assuming CONFIG_CMA, CONFIG_DMA_CMA, CMA_SIZE_MBYTES=0, CMA_AREAS=7, no NUMA/HUGETLB_PAGE/THP") }
        if !input.machine.numaNodes.isEmpty { p.assumptions.append("NUMA guests are not modelled: the global area is predicted as on one node") }
        p.assumptions.append("QEMU 7.2 with SeaBIOS and `-kernel`: \(map.summary); the firmware keeps the top 128 KiB of low RAM (ACPI tables reserved there)")
        if line.parameters.contains(where: { $0.key == "memmap" }) {
            let usable = map.memblockMemory
            p.assumptions.append("`memmap=` gives the kernel its own map: \(usable.count) usable ranges, \(ByteSize(bytes: usable.reduce(0) { $0 &+ $1.size })) of RAM ending at \(hex(map.endOfRAM))")
        }
        p.assumptions.append("the kernel is not relocated (KASLR off): it runs at \(hex(input.kernelImage?.loadAddress ?? 0x100_0000))")

        // Parameters the kernel does not know go to init.
        p.otherAreas = otherAreas(input, into: &p)
        if !hasDMACMA {
            p.outcome = .ignored
            p.unknownParameters = line.parameters.filter { $0.key == "cma" && $0.value != nil }.map { "cma=\($0.value!)" } + p.unknownParameters
            p.reasoning.append(hasCMA
                ? "the kernel has CONFIG_CMA but not CONFIG_DMA_CMA: nothing parses `cma=`, so it is an unknown parameter passed to init, and no global area exists (CmaTotal 0)"
                : "the kernel has no CONFIG_CMA: `cma=` is an unknown parameter passed to init, and /proc/meminfo has no Cma lines")
            return p
        }

        // The initrd and the kernel image: what memblock holds before CMA.
        let kernel = input.kernelImage ?? KernelImageInfo(initSize: 16 * mib)
        let initrd = input.initrdSize.flatMap { map.initrd(size: $0, initrdAddrMax: kernel.initrdAddrMax) }
        if let initrd {
            p.ramdisk = MemoryRange(start: initrd.start, end: initrd.end - 1)
            p.assumptions.append("QEMU loads the \(input.initrdSize!)-byte initrd at \(initrd) (just below min(2 GiB, top of low RAM - 128 KiB))")
        }
        if input.kernelImage?.imageEnd == nil {
            p.assumptions.append("the kernel image is taken to reserve \(kernel.reserved) (its exact end is not known: an upper bound)")
        } else {
            p.assumptions.append("the kernel image reserves \(kernel.reserved) (vmlinux's _end)")
        }

        // Size: cma= or the .config default.
        var size: UInt64
        var base: UInt64 = 0
        var limitCmdline: UInt64 = 0
        if let s = state.size {
            size = s; base = state.base; limitCmdline = state.limit
            p.reasoning.append("`cma=` gives size \(ByteSize(bytes: s))\(state.base != 0 || state.limit != 0 ? ", base \(hex(state.base)), limit \(hex(state.limit))" : "")")
        } else {
            size = defaultSize(config, map: map, into: &p)
        }
        if state.bare {
            p.messages.append("cma: Config string not provided")
            p.messages.append("Malformed early option 'cma'")
        }
        guard size != 0 else {
            p.outcome = .none
            p.reasoning.append(state.size != nil ? "`cma=0` (size 0) reserves no global area; nothing is printed" : "size 0: no global area; nothing is printed")
            return p
        }

        // dma_contiguous_reserve(): the arch limit and `fixed`.
        let memblockEnd = map.endOfRAM
        let archLimit = memblockEnd
        var fixed = state.size != nil && base &+ size == limitCmdline
        var limit = limitCmdline != 0 ? min(limitCmdline, archLimit) : archLimit
        p.reasoning.append("x86 passes limit \(hex(archLimit)) (end of RAM, max_pfn_mapped); the request is \(fixed ? "fixed (base + size == limit)" : "a range request")")

        // cma_declare_contiguous_nid().
        let node: Int? = printsNode(v) ? -1 : nil
        func failed(_ why: PredictedFailure, _ reason: String?, mib: UInt64, _ text: String) -> CMAPrediction {
            var q = p
            q.outcome = .failed; q.failure = why
            if let reason { q.messages.append("cma: " + reason) }
            if why != .notEnoughSlots { q.messages.append("cma: Failed to reserve \(mib) MiB" + (node.map { " on node \($0)" } ?? "")) }
            q.reasoning.append(text)
            return q
        }
        guard areaSlots(v, config) > 0 else {
            return failed(.notEnoughSlots, "Not enough slots for CMA reserved regions!", mib: 0,
                          "CONFIG_CMA_AREAS=\(config?["CMA_AREAS"] ?? "?") leaves no slot for the global area on \(v.series)")
        }
        let (align, alignWhy) = alignment(v, config)
        p.reasoning.append("alignment \(alignWhy)")
        if fixed && base & (align - 1) != 0 {
            if checksFixed(v) {
                return failed(.mustBeAligned, "Region at \(pa(base)) must be aligned to \(pa(align)) bytes", mib: size / mib,
                              "a fixed base must be a multiple of the alignment; the Failed line shows the size before rounding")
            }
            p.reasoning.append("before 5.3 a misaligned fixed base is rounded up silently")
        }
        base = (base + align - 1) & ~(align - 1)
        let requested = size
        size = (size + align - 1) & ~(align - 1)
        if size != requested { p.reasoning.append("the size is rounded up to \(ByteSize(bytes: size)) (a multiple of the alignment)") }
        limit &= ~(align - 1)
        if base == 0 && fixed { fixed = false; p.reasoning.append("base 0 is never fixed: the kernel searches [0, limit) instead") }
        let highmemStart = memblockEnd
        if fixed && base < highmemStart && base + size > highmemStart {
            return failed(.lowHighBoundary, "Region at \(pa(base)) defined on low/high memory boundary (\(pa(highmemStart)))", mib: size / mib,
                          "a fixed area must not cross highmem_start, which on x86_64 is the end of RAM (\(hex(highmemStart)))")
        }
        if limit == 0 || limit > memblockEnd { limit = memblockEnd }
        if base + size > limit {
            if checksFixed(v) {
                return failed(.exceedsLimit, "Size (\(pa(size))) of region at \(pa(base)) exceeds limit (\(pa(limit)))", mib: size / mib,
                              "base + size (\(hex(base + size))) is above the limit \(hex(limit)) (rounded down to the alignment)")
            }
        }

        // What memblock already holds.
        var reserved: [(AddressRange, String)] = [(AddressRange(0, mib), "the first MiB"), (kernel.reserved, "the kernel image")]
        if let initrd { reserved.append((initrd, "the initrd")) }
        reserved += input.extraReserved.map { ($0, "a per-node CMA area") }
        let acpi = AddressRange(map.lowRAMEnd - GuestMemoryMap.firmwareReserve(map.machine), map.lowRAMEnd - GuestMemoryMap.firmwareReserve(map.machine) + 0x2000)
        reserved.append((acpi, "the ACPI tables (firmware area)"))
        let pageTables = pageTableBand(map: map, reserved: reserved.map(\.0), memoryGiB: input.machine.memory.bytes >> 30)

        let reservedLine = { (b: UInt64) in "cma: Reserved \(size / mib) MiB at \(pa(b))" + (node.map { " on node \($0)" } ?? "") }
        if fixed {
            let region = AddressRange(base, base + size)
            let busy = reserved.filter { $0.0.overlaps(region) }.map(\.1) + (region.overlaps(pageTables.max) ? ["the early page tables"] : [])
            if !busy.isEmpty {
                let certain = reserved.contains { $0.0.overlaps(region) } || region.overlaps(pageTables.min)
                var q = failed(.busy, nil, mib: size / mib, "the fixed area \(region) overlaps \(busy.joined(separator: ", ")), which memblock already holds (-EBUSY)")
                if !certain { q.assumptions.append("the early page tables are taken to reach \(pageTables.max); they may stop higher, and then the area is reserved") }
                return q
            }
            p.area = PredictedArea(name: "reserved", sizeMiB: size / mib, sizeBytes: size, baseMin: base, baseMax: base, node: node)
            p.messages.append(reservedLine(base))
            let holes = map.nonRAMParts(of: region)
            if !holes.isEmpty {
                p.outcome = .kernelCrash
                p.reasoning.append("the fixed path does not check that the area is RAM: \(holes.joined(separator: "; ")); the kernel reserves it, then faults when it activates the area (`Attempted to kill init!`)")
            } else {
                p.outcome = .reserved
                p.reasoning.append("the fixed area \(region) is free RAM: reserved exactly there")
            }
            return p
        }

        // Non-fixed: bottom-up from 4 GiB when RAM reaches 4 GiB + size, else (or on failure) top-down in [base, limit).
        let memory = map.memblockMemory
        var candidates: [UInt64?] = []
        var steps: [String] = []
        for band in [pageTables.min, pageTables.max] {
            let taken = reserved.map(\.0) + [band]
            let free = freeRanges(memory, minus: taken)
            var addr: UInt64?
            var how: String
            if bottomUpFrom4G(v), memblockEnd >= fourGiB + size {
                addr = bottomUp(free, size: size, align: align, start: fourGiB, end: limit)
                how = addr != nil
                    ? "bottom-up from 4 GiB (RAM ends at \(hex(memblockEnd)) >= 4 GiB + size): the lowest free aligned block at or above 4 GiB, whatever the requested base"
                    : "bottom-up from 4 GiB finds no free \(ByteSize(bytes: size)) block in [4 GiB, \(hex(limit))), so the kernel falls back silently to top-down in [\(hex(base)), \(hex(limit)))"
            } else {
                how = bottomUpFrom4G(v)
                    ? "RAM ends at \(hex(memblockEnd)), below 4 GiB + size (or the limit is below 4 GiB): top-down in [\(hex(base)), \(hex(limit)))"
                    : "\(v.series) places non-fixed areas top-down in [\(hex(base)), \(hex(limit)))"
            }
            if addr == nil {
                addr = topDown(free, size: size, align: align, start: base, end: limit)
                if let a = addr {
                    how += ": the highest free aligned block, \(hex(a))"
                    if let initrd, a + size <= initrd.start, a + size + align > initrd.start - 64 * 4096 { how += ", just below the initrd" }
                }
            }
            candidates.append(addr)
            steps.append(how)
        }
        p.reasoning.append(steps[0])
        if steps[1] != steps[0] { p.reasoning.append("with more early page tables: " + steps[1]) }
        let found = candidates.compactMap { $0 }
        if found.isEmpty {
            return failed(.noRoom, nil, mib: size / mib, "no free, aligned \(ByteSize(bytes: size)) block in [\(hex(base)), \(hex(limit))) (-ENOMEM)")
        }
        if found.count < candidates.count {
            p.assumptions.append("whether the area fits depends on how many early page tables sit at the top of RAM; predicted: it fits")
        }
        let lo = found.min()!, hi = found.max()!
        p.area = PredictedArea(name: "reserved", sizeMiB: size / mib, sizeBytes: size, baseMin: lo, baseMax: hi, node: node)
        p.outcome = .reserved
        if lo == hi { p.messages.append(reservedLine(lo)) } else {
            p.assumptions.append("the exact base depends on the early page tables at the top of RAM (\(pageTables.min.size / 4096)-\(pageTables.max.size / 4096) pages): a range is predicted")
        }
        return p
    }

    /// The .config default size when no `cma=` is given (§2.1).
    static func defaultSize(_ config: KernelConfig?, map: GuestMemoryMap, into p: inout CMAPrediction) -> UInt64 {
        let mbytes = UInt64(config?["CMA_SIZE_MBYTES"].flatMap { UInt64($0) } ?? 0) * mib
        let percent = config?["CMA_SIZE_PERCENTAGE"].flatMap { UInt64($0) } ?? 0
        let percentSize = ((map.memblockSize >> 12) * percent / 100) << 12
        let size: UInt64
        let why: String
        if config?.isEnabled("CMA_SIZE_SEL_PERCENTAGE") == true {
            size = percentSize; why = "CMA_SIZE_SEL_PERCENTAGE: \(percent)% of \(ByteSize(bytes: map.memblockSize)) of memblock memory = \(percentSize) bytes"
        } else if config?.isEnabled("CMA_SIZE_SEL_MIN") == true {
            size = min(mbytes, percentSize); why = "CMA_SIZE_SEL_MIN: min(\(ByteSize(bytes: mbytes)), \(percent)%)"
        } else if config?.isEnabled("CMA_SIZE_SEL_MAX") == true {
            size = max(mbytes, percentSize); why = "CMA_SIZE_SEL_MAX: max(\(ByteSize(bytes: mbytes)), \(percent)%)"
        } else {
            size = mbytes; why = "CMA_SIZE_MBYTES=\(mbytes / mib)"
        }
        p.reasoning.append("no `cma=`: the .config decides, \(why)")
        return size
    }

    /// The early page tables x86 takes from memblock before CMA runs (the first ones come from the kernel's brk).
    /// `init_mem_mapping()` maps top-down from `real_end`, the end of the highest free 2 MiB-aligned 2 MiB block
    /// (`memory_map_top_down` probes for it with memblock_phys_alloc_range(PMD_SIZE, PMD_SIZE, ...) and frees it),
    /// and takes its pages just below real_end. Seen with memblock=debug on 6.12: no page on 2 GiB guests (brk was
    /// enough), 1 on q35 2815 MiB and pc 3583 MiB (at 0xdfdff000, below real_end 0xdfe00000 while RAM ends at
    /// 0xdfee0000), 2-3 on 4 and 8 GiB, 59 on 64 GiB. Returns the band for the fewest and for the most pages.
    static func pageTableBand(map: GuestMemoryMap, reserved: [AddressRange], memoryGiB: UInt64) -> (min: AddressRange, max: AddressRange) {
        let free = freeRanges(map.memblockMemory, minus: reserved)
        let pmd: UInt64 = 2 << 20
        let top = topDown(free, size: pmd, align: pmd, start: 0x10_0000, end: map.endOfRAM).map { $0 + pmd } ?? free.last?.end ?? map.endOfRAM
        let small = map.endOfRAM <= 2 << 30
        let fewest: UInt64 = small ? 0 : 1, most: UInt64 = small ? 0 : 8 + memoryGiB
        return (AddressRange(top - fewest * 4096, top), AddressRange(top - most * 4096, top))
    }

    // MARK: - memblock

    /// memory minus reserved, sorted.
    static func freeRanges(_ memory: [AddressRange], minus reserved: [AddressRange]) -> [AddressRange] {
        var out: [AddressRange] = []
        let taken = reserved.filter { !$0.isEmpty }.sorted { $0.start < $1.start }
        for m in memory {
            var cursor = m.start
            for r in taken where r.end > cursor && r.start < m.end {
                if r.start > cursor { out.append(AddressRange(cursor, r.start)) }
                cursor = max(cursor, r.end)
            }
            if cursor < m.end { out.append(AddressRange(cursor, m.end)) }
        }
        return out
    }

    /// `__memblock_find_range_top_down`: the highest aligned block of `size` in [start, end).
    static func topDown(_ free: [AddressRange], size: UInt64, align: UInt64, start: UInt64, end: UInt64) -> UInt64? {
        let start = max(start, 4096)
        for r in free.reversed() {
            let s = max(r.start, start), e = min(r.end, end)
            guard e > s, e >= size else { continue }
            let cand = (e - size) & ~(align - 1)
            if cand >= s { return cand }
        }
        return nil
    }

    /// `__memblock_find_range_bottom_up`: the lowest aligned block of `size` in [start, end).
    static func bottomUp(_ free: [AddressRange], size: UInt64, align: UInt64, start: UInt64, end: UInt64) -> UInt64? {
        let start = max(start, 4096)
        for r in free {
            let s = max(r.start, start), e = min(r.end, end)
            guard e > s else { continue }
            let cand = (s + align - 1) & ~(align - 1)
            if cand < e, e - cand >= size { return cand }
        }
        return nil
    }
}
