/// A little-endian ELF64 file, read from its bytes: the two things cmalab asks of one (where a vmlinux's
/// loaded image ends, and which sections a guest agent binary has). Every offset is bounds-checked, so a
/// truncated or hostile file gives nil, never a trap.
public struct ELF64 {
    let bytes: [UInt8]

    /// Nil unless `bytes` start with an ELF64 little-endian header.
    public init?(_ bytes: [UInt8]) {
        guard bytes.count >= 64, bytes[0] == 0x7f, bytes[1] == 0x45, bytes[2] == 0x4c, bytes[3] == 0x46,
              bytes[4] == 2, bytes[5] == 1 else { return nil }
        self.bytes = bytes
    }

    func u16(_ o: Int) -> UInt64 { UInt64(bytes[o]) | UInt64(bytes[o + 1]) << 8 }
    func u32(_ o: Int) -> UInt64 { u16(o) | u16(o + 2) << 16 }
    func u64(_ o: Int) -> UInt64 { u32(o) | u32(o + 4) << 32 }

    /// The architecture the file is for (`e_machine`: 62 x86-64, 183 AArch64); nil for any other.
    public var architecture: Architecture? {
        switch u16(18) {
        case 62: return .x86_64
        case 183: return .arm64
        default: return nil
        }
    }

    /// `count` tables of `size` bytes at `offset` lie inside the file.
    func fits(_ offset: UInt64, _ count: Int, _ size: Int) -> Bool {
        let (total, overflow) = offset.addingReportingOverflow(UInt64(count * size))
        return !overflow && total <= UInt64(bytes.count)
    }

    /// The end of the highest PT_LOAD segment (`p_paddr + p_memsz`); needs only the header and program headers.
    public var loadEnd: UInt64? {
        let phoff = u64(0x20), phentsize = Int(u16(0x36)), phnum = Int(u16(0x38))
        guard phentsize >= 56, phnum > 0, fits(phoff, phnum, phentsize) else { return nil }
        var end: UInt64?
        for i in 0..<phnum {
            let p = Int(phoff) + i * phentsize
            guard u32(p) == 1 else { continue }   // PT_LOAD
            end = max(end ?? 0, u64(p + 0x18) &+ u64(p + 0x28))
        }
        return end
    }

    /// The section names, from the section header string table; nil when the file has no section headers
    /// or they point outside it.
    public var sectionNames: [String]? {
        let shoff = u64(0x28), shentsize = Int(u16(0x3a)), shnum = Int(u16(0x3c)), shstrndx = Int(u16(0x3e))
        guard shentsize >= 64, shnum > 0, shstrndx < shnum, fits(shoff, shnum, shentsize) else { return nil }
        let strtab = Int(shoff) + shstrndx * shentsize
        let namesStart = u64(strtab + 0x18), namesSize = u64(strtab + 0x20)
        guard namesSize <= UInt64(Int.max), fits(namesStart, Int(namesSize), 1) else { return nil }
        let names = bytes[Int(namesStart)..<Int(namesStart) + Int(namesSize)]
        return (0..<shnum).compactMap { i in
            let offset = u32(Int(shoff) + i * shentsize)
            guard offset < namesSize else { return nil }
            let start = names.startIndex + Int(offset)
            let end = names[start...].firstIndex(of: 0) ?? names.endIndex
            return String(decoding: names[start..<end], as: UTF8.self)
        }
    }
}
