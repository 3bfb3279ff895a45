import Foundation
import Testing
import LabCore
@testable import LabRuntime

/// ELF64 against real binaries on this host, checked with binutils' readelf; and the initramfs's choice of
/// /init that rests on it.
@Suite struct ELF64Tests {
    static func bytes(_ path: String) throws -> [UInt8] { Array(try Data(contentsOf: URL(fileURLWithPath: path))) }

    /// readelf -SW's section names, in order (the null section first, with an empty name).
    static func readelfSections(_ path: String) throws -> [String] {
        let out = try runCapturing(["readelf", "-SW", path])
        let names = out.split(separator: "\n").compactMap { line -> String? in
            guard let open = line.firstIndex(of: "["), let close = line.firstIndex(of: "]"), open < close,
                  Int(line[line.index(after: open)..<close].trimmingCharacters(in: .whitespaces)) != nil else { return nil }
            let rest = line[line.index(after: close)...].split(separator: " ", omittingEmptySubsequences: true)
            // The null section has no name: its first word is its type, NULL.
            return rest.first.map { $0 == "NULL" ? "" : String($0) }
        }
        return names
    }

    /// busybox (static C) and this test binary (Swift, with the runtime's metadata sections).
    @Test(arguments: ["/bin/busybox", "/proc/self/exe"])
    func sectionNamesAreReadelfs(_ link: String) throws {
        let path = (try? FileManager.default.destinationOfSymbolicLink(atPath: link)) ?? link   // readelf's own /proc/self is not ours
        let elf = try #require(ELF64(try Self.bytes(path)))
        let names = try #require(elf.sectionNames)
        #expect(names.count > 10)
        #expect(names == (try Self.readelfSections(path)), "\(names)")
    }

    @Test func loadEndIsTheHighestLoadSegment() throws {
        let elf = try #require(ELF64(try Self.bytes("/bin/busybox")))
        let out = try runCapturing(["readelf", "-lW", "/bin/busybox"])
        // LOAD  Offset VirtAddr PhysAddr FileSiz MemSiz Flg Align
        let ends = out.split(separator: "\n").filter { $0.trimmingCharacters(in: .whitespaces).hasPrefix("LOAD") }.map { line in
            let w = line.split(separator: " ", omittingEmptySubsequences: true)
            return UInt64(w[3].dropFirst(2), radix: 16)! + UInt64(w[5].dropFirst(2), radix: 16)!
        }
        #expect(!ends.isEmpty)
        #expect(elf.loadEnd == ends.max())
    }

    @Test func cutOrMangledFilesGiveNilNotATrap() throws {
        let whole = try Self.bytes("/bin/busybox")
        #expect(ELF64(Array(whole.prefix(63))) == nil)
        #expect(ELF64(Array("#!/bin/sh\necho not elf\n".utf8) + [UInt8](repeating: 0, count: 64)) == nil)
        // The section headers sit at the end of the file: cut there, they are gone.
        #expect(ELF64(Array(whole.prefix(4096)))?.sectionNames == nil)
        var rng = SystemRandomNumberGenerator()
        for _ in 0..<200 {
            var header = Array(whole.prefix(4096))
            for _ in 0..<8 { header[Int.random(in: 4..<64, using: &rng)] = UInt8.random(in: 0...255, using: &rng) }
            if let elf = ELF64(header) { _ = elf.sectionNames; _ = elf.loadEnd }
        }
    }

    @Test func initIsTheAgentUnlessItNeedsTheSwiftRuntime() throws {
        // This test binary is built with the full Swift runtime; busybox (like an Embedded Swift agent) is not.
        #expect(InitramfsStore.needsSwiftRuntime(try Self.bytes("/proc/self/exe")))
        #expect(!InitramfsStore.needsSwiftRuntime(try Self.bytes("/bin/busybox")))
        #expect(InitramfsStore.needsSwiftRuntime(Array("not an ELF file".utf8)), "unknown: the wrapper, which works for both")
    }
}

