import Foundation
import Testing
import LabCore
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

    /// A finished build directory of `source` as Kbuild leaves it, `<cache>/build/<name>`: the `source` link and a
    /// kernel image holding `marker`, dated `age` seconds ago.
    static func fakeBuild(_ cache: String, name: String, source: String, marker: String, age: Int) throws {
        let dir = cache + "/build/" + name
        let image = dir + "/" + Architecture.default.kernelImagePath
        try FileManager.default.createDirectory(atPath: Path.directory(of: image), withIntermediateDirectories: true)
        try FileManager.default.createSymbolicLink(atPath: dir + "/source", withDestinationPath: source)
        try marker.write(toFile: image, atomically: false, encoding: .utf8)
        let when = Date().addingTimeInterval(-Double(age))
        try FileManager.default.setAttributes([.modificationDate: when], ofItemAtPath: image)
    }

    /// Holds the lock `ensure` takes while it builds the recipe of build directory `name`, through an open file of
    /// its own (flock locks belong to an open file, so this conflicts with any other open, as another process would).
    static func holdBuildLock(_ cache: String, _ name: String) throws -> Int32 {
        try FileManager.default.createDirectory(atPath: cache + "/kernels/locks", withIntermediateDirectories: true)
        let fd = open(cache + "/kernels/locks/\(name).lock", O_RDWR | O_CREAT | O_CLOEXEC, 0o644)
        guard fd >= 0, flock(fd, LOCK_EX | LOCK_NB) == 0 else { throw CocoaError(.fileLocking) }
        return fd
    }

    /// A warm start copies another recipe's build directory only while it holds that recipe's lock: a directory
    /// another cmalab process is building (its lock held) is passed over for an idle one, or the build starts cold.
    @Test func warmStartNeverCopiesABuildDirectoryWhoseRecipeIsLocked() throws {
        let (s, cache) = try store()
        defer { try? FileManager.default.removeItem(atPath: cache) }
        let source = cache + "/src/linux"
        try FileManager.default.createDirectory(atPath: source, withIntermediateDirectories: true)
        let older = "0123456789abcdef01234567", newer = "fedcba9876543210fedcba98"
        try Self.fakeBuild(cache, name: older, source: source, marker: "older", age: 600)
        try Self.fakeBuild(cache, name: newer, source: source, marker: "newer", age: 10)
        #expect(s.warmBuildDirectory(source: source) == cache + "/build/" + newer, "the newest build is the first choice")
        let out = cache + "/build/00000000000000000000aaaa"
        let image = "/" + Architecture.default.kernelImagePath

        // Another process is building the newest one: the older, idle one is copied.
        let busyNewer = try Self.holdBuildLock(cache, newer)
        let from = s.startWarm(out: out, source: source, architecture: .default)
        #expect(from == older)
        #expect((try? String(contentsOfFile: out + image, encoding: .utf8)) == "older")

        // Both busy: a cold start, nothing copied.
        let busyOlder = try Self.holdBuildLock(cache, older)
        try? FileManager.default.removeItem(atPath: out)
        #expect(s.startWarm(out: out, source: source, architecture: .default) == nil)
        #expect(!FileManager.default.fileExists(atPath: out))

        // Idle again: the newest is copied, and its lock is free once the copy is done.
        close(busyNewer)
        close(busyOlder)
        #expect(s.startWarm(out: out, source: source, architecture: .default) == newer)
        #expect((try? String(contentsOfFile: out + image, encoding: .utf8)) == "newer")
        let after = try Self.holdBuildLock(cache, newer)
        close(after)
    }
}
