import Foundation
import Testing
import LabCore
@testable import LabRuntime

extension Integration {
    /// Re-boots a handful of the recorded oracle cases (Tests/LabCoreTests/Fixtures/oracle-cases.tsv) to show the
    /// fixture still matches the kernel, and that the oracle agrees with each fresh boot.
    @Suite struct OracleIntegrationTests {
        /// One case per kind of rule: top-down below the initrd, bottom-up with the base ignored, a crash in the
        /// q35 hole, a fixed area with an unaligned size (exceeds limit), a fixed area over the ACPI tables (busy),
        /// a kernel without DMA_CMA.
        static let picks: [(image: String, machine: String, memory: String, cmdline: String)] = [
            ("cma-6.12", "pc", "2G", "cma=64M"),
            ("cma-6.12", "pc", "8G", "cma=1G@6G-8G"),
            ("cma-6.12", "q35", "3G", "cma=1G@0x80000000"),
            ("cma-6.12", "pc", "2G", "cma=3M@64M"),
            ("cma-6.12", "pc", "4G", "cma=64M@0xbc000000"),
            ("cma-6.12-nodmacma", "pc", "2G", "cma=64M"),
        ]

        struct Row { var release: String; var initrdBytes: UInt64; var ending: String; var lines: [String] }

        static func fixture() throws -> [String: Row] {
            let text = try String(contentsOfFile: IT.lab.paths.home + "/Tests/LabCoreTests/Fixtures/oracle-cases.tsv", encoding: .utf8)
            var rows: [String: Row] = [:]
            for line in text.split(separator: "\n") {
                let f = line.split(separator: "\t", omittingEmptySubsequences: false).map(String.init)
                guard f.count == 8 else { continue }
                rows[[f[0], f[2], f[3], f[4]].joined(separator: "|")] = Row(release: f[1], initrdBytes: UInt64(f[5]) ?? 0, ending: f[6],
                                                                            lines: f[7].components(separatedBy: " | "))
            }
            return rows
        }

        @Test(.timeLimit(.minutes(5))) func fixtureStillMatchesTheKernel() throws {
            let rows = try Self.fixture()
            var runs: [String] = []
            for pick in Self.picks {
                let row = try #require(rows[[pick.image, pick.machine, pick.memory, pick.cmdline].joined(separator: "|")], "\(pick) is not in the fixture")
                let r = try IT.runCLI(["boot", "--image", pick.image, "--machine", pick.machine, "--memory", pick.memory,
                                       "--append", pick.cmdline, "--accel", "tcg", "--quiet", "--timeout", "60"])
                let consolePath = try #require(r.stderr.firstMatch(of: /console log: (\S+console\.log)/).map { String($0.1) }, "\(pick): \(r.stderr)")
                let console = try String(contentsOfFile: consolePath, encoding: .utf8).split(whereSeparator: \.isNewline).map(String.init)
                let facts = KernelLogParser.facts(from: console)
                let recorded = KernelLogParser.facts(from: row.lines)
                let ending = r.status == 3 ? "kernel-crash" : r.status == 0 ? "powered-off" : "exit \(r.status)"
                #expect(ending == row.ending, "\(pick)")
                #expect(facts.kernelRelease == row.release, "\(pick)")
                // The lines the oracle is judged on are the kernel's own, unchanged since the recording.
                #expect(facts.cmaLines == recorded.cmaLines, "\(pick)")
                #expect(facts.unknownParameters == recorded.unknownParameters, "\(pick)")
                #expect(facts.e820 == recorded.e820, "\(pick)")

                // And the oracle agrees with this fresh boot (its initrd may differ from the recorded one).
                let runDir = Path.directory(of: consolePath)
                runs.append(runDir)
                let argv = try String(contentsOfFile: runDir + "/qemu.argv", encoding: .utf8)
                let initrd = try #require(argv.firstMatch(of: /-initrd (\S+)/).map { String($0.1) })
                let size = try #require((try FileManager.default.attributesOfItem(atPath: initrd))[.size] as? NSNumber).uint64Value
                if size == row.initrdBytes { #expect(facts.ramdisk == recorded.ramdisk, "\(pick)") }
                let kernel = try IT.kernel(pick.image)
                let config = try kernel.config()
                let input = OracleInput(version: try #require(OracleRuntime.version(kernel)), config: config,
                                        machine: MachineSpec(memory: try ByteSize.parse(pick.memory), type: MachineType(rawValue: pick.machine)!),
                                        commandLine: KernelCommandLine(parsing: facts.commandLine ?? pick.cmdline), initrdSize: size,
                                        kernelImage: OracleRuntime.kernelImage(kernel.kernel))
                var o = Observations(profile: "oracle-it", image: pick.image, machine: input.machine, commandLine: KernelCommandLine(parsing: pick.cmdline),
                                     accelerator: "tcg", ending: try #require(RunEnding(rawValue: ending)), boot: facts)
                o.configCMA = config.isEnabled("CMA")
                let check = try #require(Oracle.compare(Oracle.predict(input), with: o))
                #expect(check.agrees, "\(pick): \(check.divergence ?? "")")
            }
            #expect(IT.qemuProcesses(ofRuns: runs).isEmpty)
        }

        @Test func explainPrintsThePrediction() throws {
            let r = try IT.runCLI(["explain", "--image", "cma-6.12", "--memory", "8G", "cma=1G@6G-8G"])
            #expect(r.status == 0, "\(r.stderr)")
            #expect(r.stdout.contains("prediction: reserved 1024 MiB at 0x100000000 (area `reserved`, node -1)"), "\(r.stdout)")
            #expect(r.stdout.contains("assumptions:"))
            let bad = try IT.runCLI(["explain", "--image", "cma-6.12", "--memory", "100M", "cma=64M"])
            #expect(bad.status == 2 && bad.stderr.contains("--memory"), "\(bad.stderr)")
        }
    }
}
