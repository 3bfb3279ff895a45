import ArgumentParser
import Foundation
import LabCore
import LabRuntime

struct ImageCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "image",
        abstract: "Build and list kernel images (Images/*.yaml).",
        subcommands: [Build.self, List.self]
    )

    struct Build: ParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Build (or fetch) images; a cached image returns at once.")

        @Argument(help: "Image names or .yaml paths (default: cma-6.12).")
        var names: [String] = []

        @Flag(name: .long, help: "Build every image in Images/.")
        var all = false

        @Flag(name: .long, help: "Rebuild even when the cache has the image.")
        var force = false

        @Option(name: .long, help: "Parallel make jobs (default: number of cores).")
        var jobs: Int?

        func run() throws {
            try runReportingErrors {
                let lab = Lab()
                if let jobs { lab.kernels.jobs = jobs }
                let catalog = try lab.catalog()
                let wanted = all ? catalog.names : (names.isEmpty ? [ImageCatalog.defaultImage] : names)
                for name in wanted {
                    let started = Date()
                    let k = try lab.kernels.ensure(try catalog.resolve(name), force: force)
                    let secs = String(format: "%.2f", Date().timeIntervalSince(started))
                    print("\(k.name): \(k.cached ? "cached" : "built") in \(secs) s, key \(k.key.prefix(16)), \(k.kernel)")
                    // cmalab's DMA test driver, on images with loadable modules (dma-alloc steps, long-term pins).
                    if lab.kernels.driverUnavailable(k) == nil {
                        let driverStarted = Date()
                        let module = try lab.kernels.testDriver(for: k)
                        print("\(k.name): DMA test driver in \(String(format: "%.2f", Date().timeIntervalSince(driverStarted))) s, \(module)")
                    }
                }
            }
        }
    }

    struct List: ParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Show every image, built or not, with its cache key and path.")

        func run() throws {
            try runReportingErrors {
                let lab = Lab()
                let catalog = try lab.catalog()
                var rows: [[String]] = [["IMAGE", "KIND", "STATE", "KEY", "KERNEL"]]
                for name in catalog.names {
                    let def = catalog.images[name]!
                    let kind: String
                    switch def.source {
                    case .debianSource(let p): kind = "build \(p)"
                    case .tree(let p): kind = "build \(p)"
                    case .debianPackage(let p): kind = "package \(p)"
                    case .prebuilt: kind = "prebuilt"
                    }
                    if let k = lab.kernels.lookup(def) {
                        rows.append([name, kind, "built", String(k.key.prefix(16)), k.kernel])
                    } else {
                        rows.append([name, kind, "not built", "-", "-"])
                    }
                }
                print(Table.render(rows))
            }
        }
    }
}
