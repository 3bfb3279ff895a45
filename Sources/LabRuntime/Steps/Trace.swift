import Foundation
import LabCore
import LabProtocol

/// The kernel's own timing of every allocating step: the CMA and migration trace events (CMATrace.swift)
/// through tracefs, cleared before the step and read after it. Images without CONFIG_EVENT_TRACING (or
/// kernels without the events) run the same steps without a trace.
extension ProfileRunner {
    static let tracefs = "/sys/kernel/tracing"
    /// The most of the trace buffer read after a step; more is noted as unreadable, never kept.
    static let traceReadLimit: UInt32 = 4 << 20

    /// Mounts tracefs and enables the events the kernel has. False when it has none of them.
    func startTracing(_ agent: AgentClient, config: KernelConfig?) -> Bool {
        guard config?.isEnabled("EVENT_TRACING") == true else { return false }
        var script = "mountpoint -q \(Self.tracefs) || mount -t tracefs nodev \(Self.tracefs) || exit 1\ncd \(Self.tracefs) || exit 1\nn=0\n"
        for e in CMATrace.events { script += "[ -e events/\(e)/enable ] && echo 1 > events/\(e)/enable && n=$((n+1))\n" }
        script += "echo 2048 > buffer_size_kb\necho > trace\n[ $n -gt 0 ]\n"
        guard let r = try? agent.shell(script, timeout: 30, maxOutputBytes: 4096), case .exited(0) = r.termination else { return false }
        return true
    }

    /// Runs `body` (one step) between a cleared trace buffer and a read of it; the summary goes into the
    /// step's record.
    func traced(_ agent: AgentClient, _ body: () throws(LabError) -> StepRecord) throws(LabError) -> StepRecord {
        guard tracing else { return try body() }
        _ = try? agent.request(.writeFile(path: Self.tracefs + "/trace", data: []))
        var record = try body()
        if case .file(let data, let truncated) = try agent.request(.readFile(path: Self.tracefs + "/trace", maxBytes: Self.traceReadLimit)) {
            var summary = CMATrace.summary(String(decoding: data, as: UTF8.self))
            if truncated { summary.unreadableLines += 1 }
            record.trace = summary
        }
        return record
    }
}
