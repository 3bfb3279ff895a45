import Foundation
import LabCore

/// Finds QEMU processes left behind by a cmalab that was killed with SIGKILL and stops them.
///
/// Normally QEMU cannot outlive cmalab: it runs under `setpriv --pdeathsig KILL`. Without setpriv (or when
/// the parent-death signal was lost), an orphaned QEMU keeps its guest running. Every run directory holds
/// `qemu.pid` and `owner.pid` (the cmalab that started it). At start-up cmalab checks them: a live process
/// that is `qemu-system-*` with `-name <that run directory>`, that started when `qemu.pid` was written, and
/// whose owner is gone, is an orphan and gets SIGKILL. A QEMU whose cmalab still runs is left alone, so
/// concurrent cmalab processes never stop each other's guests, and a `reproduce.sh` QEMU (no pid file of
/// its own) is never touched.
public enum OrphanReaper {
    /// What was found and stopped: `(pid, run directory)`.
    @discardableResult
    public static func reap(runs root: String) -> [(pid_t, String)] {
        guard let names = try? FileManager.default.contentsOfDirectory(atPath: root) else { return [] }
        var stopped: [(pid_t, String)] = []
        for name in names {
            let dir = root + "/" + name
            guard let pid = readPID(dir + "/qemu.pid"), let owner = readPID(dir + "/owner.pid") else { continue }
            guard !isAlive(owner, named: ["cmalab", "cmalabPackageTests.xctest"]) else { continue }
            guard isQEMU(pid: pid, runName: name), startedNear(pid: pid, file: dir + "/qemu.pid") else { continue }
            kill(pid, SIGKILL)
            stopped.append((pid, dir))
        }
        return stopped
    }

    static func readPID(_ path: String) -> pid_t? {
        guard let text = try? String(contentsOfFile: path, encoding: .utf8),
              let pid = pid_t(text.trimmingCharacters(in: .whitespacesAndNewlines)), pid > 1 else { return nil }
        return pid
    }

    static func argv(_ pid: pid_t) -> [String] {
        guard let data = FileManager.default.contents(atPath: "/proc/\(pid)/cmdline") else { return [] }
        return data.split(separator: 0).map { String(decoding: $0, as: UTF8.self) }
    }

    /// The process exists and its executable is one of `names` (a reused pid running something else is not it).
    static func isAlive(_ pid: pid_t, named names: [String]) -> Bool {
        guard kill(pid, 0) == 0 || errno == EPERM else { return false }
        let exe = (try? FileManager.default.destinationOfSymbolicLink(atPath: "/proc/\(pid)/exe")) ?? argv(pid).first ?? ""
        return names.contains(Path.basename(exe))
    }

    /// `qemu-system-*` with `-name <runName>`.
    static func isQEMU(pid: pid_t, runName: String) -> Bool {
        let a = argv(pid)
        guard let exe = a.first, Path.basename(exe).hasPrefix("qemu-system"),
              let i = a.firstIndex(of: "-name"), i + 1 < a.count else { return false }
        return a[i + 1] == runName
    }

    /// The process started within a few seconds of the pid file's time: not a later process that got the pid.
    static func startedNear(pid: pid_t, file: String) -> Bool {
        guard let stat = try? String(contentsOfFile: "/proc/\(pid)/stat", encoding: .utf8),
              let close = stat.lastIndex(of: ")"),
              let uptimeText = try? String(contentsOfFile: "/proc/uptime", encoding: .utf8),
              let uptime = Double(uptimeText.split(separator: " ").first ?? ""),
              let mtime = Files.mtime(file) else { return false }
        // Field 22 (starttime, in clock ticks since boot); fields after the command name start at 3.
        let fields = stat[stat.index(after: close)...].split(separator: " ")
        guard fields.count > 19, let ticks = Double(fields[19]) else { return false }
        let hz = Double(sysconf(Int32(_SC_CLK_TCK)))
        let started = Date().timeIntervalSince1970 - uptime + ticks / hz
        return abs(started - Double(mtime)) < 10
    }
}
