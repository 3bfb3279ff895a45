import Foundation
import Glibc
import Synchronization
import Testing
@testable import AgentCore
import LabProtocol

struct TestFailure: Error, CustomStringConvertible {
    var description: String
}

/// A temporary directory for fixture trees, removed when released.
final class Fixture {
    let root: String

    init() throws {
        var template = Array((NSTemporaryDirectory() as NSString).appendingPathComponent("cmalab-agent-XXXXXX").utf8CString)
        guard let path = mkdtemp(&template), let resolved = realpath(path, nil) else {
            throw TestFailure(description: "mkdtemp failed")
        }
        root = String(cString: resolved)
        free(resolved)
    }

    deinit { try? FileManager.default.removeItem(atPath: root) }

    func path(_ relative: String) -> String { root + "/" + relative }

    func write(_ relative: String, _ contents: String, mode: Int = 0o644) throws {
        let full = path(relative)
        try FileManager.default.createDirectory(
            atPath: (full as NSString).deletingLastPathComponent, withIntermediateDirectories: true)
        try Data(contents.utf8).write(to: URL(fileURLWithPath: full))
        try FileManager.default.setAttributes([.posixPermissions: mode], ofItemAtPath: full)
    }

    func read(_ relative: String) throws -> String {
        try String(contentsOfFile: path(relative), encoding: .utf8)
    }

    func makeDirectory(_ relative: String) throws {
        try FileManager.default.createDirectory(atPath: path(relative), withIntermediateDirectories: true)
    }

    /// AgentPaths rooted in this fixture.
    var paths: AgentPaths {
        AgentPaths(
            proc: path("proc"), sys: path("sys"), dev: path("dev"), debugfsCMA: path("debug/cma"),
            sysfsCMA: path("sys/kernel/mm/cma"), kmsg: path("dev/kmsg"), busybox: path("bin/busybox"))
    }
}

/// Power actions reported by a server, readable from the test.
final class PowerLog: Sendable {
    private let actions = Mutex<[PowerAction]>([])

    func record(_ action: PowerAction) { actions.withLock { $0.append(action) } }
    var recorded: [PowerAction] { actions.withLock { $0 } }
}

/// A real AgentServer on a background thread, driven over a socketpair.
final class AgentConnection {
    let fd: Int32
    let powerLog = PowerLog()
    private(set) var hello: AgentHello?
    private var decoder = FrameDecoder()
    private var nextID: UInt32 = 1

    init(paths: AgentPaths, channel: String = "test:socketpair", announceIntervalMilliseconds: Int32 = 1000) throws {
        var fds: [Int32] = [-1, -1]
        guard socketpair(AF_UNIX, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0, &fds) == 0 else {
            throw TestFailure(description: "socketpair: \(errno)")
        }
        fd = fds[0]
        let serverFD = fds[1]
        let handler = AgentHandler(paths: paths)
        let log = powerLog
        let server = AgentServer(
            handler: handler, hello: handler.hello(channel: channel),
            announceIntervalMilliseconds: announceIntervalMilliseconds, onPowerAction: { log.record($0) })
        Thread {
            try? server.serve(fd: serverFD)
            close(serverFD)
        }.start()

        let first = try #require(try readFrame())
        #expect(first.kind == .event && first.id == 0)
        guard case let .ready(hello) = try AgentEvent.decode(first.payload) else {
            throw TestFailure(description: "first frame is not the ready event")
        }
        self.hello = hello
    }

    deinit { close(fd) }

    func send(_ bytes: [UInt8]) {
        var offset = 0
        while offset < bytes.count {
            let n = bytes[offset...].withUnsafeBytes { write(fd, $0.baseAddress, $0.count) }
            guard n > 0 else { return }
            offset += n
        }
    }

    /// Sends a request frame; returns its id.
    @discardableResult
    func sendRequest(_ request: AgentRequest) -> UInt32 {
        let id = nextID
        nextID += 1
        send(Frame(kind: .request, id: id, payload: request.encode()).encoded())
        return id
    }

    func request(_ request: AgentRequest) throws -> AgentResponse {
        let id = sendRequest(request)
        return try response(for: id)
    }

    /// The next response, skipping events (the ready event may be repeated).
    func response(for id: UInt32) throws -> AgentResponse {
        while true {
            guard let frame = try readFrame() else { throw TestFailure(description: "agent closed the channel") }
            if frame.kind == .event { continue }
            #expect(frame.kind == .response)
            #expect(frame.id == id)
            return try AgentResponse.decode(frame.payload)
        }
    }

    /// The next frame, or nil once the server closed its end. Fails after `timeout` seconds.
    func readFrame(timeout: Int = 20) throws -> Frame? {
        var buffer = [UInt8](repeating: 0, count: 65536)
        let deadline = Date().addingTimeInterval(TimeInterval(timeout))
        while true {
            if let frame = decoder.next() { return frame }
            var request = pollfd(fd: fd, events: Int16(POLLIN), revents: 0)
            let remaining = Int32(max(0, deadline.timeIntervalSinceNow * 1000))
            guard poll(&request, 1, remaining) > 0 else {
                throw TestFailure(description: "no frame from the agent within \(timeout) s")
            }
            let n = read(fd, &buffer, buffer.count)
            if n <= 0 { return nil }
            decoder.feed(buffer[0..<n])
        }
    }
}

extension AgentResponse {
    var failureErrno: Int32? {
        if case let .failure(errno, _) = self { return errno }
        return nil
    }

    var execResult: ExecResult? {
        if case let .exec(result) = self { return result }
        return nil
    }
}
