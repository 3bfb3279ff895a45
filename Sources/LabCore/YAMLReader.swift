import Yams

/// Where a problem in an input file is, and what to do about it.
public struct InputError: Error, Equatable, Sendable, CustomStringConvertible {
    public var file: String
    public var line: Int?
    public var column: Int?
    /// The path of the value inside the document, e.g. `steps[2].alloc.pages`; empty for the whole file.
    public var path: String
    public var message: String

    public init(file: String, line: Int? = nil, column: Int? = nil, path: String = "", message: String) {
        self.file = file; self.line = line; self.column = column; self.path = path; self.message = message
    }

    public var description: String {
        var s = file
        if let line { s += ":\(line)" ; if let column { s += ":\(column)" } }
        s += ": "
        if !path.isEmpty { s += "at `\(path)`: " }
        return s + message
    }
}

/// A YAML node with its file, position and path, read with strict, typed accessors: unknown keys,
/// wrong types and bad values are `InputError`s that point at the line and say what is allowed.
public struct YAMLValue {
    public let node: Node
    public let file: String
    public let path: String

    /// Parses a document. An empty document is an error (a profile or image file must say something).
    public static func parse(_ text: String, file: String) throws(InputError) -> YAMLValue {
        let node: Node?
        do {
            node = try Yams.compose(yaml: text)
        } catch let e as YamlError {
            throw Self.convert(e, file: file)
        } catch {
            throw InputError(file: file, message: "cannot read YAML: \(error)")
        }
        guard let node else { throw InputError(file: file, line: 1, message: "the file is empty") }
        return YAMLValue(node: node, file: file, path: "")
    }

    static func convert(_ e: YamlError, file: String) -> InputError {
        switch e {
        case let .scanner(context, problem, mark, _), let .parser(context, problem, mark, _), let .composer(context, problem, mark, _):
            let ctx = context.map { "\($0.text) " } ?? ""
            return InputError(file: file, line: mark.line, column: mark.column, message: "YAML syntax: \(ctx)\(problem)")
        case let .duplicatedKeysInMapping(duplicates, context):
            return InputError(file: file, line: context.mark.line, column: context.mark.column,
                              message: "duplicate key(s) \(duplicates.sorted().joined(separator: ", ")): each key may appear once")
        default:
            return InputError(file: file, message: "YAML: \(e)")
        }
    }

    public var line: Int? { node.mark?.line }
    public var column: Int? { node.mark?.column }

    public func error(_ message: String) -> InputError {
        InputError(file: file, line: line, column: column, path: path, message: message)
    }

    func child(_ node: Node, key: String) -> YAMLValue {
        YAMLValue(node: node, file: file, path: path.isEmpty ? key : "\(path).\(key)")
    }

    private var kindName: String {
        switch node {
        case .scalar: return "a scalar"
        case .mapping: return "a mapping"
        case .sequence: return "a list"
        case .alias: return "an alias"
        }
    }

    public var isNull: Bool {
        if case .scalar(let s) = node, s.style == .plain, ["", "~", "null", "Null", "NULL"].contains(s.string) { return true }
        return false
    }

    /// A mapping whose keys must all be in `allowed`.
    public func mapping(allowed: [String]) throws(InputError) -> YAMLMapping {
        guard case .mapping(let m) = node else { throw error("expected a mapping with keys \(allowed.joined(separator: ", ")), found \(kindName)") }
        var entries: [(String, YAMLValue, YAMLValue)] = []
        for (k, v) in m {
            guard case .scalar(let ks) = k else { throw error("mapping keys must be plain words") }
            let keyValue = YAMLValue(node: k, file: file, path: path)
            guard allowed.contains(ks.string) else {
                let hint = Self.closest(ks.string, in: allowed).map { " (did you mean `\($0)`?)" } ?? ""
                throw InputError(file: file, line: k.mark?.line, column: k.mark?.column, path: path,
                                 message: "unknown key `\(ks.string)`\(hint); allowed keys: \(allowed.joined(separator: ", "))")
            }
            entries.append((ks.string, keyValue, child(v, key: ks.string)))
        }
        return YAMLMapping(owner: self, entries: entries)
    }

    public func sequence() throws(InputError) -> [YAMLValue] {
        guard case .sequence(let s) = node else { throw error("expected a list, found \(kindName)") }
        return s.enumerated().map { i, n in YAMLValue(node: n, file: file, path: "\(path)[\(i)]") }
    }

    /// A list, or a single value taken as a one-element list.
    public func sequenceOrSingle() throws(InputError) -> [YAMLValue] {
        if case .sequence = node { return try sequence() }
        return [self]
    }

    public func string() throws(InputError) -> String {
        guard case .scalar(let s) = node else { throw error("expected a string, found \(kindName)") }
        return s.string
    }

    public func int(in range: ClosedRange<Int>? = nil) throws(InputError) -> Int {
        let s = try string()
        guard let v = Self.parseInteger(s) else { throw error("expected a whole number, found `\(s)`") }
        if let range, !range.contains(v) { throw error("\(v) is out of range: allowed \(range.lowerBound)...\(range.upperBound)") }
        return v
    }

    public func uint64() throws(InputError) -> UInt64 {
        let s = try string()
        guard let v = Self.parseInteger(s), v >= 0 else { throw error("expected a non-negative whole number, found `\(s)`") }
        return UInt64(v)
    }

    public func double() throws(InputError) -> Double {
        let s = try string()
        guard let v = Double(s.replacingAll("_", with: "")) else { throw error("expected a number, found `\(s)`") }
        return v
    }

    public func bool() throws(InputError) -> Bool {
        let s = try string()
        switch s.lowercased() {
        case "true", "yes", "on": return true
        case "false", "no", "off": return false
        default: throw error("expected true or false, found `\(s)`")
        }
    }

    public func size() throws(InputError) -> ByteSize {
        let s = try string()
        do { return try ByteSize.parse(s) } catch { throw self.error(error.description) }
    }

    public func oneOf<T: RawRepresentable & CaseIterable>(_: T.Type) throws(InputError) -> T where T.RawValue == String {
        let s = try string()
        guard let v = T(rawValue: s) else {
            throw error("`\(s)` is not allowed; use one of: \(T.allCases.map(\.rawValue).joined(separator: ", "))")
        }
        return v
    }

    static func parseInteger(_ s: String) -> Int? {
        let t = s.replacingAll("_", with: "")
        if t.hasPrefix("0x") || t.hasPrefix("0X") { return Int(t.dropFirst(2), radix: 16) }
        return Int(t)
    }

    /// The allowed word nearest to a misspelt one (edit distance ≤ 2).
    static func closest(_ word: String, in candidates: [String]) -> String? {
        func distance(_ a: [Character], _ b: [Character]) -> Int {
            var prev = Array(0...b.count)
            for (i, ca) in a.enumerated() {
                var cur = [i + 1] + Array(repeating: 0, count: b.count)
                for (j, cb) in b.enumerated() {
                    cur[j + 1] = min(prev[j + 1] + 1, cur[j] + 1, prev[j] + (ca == cb ? 0 : 1))
                }
                prev = cur
            }
            return prev[b.count]
        }
        let w = Array(word)
        let best = candidates.map { ($0, distance(w, Array($0))) }.min { $0.1 < $1.1 }
        return best.flatMap { $0.1 <= 2 ? $0.0 : nil }
    }
}

public struct YAMLMapping {
    public let owner: YAMLValue
    let entries: [(String, YAMLValue, YAMLValue)]

    public var keys: [String] { entries.map(\.0) }

    public subscript(key: String) -> YAMLValue? {
        entries.first { $0.0 == key }.flatMap { $0.2.isNull ? nil : $0.2 }
    }

    public func required(_ key: String, hint: String = "") throws(InputError) -> YAMLValue {
        guard let v = self[key] else {
            throw owner.error("missing required key `\(key)`\(hint.isEmpty ? "" : ": \(hint)")")
        }
        return v
    }

    /// Exactly one of `keys` must be present; returns which and its value.
    public func exactlyOne(of keys: [String]) throws(InputError) -> (String, YAMLValue) {
        let present = keys.compactMap { k in self[k].map { (k, $0) } }
        guard present.count == 1 else {
            if present.isEmpty { throw owner.error("needs one of: \(keys.joined(separator: ", "))") }
            throw owner.error("give only one of \(present.map(\.0).joined(separator: ", "))")
        }
        return present[0]
    }
}
