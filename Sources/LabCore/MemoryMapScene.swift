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
        /// `end - start`, or 0 when the range is empty or reversed.
        public var length: UInt64 { MemoryMapScene.length(start, end) }
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
        /// `end - start`, or 0 when the range is empty or reversed.
        public var length: UInt64 { MemoryMapScene.length(start, end) }
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
        scene.crashed = o.ending == .kernelCrash || o.crash != nil
        let boot = o.boot

        // Marks first: they can extend the picture beyond the e820 map (a fixed region past the end of RAM).
        if let sizes = kernelImageKiB(boot.memoryLine) {
            let sizeNote = "sized as the sum of the Memory: line's code, rwdata, rodata, init and bss (\(sizes)K; section padding is not counted)"
            let kaslr = kernelConfig.map { $0.isEnabled("RANDOMIZE_BASE") } == true
                && !(boot.commandLine.map { KernelCommandLine(parsing: $0) } ?? o.commandLineParameters).contains("nokaslr")
            if kaslr {
                scene.notes.append("The kernel image is not drawn: this kernel has CONFIG_RANDOMIZE_BASE=y (KASLR), so its physical address is random.")
            } else {
                let arm64 = o.machineSpec?.architecture == .arm64
                let configured = arm64 ? nil : kernelConfig?["PHYSICAL_START"].flatMap { try? ByteSize.parse($0).bytes }
                let start = configured ?? (arm64 ? arm64KernelLoadAddress : kernelLoadAddress)
                if let bytes = scaled(sizes, by: 1 << 10), let end = end(of: start, length: bytes) {
                    scene.marks.append(Mark(start: start, end: end, kind: .kernel, name: "kernel",
                                            detail: "≈\(MemoryMapSVG.size(bytes)) at \(hex(start))", approximate: true))
                } else {
                    scene.notes.append(outside("The kernel image", at: hex(start), sized: "\(sizes)K"))
                }
                scene.notes.append(configured != nil
                    ? "The kernel image is drawn at CONFIG_PHYSICAL_START (\(hex(start))) from the kernel config, \(sizeNote)."
                    : arm64 ? "The kernel image is drawn where QEMU's virt loads an arm64 Image (\(hex(start)), RAM + 2 MiB), \(sizeNote)."
                    : "The kernel image is drawn at \(hex(start)) (16 MiB, the x86_64 default load address, assuming KASLR is off), \(sizeNote).")
            }
        }
        if let rd = boot.ramdisk, rd.end >= rd.start {
            scene.marks.append(Mark(start: rd.start, end: exclusiveEnd(rd.end), kind: .initrd, name: "initrd",
                                    detail: "\(MemoryMapSVG.size(rd.size)) at \(hex(rd.start))"))
        }
        let cma = cmaAreas(o)
        for area in cma.areas {
            scene.marks.append(Mark(start: area.start, end: area.end, kind: .cma, name: area.name,
                                    detail: "\(MemoryMapSVG.size(length(area.start, area.end))) at \(hex(area.start))"))
        }
        scene.notes += cma.notes

        // Regions: the e820 map with its gaps named.
        var maxEnd = scene.marks.map(\.end).max() ?? 0
        if let request = requestWindow(o) {
            scene.requested = request
            if request.end != UInt64.max { maxEnd = max(maxEnd, request.end) }
        }
        if let p = predictedPlacement, p.end >= p.start {
            scene.predicted = Window(start: p.start, end: exclusiveEnd(p.end),
                                     label: "predicted: \(MemoryMapSVG.size(p.size)) at \(hex(p.start))" + (p.type.isEmpty ? "" : " (\(p.type))"))
            maxEnd = max(maxEnd, exclusiveEnd(p.end))
        }
        if boot.e820.isEmpty, boot.deviceTree.model != nil, !boot.nodeMemory.isEmpty {
            scene.regions = regions(fromMemoryNodes: boot.nodeMemory, reserved: boot.deviceTree.regions, upTo: maxEnd)
            scene.notes.append("A device-tree machine (\(boot.deviceTree.model!)): RAM is the kernel's memory node ranges; the device tree's no-map and reserved regions are cut out of it.")
        } else if boot.e820.isEmpty {
            let memory = o.machineSpec?.memory.bytes ?? 0
            let top = roundUp(max(maxEnd, memory, 1 << 20), to: 1 << 30)
            scene.regions = [Region(start: 0, end: top, kind: .unknown, label: "unknown")]
            scene.notes.append("The boot log has no BIOS-e820 lines, so which addresses are RAM is not known.")
        } else {
            scene.regions = regions(fromE820: boot.e820, upTo: maxEnd)
        }
        // A request without a limit (`-0`) searches up to the end of memory.
        if let r = scene.requested, r.end == UInt64.max { scene.requested?.end = scene.regions.last?.end ?? r.start }

        // CMA areas that are not wholly inside usable RAM.
        if !boot.e820.isEmpty || scene.regions.contains(where: { $0.kind == .usable }) {
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
            if wanted.contains(String(text[text.index(after: space)...])) {
                let (total, overflow) = sum.addingReportingOverflow(kib)
                guard !overflow else { return nil }
                sum = total; found += 1
            }
        }
        return found > 0 && sum > 0 ? sum : nil
    }

    /// The CMA areas: the boot log's `Reserved` lines, named from debugfs by base, plus debugfs areas the log did not
    /// show. Both come from the guest, which can print any line to /dev/kmsg: an area whose end passes 2^64 is not
    /// drawn but named in `notes`.
    static func cmaAreas(_ o: Observations) -> (areas: [(name: String, start: UInt64, end: UInt64)], notes: [String]) {
        var out: [(name: String, start: UInt64, end: UInt64)] = []
        var notes: [String] = []
        var named = Set<String>()
        for (i, r) in o.boot.reserved.enumerated() {
            let match = o.areas.first { $0.basePFN.flatMap { scaled($0, by: pageSize) } == r.base && !named.contains($0.name) }
            let name = match?.name ?? (o.boot.reserved.count == 1 ? "area" : "area \(i + 1)")
            if let match { named.insert(match.name) }
            if let bytes = scaled(r.sizeMiB, by: 1 << 20), let end = end(of: r.base, length: bytes) {
                out.append((name, r.base, end))
            } else {
                notes.append(outside("CMA area \(name)", at: hex(r.base), sized: "\(r.sizeMiB) MiB"))
            }
        }
        for a in o.areas where !named.contains(a.name) {
            guard let pfn = a.basePFN, let count = a.count, count > 0 else { continue }
            if let start = scaled(pfn, by: pageSize), let bytes = scaled(count, by: pageSize), let end = end(of: start, length: bytes) {
                out.append((a.name, start, end))
            } else {
                notes.append(outside("CMA area \(a.name)", at: "page frame \(hex(pfn))", sized: "\(count) pages"))
            }
        }
        return (out, notes)
    }

    /// The page size the debugfs `base_pfn` counts in (x86_64).
    static let pageSize: UInt64 = 4096

    /// `value * factor`, or nil when the product does not fit in 64 bits.
    static func scaled(_ value: UInt64, by factor: UInt64) -> UInt64? {
        let (product, overflow) = value.multipliedReportingOverflow(by: factor)
        return overflow ? nil : product
    }

    /// The exclusive end of `[start, start + length)`, or nil when it passes the last byte of the 64-bit address space.
    static func end(of start: UInt64, length: UInt64) -> UInt64? {
        let (end, overflow) = start.addingReportingOverflow(length)
        return overflow ? nil : end
    }

    /// `end - start`, or 0 for an empty or reversed range.
    static func length(_ start: UInt64, _ end: UInt64) -> UInt64 { end > start ? end - start : 0 }

    /// The note for a range that is left out because it does not fit in the 64-bit address space.
    static func outside(_ what: String, at address: String, sized size: String) -> String {
        "\(what) at \(address) (\(size)) is outside the 64-bit address space: not drawn."
    }

    /// The `cma=` request's window: `[base, limit)` for `@base[-limit]` (a limit of 0 means "no limit").
    static func requestWindow(_ o: Observations) -> Window? {
        let line = o.boot.commandLine.map { KernelCommandLine(parsing: $0) } ?? o.commandLineParameters
        guard let value = line.value(of: "cma"), let req = try? CMARequest.parse(value), let base = req.base, req.size > 0 else { return nil }
        let limit = req.limit ?? 0
        let end = limit == 0 ? UInt64.max : limit
        let what = req.isFixed ? "fixed" : "search window"
        let endText = limit == 0 ? "end of memory" : hex(limit)
        return Window(start: base, end: max(end, base), label: "cma=\(value): \(what) [\(hex(base)), \(endText))")
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
            return inHole && length(start, end) >= 64 << 20 ? .mmconfig : .reserved
        default: return .firmware
        }
    }

    static func exclusiveEnd(_ inclusive: UInt64) -> UInt64 { inclusive == UInt64.max ? UInt64.max : inclusive + 1 }

    /// `x` rounded up to a multiple of `unit`, or `UInt64.max` when that does not fit.
    static func roundUp(_ x: UInt64, to unit: UInt64) -> UInt64 {
        let rest = x % unit
        guard rest != 0 else { return x }
        return end(of: x, length: unit - rest) ?? UInt64.max
    }

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
