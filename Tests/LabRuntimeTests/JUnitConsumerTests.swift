import Foundation
import Testing
import LabCore
@testable import LabRuntime

/// The JUnit XML checked by a real consumer: Python's `junitparser` (installed by `make setup`).
@Suite struct JUnitConsumerTests {
    static let script = """
        import sys
        try:
            import junitparser
        except ImportError:
            print("junitparser is missing: run `make setup` (pip install junitparser)", file=sys.stderr)
            sys.exit(3)
        xml = junitparser.JUnitXml.fromfile(sys.argv[1])
        suites = [xml] if isinstance(xml, junitparser.TestSuite) else list(xml)
        for suite in suites:
            print("suite %s tests=%d failures=%d errors=%d" % (suite.name, suite.tests, suite.failures, suite.errors))
            for case in suite:
                kinds = [type(r).__name__ for r in case.result] or ["Passed"]
                print("case %s %s %s %s" % (case.classname, case.name, ",".join(kinds), case.time))
                for r in case.result:
                    print("  message %s" % r.message)
                    print("  type %s" % r.type)
                    print("  text %r" % r.text)
                print("  out %r" % case.system_out)
        """

    @Test func junitparserReadsWhatWeWrite() throws {
        let verdicts = [
            Verdict(profile: "default", image: "cma-6.12", kind: .pass,
                    checks: [CheckResult(name: "outcome", expected: "booted", observed: "booted", passed: true)],
                    consoleTail: ["[    2.7] reboot: Power down"], seconds: 3.5),
            Verdict(profile: "fixed-range", image: "cma-6.12", kind: .fail,
                    checks: [
                        CheckResult(name: "outcome", expected: "booted", observed: "booted", passed: true),
                        CheckResult(name: "area.base", expected: "0x40000000", observed: "0x3fc00000", passed: false),
                        CheckResult(name: "area.size", expected: "1024 MiB", observed: "<512 MiB> & \"more\"", passed: false),
                    ],
                    consoleTail: ["x < y & 'z'", "ctl\u{1}\u{1B}[0m"], seconds: 12.25),
            Verdict(profile: "hole", image: "cma-6.1", kind: .error, checks: [],
                    error: "qemu-system-x86_64 not found in PATH", seconds: 0.125),
        ]
        let dir = NSTemporaryDirectory() + "cmalab-junit-\(getpid())"
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let path = dir + "/junit.xml"
        try Files.write(Array(Report.junit(verdicts).utf8), to: path)

        let output: String
        do {
            output = try runCapturing(["python3", "-c", Self.script, path])
        } catch {
            Issue.record("the JUnit consumer check needs python3 with junitparser; run `make setup`. \(error)")
            return
        }
        let lines = output.split(separator: "\n").map(String.init)
        #expect(lines == [
            "suite cma-6.1 tests=1 failures=0 errors=1",
            "case cmalab.cma-6.1 hole Error 0.125",
            "  message qemu-system-x86_64 not found in PATH",
            "  type lab-error",
            "  text 'qemu-system-x86_64 not found in PATH'",
            "  out None",
            "suite cma-6.12 tests=2 failures=1 errors=0",
            "case cmalab.cma-6.12 default Passed 3.5",
            "  out '[    2.7] reboot: Power down'",
            "case cmalab.cma-6.12 fixed-range Failure 12.25",
            "  message area.base: expected 0x40000000, observed 0x3fc00000",
            "  type expectation",
            "  text 'area.base: expected 0x40000000, observed 0x3fc00000\\narea.size: expected 1024 MiB, observed <512 MiB> & \"more\"'",
            "  out \"x < y & 'z'\\nctl[0m\"",
        ], "\(output)")
    }
}
