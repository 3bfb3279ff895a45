/// The small helpers several parts of cmalab print or summarise with, defined once: the terminal table, the HTML
/// report, the oracle, diffs and the benchmarks all write addresses and medians the same way.

/// `0x7b400000`: an address (or a size) in lower-case hex, without padding.
public func hex(_ v: UInt64) -> String { "0x" + String(v, radix: 16) }

/// `0x000000007bc00000`, as the kernel's `%pa` prints a 64-bit physical address.
func pa(_ v: UInt64) -> String {
    let h = String(v, radix: 16)
    return "0x" + String(repeating: "0", count: max(0, 16 - h.count)) + h
}

/// The middle value, or the mean of the two middle values for an even count; nil for no values.
public func median(_ xs: [Double]) -> Double? {
    guard !xs.isEmpty else { return nil }
    let s = xs.sorted()
    return s.count % 2 == 1 ? s[s.count / 2] : (s[s.count / 2 - 1] + s[s.count / 2]) / 2
}
