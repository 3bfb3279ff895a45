import Foundation
import Testing
@testable import LabCore

/// One boot recorded by Scripts/record-oracle-cases: what was booted and what the kernel printed.
struct RecordedBoot: CustomStringConvertible {
    var image: String
    var release: String
    var machine: MachineType
    /// `;numa=2G,2G`, `;cpus=2`, `;cpu=max` after the machine type (NUMA and hugetlb_cma= boots).
    var numaNodes: [ByteSize] = []
    var cpus = 1
    var cpuModel: String?
    var memory: ByteSize
    var cmdline: String
    var initrdBytes: UInt64
    /// powered-off or kernel-crash.
    var ending: String
    var lines: [String]
    var description: String { "\(image) \(machine.rawValue)\(numaNodes.isEmpty ? "" : " NUMA \(numaNodes)")\(cpuModel.map { " -cpu \($0)" } ?? "") \(memory) `\(cmdline)`" }
    var spec: MachineSpec { MachineSpec(memory: memory, cpus: cpus, type: machine, numaNodes: numaNodes, cpuModel: cpuModel) }

    var facts: BootLogFacts { KernelLogParser.facts(from: lines) }
    /// The full command line the kernel saw (`Command line: ...`).
    var kernelCommandLine: KernelCommandLine { KernelCommandLine(parsing: facts.commandLine ?? cmdline) }
}

/// What the recorded images are (Scripts/record-oracle-images): release, the CMA-relevant .config lines, vmlinux's end.
struct RecordedImage {
    var version: KernelVersion
    var config: KernelConfig
    var kernel: KernelImageInfo
}

enum OracleFixture {
    static func boots() throws -> [RecordedBoot] {
        try Fixture.text("oracle-cases.tsv").split(separator: "\n").map { row in
            let f = row.split(separator: "\t", omittingEmptySubsequences: false).map(String.init)
            let machineParts = f.count == 8 ? f[2].split(separator: ";").map(String.init) : []
            guard f.count == 8, let machine = MachineType(rawValue: machineParts.first ?? ""), let initrd = UInt64(f[5]),
                  RunEnding(rawValue: f[6]) != nil else {
                throw FixtureError("bad oracle-cases.tsv row: \(row)")
            }
            var boot = RecordedBoot(image: f[0], release: f[1], machine: machine, memory: try ByteSize.parse(f[3]), cmdline: f[4],
                                    initrdBytes: initrd, ending: f[6],
                                    lines: f[7].isEmpty ? [] : f[7].components(separatedBy: " | "))
            for part in machineParts.dropFirst() {
                let kv = part.split(separator: "=", maxSplits: 1).map(String.init)
                switch (kv.first, kv.count) {
                case ("numa", 2): boot.numaNodes = try kv[1].split(separator: ",").map { try ByteSize.parse(String($0)) }
                case ("cpus", 2): boot.cpus = Int(kv[1]) ?? 1
                case ("cpu", 2): boot.cpuModel = kv[1]
                default: throw FixtureError("bad machine `\(f[2])` in oracle-cases.tsv row: \(row)")
                }
            }
            return boot
        }
    }

    static func images() throws -> [String: RecordedImage] {
        var out: [String: RecordedImage] = [:]
        for row in try Fixture.text("oracle-images.tsv").split(separator: "\n") {
            let f = row.split(separator: "\t").map(String.init)
            guard f.count == 5, let v = KernelVersion(release: f[1]), let end = UInt64(f[3].dropFirst(2), radix: 16),
                  let initSize = UInt64(f[4].dropFirst(2), radix: 16) else { throw FixtureError("bad oracle-images.tsv row: \(row)") }
            let config = KernelConfig(parsing: f[2].split(separator: " ").joined(separator: "\n"))
            out[f[0]] = RecordedImage(version: v, config: config,
                                      kernel: KernelImageInfo(initSize: initSize, imageEnd: end == 0 ? nil : end))
        }
        return out
    }

    /// The oracle's input for a recorded boot.
    static func input(_ b: RecordedBoot, _ image: RecordedImage) -> OracleInput {
        OracleInput(version: image.version, config: image.config, machine: b.spec,
                    commandLine: b.kernelCommandLine, initrdSize: b.initrdBytes, kernelImage: image.kernel)
    }

    /// Observations as a run would build them from this console (no agent: the outcome comes from the log).
    static func observations(_ b: RecordedBoot, _ image: RecordedImage) -> Observations {
        var o = Observations(profile: "fixture", image: b.image, machine: b.spec, commandLine: KernelCommandLine(parsing: b.cmdline),
                             accelerator: "tcg", ending: RunEnding(rawValue: b.ending)!, boot: b.facts)
        o.configCMA = image.config.isEnabled("CMA")
        return o
    }
}

struct FixtureError: Error, CustomStringConvertible {
    var description: String
    init(_ d: String) { description = d }
}

@Suite struct OracleTests {
    /// The table: every recorded real boot, predicted from its inputs alone and compared with what the kernel printed.
    @Test func predictionsMatchRecordedBoots() throws {
        let images = try OracleFixture.images()
        let boots = try OracleFixture.boots()
        #expect(boots.count >= 25)
        var agreed: [String: (Int, Int)] = [:]
        for b in boots {
            let image = try #require(images[b.image], "no oracle-images.tsv line for \(b.image)")
            let prediction = Oracle.predict(OracleFixture.input(b, image))
            let check = try #require(Oracle.compare(prediction, with: OracleFixture.observations(b, image)))
            #expect(check.agrees, "\(b): predicted \(prediction.summary); \(check.divergence ?? "")")
            agreed[b.release, default: (0, 0)].0 += check.agrees ? 1 : 0
            agreed[b.release, default: (0, 0)].1 += 1
        }
        for (release, (ok, all)) in agreed.sorted(by: { $0.key < $1.key }) { print("oracle agreement on recorded \(release) boots: \(ok)/\(all)") }
    }

    /// The recorded boots cover every rule: each outcome and each failure message appears among the REAL results.
    @Test func recordedBootsCoverEveryRule() throws {
        let boots = try OracleFixture.boots()
        let facts = boots.map(\.facts)
        #expect(boots.contains { $0.ending == "kernel-crash" })
        #expect(facts.contains { f in f.reserved.contains { $0.base >= 1 << 32 } }, "bottom-up above 4 GiB")
        #expect(facts.contains { f in f.reserved.contains { $0.base < 1 << 31 } }, "top-down below the initrd")
        for reason in ["must be aligned", "low/high memory boundary", "exceeds limit", "Not enough slots"] {
            #expect(facts.contains { $0.failureReasons.contains { $0.contains(reason) } }, "\(reason)")
        }
        #expect(facts.contains { $0.failureReasons.isEmpty && !$0.failedMiB.isEmpty }, "a bare Failed to reserve (busy or no room)")
        #expect(facts.contains { $0.unknownParameters.contains("cma=64M") }, "cma= ignored by a kernel without DMA_CMA")
        #expect(facts.contains { $0.cmaLines.contains("cma: Config string not provided") })
        #expect(boots.contains { $0.machine == .q35 } && boots.contains { $0.machine == .pc })
    }

    /// The oracle's picture of the guest (e820 and initrd) is what the kernel printed.
    @Test func guestMapAndInitrdMatchRecordedBoots() throws {
        let images = try OracleFixture.images()
        for b in try OracleFixture.boots() {
            let map = GuestMemoryMap(machine: b.machine, memory: b.memory.bytes)
            #expect(map.e820 == b.facts.e820, "\(b): e820")
            let image = try #require(images[b.image])
            let initrd = map.initrd(size: b.initrdBytes, initrdAddrMax: image.kernel.initrdAddrMax)
            #expect(initrd.map { MemoryRange(start: $0.start, end: $0.end - 1) } == b.facts.ramdisk, "\(b): RAMDISK")
        }
    }

    /// The measured examples of cma-reference.md §10.3, with their ~1 MB busybox initrd (`RAMDISK: [mem 0x7fee3000-0x7ffdffff]`
    /// on pc 2G and `0x7ff03000-0x7fffffff` on pc 4G, so 0xfc000-0xfcfff bytes).
    @Test func referenceExamplesWithTheirInitrd() {
        func predict(_ m: MachineType, _ mem: ByteSize, _ cma: String, initrd: UInt64 = 0xfc800, _ v: KernelVersion = KernelVersion(6, 12, 117)) -> CMAPrediction {
            Oracle.predict(OracleInput(version: v, config: nil, machine: MachineSpec(memory: mem, type: m),
                                       commandLine: KernelCommandLine(parsing: "console=ttyS0 " + cma), initrdSize: initrd,
                                       kernelImage: KernelImageInfo(initSize: 0xe10000, imageEnd: 0x1a18000)))
        }
        #expect(predict(.pc, .gib(2), "cma=64M").ramdisk == MemoryRange(start: 0x7fee3000, end: 0x7ffdffff))
        #expect(predict(.pc, .gib(2), "cma=64M").area?.baseMin == 0x7bc0_0000)
        #expect(predict(.pc, .gib(2), "cma=64M").area?.exact == true)
        #expect(predict(.pc, .gib(4), "cma=1G").area?.baseMin == 0x3fc0_0000)
        #expect(predict(.pc, .gib(4), "cma=1G").ramdisk == MemoryRange(start: 0x7ff03000, end: 0x7fffffff))
        #expect(predict(.pc, .gib(8), "cma=64M").area?.baseMin == 1 << 32)
        #expect(predict(.q35, .gib(4), "cma=64M").area?.baseMin == 1 << 32)
        #expect(predict(.pc, .gib(2), "cma=3M").area?.baseMin == 0x7f80_0000)
        // 6.1 prints no node.
        let old = predict(.pc, .gib(2), "cma=4G", KernelVersion(6, 1, 192))
        #expect(old.messages == ["cma: Size (0x0000000100000000) of region at 0x0000000000000000 exceeds limit (0x000000007fc00000)",
                                 "cma: Failed to reserve 4096 MiB"])
    }

    @Test func alignmentFollowsVersionAndConfig() {
        let tiny = KernelConfig(values: ["CONFIG_CMA": "y"])
        let thp = KernelConfig(values: ["CONFIG_CMA": "y", "CONFIG_TRANSPARENT_HUGEPAGE": "y"])
        let hugetlb = KernelConfig(values: ["CONFIG_CMA": "y", "CONFIG_HUGETLB_PAGE": "y"])
        #expect(Oracle.alignment(KernelVersion(6, 12), tiny).bytes == 4 << 20)
        #expect(Oracle.alignment(KernelVersion(6, 12), thp).bytes == 2 << 20)
        #expect(Oracle.alignment(KernelVersion(6, 1), thp).bytes == 4 << 20)
        #expect(Oracle.alignment(KernelVersion(6, 1), hugetlb).bytes == 2 << 20)
        #expect(Oracle.alignment(KernelVersion(5, 10), hugetlb).bytes == 4 << 20)
        // A 2 MiB-aligned kernel accepts a fixed base at an odd 2 MiB and rounds 3M to 4M, 1 to 2M.
        let p = Oracle.predict(OracleInput(version: KernelVersion(6, 12), config: KernelConfig(values: ["CONFIG_CMA": "y", "CONFIG_DMA_CMA": "y", "CONFIG_HUGETLB_PAGE": "y"]),
                                           machine: MachineSpec(memory: .gib(2)), commandLine: "cma=1", initrdSize: nil))
        #expect(p.area?.sizeMiB == 2)
    }

    @Test func versionRulesForTheOtherParameters() {
        func predict(_ v: KernelVersion, _ options: [String: String], _ line: KernelCommandLine, cpu: String? = nil) -> CMAPrediction {
            var values = ["CONFIG_CMA": "y", "CONFIG_DMA_CMA": "y"]
            values.merge(options) { $1 }
            return Oracle.predict(OracleInput(version: v, config: KernelConfig(values: values),
                                              machine: MachineSpec(memory: .gib(2), cpuModel: cpu), commandLine: line, initrdSize: nil))
        }
        // 6.1: cma_pernuma= with DMA_PERNUMA_CMA is consumed and does nothing on x86; numa_cma= does not exist.
        let pernuma61 = predict(KernelVersion(6, 1), ["CONFIG_DMA_PERNUMA_CMA": "y"], "cma_pernuma=16M numa_cma=0:16M")
        #expect(pernuma61.unknownParameters == ["numa_cma=0:16M"])
        #expect(pernuma61.otherAreas.first?.contains("does nothing on x86") == true)
        // 6.12 with DMA_NUMA_CMA knows both.
        let numa612 = predict(KernelVersion(6, 12), ["CONFIG_NUMA": "y", "CONFIG_DMA_NUMA_CMA": "y"], "cma_pernuma=16M numa_cma=0:16M")
        #expect(numa612.unknownParameters.isEmpty)
        // hugetlb_cma= needs HUGETLBFS, then GBPAGES from the CPU.
        #expect(predict(KernelVersion(6, 12), [:], "hugetlb_cma=1G").unknownParameters == ["hugetlb_cma=1G"])
        #expect(predict(KernelVersion(6, 12), ["CONFIG_HUGETLBFS": "y"], "hugetlb_cma=1G").otherAreas.first?.contains("pdpe1gb") == true)
        #expect(predict(KernelVersion(6, 12), ["CONFIG_HUGETLBFS": "y"], "hugetlb_cma=1G", cpu: "max").otherAreas.first?.contains("hugetlb<nid>") == true)
        // CMA_AREAS=0: no slot on 6.12, one slot on 6.1.
        #expect(predict(KernelVersion(6, 12), ["CONFIG_CMA_AREAS": "0"], "cma=64M").failure == .notEnoughSlots)
        #expect(predict(KernelVersion(6, 1), ["CONFIG_CMA_AREAS": "0"], "cma=64M").outcome == .reserved)
    }

    @Test func compareReportsEachDivergence() throws {
        let images = try OracleFixture.images()
        let b = try #require(try OracleFixture.boots().first { $0.image == "cma-6.12" && $0.cmdline == "cma=64M" && $0.memory == .gib(2) && $0.machine == .pc })
        let image = try #require(images[b.image])
        var p = Oracle.predict(OracleFixture.input(b, image))
        let o = OracleFixture.observations(b, image)
        #expect(Oracle.compare(p, with: o)?.agrees == true)
        p.area?.baseMin += 4 << 20; p.area?.baseMax += 4 << 20
        p.messages = []
        let moved = try #require(Oracle.compare(p, with: o))
        #expect(!moved.agrees && moved.divergence?.hasPrefix("base: predicted") == true)
        p.outcome = .failed
        #expect(Oracle.compare(p, with: o)?.divergence?.contains("outcome: predicted failed, observed reserved") == true)
        var timedOut = o
        timedOut.ending = .timeout
        #expect(Oracle.compare(p, with: timedOut) == nil)
    }

    /// The terminal table lists divergences after the table, before the summary line, and nothing without oracle checks.
    @Test func tableShowsDivergences() throws {
        let images = try OracleFixture.images()
        let b = try #require(try OracleFixture.boots().first { $0.image == "cma-6.12" && $0.cmdline == "cma=4G" })
        let image = try #require(images[b.image])
        let p = Oracle.predict(OracleFixture.input(b, image))
        var held = Verdict(profile: "held", image: "cma-6.12", kind: .pass, checks: [])
        held.oracle = Oracle.compare(p, with: OracleFixture.observations(b, image))
        var wrong = p
        wrong.failure = .busy
        wrong.messages = []
        var diverged = Verdict(profile: "diverged", image: "cma-6.12", kind: .pass, checks: [])
        diverged.oracle = Oracle.compare(wrong, with: OracleFixture.observations(b, image))
        let lines = Report.table([held, diverged], color: false).split(separator: "\n", omittingEmptySubsequences: false).map(String.init)
        #expect(lines.contains("oracle: 1 of 2 predictions held; 1 diverged (a kernel behaviour change or a gap in the oracle; not a profile failure)"))
        #expect(lines.contains { $0.hasPrefix("  DIVERGED  diverged@cma-6.12: predicted failed (busy)") && $0.contains("failure: predicted busy, observed exceeds-limit") })
        #expect(lines.last(where: { !$0.isEmpty }) == "2 passed, 0 failed, 0 errors")
        #expect(!Report.table([Verdict(profile: "x", image: "y", kind: .pass, checks: [])], color: false).contains("oracle:"))
    }

    @Test func versionParsing() {
        #expect(KernelVersion(release: "6.12.117") == KernelVersion(6, 12, 117))
        #expect(KernelVersion(release: "6.1.0-56-amd64") == KernelVersion(6, 1, 0))
        #expect(KernelVersion(configText: "#\n# Automatically generated file; DO NOT EDIT.\n# Linux/x86 6.1.192 Kernel Configuration\n#\n") == KernelVersion(6, 1, 192))
        #expect(KernelVersion(release: "linux") == nil)
    }
}
