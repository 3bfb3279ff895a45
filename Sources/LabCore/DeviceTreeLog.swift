/// The device-tree lines of an arm64 boot log (6.12's drivers/of/of_reserved_mem.c, pr_fmt `OF: reserved mem: `,
/// and kernel/dma/contiguous.c's reserved-memory setup), and the memory lines every arm64 boot prints:
///
/// * `OF: reserved mem: 0x0000000070000000..0x000000007fffffff (262144 KiB) map reusable linux,cma`
///   (`nomap non-reusable`, ...): one per reserved-memory node the kernel kept, after setup
/// * `Reserved memory: created CMA memory pool at 0x0000000070000000, size 256 MiB`: a `shared-dma-pool` node became
///   a CMA area (named after the node)
/// * `Reserved memory: bypass linux,cma node, using cmdline CMA params instead`: `cma=` won over the default pool
/// * `OF: reserved mem: failed to allocate memory for node 'linux,cma': size 256 MiB` and
///   `OF: reserved mem: Reserved memory: failed to reserve memory for node 'fw@48000000': base ..., size 16 MiB`
/// * `Machine model: linux,dummy-virt`, and after `Early memory node ranges` one `  node   0: [mem 0x...-0x...]`
///   line per memblock memory range (the NUMA nodes' memory on a device-tree machine, as the SRAT is on x86).
///
/// Pure; malformed lines are skipped.
public struct DeviceTreeBootFacts: Codable, Equatable, Sendable {
    /// Every `OF: reserved mem: 0x...` line, in order.
    public var regions: [ReservedMemoryRegion] = []
    /// Every `created CMA memory pool` line: the pool's base and size.
    public var pools: [ReservedArea] = []
    /// The nodes `cma=` bypassed.
    public var bypassed: [String] = []
    /// The failure lines (without `OF: reserved mem: `), for the nodes the kernel could not place or reserve.
    public var failures: [String] = []
    /// `Machine model:`.
    public var model: String?

    public init() {}
    public var isEmpty: Bool { regions.isEmpty && pools.isEmpty && bypassed.isEmpty && failures.isEmpty && model == nil }
}

/// One `OF: reserved mem:` region: [start, end] inclusive as printed, whether it stays mapped, whether it is
/// reusable (a CMA pool), and its node name.
public struct ReservedMemoryRegion: Codable, Equatable, Sendable {
    public var start: UInt64
    public var end: UInt64
    public var map: Bool
    public var reusable: Bool
    public var name: String
    public init(start: UInt64, end: UInt64, map: Bool, reusable: Bool, name: String) {
        self.start = start; self.end = end; self.map = map; self.reusable = reusable; self.name = name
    }
}

extension KernelLogParser {
    /// Reads one cleaned line if it is one of the device-tree or memory-node lines above; true when it was.
    /// `earlyNodes` collects the `node N: [mem ...]` lines; `facts(...)` keeps them as `nodeMemory` at the end when
    /// the log is a device-tree machine's (it printed `Machine model:`, which can come after them) without an SRAT.
    static func recordDeviceTree(_ text: String, into facts: inout BootLogFacts, earlyNodes: inout [NodeMemoryRange]) -> Bool {
        if text.hasPrefix("OF: reserved mem: ") {
            let body = text.dropFirst("OF: reserved mem: ".count)
            if body.hasPrefix("0x") {
                if let r = reservedRegion(body) { facts.deviceTree.regions.append(r) }
            } else if body.contains("failed to ") {
                facts.deviceTree.failures.append(String(body))
            }
            return true
        }
        if text.hasPrefix("Reserved memory: created CMA memory pool at 0x") {
            // `0x0000000070000000, size 256 MiB`
            let rest = text.dropFirst("Reserved memory: created CMA memory pool at 0x".count)
            let parts = rest.split(separator: ",", maxSplits: 1)
            if parts.count == 2, let base = UInt64(parts[0], radix: 16) {
                let size = parts[1].trimmingCharacters(in: " ")
                if size.hasPrefix("size "), size.hasSuffix(" MiB"), let mib = UInt64(size.dropFirst(5).dropLast(4)) {
                    facts.deviceTree.pools.append(ReservedArea(sizeMiB: mib, base: base))
                }
            }
            return true
        }
        if text.hasPrefix("Reserved memory: bypass "), text.hasSuffix(" node, using cmdline CMA params instead") {
            let name = text.dropFirst("Reserved memory: bypass ".count).dropLast(" node, using cmdline CMA params instead".count)
            facts.deviceTree.bypassed.append(String(name))
            return true
        }
        if text.hasPrefix("Machine model: ") {
            if facts.deviceTree.model == nil { facts.deviceTree.model = String(text.dropFirst("Machine model: ".count)) }
            return true
        }
        // `  node   0: [mem 0x0000000040000000-0x000000013fffffff]` (after `Early memory node ranges`); the console
        // keeps the leading spaces, /dev/kmsg too.
        let trimmed = text.drop { $0 == " " }
        if trimmed.hasPrefix("node "), let colon = trimmed.firstIndex(of: ":"),
           let node = Int(trimmed[trimmed.index(trimmed.startIndex, offsetBy: 5)..<colon].trimmingCharacters(in: " ")),
           let r = memRange(trimmed[trimmed.index(after: colon)...].drop { $0 == " " }) {
            if earlyNodes.count < 4096 { earlyNodes.append(NodeMemoryRange(node: node, start: r.start, end: r.end)) }
            return true
        }
        return false
    }

    /// `0x0000000070000000..0x000000007fffffff (262144 KiB) map reusable linux,cma`.
    static func reservedRegion(_ body: Substring) -> ReservedMemoryRegion? {
        let words = body.split(separator: " ")
        guard words.count >= 6 else { return nil }
        let bounds = words[0].split(separator: ".", omittingEmptySubsequences: true)
        guard bounds.count == 2, bounds[0].hasPrefix("0x"), bounds[1].hasPrefix("0x"),
              let start = UInt64(bounds[0].dropFirst(2), radix: 16), let end = UInt64(bounds[1].dropFirst(2), radix: 16), start <= end
        else { return nil }
        // words[1...2] is `(262144 KiB)`; then map|nomap, reusable|non-reusable, the name (which has no spaces).
        let map = words[3] == "map"
        guard map || words[3] == "nomap", words[4] == "reusable" || words[4] == "non-reusable" else { return nil }
        return ReservedMemoryRegion(start: start, end: end, map: map, reusable: words[4] == "reusable",
                                    name: words[5...].joined(separator: " "))
    }
}
