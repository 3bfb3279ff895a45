import Foundation
import Testing
import LabCore
import LabProtocol
@testable import LabRuntime

/// Every suite that boots a guest lives in one of two lanes. A lane runs its tests one at a time; the two lanes
/// run side by side, so two guests (or a guest and a download, or a libvirtd start) share the machine's cores
/// (on 2 cores the integration tests took 480 s in one lane). The suites are split so the lanes take about the
/// same time. A "no QEMU left behind" check therefore looks only at its own runs (`qemuProcesses(ofRuns:)`,
/// `qemuProcesses(runNamed:)`): the other lane may have a guest up at any moment.
@Suite(.serialized) enum Integration {}
@Suite(.serialized) enum IntegrationSecondLane {}

/// Shared set-up for tests that boot real kernels in real QEMU (TCG). Images come from the cache that
/// `make test-images` fills; a missing one is built here (slow, but correct).
enum IT {
    static let lab = Lab(progress: Progress(quiet: true))

    static func kernel(_ image: String) throws -> BuiltKernel { try lab.kernel(image: image) }

    static func request(_ memory: ByteSize = .gib(4), _ cmdline: KernelCommandLine, name: String) -> BootRequest {
        var r = BootRequest(machine: MachineSpec(memory: memory), commandLine: cmdline, runName: "it-\(name)")
        r.accel = .tcg
        return r
    }

    static func console(_ session: BootSession) throws -> String {
        try String(contentsOfFile: session.run.file("console.log"), encoding: .utf8)
    }

    /// The built CLI: the `cmalab` next to this test bundle (same build folder, so a build with another
    /// `--scratch-path` tests its own binary), else the debug build made by `swift build --build-tests`.
    static var cli: String {
        let here = Path.directory(of: CommandLine.arguments.first ?? "")
        for dir in [here, Path.directory(of: here)] where FileManager.default.isExecutableFile(atPath: dir + "/cmalab") {
            return dir + "/cmalab"
        }
        return lab.paths.home + "/.build/debug/cmalab"
    }

    struct CLIResult { var status: Int32; var stdout: String; var stderr: String; var seconds: Double }

    /// Runs the cmalab binary and collects its output.
    static func runCLI(_ args: [String], stdin: String? = nil, environment: [String: String] = [:]) throws -> CLIResult {
        let dir = NSTemporaryDirectory() + "cmalab-it-\(UUID().uuidString)"
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let started = Date()
        let input: ChildProcess.Input = stdin.map { .file($0) } ?? .null
        let envPrefix = environment.isEmpty ? [] : ["env"] + environment.keys.sorted().map { "\($0)=\(environment[$0]!)" }
        let p = try ChildProcess(envPrefix + [cli] + args, stdin: input, stdout: .file(dir + "/out"), stderr: .file(dir + "/err"))
        let t = p.wait()
        let status: Int32
        switch t { case .exited(let c): status = c; case .signaled(let s): status = 128 + s }
        return CLIResult(status: status,
                         stdout: (try? String(contentsOfFile: dir + "/out", encoding: .utf8)) ?? "",
                         stderr: (try? String(contentsOfFile: dir + "/err", encoding: .utf8)) ?? "",
                         seconds: Date().timeIntervalSince(started))
    }

    /// QEMU processes (anyone's) of runs named `name`: RunDirectory names a run's directory, and QEMU's `-name`,
    /// `<yyyyMMdd-HHmmss>-<name>` (`-<n>` added when two start in the same second). For a test whose run directory
    /// is not at hand (a boot that threw); the name must be one no other test uses.
    static func qemuProcesses(runNamed name: String) -> [String] {
        qemuProcesses(named: { runDirectory in
            let run = runDirectory.dropFirst("yyyyMMdd-HHmmss-".count)
            guard run.hasPrefix(name) else { return false }
            let rest = run.dropFirst(name.count)
            return rest.isEmpty || (rest.count > 1 && rest.first == "-" && rest.dropFirst().allSatisfy(\.isNumber))
        })
    }

    /// QEMU processes (anyone's) whose `-name` is one of these run directories.
    static func qemuProcesses(ofRuns runs: [String]) -> [String] {
        let names = Set(runs.map { Path.basename($0) })
        return qemuProcesses(named: { names.contains($0) })
    }

    /// Every running QEMU's command line (pid first) whose `-name`, the basename of its run directory, matches.
    private static func qemuProcesses(named matches: (String) -> Bool) -> [String] {
        let out = (try? runCapturing(["pgrep", "-a", "-f", "qemu-system-"])) ?? ""
        return out.split(separator: "\n").map(String.init).filter { line in
            let words = line.split(separator: " ").map(String.init)
            guard let i = words.firstIndex(of: "-name"), i + 1 < words.count else { return false }
            return matches(words[i + 1])
        }
    }
}
