import Foundation
import Testing
import LabCore
@testable import LabRuntime

extension Integration {
/// A cmalab killed with SIGKILL where the parent-death signal did not take QEMU down: the next cmalab
/// finds the orphan through the run directory's pid files and stops it; a QEMU whose cmalab lives is kept.
@Suite struct OrphanReaperTests {
    /// Starts an idle QEMU named after `run`, as a child of a shell that exits (so it is re-parented).
    func startDetachedQEMU(root: String, run: String) throws -> pid_t {
        let dir = root + "/" + run
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        let out = try runCapturing(["sh", "-c", "qemu-system-x86_64 -name \(run) -machine none -nodefaults -display none -S </dev/null >/dev/null 2>&1 & echo $!"])
        let pid = try #require(pid_t(out.trimmingCharacters(in: .whitespacesAndNewlines)))
        try "\(pid)\n".write(toFile: dir + "/qemu.pid", atomically: true, encoding: .utf8)
        return pid
    }

    func alive(_ pid: pid_t) -> Bool {
        guard kill(pid, 0) == 0 else { return false }
        let state = (try? String(contentsOfFile: "/proc/\(pid)/status", encoding: .utf8)) ?? ""
        return !state.contains("State:\tZ")
    }

    @Test func orphansAreStoppedAndLiveRunsKept() throws {
        let root = NSTemporaryDirectory() + "cmalab-reap-\(UUID().uuidString)"
        defer { try? FileManager.default.removeItem(atPath: root) }
        let orphan = try startDetachedQEMU(root: root, run: "20261125-000000-orphan")
        let kept = try startDetachedQEMU(root: root, run: "20261125-000001-kept")
        defer { kill(orphan, SIGKILL); kill(kept, SIGKILL) }
        // The orphan's owner is a process that has exited; the kept one's owner is this test process.
        let gone = try ChildProcess(["true"], stdout: .null, stderr: .null)
        _ = gone.wait()
        try "\(gone.pid)\n".write(toFile: root + "/20261125-000000-orphan/owner.pid", atomically: true, encoding: .utf8)
        try "\(getpid())\n".write(toFile: root + "/20261125-000001-kept/owner.pid", atomically: true, encoding: .utf8)
        // A run directory whose pid file names a process that is not its QEMU is left alone too.
        try FileManager.default.createDirectory(atPath: root + "/20261125-000002-stale", withIntermediateDirectories: true)
        try "\(getpid())\n".write(toFile: root + "/20261125-000002-stale/qemu.pid", atomically: true, encoding: .utf8)
        try "\(gone.pid)\n".write(toFile: root + "/20261125-000002-stale/owner.pid", atomically: true, encoding: .utf8)
        usleep(300_000)

        let stopped = OrphanReaper.reap(runs: root)
        #expect(stopped.map(\.0) == [orphan])
        usleep(300_000)
        #expect(!alive(orphan))
        #expect(alive(kept))
        #expect(OrphanReaper.reap(runs: root).isEmpty)
    }
}
}
