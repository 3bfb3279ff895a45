import Foundation

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
            let mib = Double(r.length) / 1_048_576
            switch r.kind {
            case _ where r.end <= 1 << 20:
                groups.append((r.start, r.end, Self.lowMemoryWidth, 0, false))
            case .unmapped where r.start >= 1 << 32 && r.length > 1 << 30:
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
        let f = Double(MemoryMapScene.length(s.start, address)) / Double(max(MemoryMapScene.length(s.start, s.end), 1))
        return s.x0 + f * (s.x1 - s.x0)
    }

    public var left: Double { segments.first?.x0 ?? 0 }
    public var right: Double { segments.last?.x1 ?? 0 }
}
