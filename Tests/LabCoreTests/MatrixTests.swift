import Foundation
import Testing
@testable import LabCore

@Suite struct MatrixTests {
    func profiles() throws -> [Profile] {
        try [
            Profile.parse("name: seed\nmachine: {memory: 4G}\ncmdline: cma=1G@1-2G\nexpect: {outcome: reserved, size: 1G}\nsteps: [{alloc: {pages: 10}}]\n", file: "seed.yaml"),
            Profile.parse("name: zero\nmachine: {memory: 2G}\ncmdline: cma=0\nexpect: {outcome: none, cma-total: 0}\n", file: "zero.yaml"),
            Profile.parse("name: nocma\nimage: nocma-6.12\nexpect: {outcome: not-supported}\n", file: "nocma.yaml"),
        ]
    }

    func spec(_ yaml: String) throws -> MatrixSpec { try MatrixSpec.parse(yaml, file: "m.yaml") }

    @Test func expandsImagesTimesProfilesInIdOrder() throws {
        let m = try spec("name: m\nimages: [cma-6.12, cma-6.1]\nprofiles: [p/]\nexclude: [{profile: nocma}]\ninclude: [{image: nocma-6.12, profile: nocma}]\n")
        let ids = try m.cells(profiles: profiles()).map(\.id)
        #expect(ids == ["nocma@nocma-6.12", "seed@cma-6.1", "seed@cma-6.12", "zero@cma-6.1", "zero@cma-6.12"])
    }

    @Test func axesMultiplyCellsAndChangeTheMachine() throws {
        let m = try spec("""
            name: m
            images: [cma-6.12]
            profiles: [p/]
            axes: {memory: [2G, 8G], cmdline: ["", "loglevel=8"]}
            exclude: [{profile: nocma}]
            """)
        let cells = try m.cells(profiles: profiles())
        #expect(cells.count == 8)
        let c = try #require(cells.first { $0.id == "seed@cma-6.12[memory=8G][cmdline=loglevel=8]" })
        #expect(c.profile.machine.memory == .gib(8))
        #expect(c.profile.commandLine.description == "cma=1G@1-2G loglevel=8")
    }

    @Test func overridesReplaceOnlyTheKeysTheyGive() throws {
        let m = try spec("""
            name: m
            images: [cma-6.12, cma-6.1]
            profiles: [p/]
            exclude: [{profile: nocma}]
            overrides:
              - image: cma-6.1
                profile: seed
                expect:
                  dmesg: {contains: ["cma_declare_contiguous_nid("]}
                  size: ~
            """)
        let cells = try m.cells(profiles: profiles())
        let on61 = try #require(cells.first { $0.id == "seed@cma-6.1" })
        let on612 = try #require(cells.first { $0.id == "seed@cma-6.12" })
        #expect(on61.profile.expect.dmesgContains == ["cma_declare_contiguous_nid("])
        #expect(on61.profile.expect.size == nil)
        #expect(on61.profile.expect.outcome == .reserved)
        #expect(on61.overrides == ["m.yaml:6"])
        #expect(on612.profile.expect.size == Approximate(bytes: 1 << 30))
        #expect(on612.overrides.isEmpty)
    }

    @Test func patternsMatchWithStars() {
        #expect(NamePattern("cma-6.12*").matches("cma-6.12-uart"))
        #expect(NamePattern("cma-6.12*").matches("cma-6.12"))
        #expect(!NamePattern("cma-6.12*").matches("cma-6.1"))
        #expect(NamePattern("*-uart").matches("cma-6.12-uart"))
        #expect(NamePattern("c*a*t").matches("cma-6.12-uart"))
        #expect(!NamePattern("seed").matches("seed2"))
    }

    @Test(arguments: [
        ("name: m\nprofiles: [p/]\n", "m.yaml:1:1: missing required key `images`: the image names (from Images/) to run on"),
        ("name: m\nimages: [a, a]\nprofiles: [p/]\n", "m.yaml:2:13: at `images[1]`: image `a` is listed twice"),
        ("name: m\nimages: [a]\nprofiles: [p/]\nsharding: 2\n", "m.yaml:4:1: unknown key `sharding`; allowed keys: name, description, images, profiles, axes, exclude, include, overrides"),
        ("name: m\nimages: [a]\nprofiles: [p/]\naxes: {memory: [8X]}\n", "m.yaml:4:17: at `axes.memory[0]`: invalid size '8X': expected digits with an optional K, M, G or T suffix (for example 4G, 512M, 0x40000000)"),
        ("name: m\nimages: [a]\nprofiles: [p/]\nexclude: [{}]\n", "m.yaml:4:11: at `exclude[0]`: give at least one of image, profile, memory, cmdline"),
        ("name: m\nimages: [a]\nprofiles: [p/]\noverrides: [{image: a, expect: {sise: 1G}}]\n", "m.yaml:4:33: at `overrides[0].expect`: unknown key `sise` (did you mean `size`?); allowed keys: outcome, areas, area-names, size, base, within, cma-total, cma-free, memory-cma-reserved, dmesg, crash, nodes"),
        ("name: m\nimages: [a]\nprofiles: [p/]\ninclude: [{image: 'a*', profile: x}]\n", "m.yaml:4:11: at `include[0]`: an included cell names one image, without `*`"),
    ])
    func badMatrixFilesSayWhereAndWhat(yaml: String, message: String) {
        #expect(throws: InputError.self) { try MatrixSpec.parse(yaml, file: "m.yaml") }
        do { _ = try MatrixSpec.parse(yaml, file: "m.yaml") } catch { #expect(error.description == message) }
    }

    @Test func exclusionsAndOverridesThatMatchNothingAreErrors() throws {
        let ex = try spec("name: m\nimages: [cma-6.12]\nprofiles: [p/]\nexclude: [{profile: seeed}]\n")
        #expect(throws: InputError.self) { try ex.cells(profiles: profiles()) }
        let ov = try spec("name: m\nimages: [cma-6.12]\nprofiles: [p/]\noverrides: [{image: cma-6.2, expect: {size: 1G}}]\n")
        #expect(throws: InputError.self) { try ov.cells(profiles: profiles()) }
        let inc = try spec("name: m\nimages: [cma-6.12]\nprofiles: [p/]\ninclude: [{image: x, profile: nope}]\n")
        #expect(throws: InputError.self) { try inc.cells(profiles: profiles()) }
    }

    @Test func shardsPartitionTheCellsDeterministically() throws {
        let items = (0..<11).map { "cell\($0)" }
        var union: [String] = []
        for k in 1...3 {
            let part = Shard(index: k, count: 3).select(items)
            #expect(part.count == 3 || part.count == 4)
            #expect(part == Shard(index: k, count: 3).select(items))
            union += part
        }
        #expect(union.sorted() == items.sorted())
        #expect(try Shard.parse("2/5") == Shard(index: 2, count: 5))
        for bad in ["0/2", "3/2", "1/0", "a/b", "1", "1/2/3"] {
            #expect(throws: InputError.self) { try Shard.parse(bad) }
        }
    }
}

@Suite struct MergeAndDiffTests {
    func verdict(_ profile: String, image: String, memory: ByteSize? = nil, kind: VerdictKind = .pass) -> Verdict {
        var v = Verdict(profile: profile, image: image, kind: kind, checks: [])
        v.cellKey = CellKey(profile: profile, image: image, memory: memory)
        return v
    }

    @Test func mergeSortsByKeyAndRefusesOverlaps() throws {
        let a = [verdict("b", image: "x"), verdict("a", image: "y", kind: .fail)]
        let b = [verdict("a", image: "x")]
        let merged = try Report.merge([("s1.json", a), ("s2.json", b)])
        #expect(merged.map(\.key) == ["a@x", "a@y", "b@x"])
        #expect(ReportSummary(merged).line == "2 passed, 1 failed, 0 errors")
        #expect(throws: ReportError.self) { try Report.merge([("s1.json", a), ("s1-again.json", a)]) }
    }

    @Test func mergedJSONRoundTripsThroughTheSchema() throws {
        let merged = try Report.merge([("a", [verdict("seed", image: "cma-6.12")]), ("b", [verdict("seed", image: "cma-6.1")])])
        let meta = ReportMeta(cmalabVersion: "t", started: "2026-11-25T00:00:00Z", host: "h", accelerator: "tcg")
        let (back, _) = try Report.decodeResults(try Report.json(merged, meta: meta))
        #expect(back == merged)
    }

    func observations(_ fixture: String, image: String) throws -> Observations {
        let log = try Fixture.text(fixture).split(whereSeparator: \.isNewline).map(String.init)
        var o = Observations(profile: "seed", image: image, machine: MachineSpec(memory: .gib(4)), commandLine: "cma=1G@1-2G",
                             accelerator: "tcg", ending: .poweredOff, boot: KernelLogParser.facts(from: log))
        o.kernelRelease = o.boot.kernelRelease
        return o
    }

    /// The 6.1 and 6.12 captures of the seed boot differ where the kernels differ.
    @Test func diffShowsTheRealDifferencesBetween61And612() throws {
        var a = try observations("console-6.1-pc-4G-cma-1G@1-2G.log", image: "cma-6.1")
        var b = try observations("console-6.12-pc-4G-cma-1G@1-2G.log", image: "cma-6.12")
        a.areas = [AreaSnapshot(name: "reserved", basePFN: 0x3fc00, count: 262_144, used: 0, maxchunk: 262_144, orderPerBit: 0,
                                sysfs: ["alloc_pages_success": 0, "alloc_pages_fail": 0])]
        b.areas = [AreaSnapshot(name: "reserved", basePFN: 0x3fc00, count: 262_144, used: 0, maxchunk: 262_144, orderPerBit: 0,
                                sysfs: ["alloc_pages_success": 0, "alloc_pages_fail": 0, "release_pages_success": 0])]
        let changes = ObservationDiff.compare(a, b)
        let fields = changes.map(\.field)
        #expect(fields.contains("kernel release"))
        #expect(fields.contains("area reserved sysfs files"))
        #expect(!fields.contains("area reserved base"))
        let reservation = changes.filter { $0.field == "reservation" }
        #expect(reservation.contains { $0.b?.hasSuffix(" on node -1") == true })
        #expect(reservation.contains { $0.a != nil && $0.a?.contains("on node") == false })
        let text = ObservationDiff.render(changes, titleA: "6.1", titleB: "6.12")
        #expect(text.contains("area reserved sysfs files"))
        #expect(ObservationDiff.compare(a, a).isEmpty)
    }

    @Test func pairingKeyDropsOnlyTheImage() {
        #expect(ObservationDiff.pairingKey(verdict("seed", image: "cma-6.1", memory: .gib(8))) == "seed[memory=8G]")
        #expect(ObservationDiff.pairingKey(verdict("seed", image: "cma-6.12")) == "seed")
        #expect(ObservationDiff.maskPointers("cma: __cma_alloc(): returned (____ptrval____)") == "cma: __cma_alloc(): returned <ptr>")
        #expect(ObservationDiff.maskPointers("cma: cma_release(page 00000000deadbeef, count 5)") == "cma: cma_release(page <ptr>, count 5)")
    }
}
