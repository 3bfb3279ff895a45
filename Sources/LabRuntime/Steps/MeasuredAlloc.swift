import Foundation
import LabCore

extension ProfileRunner {
    /// measured alloc: `repeats` timed writes of the area's debugfs `alloc` file (MeasuredAlloc.attemptCommand),
    /// each successful one freed again; vmstat, meminfo and the area around the first; the kernel messages of all.
    func perform(_ m: MeasuredAlloc, index: Int, label: String, agent: AgentClient, run: RunDirectory) throws(LabError) -> StepRecord {
        let started = Date()
        let areaBefore = try areas(agent).first { $0.name == m.area }
        let pages = m.pages ?? areaBefore?.count ?? 0
        var result = MeasuredAllocStepResult(status: 0)
        result.before = try snapshot(agent, label: "\(label)-before", run: run)
        result.areaBefore = areaBefore
        let kmsgStart = try dmesgRecords(agent).last?.sequence
        let vmBefore = try vmstat(agent)
        var ns: [UInt64] = []
        var errnos: [Int32] = []
        for attempt in 0..<m.repeats {
            let r = try agent.shell(m.attemptCommand(pages: pages), timeout: 600, maxOutputBytes: 4096)
            let text = String(decoding: r.stdout, as: UTF8.self)
            guard let (t, e) = MeasuredAlloc.parseTimedWrite(text) else {
                throw LabError(.agent, "timed-write of \(m.allocPath) printed `\(text.prefix(200))` (\(r.termination))")
            }
            ns.append(t); errnos.append(e)
            if attempt == 0 {
                result.vmstatDelta = MeasuredAlloc.vmstatDelta(before: vmBefore, after: try vmstat(agent))
                result.after = try snapshot(agent, label: "\(label)-after", run: run)
                result.areaAfter = try areas(agent).first { $0.name == m.area }
            }
            if e == 0 {
                let freed = try agent.request(.cmaFree(area: m.area, pages: pages), timeout: 600)
                guard case .done = freed else { throw LabError(.agent, "free of \(pages) pages from \(m.area) after attempt \(attempt + 1): \(freed)") }
            }
        }
        result.attemptNanoseconds = ns
        result.attemptErrnos = errnos
        result.status = errnos.first ?? 0
        result.kernelMessages = Array(try dmesgRecords(agent, after: kmsgStart).map(\.message).prefix(200))
        return StepRecord(index: index, kind: .alloc, summary: m.summary(pages: pages), seconds: Date().timeIntervalSince(started), result: result)
    }
}
