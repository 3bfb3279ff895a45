// cmalab-fuzz: one libFuzzer target for the parsers that read what a guest, a user or a file hands cmalab.
// The first input byte picks the parser; the rest is its input. Two targets go past the parser: results files
// through `report html`'s pure half, and the agent channel through the agent client's decode-and-keep logic. `make fuzz` builds it with
// `-sanitize=fuzzer,address -D FUZZING` (libFuzzer's main); a plain build is a replayer that runs the
// same entry point on files, so a crash found by the fuzzer can be replayed (and is kept as a test).
import Foundation
import LabCore
import LabProtocol
import LabRuntime

enum FuzzTarget: UInt8, CaseIterable {
    // New targets go at the end: the corpus files start with the byte that picks theirs.
    case kernelLog, meminfo, cmaArgument, cmaFamily, profile, matrix, frames, kernelConfig, cmaBitmap, resultsFile, agentStream, deviceOutput, hostLog

    static func pick(_ byte: UInt8) -> FuzzTarget { allCases[Int(byte) % allCases.count] }
}

/// Runs one input; never crashes on any input (that is the property under test).
func fuzzOne(_ data: [UInt8]) {
    guard let first = data.first else { return }
    let body = Array(data.dropFirst())
    let text = String(decoding: body, as: UTF8.self)
    switch FuzzTarget.pick(first) {
    case .kernelLog:
        let facts = KernelLogParser.facts(from: text.split(separator: "\n", omittingEmptySubsequences: false).map(String.init))
        _ = Evaluate.outcome(Observations(profile: "f", image: "f", machine: MachineSpec(memory: .gib(4)), commandLine: "", accelerator: "tcg", ending: .poweredOff, boot: facts))
    case .meminfo:
        _ = Meminfo.parse(text)
    case .cmaArgument:
        if let r = try? CMARequest.parse(text) { _ = r.description; _ = r.warnings }
    case .cmaFamily:
        for name in CMAFamilyParameter.Name.allCases { _ = CMAFamilyParameter.parse(name, text).warnings }
    case .profile:
        _ = try? Profile.parse(text, file: "fuzz.yaml")
    case .matrix:
        _ = try? MatrixSpec.parse(text, file: "fuzz.yaml")
    case .frames:
        // Bounded memory: the decoder keeps at most one frame's worth of bytes whatever it is fed.
        var decoder = FrameDecoder(maxPayload: 1 << 16)
        var i = 0
        while i < body.count {
            let n = min(body.count - i, Int(body[i] % 64) + 1)
            decoder.feed(body[i..<(i + n)])
            while let frame = decoder.next() {
                _ = try? AgentResponse.decode(frame.payload)
                _ = try? AgentRequest.decode(frame.payload)
                _ = try? AgentEvent.decode(frame.payload)
            }
            precondition(decoder.bufferedByteCount <= (1 << 16) + 64, "the frame decoder holds \(decoder.bufferedByteCount) bytes")
            i += n
        }
    case .kernelConfig:
        _ = KernelConfig(parsing: text).isEnabled("CMA")
        _ = ConfigFragment.requirements(text, file: "fuzz.config")
    case .cmaBitmap:
        let summary = body.withUnsafeBufferPointer { parseBitmap(bytes: $0) }
        precondition(summary.runs.count <= BitmapSummary.maxRuns, "\(summary.runs.count) runs kept")
        precondition(summary.runs.reduce(0) { $0 + $1.length } <= summary.setBits, "runs cover more bits than are set")
    case .resultsFile:
        fuzzResultsFile(body)
    case .agentStream:
        fuzzAgentStream(body)
    case .deviceOutput:
        // What the guest prints for the device steps and what tracefs holds: the guest's word, never a trap.
        let step = DMAAllocStep(size: 1 << 30, mask: Int(first % 64) + 1)
        if let a = DMAAllocation.parse(text, step: step), let address = a.dmaAddress { _ = DMAAllocStep.fits(address: address, size: step.size, bits: step.mask) }
        _ = HeapAllocStep.errno(in: text)
        _ = HeapAllocStep.nanoseconds(in: text)
        let s = CMATrace.summary(text)
        _ = s.line
        precondition(s.allocationMicroseconds.count <= text.utf8.count, "more allocations than bytes")
    case .hostLog:
        // A host's boot log for `cmalab replay`: read it, plan its twin, compare it with itself.
        let facts = HostLog.read(text)
        if let plan = try? TwinPlan.plan(map: facts.effectiveMap, budget: 1800) {
            precondition(TwinPlan.length(plan.parameters) <= 1800, "the plan does not fit its budget")
            precondition(plan.map.allSatisfy { $0.start <= $0.end }, "an inverted range in the plan")
            _ = plan.summary
        }
        if let line = facts.boot.memoryLine { _ = TwinPlan.fromMemoryLine(line) }
        _ = Replay.compare(host: facts.boot, twin: facts.boot)
    }
}

// MARK: - Results files (`report html`, `report merge`)

/// What the page writer would learn from the files around a results file, taken here from an extra `fuzz` key of the
/// same JSON (results readers ignore keys they do not know): the page's folder, and per `runDirectory` the canonical
/// path it resolved to, the files it holds and its kernel `config`.
struct FuzzRunFiles: Decodable {
    struct Run: Decodable {
        var path: String?
        var files: [String]?
        var config: String?
    }
    struct Extra: Decodable {
        var pageDirectory: String?
        var runs: [String: Run]?
    }
    var fuzz: Extra?
}

/// A results file as `report html` and `report merge` read it (`Report.decodeResults`, then the merge of several
/// files), rendered as `HTMLPageWriter` renders it: predicted placements, run-directory links, artifact lists and
/// kernel configs, then `HTMLReport.page` with its memory maps. Nothing may trap, and no link may leave the page's
/// side of the tree: every href is an anchor or a relative path without a scheme and without `..` after its
/// leading climb.
func fuzzResultsFile(_ body: [UInt8]) {
    guard let (verdicts, meta) = try? Report.decodeResults(body) else { return }
    _ = Report.table(verdicts, color: false)
    _ = Report.junit(verdicts)
    _ = try? Report.json(verdicts, meta: meta)
    var shown = verdicts
    if verdicts.count >= 2 {
        let half = verdicts.count / 2
        if let merged = try? Report.merge([("a", Array(verdicts[..<half])), ("b", Array(verdicts[half...]))]) { shown = merged }
    }
    var input = HTMLReportInput(title: "fuzz", verdicts: shown, meta: meta)
    input.predictedPlacement = HTMLReport.predictedPlacements(shown)
    if let extra = (try? JSONDecoder().decode(FuzzRunFiles.self, from: Data(body)))?.fuzz {
        let page = Path.normalize(extra.pageDirectory ?? "/lab")
        for (name, run) in extra.runs ?? [:] {
            if let path = run.path { input.runDirectoryHref[name] = HTMLReport.relativePath(from: page, to: Path.normalize("/" + path)) }
            if let files = run.files { input.artifactFiles[name] = files }
            if let config = run.config { input.kernelConfigs[name] = KernelConfig(parsing: config) }
        }
    }
    let page = HTMLReport.page(input)
    precondition(!page.contains("<script"), "the page holds a script element")
    var rest = page[...]
    while let r = rest.range(of: "href=\"") {
        let value = rest[r.upperBound...].prefix { $0 != "\"" }
        rest = rest[r.upperBound...]
        if value.hasPrefix("#") { continue }
        precondition(!value.isEmpty && !value.hasPrefix("/") && !HTMLReport.hasScheme(String(value)), "unsafe link href=\"\(value)\"")
        let parts = value.split(separator: "/", omittingEmptySubsequences: false)
        precondition(!parts.drop { $0 == ".." }.contains(".."), "link climbs after its start: href=\"\(value)\"")
    }
}

// MARK: - The agent channel (AgentClient's AgentInbox)

/// Reads the fuzz input as a script.
struct FuzzReader {
    var bytes: [UInt8]
    var at = 0
    mutating func byte() -> UInt8? {
        guard at < bytes.count else { return nil }
        defer { at += 1 }
        return bytes[at]
    }
    mutating func take(_ n: Int) -> ArraySlice<UInt8> {
        let end = min(bytes.count, at + n)
        defer { at = end }
        return bytes[at..<end]
    }
    var rest: ArraySlice<UInt8> { bytes[at...] }
}

/// The bytes the host receives from the guest, through `AgentInbox`: the frame decoder and the decision to keep,
/// drop and count each frame that `AgentClient` makes, with the client's flood stop.
///
/// Two header bytes set the channel limit (up to 63 KiB: the flood stop is tested, not the volume) and the decoder's
/// work step. Then, when the third byte is even, the rest is the raw stream, fed in pieces with requests 1-4
/// awaited; when odd, the rest is a script of records: `0` a frame the harness checksums (kind, id, 16-bit length,
/// payload), `1` raw bytes, `2` the host sends a request (up to 64 waiting), `3` it takes or gives up on the oldest
/// one, `4` flips a byte of what is not fed yet, `5` feeds that in pieces, `6` feeds it, then the last frame again
/// up to 255 times (floods within the input's length limit).
func fuzzAgentStream(_ body: [UInt8]) {
    var r = FuzzReader(bytes: body)
    let maxPayload = 1 << 16
    var inbox = AgentInbox(maxPayload: maxPayload, garbageLimit: UInt64((r.byte() ?? 0) % 64) << 10)
    let step = Int(r.byte() ?? 0) * 97 + 1
    let scripted = (r.byte() ?? 0) & 1 == 1
    var nextID: UInt32 = 1
    var awaiting: [UInt32] = []
    /// The first response kept for each awaited id: it must stay what the host reads until it gives up.
    var kept: [UInt32: AgentResponse] = [:]
    var fed: UInt64 = 0
    /// Encoded bytes of the events counted so far (events are only appended).
    var eventBytes = 0, eventsCounted = 0
    var pending: [UInt8] = []
    var lastFrame: [UInt8] = []

    func check() {
        precondition(inbox.heldResponseCount <= awaiting.count, "\(inbox.heldResponseCount) responses held for \(awaiting.count) requests")
        for id in awaiting {
            guard let response = inbox.response(to: id) else { continue }
            if let first = kept[id] { precondition(first == response, "the response to \(id) changed") } else { kept[id] = response }
        }
        let events = inbox.events
        precondition(events.count >= eventsCounted, "kept events went away")
        for e in events[eventsCounted...] { eventBytes += e.encode().count }
        eventsCounted = events.count
        precondition(eventBytes <= AgentInbox.eventBudget, "\(eventBytes) bytes of events kept")
        precondition((inbox.lastFatal?.utf8.count ?? 0) <= AgentInbox.fatalMessageLimit + 3, "a fatal message of \(inbox.lastFatal?.utf8.count ?? 0) bytes kept")
        precondition(inbox.unwantedBytes <= fed, "\(inbox.unwantedBytes) unwanted bytes of \(fed) received")
        precondition(inbox.bufferedBytes <= Frame.headerSize + maxPayload + 4096 + awaiting.count * maxPayload + AgentInbox.eventBudget,
                     "\(inbox.bufferedBytes) bytes held")
    }
    /// What `AgentClient.decodeBuffered` does, in steps of `step` bytes of checksum work. False once flooded.
    func drain() -> Bool {
        while true {
            var budget = step
            while inbox.takeFrame(budget: &budget) { check() }
            if budget > 0 { break }
        }
        check()
        return !inbox.isFlooded
    }
    /// Feeds `bytes` in pieces of up to 4 KiB (the size from the bytes themselves), draining after each.
    func feed(_ bytes: ArraySlice<UInt8>) -> Bool {
        var i = bytes.startIndex
        while i < bytes.endIndex {
            let n = min(bytes.endIndex - i, Int(bytes[i]) * 16 + 1)
            inbox.feed(bytes[i..<(i + n)])
            fed += UInt64(n)
            i += n
            guard drain() else { return false }
        }
        return true
    }

    guard scripted else {
        for _ in 0..<4 { inbox.expect(nextID); awaiting.append(nextID); nextID += 1 }
        _ = feed(r.rest)
        return
    }
    while let op = r.byte() {
        switch op % 7 {
        case 0:
            let kind = FrameKind(rawValue: (r.byte() ?? 0) % 3 + 1)!
            let id = UInt32(r.byte() ?? 0)
            let length = Int(r.byte() ?? 0) | Int(r.byte() ?? 0) << 8
            lastFrame = Frame(kind: kind, id: id, payload: Array(r.take(length))).encoded()
            pending += lastFrame
        case 1:
            pending += r.take(Int(r.byte() ?? 0))
        case 2:
            guard awaiting.count < 64 else { continue }
            inbox.expect(nextID)
            awaiting.append(nextID)
            nextID &+= 1
        case 3:
            guard !awaiting.isEmpty else { continue }
            let id = awaiting.removeFirst()
            inbox.forget(id)
            kept[id] = nil
            precondition(inbox.response(to: id) == nil, "a response to \(id) outlived its request")
        case 4:
            guard !pending.isEmpty else { continue }
            let at = Int(r.byte() ?? 0) | Int(r.byte() ?? 0) << 8
            pending[at % pending.count] ^= r.byte() ?? 0xFF
        case 6:
            guard feed(pending[...]) else { return }
            pending.removeAll()
            for _ in 0..<(r.byte() ?? 0) {
                guard feed(lastFrame[...]) else { return }
            }
        default:
            guard feed(pending[...]) else { return }
            pending.removeAll()
        }
    }
    _ = feed(pending[...])
}

#if FUZZING
@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzEntry(_ data: UnsafePointer<UInt8>?, _ size: Int) -> Int32 {
    fuzzOne(data.map { Array(UnsafeBufferPointer(start: $0, count: size)) } ?? [])
    return 0
}

/// libFuzzer's driver, called from the executable's entry point (SwiftPM names it `<module>_main`).
@_silgen_name("LLVMFuzzerRunDriver")
func runFuzzerDriver(_ argc: UnsafeMutablePointer<Int32>,
                     _ argv: UnsafeMutablePointer<UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>?>,
                     _ callback: @convention(c) (UnsafePointer<UInt8>?, Int) -> Int32) -> Int32

@_cdecl("cmalab_fuzz_main")
public func fuzzMain(_ argc: Int32, _ argv: UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>?) -> Int32 {
    var count = argc
    var arguments = argv
    return runFuzzerDriver(&count, &arguments) { data, size in fuzzEntry(data, size) }
}
#else
import Foundation

/// Replays inputs: each argument is a file (or a folder of files) given to the same entry point.
@main
struct FuzzReplay {
    static func main() {
        var files: [String] = []
        for arg in CommandLine.arguments.dropFirst() {
            var isDir: ObjCBool = false
            guard FileManager.default.fileExists(atPath: arg, isDirectory: &isDir) else {
                FileHandle.standardError.write(Data("cmalab-fuzz: \(arg): no such file or folder\n".utf8))
                exit(2)
            }
            if isDir.boolValue {
                files += ((try? FileManager.default.contentsOfDirectory(atPath: arg)) ?? []).sorted().map { arg + "/" + $0 }
            } else {
                files.append(arg)
            }
        }
        for f in files { fuzzOne([UInt8](FileManager.default.contents(atPath: f) ?? Data())) }
        print("replayed \(files.count) input(s) without a crash")
    }
}
#endif
