import Foundation
import LabCore

/// Writes the HTML report of `run --html`, `matrix --html` and `report html`: links to each run directory
/// relative to the page, lists the files each run directory holds, and reads its kernel `config`.
public enum HTMLPageWriter {
    /// Writes the page. A verdict's run directory is listed, read and linked only when it names an existing
    /// directory under one of `runRoots` (the runs folder, the folders of the results files read): a results file
    /// can be crafted, and its `runDirectory` must not make the page read `/etc` or link `javascript:`.
    public static func write(_ verdicts: [Verdict], meta: ReportMeta?, title: String, to path: String,
                             runRoots: [String] = [LabPaths.discover().runs]) throws(LabError) {
        let cwd = FileManager.default.currentDirectoryPath
        let pageDirectory = Path.directory(of: Path.resolve(path, relativeTo: cwd))
        var input = HTMLReportInput(title: title, verdicts: verdicts, meta: meta)
        input.predictedPlacement = HTMLReport.predictedPlacements(verdicts)
        let roots = runRoots.map { canonical(Path.resolve($0, relativeTo: cwd)) }
        for v in verdicts where !v.runDirectory.isEmpty {
            guard let dir = runDirectory(v.runDirectory, cwd: cwd, roots: roots) else { continue }
            input.runDirectoryHref[v.runDirectory] = HTMLReport.relativePath(from: canonical(pageDirectory), to: dir)
            if let names = try? FileManager.default.contentsOfDirectory(atPath: dir) {
                input.artifactFiles[v.runDirectory] = names.filter { n in
                    !n.hasPrefix(".") && n != "qemu.pid" && n != "owner.start" && !n.hasSuffix(".sock") && !n.contains(".tmp.")
                }.sorted()
            }
            if let text = try? String(contentsOfFile: dir + "/config", encoding: .utf8) {
                input.kernelConfigs[v.runDirectory] = KernelConfig(parsing: text)
            }
        }
        try Files.writePublic(Array(HTMLReport.page(input).utf8), to: path)
    }

    /// The absolute, symlink-free path of a verdict's run directory when it is safe to read: no scheme (`:` before
    /// the first `/`), no `..` component, an existing directory strictly under one of `roots` (canonical paths).
    static func runDirectory(_ name: String, cwd: String, roots: [String]) -> String? {
        guard !HTMLReport.hasScheme(name), !name.split(separator: "/").contains("..") else { return nil }
        let dir = canonical(Path.resolve(name, relativeTo: cwd))
        var isDirectory: ObjCBool = false
        guard FileManager.default.fileExists(atPath: dir, isDirectory: &isDirectory), isDirectory.boolValue else { return nil }
        return roots.contains { dir.hasPrefix($0.hasSuffix("/") ? $0 : $0 + "/") } ? dir : nil
    }

    /// `path` normalised, with symbolic links resolved (a link inside the runs folder must not lead outside it).
    static func canonical(_ path: String) -> String {
        Path.normalize(URL(fileURLWithPath: path).resolvingSymlinksInPath().path)
    }
}
