import Foundation
import Glibc
import Testing
@testable import AgentCore

@Suite struct ToolsTests {
    @Test func timedWriteWritesOnceAndReportsTheErrno() throws {
        let path = NSTemporaryDirectory() + "cmalab-tw-\(UUID().uuidString)"
        _ = FileManager.default.createFile(atPath: path, contents: nil)
        defer { try? FileManager.default.removeItem(atPath: path) }
        let (ns, err) = AgentTools.timedWrite(path: path, value: "262144")
        #expect(err == 0 && ns > 0)
        #expect(try String(contentsOfFile: path, encoding: .utf8) == "262144\n")
        // Like debugfs `alloc`, the file must exist: no O_CREAT.
        #expect(AgentTools.timedWrite(path: path + ".missing", value: "1").1 == ENOENT)
        // A write the kernel refuses comes back as its errno (/proc/self/stat is read-only: EIO or EACCES).
        #expect(AgentTools.timedWrite(path: "/proc/self/stat", value: "1").1 != 0)
    }

    @Test func usageErrorsExitWithTwo() {
        #expect(AgentTools.run(["agent", "hold-memory"]) == 2)
        #expect(AgentTools.run(["agent", "hold-memory", "10", "glue"]) == 2)
        #expect(AgentTools.run(["agent", "timed-write", "/x"]) == 2)
        #expect(AgentTools.run(["agent", "fly"]) == 2)
    }
}
