import Foundation
import Testing
@testable import LabCore

/// One arm64 boot recorded by Scripts/record-arm64-cases: the case (memory, NUMA, command line, device-tree nodes)
/// and what the kernel printed.
struct RecordedArm64Boot: CustomStringConvertible {
    var name: String
    var release: String
    var memory: ByteSize
    var cpus = 1
    var numaNodes: [ByteSize] = []
    /// The case's own parameters (cmalab adds its console, panic and dyndbg ones in front).
    var cmdline: String
    /// The profile's `reserved-memory:` list in YAML flow style; empty for none.
    var treeYAML: String
    var initrdBytes: UInt64
    /// The size of the `-dtb` file QEMU was given; 0 when QEMU built the tree itself.
    var dtbBytes: UInt64
    /// CmaTotal after boot; nil when the guest never reported /proc/meminfo (a crash).
    var cmaTotalKiB: UInt64?
    var ending: String
    var lines: [String]

    var description: String { "\(name) (\(memory)\(numaNodes.isEmpty ? "" : " NUMA \(numaNodes)") `\(cmdline)`\(treeYAML.isEmpty ? "" : " + device tree"))" }
    var spec: MachineSpec { MachineSpec(memory: memory, cpus: cpus, type: .virt, numaNodes: numaNodes, architecture: .arm64) }
    var facts: BootLogFacts { KernelLogParser.facts(from: lines) }

    /// The device tree as a profile with this case's `device-tree:` section parses it.
    func deviceTree() throws -> DeviceTree {
        guard !treeYAML.isEmpty else { return DeviceTree() }
        let text = "name: \(name)\nmachine: {arch: arm64, memory: \(memory)}\ndevice-tree:\n  reserved-memory: \(treeYAML)\n"
        return try Profile.parse(text, file: "\(name).yaml").deviceTree
    }
}

/// cma-6.12-arm64 as recorded: its release, the CMA-relevant .config lines and the first 64 bytes of its Image.
struct RecordedArm64Image {
    var version: KernelVersion
    var config: KernelConfig
    var header: [UInt8]
    var kernel: KernelImageInfo? { KernelImageInfo.arm64Header(header, ramBase: GuestMemoryMap.virtRAMBase) }
}

enum Arm64Fixture {
    static func boots() throws -> [RecordedArm64Boot] {
        try Fixture.text("arm64-cases.tsv").split(separator: "\n").map { row in
            let f = row.split(separator: "\t", omittingEmptySubsequences: false).map(String.init)
            guard f.count == 11, let initrd = UInt64(f[6]), let dtb = UInt64(f[7]), RunEnding(rawValue: f[9]) != nil else {
                throw FixtureError("bad arm64-cases.tsv row: \(row)")
            }
            var boot = RecordedArm64Boot(name: f[0], release: f[1], memory: try ByteSize.parse(f[2]),
                                         cmdline: f[4] == "-" ? "" : f[4], treeYAML: f[5] == "-" ? "" : f[5],
                                         initrdBytes: initrd, dtbBytes: dtb, cmaTotalKiB: UInt64(f[8]), ending: f[9],
                                         lines: f[10].isEmpty ? [] : f[10].components(separatedBy: " | "))
            for part in f[3].split(separator: ";") where part != "-" {
                let kv = part.split(separator: "=", maxSplits: 1).map(String.init)
                switch (kv.first, kv.count) {
                case ("cpus", 2): boot.cpus = Int(kv[1]) ?? 1
                case ("numa", 2): boot.numaNodes = try kv[1].split(separator: ",").map { try ByteSize.parse(String($0)) }
                default: throw FixtureError("bad machine `\(f[3])` in arm64-cases.tsv row: \(row)")
                }
            }
            return boot
        }
    }

    static func image() throws -> RecordedArm64Image {
        let row = try Fixture.text("arm64-image.tsv").split(separator: "\n").first ?? ""
        let f = row.split(separator: "\t").map(String.init)
        guard f.count == 4, let v = KernelVersion(release: f[1]), f[3].count == 128 else { throw FixtureError("bad arm64-image.tsv row: \(row)") }
        let hex = Array(f[3])
        let header = try stride(from: 0, to: hex.count, by: 2).map { i in
            guard let b = UInt8(String(hex[i...i + 1]), radix: 16) else { throw FixtureError("bad header byte in arm64-image.tsv") }
            return b
        }
        return RecordedArm64Image(version: v, config: KernelConfig(parsing: f[2].split(separator: " ").joined(separator: "\n")), header: header)
    }

    /// The oracle's input for a recorded boot: exactly what cmalab gave QEMU and the kernel.
    static func input(_ b: RecordedArm64Boot, _ image: RecordedArm64Image) throws -> OracleInput {
        var input = OracleInput(version: image.version, config: image.config, machine: b.spec,
                                commandLine: KernelCommandLine(parsing: b.facts.commandLine ?? b.cmdline),
                                initrdSize: b.initrdBytes, kernelImage: image.kernel)
        input.deviceTree = try b.deviceTree()
        input.deviceTreeBlobSize = b.dtbBytes == 0 ? nil : b.dtbBytes
        return input
    }

    /// Observations as a run builds them from this console, with the CmaTotal the agent read after boot.
    static func observations(_ b: RecordedArm64Boot) -> Observations {
        var o = Observations(profile: "fixture", image: "cma-6.12-arm64", machine: b.spec, commandLine: KernelCommandLine(parsing: b.cmdline),
                             accelerator: "tcg", ending: RunEnding(rawValue: b.ending)!, boot: b.facts)
        o.configCMA = true
        if let total = b.cmaTotalKiB {
            o.meminfo = [MeminfoSnapshot(label: "boot", cmaTotalKiB: total, cmaFreeKiB: nil, memTotalKiB: nil, memFreeKiB: nil)]
        }
        return o
    }
}

@Suite struct OracleArm64Tests {
    /// Every recorded arm64 boot, predicted from its inputs alone and compared with what the kernel printed: the
    /// outcome, the `cma=` area, each device-tree pool, the bypassed nodes and the failures; and every line of the
    /// reserved-memory code the oracle says the kernel prints is among the printed ones.
    @Test func predictionsMatchRecordedBoots() throws {
        let image = try Arm64Fixture.image()
        let boots = try Arm64Fixture.boots()
        #expect(boots.count >= 24)
        var agreed = 0
        for b in boots {
            let prediction = Oracle.predict(try Arm64Fixture.input(b, image))
            let check = try #require(Oracle.compare(prediction, with: Arm64Fixture.observations(b)), "\(b): no comparison")
            var diffs = check.divergence.map { [$0] } ?? []
            let printed = Set(b.lines)
            for m in prediction.messages where (m.hasPrefix("Reserved memory: ") || m.hasPrefix("OF: reserved mem: ")) && !printed.contains(m) {
                diffs.append("missing line `\(m)`")
            }
            #expect(diffs.isEmpty, "\(b): predicted \(prediction.summary); \(diffs.joined(separator: "; "))")
            agreed += diffs.isEmpty ? 1 : 0
        }
        print("oracle agreement on recorded arm64 boots: \(agreed)/\(boots.count)")
    }

    /// What the recorded boots are: cmalab's own command line in front of the case's, 6.12 on `virt`, one memory
    /// range (or the NUMA nodes) from 0x40000000, and a spread of outcomes worth checking.
    @Test func recordedBootsCoverTheRules() throws {
        let boots = try Arm64Fixture.boots()
        for b in boots {
            #expect(b.release.hasPrefix("6.12."), "\(b)")
            #expect(b.facts.deviceTree.model == "linux,dummy-virt", "\(b)")
            let lab = "console=ttyAMA0 earlycon panic=-1 dyndbg=\"file mm/cma.c +p\""
            #expect(b.facts.commandLine == (b.cmdline.isEmpty ? lab : lab + " " + b.cmdline), "\(b)")
            // Each node's ranges (a no-map region splits one) add up to its size, from the RAM base on.
            let nodes = b.facts.nodeMemory
            let sizes = b.numaNodes.isEmpty ? [b.memory.bytes] : b.numaNodes.map(\.bytes)
            let perNode = sizes.indices.map { i in nodes.filter { $0.node == i }.reduce(UInt64(0)) { $0 + ($1.end - $1.start + 1) } }
            #expect(perNode == sizes, "\(b): node ranges \(nodes)")
            #expect(nodes.first?.start == GuestMemoryMap.virtRAMBase, "\(b)")
            #expect(zip(nodes, nodes.dropFirst()).allSatisfy { $0.end + 1 == $1.start }, "\(b): node ranges \(nodes)")
            #expect((b.dtbBytes != 0) == !b.treeYAML.isEmpty, "\(b): a -dtb file exactly when the case has nodes")
        }
        let facts = boots.map(\.facts)
        #expect(Set(boots.map(\.memory)).isSuperset(of: [.gib(1), .gib(2), .gib(3), .gib(4), .gib(6), .gib(8)]))
        #expect(boots.contains { !$0.numaNodes.isEmpty })
        #expect(boots.contains { $0.ending == "kernel-crash" })
        #expect(facts.contains { f in f.reserved.contains { $0.base >= 1 << 32 } } == false, "no cma= area above the DMA limit")
        #expect(facts.contains { $0.deviceTree.pools.contains { $0.base >= 1 << 32 } }, "a device-tree pool above 4 GiB")
        #expect(facts.contains { $0.deviceTree.pools.count >= 3 })
        #expect(facts.contains { !$0.deviceTree.bypassed.isEmpty && !$0.reserved.isEmpty })
        #expect(facts.contains { !$0.deviceTree.bypassed.isEmpty && $0.reserved.isEmpty }, "cma=0 bypasses the default pool and reserves nothing")
        #expect(facts.contains { f in f.deviceTree.failures.contains { $0.contains("failed to allocate") } })
        #expect(facts.contains { f in f.deviceTree.failures.contains { $0.contains("failed to reserve") } })
        #expect(facts.contains { f in f.deviceTree.regions.contains { !$0.map } })
        for reason in ["must be aligned", "exceeds limit"] {
            #expect(facts.contains { $0.failureReasons.contains { $0.contains(reason) } }, "\(reason)")
        }
        #expect(facts.contains { $0.failureReasons.isEmpty && !$0.failedMiB.isEmpty }, "a bare Failed to reserve (busy or no room)")
    }

    /// The places the oracle derives before any CMA rule, from the recorded inputs: the kernel from the Image
    /// header and QEMU's initrd and device-tree addresses. A `-dtb` file occupies (size + 10000) * 2 bytes (QEMU's
    /// load_device_tree makes room to edit it); QEMU's own tree is 1 MiB.
    @Test func virtLayoutFromTheRecordedImage() throws {
        let image = try Arm64Fixture.image()
        let kernel = try #require(image.kernel)
        #expect(kernel.reserved == AddressRange(0x4020_0000, 0x407c_0000))
        #expect(Oracle.virtInitrd(memory: 2 << 30, size: 2_785_792) == AddressRange(0x4800_0000, 0x482a_9000))
        #expect(Oracle.virtInitrd(memory: 1 << 30, size: 4096) == AddressRange(0x4800_0000, 0x4800_1000))
        #expect(Oracle.virtInitrd(memory: 128 << 20, size: 4096) == AddressRange(0x4400_0000, 0x4400_1000))
        #expect(Oracle.virtInitrd(memory: 2 << 30, size: 0) == nil)
        #expect(Oracle.virtDeviceTreeBlob(after: 0x482a_9000, fileSize: 7735) == AddressRange(0x4840_0000, 0x4840_8a8e))
        #expect(Oracle.virtDeviceTreeBlob(after: 0x482a_9000, fileSize: nil) == AddressRange(0x4840_0000, 0x4850_0000))
    }
}
