import Testing
@testable import LabCore

@Suite struct CpioTests {
    @Test func newcLayout() {
        var w = CpioWriter()
        w.directory("bin")
        w.file("init", contents: Array("#!/bin/sh\n".utf8), mode: 0o755)
        w.symlink("bin/sh", target: "/bin/busybox")
        let bytes = w.finish()
        #expect(bytes.count % 512 == 0)
        let text = String(decoding: bytes, as: UTF8.self)
        #expect(text.hasPrefix("070701"))
        // Header fields are 8 hex digits: mode of the directory is 040755.
        #expect(text.dropFirst(6 + 8).prefix(8) == "000041ED")
        #expect(text.contains("TRAILER!!!"))
        #expect(text.contains("init\0"))
    }

    @Test func directoryTreeAddsMissingParentsOnce() {
        var w = CpioWriter()
        w.directoryTree("usr/local/bin")
        w.directoryTree("usr/local/sbin")
        #expect(w.contains("usr") && w.contains("usr/local") && w.contains("usr/local/bin") && w.contains("usr/local/sbin"))
    }
}
