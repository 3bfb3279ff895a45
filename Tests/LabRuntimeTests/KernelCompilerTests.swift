import Foundation
import Testing
import LabCore
@testable import LabRuntime

/// ccache wraps gcc but keeps its cache off unless CMALAB_CCACHE=1 (KernelCompiler.swift says why).
@Suite struct KernelCompilerTests {
    @Test func ccacheCacheIsOffUnlessAskedFor() {
        #expect(KernelCompiler.environment([:]) == ["CCACHE_DISABLE": "1"])
        #expect(KernelCompiler.environment(["CMALAB_CCACHE": "0"]) == ["CCACHE_DISABLE": "1"])
        #expect(KernelCompiler.environment(["CCACHE_DISABLE": ""]) == ["CCACHE_DISABLE": "1"])
        #expect(KernelCompiler.environment(["CMALAB_CCACHE": "1"]).isEmpty)
        #expect(KernelCompiler.cacheEnabled(["CMALAB_CCACHE": "1"]))
    }

    /// The build steps' make sees the policy on top of cmalab's own environment (PATH stays).
    @Test func aBuildStepSeesTheSetting() throws {
        let out = try runCapturing(["sh", "-c", "echo \"$CCACHE_DISABLE:${PATH:+path}\""], environment: KernelCompiler.environment([:]))
        #expect(out.trimmingCharacters(in: .whitespacesAndNewlines) == "1:path")
    }

    /// CC is the same whether or not the cache is on, so existing build trees are not rebuilt.
    @Test func ccIsTheSameEitherWay() {
        let wrapped = KernelStore.makeVariables(ccache: true)
        #expect(wrapped.contains("CC=ccache gcc"))
        #expect(!KernelStore.makeVariables(ccache: false).contains { $0.hasPrefix("CC=") })
    }
}
