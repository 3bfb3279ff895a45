import Glibc
import LabProtocol

public enum PowerAction: Sendable {
    case poweroff
    case reboot
}

/// The agent's request loop over one channel (virtio port, UART or, in tests, a socket).
public struct AgentServer: Sendable {
    public var handler: AgentHandler
    public var hello: AgentHello
    /// Reap any exited child between requests. Needed as PID 1, which inherits
    /// orphans; off elsewhere, where it could steal another thread's children.
    public var reapsOrphans: Bool
    /// Until the first frame arrives the ready event is repeated this often: a UART
    /// drops what the guest sends before the host has connected.
    public var announceIntervalMilliseconds: Int32
    /// Called after a poweroff/reboot request has been answered and the disks synced.
    public var onPowerAction: @Sendable (PowerAction) -> Void

    public init(
        handler: AgentHandler, hello: AgentHello, reapsOrphans: Bool = getpid() == 1,
        announceIntervalMilliseconds: Int32 = 1000, onPowerAction: @escaping @Sendable (PowerAction) -> Void
    ) {
        self.handler = handler
        self.hello = hello
        self.reapsOrphans = reapsOrphans
        self.announceIntervalMilliseconds = announceIntervalMilliseconds
        self.onPowerAction = onPowerAction
    }

    /// Sends the ready event, then answers request frames in order until the peer
    /// closes the channel (read returns 0) or a power action has been carried out.
    /// Frames of other kinds are ignored; an undecodable request gets EINVAL.
    public func serve(fd: Int32) throws(SystemError) {
        ignoreSIGPIPE()
        let ready = Frame(kind: .event, id: 0, payload: AgentEvent.ready(hello).encode())
        try send(ready, to: fd)

        var decoder = FrameDecoder(maxPayload: AgentLimits.framePayloadBytes)
        var buffer = [UInt8](repeating: 0, count: 64 << 10)
        var heardFromHost = false
        while true {
            if reapsOrphans { reapExitedChildren() }
            if !heardFromHost, try !waitReadable(fd) {
                try send(ready, to: fd)
                continue
            }
            let n = buffer.withUnsafeMutableBytes { read(fd, $0.baseAddress, $0.count) }
            if n < 0 {
                if errno == EINTR { continue }
                throw SystemError("read channel")
            }
            if n == 0 { return }
            decoder.feed(buffer[0..<n])
            while let frame = decoder.next() {
                heardFromHost = true
                guard frame.kind == .request else { continue }
                let request: AgentRequest
                let response: AgentResponse
                do {
                    request = try AgentRequest.decode(frame.payload)
                    response = handler.handle(request)
                } catch {
                    try answer(frame.id, .failure(errno: EINVAL, message: "undecodable request: \(error)"), to: fd)
                    continue
                }
                try answer(frame.id, response, to: fd)
                switch request {
                case .poweroff: return powerAction(.poweroff)
                case .reboot: return powerAction(.reboot)
                default: continue
                }
            }
        }
    }

    /// Whether `fd` became readable within the announce interval.
    private func waitReadable(_ fd: Int32) throws(SystemError) -> Bool {
        var request = pollfd(fd: fd, events: Int16(POLLIN), revents: 0)
        while true {
            let ready = poll(&request, 1, announceIntervalMilliseconds)
            if ready >= 0 { return ready > 0 }
            if errno != EINTR { throw SystemError("poll channel") }
        }
    }

    private func powerAction(_ action: PowerAction) {
        sync()
        onPowerAction(action)
    }

    private func answer(_ id: UInt32, _ response: AgentResponse, to fd: Int32) throws(SystemError) {
        var payload = response.encode()
        if payload.count > AgentLimits.framePayloadBytes {
            payload = AgentResponse.failure(
                errno: EFBIG, message: "response of \(payload.count) bytes exceeds the frame limit").encode()
        }
        try send(Frame(kind: .response, id: id, payload: payload), to: fd)
    }

    private func send(_ frame: Frame, to fd: Int32) throws(SystemError) {
        try writeAll(fd, frame.encoded(), "channel")
    }

    private func reapExitedChildren() {
        var status: Int32 = 0
        while waitpid(-1, &status, WNOHANG) > 0 {}
    }
}
