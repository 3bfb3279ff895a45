import Foundation
import Testing
@testable import LabCore

/// Replay from a capture directory of Scripts/capture-host (HostBundle.swift). The fixture
/// (Fixtures/host-bundle-8G) is an 8 GiB x86 KVM guest booted with `cma=512M`: its dmesg.txt starts after the
/// boot's first lines had rotated out, so it has no `Linux version`, no `Command line:` and no `BIOS-e820:` lines
/// (the later `Kernel command line:` line is cut from it too, so the command line has to come from cmdline.txt),
/// but it keeps the CMA reservation; memmap/0..7 is its /sys/firmware/memmap.
@Suite struct ReplayBundleTests {
    /// The fixture's files as the cmalab reader hands them over.
    func bundle(_ name: String = "host-bundle-8G") throws -> HostBundle {
        let dir = try Fixture.directory(name)
        func text(_ path: String) -> String? { try? String(contentsOf: dir.appendingPathComponent(path), encoding: .utf8) }
        let names = try FileManager.default.contentsOfDirectory(atPath: dir.appendingPathComponent("memmap").path).sorted { Int($0)! < Int($1)! }
        return HostBundle(dmesg: text("dmesg.txt"),
                          memmap: names.map { FirmwareMapEntry(name: $0, start: text("memmap/\($0)/start"), end: text("memmap/\($0)/end"), type: text("memmap/\($0)/type")) },
                          cmdline: text("cmdline.txt"), config: text("config"))
    }

    static let expectedMap = [
        MemoryRange(start: 0, end: 0x9fbff, type: "usable"),
        MemoryRange(start: 0x9fc00, end: 0x9ffff, type: "reserved"),
        MemoryRange(start: 0xf0000, end: 0xfffff, type: "reserved"),
        MemoryRange(start: 0x100000, end: 0xbffd_ffff, type: "usable"),
        MemoryRange(start: 0xbffe_0000, end: 0xbfff_ffff, type: "reserved"),
        MemoryRange(start: 0xfeff_c000, end: 0xfeff_ffff, type: "reserved"),
        MemoryRange(start: 0xfffc_0000, end: 0xffff_ffff, type: "reserved"),
        MemoryRange(start: 0x1_0000_0000, end: 0x2_3fff_ffff, type: "usable"),
    ]

    @Test func theMapComesFromMemmapWhereTheLogLostIt() throws {
        let b = try bundle()
        #expect(b.memmap.count == 8)
        #expect(HostLog.read(b.dmesg ?? "").boot.e820.isEmpty)
        let f = try HostLog.read(bundle: b)
        #expect(f.boot.e820 == Self.expectedMap)
        #expect(f.effectiveMap == Self.expectedMap)
        #expect(f.mapSource == "/sys/firmware/memmap, from the capture's memmap/")
        // The log's own facts are still there.
        #expect(f.format == .dmesg && f.messages > 80)
        #expect(f.boot.reserved == [ReservedArea(sizeMiB: 512, base: 0x1_0000_0000, node: -1)])
        #expect(f.boot.memoryCmaReservedKiB == 512 << 10)
        #expect(f.boot.ramdisk == MemoryRange(start: 0x34a5_e000, end: 0x3622_bfff, type: ""))
        // sysfs numbers entries in the firmware's order; the map is sorted by address whatever the order given.
        var shuffled = b
        shuffled.memmap.reverse()
        #expect(try HostLog.read(bundle: shuffled).boot.e820 == Self.expectedMap)
    }

    @Test func theCommandLineComesFromCmdlineTxt() throws {
        let f = try HostLog.read(bundle: try bundle())
        #expect(f.boot.commandLine == "BOOT_IMAGE=/vmlinuz root=/dev/vda1 cma=512M")
        #expect(Replay.cmaParameters(f.boot.commandLine ?? "").description == "cma=512M")
        // Line breaks inside the file become spaces; a blank file supplies nothing.
        var b = try bundle()
        b.cmdline = "ro quiet\ncma=1G\n\n"
        #expect(try HostLog.read(bundle: b).boot.commandLine == "ro quiet cma=1G")
        b.cmdline = " \n"
        #expect(try HostLog.read(bundle: b).boot.commandLine == nil)
    }

    @Test func missingNamesOnlyWhatTheWholeDirectoryLacks() throws {
        let b = try bundle()
        let logAlone = HostLog.read(b.dmesg ?? "")
        #expect(logAlone.missing.count == 3)
        let f = try HostLog.read(bundle: b)
        #expect(f.missing.count == 1, "\(f.missing)")
        #expect(f.missing.allSatisfy { !$0.contains("BIOS-e820") && !$0.contains("Command line") })
        #expect(f.missing.first?.hasPrefix("no `Linux version` line (the kernel release) in dmesg.txt") == true)
        // Without memmap/ and cmdline.txt the directory lacks what the log lacks, and says so in its own terms.
        let bare = try HostLog.read(bundle: HostBundle(dmesg: b.dmesg))
        #expect(bare.missing.count == 3)
        #expect(bare.missing[1].hasPrefix("no `BIOS-e820:` lines in dmesg.txt and no usable memmap/"))
        #expect(bare.missing[2].hasPrefix("no `Command line:` line in dmesg.txt and no cmdline.txt"))
    }

    @Test func sourcesSayWhichFileEachFactCameFrom() throws {
        let f = try HostLog.read(bundle: try bundle())
        #expect(f.sources == [
            "kernel messages: dmesg.txt (\(f.messages), dmesg format)",
            "memory map: memmap/ (8 entries of /sys/firmware/memmap; dmesg.txt has no `BIOS-e820:` lines)",
            "command line: cmdline.txt (/proc/cmdline; dmesg.txt has no `Command line:` line)",
            "kernel config: config (kept, not used by the replay yet)",
        ])
        // A plain log has one file, and no sources list.
        #expect(HostLog.read(try bundle().dmesg ?? "").sources.isEmpty)
    }

    @Test func aLogWithItsOwnMapAndCommandLineKeepsThem() throws {
        // The console of a 4 GiB guest has both; a broken memmap/ beside it is not even read.
        let console = try Fixture.text("console-6.12-pc-4G-cma-1G@1-2G.log")
        var b = try bundle()
        b.dmesg = console
        b.memmap[0].start = "garbage"
        let f = try HostLog.read(bundle: b)
        #expect(f.boot == HostLog.read(console).boot)
        #expect(f.boot.e820.count == 8 && f.boot.e820.contains(MemoryRange(start: 0x1_0000_0000, end: 0x1_3fff_ffff, type: "usable")))
        #expect(f.missing.isEmpty)
        #expect(f.mapSource == "BIOS-e820")
        #expect(f.sources.contains("memory map: dmesg.txt (8 `BIOS-e820:` lines)") && f.sources.contains("command line: dmesg.txt"))
    }

    @Test func anEmptyLogStillGivesTheMap() throws {
        var b = try bundle()
        b.dmesg = ""
        let f = try HostLog.read(bundle: b)
        #expect(f.messages == 0 && f.boot.e820 == Self.expectedMap && f.boot.commandLine != nil)
        #expect(f.missing == [f.missing[0]])
        #expect(f.missing[0].hasPrefix("dmesg.txt holds no kernel messages"))
    }

    @Test func badMemmapEntriesAreRefusedNamingTheFile() throws {
        let good = try bundle()
        func error(_ change: (inout HostBundle) -> Void) -> HostBundleError? {
            var b = good
            change(&b)
            do { _ = try HostLog.read(bundle: b); return nil } catch { return error }
        }
        #expect(error { $0.memmap[3].start = "0xzz\n" } == .notAnAddress(file: "memmap/3/start", text: "0xzz"))
        #expect(error { $0.memmap[3].start = "1048576" } == .notAnAddress(file: "memmap/3/start", text: "1048576"))
        #expect(error { $0.memmap[3].start = "0x" } == .notAnAddress(file: "memmap/3/start", text: "0x"))
        #expect(error { $0.memmap[3].start = "0x-1" } == .notAnAddress(file: "memmap/3/start", text: "0x-1"))
        #expect(error { $0.memmap[3].start = "0x+100000" } == .notAnAddress(file: "memmap/3/start", text: "0x+100000"))
        // 2^64 does not fit; neither does a 17-digit number.
        #expect(error { $0.memmap[7].end = "0x10000000000000000" } == .notAnAddress(file: "memmap/7/end", text: "0x10000000000000000"))
        #expect(error { $0.memmap[2].end = "0xeffff" } == .endBeforeStart(entry: "memmap/2", start: 0xf0000, end: 0xeffff))
        #expect(error { $0.memmap[5].end = nil } == .emptyFile("memmap/5/end"))
        #expect(error { $0.memmap[5].type = "\n" } == .emptyFile("memmap/5/type"))
        let e = error { $0.memmap[4].start = "0xbffe0000 junk" }
        #expect(e?.description == "memmap/4/start holds \"0xbffe0000 junk\", not an address like 0x100000")
        #expect(HostBundleError.endBeforeStart(entry: "memmap/2", start: 0xf0000, end: 0xeffff).description == "memmap/2 ends at 0xeffff, before it starts at 0xf0000")
        // The largest address sysfs can write is fine (a range to the top of the address space).
        #expect(error { $0.memmap[7].end = "0xffffffffffffffff" } == nil)
    }

    @Test func everyFirmwareTypeGetsTheKernelsE820Word() throws {
        let types = ["System RAM", "Reserved", "ACPI Tables", "ACPI Non-volatile Storage", "Unusable memory",
                     "Persistent Memory (legacy)", "Persistent Memory", "Soft Reserved", "Unknown E820 type"]
        let entries = types.enumerated().map { i, t in
            FirmwareMapEntry(name: "\(i)", start: "0x\(String(i << 20, radix: 16))\n", end: "0x\(String((i + 1) << 20 - 1, radix: 16))\n", type: t + "\n")
        }
        let f = try HostLog.read(bundle: HostBundle(dmesg: "", memmap: entries))
        #expect(f.boot.e820.map(\.type) == ["usable", "reserved", "ACPI data", "ACPI NVS", "unusable",
                                            "persistent (type 12)", "persistent (type 7)", "soft reserved", "Unknown E820 type"])
        // The words are the ones the kernel prints and the parser keeps.
        let logged = HostLog.read("[    0.000000] BIOS-e820: [mem 0x0000000000200000-0x00000000002fffff] ACPI data\n[    0.000000] BIOS-e820: [mem 0x0000000000300000-0x00000000003fffff] ACPI NVS")
        #expect(logged.boot.e820.map(\.type) == ["ACPI data", "ACPI NVS"])
        #expect(f.boot.e820[2...3].map(\.type) == logged.boot.e820.map(\.type))
    }

    @Test func theTwinOfTheBundlePlansAn8GiBGuest() throws {
        let f = try HostLog.read(bundle: try bundle())
        let plan = try TwinPlan.plan(map: f.effectiveMap, budget: 1800)
        // Usable RAM below 4 GiB ends at 0xbffdffff (rounded up to 2 MiB: 3 GiB), and 5 GiB above 4 GiB.
        #expect(plan.machine.memory == .gib(8))
        #expect(plan.lowMemory == 0xc000_0000)
        #expect(plan.parameters.first == "memmap=exactmap")
        #expect(plan.parameters.contains("memmap=0x9fc00@0x0"))
        #expect(plan.parameters.contains("memmap=0xbfee0000@0x100000"))
        #expect(plan.parameters.contains("memmap=0x140000000@0x100000000"))
        // The host keeps SeaBIOS's top 128 KiB reserved itself: nothing to note.
        #expect(plan.notes.isEmpty, "\(plan.notes)")
        let profile = Replay.profile(name: "replay", plan: plan, cma: Replay.cmaParameters(f.boot.commandLine ?? ""), image: nil)
        #expect(profile.commandLine.description.hasSuffix(" cma=512M"))
    }

    @Test func replayJSONWithoutTheNewerKeysStillDecodes() throws {
        let f = try HostLog.read(bundle: try bundle())
        let data = try JSONEncoder().encode(f)
        var object = try #require(try JSONSerialization.jsonObject(with: data) as? [String: Any])
        #expect(object["sources"] != nil)
        object["sources"] = nil
        object["missing"] = nil
        object["userMap"] = nil
        let old = try JSONDecoder().decode(HostFacts.self, from: try JSONSerialization.data(withJSONObject: object))
        #expect(old.boot == f.boot && old.sources.isEmpty && old.missing.isEmpty)
        #expect(try JSONDecoder().decode(HostFacts.self, from: data) == f)
    }
}
