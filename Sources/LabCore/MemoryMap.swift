import Foundation

/// The picture of a guest's physical address space for the HTML report. Pure: `MemoryMapScene.build` turns a
/// run's observations into what to draw (e820 ranges, holes, the kernel, the initrd, CMA areas, the `cma=`
/// window, an optional predicted placement); `MemoryMapSVG.svg` lays it out on a piecewise scale and returns an
/// inline SVG. See docs/html-report.md for how the scale reads.

/// What one memory picture shows. Addresses are bytes; every `end` is exclusive.
public struct MemoryMapScene: Equatable, Sendable {
    public enum RegionKind: String, Sendable, Equatable {
        /// e820 `usable`.
        case usable
        /// e820 `reserved` (firmware, BIOS).
        case reserved
        /// Other e820 types (`ACPI data`, `ACPI NVS`, `unusable`, ...).
        case firmware
        /// The 32-bit MMIO window below 4 GiB that no e820 entry covers (the PCI hole).
        case pciHole = "pci-hole"
        /// A large e820 `reserved` range inside the 32-bit hole: q35's PCIe MMCONFIG (ECAM).
        case mmconfig
        /// Addresses no e820 entry covers, outside the PCI hole (below 1 MiB: VGA and ROMs; above 4 GiB: nothing).
        case unmapped
        /// The boot log had no e820 map: the type of memory is not known.
        case unknown
    }

    public struct Region: Equatable, Sendable {
        public var start: UInt64
        public var end: UInt64
        public var kind: RegionKind
        /// The e820 type as printed (`usable`, `ACPI NVS`) or a name for a hole.
        public var label: String
        public init(start: UInt64, end: UInt64, kind: RegionKind, label: String) {
            self.start = start; self.end = end; self.kind = kind; self.label = label
        }
    }

    public enum MarkKind: String, Sendable, Equatable {
        case kernel
        case initrd
        /// A CMA area inside usable RAM.
        case cma
        /// A CMA area that is not (wholly) inside usable e820 RAM: the kernel trusted a fixed region over a hole.
        case cmaNotRAM = "cma-not-ram"
    }

    /// Something placed in memory.
    public struct Mark: Equatable, Sendable {
        public var start: UInt64
        public var end: UInt64
        public var kind: MarkKind
        /// `reserved` (the CMA area name), `kernel`, `initrd`.
        public var name: String
        /// `1 GiB at 0x3f400000`.
        public var detail: String
        /// True when the range is derived rather than observed (the kernel image).
        public var approximate: Bool
        public init(start: UInt64, end: UInt64, kind: MarkKind, name: String, detail: String, approximate: Bool = false) {
            self.start = start; self.end = end; self.kind = kind; self.name = name; self.detail = detail; self.approximate = approximate
        }
    }

    /// An address window drawn as a bracket under the map: the `cma=` request, or a predicted placement.
    public struct Window: Equatable, Sendable {
        public var start: UInt64
        public var end: UInt64
        public var label: String
        public init(start: UInt64, end: UInt64, label: String) { self.start = start; self.end = end; self.label = label }
    }

    /// A partition of [0, end of the picture), in address order.
    public var regions: [Region] = []
    public var marks: [Mark] = []
    /// The `[base, limit)` of a `cma=SIZE@BASE[-LIMIT]` request; nil without `@`.
    public var requested: Window?
    /// The oracle's predicted placement, when one was given.
    public var predicted: Window?
    /// The boot crashed (a panic or oops on the console).
    public var crashed = false
    /// Sentences for the reader (no e820 map, a failed reservation, where the kernel image is assumed).
    public var notes: [String] = []
    /// The picture's title (for screen readers and the SVG `<title>`).
    public var title = "guest physical memory"

    public init() {}

    /// Where x86_64 loads the kernel by default (`CONFIG_PHYSICAL_START`, with KASLR off).
    public static let kernelLoadAddress: UInt64 = 0x100_0000

    /// The scene of one run. `predictedPlacement` is the oracle's expected area (inclusive end, as `MemoryRange`),
    /// drawn as "predicted" when given. `kernelConfig` (the run's `config`) says where the kernel image is: at
    /// `CONFIG_PHYSICAL_START`, or nowhere known with KASLR; without it the image is assumed at 16 MiB.
    public static func build(_ o: Observations, predictedPlacement: MemoryRange? = nil, kernelConfig: KernelConfig? = nil) -> MemoryMapScene {
        var scene = MemoryMapScene()
        scene.title = "guest physical memory of \(o.profile) on \(o.image) (\(o.machine))"
        scene.crashed = o.ending == "kernel-crash" || o.crash != nil
        let boot = o.boot

        // Marks first: they can extend the picture beyond the e820 map (a fixed region past the end of RAM).
        if let sizes = kernelImageKiB(boot.memoryLine) {
            let sizeNote = "sized as the sum of the Memory: line's code, rwdata, rodata, init and bss (\(sizes)K; section padding is not counted)"
            let kaslr = kernelConfig.map { $0.isEnabled("RANDOMIZE_BASE") } == true
                && !KernelCommandLine(parsing: boot.commandLine ?? o.commandLine).contains("nokaslr")
            if kaslr {
                scene.notes.append("The kernel image is not drawn: this kernel has CONFIG_RANDOMIZE_BASE=y (KASLR), so its physical address is random.")
            } else {
                let configured = kernelConfig?["PHYSICAL_START"].flatMap { try? ByteSize.parse($0).bytes }
                let start = configured ?? kernelLoadAddress
                scene.marks.append(Mark(start: start, end: start + sizes << 10, kind: .kernel, name: "kernel",
                                        detail: "≈\(MemoryMapSVG.size(sizes << 10)) at \(MemoryMapSVG.hex(start))", approximate: true))
                scene.notes.append(configured != nil
                    ? "The kernel image is drawn at CONFIG_PHYSICAL_START (\(MemoryMapSVG.hex(start))) from the kernel config, \(sizeNote)."
                    : "The kernel image is drawn at \(MemoryMapSVG.hex(start)) (16 MiB, the x86_64 default load address, assuming KASLR is off), \(sizeNote).")
            }
        }
        if let rd = boot.ramdisk {
            scene.marks.append(Mark(start: rd.start, end: exclusiveEnd(rd.end), kind: .initrd, name: "initrd",
                                    detail: "\(MemoryMapSVG.size(rd.size)) at \(MemoryMapSVG.hex(rd.start))"))
        }
        for area in cmaAreas(o) {
            scene.marks.append(Mark(start: area.start, end: area.end, kind: .cma, name: area.name,
                                    detail: "\(MemoryMapSVG.size(area.end - area.start)) at \(MemoryMapSVG.hex(area.start))"))
        }

        // Regions: the e820 map with its gaps named.
        var maxEnd = scene.marks.map(\.end).max() ?? 0
        if let request = requestWindow(o) {
            scene.requested = request
            if request.end != UInt64.max { maxEnd = max(maxEnd, request.end) }
        }
        if let p = predictedPlacement {
            scene.predicted = Window(start: p.start, end: exclusiveEnd(p.end),
                                     label: "predicted: \(MemoryMapSVG.size(p.size)) at \(MemoryMapSVG.hex(p.start))" + (p.type.isEmpty ? "" : " (\(p.type))"))
            maxEnd = max(maxEnd, exclusiveEnd(p.end))
        }
        if boot.e820.isEmpty {
            let memory = machineMemory(o.machine) ?? 0
            let top = roundUp(max(maxEnd, memory, 1 << 20), to: 1 << 30)
            scene.regions = [Region(start: 0, end: top, kind: .unknown, label: "unknown")]
            scene.notes.append("The boot log has no BIOS-e820 lines, so which addresses are RAM is not known.")
        } else {
            scene.regions = regions(fromE820: boot.e820, upTo: maxEnd)
        }
        // A request without a limit (`-0`) searches up to the end of memory.
        if let r = scene.requested, r.end == UInt64.max { scene.requested?.end = scene.regions.last?.end ?? r.start }

        // CMA areas that are not wholly inside usable RAM.
        if !boot.e820.isEmpty {
            let usable = scene.regions.filter { $0.kind == .usable }
            for i in scene.marks.indices where scene.marks[i].kind == .cma {
                if !covered(scene.marks[i].start, scene.marks[i].end, by: usable) {
                    scene.marks[i].kind = .cmaNotRAM
                    scene.marks[i].detail += scene.crashed ? " · not RAM · boot crashed" : " · not RAM"
                }
            }
        }
        if !boot.failedMiB.isEmpty {
            let why = boot.failureReasons.isEmpty ? "" : ": " + boot.failureReasons.joined(separator: "; ")
            scene.notes.append("The kernel failed to reserve " + boot.failedMiB.map { "\($0) MiB" }.joined(separator: ", ") + why + ".")
        }
        return scene
    }

    /// The sum of the `Memory:` line's kernel code, rwdata, rodata, init and bss, in KiB.
    static func kernelImageKiB(_ line: String?) -> UInt64? {
        guard let line, let open = line.firstIndex(of: "("), let close = line.lastIndex(of: ")"), open < close else { return nil }
        let wanted: Set<String> = ["kernel code", "rwdata", "rodata", "init", "bss"]
        var sum: UInt64 = 0
        var found = 0
        for field in line[line.index(after: open)..<close].split(separator: ",") {
            let text = field.trimmingCharacters(in: " ")
            guard let space = text.firstIndex(of: " "), text[..<space].hasSuffix("K"),
                  let kib = UInt64(text[..<space].dropLast()) else { continue }
            if wanted.contains(String(text[text.index(after: space)...])) { sum += kib; found += 1 }
        }
        return found > 0 && sum > 0 ? sum : nil
    }

    /// The CMA areas: the boot log's `Reserved` lines, named from debugfs by base, plus debugfs areas the log did not show.
    static func cmaAreas(_ o: Observations) -> [(name: String, start: UInt64, end: UInt64)] {
        var out: [(name: String, start: UInt64, end: UInt64)] = []
        var named = Set<String>()
        for (i, r) in o.boot.reserved.enumerated() {
            let match = o.areas.first { $0.basePFN.map { $0 &* 4096 } == r.base && !named.contains($0.name) }
            let name = match?.name ?? (o.boot.reserved.count == 1 ? "area" : "area \(i + 1)")
            if let match { named.insert(match.name) }
            out.append((name, r.base, r.base &+ r.sizeMiB << 20))
        }
        for a in o.areas where !named.contains(a.name) {
            guard let pfn = a.basePFN, let count = a.count, count > 0 else { continue }
            out.append((a.name, pfn &* 4096, (pfn &+ count) &* 4096))
        }
        return out
    }

    /// The `cma=` request's window: `[base, limit)` for `@base[-limit]` (a limit of 0 means "no limit").
    static func requestWindow(_ o: Observations) -> Window? {
        let line = KernelCommandLine(parsing: o.boot.commandLine ?? o.commandLine)
        guard let value = line.value(of: "cma"), let req = try? CMARequest.parse(value), let base = req.base, req.size > 0 else { return nil }
        let limit = req.limit ?? 0
        let end = limit == 0 ? UInt64.max : limit
        let what = req.isFixed ? "fixed" : "search window"
        let endText = limit == 0 ? "end of memory" : MemoryMapSVG.hex(limit)
        return Window(start: base, end: max(end, base), label: "cma=\(value): \(what) [\(MemoryMapSVG.hex(base)), \(endText))")
    }

    /// `pc, 4G, 1 CPU` → 4 GiB.
    static func machineMemory(_ machine: String) -> UInt64? {
        for part in machine.split(separator: ",") {
            if let size = try? ByteSize.parse(part.trimmingCharacters(in: " ")) { return size.bytes }
        }
        return nil
    }

    /// Sorted, non-overlapping regions from e820 (inclusive ends), with the gaps between them named.
    static func regions(fromE820 e820: [MemoryRange], upTo minimumEnd: UInt64) -> [Region] {
        var out: [Region] = []
        var cursor: UInt64 = 0
        func gap(_ start: UInt64, _ end: UInt64) {
            guard end > start else { return }
            let fourG: UInt64 = 1 << 32
            if start >= 1 << 20 && end <= fourG {
                out.append(Region(start: start, end: end, kind: .pciHole, label: "PCI hole"))
            } else if start < fourG && end > fourG && start >= 1 << 20 {
                out.append(Region(start: start, end: fourG, kind: .pciHole, label: "PCI hole"))
                out.append(Region(start: fourG, end: end, kind: .unmapped, label: "no RAM"))
            } else {
                out.append(Region(start: start, end: end, kind: .unmapped, label: end <= 1 << 20 ? "VGA, ROMs" : "no RAM"))
            }
        }
        for r in e820.sorted(by: { $0.start < $1.start }) {
            let start = max(r.start, cursor)
            let end = exclusiveEnd(r.end)
            guard end > start else { continue }
            gap(cursor, start)
            out.append(Region(start: start, end: end, kind: kind(of: r.type, start: start, end: end), label: r.type.isEmpty ? "?" : r.type))
            cursor = end
        }
        if minimumEnd > cursor { gap(cursor, minimumEnd) }
        return out
    }

    static func kind(of type: String, start: UInt64, end: UInt64) -> RegionKind {
        switch type {
        case "usable": return .usable
        case "reserved":
            let inHole = start >= 1 << 31 && end <= 1 << 32
            return inHole && end - start >= 64 << 20 ? .mmconfig : .reserved
        default: return .firmware
        }
    }

    static func exclusiveEnd(_ inclusive: UInt64) -> UInt64 { inclusive == UInt64.max ? UInt64.max : inclusive + 1 }

    static func roundUp(_ x: UInt64, to unit: UInt64) -> UInt64 { x % unit == 0 ? x : (x / unit + 1) * unit }

    static func covered(_ start: UInt64, _ end: UInt64, by regions: [Region]) -> Bool {
        var at = start
        for r in regions.sorted(by: { $0.start < $1.start }) where r.end > at {
            if r.start > at { return false }
            at = r.end
            if at >= end { return true }
        }
        return at >= end
    }
}

/// The piecewise scale of a memory picture: each region (the first MiB taken as one) is a segment whose width
/// grows with its size to the power 0.35, with a minimum so that every range stays visible;
/// empty address space above 4 GiB is a fixed-width break. Inside a segment the scale is linear.
public struct MemoryMapScale: Equatable, Sendable {
    public struct Segment: Equatable, Sendable {
        public var start: UInt64
        public var end: UInt64
        public var x0: Double
        public var x1: Double
        /// A compressed stretch of empty address space, drawn as a break.
        public var isBreak: Bool
    }
    public var segments: [Segment]

    public static let minimumSegment = 8.0
    public static let breakWidth = 44.0
    public static let lowMemoryWidth = 14.0

    public init(regions: [MemoryMapScene.Region], from left: Double, to right: Double) {
        // Group: everything below 1 MiB is one segment; each other region is its own.
        var groups: [(start: UInt64, end: UInt64, fixed: Double?, weight: Double, isBreak: Bool)] = []
        for r in regions {
            if r.end <= 1 << 20, let last = groups.last, last.end <= 1 << 20, last.end == r.start {
                groups[groups.count - 1].end = r.end
                continue
            }
            let mib = Double(r.end - r.start) / 1_048_576
            switch r.kind {
            case _ where r.end <= 1 << 20:
                groups.append((r.start, r.end, Self.lowMemoryWidth, 0, false))
            case .unmapped where r.start >= 1 << 32 && r.end - r.start > 1 << 30:
                groups.append((r.start, r.end, Self.breakWidth, 0, true))
            case .reserved, .firmware, .unmapped:
                groups.append((r.start, r.end, nil, Self.weight(min(mib, 256)), false))
            default:
                groups.append((r.start, r.end, nil, Self.weight(mib), false))
            }
        }
        let fixed = groups.reduce(0.0) { $0 + ($1.fixed ?? Self.minimumSegment) }
        let weights = groups.reduce(0.0) { $0 + $1.weight }
        let spare = max(0, right - left - fixed)
        var x = left
        segments = groups.map { g in
            let w = g.fixed ?? (Self.minimumSegment + (weights > 0 ? spare * g.weight / weights : 0))
            defer { x += w }
            return Segment(start: g.start, end: g.end, x0: x, x1: x + w, isBreak: g.isBreak)
        }
        if weights == 0, let last = segments.indices.last { segments[last].x1 = right }
    }

    static func weight(_ mib: Double) -> Double { mib <= 0 ? 0 : pow(mib, 0.35) }

    /// The x of an address (clamped to the picture).
    public func x(_ address: UInt64) -> Double {
        guard let first = segments.first, let last = segments.last else { return 0 }
        if address <= first.start { return first.x0 }
        if address >= last.end { return last.x1 }
        var lo = 0, hi = segments.count - 1
        while lo < hi {
            let mid = (lo + hi) / 2
            if segments[mid].end <= address { lo = mid + 1 } else { hi = mid }
        }
        let s = segments[lo]
        let f = Double(address - s.start) / Double(s.end - s.start)
        return s.x0 + f * (s.x1 - s.x0)
    }

    public var left: Double { segments.first?.x0 ?? 0 }
    public var right: Double { segments.last?.x1 ?? 0 }
}

/// Renders a `MemoryMapScene` as inline SVG.
public enum MemoryMapSVG {
    /// Pixel width of one character of the SVG's 11 px monospace font (DejaVu Sans Mono: 0.602 em), rounded up.
    static let charWidth = 6.8
    static let font = "font-family=\"DejaVu Sans Mono, Menlo, Consolas, monospace\" font-size=\"11\""

    enum Colors {
        static func region(_ k: MemoryMapScene.RegionKind) -> String {
            switch k {
            case .usable: "#9fd49f"
            case .reserved: "#a6a6a6"
            case .firmware: "#d9c27a"
            case .pciHole: "#f2f2f2"
            case .mmconfig: "#8797b0"
            case .unmapped: "#ffffff"
            case .unknown: "#e4e4e4"
            }
        }
        static func mark(_ k: MemoryMapScene.MarkKind) -> String {
            switch k {
            case .kernel: "#2f6fbf"
            case .initrd: "#8a4fc7"
            case .cma: "#e07b00"
            case .cmaNotRAM: "#d1001f"
            }
        }
        static let requested = "#0b6e99"
        static let predicted = "#6b3fa0"
    }

    /// The SVG of a scene, `width` px wide (the height follows from the content). `idPrefix` keeps the ids of the
    /// patterns unique when several pictures share a page.
    public static func svg(_ scene: MemoryMapScene, width: Int = 1200, idPrefix: String = "mm") -> String {
        let W = Double(width)
        let gutter = 78.0
        let mapLeft = gutter, mapRight = W - 14
        let scale = MemoryMapScale(regions: scene.regions, from: mapLeft, to: mapRight)
        let p = idPrefix

        // Label lanes above the bars.
        let placed = scene.marks.map { m -> (mark: MemoryMapScene.Mark, x0: Double, x1: Double) in
            var x0 = scale.x(m.start), x1 = scale.x(m.end)
            let minimum = 5.0
            if x1 - x0 < minimum {
                let c = (x0 + x1) / 2
                x0 = max(mapLeft, min(c - minimum / 2, mapRight - minimum)); x1 = x0 + minimum
            }
            return (m, x0, x1)
        }
        let labels = layOutLabels(placed.map { ($0.mark, ($0.x0 + $0.x1) / 2) }, from: mapLeft, to: mapRight)
        let laneHeight = 30.0
        let lanes = (labels.map(\.lane).max() ?? -1) + 1
        let top = 6.0
        let contentsY = top + Double(lanes) * laneHeight + (lanes > 0 ? 6 : 0)
        let contentsH = 26.0
        let e820Y = contentsY + contentsH + 2
        let e820H = 28.0
        var y = e820Y + e820H + 6
        let requestedY: Double? = scene.requested.map { _ in defer { y += 30 }; return y }
        let predictedY: Double? = scene.predicted.map { _ in defer { y += 30 }; return y }
        let axisY = y + 2
        let legendY = axisY + 30
        let legend = legendItems(scene, idPrefix: p)
        let legendRows = layOutLegend(legend, from: mapLeft, to: mapRight)
        let height = legendY + Double((legendRows.map(\.row).max() ?? 0) + 1) * 18 + 4

        var s = "<svg xmlns=\"http://www.w3.org/2000/svg\" class=\"memory-map\" width=\"\(width)\" height=\"\(n(height))\" "
        s += "viewBox=\"0 0 \(width) \(n(height))\" role=\"img\" aria-label=\"\(Report.attr(scene.title))\">\n"
        s += "<title>\(Report.text(scene.title))</title>\n"
        s += "<defs>\n"
        s += "<pattern id=\"\(p)-hole\" width=\"6\" height=\"6\" patternUnits=\"userSpaceOnUse\" patternTransform=\"rotate(45)\">"
        s += "<rect width=\"6\" height=\"6\" fill=\"#f2f2f2\"/><line x1=\"0\" y1=\"0\" x2=\"0\" y2=\"6\" stroke=\"#c4c4c4\" stroke-width=\"2\"/></pattern>\n"
        s += "<pattern id=\"\(p)-warn\" width=\"8\" height=\"8\" patternUnits=\"userSpaceOnUse\" patternTransform=\"rotate(45)\">"
        s += "<rect width=\"8\" height=\"8\" fill=\"#d1001f\"/><line x1=\"0\" y1=\"0\" x2=\"0\" y2=\"8\" stroke=\"#ffd400\" stroke-width=\"3\"/></pattern>\n"
        s += "</defs>\n"

        // Row names.
        s += "<g \(font) fill=\"#444\" text-anchor=\"end\">\n"
        s += "<text x=\"\(n(gutter - 8))\" y=\"\(n(contentsY + 17))\">placed</text>\n"
        s += "<text x=\"\(n(gutter - 8))\" y=\"\(n(e820Y + 18))\">e820</text>\n"
        if let ry = requestedY { s += "<text x=\"\(n(gutter - 8))\" y=\"\(n(ry + 10))\">cma=</text>\n" }
        if let py = predictedY { s += "<text x=\"\(n(gutter - 8))\" y=\"\(n(py + 10))\">predicted</text>\n" }
        s += "</g>\n"

        // Axis: ticks at segment boundaries and round addresses inside wide segments.
        let ticks = layOutTicks(scale)
        s += "<g class=\"axis\" \(font) fill=\"#333\" text-anchor=\"middle\">\n"
        for t in ticks where t.label != nil {
            s += line(t.x, contentsY, t.x, axisY, stroke: "#e3e3e3", width: "1")
        }
        s += line(mapLeft, axisY, mapRight, axisY, stroke: "#888", width: "1")
        for t in ticks {
            s += line(t.x, axisY, t.x, axisY + (t.label == nil ? 3 : 6), stroke: "#888", width: "1")
            if let label = t.label {
                s += "<text class=\"tick\" x=\"\(n(t.labelX))\" y=\"\(n(axisY + 18))\" data-address=\"\(hex(t.address))\">\(Report.text(label))</text>\n"
            }
        }
        s += "</g>\n"

        // The contents band's background: light where there is usable RAM.
        s += "<g class=\"contents\">\n"
        s += "<rect x=\"\(n(mapLeft))\" y=\"\(n(contentsY))\" width=\"\(n(mapRight - mapLeft))\" height=\"\(n(contentsH))\" fill=\"#fafafa\" stroke=\"#d0d0d0\" stroke-width=\"1\"/>\n"
        s += "</g>\n"

        // The e820 band.
        s += "<g class=\"e820\" \(font)>\n"
        for r in scene.regions {
            let x0 = scale.x(r.start), x1 = scale.x(r.end)
            let fill = r.kind == .pciHole ? "url(#\(p)-hole)" : Colors.region(r.kind)
            s += "<rect class=\"region \(r.kind.rawValue)\" data-kind=\"\(r.kind.rawValue)\" data-start=\"\(hex(r.start))\" data-end=\"\(hex(r.end))\" "
            s += "x=\"\(n(x0))\" y=\"\(n(e820Y))\" width=\"\(n(max(x1 - x0, 0.5)))\" height=\"\(n(e820H))\" fill=\"\(fill)\" stroke=\"#ffffff\" stroke-width=\"0.5\">"
            s += "<title>\(Report.text("\(r.label): [\(hex(r.start)), \(hex(r.end))) \(size(r.end - r.start))"))</title></rect>\n"
        }
        for seg in scale.segments where seg.isBreak {
            // Two slanted strokes: the address space here is compressed.
            let c = (seg.x0 + seg.x1) / 2
            for dx in [-4.0, 4.0] {
                s += line(c + dx - 5, e820Y + e820H + 3, c + dx + 5, e820Y - 3, stroke: "#777", width: "1.5", class: "break")
            }
        }
        let warned = placed.filter { $0.mark.kind == .cmaNotRAM }
        for r in scene.regions {
            let x0 = scale.x(r.start), x1 = scale.x(r.end)
            let text = regionCaption(r, width: x1 - x0 - 8)
            if let text {
                // Not under a region drawn over the band: the caption would show through the warning stripes.
                let half = Double(text.count) * charWidth / 2, c = (x0 + x1) / 2
                if warned.contains(where: { $0.x0 < c + half && $0.x1 > c - half }) { continue }
                let color = r.kind == .mmconfig || r.kind == .reserved ? "#ffffff" : "#1f1f1f"
                s += "<text x=\"\(n((x0 + x1) / 2))\" y=\"\(n(e820Y + 18))\" text-anchor=\"middle\" fill=\"\(color)\">\(Report.text(text))</text>\n"
            }
        }
        s += "</g>\n"

        // What is placed in memory, with the not-RAM areas also drawn over the e820 band.
        s += "<g class=\"marks\">\n"
        for (m, x0, x1) in placed {
            let warn = m.kind == .cmaNotRAM
            let fill = warn ? "url(#\(p)-warn)" : Colors.mark(m.kind)
            let y0 = warn ? contentsY - 2 : contentsY + 3
            let h = warn ? e820Y + e820H + 2 - y0 : contentsH - 6
            s += "<rect class=\"mark \(m.kind.rawValue)\" data-kind=\"\(m.kind.rawValue)\" data-name=\"\(Report.attr(m.name))\" "
            s += "data-start=\"\(hex(m.start))\" data-end=\"\(hex(m.end))\" x=\"\(n(x0))\" y=\"\(n(y0))\" width=\"\(n(x1 - x0))\" height=\"\(n(h))\" "
            s += "fill=\"\(fill)\"\(warn ? " fill-opacity=\"0.85\" stroke=\"#8a0014\" stroke-width=\"2\"" : " stroke=\"#ffffff\" stroke-width=\"0.5\"")>"
            s += "<title>\(Report.text("\(m.name): [\(hex(m.start)), \(hex(m.end))) \(size(m.end - m.start))\(m.approximate ? " (approximate)" : "")"))</title></rect>\n"
        }
        s += "</g>\n"

        // Labels with leader lines.
        s += "<g class=\"labels\" \(font)>\n"
        for l in labels {
            let color = Colors.mark(l.mark.kind)
            let laneTop = top + Double(lanes - 1 - l.lane) * laneHeight
            s += line(l.anchor, laneTop + 25, l.anchor, contentsY + 3, stroke: color, width: "1")
            s += "<text class=\"label\" data-name=\"\(Report.attr(l.mark.name))\" data-lane=\"\(l.lane)\" x=\"\(n(l.x))\" y=\"\(n(laneTop + 10))\" "
            s += "data-width=\"\(n(l.width))\" fill=\"\(color)\">"
            s += "<tspan font-weight=\"bold\">\(Report.text(l.line1))</tspan>"
            s += "<tspan x=\"\(n(l.x))\" dy=\"12\" fill=\"#333\">\(Report.text(l.line2))</tspan></text>\n"
        }
        s += "</g>\n"

        // The request and the prediction.
        for (window, wy, color, cls) in [(scene.requested, requestedY, Colors.requested, "requested"), (scene.predicted, predictedY, Colors.predicted, "predicted")] {
            guard let window, let wy else { continue }
            let x0 = scale.x(window.start), x1 = max(scale.x(window.end), scale.x(window.start) + 2)
            let dash = cls == "predicted" ? " stroke-dasharray=\"5 3\"" : ""
            s += "<g class=\"window \(cls)\" data-start=\"\(hex(window.start))\" data-end=\"\(hex(window.end))\" \(font)>\n"
            s += line(x0, wy + 6, x1, wy + 6, stroke: color, width: "2.5", extra: dash)
            for x in [x0, x1] { s += line(x, wy, x, wy + 12, stroke: color, width: "2") }
            let textWidth = Double(window.label.count) * charWidth
            let tx = max(mapLeft, min(x0, mapRight - textWidth))
            s += "<text x=\"\(n(tx))\" y=\"\(n(wy + 24))\" fill=\"\(color)\">\(Report.text(window.label))</text>\n"
            s += "</g>\n"
        }

        // Legend.
        s += "<g class=\"legend\" \(font) fill=\"#333\">\n"
        for item in legendRows {
            let ly = legendY + Double(item.row) * 18
            s += "<rect x=\"\(n(item.x))\" y=\"\(n(ly - 9))\" width=\"12\" height=\"10\" fill=\"\(item.fill)\" stroke=\"#888\" stroke-width=\"0.5\"/>"
            s += "<text x=\"\(n(item.x + 16))\" y=\"\(n(ly))\">\(Report.text(item.text))</text>\n"
        }
        s += "</g>\n"
        s += "</svg>\n"
        return s
    }

    /// One `<line>` element (and its newline), coordinates written the way `n` writes them.
    static func line(_ x1: Double, _ y1: Double, _ x2: Double, _ y2: Double, stroke: String, width: String,
                     extra: String = "", class cls: String? = nil) -> String {
        let c = cls.map { "class=\"\($0)\" " } ?? ""
        return "<line \(c)x1=\"\(n(x1))\" y1=\"\(n(y1))\" x2=\"\(n(x2))\" y2=\"\(n(y2))\" stroke=\"\(stroke)\" stroke-width=\"\(width)\"\(extra)/>\n"
    }

    // MARK: - Layout

    struct Label: Equatable {
        var mark: MemoryMapScene.Mark
        var anchor: Double
        var x: Double
        var width: Double
        var lane: Int
        var line1: String
        var line2: String
    }

    /// Places each mark's two-line label in the lowest lane (lane 0 sits on the bars) where it overlaps no other
    /// label and no leader line crosses a label: a label must not cover the leader of a mark placed above it or not
    /// placed yet, and its own leader must not cross a label below it. CMA areas are placed first, then the initrd,
    /// then the kernel. When marks are too close for that (anchors a few pixels apart), leaders may cross labels,
    /// but labels still never overlap each other.
    static func layOutLabels(_ marks: [(MemoryMapScene.Mark, Double)], from left: Double, to right: Double) -> [Label] {
        func rank(_ k: MemoryMapScene.MarkKind) -> Int { k == .cmaNotRAM ? 0 : k == .cma ? 1 : k == .initrd ? 2 : 3 }
        let order = marks.indices.sorted { (rank(marks[$0].0.kind), marks[$0].0.start) < (rank(marks[$1].0.kind), marks[$1].0.start) }
        var placed: [Label] = []
        var placedIndex: [Int] = []
        let pad = 12.0
        for i in order {
            let (m, anchor) = marks[i]
            let line1 = m.kind == .cmaNotRAM ? "CMA \(m.name): NOT RAM" : m.kind == .cma ? "CMA \(m.name)" : m.name
            let line2 = m.kind == .cmaNotRAM ? m.detail.replacingOccurrences(of: " · not RAM", with: "") : m.detail
            let width = Double(max(line1.count, line2.count)) * charWidth
            let candidates = [0.5, 0.3, 0.7, 0.1, 0.9, 0.02, 0.98].map { f in max(left, min(anchor - f * width, right - width)) }
            let others = marks.indices.filter { $0 != i && !placedIndex.contains($0) }.map { marks[$0].1 }
            func fits(_ x: Double, lane: Int, strict: Bool) -> Bool {
                let box = (x - pad, x + width + pad)
                for o in placed {
                    if o.lane == lane, o.x < box.1, o.x + o.width > box.0 { return false }
                    if strict, o.lane > lane, o.anchor > box.0, o.anchor < box.1 { return false }
                    if strict, o.lane < lane, anchor > o.x - 3, anchor < o.x + o.width + 3 { return false }
                }
                if strict, others.contains(where: { $0 > x - 3 && $0 < x + width + 3 }) { return false }
                return true
            }
            var chosen: (x: Double, lane: Int)?
            search: for strict in [true, false] {
                for lane in 0..<8 {
                    for x in candidates where fits(x, lane: lane, strict: strict) { chosen = (x, lane); break search }
                }
            }
            let spot = chosen ?? (candidates[0], (placed.map(\.lane).max() ?? -1) + 1)
            placed.append(Label(mark: m, anchor: anchor, x: spot.x, width: width, lane: spot.lane, line1: line1, line2: line2))
            placedIndex.append(i)
        }
        return placed
    }

    struct Tick: Equatable {
        var address: UInt64
        var x: Double
        var label: String?
        var labelX: Double
    }

    /// Tick marks at every segment boundary, plus round addresses inside wide segments; labels placed by priority
    /// (0 and 4 GiB, then whole GiB, then round inner addresses, then whole MiB, then the rest) where they do
    /// not overlap a label already placed.
    static func layOutTicks(_ scale: MemoryMapScale) -> [Tick] {
        var candidates: [(address: UInt64, priority: Int)] = []
        var boundaries = Set<UInt64>()
        for seg in scale.segments { boundaries.insert(seg.start); boundaries.insert(seg.end) }
        for b in boundaries { candidates.append((b, priority(b))) }
        for seg in scale.segments where !seg.isBreak && seg.x1 - seg.x0 >= 90 {
            // Steps of a power of two MiB, about 70 px apart.
            let span = seg.end - seg.start
            var step: UInt64 = 1 << 20
            while Double(step) / Double(span) * (seg.x1 - seg.x0) < 70, step < 1 << 62 { step <<= 1 }
            var a = (seg.start / step + 1) * step
            while a < seg.end {
                if !boundaries.contains(a) { candidates.append((a, 2 + (a % (1 << 30) == 0 ? 0 : 1))) }
                a += step
            }
        }
        candidates.sort { ($0.priority, $0.address) < ($1.priority, $1.address) }
        var ticks: [Tick] = []
        var taken: [(Double, Double)] = []
        for c in candidates {
            let x = scale.x(c.address)
            let text = address(c.address)
            let w = Double(text.count) * charWidth
            let lx = max(scale.left + w / 2, min(x, scale.right - w / 2))
            let box = (lx - w / 2 - 6, lx + w / 2 + 6)
            // A label may slide inwards to stay in the picture: a little, or all the way at its two ends.
            let edge = c.address == scale.segments.first?.start || c.address == scale.segments.last?.end
            let fits = abs(lx - x) < (edge ? w / 2 + 1 : 12) && !taken.contains { $0.0 < box.1 && $0.1 > box.0 }
            if fits { taken.append(box) }
            // Inner round addresses without room for a label are left out; boundaries keep a bare tick.
            if fits || boundaries.contains(c.address) {
                ticks.append(Tick(address: c.address, x: x, label: fits ? text : nil, labelX: lx))
            }
        }
        return ticks.sorted { $0.address < $1.address }
    }

    static func priority(_ a: UInt64) -> Int {
        if a == 0 || a == 1 << 32 { return 0 }
        if a % (1 << 30) == 0 { return 1 }
        if a % (1 << 20) == 0 { return 3 }
        return 4
    }

    /// A caption inside an e820 range when it fits: `usable 3 GiB`, else `usable`.
    static func regionCaption(_ r: MemoryMapScene.Region, width: Double) -> String? {
        guard r.end > 1 << 20 else { return nil }
        let name = r.kind == .mmconfig ? "MMCONFIG" : r.label
        for text in ["\(name) \(size(r.end - r.start))", name] where Double(text.count) * charWidth <= width { return text }
        return nil
    }

    struct LegendItem: Equatable { var fill: String; var text: String; var x = 0.0; var row = 0 }

    static func legendItems(_ scene: MemoryMapScene, idPrefix p: String) -> [LegendItem] {
        var items: [LegendItem] = []
        let regionKinds = Set(scene.regions.map(\.kind))
        let names: [(MemoryMapScene.RegionKind, String)] = [
            (.usable, "usable RAM"), (.reserved, "reserved"), (.firmware, "ACPI / other firmware"), (.pciHole, "PCI hole (MMIO)"),
            (.mmconfig, "MMCONFIG"), (.unmapped, "no RAM"), (.unknown, "unknown (no e820)"),
        ]
        for (k, text) in names where regionKinds.contains(k) {
            items.append(LegendItem(fill: k == .pciHole ? "url(#\(p)-hole)" : Colors.region(k), text: text))
        }
        let markKinds = Set(scene.marks.map(\.kind))
        let markNames: [(MemoryMapScene.MarkKind, String)] = [
            (.kernel, "kernel image (approx.)"), (.initrd, "initrd"), (.cma, "CMA area"), (.cmaNotRAM, "CMA area outside RAM"),
        ]
        for (k, text) in markNames where markKinds.contains(k) {
            items.append(LegendItem(fill: k == .cmaNotRAM ? "url(#\(p)-warn)" : Colors.mark(k), text: text))
        }
        if scene.requested != nil { items.append(LegendItem(fill: Colors.requested, text: "cma= window")) }
        if scene.predicted != nil { items.append(LegendItem(fill: Colors.predicted, text: "predicted placement")) }
        return items
    }

    static func layOutLegend(_ items: [LegendItem], from left: Double, to right: Double) -> [LegendItem] {
        var out: [LegendItem] = []
        var x = left, row = 0
        for var item in items {
            let w = 16 + Double(item.text.count) * charWidth + 18
            if x + w > right && x > left { row += 1; x = left }
            item.x = x; item.row = row
            out.append(item)
            x += w
        }
        return out
    }

    // MARK: - Formatting

    /// A number for SVG: one decimal, without a trailing `.0`.
    static func n(_ x: Double) -> String {
        let s = Report.fixed(x, digits: 1)
        return s.hasSuffix(".0") ? String(s.dropLast(2)) : s
    }

    public static func hex(_ v: UInt64) -> String { "0x" + String(v, radix: 16) }

    /// `1 GiB`, `1.5 GiB`, `8.79 MiB`, `1023.75 MiB`, `640 KiB`, `512 B`: the largest unit the size reaches, with up
    /// to two decimals, truncated (trailing zeros dropped).
    public static func size(_ bytes: UInt64) -> String {
        for (shift, unit) in [(40, "TiB"), (30, "GiB"), (20, "MiB"), (10, "KiB")] where bytes >= 1 << UInt64(shift) {
            if bytes % (1 << UInt64(shift)) == 0 { return "\(bytes >> UInt64(shift)) \(unit)" }
            // Truncated, not rounded: 3071 MiB is `2.99 GiB`, never `3 GiB`.
            let hundredths = (Double(bytes) / Double(UInt64(1) << UInt64(shift)) * 100).rounded(.down) / 100
            var t = Report.fixed(hundredths, digits: 2)
            while t.hasSuffix("0") { t.removeLast() }
            if t.hasSuffix(".") { t.removeLast() }
            return t + " " + unit
        }
        return "\(bytes) B"
    }

    /// An axis label: `0`, `4 GiB`, `16 MiB`, else hex.
    static func address(_ a: UInt64) -> String {
        if a == 0 { return "0" }
        if a % (1 << 30) == 0 { return "\(a >> 30) GiB" }
        if a > 1 << 30, a % (1 << 28) == 0 { return size(a) }
        if a % (1 << 20) == 0 { return "\(a >> 20) MiB" }
        return hex(a)
    }
}
