/// What the oracle needs to know about an x86 bzImage: where the kernel sits in guest memory once it runs, and the
/// initrd limit from its boot header (Documentation/arch/x86/boot.rst). Pure: the caller reads the file and, for the
/// exact extent, decompresses the payload (see LabRuntime's KernelImageProbe).
public struct KernelImageInfo: Codable, Equatable, Sendable {
    /// `pref_address`: where a non-relocatable kernel runs (16 MiB for these images).
    public var loadAddress: UInt64
    /// `init_size`: the memory the kernel needs from `loadAddress` while it decompresses; an upper bound of the extent.
    public var initSize: UInt64
    /// `initrd_addr_max`: the highest address the initrd may occupy.
    public var initrdAddrMax: UInt64
    /// Where the kernel's own reservation ends (`_end` of vmlinux, from its ELF program headers), when known.
    public var imageEnd: UInt64?

    public init(loadAddress: UInt64 = 0x100_0000, initSize: UInt64, initrdAddrMax: UInt64 = 0x7fff_ffff, imageEnd: UInt64? = nil) {
        self.loadAddress = loadAddress; self.initSize = initSize; self.initrdAddrMax = initrdAddrMax; self.imageEnd = imageEnd
    }

    /// The range memblock holds for the kernel image: [load, _end) when known, else [load, load + init_size).
    public var reserved: AddressRange { AddressRange(loadAddress, imageEnd ?? (loadAddress + initSize)) }

    /// The payload (compressed vmlinux) inside a bzImage: its byte range in the file.
    public struct Header: Equatable, Sendable {
        public var info: KernelImageInfo
        public var payloadOffset: Int
        public var payloadLength: Int
    }

    /// Reads the boot header of a bzImage (at least the first 0x270 bytes). Nil when it is not one (no `HdrS`, or a
    /// boot protocol older than 2.10, which has no `init_size`).
    public static func header(_ bytes: [UInt8]) -> Header? {
        guard bytes.count >= 0x270, bytes[0x202] == 0x48, bytes[0x203] == 0x64, bytes[0x204] == 0x72, bytes[0x205] == 0x53 else { return nil }
        func u16(_ o: Int) -> UInt64 { UInt64(bytes[o]) | UInt64(bytes[o + 1]) << 8 }
        func u32(_ o: Int) -> UInt64 { u16(o) | u16(o + 2) << 16 }
        func u64(_ o: Int) -> UInt64 { u32(o) | u32(o + 4) << 32 }
        guard u16(0x206) >= 0x20a else { return nil }
        var setupSects = Int(bytes[0x1f1])
        if setupSects == 0 { setupSects = 4 }
        let info = KernelImageInfo(loadAddress: u64(0x258), initSize: u32(0x260), initrdAddrMax: u32(0x22c))
        return Header(info: info, payloadOffset: (setupSects + 1) * 512 + Int(u32(0x248)), payloadLength: Int(u32(0x24c)))
    }

    /// Reads the header of an arm64 `Image` (Documentation/arch/arm64/booting.rst: `text_offset` at 8, `image_size`
    /// at 16, the magic `ARM\x64` at 56) and places it as QEMU's `virt` loads it (hw/arm/boot.c,
    /// load_aarch64_image): at the start of RAM plus `text_offset`, plus 2 MiB when that offset is below QEMU's own
    /// boot stub. The reservation is [load, load + image_size), what arm64_memblock_init reserves (`_text` to
    /// `_end`). Nil when the bytes are not an arm64 Image or its image_size is 0 (a pre-3.17 header).
    public static func arm64Header(_ bytes: [UInt8], ramBase: UInt64) -> KernelImageInfo? {
        guard bytes.count >= 64, bytes[56] == 0x41, bytes[57] == 0x52, bytes[58] == 0x4d, bytes[59] == 0x64 else { return nil }
        func u64(_ o: Int) -> UInt64 { (0..<8).reduce(UInt64(0)) { $0 | UInt64(bytes[o + $1]) << (8 * UInt64($1)) } }
        let textOffset = u64(8), imageSize = u64(16)
        guard imageSize > 0, textOffset < 1 << 30, imageSize < 1 << 32 else { return nil }
        let load = ramBase + (textOffset < 4096 ? textOffset + (2 << 20) : textOffset)
        return KernelImageInfo(loadAddress: load, initSize: imageSize, initrdAddrMax: UInt64.max, imageEnd: load + imageSize)
    }

    /// The end of the highest PT_LOAD segment (`p_paddr + p_memsz`) of an ELF64 vmlinux, from its first bytes
    /// (the ELF header and program headers). Nil when it is not a little-endian ELF64 file.
    public static func elfImageEnd(_ bytes: [UInt8]) -> UInt64? { ELF64(bytes)?.loadEnd }
}
