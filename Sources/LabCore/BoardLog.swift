/// What a replay reads from an arm64 board's boot log. A board has no e820 table: its RAM is the device tree's
/// `memory` nodes, which the kernel prints as the `  node   0: [mem 0x...-0x...]` lines after `Early memory node
/// ranges`; its firmware carve-outs and CMA pools are `reserved-memory` nodes (`OF: reserved mem:` lines,
/// `Reserved memory: created CMA memory pool at ...`); its DMA zone limit is in `Zone ranges:`. The lines are read
/// by KernelLogParser (DeviceTreeLog.swift) and HostLog (the zones); this file says what they add up to.
///
/// A log is an arm64 board's when it has no `BIOS-e820:` line and a `Machine model:` line (which every
/// device-tree boot prints first thing in setup_arch).

/// One zone of the `Zone ranges:` block: `  DMA      [mem 0x0000000040000000-0x00000000ffffffff]` or
/// `  DMA32    empty`.
public struct MemoryZone: Codable, Equatable, Sendable {
    public var name: String
    /// [start, end] inclusive; nil when the kernel printed `empty`.
    public var range: MemoryRange?
    public init(name: String, range: MemoryRange?) { self.name = name; self.range = range }
}

extension HostFacts {
    /// The guest architecture the log comes from: arm64 for a device-tree boot without an e820 table.
    public var architecture: Architecture {
        boot.e820.isEmpty && userMap.isEmpty && boot.deviceTree.model != nil ? .arm64 : .x86_64
    }

    /// A board's RAM: the memory-node ranges in address order, touching or overlapping ones joined (the kernel
    /// splits a range where a `no-map` region starts and ends, so one bank prints as several), each `usable`.
    /// Empty on x86.
    public var boardRAM: [MemoryRange] {
        guard architecture == .arm64 else { return [] }
        let sorted = boot.nodeMemory.map { MemoryRange(start: $0.start, end: $0.end, type: "usable") }.sorted { $0.start < $1.start }
        var out: [MemoryRange] = []
        for r in sorted {
            if let last = out.last, last.end == .max || r.start <= last.end + 1 {
                out[out.count - 1].end = max(last.end, r.end)
            } else {
                out.append(r)
            }
        }
        return out
    }

    /// Where the board's DMA zone ends (exclusive): the end of `DMA`, else of `DMA32`; nil when the log has no
    /// zone lines or both are empty. arm64 places a `cma=` area without a range below this (arm64_dma_phys_limit).
    public var boardDMALimit: UInt64? {
        for name in ["DMA", "DMA32"] {
            if let r = zones.first(where: { $0.name == name })?.range, r.end < .max { return r.end + 1 }
        }
        return nil
    }
}

extension HostLog {
    /// The most memory-node ranges, zones and reserved regions a board log may bring (each becomes a line of the
    /// plan or a device-tree node): real boards have a handful.
    static let boardLimit = 256

    /// The `Zone ranges:` block: the zone lines that follow it, up to the first line that is not one.
    static func zones(_ messages: [String]) -> [MemoryZone] {
        guard let start = messages.firstIndex(where: { $0.hasPrefix("Zone ranges:") }) else { return [] }
        var out: [MemoryZone] = []
        for m in messages[(start + 1)...].prefix(8) {
            let line = Substring(m).drop { $0 == " " }
            guard let space = line.firstIndex(of: " ") else { break }
            let name = String(line[..<space])
            guard ["DMA", "DMA32", "Normal", "HighMem", "Movable", "Device"].contains(name) else { break }
            let rest = line[space...].drop { $0 == " " }
            if rest == "empty" {
                out.append(MemoryZone(name: name, range: nil))
            } else if let r = KernelLogParser.memRange(rest) {
                out.append(MemoryZone(name: name, range: MemoryRange(start: r.start, end: r.end)))
            } else {
                break
            }
        }
        return out
    }

    /// What an arm64 board's log lacks for a replay, each with how to capture it.
    static func boardMissing(_ facts: HostFacts) -> [String] {
        var out: [String] = []
        if facts.boot.kernelRelease == nil {
            out.append("no `Linux version` line (the kernel release): the log does not start at the boot; save `dmesg` right after boot or the serial console from power-on")
        }
        if facts.boot.nodeMemory.isEmpty {
            out.append("no `Early memory node ranges` lines (`  node   0: [mem 0x...-0x...]`, the board's RAM as its device tree gives it): the twin cannot be planned without them; save the whole boot (`dmesg` soon after boot, or the serial console), or add the board's `memory` node ranges to the log by hand in that form")
        }
        if facts.boot.commandLine == nil {
            out.append("no `Kernel command line:` line: the board's cma= parameters are unknown; pass them with --try, or save /proc/cmdline")
        }
        return out
    }
}
