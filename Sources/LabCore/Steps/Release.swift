/// `release`: end every pressure (Pressure.swift): stop the holders, delete the tmpfs files.

/// A `release` step; it has no settings.
public struct ReleaseStep: StepModel {
    public init() {}

    public static let kind = StepKind.release
    public static let usesCMADebugfs = false

    /// `- release` alone: it takes no settings.
    static let syntax = Step.settingless(.release, message: "release takes no settings: write `- release`")

    /// Stops every pressure holder (pid files in /tmp), waits until each is gone or a zombie (its memory is
    /// freed either way), and deletes the tmpfs fill files.
    public static let guestScript = """
        for f in /tmp/cmalab-pressure-*.pid; do
          [ -e "$f" ] || continue
          p=$(cat "$f"); kill "$p" 2>/dev/null
          while [ -e /proc/$p ] && ! grep -q '^State:.Z' /proc/$p/status 2>/dev/null; do sleep 0.1; done
        done
        rm -f /tmp/cmalab-pressure-*
        """

    public func checks(_ r: ReleaseStepResult, _ c: StepCheckContext) -> [CheckResult] {
        [CheckResult(name: c.name, expected: "pressure released", observed: r.status == 0 ? "released" : "status \(r.status)", passed: r.status == 0)]
    }
}

/// What a release step did: the script's exit status and meminfo afterwards.
public struct ReleaseStepResult: StepResult, Equatable {
    public var status: Int32
    public var after: MeminfoSnapshot?
    public init(status: Int32, after: MeminfoSnapshot?) { self.status = status; self.after = after }
    public init(_ r: StepRecord) { self.init(status: r.status, after: r.after) }
    public func fill(_ r: inout StepRecord) { r.after = after }
}
