/// Where the agent finds the kernel's interfaces. Tests point these at fixture trees.
public struct AgentPaths: Sendable {
    public var proc: String
    public var sys: String
    public var dev: String
    public var debugfsCMA: String
    public var sysfsCMA: String
    public var kmsg: String
    /// Provides `zcat` for /proc/config.gz.
    public var busybox: String

    public init(
        proc: String = "/proc", sys: String = "/sys", dev: String = "/dev",
        debugfsCMA: String = "/sys/kernel/debug/cma", sysfsCMA: String = "/sys/kernel/mm/cma",
        kmsg: String = "/dev/kmsg", busybox: String = "/bin/busybox"
    ) {
        self.proc = proc
        self.sys = sys
        self.dev = dev
        self.debugfsCMA = debugfsCMA
        self.sysfsCMA = sysfsCMA
        self.kmsg = kmsg
        self.busybox = busybox
    }
}
