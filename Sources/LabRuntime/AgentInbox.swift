import Foundation
import LabCore
import LabProtocol

/// What the host keeps of the bytes the guest agent sends: the pure half of `AgentClient`, without a socket or
/// a clock, so tests and the fuzzer (`cmalab-fuzz`) drive the same code the client runs.
///
/// Bytes go in with `feed`; `takeFrame(budget:)` decodes the next frame and decides what becomes of it:
/// - a response to a request that is awaited (`expect`) and not answered yet is kept until `forget`;
/// - the first `ready` event sets `hello`; the agent repeats it until it hears from the host, so later ones are
///   counted apart (`repeatedHellos`) and their bytes count as unwanted;
/// - other events are kept within `eventBudget` payload bytes, and the last fatal message is kept in any case
///   (cut to `fatalMessageLimit` bytes);
/// - every other valid frame (a response nobody waits for, a second answer, a request, an event that does not
///   decode or does not fit) is dropped and counted.
/// Dropped frames, repeated hellos and the bytes the decoder skipped count against `garbageLimit` (`isFlooded`).
public struct AgentInbox: Sendable {
    /// The payload bytes of events kept at most; beyond it events are dropped and counted.
    public static let eventBudget = 64 << 10
    /// The longest fatal message kept, in UTF-8 bytes.
    public static let fatalMessageLimit = 4096

    /// Bytes that are not frames the host asked for, at most, before the channel counts as flooded.
    public var garbageLimit: UInt64
    /// The agent's `ready` event (the first one).
    public private(set) var hello: AgentHello?
    /// Events other than `ready`, oldest first, at most `eventBudget` payload bytes of them.
    public private(set) var events: [AgentEvent] = []
    /// The agent's last fatal message, kept even when `events` had no room left for it.
    public private(set) var lastFatal: String?
    /// Valid frames thrown away, and their bytes (header included).
    public private(set) var droppedFrames: UInt64 = 0
    public private(set) var droppedBytes: UInt64 = 0
    /// `ready` events after the first, and their bytes (header included). The agent repeats its hello until the
    /// host has sent something, so a few are normal; a guest that keeps sending them floods the channel.
    public private(set) var repeatedHellos: UInt64 = 0
    public private(set) var repeatedHelloBytes: UInt64 = 0
    /// The most bytes held at once (decoder, responses, events).
    public private(set) var peakBufferedBytes = 0

    private var decoder: FrameDecoder
    /// Ids of requests sent and not yet answered or given up on: the only responses kept.
    private var awaiting: Set<UInt32> = []
    private var responses: [UInt32: AgentResponse] = [:]
    /// Payload bytes of each held response and of the held events.
    private var responseBytes: [UInt32: Int] = [:]
    private var eventBytes = 0

    public init(maxPayload: Int = 32 << 20, garbageLimit: UInt64 = 64 << 20) {
        decoder = FrameDecoder(maxPayload: maxPayload)
        self.garbageLimit = garbageLimit
    }

    /// Bytes held right now: the decoder's buffer, responses not yet taken, events.
    public var bufferedBytes: Int { decoder.bufferedByteCount + responseBytes.values.reduce(0, +) + eventBytes }
    /// Bytes on the channel that were not frames kept: skipped by the decoder, dropped, or repeated hellos.
    public var unwantedBytes: UInt64 { decoder.stats.skippedBytes + droppedBytes + repeatedHelloBytes }
    /// True once the unwanted bytes passed `garbageLimit`.
    public var isFlooded: Bool { unwantedBytes > garbageLimit }
    public var decoderStats: DecoderStats { decoder.stats }
    /// Responses held (to awaited requests, not yet forgotten).
    public var heldResponseCount: Int { responses.count }

    public var floodReason: String {
        let s = decoder.stats
        return "the guest flooded the agent channel with more than \(ByteSize(bytes: garbageLimit)) that are not frames it was asked for "
            + "(\(s.badChecksums) bad checksums, \(s.oversizeFrames) oversize headers, \(droppedFrames) unasked frames of \(ByteSize(bytes: droppedBytes))"
            + (repeatedHellos > 0 ? ", \(repeatedHellos) repeated hellos)" : ")")
    }

    /// A request `id` was sent: its first response will be kept.
    public mutating func expect(_ id: UInt32) { awaiting.insert(id) }

    /// The request `id` is answered or given up on: its response, if any, goes, and a late one is dropped.
    public mutating func forget(_ id: UInt32) {
        awaiting.remove(id)
        responses[id] = nil
        responseBytes[id] = nil
    }

    /// The response to `id`, once it came.
    public func response(to id: UInt32) -> AgentResponse? { responses[id] }

    public mutating func feed(_ bytes: some Collection<UInt8>) {
        decoder.feed(bytes)
        notePeak()
    }

    /// Decodes the next frame, if there is one, and keeps or drops it. Its checksum work comes out of `budget`
    /// (`FrameDecoder.next(budget:)`): false with `budget > 0` means more bytes are needed, with `budget <= 0`
    /// that the budget ran out first.
    public mutating func takeFrame(budget: inout Int) -> Bool {
        guard let frame = decoder.next(budget: &budget) else { return false }
        switch frame.kind {
        case .response: keepResponse(frame)
        case .event: keepEvent(frame)
        case .request: drop(frame)
        }
        notePeak()
        return true
    }

    private mutating func notePeak() { peakBufferedBytes = max(peakBufferedBytes, bufferedBytes) }

    /// A valid frame that is not kept: counted, and its bytes count against `garbageLimit`.
    private mutating func drop(_ frame: Frame) {
        droppedFrames += 1
        droppedBytes += UInt64(Frame.headerSize + frame.payload.count)
    }

    /// Keeps the first response to a request that is waiting; any other response is dropped.
    private mutating func keepResponse(_ frame: Frame) {
        guard awaiting.contains(frame.id), responses[frame.id] == nil else { return drop(frame) }
        responseBytes[frame.id] = frame.payload.count
        if let r = try? AgentResponse.decode(frame.payload) {
            responses[frame.id] = r
        } else {
            responses[frame.id] = .failure(errno: EPROTO, message: "undecodable response from the agent")
        }
    }

    /// Keeps events within `eventBudget` payload bytes; the last fatal message is kept in any case.
    private mutating func keepEvent(_ frame: Frame) {
        guard let e = try? AgentEvent.decode(frame.payload) else { return drop(frame) }
        switch e {
        case .ready(let h):
            if hello == nil {
                hello = h
            } else {
                repeatedHellos += 1
                repeatedHelloBytes += UInt64(Frame.headerSize + frame.payload.count)
            }
            return
        case .fatal(let message):
            lastFatal = String(decoding: message.utf8.prefix(Self.fatalMessageLimit), as: UTF8.self)
        case .log:
            break
        }
        guard eventBytes + frame.payload.count <= Self.eventBudget else { return drop(frame) }
        events.append(e)
        eventBytes += frame.payload.count
    }
}
