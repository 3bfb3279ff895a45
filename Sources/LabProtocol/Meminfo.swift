/// /proc/meminfo, both verbatim and parsed.
public struct Meminfo: Equatable, Sendable {
    public var raw: String
    public var fields: [MeminfoField]

    public init(raw: String, fields: [MeminfoField]) {
        self.raw = raw
        self.fields = fields
    }

    /// Parses lines such as `CmaTotal:        1048576 kB` and `HugePages_Total:       0`.
    /// Lines that do not have that shape are ignored.
    public static func parse(_ text: String) -> Meminfo {
        var fields = [MeminfoField]()
        for line in text.split(whereSeparator: { $0.isNewline }) {
            guard let colon = line.firstIndex(of: ":") else { continue }
            let name = line[..<colon]
            let words = line[line.index(after: colon)...].split(whereSeparator: { $0.isWhitespace })
            guard !name.isEmpty, !name.contains(where: { $0.isWhitespace }),
                  (1...2).contains(words.count), let value = UInt64(words[0])
            else { continue }
            fields.append(MeminfoField(name: String(name), value: value, unit: words.count == 2 ? String(words[1]) : nil))
        }
        return Meminfo(raw: text, fields: fields)
    }

    /// The value of the first field with that name: in kB for lines with a kB unit,
    /// otherwise the plain number.
    public subscript(name: String) -> UInt64? {
        fields.first { $0.name == name }?.value
    }
}

public struct MeminfoField: Equatable, Sendable {
    public var name: String
    public var value: UInt64
    /// "kB", or nil for unit-less counts such as HugePages_Total.
    public var unit: String?

    public init(name: String, value: UInt64, unit: String?) {
        self.name = name
        self.value = value
        self.unit = unit
    }
}
