import Foundation
import LabCore

/// Definitions kept one per YAML file: profiles (`Profiles/`, the files and folders `run` is given, a matrix's
/// `profiles:`), images (`Images/`) and matrix files. One way to find the files, read and parse them, and refuse a
/// second definition of the same name.
public enum YAMLDefinitions {
    /// The `.yaml` and `.yml` files of `paths`, in order: a file is taken as it is, a folder gives its YAML files
    /// sorted by name. A path that does not exist is `missing(path)`; with no `missing`, every path is read as a
    /// folder. A folder that cannot be listed is `unlistable(path, error)`, or gives no files when that is nil.
    public static func files(_ paths: [String], missing: ((String) -> LabError)?,
                             unlistable: ((String, any Error) -> LabError)?) throws(LabError) -> [String] {
        var files: [String] = []
        for path in paths {
            if let missing {
                var isDir: ObjCBool = false
                guard FileManager.default.fileExists(atPath: path, isDirectory: &isDir) else { throw missing(path) }
                if !isDir.boolValue { files.append(path); continue }
            }
            let names: [String]
            do { names = try FileManager.default.contentsOfDirectory(atPath: path) } catch {
                if let unlistable { throw unlistable(path, error) }
                continue
            }
            files += names.filter { $0.hasSuffix(".yaml") || $0.hasSuffix(".yml") }.sorted().map { path + "/" + $0 }
        }
        return files
    }

    /// One file read and parsed; what the parser refuses becomes an `input` error that points into the file.
    public static func parse<Definition>(_ file: String,
                                         with parse: (_ text: String, _ file: String) throws(InputError) -> Definition) throws(LabError) -> Definition {
        let text = try Files.read(file)
        do { return try parse(text, file) } catch { throw LabError(.input, error.description) }
    }

    /// Every definition in `paths` (see `files`), with the file it came from, in file order. A name defined twice is
    /// refused: "<file>: <noun> `<name>` is already defined in <first file>".
    public static func load<Definition>(_ paths: [String], noun: String, name: (Definition) -> String,
                                        missing: ((String) -> LabError)?, unlistable: ((String, any Error) -> LabError)?,
                                        parse: (_ text: String, _ file: String) throws(InputError) -> Definition)
        throws(LabError) -> [(file: String, definition: Definition)] {
        var firstFile: [String: String] = [:]
        var out: [(file: String, definition: Definition)] = []
        for file in try files(paths, missing: missing, unlistable: unlistable) {
            let definition = try Self.parse(file, with: parse)
            let key = name(definition)
            if let other = firstFile[key] {
                throw LabError(.input, "\(file): \(noun) `\(key)` is already defined in \(other)", hint: "give each \(noun) a unique name")
            }
            firstFile[key] = file
            out.append((file, definition))
        }
        return out
    }
}
