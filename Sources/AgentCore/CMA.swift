import Glibc
import LabProtocol

/// The CMA debugfs (`<debugfs>/cma/<area>/`) and sysfs (`/sys/kernel/mm/cma/<area>/`) views.
enum CMA {
    /// Areas listed from debugfs, or from sysfs alone when debugfs has no `cma` directory; `bitmap: false`
    /// leaves out the bitmap summary.
    static func areas(paths: AgentPaths, bitmap withBitmap: Bool = true) throws(SystemError) -> [CMAArea] {
        if isDirectory(paths.debugfsCMA) {
            return try subdirectories(paths.debugfsCMA).map { name in
                let directory = joinPath(paths.debugfsCMA, name)
                func number(_ file: String) -> UInt64? {
                    (try? readText(joinPath(directory, file))).flatMap { UInt64($0.trimmed) }
                }
                return CMAArea(
                    name: name, basePFN: number("base_pfn"), count: number("count"), used: number("used"),
                    maxchunk: number("maxchunk"), orderPerBit: number("order_per_bit"),
                    bitmap: !withBitmap ? nil : (try? readFile(joinPath(directory, "bitmap"), limit: AgentLimits.readFileBytes))
                        .map { file in file.bytes.withUnsafeBufferPointer { parseBitmap(bytes: $0) } },
                    sysfs: counters(joinPath(paths.sysfsCMA, name)))
            }
        }
        if isDirectory(paths.sysfsCMA) {
            return try subdirectories(paths.sysfsCMA).map { name in
                CMAArea(name: name, sysfs: counters(joinPath(paths.sysfsCMA, name)))
            }
        }
        return []
    }

    /// Writes the page count to the area's debugfs `alloc` or `free` file in a single
    /// write(2); the kernel's answer (e.g. ENOMEM) comes back as the write's errno.
    static func write(pages: UInt64, area: String, file: String, paths: AgentPaths) -> AgentResponse {
        guard isValidAreaName(area) else {
            return .failure(errno: EINVAL, message: "invalid CMA area name \"\(area)\"")
        }
        let path = joinPath(joinPath(paths.debugfsCMA, area), file)
        let fd = open(path, O_WRONLY | O_CLOEXEC)
        guard fd >= 0 else { return failure(SystemError("open \(path)")) }
        defer { close(fd) }
        let text = Array("\(pages)\n".utf8)
        var written: Int
        repeat {
            written = text.withUnsafeBytes { Glibc.write(fd, $0.baseAddress, $0.count) }
        } while written < 0 && errno == EINTR
        if written < 0 { return failure(SystemError("write \(path)")) }
        if written != text.count { return failure(SystemError("short write to \(path)", errno: EIO)) }
        return .done
    }

    static func isValidAreaName(_ name: String) -> Bool {
        !name.isEmpty && name != "." && name != ".." && !name.contains("/") && !name.contains("\0")
    }

    private static func subdirectories(_ path: String) throws(SystemError) -> [String] {
        try listDirectory(path).filter { $0.kind == DirectoryEntry.directory }.map { $0.name }
    }

    /// Every regular file of a sysfs directory that holds a number; none if it is missing.
    private static func counters(_ directory: String) -> [Counter] {
        guard let entries = try? listDirectory(directory) else { return [] }
        return entries.compactMap { entry in
            guard entry.kind == DirectoryEntry.file,
                  let text = try? readText(joinPath(directory, entry.name)),
                  let value = UInt64(text.trimmed)
            else { return nil }
            return Counter(name: entry.name, value: value)
        }
    }
}
