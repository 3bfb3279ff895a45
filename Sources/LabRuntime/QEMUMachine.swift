import Foundation
import LabCore

/// How a boot ended.
public enum MachineExit: Sendable, Equatable {
    /// QEMU exited with status 0 and no crash on the console: the guest powered off.
    case poweredOff
    /// The console showed a panic or oops.
    case crashed(CrashReport)
    /// QEMU exited with an error before the guest could finish (bad argv, missing file, ...).
    case qemuFailed(String)
    /// The deadline passed.
    case timedOut(seconds: Double)
}

/// One QEMU process and its guest console.
///
/// QEMU runs in its own process group under `setpriv --pdeathsig KILL`, so it dies with cmalab even on
/// SIGKILL; its pid is in `qemu.pid` in the run directory. The console (ttyS0 on x86_64) arrives on QEMU's stdout
/// and is written to `console.log` (bounded), echoed when asked, and watched for crashes.
public final class QEMUMachine: @unchecked Sendable {
    public let plan: QEMUPlan
    public let run: RunDirectory
    public var console: ConsoleWatcher { capture.watcher }
    public private(set) var exit: MachineExit?
    public let started = Date()

    /// Console bytes kept on disk at most; a guest that prints more is flooding and gets stopped.
    public var consoleLimit: Int { get { capture.limit } set { capture.limit = newValue } }
    /// Called with each complete console line (for `--quiet` off: echo to the terminal).
    public var onConsoleLine: ((String) -> Void)? { get { capture.onLine } set { capture.onLine = newValue } }
    /// An extra descriptor to poll (the agent socket) and what to do when it is readable.
    public var agentFD: Int32 = -1
    public var onAgentReadable: (() -> Bool)?

    private let process: ChildProcess
    let capture: ConsoleCapture
    public var consoleFlooded: Bool { capture.flooded }

    public init(plan: QEMUPlan, run: RunDirectory) throws(LabError) {
        try plan.validateOrThrow()
        self.plan = plan
        self.run = run
        guard ChildProcess.findExecutable(plan.binary) != nil else {
            throw LabError(.missingTool, "\(plan.binary) is not installed", hint: ChildProcess.installHint(for: plan.machine.architecture.qemuBinary))
        }
        for f in [plan.kernel] + (plan.initrd.map { [$0] } ?? []) where !Files.exists(f) {
            throw LabError(.imageNotFound, "\(f) does not exist", hint: "build the image first with `cmalab image build`")
        }
        let argv = plan.arguments()
        try run.write("qemu.argv", argv.map(shellQuote).joined(separator: " ") + "\n")
        _ = FileManager.default.createFile(atPath: run.file("console.log"), contents: nil)
        guard let log = FileHandle(forWritingAtPath: run.file("console.log")) else { throw LabError.posix("cannot open", run.file("console.log")) }
        capture = ConsoleCapture(log: log)
        // setpriv: the kernel sends QEMU SIGKILL if cmalab dies, whatever the way.
        var wrapped = argv
        if ChildProcess.findExecutable("setpriv") != nil { wrapped = ["setpriv", "--pdeathsig", "KILL", "--"] + argv }
        process = try ChildProcess(wrapped, stdout: .pipe, stderr: .file(run.file("qemu.stderr")))
        try? run.write("qemu.pid", "\(process.pid)\n")
        // Who started it: a later cmalab stops this QEMU if that process is gone (see OrphanReaper).
        try? run.write("owner.pid", "\(getpid())\n")
        OrphanReaper.recordOwnerStart(in: run)
    }

    deinit {
        process.terminate(grace: 0.5)
    }

    public var pid: pid_t { process.pid }
    public var isRunning: Bool { process.poll() == nil }
    public var uptime: TimeInterval { Date().timeIntervalSince(started) }

    /// Runs the event loop until `condition()` holds (returns true), the machine exits (false), or the
    /// deadline passes (false, and `exit` stays nil). Throws on SIGINT/SIGTERM after stopping QEMU.
    @discardableResult
    public func runLoop(until deadline: Date, _ condition: () -> Bool = { false }) throws(LabError) -> Bool {
        try runEventLoop(until: deadline, condition)
    }

    /// Waits for the guest to end by itself.
    public func waitForExit(timeout: TimeInterval) throws(LabError) -> MachineExit {
        try waitInEventLoop(timeout: timeout)
    }

    /// Ends QEMU now (SIGTERM to its group, then SIGKILL), drains the console, records the exit.
    public func stop() {
        process.terminate(grace: 1.0)
        var buf = [UInt8](repeating: 0, count: 65536)
        capture.drain(process.stdoutFD, &buf)
    }

    // The event loop's view of QEMU (see EventLoopMachine).
    var consoleFD: Int32 { process.stdoutFD }
    // The console pipe's EOF can come before the process is reapable; the pidfd says when it is.
    var endFD: Int32 { process.exitFD }
    func guestHasEnded() -> Bool { process.poll() != nil }
    func record(_ exit: MachineExit) { self.exit = exit }

    func finishAfterExit(_ buf: inout [UInt8]) {
        capture.drain(process.stdoutFD, &buf)
        guard exit == nil else { return }
        let t = process.poll()!
        if let crash = console.crash {
            exit = .crashed(crash)
        } else if t == .exited(0) {
            exit = .poweredOff
        } else {
            let stderr = ((try? String(contentsOfFile: run.file("qemu.stderr"), encoding: .utf8)) ?? "")
                .trimmingCharacters(in: .whitespacesAndNewlines)
            let detail = stderr.isEmpty ? "\(t)" : "\(t): \(stderr.split(separator: "\n").suffix(3).joined(separator: " | "))"
            exit = .qemuFailed("QEMU exited with \(detail)")
        }
    }
}

extension QEMUMachine: EventLoopMachine {}

extension QEMUPlan {
    func validateOrThrow() throws(LabError) {
        do { try validate() } catch { throw LabError(.input, error.description) }
    }
}
