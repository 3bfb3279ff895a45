import Foundation
import LabCore

/// A child process started with posix_spawn in its own process group, so the lab can end it and
/// everything it started with one signal. Nothing here outlives its owner: `terminate()` sends SIGTERM
/// to the group, waits, then SIGKILLs; `deinit` does the same for a child still running.
public final class ChildProcess: @unchecked Sendable {
    public enum Input: Sendable {
        case null
        case inherit
        case file(String)
    }

    public enum Output: Sendable {
        case inherit
        case null
        case pipe
        case file(String)
    }

    public let pid: pid_t
    public let argv: [String]
    /// Read end of stdout when `.pipe` was asked for (non-blocking, close-on-exec).
    public private(set) var stdoutFD: Int32 = -1
    public private(set) var stderrFD: Int32 = -1
    public private(set) var exitStatus: Int32?
    /// A pidfd for the child (pidfd_open(2), close-on-exec): readable once it has exited, so an event loop
    /// wakes at that moment instead of at its next timeout. -1 on kernels without pidfds.
    public private(set) var exitFD: Int32 = -1

    public enum Termination: Equatable, Sendable, CustomStringConvertible {
        case exited(Int32)
        case signaled(Int32)
        public var description: String {
            switch self {
            case .exited(let c): return "exit status \(c)"
            case .signaled(let s): return "killed by signal \(s)"
            }
        }
        public var succeeded: Bool { self == .exited(0) }
    }

    public private(set) var termination: Termination?

    /// Starts `argv` (argv[0] is looked up in PATH when it has no slash).
    public init(_ argv: [String], environment: [String: String]? = nil, workingDirectory: String? = nil,
                stdin: Input = .null, stdout: Output = .inherit, stderr: Output = .inherit) throws(LabError) {
        precondition(!argv.isEmpty)
        self.argv = argv
        // `env -C DIR` changes directory in the child (glibc's addchdir_np is not visible to Swift).
        let argv = workingDirectory.map { ["env", "-C", $0] + argv } ?? argv
        guard let executable = ChildProcess.findExecutable(argv[0]) else {
            throw LabError(.missingTool, "\(argv[0]) not found in PATH", hint: ChildProcess.installHint(for: argv[0]))
        }
        var actions = posix_spawn_file_actions_t()
        posix_spawn_file_actions_init(&actions)
        defer { posix_spawn_file_actions_destroy(&actions) }
        var attr = posix_spawnattr_t()
        posix_spawnattr_init(&attr)
        defer { posix_spawnattr_destroy(&attr) }

        var parentEnds: [Int32] = []
        var childEnds: [Int32] = []
        func setup(_ out: Output, fd: Int32) throws(LabError) -> Int32 {
            switch out {
            case .inherit: return -1
            case .null:
                posix_spawn_file_actions_addopen(&actions, fd, "/dev/null", O_WRONLY, 0)
                return -1
            case .file(let path):
                posix_spawn_file_actions_addopen(&actions, fd, path, O_WRONLY | O_CREAT | O_TRUNC | O_APPEND, 0o644)
                return -1
            case .pipe:
                var p: [Int32] = [-1, -1]
                guard makePipe(&p) else { throw LabError.posix("pipe for", argv[0]) }
                posix_spawn_file_actions_adddup2(&actions, p[1], fd)
                childEnds.append(p[1]); parentEnds.append(p[0])
                _ = fcntl(p[0], F_SETFL, fcntl(p[0], F_GETFL) | O_NONBLOCK)
                return p[0]
            }
        }
        switch stdin {
        case .null: posix_spawn_file_actions_addopen(&actions, 0, "/dev/null", O_RDONLY, 0)
        case .file(let path): posix_spawn_file_actions_addopen(&actions, 0, path, O_RDONLY, 0)
        case .inherit: break
        }
        let outFD = try setup(stdout, fd: 1)
        let errFD = try setup(stderr, fd: 2)

        posix_spawnattr_setflags(&attr, Int16(POSIX_SPAWN_SETPGROUP | POSIX_SPAWN_SETSIGDEF | POSIX_SPAWN_SETSIGMASK))
        posix_spawnattr_setpgroup(&attr, 0)
        var defaults = sigset_t()
        sigemptyset(&defaults)
        for s in [SIGINT, SIGTERM, SIGHUP, SIGPIPE, SIGCHLD] { sigaddset(&defaults, s) }
        posix_spawnattr_setsigdefault(&attr, &defaults)
        var emptyMask = sigset_t()
        sigemptyset(&emptyMask)
        posix_spawnattr_setsigmask(&attr, &emptyMask)

        var env = environment ?? ProcessInfo.processInfo.environment
        if environment != nil {
            // Callers pass overrides; keep the rest of our environment.
            env = ProcessInfo.processInfo.environment.merging(environment!) { _, new in new }
        }
        let envStrings = env.map { "\($0.key)=\($0.value)" }

        var child: pid_t = 0
        let rc = withCStrings(argv) { cArgv in
            withCStrings(envStrings) { cEnv in
                posix_spawn(&child, executable, &actions, &attr, cArgv, cEnv)
            }
        }
        for fd in childEnds { close(fd) }
        guard rc == 0 else {
            for fd in parentEnds { close(fd) }
            throw LabError(.missingTool, "cannot start \(argv[0]): \(String(cString: strerror(rc)))")
        }
        self.pid = child
        self.stdoutFD = outFD
        self.stderrFD = errFD
        self.exitFD = pidfdOpen(child, 0)
    }

    deinit {
        if termination == nil { terminate(grace: 1.0) }
        if stdoutFD >= 0 { close(stdoutFD) }
        if stderrFD >= 0 { close(stderrFD) }
        if exitFD >= 0 { close(exitFD) }
    }

    /// Non-blocking check; returns the termination once the child has exited.
    @discardableResult
    public func poll() -> Termination? {
        if let termination { return termination }
        var status: Int32 = 0
        let r = waitpid(pid, &status, WNOHANG)
        if r == pid { termination = Self.decode(status) }
        return termination
    }

    /// Blocks until the child exits.
    @discardableResult
    public func wait() -> Termination {
        if let termination { return termination }
        var status: Int32 = 0
        while waitpid(pid, &status, 0) < 0, errno == EINTR {}
        let t = Self.decode(status)
        termination = t
        return t
    }

    /// SIGTERM to the process group, up to `grace` seconds, then SIGKILL. Always reaps.
    public func terminate(grace: Double = 2.0) {
        guard poll() == nil else { return }
        kill(-pid, SIGTERM)
        kill(pid, SIGTERM)
        let deadline = Date().addingTimeInterval(grace)
        while Date() < deadline {
            if poll() != nil { kill(-pid, SIGKILL); return }
            usleep(10_000)
        }
        kill(-pid, SIGKILL)
        kill(pid, SIGKILL)
        wait()
    }

    /// Closes the parent's read ends (after the caller has drained them).
    public func closePipes() {
        if stdoutFD >= 0 { close(stdoutFD); stdoutFD = -1 }
        if stderrFD >= 0 { close(stderrFD); stderrFD = -1 }
    }

    static func decode(_ status: Int32) -> Termination {
        if status & 0x7f == 0 { return .exited((status >> 8) & 0xff) }
        return .signaled(status & 0x7f)
    }

    public static func findExecutable(_ name: String) -> String? {
        if name.contains("/") { return access(name, X_OK) == 0 ? name : nil }
        let path = ProcessInfo.processInfo.environment["PATH"] ?? "/usr/local/bin:/usr/bin:/bin:/usr/sbin:/sbin"
        for dir in path.split(separator: ":") {
            let candidate = "\(dir)/\(name)"
            if access(candidate, X_OK) == 0 { return candidate }
        }
        return nil
    }

    static func installHint(for tool: String) -> String {
        var packages = [
            "make": "make", "gcc": "gcc", "ccache": "ccache",
            "flex": "flex", "bison": "bison", "bc": "bc", "busybox": "busybox-static", "cpio": "cpio",
            "dpkg-deb": "dpkg", "apt-get": "apt", "setpriv": "util-linux",
        ]
        for arch in Architecture.allCases { packages[arch.qemuBinary] = arch.qemuPackage }
        for arch in Architecture.allCases { packages[arch.compiler.binary] = arch.compiler.package }
        packages["dtc"] = "device-tree-compiler"
        if let pkg = packages[tool] { return "install it with `apt-get install \(pkg)` (or run `make setup`)" }
        return "install \(tool) and make sure it is in PATH"
    }
}

/// Runs a short command to completion and returns its stdout (stderr is folded into the error).
public func runCapturing(_ argv: [String], environment: [String: String]? = nil, workingDirectory: String? = nil,
                         limit: Int = 8 << 20) throws(LabError) -> String {
    let p = try ChildProcess(argv, environment: environment, workingDirectory: workingDirectory, stdout: .pipe, stderr: .pipe)
    var out: [UInt8] = []
    var err: [UInt8] = []
    var fds = [pollfd(fd: p.stdoutFD, events: Int16(POLLIN), revents: 0), pollfd(fd: p.stderrFD, events: Int16(POLLIN), revents: 0)]
    var open = 2
    var buf = [UInt8](repeating: 0, count: 65536)
    while open > 0 {
        _ = Glibc.poll(&fds, nfds_t(fds.count), 200)
        for i in fds.indices where fds[i].fd >= 0 && fds[i].revents != 0 {
            let n = read(fds[i].fd, &buf, buf.count)
            if n > 0 {
                if i == 0 { if out.count < limit { out += buf[0..<min(n, limit - out.count)] } }
                else if err.count < 65536 { err += buf[0..<min(n, 65536 - err.count)] }
            } else if n == 0 || (errno != EAGAIN && errno != EINTR) {
                fds[i].fd = -1; open -= 1
            }
        }
    }
    let t = p.wait()
    guard t.succeeded else {
        let msg = String(decoding: err, as: UTF8.self).trimmingCharacters(in: .whitespacesAndNewlines)
        throw LabError(.build, "`\(argv.joined(separator: " "))` failed with \(t)\(msg.isEmpty ? "" : ": \(msg.suffix(2000))")")
    }
    return String(decoding: out, as: UTF8.self)
}

/// pipe() with both ends close-on-exec (pipe2 is not visible to Swift's Glibc module).
func makePipe(_ fds: inout [Int32]) -> Bool {
    guard pipe(&fds) == 0 else { return false }
    for fd in fds { _ = fcntl(fd, F_SETFD, FD_CLOEXEC) }
    return true
}

func withCStrings<R>(_ strings: [String], _ body: (UnsafePointer<UnsafeMutablePointer<CChar>?>) -> R) -> R {
    var cStrings: [UnsafeMutablePointer<CChar>?] = strings.map { strdup($0) }
    cStrings.append(nil)
    defer { for p in cStrings { free(p) } }
    return cStrings.withUnsafeBufferPointer { body($0.baseAddress!) }
}

/// glibc 2.36's wrapper for pidfd_open(2) (the Glibc module does not import <sys/pidfd.h>).
@_silgen_name("pidfd_open")
private func pidfdOpen(_ pid: pid_t, _ flags: UInt32) -> Int32
