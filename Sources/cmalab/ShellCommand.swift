import ArgumentParser
import Foundation
import LabCore
import LabProtocol
import LabRuntime

struct ShellCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "shell",
        abstract: "Boot a kernel and run commands in it one line at a time over the agent.",
        discussion: """
        Each line runs with busybox sh -c in the guest; its output and status come back when it ends \
        (there is no terminal, so full-screen programs do not work). `cd DIR` changes the directory for the \
        next lines; `exit` or end of input powers the guest off.
        """
    )

    @OptionGroup var kernelOptions: KernelOptions
    @OptionGroup var machine: MachineOptions
    @OptionGroup var backendOptions: BackendOptions

    @Option(name: .long, help: "Seconds one command may run.")
    var commandTimeout: Double = 300

    func run() throws {
        try runReportingErrors {
            let lab = Lab()
            let kernel = try lab.kernel(image: kernelOptions.image, kernelPath: kernelOptions.kernel, configPath: kernelOptions.config)
            var request = machine.request(name: "shell-\(kernel.name)")
            request.backend = try backendOptions.single()
            printErr("cmalab: booting \(kernel.name) ...")
            let session = try lab.boot(kernel, request, bootTimeout: machine.timeout)
            guard let agent = session.agent, let hello = agent.hello else { throw LabError(.agent, "no agent") }
            printErr("cmalab: \(hello.uname.sysname) \(hello.uname.release) ready after \(String(format: "%.1f", session.machine.uptime)) s on \(hello.channel); `exit` powers off")
            var cwd = "/"
            let interactive = isatty(STDIN_FILENO) == 1
            while true {
                if interactive { FileHandle.standardError.write(Data("cmalab:\(cwd)# ".utf8)) }
                guard let line = readLine() else { break }
                let trimmed = line.trimmingCharacters(in: .whitespaces)
                if trimmed.isEmpty { continue }
                if trimmed == "exit" { break }
                var command = trimmed
                let isCd = trimmed == "cd" || trimmed.hasPrefix("cd ")
                if isCd { command = "\(trimmed) && pwd" }
                let r = try agent.shell(command, cwd: cwd, timeout: commandTimeout)
                if isCd, case .exited(0) = r.termination {
                    cwd = String(decoding: r.stdout, as: UTF8.self).trimmingCharacters(in: .whitespacesAndNewlines)
                } else {
                    FileHandle.standardOutput.write(Data(r.stdout))
                }
                FileHandle.standardError.write(Data(r.stderr))
                switch r.termination {
                case .exited(0): break
                case .exited(let c): printErr("[exit \(c)]")
                case .signaled(let s): printErr("[signal \(s)]")
                case .timedOut: printErr("[timed out after \(Int(commandTimeout)) s]")
                case .spawnFailed(let e): printErr("[cannot start: \(String(cString: strerror(e)))]")
                }
            }
            let exit = try session.finish(timeout: 30)
            if case .crashed(let c) = exit { throw LabError(.kernelCrash, c.summary) }
            printErr("cmalab: guest powered off")
        }
    }
}
