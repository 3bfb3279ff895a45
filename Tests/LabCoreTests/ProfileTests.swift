import Testing
@testable import LabCore

@Suite struct ProfileTests {
    @Test func fullProfile() throws {
        let p = try Profile.parse("""
            name: seed
            description: d
            image: cma-6.1
            machine: {memory: 4G, cpus: 2, type: q35}
            cmdline: cma=1G@1-2G
            timeout: 90
            expect:
              outcome: reserved
              areas: 1
              size: 1G
              base: {min: 0, max: 1G}
              within: [0, 2G]
              cma-total: {value: 1G, tolerance: 1%}
              dmesg:
                contains: "cma: Reserved"
                matches: ['^cma: Reserved \\d+ MiB']
            steps:
              - alloc: {area: reserved, pages: 102400}
              - alloc: {pages: 300000, expect: failure}
              - free: {pages: 102400, tolerance: 8M}
              - exec: cat /proc/meminfo
              - exec: {command: "false", status: 1, output: "^$"}
            """, file: "p.yaml")
        #expect(p.image == "cma-6.1" && p.machine == MachineSpec(memory: .gib(4), cpus: 2, type: .q35) && p.timeout == 90)
        #expect(p.expect.outcome == .reserved && p.expect.baseMax == 1 << 30 && p.expect.within?.hi == 2 << 30)
        #expect(p.expect.cmaTotal == Approximate(bytes: 1 << 30, tolerance: .percent(1)))
        #expect(p.expect.dmesgContains == ["cma: Reserved"])
        #expect(p.steps == [
            .alloc(area: "reserved", pages: 102400, expectSuccess: true, tolerance: .percent(1)),
            .alloc(area: "reserved", pages: 300000, expectSuccess: false, tolerance: .percent(1)),
            .free(area: "reserved", pages: 102400, tolerance: .bytes(8 << 20)),
            .exec(command: "cat /proc/meminfo", status: 0, output: nil, timeout: 60),
            .exec(command: "false", status: 1, output: "^$", timeout: 60),
        ])
        #expect(p.requiredConfig.map(\.option) == ["CMA"])
        #expect(p.debugfsSteps == [0, 1, 2])
    }

    @Test func cmaWarningsAreCarried() throws {
        let p = try Profile.parse("name: x\ncmdline: cma=64MB@1G\n", file: "x.yaml")
        #expect(p.warnings.count == 1 && p.warnings[0].contains("ignored"))
    }

    static let badProfiles: [(String, String)] = [
        ("name: x\nmachin: {memory: 4G}\n", "x.yaml:2:1: unknown key `machin` (did you mean `machine`?); allowed keys: name, description, image, machine, device-tree, cmdline, timeout, expect, steps"),
        ("name: x\nmachine: {memory: 4Q}\n", "x.yaml:2:19: at `machine.memory`: invalid size '4Q': expected digits with an optional K, M, G or T suffix (for example 4G, 512M, 0x40000000)"),
        ("name: x\nmachine: {cpus: 0}\n", "x.yaml:2:17: at `machine.cpus`: 0 is out of range: allowed 1...64"),
        ("name: x\nmachine: {type: arm}\n", "x.yaml:2:17: at `machine.type`: `arm` is not allowed; use one of: pc, q35"),
        ("name: x\nmachine: {memory: 8G, numa: [4G, 2G]}\n", "x.yaml:2:10: at `machine`: NUMA node sizes add up to 6G but memory is 8G"),
        ("name: x\nexpect: {outcome: ok}\n", "x.yaml:2:19: at `expect.outcome`: `ok` is not allowed; use one of: reserved, failed, none, not-supported, kernel-crash"),
        ("name: x\nexpect: {base: {min: 2G, max: 1G}}\n", "x.yaml:2:16: at `expect.base`: min is above max"),
        ("name: x\nexpect: {within: [2G]}\n", "x.yaml:2:18: at `expect.within`: within is a list of two addresses: [low, high]"),
        ("name: x\nexpect: {dmesg: {matches: ['(']}}\n", "x.yaml:2:28: at `expect.dmesg.matches[0]`: not a valid regular expression"),
        ("name: x\nsteps:\n  - alloc: {area: reserved}\n", "x.yaml:3:12: at `steps[0].alloc`: missing required key `pages`: how many 4 KiB pages to allocate"),
        ("name: x\nsteps:\n  - alloc: {pages: -5}\n", "x.yaml:3:20: at `steps[0].alloc.pages`: expected a non-negative whole number, found `-5`"),
        ("name: x\nsteps:\n  - alloc: {pages: 5, expect: maybe}\n", "x.yaml:3:31: at `steps[0].alloc.expect`: expect is `success` or `failure`"),
        ("name: x\nsteps:\n  - reboot: {}\n", "x.yaml:3:5: at `steps[0]`: unknown key `reboot`; allowed keys: alloc, free, exec"),
        ("name: x\nsteps:\n  - {alloc: {pages: 1}, free: {pages: 1}}\n", "x.yaml:3:5: at `steps[0]`: give only one of alloc, free"),
        ("name: x\ntimeout: 0\n", "x.yaml:2:10: at `timeout`: timeout must be between 1 and 3600 seconds"),
        ("description: no name\n", "x.yaml:1:1: missing required key `name`"),
    ]

    @Test(arguments: badProfiles)
    func badInputSaysFileLinePathAndWhatIsAllowed(yaml: String, message: String) {
        do {
            _ = try Profile.parse(yaml, file: "x.yaml")
            Issue.record("accepted bad input: \(yaml)")
        } catch {
            // Regex compiler messages vary; the location and our part of the message must not.
            #expect(error.description.hasPrefix(message), "got: \(error.description)")
        }
    }

    @Test func everyBundledProfileParses() throws {
        let dir = String(#filePath.dropLast("Tests/LabCoreTests/ProfileTests.swift".count)) + "Profiles"
        let names = ["seed-1g-at-1-2g", "default-no-cma-arg", "cma-zero", "too-large-for-memory", "fixed-256m-at-512m",
                     "above-4g-on-8g", "size-alignment-roundup", "nocma-kernel", "alloc-larger-than-area", "crash-fixed-in-ram-hole"]
        for n in names {
            let path = "\(dir)/\(n).yaml"
            let p = try Profile.parse(try String(contentsOfFile: path, encoding: .utf8), file: path)
            #expect(p.name == n)
            #expect(p.expect.outcome != nil, "\(n) must say what outcome it expects")
        }
    }
}
