import Testing
@testable import LabCore

/// Issue 7 items 4-7, the pure parts: SRAT node lines, `expect.nodes`, the per-node oracle, probe-max's bisection and
/// the QEMU peak RSS line. The log lines and debugfs values are from a real cma-6.12 boot (NUMA-capable since the default image became one) (2 × 2 GiB nodes,
/// `numa_cma=0:64M,1:32M cma_pernuma=16M`).
@Suite struct NumaProbeTests {
    static let numaLog = [
        "[    0.023931] ACPI: SRAT: Node 0 PXM 0 [mem 0x00000000-0x0009ffff]",
        "[    0.023961] ACPI: SRAT: Node 0 PXM 0 [mem 0x00100000-0x7fffffff]",
        "[    0.023967] ACPI: SRAT: Node 1 PXM 1 [mem 0x80000000-0xbfffffff]",
        "[    0.023973] ACPI: SRAT: Node 1 PXM 1 [mem 0x100000000-0x13fffffff]",
        "[    0.025290] cma: Reserved 16 MiB at 0x000000007e600000 on node 0",
        "[    0.025413] cma: Reserved 64 MiB at 0x000000007a600000 on node 0",
        "[    0.025455] cma: Reserved 16 MiB at 0x0000000100000000 on node 1",
        "[    0.025462] cma: Reserved 32 MiB at 0x0000000101000000 on node 1",
    ]
    static let numaAreas: [(String, UInt64, UInt64)] = [("numa0", 501248, 16384), ("numa1", 1052672, 8192), ("pernuma0", 517632, 4096), ("pernuma1", 1048576, 4096)]

    static func observations(_ log: [String] = numaLog) -> Observations {
        var o = Observations(profile: "t", image: "cma-6.12", machine: MachineSpec(memory: .gib(4)), commandLine: "", accelerator: "tcg",
                             ending: .poweredOff, boot: KernelLogParser.facts(from: log))
        o.areas = numaAreas.map { AreaSnapshot(name: $0.0, basePFN: $0.1, count: $0.2, used: 0, maxchunk: $0.2, orderPerBit: 0, sysfs: [:]) }
        return o
    }

    @Test func sratLinesGiveEachNodesMemory() {
        let facts = KernelLogParser.facts(from: Self.numaLog)
        #expect(facts.nodeMemory == [NodeMemoryRange(node: 0, start: 0, end: 0x9ffff), NodeMemoryRange(node: 0, start: 0x100000, end: 0x7fffffff),
                                     NodeMemoryRange(node: 1, start: 0x8000_0000, end: 0xbfff_ffff), NodeMemoryRange(node: 1, start: 1 << 32, end: 0x1_3fff_ffff)])
        #expect(facts.node(of: 0x7a60_0000) == 0 && facts.node(of: 0x1_0100_0000) == 1 && facts.node(of: 0xc000_0000) == nil)
        #expect(KernelLogParser.facts(from: ["ACPI: SRAT: Node x PXM 0 [mem 0x0-0x1]", "ACPI: SRAT: Node 0 PXM 0 [mem junk]"]).nodeMemory.isEmpty)
    }

    @Test func nodesExpectationPassesAndFailsWithTheObservedNode() throws {
        let p = try Profile.parse("name: t\nexpect:\n  nodes: {numa0: 0, numa1: 1, pernuma1: 1}\n", file: "t.yaml")
        #expect(p.expect.areaNodes == ["numa0": 0, "numa1": 1, "pernuma1": 1])
        let ok = Evaluate.checks(p, Self.observations(), messages: [])
        #expect(ok.map(\.name) == ["nodes.numa0", "nodes.numa1", "nodes.pernuma1"] && ok.allSatisfy(\.passed))

        let wrong = try Profile.parse("name: t\nexpect:\n  nodes: {numa1: 0, hugetlb0: 0}\n", file: "t.yaml")
        let checks = Evaluate.checks(wrong, Self.observations(), messages: [])
        #expect(checks.map(\.summary) == ["nodes.hugetlb0: expected node 0, observed no area hugetlb0", "nodes.numa1: expected node 0, observed node 1"])
        // Without SRAT lines the node is unknown, and the check fails saying why.
        let none = Evaluate.checks(p, Self.observations([]), messages: [])
        #expect(none.allSatisfy { !$0.passed && $0.observed.contains("no `ACPI: SRAT: Node` lines") })
    }

    static let badNodes: [(String, String)] = [
        ("name: x\nexpect:\n  nodes: [0, 1]\n", "x.yaml:3:10: at `expect.nodes`: expected a mapping from area name to NUMA node"),
        ("name: x\nexpect:\n  nodes: {numa0: zero}\n", "x.yaml:3:18: at `expect.nodes.numa0`: "),
        ("name: x\nexpect:\n  nodes: {numa0: 64}\n", "x.yaml:3:18: at `expect.nodes.numa0`: "),
        ("name: x\nexpect:\n  node: {numa0: 0}\n", "x.yaml:3:3: at `expect`: unknown key `node` (did you mean `nodes`?)"),
    ]

    @Test(arguments: badNodes)
    func badNodesSayFileLinePath(yaml: String, message: String) {
        do {
            _ = try Profile.parse(yaml, file: "x.yaml")
            Issue.record("accepted bad input: \(yaml)")
        } catch {
            #expect(error.description.hasPrefix(message), "got: \(error.description)")
        }
    }

    @Test func bisectionFindsTheBoundaryInLog2Tries() {
        let q = ProbeMaxQuestion(machine: MachineSpec(memory: .gib(1)), alignment: 4 << 20)
        #expect(q.maxUnits == 256)
        for limit: UInt64 in [0, 1, 57, 255, 256] {
            var calls = 0
            let a = ProbeMax.bisect(q) { (units: UInt64) -> Bool in calls += 1; return units <= limit }
            #expect(a.largestBytes == limit * (4 << 20))
            #expect(a.firstFailingBytes == (limit == 256 ? nil : (limit + 1) * (4 << 20)))
            #expect(calls == a.tries.count && (8...9).contains(calls), "\(limit): \(calls) tries")
            #expect(a.tries.filter(\.reserved).allSatisfy { $0.sizeBytes <= a.largestBytes })
        }
    }

    @Test func windowAndCandidates() throws {
        let w = try ProbeMaxQuestion.parseWindow("0-256M")
        #expect(w.base == 0 && w.limit == 256 << 20)
        let q = ProbeMaxQuestion(machine: MachineSpec(memory: .gib(1)), alignment: 4 << 20, window: w)
        #expect(q.maxUnits == 64 && q.cmaValue(units: 57) == "228M@0-256M")
        #expect(try ProbeMaxQuestion.parseWindow("0x40000000-0x80000000").base == 1 << 30)
        #expect(ProbeMaxQuestion(machine: MachineSpec(memory: .mib(512)), alignment: 2 << 20).cmaValue(units: 3) == "6M")
        for bad in ["1G", "2G-1G", "x-1G", "1G-2Gjunk"] {
            #expect(throws: InputError.self, "\(bad)") { try ProbeMaxQuestion.parseWindow(bad) }
        }
    }

    @Test func peakRSSLineNamesTheLargestRun() {
        func verdict(_ name: String, _ kib: UInt64?) -> Verdict {
            var o = Observations(profile: name, image: "cma-6.12", machine: MachineSpec(memory: .gib(4)), commandLine: "", accelerator: "tcg", ending: .poweredOff, boot: BootLogFacts())
            o.qemuPeakRSSKiB = kib
            return Verdict(profile: name, image: "cma-6.12", kind: .pass, checks: [], observations: o)
        }
        #expect(Report.peakRSSLine([verdict("a", nil)]) == nil)
        #expect(Report.peakRSSLine([verdict("small", 286_720)]) == "qemu peak RSS: 280 MiB (small@cma-6.12)")
        #expect(Report.peakRSSLine([verdict("small", 286_720), verdict("huge-512g", 8_870_444), verdict("none", nil)])
                == "qemu peak RSS: 8.5 GiB (huge-512g@cma-6.12, the largest of 2 runs)")
        #expect(Report.table([verdict("huge-512g", 8_870_444)], color: false).contains("\nqemu peak RSS: 8.5 GiB (huge-512g@cma-6.12)\n"))
    }

    /// The per-node oracle on the real boot above: areas in the kernel's order, on their nodes, at the bases seen.
    @Test func oraclePredictsPerNodeAreas() throws {
        let images = try OracleFixture.images()
        let boot = try #require(try OracleFixture.boots().first { $0.image == "cma-6.12" && $0.cmdline == "numa_cma=0:64M,1:32M cma_pernuma=16M" })
        let p = Oracle.predict(OracleFixture.input(boot, try #require(images[boot.image])))
        #expect(p.outcome == .reserved && p.area == nil)
        #expect(p.nodeAreas?.map(\.name) == ["pernuma0", "numa0", "pernuma1", "numa1"])
        #expect(p.nodeAreas?.map(\.node) == [0, 0, 1, 1])
        #expect(p.nodeAreas?.map(\.baseMin) == boot.facts.reserved.map(\.base))
        // A wrong node or a missing area is a divergence.
        var o = OracleFixture.observations(boot, try #require(images[boot.image]))
        o.boot.reserved[2].node = 0
        #expect(Oracle.compare(p, with: o)?.divergence?.contains("pernuma1 node: predicted 1, observed 0") == true)
        o.boot.reserved.removeLast()
        #expect(Oracle.compare(p, with: o)?.divergence?.contains("areas: predicted 4 `Reserved` line(s)") == true)
    }

    /// 6.1 on a two-node guest (cma-6.1-numa, DMA_PERNUMA_CMA): cma_pernuma= is accepted and reserves nothing on x86,
    /// numa_cma= does not exist; the oracle predicts both, and the recorded boots show it.
    @Test func cmaPernumaDoesNothingOn61() throws {
        let images = try OracleFixture.images()
        let boots = try OracleFixture.boots().filter { $0.image == "cma-6.1-numa" }
        #expect(boots.count == 3)
        for b in boots {
            #expect(b.facts.nodeMemory.map(\.node).contains(1), "\(b): the guest has two nodes")
            let p = Oracle.predict(OracleFixture.input(b, try #require(images[b.image])))
            #expect(p.nodeAreas == nil, "\(b)")
            #expect(b.facts.reserved.count == (b.cmdline.contains("cma=128M") ? 1 : 0), "\(b)")
            #expect(b.facts.unknownParameters == (b.cmdline.hasPrefix("numa_cma") ? ["numa_cma=0:64M"] : []), "\(b)")
            #expect(p.unknownParameters == b.facts.unknownParameters, "\(b)")
        }
    }

    /// hugetlb_cma= needs a free 1 GiB-aligned GiB: none on a 4 GiB pc guest (recorded: Failed to reserve), one at 4 GiB on 8 GiB.
    @Test func oraclePredictsHugetlbPlacementAndFailure() throws {
        let images = try OracleFixture.images()
        let boots = try OracleFixture.boots().filter { $0.image == "cma-6.12" && $0.cmdline == "hugetlb_cma=1G" && $0.cpuModel == "max" }
        #expect(boots.count == 2)
        for b in boots {
            let p = Oracle.predict(OracleFixture.input(b, try #require(images[b.image])))
            if b.memory == .gib(4) {
                #expect(p.outcome == .failed && p.nodeFailures?.map(\.name) == ["hugetlb0"] && b.facts.failedMiB == [1024])
            } else {
                #expect(p.nodeAreas?.first?.baseMin == 1 << 32 && b.facts.reserved.first?.base == 1 << 32)
            }
        }
        // Without 1 GiB pages (QEMU's default CPU) x86 never reserves it.
        let plain = try #require(try OracleFixture.boots().first { $0.image == "cma-6.12" && $0.cmdline == "hugetlb_cma=1G" && $0.cpuModel == nil })
        #expect(Oracle.predict(OracleFixture.input(plain, try #require(images[plain.image]))).nodeAreas == nil)
        #expect(plain.facts.cmaLines == ["hugetlb_cma: the option isn't supported by current arch"] && plain.facts.reserved.isEmpty)
    }
}
