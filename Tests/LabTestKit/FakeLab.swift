import Foundation
import LabCore
import LabRuntime
import Synchronization

/// Launches `FakeMachine`s: no initramfs is built and nothing is booted. `guest` decides each machine's
/// guest from the plan (its run name is in `plan.name`); the machines started are kept in `machines`.
public final class FakeLauncher: MachineLauncher, Sendable {
    private let guest: @Sendable (QEMUPlan) -> FakeGuest
    private let started = Mutex<[FakeMachine]>([])

    public init(_ guest: @escaping @Sendable (QEMUPlan) -> FakeGuest) { self.guest = guest }
    public convenience init(_ guest: FakeGuest) { self.init { _ in guest } }

    public var machines: [FakeMachine] { started.withLock { $0 } }
    /// The plans the lab asked for, as `machines` ran them.
    public var plans: [QEMUPlan] { plansSeen.withLock { $0 } }
    private let plansSeen = Mutex<[QEMUPlan]>([])

    public func initramfs(_ initProgram: InitramfsStore.Init, lab: Lab) throws(LabError) -> String {
        lab.paths.cache + "/fake-initramfs.cpio"
    }

    public func launch(plan: QEMUPlan, run: RunDirectory, backend: Backend) throws(LabError) -> any Machine {
        plansSeen.withLock { $0.append(plan) }
        do {
            let m = try FakeMachine(guest: guest(plan), run: run, socket: plan.agentSocket)
            started.withLock { $0.append(m) }
            return m
        } catch {
            throw LabError(.io, "fake machine: \(error.description)")
        }
    }
}

/// A lab in a temporary folder: an `Images/fake-6.12.yaml` prebuilt image (a placeholder bzImage and a 6.12
/// .config with CMA, CMA_DEBUGFS and the virtio console), an empty cache and a runs folder. Removed on deinit.
public final class FakeLab: @unchecked Sendable {
    public let root: String
    public let lab: Lab
    public static let image = "fake-6.12"

    /// `config` lines go into the image's .config after the defaults (e.g. `# CONFIG_CMA_DEBUGFS is not set`).
    /// `directory`: a fixed folder (emptied first) instead of a fresh temporary one, for a test whose process may
    /// die before deinit and whose parent removes it (`FakeLab.remove`).
    public init(config extra: [String] = [], directory: String? = nil) throws(FakeSetupError) {
        if let directory {
            Self.remove(directory)
            root = directory
        } else {
            var template = Array((NSTemporaryDirectory() + "cmalab-fakelab-XXXXXX").utf8CString)
            guard let dir = template.withUnsafeMutableBufferPointer({ mkdtemp($0.baseAddress!) }) else { throw FakeSetupError("mkdtemp") }
            root = String(cString: dir)
        }
        let options = ["CONFIG_CMA=y", "CONFIG_CMA_DEBUGFS=y", "CONFIG_CMA_SYSFS=y", "CONFIG_VIRTIO_CONSOLE=y", "CONFIG_VIRTIO_PCI=y",
                       "CONFIG_CMA_AREAS=8"].filter { o in
            let name = o.split(separator: "=")[0]
            return !extra.contains { $0.hasPrefix(name + "=") || $0 == "# \(name) is not set" }
        }
        let config = (["#", "# Automatically generated file; DO NOT EDIT.", "# Linux/x86 6.12.117 Kernel Configuration", "#"] + options + extra)
            .joined(separator: "\n") + "\n"
        do {
            let fm = FileManager.default
            for d in ["Images", "cache", "runs", "kernel"] { try fm.createDirectory(atPath: root + "/" + d, withIntermediateDirectories: true) }
            try Data("not a bzImage\n".utf8).write(to: URL(fileURLWithPath: root + "/kernel/bzImage"))
            try Data(config.utf8).write(to: URL(fileURLWithPath: root + "/kernel/config"))
            try Data("name: \(Self.image)\nprebuilt:\n  kernel: ../kernel/bzImage\n  config: ../kernel/config\n".utf8)
                .write(to: URL(fileURLWithPath: root + "/Images/\(Self.image).yaml"))
        } catch {
            throw FakeSetupError("fake lab in \(root): \(error)")
        }
        lab = Lab(paths: LabPaths(home: root, cache: root + "/cache", runs: root + "/runs"), progress: Progress(quiet: true, isTTY: false))
    }

    deinit { Self.remove(root) }

    public static func remove(_ directory: String) { try? FileManager.default.removeItem(atPath: directory) }

    /// A profile runner on this lab with `launcher`, under TCG (no accelerator probe).
    public func runner(_ launcher: FakeLauncher) -> ProfileRunner {
        let r = ProfileRunner(lab: lab)
        r.launcher = launcher
        r.accel = .tcg
        return r
    }
}
