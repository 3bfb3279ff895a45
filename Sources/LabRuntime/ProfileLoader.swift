import Foundation
import LabCore

/// Loads profiles from files and folders.
public enum ProfileLoader {
    /// Each argument is a .yaml file or a folder of them; no argument means `Profiles/`.
    public static func load(_ arguments: [String], defaultDirectory: String) throws(LabError) -> [Profile] {
        try YAMLDefinitions.load(arguments.isEmpty ? [defaultDirectory] : arguments, noun: "profile", name: \.name,
                                 missing: { LabError(.input, "\($0): no such profile file or folder") }, unlistable: nil,
                                 parse: Profile.parse).map(\.definition)
    }
}
