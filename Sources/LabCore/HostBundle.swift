/// A capture directory written by Scripts/capture-host, as text: `dmesg.txt`, `memmap/<n>/{start,end,type}` (a copy
/// of /sys/firmware/memmap), `cmdline.txt` (/proc/cmdline) and `config` (the kernel's .config). `HostLog.read(bundle:)`
/// turns it into HostFacts: the log's facts first, and what the log lost when the ring buffer wrapped (the
/// `BIOS-e820:` lines, the `Command line:` line) from the other files. Pure: the caller reads the files
/// (Sources/cmalab/HostBundleReader.swift).

/// One entry of /sys/firmware/memmap as capture-host copies it: the texts of `memmap/<name>/start`, `end` and
/// `type`, nil when a file is absent.
public struct FirmwareMapEntry: Equatable, Sendable {
    /// The entry's directory name (`0`, `1`, ...).
    public var name: String
    public var start: String?
    public var end: String?
    public var type: String?

    public init(name: String, start: String?, end: String?, type: String?) {
        self.name = name; self.start = start; self.end = end; self.type = type
    }
}

/// What a capture directory holds; every file is optional here (the reader insists on dmesg.txt).
public struct HostBundle: Equatable, Sendable {
    public var dmesg: String?
    public var memmap: [FirmwareMapEntry]
    public var cmdline: String?
    /// The host kernel's .config. Kept for callers that predict from it; the facts only say it was there.
    public var config: String?

    public init(dmesg: String? = nil, memmap: [FirmwareMapEntry] = [], cmdline: String? = nil, config: String? = nil) {
        self.dmesg = dmesg; self.memmap = memmap; self.cmdline = cmdline; self.config = config
    }

    /// The names the facts and errors use for the bundle's files.
    public static let dmesgFile = "dmesg.txt", memmapDirectory = "memmap", cmdlineFile = "cmdline.txt", configFile = "config"
}

/// A memmap/ entry that cannot be part of a map; each case names the file at fault.
public enum HostBundleError: Error, Equatable, CustomStringConvertible {
    /// `memmap/3/start` is absent or empty.
    case emptyFile(String)
    /// `memmap/3/start` does not hold a `0x`-prefixed hex number of at most 64 bits (its text, cut short).
    case notAnAddress(file: String, text: String)
    /// `memmap/3`: its end (inclusive) comes before its start.
    case endBeforeStart(entry: String, start: UInt64, end: UInt64)

    public var description: String {
        switch self {
        case .emptyFile(let f): return "\(f) is missing or empty: a memmap entry needs start, end and type"
        case .notAnAddress(let f, let t): return "\(f) holds \(t.debugDescription), not an address like 0x100000"
        case .endBeforeStart(let e, let s, let x): return "\(e) ends at \(hex(x)), before it starts at \(hex(s))"
        }
    }
}

extension HostLog {
    /// /sys/firmware/memmap's type names (the kernel's `e820_type_to_string`) as the kernel prints the same types in
    /// its `BIOS-e820:` lines (`e820_print_type`), the words KernelLogParser keeps and TwinPlan reads.
    public static let firmwareMapTypes: [String: String] = [
        "System RAM": "usable",
        "Reserved": "reserved",
        "ACPI Tables": "ACPI data",
        "ACPI Non-volatile Storage": "ACPI NVS",
        "Unusable memory": "unusable",
        "Persistent Memory (legacy)": "persistent (type 12)",
        "Persistent Memory": "persistent (type 7)",
        "Soft Reserved": "soft reserved",
    ]

    /// The facts of a capture directory: its log's, with the firmware map from memmap/ where the log has no
    /// `BIOS-e820:` lines and the command line from cmdline.txt where it has no `Command line:` line. `missing` names
    /// only what the whole directory lacks, and `sources` says which file each kind of fact came from. A memmap/
    /// entry that is not a range (an address that does not parse, an end before its start) is refused, naming its
    /// file; an unused memmap/ (the log has its map) is not read.
    public static func read(bundle: HostBundle) throws(HostBundleError) -> HostFacts {
        let log = HostBundle.dmesgFile
        var facts = read(bundle.dmesg ?? "")
        var sources: [String] = []
        if bundle.dmesg != nil {
            sources.append("kernel messages: \(log) (\(facts.messages), \(facts.format.rawValue) format)")
        }

        if !facts.boot.e820.isEmpty {
            sources.append("memory map: \(log) (\(facts.boot.e820.count) `BIOS-e820:` lines)")
        } else if !bundle.memmap.isEmpty, facts.architecture != .arm64 {
            facts.boot.e820 = try firmwareMap(bundle.memmap)
            sources.append("memory map: \(HostBundle.memmapDirectory)/ (\(facts.boot.e820.count) entries of /sys/firmware/memmap; \(log) has no `BIOS-e820:` lines)")
        }
        if !facts.userMap.isEmpty {
            sources.append("user-defined map: \(log) (\(facts.userMap.count) `user:` lines, after memmap=)")
        }

        if facts.boot.commandLine != nil {
            sources.append("command line: \(log)")
        } else if let line = bundle.cmdline.map(commandLine), !line.isEmpty {
            facts.boot.commandLine = line
            sources.append("command line: \(HostBundle.cmdlineFile) (/proc/cmdline; \(log) has no `Command line:` line)")
        }

        if bundle.config != nil {
            sources.append("kernel config: \(HostBundle.configFile) (kept, not used by the replay yet)")
        }
        facts.sources = sources
        facts.missing = missing(facts, in: log)
        return facts
    }

    /// The memmap/ entries as e820 ranges, sorted by start (the directory's numbering is the firmware's order, which
    /// need not be the addresses').
    static func firmwareMap(_ entries: [FirmwareMapEntry]) throws(HostBundleError) -> [MemoryRange] {
        var map: [MemoryRange] = []
        map.reserveCapacity(entries.count)
        for e in entries {
            let dir = "\(HostBundle.memmapDirectory)/\(e.name)"
            let start = try address(e.start, file: "\(dir)/start")
            let end = try address(e.end, file: "\(dir)/end")
            guard end >= start else { throw .endBeforeStart(entry: dir, start: start, end: end) }
            let name = trimmed(e.type ?? "")
            guard !name.isEmpty else { throw .emptyFile("\(dir)/type") }
            // A type the table does not know (`Unknown E820 type`) stays as the kernel named it: to the twin it is
            // memory that is not usable, as any word but `usable` is.
            map.append(MemoryRange(start: start, end: end, type: firmwareMapTypes[name] ?? name))
        }
        return map.enumerated().sorted { ($0.element.start, $0.offset) < ($1.element.start, $1.offset) }.map(\.element)
    }

    /// `0x100000` (sysfs writes `0x%llx` and a newline): one to sixteen hex digits after `0x`.
    static func address(_ text: String?, file: String) throws(HostBundleError) -> UInt64 {
        let t = trimmed(text ?? "")
        guard !t.isEmpty else { throw .emptyFile(file) }
        let digits = t.utf8.dropFirst(2)
        guard t.hasPrefix("0x") || t.hasPrefix("0X"), (1...16).contains(digits.count),
              digits.allSatisfy({ ($0 >= 0x30 && $0 <= 0x39) || ($0 >= 0x41 && $0 <= 0x46) || ($0 >= 0x61 && $0 <= 0x66) }),
              let value = UInt64(String(decoding: digits, as: UTF8.self), radix: 16)
        else { throw .notAnAddress(file: file, text: String(t.prefix(40))) }
        return value
    }

    /// /proc/cmdline's text as one line: its trailing newline gone, any other line break a space.
    static func commandLine(_ text: String) -> String {
        trimmed(String(text.map { $0.isNewline ? " " : $0 }))
    }

    static func trimmed(_ text: String) -> String {
        var s = Substring(text)
        while let c = s.first, c.isWhitespace { s = s.dropFirst() }
        while let c = s.last, c.isWhitespace { s = s.dropLast() }
        return String(s)
    }
}

extension HostFacts {
    /// Where the effective map came from, for people: `BIOS-e820`, `user-defined, from memmap=`, or the capture's
    /// copy of /sys/firmware/memmap.
    public var mapSource: String {
        if architecture == .arm64 { return "the board's memory nodes, `Early memory node ranges`" }
        if !userMap.isEmpty { return "user-defined, from memmap=" }
        if sources.contains(where: { $0.hasPrefix("memory map: \(HostBundle.memmapDirectory)/") }) { return "/sys/firmware/memmap, from the capture's memmap/" }
        return "BIOS-e820"
    }
}
