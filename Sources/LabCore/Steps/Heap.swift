/// `heap-alloc` and `heap-free`: memory the way user space asks for it (Android, camera and video stacks),
/// from a dma-buf heap (`/dev/dma_heap/<name>`, DMA_HEAP_IOCTL_ALLOC). The CMA heap is named after the
/// default CMA area (`reserved` for `cma=`, the node name for a device-tree pool); `system` is the buddy
/// allocator. A guest process (`cmalab-agent hold-heap`) allocates, maps and touches the buffer and holds it
/// until `heap-free`.

/// A `heap-alloc` step: `heap-alloc: {heap: reserved, size: 256M, expect: success}`.
public struct HeapAllocStep: StepModel {
    public var heap: String
    public var size: UInt64
    public var expectSuccess: Bool
    /// How far the CmaFree drop may be from the size for a CMA heap (default 1 %).
    public var tolerance: Approximate.Tolerance
    public init(heap: String, size: UInt64, expectSuccess: Bool = true, tolerance: Approximate.Tolerance = .percent(1)) {
        self.heap = heap; self.size = size; self.expectSuccess = expectSuccess; self.tolerance = tolerance
    }

    public static let kind = StepKind.heapAlloc
    public static let usesCMADebugfs = false
    public var requirements: [StepRequirement] {
        [StepRequirement(option: "DMABUF_HEAPS", reason: "dma-buf heaps (/dev/dma_heap) need CONFIG_DMABUF_HEAPS")]
            + (heap == "system" ? [StepRequirement(option: "DMABUF_HEAPS_SYSTEM", reason: "the system heap needs CONFIG_DMABUF_HEAPS_SYSTEM")]
                                : [StepRequirement(option: "DMABUF_HEAPS_CMA", reason: "a CMA heap needs CONFIG_DMABUF_HEAPS_CMA")])
    }

    static func parse(_ body: YAMLValue) throws(InputError) -> Step {
        let m = try body.mapping(allowed: ["heap", "size", "expect", "tolerance"])
        let heapValue = try m.required("heap", hint: "the heap's name under /dev/dma_heap: `reserved` (the cma= area), `system`, ...")
        let heap = try heapValue.string()
        guard !heap.isEmpty, heap.count <= 64, heap != ".", heap != "..",
              heap.unicodeScalars.allSatisfy({ $0.isASCII && ($0.properties.isAlphabetic || ("0"..."9").contains($0) || "._,-".unicodeScalars.contains($0)) }) else {
            throw heapValue.error("heap names a file in /dev/dma_heap: only [A-Za-z0-9._,-], at most 64 characters, e.g. `reserved` or `system`")
        }
        let sizeValue = try m.required("size", hint: "how much to allocate, e.g. 256M")
        let size = try sizeValue.size().bytes
        guard size > 0, size <= DMAAllocStep.maximumSize else { throw sizeValue.error("size is more than 0 and at most 1T") }
        var step = HeapAllocStep(heap: heap, size: size)
        step.expectSuccess = try AllocStep.parseExpect(m["expect"])
        if let t = m["tolerance"] { step.tolerance = try Profile.parseTolerance(t) }
        return .heapAlloc(step)
    }

    public func summary() -> String { "heap-alloc \(ByteSize(bytes: size)) from dma-buf heap \(heap)" }

    /// The guest script of step `index`: starts the holder in the background (its pid in
    /// /tmp/cmalab-heap-<index>.pid, for heap-free) and returns when it printed `held`, or fails with its output
    /// when it died first.
    public func guestScript(index: Int) -> String {
        let out = "/tmp/cmalab-heap-\(index).out", pid = "/tmp/cmalab-heap-\(index).pid"
        return """
            setsid /sbin/cmalab-agent hold-heap \(singleQuoted(heap)) \(size) >\(out) 2>&1 </dev/null &
            echo $! >\(pid)
            while ! grep -q held \(out); do kill -0 $(cat \(pid)) 2>/dev/null || { cat \(out); rm -f \(pid); exit 1; }; sleep 0.05; done
            cat \(out)
            """
    }

    /// The holder's `errno=<n>` line when it failed (the guest's word; nil when absent or malformed).
    public static func errno(in output: String) -> Int32? {
        output.split(whereSeparator: \.isNewline).lazy.compactMap { line -> Int32? in
            guard line.hasPrefix("errno=") else { return nil }
            return line.dropFirst(6).split(separator: " ").first.flatMap { Int32($0) }
        }.first
    }

    /// The holder's `ns=<n>` (DMA_HEAP_IOCTL_ALLOC's time in the guest).
    public static func nanoseconds(in output: String) -> UInt64? {
        guard let line = output.split(whereSeparator: \.isNewline).first(where: { $0.hasPrefix("held ") }) else { return nil }
        return line.split(separator: " ").first { $0.hasPrefix("ns=") }.flatMap { UInt64($0.dropFirst(3)) }
    }

    public func checks(_ r: HeapAllocResult, _ c: StepCheckContext) -> [CheckResult] {
        var out: [CheckResult] = []
        let ok = r.status == 0
        out.append(CheckResult(name: c.name, expected: expectSuccess ? "success" : "failure",
                               observed: ok ? "held \(ByteSize(bytes: size)) from \(heap)" : "failure (\(Evaluate.errnoName(r.status)))",
                               passed: ok == expectSuccess))
        // A CMA heap is named after its area: its pages must come out of that area.
        guard ok, r.areaBefore != nil else { return out }
        if let check = DMAAllocStep.cmaFreeDrop(size: size, tolerance: tolerance, before: r.before, after: r.after,
                                                usedBefore: r.areaBefore?.used, name: "\(c.name).cma-free-drop") {
            out.append(check)
        }
        let usedDelta = Int64(clamping: r.areaAfter?.used ?? 0) - Int64(clamping: r.areaBefore?.used ?? 0)
        let pages = Int64(clamping: (size + 4095) / 4096)
        out.append(CheckResult(name: "\(c.name).used-delta", expected: "\(pages)", observed: "\(usedDelta)", passed: usedDelta == pages))
        return out
    }
}

/// A `heap-free` step: closes every buffer the earlier heap-alloc steps hold (stops their holders).
public struct HeapFreeStep: StepModel {
    public init() {}
    public static let kind = StepKind.heapFree
    public static let usesCMADebugfs = false
    public var requirements: [StepRequirement] { [StepRequirement(option: "DMABUF_HEAPS", reason: "dma-buf heaps need CONFIG_DMABUF_HEAPS")] }

    /// `- heap-free` alone: it takes no settings.
    static let syntax = Step.settingless(.heapFree, message: "heap-free takes no settings: it frees every buffer of the earlier heap-alloc steps")

    /// Stops every heap holder and waits until each is gone or a zombie (its buffer is freed either way).
    /// Prints how many it stopped.
    public static let guestScript = """
        n=0
        for f in /tmp/cmalab-heap-*.pid; do
          [ -e "$f" ] || continue
          p=$(cat "$f"); kill "$p" 2>/dev/null && n=$((n+1))
          while [ -e /proc/$p ] && ! grep -q '^State:.Z' /proc/$p/status 2>/dev/null; do sleep 0.05; done
        done
        rm -f /tmp/cmalab-heap-*
        echo "freed=$n"
        """

    public func checks(_ r: DMAFreeResult, _ c: StepCheckContext) -> [CheckResult] {
        var out = [CheckResult(name: c.name, expected: "every heap buffer freed",
                               observed: r.status == 0 ? "freed \(r.freed ?? 0)" : "status \(r.status)", passed: r.status == 0 && (r.freed ?? 0) > 0)]
        if let before = r.before?.cmaFreeKiB, let after = r.after?.cmaFreeKiB {
            let rise = AllocStep.clampedBytes(kib: after) - AllocStep.clampedBytes(kib: before)
            out.append(CheckResult(name: "\(c.name).cma-free-rise", expected: ">= 0 kB", observed: Evaluate.signedSize(rise), passed: rise >= 0))
        }
        return out
    }
}

/// What a heap-alloc did: the holder's status (0, or the errno it printed), meminfo and the heap's area around it.
public struct HeapAllocResult: StepResult, Equatable {
    public var status: Int32
    public var before: MeminfoSnapshot?
    public var after: MeminfoSnapshot?
    /// The CMA area the heap is named after (nil for other heaps).
    public var areaBefore: AreaSnapshot?
    public var areaAfter: AreaSnapshot?
    public var output: String?
    /// DMA_HEAP_IOCTL_ALLOC's time in the guest.
    public var nanoseconds: UInt64?
    public init(status: Int32) { self.status = status }
    public init(_ r: StepRecord) {
        status = r.status; before = r.before; after = r.after; areaBefore = r.areaBefore; areaAfter = r.areaAfter; output = r.output
        nanoseconds = r.attemptNanoseconds?.first
    }
    public func fill(_ r: inout StepRecord) {
        r.before = before; r.after = after; r.areaBefore = areaBefore; r.areaAfter = areaAfter; r.output = output
        r.attemptNanoseconds = nanoseconds.map { [$0] }
    }
}
