import ArgumentParser
import Foundation
import LabCore
import LabRuntime
import Synchronization

struct MatrixCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "matrix",
        abstract: "Run a matrix of images × profiles in parallel, optionally one shard of it.",
        discussion: """
        The matrix file (format in docs/matrix.md) names images, profiles, optional axes (memory sizes, extra \
        command-line variants), exclusions and per-cell expectation overrides. cmalab builds every image the \
        cells need first (each once), then runs the cells, --jobs at a time, each in its own run directory. \
        --shard K/N runs every N-th cell (in cell-id order), the same partition on every machine; merge the \
        shards' --json files with `cmalab report merge`. Exit status 0 only when every verdict is pass.
        """
    )

    @Argument(help: "The matrix file (e.g. Matrices/bundled.yaml).")
    var file: String

    @Option(name: .long, help: "Cells run at once (default: the number of cores).")
    var jobs: Int = ProcessInfo.processInfo.activeProcessorCount

    @Option(name: .long, help: "Run only shard K of N (e.g. 1/2).")
    var shard: String?

    @OptionGroup var results: ResultsOptions

    @Option(name: .long, help: "Accelerator: auto, kvm or tcg.")
    var accel: AccelChoice = .auto

    @OptionGroup var backendOptions: BackendOptions

    @Option(name: .long, help: "Run only the cells whose id matches (`*` for any text; repeatable), e.g. 'seed-*@cma-6.1'.")
    var only: [String] = []

    @Flag(name: .long, help: "List the cells (of the shard) and exit without building or booting.")
    var list = false

    @Flag(name: .long, help: "Throughput benchmark: run the cells serially, then with --jobs, and print both.")
    var bench = false

    func validate() throws {
        guard (1...64).contains(jobs) else { throw ValidationError("--jobs must be between 1 and 64") }
    }

    func run() throws {
        var allPassed = true
        try runReportingErrors {
            let (spec, allCells) = try MatrixLoader.load(file)
            var cells = allCells
            if !only.isEmpty {
                let patterns = only.map(NamePattern.init)
                cells = cells.filter { c in patterns.contains { $0.matches(c.id) } }
                guard !cells.isEmpty else { throw LabError(.input, "--only \(only.joined(separator: " ")) matches no cell of \(file)", hint: "list the cells with --list") }
            }
            if let shard {
                let s: Shard
                do throws(InputError) { s = try Shard.parse(shard) } catch { throw LabError(.input, error.description) }
                cells = s.select(allCells)
            }
            if list {
                for c in cells { print(c.id + (c.overrides.isEmpty ? "" : "  (overrides: \(c.overrides.joined(separator: ", ")))")) }
                printErr("\(cells.count) of \(allCells.count) cell(s)\(shard.map { " in shard \($0)" } ?? "")")
                return
            }
            let lab = Lab()
            let display = MatrixDisplay(total: cells.count, jobs: jobs)
            let runner = MatrixRunner(lab: lab, jobs: jobs)
            runner.accel = accel
            runner.backends = backendOptions.backends
            runner.onEvent = { display.handle($0) }
            printErr("matrix \(spec.name): \(cells.count) cell(s)\(shard.map { " (shard \($0) of \(allCells.count))" } ?? ""), \(Set(cells.map(\.image)).count) image(s), \(jobs) job(s)")
            let buildStart = Date()
            let failures = runner.buildImages(for: cells)
            try Signals.check()
            printErr(String(format: "images ready in %.1f s", Date().timeIntervalSince(buildStart)))

            if bench {
                try benchmark(runner, cells, failures)
                return
            }
            let started = Date()
            display.start()
            let verdicts = try runner.run(cells, imageFailures: failures)
            display.stop()
            try results.report(verdicts, started: started, accel: accel, title: "cmalab matrix \(spec.name)")
            printErr(String(format: "cmalab: %d cell(s) in %.1f s with %d job(s); run directories under %@",
                            verdicts.count, Date().timeIntervalSince(started), jobs, lab.paths.runs))
            allPassed = verdicts.count == cells.count && verdicts.allSatisfy { $0.kind == .pass }
        }
        if !allPassed { throw ExitCode(1) }
    }

    /// Serial vs parallel wall time on the same cells, with the speed-up.
    func benchmark(_ runner: MatrixRunner, _ cells: [MatrixCell], _ failures: [String: LabError]) throws(LabError) {
        var figures: [(Int, Double, Int)] = []
        for width in [1, jobs] {
            runner.jobs = width
            let t0 = Date()
            let v = try runner.run(cells, imageFailures: failures)
            let seconds = Date().timeIntervalSince(t0)
            figures.append((width, seconds, v.count { $0.kind == .pass }))
            printErr(String(format: "jobs %d: %d cells in %.1f s (%d passed)", width, v.count, seconds, v.count { $0.kind == .pass }))
        }
        print("cells            \(cells.count)")
        for (width, seconds, passed) in figures {
            print(String(format: "jobs %-2d          %.1f s wall, %.2f cells/min, %d passed", width, seconds, Double(cells.count) / seconds * 60, passed))
        }
        print(String(format: "speed-up         %.2fx (jobs %d vs 1, on %d cores)", figures[0].1 / figures[1].1, jobs,
                     ProcessInfo.processInfo.activeProcessorCount))
    }
}

/// The live progress of a matrix: a redrawn status line on a terminal (cells done/total, running,
/// failures, ETA), one plain line per finished cell otherwise.
final class MatrixDisplay: @unchecked Sendable {
    struct State {
        var done = 0
        var failed = 0
        var running: [String] = []
        var started = Date()
        var lineShown = false
    }
    let total: Int
    let jobs: Int
    let tty = isatty(STDERR_FILENO) == 1
    let state = Mutex(State())
    private var timer: DispatchSourceTimer?

    init(total: Int, jobs: Int) { self.total = total; self.jobs = jobs }

    func start() {
        state.withLock { $0.started = Date() }
        guard tty else { return }
        let t = DispatchSource.makeTimerSource(queue: DispatchQueue.global())
        t.schedule(deadline: .now(), repeating: 0.5)
        t.setEventHandler { [weak self] in self?.draw() }
        t.resume()
        timer = t
    }

    func stop() {
        timer?.cancel()
        timer = nil
        state.withLock { s in if s.lineShown { emit("\r\u{1B}[K"); s.lineShown = false } }
    }

    func handle(_ event: MatrixEvent) {
        switch event {
        case .imageBuilt(let name, let seconds, let cached):
            note(cached ? "image \(name): cached" : String(format: "image %@: built in %.1f s", name, seconds))
        case .imageFailed(let name, let message):
            note("image \(name): FAILED: \(message)")
        case .cellStarted(let cell):
            state.withLock { $0.running.append(cell.id) }
        case .cellFinished(let cell, let v):
            let line = state.withLock { s -> String in
                s.done += 1
                if v.kind != .pass { s.failed += 1 }
                s.running.removeAll { $0 == cell.id }
                let why = v.error ?? v.failedChecks.first?.summary ?? ""
                return String(format: "[%d/%d] %@ %@ in %.1f s%@ (ETA %@)", s.done, total, v.kind.rawValue.uppercased(), cell.id, v.seconds,
                              why.isEmpty ? "" : ": \(why)", eta(s))
            }
            note(line)
        }
    }

    private func eta(_ s: State) -> String {
        guard s.done > 0 else { return "?" }
        let rate = Date().timeIntervalSince(s.started) / Double(s.done)
        let left = Int(rate * Double(total - s.done))
        return String(format: "%d:%02d", left / 60, left % 60)
    }

    private func draw() {
        state.withLock { s in
            var line = "cells \(s.done)/\(total) · running \(s.running.count) · failed \(s.failed) · ETA \(eta(s))"
            if !s.running.isEmpty { line += " · " + s.running.joined(separator: ", ") }
            let cols = 120
            if line.count > cols { line = String(line.prefix(cols - 1)) + "…" }
            emit("\r\u{1B}[K" + line)
            s.lineShown = true
        }
    }

    private func note(_ message: String) {
        state.withLock { s in
            if s.lineShown { emit("\r\u{1B}[K"); s.lineShown = false }
            emit(message + "\n")
        }
    }

    private func emit(_ s: String) { FileHandle.standardError.write(Data(s.utf8)) }
}
