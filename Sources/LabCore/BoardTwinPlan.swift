/// The twin of an arm64 board (its log read by BoardLog.swift): a QEMU `virt` guest whose RAM is the board's and
/// whose device tree carries the board's reserved-memory regions.
///
/// `virt` puts RAM at 0x40000000, in one piece. The twin's RAM covers the board's from its first byte to its last
/// (whole MiB, at least the 128 MiB QEMU wants); a board whose RAM is one range from 0x40000000 has an exact twin.
/// Any other board is shifted: its RAM starts at 0x40000000 in the twin, and every board address moves by the
/// same offset (`AddressWindow`), so the twin's RAM, pools and carve-outs lie where the board's do relative to
/// its RAM. Holes between the board's RAM ranges become `no-map` reserved-memory nodes, so the twin's kernel
/// cannot use them either.
///
/// The board's `OF: reserved mem:` regions become static (`reg`) reserved-memory nodes at their (shifted) places,
/// `no-map` and `reusable` as printed; a region the board made a CMA pool (`created CMA memory pool at` the same
/// base) becomes a `shared-dma-pool` with the node's name, the default one when it is `linux,cma`. Placement
/// the board's kernel did (a `size` node with `alloc-ranges`) is thus fixed in the twin where the board put it.

/// Where a stretch of the board's physical addresses lies in the twin.
public struct AddressWindow: Codable, Equatable, Sendable {
    /// The board's first address of the stretch.
    public var host: UInt64
    /// The twin's address for it.
    public var twin: UInt64
    public var size: UInt64
    public init(host: UInt64, twin: UInt64, size: UInt64) { self.host = host; self.twin = twin; self.size = size }

    public var isShifted: Bool { host != twin }

    /// The board's address of a twin address inside the window; nil outside it.
    public func hostAddress(_ t: UInt64) -> UInt64? {
        guard t >= twin, t - twin < size else { return nil }
        return host.addingReportingOverflow(t - twin).overflow ? nil : host + (t - twin)
    }

    /// The twin's address of a board address inside the window; nil outside it.
    public func twinAddress(_ h: UInt64) -> UInt64? {
        guard h >= host, h - host < size else { return nil }
        return twin.addingReportingOverflow(h - host).overflow ? nil : twin + (h - host)
    }

    /// `+0x40000000` or `-0x40000000`: what the twin adds to a board address.
    public var offsetText: String { twin >= host ? "+" + hex(twin - host) : "-" + hex(host - twin) }
    /// The other way: what a board address is against its twin address.
    public var boardOffsetText: String { host >= twin ? "+" + hex(host - twin) : "-" + hex(twin - host) }
}

extension TwinPlan {
    /// Where `virt` starts its RAM (GuestMemoryMap's constant).
    public static var virtRAMBase: UInt64 { GuestMemoryMap.virtRAMBase }
    /// The least RAM QEMU boots a `virt` guest with here.
    static let minimumBoardMemory: UInt64 = 128 << 20
    /// The size of the stand-in for a default pool the board's `cma=` bypassed (the log does not say its size).
    static let bypassedPoolSize: UInt64 = 4 << 20
    /// The `compatible` of a board region the twin keeps reserved but no driver claims.
    static let inertCompatible = "cmalab,board-region"

    /// Plans the `virt` twin of an arm64 board's facts.
    public static func board(_ facts: HostFacts) throws(TwinPlanError) -> TwinPlan {
        let ram = facts.boardRAM
        guard let first = ram.first, let last = ram.last else { throw .noBoardMemory }
        guard ram.count <= HostLog.boardLimit else { throw .tooManyRanges(ram.count, limit: HostLog.boardLimit) }
        let base = first.start
        let (top, topOverflow) = last.end.addingReportingOverflow(1)
        guard !topOverflow else { throw .tooLarge(.max) }
        let span = top - base
        let mib: UInt64 = 1 << 20
        let (roundedSpan, roundOverflow) = span.addingReportingOverflow(mib - 1)
        guard !roundOverflow else { throw .tooLarge(.max) }
        let memory = max(roundedSpan & ~(mib - 1), minimumBoardMemory)
        guard memory <= MachineSpec.maximumMemory.bytes else { throw .tooLarge(memory) }
        let window = AddressWindow(host: base, twin: virtRAMBase, size: span)
        let ramBytes = ram.reduce(UInt64(0)) { $0 &+ $1.size }   // at most `span`, which did not overflow
        var notes: [String] = []
        var nodes: [ReservedMemoryNode] = []

        if window.isShifted {
            notes.append("shifted: the board's RAM starts at \(hex(base)), virt's at \(hex(virtRAMBase)); every board address is \(window.offsetText) in the twin (its RAM, reserved regions and pools alike), and the twin's CMA lines are compared at board addresses")
            if (base ^ virtRAMBase) & ((2 << 20) - 1) != 0 {
                notes.append("the shift is not a multiple of 2 MiB, so CMA's 2 MiB alignment falls on other board addresses in the twin: placements may differ by up to 2 MiB")
            }
        }
        if memory != span {
            notes.append("the twin has \(ByteSize(bytes: memory)) of RAM, \(hex(memory - span)) more than the board's span \(hex(span)) (QEMU gives RAM in whole MiB and at least 128 MiB); the extra is at the top")
        }
        let nodeIDs = Set(facts.boot.nodeMemory.map(\.node))
        if nodeIDs.count > 1 {
            notes.append("the board has \(nodeIDs.count) NUMA nodes; the twin has one (per-node CMA areas are not reproduced)")
        }
        dmaNote(facts, window: window, memory: memory).map { notes.append($0) }

        // Holes between the RAM ranges: no-map nodes in the twin, unless a board region already covers them.
        let regions = facts.boot.deviceTree.regions
        for (a, b) in zip(ram, ram.dropFirst()) {
            let hole = MemoryRange(start: a.end + 1, end: b.start - 1)
            if regions.contains(where: { !$0.map && $0.start <= hole.start && $0.end >= hole.end }) { continue }
            guard nodes.count < HostLog.boardLimit, let t = window.twinAddress(hole.start) else { continue }
            var n = ReservedMemoryNode(name: "board-hole")
            n.reg = AddressRange(t, t + hole.size)
            n.noMap = true
            nodes.append(n)
            notes.append("the board has no RAM at [\(hex(hole.start))-\(hex(hole.end))] (between its memory ranges); the twin's RAM is one piece, so there it is a no-map node \(n.nodeName) (which, unlike the board's hole, gets struct pages)")
        }
        if ramBytes != span {
            notes.append("the board has \(ByteSize(bytes: ramBytes)) of RAM in \(ram.count) ranges over \(hex(span)) of addresses")
        }

        // The board's reserved regions, at their twin addresses.
        var pools = facts.boot.deviceTree.pools
        var names: Set<String> = Set(nodes.map(\.nodeName))
        if regions.count > HostLog.boardLimit {
            notes.append("the board's log has \(regions.count) reserved regions; the twin is planned from the first \(HostLog.boardLimit)")
        }
        for (i, r) in regions.prefix(HostLog.boardLimit).enumerated() {
            guard nodes.count < HostLog.boardLimit else { break }
            let label = "[\(hex(r.start))-\(hex(r.end))] \(printable(r.name))"
            guard let t = window.twinAddress(r.start), r.end < top, r.end >= r.start else {
                notes.append("the board's reserved region \(label) is outside its RAM; the twin leaves it out")
                continue
            }
            var n = ReservedMemoryNode(name: nodeName(r.name, index: i))
            n.reg = AddressRange(t, t + (r.end - r.start + 1))
            n.noMap = !r.map
            n.reusable = r.reusable
            if let p = pools.firstIndex(where: { $0.base == r.start }), r.reusable, r.map {
                pools.remove(at: p)
                n.cmaDefault = n.name == "linux,cma"
            } else if r.reusable {
                // Reusable but no CMA pool line: not a shared-dma-pool on the board, so not a CMA area in the twin.
                n.compatible = inertCompatible
                notes.append("the board's region \(label) is reusable but the board made no CMA pool of it; the twin keeps it reserved as \(inertCompatible)")
            }
            guard names.insert(n.nodeName).inserted else {
                notes.append("the board's region \(label) has the place and name of another; the twin has it once")
                continue
            }
            nodes.append(n)
        }
        // Pool lines without their region line (lost from the log): pools all the same, named in turn.
        for (i, p) in pools.prefix(HostLog.boardLimit).enumerated() where nodes.count < HostLog.boardLimit {
            let (size, o) = p.sizeMiB.multipliedReportingOverflow(by: mib)
            guard !o, let t = window.twinAddress(p.base), let end = window.twinAddress(p.base &+ size &- 1), end >= t else {
                notes.append("the board's CMA pool at \(hex(p.base)) (\(p.sizeMiB) MiB) is outside its RAM; the twin leaves it out")
                continue
            }
            var n = ReservedMemoryNode(name: "board-pool\(i)")
            n.reg = AddressRange(t, t + size)
            n.reusable = true
            guard names.insert(n.nodeName).inserted else { continue }
            nodes.append(n)
            notes.append("the board's CMA pool at \(hex(p.base)) (\(p.sizeMiB) MiB) has no `OF: reserved mem:` line naming it; the twin calls it \(n.name)")
        }
        // A default pool the board's cma= bypassed: its size is not in the log, so a small one stands in, for the
        // twin's kernel to bypass the same way (the kernel frees a bypassed node's memory again).
        for name in facts.boot.deviceTree.bypassed.prefix(1) where !nodes.contains(where: \.cmaDefault) {
            var n = ReservedMemoryNode(name: nodeName(name, index: nodes.count))
            n.size = bypassedPoolSize
            n.reusable = true
            n.cmaDefault = true
            guard names.insert(n.nodeName).inserted else { continue }
            nodes.append(n)
            notes.append("the board's cma= bypassed its default pool \(n.name), whose size the log does not give; the twin has a \(ByteSize(bytes: bypassedPoolSize)) \(n.name) node for its kernel to bypass the same way")
        }
        for f in facts.boot.deviceTree.failures.prefix(8) {
            notes.append("the board's kernel printed `\(printable(f))`: that node is not in the twin")
        }

        var spec = MachineSpec(memory: ByteSize(bytes: memory), type: .virt, architecture: .arm64)
        spec.cpus = 1
        return TwinPlan(machine: spec, lowMemory: memory, parameters: [], map: GuestMemoryMap.virt(memory: memory).e820, notes: notes,
                        deviceTree: DeviceTree(reservedMemory: nodes), window: window)
    }

    /// A note when the twin's DMA zone will end elsewhere (in board addresses) than the board's did. arm64 ends
    /// ZONE_DMA at the device tree's DMA limit, capped at 4 GiB when RAM starts below 4 GiB, and at the end of RAM;
    /// `virt` has no dma-ranges, so the twin's ends at min(4 GiB, top of RAM).
    static func dmaNote(_ facts: HostFacts, window: AddressWindow, memory: UInt64) -> String? {
        let fourG: UInt64 = 1 << 32
        let twinLimit = min(fourG, virtRAMBase + memory)
        let (twinInBoard, overflow) = window.host.addingReportingOverflow(twinLimit - virtRAMBase)
        guard !overflow else { return nil }
        let boardTop = window.host &+ window.size
        let printed = facts.boardDMALimit
        let boardLimit = printed ?? (window.host < fourG ? min(fourG, boardTop) : boardTop)
        guard boardLimit != twinInBoard else { return nil }
        return "the board's DMA zone ends at \(hex(boardLimit))\(printed == nil ? " (from its RAM; the log has no `Zone ranges:`)" : " (its `Zone ranges:`)"), the twin's at \(hex(twinInBoard)) in board addresses (\(hex(twinLimit)) in the twin): a cma= area without a range is placed top-down below that limit, so it may land elsewhere"
    }

    /// A board region's node name for the twin: the printed name without its unit address when it is a valid
    /// node name, else `board-region<i>` (a log's text never reaches the device-tree source unchecked).
    static func nodeName(_ printed: String, index: Int) -> String {
        let name = String(printed.prefix { $0 != "@" })
        return DeviceTree.isNodeName(name) ? name : "board-region\(index)"
    }

    /// A log's text for a note: printable ASCII only, at most 120 characters.
    public static func printable(_ s: String) -> String {
        String(s.unicodeScalars.prefix(120).map { $0.isASCII && $0.value >= 0x20 && $0.value < 0x7f ? Character($0) : "?" })
    }

    /// The board's address of a twin address (the identity for x86 twins and exact board twins).
    public func hostAddress(_ twin: UInt64) -> UInt64? {
        guard let w = window else { return twin }
        return w.hostAddress(twin)
    }
}

extension TwinPlan {
    /// An arm64 twin's plan for people: machine, where its RAM is against the board's, each reserved-memory node.
    var boardSummary: [String] {
        var out = ["twin: virt (arm64), \(machine.memory) of RAM from \(hex(Self.virtRAMBase))"
                   + (window.map { $0.isShifted ? " (the board's from \(hex($0.host)), shifted \($0.offsetText))" : " (as on the board)" } ?? "")
                   + ", \(deviceTree.reservedMemory.count) reserved-memory nodes"]
        for n in deviceTree.reservedMemory {
            var words: [String] = []
            if let r = n.reg { words.append("reg \(r)" + (window.flatMap { w in w.isShifted ? w.hostAddress(r.start).map { " (board \(hex($0)))" } : nil } ?? "")) }
            if let s = n.size { words.append("size \(ByteSize(bytes: s))") }
            if let c = n.effectiveCompatible { words.append(c) }
            if n.reusable { words.append("reusable") }
            if n.noMap { words.append("no-map") }
            if n.cmaDefault { words.append("linux,cma-default") }
            out.append("device-tree: \(n.nodeName): \(words.joined(separator: ", "))")
        }
        return out + notes.map { "note: \($0)" }
    }
}
