import Foundation
import Testing
@testable import LabRuntime

@Suite struct KernelStoreTests {
    func store() throws -> (KernelStore, String) {
        let cache = NSTemporaryDirectory() + "cmalab-store-\(getpid())-\(UUID().uuidString)"
        try FileManager.default.createDirectory(atPath: cache + "/kernels", withIntermediateDirectories: true)
        return (KernelStore(paths: LabPaths(home: "/nonexistent", cache: cache, runs: cache + "/runs"), progress: Progress(quiet: true)), cache)
    }

    @Test func compilerIdentityIsGccsFirstLineAndIsKeptForTheSameBinary() throws {
        let (s, cache) = try store()
        defer { try? FileManager.default.removeItem(atPath: cache) }
        let gcc = try runCapturing(["gcc", "--version"]).split(separator: "\n").first.map(String.init)
        #expect(try s.compilerIdentity() == gcc)
        let file = cache + "/kernels/compiler"
        let text = try String(contentsOfFile: file, encoding: .utf8)
        let lines = text.split(separator: "\n").map(String.init)
        #expect(lines.count == 2 && lines[1] == gcc)
        #expect(lines[0].contains("gcc"), "the stamp names the resolved binary: \(lines[0])")
        // The kept answer is what comes back while the stamp matches ...
        try (lines[0] + "\nkept identity\n").write(toFile: file, atomically: true, encoding: .utf8)
        #expect(try s.compilerIdentity() == "kept identity")
        // ... and gcc is asked again when the binary is not the one recorded.
        try ("/usr/bin/some-other-gcc 1 1\nkept identity\n").write(toFile: file, atomically: true, encoding: .utf8)
        #expect(try s.compilerIdentity() == gcc)
    }

    @Test func fileIdentityChangesWhenTheFileIsWrittenEvenWithItsMtimeRestored() throws {
        let path = NSTemporaryDirectory() + "cmalab-identity-\(getpid())"
        defer { unlink(path) }
        try "abc".write(toFile: path, atomically: false, encoding: .utf8)
        let before = try #require(Files.identity(path))
        var st = stat()
        stat(path, &st)
        usleep(20_000)
        let fd = open(path, O_WRONLY)
        _ = "x".withCString { write(fd, $0, 1) }
        close(fd)
        var times = [timespec](arrayLiteral: st.st_atim, st.st_mtim)
        utimensat(AT_FDCWD, path, &times, 0)
        let after = try #require(Files.identity(path))
        #expect(before != after, "ctime moves on: \(before) vs \(after)")
    }
}
