/// `pressure`: fill guest memory with movable pages (anonymous memory a guest process holds, files in tmpfs,
/// or both) so the CMA areas lend theirs out; the memory stays held until `release` (Release.swift) or power-off.

/// How much memory a `pressure` step fills: bytes, or a share of free memory when the step starts:
/// of MemFree, or of the free memory outside the CMA areas (MemFree - CmaFree). A whole-area allocation
/// must move every lent page out of the area, so it can only succeed while the memory outside the area
/// has room for them: with 80 % of all of MemFree held, 6.12 fails it with ENOMEM (`page allocation
/// failure` for the migration target, seen on a 4 GiB guest with a 1 GiB area).
public enum PressureTarget: Equatable, Sendable, CustomStringConvertible {
    case bytes(UInt64)
    case percentOfFree(Double)
    case percentOfFreeOutsideCMA(Double)

    public func bytes(memFreeKiB: UInt64, cmaFreeKiB: UInt64) -> UInt64 {
        switch self {
        case .bytes(let b): return b
        case .percentOfFree(let p): return UInt64(Double(memFreeKiB) * 1024 * p / 100)
        case .percentOfFreeOutsideCMA(let p):
            return UInt64(Double(memFreeKiB > cmaFreeKiB ? memFreeKiB - cmaFreeKiB : 0) * 1024 * p / 100)
        }
    }

    public var description: String {
        switch self {
        case .bytes(let b): return ByteSize(bytes: b).description
        case .percentOfFree(let p): return "\(p.formatted1)% of MemFree"
        case .percentOfFreeOutsideCMA(let p): return "\(p.formatted1)% of MemFree outside CMA"
        }
    }
}

/// A `pressure` step: fill guest memory with movable pages so CMA areas lend theirs out.
public struct PressureStep: Equatable, Sendable {
    public enum Kind: String, Equatable, Sendable, CaseIterable {
        /// Anonymous memory a guest process maps and touches.
        case anon
        /// Files in tmpfs (page cache).
        case file
        /// Half of each.
        case mixed
    }
    public var target: PressureTarget
    public var kind: Kind = .anon
    /// Splice the anonymous pages into pipes (vmsplice): the pipes hold page references that migration cannot
    /// move, so CMA cannot take those pages back while they are held.
    public var pin = false
    /// mlock(2) the anonymous pages (they stay migratable: 6.12 moves mlocked pages out of CMA).
    public var mlock = false
    /// Pin the anonymous pages with FOLL_LONGTERM (`pin: longterm`), as RDMA, VFIO and io_uring buffers are:
    /// the kernel moves them out of CMA before pinning, so they never block a CMA allocation. Through
    /// gup_test's PIN_LONGTERM_TEST_START where the kernel has it (6.2 on), else cmalab's DMA test driver.
    public var longterm = false
    /// At least this much of the CMA areas must be lent out (CmaTotal - CmaFree - debugfs `used`).
    public var minInCMA: Approximate?
    public init(target: PressureTarget, kind: Kind = .anon, pin: Bool = false, minInCMA: Approximate? = nil) {
        self.target = target; self.kind = kind; self.pin = pin; self.minInCMA = minInCMA
    }
}

extension PressureStep: StepModel {
    public static let kind = StepKind.pressure
    public static let usesCMADebugfs = false
    public var usesTestDriver: Bool { longterm }
    public var requirements: [StepRequirement] {
        longterm ? [StepRequirement(option: "MODULES", reason: "long-term pins go through gup_test or cmalab's DMA test driver, a loadable module")] : []
    }

    /// `pressure: {size, of, kind, pin, mlock, min-in-cma}`.
    static func parse(_ body: YAMLValue) throws(InputError) -> Step {
        let p = try body.mapping(allowed: ["size", "of", "kind", "pin", "mlock", "min-in-cma"])
        var step = PressureStep(target: try parseTarget(p))
        if let k = p["kind"] { step.kind = try k.oneOf(PressureStep.Kind.self) }
        if let pin = p["pin"] {
            if (try? pin.string()) == "longterm" { step.longterm = true } else {
                do { step.pin = try pin.bool() } catch { throw pin.error("pin is true (vmsplice: references migration cannot move), false, or `longterm` (FOLL_LONGTERM: moved out of CMA first)") }
            }
        }
        if let l = p["mlock"] { step.mlock = try l.bool() }
        if (step.pin || step.mlock || step.longterm) && step.kind == .file { throw body.error("pin and mlock apply to anonymous memory: use kind anon or mixed") }
        if (step.pin || step.longterm) && step.mlock { throw body.error("give pin or mlock, not both") }
        if let x = p["min-in-cma"] { step.minInCMA = try Profile.parseApproximate(x) }
        return .pressure(step)
    }

    /// `size` (bytes, or a percentage with `of`).
    static func parseTarget(_ p: YAMLMapping) throws(InputError) -> PressureTarget {
        let sizeValue = try p.required("size", hint: "how much to fill: bytes (1G) or a share of MemFree (80%)")
        let text = try sizeValue.string()
        guard text.hasSuffix("%") else {
            if let of = p["of"] { throw of.error("`of` goes with a percentage size (e.g. size: 80%)") }
            return .bytes(try sizeValue.size().bytes)
        }
        guard let pct = Double(text.dropLast()), pct > 0, pct <= 95 else {
            throw sizeValue.error("a share of MemFree is above 0% and at most 95% (more starves the guest), found `\(text)`")
        }
        guard let of = p["of"] else { return .percentOfFree(pct) }
        switch try of.string() {
        case "free": return .percentOfFree(pct)
        case "free-outside-cma": return .percentOfFreeOutsideCMA(pct)
        default: throw of.error("`of` is `free` (MemFree) or `free-outside-cma` (MemFree - CmaFree)")
        }
    }

    public func checks(_ r: PressureStepResult, _ c: StepCheckContext) -> [CheckResult] {
        var out: [CheckResult] = []
        let held = r.heldBytes ?? 0
        out.append(CheckResult(name: c.name, expected: "hold \(target) of \(kind.rawValue) memory\(pinWords)",
                               observed: r.status == 0 ? "held \(ByteSize(bytes: held))" : "failed (status \(r.status))", passed: r.status == 0 && held > 0))
        if let want = minInCMA {
            let lent = (r.cmaLentPages ?? 0) * 4096
            out.append(CheckResult(name: "\(c.name).in-cma", expected: ">= \(want)", observed: "\(ByteSize(bytes: lent)) of CMA lent out",
                                   passed: lent + want.allowedDeviation(relativeTo: c.cmaTotal) >= want.bytes))
        }
        return out
    }

    // MARK: - In the guest

    /// How `target` bytes split between anonymous memory and tmpfs files (`mixed`: half each).
    public func split(_ target: UInt64) -> (anon: UInt64, file: UInt64) {
        let anon = kind == .file ? 0 : (kind == .mixed ? target / 2 : target)
        return (anon, target - anon)
    }

    /// The record's summary, e.g. `pressure 80% of MemFree (1.5 GiB) anon pinned`.
    public func summary(target bytes: UInt64) -> String {
        "pressure \(target) (\(ByteSize(bytes: bytes))) \(kind.rawValue)\(pinWords.split(separator: ",").joined())"
    }

    /// How the anonymous pages are held, for messages: `, pinned`, `, long-term pinned`, `, mlocked` or nothing.
    var pinWords: String { pin ? ", pinned" : longterm ? ", long-term pinned" : mlock ? ", mlocked" : "" }

    /// The guest shell script of step `index` that fills `target` bytes: whole MiB of tmpfs files written with dd,
    /// and anonymous memory held by `cmalab-agent hold-memory` in the background (its pid in
    /// /tmp/cmalab-pressure-<index>.pid, for release). It returns once the holder printed `held <bytes>`, and
    /// fails with the holder's output if the holder died first.
    public func guestScript(index: Int, target: UInt64) -> String {
        let (anon, file) = split(target)
        var script = "set -e\n"
        if file > 0 {
            // /tmp is a tmpfs limited to half of RAM by default: let it hold the fill.
            script += "mount -o remount,size=95% /tmp\ndd if=/dev/zero of=/tmp/cmalab-pressure-\(index).fill bs=1M count=\(file >> 20) 2>/dev/null\n"
        }
        if anon > 0 {
            let out = "/tmp/cmalab-pressure-\(index).out"
            script += "setsid /sbin/cmalab-agent hold-memory \(anon)\(pin ? " pin" : longterm ? " longterm" : mlock ? " mlock" : "") >\(out) 2>&1 </dev/null &\necho $! >/tmp/cmalab-pressure-\(index).pid\n"
            // Wait for the holder to have touched (and pinned) everything, or to have died.
            script += "while ! grep -q held \(out); do kill -0 $(cat /tmp/cmalab-pressure-\(index).pid) 2>/dev/null || { cat \(out); exit 1; }; sleep 0.2; done\ncat \(out)\n"
        }
        return script
    }

    /// What a successful guest script holds: the whole MiB written to files, plus the bytes of the holder's
    /// `held <bytes>` line.
    public func heldBytes(target: UInt64, output: String) -> UInt64 {
        var held = (split(target).file >> 20) << 20
        if let line = output.split(separator: "\n").first(where: { $0.hasPrefix("held ") }),
           let n = line.split(separator: " ").dropFirst().first.flatMap({ UInt64($0) }) { held += n }
        return held
    }

    /// CMA pages lent to movable allocations: CmaTotal - CmaFree (meminfo, KiB) minus the pages debugfs counts
    /// as allocated (`used`, summed over the areas); nil without CMA lines.
    public static func lentPages(_ meminfo: MeminfoSnapshot?, usedPages: UInt64) -> UInt64? {
        guard let total = meminfo?.cmaTotalKiB, let free = meminfo?.cmaFreeKiB, total >= free else { return nil }
        let busy = (total - free) / 4
        return busy > usedPages ? busy - usedPages : 0
    }
}

/// What a pressure step did.
public struct PressureStepResult: StepResult, Equatable {
    /// The guest script's exit status.
    public var status: Int32
    public var before: MeminfoSnapshot?
    public var after: MeminfoSnapshot?
    /// The script's output (stdout and stderr).
    public var output: String?
    /// The bytes asked for and the bytes the guest holds.
    public var pressureBytes: UInt64?
    public var heldBytes: UInt64?
    /// CMA pages lent to movable allocations after filling (`PressureStep.lentPages`), and /proc/vmstat nr_free_cma.
    public var cmaLentPages: UInt64?
    public var nrFreeCMA: UInt64?

    public init(status: Int32) { self.status = status }

    public init(_ r: StepRecord) {
        status = r.status; before = r.before; after = r.after; output = r.output
        pressureBytes = r.pressureBytes; heldBytes = r.heldBytes; cmaLentPages = r.cmaLentPages; nrFreeCMA = r.nrFreeCMA
    }

    public func fill(_ r: inout StepRecord) {
        r.before = before; r.after = after; r.output = output
        r.pressureBytes = pressureBytes; r.heldBytes = heldBytes; r.cmaLentPages = cmaLentPages; r.nrFreeCMA = nrFreeCMA
    }
}
