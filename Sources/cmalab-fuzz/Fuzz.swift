// cmalab-fuzz: one libFuzzer target for the parsers that read what a guest, a user or a file hands cmalab.
// The first input byte picks the parser; the rest is its input. `make fuzz` builds it with
// `-sanitize=fuzzer,address -D FUZZING` (libFuzzer's main); a plain build is a replayer that runs the
// same entry point on files, so a crash found by the fuzzer can be replayed (and is kept as a test).
import LabCore
import LabProtocol

enum FuzzTarget: UInt8, CaseIterable {
    case kernelLog, meminfo, cmaArgument, cmaFamily, profile, matrix, frames, kernelConfig, cmaBitmap

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
    }
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
