import Foundation
import LabCore

/// The image definitions in `Images/*.yaml`, by name.
public struct ImageCatalog: Sendable {
    public private(set) var images: [String: ImageDefinition] = [:]
    public var names: [String] { images.keys.sorted() }
    /// The image the README's main job and profiles without an `image:` use.
    public static let defaultImage = "cma-6.12"

    public init(directory: String) throws(LabError) {
        let files: [String]
        do {
            files = try FileManager.default.contentsOfDirectory(atPath: directory)
                .filter { $0.hasSuffix(".yaml") || $0.hasSuffix(".yml") }.sorted()
        } catch {
            throw LabError(.input, "cannot list image definitions in \(directory)", hint: "set CMALAB_HOME to the cmalab checkout", underlying: error)
        }
        for f in files {
            let path = directory + "/" + f
            let def = try Self.load(path)
            if let other = images[def.name] {
                throw LabError(.input, "\(path): image `\(def.name)` is already defined in \(other.file)", hint: "give each image a unique name")
            }
            images[def.name] = def
        }
    }

    public static func load(_ path: String) throws(LabError) -> ImageDefinition {
        let text = try Files.read(path)
        do { return try ImageDefinition.parse(text, file: path) } catch {
            throw LabError(.input, error.description)
        }
    }

    /// A name from the catalog, or a path to an image file.
    public func resolve(_ nameOrPath: String) throws(LabError) -> ImageDefinition {
        if let def = images[nameOrPath] { return def }
        if nameOrPath.hasSuffix(".yaml") || nameOrPath.contains("/") { return try Self.load(nameOrPath) }
        throw LabError(.imageNotFound, "no image named `\(nameOrPath)`",
                       hint: "known images: \(names.joined(separator: ", ")); or pass the path of an image .yaml file")
    }
}
