/// `cmalab probe-max`: the largest `cma=` size that reserves on a machine, found by bisection over sizes that are
/// whole multiples of the kernel's CMA alignment. Pure: the boots (or the oracle's predictions) are the `reserves`
/// callback; this file decides which sizes to try and what they mean.

/// What `probe-max` asks: a machine, and optionally the `@base-limit` window of `cma=`.
public struct ProbeMaxQuestion: Equatable, Sendable {
    public var machine: MachineSpec
    /// The alignment every candidate size is a multiple of (Oracle.alignment for the image's kernel and .config).
    public var alignment: UInt64
    /// `--at BASE-LIMIT`: the text after `@` (kept as the user wrote it: the kernel memparses it) and its values.
    public var window: (text: String, base: UInt64, limit: UInt64)?

    public init(machine: MachineSpec, alignment: UInt64, window: (text: String, base: UInt64, limit: UInt64)? = nil) {
        self.machine = machine; self.alignment = alignment; self.window = window
    }

    public static func == (a: Self, b: Self) -> Bool {
        a.machine == b.machine && a.alignment == b.alignment && a.window?.text == b.window?.text
    }

    /// Parses `--at BASE-LIMIT` (`1G-2G`, `0x40000000-0x80000000`) as the kernel's memparse does.
    public static func parseWindow(_ text: String) throws(InputError) -> (text: String, base: UInt64, limit: UInt64) {
        let request = CMARequest.kernelParse("1M@" + text)
        guard let base = request.base, let limit = request.limit, request.warnings.isEmpty, text.contains("-") else {
            throw InputError(file: "--at", message: "expected BASE-LIMIT like 1G-2G or 0x40000000-0x80000000, found `\(text)`")
        }
        guard limit > base else { throw InputError(file: "--at", message: "the limit must be above the base, found `\(text)`") }
        return (text, base, limit)
    }

    /// The largest size worth trying: the window, else all of memory, rounded down to the alignment.
    public var largestCandidate: UInt64 {
        let room = window.map { $0.limit - $0.base } ?? machine.memory.bytes
        return room / alignment * alignment
    }

    /// Candidate sizes are `units × alignment` for units in 1...maxUnits.
    public var maxUnits: UInt64 { largestCandidate / alignment }

    /// The `cma=` value for `units` of alignment (`952M` or `952M@1G-2G`).
    public func cmaValue(units: UInt64) -> String {
        let bytes = units * alignment
        let size = bytes % (1 << 20) == 0 ? "\(bytes >> 20)M" : "\(bytes >> 10)K"
        return window.map { "\(size)@\($0.text)" } ?? size
    }
}

/// One tried size and whether it reserved.
public struct ProbeTry: Equatable, Sendable, Codable {
    public var sizeBytes: UInt64
    public var reserved: Bool
    public init(sizeBytes: UInt64, reserved: Bool) { self.sizeBytes = sizeBytes; self.reserved = reserved }
}

/// The answer of a bisection.
public struct ProbeMaxAnswer: Equatable, Sendable, Codable {
    /// The largest size that reserved (bytes); 0 when not even one alignment unit did.
    public var largestBytes: UInt64
    /// The smallest size that failed just above it (largest + alignment); nil when the largest candidate reserved.
    public var firstFailingBytes: UInt64?
    /// Every size tried, in order.
    public var tries: [ProbeTry]
}

public enum ProbeMax {
    /// Bisection over units in [1, maxUnits], assuming that a size reserves whenever a larger one does: `low`
    /// is known to reserve (0 needs no try), `high` is known to fail (maxUnits + 1 needs no try). About
    /// log2(maxUnits + 1) calls of `reserves`.
    public static func bisect<E: Error>(_ q: ProbeMaxQuestion, _ reserves: (UInt64) throws(E) -> Bool) throws(E) -> ProbeMaxAnswer {
        var low: UInt64 = 0, high = q.maxUnits + 1
        var tries: [ProbeTry] = []
        while high - low > 1 {
            let mid = low + (high - low) / 2
            let ok = try reserves(mid)
            tries.append(ProbeTry(sizeBytes: mid * q.alignment, reserved: ok))
            if ok { low = mid } else { high = mid }
        }
        return ProbeMaxAnswer(largestBytes: low * q.alignment, firstFailingBytes: high <= q.maxUnits ? high * q.alignment : nil, tries: tries)
    }
}

extension Profile {
    /// A profile made on the fly (no file): one machine, one command line, no expectations (probe-max's boots).
    public static func adHoc(name: String, image: String?, machine: MachineSpec, commandLine: KernelCommandLine, timeout: Double = 120) -> Profile {
        Profile(name: name, summary: "", file: "", image: image, machine: machine, commandLine: commandLine, timeout: timeout,
                expect: Expectations(), steps: [], warnings: [])
    }
}
