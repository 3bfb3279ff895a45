import Foundation
import Testing
@testable import LabRuntime

/// The `/tmp/cmalab-XXXXXX` socket directory of a run whose cmalab died is removed by the next cmalab.
@Suite struct SocketDirectoryReaperTests {
    static func makeTemp(_ template: String) -> String {
        var t = Array(template.utf8CString)
        return String(cString: t.withUnsafeMutableBufferPointer { mkdtemp($0.baseAddress!)! })
    }

    /// A run directory under `root` owned by `owner` (with its start time when given), listing `sockdir`.
    static func fakeRun(_ root: String, _ name: String, owner: pid_t, start: UInt64?, sockdir: String) throws {
        let dir = root + "/" + name
        try Files.mkdirs(dir)
        try Files.write("\(owner)\n", to: dir + "/owner.pid")
        if let start { try Files.write("\(start)\n", to: dir + "/owner.start") }
        try Files.write(sockdir + "\n", to: dir + "/sockdir")
    }

    @Test func socketDirectoriesOfDeadOwnersAreRemovedAndLiveOnesKept() throws {
        let root = Self.makeTemp(NSTemporaryDirectory() + "runs-reaper-XXXXXX")
        defer { try? FileManager.default.removeItem(atPath: root) }
        let dead = try ChildProcess(["true"], stdout: .null, stderr: .null)
        _ = dead.wait()
        let orphan = Self.makeTemp("/tmp/cmalab-XXXXXX")
        let live = Self.makeTemp("/tmp/cmalab-XXXXXX")
        let foreign = Self.makeTemp(NSTemporaryDirectory() + "not-a-socket-dir-XXXXXX")
        defer { for d in [orphan, live, foreign] { try? FileManager.default.removeItem(atPath: d) } }
        _ = FileManager.default.createFile(atPath: orphan + "/agent", contents: Data())
        try Self.fakeRun(root, "dead", owner: dead.pid, start: nil, sockdir: orphan)
        try Self.fakeRun(root, "alive", owner: getpid(), start: OrphanReaper.startTime(of: getpid()), sockdir: live)
        try Self.fakeRun(root, "hostile", owner: dead.pid, start: nil, sockdir: foreign)

        OrphanReaper.reap(runs: root)

        #expect(!Files.exists(orphan), "the dead run's socket directory stayed")
        #expect(Files.exists(live), "a live run's socket directory was removed")
        #expect(Files.exists(foreign), "a sockdir file pointing outside /tmp/cmalab-XXXXXX was followed")
    }

    @Test func aRunDirectoryRecordsItsSocketDirectoryUntilItCloses() throws {
        let root = Self.makeTemp(NSTemporaryDirectory() + "runs-record-XXXXXX")
        defer { try? FileManager.default.removeItem(atPath: root) }
        let run = try RunDirectory(root: root, name: "x")
        #expect(try Files.read(run.file("sockdir")) == run.socketDirectory + "\n")
        #expect(try Files.read(run.file("owner.pid")) == "\(getpid())\n")
        run.closeSockets()
        #expect(!Files.exists(run.socketDirectory))
        #expect(!Files.exists(run.file("sockdir")))
    }
}
