import Foundation
import Testing
import LabCore
import LabProtocol
@testable import LabRuntime

/// Every suite that boots a guest lives in here: one guest at a time, so "no QEMU left behind" checks
/// see only their own.
@Suite(.serialized) enum Integration {}

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

    /// QEMU processes this test process started that are still running (there must be none after a test).
    /// Only our own children count: other cmalab runs on the machine are none of our business.
    static func qemuProcesses() -> [String] {
        let out = (try? runCapturing(["pgrep", "-a", "-P", "\(getpid())", "-f", "qemu-system-x86_64"])) ?? ""
        return out.split(separator: "\n").map(String.init)
    }

    /// QEMU processes (anyone's) whose `-name` is one of these run directories.
    static func qemuProcesses(ofRuns runs: [String]) -> [String] {
        let out = (try? runCapturing(["pgrep", "-a", "-f", "qemu-system-x86_64"])) ?? ""
        let names = Set(runs.map { Path.basename($0) })
        return out.split(separator: "\n").map(String.init).filter { line in
            let words = line.split(separator: " ").map(String.init)
            guard let i = words.firstIndex(of: "-name"), i + 1 < words.count else { return false }
            return names.contains(words[i + 1])
        }
    }
}
