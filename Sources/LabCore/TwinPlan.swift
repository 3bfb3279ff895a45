/// A twin of a real machine for a replay: a QEMU `pc` guest whose real RAM covers every range the host's kernel
/// called usable, and a kernel command line that forces the host's map on the guest's kernel
/// (`memmap=exactmap`, then one `memmap=` per range: usable `@`, ACPI data `#`, anything else `$`).
///
/// QEMU's `pc` puts guest RAM at [0, lowmem) and [4 GiB, 4 GiB + rest); `max-ram-below-4g` sets lowmem, so the
/// twin's low RAM ends where the host's last usable byte below 4 GiB ends (rounded up to 2 MiB) and its memory
/// reaches the host's last usable byte above 4 GiB. RAM is `memory-backend-ram,reserve=off` as for every guest,
/// so only touched pages cost host memory: a 512 GiB host replays on a small box.
///
/// What QEMU itself needs inside memory the host calls usable stays reserved, and the plan says so: SeaBIOS
/// keeps its ACPI tables in the last 128 KiB of low RAM. The kernel and initrd land where QEMU puts them
/// (the kernel at 16 MiB, the initrd below the top of low RAM); the comparison names that as a difference.

public struct TwinPlan: Equatable, Sendable {
    /// The guest: `pc`, memory from 0 to the top of the host's usable RAM (holes included), `lowMemory` below 4 GiB.
    public var machine: MachineSpec
    /// QEMU's `max-ram-below-4g`: where the twin's low RAM ends.
    public var lowMemory: UInt64
    /// `memmap=exactmap memmap=...`, in the order the kernel reads them.
    public var parameters: [String]
    /// The map the twin's kernel will see (after the carve-outs and merges).
    public var map: [MemoryRange]
    /// What the twin does differently from the host, and why.
    public var notes: [String]
    /// An arm64 twin's reserved-memory nodes (the board's regions, BoardTwinPlan.swift); empty on x86.
    public var deviceTree = DeviceTree()
    /// Where the board's addresses lie in an arm64 twin; nil on x86, where the twin's addresses are the host's.
    public var window: AddressWindow? = nil
}

public enum TwinPlanError: Error, Equatable, CustomStringConvertible {
    case noMap
    case noUsableMemory
    case tooLong(bytes: Int, limit: Int)
    case tooLarge(UInt64)
    case noBoardMemory
    case tooManyRanges(Int, limit: Int)

    public var description: String {
        switch self {
        case .noMap: return "the host log has no memory map (`BIOS-e820:` or `user: [mem` lines) to build a twin from"
        case .noUsableMemory: return "the host's map has no usable RAM"
        case .tooLong(let b, let l): return "the host's map needs \(b) bytes of memmap= parameters even with its reserved ranges merged, more than the \(l) the x86 command line has room for"
        case .tooLarge(let m): return "the twin would need \(m >> 30) GiB of guest RAM, more than cmalab's limit of \(MachineSpec.maximumMemory)"
        case .noBoardMemory: return "the board's log has no memory ranges (`Early memory node ranges` and its `node N: [mem ...]` lines) to build a twin from"
        case .tooManyRanges(let n, let l): return "the board's log has \(n) separate memory ranges, more than the \(l) a twin is planned with"
        }
    }
}

extension TwinPlan {
    /// x86's COMMAND_LINE_SIZE.
    public static let commandLineLimit = 2048
    /// What SeaBIOS reserves at the top of low RAM for its ACPI tables and the like.
    static let firmwareTop: UInt64 = 128 << 10
    /// The most low RAM `pc` gives a guest with RAM above 4 GiB (QEMU caps `max-ram-below-4g` at 3 GiB there).
    static let maximumLowMemory: UInt64 = 0xc000_0000

    /// Plans the twin of `map` (the host's effective map). `budget` is what the command line has left for the
    /// memmap= parameters (the limit less the rest of the twin's command line).
    public static func plan(map hostMap: [MemoryRange], nodes srat: [NodeMemoryRange] = [], budget: Int) throws(TwinPlanError) -> TwinPlan {
        guard !hostMap.isEmpty else { throw .noMap }
        let fourG: UInt64 = 1 << 32
        let sorted = hostMap.sorted { $0.start < $1.start }
        let usable = sorted.filter { $0.type == "usable" }
        guard !usable.isEmpty else { throw .noUsableMemory }
        var notes: [String] = []
        func roundUp(_ v: UInt64, _ a: UInt64) -> UInt64 { let (s, o) = v.addingReportingOverflow(a - 1); return o ? UInt64.max & ~(a - 1) : s & ~(a - 1) }

        // Low RAM: up to the last usable byte below 4 GiB, at least 1 MiB past it for the firmware carve-out.
        let lowUsableEnd = usable.filter { $0.start < fourG }.map { min($0.end, fourG - 1) &+ 1 }.max() ?? 0
        var low = roundUp(max(lowUsableEnd, 16 << 20), 2 << 20)
        if low > maximumLowMemory {
            notes.append("the host has usable RAM up to \(hex(lowUsableEnd)) below 4 GiB; QEMU's pc has its PCI hole from \(hex(maximumLowMemory)), so the twin's low RAM ends there and the host's RAM above it is not in the twin")
            low = maximumLowMemory
        }
        // A range that ends at 2^64 - 1 (the log's word) ends "at the top": roundUp saturates and the size check refuses it.
        let highUsableEnd = usable.filter { $0.end >= fourG }.map { $0.end == .max ? UInt64.max : $0.end + 1 }.max()
        let high = highUsableEnd.map { roundUp($0, 2 << 20) - fourG } ?? 0
        let (memory, overflow) = low.addingReportingOverflow(high)
        guard !overflow, memory <= MachineSpec.maximumMemory.bytes else { throw .tooLarge(overflow ? .max : memory) }

        // The twin's map: the host's ranges clipped to the twin's RAM, SeaBIOS's ACPI tables kept reserved.
        var map: [MemoryRange] = []
        let carve = MemoryRange(start: low - firmwareTop, end: low - 1, type: "reserved")
        for r in sorted {
            var parts = [r]
            if r.type == "usable" {
                // Usable RAM the twin does not have (between lowmem and 4 GiB) is dropped.
                parts = parts.flatMap { clip($0, to: [(0, low - 1), (fourG, fourG &+ high &- 1)]) }
                if parts != [r] { notes.append("host usable [\(hex(r.start))-\(hex(r.end))] is outside the twin's RAM and left out") }
                let before = parts
                parts = parts.flatMap { subtract(carve, from: $0) }
                if before != parts { notes.append("[\(hex(carve.start))-\(hex(carve.end))] stays reserved: SeaBIOS keeps its ACPI tables there, where the host has usable RAM") }
            }
            map += parts
        }
        if !map.contains(where: { $0.start <= carve.start && $0.end >= carve.end && $0.type != "usable" }) { map.append(carve) }
        map.sort { $0.start < $1.start }

        var params = parameters(map)
        if length(params) > budget {
            // Reserved and ACPI ranges with nothing usable between them can be one range: the gaps between
            // them are not RAM to the kernel either way.
            let merged = mergeNonUsable(map)
            notes.append("merged \(map.count - merged.count) reserved ranges with the gaps between them to fit the \(commandLineLimit)-byte command line")
            map = merged
            params = parameters(map)
            guard length(params) <= budget else { throw .tooLong(bytes: length(params), limit: budget) }
        }
        var spec = MachineSpec(memory: ByteSize(bytes: memory), type: .pc)
        spec.lowMemory = ByteSize(bytes: low)
        if !srat.isEmpty {
            switch nodeSizes(srat, usable: usable, low: low, memory: memory) {
            case .success(let sizes) where sizes.count > 1:
                spec.numaNodes = sizes.map { ByteSize(bytes: $0) }
                spec.cpus = sizes.count
                notes.append("NUMA: \(sizes.count) nodes as in the host's SRAT, one CPU each (QEMU gives node 0 the first \(ByteSize(bytes: sizes[0])) of RAM, node 1 the next, and so on)")
            case .success: break
            case .failure(let why): notes.append("NUMA: the twin has one node: \(why)")
            }
        }
        return TwinPlan(machine: spec, lowMemory: low, parameters: params, map: map, notes: notes)
    }

    public struct NodeLayoutError: Error { public var reason: String }

    /// The sizes QEMU's `-numa node,memdev=` need for the host's SRAT nodes: QEMU hands out guest RAM in node
    /// order (low RAM, then from 4 GiB), so node k+1 starts where the host's node k+1 starts, counted in guest RAM.
    /// Fails (with the reason) when the host's nodes do not follow each other in address order or interleave.
    /// SRAT ranges are clipped to the host's usable RAM first: servers list hot-pluggable ranges far past it.
    static func nodeSizes(_ srat: [NodeMemoryRange], usable: [MemoryRange], low: UInt64, memory: UInt64) -> Result<[UInt64], NodeLayoutError> {
        let fourG: UInt64 = 1 << 32
        var spans: [Int: (start: UInt64, end: UInt64)] = [:]
        for r in srat {
            for u in usable where u.start <= r.end && u.end >= r.start {
                let a = max(u.start, r.start), b = min(u.end, r.end)
                let s = spans[r.node]
                spans[r.node] = (min(s?.start ?? a, a), max(s?.end ?? b, b))
            }
        }
        guard !spans.isEmpty else { return .failure(NodeLayoutError(reason: "the SRAT's ranges hold none of the host's usable RAM")) }
        let ordered = spans.sorted { $0.value.start < $1.value.start }
        guard ordered.map(\.key) == Array(0..<ordered.count) else {
            return .failure(NodeLayoutError(reason: "the host's nodes are not numbered 0, 1, ... in address order (\(ordered.map(\.key))), and QEMU can only give nodes RAM in number order"))
        }
        for (a, b) in zip(ordered, ordered.dropFirst()) where a.value.end >= b.value.start {
            return .failure(NodeLayoutError(reason: "node \(a.key)'s memory [\(hex(a.value.start))-\(hex(a.value.end))] interleaves with node \(b.key)'s"))
        }
        // A physical address as an offset into guest RAM, rounded down to 1 MiB (QEMU's node sizes are whole MiB).
        func offset(_ address: UInt64) -> UInt64 {
            let o = address < fourG ? min(address, low) : low &+ (address - fourG)
            return min(o, memory) & ~((1 << 20) - 1)
        }
        var starts = ordered.map { offset($0.value.start) }
        starts[0] = 0
        var sizes: [UInt64] = []
        for (i, s) in starts.enumerated() {
            let end = i + 1 < starts.count ? starts[i + 1] : memory
            guard end > s else {
                return .failure(NodeLayoutError(reason: "node \(ordered[i].key) has no memory inside the twin's RAM"))
            }
            sizes.append(end - s)
        }
        return .success(sizes)
    }

    /// A twin for a log without a memory map: a plain QEMU pc guest as large as the `Memory: A/TK available` line's
    /// total T (which counts the RAM the kernel manages, a little less than the machine's), rounded up to 256 MiB.
    /// QEMU's own map stands in for the host's, and the notes say so.
    public static func fromMemoryLine(_ line: String) -> TwinPlan? {
        guard let slash = line.firstIndex(of: "/"), let k = line[slash...].firstIndex(of: "K"),
              let total = UInt64(line[line.index(after: slash)..<k]), total > 0, total < (16 << 30) else { return nil }
        let bytes = total * 1024
        let size = (bytes + (256 << 20) - 1) / (256 << 20) * (256 << 20)
        let spec = MachineSpec(memory: ByteSize(bytes: size), type: .pc)
        return TwinPlan(machine: spec, lowMemory: min(size, maximumLowMemory), parameters: [], map: [],
                        notes: ["the log has no memory map: the twin is a plain QEMU pc guest of \(ByteSize(bytes: size)) (the `Memory:` line's total, \(total)K, rounded up), with QEMU's map (RAM to 3 GiB, then from 4 GiB), not the host's"])
    }

    /// `memmap=exactmap` and one parameter per range: `memmap=<size>@<start>` (usable), `#` (ACPI data), `$` (other).
    static func parameters(_ map: [MemoryRange]) -> [String] {
        ["memmap=exactmap"] + map.map { r in
            let kind = r.type == "usable" ? "@" : r.type == "ACPI data" ? "#" : "$"
            return "memmap=\(hex(r.size))\(kind)\(hex(r.start))"
        }
    }

    /// The bytes the parameters take on the command line, with a space before each.
    public static func length(_ params: [String]) -> Int { params.reduce(0) { $0 + $1.utf8.count + 1 } }

    /// The parts of `r` inside the windows (inclusive bounds).
    static func clip(_ r: MemoryRange, to windows: [(UInt64, UInt64)]) -> [MemoryRange] {
        windows.compactMap { w in
            guard w.0 <= w.1 else { return nil }
            let s = max(r.start, w.0), e = min(r.end, w.1)
            return s <= e ? MemoryRange(start: s, end: e, type: r.type) : nil
        }
    }

    /// `r` without `hole`.
    static func subtract(_ hole: MemoryRange, from r: MemoryRange) -> [MemoryRange] {
        guard hole.start <= r.end, hole.end >= r.start else { return [r] }
        var out: [MemoryRange] = []
        if r.start < hole.start { out.append(MemoryRange(start: r.start, end: hole.start - 1, type: r.type)) }
        if r.end > hole.end { out.append(MemoryRange(start: hole.end + 1, end: r.end, type: r.type)) }
        return out
    }

    /// Consecutive non-usable ranges as one `reserved` range each run.
    static func mergeNonUsable(_ map: [MemoryRange]) -> [MemoryRange] {
        var out: [MemoryRange] = []
        for r in map {
            if r.type != "usable", let last = out.last, last.type != "usable" {
                out[out.count - 1] = MemoryRange(start: last.start, end: max(last.end, r.end), type: "reserved")
            } else {
                out.append(r)
            }
        }
        return out
    }

    /// The plan for people: machine, QEMU's low RAM, the parameters and the notes.
    public var summary: [String] {
        if machine.type == .virt { return boardSummary }
        return ["twin: \(machine.type.rawValue), \(machine.memory) of RAM (max-ram-below-4g=\(hex(lowMemory)), the rest from 4 GiB), \(map.count) ranges",
         "kernel parameters (\(Self.length(parameters)) bytes): \(parameters.joined(separator: " "))"]
            + notes.map { "note: \($0)" }
    }
}
