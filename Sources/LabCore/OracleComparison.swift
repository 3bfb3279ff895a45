/// The oracle against a run: a prediction compared with what the kernel did, and the oracle's lines in the
/// terminal table.

extension Oracle {
    // MARK: - Prediction vs observation

    /// Compares a prediction with what a run saw. Nil when the run did not get far enough to say (no boot log).
    public static func compare(_ p: CMAPrediction, with o: Observations) -> OracleCheck? {
        guard o.ending == .poweredOff || o.ending == .kernelCrash || !o.meminfo.isEmpty else { return nil }
        var diffs: [String] = []
        let observed = Evaluate.outcome(o)
        let wanted: Outcome = switch p.outcome {
        case .reserved: .reserved
        case .failed: .failed
        case .kernelCrash: .kernelCrash
        case .none: .none
        case .ignored: p.observableOutcome
        }
        if observed != wanted { diffs.append("outcome: predicted \(wanted.rawValue), observed \(observed?.rawValue ?? "unknown (\(o.ending.rawValue))")") }
        diffs += compareNodeAreas(p, with: o)
        diffs += compareDevices(p, with: o)
        diffs += compareDeviceTree(p, with: o)
        if let a = p.area, let r = o.boot.reserved[safe: globalLineIndex(p)] {
            if r.sizeMiB != a.sizeMiB { diffs.append("size: predicted \(a.sizeMiB) MiB, observed \(r.sizeMiB) MiB") }
            if r.base < a.baseMin || r.base > a.baseMax {
                diffs.append("base: predicted \(a.exact ? hex(a.baseMin) : "[\(hex(a.baseMin)), \(hex(a.baseMax))]"), observed \(hex(r.base))")
            }
            if let n = a.node, let seen = r.node, n != seen { diffs.append("node: predicted \(n), observed \(seen)") }
        } else if p.area != nil, wanted == observed, observed == .reserved || observed == .kernelCrash {
            diffs.append("no `cma: Reserved` line was seen")
        }
        if p.outcome == .failed, observed == .failed, let f = p.failure {
            let seen = failureKind(o.boot.failureReasons)
            let same = seen == f || (seen == nil && (f == .busy || f == .noRoom))
            if !same { diffs.append("failure: predicted \(f.rawValue), observed \(seen?.rawValue ?? "only `Failed to reserve`")") }
        }
        // Exact lines the kernel should have printed.
        let lines = Set(o.boot.cmaLines)
        for m in p.messages where m.hasPrefix("cma: ") && !lines.contains(m) {
            diffs.append("missing line `\(m)`")
        }
        // Unknown parameters of the cma= family.
        let family = Set(["cma", "cma_pernuma", "numa_cma", "hugetlb_cma"])
        func key(_ s: String) -> String { String(s.prefix { $0 != "=" }) }
        let seenUnknown = Set(o.boot.unknownParameters.filter { family.contains(key($0)) })
        let predictedUnknown = Set(p.unknownParameters)
        if o.boot.commandLine != nil, seenUnknown != predictedUnknown {
            diffs.append("unknown parameters: predicted \(predictedUnknown.sorted()), observed \(seenUnknown.sorted())")
        }
        if let want = p.ramdisk, let seen = o.boot.ramdisk, want != seen {
            diffs.append("initrd: assumed at [\(hex(want.start))-\(hex(want.end))], observed [\(hex(seen.start))-\(hex(seen.end))]")
        }
        return OracleCheck(prediction: p, agrees: diffs.isEmpty, divergence: diffs.isEmpty ? nil : diffs.joined(separator: "; "))
    }

    /// The kind of the reason line before a failure, from the boot log's reason lines.
    static func failureKind(_ reasons: [String]) -> PredictedFailure? {
        for r in reasons {
            if r.contains("must be aligned") { return .mustBeAligned }
            if r.contains("low/high memory boundary") { return .lowHighBoundary }
            if r.contains("exceeds limit") { return .exceedsLimit }
            if r.contains("Not enough slots") { return .notEnoughSlots }
        }
        return nil
    }
}

extension Report {
    /// The oracle's part of the terminal table: `oracle: N of M predictions held`, then one line per divergence,
    /// then a blank line. Nothing when no verdict carries an oracle check.
    public static func oracleLines(_ verdicts: [Verdict]) -> [String] {
        let checked = verdicts.filter { $0.oracle != nil }
        guard !checked.isEmpty else { return [] }
        let diverged = checked.filter { $0.oracle?.agrees == false }
        var out = ["oracle: \(checked.count - diverged.count) of \(checked.count) predictions held"
            + (diverged.isEmpty ? "" : "; \(diverged.count) diverged (a kernel behaviour change or a gap in the oracle; not a profile failure)")]
        for v in diverged {
            guard let o = v.oracle else { continue }
            out.append("  DIVERGED  \(oneLine(v.key)): predicted \(oneLine(o.prediction.summary)); \(oneLine(o.divergence ?? ""))")
        }
        out.append("")
        return out
    }
}
