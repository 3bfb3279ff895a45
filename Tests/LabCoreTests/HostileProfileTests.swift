import Testing
@testable import LabCore

/// Profile values that would reach a shell or a comment line are refused where they are written.
@Suite struct HostileProfileTests {
    @Test(arguments: [
        ("name: x\ncmdline: \"cma=64M foo=\\\"a\\nb\\\"\"\n", "x.yaml:2:10: at `cmdline`: "),
        ("name: x\ncmdline: |\n  cma=64M foo=\"a\n  b\"\n", "x.yaml:2:10: at `cmdline`: "),
        ("name: x\ncmdline: \"cma=64M\\r\"\n", "x.yaml:2:10: at `cmdline`: "),
    ])
    func controlCharacterInCommandLineIsRefused(yaml: String, location: String) {
        do {
            let p = try Profile.parse(yaml, file: "x.yaml")
            Issue.record("accepted \(p.commandLine.description.debugDescription)")
        } catch {
            #expect(error.description.hasPrefix(location), "got: \(error.description)")
            #expect(error.description.contains("control character"), "got: \(error.description)")
        }
    }

    @Test(arguments: ["alloc: {area: \"x; reboot\", pages: all}", "alloc: {area: \"a/../b\", pages: 1}", "free: {area: \"$(id)\", pages: 1}",
                      "alloc: {area: \"\", pages: 1, repeat: 2}"])
    func areaNameOutsideTheSafeSetIsRefused(step: String) {
        do {
            _ = try Profile.parse("name: x\nsteps:\n  - \(step)\n", file: "x.yaml")
            Issue.record("accepted \(step)")
        } catch {
            #expect(error.description.hasPrefix("x.yaml:3:"), "got: \(error.description)")
            #expect(error.description.contains("[A-Za-z0-9._,@-]"), "got: \(error.description)")
        }
    }

    @Test func safeAreaNamesAreAccepted() throws {
        let p = try Profile.parse("name: x\nsteps:\n  - alloc: {area: my_area-1.x, pages: all}\n  - free: {area: reserved, pages: 1}\n", file: "x.yaml")
        #expect(p.steps.count == 2)
        // Device-tree pools are named after their node: `linux,cma`, `dsp@60100000`.
        let dt = try Profile.parse("name: x\nsteps:\n  - alloc: {area: \"linux,cma\", pages: 1}\n  - free: {area: dsp@60100000, pages: 1}\n", file: "x.yaml")
        #expect(dt.steps.count == 2)
    }

    @Test(arguments: [
        ("name: x\nmachine: {numa: [8E, 8E]}\n", "x.yaml:2:10: at `machine`: ", "at most 16T"),
        ("name: x\nmachine: {memory: 32T}\n", "x.yaml:2:10: at `machine`: ", "at most 16T"),
        ("name: x\nsteps:\n  - exec: {command: true, timeout: -1}\n", "x.yaml:3:36: at `steps[0].exec.timeout`: ", "(0, 86400]"),
        ("name: x\nsteps:\n  - exec: {command: true, timeout: nan}\n", "x.yaml:3:36: at `steps[0].exec.timeout`: ", "(0, 86400]"),
        ("name: x\nsteps:\n  - exec: {command: true, timeout: 1e300}\n", "x.yaml:3:36: at `steps[0].exec.timeout`: ", "(0, 86400]"),
        ("name: x\nsteps:\n  - exec: {command: true, timeout: inf}\n", "x.yaml:3:36: at `steps[0].exec.timeout`: ", "(0, 86400]"),
    ])
    func numbersThatWouldTrapAreRefused(yaml: String, location: String, allowed: String) {
        do {
            let p = try Profile.parse(yaml, file: "x.yaml")
            Issue.record("accepted \(p.machine) \(p.steps)")
        } catch {
            #expect(error.description.hasPrefix(location), "got: \(error.description)")
            #expect(error.description.contains(allowed), "got: \(error.description)")
        }
    }

    @Test func overflowingNumaSumIsAPlanErrorNotATrap() {
        let spec = MachineSpec(memory: .gib(4), numaNodes: [ByteSize(bytes: 1 << 63), ByteSize(bytes: 1 << 63), .gib(4)])
        #expect(throws: PlanError.self) { try QEMUPlan(machine: spec, kernel: "").validate() }
    }
}
