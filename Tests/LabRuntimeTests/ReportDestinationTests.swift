import Foundation
import Testing
@testable import LabRuntime

/// `--json`, `--junit` and `--html` go where the user pointed them: through a symlink to its target, and
/// straight into a FIFO or a character device.
@Suite struct ReportDestinationTests {
    /// A fresh private directory under the temporary folder.
    static func scratch(_ name: String) -> String {
        var template = Array((NSTemporaryDirectory() + "cmalab-\(name)-XXXXXX").utf8CString)
        return String(cString: template.withUnsafeMutableBufferPointer { mkdtemp($0.baseAddress!)! })
    }

    static func isSymlink(_ path: String) -> Bool {
        var st = stat()
        return lstat(path, &st) == 0 && (st.st_mode & S_IFMT) == S_IFLNK
    }

    @Test func aSymlinkStaysALinkAndItsTargetGetsTheBytes() throws {
        let dir = Self.scratch("symlink")
        defer { try? FileManager.default.removeItem(atPath: dir) }
        try Files.write("old\n", to: dir + "/real.json")
        #expect(symlink("real.json", dir + "/out.json") == 0)
        #expect(symlink("sub/made.json", dir + "/dangling.json") == 0)
        try Files.mkdirs(dir + "/sub")

        try Files.writePublic(Array("{\"new\": 1}\n".utf8), to: dir + "/out.json")
        try Files.writePublic(Array("made\n".utf8), to: dir + "/dangling.json")

        #expect(Self.isSymlink(dir + "/out.json"))
        #expect(try Files.read(dir + "/real.json") == "{\"new\": 1}\n")
        #expect(Self.isSymlink(dir + "/dangling.json"))
        #expect(try Files.read(dir + "/sub/made.json") == "made\n")
    }

    @Test func aFIFOReaderGetsTheBytes() throws {
        let dir = Self.scratch("fifo")
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let fifo = dir + "/results.json"
        #expect(mkfifo(fifo, 0o600) == 0)
        // Holding a read end open lets the writer's open succeed; the thread reads until EOF or 5 s.
        let readEnd = open(fifo, O_RDONLY | O_NONBLOCK | O_CLOEXEC)
        #expect(readEnd >= 0)
        let received = FIFOReader(fd: readEnd)
        let done = DispatchSemaphore(value: 0)
        Thread.detachNewThread { received.drain(); done.signal() }

        let payload = Array(String(repeating: "verdict ", count: 1000).utf8)
        try Files.writePublic(payload, to: fifo)
        done.wait()
        close(readEnd)

        let same = received.bytes == payload
        #expect(same, "the reader got \(received.bytes.count) of \(payload.count) bytes")
        var st = stat()
        #expect(lstat(fifo, &st) == 0 && (st.st_mode & S_IFMT) == S_IFIFO, "the FIFO was replaced")
    }
}

/// Reads one FIFO descriptor until end of file, or until 5 s pass without data.
final class FIFOReader: @unchecked Sendable {
    let fd: Int32
    private(set) var bytes: [UInt8] = []
    init(fd: Int32) { self.fd = fd }

    func drain() {
        var buffer = [UInt8](repeating: 0, count: 4096)
        var sawWriter = false
        while true {
            var p = pollfd(fd: fd, events: Int16(POLLIN), revents: 0)
            guard poll(&p, 1, 5000) > 0 else { return }
            let n = read(fd, &buffer, buffer.count)
            if n > 0 { bytes += buffer[0..<n]; sawWriter = true; continue }
            if n < 0 && (errno == EAGAIN || errno == EINTR) { continue }
            // EOF: a FIFO with no writer yet also reads as EOF, so wait for data before giving up.
            if sawWriter { return }
            usleep(10_000)
        }
    }
}
