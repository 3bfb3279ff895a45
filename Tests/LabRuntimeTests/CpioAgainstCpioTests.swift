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
