/// The kernel's own account of CMA allocations: the `cma` trace events (include/trace/events/cma.h) and the
/// migration event `migrate:mm_migrate_pages`, as tracefs's `trace` file prints them, e.g.
///
///     cmalab-agent-71      [000] .....    12.345678: cma_alloc_start: name=reserved count=262144 align=8
///     cmalab-agent-71      [000] .....    12.912345: cma_alloc_finish: name=reserved pfn=0x3f400 page=0000000065d1c4d8 count=262144 align=8 errorno=0
///
/// 6.12 has `cma_alloc_start`, `cma_alloc_finish` (with `errorno`), `cma_alloc_busy_retry` and `cma_release`;
/// 6.1 has the same events, its `cma_alloc_finish` without `errorno` (a failure shows as page 0).

/// One parsed trace event.
public struct CMATraceEvent: Equatable, Sendable {
    public var name: String
    /// Seconds since boot, in microseconds.
    public var microseconds: UInt64
    public var fields: [String: String]
}

/// What the trace says about one step's allocations.
public struct CMATraceSummary: Codable, Equatable, Sendable {
    /// Each allocation's time from `cma_alloc_start` to `cma_alloc_finish` (kernel clock), microseconds.
    public var allocationMicroseconds: [UInt64] = []
    /// Allocations whose finish reported an error (or no page).
    public var failedAllocations: Int = 0
    /// `cma_alloc_busy_retry` events: a range was busy and the allocator moved on.
    public var busyRetries: Int = 0
    /// `cma_release` events.
    public var releases: Int = 0
    /// Pages migrated (`mm_migrate_pages` nr_succeeded) and pages that could not be (nr_failed).
    public var pagesMigrated: UInt64 = 0
    public var migrationFailures: UInt64 = 0
    /// Lines that named an event but could not be read (the guest's word).
    public var unreadableLines: Int = 0
    public init() {}

    /// `3 allocations, 812/905/1200 µs (min/median/max), 2 busy retries, 4096 pages migrated`.
    public var line: String {
        var parts: [String] = []
        let sorted = allocationMicroseconds.sorted()
        if let lo = sorted.first, let hi = sorted.last, let mid = median(sorted.map { Double($0) }) {
            parts.append("\(sorted.count) allocation\(sorted.count == 1 ? "" : "s"), \(lo)/\(UInt64(mid))/\(hi) µs (min/median/max)")
        }
        if failedAllocations > 0 { parts.append("\(failedAllocations) failed") }
        if busyRetries > 0 { parts.append("\(busyRetries) busy retr\(busyRetries == 1 ? "y" : "ies")") }
        if pagesMigrated > 0 || migrationFailures > 0 { parts.append("\(pagesMigrated) pages migrated" + (migrationFailures > 0 ? " (\(migrationFailures) failed)" : "")) }
        if releases > 0 { parts.append("\(releases) release\(releases == 1 ? "" : "s")") }
        return parts.isEmpty ? "no CMA events" : parts.joined(separator: ", ")
    }
}

public enum CMATrace {
    /// The events cmalab enables, as `<system>/<event>` under tracefs's `events/`.
    public static let events = ["cma/cma_alloc_start", "cma/cma_alloc_finish", "cma/cma_alloc_busy_retry", "cma/cma_release",
                                "migrate/mm_migrate_pages"]

    /// The event of one `trace` line, or nil for comments, other events and lines that are not events.
    public static func event(_ line: Substring) -> CMATraceEvent? {
        guard !line.hasPrefix("#") else { return nil }
        // `<task>-<pid> [cpu] <flags> <secs>.<usecs>: <event>: <fields>`: the timestamp is the word before the
        // first `: ` whose next word ends with `:` too.
        let words = line.split(separator: " ", omittingEmptySubsequences: true)
        guard let i = words.firstIndex(where: { $0.hasSuffix(":") && ($0.first?.isNumber ?? false) && $0.contains(".") }),
              i + 1 < words.count, words[i + 1].hasSuffix(":") else { return nil }
        let stamp = words[i].dropLast()
        let name = String(words[i + 1].dropLast())
        guard name.hasPrefix("cma_") || name == "mm_migrate_pages" else { return nil }
        let parts = stamp.split(separator: ".")
        guard parts.count == 2, let s = UInt64(parts[0]), let us = UInt64(parts[1].prefix(6)), parts[1].count <= 9 else { return nil }
        let (scaled, o1) = s.multipliedReportingOverflow(by: 1_000_000)
        let (micros, o2) = scaled.addingReportingOverflow(us)
        guard !o1, !o2 else { return nil }
        var fields: [String: String] = [:]
        for w in words[(i + 2)...] {
            guard let eq = w.firstIndex(of: "=") else { continue }
            fields[String(w[..<eq])] = String(w[w.index(after: eq)...])
        }
        return CMATraceEvent(name: name, microseconds: micros, fields: fields)
    }

    /// The summary of a `trace` file's text. Starts pair with the next finish of the same area, in order.
    public static func summary(_ text: String) -> CMATraceSummary {
        var s = CMATraceSummary()
        var open: [String: [UInt64]] = [:]
        for line in text.split(whereSeparator: \.isNewline) {
            guard let e = event(line) else {
                if line.contains(": cma_") || line.contains(": mm_migrate_pages:") { s.unreadableLines += 1 }
                continue
            }
            let area = e.fields["name"] ?? ""
            switch e.name {
            case "cma_alloc_start":
                open[area, default: []].append(e.microseconds)
            case "cma_alloc_finish":
                if var starts = open[area], !starts.isEmpty {
                    let start = starts.removeFirst()
                    open[area] = starts
                    if e.microseconds >= start { s.allocationMicroseconds.append(e.microseconds - start) }
                }
                let failed = (e.fields["errorno"].flatMap { Int($0) } ?? 0) != 0 || e.fields["page"].map { $0.allSatisfy { $0 == "0" } || $0 == "(null)" } == true
                if failed { s.failedAllocations += 1 }
            case "cma_alloc_busy_retry":
                s.busyRetries += 1
            case "cma_release":
                s.releases += 1
            case "mm_migrate_pages":
                let (ok, o1) = s.pagesMigrated.addingReportingOverflow(e.fields["nr_succeeded"].flatMap { UInt64($0) } ?? 0)
                let (bad, o2) = s.migrationFailures.addingReportingOverflow(e.fields["nr_failed"].flatMap { UInt64($0) } ?? 0)
                s.pagesMigrated = o1 ? .max : ok
                s.migrationFailures = o2 ? .max : bad
            default:
                break
            }
        }
        return s
    }
}
