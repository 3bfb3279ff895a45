/// The device question: can a device with an n-bit DMA mask get N bytes of contiguous memory through the
/// DMA API with this `cma=` on this machine? The default area is the `cma=` one, or on arm64 the device tree's
/// default pool. On x86 without an IOMMU (and on arm64 `virt`, whose devices have none either), dma-direct (kernel/dma/direct.c) asks the
/// default CMA area first (`dma_alloc_contiguous`, only for more than one page and with CONFIG_DMA_CMA), keeps
/// the pages only when all of them lie below the mask (`dma_coherent_ok`), and otherwise falls back to the
/// buddy allocator (GFP_DMA32 for masks up to 32 bits), whose largest block is 2^MAX_PAGE_ORDER pages: 4 MiB.

/// What a `dma-alloc` will do, as the oracle sees it.
public enum PredictedDMA: String, Codable, Equatable, Sendable {
    case cma, buddy, failure
}

/// The oracle's answer for one device mask: the most it can get from the default area in one allocation.
public struct DeviceReach: Codable, Equatable, Sendable {
    public var maskBits: Int
    /// Bytes of the default area a device with this mask can use (0: none, the area lies beyond the mask).
    public var fromCMA: UInt64
    /// True when the answer depends on where in its predicted range the area lands.
    public var uncertain: Bool
    public var sentence: String
}

extension Oracle {
    /// The largest block the buddy allocator hands out: 2^10 pages of 4 KiB (MAX_PAGE_ORDER on x86 and arm64
    /// with 4 KiB pages).
    public static let buddyLargestBlock: UInt64 = 4 << 20

    /// How much of the default area a device with `mask` bits can reach.
    public static func reach(mask: Int, _ p: CMAPrediction) -> DeviceReach {
        let device = "a \(mask)-bit device"
        guard p.dmaCMA != false else {
            return DeviceReach(maskBits: mask, fromCMA: 0, uncertain: false,
                               sentence: "\(device) gets nothing from CMA: the kernel has no CONFIG_DMA_CMA, so the DMA API never asks the area")
        }
        let pool = p.deviceTreeDefault.flatMap { name in p.deviceTreePools?.first { $0.name == name } }
        guard let a = p.area ?? pool, p.outcome == .reserved else {
            return DeviceReach(maskBits: mask, fromCMA: 0, uncertain: false,
                               sentence: "\(device) gets nothing from CMA: there is no default area, so only the buddy allocator's \(ByteSize(bytes: buddyLargestBlock)) blocks")
        }
        let limit: UInt64? = mask >= 64 ? nil : UInt64(1) << UInt64(mask)
        func fits(_ base: UInt64) -> Bool {
            guard let limit else { return true }
            let (end, overflow) = base.addingReportingOverflow(a.sizeBytes)
            return !overflow && end <= limit
        }
        let area = "`\(a.name)` (\(a.sizeMiB) MiB at \(a.exact ? hex(a.baseMin) : "[\(hex(a.baseMin)), \(hex(a.baseMax))]"))"
        if fits(a.baseMax) {
            return DeviceReach(maskBits: mask, fromCMA: a.sizeBytes, uncertain: false,
                               sentence: "\(device) can allocate up to \(a.sizeMiB) MiB from \(area): the whole area lies below \(limit.map(hex) ?? "2^64")")
        }
        if fits(a.baseMin) {
            return DeviceReach(maskBits: mask, fromCMA: 0, uncertain: true,
                               sentence: "\(device) may or may not reach \(area): that depends on where in its range the area lands, against the limit \(limit.map(hex) ?? "")")
        }
        return DeviceReach(maskBits: mask, fromCMA: 0, uncertain: false,
                           sentence: "\(device) gets nothing from \(area): the area ends above \(limit.map(hex) ?? ""), so dma-direct gives its pages back and falls back to the buddy allocator (at most \(ByteSize(bytes: buddyLargestBlock)) contiguous)")
    }

    /// What one dma-alloc of `size` bytes for a `mask`-bit device will do when `held` bytes of the default area
    /// are already allocated; nil when the oracle cannot say (a mask below 32 bits, which depends on ZONE_DMA;
    /// an area whose reach is uncertain).
    public static func predictDMA(size: UInt64, mask: Int, held: UInt64, _ p: CMAPrediction) -> PredictedDMA? {
        guard mask >= 32 else { return nil }
        let r = reach(mask: mask, p)
        if r.uncertain { return nil }
        // dma_alloc_contiguous leaves single pages to the buddy allocator.
        if size > 4096, r.fromCMA >= held, size <= r.fromCMA - held { return .cma }
        return size <= buddyLargestBlock ? .buddy : .failure
    }

    /// The dma-alloc steps of a run against the oracle: one clause per step whose outcome differs.
    static func compareDevices(_ p: CMAPrediction, with o: Observations) -> [String] {
        var diffs: [String] = []
        var held: UInt64 = 0
        for step in o.steps {
            if step.kind == .dmaFree { held = 0; continue }
            guard step.kind == .dmaAlloc, let d = step.dma else { continue }
            let observed: PredictedDMA = d.source.map { $0 == .cma ? .cma : .buddy } ?? .failure
            if let want = predictDMA(size: d.size, mask: d.maskBits, held: held, p), want != observed {
                diffs.append("steps[\(step.index)].dma-alloc: predicted \(want.rawValue), observed \(observed.rawValue)")
            }
            if observed == .cma { held += d.size }
        }
        return diffs
    }
}
