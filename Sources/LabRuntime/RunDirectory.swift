import Foundation
import LabCore

/// One directory per boot or profile run, holding its artifacts (console.log, qemu.stderr, ...), plus a
/// short private directory for its sockets (Unix socket paths are limited to 107 bytes).
public final class RunDirectory: @unchecked Sendable {
    public let path: String
    public let socketDirectory: String

    public init(root: String, name: String) throws(LabError) {
        try Files.mkdirs(root)
        let formatter = DateFormatter()
        formatter.dateFormat = "yyyyMMdd-HHmmss"
        formatter.locale = Locale(identifier: "en_US_POSIX")
        let stamp = formatter.string(from: Date())
        let safe = String(name.map { $0.isLetter || $0.isNumber || $0 == "-" || $0 == "_" || $0 == "." ? $0 : "_" }.prefix(60))
        var candidate = "\(root)/\(stamp)-\(safe)"
        var n = 1
        while mkdir(candidate, 0o755) != 0 {
            guard errno == EEXIST else { throw LabError.posix("cannot create run directory", candidate) }
            n += 1
            candidate = "\(root)/\(stamp)-\(safe)-\(n)"
        }
        path = candidate
        OrphanReaper.recordOwner(in: candidate)
        socketDirectory = try Self.makeSocketDirectory()
        // Recorded so that the next cmalab can remove it if this process dies without `closeSockets`.
        try? Files.write(socketDirectory + "\n", to: candidate + "/" + Self.socketDirectoryRecord)
    }

    /// The run-directory file naming the socket directory while it exists.
    static let socketDirectoryRecord = "sockdir"

    /// A fresh `/tmp/cmalab-XXXXXX`, short enough for any socket name under it.
    static func makeSocketDirectory() throws(LabError) -> String {
        var template = Array("/tmp/cmalab-XXXXXX".utf8CString)
        guard let dir = template.withUnsafeMutableBufferPointer({ mkdtemp($0.baseAddress!) }) else {
            throw LabError.posix("cannot create a private socket directory under", "/tmp")
        }
        return String(cString: dir)
    }

    public func file(_ name: String) -> String { path + "/" + name }
    public func socket(_ name: String) -> String { socketDirectory + "/" + name }

    public func write(_ name: String, _ text: String) throws(LabError) { try Files.write(text, to: file(name)) }
    public func write(_ name: String, bytes: [UInt8]) throws(LabError) { try Files.write(bytes, to: file(name)) }

    /// Removes the socket directory and its record (the artifacts stay).
    public func closeSockets() {
        try? FileManager.default.removeItem(atPath: socketDirectory)
        unlink(file(Self.socketDirectoryRecord))
    }

    deinit { closeSockets() }
}
