import LabProtocol

/// One CMA area of a fake guest, in 4 KiB pages.
public struct FakeArea: Sendable, Equatable {
    public var name: String
    public var basePFN: UInt64
    public var count: UInt64
    public var used: UInt64 = 0

    public init(name: String = "reserved", basePFN: UInt64, count: UInt64, used: UInt64 = 0) {
        self.name = name; self.basePFN = basePFN; self.count = count; self.used = used
    }
}

/// Which request a fault fires on: the first one `matches` accepts (each fault fires once), given the request's
/// number in the boot (from 1).
public struct RequestMatcher: Sendable {
    public let matches: @Sendable (_ number: Int, _ request: AgentRequest) -> Bool

    public init(_ matches: @escaping @Sendable (_ number: Int, _ request: AgentRequest) -> Bool) { self.matches = matches }

    /// The first request of this kind (`AgentClient.name(of:)`: "meminfo", "cmaAlloc", "exec", ...).
    public static func first(_ kind: String) -> RequestMatcher {
        RequestMatcher { _, r in String(describing: r).split(separator: "(").first.map(String.init) == kind }
    }

    /// The `number`-th request (from 1).
    public static func number(_ number: Int) -> RequestMatcher { RequestMatcher { n, _ in n == number } }
}

/// How a fake guest misbehaves.
public enum FakeFault: Sendable {
    /// The agent never starts: the console prints the boot log, then nothing happens until the machine is stopped.
    case neverReady
    /// The kernel panics before the agent starts (the console shows these lines after the boot log) and the machine ends.
    case panicAtBoot([String])
    /// On the matched request the kernel panics with these console lines and the machine ends (no answer).
    case panic(on: RequestMatcher, lines: [String])
    /// On the matched request the agent dies: the channel closes, and as PID 1 its death panics the kernel
    /// ("Attempted to kill init!") and the machine ends.
    case agentDies(on: RequestMatcher)
    /// On the matched request the machine ends with no word on the console (a killed hypervisor).
    case machineVanishes(on: RequestMatcher)
    /// The matched request is never answered (the agent hangs in the kernel).
    case neverAnswers(on: RequestMatcher)
    /// These bytes (not frames) go on the channel before the matched request's real answer.
    case garbageBefore(on: RequestMatcher, bytes: [UInt8])
    /// The matched request gets this answer instead of the real one.
    case answer(on: RequestMatcher, with: AgentResponse)
}

extension FakeFault {
    /// The request a fault fires on; nil for the boot faults.
    var matcher: RequestMatcher? {
        switch self {
        case .neverReady, .panicAtBoot: return nil
        case .panic(let m, _), .agentDies(let m), .machineVanishes(let m), .neverAnswers(let m), .garbageBefore(let m, _), .answer(let m, _): return m
        }
    }
}

/// What a fake guest is: its memory and CMA areas, what its kernel printed, and how it misbehaves. The
/// files the real agent core reads (/proc/meminfo, /proc/vmstat, the CMA debugfs and sysfs folders) are
/// written from this model; `files` overrides any of them (paths relative to the guest root, e.g.
/// `debug/cma/reserved/base_pfn`).
public struct FakeGuest: Sendable {
    public var memTotalKiB: UInt64 = 4_020_000
    /// MemFree at boot.
    public var memFreeKiB: UInt64 = 3_800_000
    public var areas: [FakeArea]
    public var cmdline = "console=ttyS0 panic=-1"
    /// The console: the kernel's boot log, printed line by line as the machine starts.
    public var console: [String]
    /// /dev/kmsg records (`[ seconds] message` lines); nil: the console lines.
    public var kmsg: [String]?
    /// Extra /proc/vmstat counters.
    public var vmstat: [String: UInt64] = [:]
    /// Files written last, over the model's (impossible values, garbage).
    public var files: [String: String] = [:]
    public var faults: [FakeFault] = []
    /// What the guest's time-write tool reports for each alloc attempt (nanoseconds).
    public var allocNanoseconds: UInt64 = 2_500_000
    /// Answers a shell command (`/bin/sh -c <command>`) that is none of the pressure, release and timed-write
    /// scripts the model runs. nil (default, or when it returns nil): the real agent core runs it, which means
    /// on the test host: keep such commands harmless (echo, true, exit 3).
    public var shell: (@Sendable (String) -> ExecResult?)?

    public init(areas: [FakeArea], console: [String]) { self.areas = areas; self.console = console }

    /// A 4 GiB pc guest of 6.12 with `cma=1G@1-2G`: the real boot log lines (captured from QEMU) that cmalab's
    /// log parser reads, and a 1 GiB `reserved` area at 0x3fc00000.
    public static func cma1G() -> FakeGuest {
        var g = FakeGuest(areas: [FakeArea(basePFN: 0x3fc00, count: 262_144)], console: bootLog(cmaLine: "cma: Reserved 1024 MiB at 0x000000003fc00000 on node -1",
                                                                                           cmaReservedKiB: 1_048_576, cmdline: "cma=1G@1-2G"))
        g.cmdline += " cma=1G@1-2G"
        return g
    }

    /// A 2 GiB guest with a 64 MiB area (`cma=64M`), as Profiles/alloc-larger-than-area.yaml boots.
    public static func cma64M() -> FakeGuest {
        twoGiB(cmdline: "cma=64M", basePFN: 0x7b800, pages: 16_384, cmaLine: "cma: Reserved 64 MiB at 0x000000007b800000 on node -1")
    }

    /// A 2 GiB pc guest with a 512 MiB area (`cma=512M`), as the pressure profiles boot it (the base the oracle
    /// predicts and 6.12 prints).
    public static func cma512M() -> FakeGuest {
        twoGiB(cmdline: "cma=512M", basePFN: 0x5fc00, pages: 131_072, cmaLine: "cma: Reserved 512 MiB at 0x000000005fc00000 on node -1")
    }

    /// A 2 GiB guest with one area, `reserved`, of `pages` 4 KiB pages at `basePFN`, and its boot line.
    static func twoGiB(cmdline: String, basePFN: UInt64, pages: UInt64, cmaLine: String) -> FakeGuest {
        var g = FakeGuest(areas: [FakeArea(basePFN: basePFN, count: pages)],
                          console: bootLog(cmaLine: cmaLine, cmaReservedKiB: pages * 4, cmdline: cmdline))
        g.memTotalKiB = 2_010_000
        g.memFreeKiB = 1_900_000
        g.cmdline += " " + cmdline
        return g
    }

    /// Lines of a real 6.12 boot (console-6.12-pc-4G-cma-1G@1-2G.log) around a CMA reservation.
    public static func bootLog(cmaLine: String, cmaReservedKiB: UInt64, cmdline: String) -> [String] {
        [
            "[    0.000000] Linux version 6.12.117 (root@vm) (gcc (Debian 12.2.0-14+deb12u1) 12.2.0, GNU ld (GNU Binutils for Debian) 2.40) #1 SMP Wed Nov 25 07:52:12 UTC 2026",
            "[    0.000000] Command line: console=ttyS0 panic=-1 \(cmdline)",
            "[    0.000000] BIOS-provided physical RAM map:",
            "[    0.000000] BIOS-e820: [mem 0x0000000000000000-0x000000000009fbff] usable",
            "[    0.000000] BIOS-e820: [mem 0x0000000000100000-0x00000000bffdffff] usable",
            "[    0.000000] BIOS-e820: [mem 0x0000000100000000-0x000000013fffffff] usable",
            "[    0.023491] \(cmaLine)",
            "[    0.204839] Kernel command line: console=ttyS0 panic=-1 \(cmdline)",
            "[    0.955447] Memory: 2992628K/4193784K available (6144K kernel code, 855K rwdata, 852K rodata, 796K init, 380K bss, 151044K reserved, \(cmaReservedKiB)K cma-reserved)",
            "[    1.402311] Run /init as init process",
        ]
    }

    /// The panic a dying PID 1 causes.
    public static let initKilledPanic = [
        "[    2.101000] note: cmalab-agent[1] exited with irqs disabled",
        "[    2.101790] Kernel panic - not syncing: Attempted to kill init! exitcode=0x00000009",
        "[    2.102000] Kernel Offset: disabled",
    ]
}
