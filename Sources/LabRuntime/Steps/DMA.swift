import Foundation
import LabCore
import LabProtocol

extension ProfileRunner {
    /// Where the driver module goes in the guest before `load-module`.
    static let guestDriverPath = "/tmp/cmalab_dma.ko"

    /// Loads cmalab's DMA test driver into the guest once per run: the module file through the agent, then
    /// finit_module(2) by the agent's `load-module`.
    func loadTestDriver(_ agent: AgentClient) throws(LabError) {
        if driverLoaded { return }
        guard let module = driverModule else { throw LabError(.preflight, "cmalab's DMA test driver was not built for this image") }
        let bytes = try Files.readBytes(module)
        guard case .done = try agent.request(.writeFile(path: Self.guestDriverPath, data: bytes), timeout: 60) else {
            throw LabError(.agent, "could not write the DMA test driver into the guest")
        }
        let r = try agent.shell("/sbin/cmalab-agent load-module \(Self.guestDriverPath)", timeout: 60, maxOutputBytes: 4096)
        let output = String(decoding: r.stdout + r.stderr, as: UTF8.self).trimmingCharacters(in: .whitespacesAndNewlines)
        guard case .exited(0) = r.termination else {
            throw LabError(.agent, "the guest could not load the DMA test driver (\(output)); see dmesg.txt for the kernel's reason")
        }
        driverLoaded = true
    }

    /// dma-alloc: the agent's `dma-alloc` for the step's mask and call, meminfo and the CMA areas around it; the
    /// area whose range holds the memory (if any) is where it came from.
    func perform(_ s: DMAAllocStep, index: Int, label: String, agent: AgentClient, run: RunDirectory) throws(LabError) -> StepRecord {
        try loadTestDriver(agent)
        var result = DMAAllocResult(status: 0)
        result.before = try snapshot(agent, label: "\(label)-before", run: run)
        let areasBefore = try areas(agent)
        let started = Date()
        let r = try agent.shell("/sbin/cmalab-agent " + s.agentArguments.map(singleQuoted).joined(separator: " "), timeout: 600, maxOutputBytes: 4096)
        let seconds = Date().timeIntervalSince(started)
        let output = String(decoding: r.stdout + r.stderr, as: UTF8.self)
        result.output = output
        guard case .exited(0) = r.termination, var allocation = DMAAllocation.parse(output, step: s) else {
            throw LabError(.agent, "the guest's dma-alloc gave no result (\(try Self.status(r.termination))): \(output.prefix(500))")
        }
        result.status = allocation.errno
        if let phys = allocation.physicalAddress, let area = DMAAllocation.area(holding: phys, size: s.size, in: areasBefore) {
            allocation.area = area.name
            result.areaBefore = area
            result.areaAfter = try areas(agent).first { $0.name == area.name }
        }
        result.device = allocation
        result.after = try snapshot(agent, label: "\(label)-after", run: run)
        return StepRecord(index: index, kind: .dmaAlloc, summary: s.summary(), seconds: seconds, result: result)
    }

    /// dma-free: the agent's `dma-free 0`, which frees every allocation the driver holds.
    func perform(_ s: DMAFreeStep, index: Int, label: String, agent: AgentClient, run: RunDirectory) throws(LabError) -> StepRecord {
        try loadTestDriver(agent)
        let before = try snapshot(agent, label: "\(label)-before", run: run)
        let started = Date()
        let r = try agent.shell("/sbin/cmalab-agent " + DMAFreeStep.agentArguments.joined(separator: " "), timeout: 600, maxOutputBytes: 4096)
        let seconds = Date().timeIntervalSince(started)
        let output = String(decoding: r.stdout + r.stderr, as: UTF8.self)
        let fields = Self.keyValues(output)
        guard case .exited(0) = r.termination, let e = fields["errno"].flatMap({ Int32($0) }) else {
            throw LabError(.agent, "the guest's dma-free gave no result: \(output.prefix(500))")
        }
        let result = DMAFreeResult(status: e, freed: fields["freed"].flatMap { UInt64($0) }, before: before,
                                   after: try snapshot(agent, label: "\(label)-after", run: run))
        return StepRecord(index: index, kind: .dmaFree, summary: "dma-free every DMA allocation", seconds: seconds, result: result)
    }

    /// The `key=value` words of a guest tool's output (the first value of each key).
    static func keyValues(_ output: String) -> [String: String] {
        Dictionary(uniqueKeysWithValues: DMAAllocation.keyValueWords(Substring(output)).map { (String($0.key), String($0.value)) })
    }
}
