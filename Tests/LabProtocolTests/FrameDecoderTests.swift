import Testing
import TestSupport
@testable import LabProtocol

@Suite struct FrameDecoderTests {
    static let sample = Frame(kind: .response, id: 0xDEAD_BEEF, payload: Array("hello, guest".utf8))

    private func drain(_ decoder: inout FrameDecoder) -> [Frame] {
        var frames = [Frame]()
        while let frame = decoder.next() { frames.append(frame) }
        return frames
    }

    @Test func headerLayout() {
        let bytes = Frame(kind: .event, id: 0x0102_0304, payload: [9, 8, 7]).encoded()
        #expect(bytes.count == 23)
        #expect(Array(bytes[0..<4]) == Array("CMAL".utf8))
        #expect(bytes[4] == 1 && bytes[5] == 3 && bytes[6] == 0 && bytes[7] == 0)
        #expect(Array(bytes[8..<12]) == [4, 3, 2, 1])
        #expect(Array(bytes[12..<16]) == [3, 0, 0, 0])
        let crc = CRC32.checksum(Array(bytes[0..<16]) + [9, 8, 7])
        #expect(Array(bytes[16..<20]) == [UInt8(crc & 0xFF), UInt8(crc >> 8 & 0xFF), UInt8(crc >> 16 & 0xFF), UInt8(crc >> 24)])
    }

    @Test func emptyPayloadRoundTrips() {
        var decoder = FrameDecoder()
        let frame = Frame(kind: .request, id: 1, payload: [])
        decoder.feed(frame.encoded())
        #expect(decoder.next() == frame)
        #expect(decoder.next() == nil)
    }

    @Test func splitAtEveryByteBoundary() {
        let bytes = Self.sample.encoded()
        for split in 0...bytes.count {
            var decoder = FrameDecoder()
            decoder.feed(bytes[..<split])
            if split < bytes.count { #expect(decoder.next() == nil) }
            decoder.feed(bytes[split...])
            #expect(drain(&decoder) == [Self.sample], "split at \(split)")
            #expect(decoder.stats == DecoderStats())
        }
    }

    @Test func byteByByte() {
        var decoder = FrameDecoder()
        var frames = [Frame]()
        for byte in Self.sample.encoded() + Self.sample.encoded() {
            decoder.feed(CollectionOfOne(byte))
            frames += drain(&decoder)
        }
        #expect(frames == [Self.sample, Self.sample])
    }

    @Test(arguments: [
        [UInt8](),
        Array("garbage".utf8),
        Array("CMACMCCMAX".utf8),
        [0x43, 0x4D, 0x41],
        Array("CMAL".utf8),
    ])
    func garbagePrefix(_ garbage: [UInt8]) {
        var decoder = FrameDecoder()
        decoder.feed(garbage + Self.sample.encoded())
        #expect(drain(&decoder) == [Self.sample])
        #expect(decoder.stats.skippedBytes == UInt64(garbage.count))
        #expect(decoder.bufferedByteCount == 0)
    }

    @Test func twoFramesInOneFeed() {
        let second = Frame(kind: .event, id: 0, payload: [1, 2, 3])
        var decoder = FrameDecoder()
        decoder.feed(Self.sample.encoded() + second.encoded())
        #expect(drain(&decoder) == [Self.sample, second])
    }

    @Test func truncatedFrameIsNeverEmitted() {
        let bytes = Self.sample.encoded()
        for cut in 0..<bytes.count {
            var decoder = FrameDecoder()
            decoder.feed(bytes[..<cut])
            #expect(decoder.next() == nil)
            #expect(decoder.stats.badChecksums == 0)
        }
    }

    @Test func badChecksumIsDroppedAndNextFrameComesOut() {
        var corrupted = Self.sample.encoded()
        corrupted[Frame.headerSize + 3] ^= 0x20
        let good = Frame(kind: .request, id: 7, payload: [42])
        var decoder = FrameDecoder()
        decoder.feed(corrupted + good.encoded())
        #expect(drain(&decoder) == [good])
        #expect(decoder.stats.badChecksums == 1)
        #expect(decoder.stats.skippedBytes == UInt64(corrupted.count))
    }

    @Test func frameHiddenInsideCorruptedFrameIsRecovered() {
        // A header whose length swallows the following frame: the checksum fails
        // and the decoder rescans from just after the bad magic.
        var swallowing = Frame(kind: .request, id: 1, payload: [UInt8](repeating: 0, count: 200)).encoded()
        swallowing.removeLast(150)
        let good = Frame(kind: .request, id: 2, payload: Array("inner".utf8))
        var decoder = FrameDecoder()
        decoder.feed(swallowing + good.encoded() + [UInt8](repeating: 0, count: 200))
        #expect(drain(&decoder) == [good])
        #expect(decoder.stats.badChecksums == 1)
    }

    @Test func unknownVersionAndKindAreSkipped() {
        var badVersion = Self.sample.encoded()
        badVersion[4] = 2
        var badKind = Self.sample.encoded()
        badKind[5] = 9
        var decoder = FrameDecoder()
        decoder.feed(badVersion + badKind + Self.sample.encoded())
        #expect(drain(&decoder) == [Self.sample])
        #expect(decoder.stats.badVersions == 1)
        #expect(decoder.stats.badKinds == 1)
    }

    @Test func oversizeLengthIsRejectedWithoutBuffering() {
        var decoder = FrameDecoder(maxPayload: 1024)
        var header = Frame(kind: .request, id: 1, payload: []).encoded()
        header[12] = 0xFF
        header[13] = 0xFF  // claims 65535 bytes
        decoder.feed(header)
        #expect(decoder.next() == nil)
        #expect(decoder.stats.oversizeFrames == 1)
        #expect(decoder.bufferedByteCount < Frame.magic.count)
        let good = Frame(kind: .request, id: 2, payload: [1])
        decoder.feed(good.encoded())
        #expect(drain(&decoder) == [good])
    }

    @Test func maxPayloadIsInclusive() {
        var decoder = FrameDecoder(maxPayload: 16)
        let exact = Frame(kind: .event, id: 0, payload: [UInt8](repeating: 1, count: 16))
        let over = Frame(kind: .event, id: 0, payload: [UInt8](repeating: 1, count: 17))
        decoder.feed(exact.encoded() + over.encoded() + exact.encoded())
        #expect(drain(&decoder) == [exact, exact])
        #expect(decoder.stats.oversizeFrames == 1)
    }

    @Test func endlessGarbageStaysBounded() {
        var rng = SplitMix64(seed: 1)
        var decoder = FrameDecoder(maxPayload: 4096)
        for _ in 0..<64 {
            var chunk = rng.bytes(4096)
            // Sprinkle magics so some of the garbage parses as headers.
            for offset in stride(from: 100, to: 4000, by: 500) {
                chunk.replaceSubrange(offset..<(offset + 4), with: Frame.magic)
            }
            decoder.feed(chunk)
            #expect(decoder.next() == nil)
            #expect(decoder.bufferedByteCount <= Frame.headerSize + 4096)
        }
    }

    /// Headers that claim the largest payload and fail their checksum, back to back, then enough filler to
    /// complete every claim: the work done to reject them is linear in the bytes received, never
    /// (headers × claimed length).
    @Test(arguments: [(1 << 20, 1 << 10), (32 << 20, 256)])
    func badHeadersCostLinearWork(claim: Int, headerBytes: Int) {
        var decoder = FrameDecoder(maxPayload: claim)
        var header = Frame(kind: .request, id: 1, payload: []).encoded()
        header.replaceSubrange(12..<16, with: [UInt8(claim & 0xFF), UInt8(claim >> 8 & 0xFF), UInt8(claim >> 16 & 0xFF), UInt8(claim >> 24)])
        let headers = (0..<(headerBytes / header.count)).flatMap { _ in header }
        decoder.feed(headers)
        #expect(decoder.next() == nil)
        let filler = [UInt8](repeating: 0, count: 64 << 10)
        var received = headers.count
        while received < headers.count + claim + Frame.headerSize {
            decoder.feed(filler)
            received += filler.count
            while decoder.next() != nil {}
        }
        let good = Frame(kind: .event, id: 0, payload: [1, 2, 3])
        decoder.feed(good.encoded())
        received += good.encoded().count
        #expect(drain(&decoder) == [good])
        #expect(decoder.stats.badChecksums == UInt64(headers.count / header.count))
        // Once on arrival, plus at most 16 + 2 × 15 bytes per candidate (20 bytes apart here).
        #expect(decoder.checksummedBytes <= 4 * UInt64(received) + 4096, "checksummed \(decoder.checksummedBytes) bytes for \(received) received")
    }

    /// Headers back to back, each claiming the length that ends at the same place, so that the last byte
    /// completes all of them at once: still linear, and `next(budget:)` hands the work out in slices.
    @Test func candidatesCompletedAtOnceCostLinearWorkInSlices() {
        let count = 20_000
        let end = count * Frame.headerSize + 4096
        var stream = [UInt8](repeating: 0, count: end)
        for i in 0..<count {
            let p = i * Frame.headerSize
            var header = Frame(kind: .event, id: UInt32(i), payload: []).encoded()
            let length = UInt32(end - p - Frame.headerSize)
            header.replaceSubrange(12..<16, with: withUnsafeBytes(of: length.littleEndian, Array.init))
            stream.replaceSubrange(p..<(p + Frame.headerSize), with: header)
        }
        var decoder = FrameDecoder(maxPayload: 1 << 20)
        decoder.feed(stream.dropLast())
        #expect(decoder.next() == nil)
        decoder.feed(stream.suffix(1))
        var slices = 0
        while true {
            var budget = 64 << 10
            let frame = decoder.next(budget: &budget)
            #expect(frame == nil)
            slices += 1
            if budget > 0 { break }
        }
        #expect(slices > 1)
        #expect(decoder.checksummedBytes <= 9 * UInt64(stream.count) + 4096, "checksummed \(decoder.checksummedBytes) bytes for \(stream.count) received")
    }

    /// A header whose payload has not arrived yet costs nothing: `next(budget:)` returns nil with the budget left
    /// (more bytes are needed), whatever the budget, so a caller that calls again while its budget is spent does not
    /// spin on it. Found by cmalab-fuzz's agentStream target with a 1-byte decode step (corpus: agent-budget-stall).
    @Test func aFrameWaitingForItsPayloadLeavesTheBudget() {
        let frame = Frame(kind: .response, id: 1, payload: [UInt8](repeating: 7, count: 100))
        let bytes = frame.encoded()
        for start in [1, 5, 20, 21, 64 << 10] {
            var decoder = FrameDecoder(maxPayload: 1 << 10)
            decoder.feed(bytes.prefix(Frame.headerSize + 50))
            var budget = start
            #expect(decoder.next(budget: &budget) == nil)
            #expect(budget == start, "a budget of \(start) came back as \(budget)")
            decoder.feed(bytes.dropFirst(Frame.headerSize + 50))
            // Once complete, a budget smaller than a header still finishes the one candidate it starts.
            budget = start
            #expect(decoder.next(budget: &budget) == frame)
        }
    }

    /// Which frames are accepted and every counter are exactly those of checksumming each candidate's
    /// bytes directly (the decoder before the stream checksums), on streams dense with overlapping
    /// candidates, fed in random chunks.
    @Test(arguments: [1, 2, 3, 4, 5])
    func acceptsExactlyWhatDirectChecksummingAccepts(seed: UInt64) {
        var rng = SplitMix64(seed: seed)
        let maxPayload = 300
        var stream = [UInt8]()
        while stream.count < 200_000 {
            let frame = randomFrame(&rng, maxPayload: maxPayload)
            var bytes = frame.encoded()
            switch Int.random(in: 0..<6, using: &rng) {
            case 0: bytes = corrupt(bytes, &rng)
            case 1: bytes = Array(bytes.prefix(Int.random(in: 4...bytes.count, using: &rng)))
            case 2: bytes = rng.bytes(Int.random(in: 0...40, using: &rng))
            default: break
            }
            stream += bytes
        }
        stream += [UInt8](repeating: 0, count: Frame.headerSize + maxPayload)
        var decoder = FrameDecoder(maxPayload: maxPayload)
        var received = [Frame]()
        var offset = 0
        while offset < stream.count {
            let chunk = min(Int.random(in: 1...700, using: &rng), stream.count - offset)
            decoder.feed(stream[offset..<(offset + chunk)])
            offset += chunk
            while let frame = decoder.next() { received.append(frame) }
        }
        let reference = DirectDecoder.decode(stream, maxPayload: maxPayload)
        #expect(received == reference.frames)
        #expect(decoder.stats == reference.stats)
        #expect(reference.stats.badChecksums > 100)
    }

    /// Several MB of garbage, valid frames and corrupted frames, fed in random chunks.
    @Test func randomizedStreamRecoversEveryIntactFrame() {
        var rng = SplitMix64(seed: 0xC0FFEE)
        let maxPayload = 4096
        var stream = [UInt8]()
        var expected = [Frame]()
        var corruptedCount = 0

        while stream.count < 4 << 20 {
            switch Int.random(in: 0..<10, using: &rng) {
            case 0..<2:
                stream += rng.bytes(Int.random(in: 0...300, using: &rng))
            case 2..<7:
                let frame = randomFrame(&rng, maxPayload: maxPayload)
                expected.append(frame)
                stream += frame.encoded()
            default:
                stream += corrupt(randomFrame(&rng, maxPayload: maxPayload).encoded(), &rng)
                corruptedCount += 1
            }
        }
        // Enough zeros to flush any header that is still waiting for its claimed payload.
        stream += [UInt8](repeating: 0, count: Frame.headerSize + maxPayload)

        var decoder = FrameDecoder(maxPayload: maxPayload)
        var received = [Frame]()
        var offset = 0
        var largestChunk = 0
        while offset < stream.count {
            let chunk = min(Int.random(in: 1...9000, using: &rng), stream.count - offset)
            largestChunk = max(largestChunk, chunk)
            decoder.feed(stream[offset..<(offset + chunk)])
            offset += chunk
            #expect(decoder.bufferedByteCount <= Frame.headerSize + maxPayload + largestChunk)
            while let frame = decoder.next() { received.append(frame) }
            #expect(decoder.bufferedByteCount < Frame.headerSize + maxPayload)
        }

        #expect(received.count == expected.count)
        #expect(received == expected)
        let stats = decoder.stats
        #expect(stats.badChecksums + stats.oversizeFrames + stats.badVersions + stats.badKinds > 0)
        #expect(corruptedCount > 100)
        // Every byte was delivered in a frame, skipped, or is still buffered.
        let delivered = received.reduce(0) { $0 + Frame.headerSize + $1.payload.count }
        #expect(UInt64(delivered) + stats.skippedBytes + UInt64(decoder.bufferedByteCount) == UInt64(stream.count))
    }

    private func randomFrame(_ rng: inout SplitMix64, maxPayload: Int) -> Frame {
        let kinds: [FrameKind] = [.request, .response, .event]
        return Frame(
            kind: kinds[Int.random(in: 0..<3, using: &rng)],
            id: UInt32.random(in: 0...UInt32.max, using: &rng),
            payload: rng.bytes(Int.random(in: 0...min(maxPayload, 2000), using: &rng)))
    }

    /// Damages an encoded frame in a way the decoder must detect.
    private func corrupt(_ frame: [UInt8], _ rng: inout SplitMix64) -> [UInt8] {
        var bytes = frame
        switch Int.random(in: 0..<4, using: &rng) {
        case 0:  // flip bits in one byte after the magic
            let index = Int.random(in: 4..<bytes.count, using: &rng)
            bytes[index] ^= UInt8.random(in: 1...255, using: &rng)
        case 1:  // cut it short
            bytes.removeLast(Int.random(in: 1...(bytes.count - 4), using: &rng))
        case 2:  // claim a huge payload
            bytes[15] = UInt8.random(in: 1...255, using: &rng)
        default:  // wrong version
            bytes[4] = UInt8.random(in: 2...255, using: &rng)
        }
        return bytes
    }
}

/// The acceptance rule, written the plain way: at each magic, check version, kind and length, then
/// checksum the candidate's bytes directly; on a mismatch resume 4 bytes on. Decodes a whole stream at once
/// and stops at a candidate whose bytes have not all arrived.
enum DirectDecoder {
    static func decode(_ s: [UInt8], maxPayload: Int) -> (frames: [Frame], stats: DecoderStats) {
        var frames = [Frame]()
        var stats = DecoderStats()
        var p = 0
        func u32(_ i: Int) -> UInt32 { UInt32(s[i]) | UInt32(s[i + 1]) << 8 | UInt32(s[i + 2]) << 16 | UInt32(s[i + 3]) << 24 }
        func reject(_ counter: WritableKeyPath<DecoderStats, UInt64>) { stats[keyPath: counter] += 1; stats.skippedBytes += 4; p += 4 }
        while p + 4 <= s.count {
            guard Array(s[p..<(p + 4)]) == Frame.magic else { stats.skippedBytes += 1; p += 1; continue }
            guard p + Frame.headerSize <= s.count else { break }
            let length = Int(u32(p + 12))
            if s[p + 4] != Frame.version { reject(\.badVersions); continue }
            guard let kind = FrameKind(rawValue: s[p + 5]) else { reject(\.badKinds); continue }
            if length > maxPayload { reject(\.oversizeFrames); continue }
            guard p + Frame.headerSize + length <= s.count else { break }
            let payload = Array(s[(p + Frame.headerSize)..<(p + Frame.headerSize + length)])
            guard CRC32.checksum(Array(s[p..<(p + 16)]) + payload) == u32(p + 16) else { reject(\.badChecksums); continue }
            frames.append(Frame(kind: kind, id: u32(p + 8), payload: payload))
            p += Frame.headerSize + length
        }
        // The incremental decoder also discards bytes at the end that cannot start a magic.
        var tail = p
        while tail < s.count, !Frame.magic.starts(with: s[tail...].prefix(4)) { tail += 1 }
        stats.skippedBytes += UInt64(tail - p)
        return (frames, stats)
    }
}

