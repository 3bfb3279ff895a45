import Foundation
import LabCore

/// Loads profiles from files and folders.
public enum ProfileLoader {
    /// Each argument is a .yaml file or a folder of them; no argument means `Profiles/`.
    public static func load(_ arguments: [String], defaultDirectory: String) throws(LabError) -> [Profile] {
        var files: [String] = []
        for arg in arguments.isEmpty ? [defaultDirectory] : arguments {
            var isDir: ObjCBool = false
            guard FileManager.default.fileExists(atPath: arg, isDirectory: &isDir) else {
                throw LabError(.input, "\(arg): no such profile file or folder")
            }
            if isDir.boolValue {
                let names = ((try? FileManager.default.contentsOfDirectory(atPath: arg)) ?? [])
                    .filter { $0.hasSuffix(".yaml") || $0.hasSuffix(".yml") }.sorted()
                files += names.map { arg + "/" + $0 }
            } else {
                files.append(arg)
            }
        }
        var seen: [String: String] = [:]
        var profiles: [Profile] = []
        for f in files {
            let p: Profile
            do { p = try Profile.parse(try Files.read(f), file: f) } catch let e as InputError {
                throw LabError(.input, e.description)
            } catch {
                throw error as! LabError
            }
            if let other = seen[p.name] { throw LabError(.input, "\(f): profile `\(p.name)` is already defined in \(other)", hint: "give each profile a unique name") }
            seen[p.name] = f
            profiles.append(p)
        }
        return profiles
    }
}
