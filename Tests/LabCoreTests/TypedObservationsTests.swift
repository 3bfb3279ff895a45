import Foundation
import Testing
@testable import LabCore

/// The typed values inside observations and verdicts, and how results files written before them still decode.
@Suite struct TypedObservationsTests {
    static func decode<T: Decodable>(_ type: T.Type, _ json: String) throws -> T {
        try JSONDecoder().decode(type, from: Data(json.utf8))
    }

    static func encode<T: Encodable>(_ value: T) throws -> String {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys]
        return String(decoding: try encoder.encode(value), as: UTF8.self)
    }

    // MARK: - RunEnding

    @Test func runEndingKeepsTheStringsOfResultsFiles() throws {
        #expect(RunEnding.allCases.map(\.rawValue) == ["powered-off", "kernel-crash", "timeout", "qemu-failed", "not-booted", "lab-error"])
        for ending in RunEnding.allCases {
            #expect(try Self.encode([ending]) == "[\"\(ending.rawValue)\"]")
            #expect(try Self.decode([RunEnding].self, "[\"\(ending.rawValue)\"]") == [ending])
        }
        #expect(throws: DecodingError.self) { try Self.decode([RunEnding].self, "[\"rebooted\"]") }
    }
}
