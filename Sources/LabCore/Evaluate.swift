/// Checking a profile's expectations against observations. Pure: every result carries the expected
/// and the observed value, so a failure explains itself.
public enum Evaluate {
    /// The reservation outcome the observations show.
    public static func outcome(_ o: Observations) -> Outcome? {
        if o.ending == .kernelCrash { return .kernelCrash }
        if o.configCMA == false { return .notSupported }
        if let boot = o.meminfo.first, boot.cmaTotalKiB == nil { return .notSupported }
        if !o.boot.reserved.isEmpty || (o.meminfo.first?.cmaTotalKiB ?? 0) > 0 { return .reserved }
        if !o.boot.failedMiB.isEmpty || !o.boot.failureReasons.isEmpty || !o.boot.deviceTree.failures.isEmpty { return .failed }
        if o.ending == .poweredOff || !o.meminfo.isEmpty { return Outcome.none }
        return nil
    }

    /// The area the size/base expectations talk about: `reserved` (the global area), else the only one.
    static func mainArea(_ o: Observations) -> (base: UInt64, size: UInt64, source: String)? {
        let areas = o.areas.filter { ($0.count ?? 0) > 0 }
        if let a = areas.first(where: { $0.name == "reserved" }) ?? (areas.count == 1 ? areas.first : nil),
           let pfn = a.basePFN, let count = a.count {
            // The guest's numbers: a base or size past 2^64 is impossible, so the boot log's line decides instead.
            let base = pfn.multipliedReportingOverflow(by: 4096), size = count.multipliedReportingOverflow(by: 4096)
            if !base.overflow, !size.overflow, !base.partialValue.addingReportingOverflow(size.partialValue).overflow {
                return (base.partialValue, size.partialValue, "debugfs \(a.name)")
            }
        }
        if let r = o.boot.reserved.first, o.boot.reserved.count == 1 || o.areas.isEmpty {
            return (r.base, r.sizeMiB << 20, "boot log")
        }
        return nil
    }

    /// The profile's expectations and its steps' checks against `o`. `messages` is the kernel log the `dmesg`
    /// expectations search: /dev/kmsg messages, or console lines without their timestamps.
    public static func checks(_ p: Profile, _ o: Observations, messages text: [String]) -> [CheckResult] {
        var out: [CheckResult] = []
        let e = p.expect
        func add(_ name: String, _ expected: String, _ observed: String, _ ok: Bool) {
            out.append(CheckResult(name: name, expected: expected, observed: observed, passed: ok))
        }
        let observed = outcome(o)
        if let want = e.outcome {
            add("outcome", want.rawValue, observed?.rawValue ?? "unknown (\(o.ending.rawValue))", observed == want)
        }
        if let text = e.crashContains {
            let seen = [o.crash?.headline, o.crash?.panicLine].compactMap { $0 }
            add("crash", "panic or oops containing `\(text)`", o.crash?.summary ?? "no crash", seen.contains { $0.contains(text) })
        }
        let areaNames = o.areas.isEmpty ? o.boot.reserved.map { _ in "reserved" } : o.areas.map(\.name)
        if let n = e.areaCount {
            add("areas", "\(n)", "\(areaNames.count)\(areaNames.isEmpty ? "" : " (\(areaNames.joined(separator: ", ")))")", areaNames.count == n)
        }
        if let names = e.areaNames {
            add("area-names", names.sorted().joined(separator: ", "), areaNames.sorted().joined(separator: ", "), names.sorted() == areaNames.sorted())
        }
        let area = mainArea(o)
        if let size = e.size {
            add("size", size.description, area.map { "\(ByteSize(bytes: $0.size)) (\($0.source))" } ?? "no area", area.map { size.accepts($0.size) } ?? false)
        }
        if e.baseExact != nil || e.baseMin != nil || e.baseMax != nil {
            var want: [String] = []
            if let x = e.baseExact { want.append(hex(x)) }
            if let lo = e.baseMin { want.append(">= \(hex(lo))") }
            if let hi = e.baseMax { want.append("<= \(hex(hi))") }
            let ok = area.map { a in
                (e.baseExact.map { a.base == $0 } ?? true) && (e.baseMin.map { a.base >= $0 } ?? true) && (e.baseMax.map { a.base <= $0 } ?? true)
            } ?? false
            add("base", want.joined(separator: " and "), area.map { hex($0.base) } ?? "no area", ok)
        }
        if let w = e.within {
            let ok = area.map { $0.base >= w.lo && $0.base + $0.size <= w.hi } ?? false
            add("within", "[\(hex(w.lo)), \(hex(w.hi)))", area.map { "[\(hex($0.base)), \(hex($0.base + $0.size)))" } ?? "no area", ok)
        }
        if let nodes = e.areaNodes {
            for name in nodes.keys.sorted() {
                let a = o.areas.first { $0.name == name }
                let node = a.flatMap { a in a.node ?? a.basePFN.flatMap { o.boot.node(of: $0 << 12) } }
                let seen = a == nil ? "no area \(name)" : node.map { "node \($0)" }
                    ?? (o.boot.nodeMemory.isEmpty ? "unknown (no `ACPI: SRAT: Node` lines in the log)" : "unknown (base outside every node)")
                add("nodes.\(name)", "node \(nodes[name]!)", seen, node == nodes[name])
            }
        }
        let boot = o.meminfo.first
        if let t = e.cmaTotal {
            let v = boot?.cmaTotalKiB.map { $0 * 1024 }
            add("cma-total", t.description, v.map { kib($0) } ?? "no CmaTotal", v.map { t.accepts($0) } ?? false)
        }
        if let f = e.cmaFree {
            let v = boot?.cmaFreeKiB.map { $0 * 1024 }
            add("cma-free", f.description, v.map { kib($0) } ?? "no CmaFree", v.map { f.accepts($0) } ?? false)
        }
        if let r = e.memoryCmaReserved {
            let v = o.boot.memoryCmaReservedKiB.map { $0 * 1024 }
            add("memory-cma-reserved", r.description, v.map { kib($0) } ?? "no Memory: line", v.map { r.accepts($0) } ?? false)
        }
        for s in e.dmesgContains {
            let hit = text.first { $0.contains(s) }
            add("dmesg.contains", s, hit ?? "not found", hit != nil)
        }
        for s in e.dmesgAbsent {
            let hit = text.first { $0.contains(s) }
            add("dmesg.absent", "no line containing `\(s)`", hit ?? "absent", hit == nil)
        }
        for pattern in e.dmesgMatches {
            let hit = (try? Regex(pattern)).flatMap { r in text.first { $0.firstMatch(of: r) != nil } }
            add("dmesg.matches", pattern, hit ?? "no match", hit != nil)
        }
        for pattern in e.dmesgNotMatches {
            let hit = (try? Regex(pattern)).flatMap { r in text.first { $0.firstMatch(of: r) != nil } }
            add("dmesg.not-matches", "no line matching `\(pattern)`", hit ?? "no match", hit == nil)
        }
        out += stepChecks(p, o)
        return out
    }

    /// Each step's checks (by its kind, Steps/), or why it has none.
    static func stepChecks(_ p: Profile, _ o: Observations) -> [CheckResult] {
        var out: [CheckResult] = []
        let cmaTotal = (o.meminfo.first?.cmaTotalKiB ?? 0) * 1024
        let bootFree = o.meminfo.first?.cmaFreeKiB.map { $0 * 1024 }
        for (i, step) in p.steps.enumerated() {
            let name = "steps[\(i)].\(step.kind)"
            if let skip = o.skippedSteps?.first(where: { $0.index == i }) {
                out.append(CheckResult(name: name, expected: "run", observed: "skipped: \(skip.reason)", passed: true, skipped: true))
                continue
            }
            guard let r = o.steps.first(where: { $0.index == i }) else {
                out.append(CheckResult(name: name, expected: "run", observed: "not run (\(o.ending.rawValue))", passed: false))
                continue
            }
            out += step.checks(r, StepCheckContext(name: name, cmaTotal: cmaTotal, bootFree: bootFree))
        }
        return out
    }

    public static func verdictKind(_ checks: [CheckResult]) -> VerdictKind {
        checks.allSatisfy(\.passed) ? .pass : .fail
    }

    /// `min 1.2 s, median 1.5 s, max 2.0 s` (or one value).
    public static func latencySummary(_ ns: [UInt64]) -> String {
        guard !ns.isEmpty else { return "not measured" }
        let s = ns.sorted().map { Double($0) / 1e9 }
        if s.count == 1 { return seconds(s[0]) }
        return "min \(seconds(s.first!)), median \(seconds(median(s)!)), max \(seconds(s.last!))"
    }

    static func seconds(_ x: Double) -> String {
        x < 1 ? "\(Int((x * 1000).rounded())) ms" : "\(Double(Int((x * 100).rounded())) / 100) s"
    }

    static func kib(_ bytes: UInt64) -> String { "\(bytes / 1024) kB" }
    static func signedSize(_ bytes: Int64) -> String { bytes < 0 ? "-\(kib(UInt64(-bytes)))" : kib(UInt64(bytes)) }

    static func errnoName(_ e: Int32) -> String {
        switch e {
        case 12: return "ENOMEM"
        case 22: return "EINVAL"
        case 2: return "ENOENT"
        case 16: return "EBUSY"
        case 1: return "EPERM"
        case 13: return "EACCES"
        default: return "errno \(e)"
        }
    }
}
