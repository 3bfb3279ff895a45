import Foundation
import LabCore

extension ProfileRunner {
    /// exec: the command in the guest's shell; its output is also kept as <label>.out in the run directory.
    func perform(_ s: ExecStep, index: Int, label: String, agent: AgentClient, run: RunDirectory) throws(LabError) -> StepRecord {
        let started = Date()
        let r = try agent.shell(s.command, timeout: s.timeout, maxOutputBytes: 1 << 20)
        let result = ExecStepResult(status: try Self.status(r.termination), output: String(decoding: r.stdout, as: UTF8.self))
        let record = StepRecord(index: index, kind: .exec, summary: s.command, seconds: Date().timeIntervalSince(started), result: result)
        try run.write("\(label).out", result.output ?? "")
        return record
    }
}
