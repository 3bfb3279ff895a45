/// A measured `alloc` (`pages: all`, `repeat`, `max-latency` or `min-migrated`): each attempt writes the debugfs
/// alloc file with the agent's timed-write tool (timed inside the guest) and frees the pages again before the
/// next; the first attempt also records the vmstat changes, and the step the kernel messages in between.

/// An `alloc` step with measurements: timed inside the guest, repeated, with vmstat deltas and the kernel
/// messages in between; each attempt's pages are freed again before the next.
public struct MeasuredAlloc: Equatable, Sendable {
    public var area: String
    /// nil: the whole area (`pages: all`).
    public var pages: UInt64?
    public var expectSuccess = true
    public var repeats = 1
    /// Every attempt must take at most this long (guest monotonic clock). TCG is slow: set it per profile.
    public var maxLatencySeconds: Double?
    /// The first attempt must migrate at least this many pages (vmstat pgmigrate_success).
    public var minMigrated: UInt64?
    public init(area: String, pages: UInt64?, expectSuccess: Bool = true, repeats: Int = 1, maxLatencySeconds: Double? = nil, minMigrated: UInt64? = nil) {
        self.area = area; self.pages = pages; self.expectSuccess = expectSuccess; self.repeats = repeats
        self.maxLatencySeconds = maxLatencySeconds; self.minMigrated = minMigrated
    }
}

/// `area:` of an alloc or free step: a CMA area name as debugfs shows it, only letters, digits, `.`, `_`, `-`, and
/// the `,` and `@` of device-tree pool names (`linux,cma`, `pool@c0000000`); it becomes a path and part of a
/// guest command (single-quoted). Absent: `reserved`.
func parseArea(_ v: YAMLValue?) throws(InputError) -> String {
    guard let v else { return "reserved" }
    let name = try v.string()
    let allowed = name.utf8.allSatisfy { c in
        (c >= 0x30 && c <= 0x39) || (c >= 0x41 && c <= 0x5a) || (c >= 0x61 && c <= 0x7a) || c == 0x2e || c == 0x5f || c == 0x2d
            || c == 0x2c || c == 0x40
    }
    guard allowed, !name.isEmpty, name != ".", name != ".." else {
        throw v.error("area names a CMA area as /sys/kernel/debug/cma/ lists it: only [A-Za-z0-9._,@-] (not empty, not . or ..); write the area's name, e.g. `reserved`")
    }
    return name
}

/// `text` in POSIX shell single quotes, each `'` written as `'\''`: the one quoting function for values that
/// reach a shell (guest commands, reproduce.sh).
public func singleQuoted(_ text: String) -> String {
    "'" + text.split(separator: "'", omittingEmptySubsequences: false).joined(separator: "'\\''") + "'"
}

extension MeasuredAlloc: StepModel {
    public static let kind = StepKind.alloc
    public static let usesCMADebugfs = true

    /// The `alloc:` keys that make an alloc measured (so does `pages: all`).
    static let measuredKeys = ["repeat", "max-latency", "min-migrated"]

    static func isMeasured(_ a: YAMLMapping) -> Bool {
        measuredKeys.contains { a[$0] != nil } || (try? a["pages"]?.string()) == "all"
    }

    /// The settings of a measured `alloc:` (`body` is its value, `a` that value's mapping).
    static func parse(_ a: YAMLMapping, body: YAMLValue) throws(InputError) -> MeasuredAlloc {
        if a["tolerance"] != nil { throw body.error("tolerance applies to a plain alloc; a measured alloc (pages: all, repeat, max-latency, min-migrated) checks used pages exactly") }
        var m = MeasuredAlloc(area: try parseArea(a["area"]), pages: nil)
        let pv = try a.required("pages", hint: "how many 4 KiB pages to allocate, or `all`")
        if (try? pv.string()) != "all" { m.pages = try pv.uint64() }
        m.expectSuccess = try AllocStep.parseExpect(a["expect"])
        if let r = a["repeat"] { m.repeats = try r.int(in: 1...100) }
        if let l = a["max-latency"] { m.maxLatencySeconds = try Profile.parseSeconds(l) }
        if let n = a["min-migrated"] { m.minMigrated = try n.uint64() }
        return m
    }

    public func checks(_ r: MeasuredAllocStepResult, _ c: StepCheckContext) -> [CheckResult] {
        var out: [CheckResult] = []
        let name = c.name
        let errnos = r.attemptErrnos ?? [r.status]
        let first = errnos.first ?? r.status
        let result = first == 0 ? "success" : "failure (\(Evaluate.errnoName(first)))"
        out.append(CheckResult(name: name, expected: expectSuccess ? "success" : "failure", observed: result, passed: (first == 0) == expectSuccess))
        if first == 0, let before = r.areaBefore?.used, let after = r.areaAfter?.used {
            let want = Int64(clamping: pages ?? r.areaBefore?.count ?? 0)
            let delta = Int64(clamping: after) - Int64(clamping: before)
            out.append(CheckResult(name: "\(name).used-delta", expected: "\(want)", observed: "\(delta)", passed: delta == want))
        }
        if errnos.count > 1 {
            let same = errnos.allSatisfy { ($0 == 0) == (first == 0) }
            out.append(CheckResult(name: "\(name).repeats", expected: "\(errnos.count) × \(expectSuccess ? "success" : "failure")",
                                   observed: errnos.map { $0 == 0 ? "ok" : Evaluate.errnoName($0) }.joined(separator: ","), passed: same && (first == 0) == expectSuccess))
        }
        if let bound = maxLatencySeconds {
            let ns = r.attemptNanoseconds ?? []
            out.append(CheckResult(name: "\(name).latency", expected: "<= \(Evaluate.seconds(bound))", observed: Evaluate.latencySummary(ns),
                                   passed: !ns.isEmpty && ns.allSatisfy { Double($0) / 1e9 <= bound }))
        }
        if let want = minMigrated {
            let migrated = r.vmstatDelta?["pgmigrate_success"] ?? 0
            out.append(CheckResult(name: "\(name).migrated", expected: ">= \(want) pages", observed: "\(migrated) pages (pgmigrate_success)",
                                   passed: migrated >= Int64(want)))
        }
        return out
    }

    // MARK: - In the guest

    /// The record's summary, e.g. `alloc 262144 pages from reserved (the whole area) × 3`.
    public func summary(pages n: UInt64) -> String {
        "alloc \(n) pages from \(area)\(pages == nil ? " (the whole area)" : "")\(repeats > 1 ? " × \(repeats)" : "")"
    }

    /// The debugfs file each attempt writes.
    public var allocPath: String { "/sys/kernel/debug/cma/\(area)/alloc" }

    /// The guest command of one attempt: the agent's timed-write tool prints `ns=<n> errno=<e>`.
    public func attemptCommand(pages n: UInt64) -> String {
        "/sbin/cmalab-agent timed-write \(singleQuoted(allocPath)) \(n)"
    }

    /// `ns=<n> errno=<e>` from the agent's timed-write tool.
    public static func parseTimedWrite(_ text: String) -> (UInt64, Int32)? {
        var ns: UInt64?, err: Int32?
        for word in text.split(whereSeparator: { $0 == " " || $0 == "\n" }) {
            if word.hasPrefix("ns=") { ns = UInt64(word.dropFirst(3)) }
            if word.hasPrefix("errno=") { err = Int32(word.dropFirst(6)) }
        }
        guard let ns, let err else { return nil }
        return (ns, err)
    }

    /// The vmstat counters an attempt is judged by (pgmigrate_*, cma_alloc_*, compact_*, nr_free_cma), as
    /// changes from `before` to `after`.
    public static func vmstatDelta(before: [String: Int64], after: [String: Int64]) -> [String: Int64] {
        var delta: [String: Int64] = [:]
        for (k, v) in after where k.hasPrefix("pgmigrate_") || k.hasPrefix("cma_alloc_") || k.hasPrefix("compact_") || k == "nr_free_cma" {
            delta[k] = v - (before[k] ?? 0)
        }
        return delta
    }
}

/// What a measured alloc did.
public struct MeasuredAllocStepResult: StepResult, Equatable {
    /// The first attempt's errno.
    public var status: Int32
    public var before: MeminfoSnapshot?
    /// After the first attempt.
    public var after: MeminfoSnapshot?
    public var areaBefore: AreaSnapshot?
    public var areaAfter: AreaSnapshot?
    /// Each attempt's guest-side write time (nanoseconds) and errno (0 = success).
    public var attemptNanoseconds: [UInt64]?
    public var attemptErrnos: [Int32]?
    /// /proc/vmstat changes over the first attempt (`MeasuredAlloc.vmstatDelta`).
    public var vmstatDelta: [String: Int64]?
    /// Kernel messages logged during the attempts (at most 200).
    public var kernelMessages: [String]?

    public init(status: Int32) { self.status = status }

    public init(_ r: StepRecord) {
        status = r.status; before = r.before; after = r.after; areaBefore = r.areaBefore; areaAfter = r.areaAfter
        attemptNanoseconds = r.attemptNanoseconds; attemptErrnos = r.attemptErrnos; vmstatDelta = r.vmstatDelta; kernelMessages = r.kernelMessages
    }

    public func fill(_ r: inout StepRecord) {
        r.before = before; r.after = after; r.areaBefore = areaBefore; r.areaAfter = areaAfter
        r.attemptNanoseconds = attemptNanoseconds; r.attemptErrnos = attemptErrnos; r.vmstatDelta = vmstatDelta; r.kernelMessages = kernelMessages
    }
}
