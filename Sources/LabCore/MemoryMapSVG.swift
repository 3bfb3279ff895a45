import Foundation

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
            s += "<title>\(Report.text("\(r.label): [\(hex(r.start)), \(hex(r.end))) \(size(r.length))"))</title></rect>\n"
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
            s += "<title>\(Report.text("\(m.name): [\(hex(m.start)), \(hex(m.end))) \(size(m.length))\(m.approximate ? " (approximate)" : "")"))</title></rect>\n"
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
            let span = max(MemoryMapScene.length(seg.start, seg.end), 1)
            var step: UInt64 = 1 << 20
            while Double(step) / Double(span) * (seg.x1 - seg.x0) < 70, step < 1 << 62 { step <<= 1 }
            // Checked: a segment can end at the top of the 64-bit address space.
            var next = MemoryMapScene.scaled(seg.start / step + 1, by: step)
            while let a = next, a < seg.end {
                if !boundaries.contains(a) { candidates.append((a, 2 + (a % (1 << 30) == 0 ? 0 : 1))) }
                next = MemoryMapScene.end(of: a, length: step)
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
        for text in ["\(name) \(size(r.length))", name] where Double(text.count) * charWidth <= width { return text }
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
