/// A real machine's boot log, as users have it: `dmesg` (with or without timestamps, or `dmesg -x`'s
/// `kern  :info  :` prefixes), `journalctl -k -b` (syslog prefixes), a serial console capture (CR, `<6>` levels),
/// or the seed's quoted form (`> [    0.000000] ...`). `HostLog.read` takes the kernel's messages out of any of
/// them and gives the facts a replay needs (HostFacts), and what is missing with how to capture it.

/// How a host log was written.
public enum HostLogFormat: String, Codable, Equatable, Sendable {
    case dmesg, journal, quoted, plain
}

/// What a replay knows about a real machine.
public struct HostFacts: Codable, Equatable, Sendable {
    public var format: HostLogFormat
    /// The kernel's messages the facts come from (count).
    public var messages: Int
    /// Release, command line, firmware map (`BIOS-e820:`), `Memory:`, SRAT nodes, `RAMDISK:`, every CMA line.
    public var boot: BootLogFacts
    /// The map the kernel used when the command line changed it (`user-defined physical RAM map:` and its
    /// `user: [mem ...]` lines, after `memmap=`); empty when the firmware's map stood.
    public var userMap: [MemoryRange] = []
    /// What a replay needs that the log lacks, each with how to capture it.
    public var missing: [String] = []
    /// Where each kind of fact came from when the input was a capture directory (`memory map: memmap/ ...`);
    /// empty for a plain log, where everything comes from the one file.
    public var sources: [String] = []
    /// The `Zone ranges:` block (an arm64 board's DMA zone limit is read from it); empty when the log has none.
    public var zones: [MemoryZone] = []

    /// The map the host's kernel worked from: the user-defined one when there is one, else the firmware's; on an
    /// arm64 board (BoardLog.swift), its RAM as the memory nodes give it.
    public var effectiveMap: [MemoryRange] {
        if architecture == .arm64 { return boardRAM }
        return userMap.isEmpty ? boot.e820 : userMap
    }

    public init(format: HostLogFormat, messages: Int, boot: BootLogFacts, userMap: [MemoryRange] = [], missing: [String] = [], sources: [String] = [], zones: [MemoryZone] = []) {
        self.format = format; self.messages = messages; self.boot = boot
        self.userMap = userMap; self.missing = missing; self.sources = sources; self.zones = zones
    }

    // Replay JSON written before a key existed still decodes: the later keys may be absent. `architecture` is
    // written for readers and derived again when read.
    enum CodingKeys: String, CodingKey {
        case format, messages, boot, userMap, missing, sources, zones, architecture
    }

    public func encode(to encoder: any Encoder) throws {
        var c = encoder.container(keyedBy: CodingKeys.self)
        try c.encode(format, forKey: .format)
        try c.encode(messages, forKey: .messages)
        try c.encode(boot, forKey: .boot)
        try c.encode(userMap, forKey: .userMap)
        try c.encode(missing, forKey: .missing)
        try c.encode(sources, forKey: .sources)
        try c.encode(zones, forKey: .zones)
        try c.encode(architecture, forKey: .architecture)
    }

    public init(from decoder: any Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        format = try c.decode(HostLogFormat.self, forKey: .format)
        messages = try c.decode(Int.self, forKey: .messages)
        boot = try c.decode(BootLogFacts.self, forKey: .boot)
        userMap = try c.decodeIfPresent([MemoryRange].self, forKey: .userMap) ?? []
        missing = try c.decodeIfPresent([String].self, forKey: .missing) ?? []
        sources = try c.decodeIfPresent([String].self, forKey: .sources) ?? []
        zones = try c.decodeIfPresent([MemoryZone].self, forKey: .zones) ?? []
    }
}

public enum HostLog {
    /// `dmesg -x`'s facility and level words.
    static let facilities: Set<Substring> = ["kern", "user", "mail", "daemon", "auth", "syslog", "lpr", "news", "uucp", "cron", "authpriv", "ftp",
                                            "local0", "local1", "local2", "local3", "local4", "local5", "local6", "local7"]
    static let levels: Set<Substring> = ["emerg", "alert", "crit", "err", "warn", "notice", "info", "debug"]

    /// The messages of a log, each without its syslog or journal prefix, quoting, level and printk timestamp.
    public static func messages(_ text: String) -> (HostLogFormat, [String]) {
        var counts: [HostLogFormat: Int] = [:]
        var out: [String] = []
        for raw in text.split(omittingEmptySubsequences: true, whereSeparator: { $0 == "\n" || $0 == "\r" || $0 == "\r\n" }) {
            var line = Substring(raw)
            var format = HostLogFormat.plain
            if line.hasPrefix("> ") || line == ">" {
                line = line.dropFirst(min(2, line.count)); format = .quoted
            }
            // journalctl: `Dec 01 10:00:00 host kernel: ...` or an ISO timestamp, then `kernel: `.
            if let r = line.range(of: " kernel: "), line[..<r.lowerBound].split(separator: " ").count <= 4,
               line.first.map({ $0.isLetter || $0.isNumber }) == true {
                line = line[r.upperBound...]; format = .journal
            } else if line.hasPrefix("-- ") {
                continue   // journalctl's own lines (`-- Boot ... --`, `-- No entries --`)
            }
            // dmesg -x: `kern  :info  : ` (facility, level, each padded with spaces).
            if let c1 = line.firstIndex(of: ":"), Self.facilities.contains(line[..<c1].trimmingSpaces) {
                let afterFacility = line[line.index(after: c1)...]
                if let c2 = afterFacility.firstIndex(of: ":"), Self.levels.contains(afterFacility[..<c2].trimmingSpaces),
                   afterFacility[afterFacility.index(after: c2)...].hasPrefix(" ") {
                    line = afterFacility[afterFacility.index(c2, offsetBy: 2)...]
                    if format == .plain { format = .dmesg }
                }
            }
            // Serial consoles and `dmesg -r`: a `<6>` level.
            if line.hasPrefix("<"), let close = line.firstIndex(of: ">"), line.distance(from: line.startIndex, to: close) <= 4,
               line[line.index(after: line.startIndex)..<close].allSatisfy(\.isNumber) {
                line = line[line.index(after: close)...]
            }
            if line.hasPrefix("[") {
                let stripped = KernelLog.stripTimestamp(String(line))
                if stripped.count != line.count { line = Substring(stripped); if format == .plain { format = .dmesg } }
            }
            let message = String(line)
            if message.isEmpty { continue }
            counts[format, default: 0] += 1
            out.append(message)
        }
        let format = counts.max { $0.value < $1.value }?.key ?? .plain
        return (format, out)
    }

    /// The facts of a host log, and what is missing.
    public static func read(_ text: String) -> HostFacts {
        let (format, messages) = Self.messages(text)
        var facts = HostFacts(format: format, messages: messages.count, boot: KernelLogParser.facts(messages: messages))
        var inUserMap = false
        for m in messages {
            if m.hasPrefix("user-defined physical RAM map:") { inUserMap = true; facts.userMap = []; continue }
            if inUserMap, m.hasPrefix("user: [mem ") {
                if let r = KernelLogParser.memRange(m.dropFirst("user: ".count)) { facts.userMap.append(r) }
                continue
            }
            inUserMap = false
        }
        facts.zones = zones(messages)
        facts.missing = missing(facts, in: nil)
        return facts
    }

    /// What the facts lack for a replay, each with how to capture it. `bundle` names the log's file when it came in a
    /// capture directory (`dmesg.txt`): the directory's other files were used already, so the advice differs.
    static func missing(_ facts: HostFacts, in bundle: String?) -> [String] {
        if facts.architecture == .arm64 { return boardMissing(facts) }
        guard let log = bundle else {
            guard facts.messages > 0 else {
                return ["the file holds no kernel messages: save `dmesg` (or `journalctl -k -b`) of the boot to replay, or run Scripts/capture-host on the machine"]
            }
            var out: [String] = []
            if facts.boot.kernelRelease == nil {
                out.append("no `Linux version` line (the kernel release): the log does not start at the boot; save `journalctl -k -b` or `dmesg` right after boot, or run Scripts/capture-host")
            }
            if facts.boot.e820.isEmpty {
                out.append("no `BIOS-e820:` lines (the firmware's memory map, printed first at boot, so lost once the ring buffer wraps): save `journalctl -k -b` or run Scripts/capture-host, which also saves /sys/firmware/memmap; without it the twin is planned from the `Memory:` line and says so")
            }
            if facts.boot.commandLine == nil {
                out.append("no `Command line:` line: the host's cma= parameters are unknown; pass them with --try, or save /proc/cmdline (Scripts/capture-host)")
            }
            return out
        }
        var out: [String] = []
        if facts.messages == 0 {
            out.append("\(log) holds no kernel messages (reading the kernel log needs root where kernel.dmesg_restrict=1): run Scripts/capture-host as root, or pass a saved `journalctl -k -b` instead")
        } else if facts.boot.kernelRelease == nil {
            out.append("no `Linux version` line (the kernel release) in \(log): the boot's first lines had left the ring buffer and the journal did not have them; capture soon after a boot to keep them")
        }
        if facts.boot.e820.isEmpty {
            out.append("no `BIOS-e820:` lines in \(log) and no usable memmap/ (/sys/firmware/memmap, absent on kernels without CONFIG_FIRMWARE_MEMMAP): without a map the twin is planned from the `Memory:` line and says so")
        }
        if facts.boot.commandLine == nil {
            out.append("no `Command line:` line in \(log) and no cmdline.txt: the host's cma= parameters are unknown; pass them with --try")
        }
        return out
    }
}

private extension Substring {
    /// Without leading and trailing spaces.
    var trimmingSpaces: Substring {
        var s = self
        while s.first == " " { s = s.dropFirst() }
        while s.last == " " { s = s.dropLast() }
        return s
    }
}
