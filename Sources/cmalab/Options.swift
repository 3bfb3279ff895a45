import ArgumentParser
import Foundation
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

/// The guest's memory and machine type: boot, shell, explain and probe-max.
struct GuestOptions: ParsableArguments {
    @Option(name: .long, help: "Guest memory (for example 4G, 512M). Larger than the host is fine: RAM is backed on touch.")
    var memory: ByteSize = .gib(4)

    @Option(name: .long, help: "QEMU machine type: pc or q35 (x86_64), virt (arm64). An arm64 image (cma-6.12-arm64) boots virt without being told.")
    var machine: MachineType = .pc
}

/// The guest's NUMA nodes and CPU model: boot, shell and explain.
struct GuestTopologyOptions: ParsableArguments {
    @Option(name: .long, help: ArgumentHelp("NUMA node sizes, comma-separated, adding up to --memory (for example 2G,2G).", valueName: "sizes"))
    var numa: String?

    @Option(name: .long, help: "QEMU -cpu model (for example max: 1 GiB pages for hugetlb_cma=).")
    var cpu: String?
}

/// The guest machine.
struct MachineOptions: ParsableArguments {
    @OptionGroup var guest: GuestOptions

    @Option(name: .long, help: "Virtual CPUs.")
    var cpus: Int = 1

    @Option(name: .long, help: "Kernel command line parameters to add (for example 'cma=1G@1-2G').")
    var append: String = ""

    @OptionGroup var topology: GuestTopologyOptions

    @Option(name: .long, help: "Accelerator: auto (KVM only if a probe boot proves it works), kvm or tcg.")
    var accel: AccelChoice = .auto

    @Option(name: .long, help: "Agent channel: virtio or uart (default: virtio when the kernel has CONFIG_VIRTIO_CONSOLE=y).")
    var transport: AgentTransport?

    @Option(name: .long, help: "Seconds before the boot is declared hung.")
    var timeout: Double = 120

    var memory: ByteSize { guest.memory }
    var machine: MachineType { guest.machine }
    var numa: String? { topology.numa }
    var cpu: String? { topology.cpu }

    func validate() throws {
        guard (1...64).contains(cpus) else { throw ValidationError("--cpus must be between 1 and 64") }
        guard timeout > 0 else { throw ValidationError("--timeout must be positive") }
        do { try QEMUPlan(machine: try spec(), kernel: "").validate() } catch let e as PlanError { throw ValidationError(e.description) }
    }

    /// The machine these options describe.
    func spec() throws -> MachineSpec {
        var nodes: [ByteSize] = []
        if let numa {
            nodes = try numa.split(separator: ",").map { part in
                do { return try ByteSize.parse(String(part)) } catch { throw ValidationError("--numa: `\(part)` is not a size (\(error))") }
            }
        }
        return MachineSpec(memory: memory, cpus: cpus, type: machine, numaNodes: nodes, cpuModel: cpu, architecture: machine.architecture)
    }

    func request(name: String) -> BootRequest {
        var r = BootRequest(machine: (try? spec()) ?? MachineSpec(memory: memory, cpus: cpus, type: machine, architecture: machine.architecture),
                            commandLine: KernelCommandLine(parsing: append), runName: name)
        r.accel = accel
        r.transport = transport
        return r
    }
}

/// Where `run` and `matrix` write their results, besides the table on stdout.
struct ResultsOptions: ParsableArguments {
    @Option(name: .long, help: "Write the results as JSON (schema in docs/results-schema.md).")
    var json: String?

    @Option(name: .long, help: "Write the results as JUnit XML (one testsuite per image).")
    var junit: String?

    @Option(name: .long, help: "Write an HTML report: a memory map per run, verdicts, meminfo, CMA areas (docs/html-report.md).")
    var html: String?

    /// Prints the table, then writes the files asked for.
    func report(_ verdicts: [Verdict], started: Date, accel: AccelChoice, title: String) throws(LabError) {
        printTable(verdicts)
        let meta = ReportMeta(cmalabVersion: CMALab.version, started: ISO8601DateFormatter().string(from: started),
                              host: ProcessInfo.processInfo.hostName,
                              accelerator: verdicts.lazy.compactMap { $0.observations?.accelerator }.first ?? accel.rawValue)
        if let json {
            let bytes: [UInt8]
            do { bytes = try Report.json(verdicts, meta: meta) } catch { throw LabError(.io, "cannot encode the results as JSON: \(error)") }
            try Files.writePublic(bytes, to: json)
        }
        if let junit { try Files.writePublic(Array(Report.junit(verdicts).utf8), to: junit) }
        if let html { try HTMLPageWriter.write(verdicts, meta: meta, title: title, to: html) }
    }
}

/// The verdict table on stdout: colour only on a terminal, never with NO_COLOR.
func printTable(_ verdicts: [Verdict]) {
    let useColor = isatty(STDOUT_FILENO) == 1 && ProcessInfo.processInfo.environment["NO_COLOR"] == nil
    print(Report.table(verdicts, color: useColor), terminator: "")
}
