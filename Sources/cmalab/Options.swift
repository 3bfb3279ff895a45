import ArgumentParser
import LabCore
import LabRuntime

extension MachineType: ExpressibleByArgument {}
extension AgentTransport: ExpressibleByArgument {}
extension AccelChoice: ExpressibleByArgument {}
extension ByteSize: ExpressibleByArgument {
    public init?(argument: String) { try? self.init(bytes: ByteSize.parse(argument).bytes) }
}

/// Which kernel to boot.
struct KernelOptions: ParsableArguments {
    @Option(name: .long, help: "An image name from Images/ (default: cma-6.12), or the path of an image .yaml file.")
    var image: String?

    @Option(name: .long, help: "Boot this bzImage instead of an image.")
    var kernel: String?

    @Option(name: .long, help: "The .config of --kernel (default: .config next to it).")
    var config: String?

    func validate() throws {
        if image != nil && kernel != nil { throw ValidationError("give --image or --kernel, not both") }
        if config != nil && kernel == nil { throw ValidationError("--config goes with --kernel") }
    }
}

/// The guest machine.
struct MachineOptions: ParsableArguments {
    @Option(name: .long, help: "Guest memory (for example 4G, 512M). Larger than the host is fine: RAM is backed on touch.")
    var memory: ByteSize = .gib(4)

    @Option(name: .long, help: "Virtual CPUs.")
    var cpus: Int = 1

    @Option(name: .long, help: "QEMU machine type: pc or q35.")
    var machine: MachineType = .pc

    @Option(name: .long, help: "Kernel command line parameters to add (for example 'cma=1G@1-2G').")
    var append: String = ""

    @Option(name: .long, help: "Accelerator: auto (KVM only if a probe boot proves it works), kvm or tcg.")
    var accel: AccelChoice = .auto

    @Option(name: .long, help: "Agent channel: virtio or uart (default: virtio when the kernel has CONFIG_VIRTIO_CONSOLE=y).")
    var transport: AgentTransport?

    @Option(name: .long, help: "Seconds before the boot is declared hung.")
    var timeout: Double = 120

    func validate() throws {
        guard (1...64).contains(cpus) else { throw ValidationError("--cpus must be between 1 and 64") }
        guard timeout > 0 else { throw ValidationError("--timeout must be positive") }
    }

    func request(name: String) -> BootRequest {
        var r = BootRequest(machine: MachineSpec(memory: memory, cpus: cpus, type: machine),
                            commandLine: KernelCommandLine(parsing: append), runName: name)
        r.accel = accel
        r.transport = transport
        return r
    }
}
