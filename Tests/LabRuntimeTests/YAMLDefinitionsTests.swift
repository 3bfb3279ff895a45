import Foundation
import Testing
import LabCore
@testable import LabRuntime

@Suite struct YAMLDefinitionsTests {
    /// A folder of files, removed when the test ends.
    final class Folder {
        let path = NSTemporaryDirectory() + "cmalab-defs-\(UUID().uuidString)"
        init(_ files: [String: String]) throws {
            try FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: true)
            for (name, text) in files { try text.write(toFile: path + "/" + name, atomically: true, encoding: .utf8) }
        }
        deinit { try? FileManager.default.removeItem(atPath: path) }
    }

    /// A definition whose name is the file's first line; `bad` is refused as a parser would.
    static func parseName(_ text: String, _ file: String) throws(InputError) -> String {
        let name = String(text.prefix { $0 != "\n" })
        if name == "bad" { throw InputError(file: file, line: 1, path: "name", message: "not a name") }
        return name
    }

    static func missing(_ path: String) -> LabError { LabError(.input, "\(path): no such thing") }

    @Test func foldersGiveTheirYAMLFilesSortedAndFilesStayAsGiven() throws {
        let folder = try Folder(["b.yaml": "b", "a.yml": "a", "notes.txt": "x", "c.yaml.orig": "x"])
        let single = try Folder(["z.yaml": "z"])
        let files = try YAMLDefinitions.files([single.path + "/z.yaml", folder.path], missing: Self.missing, unlistable: nil)
        #expect(files == [single.path + "/z.yaml", folder.path + "/a.yml", folder.path + "/b.yaml"])
        let loaded = try YAMLDefinitions.load([folder.path], noun: "thing", name: { $0 }, missing: Self.missing, unlistable: nil,
                                              parse: Self.parseName)
        #expect(loaded.map(\.definition) == ["a", "b"])
        #expect(loaded.map(\.file) == [folder.path + "/a.yml", folder.path + "/b.yaml"])
    }

    @Test func aSecondDefinitionOfANameIsRefusedNamingBothFiles() throws {
        let folder = try Folder(["1.yaml": "same", "2.yaml": "same"])
        do {
            _ = try YAMLDefinitions.load([folder.path], noun: "thing", name: { $0 }, missing: Self.missing, unlistable: nil,
                                         parse: Self.parseName)
            Issue.record("a duplicate name was accepted")
        } catch {
            #expect(error.code == .input)
            #expect(error.message == "\(folder.path)/2.yaml: thing `same` is already defined in \(folder.path)/1.yaml")
            #expect(error.hint == "give each thing a unique name")
        }
    }

    @Test func missingPathsAndUnlistableFolders() throws {
        let nowhere = NSTemporaryDirectory() + "cmalab-defs-nowhere-\(UUID().uuidString)"
        #expect(throws: LabError.self) { try YAMLDefinitions.files([nowhere], missing: Self.missing, unlistable: nil) }
        do { _ = try YAMLDefinitions.files([nowhere], missing: Self.missing, unlistable: nil) } catch {
            #expect(error.message == "\(nowhere): no such thing")
        }
        // Without `missing` every path is a folder: one that does not exist cannot be listed.
        #expect(try YAMLDefinitions.files([nowhere], missing: nil, unlistable: nil).isEmpty)
        do {
            _ = try YAMLDefinitions.files([nowhere], missing: nil, unlistable: { LabError(.input, "cannot list \($0)", underlying: $1) })
            Issue.record("an unlistable folder was accepted")
        } catch {
            #expect(error.message == "cannot list \(nowhere)")
            #expect(error.underlying != nil)
        }
    }

    @Test func whatTheParserRefusesIsAnInputErrorPointingIntoTheFile() throws {
        let folder = try Folder(["x.yaml": "bad\n"])
        do { _ = try YAMLDefinitions.parse(folder.path + "/x.yaml", with: Self.parseName); Issue.record("accepted") } catch {
            #expect(error.code == .input)
            #expect(error.message == "\(folder.path)/x.yaml:1: at `name`: not a name")
        }
    }

    @Test func profilesAndImagesKeepTheirMessages() throws {
        let profile = "name: p\nmachine: {memory: 2G}\nexpect:\n  outcome: none\n"
        let folder = try Folder(["a.yaml": profile, "b.yaml": profile])
        do { _ = try ProfileLoader.load([folder.path], defaultDirectory: "/nonexistent"); Issue.record("accepted") } catch {
            #expect(error.message == "\(folder.path)/b.yaml: profile `p` is already defined in \(folder.path)/a.yaml")
            #expect(error.hint == "give each profile a unique name")
        }
        do { _ = try ProfileLoader.load([folder.path + "/none.yaml"], defaultDirectory: "/nonexistent"); Issue.record("accepted") } catch {
            #expect(error.message == "\(folder.path)/none.yaml: no such profile file or folder")
        }
        #expect(try ProfileLoader.load([folder.path + "/a.yaml"], defaultDirectory: "/nonexistent").map(\.name) == ["p"])
        do { _ = try ImageCatalog(directory: folder.path + "/none"); Issue.record("accepted") } catch {
            #expect(error.message == "cannot list image definitions in \(folder.path)/none")
            #expect(error.hint == "set CMALAB_HOME to the cmalab checkout")
        }
    }
}
