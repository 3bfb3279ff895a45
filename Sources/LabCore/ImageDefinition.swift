/// A kernel image definition from `Images/*.yaml`: how to get a bzImage and its .config.

public struct ImageDefinition: Sendable, Equatable {
    public enum Source: Sendable, Equatable {
        /// Build from the tarball of a Debian `linux-source-X.Y` package (/usr/src/linux-source-X.Y.tar.xz).
        case debianSource(package: String)
        /// Build from a kernel tree the user already has.
        case tree(path: String)
        /// A prebuilt Debian kernel package, unpacked into the cache (never installed). The pattern is
        /// a package name with `*` wildcards; the newest available version that matches is used.
        case debianPackage(pattern: String)
        /// A bzImage and its .config that the user built elsewhere.
        case prebuilt(kernel: String, config: String)
    }

    public var name: String
    public var summary: String
    /// The file that defined it (errors point here; relative paths are resolved against its folder).
    public var file: String
    public var source: Source
    /// The make target that makes the starting .config (`tinyconfig`, `defconfig`, ...); builds only.
    public var baseConfig: String
    /// Absolute paths of the config fragments, merged in order; builds only.
    public var fragments: [String]
    /// Parameters appended to every boot of this image (before the profile's own).
    public var commandLine: KernelCommandLine
    /// The architecture the kernel is built for and booted as (`arch:`; x86_64 when the file does not say).
    public var architecture: Architecture = .default

    public var isBuilt: Bool {
        switch source {
        case .debianSource, .tree: return true
        case .debianPackage, .prebuilt: return false
        }
    }

    /// The base configs of the default architecture (each architecture has its own, `Architecture.baseConfigs`).
    public static let allowedBaseConfigs = Architecture.default.baseConfigs

    /// Reads an image file. `directory` is the folder of `file`, used for relative paths.
    public static func parse(_ text: String, file: String) throws(InputError) -> ImageDefinition {
        let root = try YAMLValue.parse(text, file: file)
        let m = try root.mapping(allowed: ["name", "description", "arch", "build", "prebuilt", "cmdline"])
        let nameValue = try m.required("name")
        let name = try nameValue.string()
        guard Self.isValidName(name) else {
            throw nameValue.error("image names use letters, digits, `.`, `_` and `-` only, found `\(name)`")
        }
        let summary = try m["description"]?.string() ?? ""
        let dir = Path.directory(of: file)
        let cmdline = KernelCommandLine(parsing: try m["cmdline"]?.string() ?? "")
        let (kind, body) = try m.exactlyOne(of: ["build", "prebuilt"])
        var def = ImageDefinition(name: name, summary: summary, file: file, source: .tree(path: ""), baseConfig: "tinyconfig", fragments: [], commandLine: cmdline)
        if let archValue = m["arch"] {
            let s = try archValue.string()
            guard let arch = Architecture.named(s) else {
                throw archValue.error("`\(s)` is not an architecture cmalab knows; use one of: \(Architecture.knownNames)")
            }
            def.architecture = arch
        }
        if kind == "build" {
            let b = try body.mapping(allowed: ["debian-source", "tree", "base", "fragments"])
            let (sk, sv) = try b.exactlyOne(of: ["debian-source", "tree"])
            def.source = sk == "tree" ? .tree(path: Path.resolve(try sv.string(), relativeTo: dir)) : .debianSource(package: try sv.string())
            if let base = b["base"] {
                let s = try base.string()
                let allowed = def.architecture.baseConfigs
                guard allowed.contains(s) else {
                    throw base.error("`\(s)` is not a base config cmalab knows; use one of: \(allowed.joined(separator: ", "))")
                }
                def.baseConfig = s
            }
            def.fragments = try (b["fragments"]?.sequence() ?? []).map { v throws(InputError) in
                Path.resolve(try v.string(), relativeTo: dir)
            }
        } else {
            let p = try body.mapping(allowed: ["debian-package", "kernel", "config"])
            if let pkg = p["debian-package"] {
                if p["kernel"] != nil || p["config"] != nil { throw body.error("give either `debian-package` or `kernel` with `config`, not both") }
                def.source = .debianPackage(pattern: try pkg.string())
            } else {
                let k = try p.required("kernel", hint: "the path of a bzImage (or use `debian-package`)")
                let c = try p.required("config", hint: "the .config the bzImage was built with; cmalab reads it before booting")
                def.source = .prebuilt(kernel: Path.resolve(try k.string(), relativeTo: dir), config: Path.resolve(try c.string(), relativeTo: dir))
            }
        }
        return def
    }

    public static func isValidName(_ name: String) -> Bool {
        !name.isEmpty && name.count <= 64 && name.unicodeScalars.allSatisfy { c in
            c.isASCII && (c.properties.isAlphabetic || ("0"..."9").contains(c) || c == "-" || c == "_" || c == ".")
        }
    }
}

/// Path helpers that need no file system.
public enum Path {
    public static func directory(of path: String) -> String {
        guard let slash = path.lastIndex(of: "/") else { return "." }
        return slash == path.startIndex ? "/" : String(path[..<slash])
    }

    public static func basename(_ path: String) -> String {
        guard let slash = path.lastIndex(of: "/") else { return path }
        return String(path[path.index(after: slash)...])
    }

    public static func resolve(_ path: String, relativeTo dir: String) -> String {
        path.hasPrefix("/") ? path : normalize(dir + "/" + path)
    }

    public static func join(_ parts: String...) -> String {
        parts.reduce("") { acc, p in acc.isEmpty ? p : (acc.hasSuffix("/") ? acc + p : acc + "/" + p) }
    }

    /// Removes `.` and `a/..` components.
    public static func normalize(_ path: String) -> String {
        var out: [Substring] = []
        for c in path.split(separator: "/", omittingEmptySubsequences: true) {
            if c == "." { continue }
            if c == "..", let last = out.last, last != ".." { out.removeLast(); continue }
            out.append(c)
        }
        let joined = out.joined(separator: "/")
        return path.hasPrefix("/") ? "/" + joined : (joined.isEmpty ? "." : joined)
    }
}
