import Foundation
import Testing
@testable import LabRuntime

@Suite struct ChildProcessTests {
    @Test func capturesOutputAndStatus() throws {
        #expect(try runCapturing(["sh", "-c", "echo out; echo err >&2"]) == "out\n")
        #expect(throws: LabError.self) { try runCapturing(["sh", "-c", "echo boom >&2; exit 3"]) }
        do { _ = try runCapturing(["sh", "-c", "echo boom >&2; exit 3"]) } catch {
            let e: LabError = error
            #expect(e.message.contains("exit status 3") && e.message.contains("boom"))
        }
    }

    @Test func missingProgramSaysWhatToInstall() {
        do { _ = try ChildProcess(["qemu-system-nonexistent-arch"]); Issue.record("expected an error") } catch {
            #expect(error.code == .missingTool)
        }
        #expect(ChildProcess.installHint(for: "qemu-system-x86_64").contains("apt-get install qemu-system-x86"))
    }

    @Test func terminateEndsTheWholeProcessGroup() throws {
        // A shell that starts a grandchild: both must be gone after terminate().
        let p = try ChildProcess(["sh", "-c", "sleep 300 & echo $!; wait"], stdout: .pipe)
        var buf = [UInt8](repeating: 0, count: 64)
        var fds = [pollfd(fd: p.stdoutFD, events: Int16(POLLIN), revents: 0)]
        _ = poll(&fds, 1, 5000)
        let n = read(p.stdoutFD, &buf, buf.count)
        let grandchild = pid_t(String(decoding: buf[0..<max(0, n)], as: UTF8.self).trimmingCharacters(in: .whitespacesAndNewlines)) ?? 0
        #expect(grandchild > 0)
        p.terminate(grace: 1)
        #expect(p.poll() != nil)
        usleep(200_000)
        // Gone, or a zombie waiting for its new parent to reap it: either way no longer running.
        let stat = (try? String(contentsOfFile: "/proc/\(grandchild)/stat", encoding: .utf8)) ?? ""
        let state = stat.split(separator: ")").last?.split(separator: " ").first
        #expect(stat.isEmpty || state == "Z", "the grandchild \(grandchild) outlived terminate(): \(stat)")
    }

    @Test func workingDirectory() throws {
        #expect(try runCapturing(["pwd"], workingDirectory: "/tmp") == "/tmp\n")
    }
}

@Suite struct FileLockTests {
    @Test func excludesOtherProcessesUntilReleased() throws {
        let path = NSTemporaryDirectory() + "cmalab-lock-\(getpid())"
        defer { unlink(path) }
        let lock = try FileLock(path)
        // util-linux flock(1) in another process cannot take it while we hold it...
        #expect(throws: LabError.self) { try runCapturing(["flock", "-n", path, "true"]) }
        lock.unlock()
        // ...and can once we let go.
        #expect(try runCapturing(["flock", "-n", path, "echo", "got it"]) == "got it\n")
    }
}
