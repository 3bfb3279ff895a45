import Glibc
import LabProtocol

/// A failed system call: what was being done and the errno it failed with.
public struct SystemError: Error, CustomStringConvertible, Sendable {
    public var operation: String
    public var errno: Int32

    public init(_ operation: String, errno: Int32 = currentErrno()) {
        self.operation = operation
        self.errno = errno
    }

    public var description: String { "\(operation): \(errnoDescription(errno))" }
}

/// The wire form of a failed system call.
func failure(_ error: SystemError) -> AgentResponse {
    .failure(errno: error.errno, message: error.description)
}

func errnoDescription(_ code: Int32) -> String {
    String(cString: strerror(code))
}

/// Size limits that keep every response bounded.
enum AgentLimits {
    static let readFileBytes = 16 << 20
    static let execOutputBytes = 4 << 20
    static let kernelConfigBytes = 8 << 20
    static let kmsgMessageBytes = 4 << 10
    static let kmsgBatchBytes = 1 << 20
    /// Largest frame payload either way; the host's decoder accepts 32 MiB too.
    /// A larger response is replaced by a failure.
    static let framePayloadBytes = 32 << 20
}

func joinPath(_ directory: String, _ name: String) -> String {
    directory.hasSuffix("/") ? directory + name : directory + "/" + name
}

/// Reads up to `limit` bytes; `truncated` tells whether the file had more. Works for
/// /proc and sysfs files, whose stat size is 0, by reading until EOF.
func readFile(_ path: String, limit: Int) throws(SystemError) -> (bytes: [UInt8], truncated: Bool) {
    let fd = open(path, O_RDONLY | O_CLOEXEC)
    guard fd >= 0 else { throw SystemError("open \(path)") }
    defer { close(fd) }
    var data = [UInt8]()
    var chunk = [UInt8](repeating: 0, count: 64 << 10)
    // Read one byte past the limit to learn whether the file was cut.
    while data.count <= limit {
        let want = min(chunk.count, limit + 1 - data.count)
        let n = chunk.withUnsafeMutableBytes { read(fd, $0.baseAddress, want) }
        if n < 0 {
            if errno == EINTR { continue }
            throw SystemError("read \(path)")
        }
        if n == 0 { break }
        data += chunk[0..<n]
    }
    let truncated = data.count > limit
    if truncated { data.removeLast(data.count - limit) }
    return (data, truncated)
}

func readText(_ path: String, limit: Int = AgentLimits.readFileBytes) throws(SystemError) -> String {
    String(decoding: try readFile(path, limit: limit).bytes, as: UTF8.self)
}

/// Writes all of `bytes`, looping on partial writes and EINTR.
func writeAll(_ fd: Int32, _ bytes: [UInt8], _ what: @autoclosure () -> String) throws(SystemError) {
    var offset = 0
    while offset < bytes.count {
        let n = bytes.withUnsafeBytes { write(fd, $0.baseAddress! + offset, $0.count - offset) }
        if n < 0 {
            if errno == EINTR { continue }
            throw SystemError("write \(what())")
        }
        offset += n
    }
}

func fileKind(_ mode: mode_t) -> UInt8 {
    switch mode & mode_t(S_IFMT) {
    case mode_t(S_IFREG): DirectoryEntry.file
    case mode_t(S_IFDIR): DirectoryEntry.directory
    case mode_t(S_IFLNK): DirectoryEntry.symlink
    default: DirectoryEntry.other
    }
}

func isDirectory(_ path: String) -> Bool {
    var info = stat()
    return stat(path, &info) == 0 && info.st_mode & mode_t(S_IFMT) == mode_t(S_IFDIR)
}

/// The entries of a directory (without "." and ".."), sorted by name, typed via lstat.
func listDirectory(_ path: String) throws(SystemError) -> [DirectoryEntry] {
    guard let dir = opendir(path) else { throw SystemError("opendir \(path)") }
    defer { closedir(dir) }
    var entries = [DirectoryEntry]()
    while true {
        errno = 0
        guard let entry = readdir(dir) else {
            if errno != 0 { throw SystemError("readdir \(path)") }
            break
        }
        let name = withUnsafeBytes(of: entry.pointee.d_name) { cString($0) }
        if name == "." || name == ".." { continue }
        var info = stat()
        if lstat(joinPath(path, name), &info) == 0 {
            entries.append(DirectoryEntry(name: name, kind: fileKind(info.st_mode), size: UInt64(info.st_size)))
        } else {
            // Vanished between readdir and lstat, or unreadable: still list the name.
            entries.append(DirectoryEntry(name: name, kind: DirectoryEntry.unknown, size: 0))
        }
    }
    return entries.sorted { $0.name < $1.name }
}

/// A NUL-terminated string stored in a fixed-size C array (a tuple in Swift).
func cString(_ raw: UnsafeRawBufferPointer) -> String {
    String(decoding: raw.prefix { $0 != 0 }, as: UTF8.self)
}

/// Runs `body` with a NULL-terminated `char *[]` built from `strings`.
func withCStringArray<R>(_ strings: [String], _ body: ([UnsafeMutablePointer<CChar>?]) -> R) -> R {
    let pointers = strings.map { strdup($0) } + [nil]
    defer { for pointer in pointers { free(pointer) } }
    return body(pointers)
}

func monotonicNanoseconds() -> UInt64 {
    var now = timespec()
    clock_gettime(CLOCK_MONOTONIC, &now)
    return UInt64(now.tv_sec) * 1_000_000_000 + UInt64(now.tv_nsec)
}

func sleepMilliseconds(_ milliseconds: Int) {
    var remaining = timespec(tv_sec: milliseconds / 1000, tv_nsec: (milliseconds % 1000) * 1_000_000)
    while true {
        let request = remaining
        guard withUnsafePointer(to: request, { nanosleep($0, &remaining) }) != 0, errno == EINTR else { return }
    }
}

/// Writes to a pipe or socket whose reader is gone must fail with EPIPE rather than
/// kill the agent. Children get the default disposition back (see ProcessRunner).
func ignoreSIGPIPE() {
    signal(SIGPIPE, SIG_IGN)
}

extension StringProtocol {
    /// The string without leading and trailing whitespace.
    var trimmed: String {
        guard let first = firstIndex(where: { !$0.isWhitespace }),
              let last = lastIndex(where: { !$0.isWhitespace })
        else { return "" }
        return String(self[first...last])
    }
}
