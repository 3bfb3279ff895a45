import Foundation
import Testing
import LabCore
@testable import LabRuntime

extension IntegrationSecondLane {
/// Issue 16's cases that need a real guest: a guest process lying on /dev/kmsg (#2), and the orphan reaper
/// facing a live run whose cmalab binary was renamed and then deleted (#6). The rest of the issue's cases
/// run against the stand-in QEMU (LabRuntimeTests/StandinQEMUTests.swift).
@Suite struct HostileGuestIntegrationTests {
    func tempDir() throws -> String {
        let dir = NSTemporaryDirectory() + "cmalab-hostile-it-\(UUID().uuidString)"
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        return dir
    }

    /// #2: any guest process can print a CMA reservation past 2^64 into the kernel log. The run completes,
    /// the line reaches the observations, and both `run --html` and `report html` of the saved JSON draw the
    /// page with the area noted as outside the address space (before: the HTML writer trapped, exit 132).
    @Test func kmsgReservationPastTheAddressSpaceIsNotedInTheReports() throws {
        let dir = try tempDir()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let line = "cma: Reserved 1 MiB at 0xfffffffffff00000"
        try """
            name: kmsg-past-2-64
            machine: {memory: 1G}
            cmdline: cma=16M
            expect: {outcome: reserved}
            steps:
              - exec: "echo '\(line)' > /dev/kmsg"
            """.write(toFile: dir + "/p.yaml", atomically: true, encoding: .utf8)
        let r = try IT.runCLI(["run", dir + "/p.yaml", "--accel", "tcg", "--json", dir + "/r.json", "--html", dir + "/r.html"])
        #expect(r.status == 0, "stdout:\n\(r.stdout)\nstderr:\n\(r.stderr)")

        let (verdicts, _) = try Report.decodeResults(Array(try Data(contentsOf: URL(fileURLWithPath: dir + "/r.json"))))
        let v = try #require(verdicts.first)
        #expect(v.kind == .pass)
        // The guest's line is in the observations (else the page below would prove nothing).
        let reserved = v.observations?.boot.reserved ?? []
        #expect(reserved.contains { $0.base == 0xffff_ffff_fff0_0000 && $0.sizeMiB == 1 }, "\(reserved)")
        #expect(try String(contentsOfFile: v.runDirectory + "/dmesg.txt", encoding: .utf8).contains(line))

        let note = "at 0xfffffffffff00000 (1 MiB) is outside the 64-bit address space: not drawn."
        let html = try String(contentsOfFile: dir + "/r.html", encoding: .utf8)
        #expect(html.contains(note))
        #expect(html.contains("<svg xmlns=\"http://www.w3.org/2000/svg\" class=\"memory-map\""), "the real area's map is still drawn")

        let again = try IT.runCLI(["report", "html", dir + "/r.json", "-o", dir + "/again.html"])
        #expect(again.status == 0, "\(again.stderr)")
        #expect(try String(contentsOfFile: dir + "/again.html", encoding: .utf8).contains(note))
        #expect(IT.qemuProcesses(ofRuns: [v.runDirectory]).isEmpty)
    }

    func alive(_ pid: pid_t) -> Bool {
        let stat = (try? String(contentsOfFile: "/proc/\(pid)/stat", encoding: .utf8)) ?? ""
        return !stat.isEmpty && stat.split(separator: ")").last?.split(separator: " ").first != "Z"
    }

    /// #6: a run started by a copy of cmalab under another name, whose file is then deleted (as `make build`
    /// replacing the binary does: /proc/PID/exe reads `cmalab-renamed (deleted)`). A second cmalab on the same
    /// runs folder reaps orphans at start-up and must keep this QEMU; the first run passes (before: the reaper
    /// judged owners by their executable's name, killed the QEMU, and the run failed with "QEMU exited with
    /// killed by signal 9").
    @Test func reaperKeepsALiveRunWhoseBinaryWasRenamedAndDeleted() throws {
        let dir = try tempDir()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let runs = dir + "/runs"
        let env = ["CMALAB_RUNS": runs, "CMALAB_HOME": IT.lab.paths.home]
        try FileManager.default.createDirectory(atPath: dir + "/bin", withIntermediateDirectories: true)
        let copy = dir + "/bin/cmalab-renamed"
        try FileManager.default.copyItem(atPath: IT.cli, toPath: copy)
        try """
            name: long-exec
            machine: {memory: 1G}
            cmdline: cma=16M
            expect: {outcome: reserved}
            steps:
              - exec: {command: "sleep 15", timeout: 60}
            """.write(toFile: dir + "/long.yaml", atomically: true, encoding: .utf8)

        let first = try ChildProcess([copy, "run", dir + "/long.yaml", "--accel", "tcg", "--json", dir + "/first.json"],
                                     environment: env, stdout: .file(dir + "/first.out"), stderr: .file(dir + "/first.err"))
        defer { first.terminate(grace: 1) }
        // Wait until its guest's agent is up (the sleep runs next), and find its QEMU.
        var qemu: pid_t?
        let deadline = Date().addingTimeInterval(120)
        while qemu == nil && Date() < deadline && first.poll() == nil {
            for name in (try? FileManager.default.contentsOfDirectory(atPath: runs)) ?? [] {
                let console = (try? String(contentsOfFile: runs + "/" + name + "/console.log", encoding: .utf8)) ?? ""
                if console.contains("cmalab-agent: ready on") { qemu = OrphanReaper.readPID(runs + "/" + name + "/qemu.pid") }
            }
            usleep(100_000)
        }
        let pid = try #require(qemu, "the first run's guest never came up: \((try? String(contentsOfFile: dir + "/first.err", encoding: .utf8)) ?? "")")
        try FileManager.default.removeItem(atPath: copy)
        let exe = (try? FileManager.default.destinationOfSymbolicLink(atPath: "/proc/\(first.pid)/exe")) ?? ""
        #expect(exe.hasSuffix("cmalab-renamed (deleted)"), "owner's exe: \(exe)")

        // A second cmalab on the same runs folder: Lab() reaps orphans before validating.
        let second = try IT.runCLI(["validate", dir + "/long.yaml"], environment: env)
        #expect(second.status == 0, "\(second.stderr)")
        #expect(!second.stderr.contains("stopped QEMU"), "\(second.stderr)")
        #expect(alive(pid), "the live run's QEMU \(pid) was stopped")
        #expect(first.poll() == nil, "the first run ended early")

        // The first run finishes its sleep and passes.
        let end = Date().addingTimeInterval(120)
        while first.poll() == nil && Date() < end { usleep(100_000) }
        #expect(first.poll() == .exited(0), "\((try? String(contentsOfFile: dir + "/first.err", encoding: .utf8)) ?? "")")
        let (verdicts, _) = try Report.decodeResults(Array(try Data(contentsOf: URL(fileURLWithPath: dir + "/first.json"))))
        #expect(verdicts.map(\.kind) == [.pass], "\(verdicts.map { $0.error ?? "" })")
        #expect(IT.qemuProcesses(ofRuns: verdicts.map(\.runDirectory)).isEmpty)
    }
}
}
