/// Summarises a debugfs CMA `bitmap` file: space-separated decimal UInt32 words,
/// where bit i of the area is bit (i % 32) of word i / 32. Tokens that are not
/// UInt32 decimals are ignored.
public func parseBitmap(_ text: String) -> BitmapSummary {
    var text = text
    return text.withUTF8 { parseBitmap(bytes: $0) }
}

/// The same over the file's raw bytes. The agent runs this under TCG on a 1 GiB area's
/// 8192 words after every step, so it works on bytes (splitting a String into Characters
/// cost ~30 ms per read there) and takes whole words at a time where it can.
public func parseBitmap(bytes: UnsafeBufferPointer<UInt8>) -> BitmapSummary {
    var summary = BitmapAccumulator()
    var i = 0
    let n = bytes.count
    while i < n {
        // Skip ASCII whitespace (what the kernel writes between words).
        while i < n, isSpace(bytes[i]) { i += 1 }
        guard i < n else { break }
        let start = i
        while i < n, !isSpace(bytes[i]) { i += 1 }
        if let word = decimalUInt32(bytes, start, i) { summary.add(word) }
    }
    return summary.finish()
}

private func isSpace(_ b: UInt8) -> Bool {
    b == 0x20 || (0x09...0x0D).contains(b)
}

/// `bytes[from..<to]` as an optionally `+`-signed decimal UInt32, or nil.
private func decimalUInt32(_ bytes: UnsafeBufferPointer<UInt8>, _ from: Int, _ to: Int) -> UInt32? {
    var i = from
    if bytes[i] == UInt8(ascii: "+") { i += 1 }
    guard i < to else { return nil }
    var value: UInt64 = 0
    while i < to {
        let d = bytes[i] &- UInt8(ascii: "0")
        guard d < 10 else { return nil }
        value = value * 10 + UInt64(d)
        guard value <= UInt64(UInt32.max) else { return nil }
        i += 1
    }
    return UInt32(value)
}

private struct BitmapAccumulator {
    var words: UInt32 = 0
    var setBits: UInt64 = 0
    var first: UInt64?
    var last: UInt64?
    var runs = [BitRun]()
    var runsTruncated = false
    /// The run being extended, if the previous bit was set.
    var open: BitRun?

    mutating func closeRun() {
        guard let run = open else { return }
        if runs.count < BitmapSummary.maxRuns {
            runs.append(run)
        } else {
            runsTruncated = true
        }
        open = nil
    }

    mutating func extend(at bit: UInt64, by length: UInt64) {
        if var run = open {
            run.length += length
            open = run
        } else {
            open = BitRun(start: bit, length: length)
        }
    }

    mutating func add(_ word: UInt32) {
        let base = UInt64(words) * 32
        words += 1
        if word == 0 {
            closeRun()
            return
        }
        setBits += UInt64(word.nonzeroBitCount)
        if first == nil { first = base + UInt64(word.trailingZeroBitCount) }
        last = base + 31 - UInt64(word.leadingZeroBitCount)
        if word == .max {
            extend(at: base, by: 32)
            return
        }
        for bit in 0..<UInt64(32) {
            if word & (1 << UInt32(bit)) == 0 {
                closeRun()
            } else {
                extend(at: base + bit, by: 1)
            }
        }
    }

    mutating func finish() -> BitmapSummary {
        closeRun()
        return BitmapSummary(
            words: words, setBits: setBits, firstSetBit: first, lastSetBit: last,
            runs: runs, runsTruncated: runsTruncated)
    }
}
