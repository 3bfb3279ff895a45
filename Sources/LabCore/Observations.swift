/// What a run observed, and the verdict on it. Codable with stable keys: this is observations.json and
/// the per-profile part of `--json` (see docs/results-schema.md).

import LabProtocol

/// A CMA area as the kernel reported it at boot (`cma: Reserved ...`).
public struct ReservedArea: Codable, Equatable, Sendable {
    public var sizeMiB: UInt64
    public var base: UInt64
    /// `on node N` (6.6+); nil on older kernels.
    public var node: Int?
    public init(sizeMiB: UInt64, base: UInt64, node: Int? = nil) { self.sizeMiB = sizeMiB; self.base = base; self.node = node }
}

/// A range of guest physical memory, [start, end] inclusive as the kernel prints it.
public struct MemoryRange: Codable, Equatable, Sendable {
    public var start: UInt64
    /// The last byte (inclusive), as in `[mem 0x...-0x...]`.
    public var end: UInt64
    /// For e820 ranges: `usable`, `reserved`, `ACPI data`, `ACPI NVS`, ...; empty otherwise.
    public var type: String
    public init(start: UInt64, end: UInt64, type: String = "") { self.start = start; self.end = end; self.type = type }
    public var size: UInt64 { end &- start &+ 1 }
}

/// The CMA facts found in a kernel log (console or /dev/kmsg).
public struct BootLogFacts: Codable, Equatable, Sendable {
    /// The firmware's memory map (`BIOS-e820: [mem 0x...-0x...] usable`), in order; empty if not printed.
    public var e820: [MemoryRange] = []
    /// Where the initrd was loaded (`RAMDISK: [mem 0x...-0x...]`).
    public var ramdisk: MemoryRange?
    /// Every `cma: Reserved N MiB at 0x... [on node N]` line, in order.
    public var reserved: [ReservedArea] = []
    /// Every `cma: Failed to reserve N MiB [on node N]` line, in order (the MiB value).
    public var failedMiB: [UInt64] = []
    /// The reason lines that come before a failure (`Region at ... must be aligned ...`, `Size (...) ... exceeds
    /// limit (...)`, `... defined on low/high memory boundary ...`, `Not enough slots ...`), text without `cma: `.
    public var failureReasons: [String] = []
    /// The `cma-reserved` value of the `Memory:` line, in KiB.
    public var memoryCmaReservedKiB: UInt64?
    /// The whole `Memory:` line (without timestamp).
    public var memoryLine: String?
    /// The parameters of `Unknown kernel command line parameters "..."`.
    public var unknownParameters: [String] = []
    /// `Kernel command line:` as the kernel saw it.
    public var commandLine: String?
    /// `Linux version ...` release (e.g. `6.12.117`).
    public var kernelRelease: String?
    /// Every line that starts with `cma:` or `hugetlb_cma:` (without timestamp), in order: the CMA dmesg.
    public var cmaLines: [String] = []
    /// The NUMA nodes' memory from the ACPI SRAT (`ACPI: SRAT: Node 1 PXM 1 [mem 0x...-0x...]`), in order; empty
    /// on a guest without NUMA (or a kernel without ACPI NUMA).
    public var nodeMemory: [NodeMemoryRange] = []
    /// An arm64 boot's device-tree reserved-memory lines (DeviceTreeLog.swift); empty on x86.
    public var deviceTree = DeviceTreeBootFacts()

    public init() {}

    // Files written before `e820` and `ramdisk` existed still decode: keys added later may be absent.
    enum CodingKeys: String, CodingKey {
        case e820, ramdisk, reserved, failedMiB, failureReasons, memoryCmaReservedKiB, memoryLine, unknownParameters, commandLine, kernelRelease, cmaLines
        case nodeMemory, deviceTree
    }

    public init(from decoder: any Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        e820 = try c.decodeIfPresent([MemoryRange].self, forKey: .e820) ?? []
        ramdisk = try c.decodeIfPresent(MemoryRange.self, forKey: .ramdisk)
        reserved = try c.decode([ReservedArea].self, forKey: .reserved)
        failedMiB = try c.decode([UInt64].self, forKey: .failedMiB)
        failureReasons = try c.decode([String].self, forKey: .failureReasons)
        memoryCmaReservedKiB = try c.decodeIfPresent(UInt64.self, forKey: .memoryCmaReservedKiB)
        memoryLine = try c.decodeIfPresent(String.self, forKey: .memoryLine)
        unknownParameters = try c.decode([String].self, forKey: .unknownParameters)
        commandLine = try c.decodeIfPresent(String.self, forKey: .commandLine)
        kernelRelease = try c.decodeIfPresent(String.self, forKey: .kernelRelease)
        cmaLines = try c.decode([String].self, forKey: .cmaLines)
        nodeMemory = try c.decodeIfPresent([NodeMemoryRange].self, forKey: .nodeMemory) ?? []
        deviceTree = try c.decodeIfPresent(DeviceTreeBootFacts.self, forKey: .deviceTree) ?? DeviceTreeBootFacts()
    }

    public func encode(to encoder: any Encoder) throws {
        var c = encoder.container(keyedBy: CodingKeys.self)
        try c.encode(e820, forKey: .e820)
        try c.encodeIfPresent(ramdisk, forKey: .ramdisk)
        try c.encode(reserved, forKey: .reserved)
        try c.encode(failedMiB, forKey: .failedMiB)
        try c.encode(failureReasons, forKey: .failureReasons)
        try c.encodeIfPresent(memoryCmaReservedKiB, forKey: .memoryCmaReservedKiB)
        try c.encodeIfPresent(memoryLine, forKey: .memoryLine)
        try c.encode(unknownParameters, forKey: .unknownParameters)
        try c.encodeIfPresent(commandLine, forKey: .commandLine)
        try c.encodeIfPresent(kernelRelease, forKey: .kernelRelease)
        try c.encode(cmaLines, forKey: .cmaLines)
        try c.encode(nodeMemory, forKey: .nodeMemory)
        // Absent on x86, so an x86 result file stays as it was.
        if !deviceTree.isEmpty { try c.encode(deviceTree, forKey: .deviceTree) }
    }

    /// The node whose SRAT memory holds this physical address, if the guest has NUMA nodes.
    public func node(of address: UInt64) -> Int? {
        nodeMemory.first { $0.start <= address && address <= $0.end }?.node
    }

}

/// A range of a NUMA node's memory as the ACPI SRAT gave it to the kernel ([start, end] inclusive).
public struct NodeMemoryRange: Codable, Equatable, Sendable {
    public var node: Int
    public var start: UInt64
    public var end: UInt64
    public init(node: Int, start: UInt64, end: UInt64) { self.node = node; self.start = start; self.end = end }
}

/// One check of a profile's expectations against what was observed.
public struct CheckResult: Codable, Equatable, Sendable {
    /// What was checked, e.g. `outcome`, `area.size`, `steps[0].alloc.cma-free-drop`.
    public var name: String
    public var expected: String
    public var observed: String
    public var passed: Bool
    /// True when the check was not made (a step the image cannot run); such a check counts as passed.
    public var skipped: Bool?
    public init(name: String, expected: String, observed: String, passed: Bool, skipped: Bool? = nil) {
        self.name = name; self.expected = expected; self.observed = observed; self.passed = passed; self.skipped = skipped
    }
}

/// The result kind of one profile run.
public enum VerdictKind: String, Codable, Sendable, Equatable, CaseIterable {
    /// Every check held.
    case pass
    /// At least one check did not hold.
    case fail
    /// The lab could not decide (QEMU missing, build failed, a timeout with no console clue, preflight refused).
    case error
}

/// Meminfo fields of interest at one moment (kB), with the raw text kept in the artifacts.
public struct MeminfoSnapshot: Codable, Equatable, Sendable {
    public var label: String
    public var cmaTotalKiB: UInt64?
    public var cmaFreeKiB: UInt64?
    public var memTotalKiB: UInt64?
    public var memFreeKiB: UInt64?
    public init(label: String, cmaTotalKiB: UInt64?, cmaFreeKiB: UInt64?, memTotalKiB: UInt64?, memFreeKiB: UInt64?) {
        self.label = label; self.cmaTotalKiB = cmaTotalKiB; self.cmaFreeKiB = cmaFreeKiB; self.memTotalKiB = memTotalKiB; self.memFreeKiB = memFreeKiB
    }
}

/// A CMA area as the agent saw it in debugfs/sysfs: cmalab's one model of a live area. The agent's wire type
/// (`CMAArea`, LabProtocol, stdlib only) becomes one in `init(_:)` and nowhere else.
public struct AreaSnapshot: Codable, Equatable, Sendable {
    public var name: String
    public var basePFN: UInt64?
    public var count: UInt64?
    public var used: UInt64?
    public var maxchunk: UInt64?
    public var orderPerBit: UInt64?
    public var sysfs: [String: UInt64]
    /// The NUMA node whose memory holds the base (from the kernel's `SRAT: Node N PXM M [mem ...]` lines); nil
    /// on a guest without NUMA nodes.
    public var node: Int?
    public init(name: String, basePFN: UInt64?, count: UInt64?, used: UInt64?, maxchunk: UInt64?, orderPerBit: UInt64?, sysfs: [String: UInt64]) {
        self.name = name; self.basePFN = basePFN; self.count = count; self.used = used; self.maxchunk = maxchunk; self.orderPerBit = orderPerBit; self.sysfs = sysfs
    }

    /// The agent's view of an area (its bitmap summary is not kept; a repeated sysfs name keeps the last value).
    public init(_ area: CMAArea) {
        self.init(name: area.name, basePFN: area.basePFN, count: area.count, used: area.used, maxchunk: area.maxchunk,
                  orderPerBit: area.orderPerBit, sysfs: Dictionary(area.sysfs.map { ($0.name, $0.value) }, uniquingKeysWith: { _, b in b }))
    }
}

/// What one step did: the wire shape of every kind's typed result (Steps/, `StepResult`), each kind's fields
/// optional.
public struct StepRecord: Codable, Equatable, Sendable {
    public var index: Int
    public var kind: StepKind
    public var summary: String
    /// 0 on success, else the errno (alloc/free) or exit status (exec).
    public var status: Int32
    public var seconds: Double
    public var before: MeminfoSnapshot?
    public var after: MeminfoSnapshot?
    public var areaBefore: AreaSnapshot?
    public var areaAfter: AreaSnapshot?
    public var output: String?
    /// pressure: the bytes asked for and the bytes the guest holds.
    public var pressureBytes: UInt64?
    public var heldBytes: UInt64?
    /// pressure: CMA pages lent to movable allocations (CmaTotal - CmaFree - debugfs used, in pages) and
    /// /proc/vmstat nr_free_cma, after filling.
    public var cmaLentPages: UInt64?
    public var nrFreeCMA: UInt64?
    /// measured alloc: each attempt's guest-side write time (nanoseconds) and errno (0 = success).
    public var attemptNanoseconds: [UInt64]?
    public var attemptErrnos: [Int32]?
    /// measured alloc: /proc/vmstat changes over the first attempt (pgmigrate_*, cma_alloc_*, compact_*).
    public var vmstatDelta: [String: Int64]?
    /// measured alloc: kernel messages logged during the attempts.
    public var kernelMessages: [String]?
    /// dma-alloc: the allocation the driver made (nil when it failed).
    public var dma: DMAAllocation?
    /// dma-free, heap-free: how many allocations or buffers were freed.
    public var freedCount: UInt64?
    /// Allocating steps on kernels with trace events: what the kernel's CMA and migration events said.
    public var trace: CMATraceSummary?
    public init(index: Int, kind: StepKind, summary: String, status: Int32, seconds: Double) {
        self.index = index; self.kind = kind; self.summary = summary; self.status = status; self.seconds = seconds
    }
}

/// A profile step that was not run, and why.
public struct SkippedStep: Codable, Equatable, Sendable {
    public var index: Int
    public var reason: String
    public init(index: Int, reason: String) { self.index = index; self.reason = reason }
}

/// How a profile run ended. The raw values are the `ending` strings of observations.json (docs/results-schema.md).
public enum RunEnding: String, Codable, Sendable, Equatable, CaseIterable {
    /// The guest powered off after the steps.
    case poweredOff = "powered-off"
    /// A panic or oops on the console ended the run.
    case kernelCrash = "kernel-crash"
    /// The agent or the guest did not answer in time.
    case timeout
    /// The hypervisor process failed or vanished.
    case qemuFailed = "qemu-failed"
    /// The run ended before the guest booted.
    case notBooted = "not-booted"
    /// The lab failed while the machine still ran.
    case labError = "lab-error"
}

/// Everything one profile run observed.
public struct Observations: Codable, Equatable, Sendable {
    public var profile: String
    public var image: String
    public var kernelRelease: String?
    /// The machine described for people (`MachineSpec.summary`, JSON `machine`).
    public var machine: String
    /// The machine itself (JSON `machineSpec`, added after `machine`): what the memory map and other readers
    /// use. Files written before it existed get it from `machine` when decoded (`MachineSpec.legacy(summary:)`);
    /// nil only when that text names no memory size.
    public var machineSpec: MachineSpec?
    /// The effective kernel command line as text (JSON `commandLine`), for people.
    public var commandLine: String
    /// The same command line as parameters (JSON `commandLineParameters`, added after `commandLine`): what the
    /// memory map reads when the boot log has no `Kernel command line:` line. Files written before it existed get
    /// it from `commandLine` when decoded.
    public var commandLineParameters: KernelCommandLine
    public var accelerator: String
    /// How the run ended.
    public var ending: RunEnding
    public var crash: CrashReport?
    public var boot: BootLogFacts
    public var configCMA: Bool?
    public var meminfo: [MeminfoSnapshot] = []
    public var areas: [AreaSnapshot] = []
    public var steps: [StepRecord] = []
    /// Steps that were not run, with why (e.g. the image has no CONFIG_CMA_DEBUGFS); absent when none.
    public var skippedSteps: [SkippedStep]?
    /// The dma-buf heaps under /dev/dma_heap at boot (nil: no such folder, a kernel without heaps).
    public var dmaHeaps: [String]?
    public var agentReadySeconds: Double?
    /// The guest's own uptime when its agent said ready (from the agent's hello): with the kernel's
    /// `Run /init` timestamp in dmesg, this splits boot time into kernel and agent start-up.
    public var agentReadyUptimeSeconds: Double?
    /// QEMU's peak resident set on the host (VmHWM of /proc/<pid>/status, KiB), read just before power-off.
    public var qemuPeakRSSKiB: UInt64?
    public var wallSeconds: Double = 0
    public var runDirectory: String = ""
    public init(profile: String, image: String, machine: MachineSpec, commandLine: KernelCommandLine, accelerator: String, ending: RunEnding, boot: BootLogFacts) {
        self.profile = profile; self.image = image; self.machine = machine.summary; self.machineSpec = machine
        self.commandLine = commandLine.description; self.commandLineParameters = commandLine
        self.accelerator = accelerator; self.ending = ending; self.boot = boot
    }

    enum CodingKeys: String, CodingKey {
        case profile, image, kernelRelease, machine, machineSpec, commandLine, commandLineParameters, accelerator, ending, crash, boot, configCMA, meminfo, areas, steps
        case skippedSteps, dmaHeaps, agentReadySeconds, agentReadyUptimeSeconds, qemuPeakRSSKiB, wallSeconds, runDirectory
    }

    // Decoded by hand for files written before `machineSpec`: the spec then comes from the `machine` text.
    public init(from decoder: any Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        profile = try c.decode(String.self, forKey: .profile)
        image = try c.decode(String.self, forKey: .image)
        kernelRelease = try c.decodeIfPresent(String.self, forKey: .kernelRelease)
        machine = try c.decode(String.self, forKey: .machine)
        machineSpec = try c.decodeIfPresent(MachineSpec.self, forKey: .machineSpec) ?? MachineSpec.legacy(summary: machine)
        commandLine = try c.decode(String.self, forKey: .commandLine)
        // Legacy path only: files written before `commandLineParameters` carry the text alone.
        commandLineParameters = try c.decodeIfPresent(KernelCommandLine.self, forKey: .commandLineParameters)
            ?? KernelCommandLine(parsing: commandLine)
        accelerator = try c.decode(String.self, forKey: .accelerator)
        ending = try c.decode(RunEnding.self, forKey: .ending)
        crash = try c.decodeIfPresent(CrashReport.self, forKey: .crash)
        boot = try c.decode(BootLogFacts.self, forKey: .boot)
        configCMA = try c.decodeIfPresent(Bool.self, forKey: .configCMA)
        meminfo = try c.decode([MeminfoSnapshot].self, forKey: .meminfo)
        areas = try c.decode([AreaSnapshot].self, forKey: .areas)
        steps = try c.decode([StepRecord].self, forKey: .steps)
        skippedSteps = try c.decodeIfPresent([SkippedStep].self, forKey: .skippedSteps)
        dmaHeaps = try c.decodeIfPresent([String].self, forKey: .dmaHeaps)
        agentReadySeconds = try c.decodeIfPresent(Double.self, forKey: .agentReadySeconds)
        agentReadyUptimeSeconds = try c.decodeIfPresent(Double.self, forKey: .agentReadyUptimeSeconds)
        qemuPeakRSSKiB = try c.decodeIfPresent(UInt64.self, forKey: .qemuPeakRSSKiB)
        wallSeconds = try c.decode(Double.self, forKey: .wallSeconds)
        runDirectory = try c.decode(String.self, forKey: .runDirectory)
    }
}

/// A profile's verdict with the reasons.
public struct Verdict: Codable, Equatable, Sendable {
    public var profile: String
    public var image: String
    /// The matrix cell id (`profile@image[memory=8G]`, `cellKey.id`); absent outside a matrix.
    public var cell: String?
    /// The matrix cell as a value (JSON `cellKey`, added after `cell`); setting it sets `cell`. Files written
    /// before it existed get it from `cell` when decoded (`CellKey.legacy(id:)`).
    public var cellKey: CellKey? {
        didSet { cell = cellKey?.id }
    }
    public var kind: VerdictKind
    public var checks: [CheckResult]
    /// Why the lab could not decide (for `error`), or nil.
    public var error: String?
    /// The code of the lab error behind an `error` verdict (`input`, `preflight`, `qemu`, `timeout`, ... : LabError.Code),
    /// for scripts to branch on; absent for `pass` and `fail`, and in results written before it existed.
    public var errorCode: String?
    public var observations: Observations?
    /// The last console lines (for reports).
    public var consoleTail: [String]
    public var seconds: Double
    public var runDirectory: String
    /// The CMA oracle's prediction for this boot and whether the kernel agreed (docs/results-schema.md); a
    /// disagreement is its own result, separate from `kind`. Absent when no prediction could be compared.
    public var oracle: OracleCheck?

    public init(profile: String, image: String, kind: VerdictKind, checks: [CheckResult], error: String? = nil, errorCode: String? = nil,
                observations: Observations? = nil, consoleTail: [String] = [], seconds: Double = 0, runDirectory: String = "") {
        self.profile = profile; self.image = image; self.kind = kind; self.checks = checks; self.error = error; self.errorCode = errorCode
        self.observations = observations; self.consoleTail = consoleTail; self.seconds = seconds; self.runDirectory = runDirectory
    }

    enum CodingKeys: String, CodingKey {
        case profile, image, cell, cellKey, kind, checks, error, errorCode, observations, consoleTail, seconds, runDirectory, oracle
    }

    // Decoded by hand for files written before `cellKey`: the key then comes from the `cell` text.
    public init(from decoder: any Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        profile = try c.decode(String.self, forKey: .profile)
        image = try c.decode(String.self, forKey: .image)
        cell = try c.decodeIfPresent(String.self, forKey: .cell)
        cellKey = try c.decodeIfPresent(CellKey.self, forKey: .cellKey) ?? cell.flatMap(CellKey.legacy(id:))
        kind = try c.decode(VerdictKind.self, forKey: .kind)
        checks = try c.decode([CheckResult].self, forKey: .checks)
        error = try c.decodeIfPresent(String.self, forKey: .error)
        errorCode = try c.decodeIfPresent(String.self, forKey: .errorCode)
        observations = try c.decodeIfPresent(Observations.self, forKey: .observations)
        consoleTail = try c.decode([String].self, forKey: .consoleTail)
        seconds = try c.decode(Double.self, forKey: .seconds)
        runDirectory = try c.decode(String.self, forKey: .runDirectory)
        oracle = try c.decodeIfPresent(OracleCheck.self, forKey: .oracle)
    }

    public var failedChecks: [CheckResult] { checks.filter { !$0.passed } }
    public var skippedChecks: [CheckResult] { checks.filter { $0.skipped == true } }
    /// What identifies this result among others: the matrix cell id, else `profile@image`.
    public var key: String { cell ?? "\(profile)@\(image)" }
}
