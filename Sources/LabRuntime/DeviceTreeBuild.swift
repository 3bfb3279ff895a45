import Foundation
import LabCore

/// Builds the device tree blob an arm64 guest boots with when its profile has `device-tree:` nodes: QEMU writes
/// the tree it would build for exactly this machine (`-machine virt,dumpdtb=`, same memory, CPUs and NUMA
/// nodes), dtc turns it into source, the profile's `reserved-memory` nodes are appended (DeviceTree.source), and
/// dtc compiles the result. QEMU still fills in `/chosen` (bootargs, initrd) when it loads a `-dtb`.
///
/// Artifacts in the run directory: `machine.dtb` (QEMU's tree), `device-tree.dts` (what the guest gets, as
/// source) and `device-tree.dtb` (what `-dtb` and reproduce.sh boot with); `dtc.log` has dtc's warnings.
public struct DeviceTreeBuild: Sendable {
    public var progress: Progress
    public init(progress: Progress) { self.progress = progress }

    /// Compiles `tree` for `plan`'s machine into `run` and returns the blob's path.
    public func compile(_ tree: DeviceTree, plan: QEMUPlan, run: RunDirectory) throws(LabError) -> String {
        guard ChildProcess.findExecutable("dtc") != nil else {
            throw LabError(.missingTool, "a profile with `device-tree:` needs dtc, which is not installed", hint: ChildProcess.installHint(for: "dtc"))
        }
        let machineBlob = run.file("machine.dtb"), source = run.file("device-tree.dts"), blob = run.file("device-tree.dtb")
        do { _ = try runCapturing(plan.dumpDeviceTreeArguments(to: machineBlob)) } catch {
            throw LabError(.qemu, "QEMU did not write the machine's device tree: \(error.message)")
        }
        let machineSource: String
        do { machineSource = try runCapturing(["dtc", "-q", "-I", "dtb", "-O", "dts", machineBlob]) } catch {
            throw LabError(.io, "dtc could not read QEMU's device tree \(machineBlob): \(error.message)")
        }
        try Files.write(machineSource + tree.source, to: source)
        do { _ = try runCapturing(["dtc", "-q", "-I", "dts", "-O", "dtb", "-o", blob, source]) } catch {
            throw LabError(.input, "dtc refused the device tree made from the profile's `device-tree:` nodes: \(error.message)",
                           hint: "the source is \(source); check the node names and properties")
        }
        return blob
    }
}
