import Testing
import TestSupport
@testable import LabProtocol

@Suite struct CRC32Tests {
    @Test func standardCheckValue() {
        #expect(CRC32.checksum(Array("123456789".utf8)) == 0xCBF4_3926)
    }

    @Test func emptyInput() {
        #expect(CRC32.checksum([UInt8]()) == 0)
    }

    @Test func incrementalMatchesOneShot() {
        let bytes = Array("The quick brown fox jumps over the lazy dog".utf8)
        var crc = CRC32()
        crc.update(bytes[..<10])
        crc.update(bytes[10...])
        #expect(crc.value == CRC32.checksum(bytes))
        #expect(crc.value == 0x414F_A339)
    }
}

/// `CRC32.combine` and `CRC32.shift` against direct checksums of concatenations.
@Suite struct CRC32CombineTests {
    private static func randomBytes(_ count: Int, _ rng: inout SplitMix64) -> [UInt8] {
        (0..<count).map { _ in UInt8.random(in: 0...255, using: &rng) }
    }

    @Test func combineMatchesTheChecksumOfTheConcatenation() {
        var rng = SplitMix64(seed: 0xC4C3_2C0B)
        for _ in 0..<300 {
            let a = Self.randomBytes(Int.random(in: 0...300, using: &rng), &rng)
            let b = Self.randomBytes(Int.random(in: 0...300, using: &rng), &rng)
            #expect(CRC32.combine(CRC32.checksum(a), CRC32.checksum(b), lengthB: b.count) == CRC32.checksum(a + b),
                    "\(a.count) + \(b.count) bytes")
        }
    }

    /// Long second parts exercise the high powers of x (lengths up to 3 MiB, all zeros, where the
    /// direct checksum is cheap to compare with a slow one-byte-at-a-time shift).
    @Test func shiftByLongRunsOfZeros() {
        var rng = SplitMix64(seed: 7)
        let a = Self.randomBytes(64, &rng)
        for count in [1, 15, 16, 17, 4095, 65_536, 1_000_003, 3 << 20] {
            var direct = CRC32()
            direct.update(a)
            direct.update(repeatElement(0 as UInt8, count: count))
            #expect(CRC32.combine(CRC32.checksum(a), CRC32.checksum(repeatElement(0 as UInt8, count: count)), lengthB: count) == direct.value,
                    "\(count) zero bytes")
        }
    }

    @Test func shiftingByZeroBytesIsTheIdentityAndResumingContinues() {
        #expect(CRC32.shift(0x1234_5678, byZeroBytes: 0) == 0x1234_5678)
        let bytes = Array("123456789".utf8)
        var resumed = CRC32(resumingFrom: CRC32.checksum(bytes[..<4]))
        resumed.update(bytes[4...])
        #expect(resumed.value == 0xCBF4_3926)
    }
}
