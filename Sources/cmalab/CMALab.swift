import ArgumentParser
import Foundation
import LabCore
import LabRuntime

@main
struct CMALab: ParsableCommand {
    static let version = "0.1.0"
    static let configuration = CommandConfiguration(
        commandName: "cmalab",
        abstract: "Boot Linux kernels in QEMU and check what the Contiguous Memory Allocator does with them.",
        discussion: """
        Exit codes: 0 success, 1 a check failed, 2 bad input, 3 kernel crash, 4 timeout, 5 lab error \
        (QEMU, build, agent), 130 interrupted.
        """,
        version: version,
        subcommands: [RunCommand.self, ValidateCommand.self, MatrixCommand.self, ReportCommand.self, DiffCommand.self, ImageCommand.self,
                      BootCommand.self, ShellCommand.self, BenchCommand.self, ExplainCommand.self, ProbeMaxCommand.self, ReplayCommand.self]
    )
}

/// Exit codes shared by every command.
enum ExitCodes {
    static func code(for error: LabError) -> Int32 {
        switch error.code {
        case .input, .imageNotFound, .preflight: return 2
        case .kernelCrash: return 3
        case .timeout: return 4
        case .interrupted: return 130
        case .missingTool, .build, .configDropped, .qemu, .libvirt, .agent, .io: return 5
        }
    }
}

/// Runs a command body; a LabError becomes one clear message on stderr and its exit code.
func runReportingErrors(_ body: () throws -> Void) throws {
    do {
        try body()
    } catch let e as LabError {
        FileHandle.standardError.write(Data("cmalab: \(e.description)\n".utf8))
        throw ExitCode(ExitCodes.code(for: e))
    }
}

func printErr(_ s: String) { FileHandle.standardError.write(Data((s + "\n").utf8)) }
