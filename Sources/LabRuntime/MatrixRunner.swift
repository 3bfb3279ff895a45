import Foundation
import LabCore
import Synchronization

/// Loads a matrix file and its profiles, and expands the cells.
public enum MatrixLoader {
    public static func load(_ file: String) throws(LabError) -> (MatrixSpec, [MatrixCell]) {
        let spec = try YAMLDefinitions.parse(file, with: MatrixSpec.parse)
        let dir = Path.directory(of: file)
        let profiles = try ProfileLoader.load(spec.profilePaths.map { Path.resolve($0, relativeTo: dir) }, defaultDirectory: dir)
        let catalog = try? ImageCatalog(directory: LabPaths.discover().imagesDirectory)
        do { return (spec, try spec.cells(profiles: profiles, architecture: { try? catalog?.resolve($0).architecture })) } catch {
            throw LabError(.input, error.description)
        }
    }
}

/// What the matrix runner reports while it works.
public enum MatrixEvent: Sendable {
    case imageBuilt(name: String, seconds: Double, cached: Bool)
    case imageFailed(name: String, message: String)
    case cellStarted(MatrixCell)
    case cellFinished(MatrixCell, Verdict)
}

/// Runs matrix cells: first every image the cells need (each once, up to `buildJobs` at a time, with
/// ccache when installed), then the cells, up to `jobs` at a time. Each cell is one profile run with its
/// own run directory, sockets and QEMU. Results come back in cell order.
public final class MatrixRunner: @unchecked Sendable {
    public let lab: Lab
    public var jobs: Int
    public var buildJobs = 2
    public var accel: AccelChoice = .auto
    /// Where the cells run: QEMU here (default), or libvirt daemons; with several, cell k of the run order
    /// goes to backends[k % count], so a matrix spreads over a pool of libvirt hosts.
    public var backends: [Backend] = [.qemu]
    public var onEvent: (@Sendable (MatrixEvent) -> Void)?
    /// Starts each cell's machine (default: the lab's, QEMU or libvirt by backend).
    public var launcher: any MachineLauncher
    /// The matrix's way: each run directory is named after its cell id (`profile@image`) and each verdict
    /// carries its cell (`Verdict.cellKey`: JSON `cellKey`, the JUnit case name). False gives `cmalab run`'s
    /// results: ProfileRunner's `profile-image` run names and verdicts without a cell.
    public var stampsCells = true
    /// Each guest's console lines (`cmalab run --console`, which runs one cell at a time).
    public var onConsoleLine: (@Sendable (String) -> Void)?

    public init(lab: Lab, jobs: Int) { self.lab = lab; self.jobs = max(1, jobs); launcher = lab.defaultLauncher }

    /// Builds the images `cells` need. A failed image is returned with its error; its cells become
    /// `error` verdicts without booting.
    public func buildImages(for cells: [MatrixCell]) -> [String: LabError] {
        var names: [String] = []
        for c in cells where !names.contains(c.image) { names.append(c.image) }
        let failures = Mutex<[String: LabError]>([:])
        parallel(names, width: min(buildJobs, names.count)) { name in
            let started = Date()
            // Each build gets its own progress printer: concurrent builds print plain lines.
            let store = KernelStore(paths: self.lab.paths, progress: Progress(quiet: false, isTTY: false, plainInterval: 30))
            do throws(LabError) {
                let def = try self.lab.catalog().resolve(name)
                let k = try store.ensure(def)
                self.onEvent?(.imageBuilt(name: name, seconds: Date().timeIntervalSince(started), cached: k.cached))
            } catch {
                failures.withLock { $0[name] = error }
                self.onEvent?(.imageFailed(name: name, message: error.message))
            }
        }
        return failures.withLock { $0 }
    }

    /// Runs the cells and returns one verdict per cell, in the order of `cells`.
    public func run(_ cells: [MatrixCell], imageFailures: [String: LabError] = [:]) throws(LabError) -> [Verdict] {
        // Decide the accelerator and build the initramfs once, before the workers race for them.
        let resolved: AccelChoice
        if let first = cells.first(where: { imageFailures[$0.image] == nil }) {
            let kernel = try lab.kernel(image: first.image)
            if backends.contains(.qemu) {
                let (a, notice) = try AccelProbe(paths: lab.paths).resolve(accel, kernel: kernel.kernel)
                if let notice { lab.progress.note("cmalab: \(notice)") }
                resolved = a == .kvm ? .kvm : .tcg
            } else {
                resolved = .tcg
            }
            _ = try launcher.initramfs(.agent(lab.paths.agentBinary(for: kernel.architecture)), lab: lab)
        } else {
            resolved = accel
        }
        let results = Mutex<[Int: Verdict]>([:])
        // Longest first (by each cell's last wall time; cells never timed first of all): with N jobs the
        // last cells to finish are then short ones, so no job idles while one long cell runs alone.
        let timings = CellTimings(file: lab.paths.cache + "/cell-seconds")
        let known = timings.load()
        let order = cells.indices.sorted { a, b in
            let ta = known[cells[a].id] ?? .infinity, tb = known[cells[b].id] ?? .infinity
            return ta != tb ? ta > tb : a < b
        }
        defer {
            let measured = results.withLock { r in r.values.filter { $0.kind != .error }.map { ($0.key, $0.seconds) } }
            timings.save(measured)
        }
        parallel(order, width: min(jobs, cells.count)) { i in
            let cell = cells[i]
            if Signals.pending != 0 { return }
            self.onEvent?(.cellStarted(cell))
            var v: Verdict
            if let failure = imageFailures[cell.image] {
                v = Verdict(profile: cell.profile.name, image: cell.image, kind: .error, checks: [],
                            error: "image \(cell.image): \(failure.message)", errorCode: failure.code.rawValue)
            } else {
                let runner = ProfileRunner(lab: self.lab)
                runner.accel = resolved
                runner.backend = self.backends.isEmpty ? .qemu : self.backends[(order.firstIndex(of: i) ?? i) % self.backends.count]
                if self.stampsCells { runner.runName = cell.id }
                runner.onConsoleLine = self.onConsoleLine
                runner.launcher = self.launcher
                v = runner.run(cell.profile, image: cell.image)
            }
            if self.stampsCells { v.cellKey = cell.key }
            results.withLock { $0[i] = v }
            self.onEvent?(.cellFinished(cell, v))
        }
        try Signals.check()
        return results.withLock { r in cells.indices.compactMap { r[$0] } }
    }

    /// Runs `body` for each item on `width` threads. Threads, not a dispatch pool: QEMU is started
    /// under `--pdeathsig`, which is tied to the thread that spawned it, so a cell's thread lives until
    /// its QEMU is gone.
    func parallel<T: Sendable>(_ items: [T], width: Int, _ body: @escaping @Sendable (T) -> Void) {
        guard !items.isEmpty else { return }
        let next = Atomic<Int>(0)
        let group = DispatchGroup()
        for _ in 0..<max(1, width) {
            group.enter()
            let t = Thread {
                while true {
                    let i = next.wrappingAdd(1, ordering: .relaxed).oldValue
                    guard i < items.count else { break }
                    body(items[i])
                }
                group.leave()
            }
            t.stackSize = 4 << 20
            t.start()
        }
        group.wait()
    }
}

/// The last wall time of each matrix cell (`<seconds> <cell id>` lines in the cache), for scheduling.
struct CellTimings {
    let file: String

    func load() -> [String: Double] {
        guard let text = try? String(contentsOfFile: file, encoding: .utf8) else { return [:] }
        var out: [String: Double] = [:]
        for line in text.split(separator: "\n") {
            guard let space = line.firstIndex(of: " "), let s = Double(line[..<space]), s.isFinite, s >= 0 else { continue }
            out[String(line[line.index(after: space)...])] = s
        }
        return out
    }

    /// Merges `measured` into the file (written whole through a temporary file and rename).
    func save(_ measured: [(String, Double)]) {
        guard !measured.isEmpty else { return }
        var all = load()
        for (id, s) in measured where s.isFinite { all[id] = s }
        let text = all.keys.sorted().map { String(format: "%.2f ", all[$0]!) + $0 }.joined(separator: "\n") + "\n"
        let tmp = file + ".\(getpid())"
        guard (try? text.write(toFile: tmp, atomically: false, encoding: .utf8)) != nil else { return }
        if rename(tmp, file) != 0 { unlink(tmp) }
    }
}
