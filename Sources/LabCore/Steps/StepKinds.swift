/// The step kinds of a profile (`steps:`), and the registry that connects them.
///
/// Each kind has a room: `LabCore/Steps/<Kind>.swift` holds its model, its YAML parsing and messages, its
/// checks, its typed result and any guest shell script it needs (all pure), and `LabRuntime/Steps/<Kind>.swift`
/// holds how it runs in the guest. This file only connects them: `Step.syntax` maps each YAML key to its
/// kind's parser, and `Step.model` hands each case to its kind's type.
///
/// Why `Step` stays an enum rather than `[any StepModel]`: profiles and tests compare steps with `==`, which an
/// enum of Equatable models gets for free (an existential array would need a hand-written comparison), and the
/// compiler points at every switch a new case must join (here `model`, and ProfileRunner.perform's dispatch).
/// The enum holds no per-kind logic: kind, debugfs use and checks all go through `model`.
///
/// Adding a kind: its two room files; in this file a `StepKind` case (if its results need a new `kind`), a
/// `Step` case with its `model` line, and its line in `syntax`; its line in ProfileRunner.perform's dispatch; and
/// an agent request (LabProtocol, AgentCore) only if the guest cannot do it with a shell script.

/// A step's `kind` in results (observations.json) and in check names (`steps[i].<kind>`). A measured alloc is
/// an `alloc` too.
public enum StepKind: String, Codable, Sendable, CaseIterable, CustomStringConvertible {
    case alloc, free, exec, pressure, release
    case dmaAlloc = "dma-alloc", dmaFree = "dma-free", heapAlloc = "heap-alloc", heapFree = "heap-free"
    public var description: String { rawValue }
}

/// What each step kind provides in LabCore: its settings are the conforming type's properties.
public protocol StepModel: Equatable, Sendable {
    /// What the step did, typed; `StepRecord` is its wire shape.
    associatedtype Result: StepResult
    static var kind: StepKind { get }
    /// Whether the step drives `/sys/kernel/debug/cma/<area>/{alloc,free}`: on an image without
    /// CONFIG_CMA_DEBUGFS such steps are skipped (and the verdict says so).
    static var usesCMADebugfs: Bool { get }
    /// Whether the step needs cmalab's DMA test driver loaded in the guest (false by default).
    var usesTestDriver: Bool { get }
    /// Kernel options the step needs: on an image without one of them the step is skipped before booting, and
    /// the verdict says why (like the debugfs steps). None by default.
    var requirements: [StepRequirement] { get }
    /// The checks of what the step did.
    func checks(_ result: Result, _ context: StepCheckContext) -> [CheckResult]
}

/// A kernel option a step needs, and why.
public struct StepRequirement: Equatable, Sendable {
    /// The option without `CONFIG_`.
    public var option: String
    public var reason: String
    public init(option: String, reason: String) { self.option = option; self.reason = reason }
}

extension StepModel {
    public var requirements: [StepRequirement] { [] }
    public var usesTestDriver: Bool { false }
}

/// A step kind's typed result. Its wire shape is `StepRecord` (docs/results-schema.md), which holds the fields of
/// every kind as optionals; each result reads and writes only its own.
public protocol StepResult: Sendable {
    /// 0 on success, else the errno (alloc/free) or the exit status (exec, pressure, release).
    var status: Int32 { get }
    /// The kind's fields of a record; those the record lacks stay nil.
    init(_ record: StepRecord)
    /// Writes the kind's fields into a record.
    func fill(_ record: inout StepRecord)
}

/// What a step's checks compare against besides the step's own result.
public struct StepCheckContext: Sendable {
    /// `steps[i].<kind>`: the check names start with it.
    public var name: String
    /// CmaTotal at boot, bytes (0 when unknown): what percentage tolerances of CmaFree refer to.
    public var cmaTotal: UInt64
    /// CmaFree at boot, bytes.
    public var bootFree: UInt64?
}

extension StepModel {
    /// The checks of a record, read as this kind's result.
    func checks(record: StepRecord, _ context: StepCheckContext) -> [CheckResult] {
        checks(Result(record), context)
    }
}

extension StepRecord {
    /// The wire shape of a kind's typed result.
    public init<R: StepResult>(index: Int, kind: StepKind, summary: String, seconds: Double, result: R) {
        self.init(index: index, kind: kind, summary: summary, status: result.status, seconds: seconds)
        result.fill(&self)
    }
}

public enum Step: Equatable, Sendable {
    /// Allocate pages through debugfs (Alloc.swift).
    case alloc(AllocStep)
    /// Free pages through debugfs (Free.swift).
    case free(FreeStep)
    /// Run a command in the guest (Exec.swift).
    case exec(ExecStep)
    /// Fill guest memory with movable pages (Pressure.swift).
    case pressure(PressureStep)
    /// End every pressure (Release.swift).
    case release
    /// A timed, repeatable alloc (MeasuredAlloc.swift).
    case measuredAlloc(MeasuredAlloc)
    /// Allocate through the DMA API for a device with a mask (DMA.swift).
    case dmaAlloc(DMAAllocStep)
    /// Free every DMA API allocation (DMA.swift).
    case dmaFree
    /// Allocate a buffer from a dma-buf heap (Heap.swift).
    case heapAlloc(HeapAllocStep)
    /// Free every heap buffer (Heap.swift).
    case heapFree

    /// The step's settings as its kind's type.
    public var model: any StepModel {
        switch self {
        case .alloc(let s): s
        case .free(let s): s
        case .exec(let s): s
        case .pressure(let s): s
        case .release: ReleaseStep()
        case .measuredAlloc(let s): s
        case .dmaAlloc(let s): s
        case .dmaFree: DMAFreeStep()
        case .heapAlloc(let s): s
        case .heapFree: HeapFreeStep()
        }
    }

    /// Whether the step allocates CMA memory (an alloc, a dma-alloc, a heap-alloc): the run records the CMA trace
    /// events around it where the kernel has them.
    public var allocates: Bool { [.alloc, .dmaAlloc, .heapAlloc].contains(kind) }

    /// See `StepModel.usesTestDriver`.
    public var usesTestDriver: Bool { model.usesTestDriver }

    /// See `StepModel.requirements`.
    public var requirements: [StepRequirement] { model.requirements }

    public var kind: StepKind { type(of: model).kind }

    /// See `StepModel.usesCMADebugfs`.
    public var usesCMADebugfs: Bool { type(of: model).usesCMADebugfs }

    /// The checks of what the step did (`record`), by its kind.
    public func checks(_ record: StepRecord, _ context: StepCheckContext) -> [CheckResult] {
        model.checks(record: record, context)
    }

    /// How a kind is written in `steps:`.
    struct Syntax: Sendable {
        /// The key of `- <key>: {settings}`.
        var key: String
        /// Parses the settings.
        var parse: @Sendable (YAMLValue) throws(InputError) -> Step
        /// For a kind that may be written without settings (`- release`, `- release:`): parses the key when
        /// it is the step's only one, with its value if it has one.
        var alone: (@Sendable (YAMLValue?) throws(InputError) -> Step)? = nil
    }

    /// The registry: every kind's YAML key and parser, in the order messages list them.
    static let syntax: [Syntax] = [
        Syntax(key: "alloc", parse: AllocStep.parse),
        Syntax(key: "free", parse: FreeStep.parse),
        Syntax(key: "exec", parse: ExecStep.parse),
        Syntax(key: "pressure", parse: PressureStep.parse),
        Syntax(key: "release", parse: ReleaseStep.syntax.parse, alone: ReleaseStep.syntax.alone),
        Syntax(key: "dma-alloc", parse: DMAAllocStep.parse),
        Syntax(key: "dma-free", parse: DMAFreeStep.syntax.parse, alone: DMAFreeStep.syntax.alone),
        Syntax(key: "heap-alloc", parse: HeapAllocStep.parse),
        Syntax(key: "heap-free", parse: HeapFreeStep.syntax.parse, alone: HeapFreeStep.syntax.alone),
    ]

    /// The two parsers of a kind without settings (`release`, `dma-free`, `heap-free`): `alone` for the key as
    /// the step's only one (`- release`, `- release:`, `- release: {}`; anything else is `message`), `parse` for
    /// the key next to others.
    static func settingless(_ step: Step, message: String) -> (alone: @Sendable (YAMLValue?) throws(InputError) -> Step,
                                                              parse: @Sendable (YAMLValue) throws(InputError) -> Step) {
        ({ body throws(InputError) in
            if let body, (try? body.mapping(allowed: []))?.keys.isEmpty != true { throw body.error(message) }
            return step
        }, { body throws(InputError) in
            _ = body.isNull ? nil : try body.mapping(allowed: [])
            return step
        })
    }

    /// One entry of `steps:`: a mapping with one kind's key, or a kind's key alone.
    static func parse(_ v: YAMLValue) throws(InputError) -> Step {
        let keys = syntax.map(\.key)
        if let word = try? v.string(), let alone = syntax.first(where: { $0.key == word })?.alone { return try alone(nil) }
        let m = try v.mapping(allowed: keys)
        if m.keys.count == 1, let alone = syntax.first(where: { $0.key == m.keys[0] })?.alone { return try alone(m[m.keys[0]]) }
        let (key, body) = try m.exactlyOne(of: keys)
        return try syntax.first { $0.key == key }!.parse(body)
    }
}
