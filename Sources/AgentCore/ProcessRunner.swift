import Glibc
import LabProtocol

/// Runs one child process to completion with bounded output and an optional timeout.
enum ProcessRunner {
    static let defaultPath = "/bin:/sbin:/usr/bin:/usr/sbin"

    /// Spawns `request.argv`, feeds it `request.stdin`, captures stdout and stderr (each
    /// capped at `min(maxOutputBytes, outputCap)`, the rest drained and dropped) and waits
    /// for it. The child leads its own process group, which is SIGKILLed on timeout.
    /// Throws only if the child's exit status is lost (someone else reaped it).
    static func run(_ request: ExecRequest, outputCap: Int = AgentLimits.execOutputBytes) throws(SystemError) -> ExecResult {
        guard let program = request.argv.first, !program.isEmpty else {
            return ExecResult(termination: .spawnFailed(errno: EINVAL))
        }
        var environment = request.env
        if !environment.contains(where: { $0.hasPrefix("PATH=") }) {
            environment.append("PATH=" + defaultPath)
        }
        guard let executable = resolve(program, environment: environment) else {
            return ExecResult(termination: .spawnFailed(errno: ENOENT))
        }

        let start = monotonicNanoseconds()
        let child: SpawnedChild
        do {
            child = try spawn(executable, request: request, environment: environment)
        } catch {
            return ExecResult(termination: .spawnFailed(errno: error.errno))
        }
        let cap = min(Int(request.maxOutputBytes), outputCap)
        var output = (stdout: Capture(fd: child.stdout, cap: cap), stderr: Capture(fd: child.stderr, cap: cap))
        var input = StdinFeeder(fd: child.stdin, bytes: request.stdin)
        let deadline = request.timeoutMilliseconds == 0
            ? nil : start + UInt64(request.timeoutMilliseconds) * 1_000_000
        defer {
            output.stdout.close()
            output.stderr.close()
            input.close()
        }

        let termination = try supervise(child.pid, deadline: deadline, output: &output, input: &input)
        return ExecResult(
            termination: termination, stdout: output.stdout.bytes, stderr: output.stderr.bytes,
            stdoutTruncated: output.stdout.truncated, stderrTruncated: output.stderr.truncated,
            durationNanoseconds: monotonicNanoseconds() - start)
    }

    /// Pumps stdin and the output pipes until the child has exited and its output is
    /// drained, or kills its process group at the deadline.
    private static func supervise(
        _ pid: pid_t, deadline: UInt64?, output: inout (stdout: Capture, stderr: Capture), input: inout StdinFeeder
    ) throws(SystemError) -> ExecTermination {
        var scratch = [UInt8](repeating: 0, count: 64 << 10)
        var exited: (termination: ExecTermination, at: UInt64)?
        while true {
            if exited == nil, let status = try reap(pid, blocking: false) {
                exited = (termination(waitStatus: status), monotonicNanoseconds())
            }
            let now = monotonicNanoseconds()
            let outputOpen = output.stdout.fd >= 0 || output.stderr.fd >= 0
            if let exited {
                // Done once both pipes hit EOF; if descendants keep them open, give
                // them a moment to flush and then stop listening.
                if !outputOpen || now - exited.at > 100_000_000 { return exited.termination }
            } else if let deadline, now >= deadline {
                kill(-pid, SIGKILL)
                _ = try reap(pid, blocking: true)
                return .timedOut
            }

            // Short slices so a child that exits without closing its pipes (or after
            // closing them) is noticed promptly; pipe activity wakes poll at once.
            var sliceMilliseconds = outputOpen ? 100 : 10
            if exited == nil, let deadline {
                sliceMilliseconds = min(sliceMilliseconds, Int((deadline - min(deadline, now)) / 1_000_000) + 1)
            }
            var fds = [output.stdout.pollRequest, output.stderr.pollRequest, input.pollRequest]
            let ready = poll(&fds, nfds_t(fds.count), Int32(sliceMilliseconds))
            if ready < 0 && errno != EINTR {
                let error = SystemError("poll")
                if exited == nil {
                    kill(-pid, SIGKILL)
                    _ = try reap(pid, blocking: true)
                }
                throw error
            }
            if ready > 0 {
                output.stdout.service(fds[0].revents, scratch: &scratch)
                output.stderr.service(fds[1].revents, scratch: &scratch)
                input.service(fds[2].revents)
            }
        }
    }

    /// Decodes a waitpid(2) status (WIFEXITED / WEXITSTATUS / WTERMSIG, which Swift
    /// does not import because they are macros).
    private static func termination(waitStatus status: Int32) -> ExecTermination {
        status & 0x7F == 0 ? .exited((status >> 8) & 0xFF) : .signaled(status & 0x7F)
    }

    /// An absolute or relative path is used as is; a bare name is searched in PATH.
    static func resolve(_ program: String, environment: [String]) -> String? {
        if program.contains("/") { return program }
        let path = environment.last { $0.hasPrefix("PATH=") }.map { String($0.dropFirst(5)) } ?? defaultPath
        for directory in path.split(separator: ":", omittingEmptySubsequences: true) {
            let candidate = joinPath(String(directory), program)
            if access(candidate, X_OK) == 0 && !isDirectory(candidate) { return candidate }
        }
        return nil
    }

    /// Waits for `pid`; nil if it has not exited yet (non-blocking mode).
    private static func reap(_ pid: pid_t, blocking: Bool) throws(SystemError) -> Int32? {
        var status: Int32 = 0
        while true {
            let result = waitpid(pid, &status, blocking ? 0 : WNOHANG)
            if result == pid { return status }
            if result == 0 { return nil }
            if errno != EINTR { throw SystemError("waitpid \(pid)") }
        }
    }

    private struct SpawnedChild {
        var pid: pid_t
        /// Parent ends, non-blocking. `stdin` is -1 when the child reads /dev/null.
        var stdin: Int32
        var stdout: Int32
        var stderr: Int32
    }

    private static func spawn(
        _ executable: String, request: ExecRequest, environment: [String]
    ) throws(SystemError) -> SpawnedChild {
        // Every descriptor is close-on-exec, so no other child (spawned concurrently by
        // another thread) inherits them; dup2 onto 0/1/2 clears the flag for this child.
        // On return everything opened here is closed except the parent ends handed out.
        var opened = [Int32]()
        var handedOut = [Int32]()
        defer { for fd in opened where !handedOut.contains(fd) { close(fd) } }
        func makePipe() throws(SystemError) -> (read: Int32, write: Int32) {
            var fds: [Int32] = [-1, -1]
            guard glibcPipe2(&fds, O_CLOEXEC) == 0 else { throw SystemError("pipe2") }
            opened += fds
            return (fds[0], fds[1])
        }

        let stdinPipe: (read: Int32, write: Int32)
        if request.stdin.isEmpty {
            let devNull = open("/dev/null", O_RDONLY | O_CLOEXEC)
            guard devNull >= 0 else { throw SystemError("open /dev/null") }
            opened.append(devNull)
            stdinPipe = (devNull, -1)
        } else {
            stdinPipe = try makePipe()
        }
        let stdoutPipe = try makePipe()
        let stderrPipe = try makePipe()

        var actions = posix_spawn_file_actions_t()
        posix_spawn_file_actions_init(&actions)
        defer { posix_spawn_file_actions_destroy(&actions) }
        posix_spawn_file_actions_adddup2(&actions, stdinPipe.read, 0)
        posix_spawn_file_actions_adddup2(&actions, stdoutPipe.write, 1)
        posix_spawn_file_actions_adddup2(&actions, stderrPipe.write, 2)
        if let cwd = request.cwd {
            let rc = glibcSpawnAddChdir(&actions, cwd)
            guard rc == 0 else { throw SystemError("chdir \(cwd)", errno: rc) }
        }

        var attributes = posix_spawnattr_t()
        posix_spawnattr_init(&attributes)
        defer { posix_spawnattr_destroy(&attributes) }
        // Own process group (pgid = pid), empty signal mask, default dispositions
        // (the agent ignores SIGPIPE; `yes | head` must not).
        var noSignals = sigset_t()
        sigemptyset(&noSignals)
        var allSignals = sigset_t()
        sigfillset(&allSignals)
        posix_spawnattr_setpgroup(&attributes, 0)
        posix_spawnattr_setsigmask(&attributes, &noSignals)
        posix_spawnattr_setsigdefault(&attributes, &allSignals)
        posix_spawnattr_setflags(
            &attributes, Int16(POSIX_SPAWN_SETPGROUP | POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF))

        var pid: pid_t = 0
        let rc = withCStringArray(request.argv) { argv in
            withCStringArray(environment) { envp in
                posix_spawn(&pid, executable, &actions, &attributes, argv, envp)
            }
        }
        guard rc == 0 else { throw SystemError("posix_spawn \(executable)", errno: rc) }

        handedOut = [stdinPipe.write, stdoutPipe.read, stderrPipe.read].filter { $0 >= 0 }
        for fd in handedOut {
            _ = fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK)
        }
        return SpawnedChild(pid: pid, stdin: stdinPipe.write, stdout: stdoutPipe.read, stderr: stderrPipe.read)
    }
}

/// One output pipe: keeps the first `cap` bytes, drains and drops the rest.
private struct Capture {
    var fd: Int32
    let cap: Int
    var bytes: [UInt8] = []
    var truncated = false

    init(fd: Int32, cap: Int) {
        self.fd = fd
        self.cap = cap
    }

    var pollRequest: pollfd { pollfd(fd: fd, events: Int16(POLLIN), revents: 0) }

    mutating func service(_ events: Int16, scratch: inout [UInt8]) {
        guard fd >= 0, events != 0 else { return }
        let n = scratch.withUnsafeMutableBytes { read(fd, $0.baseAddress, $0.count) }
        if n > 0 {
            let keep = min(n, cap - bytes.count)
            bytes += scratch[0..<keep]
            if keep < n { truncated = true }
        } else if n == 0 || (errno != EAGAIN && errno != EINTR) {
            close()
        }
    }

    mutating func close() {
        if fd >= 0 { Glibc.close(fd) }
        fd = -1
    }
}

/// The child's stdin pipe: written as the child reads, closed once everything is in.
private struct StdinFeeder {
    var fd: Int32
    let bytes: [UInt8]
    var offset = 0

    init(fd: Int32, bytes: [UInt8]) {
        self.fd = fd
        self.bytes = bytes
    }

    var pollRequest: pollfd { pollfd(fd: fd, events: Int16(POLLOUT), revents: 0) }

    mutating func service(_ events: Int16) {
        guard fd >= 0, events != 0 else { return }
        let n = bytes.withUnsafeBytes { write(fd, $0.baseAddress! + offset, $0.count - offset) }
        if n > 0 {
            offset += n
            if offset == bytes.count { close() }
        } else if n < 0 && errno != EAGAIN && errno != EINTR {
            close()  // EPIPE: the child stopped reading.
        }
    }

    mutating func close() {
        if fd >= 0 { Glibc.close(fd) }
        fd = -1
    }
}
