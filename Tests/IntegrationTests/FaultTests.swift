import Foundation
import Testing
import LabCore
@testable import LabRuntime

extension IntegrationSecondLane {
/// Faults and hostile guests, for real: each ends within its deadline with the right result kind, the
/// console tail, and no QEMU left behind.
@Suite struct FaultTests {
    func tempDir() throws -> String {
        let dir = NSTemporaryDirectory() + "cmalab-fault-\(UUID().uuidString)"
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        return dir
    }

    /// Runs one profile (YAML) through the CLI and returns the result and its verdict.
    func run(_ yaml: String, image: String? = nil, environment: [String: String] = [:]) throws -> (IT.CLIResult, Verdict) {
        let dir = try tempDir()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        try yaml.write(toFile: dir + "/p.yaml", atomically: true, encoding: .utf8)
        var args = ["run", dir + "/p.yaml", "--accel", "tcg", "--json", dir + "/r.json"]
        if let image { args += ["--image", image] }
        let r = try IT.runCLI(args, environment: environment)
        let v = try #require(try Report.decodeResults(Array(try Data(contentsOf: URL(fileURLWithPath: dir + "/r.json")))).0.first,
                             "no verdict; stderr:\n\(r.stderr)")
        #expect(IT.qemuProcesses(ofRuns: [v.runDirectory]).isEmpty)
        return (r, v)
    }

    @Test func bootHangEndsAtTheDeadlineWithTheConsoleTail() throws {
        // init is `sleep 3600` (the bare word goes to init's argv): the agent never comes up.
        let (r, v) = try run("name: hang\nmachine: {memory: 1G}\ncmdline: rdinit=/bin/sleep 3600\ntimeout: 12\nexpect: {outcome: none}\n")
        #expect(r.status == 1)
        #expect(v.kind == .error)
        #expect(v.error?.contains("timed out after") == true, "\(v.error ?? "")")
        #expect(v.error?.contains("waiting for the agent to start") == true)
        #expect(v.consoleTail.contains { $0.contains("Run /bin/sleep as init process") })
        #expect(v.seconds < 25)
    }

    @Test func agentCrashingMidRequestIsAKernelCrashNotATimeout() throws {
        // An exec step overwrites the agent's (PID 1's) code with int3 while the agent waits for it: when the
        // agent resumes, it traps, init dies, and the kernel panics. The request never gets its answer.
        let (r, v) = try run("""
            name: agent-dies
            machine: {memory: 1G}
            cmdline: cma=64M
            timeout: 60
            expect: {outcome: kernel-crash, crash: Attempted to kill init}
            steps:
              - exec: {command: "set -- $(grep -m1 ' r-xp ' /proc/1/maps | tr '-' ' '); n=$(( (0x$2 - 0x$1) / 4096 )); head -c $((n * 4096)) /dev/zero | tr '\\\\000' '\\\\314' | dd of=/proc/1/mem bs=4096 seek=$(( 0x$1 / 4096 )) conv=notrunc 2>/dev/null; echo done", timeout: 30}
            """)
        // The crash is seen and judged (outcome and crash text hold); the step itself never finished.
        #expect(r.status == 1)
        #expect(v.kind == .fail)
        #expect(v.failedChecks.map(\.name) == ["steps[0].exec"], "\(v.checks)")
        #expect(v.failedChecks.first?.observed == "not run (kernel-crash)")
        #expect(v.observations?.ending == .kernelCrash)
        #expect(v.observations?.crash?.panicLine?.contains("Attempted to kill init") == true)
        #expect(v.seconds < 40)
    }

    @Test func qemuKilledMidRunIsALabErrorWithinSeconds() throws {
        let dir = try tempDir()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        try "name: killed-qemu\nmachine: {memory: 1G}\ntimeout: 120\nexpect: {outcome: none}\nsteps: [{exec: {command: sleep 100, timeout: 110}}]\n"
            .write(toFile: dir + "/p.yaml", atomically: true, encoding: .utf8)
        let runs = IT.lab.paths.runs
        let before = Set((try? FileManager.default.contentsOfDirectory(atPath: runs)) ?? [])
        let p = try ChildProcess([IT.cli, "run", dir + "/p.yaml", "--accel", "tcg", "--json", dir + "/r.json"],
                                 stdout: .file(dir + "/out"), stderr: .file(dir + "/err"))
        // Wait until the guest sleeps in the exec step, then kill its QEMU.
        var qemu: pid_t?
        let deadline = Date().addingTimeInterval(60)
        while qemu == nil, Date() < deadline, p.poll() == nil {
            usleep(200_000)
            let new = ((try? FileManager.default.contentsOfDirectory(atPath: runs)) ?? []).filter { !before.contains($0) && $0.contains("killed-qemu") }
            for d in new where FileManager.default.fileExists(atPath: "\(runs)/\(d)/meminfo-boot.txt") {
                qemu = (try? String(contentsOfFile: "\(runs)/\(d)/qemu.pid", encoding: .utf8)).flatMap { pid_t($0.trimmingCharacters(in: .whitespacesAndNewlines)) }
            }
        }
        let pid = try #require(qemu, "the run never reached its exec step")
        usleep(500_000)
        let killedAt = Date()
        kill(pid, SIGKILL)
        _ = p.wait()
        #expect(Date().timeIntervalSince(killedAt) < 10)
        let v = try #require(try Report.decodeResults(Array(try Data(contentsOf: URL(fileURLWithPath: dir + "/r.json")))).0.first)
        #expect(v.kind == .error)
        #expect(v.error?.contains("QEMU") == true, "\(v.error ?? "")")
        #expect(IT.qemuProcesses(ofRuns: [v.runDirectory]).isEmpty)
    }

    /// The order CI once hit: QEMU is dead and already reaped before the agent client notices. The next
    /// request must still say that QEMU ended (and how), not blame the agent or its channel.
    @Test func aQEMUReapedBeforeTheNextRequestIsNamed() throws {
        let k = try IT.kernel("cma-6.12")
        let s = try IT.lab.boot(k, IT.request(.gib(1), "cma=64M", name: "reaped-qemu"), bootTimeout: 120)
        let agent = try #require(s.agent)
        _ = try agent.meminfo()
        kill(s.machine.pid, SIGKILL)
        let deadline = Date().addingTimeInterval(10)
        while s.machine.isRunning, Date() < deadline { usleep(10_000) }   // isRunning reaps it
        #expect(!s.machine.isRunning)
        #expect(s.machine.exit == nil, "nothing has run the event loop since the kill")
        do {
            _ = try agent.meminfo()
            Issue.record("a request to a dead guest succeeded")
        } catch {
            #expect(error.code == .qemu, "\(error)")
            #expect(error.message.contains("QEMU exited with killed by signal 9"), "\(error)")
        }
        #expect(IT.qemuProcesses(ofRuns: [s.run.path]).isEmpty)
    }

    @Test func missingQEMUAndMissingKernelAreClearErrors() throws {
        let noQEMU = try IT.runCLI(["boot", "--memory", "1G", "--accel", "tcg", "--quiet"], environment: ["CMALAB_QEMU": "/nonexistent/qemu-system-x86_64"])
        #expect(noQEMU.status == 5)
        #expect(noQEMU.stderr.contains("/nonexistent/qemu-system-x86_64"), "\(noQEMU.stderr)")
        #expect(noQEMU.stderr.contains("apt-get install qemu-system-x86"))
        #expect(noQEMU.seconds < 5)
        let noKernel = try IT.runCLI(["boot", "--kernel", "/nonexistent/bzImage", "--memory", "1G", "--quiet"])
        #expect(noKernel.status == 2)
        #expect(noKernel.stderr.contains("/nonexistent/bzImage does not exist"), "\(noKernel.stderr)")
    }

    @Test func consoleFloodIsStoppedWithBoundedMemory() throws {
        let (r, v) = try run("""
            name: console-flood
            machine: {memory: 1G}
            timeout: 120
            expect: {outcome: none}
            steps: [{exec: {command: "yes 0123456789abcdef0123456789abcdef > /dev/console", timeout: 110}}]
            """, environment: ["CMALAB_CONSOLE_LIMIT": "1M"])
        #expect(r.status == 1)
        #expect(v.kind == .error)
        #expect(v.error?.contains("flooded the console with more than 1M") == true, "\(v.error ?? "")")
        let log = try #require(FileManager.default.attributesOfItem(atPath: v.runDirectory + "/console.log")[.size] as? Int)
        #expect(log <= 1 << 20)
    }

    @Test func agentChannelFloodIsStopped() throws {
        // Over the second UART anything in the guest can write to the agent's channel.
        let (r, v) = try run("""
            name: channel-flood
            machine: {memory: 1G}
            timeout: 120
            expect: {outcome: none}
            steps: [{exec: {command: "cat /dev/urandom > /dev/ttyS1", timeout: 110}}]
            """, image: "cma-6.12-uart", environment: ["CMALAB_CHANNEL_LIMIT": "256K"])
        #expect(r.status == 1)
        #expect(v.kind == .error)
        #expect(v.error?.contains("flooded the agent channel with more than") == true, "\(v.error ?? "")")
        #expect(v.seconds < 100)
    }

    @Test func corruptCachedImageIsDetectedAndRebuilt() throws {
        let cache = try tempDir()
        defer { try? FileManager.default.removeItem(atPath: cache) }
        let env = ["CMALAB_CACHE": cache]
        // A private cache seeded with the real cache's nocma-6.12 entry (so only the rebuild downloads).
        let real = try IT.kernel("nocma-6.12")
        let kernels = cache + "/kernels"
        try FileManager.default.createDirectory(atPath: kernels, withIntermediateDirectories: true)
        try FileManager.default.copyItem(atPath: real.directory, toPath: kernels + "/" + real.key)
        try FileManager.default.copyItem(atPath: Path.directory(of: real.directory) + "/by-recipe", toPath: kernels + "/by-recipe")
        let first = try IT.runCLI(["image", "build", "nocma-6.12"], environment: env)
        #expect(first.status == 0 && (first.stdout + first.stderr).contains("cached"), "\(first.stdout)\(first.stderr)")
        let key = real.key
        let bz = kernels + "/" + key + "/bzImage"
        // The good check left a stamp; a later lookup hashes again only if the file changed since.
        let meta = try String(contentsOfFile: kernels + "/" + key + "/meta", encoding: .utf8)
        let hash = try #require(meta.split(separator: "\n").first { $0.hasPrefix("bzImage-sha256=") }?.split(separator: "=").last)
        #expect(try String(contentsOfFile: kernels + "/" + key + "/verified", encoding: .utf8).hasPrefix(hash + " "))
        var st = stat()
        stat(bz, &st)
        var bytes = try #require(FileManager.default.contents(atPath: bz))
        bytes[bytes.count / 2] ^= 0xFF
        try bytes.write(to: URL(fileURLWithPath: bz))
        // Putting the old mtime back does not hide the change (the ctime moved).
        var times = [timespec](arrayLiteral: st.st_atim, st.st_mtim)
        utimensat(AT_FDCWD, bz, &times, 0)

        let second = try IT.runCLI(["image", "build", "nocma-6.12"], environment: env)
        #expect(second.status == 0, "\(second.stderr)")
        #expect(second.stderr.contains("cached kernel for nocma-6.12 is unusable"), "\(second.stderr)")
        let third = try IT.runCLI(["image", "build", "nocma-6.12"], environment: env)
        #expect(third.status == 0 && !third.stderr.contains("unusable"))
    }

    @Test func twoProcessesBuildingOneImageShareOneBuild() throws {
        let cache = try tempDir()
        let dir = try tempDir()
        defer { try? FileManager.default.removeItem(atPath: cache); try? FileManager.default.removeItem(atPath: dir) }
        let procs = try (0..<2).map { i in
            try ChildProcess(["env", "CMALAB_CACHE=\(cache)", IT.cli, "image", "build", "nocma-6.12"],
                             stdout: .file(dir + "/out\(i)"), stderr: .file(dir + "/err\(i)"))
        }
        for p in procs { #expect(p.wait() == .exited(0)) }
        let errs = try (0..<2).map { try String(contentsOfFile: dir + "/err\($0)", encoding: .utf8) }
        // One fetched the package; the other waited on the lock and then found it cached.
        #expect(errs.filter { $0.contains("waiting for another cmalab process") }.count == 1, "\(errs)")
        let outs = try (0..<2).map { try String(contentsOfFile: dir + "/out\($0)", encoding: .utf8) + String(contentsOfFile: dir + "/err\($0)", encoding: .utf8) }
        #expect(outs.allSatisfy { $0.contains("nocma-6.12") })
        let kernels = try FileManager.default.contentsOfDirectory(atPath: cache + "/kernels").filter { $0.count == 64 }
        #expect(kernels.count == 1)
        // The cache holds what its hash says.
        let again = try IT.runCLI(["image", "build", "nocma-6.12"], environment: ["CMALAB_CACHE": cache])
        #expect(again.status == 0 && !again.stderr.contains("unusable"))
    }
}
}
