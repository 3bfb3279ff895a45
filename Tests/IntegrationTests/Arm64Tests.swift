import Foundation
import Testing
import LabCore
@testable import LabRuntime

extension Integration {
/// arm64 guests on QEMU's `virt` board: the cross-built cma-6.12-arm64 kernel, the aarch64 agent, device-tree CMA
/// pools compiled into QEMU's own tree, and the oracle on each bundled arm64 profile.
@Suite struct Arm64Tests {
    func tempDir() throws -> String {
        let dir = NSTemporaryDirectory() + "cmalab-arm64-\(UUID().uuidString)"
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        return dir
    }

    @Test func everyArm64ProfilePassesAndTheOracleAgrees() throws {
        let dir = try tempDir()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let r = try IT.runCLI(["run", "Profiles/arm64", "--accel", "tcg", "--json", dir + "/r.json", "--html", dir + "/r.html"])
        #expect(r.status == 0, "stdout:\n\(r.stdout)\nstderr:\n\(r.stderr)")
        #expect(r.stdout.hasSuffix("9 passed, 0 failed, 0 errors\n"))
        #expect(r.stdout.contains("oracle: 9 of 9 predictions held"))
        let (verdicts, _) = try Report.decodeResults(Array(try Data(contentsOf: URL(fileURLWithPath: dir + "/r.json"))))
        #expect(verdicts.count == 9 && verdicts.allSatisfy { $0.kind == .pass && $0.image == "cma-6.12-arm64" })

        // The machine is arm64 `virt`, and its RAM starts at 0x40000000.
        let seed = try #require(verdicts.first { $0.profile == "arm64-seed" }?.observations)
        #expect(seed.machineSpec?.architecture == .arm64 && seed.machineSpec?.type == .virt)
        #expect(seed.boot.nodeMemory.first?.start == 0x4000_0000)
        #expect(seed.boot.reserved.first?.base == 0xc000_0000)

        // NUMA from the device tree: an area on each node, each inside its node, as the oracle placed them.
        let numa = try #require(verdicts.first { $0.profile == "arm64-numa-per-node" }?.observations)
        #expect(numa.boot.nodeMemory.map(\.node) == [0, 1])
        #expect(numa.boot.reserved.map(\.node) == [0, 1, -1])

        // An expected crash before the PL011 console is up, seen through earlycon: a kernel crash, not an error.
        let crash = try #require(verdicts.first { $0.profile == "arm64-fixed-below-ram-crash" }?.observations)
        #expect(crash.ending == .kernelCrash && crash.crash?.panicLine?.contains("Attempted to kill init") == true)

        // A device-tree pool: its line, its debugfs area named after the node, alloc and free on it.
        let pool = try #require(verdicts.first { $0.profile == "dt-default-pool" })
        let facts = try #require(pool.observations?.boot.deviceTree)
        #expect(facts.pools.count == 1 && facts.pools[0].sizeMiB == 256)
        #expect(facts.regions.first { $0.name == "linux,cma" }?.reusable == true)
        #expect(pool.observations?.areas.map(\.name) == ["linux,cma"])
        // The generated source and blob are artifacts, and reproduce.sh boots the compiled blob.
        for f in ["device-tree.dts", "device-tree.dtb", "machine.dtb", "reproduce.sh"] {
            #expect(FileManager.default.fileExists(atPath: pool.runDirectory + "/" + f), "missing \(f)")
        }
        let dts = try String(contentsOfFile: pool.runDirectory + "/device-tree.dts", encoding: .utf8)
        #expect(dts.contains("linux,cma {") && dts.contains("linux,cma-default;"))
        #expect(try String(contentsOfFile: pool.runDirectory + "/reproduce.sh", encoding: .utf8).contains("-dtb"))

        // cma= wins over the default pool; the pool's memory is not kept.
        let bypass = try #require(verdicts.first { $0.profile == "cma-overrides-dt" }?.observations)
        #expect(bypass.boot.deviceTree.bypassed == ["linux,cma"] && bypass.boot.deviceTree.pools.isEmpty)
        #expect(bypass.boot.reserved.first?.sizeMiB == 64)

        // The no-map region: printed as nomap, and the pool lies below it.
        let nomap = try #require(verdicts.first { $0.profile == "dt-nomap-hole" }?.observations?.boot.deviceTree)
        #expect(nomap.regions.contains { $0.name == "firmware@60000000" && !$0.map })
        #expect((nomap.pools.first?.base ?? 0) + (64 << 20) <= 0x6000_0000)

        // The HTML report draws the arm64 map from its memory node.
        let html = try String(contentsOfFile: dir + "/r.html", encoding: .utf8)
        #expect(html.contains("0x40000000"))
        #expect(IT.qemuProcesses(ofRuns: verdicts.map(\.runDirectory)).isEmpty)
    }

    /// The machine is whatever the image is: `cmalab boot --image cma-6.12-arm64` boots `virt` with the aarch64 agent,
    /// and an x86 profile on the arm64 image is refused before anything boots.
    @Test func theImageDecidesTheMachineAndAMismatchIsRefused() throws {
        let boot = try IT.runCLI(["boot", "--image", "cma-6.12-arm64", "--memory", "1G", "--append", "cma=32M", "--accel", "tcg", "--quiet"])
        #expect(boot.status == 0, "\(boot.stdout)\n\(boot.stderr)")
        #expect(boot.stderr.contains("cma: Reserved 32 MiB at 0x000000007ce00000"), "\(boot.stderr)")
        let x86 = try IT.runCLI(["run", "Profiles/seed-1g-at-1-2g.yaml", "--image", "cma-6.12-arm64", "--accel", "tcg"])
        #expect(x86.status != 0)
        #expect(x86.stdout.contains("preflight: image cma-6.12-arm64 is an arm64 kernel but the profile's machine is x86_64"), "\(x86.stdout)")
    }
}
}
