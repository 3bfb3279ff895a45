import Foundation
import Testing
@testable import LabCore

@Suite struct ArchitectureTests {
    // MARK: - The x86_64 answers

    @Test func x86_64Values() {
        let a = Architecture.x86_64
        #expect(Architecture.default == .x86_64)
        #expect(a.description == "x86_64")
        #expect(a.qemuBinary == "qemu-system-x86_64")
        #expect(a.qemuPackage == "qemu-system-x86")
        #expect(a.libvirtArch == "x86_64")
        #expect(a.consoleDevice == "ttyS0")
        #expect(a.consoleParameters.map(\.key) == ["console"])
        #expect(a.consoleParameters.map(\.value) == ["ttyS0"])
        #expect(a.agentUARTDevice == "ttyS1")
        #expect(a.kernelImagePath == "arch/x86/boot/bzImage")
        #expect(a.kernelMakeTarget == "bzImage")
        #expect(a.kernelImageName == "bzImage")
        #expect(a.baseConfigs == ["tinyconfig", "allnoconfig", "defconfig", "x86_64_defconfig", "kvm_guest.config"])
        #expect(ImageDefinition.allowedBaseConfigs == a.baseConfigs)
        #expect(a.memoryMapSource(for: .pc) == .e820(.pc))
        #expect(a.memoryMapSource(for: .q35) == .e820(.q35))
    }

    @Test func agentBinaryComesFromTheEnvironmentOrTheCheckout() {
        let a = Architecture.x86_64
        #expect(a.agentBinary(home: "/src/cmalab", environment: [:]) == "/src/cmalab/.build-agent/release/cmalab-agent")
        #expect(a.agentBinary(home: "/src/cmalab", environment: ["CMALAB_AGENT": "/opt/agent"]) == "/opt/agent")
    }

    @Test func machineMemoryMapIsE820OfItsType() {
        let spec = MachineSpec(memory: .gib(4), type: .q35)
        #expect(spec.architecture == .x86_64)
        #expect(spec.memoryMapSource == .e820(.q35))
        #expect(GuestMemoryMap(spec.memoryMapSource, memory: spec.memory.bytes) == GuestMemoryMap(machine: .q35, memory: spec.memory.bytes))
    }

    // MARK: - `arch:` in an image file

    @Test func imageArchIsAcceptedAndDefaultsToX86_64() throws {
        let named = try ImageDefinition.parse("name: x\narch: x86_64\nbuild: {debian-source: a, base: x86_64_defconfig}\n", file: "/i/x.yaml")
        #expect(named.architecture == .x86_64)
        #expect(named.baseConfig == "x86_64_defconfig")
        let unnamed = try ImageDefinition.parse("name: x\nbuild: {debian-source: a}\n", file: "/i/x.yaml")
        #expect(unnamed.architecture == .x86_64)
        // Naming the default changes nothing else about the image (so nothing that is derived from it).
        var same = named
        same.baseConfig = unnamed.baseConfig
        #expect(same == unnamed)
    }

    @Test(arguments: [
        ("name: x\narch: riscv64\nbuild: {debian-source: a}\n",
         "/i/x.yaml:2:7: at `arch`: `riscv64` is not an architecture cmalab knows; use one of: x86_64, arm64"),
        ("name: x\narch: X86_64\nprebuilt: {kernel: k, config: c}\n",
         "/i/x.yaml:2:7: at `arch`: `X86_64` is not an architecture cmalab knows; use one of: x86_64, arm64"),
    ])
    func unknownArchSaysWhereAndWhat(yaml: String, message: String) {
        #expect(throws: InputError.self) { try ImageDefinition.parse(yaml, file: "/i/x.yaml") }
        do { _ = try ImageDefinition.parse(yaml, file: "/i/x.yaml") } catch {
            #expect(error.description == message)
        }
    }

    @Test func repoImagesAreX86_64() throws {
        let dir = String(#filePath.dropLast("Tests/LabCoreTests/ArchitectureTests.swift".count)) + "Images"
        for name in ["cma-6.12", "cma-6.1", "cma-6.12-uart", "nocma-6.12"] {
            let path = "\(dir)/\(name).yaml"
            let def = try ImageDefinition.parse(try String(contentsOfFile: path, encoding: .utf8), file: path)
            #expect(def.architecture == .x86_64)
        }
    }

    // MARK: - Plans are what they were

    func plan(_ spec: MachineSpec) -> QEMUPlan {
        var p = QEMUPlan(machine: spec, kernel: "/k/bzImage", initrd: "/k/initrd.cpio", commandLine: "cma=1G@1-2G")
        p.agentSocket = "/tmp/x/agent.sock"
        p.name = "run-1"
        return p
    }

    /// The whole argv of a seed boot, as before guests had an architecture, plus the fast-boot options (issue 20).
    @Test func planArgvIsUnchanged() {
        let expected = [
            "qemu-system-x86_64", "-name", "run-1", "-nodefaults", "-no-user-config", "-display", "none", "-no-reboot",
            "-machine", "pc,accel=tcg,i8042=off", "-smp", "2", "-m", "4096M",
            "-object", "memory-backend-ram,id=ram0,size=4096M,reserve=off", "-machine", "memory-backend=ram0",
            "-kernel", "/k/bzImage", "-initrd", "/k/initrd.cpio", "-append", "console=ttyS0 panic=-1 pty.legacy_count=0 reboot=t pci=noacpi cma=1G@1-2G",
            "-chardev", "stdio,id=console,signal=off", "-serial", "chardev:console",
            "-chardev", "socket,id=agent,path=/tmp/x/agent.sock,server=on,wait=off",
            "-device", "virtio-serial-pci,id=vser0", "-device", "virtserialport,bus=vser0.0,chardev=agent,name=org.cmalab.agent.0",
        ]
        let implicit = plan(MachineSpec(memory: .gib(4), cpus: 2, type: .pc))
        let explicit = plan(MachineSpec(memory: .gib(4), cpus: 2, type: .pc, architecture: .x86_64))
        #expect(implicit.arguments() == expected)
        #expect(explicit.arguments() == expected)
        #expect(implicit == explicit)
    }

    @Test func uartPlanArgvIsUnchanged() {
        var p = plan(MachineSpec(memory: .gib(2), cpus: 1, type: .q35))
        p.agentTransport = .uart
        #expect(p.arguments() == [
            "qemu-system-x86_64", "-name", "run-1", "-nodefaults", "-no-user-config", "-display", "none", "-no-reboot",
            "-machine", "q35,accel=tcg,i8042=off", "-smp", "1", "-m", "2048M",
            "-object", "memory-backend-ram,id=ram0,size=2048M,reserve=off", "-machine", "memory-backend=ram0",
            "-kernel", "/k/bzImage", "-initrd", "/k/initrd.cpio", "-append", "console=ttyS0 panic=-1 pty.legacy_count=0 reboot=t cmalab.channel=uart cma=1G@1-2G",
            "-chardev", "stdio,id=console,signal=off", "-serial", "chardev:console",
            "-chardev", "socket,id=agent,path=/tmp/x/agent.sock,server=on,wait=off", "-serial", "chardev:agent",
        ])
    }

    @Test func binaryFollowsTheArchitectureUnlessSet() {
        var p = plan(MachineSpec(memory: .gib(1)))
        #expect(p.binary == "qemu-system-x86_64")
        p.binary = "/opt/qemu/bin/qemu-system-x86_64"
        #expect(p.binary == "/opt/qemu/bin/qemu-system-x86_64")
        #expect(p.arguments().first == "/opt/qemu/bin/qemu-system-x86_64")
    }

    @Test func libvirtDomainNamesTheArchitecture() {
        let xml = LibvirtDomainXML(name: "cmalab-x", machine: MachineSpec(memory: .gib(1), type: .q35), kernel: "/k", initrd: nil,
                                   commandLine: "console=ttyS0", agent: false, ownerHost: "h", ownerPID: 1).render()
        #expect(xml.contains("<type arch='x86_64' machine='q35'>hvm</type>"))
    }

    // MARK: - JSON

    @Test func machineJSONOmitsTheDefaultArchitectureAndOldJSONDecodes() throws {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys]
        let spec = MachineSpec(memory: .gib(4), cpus: 2, type: .q35, numaNodes: [.gib(2), .gib(2)], cpuModel: "max")
        let json = String(decoding: try encoder.encode(spec), as: UTF8.self)
        #expect(json == #"{"cpuModel":"max","cpus":2,"memory":"4G","numaNodes":["2G","2G"],"type":"q35"}"#)
        #expect(try JSONDecoder().decode(MachineSpec.self, from: Data(json.utf8)) == spec)
        let named = #"{"architecture":"x86_64","cpus":1,"memory":"1G","numaNodes":[],"type":"pc"}"#
        #expect(try JSONDecoder().decode(MachineSpec.self, from: Data(named.utf8)) == MachineSpec(memory: .gib(1)))
        let unknown = #"{"architecture":"sparc","cpus":1,"memory":"1G","numaNodes":[],"type":"pc"}"#
        #expect(throws: DecodingError.self) { try JSONDecoder().decode(MachineSpec.self, from: Data(unknown.utf8)) }
    }
}
