import Foundation
import Testing
import LabCore
@testable import LabRuntime

/// The cpio writer checked by the real GNU cpio: listing, modes, contents and symlinks.
@Suite struct CpioAgainstCpioTests {
    @Test func gnuCpioReadsWhatWeWrite() throws {
        let dir = NSTemporaryDirectory() + "cmalab-cpio-\(getpid())"
        try FileManager.default.createDirectory(atPath: dir + "/out", withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: dir) }
        var w = CpioWriter()
        w.directoryTree("usr/bin")
        w.file("init", contents: Array("#!/bin/sh\necho hi\n".utf8), mode: 0o755)
        w.file("usr/bin/data", contents: Array(repeating: 0xAB, count: 1001))
        w.symlink("usr/bin/sh", target: "/bin/busybox")
        try Files.write(w.finish(), to: dir + "/a.cpio")

        let listing = try runCapturing(["sh", "-c", "cpio -it --quiet < \(dir)/a.cpio"])
        #expect(listing.split(separator: "\n") == ["usr", "usr/bin", "init", "usr/bin/data", "usr/bin/sh"])

        _ = try runCapturing(["sh", "-c", "cpio -id --quiet < \(dir)/a.cpio"], workingDirectory: dir + "/out")
        let initAttrs = try FileManager.default.attributesOfItem(atPath: dir + "/out/init")
        #expect((initAttrs[.posixPermissions] as? Int) == 0o755)
        #expect(try String(contentsOfFile: dir + "/out/init", encoding: .utf8) == "#!/bin/sh\necho hi\n")
        #expect(FileManager.default.contents(atPath: dir + "/out/usr/bin/data") == Data(repeating: 0xAB, count: 1001))
        #expect(try FileManager.default.destinationOfSymbolicLink(atPath: dir + "/out/usr/bin/sh") == "/bin/busybox")
    }
}

/// The initramfs's /init for each kind of agent, read back with GNU cpio: an agent without the Swift runtime
/// (busybox stands in: a static binary with no swift5_* sections) is linked as /init; one with the runtime
/// (this test binary) gets the wrapper that mounts /proc first.
@Suite struct InitramfsLayoutTests {
    func unpack(agent: String) throws -> (dir: String, initIsLink: Bool) {
        let dir = NSTemporaryDirectory() + "cmalab-initramfs-\(getpid())-\(UUID().uuidString)"
        try FileManager.default.createDirectory(atPath: dir + "/out", withIntermediateDirectories: true)
        let store = InitramfsStore(paths: LabPaths(home: dir, cache: dir + "/cache", runs: dir + "/runs"))
        let archive = try store.ensure(.agent(agent))
        _ = try runCapturing(["sh", "-c", "cpio -id --quiet < \(archive)"], workingDirectory: dir + "/out")
        let link = try? FileManager.default.destinationOfSymbolicLink(atPath: dir + "/out/init")
        #expect(FileManager.default.contents(atPath: dir + "/out/sbin/cmalab-agent") == FileManager.default.contents(atPath: agent))
        return (dir, link == "/sbin/cmalab-agent")
    }

    @Test func anAgentWithoutTheRuntimeIsInit() throws {
        let (dir, isLink) = try unpack(agent: InitramfsStore.busyboxPath)
        defer { try? FileManager.default.removeItem(atPath: dir) }
        #expect(isLink)
    }

    @Test func anAgentWithTheRuntimeGetsTheWrapper() throws {
        let me = try FileManager.default.destinationOfSymbolicLink(atPath: "/proc/self/exe")
        let (dir, isLink) = try unpack(agent: me)
        defer { try? FileManager.default.removeItem(atPath: dir) }
        #expect(!isLink)
        let wrapper = try String(contentsOfFile: dir + "/out/init", encoding: .utf8)
        #expect(wrapper == InitramfsStore.agentInit)
        #expect(wrapper.contains("mount -t proc proc /proc") && wrapper.hasSuffix("exec /sbin/cmalab-agent"))
    }
}
