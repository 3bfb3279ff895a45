import Foundation
#if canImport(FoundationXML)
import FoundationXML
#endif
import Testing
@testable import LabCore

/// The HTML report and its memory picture, read back with an XML parser (FoundationXML's `XMLDocument`).
@Suite struct HTMLReportTests {
    // MARK: - Fixtures

    /// Observations as a run would record them, from a captured console log.
    static func observations(console name: String, profile: String, machine: MachineSpec, crashed: Bool = false) throws -> Observations {
        let lines = try Fixture.text(name).split(whereSeparator: \.isNewline).map(String.init)
        let boot = KernelLogParser.facts(from: lines)
        var o = Observations(profile: profile, image: "cma-6.12", machine: machine, commandLine: KernelCommandLine(parsing: boot.commandLine ?? ""),
                             accelerator: "tcg", ending: crashed ? .kernelCrash : .poweredOff, boot: boot)
        if crashed {
            o.crash = CrashReport(kind: .panic, headline: "BUG: unable to handle page fault for address: ffffea0003000000",
                                  panicLine: "Kernel panic - not syncing: Attempted to kill init! exitcode=0x00000009")
        }
        o.kernelRelease = boot.kernelRelease
        o.runDirectory = "runs/20261125-000000-\(profile)"
        return o
    }

    static func seed() throws -> Observations {
        var o = try observations(console: "console-6.12-pc-4G-cma-1G@1-2G.log", profile: "seed-1g-at-1-2g", machine: MachineSpec(memory: .gib(4)))
        o.areas = [AreaSnapshot(name: "reserved", basePFN: 0x3fc00, count: 262_144, used: 0, maxchunk: 262_144, orderPerBit: 0, sysfs: [:])]
        o.meminfo = [MeminfoSnapshot(label: "boot", cmaTotalKiB: 1_048_576, cmaFreeKiB: 1_048_576, memTotalKiB: 4_041_204, memFreeKiB: 3_900_000),
                     MeminfoSnapshot(label: "end", cmaTotalKiB: 1_048_576, cmaFreeKiB: 1_042_132, memTotalKiB: 4_041_204, memFreeKiB: 3_899_000)]
        var alloc = StepRecord(index: 0, kind: .alloc, summary: "alloc 102400 pages from reserved", status: 0, seconds: 0.2)
        alloc.before = MeminfoSnapshot(label: "step0-alloc-before", cmaTotalKiB: 1_048_576, cmaFreeKiB: 1_048_576, memTotalKiB: nil, memFreeKiB: nil)
        alloc.after = MeminfoSnapshot(label: "step0-alloc-after", cmaTotalKiB: 1_048_576, cmaFreeKiB: 638_976, memTotalKiB: nil, memFreeKiB: nil)
        alloc.areaAfter = AreaSnapshot(name: "reserved", basePFN: 0x3fc00, count: 262_144, used: 102_400, maxchunk: 159_744, orderPerBit: 0, sysfs: [:])
        o.steps = [alloc]
        return o
    }

    static func crash() throws -> Observations {
        try observations(console: "console-6.12-pc-4G-cma-1G@3G-4G-panic.log", profile: "crash-fixed-in-ram-hole", machine: MachineSpec(memory: .gib(4)), crashed: true)
    }

    static func big() throws -> Observations {
        var o = try observations(console: "console-6.12-pc-64G-cma-2G.log", profile: "above-4g-on-64g", machine: MachineSpec(memory: .gib(64)))
        o.areas = [AreaSnapshot(name: "reserved", basePFN: 0x100000, count: 524_288, used: 0, maxchunk: 524_288, orderPerBit: 0, sysfs: [:])]
        return o
    }

    /// A 512 GiB pc guest with a 4 MiB area just above 4 GiB (the e820 QEMU gives such a guest, §10.2).
    static func tiny() -> Observations {
        var boot = BootLogFacts()
        boot.e820 = [
            MemoryRange(start: 0, end: 0x9_fbff, type: "usable"), MemoryRange(start: 0x9_fc00, end: 0x9_ffff, type: "reserved"),
            MemoryRange(start: 0xf_0000, end: 0xf_ffff, type: "reserved"), MemoryRange(start: 0x10_0000, end: 0xbffd_ffff, type: "usable"),
            MemoryRange(start: 0xbffe_0000, end: 0xbfff_ffff, type: "reserved"), MemoryRange(start: 0xfffc_0000, end: 0xffff_ffff, type: "reserved"),
            MemoryRange(start: 0x1_0000_0000, end: 0x80_3fff_ffff, type: "usable"), MemoryRange(start: 0xfd_0000_0000, end: 0xff_ffff_ffff, type: "reserved"),
        ]
        boot.ramdisk = MemoryRange(start: 0x7f75_1000, end: 0x7fff_ffff)
        boot.reserved = [ReservedArea(sizeMiB: 4, base: 0x1_0000_0000, node: -1)]
        boot.memoryLine = "Memory: 1K/2K available (6144K kernel code, 855K rwdata, 852K rodata, 796K init, 380K bss, 1K reserved, 4096K cma-reserved)"
        boot.commandLine = "console=ttyS0 cma=4M"
        return Observations(profile: "tiny-area-512g", image: "cma-6.12", machine: MachineSpec(memory: .gib(512)), commandLine: "console=ttyS0 cma=4M",
                            accelerator: "tcg", ending: .poweredOff, boot: boot)
    }

    // MARK: - XML helpers

    static func parse(_ xml: String) throws -> XMLElement {
        let doc = try XMLDocument(xmlString: xml, options: [])
        return try #require(doc.rootElement())
    }

    static func all(_ e: XMLElement, _ name: String) -> [XMLElement] {
        var out: [XMLElement] = []
        for child in e.children ?? [] {
            guard let c = child as? XMLElement else { continue }
            if c.localName == name { out.append(c) }
            out += all(c, name)
        }
        return out
    }

    /// An attribute by name (FoundationXML's `attribute(forName:)` misses attributes of elements in a namespace).
    static func attr(_ e: XMLElement, _ name: String) -> String? {
        e.attributes?.first { $0.name == name || $0.localName == name }?.stringValue
    }
    static func num(_ e: XMLElement, _ name: String) -> Double { Double(attr(e, name) ?? "") ?? .nan }
    static func hexValue(_ s: String?) -> UInt64? { s.flatMap { $0.hasPrefix("0x") ? UInt64($0.dropFirst(2), radix: 16) : nil } }

    /// The rect of a region or mark with this kind (`data-kind`), in the picture.
    static func rects(_ svg: XMLElement, kind: String) -> [XMLElement] {
        all(svg, "rect").filter { attr($0, "data-kind") == kind }
    }

    /// The x of an axis tick label with this address.
    static func tickX(_ svg: XMLElement, _ address: UInt64) -> Double? {
        all(svg, "text").first { attr($0, "data-address") == hex(address) }.map { num($0, "x") }
    }

    // MARK: - Golden SVGs

    static let goldenCases: [(name: String, make: @Sendable () throws -> Observations)] = [
        ("seed-6.12-pc-4G", { try seed() }),
        ("crash-pc-4G-1G@3G-4G", { try crash() }),
        ("pc-64G-cma-2G", { try big() }),
        ("pc-512G-cma-4M", { tiny() }),
    ]

    /// Compares with Fixtures/memory-map-NAME.svg; `CMALAB_UPDATE_GOLDEN=1` rewrites the files in the source tree.
    static func checkGolden(_ name: String, _ svg: String, file: String = #filePath) throws {
        let fileName = "memory-map-\(name).svg"
        if ProcessInfo.processInfo.environment["CMALAB_UPDATE_GOLDEN"] == "1" {
            let dir = Path.directory(of: file) + "/Fixtures/"
            try svg.write(toFile: dir + fileName, atomically: true, encoding: .utf8)
            return
        }
        let golden = try Fixture.text(fileName)
        // Structure first (a real parse of both), then the exact text.
        let a = try parse(svg), b = try parse(golden)
        #expect(all(a, "rect").count == all(b, "rect").count, "\(fileName): rect count")
        #expect(all(a, "text").map(\.stringValue) == all(b, "text").map(\.stringValue), "\(fileName): texts")
        #expect(svg == golden, "\(fileName) differs; rerun with CMALAB_UPDATE_GOLDEN=1 and look at the change")
    }

    @Test(arguments: [0, 1, 2, 3])
    func svgMatchesGoldenAndIsWellFormed(_ i: Int) throws {
        let c = Self.goldenCases[i]
        let svg = MemoryMapSVG.svg(MemoryMapScene.build(try c.make()), idPrefix: "g")
        let root = try Self.parse(svg)
        #expect(root.localName == "svg")
        #expect(root.uri == "http://www.w3.org/2000/svg")
        try Self.checkInvariants(root, name: c.name)
        try Self.checkGolden(c.name, svg)
    }

    /// What every picture must satisfy: regions tile the address space in order, labels and tick labels do not
    /// overlap, every mark is at least 4 px wide, everything fits in the width.
    static func checkInvariants(_ svg: XMLElement, name: String) throws {
        let width = num(svg, "width")
        let regions = all(svg, "rect").filter { (attr($0, "class") ?? "").hasPrefix("region ") }
        #expect(!regions.isEmpty, "\(name): no regions")
        for (a, b) in zip(regions, regions.dropFirst()) {
            #expect(attr(a, "data-end") == attr(b, "data-start"), "\(name): regions must tile: \(attr(a, "data-end") ?? "") vs \(attr(b, "data-start") ?? "")")
            #expect(num(a, "x") < num(b, "x"), "\(name): regions in address order")
        }
        #expect(attr(regions[0], "data-start") == "0x0")
        for r in all(svg, "rect") where attr(r, "x") != nil {
            #expect(num(r, "x") >= 0 && num(r, "x") + num(r, "width") <= width + 0.1, "\(name): rect outside the picture")
        }
        for m in all(svg, "rect").filter({ (attr($0, "class") ?? "").hasPrefix("mark ") }) {
            #expect(num(m, "width") >= 4.9, "\(name): mark \(attr(m, "data-name") ?? "") is \(num(m, "width")) px wide")
        }
        // Mark labels: boxes from x, data-width and lane.
        let labels = all(svg, "text").filter { attr($0, "class") == "label" }
        for (i, a) in labels.enumerated() {
            #expect(num(a, "x") >= 0 && num(a, "x") + num(a, "data-width") <= width, "\(name): label outside")
            for b in labels[(i + 1)...] where attr(a, "data-lane") == attr(b, "data-lane") {
                let overlap = num(a, "x") < num(b, "x") + num(b, "data-width") && num(b, "x") < num(a, "x") + num(a, "data-width")
                #expect(!overlap, "\(name): labels \(a.stringValue ?? "") and \(b.stringValue ?? "") overlap")
            }
        }
        // Tick labels: centred at x, monospace width.
        let ticks = all(svg, "text").filter { attr($0, "class") == "tick" }
            .map { (x: num($0, "x"), w: Double(($0.stringValue ?? "").count) * MemoryMapSVG.charWidth) }
            .sorted { $0.x < $1.x }
        #expect(ticks.count >= 3, "\(name): too few axis labels")
        for (a, b) in zip(ticks, ticks.dropFirst()) {
            #expect(a.x + a.w / 2 < b.x - b.w / 2, "\(name): axis labels overlap at \(a.x) and \(b.x)")
        }
    }

    // MARK: - What the pictures show

    @Test func seedAreaIsDrawnBelowTwoGiBInsideTheRequestWindow() throws {
        let svg = try Self.parse(MemoryMapSVG.svg(MemoryMapScene.build(try Self.seed())))
        let area = try #require(Self.rects(svg, kind: "cma").first)
        #expect(Self.attr(area, "data-name") == "reserved")
        #expect(Self.attr(area, "data-start") == "0x3fc00000" && Self.attr(area, "data-end") == "0x7fc00000")
        let zero = try #require(Self.tickX(svg, 0)), twoG = try #require(Self.tickX(svg, 2 << 30))
        #expect(Self.num(area, "x") > zero && Self.num(area, "x") + Self.num(area, "width") <= twoG)
        // Inside the low usable range, which ends before the PCI hole starts.
        let usable = try #require(Self.rects(svg, kind: "usable").first { Self.attr($0, "data-start") == "0x100000" })
        #expect(Self.num(area, "x") >= Self.num(usable, "x") && Self.num(area, "x") + Self.num(area, "width") <= Self.num(usable, "x") + Self.num(usable, "width"))
        let hole = try #require(Self.rects(svg, kind: "pci-hole").first)
        #expect(Self.num(area, "x") + Self.num(area, "width") < Self.num(hole, "x"))
        // The request cma=1G@1-2G: the window [1, 2 GiB).
        let window = try #require(Self.all(svg, "g").first { Self.attr($0, "class") == "window requested" })
        #expect(Self.attr(window, "data-start") == "0x1" && Self.attr(window, "data-end") == "0x80000000")
        // The initrd and the kernel, labelled.
        let labels = Self.all(svg, "text").filter { Self.attr($0, "class") == "label" }.map { $0.stringValue ?? "" }
        #expect(labels.contains("CMA reserved1 GiB at 0x3fc00000"))
        #expect(labels.contains { $0.hasPrefix("initrd") && $0.hasSuffix("at 0x7fe1b000") })
        #expect(labels.contains { $0.hasPrefix("kernel≈") && $0.hasSuffix("at 0x1000000") })
        #expect(Self.rects(svg, kind: "cma-not-ram").isEmpty)
    }

    @Test func crashRegionIsDrawnOverTheHoleInTheWarningColour() throws {
        let scene = MemoryMapScene.build(try Self.crash())
        #expect(scene.crashed)
        let svg = try Self.parse(MemoryMapSVG.svg(scene, idPrefix: "c"))
        let bad = try #require(Self.rects(svg, kind: "cma-not-ram").first)
        #expect(Self.attr(bad, "data-start") == "0xc0000000" && Self.attr(bad, "data-end") == "0x100000000")
        #expect(Self.attr(bad, "fill") == "url(#c-warn)")
        let hole = try #require(Self.rects(svg, kind: "pci-hole").first)
        #expect(Self.attr(hole, "data-start") == "0xc0000000")
        // The region covers the hole, over both bands.
        #expect(Self.num(bad, "x") <= Self.num(hole, "x") + 0.1)
        #expect(Self.num(bad, "x") + Self.num(bad, "width") >= Self.num(hole, "x") + Self.num(hole, "width") - 0.1)
        #expect(Self.num(bad, "y") + Self.num(bad, "height") >= Self.num(hole, "y") + Self.num(hole, "height"))
        // The pattern it uses exists in the same picture.
        #expect(Self.all(svg, "pattern").contains { Self.attr($0, "id") == "c-warn" })
        let label = try #require(Self.all(svg, "text").first { Self.attr($0, "class") == "label" && ($0.stringValue ?? "").contains("NOT RAM") })
        #expect((label.stringValue ?? "").contains("boot crashed"))
        let window = try #require(Self.all(svg, "g").first { Self.attr($0, "class") == "window requested" })
        #expect(Self.attr(window, "data-start") == "0xc0000000" && Self.attr(window, "data-end") == "0x100000000")
        #expect((window.stringValue ?? "").contains("fixed"))
    }

    @Test func aFourMiBAreaInA512GiBGuestStaysVisibleAndLabelled() throws {
        let svg = try Self.parse(MemoryMapSVG.svg(MemoryMapScene.build(Self.tiny()), width: 1200))
        let area = try #require(Self.rects(svg, kind: "cma").first)
        #expect(Self.num(area, "width") >= 5)
        let high = try #require(Self.rects(svg, kind: "usable").first { Self.attr($0, "data-start") == "0x100000000" })
        #expect(abs(Self.num(area, "x") - Self.num(high, "x")) < 3, "drawn at the start of the high RAM")
        #expect(Self.all(svg, "text").contains { Self.attr($0, "class") == "label" && ($0.stringValue ?? "").contains("4 MiB at 0x100000000") })
        // The 1007 GiB of nothing between the end of RAM and the reserved range at 1012 GiB is a fixed break.
        let gap = try #require(Self.rects(svg, kind: "unmapped").first { Self.attr($0, "data-start") == "0x8040000000" })
        #expect(abs(Self.num(gap, "width") - MemoryMapScale.breakWidth) < 0.1)
        // Low memory keeps a readable share of the width although it is 0.6 % of the addresses.
        let low = try #require(Self.rects(svg, kind: "usable").first { Self.attr($0, "data-start") == "0x100000" })
        #expect(Self.num(low, "width") > 120)
    }

    @Test func predictedPlacementIsDrawnOnlyWhenGiven() throws {
        let o = try Self.seed()
        let without = try Self.parse(MemoryMapSVG.svg(MemoryMapScene.build(o)))
        #expect(!Self.all(without, "g").contains { Self.attr($0, "class") == "window predicted" })
        let predicted = MemoryRange(start: 0x3fc0_0000, end: 0x7fbf_ffff, type: "top-down below the initrd")
        let with = try Self.parse(MemoryMapSVG.svg(MemoryMapScene.build(o, predictedPlacement: predicted)))
        let g = try #require(Self.all(with, "g").first { Self.attr($0, "class") == "window predicted" })
        #expect(Self.attr(g, "data-start") == "0x3fc00000" && Self.attr(g, "data-end") == "0x7fc00000")
        #expect((g.stringValue ?? "").contains("predicted: 1 GiB at 0x3fc00000 (top-down below the initrd)"))
        // Through the page input too, by verdict key.
        var input = HTMLReportInput(title: "t", verdicts: [Verdict(profile: o.profile, image: o.image, kind: .pass, checks: [], observations: o)])
        input.predictedPlacement = ["\(o.profile)@\(o.image)": predicted]
        #expect(HTMLReport.page(input).contains("class=\"window predicted\""))
    }

    // MARK: - Scene

    @Test func sceneFromTheSeedConsole() throws {
        let scene = MemoryMapScene.build(try Self.seed())
        #expect(scene.regions.map(\.kind) == [.usable, .reserved, .unmapped, .reserved, .usable, .reserved, .pciHole, .reserved, .usable, .unmapped, .reserved])
        let hole = try #require(scene.regions.first { $0.kind == .pciHole })
        #expect(hole.start == 0xc000_0000 && hole.end == 0xfffc_0000)
        let kernel = try #require(scene.marks.first { $0.kind == .kernel })
        // 6144K + 855K + 852K + 796K + 380K from the Memory: line, at 16 MiB.
        #expect(kernel.start == 0x100_0000 && kernel.end == 0x100_0000 + 9027 * 1024 && kernel.approximate)
        let initrd = try #require(scene.marks.first { $0.kind == .initrd })
        #expect(initrd.start == 0x7fe1_b000 && initrd.end == 0x8000_0000)
        #expect(scene.requested == MemoryMapScene.Window(start: 1, end: 0x8000_0000, label: "cma=1G@1-2G: search window [0x1, 0x80000000)"))
        #expect(!scene.crashed)
    }

    @Test func kernelImageFollowsTheKernelConfig() throws {
        let o = try Self.seed()
        // CONFIG_PHYSICAL_START moves it; KASLR hides it, unless the command line says nokaslr.
        let moved = MemoryMapScene.build(o, kernelConfig: KernelConfig(parsing: "CONFIG_PHYSICAL_START=0x2000000\n# CONFIG_RELOCATABLE is not set\n"))
        #expect(moved.marks.first { $0.kind == .kernel }?.start == 0x200_0000)
        #expect(moved.notes.contains { $0.contains("CONFIG_PHYSICAL_START (0x2000000)") })
        let kaslr = KernelConfig(parsing: "CONFIG_PHYSICAL_START=0x1000000\nCONFIG_RELOCATABLE=y\nCONFIG_RANDOMIZE_BASE=y\n")
        let hidden = MemoryMapScene.build(o, kernelConfig: kaslr)
        #expect(!hidden.marks.contains { $0.kind == .kernel })
        #expect(hidden.notes.contains { $0.contains("KASLR") })
        var fixed = o
        fixed.boot.commandLine = (o.boot.commandLine ?? "") + " nokaslr"
        #expect(MemoryMapScene.build(fixed, kernelConfig: kaslr).marks.first { $0.kind == .kernel }?.start == 0x100_0000)
        // Through the page input, by run directory.
        var input = HTMLReportInput(title: "t", verdicts: [Verdict(profile: o.profile, image: o.image, kind: .pass, checks: [], observations: o, runDirectory: o.runDirectory)])
        #expect(HTMLReport.page(input).contains("data-kind=\"kernel\""))
        input.kernelConfigs = [o.runDirectory: kaslr]
        #expect(!HTMLReport.page(input).contains("data-kind=\"kernel\""))
    }

    @Test func q35MMCONFIGIsNamedAndNoE820MeansUnknown() {
        var boot = BootLogFacts()
        boot.e820 = [MemoryRange(start: 0x10_0000, end: 0x7ffd_efff, type: "usable"), MemoryRange(start: 0x7ffd_f000, end: 0x7fff_ffff, type: "reserved"),
                     MemoryRange(start: 0xb000_0000, end: 0xbfff_ffff, type: "reserved"), MemoryRange(start: 0xfed1_c000, end: 0xfed1_ffff, type: "reserved"),
                     MemoryRange(start: 0x1_0000_0000, end: 0x1_7fff_ffff, type: "usable")]
        boot.reserved = [ReservedArea(sizeMiB: 64, base: 0x1_0000_0000)]
        let o = Observations(profile: "q", image: "i", machine: MachineSpec(memory: .gib(4), type: .q35), commandLine: "cma=64M", accelerator: "tcg", ending: .poweredOff, boot: boot)
        let scene = MemoryMapScene.build(o)
        #expect(scene.regions.first { $0.start == 0xb000_0000 }?.kind == .mmconfig)
        #expect(scene.regions.first { $0.start == 0x8000_0000 }?.kind == .pciHole)
        #expect(scene.regions.first { $0.start == 0 }?.kind == .unmapped)
        #expect(scene.marks.first?.kind == .cma && scene.marks.first?.name == "area")
        #expect(scene.requested == nil, "cma=64M has no placement")

        var none = o
        none.boot.e820 = []
        let unknown = MemoryMapScene.build(none)
        #expect(unknown.regions == [MemoryMapScene.Region(start: 0, end: 5 << 30, kind: .unknown, label: "unknown")])
        #expect(unknown.marks.first?.kind == .cma, "without a map the area is not called not-RAM")
        #expect(unknown.notes.contains { $0.contains("no BIOS-e820") })
    }

    @Test func scaleIsMonotonicAndKeepsEveryRangeVisible() {
        let scene = MemoryMapScene.build(Self.tiny())
        let scale = MemoryMapScale(regions: scene.regions, from: 78, to: 1186)
        #expect(abs(scale.left - 78) < 0.001 && abs(scale.right - 1186) < 0.001)
        var last = -1.0
        for r in scene.regions {
            #expect(scale.x(r.start) >= last)
            #expect(scale.x(r.end) - scale.x(r.start) >= MemoryMapScale.minimumSegment - 0.001 || r.end <= 1 << 20)
            last = scale.x(r.start)
        }
        #expect(scale.x(UInt64.max) == scale.right && scale.x(0) == scale.left)
    }

    @Test func sizesAndAddresses() {
        #expect(MemoryMapSVG.size(1 << 30) == "1 GiB")
        #expect(MemoryMapSVG.size(0xc000_0000 - 0x10_0000) == "2.99 GiB")
        #expect(MemoryMapSVG.size(0xfffc_0000 - 0xc000_0000) == "1023.75 MiB")
        #expect(MemoryMapSVG.size(640 << 10) == "640 KiB")
        #expect(MemoryMapSVG.size(100) == "100 B")
        #expect(MemoryMapSVG.address(0) == "0" && MemoryMapSVG.address(4 << 30) == "4 GiB" && MemoryMapSVG.address(7 << 29) == "3.5 GiB")
        #expect(MemoryMapSVG.address(16 << 20) == "16 MiB" && MemoryMapSVG.address(0xbffe_0000) == "0xbffe0000")
        #expect(MemoryMapScene.kernelImageKiB("Memory: 2992628K/4193784K available (6144K kernel code, 855K rwdata, 852K rodata, 796K init, 380K bss, 151044K reserved, 1048576K cma-reserved)") == 9027)
        #expect(MemoryMapScene.kernelImageKiB("Memory: nothing") == nil)
        #expect(HTMLReport.relativePath(from: "/work/main", to: "/work/main/runs/x") == "runs/x")
        #expect(HTMLReport.relativePath(from: "/tmp/out", to: "/work/main/runs/x") == "../../work/main/runs/x")
        #expect(HTMLReport.relativePath(from: "/a/b", to: "/a/b") == ".")
        #expect(HTMLReport.href("runs/a b#1/console.log") == "runs/a%20b%231/console.log")
    }

    // MARK: - The page

    static func matrixVerdicts() throws -> [Verdict] {
        let seed = try Self.seed()
        var other = seed
        other.image = "cma-6.1"
        other.kernelRelease = "6.1.158"
        other.boot.reserved = [ReservedArea(sizeMiB: 1024, base: 0x3f40_0000)]
        other.areas[0].basePFN = 0x3f400
        var a = Verdict(profile: seed.profile, image: "cma-6.12", kind: .pass,
                        checks: [CheckResult(name: "outcome", expected: "reserved", observed: "reserved", passed: true)],
                        observations: seed, seconds: 3.4, runDirectory: seed.runDirectory)
        a.cellKey = CellKey(profile: "seed-1g-at-1-2g", image: "cma-6.12")
        var b = Verdict(profile: seed.profile, image: "cma-6.1", kind: .fail,
                        checks: [CheckResult(name: "base", expected: "0x3fc00000", observed: "0x3f400000", passed: false),
                                 CheckResult(name: "steps[1].free", expected: "success", observed: "skipped: no debugfs", passed: true, skipped: true)],
                        observations: other, seconds: 3.1, runDirectory: "runs/20261125-000001-seed")
        b.cellKey = CellKey(profile: "seed-1g-at-1-2g", image: "cma-6.1")
        let crash = try Self.crash()
        var c = Verdict(profile: crash.profile, image: "cma-6.12", kind: .pass, checks: [], observations: crash,
                        consoleTail: ["[    0.25] Kernel panic - not syncing: <&> \"x\""], seconds: 1.4, runDirectory: crash.runDirectory)
        c.cellKey = CellKey(profile: "crash-fixed-in-ram-hole", image: "cma-6.12")
        var d = Verdict(profile: "odd <name> & \"quotes\"", image: "cma-6.1", kind: .error, checks: [], error: "qemu-system-x86_64 not found")
        d.cellKey = CellKey(profile: "odd", image: "cma-6.1", memory: .gib(8))
        return [a, b, c, d]
    }

    static func page() throws -> String {
        var input = HTMLReportInput(title: "cmalab matrix test <&>", verdicts: try matrixVerdicts(),
                                    meta: ReportMeta(cmalabVersion: "0.1.0", started: "2026-11-25T08:19:57Z", host: "h", accelerator: "tcg"))
        input.runDirectoryHref = ["runs/20261125-000000-seed-1g-at-1-2g": "../runs/20261125-000000-seed-1g-at-1-2g"]
        input.artifactFiles = ["runs/20261125-000000-seed-1g-at-1-2g": ["console.log", "dmesg.txt", "observations.json", "meminfo-boot.txt"]]
        return HTMLReport.page(input)
    }

    @Test func pageIsWellFormedSelfContainedXHTML() throws {
        let html = try Self.page()
        #expect(html.hasPrefix("<!DOCTYPE html>\n"))
        let root = try Self.parse(html)
        #expect(root.localName == "html" && root.uri == "http://www.w3.org/1999/xhtml")
        #expect(Self.all(root, "head").count == 1 && Self.all(root, "body").count == 1)
        #expect(Self.all(root, "title").first?.stringValue == "cmalab matrix test <&>")
        // No script, nothing loaded from elsewhere: every link is to an anchor or a relative file.
        #expect(Self.all(root, "script").isEmpty && Self.all(root, "link").isEmpty && Self.all(root, "img").isEmpty)
        var ids: [String] = []
        func collect(_ e: XMLElement) {
            if let id = Self.attr(e, "id") { ids.append(id) }
            for c in e.children ?? [] { if let c = c as? XMLElement { collect(c) } }
        }
        collect(root)
        #expect(Set(ids).count == ids.count, "duplicate ids: \(ids)")
        for a in Self.all(root, "a") {
            let href = try #require(Self.attr(a, "href"))
            #expect(!href.contains("://"), "external link \(href)")
            if href.hasPrefix("#") { #expect(ids.contains(String(href.dropFirst())), "dangling \(href)") }
        }
        #expect(!html.contains("src="))
        // One memory map per run with observations, each with its own pattern ids.
        let maps = Self.all(root, "svg").filter { Self.attr($0, "class") == "memory-map" }
        #expect(maps.count == 3)
        // The odd name is escaped, not markup.
        #expect(html.contains("odd &lt;name&gt; &amp; &quot;quotes&quot;"))
    }

    @Test func pageShowsChecksMeminfoOccupancyDmesgAndArtifacts() throws {
        let root = try Self.parse(try Self.page())
        let sections = Self.all(root, "section").filter { (Self.attr($0, "class") ?? "").hasPrefix("run ") }
        #expect(sections.count == 4)
        let seed = sections[0]
        // The checks table: one row per check, with expected and observed.
        let checkRows = Self.all(seed, "table").first { Self.attr($0, "class") == "checks" }.map { Self.all($0, "tr") } ?? []
        #expect(checkRows.count == 2)
        #expect(checkRows.last.map { Self.all($0, "td").map { $0.stringValue ?? "" } } == ["outcome", "pass", "reserved", "reserved"])
        // Meminfo: boot, step 0 before/after, end; the bar after the alloc is 39.06 % used.
        let meminfoRows = Self.all(seed, "table").first { Self.attr($0, "class") == "meminfo" }.map { Self.all($0, "tr").dropFirst() } ?? []
        #expect(meminfoRows.map { Self.all($0, "td").first?.stringValue ?? "" } == ["boot", "step0-alloc-before", "step0-alloc-after", "end"])
        let used = Self.all(seed, "span").filter { Self.attr($0, "class") == "used" }.map { Self.attr($0, "style") ?? "" }
        #expect(used.contains("width: 39.06%"))
        // Occupancy strip after the alloc: used 102400 of 262144 pages, largest free chunk 159744.
        let strips = Self.all(seed, "svg").filter { Self.attr($0, "class") == "strip" }
        #expect(strips.count == 2)
        let after = try #require(strips.last)
        let usedRect = try #require(Self.all(after, "rect").first { Self.attr($0, "class") == "used" })
        let chunk = try #require(Self.all(after, "rect").first { Self.attr($0, "class") == "maxchunk" })
        #expect(abs(Self.num(usedRect, "width") - 420 * 102_400 / 262_144) < 0.1)
        #expect(abs(Self.num(chunk, "width") - 420 * 159_744 / 262_144) < 0.1)
        // The CMA dmesg lines, and artifact links relative to the page.
        #expect(Self.all(seed, "pre").first { Self.attr($0, "class") == "dmesg" }?.stringValue?.contains("cma: Reserved 1024 MiB at 0x000000003fc00000") == true)
        let links = Self.all(seed, "a").compactMap { Self.attr($0, "href") }
        #expect(links.contains("../runs/20261125-000000-seed-1g-at-1-2g/console.log"))
        #expect(links.contains("../runs/20261125-000000-seed-1g-at-1-2g/meminfo-boot.txt"))
        // The failing run marks its failed check, and the skipped one as skipped.
        let failRows = Self.all(sections[1], "tr").filter { Self.attr($0, "class") == "fail" || Self.attr($0, "class") == "skip" }
        #expect(failRows.map { Self.attr($0, "class") ?? "" } == ["fail", "skip"])
        // Without a listing, the usual artifact names are linked under the run directory as it is.
        #expect(Self.all(sections[1], "a").compactMap { Self.attr($0, "href") }.contains("runs/20261125-000001-seed/dmesg.txt"))
        // The crash run: the crash box and the console tail.
        #expect(Self.all(sections[2], "p").contains { Self.attr($0, "class") == "crash-box" && ($0.stringValue ?? "").contains("Attempted to kill init") })
        #expect(Self.all(sections[2], "pre").contains { ($0.stringValue ?? "").contains("<&> \"x\"") })
        // The error without observations: its error, no picture.
        #expect(Self.all(sections[3], "p").contains { Self.attr($0, "class") == "error-box" })
        #expect(Self.all(sections[3], "svg").isEmpty)
    }

    @Test func matrixGridLinksEveryCellAndShowsImageDifferences() throws {
        let root = try Self.parse(try Self.page())
        let grid = try #require(Self.all(root, "table").first { Self.attr($0, "class") == "grid" })
        let header = Self.all(grid, "th").prefix(3).map { $0.stringValue ?? "" }
        #expect(header == ["profile", "cma-6.12", "cma-6.1"])
        let rows = Self.all(grid, "tr").dropFirst().map { Self.all($0, "td").map { Self.attr($0, "class") ?? "" } }
        #expect(rows == [["pass", "fail"], ["pass", "none"], ["none", "error"]])
        // Each verdict cell links to its run section.
        let sections = Set(Self.all(root, "section").compactMap { Self.attr($0, "id") })
        let cellLinks = Self.all(grid, "a").compactMap { Self.attr($0, "href") }.filter { $0.hasPrefix("#run-") }
        #expect(cellLinks.count == 4 && cellLinks.allSatisfy { sections.contains(String($0.dropFirst())) })
        // cma-6.1 placed the area elsewhere: the difference is shown, and the grid cell says so.
        let delta = try #require(Self.all(grid, "a").first { Self.attr($0, "class") == "delta" })
        #expect(delta.stringValue?.hasPrefix("Δ") == true)
        let diff = try #require(Self.all(root, "table").first { Self.attr($0, "class") == "diff" })
        #expect(Self.attr(delta, "href") == "#" + (Self.attr(diff, "id") ?? "?"))
        let changes = Self.all(diff, "tr").dropFirst().map { Self.all($0, "td").map { $0.stringValue ?? "" } }
        #expect(changes.contains(["area reserved base", "0x3fc00000", "0x3f400000"]))
        #expect(changes.contains(["kernel release", "6.12.117", "6.1.158"]))
    }

    @Test func runPageWithOneImageHasNoDifferencesSection() throws {
        let o = try Self.seed()
        let page = HTMLReport.page(HTMLReportInput(title: "run", verdicts: [Verdict(profile: o.profile, image: o.image, kind: .pass, checks: [], observations: o)]))
        let root = try Self.parse(page)
        #expect(!Self.all(root, "section").contains { Self.attr($0, "class") == "diffs" })
        #expect(Self.all(root, "table").first { Self.attr($0, "class") == "grid" }.map { Self.all($0, "td").count } == 1)
    }

    /// A guest can print any `cma: Reserved` line to /dev/kmsg and any base_pfn to debugfs: ranges whose end passes
    /// 2^64 are left out of the picture with a note, never a trap (with and without an e820 map).
    @Test func rangesPastTheAddressSpaceAreNotedNotTrapped() async {
        await #expect(processExitsWith: .success) {
            for withE820 in [true, false] {
                var o = try! HTMLReportTests.seed()
                if !withE820 { o.boot.e820 = [] }
                o.boot.reserved = [ReservedArea(sizeMiB: 1, base: 0xffff_ffff_fff0_0000)]
                o.areas = [AreaSnapshot(name: "huge", basePFN: UInt64.max, count: 1, used: nil, maxchunk: nil, orderPerBit: 0, sysfs: [:])]
                let page = HTMLReport.page(HTMLReportInput(title: "t", verdicts: [Verdict(profile: o.profile, image: o.image, kind: .pass, checks: [], observations: o)]))
                precondition(page.contains("CMA area area at 0xfffffffffff00000 (1 MiB) is outside the 64-bit address space: not drawn."))
                precondition(page.contains("CMA area huge at page frame 0xffffffffffffffff (1 pages) is outside the 64-bit address space: not drawn."))
            }
        }
    }

    /// A results file can name any `runDirectory`: without a link computed by the page writer it is linked only as a
    /// plain relative path (no scheme, no `..`, not absolute), and meminfo labels never make links of their own.
    @Test func craftedRunDirectoriesAreNotLinked() throws {
        var o = try Self.seed()
        o.meminfo[0].label = "x/../../../etc/passwd"
        let verdicts = ["javascript:alert(1)", "/etc", "runs/../../etc", "ok/run"].map {
            Verdict(profile: "p" + $0, image: o.image, kind: .pass, checks: [], observations: o, runDirectory: $0)
        }
        let page = HTMLReport.page(HTMLReportInput(title: "t", verdicts: verdicts))
        #expect(!page.contains("href=\"javascript:"))
        #expect(!page.contains("href=\"/etc"))
        #expect(!page.contains("href=\"runs/../"))
        #expect(!page.contains("etc/passwd.txt\""))
        #expect(page.contains("href=\"ok/run/console.log\""))
    }

    /// A character XML cannot hold (U+FFFE) is dropped from the page's text; inside a link it would turn a component
    /// `.\u{FFFE}.`, which is not `..`, into `..` after the check. Links percent-encode it instead (found by cmalab-fuzz
    /// with the corpus file results-hostile-links).
    @Test func charactersThePageCannotHoldDoNotHideAClimbInALink() throws {
        let o = try Self.seed()
        let name = "ok/.\u{FFFE}./.\u{FFFE}./etc"
        let page = HTMLReport.page(HTMLReportInput(title: "t", verdicts: [Verdict(profile: "p", image: o.image, kind: .pass, checks: [], observations: o,
                                                                                  runDirectory: name)]))
        #expect(!page.contains("href=\"ok/../"), "a climb in a link")
        #expect(page.contains("href=\"ok/.%EF%BF%BE./.%EF%BF%BE./etc/console.log\""))
    }

    /// html5lib's strict parser raises on any HTML5 parse error (what a validator would flag in the syntax).
    @Test(.enabled(if: HTMLReportTests.html5libAvailable, "needs Python's html5lib (Scripts/setup-host installs it)"))
    func pageHasNoHTML5ParseErrors() throws {
        let dir = NSTemporaryDirectory() + "cmalab-html-\(UUID().uuidString)"
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: dir) }
        try Self.page().write(toFile: dir + "/page.html", atomically: true, encoding: .utf8)
        // A broken page must fail the same check, so the check is known to bite.
        try "<!DOCTYPE html><html><body><p>x</div></body></html>".write(toFile: dir + "/bad.html", atomically: true, encoding: .utf8)
        let script = """
            import sys, html5lib
            for f in sys.argv[1:]:
                try:
                    html5lib.HTMLParser(strict=True, namespaceHTMLElements=False).parse(open(f, encoding="utf-8").read())
                    print(f.rsplit("/", 1)[-1], "ok")
                except html5lib.html5parser.ParseError as e:
                    print(f.rsplit("/", 1)[-1], "error", e)
            """
        let out = try Self.python(script, dir + "/page.html", dir + "/bad.html")
        let lines = out.split(separator: "\n").map(String.init)
        #expect(lines.first == "page.html ok", "\(out)")
        #expect(lines.last?.hasPrefix("bad.html error") == true, "\(out)")
    }

    static var html5libAvailable: Bool { (try? python("import html5lib")) != nil }

    static func python(_ script: String, _ args: String...) throws -> String {
        let p = Process()
        p.executableURL = URL(fileURLWithPath: "/usr/bin/env")
        p.arguments = ["python3", "-c", script] + args
        let pipe = Pipe()
        p.standardOutput = pipe
        p.standardError = FileHandle.nullDevice
        try p.run()
        let data = pipe.fileHandleForReading.readDataToEndOfFile()
        p.waitUntilExit()
        guard p.terminationStatus == 0 else { throw PythonFailed(status: p.terminationStatus) }
        return String(decoding: data, as: UTF8.self)
    }
}

struct PythonFailed: Error { var status: Int32 }
