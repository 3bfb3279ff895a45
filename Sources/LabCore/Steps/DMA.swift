/// `dma-alloc` and `dma-free`: memory the way a driver asks for it, through the DMA API, by cmalab's test
/// driver (Driver/cmalab-dma) for a test device with a given DMA mask. On a machine without an IOMMU the
/// kernel's dma-direct tries the default CMA area first and falls back to the buddy allocator when the
/// CMA pages lie beyond the device's mask (or CMA has none), where nothing larger than 4 MiB is contiguous.
/// The host decides where the memory came from: the physical address inside an area's range, with that
/// area's `used` and CmaFree moving by the size.

/// The DMA API call of a `dma-alloc` (the driver's CMALAB_DMA_* kinds, the agent's `dma-alloc` argument).
public enum DMACall: String, Codable, Equatable, Sendable, CaseIterable {
    case coherent, pages, noncoherent
    /// The kernel function.
    public var function: String {
        switch self {
        case .coherent: "dma_alloc_coherent"
        case .pages: "dma_alloc_pages"
        case .noncoherent: "dma_alloc_noncoherent"
        }
    }
}

/// Where an allocation must come from: a CMA area, the buddy allocator, or either.
public enum DMASource: String, Codable, Equatable, Sendable, CaseIterable {
    case cma, buddy, any
}

/// A `dma-alloc` step: `dma-alloc: {size: 1G, mask: 32, call: coherent, expect: success, from: cma}`.
public struct DMAAllocStep: StepModel {
    public var size: UInt64
    /// The test device's DMA mask in bits (1-64).
    public var mask: Int
    public var call: DMACall
    public var expectSuccess: Bool
    public var from: DMASource
    /// How far the CmaFree drop may be from the size, when the memory came from CMA (default 1 %).
    public var tolerance: Approximate.Tolerance
    public init(size: UInt64, mask: Int, call: DMACall = .coherent, expectSuccess: Bool = true, from: DMASource = .any,
                tolerance: Approximate.Tolerance = .percent(1)) {
        self.size = size; self.mask = mask; self.call = call; self.expectSuccess = expectSuccess; self.from = from; self.tolerance = tolerance
    }

    public static let kind = StepKind.dmaAlloc
    public static let usesCMADebugfs = false
    public var usesTestDriver: Bool { true }
    public var requirements: [StepRequirement] {
        [StepRequirement(option: "MODULES", reason: "cmalab's DMA test driver is a loadable module")]
            + (from == .cma ? [StepRequirement(option: "DMA_CMA", reason: "the DMA API takes CMA memory only with CONFIG_DMA_CMA")] : [])
    }

    /// Largest mask the driver takes, and the largest request (the driver refuses more than 1 TiB).
    static let maximumSize: UInt64 = 1 << 40

    static func parse(_ body: YAMLValue) throws(InputError) -> Step {
        let m = try body.mapping(allowed: ["size", "mask", "call", "expect", "from", "tolerance"])
        let sizeValue = try m.required("size", hint: "how much contiguous DMA memory to ask for, e.g. 1G")
        let size = try sizeValue.size().bytes
        guard size > 0, size <= maximumSize else { throw sizeValue.error("size is more than 0 and at most 1T") }
        let mask = try m.required("mask", hint: "the device's DMA mask in bits, e.g. 32 for a 32-bit device").int(in: 1...64)
        var step = DMAAllocStep(size: size, mask: mask)
        if let c = m["call"] { step.call = try c.oneOf(DMACall.self) }
        step.expectSuccess = try AllocStep.parseExpect(m["expect"])
        if let f = m["from"] { step.from = try f.oneOf(DMASource.self) }
        if !step.expectSuccess, let f = m["from"], step.from != .any { throw f.error("`from` says where a successful allocation comes from: drop it with `expect: failure`") }
        if let t = m["tolerance"] { step.tolerance = try Profile.parseTolerance(t) }
        return .dmaAlloc(step)
    }

    /// The agent command of the step (DeviceTools.swift in the guest).
    public var agentArguments: [String] { ["dma-alloc", "\(mask)", call.rawValue, "\(size)"] }

    public func summary() -> String {
        "dma-alloc \(ByteSize(bytes: size)) for a \(mask)-bit device (\(call.function))"
    }

    /// CmaFree must drop by the size, less what movable allocations had borrowed from the area before (pages
    /// in use but not allocated through CMA, `PressureStep.lentPages`): those were not free, and the allocator
    /// migrated them out. Nil without CMA lines in meminfo.
    static func cmaFreeDrop(size: UInt64, tolerance: Approximate.Tolerance, before: MeminfoSnapshot?, after: MeminfoSnapshot?,
                            usedBefore: UInt64?, name: String) -> CheckResult? {
        guard let b = before?.cmaFreeKiB, let a = after?.cmaFreeKiB else { return nil }
        let drop = AllocStep.clampedBytes(kib: b) - AllocStep.clampedBytes(kib: a)
        let lentPages = PressureStep.lentPages(before, usedPages: usedBefore ?? 0) ?? 0
        let (lentBytes, overflow) = lentPages.multipliedReportingOverflow(by: 4096)
        let lent = overflow ? UInt64.max : lentBytes
        let want = Approximate(bytes: size, tolerance: tolerance)
        let slack = want.allowedDeviation()
        let low = size > lent ? size - lent : 0
        let passed = drop >= 0 && UInt64(drop) <= size &+ slack && UInt64(drop) &+ slack >= low
        let expected = lent == 0 ? want.description : "\(want) less up to \(Evaluate.signedSize(Int64(clamping: lent))) lent out before"
        return CheckResult(name: name, expected: expected, observed: Evaluate.signedSize(drop), passed: passed)
    }

    /// Whether [address, address + size) lies below 2^bits.
    public static func fits(address: UInt64, size: UInt64, bits: Int) -> Bool {
        let (last, overflow) = address.addingReportingOverflow(size == 0 ? 0 : size - 1)
        if overflow { return false }
        return bits >= 64 || last < (UInt64(1) << UInt64(bits))
    }

    public func checks(_ r: DMAAllocResult, _ c: StepCheckContext) -> [CheckResult] {
        var out: [CheckResult] = []
        guard r.status == 0, let d = r.device, let address = d.dmaAddress else {
            out.append(CheckResult(name: c.name, expected: expectSuccess ? "success" : "failure",
                                   observed: "failure (\(Evaluate.errnoName(r.status)))", passed: !expectSuccess))
            return out
        }
        out.append(CheckResult(name: c.name, expected: expectSuccess ? "success" : "failure",
                               observed: "success at dma \(hex(address)) (\(d.area.map { "CMA area \($0)" } ?? "buddy allocator"))", passed: expectSuccess))
        out.append(CheckResult(name: "\(c.name).mask", expected: "below 2^\(mask)", observed: "\(hex(address))-\(hex(address &+ (size - 1)))",
                               passed: Self.fits(address: address, size: size, bits: mask)))
        if from != .any {
            let source = d.area == nil ? DMASource.buddy : .cma
            out.append(CheckResult(name: "\(c.name).from", expected: from.rawValue,
                                   observed: d.area.map { "cma (\($0))" } ?? "buddy", passed: source == from))
        }
        if d.area != nil, let check = Self.cmaFreeDrop(size: size, tolerance: tolerance, before: r.before, after: r.after,
                                                      usedBefore: r.areaBefore?.used, name: "\(c.name).cma-free-drop") {
            out.append(check)
            let usedDelta = Int64(clamping: r.areaAfter?.used ?? 0) - Int64(clamping: r.areaBefore?.used ?? 0)
            let pages = Int64(clamping: (size + 4095) / 4096)
            out.append(CheckResult(name: "\(c.name).used-delta", expected: ">= \(pages)", observed: "\(usedDelta)", passed: usedDelta >= pages))
        }
        return out
    }
}

/// A `dma-free` step: frees every allocation the earlier `dma-alloc` steps hold (the driver's list).
public struct DMAFreeStep: StepModel {
    public init() {}
    public static let kind = StepKind.dmaFree
    public static let usesCMADebugfs = false
    public var usesTestDriver: Bool { true }
    public var requirements: [StepRequirement] { [StepRequirement(option: "MODULES", reason: "cmalab's DMA test driver is a loadable module")] }

    /// `- dma-free` alone: it takes no settings.
    static let syntax = Step.settingless(.dmaFree, message: "dma-free takes no settings: it frees every allocation of the earlier dma-alloc steps")

    public static let agentArguments = ["dma-free", "0"]

    public func checks(_ r: DMAFreeResult, _ c: StepCheckContext) -> [CheckResult] {
        var out = [CheckResult(name: c.name, expected: "every DMA allocation freed",
                               observed: r.status == 0 ? "freed \(r.freed ?? 0)" : "failure (\(Evaluate.errnoName(r.status)))",
                               passed: r.status == 0 && (r.freed ?? 0) > 0)]
        if let before = r.before?.cmaFreeKiB, let after = r.after?.cmaFreeKiB {
            let rise = AllocStep.clampedBytes(kib: after) - AllocStep.clampedBytes(kib: before)
            out.append(CheckResult(name: "\(c.name).cma-free-rise", expected: ">= 0 kB", observed: Evaluate.signedSize(rise), passed: rise >= 0))
        }
        return out
    }
}

/// One dma-alloc as the driver answered it: the request, the errno (0 on success) and, on success, the
/// allocation and the CMA area that holds it (nil: the buddy allocator).
public struct DMAAllocation: Codable, Equatable, Sendable {
    public var maskBits: Int
    public var call: DMACall
    public var size: UInt64
    public var errno: Int32
    public var id: UInt32?
    public var dmaAddress: UInt64?
    public var physicalAddress: UInt64?
    /// Time spent in the DMA API call, guest clock.
    public var nanoseconds: UInt64?
    public var area: String?
    public init(maskBits: Int, call: DMACall, size: UInt64, errno: Int32, id: UInt32? = nil, dmaAddress: UInt64? = nil,
                physicalAddress: UInt64? = nil, nanoseconds: UInt64? = nil, area: String? = nil) {
        self.maskBits = maskBits; self.call = call; self.size = size; self.errno = errno; self.id = id; self.dmaAddress = dmaAddress
        self.physicalAddress = physicalAddress; self.nanoseconds = nanoseconds; self.area = area
    }

    /// Where the memory came from, for a successful allocation.
    public var source: DMASource? { errno != 0 || dmaAddress == nil ? nil : (area == nil ? .buddy : .cma) }

    /// The agent's line `errno=0 id=<n> dma=0x<hex> phys=0x<hex> ns=<n>` (or `errno=<n>`). The guest's word:
    /// anything malformed is nil.
    public static func parse(_ output: String, step: DMAAllocStep) -> DMAAllocation? {
        guard let line = output.split(whereSeparator: \.isNewline).first(where: { $0.hasPrefix("errno=") }) else { return nil }
        let fields = keyValueWords(line)
        guard let e = fields["errno"].flatMap({ Int32($0) }), e >= 0 else { return nil }
        var a = DMAAllocation(maskBits: step.mask, call: step.call, size: step.size, errno: e)
        if e != 0 { return a }
        guard let id = fields["id"].flatMap({ UInt32($0) }), let dma = fields["dma"].flatMap(hexValue),
              let phys = fields["phys"].flatMap(hexValue), let ns = fields["ns"].flatMap({ UInt64($0) }) else { return nil }
        a.id = id; a.dmaAddress = dma; a.physicalAddress = phys; a.nanoseconds = ns
        return a
    }

    /// The `key=value` words of what a guest tool printed (agent's DeviceTools), the first value of each key.
    public static func keyValueWords(_ text: Substring) -> [Substring: Substring] {
        var fields: [Substring: Substring] = [:]
        for word in text.split(whereSeparator: { $0 == " " || $0.isNewline }) {
            guard let eq = word.firstIndex(of: "="), fields[word[..<eq]] == nil else { continue }
            fields[word[..<eq]] = word[word.index(after: eq)...]
        }
        return fields
    }

    static func hexValue(_ s: Substring) -> UInt64? {
        guard s.hasPrefix("0x") else { return nil }
        return UInt64(s.dropFirst(2), radix: 16)
    }

    /// The area whose pages hold all of [address, address + size): checked arithmetic, since areas and the
    /// address are the guest's word.
    public static func area(holding address: UInt64, size: UInt64, in areas: [AreaSnapshot]) -> AreaSnapshot? {
        areas.first { a in
            guard let pfn = a.basePFN, let count = a.count else { return false }
            let (base, o1) = pfn.multipliedReportingOverflow(by: 4096)
            let (bytes, o2) = count.multipliedReportingOverflow(by: 4096)
            let (end, o3) = base.addingReportingOverflow(bytes)
            let (last, o4) = address.addingReportingOverflow(size)
            return !(o1 || o2 || o3 || o4) && address >= base && last <= end
        }
    }
}

/// What a dma-alloc did.
public struct DMAAllocResult: StepResult, Equatable {
    public var status: Int32
    public var device: DMAAllocation?
    public var before: MeminfoSnapshot?
    public var after: MeminfoSnapshot?
    /// The area that holds the allocation, before and after (nil: buddy, or a failure).
    public var areaBefore: AreaSnapshot?
    public var areaAfter: AreaSnapshot?
    public var output: String?
    public init(status: Int32) { self.status = status }
    public init(_ r: StepRecord) {
        status = r.status; device = r.dma; before = r.before; after = r.after; areaBefore = r.areaBefore; areaAfter = r.areaAfter; output = r.output
    }
    public func fill(_ r: inout StepRecord) {
        r.dma = device; r.before = before; r.after = after; r.areaBefore = areaBefore; r.areaAfter = areaAfter; r.output = output
    }
}

/// What a dma-free did: how many allocations the driver freed, meminfo around it.
public struct DMAFreeResult: StepResult, Equatable {
    public var status: Int32
    public var freed: UInt64?
    public var before: MeminfoSnapshot?
    public var after: MeminfoSnapshot?
    public init(status: Int32, freed: UInt64?, before: MeminfoSnapshot?, after: MeminfoSnapshot?) {
        self.status = status; self.freed = freed; self.before = before; self.after = after
    }
    public init(_ r: StepRecord) { self.init(status: r.status, freed: r.freedCount, before: r.before, after: r.after) }
    public func fill(_ r: inout StepRecord) { r.freedCount = freed; r.before = before; r.after = after }
}

