import Testing
@testable import LabCore

@Suite struct SizeTests {
    static let userSizes: [(String, UInt64)] = [
        ("4G", 4 << 30), ("512M", 512 << 20), ("1024k", 1 << 20), ("0x40000000", 1 << 30),
        ("123", 123), ("2GiB", 2 << 30), ("64MB", 64 << 20), ("1T", 1 << 40), (" 8G ", 8 << 30),
    ]

    @Test(arguments: userSizes)
    func parsesUserSizes(input: String, bytes: UInt64) throws {
        #expect(try ByteSize.parse(input).bytes == bytes)
    }

    @Test(arguments: ["", "G", "4X", "1.5G", "-1G", "4GG", "0xZZ", "99999999999999999999"])
    func rejectsBadSizes(input: String) {
        #expect(throws: SizeError.self) { try ByteSize.parse(input) }
    }

    @Test func describesShortestExactForm() {
        #expect(ByteSize.gib(4).description == "4G")
        #expect(ByteSize.mib(1536).description == "1536M")
        #expect(ByteSize(bytes: 1000).description == "1000")
    }

    @Test func memparseIsBaseZeroLikeTheKernel() {
        func mp(_ s: String) -> (UInt64, String) {
            let b = Array(s.utf8)
            let (v, end) = Memparse.parse(b, from: 0)
            return (v, String(decoding: b[end...], as: UTF8.self))
        }
        #expect(mp("064M").0 == 52 << 20)           // leading 0: octal, as the kernel reads cma=064M
        #expect(mp("0x10M").0 == 16 << 20)
        #expect(mp("64MB@1G") == (64 << 20, "B@1G")) // one suffix letter only; the B stops the parse
        #expect(mp("1G@1-2G") == (1 << 30, "@1-2G"))
        #expect(mp("abc") == (0, "abc"))
    }
}
