import Testing
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
