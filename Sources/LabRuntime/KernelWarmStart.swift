import Foundation
import LabCore

/// Build directories under `<cache>/build/` and starting a build warm from another one of the same source: the
/// half of kernel building that picks and copies objects, apart from KernelStore's recipe, cache and make steps.
extension KernelStore {
    /// The name of a recipe's build directory and of its lock: the first 24 hex digits of the recipe.
    static func buildName(_ recipe: String) -> String { String(recipe.prefix(24)) }

    /// Where a recipe is built: `<cache>/build/<buildName>`.
    func buildDirectory(_ recipe: String) -> String { paths.cache + "/build/" + Self.buildName(recipe) }

    /// The lock `ensure` holds while it builds into the build directory named `name` (`buildName`).
    func buildLockPath(_ name: String) -> String { kernelsDir + "/locks/\(name).lock" }

    /// Fills `out` with a copy of a finished build directory of the same source, so the build starts warm: Kbuild
    /// tracks which files use which CONFIG_ symbol, so only those recompile (a config variant takes about a
    /// minute, not five). Returns the name of the directory copied, nil to start cold.
    ///
    /// The copy holds the source directory's recipe lock, so it never reads a directory another cmalab process is
    /// building (half-written objects, a .config that does not match them). A busy directory is passed over for
    /// the next newest, without waiting; when every one is busy the build starts cold.
    func startWarm(out: String, source: String, architecture: Architecture) -> String? {
        for seed in warmBuildDirectories(source: source, architecture: architecture) where Path.normalize(seed) != Path.normalize(out) {
            let name = Path.basename(seed)
            let lock: FileLock
            do {
                guard let held = try FileLock.attempt(buildLockPath(name)) else {
                    progress.note("not starting warm from \(name): another cmalab process is building it")
                    continue
                }
                lock = held
            } catch {
                progress.note("not starting warm from \(name): \(error.message)")
                continue
            }
            defer { lock.unlock() }
            // It may have changed while it was locked (a build that failed or started over): look again.
            guard isWarmBuild(seed, source: source, architecture: architecture) else { continue }
            progress.update("copying the objects of \(name) to start warm")
            try? FileManager.default.removeItem(atPath: out)
            do { _ = try runCapturing(["cp", "-a", seed, out]); return name } catch {
                try? FileManager.default.removeItem(atPath: out)
                return nil
            }
        }
        return nil
    }

    /// The newest finished build directory of the same source tree (its Kbuild `source` link points there)
    /// that holds a kernel image of `architecture`.
    func warmBuildDirectory(source: String, architecture: Architecture = .default) -> String? {
        warmBuildDirectories(source: source, architecture: architecture).first
    }

    /// Every finished build directory of the same source tree with a kernel image of `architecture`, newest first.
    func warmBuildDirectories(source: String, architecture: Architecture = .default) -> [String] {
        let root = paths.cache + "/build"
        let image = "/" + architecture.kernelImagePath
        let dirs = (try? FileManager.default.contentsOfDirectory(atPath: root)) ?? []
        let candidates = dirs.map { root + "/" + $0 }.filter { isWarmBuild($0, source: source, architecture: architecture) }
        let dated = candidates.map { (dir: $0, mtime: Files.mtime($0 + image) ?? 0) }
        return dated.sorted { ($0.mtime, $0.dir) > ($1.mtime, $1.dir) }.map(\.dir)
    }

    /// True when `dir` is a build directory of `source` (its Kbuild `source` link) holding a kernel image.
    func isWarmBuild(_ dir: String, source: String, architecture: Architecture) -> Bool {
        guard let link = try? FileManager.default.destinationOfSymbolicLink(atPath: dir + "/source") else { return false }
        return Path.normalize(link) == Path.normalize(source) && Files.exists(dir + "/" + architecture.kernelImagePath)
    }
}
