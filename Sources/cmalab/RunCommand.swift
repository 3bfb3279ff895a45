import ArgumentParser
import Foundation
import LabCore
import LabRuntime
import Synchronization

struct RunCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "run",
        abstract: "Run lab profiles: boot each on its image, observe, and give a verdict with reasons.",
        discussion: """
        With no argument it runs every profile in Profiles/ on its own image. Each run writes its artifacts \
        (console.log, dmesg.txt, meminfo-*.txt, observations.json, config, reproduce.sh) to a run directory. \
        Exit status 0 only when every verdict is pass; 1 when a profile failed or the lab could not decide.
        """
    )

    @Argument(help: "Profile files or folders (default: Profiles/).")
    var profiles: [String] = []

    @Option(name: .long, help: "Run on this image instead of each profile's own (repeat for several).")
    var image: [String] = []

    @OptionGroup var results: ResultsOptions

    @Option(name: .long, help: "Accelerator: auto, kvm or tcg.")
    var accel: AccelChoice = .auto

    @Flag(name: .long, help: "Stream each guest's console (one profile at a time).")
    var console = false

    @Option(name: .long, help: "Profile runs at once (default: the number of cores; 1 with --console). Verdicts print as runs finish, longest runs start first.")
    var jobs: Int = ProcessInfo.processInfo.activeProcessorCount

    @OptionGroup var backendOptions: BackendOptions

    func run() throws {
        var allPassed = true
        try runReportingErrors {
            let lab = Lab()
            let list = try ProfileLoader.load(profiles, defaultDirectory: lab.paths.profilesDirectory)
            guard !list.isEmpty else { throw LabError(.input, "no profiles found", hint: "pass profile files or a folder of .yaml files") }
            for p in list { for w in p.warnings { printErr("cmalab: \(p.file): warning: \(w)") } }
            guard jobs >= 1 else { throw LabError(.input, "--jobs must be at least 1", hint: "e.g. --jobs 2") }
            let cells = list.flatMap { p in (image.isEmpty ? [p.imageName] : image).map { MatrixCell(image: $0, profile: p, memoryAxis: nil, extraCommandLine: "") } }
            // The matrix's runner without its cell stamps: each cell is one profile run, `jobs` at a time.
            let runner = MatrixRunner(lab: lab, jobs: console ? 1 : jobs)
            runner.accel = accel
            runner.backends = [try backendOptions.single()]
            runner.stampsCells = false
            if console { runner.onConsoleLine = { FileHandle.standardError.write(Data(("  | " + $0 + "\n").utf8)) } }
            let started = Date()
            let total = cells.count
            let done = Mutex(0)
            runner.onEvent = { event in
                switch event {
                case .cellStarted(let c): printErr("[\(c.profile.name) on \(c.image)] ...")
                case .cellFinished(let c, let v):
                    let n = done.withLock { $0 += 1; return $0 }
                    let why = v.error ?? v.failedChecks.first?.summary ?? ""
                    printErr("[\(n)/\(total)] \(v.kind.rawValue.uppercased()) \(c.profile.name) on \(c.image) in \(String(format: "%.1f", v.seconds)) s\(why.isEmpty ? "" : ": \(why)")")
                case .imageBuilt(let name, let seconds, let cached):
                    if !cached { printErr(String(format: "cmalab: image %@ built in %.1f s", name, seconds)) }
                case .imageFailed(let name, let message): printErr("cmalab: image \(name): FAILED: \(message)")
                }
            }
            let verdicts = try runner.run(cells, imageFailures: runner.buildImages(for: cells))
            try results.report(verdicts, started: started, accel: accel, title: "cmalab run: \(verdicts.count) profile run(s)")
            printErr(String(format: "cmalab: %d run(s) in %.1f s; run directories under %@", verdicts.count, Date().timeIntervalSince(started), lab.paths.runs))
            var usage = rusage()
            getrusage(RUSAGE_SELF.rawValue, &usage)
            printErr("cmalab: peak RSS \(usage.ru_maxrss) KiB (this process; QEMU not included)")
            allPassed = verdicts.allSatisfy { $0.kind == .pass }
        }
        if !allPassed { throw ExitCode(1) }
    }
}

struct ValidateCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "validate",
        abstract: "Check profiles without booting: format, values, and what the kernel will silently do with cma=."
    )

    @Argument(help: "Profile files or folders (default: Profiles/).")
    var profiles: [String] = []

    func run() throws {
        try runReportingErrors {
            let lab = Lab()
            let list = try ProfileLoader.load(profiles, defaultDirectory: lab.paths.profilesDirectory)
            let catalog = try lab.catalog()
            for p in list {
                let image = p.imageName
                _ = try catalog.resolve(image)
                var line = "ok \(p.file): \(p.name) on \(image), \(p.machine.memory) \(p.machine.type.rawValue), cmdline `\(p.commandLine)`, \(p.steps.count) step(s)"
                if let cma = p.cmaRequest { line += "; cma=\(cma.description)\(cma.isFixed ? " (fixed)" : "")" }
                print(line)
                for w in p.warnings { print("  warning: \(w)") }
            }
        }
    }
}
