import Testing
@testable import LabCore

@Suite struct KernelCommandLineTests {
    @Test func splitsAndRendersInOrder() {
        let line = KernelCommandLine(parsing: "console=ttyS0  cma=1G@1-2G quiet")
        #expect(line.parameters.map(\.key) == ["console", "cma", "quiet"])
        #expect(line.value(of: "cma") == "1G@1-2G")
        #expect(line.description == "console=ttyS0 cma=1G@1-2G quiet")
    }

    @Test func keepsQuotedValuesTogether() {
        let line = KernelCommandLine(parsing: #"dyndbg="file mm/cma.c +p" cma=64M"#)
        #expect(line.value(of: "dyndbg") == "file mm/cma.c +p")
        #expect(line.description == #"dyndbg="file mm/cma.c +p" cma=64M"#)
    }

    @Test func lastValueWinsAndSetDefaultNeverOverrides() {
        var line = KernelCommandLine(parsing: "cma=64M cma=128M")
        #expect(line.value(of: "cma") == "128M")
        line.setDefault("cma", "1G")
        #expect(line.values(of: "cma") == ["64M", "128M"])
        line.setDefault("panic", "-1")
        #expect(line.value(of: "panic") == "-1")
    }
}
