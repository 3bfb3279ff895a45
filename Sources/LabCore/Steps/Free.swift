/// `free`: give pages back to a CMA area through debugfs (`/sys/kernel/debug/cma/<area>/free`), then check
/// `used` and that CmaFree comes back.

/// A `free` step.
public struct FreeStep: StepModel {
    public var area: String
    public var pages: UInt64
    /// How far below its boot value CmaFree may stay (default `Step.defaultFreeTolerance`).
    public var tolerance: Approximate.Tolerance
    public init(area: String, pages: UInt64, tolerance: Approximate.Tolerance) {
        self.area = area; self.pages = pages; self.tolerance = tolerance
    }

    public static let kind = StepKind.free
    public static let usesCMADebugfs = true

    /// `free: {area, pages, tolerance}`.
    static func parse(_ body: YAMLValue) throws(InputError) -> Step {
        let f = try body.mapping(allowed: ["area", "pages", "tolerance"])
        let pages = try f.required("pages", hint: "how many pages to give back").uint64()
        // Freed pages can sit on per-CPU free lists or be borrowed by movable allocations at once, so
        // CmaFree comes back only approximately (4-17 MiB short was seen on 6.12); `used` is exact.
        let tol = try f["tolerance"].map { t throws(InputError) in try Profile.parseTolerance(t) } ?? Step.defaultFreeTolerance
        return .free(FreeStep(area: try parseArea(f["area"]), pages: pages, tolerance: tol))
    }

    public func checks(_ r: CMAWriteResult, _ c: StepCheckContext) -> [CheckResult] {
        var out: [CheckResult] = []
        let usedBefore = r.areaBefore?.used ?? 0
        let want = usedBefore >= pages ? usedBefore - pages : 0
        out.append(CheckResult(name: "\(c.name).used", expected: "\(want)", observed: r.areaAfter?.used.map(String.init) ?? "unknown",
                               passed: r.areaAfter?.used == want))
        if let bootFree = c.bootFree, let after = r.after?.cmaFreeKiB {
            let a = Approximate(bytes: bootFree, tolerance: tolerance)
            out.append(CheckResult(name: "\(c.name).cma-free-restored", expected: "\(Evaluate.kib(bootFree)) ±\(Evaluate.kib(a.allowedDeviation(relativeTo: c.cmaTotal)))",
                                   observed: Evaluate.kib(after * 1024), passed: a.accepts(after * 1024, reference: c.cmaTotal)))
        }
        return out
    }
}

extension Step {
    /// How far below its earlier value CmaFree may stay after a `free` step unless the profile says.
    public static let defaultFreeTolerance = Approximate.Tolerance.bytes(32 << 20)

    /// A free step.
    public static func free(area: String, pages: UInt64, tolerance: Approximate.Tolerance) -> Step {
        .free(FreeStep(area: area, pages: pages, tolerance: tolerance))
    }
}
