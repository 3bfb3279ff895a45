import Foundation
import LabCore

extension ProfileRunner {
    /// pressure: the fill script (PressureStep.guestScript) for the target as meminfo puts it now, then how
    /// much is held and how much of the CMA areas is lent out.
    func perform(_ p: PressureStep, index: Int, label: String, agent: AgentClient, run: RunDirectory) throws(LabError) -> StepRecord {
        let started = Date()
        if p.usesTestDriver { try loadTestDriver(agent) }
        var result = PressureStepResult(status: 0)
        let before = try snapshot(agent, label: "\(label)-before", run: run)
        result.before = before
        let target = p.target.bytes(memFreeKiB: before.memFreeKiB ?? 0, cmaFreeKiB: before.cmaFreeKiB ?? 0)
        result.pressureBytes = target
        let r = try agent.shell(p.guestScript(index: index, target: target), timeout: 600, maxOutputBytes: 64 << 10)
        result.status = try Self.status(r.termination)
        let output = String(decoding: r.stdout + r.stderr, as: UTF8.self)
        result.output = output
        result.heldBytes = result.status == 0 ? p.heldBytes(target: target, output: output) : 0
        result.after = try snapshot(agent, label: "\(label)-after", run: run)
        let usedPages = try areas(agent).reduce(UInt64(0)) { $0 + ($1.used ?? 0) }
        result.cmaLentPages = PressureStep.lentPages(result.after, usedPages: usedPages)
        result.nrFreeCMA = try vmstat(agent)["nr_free_cma"].map { UInt64($0) }
        return StepRecord(index: index, kind: .pressure, summary: p.summary(target: target), seconds: Date().timeIntervalSince(started), result: result)
    }
}
