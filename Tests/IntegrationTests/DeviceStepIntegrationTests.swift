import Foundation
import Testing
import LabCore
@testable import LabRuntime

extension Integration {
/// The device step kinds on real kernels: DMA API allocations through cmalab's test driver, dma-buf heaps,
/// long-term pins, the trace events around them, and the skips on an image without modules or heaps.
@Suite struct DeviceStepIntegrationTests {
    /// Runs one profile (YAML text) with `cmalab run` and returns its verdict.
    func run(_ yaml: String, image: String = "cma-6.12") throws -> (Verdict, IT.CLIResult) {
        let dir = NSTemporaryDirectory() + "cmalab-dev-\(UUID().uuidString)"
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: dir) }
        try yaml.write(toFile: dir + "/p.yaml", atomically: true, encoding: .utf8)
        let r = try IT.runCLI(["run", "--accel", "tcg", "--image", image, "--json", dir + "/r.json", dir + "/p.yaml"])
        let (verdicts, _) = try Report.decodeResults(Array(try Data(contentsOf: URL(fileURLWithPath: dir + "/r.json"))))
        let v = try #require(verdicts.first)
        #expect(IT.qemuProcesses(ofRuns: verdicts.map(\.runDirectory)).isEmpty)
        return (v, r)
    }

    /// 256 MiB lands at 4 GiB on an 8 GiB guest: a 32-bit device's 64 MiB fails (the buddy allocator has
    /// nothing that large below 4 GiB... or anywhere), its 2 MiB comes from the buddy allocator, a 64-bit
    /// device's 64 MiB comes from the area; the trace shows the CMA allocations.
    @Test func dmaAllocFollowsTheDeviceMask() throws {
        let (v, r) = try run("""
            name: dma-masks
            machine: {memory: 8G, cpus: 1}
            cmdline: cma=256M
            expect: {outcome: reserved, size: 256M, base: 0x100000000}
            steps:
              - dma-alloc: {size: 64M, mask: 32, expect: failure}
              - dma-alloc: {size: 2M, mask: 32, from: buddy}
              - dma-alloc: {size: 64M, mask: 64, call: pages, from: cma}
              - dma-free
            """)
        #expect(v.kind == .pass, "\(r.stdout)\n\(r.stderr)\n\(v.checks.filter { !$0.passed })")
        let steps = try #require(v.observations?.steps)
        #expect(steps.map(\.status) == [12, 0, 0, 0])
        #expect(steps[1].dma?.area == nil && (steps[1].dma?.dmaAddress ?? .max) < 1 << 32)
        #expect(steps[2].dma?.area == "reserved" && steps[2].dma?.physicalAddress ?? 0 >= 1 << 32)
        #expect(steps[3].freedCount == 2)
        // The kernel's trace: the 32-bit device's request did reach CMA (then gave the pages back), the 64-bit one's too.
        #expect((steps[2].trace?.allocationMicroseconds.count ?? 0) == 1)
        #expect(v.oracle?.agrees == true, "\(v.oracle?.divergence ?? "no oracle")")
        #expect(r.stdout.contains("CMA trace (kernel timestamps):"))
        let dmesg = try String(contentsOfFile: v.runDirectory + "/dmesg.txt", encoding: .utf8)
        #expect(dmesg.contains("cmalab-dma: 64-bit device: 67108864 bytes at dma 0x0000000100000000"))
    }

    @Test func heapBuffersComeFromTheAreaAndAMissingHeapIsAFailure() throws {
        let (v, r) = try run("""
            name: heaps
            machine: {memory: 1G, cpus: 1}
            cmdline: cma=128M
            expect: {outcome: reserved, size: 128M}
            steps:
              - heap-alloc: {heap: reserved, size: 64M}
              - heap-alloc: {heap: nosuch, size: 1M, expect: failure}
              - heap-free
            """)
        #expect(v.kind == .pass, "\(r.stdout)\n\(r.stderr)\n\(v.checks.filter { !$0.passed })")
        let o = try #require(v.observations)
        #expect(o.dmaHeaps == ["reserved", "system"])
        #expect(o.steps[0].areaAfter?.used == 16384)
        #expect(o.steps[1].status == 2)
        #expect(o.steps[2].freedCount == 1)
    }

    @Test func longTermPinsMoveOutOfCMA() throws {
        let (v, r) = try run("""
            name: longterm
            machine: {memory: 2G, cpus: 1}
            cmdline: cma=512M
            timeout: 300
            expect: {outcome: reserved, size: 512M}
            steps:
              - pressure: {size: 80%, of: free-outside-cma, kind: anon, pin: longterm}
              - alloc: {area: reserved, pages: all}
              - release
            """)
        #expect(v.kind == .pass, "\(r.stdout)\n\(r.stderr)\n\(v.checks.filter { !$0.passed })")
        #expect(v.observations?.steps[0].output?.contains("via gup_test") == true)
    }

    /// cma-6.12-nodmacma has neither CONFIG_MODULES nor dma-buf heaps (it leaves out device.config): the steps are skipped before
    /// booting, with the reason, and the rest of the profile runs. Without DMA_CMA there is no global area, so the
    /// step that runs is a shell one.
    @Test func anImageWithoutTheOptionsSkipsTheStepsWithTheReason() throws {
        let (v, r) = try run("""
            name: no-device-options
            machine: {memory: 1G, cpus: 1}
            expect: {outcome: none}
            steps:
              - dma-alloc: {size: 1M, mask: 32}
              - heap-alloc: {heap: reserved, size: 1M}
              - exec: {command: "grep -c . /proc/modules || echo no-modules"}
            """, image: "cma-6.12-nodmacma")
        #expect(v.kind == .pass, "\(r.stdout)\n\(r.stderr)")
        let skipped = try #require(v.observations?.skippedSteps)
        #expect(skipped.map(\.index) == [0, 1])
        #expect(skipped[0].reason.contains("no CONFIG_MODULES (cmalab's DMA test driver is a loadable module)"))
        #expect(skipped[1].reason.contains("no CONFIG_DMABUF_HEAPS"))
        #expect(v.observations?.steps.map(\.kind) == [.exec])
        #expect(v.observations?.steps.first?.output?.contains("no-modules") == true)
    }
}
}
