import Testing
import TestSupport
@testable import LabProtocol

enum Samples {
    static let uname = Uname(
        sysname: "Linux", nodename: "cmalab", release: "6.6.0-cma", version: "#1 SMP PREEMPT", machine: "x86_64")
    static let bitmap = parseBitmap("1023 0 0 4294967295")

    static let requests: [AgentRequest] = [
        .uname, .meminfo, .cmaAreas,
        .cmaAlloc(area: "reserved", pages: 102_400),
        .cmaFree(area: "reserved", pages: UInt64.max),
        .readFile(path: "/proc/meminfo", maxBytes: 4096),
        .writeFile(path: "/tmp/x", data: [0, 1, 255]),
        .writeFile(path: "", data: []),
        .listDirectory(path: "/sys/kernel/mm/cma"),
        .kmsg(afterSequence: nil, maxRecords: 100),
        .kmsg(afterSequence: 339, maxRecords: 0),
        .exec(ExecRequest(argv: ["/bin/echo", "héllo"], env: ["A=1", "PATH=/bin"], cwd: "/tmp",
                          timeoutMilliseconds: 300, maxOutputBytes: 1000, stdin: Array("in".utf8))),
        .exec(ExecRequest(argv: [], env: [], cwd: nil, timeoutMilliseconds: 0, maxOutputBytes: 0, stdin: [])),
        .kernelConfig, .vmstat, .poweroff, .reboot, .cmaAreaCounters,
    ]

    static let responses: [AgentResponse] = [
        .uname(uname),
        .meminfo(Meminfo.parse("MemTotal:        4020000 kB\nHugePages_Total:       0\n")),
        .cmaAreas([]),
        .cmaAreas([
            CMAArea(name: "reserved", basePFN: 262_144, count: 262_144, used: 0, maxchunk: 262_144, orderPerBit: 0,
                    bitmap: bitmap, sysfs: [Counter(name: "alloc_pages_success", value: 0)]),
            CMAArea(name: "sysfs-only", sysfs: [Counter(name: "alloc_pages_fail", value: 3)]),
        ]),
        .done,
        .failure(errno: 22, message: "Invalid argument"),
        .failure(errno: -1, message: ""),
        .file(data: [1, 2, 3], truncated: true),
        .file(data: [], truncated: false),
        .directory([DirectoryEntry(name: "a", kind: 1, size: 10), DirectoryEntry(name: "b", kind: 2, size: 0)]),
        .kmsg(KmsgBatch(
            records: [KmsgRecord(sequence: 339, priority: 6, facility: 0, timestampMicroseconds: 5_140_900,
                                 message: "NET: Registered protocol family 10")],
            nextSequence: 340, missedRecords: 2)),
        .exec(ExecResult(termination: .exited(3), stdout: Array("hello\n".utf8), stderr: [0xFF],
                         stdoutTruncated: true, stderrTruncated: false, durationNanoseconds: 12_345)),
        .exec(ExecResult(termination: .signaled(9))),
        .exec(ExecResult(termination: .timedOut)),
        .exec(ExecResult(termination: .spawnFailed(errno: 2))),
        .kernelConfig(text: "CONFIG_CMA=y\n"),
        .vmstat([Counter(name: "nr_free_pages", value: 12345), Counter(name: "cma_alloc_success", value: 0)]),
    ]

    static let events: [AgentEvent] = [
        .ready(AgentHello(agentVersion: "0.1.0", uname: uname, cmdline: "console=ttyS0 cma=1G",
                          channel: "virtio:/dev/vport1p1", uptimeMilliseconds: 1234)),
        .log("mounted debugfs"),
        .fatal("no channel"),
    ]
}

@Suite struct MessageTests {
    @Test(arguments: Samples.requests)
    func requestRoundTrips(_ request: AgentRequest) throws {
        #expect(try AgentRequest.decode(request.encode()) == request)
    }

    @Test(arguments: Samples.responses)
    func responseRoundTrips(_ response: AgentResponse) throws {
        #expect(try AgentResponse.decode(response.encode()) == response)
    }

    @Test(arguments: Samples.events)
    func eventRoundTrips(_ event: AgentEvent) throws {
        #expect(try AgentEvent.decode(event.encode()) == event)
    }

    @Test func everyStrictPrefixIsTruncated() {
        for response in Samples.responses {
            let bytes = response.encode()
            for cut in 0..<bytes.count {
                #expect(throws: ProtocolError.truncated) { try AgentResponse.decode(Array(bytes[..<cut])) }
            }
        }
    }

    @Test func trailingBytesAreRejected() {
        #expect(throws: ProtocolError.trailingBytes(2)) { try AgentRequest.decode(AgentRequest.uname.encode() + [0, 0]) }
    }

    @Test func unknownTagsAreRejected() {
        #expect(throws: ProtocolError.unknownTag(99)) { try AgentRequest.decode([99]) }
        #expect(throws: ProtocolError.unknownTag(0)) { try AgentResponse.decode([0]) }
        #expect(throws: ProtocolError.unknownTag(7)) { try AgentEvent.decode([7]) }
        // An optional tag other than 0/1.
        #expect(throws: ProtocolError.unknownTag(2)) { try AgentRequest.decode([9, 2]) }
    }

    @Test func invalidBoolAndUTF8AreRejected() {
        #expect(throws: ProtocolError.invalidBool(2)) { try AgentResponse.decode([6, 0, 0, 0, 0, 2]) }
        #expect(throws: ProtocolError.invalidUTF8) { try AgentRequest.decode([8, 2, 0, 0, 0, 0xC3, 0x28]) }
    }

    @Test func hugeClaimedLengthsFailBeforeAllocating() {
        // listDirectory whose path claims 4 GiB; cmaAreas claiming 4 billion entries.
        #expect(throws: ProtocolError.truncated) { try AgentRequest.decode([8, 0xFF, 0xFF, 0xFF, 0xFF, 65]) }
        #expect(throws: ProtocolError.truncated) { try AgentResponse.decode([3, 0xFF, 0xFF, 0xFF, 0xFF] + [UInt8](repeating: 0, count: 64)) }
        // An array of 16 runs needs 256 bytes, not 16.
        var writer = ByteWriter()
        writer.u32(16)
        writer.u64(0)
        writer.u64(0)
        var reader = ByteReader(writer.bytes)
        #expect(throws: ProtocolError.truncated) {
            try reader.array(minimumElementSize: 16) { (r: inout ByteReader) throws(ProtocolError) -> BitRun in try r.value() }
        }
    }

    @Test func primitivesAreLittleEndian() throws {
        var writer = ByteWriter()
        writer.u16(0x0102)
        writer.u32(0x0304_0506)
        writer.u64(0x0708_090A_0B0C_0D0E)
        writer.i32(-2)
        writer.i64(Int64.min)
        writer.bool(true)
        writer.string("é")
        #expect(writer.bytes == [
            0x02, 0x01, 0x06, 0x05, 0x04, 0x03, 0x0E, 0x0D, 0x0C, 0x0B, 0x0A, 0x09, 0x08, 0x07,
            0xFE, 0xFF, 0xFF, 0xFF, 0, 0, 0, 0, 0, 0, 0, 0x80, 1, 2, 0, 0, 0, 0xC3, 0xA9,
        ])
        var reader = ByteReader(writer.bytes)
        #expect(try reader.u16() == 0x0102)
        #expect(try reader.u32() == 0x0304_0506)
        #expect(try reader.u64() == 0x0708_090A_0B0C_0D0E)
        #expect(try reader.i32() == -2)
        #expect(try reader.i64() == Int64.min)
        #expect(try reader.bool())
        #expect(try reader.string() == "é")
        try reader.finish()
    }

    /// Random and mutated payloads must decode or throw, never trap.
    @Test func hostilePayloadsNeverCrash() {
        var rng = SplitMix64(seed: 42)
        var decodedCount = 0
        let valid = Samples.responses.map { $0.encode() }
        for round in 0..<50_000 {
            var bytes: [UInt8]
            if round % 2 == 0 {
                bytes = rng.bytes(Int.random(in: 0...64, using: &rng))
                // Bias the first byte towards valid tags to get past the switch.
                if !bytes.isEmpty { bytes[0] = UInt8.random(in: 0...12, using: &rng) }
            } else {
                bytes = valid[Int.random(in: 0..<valid.count, using: &rng)]
                for _ in 0..<Int.random(in: 1...3, using: &rng) where !bytes.isEmpty {
                    bytes[Int.random(in: 0..<bytes.count, using: &rng)] = UInt8.random(in: 0...255, using: &rng)
                }
            }
            if (try? AgentResponse.decode(bytes)) != nil { decodedCount += 1 }
            _ = try? AgentRequest.decode(bytes)
            _ = try? AgentEvent.decode(bytes)
        }
        #expect(decodedCount > 0)
    }

    @Test func requestsTravelInFrames() throws {
        var decoder = FrameDecoder()
        for (index, request) in Samples.requests.enumerated() {
            decoder.feed(Frame(kind: .request, id: UInt32(index), payload: request.encode()).encoded())
        }
        for (index, request) in Samples.requests.enumerated() {
            let next = decoder.next()
            let frame = try #require(next)
            #expect(frame.id == UInt32(index))
            #expect(try AgentRequest.decode(frame.payload) == request)
        }
    }
}
