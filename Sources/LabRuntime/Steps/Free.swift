import LabCore

extension ProfileRunner {
    /// free: one write of the area's debugfs `free` file, through the agent (as alloc does, Alloc.swift).
    func perform(_ s: FreeStep, index: Int, label: String, agent: AgentClient, run: RunDirectory) throws(LabError) -> StepRecord {
        try cmaWrite(.cmaFree(area: s.area, pages: s.pages), kind: .free, area: s.area, pages: s.pages,
                     index: index, label: label, agent: agent, run: run)
    }
}
