import Foundation
import LabCore

/// The image definitions in `Images/*.yaml`, by name.
public struct ImageCatalog: Sendable {
    public private(set) var images: [String: ImageDefinition] = [:]
    public var names: [String] { images.keys.sorted() }
    /// The image the README's main job and profiles without an `image:` use.
    public static let defaultImage = "cma-6.12"

    public init(directory: String) throws(LabError) {
        let unlistable = { (directory: String, error: any Error) in
            LabError(.input, "cannot list image definitions in \(directory)", hint: "set CMALAB_HOME to the cmalab checkout", underlying: error)
        }
        for (_, def) in try YAMLDefinitions.load([directory], noun: "image", name: \.name, missing: nil, unlistable: unlistable,
                                                 parse: ImageDefinition.parse) {
            images[def.name] = def
        }
    }

    public static func load(_ path: String) throws(LabError) -> ImageDefinition {
        try YAMLDefinitions.parse(path, with: ImageDefinition.parse)
    }

    /// A name from the catalog, or a path to an image file.
    public func resolve(_ nameOrPath: String) throws(LabError) -> ImageDefinition {
        if let def = images[nameOrPath] { return def }
        if nameOrPath.hasSuffix(".yaml") || nameOrPath.contains("/") { return try Self.load(nameOrPath) }
        throw LabError(.imageNotFound, "no image named `\(nameOrPath)`",
                       hint: "known images: \(names.joined(separator: ", ")); or pass the path of an image .yaml file")
    }
}
