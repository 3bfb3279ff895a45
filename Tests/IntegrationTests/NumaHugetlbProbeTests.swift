import Foundation
import Testing
import LabCore
@testable import LabRuntime

extension Integration {
    /// Issue 7 items 5-7 on real kernels: per-node areas on a two-node guest, a 1 GiB huge page out of the
    /// hugetlb_cma area, and probe-max's bisection checked against single boots.
    @Suite struct NumaHugetlbProbeTests {
        struct ProbeOutput: Decodable {
            var answer: ProbeMaxAnswer
            var oracle: ProbeMaxAnswer
            var boots: Int
            var alignmentBytes: UInt64
            var oracleAgrees: Bool
        }

        /// probe-max's answer is a real boundary: booting its size reserves, booting one alignment unit more does not.
        @Test func probeMaxAnswerIsTheBoundaryOfSingleBoots() throws {
            let r = try IT.runCLI(["probe-max", "--image", "cma-6.12", "--memory", "1G", "--at", "0-256M", "--accel", "tcg", "--json"])
            #expect(r.status == 0, "stdout:\n\(r.stdout)\nstderr:\n\(r.stderr)")
            let out = try JSONDecoder().decode(ProbeOutput.self, from: Data(r.stdout.utf8))
            // cma-6.12 has HUGETLB_PAGE, so its alignment is 2 MiB: 128 candidate sizes, a bisection needs 7 or 8 boots.
            #expect(out.alignmentBytes == 2 << 20)
            #expect(out.boots == out.answer.tries.count && (7...8).contains(out.boots))
            #expect(out.answer.largestBytes > 0 && out.answer.largestBytes < 256 << 20)
            let failing = try #require(out.answer.firstFailingBytes)
            #expect(failing == out.answer.largestBytes + out.alignmentBytes)
            #expect(out.oracleAgrees == (out.oracle.largestBytes == out.answer.largestBytes))

            var runs: [String] = []
            func reserves(_ bytes: UInt64) throws -> Bool {
                let b = try IT.runCLI(["boot", "--image", "cma-6.12", "--memory", "1G", "--append", "cma=\(bytes >> 20)M@0-256M",
                                       "--report", "--quiet", "--accel", "tcg"])
                #expect(b.status == 0, "stderr:\n\(b.stderr)")
                runs += b.stderr.matches(of: /console log: (\S+)\/console\.log/).map { String($0.1) }
                return b.stdout.contains("cma area reserved:")
            }
            #expect(try reserves(out.answer.largestBytes), "cma=\(out.answer.largestBytes >> 20)M@0-256M should reserve")
            #expect(try !reserves(failing), "cma=\(failing >> 20)M@0-256M should not reserve")
            #expect(runs.count == 2)
            #expect(IT.qemuProcesses(ofRuns: runs).isEmpty)
            #expect((0...out.boots).allSatisfy { IT.qemuProcesses(runNamed: "probe-max-cma-6.12-\($0)").isEmpty })
        }

        /// numa_cma= and cma_pernuma= put each area on its node; hugetlb_cma= serves a 1 GiB page from hugetlb0.
        @Test func numaAndHugetlbProfilesPassOnTheirImage() throws {
            let dir = NSTemporaryDirectory() + "cmalab-numa-\(UUID().uuidString)"
            try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
            defer { try? FileManager.default.removeItem(atPath: dir) }
            let profiles = IT.lab.paths.home + "/Profiles/"
            let r = try IT.runCLI(["run", profiles + "numa-per-node-areas.yaml", profiles + "hugetlb-cma-1g-page.yaml", "--accel", "tcg",
                                   "--json", dir + "/r.json"])
            #expect(r.status == 0, "stdout:\n\(r.stdout)\nstderr:\n\(r.stderr)")
            #expect(r.stdout.contains("oracle: 2 of 2 predictions held"))
            #expect(r.stdout.contains("qemu peak RSS: "))
            let (verdicts, _) = try Report.decodeResults(Array(try Data(contentsOf: URL(fileURLWithPath: dir + "/r.json"))))
            #expect(verdicts.count == 2 && verdicts.allSatisfy { $0.kind == .pass })

            let numa = try #require(verdicts.first { $0.profile == "numa-per-node-areas" }?.observations)
            #expect(Set(numa.boot.nodeMemory.map(\.node)) == [0, 1])
            let nodes = Dictionary(uniqueKeysWithValues: numa.areas.map { ($0.name, $0.node) })
            #expect(nodes == ["numa0": 0, "numa1": 1, "pernuma0": 0, "pernuma1": 1])
            #expect(numa.boot.reserved.map(\.node) == [0, 0, 1, 1])
            #expect((numa.qemuPeakRSSKiB ?? 0) > 0)

            let huge = try #require(verdicts.first { $0.profile == "hugetlb-cma-1g-page" }?.observations)
            #expect(huge.areas.map(\.name) == ["hugetlb0"])
            #expect(huge.steps[3].output == "262144\n262144\n")
            #expect(IT.qemuProcesses(ofRuns: verdicts.map(\.runDirectory)).isEmpty)
        }
    }
}
