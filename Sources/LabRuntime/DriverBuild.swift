import Foundation
import LabCore

/// cmalab's DMA test driver (Driver/cmalab-dma), built as an external module against a kernel's own build tree
/// and cached beside that kernel as `cmalab_dma-<hash of the driver's sources>.ko`. A kernel without
/// CONFIG_MODULES has none; `image build` builds it right after the kernel, and a run that needs it builds it
/// when the driver's sources changed since (a few seconds: one file against an already-built tree).
extension KernelStore {
    /// The driver's sources: `<home>/Driver/cmalab-dma`.
    var driverSource: String { paths.home + "/Driver/cmalab-dma" }

    /// The hash of the driver's source files (names and contents), 12 hex digits.
    func driverHash() throws(LabError) -> String {
        let names = ((try? FileManager.default.contentsOfDirectory(atPath: driverSource)) ?? []).filter { !$0.hasPrefix(".") }.sorted()
        guard names.contains("Kbuild") else {
            throw LabError(.imageNotFound, "the DMA test driver's sources are missing (\(driverSource)/Kbuild)", hint: "run cmalab from its repository (CMALAB_HOME)")
        }
        var h = SHA256()
        for name in names where name.hasSuffix(".c") || name.hasSuffix(".h") || name == "Kbuild" {
            h.update("\(name)\n")
            h.update(try Files.readBytes(driverSource + "/" + name))
        }
        return String(h.finalize().hexString.prefix(12))
    }

    /// Why `kernel` cannot have the driver, or nil when it can.
    public func driverUnavailable(_ kernel: BuiltKernel) -> String? {
        guard !kernel.configPath.isEmpty, let config = try? kernel.config() else {
            return "the kernel has no .config beside it, so the driver cannot be built for it"
        }
        guard config.isEnabled("MODULES") else { return "image \(kernel.name) has no CONFIG_MODULES, so cmalab's DMA test driver cannot be loaded" }
        let hash = (try? driverHash()) ?? ""
        if !hash.isEmpty, Files.exists(kernel.directory + "/cmalab_dma-\(hash).ko") { return nil }
        guard buildTree(of: kernel) != nil else {
            return "cmalab builds its DMA test driver only against the build tree of an image it built from source, and \(kernel.name) has none here (a packaged or prebuilt kernel, or its tree was removed from \(paths.cache)/build)"
        }
        return nil
    }

    /// The driver module for `kernel`, built if it is not cached yet.
    public func testDriver(for kernel: BuiltKernel) throws(LabError) -> String {
        let hash = try driverHash()
        let module = kernel.directory + "/cmalab_dma-\(hash).ko"
        if Files.exists(module) { return module }
        if let why = driverUnavailable(kernel) { throw LabError(.preflight, why) }
        guard let tree = buildTree(of: kernel) else {
            throw LabError(.build, "the build tree of \(kernel.name) is gone from \(paths.cache)/build, so the DMA test driver cannot be built against it",
                           hint: "rebuild the image: `cmalab image build --force \(kernel.name)`")
        }
        let lock = try FileLock(buildLockPath(Path.basename(tree))) { progress.note("waiting for another cmalab process building in \(tree) ...") }
        defer { lock.unlock() }
        if Files.exists(module) { return module }
        let started = Date()
        progress.begin("building the DMA test driver for \(kernel.name)")
        let make = ["make", "-C", tree] + Self.makeVariables(ccache: KernelCompiler.wrapsWithCcache, architecture: kernel.architecture)
        if !Files.exists(tree + "/Module.symvers") {
            // The kernel build made bzImage only; modpost writes the symbol list external modules link against.
            progress.update("make modules in \(Path.basename(tree)) (Module.symvers)")
            do { _ = try runCapturing(make + ["-j\(jobs)", "modules"], environment: KernelCompiler.environment()) } catch {
                progress.end("the DMA test driver did not build for \(kernel.name)")
                throw LabError(.build, "`make modules` in \(tree) failed: \(error.message)")
            }
        }
        let work = tree + "/cmalab-dma-\(hash)"
        try? FileManager.default.removeItem(atPath: work)
        try Files.mkdirs(work)
        for name in (try? FileManager.default.contentsOfDirectory(atPath: driverSource)) ?? [] where !name.hasPrefix(".") {
            try Files.copy(driverSource + "/" + name, to: work + "/" + name)
        }
        do { _ = try runCapturing(make + ["M=\(work)", "modules"], environment: KernelCompiler.environment()) } catch {
            progress.end("the DMA test driver did not build for \(kernel.name)")
            throw LabError(.build, "building the DMA test driver against \(tree) failed: \(error.message)")
        }
        // Debug info is most of the file; the guest only needs the code.
        _ = try? runCapturing(["strip", "--strip-debug", work + "/cmalab_dma.ko"])
        try Files.write(try Files.readBytes(work + "/cmalab_dma.ko"), to: module)
        try? FileManager.default.removeItem(atPath: work)
        progress.end("built the DMA test driver for \(kernel.name) in \(Self.duration(Date().timeIntervalSince(started)))")
        return module
    }

    /// The build directory whose .config is `kernel`'s and that holds its vmlinux.
    func buildTree(of kernel: BuiltKernel) -> String? {
        guard let config = try? Files.readBytes(kernel.configPath) else { return nil }
        let root = paths.cache + "/build"
        let dirs = ((try? FileManager.default.contentsOfDirectory(atPath: root)) ?? []).map { root + "/" + $0 }
        return dirs.first { dir in
            Files.size(dir + "/.config") == UInt64(config.count) && Files.exists(dir + "/vmlinux")
                && (try? Files.readBytes(dir + "/.config")) == config
        }
    }
}
