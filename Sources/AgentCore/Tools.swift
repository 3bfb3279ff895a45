import Glibc

/// Helper modes of the agent binary, run by the host through `exec` (`/init <tool> ...`): they need no
/// protocol of their own, and they keep running as ordinary guest processes.
///
/// * `hold-memory BYTES [pin|mlock]`: maps BYTES of anonymous memory, touches every page (movable pages,
///   which the kernel may place in CMA areas), prints `held <bytes>`, and sleeps until killed. With `pin`,
///   it also splices every page into pipes with vmsplice(2): the pipes hold page references, which
///   migration cannot move, so a CMA allocation that needs those pages fails while they are held. With
///   `mlock`, it mlock(2)s them instead (which does not stop migration on current kernels).
/// * `hold-memory BYTES longterm`: pins the pages with FOLL_LONGTERM instead (DeviceTools.longTermPin), which
///   moves them out of CMA first, so they never block a CMA allocation.
/// * `timed-write PATH VALUE`: one write(2) of `VALUE\n` to PATH, timed with CLOCK_MONOTONIC inside the
///   guest; prints `ns=<elapsed> errno=<0 or the write's errno>`.
public enum AgentTools {
    public static let names = ["hold-memory", "timed-write"] + DeviceTools.names

    /// Runs the tool named by `arguments[1]`; returns the exit status.
    public static func run(_ arguments: [String]) -> Int32 {
        guard arguments.count >= 2 else { return 2 }
        switch arguments[1] {
        case "hold-memory":
            guard arguments.count >= 3, let bytes = UInt64(arguments[2]), bytes > 0 else {
                printLine("usage: hold-memory BYTES [pin|mlock]")
                return 2
            }
            let mode = arguments.count >= 4 ? arguments[3] : ""
            guard ["", "pin", "mlock", "longterm"].contains(mode) else {
                printLine("usage: hold-memory BYTES [pin|mlock|longterm]")
                return 2
            }
            return holdMemory(bytes: bytes, pin: mode == "pin", lock: mode == "mlock", longterm: mode == "longterm")
        case "timed-write":
            guard arguments.count == 4 else {
                printLine("usage: timed-write PATH VALUE")
                return 2
            }
            let (ns, err) = timedWrite(path: arguments[2], value: arguments[3])
            printLine("ns=\(ns) errno=\(err)")
            return err == 0 ? 0 : 1
        case let name where DeviceTools.names.contains(name):
            return DeviceTools.run(arguments)
        default:
            printLine("unknown tool \(arguments[1]); tools: \(names.joined(separator: ", "))")
            return 2
        }
    }

    /// One timed write; the elapsed nanoseconds and 0 or the errno (of open or write).
    public static func timedWrite(path: String, value: String) -> (UInt64, Int32) {
        let fd = open(path, O_WRONLY | O_CLOEXEC)
        guard fd >= 0 else { return (0, errno) }
        defer { close(fd) }
        let text = Array("\(value)\n".utf8)
        let start = monotonicNanoseconds()
        var written: Int
        repeat {
            written = text.withUnsafeBytes { write(fd, $0.baseAddress, $0.count) }
        } while written < 0 && errno == EINTR
        let err: Int32 = written < 0 ? errno : (written == text.count ? 0 : EIO)
        return (monotonicNanoseconds() - start, err)
    }

    public static func monotonicNanoseconds() -> UInt64 { AgentCore.monotonicNanoseconds() }

    static func holdMemory(bytes: UInt64, pin: Bool, lock: Bool, longterm: Bool = false) -> Int32 {
        let page = UInt64(sysconf(Int32(_SC_PAGESIZE)))
        let length = Int((bytes + page - 1) / page * page)
        guard let base = mmap(nil, length, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0), base != MAP_FAILED else {
            printLine("mmap of \(length) bytes failed: errno \(errno)")
            return 1
        }
        // Touch every page with a distinct value so nothing is shared or left unbacked.
        var offset = 0
        while offset < length {
            base.storeBytes(of: UInt64(offset), toByteOffset: offset, as: UInt64.self)
            offset += Int(page)
        }
        var pinned = 0
        if pin {
            pinned = spliceIntoPipes(base, length: length)
        }
        if lock, mlock(base, length) != 0 {
            printLine("mlock of \(length) bytes failed: errno \(errno)")
            return 1
        }
        if longterm {
            switch DeviceTools.longTermPin(base, length: length) {
            case .success(let how):
                printLine("held \(length) longterm-pinned \(length) via \(how)")
            case .failure(let e):
                printLine("longterm pin of \(length) bytes failed: errno \(e.errno)")
                return 1
            }
            while true { pause() }
        }
        printLine(pin ? "held \(length) pinned \(pinned)" : lock ? "held \(length) mlocked" : "held \(length)")
        while true { pause() }
    }

    /// vmsplice(2)s [base, base+length) into as many pipes as it takes, each grown to 64 MiB (root may
    /// exceed pipe-max-size). Returns the bytes spliced.
    static func spliceIntoPipes(_ base: UnsafeMutableRawPointer, length: Int) -> Int {
        var done = 0
        var limit = rlimit(rlim_cur: 1 << 16, rlim_max: 1 << 16)
        _ = setrlimit(RLIMIT_NOFILE_VALUE, &limit)
        while done < length {
            var fds: [Int32] = [-1, -1]
            guard pipe(&fds) == 0 else { break }
            _ = fcntl(fds[1], F_SETPIPE_SZ_VALUE, 64 << 20)
            _ = fcntl(fds[1], F_SETFL, O_NONBLOCK)
            var progressed = false
            while done < length {
                var iov = iovec(iov_base: base + done, iov_len: length - done)
                let n = glibcVmsplice(fds[1], &iov, 1, 2 /* SPLICE_F_NONBLOCK */)
                if n <= 0 { break }
                done += n
                progressed = true
            }
            if !progressed { break }
        }
        return done
    }

    static func printLine(_ s: String) {
        let bytes = Array((s + "\n").utf8)
        _ = bytes.withUnsafeBytes { write(1, $0.baseAddress, $0.count) }
    }
}

// Constants Glibc does not import into Swift on every version.
let F_SETPIPE_SZ_VALUE: Int32 = 1031
let RLIMIT_NOFILE_VALUE = __rlimit_resource_t(7)
