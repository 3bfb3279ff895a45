import Foundation
import LabCore
import LabProtocol

/// The kernel's own timing of every allocating step: the CMA and migration trace events (CMATrace.swift)
/// through tracefs, cleared before the step and read after it. Images without CONFIG_EVENT_TRACING (or
/// kernels without the events) run the same steps without a trace.
extension ProfileRunner {
    /// tracefs where the kernel mounts it itself: on debugfs's `tracing` directory, when it is first opened (the
    /// agent mounts debugfs at boot; 6.1 and 6.12 both do this).
    static let debugfsTracing = "/sys/kernel/debug/tracing"
    /// tracefs's own mount point, mounted by a guest shell for kernels without debugfs.
    static let tracefs = "/sys/kernel/tracing"
    /// The most of the trace buffer read after a step; more is noted as unreadable, never kept.
    static let traceReadLimit: UInt32 = 4 << 20
    /// The trace buffer per CPU, in KiB.
    static let traceBufferKiB = "2048"

    /// Enables the events the kernel has and returns the tracefs directory; nil when it has none of them.
    /// Neither path clears the buffer: `traced` clears it before every step (a clear waits for an RCU grace
    /// period, ~24 ms under TCG).
    /// With debugfs these are six file writes through the agent (~32 ms under TCG); a guest shell that
    /// mounts tracefs and does the same took 0.12 s of every allocating run, most of it starting the shell.
    func startTracing(_ agent: AgentClient, config: KernelConfig?) -> String? {
        guard config?.isEnabled("EVENT_TRACING") == true else { return nil }
        if config?.isEnabled("DEBUG_FS") == true, enableEvents(agent, in: Self.debugfsTracing) { return Self.debugfsTracing }
        var script = "mountpoint -q \(Self.tracefs) || mount -t tracefs nodev \(Self.tracefs) || exit 1\ncd \(Self.tracefs) || exit 1\nn=0\n"
        for e in CMATrace.events { script += "[ -e events/\(e)/enable ] && echo 1 > events/\(e)/enable && n=$((n+1))\n" }
        script += "echo \(Self.traceBufferKiB) > buffer_size_kb\n[ $n -gt 0 ]\n"
        guard let r = try? agent.shell(script, timeout: 30, maxOutputBytes: 4096), case .exited(0) = r.termination else { return nil }
        return Self.tracefs
    }

    /// Writes 1 to each event's `enable` that exists and sets the buffer size; false when no event could be
    /// enabled or the buffer could not be set.
    private func enableEvents(_ agent: AgentClient, in directory: String) -> Bool {
        func write(_ path: String, _ text: String) -> Bool {
            guard case .done? = try? agent.request(.writeFile(path: directory + "/" + path, data: Array(text.utf8))) else { return false }
            return true
        }
        let enabled = CMATrace.events.filter { write("events/\($0)/enable", "1") }.count
        return enabled > 0 && write("buffer_size_kb", Self.traceBufferKiB)
    }

    /// Runs `body` (one step) between a cleared trace buffer and a read of it; the summary goes into the
    /// step's record.
    func traced(_ agent: AgentClient, _ body: () throws(LabError) -> StepRecord) throws(LabError) -> StepRecord {
        guard let directory = tracingDirectory else { return try body() }
        _ = try? agent.request(.writeFile(path: directory + "/trace", data: []))
        var record = try body()
        if case .file(let data, let truncated) = try agent.request(.readFile(path: directory + "/trace", maxBytes: Self.traceReadLimit)) {
            var summary = CMATrace.summary(String(decoding: data, as: UTF8.self))
            if truncated { summary.unreadableLines += 1 }
            record.trace = summary
        }
        return record
    }
}
