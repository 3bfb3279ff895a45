import Testing
@testable import LabCore

@Suite struct ConsoleWatcherTests {
    @Test func cleanBootHasNoCrash() throws {
        var w = ConsoleWatcher()
        w.feed(Array(try Fixture.text("console-6.12-pc-4G-cma-1G@1-2G.log").utf8))
        #expect(w.crash == nil)
        #expect(w.tail.contains { $0.contains("cma: Reserved 1024 MiB at 0x000000003fc00000 on node -1") })
        #expect(w.tail.last?.contains("reboot: Power down") == true)
    }

    @Test func holeCrashIsAPanicWithItsCause() throws {
        var w = ConsoleWatcher()
        w.feed(Array(try Fixture.text("console-6.12-pc-4G-cma-1G@3G-4G-panic.log").utf8))
        let crash = try #require(w.crash)
        #expect(crash.kind == .panic)
        #expect(crash.headline.hasPrefix("BUG: unable to handle page fault for address"))
        #expect(crash.panicLine?.hasPrefix("Kernel panic - not syncing: Attempted to kill init!") == true)
        #expect(crash.summary.hasPrefix("kernel panic: Attempted to kill init!"))
    }

    @Test func crashIsFoundWhateverTheChunking() throws {
        let bytes = Array(try Fixture.text("console-6.12-pc-4G-cma-1G@3G-4G-panic.log").utf8)
        for chunk in [1, 7, 64, 4096] {
            var w = ConsoleWatcher()
            var i = 0
            while i < bytes.count { w.feed(bytes[i..<min(i + chunk, bytes.count)]); i += chunk }
            #expect(w.crash?.kind == .panic, "chunk \(chunk)")
        }
    }

    @Test func oopsWithoutPanic() {
        var w = ConsoleWatcher()
        w.feed(Array("[    5.1] Oops: general protection fault, probably for non-canonical address\n".utf8))
        #expect(w.crash?.kind == .oops)
        #expect(w.crash?.summary == "kernel oops: Oops: general protection fault, probably for non-canonical address")
    }

    @Test func earlyPanicWithoutOops() {
        var w = ConsoleWatcher()
        w.feed(Array("[    0.5] Kernel panic - not syncing: VFS: Unable to mount root fs on unknown-block(0,0)\n".utf8))
        #expect(w.crash?.summary == "kernel panic: VFS: Unable to mount root fs on unknown-block(0,0)")
    }

    @Test func warningsAndCmaTextAreNotCrashes() {
        var w = ConsoleWatcher()
        w.feed(Array("[ 1.0] WARNING: CPU: 0 PID: 1 at mm/cma.c:1 x\n[ 1.1] cma: Failed to reserve 4096 MiB on node -1\n".utf8))
        #expect(w.crash == nil)
    }

    @Test func longLinesAreCutAndTheTailIsBounded() {
        var w = ConsoleWatcher(tailCapacity: 3)
        w.feed(Array(repeating: UInt8(ascii: "x"), count: 10_000) + [0x0A])
        #expect(w.tail[0].hasPrefix(String(repeating: "x", count: ConsoleWatcher.maxLineBytes)))
        #expect(w.tail[0].hasSuffix("[line cut at 4096 bytes]"))
        for i in 0..<10 { w.feed(Array("line \(i)\n".utf8)) }
        #expect(w.tail == ["line 7", "line 8", "line 9"])
        #expect(w.lineCount == 11)
    }

    @Test func stripsTimestamps() {
        #expect(KernelLog.stripTimestamp("[    0.023491] cma: Reserved 1024 MiB") == "cma: Reserved 1024 MiB")
        #expect(KernelLog.stripTimestamp("[not a stamp] x") == "[not a stamp] x")
        #expect(KernelLog.timestamp("[    1.500000] x") == 1.5)
    }
}
