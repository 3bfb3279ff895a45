import ArgumentParser
import Foundation
import LabCore
import LabProtocol
import LabRuntime

struct BenchCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "bench",
        abstract: "Boot the same guest several times and print timing figures (medians).",
        discussion: """
        Prints QEMU start to agent ready, and QEMU start to power off, over --runs boots. With --compare, runs \
        the seed scenario three ways on the same kernel (TCG, --memory, --append): (a) bare QEMU with a busybox \
        init doing it, (b) `cmalab run` of the seed profile, (c) virtme-ng if installed; prints medians, the \
        ratios, agent-ready time, cmalab's own peak RSS, and the kernel cache's build figures.
        """
    )

    @OptionGroup var kernelOptions: KernelOptions
    @OptionGroup var machine: MachineOptions

    @Option(name: .long, help: "Number of boots.")
    var runs: Int = 5

    @Flag(name: .long, help: "Compare bare QEMU, cmalab run and virtme-ng on the seed scenario.")
    var compare = false

    @Option(name: .long, help: "With --compare: the profile (b) runs (default: Profiles/seed-1g-at-1-2g.yaml).")
    var profile: String?

    @Option(name: .long, help: "Seconds to pause before each timed boot (back-to-back TCG boots alternate fast and slow on some hosts).")
    var settle: Double = 1

    func validate() throws {
        guard (1...100).contains(runs) else { throw ValidationError("--runs must be between 1 and 100") }
        guard (0...60).contains(settle) else { throw ValidationError("--settle must be between 0 and 60 seconds") }
    }

    func run() throws {
        try runReportingErrors {
            let lab = Lab(progress: Progress(quiet: false))
            let kernel = try lab.kernel(image: kernelOptions.image, kernelPath: kernelOptions.kernel, configPath: kernelOptions.config)
            if compare {
                guard kernelOptions.kernel == nil else { throw LabError(.input, "--compare runs an image", hint: "use --image NAME") }
                try CompareBench(lab: lab, kernel: kernel, imageName: kernelOptions.image ?? ImageCatalog.defaultImage, memory: machine.memory,
                                 append: machine.append.isEmpty ? "cma=1G@1-2G" : machine.append, runs: runs, settle: settle,
                                 profilePath: profile ?? lab.paths.profilesDirectory + "/seed-1g-at-1-2g.yaml").report()
                return
            }
            let initrd = try lab.initramfs.ensure(.agent(lab.paths.agentBinary(for: kernel.architecture)))
            var ready: [Double] = []
            var total: [Double] = []
            for i in 1...runs {
                Thread.sleep(forTimeInterval: settle)
                let session = try lab.boot(kernel, machine.request(name: "bench-\(i)"), bootTimeout: machine.timeout)
                let readyAt = session.agent?.readyAt.map { $0.timeIntervalSince(session.machine.started) } ?? .nan
                let exit = try session.finish(timeout: machine.timeout)
                guard exit == .poweredOff else { throw LabError(.qemu, "boot \(i) ended with \(exit)") }
                ready.append(readyAt)
                total.append(session.machine.uptime)
                printErr(String(format: "run %d: agent ready %.3f s, powered off %.3f s", i, readyAt, session.machine.uptime))
            }
            let agentSize = (try? FileManager.default.attributesOfItem(atPath: lab.paths.agentBinary(for: kernel.architecture))[.size] as? Int) ?? 0
            let initrdSize = (try? FileManager.default.attributesOfItem(atPath: initrd)[.size] as? Int) ?? 0
            print("image            \(kernel.name) (\(machine.machine.rawValue), \(machine.memory), \(machine.cpus) CPU, \(machine.append.isEmpty ? "no cmdline" : machine.append))")
            print("runs             \(runs)")
            print(Self.line("agent ready", ready))
            print(Self.line("power off", total))
            print("agent binary     \(agentSize) bytes")
            print("initramfs        \(initrdSize) bytes (uncompressed newc cpio)")
        }
    }

    static func line(_ name: String, _ xs: [Double]) -> String {
        let s = xs.sorted()
        return String(format: "%@ median %.3f s (min %.3f, max %.3f)", name.padding(toLength: 16, withPad: " ", startingAt: 0),
                      median(s) ?? .nan, s.first!, s.last!)
    }
}
