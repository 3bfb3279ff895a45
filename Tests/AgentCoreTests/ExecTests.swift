import Foundation
import Glibc
import Testing
@testable import AgentCore
import LabProtocol

@Suite struct ExecTests {
    let fixture: Fixture
    let agent: AgentConnection

    init() throws {
        fixture = try Fixture()
        agent = try AgentConnection(paths: fixture.paths)
    }

    private func exec(_ argv: [String], timeout: UInt32 = 10_000, maxOutput: UInt32 = 1 << 20,
                      stdin: [UInt8] = [], env: [String] = [], cwd: String? = nil) throws -> ExecResult {
        let response = try agent.request(.exec(ExecRequest(
            argv: argv, env: env, cwd: cwd, timeoutMilliseconds: timeout, maxOutputBytes: maxOutput, stdin: stdin)))
        return try #require(response.execResult, "\(response)")
    }

    @Test func echo() throws {
        let result = try exec(["/bin/echo", "hello"])
        #expect(result.termination == .exited(0))
        #expect(result.stdout == Array("hello\n".utf8))
        #expect(result.stderr.isEmpty)
        #expect(!result.stdoutTruncated && !result.stderrTruncated)
        #expect(result.durationNanoseconds > 0)
    }

    @Test func exitStatus() throws {
        #expect(try exec(["/bin/sh", "-c", "exit 3"]).termination == .exited(3))
    }

    @Test func stderrIsSeparate() throws {
        let result = try exec(["/bin/sh", "-c", "echo out; echo err >&2"])
        #expect(result.stdout == Array("out\n".utf8))
        #expect(result.stderr == Array("err\n".utf8))
    }

    @Test func killedBySignal() throws {
        #expect(try exec(["/bin/sh", "-c", "kill -9 $$"]).termination == .signaled(SIGKILL))
    }

    @Test func stdinIsPiped() throws {
        // Larger than a pipe buffer, so writing stdin and reading stdout must interleave.
        let input = (0..<300_000).map { UInt8(truncatingIfNeeded: $0 &* 31) }
        let result = try exec(["/bin/cat"], stdin: input)
        #expect(result.termination == .exited(0))
        #expect(result.stdout == input)
    }

    @Test func stdinIsDevNullWhenEmpty() throws {
        let result = try exec(["/bin/sh", "-c", "wc -c"])
        #expect(String(decoding: result.stdout, as: UTF8.self).trimmed == "0")
    }

    @Test func timeoutKillsTheProcessGroup() throws {
        let start = Date()
        let result = try exec(["/bin/sleep", "5"], timeout: 300)
        #expect(result.termination == .timedOut)
        #expect(Date().timeIntervalSince(start) < 2)
        // A grandchild holding the pipes open dies with the group.
        let shell = try exec(["/bin/sh", "-c", "echo started; sleep 5 & sleep 5"], timeout: 300)
        #expect(shell.termination == .timedOut)
        #expect(shell.stdout == Array("started\n".utf8))
        #expect(Date().timeIntervalSince(start) < 4)
    }

    @Test func outputIsBoundedAndDrained() throws {
        let result = try exec(["/bin/sh", "-c", "yes | head -c 1000000"], maxOutput: 1000)
        #expect(result.termination == .exited(0))
        #expect(result.stdout.count == 1000)
        #expect(result.stdoutTruncated)
        #expect(result.stdout.starts(with: Array("y\ny\n".utf8)))
        #expect(result.stderr.isEmpty, "yes must die of SIGPIPE quietly: \(String(decoding: result.stderr, as: UTF8.self))")
    }

    @Test func missingProgram() throws {
        #expect(try exec(["/nonexistent/program"]).termination == .spawnFailed(errno: ENOENT))
        #expect(try exec(["no-such-program-anywhere"]).termination == .spawnFailed(errno: ENOENT))
        #expect(try exec([]).termination == .spawnFailed(errno: EINVAL))
    }

    @Test func programIsSearchedInPath() throws {
        let result = try exec(["echo", "found"], env: ["PATH=/nonexistent:/bin:/usr/bin"])
        #expect(result.stdout == Array("found\n".utf8))
    }

    @Test func environmentIsExactlyTheRequestPlusDefaultPath() throws {
        let result = try exec(["/usr/bin/env"], env: ["CMALAB=1"])
        let lines = String(decoding: result.stdout, as: UTF8.self).split(separator: "\n").sorted()
        #expect(lines == ["CMALAB=1", "PATH=/bin:/sbin:/usr/bin:/usr/sbin"])
    }

    @Test func workingDirectory() throws {
        let result = try exec(["/bin/pwd"], cwd: fixture.root)
        #expect(String(decoding: result.stdout, as: UTF8.self).trimmed == fixture.root)
        #expect(try exec(["/bin/pwd"], cwd: fixture.path("missing")).termination == .spawnFailed(errno: ENOENT))
    }

    @Test func childInheritsNoAgentDescriptors() throws {
        // Other tests spawn children concurrently: none of their pipes may leak into
        // this child. Descriptors that the test runner itself left inheritable are
        // not the agent's doing and are skipped.
        let result = try exec(["/bin/ls", "-l", "/proc/self/fd"])
        let leaked = String(decoding: result.stdout, as: UTF8.self).split(separator: "\n").filter { line in
            let words = line.split(separator: " ")
            guard let arrow = words.firstIndex(of: "->"), let fd = Int(words[arrow - 1]), fd > 2 else { return false }
            let target = words[arrow + 1]
            return (target.hasPrefix("pipe:") || target.hasPrefix("socket:")) && !Self.isInheritableHere(fd)
        }
        #expect(leaked.isEmpty, "\(leaked)")
    }

    /// Whether this process has `fd` open without O_CLOEXEC.
    private static func isInheritableHere(_ fd: Int) -> Bool {
        guard let info = try? String(contentsOfFile: "/proc/self/fdinfo/\(fd)", encoding: .utf8),
              let line = info.split(separator: "\n").first(where: { $0.hasPrefix("flags:") }),
              let flags = Int(line.dropFirst("flags:".count).trimmed, radix: 8)
        else { return false }
        return flags & Int(O_CLOEXEC) == 0
    }

    @Test func earlyExitWithUnreadStdin() throws {
        // The child exits without reading: the agent must not die of SIGPIPE.
        let result = try exec(["/bin/true"], stdin: [UInt8](repeating: 1, count: 1 << 20))
        #expect(result.termination == .exited(0))
    }

    @Test func childExitingWhileADescendantHoldsThePipe() throws {
        let start = Date()
        let result = try exec(["/bin/sh", "-c", "sleep 3 & echo done"], timeout: 10_000)
        #expect(result.termination == .exited(0))
        #expect(result.stdout == Array("done\n".utf8))
        #expect(Date().timeIntervalSince(start) < 2)
    }
}
