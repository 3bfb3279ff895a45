import Glibc
import LabProtocol

/// Reads the kernel log through /dev/kmsg (see Documentation/ABI/testing/dev-kmsg).
public enum Kmsg {
    /// Parses one record as returned by a single read(2) of /dev/kmsg:
    /// `prio,seq,ts_usec,flags[,more];message\n` optionally followed by continuation
    /// lines that start with a space (key=value dictionary), which are ignored.
    /// `\xNN` escapes in the message are decoded; the message is capped at 4 KiB.
    public static func parseRecord(_ record: some Collection<UInt8>) -> KmsgRecord? {
        let bytes = Array(record)
        guard let semicolon = bytes.firstIndex(of: UInt8(ascii: ";")) else { return nil }
        let fields = bytes[..<semicolon].split(separator: UInt8(ascii: ","), omittingEmptySubsequences: false)
        guard fields.count >= 4,
              let prio = decimal(fields[0]), prio <= 0xFFFF,
              let sequence = decimal(fields[1]),
              let timestamp = decimal(fields[2])
        else { return nil }
        let messageEnd = bytes[(semicolon + 1)...].firstIndex(of: UInt8(ascii: "\n")) ?? bytes.endIndex
        return KmsgRecord(
            sequence: sequence, priority: UInt8(prio & 7), facility: UInt8(truncatingIfNeeded: prio >> 3),
            timestampMicroseconds: timestamp, message: unescape(bytes[(semicolon + 1)..<messageEnd]))
    }

    /// Reads records with a sequence number above `afterSequence` (all when nil) until
    /// the log is drained, `maxRecords` are collected or the batch reaches ~1 MiB.
    /// Gaps in the sequence (ring-buffer overruns) are added up in `missedRecords`.
    public static func read(path: String, afterSequence: UInt64?, maxRecords: UInt32) throws(SystemError) -> KmsgBatch {
        // The next sequence number the caller has not seen.
        var expected = afterSequence.map { $0 &+ 1 }
        var records = [KmsgRecord]()
        var missed: UInt64 = 0
        guard maxRecords > 0 else {
            return KmsgBatch(records: [], nextSequence: expected ?? 0, missedRecords: 0)
        }
        let fd = open(path, O_RDONLY | O_NONBLOCK | O_CLOEXEC)
        guard fd >= 0 else { throw SystemError("open \(path)") }
        defer { close(fd) }

        // Each read returns exactly one record; the kernel refuses buffers that are
        // too small for it, and records are at most ~8 KiB.
        var buffer = [UInt8](repeating: 0, count: 16 << 10)
        var batchBytes = 0
        reading: while records.count < Int(maxRecords) {
            let n = buffer.withUnsafeMutableBytes { Glibc.read(fd, $0.baseAddress, $0.count) }
            if n < 0 {
                switch errno {
                case EINTR: continue
                case EAGAIN: break reading
                case EPIPE:
                    // Records were overwritten before we read them. The next record's
                    // sequence number tells how many; without a reference point, count one.
                    if expected == nil { missed += 1 }
                    continue
                default: throw SystemError("read \(path)")
                }
            }
            if n == 0 { break }
            guard let record = parseRecord(buffer[0..<n]) else { continue }
            if let wanted = expected, record.sequence < wanted { continue }
            let cost = record.message.utf8.count + 32
            if batchBytes + cost > AgentLimits.kmsgBatchBytes && !records.isEmpty { break }
            if let wanted = expected { missed += record.sequence - wanted }
            records.append(record)
            batchBytes += cost
            expected = record.sequence &+ 1
        }
        return KmsgBatch(records: records, nextSequence: expected ?? 0, missedRecords: missed)
    }

    private static func decimal(_ digits: ArraySlice<UInt8>) -> UInt64? {
        guard !digits.isEmpty else { return nil }
        var value: UInt64 = 0
        for digit in digits {
            guard (UInt8(ascii: "0")...UInt8(ascii: "9")).contains(digit) else { return nil }
            let (shifted, overflow1) = value.multipliedReportingOverflow(by: 10)
            let (sum, overflow2) = shifted.addingReportingOverflow(UInt64(digit - UInt8(ascii: "0")))
            guard !overflow1, !overflow2 else { return nil }
            value = sum
        }
        return value
    }

    /// Decodes `\xNN`, cuts at 4 KiB (on a UTF-8 character boundary) and repairs
    /// invalid UTF-8.
    private static func unescape(_ text: ArraySlice<UInt8>) -> String {
        var bytes = [UInt8]()
        bytes.reserveCapacity(min(text.count, AgentLimits.kmsgMessageBytes))
        var index = text.startIndex
        while index < text.endIndex && bytes.count < AgentLimits.kmsgMessageBytes {
            if text[index] == UInt8(ascii: "\\"), index + 3 < text.endIndex, text[index + 1] == UInt8(ascii: "x"),
               let high = hexValue(text[index + 2]), let low = hexValue(text[index + 3]) {
                bytes.append(high << 4 | low)
                index += 4
            } else {
                bytes.append(text[index])
                index += 1
            }
        }
        if index < text.endIndex { dropPartialCharacter(&bytes) }
        return String(decoding: bytes, as: UTF8.self)
    }

    /// Removes a multi-byte UTF-8 sequence left incomplete at the end by a cut.
    private static func dropPartialCharacter(_ bytes: inout [UInt8]) {
        guard let lead = bytes.lastIndex(where: { $0 & 0xC0 != 0x80 }), bytes[lead] >= 0xC0 else { return }
        let length = bytes[lead] >= 0xF0 ? 4 : bytes[lead] >= 0xE0 ? 3 : 2
        if bytes.count - lead < length { bytes.removeSubrange(lead...) }
    }

    private static func hexValue(_ digit: UInt8) -> UInt8? {
        switch digit {
        case UInt8(ascii: "0")...UInt8(ascii: "9"): digit - UInt8(ascii: "0")
        case UInt8(ascii: "a")...UInt8(ascii: "f"): digit - UInt8(ascii: "a") + 10
        case UInt8(ascii: "A")...UInt8(ascii: "F"): digit - UInt8(ascii: "A") + 10
        default: nil
        }
    }
}
