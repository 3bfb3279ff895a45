import Foundation
import Testing
import LabCore
import LabProtocol
@testable import LabRuntime

/// What a profile, an image or a guest hands cmalab never reaches a shell unquoted, and impossible numbers from
/// a guest are errors, not traps.
@Suite struct HostileGuestTests {
    /// Runs `bash` with `arguments` in `directory`; its stdout and exit status.
    static func bash(_ arguments: [String], in directory: String) throws -> (String, Int32) {
        let p = Process()
        p.executableURL = URL(fileURLWithPath: "/bin/bash")
        p.arguments = arguments
        p.currentDirectoryURL = URL(fileURLWithPath: directory)
        let out = Pipe()
        p.standardOutput = out
        try p.run()
        let data = out.fileHandleForReading.readDataToEndOfFile()
        p.waitUntilExit()
        return (String(decoding: data, as: UTF8.self), p.terminationStatus)
    }

    static func temporaryDirectory() throws -> String {
        let dir = NSTemporaryDirectory() + "cmalab-hostile-\(UUID().uuidString)"
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        return dir
    }

    /// A kernel command line with a newline, quotes, `$(...)`, backticks and spaces: reproduce.sh passes it to
    /// QEMU (here `/bin/echo`) byte for byte and runs none of it.
    @Test func reproduceScriptQuotesEveryValue() throws {
        let dir = try Self.temporaryDirectory()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let cmdline = "cma=64M foo=\"a\ntouch PWNED1\nb\" bar='$(touch PWNED2)' baz=`touch PWNED3` q=\"x y\" it's \\ \"$HOME\""
        let socket = dir + "/run/agent.sock"
        let argv = ["/bin/echo", "-chardev", "socket,id=agent,path=\(socket),server=on,wait=off", "-append", cmdline]
        let script = ProfileRunner.reproduceScript(arguments: argv, socket: socket)
        try script.write(toFile: dir + "/reproduce.sh", atomically: true, encoding: .utf8)
        #expect(try Self.bash(["-n", "reproduce.sh"], in: dir).1 == 0)
        let (out, status) = try Self.bash(["reproduce.sh"], in: dir)
        #expect(status == 0)
        #expect(out.hasSuffix(" -append \(cmdline)\n"), "\(out)")
        #expect(out.contains("/agent.sock,server=on,wait=off -append"), "\(out)")
        #expect(!out.contains(socket))
        let made = try FileManager.default.contentsOfDirectory(atPath: dir)
        #expect(made == ["reproduce.sh"], "\(made)")
    }

    /// The area name reaches the guest shell quoted.
    @Test func timedWriteQuotesTheArea() {
        let m = MeasuredAlloc(area: "a b'$(reboot)", pages: nil)
        #expect(m.attemptCommand(pages: 7) == "/sbin/cmalab-agent timed-write '/sys/kernel/debug/cma/a b'\\''$(reboot)/alloc' 7")
        #expect(MeasuredAlloc(area: "reserved", pages: nil).attemptCommand(pages: 7) == "/sbin/cmalab-agent timed-write '/sys/kernel/debug/cma/reserved/alloc' 7")
    }

    /// A signal number no kernel has (a lying guest) is an error naming it, not a trap on `128 + s`.
    @Test func impossibleSignalNumberIsAnError() async {
        await #expect(processExitsWith: .success) {
            #expect((try? ProfileRunner.status(.signaled(9))) == 137)
            let error = #expect(throws: LabError.self) { try ProfileRunner.status(.signaled(Int32.max)) }
            #expect(error?.message.contains("signal 2147483647") == true)
        }
    }

    /// Pages to bytes on guest-reported counts is checked (`cmalab boot --report`).
    @Test func hugePageCountIsAnError() {
        #expect((try? ProfileRunner.bytes(pages: 2, "count")) == 8192)
        let error = #expect(throws: LabError.self) { try ProfileRunner.bytes(pages: UInt64.max / 1000, "base_pfn of reserved") }
        #expect(error?.message.contains("base_pfn of reserved") == true)
    }
}
