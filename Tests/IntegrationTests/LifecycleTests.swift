import Foundation
import Testing
import LabCore
import LabProtocol
@testable import LabRuntime

extension IntegrationSecondLane {
/// cmalab's promise that QEMU never outlives it, and guests larger than the host.
@Suite struct LifecycleTests {
    /// Starts `cmalab boot --exec 'sleep 300'` and returns once the agent is up (its ready line is on the
    /// console, which goes to stderr with --exec) and the command is under way.
    func startLongExec() throws -> (ChildProcess, String) {
        let err = NSTemporaryDirectory() + "cmalab-life-\(UUID().uuidString)"
        let p = try ChildProcess([IT.cli, "boot", "--memory", "1G", "--accel", "tcg", "--exec", "sleep 300"],
                                 stdout: .null, stderr: .file(err))
        let deadline = Date().addingTimeInterval(60)
        var ready = false
        while Date() < deadline && !ready {
            ready = ((try? String(contentsOfFile: err, encoding: .utf8)) ?? "").contains("cmalab-agent: ready on")
            usleep(50_000)
        }
        #expect(ready, "the agent never came up")
        usleep(500_000)
        return (p, err)
    }

    /// QEMU children of a cmalab process (QEMU is spawned through setpriv, which execs it).
    func qemuChildren(of pid: pid_t) -> [pid_t] {
        let out = (try? runCapturing(["sh", "-c", "pgrep -P \(pid) || true"])) ?? ""
        return out.split(separator: "\n").compactMap { pid_t($0) }
    }

    func isRunning(_ pid: pid_t) -> Bool {
        let stat = (try? String(contentsOfFile: "/proc/\(pid)/stat", encoding: .utf8)) ?? ""
        return !stat.isEmpty && stat.split(separator: ")").last?.split(separator: " ").first != "Z"
    }

    @Test func sigtermEndsQEMUAndKeepsTheArtifacts() throws {
        let (p, out) = try startLongExec()
        defer { try? FileManager.default.removeItem(atPath: out) }
        let qemu = qemuChildren(of: p.pid)
        #expect(qemu.count == 1)
        kill(p.pid, SIGTERM)
        #expect(p.wait() == .exited(130))
        usleep(300_000)
        for q in qemu { #expect(!isRunning(q), "QEMU \(q) outlived cmalab") }
    }

    @Test func sigkillStillTakesQEMUDown() throws {
        let (p, out) = try startLongExec()
        defer { try? FileManager.default.removeItem(atPath: out) }
        let qemu = qemuChildren(of: p.pid)
        #expect(qemu.count == 1)
        kill(p.pid, SIGKILL)
        _ = p.wait()
        usleep(500_000)
        for q in qemu { #expect(!isRunning(q), "QEMU \(q) outlived a SIGKILLed cmalab") }
    }

    @Test func guestLargerThanTheHost() throws {
        let k = try IT.kernel("cma-6.12")
        let s = try IT.lab.boot(k, IT.request(.gib(64), "cma=2G", name: "64G"), bootTimeout: 120)
        guard case .meminfo(let mem) = try #require(s.agent).request(.meminfo) else { Issue.record("no meminfo"); return }
        #expect((mem["MemTotal"] ?? 0) > 60 << 20)            // kB: more than 60 GiB in the guest
        #expect(mem["CmaTotal"] == 2 << 20)
        #expect(try s.finish(timeout: 60) == .poweredOff)
        // Bottom-up from 4 GiB on >= 5.11 when RAM extends past 4 GiB + size.
        #expect(try IT.console(s).contains("cma: Reserved 2048 MiB at 0x0000000100000000"))
    }

    @Test func shellRunsLinesOverTheAgent() throws {
        let dir = NSTemporaryDirectory() + "cmalab-shell-\(UUID().uuidString)"
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: dir) }
        try "cd /sys/kernel/debug/cma/reserved\ncat count\necho 16 > alloc\ncat used\nfalse\nexit\n".write(toFile: dir + "/in", atomically: true, encoding: .utf8)
        let r = try IT.runCLI(["shell", "--memory", "1G", "--append", "cma=64M", "--accel", "tcg"], stdin: dir + "/in")
        #expect(r.status == 0, "stderr: \(r.stderr)")
        #expect(r.stdout == "16384\n16\n")
        #expect(r.stderr.contains("[exit 1]"))
        #expect(r.stderr.contains("guest powered off"))
    }
}
}
