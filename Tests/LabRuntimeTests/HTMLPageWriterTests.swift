import Foundation
import Testing
import LabCore
@testable import LabRuntime

/// `report html` over a crafted results file: run directories outside the runs are neither linked nor read.
@Suite struct HTMLPageWriterTests {
    /// A temporary folder holding one run directory (`runs/r1` with a `console.log`), removed by the caller.
    static func folder() throws -> String {
        let dir = NSTemporaryDirectory() + "cmalab-htmlwriter-\(UUID().uuidString)"
        try FileManager.default.createDirectory(atPath: dir + "/runs/r1", withIntermediateDirectories: true)
        try Data("boot\n".utf8).write(to: URL(fileURLWithPath: dir + "/runs/r1/console.log"))
        return dir
    }

    static func verdict(_ runDirectory: String) -> Verdict {
        Verdict(profile: "p-\(runDirectory.count)", image: "cma-6.12", kind: .pass, checks: [], runDirectory: runDirectory)
    }

    @Test func schemeAndOutsideRunDirectoriesAreNotLinkedOrRead() throws {
        let dir = try Self.folder()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let page = dir + "/report.html"
        try HTMLPageWriter.write([Self.verdict("javascript:alert(1)"), Self.verdict("/etc"), Self.verdict(dir + "/runs/../../")],
                                 meta: nil, title: "t", to: page)
        let html = try String(contentsOfFile: page, encoding: .utf8)
        #expect(!html.contains("href=\"javascript:"))
        #expect(!html.contains("href=\"/etc"))
        #expect(!html.contains("href=\"../"))
        // /etc's files are not listed: its listing would name passwd (or at least hostname).
        #expect(!html.contains("passwd") && !html.contains(">hostname<"))
    }

    @Test func runDirectoriesUnderTheRootsAreListedAndLinked() throws {
        let dir = try Self.folder()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let page = dir + "/report.html"
        try HTMLPageWriter.write([Self.verdict(dir + "/runs/r1"), Self.verdict("/etc")], meta: nil, title: "t", to: page, runRoots: [dir])
        let html = try String(contentsOfFile: page, encoding: .utf8)
        #expect(html.contains("<a href=\"runs/r1/console.log\">console.log</a>"))
        #expect(!html.contains("href=\"/etc") && !html.contains("passwd"))
    }
}
