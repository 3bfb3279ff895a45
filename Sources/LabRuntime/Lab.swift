import Foundation
import Synchronization
import LabCore
import LabProtocol

/// What one boot needs besides the kernel.
public struct BootRequest: Sendable {
    public var machine: MachineSpec
    public var commandLine: KernelCommandLine
    public var accel: AccelChoice = .auto
    /// Boot with the agent as /init (default) or with a shell script.
    public var initScript: String?
    /// Force a transport; nil picks virtio when the kernel has CONFIG_VIRTIO_CONSOLE=y, else the UART.
    public var transport: AgentTransport?
    /// What runs the guest: cmalab's own QEMU (default) or a libvirt daemon.
    public var backend: Backend = .qemu
    /// Reserved-memory nodes for the guest's device tree (a profile's `device-tree:`); empty keeps QEMU's tree.
    public var deviceTree: DeviceTree?
    public var runName: String
    /// Echo each console line (to the terminal).
    public var onConsoleLine: (@Sendable (String) -> Void)?

    public init(machine: MachineSpec, commandLine: KernelCommandLine, runName: String) {
        self.machine = machine; self.commandLine = commandLine; self.runName = runName
    }
}

/// A running boot: the machine, its agent (nil for script inits) and its run directory.
public final class BootSession: @unchecked Sendable {
    public let kernel: BuiltKernel
    public let plan: QEMUPlan
    public let machine: any Machine
    public let agent: AgentClient?
    public let run: RunDirectory
    public let accelNotice: String?

    init(kernel: BuiltKernel, plan: QEMUPlan, machine: any Machine, agent: AgentClient?, run: RunDirectory, accelNotice: String?) {
        self.kernel = kernel; self.plan = plan; self.machine = machine; self.agent = agent; self.run = run; self.accelNotice = accelNotice
    }

    /// Waits until the agent says it is ready (no-op for script inits).
    public func waitForAgent(timeout: TimeInterval) throws(LabError) {
        guard let agent, agent.hello == nil else { return }
        _ = try agent.waitReady(deadline: machine.started.addingTimeInterval(timeout))
    }

    /// Ends the boot: powers off through the agent when it is up, else waits for the guest, and always
    /// leaves no QEMU behind.
    public func finish(timeout: TimeInterval) throws(LabError) -> MachineExit {
        defer { machine.stop(); run.closeSockets() }
        if let exit = machine.exit { return exit }
        if let agent, agent.hello != nil, !agent.closed { return try agent.powerOff(timeout: 20) }
        return try machine.waitForExit(timeout: timeout)
    }
}

/// The lab: definitions, caches and the way to boot a kernel.
public final class Lab: @unchecked Sendable {
    public let paths: LabPaths
    public let progress: Progress
    public let kernels: KernelStore
    public let initramfs: InitramfsStore
    /// Accelerator notices already printed: one line per process, not one per boot.
    static let noticesShown = Mutex<Set<String>>([])

    public init(paths: LabPaths = .discover(), progress: Progress = Progress()) {
        self.paths = paths
        self.progress = progress
        self.kernels = KernelStore(paths: paths, progress: progress)
        self.initramfs = InitramfsStore(paths: paths)
        Signals.install()
        Self.reapOrphansOnce(paths: paths, progress: progress)
    }

    static let reaped = Mutex(false)

    /// Once per process: stop QEMUs whose cmalab was killed (SIGKILL) and could not stop them itself.
    static func reapOrphansOnce(paths: LabPaths, progress: Progress) {
        guard reaped.withLock({ done in defer { done = true }; return !done }) else { return }
        for (pid, dir) in OrphanReaper.reap(runs: paths.runs) {
            progress.note("cmalab: stopped QEMU \(pid) left running by a killed cmalab (\(dir))")
        }
    }

    public func catalog() throws(LabError) -> ImageCatalog { try ImageCatalog(directory: paths.imagesDirectory) }

    /// A kernel from an image name (built on demand) or from a bzImage path (with an optional .config).
    public func kernel(image: String?, kernelPath: String? = nil, configPath: String? = nil) throws(LabError) -> BuiltKernel {
        if let kernelPath {
            guard Files.exists(kernelPath) else { throw LabError(.imageNotFound, "\(kernelPath) does not exist") }
            var config = configPath
            if config == nil, Files.exists(Path.directory(of: kernelPath) + "/.config") { config = Path.directory(of: kernelPath) + "/.config" }
            return BuiltKernel(name: Path.basename(kernelPath), kernel: kernelPath, configPath: config ?? "", key: "",
                               directory: Path.directory(of: kernelPath), buildLog: nil, cached: true, commandLine: KernelCommandLine())
        }
        let def = try catalog().resolve(image ?? ImageCatalog.defaultImage)
        return try kernels.ensure(def)
    }

    /// Starts QEMU for `kernel` and, with the agent, connects and waits until it is ready. On failure the
    /// machine is stopped and the error names the console log.
    public func boot(_ kernel: BuiltKernel, _ request: BootRequest, bootTimeout: TimeInterval,
                     launcher: (any MachineLauncher)? = nil) throws(LabError) -> BootSession {
        let session = try start(kernel, request, launcher: launcher)
        do {
            try session.waitForAgent(timeout: bootTimeout)
        } catch {
            session.machine.stop()
            session.run.closeSockets()
            var e = error
            e.message += "\nconsole log: \(session.run.file("console.log"))"
            throw e
        }
        return session
    }

    /// What starts machines unless a caller passes its own: QEMU or libvirt, by the request's backend.
    public var defaultLauncher: any MachineLauncher { HypervisorLauncher(progress: progress) }

    /// Starts the machine through `launcher` (default `defaultLauncher`: QEMU or libvirt); the agent client
    /// (if any) is created but not yet connected.
    public func start(_ kernel: BuiltKernel, _ request: BootRequest, launcher: (any MachineLauncher)? = nil) throws(LabError) -> BootSession {
        let launcher = launcher ?? defaultLauncher
        let config = kernel.configPath.isEmpty ? nil : try? kernel.config()
        let initrd = try launcher.initramfs(request.initScript.map { InitramfsStore.Init.script($0, kernel.architecture) } ?? .agent(paths.agentBinary(for: kernel.architecture)), lab: self)
        // libvirt guests are TCG (`<domain type='qemu'>`); the KVM probe is for the local QEMU backend.
        let (accel, notice): (Accelerator, String?)
        if case .libvirt = request.backend {
            guard request.accel != .kvm else { throw LabError(.input, "the libvirt backend runs guests under TCG only", hint: "drop --accel kvm, or use --backend qemu") }
            (accel, notice) = (.tcg, nil)
        } else {
            (accel, notice) = try AccelProbe(paths: paths).resolve(request.accel, kernel: kernel.kernel)
        }
        if let notice, Self.noticesShown.withLock({ $0.insert(notice).inserted }) { progress.note("cmalab: \(notice)") }

        let run = try RunDirectory(root: paths.runs, name: request.runName)
        var plan = QEMUPlan(machine: request.machine, kernel: kernel.kernel, initrd: initrd,
                            commandLine: kernel.commandLine.appending(request.commandLine))
        if plan.machine.architecture != kernel.architecture {
            // A command that names only an image (`cmalab boot --image cma-6.12-arm64`) gets that image's machine.
            guard plan.machine.architecture == .default, plan.machine.type == Architecture.default.defaultMachineType else {
                throw LabError(.input, "\(kernel.name) is an \(kernel.architecture) kernel, but the machine asked for is \(plan.machine.architecture) (`\(plan.machine.type.rawValue)`)",
                               hint: "use an \(plan.machine.architecture) image (--image \(plan.machine.architecture.defaultImage)), or a machine of type \(kernel.architecture.defaultMachineType.rawValue)")
            }
            plan.machine.architecture = kernel.architecture
            plan.machine.type = kernel.architecture.defaultMachineType
        }
        if case .libvirt = request.backend, plan.machine.architecture != .x86_64 {
            throw LabError(.input, "the libvirt backend runs x86_64 guests only; \(kernel.name) is \(plan.machine.architecture)",
                           hint: "use --backend qemu for arm64 guests")
        }
        if let dt = request.deviceTree, !dt.isEmpty {
            guard plan.machine.type == .virt else {
                throw LabError(.input, "`device-tree:` needs a device-tree machine (arm64 `virt`), not `\(plan.machine.type.rawValue)`",
                               hint: "add `machine: {arch: arm64}` to the profile")
            }
            plan.deviceTreeBlob = try DeviceTreeBuild(progress: progress).compile(dt, plan: plan, run: run)
            plan.deviceTree = dt
        }
        plan.accelerator = accel
        plan.name = Path.basename(run.path)
        if request.initScript == nil {
            plan.agentSocket = run.socket("agent.sock")
            plan.agentTransport = request.transport ?? Self.transport(for: config, architecture: kernel.architecture)
        }
        if let qemu = ProcessInfo.processInfo.environment["CMALAB_QEMU"], !qemu.isEmpty { plan.binary = qemu }
        let machine = try launcher.launch(plan: plan, run: run, backend: request.backend)
        if let limit = ProcessInfo.processInfo.environment["CMALAB_CONSOLE_LIMIT"].flatMap({ try? ByteSize.parse($0) }) {
            machine.consoleLimit = Int(clamping: limit.bytes)
        }
        machine.onConsoleLine = request.onConsoleLine
        let agent = plan.agentSocket.map { AgentClient(machine: machine, socketPath: $0) }
        if let limit = ProcessInfo.processInfo.environment["CMALAB_CHANNEL_LIMIT"].flatMap({ try? ByteSize.parse($0) }) {
            agent?.garbageLimit = limit.bytes
        }
        return BootSession(kernel: kernel, plan: plan, machine: machine, agent: agent, run: run, accelNotice: notice)
    }

    /// virtio-serial when the kernel has it built in, else the second UART.
    public static func transport(for config: KernelConfig?, architecture: Architecture = .default) -> AgentTransport {
        guard let config, architecture.agentUARTDevice != nil else { return .virtio }
        return config.effectiveValue("VIRTIO_CONSOLE") == "y" && config.effectiveValue("VIRTIO_PCI") == "y" ? .virtio : .uart
    }
}

/// Starts the machine a boot runs on. `Lab.start` asks it; tests give ProfileRunner and MatrixRunner a fake
/// one (LabTestKit) so a profile runs against an in-process guest.
public protocol MachineLauncher: Sendable {
    /// The initramfs file the guest boots with, for `initProgram`.
    func initramfs(_ initProgram: InitramfsStore.Init, lab: Lab) throws(LabError) -> String
    /// Starts the guest that `plan` describes on `backend`, its artifacts in `run`.
    func launch(plan: QEMUPlan, run: RunDirectory, backend: Backend) throws(LabError) -> any Machine
}

/// The real launcher: cmalab's own QEMU process or a transient libvirt domain, by backend; the initramfs
/// from the lab's cache.
public struct HypervisorLauncher: MachineLauncher {
    public let progress: Progress

    public init(progress: Progress) { self.progress = progress }

    public func initramfs(_ initProgram: InitramfsStore.Init, lab: Lab) throws(LabError) -> String {
        try lab.initramfs.ensure(initProgram)
    }

    public func launch(plan: QEMUPlan, run: RunDirectory, backend: Backend) throws(LabError) -> any Machine {
        switch backend {
        case .qemu: return try QEMUMachine(plan: plan, run: run)
        case .libvirt(let uri):
            let m = try LibvirtMachine(plan: plan, run: run, uri: uri)
            // One line per daemon and process: every domain would say the same.
            if let notice = m.slowStartNotice, Lab.noticesShown.withLock({ $0.insert("libvirt-slow " + uri).inserted }) {
                progress.note("cmalab: \(notice)")
            }
            return m
        }
    }
}
