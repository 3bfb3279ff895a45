/// What a frame carries.
public enum FrameKind: UInt8, Sendable {
    case request = 1
    case response = 2
    case event = 3
}

/// One unit on the wire.
///
/// Layout (integers little-endian), a 20-byte header followed by the payload:
///
///     0  magic     "CMAL"
///     4  version   UInt8 = 1
///     5  kind      UInt8 (FrameKind)
///     6  reserved  UInt16 = 0
///     8  id        UInt32 (request id; responses echo it; events use 0)
///    12  length    UInt32 (payload byte count)
///    16  checksum  UInt32 = CRC-32 over header bytes 0..<16, then the payload
public struct Frame: Equatable, Sendable {
    public static let magic: [UInt8] = Array("CMAL".utf8)
    public static let version: UInt8 = 1
    public static let headerSize = 20

    public var kind: FrameKind
    public var id: UInt32
    public var payload: [UInt8]

    public init(kind: FrameKind, id: UInt32, payload: [UInt8]) {
        self.kind = kind
        self.id = id
        self.payload = payload
    }

    public func encoded() -> [UInt8] {
        var bytes = [UInt8]()
        bytes.reserveCapacity(Self.headerSize + payload.count)
        bytes += Self.magic
        bytes.append(Self.version)
        bytes.append(kind.rawValue)
        bytes += [0, 0]
        appendLittleEndian(id, to: &bytes)
        appendLittleEndian(UInt32(payload.count), to: &bytes)
        var crc = CRC32()
        crc.update(bytes)
        crc.update(payload)
        appendLittleEndian(crc.value, to: &bytes)
        bytes += payload
        return bytes
    }
}

/// Counters for everything a `FrameDecoder` threw away.
public struct DecoderStats: Equatable, Sendable {
    /// Bytes discarded because they were not part of a valid frame
    /// (garbage between frames and the bytes of rejected frames).
    public var skippedBytes: UInt64 = 0
    /// Complete frames whose CRC-32 did not match.
    public var badChecksums: UInt64 = 0
    /// Headers that claimed a payload larger than `maxPayload`.
    public var oversizeFrames: UInt64 = 0
    /// Headers with a version other than `Frame.version`.
    public var badVersions: UInt64 = 0
    /// Headers with a kind that is not a `FrameKind`.
    public var badKinds: UInt64 = 0

    public init() {}
}

/// Incremental, self-synchronising frame parser.
///
/// Feed it arbitrary chunks of a byte stream and pull complete, checksum-verified
/// frames out with `next()`. Anything that does not parse is skipped by scanning
/// for the next magic, so a stream recovers from garbage and corruption. A rejected
/// header never makes the decoder wait for its payload: scanning resumes right after
/// its magic. Memory stays bounded: after `next()` has returned nil, the buffer holds
/// less than one header plus `maxPayload` bytes; a `feed` adds at most its own chunk.
///
/// Rejecting costs work linear in the bytes received, whatever lengths headers claim: the decoder keeps
/// the CRC-32 of the stream at every `markSpacing` bytes, so the checksum of a candidate frame (header
/// bytes 0..<16, then the payload) comes from two of those marks, at most `markSpacing - 1` bytes past
/// each, its 16 header bytes, and one shift by its length (`CRC32.shift`), never from its whole payload.
/// Each byte is checksummed once on arrival, and each candidate (at least 6 bytes from the next: version
/// and kind are not "C") costs at most 16 + 2 × 15 bytes more.
public struct FrameDecoder: Sendable {
    public let maxPayload: Int
    public private(set) var stats = DecoderStats()
    /// Bytes run through CRC-32 table steps so far (the stream once, plus each candidate's header and the
    /// bytes between its ends and the nearest marks): the decoder's work, for tests.
    public private(set) var checksummedBytes: UInt64 = 0

    /// Bytes between the stream checksums kept in `marks`.
    static let markSpacing = 16

    /// Unconsumed bytes are `buffer[start...]`; the prefix is compacted away on feed. `buffer[0]` is at
    /// a multiple of `markSpacing` in the stream.
    private var buffer: [UInt8] = []
    private var start = 0
    /// `marks[i]` is the CRC-32 of the stream from its first byte to `buffer[i * markSpacing]` (excluded).
    private var marks: [UInt32] = [0]
    /// The CRC-32 of the whole stream so far.
    private var streamCRC = CRC32()

    public init(maxPayload: Int = 16 << 20) {
        precondition(maxPayload >= 0, "maxPayload must not be negative")
        self.maxPayload = maxPayload
    }

    /// Bytes currently held and not yet consumed.
    public var bufferedByteCount: Int { buffer.count - start }

    public mutating func feed(_ bytes: some Collection<UInt8>) {
        compact(release: false)
        let old = buffer.count
        buffer.append(contentsOf: bytes)
        extendMarks(from: old)
    }

    /// The next valid frame, or nil when more bytes are needed.
    public mutating func next() -> Frame? {
        var unlimited = Int.max
        return next(budget: &unlimited)
    }

    /// The next valid frame, or nil. Each candidate examined takes its checksum work (in bytes) from
    /// `budget`; once it is spent, returns nil with `budget <= 0` and the rest for the next call. Nil
    /// with `budget > 0` means more bytes are needed (a candidate waiting for its payload takes nothing, so
    /// this holds for any budget above zero).
    public mutating func next(budget: inout Int) -> Frame? {
        let header = Frame.headerSize
        while budget > 0 {
            guard syncToMagic() else { return nil }
            guard buffer.count - start >= header else { return nil }
            budget -= header

            let version = buffer[start + 4]
            let kindByte = buffer[start + 5]
            let length = Int(readUInt32(at: start + 12))
            if version != Frame.version {
                stats.badVersions += 1
                skip(Frame.magic.count)
                continue
            }
            guard let kind = FrameKind(rawValue: kindByte) else {
                stats.badKinds += 1
                skip(Frame.magic.count)
                continue
            }
            if length > maxPayload {
                stats.oversizeFrames += 1
                skip(Frame.magic.count)
                continue
            }
            guard buffer.count - start >= header + length else {
                // Nothing was decided: waiting costs nothing, so the budget stays above zero ("more bytes are
                // needed") even when it was smaller than a header.
                budget += header
                return nil
            }

            let before = checksummedBytes
            let valid = candidateChecksum(length: length) == readUInt32(at: start + 16)
            budget -= Int(checksummedBytes - before)
            if !valid {
                stats.badChecksums += 1
                skip(Frame.magic.count)
                continue
            }
            let payloadRange = (start + header)..<(start + header + length)
            let frame = Frame(kind: kind, id: readUInt32(at: start + 8), payload: Array(buffer[payloadRange]))
            start += header + length
            if start == buffer.count { compact(release: true) }
            return frame
        }
        return nil
    }

    /// CRC-32 over header bytes 0..<16 of the candidate at `start`, then its `length` payload bytes,
    /// without reading the payload: crc(H ‖ P) = shift(crc(H), |P|) ⊕ crc(P), and
    /// crc(P) = crc(stream to P's end) ⊕ shift(crc(stream to P's start), |P|).
    private mutating func candidateChecksum(length: Int) -> UInt32 {
        let headerCRC = CRC32.checksum(buffer[start..<(start + 16)])
        checksummedBytes += 16
        let payloadStart = start + Frame.headerSize
        let toStart = streamChecksum(upTo: payloadStart)
        let toEnd = streamChecksum(upTo: payloadStart + length)
        return CRC32.shift(headerCRC ^ toStart, byZeroBytes: length) ^ toEnd
    }

    /// The CRC-32 of the stream up to `buffer[index]` (excluded), from the mark at or before it.
    private mutating func streamChecksum(upTo index: Int) -> UInt32 {
        let mark = index / Self.markSpacing
        let from = mark * Self.markSpacing
        var crc = CRC32(resumingFrom: marks[mark])
        crc.update(buffer[from..<index])
        checksummedBytes += UInt64(index - from)
        return crc.value
    }

    /// Checksums `buffer[old...]` into the stream checksum, keeping a mark at every `markSpacing` bytes.
    private mutating func extendMarks(from old: Int) {
        var index = old
        while index < buffer.count {
            let end = min(buffer.count, (index / Self.markSpacing + 1) * Self.markSpacing)
            streamCRC.update(buffer[index..<end])
            if end % Self.markSpacing == 0 { marks.append(streamCRC.value) }
            index = end
        }
        checksummedBytes += UInt64(buffer.count - old)
    }

    /// Drops the consumed bytes up to the last mark at or before `start`, with their marks.
    /// `release` gives the buffer's memory back when it was grown for a large frame.
    private mutating func compact(release: Bool) {
        let drop = start - start % Self.markSpacing
        guard drop > 0 else { return }
        if release && buffer.capacity > Frame.headerSize + maxPayload {
            buffer = Array(buffer[drop...])
        } else {
            buffer.removeSubrange(0..<drop)
        }
        marks.removeSubrange(0..<(drop / Self.markSpacing))
        start -= drop
    }

    /// Advances `start` to the next occurrence of the magic. Returns false when none is
    /// buffered, after discarding everything except a possible partial magic at the end.
    private mutating func syncToMagic() -> Bool {
        let magic = Frame.magic
        var index = start
        let end = buffer.count
        while index < end {
            if buffer[index] == magic[0] {
                var matched = 1
                while matched < magic.count, index + matched < end, buffer[index + matched] == magic[matched] {
                    matched += 1
                }
                // A full match, or a partial one cut off by the end of the buffer.
                if matched == magic.count || index + matched == end {
                    skip(index - start)
                    return matched == magic.count
                }
            }
            index += 1
        }
        skip(end - start)
        return false
    }

    private mutating func skip(_ count: Int) {
        start += count
        stats.skippedBytes += UInt64(count)
    }

    private func readUInt32(at offset: Int) -> UInt32 {
        UInt32(buffer[offset])
            | UInt32(buffer[offset + 1]) << 8
            | UInt32(buffer[offset + 2]) << 16
            | UInt32(buffer[offset + 3]) << 24
    }
}

func appendLittleEndian<T: FixedWidthInteger>(_ value: T, to bytes: inout [UInt8]) {
    var v = value.littleEndian
    withUnsafeBytes(of: &v) { bytes.append(contentsOf: $0) }
}
