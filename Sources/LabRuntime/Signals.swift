import Foundation
import Synchronization

/// SIGINT/SIGTERM handling: the handler only writes a byte to a pipe; every wait loop in cmalab
/// polls that pipe, tears its children down and throws `LabError(.interrupted)`.
public enum Signals {
    nonisolated(unsafe) private static var pipeFDs: (Int32, Int32) = (-1, -1)
    private static let received = Atomic<Int32>(0)
    private static let installed = Mutex(false)

    /// The read end to include in poll() sets; -1 before `install()`.
    public static var fd: Int32 { pipeFDs.0 }

    /// The signal number that arrived, or 0.
    public static var pending: Int32 { received.load(ordering: .relaxed) }

    public static func install() {
        installed.withLock { done in
            guard !done else { return }
            done = true
            var fds: [Int32] = [-1, -1]
            guard makePipe(&fds) else { return }
            for fd in fds { _ = fcntl(fd, F_SETFL, O_NONBLOCK) }
            pipeFDs = (fds[0], fds[1])
            for sig in [SIGINT, SIGTERM, SIGHUP] {
                var action = sigaction()
                action.__sigaction_handler.sa_handler = { sig in
                    Signals.received.store(sig, ordering: .relaxed)
                    var b: UInt8 = UInt8(truncatingIfNeeded: sig)
                    _ = write(Signals.pipeFDs.1, &b, 1)
                }
                sigemptyset(&action.sa_mask)
                action.sa_flags = SA_RESTART
                sigaction(sig, &action, nil)
            }
            signal(SIGPIPE, SIG_IGN)
        }
    }

    /// Throws `.interrupted` if a signal has arrived.
    public static func check() throws(LabError) {
        let s = pending
        if s != 0 { throw LabError(.interrupted, "interrupted by \(s == SIGINT ? "SIGINT" : s == SIGTERM ? "SIGTERM" : "signal \(s)")") }
    }
}
