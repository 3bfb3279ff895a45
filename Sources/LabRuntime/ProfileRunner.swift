import Foundation
import LabCore
import LabProtocol

/// Loads profiles from files and folders.
public enum ProfileLoader {
    /// Each argument is a .yaml file or a folder of them; no argument means `Profiles/`.
    public static func load(_ arguments: [String], defaultDirectory: String) throws(LabError) -> [Profile] {
        var files: [String] = []
        for arg in arguments.isEmpty ? [defaultDirectory] : arguments {
            var isDir: ObjCBool = false
            guard FileManager.default.fileExists(atPath: arg, isDirectory: &isDir) else {
                throw LabError(.input, "\(arg): no such profile file or folder")
            }
            if isDir.boolValue {
                let names = ((try? FileManager.default.contentsOfDirectory(atPath: arg)) ?? [])
                    .filter { $0.hasSuffix(".yaml") || $0.hasSuffix(".yml") }.sorted()
                files += names.map { arg + "/" + $0 }
            } else {
                files.append(arg)
            }
        }
        var seen: [String: String] = [:]
        var profiles: [Profile] = []
        for f in files {
            let p: Profile
            do { p = try Profile.parse(try Files.read(f), file: f) } catch let e as InputError {
                throw LabError(.input, e.description)
            } catch {
                throw error as! LabError
            }
            if let other = seen[p.name] { throw LabError(.input, "\(f): profile `\(p.name)` is already defined in \(other)", hint: "give each profile a unique name") }
            seen[p.name] = f
            profiles.append(p)
        }
        return profiles
    }
}

/// Runs one profile on one image and returns its verdict. Never throws: what goes wrong in the lab
/// becomes an `error` verdict with the reason; what goes wrong in the kernel is observed and judged.
public final class ProfileRunner: @unchecked Sendable {
    public let lab: Lab
    public var accel: AccelChoice = .auto
    /// Console lines, as they arrive (nil: not shown).
    public var onConsoleLine: (@Sendable (String) -> Void)?
    /// Names the run directory and QEMU (default: `profile-image`).
    public var runName: String?

    public init(lab: Lab) { self.lab = lab }

    public func run(_ profile: Profile, image override: String? = nil) -> Verdict {
        let started = Date()
        let imageName = override ?? profile.image ?? ImageCatalog.defaultImage
        func errorVerdict(_ message: String) -> Verdict {
            Verdict(profile: profile.name, image: imageName, kind: .error, checks: [], error: message,
                    seconds: Date().timeIntervalSince(started))
        }
        let kernel: BuiltKernel
        do { kernel = try lab.kernel(image: imageName) } catch { return errorVerdict("image \(imageName): \(error.message)") }
        let config = kernel.configPath.isEmpty ? nil : try? kernel.config()
        var skipped: [SkippedStep] = []
        if let config {
            for need in profile.requiredConfig where !config.isEnabled(need.option) {
                return errorVerdict("preflight: image \(imageName) has no CONFIG_\(need.option) (the profile needs it: \(need.reason)); nothing was booted")
            }
            if !config.isEnabled("CMA_DEBUGFS") {
                skipped = profile.debugfsSteps.map { SkippedStep(index: $0, reason: "image \(imageName) has no CONFIG_CMA_DEBUGFS, so /sys/kernel/debug/cma/<area>/alloc and free do not exist") }
            }
        }
        var request = BootRequest(machine: profile.machine, commandLine: profile.commandLine, runName: runName ?? "\(profile.name)-\(imageName)")
        request.accel = accel
        request.onConsoleLine = onConsoleLine
        let session: BootSession
        do { session = try lab.start(kernel, request) } catch { return errorVerdict(error.message) }
        defer { session.machine.stop(); session.run.closeSockets() }
        let run = session.run

        var obs = Observations(profile: profile.name, image: imageName, machine: Self.describe(profile.machine),
                               commandLine: session.plan.effectiveCommandLine.description,
                               accelerator: session.plan.accelerator.rawValue, ending: "not-booted", boot: BootLogFacts())
        obs.configCMA = config.map { $0.isEnabled("CMA") }
        if !skipped.isEmpty { obs.skippedSteps = skipped }
        obs.runDirectory = run.path
        var kmsg: [String]?
        var labFailure: LabError?
        do {
            try session.waitForAgent(timeout: profile.timeout)
            let agent = session.agent!
            obs.agentReadySeconds = agent.readyAt.map { $0.timeIntervalSince(session.machine.started) }
            obs.meminfo.append(try snapshot(agent, label: "boot", run: run))
            obs.areas = try areas(agent)
            for (i, step) in profile.steps.enumerated() where !skipped.contains(where: { $0.index == i }) {
                obs.steps.append(try perform(step, index: i, agent: agent, run: run))
            }
            obs.meminfo.append(try snapshot(agent, label: "end", run: run))
            kmsg = try dmesg(agent)
            try run.write("dmesg.txt", (kmsg ?? []).joined(separator: "\n") + "\n")
            if case .kernelConfig(let text) = try agent.request(.kernelConfig) { try run.write("config", text) }
            let exit = try session.finish(timeout: 30)
            obs.ending = Self.ending(exit)
            obs.crash = session.machine.console.crash
        } catch {
            switch error.code {
            case .kernelCrash:
                obs.ending = "kernel-crash"
                obs.crash = session.machine.console.crash
            case .timeout:
                obs.ending = "timeout"
                labFailure = error
            default:
                obs.ending = session.machine.exit.map(Self.ending) ?? "lab-error"
                labFailure = error
            }
        }
        session.machine.stop()
        if !Files.exists(run.file("config")), !kernel.configPath.isEmpty { try? Files.copy(kernel.configPath, to: run.file("config")) }
        // console.log keeps QEMU's CR LF line ends (one Character in Swift, and a newline).
        let console = ((try? Files.read(run.file("console.log"))) ?? "").split(whereSeparator: \.isNewline).map(String.init)
        // The kmsg records are complete (they include KERN_DEBUG lines); the console is what was printed.
        let log = kmsg ?? console
        obs.boot = KernelLogParser.facts(from: log)
        if kmsg != nil, obs.boot.kernelRelease == nil { obs.boot.kernelRelease = KernelLogParser.facts(from: console).kernelRelease }
        obs.kernelRelease = obs.boot.kernelRelease ?? session.agent?.hello?.uname.release
        obs.wallSeconds = Date().timeIntervalSince(started)
        try? writeReproduce(session)
        try? run.write("observations.json", bytes: Self.json(obs))

        let tail = Array(session.machine.console.tail.suffix(40))
        if let labFailure, obs.crash == nil {
            // A timeout or lab failure with no crash on the console: the lab cannot judge the profile.
            return Verdict(profile: profile.name, image: imageName, kind: .error, checks: [], error: labFailure.message,
                           observations: obs, consoleTail: tail, seconds: obs.wallSeconds, runDirectory: run.path)
        }
        let checks = Evaluate.checks(profile, obs, log: log)
        return Verdict(profile: profile.name, image: imageName, kind: Evaluate.verdictKind(checks), checks: checks,
                       observations: obs, consoleTail: tail, seconds: obs.wallSeconds, runDirectory: run.path)
    }

    // MARK: - Steps

    func perform(_ step: Step, index: Int, agent: AgentClient, run: RunDirectory) throws(LabError) -> StepRecord {
        let label = "step\(index)-\(step.kind)"
        let started = Date()
        switch step {
        case .alloc(let area, let pages, _, _), .free(let area, let pages, _):
            let before = try snapshot(agent, label: "\(label)-before", run: run)
            let areaBefore = try areas(agent).first { $0.name == area }
            let request: AgentRequest = step.kind == "alloc" ? .cmaAlloc(area: area, pages: pages) : .cmaFree(area: area, pages: pages)
            let response = try agent.request(request, timeout: 300)
            let seconds = Date().timeIntervalSince(started)
            var status: Int32 = 0
            switch response {
            case .done: status = 0
            case .failure(let e, _): status = e
            default: throw LabError(.agent, "unexpected answer to \(step.kind): \(response)")
            }
            var rec = StepRecord(index: index, kind: step.kind, summary: "\(step.kind) \(pages) pages from \(area)", status: status, seconds: seconds)
            rec.before = before
            rec.after = try snapshot(agent, label: "\(label)-after", run: run)
            rec.areaBefore = areaBefore
            rec.areaAfter = try areas(agent).first { $0.name == area }
            return rec
        case .exec(let command, _, _, let timeout):
            let r = try agent.shell(command, timeout: timeout, maxOutputBytes: 1 << 20)
            let status: Int32
            switch r.termination {
            case .exited(let c): status = c
            case .signaled(let s): status = 128 + s
            case .timedOut: status = 124
            case .spawnFailed: status = 127
            }
            var rec = StepRecord(index: index, kind: "exec", summary: command, status: status, seconds: Date().timeIntervalSince(started))
            rec.output = String(decoding: r.stdout, as: UTF8.self)
            try run.write("\(label).out", rec.output ?? "")
            return rec
        }
    }

    func snapshot(_ agent: AgentClient, label: String, run: RunDirectory) throws(LabError) -> MeminfoSnapshot {
        let m = try agent.meminfo()
        try run.write("meminfo-\(label).txt", m.raw)
        return MeminfoSnapshot(label: label, cmaTotalKiB: m["CmaTotal"], cmaFreeKiB: m["CmaFree"], memTotalKiB: m["MemTotal"], memFreeKiB: m["MemFree"])
    }

    func areas(_ agent: AgentClient) throws(LabError) -> [AreaSnapshot] {
        return try agent.cmaAreas().map { a in
            AreaSnapshot(name: a.name, basePFN: a.basePFN, count: a.count, used: a.used, maxchunk: a.maxchunk, orderPerBit: a.orderPerBit,
                         sysfs: Dictionary(a.sysfs.map { ($0.name, $0.value) }, uniquingKeysWith: { _, b in b }))
        }
    }

    /// Every /dev/kmsg record since boot, as `[seconds] message` lines.
    func dmesg(_ agent: AgentClient) throws(LabError) -> [String] {
        var lines: [String] = []
        var after: UInt64?
        for _ in 0..<64 {
            guard case .kmsg(let batch) = try agent.request(.kmsg(afterSequence: after, maxRecords: 5000)) else {
                throw LabError(.agent, "unexpected answer to kmsg")
            }
            for r in batch.records {
                let t = Double(r.timestampMicroseconds) / 1_000_000
                lines.append(String(format: "[%12.6f] ", t) + r.message)
            }
            guard let last = batch.records.last else { break }
            after = last.sequence
        }
        return lines
    }

    // MARK: - Artifacts

    /// reproduce.sh: the exact QEMU argv of this run, with the same kernel and initramfs. The agent
    /// socket gets a fresh temporary folder; the console prints to the terminal.
    func writeReproduce(_ session: BootSession) throws(LabError) {
        let socket = session.plan.agentSocket
        let args = session.plan.arguments().map { arg -> String in
            guard let socket, arg.contains(socket) else { return shellQuote(arg) }
            let escaped = arg.replacingOccurrences(of: socket, with: "@SOCKET@")
                .replacingOccurrences(of: "\\", with: "\\\\").replacingOccurrences(of: "\"", with: "\\\"")
                .replacingOccurrences(of: "$", with: "\\$").replacingOccurrences(of: "`", with: "\\`")
            return "\"" + escaped.replacingOccurrences(of: "@SOCKET@", with: "${sockdir}/agent.sock") + "\""
        }
        let script = """
            #!/bin/sh
            # Re-runs the QEMU boot of this run: the same argv, kernel and initramfs.
            # \(session.plan.effectiveCommandLine)
            # The console prints here. The guest's agent waits for cmalab on its socket, so the guest stays up
            # after booting: stop it with Ctrl-C.
            set -e
            sockdir=$(mktemp -d)
            trap 'rm -rf "$sockdir"' EXIT
            \(Self.pairFlags(args).joined(separator: " \\\n    "))

            """
        try session.run.write("reproduce.sh", script)
        chmod(session.run.file("reproduce.sh"), 0o755)
    }

    /// Puts each `-flag value` pair of an argv on one line.
    static func pairFlags(_ args: [String]) -> [String] {
        var lines: [String] = []
        var i = 0
        while i < args.count {
            if args[i].hasPrefix("-"), i + 1 < args.count, !args[i + 1].hasPrefix("-") {
                lines.append(args[i] + " " + args[i + 1]); i += 2
            } else {
                lines.append(args[i]); i += 1
            }
        }
        return lines
    }

    static func json(_ o: Observations) -> [UInt8] {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.prettyPrinted, .sortedKeys]
        return (try? [UInt8](encoder.encode(o))) ?? []
    }

    static func ending(_ exit: MachineExit) -> String {
        switch exit {
        case .poweredOff: return "powered-off"
        case .crashed: return "kernel-crash"
        case .timedOut: return "timeout"
        case .qemuFailed: return "qemu-failed"
        }
    }

    static func describe(_ m: MachineSpec) -> String {
        var s = "\(m.type.rawValue), \(m.memory), \(m.cpus) CPU"
        if !m.numaNodes.isEmpty { s += ", NUMA \(m.numaNodes.map(\.description).joined(separator: "+"))" }
        return s
    }
}
