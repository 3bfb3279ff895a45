/// The oracle's per-version rules: the kernel version they are keyed on, what each version range does (cma-reference.md
/// §1), the CMA alignment and area slots, and what each kernel makes of `cma_pernuma=`, `numa_cma=` and `hugetlb_cma=`.

/// A kernel version (`6.12.117`, `6.1.0-56-amd64` → 6.1.0).
public struct KernelVersion: Comparable, Hashable, Codable, Sendable, CustomStringConvertible {
    public var major: Int
    public var minor: Int
    public var patch: Int
    public init(_ major: Int, _ minor: Int, _ patch: Int = 0) { self.major = major; self.minor = minor; self.patch = patch }

    /// From a release string (`uname -r`, `Linux version ...`).
    public init?(release: String) {
        let numbers = release.split(whereSeparator: { !$0.isNumber }).prefix(3).compactMap { Int($0) }
        guard numbers.count >= 2, release.first?.isNumber == true else { return nil }
        self.init(numbers[0], numbers[1], numbers.count > 2 ? numbers[2] : 0)
    }

    /// From the header of a .config: `# Linux/x86 6.12.117 Kernel Configuration`.
    public init?(configText: String) {
        for line in configText.split(separator: "\n").prefix(10) where line.hasPrefix("# Linux/") && line.hasSuffix(" Kernel Configuration") {
            let words = line.split(separator: " ")
            if words.count >= 3, let v = KernelVersion(release: String(words[2])) { self = v; return }
        }
        return nil
    }

    public static func < (a: Self, b: Self) -> Bool { (a.major, a.minor, a.patch) < (b.major, b.minor, b.patch) }
    public var description: String { "\(major).\(minor).\(patch)" }
    /// `6.12`: the series the rules are keyed on.
    public var series: String { "\(major).\(minor)" }
}

extension Oracle {
    // MARK: - Version rules (cma-reference.md §1)

    /// `Reserved ... on node %d` (≈6.6+).
    static func printsNode(_ v: KernelVersion) -> Bool { v >= KernelVersion(6, 6) }
    /// Non-fixed areas first try bottom-up from 4 GiB (≈5.11+).
    static func bottomUpFrom4G(_ v: KernelVersion) -> Bool { v >= KernelVersion(5, 11) }
    /// Fixed areas are checked for alignment and the limit (5.3+); before, a misaligned base is rounded up.
    static func checksFixed(_ v: KernelVersion) -> Bool { v >= KernelVersion(5, 3) }

    /// CMA_MIN_ALIGNMENT_BYTES on x86_64 (§3.1), with the reason.
    public static func alignment(_ v: KernelVersion, _ config: KernelConfig?) -> (bytes: UInt64, why: String) {
        guard v >= KernelVersion(5, 19) else { return (4 * mib, "4 MiB: before 5.19 the alignment is PAGE_SIZE << (MAX_ORDER - 1) whatever the config") }
        guard let config else { return (4 * mib, "4 MiB: no .config known, assuming neither HUGETLB_PAGE nor TRANSPARENT_HUGEPAGE (a tinyconfig test kernel)") }
        if config.isEnabled("HUGETLB_PAGE") { return (2 * mib, "2 MiB: one pageblock, and CONFIG_HUGETLB_PAGE makes pageblock_order 9") }
        if v >= KernelVersion(6, 12), config.isEnabled("TRANSPARENT_HUGEPAGE") {
            return (2 * mib, "2 MiB: one pageblock, and on 6.12 CONFIG_TRANSPARENT_HUGEPAGE makes pageblock_order 9")
        }
        return (4 * mib, "4 MiB: one pageblock of order 10 (no HUGETLB_PAGE\(v >= KernelVersion(6, 12) ? " and no TRANSPARENT_HUGEPAGE" : ""))")
    }

    /// How many CMA areas fit (MAX_CMA_AREAS): CMA_AREAS on 6.12, 1 + CMA_AREAS before.
    static func areaSlots(_ v: KernelVersion, _ config: KernelConfig?) -> Int {
        let n = config?["CMA_AREAS"].flatMap { Int($0) } ?? 7
        return v >= KernelVersion(6, 12) ? n : n + 1
    }

    // MARK: - cma_pernuma=, numa_cma=, hugetlb_cma=

    static func otherAreas(_ input: OracleInput, into p: inout CMAPrediction) -> [String] {
        let v = input.version, config = input.config
        var out: [String] = []
        let hasCMA = config?.isEnabled("CMA") ?? true
        for param in input.commandLine.parameters {
            guard let name = CMAFamilyParameter.Name(rawValue: param.key) else { continue }
            guard let value = param.value else {
                out.append("bare `\(param.key)` has no value: ignored"); continue
            }
            let parsed = CMAFamilyParameter.parse(name, value)
            p.warnings += parsed.warnings
            let rendered = "\(param.key)=\(value)"
            switch name {
            case .cmaPernuma:
                if v >= KernelVersion(6, 6) {
                    if config?.isEnabled("DMA_NUMA_CMA") == true {
                        out.append("\(rendered): one `pernuma<nid>` area of \(ByteSize(bytes: parsed.perNodeSize ?? 0)) on every online node")
                    } else {
                        p.unknownParameters.append(rendered)
                        out.append("\(rendered): no CONFIG_DMA_NUMA_CMA, so an unknown parameter passed to init")
                    }
                } else if v >= KernelVersion(5, 10) {
                    if config?.isEnabled("DMA_PERNUMA_CMA") == true {
                        out.append("\(rendered): accepted but does nothing on x86 (\(v.series) reserves per-node areas only on arm64)")
                    } else {
                        p.unknownParameters.append(rendered)
                        out.append("\(rendered): no CONFIG_DMA_PERNUMA_CMA, so an unknown parameter passed to init")
                    }
                } else {
                    p.unknownParameters.append(rendered); out.append("\(rendered): does not exist before ≈5.10")
                }
            case .numaCMA:
                if v >= KernelVersion(6, 6), config?.isEnabled("DMA_NUMA_CMA") == true {
                    out.append("\(rendered): `numa<nid>` areas for \(parsed.nodes.map { "node \($0.node) (\(ByteSize(bytes: $0.size)))" }.joined(separator: ", "))")
                } else {
                    p.unknownParameters.append(rendered)
                    out.append(v >= KernelVersion(6, 6) ? "\(rendered): no CONFIG_DMA_NUMA_CMA, so an unknown parameter passed to init"
                        : "\(rendered): `numa_cma=` does not exist on \(v.series) (≈6.6+), so an unknown parameter passed to init")
                }
            case .hugetlbCMA:
                if hasCMA, config?.isEnabled("HUGETLBFS") ?? false, v >= KernelVersion(5, 7) {
                    let cpu = input.machine.cpuModel ?? ""
                    if cpu == "max" || cpu == "host" || cpu.contains("+pdpe1gb") {
                        out.append("\(rendered): `hugetlb<nid>` areas (1 GiB aligned on 6.12, 2 MiB on 6.1; placement predicted on 6.6+)")
                    } else {
                        out.append("\(rendered): accepted, but QEMU's default CPU has no 1 GiB pages (pdpe1gb), so x86 never calls hugetlb_cma_reserve(): nothing is reserved (use `cpu: max`)")
                    }
                } else {
                    p.unknownParameters.append(rendered)
                    out.append("\(rendered): needs CONFIG_CMA and CONFIG_HUGETLBFS, so an unknown parameter passed to init")
                }
            }
        }
        return out
    }
}
