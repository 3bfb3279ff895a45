/// Reads the CMA facts out of a kernel log: the serial console (lines with `[    0.000000] ` timestamps,
/// `facts(from:)`) or /dev/kmsg messages (no timestamps, `facts(messages:)`). Pure; never fails: unknown or
/// malformed lines are skipped.
///
/// Formats (see cma-reference.md §3.5, §4, §5.2, §9):
/// * `cma: Reserved 64 MiB at 0x000000007bc00000` (4.15, 6.1) / `... on node -1` (6.6+)
/// * `cma: Failed to reserve 64 MiB` / `... on node -1`
/// * reason lines before a failure: `Region at ... must be aligned to ... bytes`, `Size (...) of region at ...
///   exceeds limit (...)`, `Region at ... defined on low/high memory boundary (...)`, `Not enough slots for CMA
///   reserved regions!`, `CMA area ... could not be activated`
/// * `Memory: 2992628K/4193784K available (..., 151044K reserved, 1048576K cma-reserved[, NK highmem])`
/// * `Unknown kernel command line parameters "cma=64M foo=bar", will be passed to user space.` (6.x),
///   `Unknown command line parameters: cma=64M foo=bar` (≈5.14)
/// * `Kernel command line: ...` (falls back to the earlier x86 `Command line: ...`)
/// * `Linux version 6.12.117 (...) ...`
/// * arm64's device-tree reserved-memory lines and memory-node ranges: DeviceTreeLog.swift
///
/// The 6.12 pernuma/numa/hugetlb failure warnings have no trailing newline, so the next message can be glued onto
/// the same line (`... node 0cma: Reserved ...`). Such lines are kept whole in `cmaLines`, but a `cma: ` message
/// glued inside a line is still parsed for the facts.
public enum KernelLogParser {
    /// The facts of console lines, each with or without its printk timestamp.
    public static func facts(from lines: [String]) -> BootLogFacts {
        facts(lines, stripTimestamps: true)
    }

    /// The facts of /dev/kmsg records' messages, taken as they are (they carry no timestamp).
    public static func facts(messages: [String]) -> BootLogFacts {
        facts(messages, stripTimestamps: false)
    }

    static func facts(_ lines: [String], stripTimestamps: Bool) -> BootLogFacts {
        var facts = BootLogFacts()
        var fallbackCommandLine: String?
        var earlyNodes: [NodeMemoryRange] = []
        // An element may hold several lines (a /dev/kmsg message with an embedded newline, a chunk of console
        // output, a CRLF line split on LF only): each CR/LF-separated piece is a line of its own.
        for raw in lines.lazy.flatMap({ $0.split(whereSeparator: { $0 == "\n" || $0 == "\r" || $0 == "\r\n" }) }) {
            let text = clean(String(raw), stripTimestamp: stripTimestamps)
            if text.isEmpty { continue }
            if text.hasPrefix("cma: ") || text.hasPrefix("hugetlb_cma: ") {
                facts.cmaLines.append(text)
            }
            if text.hasPrefix("Linux version ") {
                if facts.kernelRelease == nil {
                    let release = text.dropFirst("Linux version ".count).prefix { $0 != " " }
                    if !release.isEmpty { facts.kernelRelease = String(release) }
                }
            } else if text.hasPrefix("Kernel command line: ") {
                if facts.commandLine == nil { facts.commandLine = String(text.dropFirst("Kernel command line: ".count)) }
            } else if text.hasPrefix("Command line: ") {
                if fallbackCommandLine == nil { fallbackCommandLine = String(text.dropFirst("Command line: ".count)) }
            } else if text.hasPrefix("Memory: ") {
                if facts.memoryLine == nil, text.contains("K available") {
                    facts.memoryLine = text
                    facts.memoryCmaReservedKiB = memoryCmaReserved(text)
                }
            } else if text.hasPrefix("BIOS-e820: [mem ") {
                if let r = memRange(text.dropFirst("BIOS-e820: ".count)) { facts.e820.append(r) }
            } else if text.hasPrefix("ACPI: SRAT: Node ") {
                if let r = sratNode(text.dropFirst("ACPI: SRAT: Node ".count)) { facts.nodeMemory.append(r) }
            } else if text.hasPrefix("RAMDISK: [mem ") {
                if facts.ramdisk == nil { facts.ramdisk = memRange(text.dropFirst("RAMDISK: ".count)) }
            } else if text.hasPrefix("Unknown kernel command line parameters \"") || text.hasPrefix("Unknown command line parameters:") {
                facts.unknownParameters += unknownParameters(text)
            } else if recordDeviceTree(text, into: &facts, earlyNodes: &earlyNodes) {
                // An arm64 device-tree line (DeviceTreeLog.swift).
            }
            if text.contains("cma: ") {
                for message in cmaMessages(in: text) { record(message, into: &facts) }
            }
        }
        if facts.commandLine == nil { facts.commandLine = fallbackCommandLine }
        // x86 prints the same `node N:` lines, but its nodes come from the SRAT: only a device-tree machine takes them.
        if facts.deviceTree.model != nil, facts.e820.isEmpty, facts.nodeMemory.isEmpty { facts.nodeMemory = earlyNodes }
        return facts
    }

    // MARK: - Lines

    /// `[mem 0x0000000000100000-0x00000000bffdffff] usable` → the range and its type (the text after `]`).
    static func memRange(_ text: Substring) -> MemoryRange? {
        guard text.hasPrefix("[mem 0x"), let close = text.firstIndex(of: "]") else { return nil }
        let inner = text[text.index(text.startIndex, offsetBy: 5)..<close]
        let parts = inner.split(separator: "-", maxSplits: 1)
        guard parts.count == 2, parts[0].hasPrefix("0x"), parts[1].hasPrefix("0x"),
              let start = UInt64(parts[0].dropFirst(2), radix: 16), let end = UInt64(parts[1].dropFirst(2), radix: 16), start <= end
        else { return nil }
        let type = text[text.index(after: close)...].trimmingCharacters(in: " ")
        return MemoryRange(start: start, end: end, type: type)
    }

    /// `0 PXM 0 [mem 0x00100000-0x7fffffff]` (after `ACPI: SRAT: Node `) → node 0's range. Hot-pluggable and
    /// non-volatile ranges (` hotplug`, ` non-volatile` after `]`) count as the node's too.
    static func sratNode(_ text: Substring) -> NodeMemoryRange? {
        guard let space = text.firstIndex(of: " "), let node = Int(text[..<space]),
              let open = text.firstIndex(of: "["), let r = memRange(text[open...]) else { return nil }
        return NodeMemoryRange(node: node, start: r.start, end: r.end)
    }

    /// The line without trailing CR/LF and, when asked (a console line), without its printk timestamp.
    static func clean(_ line: String, stripTimestamp: Bool = true) -> String {
        var text = stripTimestamp ? KernelLog.stripTimestamp(line) : line
        while let last = text.unicodeScalars.last, last == "\r" || last == "\n" {
            text = String(text.unicodeScalars.dropLast())
        }
        return text
    }

    /// The bodies (text after `cma: `) of every `cma: ` message in a line: the one it starts with and any glued on
    /// after text with no newline. A glued message starts at `cma: ` or `hugetlb_cma: ` preceded by a character that
    /// is not a letter or `_` (e.g. `... node 0cma: Reserved ...`); `hugetlb_cma: ` messages are not returned.
    static func cmaMessages(in text: String) -> [String] {
        let bytes = Array(text.utf8)
        let cma = Array("cma: ".utf8)
        let hugetlb = Array("hugetlb_cma: ".utf8)
        // Start offsets of messages, and whether each is a plain `cma: ` one.
        var starts: [(offset: Int, isCMA: Bool)] = []
        var i = 0
        while i + cma.count <= bytes.count {
            let boundary = i == 0 || !isWordByte(bytes[i - 1])
            if boundary, bytes.starts(with: cma, at: i) {
                starts.append((i, true)); i += cma.count; continue
            }
            if boundary, bytes.starts(with: hugetlb, at: i) {
                starts.append((i, false)); i += hugetlb.count; continue
            }
            i += 1
        }
        var messages: [String] = []
        for (n, start) in starts.enumerated() where start.isCMA {
            let end = n + 1 < starts.count ? starts[n + 1].offset : bytes.count
            messages.append(String(decoding: bytes[(start.offset + cma.count)..<end], as: UTF8.self))
        }
        return messages
    }

    private static func isWordByte(_ b: UInt8) -> Bool {
        (b >= 0x41 && b <= 0x5A) || (b >= 0x61 && b <= 0x7A) || b == 0x5F
    }

    /// One `cma: ` message body.
    static func record(_ body: String, into facts: inout BootLogFacts) {
        if body.hasPrefix("Reserved ") {
            if let area = reservedArea(body) { facts.reserved.append(area) }
        } else if body.hasPrefix("Failed to reserve ") {
            var s = LogScanner(body.dropFirst("Failed to reserve ".count))
            if let mib = s.decimal(), s.skip(" MiB") { facts.failedMiB.append(mib) }
        } else if isFailureReason(body) {
            facts.failureReasons.append(body)
        }
    }

    static func isFailureReason(_ body: String) -> Bool {
        if body.hasPrefix("Region at ") {
            return body.contains(" must be aligned to ") || body.contains(" defined on low/high memory boundary")
        }
        if body.hasPrefix("Size (") { return body.contains(" exceeds limit (") }
        if body.hasPrefix("Not enough slots for CMA reserved regions") { return true }
        if body.hasPrefix("CMA area ") { return body.contains(" could not be activated") }
        return false
    }

    /// `Reserved 1024 MiB at 0x000000003fc00000[ on node -1]`.
    static func reservedArea(_ body: String) -> ReservedArea? {
        var s = LogScanner(body.dropFirst("Reserved ".count))
        guard let mib = s.decimal(), s.skip(" MiB at 0x"), let base = s.hex(maxDigits: 16) else { return nil }
        var node: Int?
        if s.skip(" on node ") {
            let negative = s.skip("-")
            if let n = s.decimal(), n <= UInt64(Int32.max) { node = negative ? -Int(n) : Int(n) }
        }
        return ReservedArea(sizeMiB: mib, base: base, node: node)
    }

    /// The `cma-reserved` KiB of a `Memory: ...K/...K available (...)` line.
    static func memoryCmaReserved(_ text: String) -> UInt64? {
        guard text.contains("K available ("), let open = text.firstIndex(of: "(") else { return nil }
        var inside = text[text.index(after: open)...]
        if let close = inside.lastIndex(of: ")") { inside = inside[..<close] }
        for field in inside.split(separator: ",") {
            let parts = field.split(separator: " ")
            guard parts.count == 2, parts[1] == "cma-reserved", parts[0].hasSuffix("K") else { continue }
            var s = LogScanner(parts[0].dropLast())
            if let kib = s.decimal(), s.atEnd { return kib }
        }
        return nil
    }

    /// `Unknown kernel command line parameters "a=1 b", will be passed to user space.` → ["a=1", "b"].
    static func unknownParameters(_ text: String) -> [String] {
        var list: Substring
        if text.hasPrefix("Unknown command line parameters:") {
            list = text.dropFirst("Unknown command line parameters:".count)
        } else {
            list = text.dropFirst("Unknown kernel command line parameters \"".count)
            if let r = list.firstRange(of: "\", will be passed to user space") {
                list = list[..<r.lowerBound]
            } else if let quote = list.lastIndex(of: "\"") {
                list = list[..<quote]
            }
        }
        return list.split(separator: " ").map(String.init)
    }
}

/// A small cursor over the ASCII of a message.
private struct LogScanner {
    var bytes: [UInt8]
    var i = 0
    init(_ text: some StringProtocol) { bytes = Array(text.utf8) }

    var atEnd: Bool { i >= bytes.count }

    mutating func skip(_ literal: String) -> Bool {
        let lit = Array(literal.utf8)
        guard bytes.starts(with: lit, at: i) else { return false }
        i += lit.count
        return true
    }

    /// Decimal digits; nil when there are none or the value does not fit in 64 bits.
    mutating func decimal() -> UInt64? {
        var value: UInt64 = 0
        let start = i
        while i < bytes.count, bytes[i] >= 0x30, bytes[i] <= 0x39 {
            let (m, o1) = value.multipliedReportingOverflow(by: 10)
            let (a, o2) = m.addingReportingOverflow(UInt64(bytes[i] - 0x30))
            if o1 || o2 { return nil }
            value = a
            i += 1
        }
        return i > start ? value : nil
    }

    /// Up to `maxDigits` hex digits (so a glued `...00c...` cannot run on).
    mutating func hex(maxDigits: Int) -> UInt64? {
        var value: UInt64 = 0
        let start = i
        while i < bytes.count, i - start < maxDigits, let d = Self.hexValue(bytes[i]) {
            value = value << 4 | UInt64(d)
            i += 1
        }
        return i > start ? value : nil
    }

    private static func hexValue(_ b: UInt8) -> UInt8? {
        switch b {
        case 0x30...0x39: b - 0x30
        case 0x61...0x66: b - 0x61 + 10
        case 0x41...0x46: b - 0x41 + 10
        default: nil
        }
    }
}

extension Array where Element == UInt8 {
    fileprivate func starts(with prefix: [UInt8], at offset: Int) -> Bool {
        guard offset >= 0, offset + prefix.count <= count else { return false }
        for k in 0..<prefix.count where self[offset + k] != prefix[k] { return false }
        return true
    }
}
