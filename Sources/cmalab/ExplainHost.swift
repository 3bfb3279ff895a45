import ArgumentParser
import Foundation
import LabCore
import LabRuntime

/// `cmalab explain --host LOG`: the oracle's prediction for a real machine, without booting: the twin `cmalab
/// replay` would boot (the host's map through memmap=exactmap, its SRAT nodes), the chosen image's kernel, and
/// the host's cma= parameters, then each `--try`.
extension ExplainCommand {
    func explainHost(_ log: String) throws {
        try runReportingErrors {
            let (facts, hostCMA, plan) = try ReplayCommand.readAndPlan(log)
            var candidates: [KernelCommandLine] = facts.boot.commandLine == nil ? [] : [hostCMA]
            for t in tries + (parameters.isEmpty ? [] : [parameters.joined(separator: " ")]) {
                candidates.append(try ReplayCommand.tryParameters(t))
            }
            guard !candidates.isEmpty else {
                throw LabError(.input, "\(log) has no `Command line:` line, so the host's cma= parameters are unknown", hint: "pass the parameters to predict with --try 'cma=...'")
            }
            let lab = Lab()
            // An arm64 board's twin runs on the arm64 image unless one is named.
            let image = kernelOptions.image ?? (kernelOptions.kernel == nil ? plan.machine.architecture.defaultImage : nil)
            let kernel = try lab.kernel(image: image, kernelPath: kernelOptions.kernel, configPath: kernelOptions.config)
            guard kernel.architecture == plan.machine.architecture else {
                throw LabError(.input, "\(kernel.name) is an \(kernel.architecture) kernel but the twin of \(log) is an \(plan.machine.architecture) machine (\(plan.machine.type.rawValue))",
                               hint: "leave out --image for the twin's default (\(plan.machine.architecture.defaultImage)), or name an \(plan.machine.architecture) image")
            }
            let initrd = try? lab.initramfs.ensure(.agent(lab.paths.agentBinary(for: kernel.architecture)))
            var rows: [[String]] = [["PARAMETERS", "PREDICTION"]]
            for (i, cma) in candidates.enumerated() {
                let profile = Replay.profile(name: "explain", plan: plan, cma: cma, image: kernel.name)
                var q = QEMUPlan(machine: plan.machine, kernel: kernel.kernel, initrd: initrd, commandLine: kernel.commandLine.appending(profile.commandLine))
                q.agentSocket = nil
                q.deviceTree = plan.deviceTree
                guard let input = OracleRuntime.input(kernel: kernel, plan: q) else {
                    throw LabError(.input, "cannot tell the kernel version of \(kernel.name)", hint: "pass --config with the kernel's .config")
                }
                let p = Oracle.predict(input)
                let hosts = i == 0 && facts.boot.commandLine != nil
                let label = hosts ? (cma.parameters.isEmpty ? "the host's (no cma=)" : "\(cma) (the host's)") : cma.description
                rows.append([label, p.summary])
                if i == 0 {
                    print("")
                    print(Self.render(p, image: kernel.name, commandLine: q.effectiveCommandLine, masks: dmaMasks.isEmpty ? [32, 64] : dmaMasks))
                }
            }
            print("")
            print("on this host, with \(kernel.name)'s rules (the host ran \(facts.boot.kernelRelease ?? "an unknown kernel")):")
            print(Table.render(rows))
            if let w = plan.window, w.isShifted {
                print("the twin is shifted: these are its addresses; each board address is the twin's \(w.boardOffsetText)")
            }
        }
    }
}
