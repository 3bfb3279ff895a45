import Foundation
import Testing
@testable import LabCore

/// A profile's `device-tree:` section (DeviceTree.swift): what it accepts, what it refuses and where, and the
/// device-tree source it becomes.
@Suite struct DeviceTreeTests {
    func parse(_ nodes: String) throws(InputError) -> DeviceTree {
        try Profile.parse("name: x\nmachine: {arch: arm64, memory: 2G}\ndevice-tree:\n  reserved-memory:\n\(nodes)", file: "x.yaml").deviceTree
    }

    @Test func parsesEveryProperty() throws {
        let tree = try parse("""
                - {name: "linux,cma", size: 256M, alignment: 4M, alloc-ranges: [[0x40000000, 1G], [2G, 512M]], reusable: true, "linux,cma-default": true}
                - {name: fw, reg: [0x60000000, 16M], no-map: true}
                - {name: coherent, compatible: shared-dma-pool, size: 8M}
                - {name: plain, reg: [3G, 1M], reusable: false, no-map: false, "linux,cma-default": false}

            """)
        #expect(tree.reservedMemory.count == 4)
        let cma = tree.reservedMemory[0]
        #expect(cma.name == "linux,cma" && cma.nodeName == "linux,cma")
        #expect(cma.size == 256 << 20 && cma.reg == nil && cma.alignment == 4 << 20)
        #expect(cma.allocRanges == [AddressRange(0x4000_0000, 0x8000_0000), AddressRange(0x8000_0000, 0xa000_0000)])
        #expect(cma.reusable && cma.cmaDefault && !cma.noMap)
        #expect(cma.compatible == nil && cma.effectiveCompatible == "shared-dma-pool" && cma.isCMAPool)
        let fw = tree.reservedMemory[1]
        #expect(fw.reg == AddressRange(0x6000_0000, 0x6100_0000) && fw.size == nil)
        #expect(fw.nodeName == "fw@60000000" && fw.noMap && fw.effectiveCompatible == nil && !fw.isCMAPool)
        let coherent = tree.reservedMemory[2]
        #expect(coherent.effectiveCompatible == "shared-dma-pool" && !coherent.isCMAPool, "not reusable: not a CMA pool")
        #expect(tree.reservedMemory[3].nodeName == "plain@c0000000" && !tree.reservedMemory[3].reusable)
    }

    @Test func everyBundledArm64ProfileParses() throws {
        let dir = String(#filePath.dropLast("Tests/LabCoreTests/DeviceTreeTests.swift".count)) + "Profiles/arm64"
        let files = try FileManager.default.contentsOfDirectory(atPath: dir).filter { $0.hasSuffix(".yaml") }.sorted()
        #expect(files.count >= 7)
        for f in files {
            let p = try Profile.parse(try String(contentsOfFile: "\(dir)/\(f)", encoding: .utf8), file: f)
            #expect(p.machine.architecture == .arm64 && p.machine.type == .virt, "\(f)")
            #expect(p.imageName == "cma-6.12-arm64", "\(f)")
        }
        let hole = try Profile.parse(try String(contentsOfFile: "\(dir)/dt-nomap-hole.yaml", encoding: .utf8), file: "dt-nomap-hole.yaml")
        #expect(hole.deviceTree.reservedMemory.map(\.nodeName) == ["firmware@60000000", "linux,cma"])
    }

    /// Each refusal names the file, the line and the key, and says what is wanted.
    static let bad: [(String, String, String)] = [
        ("    - {name: a, sise: 1M}\n", "x.yaml:5:17: at `device-tree.reserved-memory[0]`: ", "unknown key `sise`"),
        ("    - {size: 1M}\n", "x.yaml:5:7: at `device-tree.reserved-memory[0]`: ", "missing required key `name`"),
        ("    - {name: a, size: 1M}\n    - {name: a, size: 2M}\n", "x.yaml:6:7: at `device-tree.reserved-memory[1]`: ", "two reserved-memory nodes are named `a`"),
        ("    - {name: a, reg: [1G, 1M]}\n    - {name: a, reg: [1G, 2M]}\n", "x.yaml:6:7: ", "two reserved-memory nodes are named `a@40000000`"),
        ("    - {name: a, size: 1M, reusable: true, \"linux,cma-default\": true}\n    - {name: b, size: 1M, reusable: true, \"linux,cma-default\": true}\n",
         "x.yaml:5:5: at `device-tree.reserved-memory`: ", "only one node may be `linux,cma-default: true`"),
        ("    - {name: a, reg: [1G]}\n", "x.yaml:5:22: at `device-tree.reserved-memory[0].reg`: ", "`reg` is [base, size]"),
        ("    - {name: a, size: 0}\n", "x.yaml:5:23: at `device-tree.reserved-memory[0].size`: ", "`size` must not be 0"),
        ("    - {name: a}\n", "x.yaml:5:7: at `device-tree.reserved-memory[0]`: ", "either `reg` (a fixed region) or `size` (the kernel places it), not neither"),
        ("    - {name: a, size: 1M, reg: [1G, 1M]}\n", "x.yaml:5:7: ", "not both"),
        ("    - {name: a, size: 1M, alignment: 3M}\n", "x.yaml:5:38: at `device-tree.reserved-memory[0].alignment`: ", "`alignment` must be a power of two"),
        ("    - {name: a, size: 1M, alignment: 0}\n", "x.yaml:5:38: ", "`alignment` must be a power of two"),
        ("    - {name: a, reg: [1G, 1M], alloc-ranges: [[1G, 1G]]}\n", "x.yaml:5:46: at `device-tree.reserved-memory[0].alloc-ranges`: ",
         "`alloc-ranges` is for a node with `size`"),
        ("    - {name: a, size: 1M, alloc-ranges: [[1G]]}\n", "x.yaml:5:42: at `device-tree.reserved-memory[0].alloc-ranges[0]`: ", "each alloc-range is [base, size]"),
        ("    - {name: a, size: 1M, alloc-ranges: []}\n", "x.yaml:5:41: at `device-tree.reserved-memory[0].alloc-ranges`: ", "`alloc-ranges` needs at least one [base, size]"),
        ("    - {name: a, reg: [1G, 0]}\n", "x.yaml:5:22: at `device-tree.reserved-memory[0].reg`: ", "a region's size must not be 0"),
        ("    - {name: a, reg: [0xffffffffffff0000, 1G]}\n", "x.yaml:5:22: at `device-tree.reserved-memory[0].reg`: ", "the region ends past 2^48"),
        ("    - {name: a, size: 1M, alloc-ranges: [[0xfffffffffff00000, 2M]]}\n", "x.yaml:5:42: at `device-tree.reserved-memory[0].alloc-ranges[0]`: ", "the region ends past 2^48"),
        ("    - {name: a, size: 1M, reusable: maybe}\n", "x.yaml:5:37: at `device-tree.reserved-memory[0].reusable`: ", "maybe"),
    ]

    @Test(arguments: bad)
    func refusalsSayFileLineAndKey(nodes: String, location: String, message: String) {
        do {
            let tree = try parse(nodes)
            Issue.record("accepted \(tree)")
        } catch {
            #expect(error.description.hasPrefix(location), "got: \(error.description)")
            #expect(error.description.contains(message), "got: \(error.description)")
        }
    }

    @Test func sectionItselfIsChecked() {
        func refusal(_ yaml: String) -> String {
            do { _ = try Profile.parse(yaml, file: "x.yaml"); return "accepted" } catch { return error.description }
        }
        #expect(refusal("name: x\nmachine: {arch: arm64}\ndevice-tree: {}\n") == "x.yaml:3:14: at `device-tree`: `device-tree:` needs a `reserved-memory:` list")
        #expect(refusal("name: x\nmachine: {arch: arm64}\ndevice-tree: {nodes: []}\n").hasPrefix("x.yaml:3:"))
        #expect(refusal("name: x\nmachine: {arch: arm64}\ndevice-tree: {reserved-memory: {name: a}}\n").hasPrefix("x.yaml:3:"))
        // On an x86 machine, whose memory map is e820, the section means nothing: refused, not ignored.
        let x86 = refusal("name: x\nmachine: {memory: 2G}\ndevice-tree:\n  reserved-memory: [{name: a, size: 1M}]\n")
        #expect(x86.hasPrefix("x.yaml:4:3: at `device-tree`: `device-tree:` is for arm64 guests"), "got: \(x86)")
        #expect(refusal("name: x\nmachine: {type: q35}\ndevice-tree:\n  reserved-memory: [{name: a, size: 1M}]\n").contains("add `machine: {arch: arm64}`"))
    }

    /// Names and `compatible` go into the generated source between quotes or as node names: anything that could
    /// end a string, a property or a node is refused.
    @Test(arguments: ["a b", "x;y", "a{b", "a}b", "a\\\"b", "a/b", "a=b", "a\\\\nb", "1abc", "-a", "", "abcdefghijklmnopqrstuvwxyz012345", "émile", "a@1"])
    func nodeNamesThatWouldBreakTheSourceAreRefused(name: String) {
        do {
            let tree = try parse("    - {name: \"\(name)\", size: 1M}\n")
            Issue.record("accepted \(tree.reservedMemory.first?.name.debugDescription ?? "")")
        } catch {
            #expect(error.description.hasPrefix("x.yaml:5:14: at `device-tree.reserved-memory[0].name`: a node name is 1 to 31"), "got: \(error.description)")
        }
    }

    @Test(arguments: ["shared-dma-pool\\\"; evil = <1>; x = \\\"", "a b", "", "x;", "pool}", String(repeating: "p", count: 65)])
    func compatiblesThatWouldBreakTheSourceAreRefused(compatible: String) {
        do {
            let tree = try parse("    - {name: a, size: 1M, compatible: \"\(compatible)\"}\n")
            Issue.record("accepted \(tree.reservedMemory.first?.compatible?.debugDescription ?? "")")
        } catch {
            #expect(error.description.contains("at `device-tree.reserved-memory[0].compatible`: `compatible` is a name like shared-dma-pool"), "got: \(error.description)")
        }
    }

    @Test func longestNameAndCompatibleAreAccepted() throws {
        let name = "a" + String(repeating: "b", count: 30)
        let tree = try parse("    - {name: \(name), size: 1M, compatible: \(String(repeating: "c", count: 64))}\n")
        #expect(tree.reservedMemory.first?.name.count == 31)
    }

    /// The source fragment dtc merges into QEMU's tree: two cells per address and size, as `virt` uses.
    @Test func sourceText() throws {
        let tree = try parse("""
                - {name: "linux,cma", size: 256M, alignment: 4M, alloc-ranges: [[0x40000000, 1G]], reusable: true, "linux,cma-default": true}
                - {name: fw, reg: [0x160000000, 16M], no-map: true}

            """)
        #expect(tree.source == """

            /* cmalab: the profile's device-tree: section */
            / {
            \treserved-memory {
            \t\t#address-cells = <0x02>;
            \t\t#size-cells = <0x02>;
            \t\tranges;
            \t\tlinux,cma {
            \t\t\tcompatible = "shared-dma-pool";
            \t\t\tsize = <0x0 0x10000000>;
            \t\t\talignment = <0x0 0x400000>;
            \t\t\talloc-ranges = <0x0 0x40000000 0x0 0x40000000>;
            \t\t\treusable;
            \t\t\tlinux,cma-default;
            \t\t};
            \t\tfw@160000000 {
            \t\t\treg = <0x1 0x60000000 0x0 0x1000000>;
            \t\t\tno-map;
            \t\t};
            \t};
            };

            """)
        #expect(DeviceTree().isEmpty && !tree.isEmpty)
    }
}

/// The device-tree and memory-node lines of arm64 boot logs (DeviceTreeLog.swift), on lines real boots printed
/// (Tests/LabCoreTests/Fixtures/arm64-cases.tsv).
@Suite struct DeviceTreeLogTests {
    func facts(_ name: String) throws -> BootLogFacts {
        try #require(try Arm64Fixture.boots().first { $0.name == name }, "no recorded case \(name)").facts
    }

    @Test func poolsRegionsAndNodeRanges() throws {
        let f = try facts("dt-nomap-hole-2g")
        #expect(f.deviceTree.model == "linux,dummy-virt")
        #expect(f.deviceTree.pools == [ReservedArea(sizeMiB: 64, base: 0x5c00_0000)])
        #expect(f.deviceTree.regions == [
            ReservedMemoryRegion(start: 0x5c00_0000, end: 0x5fff_ffff, map: true, reusable: true, name: "linux,cma"),
            ReservedMemoryRegion(start: 0x6000_0000, end: 0x60ff_ffff, map: false, reusable: false, name: "firmware@60000000"),
        ])
        #expect(f.deviceTree.bypassed.isEmpty && f.deviceTree.failures.isEmpty)
        // The no-map hole splits node 0's memory into three ranges.
        #expect(f.nodeMemory == [NodeMemoryRange(node: 0, start: 0x4000_0000, end: 0x5fff_ffff),
                                 NodeMemoryRange(node: 0, start: 0x6000_0000, end: 0x60ff_ffff),
                                 NodeMemoryRange(node: 0, start: 0x6100_0000, end: 0xbfff_ffff)])
        #expect(f.commandLine == "console=ttyAMA0 earlycon panic=-1 dyndbg=\"file mm/cma.c +p\"")
    }

    @Test func bypassFailuresAndNumaNodes() throws {
        let bypass = try facts("dt-bypass-2g")
        #expect(bypass.deviceTree.bypassed == ["linux,cma"])
        #expect(bypass.deviceTree.pools.isEmpty && bypass.deviceTree.failures.isEmpty, "`compatible matching fail` is not a failure line")
        #expect(bypass.reserved.map(\.base) == [0xb9e0_0000])
        let busy = try facts("dt-nomap-busy-2g")
        #expect(busy.deviceTree.failures == ["Reserved memory: failed to reserve memory for node 'firmware@48000000': base 0x0000000048000000, size 2 MiB"])
        #expect(busy.deviceTree.regions.map(\.name) == ["firmware@48000000"], "the node is still listed")
        let big = try facts("dt-too-big-2g")
        #expect(big.deviceTree.failures == ["failed to allocate memory for node 'linux,cma': size 512 MiB"])
        let numa = try facts("numa-2g")
        #expect(numa.nodeMemory == [NodeMemoryRange(node: 0, start: 0x4000_0000, end: 0x7fff_ffff), NodeMemoryRange(node: 1, start: 0x8000_0000, end: 0xbfff_ffff)])
        #expect(numa.deviceTree.regions.isEmpty && numa.deviceTree.failures.isEmpty, "`No reserved-memory node in the DT` is neither")
    }

    @Test func malformedAndForeignLinesAreSkipped() {
        let f = KernelLogParser.facts(from: [
            "OF: reserved mem: 0xZZ..0x1 (4 KiB) map reusable x",
            "OF: reserved mem: 0x0000000000002000..0x0000000000001000 (4 KiB) map reusable backwards",
            "OF: reserved mem: 0x0000000000001000..0x0000000000001fff (4 KiB) mapped reusable odd",
            "OF: reserved mem: 0x0000000000001000..0x0000000000001fff (4 KiB)",
            "Reserved memory: created CMA memory pool at 0xnothex, size 64 MiB",
            "Reserved memory: created CMA memory pool at 0x0000000070000000, size 64 GiB",
            "Reserved memory: bypass linux,cma node",
            // On a device-tree machine every memory node line counts, before or after `Machine model:` (real arm64
            // consoles print the model after them).
            "  node   0: [mem 0x0000000000001000-0x000000000009efff]",
            "Machine model: linux,dummy-virt",
            "Machine model: second",
            "  node   x: [mem 0x0000000040000000-0x000000007fffffff]",
            "  node   0: [mem 0x0000000040000000]",
            "  node   2: [mem 0x0000000040000000-0x000000007fffffff]",
        ])
        #expect(f.deviceTree.regions.isEmpty && f.deviceTree.pools.isEmpty && f.deviceTree.bypassed.isEmpty)
        #expect(f.deviceTree.model == "linux,dummy-virt")
        #expect(f.nodeMemory == [NodeMemoryRange(node: 0, start: 0x1000, end: 0x9_efff), NodeMemoryRange(node: 2, start: 0x4000_0000, end: 0x7fff_ffff)])
        // x86 prints the same lines, but its nodes come from the SRAT: without `Machine model:` they are not taken.
        let x86 = KernelLogParser.facts(from: ["BIOS-e820: [mem 0x0000000000000000-0x000000000009fbff] usable",
                                               "Early memory node ranges", "  node   0: [mem 0x0000000000001000-0x000000000009efff]"])
        #expect(x86.nodeMemory.isEmpty && x86.deviceTree.isEmpty)
    }
}
