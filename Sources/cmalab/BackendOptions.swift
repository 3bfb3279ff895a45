import ArgumentParser
import Foundation
import LabRuntime

/// `--backend qemu|libvirt` and `--connect URI`: who runs the guests. Shared by run, boot, shell and matrix.
struct BackendOptions: ParsableArguments {
    enum Kind: String, ExpressibleByArgument, CaseIterable { case qemu, libvirt }

    @Option(name: .long, help: "What runs the guests: qemu (cmalab starts QEMU itself) or libvirt (a transient domain on libvirtd; docs/libvirt.md).")
    var backend: Kind = .qemu

    @Option(name: .long, help: ArgumentHelp("libvirt URI for --backend libvirt (default: qemu:///system), e.g. qemu+ssh://root@host/system. `matrix` takes several and spreads the cells over them.", valueName: "uri"))
    var connect: [String] = []

    func validate() throws {
        if backend == .qemu && !connect.isEmpty { throw ValidationError("--connect goes with --backend libvirt") }
    }

    /// One backend per URI (at least one).
    var backends: [Backend] {
        switch backend {
        case .qemu: return [.qemu]
        case .libvirt: return (connect.isEmpty ? [Backend.defaultLibvirtURI] : connect).map { .libvirt(uri: $0) }
        }
    }

    /// The one backend of a command that boots one guest at a time.
    func single() throws(LabError) -> Backend {
        let all = backends
        guard all.count == 1 else { throw LabError(.input, "give one --connect URI here; `cmalab matrix` spreads cells over several") }
        return all[0]
    }
}
