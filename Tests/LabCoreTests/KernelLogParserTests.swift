import Testing
@testable import LabCore

/// Real captures (`console-*`) and small synthetic logs built from the exact lines in cma-reference.md
/// (`synthetic-*`).
@Suite struct KernelLogParserTests {
    static func lines(_ fixture: String) throws -> [String] {
        try Fixture.text(fixture).split(omittingEmptySubsequences: false, whereSeparator: \.isNewline).map(String.init)
    }

    static func facts(_ fixture: String) throws -> BootLogFacts {
        KernelLogParser.facts(from: try lines(fixture))
    }

    // MARK: - Real captures

    @Test func capture612FixedRange() throws {
        let f = try Self.facts("console-6.12-pc-4G-cma-1G@1-2G.log")
        #expect(f.reserved == [ReservedArea(sizeMiB: 1024, base: 0x3fc0_0000, node: -1)])
        #expect(f.failedMiB.isEmpty)
        #expect(f.failureReasons.isEmpty)
        #expect(f.memoryCmaReservedKiB == 1_048_576)
        #expect(f.memoryLine == "Memory: 2992628K/4193784K available (6144K kernel code, 855K rwdata, 852K rodata, 796K init, 380K bss, 151044K reserved, 1048576K cma-reserved)")
        #expect(f.unknownParameters.isEmpty)
        #expect(f.commandLine == "console=ttyS0 panic=-1 cma=1G@1-2G")
        #expect(f.kernelRelease == "6.12.117")
        #expect(f.cmaLines == ["cma: Reserved 1024 MiB at 0x000000003fc00000 on node -1"])
    }

    @Test func capture612On64GiB() throws {
        let f = try Self.facts("console-6.12-pc-64G-cma-2G.log")
        #expect(f.reserved == [ReservedArea(sizeMiB: 2048, base: 0x1_0000_0000, node: -1)])
        #expect(f.failedMiB.isEmpty)
        #expect(f.failureReasons.isEmpty)
        #expect(f.memoryCmaReservedKiB == 2_097_152)
        #expect(f.memoryLine?.hasPrefix("Memory: 63774284K/67108344K available (") == true)
        #expect(f.memoryLine?.hasSuffix(", 1233452K reserved, 2097152K cma-reserved)") == true)
        #expect(f.unknownParameters.isEmpty)
        #expect(f.commandLine == "console=ttyS0 panic=-1 dyndbg=\"file mm/cma.c +p\" cma=2G")
        #expect(f.kernelRelease == "6.12.117")
        #expect(f.cmaLines == ["cma: Reserved 2048 MiB at 0x0000000100000000 on node -1"])
    }

    @Test func capture612PanicStillHasItsReservation() throws {
        let f = try Self.facts("console-6.12-pc-4G-cma-1G@3G-4G-panic.log")
        #expect(f.reserved == [ReservedArea(sizeMiB: 1024, base: 0xc000_0000, node: -1)])
        #expect(f.failedMiB.isEmpty)
        #expect(f.failureReasons.isEmpty)
        // The `reserved` field wrapped around (the area covers the PCI hole); cma-reserved is still read.
        #expect(f.memoryLine?.contains("18446744073708654084K reserved") == true)
        #expect(f.memoryCmaReservedKiB == 1_048_576)
        #expect(f.commandLine == "console=ttyS0 panic=-1 cma=1G@3G-4G")
        #expect(f.kernelRelease == "6.12.117")
        #expect(f.cmaLines == ["cma: Reserved 1024 MiB at 0x00000000c0000000 on node -1"])
    }

    @Test func captureDebianKernelWithoutCMA() throws {
        let f = try Self.facts("console-6.12-debian-pc-2G-nocma-cma-1G.log")
        #expect(f.reserved.isEmpty)
        #expect(f.failedMiB.isEmpty)
        #expect(f.failureReasons.isEmpty)
        #expect(f.unknownParameters == ["cma=1G"])
        #expect(f.memoryCmaReservedKiB == 0)
        #expect(f.memoryLine == "Memory: 2002044K/2096632K available (16384K kernel code, 2499K rwdata, 11716K rodata, 4264K init, 4904K bss, 90952K reserved, 0K cma-reserved)")
        #expect(f.commandLine == "console=ttyS0 panic=-1 cma=1G")
        #expect(f.kernelRelease == "6.12.117+deb12-amd64")
        #expect(f.cmaLines.isEmpty)
    }

    @Test func capture61HasNoNodeAndKeepsDebugLines() throws {
        let f = try Self.facts("console-6.1-pc-4G-cma-1G@1-2G.log")
        #expect(f.reserved == [ReservedArea(sizeMiB: 1024, base: 0x3f40_0000, node: nil)])
        #expect(f.failedMiB.isEmpty)
        #expect(f.failureReasons.isEmpty)
        #expect(f.memoryCmaReservedKiB == 1_048_576)
        #expect(f.memoryLine == "Memory: 2993096K/4193784K available (6144K kernel code, 834K rwdata, 692K rodata, 732K init, 468K bss, 151856K reserved, 1048576K cma-reserved)")
        #expect(f.unknownParameters.isEmpty)
        #expect(f.commandLine == "console=ttyS0 panic=-1 cma=1G@1-2G loglevel=8")
        #expect(f.kernelRelease == "6.1.192")
        #expect(f.cmaLines == [
            "cma: dma_contiguous_reserve(limit 140000000)",
            "cma: dma_contiguous_reserve: reserving 1024 MiB for global area",
            "cma: cma_declare_contiguous_nid(size 0x0000000040000000, base 0x0000000000000001, limit 0x0000000080000000 alignment 0x0000000000000000)",
            "cma: Reserved 1024 MiB at 0x000000003f400000",
            "cma: cma_alloc(cma (____ptrval____), count 10, align 0)",
            "cma: cma_alloc(): returned (____ptrval____)",
            "cma: cma_release(page (____ptrval____), count 10)",
        ])
    }

    @Test func carriageReturnsFromSplittingOnLineFeedAreIgnored() throws {
        // console.log has CRLF line ends; a caller that splits on "\n" hands over lines ending in "\r".
        for name in ["console-6.12-pc-4G-cma-1G@1-2G.log", "console-6.1-pc-4G-cma-1G@1-2G.log", "console-6.12-debian-pc-2G-nocma-cma-1G.log"] {
            let text = try Fixture.text(name)
            let crLines = text.unicodeScalars.split(separator: "\n", omittingEmptySubsequences: false).map { String(String.UnicodeScalarView($0)) }
            #expect(crLines.contains { $0.hasSuffix("\r") || $0.unicodeScalars.last == "\r" }, "\(name) should have CRLF line ends")
            #expect(KernelLogParser.facts(from: crLines) == (try Self.facts(name)), "\(name)")
        }
    }

    @Test func elementsHoldingSeveralLinesAreSplit() throws {
        // A whole log in one element, and a kmsg message whose \x0a escape was decoded to a newline.
        let name = "console-6.12-pc-4G-cma-1G@1-2G.log"
        #expect(KernelLogParser.facts(from: [try Fixture.text(name)]) == (try Self.facts(name)))
        let f = KernelLogParser.facts(from: ["note: two\nlines", "cma: Reserved 64 MiB at 0x000000007bc00000\ncma: Failed to reserve 64 MiB"])
        #expect(f.cmaLines == ["cma: Reserved 64 MiB at 0x000000007bc00000", "cma: Failed to reserve 64 MiB"])
        #expect(f.reserved.count == 1)
        #expect(f.failedMiB == [64])
    }

    // MARK: - Synthetic failures (exact reference lines)

    @Test func synthetic61ExceedsLimit() throws {
        let f = try Self.facts("synthetic-6.1-pc-2G-cma-4G-exceeds-limit.log")
        #expect(f.reserved.isEmpty)
        #expect(f.failedMiB == [4096])
        #expect(f.failureReasons == ["Size (0x0000000100000000) of region at 0x0000000000000000 exceeds limit (0x000000007fc00000)"])
        #expect(f.memoryCmaReservedKiB == 0)
        #expect(f.commandLine == "console=ttyS0 panic=-1 cma=4G")
        #expect(f.kernelRelease == "6.1.192")
        #expect(f.cmaLines.count == 2)
    }

    @Test func synthetic612LowHighBoundary() throws {
        let f = try Self.facts("synthetic-6.12-pc-2G-cma-64M@0x7e000000-boundary.log")
        #expect(f.reserved.isEmpty)
        #expect(f.failedMiB == [64])
        #expect(f.failureReasons == ["Region at 0x000000007e000000 defined on low/high memory boundary (0x000000007ffe0000)"])
        #expect(f.memoryCmaReservedKiB == 0)
        #expect(f.commandLine == "console=ttyS0 panic=-1 cma=64M@0x7e000000")
        #expect(f.cmaLines == [
            "cma: Region at 0x000000007e000000 defined on low/high memory boundary (0x000000007ffe0000)",
            "cma: Failed to reserve 64 MiB on node -1",
        ])
    }

    @Test func synthetic612KmsgMisalignedWithoutTimestamps() throws {
        let f = try Self.facts("synthetic-6.12-kmsg-cma-64M@0x40100000-misaligned.log")
        #expect(f.reserved.isEmpty)
        #expect(f.failedMiB == [64])
        #expect(f.failureReasons == ["Region at 0x0000000040100000 must be aligned to 0x0000000000400000 bytes"])
        #expect(f.memoryCmaReservedKiB == 0)
        #expect(f.commandLine == "console=ttyS0 panic=-1 cma=64M@0x40100000")
        #expect(f.kernelRelease == "6.12.117")
        #expect(f.cmaLines.count == 2)
    }

    // MARK: - Single lines

    @Test func reservedFormats() {
        let f = KernelLogParser.facts(from: [
            "[    0.014186] cma: Reserved 64 MiB at 0x000000007bc00000 on node -1",
            "[    0.000000] cma: Reserved 64 MiB at 0x000000007bc00000",
            "cma: Reserved 1024 MiB at 0x0000000100000000 on node 1",
            "cma: Reserved 4 MiB at 0x00000000FFC00000\r",
        ])
        #expect(f.reserved == [
            ReservedArea(sizeMiB: 64, base: 0x7bc0_0000, node: -1),
            ReservedArea(sizeMiB: 64, base: 0x7bc0_0000, node: nil),
            ReservedArea(sizeMiB: 1024, base: 0x1_0000_0000, node: 1),
            ReservedArea(sizeMiB: 4, base: 0xffc0_0000, node: nil),
        ])
        #expect(f.cmaLines.last == "cma: Reserved 4 MiB at 0x00000000FFC00000")
    }

    @Test func failedFormatsAndEveryReason() {
        let f = KernelLogParser.facts(from: [
            "cma: Failed to reserve 4096 MiB on node -1",
            "cma: Failed to reserve 64 MiB",
            "cma: Region at 0x0000000040100000 must be aligned to 0x0000000000400000 bytes",
            "cma: Size (0x0000000100000000) of region at 0x0000000000000000 exceeds limit (0x000000007fc00000)",
            "cma: Region at 0x000000007e000000 defined on low/high memory boundary (0x000000007ffe0000)",
            "[    0.000000] cma: Not enough slots for CMA reserved regions!",
            "[    0.400000] cma: CMA area reserved could not be activated",
            // Not reasons:
            "cma: dma_contiguous_reserve(limit 7ffe0000)",
            "cma: __cma_alloc: reserved: alloc failed, req-size: 200 pages, ret: -12",
            "cma: number of available pages: 100@16284=> 100 free of 16384 total pages",
        ])
        #expect(f.failedMiB == [4096, 64])
        #expect(f.failureReasons == [
            "Region at 0x0000000040100000 must be aligned to 0x0000000000400000 bytes",
            "Size (0x0000000100000000) of region at 0x0000000000000000 exceeds limit (0x000000007fc00000)",
            "Region at 0x000000007e000000 defined on low/high memory boundary (0x000000007ffe0000)",
            "Not enough slots for CMA reserved regions!",
            "CMA area reserved could not be activated",
        ])
        #expect(f.reserved.isEmpty)
        #expect(f.cmaLines.count == 10)
    }

    @Test func gluedMessagesStayWholeButAreStillParsed() {
        let glued = "[    0.000000] hugetlb_cma: reservation failed: err -12, node 0cma: Reserved 64 MiB at 0x000000007bc00000 on node -1"
        let glued2 = "cma: dma_numa_cma_reserve: reservation failed: err -12, node 1cma: Failed to reserve 16 MiB on node 1"
        let f = KernelLogParser.facts(from: [glued, glued2, "hugetlb_cma: reserve 1024 MiB, up to 1024 MiB per node"])
        #expect(f.cmaLines == [
            "hugetlb_cma: reservation failed: err -12, node 0cma: Reserved 64 MiB at 0x000000007bc00000 on node -1",
            "cma: dma_numa_cma_reserve: reservation failed: err -12, node 1cma: Failed to reserve 16 MiB on node 1",
            "hugetlb_cma: reserve 1024 MiB, up to 1024 MiB per node",
        ])
        #expect(f.reserved == [ReservedArea(sizeMiB: 64, base: 0x7bc0_0000, node: -1)])
        #expect(f.failedMiB == [16])
    }

    @Test func memoryLineVariants() {
        let highmem = "Memory: 2002044K/2096632K available (6144K kernel code, 855K rwdata, 852K rodata, 796K init, 380K bss, 94588K reserved, 65536K cma-reserved, 1179648K highmem)"
        #expect(KernelLogParser.facts(from: [highmem]).memoryCmaReservedKiB == 65536)
        #expect(KernelLogParser.facts(from: [highmem]).memoryLine == highmem)
        let wrapped = "[    0.4] Memory: 4041204K/4193784K available (6144K kernel code, 18446744073708634596K reserved, 1048576K cma-reserved)"
        #expect(KernelLogParser.facts(from: [wrapped]).memoryCmaReservedKiB == 1_048_576)
        // Only the first Memory: line counts; unrelated "Memory:" text is ignored.
        let f = KernelLogParser.facts(from: ["Memory: something else", highmem, wrapped])
        #expect(f.memoryLine == highmem)
        // No cma-reserved field (or a malformed one): the line is kept, the value is unknown.
        let noCMA = KernelLogParser.facts(from: ["Memory: 100K/200K available (1K kernel code, 99999999999999999999999K cma-reserved)"])
        #expect(noCMA.memoryLine != nil)
        #expect(noCMA.memoryCmaReservedKiB == nil)
    }

    @Test func unknownParametersAndCommandLines() {
        let f = KernelLogParser.facts(from: [
            "Command line: console=ttyS0 cma=64M foo=bar",
            "Kernel command line: BOOT_IMAGE=x console=ttyS0 cma=64M foo=bar",
            "Unknown kernel command line parameters \"cma=64M foo=bar\", will be passed to user space.",
            "Kernel command line: later",
        ])
        #expect(f.unknownParameters == ["cma=64M", "foo=bar"])
        #expect(f.commandLine == "BOOT_IMAGE=x console=ttyS0 cma=64M foo=bar")

        let fallback = KernelLogParser.facts(from: ["[    0.000000] Command line: console=ttyS0 cma=1G"])
        #expect(fallback.commandLine == "console=ttyS0 cma=1G")

        let old = KernelLogParser.facts(from: ["Unknown command line parameters: cmatest cma=64M"])
        #expect(old.unknownParameters == ["cmatest", "cma=64M"])

        let several = KernelLogParser.facts(from: [
            "Unknown kernel command line parameters \"hugetlb_cma=1G cma_pernuma=16M numa_cma=0:16M\", will be passed to user space.",
        ])
        #expect(several.unknownParameters == ["hugetlb_cma=1G", "cma_pernuma=16M", "numa_cma=0:16M"])
    }

    @Test func garbageNeverCrashes() {
        let garbage = [
            "", "[", "]", "[]", "[    0.000000]", "[    0.000000] ", "cma:", "cma: ", "cma: Reserved", "cma: Reserved  MiB at 0x",
            "cma: Reserved 99999999999999999999999 MiB at 0x0000000000000000",
            "cma: Reserved 64 MiB at 0xZZ", "cma: Reserved 64 MiB at 0x1234 on node -",
            "cma: Reserved 64 MiB at 0x1 on node 99999999999999999999",
            "cma: Failed to reserve", "cma: Failed to reserve -5 MiB", "cma: Failed to reserve 5MiB",
            "Memory:", "Memory: K available (", "Memory: 1K/2K available (,,, K cma-reserved)",
            "Memory: 1K/2K available (K cma-reserved", "Unknown kernel command line parameters \"",
            "Unknown kernel command line parameters \"\"", "Linux version ", "Linux version", "Kernel command line: ",
            "\u{0}\u{1}\u{7F}cma: \u{FFFD}", "cma: cma: cma: Reserved 1 MiB at 0x1", "hugetlb_cma:", "_cma: Reserved 1 MiB at 0x1",
            String(repeating: "cma: ", count: 2000), String(repeating: "\u{1F600}", count: 100),
        ]
        let f = KernelLogParser.facts(from: garbage)
        // Only the well-formed parts count.
        #expect(f.reserved == [
            ReservedArea(sizeMiB: 64, base: 0x1234, node: nil),
            ReservedArea(sizeMiB: 64, base: 0x1, node: nil),
            ReservedArea(sizeMiB: 1, base: 0x1, node: nil),
        ])
        #expect(f.failedMiB.isEmpty)
        #expect(f.kernelRelease == nil)
        #expect(f.commandLine == "")
        #expect(KernelLogParser.facts(from: []) == BootLogFacts())
    }

    @Test func firmwareMapAndInitrd() throws {
        let log = try Fixture.text("console-6.12-pc-4G-cma-1G@1-2G.log").split(whereSeparator: \.isNewline).map(String.init)
        let f = KernelLogParser.facts(from: log)
        #expect(f.e820.count == 8)
        #expect(f.e820[3] == MemoryRange(start: 0x100000, end: 0xbffdffff, type: "usable"))
        #expect(f.e820[6] == MemoryRange(start: 0x1_0000_0000, end: 0x1_3fff_ffff, type: "usable"))
        #expect(f.e820.filter { $0.type == "usable" }.reduce(0) { $0 + $1.size } == 0x9fc00 + 0xbfee0000 + 0x4000_0000)
        #expect(f.ramdisk == MemoryRange(start: 0x7fe1b000, end: 0x7fffffff))
        #expect(KernelLogParser.memRange("[mem 0x10-0x0f] usable") == nil)
        #expect(KernelLogParser.memRange("[mem 0xzz-0x10]") == nil)
    }
}
