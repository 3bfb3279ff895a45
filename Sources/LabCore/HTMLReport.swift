/// The HTML report: one self-contained page (inline CSS and SVG, no JavaScript, nothing fetched) for a run or a
/// matrix. Pure: takes verdicts and what the caller knows about the files around them, returns the page.
/// The page is HTML5 that is also well-formed XML (XHTML syntax), so XML tools can read it.

/// What a page is made from.
public struct HTMLReportInput: Sendable {
    public var title: String
    public var verdicts: [Verdict]
    /// Who ran it (from the results file); nil if unknown.
    public var meta: ReportMeta?
    /// The semantics oracle's predicted placement of the CMA area, by `Verdict.key` (inclusive end, as the kernel prints
    /// ranges; `type` may carry a short note such as `top-down below the initrd`). Drawn as "predicted" when present.
    public var predictedPlacement: [String: MemoryRange] = [:]
    /// How the page links to a run directory: `runDirectory` → href (relative to the page). Without an entry the run
    /// directory is used as it is.
    public var runDirectoryHref: [String: String] = [:]
    /// The files found in each run directory, by `runDirectory`. Without an entry the page lists the files a run
    /// usually writes.
    public var artifactFiles: [String: [String]] = [:]
    /// Each run's kernel config (its run directory's `config`), by `runDirectory`: where the kernel image is drawn.
    public var kernelConfigs: [String: KernelConfig] = [:]

    public init(title: String, verdicts: [Verdict], meta: ReportMeta? = nil) {
        self.title = title; self.verdicts = verdicts; self.meta = meta
    }
}

public enum HTMLReport {
    /// The page.
    public static func page(_ input: HTMLReportInput) -> String {
        let verdicts = input.verdicts
        var h = "<!DOCTYPE html>\n<html xmlns=\"http://www.w3.org/1999/xhtml\" lang=\"en\">\n<head>\n<meta charset=\"utf-8\"/>\n"
        h += "<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\"/>\n"
        h += "<title>\(esc(input.title))</title>\n<style>\n\(css)</style>\n</head>\n<body>\n"
        h += "<header id=\"top\">\n<h1>\(esc(input.title))</h1>\n"
        let summary = ReportSummary(verdicts)
        h += "<p class=\"summary\"><span class=\"badge pass\">\(summary.passed) passed</span> "
        h += "<span class=\"badge fail\">\(summary.failed) failed</span> <span class=\"badge error\">\(summary.errors) errors</span></p>\n"
        if let m = input.meta {
            h += "<p class=\"meta\">cmalab \(esc(m.cmalabVersion)) · started \(esc(m.started)) · host \(esc(m.host)) · accelerator \(esc(m.accelerator))</p>\n"
        }
        h += "</header>\n"

        let ids = anchors(verdicts)
        let diffs = imageDifferences(verdicts)
        h += grid(verdicts, ids: ids, diffs: diffs)
        // Only where a profile ran on two images with observations: otherwise there is nothing to compare.
        if !diffs.isEmpty { h += differences(verdicts, diffs, ids: ids) }
        for (i, v) in verdicts.enumerated() {
            h += runSection(v, id: ids[i], index: i, input: input)
        }
        h += "<footer><p>Written by cmalab. Every picture is inline SVG; the page needs no script and no network.</p></footer>\n"
        h += "</body>\n</html>\n"
        return h
    }

    /// The oracle's predicted placement of each verdict's area, by `Verdict.key`: the whole span the area may occupy
    /// ([lowest base, highest base + size), inclusive end). Checked: a prediction read back from a results file may be
    /// crafted.
    public static func predictedPlacements(_ verdicts: [Verdict]) -> [String: MemoryRange] {
        var placements: [String: MemoryRange] = [:]
        for v in verdicts {
            if let a = v.oracle?.prediction.area, a.sizeBytes > 0 {
                let kind = a.exact ? "exact" : "a \(a.sizeMiB) MiB area based anywhere in \(hex(a.baseMin))-\(hex(a.baseMax))"
                let (top, overflow) = a.baseMax.addingReportingOverflow(a.sizeBytes - 1)
                placements[v.key] = MemoryRange(start: a.baseMin, end: overflow ? UInt64.max : top, type: kind)
            }
        }
        return placements
    }

    // MARK: - Grid and differences

    /// `run-3-seed-1g-at-1-2g-cma-6-12`: unique, and only letters, digits and `-`.
    static func anchors(_ verdicts: [Verdict]) -> [String] {
        verdicts.enumerated().map { i, v in
            let slug = String(String.UnicodeScalarView(v.key.lowercased().unicodeScalars.map {
                ($0.isASCII && ($0.properties.isAlphabetic || ("0"..."9").contains($0))) ? $0 : "-"
            }))
            return "run-\(i + 1)-" + slug.split(separator: "-").joined(separator: "-")
        }
    }

    /// A row of the grid: the profile with its axes (`ObservationDiff.pairingKey`).
    struct Row { var key: String; var cells: [String: Int] }

    static func rows(_ verdicts: [Verdict]) -> (rows: [Row], images: [String]) {
        var rows: [Row] = []
        var images: [String] = []
        for (i, v) in verdicts.enumerated() {
            if !images.contains(v.image) { images.append(v.image) }
            let key = ObservationDiff.pairingKey(v)
            if let r = rows.firstIndex(where: { $0.key == key }) {
                if rows[r].cells[v.image] == nil { rows[r].cells[v.image] = i }
            } else {
                rows.append(Row(key: key, cells: [v.image: i]))
            }
        }
        return (rows, images)
    }

    /// Per verdict index: the differences from the row's first image that has observations (`cmalab diff`), and
    /// which verdict that was. Verdicts with nothing to compare are absent.
    static func imageDifferences(_ verdicts: [Verdict]) -> [Int: (base: Int, changes: [ObservationChange])] {
        let (rows, images) = rows(verdicts)
        var out: [Int: (base: Int, changes: [ObservationChange])] = [:]
        for row in rows {
            let indices = images.compactMap { row.cells[$0] }.filter { verdicts[$0].observations != nil }
            guard let base = indices.first, let a = verdicts[base].observations else { continue }
            for i in indices.dropFirst() {
                out[i] = (base, ObservationDiff.compare(a, verdicts[i].observations!))
            }
        }
        return out
    }

    static func grid(_ verdicts: [Verdict], ids: [String], diffs: [Int: (base: Int, changes: [ObservationChange])]) -> String {
        let (rows, images) = rows(verdicts)
        guard !rows.isEmpty else { return "<p>No results.</p>\n" }
        var h = "<section class=\"grid\">\n<h2>Verdicts: \(rows.count) profile(s) × \(images.count) image(s)</h2>\n"
        h += "<table class=\"grid\">\n<thead><tr><th>profile</th>"
        for image in images { h += "<th>\(esc(image))</th>" }
        h += "</tr></thead>\n<tbody>\n"
        for row in rows {
            h += "<tr><th scope=\"row\">\(esc(row.key))</th>"
            for image in images {
                guard let i = row.cells[image] else { h += "<td class=\"none\">—</td>"; continue }
                let v = verdicts[i]
                let why = Report.why(v)
                h += "<td class=\"\(v.kind.rawValue)\"><a href=\"#\(ids[i])\" title=\"\(attr(why.isEmpty ? v.key : why))\">\(Report.word(v.kind))</a>"
                h += " <span class=\"secs\">\(Report.fixed(v.seconds, digits: 1)) s</span>"
                if let d = diffs[i], !d.changes.isEmpty {
                    h += " <a class=\"delta\" href=\"#diff-\(ids[i])\" title=\"\(d.changes.count) CMA difference(s) from \(attr(verdicts[d.base].image))\">Δ\(d.changes.count)</a>"
                }
                h += "</td>"
            }
            h += "</tr>\n"
        }
        h += "</tbody>\n</table>\n</section>\n"
        return h
    }

    static func differences(_ verdicts: [Verdict], _ diffs: [Int: (base: Int, changes: [ObservationChange])], ids: [String]) -> String {
        var h = "<section class=\"diffs\">\n<h2>Differences between images</h2>\n"
        let found = diffs.keys.sorted().filter { !diffs[$0]!.changes.isEmpty }
        if found.isEmpty {
            h += "<p>No CMA differences: every profile behaved the same on every image (as <code>cmalab diff</code> compares them).</p>\n"
        }
        return h + found.map { i in
            let d = diffs[i]!
            var t = "<table class=\"diff\" id=\"diff-\(ids[i])\">\n<caption>\(esc(ObservationDiff.pairingKey(verdicts[i]))): "
            t += "A = <a href=\"#\(ids[d.base])\">\(esc(verdicts[d.base].image))</a>, B = <a href=\"#\(ids[i])\">\(esc(verdicts[i].image))</a></caption>\n"
            t += "<thead><tr><th>what</th><th>A</th><th>B</th></tr></thead>\n<tbody>\n"
            for c in d.changes {
                t += "<tr><td>\(esc(c.field))</td><td>\(esc(c.a ?? "(none)"))</td><td>\(esc(c.b ?? "(none)"))</td></tr>\n"
            }
            return t + "</tbody>\n</table>\n"
        }.joined() + "</section>\n"
    }

    // MARK: - One run

    static func runSection(_ v: Verdict, id: String, index: Int, input: HTMLReportInput) -> String {
        var h = "<section class=\"run \(v.kind.rawValue)\" id=\"\(id)\">\n"
        h += "<h2><span class=\"badge \(v.kind.rawValue)\">\(Report.word(v.kind))</span> \(esc(v.profile)) on \(esc(v.image))"
        if let cell = v.cell, let key = v.cellKey, !key.axes.isEmpty || key.profile != v.profile || key.image != v.image { h += " <span class=\"cell\">\(esc(cell))</span>" }
        h += "</h2>\n"
        let o = v.observations
        var facts: [(String, String)] = []
        if let o {
            facts.append(("machine", o.machine))
            facts.append(("kernel", o.kernelRelease ?? "unknown"))
            facts.append(("command line", o.commandLine))
            facts.append(("ended", o.ending.rawValue))
        }
        facts.append(("time", Report.fixed(v.seconds, digits: 1) + " s"))
        h += "<dl class=\"facts\">" + facts.map { "<dt>\(esc($0.0))</dt><dd>\(esc($0.1))</dd>" }.joined() + "</dl>\n"
        if let error = v.error { h += "<p class=\"error-box\">lab error: \(esc(error))</p>\n" }
        if let crash = o?.crash {
            h += "<p class=\"crash-box\">kernel crash: \(esc(crash.summary))</p>\n"
        }

        if let o {
            let scene = MemoryMapScene.build(o, predictedPlacement: input.predictedPlacement[v.key], kernelConfig: input.kernelConfigs[v.runDirectory])
            h += "<h3>Physical memory</h3>\n<div class=\"map\">\n" + MemoryMapSVG.svg(scene, idPrefix: "m\(index + 1)") + "</div>\n"
            for note in scene.notes { h += "<p class=\"note\">\(esc(note))</p>\n" }
            h += rangeTable(scene)
        }
        h += checksTable(v)
        if let o {
            h += meminfoBars(o)
            h += occupancy(o)
            h += traceTable(o)
            h += "<h3>CMA kernel messages</h3>\n"
            if o.boot.cmaLines.isEmpty {
                h += "<p class=\"note\">No <code>cma:</code> lines in the boot log.</p>\n"
            } else {
                let limit = 300
                h += "<pre class=\"dmesg\">" + o.boot.cmaLines.prefix(limit).map(esc).joined(separator: "\n")
                if o.boot.cmaLines.count > limit { h += "\n… \(o.boot.cmaLines.count - limit) more (see dmesg.txt)" }
                h += "</pre>\n"
            }
        }
        if v.kind != .pass || o?.crash != nil, !v.consoleTail.isEmpty {
            h += "<details><summary>Last console lines</summary>\n<pre class=\"console\">\(v.consoleTail.map(esc).joined(separator: "\n"))</pre>\n</details>\n"
        }
        h += artifacts(v, input: input)
        h += "<p class=\"top\"><a href=\"#top\">↑ verdicts</a></p>\n"
        h += "</section>\n"
        return h
    }

    /// The exact ranges behind the picture.
    static func rangeTable(_ scene: MemoryMapScene) -> String {
        var h = "<details class=\"ranges\"><summary>Ranges in the picture (exact)</summary>\n<table class=\"ranges\">\n"
        h += "<thead><tr><th>what</th><th>start</th><th>end (exclusive)</th><th>size</th></tr></thead>\n<tbody>\n"
        var rows: [(String, UInt64, UInt64)] = scene.marks.map { ("\($0.kind == .kernel ? "kernel (approx.)" : $0.kind.rawValue + " " + $0.name)", $0.start, $0.end) }
        if let r = scene.requested { rows.append(("cma= window", r.start, r.end)) }
        if let p = scene.predicted { rows.append(("predicted", p.start, p.end)) }
        rows += scene.regions.map { ("e820 " + $0.label, $0.start, $0.end) }
        for (what, start, end) in rows {
            h += "<tr><td>\(esc(what))</td><td>\(hex(start))</td><td>\(hex(end))</td><td>\(esc(MemoryMapSVG.size(end &- start)))</td></tr>\n"
        }
        return h + "</tbody>\n</table>\n</details>\n"
    }

    static func checksTable(_ v: Verdict) -> String {
        guard !v.checks.isEmpty else { return v.error == nil ? "<p class=\"note\">No checks were made.</p>\n" : "" }
        var h = "<h3>Checks</h3>\n<table class=\"checks\">\n<thead><tr><th>check</th><th>result</th><th>expected</th><th>observed</th></tr></thead>\n<tbody>\n"
        for c in v.checks {
            let (cls, word) = c.skipped == true ? ("skip", "skipped") : c.passed ? ("pass", "pass") : ("fail", "FAIL")
            h += "<tr class=\"\(cls)\"><td>\(esc(c.name))</td><td><span class=\"badge \(cls)\">\(word)</span></td>"
            h += "<td>\(esc(c.expected))</td><td>\(esc(c.observed))</td></tr>\n"
        }
        return h + "</tbody>\n</table>\n"
    }

    /// CmaTotal/CmaFree at boot, around each step, and at the end.
    static func meminfoBars(_ o: Observations) -> String {
        var snaps: [MeminfoSnapshot] = []
        if let boot = o.meminfo.first(where: { $0.label == "boot" }) { snaps.append(boot) }
        for s in o.steps { snaps += [s.before, s.after].compactMap { $0 } }
        snaps += o.meminfo.filter { $0.label != "boot" }
        guard !snaps.isEmpty else { return "" }
        var h = "<h3>CMA memory (/proc/meminfo)</h3>\n<table class=\"meminfo\">\n"
        h += "<thead><tr><th>when</th><th>CmaFree / CmaTotal</th><th class=\"wide\">used · free</th><th>MemFree</th></tr></thead>\n<tbody>\n"
        for s in snaps {
            h += "<tr><td>\(esc(s.label))</td>"
            guard let total = s.cmaTotalKiB else {
                h += "<td colspan=\"2\">no CmaTotal line (kernel without CONFIG_CMA)</td><td>\(kib(s.memFreeKiB))</td></tr>\n"
                continue
            }
            let free = min(s.cmaFreeKiB ?? 0, total)
            h += "<td title=\"CmaFree \(attr(kib(s.cmaFreeKiB))) of CmaTotal \(attr(kib(total)))\">\(s.cmaFreeKiB.map(String.init) ?? "?") / \(total) kB</td><td class=\"wide\">"
            if total == 0 {
                h += "CmaTotal is 0"
            } else {
                let usedPct = Double(total - free) / Double(total) * 100
                h += "<div class=\"bar\" title=\"\(Report.fixed(usedPct, digits: 1))% used\"><span class=\"used\" style=\"width: \(Report.fixed(usedPct, digits: 2))%\"></span>"
                h += "<span class=\"free\" style=\"width: \(Report.fixed(100 - usedPct, digits: 2))%\"></span></div>"
                h += "<span class=\"pct\">\(Report.fixed(usedPct, digits: 1))% used (\(total - free) kB)</span>"
            }
            h += "</td><td>\(kib(s.memFreeKiB))</td></tr>\n"
        }
        return h + "</tbody>\n</table>\n"
    }

    /// The kernel's CMA trace of each allocating step (CMATrace.swift).
    static func traceTable(_ o: Observations) -> String {
        let rows = o.steps.filter { $0.trace != nil }
        guard !rows.isEmpty else { return "" }
        var h = "<h3>CMA trace events (kernel timestamps)</h3>\n<table class=\"checks\">\n<thead><tr><th>step</th><th>allocations (min / median / max)</th><th>busy retries</th><th>pages migrated</th></tr></thead>\n<tbody>\n"
        for s in rows {
            let t = s.trace!
            let us = t.allocationMicroseconds.sorted()
            let times = us.isEmpty ? "none" : "\(us.count): \(us.first!) / \(UInt64(median(us.map { Double($0) }) ?? 0)) / \(us.last!) µs" + (t.failedAllocations > 0 ? ", \(t.failedAllocations) failed" : "")
            h += "<tr><td>\(s.index): \(esc(s.summary))</td><td>\(esc(times))</td><td>\(t.busyRetries)</td><td>\(t.pagesMigrated)\(t.migrationFailures > 0 ? " (\(t.migrationFailures) failed)" : "")</td></tr>\n"
        }
        return h + "</tbody>\n</table>\n"
    }

    /// Each area's occupancy at boot and after each alloc/free step, as a strip.
    static func occupancy(_ o: Observations) -> String {
        var rows: [(String, AreaSnapshot)] = o.areas.map { ("after boot", $0) }
        for s in o.steps where s.kind == .alloc || s.kind == .free {
            if let a = s.areaAfter { rows.append(("after step \(s.index): \(s.summary)\(s.status == 0 ? "" : " (status \(s.status))")", a)) }
        }
        rows = rows.filter { ($0.1.count ?? 0) > 0 && $0.1.used != nil }
        guard !rows.isEmpty else { return "" }
        var h = "<h3>CMA area occupancy (debugfs)</h3>\n"
        h += "<p class=\"note\">Drawn from debugfs <code>used</code>, <code>count</code> and <code>maxchunk</code>, not from the bitmap: "
        h += "used pages on the left, then free pages in smaller pieces, then the largest free chunk. Where in the area the pages lie is not known.</p>\n"
        h += "<table class=\"occupancy\">\n<thead><tr><th>area</th><th>when</th><th class=\"wide\">pages</th><th>used / count · largest free chunk</th></tr></thead>\n<tbody>\n"
        for (when, a) in rows {
            let count = a.count!, used = min(a.used!, count)
            let chunk = min(a.maxchunk ?? (count - used), count - used)
            h += "<tr><td>\(esc(a.name))</td><td>\(esc(when))</td><td class=\"wide\">\(strip(count: count, used: used, maxchunk: chunk))</td>"
            h += "<td>\(used) / \(count) pages · \(chunk)</td></tr>\n"
        }
        return h + "</tbody>\n</table>\n"
    }

    static func strip(count: UInt64, used: UInt64, maxchunk: UInt64) -> String {
        let w = 420.0, hgt = 16.0
        let xu = Double(used) / Double(count) * w
        let xc = Double(maxchunk) / Double(count) * w
        let other = max(0, w - xu - xc)
        var s = "<svg xmlns=\"http://www.w3.org/2000/svg\" class=\"strip\" width=\"\(Int(w))\" height=\"\(Int(hgt))\" viewBox=\"0 0 \(Int(w)) \(Int(hgt))\">"
        s += "<rect class=\"used\" x=\"0\" y=\"0\" width=\"\(MemoryMapSVG.n(xu))\" height=\"\(Int(hgt))\" fill=\"#e07b00\"/>"
        s += "<rect class=\"fragmented\" x=\"\(MemoryMapSVG.n(xu))\" y=\"0\" width=\"\(MemoryMapSVG.n(other))\" height=\"\(Int(hgt))\" fill=\"#cfe8cf\"/>"
        s += "<rect class=\"maxchunk\" x=\"\(MemoryMapSVG.n(w - xc))\" y=\"0\" width=\"\(MemoryMapSVG.n(xc))\" height=\"\(Int(hgt))\" fill=\"#6dbb6d\"/>"
        s += "<rect x=\"0.5\" y=\"0.5\" width=\"\(Int(w) - 1)\" height=\"\(Int(hgt) - 1)\" fill=\"none\" stroke=\"#777\" stroke-width=\"1\"/>"
        return s + "<title>used \(used), free in smaller pieces \(count - used - maxchunk), largest free chunk \(maxchunk) of \(count) pages</title></svg>"
    }

    static func artifacts(_ v: Verdict, input: HTMLReportInput) -> String {
        guard !v.runDirectory.isEmpty else { return "" }
        let base = input.runDirectoryHref[v.runDirectory] ?? v.runDirectory
        var files = input.artifactFiles[v.runDirectory] ?? defaultArtifacts(v.observations)
        let order = ["console.log", "dmesg.txt", "observations.json", "reproduce.sh", "config", "qemu.argv"]
        files.sort { a, b in
            let ia = order.firstIndex(of: a) ?? order.count, ib = order.firstIndex(of: b) ?? order.count
            return (ia, a) < (ib, b)
        }
        // Without a link computed by the page writer, `runDirectory` is the results file's word: linked only when
        // it is a plain relative path.
        let computed = input.runDirectoryHref[v.runDirectory] != nil
        let linkBase = isSafeLink(base, parentsFirst: computed) ? base : nil
        var h = "<h3>Artifacts</h3>\n<p class=\"artifacts\">run directory " + link(linkBase, text: v.runDirectory) + ": "
        h += files.map { name in
            let target = linkBase.flatMap { isFileName(name) ? ($0.isEmpty ? name : $0 + "/" + name) : nil }
            return link(target.flatMap { isSafeLink($0, parentsFirst: computed) ? $0 : nil }, text: name)
        }.joined(separator: " · ")
        return h + "</p>\n"
    }

    /// `<a href>` to `target` around `text`, or the text alone when there is no safe target.
    static func link(_ target: String?, text: String) -> String {
        guard let target else { return "<span class=\"unlinked\">\(esc(text))</span>" }
        return "<a href=\"\(attr(href(target)))\">\(esc(text))</a>"
    }

    /// True when `path` may be an href: relative, without a scheme, and without `..` except (with `parentsFirst`,
    /// for a path `relativePath` computed) leading ones that climb from the page to the runs.
    static func isSafeLink(_ path: String, parentsFirst: Bool) -> Bool {
        guard !path.isEmpty, !path.hasPrefix("/"), !hasScheme(path), !path.contains("\\") else { return false }
        let parts = path.split(separator: "/", omittingEmptySubsequences: false)
        let rest = parentsFirst ? parts.drop { $0 == ".." } : parts[...]
        return !rest.contains("..")
    }

    /// True when `path` reads as a URL with a scheme (`javascript:`, `file:`): a `:` before the first `/`.
    public static func hasScheme(_ path: String) -> Bool {
        path.prefix { $0 != "/" }.contains(":")
    }

    /// True for one path component naming a file (no `/`, not `.` or `..`).
    static func isFileName(_ name: String) -> Bool {
        !name.isEmpty && name != "." && name != ".." && !name.contains("/")
    }

    static func defaultArtifacts(_ o: Observations?) -> [String] {
        var files = ["console.log", "dmesg.txt", "observations.json", "config", "reproduce.sh"]
        if let o {
            var labels = o.meminfo.map(\.label)
            for s in o.steps { labels += [s.before?.label, s.after?.label].compactMap { $0 } }
            files += labels.map { "meminfo-\($0).txt" }
        }
        return files
    }

    // MARK: - Paths and text

    /// `to` relative to the directory `from` (both absolute and normalised), for links that survive moving the page
    /// together with the runs.
    public static func relativePath(from directory: String, to path: String) -> String {
        let a = directory.split(separator: "/"), b = path.split(separator: "/")
        var common = 0
        while common < a.count, common < b.count, a[common] == b[common] { common += 1 }
        let up = Array(repeating: "..", count: a.count - common)
        let rest = b[common...].map(String.init)
        let parts = up + rest
        return parts.isEmpty ? "." : parts.joined(separator: "/")
    }

    /// A path as a URL reference: characters that would end or change it are percent-encoded, and so are those
    /// XML cannot hold (U+FFFE, U+FFFF): the page's escaping would drop them, and
    /// `.\u{FFFE}.` would become `..` after `isSafeLink` looked at it.
    static func href(_ path: String) -> String {
        var out = ""
        for u in path.unicodeScalars {
            switch u {
            case "%", "#", "?", " ", "\"", "<", ">", "\\", "^", "`", "{", "|", "}": out += String(format: "%%%02X", u.value)
            default:
                if u.value < 0x20 || u.value == 0x7F || !Report.isXMLChar(u) {
                    for b in String(u).utf8 { out += String(format: "%%%02X", b) }
                } else {
                    out.unicodeScalars.append(u)
                }
            }
        }
        return out
    }

    static func kib(_ v: UInt64?) -> String {
        guard let v else { return "—" }
        return v >= 10 * 1024 ? "\(MemoryMapSVG.size(v << 10)) (\(v) kB)" : "\(v) kB"
    }

    static func esc(_ s: String) -> String { Report.text(s) }
    static func attr(_ s: String) -> String { Report.attr(s) }

    static let css = """
    body { font-family: system-ui, -apple-system, "Segoe UI", Roboto, sans-serif; font-size: 14px; margin: 0 auto; padding: 12px 20px 40px; max-width: 1240px; color: #1f1f1f; background: #fff; }
    h1 { font-size: 22px; margin: 8px 0; }
    h2 { font-size: 18px; margin: 28px 0 8px; border-top: 1px solid #ddd; padding-top: 14px; }
    h3 { font-size: 15px; margin: 18px 0 6px; }
    code, pre, .facts dd, table.ranges td, table.diff td { font-family: "DejaVu Sans Mono", Menlo, Consolas, monospace; font-size: 12px; }
    pre { background: #f6f8fa; border: 1px solid #e1e4e8; padding: 8px; overflow-x: auto; white-space: pre-wrap; word-break: break-all; }
    .meta, .note { color: #555; font-size: 13px; }
    .badge { display: inline-block; padding: 1px 7px; border-radius: 4px; font-size: 12px; font-weight: 600; color: #fff; background: #777; }
    .badge.pass { background: #1a7f37; } .badge.fail { background: #cf222e; } .badge.error { background: #9a6700; } .badge.skip { background: #8c959f; }
    .cell { font-size: 13px; color: #555; font-weight: normal; }
    table { border-collapse: collapse; margin: 6px 0; font-size: 13px; }
    th, td { border: 1px solid #d8dee4; padding: 3px 8px; text-align: left; vertical-align: top; }
    thead th { background: #f3f4f6; }
    table.grid td { text-align: center; min-width: 90px; }
    table.grid td.pass { background: #d6f5dc; } table.grid td.fail { background: #ffd7d5; } table.grid td.error { background: #fff0c2; } table.grid td.none { color: #999; }
    table.grid a { color: #1f1f1f; font-weight: 600; }
    .secs { color: #666; font-size: 11px; }
    a.delta { color: #6b3fa0; font-size: 12px; }
    table.diff { width: 100%; margin-bottom: 14px; }
    table.diff caption { text-align: left; font-weight: 600; padding: 4px 0; }
    tr.fail td { background: #fff1f0; }
    .facts { display: grid; grid-template-columns: max-content 1fr; gap: 2px 12px; font-size: 13px; margin: 4px 0; }
    .facts dt { color: #555; } .facts dd { margin: 0; }
    .crash-box { background: #ffebe9; border: 1px solid #d1001f; color: #82071e; padding: 6px 10px; font-weight: 600; }
    .error-box { background: #fff8c5; border: 1px solid #9a6700; padding: 6px 10px; }
    .map { overflow-x: auto; }
    .map svg { display: block; max-width: 100%; height: auto; }
    td.wide { width: 440px; white-space: nowrap; }
    .bar { display: inline-flex; width: 240px; height: 12px; border: 1px solid #999; vertical-align: middle; margin-right: 8px; }
    .bar .used { background: #e07b00; } .bar .free { background: #9fd49f; }
    .pct { font-size: 12px; color: #555; }
    svg.strip { vertical-align: middle; }
    .top { font-size: 12px; }
    footer { margin-top: 40px; color: #777; font-size: 12px; }

    """
}
