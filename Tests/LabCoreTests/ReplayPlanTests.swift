import Foundation
import Testing
@testable import LabCore

/// The replay's pure half: reading host logs in the formats users have (HostLog.swift), planning the twin
/// (TwinPlan.swift) and comparing CMA lines (Replay.swift). The host log is a real console of a 4 GiB pc guest
/// (Fixtures/console-6.12-pc-4G-cma-1G@1-2G.log), written out the ways dmesg, journalctl and a quote write it.
@Suite struct ReplayPlanTests {
    func console() throws -> String { try Fixture.text("console-6.12-pc-4G-cma-1G@1-2G.log") }

    @Test func everyFormatGivesTheSameFacts() throws {
        let dmesg = try console()
        // The console keeps QEMU's CR LF line ends (one Character in Swift).
        let lines = dmesg.split(whereSeparator: \.isNewline).map(String.init)
        let journal = lines.map { "Dec 01 10:00:00 myhost kernel: " + KernelLog.stripTimestamp($0) }.joined(separator: "\n")
        let quoted = lines.map { "> " + $0 }.joined(separator: "\n")
        let dmesgX = lines.map { "kern  :info  : " + $0 }.joined(separator: "\n")
        let serial = lines.map { "<6>" + $0 + "\r" }.joined(separator: "\n")
        let plain = lines.map(KernelLog.stripTimestamp).joined(separator: "\n")
        let reference = HostLog.read(dmesg)
        #expect(reference.format == .dmesg)
        #expect(reference.boot.kernelRelease == "6.12.117")
        #expect(reference.boot.e820.count == 8)
        #expect(reference.boot.reserved == [ReservedArea(sizeMiB: 1024, base: 0x3f40_0000, node: -1)] || reference.boot.reserved.first?.sizeMiB == 1024)
        #expect(reference.missing.isEmpty)
        for (text, format) in [(journal, HostLogFormat.journal), (quoted, .quoted), (dmesgX, .dmesg), (serial, .dmesg), (plain, .plain)] {
            let f = HostLog.read(text)
            #expect(f.format == format)
            #expect(f.boot == reference.boot, "\(format)")
        }
        // Messages that look like `word: word: ...` are not dmesg -x prefixes.
        let srat = HostLog.read("kern  :info  : [    0.000000] ACPI: SRAT: Node 0 PXM 0 [mem 0x00000000-0x7fffffff]\nACPI: SRAT: Node 1 PXM 1 [mem 0x80000000-0xbfffffff]")
        #expect(srat.boot.nodeMemory.count == 2)
        // journalctl's own lines are not kernel messages.
        #expect(HostLog.read("-- Boot 1234 --\n" + journal).messages == reference.messages)
    }

    @Test func whatIsMissingIsNamedWithHowToCaptureIt() {
        let seedLike = """
            > [    0.000000] Command line: BOOT_IMAGE=/boot/vmlinuz ro cma=1G@1-2G
            > [    0.000000] cma: Reserved 1024 MiB at 0x0000000040000000
            > [    0.000000] Memory: 2404960K/4193716K available (12300K kernel code, 740180K reserved, 1048576K cma-reserved)
            """
        let f = HostLog.read(seedLike)
        #expect(f.format == .quoted)
        #expect(f.boot.reserved.first?.base == 0x4000_0000)
        #expect(f.missing.count == 2)
        #expect(f.missing[0].hasPrefix("no `Linux version` line"))
        #expect(f.missing[1].hasPrefix("no `BIOS-e820:` lines") && f.missing[1].contains("Scripts/capture-host"))
        #expect(throws: TwinPlanError.noMap) { try TwinPlan.plan(map: f.effectiveMap, budget: 1800) }
        #expect(HostLog.read("").missing.first?.hasPrefix("the file holds no kernel messages") == true)
    }

    @Test func theUserDefinedMapWins() {
        let f = HostLog.read("""
            [    0.000000] BIOS-e820: [mem 0x0000000000000000-0x000000007fffffff] usable
            [    0.000000] user-defined physical RAM map:
            [    0.000000] user: [mem 0x0000000000000000-0x000000003fffffff] usable
            [    0.000000] user: [mem 0x0000000040000000-0x000000004fffffff] reserved
            [    0.000000] NX (Execute Disable) protection: active
            """)
        #expect(f.effectiveMap == [MemoryRange(start: 0, end: 0x3fff_ffff, type: "usable"), MemoryRange(start: 0x4000_0000, end: 0x4fff_ffff, type: "reserved")])
    }

    @Test func aQEMUGuestsOwnMapPlansItsOwnShape() throws {
        let f = HostLog.read(try console())
        let plan = try TwinPlan.plan(map: f.effectiveMap, budget: 1800)
        // Low RAM ends where the host's usable RAM below 4 GiB does (0xbffdffff, rounded up to 2 MiB): 3 GiB, and
        // 1 GiB above 4 GiB: the 4 GiB guest the log came from.
        #expect(plan.lowMemory == 0xc000_0000)
        #expect(plan.machine.memory == .gib(4))
        #expect(plan.machine.lowMemory == .gib(3))
        #expect(plan.parameters.first == "memmap=exactmap")
        #expect(plan.parameters.contains("memmap=0xbfee0000@0x100000"))
        #expect(plan.parameters.contains("memmap=0x20000$0xbffe0000"))
        #expect(plan.parameters.contains("memmap=0x40000000@0x100000000"))
        // The host reserves SeaBIOS's top 128 KiB itself: nothing to note.
        #expect(plan.notes.isEmpty, "\(plan.notes)")
        let args = QEMUPlan(machine: plan.machine, kernel: "k", commandLine: KernelCommandLine()).arguments()
        #expect(args.contains("pc,accel=tcg,max-ram-below-4g=3221225472") || args.contains { $0.hasSuffix("max-ram-below-4g=3221225472") })
    }

    @Test func firmwareInHostUsableMemoryStaysReservedAndIsNoted() throws {
        let plan = try TwinPlan.plan(map: [MemoryRange(start: 0, end: 0x9ffff, type: "usable"), MemoryRange(start: 0x100000, end: 0x7fffffff, type: "usable")], budget: 1800)
        #expect(plan.lowMemory == 0x8000_0000 && plan.machine.memory == .gib(2))
        #expect(plan.map.last == MemoryRange(start: 0x7ffe_0000, end: 0x7fff_ffff, type: "reserved"))
        #expect(plan.notes.contains { $0.contains("SeaBIOS keeps its ACPI tables there") })
    }

    @Test func a512GiBHostPlansA512GiBTwin() throws {
        let map = [MemoryRange(start: 0, end: 0x9fbff, type: "usable"), MemoryRange(start: 0x100000, end: 0x7fffffff, type: "usable"),
                   MemoryRange(start: 0x8000_0000, end: 0xffff_ffff, type: "reserved"), MemoryRange(start: 1 << 32, end: (514 << 30) - 1, type: "usable")]
        let plan = try TwinPlan.plan(map: map, budget: 1800)
        #expect(plan.machine.memory == .gib(512))
        #expect(plan.lowMemory == 0x8000_0000)
    }

    @Test func absurdMapsAreRefusedNotTrapped() {
        #expect(throws: TwinPlanError.self) { try TwinPlan.plan(map: [MemoryRange(start: 1 << 32, end: .max, type: "usable")], budget: 1800) }
        #expect(throws: TwinPlanError.self) { try TwinPlan.plan(map: [MemoryRange(start: 0, end: .max, type: "usable")], budget: 1800) }
        #expect(throws: TwinPlanError.noUsableMemory) { try TwinPlan.plan(map: [MemoryRange(start: 0, end: 0xfff, type: "reserved")], budget: 1800) }
    }

    @Test func manyRangesAreMergedToFitTheCommandLineOrRefused() throws {
        // 30 usable ranges with reserved ones between them, then 200 small reserved ranges above the last.
        var map: [MemoryRange] = []
        for i in 0..<30 { map.append(MemoryRange(start: UInt64(i) << 24, end: (UInt64(i) << 24) + 0x7f_ffff, type: "usable"))
                          map.append(MemoryRange(start: (UInt64(i) << 24) + 0x80_0000, end: (UInt64(i) << 24) + 0xff_ffff, type: "reserved")) }
        for i in 0..<200 { map.append(MemoryRange(start: 0xf000_0000 + UInt64(i) * 0x10000, end: 0xf000_0000 + UInt64(i) * 0x10000 + 0xfff, type: "reserved")) }
        let plan = try TwinPlan.plan(map: map, budget: 1800)
        #expect(TwinPlan.length(plan.parameters) <= 1800)
        #expect(plan.notes.contains { $0.hasPrefix("merged ") })
        #expect(plan.map.filter { $0.type == "usable" }.count == 30)
        // Usable ranges cannot be merged: too many of them do not fit.
        let fragmented = (0..<200).map { MemoryRange(start: UInt64($0) << 24, end: (UInt64($0) << 24) + 0x7f_ffff, type: "usable") }
        #expect(throws: TwinPlanError.self) { try TwinPlan.plan(map: fragmented, budget: 1800) }
    }

    @Test func compareNamesEachDifference() {
        var host = BootLogFacts(), twin = BootLogFacts()
        host.reserved = [ReservedArea(sizeMiB: 1024, base: 0x4000_0000)]
        host.failedMiB = [512]
        twin.reserved = [ReservedArea(sizeMiB: 1024, base: 0x3f40_0000)]
        let lines = Replay.compare(host: host, twin: twin)
        #expect(lines.map(\.reproduced) == [false, false])
        #expect(lines[0].differences == ["base: host 0x40000000, twin 0x3f400000"])
        #expect(lines[1].differences == ["the twin did not fail"])
        twin.reserved[0].base = 0x4000_0000
        twin.failedMiB = [512]
        #expect(Replay.compare(host: host, twin: twin).allSatisfy { $0.reproduced })
        #expect(Replay.cmaParameters("ro quiet cma=1G@1-2G hugetlb_cma=2G root=/dev/sda").description == "cma=1G@1-2G hugetlb_cma=2G")
    }
}

/// A real host: this project's build machine, a Firecracker VM with 24 GiB (the first lines of its dmesg, taken
/// with Scripts/capture-host).
@Suite struct ReplayRealHostTests {
    @Test func theBuildMachinesOwnLogPlansA24GiBTwin() throws {
        let f = HostLog.read(try Fixture.text("host-firecracker-24G-dmesg.log"))
        #expect(f.format == .dmesg && f.boot.e820.count == 5 && f.missing.isEmpty)
        let plan = try TwinPlan.plan(map: f.effectiveMap, budget: 1800)
        #expect(plan.machine.memory == .gib(24))
        #expect(plan.lowMemory == 0xc000_0000)
        // Its usable RAM runs to 0xbfffffff: the twin keeps SeaBIOS's tables reserved at the top and says so.
        #expect(plan.map.contains(MemoryRange(start: 0xbffe_0000, end: 0xbfff_ffff, type: "reserved")))
        #expect(plan.notes.contains { $0.contains("SeaBIOS keeps its ACPI tables there") })
        #expect(plan.parameters.contains("memmap=0x540000000@0x100000000"))
    }
}

@Suite struct ReplayMemoryLineTests {
    @Test func aLogWithoutAMapGetsAPlainTwinOfItsSize() throws {
        let f = HostLog.read(try Fixture.text("host-seed-4.15-quoted.log"))
        #expect(f.format == .quoted && f.boot.e820.isEmpty && f.boot.reserved.first?.base == 0x4000_0000)
        let line = try #require(f.boot.memoryLine)
        let plan = try #require(TwinPlan.fromMemoryLine(line))
        #expect(plan.machine.memory == .gib(4) && plan.parameters.isEmpty && plan.machine.lowMemory == nil)
        #expect(plan.notes.first?.contains("the `Memory:` line's total, 4193716K, rounded up") == true)
        #expect(TwinPlan.fromMemoryLine("Memory: 1K/xK available") == nil)
        #expect(TwinPlan.fromMemoryLine("Memory: 1K/99999999999999999999K available") == nil)
        #expect(Replay.explanations(host: f, twinRelease: "6.12.117", plan: plan).first?.hasPrefix("kernel: the host booted vmlinuz-4.15.0CMA20190430") == true)
    }
}
