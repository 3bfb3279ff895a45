/// `exec`: run a command in the guest (busybox `sh -c`), then check its exit status and output.

/// An `exec` step.
public struct ExecStep: StepModel {
    public var command: String
    /// The exit status it must have; nil: any (`status: any`).
    public var status: Int32?
    /// A regular expression its output must match (line anchors: `^0$` matches "0\n").
    public var output: String?
    /// Seconds before the guest kills it.
    public var timeout: Double
    public init(command: String, status: Int32?, output: String?, timeout: Double) {
        self.command = command; self.status = status; self.output = output; self.timeout = timeout
    }

    public static let kind = StepKind.exec
    public static let usesCMADebugfs = false

    /// `exec: <command>`, or `exec: {command, status, output, timeout}`.
    static func parse(_ body: YAMLValue) throws(InputError) -> Step {
        if case .scalar = body.node { return .exec(command: try body.string(), status: 0, output: nil, timeout: 60) }
        let x = try body.mapping(allowed: ["command", "status", "output", "timeout"])
        let output = try x["output"]?.string()
        if let output, let ov = x["output"] {
            do { _ = try Regex(output) } catch { throw ov.error("not a valid regular expression: \(error)") }
        }
        // `status: any` reads as -1 here, and as nil (no check) in the step.
        let status: Int32? = try x["status"].map { s throws(InputError) in
            if (try? s.string()) == "any" { return -1 }
            return Int32(try s.int(in: 0...255))
        }
        return .exec(command: try x.required("command").string(), status: status == -1 ? nil : (status ?? 0), output: output,
                     timeout: try x["timeout"].map(parseTimeout) ?? 60)
    }

    /// The longest exec step timeout: one day.
    public static let maximumTimeout: Double = 86_400

    /// `timeout:` in seconds: a finite number in (0, 86400]; NaN, infinities, zero, negatives and huge
    /// values would trap or never end when the runner turns them into a deadline.
    static func parseTimeout(_ v: YAMLValue) throws(InputError) -> Double {
        let t = try v.double()
        guard t.isFinite, t > 0, t <= maximumTimeout else {
            throw v.error("timeout must be a finite number of seconds in (0, \(Int(maximumTimeout))], found `\(try v.string())`")
        }
        return t
    }

    public func checks(_ r: ExecStepResult, _ c: StepCheckContext) -> [CheckResult] {
        var out: [CheckResult] = []
        if let status {
            out.append(CheckResult(name: "\(c.name).status", expected: "\(status)", observed: "\(r.status)", passed: r.status == status))
        }
        if let output {
            let text = r.output ?? ""
            // Line anchors: `^0$` matches a command that printed "0\n".
            let ok = (try? Regex(output)).map { text.firstMatch(of: $0.anchorsMatchLineEndings()) != nil } ?? false
            out.append(CheckResult(name: "\(c.name).output", expected: "matches `\(output)`", observed: String(text.prefix(200)), passed: ok))
        }
        return out
    }
}

extension Step {
    /// An exec step.
    public static func exec(command: String, status: Int32?, output: String?, timeout: Double) -> Step {
        .exec(ExecStep(command: command, status: status, output: output, timeout: timeout))
    }
}

/// What an exec step did: the exit status (128 + signal, 124 on timeout, 127 when it could not start) and
/// its standard output.
public struct ExecStepResult: StepResult, Equatable {
    public var status: Int32
    public var output: String?
    public init(status: Int32, output: String?) { self.status = status; self.output = output }
    public init(_ r: StepRecord) { self.init(status: r.status, output: r.output) }
    public func fill(_ r: inout StepRecord) { r.output = output }
}
