import CLibvirt
import Foundation
import Synchronization

/// A non-blocking libvirt stream (console or channel), driven by libvirt's event loop.
public final class LibvirtStream: @unchecked Sendable {
    let connection: LibvirtConnection
    let ptr: virStreamPtr
    private let finished = Mutex(false)

    init(connection: LibvirtConnection, ptr: virStreamPtr) { self.connection = connection; self.ptr = ptr }

    deinit { close(); virStreamFree(ptr) }

    /// Ends the stream (once).
    public func close() {
        let first = finished.withLock { done in defer { done = true }; return !done }
        if first { _ = virStreamAbort(ptr) }
    }
}

/// Copies a stream into a file descriptor (the console into a pipe, the channel into the agent's socket)
/// and, for the channel, what arrives on that descriptor back into the stream. Everything runs in
/// libvirt's event-loop thread; what the guest sends before the descriptor is attached is kept.
final class StreamPump: @unchecked Sendable {
    let stream: LibvirtStream
    private let lock = NSLock()
    private var outFD: Int32 = -1
    private var ownsOut = false
    private var inFD: Int32 = -1
    private var inWatch: Int32 = -1
    private var listenFD: Int32 = -1
    private var listenWatch: Int32 = -1
    private var toHost: [UInt8] = []
    private var toGuest: [UInt8] = []
    private var streamWatched = false
    private var done = false
    private let stopping = Atomic<Bool>(false)
    private var buffer = [UInt8](repeating: 0, count: 65536)

    init(stream: LibvirtStream) { self.stream = stream }

    private static let streamEvent: virStreamEventCallback = { _, events, opaque in
        Unmanaged<StreamPump>.fromOpaque(opaque!).takeUnretainedValue().onStream(events)
    }
    private static let fdEvent: virEventHandleCallback = { watch, fd, events, opaque in
        Unmanaged<StreamPump>.fromOpaque(opaque!).takeUnretainedValue().onFD(watch: watch, fd: fd, events: events)
    }
    private static let release: virFreeCallback = { opaque in Unmanaged<StreamPump>.fromOpaque(opaque!).release() }

    private var retained: UnsafeMutableRawPointer { Unmanaged.passRetained(self).toOpaque() }

    private static let readable = Int32(VIR_STREAM_EVENT_READABLE.rawValue | VIR_STREAM_EVENT_ERROR.rawValue | VIR_STREAM_EVENT_HANGUP.rawValue)
    private static let writable = Int32(VIR_STREAM_EVENT_WRITABLE.rawValue)

    /// Starts copying the stream into `fd` (closed by the pump when `owns`), or, with fd -1, into a buffer
    /// until `listen` accepts the agent's connection.
    func start(output fd: Int32, owns: Bool) throws(LabError) {
        lock.withLock { outFD = fd; ownsOut = owns }
        guard virStreamEventAddCallback(stream.ptr, Self.readable, Self.streamEvent, retained, Self.release) == 0 else {
            throw stream.connection.lastError("cannot watch a libvirt stream")
        }
        lock.withLock { streamWatched = true }
    }

    /// Accepts one connection on `listener` and bridges it both ways with the stream.
    func serve(listener: Int32) throws(LabError) {
        lock.withLock { listenFD = listener }
        let w = virEventAddHandle(listener, Int32(VIR_EVENT_HANDLE_READABLE.rawValue), Self.fdEvent, retained, Self.release)
        guard w >= 0 else { throw stream.connection.lastError("cannot watch the agent socket") }
        lock.withLock { listenWatch = w }
    }

    private func onStream(_ events: Int32) {
        lock.lock(); defer { lock.unlock() }
        guard !done else { return }
        if events & Self.writable != 0 { flushToGuest() }
        while !done {
            let n = buffer.withUnsafeMutableBytes { virStreamRecv(stream.ptr, $0.baseAddress!.assumingMemoryBound(to: CChar.self), $0.count) }
            if n > 0 {
                toHost += buffer[0..<Int(n)]
                flushToHost()
                continue
            }
            if n == -2 { break }            // no more data for now
            finish()                         // 0: end of stream; -1: error (the domain is gone)
            return
        }
        if events & Int32(VIR_STREAM_EVENT_HANGUP.rawValue | VIR_STREAM_EVENT_ERROR.rawValue) != 0, !done { finish() }
    }

    private func onFD(watch: Int32, fd: Int32, events: Int32) {
        lock.lock(); defer { lock.unlock() }
        guard !done else { return }
        if watch == listenWatch {
            let conn = accept(fd, nil, nil)
            guard conn >= 0 else { return }
            _ = fcntl(conn, F_SETFD, FD_CLOEXEC)
            _ = fcntl(conn, F_SETFL, fcntl(conn, F_GETFL) | O_NONBLOCK)
            virEventRemoveHandle(listenWatch); listenWatch = -1
            outFD = conn; ownsOut = true; inFD = conn
            inWatch = virEventAddHandle(conn, Int32(VIR_EVENT_HANDLE_READABLE.rawValue), Self.fdEvent, retained, Self.release)
            flushToHost()
            return
        }
        guard watch == inWatch else { return }
        let n = buffer.withUnsafeMutableBytes { read(fd, $0.baseAddress, $0.count) }
        if n > 0 {
            toGuest += buffer[0..<n]
            flushToGuest()
        } else if n == 0 || (errno != EAGAIN && errno != EINTR) {
            // cmalab closed its end of the agent channel.
            virEventRemoveHandle(inWatch); inWatch = -1
        }
    }

    /// Sends what the host wrote; when the stream is full, waits for it to become writable.
    private func flushToGuest() {
        while !toGuest.isEmpty {
            let n = toGuest.withUnsafeBytes { virStreamSend(stream.ptr, $0.baseAddress!.assumingMemoryBound(to: CChar.self), $0.count) }
            if n > 0 { toGuest.removeFirst(Int(n)); continue }
            if n == -2 { break }
            finish(); return
        }
        virStreamEventUpdateCallback(stream.ptr, Self.readable | (toGuest.isEmpty ? 0 : Self.writable))
    }

    /// Writes what the guest sent to the host side; waits (briefly, in steps) while the reader is behind.
    private func flushToHost() {
        guard outFD >= 0 else { return }
        var off = 0
        while off < toHost.count {
            let n = toHost[off...].withUnsafeBytes { Glibc.write(outFD, $0.baseAddress, $0.count) }
            if n > 0 { off += n; continue }
            if n < 0 && (errno == EAGAIN || errno == EINTR) {
                if stopping.load(ordering: .relaxed) { break }
                var p = pollfd(fd: outFD, events: Int16(POLLOUT), revents: 0)
                _ = Glibc.poll(&p, 1, 100)
                continue
            }
            // The host side is gone: drop the rest.
            off = toHost.count
        }
        toHost.removeFirst(off)
    }

    /// Stops watching, closes the descriptors the pump owns. Called with the lock held.
    private func finish() {
        guard !done else { return }
        done = true
        if streamWatched { virStreamEventRemoveCallback(stream.ptr); streamWatched = false }
        if listenWatch >= 0 { virEventRemoveHandle(listenWatch); listenWatch = -1 }
        if inWatch >= 0 { virEventRemoveHandle(inWatch); inWatch = -1 }
        if ownsOut, outFD >= 0 { Glibc.close(outFD) }
        outFD = -1
        if listenFD >= 0 { Glibc.close(listenFD); listenFD = -1 }
    }

    /// Ends the pump from any thread and aborts the stream.
    func stop() {
        stopping.store(true, ordering: .relaxed)
        lock.withLock { finish() }
        stream.close()
    }
}
