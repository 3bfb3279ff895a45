import Foundation
import Testing
import LabProtocol
@testable import LabRuntime

/// AgentInbox: what AgentClient keeps of the bytes the guest sends, without a socket.
@Suite struct AgentInboxTests {
    static let hello = AgentHello(agentVersion: "0.1.0", uname: Uname(sysname: "Linux", nodename: "g", release: "6.12", version: "#1", machine: "x86_64"),
                                  cmdline: "cma=64M", channel: "virtio:/dev/vport0p1", uptimeMilliseconds: 1)

    static func frame(_ kind: FrameKind, _ id: UInt32, _ payload: [UInt8]) -> [UInt8] { Frame(kind: kind, id: id, payload: payload).encoded() }

    static func drain(_ inbox: inout AgentInbox) -> Int {
        var frames = 0
        var budget = Int.max
        while inbox.takeFrame(budget: &budget) { frames += 1 }
        return frames
    }

    /// Only the first response to a request still awaited is kept; unasked, second, late and request frames are
    /// dropped, counted, and their bytes count as unwanted.
    @Test func onlyTheFirstResponseToAnAwaitedRequestIsKept() {
        var inbox = AgentInbox(maxPayload: 1 << 16)
        inbox.expect(1)
        let first = AgentResponse.done.encode()
        let second = AgentResponse.failure(errno: 5, message: "second").encode()
        let unasked = Self.frame(.response, 2, first)
        let again = Self.frame(.response, 1, second)
        let request = Self.frame(.request, 1, AgentRequest.uname.encode())
        inbox.feed(Self.frame(.response, 1, first) + unasked + again + request)
        #expect(Self.drain(&inbox) == 4)
        #expect(inbox.response(to: 1) == .done)
        #expect(inbox.response(to: 2) == nil)
        #expect(inbox.droppedFrames == 3)
        #expect(inbox.droppedBytes == UInt64(unasked.count + again.count + request.count))
        #expect(inbox.unwantedBytes == inbox.droppedBytes)
        #expect(inbox.heldResponseCount == 1 && inbox.bufferedBytes == first.count)
        // Given up on: the response goes, and a late one is dropped.
        inbox.forget(1)
        inbox.feed(Self.frame(.response, 1, first))
        #expect(Self.drain(&inbox) == 1)
        #expect(inbox.response(to: 1) == nil && inbox.heldResponseCount == 0 && inbox.droppedFrames == 4)
        #expect(inbox.bufferedBytes == 0)
    }

    /// An answer that does not decode is still the answer (a protocol failure), not a wait until the timeout.
    @Test func anUndecodableResponseIsAProtocolFailure() {
        var inbox = AgentInbox(maxPayload: 1 << 16)
        inbox.expect(7)
        inbox.feed(Self.frame(.response, 7, [0xEE, 0xEE]))
        #expect(Self.drain(&inbox) == 1)
        #expect(inbox.response(to: 7) == .failure(errno: EPROTO, message: "undecodable response from the agent"))
    }

    /// Ready sets the hello without using the event budget; log lines fill the budget and the rest is dropped; the
    /// last fatal message is kept whatever the budget, cut to its limit.
    @Test func eventsStayWithinTheirBudgetAndTheLastFatalIsKept() {
        var inbox = AgentInbox(maxPayload: 1 << 20)
        let log = AgentEvent.log(String(repeating: "l", count: 20_000)).encode()
        let fatal = String(repeating: "f", count: 10_000)
        var stream = Self.frame(.event, 0, AgentEvent.ready(Self.hello).encode())
        for _ in 0..<4 { stream += Self.frame(.event, 0, log) }
        stream += Self.frame(.event, 0, AgentEvent.fatal(fatal).encode())
        stream += Self.frame(.event, 0, [0xEE])
        inbox.feed(stream)
        #expect(Self.drain(&inbox) == 7)
        #expect(inbox.hello == Self.hello)
        #expect(inbox.events.count == 3, "three 20 kB lines fit in 64 KiB, the fourth and the fatal one do not")
        #expect(inbox.droppedFrames == 3)
        #expect(inbox.lastFatal == String(repeating: "f", count: AgentInbox.fatalMessageLimit))
        #expect(inbox.bufferedBytes <= AgentInbox.eventBudget)
    }

    /// Garbage and dropped frames count toward the limit together; the decode work is sliced by the budget.
    @Test func unwantedBytesFloodTheChannelPastTheLimit() {
        var inbox = AgentInbox(maxPayload: 1 << 16, garbageLimit: 1000)
        inbox.feed([UInt8](repeating: 0x5A, count: 400))
        #expect(Self.drain(&inbox) == 0)
        #expect(!inbox.isFlooded && inbox.unwantedBytes == 400)
        let unasked = Self.frame(.response, 3, [UInt8](repeating: 1, count: 300))
        inbox.feed(unasked + unasked)
        // A budget smaller than one header: one frame is finished, then the call returns with the budget spent.
        var budget = 10
        let first = inbox.takeFrame(budget: &budget)
        let second = inbox.takeFrame(budget: &budget)
        #expect(first && !second && budget <= 0)
        #expect(!inbox.isFlooded && inbox.unwantedBytes == 720)
        #expect(Self.drain(&inbox) == 1)
        #expect(inbox.isFlooded && inbox.unwantedBytes == 1040)
        #expect(inbox.floodReason.contains("2 unasked frames"), "\(inbox.floodReason)")
    }

    /// The agent repeats its hello until it hears from the host, so later ready events are not errors; but they are
    /// not kept, and their bytes count against the channel limit, so a guest that keeps repeating it floods the
    /// channel instead of keeping the host decoding forever. Found by cmalab-fuzz's agentStream target (a libFuzzer
    /// timeout: 37 MB of ready events, 1129 bytes counted; corpus: agent-ready-flood).
    @Test func repeatedReadyEventsCountAgainstTheChannelLimit() {
        var inbox = AgentInbox(maxPayload: 1 << 16, garbageLimit: 4096)
        let ready = Self.frame(.event, 0, AgentEvent.ready(Self.hello).encode())
        var later = Self.hello
        later.cmdline = "cma=1G"
        let again = Self.frame(.event, 0, AgentEvent.ready(later).encode())
        inbox.feed(ready)
        #expect(Self.drain(&inbox) == 1)
        #expect(inbox.hello == Self.hello && inbox.repeatedHellos == 0 && inbox.unwantedBytes == 0)
        var sent = 0
        while !inbox.isFlooded && sent < 1000 {
            inbox.feed(again)
            _ = Self.drain(&inbox)
            sent += 1
        }
        #expect(inbox.isFlooded, "\(sent) more ready events, \(inbox.unwantedBytes) bytes counted")
        #expect(sent == 4096 / again.count + 1)
        #expect(inbox.repeatedHellos == UInt64(sent) && inbox.unwantedBytes == UInt64(sent * again.count))
        #expect(inbox.droppedFrames == 0 && inbox.events.isEmpty)
        #expect(inbox.hello == Self.hello, "the hello is the first one")
        #expect(inbox.floodReason.contains("\(sent) repeated hellos"), "\(inbox.floodReason)")
    }
}
