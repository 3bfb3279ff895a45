/// Planning a QEMU invocation: a pure function from what the lab wants to the exact argv.

public enum MachineType: String, Sendable, CaseIterable, Codable {
    /// x86_64: i440FX and Q35 with SeaBIOS.
    case pc, q35
    /// arm64: QEMU's generic `virt` board (RAM from 0x40000000, a device tree, PL011, PSCI).
    case virt

    /// The architecture this machine type belongs to.
    public var architecture: Architecture { self == .virt ? .arm64 : .x86_64 }
}

public enum Accelerator: String, Sendable, CaseIterable, Codable {
    case kvm, tcg
}

/// How the agent's channel reaches the guest.
public enum AgentTransport: String, Sendable, Codable {
    /// A virtio-serial port named `org.cmalab.agent.0` (needs CONFIG_VIRTIO_CONSOLE in the guest).
    case virtio
    /// A second 16550 UART: the guest sees it as /dev/ttyS1 (`Architecture.agentUARTDevice`).
    case uart
}

public struct MachineSpec: Equatable, Sendable, Codable {
    public var memory: ByteSize
    public var cpus: Int
    public var type: MachineType
    /// The largest guest memory cmalab accepts (16 TiB), for `memory` and for the sum of the NUMA nodes.
    public static let maximumMemory = ByteSize(bytes: 16 << 40)

    /// Sizes of NUMA nodes; empty for a non-NUMA guest. When present they must add up to `memory`.
    public var numaNodes: [ByteSize]
    /// `-cpu` model; nil keeps QEMU's default.
    public var cpuModel: String?
    /// The guest's architecture: which QEMU runs it, its console, its memory map.
    public var architecture: Architecture
    /// Where low RAM ends on `pc` (QEMU's `max-ram-below-4g`); nil keeps QEMU's split. A replay's twin sets it
    /// to the host's (TwinPlan.swift).
    public var lowMemory: ByteSize?

    public init(memory: ByteSize, cpus: Int = 1, type: MachineType = .pc, numaNodes: [ByteSize] = [], cpuModel: String? = nil,
                architecture: Architecture = .default) {
        self.memory = memory; self.cpus = cpus; self.type = type; self.numaNodes = numaNodes; self.cpuModel = cpuModel
        self.architecture = architecture
    }

    /// A spec built from an image's architecture and options that default to x86 (`--machine pc`): the
    /// architecture's own default machine type when `type` is not one of its types.
    public init(memory: ByteSize, type: MachineType, for architecture: Architecture) {
        self.init(memory: memory, type: architecture.machineTypes.contains(type) ? type : architecture.defaultMachineType,
                  architecture: architecture)
    }

    /// How this guest learns its memory map (e820 for x86 on `type`).
    public var memoryMapSource: MemoryMapSource { architecture.memoryMapSource(for: type) }

    // Coded by hand so the default architecture is neither required when decoding (specs written before it
    // existed) nor written when encoding (the JSON of an x86_64 machine stays as it was).
    private enum CodingKeys: String, CodingKey {
        case memory, cpus, type, numaNodes, cpuModel, architecture, lowMemory
    }

    public init(from decoder: Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        memory = try c.decode(ByteSize.self, forKey: .memory)
        cpus = try c.decode(Int.self, forKey: .cpus)
        type = try c.decode(MachineType.self, forKey: .type)
        numaNodes = try c.decode([ByteSize].self, forKey: .numaNodes)
        cpuModel = try c.decodeIfPresent(String.self, forKey: .cpuModel)
        architecture = try c.decodeIfPresent(Architecture.self, forKey: .architecture) ?? .default
        lowMemory = try c.decodeIfPresent(ByteSize.self, forKey: .lowMemory)
    }

    public func encode(to encoder: Encoder) throws {
        var c = encoder.container(keyedBy: CodingKeys.self)
        try c.encode(memory, forKey: .memory)
        try c.encode(cpus, forKey: .cpus)
        try c.encode(type, forKey: .type)
        try c.encode(numaNodes, forKey: .numaNodes)
        try c.encodeIfPresent(cpuModel, forKey: .cpuModel)
        if architecture != .default { try c.encode(architecture, forKey: .architecture) }
        try c.encodeIfPresent(lowMemory, forKey: .lowMemory)
    }
}

extension MachineSpec {
    /// The machine described for people: `pc, 4G, 1 CPU`, with `, NUMA 2G+2G` when it has nodes. This is the
    /// `machine` text of observations.json; nothing reads it back except `legacy(summary:)`.
    public var summary: String {
        var s = "\(type.rawValue), \(memory), \(cpus) CPU"
        if !numaNodes.isEmpty { s += ", NUMA \(numaNodes.map(\.description).joined(separator: "+"))" }
        return s
    }

    /// Legacy compatibility only: the spec back from a `summary` text, for observations written before they
    /// carried `machineSpec` (their decoding is the one caller). The memory is the first comma-separated part
    /// that reads as a size; the type, CPUs and NUMA nodes are taken when present. Nil when no part is a size.
    public static func legacy(summary text: String) -> MachineSpec? {
        let parts = text.split(separator: ",").map { $0.trimmingCharacters(in: " ") }
        guard let memory = parts.lazy.compactMap({ try? ByteSize.parse($0) }).first else { return nil }
        var spec = MachineSpec(memory: memory, type: parts.first.flatMap(MachineType.init(rawValue:)) ?? .pc)
        for part in parts {
            if part.hasSuffix(" CPU"), let n = Int(part.dropLast(" CPU".count)) { spec.cpus = n }
            if part.hasPrefix("NUMA ") {
                spec.numaNodes = part.dropFirst("NUMA ".count).split(separator: "+").compactMap { try? ByteSize.parse(String($0)) }
            }
        }
        return spec
    }
}

extension ByteSize: Codable {
    public init(from decoder: Decoder) throws {
        let c = try decoder.singleValueContainer()
        if let n = try? c.decode(UInt64.self) { self.init(bytes: n); return }
        let s = try c.decode(String.self)
        do { self = try ByteSize.parse(s) } catch {
            throw DecodingError.dataCorruptedError(in: c, debugDescription: error.description)
        }
    }
    public func encode(to encoder: Encoder) throws {
        var c = encoder.singleValueContainer()
        try c.encode(description)
    }
}

/// Everything that decides the QEMU argv of one boot.
public struct QEMUPlan: Equatable, Sendable {
    /// The QEMU executable: the machine architecture's emulator unless set (`CMALAB_QEMU`, the KVM probe).
    public var binary: String {
        get { binaryOverride ?? machine.architecture.qemuBinary }
        set { binaryOverride = newValue }
    }
    private var binaryOverride: String?
    public var machine: MachineSpec
    public var accelerator: Accelerator = .tcg
    public var kernel: String
    public var initrd: String?
    /// The command line the user asked for; the lab's own parameters are added by `effectiveCommandLine`.
    public var commandLine: KernelCommandLine
    /// Unix socket for the agent channel; nil boots without one.
    public var agentSocket: String?
    public var agentTransport: AgentTransport = .virtio
    /// `-name`: the run's name, so `ps` shows which run a QEMU belongs to.
    public var name: String?
    /// Extra raw QEMU arguments, appended last.
    public var extraArguments: [String] = []

    public init(machine: MachineSpec, kernel: String, initrd: String? = nil, commandLine: KernelCommandLine = KernelCommandLine()) {
        self.machine = machine; self.kernel = kernel; self.initrd = initrd; self.commandLine = commandLine
    }

    /// The device tree blob the guest boots with (`-dtb`): QEMU's own for the machine plus the profile's
    /// `device-tree:` nodes (DeviceTree.swift). Nil lets QEMU build the tree itself.
    public var deviceTreeBlob: String?
    /// The profile's nodes that went into `deviceTreeBlob`, for the oracle (which never reads the blob).
    public var deviceTree = DeviceTree()

    /// The user's command line plus what the lab needs: the console (ttyS0 on x86_64), panic=-1 so a panic ends
    /// QEMU at once (with -no-reboot), `Architecture.fastBootParameters`, the agent transport hint, and on `pc`
    /// `pci=noacpi`. A user's own value always wins.
    ///
    /// `pci=noacpi`: under TCG the ACPI interpreter is slow. On i440FX, scanning PCI through ACPI costs
    /// ~0.1 s per boot, and enabling the virtio-serial device's interrupt link through ACPI (`ACPI:
    /// \_SB_.LNKB: Enabled at IRQ 10`) another ~130 ms; the BIOS's $PIR table routes the same IRQ in ~3 ms.
    /// It changes nothing CMA sees: the memory map, SRAT and NUMA still come from ACPI tables. q35 keeps
    /// ACPI (its links are fixed GSIs, ~8 ms).
    public var effectiveCommandLine: KernelCommandLine {
        var line = KernelCommandLine()
        for p in machine.architecture.consoleParameters { line.append(p.key, p.value) }
        line.append("panic", "-1")
        for p in machine.architecture.fastBootParameters { line.append(p.key, p.value) }
        if agentSocket != nil, agentTransport == .uart { line.append("cmalab.channel", "uart") }
        if machine.type == .pc { line.append("pci", "noacpi") }
        var user = commandLine
        // Keep the user's order; drop our defaults that the user set explicitly.
        let userKeys = Set(user.parameters.map(\.key))
        line = KernelCommandLine(line.parameters.filter { !userKeys.contains($0.key) })
        user = line.appending(user)
        return user
    }

    /// The exact argv, binary first. Guest RAM is always a `memory-backend-ram` with `reserve=off`, so a
    /// guest larger than the host boots (pages are only backed when touched).
    public func arguments() -> [String] {
        var a: [String] = [binary]
        if let name { a += ["-name", name] }
        a += ["-nodefaults", "-no-user-config", "-display", "none", "-no-reboot"]
        a += machineArguments()
        if let dtb = deviceTreeBlob { a += ["-dtb", dtb] }
        a += ["-kernel", kernel]
        if let initrd { a += ["-initrd", initrd] }
        if machine.type == .virt { a += ["-nic", "none"] }
        a += ["-append", effectiveCommandLine.description]
        // The console is QEMU's stdio: the lab reads it from a pipe, reproduce.sh shows it on the terminal.
        a += ["-chardev", "stdio,id=console,signal=off", "-serial", "chardev:console"]
        if let agentSocket {
            a += ["-chardev", "socket,id=agent,path=\(agentSocket),server=on,wait=off"]
            switch agentTransport {
            case .virtio:
                a += ["-device", "virtio-serial-pci,id=vser0"]
                a += ["-device", "virtserialport,bus=vser0.0,chardev=agent,name=org.cmalab.agent.0"]
            case .uart:
                a += ["-serial", "chardev:agent"]
            }
        }
        a += extraArguments
        return a
    }

    /// `-machine`, `-cpu`, `-smp`, `-m` and the memory backends and NUMA nodes: everything that decides the
    /// guest's memory and CPUs, and so the device tree QEMU builds (`dumpDeviceTreeArguments` asks the same).
    public func machineArguments() -> [String] {
        var a: [String] = []
        a += ["-machine", "\(machine.type.rawValue),accel=\(accelerator.rawValue)" + machine.architecture.machineProperties + (machine.lowMemory.map { ",max-ram-below-4g=\($0.bytes)" } ?? "")]
        if let cpu = machine.cpuModel ?? machine.architecture.defaultCPU { a += ["-cpu", cpu] }
        a += ["-smp", "\(machine.cpus)"]
        a += ["-m", "\(machine.memory.mebibytes)M"]
        if machine.numaNodes.isEmpty {
            a += ["-object", "memory-backend-ram,id=ram0,size=\(machine.memory.mebibytes)M,reserve=off"]
            a += ["-machine", "memory-backend=ram0"]
        } else {
            for (i, size) in machine.numaNodes.enumerated() {
                a += ["-object", "memory-backend-ram,id=ram\(i),size=\(size.mebibytes)M,reserve=off"]
            }
            let cpusPerNode = max(1, machine.cpus / machine.numaNodes.count)
            for i in machine.numaNodes.indices {
                var node = "node,nodeid=\(i),memdev=ram\(i)"
                let first = i * cpusPerNode
                if first < machine.cpus {
                    let last = i == machine.numaNodes.count - 1 ? machine.cpus - 1 : min(machine.cpus - 1, first + cpusPerNode - 1)
                    node += first == last ? ",cpus=\(first)" : ",cpus=\(first)-\(last)"
                }
                a += ["-numa", node]
            }
        }
        return a
    }

    /// The argv that makes QEMU write the device tree it would give this machine to `path` and exit
    /// (`-machine virt,dumpdtb=PATH`), for DeviceTree.swift to add the profile's nodes to.
    public func dumpDeviceTreeArguments(to path: String) -> [String] {
        var a = [binary, "-nodefaults", "-no-user-config", "-display", "none"]
        a += machineArguments()
        a += ["-machine", "dumpdtb=\(path)"]
        return a
    }

    public func validate() throws(PlanError) {
        guard machine.architecture.machineTypes.contains(machine.type) else {
            throw PlanError("machine type \(machine.type.rawValue) is not an \(machine.architecture) machine; use one of: \(machine.architecture.machineTypes.map(\.rawValue).joined(separator: ", "))")
        }
        guard machine.cpus >= 1, machine.cpus <= 64 else { throw PlanError("cpus must be between 1 and 64, got \(machine.cpus)") }
        guard machine.memory >= .mib(128) else { throw PlanError("memory must be at least 128M, got \(machine.memory)") }
        guard machine.memory.bytes % (1 << 20) == 0 else { throw PlanError("memory must be a whole number of MiB, got \(machine.memory)") }
        guard machine.memory <= MachineSpec.maximumMemory else {
            throw PlanError("memory must be at most \(MachineSpec.maximumMemory), got \(machine.memory)")
        }
        if !machine.numaNodes.isEmpty {
            let sum = try numaTotal()
            guard sum == machine.memory.bytes else {
                throw PlanError("NUMA node sizes add up to \(ByteSize(bytes: sum)) but memory is \(machine.memory)")
            }
            guard machine.numaNodes.allSatisfy({ $0.bytes % (1 << 20) == 0 && $0.bytes > 0 }) else {
                throw PlanError("every NUMA node needs a non-zero whole number of MiB")
            }
        }
    }
}

extension QEMUPlan {
    /// The NUMA node sizes added up, refused once the running total passes `MachineSpec.maximumMemory`
    /// (which also keeps the sum from overflowing).
    func numaTotal() throws(PlanError) -> UInt64 {
        var sum: UInt64 = 0
        for node in machine.numaNodes {
            let (next, overflow) = sum.addingReportingOverflow(node.bytes)
            guard !overflow, next <= MachineSpec.maximumMemory.bytes else {
                throw PlanError("NUMA node sizes must add up to at most \(MachineSpec.maximumMemory), the largest guest memory cmalab accepts")
            }
            sum = next
        }
        return sum
    }
}

public struct PlanError: Error, Equatable, Sendable, CustomStringConvertible {
    public var description: String
    public init(_ d: String) { description = d }
}

/// Quotes an argv for a POSIX shell (used by reproduce.sh and log lines).
public func shellQuote(_ arg: String) -> String {
    let safe = arg.utf8.allSatisfy { c in
        (c >= 0x30 && c <= 0x39) || (c >= 0x41 && c <= 0x5a) || (c >= 0x61 && c <= 0x7a) || "-_./=,:@%+".utf8.contains(c)
    }
    if safe && !arg.isEmpty { return arg }
    return "'" + arg.split(separator: "'", omittingEmptySubsequences: false).joined(separator: "'\\''") + "'"
}
