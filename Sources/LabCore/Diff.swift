/// `cmalab diff`: which CMA observations changed between two runs (or the same profile on two images).
/// Pure: compares two `Observations` and lists the differences that matter to a CMA engineer.

public struct ObservationChange: Equatable, Sendable {
    /// What differs, e.g. `reservation`, `area reserved base`, `CmaTotal at boot`.
    public var field: String
    /// The value in A and in B; nil means "absent there".
    public var a: String?
    public var b: String?
    public init(field: String, a: String?, b: String?) { self.field = field; self.a = a; self.b = b }
}

public enum ObservationDiff {
    /// The differences between `a` and `b`, in a fixed order: kernel, ending and outcome, reservation
    /// lines, the Memory: line's cma-reserved, meminfo at boot, the area layout, the other CMA dmesg lines.
    public static func compare(_ a: Observations, _ b: Observations) -> [ObservationChange] {
        var out: [ObservationChange] = []
        func field(_ name: String, _ x: String?, _ y: String?) {
            if x != y { out.append(ObservationChange(field: name, a: x, b: y)) }
        }
        field("kernel release", a.kernelRelease, b.kernelRelease)
        field("machine", a.machine, b.machine)
        field("ending", a.ending.rawValue, b.ending.rawValue)
        field("outcome", Evaluate.outcome(a)?.rawValue, Evaluate.outcome(b)?.rawValue)
        field("crash", a.crash?.headline, b.crash?.headline)
        out += lines("reservation", reservationLines(a), reservationLines(b))
        field("Memory: cma-reserved", a.boot.memoryCmaReservedKiB.map { "\($0)K" }, b.boot.memoryCmaReservedKiB.map { "\($0)K" })
        field("unknown parameters", list(a.boot.unknownParameters), list(b.boot.unknownParameters))
        let ma = a.meminfo.first, mb = b.meminfo.first
        field("CmaTotal at boot", ma?.cmaTotalKiB.map { "\($0) kB" }, mb?.cmaTotalKiB.map { "\($0) kB" })
        field("CmaFree at boot", ma?.cmaFreeKiB.map { "\($0) kB" }, mb?.cmaFreeKiB.map { "\($0) kB" })
        field("areas", list(a.areas.map(\.name)), list(b.areas.map(\.name)))
        for name in Set(a.areas.map(\.name)).intersection(b.areas.map(\.name)).sorted() {
            let x = a.areas.first { $0.name == name }!, y = b.areas.first { $0.name == name }!
            field("area \(name) base", x.basePFN.map { hex($0 * 4096) }, y.basePFN.map { hex($0 * 4096) })
            field("area \(name) pages", x.count.map(String.init), y.count.map(String.init))
            field("area \(name) order_per_bit", x.orderPerBit.map(String.init), y.orderPerBit.map(String.init))
            field("area \(name) sysfs files", list(x.sysfs.keys.sorted()), list(y.sysfs.keys.sorted()))
        }
        for (i, (sa, sb)) in zip(a.steps, b.steps).enumerated() {
            if sa.status != sb.status { field("steps[\(i)] \(sa.kind) status", "\(sa.status)", "\(sb.status)") }
            // A measured allocation whose median time moved by more than 1.5x: a kernel change made CMA slower or faster.
            if let ta = sa.attemptNanoseconds, let tb = sb.attemptNanoseconds, let ma = median(ta.map { Double($0) }), let mb = median(tb.map { Double($0) }), ma > 0, mb > 0,
               max(ma, mb) / min(ma, mb) > 1.5 {
                field("steps[\(i)] alloc latency", Evaluate.latencySummary(ta), Evaluate.latencySummary(tb))
            }
            // The kernel's own timing (trace events): a median that moved by more than 1.5x, or a different count
            // of busy retries or migrated pages.
            if let ta = sa.trace, let tb = sb.trace {
                let ma = median(ta.allocationMicroseconds.map { Double($0) }), mb = median(tb.allocationMicroseconds.map { Double($0) })
                let moved = ma.flatMap { x in mb.map { y in x > 0 && y > 0 && max(x, y) / min(x, y) > 1.5 } } ?? (ma != nil) != (mb != nil)
                if moved || ta.busyRetries != tb.busyRetries || (ta.pagesMigrated == 0) != (tb.pagesMigrated == 0) {
                    field("steps[\(i)] CMA trace", ta.line, tb.line)
                }
            }
        }
        out += lines("CMA dmesg", otherCMALines(a), otherCMALines(b))
        return out
    }

    /// The boot lines that say where CMA went or why it did not: Reserved, Failed and their reasons.
    static func reservationLines(_ o: Observations) -> [String] {
        o.boot.cmaLines.filter { l in
            ["cma: Reserved", "cma: Failed", "cma: Region", "cma: Size", "cma: Not enough", "cma: CMA area"].contains { l.hasPrefix($0) }
        }
    }

    /// The other CMA lines, with pointers and counts that differ run to run masked, without repeats.
    static func otherCMALines(_ o: Observations) -> [String] {
        let reservation = Set(reservationLines(o))
        var seen = Set<String>()
        var out: [String] = []
        for l in o.boot.cmaLines where !reservation.contains(l) {
            let masked = maskPointers(l)
            if seen.insert(masked).inserted { out.append(masked) }
        }
        return out
    }

    /// `(____ptrval____)` and 16-digit hashed pointers become `<ptr>`.
    static func maskPointers(_ line: String) -> String {
        var s = line.replacingOccurrences(of: "(____ptrval____)", with: "<ptr>")
        s = s.replacing(#/\b[0-9a-f]{16}\b/#) { _ in "<ptr>" }
        return s
    }

    /// Lines only in A (`-`) and only in B (`+`), as changes with one side absent.
    static func lines(_ name: String, _ a: [String], _ b: [String]) -> [ObservationChange] {
        let sa = Set(a), sb = Set(b)
        return a.filter { !sb.contains($0) }.map { ObservationChange(field: name, a: $0, b: nil) }
            + b.filter { !sa.contains($0) }.map { ObservationChange(field: name, a: nil, b: $0) }
    }

    static func list(_ xs: [String]) -> String? { xs.isEmpty ? nil : xs.joined(separator: ", ") }

    /// A readable report: `field: A → B`, or `- line` / `+ line` for lines on one side only.
    public static func render(_ changes: [ObservationChange], titleA: String, titleB: String) -> String {
        var out = "--- A: \(titleA)\n+++ B: \(titleB)\n"
        if changes.isEmpty { return out + "no CMA differences\n" }
        let width = min(28, changes.map(\.field.count).max() ?? 0)
        for c in changes {
            let label = c.field.padding(toLength: max(width, c.field.count), withPad: " ", startingAt: 0)
            switch (c.a, c.b) {
            case let (x?, nil) where c.field == "reservation" || c.field == "CMA dmesg": out += "\(label)  - \(x)\n"
            case let (nil, y?) where c.field == "reservation" || c.field == "CMA dmesg": out += "\(label)  + \(y)\n"
            default: out += "\(label)  \(c.a ?? "(none)") → \(c.b ?? "(none)")\n"
            }
        }
        return out
    }

    /// The key that pairs results across images: the cell's profile and axes, without its image.
    public static func pairingKey(_ v: Verdict) -> String {
        guard let key = v.cellKey else { return v.profile }
        return key.profile + key.axes
    }
}

extension Report {
    /// Combines the verdicts of several results files (shards) into one list, sorted by result key.
    /// The same key in two files is an error: the shards overlap, or a file was given twice.
    public static func merge(_ files: [(name: String, verdicts: [Verdict])]) throws(ReportError) -> [Verdict] {
        var seen: [String: String] = [:]
        var all: [Verdict] = []
        for f in files {
            for v in f.verdicts {
                if let other = seen[v.key] {
                    throw ReportError("\(f.name): result \(v.key) is also in \(other); shards must not overlap")
                }
                seen[v.key] = f.name
                all.append(v)
            }
        }
        return all.sorted { $0.key < $1.key }
    }
}
