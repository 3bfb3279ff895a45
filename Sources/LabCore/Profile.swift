/// A lab profile (`Profiles/*.yaml`): a machine, an image, a kernel command line, and the CMA outcome
/// they should have. See Profiles/README.md for the format.

public enum Outcome: String, Codable, Sendable, CaseIterable {
    /// At least one CMA area was reserved.
    case reserved
    /// The kernel printed `cma: Failed to reserve ...` and reserved nothing.
    case failed
    /// CMA is built in, but no area was asked for (no `cma=` with CMA_SIZE_MBYTES=0, or `cma=0`).
    case none
    /// The kernel has no CONFIG_CMA (no Cma lines in meminfo).
    case notSupported = "not-supported"
    /// The kernel panicked or oopsed.
    case kernelCrash = "kernel-crash"
}

/// A value with a tolerance: exact, `±N%`, or `±bytes`.
public struct Approximate: Equatable, Sendable, CustomStringConvertible {
    public enum Tolerance: Equatable, Sendable { case percent(Double), bytes(UInt64) }
    public var bytes: UInt64
    public var tolerance: Tolerance

    public init(bytes: UInt64, tolerance: Tolerance = .bytes(0)) { self.bytes = bytes; self.tolerance = tolerance }

    public func allowedDeviation(relativeTo reference: UInt64? = nil) -> UInt64 {
        switch tolerance {
        case .bytes(let b): return b
        case .percent(let p): return UInt64((Double(reference ?? bytes) * p / 100).rounded())
        }
    }

    public func accepts(_ observed: UInt64, reference: UInt64? = nil) -> Bool {
        let d = observed > bytes ? observed - bytes : bytes - observed
        return d <= allowedDeviation(relativeTo: reference)
    }

    public var description: String {
        let value = ByteSize(bytes: bytes).description
        switch tolerance {
        case .bytes(0): return value
        case .bytes(let b): return "\(value) ±\(ByteSize(bytes: b))"
        case .percent(let p): return "\(value) ±\(p.formatted1)%"
        }
    }
}

public struct Expectations: Equatable, Sendable {
    public var outcome: Outcome?
    public var areaCount: Int?
    public var areaNames: [String]?
    /// The size of the global (`reserved`) area, or of the only area.
    public var size: Approximate?
    /// The base of that area: exact, or a [min, max] range for the base itself.
    public var baseExact: UInt64?
    public var baseMin: UInt64?
    public var baseMax: UInt64?
    /// The whole area [base, base+size) must lie inside [lo, hi).
    public var within: (lo: UInt64, hi: UInt64)?
    public var cmaTotal: Approximate?
    public var cmaFree: Approximate?
    public var memoryCmaReserved: Approximate?
    public var dmesgContains: [String] = []
    public var dmesgAbsent: [String] = []
    public var dmesgMatches: [String] = []
    public var dmesgNotMatches: [String] = []
    /// For kernel-crash: text the panic or oops line must contain.
    public var crashContains: String?
    /// `nodes: {numa0: 0, numa1: 1}`: the NUMA node each named area must lie on (the SRAT node holding its base).
    public var areaNodes: [String: Int]?

    public init() {}

    public static func == (a: Expectations, b: Expectations) -> Bool {
        a.outcome == b.outcome && a.areaCount == b.areaCount && a.areaNames == b.areaNames && a.size == b.size
            && a.baseExact == b.baseExact && a.baseMin == b.baseMin && a.baseMax == b.baseMax
            && a.within?.lo == b.within?.lo && a.within?.hi == b.within?.hi && a.cmaTotal == b.cmaTotal
            && a.cmaFree == b.cmaFree && a.memoryCmaReserved == b.memoryCmaReserved && a.dmesgContains == b.dmesgContains
            && a.dmesgAbsent == b.dmesgAbsent && a.dmesgMatches == b.dmesgMatches && a.dmesgNotMatches == b.dmesgNotMatches
            && a.crashContains == b.crashContains && a.areaNodes == b.areaNodes
    }
}

public struct Profile: Equatable, Sendable {
    public var name: String
    public var summary: String
    public var file: String
    /// An image name from Images/ (nil: the default image).
    public var image: String?
    public var machine: MachineSpec
    public var commandLine: KernelCommandLine
    public var timeout: Double
    public var expect: Expectations
    public var steps: [Step]
    /// `device-tree:`: reserved-memory nodes added to the arm64 guest's device tree (empty: QEMU's tree as it is).
    public var deviceTree = DeviceTree()
    /// What the kernel will silently do with this command line (from the `cma=` grammar).
    public var warnings: [String]

    /// The image this profile runs on: its own, else its architecture's default (`cma-6.12`, `cma-6.12-arm64`).
    public var imageName: String { image ?? machine.architecture.defaultImage }

    /// The parsed `cma=` request (the last one wins, as in the kernel).
    public var cmaRequest: CMARequest? {
        commandLine.value(of: "cma").flatMap { try? CMARequest.parse($0) }
    }

    /// Kernel options the profile cannot run without, with the reason. Preflight refuses the profile on an
    /// image without them.
    public var requiredConfig: [(option: String, reason: String)] {
        var out: [(String, String)] = []
        let wantsAreas = expect.areaNames != nil || expect.areaCount.map { $0 > 0 } == true || expect.outcome == .reserved
        if wantsAreas || !debugfsSteps.isEmpty, expect.outcome != .notSupported, expect.outcome != .kernelCrash {
            out.append(("CMA", debugfsSteps.isEmpty ? "it expects CMA areas" : "its alloc/free steps need CMA areas"))
        }
        return out
    }

    /// The steps whose kernel options (`StepModel.requirements`) `isEnabled` says are missing, each with the
    /// reason it is skipped.
    public func unmetRequirements(image: String, isEnabled: (String) -> Bool) -> [SkippedStep] {
        steps.indices.compactMap { i in
            steps[i].requirements.first { !isEnabled($0.option) }.map {
                SkippedStep(index: i, reason: "image \(image) has no CONFIG_\($0.option) (\($0.reason))")
            }
        }
    }

    /// The indices of the steps that drive `/sys/kernel/debug/cma/<area>/{alloc,free}`. On an image without
    /// CONFIG_CMA_DEBUGFS they are skipped (and the verdict says so); the rest of the profile still runs.
    public var debugfsSteps: [Int] {
        steps.indices.filter { steps[$0].usesCMADebugfs }
    }

    static let topKeys = ["name", "description", "image", "machine", "device-tree", "cmdline", "timeout", "expect", "steps"]

    public static func parse(_ text: String, file: String) throws(InputError) -> Profile {
        let root = try YAMLValue.parse(text, file: file)
        let m = try root.mapping(allowed: topKeys)
        let nameValue = try m.required("name")
        let name = try nameValue.string()
        guard ImageDefinition.isValidName(name) else {
            throw nameValue.error("profile names use letters, digits, `.`, `_` and `-` only, found `\(name)`")
        }
        var profile = Profile(name: name, summary: try m["description"]?.string() ?? "", file: file, image: nil,
                              machine: MachineSpec(memory: .gib(4)), commandLine: KernelCommandLine(), timeout: 120,
                              expect: Expectations(), steps: [], warnings: [])
        if let image = m["image"] { profile.image = try image.string() }
        if let machine = m["machine"] { profile.machine = try parseMachine(machine) }
        if let t = m["timeout"] {
            profile.timeout = try t.double()
            guard profile.timeout > 0, profile.timeout <= 3600 else { throw t.error("timeout must be between 1 and 3600 seconds") }
        }
        if let c = m["cmdline"] {
            profile.commandLine = try parseCommandLine(c)
            // What the kernel silently does with cma= (all of them folded, as the kernel does) and its family.
            profile.warnings += CMACommandLine(profile.commandLine).warnings
            for p in profile.commandLine.parameters {
                guard let name = CMAFamilyParameter.Name(rawValue: p.key), let value = p.value else { continue }
                let parsed = CMAFamilyParameter.parse(name, value)
                profile.warnings += parsed.warnings + parsed.versionNotes
            }
        }
        if let d = m["device-tree"] {
            profile.deviceTree = try DeviceTree.parse(d)
            guard profile.machine.type == .virt else {
                throw d.error("`device-tree:` is for arm64 guests, whose memory comes from a device tree; add `machine: {arch: arm64}`")
            }
        }
        if let e = m["expect"] { profile.expect = try parseExpectations(e) }
        if let s = m["steps"] { profile.steps = try s.sequence().map { v throws(InputError) in try Step.parse(v) } }
        return profile
    }

    static func parseMachine(_ v: YAMLValue) throws(InputError) -> MachineSpec {
        let m = try v.mapping(allowed: ["arch", "memory", "cpus", "type", "numa", "cpu"])
        var spec = MachineSpec(memory: try m["memory"]?.size() ?? .gib(4))
        if let a = m["arch"] {
            let name = try a.string()
            guard let arch = Architecture.named(name) else {
                throw a.error("`\(name)` is not an architecture cmalab knows; use one of: \(Architecture.knownNames)")
            }
            spec.architecture = arch
            spec.type = arch.defaultMachineType
        }
        if let cpus = m["cpus"] { spec.cpus = try cpus.int(in: 1...64) }
        if let t = m["type"] {
            spec.type = try t.oneOf(MachineType.self)
            // `type: virt` alone says arm64.
            if m["arch"] == nil { spec.architecture = spec.type.architecture }
        }
        if let cpu = m["cpu"] { spec.cpuModel = try cpu.string() }
        if let numa = m["numa"] {
            spec.numaNodes = try numa.sequence().map { n throws(InputError) in try n.size() }
        }
        do { try QEMUPlan(machine: spec, kernel: "").validate() } catch { throw v.error(error.description) }
        return spec
    }

    static func parseApproximate(_ v: YAMLValue) throws(InputError) -> Approximate {
        if case .mapping = v.node {
            let m = try v.mapping(allowed: ["value", "tolerance"])
            var a = Approximate(bytes: try m.required("value").size().bytes)
            if let t = m["tolerance"] { a.tolerance = try parseTolerance(t) }
            return a
        }
        return Approximate(bytes: try v.size().bytes)
    }

    /// `30s`, `1.5s`, `500ms`, or a plain number of seconds.
    static func parseSeconds(_ v: YAMLValue) throws(InputError) -> Double {
        let s = try v.string()
        var value: Double?
        if s.hasSuffix("ms") { value = Double(s.dropLast(2)).map { $0 / 1000 } }
        else if s.hasSuffix("s") { value = Double(s.dropLast()) }
        else { value = Double(s) }
        guard let value, value > 0, value <= 3600 else { throw v.error("a duration is like 30s, 1.5s or 500ms (up to 3600s), found `\(s)`") }
        return value
    }

    static func parseTolerance(_ v: YAMLValue) throws(InputError) -> Approximate.Tolerance {
        let s = try v.string()
        if s.hasSuffix("%") {
            guard let p = Double(s.dropLast()), p >= 0, p <= 100 else { throw v.error("a percentage tolerance is 0% to 100%, found `\(s)`") }
            return .percent(p)
        }
        return .bytes(try v.size().bytes)
    }

    /// The keys of `expect:`.
    public static let expectationKeys = ["outcome", "areas", "area-names", "size", "base", "within", "cma-total", "cma-free",
                                         "memory-cma-reserved", "dmesg", "crash", "nodes"]

    static func parseExpectations(_ v: YAMLValue) throws(InputError) -> Expectations {
        let m = try v.mapping(allowed: expectationKeys)
        var e = Expectations()
        if let o = m["outcome"] { e.outcome = try o.oneOf(Outcome.self) }
        if let a = m["areas"] { e.areaCount = try a.int(in: 0...64) }
        if let n = m["area-names"] { e.areaNames = try n.sequence().map { x throws(InputError) in try x.string() } }
        if let s = m["size"] { e.size = try parseApproximate(s) }
        if let b = m["base"] {
            if case .mapping = b.node {
                let bm = try b.mapping(allowed: ["min", "max"])
                e.baseMin = try bm["min"]?.size().bytes
                e.baseMax = try bm["max"]?.size().bytes
                if e.baseMin == nil && e.baseMax == nil { throw b.error("give `min`, `max` or both") }
                if let lo = e.baseMin, let hi = e.baseMax, lo > hi { throw b.error("min is above max") }
            } else {
                e.baseExact = try b.size().bytes
            }
        }
        if let w = m["within"] {
            let pair = try w.sequence()
            guard pair.count == 2 else { throw w.error("within is a list of two addresses: [low, high]") }
            let lo = try pair[0].size().bytes, hi = try pair[1].size().bytes
            guard lo < hi else { throw w.error("the low end must be below the high end") }
            e.within = (lo, hi)
        }
        if let t = m["cma-total"] { e.cmaTotal = try parseApproximate(t) }
        if let f = m["cma-free"] { e.cmaFree = try parseApproximate(f) }
        if let r = m["memory-cma-reserved"] { e.memoryCmaReserved = try parseApproximate(r) }
        if let d = m["dmesg"] {
            let dm = try d.mapping(allowed: ["contains", "absent", "matches", "not-matches"])
            func strings(_ key: String) throws(InputError) -> [String] {
                try (dm[key]?.sequenceOrSingle() ?? []).map { x throws(InputError) in try x.string() }
            }
            e.dmesgContains = try strings("contains")
            e.dmesgAbsent = try strings("absent")
            e.dmesgMatches = try strings("matches")
            e.dmesgNotMatches = try strings("not-matches")
            for (key, list) in [("matches", e.dmesgMatches), ("not-matches", e.dmesgNotMatches)] {
                for (i, pattern) in list.enumerated() {
                    do { _ = try Regex(pattern) } catch {
                        let at = (try dm[key]?.sequenceOrSingle())?[safe: i] ?? d
                        throw at.error("not a valid regular expression: \(error)")
                    }
                }
            }
        }
        if let c = m["crash"] { e.crashContains = try c.string() }
        if let n = m["nodes"] { e.areaNodes = try parseAreaNodes(n) }
        return e
    }

    /// `nodes: {numa0: 0, numa1: 1}`: area name → NUMA node.
    static func parseAreaNodes(_ v: YAMLValue) throws(InputError) -> [String: Int] {
        guard case .mapping(let m) = v.node, !m.isEmpty else {
            throw v.error("expected a mapping from area name to NUMA node, like {numa0: 0, numa1: 1}")
        }
        var out: [String: Int] = [:]
        for (k, value) in m {
            guard case .scalar(let ks) = k, ImageDefinition.isValidName(ks.string) else {
                throw InputError(file: v.file, line: k.mark?.line, column: k.mark?.column, path: v.path,
                                 message: "area names use letters, digits, `.`, `_` and `-` only")
            }
            let node = try v.child(value, key: ks.string).int(in: 0...63)
            guard out.updateValue(node, forKey: ks.string) == nil else {
                throw InputError(file: v.file, line: k.mark?.line, column: k.mark?.column, path: v.path, message: "area `\(ks.string)` is given twice")
            }
        }
        return out
    }
}

extension Array {
    subscript(safe i: Int) -> Element? { indices.contains(i) ? self[i] : nil }
}

extension Double {
    var formatted1: String {
        let r = (self * 10).rounded() / 10
        return r == r.rounded() ? String(Int(r)) : String(r)
    }
}

/// `cmdline:`, refused when a parameter holds a control character (a newline inside quotes, a CR, a NUL...).
func parseCommandLine(_ c: YAMLValue) throws(InputError) -> KernelCommandLine {
    let line = KernelCommandLine(parsing: try c.string())
    if let (key, scalar) = line.controlCharacter {
        let code = "U+" + String(scalar.value, radix: 16, uppercase: true).leftPadded(to: 4)
        throw c.error("parameter `\(key)` holds the control character \(code); a kernel command line is printable text: remove it, or separate parameters with spaces")
    }
    return line
}

extension String {
    fileprivate func leftPadded(to width: Int) -> String { String(repeating: "0", count: max(0, width - count)) + self }
}
