import Foundation

/// Who produced a results file, and when (the `meta` object of `--json`; see docs/results-schema.md).
public struct ReportMeta: Codable, Equatable, Sendable {
    public var cmalabVersion: String
    /// ISO 8601, given by the caller (e.g. `2026-11-25T08:19:57Z`).
    public var started: String
    public var host: String
    /// `kvm`, `tcg`, ...
    public var accelerator: String
    public init(cmalabVersion: String, started: String, host: String, accelerator: String) {
        self.cmalabVersion = cmalabVersion; self.started = started; self.host = host; self.accelerator = accelerator
    }
}

/// The verdict counts (the `summary` object of `--json`).
public struct ReportSummary: Codable, Equatable, Sendable {
    public var passed: Int
    public var failed: Int
    public var errors: Int
    public init(passed: Int, failed: Int, errors: Int) { self.passed = passed; self.failed = failed; self.errors = errors }
    public init(_ verdicts: [Verdict]) {
        self.init(passed: verdicts.count { $0.kind == .pass }, failed: verdicts.count { $0.kind == .fail },
                  errors: verdicts.count { $0.kind == .error })
    }
    /// `9 passed, 1 failed, 0 errors`.
    public var line: String { "\(passed) passed, \(failed) failed, \(errors) errors" }
}

public struct ReportError: Error, CustomStringConvertible, Sendable {
    public var description: String
    public init(_ description: String) { self.description = description }
}

extension CheckResult {
    /// `name: expected X, observed Y`.
    public var summary: String { "\(name): expected \(expected), observed \(observed)" }
}

/// Renders verdicts for a terminal, as JSON (`cmalab-results/1`) and as JUnit XML. Pure.
public enum Report {
    public static let schema = "cmalab-results/1"

    // MARK: - Terminal

    /// A table (PROFILE, IMAGE, VERDICT, TIME, WHY), then the checks of every verdict that did not pass, then
    /// `N passed, N failed, N errors` as the last line. ANSI colours on the verdict word only when `color`.
    public static func table(_ verdicts: [Verdict], color: Bool) -> String {
        var out: [String] = []
        if !verdicts.isEmpty {
            let header = ["PROFILE", "IMAGE", "VERDICT", "TIME", "WHY"]
            let rows = verdicts.map { v in
                [oneLine(ObservationDiff.pairingKey(v)), oneLine(v.image), word(v.kind), fixed(v.seconds, digits: 1) + "s", shorten(why(v), to: 100)]
            }
            var widths = header.map(\.count)
            for row in rows { for (c, cell) in row.enumerated() { widths[c] = max(widths[c], cell.count) } }
            func render(_ cells: [String], kind: VerdictKind?) -> String {
                var line = ""
                for (c, cell) in cells.enumerated() {
                    let padded = c == cells.count - 1 ? cell : cell + String(repeating: " ", count: widths[c] - cell.count + 2)
                    if c == 2, color, let kind {
                        line += paint(cell, kind) + String(padded.dropFirst(cell.count))
                    } else {
                        line += padded
                    }
                }
                while line.last == " " { line.removeLast() }
                return line
            }
            out.append(render(header, kind: nil))
            for (v, row) in zip(verdicts, rows) { out.append(render(row, kind: v.kind)) }

            for v in verdicts where v.kind != .pass {
                out.append("")
                let label = color ? paint(word(v.kind), v.kind) : word(v.kind)
                var head = "\(oneLine(v.profile)) on \(oneLine(v.image)): \(label)"
                if !v.runDirectory.isEmpty { head += " (\(oneLine(v.runDirectory)))" }
                out.append(head)
                if let error = v.error { out.append("  error: \(oneLine(error))") }
                for c in v.checks {
                    out.append((c.passed ? "  ok      " : "  FAILED  ") + oneLine(c.summary))
                }
            }
            out.append("")
        }
        out += traceLines(verdicts)
        out += oracleLines(verdicts)
        if let line = peakRSSLine(verdicts) { out += [line, ""] }
        out.append(ReportSummary(verdicts).line)
        return out.joined(separator: "\n") + "\n"
    }

    /// The kernel's CMA trace of each allocating step (CMATrace.swift): one line per step that has one, then a
    /// blank line; nothing when no step was traced.
    public static func traceLines(_ verdicts: [Verdict]) -> [String] {
        var out: [String] = []
        for v in verdicts {
            for s in v.observations?.steps ?? [] {
                guard let t = s.trace, !t.allocationMicroseconds.isEmpty || t.busyRetries > 0 || t.pagesMigrated > 0 else { continue }
                out.append("  \(oneLine(v.key)) steps[\(s.index)] \(s.kind): \(t.line)")
            }
        }
        return out.isEmpty ? [] : ["CMA trace (kernel timestamps):"] + out + [""]
    }

    /// `qemu peak RSS: 8.4 GiB (huge-512g@cma-6.12, the largest of 14 runs)`: how much host memory the biggest
    /// guest needed (the guest's struct page array is about 1/64 of its RAM, and it is all touched at boot).
    static func peakRSSLine(_ verdicts: [Verdict]) -> String? {
        let measured = verdicts.compactMap { v in v.observations?.qemuPeakRSSKiB.map { (v, $0) } }
        guard let top = measured.max(by: { $0.1 < $1.1 }) else { return nil }
        let amount = top.1 >= 1 << 20 ? fixed(Double(top.1) / 1_048_576, digits: 1) + " GiB" : "\(top.1 >> 10) MiB"
        let of = measured.count == 1 ? "" : ", the largest of \(measured.count) runs"
        return "qemu peak RSS: \(amount) (\(oneLine(top.0.key))\(of))"
    }

    static func word(_ kind: VerdictKind) -> String {
        switch kind {
        case .pass: "PASS"
        case .fail: "FAIL"
        case .error: "ERROR"
        }
    }

    static func paint(_ text: String, _ kind: VerdictKind) -> String {
        let code = switch kind {
        case .pass: "32"
        case .fail: "31"
        case .error: "33"
        }
        return "\u{1B}[\(code)m\(text)\u{1B}[0m"
    }

    /// The first failed check, or the error.
    static func why(_ v: Verdict) -> String {
        switch v.kind {
        case .pass:
            let skipped = v.skippedChecks
            guard let first = skipped.first else { return "" }
            return oneLine("\(skipped.count) step(s) skipped: " + first.observed.replacingOccurrences(of: "skipped: ", with: ""))
        case .fail: return oneLine(v.failedChecks.first?.summary ?? v.error ?? "failed")
        case .error: return oneLine(v.error ?? v.failedChecks.first?.summary ?? "error")
        }
    }

    /// Newlines and other control characters become spaces.
    static func oneLine(_ s: String) -> String {
        String(String.UnicodeScalarView(s.unicodeScalars.map { $0.value < 0x20 || $0.value == 0x7F ? " " : $0 }))
    }

    static func shorten(_ s: String, to limit: Int) -> String {
        s.count <= limit ? s : String(s.prefix(limit - 1)) + "…"
    }

    /// `x` with `digits` decimals, independent of locale; non-finite values print as 0.
    static func fixed(_ x: Double, digits: Int) -> String {
        guard x.isFinite else { return digits == 0 ? "0" : "0." + String(repeating: "0", count: digits) }
        var scale = 1.0
        for _ in 0..<digits { scale *= 10 }
        let scaled = (abs(x) * scale).rounded()
        guard scaled < 9.0e18 else { return String(x) }
        let n = UInt64(scaled)
        let unit = UInt64(scale)
        var s = (x < 0 && n != 0 ? "-" : "") + String(n / unit)
        if digits > 0 {
            let frac = String(n % unit)
            s += "." + String(repeating: "0", count: digits - frac.count) + frac
        }
        return s
    }

    // MARK: - JSON

    struct Document: Codable {
        var schema: String
        var meta: ReportMeta
        var summary: ReportSummary
        var results: [Verdict]
    }

    /// `{ "schema": "cmalab-results/1", "meta": {...}, "summary": {...}, "results": [Verdict...] }`, pretty-printed
    /// with sorted keys. Non-finite numbers are written as the strings `nan`, `inf`, `-inf`.
    public static func json(_ verdicts: [Verdict], meta: ReportMeta) throws -> [UInt8] {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.prettyPrinted, .sortedKeys, .withoutEscapingSlashes]
        encoder.nonConformingFloatEncodingStrategy = .convertToString(positiveInfinity: "inf", negativeInfinity: "-inf", nan: "nan")
        let doc = Document(schema: schema, meta: meta, summary: ReportSummary(verdicts), results: verdicts)
        return Array(try encoder.encode(doc)) + [0x0A]
    }

    /// Reads what `json` wrote (for `report merge`). Throws on another schema or malformed JSON.
    public static func decodeResults(_ bytes: [UInt8]) throws -> ([Verdict], ReportMeta) {
        struct Head: Decodable { var schema: String? }
        let decoder = JSONDecoder()
        decoder.nonConformingFloatDecodingStrategy = .convertFromString(positiveInfinity: "inf", negativeInfinity: "-inf", nan: "nan")
        let data = Data(bytes)
        let head = try decoder.decode(Head.self, from: data)
        guard head.schema == schema else {
            throw ReportError("not a cmalab results file: schema is \(head.schema.map { "\"\($0)\"" } ?? "missing"), expected \"\(schema)\"")
        }
        let doc = try decoder.decode(Document.self, from: data)
        return (doc.results, doc.meta)
    }

    // MARK: - JUnit

    /// JUnit XML: one `<testsuite>` per image (sorted by name), one `<testcase>` per verdict, `<failure>` for a fail
    /// (every failed check in the text), `<error>` for an error, and the console tail as `<system-out>`.
    public static func junit(_ verdicts: [Verdict]) -> String {
        var images: [String: [Verdict]] = [:]
        for v in verdicts { images[v.image, default: []].append(v) }
        let all = ReportSummary(verdicts)
        var x = "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n"
        x += "<testsuites name=\"cmalab\" tests=\"\(verdicts.count)\" failures=\"\(all.failed)\" errors=\"\(all.errors)\""
        x += " time=\"\(fixed(verdicts.reduce(0) { $0 + finite($1.seconds) }, digits: 3))\">\n"
        for image in images.keys.sorted() {
            let group = images[image]!
            let s = ReportSummary(group)
            x += "  <testsuite name=\"\(attr(image))\" tests=\"\(group.count)\" failures=\"\(s.failed)\" errors=\"\(s.errors)\""
            x += " skipped=\"0\" time=\"\(fixed(group.reduce(0) { $0 + finite($1.seconds) }, digits: 3))\">\n"
            for v in group {
                x += "    <testcase classname=\"cmalab.\(attr(v.image))\" name=\"\(attr(v.cell ?? v.profile))\" time=\"\(fixed(finite(v.seconds), digits: 3))\">\n"
                switch v.kind {
                case .pass:
                    break
                case .fail:
                    let failed = v.failedChecks
                    let message = failed.first?.summary ?? v.error ?? "failed"
                    var lines = failed.map(\.summary)
                    if let error = v.error { lines.append(error) }
                    x += "      <failure message=\"\(attr(message))\" type=\"expectation\">\(text(lines.joined(separator: "\n")))</failure>\n"
                case .error:
                    let message = v.error ?? "error"
                    var lines = [message]
                    lines += v.failedChecks.map(\.summary)
                    x += "      <error message=\"\(attr(message))\" type=\"lab-error\">\(text(lines.joined(separator: "\n")))</error>\n"
                }
                x += "      <system-out>\(text(v.consoleTail.joined(separator: "\n")))</system-out>\n"
                x += "    </testcase>\n"
            }
            x += "  </testsuite>\n"
        }
        x += "</testsuites>\n"
        return x
    }

    private static func finite(_ x: Double) -> Double { x.isFinite ? x : 0 }

    /// Escaped character data: `& < > " '` as entities, characters that XML 1.0 forbids removed.
    static func text(_ s: String) -> String { escape(s, attribute: false) }

    /// An escaped attribute value; tab, CR and LF as character references so they survive normalisation.
    static func attr(_ s: String) -> String { escape(s, attribute: true) }

    static func escape(_ s: String, attribute: Bool) -> String {
        var out = String.UnicodeScalarView()
        func add(_ literal: String) { out.append(contentsOf: literal.unicodeScalars) }
        for u in s.unicodeScalars {
            switch u {
            case "&": add("&amp;")
            case "<": add("&lt;")
            case ">": add("&gt;")
            case "\"": add("&quot;")
            case "'": add("&apos;")
            case "\t", "\n", "\r":
                if attribute { add("&#\(u.value);") } else { out.append(u) }
            default:
                if isXMLChar(u) { out.append(u) }
            }
        }
        return String(out)
    }

    /// XML 1.0 `Char`: #x9 | #xA | #xD | [#x20-#xD7FF] | [#xE000-#xFFFD] | [#x10000-#x10FFFF].
    static func isXMLChar(_ u: Unicode.Scalar) -> Bool {
        switch u.value {
        case 0x9, 0xA, 0xD: true
        case 0x20...0xD7FF, 0xE000...0xFFFD, 0x10000...0x10FFFF: true
        default: false
        }
    }
}
