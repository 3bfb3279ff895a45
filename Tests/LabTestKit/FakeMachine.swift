import AgentCore
import Foundation
import Glibc
import LabCore
import LabProtocol
import LabRuntime
import Synchronization

/// A `Machine` whose guest is a thread of the test process: the real `AgentServer` (AgentCore) answers on
/// one end of a socketpair, reading /proc, debugfs and sysfs files from a folder that a small kernel model
/// (`FakeKernel`) keeps up to date. Between the server and the host's `AgentClient` the guest thread plays
/// the kernel: it answers debugfs writes, the pressure and release scripts and /dev/kmsg, and carries out
/// the `FakeGuest.faults`. The console is a pipe the guest thread prints to; its end is the machine's end.
///
/// Like QEMU's chardev, the machine listens on `plan.agentSocket`, so `AgentClient` connects as it does to a
/// real guest.
public final class FakeMachine: Machine, @unchecked Sendable {
    public let run: RunDirectory
    public private(set) var console = ConsoleWatcher()
    public private(set) var exit: MachineExit?
    public let started = Date()
    public var pid: pid_t { -1 }
    public var uptime: TimeInterval { Date().timeIntervalSince(started) }
    public var isRunning: Bool { exit == nil && !consoleEOF && !shared.ended.load(ordering: .relaxed) }
    public var consoleLimit = 64 << 20
    public var onConsoleLine: ((String) -> Void)?
    public var agentFD: Int32 = -1
    public var onAgentReadable: (() -> Bool)?
    /// How long a crash on the console may go on printing before the machine is stopped (QEMU's is 3 s).
    public var crashGrace: TimeInterval = 0.2
    /// The requests the guest received, in order (filled by the guest thread).
    public var requests: [AgentRequest] { shared.received.withLock { $0 } }

    private let consoleRead: Int32
    private let stopWrite: Int32
    private let log: FileHandle
    private var consoleEOF = false
    private var crashSeenAt: Date?
    private let shared = GuestShared()

    /// Starts the guest thread. `socket` is where the host's agent client connects (nil: no agent).
    public init(guest: FakeGuest, run: RunDirectory, socket: String?) throws(FakeSetupError) {
        self.run = run
        // Socket pairs rather than pipes: either side may write after the other closed, without SIGPIPE.
        let consolePipe = try Self.socketPair(), stopPipe = try Self.socketPair()
        consoleRead = consolePipe[0]
        stopWrite = stopPipe[1]
        _ = FileManager.default.createFile(atPath: run.file("console.log"), contents: nil)
        guard let log = FileHandle(forWritingAtPath: run.file("console.log")) else { throw FakeSetupError("cannot open console.log") }
        self.log = log
        var listener: Int32?
        if let socket { listener = try Self.listen(socket) }
        let root = run.file("guest")
        let kernel = try FakeKernel(root: root, guest: guest)
        let thread = GuestThread(guest: guest, kernel: kernel, paths: Self.paths(root: root), console: consolePipe[1],
                                 stop: stopPipe[0], listener: listener, shared: shared)
        let t = Thread { thread.run() }
        t.stackSize = 1 << 20
        t.start()
    }

    deinit {
        stop()
        close(consoleRead); close(stopWrite)
        try? log.close()
    }

    /// AgentPaths rooted in the guest folder (the layout Tests/AgentCoreTests uses).
    static func paths(root: String) -> AgentPaths {
        AgentPaths(proc: root + "/proc", sys: root + "/sys", dev: root + "/dev", debugfsCMA: root + "/debug/cma",
                   sysfsCMA: root + "/sys/kernel/mm/cma", kmsg: root + "/dev/kmsg", busybox: root + "/bin/busybox")
    }

    // MARK: - Machine

    @discardableResult
    public func runLoop(until deadline: Date, _ condition: () -> Bool) throws(LabError) -> Bool {
        var agentBacklog = false
        while true {
            if condition() { return true }
            if exit != nil { return false }
            let now = Date()
            if now >= deadline { return condition() }
            if let seen = crashSeenAt, now.timeIntervalSince(seen) > crashGrace {
                stop(); exit = .crashed(console.crash!); return false
            }
            var fds = [pollfd(fd: consoleEOF ? -1 : consoleRead, events: Int16(POLLIN), revents: 0),
                       pollfd(fd: agentFD, events: Int16(POLLIN), revents: 0)]
            _ = poll(&fds, 2, agentBacklog ? 0 : Int32(max(1, min(50, deadline.timeIntervalSince(now) * 1000))))
            if fds[0].revents != 0 { readConsole() }
            if fds[1].revents != 0 || agentBacklog { agentBacklog = onAgentReadable?() ?? false }
            if consoleEOF { recordEnd(); return condition() }
        }
    }

    public func waitForExit(timeout: TimeInterval) throws(LabError) -> MachineExit {
        try runLoop(until: started.addingTimeInterval(timeout), { false })
        if let exit { return exit }
        stop()
        exit = .timedOut(seconds: timeout)
        return exit!
    }

    /// Tells the guest thread to end, then reads the console to its end. Safe to call more than once.
    public func stop() {
        var b: UInt8 = 1
        _ = send(stopWrite, &b, 1, Int32(MSG_NOSIGNAL))
        let deadline = Date().addingTimeInterval(5)
        while !consoleEOF, Date() < deadline {
            var p = pollfd(fd: consoleRead, events: Int16(POLLIN), revents: 0)
            if poll(&p, 1, 100) > 0 { readConsole() }
        }
        if let last = console.finish() { onConsoleLine?(last) }
    }

    private func readConsole() {
        var buf = [UInt8](repeating: 0, count: 65536)
        let n = read(consoleRead, &buf, buf.count)
        guard n > 0 else { consoleEOF = true; return }
        log.write(Data(buf[0..<n].prefix(max(0, consoleLimit))))
        let hadCrash = console.crash != nil
        for line in console.feed(buf[0..<n]) { onConsoleLine?(line) }
        if !hadCrash, console.crash != nil { crashSeenAt = Date() }
    }

    /// The guest is gone: a crash on the console, else what the guest thread said.
    private func recordEnd() {
        if let last = console.finish() { onConsoleLine?(last) }
        guard exit == nil else { return }
        if let crash = console.crash { exit = .crashed(crash); return }
        exit = shared.ending.withLock { $0 } ?? .qemuFailed("the fake guest ended")
    }

    static func socketPair() throws(FakeSetupError) -> [Int32] {
        var fds: [Int32] = [-1, -1]
        guard socketpair(AF_UNIX, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0, &fds) == 0 else {
            throw FakeSetupError("socketpair: \(errno)")
        }
        return fds
    }

    /// A listening Unix socket at `path` (QEMU's `server=on,wait=off` chardev).
    static func listen(_ path: String) throws(FakeSetupError) -> Int32 {
        let fd = socket(AF_UNIX, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        var addr = sockaddr_un()
        addr.sun_family = sa_family_t(AF_UNIX)
        let bytes = Array(path.utf8)
        guard fd >= 0, bytes.count < MemoryLayout.size(ofValue: addr.sun_path) else { throw FakeSetupError("socket \(path)") }
        withUnsafeMutableBytes(of: &addr.sun_path) { for (i, b) in bytes.enumerated() { $0[i] = b } }
        let rc = withUnsafePointer(to: &addr) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, socklen_t(MemoryLayout<sockaddr_un>.size)) } }
        guard rc == 0, Glibc.listen(fd, 1) == 0 else { close(fd); throw FakeSetupError("bind/listen \(path): \(errno)") }
        return fd
    }
}

/// What the guest thread tells the machine.
private final class GuestShared: Sendable {
    /// How the guest ended, set just before the guest thread closes the console.
    let ending = Mutex<MachineExit?>(nil)
    let ended = Atomic<Bool>(false)
    let received = Mutex<[AgentRequest]>([])
    /// Set by the agent server once it carried out a power action.
    let poweredOff = Atomic<Bool>(false)
}

/// The guest's side: prints the console, runs the real agent server, and sits between it and the host
/// as the kernel would.
private final class GuestThread: @unchecked Sendable {
    let guest: FakeGuest
    let kernel: FakeKernel
    let paths: AgentPaths
    let console: Int32
    let stop: Int32
    let listener: Int32?
    let shared: GuestShared
    private var host: Int32 = -1
    private var agent: Int32 = -1
    /// The faults (by index) that have fired: each fires once.
    private var fired: Set<Int> = []

    init(guest: FakeGuest, kernel: FakeKernel, paths: AgentPaths, console: Int32, stop: Int32, listener: Int32?, shared: GuestShared) {
        self.guest = guest; self.kernel = kernel; self.paths = paths; self.console = console; self.stop = stop
        self.listener = listener; self.shared = shared
    }

    func run() {
        defer { end() }
        print(guest.console)
        for fault in guest.faults {
            switch fault {
            case .neverReady: waitForStop(); return
            case .panicAtBoot(let lines): print(lines); return
            default: continue
            }
        }
        guard let listener else { waitForStop(); return }
        guard startAgent(), accept(listener) else { return }
        relay()
    }

    /// The real agent server on its own thread, over a socketpair.
    private func startAgent() -> Bool {
        var fds: [Int32] = [-1, -1]
        guard socketpair(AF_UNIX, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0, &fds) == 0 else { return false }
        agent = fds[0]
        let handler = AgentHandler(paths: paths)
        let shared = shared
        let server = AgentServer(handler: handler, hello: handler.hello(channel: "fake:socketpair"), reapsOrphans: false,
                                 announceIntervalMilliseconds: 200, onPowerAction: { _ in shared.poweredOff.store(true, ordering: .relaxed) })
        let serverFD = fds[1]
        Thread {
            try? server.serve(fd: serverFD)
            close(serverFD)
        }.start()
        return true
    }

    /// Waits for the host to connect (or the machine to be stopped).
    private func accept(_ listener: Int32) -> Bool {
        var fds = [pollfd(fd: listener, events: Int16(POLLIN), revents: 0), pollfd(fd: stop, events: Int16(POLLIN), revents: 0)]
        while poll(&fds, 2, -1) < 0 && errno == EINTR {}
        guard fds[1].revents == 0 else { return false }
        host = Glibc.accept(listener, nil, nil)
        return host >= 0
    }

    /// Carries frames between the host and the agent until the guest ends.
    private func relay() {
        var decoder = FrameDecoder(maxPayload: 32 << 20)
        var buf = [UInt8](repeating: 0, count: 65536)
        var count = 0
        while true {
            var fds = [pollfd(fd: host, events: Int16(POLLIN), revents: 0), pollfd(fd: agent, events: Int16(POLLIN), revents: 0),
                       pollfd(fd: stop, events: Int16(POLLIN), revents: 0)]
            if poll(&fds, 3, -1) < 0 { if errno == EINTR { continue }; return }
            if fds[2].revents != 0 { return }
            if fds[1].revents != 0 {
                let n = read(agent, &buf, buf.count)
                if n <= 0 {
                    // The server returns after carrying out a power action; otherwise the agent died.
                    if shared.poweredOff.load(ordering: .relaxed) { print(["[    9.000000] reboot: Power down"]); shared.ending.withLock { $0 = .poweredOff } }
                    else { print(FakeGuest.initKilledPanic) }
                    return
                }
                send(Array(buf[0..<n]))
            }
            if fds[0].revents != 0 {
                let n = read(host, &buf, buf.count)
                if n <= 0 { waitForStop(); return }
                decoder.feed(buf[0..<n])
                while let frame = decoder.next() {
                    guard frame.kind == .request, let request = try? AgentRequest.decode(frame.payload) else {
                        writeAll(agent, frame.encoded()); continue
                    }
                    count += 1
                    shared.received.withLock { $0.append(request) }
                    guard handle(frame, request, number: count) else { return }
                }
            }
        }
    }

    /// One request: a fault, the kernel model's answer, or the real agent's. False when the guest ends.
    private func handle(_ frame: Frame, _ request: AgentRequest, number: Int) -> Bool {
        for (i, fault) in guest.faults.enumerated() where !fired.contains(i) {
            if let m = fault.matcher, m.matches(number, request) { fired.insert(i) } else { continue }
            switch fault {
            case .panic(_, let lines): print(lines); return false
            case .agentDies:
                close(host); host = -1
                print(FakeGuest.initKilledPanic)
                return false
            case .machineVanishes: return false
            case .neverAnswers: return true
            case .answer(_, let response):
                send(Frame(kind: .response, id: frame.id, payload: response.encode()).encoded())
                return true
            case .garbageBefore(_, let bytes): send(bytes)
            case .neverReady, .panicAtBoot: continue
            }
        }
        let response: AgentResponse?
        do { response = try kernel.answer(request) } catch { response = .failure(errno: EIO, message: "fake kernel: \(error)") }
        if let response {
            send(Frame(kind: .response, id: frame.id, payload: response.encode()).encoded())
        } else {
            writeAll(agent, frame.encoded())
        }
        return true
    }

    private func send(_ bytes: [UInt8]) { if host >= 0 { writeAll(host, bytes) } }

    private func print(_ lines: [String]) {
        guard !lines.isEmpty else { return }
        writeAll(console, Array((lines.joined(separator: "\r\n") + "\r\n").utf8))
    }

    private func waitForStop() {
        var p = pollfd(fd: stop, events: Int16(POLLIN), revents: 0)
        while poll(&p, 1, -1) < 0 && errno == EINTR {}
    }

    /// Closes everything; the console's EOF tells the host the machine is gone.
    private func end() {
        if host >= 0 { close(host) }
        if agent >= 0 { close(agent) }
        if let listener { close(listener) }
        shared.ended.store(true, ordering: .relaxed)
        close(stop)
        close(console)
    }

    private func writeAll(_ fd: Int32, _ bytes: [UInt8]) {
        var off = 0
        while off < bytes.count {
            let n = bytes[off...].withUnsafeBytes { Glibc.send(fd, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL)) }
            if n < 0, errno == ENOTSOCK {
                let w = bytes[off...].withUnsafeBytes { Glibc.write(fd, $0.baseAddress, $0.count) }
                if w <= 0 { return }
                off += w; continue
            }
            if n <= 0 { if errno == EINTR { continue }; return }
            off += n
        }
    }
}
