import Foundation
import Testing
import LabCore
import LabRuntime

/// The built `cmalab` binary booting a dummy kernel file with `cmalab-standin-qemu` as its QEMU
/// (`CMALAB_QEMU`, Tests/StandinQEMU): a guest that speaks the real frame protocol on the agent socket and
/// misbehaves as told. Each run checks the exit code (a documented one, never a trap), when the run ended
/// against its `--timeout` deadline, what the message names, cmalab's peak RSS, and that neither the stand-in
/// nor the run's `/tmp/cmalab-XXXXXX` socket directory outlives cmalab.
///
/// `CMALAB_STANDIN_FIGURES=1` prints one line of figures per run (Scripts/hostile-figures collects them);
/// `CMALAB_STANDIN_CMALAB` runs another cmalab binary (an older build, to see what these tests catch).
@Suite(.serialized, StandinSharedCache()) struct StandinQEMUTests {
    /// The bound the issue sets on cmalab's peak RSS under any flood.
    static let rssLimitKiB = 150 * 1024

    /// One `CMALAB_CACHE` for the suite's runs: the initramfs (busybox and the dummy agent, hashed with the
    /// debug build's SHA-256) is made once, not before every boot. `StandinSharedCache` removes it.
    static let sharedCache = NSTemporaryDirectory() + "cmalab-standin-cache-\(UUID().uuidString)"

    /// A binary built next to this test bundle (same build folder), else in the checkout's debug build.
    static func built(_ name: String) -> String? {
        let here = ((CommandLine.arguments.first ?? "") as NSString).deletingLastPathComponent
        let fallback = LabPaths.discover().home + "/.build/debug"
        for dir in [here, (here as NSString).deletingLastPathComponent, fallback]
        where FileManager.default.isExecutableFile(atPath: dir + "/" + name) {
            return dir + "/" + name
        }
        return nil
    }

    static var cmalab: String? { ProcessInfo.processInfo.environment["CMALAB_STANDIN_CMALAB"] ?? built("cmalab") }

    /// One cmalab run against the stand-in, and what was seen of it.
    struct HostileRun {
        var status: Int32 = -1
        var stdout = ""
        var stderr = ""
        /// From spawning cmalab to its exit.
        var wall: Double = 0
        /// cmalab's exit minus (the stand-in's start + `--timeout`): the stand-in starts a few ms after the
        /// point cmalab's deadline counts from, so this is, if anything, a little late.
        var pastDeadline: Double = .nan
        /// cmalab's peak RSS: the highest VmHWM (the kernel's high-water mark of its memory) read from
        /// /proc/PID/status every 10 ms while it ran, so only growth in its last 10 ms could be missed. Not
        /// wait4's ru_maxrss: posix_spawn's child shares this test process's memory until it execs, and the
        /// kernel counts that image's high-water mark into the child's ru_maxrss (over 150 MiB in a full run).
        var highWaterKiB = 0
        /// From SIGINT to exit, when one was sent.
        var sigintLatency: Double?
        /// Killed by this test because it ran far past its deadline.
        var killedByTest = false
        var standinPID: pid_t?
        var socketDirectory: String?
        var standinLog: [String] = []
        var runsDirectory = ""
        /// What outlived cmalab (see `leftovers(_:)`).
        var leftovers: [String] = []

        var standinStart: Double? {
            standinLog.first { $0.hasPrefix("start ") }.flatMap { Double($0.dropFirst(6)) }
        }
    }

    /// Runs `cmalab boot --kernel <dummy> --memory 1G --accel tcg --timeout <timeout> --quiet` plus `extra`
    /// with the stand-in as QEMU, told how to behave by `environment`. With `sigintAfter`, sends cmalab
    /// SIGINT that many seconds after the stand-in says it started flooding.
    static func boot(_ extra: [String], timeout: Double, environment: [String: String], sigintAfter: Double? = nil,
                     label: String) throws -> HostileRun {
        let cli = try #require(cmalab, "the cmalab binary is not built: swift build --build-tests")
        let standin = try #require(built("cmalab-standin-qemu"), "the stand-in QEMU is not built: swift build --build-tests")
        let dir = NSTemporaryDirectory() + "cmalab-standin-test-\(UUID().uuidString)"
        try FileManager.default.createDirectory(atPath: dir + "/kernel", withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: dir) }
        // A kernel file that is no kernel (the stand-in never reads it) and an agent that is no agent (it goes
        // into the initramfs the stand-in never unpacks).
        try Data(repeating: 0xAB, count: 4096).write(to: URL(fileURLWithPath: dir + "/kernel/bzImage"))
        try Data("not an agent".utf8).write(to: URL(fileURLWithPath: dir + "/agent"))

        var env = ProcessInfo.processInfo.environment.filter { !$0.key.hasPrefix("CMALAB_") }
        env["CMALAB_QEMU"] = standin
        env["CMALAB_AGENT"] = dir + "/agent"
        env["CMALAB_CACHE"] = sharedCache
        env["CMALAB_RUNS"] = dir + "/runs"
        env["CMALAB_STANDIN_LOG"] = dir + "/standin.log"
        env.merge(environment) { _, new in new }
        let argv = [cli, "boot", "--kernel", dir + "/kernel/bzImage", "--memory", "1G", "--accel", "tcg",
                    "--timeout", String(timeout), "--quiet"] + extra

        var run = HostileRun(runsDirectory: dir + "/runs")
        let started = Date()
        let pid = try spawn(argv, environment: env, stdout: dir + "/out", stderr: dir + "/err")
        var status: Int32 = 0
        var sigintAt: Date?
        var floodingSeen: Date?
        while true {
            let r = waitpid(pid, &status, WNOHANG)
            if r == pid { break }
            if let hwm = highWater(pid) { run.highWaterKiB = max(run.highWaterKiB, hwm) }
            if let sigintAfter, sigintAt == nil {
                if floodingSeen == nil, readLog(dir + "/standin.log").contains("flooding") { floodingSeen = Date() }
                if let floodingSeen, Date().timeIntervalSince(floodingSeen) >= sigintAfter {
                    kill(pid, SIGINT)
                    sigintAt = Date()
                }
            }
            // A run that ignores its deadline (or SIGINT) is stopped here, so a regression fails instead of hanging.
            if Date().timeIntervalSince(started) > timeout + 30, !run.killedByTest {
                kill(pid, SIGKILL)
                run.killedByTest = true
            }
            usleep(10_000)
        }
        let ended = Date()
        run.wall = ended.timeIntervalSince(started)
        run.sigintLatency = sigintAt.map { ended.timeIntervalSince($0) }
        run.status = status & 0x7f == 0 ? (status >> 8) & 0xff : 128 + (status & 0x7f)
        run.stdout = (try? String(contentsOfFile: dir + "/out", encoding: .utf8)) ?? ""
        run.stderr = (try? String(contentsOfFile: dir + "/err", encoding: .utf8)) ?? ""
        run.standinLog = readLog(dir + "/standin.log").split(separator: "\n").map(String.init)
        run.standinPID = run.standinLog.first { $0.hasPrefix("pid ") }.flatMap { pid_t($0.dropFirst(4)) }
        run.socketDirectory = run.standinLog.first { $0.hasPrefix("socket ") }.map { (String($0.dropFirst(7)) as NSString).deletingLastPathComponent }
        if let start = run.standinStart { run.pastDeadline = ended.timeIntervalSince1970 - (start + timeout) }
        // What a run leaves is looked at before the folder goes.
        run.leftovers = leftovers(run)
        if ProcessInfo.processInfo.environment["CMALAB_STANDIN_FIGURES"] != nil {
            print(String(format: "standin-figure %@ exit=%d wall=%.2fs past-deadline=%+.2fs (timeout %.0fs) vmhwm=%.1fMiB%@ sent=%@",
                         label, run.status, run.wall, run.pastDeadline, timeout, Double(run.highWaterKiB) / 1024,
                         run.sigintLatency.map { String(format: " sigint-latency=%.2fs", $0) } ?? "",
                         run.standinLog.last { $0.hasPrefix("exit ") }.map { String($0.split(separator: " ").last ?? "?") } ?? "?"))
        }
        return run
    }

    /// The stand-in process still running, the socket directory still there, a `sockdir` record left.
    static func leftovers(_ run: HostileRun) -> [String] {
        var found: [String] = []
        if let pid = run.standinPID, kill(pid, 0) == 0 || errno != ESRCH,
           let cmdline = FileManager.default.contents(atPath: "/proc/\(pid)/cmdline"),
           String(decoding: cmdline, as: UTF8.self).contains("cmalab-standin-qemu") {
            found.append("stand-in QEMU \(pid) still running")
        }
        if let socketDirectory = run.socketDirectory, FileManager.default.fileExists(atPath: socketDirectory) {
            found.append("socket directory \(socketDirectory) still there")
        }
        for name in (try? FileManager.default.contentsOfDirectory(atPath: run.runsDirectory)) ?? []
        where FileManager.default.fileExists(atPath: run.runsDirectory + "/" + name + "/sockdir") {
            found.append("\(name)/sockdir still there")
        }
        return found
    }

    static func readLog(_ path: String) -> String { (try? String(contentsOfFile: path, encoding: .utf8)) ?? "" }

    /// VmHWM of a live process, in KiB.
    static func highWater(_ pid: pid_t) -> Int? {
        guard let text = try? String(contentsOfFile: "/proc/\(pid)/status", encoding: .utf8),
              let line = text.split(separator: "\n").first(where: { $0.hasPrefix("VmHWM:") }) else { return nil }
        return Int(line.split(separator: " ").dropFirst().first ?? "")
    }

    /// posix_spawn with default signal dispositions and an empty mask (the test runner may ignore SIGPIPE or
    /// SIGINT; cmalab must see them as a shell would give them), stdin from /dev/null, output to files.
    static func spawn(_ argv: [String], environment: [String: String], stdout: String, stderr: String) throws -> pid_t {
        var actions = posix_spawn_file_actions_t()
        posix_spawn_file_actions_init(&actions)
        defer { posix_spawn_file_actions_destroy(&actions) }
        posix_spawn_file_actions_addopen(&actions, 0, "/dev/null", O_RDONLY, 0)
        posix_spawn_file_actions_addopen(&actions, 1, stdout, O_WRONLY | O_CREAT | O_TRUNC, 0o644)
        posix_spawn_file_actions_addopen(&actions, 2, stderr, O_WRONLY | O_CREAT | O_TRUNC, 0o644)
        var attr = posix_spawnattr_t()
        posix_spawnattr_init(&attr)
        defer { posix_spawnattr_destroy(&attr) }
        posix_spawnattr_setflags(&attr, Int16(POSIX_SPAWN_SETSIGDEF | POSIX_SPAWN_SETSIGMASK))
        var defaults = sigset_t()
        sigemptyset(&defaults)
        for s in [SIGINT, SIGTERM, SIGHUP, SIGPIPE, SIGCHLD] { sigaddset(&defaults, s) }
        posix_spawnattr_setsigdefault(&attr, &defaults)
        var empty = sigset_t()
        sigemptyset(&empty)
        posix_spawnattr_setsigmask(&attr, &empty)
        let cArgv = argv.map { strdup($0) } + [nil]
        let cEnv = environment.map { strdup("\($0.key)=\($0.value)") } + [nil]
        defer { (cArgv + cEnv).forEach { free($0) } }
        var pid: pid_t = 0
        let rc = posix_spawn(&pid, argv[0], &actions, &attr, cArgv, cEnv)
        guard rc == 0 else { throw POSIXError(POSIXErrorCode(rawValue: rc) ?? .EINVAL) }
        return pid
    }

    /// What every run must show, whatever the guest did: a documented exit code (never a trap), the end within
    /// 1 s of the deadline, peak RSS under 150 MiB, nothing left behind.
    static func expectBounded(_ run: HostileRun, status: Int32, _ sourceLocation: SourceLocation = #_sourceLocation) {
        let context = "stderr:\n\(run.stderr.prefix(3000))\nstand-in log: \(run.standinLog)"
        #expect(run.status == status, "exit \(run.status), expected \(status)\n\(context)", sourceLocation: sourceLocation)
        #expect(run.status != 132 && run.status != 134, "a trap: \(run.status)", sourceLocation: sourceLocation)
        #expect(!run.killedByTest, "the run was still going 30 s past its deadline\n\(context)", sourceLocation: sourceLocation)
        #expect(run.pastDeadline <= 1.0, "ended \(run.pastDeadline) s past its deadline\n\(context)", sourceLocation: sourceLocation)
        #expect(run.highWaterKiB > 0 && run.highWaterKiB < rssLimitKiB,
                "peak RSS (VmHWM) \(run.highWaterKiB) KiB, limit \(rssLimitKiB) KiB", sourceLocation: sourceLocation)
        #expect(run.standinPID != nil && run.socketDirectory != nil, "the stand-in did not run\n\(context)", sourceLocation: sourceLocation)
        #expect(run.leftovers.isEmpty, "left behind: \(run.leftovers)", sourceLocation: sourceLocation)
    }

    // MARK: - A guest that behaves: the harness itself works

    @Test func wellBehavedStandinBootsReportsAndPowersOff() throws {
        let run = try Self.boot(["--report"], timeout: 10, environment: ["CMALAB_STANDIN": "normal"], label: "normal")
        Self.expectBounded(run, status: 0)
        #expect(run.stdout.contains("meminfo CmaTotal: 65536 kB"), "\(run.stdout)")
        #expect(run.stdout.contains("cma area reserved: base 0x3c000000 count 16384 pages (64 MiB) used 0"), "\(run.stdout)")
        #expect(run.standinLog.contains { $0.hasPrefix("exit powered off") }, "\(run.standinLog)")
        #expect(run.pastDeadline < -5, "a quick boot ended \(run.pastDeadline) s from its deadline")
    }

    // MARK: - Impossible values

    /// base_pfn 2^64-1 from the guest's debugfs: `boot --report` names it; before the checked arithmetic,
    /// `pfn * 4096` trapped (SIGILL, exit 132).
    @Test func hugeBasePFNIsAnErrorNamingTheValue() throws {
        let run = try Self.boot(["--report"], timeout: 10, environment: ["CMALAB_STANDIN": "huge-values"], label: "huge-values(--report)")
        Self.expectBounded(run, status: 5)
        #expect(run.stderr.contains("the guest reported base_pfn of reserved = 18446744073709551615 pages"), "\(run.stderr)")
    }

    /// A command "killed by signal 2147483647": `boot --exec` names the number; `128 + signal` trapped before.
    @Test func impossibleSignalNumberIsAnErrorNamingIt() throws {
        let run = try Self.boot(["--exec", "true"], timeout: 10, environment: ["CMALAB_STANDIN": "huge-values"], label: "huge-values(--exec)")
        Self.expectBounded(run, status: 5)
        #expect(run.stderr.contains("killed by signal 2147483647"), "\(run.stderr)")
    }

    // MARK: - Floods

    struct Flood: CustomTestStringConvertible, Sendable {
        var mode: String
        var environment: [String: String]
        /// What the flood message must count, besides the limit.
        var names: String
        var testDescription: String { mode }
    }

    /// Each flood well past the limit (8 MiB here; 400 MiB of frames, a bomb of 100 rounds): it is stopped and
    /// named. Before the channel counted valid frames, 400 unasked 1 MiB responses or 400 1 MiB events were
    /// all kept (hundreds of MiB) and no flood was seen.
    static let floods: [Flood] = [
        Flood(mode: "unsolicited-responses", environment: ["CMALAB_STANDIN_COUNT": "400", "CMALAB_STANDIN_SIZE": "1048576"],
              names: "unasked frames"),
        Flood(mode: "event-flood", environment: ["CMALAB_STANDIN_COUNT": "400", "CMALAB_STANDIN_SIZE": "1048576"],
              names: "unasked frames"),
        Flood(mode: "checksum-bomb", environment: ["CMALAB_STANDIN_COUNT": "100", "CMALAB_STANDIN_SIZE": "4194304"],
              names: "bad checksums"),
        Flood(mode: "garbage", environment: ["CMALAB_STANDIN_COUNT": "6400", "CMALAB_STANDIN_SIZE": "65536"],
              names: "that are not frames"),
    ]

    @Test(arguments: floods) func floodIsStoppedAndNamed(_ flood: Flood) throws {
        var env = flood.environment
        env["CMALAB_STANDIN"] = flood.mode
        env["CMALAB_CHANNEL_LIMIT"] = "8M"
        let run = try Self.boot(["--report"], timeout: 10, environment: env, label: flood.mode)
        Self.expectBounded(run, status: 5)
        #expect(run.stderr.contains("the guest flooded the agent channel with more than 8M"), "\(run.stderr)")
        #expect(run.stderr.contains(flood.names), "\(run.stderr)")
        // The counts in the message are the flood's, not zeros.
        if flood.names == "unasked frames" {
            #expect(run.stderr.range(of: #"\(0 bad checksums, 0 oversize headers, [1-9][0-9]* unasked frames"#, options: .regularExpression) != nil, "\(run.stderr)")
        }
        if flood.names == "bad checksums" {
            #expect(run.stderr.range(of: #"\([1-9][0-9]* bad checksums"#, options: .regularExpression) != nil, "\(run.stderr)")
        }
    }

    /// A flood seen long before the deadline ends the run then: the channel's flood explains the failure, so
    /// cmalab does not wait for a guest that is still flooding (it used to give it 5 s to exit, ending this
    /// run at about 5.2 s, 3.2 s past its 2 s deadline).
    @Test func floodEndsTheRunWithoutWaitingOutTheGuest() throws {
        let run = try Self.boot(["--report"], timeout: 2, environment: [
            "CMALAB_STANDIN": "event-flood", "CMALAB_STANDIN_SIZE": "1048576", "CMALAB_CHANNEL_LIMIT": "1M",
        ], label: "event-flood(1M limit, 2 s deadline)")
        Self.expectBounded(run, status: 5)
        #expect(run.stderr.contains("the guest flooded the agent channel with more than 1M"), "\(run.stderr)")
    }

    // MARK: - Deadlines

    /// The issue's checksum bomb: 300 headers (6000 bytes) each claiming the length that ends 32 MiB later,
    /// then nothing. The boot ends at its deadline as a timeout. Before, each candidate's 32 MiB were
    /// checksummed with the event loop out of reach (28.6 s of CPU; the run ended at 30.5 s with --timeout 5).
    @Test func checksumBombEndsAtTheDeadline() throws {
        let run = try Self.boot(["--report"], timeout: 4, environment: [
            "CMALAB_STANDIN": "checksum-bomb", "CMALAB_STANDIN_COUNT": "1", "CMALAB_STANDIN_THEN": "silence",
        ], label: "checksum-bomb(one round, then silence)")
        Self.expectBounded(run, status: 4)
        #expect(run.pastDeadline > -0.2, "ended \(run.pastDeadline) s before its deadline")
        #expect(run.stderr.contains("timed out after"), "\(run.stderr)")
    }

    /// A guest that never says a word: a timeout at the deadline, with the console tail.
    @Test func silentGuestEndsAtTheDeadline() throws {
        let run = try Self.boot(["--report"], timeout: 3, environment: ["CMALAB_STANDIN": "silence"], label: "silence")
        Self.expectBounded(run, status: 4)
        #expect(run.pastDeadline > -0.2, "ended \(run.pastDeadline) s before its deadline")
        #expect(run.stderr.contains("timed out after") && run.stderr.contains("Run /init as init process"), "\(run.stderr)")
    }

    // MARK: - SIGINT

    /// Ctrl-C a second into an endless flood the channel limit does not stop (1T): cmalab exits with 130
    /// within 1 s, its QEMU and socket directory gone. Before, decoding did not return to the event loop while
    /// bytes kept coming (SIGINT at 3 s was honoured at 15 s).
    @Test(arguments: ["checksum-bomb", "garbage"]) func sigintDuringAFloodEndsWithinASecond(_ mode: String) throws {
        let run = try Self.boot(["--report"], timeout: 30, environment: ["CMALAB_STANDIN": mode, "CMALAB_CHANNEL_LIMIT": "1T"],
                                sigintAfter: 1.0, label: "\(mode)+SIGINT")
        Self.expectBounded(run, status: 130)
        let latency = try #require(run.sigintLatency, "no SIGINT was sent (the stand-in never flooded?)")
        #expect(latency <= 1.0, "exited \(latency) s after SIGINT")
        #expect(run.stderr.contains("interrupted by SIGINT"), "\(run.stderr)")
    }
}

/// Removes `StandinQEMUTests.sharedCache` when the suite has run.
struct StandinSharedCache: SuiteTrait, TestScoping {
    func provideScope(for test: Test, testCase: Test.Case?, performing function: @Sendable () async throws -> Void) async throws {
        defer { try? FileManager.default.removeItem(atPath: StandinQEMUTests.sharedCache) }
        try await function()
    }
}
