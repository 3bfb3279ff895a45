/// Reading kernel `.config` files and config fragments.

public struct KernelConfig: Sendable, Equatable {
    /// Option name (with the `CONFIG_` prefix) to value; `# CONFIG_X is not set` reads as "n".
    public private(set) var values: [String: String] = [:]

    public init(values: [String: String] = [:]) { self.values = values }

    public init(parsing text: String) {
        for line in text.split(whereSeparator: \.isNewline) {
            if let (k, v) = Self.parseLine(Substring(line)) { values[k] = v }
        }
    }

    /// `CONFIG_X=y` → ("CONFIG_X", "y"); `# CONFIG_X is not set` → ("CONFIG_X", "n"); else nil.
    static func parseLine(_ raw: Substring) -> (String, String)? {
        let line = raw.trimmingCharacters(in: " ")
        if line.hasPrefix("CONFIG_"), let eq = line.firstIndex(of: "=") {
            var value = String(line[line.index(after: eq)...])
            if value.count >= 2, value.first == "\"", value.last == "\"" { value = String(value.dropFirst().dropLast()) }
            return (String(line[..<eq]), value)
        }
        if line.hasPrefix("# CONFIG_"), line.hasSuffix(" is not set") {
            let name = line.dropFirst(2).dropLast(" is not set".count)
            return (String(name), "n")
        }
        return nil
    }

    public subscript(option: String) -> String? {
        values[option.hasPrefix("CONFIG_") ? option : "CONFIG_" + option]
    }

    /// True when the option is `y` (or `m`).
    public func isEnabled(_ option: String) -> Bool {
        guard let v = self[option] else { return false }
        return v == "y" || v == "m"
    }

    /// The value an option effectively has: absent options are "n" for bool/tristate purposes.
    public func effectiveValue(_ option: String) -> String { self[option] ?? "n" }
}

/// One option a fragment asks for.
public struct FragmentRequirement: Sendable, Equatable {
    public var option: String
    public var value: String
    public var file: String
    public var line: Int
}

/// An option that Kconfig dropped or changed during olddefconfig.
public struct DroppedOption: Sendable, Equatable, CustomStringConvertible {
    public var requirement: FragmentRequirement
    public var actual: String?
    public var description: String {
        let got = actual.map { $0 == "n" ? "is not set" : "=\($0)" } ?? "is absent (no such symbol in this kernel, or its dependencies are off)"
        return "\(requirement.file):\(requirement.line): \(requirement.option)=\(requirement.value) was dropped: the final .config has \(requirement.option) \(got)"
    }
}

public enum ConfigFragment {
    /// The requirements of one fragment file, in order.
    public static func requirements(_ text: String, file: String) -> [FragmentRequirement] {
        var out: [FragmentRequirement] = []
        for (i, line) in text.split(separator: "\n", omittingEmptySubsequences: false).enumerated() {
            if let (k, v) = KernelConfig.parseLine(line) {
                out.append(FragmentRequirement(option: k, value: v, file: file, line: i + 1))
            }
        }
        return out
    }

    /// Checks the final config against what the fragments asked for. Later fragments override earlier ones.
    public static func verify(_ requirements: [FragmentRequirement], against config: KernelConfig) -> [DroppedOption] {
        var last: [String: FragmentRequirement] = [:]
        var order: [String] = []
        for r in requirements {
            if last[r.option] == nil { order.append(r.option) }
            last[r.option] = r
        }
        return order.compactMap { name in
            let r = last[name]!
            let actual = config[name]
            if r.value == "n" { return (actual == nil || actual == "n") ? nil : DroppedOption(requirement: r, actual: actual) }
            return actual == r.value ? nil : DroppedOption(requirement: r, actual: actual)
        }
    }
}
