import Foundation
import Testing
@testable import LabCore
import LabProtocol

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

extension TypedObservationsTests {
    // MARK: - The machine

    static func observations(_ machine: MachineSpec) -> Observations {
        Observations(profile: "p", image: "i", machine: machine, commandLine: "cma=64M", accelerator: "tcg", ending: .poweredOff, boot: BootLogFacts())
    }

    @Test func observationsCarryTheMachineAndItsSummary() throws {
        let spec = MachineSpec(memory: .gib(4), cpus: 2, type: .q35, numaNodes: [.gib(1), .gib(3)])
        let o = Self.observations(spec)
        #expect(o.machine == "q35, 4G, 2 CPU, NUMA 1G+3G")
        let json = try Self.encode(o)
        #expect(json.contains("\"machine\":\"q35, 4G, 2 CPU, NUMA 1G+3G\""))
        #expect(json.contains("\"machineSpec\":{"))
        #expect(try Self.decode(Observations.self, json) == o)
    }

    @Test func legacyObservationsGetTheMachineFromItsText() throws {
        var json = try Self.encode(Self.observations(MachineSpec(memory: .gib(64), cpus: 4, numaNodes: [.gib(32), .gib(32)])))
        let legacy = try #require(json.firstRange(of: #/"machineSpec":\{[^}]*\},/#))
        json.removeSubrange(legacy)
        #expect(!json.contains("machineSpec"))
        let o = try Self.decode(Observations.self, json)
        #expect(o.machine == "pc, 64G, 4 CPU, NUMA 32G+32G")
        #expect(o.machineSpec == MachineSpec(memory: .gib(64), cpus: 4, numaNodes: [.gib(32), .gib(32)]))
    }

    @Test func legacySummaryParse() {
        #expect(MachineSpec.legacy(summary: "q35, 8G, 1 CPU") == MachineSpec(memory: .gib(8), type: .q35))
        #expect(MachineSpec.legacy(summary: "pc, 4G") == MachineSpec(memory: .gib(4)))
        #expect(MachineSpec.legacy(summary: "pc") == nil)
        #expect(MachineSpec.legacy(summary: "") == nil)
    }

    @Test func memoryMapWithoutE820TakesTheMemoryFromTheSpec() {
        let scene = MemoryMapScene.build(Self.observations(MachineSpec(memory: .gib(6))))
        #expect(scene.regions == [MemoryMapScene.Region(start: 0, end: 6 << 30, kind: .unknown, label: "unknown")])
    }
}

extension TypedObservationsTests {
    // MARK: - Kernel messages

    @Test func kmsgMessagesGiveTheFactsOfTheSameConsole() throws {
        let console = try Fixture.text("console-6.12-pc-4G-cma-1G@1-2G.log").split(whereSeparator: \.isNewline).map(String.init)
        let messages = console.map(KernelLog.stripTimestamp)
        #expect(KernelLogParser.facts(messages: messages) == KernelLogParser.facts(from: console))
        #expect(!KernelLogParser.facts(messages: messages).reserved.isEmpty)
    }

    @Test func kmsgMessagesAreTakenAsTheyAre() {
        // A message is never a rendered line: text that looks like a timestamp is part of it.
        let facts = KernelLogParser.facts(messages: ["[    1.000000] cma: Reserved 16 MiB at 0x0000000001000000", "cma: Reserved 32 MiB at 0x0000000002000000\r"])
        #expect(facts.cmaLines == ["cma: Reserved 32 MiB at 0x0000000002000000"])
        #expect(facts.reserved.count == 2)
    }

    @Test func dmesgExpectationsSearchTheMessages() throws {
        let p = try Profile.parse("name: d\nexpect: {dmesg: {contains: [Reserved 16 MiB], absent: ['[']}}", file: "d.yaml")
        let checks = Evaluate.checks(p, Self.observations(MachineSpec(memory: .gib(4))), messages: ["cma: Reserved 16 MiB at 0x0000000001000000"])
        #expect(checks.map(\.passed) == [true, true])
        #expect(checks[0].observed == "cma: Reserved 16 MiB at 0x0000000001000000")
    }
}

extension TypedObservationsTests {
    // MARK: - Matrix cells

    @Test func cellKeyRendersTheIdAndRoundTrips() throws {
        let key = CellKey(profile: "seed", image: "cma-6.12", memory: .gib(8), cmdline: "numa=off a]b")
        #expect(key.id == "seed@cma-6.12[memory=8G][cmdline=numa=off a]b]")
        #expect(key.axes == "[memory=8G][cmdline=numa=off a]b]")
        #expect(try Self.decode(CellKey.self, Self.encode(key)) == key)
        #expect(try Self.encode(CellKey(profile: "p", image: "i")) == "{\"image\":\"i\",\"profile\":\"p\"}")
        for id in ["seed@cma-6.12", "seed@cma-6.12[memory=8G]", "seed@cma-6.12[cmdline=x=1]", key.id] {
            #expect(CellKey.legacy(id: id)?.id == id)
        }
        #expect(CellKey.legacy(id: "no-at-sign") == nil)
        #expect(CellKey.legacy(id: "p@i[memory=lots]") == nil)
    }

    @Test func verdictsCarryTheCellAndItsId() throws {
        var v = Verdict(profile: "seed", image: "cma-6.1", kind: .pass, checks: [])
        v.cellKey = CellKey(profile: "seed", image: "cma-6.1", memory: .gib(8))
        #expect(v.cell == "seed@cma-6.1[memory=8G]" && v.key == "seed@cma-6.1[memory=8G]")
        let json = try Self.encode(v)
        #expect(json.contains("\"cell\":\"seed@cma-6.1[memory=8G]\"") && json.contains("\"cellKey\":{"))
        #expect(try Self.decode(Verdict.self, json) == v)
        #expect(ObservationDiff.pairingKey(v) == "seed[memory=8G]")
    }

    @Test func legacyVerdictsGetTheCellFromItsId() throws {
        let json = #"{"profile":"seed","image":"cma-6.1","cell":"seed@cma-6.1[memory=8G][cmdline=quiet]","kind":"pass","checks":[],"consoleTail":[],"seconds":1,"runDirectory":""}"#
        let v = try Self.decode(Verdict.self, json)
        #expect(v.cellKey == CellKey(profile: "seed", image: "cma-6.1", memory: .gib(8), cmdline: "quiet"))
        #expect(v.cell == "seed@cma-6.1[memory=8G][cmdline=quiet]")
        #expect(ObservationDiff.pairingKey(v) == "seed[memory=8G][cmdline=quiet]")
        let plain = try Self.decode(Verdict.self, json.replacingOccurrences(of: #""cell":"seed@cma-6.1[memory=8G][cmdline=quiet]","#, with: ""))
        #expect(plain.cell == nil && plain.cellKey == nil && ObservationDiff.pairingKey(plain) == "seed")
    }
}

extension TypedObservationsTests {
    // MARK: - CMA areas

    @Test func theWireAreaBecomesAnAreaSnapshot() {
        let wire = CMAArea(name: "reserved", basePFN: 0x3fc00, count: 262_144, used: 10, maxchunk: 262_000, orderPerBit: 0,
                           sysfs: [Counter(name: "alloc_pages_fail", value: 1), Counter(name: "alloc_pages_success", value: 10)])
        #expect(AreaSnapshot(wire) == AreaSnapshot(name: "reserved", basePFN: 0x3fc00, count: 262_144, used: 10, maxchunk: 262_000, orderPerBit: 0,
                                                   sysfs: ["alloc_pages_fail": 1, "alloc_pages_success": 10]))
        #expect(AreaSnapshot(CMAArea(name: "empty")) == AreaSnapshot(name: "empty", basePFN: nil, count: nil, used: nil, maxchunk: nil, orderPerBit: nil, sysfs: [:]))
    }
}

extension TypedObservationsTests {
    // MARK: - The command line

    @Test func observationsCarryTheCommandLineAsParameters() throws {
        let line = KernelCommandLine(parsing: #"console=ttyS0 dyndbg="file mm/cma.c +p" cma=1G@1-2G nokaslr"#)
        let o = Observations(profile: "p", image: "i", machine: MachineSpec(memory: .gib(4)), commandLine: line,
                             accelerator: "tcg", ending: .poweredOff, boot: BootLogFacts())
        #expect(o.commandLine == line.description)
        let json = try Self.encode(o)
        #expect(json.contains(#""commandLineParameters":[{"key":"console","value":"ttyS0"},{"key":"dyndbg","value":"file mm\/cma.c +p"}"#))
        #expect(json.contains(#"{"key":"nokaslr"}"#))
        #expect(try Self.decode(Observations.self, json).commandLineParameters == line)
        // A file written before the field: the parameters come from the text.
        var legacy = json
        legacy.removeSubrange(try #require(legacy.firstRange(of: #/"commandLineParameters":\[[^\]]*\],/#)))
        #expect(!legacy.contains("commandLineParameters"))
        #expect(try Self.decode(Observations.self, legacy).commandLineParameters == line)
    }
}
