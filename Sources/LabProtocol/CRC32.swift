/// CRC-32 as used by zlib, gzip and IEEE 802.3 (reflected polynomial 0xEDB88320,
/// initial value and final XOR 0xFFFFFFFF), computed with a 256-entry table.
public struct CRC32: Sendable {
    private static let table: [UInt32] = (0..<256).map { index in
        var crc = UInt32(index)
        for _ in 0..<8 {
            crc = crc & 1 == 1 ? (crc >> 1) ^ 0xEDB8_8320 : crc >> 1
        }
        return crc
    }

    private var state: UInt32 = 0xFFFF_FFFF

    public init() {}

    /// Continues a checksum whose `value` so far was `value`.
    public init(resumingFrom value: UInt32) { state = value ^ 0xFFFF_FFFF }

    /// Feeds more bytes into the running checksum.
    public mutating func update(_ bytes: some Sequence<UInt8>) {
        let table = Self.table
        var crc = state
        for byte in bytes {
            crc = table[Int((crc ^ UInt32(byte)) & 0xFF)] ^ (crc >> 8)
        }
        state = crc
    }

    /// The checksum of everything fed so far.
    public var value: UInt32 { state ^ 0xFFFF_FFFF }

    /// One-shot convenience.
    public static func checksum(_ bytes: some Sequence<UInt8>) -> UInt32 {
        var crc = CRC32()
        crc.update(bytes)
        return crc.value
    }
}

// MARK: - Combining checksums

/// Arithmetic on CRC-32 values as polynomials over GF(2) modulo the CRC polynomial, in the reflected bit
/// order `CRC32` uses (bit 31 is x^0), as zlib's `crc32_combine` does.
extension CRC32 {
    /// x^(2^k) mod P for k = 0..<67: enough for any shift by a non-negative `Int` count of bytes (x^8 each).
    private static let powersOfX: [UInt32] = {
        var powers = [UInt32](repeating: 0, count: 67)
        var p: UInt32 = 1 << 30  // x^1
        for k in 0..<67 {
            powers[k] = p
            p = multiplyModP(p, p)
        }
        return powers
    }()

    /// a·b mod P.
    static func multiplyModP(_ a: UInt32, _ b: UInt32) -> UInt32 {
        var a = a, b = b, product: UInt32 = 0
        while a != 0 {
            if a & (1 << 31) != 0 { product ^= b }
            a <<= 1
            b = b & 1 == 1 ? (b >> 1) ^ 0xEDB8_8320 : b >> 1
        }
        return product
    }

    /// `crc` followed by `count` zero bytes before the final XOR is taken into account: the term a prefix
    /// with checksum `crc` contributes to the checksum of itself followed by `count` more bytes.
    /// Costs one multiplication per set bit of `count`.
    public static func shift(_ crc: UInt32, byZeroBytes count: Int) -> UInt32 {
        precondition(count >= 0, "a negative shift")
        var result = crc
        var n = UInt64(count)
        var k = 3  // bytes are x^8
        while n != 0 && result != 0 {
            if n & 1 == 1 { result = multiplyModP(powersOfX[k], result) }
            n >>= 1
            k += 1
        }
        return result
    }

    /// The checksum of A followed by B from the checksums of A and B and the length of B.
    public static func combine(_ crcA: UInt32, _ crcB: UInt32, lengthB: Int) -> UInt32 {
        shift(crcA, byZeroBytes: lengthB) ^ crcB
    }
}
