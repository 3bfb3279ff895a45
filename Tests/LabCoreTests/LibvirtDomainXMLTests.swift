import Foundation
#if canImport(FoundationXML)
import FoundationXML
#endif
import Testing
@testable import LabCore

/// The libvirt domain XML, read back with a real XML parser and checked element by element.
@Suite struct LibvirtDomainXMLTests {
    func spec(_ machine: MachineSpec = MachineSpec(memory: .gib(4)), cmdline: String = "console=ttyS0 panic=-1 cma=1G@1-2G",
              agent: Bool = true) -> LibvirtDomainXML {
        LibvirtDomainXML(name: "cmalab-20261125-seed", machine: machine, kernel: "/var/lib/libvirt/images/cmalab/k-bzImage",
                         initrd: "/var/lib/libvirt/images/cmalab/initramfs.cpio", commandLine: cmdline, agent: agent,
                         ownerHost: "ci-7", ownerPID: 4242)
    }

    func parse(_ s: LibvirtDomainXML) throws -> XMLElement {
        let doc = try XMLDocument(xmlString: s.render(), options: [])
        return try #require(doc.rootElement())
    }

    func text(_ root: XMLElement, _ xpath: String) throws -> [String] {
        try root.nodes(forXPath: xpath).compactMap(\.stringValue)
    }

    @Test func tcgDirectKernelBootWithACPI() throws {
        let root = try parse(spec())
        #expect(root.name == "domain")
        #expect(root.attribute(forName: "type")?.stringValue == "qemu")
        #expect(try text(root, "/domain/name") == ["cmalab-20261125-seed"])
        #expect(try text(root, "/domain/memory") == ["4096"])
        #expect(try text(root, "/domain/memory/@unit") == ["MiB"])
        #expect(try text(root, "/domain/vcpu") == ["1"])
        #expect(try text(root, "/domain/os/type") == ["hvm"])
        #expect(try text(root, "/domain/os/type/@machine") == ["pc"])
        #expect(try text(root, "/domain/os/kernel") == ["/var/lib/libvirt/images/cmalab/k-bzImage"])
        #expect(try text(root, "/domain/os/initrd") == ["/var/lib/libvirt/images/cmalab/initramfs.cpio"])
        #expect(try text(root, "/domain/os/cmdline") == ["console=ttyS0 panic=-1 cma=1G@1-2G"])
        #expect(try root.nodes(forXPath: "/domain/features/acpi").count == 1)
        // QEMU's -no-reboot: every ending destroys the transient domain, so cmalab sees it vanish.
        for e in ["on_poweroff", "on_reboot", "on_crash"] { #expect(try text(root, "/domain/\(e)") == ["destroy"]) }
        // No NUMA, no CPU model: no <cpu> element at all (libvirt's default model).
        #expect(try root.nodes(forXPath: "/domain/cpu").isEmpty)
    }

    @Test func memoryIsBackedOnTouchOnly() throws {
        let root = try parse(spec(MachineSpec(memory: .gib(512))))
        #expect(try text(root, "/domain/memory") == ["524288"])
        #expect(try text(root, "/domain/memoryBacking/source/@type") == ["memfd"])
        #expect(try text(root, "/domain/memoryBacking/allocation/@mode") == ["ondemand"])
        #expect(try root.nodes(forXPath: "/domain/memoryBacking/allocation/@threads").isEmpty)
        #expect(try root.nodes(forXPath: "//hugepages").isEmpty)
    }

    @Test func consoleOnSerialZeroAndAgentOnVirtioChannel() throws {
        let root = try parse(spec())
        #expect(try text(root, "/domain/devices/serial/@type") == ["pty"])
        #expect(try text(root, "/domain/devices/serial/target/@port") == ["0"])
        #expect(try text(root, "/domain/devices/console/target/@type") == ["serial"])
        #expect(try text(root, "/domain/devices/channel/@type") == ["unix"])
        #expect(try text(root, "/domain/devices/channel/source/@mode") == ["bind"])
        #expect(try text(root, "/domain/devices/channel/target/@type") == ["virtio"])
        #expect(try text(root, "/domain/devices/channel/target/@name") == ["org.cmalab.agent.0"])
        #expect(try text(root, "/domain/devices/memballoon/@model") == ["none"])

        let noAgent = try parse(spec(agent: false))
        #expect(try noAgent.nodes(forXPath: "/domain/devices/channel").isEmpty)
        #expect(try text(noAgent, "/domain/devices/serial/@type") == ["pty"])
    }

    @Test func numaCellsSplitCPUsLikeTheQEMUPlan() throws {
        let m = MachineSpec(memory: .gib(6), cpus: 4, type: .q35, numaNodes: [.gib(2), .gib(4)])
        let root = try parse(spec(m))
        #expect(try text(root, "/domain/os/type/@machine") == ["q35"])
        #expect(try text(root, "/domain/vcpu") == ["4"])
        #expect(try text(root, "/domain/cpu/numa/cell/@id") == ["0", "1"])
        #expect(try text(root, "/domain/cpu/numa/cell/@cpus") == ["0-1", "2-3"])
        #expect(try text(root, "/domain/cpu/numa/cell/@memory") == ["2048", "4096"])
        #expect(try text(root, "/domain/cpu/numa/cell/@unit") == ["MiB", "MiB"])

        // The same split as QEMU's -numa arguments.
        let plan = QEMUPlan(machine: m, kernel: "k")
        let qemuNodes = plan.arguments().enumerated().filter { $0.offset > 0 && plan.arguments()[$0.offset - 1] == "-numa" }.map(\.element)
        #expect(qemuNodes == ["node,nodeid=0,memdev=ram0,cpus=0-1", "node,nodeid=1,memdev=ram1,cpus=2-3"])

        // More nodes than CPUs: the extra node has memory and no CPU.
        let m2 = MachineSpec(memory: .gib(2), cpus: 1, numaNodes: [.gib(1), .gib(1)])
        let root2 = try parse(spec(m2))
        #expect(try text(root2, "/domain/cpu/numa/cell/@cpus") == ["0"])
        #expect(try root2.nodes(forXPath: "/domain/cpu/numa/cell").count == 2)
    }

    @Test func cpuModelsMapToLibvirtModes() throws {
        let root = try parse(spec(MachineSpec(memory: .gib(1), cpuModel: "Skylake-Server")))
        #expect(try text(root, "/domain/cpu/@mode") == ["custom"])
        #expect(try text(root, "/domain/cpu/model") == ["Skylake-Server"])
        #expect(try root.nodes(forXPath: "/domain/cpu/feature").isEmpty)

        // QEMU's `-cpu max` (1 GiB pages for hugetlb_cma=) is libvirt's maximum mode, with the NUMA cells.
        let maxRoot = try parse(spec(MachineSpec(memory: .gib(4), cpus: 2, numaNodes: [.gib(2), .gib(2)], cpuModel: "max")))
        #expect(try text(maxRoot, "/domain/cpu/@mode") == ["maximum"])
        #expect(try maxRoot.nodes(forXPath: "/domain/cpu/model").isEmpty)
        #expect(try text(maxRoot, "/domain/cpu/numa/cell/@cpus") == ["0", "1"])

        let withFeatures = try parse(spec(MachineSpec(memory: .gib(1), cpuModel: "qemu64,+pdpe1gb,-x2apic,vmx=on")))
        #expect(try text(withFeatures, "/domain/cpu/model") == ["qemu64"])
        #expect(try text(withFeatures, "/domain/cpu/feature/@name") == ["pdpe1gb", "x2apic", "vmx"])
        #expect(try text(withFeatures, "/domain/cpu/feature/@policy") == ["require", "disable", "require"])
    }

    @Test func commandLineAndPathsAreEscaped() throws {
        let line = #"dyndbg="file mm/cma.c +p" cma=1G<&>'x'"#
        var s = spec(cmdline: line)
        s.kernel = "/tmp/a&b/<bz>'Image'"
        let root = try parse(s)
        #expect(try text(root, "/domain/os/cmdline") == [line])
        #expect(try text(root, "/domain/os/kernel") == ["/tmp/a&b/<bz>'Image'"])
    }

    @Test func ownerMetadataRoundTrips() throws {
        let xml = spec().render()
        let root = try XMLDocument(xmlString: xml, options: []).rootElement()!
        let owner = try #require(try root.nodes(forXPath: "/domain/metadata/*").first as? XMLElement)
        #expect(owner.localName == "owner")
        #expect(owner.uri == LibvirtDomainXML.namespace)
        #expect(owner.attribute(forName: "pid")?.stringValue == "4242")
        let parsed = try #require(LibvirtDomainXML.owner(inDomainXML: xml))
        #expect(parsed.host == "ci-7" && parsed.pid == 4242)
        // As libvirt's virDomainGetXMLDesc returns it: double quotes, another attribute order.
        let fromLibvirt = #"<cmalab:owner xmlns:cmalab="\#(LibvirtDomainXML.namespace)" pid="17" host="h"/>"#
        let p2 = try #require(LibvirtDomainXML.owner(inDomainXML: fromLibvirt))
        #expect(p2.host == "h" && p2.pid == 17)
        // As virDomainGetMetadata returns it: the element without its prefix (measured on libvirt 9.0).
        let p3 = try #require(LibvirtDomainXML.owner(inDomainXML: #"<owner host="vm" pid="15522"/>"#))
        #expect(p3.host == "vm" && p3.pid == 15522)
        #expect(LibvirtDomainXML.owner(inDomainXML: #"<ownerx host="vm" pid="1"/>"#) == nil)
        #expect(LibvirtDomainXML.owner(inDomainXML: "<domain><name>x</name></domain>") == nil)
        #expect(LibvirtDomainXML.owner(inDomainXML: #"<cmalab:owner host="h" pid="notanumber"/>"#) == nil)
    }

    @Test func domainNamesAreSafeAndPrefixed() {
        #expect(LibvirtDomainXML.domainName(forRun: "20261125-185332-seed-1g@cma-6.12") == "cmalab-20261125-185332-seed-1g_cma-6.12")
        let long = LibvirtDomainXML.domainName(forRun: String(repeating: "x", count: 300))
        #expect(long.count == 100 && long.hasPrefix(LibvirtDomainXML.namePrefix))
        #expect(LibvirtDomainXML.domainName(forRun: "a/b c") == "cmalab-a_b_c")
    }
}
