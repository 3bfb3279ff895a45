import Foundation
import LabCore
import LabProtocol

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
    /// Starts the machine (default: the lab's, QEMU or libvirt by `backend`).
    public var launcher: any MachineLauncher

    public init(lab: Lab) { self.lab = lab; launcher = lab.defaultLauncher }

    /// This run's DMA test driver module on the host (nil: the image has none), and whether the guest has it loaded.
    var driverModule: String?
    var driverLoaded = false
    /// The tracefs directory when this run records the CMA trace events around its allocating steps
    /// (Steps/Trace.swift); nil when it does not.
    var tracingDirectory: String?

    public func run(_ profile: Profile, image override: String? = nil) -> Verdict {
        let started = Date()
        let imageName = override ?? profile.imageName
        func errorVerdict(_ message: String, code: LabError.Code) -> Verdict {
            Verdict(profile: profile.name, image: imageName, kind: .error, checks: [], error: message, errorCode: code.rawValue,
                    seconds: Date().timeIntervalSince(started))
        }
        let kernel: BuiltKernel
        do { kernel = try lab.kernel(image: imageName) } catch { return errorVerdict("image \(imageName): \(error.message)", code: error.code) }
        guard kernel.architecture == profile.machine.architecture else {
            return errorVerdict("preflight: image \(imageName) is an \(kernel.architecture) kernel but the profile's machine is \(profile.machine.architecture) (`\(profile.machine.type.rawValue)`); give the profile `machine: {arch: \(kernel.architecture)}` or run it on an \(profile.machine.architecture) image such as \(profile.machine.architecture.defaultImage); nothing was booted", code: .preflight)
        }
        let config = kernel.configPath.isEmpty ? nil : try? kernel.config()
        var skipped: [SkippedStep] = []
        if let config {
            for need in profile.requiredConfig where !config.isEnabled(need.option) {
                return errorVerdict("preflight: image \(imageName) has no CONFIG_\(need.option) (the profile needs it: \(need.reason)); nothing was booted", code: .preflight)
            }
            if !config.isEnabled("CMA_DEBUGFS") {
                skipped = profile.debugfsSteps.map { SkippedStep(index: $0, reason: "image \(imageName) has no CONFIG_CMA_DEBUGFS, so /sys/kernel/debug/cma/<area>/alloc and free do not exist") }
            }
            for s in profile.unmetRequirements(image: imageName, isEnabled: config.isEnabled) where !skipped.contains(where: { $0.index == s.index }) {
                skipped.append(s)
            }
        }
        driverModule = nil
        driverLoaded = false
        let driverSteps = profile.steps.indices.filter { i in profile.steps[i].usesTestDriver && !skipped.contains { $0.index == i } }
        if !driverSteps.isEmpty {
            do { driverModule = try lab.kernels.testDriver(for: kernel) } catch {
                skipped += driverSteps.map { SkippedStep(index: $0, reason: "cmalab's DMA test driver is not available: \(error.message)") }
            }
        }
        skipped.sort { $0.index < $1.index }
        var request = BootRequest(machine: profile.machine, commandLine: profile.commandLine, runName: runName ?? "\(profile.name)-\(imageName)")
        request.accel = accel
        request.backend = backend
        request.deviceTree = profile.deviceTree
        request.onConsoleLine = onConsoleLine
        let session: BootSession
        do { session = try lab.start(kernel, request, launcher: launcher) } catch { return errorVerdict(error.message, code: error.code) }
        defer { session.machine.stop(); session.run.closeSockets() }
        let run = session.run

        var obs = Observations(profile: profile.name, image: imageName, machine: session.plan.machine,
                               commandLine: session.plan.effectiveCommandLine,
                               accelerator: session.plan.accelerator.rawValue, ending: .notBooted, boot: BootLogFacts())
        obs.configCMA = config.map { $0.isEnabled("CMA") }
        if !skipped.isEmpty { obs.skippedSteps = skipped }
        obs.runDirectory = run.path
        var kmsg: [KmsgRecord]?
        var labFailure: LabError?
        do {
            try session.waitForAgent(timeout: profile.timeout)
            let agent = session.agent!
            obs.agentReadySeconds = agent.readyAt.map { $0.timeIntervalSince(session.machine.started) }
            obs.agentReadyUptimeSeconds = agent.hello.map { Double($0.uptimeMilliseconds) / 1000 }
            obs.meminfo.append(try snapshot(agent, label: "boot", run: run))
            obs.areas = try areas(agent)
            // One more request per run, so only where the kernel can have heaps (or its .config is unknown).
            obs.dmaHeaps = config?.isEnabled("DMABUF_HEAPS") == false ? nil : dmaHeaps(agent)
            tracingDirectory = profile.steps.contains { $0.allocates } ? startTracing(agent, config: config) : nil
            for (i, step) in profile.steps.enumerated() where !skipped.contains(where: { $0.index == i }) {
                obs.steps.append(step.allocates ? try traced(agent) { () throws(LabError) in try perform(step, index: i, agent: agent, run: run) }
                                                : try perform(step, index: i, agent: agent, run: run))
            }
            obs.meminfo.append(try snapshot(agent, label: "end", run: run))
            kmsg = try dmesgRecords(agent)
            try run.write("dmesg.txt", Self.dmesgText(kmsg ?? []))
            // The image's .config is the kernel's own (same build); ask the guest only for a bare --kernel.
            if kernel.configPath.isEmpty, case .kernelConfig(let text) = try agent.request(.kernelConfig) { try run.write("config", text) }
            obs.qemuPeakRSSKiB = Self.peakRSSKiB(session.machine)
            let exit = try session.finish(timeout: 30)
            obs.ending = Self.ending(exit)
            obs.crash = session.machine.console.crash
        } catch {
            switch error.code {
            case .kernelCrash:
                obs.ending = .kernelCrash
                obs.crash = session.machine.console.crash
            case .timeout:
                obs.ending = .timeout
                labFailure = error
            default:
                obs.ending = session.machine.exit.map(Self.ending) ?? .labError
                labFailure = error
            }
        }
        if obs.qemuPeakRSSKiB == nil, session.machine.isRunning { obs.qemuPeakRSSKiB = Self.peakRSSKiB(session.machine) }
        session.machine.stop()
        if !Files.exists(run.file("config")), !kernel.configPath.isEmpty { try? Files.copy(kernel.configPath, to: run.file("config")) }
        // console.log keeps QEMU's CR LF line ends (one Character in Swift, and a newline).
        let console = ((try? Files.read(run.file("console.log"))) ?? "").split(whereSeparator: \.isNewline).map(String.init)
        // The kmsg records are complete (they include KERN_DEBUG lines); the console is what was printed.
        let messages = kmsg.map { $0.map(\.message) } ?? console.map(KernelLog.stripTimestamp)
        obs.boot = kmsg == nil ? KernelLogParser.facts(from: console) : KernelLogParser.facts(messages: messages)
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
            return Verdict(profile: profile.name, image: imageName, kind: .error, checks: [], error: labFailure.message, errorCode: labFailure.code.rawValue,
                           observations: obs, consoleTail: tail, seconds: obs.wallSeconds, runDirectory: run.path)
        }
        let checks = Evaluate.checks(profile, obs, messages: messages)
        var verdict = Verdict(profile: profile.name, image: imageName, kind: Evaluate.verdictKind(checks), checks: checks,
                              observations: obs, consoleTail: tail, seconds: obs.wallSeconds, runDirectory: run.path)
        // The oracle's prediction for this boot, and whether the kernel did what it said (separate from pass/fail).
        verdict.oracle = OracleRuntime.check(kernel: kernel, plan: session.plan, observations: obs)
        return verdict
    }

    // MARK: - Steps

    /// Runs one step: each kind's `perform` is in Steps/<Kind>.swift.
    func perform(_ step: Step, index: Int, agent: AgentClient, run: RunDirectory) throws(LabError) -> StepRecord {
        let label = "step\(index)-\(step.kind)"
        switch step {
        case .alloc(let s): return try perform(s, index: index, label: label, agent: agent, run: run)
        case .free(let s): return try perform(s, index: index, label: label, agent: agent, run: run)
        case .exec(let s): return try perform(s, index: index, label: label, agent: agent, run: run)
        case .pressure(let s): return try perform(s, index: index, label: label, agent: agent, run: run)
        case .release: return try perform(ReleaseStep(), index: index, label: label, agent: agent, run: run)
        case .measuredAlloc(let s): return try perform(s, index: index, label: label, agent: agent, run: run)
        case .dmaAlloc(let s): return try perform(s, index: index, label: label, agent: agent, run: run)
        case .dmaFree: return try perform(DMAFreeStep(), index: index, label: label, agent: agent, run: run)
        case .heapAlloc(let s): return try perform(s, index: index, label: label, agent: agent, run: run)
        case .heapFree: return try perform(HeapFreeStep(), index: index, label: label, agent: agent, run: run)
        }
    }

    /// The exit status of a guest command as a shell reports it: 128 + signal, 124 on timeout, 127 when it
    /// could not start. A signal number no kernel has (the guest's word) is an error naming it.
    static func status(_ t: ExecTermination) throws(LabError) -> Int32 {
        switch t {
        case .exited(let c): return c
        case .signaled(let s): return try shellStatus(signal: s)
        case .timedOut: return 124
        case .spawnFailed: return 127
        }
    }

    /// 128 + `signal`, checked: the guest reported the signal, and a signal outside 1...127 is an error.
    public static func shellStatus(signal: Int32) throws(LabError) -> Int32 {
        let (status, overflow) = Int32(128).addingReportingOverflow(signal)
        guard !overflow, (1...127).contains(signal) else {
            throw LabError(.agent, "the agent reported a command killed by signal \(signal), which is no signal number (1-127)")
        }
        return status
    }

    /// `pages` 4 KiB pages in bytes, checked: `what` names the guest value in the error when it cannot be.
    public static func bytes(pages: UInt64, _ what: String) throws(LabError) -> UInt64 {
        let (bytes, overflow) = pages.multipliedReportingOverflow(by: 4096)
        guard !overflow else { throw LabError(.agent, "the guest reported \(what) = \(pages) pages, more than 64-bit byte addresses hold") }
        return bytes
    }

    // MARK: - Probes

    /// /proc/vmstat counters by name.
    func vmstat(_ agent: AgentClient) throws(LabError) -> [String: Int64] {
        guard case .vmstat(let counters) = try agent.request(.vmstat) else { throw LabError(.agent, "unexpected answer to vmstat") }
        return Dictionary(counters.map { ($0.name, Int64(clamping: $0.value)) }, uniquingKeysWith: { _, b in b })
    }

    /// meminfo now, its text kept as meminfo-<label>.txt in the run directory.
    func snapshot(_ agent: AgentClient, label: String, run: RunDirectory) throws(LabError) -> MeminfoSnapshot {
        let m = try agent.meminfo()
        try run.write("meminfo-\(label).txt", m.raw)
        return MeminfoSnapshot(label: label, cmaTotalKiB: m["CmaTotal"], cmaFreeKiB: m["CmaFree"], memTotalKiB: m["MemTotal"], memFreeKiB: m["MemFree"])
    }

    /// Every CMA area as debugfs and sysfs show it now.
    func areas(_ agent: AgentClient) throws(LabError) -> [AreaSnapshot] {
        try agent.cmaAreas(bitmap: false).map(AreaSnapshot.init)
    }

    // MARK: - Artifacts

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

    /// How a run ended, from how its machine exited.
    static func ending(_ exit: MachineExit) -> RunEnding {
        switch exit {
        case .poweredOff: return .poweredOff
        case .crashed: return .kernelCrash
        case .timedOut: return .timeout
        case .qemuFailed: return .qemuFailed
        }
    }
}
