import Foundation

/// The address of a Unix stream socket: what the agent client connects to and the libvirt channel bridge
/// listens on.
struct UnixSocketAddress {
    let path: String
    private var address = sockaddr_un()

    init(_ path: String) throws(LabError) {
        self.path = path
        address.sun_family = sa_family_t(AF_UNIX)
        let bytes = Array(path.utf8)
        guard bytes.count < MemoryLayout.size(ofValue: address.sun_path) else {
            throw LabError(.io, "socket path too long (\(bytes.count) bytes, at most \(MemoryLayout.size(ofValue: address.sun_path) - 1)): \(path)",
                           hint: "use a shorter runs directory")
        }
        withUnsafeMutableBytes(of: &address.sun_path) { raw in
            for (i, b) in bytes.enumerated() { raw[i] = b }
        }
    }

    /// A new close-on-exec stream socket, or an error naming the path it was for.
    static func newSocket(for path: String) throws(LabError) -> Int32 {
        let s = socket(AF_UNIX, Int32(SOCK_STREAM.rawValue), 0)
        guard s >= 0 else { throw LabError.posix("cannot create a socket for", path) }
        _ = fcntl(s, F_SETFD, FD_CLOEXEC)
        return s
    }

    /// Passes the address to `connect(2)` or `bind(2)`.
    func withSockaddr<R>(_ body: (UnsafePointer<sockaddr>, socklen_t) -> R) -> R {
        withUnsafePointer(to: address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { body($0, socklen_t(MemoryLayout<sockaddr_un>.size)) }
        }
    }
}
