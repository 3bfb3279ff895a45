import Foundation
import Testing
import LabCore
import LabProtocol
@testable import LabRuntime
import LabTestKit

/// AgentClient and MatrixRunner against FakeMachine.
@Suite struct FakeMachineClientTests {
    /// A fake machine with an agent client connected to it, in a fake lab's runs folder.
    static func connect(_ guest: FakeGuest, lab: FakeLab) throws -> (FakeMachine, AgentClient) {
        let run = try RunDirectory(root: lab.root + "/runs", name: "client")
        let socket = run.socket("agent.sock")
        let machine = try FakeMachine(guest: guest, run: run, socket: socket)
        let client = AgentClient(machine: machine, socketPath: socket)
        return (machine, client)
    }

    @Test func readyRequestsAndPowerOff() throws {
        let lab = try FakeLab()
        let (machine, client) = try Self.connect(.cma1G(), lab: lab)
        let hello = try client.waitReady(deadline: Date().addingTimeInterval(5))
        #expect(hello.cmdline.contains("cma=1G@1-2G"))
        #expect(try client.meminfo()["CmaTotal"] == 1_048_576)
        #expect(try client.cmaAreas(bitmap: false).map(\.basePFN) == [0x3fc00])
        #expect(try client.request(.cmaAlloc(area: "reserved", pages: 1024)) == .done)
        #expect(try client.meminfo()["CmaFree"] == 1_048_576 - 4096)
        #expect(try client.powerOff(timeout: 2) == .poweredOff)
        #expect(machine.exit == .poweredOff)
        #expect(!machine.isRunning)
    }

    @Test func requestThatIsNeverAnsweredTimesOut() throws {
        let lab = try FakeLab()
        var guest = FakeGuest.cma1G()
        guest.faults = [.neverAnswers(on: .first("vmstat"))]
        let (machine, client) = try Self.connect(guest, lab: lab)
        defer { machine.stop() }
        _ = try client.waitReady(deadline: Date().addingTimeInterval(5))
        let error = #expect(throws: LabError.self) { try client.request(.vmstat, timeout: 0.2) }
        #expect(error?.code == .timeout)
        #expect(error?.message.contains("the agent to answer vmstat") == true)
        // The channel still works for the next request.
        guard case .vmstat(let counters) = try client.request(.vmstat) else { Issue.record("no vmstat"); return }
        #expect(counters.contains { $0.name == "nr_free_cma" })
    }

    @Test func floodOfGarbageClosesTheChannel() throws {
        let lab = try FakeLab()
        var guest = FakeGuest.cma1G()
        // The machine then ends too: with a live machine AgentClient gives it 5 s to end after its channel closed.
        guest.faults = [.garbageBefore(on: .first("uname"), bytes: Array(repeating: 0x5A, count: 200_000)), .machineVanishes(on: .first("uname"))]
        let (machine, client) = try Self.connect(guest, lab: lab)
        defer { machine.stop() }
        client.garbageLimit = 64 << 10
        _ = try client.waitReady(deadline: Date().addingTimeInterval(5))
        let error = #expect(throws: LabError.self) { try client.request(.uname, timeout: 2) }
        #expect(error?.message.contains("flooded the agent channel") == true, "\(error?.message ?? "")")
        #expect(client.closed)
    }

    /// Frames the guest was not asked for: `count` responses to ids nobody asked (from 50_000 up), each
    /// carrying `payloadBytes` of exec output.
    static func unsolicitedResponses(count: Int, payloadBytes: Int) -> [UInt8] {
        let result = ExecResult(termination: .exited(0), stdout: [UInt8](repeating: 0x41, count: payloadBytes), stderr: [],
                                stdoutTruncated: false, stderrTruncated: false, durationNanoseconds: 1)
        let payload = AgentResponse.exec(result).encode()
        return (0..<count).flatMap { Frame(kind: .response, id: UInt32(50_000 + $0), payload: payload).encoded() }
    }

    /// Valid frames count against the channel limit: responses to ids that were not asked are dropped and
    /// counted, and what the client holds stays bounded.
    @Test func unsolicitedResponsesAreDroppedAndCounted() throws {
        let lab = try FakeLab()
        var guest = FakeGuest.cma1G()
        guest.faults = [.garbageBefore(on: .first("uname"), bytes: Self.unsolicitedResponses(count: 200, payloadBytes: 16 << 10)),
                        .machineVanishes(on: .first("uname"))]
        let (machine, client) = try Self.connect(guest, lab: lab)
        defer { machine.stop() }
        client.garbageLimit = 1 << 20
        _ = try client.waitReady(deadline: Date().addingTimeInterval(5))
        let error = #expect(throws: LabError.self) { try client.request(.uname, timeout: 2) }
        #expect(error?.message.contains("flooded the agent channel") == true, "\(error?.message ?? "")")
        #expect(client.peakBufferedBytes <= (1 << 20) + (128 << 10), "held \(client.peakBufferedBytes) bytes")
        #expect(client.droppedFrames > 0 && client.droppedBytes > 0)
        #expect(client.closed)
    }

    /// Huge log events are not kept beyond a small budget.
    @Test func hugeEventsAreNotKept() throws {
        let lab = try FakeLab()
        var guest = FakeGuest.cma1G()
        let event = Frame(kind: .event, id: 0, payload: AgentEvent.log(String(repeating: "x", count: 512 << 10)).encode()).encoded()
        guest.faults = [.garbageBefore(on: .first("uname"), bytes: Array((0..<6).map { _ in event }.joined()))]
        let (machine, client) = try Self.connect(guest, lab: lab)
        defer { machine.stop() }
        client.garbageLimit = 8 << 20
        _ = try client.waitReady(deadline: Date().addingTimeInterval(5))
        guard case .uname = try client.request(.uname, timeout: 5) else { Issue.record("no uname"); return }
        #expect(client.peakBufferedBytes <= 1 << 20, "held \(client.peakBufferedBytes) bytes")
        #expect(client.bufferedBytes <= AgentClient.eventBudget)
        #expect(client.events.isEmpty && client.droppedFrames == 6)
    }

    /// Once the event budget is spent, log lines are dropped and counted, but the last fatal message is
    /// still what a failed wait reports.
    @Test func fatalMessageSurvivesAFullEventBudget() throws {
        let lab = try FakeLab()
        var guest = FakeGuest.cma1G()
        // One log line fills the budget exactly; the second and the fatal message have no room left.
        let overhead = AgentEvent.log("").encode().count
        let log = Frame(kind: .event, id: 0, payload: AgentEvent.log(String(repeating: "y", count: AgentClient.eventBudget - overhead)).encode()).encoded()
        let fatal = Frame(kind: .event, id: 0, payload: AgentEvent.fatal("out of luck").encode()).encoded()
        guest.faults = [.garbageBefore(on: .first("uname"), bytes: Array((0..<2).map { _ in log }.joined()) + fatal),
                        .neverAnswers(on: .first("uname"))]
        let (machine, client) = try Self.connect(guest, lab: lab)
        defer { machine.stop() }
        _ = try client.waitReady(deadline: Date().addingTimeInterval(5))
        let error = #expect(throws: LabError.self) { try client.request(.uname, timeout: 0.5) }
        #expect(error?.message.contains("the agent failed: out of luck") == true, "\(error?.message ?? "")")
        #expect(client.events.count == 1 && client.droppedFrames == 2)
        #expect(client.bufferedBytes <= AgentClient.eventBudget)
    }

    @Test func matrixRunsEachCellOnItsOwnFakeMachine() throws {
        let lab = try FakeLab()
        let launcher = FakeLauncher { plan in
            plan.effectiveCommandLine.description.contains("cma=64M") ? .cma64M() : .cma1G()
        }
        let small = try Profile.parse("name: small\nmachine: {memory: 2G}\ncmdline: cma=64M\nexpect: {outcome: reserved, size: 64M}\n", file: "small.yaml")
        let big = try Profile.parse("name: big\nmachine: {memory: 4G}\ncmdline: cma=1G@1-2G\nexpect: {outcome: reserved, size: 64M}\n", file: "big.yaml")
        let runner = MatrixRunner(lab: lab.lab, jobs: 2)
        runner.launcher = launcher
        runner.accel = .tcg
        let cells = [MatrixCell(image: FakeLab.image, profile: small, memoryAxis: nil, extraCommandLine: ""),
                     MatrixCell(image: FakeLab.image, profile: big, memoryAxis: nil, extraCommandLine: "")]
        let verdicts = try runner.run(cells)
        #expect(verdicts.map(\.profile) == ["small", "big"])
        #expect(verdicts.map(\.kind) == [.pass, .fail])
        #expect(verdicts.map(\.cell) == cells.map(\.id))
        #expect(launcher.machines.count == 2)
    }
}
