import Foundation
import Testing
import LabCore
import LabProtocol
@testable import LabRuntime

/// The guest agent on a real cma-6.12 guest: meminfo, CMA areas, debugfs alloc/free, kmsg, exec.
extension IntegrationSecondLane {
@Suite struct AgentBootTests {
    func meminfo(_ agent: AgentClient) throws -> Meminfo { try agent.meminfo() }
    func areas(_ agent: AgentClient) throws -> [CMAArea] { try agent.cmaAreas() }

    @Test func seedScenarioAllocAndFree() throws {
        let k = try IT.kernel("cma-6.12")
        let s = try IT.lab.boot(k, IT.request(.gib(4), "cma=1G@1-2G", name: "agent-seed"), bootTimeout: 120)
        let agent = try #require(s.agent)
        let hello = try #require(agent.hello)
        #expect(hello.channel.hasPrefix("virtio:"))
        #expect(hello.uname.release.hasPrefix("6.12"))
        #expect(hello.cmdline.contains("cma=1G@1-2G"))

        let before = try meminfo(agent)
        #expect(before["CmaTotal"] == 1_048_576)
        let initial = try areas(agent)
        #expect(initial.count == 1)
        let area = try #require(initial.first)
        #expect(area.name == "reserved")
        #expect(area.count == 262_144)
        #expect(area.used == 0)
        #expect(area.orderPerBit == 0)
        #expect(area.sysfs.contains { $0.name == "alloc_pages_success" })

        #expect(try agent.request(.cmaAlloc(area: "reserved", pages: 102_400), timeout: 120) == .done)
        let afterAlloc = try meminfo(agent)
        let drop = Double(try #require(before["CmaFree"])) - Double(try #require(afterAlloc["CmaFree"]))
        #expect(abs(drop - 409_600) <= 4_096, "CmaFree dropped by \(drop) kB")
        let allocated = try #require(try areas(agent).first)
        #expect(allocated.used == 102_400)
        #expect(allocated.bitmap?.setBits == 102_400)
        // The counters-only snapshot (what `cmalab run` takes around each step): same numbers, no bitmap.
        let counters = try #require(try agent.cmaAreas(bitmap: false).first)
        #expect(counters.used == 102_400 && counters.count == 262_144 && counters.bitmap == nil)
        #expect(counters.sysfs.contains { $0.name == "alloc_pages_success" })

        #expect(try agent.request(.cmaFree(area: "reserved", pages: 102_400), timeout: 60) == .done)
        #expect(try areas(agent).first?.used == 0)
        let afterFree = try meminfo(agent)
        #expect(abs(Double(afterFree["CmaFree"]!) - Double(before["CmaFree"]!)) <= 10_486)   // within 1 % of CmaTotal

        // The alloc's debug lines (dyndbg) are in /dev/kmsg, not on the console.
        guard case .kmsg(let batch) = try agent.request(.kmsg(afterSequence: nil, maxRecords: 100_000)) else {
            Issue.record("no kmsg"); return
        }
        #expect(batch.records.contains { $0.message.hasPrefix("cma: __cma_alloc(") && $0.message.contains("count 102400") })
        #expect(batch.records.contains { $0.message.contains("cma: Reserved 1024 MiB") })

        // Failure comes back as the kernel's errno.
        let tooLarge = try agent.request(.cmaAlloc(area: "reserved", pages: 262_145), timeout: 60)
        if case .failure(let e, _) = tooLarge { #expect(e == ENOMEM) } else { Issue.record("expected ENOMEM, got \(tooLarge)") }
        let noArea = try agent.request(.cmaAlloc(area: "nosuch", pages: 1))
        if case .failure(let e, _) = noArea { #expect(e == ENOENT) } else { Issue.record("expected ENOENT, got \(noArea)") }

        #expect(try s.finish(timeout: 60) == .poweredOff)
    }

    /// `make agent` builds the agent with Embedded Swift: about 1 MB, and it is /init itself (no busybox
    /// wrapper); its helper mode runs from /sbin/cmalab-agent like before.
    @Test func theEmbeddedAgentIsInitItself() throws {
        let binary = Array(try Data(contentsOf: URL(fileURLWithPath: IT.lab.paths.agentBinary)))
        #expect(!InitramfsStore.needsSwiftRuntime(binary), "\(IT.lab.paths.agentBinary) carries the Swift runtime: build it with `make agent`")
        #expect(binary.count < 2 << 20, "\(binary.count) bytes")
        let k = try IT.kernel("cma-6.12")
        let s = try IT.lab.boot(k, IT.request(.gib(1), "cma=64M", name: "agent-init"), bootTimeout: 120)
        let agent = try #require(s.agent)
        let r = try agent.shell("tr '\\0' ' ' < /proc/1/cmdline; echo; readlink /init; /sbin/cmalab-agent hold-memory 2>&1; echo $?", timeout: 30)
        #expect(String(decoding: r.stdout, as: UTF8.self) == "/init \n/sbin/cmalab-agent\nusage: hold-memory BYTES [pin|mlock]\n2\n", "\(r)")
        #expect(try s.finish(timeout: 30) == .poweredOff)
    }

    @Test func execAndConfigAndFiles() throws {
        let k = try IT.kernel("cma-6.12")
        let s = try IT.lab.boot(k, IT.request(.gib(1), "cma=64M", name: "agent-exec"), bootTimeout: 120)
        let agent = try #require(s.agent)
        let req = ExecRequest(argv: ["/bin/sh", "-c", "grep Cma /proc/meminfo; echo err >&2; exit 7"], env: [], cwd: "/",
                              timeoutMilliseconds: 30_000, maxOutputBytes: 65536, stdin: [])
        guard case .exec(let r) = try agent.request(.exec(req)) else { Issue.record("no exec"); return }
        #expect(r.termination == .exited(7))
        #expect(String(decoding: r.stdout, as: UTF8.self).contains("CmaTotal:          65536 kB"))
        #expect(String(decoding: r.stderr, as: UTF8.self) == "err\n")

        guard case .kernelConfig(let text) = try agent.request(.kernelConfig) else { Issue.record("no config"); return }
        #expect(KernelConfig(parsing: text)["CMA_DEBUGFS"] == "y")

        guard case .file(let data, let truncated) = try agent.request(.readFile(path: "/proc/cmdline", maxBytes: 8)) else {
            Issue.record("no file"); return
        }
        #expect(data.count == 8 && truncated)
        guard case .directory(let entries) = try agent.request(.listDirectory(path: "/sys/kernel/debug/cma/reserved")) else {
            Issue.record("no dir"); return
        }
        #expect(Set(entries.map(\.name)).isSuperset(of: ["alloc", "free", "base_pfn", "count", "used", "maxchunk", "bitmap", "order_per_bit"]))
        #expect(try s.finish(timeout: 60) == .poweredOff)
    }

    @Test func uartFallbackWithoutVirtioConsole() throws {
        let k = try IT.kernel("cma-6.12-uart")
        #expect(try k.config()["VIRTIO_CONSOLE"] == "n")
        let s = try IT.lab.boot(k, IT.request(.gib(4), "cma=1G@1-2G", name: "agent-uart"), bootTimeout: 120)
        #expect(s.plan.agentTransport == .uart)
        let agent = try #require(s.agent)
        #expect(agent.hello?.channel == "uart:/dev/ttyS1")
        #expect(try meminfo(agent)["CmaTotal"] == 1_048_576)
        #expect(try agent.request(.cmaAlloc(area: "reserved", pages: 1024), timeout: 60) == .done)
        #expect(try areas(agent).first?.used == 1024)
        #expect(try s.finish(timeout: 60) == .poweredOff)
    }

    @Test func cliExecPrintsOutputAndExitsWithItsStatus() throws {
        var r = try IT.runCLI(["boot", "--image", "cma-6.12", "--memory", "4G", "--append", "cma=1G@1-2G", "--accel", "tcg",
                               "--exec", "cat /proc/meminfo"])
        #expect(r.status == 0, "stderr: \(r.stderr)")
        #expect(r.stdout.contains("CmaTotal:        1048576 kB"))
        #expect(r.stdout.hasPrefix("MemTotal:"))   // stdout is the command's output only; the console went to stderr
        r = try IT.runCLI(["boot", "--memory", "1G", "--accel", "tcg", "--quiet", "--exec", "exit 7"])
        #expect(r.status == 7)
        r = try IT.runCLI(["boot", "--memory", "4G", "--append", "cma=1G@1-2G", "--accel", "tcg", "--quiet", "--report"])
        #expect(r.status == 0)
        #expect(r.stdout.contains("meminfo CmaTotal: 1048576 kB"))
        #expect(r.stdout.contains("cma area reserved:") && r.stdout.contains("count 262144 pages"))
    }
}
}
