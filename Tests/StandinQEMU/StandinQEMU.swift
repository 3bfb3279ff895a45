// cmalab-standin-qemu: a stand-in for qemu-system-x86_64 that the hostile-guest tests hand cmalab through
// `CMALAB_QEMU`. It reads the argv cmalab gives QEMU, prints a few console lines on stdout (QEMU's stdio
// console), serves the agent channel's Unix socket (`-chardev socket,id=agent,path=...,server=on`) and speaks
// the real frame protocol on it: a well-behaved agent, or a hostile one, as the environment says.
//
//   CMALAB_STANDIN        normal (default) | huge-values | unsolicited-responses | event-flood |
//                         checksum-bomb | garbage | silence
//   CMALAB_STANDIN_COUNT  how many flood frames, bomb rounds or garbage chunks (default: no end)
//   CMALAB_STANDIN_SIZE   bytes per frame payload (default 1 MiB), per bomb round (32 MiB), per chunk (64 KiB)
//   CMALAB_STANDIN_HEADERS  bad headers at the start of each bomb round (default 300, 6000 bytes)
//   CMALAB_STANDIN_THEN   after a finite flood: ready (announce and serve, default) or silence
//   CMALAB_STANDIN_VALUE  the number huge-values reports for base_pfn, count, used, maxchunk, CmaTotal
//                         (default 18446744073709551615); a command it "ran" was killed by signal 2147483647
//   CMALAB_STANDIN_LOG    a file it appends what it did to: `start <unix time>`, `pid`, `socket`, `flooding`,
//                         `exit <why> sent <bytes>`
//
// It never runs a command, reads or writes a host file for the host (exec, readFile, writeFile and
// listDirectory get canned answers), keeps its fake /proc and debugfs inside the run's socket directory
// (which cmalab removes), and exits when its peer hangs up, when its parent is gone, or on SIGTERM/SIGINT/
// SIGHUP, removing its socket and that tree. It is for tests only and belongs to no product.

import Foundation
import Glibc
import Synchronization
import AgentCore
import LabProtocol

/// The signal that asked the stand-in to stop, or 0.
let stopSignal = Atomic<Int32>(0)

@main
struct StandinQEMU {
    static func main() {
        let standin = Standin(arguments: CommandLine.arguments, environment: ProcessInfo.processInfo.environment)
        standin.run()
    }
}

/// How the guest misbehaves.
enum Mode: String {
    case normal, silence
    case hugeValues = "huge-values"
    case unsolicitedResponses = "unsolicited-responses"
    case eventFlood = "event-flood"
    case checksumBomb = "checksum-bomb"
    case garbage
}

final class Standin {
    let arguments: [String]
    let mode: Mode
    let count: Int?
    let size: Int?
    let bombHeaders: Int
    let silentAfterFlood: Bool
    let hugeValue: UInt64
    let logPath: String?
    let parent = getppid()
    let started = Date()

    var socketPath: String?
    var commandLine = ""
    var listenFD: Int32 = -1
    var fd: Int32 = -1
    /// The fake guest tree (proc, debugfs, sysfs) this stand-in made; removed at exit.
    var guestRoot: String?
    var decoder = FrameDecoder(maxPayload: 16 << 20)
    var requests: [Frame] = []
    var sentBytes: UInt64 = 0
    var buffer = [UInt8](repeating: 0, count: 64 << 10)

    init(arguments: [String], environment: [String: String]) {
        self.arguments = arguments
        let modeName = environment["CMALAB_STANDIN"] ?? "normal"
        guard let mode = Mode(rawValue: modeName) else {
            FileHandle.standardError.write(Data("cmalab-standin-qemu: unknown CMALAB_STANDIN=\(modeName)\n".utf8))
            exit(2)
        }
        self.mode = mode
        count = environment["CMALAB_STANDIN_COUNT"].flatMap { Int($0) }
        size = environment["CMALAB_STANDIN_SIZE"].flatMap { Int($0) }.map { max(0, $0) }
        bombHeaders = environment["CMALAB_STANDIN_HEADERS"].flatMap { Int($0) }.map { max(1, $0) } ?? 300
        silentAfterFlood = environment["CMALAB_STANDIN_THEN"] == "silence"
        hugeValue = environment["CMALAB_STANDIN_VALUE"].flatMap { UInt64($0) } ?? UInt64.max
        logPath = environment["CMALAB_STANDIN_LOG"]
    }

    // MARK: - Start and end

    func run() -> Never {
        installSignalHandlers()
        log(String(format: "start %.6f", started.timeIntervalSince1970))
        log("pid \(getpid())")
        parseArguments()
        if let socketPath {
            log("socket \(socketPath)")
            listenFD = listen(at: socketPath)
        }
        console("[    0.000000] Linux version 6.12.0-standin (cmalab-standin-qemu) #1 SMP PREEMPT_DYNAMIC")
        console("[    0.000000] Command line: \(commandLine)")
        console("[    0.000000] cma: Reserved 64 MiB at 0x000000003c000000 on node -1")
        console("[    0.412345] Run /init as init process")
        guard listenFD >= 0 else { idle("no agent socket in argv") }
        accept()
        switch mode {
        case .normal: announce(); serve()
        case .hugeValues: announce(); serve()
        case .silence: idle("silent guest")
        case .unsolicitedResponses:
            announce()
            let first = nextRequest()
            log("flooding")
            floodResponses()
            answer(first)
            serve()
        case .eventFlood:
            log("flooding")
            floodEvents()
            afterFlood()
        case .checksumBomb:
            log("flooding")
            checksumBombs()
            afterFlood()
        case .garbage:
            log("flooding")
            garbage()
            afterFlood()
        }
    }

    func afterFlood() -> Never {
        if silentAfterFlood { idle("silent after the flood") }
        announce()
        serve()
    }

    /// Ends the process, leaving nothing of its own behind.
    func finish(_ why: String, status: Int32 = 0) -> Never {
        log("exit \(why) sent \(sentBytes)")
        if fd >= 0 { close(fd) }
        if listenFD >= 0 { close(listenFD) }
        if let socketPath { unlink(socketPath) }
        if let guestRoot { try? FileManager.default.removeItem(atPath: guestRoot) }
        exit(status)
    }

    /// Stops when asked to: a signal, or the parent (cmalab) gone.
    func checkStop() {
        let s = stopSignal.load(ordering: .relaxed)
        if s != 0 { finish("signal \(s)") }
        if getppid() != parent { finish("parent gone") }
    }

    func installSignalHandlers() {
        for sig in [SIGTERM, SIGINT, SIGHUP] {
            var action = sigaction()
            action.__sigaction_handler.sa_handler = { sig in stopSignal.store(sig, ordering: .relaxed) }
            sigemptyset(&action.sa_mask)
            action.sa_flags = 0
            sigaction(sig, &action, nil)
        }
        signal(SIGPIPE, SIG_IGN)
    }

    func parseArguments() {
        var i = 1
        while i + 1 < arguments.count {
            let (flag, value) = (arguments[i], arguments[i + 1])
            if flag == "-append" { commandLine = value }
            if flag == "-chardev", value.hasPrefix("socket,") {
                socketPath = value.split(separator: ",").first { $0.hasPrefix("path=") }.map { String($0.dropFirst(5)) }
            }
            i += 1
        }
    }

    func log(_ line: String) {
        guard let logPath else { return }
        let fd = open(logPath, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0o644)
        guard fd >= 0 else { return }
        let bytes = Array((line + "\n").utf8)
        _ = bytes.withUnsafeBytes { write(fd, $0.baseAddress, $0.count) }
        close(fd)
    }

    func console(_ line: String) {
        let bytes = Array((line + "\n").utf8)
        _ = bytes.withUnsafeBytes { write(1, $0.baseAddress, $0.count) }
    }

    // MARK: - The socket

    func listen(at path: String) -> Int32 {
        let s = socket(AF_UNIX, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        guard s >= 0 else { finish("socket: \(String(cString: strerror(errno)))", status: 1) }
        var address = sockaddr_un()
        address.sun_family = sa_family_t(AF_UNIX)
        let bytes = Array(path.utf8)
        guard bytes.count < MemoryLayout.size(ofValue: address.sun_path) else { finish("socket path too long", status: 1) }
        withUnsafeMutableBytes(of: &address.sun_path) { raw in
            raw.copyBytes(from: bytes)
            raw[bytes.count] = 0
        }
        let bound = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(s, $0, socklen_t(MemoryLayout<sockaddr_un>.size)) }
        }
        guard bound == 0, Glibc.listen(s, 1) == 0 else { finish("bind \(path): \(String(cString: strerror(errno)))", status: 1) }
        _ = fcntl(s, F_SETFL, fcntl(s, F_GETFL) | O_NONBLOCK)
        return s
    }

    /// Waits for cmalab to connect (QEMU's `wait=off`: the guest runs meanwhile).
    func accept() {
        while true {
            checkStop()
            let c = Glibc.accept(listenFD, nil, nil)
            if c >= 0 {
                _ = fcntl(c, F_SETFL, fcntl(c, F_GETFL) | O_NONBLOCK)
                _ = fcntl(c, F_SETFD, FD_CLOEXEC)
                fd = c
                return
            }
            var p = pollfd(fd: listenFD, events: Int16(POLLIN), revents: 0)
            _ = poll(&p, 1, 100)
        }
    }

    /// Waits, reading and dropping what arrives, until the peer hangs up or a signal comes.
    func idle(_ why: String) -> Never {
        log(why)
        while true {
            checkStop()
            var p = pollfd(fd: fd, events: Int16(POLLIN), revents: 0)
            _ = poll(&p, 1, 100)
            if fd >= 0 && p.revents != 0 { readAvailable() }
        }
    }

    /// Reads what is there; requests are queued for `serve`. Ends the process when the peer has gone.
    func readAvailable() {
        while true {
            let n = recv(fd, &buffer, buffer.count, 0)
            if n > 0 {
                decoder.feed(buffer[0..<n])
                while let frame = decoder.next() {
                    if frame.kind == .request { requests.append(frame) }
                }
                continue
            }
            if n == 0 { finish("peer closed the channel") }
            if errno == EAGAIN || errno == EINTR { return }
            finish("peer gone (\(String(cString: strerror(errno))))")
        }
    }

    func send(_ bytes: [UInt8]) {
        bytes.withUnsafeBytes { raw in
            var offset = 0
            while offset < raw.count {
                let n = Glibc.send(fd, raw.baseAddress! + offset, raw.count - offset, Int32(MSG_NOSIGNAL))
                if n > 0 {
                    offset += n
                    sentBytes += UInt64(n)
                    continue
                }
                guard n < 0, errno == EAGAIN || errno == EINTR else {
                    finish("peer gone (\(String(cString: strerror(errno))))")
                }
                // The host is not reading (it may have stopped for good): keep noticing signals and hang-ups.
                checkStop()
                var p = pollfd(fd: fd, events: Int16(POLLOUT | POLLIN), revents: 0)
                _ = poll(&p, 1, 100)
                if p.revents & Int16(POLLIN | POLLHUP | POLLERR) != 0 { readAvailable() }
            }
        }
        checkStop()
    }

    func nextRequest() -> Frame {
        while requests.isEmpty {
            checkStop()
            var p = pollfd(fd: fd, events: Int16(POLLIN), revents: 0)
            _ = poll(&p, 1, 100)
            if p.revents != 0 { readAvailable() }
        }
        return requests.removeFirst()
    }

    // MARK: - A well-behaved agent (with what numbers it was told)

    func announce() {
        let root = makeGuestTree()
        let handler = AgentHandler(paths: paths(root))
        let hello = handler.hello(channel: "virtio:/dev/vport0p1")
        send(Frame(kind: .event, id: 0, payload: AgentEvent.ready(hello).encode()).encoded())
        log("ready")
    }

    func serve() -> Never {
        while true { answer(nextRequest()) }
    }

    func answer(_ frame: Frame) {
        guard let request = try? AgentRequest.decode(frame.payload) else {
            send(Frame(kind: .response, id: frame.id, payload: AgentResponse.failure(errno: EINVAL, message: "undecodable request").encode()).encoded())
            return
        }
        let response = respond(to: request)
        send(Frame(kind: .response, id: frame.id, payload: response.encode()).encoded())
        if request == .poweroff || request == .reboot { finish("powered off") }
    }

    func respond(to request: AgentRequest) -> AgentResponse {
        let handler = AgentHandler(paths: paths(makeGuestTree()))
        switch request {
        case .uname, .meminfo, .cmaAreas, .cmaAreaCounters, .cmaAlloc, .cmaFree, .vmstat:
            return handler.handle(request)
        case .exec(let exec):
            if mode == .hugeValues { return .exec(ExecResult(termination: .signaled(Int32.max), durationNanoseconds: 1_000_000)) }
            let text = "cmalab-standin-qemu: not run: \(exec.argv.joined(separator: " "))\n"
            return .exec(ExecResult(termination: .exited(0), stdout: Array(text.utf8), durationNanoseconds: 1_000_000))
        case .kmsg(let after, _):
            let messages = ["Linux version 6.12.0-standin (cmalab-standin-qemu) #1 SMP PREEMPT_DYNAMIC",
                            "cma: Reserved 64 MiB at 0x000000003c000000 on node -1",
                            "Run /init as init process"]
            let records = messages.enumerated().map { KmsgRecord(sequence: UInt64($0.offset), priority: 6, facility: 0,
                                                                 timestampMicroseconds: UInt64($0.offset) * 1000, message: $0.element) }
            let fresh = records.filter { after == nil || $0.sequence > after! }
            return .kmsg(KmsgBatch(records: fresh, nextSequence: UInt64(records.count), missedRecords: 0))
        case .poweroff, .reboot:
            return .done
        case .readFile, .writeFile, .listDirectory, .kernelConfig:
            return .failure(errno: EPERM, message: "cmalab-standin-qemu has no guest files")
        }
    }

    func paths(_ root: String) -> AgentPaths {
        AgentPaths(proc: root + "/proc", sys: root + "/sys", dev: root + "/dev", debugfsCMA: root + "/debug/cma",
                   sysfsCMA: root + "/sys/kernel/mm/cma", kmsg: root + "/dev/kmsg", busybox: "/nonexistent/busybox")
    }

    /// A fake /proc, debugfs and sysfs with one CMA area `reserved`, in the run's socket directory.
    func makeGuestTree() -> String {
        if let guestRoot { return guestRoot }
        let root = (socketPath.map { ($0 as NSString).deletingLastPathComponent } ?? NSTemporaryDirectory()) + "/standin-guest-\(getpid())"
        let huge = mode == .hugeValues
        let n: (UInt64) -> String = { huge ? "\(self.hugeValue)" : "\($0)" }
        let files: [(String, String)] = [
            ("proc/cmdline", commandLine + "\n"),
            ("proc/uptime", "0.41 0.30\n"),
            ("proc/meminfo", "MemTotal:        1004124 kB\nMemFree:          912340 kB\nCmaTotal:        \(n(65536)) kB\nCmaFree:           65536 kB\n"),
            ("proc/vmstat", "nr_free_pages 228085\ncma_alloc_success 0\ncma_alloc_fail 0\n"),
            ("debug/cma/reserved/base_pfn", n(245760) + "\n"),
            ("debug/cma/reserved/count", n(16384) + "\n"),
            ("debug/cma/reserved/used", n(0) + "\n"),
            ("debug/cma/reserved/maxchunk", n(16384) + "\n"),
            ("debug/cma/reserved/order_per_bit", "0\n"),
            ("debug/cma/reserved/bitmap", "0 0 0 0\n"),
            ("debug/cma/reserved/alloc", ""),
            ("debug/cma/reserved/free", ""),
            ("sys/kernel/mm/cma/reserved/alloc_pages_success", "0\n"),
            ("sys/kernel/mm/cma/reserved/alloc_pages_fail", "0\n"),
        ]
        for (name, text) in files {
            let path = root + "/" + name
            try? FileManager.default.createDirectory(atPath: (path as NSString).deletingLastPathComponent, withIntermediateDirectories: true)
            _ = FileManager.default.createFile(atPath: path, contents: Data(text.utf8))
        }
        guestRoot = root
        return root
    }

    // MARK: - Floods

    /// Responses to ids the host never asked for, each `size` bytes of file data.
    func floodResponses() {
        let payload = AgentResponse.file(data: [UInt8](repeating: 0x5A, count: size ?? (1 << 20)), truncated: false).encode()
        let payloadCRC = CRC32.checksum(payload)
        var k: UInt32 = 0
        while count.map({ Int(k) < $0 }) ?? true {
            // Ids far from the host's (which count up from 1), each different, so none is awaited.
            var header = Self.header(kind: .response, id: 0x8000_0000 &+ k, length: payload.count)
            let crc = CRC32.combine(CRC32.checksum(header[0..<16]), payloadCRC, lengthB: payload.count)
            header.replaceSubrange(16..<20, with: Self.littleEndian(crc))
            send(header)
            send(payload)
            k &+= 1
        }
        log("flood done")
    }

    /// Log events of `size` bytes each.
    func floodEvents() {
        let frame = Frame(kind: .event, id: 0, payload: AgentEvent.log(String(repeating: "x", count: size ?? (1 << 20))).encode()).encoded()
        var k = 0
        while count.map({ k < $0 }) ?? true {
            send(frame)
            k += 1
        }
        log("flood done")
    }

    /// Rounds of `bombHeaders` headers back to back, each claiming the payload length that ends where the
    /// round ends (a round is `size` bytes, 32 MiB by default, the host decoder's limit), each with a
    /// checksum that does not match, then zeros up to the round's end: the last byte completes every
    /// candidate at once. A decoder that checksums each candidate's payload does headers × 32 MiB of work.
    func checksumBombs() {
        let round = max(size ?? (32 << 20), bombHeaders * Frame.headerSize)
        var headers = [UInt8]()
        for i in 0..<bombHeaders {
            let claim = round - i * Frame.headerSize - Frame.headerSize
            var header = Self.header(kind: .event, id: UInt32(i), length: claim)
            let real = CRC32.checksum(header[0..<16])
            header.replaceSubrange(16..<20, with: Self.littleEndian(real ^ 0xDEAD_BEEF))
            headers += header
        }
        let zeros = [UInt8](repeating: 0, count: 64 << 10)
        var k = 0
        while count.map({ k < $0 }) ?? true {
            send(headers)
            var left = round - headers.count
            while left > 0 {
                let n = min(left, zeros.count)
                send(n == zeros.count ? zeros : Array(zeros[0..<n]))
                left -= n
            }
            k += 1
        }
        log("flood done")
    }

    /// Pseudo-random bytes (one chunk of `size` bytes, 64 KiB by default, made once and sent again and again).
    func garbage() {
        var state: UInt64 = 0x9E37_79B9_7F4A_7C15
        var chunk = [UInt8](repeating: 0, count: size ?? (64 << 10))
        for i in chunk.indices {
            state ^= state << 13; state ^= state >> 7; state ^= state << 17
            chunk[i] = UInt8(truncatingIfNeeded: state)
        }
        var k = 0
        while count.map({ k < $0 }) ?? true {
            send(chunk)
            k += 1
        }
        log("flood done")
    }

    /// A frame header with checksum 0 (the caller sets it).
    static func header(kind: FrameKind, id: UInt32, length: Int) -> [UInt8] {
        Frame.magic + [Frame.version, kind.rawValue, 0, 0] + littleEndian(id) + littleEndian(UInt32(length)) + [0, 0, 0, 0]
    }

    static func littleEndian(_ v: UInt32) -> [UInt8] { (0..<4).map { UInt8(truncatingIfNeeded: v >> (8 * $0)) } }
}
