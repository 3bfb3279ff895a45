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
    var onAgentReadable: (() -> Void)? { get set }

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
