/// `alloc`: allocate pages from a CMA area through debugfs (`/sys/kernel/debug/cma/<area>/alloc`), then check
/// the result, the `used` delta and the CmaFree drop. With `pages: all`, `repeat`, `max-latency` or
/// `min-migrated` the step is a measured alloc instead (MeasuredAlloc.swift).

/// A plain `alloc` step.
public struct AllocStep: StepModel {
    public var area: String
    public var pages: UInt64
    public var expectSuccess: Bool
    /// How far the CmaFree drop may be from the allocated bytes (default 1 %).
    public var tolerance: Approximate.Tolerance
    public init(area: String, pages: UInt64, expectSuccess: Bool, tolerance: Approximate.Tolerance) {
        self.area = area; self.pages = pages; self.expectSuccess = expectSuccess; self.tolerance = tolerance
    }

    public static let kind = StepKind.alloc
    public static let usesCMADebugfs = true

    /// The keys of `alloc:`, plain and measured.
    static let keys = ["area", "pages", "expect", "tolerance"] + MeasuredAlloc.measuredKeys

    /// `alloc: {area, pages, expect, tolerance}`, or a measured alloc.
    static func parse(_ body: YAMLValue) throws(InputError) -> Step {
        let a = try body.mapping(allowed: keys)
        if MeasuredAlloc.isMeasured(a) { return .measuredAlloc(try MeasuredAlloc.parse(a, body: body)) }
        let pages = try a.required("pages", hint: "how many 4 KiB pages to allocate").uint64()
        let success = try parseExpect(a["expect"])
        let tol = try a["tolerance"].map { t throws(InputError) in try Profile.parseTolerance(t) } ?? .percent(1)
        return .alloc(AllocStep(area: try parseArea(a["area"]), pages: pages, expectSuccess: success, tolerance: tol))
    }

    /// `expect: success` (also when absent) or `expect: failure`.
    static func parseExpect(_ x: YAMLValue?) throws(InputError) -> Bool {
        guard let x else { return true }
        switch try x.string() {
        case "success": return true
        case "failure": return false
        default: throw x.error("expect is `success` or `failure`")
        }
    }

    /// `kib` KiB in bytes, clamped to 0...Int64.max: meminfo is the guest's word, and a difference of two
    /// clamped values cannot overflow.
    static func clampedBytes(kib: UInt64) -> Int64 {
        let (bytes, overflow) = kib.multipliedReportingOverflow(by: 1024)
        return overflow ? Int64.max : Int64(clamping: bytes)
    }

    public func checks(_ r: CMAWriteResult, _ c: StepCheckContext) -> [CheckResult] {
        var out: [CheckResult] = []
        let result = r.status == 0 ? "success" : "failure (\(Evaluate.errnoName(r.status)))"
        out.append(CheckResult(name: c.name, expected: expectSuccess ? "success" : "failure", observed: result, passed: (r.status == 0) == expectSuccess))
        // debugfs `used` is the guest's word: clamped, both sides are 0...Int64.max and the difference cannot overflow.
        let usedDelta = Int64(clamping: r.areaAfter?.used ?? 0) - Int64(clamping: r.areaBefore?.used ?? 0)
        let wantUsed = expectSuccess ? Int64(clamping: pages) : 0
        out.append(CheckResult(name: "\(c.name).used-delta", expected: "\(wantUsed)", observed: "\(usedDelta)", passed: usedDelta == wantUsed))
        if expectSuccess, let before = r.before?.cmaFreeKiB, let after = r.after?.cmaFreeKiB {
            let drop = Self.clampedBytes(kib: before) - Self.clampedBytes(kib: after)
            let want = Approximate(bytes: pages * 4096, tolerance: tolerance)
            out.append(CheckResult(name: "\(c.name).cma-free-drop", expected: want.description, observed: Evaluate.signedSize(drop),
                                   passed: drop >= 0 && want.accepts(UInt64(drop))))
        }
        return out
    }
}

extension Step {
    /// A plain alloc step.
    public static func alloc(area: String, pages: UInt64, expectSuccess: Bool, tolerance: Approximate.Tolerance) -> Step {
        .alloc(AllocStep(area: area, pages: pages, expectSuccess: expectSuccess, tolerance: tolerance))
    }
}

/// What a plain alloc or a free did: the errno of the debugfs write, meminfo and the area around it.
public struct CMAWriteResult: StepResult, Equatable {
    public var status: Int32
    public var before: MeminfoSnapshot?
    public var after: MeminfoSnapshot?
    /// nil when the area was not found.
    public var areaBefore: AreaSnapshot?
    public var areaAfter: AreaSnapshot?

    public init(status: Int32, before: MeminfoSnapshot?, after: MeminfoSnapshot?, areaBefore: AreaSnapshot?, areaAfter: AreaSnapshot?) {
        self.status = status; self.before = before; self.after = after; self.areaBefore = areaBefore; self.areaAfter = areaAfter
    }

    public init(_ r: StepRecord) {
        self.init(status: r.status, before: r.before, after: r.after, areaBefore: r.areaBefore, areaAfter: r.areaAfter)
    }

    public func fill(_ r: inout StepRecord) {
        r.before = before; r.after = after; r.areaBefore = areaBefore; r.areaAfter = areaAfter
    }
}
