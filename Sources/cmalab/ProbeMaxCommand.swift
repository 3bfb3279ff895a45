import ArgumentParser
import Foundation
import LabCore
import LabRuntime

struct ProbeMaxCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "probe-max",
        abstract: "Find the largest cma= size that reserves on a machine, by bisection over real boots.",
        discussion: """
        Candidate sizes are whole multiples of the image's CMA alignment (2 or 4 MiB, read from its .config as the \
        oracle does), up to the guest's memory or the --at window. Each boot is a real boot (a run directory each); \
        a size counts as reserving when the kernel prints `cma: Reserved`. About log2(memory / alignment) boots. \
        The oracle answers the same question from its own predictions, and the report says whether they agree.
        Example: cmalab probe-max --image cma-6.12 --memory 1G
        """
    )

    @Option(name: .long, help: "An image name from Images/ (default: cma-6.12).")
    var image: String = ImageCatalog.defaultImage

    @OptionGroup var guest: GuestOptions

    @Option(name: .long, help: ArgumentHelp("Probe cma=SIZE@BASE-LIMIT instead of a plain cma=SIZE (for example 1G-2G).", valueName: "base-limit"))
    var at: String?

    @Option(name: .long, help: "Accelerator: auto, kvm or tcg.")
    var accel: AccelChoice = .auto

    @Option(name: .long, help: "Seconds before one boot is declared hung (an area that leaves too little memory for user space hangs the boot: the kernel's lines still decide).")
    var timeout: Double = 45

    @Flag(name: .long, help: "Print the answer as JSON.")
    var json = false

    func run() throws {
        let memory = guest.memory, machine = guest.machine
        try runReportingErrors {
            guard memory >= .mib(128), memory.bytes % (1 << 20) == 0 else {
                throw LabError(.input, "--memory must be a whole number of MiB, at least 128M (got \(memory))")
            }
            let lab = Lab(progress: Progress(quiet: json))
            let kernel = try lab.kernel(image: image)
            let spec = MachineSpec(memory: memory, type: machine, for: kernel.architecture)
            let initrd = try lab.initramfs.ensure(.agent(lab.paths.agentBinary(for: kernel.architecture)))
            let plan = QEMUPlan(machine: spec, kernel: kernel.kernel, initrd: initrd, commandLine: kernel.commandLine)
            guard let base = OracleRuntime.input(kernel: kernel, plan: plan) else {
                throw LabError(.input, "cannot tell the kernel version of \(image): its .config has no version header")
            }
            let (alignment, why) = Oracle.alignment(base.version, base.config)
            var question = ProbeMaxQuestion(machine: spec, alignment: alignment)
            if let at {
                do throws(InputError) { question.window = try ProbeMaxQuestion.parseWindow(at) } catch { throw LabError(.input, error.description) }
            }
            guard question.maxUnits >= 1 else { throw LabError(.input, "the window is smaller than one alignment unit (\(ByteSize(bytes: alignment)))") }

            // The oracle first (no boots): the same bisection over its own predictions.
            let oracle = ProbeMax.bisect(question) { units in
                var input = base
                input.commandLine = plan.effectiveCommandLine.appending(KernelCommandLine(parsing: "cma=" + question.cmaValue(units: units)))
                return Oracle.predict(input).outcome == .reserved
            }

            let runner = ProfileRunner(lab: lab)
            runner.accel = accel
            var boots = 0
            let started = Date()
            let answer = try ProbeMax.bisect(question) { (units: UInt64) throws(LabError) -> Bool in
                boots += 1
                let value = question.cmaValue(units: units)
                let profile = Profile.adHoc(name: "probe-max-\(boots)", image: image, machine: spec,
                                            commandLine: KernelCommandLine(parsing: "cma=" + value), timeout: timeout)
                runner.runName = "probe-max-\(image)-\(boots)"
                let v = runner.run(profile, image: image)
                // The kernel's own words decide (console or /dev/kmsg): an area so large that user space cannot
                // start (the agent never answers, the boot times out) was still reserved.
                guard let obs = v.observations, !obs.boot.reserved.isEmpty || !obs.boot.failedMiB.isEmpty || obs.ending == .poweredOff else {
                    throw LabError(.qemu, "boot \(boots) (cma=\(value)) could not be judged: \(v.error ?? "no observations")")
                }
                let reserved = !obs.boot.reserved.isEmpty
                let note = obs.ending == .poweredOff ? "" : " (then \(obs.ending.rawValue): \(v.error ?? obs.crash?.summary ?? "user space did not come up"))"
                if !json { printErr("boot \(boots): cma=\(value) \(reserved ? "reserved" : "did not reserve (\(Self.why(obs)))")\(note) in \(String(format: "%.1f", v.seconds)) s") }
                return reserved
            }
            let seconds = Date().timeIntervalSince(started)
            if json {
                struct Out: Encodable {
                    var image: String; var machine: String; var window: String?; var alignmentBytes: UInt64
                    var answer: ProbeMaxAnswer; var boots: Int; var seconds: Double; var oracle: ProbeMaxAnswer; var oracleAgrees: Bool
                }
                let out = Out(image: image, machine: "\(machine.rawValue), \(memory)", window: at, alignmentBytes: alignment, answer: answer,
                              boots: boots, seconds: seconds, oracle: oracle, oracleAgrees: oracle.largestBytes == answer.largestBytes)
                let encoder = JSONEncoder()
                encoder.outputFormatting = [.prettyPrinted, .sortedKeys]
                print(String(decoding: try encoder.encode(out), as: UTF8.self))
                return
            }
            print(Self.render(question, image: image, answer: answer, oracle: oracle, boots: boots, seconds: seconds, alignmentWhy: why))
        }
    }

    static func why(_ o: Observations) -> String {
        return o.boot.failureReasons.first ?? (o.boot.failedMiB.isEmpty ? "no Reserved line" : "Failed to reserve")
    }

    static func render(_ q: ProbeMaxQuestion, image: String, answer: ProbeMaxAnswer, oracle: ProbeMaxAnswer, boots: Int,
                       seconds: Double, alignmentWhy: String) -> String {
        func size(_ b: UInt64) -> String { "\(b >> 20) MiB" }
        let what = q.window.map { "cma=SIZE@\($0.text)" } ?? "cma=SIZE"
        var out = ["\(image) on \(q.machine.type.rawValue), \(q.machine.memory): the largest \(what) that reserves"]
        if answer.largestBytes == 0 {
            out.append("  none: not even \(size(q.alignment)) reserves")
        } else {
            out.append("  \(size(answer.largestBytes)) (cma=\(q.cmaValue(units: answer.largestBytes / q.alignment)))"
                       + (answer.firstFailingBytes.map { "; \(size($0)) does not" } ?? "; the largest candidate"))
        }
        out.append("  alignment \(alignmentWhy)")
        out.append("  boots: \(boots) for \(q.maxUnits) candidate sizes (\(String(format: "%.1f", seconds)) s)")
        if oracle.largestBytes == answer.largestBytes {
            out.append("  oracle: agrees (predicts \(size(oracle.largestBytes)))")
        } else {
            out.append("  oracle: DIVERGES: predicts \(size(oracle.largestBytes))" + (oracle.firstFailingBytes.map { ", \(size($0)) failing" } ?? ""))
        }
        return out.joined(separator: "\n")
    }
}
