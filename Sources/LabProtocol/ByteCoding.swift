/// Why a payload could not be decoded. Decoding never traps on hostile input.
public enum ProtocolError: Error, Equatable, Sendable {
    /// The payload ended before a value was complete, or a length prefix claims
    /// more bytes (or elements) than remain.
    case truncated
    /// An enum or optional tag that this version does not know.
    case unknownTag(UInt8)
    /// A bool byte other than 0 or 1.
    case invalidBool(UInt8)
    /// A string whose bytes are not valid UTF-8.
    case invalidUTF8
    /// Bytes left over after the top-level value.
    case trailingBytes(Int)
}

/// Appends little-endian primitives to a byte array.
///
/// Strings, byte arrays and arrays carry a UInt32 length (element count) prefix;
/// optionals a UInt8 tag (0 = nil, 1 = some); bools one byte (0 or 1).
public struct ByteWriter: Sendable {
    public private(set) var bytes: [UInt8] = []

    public init() {}

    public mutating func u8(_ value: UInt8) { bytes.append(value) }
    public mutating func u16(_ value: UInt16) { appendLittleEndian(value, to: &bytes) }
    public mutating func u32(_ value: UInt32) { appendLittleEndian(value, to: &bytes) }
    public mutating func u64(_ value: UInt64) { appendLittleEndian(value, to: &bytes) }
    public mutating func i32(_ value: Int32) { appendLittleEndian(value, to: &bytes) }
    public mutating func i64(_ value: Int64) { appendLittleEndian(value, to: &bytes) }
    public mutating func bool(_ value: Bool) { bytes.append(value ? 1 : 0) }

    public mutating func byteArray(_ value: [UInt8]) {
        length(value.count)
        bytes += value
    }

    public mutating func string(_ value: String) {
        byteArray(Array(value.utf8))
    }

    public mutating func array<T>(_ values: [T], _ element: (inout ByteWriter, T) -> Void) {
        length(values.count)
        for value in values { element(&self, value) }
    }

    public mutating func optional<T>(_ value: T?, _ wrapped: (inout ByteWriter, T) -> Void) {
        if let value {
            u8(1)
            wrapped(&self, value)
        } else {
            u8(0)
        }
    }

    public mutating func value(_ value: some WireCodable) {
        value.encode(to: &self)
    }

    private mutating func length(_ count: Int) {
        precondition(count <= Int(UInt32.max), "value too large for a UInt32 length prefix")
        u32(UInt32(count))
    }
}

/// Reads what `ByteWriter` wrote, validating every length against the bytes that remain.
public struct ByteReader: Sendable {
    private let input: [UInt8]
    public private(set) var offset = 0

    public init(_ bytes: [UInt8]) {
        input = bytes
    }

    public var remaining: Int { input.count - offset }

    public mutating func u8() throws(ProtocolError) -> UInt8 {
        guard remaining >= 1 else { throw .truncated }
        defer { offset += 1 }
        return input[offset]
    }

    public mutating func u16() throws(ProtocolError) -> UInt16 { try integer() }
    public mutating func u32() throws(ProtocolError) -> UInt32 { try integer() }
    public mutating func u64() throws(ProtocolError) -> UInt64 { try integer() }
    public mutating func i32() throws(ProtocolError) -> Int32 { try integer() }
    public mutating func i64() throws(ProtocolError) -> Int64 { try integer() }

    public mutating func bool() throws(ProtocolError) -> Bool {
        switch try u8() {
        case 0: return false
        case 1: return true
        case let other: throw .invalidBool(other)
        }
    }

    public mutating func byteArray() throws(ProtocolError) -> [UInt8] {
        let count = try length(minimumElementSize: 1)
        defer { offset += count }
        return Array(input[offset..<(offset + count)])
    }

    public mutating func string() throws(ProtocolError) -> String {
        let count = try length(minimumElementSize: 1)
        guard let string = String(validating: input[offset..<(offset + count)], as: UTF8.self) else {
            throw .invalidUTF8
        }
        offset += count
        return string
    }

    /// Reads an array. `minimumElementSize` is the fewest bytes one element can occupy;
    /// the claimed count is checked against it before anything is allocated.
    public mutating func array<T>(
        minimumElementSize: Int = 1,
        _ element: (inout ByteReader) throws(ProtocolError) -> T
    ) throws(ProtocolError) -> [T] {
        let count = try length(minimumElementSize: minimumElementSize)
        var values = [T]()
        values.reserveCapacity(count)
        for _ in 0..<count { values.append(try element(&self)) }
        return values
    }

    public mutating func optional<T>(
        _ wrapped: (inout ByteReader) throws(ProtocolError) -> T
    ) throws(ProtocolError) -> T? {
        switch try u8() {
        case 0: return nil
        case 1: return try wrapped(&self)
        case let tag: throw .unknownTag(tag)
        }
    }

    public mutating func value<T: WireCodable>(_ type: T.Type = T.self) throws(ProtocolError) -> T {
        try T(from: &self)
    }

    /// Throws unless every byte has been consumed.
    public func finish() throws(ProtocolError) {
        guard remaining == 0 else { throw .trailingBytes(remaining) }
    }

    private mutating func integer<T: FixedWidthInteger>() throws(ProtocolError) -> T {
        let size = MemoryLayout<T>.size
        guard remaining >= size else { throw .truncated }
        var value = T.zero
        for index in 0..<size {
            value |= T(truncatingIfNeeded: input[offset + index]) << (8 * index)
        }
        offset += size
        return value
    }

    /// A UInt32 length prefix, accepted only if that many elements can still fit.
    private mutating func length(minimumElementSize: Int) throws(ProtocolError) -> Int {
        let count = Int(try u32())
        guard count <= remaining / max(minimumElementSize, 1) else { throw .truncated }
        return count
    }
}

/// A value with a binary wire form. Top-level messages get `encode()` / `decode(_:)`.
public protocol WireCodable: Sendable {
    func encode(to writer: inout ByteWriter)
    init(from reader: inout ByteReader) throws(ProtocolError)
}

extension WireCodable {
    public func encode() -> [UInt8] {
        var writer = ByteWriter()
        encode(to: &writer)
        return writer.bytes
    }

    /// Decodes a complete payload; trailing bytes are an error.
    public static func decode(_ bytes: [UInt8]) throws(ProtocolError) -> Self {
        var reader = ByteReader(bytes)
        let value = try Self(from: &reader)
        try reader.finish()
        return value
    }
}
