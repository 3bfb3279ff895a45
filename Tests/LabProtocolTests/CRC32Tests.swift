import Testing
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
