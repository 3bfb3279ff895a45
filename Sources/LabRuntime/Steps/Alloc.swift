import Foundation
import LabCore
import LabProtocol

extension ProfileRunner {
    /// alloc: one write of the area's debugfs `alloc` file, through the agent.
    func perform(_ s: AllocStep, index: Int, label: String, agent: AgentClient, run: RunDirectory) throws(LabError) -> StepRecord {
        try cmaWrite(.cmaAlloc(area: s.area, pages: s.pages), kind: .alloc, area: s.area, pages: s.pages,
                     index: index, label: label, agent: agent, run: run)
    }

    /// An alloc or free `request` of `pages` from `area`, with meminfo and the area before and after it (free
    /// shares it). The step's seconds are the request's.
    func cmaWrite(_ request: AgentRequest, kind: StepKind, area: String, pages: UInt64,
                  index: Int, label: String, agent: AgentClient, run: RunDirectory) throws(LabError) -> StepRecord {
        let started = Date()
        let before = try snapshot(agent, label: "\(label)-before", run: run)
        let areaBefore = try areas(agent).first { $0.name == area }
        let response = try agent.request(request, timeout: 300)
        let seconds = Date().timeIntervalSince(started)
        let status: Int32
        switch response {
        case .done: status = 0
        case .failure(let e, _): status = e
        default: throw LabError(.agent, "unexpected answer to \(kind): \(response)")
        }
        let result = CMAWriteResult(status: status, before: before, after: try snapshot(agent, label: "\(label)-after", run: run),
                                    areaBefore: areaBefore, areaAfter: try areas(agent).first { $0.name == area })
        return StepRecord(index: index, kind: kind, summary: "\(kind) \(pages) pages from \(area)", seconds: seconds, result: result)
    }
}
