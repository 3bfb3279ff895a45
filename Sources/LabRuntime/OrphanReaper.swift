import Foundation
import LabCore

/// Finds QEMU processes left behind by a cmalab that was killed with SIGKILL and stops them.
///
/// Normally QEMU cannot outlive cmalab: it runs under `setpriv --pdeathsig KILL`. Without setpriv (or when
/// the parent-death signal was lost), an orphaned QEMU keeps its guest running. Every run directory holds
/// `qemu.pid`, `owner.pid` (the cmalab that started it) and `owner.start` (that process's start time, field 22
/// of /proc/PID/stat). At start-up cmalab checks them: a live process that is `qemu-system-*` with
/// `-name <that run directory>`, that started when `qemu.pid` was written, and whose owner is gone (no
/// /proc/PID, or a process there that started at another time: the pid was reused), is an orphan and gets
/// SIGKILL. A run directory from before `owner.start` takes a live owner pid as its owner. A QEMU whose cmalab still runs is left alone, so
/// concurrent cmalab processes never stop each other's guests, and a `reproduce.sh` QEMU (no pid file of
/// its own) is never touched. The run's socket directory (`/tmp/cmalab-XXXXXX`, named in `sockdir`) is
/// removed on the same condition: its owner is gone.
public enum OrphanReaper {
    /// What was found and stopped: `(pid, run directory)`.
    @discardableResult
    public static func reap(runs root: String) -> [(pid_t, String)] {
        guard let names = try? FileManager.default.contentsOfDirectory(atPath: root) else { return [] }
        var stopped: [(pid_t, String)] = []
        for name in names {
            let dir = root + "/" + name
            guard let pid = readPID(dir + "/qemu.pid"), let owner = readPID(dir + "/owner.pid") else { continue }
            guard !isOwnerAlive(owner, startTime: readStartTime(dir + "/owner.start")) else { continue }
            guard isQEMU(pid: pid, runName: name), startedNear(pid: pid, file: dir + "/qemu.pid") else { continue }
            kill(pid, SIGKILL)
            stopped.append((pid, dir))
        }
        for name in names { reapSocketDirectory(of: root + "/" + name) }
        return stopped
    }

    /// Removes the socket directory a run recorded in `sockdir` when the run's owner is gone. Only a real
    /// directory of this user named `/tmp/cmalab-XXXXXX` is removed, whatever the file says.
    static func reapSocketDirectory(of dir: String) {
        let record = dir + "/" + RunDirectory.socketDirectoryRecord
        guard let text = try? String(contentsOfFile: record, encoding: .utf8), let owner = readPID(dir + "/owner.pid") else { return }
        guard !isOwnerAlive(owner, startTime: readStartTime(dir + "/owner.start")) else { return }
        let socketDirectory = text.trimmingCharacters(in: .whitespacesAndNewlines)
        if isOwnSocketDirectory(socketDirectory) { try? FileManager.default.removeItem(atPath: socketDirectory) }
        unlink(record)
    }

    /// `/tmp/cmalab-` plus six letters or digits (what `mkdtemp` makes), a directory and not a link, owned by us.
    static func isOwnSocketDirectory(_ path: String) -> Bool {
        let prefix = "/tmp/cmalab-"
        guard path.hasPrefix(prefix) else { return false }
        let suffix = path.dropFirst(prefix.count)
        guard suffix.count == 6, suffix.allSatisfy({ $0.isASCII && ($0.isLetter || $0.isNumber) }) else { return false }
        var st = stat()
        return lstat(path, &st) == 0 && (st.st_mode & S_IFMT) == S_IFDIR && st.st_uid == geteuid()
    }

    /// Writes `owner.pid` and `owner.start` for this process into the run directory at `path`.
    static func recordOwner(in path: String) {
        try? Files.write("\(getpid())\n", to: path + "/owner.pid")
        if let start = startTime(of: getpid()) { try? Files.write("\(start)\n", to: path + "/owner.start") }
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

    /// Writes `owner.start` for this process next to `owner.pid` in `directory` (see `isOwnerAlive`).
    public static func recordOwnerStart(in directory: RunDirectory) {
        if let start = startTime(of: getpid()) { try? directory.write("owner.start", "\(start)\n") }
    }

    static func readStartTime(_ path: String) -> UInt64? {
        guard let text = try? String(contentsOfFile: path, encoding: .utf8) else { return nil }
        return UInt64(text.trimmingCharacters(in: .whitespacesAndNewlines))
    }

    /// The owner still runs: /proc/PID exists and, when the run recorded its start time, the process there
    /// started at that time (a reused pid running something else is not it). Without a recorded start time
    /// (an older run directory), a live pid is enough.
    static func isOwnerAlive(_ pid: pid_t, startTime recorded: UInt64?) -> Bool {
        guard FileManager.default.fileExists(atPath: "/proc/\(pid)") else { return false }
        guard let recorded else { return true }
        return startTime(of: pid) == recorded
    }

    /// When `pid` started, in clock ticks after boot; nil when there is no such process.
    static func startTime(of pid: pid_t) -> UInt64? {
        (try? String(contentsOfFile: "/proc/\(pid)/stat", encoding: .utf8)).flatMap(startTime(statLine:))
    }

    /// Field 22 (starttime) of a /proc/PID/stat line. Field 2, the command name, is in parentheses and may
    /// itself hold spaces and `)`, so the fields are counted from the last `)`: field 3 is the first after it.
    static func startTime(statLine: String) -> UInt64? {
        guard let close = statLine.lastIndex(of: ")") else { return nil }
        let fields = statLine[statLine.index(after: close)...].split(whereSeparator: { $0 == " " || $0 == "\n" })
        guard fields.count > 19 else { return nil }
        return UInt64(fields[19])
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
        guard let ticks = startTime(of: pid),
              let uptimeText = try? String(contentsOfFile: "/proc/uptime", encoding: .utf8),
              let uptime = Double(uptimeText.split(separator: " ").first ?? ""),
              let mtime = Files.mtime(file) else { return false }
        let hz = Double(sysconf(Int32(_SC_CLK_TCK)))
        let started = Date().timeIntervalSince1970 - uptime + Double(ticks) / hz
        return abs(started - Double(mtime)) < 10
    }
}
