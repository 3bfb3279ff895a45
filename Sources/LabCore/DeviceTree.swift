/// A profile's `device-tree:` section: the `reserved-memory` nodes an arm64 board's device tree carries, which
/// cmalab adds to the tree QEMU builds for `virt` (LabRuntime/DeviceTreeBuild.swift compiles the result).
///
/// ```yaml
/// device-tree:
///   reserved-memory:
///     - {name: linux,cma, size: 256M, alloc-ranges: [[1G, 1G]], reusable: true, linux,cma-default: true}
///     - {name: fw, reg: [0x60000000, 16M], no-map: true}
/// ```
///
/// The properties are those of the kernel's reserved-memory binding
/// (Documentation/devicetree/bindings/reserved-memory): a node has a `reg` (a static region) or a `size` (the
/// kernel places it, inside `alloc-ranges` when given, aligned to `alignment`); `reusable` with
/// `compatible = "shared-dma-pool"` makes it a CMA pool, `linux,cma-default` the default one; `no-map` keeps it out
/// of the linear map. Pure: parsing and the device-tree source text.
public struct DeviceTree: Equatable, Sendable {
    public var reservedMemory: [ReservedMemoryNode]
    public init(reservedMemory: [ReservedMemoryNode] = []) { self.reservedMemory = reservedMemory }

    public var isEmpty: Bool { reservedMemory.isEmpty }

    /// The nodes as a device-tree source fragment that reopens `/` and adds `reserved-memory`. Appended to the dts
    /// of QEMU's tree, dtc merges it into the root node (a later definition of a node adds to the earlier one).
    public var source: String {
        var s = "\n/* cmalab: the profile's device-tree: section */\n/ {\n\treserved-memory {\n"
        s += "\t\t#address-cells = <0x02>;\n\t\t#size-cells = <0x02>;\n\t\tranges;\n"
        for node in reservedMemory { s += node.source(indent: "\t\t") }
        s += "\t};\n};\n"
        return s
    }
}

public struct ReservedMemoryNode: Equatable, Sendable {
    /// The node name without its unit address (`linux,cma`, `fw`); `reg` nodes get `@<address>` appended.
    public var name: String
    /// `compatible`; `shared-dma-pool` when the profile says `reusable` and names none.
    public var compatible: String?
    /// A static region: the kernel reserves exactly [start, end).
    public var reg: AddressRange?
    /// A dynamic region's size: the kernel finds the place.
    public var size: UInt64?
    public var alignment: UInt64?
    /// Where a dynamic region may go (each [start, end)); empty: anywhere in RAM.
    public var allocRanges: [AddressRange] = []
    public var reusable = false
    public var noMap = false
    public var cmaDefault = false

    public init(name: String) { self.name = name }

    /// The node's name in the tree: `name@address` for a static region, as the binding asks.
    public var nodeName: String { reg.map { "\(name)@\(String($0.start, radix: 16))" } ?? name }

    /// The `compatible` the node is written with.
    public var effectiveCompatible: String? { compatible ?? (reusable ? "shared-dma-pool" : nil) }

    /// True when the kernel makes a CMA area of it (`rmem_cma_setup`: shared-dma-pool, reusable, not no-map).
    public var isCMAPool: Bool { effectiveCompatible == "shared-dma-pool" && reusable && !noMap }

    func source(indent: String) -> String {
        func cells(_ v: UInt64) -> String { "0x\(String(v >> 32, radix: 16)) 0x\(String(v & 0xffff_ffff, radix: 16))" }
        let i = indent + "\t"
        var s = "\(indent)\(nodeName) {\n"
        if let c = effectiveCompatible { s += "\(i)compatible = \"\(c)\";\n" }
        if let r = reg { s += "\(i)reg = <\(cells(r.start)) \(cells(r.size))>;\n" }
        if let size { s += "\(i)size = <\(cells(size))>;\n" }
        if let alignment { s += "\(i)alignment = <\(cells(alignment))>;\n" }
        if !allocRanges.isEmpty {
            s += "\(i)alloc-ranges = <\(allocRanges.map { "\(cells($0.start)) \(cells($0.size))" }.joined(separator: " "))>;\n"
        }
        if reusable { s += "\(i)reusable;\n" }
        if noMap { s += "\(i)no-map;\n" }
        if cmaDefault { s += "\(i)linux,cma-default;\n" }
        return s + "\(indent)};\n"
    }
}

extension DeviceTree {
    public static let keys = ["reserved-memory"]
    public static let nodeKeys = ["name", "compatible", "reg", "size", "alignment", "alloc-ranges", "reusable", "no-map", "linux,cma-default"]

    /// Parses `device-tree:`. Every number is an address or size (`256M`, `0x60000000`); names and `compatible`
    /// are checked against the characters a device-tree node name and string may hold, so nothing from the
    /// profile can break out of the generated source.
    public static func parse(_ v: YAMLValue) throws(InputError) -> DeviceTree {
        let m = try v.mapping(allowed: keys)
        var tree = DeviceTree()
        guard let list = m["reserved-memory"] else { throw v.error("`device-tree:` needs a `reserved-memory:` list") }
        var names: Set<String> = []
        for item in try list.sequence() {
            let node = try parseNode(item)
            guard names.insert(node.nodeName).inserted else { throw item.error("two reserved-memory nodes are named `\(node.nodeName)`") }
            tree.reservedMemory.append(node)
        }
        guard tree.reservedMemory.filter(\.cmaDefault).count <= 1 else {
            throw list.error("only one node may be `linux,cma-default: true` (the kernel takes the first and ignores the rest)")
        }
        return tree
    }

    static func parseNode(_ v: YAMLValue) throws(InputError) -> ReservedMemoryNode {
        let m = try v.mapping(allowed: nodeKeys)
        let nameValue = try m.required("name")
        let name = try nameValue.string()
        guard isNodeName(name) else {
            throw nameValue.error("a node name is 1 to 31 of letters, digits and `,._+-`, starting with a letter, found `\(name)`")
        }
        var node = ReservedMemoryNode(name: name)
        if let c = m["compatible"] {
            let s = try c.string()
            guard !s.isEmpty, s.count <= 64, s.allSatisfy({ $0.isASCII && ($0.isLetter || $0.isNumber || ",._+-".contains($0)) }) else {
                throw c.error("`compatible` is a name like shared-dma-pool (letters, digits and `,._+-`), found `\(s)`")
            }
            node.compatible = s
        }
        if let r = m["reg"] {
            let pair = try r.sequence()
            guard pair.count == 2 else { throw r.error("`reg` is [base, size], like [0x60000000, 16M]") }
            let base = try pair[0].size().bytes, size = try pair[1].size().bytes
            node.reg = try range(base: base, size: size, at: r)
        }
        if let s = m["size"] {
            node.size = try s.size().bytes
            guard node.size! > 0 else { throw s.error("`size` must not be 0") }
        }
        guard (node.reg == nil) != (node.size == nil) else {
            throw v.error("a reserved-memory node has either `reg` (a fixed region) or `size` (the kernel places it), not \(node.reg == nil ? "neither" : "both")")
        }
        if let a = m["alignment"] {
            let align = try a.size().bytes
            guard align > 0, align & (align - 1) == 0 else { throw a.error("`alignment` must be a power of two") }
            node.alignment = align
        }
        if let ranges = m["alloc-ranges"] {
            guard node.size != nil else { throw ranges.error("`alloc-ranges` is for a node with `size`; a `reg` node is fixed") }
            for item in try ranges.sequence() {
                let pair = try item.sequence()
                guard pair.count == 2 else { throw item.error("each alloc-range is [base, size], like [1G, 1G]") }
                node.allocRanges.append(try range(base: try pair[0].size().bytes, size: try pair[1].size().bytes, at: item))
            }
            guard !node.allocRanges.isEmpty else { throw ranges.error("`alloc-ranges` needs at least one [base, size]") }
        }
        if let b = m["reusable"] { node.reusable = try b.bool() }
        if let b = m["no-map"] { node.noMap = try b.bool() }
        if let b = m["linux,cma-default"] { node.cmaDefault = try b.bool() }
        return node
    }

    static func range(base: UInt64, size: UInt64, at v: YAMLValue) throws(InputError) -> AddressRange {
        guard size > 0 else { throw v.error("a region's size must not be 0") }
        let (end, overflow) = base.addingReportingOverflow(size)
        guard !overflow, end <= 1 << 48 else { throw v.error("the region ends past 2^48, beyond any arm64 physical address") }
        return AddressRange(base, end)
    }

    /// A device-tree node name (without unit address): the binding's characters, at most 31 of them.
    static func isNodeName(_ s: String) -> Bool {
        guard let first = s.first, first.isASCII, first.isLetter, s.count <= 31 else { return false }
        return s.allSatisfy { $0.isASCII && ($0.isLetter || $0.isNumber || ",._+-".contains($0)) }
    }
}
