import ArgumentParser
import Foundation
import LabCore
import LabRuntime

struct ReportCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "report",
        abstract: "Work with results files written by --json.",
        subcommands: [ReportMergeCommand.self, ReportHTMLCommand.self]
    )
}

struct ReportMergeCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "merge",
        abstract: "Combine the --json results of several shards into one JSON, one JUnit file and a summary.",
        discussion: "Exit status 0 only when every merged verdict is pass; 2 when a file cannot be read or two files hold the same cell."
    )

    @Argument(help: "Results files (cmalab-results/1), e.g. one per shard.")
    var files: [String]

    @Option(name: .long, help: "Write the merged results as JSON.")
    var json: String?

    @Option(name: .long, help: "Write the merged results as JUnit XML.")
    var junit: String?

    func validate() throws {
        guard !files.isEmpty else { throw ValidationError("give at least one results file") }
    }

    func run() throws {
        var allPassed = true
        try runReportingErrors {
            let (merged, meta) = try ResultsFiles.load(files)
            printTable(merged)
            printErr("merged \(files.count) file(s): \(merged.count) result(s)")
            if let json { try Files.writePublic(try Report.json(merged, meta: meta), to: json) }
            if let junit { try Files.writePublic(Array(Report.junit(merged).utf8), to: junit) }
            allPassed = merged.allSatisfy { $0.kind == .pass }
        }
        if !allPassed { throw ExitCode(1) }
    }
}

struct ReportHTMLCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "html",
        abstract: "Render results files as one self-contained HTML page: a memory map per run, verdicts, meminfo, CMA areas.",
        discussion: """
        Several files (e.g. shards) are merged first, as `report merge` does. The page links to each run's \
        artifacts relative to where it is written. Exit status 0 when the page was written, whatever the verdicts.
        """
    )

    @Argument(help: "Results files (cmalab-results/1) written by `run --json` or `matrix --json`.")
    var files: [String]

    @Option(name: [.short, .long], help: "Where to write the page (default: the first file with .html instead of .json).")
    var output: String?

    func validate() throws {
        guard !files.isEmpty else { throw ValidationError("give at least one results file") }
    }

    func run() throws {
        try runReportingErrors {
            let (verdicts, meta) = try ResultsFiles.load(files)
            let path = output ?? (files[0].hasSuffix(".json") ? String(files[0].dropLast(5)) : files[0]) + ".html"
            let title = "cmalab report: " + files.map { Path.basename($0) }.joined(separator: ", ")
            // Run directories are read only under the results files' folders (or a run directory named here) and the runs folder.
            let roots = files.map { Path.directory(of: Path.normalize($0)) }
            try HTMLPageWriter.write(verdicts, meta: meta, title: title, to: path, runRoots: roots + [LabPaths.discover().runs])
            printErr("wrote \(path): \(verdicts.count) result(s)")
        }
    }
}

/// Results files (`--json` output) read back: one file as it is, several merged (overlaps refused).
enum ResultsFiles {
    static func load(_ files: [String]) throws(LabError) -> ([Verdict], ReportMeta) {
        var inputs: [(name: String, verdicts: [Verdict])] = []
        var metas: [ReportMeta] = []
        for f in files {
            let bytes = try Files.readBytes(f)
            do {
                let (v, meta) = try Report.decodeResults(bytes)
                inputs.append((f, v)); metas.append(meta)
            } catch {
                throw LabError(.input, "\(f): \(error)", hint: "give files written by `cmalab run --json` or `cmalab matrix --json`")
            }
        }
        if inputs.count == 1 { return (inputs[0].verdicts, metas[0]) }
        let merged: [Verdict]
        do throws(ReportError) { merged = try Report.merge(inputs) } catch { throw LabError(.input, error.description) }
        let meta = ReportMeta(cmalabVersion: CMALab.version, started: metas.map(\.started).min() ?? "",
                              host: Array(Set(metas.map(\.host))).sorted().joined(separator: ","),
                              accelerator: Array(Set(metas.map(\.accelerator))).sorted().joined(separator: ","))
        return (merged, meta)
    }
}

struct DiffCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "diff",
        abstract: "Show which CMA observations changed between two runs, two results files, or two images.",
        discussion: """
        A and B are each a run directory (its observations.json), an observations.json file, or a results \
        file from --json. Two results files are compared cell by cell (the same profile and axes). With one \
        results file and --images A,B, the same profiles are compared between the two images. Compared: \
        kernel release, outcome, the reservation lines (Reserved/Failed and their reasons), the Memory: \
        line's cma-reserved, CmaTotal/CmaFree at boot, the areas (names, base, pages, sysfs files), step \
        results, and the other CMA dmesg lines (pointers masked). Exit status 0 when nothing differs, 1 otherwise.
        """
    )

    @Argument(help: "Run directories, observations.json or results files.")
    var inputs: [String]

    @Option(name: .long, help: "With one results file: the two images to compare, as A,B.")
    var images: String?

    func validate() throws {
        if images != nil {
            guard inputs.count == 1 else { throw ValidationError("--images takes one results file") }
        } else {
            guard inputs.count == 2 else { throw ValidationError("give two runs (or one results file with --images A,B)") }
        }
    }

    func run() throws {
        var differs = false
        try runReportingErrors {
            var pairs: [(String, Observations?, String, Observations?)] = []
            if let images {
                let names = images.split(separator: ",").map(String.init)
                guard names.count == 2 else { throw LabError(.input, "--images is two image names, A,B") }
                let all = try Self.load(inputs[0])
                pairs = Self.pair(all.filter { $0.image == names[0] }, all.filter { $0.image == names[1] })
            } else {
                let a = try Self.load(inputs[0]), b = try Self.load(inputs[1])
                if a.count == 1 && b.count == 1 {
                    pairs = [(Self.title(a[0]), a[0].observations, Self.title(b[0]), b[0].observations)]
                } else {
                    pairs = Self.pair(a, b)
                }
            }
            guard !pairs.isEmpty else { throw LabError(.input, "nothing to compare: no result is in both") }
            for (ta, oa, tb, ob) in pairs {
                guard let oa, let ob else {
                    print("--- A: \(ta)\n+++ B: \(tb)\nonly one side has observations\n")
                    differs = true
                    continue
                }
                let changes = ObservationDiff.compare(oa, ob)
                if !changes.isEmpty { differs = true }
                print(ObservationDiff.render(changes, titleA: ta, titleB: tb))
            }
        }
        if differs { throw ExitCode(1) }
    }

    static func title(_ v: Verdict) -> String {
        let judged = !v.checks.isEmpty || v.error != nil
        let details = (judged ? [v.kind.rawValue] : []) + (v.runDirectory.isEmpty ? [] : [v.runDirectory])
        return details.isEmpty ? v.key : "\(v.key) (\(details.joined(separator: ", ")))"
    }

    /// Pairs results by profile and axes; results on one side only are listed with nil observations.
    static func pair(_ a: [Verdict], _ b: [Verdict]) -> [(String, Observations?, String, Observations?)] {
        var out: [(String, Observations?, String, Observations?)] = []
        let bByKey = Dictionary(b.map { (ObservationDiff.pairingKey($0), $0) }, uniquingKeysWith: { x, _ in x })
        var matched = Set<String>()
        for x in a {
            let k = ObservationDiff.pairingKey(x)
            if let y = bByKey[k] {
                matched.insert(k)
                out.append((title(x), x.observations, title(y), y.observations))
            } else {
                out.append((title(x), x.observations, "(no \(k) in B)", nil))
            }
        }
        for y in b where !matched.contains(ObservationDiff.pairingKey(y)) {
            out.append(("(no \(ObservationDiff.pairingKey(y)) in A)", nil, title(y), y.observations))
        }
        return out
    }

    /// A run directory, an observations.json, or a results file, as verdicts.
    static func load(_ path: String) throws(LabError) -> [Verdict] {
        var file = path
        var isDir: ObjCBool = false
        guard FileManager.default.fileExists(atPath: path, isDirectory: &isDir) else {
            throw LabError(.input, "\(path): no such run directory or file")
        }
        if isDir.boolValue { file = path + "/observations.json" }
        let bytes = try Files.readBytes(file)
        if let (verdicts, _) = try? Report.decodeResults(bytes) { return verdicts }
        do {
            let o = try JSONDecoder().decode(Observations.self, from: Data(bytes))
            return [Verdict(profile: o.profile, image: o.image, kind: .pass, checks: [], observations: o, runDirectory: isDir.boolValue ? path : Path.directory(of: path))]
        } catch {
            throw LabError(.input, "\(file): neither a results file nor observations.json (\(error))")
        }
    }
}
