import Foundation
import Glibc
import LabCore
import LabProtocol

/// The small in-memory kernel behind a fake guest: CMA areas whose `used` changes with debugfs alloc and
/// free writes, memory that pressure scripts hold (lending CMA pages) and release, vmstat counters and the
/// kernel log. After each change it rewrites the files the real agent core reads (AgentPaths under `root`).
/// Used on the fake guest's thread only.
final class FakeKernel {
    let root: String
    private(set) var guest: FakeGuest
    /// Bytes held by pressure scripts, and the CMA pages lent to them (pinned: they cannot be migrated).
    private var heldBytes: UInt64 = 0
    private var lentPages: UInt64 = 0
    private var lentPinned = false
    private var counters: [String: UInt64] = ["cma_alloc_success": 0, "cma_alloc_fail": 0, "pgmigrate_success": 0, "compact_stall": 0]
    private var log: [KmsgRecord] = []

    init(root: String, guest: FakeGuest) throws(FakeSetupError) {
        self.root = root
        self.guest = guest
        log = (guest.kmsg ?? guest.console).enumerated().map { Self.record(sequence: UInt64($0.offset), line: $0.element) }
        try write("proc/cmdline", guest.cmdline + "\n")
        try write("proc/uptime", "1.45 1.20\n")
        try sync()
    }

    // MARK: - Requests the kernel answers itself

    /// The answer to `request` when it is the kernel's business (debugfs writes, the shell scripts the model
    /// runs, /dev/kmsg); nil: the real agent core answers it.
    func answer(_ request: AgentRequest) throws(FakeSetupError) -> AgentResponse? {
        switch request {
        case .cmaAlloc(let area, let pages):
            let e = try alloc(area: area, pages: pages)
            return e == 0 ? .done : .failure(errno: e, message: "write /sys/kernel/debug/cma/\(area)/alloc: \(String(cString: strerror(e)))")
        case .cmaFree(let area, let pages):
            try free(area: area, pages: pages)
            return .done
        case .kmsg(let after, let max):
            let records = log.filter { after == nil || $0.sequence > after! }.prefix(Int(max))
            return .kmsg(KmsgBatch(records: Array(records), nextSequence: (records.last?.sequence ?? after ?? 0) + 1, missedRecords: 0))
        case .exec(let e) where e.argv.count == 3 && e.argv[0] == "/bin/sh" && e.argv[1] == "-c":
            return try shell(e.argv[2]).map { .exec($0) } ?? guest.shell?(e.argv[2]).map { .exec($0) }
        default:
            return nil
        }
    }

    /// The pressure, release and timed-write scripts ProfileRunner sends (LabCore Steps), run on the model.
    private func shell(_ command: String) throws(FakeSetupError) -> ExecResult? {
        let words = command.split(whereSeparator: { $0 == " " || $0 == "\n" }).map(String.init)
        if command.hasPrefix("/sbin/cmalab-agent timed-write "), words.count == 4 {
            let parts = words[2].split(separator: "/")
            guard parts.count >= 2, let pages = UInt64(words[3]) else { return Self.output("timed-write: bad arguments\n", status: 2) }
            let e = try alloc(area: String(parts[parts.count - 2]), pages: pages)
            return Self.output("ns=\(guest.allocNanoseconds) errno=\(e)\n")
        }
        if command.contains("/tmp/cmalab-pressure-"), command.contains("hold-memory") || command.contains("dd if=/dev/zero") {
            return try pressure(words: words, pinned: command.contains(" pin "))
        }
        if command == ReleaseStep.guestScript {
            heldBytes = 0; lentPages = 0; lentPinned = false
            try sync()
            return Self.output("")
        }
        return nil
    }

    /// Holds the anonymous bytes (`hold-memory <n>`) and file MiB (`dd ... count=<n>`) of a pressure script.
    /// Half of what is held comes from free CMA pages (the kernel lends CMA to movable allocations).
    private func pressure(words: [String], pinned: Bool) throws(FakeSetupError) -> ExecResult {
        var anon: UInt64 = 0, file: UInt64 = 0
        if let i = words.firstIndex(of: "hold-memory"), i + 1 < words.count { anon = UInt64(words[i + 1]) ?? 0 }
        if let c = words.first(where: { $0.hasPrefix("count=") }) { file = (UInt64(c.dropFirst(6)) ?? 0) << 20 }
        let wanted = anon + file
        guard wanted / 1024 < memFreeKiB else { return Self.output("hold-memory: mmap \(anon) bytes: Cannot allocate memory\n", status: 1) }
        heldBytes += wanted
        lentPages = min(cmaFreePages, lentPages + wanted / 4096 / 2)
        lentPinned = lentPinned || pinned
        try sync()
        return Self.output(anon > 0 ? "held \(anon)\n" : "")
    }

    // MARK: - The CMA model

    private func alloc(area name: String, pages: UInt64) throws(FakeSetupError) -> Int32 {
        guard let i = guest.areas.firstIndex(where: { $0.name == name }) else { return ENOENT }
        let a = guest.areas[i]
        let free = a.count >= a.used ? a.count - a.used : 0
        // Lent pages move out of the area first; pinned ones cannot.
        let movable = lentPinned ? free - min(free, lentPages) : free
        guard pages <= movable else {
            // Pages pinned in the area make the range busy (-EBUSY); an area too small is -ENOMEM.
            let e = pages <= free ? EBUSY : ENOMEM
            counters["cma_alloc_fail", default: 0] += 1
            append("cma: cma_alloc: \(name): alloc failed, req-size: \(pages) pages, ret: -\(e)")
            try sync()
            return e
        }
        let migrated = min(lentPages, pages)
        lentPages -= migrated
        counters["pgmigrate_success", default: 0] += migrated
        counters["cma_alloc_success", default: 0] += 1
        guest.areas[i].used += pages
        try sync()
        return 0
    }

    private func free(area name: String, pages: UInt64) throws(FakeSetupError) {
        guard let i = guest.areas.firstIndex(where: { $0.name == name }) else { return }
        guest.areas[i].used -= min(guest.areas[i].used, pages)
        try sync()
    }

    private var cmaTotalPages: UInt64 { guest.areas.reduce(0) { $0 &+ $1.count } }
    private var cmaFreePages: UInt64 {
        let busy = guest.areas.reduce(0) { $0 &+ $1.used } &+ lentPages
        return cmaTotalPages > busy ? cmaTotalPages - busy : 0
    }
    private var memFreeKiB: UInt64 {
        let used = heldBytes / 1024 + guest.areas.reduce(0) { $0 &+ $1.used } &* 4
        return guest.memFreeKiB > used ? guest.memFreeKiB - used : 0
    }

    private func append(_ message: String) {
        let seq = (log.last?.sequence ?? 0) + 1
        log.append(KmsgRecord(sequence: seq, priority: 4, facility: 0, timestampMicroseconds: 5_000_000 + seq, message: message))
    }

    /// `[ 1.234567] text` as a /dev/kmsg record (seconds 0 when there is no timestamp).
    static func record(sequence: UInt64, line: String) -> KmsgRecord {
        let seconds = KernelLog.timestamp(line) ?? 0
        return KmsgRecord(sequence: sequence, priority: 6, facility: 0, timestampMicroseconds: UInt64(seconds * 1_000_000),
                          message: KernelLog.stripTimestamp(line))
    }

    static func output(_ text: String, status: Int32 = 0) -> ExecResult {
        ExecResult(termination: .exited(status), stdout: Array(text.utf8), durationNanoseconds: 1_000_000)
    }

    // MARK: - Files

    /// Rewrites meminfo, vmstat and every area's debugfs and sysfs files from the model, then `guest.files`.
    func sync() throws(FakeSetupError) {
        try write("proc/meminfo", """
            MemTotal:       \(guest.memTotalKiB) kB
            MemFree:        \(memFreeKiB) kB
            MemAvailable:   \(memFreeKiB) kB
            CmaTotal:       \(cmaTotalPages &* 4) kB
            CmaFree:        \(cmaFreePages &* 4) kB

            """)
        var vm = counters.merging(guest.vmstat) { _, b in b }
        vm["nr_free_cma"] = cmaFreePages
        vm["nr_free_pages"] = memFreeKiB / 4
        try write("proc/vmstat", vm.keys.sorted().map { "\($0) \(vm[$0]!)\n" }.joined())
        for a in guest.areas {
            let d = "debug/cma/\(a.name)/"
            for (file, value) in [("base_pfn", a.basePFN), ("count", a.count), ("used", a.used), ("order_per_bit", 0),
                                  ("maxchunk", a.count >= a.used ? a.count - a.used : 0)] {
                try write(d + file, "\(value)\n")
            }
            try write("sys/kernel/mm/cma/\(a.name)/alloc_pages_success", "\(a.used)\n")
            try write("sys/kernel/mm/cma/\(a.name)/total_pages", "\(a.count)\n")
        }
        for (path, text) in guest.files { try write(path, text) }
    }

    private func write(_ relative: String, _ text: String) throws(FakeSetupError) {
        let path = root + "/" + relative
        do {
            try FileManager.default.createDirectory(atPath: (path as NSString).deletingLastPathComponent, withIntermediateDirectories: true)
            try Data(text.utf8).write(to: URL(fileURLWithPath: path))
        } catch {
            throw FakeSetupError("cannot write \(path): \(error)")
        }
    }
}

/// A fake guest or lab could not be set up (a test-host problem, never a guest behaviour).
public struct FakeSetupError: Error, CustomStringConvertible, Sendable {
    public var description: String
    public init(_ description: String) { self.description = description }
}
