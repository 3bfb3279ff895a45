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
    /// QEMU (default) or a libvirt daemon.
    public var backend: Backend = .qemu
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
        request.backend = backend
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
            obs.agentReadyUptimeSeconds = agent.hello.map { Double($0.uptimeMilliseconds) / 1000 }
            obs.meminfo.append(try snapshot(agent, label: "boot", run: run))
            obs.areas = try areas(agent)
            for (i, step) in profile.steps.enumerated() where !skipped.contains(where: { $0.index == i }) {
                obs.steps.append(try perform(step, index: i, agent: agent, run: run))
            }
            obs.meminfo.append(try snapshot(agent, label: "end", run: run))
            kmsg = try dmesg(agent)
            try run.write("dmesg.txt", (kmsg ?? []).joined(separator: "\n") + "\n")
            // The image's .config is the kernel's own (same build); ask the guest only for a bare --kernel.
            if kernel.configPath.isEmpty, case .kernelConfig(let text) = try agent.request(.kernelConfig) { try run.write("config", text) }
            obs.qemuPeakRSSKiB = Self.peakRSSKiB(session.machine)
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
        if obs.qemuPeakRSSKiB == nil, session.machine.isRunning { obs.qemuPeakRSSKiB = Self.peakRSSKiB(session.machine) }
        session.machine.stop()
        if !Files.exists(run.file("config")), !kernel.configPath.isEmpty { try? Files.copy(kernel.configPath, to: run.file("config")) }
        // console.log keeps QEMU's CR LF line ends (one Character in Swift, and a newline).
        let console = ((try? Files.read(run.file("console.log"))) ?? "").split(whereSeparator: \.isNewline).map(String.init)
        // The kmsg records are complete (they include KERN_DEBUG lines); the console is what was printed.
        let log = kmsg ?? console
        obs.boot = KernelLogParser.facts(from: log)
        // Each area's node: the SRAT range that holds its base (NUMA guests only).
        for i in obs.areas.indices { obs.areas[i].node = obs.areas[i].basePFN.flatMap { obs.boot.node(of: $0 << 12) } }
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
        var verdict = Verdict(profile: profile.name, image: imageName, kind: Evaluate.verdictKind(checks), checks: checks,
                              observations: obs, consoleTail: tail, seconds: obs.wallSeconds, runDirectory: run.path)
        // The oracle's prediction for this boot, and whether the kernel did what it said (separate from pass/fail).
        verdict.oracle = OracleRuntime.check(kernel: kernel, plan: session.plan, observations: obs)
        return verdict
    }

    // MARK: - Steps

    func perform(_ step: Step, index: Int, agent: AgentClient, run: RunDirectory) throws(LabError) -> StepRecord {
        let label = "step\(index)-\(step.kind)"
        let started = Date()
        switch step {
        case .alloc(let s):
            return try cmaWrite(.cmaAlloc(area: s.area, pages: s.pages), kind: .alloc, area: s.area, pages: s.pages, index: index, label: label, agent: agent, run: run)
        case .free(let s):
            return try cmaWrite(.cmaFree(area: s.area, pages: s.pages), kind: .free, area: s.area, pages: s.pages, index: index, label: label, agent: agent, run: run)
        case .pressure(let p):
            return try pressure(p, index: index, label: label, agent: agent, run: run)
        case .release:
            let r = try agent.shell(ReleaseStep.guestScript, timeout: 120, maxOutputBytes: 64 << 10)
            var rec = StepRecord(index: index, kind: .release, summary: "release pressure", status: Self.status(r.termination),
                                 seconds: Date().timeIntervalSince(started))
            rec.after = try snapshot(agent, label: "\(label)-after", run: run)
            return rec
        case .measuredAlloc(let m):
            return try measuredAlloc(m, index: index, label: label, agent: agent, run: run)
        case .exec(let s):
            let command = s.command
            let r = try agent.shell(command, timeout: s.timeout, maxOutputBytes: 1 << 20)
            let status: Int32
            switch r.termination {
            case .exited(let c): status = c
            case .signaled(let s): status = 128 + s
            case .timedOut: status = 124
            case .spawnFailed: status = 127
            }
            var rec = StepRecord(index: index, kind: .exec, summary: command, status: status, seconds: Date().timeIntervalSince(started))
            rec.output = String(decoding: r.stdout, as: UTF8.self)
            try run.write("\(label).out", rec.output ?? "")
            return rec
        }
    }

    func cmaWrite(_ request: AgentRequest, kind: StepKind, area: String, pages: UInt64, index: Int, label: String, agent: AgentClient, run: RunDirectory) throws(LabError) -> StepRecord {
        let started = Date()
        let before = try snapshot(agent, label: "\(label)-before", run: run)
        let areaBefore = try areas(agent).first { $0.name == area }
        let response = try agent.request(request, timeout: 300)
        let seconds = Date().timeIntervalSince(started)
        var status: Int32 = 0
        switch response {
        case .done: status = 0
        case .failure(let e, _): status = e
        default: throw LabError(.agent, "unexpected answer to \(kind): \(response)")
        }
        var rec = StepRecord(index: index, kind: kind, summary: "\(kind) \(pages) pages from \(area)", status: status, seconds: seconds)
        rec.before = before
        rec.after = try snapshot(agent, label: "\(label)-after", run: run)
        rec.areaBefore = areaBefore
        rec.areaAfter = try areas(agent).first { $0.name == area }
        return rec
    }

    // MARK: - Pressure

    static func status(_ t: ExecTermination) -> Int32 {
        switch t {
        case .exited(let c): return c
        case .signaled(let s): return 128 + s
        case .timedOut: return 124
        case .spawnFailed: return 127
        }
    }

    func pressure(_ p: PressureStep, index: Int, label: String, agent: AgentClient, run: RunDirectory) throws(LabError) -> StepRecord {
        let started = Date()
        let before = try snapshot(agent, label: "\(label)-before", run: run)
        let target = p.target.bytes(memFreeKiB: before.memFreeKiB ?? 0, cmaFreeKiB: before.cmaFreeKiB ?? 0)
        let anon = p.kind == .file ? 0 : (p.kind == .mixed ? target / 2 : target)
        let file = target - anon
        var rec = StepRecord(index: index, kind: .pressure, summary: "pressure \(p.target) (\(ByteSize(bytes: target))) \(p.kind.rawValue)\(p.pin ? " pinned" : p.mlock ? " mlocked" : "")",
                             status: 0, seconds: 0)
        rec.before = before
        rec.pressureBytes = target
        var held: UInt64 = 0
        var script = "set -e\n"
        if file > 0 {
            // /tmp is a tmpfs limited to half of RAM by default: let it hold the fill.
            script += "mount -o remount,size=95% /tmp\ndd if=/dev/zero of=/tmp/cmalab-pressure-\(index).fill bs=1M count=\(file >> 20) 2>/dev/null\n"
        }
        if anon > 0 {
            let out = "/tmp/cmalab-pressure-\(index).out"
            script += "setsid /sbin/cmalab-agent hold-memory \(anon)\(p.pin ? " pin" : p.mlock ? " mlock" : "") >\(out) 2>&1 </dev/null &\necho $! >/tmp/cmalab-pressure-\(index).pid\n"
            // Wait for the holder to have touched (and pinned) everything, or to have died.
            script += "while ! grep -q held \(out); do kill -0 $(cat /tmp/cmalab-pressure-\(index).pid) 2>/dev/null || { cat \(out); exit 1; }; sleep 0.2; done\ncat \(out)\n"
        }
        let r = try agent.shell(script, timeout: 600, maxOutputBytes: 64 << 10)
        rec.status = Self.status(r.termination)
        let output = String(decoding: r.stdout + r.stderr, as: UTF8.self)
        rec.output = output
        if rec.status == 0 {
            held = (file >> 20) << 20
            if let line = output.split(separator: "\n").first(where: { $0.hasPrefix("held ") }),
               let n = line.split(separator: " ").dropFirst().first.flatMap({ UInt64($0) }) { held += n }
        }
        rec.heldBytes = held
        rec.after = try snapshot(agent, label: "\(label)-after", run: run)
        let areasNow = try areas(agent)
        let usedPages = areasNow.reduce(UInt64(0)) { $0 + ($1.used ?? 0) }
        if let total = rec.after?.cmaTotalKiB, let free = rec.after?.cmaFreeKiB, total >= free {
            let busy = (total - free) / 4
            rec.cmaLentPages = busy > usedPages ? busy - usedPages : 0
        }
        rec.nrFreeCMA = try vmstat(agent)["nr_free_cma"].map { UInt64($0) }
        rec.seconds = Date().timeIntervalSince(started)
        return rec
    }

    func measuredAlloc(_ m: MeasuredAlloc, index: Int, label: String, agent: AgentClient, run: RunDirectory) throws(LabError) -> StepRecord {
        let started = Date()
        let areaBefore = try areas(agent).first { $0.name == m.area }
        let pages = m.pages ?? areaBefore?.count ?? 0
        var rec = StepRecord(index: index, kind: .alloc, summary: "alloc \(pages) pages from \(m.area)\(m.pages == nil ? " (the whole area)" : "")\(m.repeats > 1 ? " × \(m.repeats)" : "")",
                             status: 0, seconds: 0)
        rec.before = try snapshot(agent, label: "\(label)-before", run: run)
        rec.areaBefore = areaBefore
        let kmsgStart = try dmesgRecords(agent).last?.sequence
        let vmBefore = try vmstat(agent)
        var ns: [UInt64] = []
        var errnos: [Int32] = []
        let allocPath = "/sys/kernel/debug/cma/\(m.area)/alloc"
        for attempt in 0..<m.repeats {
            let r = try agent.shell("/sbin/cmalab-agent timed-write \(allocPath) \(pages)", timeout: 600, maxOutputBytes: 4096)
            let text = String(decoding: r.stdout, as: UTF8.self)
            guard let (t, e) = Self.parseTimedWrite(text) else {
                throw LabError(.agent, "timed-write of \(allocPath) printed `\(text.prefix(200))` (\(r.termination))")
            }
            ns.append(t); errnos.append(e)
            if attempt == 0 {
                let vmAfter = try vmstat(agent)
                var delta: [String: Int64] = [:]
                for (k, v) in vmAfter where k.hasPrefix("pgmigrate_") || k.hasPrefix("cma_alloc_") || k.hasPrefix("compact_") || k == "nr_free_cma" {
                    delta[k] = v - (vmBefore[k] ?? 0)
                }
                rec.vmstatDelta = delta
                rec.after = try snapshot(agent, label: "\(label)-after", run: run)
                rec.areaAfter = try areas(agent).first { $0.name == m.area }
            }
            if e == 0 {
                let freed = try agent.request(.cmaFree(area: m.area, pages: pages), timeout: 600)
                guard case .done = freed else { throw LabError(.agent, "free of \(pages) pages from \(m.area) after attempt \(attempt + 1): \(freed)") }
            }
        }
        rec.attemptNanoseconds = ns
        rec.attemptErrnos = errnos
        rec.status = errnos.first ?? 0
        let messages = try dmesgRecords(agent, after: kmsgStart).map(\.message)
        rec.kernelMessages = Array(messages.prefix(200))
        rec.seconds = Date().timeIntervalSince(started)
        return rec
    }

    /// `ns=<n> errno=<e>` from the agent's timed-write tool.
    static func parseTimedWrite(_ text: String) -> (UInt64, Int32)? {
        var ns: UInt64?, err: Int32?
        for word in text.split(whereSeparator: { $0 == " " || $0 == "\n" }) {
            if word.hasPrefix("ns=") { ns = UInt64(word.dropFirst(3)) }
            if word.hasPrefix("errno=") { err = Int32(word.dropFirst(6)) }
        }
        guard let ns, let err else { return nil }
        return (ns, err)
    }

    func vmstat(_ agent: AgentClient) throws(LabError) -> [String: Int64] {
        guard case .vmstat(let counters) = try agent.request(.vmstat) else { throw LabError(.agent, "unexpected answer to vmstat") }
        return Dictionary(counters.map { ($0.name, Int64(clamping: $0.value)) }, uniquingKeysWith: { _, b in b })
    }

    func snapshot(_ agent: AgentClient, label: String, run: RunDirectory) throws(LabError) -> MeminfoSnapshot {
        let m = try agent.meminfo()
        try run.write("meminfo-\(label).txt", m.raw)
        return MeminfoSnapshot(label: label, cmaTotalKiB: m["CmaTotal"], cmaFreeKiB: m["CmaFree"], memTotalKiB: m["MemTotal"], memFreeKiB: m["MemFree"])
    }

    func areas(_ agent: AgentClient) throws(LabError) -> [AreaSnapshot] {
        return try agent.cmaAreas(bitmap: false).map { a in
            AreaSnapshot(name: a.name, basePFN: a.basePFN, count: a.count, used: a.used, maxchunk: a.maxchunk, orderPerBit: a.orderPerBit,
                         sysfs: Dictionary(a.sysfs.map { ($0.name, $0.value) }, uniquingKeysWith: { _, b in b }))
        }
    }

    /// Every /dev/kmsg record since boot, as `[seconds] message` lines.
    func dmesg(_ agent: AgentClient) throws(LabError) -> [String] {
        try dmesgRecords(agent).map { r in
            String(format: "[%12.6f] ", Double(r.timestampMicroseconds) / 1_000_000) + r.message
        }
    }

    /// /dev/kmsg records after `after` (all since boot when nil), at most 64 batches of 5000.
    func dmesgRecords(_ agent: AgentClient, after start: UInt64? = nil) throws(LabError) -> [KmsgRecord] {
        var records: [KmsgRecord] = []
        var after = start
        for _ in 0..<64 {
            guard case .kmsg(let batch) = try agent.request(.kmsg(afterSequence: after, maxRecords: 5000)) else {
                throw LabError(.agent, "unexpected answer to kmsg")
            }
            records += batch.records
            guard let last = batch.records.last else { break }
            after = last.sequence
        }
        return records
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

    /// QEMU's VmHWM (its peak resident set on the host, KiB) while it still runs; nil for other backends.
    static func peakRSSKiB(_ machine: any Machine) -> UInt64? {
        (machine as? QEMUMachine).flatMap { peakRSSKiB(pid: $0.pid) }
    }

    /// VmHWM of a running process (its peak resident set, KiB), or nil when it is gone.
    static func peakRSSKiB(pid: pid_t) -> UInt64? {
        guard let status = try? String(contentsOfFile: "/proc/\(pid)/status", encoding: .utf8),
              let line = status.split(separator: "\n").first(where: { $0.hasPrefix("VmHWM:") }) else { return nil }
        return line.split(whereSeparator: { $0 == " " || $0 == "\t" }).dropFirst().first.flatMap { UInt64($0) }
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
