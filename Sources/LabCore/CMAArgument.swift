/// The `cma=` boot parameter, parsed exactly as `early_cma()` in kernel/dma/contiguous.c parses it:
/// `size = memparse(p)`, then `@base` (memparse), then `-limit` (memparse); anything else is ignored.
/// Where the kernel would silently do something surprising, `warnings` says so, naming the character.
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

    public init(size: UInt64, base: UInt64? = nil, limit: UInt64? = nil) {
        self.size = size; self.base = base; self.limit = limit
    }

    /// Parses the value after `cma=`. Throws only when the kernel would read no size at all.
    public static func parse(_ value: String) throws(CMAArgumentError) -> CMARequest {
        let b = Array(value.utf8)
        guard let first = b.first, first >= 0x30 && first <= 0x39 else {
            throw CMAArgumentError(value: value, message: value.isEmpty
                ? "`cma=` has no size: the kernel prints `cma: Config string not provided` and reserves nothing"
                : "`cma=\(value)` does not start with a number: the kernel reads size 0 and disables CMA")
        }
        var warnings: [String] = []
        let (size, afterSize) = Memparse.parse(b, from: 0)
        if first == 0x30, b.count > 1, b[1] >= 0x30, b[1] <= 0x39 {
            warnings.append("`\(value.prefix(afterSize))`: a leading 0 makes the kernel read octal, so this is \(ByteSize(bytes: size)) (\(size) bytes)")
        }
        var req = CMARequest(size: size)
        guard afterSize < b.count else { req.warnings = warnings; return req }
        guard b[afterSize] == UInt8(ascii: "@") else {
            let junk = String(decoding: b[afterSize...], as: UTF8.self)
            warnings.append("`\(junk)` after the size is ignored (character \(afterSize + 1), `\(Character(UnicodeScalar(b[afterSize])))`)"
                + (junk.contains("@") ? ": the placement after it is ignored too, the kernel places the area anywhere" : ""))
            req.warnings = warnings
            return req
        }
        let (base, afterBase) = Memparse.parse(b, from: afterSize + 1)
        if afterBase == afterSize + 1 { warnings.append("`@` is not followed by a number: the kernel reads base 0") }
        req.base = base
        if afterBase < b.count, b[afterBase] == UInt8(ascii: "-") {
            let (limit, afterLimit) = Memparse.parse(b, from: afterBase + 1)
            if afterLimit == afterBase + 1 { warnings.append("`-` is not followed by a number: the kernel reads limit 0 (no limit)") }
            req.limit = limit
            if afterLimit < b.count {
                warnings.append("`\(String(decoding: b[afterLimit...], as: UTF8.self))` after the limit is ignored (character \(afterLimit + 1))")
            }
        } else {
            req.limit = base &+ size
            if afterBase < b.count {
                warnings.append("`\(String(decoding: b[afterBase...], as: UTF8.self))` after the base is ignored (character \(afterBase + 1))")
            }
        }
        if base == 0 && req.limit == size {
            warnings.append("`@0` is never fixed: the kernel searches [0, \(ByteSize(bytes: size))) and usually fails because low memory is taken")
        }
        req.warnings = warnings
        return req
    }

    /// The request as the kernel would print it back, for reports.
    public var description: String {
        var s = ByteSize(bytes: size).description
        if let base { s += "@\(ByteSize(bytes: base))" }
        if let limit, let base, limit != base &+ size { s += "-\(ByteSize(bytes: limit))" }
        return s
    }
}

public struct CMAArgumentError: Error, Equatable, Sendable, CustomStringConvertible {
    public var value: String
    public var message: String
    public var description: String { message }
}
