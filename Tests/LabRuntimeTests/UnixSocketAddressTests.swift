import Foundation
import Testing
@testable import LabRuntime

@Suite struct UnixSocketAddressTests {
    @Test func aPathThatDoesNotFitIsRefusedWithItsLength() {
        let path = "/tmp/" + String(repeating: "d", count: 120) + "/agent.sock"
        #expect(throws: LabError.self) { try UnixSocketAddress(path) }
        do { _ = try UnixSocketAddress(path) } catch {
            #expect(error.code == .io)
            #expect(error.message.contains("(\(path.utf8.count) bytes, at most 107)"), "\(error.message)")
            #expect(error.message.hasSuffix(path))
        }
    }

    @Test func bindAndConnectMeetAtTheSamePath() throws {
        let path = NSTemporaryDirectory() + "cmalab-uds-\(getpid())"
        defer { unlink(path) }
        let address = try UnixSocketAddress(path)
        let listener = try UnixSocketAddress.newSocket(for: path)
        defer { close(listener) }
        #expect(fcntl(listener, F_GETFD) & FD_CLOEXEC != 0)
        #expect(address.withSockaddr { bind(listener, $0, $1) } == 0)
        #expect(listen(listener, 1) == 0)
        let client = try UnixSocketAddress.newSocket(for: path)
        defer { close(client) }
        #expect(address.withSockaddr { connect(client, $0, $1) } == 0)
        let server = accept(listener, nil, nil)
        defer { close(server) }
        #expect(send(client, "hi", 2, 0) == 2)
        var buf = [UInt8](repeating: 0, count: 2)
        #expect(recv(server, &buf, 2, 0) == 2)
        #expect(buf == Array("hi".utf8))
    }
}
