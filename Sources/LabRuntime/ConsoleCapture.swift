import Foundation
import LabCore

/// The guest's serial console as both backends capture it: read from a descriptor (QEMU's stdout, or the
/// pipe a libvirt console stream is pumped into), kept in `console.log` up to `limit` bytes, fed to the crash
/// watcher, and passed on line by line.
final class ConsoleCapture {
    private(set) var watcher = ConsoleWatcher()
    /// Console bytes kept on disk at most; a guest that prints more is flooding and gets stopped.
    var limit = 64 << 20
    var onLine: ((String) -> Void)?
    private(set) var flooded = false
    private(set) var eof = false
    /// When the first panic or oops line arrived.
    private(set) var crashSeenAt: Date?
    private let log: FileHandle
    private var bytesLogged = 0

    init(log: FileHandle) { self.log = log }

    deinit { try? log.close() }

    /// Reads what `fd` has now.
    func read(_ fd: Int32, _ buf: inout [UInt8]) {
        let n = Glibc.read(fd, &buf, buf.count)
        if n == 0 || (n < 0 && errno != EAGAIN && errno != EINTR) { eof = true; return }
        guard n > 0 else { return }
        let chunk = buf[0..<n]
        if bytesLogged < limit {
            let keep = min(n, limit - bytesLogged)
            log.write(Data(chunk.prefix(keep)))
            bytesLogged += keep
        } else {
            flooded = true
        }
        let hadCrash = watcher.crash != nil
        for line in watcher.feed(chunk) { onLine?(line) }
        if !hadCrash, watcher.crash != nil { crashSeenAt = Date() }
    }

    /// Reads until EOF or 100 ms of silence, then passes on the last partial line.
    func drain(_ fd: Int32, _ buf: inout [UInt8]) {
        guard fd >= 0 else { return }
        while !eof {
            var p = [pollfd(fd: fd, events: Int16(POLLIN), revents: 0)]
            guard Glibc.poll(&p, 1, 100) > 0 else { break }
            read(fd, &buf)
        }
        if let last = watcher.finish() { onLine?(last) }
    }

    /// A crash was seen and its trace had time to finish printing (3 s after a panic, 1.5 s after an oops).
    func crashSettled(at now: Date) -> Bool {
        guard let at = crashSeenAt else { return false }
        return now.timeIntervalSince(at) > (watcher.crash?.kind == .panic ? 3 : 1.5)
    }

    var floodReason: String { "the guest flooded the console with more than \(ByteSize(bytes: UInt64(limit))); stopped it" }
}
