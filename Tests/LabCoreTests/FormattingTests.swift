import Testing
@testable import LabCore

@Suite struct FormattingTests {
    @Test func hexIsLowerCaseUnpadded() {
        #expect(hex(0) == "0x0")
        #expect(hex(0x7B40_0000) == "0x7b400000")
        #expect(hex(UInt64.max) == "0xffffffffffffffff")
        #expect(pa(0x7BC0_0000) == "0x000000007bc00000")
    }

    @Test func medianOfOddEvenAndNoValues() {
        #expect(median([3, 1, 2]) == 2)
        #expect(median([4, 1, 3, 2]) == 2.5)
        #expect(median([7]) == 7)
        #expect(median([]) == nil)
    }
}
