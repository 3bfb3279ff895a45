import Testing
import TestSupport
@testable import LabCore

@Suite struct CMAArgumentTests {
    @Test func seedIsARangeRequest() throws {
        let r = try CMARequest.parse("1G@1-2G")
        #expect(r.size == 1 << 30 && r.base == 1 && r.limit == 2 << 30)
        #expect(!r.isFixed && r.warnings.isEmpty)
    }

    @Test func baseAloneIsFixed() throws {
        let r = try CMARequest.parse("256M@512M")
        #expect(r.base == 512 << 20 && r.limit == 768 << 20 && r.isFixed)
        #expect(try CMARequest.parse("1G@3G-4G").isFixed)        // limit == base + size: fixed too
        #expect(try !CMARequest.parse("1G@6G-8G").isFixed)
        #expect(try !CMARequest.parse("64M@0").isFixed)          // @0 is never fixed
    }

    @Test func kernelTrapsBecomeWarnings() throws {
        let octal = try CMARequest.parse("064M")
        #expect(octal.size == 52 << 20)
        #expect(octal.warnings.first?.contains("octal") == true)
        let junk = try CMARequest.parse("64MB@0x40000000")
        #expect(junk.size == 64 << 20 && junk.base == nil)
        #expect(junk.warnings == ["`B@0x40000000` after the size is ignored (character 4, `B`): the placement after it is ignored too, the kernel places the area anywhere"])
        #expect(try CMARequest.parse("0x10000000").size == 256 << 20)
    }

    @Test func zeroDisablesAndGarbageIsAnError() throws {
        #expect(try CMARequest.parse("0").disablesCMA)
        #expect(throws: CMAArgumentError.self) { try CMARequest.parse("") }
        #expect(throws: CMAArgumentError.self) { try CMARequest.parse("lots") }
    }

    /// Property: sizes written with any suffix read back as the same byte count, with and without @base.
    @Test func sizesRoundTrip() throws {
        var rng = UInt64(0x5eed)
        func next() -> UInt64 { rng = rng &* 6364136223846793005 &+ 1442695040888963407; return rng >> 33 }
        let suffixes: [(String, UInt64)] = [("", 0), ("K", 10), ("k", 10), ("M", 20), ("m", 20), ("G", 30), ("g", 30)]
        for _ in 0..<500 {
            let n = next() % 4096 + 1
            let (s, shift) = suffixes[Int(next() % UInt64(suffixes.count))]
            let base = next() % 64
            let r = try CMARequest.parse("\(n)\(s)@\(base)G")
            #expect(r.size == n << shift)
            #expect(r.base == base << 30)
            #expect(r.warnings.isEmpty || base == 0)
        }
    }
}

/// The kernel's grammar, checked against numbers written every way memparse reads them.
@Suite struct CMAGrammarPropertyTests {
    static let suffixes: [(String, UInt64)] = [("", 0), ("K", 10), ("k", 10), ("M", 20), ("m", 20), ("G", 30), ("g", 30),
                                                ("T", 40), ("t", 40), ("P", 50), ("p", 50), ("E", 60), ("e", 60)]

    /// Writes `n` the way a user might: decimal, `0x` hex (either case of x and digits), or octal with a leading 0.
    static func render(_ n: UInt64, _ rng: inout SplitMix64) -> String {
        switch rng.next() % 4 {
        case 0: return "0x" + String(n, radix: 16)
        case 1: return "0X" + String(n, radix: 16).uppercased()
        case 2 where n > 0: return "0" + String(n, radix: 8)
        default: return String(n)
        }
    }

    /// size[suffix][@base[suffix][-limit[suffix]]] reads back as the numbers that were written.
    @Test func sizesBasesAndLimitsRoundTrip() {
        var rng = SplitMix64(seed: 0xC0FFEE)
        for _ in 0..<2000 {
            let (s1, sh1) = Self.suffixes[Int(rng.next() % UInt64(Self.suffixes.count))]
            let (s2, sh2) = Self.suffixes[Int(rng.next() % 7)]
            let (s3, sh3) = Self.suffixes[Int(rng.next() % 7)]
            let n = rng.next() % (sh1 >= 40 ? 8 : 5000)
            let b = rng.next() % 4096, l = rng.next() % 4096
            let form = rng.next() % 3
            // After a hex number `E`/`e` is one more hex digit, not the exbibyte suffix (tested on its own below).
            var size = Self.render(n, &rng)
            if sh1 == 60, size.lowercased().hasPrefix("0x") { size = String(n) }
            var text = size + s1
            if form >= 1 { text += "@" + Self.render(b, &rng) + s2 }
            if form == 2 { text += "-" + Self.render(l, &rng) + s3 }
            let r = CMARequest.kernelParse(text)
            #expect(r.size == n << sh1, "\(text)")
            switch form {
            case 0: #expect(r.base == nil && r.limit == nil, "\(text)")
            case 1: #expect(r.base == b << sh2 && r.limit == (b << sh2) &+ (n << sh1), "\(text)")
            default: #expect(r.base == b << sh2 && r.limit == l << sh3, "\(text)")
            }
            // Only octal spellings and @0 are worth a warning here; junk-free text never is.
            let numbers = text.lowercased().split(whereSeparator: { $0 == "@" || $0 == "-" })
            let octal = numbers.contains { $0.count > 1 && $0.hasPrefix("0") && !$0.hasPrefix("0x") }
            let hexE = numbers.contains { $0.hasPrefix("0x") && $0.hasSuffix("e") }
            if !octal && !hexE && !(form == 1 && b == 0) { #expect(r.warnings.isEmpty, "\(text): \(r.warnings)") }
            // Fixed exactly when base + size == limit and base != 0.
            #expect(r.isFixed == (r.base.map { $0 != 0 && $0 &+ r.size == r.limit } ?? false), "\(text)")
        }
    }

    /// Any junk after the size drops the whole placement, and the warning names the first junk character.
    @Test func junkAfterTheSizeDropsThePlacement() {
        var rng = SplitMix64(seed: 7)
        let junk = Array("BbiIxXzZ_.:;!#")
        for _ in 0..<500 {
            let n = rng.next() % 1000 + 1
            let (s, sh) = Self.suffixes[Int(rng.next() % 7)]
            let c = junk[Int(rng.next() % UInt64(junk.count))]
            let prefix = "\(n)\(s)"
            let r = CMARequest.kernelParse("\(prefix)\(c)@1G")
            #expect(r.size == n << sh && r.base == nil && r.limit == nil, "\(prefix)\(c)@1G")
            #expect(r.warnings.contains { $0.contains("(character \(prefix.count + 1), `\(c)`)") && $0.contains("placement") }, "\(r.warnings)")
        }
    }

    /// `0x2E` is 46 bytes: memparse's strtoull takes `E` as a hex digit before the suffix check ever sees it.
    @Test func hexSwallowsTheExaSuffix() {
        let r = CMARequest.kernelParse("0x2E")
        #expect(r.size == 0x2e)
        #expect(r.warnings.contains { $0.contains("`E`") && $0.contains("hex digit") })
        #expect(CMARequest.kernelParse("2E").size == 2 << 60)
        #expect(CMARequest.kernelParse("0x40000000").warnings.isEmpty)
    }

    @Test func octalIsNamed() {
        let r = CMARequest.kernelParse("064M@0100M")
        #expect(r.size == 52 << 20 && r.base == 64 << 20)
        #expect(r.warnings.count == 2 && r.warnings[0].contains("size as octal") && r.warnings[1].contains("base as octal"))
        let nine = CMARequest.kernelParse("09M")
        #expect(nine.size == 0)                         // octal stops at 9: 0, then `9` is junk
        #expect(nine.warnings.contains { $0.contains("`9`") })
    }

    @Test func valuesThatDisableCMA() {
        #expect(CMARequest.kernelParse("").size == 0)
        #expect(CMARequest.kernelParse("lots").warnings == ["`cma=lots` does not start with a number (character 1, `l`): the kernel reads size 0 and reserves no global CMA area"])
        #expect(CMARequest.kernelParse("K").size == 0)
    }

    /// Several cma= fold like the kernel: the last size wins, an earlier @base-limit stays.
    @Test func repeatedCMAFolds() {
        let s = CMACommandLine("cma=64M@1G cma=32M")
        #expect(s.size == 32 << 20 && s.base == 1 << 30 && s.limit == (1 << 30) + (64 << 20) && !s.fixedFlag)
        #expect(s.warnings.last?.contains("appears 2 times") == true)
        let bare = CMACommandLine("cma")
        #expect(bare.bare && bare.size == nil)
        #expect(CMACommandLine("console=ttyS0").size == nil)
    }

    @Test func familyParameters() {
        let numa = CMAFamilyParameter.parse(.numaCMA, "0:16M,1:0x2000000,x:4M")
        #expect(numa.nodes.map(\.node) == [0, 1] && numa.nodes.map(\.size) == [16 << 20, 32 << 20])
        #expect(numa.warnings.first?.contains("(character 19)") == true)
        #expect(CMAFamilyParameter.parse(.numaCMA, "64:16M").warnings.first?.contains("MAX_NUMNODES") == true)
        let huge = CMAFamilyParameter.parse(.hugetlbCMA, "512M")
        #expect(huge.perNodeSize == 512 << 20 && huge.warnings.first?.contains("at least 1024 MiB") == true)
        #expect(CMAFamilyParameter.parse(.hugetlbCMA, "0:1G,1:2G").nodes.map(\.size) == [1 << 30, 2 << 30])
        let pernuma = CMAFamilyParameter.parse(.cmaPernuma, "16MB")
        #expect(pernuma.perNodeSize == 16 << 20 && pernuma.warnings.first?.contains("`B`") == true)
    }
}
