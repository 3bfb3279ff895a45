import Foundation
import LabCore
import Synchronization

/// One boot as a transient libvirt domain, on a local or remote libvirtd.
///
/// The kernel and initramfs go to the libvirt host as volumes of the `cmalab` storage pool (uploaded
/// once per file and host). The domain is created paused with AUTODESTROY (libvirtd destroys it if cmalab
/// dies and its connection closes), the console and the agent channel are opened as streams, then the
/// guest starts. Pumps in libvirt's event-loop thread bridge the streams into what the rest of cmalab
/// already reads: the console into a pipe this loop reads like QEMU's stdout; the channel into a Unix
/// socket in the run's socket directory that `AgentClient` connects to like QEMU's. `stop()` always
/// destroys the domain.
public final class LibvirtMachine: EventLoopMachine, @unchecked Sendable {
    public let plan: QEMUPlan
    public let run: RunDirectory
    public let connection: LibvirtConnection
    public let domain: LibvirtDomain
    public let xml: String
    public var console: ConsoleWatcher { capture.watcher }
    public private(set) var exit: MachineExit?
    public private(set) var started = Date()
    /// Seconds libvirt took to create the domain, and why in one line when that was slow (see LibvirtSlowStart).
    public private(set) var createSeconds: Double = 0
    public private(set) var slowStartNotice: String?

    public var consoleLimit: Int { get { capture.limit } set { capture.limit = newValue } }
    public var onConsoleLine: ((String) -> Void)? { get { capture.onLine } set { capture.onLine = newValue } }
    public var agentFD: Int32 = -1
    public var onAgentReadable: (() -> Bool)?

    private let consoleStream: LibvirtStream
    private let channelStream: LibvirtStream?
    private var pumps: [StreamPump] = []
    let capture: ConsoleCapture
    private(set) var consoleFD: Int32 = -1
    private var lastStateCheck = Date.distantPast
    private var gone = false
    private var stopped = false
    public var consoleFlooded: Bool { capture.flooded }

    /// Creates the domain and starts the guest. `plan.agentSocket` (if set) is where the agent bridge listens.
    public init(plan: QEMUPlan, run: RunDirectory, uri: String) throws(LabError) {
        try plan.validateOrThrow()
        self.plan = plan
        self.run = run
        for f in [plan.kernel] + (plan.initrd.map { [$0] } ?? []) where !Files.exists(f) {
            throw LabError(.imageNotFound, "\(f) does not exist", hint: "build the image first with `cmalab image build`")
        }
        if plan.agentSocket != nil, plan.agentTransport == .uart {
            throw LabError(.input, "the libvirt backend has no UART agent transport", hint: "use an image with CONFIG_VIRTIO_CONSOLE=y, or --backend qemu")
        }
        let conn = try LibvirtConnection(uri: uri)
        connection = conn
        if ProcessInfo.processInfo.environment["CMALAB_LIBVIRT_NO_REAP"] == nil { conn.destroyOrphans() }
        // The files go to the libvirt host (the same path for a local and a remote daemon).
        let kernel = try conn.volume(for: plan.kernel)
        let initrd = try plan.initrd.map { f throws(LabError) in try conn.volume(for: f) }
        let spec = LibvirtDomainXML(name: LibvirtDomainXML.domainName(forRun: plan.name ?? Path.basename(run.path)),
                                    machine: plan.machine, kernel: kernel, initrd: initrd,
                                    commandLine: plan.effectiveCommandLine.description, agent: plan.agentSocket != nil,
                                    ownerHost: ProcessInfo.processInfo.hostName, ownerPID: getpid())
        xml = spec.render()
        try run.write("libvirt-domain.xml", xml)
        try run.write("libvirt.uri", uri + "\n")
        _ = FileManager.default.createFile(atPath: run.file("console.log"), contents: nil)
        guard let log = FileHandle(forWritingAtPath: run.file("console.log")) else { throw LabError.posix("cannot open", run.file("console.log")) }
        capture = ConsoleCapture(log: log)

        let asked = Date()
        let dom = try conn.createPaused(xml: xml)
        domain = dom
        let took = Date().timeIntervalSince(asked)
        createSeconds = took
        if took > Self.slowStartThreshold {
            slowStartNotice = LibvirtSlowStart.notice(seconds: took, uri: uri,
                                                      kvm: LibvirtSlowStart.isLocal(uri) ? .local() : nil)
        }
        // From here on every failure destroys the domain before it is thrown.
        do throws(LabError) {
            consoleStream = try dom.openConsole()
            channelStream = try plan.agentSocket == nil ? nil : dom.openChannel(LibvirtDomainXML.agentChannel)
        } catch {
            try? dom.destroy()
            throw error
        }
        do throws(LabError) {
            try startConsoleBridge()
            if let socket = plan.agentSocket, let channelStream { try startChannelBridge(socket: socket, stream: channelStream) }
            started = Date()
            try dom.resume()
        } catch {
            stop()
            throw error
        }
    }

    /// `CMALAB_LIBVIRT_SLOW_START` (seconds) overrides LibvirtSlowStart.defaultThreshold.
    static var slowStartThreshold: Double {
        ProcessInfo.processInfo.environment["CMALAB_LIBVIRT_SLOW_START"].flatMap(Double.init).flatMap { $0.isFinite ? $0 : nil }
            ?? LibvirtSlowStart.defaultThreshold
    }

    deinit {
        stop()
        if consoleFD >= 0 { close(consoleFD) }
    }

    public var isRunning: Bool { !gone && !stopped && domain.isActive }

    /// QEMU's pid when libvirtd runs on this machine (from libvirt's pid file), else -1.
    public var pid: pid_t {
        guard let text = try? String(contentsOfFile: "/run/libvirt/qemu/\(domain.name).pid", encoding: .utf8) else { return -1 }
        return pid_t(text.trimmingCharacters(in: .whitespacesAndNewlines)) ?? -1
    }
    public var uptime: TimeInterval { Date().timeIntervalSince(started) }

    @discardableResult
    public func runLoop(until deadline: Date, _ condition: () -> Bool) throws(LabError) -> Bool {
        try runEventLoop(until: deadline, condition)
    }

    // The event loop's view of the domain (see EventLoopMachine): no descriptor says it ended; a transient
    // domain vanishes when the guest powers off or panics (on_poweroff/on_reboot destroy), asked at the
    // console's EOF and every 0.25 s.
    var endFD: Int32 { -1 }
    func guestHasEnded() -> Bool {
        guard capture.eof || Date().timeIntervalSince(lastStateCheck) > 0.25 else { return false }
        lastStateCheck = Date()
        return domain.guestEnded
    }
    func record(_ exit: MachineExit) { self.exit = exit }

    public func waitForExit(timeout: TimeInterval) throws(LabError) -> MachineExit {
        try waitInEventLoop(timeout: timeout)
    }

    /// Destroys the domain (if it still runs), ends the streams and the bridges, drains the console.
    public func stop() {
        if !stopped {
            stopped = true
            try? domain.destroy()
            // Let the pumps pass on what the guest sent last (the end of a panic trace) before they stop.
            var buf = [UInt8](repeating: 0, count: 65536)
            capture.drain(consoleFD, &buf)
            for p in pumps { p.stop() }
            consoleStream.close()
            channelStream?.close()
        }
        var buf = [UInt8](repeating: 0, count: 65536)
        capture.drain(consoleFD, &buf)
    }

    func finishAfterExit(_ buf: inout [UInt8]) {
        gone = true
        capture.drain(consoleFD, &buf)
        stop()
        guard exit == nil else { return }
        exit = console.crash.map { .crashed($0) } ?? .poweredOff
    }

    private func startConsoleBridge() throws(LabError) {
        var p: [Int32] = [-1, -1]
        guard makePipe(&p) else { throw LabError.posix("cannot create a pipe for", "the console") }
        for fd in p { _ = fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK) }
        consoleFD = p[0]
        let pump = StreamPump(stream: consoleStream)
        pumps.append(pump)
        do throws(LabError) { try pump.start(output: p[1], owns: true) } catch { close(p[1]); throw error }
    }

    /// Channel stream <-> the one connection accepted on a Unix socket at `path` (AgentClient's).
    private func startChannelBridge(socket path: String, stream: LibvirtStream) throws(LabError) {
        let listener = try Self.listen(path)
        let pump = StreamPump(stream: stream)
        pumps.append(pump)
        do throws(LabError) {
            try pump.start(output: -1, owns: false)
            try pump.serve(listener: listener)
        } catch {
            close(listener)
            throw error
        }
    }

    private static func listen(_ path: String) throws(LabError) -> Int32 {
        let address = try UnixSocketAddress(path)
        let s = try UnixSocketAddress.newSocket(for: path)
        unlink(path)
        let rc = address.withSockaddr { bind(s, $0, $1) }
        guard rc == 0, Glibc.listen(s, 1) == 0 else { let e = errno; close(s); throw LabError.posix("cannot listen on", path, errno: e) }
        return s
    }
}
