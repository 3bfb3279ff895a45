/// Reads the guest console as it arrives: splits it into lines (bounded), keeps a tail, and notices
/// kernel crashes (panic, oops, BUG) so a run ends with "kernel panic" instead of a timeout.

public enum CrashKind: String, Sendable, Codable, Equatable {
    /// `Kernel panic - not syncing: ...`: the kernel stopped; with panic=-1 and -no-reboot QEMU exits.
    case panic
    /// An oops or BUG (the kernel killed a task and may go on).
    case oops
}

public struct CrashReport: Sendable, Equatable, Codable {
    public var kind: CrashKind
    /// The first line that showed it, without the timestamp (e.g. `BUG: unable to handle page fault ...`).
    public var headline: String
    /// The panic reason line when there was one (`Kernel panic - not syncing: Attempted to kill init! ...`).
    public var panicLine: String?

    /// One line for a terminal: "kernel panic: Attempted to kill init! ... (after BUG: unable to handle ...)".
    public var summary: String {
        switch kind {
        case .panic:
            let reason = panicLine.map { $0.replacingPrefix("Kernel panic - not syncing: ", with: "") } ?? headline
            if headline != panicLine, !headline.isEmpty { return "kernel panic: \(reason) (after \(headline))" }
            return "kernel panic: \(reason)"
        case .oops:
            return "kernel oops: \(headline)"
        }
    }
}

public struct ConsoleWatcher: Sendable {
    public static let maxLineBytes = 4096

    public private(set) var crash: CrashReport?
    /// The last `tailCapacity` complete lines.
    public private(set) var tail: [String] = []
    public let tailCapacity: Int
    public private(set) var totalBytes: Int = 0
    public private(set) var lineCount: Int = 0
    private var partial: [UInt8] = []
    private var partialOverflowed = false

    public init(tailCapacity: Int = 400) { self.tailCapacity = tailCapacity }

    /// Feeds raw console bytes; returns the complete lines they finished (already cut to `maxLineBytes`).
    @discardableResult
    public mutating func feed(_ bytes: some Sequence<UInt8>) -> [String] {
        var finished: [String] = []
        for b in bytes {
            totalBytes += 1
            if b == 0x0A {
                finished.append(takeLine())
            } else if b == 0x0D || b == 0 {
                continue
            } else if partial.count < Self.maxLineBytes {
                partial.append(b)
            } else {
                partialOverflowed = true
            }
        }
        for line in finished { observe(line) }
        return finished
    }

    /// Treats what is pending as a final line (at EOF).
    public mutating func finish() -> String? {
        guard !partial.isEmpty else { return nil }
        let line = takeLine()
        observe(line)
        return line
    }

    private mutating func takeLine() -> String {
        var line = String(decoding: partial, as: UTF8.self)
        if partialOverflowed { line += " [line cut at \(Self.maxLineBytes) bytes]" }
        partial.removeAll(keepingCapacity: true)
        partialOverflowed = false
        return line
    }

    private mutating func observe(_ line: String) {
        lineCount += 1
        tail.append(line)
        if tail.count > tailCapacity { tail.removeFirst(tail.count - tailCapacity) }
        let text = KernelLog.stripTimestamp(line)
        if text.hasPrefix("Kernel panic - not syncing") {
            if var c = crash {
                if c.kind != .panic { c.kind = .panic }
                if c.panicLine == nil { c.panicLine = text }
                crash = c
            } else {
                crash = CrashReport(kind: .panic, headline: text, panicLine: text)
            }
            return
        }
        if crash == nil, Self.isOopsLine(text) {
            crash = CrashReport(kind: .oops, headline: text, panicLine: nil)
        }
    }

    static func isOopsLine(_ text: String) -> Bool {
        text.hasPrefix("BUG: ") || text.hasPrefix("Oops: ") || text.hasPrefix("kernel BUG at ")
            || text.hasPrefix("general protection fault") || text.hasPrefix("Unable to handle kernel")
    }
}

/// Helpers for kernel log lines.
public enum KernelLog {
    /// Drops a leading printk timestamp `[    0.123456] ` if present.
    public static func stripTimestamp(_ line: String) -> String {
        guard line.hasPrefix("["), let close = line.firstIndex(of: "]") else { return line }
        let inside = line[line.index(after: line.startIndex)..<close]
        guard !inside.isEmpty, inside.allSatisfy({ $0 == " " || $0 == "." || $0.isASCII && $0.isNumber }) else { return line }
        var rest = line[line.index(after: close)...]
        if rest.first == " " { rest = rest.dropFirst() }
        return String(rest)
    }

    /// The timestamp in seconds of a `[    1.234567] ...` line.
    public static func timestamp(_ line: String) -> Double? {
        guard line.hasPrefix("["), let close = line.firstIndex(of: "]") else { return nil }
        return Double(line[line.index(after: line.startIndex)..<close].trimmingCharacters(in: " "))
    }
}

extension StringProtocol {
    func trimmingCharacters(in set: Character) -> String {
        var s = Substring(self)
        while s.first == set { s.removeFirst() }
        while s.last == set { s.removeLast() }
        return String(s)
    }

    func replacingPrefix(_ prefix: String, with replacement: String) -> String {
        hasPrefix(prefix) ? replacement + dropFirst(prefix.count) : String(self)
    }
}
