import Foundation
import LabCore
import LabProtocol

/// The host end of the agent channel: a Unix socket that QEMU serves (virtio-serial port or second UART).
///
/// Everything runs inside the machine's event loop, so while the client waits for the agent it also reads
/// the console: a panic before the agent is up is reported as such, with the console tail, never as a
/// bare timeout. What the guest sends is bounded by the frame decoder's payload limit.
public final class AgentClient: @unchecked Sendable {
    public let machine: any Machine
    public let socketPath: String
    /// The agent's hello, from its ready event.
    public var hello: AgentHello? { inbox.hello }
    /// When the ready event arrived.
    public private(set) var readyAt: Date?
    public private(set) var closed = false
    /// Bytes on the channel that are not frames the client asked for, at most (garbage, frames that fail
    /// their checks, responses to ids nobody waits for, events beyond `eventBudget`); a guest that sends
    /// more is flooding it.
    public var garbageLimit: UInt64 {
        get { inbox.garbageLimit }
        set { inbox.garbageLimit = newValue }
    }
    /// Set when the guest flooded the channel (the client then stops reading it).
    public private(set) var flooded: String?
    /// The payload bytes of events the client keeps at most; beyond it events are dropped and counted.
    public static let eventBudget = AgentInbox.eventBudget
    /// Events other than `ready` (agent log lines, fatal reasons), oldest first, at most `eventBudget`
    /// payload bytes of them.
    public var events: [AgentEvent] { inbox.events }
    /// The agent's last fatal message, kept even when `events` had no room left for it (cut to 4 KiB).
    public var lastFatal: String? { inbox.lastFatal }
    /// Valid frames thrown away: responses to ids nobody waits for (unasked, or late after a timeout) and
    /// events beyond the budget. Their bytes count against `garbageLimit`.
    public var droppedFrames: UInt64 { inbox.droppedFrames }
    public var droppedBytes: UInt64 { inbox.droppedBytes }
    /// The most bytes held for the host at once (decoder, responses, events), for tests.
    public var peakBufferedBytes: Int { inbox.peakBufferedBytes }

    private var fd: Int32 = -1
    /// What the guest sent, decoded: which frames are kept, dropped and counted (no I/O; fuzzed by cmalab-fuzz).
    private var inbox = AgentInbox(maxPayload: 32 << 20)

    /// Bytes held for the host right now: the decoder's buffer, responses not yet taken, events.
    public var bufferedBytes: Int { inbox.bufferedBytes }
    /// Bytes on the channel that were not frames the client kept.
    var unwantedBytes: UInt64 { inbox.unwantedBytes }
    private var nextID: UInt32 = 1
    private var buffer = [UInt8](repeating: 0, count: 65536)

    public init(machine: any Machine, socketPath: String) {
        self.machine = machine
        self.socketPath = socketPath
    }

    deinit { if fd >= 0 { close(fd) } }

    /// Connects to QEMU's socket and waits for the agent's ready event.
    public func waitReady(deadline: Date) throws(LabError) -> AgentHello {
        try connect(deadline: deadline)
        try machine.runLoop(until: deadline) { [unowned self] in self.hello != nil || self.closed }
        if let hello { return hello }
        throw failure(waitingFor: "the agent to start")
    }

    /// Sends one request and waits for its response.
    public func request(_ request: AgentRequest, timeout: TimeInterval = 30) throws(LabError) -> AgentResponse {
        guard fd >= 0, !closed else { throw LabError(.agent, "the agent channel is closed") }
        let id = nextID
        nextID &+= 1
        let frame = Frame(kind: .request, id: id, payload: request.encode())
        inbox.expect(id)
        defer { inbox.forget(id) }
        try send(frame.encoded(), for: request)
        let deadline = Date().addingTimeInterval(timeout)
        _ = try machine.runLoop(until: deadline) { [unowned self] in self.inbox.response(to: id) != nil || self.closed }
        if let r = inbox.response(to: id) { return r }
        throw failure(waitingFor: "the agent to answer \(Self.name(of: request))")
    }

    // MARK: - Typed requests

    /// Runs `command` with busybox `sh -c` in the guest.
    public func shell(_ command: String, cwd: String = "/", timeout: TimeInterval, maxOutputBytes: UInt32 = 4 << 20) throws(LabError) -> ExecResult {
        let req = ExecRequest(argv: ["/bin/sh", "-c", command], env: ["PATH=/bin:/sbin:/usr/bin:/usr/sbin", "HOME=/root"], cwd: cwd,
                              timeoutMilliseconds: UInt32(min(timeout, 86_400) * 1000), maxOutputBytes: maxOutputBytes, stdin: [])
        let response = try request(.exec(req), timeout: timeout + 10)
        guard case .exec(let result) = response else { throw unexpected(response, to: "exec") }
        return result
    }

    public func meminfo() throws(LabError) -> Meminfo {
        let response = try request(.meminfo)
        guard case .meminfo(let m) = response else { throw unexpected(response, to: "meminfo") }
        return m
    }

    /// The guest's CMA areas; `bitmap: false` asks for the counters only (cheaper, see `cmaAreaCounters`).
    public func cmaAreas(bitmap: Bool = true) throws(LabError) -> [CMAArea] {
        let response = try request(bitmap ? .cmaAreas : .cmaAreaCounters)
        guard case .cmaAreas(let areas) = response else { throw unexpected(response, to: "cmaAreas") }
        return areas
    }

    private func unexpected(_ response: AgentResponse, to what: String) -> LabError {
        if case .failure(let e, let message) = response { return LabError(.agent, "the agent could not do \(what): \(message) (errno \(e))") }
        return LabError(.agent, "unexpected answer to \(what): \(response)")
    }

    /// Asks the guest to power off and waits for QEMU to exit.
    public func powerOff(timeout: TimeInterval = 20) throws(LabError) -> MachineExit {
        if !closed { _ = try? request(.poweroff, timeout: 5) }
        return try machine.waitForExit(timeout: machine.uptime + timeout)
    }

    // MARK: - Internals

    private func connect(deadline: Date) throws(LabError) {
        guard fd < 0 else { return }
        let address = try UnixSocketAddress(socketPath)
        while true {
            let s = try UnixSocketAddress.newSocket(for: socketPath)
            let rc = address.withSockaddr { Glibc.connect(s, $0, $1) }
            if rc == 0 {
                _ = fcntl(s, F_SETFL, fcntl(s, F_GETFL) | O_NONBLOCK)
                fd = s
                machine.agentFD = s
                machine.onAgentReadable = { [unowned self] in self.readAvailable() }
                return
            }
            close(s)
            // QEMU creates the socket a moment after it starts.
            if !machine.isRunning || Date() >= deadline {
                throw failure(waitingFor: "QEMU's agent socket \(socketPath)")
            }
            try machine.runLoop(until: Date().addingTimeInterval(0.02))
        }
    }

    private func send(_ bytes: [UInt8], for request: AgentRequest) throws(LabError) {
        var off = 0
        let deadline = Date().addingTimeInterval(30)
        while off < bytes.count {
            let n = bytes[off...].withUnsafeBytes { Glibc.send(fd, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL)) }
            if n > 0 { off += n; continue }
            if n < 0 && (errno == EAGAIN || errno == EINTR) {
                guard Date() < deadline else { throw LabError(.agent, "the agent does not read its channel") }
                try machine.runLoop(until: Date().addingTimeInterval(0.01))
                continue
            }
            // EPIPE/ECONNRESET: the other end is gone, usually because QEMU or the guest ended; say which.
            let why = String(cString: strerror(errno))
            closed = true
            throw failure(waitingFor: "the agent to read \(Self.name(of: request)) (write: \(why))")
        }
    }

    /// How long `readAvailable` decodes before it lets the event loop check its deadline and signals.
    static let timeSlice: TimeInterval = 0.1
    /// Checksum work (bytes) the decoder does between looks at the clock.
    static let decodeStep = 1 << 20

    /// Reads and decodes what the guest sent, for at most one time slice. Returns true when it stopped
    /// with bytes left to decode or to read.
    private func readAvailable() -> Bool {
        let sliceEnd = Date().addingTimeInterval(Self.timeSlice)
        while fd >= 0 {
            let drained = decodeBuffered(until: sliceEnd)
            if inbox.isFlooded {
                stopReading(flooded: inbox.floodReason)
                return false
            }
            if !drained || Date() >= sliceEnd { return true }
            let n = recv(fd, &buffer, buffer.count, 0)
            if n > 0 {
                inbox.feed(buffer[0..<n])
                continue
            }
            if n == 0 || (errno != EAGAIN && errno != EINTR) {
                closed = true
                machine.agentFD = -1
            }
            return false
        }
        return false
    }

    /// Hands out the frames the decoder can find in what it holds. False when `sliceEnd` came first.
    private func decodeBuffered(until sliceEnd: Date) -> Bool {
        while true {
            var budget = Self.decodeStep
            while inbox.takeFrame(budget: &budget) {
                if readyAt == nil, inbox.hello != nil { readyAt = Date() }
            }
            if budget > 0 { return true }
            if Date() >= sliceEnd { return false }
        }
    }

    /// Stops reading a channel the guest flooded; the next wait fails with `reason`.
    private func stopReading(flooded reason: String) {
        flooded = reason
        closed = true
        machine.agentFD = -1
    }

    /// Turns "the thing we waited for did not come" into the most specific reason there is.
    private func failure(waitingFor what: String) -> LabError {
        // The channel often closes a moment before QEMU exits on a panic: let the machine finish so the
        // console decides (its crash grace period is 3 s at most). A QEMU that has already exited (and may
        // already be reaped by `isRunning`) still needs one turn of the loop to record how it ended. A channel
        // closed because the guest flooded it explains itself: no wait (the guest would still be flooding, and
        // the run would end up to 5 s past its deadline).
        if machine.exit == nil, (closed && flooded == nil) || !machine.isRunning {
            _ = try? machine.runLoop(until: Date().addingTimeInterval(5))
        }
        let tail = machine.console.tail.suffix(25).joined(separator: "\n")
        if let flooded { return LabError(.agent, "\(flooded)\n--- console tail ---\n\(tail)") }
        if let fatal = inbox.lastFatal {
            return LabError(.agent, "the agent failed: \(fatal)")
        }
        if let crash = machine.console.crash {
            machine.stop()
            let when = hello == nil ? " before the agent started" : ""
            return LabError(.kernelCrash, "\(crash.summary)\(when)\n--- console tail ---\n\(tail)")
        }
        switch machine.exit {
        case .crashed(let crash)?:
            let when = hello == nil ? " before the agent started" : ""
            return LabError(.kernelCrash, "\(crash.summary)\(when)\n--- console tail ---\n\(tail)")
        case .qemuFailed(let why)?:
            return LabError(.qemu, why)
        case .poweredOff?:
            return LabError(.agent, "the guest powered off while waiting for \(what)\n--- console tail ---\n\(tail)")
        case .timedOut?, nil:
            if closed { return LabError(.agent, "the agent closed its channel while cmalab waited for \(what)\n--- console tail ---\n\(tail)") }
            return LabError(.timeout, "timed out after \(String(format: "%.1f", machine.uptime)) s waiting for \(what)\n--- console tail ---\n\(tail)",
                            hint: "raise --timeout, or look at console.log in \(machine.run.path)")
        }
    }

    static func name(of r: AgentRequest) -> String {
        String(describing: r).split(separator: "(").first.map(String.init) ?? "a request"
    }
}
