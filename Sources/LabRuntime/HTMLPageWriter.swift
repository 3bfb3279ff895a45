import Foundation
import LabCore

/// Writes the HTML report of `run --html`, `matrix --html` and `report html`: links to each run directory
/// relative to the page, lists the files each run directory holds, and reads its kernel `config`.
public enum HTMLPageWriter {
    public static func write(_ verdicts: [Verdict], meta: ReportMeta?, title: String, to path: String) throws(LabError) {
        let cwd = FileManager.default.currentDirectoryPath
        let pageDirectory = Path.directory(of: Path.resolve(path, relativeTo: cwd))
        var input = HTMLReportInput(title: title, verdicts: verdicts, meta: meta)
        // The oracle's predicted placement: the whole span the area may occupy ([lowest base, highest base + size)).
        for v in verdicts {
            if let a = v.oracle?.prediction.area, a.sizeBytes > 0 {
                let kind = a.exact ? "exact" : "a \(a.sizeMiB) MiB area based anywhere in \(hex(a.baseMin))-\(hex(a.baseMax))"
                // Checked: the prediction is read back from a results file, which may be crafted.
                let (top, overflow) = a.baseMax.addingReportingOverflow(a.sizeBytes - 1)
                input.predictedPlacement[v.key] = MemoryRange(start: a.baseMin, end: overflow ? UInt64.max : top, type: kind)
            }
        }
        for v in verdicts where !v.runDirectory.isEmpty {
            let dir = Path.resolve(v.runDirectory, relativeTo: cwd)
            input.runDirectoryHref[v.runDirectory] = HTMLReport.relativePath(from: pageDirectory, to: dir)
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
}
