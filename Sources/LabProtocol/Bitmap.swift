/// Summarises a debugfs CMA `bitmap` file: space-separated decimal UInt32 words,
/// where bit i of the area is bit (i % 32) of word i / 32. Tokens that are not
/// UInt32 decimals are ignored.
public func parseBitmap(_ text: String) -> BitmapSummary {
    var words: UInt32 = 0
    var setBits: UInt64 = 0
    var first: UInt64?
    var last: UInt64?
    var runs = [BitRun]()
    var runsTruncated = false
    // The run being extended, if the previous bit was set.
    var open: BitRun?

    func closeRun() {
        guard let run = open else { return }
        if runs.count < BitmapSummary.maxRuns {
            runs.append(run)
        } else {
            runsTruncated = true
        }
        open = nil
    }

    for token in text.split(whereSeparator: \.isWhitespace) {
        guard let word = UInt32(token) else { continue }
        let base = UInt64(words) * 32
        words += 1
        if word == 0 {
            closeRun()
            continue
        }
        setBits += UInt64(word.nonzeroBitCount)
        if first == nil { first = base + UInt64(word.trailingZeroBitCount) }
        last = base + 31 - UInt64(word.leadingZeroBitCount)
        for bit in 0..<UInt64(32) {
            if word & (1 << UInt32(bit)) == 0 {
                closeRun()
            } else if var run = open {
                run.length += 1
                open = run
            } else {
                open = BitRun(start: base + bit, length: 1)
            }
        }
    }
    closeRun()
    return BitmapSummary(
        words: words, setBits: setBits, firstSetBit: first, lastSetBit: last,
        runs: runs, runsTruncated: runsTruncated)
}
