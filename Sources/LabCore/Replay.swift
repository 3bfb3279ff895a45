/// A replay (`cmalab replay`): the host's CMA parameters booted on its twin (TwinPlan.swift), and each host
/// CMA line against what the twin printed.

/// One of the host's CMA outcomes against the twin's.
public struct ReplayLine: Codable, Equatable, Sendable {
    /// The host's line (`cma: Reserved 1024 MiB at 0x...`, `cma: Failed to reserve 512 MiB`).
    public var host: String
    /// What the twin did in its place; nil when it printed nothing there.
    public var twin: String?
    public var reproduced: Bool
    /// What differs (size, base, node), one clause each.
    public var differences: [String]
}

public enum Replay {
    /// The cma= family parameters of a command line (what a replay boots the twin with).
    public static let cmaFamily: Set<String> = ["cma", "cma_pernuma", "numa_cma", "hugetlb_cma"]

    public static func cmaParameters(_ line: String) -> KernelCommandLine {
        KernelCommandLine(KernelCommandLine(parsing: line).parameters.filter { cmaFamily.contains($0.key) })
    }

    /// The profile that boots the twin: its machine, the memmap= parameters and the CMA parameters, no steps.
    public static func profile(name: String, plan: TwinPlan, cma: KernelCommandLine, image: String?) -> Profile {
        let line = KernelCommandLine(plan.parameters.compactMap { p in
            guard let eq = p.firstIndex(of: "=") else { return nil }
            return KernelCommandLine.Parameter(key: String(p[..<eq]), value: String(p[p.index(after: eq)...]))
        }).appending(cma)
        var profile = Profile(name: name, summary: "replay of a host log", file: "", image: image, machine: plan.machine, commandLine: line,
                              timeout: 300, expect: Expectations(), steps: [], warnings: [])
        profile.deviceTree = plan.deviceTree
        return profile
    }

    /// The twin of a host: from its map (and SRAT nodes), or, for a log without a map, from its `Memory:` line.
    /// `commandLine` is the rest of the twin's command line (what the memmap= parameters must leave room for).
    public static func twin(for facts: HostFacts, commandLine: KernelCommandLine) -> Result<TwinPlan, TwinPlanError> {
        if facts.architecture == .arm64 {
            return Result { () throws(TwinPlanError) in try TwinPlan.board(facts) }
        }
        if facts.effectiveMap.isEmpty, let line = facts.boot.memoryLine, let fallback = TwinPlan.fromMemoryLine(line) {
            return .success(fallback)
        }
        // 256 bytes are left for the lab's own parameters (console, panic, the agent's).
        return Result { () throws(TwinPlanError) in
            try TwinPlan.plan(map: facts.effectiveMap, nodes: facts.boot.nodeMemory, budget: TwinPlan.commandLineLimit - commandLine.description.utf8.count - 256)
        }
    }

    /// Every host CMA reservation and failure against the twin's, in the order the kernel printed them, then (on
    /// arm64) every device-tree CMA pool. `plan` gives the twin's addresses back as the board's when the twin is
    /// shifted (BoardTwinPlan.swift); without it they are compared as they are.
    public static func compare(host: BootLogFacts, twin: BootLogFacts, plan: TwinPlan? = nil) -> [ReplayLine] {
        var out: [ReplayLine] = []
        let shifted = plan?.window?.isShifted == true
        // The twin's areas at board addresses; the twin's own address kept for the line.
        func board(_ a: ReservedArea) -> ReservedArea {
            guard shifted, let p = plan else { return a }
            var b = a
            b.base = p.hostAddress(a.base) ?? a.base
            return b
        }
        func shownLine(_ t: ReservedArea, _ render: (ReservedArea) -> String) -> String {
            if shifted, plan?.hostAddress(t.base) == nil { return render(t) + " (a twin address, outside the board's RAM)" }
            let b = board(t)
            return render(b) + (b.base != t.base ? " (twin address \(hex(t.base)))" : "")
        }
        for (i, h) in host.reserved.enumerated() {
            let line = reservedLine(h)
            guard let twinArea = twin.reserved[safe: i] else {
                out.append(ReplayLine(host: line, twin: twin.failedMiB.isEmpty ? nil : "Failed to reserve \(twin.failedMiB[0]) MiB", reproduced: false,
                                      differences: ["the twin reserved no area \(i + 1)"]))
                continue
            }
            let t = board(twinArea)
            var d: [String] = []
            if t.sizeMiB != h.sizeMiB { d.append("size: host \(h.sizeMiB) MiB, twin \(t.sizeMiB) MiB") }
            if t.base != h.base { d.append("base: host \(hex(h.base)), twin \(hex(t.base))") }
            if let hn = h.node, let tn = t.node, hn != tn { d.append("node: host \(hn), twin \(tn)") }
            out.append(ReplayLine(host: line, twin: shownLine(twinArea, reservedLine), reproduced: d.isEmpty, differences: d))
        }
        for (i, mib) in host.failedMiB.enumerated() {
            let line = "cma: Failed to reserve \(mib) MiB"
            if let t = twin.failedMiB[safe: i] {
                out.append(ReplayLine(host: line, twin: "cma: Failed to reserve \(t) MiB", reproduced: t == mib,
                                      differences: t == mib ? [] : ["size: host \(mib) MiB, twin \(t) MiB"]))
            } else {
                out.append(ReplayLine(host: line, twin: nil, reproduced: false, differences: ["the twin did not fail"]))
            }
        }
        // Device-tree pools (`Reserved memory: created CMA memory pool at ...`), matched in order.
        for (i, h) in host.deviceTree.pools.enumerated() {
            let line = poolLine(h)
            guard let twinPool = twin.deviceTree.pools[safe: i] else {
                out.append(ReplayLine(host: line, twin: nil, reproduced: false, differences: ["the twin created no pool \(i + 1)"]))
                continue
            }
            let t = board(twinPool)
            var d: [String] = []
            if t.sizeMiB != h.sizeMiB { d.append("size: host \(h.sizeMiB) MiB, twin \(t.sizeMiB) MiB") }
            if t.base != h.base { d.append("base: host \(hex(h.base)), twin \(hex(t.base))") }
            out.append(ReplayLine(host: line, twin: shownLine(twinPool, poolLine), reproduced: d.isEmpty, differences: d))
        }
        return out
    }

    public static func poolLine(_ p: ReservedArea) -> String {
        "Reserved memory: created CMA memory pool at \(hex(p.base)), size \(p.sizeMiB) MiB"
    }

    static func reservedLine(_ r: ReservedArea) -> String {
        "cma: Reserved \(r.sizeMiB) MiB at \(hex(r.base))" + (r.node.map { " on node \($0)" } ?? "")
    }

    /// Inputs that differ between host and twin and could explain a difference.
    public static func explanations(host: HostFacts, twinRelease: String?, plan: TwinPlan) -> [String] {
        var out: [String] = []
        if let h = host.boot.kernelRelease, let t = twinRelease, h != t {
            out.append("kernel: the host ran \(h), the twin \(t) (placement rules and alignment differ between versions)")
        }
        if plan.machine.type == .virt {
            out.append("kernel and initrd: QEMU loads the twin's kernel near the start of its RAM and the initrd at RAM + 128 MiB; the board's boot loader put them where it did, and the memory they hold is not free for CMA in either")
        } else if let r = host.boot.ramdisk {
            out.append("initrd: at [\(hex(r.start))-\(hex(r.end))] on the host; QEMU puts the twin's below the top of its low RAM (\(hex(plan.lowMemory)))")
        }
        let hostVersion = host.boot.kernelRelease ?? host.boot.commandLine.flatMap { c in
            c.split(separator: " ").first { $0.hasPrefix("BOOT_IMAGE=") }.map { String($0.split(separator: "/").last ?? "") } }
        if host.boot.kernelRelease == nil, let v = hostVersion, !v.isEmpty {
            out.append("kernel: the host booted \(v) (from BOOT_IMAGE; the log has no `Linux version` line), the twin \(twinRelease ?? "?")")
        }
        if host.boot.cmaLines.contains(where: { $0.hasPrefix("cma: early_cma(") || $0.hasPrefix("cma: dma_contiguous_reserve(") }) {
            out.append("the host's kernel printed the CMA_DEBUG lines of its era (`early_cma`, `dma_contiguous_reserve`): CMA's early set-up and placement have changed since")
        }
        out += plan.notes
        return out
    }
}
