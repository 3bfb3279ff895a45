import Foundation

/// Progress for long steps (kernel builds, unpacking): a live line with elapsed time on a terminal,
/// plain timestamped lines otherwise (CI logs), at most one every `plainInterval` seconds.
public final class Progress: @unchecked Sendable {
    public let isTTY: Bool
    public let quiet: Bool
    private let lock = NSLock()
    private var title = ""
    private var started = Date()
    private var lastDraw = Date.distantPast
    private var lastPlain = Date.distantPast
    private var lineShown = false
    let plainInterval: TimeInterval

    public init(quiet: Bool = false, isTTY: Bool = isatty(STDERR_FILENO) == 1, plainInterval: TimeInterval = 20) {
        self.quiet = quiet; self.isTTY = isTTY; self.plainInterval = plainInterval
    }

    public func begin(_ title: String) {
        lock.withLock {
            self.title = title; started = Date(); lastPlain = Date()
            if !quiet && !isTTY { emit("\(title) ...\n") }
        }
    }

    /// The current step (for example `CC mm/cma.o`).
    public func update(_ detail: String) {
        lock.withLock {
            guard !quiet else { return }
            let now = Date()
            if isTTY {
                guard now.timeIntervalSince(lastDraw) > 0.1 else { return }
                lastDraw = now
                let cols = Int(Self.terminalWidth())
                var line = "[\(Self.clock(now.timeIntervalSince(started)))] \(title): \(detail)"
                if line.count > cols - 1 { line = String(line.prefix(cols - 1)) }
                emit("\r\u{1B}[K" + line)
                lineShown = true
            } else if now.timeIntervalSince(lastPlain) >= plainInterval {
                lastPlain = now
                emit("[\(Self.clock(now.timeIntervalSince(started)))] \(title): \(detail)\n")
            }
        }
    }

    public func end(_ summary: String) {
        lock.withLock {
            guard !quiet else { return }
            if lineShown { emit("\r\u{1B}[K"); lineShown = false }
            emit("\(summary)\n")
        }
    }

    /// A message that interrupts the live line.
    public func note(_ message: String) {
        lock.withLock {
            guard !quiet else { return }
            if lineShown { emit("\r\u{1B}[K"); lineShown = false }
            emit(message + "\n")
        }
    }

    public var elapsed: TimeInterval { Date().timeIntervalSince(started) }

    private func emit(_ s: String) { FileHandle.standardError.write(Data(s.utf8)) }

    static func clock(_ t: TimeInterval) -> String {
        let s = Int(t)
        return String(format: "%2d:%02d", s / 60, s % 60)
    }

    static func terminalWidth() -> UInt16 {
        var ws = winsize()
        return ioctl(STDERR_FILENO, UInt(TIOCGWINSZ), &ws) == 0 && ws.ws_col > 20 ? ws.ws_col : 100
    }
}
