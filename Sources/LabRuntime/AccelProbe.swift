import Foundation
import LabCore

/// Chooses the accelerator. `auto` uses KVM only when /dev/kvm opens and a short probe boot proves it
/// works; otherwise TCG with a one-line notice. The probe result is cached per host kernel and QEMU
/// version, so it costs at most ~10 s once.
public enum AccelChoice: String, Sendable, CaseIterable {
    case auto, kvm, tcg
}

public struct AccelProbe: Sendable {
    let paths: LabPaths
    public var probeTimeout: TimeInterval = 10
    /// How long the probe guest may stay silent. A working KVM prints the kernel's first console line well under
    /// a second after QEMU starts; a KVM that opens but cannot run a guest (this project's machine: the vCPU
    /// spins in the host kernel) prints nothing at all, so the probe need not wait the whole `probeTimeout`.
    public var silenceTimeout: TimeInterval = 3

    public init(paths: LabPaths) { self.paths = paths }

    /// The accelerator to use and, when `auto` fell back, why.
    public func resolve(_ choice: AccelChoice, kernel: String, qemu: String = Architecture.default.qemuBinary) throws(LabError) -> (Accelerator, notice: String?) {
        switch choice {
        case .tcg: return (.tcg, nil)
        case .kvm:
            if let reason = Self.kvmDeviceProblem() {
                throw LabError(.qemu, "--accel kvm: \(reason)", hint: "use --accel auto or --accel tcg")
            }
            return (.kvm, nil)
        case .auto:
            if let reason = Self.kvmDeviceProblem() { return (.tcg, "using TCG: \(reason)") }
            let cacheFile = paths.cache + "/accel-probe"
            let identity = hostIdentity(qemu)
            if let cached = try? String(contentsOfFile: cacheFile, encoding: .utf8) {
                let lines = cached.split(separator: "\n", omittingEmptySubsequences: false).map(String.init)
                if lines.count >= 2, lines[0] == identity {
                    return lines[1] == "kvm" ? (.kvm, nil) : (.tcg, "using TCG: \(lines.dropFirst(2).joined(separator: " ")) (cached probe; delete \(cacheFile) to probe again)")
                }
            }
            let (works, detail) = try probe(kernel: kernel, qemu: qemu)
            try? Files.mkdirs(paths.cache)
            try? Files.write("\(identity)\n\(works ? "kvm" : "tcg")\n\(detail)\n", to: cacheFile)
            return works ? (.kvm, nil) : (.tcg, "using TCG: \(detail)")
        }
    }

    static func kvmDeviceProblem() -> String? {
        let fd = open("/dev/kvm", O_RDWR | O_CLOEXEC)
        if fd < 0 { return "/dev/kvm cannot be opened (\(String(cString: strerror(errno))))" }
        close(fd)
        return nil
    }

    func hostIdentity(_ qemu: String) -> String {
        var u = utsname()
        uname(&u)
        let release = withUnsafeBytes(of: &u.release) { String(decoding: $0.prefix { $0 != 0 }, as: UTF8.self) }
        let version = (try? runCapturing([qemu, "--version"]))?.split(separator: "\n").first.map(String.init) ?? qemu
        return "host \(release); \(version)"
    }

    /// Boots the kernel under KVM with no initramfs: a working KVM reaches the "cannot mount root" panic
    /// in about a second and QEMU exits (panic=-1, -no-reboot). A hang or an emulation failure does not.
    func probe(kernel: String, qemu: String) throws(LabError) -> (Bool, String) {
        var plan = QEMUPlan(machine: MachineSpec(memory: .mib(256)), kernel: kernel, commandLine: "rdinit=/cmalab-accel-probe")
        plan.binary = qemu
        plan.accelerator = .kvm
        let run = try RunDirectory(root: paths.cache + "/probe-runs", name: "kvm-probe")
        defer { try? FileManager.default.removeItem(atPath: run.path) }
        let machine = try QEMUMachine(plan: plan, run: run)
        var spoke = false
        machine.onConsoleLine = { _ in spoke = true }
        let silence = min(silenceTimeout, probeTimeout)
        if try !machine.runLoop(until: Date().addingTimeInterval(silence), { spoke }), machine.isRunning {
            machine.stop()
            return (false, "KVM is present but a probe guest printed nothing within \(Int(silence)) s")
        }
        let exit = try machine.waitForExit(timeout: probeTimeout)
        switch exit {
        case .crashed(let c) where c.kind == .panic:
            return (true, "KVM works")
        case .timedOut:
            return (false, "KVM is present but a probe guest did not boot within \(Int(probeTimeout)) s")
        case .qemuFailed(let why):
            let short = why.contains("emulation failure") ? "KVM emulation failure" : why
            return (false, "KVM is present but the probe failed: \(short)")
        default:
            return (false, "KVM is present but the probe guest ended unexpectedly (\(exit))")
        }
    }
}
