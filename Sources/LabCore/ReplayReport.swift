/// What a replay found (`cmalab replay --json/--junit/--html`): the host's facts and map, the twin's plan and the
/// map its kernel used, each host CMA line against the twin's, each `--try`, and the oracle's prediction beside the
/// host's parameters and beside every try. Pure; the command fills it and writes the renderings.

/// What one set of CMA parameters did on the twin, with the oracle's prediction for it.
public struct ReplayOutcome: Codable, Equatable, Sendable {
    /// The CMA parameters booted (`cma=2G`), as one string.
    public var parameters: String
    public var reserved: [ReservedArea] = []
    public var failedMiB: [UInt64] = []
    public var failureReasons: [String] = []
    /// The device-tree CMA pools the twin created (`Reserved memory: created CMA memory pool at`), at the twin's
    /// addresses; nil on x86 and in files written before pools were kept.
    public var pools: [ReservedArea]?
    /// Where the initrd was (`RAMDISK:`).
    public var ramdisk: MemoryRange?
    /// The crash headline, when the kernel crashed.
    public var crash: String?
    /// Why the boot gave no answer (a lab error), when it gave none.
    public var error: String?
    /// The oracle's prediction for this twin and parameters, and whether the boot agreed (nil: no prediction).
    public var oracle: OracleCheck?
    /// The run's directory (console, dmesg, reproduce.sh).
    public var runDirectory: String?

    public init(parameters: String, observations o: Observations?, error: String?, oracle: OracleCheck?, runDirectory: String?) {
        self.parameters = parameters
        self.reserved = o?.boot.reserved ?? []
        self.failedMiB = o?.boot.failedMiB ?? []
        self.failureReasons = o?.boot.failureReasons ?? []
        let pools = o?.boot.deviceTree.pools ?? []
        self.pools = pools.isEmpty ? nil : pools
        self.ramdisk = o?.boot.ramdisk
        self.crash = o?.crash.map { $0.headline }
        self.error = o?.ending == .poweredOff || o?.crash != nil ? nil : error
        self.oracle = oracle
        self.runDirectory = runDirectory
    }

    /// `reserved 2048 MiB at 0x100000000`, `failed to reserve 512 MiB; <reason>`, `kernel crash: ...`.
    public var outcome: String {
        if let crash { return "kernel crash: \(crash)" }
        if let error { return "error: \(error)" }
        var parts = reserved.map { "reserved \($0.sizeMiB) MiB at \(hex($0.base))" + ($0.node.map { " (node \($0))" } ?? "") }
        parts += (pools ?? []).map { "pool \($0.sizeMiB) MiB at \(hex($0.base))" }
        parts += failedMiB.map { "failed to reserve \($0) MiB" }
        if let reason = failureReasons.first { parts.append(reason) }
        return parts.isEmpty ? "no area" : parts.joined(separator: "; ")
    }

    /// The oracle's one-line prediction and whether the twin agreed: `reserved ... (agrees)`, `... (differs: ...)`.
    public var predicted: String {
        guard let o = oracle else { return "no prediction" }
        return o.prediction.summary + (o.agrees ? " (agrees)" : " (differs: \(o.divergence ?? "?"))")
    }
}

/// The twin as planned and as booted.
public struct ReplayTwin: Codable, Equatable, Sendable {
    public var machine: MachineSpec
    public var lowMemory: UInt64
    public var parameters: [String]
    public var notes: [String]
    /// The map the twin's kernel worked from (its `user-defined physical RAM map`, or the plan's when the twin
    /// did not print one).
    public var map: [MemoryRange]
    public var kernel: String?
    /// An arm64 twin's reserved-memory nodes, as the device-tree source added to QEMU's tree; nil on x86.
    public var deviceTree: String?
    /// Where the board's addresses lie in an arm64 twin; nil on x86.
    public var window: AddressWindow?
    public init(_ p: TwinPlan, map: [MemoryRange]? = nil, kernel: String? = nil) {
        machine = p.machine; lowMemory = p.lowMemory; parameters = p.parameters; notes = p.notes
        self.map = map ?? p.map; self.kernel = kernel
        deviceTree = p.deviceTree.isEmpty ? nil : p.deviceTree.source
        window = p.window
    }
}

/// `replay --json`: schema `cmalab-replay/1`.
public struct ReplayResult: Codable, Equatable, Sendable {
    public var schema = "cmalab-replay/1"
    public var log: String
    public var host: HostFacts
    /// The map the host's kernel worked from (user-defined after memmap=, else the firmware's).
    public var hostMap: [MemoryRange]
    public var twin: ReplayTwin
    /// Every host CMA line against the twin's.
    public var lines: [ReplayLine]
    /// The host's own parameters on the twin, with the oracle's prediction.
    public var replay: ReplayOutcome
    /// Inputs that differ between host and twin and could explain a difference (only when a line differs).
    public var explanations: [String]
    public var tries: [ReplayOutcome]

    public init(log: String, host: HostFacts, twin: ReplayTwin, lines: [ReplayLine], replay: ReplayOutcome, explanations: [String], tries: [ReplayOutcome]) {
        self.log = log; self.host = host; self.hostMap = host.effectiveMap; self.twin = twin; self.lines = lines
        self.replay = replay; self.explanations = explanations; self.tries = tries
    }

    public var reproduced: Bool { lines.allSatisfy(\.reproduced) }
}

public enum ReplayReport {
    /// JUnit: one test case per host CMA line (a failure when the twin differs) and one per try (an error when the
    /// boot gave no answer, a failure when the oracle's prediction did not hold).
    public static func junit(_ r: ReplayResult) -> String {
        let failures = r.lines.filter { !$0.reproduced }.count + r.tries.filter { $0.error == nil && $0.oracle?.agrees == false }.count
        let errors = r.tries.filter { $0.error != nil }.count
        let name = Report.attr("replay " + r.log)
        var x = "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n"
        x += "<testsuites name=\"cmalab\" tests=\"\(r.lines.count + r.tries.count)\" failures=\"\(failures)\" errors=\"\(errors)\">\n"
        x += "  <testsuite name=\"\(name)\" tests=\"\(r.lines.count + r.tries.count)\" failures=\"\(failures)\" errors=\"\(errors)\" skipped=\"0\">\n"
        for l in r.lines {
            x += "    <testcase classname=\"cmalab.replay\" name=\"\(Report.attr(l.host))\">\n"
            if !l.reproduced {
                let text = (["twin: \(l.twin ?? "nothing")"] + l.differences + r.explanations.map { "could explain it: \($0)" }).joined(separator: "\n")
                x += "      <failure message=\"\(Report.attr(l.differences.joined(separator: "; ")))\" type=\"differs\">\(Report.text(text))</failure>\n"
            }
            x += "    </testcase>\n"
        }
        for t in r.tries {
            x += "    <testcase classname=\"cmalab.replay.try\" name=\"\(Report.attr(t.parameters))\">\n"
            if let e = t.error {
                x += "      <error message=\"\(Report.attr(e))\" type=\"lab-error\">\(Report.text(e))</error>\n"
            } else if t.oracle?.agrees == false {
                x += "      <failure message=\"\(Report.attr(t.predicted))\" type=\"oracle\">\(Report.text("observed: \(t.outcome)\npredicted: \(t.predicted)"))</failure>\n"
            }
            x += "      <system-out>\(Report.text("on this host: \(t.outcome)"))</system-out>\n"
            x += "    </testcase>\n"
        }
        x += "  </testsuite>\n</testsuites>\n"
        return x
    }

    /// The replay as one HTML page: the verdict per line, the tries with their predictions, and the host's map
    /// drawn above the twin's (same scale rules as `run --html`), each with its CMA areas.
    public static func html(_ r: ReplayResult) -> String {
        let esc = Report.text
        var h = "<!DOCTYPE html>\n<html xmlns=\"http://www.w3.org/1999/xhtml\" lang=\"en\">\n<head>\n<meta charset=\"utf-8\"/>\n"
        h += "<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\"/>\n"
        h += "<title>\(esc("cmalab replay of " + r.log))</title>\n<style>\n\(HTMLReport.css)</style>\n</head>\n<body>\n"
        h += "<header id=\"top\">\n<h1>\(esc("Replay of " + r.log))</h1>\n"
        h += "<p class=\"summary\"><span class=\"badge \(r.reproduced ? "pass" : "fail")\">\(r.reproduced ? "reproduced" : "differs")</span></p>\n"
        let hostKernel = r.host.boot.kernelRelease.map { "Linux " + $0 } ?? "kernel release unknown"
        let twinKernel = r.twin.kernel.map { "Linux " + $0 } ?? "?"
        let meta = "host: \(hostKernel) · twin: \(twinKernel) on \(r.twin.machine.summary)"
        h += "<p class=\"meta\">\(esc(meta))</p>\n</header>\n"

        h += "<section>\n<h2>CMA lines</h2>\n<table>\n<tr><th>host</th><th>twin</th><th>verdict</th></tr>\n"
        for l in r.lines {
            h += "<tr><td><code>\(esc(l.host))</code></td><td><code>\(esc(l.twin ?? "nothing"))</code></td>"
            h += "<td>\(l.reproduced ? "reproduced" : esc("differs: " + l.differences.joined(separator: "; ")))</td></tr>\n"
        }
        h += "</table>\n<p>oracle, host parameters on the twin: \(esc(r.replay.predicted))</p>\n"
        if !r.explanations.isEmpty {
            h += "<h3>Could explain a difference</h3>\n<ul>\n" + r.explanations.map { "<li>\(esc($0))</li>\n" }.joined() + "</ul>\n"
        }
        h += "</section>\n"
        if !r.tries.isEmpty {
            h += "<section>\n<h2>Alternatives on this host</h2>\n<table>\n<tr><th>parameters</th><th>on the twin</th><th>oracle</th></tr>\n"
            for t in r.tries {
                h += "<tr><td><code>\(esc(t.parameters))</code></td><td>\(esc(t.outcome))</td><td>\(esc(t.predicted))</td></tr>\n"
            }
            h += "</table>\n</section>\n"
        }
        h += "<section>\n<h2>Physical memory</h2>\n"
        h += "<h3>Host</h3>\n<div class=\"map\">\n" + MemoryMapSVG.svg(scene(map: r.hostMap, reserved: r.host.boot.reserved + r.host.boot.deviceTree.pools, title: "host physical memory (\(r.log))", failed: r.host.boot.failedMiB, ramdisk: r.host.boot.ramdisk), idPrefix: "host") + "</div>\n"
        h += "<h3>Twin</h3>\n<div class=\"map\">\n" + MemoryMapSVG.svg(scene(map: r.twin.map, reserved: r.replay.reserved + (r.replay.pools ?? []), title: "twin physical memory (\(r.twin.machine.summary))", failed: r.replay.failedMiB, ramdisk: r.replay.ramdisk), idPrefix: "twin") + "</div>\n"
        h += "<h3>Twin kernel parameters</h3>\n<p><code>\(esc(r.twin.parameters.joined(separator: " ")))</code></p>\n"
        if !r.twin.notes.isEmpty { h += "<ul>\n" + r.twin.notes.map { "<li>\(esc($0))</li>\n" }.joined() + "</ul>\n" }
        h += "</section>\n<footer><p>Written by cmalab replay. Every picture is inline SVG; the page needs no script and no network.</p></footer>\n</body>\n</html>\n"
        return h
    }

    /// A map scene of a map and its areas, through the same builder as a run's.
    static func scene(map: [MemoryRange], reserved: [ReservedArea], title: String, failed: [UInt64], ramdisk: MemoryRange?) -> MemoryMapScene {
        var boot = BootLogFacts()
        boot.ramdisk = ramdisk
        boot.e820 = map
        boot.reserved = reserved
        boot.failedMiB = failed
        let o = Observations(profile: "replay", image: "", machine: MachineSpec(memory: .gib(1)), commandLine: KernelCommandLine([]),
                             accelerator: "", ending: .poweredOff, boot: boot)
        var s = MemoryMapScene.build(o)
        s.title = title
        return s
    }
}
