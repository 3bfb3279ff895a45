/// A writer for the "newc" cpio format the kernel unpacks as an initramfs (see
/// Documentation/driver-api/early-userspace/buffer-format.rst). Pure: it produces bytes.

public struct CpioWriter: Sendable {
    public enum EntryKind: Sendable { case file, directory, symlink }

    public private(set) var bytes: [UInt8] = []
    private var nextInode: UInt32 = 1
    private var names: Set<String> = []

    public init() {}

    /// Adds a directory. Parents must be added first (the kernel does not create them).
    public mutating func directory(_ path: String, mode: UInt32 = 0o755) {
        append(path, mode: 0o040000 | mode, data: [])
    }

    public mutating func file(_ path: String, contents: [UInt8], mode: UInt32 = 0o644) {
        append(path, mode: 0o100000 | mode, data: contents)
    }

    public mutating func symlink(_ path: String, target: String) {
        append(path, mode: 0o120000 | 0o777, data: Array(target.utf8))
    }

    /// Adds `path` and each missing parent directory.
    public mutating func directoryTree(_ path: String) {
        var prefix = ""
        for part in path.split(separator: "/") {
            prefix += prefix.isEmpty ? String(part) : "/" + part
            if !names.contains(prefix) { directory(prefix) }
        }
    }

    /// Writes the trailer and returns the archive.
    public consuming func finish() -> [UInt8] {
        header(name: "TRAILER!!!", inode: 0, mode: 0, size: 0, nlink: 1)
        pad(to: 512)
        return bytes
    }

    public func contains(_ path: String) -> Bool { names.contains(path) }

    private mutating func append(_ path: String, mode: UInt32, data: [UInt8]) {
        let name = path.hasPrefix("/") ? String(path.dropFirst()) : path
        precondition(!name.isEmpty && !names.contains(name), "cpio: duplicate or empty path \(path)")
        names.insert(name)
        let nlink: UInt32 = (mode & 0o170000) == 0o040000 ? 2 : 1
        header(name: name, inode: nextInode, mode: mode, size: UInt32(data.count), nlink: nlink)
        nextInode += 1
        bytes += data
        pad(to: 4)
    }

    private mutating func header(name: String, inode: UInt32, mode: UInt32, size: UInt32, nlink: UInt32) {
        let nameBytes = Array(name.utf8) + [0]
        // magic, ino, mode, uid, gid, nlink, mtime, filesize, devmajor, devminor, rdevmajor, rdevminor, namesize, check
        var h = "070701"
        for field in [inode, mode, 0, 0, nlink, 0, size, 0, 0, 0, 0, UInt32(nameBytes.count), 0] {
            h += Self.hex8(field)
        }
        bytes += Array(h.utf8)
        bytes += nameBytes
        pad(to: 4)
    }

    private mutating func pad(to alignment: Int) {
        while bytes.count % alignment != 0 { bytes.append(0) }
    }

    static func hex8(_ v: UInt32) -> String {
        let s = String(v, radix: 16, uppercase: true)
        return String(repeating: "0", count: 8 - s.count) + s
    }
}
