import Foundation

/// How kernel and driver builds call the compiler.
///
/// Every make in one build tree must pass the same `CC`, or Kbuild rebuilds each object whose command line
/// changed; so `CC=ccache gcc` whenever ccache is installed (Scripts/setup-host installs it), as build trees
/// made before this choice expect. ccache's cache itself is off unless `CMALAB_CCACHE=1`: a cold cma-6.12
/// build took 558 s with ccache filling an empty cache and 349 s with it disabled (issue 20's figures), and
/// cmalab hardly ever compiles the same object twice. Every built kernel is kept by its final .config, and a
/// variant starts from its sibling's build tree (KernelWarmStart), so ccache would only pay after the kernel
/// cache is wiped while the ccache directory is kept.
enum KernelCompiler {
    /// True when `CC` is `ccache <gcc>`.
    static var wrapsWithCcache: Bool { ChildProcess.findExecutable("ccache") != nil }

    /// True when ccache may read and fill its cache (`CMALAB_CCACHE=1`).
    static func cacheEnabled(_ environment: [String: String] = ProcessInfo.processInfo.environment) -> Bool {
        environment["CMALAB_CCACHE"] == "1"
    }

    /// What a build's make runs with on top of cmalab's own environment.
    static func environment(_ environment: [String: String] = ProcessInfo.processInfo.environment) -> [String: String] {
        cacheEnabled(environment) ? [:] : ["CCACHE_DISABLE": "1"]
    }

    /// The build's line in the kernel's meta file: `absent`, `wrapper` (installed, cache off) or `cache`.
    static var metaValue: String {
        !wrapsWithCcache ? "absent" : cacheEnabled() ? "cache" : "wrapper"
    }
}
