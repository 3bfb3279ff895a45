import ArgumentParser
import Foundation
import LabCore
import LabProtocol
import LabRuntime

struct BootCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "boot",
        abstract: "Boot a kernel in QEMU, stream its console, and power it off (or run one command in it).",
        discussion: """
        The console (ttyS0) is saved to console.log in a new run directory and streamed to the terminal \
        unless --quiet. With --exec the command's output goes to stdout and the console to stderr.
        """
    )

    @OptionGroup var kernelOptions: KernelOptions
    @OptionGroup var machine: MachineOptions
    @OptionGroup var backendOptions: BackendOptions

    @Flag(name: .long, help: "Do not stream the console.")
    var quiet = false

    @Option(name: .long, help: "Run this shell command in the guest (busybox sh) and exit with its status.")
    var exec: String?

    @Option(name: .long, help: "Seconds the --exec command may run.")
    var execTimeout: Double = 300

    @Flag(name: .long, help: "Print the guest's Cma meminfo fields and CMA areas, then power off.")
    var report = false

    @Option(name: .long, help: "Boot this shell script as /init instead of the agent (busybox is in the initramfs).")
    var initScript: String?

    func run() throws {
        try runReportingErrors {
            let lab = Lab()
            let kernel = try lab.kernel(image: kernelOptions.image, kernelPath: kernelOptions.kernel, configPath: kernelOptions.config)
            var request = machine.request(name: "boot-\(kernel.name)")
            request.backend = try backendOptions.single()
            if let initScript {
                guard let text = try? String(contentsOfFile: initScript, encoding: .utf8) else {
                    throw LabError(.input, "cannot read --init-script \(initScript)")
                }
                request.initScript = text
            }
            let consoleToStderr = exec != nil || report
            if !quiet {
                request.onConsoleLine = { line in
                    let out = consoleToStderr ? FileHandle.standardError : FileHandle.standardOutput
                    out.write(Data((line + "\n").utf8))
                }
            }
            printErr("cmalab: booting \(kernel.name) on \(machine.machine.rawValue), \(machine.memory), \(machine.cpus) CPU(s): \(request.commandLine)")
            let session = try lab.boot(kernel, request, bootTimeout: machine.timeout)
            var status: Int32 = 0
            if let exec {
                status = try runExec(session, exec)
            }
            if report, let agent = session.agent {
                try printReport(agent)
            }
            let exit = try session.finish(timeout: machine.timeout)
            for line in Self.cmaSummary(session.machine.console.tail) { printErr("cmalab: \(line)") }
            let secs = String(format: "%.1f", session.machine.uptime)
            switch exit {
            case .poweredOff:
                printErr("cmalab: guest powered off after \(secs) s; console log: \(session.run.file("console.log"))")
                if status != 0 { throw ExitCode(status) }
            case .crashed(let crash):
                throw LabError(.kernelCrash, "\(crash.summary) after \(secs) s; console log: \(session.run.file("console.log"))")
            case .timedOut(let s):
                throw LabError(.timeout, "the guest did not power off within \(Int(s)) s; console log: \(session.run.file("console.log"))",
                               hint: "raise --timeout if the guest is just slow")
            case .qemuFailed(let why):
                throw LabError(.qemu, "\(why); see \(session.run.path)")
            }
        }
    }

    func runExec(_ session: BootSession, _ command: String) throws -> Int32 {
        guard let agent = session.agent else { throw LabError(.input, "--exec needs the agent; it cannot be combined with --init-script") }
        let result = try agent.shell(command, timeout: execTimeout)
        FileHandle.standardOutput.write(Data(result.stdout))
        FileHandle.standardError.write(Data(result.stderr))
        if result.stdoutTruncated || result.stderrTruncated { printErr("cmalab: output was cut at 4 MiB") }
        switch result.termination {
        case .exited(let code): return code
        case .signaled(let sig): printErr("cmalab: the command was killed by signal \(sig)"); return try ProfileRunner.shellStatus(signal: sig)
        case .timedOut: printErr("cmalab: the command timed out after \(Int(execTimeout)) s"); return 124
        case .spawnFailed(let e): printErr("cmalab: cannot start the command: \(String(cString: strerror(e)))"); return 127
        }
    }

    func printReport(_ agent: AgentClient) throws {
        let mem = try agent.meminfo()
        let cmaFields = mem.fields.filter { $0.name.hasPrefix("Cma") }
        if cmaFields.isEmpty { print("meminfo: no Cma fields (the kernel has no CONFIG_CMA)") }
        for f in cmaFields { print("meminfo \(f.name): \(f.value) \(f.unit ?? "")") }
        let areas = try agent.cmaAreas().map(AreaSnapshot.init)
        if areas.isEmpty { print("cma areas: none") }
        for a in areas {
            var s = "cma area \(a.name):"
            if let pfn = a.basePFN { s += " base \(hex(try ProfileRunner.bytes(pages: pfn, "base_pfn of \(a.name)")))" }
            if let c = a.count { s += " count \(c) pages (\(try ProfileRunner.bytes(pages: c, "count of \(a.name)") >> 20) MiB)" }
            if let u = a.used { s += " used \(u)" }
            if let m = a.maxchunk { s += " maxchunk \(m)" }
            if let o = a.orderPerBit { s += " order_per_bit \(o)" }
            for name in a.sysfs.keys.sorted() { s += " \(name) \(a.sysfs[name]!)" }
            print(s)
        }
    }

    /// The console lines an engineer looks for first.
    static func cmaSummary(_ lines: [String]) -> [String] {
        lines.map(KernelLog.stripTimestamp).filter { $0.hasPrefix("cma: ") || ($0.hasPrefix("Memory: ") && $0.contains("cma-reserved")) }
    }
}
