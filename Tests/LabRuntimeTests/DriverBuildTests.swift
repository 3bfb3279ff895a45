import Foundation
import Testing
import LabCore
@testable import LabRuntime

/// When cmalab's DMA test driver can be had for a kernel (DriverBuild.swift), with real files in a throwaway
/// cache and the repository's own driver sources. Building it needs a real kernel tree: the integration tests
/// and `image build` do that.
@Suite struct DriverBuildTests {
    let home = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent().path

    func kernel(_ cache: String, config: String) throws -> BuiltKernel {
        let dir = cache + "/kernels/k"
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        try config.write(toFile: dir + "/config", atomically: true, encoding: .utf8)
        return BuiltKernel(name: "img", kernel: dir + "/bzImage", configPath: dir + "/config", key: "k", directory: dir, buildLog: nil,
                           cached: true, commandLine: KernelCommandLine())
    }

    @Test func reasonsWhyAKernelCannotHaveTheDriver() throws {
        let cache = NSTemporaryDirectory() + "cmalab-driver-\(UUID().uuidString)"
        defer { try? FileManager.default.removeItem(atPath: cache) }
        let store = KernelStore(paths: LabPaths(home: home, cache: cache, runs: cache + "/runs"), progress: Progress(quiet: true))
        let noModules = try kernel(cache, config: "CONFIG_CMA=y\n# CONFIG_MODULES is not set\n")
        #expect(store.driverUnavailable(noModules) == "image img has no CONFIG_MODULES, so cmalab's DMA test driver cannot be loaded")
        // A packaged kernel has modules but no build tree here (nocma-6.12 is Debian's).
        let packaged = try kernel(cache, config: "CONFIG_MODULES=y\n")
        #expect(store.driverUnavailable(packaged)?.hasPrefix("cmalab builds its DMA test driver only against the build tree of an image it built from source") == true)
        #expect(throws: LabError.self) { try store.testDriver(for: packaged) }
        // A build tree with the same .config and a vmlinux is one to build against.
        let tree = cache + "/build/abc"
        try FileManager.default.createDirectory(atPath: tree, withIntermediateDirectories: true)
        try "CONFIG_MODULES=y\n".write(toFile: tree + "/.config", atomically: true, encoding: .utf8)
        try "".write(toFile: tree + "/vmlinux", atomically: true, encoding: .utf8)
        #expect(store.driverUnavailable(packaged) == nil)
        #expect(store.buildTree(of: packaged) == tree)
        // A module already cached for the current sources is enough, tree or not.
        try FileManager.default.removeItem(atPath: tree)
        try "".write(toFile: packaged.directory + "/cmalab_dma-\(try store.driverHash()).ko", atomically: true, encoding: .utf8)
        #expect(store.driverUnavailable(packaged) == nil)
        #expect(try store.testDriver(for: packaged) == packaged.directory + "/cmalab_dma-\(try store.driverHash()).ko")
    }

    @Test func theHashFollowsTheSources() throws {
        let store = KernelStore(paths: LabPaths(home: home, cache: "/nonexistent", runs: "/nonexistent"), progress: Progress(quiet: true))
        let hash = try store.driverHash()
        #expect(hash.count == 12 && hash.allSatisfy(\.isHexDigit))
        let elsewhere = KernelStore(paths: LabPaths(home: "/nonexistent", cache: "/nonexistent", runs: "/nonexistent"), progress: Progress(quiet: true))
        #expect(throws: LabError.self) { try elsewhere.driverHash() }
    }
}
