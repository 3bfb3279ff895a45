import Foundation
import Synchronization
import LabCore

/// The effects the oracle needs: reading a bzImage's header and vmlinux's extent, the image's kernel version and
/// .config, and the initrd size; then the prediction for a boot and its comparison with what the boot observed.
public enum OracleRuntime {
    private static let imageCache = Mutex<[String: KernelImageInfo]>([:])

    /// The boot header of a bzImage and, when its payload is gzip, LZ4, xz or zstd, vmlinux's `_end` (decompressing only the first
    /// 64 KiB, enough for the ELF program headers). Nil when the file is not a bzImage.
    ///
    /// `_end` costs a decompressor run (~30 ms); for a kernel in the cache it is kept in `<key>/image-end` (the key names
    /// the content, so it never goes stale; an empty file records "no `_end`").
    public static func kernelImage(_ kernel: BuiltKernel) -> KernelImageInfo? {
        if kernel.architecture == .arm64 { return arm64Image(kernel.kernel) }
        let bzImage = kernel.kernel
        if let cached = imageCache.withLock({ $0[bzImage] }) { return cached }
        guard var info = bootHeader(bzImage) else { return nil }
        let store = kernel.directory.isEmpty || !Files.exists(kernel.directory + "/meta") ? nil : kernel.directory + "/image-end"
        let stored = store.flatMap { try? Files.read($0) }.map { $0.trimmingCharacters(in: .whitespacesAndNewlines) }
        if let stored, stored.isEmpty || UInt64(stored) != nil {
            info.imageEnd = UInt64(stored)
        } else {
            info.imageEnd = vmlinuxEnd(bzImage)
            if let store { try? Files.write(info.imageEnd.map { "\($0)\n" } ?? "\n", to: store) }
        }
        imageCache.withLock { $0[bzImage] = info }
        return info
    }

    /// As above for any bzImage, without the cache.
    public static func kernelImage(_ bzImage: String) -> KernelImageInfo? {
        guard var info = bootHeader(bzImage) else { return nil }
        info.imageEnd = vmlinuxEnd(bzImage)
        return info
    }

    /// An arm64 Image's header, placed where QEMU's `virt` loads it.
    static func arm64Image(_ path: String) -> KernelImageInfo? {
        guard let handle = FileHandle(forReadingAtPath: path) else { return nil }
        defer { try? handle.close() }
        guard let head = try? handle.read(upToCount: 64) else { return nil }
        return KernelImageInfo.arm64Header([UInt8](head), ramBase: GuestMemoryMap.virtRAMBase)
    }

    /// The boot protocol header (the first 4 KiB are plenty).
    static func bootHeader(_ bzImage: String) -> KernelImageInfo? {
        guard let handle = FileHandle(forReadingAtPath: bzImage) else { return nil }
        defer { try? handle.close() }
        guard let head = try? handle.read(upToCount: 4096) else { return nil }
        return KernelImageInfo.header([UInt8](head))?.info
    }

    /// The decompressors of the payloads a bzImage can carry, by their first bytes (the kernel's LZ4 is lz4's
    /// legacy frame). Each reads stdin and writes stdout; the command is fixed text, the payload only a file.
    static let decompressors: [([UInt8], String)] = [
        ([0x1f, 0x8b], "gzip -dc"),
        ([0x02, 0x21, 0x4c, 0x18], "lz4 -dc"),
        ([0xfd, 0x37, 0x7a, 0x58, 0x5a, 0x00], "xz -dc"),
        ([0x28, 0xb5, 0x2f, 0xfd], "zstd -dc"),
    ]

    /// vmlinux's `_end` from a gzip, LZ4, xz or zstd payload (the first 64 KiB decompressed: the ELF program
    /// headers); nil for another compression, a missing decompressor or a file that is not a bzImage.
    static func vmlinuxEnd(_ bzImage: String) -> UInt64? {
        guard let bytes = try? Files.readBytes(bzImage), let header = KernelImageInfo.header(bytes) else { return nil }
        let (end, overflow) = header.payloadOffset.addingReportingOverflow(header.payloadLength)
        guard !overflow, end <= bytes.count, header.payloadLength > 6 else { return nil }
        let payload = bytes[header.payloadOffset..<end]
        guard let command = decompressors.first(where: { payload.starts(with: $0.0) })?.1 else { return nil }
        let dir = NSTemporaryDirectory() + "cmalab-oracle-\(getpid())-\(UInt32.random(in: 0...UInt32.max))"
        defer { try? FileManager.default.removeItem(atPath: dir) }
        guard (try? FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)) != nil,
              FileManager.default.createFile(atPath: dir + "/payload", contents: Data(payload)) else { return nil }
        _ = try? runCapturing(["sh", "-c", "\(command) < payload 2>/dev/null | head -c 65536 > head.bin; exit 0"], workingDirectory: dir)
        return (try? Files.readBytes(dir + "/head.bin")).flatMap(KernelImageInfo.elfImageEnd)
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
        var input = OracleInput(version: version, config: config, machine: plan.machine, commandLine: plan.effectiveCommandLine,
                                initrdSize: initrdSize, kernelImage: kernelImage(kernel))
        input.deviceTree = plan.deviceTree
        input.deviceTreeBlobSize = plan.deviceTreeBlob.flatMap { (try? FileManager.default.attributesOfItem(atPath: $0))?[.size] as? NSNumber }?.uint64Value
        return input
    }

    /// The prediction for a run and whether the run agreed with it; nil when the kernel version is unknown or the
    /// run did not get far enough to tell.
    public static func check(kernel: BuiltKernel, plan: QEMUPlan, observations: Observations) -> OracleCheck? {
        guard let input = input(kernel: kernel, plan: plan, release: observations.kernelRelease) else { return nil }
        return Oracle.compare(Oracle.predict(input), with: observations)
    }
}
