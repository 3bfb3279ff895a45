import Foundation
import Synchronization
import LabCore

/// The effects the oracle needs: reading a bzImage's header and vmlinux's extent, the image's kernel version and
/// .config, and the initrd size; then the prediction for a boot and its comparison with what the boot observed.
public enum OracleRuntime {
    private static let imageCache = Mutex<[String: KernelImageInfo]>([:])

    /// The boot header of a bzImage and, when its payload is gzip, vmlinux's `_end` (decompressing only the first
    /// 64 KiB, enough for the ELF program headers). Nil when the file is not a bzImage.
    public static func kernelImage(_ bzImage: String) -> KernelImageInfo? {
        if let cached = imageCache.withLock({ $0[bzImage] }) { return cached }
        guard let bytes = try? Files.readBytes(bzImage), let header = KernelImageInfo.header(bytes) else { return nil }
        var info = header.info
        let end = header.payloadOffset + header.payloadLength
        if end <= bytes.count, header.payloadLength > 2, bytes[header.payloadOffset] == 0x1f, bytes[header.payloadOffset + 1] == 0x8b {
            let dir = NSTemporaryDirectory() + "cmalab-oracle-\(getpid())-\(UInt32.random(in: 0...UInt32.max))"
            defer { try? FileManager.default.removeItem(atPath: dir) }
            if (try? FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)) != nil,
               FileManager.default.createFile(atPath: dir + "/payload.gz", contents: Data(bytes[header.payloadOffset..<end])) {
                _ = try? runCapturing(["sh", "-c", "gzip -dc < payload.gz 2>/dev/null | head -c 65536 > head.bin; exit 0"], workingDirectory: dir)
                if let elf = try? Files.readBytes(dir + "/head.bin") { info.imageEnd = KernelImageInfo.elfImageEnd(elf) }
            }
        }
        imageCache.withLock { $0[bzImage] = info }
        return info
    }

    /// The kernel version of a built image: its .config header, else the release a boot printed.
    public static func version(_ kernel: BuiltKernel, release: String? = nil) -> KernelVersion? {
        if !kernel.configPath.isEmpty, let text = try? Files.read(kernel.configPath), let v = KernelVersion(configText: text) { return v }
        return release.flatMap { KernelVersion(release: $0) }
    }

    /// The oracle's input for booting `kernel` with `plan` (the exact command line and initrd of the run).
    public static func input(kernel: BuiltKernel, plan: QEMUPlan, release: String? = nil) -> OracleInput? {
        guard let version = version(kernel, release: release) else { return nil }
        let config = kernel.configPath.isEmpty ? nil : try? kernel.config()
        let initrdSize = plan.initrd.flatMap { (try? FileManager.default.attributesOfItem(atPath: $0))?[.size] as? NSNumber }?.uint64Value
        return OracleInput(version: version, config: config, machine: plan.machine, commandLine: plan.effectiveCommandLine,
                           initrdSize: initrdSize, kernelImage: kernelImage(kernel.kernel))
    }

    /// The prediction for a run and whether the run agreed with it; nil when the kernel version is unknown or the
    /// run did not get far enough to tell.
    public static func check(kernel: BuiltKernel, plan: QEMUPlan, observations: Observations) -> OracleCheck? {
        guard let input = input(kernel: kernel, plan: plan, release: observations.kernelRelease) else { return nil }
        return Oracle.compare(Oracle.predict(input), with: observations)
    }
}
