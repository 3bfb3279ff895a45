/// Byte sizes as kernel engineers write them: `4G`, `512M`, `0x40000000`, `1024K`.

/// A size in bytes. Written and parsed with binary suffixes (K = 1024), as the kernel's memparse does.
public struct ByteSize: Hashable, Comparable, Sendable, CustomStringConvertible {
    public var bytes: UInt64
    public init(bytes: UInt64) { self.bytes = bytes }

    public static func kib(_ n: UInt64) -> ByteSize { ByteSize(bytes: n << 10) }
    public static func mib(_ n: UInt64) -> ByteSize { ByteSize(bytes: n << 20) }
    public static func gib(_ n: UInt64) -> ByteSize { ByteSize(bytes: n << 30) }

    public static func < (a: ByteSize, b: ByteSize) -> Bool { a.bytes < b.bytes }

    public var mebibytes: UInt64 { bytes >> 20 }

    /// The shortest exact form: `4G`, `1536M`, `12345` (bytes).
    public var description: String {
        let units: [(UInt64, String)] = [(1 << 40, "T"), (1 << 30, "G"), (1 << 20, "M"), (1 << 10, "K")]
        for (unit, suffix) in units where bytes >= unit && bytes % unit == 0 {
            return "\(bytes / unit)\(suffix)"
        }
        return "\(bytes)"
    }

    /// A size as a user types it in a profile or on the command line: decimal digits and an optional
    /// K/M/G/T suffix (either case, an optional trailing `B` or `iB`), or `0x` hex bytes.
    /// Unlike the kernel's memparse this is strict: anything left over is an error.
    public static func parse(_ text: String) throws(SizeError) -> ByteSize {
        let s = text.trimmingASCIIWhitespace()
        guard !s.isEmpty else { throw SizeError(input: text, reason: "empty size") }
        var chars = Array(s.utf8)
        var multiplier: UInt64 = 1
        if chars.count > 2, chars[0] == UInt8(ascii: "0"), chars[1] | 0x20 == UInt8(ascii: "x") {
            guard let v = UInt64(String(decoding: chars[2...], as: UTF8.self), radix: 16) else {
                throw SizeError(input: text, reason: "not a hexadecimal number")
            }
            return ByteSize(bytes: v)
        }
        // Optional "B" / "iB" after the unit letter.
        if chars.count >= 3, chars[chars.count - 2] | 0x20 == UInt8(ascii: "i"), chars.last! | 0x20 == UInt8(ascii: "b") {
            chars.removeLast(2)
        } else if chars.count >= 2, chars.last! | 0x20 == UInt8(ascii: "b"),
                  Memparse.shift(forSuffix: chars[chars.count - 2]) != nil {
            chars.removeLast()
        }
        if let last = chars.last, let shift = Memparse.shift(forSuffix: last) {
            multiplier = 1 << shift
            chars.removeLast()
        }
        guard !chars.isEmpty, chars.allSatisfy({ $0 >= 0x30 && $0 <= 0x39 }),
              let n = UInt64(String(decoding: chars, as: UTF8.self)) else {
            throw SizeError(input: text, reason: "expected digits with an optional K, M, G or T suffix (for example 4G, 512M, 0x40000000)")
        }
        let (product, overflow) = n.multipliedReportingOverflow(by: multiplier)
        guard !overflow else { throw SizeError(input: text, reason: "too large") }
        return ByteSize(bytes: product)
    }
}

public struct SizeError: Error, Equatable, Sendable, CustomStringConvertible {
    public var input: String
    public var reason: String
    public var description: String { "invalid size '\(input)': \(reason)" }
}

/// The kernel's `memparse()` (lib/cmdline.c): base-0 `simple_strtoull` (so `0x` is hex and a leading `0`
/// is octal), then at most one suffix letter K/M/G/T/P/E in either case. It never fails: it returns the
/// value and how many bytes it consumed, and the caller looks at what follows.
public enum Memparse {
    public static func shift(forSuffix c: UInt8) -> UInt64? {
        switch c | 0x20 {
        case UInt8(ascii: "k"): return 10
        case UInt8(ascii: "m"): return 20
        case UInt8(ascii: "g"): return 30
        case UInt8(ascii: "t"): return 40
        case UInt8(ascii: "p"): return 50
        case UInt8(ascii: "e"): return 60
        default: return nil
        }
    }

    /// Parses `bytes[start...]`; returns the value and the index after the last consumed byte.
    public static func parse(_ bytes: [UInt8], from start: Int) -> (value: UInt64, end: Int) {
        var (value, i) = strtoull(bytes, from: start)
        if i < bytes.count, let shift = shift(forSuffix: bytes[i]) {
            value = value &<< shift
            i += 1
        }
        return (value, i)
    }

    /// `simple_strtoull(s, &end, 0)`: base detection like the kernel's `_parse_integer_fixup_radix`.
    /// Overflow wraps, as in the kernel.
    static func strtoull(_ b: [UInt8], from start: Int) -> (UInt64, Int) {
        var i = start
        var base: UInt64 = 10
        if i < b.count, b[i] == UInt8(ascii: "0") {
            if i + 1 < b.count, b[i + 1] | 0x20 == UInt8(ascii: "x"),
               i + 2 < b.count, hexValue(b[i + 2]) != nil {
                base = 16; i += 2
            } else {
                base = 8
            }
        }
        var value: UInt64 = 0
        while i < b.count, let d = hexValue(b[i]), UInt64(d) < base {
            value = value &* base &+ UInt64(d)
            i += 1
        }
        return (value, i)
    }

    static func hexValue(_ c: UInt8) -> UInt8? {
        switch c {
        case 0x30...0x39: return c - 0x30
        case 0x61...0x66: return c - 0x61 + 10
        case 0x41...0x46: return c - 0x41 + 10
        default: return nil
        }
    }
}

extension String {
    func trimmingASCIIWhitespace() -> String {
        var s = Substring(self)
        while let f = s.first, f == " " || f == "\t" || f == "\n" || f == "\r" { s.removeFirst() }
        while let l = s.last, l == " " || l == "\t" || l == "\n" || l == "\r" { s.removeLast() }
        return String(s)
    }
}
