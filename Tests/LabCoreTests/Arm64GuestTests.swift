import Foundation
import Testing
@testable import LabCore

/// arm64 guests without QEMU: the architecture's answers, `machine:` in a profile, the `virt` argv, the Image header,
/// and matrices that hold both kinds of profile.
@Suite struct Arm64GuestTests {
    @Test func arm64Values() {
        let a = Architecture.arm64
        #expect(Architecture.named("arm64") == .arm64 && Architecture.named("aarch64") == .arm64 && Architecture.named("armv7") == nil)
        #expect(a.qemuBinary == "qemu-system-aarch64" && a.qemuPackage == "qemu-system-arm" && a.libvirtArch == "aarch64")
        #expect(a.consoleDevice == "ttyAMA0" && a.agentUARTDevice == nil)
        #expect(a.machineTypes == [.virt] && a.defaultMachineType == .virt && a.defaultCPU == "cortex-a53")
        #expect(a.kernelImagePath == "arch/arm64/boot/Image" && a.kernelImageName == "Image")
        #expect(a.defaultImage == "cma-6.12-arm64")
        #expect(MachineType.virt.architecture == .arm64 && MachineType.pc.architecture == .x86_64)
    }

    @Test func repoArm64ImageIsArm64() throws {
        let path = String(#filePath.dropLast("Tests/LabCoreTests/Arm64GuestTests.swift".count)) + "Images/cma-6.12-arm64.yaml"
        let def = try ImageDefinition.parse(try String(contentsOfFile: path, encoding: .utf8), file: path)
        #expect(def.architecture == .arm64 && def.name == "cma-6.12-arm64")
    }

    // MARK: - `machine:` in a profile

    func machine(_ yaml: String) throws -> MachineSpec { try Profile.parse("name: x\nmachine: \(yaml)\n", file: "x.yaml").machine }
    func refusal(_ yaml: String) -> String {
        do { _ = try Profile.parse("name: x\nmachine: \(yaml)\n", file: "x.yaml"); return "accepted" } catch { return error.description }
    }

    @Test func archAndTypeInAProfile() throws {
        let arm = try machine("{arch: arm64, memory: 2G, cpus: 2}")
        #expect(arm.architecture == .arm64 && arm.type == .virt && arm.memory == .gib(2) && arm.cpus == 2)
        #expect(try machine("{arch: aarch64}").architecture == .arm64)
        let virt = try machine("{type: virt}")
        #expect(virt.architecture == .arm64 && virt.type == .virt, "`type: virt` alone says arm64")
        #expect(try machine("{arch: arm64, type: virt, numa: [1G, 1G], memory: 2G}").numaNodes == [.gib(1), .gib(1)])
        #expect(try machine("{memory: 2G}").architecture == .x86_64)
        #expect(try machine("{arch: x86_64, type: q35}").type == .q35)
        #expect(try Profile.parse("name: x\nmachine: {arch: arm64}\n", file: "x.yaml").imageName == "cma-6.12-arm64")
    }

    @Test func mismatchedArchAndTypeAreRefused() {
        #expect(refusal("{arch: arm64, type: pc}") == "x.yaml:2:10: at `machine`: machine type pc is not an arm64 machine; use one of: virt")
        #expect(refusal("{arch: x86_64, type: virt}") == "x.yaml:2:10: at `machine`: machine type virt is not an x86_64 machine; use one of: pc, q35")
        #expect(refusal("{arch: sparc64}").hasPrefix("x.yaml:2:17: at `machine.arch`: `sparc64` is not an architecture cmalab knows; use one of: x86_64, arm64"))
        #expect(refusal("{type: virtio}").hasPrefix("x.yaml:2:17: at `machine.type`: `virtio` is not allowed"))
    }

    // MARK: - QEMU's argv for `virt`

    func virtPlan(_ spec: MachineSpec, dtb: String? = nil) -> QEMUPlan {
        var p = QEMUPlan(machine: spec, kernel: "/k/Image", initrd: "/k/initrd.cpio", commandLine: "cma=64M")
        p.agentSocket = "/tmp/x/agent.sock"
        p.name = "run-1"
        p.deviceTreeBlob = dtb
        return p
    }

    @Test func virtArgv() {
        let p = virtPlan(MachineSpec(memory: .gib(2), type: .virt, architecture: .arm64), dtb: "/runs/r/device-tree.dtb")
        #expect(p.arguments() == [
            "qemu-system-aarch64", "-name", "run-1", "-nodefaults", "-no-user-config", "-display", "none", "-no-reboot",
            "-machine", "virt,accel=tcg", "-cpu", "cortex-a53", "-smp", "1", "-m", "2048M",
            "-object", "memory-backend-ram,id=ram0,size=2048M,reserve=off", "-machine", "memory-backend=ram0",
            "-dtb", "/runs/r/device-tree.dtb",
            "-kernel", "/k/Image", "-initrd", "/k/initrd.cpio", "-nic", "none", "-append", "console=ttyAMA0 earlycon panic=-1 pty.legacy_count=0 cma=64M",
            "-chardev", "stdio,id=console,signal=off", "-serial", "chardev:console",
            "-chardev", "socket,id=agent,path=/tmp/x/agent.sock,server=on,wait=off",
            "-device", "virtio-serial-pci,id=vser0", "-device", "virtserialport,bus=vser0.0,chardev=agent,name=org.cmalab.agent.0",
        ])
        #expect(!p.effectiveCommandLine.description.contains("pci=noacpi"))
        #expect(!virtPlan(MachineSpec(memory: .gib(2), type: .virt, architecture: .arm64)).arguments().contains("-dtb"), "no nodes: QEMU's own tree")
    }

    @Test func virtCPUAndNumaAndDump() {
        var spec = MachineSpec(memory: .gib(2), cpus: 2, type: .virt, numaNodes: [.gib(1), .gib(1)], cpuModel: "max", architecture: .arm64)
        let a = virtPlan(spec).machineArguments()
        #expect(a.contains("max") && !a.contains("cortex-a53"), "a profile's cpu wins")
        #expect(a.filter { $0.hasPrefix("node,") } == ["node,nodeid=0,memdev=ram0,cpus=0", "node,nodeid=1,memdev=ram1,cpus=1"])
        spec.cpuModel = nil
        let dump = virtPlan(spec).dumpDeviceTreeArguments(to: "/tmp/q.dtb")
        #expect(dump.first == "qemu-system-aarch64" && dump.suffix(2) == ["-machine", "dumpdtb=/tmp/q.dtb"])
        #expect(dump.contains("cortex-a53") && !dump.contains("-kernel") && !dump.contains("-dtb"))
        #expect(throws: PlanError.self) { try QEMUPlan(machine: MachineSpec(memory: .gib(2), type: .pc, architecture: .arm64), kernel: "").validate() }
    }

    // MARK: - The Image header

    /// The first 64 bytes of cma-6.12-arm64's Image (Tests/LabCoreTests/Fixtures/arm64-image.tsv): text_offset 0 and
    /// image_size 0x5c0000, so QEMU loads it 2 MiB into RAM and the kernel holds [0x40200000, 0x407c0000), as
    /// memblock=debug showed.
    @Test func realImageHeader() throws {
        let header = try Arm64Fixture.image().header
        #expect(header.count == 64)
        let info = try #require(KernelImageInfo.arm64Header(header, ramBase: GuestMemoryMap.virtRAMBase))
        #expect(info.loadAddress == 0x4020_0000 && info.initSize == 0x5c_0000 && info.imageEnd == 0x407c_0000)
        #expect(info.reserved == AddressRange(0x4020_0000, 0x407c_0000))
        #expect(info.initrdAddrMax == UInt64.max)
    }

    @Test func imageHeaderRefusals() throws {
        let real = try Arm64Fixture.image().header
        #expect(KernelImageInfo.arm64Header(Array(real.prefix(63)), ramBase: 0x4000_0000) == nil, "short")
        var magic = real; magic[59] = 0x65
        #expect(KernelImageInfo.arm64Header(magic, ramBase: 0x4000_0000) == nil, "not ARM\\x64")
        var empty = real; for i in 16..<24 { empty[i] = 0 }
        #expect(KernelImageInfo.arm64Header(empty, ramBase: 0x4000_0000) == nil, "image_size 0: a pre-3.17 header")
        var huge = real; huge[20] = 1
        #expect(KernelImageInfo.arm64Header(huge, ramBase: 0x4000_0000) == nil, "image_size of 4 GiB or more")
        var offset = real; offset[10] = 0x08   // text_offset 0x80000: at or past QEMU's stub, used as is
        #expect(KernelImageInfo.arm64Header(offset, ramBase: 0x4000_0000)?.loadAddress == 0x4008_0000)
        var far = real; far[15] = 0x01          // text_offset past 1 GiB
        #expect(KernelImageInfo.arm64Header(far, ramBase: 0x4000_0000) == nil)
        #expect(KernelImageInfo.header(real) == nil, "not a bzImage")
    }

    // MARK: - Matrices with both architectures

    func profiles() throws -> [Profile] {
        try [
            Profile.parse("name: seed\nmachine: {memory: 4G}\ncmdline: cma=1G@1-2G\n", file: "seed.yaml"),
            Profile.parse("name: arm-seed\nmachine: {arch: arm64, memory: 4G}\ncmdline: cma=1G\n", file: "arm-seed.yaml"),
        ]
    }
    func arch(_ image: String) -> Architecture? { image.hasSuffix("-arm64") ? .arm64 : image.hasPrefix("cma-") ? .x86_64 : nil }

    @Test func crossPairsAreNotCells() throws {
        let m = try MatrixSpec.parse("name: m\nimages: [cma-6.12, cma-6.12-arm64, other]\nprofiles: [p/]\n", file: "m.yaml")
        #expect(try m.cells(profiles: profiles(), architecture: arch).map(\.id)
                == ["arm-seed@cma-6.12-arm64", "arm-seed@other", "seed@cma-6.12", "seed@other"], "an image of unknown architecture pairs with both")
        // Without the architecture function every pair is a cell, as before arm64.
        #expect(try m.cells(profiles: profiles()).count == 6)
    }

    @Test func crossIncludeIsRefused() throws {
        let m = try MatrixSpec.parse("name: m\nimages: [cma-6.12]\nprofiles: [p/]\ninclude: [{image: cma-6.12, profile: arm-seed}]\n", file: "m.yaml")
        let both = try profiles()
        do {
            _ = try m.cells(profiles: both, architecture: arch)
            Issue.record("a cross include was accepted")
        } catch {
            #expect(error.description == "m.yaml: include: profile `arm-seed` is for arm64 machines, and image `cma-6.12` is not an arm64 image")
        }
        let ok = try MatrixSpec.parse("name: m\nimages: [cma-6.12]\nprofiles: [p/]\ninclude: [{image: cma-6.12-arm64, profile: arm-seed}]\n", file: "m.yaml")
        #expect(try ok.cells(profiles: profiles(), architecture: arch).map(\.id) == ["arm-seed@cma-6.12-arm64", "seed@cma-6.12"])
    }
}
