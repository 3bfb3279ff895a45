import Foundation
import Testing
import LabCore
@testable import LabRuntime

extension Integration {
/// The main job: `cmalab run` on real kernels, its reports, and the artifacts it leaves.
@Suite struct RunCommandTests {
    func tempDir() throws -> String {
        let dir = NSTemporaryDirectory() + "cmalab-run-\(UUID().uuidString)"
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        return dir
    }

    @Test func everyBundledProfilePasses() throws {
        let dir = try tempDir()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let r = try IT.runCLI(["run", "--accel", "tcg", "--json", dir + "/r.json", "--junit", dir + "/r.xml"])
        #expect(r.status == 0, "stdout:\n\(r.stdout)\nstderr:\n\(r.stderr)")
        #expect(r.stdout.hasSuffix("20 passed, 0 failed, 0 errors\n"))
        // Two at a time on this machine's cores; each verdict is printed as its run finishes.
        #expect(r.stderr.contains("[20/20] PASS "), "stderr:\n\(r.stderr)")

        let (verdicts, meta) = try Report.decodeResults(Array(try Data(contentsOf: URL(fileURLWithPath: dir + "/r.json"))))
        #expect(meta.accelerator == "tcg")
        #expect(verdicts.count == 20 && verdicts.allSatisfy { $0.kind == .pass })
        // The 512 GiB guest: QEMU's host RSS is its struct page array (1/64 of RAM, 8 GiB), not its RAM.
        let huge = try #require(verdicts.first { $0.profile == "huge-512g" }?.observations?.qemuPeakRSSKiB)
        #expect(huge > 4 << 20 && huge < 32 << 20, "huge-512g: QEMU peak RSS \(huge) KiB")
        #expect(r.stdout.contains("qemu peak RSS: ") && r.stdout.contains("(huge-512g@cma-6.12, the largest of "))
        let seed = try #require(verdicts.first { $0.profile == "seed-1g-at-1-2g" })
        #expect(seed.observations?.boot.reserved.first?.sizeMiB == 1024)
        #expect(seed.observations?.steps.count == 2)

        // The real consumer reads the JUnit: one suite per image, one case per profile.
        let out = try runCapturing(["python3", "-c", """
            import sys, junitparser
            xml = junitparser.JUnitXml.fromfile(sys.argv[1])
            for suite in xml:
                print(suite.name, suite.tests, suite.failures, suite.errors)
            """, dir + "/r.xml"])
        #expect(out == "cma-6.12 19 0 0\nnocma-6.12 1 0 0\n")

        // Under pressure: the lent pages migrate back for the whole-area allocation, unless pipes hold them.
        let whole = try #require(verdicts.first { $0.profile == "pressure-whole-area" }?.observations?.steps)
        #expect((whole[0].cmaLentPages ?? 0) > 16384)
        #expect(whole[1].attemptErrnos == [0, 0, 0])
        #expect((whole[1].vmstatDelta?["pgmigrate_success"] ?? 0) > 0)
        #expect(whole[1].attemptNanoseconds?.count == 3)
        let pinned = try #require(verdicts.first { $0.profile == "pressure-pinned-fails" }?.observations?.steps)
        #expect(pinned[1].attemptErrnos == [12, 12])
        #expect(pinned[1].kernelMessages?.contains { $0.contains("alloc failed, req-size: 131072 pages, ret: -16") } == true)
        #expect(pinned[3].status == 0)
        // The device's question: the seed's 32-bit device gets its 1024 MiB from the area below 4 GiB; with the
        // area at 4 GiB it gets nothing that large, a 64-bit device does; long-term pins do not block the area.
        let dma32 = try #require(verdicts.first { $0.profile == "seed-dma32" }?.observations?.steps)
        #expect(dma32[0].dma?.area == "reserved" && (dma32[0].dma?.physicalAddress ?? .max) < 1 << 31)
        let above = try #require(verdicts.first { $0.profile == "area-above-4g-dma32" }?.observations?.steps)
        #expect(above.map(\.status) == [12, 0, 0, 0] && above[2].dma?.area == "reserved")
        let longterm = try #require(verdicts.first { $0.profile == "pins-longterm-migrate" }?.observations?.steps)
        #expect(longterm[0].output?.contains("longterm-pinned") == true && longterm[1].status == 0)

        // Every run directory holds the artifacts a report links to.
        let run = seed.runDirectory
        for f in ["console.log", "dmesg.txt", "meminfo-boot.txt", "meminfo-step0-alloc-before.txt", "meminfo-step0-alloc-after.txt",
                  "meminfo-step1-free-after.txt", "observations.json", "config", "reproduce.sh"] {
            #expect(FileManager.default.fileExists(atPath: run + "/" + f), "missing \(f) in \(run)")
        }
        #expect(try String(contentsOfFile: run + "/dmesg.txt", encoding: .utf8).contains("cma: __cma_alloc("))
        #expect(IT.qemuProcesses(ofRuns: verdicts.map(\.runDirectory)).isEmpty)
    }

    @Test func wrongExpectationShowsTheDiffAndExitsOne() throws {
        let dir = try tempDir()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        try """
            name: wrong-size
            machine: {memory: 2G}
            cmdline: cma=64M
            expect: {outcome: reserved, size: 128M, cma-total: 64M}
            """.write(toFile: dir + "/wrong.yaml", atomically: true, encoding: .utf8)
        let r = try IT.runCLI(["run", dir + "/wrong.yaml", "--accel", "tcg", "--junit", dir + "/w.xml"])
        #expect(r.status == 1)
        #expect(r.stdout.contains("FAILED  size: expected 128M, observed 64M (debugfs reserved)"))
        #expect(r.stdout.contains("ok      cma-total: expected 64M, observed 65536 kB"))
        #expect(r.stdout.hasSuffix("0 passed, 1 failed, 0 errors\n"))
        let out = try runCapturing(["python3", "-c", """
            import sys, junitparser
            for suite in junitparser.JUnitXml.fromfile(sys.argv[1]):
                for case in suite:
                    print(case.name, [type(r).__name__ + ': ' + (r.message or '') for r in case.result])
            """, dir + "/w.xml"])
        #expect(out.contains("wrong-size ['Failure: size: expected 128M, observed 64M (debugfs reserved)']"))
    }

    @Test func preflightRefusesWithoutBooting() throws {
        let dir = try tempDir()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        try """
            name: needs-debugfs
            image: nocma-6.12
            machine: {memory: 2G}
            cmdline: cma=64M
            expect: {outcome: reserved}
            steps: [{alloc: {pages: 16}}]
            """.write(toFile: dir + "/p.yaml", atomically: true, encoding: .utf8)
        let r = try IT.runCLI(["run", dir + "/p.yaml", "--accel", "tcg"])
        #expect(r.status == 1)
        #expect(r.stdout.contains("preflight: image nocma-6.12 has no CONFIG_CMA (the profile needs it: its alloc/free steps need CMA areas)"))
        #expect(r.seconds < 10)
    }

    @Test func jobsMustBeAtLeastOne() throws {
        let r = try IT.runCLI(["run", "Profiles/seed-1g-at-1-2g.yaml", "--jobs", "0"])
        #expect(r.status == 2)
        #expect(r.stderr.contains("--jobs must be at least 1"), "\(r.stderr)")
    }

    @Test func reproduceScriptBootsTheSameKernel() throws {
        let runner = ProfileRunner(lab: IT.lab)
        runner.accel = .tcg
        let profile = try Profile.parse("name: repro\nmachine: {memory: 2G}\ncmdline: cma=3M\nexpect: {outcome: reserved}\n", file: "repro.yaml")
        let v = runner.run(profile)
        #expect(v.kind == .pass)
        let reserved = try #require(v.observations?.boot.reserved.first)
        let line = String(format: "cma: Reserved %llu MiB at 0x%016llx", reserved.sizeMiB, reserved.base)

        let out = NSTemporaryDirectory() + "cmalab-repro-\(UUID().uuidString).log"
        defer { try? FileManager.default.removeItem(atPath: out) }
        let p = try ChildProcess(["sh", v.runDirectory + "/reproduce.sh"], stdout: .file(out), stderr: .null)
        let deadline = Date().addingTimeInterval(60)
        var seen = false
        while !seen && Date() < deadline && p.poll() == nil {
            seen = ((try? String(contentsOfFile: out, encoding: .utf8)) ?? "").contains(line)
            usleep(100_000)
        }
        p.terminate(grace: 1)      // the guest waits for an agent host that never comes
        #expect(seen, "reproduce.sh did not print `\(line)`")
        usleep(200_000)
        #expect(IT.qemuProcesses(ofRuns: [v.runDirectory]).isEmpty)
    }
}
}
