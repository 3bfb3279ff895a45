import Testing
@testable import LabProtocol

@Suite struct MeminfoTests {
    static let capture = """
        MemTotal:        4020000 kB
        MemFree:         2880000 kB
        CmaTotal:        1048576 kB
        CmaFree:         1048576 kB
        HugePages_Total:       0

        """

    @Test func parsesRealCapture() {
        let info = Meminfo.parse(Self.capture)
        #expect(info.raw == Self.capture)
        #expect(info.fields == [
            MeminfoField(name: "MemTotal", value: 4_020_000, unit: "kB"),
            MeminfoField(name: "MemFree", value: 2_880_000, unit: "kB"),
            MeminfoField(name: "CmaTotal", value: 1_048_576, unit: "kB"),
            MeminfoField(name: "CmaFree", value: 1_048_576, unit: "kB"),
            MeminfoField(name: "HugePages_Total", value: 0, unit: nil),
        ])
        #expect(info["CmaTotal"] == 1_048_576)
        #expect(info["HugePages_Total"] == 0)
        #expect(info["Nope"] == nil)
    }

    @Test func ignoresMalformedLines() {
        let info = Meminfo.parse("""
            garbage
            NoValue:
            Bad Name: 12 kB
            Negative: -5 kB
            TooMany: 1 kB extra
            Good:   7 kB\r
            """)
        #expect(info.fields == [MeminfoField(name: "Good", value: 7, unit: "kB")])
    }
}

@Suite struct BitmapTests {
    @Test func specExample() {
        let summary = parseBitmap("1023 0 0 4294967295")
        #expect(summary.words == 4)
        #expect(summary.setBits == 42)
        #expect(summary.firstSetBit == 0)
        #expect(summary.lastSetBit == 127)
        #expect(summary.runs == [BitRun(start: 0, length: 10), BitRun(start: 96, length: 32)])
        #expect(!summary.runsTruncated)
    }

    @Test func emptyAndClearBitmaps() {
        let empty = parseBitmap("")
        #expect(empty.words == 0 && empty.setBits == 0 && empty.runs.isEmpty && empty.firstSetBit == nil)
        let clear = parseBitmap("0 0 0\n")
        #expect(clear.words == 3 && clear.setBits == 0 && clear.lastSetBit == nil)
    }

    @Test func runsSpanWordBoundaries() {
        // Bits 28..35 (top nibble of word 0, low nibble of word 1) and bit 40.
        let summary = parseBitmap("4026531840 271\n")
        #expect(summary.runs == [BitRun(start: 28, length: 8), BitRun(start: 40, length: 1)])
        #expect(summary.setBits == 9)
        #expect(summary.firstSetBit == 28 && summary.lastSetBit == 40)
    }

    @Test func oddTokensAreSkippedNotCounted() {
        // Non-decimal, signed, overflowing and empty tokens are not words; tabs and CR LF separate.
        let summary = parseBitmap("x 4294967296 -1 +3\t\t0\r\n12a 4294967295 ")
        #expect(summary.words == 3)
        #expect(summary.setBits == 2 + 32)
        #expect(summary.runs == [BitRun(start: 0, length: 2), BitRun(start: 64, length: 32)])
    }

    @Test func fullWordsExtendOneRunAcrossTheArea() {
        // 100 full words then a partial one: one run of 3203 bits, as a 1 GiB area after a big alloc.
        let text = Array(repeating: "4294967295", count: 100).joined(separator: " ") + " 7 0"
        let summary = parseBitmap(text)
        #expect(summary.words == 102)
        #expect(summary.runs == [BitRun(start: 0, length: 3203)])
        #expect(summary.firstSetBit == 0 && summary.lastSetBit == 3202)
    }

    @Test func keepsAtMost64Runs() {
        // 0x55555555: 16 single-bit runs per word; 5 words give 80 runs.
        let summary = parseBitmap(Array(repeating: "1431655765", count: 5).joined(separator: " "))
        #expect(summary.setBits == 80)
        #expect(summary.runs.count == BitmapSummary.maxRuns)
        #expect(summary.runsTruncated)
        #expect(summary.runs.last == BitRun(start: 126, length: 1))
        #expect(summary.lastSetBit == 158)
    }
}
