import ArgumentParser
import Foundation
import LabCore
import LabRuntime

struct ReplayCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "replay",
        abstract: "Boot a twin of a real machine from its boot log and reproduce its CMA lines.",
        discussion: """
        Reads the host's boot log (dmesg, journalctl -k -b, a serial capture, or the quoted form), or the directory \
        Scripts/capture-host wrote (its dmesg.txt, with the firmware map from memmap/ and the command line from \
        cmdline.txt where the log has lost them), plans a QEMU \
        pc guest whose kernel sees the host's memory map (memmap=exactmap plus one memmap= per range, low RAM \
        ending where the host's does), boots it with the host's cma= parameters, and says for each CMA line \
        whether the twin reproduced it. --dry-run prints the plan without booting.
        Example: cmalab replay host-dmesg.txt --image cma-6.12; cmalab replay cmalab-host-NAME-DATE/ --dry-run
        """
    )

    @Argument(help: "The host's boot log, or a capture directory of Scripts/capture-host.")
    var log: String

    @OptionGroup var kernelOptions: KernelOptions

    @Flag(name: .long, help: "Print the facts read and the twin's plan (machine, kernel parameters, QEMU argv) without booting.")
    var dryRun = false

    @Option(name: .long, help: "Seconds before the twin's boot counts as hung.")
    var timeout: Double = 300

    @Option(name: .customLong("try"), help: "Other CMA parameters to try on the same twin, e.g. 'cma=2G' (repeatable).")
    var tries: [String] = []

    @Option(name: .long, help: "Write the replay (host facts, twin plan, each line, each try) as JSON to this file.")
    var json: String?

    /// The log's file name, or the capture directory's (without its trailing slash), for run directories.
    var logName: String {
        var path = Substring(log)
        while path.count > 1, path.hasSuffix("/") { path = path.dropLast() }
        return Path.basename(String(path))
    }

    func run() throws {
        try runReportingErrors {
            // The capture's `config` (input.config) is kept for predictions from the host's own .config; not used yet.
            let input = try HostBundleReader.read(log)
            let facts = input.facts
            print("host: \(facts.boot.kernelRelease.map { "Linux \($0)" } ?? "kernel release unknown"), \(facts.messages) kernel messages (\(facts.format.rawValue))")
            if let line = facts.boot.commandLine { print("host command line: \(line)") }
            print("host map: \(facts.effectiveMap.count) ranges (\(facts.mapSource))")
            for l in facts.boot.cmaLines { print("host: \(l)") }
            for m in facts.missing { print("missing: \(m)") }
            for f in facts.sources { print("from: \(f)") }
            let cma = Replay.cmaParameters(facts.boot.commandLine ?? "")
            let base = KernelCommandLine(parsing: "console=ttyS0 panic=-1 pci=noacpi").appending(cma)
            let plan: TwinPlan
            if facts.effectiveMap.isEmpty, let line = facts.boot.memoryLine, let fallback = TwinPlan.fromMemoryLine(line) {
                plan = fallback
            } else {
                do throws(TwinPlanError) {
                    plan = try TwinPlan.plan(map: facts.effectiveMap, budget: TwinPlan.commandLineLimit - base.description.utf8.count - 256)
                } catch {
                    throw LabError(.input, "\(log): \(error.description)", hint: facts.missing.first ?? "the log must hold the host's `BIOS-e820:` lines")
                }
            }
            for l in plan.summary { print(l) }
            let lab = Lab()
            let profile = Replay.profile(name: "replay", plan: plan, cma: cma, image: kernelOptions.image)
            if dryRun {
                var qemu = QEMUPlan(machine: plan.machine, kernel: "<kernel>", initrd: "<initrd>", commandLine: profile.commandLine)
                qemu.agentSocket = nil
                print("qemu: " + qemu.arguments().map(shellQuote).joined(separator: " "))
                return
            }
            var p = profile
            p.timeout = timeout
            let runner = ProfileRunner(lab: lab)
            runner.runName = "replay-\(logName)"
            let verdict = runner.run(p, image: kernelOptions.image)
            guard let o = verdict.observations, verdict.kind != .error || o.ending == .poweredOff else {
                throw LabError(.qemu, "the twin did not boot: \(verdict.error ?? "no observations")")
            }
            let lines = Replay.compare(host: facts.boot, twin: o.boot)
            print("")
            if lines.isEmpty { print("the host log has no `cma: Reserved` or `Failed to reserve` line to reproduce; the twin printed: \(o.boot.cmaLines.joined(separator: " | "))") }
            for l in lines {
                print("\(l.reproduced ? "reproduced" : "differs   ")  \(l.host)" + (l.reproduced ? "" : "  →  twin: \(l.twin ?? "nothing"); \(l.differences.joined(separator: "; "))"))
            }
            if lines.contains(where: { !$0.reproduced }) {
                for e in Replay.explanations(host: facts, twinRelease: o.kernelRelease, plan: plan) { print("  could explain it: \(e)") }
            }
            print("run directory: \(verdict.runDirectory)")

            // Each alternative on the same twin: what the host would do with it.
            var outcomes: [ReplayTry] = []
            for (i, alternative) in tries.enumerated() {
                let params = Replay.cmaParameters(alternative)
                guard !params.parameters.isEmpty else { throw LabError(.input, "--try '\(alternative)': no cma=, cma_pernuma=, numa_cma= or hugetlb_cma= parameter in it") }
                var tp = Replay.profile(name: "replay-try\(i + 1)", plan: plan, cma: params, image: kernelOptions.image)
                tp.timeout = timeout
                runner.runName = "replay-try\(i + 1)-\(logName)"
                let v = runner.run(tp, image: kernelOptions.image)
                outcomes.append(ReplayTry(parameters: params.description, observations: v.observations, error: v.error))
            }
            if !outcomes.isEmpty {
                print("")
                print(Table.render([["TRY", "ON THIS HOST"]] + outcomes.map { [$0.parameters, $0.outcome] }), terminator: "")
            }
            if let json {
                let result = ReplayResult(log: log, host: facts, twin: ReplayTwin(plan), lines: lines, twinKernel: o.kernelRelease, tries: outcomes)
                let encoder = JSONEncoder()
                encoder.outputFormatting = [.prettyPrinted, .sortedKeys]
                try Files.writePublic(Array(try encoder.encode(result)), to: json)
            }
            if lines.contains(where: { !$0.reproduced }) { throw ExitCode(1) }
        }
    }
}

/// What one `--try` did on the twin.
struct ReplayTry: Encodable {
    var parameters: String
    var reserved: [ReservedArea] = []
    var failedMiB: [UInt64] = []
    var failureReasons: [String] = []
    var crash: String?
    var error: String?

    init(parameters: String, observations o: Observations?, error: String?) {
        self.parameters = parameters
        self.reserved = o?.boot.reserved ?? []
        self.failedMiB = o?.boot.failedMiB ?? []
        self.failureReasons = o?.boot.failureReasons ?? []
        self.crash = o?.crash.map { $0.headline }
        self.error = o?.ending == .poweredOff || o?.crash != nil ? nil : error
    }

    /// `reserved 2048 MiB at 0x100000000`, `failed: cma: Failed to reserve ...`, `kernel crash: ...`.
    var outcome: String {
        if let crash { return "kernel crash: \(crash)" }
        if let error { return "error: \(error)" }
        var parts = reserved.map { "reserved \($0.sizeMiB) MiB at \(hex($0.base))" + ($0.node.map { " (node \($0))" } ?? "") }
        parts += failedMiB.map { "failed to reserve \($0) MiB" }
        if let reason = failureReasons.first { parts.append(reason) }
        return parts.isEmpty ? "no area" : parts.joined(separator: "; ")
    }
}

/// The twin's plan in the JSON.
struct ReplayTwin: Encodable {
    var machine: MachineSpec
    var lowMemory: UInt64
    var parameters: [String]
    var map: [MemoryRange]
    var notes: [String]
    init(_ p: TwinPlan) { machine = p.machine; lowMemory = p.lowMemory; parameters = p.parameters; map = p.map; notes = p.notes }
}

/// `replay --json`.
struct ReplayResult: Encodable {
    var log: String
    var host: HostFacts
    var twin: ReplayTwin
    var lines: [ReplayLine]
    var twinKernel: String?
    var tries: [ReplayTry]
}
