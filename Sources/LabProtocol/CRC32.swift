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
