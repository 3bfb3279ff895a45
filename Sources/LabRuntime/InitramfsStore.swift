import Foundation
import LabCore

/// Writes the guest's initramfs (an uncompressed newc cpio: under TCG, gunzip in the guest costs more
/// than loading a few extra MiB) and caches it by its inputs.
///
/// Layout: `/init` is the static cmalab agent (a link to `/sbin/cmalab-agent`, or a small shell wrapper for
/// an agent built with the full Swift runtime, see `agentInit`), or a shell script for `--init`;
/// `/bin/busybox` is Debian's busybox-static with a link for every applet, plus the mount points the agent uses.
public final class InitramfsStore: @unchecked Sendable {
    let paths: LabPaths
    static let layoutVersion = "cmalab-initramfs-4"
    public static let busyboxPath = "/bin/busybox"

    public init(paths: LabPaths) { self.paths = paths }

    /// `/init` for an agent built with the full Swift runtime (`Scripts/build-agent --hosted`). Such a
    /// static binary finds its runtime through /proc/self/exe before main() runs, and at PID 1 /proc is
    /// not mounted yet: mount it, then exec the agent (it stays PID 1). SWIFT_DETERMINISTIC_HASHING: that
    /// runtime seeds its hashing with getrandom(2), which blocks until the kernel's CRNG is ready; a TCG
    /// guest without an entropy source gets there only ~1.5 s after init starts ("random: crng init
    /// done"). The agent hashes nothing an attacker chooses, so a fixed seed is fine. The Embedded Swift
    /// agent (`make agent`) needs neither and is /init itself, which saves a busybox start under TCG.
    static let agentInit = """
        #!/bin/busybox sh
        /bin/busybox mount -t proc proc /proc
        export SWIFT_DETERMINISTIC_HASHING=1
        exec /sbin/cmalab-agent
        """

    public enum Init: Sendable {
        /// The cmalab agent binary at this path.
        case agent(String)
        /// A shell script run by busybox sh, on a guest of this architecture (its busybox).
        case script(String, Architecture = .x86_64)
    }

    /// Returns the path of a cpio archive for `init`, building it on a cache miss. The busybox is the guest's: the
    /// host's /bin/busybox for an x86_64 agent, Debian's busybox-static for the agent's architecture otherwise
    /// (the agent binary's ELF header says which; a script init says its own).
    public func ensure(_ initProgram: Init) throws(LabError) -> String {
        var architecture = Architecture.x86_64
        if case .script(_, let arch) = initProgram { architecture = arch }
        if case .agent(let path) = initProgram, let head = FileHandle(forReadingAtPath: path).flatMap({ h in defer { try? h.close() }; return try? h.read(upToCount: 64) }).map({ [UInt8]($0) }), let arch = ELF64(head)?.architecture {
            architecture = arch
        }
        let busybox = try busyboxPath(for: architecture)
        guard Files.exists(busybox) else {
            throw LabError(.missingTool, "\(busybox) is missing", hint: "install it with `apt-get install busybox-static` (or run `make setup`)")
        }
        var h = SHA256()
        h.update(Self.layoutVersion + "\nbusybox:" + (try contentHash(busybox)) + "\n")
        switch initProgram {
        case .agent(let path):
            guard Files.exists(path) else {
                throw LabError(.missingTool, "the guest agent \(path) is not built", hint: "run `make agent` (or set CMALAB_AGENT to a static cmalab-agent)")
            }
            h.update("agent:" + (try contentHash(path)))
        case .script(let text, let arch):
            h.update("script:\(arch):" + text)
        }
        let dir = paths.cache + "/initramfs"
        let out = dir + "/\(h.finalize().hexString.prefix(32)).cpio"
        if Files.exists(out) { return out }
        try Files.mkdirs(dir)

        var cpio = CpioWriter()
        for d in ["bin", "sbin", "usr", "usr/bin", "usr/sbin", "dev", "proc", "sys", "tmp", "run", "etc", "root", "mnt"] {
            cpio.directory(d)
        }
        cpio.file("bin/busybox", contents: try Files.readBytes(busybox), mode: 0o755)
        // The applet list comes from the host's busybox: Debian builds busybox-static with one configuration for
        // every architecture, and a foreign one cannot run here.
        let applets = try runCapturing([Self.busyboxPath, "--list-full"]).split(separator: "\n").map(String.init)
        for applet in applets where !applet.isEmpty && applet != "bin/busybox" && !cpio.contains(applet) {
            cpio.directoryTree(Path.directory(of: applet))
            cpio.symlink(applet, target: "/bin/busybox")
        }
        switch initProgram {
        case .agent(let path):
            let agent = try Files.readBytes(path)
            cpio.file("sbin/cmalab-agent", contents: agent, mode: 0o755)
            if Self.needsSwiftRuntime(agent) {
                cpio.file("init", contents: Array(Self.agentInit.utf8), mode: 0o755)
            } else {
                cpio.symlink("init", target: "/sbin/cmalab-agent")
            }
        case .script(let text, _): cpio.file("init", contents: Array(("#!/bin/sh\n" + text + "\n").utf8), mode: 0o755)
        }
        try Files.write(cpio.finish(), to: out)
        return out
    }

    /// The static busybox for a guest of `architecture`: the host's, or Debian's package for that architecture,
    /// fetched once into `<cache>/busybox/<arch>/` (`apt-get download`, which needs the architecture in dpkg:
    /// Scripts/setup-host adds arm64).
    func busyboxPath(for architecture: Architecture) throws(LabError) -> String {
        guard let package = architecture.foreignBusyboxPackage else { return Self.busyboxPath }
        let dir = paths.cache + "/busybox/\(architecture)"
        let binary = dir + "/bin/busybox"
        if Files.exists(binary) { return binary }
        try Files.mkdirs(paths.cache + "/busybox")
        let lock = try FileLock(paths.cache + "/busybox/\(architecture).lock")
        defer { lock.unlock() }
        if Files.exists(binary) { return binary }
        let tmp = paths.cache + "/busybox/.fetch-\(getpid())"
        try? FileManager.default.removeItem(atPath: tmp)
        try Files.mkdirs(tmp + "/root")
        defer { try? FileManager.default.removeItem(atPath: tmp) }
        do { _ = try runCapturing(["apt-get", "download", package], workingDirectory: tmp) } catch {
            throw LabError(.missingTool, "an \(architecture) guest needs Debian's \(package), and `apt-get download \(package)` failed: \(error.message)",
                           hint: "run `make setup` (Scripts/setup-host adds the architecture: `dpkg --add-architecture arm64 && apt-get update`)")
        }
        guard let deb = (try? FileManager.default.contentsOfDirectory(atPath: tmp))?.first(where: { $0.hasSuffix(".deb") }) else {
            throw LabError(.build, "apt-get download \(package) left no .deb in \(tmp)")
        }
        _ = try runCapturing(["dpkg-deb", "-x", tmp + "/" + deb, tmp + "/root"])
        guard Files.exists(tmp + "/root/bin/busybox") else { throw LabError(.build, "\(deb) has no /bin/busybox") }
        try? FileManager.default.removeItem(atPath: dir)
        try Files.mkdirs(dir + "/bin")
        try Files.write(try Files.readBytes(tmp + "/root/bin/busybox"), to: binary, mode: 0o755)
        return binary
    }

    /// Whether an agent binary carries the full Swift runtime (its metadata sections, `swift5_*`), which
    /// must find itself through /proc before main(); an Embedded Swift build has none of them. A binary
    /// whose sections cannot be read gets the wrapper, which works for both.
    static func needsSwiftRuntime(_ binary: [UInt8]) -> Bool {
        guard let names = ELF64(binary)?.sectionNames else { return true }
        return names.contains { $0.hasPrefix("swift5_") }
    }

    /// The SHA-256 of a file's contents, remembered per path and `Files.identity` (size, inode, mtime,
    /// ctime) so an unchanged agent or busybox is not read and hashed again on every boot.
    func contentHash(_ path: String) throws(LabError) -> String {
        let dir = paths.cache + "/initramfs/hashes"
        let memo = dir + "/" + SHA256.hex(path + ":" + (Files.identity(path) ?? ""))
        if let known = try? String(contentsOfFile: memo, encoding: .utf8), known.count == 64 { return known }
        let digest = SHA256.hex(try Files.readBytes(path))
        try Files.mkdirs(dir)
        try Files.write(digest, to: memo)
        return digest
    }
}
