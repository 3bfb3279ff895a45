/// The CMA boot parameters, parsed exactly as the kernel parses them (kernel/dma/contiguous.c, mm/hugetlb.c;
/// cma-reference.md §2): `cma=`, `cma_pernuma=`, `numa_cma=` and `hugetlb_cma=`. Numbers go through the kernel's
/// memparse (base 0: `0x` hex, a leading `0` octal; one K/M/G/T/P/E suffix in either case), and anything the
/// kernel would silently ignore or misread becomes a warning that names the character.

/// One `cma=` value as `early_cma()` reads it: `size = memparse(p)`, then `@base` (memparse), then `-limit`
/// (memparse); anything else is ignored.
public struct CMARequest: Equatable, Sendable {
    public var size: UInt64
    /// `@base`; nil when absent.
    public var base: UInt64?
    /// The limit the kernel computes: `-limit` when given, `base + size` for `@base` alone, nil without `@`.
    public var limit: UInt64?
    /// What the kernel would do with it, in words a user can act on.
    public var warnings: [String] = []

    /// `fixed = (base + size == limit)`, and `@0` is never fixed (`if (!base) fixed = false`).
    public var isFixed: Bool {
        guard let base, let limit, base != 0 else { return false }
        return base &+ size == limit
    }

    /// `cma=0` disables the global area.
    public var disablesCMA: Bool { size == 0 }

    public init(size: UInt64, base: UInt64? = nil, limit: UInt64? = nil, warnings: [String] = []) {
        self.size = size; self.base = base; self.limit = limit; self.warnings = warnings
    }

    /// Parses the value after `cma=` as the kernel does; never fails. A value that does not start with a number
    /// reads as size 0 (CMA off), and says so in `warnings`.
    public static func kernelParse(_ value: String) -> CMARequest {
        let b = Array(value.utf8)
        var warnings: [String] = []
        let (size, afterSize) = Memparse.parse(b, from: 0)
        if afterSize == 0 {
            warnings.append(value.isEmpty
                ? "`cma=` has no value: the kernel reads size 0 and reserves no global CMA area"
                : "`cma=\(value)` does not start with a number (character 1, `\(char(b[0]))`): the kernel reads size 0 and reserves no global CMA area")
            return CMARequest(size: 0, warnings: warnings)
        }
        warnings += octalWarning(b, from: 0, to: afterSize, value: size, what: "size")
        var req = CMARequest(size: size)
        guard afterSize < b.count else { req.warnings = warnings; return req }
        guard b[afterSize] == UInt8(ascii: "@") else {
            let junk = String(decoding: b[afterSize...], as: UTF8.self)
            warnings.append("`\(junk)` after the size is ignored (character \(afterSize + 1), `\(char(b[afterSize]))`)"
                + (junk.contains("@") ? ": the placement after it is ignored too, the kernel places the area anywhere" : ""))
            req.warnings = warnings
            return req
        }
        let (base, afterBase) = Memparse.parse(b, from: afterSize + 1)
        if afterBase == afterSize + 1 {
            warnings.append("`@` is not followed by a number (character \(afterSize + 2)\(afterBase < b.count ? ", `\(char(b[afterBase]))`" : "")): the kernel reads base 0")
        }
        warnings += octalWarning(b, from: afterSize + 1, to: afterBase, value: base, what: "base")
        req.base = base
        if afterBase < b.count, b[afterBase] == UInt8(ascii: "-") {
            let (limit, afterLimit) = Memparse.parse(b, from: afterBase + 1)
            if afterLimit == afterBase + 1 {
                warnings.append("`-` is not followed by a number (character \(afterBase + 2)): the kernel reads limit 0 (no limit)")
            }
            warnings += octalWarning(b, from: afterBase + 1, to: afterLimit, value: limit, what: "limit")
            req.limit = limit
            if afterLimit < b.count {
                warnings.append("`\(String(decoding: b[afterLimit...], as: UTF8.self))` after the limit is ignored (character \(afterLimit + 1), `\(char(b[afterLimit]))`)")
            }
        } else {
            req.limit = base &+ size
            if afterBase < b.count {
                warnings.append("`\(String(decoding: b[afterBase...], as: UTF8.self))` after the base is ignored (character \(afterBase + 1), `\(char(b[afterBase]))`)"
                    + "; the area is fixed at \(hex(base))")
            }
        }
        if base == 0 && req.limit == size && size != 0 {
            warnings.append("`@0` is never fixed: the kernel searches [0, \(ByteSize(bytes: size))) and usually fails because low memory is taken")
        }
        req.warnings = warnings
        return req
    }

    /// Parses the value after `cma=`. Throws when the kernel would read no size at all (an empty value, or one that
    /// does not start with a digit: the kernel reads 0 and reserves nothing).
    public static func parse(_ value: String) throws(CMAArgumentError) -> CMARequest {
        guard let first = value.utf8.first, first >= 0x30 && first <= 0x39 else {
            throw CMAArgumentError(value: value, message: kernelParse(value).warnings.first ?? "`cma=\(value)` has no size")
        }
        return kernelParse(value)
    }

    static func octalWarning(_ b: [UInt8], from: Int, to: Int, value: UInt64, what: String) -> [String] {
        if to - from > 2, b[from] == UInt8(ascii: "0"), b[from + 1] | 0x20 == UInt8(ascii: "x"), b[to - 1] | 0x20 == UInt8(ascii: "e") {
            let text = String(decoding: b[from..<to], as: UTF8.self)
            return ["`\(text)`: after `0x` the `\(char(b[to - 1]))` (character \(to)) is a hex digit, not the E (exbibyte) suffix: the \(what) is \(value) bytes"]
        }
        guard to - from >= 2, b[from] == UInt8(ascii: "0"), b[from + 1] >= 0x30, b[from + 1] <= 0x39 else { return [] }
        let text = String(decoding: b[from..<to], as: UTF8.self)
        var s = "`\(text)`: the leading 0 (character \(from + 1)) makes the kernel read the \(what) as octal, \(ByteSize(bytes: value)) (\(value) bytes)"
        if let bad = b[from..<to].firstIndex(where: { $0 == UInt8(ascii: "8") || $0 == UInt8(ascii: "9") }) {
            s += "; the octal number stops at `\(char(b[bad]))` (character \(bad + 1))"
        }
        return [s]
    }

    /// The request as the kernel would print it back, for reports.
    public var description: String {
        var s = ByteSize(bytes: size).description
        if let base { s += "@\(ByteSize(bytes: base))" }
        if let limit, let base, limit != base &+ size { s += "-\(ByteSize(bytes: limit))" }
        return s
    }
}

func char(_ c: UInt8) -> String {
    (c >= 0x20 && c < 0x7f) ? String(UnicodeScalar(c)) : "\\x" + String(c, radix: 16)
}

public struct CMAArgumentError: Error, Equatable, Sendable, CustomStringConvertible {
    public var value: String
    public var message: String
    public var description: String { message }
}

/// What every `cma=` on a command line leaves behind, folded as `early_cma()` runs once per occurrence:
/// the last size wins, but a base and limit set by an earlier `cma=…@…` stay unless a later one sets them.
public struct CMACommandLine: Equatable, Sendable {
    /// `size_cmdline`; nil while no `cma=` was seen (the kernel's `-1`: the .config default applies).
    public var size: UInt64?
    /// `base_cmdline` and `limit_cmdline` (0 when not set).
    public var base: UInt64 = 0
    public var limit: UInt64 = 0
    /// A bare `cma` (no `=`): `cma: Config string not provided` and `Malformed early option 'cma'`.
    public var bare = false
    public var occurrences = 0
    public var warnings: [String] = []

    /// `fixed` as dma_contiguous_reserve() computes it (before `if (!base) fixed = false`).
    public var fixedFlag: Bool { size.map { base &+ $0 == limit } ?? false }

    public init() {}

    public init(_ line: KernelCommandLine) {
        for p in line.parameters where p.key == "cma" {
            guard let value = p.value else {
                bare = true
                warnings.append("bare `cma` (no `=`): the kernel prints `cma: Config string not provided` and `Malformed early option 'cma'`, and ignores it")
                continue
            }
            occurrences += 1
            let r = CMARequest.kernelParse(value)
            warnings += r.warnings
            size = r.size
            if let b = r.base { base = b; limit = r.limit ?? 0 }
        }
        if occurrences > 1 {
            warnings.append("`cma=` appears \(occurrences) times: the kernel keeps the last size (\(ByteSize(bytes: size ?? 0)))"
                + (base != 0 || limit != 0 ? " but the base and limit of the last `cma=` that had `@` (@\(hex(base))-\(hex(limit)))" : ""))
        }
    }
}

/// `cma_pernuma=`, `numa_cma=` and `hugetlb_cma=`: parsed as the kernel does, and what a given kernel does with them.
public struct CMAFamilyParameter: Equatable, Sendable {
    public enum Name: String, Sendable, CaseIterable { case cmaPernuma = "cma_pernuma", numaCMA = "numa_cma", hugetlbCMA = "hugetlb_cma" }
    public var name: Name
    /// One size for every node (cma_pernuma=, hugetlb_cma=N).
    public var perNodeSize: UInt64?
    /// `<nid>:<size>` pairs in order (numa_cma=, hugetlb_cma=<nid>:<size>,...).
    public var nodes: [(node: Int, size: UInt64)] = []
    public var warnings: [String] = []

    public static func == (a: Self, b: Self) -> Bool {
        a.name == b.name && a.perNodeSize == b.perNodeSize && a.warnings == b.warnings
            && a.nodes.map(\.node) == b.nodes.map(\.node) && a.nodes.map(\.size) == b.nodes.map(\.size)
    }

    /// Parses one value. `MAX_NUMNODES` is 64 here (NODES_SHIFT 6, the x86_64 default with NUMA).
    public static func parse(_ name: Name, _ value: String, maxNodes: Int = 64) -> CMAFamilyParameter {
        var p = CMAFamilyParameter(name: name)
        let b = Array(value.utf8)
        switch name {
        case .cmaPernuma:
            let (size, end) = Memparse.parse(b, from: 0)
            p.perNodeSize = size
            if end == 0 { p.warnings.append("`cma_pernuma=\(value)` does not start with a number: the kernel reads 0 and reserves nothing") }
            p.warnings += CMARequest.octalWarning(b, from: 0, to: end, value: size, what: "size")
            if end < b.count { p.warnings.append("`\(String(decoding: b[end...], as: UTF8.self))` after the size is ignored (character \(end + 1), `\(char(b[end]))`)") }
        case .numaCMA, .hugetlbCMA:
            // hugetlb_cma= without `:` is one size for all nodes; numa_cma= is always a node list.
            if name == .hugetlbCMA, !b.contains(UInt8(ascii: ":")) {
                let (size, end) = Memparse.parse(b, from: 0)
                p.perNodeSize = size
                if end < b.count { p.warnings.append("`\(String(decoding: b[end...], as: UTF8.self))` after the size is ignored (character \(end + 1), `\(char(b[end]))`)") }
                if size > 0, size < 1 << 30 { p.warnings.append("hugetlb_cma=\(value) is below 1 GiB: the kernel prints `hugetlb_cma: cma area should be at least 1024 MiB` and reserves nothing") }
                return p
            }
            // `<nid>:<size>[,<nid>:<size>...]`; the kernel stops silently at the first malformed entry.
            var i = 0
            while i < b.count {
                let (nid, afterNid) = Memparse.strtoull(b, from: i)
                guard afterNid > i, afterNid < b.count, b[afterNid] == UInt8(ascii: ":") else {
                    p.warnings.append("`\(name.rawValue)=`: `\(String(decoding: b[i...], as: UTF8.self))` (character \(i + 1)) is not `<node>:<size>`: the kernel stops reading here")
                    break
                }
                guard nid < UInt64(maxNodes) else {
                    p.warnings.append("`\(name.rawValue)=`: node \(nid) (character \(i + 1)) is not below MAX_NUMNODES (\(maxNodes)): the kernel stops reading here")
                    break
                }
                let (size, afterSize) = Memparse.parse(b, from: afterNid + 1)
                p.nodes.append((Int(nid), size))
                if name == .hugetlbCMA, size > 0, size < 1 << 30 {
                    p.warnings.append("hugetlb_cma: node \(nid) gets \(ByteSize(bytes: size)), below 1 GiB: the kernel prints `hugetlb_cma: cma area of node \(nid) should be at least 1024 MiB`")
                }
                if afterSize >= b.count { break }
                guard b[afterSize] == UInt8(ascii: ",") else {
                    p.warnings.append("`\(name.rawValue)=`: `\(char(b[afterSize]))` (character \(afterSize + 1)) after a size is neither `,` nor the end: the kernel stops reading here")
                    break
                }
                i = afterSize + 1
            }
        }
        return p
    }

    /// Warnings that hold whatever the kernel (a profile does not know its kernel's version when it is parsed).
    public var versionNotes: [String] {
        switch name {
        case .cmaPernuma:
            return ["`cma_pernuma=` reserves per-node areas (`pernuma<nid>`) only on 6.6+ kernels with CONFIG_DMA_NUMA_CMA (NUMA); on 6.1 x86 it is accepted with CONFIG_DMA_PERNUMA_CMA but does nothing (only arm64 reserves them), and without those options it is an unknown parameter passed to init"]
        case .numaCMA:
            return ["`numa_cma=` exists only on 6.6+ kernels with CONFIG_DMA_NUMA_CMA (NUMA); elsewhere (6.1 included) it is an unknown parameter passed to init"]
        case .hugetlbCMA:
            return ["`hugetlb_cma=` needs CONFIG_CMA and CONFIG_HUGETLBFS, and on x86 a CPU with 1 GiB pages (QEMU `-cpu max` or `+pdpe1gb`); without them nothing is reserved"]
        }
    }
}
