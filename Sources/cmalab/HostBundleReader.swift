import Foundation
import LabCore
import LabRuntime

/// What `replay` was given, read: a boot log file, or a capture directory of Scripts/capture-host.
struct HostInput {
    var facts: HostFacts
    /// The directory's `config` (the host kernel's .config) when it was a capture directory that has one. Not used
    /// yet; there for predictions from the host's own configuration.
    var config: String?
    var isBundle: Bool
}

/// Reads a host log argument from disk, every file bounded, and hands the texts to LabCore (HostLog.read,
/// HostLog.read(bundle:)). Only regular files are read, so a FIFO or device in a directory cannot hang or flood it.
enum HostBundleReader {
    /// Logs (and .config files) larger than this are not what capture-host saves.
    static let maximumLogBytes = 64 << 20
    /// /proc/cmdline is at most a few KiB on every architecture.
    static let maximumCommandLineBytes = 64 << 10
    /// A sysfs attribute is at most a page; capture-host's copies of start, end and type are a line each.
    static let maximumMemmapFileBytes = 4 << 10
    /// Firmware maps have tens of entries; E820_MAX_ENTRIES is 3200 with the extended table.
    static let maximumMemmapEntries = 4096

    /// The facts of `path`: a file is a boot log, a directory a capture (dmesg.txt required).
    static func read(_ path: String) throws(LabError) -> HostInput {
        if isDirectory(path) { return try readBundle(path) }
        guard let text = try readText(path, limit: maximumLogBytes) else {
            throw LabError(.input, "\(path): no such file", hint: "save the host's `dmesg` or `journalctl -k -b` to a file, or pass the directory Scripts/capture-host wrote")
        }
        return HostInput(facts: HostLog.read(text), config: nil, isBundle: false)
    }

    /// A capture directory: its files as text, then the facts.
    static func readBundle(_ dir: String) throws(LabError) -> HostInput {
        let bundle = try bundle(dir)
        do throws(HostBundleError) {
            return HostInput(facts: try HostLog.read(bundle: bundle), config: bundle.config, isBundle: true)
        } catch {
            throw LabError(.input, "\(dir): \(error.description)", hint: "copy /sys/firmware/memmap again with Scripts/capture-host, or remove \(dir)/\(HostBundle.memmapDirectory) to plan from the log alone")
        }
    }

    /// The texts of a capture directory's files.
    static func bundle(_ dir: String) throws(LabError) -> HostBundle {
        let base = dir.hasSuffix("/") ? String(dir.dropLast()) : dir
        guard let dmesg = try readText("\(base)/\(HostBundle.dmesgFile)", limit: maximumLogBytes) else {
            throw LabError(.input, "\(dir) has no \(HostBundle.dmesgFile): not a capture directory",
                           hint: "run `sh Scripts/capture-host` on the machine and pass the directory it writes, or pass the boot log file itself")
        }
        var bundle = HostBundle(dmesg: dmesg)
        bundle.cmdline = try readText("\(base)/\(HostBundle.cmdlineFile)", limit: maximumCommandLineBytes)
        bundle.config = try readText("\(base)/\(HostBundle.configFile)", limit: maximumLogBytes)

        let memmap = "\(base)/\(HostBundle.memmapDirectory)"
        if isDirectory(memmap) {
            let names: [String]
            do { names = try FileManager.default.contentsOfDirectory(atPath: memmap).filter { !$0.hasPrefix(".") } } catch {
                throw LabError(.io, "cannot list \(memmap)", underlying: error)
            }
            guard names.count <= maximumMemmapEntries else {
                throw LabError(.input, "\(memmap) has \(names.count) entries: more than a firmware map (\(maximumMemmapEntries) at most)")
            }
            // sysfs numbers the entries 0, 1, ...: in that order, so errors name the first bad one.
            for name in names.sorted(by: { (Int($0) ?? .max, $0) < (Int($1) ?? .max, $1) }) where isDirectory("\(memmap)/\(name)") {
                func field(_ key: String) throws(LabError) -> String? {
                    try readText("\(memmap)/\(name)/\(key)", limit: maximumMemmapFileBytes)
                }
                bundle.memmap.append(FirmwareMapEntry(name: name, start: try field("start"), end: try field("end"), type: try field("type")))
            }
        }
        return bundle
    }

    static func isDirectory(_ path: String) -> Bool {
        var isDir: ObjCBool = false
        return FileManager.default.fileExists(atPath: path, isDirectory: &isDir) && isDir.boolValue
    }

    /// The text of a regular file of at most `limit` bytes (invalid UTF-8 repaired); nil when there is nothing at
    /// `path`. Larger files and anything that is not a regular file are refused, naming the path.
    static func readText(_ path: String, limit: Int) throws(LabError) -> String? {
        let fd = open(path, O_RDONLY | O_CLOEXEC | O_NONBLOCK)
        guard fd >= 0 else {
            if errno == ENOENT { return nil }
            throw LabError.posix("cannot open", path)
        }
        defer { close(fd) }
        var st = stat()
        guard fstat(fd, &st) == 0 else { throw LabError.posix("cannot read", path) }
        guard (st.st_mode & S_IFMT) == S_IFREG else { throw LabError(.input, "\(path) is not a regular file") }
        guard st.st_size <= limit else { throw LabError(.input, "\(path) is \(st.st_size) bytes: more than such a file holds (\(limit) at most)") }
        // Read to EOF, but never past one byte over the limit, whatever the size said: the file may grow meanwhile.
        var bytes = [UInt8](repeating: 0, count: min(Int(st.st_size), limit) + 1)
        var count = 0
        while true {
            if count == bytes.count {
                guard bytes.count <= limit else { throw LabError(.input, "\(path) grew past \(limit) bytes while it was read") }
                bytes += [UInt8](repeating: 0, count: min(max(bytes.count, 4096), limit + 1 - bytes.count))
            }
            let n = bytes[count...].withUnsafeMutableBytes { Glibc.read(fd, $0.baseAddress, $0.count) }
            if n < 0 { if errno == EINTR { continue }; throw LabError.posix("cannot read", path) }
            if n == 0 { break }
            count += n
        }
        return String(decoding: bytes[..<count], as: UTF8.self)
    }
}
