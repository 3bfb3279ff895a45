import Foundation
import Synchronization
import LabCore

/// A kernel ready to boot: its image (bzImage on x86_64) and the .config it was built with.
public struct BuiltKernel: Sendable {
    public var name: String
    public var kernel: String
    public var configPath: String
    /// Hash of source version + final .config + compiler (for builds), or of the package (prebuilt).
    public var key: String
    public var directory: String
    public var buildLog: String?
    /// True when nothing had to be built or downloaded.
    public var cached: Bool
    public var commandLine: KernelCommandLine
    /// The architecture it runs on (its image's `arch:`; x86_64 for a `--kernel` path).
    public var architecture: Architecture = .default

    /// The parsed .config. A run asks for it three times (preflight, transport, oracle); it is parsed once
    /// per process for as long as the file stays the same (`Files.identity`).
    public func config() throws(LabError) -> KernelConfig {
        let stamp = Files.identity(configPath) ?? ""
        if let hit = Self.parsedConfigs.withLock({ $0[configPath] }), hit.stamp == stamp { return hit.config }
        let config = KernelConfig(parsing: try Files.read(configPath))
        Self.parsedConfigs.withLock { $0[configPath] = (stamp, config) }
        return config
    }

    private static let parsedConfigs = Mutex<[String: (stamp: String, config: KernelConfig)]>([:])
}

/// Builds, downloads and caches kernels.
///
/// Layout under `<cache>/kernels/`: `<key>/{bzImage,config,build.log,meta}` holds one kernel (the image file
/// is named by `Architecture.kernelImageName`, bzImage on x86_64);
/// `by-recipe/<recipe>` names the key a recipe (source version + fragments + compiler) produced, so a
/// cache hit needs no Kconfig run; `locks/` serialises builds of the same recipe across processes.
public final class KernelStore: @unchecked Sendable {
    let paths: LabPaths
    let progress: Progress
    /// Parallel make jobs (default: the number of cores).
    public var jobs: Int = ProcessInfo.processInfo.activeProcessorCount

    static let recipeVersion = "cmalab-kernel-recipe-1"

    public init(paths: LabPaths, progress: Progress) {
        self.paths = paths; self.progress = progress
    }

    var kernelsDir: String { paths.cache + "/kernels" }

    // MARK: - Public entry points

    /// The cached kernel for an image, without building anything; nil if it was never built.
    public func lookup(_ image: ImageDefinition) -> BuiltKernel? {
        if case .prebuilt = image.source { return try? ensure(image) }
        guard let recipe = try? recipeKey(image), let key = try? String(contentsOfFile: indexPath(recipe), encoding: .utf8) else { return nil }
        return try? loadCached(image, key: key.trimmingCharacters(in: .whitespacesAndNewlines))
    }

    /// Returns a bootable kernel for `image`, building or downloading it on a cache miss.
    public func ensure(_ image: ImageDefinition, force: Bool = false) throws(LabError) -> BuiltKernel {
        if case .prebuilt(let kernel, let config) = image.source {
            for f in [kernel, config] where !Files.exists(f) {
                throw LabError(.imageNotFound, "\(image.file): image `\(image.name)` names \(f), which does not exist",
                               hint: "fix the path in the image file")
            }
            return BuiltKernel(name: image.name, kernel: kernel, configPath: config, key: SHA256.hex(try Files.readBytes(config)),
                               directory: Path.directory(of: kernel), buildLog: nil, cached: true, commandLine: image.commandLine,
                               architecture: image.architecture)
        }
        try Files.mkdirs(kernelsDir + "/by-recipe")
        try Files.mkdirs(kernelsDir + "/locks")
        let recipe = try recipeKey(image)
        if !force, let hit = try cachedForRecipe(image, recipe: recipe) { return hit }

        let lock = try FileLock(buildLockPath(Self.buildName(recipe))) {
            progress.note("waiting for another cmalab process that is building \(image.name) ...")
        }
        defer { lock.unlock() }
        // Another process may have finished the same build while we waited.
        if !force, let hit = try cachedForRecipe(image, recipe: recipe) { return hit }

        switch image.source {
        case .debianSource, .tree:
            return try build(image, recipe: recipe)
        case .debianPackage(let pattern):
            return try fetchPackage(image, pattern: pattern, recipe: recipe)
        case .prebuilt:
            fatalError("handled above")
        }
    }

    // MARK: - Cache

    func indexPath(_ recipe: String) -> String { kernelsDir + "/by-recipe/" + recipe }

    private func cachedForRecipe(_ image: ImageDefinition, recipe: String) throws(LabError) -> BuiltKernel? {
        guard let key = try? String(contentsOfFile: indexPath(recipe), encoding: .utf8) else { return nil }
        do {
            return try loadCached(image, key: key.trimmingCharacters(in: .whitespacesAndNewlines))
        } catch {
            progress.note("cached kernel for \(image.name) is unusable (\(error.message)); rebuilding")
            return nil
        }
    }

    /// Loads a cached kernel and checks its image file against the hash recorded when it was stored.
    ///
    /// Hashing costs ~15 ms a run, so like git's index the check is skipped while the file's size, inode,
    /// mtime and ctime are those of its last good check (`<key>/verified`): anything that writes or replaces
    /// the file changes its ctime, and `touch` cannot set that back.
    private func loadCached(_ image: ImageDefinition, key: String) throws(LabError) -> BuiltKernel {
        let dir = kernelsDir + "/" + key
        let imageName = image.architecture.kernelImageName
        let meta = try Files.read(dir + "/meta")
        guard let recorded = meta.split(separator: "\n").first(where: { $0.hasPrefix("\(imageName)-sha256=") })?.split(separator: "=").last else {
            throw LabError(.io, "\(dir)/meta has no \(imageName) hash")
        }
        let verified = dir + "/verified"
        let stamp = Files.identity(dir + "/" + imageName).map { "\(recorded) \($0)\n" }
        if stamp == nil || (try? Files.read(verified)) != stamp {
            let actual = SHA256.hex(try Files.readBytes(dir + "/" + imageName))
            guard actual == recorded else { throw LabError(.io, "\(dir)/\(imageName) does not match its recorded hash") }
            if let stamp { try? Files.write(stamp, to: verified) }
        }
        let log = dir + "/build.log"
        return BuiltKernel(name: image.name, kernel: dir + "/" + imageName, configPath: dir + "/config", key: key, directory: dir,
                           buildLog: Files.exists(log) ? log : nil, cached: true, commandLine: image.commandLine,
                           architecture: image.architecture)
    }

    private func store(_ image: ImageDefinition, recipe: String, key: String, kernelImage: String, config: String,
                       buildLog: String?, extraMeta: [String]) throws(LabError) -> BuiltKernel {
        let dir = kernelsDir + "/" + key
        let imageName = image.architecture.kernelImageName
        try Files.mkdirs(dir)
        let kernelBytes = try Files.readBytes(kernelImage)
        try Files.write(kernelBytes, to: dir + "/" + imageName)
        try Files.copy(config, to: dir + "/config")
        if let buildLog { try Files.copy(buildLog, to: dir + "/build.log") }
        let meta = (["image=\(image.name)", "\(imageName)-sha256=\(SHA256.hex(kernelBytes))", "stored=\(Int(Date().timeIntervalSince1970))"] + extraMeta)
            .joined(separator: "\n") + "\n"
        try Files.write(meta, to: dir + "/meta")
        try Files.write(key + "\n", to: indexPath(recipe))
        return BuiltKernel(name: image.name, kernel: dir + "/" + imageName, configPath: dir + "/config", key: key, directory: dir,
                           buildLog: buildLog == nil ? nil : dir + "/build.log", cached: false, commandLine: image.commandLine,
                           architecture: image.architecture)
    }

    // MARK: - Keys

    /// What decides a build before Kconfig runs: source version, base config, fragment contents, compiler,
    /// and the architecture when it is not the default (so every x86_64 key stays what it was before images
    /// had an architecture).
    func recipeKey(_ image: ImageDefinition) throws(LabError) -> String {
        var h = SHA256()
        h.update(Self.recipeVersion + "\n")
        if image.architecture != .default { h.update("arch:\(image.architecture)\n") }
        switch image.source {
        case .debianSource(let pkg):
            h.update("debian-source:\(pkg)=\(try debianSourceIdentity(pkg))\n")
        case .tree(let path):
            h.update("tree:\(path)\n")
        case .debianPackage(let pattern):
            h.update("debian-package:\(pattern)\n")
            return h.finalize().hexString
        case .prebuilt(let k, let c):
            h.update("prebuilt:\(k):\(c)\n")
            return h.finalize().hexString
        }
        h.update("base:\(image.baseConfig)\n")
        for f in image.fragments {
            h.update("fragment:\(Path.basename(f))\n")
            h.update(try Files.readBytes(f))
        }
        h.update("compiler:\(try compilerIdentity(image.architecture))\n")
        return h.finalize().hexString
    }

    func debianSourceIdentity(_ pkg: String) throws(LabError) -> String {
        let tarball = "/usr/src/\(pkg).tar.xz"
        guard let size = Files.size(tarball) else {
            throw LabError(.imageNotFound, "the kernel source \(tarball) is missing",
                           hint: "install it with `apt-get install \(pkg)` (or run `make setup`)")
        }
        return "\(size)@\(Files.mtime(tarball) ?? 0)"
    }

    /// The first line of `gcc --version`, part of every recipe key. Running gcc on each cache lookup costs a
    /// fork and exec, so the answer is kept in `<cache>/kernels/compiler`, keyed by the resolved gcc binary's
    /// path and `Files.identity` (a new compiler is a new file).
    func compilerIdentity(_ architecture: Architecture = .default) throws(LabError) -> String {
        let compiler = architecture.compiler.binary
        let stampFile = kernelsDir + "/compiler" + (architecture == .default ? "" : "-\(architecture)")
        var stamp: String?
        if let gcc = ChildProcess.findExecutable(compiler), let real = realpath(gcc, nil) {
            let path = String(cString: real)
            free(real)
            stamp = Files.identity(path).map { "\(path) \($0)" }
        }
        if let stamp, let text = try? Files.read(stampFile) {
            let lines = text.split(separator: "\n", omittingEmptySubsequences: false)
            if lines.count >= 2, lines[0] == stamp, !lines[1].isEmpty { return String(lines[1]) }
        }
        let out = try runCapturing([compiler, "--version"])
        let identity = String(out.split(separator: "\n").first ?? "unknown")
        if let stamp { try? Files.write(stamp + "\n" + identity + "\n", to: stampFile) }
        return identity
    }

    // MARK: - Building

    private func build(_ image: ImageDefinition, recipe: String) throws(LabError) -> BuiltKernel {
        for tool in ["make", "gcc", image.architecture.compiler.binary, "flex", "bison", "bc", "perl"] where ChildProcess.findExecutable(tool) == nil {
            throw LabError(.missingTool, "building kernels needs \(tool), which is not installed", hint: ChildProcess.installHint(for: tool))
        }
        let started = Date()
        progress.begin("building \(image.name)")
        let source: String
        let sourceID: String
        switch image.source {
        case .debianSource(let pkg):
            source = try unpackDebianSource(pkg)
            sourceID = "debian-source:\(pkg)=\(try debianSourceIdentity(pkg))"
        case .tree(let path):
            guard Files.exists(path + "/Makefile") && Files.exists(path + "/Kconfig") else {
                throw LabError(.imageNotFound, "\(image.file): \(path) is not a kernel tree (no Makefile and Kconfig)")
            }
            source = path
            sourceID = "tree:\(path)"
        default: fatalError("not a build")
        }
        let out = buildDirectory(recipe)
        var warmFrom: String?
        if !Files.exists(out + "/.config") {
            warmFrom = startWarm(out: out, source: source, architecture: image.architecture)
        }
        try Files.mkdirs(out)
        let log = out + "/build.log"
        _ = FileManager.default.createFile(atPath: log, contents: nil)
        let make = ["make", "-C", source, "O=\(out)"] + Self.makeVariables(ccache: KernelCompiler.wrapsWithCcache, architecture: image.architecture)

        try runLogged(make + [image.baseConfig], log: log, step: "make \(image.baseConfig)")
        if !image.fragments.isEmpty {
            try runLogged(["\(source)/scripts/kconfig/merge_config.sh", "-m", "-O", out, "\(out)/.config"] + image.fragments,
                          log: log, step: "merge_config.sh", workingDirectory: out)
        }
        try runLogged(make + ["olddefconfig"], log: log, step: "make olddefconfig")

        // Kconfig drops options whose dependencies are off without a word: check every request survived.
        let finalConfigText = try Files.read(out + "/.config")
        let finalConfig = KernelConfig(parsing: finalConfigText)
        var requirements: [FragmentRequirement] = []
        for f in image.fragments { requirements += ConfigFragment.requirements(try Files.read(f), file: f) }
        let dropped = ConfigFragment.verify(requirements, against: finalConfig)
        if !dropped.isEmpty {
            progress.end("build of \(image.name) stopped: Kconfig dropped \(dropped.count) option(s)")
            throw LabError(.configDropped, "Kconfig dropped options that \(image.name)'s fragments ask for:\n"
                           + dropped.map { "  - \($0)" }.joined(separator: "\n"),
                           hint: "enable what those options depend on in a fragment, or remove them (see `make menuconfig` help for each symbol)")
        }
        let key = SHA256.hex(sourceID + "\n" + finalConfigText + "\n" + (try compilerIdentity(image.architecture)))
        // A different recipe can end at the same final config: reuse that kernel.
        if let existing = try? loadCached(image, key: key) {
            try Files.write(key + "\n", to: indexPath(recipe))
            progress.end("\(image.name): same final .config as an existing build (\(key.prefix(12)))")
            return existing
        }
        let arch = image.architecture
        try runLogged(make + ["-j\(jobs)", arch.kernelMakeTarget], log: log, step: "make \(arch.kernelMakeTarget)")
        let kernel = try store(image, recipe: recipe, key: key, kernelImage: out + "/" + arch.kernelImagePath, config: out + "/.config",
                               buildLog: log, extraMeta: ["source=\(sourceID)", "build-seconds=\(Int(Date().timeIntervalSince(started)))",
                                                          "ccache=\(KernelCompiler.metaValue)"] + (warmFrom.map { ["warm-from=\($0)"] } ?? []))
        progress.end("built \(image.name) in \(Self.duration(Date().timeIntervalSince(started))) -> \(kernel.kernel)")
        return kernel
    }

    /// The make variables of every make in a build tree (the kernel's, and the DMA test driver's in
    /// DriverBuild.swift): the same values each time, or Kbuild would rebuild what they reach.
    static func makeVariables(ccache: Bool, architecture: Architecture = .default) -> [String] {
        ["KBUILD_BUILD_USER=cmalab", "KBUILD_BUILD_HOST=cmalab", "KBUILD_BUILD_TIMESTAMP=cmalab"] + architecture.makeVariables
            + (ccache ? ["CC=ccache \(architecture.compiler.binary)"] : [])
    }

    /// Unpacks /usr/src/<pkg>.tar.xz once into the cache (atomically, under a lock).
    func unpackDebianSource(_ pkg: String) throws(LabError) -> String {
        let identity = try debianSourceIdentity(pkg)
        let srcRoot = paths.cache + "/src"
        let dest = srcRoot + "/\(pkg)-\(SHA256.hex(identity).prefix(12))"
        if Files.exists(dest + "/Makefile") { return dest }
        try Files.mkdirs(srcRoot)
        let lock = try FileLock(srcRoot + "/\(pkg).lock") { progress.note("waiting for another cmalab process unpacking \(pkg) ...") }
        defer { lock.unlock() }
        if Files.exists(dest + "/Makefile") { return dest }
        let tmp = srcRoot + "/.unpack-\(getpid())"
        try? FileManager.default.removeItem(atPath: tmp)
        try Files.mkdirs(tmp)
        progress.update("unpacking /usr/src/\(pkg).tar.xz")
        _ = try runCapturing(["tar", "-xf", "/usr/src/\(pkg).tar.xz", "-C", tmp])
        let inner = (try? FileManager.default.contentsOfDirectory(atPath: tmp)) ?? []
        guard inner.count == 1 else { throw LabError(.build, "/usr/src/\(pkg).tar.xz does not hold a single top-level directory") }
        guard rename(tmp + "/" + inner[0], dest) == 0 else { throw LabError.posix("cannot move the unpacked source to", dest) }
        try? FileManager.default.removeItem(atPath: tmp)
        return dest
    }

    /// Runs a build step with its output appended to `log`; the last output line feeds the live progress.
    private func runLogged(_ argv: [String], log: String, step: String, workingDirectory: String? = nil) throws(LabError) {
        guard let logHandle = FileHandle(forWritingAtPath: log) else { throw LabError.posix("cannot open", log) }
        defer { try? logHandle.close() }
        logHandle.seekToEndOfFile()
        logHandle.write(Data("$ \(argv.map(shellQuote).joined(separator: " "))\n".utf8))
        let p = try ChildProcess(argv, environment: KernelCompiler.environment(), workingDirectory: workingDirectory,
                                 stdout: .pipe, stderr: .pipe)
        var fds = [pollfd(fd: p.stdoutFD, events: Int16(POLLIN), revents: 0),
                   pollfd(fd: p.stderrFD, events: Int16(POLLIN), revents: 0),
                   pollfd(fd: Signals.fd, events: Int16(POLLIN), revents: 0)]
        var open = 2
        var buf = [UInt8](repeating: 0, count: 65536)
        var pending: [UInt8] = []
        var lastLine = ""
        while open > 0 {
            _ = Glibc.poll(&fds, nfds_t(fds.count), 500)
            if Signals.pending != 0 {
                p.terminate()
                try Signals.check()
            }
            for i in 0..<2 where fds[i].fd >= 0 && fds[i].revents != 0 {
                let n = read(fds[i].fd, &buf, buf.count)
                if n > 0 {
                    logHandle.write(Data(buf[0..<n]))
                    pending += buf[0..<n]
                    if let nl = pending.lastIndex(of: 0x0A) {
                        let lines = pending[..<nl].split(separator: 0x0A)
                        if let last = lines.last {
                            let text = String(decoding: last, as: UTF8.self).trimmingCharacters(in: .whitespaces)
                            if !text.isEmpty { lastLine = text.split(separator: " ", omittingEmptySubsequences: true).joined(separator: " ") }
                        }
                        pending.removeSubrange(...nl)
                    }
                    if pending.count > 65536 { pending.removeAll() }
                } else if n == 0 || (errno != EAGAIN && errno != EINTR) {
                    fds[i].fd = -1; open -= 1
                }
            }
            // The live line: the step, and make's latest line (e.g. `CC mm/cma.o`).
            progress.update(lastLine.isEmpty ? step : "\(step): \(lastLine)")
        }
        let t = p.wait()
        guard t.succeeded else {
            let tail = (try? String(contentsOfFile: log, encoding: .utf8))?.split(separator: "\n").suffix(25).joined(separator: "\n") ?? ""
            progress.end("\(step) failed (\(t))")
            throw LabError(.build, "\(step) failed with \(t); the last lines of \(log):\n\(tail)",
                           hint: "read the full log at \(log)")
        }
    }

    // MARK: - Prebuilt Debian packages

    private func fetchPackage(_ image: ImageDefinition, pattern: String, recipe: String) throws(LabError) -> BuiltKernel {
        let (name, version) = try resolvePackage(pattern)
        let key = SHA256.hex("debian-package:\(name)=\(version)")
        if let existing = try? loadCached(image, key: key) {
            try Files.write(key + "\n", to: indexPath(recipe))
            return existing
        }
        let started = Date()
        progress.begin("fetching \(name) \(version) for \(image.name)")
        let tmp = paths.cache + "/download-\(getpid())"
        try? FileManager.default.removeItem(atPath: tmp)
        try Files.mkdirs(tmp + "/root")
        defer { try? FileManager.default.removeItem(atPath: tmp) }
        progress.update("apt-get download \(name)")
        _ = try runCapturing(["apt-get", "download", "\(name)=\(version)"], workingDirectory: tmp)
        guard let deb = (try? FileManager.default.contentsOfDirectory(atPath: tmp))?.first(where: { $0.hasSuffix(".deb") }) else {
            throw LabError(.build, "apt-get download \(name) left no .deb in \(tmp)")
        }
        progress.update("dpkg-deb -x \(deb)")
        _ = try runCapturing(["dpkg-deb", "-x", tmp + "/" + deb, tmp + "/root"])
        let boot = (try? FileManager.default.contentsOfDirectory(atPath: tmp + "/root/boot")) ?? []
        guard let vmlinuz = boot.first(where: { $0.hasPrefix("vmlinuz-") }), let config = boot.first(where: { $0.hasPrefix("config-") }) else {
            throw LabError(.build, "\(deb) has no /boot/vmlinuz-* and /boot/config-*", hint: "use a linux-image-*-unsigned package")
        }
        let k = try store(image, recipe: recipe, key: key, kernelImage: tmp + "/root/boot/" + vmlinuz, config: tmp + "/root/boot/" + config,
                          buildLog: nil, extraMeta: ["package=\(name)=\(version)"])
        progress.end("unpacked \(name) \(version) in \(Self.duration(Date().timeIntervalSince(started))) -> \(k.kernel)")
        return k
    }

    /// The newest available package whose name matches the `*` pattern.
    func resolvePackage(_ pattern: String) throws(LabError) -> (String, String) {
        let prefix = String(pattern.prefix { $0 != "*" })
        let names = try runCapturing(["apt-cache", "pkgnames", prefix]).split(separator: "\n").map(String.init)
            .filter { Self.glob(pattern, matches: $0) }
        var best: (String, String)?
        for name in names {
            let show = (try? runCapturing(["apt-cache", "show", "--no-all-versions", name])) ?? ""
            guard let v = show.split(separator: "\n").first(where: { $0.hasPrefix("Version: ") })?.dropFirst(9) else { continue }
            let version = String(v)
            if let b = best {
                let newer = (try? runCapturing(["dpkg", "--compare-versions", version, "gt", b.1])) != nil
                if newer { best = (name, version) }
            } else {
                best = (name, version)
            }
        }
        guard let best else {
            throw LabError(.imageNotFound, "no Debian package matches `\(pattern)`",
                           hint: "run `apt-get update` (the package lists may be empty), or fix the pattern")
        }
        return best
    }

    static func glob(_ pattern: String, matches name: String) -> Bool {
        let parts = pattern.split(separator: "*", omittingEmptySubsequences: false).map(String.init)
        guard parts.count > 1 else { return pattern == name }
        var rest = Substring(name)
        guard rest.hasPrefix(parts[0]) else { return false }
        rest = rest.dropFirst(parts[0].count)
        for (i, part) in parts.dropFirst().enumerated() {
            let isLast = i == parts.count - 2
            if isLast { return part.isEmpty || rest.hasSuffix(part) }
            guard let r = rest.range(of: part) else { return false }
            rest = rest[r.upperBound...]
        }
        return true
    }

    static func duration(_ t: TimeInterval) -> String {
        t < 60 ? String(format: "%.1f s", t) : String(format: "%d min %02d s", Int(t) / 60, Int(t) % 60)
    }
}
