// Wire forms of the typed messages. Enums start with a UInt8 tag; structs are their
// fields in declaration order. Tags are part of the protocol: never renumber them.

extension AgentRequest: WireCodable {
    public func encode(to w: inout ByteWriter) {
        switch self {
        case .uname: w.u8(1)
        case .meminfo: w.u8(2)
        case .cmaAreas: w.u8(3)
        case let .cmaAlloc(area, pages): w.u8(4); w.string(area); w.u64(pages)
        case let .cmaFree(area, pages): w.u8(5); w.string(area); w.u64(pages)
        case let .readFile(path, maxBytes): w.u8(6); w.string(path); w.u32(maxBytes)
        case let .writeFile(path, data): w.u8(7); w.string(path); w.byteArray(data)
        case let .listDirectory(path): w.u8(8); w.string(path)
        case let .kmsg(afterSequence, maxRecords):
            w.u8(9); w.optional(afterSequence) { $0.u64($1) }; w.u32(maxRecords)
        case let .exec(request): w.u8(10); w.value(request)
        case .kernelConfig: w.u8(11)
        case .vmstat: w.u8(12)
        case .poweroff: w.u8(13)
        case .reboot: w.u8(14)
        case .cmaAreaCounters: w.u8(15)
        }
    }

    public init(from r: inout ByteReader) throws(ProtocolError) {
        switch try r.u8() {
        case 1: self = .uname
        case 2: self = .meminfo
        case 3: self = .cmaAreas
        case 4: self = .cmaAlloc(area: try r.string(), pages: try r.u64())
        case 5: self = .cmaFree(area: try r.string(), pages: try r.u64())
        case 6: self = .readFile(path: try r.string(), maxBytes: try r.u32())
        case 7: self = .writeFile(path: try r.string(), data: try r.byteArray())
        case 8: self = .listDirectory(path: try r.string())
        case 9: self = .kmsg(afterSequence: try r.optional { r throws(ProtocolError) in try r.u64() }, maxRecords: try r.u32())
        case 10: self = .exec(try r.value())
        case 11: self = .kernelConfig
        case 12: self = .vmstat
        case 13: self = .poweroff
        case 14: self = .reboot
        case 15: self = .cmaAreaCounters
        case let tag: throw .unknownTag(tag)
        }
    }
}

extension ExecRequest: WireCodable {
    public func encode(to w: inout ByteWriter) {
        w.array(argv) { $0.string($1) }
        w.array(env) { $0.string($1) }
        w.optional(cwd) { $0.string($1) }
        w.u32(timeoutMilliseconds)
        w.u32(maxOutputBytes)
        w.byteArray(stdin)
    }

    public init(from r: inout ByteReader) throws(ProtocolError) {
        self.init(
            argv: try r.array(minimumElementSize: 4) { r throws(ProtocolError) in try r.string() },
            env: try r.array(minimumElementSize: 4) { r throws(ProtocolError) in try r.string() },
            cwd: try r.optional { r throws(ProtocolError) in try r.string() },
            timeoutMilliseconds: try r.u32(),
            maxOutputBytes: try r.u32(),
            stdin: try r.byteArray())
    }
}

extension AgentResponse: WireCodable {
    public func encode(to w: inout ByteWriter) {
        switch self {
        case let .uname(value): w.u8(1); w.value(value)
        case let .meminfo(value): w.u8(2); w.value(value)
        case let .cmaAreas(areas): w.u8(3); w.array(areas) { $0.value($1) }
        case .done: w.u8(4)
        case let .failure(errno, message): w.u8(5); w.i32(errno); w.string(message)
        case let .file(data, truncated): w.u8(6); w.byteArray(data); w.bool(truncated)
        case let .directory(entries): w.u8(7); w.array(entries) { $0.value($1) }
        case let .kmsg(batch): w.u8(8); w.value(batch)
        case let .exec(result): w.u8(9); w.value(result)
        case let .kernelConfig(text): w.u8(10); w.string(text)
        case let .vmstat(counters): w.u8(11); w.array(counters) { $0.value($1) }
        }
    }

    public init(from r: inout ByteReader) throws(ProtocolError) {
        switch try r.u8() {
        case 1: self = .uname(try r.value())
        case 2: self = .meminfo(try r.value())
        case 3: self = .cmaAreas(try r.array(minimumElementSize: 4) { r throws(ProtocolError) in try r.value() })
        case 4: self = .done
        case 5: self = .failure(errno: try r.i32(), message: try r.string())
        case 6: self = .file(data: try r.byteArray(), truncated: try r.bool())
        case 7: self = .directory(try r.array(minimumElementSize: 4) { r throws(ProtocolError) in try r.value() })
        case 8: self = .kmsg(try r.value())
        case 9: self = .exec(try r.value())
        case 10: self = .kernelConfig(text: try r.string())
        case 11: self = .vmstat(try r.array(minimumElementSize: 4) { r throws(ProtocolError) in try r.value() })
        case let tag: throw .unknownTag(tag)
        }
    }
}

extension AgentEvent: WireCodable {
    public func encode(to w: inout ByteWriter) {
        switch self {
        case let .ready(hello): w.u8(1); w.value(hello)
        case let .log(message): w.u8(2); w.string(message)
        case let .fatal(message): w.u8(3); w.string(message)
        }
    }

    public init(from r: inout ByteReader) throws(ProtocolError) {
        switch try r.u8() {
        case 1: self = .ready(try r.value())
        case 2: self = .log(try r.string())
        case 3: self = .fatal(try r.string())
        case let tag: throw .unknownTag(tag)
        }
    }
}

extension AgentHello: WireCodable {
    public func encode(to w: inout ByteWriter) {
        w.u16(protocolVersion)
        w.string(agentVersion)
        w.value(uname)
        w.string(cmdline)
        w.string(channel)
        w.u64(uptimeMilliseconds)
    }

    public init(from r: inout ByteReader) throws(ProtocolError) {
        self.init(
            protocolVersion: try r.u16(), agentVersion: try r.string(), uname: try r.value(),
            cmdline: try r.string(), channel: try r.string(), uptimeMilliseconds: try r.u64())
    }
}

extension Uname: WireCodable {
    public func encode(to w: inout ByteWriter) {
        for field in [sysname, nodename, release, version, machine] { w.string(field) }
    }

    public init(from r: inout ByteReader) throws(ProtocolError) {
        self.init(
            sysname: try r.string(), nodename: try r.string(), release: try r.string(),
            version: try r.string(), machine: try r.string())
    }
}

extension Counter: WireCodable {
    public func encode(to w: inout ByteWriter) {
        w.string(name)
        w.u64(value)
    }

    public init(from r: inout ByteReader) throws(ProtocolError) {
        self.init(name: try r.string(), value: try r.u64())
    }
}

extension Meminfo: WireCodable {
    public func encode(to w: inout ByteWriter) {
        w.string(raw)
        w.array(fields) { $0.value($1) }
    }

    public init(from r: inout ByteReader) throws(ProtocolError) {
        self.init(raw: try r.string(), fields: try r.array(minimumElementSize: 13) { r throws(ProtocolError) in try r.value() })
    }
}

extension MeminfoField: WireCodable {
    public func encode(to w: inout ByteWriter) {
        w.string(name)
        w.u64(value)
        w.optional(unit) { $0.string($1) }
    }

    public init(from r: inout ByteReader) throws(ProtocolError) {
        self.init(name: try r.string(), value: try r.u64(), unit: try r.optional { r throws(ProtocolError) in try r.string() })
    }
}

extension CMAArea: WireCodable {
    public func encode(to w: inout ByteWriter) {
        w.string(name)
        for field in [basePFN, count, used, maxchunk, orderPerBit] { w.optional(field) { $0.u64($1) } }
        w.optional(bitmap) { $0.value($1) }
        w.array(sysfs) { $0.value($1) }
    }

    public init(from r: inout ByteReader) throws(ProtocolError) {
        let name = try r.string()
        var numbers = [UInt64?]()
        for _ in 0..<5 { numbers.append(try r.optional { r throws(ProtocolError) in try r.u64() }) }
        self.init(
            name: name, basePFN: numbers[0], count: numbers[1], used: numbers[2], maxchunk: numbers[3],
            orderPerBit: numbers[4], bitmap: try r.optional { r throws(ProtocolError) in try r.value() },
            sysfs: try r.array(minimumElementSize: 12) { r throws(ProtocolError) in try r.value() })
    }
}

extension BitmapSummary: WireCodable {
    public func encode(to w: inout ByteWriter) {
        w.u32(words)
        w.u64(setBits)
        w.optional(firstSetBit) { $0.u64($1) }
        w.optional(lastSetBit) { $0.u64($1) }
        w.array(runs) { $0.value($1) }
        w.bool(runsTruncated)
    }

    public init(from r: inout ByteReader) throws(ProtocolError) {
        self.init(
            words: try r.u32(), setBits: try r.u64(),
            firstSetBit: try r.optional { r throws(ProtocolError) in try r.u64() },
            lastSetBit: try r.optional { r throws(ProtocolError) in try r.u64() },
            runs: try r.array(minimumElementSize: 16) { r throws(ProtocolError) in try r.value() },
            runsTruncated: try r.bool())
    }
}

extension BitRun: WireCodable {
    public func encode(to w: inout ByteWriter) {
        w.u64(start)
        w.u64(length)
    }

    public init(from r: inout ByteReader) throws(ProtocolError) {
        self.init(start: try r.u64(), length: try r.u64())
    }
}

extension DirectoryEntry: WireCodable {
    public func encode(to w: inout ByteWriter) {
        w.string(name)
        w.u8(kind)
        w.u64(size)
    }

    public init(from r: inout ByteReader) throws(ProtocolError) {
        self.init(name: try r.string(), kind: try r.u8(), size: try r.u64())
    }
}

extension KmsgRecord: WireCodable {
    public func encode(to w: inout ByteWriter) {
        w.u64(sequence)
        w.u8(priority)
        w.u8(facility)
        w.u64(timestampMicroseconds)
        w.string(message)
    }

    public init(from r: inout ByteReader) throws(ProtocolError) {
        self.init(
            sequence: try r.u64(), priority: try r.u8(), facility: try r.u8(),
            timestampMicroseconds: try r.u64(), message: try r.string())
    }
}

extension KmsgBatch: WireCodable {
    public func encode(to w: inout ByteWriter) {
        w.array(records) { $0.value($1) }
        w.u64(nextSequence)
        w.u64(missedRecords)
    }

    public init(from r: inout ByteReader) throws(ProtocolError) {
        self.init(
            records: try r.array(minimumElementSize: 22) { r throws(ProtocolError) in try r.value() },
            nextSequence: try r.u64(), missedRecords: try r.u64())
    }
}

extension ExecTermination: WireCodable {
    public func encode(to w: inout ByteWriter) {
        switch self {
        case let .exited(code): w.u8(1); w.i32(code)
        case let .signaled(signal): w.u8(2); w.i32(signal)
        case .timedOut: w.u8(3)
        case let .spawnFailed(errno): w.u8(4); w.i32(errno)
        }
    }

    public init(from r: inout ByteReader) throws(ProtocolError) {
        switch try r.u8() {
        case 1: self = .exited(try r.i32())
        case 2: self = .signaled(try r.i32())
        case 3: self = .timedOut
        case 4: self = .spawnFailed(errno: try r.i32())
        case let tag: throw .unknownTag(tag)
        }
    }
}

extension ExecResult: WireCodable {
    public func encode(to w: inout ByteWriter) {
        w.value(termination)
        w.byteArray(stdout)
        w.byteArray(stderr)
        w.bool(stdoutTruncated)
        w.bool(stderrTruncated)
        w.u64(durationNanoseconds)
    }

    public init(from r: inout ByteReader) throws(ProtocolError) {
        self.init(
            termination: try r.value(), stdout: try r.byteArray(), stderr: try r.byteArray(),
            stdoutTruncated: try r.bool(), stderrTruncated: try r.bool(), durationNanoseconds: try r.u64())
    }
}
