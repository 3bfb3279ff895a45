import Foundation
import LabCore

extension ProfileRunner {
    /// release: the release script (ReleaseStep.guestScript), then meminfo.
    func perform(_ s: ReleaseStep, index: Int, label: String, agent: AgentClient, run: RunDirectory) throws(LabError) -> StepRecord {
        let started = Date()
        let r = try agent.shell(ReleaseStep.guestScript, timeout: 120, maxOutputBytes: 64 << 10)
        let seconds = Date().timeIntervalSince(started)
        let result = ReleaseStepResult(status: try Self.status(r.termination), after: try snapshot(agent, label: "\(label)-after", run: run))
        return StepRecord(index: index, kind: .release, summary: "release pressure", seconds: seconds, result: result)
    }
}
