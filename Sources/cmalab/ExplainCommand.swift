import ArgumentParser
import Foundation
import LabCore
import LabRuntime

struct ExplainCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "explain",
        abstract: "Predict what the kernel will do with cma= on a machine, without booting.",
        discussion: """
        The oracle reads the image's .config and kernel version, works out the guest's memory map (QEMU pc/q35 \
        low/high split, firmware and MMCONFIG holes), where QEMU puts the initrd and the kernel, and applies the \
        version's placement rules. It prints the outcome (reserved: size, base or base range, area, node; failed: \
        the kernel's message; kernel crash; ignored), the lines the kernel will print, its reasoning and its \
        assumptions. `cmalab run` compares this prediction with every boot it observes.
        Example: cmalab explain --image cma-6.12 --memory 4G "cma=1G@1-2G"
        """
    )

    @OptionGroup var kernelOptions: KernelOptions

    @OptionGroup var guest: GuestOptions

    @OptionGroup var topology: GuestTopologyOptions

    @Option(name: .long, help: "Initrd size (default: the size of the lab's agent initramfs, as `cmalab run` boots it).")
    var initrdSize: ByteSize?

    @Option(name: .customLong("dma-mask"), help: "A device DMA mask in bits to answer for (repeatable; default: 32 and 64).")
    var dmaMasks: [Int] = []

    @Flag(name: .long, help: "Print the prediction as JSON (the `prediction` object of docs/results-schema.md).")
    var json = false

    @Option(name: .long, help: "Predict for a real machine: its boot log (dmesg, journalctl -k -b); the prediction is for its twin (see `cmalab replay`), with the host's cma= parameters and each --try.")
    var host: String?

    @Option(name: .customLong("try"), help: "With --host: other CMA parameters to predict for on that machine (repeatable).")
    var tries: [String] = []

    @Argument(help: "Kernel command line parameters, e.g. \"cma=1G@1-2G\" (several words are joined with spaces).")
    var parameters: [String] = []

    func run() throws {
        let memory = guest.memory
        if let host { return try explainHost(host) }
        try runReportingErrors {
            guard memory >= .mib(128), memory.bytes % (1 << 20) == 0 else {
                throw LabError(.input, "--memory must be a whole number of MiB, at least 128M (got \(memory))", hint: "for example --memory 4G")
            }
            let lab = Lab()
            let kernel = try lab.kernel(image: kernelOptions.image, kernelPath: kernelOptions.kernel, configPath: kernelOptions.config)
            var spec = MachineSpec(memory: memory, type: guest.machine, for: kernel.architecture)
            spec.cpuModel = topology.cpu
            if let numa = topology.numa {
                var nodes: [ByteSize] = []
                for part in numa.split(separator: ",") {
                    guard let size = try? ByteSize.parse(String(part)) else { throw LabError(.input, "--numa: `\(part)` is not a size") }
                    nodes.append(size)
                }
                spec.numaNodes = nodes
                spec.cpus = nodes.count
                do throws(PlanError) { try QEMUPlan(machine: spec, kernel: "").validate() } catch { throw LabError(.input, "--numa: \(error.description)") }
            }
            let initrdPath: String?
            if initrdSize == nil {
                do { initrdPath = try lab.initramfs.ensure(.agent(lab.paths.agentBinary(for: kernel.architecture))) } catch let e as LabError {
                    throw LabError(.input, "cannot tell the initrd size: \(e.message)", hint: "pass --initrd-size (for example --initrd-size 9101824)")
                }
            } else {
                initrdPath = nil
            }
            var plan = QEMUPlan(machine: spec, kernel: kernel.kernel, initrd: initrdPath,
                                commandLine: kernel.commandLine.appending(KernelCommandLine(parsing: parameters.joined(separator: " "))))
            plan.agentSocket = nil
            guard var input = OracleRuntime.input(kernel: kernel, plan: plan) else {
                throw LabError(.input, "cannot tell the kernel version of \(kernel.name): its .config has no `# Linux/x86 X.Y.Z Kernel Configuration` header",
                               hint: "pass --config with the kernel's .config")
            }
            if let initrdSize { input.initrdSize = initrdSize.bytes }
            let p = Oracle.predict(input)
            if json {
                let encoder = JSONEncoder()
                encoder.outputFormatting = [.prettyPrinted, .sortedKeys, .withoutEscapingSlashes]
                print(String(decoding: try encoder.encode(p), as: UTF8.self))
                return
            }
            for m in dmaMasks where !(1...64).contains(m) { throw LabError(.input, "--dma-mask \(m): a DMA mask has 1 to 64 bits", hint: "for example --dma-mask 32") }
            print(Self.render(p, image: kernel.name, commandLine: plan.effectiveCommandLine, masks: dmaMasks.isEmpty ? [32, 64] : dmaMasks))
        }
    }

    static func render(_ p: CMAPrediction, image: String, commandLine: KernelCommandLine, masks: [Int] = [32, 64]) -> String {
        var out = ["\(image) (Linux \(p.kernel)) on \(p.machine), command line `\(commandLine)`", "", "prediction: \(p.summary)"]
        if let a = p.area {
            out.append("  area `\(a.name)`: \(a.sizeMiB) MiB, base " + (a.exact ? hex(a.baseMin)
                : "between \(hex(a.baseMin)) and \(hex(a.baseMax))") + (a.node.map { ", node \($0)" } ?? ""))
        }
        for a in p.nodeAreas ?? [] {
            out.append("  area `\(a.name)`: \(a.sizeMiB) MiB on node \(a.node ?? 0), base " + (a.exact ? hex(a.baseMin)
                : "between \(hex(a.baseMin)) and \(hex(a.baseMax))"))
        }
        for a in p.nodeFailures ?? [] { out.append("  area `\(a.name)`: \(a.sizeMiB) MiB on node \(a.node ?? 0) fails (no room)") }
        // The device question (OracleDevices.swift): what the DMA API can give a device with each mask.
        out += ["", "devices (DMA API, no IOMMU):"]
        out += masks.map { "  - " + Oracle.reach(mask: $0, p).sentence }
        if !p.messages.isEmpty {
            out += ["", "the kernel will print:"]
            out += p.messages.map { "  \($0)" }
        }
        if !p.unknownParameters.isEmpty {
            out += ["", "unknown to this kernel (passed to init): \(p.unknownParameters.joined(separator: " "))"]
        }
        if !p.otherAreas.isEmpty {
            out += ["", "other CMA parameters:"]
            out += p.otherAreas.map { "  - \($0)" }
        }
        if !p.warnings.isEmpty {
            out += ["", "warnings:"]
            out += p.warnings.map { "  - \($0)" }
        }
        out += ["", "why:"]
        out += p.reasoning.map { "  - \($0)" }
        out += ["", "assumptions:"]
        out += p.assumptions.map { "  - \($0)" }
        return out.joined(separator: "\n")
    }
}
