/// Protocol constants shared by host and guest.
public enum AgentProtocol {
    public static let version: UInt16 = 1
    /// Name of the virtio-serial port the agent talks on (QEMU `virtserialport,name=`).
    public static let virtioPortName = "org.cmalab.agent.0"
}

// MARK: - Requests

/// What the host asks of the guest agent. Sent as the payload of a request frame.
public enum AgentRequest: Equatable, Sendable {
    case uname
    case meminfo
    case cmaAreas
    /// `cmaAreas` without the bitmap summary: what `cmalab run` snapshots around every step. The bitmap of a
    /// 1 GiB area is 8192 words to read and summarise, and the run does not use it.
    case cmaAreaCounters
    case cmaAlloc(area: String, pages: UInt64)
    case cmaFree(area: String, pages: UInt64)
    case readFile(path: String, maxBytes: UInt32)
    case writeFile(path: String, data: [UInt8])
    case listDirectory(path: String)
    /// Kernel log records with a sequence number above `afterSequence` (all when nil).
    case kmsg(afterSequence: UInt64?, maxRecords: UInt32)
    case exec(ExecRequest)
    case kernelConfig
    case vmstat
    case poweroff
    case reboot
}

public struct ExecRequest: Equatable, Sendable {
    /// argv[0] is an absolute path or a name searched in PATH.
    public var argv: [String]
    /// The child's whole environment, as KEY=VALUE strings.
    public var env: [String]
    public var cwd: String?
    /// 0 means no timeout.
    public var timeoutMilliseconds: UInt32
    /// Per-stream cap on captured stdout/stderr.
    public var maxOutputBytes: UInt32
    /// Written to the child's stdin; empty means stdin is /dev/null.
    public var stdin: [UInt8]

    public init(
        argv: [String], env: [String] = [], cwd: String? = nil,
        timeoutMilliseconds: UInt32 = 10_000, maxOutputBytes: UInt32 = 1 << 20, stdin: [UInt8] = []
    ) {
        self.argv = argv
        self.env = env
        self.cwd = cwd
        self.timeoutMilliseconds = timeoutMilliseconds
        self.maxOutputBytes = maxOutputBytes
        self.stdin = stdin
    }
}

// MARK: - Responses

/// The agent's answer to one request. Sent as the payload of a response frame.
public enum AgentResponse: Equatable, Sendable {
    case uname(Uname)
    case meminfo(Meminfo)
    case cmaAreas([CMAArea])
    case done
    case failure(errno: Int32, message: String)
    case file(data: [UInt8], truncated: Bool)
    case directory([DirectoryEntry])
    case kmsg(KmsgBatch)
    case exec(ExecResult)
    case kernelConfig(text: String)
    case vmstat([Counter])
}

public struct Uname: Equatable, Sendable {
    public var sysname: String
    public var nodename: String
    public var release: String
    public var version: String
    public var machine: String

    public init(sysname: String, nodename: String, release: String, version: String, machine: String) {
        self.sysname = sysname
        self.nodename = nodename
        self.release = release
        self.version = version
        self.machine = machine
    }
}

/// A named numeric value (a vmstat line, a sysfs CMA statistic).
public struct Counter: Equatable, Sendable {
    public var name: String
    public var value: UInt64

    public init(name: String, value: UInt64) {
        self.name = name
        self.value = value
    }
}

public struct CMAArea: Equatable, Sendable {
    /// The directory name under debugfs `cma/` (or sysfs `mm/cma/`).
    public var name: String
    public var basePFN: UInt64?
    /// Size of the area in pages.
    public var count: UInt64?
    /// Pages in use.
    public var used: UInt64?
    /// Largest free contiguous chunk, in pages.
    public var maxchunk: UInt64?
    /// Each bitmap bit covers 2^orderPerBit pages.
    public var orderPerBit: UInt64?
    public var bitmap: BitmapSummary?
    /// Every numeric file of /sys/kernel/mm/cma/<name>/, sorted by name.
    public var sysfs: [Counter]

    public init(
        name: String, basePFN: UInt64? = nil, count: UInt64? = nil, used: UInt64? = nil,
        maxchunk: UInt64? = nil, orderPerBit: UInt64? = nil, bitmap: BitmapSummary? = nil, sysfs: [Counter] = []
    ) {
        self.name = name
        self.basePFN = basePFN
        self.count = count
        self.used = used
        self.maxchunk = maxchunk
        self.orderPerBit = orderPerBit
        self.bitmap = bitmap
        self.sysfs = sysfs
    }
}

/// A compact description of a CMA allocation bitmap. Bit indices are in bitmap
/// units (2^order_per_bit pages each), counted from the area's base PFN.
public struct BitmapSummary: Equatable, Sendable {
    public static let maxRuns = 64

    /// Number of 32-bit words parsed.
    public var words: UInt32
    public var setBits: UInt64
    public var firstSetBit: UInt64?
    public var lastSetBit: UInt64?
    /// Runs of consecutive set bits in ascending order; only the first `maxRuns` are kept.
    public var runs: [BitRun]
    public var runsTruncated: Bool

    public init(
        words: UInt32, setBits: UInt64, firstSetBit: UInt64?, lastSetBit: UInt64?,
        runs: [BitRun], runsTruncated: Bool
    ) {
        self.words = words
        self.setBits = setBits
        self.firstSetBit = firstSetBit
        self.lastSetBit = lastSetBit
        self.runs = runs
        self.runsTruncated = runsTruncated
    }
}

public struct BitRun: Equatable, Sendable {
    public var start: UInt64
    public var length: UInt64

    public init(start: UInt64, length: UInt64) {
        self.start = start
        self.length = length
    }
}

public struct DirectoryEntry: Equatable, Sendable {
    public static let unknown: UInt8 = 0
    public static let file: UInt8 = 1
    public static let directory: UInt8 = 2
    public static let symlink: UInt8 = 3
    public static let other: UInt8 = 4

    public var name: String
    /// One of `unknown`, `file`, `directory`, `symlink`, `other` (from lstat).
    public var kind: UInt8
    public var size: UInt64

    public init(name: String, kind: UInt8, size: UInt64) {
        self.name = name
        self.kind = kind
        self.size = size
    }
}

/// One /dev/kmsg record.
public struct KmsgRecord: Equatable, Sendable {
    public var sequence: UInt64
    /// Log level 0 (emerg) ... 7 (debug).
    public var priority: UInt8
    public var facility: UInt8
    /// Time since boot.
    public var timestampMicroseconds: UInt64
    public var message: String

    public init(sequence: UInt64, priority: UInt8, facility: UInt8, timestampMicroseconds: UInt64, message: String) {
        self.sequence = sequence
        self.priority = priority
        self.facility = facility
        self.timestampMicroseconds = timestampMicroseconds
        self.message = message
    }
}

public struct KmsgBatch: Equatable, Sendable {
    public var records: [KmsgRecord]
    /// One past the last sequence number consumed; ask again with
    /// `afterSequence: nextSequence - 1` to continue where this batch ended.
    public var nextSequence: UInt64
    /// Records lost to ring-buffer overruns (sequence gaps).
    public var missedRecords: UInt64

    public init(records: [KmsgRecord], nextSequence: UInt64, missedRecords: UInt64) {
        self.records = records
        self.nextSequence = nextSequence
        self.missedRecords = missedRecords
    }
}

public enum ExecTermination: Equatable, Sendable {
    case exited(Int32)
    case signaled(Int32)
    case timedOut
    case spawnFailed(errno: Int32)
}

public struct ExecResult: Equatable, Sendable {
    public var termination: ExecTermination
    public var stdout: [UInt8]
    public var stderr: [UInt8]
    public var stdoutTruncated: Bool
    public var stderrTruncated: Bool
    public var durationNanoseconds: UInt64

    public init(
        termination: ExecTermination, stdout: [UInt8] = [], stderr: [UInt8] = [],
        stdoutTruncated: Bool = false, stderrTruncated: Bool = false, durationNanoseconds: UInt64 = 0
    ) {
        self.termination = termination
        self.stdout = stdout
        self.stderr = stderr
        self.stdoutTruncated = stdoutTruncated
        self.stderrTruncated = stderrTruncated
        self.durationNanoseconds = durationNanoseconds
    }
}

// MARK: - Events

/// Unsolicited messages from the agent. Sent as the payload of an event frame (id 0).
public enum AgentEvent: Equatable, Sendable {
    /// First frame on the channel: the agent is serving.
    case ready(AgentHello)
    case log(String)
    case fatal(String)
}

public struct AgentHello: Equatable, Sendable {
    public var protocolVersion: UInt16
    public var agentVersion: String
    public var uname: Uname
    /// The kernel command line (/proc/cmdline, trimmed).
    public var cmdline: String
    /// Where the agent listens, e.g. "virtio:/dev/vport1p1" or "uart:/dev/ttyS1".
    public var channel: String
    public var uptimeMilliseconds: UInt64

    public init(
        protocolVersion: UInt16 = AgentProtocol.version, agentVersion: String, uname: Uname,
        cmdline: String, channel: String, uptimeMilliseconds: UInt64
    ) {
        self.protocolVersion = protocolVersion
        self.agentVersion = agentVersion
        self.uname = uname
        self.cmdline = cmdline
        self.channel = channel
        self.uptimeMilliseconds = uptimeMilliseconds
    }
}
