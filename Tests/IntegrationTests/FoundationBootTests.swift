import Foundation
import Testing
import LabCore
import LabProtocol
@testable import LabRuntime

/// The lab foundation on real kernels: build, boot, console capture, crash detection.
extension Integration {
@Suite struct FoundationBootTests {
    @Test func seedBootReservesOneGiBAndPowersOff() throws {
        let k = try IT.kernel("cma-6.12")
        let s = try IT.lab.boot(k, IT.request(.gib(4), "cma=1G@1-2G", name: "seed"), bootTimeout: 120)
        let exit = try s.finish(timeout: 60)
        #expect(exit == .poweredOff)
        let console = try IT.console(s)
        #expect(console.contains("cma: Reserved 1024 MiB at 0x"))
        #expect(console.contains("1048576K cma-reserved"))
        #expect(IT.qemuProcesses(ofRuns: [s.run.path]).isEmpty)
    }

    @Test func fixedRegionInTheRamHolePanicsWithinSeconds() throws {
        let k = try IT.kernel("cma-6.12")
        let started = Date()
        do {
            _ = try IT.lab.boot(k, IT.request(.gib(4), "cma=1G@3G-4G", name: "hole"), bootTimeout: 120)
            Issue.record("the boot should have crashed")
        } catch {
            let e: LabError = error
            #expect(e.code == .kernelCrash)
            #expect(e.message.contains("kernel panic"))
            #expect(e.message.contains("before the agent started"))
            #expect(e.message.contains("BUG: unable to handle page fault"))
        }
        #expect(Date().timeIntervalSince(started) < 30)
        #expect(IT.qemuProcesses(runNamed: "it-hole").isEmpty)
    }

    @Test func kernelWithoutCMAReservesNothing() throws {
        let k = try IT.kernel("nocma-6.12")
        #expect(try k.config()["CMA"] == "n")
        let s = try IT.lab.boot(k, IT.request(.gib(2), "cma=1G", name: "nocma"), bootTimeout: 180)
        guard case .meminfo(let mem) = try #require(s.agent).request(.meminfo) else { Issue.record("no meminfo"); return }
        #expect(mem["CmaTotal"] == nil)
        #expect(try s.finish(timeout: 60) == .poweredOff)
        let console = try IT.console(s)
        #expect(!console.contains("cma: Reserved"))
        #expect(console.contains(#"Unknown kernel command line parameters "cma=1G""#) || console.contains("0K cma-reserved"))
    }

    @Test func cliBootExitsZeroAndPrintsTheReservation() throws {
        let r = try IT.runCLI(["boot", "--image", "cma-6.12", "--memory", "4G", "--append", "cma=1G@1-2G", "--accel", "tcg"])
        #expect(r.status == 0, "stderr: \(r.stderr)")
        #expect(r.stdout.contains("cma: Reserved 1024 MiB"))   // the streamed console
        #expect(r.stderr.contains("guest powered off"))
    }

    @Test func cliBootNamesTheCrash() throws {
        let r = try IT.runCLI(["boot", "--image", "cma-6.12", "--memory", "4G", "--append", "cma=1G@3G-4G", "--accel", "tcg", "--quiet"])
        #expect(r.status == 3)
        #expect(r.stderr.contains("kernel panic"))
        #expect(r.seconds < 30)
    }

    @Test func cachedImageBuildIsInstant() throws {
        _ = try IT.kernel("cma-6.12")
        let r = try IT.runCLI(["image", "build", "cma-6.12"])
        #expect(r.status == 0)
        #expect(r.stdout.contains("cma-6.12: cached"))
        #expect(r.seconds < 3)   // process start included; the store itself answers well under 1 s
    }

    @Test func autoAcceleratorSettlesWithoutALongWait() throws {
        let cache = NSTemporaryDirectory() + "cmalab-accel-\(getpid())"
        defer { try? FileManager.default.removeItem(atPath: cache) }
        let paths = LabPaths(home: IT.lab.paths.home, cache: cache, runs: cache + "/runs")
        let k = try IT.kernel("cma-6.12")
        var started = Date()
        let (accel, notice) = try AccelProbe(paths: paths).resolve(.auto, kernel: k.kernel)
        #expect(Date().timeIntervalSince(started) < 16)
        if accel == .tcg { #expect(notice?.hasPrefix("using TCG") == true) }
        started = Date()
        let (again, _) = try AccelProbe(paths: paths).resolve(.auto, kernel: k.kernel)
        #expect(again == accel)
        #expect(Date().timeIntervalSince(started) < 1)   // cached per host and QEMU version
        #expect(IT.qemuProcesses(runNamed: "kvm-probe").isEmpty)
    }
}
}
