import Glibc

/// The agent's helper modes for the ways devices and user space take CMA memory (profiles' `dma-alloc`,
/// `dma-free`, `heap-alloc` and long-term pins), run by the host through `exec` like `hold-memory`:
///
/// * `load-module PATH`: finit_module(2) of a module file the host wrote into the guest (cmalab's DMA test
///   driver, Driver/cmalab-dma). Prints `loaded` (or `already-loaded`) or `errno=<n>`.
/// * `dma-alloc BITS KIND BYTES`: one allocation through the DMA API for the test device with a BITS-bit
///   mask (KIND `coherent`, `pages` or `noncoherent`). Prints `errno=0 id=<n> dma=<hex> phys=<hex> ns=<n>`,
///   or `errno=<n>` when the driver refused it.
/// * `dma-free ID`: frees an allocation by id, or every one for 0. Prints `errno=0 freed=<count>` or `errno=<n>`.
/// * `hold-heap NAME BYTES`: DMA_HEAP_IOCTL_ALLOC from /dev/dma_heap/NAME, maps the buffer, touches every
///   page, prints `held <bytes> ns=<alloc ns>` and sleeps until killed (the buffer lives while the process
///   does). On failure prints `errno=<n>` and exits 1.
/// * `hold-memory BYTES longterm` (in Tools.swift) pins with FOLL_LONGTERM through `longTermPin` below.
///
/// Every ioctl layout here mirrors a kernel header: Driver/cmalab-dma/cmalab_dma.h,
/// include/uapi/linux/dma-heap.h, mm/gup_test.h.
public enum DeviceTools {
    public static let names = ["load-module", "dma-alloc", "dma-free", "hold-heap"]
    public static let driverDevice = "/dev/cmalab-dma"
    public static let gupTest = "/sys/kernel/debug/gup_test"

    /// `_IOC(dir, type, nr, size)` from include/uapi/asm-generic/ioctl.h (x86 and arm64 share it).
    static func ioc(_ direction: UInt, _ type: Unicode.Scalar, _ number: UInt, _ size: UInt) -> UInt {
        (direction << 30) | (size << 16) | (UInt(UInt8(ascii: type)) << 8) | number
    }
    static let dmaAllocIoctl = ioc(3, "C", 1, 48)
    static let dmaFreeIoctl = ioc(1, "C", 2, 4)
    static let dmaPinIoctl = ioc(3, "C", 3, 24)
    static let heapAllocIoctl = ioc(3, "H", 0, 24)
    static let pinLongtermStartIoctl = ioc(1, "g", 7, 24)

    /// The DMA API call of a `dma-alloc` KIND (cmalab_dma.h's CMALAB_DMA_*).
    public static let kinds = ["coherent", "pages", "noncoherent"]

    public static func run(_ arguments: [String]) -> Int32 {
        switch arguments[1] {
        case "load-module":
            guard arguments.count == 3 else { return usage("load-module PATH") }
            return loadModule(arguments[2])
        case "dma-alloc":
            guard arguments.count == 5, let bits = UInt32(arguments[2]), (1...64).contains(bits),
                  let kind = kinds.firstIndex(of: arguments[3]), let bytes = UInt64(arguments[4]), bytes > 0 else {
                return usage("dma-alloc BITS(1-64) coherent|pages|noncoherent BYTES")
            }
            return dmaAlloc(bits: bits, kind: UInt32(kind), bytes: bytes)
        case "dma-free":
            guard arguments.count == 3, let id = UInt32(arguments[2]) else { return usage("dma-free ID") }
            return dmaFree(id: id)
        case "hold-heap":
            guard arguments.count == 4, let bytes = UInt64(arguments[3]), bytes > 0,
                  !arguments[2].isEmpty, !arguments[2].utf8.contains(UInt8(ascii: "/")) else {
                return usage("hold-heap NAME BYTES")
            }
            return holdHeap(name: arguments[2], bytes: bytes)
        default:
            return usage(names.joined(separator: ", "))
        }
    }

    static func usage(_ text: String) -> Int32 {
        AgentTools.printLine("usage: \(text)")
        return 2
    }

    static func loadModule(_ path: String) -> Int32 {
        let fd = open(path, O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else {
            AgentTools.printLine("errno=\(errno) open")
            return 1
        }
        defer { close(fd) }
        let rc = "".withCString { glibcSyscall3(sysFinitModule, Int(fd), $0, 0) }
        if rc == 0 {
            AgentTools.printLine("loaded")
            return 0
        }
        if errno == EEXIST {
            AgentTools.printLine("already-loaded")
            return 0
        }
        AgentTools.printLine("errno=\(errno) finit_module")
        return 1
    }

    static func dmaAlloc(bits: UInt32, kind: UInt32, bytes: UInt64) -> Int32 {
        let fd = open(driverDevice, O_RDWR | O_CLOEXEC)
        guard fd >= 0 else {
            AgentTools.printLine("errno=\(errno) open")
            return 1
        }
        defer { close(fd) }
        // struct cmalab_dma_alloc: u64 size, u32 mask_bits, u32 kind, u64 dma_addr, u64 phys_addr,
        // u64 nanoseconds, u32 id, u32 pad.
        var words = [UInt64](repeating: 0, count: 6)
        words[0] = bytes
        words[1] = UInt64(bits) | (UInt64(kind) << 32)
        let rc = words.withUnsafeMutableBytes { glibcIoctl(fd, dmaAllocIoctl, $0.baseAddress!) }
        guard rc == 0 else {
            AgentTools.printLine("errno=\(errno)")
            return 0
        }
        AgentTools.printLine("errno=0 id=\(words[5] & 0xffff_ffff) dma=0x\(hex(words[2])) phys=0x\(hex(words[3])) ns=\(words[4])")
        return 0
    }

    static func dmaFree(id: UInt32) -> Int32 {
        let fd = open(driverDevice, O_RDWR | O_CLOEXEC)
        guard fd >= 0 else {
            AgentTools.printLine("errno=\(errno) open")
            return 1
        }
        defer { close(fd) }
        var value = id
        let rc = glibcIoctl(fd, dmaFreeIoctl, &value)
        AgentTools.printLine(rc >= 0 ? "errno=0 freed=\(rc)" : "errno=\(errno)")
        return 0
    }

    static func holdHeap(name: String, bytes: UInt64) -> Int32 {
        let path = "/dev/dma_heap/" + name
        let heap = open(path, O_RDWR | O_CLOEXEC)
        guard heap >= 0 else {
            AgentTools.printLine("errno=\(errno) open \(path)")
            return 1
        }
        // struct dma_heap_allocation_data: u64 len, u32 fd, u32 fd_flags, u64 heap_flags.
        var words: [UInt64] = [bytes, UInt64(UInt32(O_RDWR | O_CLOEXEC)) << 32, 0]
        let start = AgentTools.monotonicNanoseconds()
        let rc = words.withUnsafeMutableBytes { glibcIoctl(heap, heapAllocIoctl, $0.baseAddress!) }
        let elapsed = AgentTools.monotonicNanoseconds() - start
        let err = errno
        close(heap)
        guard rc == 0 else {
            AgentTools.printLine("errno=\(err) DMA_HEAP_IOCTL_ALLOC")
            return 1
        }
        let buffer = Int32(truncatingIfNeeded: words[1] & 0xffff_ffff)
        let length = Int(bytes)
        guard let base = mmap(nil, length, PROT_READ | PROT_WRITE, MAP_SHARED, buffer, 0), base != MAP_FAILED else {
            AgentTools.printLine("errno=\(errno) mmap")
            return 1
        }
        var offset = 0
        while offset < length {
            base.storeBytes(of: UInt64(offset), toByteOffset: offset, as: UInt64.self)
            offset += 4096
        }
        AgentTools.printLine("held \(length) ns=\(elapsed)")
        while true { pause() }
    }

    /// Pins [base, base+length) with FOLL_LONGTERM for the rest of the process: through gup_test's
    /// PIN_LONGTERM_TEST_START where the kernel has it (6.2 and later), else through cmalab's driver. The
    /// kernel migrates movable pages out of CMA (and ZONE_MOVABLE) before it pins them long-term.
    /// Returns the mechanism's name, or the errno of the last attempt.
    static func longTermPin(_ base: UnsafeMutableRawPointer, length: Int) -> Result<String, PinError> {
        // struct pin_longterm_test: u64 addr, u64 size, u32 flags (1 = FOLL_WRITE); 24 bytes with padding.
        var test: [UInt64] = [UInt64(UInt(bitPattern: base)), UInt64(length), 1]
        var err: Int32 = ENOENT
        let gup = open(gupTest, O_RDWR | O_CLOEXEC)
        if gup >= 0 {
            // Kept open on success: closing the file unpins.
            if test.withUnsafeMutableBytes({ glibcIoctl(gup, pinLongtermStartIoctl, $0.baseAddress!) }) == 0 { return .success("gup_test") }
            err = errno
            close(gup)
        }
        let driver = open(driverDevice, O_RDWR | O_CLOEXEC)
        guard driver >= 0 else { return .failure(PinError(errno: err == ENOENT ? errno : err)) }
        var pin: [UInt64] = [UInt64(UInt(bitPattern: base)), UInt64(length), 0]
        if pin.withUnsafeMutableBytes({ glibcIoctl(driver, dmaPinIoctl, $0.baseAddress!) }) == 0 { return .success("cmalab-dma") }
        let e = errno
        close(driver)
        return .failure(PinError(errno: e))
    }

    struct PinError: Error { var errno: Int32 }

    static func hex(_ v: UInt64) -> String { String(v, radix: 16) }
}
