/// The kernel command line as a typed value: an ordered list of parameters, split the way the kernel's
/// `next_arg()` splits them (whitespace separates, double quotes group), rendered back in order.
public struct KernelCommandLine: Equatable, Sendable, CustomStringConvertible, ExpressibleByStringLiteral, Codable {
    public struct Parameter: Equatable, Sendable, Codable {
        public var key: String
        public var value: String?
        public init(key: String, value: String? = nil) { self.key = key; self.value = value }

        var rendered: String {
            guard let value else { return key }
            let needsQuotes = value.contains(" ") || value.contains("\t")
            return needsQuotes ? "\(key)=\"\(value)\"" : "\(key)=\(value)"
        }
    }

    public private(set) var parameters: [Parameter]

    public init(_ parameters: [Parameter] = []) { self.parameters = parameters }
    /// Coded as the list of parameters (`[{"key": "cma", "value": "1G@1-2G"}, ...]`).
    public init(from decoder: any Decoder) throws { parameters = try [Parameter](from: decoder) }
    public func encode(to encoder: any Encoder) throws { try parameters.encode(to: encoder) }
    public init(stringLiteral value: String) { self.init(parsing: value) }

    /// Splits like `next_arg()` in lib/cmdline.c: a quote toggles "in quotes"; quotes around a value are dropped.
    public init(parsing text: String) {
        var params: [Parameter] = []
        var current = ""
        var inQuotes = false
        var started = false
        func flush() {
            guard started else { return }
            if let eq = current.firstIndex(of: "=") {
                var value = String(current[current.index(after: eq)...])
                if value.count >= 2, value.first == "\"", value.last == "\"" { value = String(value.dropFirst().dropLast()) }
                params.append(Parameter(key: String(current[..<eq]), value: value))
            } else {
                params.append(Parameter(key: current.replacingAll("\"", with: "")))
            }
            current = ""; started = false
        }
        for ch in text {
            if ch == "\"" { inQuotes.toggle(); current.append(ch); started = true; continue }
            if !inQuotes, ch == " " || ch == "\t" || ch == "\n" { flush(); continue }
            current.append(ch); started = true
        }
        flush()
        self.parameters = params
    }

    public var description: String { parameters.map(\.rendered).joined(separator: " ") }

    /// The first control character (0x00-0x1F, 0x7F) inside a parameter, with that parameter's key: the
    /// kernel reads one line of printable text, and a newline would end a comment line in reproduce.sh.
    public var controlCharacter: (key: String, scalar: Unicode.Scalar)? {
        for p in parameters {
            for scalar in (p.key + "=" + (p.value ?? "")).unicodeScalars where scalar.value < 0x20 || scalar.value == 0x7F {
                return (p.key, scalar)
            }
        }
        return nil
    }

    /// The last value given for `key` (the kernel's early_param handlers see every occurrence, and the
    /// last one wins for most of them).
    public func value(of key: String) -> String? { parameters.last(where: { $0.key == key })?.value }
    public func contains(_ key: String) -> Bool { parameters.contains { $0.key == key } }
    public func values(of key: String) -> [String] { parameters.filter { $0.key == key }.compactMap(\.value) }

    public mutating func append(_ key: String, _ value: String? = nil) { parameters.append(Parameter(key: key, value: value)) }
    public mutating func append(contentsOf other: KernelCommandLine) { parameters.append(contentsOf: other.parameters) }

    /// Sets `key` unless the line already has it: the lab's defaults never override what a user wrote.
    public mutating func setDefault(_ key: String, _ value: String? = nil) {
        if !contains(key) { append(key, value) }
    }

    public func appending(_ other: KernelCommandLine) -> KernelCommandLine {
        var copy = self; copy.append(contentsOf: other); return copy
    }
}

extension String {
    func replacingAll(_ target: Character, with replacement: String) -> String {
        var out = ""
        for c in self { if c == target { out += replacement } else { out.append(c) } }
        return out
    }
}
