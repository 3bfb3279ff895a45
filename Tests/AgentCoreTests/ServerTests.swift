import Foundation
import Glibc
import Testing
@testable import AgentCore
import LabProtocol

/// End-to-end: the real AgentServer over a socketpair, against fixture trees.
@Suite struct ServerTests {
    @Test func readyEventComesFirst() throws {
        let fixture = try Fixture()
        try fixture.write("proc/cmdline", "console=ttyS0 cma=64M\n")
        try fixture.write("proc/uptime", "12.34 20.00\n")
        let agent = try AgentConnection(paths: fixture.paths, channel: "virtio:/dev/vport1p1")
        let hello = try #require(agent.hello)
        #expect(hello.protocolVersion == AgentProtocol.version)
        #expect(hello.agentVersion == AgentHandler.agentVersion)
        #expect(hello.cmdline == "console=ttyS0 cma=64M")
        #expect(hello.channel == "virtio:/dev/vport1p1")
        #expect(hello.uptimeMilliseconds == 12_340)
        #expect(hello.uname.sysname == "Linux")
        #expect(try agent.request(.uname) == .uname(hello.uname))
    }

    @Test func readyIsRepeatedUntilTheHostSpeaks() throws {
        let fixture = try Fixture()
        let agent = try AgentConnection(paths: fixture.paths, announceIntervalMilliseconds: 50)
        for _ in 0..<2 {
            let again = try #require(try agent.readFrame())
            #expect(again.kind == .event)
            #expect(try AgentEvent.decode(again.payload) == .ready(try #require(agent.hello)))
        }
        guard case .uname = try agent.request(.uname) else { Issue.record("no uname"); return }
        // Once a frame has arrived the agent stays quiet until asked: the frame after
        // the next request is its response.
        usleep(200_000)
        let id = agent.sendRequest(.uname)
        let next = try #require(try agent.readFrame())
        #expect(next.kind == .response && next.id == id)
    }

    @Test func meminfo() throws {
        let fixture = try Fixture()
        try fixture.write("proc/meminfo", "MemTotal:        4020000 kB\nCmaTotal:        1048576 kB\nHugePages_Total:       0\n")
        let agent = try AgentConnection(paths: fixture.paths)
        guard case let .meminfo(info) = try agent.request(.meminfo) else { Issue.record("not meminfo"); return }
        #expect(info["CmaTotal"] == 1_048_576)
        #expect(info["HugePages_Total"] == 0)
        #expect(info.fields.count == 3)
    }

    @Test func missingProcFileIsENOENT() throws {
        let fixture = try Fixture()
        let agent = try AgentConnection(paths: fixture.paths)
        #expect(try agent.request(.meminfo).failureErrno == ENOENT)
        #expect(try agent.request(.vmstat).failureErrno == ENOENT)
    }

    @Test func vmstat() throws {
        let fixture = try Fixture()
        try fixture.write("proc/vmstat", "nr_free_pages 1000\ncma_alloc_success 3\nbroken line here\n")
        let agent = try AgentConnection(paths: fixture.paths)
        #expect(try agent.request(.vmstat) == .vmstat([
            Counter(name: "nr_free_pages", value: 1000), Counter(name: "cma_alloc_success", value: 3),
        ]))
    }

    static func makeCMAFixture() throws -> Fixture {
        let fixture = try Fixture()
        for (file, value) in [("base_pfn", "262144"), ("count", "262144"), ("used", "0"),
                              ("maxchunk", "262144"), ("order_per_bit", "0"), ("bitmap", "0 0 0\n"),
                              ("alloc", ""), ("free", "")] {
            try fixture.write("debug/cma/reserved/\(file)", value + (file == "bitmap" ? "" : "\n"))
        }
        try fixture.write("sys/kernel/mm/cma/reserved/alloc_pages_success", "0\n")
        return fixture
    }

    @Test func cmaAreasFromDebugfsAndSysfs() throws {
        let fixture = try Self.makeCMAFixture()
        try fixture.write("debug/cma/second/count", "1024\n")
        try fixture.write("debug/cma/not-an-area", "")
        let agent = try AgentConnection(paths: fixture.paths)
        #expect(try agent.request(.cmaAreas) == .cmaAreas([
            CMAArea(name: "reserved", basePFN: 262_144, count: 262_144, used: 0, maxchunk: 262_144, orderPerBit: 0,
                    bitmap: BitmapSummary(words: 3, setBits: 0, firstSetBit: nil, lastSetBit: nil, runs: [],
                                          runsTruncated: false),
                    sysfs: [Counter(name: "alloc_pages_success", value: 0)]),
            CMAArea(name: "second", count: 1024),
        ]))
    }

    @Test func cmaAreasFromSysfsOnly() throws {
        let fixture = try Fixture()
        try fixture.write("sys/kernel/mm/cma/reserved/alloc_pages_fail", "2\n")
        try fixture.write("sys/kernel/mm/cma/reserved/total_pages", "16384\n")
        let agent = try AgentConnection(paths: fixture.paths)
        #expect(try agent.request(.cmaAreas) == .cmaAreas([
            CMAArea(name: "reserved", sysfs: [Counter(name: "alloc_pages_fail", value: 2),
                                              Counter(name: "total_pages", value: 16384)]),
        ]))
    }

    @Test func noCMAAtAll() throws {
        let fixture = try Fixture()
        let agent = try AgentConnection(paths: fixture.paths)
        #expect(try agent.request(.cmaAreas) == .cmaAreas([]))
    }

    @Test func cmaAllocAndFreeWriteThePageCount() throws {
        let fixture = try Self.makeCMAFixture()
        let agent = try AgentConnection(paths: fixture.paths)
        #expect(try agent.request(.cmaAlloc(area: "reserved", pages: 102_400)) == .done)
        #expect(try fixture.read("debug/cma/reserved/alloc") == "102400\n")
        #expect(try agent.request(.cmaFree(area: "reserved", pages: 7)) == .done)
        #expect(try fixture.read("debug/cma/reserved/free") == "7\n")
    }

    @Test(arguments: ["../x", "..", ".", "", "a/b"])
    func cmaAllocRefusesBadAreaNames(_ area: String) throws {
        let fixture = try Self.makeCMAFixture()
        let agent = try AgentConnection(paths: fixture.paths)
        #expect(try agent.request(.cmaAlloc(area: area, pages: 1)).failureErrno == EINVAL)
        #expect(try agent.request(.cmaFree(area: area, pages: 1)).failureErrno == EINVAL)
    }

    @Test func cmaAllocOnMissingAreaIsENOENT() throws {
        let fixture = try Self.makeCMAFixture()
        let agent = try AgentConnection(paths: fixture.paths)
        #expect(try agent.request(.cmaAlloc(area: "nope", pages: 1)).failureErrno == ENOENT)
    }

    @Test func readFileHonoursTheLimit() throws {
        let fixture = try Fixture()
        let contents = String(repeating: "0123456789", count: 10)
        try fixture.write("data", contents)
        let agent = try AgentConnection(paths: fixture.paths)
        let path = fixture.path("data")
        #expect(try agent.request(.readFile(path: path, maxBytes: 10)) == .file(data: Array("0123456789".utf8), truncated: true))
        #expect(try agent.request(.readFile(path: path, maxBytes: 100)) == .file(data: Array(contents.utf8), truncated: false))
        #expect(try agent.request(.readFile(path: path, maxBytes: 1000)) == .file(data: Array(contents.utf8), truncated: false))
        #expect(try agent.request(.readFile(path: path, maxBytes: 0)) == .file(data: [], truncated: true))
        #expect(try agent.request(.readFile(path: fixture.path("missing"), maxBytes: 10)).failureErrno == ENOENT)
        #expect(try agent.request(.readFile(path: fixture.root, maxBytes: 10)).failureErrno == EISDIR)
    }

    @Test func readFileWorksOnProcFiles() throws {
        let fixture = try Fixture()
        let agent = try AgentConnection(paths: fixture.paths)
        guard case let .file(whole, false) = try agent.request(.readFile(path: "/proc/self/status", maxBytes: 1 << 20)) else {
            Issue.record("expected the whole file"); return
        }
        #expect(String(decoding: whole, as: UTF8.self).hasPrefix("Name:"))
        #expect(try agent.request(.readFile(path: "/proc/self/status", maxBytes: 16)) == .file(data: Array(whole[..<16]), truncated: true))
    }

    @Test func writeFileThenReadBack() throws {
        let fixture = try Fixture()
        let agent = try AgentConnection(paths: fixture.paths)
        let path = fixture.path("written")
        let data = (0..<200_000).map { UInt8(truncatingIfNeeded: $0 * 7) }
        #expect(try agent.request(.writeFile(path: path, data: data)) == .done)
        #expect(try agent.request(.readFile(path: path, maxBytes: 1 << 20)) == .file(data: data, truncated: false))
        #expect(try agent.request(.writeFile(path: path, data: [1])) == .done)
        #expect(try agent.request(.readFile(path: path, maxBytes: 10)) == .file(data: [1], truncated: false))
        #expect(try agent.request(.writeFile(path: fixture.path("no/such/dir"), data: [])).failureErrno == ENOENT)
    }

    @Test func listDirectory() throws {
        let fixture = try Fixture()
        try fixture.write("tree/file", "12345")
        try fixture.makeDirectory("tree/sub")
        symlink("file", fixture.path("tree/link"))
        let agent = try AgentConnection(paths: fixture.paths)
        guard case let .directory(entries) = try agent.request(.listDirectory(path: fixture.path("tree"))) else {
            Issue.record("expected a directory listing"); return
        }
        #expect(entries.map(\.name) == ["file", "link", "sub"])
        #expect(entries.map(\.kind) == [DirectoryEntry.file, DirectoryEntry.symlink, DirectoryEntry.directory])
        #expect(entries[0].size == 5)
        #expect(try agent.request(.listDirectory(path: fixture.path("missing"))).failureErrno == ENOENT)
        #expect(try agent.request(.listDirectory(path: fixture.path("tree/file"))).failureErrno == ENOTDIR)
    }

    @Test func kernelConfigThroughZcat() throws {
        let fixture = try Fixture()
        // A stand-in for busybox: `busybox zcat FILE` -> `gzip -dc FILE`.
        try fixture.write("bin/busybox", "#!/bin/sh\nshift\nexec gzip -dc \"$@\"\n", mode: 0o755)
        let agent = try AgentConnection(paths: fixture.paths)
        #expect(try agent.request(.kernelConfig).failureErrno == ENOENT)

        try fixture.write("config", "CONFIG_CMA=y\nCONFIG_CMA_DEBUGFS=y\n")
        try fixture.makeDirectory("proc")
        let gzip = try agent.request(.exec(ExecRequest(
            argv: ["/bin/sh", "-c", "gzip -c config > proc/config.gz"], cwd: fixture.root)))
        try #require(gzip.execResult?.termination == .exited(0))
        #expect(try agent.request(.kernelConfig) == .kernelConfig(text: "CONFIG_CMA=y\nCONFIG_CMA_DEBUGFS=y\n"))

        try fixture.write("proc/config.gz", "not gzip")
        #expect(try agent.request(.kernelConfig).failureErrno == EIO)
    }

    @Test func powerOffRunsTheActionAndEndsServe() throws {
        let fixture = try Fixture()
        let agent = try AgentConnection(paths: fixture.paths)
        #expect(try agent.request(.poweroff) == .done)
        #expect(try agent.readFrame() == nil, "serve() should return and close its end")
        #expect(agent.powerLog.recorded == [.poweroff])
    }

    @Test func rebootRunsTheAction() throws {
        let fixture = try Fixture()
        let agent = try AgentConnection(paths: fixture.paths)
        #expect(try agent.request(.reboot) == .done)
        #expect(try agent.readFrame() == nil)
        #expect(agent.powerLog.recorded == [.reboot])
    }

    @Test func garbageBeforeARequestIsSkipped() throws {
        let fixture = try Fixture()
        try fixture.write("proc/meminfo", "MemTotal: 1 kB\n")
        let agent = try AgentConnection(paths: fixture.paths)
        agent.send(Array("line noise from a UART CMAL\u{1}".utf8) + [0, 0xFF, 0x43, 0x4D])
        let id = agent.sendRequest(.meminfo)
        guard case let .meminfo(info) = try agent.response(for: id) else { Issue.record("no meminfo"); return }
        #expect(info["MemTotal"] == 1)
    }

    @Test func undecodableRequestGetsEINVAL() throws {
        let fixture = try Fixture()
        let agent = try AgentConnection(paths: fixture.paths)
        agent.send(Frame(kind: .request, id: 77, payload: [0xEE, 1, 2]).encoded())
        #expect(try agent.response(for: 77).failureErrno == EINVAL)
        agent.send(Frame(kind: .request, id: 78, payload: AgentRequest.uname.encode() + [0]).encoded())
        #expect(try agent.response(for: 78).failureErrno == EINVAL)
        // Still serving.
        guard case .uname = try agent.request(.uname) else { Issue.record("no uname"); return }
    }

    @Test func nonRequestFramesAreIgnored() throws {
        let fixture = try Fixture()
        let agent = try AgentConnection(paths: fixture.paths)
        agent.send(Frame(kind: .event, id: 0, payload: AgentEvent.log("hi").encode()).encoded())
        agent.send(Frame(kind: .response, id: 5, payload: AgentResponse.done.encode()).encoded())
        guard case .uname = try agent.request(.uname) else { Issue.record("no uname"); return }
    }

    @Test func pipelinedRequestsAreAnsweredInOrder() throws {
        let fixture = try Fixture()
        try fixture.write("proc/vmstat", "a 1\n")
        let agent = try AgentConnection(paths: fixture.paths)
        var bytes = [UInt8]()
        for id in UInt32(100)..<110 {
            bytes += Frame(kind: .request, id: id, payload: AgentRequest.vmstat.encode()).encoded()
        }
        agent.send(bytes)
        for id in UInt32(100)..<110 {
            #expect(try agent.response(for: id) == .vmstat([Counter(name: "a", value: 1)]))
        }
    }
}
