import Glibc
import LabProtocol

/// Answers requests. Holds no state: every request reads the system afresh.
public struct AgentHandler: Sendable {
    public static let agentVersion = "0.1.0"

    public var paths: AgentPaths

    public init(paths: AgentPaths = AgentPaths()) {
        self.paths = paths
    }

    /// Never fails: errors become `.failure(errno:message:)`. Power actions only
    /// answer `.done`; carrying them out is the server's job, after the answer is sent.
    public func handle(_ request: AgentRequest) -> AgentResponse {
        do {
            return try respond(to: request)
        } catch {
            return failure(error)
        }
    }

    private func respond(to request: AgentRequest) throws(SystemError) -> AgentResponse {
        switch request {
        case .uname:
            return .uname(Self.uname())
        case .meminfo:
            return .meminfo(Meminfo.parse(try readText(joinPath(paths.proc, "meminfo"))))
        case .cmaAreas:
            return .cmaAreas(try CMA.areas(paths: paths))
        case .cmaAreaCounters:
            return .cmaAreas(try CMA.areas(paths: paths, bitmap: false))
        case let .cmaAlloc(area, pages):
            return CMA.write(pages: pages, area: area, file: "alloc", paths: paths)
        case let .cmaFree(area, pages):
            return CMA.write(pages: pages, area: area, file: "free", paths: paths)
        case let .readFile(path, maxBytes):
            let (data, truncated) = try readFile(path, limit: min(Int(maxBytes), AgentLimits.readFileBytes))
            return .file(data: data, truncated: truncated)
        case let .writeFile(path, data):
            let fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0o644)
            guard fd >= 0 else { throw SystemError("open \(path)") }
            defer { close(fd) }
            try writeAll(fd, data, path)
            return .done
        case let .listDirectory(path):
            return .directory(try listDirectory(path))
        case let .kmsg(afterSequence, maxRecords):
            return .kmsg(try Kmsg.read(path: paths.kmsg, afterSequence: afterSequence, maxRecords: maxRecords))
        case let .exec(execRequest):
            return .exec(try ProcessRunner.run(execRequest))
        case .kernelConfig:
            return try kernelConfig()
        case .vmstat:
            return .vmstat(Self.parseCounters(try readText(joinPath(paths.proc, "vmstat"))))
        case .poweroff, .reboot:
            return .done
        }
    }

    /// /proc/config.gz, decompressed by busybox zcat.
    private func kernelConfig() throws(SystemError) -> AgentResponse {
        let path = joinPath(paths.proc, "config.gz")
        guard access(path, R_OK) == 0 else { throw SystemError("open \(path)") }
        let result = try ProcessRunner.run(
            ExecRequest(argv: [paths.busybox, "zcat", path], timeoutMilliseconds: 30_000,
                        maxOutputBytes: UInt32(AgentLimits.kernelConfigBytes)),
            outputCap: AgentLimits.kernelConfigBytes)
        switch result.termination {
        case .exited(0) where !result.stdoutTruncated:
            return .kernelConfig(text: String(decoding: result.stdout, as: UTF8.self))
        case .exited(0):
            return .failure(errno: EFBIG, message: "\(path) decompresses to more than \(AgentLimits.kernelConfigBytes) bytes")
        case let .spawnFailed(code):
            throw SystemError("spawn \(paths.busybox)", errno: code)
        default:
            let stderr = String(decoding: result.stderr, as: UTF8.self).trimmed
            return .failure(errno: EIO, message: "zcat \(path) failed (\(result.termination)): \(stderr)")
        }
    }

    /// The hello sent when serving starts.
    public func hello(channel: String) -> AgentHello {
        let cmdline = (try? readText(joinPath(paths.proc, "cmdline")))?.trimmed ?? ""
        // /proc/uptime: "<seconds since boot> <idle seconds>"
        let seconds = (try? readText(joinPath(paths.proc, "uptime")))?
            .split(separator: " ").first.flatMap { Double($0) } ?? 0
        let milliseconds = seconds.isFinite && seconds > 0 && seconds < 1e12 ? UInt64(seconds * 1000) : 0
        return AgentHello(
            agentVersion: Self.agentVersion, uname: Self.uname(), cmdline: cmdline, channel: channel,
            uptimeMilliseconds: milliseconds)
    }

    /// uname(2).
    public static func uname() -> Uname {
        var info = utsname()
        _ = Glibc.uname(&info)
        return Uname(
            sysname: withUnsafeBytes(of: info.sysname) { cString($0) },
            nodename: withUnsafeBytes(of: info.nodename) { cString($0) },
            release: withUnsafeBytes(of: info.release) { cString($0) },
            version: withUnsafeBytes(of: info.version) { cString($0) },
            machine: withUnsafeBytes(of: info.machine) { cString($0) })
    }

    /// "name value" lines as in /proc/vmstat; malformed lines are skipped.
    public static func parseCounters(_ text: String) -> [Counter] {
        text.split(whereSeparator: { $0.isNewline }).compactMap { line in
            let words = line.split(whereSeparator: { $0.isWhitespace })
            guard words.count == 2, let value = UInt64(words[1]) else { return nil }
            return Counter(name: String(words[0]), value: value)
        }
    }
}
