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

    /// The map the host's kernel worked from: the user-defined one when there is one, else the firmware's.
    public var effectiveMap: [MemoryRange] { userMap.isEmpty ? boot.e820 : userMap }
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
        if messages.isEmpty {
            facts.missing.append("the file holds no kernel messages: save `dmesg` (or `journalctl -k -b`) of the boot to replay, or run Scripts/capture-host on the machine")
            return facts
        }
        if facts.boot.kernelRelease == nil {
            facts.missing.append("no `Linux version` line (the kernel release): the log does not start at the boot; save `journalctl -k -b` or `dmesg` right after boot, or run Scripts/capture-host")
        }
        if facts.boot.e820.isEmpty {
            facts.missing.append("no `BIOS-e820:` lines (the firmware's memory map, printed first at boot, so lost once the ring buffer wraps): save `journalctl -k -b` or run Scripts/capture-host, which also saves /sys/firmware/memmap; without it the twin is planned from the `Memory:` line and says so")
        }
        if facts.boot.commandLine == nil {
            facts.missing.append("no `Command line:` line: the host's cma= parameters are unknown; pass them with --try, or save /proc/cmdline (Scripts/capture-host)")
        }
        return facts
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
