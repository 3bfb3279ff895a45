/// A matrix file (`Matrices/*.yaml`): images × profiles, optional axes (memory sizes, extra command-line
/// variants), exclusions, extra cells, and per-cell expectation overrides. See docs/matrix.md.
///
/// Parsing is pure: profile paths are returned as written (relative to the matrix file); the runtime
/// loads them and calls `cells(profiles:)`.

/// A pattern over image or profile names: exact, or with `*` standing for any run of characters.
public struct NamePattern: Equatable, Sendable, CustomStringConvertible {
    public var text: String
    public init(_ text: String) { self.text = text }

    public func matches(_ name: String) -> Bool {
        let parts = text.split(separator: "*", omittingEmptySubsequences: false).map(String.init)
        if parts.count == 1 { return name == text }
        var rest = Substring(name)
        guard rest.hasPrefix(parts[0]) else { return false }
        rest = rest.dropFirst(parts[0].count)
        for (i, part) in parts.enumerated().dropFirst() {
            if i == parts.count - 1 { return part.isEmpty || rest.hasSuffix(part) }
            guard let r = rest.range(of: part) else { return false }
            rest = rest[r.upperBound...]
        }
        return true
    }

    public var description: String { text }
}

/// Which cells a rule applies to: every given field must match (an absent field matches everything).
public struct CellSelector: Equatable, Sendable {
    public var image: NamePattern?
    public var profile: NamePattern?
    public var memory: ByteSize?
    public var cmdline: String?
    public init(image: NamePattern? = nil, profile: NamePattern? = nil, memory: ByteSize? = nil, cmdline: String? = nil) {
        self.image = image; self.profile = profile; self.memory = memory; self.cmdline = cmdline
    }

    public func matches(_ cell: MatrixCell) -> Bool {
        if let image, !image.matches(cell.image) { return false }
        if let profile, !profile.matches(cell.profile.name) { return false }
        if let memory, cell.profile.machine.memory != memory { return false }
        if let cmdline, cell.extraCommandLine != cmdline { return false }
        return true
    }
}

/// Expectation keys a per-cell override replaces (the same keys as a profile's `expect:`).
public struct ExpectationOverride: Equatable, Sendable {
    public var selector: CellSelector
    public var expect: Expectations
    /// The `expect:` keys the override gives; only those replace the profile's.
    public var keys: [String]
    /// Where the override is written (`file:line`), shown in reports.
    public var origin: String
}

public struct MatrixSpec: Equatable, Sendable {
    public var name: String
    public var summary: String
    public var file: String
    public var images: [String]
    /// Profile files or folders, as written (relative to the matrix file's folder).
    public var profilePaths: [String]
    /// Axis: guest memory sizes (nil: each profile's own).
    public var memories: [ByteSize]?
    /// Axis: extra kernel parameters appended to each profile's command line (`""` is "none").
    public var cmdlines: [String]?
    public var exclude: [CellSelector] = []
    /// Extra cells outside images × profiles (e.g. a profile that only makes sense on one image).
    public var include: [(image: String, profile: String)] = []
    public var overrides: [ExpectationOverride] = []

    public static func == (a: MatrixSpec, b: MatrixSpec) -> Bool {
        a.name == b.name && a.summary == b.summary && a.file == b.file && a.images == b.images && a.profilePaths == b.profilePaths
            && a.memories == b.memories && a.cmdlines == b.cmdlines && a.exclude == b.exclude
            && a.include.map { "\($0.image)/\($0.profile)" } == b.include.map { "\($0.image)/\($0.profile)" } && a.overrides == b.overrides
    }

    static let topKeys = ["name", "description", "images", "profiles", "axes", "exclude", "include", "overrides"]

    public static func parse(_ text: String, file: String) throws(InputError) -> MatrixSpec {
        let root = try YAMLValue.parse(text, file: file)
        let m = try root.mapping(allowed: topKeys)
        let nameValue = try m.required("name")
        let name = try nameValue.string()
        guard ImageDefinition.isValidName(name) else {
            throw nameValue.error("matrix names use letters, digits, `.`, `_` and `-` only, found `\(name)`")
        }
        func names(_ v: YAMLValue, what: String) throws(InputError) -> [String] {
            let list = try v.sequenceOrSingle()
            guard !list.isEmpty else { throw v.error("list at least one \(what)") }
            var out: [String] = []
            for x in list {
                let s = try x.string()
                guard !out.contains(s) else { throw x.error("\(what) `\(s)` is listed twice") }
                out.append(s)
            }
            return out
        }
        var spec = MatrixSpec(name: name, summary: try m["description"]?.string() ?? "", file: file,
                              images: try names(try m.required("images", hint: "the image names (from Images/) to run on"), what: "image"),
                              profilePaths: try names(try m.required("profiles", hint: "profile files or folders, relative to this file"), what: "profile path"))
        if let axes = m["axes"] {
            let a = try axes.mapping(allowed: ["memory", "cmdline"])
            if let mem = a["memory"] {
                var sizes: [ByteSize] = []
                for x in try mem.sequenceOrSingle() {
                    let s = try x.size()
                    guard s.bytes >= 64 << 20 else { throw x.error("a guest needs at least 64M of memory, found \(s)") }
                    guard !sizes.contains(s) else { throw x.error("memory \(s) is listed twice") }
                    sizes.append(s)
                }
                guard !sizes.isEmpty else { throw mem.error("list at least one memory size") }
                spec.memories = sizes
            }
            if let c = a["cmdline"] {
                var lines: [String] = []
                for x in try c.sequenceOrSingle() {
                    let s = x.isNull ? "" : try x.string()
                    guard !lines.contains(s) else { throw x.error("command-line variant `\(s)` is listed twice") }
                    lines.append(s)
                }
                guard !lines.isEmpty else { throw c.error("list at least one command-line variant (`\"\"` for none)") }
                spec.cmdlines = lines
            }
        }
        if let ex = m["exclude"] {
            spec.exclude = try ex.sequence().map { x throws(InputError) in try parseSelector(x, allowed: []) }
        }
        if let inc = m["include"] {
            for x in try inc.sequence() {
                let im = try x.mapping(allowed: ["image", "profile"])
                let image = try im.required("image").string()
                guard !image.contains("*") else { throw x.error("an included cell names one image, without `*`") }
                for p in try im.required("profile", hint: "a profile name or a list of them").sequenceOrSingle() {
                    let profile = try p.string()
                    guard !profile.contains("*") else { throw p.error("an included cell names its profiles, without `*`") }
                    spec.include.append((image, profile))
                }
            }
        }
        if let ov = m["overrides"] {
            for x in try ov.sequence() {
                let sel = try parseSelector(x, allowed: ["expect"])
                let mapping = try x.mapping(allowed: ["image", "profile", "memory", "cmdline", "expect"])
                let e = try mapping.required("expect", hint: "the expectation keys that differ for these cells")
                let keys = try e.mapping(allowed: Profile.expectationKeys).keys
                guard !keys.isEmpty else { throw e.error("give at least one expectation key") }
                spec.overrides.append(ExpectationOverride(selector: sel, expect: try Profile.parseExpectations(e), keys: keys,
                                                          origin: "\(file):\(x.line ?? 0)"))
            }
        }
        return spec
    }

    static func parseSelector(_ v: YAMLValue, allowed extra: [String]) throws(InputError) -> CellSelector {
        let m = try v.mapping(allowed: ["image", "profile", "memory", "cmdline"] + extra)
        var s = CellSelector()
        if let i = m["image"] { s.image = NamePattern(try i.string()) }
        if let p = m["profile"] { s.profile = NamePattern(try p.string()) }
        if let mem = m["memory"] { s.memory = try mem.size() }
        if let c = m["cmdline"] { s.cmdline = try c.string() }
        if s == CellSelector() { throw v.error("give at least one of image, profile, memory, cmdline") }
        return s
    }

    /// Expands the matrix into cells, in a stable order (sorted by id). `profiles` are the loaded profiles.
    /// Throws when an exclusion or override matches nothing (a typo there would silently do nothing).
    /// `architecture` tells an image's architecture when known: an arm64 profile never pairs with an x86_64
    /// image of `images:` (or the other way round), so one matrix can hold both kinds of profile without
    /// excluding each cross pair by hand. Such pairs are not cells; an `include:` of one is an error.
    public func cells(profiles: [Profile], architecture: (String) -> Architecture? = { _ in nil }) throws(InputError) -> [MatrixCell] {
        func runs(_ p: Profile, on image: String) -> Bool { architecture(image).map { $0 == p.machine.architecture } ?? true }
        var out: [MatrixCell] = []
        var seen = Set<String>()
        func add(_ image: String, _ base: Profile, memory: ByteSize?, cmdline: String) {
            var p = base
            if let memory { p.machine.memory = memory }
            if !cmdline.isEmpty { p.commandLine = p.commandLine.appending(KernelCommandLine(parsing: cmdline)) }
            var cell = MatrixCell(image: image, profile: p, memoryAxis: memory, extraCommandLine: cmdline)
            guard !seen.contains(cell.id) else { return }
            for o in overrides where o.selector.matches(cell) {
                cell.profile.expect.override(with: o.expect, keys: o.keys)
                cell.overrides.append(o.origin)
            }
            seen.insert(cell.id)
            out.append(cell)
        }
        var usedExclusions = Set<Int>()
        for image in images {
            for p in profiles where runs(p, on: image) {
                for mem in memories.map({ $0.map(Optional.some) }) ?? [nil] {
                    for c in cmdlines ?? [""] {
                        var probe = p
                        if let mem { probe.machine.memory = mem }
                        let cell = MatrixCell(image: image, profile: probe, memoryAxis: mem, extraCommandLine: c)
                        if let i = exclude.firstIndex(where: { $0.matches(cell) }) { usedExclusions.insert(i); continue }
                        add(image, p, memory: mem, cmdline: c)
                    }
                }
            }
        }
        for (image, name) in include {
            guard let p = profiles.first(where: { $0.name == name }) else {
                throw InputError(file: file, message: "include: no profile named `\(name)` among the matrix's profiles (\(profiles.map(\.name).joined(separator: ", ")))")
            }
            guard runs(p, on: image) else {
                throw InputError(file: file, message: "include: profile `\(name)` is for \(p.machine.architecture) machines, and image `\(image)` is not an \(p.machine.architecture) image")
            }
            add(image, p, memory: nil, cmdline: "")
        }
        for i in exclude.indices where !usedExclusions.contains(i) {
            throw InputError(file: file, path: "exclude[\(i)]", message: "this exclusion matches no cell: check the image and profile names")
        }
        for (i, o) in overrides.enumerated() where !out.contains(where: { o.selector.matches($0) }) {
            throw InputError(file: file, path: "overrides[\(i)]", message: "this override matches no cell (\(o.origin)): check the image and profile names")
        }
        return out.sorted { $0.id < $1.id }
    }
}

/// One cell: a profile (with the matrix's axes and overrides applied) on one image.
public struct MatrixCell: Equatable, Sendable {
    public var image: String
    public var profile: Profile
    public var memoryAxis: ByteSize?
    public var extraCommandLine: String
    /// The overrides applied (their `file:line`).
    public var overrides: [String] = []

    public init(image: String, profile: Profile, memoryAxis: ByteSize?, extraCommandLine: String) {
        self.image = image; self.profile = profile; self.memoryAxis = memoryAxis; self.extraCommandLine = extraCommandLine
    }

    /// The cell as a value: what a verdict carries.
    public var key: CellKey {
        CellKey(profile: profile.name, image: image, memory: memoryAxis, cmdline: extraCommandLine.isEmpty ? nil : extraCommandLine)
    }

    /// Stable across machines: `profile@image`, plus `[memory=8G]` and `[cmdline=...]` for axis values.
    public var id: String { key.id }
}

/// Which profile ran on which image, with the matrix's axis values: a cell as results carry it (JSON `cellKey`).
public struct CellKey: Codable, Hashable, Sendable {
    public var profile: String
    public var image: String
    /// The `memory` axis value; nil when the matrix has no memory axis.
    public var memory: ByteSize?
    /// The `cmdline` axis value; nil when the matrix has none (or it is empty).
    public var cmdline: String?

    public init(profile: String, image: String, memory: ByteSize? = nil, cmdline: String? = nil) {
        self.profile = profile; self.image = image; self.memory = memory; self.cmdline = cmdline
    }

    /// The axis values as the id writes them: `[memory=8G]` then `[cmdline=...]`; empty without axes.
    public var axes: String {
        (memory.map { "[memory=\($0)]" } ?? "") + (cmdline.map { "[cmdline=\($0)]" } ?? "")
    }

    /// The cell id: `profile@image` plus `axes` (JSON `cell`).
    public var id: String { "\(profile)@\(image)\(axes)" }

    /// Legacy compatibility only: the key back from an `id`, for results written before verdicts carried
    /// `cellKey` (their decoding is the one caller). Nil when the text is not an id this type would write.
    public static func legacy(id text: String) -> CellKey? {
        guard let at = text.firstIndex(of: "@") else { return nil }
        var rest = text[text.index(after: at)...]
        let open = rest.firstIndex(of: "[") ?? rest.endIndex
        var key = CellKey(profile: String(text[..<at]), image: String(rest[..<open]))
        rest = rest[open...]
        if rest.hasPrefix("[memory="), let close = rest.firstIndex(of: "]") {
            key.memory = try? ByteSize.parse(String(rest[rest.index(rest.startIndex, offsetBy: "[memory=".count)..<close]))
            rest = rest[rest.index(after: close)...]
        }
        if rest.hasPrefix("[cmdline="), rest.hasSuffix("]") { key.cmdline = String(rest.dropFirst("[cmdline=".count).dropLast()) }
        return key.id == text ? key : nil
    }
}

/// `--shard K/N`: cell i (in id order) belongs to shard (i mod N) + 1. Deterministic and balanced: every
/// machine that reads the same matrix file computes the same partition.
public struct Shard: Equatable, Sendable, CustomStringConvertible {
    public var index: Int
    public var count: Int

    public init(index: Int, count: Int) { self.index = index; self.count = count }

    public static func parse(_ text: String) throws(InputError) -> Shard {
        let parts = text.split(separator: "/", omittingEmptySubsequences: false)
        guard parts.count == 2, let k = Int(parts[0]), let n = Int(parts[1]), n >= 1, k >= 1, k <= n else {
            throw InputError(file: "--shard", message: "a shard is K/N with 1 <= K <= N (e.g. 1/2), found `\(text)`")
        }
        return Shard(index: k, count: n)
    }

    public func select<T>(_ items: [T]) -> [T] {
        items.enumerated().filter { $0.offset % count == index - 1 }.map(\.element)
    }

    public var description: String { "\(index)/\(count)" }
}

extension Expectations {
    /// Replaces the fields named by `keys` (profile `expect:` keys) with those of `other`.
    public mutating func override(with other: Expectations, keys: [String]) {
        for key in keys {
            switch key {
            case "outcome": outcome = other.outcome
            case "areas": areaCount = other.areaCount
            case "area-names": areaNames = other.areaNames
            case "size": size = other.size
            case "base": baseExact = other.baseExact; baseMin = other.baseMin; baseMax = other.baseMax
            case "within": within = other.within
            case "cma-total": cmaTotal = other.cmaTotal
            case "cma-free": cmaFree = other.cmaFree
            case "memory-cma-reserved": memoryCmaReserved = other.memoryCmaReserved
            case "dmesg":
                dmesgContains = other.dmesgContains; dmesgAbsent = other.dmesgAbsent
                dmesgMatches = other.dmesgMatches; dmesgNotMatches = other.dmesgNotMatches
            case "crash": crashContains = other.crashContains
            case "nodes": areaNodes = other.areaNodes
            default: break
            }
        }
    }
}
