import Foundation

/// The one error type of cmalab's runtime: a code a script can branch on, a message that says what
/// happened, a hint that says what to do, and the underlying cause when there is one.
public struct LabError: Error, CustomStringConvertible, Sendable {
    public enum Code: String, Sendable, Codable {
        case input              // a bad file or argument
        case missingTool        // qemu, make, gcc, ... not installed
        case imageNotFound
        case build              // a kernel or agent build failed
        case configDropped      // Kconfig dropped options a fragment asked for
        case qemu               // QEMU failed to start or exited with an error
        case kernelCrash        // panic or oops seen on the console
        case timeout            // a deadline passed with no other explanation
        case agent              // the guest agent misbehaved or is unreachable
        case interrupted        // SIGINT / SIGTERM
        case io                 // a file or socket operation failed
        case preflight          // the image cannot run this profile
        case libvirt            // libvirt refused a call (connect, domain, stream, storage)
    }

    public var code: Code
    public var message: String
    public var hint: String?
    /// What failed underneath (a Foundation error, another LabError), kept as it was thrown.
    public var underlying: (any Error)?

    public init(_ code: Code, _ message: String, hint: String? = nil, underlying: (any Error)? = nil) {
        self.code = code; self.message = message; self.hint = hint
        self.underlying = underlying
    }

    public var description: String {
        var s = message
        if let underlying = underlying.map({ "\($0)" }), !message.contains(underlying) { s += " (\(underlying))" }
        if let hint { s += "\n  hint: \(hint)" }
        return s
    }

    /// An errno-based I/O failure naming the operation and the path.
    public static func posix(_ what: String, _ path: String, errno e: Int32 = errno) -> LabError {
        LabError(.io, "\(what) \(path): \(String(cString: strerror(e)))")
    }
}
