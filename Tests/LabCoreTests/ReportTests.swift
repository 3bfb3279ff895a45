import Foundation
#if canImport(FoundationXML)
import FoundationXML
#endif
import Testing
@testable import LabCore

@Suite struct ReportTests {
    static let meta = ReportMeta(cmalabVersion: "0.1.0", started: "2026-11-25T08:19:57Z", host: "builder", accelerator: "tcg")

    static func sample() -> [Verdict] {
        var boot = BootLogFacts()
        boot.reserved = [ReservedArea(sizeMiB: 1024, base: 0x3fc0_0000, node: -1)]
        boot.memoryCmaReservedKiB = 1_048_576
        boot.cmaLines = ["cma: Reserved 1024 MiB at 0x000000003fc00000 on node -1"]
        var obs = Observations(profile: "fixed-range", image: "cma-6.12", machine: MachineSpec(memory: .gib(4)), commandLine: "console=ttyS0 cma=1G@1-2G",
                               accelerator: "tcg", ending: .poweredOff, boot: boot)
        obs.kernelRelease = "6.12.117"
        obs.meminfo = [MeminfoSnapshot(label: "boot", cmaTotalKiB: 1_048_576, cmaFreeKiB: 1_048_000, memTotalKiB: 4_000_000, memFreeKiB: nil)]
        obs.areas = [AreaSnapshot(name: "reserved", basePFN: 0x3fc00, count: 262_144, used: 0, maxchunk: 262_144, orderPerBit: 0,
                                  sysfs: ["alloc_pages_success": 0, "alloc_pages_fail": 0])]
        var step = StepRecord(index: 0, kind: .alloc, summary: "alloc 10 pages", status: 0, seconds: 0.01)
        step.output = "ok"
        obs.steps = [step]
        obs.crash = CrashReport(kind: .panic, headline: "BUG: x", panicLine: "Kernel panic - not syncing: y")
        obs.agentReadySeconds = 2.5
        obs.wallSeconds = 3.25
        obs.runDirectory = "runs/20261125-081957-boot"
        return [
            Verdict(profile: "default", image: "cma-6.12", kind: .pass,
                    checks: [CheckResult(name: "outcome", expected: "booted", observed: "booted", passed: true)],
                    consoleTail: ["[    2.7] reboot: Power down"], seconds: 3.04, runDirectory: "runs/a"),
            Verdict(profile: "fixed-range", image: "cma-6.12", kind: .fail,
                    checks: [
                        CheckResult(name: "outcome", expected: "booted", observed: "booted", passed: true),
                        CheckResult(name: "area.base", expected: "0x40000000", observed: "0x3fc00000", passed: false),
                        CheckResult(name: "area.size", expected: "1024 MiB", observed: "512 MiB", passed: false),
                    ],
                    observations: obs, consoleTail: ["a < b && \"c\" 'd'", "bell\u{1}here\u{1B}[0m", "tab\tok"], seconds: 12.345,
                    runDirectory: "runs/20261125-081957-boot"),
            Verdict(profile: "hole", image: "cma-6.1", kind: .error, checks: [],
                    error: "qemu-system-x86_64 not found in PATH", seconds: 0.04),
        ]
    }

    // MARK: - Table

    @Test func tableRowsDetailsAndSummary() {
        let text = Report.table(Self.sample(), color: false)
        let lines = text.split(separator: "\n", omittingEmptySubsequences: false).map(String.init)
        #expect(lines.first?.hasPrefix("PROFILE") == true)
        for column in ["IMAGE", "VERDICT", "TIME", "WHY"] { #expect(lines[0].contains(column)) }
        #expect(lines[1].hasPrefix("default "))
        #expect(lines[1].contains("PASS"))
        #expect(lines[1].contains("3.0s"))
        #expect(lines[2].contains("FAIL"))
        #expect(lines[2].contains("12.3s"))
        #expect(lines[2].hasSuffix("area.base: expected 0x40000000, observed 0x3fc00000"))
        #expect(lines[3].contains("ERROR"))
        #expect(lines[3].contains("0.0s"))
        #expect(lines[3].hasSuffix("qemu-system-x86_64 not found in PATH"))
        // Columns line up: VERDICT starts at the same offset in every row.
        let offset = lines[0].range(of: "VERDICT")!.lowerBound.utf16Offset(in: lines[0])
        #expect(lines[1].range(of: "PASS")!.lowerBound.utf16Offset(in: lines[1]) == offset)
        #expect(lines[3].range(of: "ERROR")!.lowerBound.utf16Offset(in: lines[3]) == offset)
        // Details: every check of the failed verdict, failed ones marked; the error.
        #expect(text.contains("fixed-range on cma-6.12: FAIL (runs/20261125-081957-boot)"))
        #expect(text.contains("  ok      outcome: expected booted, observed booted"))
        #expect(text.contains("  FAILED  area.base: expected 0x40000000, observed 0x3fc00000"))
        #expect(text.contains("  FAILED  area.size: expected 1024 MiB, observed 512 MiB"))
        #expect(text.contains("hole on cma-6.1: ERROR"))
        #expect(text.contains("  error: qemu-system-x86_64 not found in PATH"))
        #expect(!text.contains("default on cma-6.12"))
        #expect(!text.contains("\u{1B}"))
        // The last line.
        #expect(text.hasSuffix("\n1 passed, 1 failed, 1 errors\n"))
        #expect(lines.dropLast().last == "1 passed, 1 failed, 1 errors")
    }

    @Test func tableColorsOnlyWhenAsked() {
        let text = Report.table(Self.sample(), color: true)
        #expect(text.contains("\u{1B}[32mPASS\u{1B}[0m"))
        #expect(text.contains("\u{1B}[31mFAIL\u{1B}[0m"))
        #expect(text.contains("\u{1B}[33mERROR\u{1B}[0m"))
        #expect(text.hasSuffix("1 passed, 1 failed, 1 errors\n"))
    }

    @Test func tableSummaryCounts() {
        let pass = Verdict(profile: "p", image: "i", kind: .pass, checks: [])
        let fail = Verdict(profile: "f", image: "i", kind: .fail,
                           checks: [CheckResult(name: "n", expected: "1", observed: "2\nmore", passed: false)])
        let text = Report.table(Array(repeating: pass, count: 9) + [fail], color: false)
        #expect(text.hasSuffix("\n9 passed, 1 failed, 0 errors\n"))
        // Newlines inside values do not break rows.
        #expect(text.contains("n: expected 1, observed 2 more"))
        #expect(Report.table([], color: true) == "0 passed, 0 failed, 0 errors\n")
    }

    @Test func fixedDecimals() {
        #expect(Report.fixed(12.345, digits: 1) == "12.3")
        #expect(Report.fixed(0.05, digits: 1) == "0.1")
        #expect(Report.fixed(0, digits: 3) == "0.000")
        #expect(Report.fixed(1.0005, digits: 3) == "1.001" || Report.fixed(1.0005, digits: 3) == "1.000")
        #expect(Report.fixed(-2.5, digits: 1) == "-2.5")
        #expect(Report.fixed(.nan, digits: 1) == "0.0")
        #expect(Report.fixed(.infinity, digits: 0) == "0")
    }

    // MARK: - JSON

    @Test func jsonRoundTrip() throws {
        let verdicts = Self.sample()
        let bytes = try Report.json(verdicts, meta: Self.meta)
        let (decoded, meta) = try Report.decodeResults(bytes)
        #expect(decoded == verdicts)
        #expect(meta == Self.meta)
    }

    @Test func jsonKeysAreStable() throws {
        let text = String(decoding: try Report.json(Self.sample(), meta: Self.meta), as: UTF8.self)
        for key in ["\"schema\" : \"cmalab-results/1\"", "\"meta\" : {", "\"cmalabVersion\" : \"0.1.0\"",
                    "\"started\" : \"2026-11-25T08:19:57Z\"", "\"host\" : \"builder\"", "\"accelerator\" : \"tcg\"",
                    "\"summary\" : {", "\"passed\" : 1", "\"failed\" : 1", "\"errors\" : 1", "\"results\" : [",
                    "\"profile\" : \"fixed-range\"", "\"kind\" : \"fail\"", "\"checks\" : [", "\"expected\" : \"0x40000000\"",
                    "\"observed\" : \"0x3fc00000\"", "\"passed\" : false", "\"consoleTail\" : [", "\"seconds\" : 12.345",
                    "\"runDirectory\" : \"runs/20261125-081957-boot\"", "\"observations\" : {", "\"boot\" : {",
                    "\"sizeMiB\" : 1024", "\"base\" : 1069547520", "\"node\" : -1", "\"memoryCmaReservedKiB\" : 1048576",
                    "\"cmaTotalKiB\" : 1048576", "\"basePFN\" : 261120", "\"alloc_pages_success\" : 0", "\"ending\" : \"powered-off\"",
                    "\"error\" : \"qemu-system-x86_64 not found in PATH\"", "\"panicLine\" : \"Kernel panic - not syncing: y\""] {
            #expect(text.contains(key), "missing \(key)")
        }
        // Sorted keys: the top-level order is meta, results, schema, summary.
        let order = ["meta", "results", "schema", "summary"].map { text.range(of: "\n  \"\($0)\" : ")!.lowerBound }
        #expect(order == order.sorted())
        #expect(text.hasSuffix("}\n"))
        // Absent optionals are left out rather than written as null.
        #expect(!text.contains("null"))
    }

    @Test func errorCodeIsAnOptionalKeyOfErrorVerdicts() throws {
        let coded = Verdict(profile: "p", image: "i", kind: .error, checks: [], error: "qemu-system-x86_64 not found", errorCode: "missingTool")
        let text = String(decoding: try Report.json([coded], meta: Self.meta), as: UTF8.self)
        #expect(text.contains("\"errorCode\" : \"missingTool\""))
        #expect(try Report.decodeResults(Array(text.utf8)).0 == [coded])
        // Verdicts without a code (pass, fail, older results files) leave the key out and read back as nil.
        let plain = String(decoding: try Report.json(Self.sample(), meta: Self.meta), as: UTF8.self)
        #expect(!plain.contains("errorCode"))
        #expect(try Report.decodeResults(Array(plain.utf8)).0.allSatisfy { $0.errorCode == nil })
    }

    @Test func jsonNonFiniteNumbersSurvive() throws {
        let v = Verdict(profile: "p", image: "i", kind: .pass, checks: [], seconds: .infinity)
        let (decoded, _) = try Report.decodeResults(try Report.json([v], meta: Self.meta))
        #expect(decoded.first?.seconds == .infinity)
    }

    @Test func decodeRejectsOtherSchemas() throws {
        #expect(throws: ReportError.self) {
            _ = try Report.decodeResults(Array("{\"schema\": \"something/2\", \"results\": []}".utf8))
        }
        #expect(throws: (any Error).self) { _ = try Report.decodeResults(Array("not json".utf8)) }
        #expect(throws: (any Error).self) { _ = try Report.decodeResults([]) }
    }

    // MARK: - JUnit

    @Test func junitEscapesAndStripsInvalidCharacters() {
        let xml = Report.junit(Self.sample())
        #expect(xml.contains("a &lt; b &amp;&amp; &quot;c&quot; &apos;d&apos;\nbellhere[0m\ntab\tok</system-out>"))
        #expect(!xml.unicodeScalars.contains { $0.value < 0x20 && $0 != "\n" && $0 != "\t" && $0 != "\r" })
        #expect(xml.contains("<failure message=\"area.base: expected 0x40000000, observed 0x3fc00000\" type=\"expectation\">"
            + "area.base: expected 0x40000000, observed 0x3fc00000\narea.size: expected 1024 MiB, observed 512 MiB</failure>"))
        #expect(xml.contains("<error message=\"qemu-system-x86_64 not found in PATH\" type=\"lab-error\">"))
        #expect(Report.attr("a\nb\"<") == "a&#10;b&quot;&lt;")
        #expect(Report.text("\u{FFFE}\u{FFFF}x\u{10FFFF}\u{8}") == "x\u{10FFFF}")
    }

    @Test func junitStructureParsesWithXMLParser() throws {
        let xml = Report.junit(Self.sample())
        let counter = ElementCounter()
        let parser = XMLParser(data: Data(xml.utf8))
        parser.delegate = counter
        #expect(parser.parse(), "\(parser.parserError.map { "\($0)" } ?? "")")
        #expect(counter.counts["testsuites"] == 1)
        #expect(counter.counts["testsuite"] == 2)
        #expect(counter.counts["testcase"] == 3)
        #expect(counter.counts["failure"] == 1)
        #expect(counter.counts["error"] == 1)
        #expect(counter.counts["system-out"] == 3)
        // Suites sorted by image name, with their counts.
        #expect(counter.suites.map { $0["name"] } == ["cma-6.1", "cma-6.12"])
        #expect(counter.suites[1]["tests"] == "2")
        #expect(counter.suites[1]["failures"] == "1")
        #expect(counter.suites[1]["errors"] == "0")
        #expect(counter.suites[0]["errors"] == "1")
        #expect(counter.cases.map { $0["name"] } == ["hole", "default", "fixed-range"])
        #expect(counter.cases.map { $0["classname"] } == ["cmalab.cma-6.1", "cmalab.cma-6.12", "cmalab.cma-6.12"])
        #expect(counter.cases[2]["time"] == "12.345")
        // Character data comes back as it was, less the invalid control characters.
        #expect(counter.systemOut[2] == "a < b && \"c\" 'd'\nbellhere[0m\ntab\tok")
        #expect(counter.systemOut[1] == "[    2.7] reboot: Power down")
    }

    @Test func junitOfNothingIsValid() {
        let xml = Report.junit([])
        let counter = ElementCounter()
        let parser = XMLParser(data: Data(xml.utf8))
        parser.delegate = counter
        #expect(parser.parse())
        #expect(counter.counts == ["testsuites": 1])
    }
}

/// Counts elements and keeps the attributes of suites and cases, and the system-out texts.
final class ElementCounter: NSObject, XMLParserDelegate {
    var counts: [String: Int] = [:]
    var suites: [[String: String]] = []
    var cases: [[String: String]] = []
    var systemOut: [String] = []
    private var inSystemOut = false

    func parser(_ parser: XMLParser, didStartElement elementName: String, namespaceURI: String?, qualifiedName qName: String?,
                attributes attributeDict: [String: String] = [:]) {
        counts[elementName, default: 0] += 1
        if elementName == "testsuite" { suites.append(attributeDict) }
        if elementName == "testcase" { cases.append(attributeDict) }
        if elementName == "system-out" { inSystemOut = true; systemOut.append("") }
    }

    func parser(_ parser: XMLParser, didEndElement elementName: String, namespaceURI: String?, qualifiedName qName: String?) {
        if elementName == "system-out" { inSystemOut = false }
    }

    func parser(_ parser: XMLParser, foundCharacters string: String) {
        if inSystemOut { systemOut[systemOut.count - 1] += string }
    }
}
