/// What x86's `memmap=` does to the firmware's e820 map before memblock sees it (arch/x86/kernel/e820.c,
/// `parse_memmap_one` and `e820__update_table`), so the oracle predicts on the map the kernel really uses: a
/// replay's twin boots with `memmap=exactmap` plus one `memmap=` per host range, and profiles punch holes with
/// `memmap=512M$0x60000000`.
///
/// - `exactmap` empties the table; the ranges that follow make the whole map.
/// - `nn@ss` adds usable RAM, `nn#ss` ACPI data, `nn$ss` reserved, `nn!ss` protected (type 12) memory.
/// - `nn%ss-t+u` turns the type-t parts of the range into type u (t -1: any type).
/// - `nn` alone drops the usable RAM above nn (a memory limit).
///
/// Overlaps resolve as the kernel's sanitizer resolves them: the larger e820 type number wins (reserved 2 over
/// usable 1, ACPI data 3 over reserved), and touching ranges of one type become one.
public enum Memmap {
    /// The e820 type numbers of the words the kernel prints (`BIOS-e820: [mem ...] usable`).
    static let typeNumbers: [String: UInt32] = [
        "usable": 1, "reserved": 2, "ACPI data": 3, "ACPI NVS": 4, "unusable": 5, "persistent (type 7)": 7,
        "persistent (type 12)": 12, "soft reserved": 0xefff_ffff,
    ]
    static func number(_ type: String) -> UInt32 { typeNumbers[type] ?? 2 }
    static func word(_ number: UInt32) -> String {
        typeNumbers.first { $0.value == number }?.key ?? "type \(number)"
    }

    /// The map after every `memmap=` of `line`, in order, and what could not be read (one sentence each).
    /// The map is unchanged when the line has no `memmap=`.
    public static func apply(_ line: KernelCommandLine, to firmware: [MemoryRange]) -> (map: [MemoryRange], problems: [String]) {
        let values = line.parameters.filter { $0.key == "memmap" }.compactMap(\.value)
        guard !values.isEmpty else { return (firmware, []) }
        var table = firmware
        var problems: [String] = []
        for value in values {
            // The kernel also takes several ranges in one parameter, separated by commas.
            for part in value.split(separator: ",", omittingEmptySubsequences: true) {
                if part == "exactmap" { table = []; continue }
                guard let (size, rest) = memparse(part), size > 0 else { problems.append("memmap=\(part): no size"); continue }
                guard let op = rest.first else {
                    // A limit: usable RAM from `size` up is removed.
                    table = remove(usableFrom: size, table)
                    continue
                }
                guard let (start, tail) = memparse(rest.dropFirst()) else { problems.append("memmap=\(part): no start after `\(op)`"); continue }
                let (end, overflow) = start.addingReportingOverflow(size - 1)
                guard !overflow else { problems.append("memmap=\(part): the range passes the top of the address space"); continue }
                switch op {
                case "@": table.append(MemoryRange(start: start, end: end, type: "usable"))
                case "#": table.append(MemoryRange(start: start, end: end, type: "ACPI data"))
                case "$": table.append(MemoryRange(start: start, end: end, type: "reserved"))
                case "!": table.append(MemoryRange(start: start, end: end, type: "persistent (type 12)"))
                case "%":
                    // `-old+new`, `-old`, `+new`: change the old-type parts (any type when old is -1) to new.
                    let (from, to) = typeChange(tail)
                    table = update(table, start: start, end: end, from: from, to: to)
                default: problems.append("memmap=\(part): `\(op)` is not @, #, $, ! or %")
                }
            }
        }
        return (sanitize(table), problems)
    }

    /// The kernel's memparse: a decimal, octal (leading 0) or hex (0x) number with an optional K, M, G, T, P or E
    /// suffix; nil when there is no number or it overflows. Returns the value and what follows it.
    static func memparse(_ s: Substring) -> (UInt64, Substring)? {
        var rest = s
        var radix: UInt64 = 10
        if rest.hasPrefix("0x") || rest.hasPrefix("0X"), rest.dropFirst(2).first?.isHexDigit == true {
            radix = 16; rest = rest.dropFirst(2)
        } else if rest.hasPrefix("0") {
            radix = 8
        }
        var value: UInt64 = 0
        var digits = 0
        while let c = rest.first, let d = c.hexDigitValue, UInt64(d) < radix {
            let (m, o1) = value.multipliedReportingOverflow(by: radix)
            let (a, o2) = m.addingReportingOverflow(UInt64(d))
            guard !o1, !o2 else { return nil }
            value = a; digits += 1; rest = rest.dropFirst()
        }
        guard digits > 0 else { return nil }
        let shifts: [Character: UInt64] = ["K": 10, "k": 10, "M": 20, "m": 20, "G": 30, "g": 30, "T": 40, "t": 40, "P": 50, "p": 50, "E": 60, "e": 60]
        if let c = rest.first, let shift = shifts[c] {
            guard value == 0 || value.leadingZeroBitCount >= Int(shift) else { return nil }
            value <<= shift; rest = rest.dropFirst()
        }
        return (value, rest)
    }

    /// `-t+u`, `-t`, `+u` after `%` (the kernel defaults a missing old type to -1, any).
    static func typeChange(_ s: Substring) -> (from: UInt32?, to: UInt32) {
        var from: UInt32?
        var to: UInt32 = 2
        var rest = s
        if rest.first == "-" {
            rest = rest.dropFirst()
            let digits = rest.prefix { $0.isNumber || $0 == "-" }
            if digits != "-1", let n = UInt32(digits) { from = n }
            rest = rest.dropFirst(digits.count)
        }
        if rest.first == "+" { to = UInt32(rest.dropFirst().prefix { $0.isNumber }) ?? to }
        return (from, to)
    }

    static func remove(usableFrom limit: UInt64, _ table: [MemoryRange]) -> [MemoryRange] {
        table.compactMap { r in
            guard r.type == "usable", r.end >= limit else { return r }
            return r.start < limit ? MemoryRange(start: r.start, end: limit - 1, type: r.type) : nil
        }
    }

    static func update(_ table: [MemoryRange], start: UInt64, end: UInt64, from: UInt32?, to: UInt32) -> [MemoryRange] {
        var out: [MemoryRange] = []
        for r in table {
            guard from == nil || number(r.type) == from, r.start <= end, r.end >= start else { out.append(r); continue }
            if r.start < start { out.append(MemoryRange(start: r.start, end: start - 1, type: r.type)) }
            out.append(MemoryRange(start: max(r.start, start), end: min(r.end, end), type: word(to)))
            if r.end > end { out.append(MemoryRange(start: end + 1, end: r.end, type: r.type)) }
        }
        return out
    }

    /// Overlaps resolved (the largest type number wins), touching ranges of one type merged, in address order.
    static func sanitize(_ table: [MemoryRange]) -> [MemoryRange] {
        // Boundaries as exclusive ends; a range ending at 2^64 - 1 keeps its end as a boundary of its own.
        var points = Set<UInt64>()
        for r in table { points.insert(r.start); if r.end != .max { points.insert(r.end + 1) } }
        let sorted = points.sorted()
        var out: [MemoryRange] = []
        for (i, s) in sorted.enumerated() {
            let covering = table.filter { $0.start <= s && $0.end >= s }
            guard let winner = covering.max(by: { number($0.type) < number($1.type) }) else { continue }
            let end = i + 1 < sorted.count ? sorted[i + 1] - 1 : covering.map(\.end).max() ?? s
            if let last = out.last, last.type == winner.type, last.end != .max, last.end + 1 == s {
                out[out.count - 1].end = end
            } else {
                out.append(MemoryRange(start: s, end: end, type: winner.type))
            }
        }
        return out
    }
}
