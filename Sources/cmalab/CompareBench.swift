import Foundation
import LabCore
import LabRuntime

/// `cmalab bench --compare`: the seed scenario three ways on one kernel, accelerator and memory size.
///
/// (a) the physical limit: bare QEMU with a busybox shell as init doing the seed scenario (meminfo, alloc
///     and free 102400 pages through debugfs, meminfo, power off), timed from QEMU start to QEMU exit;
/// (b) `cmalab run` of the seed profile (the whole process: start-up, boot, agent, steps, dmesg, artifacts);
/// (c) virtme-ng (`vng --run BZIMAGE --exec 'cat /proc/meminfo'`, TCG, 9p root), when `vng` is installed.
struct CompareBench {
    let lab: Lab
    let kernel: BuiltKernel
    let imageName: String
    let memory: ByteSize
    let append: String
    let runs: Int
    /// Pause before each timed boot. On this project's 2-core host, QEMU boots started right after another
    /// one ended alternated fast and slow by ~0.1 s (the previous guest's 4 GiB being handed back), which
    /// with two methods per round always hit the same one; a 1 s pause removed the pattern.
    let settle: Double
    let profilePath: String

    static let seedScript = """
        mount -t proc proc /proc; mount -t sysfs sys /sys; mount -t debugfs none /sys/kernel/debug
        grep Cma /proc/meminfo
        echo 102400 > /sys/kernel/debug/cma/reserved/alloc
        grep Cma /proc/meminfo
        echo 102400 > /sys/kernel/debug/cma/reserved/free
        grep Cma /proc/meminfo
        poweroff -f
        """

    /// (a): QEMU start to exit, and the kernel command line it booted with (the same the lab gives (b)).
    func bare(_ i: Int) throws(LabError) -> (seconds: Double, commandLine: String) {
        var request = BootRequest(machine: MachineSpec(memory: memory), commandLine: KernelCommandLine(parsing: append), runName: "bench-bare-\(i)")
        request.accel = .tcg
        request.initScript = Self.seedScript
        let session = try lab.start(kernel, request)
        let commandLine = session.plan.effectiveCommandLine.description
        let exit = try session.machine.waitForExit(timeout: 120)
        let seconds = session.machine.uptime
        session.run.closeSockets()
        let console = (try? String(contentsOfFile: session.run.file("console.log"), encoding: .utf8)) ?? ""
        guard exit == .poweredOff, console.contains("CmaTotal:") else {
            throw LabError(.qemu, "the bare boot \(i) ended with \(exit); console: \(session.run.file("console.log"))")
        }
        return (seconds, commandLine)
    }

    struct CmalabRun { var seconds: Double; var agentReady: Double?; var peakRSSKiB: Int? }

    /// (b): the whole `cmalab run` process.
    func cmalab(_ i: Int) throws(LabError) -> CmalabRun {
        let json = NSTemporaryDirectory() + "cmalab-bench-\(getpid())-\(i).json"
        defer { try? FileManager.default.removeItem(atPath: json) }
        let self_ = CommandLine.arguments[0].contains("/") ? CommandLine.arguments[0] : (ChildProcess.findExecutable("cmalab") ?? "cmalab")
        let started = Date()
        let (status, stderr) = try Self.run([self_, "run", profilePath, "--image", imageName, "--accel", "tcg", "--json", json])
        let seconds = Date().timeIntervalSince(started)
        guard status == 0 else { throw LabError(.qemu, "cmalab run \(i) failed (status \(status)):\n\(stderr.suffix(2000))") }
        var r = CmalabRun(seconds: seconds)
        if let bytes = FileManager.default.contents(atPath: json), let (v, _) = try? Report.decodeResults([UInt8](bytes)) {
            r.agentReady = v.first?.observations?.agentReadySeconds
        }
        // `cmalab: peak RSS 23456 KiB (this process; QEMU not included)`
        if let line = stderr.split(separator: "\n").first(where: { $0.hasPrefix("cmalab: peak RSS ") }) {
            let words = line.split(separator: " ")
            if let i = words.firstIndex(of: "KiB"), i > 0 { r.peakRSSKiB = Int(words[i - 1]) }
        }
        return r
    }

    /// (c): virtme-ng, or nil when it is not installed.
    func vng(_ i: Int) throws(LabError) -> Double? {
        guard let vng = ChildProcess.findExecutable("vng") else { return nil }
        let started = Date()
        let (status, output) = try Self.run([vng, "--run", kernel.kernel, "--disable-kvm", "--disable-microvm", "--force-9p",
                                             "--memory", "\(memory.mebibytes)M", "--cpus", "1",
                                             // Without root= this kernel mounts the 9p root with an empty
                                             // device name and panics ("Requested init ... failed (error -2)").
                                             // pci=noacpi: what (a) and (b) get on `pc`, so (c) is not slower for want of it.
                                             "--append", "root=/dev/root pci=noacpi " + append,
                                             "--exec", "cat /proc/meminfo"])
        let seconds = Date().timeIntervalSince(started)
        guard status == 0, output.contains("CmaTotal:") else {
            throw LabError(.qemu, "vng run \(i) failed (status \(status)):\n\(output.suffix(2000))")
        }
        return seconds
    }

    /// Runs a command to completion; its status and its stdout+stderr.
    static func run(_ argv: [String]) throws(LabError) -> (Int32, String) {
        let out = NSTemporaryDirectory() + "cmalab-bench-\(getpid())-\(UUID().uuidString).log"
        defer { try? FileManager.default.removeItem(atPath: out) }
        let p = try ChildProcess(argv, stdin: .null, stdout: .file(out), stderr: .file(out))
        let status: Int32
        switch p.wait() { case .exited(let c): status = c; case .signaled(let s): status = 128 + s }
        return (status, (try? String(contentsOfFile: out, encoding: .utf8)) ?? "")
    }

    func report() throws(LabError) {
        var a: [Double] = [], b: [Double] = [], c: [Double] = [], ready: [Double] = [], rss: [Int] = []
        var vngMissing = false
        var commandLine = ""
        for i in 1...runs {
            Thread.sleep(forTimeInterval: settle)
            let bareRun = try bare(i)
            a.append(bareRun.seconds)
            commandLine = bareRun.commandLine
            Thread.sleep(forTimeInterval: settle)
            let r = try cmalab(i)
            b.append(r.seconds)
            if let x = r.agentReady { ready.append(x) }
            if let x = r.peakRSSKiB { rss.append(x) }
            Thread.sleep(forTimeInterval: settle)
            if let t = try vng(i) { c.append(t) } else { vngMissing = true }
            printErr(String(format: "run %d: bare %.2f s, cmalab %.2f s%@", i, a.last!, b.last!, c.last.map { String(format: ", vng %.2f s", $0) } ?? ""))
        }
        print("kernel           \(imageName) (\(kernel.kernel)), \(Self.compression(kernel))")
        print("firmware         (a) and (b): QEMU's default, SeaBIOS (no -bios); the same QEMU argv but for (b)'s agent channel")
        print(String(format: "guest            pc, %@, 1 CPU, TCG; %d runs each, medians; %.1f s pause before each boot", memory.description, runs, settle))
        print("command line     (a) and (b): `\(commandLine)`; (c): `root=/dev/root pci=noacpi \(append)` and vng's own")
        print(BenchCommand.line("(a) bare QEMU", a))
        print(BenchCommand.line("(b) cmalab run", b))
        if vngMissing { print("(c) vng          not installed (pip install virtme-ng==1.42)") } else { print(BenchCommand.line("(c) vng", c)) }
        print(String(format: "(b)/(a)          %.2f (goal <= 1.10)", (median(b) ?? .nan) / (median(a) ?? .nan)))
        if !c.isEmpty { print(String(format: "(c)/(b)          %.2f (goal >= 2)", (median(c) ?? .nan) / (median(b) ?? .nan))) }
        if !ready.isEmpty { print(BenchCommand.line("agent ready", ready)) }
        if !rss.isEmpty { print("cmalab peak RSS  \(rss.max()! / 1024) MiB (the cmalab process alone, without QEMU)") }
        printBuildFigures()
    }

    /// Cold build, cache hit, and a warm rebuild of another config, from the kernel cache's records.
    /// The bzImage's compression, from the image's .config (what the guest's decompressor spends time on).
    static func compression(_ kernel: BuiltKernel) -> String {
        guard let config = try? kernel.config() else { return "compression unknown (no .config)" }
        let kinds = ["GZIP", "LZ4", "LZO", "XZ", "LZMA", "BZIP2", "ZSTD"]
        return kinds.first { config.isEnabled("KERNEL_\($0)") }.map { "\($0.lowercased())-compressed" } ?? "compression unknown"
    }

    func printBuildFigures() {
        let t0 = Date()
        _ = try? lab.kernel(image: imageName)
        let hit = Date().timeIntervalSince(t0)
        print(String(format: "cache hit        %.3f s (image %@)", hit, imageName))
        let dir = lab.paths.cache + "/kernels"
        var rows: [(String, Int, Bool)] = []
        for key in (try? FileManager.default.contentsOfDirectory(atPath: dir)) ?? [] {
            guard let meta = try? String(contentsOfFile: "\(dir)/\(key)/meta", encoding: .utf8) else { continue }
            var fields: [String: String] = [:]
            for line in meta.split(separator: "\n") {
                let kv = line.split(separator: "=", maxSplits: 1)
                if kv.count == 2 { fields[String(kv[0])] = String(kv[1]) }
            }
            guard let name = fields["image"], let s = fields["build-seconds"].flatMap(Int.init) else { continue }
            rows.append((name, s, fields["warm-from"] != nil))
        }
        for (name, s, warm) in rows.sorted(by: { $0.0 < $1.0 }) {
            print("build            \(name): \(s) s\(warm ? " (warm: started from another config's objects)" : "")")
        }
    }
}
