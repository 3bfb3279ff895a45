import Foundation
import LabCore

/// One running guest, whatever runs it: a QEMU child process (`QEMUMachine`) or a libvirt domain
/// (`LibvirtMachine`). The agent client and the profile runner use only this.
///
/// The machine owns the event loop: it reads the console into `console.log` and the crash watcher, polls
/// `agentFD` (a Unix socket to the agent) and calls `onAgentReadable`, and notices the end of the guest.
public protocol Machine: AnyObject, Sendable {
    var run: RunDirectory { get }
    var console: ConsoleWatcher { get }
    var exit: MachineExit? { get }
    var started: Date { get }
    var isRunning: Bool { get }
    /// The QEMU process on this machine, or -1 when it runs elsewhere (a remote libvirt host).
    var pid: pid_t { get }
    var uptime: TimeInterval { get }
    var consoleLimit: Int { get set }
    var onConsoleLine: ((String) -> Void)? { get set }
    var agentFD: Int32 { get set }
    /// Called when `agentFD` is readable. Returns true when it stopped with work left (a decoding time
    /// slice ended); the loop then checks its deadline and signals and calls it again without waiting.
    var onAgentReadable: (() -> Bool)? { get set }

    /// Runs the event loop until `condition()` holds (true), the guest ends (false) or the deadline passes
    /// (false, `exit` stays nil). Throws on SIGINT/SIGTERM after stopping the guest.
    @discardableResult
    func runLoop(until deadline: Date, _ condition: () -> Bool) throws(LabError) -> Bool
    /// Waits for the guest to end by itself; stops it at the deadline.
    func waitForExit(timeout: TimeInterval) throws(LabError) -> MachineExit
    /// Ends the guest now and drains the console. Safe to call more than once.
    func stop()
}

extension Machine {
    @discardableResult
    public func runLoop(until deadline: Date) throws(LabError) -> Bool { try runLoop(until: deadline, { false }) }
}

extension QEMUMachine: Machine {}

/// Which hypervisor front end boots the guests.
public enum Backend: Sendable, Equatable, CustomStringConvertible {
    /// cmalab starts qemu-system-x86_64 itself.
    case qemu
    /// A libvirt daemon at this URI (qemu:///system, qemu+ssh://user@host/system, ...) runs a transient domain.
    case libvirt(uri: String)

    public static let defaultLibvirtURI = "qemu:///system"

    public var description: String {
        switch self {
        case .qemu: return "qemu"
        case .libvirt(let uri): return "libvirt (\(uri))"
        }
    }
}

/// The event loop both machines share. A machine says where its console comes from, which descriptor (if
/// any) becomes readable when the guest ends, how it knows the guest has ended, and how it records the end.
protocol EventLoopMachine: Machine {
    var capture: ConsoleCapture { get }
    var consoleFD: Int32 { get }
    /// Readable once the guest has ended (QEMU's pidfd), or -1 when there is none (libvirt).
    var endFD: Int32 { get }
    /// Asked after each wait: has the guest ended? The loop then calls `finishAfterExit`.
    func guestHasEnded() -> Bool
    func finishAfterExit(_ buf: inout [UInt8])
    func record(_ exit: MachineExit)
}

extension EventLoopMachine {
    @discardableResult
    func runEventLoop(until deadline: Date, _ condition: () -> Bool) throws(LabError) -> Bool {
        var buf = [UInt8](repeating: 0, count: 65536)
        var agentBacklog = false
        while true {
            if condition() { return true }
            if exit != nil { return false }
            if Signals.pending != 0 {
                stop()
                try Signals.check()
            }
            let now = Date()
            if now >= deadline { return condition() }
            // A crash ends the run: give the trace a moment to finish printing, then stop the guest.
            if capture.crashSettled(at: now) {
                stop(); record(.crashed(console.crash!)); return false
            }
            var fds = [pollfd(fd: capture.eof ? -1 : consoleFD, events: Int16(POLLIN), revents: 0),
                       pollfd(fd: agentFD, events: Int16(POLLIN), revents: 0),
                       pollfd(fd: Signals.fd, events: Int16(POLLIN), revents: 0),
                       pollfd(fd: endFD, events: Int16(POLLIN), revents: 0)]
            let waitMs = agentBacklog ? 0 : Int32(max(1, min(50, deadline.timeIntervalSince(now) * 1000)))
            _ = Glibc.poll(&fds, nfds_t(fds.count), waitMs)
            if fds[0].revents != 0 { capture.read(consoleFD, &buf) }
            if fds[1].revents != 0 || agentBacklog { agentBacklog = onAgentReadable?() ?? false }
            if capture.flooded {
                stop()
                record(.qemuFailed(capture.floodReason))
                return false
            }
            if guestHasEnded() { finishAfterExit(&buf); return condition() }
        }
    }

    /// Waits for the guest to end by itself; stops it `timeout` seconds after it started.
    func waitInEventLoop(timeout: TimeInterval) throws(LabError) -> MachineExit {
        try runEventLoop(until: started.addingTimeInterval(timeout), { false })
        if let exit { return exit }
        stop()
        let e = MachineExit.timedOut(seconds: timeout)
        record(e)
        return e
    }
}
