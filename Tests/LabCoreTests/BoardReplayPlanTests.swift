import Foundation
import Testing
@testable import LabCore

/// Replay of arm64 board logs, the pure half: reading a board's log (BoardLog.swift) and planning its `virt` twin
/// (BoardTwinPlan.swift). The logs are real consoles of arm64 virt guests (Scripts/make-board-fixtures made them;
/// two were edited by it to move the RAM or cut a hole in it), so every address below is one a kernel printed.
@Suite struct BoardReplayPlanTests {
    func facts(_ name: String) throws -> HostFacts { HostLog.read(try Fixture.text(name)) }

    func plan(_ f: HostFacts) throws -> TwinPlan {
        try Replay.twin(for: f, commandLine: Replay.cmaParameters(f.boot.commandLine ?? "")).get()
    }

    func reg(_ name: String, _ start: UInt64, _ size: UInt64, reusable: Bool = false, noMap: Bool = false, cmaDefault: Bool = false) -> ReservedMemoryNode {
        var n = ReservedMemoryNode(name: name)
        n.reg = AddressRange(start, start + size)
        n.reusable = reusable; n.noMap = noMap; n.cmaDefault = cmaDefault
        return n
    }

    @Test func aBoardLogIsReadAsArm64WithItsRAMAndZones() throws {
        let f = try facts("board-virt-2G-nomap-hole.log")
        #expect(f.architecture == .arm64)
        #expect(f.missing.isEmpty, "\(f.missing)")
        #expect(f.boot.e820.isEmpty)
        #expect(f.boot.deviceTree.model == "linux,dummy-virt")
        // Three node lines (the no-map region splits the bank), one range of RAM.
        #expect(f.boot.nodeMemory.count == 3)
        #expect(f.boardRAM == [MemoryRange(start: 0x4000_0000, end: 0xbfff_ffff, type: "usable")])
        #expect(f.effectiveMap == f.boardRAM)
        #expect(f.zones == [MemoryZone(name: "DMA", range: MemoryRange(start: 0x4000_0000, end: 0xbfff_ffff)),
                           MemoryZone(name: "DMA32", range: nil), MemoryZone(name: "Normal", range: nil)])
        #expect(f.boardDMALimit == 0xc000_0000)
        #expect(f.mapSource.contains("memory nodes"))
        // An x86 console stays x86, with no board RAM.
        let x86 = HostLog.read(try Fixture.text("console-6.12-pc-4G-cma-1G@1-2G.log"))
        #expect(x86.architecture == .x86_64 && x86.boardRAM.isEmpty)
        #expect(x86.zones.map(\.name) == ["DMA32", "Normal"])   // the x86 image has no ZONE_DMA
    }

    @Test func theArchitectureIsWrittenInTheJSONAndDerivedAgain() throws {
        let f = try facts("board-virt-2G-dt-pool.log")
        let data = try JSONEncoder().encode(f)
        let object = try #require(JSONSerialization.jsonObject(with: data) as? [String: Any])
        #expect(object["architecture"] as? String == "arm64")
        #expect(try JSONDecoder().decode(HostFacts.self, from: data) == f)
    }

    @Test func twoPoolsBecomeStaticPoolsWhereTheBoardPutThem() throws {
        let f = try facts("board-virt-2G-dt-pool.log")
        #expect(f.boot.deviceTree.pools == [ReservedArea(sizeMiB: 256, base: 0x7000_0000), ReservedArea(sizeMiB: 32, base: 0x9e00_0000)])
        let p = try plan(f)
        #expect(p.machine == MachineSpec(memory: .gib(2), type: .virt, architecture: .arm64))
        #expect(p.window == AddressWindow(host: 0x4000_0000, twin: 0x4000_0000, size: 0x8000_0000))
        #expect(p.parameters.isEmpty)
        #expect(p.deviceTree.reservedMemory == [reg("linux,cma", 0x7000_0000, 256 << 20, reusable: true, cmaDefault: true),
                                                reg("camera-pool", 0x9e00_0000, 32 << 20, reusable: true)])
        #expect(p.deviceTree.reservedMemory.allSatisfy { $0.isCMAPool })
        #expect(p.notes.isEmpty, "\(p.notes)")
        #expect(p.summary.first == "twin: virt (arm64), 2G of RAM from 0x40000000 (as on the board), 2 reserved-memory nodes")
        // The twin's profile carries the nodes and nothing of the board's command line but cma= (none here).
        let profile = Replay.profile(name: "t", plan: p, cma: Replay.cmaParameters(f.boot.commandLine ?? ""), image: nil)
        #expect(profile.deviceTree == p.deviceTree)
        #expect(profile.imageName == "cma-6.12-arm64")
        #expect(profile.commandLine.parameters.isEmpty)
    }

    @Test func aNoMapRegionStaysNoMapAtItsPlace() throws {
        let p = try plan(try facts("board-virt-2G-nomap-hole.log"))
        #expect(p.machine.memory == .gib(2))
        #expect(p.deviceTree.reservedMemory == [reg("linux,cma", 0x5c00_0000, 64 << 20, reusable: true, cmaDefault: true),
                                                reg("firmware", 0x6000_0000, 16 << 20, noMap: true)])
        #expect(p.deviceTree.reservedMemory.map(\.nodeName) == ["linux,cma@5c000000", "firmware@60000000"])
        #expect(p.deviceTree.source.contains("firmware@60000000 {\n\t\t\treg = <0x0 0x60000000 0x0 0x1000000>;\n\t\t\tno-map;"))
        #expect(p.notes.isEmpty, "\(p.notes)")
    }

    @Test func cmaOverADefaultPoolCarriesCMAAndAStandInForTheBypassedNode() throws {
        let f = try facts("board-virt-2G-cma-overrides-dt.log")
        #expect(f.boot.deviceTree.bypassed == ["linux,cma"])
        #expect(f.boot.reserved == [ReservedArea(sizeMiB: 64, base: 0xb9e0_0000, node: -1)])
        #expect(Replay.cmaParameters(f.boot.commandLine ?? "").description == "cma=64M")
        let p = try plan(f)
        var standIn = ReservedMemoryNode(name: "linux,cma")
        standIn.size = 4 << 20; standIn.reusable = true; standIn.cmaDefault = true
        #expect(p.deviceTree.reservedMemory == [standIn])
        #expect(p.notes.count == 1 && p.notes[0].contains("bypassed its default pool linux,cma"), "\(p.notes)")
    }

    @Test func RAMAwayFrom0x40000000ShiftsTheTwinAndEveryRegionByOneOffset() throws {
        let f = try facts("board-shifted-2G-at-0x80000000.log")
        #expect(f.boardRAM == [MemoryRange(start: 0x8000_0000, end: 0xffff_ffff, type: "usable")])
        #expect(f.boardDMALimit == 0x1_0000_0000)
        let p = try plan(f)
        #expect(p.machine.memory == .gib(2))
        let w = try #require(p.window)
        #expect(w == AddressWindow(host: 0x8000_0000, twin: 0x4000_0000, size: 0x8000_0000))
        #expect(w.offsetText == "-0x40000000" && w.boardOffsetText == "+0x40000000")
        // The board's vpu-pool@b0000000 and secure-fw@90000000, 1 GiB lower; the unit address follows.
        #expect(p.deviceTree.reservedMemory == [reg("vpu-pool", 0x7000_0000, 64 << 20, reusable: true),
                                                reg("secure-fw", 0x5000_0000, 8 << 20, noMap: true)])
        #expect(p.deviceTree.reservedMemory.map(\.nodeName) == ["vpu-pool@70000000", "secure-fw@50000000"])
        // Both DMA zones end at the top of RAM, so the shift changes nothing there: one note, the shift's.
        #expect(p.notes.count == 1 && p.notes[0].hasPrefix("shifted: the board's RAM starts at 0x80000000"), "\(p.notes)")
        #expect(p.summary[0].contains("shifted -0x40000000"))
        #expect(p.summary[1] == "device-tree: vpu-pool@70000000: reg [0x70000000-0x73ffffff] (board 0xb0000000), shared-dma-pool, reusable")

        // The twin's lines, at twin addresses, are the board's once shifted back.
        var twin = BootLogFacts()
        twin.reserved = [ReservedArea(sizeMiB: 128, base: 0xb5e0_0000, node: -1)]
        twin.deviceTree.pools = [ReservedArea(sizeMiB: 64, base: 0x7000_0000)]
        let lines = Replay.compare(host: f.boot, twin: twin, plan: p)
        #expect(lines.count == 2 && lines.allSatisfy(\.reproduced), "\(lines)")
        #expect(lines[0].host == "cma: Reserved 128 MiB at 0xf5e00000 on node -1")
        #expect(lines[0].twin == "cma: Reserved 128 MiB at 0xf5e00000 on node -1 (twin address 0xb5e00000)")
        #expect(lines[1].host == "Reserved memory: created CMA memory pool at 0xb0000000, size 64 MiB")
        // Unshifted, the same twin differs: the comparison is at board addresses only through the plan.
        #expect(Replay.compare(host: f.boot, twin: twin).allSatisfy { !$0.reproduced })
        twin.deviceTree.pools[0].base = 0x7400_0000
        let moved = Replay.compare(host: f.boot, twin: twin, plan: p)
        #expect(!moved[1].reproduced && moved[1].differences == ["base: host 0xb0000000, twin 0xb4000000"])
        // A twin address outside the window has no board address: it differs and says so.
        twin.reserved[0].base = 0x3000_0000
        let outside = Replay.compare(host: f.boot, twin: twin, plan: p)
        #expect(!outside[0].reproduced && outside[0].twin == "cma: Reserved 128 MiB at 0x30000000 on node -1 (a twin address, outside the board's RAM)")
    }

    @Test func aHoleBetweenRAMRangesBecomesANoMapNode() throws {
        let f = try facts("board-virt-4G-ram-hole.log")
        #expect(f.boardRAM == [MemoryRange(start: 0x4000_0000, end: 0xefff_ffff, type: "usable"),
                               MemoryRange(start: 0x1_0000_0000, end: 0x1_3fff_ffff, type: "usable")])
        #expect(f.boot.deviceTree.regions.isEmpty)
        let p = try plan(f)
        #expect(p.machine.memory == .gib(4))
        #expect(p.window == AddressWindow(host: 0x4000_0000, twin: 0x4000_0000, size: 0x1_0000_0000))
        #expect(p.deviceTree.reservedMemory == [reg("board-hole", 0xf000_0000, 256 << 20, noMap: true)])
        #expect(p.notes.count == 2, "\(p.notes)")
        #expect(p.notes[0].contains("no RAM at [0xf0000000-0xffffffff]") && p.notes[0].contains("board-hole@f0000000"))
        #expect(p.notes[1] == "the board has 3840M of RAM in 2 ranges over 0x100000000 of addresses")
    }

    @Test func aBoardLogWithoutMemoryRangesSaysWhatItNeeds() throws {
        let text = try Fixture.text("board-virt-2G-dt-pool.log").split(whereSeparator: \.isNewline).filter { !$0.contains("node   0: [mem") }.joined(separator: "\n")
        let f = HostLog.read(text)
        #expect(f.architecture == .arm64)
        #expect(f.missing.count == 1 && f.missing[0].hasPrefix("no `Early memory node ranges` lines"), "\(f.missing)")
        #expect(throws: TwinPlanError.noBoardMemory) { try Replay.twin(for: f, commandLine: KernelCommandLine()).get() }
        // No command line either: said too.
        let bare = HostLog.read("[    0.000000] Machine model: some,board\n[    0.000000] Early memory node ranges\n[    0.000000]   node   0: [mem 0x0000000000000000-0x000000003fffffff]")
        #expect(bare.missing.map { String($0.prefix(20)) } == ["no `Linux version` l", "no `Kernel command l"])
    }

    /// Board shapes virt is not: RAM at 0 (the DMA zone then ends elsewhere in the twin), an odd start, a small
    /// board, a board with two NUMA nodes.
    @Test func otherShapesAreNoted() throws {
        func board(_ lines: [String]) -> HostFacts {
            HostLog.read((["Machine model: test,board", "Early memory node ranges"] + lines).joined(separator: "\n"))
        }
        let atZero = try Replay.twin(for: board(["  node   0: [mem 0x0000000000000000-0x00000000ffffffff]"]), commandLine: KernelCommandLine()).get()
        #expect(atZero.machine.memory == .gib(4))
        #expect(atZero.window?.offsetText == "+0x40000000")
        #expect(atZero.notes.contains { $0.hasPrefix("the board's DMA zone ends at 0x100000000 (from its RAM") && $0.contains("the twin's at 0xc0000000 in board addresses") }, "\(atZero.notes)")

        let odd = try Replay.twin(for: board(["  node   0: [mem 0x0000000080100000-0x00000000880fffff]"]), commandLine: KernelCommandLine()).get()
        #expect(odd.notes.contains { $0.contains("not a multiple of 2 MiB") })
        #expect(odd.machine.memory == .mib(128))

        let small = try Replay.twin(for: board(["  node   0: [mem 0x0000000040000000-0x0000000043ffffff]"]), commandLine: KernelCommandLine()).get()
        #expect(small.machine.memory == .mib(128))
        #expect(small.notes.contains { $0.hasPrefix("the twin has 128M of RAM, 0x4000000 more than the board's span") })

        let numa = try Replay.twin(for: board(["  node   0: [mem 0x0000000040000000-0x000000007fffffff]", "  node   1: [mem 0x0000000080000000-0x00000000bfffffff]"]),
                                   commandLine: KernelCommandLine()).get()
        #expect(numa.notes.contains { $0.hasPrefix("the board has 2 NUMA nodes; the twin has one") })
    }

    /// A log is untrusted: addresses at the top of the space, names that are not node names, region lines outside
    /// RAM and too many ranges give refusals and notes, never a trap or a name in the device-tree source.
    @Test func hostileBoardLogsAreRefusedOrTamed() throws {
        func board(_ lines: [String]) -> HostFacts {
            HostLog.read((["Machine model: test,board", "Early memory node ranges"] + lines).joined(separator: "\n"))
        }
        #expect(throws: TwinPlanError.self) { try Replay.twin(for: board(["  node   0: [mem 0x0000000040000000-0xffffffffffffffff]"]), commandLine: KernelCommandLine()).get() }
        #expect(throws: TwinPlanError.self) { try Replay.twin(for: board(["  node   0: [mem 0x0000000000000000-0x0000ffffffffffff]"]), commandLine: KernelCommandLine()).get() }
        let many = (0..<300).map { "  node   0: [mem 0x\(String(0x4000_0000 + UInt64($0) * 0x20_0000, radix: 16))-0x\(String(0x4000_0000 + UInt64($0) * 0x20_0000 + 0xf_ffff, radix: 16))]" }
        #expect(throws: TwinPlanError.tooManyRanges(300, limit: 256)) { try Replay.twin(for: board(many), commandLine: KernelCommandLine()).get() }

        let f = board(["  node   0: [mem 0x0000000040000000-0x000000007fffffff]",
                       "OF: reserved mem: 0x0000000050000000..0x0000000050ffffff (16384 KiB) nomap non-reusable evil\";};/{x@50000000",
                       "OF: reserved mem: 0x0000000090000000..0x0000000090ffffff (16384 KiB) nomap non-reusable outside@90000000",
                       "OF: reserved mem: 0x0000000060000000..0xffffffffffffffff (16384 KiB) map non-reusable huge",
                       "Reserved memory: created CMA memory pool at 0xfffffffffff00000, size 99999999999999 MiB"])
        let p = try Replay.twin(for: f, commandLine: KernelCommandLine()).get()
        #expect(p.deviceTree.reservedMemory.map(\.nodeName) == ["board-region0@50000000"])
        #expect(!p.deviceTree.source.contains("evil"))
        #expect(p.notes.filter { $0.contains("outside its RAM") }.count == 3, "\(p.notes)")

        // Thousands of region lines: the plan looks at the first 256 and says so.
        let flood = board(["  node   0: [mem 0x0000000040000000-0x000000007fffffff]"]
                          + (0..<5000).map { "OF: reserved mem: 0x\(String(0x4000_0000 + UInt64($0) * 0x1000, radix: 16))..0x\(String(0x4000_0000 + UInt64($0) * 0x1000 + 0xfff, radix: 16)) (4 KiB) map non-reusable r\($0)" })
        let fp = try Replay.twin(for: flood, commandLine: KernelCommandLine()).get()
        #expect(fp.deviceTree.reservedMemory.count == 256)
        #expect(fp.notes == ["the board's log has 5000 reserved regions; the twin is planned from the first 256"])
    }
}
