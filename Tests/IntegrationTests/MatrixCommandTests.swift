import Foundation
import Testing
import LabCore
@testable import LabRuntime

extension Integration {
/// `cmalab matrix` on real kernels: parallel cells, shards that merge into the full run, JUnit read by a
/// real consumer, and `cmalab diff` on real run directories.
@Suite struct MatrixCommandTests {
    func tempDir() throws -> String {
        let dir = NSTemporaryDirectory() + "cmalab-matrix-\(UUID().uuidString)"
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        return dir
    }

    func results(_ path: String) throws -> [Verdict] {
        try Report.decodeResults(Array(try Data(contentsOf: URL(fileURLWithPath: path)))).0
    }

    /// What must be equal between a full run and the merged shards: each cell's verdict and checks.
    func fingerprint(_ vs: [Verdict]) -> [String] {
        vs.map { v in "\(v.key) \(v.kind.rawValue) " + v.checks.map { "\($0.name)=\($0.passed)" }.joined(separator: ",") }.sorted()
    }

    @Test func shardsMergeIntoTheFullRun() throws {
        let dir = try tempDir()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let matrix = IT.lab.paths.home + "/Matrices/ci.yaml"

        let full = try IT.runCLI(["matrix", matrix, "--jobs", "2", "--accel", "tcg", "--json", dir + "/full.json"])
        #expect(full.status == 0, "stdout:\n\(full.stdout)\nstderr:\n\(full.stderr)")
        #expect(full.stdout.hasSuffix("9 passed, 0 failed, 0 errors\n"))
        let all = try results(dir + "/full.json")
        #expect(Set(all.map(\.key)).count == 9)
        #expect(all.allSatisfy { $0.cell != nil })
        // Every cell had its own run directory.
        #expect(Set(all.map(\.runDirectory)).count == 9)
        #expect(full.stderr.contains("[9/9] "))

        for k in 1...2 {
            let r = try IT.runCLI(["matrix", matrix, "--jobs", "2", "--accel", "tcg", "--shard", "\(k)/2", "--json", dir + "/s\(k).json"])
            #expect(r.status == 0, "shard \(k): \(r.stderr)")
        }
        let s1 = try results(dir + "/s1.json"), s2 = try results(dir + "/s2.json")
        #expect(s1.count == 5 && s2.count == 4)
        #expect(Set(s1.map(\.key)).isDisjoint(with: s2.map(\.key)))

        let merge = try IT.runCLI(["report", "merge", dir + "/s1.json", dir + "/s2.json", "--json", dir + "/m.json", "--junit", dir + "/m.xml"])
        #expect(merge.status == 0, "\(merge.stderr)")
        #expect(merge.stdout.hasSuffix("9 passed, 0 failed, 0 errors\n"))
        #expect(fingerprint(try results(dir + "/m.json")) == fingerprint(all))

        // The merged JUnit, read by junitparser: a suite per image, a case per cell.
        let out = try runCapturing(["python3", "-c", """
            import sys, junitparser
            xml = junitparser.JUnitXml.fromfile(sys.argv[1])
            print(sorted((s.name, s.tests, s.failures) for s in xml))
            print(sorted(c.name for s in xml for c in s))
            """, dir + "/m.xml"])
        #expect(out.contains("[('cma-6.12', 4, 0), ('cma-6.12-uart', 4, 0), ('nocma-6.12', 1, 0)]"))
        #expect(out.contains("'seed-1g-at-1-2g@cma-6.12-uart'"))

        // Merging a shard with itself is refused: the cells would count twice.
        let twice = try IT.runCLI(["report", "merge", dir + "/s1.json", dir + "/s1.json"])
        #expect(twice.status == 2)
        #expect(twice.stderr.contains("is also in"))

        // diff between two real runs: cma=0 against the seed's 1 GiB area.
        let zero = try #require(all.first { $0.key == "cma-zero@cma-6.12" }), seed = try #require(all.first { $0.key == "seed-1g-at-1-2g@cma-6.12" })
        let diff = try IT.runCLI(["diff", zero.runDirectory, seed.runDirectory])
        #expect(diff.status == 1)
        #expect(diff.stdout.contains("CmaTotal at boot"))
        #expect(diff.stdout.contains("0 kB → 1048576 kB"))
        #expect(diff.stdout.contains("+ cma: Reserved 1024 MiB at 0x"))
        let same = try IT.runCLI(["diff", seed.runDirectory, seed.runDirectory])
        #expect(same.status == 0 && same.stdout.contains("no CMA differences"))
        #expect(IT.qemuProcesses(ofRuns: all.map(\.runDirectory)).isEmpty)
    }

    @Test func aBadMatrixFileIsRefusedBeforeAnythingBoots() throws {
        let dir = try tempDir()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        try "name: m\nimages: [cma-6.12]\nprofiles: [\(IT.lab.paths.home)/Profiles/cma-zero.yaml]\nexclude: [{profile: cma-zer0}]\n"
            .write(toFile: dir + "/m.yaml", atomically: true, encoding: .utf8)
        let r = try IT.runCLI(["matrix", dir + "/m.yaml"])
        #expect(r.status == 2)
        #expect(r.stderr.contains("m.yaml: at `exclude[0]`: this exclusion matches no cell"))
        #expect(r.seconds < 5)
    }
}
}
