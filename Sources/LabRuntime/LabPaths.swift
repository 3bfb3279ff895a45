import Foundation
import LabCore

/// Where cmalab finds its definitions and keeps its caches and runs.
///
/// - home: the checkout holding `Images/` and `Profiles/` (`$CMALAB_HOME`, else found upwards from the
///   executable, else from the working directory).
/// - cache: built kernels, unpacked sources, initramfs archives, the accelerator probe
///   (`$CMALAB_CACHE`, else `$XDG_CACHE_HOME/cmalab`, else `~/.cache/cmalab`).
/// - runs: one directory per boot or profile run (`$CMALAB_RUNS`, else `<home>/runs`).
public struct LabPaths: Sendable {
    public var home: String
    public var cache: String
    public var runs: String

    public init(home: String, cache: String, runs: String) {
        self.home = home; self.cache = cache; self.runs = runs
    }

    public static func discover() -> LabPaths {
        let env = ProcessInfo.processInfo.environment
        let home = env["CMALAB_HOME"] ?? findHome() ?? FileManager.default.currentDirectoryPath
        let cache = env["CMALAB_CACHE"]
            ?? env["XDG_CACHE_HOME"].map { $0 + "/cmalab" }
            ?? (NSHomeDirectory() + "/.cache/cmalab")
        let runs = env["CMALAB_RUNS"] ?? home + "/runs"
        return LabPaths(home: home, cache: cache, runs: runs)
    }

    public var imagesDirectory: String { home + "/Images" }
    public var profilesDirectory: String { home + "/Profiles" }

    /// The static agent binary for a guest of `architecture` (`Architecture.agentBinary`: `$CMALAB_AGENT`,
    /// else the Makefile's build location).
    public func agentBinary(for architecture: Architecture) -> String {
        architecture.agentBinary(home: home, environment: ProcessInfo.processInfo.environment)
    }

    /// The agent for a guest of the default architecture (x86_64).
    public var agentBinary: String { agentBinary(for: .default) }

    static func findHome() -> String? {
        let fm = FileManager.default
        var candidates: [String] = []
        if let exe = Bundle.main.executablePath { candidates.append((exe as NSString).resolvingSymlinksInPath) }
        candidates.append(fm.currentDirectoryPath + "/x")
        for start in candidates {
            var dir = Path.directory(of: start)
            while dir != "/" && !dir.isEmpty {
                if fm.fileExists(atPath: dir + "/Images") && fm.fileExists(atPath: dir + "/Package.swift") { return dir }
                dir = Path.directory(of: dir)
            }
        }
        return nil
    }
}

/// File helpers with errors that name the path.
public enum Files {
    /// Writes a user-named output file (reports). A FIFO, character device or socket (`/dev/stdout`, a
    /// named pipe) gets the bytes streamed in place; a symlink stays a link and its target is written
    /// atomically; anything else is written atomically where it is.
    public static func writePublic(_ bytes: [UInt8], to path: String) throws(LabError) {
        try mkdirs(Path.directory(of: path))
        if isStream(path) { return try stream(bytes, to: path) }
        let target = try resolveLinks(path)
        try mkdirs(Path.directory(of: target))
        try write(bytes, to: target)
    }

    /// `path` exists (after following links) and is not a regular file or a directory.
    static func isStream(_ path: String) -> Bool {
        var st = stat()
        guard stat(path, &st) == 0 else { return false }
        let type = st.st_mode & S_IFMT
        return type != S_IFREG && type != S_IFDIR
    }

    /// Opens `path` without creating or renaming anything and writes all of `bytes`.
    static func stream(_ bytes: [UInt8], to path: String) throws(LabError) {
        let fd = open(path, O_WRONLY | O_CLOEXEC)
        guard fd >= 0 else { throw LabError.posix("cannot open", path) }
        defer { close(fd) }
        try writeAll(bytes, fd: fd, path: path)
    }

    /// Writes every byte to `fd`, retrying after EINTR and short writes.
    static func writeAll(_ bytes: [UInt8], fd: Int32, path: String) throws(LabError) {
        var off = 0
        while off < bytes.count {
            let n = bytes[off...].withUnsafeBytes { Glibc.write(fd, $0.baseAddress, $0.count) }
            if n < 0 { if errno == EINTR { continue }; throw LabError.posix("cannot write", path) }
            off += n
        }
    }

    /// The file a chain of symlinks at `path` ends at (which need not exist yet); `path` itself when it
    /// is not a link. More than 40 links is ELOOP, as for the kernel.
    static func resolveLinks(_ path: String) throws(LabError) -> String {
        var current = path
        for _ in 0..<40 {
            var st = stat()
            guard lstat(current, &st) == 0, (st.st_mode & S_IFMT) == S_IFLNK else { return current }
            var buffer = [CChar](repeating: 0, count: Int(PATH_MAX) + 1)
            let n = readlink(current, &buffer, buffer.count - 1)
            guard n >= 0 else { throw LabError.posix("cannot read the link", current) }
            let target = String(decoding: buffer[0..<n].map { UInt8(bitPattern: $0) }, as: UTF8.self)
            current = target.hasPrefix("/") ? target : Path.directory(of: current) + "/" + target
        }
        throw LabError.posix("too many levels of symbolic links at", path, errno: ELOOP)
    }

    public static func read(_ path: String) throws(LabError) -> String {
        do { return try String(contentsOfFile: path, encoding: .utf8) } catch {
            throw LabError(.io, "cannot read \(path)", underlying: (error as NSError).localizedFailureReason.map { LabError(.io, $0) })
        }
    }

    public static func readBytes(_ path: String) throws(LabError) -> [UInt8] {
        guard let d = FileManager.default.contents(atPath: path) else { throw LabError.posix("cannot read", path, errno: ENOENT) }
        return [UInt8](d)
    }

    static func write(_ text: String, to path: String) throws(LabError) { try write(Array(text.utf8), to: path) }

    /// Writes via a temporary file and rename, so readers never see half a file.
    static func write(_ bytes: [UInt8], to path: String, mode: mode_t = 0o644) throws(LabError) {
        let tmp = path + ".tmp.\(getpid())"
        let fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, mode)
        guard fd >= 0 else { throw LabError.posix("cannot create", tmp) }
        do { try writeAll(bytes, fd: fd, path: tmp) } catch { close(fd); unlink(tmp); throw error }
        fsync(fd)
        close(fd)
        guard rename(tmp, path) == 0 else { let e = errno; unlink(tmp); throw LabError.posix("cannot rename into", path, errno: e) }
    }

    static func mkdirs(_ path: String) throws(LabError) {
        do { try FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: true) } catch {
            throw LabError(.io, "cannot create directory \(path)", underlying: error)
        }
    }

    static func exists(_ path: String) -> Bool { FileManager.default.fileExists(atPath: path) }

    static func copy(_ from: String, to: String) throws(LabError) {
        try write(try readBytes(from), to: to)
    }

    public static func size(_ path: String) -> UInt64? {
        var st = stat()
        return stat(path, &st) == 0 ? UInt64(st.st_size) : nil
    }

    /// Size, inode, mtime and ctime (to the nanosecond): what changes when anything writes or replaces a file.
    static func identity(_ path: String) -> String? {
        var st = stat()
        guard stat(path, &st) == 0 else { return nil }
        return "\(st.st_size) \(st.st_ino) \(st.st_mtim.tv_sec).\(st.st_mtim.tv_nsec) \(st.st_ctim.tv_sec).\(st.st_ctim.tv_nsec)"
    }

    static func mtime(_ path: String) -> Int? {
        var st = stat()
        return stat(path, &st) == 0 ? Int(st.st_mtim.tv_sec) : nil
    }
}

/// An exclusive advisory lock on a file (flock), released on `unlock()` or deinit.
final class FileLock {
    private var fd: Int32
    let path: String

    /// Blocks until the lock is held; calls `waiting` once if it has to wait.
    init(_ path: String, waiting: () -> Void = {}) throws(LabError) {
        self.path = path
        fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0o644)
        guard fd >= 0 else { throw LabError.posix("cannot open lock", path) }
        // Poll rather than block, so Ctrl-C still ends a process that waits for another's build.
        var announced = false
        while flock(fd, LOCK_EX | LOCK_NB) != 0 {
            guard errno == EWOULDBLOCK || errno == EINTR else {
                let e = errno; close(fd); throw LabError.posix("cannot lock", path, errno: e)
            }
            if !announced { waiting(); announced = true }
            do { try Signals.check() } catch { close(fd); fd = -1; throw error }
            usleep(200_000)
        }
    }

    private init(path: String, fd: Int32) {
        self.path = path; self.fd = fd
    }

    /// The lock if it is free now, nil if another holder has it (another process, or another open of the same
    /// file in this one: flock locks belong to the open file, not to the process). Never waits.
    static func attempt(_ path: String) throws(LabError) -> FileLock? {
        let fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0o644)
        guard fd >= 0 else { throw LabError.posix("cannot open lock", path) }
        while flock(fd, LOCK_EX | LOCK_NB) != 0 {
            let e = errno
            if e == EINTR { continue }
            close(fd)
            if e == EWOULDBLOCK { return nil }
            throw LabError.posix("cannot lock", path, errno: e)
        }
        return FileLock(path: path, fd: fd)
    }

    func unlock() {
        if fd >= 0 { flock(fd, LOCK_UN); close(fd); fd = -1 }
    }

    deinit { unlock() }
}
