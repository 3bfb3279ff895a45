import Foundation
#if canImport(FoundationXML)
import FoundationXML
#endif
import Testing
import LabCore
@testable import LabRuntime

extension Integration {
/// `cmalab run --html` on real boots, and `cmalab report html` on the results it wrote: the page parses as
/// XML, the seed's area is drawn below 2 GiB, the crash profile's fixed region over the PCI hole.
@Suite struct HTMLReportIntegrationTests {
    static func elements(_ e: XMLElement, _ name: String) -> [XMLElement] {
        var out: [XMLElement] = []
        for child in e.children ?? [] {
            guard let c = child as? XMLElement else { continue }
            if c.localName == name { out.append(c) }
            out += elements(c, name)
        }
        return out
    }

    static func attr(_ e: XMLElement, _ name: String) -> String? { e.attributes?.first { $0.name == name }?.stringValue }
    static func num(_ e: XMLElement, _ name: String) -> Double { Double(attr(e, name) ?? "") ?? .nan }

    /// The memory-map SVGs of a page, as text, in page order.
    static func svgTexts(_ html: String) -> [String] {
        html.components(separatedBy: "<svg xmlns=\"http://www.w3.org/2000/svg\" class=\"memory-map\"").dropFirst().map {
            String($0[..<($0.range(of: "</svg>")?.upperBound ?? $0.endIndex)])
        }
    }

    @Test func runHTMLShowsTheSeedBelowTwoGiBAndTheCrashOverTheHole() throws {
        let dir = NSTemporaryDirectory() + "cmalab-html-\(UUID().uuidString)"
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let profiles = IT.lab.paths.home + "/Profiles/"
        let r = try IT.runCLI(["run", profiles + "seed-1g-at-1-2g.yaml", profiles + "crash-fixed-in-ram-hole.yaml", "--accel", "tcg",
                               "--html", dir + "/report.html", "--json", dir + "/r.json"])
        #expect(r.status == 0, "stdout:\n\(r.stdout)\nstderr:\n\(r.stderr)")
        let html = try String(contentsOfFile: dir + "/report.html", encoding: .utf8)
        let root = try #require(try XMLDocument(xmlString: html, options: []).rootElement())
        #expect(root.localName == "html")
        let sections = Self.elements(root, "section").filter { (Self.attr($0, "class") ?? "").hasPrefix("run ") }
        #expect(sections.count == 2)
        guard sections.count == 2 else { return }

        // The seed: one CMA area in usable RAM, ending at or below 2 GiB, drawn left of the 2 GiB tick.
        let seedMap = try #require(Self.elements(sections[0], "svg").first { Self.attr($0, "class") == "memory-map" })
        let rects = Self.elements(seedMap, "rect")
        let area = try #require(rects.first { Self.attr($0, "data-kind") == "cma" })
        let end = try #require(Self.attr(area, "data-end").flatMap { UInt64($0.dropFirst(2), radix: 16) })
        #expect(end <= 2 << 30, "seed area ends at \(end)")
        let twoGiB = try #require(Self.elements(seedMap, "text").first { Self.attr($0, "data-address") == "0x80000000" })
        #expect(Self.num(area, "x") + Self.num(area, "width") <= Self.num(twoGiB, "x") + 0.1)
        #expect(!rects.contains { Self.attr($0, "data-kind") == "cma-not-ram" })
        #expect(rects.contains { Self.attr($0, "data-kind") == "initrd" } && rects.contains { Self.attr($0, "data-kind") == "kernel" })

        // The crash: the fixed region is not RAM, and covers the PCI hole.
        let crashMap = try #require(Self.elements(sections[1], "svg").first { Self.attr($0, "class") == "memory-map" })
        let crashRects = Self.elements(crashMap, "rect")
        let bad = try #require(crashRects.first { Self.attr($0, "data-kind") == "cma-not-ram" })
        #expect(Self.attr(bad, "data-start") == "0xc0000000")
        let hole = try #require(crashRects.first { Self.attr($0, "data-kind") == "pci-hole" })
        #expect(Self.num(bad, "x") <= Self.num(hole, "x") + 0.1 && Self.num(bad, "x") + Self.num(bad, "width") >= Self.num(hole, "x") + Self.num(hole, "width") - 0.1)
        #expect(Self.elements(sections[1], "p").contains { Self.attr($0, "class") == "crash-box" })

        // Artifact links are relative to the page and lead to the run's files.
        let links = Self.elements(root, "a").compactMap { Self.attr($0, "href") }.filter { !$0.hasPrefix("#") }
        #expect(links.contains { $0.hasSuffix("/console.log") } && links.contains { $0.hasSuffix("/reproduce.sh") })
        for link in links {
            #expect(!link.hasPrefix("/"), "absolute link \(link)")
            #expect(FileManager.default.fileExists(atPath: dir + "/" + (link.removingPercentEncoding ?? link)), "dangling link \(link)")
        }

        // `report html` on the JSON draws the same pictures.
        let again = try IT.runCLI(["report", "html", dir + "/r.json", "-o", dir + "/again.html"])
        #expect(again.status == 0, "\(again.stderr)")
        let html2 = try String(contentsOfFile: dir + "/again.html", encoding: .utf8)
        #expect(Self.svgTexts(html2) == Self.svgTexts(html) && Self.svgTexts(html).count == 2)
        // The default output name is the results file's, with .html.
        let defaulted = try IT.runCLI(["report", "html", dir + "/r.json"])
        #expect(defaulted.status == 0 && FileManager.default.fileExists(atPath: dir + "/r.html"))

        let (verdicts, _) = try Report.decodeResults(Array(try Data(contentsOf: URL(fileURLWithPath: dir + "/r.json"))))
        #expect(IT.qemuProcesses(ofRuns: verdicts.map(\.runDirectory)).isEmpty)
    }

    @Test func reportHTMLRefusesAFileThatIsNotResults() throws {
        let dir = NSTemporaryDirectory() + "cmalab-html-\(UUID().uuidString)"
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: dir) }
        try "{\"schema\": \"other/1\"}".write(toFile: dir + "/x.json", atomically: true, encoding: .utf8)
        let r = try IT.runCLI(["report", "html", dir + "/x.json"])
        #expect(r.status == 2)
        #expect(r.stderr.contains("not a cmalab results file"))
        #expect(!FileManager.default.fileExists(atPath: dir + "/x.html"))
    }
}
}
