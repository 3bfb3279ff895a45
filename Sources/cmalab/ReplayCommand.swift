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
        whether the twin reproduced it. An arm64 board's log (`Machine model:`, memory node ranges, no e820) gets \
        a virt twin on cma-6.12-arm64 with the board's RAM and its reserved-memory regions in the device tree, \
        shifted when the board's RAM does not start at 0x40000000. --dry-run prints the plan without booting.
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

    @Option(name: .long, help: "Write the replay (host facts and map, twin plan and map, each line, each try, the oracle's predictions) as JSON (schema cmalab-replay/1).")
    var json: String?

    @Option(name: .long, help: "Write JUnit XML: a test case per host CMA line and per --try.")
    var junit: String?

    @Option(name: .long, help: "Write an HTML page: the verdicts, the tries with the oracle's predictions, and the host's and the twin's memory maps.")
    var html: String?

    /// The log's file name, or the capture directory's (without its trailing slash), for run directories.
    var logName: String {
        var path = Substring(log)
        while path.count > 1, path.hasSuffix("/") { path = path.dropLast() }
        return Path.basename(String(path))
    }

    func run() throws {
        try runReportingErrors {
            let (facts, cma, plan) = try Self.readAndPlan(log)
            let alternatives = try tries.map { t throws(LabError) in try Self.tryParameters(t) }
            let lab = Lab()
            let profile = Replay.profile(name: "replay", plan: plan, cma: cma, image: kernelOptions.image)
            if dryRun {
                var qemu = QEMUPlan(machine: plan.machine, kernel: "<kernel>", initrd: "<initrd>", commandLine: profile.commandLine)
                qemu.agentSocket = nil
                if !plan.deviceTree.isEmpty {
                    qemu.deviceTreeBlob = "<QEMU's virt tree with the nodes above>"
                    print("device tree added to QEMU's:" + plan.deviceTree.source)
                }
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
            let lines = Replay.compare(host: facts.boot, twin: o.boot, plan: plan)
            let replay = ReplayOutcome(parameters: cma.description, observations: o, error: verdict.error, oracle: verdict.oracle, runDirectory: verdict.runDirectory)
            let explanations = lines.allSatisfy(\.reproduced) ? [] : Replay.explanations(host: facts, twinRelease: o.kernelRelease, plan: plan)
            print("")
            if lines.isEmpty { print("the host log has no `cma: Reserved`, `Failed to reserve` or `created CMA memory pool` line to reproduce; the twin printed: \(o.boot.cmaLines.joined(separator: " | "))") }
            for l in lines {
                print("\(l.reproduced ? "reproduced" : "differs   ")  \(l.host)" + (l.reproduced ? "" : "  →  twin: \(l.twin ?? "nothing"); \(l.differences.joined(separator: "; "))"))
            }
            for e in explanations { print("  could explain it: \(e)") }
            print("oracle\(plan.window?.isShifted == true ? " (twin addresses)" : ""): \(replay.predicted)")
            print("run directory: \(verdict.runDirectory)")

            // Each alternative on the same twin: what the host would do with it, and what the oracle said it would.
            var outcomes: [ReplayOutcome] = []
            for (i, params) in alternatives.enumerated() {
                var tp = Replay.profile(name: "replay-try\(i + 1)", plan: plan, cma: params, image: kernelOptions.image)
                tp.timeout = timeout
                runner.runName = "replay-try\(i + 1)-\(logName)"
                let v = runner.run(tp, image: kernelOptions.image)
                outcomes.append(ReplayOutcome(parameters: params.description, observations: v.observations, error: v.error, oracle: v.oracle, runDirectory: v.runDirectory))
            }
            if !outcomes.isEmpty {
                print("")
                print(Table.render([["TRY", "ON THIS HOST", "ORACLE"]] + outcomes.map { [$0.parameters, $0.outcome, $0.predicted] }))
            }
            let twinMap = Self.twinMap(verdict.runDirectory)
            let result = ReplayResult(log: log, host: facts, twin: ReplayTwin(plan, map: twinMap, kernel: o.kernelRelease), lines: lines,
                                      replay: replay, explanations: explanations, tries: outcomes)
            try Self.write(result, json: json, junit: junit, html: html)
            if !result.reproduced { throw ExitCode(1) }
        }
    }

    /// The host's facts (printed), its CMA parameters and its twin's plan (printed): what `replay` and
    /// `explain --host` both start from.
    static func readAndPlan(_ log: String) throws(LabError) -> (HostFacts, KernelCommandLine, TwinPlan) {
        let facts = try readHost(log)
        printFacts(facts)
        let cma = Replay.cmaParameters(facts.boot.commandLine ?? "")
        let plan = try plan(facts, log: log, cma: cma)
        for l in plan.summary { print(l) }
        return (facts, cma, plan)
    }

    /// The host's facts from a log file or a capture directory (HostBundleReader.swift).
    static func readHost(_ log: String) throws(LabError) -> HostFacts {
        // The capture's `config` is kept for predictions from the host's own .config; not used yet.
        try HostBundleReader.read(log).facts
    }

    /// The CMA parameters of one `--try`, or an error saying it has none.
    static func tryParameters(_ text: String) throws(LabError) -> KernelCommandLine {
        let p = Replay.cmaParameters(text)
        guard !p.parameters.isEmpty else {
            throw LabError(.input, "--try '\(text)': no cma=, cma_pernuma=, numa_cma= or hugetlb_cma= parameter in it", hint: "for example --try 'cma=2G'")
        }
        return p
    }

    static func printFacts(_ facts: HostFacts) {
        print("host: \(facts.boot.kernelRelease.map { "Linux \($0)" } ?? "kernel release unknown"), \(facts.messages) kernel messages (\(facts.format.rawValue))"
              + (facts.architecture == .arm64 ? ", an arm64 board (Machine model: \(facts.boot.deviceTree.model.map(TwinPlan.printable) ?? "?"))" : ""))
        if let line = facts.boot.commandLine { print("host command line: \(line)") }
        print("host map: \(facts.effectiveMap.count) ranges (\(facts.mapSource))"
              + (facts.architecture == .arm64 ? boardNodes(facts) : facts.boot.nodeMemory.isEmpty ? "" : ", \(Set(facts.boot.nodeMemory.map(\.node)).count) NUMA nodes (SRAT)"))
        for l in facts.boot.cmaLines { print("host: \(l)") }
        for p in facts.boot.deviceTree.pools { print("host: \(Replay.poolLine(p))") }
        for m in facts.missing { print("missing: \(m)") }
        for f in facts.sources { print("from: \(f)") }
    }

    /// A board's NUMA nodes when it has more than one (the memory node ranges name them).
    static func boardNodes(_ facts: HostFacts) -> String {
        let nodes = Set(facts.boot.nodeMemory.map(\.node)).count
        return nodes > 1 ? ", \(nodes) NUMA nodes (memory node ranges)" : ""
    }

    /// The twin's plan, or the reason there is none as a LabError naming the log.
    static func plan(_ facts: HostFacts, log: String, cma: KernelCommandLine) throws(LabError) -> TwinPlan {
        let rest = KernelCommandLine(parsing: "console=ttyS0 panic=-1 pci=noacpi").appending(cma)
        switch Replay.twin(for: facts, commandLine: rest) {
        case .success(let plan): return plan
        case .failure(let error):
            throw LabError(.input, "\(log): \(error.description)", hint: facts.missing.first ?? "the log must hold the host's `BIOS-e820:` lines")
        }
    }

    /// The map the twin's kernel printed (`user-defined physical RAM map`), from the run's console.
    static func twinMap(_ runDirectory: String) -> [MemoryRange]? {
        guard let text = try? HostBundleReader.readText(runDirectory + "/console.log", limit: HostBundleReader.maximumLogBytes) else { return nil }
        let twin = HostLog.read(text)
        // An arm64 twin's map is its memory ranges; an x86 twin's the map its memmap= parameters made.
        let map = twin.architecture == .arm64 ? twin.effectiveMap : twin.userMap
        return map.isEmpty ? nil : map
    }

    static func write(_ result: ReplayResult, json: String?, junit: String?, html: String?) throws(LabError) {
        do {
            if let json {
                let encoder = JSONEncoder()
                encoder.outputFormatting = [.prettyPrinted, .sortedKeys]
                try Files.writePublic(Array(try encoder.encode(result)), to: json)
            }
            if let junit { try Files.writePublic(Array(ReplayReport.junit(result).utf8), to: junit) }
            if let html { try Files.writePublic(Array(ReplayReport.html(result).utf8), to: html) }
        } catch let e as LabError {
            throw e
        } catch {
            throw LabError(.io, "cannot write the replay's reports: \(error)")
        }
    }
}
