import Foundation
import LabCore
import LabProtocol

extension ProfileRunner {
    /// heap-alloc: the holder script (HeapAllocStep.guestScript), meminfo and the heap's CMA area around it.
    func perform(_ s: HeapAllocStep, index: Int, label: String, agent: AgentClient, run: RunDirectory) throws(LabError) -> StepRecord {
        var result = HeapAllocResult(status: 0)
        result.before = try snapshot(agent, label: "\(label)-before", run: run)
        result.areaBefore = try areas(agent).first { $0.name == s.heap }
        let started = Date()
        let r = try agent.shell(s.guestScript(index: index), timeout: 600, maxOutputBytes: 64 << 10)
        let seconds = Date().timeIntervalSince(started)
        let output = String(decoding: r.stdout + r.stderr, as: UTF8.self)
        result.output = output
        let status = try Self.status(r.termination)
        // The holder prints `errno=<n>` when the heap is missing or the allocation fails.
        result.status = status == 0 ? 0 : (HeapAllocStep.errno(in: output) ?? status)
        result.nanoseconds = HeapAllocStep.nanoseconds(in: output)
        result.after = try snapshot(agent, label: "\(label)-after", run: run)
        if let area = result.areaBefore { result.areaAfter = try areas(agent).first { $0.name == area.name } }
        return StepRecord(index: index, kind: .heapAlloc, summary: s.summary(), seconds: seconds, result: result)
    }

    /// heap-free: stops every holder (HeapFreeStep.guestScript).
    func perform(_ s: HeapFreeStep, index: Int, label: String, agent: AgentClient, run: RunDirectory) throws(LabError) -> StepRecord {
        let before = try snapshot(agent, label: "\(label)-before", run: run)
        let started = Date()
        let r = try agent.shell(HeapFreeStep.guestScript, timeout: 120, maxOutputBytes: 4096)
        let seconds = Date().timeIntervalSince(started)
        let output = String(decoding: r.stdout + r.stderr, as: UTF8.self)
        let result = DMAFreeResult(status: try Self.status(r.termination), freed: Self.keyValues(output)["freed"].flatMap { UInt64($0) },
                                   before: before, after: try snapshot(agent, label: "\(label)-after", run: run))
        return StepRecord(index: index, kind: .heapFree, summary: "heap-free every heap buffer", seconds: seconds, result: result)
    }

    /// The names under /dev/dma_heap, sorted; nil when the folder does not exist.
    func dmaHeaps(_ agent: AgentClient) -> [String]? {
        guard case .directory(let entries)? = try? agent.request(.listDirectory(path: "/dev/dma_heap")) else { return nil }
        return entries.map(\.name).filter { $0 != "." && $0 != ".." }.sorted()
    }
}
