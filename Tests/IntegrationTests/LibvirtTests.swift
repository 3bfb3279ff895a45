import Foundation
import Testing
import LabCore
@testable import LabRuntime

/// The libvirt daemon the libvirt tests talk to: qemu:///system. If it does not answer, the tests start
/// one with Scripts/libvirtd (virtlogd + libvirtd, no systemd needed) and stop it when the test process
/// exits; a daemon that was already running (CI's, started by .ci/run) is left alone.
enum LibvirtIT {
    static let uri = Backend.defaultLibvirtURI
    nonisolated(unsafe) static var startedID: String?

    static let daemon: Bool = {
        if (try? runCapturing(["virsh", "-q", "-c", uri, "version"])) != nil { return true }
        let id = "tests-\(getpid())"
        guard (try? runCapturing([IT.lab.paths.home + "/Scripts/libvirtd", "start", id])) != nil else { return false }
        startedID = id
        atexit {
            if let id = LibvirtIT.startedID { _ = try? runCapturing([IT.lab.paths.home + "/Scripts/libvirtd", "stop", id]) }
        }
        return true
    }()

    static func requireDaemon() throws {
        try #require(daemon, "libvirtd does not answer on \(uri) and Scripts/libvirtd start failed (run Scripts/setup-host)")
    }

    /// Names of running domains that cmalab created (name prefix `cmalab-`), via virsh.
    static func cmalabDomains() throws -> Set<String> {
        let out = try runCapturing(["virsh", "-q", "-c", uri, "list", "--name"])
        return Set(out.split(separator: "\n").map { $0.trimmingCharacters(in: .whitespaces) }.filter { $0.hasPrefix(LibvirtDomainXML.namePrefix) })
    }

    static func waitUntil(_ seconds: Double, _ condition: () throws -> Bool) rethrows -> Bool {
        let deadline = Date().addingTimeInterval(seconds)
        while Date() < deadline {
            if try condition() { return true }
            usleep(100_000)
        }
        return try condition()
    }

    static func tempDir() throws -> String {
        let dir = NSTemporaryDirectory() + "cmalab-libvirt-\(UUID().uuidString)"
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        return dir
    }
}

extension Integration {
/// The libvirt backend against a real libvirtd and its real QEMU: same profiles, same verdicts; the
/// kernel and initramfs as storage volumes; no domain outlives a run, whatever ends it.
@Suite struct LibvirtBackendTests {
    init() throws { try LibvirtIT.requireDaemon() }

    @Test func seedAndCrashProfilesGiveTheSameVerdictsOnBothBackends() throws {
        let dir = try LibvirtIT.tempDir()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let home = IT.lab.paths.home
        let profiles = [home + "/Profiles/seed-1g-at-1-2g.yaml", home + "/Profiles/crash-fixed-in-ram-hole.yaml"]
        let before = try LibvirtIT.cmalabDomains()
        let lv = try IT.runCLI(["run"] + profiles + ["--backend", "libvirt", "--connect", LibvirtIT.uri, "--json", dir + "/libvirt.json"])
        let qm = try IT.runCLI(["run"] + profiles + ["--backend", "qemu", "--accel", "tcg", "--json", dir + "/qemu.json"])
        #expect(lv.status == 0, "stdout:\n\(lv.stdout)\nstderr:\n\(lv.stderr)")
        // Both domains appeared within LibvirtSlowStart.defaultThreshold (5 s): a daemon that re-probes QEMU
        // for every domain (a /dev/kvm its QEMU user cannot open) takes ~50 s and says so here.
        #expect(!lv.stderr.contains("libvirt took"), "\(lv.stderr)")
        #expect(qm.status == 0, "stdout:\n\(qm.stdout)\nstderr:\n\(qm.stderr)")

        let (onLibvirt, _) = try Report.decodeResults(Array(try Data(contentsOf: URL(fileURLWithPath: dir + "/libvirt.json"))))
        let (onQEMU, _) = try Report.decodeResults(Array(try Data(contentsOf: URL(fileURLWithPath: dir + "/qemu.json"))))
        #expect(onLibvirt.map(\.profile) == ["seed-1g-at-1-2g", "crash-fixed-in-ram-hole"])
        #expect(onLibvirt.map(\.kind) == [.pass, .pass])
        // The same checks with the same outcomes and the same observed values, profile by profile.
        for (a, b) in zip(onLibvirt, onQEMU) {
            #expect(a.profile == b.profile && a.kind == b.kind)
            #expect(a.checks.map(\.name) == b.checks.map(\.name))
            #expect(a.checks.map(\.passed) == b.checks.map(\.passed))
            // CmaFree after a step depends on what movable allocations borrowed CMA pages meanwhile, which varies
            // with timing on both backends (44 kB apart once, with the host under load): those checks must agree
            // on pass or fail, every other observed value must be the same.
            func exact(_ v: Verdict) -> [String] {
                v.checks.filter { !$0.name.hasSuffix(".cma-free-restored") && !$0.name.hasSuffix(".cma-free-drop") }.map(\.observed)
            }
            #expect(exact(a) == exact(b), "\(a.profile)")
            #expect(a.observations?.ending == b.observations?.ending)
            #expect(a.observations?.boot.reserved.map(\.base) == b.observations?.boot.reserved.map(\.base))
        }
        let seed = try #require(onLibvirt.first)
        #expect(seed.observations?.ending == .poweredOff)
        #expect(seed.observations?.accelerator == "tcg")
        #expect(seed.observations?.steps.count == 2)
        let crash = try #require(onLibvirt.last)
        #expect(crash.observations?.ending == .kernelCrash)
        #expect(crash.observations?.crash?.summary.contains("Attempted to kill init") == true)
        // The crash ends within seconds (the domain is destroyed on reboot), not at the 60 s timeout.
        #expect(crash.seconds < 30)

        // The run directory tells how it ran: the domain XML and the URI, plus the usual artifacts.
        let runDir = seed.runDirectory
        let xml = try String(contentsOfFile: runDir + "/libvirt-domain.xml", encoding: .utf8)
        #expect(xml.contains("<kernel>\(LibvirtConnection.poolPath)/"))
        #expect(try String(contentsOfFile: runDir + "/libvirt.uri", encoding: .utf8) == LibvirtIT.uri + "\n")
        let console = try String(contentsOfFile: runDir + "/console.log", encoding: .utf8)
        #expect(console.contains("Linux version 6.12"))
        #expect(console.contains("cma: Reserved 1024 MiB"))
        #expect(FileManager.default.fileExists(atPath: runDir + "/dmesg.txt"))
        #expect(try LibvirtIT.cmalabDomains().subtracting(before).isEmpty)
    }

    /// A slow domain start is explained in one line, once per daemon and process. The threshold is set to 0
    /// so that this machine's fast start counts as slow; which cause the line names depends on the daemon
    /// (the one Scripts/libvirtd starts here does not see /dev/kvm).
    @Test func aSlowDomainStartIsExplainedInOneLineOncePerDaemon() throws {
        let home = IT.lab.paths.home
        let r = try IT.runCLI(["run", home + "/Profiles/seed-1g-at-1-2g.yaml", home + "/Profiles/cma-zero.yaml",
                               "--backend", "libvirt", "--connect", LibvirtIT.uri],
                              environment: ["CMALAB_LIBVIRT_SLOW_START": "0"])
        #expect(r.status == 0, "stdout:\n\(r.stdout)\nstderr:\n\(r.stderr)")
        let lines = r.stderr.split(separator: "\n").filter { $0.hasPrefix("cmalab: libvirt took ") }
        #expect(lines.count == 1, "\(r.stderr)")
        #expect(lines.first?.contains("to create the domain on \(LibvirtIT.uri)") == true)
        let view = LibvirtSlowStart.KVMView.local()
        if view.daemonSeesKVM == false {
            #expect(lines.first?.contains("the running libvirtd does not see /dev/kvm") == true, "\(lines)")
        }
    }

    @Test func matrixSpreadsCellsOverSeveralLibvirtURIs() throws {
        let dir = try LibvirtIT.tempDir()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let home = IT.lab.paths.home
        try """
            name: libvirt-spread
            images: [cma-6.12]
            profiles: [\(home)/Profiles/seed-1g-at-1-2g.yaml, \(home)/Profiles/cma-zero.yaml]
            """.write(toFile: dir + "/m.yaml", atomically: true, encoding: .utf8)
        // Two URIs that reach the same daemon by different transports stand in for two hosts.
        let uris = [LibvirtIT.uri, "qemu+unix:///system"]
        let r = try IT.runCLI(["matrix", dir + "/m.yaml", "--jobs", "2", "--backend", "libvirt",
                               "--connect", uris[0], "--connect", uris[1], "--json", dir + "/m.json"])
        #expect(r.status == 0, "stdout:\n\(r.stdout)\nstderr:\n\(r.stderr)")
        let (verdicts, _) = try Report.decodeResults(Array(try Data(contentsOf: URL(fileURLWithPath: dir + "/m.json"))))
        #expect(verdicts.count == 2 && verdicts.allSatisfy { $0.kind == .pass })
        let used = try verdicts.map { v in
            try String(contentsOfFile: v.runDirectory + "/libvirt.uri", encoding: .utf8)
                .trimmingCharacters(in: .whitespacesAndNewlines)
        }
        #expect(Set(used) == Set(uris))
    }

    @Test func shellRunsLinesInALibvirtDomain() throws {
        let dir = try LibvirtIT.tempDir()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        try "cd /sys/kernel/debug/cma/reserved\ncat count\necho 16 > alloc\ncat used\ncat /proc/cmdline\nexit\n"
            .write(toFile: dir + "/in", atomically: true, encoding: .utf8)
        let r = try IT.runCLI(["shell", "--memory", "1G", "--append", "cma=64M", "--backend", "libvirt", "--connect", LibvirtIT.uri],
                              stdin: dir + "/in")
        #expect(r.status == 0, "stderr: \(r.stderr)")
        #expect(r.stdout.hasPrefix("16384\n16\n"), "\(r.stdout)")
        #expect(r.stdout.contains("cma=64M"))
        #expect(r.stderr.contains("guest powered off"))
        #expect(try LibvirtIT.waitUntil(5) { try LibvirtIT.cmalabDomains().isEmpty })
    }

    @Test func kernelFilesBecomeStorageVolumesUploadedOnce() throws {
        let dir = try LibvirtIT.tempDir()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let file = dir + "/bzImage"
        var rng = SystemRandomNumberGenerator()
        let bytes = (0..<(3 << 20) + 123).map { _ in UInt8.random(in: 0...255, using: &rng) }
        try Data(bytes).write(to: URL(fileURLWithPath: file))
        let conn = try LibvirtConnection(uri: LibvirtIT.uri)
        let path = try conn.volume(for: file)
        let name = Path.basename(path)
        defer { _ = try? runCapturing(["virsh", "-q", "-c", LibvirtIT.uri, "vol-delete", "--pool", LibvirtConnection.poolName, name]) }
        #expect(path.hasPrefix(LibvirtConnection.poolPath + "/"))

        // What libvirt stores is the file, byte for byte (read back through libvirt, as from a remote host).
        _ = try runCapturing(["virsh", "-q", "-c", LibvirtIT.uri, "vol-download", "--pool", LibvirtConnection.poolName, name, dir + "/back"])
        #expect(try Data(contentsOf: URL(fileURLWithPath: dir + "/back")) == Data(bytes))
        // libvirt's QEMU runs as another user: the volume must be readable by it.
        let mode = try FileManager.default.attributesOfItem(atPath: path)[.posixPermissions] as? Int
        #expect(mode.map { $0 & 0o004 != 0 } == true)

        // The second boot of the same file reuses the volume; no temporary upload volume is left.
        #expect(try conn.volume(for: file) == path)
        let vols = try runCapturing(["virsh", "-q", "-c", LibvirtIT.uri, "vol-list", "--pool", LibvirtConnection.poolName])
        #expect(vols.split(separator: "\n").filter { $0.contains(name) }.count == 1)
        #expect(!vols.contains(".part-"))

        // A rebuilt kernel (new content, new mtime) is a new volume.
        usleep(10_000)
        try Data(bytes.reversed()).write(to: URL(fileURLWithPath: file))
        let path2 = try conn.volume(for: file)
        defer { _ = try? runCapturing(["virsh", "-q", "-c", LibvirtIT.uri, "vol-delete", "--pool", LibvirtConnection.poolName, Path.basename(path2)]) }
        #expect(path2 != path)
    }

    @Test func aHalfCreatedDomainOfADeadCmalabIsDestroyedByTheNextRun() throws {
        let conn = try LibvirtConnection(uri: LibvirtIT.uri)
        let kernel = try IT.kernel("cma-6.12")
        let kernelVolume = try conn.volume(for: kernel.kernel)
        // A cmalab that died after creating its domain and before starting the guest: the domain is
        // paused, was created without autodestroy (as a cmalab whose libvirt connection outlives it, or
        // a domain made by hand), and names an owner process that no longer exists.
        let dead = try ChildProcess(["true"], stdout: .null, stderr: .null)
        _ = dead.wait()
        let host = ProcessInfo.processInfo.hostName
        func domain(_ name: String, owner: Int32) -> String {
            LibvirtDomainXML(name: name, machine: MachineSpec(memory: .mib(256)), kernel: kernelVolume, initrd: nil,
                             commandLine: "console=ttyS0", agent: true, ownerHost: host, ownerPID: owner).render()
        }
        let orphanName = "cmalab-it-orphan-\(getpid())"
        let liveName = "cmalab-it-live-\(getpid())"
        _ = try conn.createPaused(xml: domain(orphanName, owner: dead.pid), autoDestroy: false)
        _ = try conn.createPaused(xml: domain(liveName, owner: getpid()), autoDestroy: false)
        defer {
            _ = try? runCapturing(["virsh", "-q", "-c", LibvirtIT.uri, "destroy", orphanName])
            _ = try? runCapturing(["virsh", "-q", "-c", LibvirtIT.uri, "destroy", liveName])
        }
        #expect(try LibvirtIT.cmalabDomains().isSuperset(of: [orphanName, liveName]))
        #expect(conn.domain(named: orphanName)?.owner?.pid == dead.pid)

        // The next cmalab that connects destroys it; a domain whose cmalab is alive (this test) stays.
        let r = try IT.runCLI(["boot", "--backend", "libvirt", "--memory", "1G", "--exec", "true", "--quiet"])
        #expect(r.status == 0, "stderr:\n\(r.stderr)")
        let left = try LibvirtIT.cmalabDomains()
        #expect(!left.contains(orphanName))
        #expect(left.contains(liveName))
        #expect(conn.destroyOrphans().isEmpty)
    }

    @Test func anErrorAfterTheDomainExistsStillDestroysIt() throws {
        let before = try LibvirtIT.cmalabDomains()
        var request = IT.request(.gib(1), "", name: "libvirt-agent-timeout")
        request.backend = .libvirt(uri: LibvirtIT.uri)
        // The agent cannot be ready within 0.3 s: the boot fails after the domain was created and started.
        let kernel = try IT.kernel("cma-6.12")
        do throws(LabError) {
            _ = try IT.lab.boot(kernel, request, bootTimeout: 0.3)
            Issue.record("the boot should have timed out")
        } catch {
            #expect(error.code == .timeout)
            // The domain existed: libvirtd started its QEMU and wrote its log.
            let consoleLog = try #require(error.message.components(separatedBy: "console log: ").last)
            let runDir = Path.directory(of: consoleLog.trimmingCharacters(in: .whitespacesAndNewlines))
            let name = LibvirtDomainXML.domainName(forRun: Path.basename(runDir))
            #expect(FileManager.default.fileExists(atPath: runDir + "/libvirt-domain.xml"))
            let qemuLog = (try? String(contentsOfFile: "/var/log/libvirt/qemu/\(name).log", encoding: .utf8)) ?? ""
            #expect(qemuLog.contains("-name guest=\(name)"), "libvirtd never started \(name)")
            #expect(!(try LibvirtIT.cmalabDomains()).contains(name))
        }
        #expect(try LibvirtIT.cmalabDomains().subtracting(before).isEmpty)
    }

    @Test func aKilledCmalabLeavesNoDomain() throws {
        let before = try LibvirtIT.cmalabDomains()
        let p = try ChildProcess([IT.cli, "boot", "--backend", "libvirt", "--memory", "1G", "--exec", "sleep 600", "--quiet"],
                                 stdout: .null, stderr: .null)
        var mine: Set<String> = []
        let appeared = LibvirtIT.waitUntil(60) {
            mine = ((try? LibvirtIT.cmalabDomains()) ?? []).subtracting(before)
            return !mine.isEmpty
        }
        #expect(appeared)
        sleep(1)
        kill(p.pid, SIGKILL)
        _ = p.wait()
        // SIGKILL leaves cmalab no chance to clean up: libvirtd destroys the AUTODESTROY domain when
        // cmalab's connection closes.
        let gone = try LibvirtIT.waitUntil(15) { try LibvirtIT.cmalabDomains().isDisjoint(with: mine) }
        #expect(gone, "still running: \(mine)")
        for name in mine where !gone { _ = try? runCapturing(["virsh", "-q", "-c", LibvirtIT.uri, "destroy", name]) }
    }

    @Test func ctrlCEndsTheRunAndDestroysItsDomain() throws {
        let before = try LibvirtIT.cmalabDomains()
        let p = try ChildProcess([IT.cli, "boot", "--backend", "libvirt", "--memory", "1G", "--exec", "sleep 600", "--quiet"],
                                 stdout: .null, stderr: .null)
        var mine: Set<String> = []
        #expect(LibvirtIT.waitUntil(60) {
            mine = ((try? LibvirtIT.cmalabDomains()) ?? []).subtracting(before)
            return !mine.isEmpty
        })
        sleep(1)
        let sent = Date()
        kill(p.pid, SIGINT)
        let t = p.wait()
        #expect(t == .exited(130))
        #expect(Date().timeIntervalSince(sent) < 10)
        #expect(try LibvirtIT.cmalabDomains().isDisjoint(with: mine))
        for name in mine { _ = try? runCapturing(["virsh", "-q", "-c", LibvirtIT.uri, "destroy", name]) }
    }

    @Test func aDaemonThatDoesNotAnswerGivesAnErrorThatSaysWhatToDo() throws {
        do throws(LabError) {
            _ = try LibvirtConnection(uri: "qemu+unix:///system?socket=/nonexistent/libvirt-sock")
            Issue.record("connecting to a missing socket should fail")
        } catch {
            #expect(error.code == .libvirt)
            #expect(error.message.contains("cannot connect to libvirt at qemu+unix:///system?socket=/nonexistent/libvirt-sock"))
            #expect(error.hint?.contains("Scripts/libvirtd start") == true)
        }
        let r = try IT.runCLI(["boot", "--backend", "libvirt", "--connect", "qemu+unix:///system?socket=/nonexistent/libvirt-sock", "--quiet"])
        #expect(r.status == 5)
        #expect(r.stderr.contains("hint: start libvirtd"))
        let bad = try IT.runCLI(["run", "--connect", LibvirtIT.uri])
        #expect(bad.status != 0 && bad.stderr.contains("--connect goes with --backend libvirt"))
    }
}
}
