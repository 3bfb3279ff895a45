import Testing
@testable import LabCore

@Suite struct QEMUPlanTests {
    func plan(_ memory: ByteSize = .gib(4)) -> QEMUPlan {
        var p = QEMUPlan(machine: MachineSpec(memory: memory, cpus: 2, type: .pc), kernel: "/k/bzImage", initrd: "/k/initrd.cpio",
                         commandLine: "cma=1G@1-2G")
        p.agentSocket = "/tmp/x/agent.sock"
        return p
    }

    /// The value following `flag`, for each occurrence.
    func values(_ argv: [String], _ flag: String) -> [String] {
        argv.indices.filter { argv[$0] == flag && $0 + 1 < argv.count }.map { argv[$0 + 1] }
    }

    @Test func seedBootArgv() {
        let a = plan().arguments()
        #expect(a.first == "qemu-system-x86_64")
        #expect(a.contains("-no-reboot") && a.contains("-nodefaults"))
        #expect(values(a, "-machine") == ["pc,accel=tcg,i8042=off", "memory-backend=ram0"])
        #expect(values(a, "-m") == ["4096M"])
        #expect(values(a, "-smp") == ["2"])
        #expect(values(a, "-object") == ["memory-backend-ram,id=ram0,size=4096M,reserve=off"])
        #expect(values(a, "-kernel") == ["/k/bzImage"])
        #expect(values(a, "-initrd") == ["/k/initrd.cpio"])
        #expect(values(a, "-append") == ["console=ttyS0 panic=-1 pty.legacy_count=0 reboot=t pci=noacpi cma=1G@1-2G"])
        #expect(values(a, "-serial") == ["chardev:console"])
        #expect(values(a, "-device") == ["virtio-serial-pci,id=vser0", "virtserialport,bus=vser0.0,chardev=agent,name=org.cmalab.agent.0"])
        #expect(values(a, "-chardev").contains("socket,id=agent,path=/tmp/x/agent.sock,server=on,wait=off"))
    }

    @Test func uartFallbackIsASecondSerialPortAndTellsTheAgent() {
        var p = plan()
        p.agentTransport = .uart
        let a = p.arguments()
        #expect(values(a, "-serial") == ["chardev:console", "chardev:agent"])
        #expect(!a.contains { $0.hasPrefix("virtio-serial") })
        #expect(p.effectiveCommandLine.value(of: "cmalab.channel") == "uart")
    }

    @Test func pcGuestsRoutePCIInterruptsWithoutACPIUnlessTheUserSaysOtherwise() {
        var p = plan()
        #expect(p.effectiveCommandLine.value(of: "pci") == "noacpi")
        p.machine.type = .q35
        #expect(p.effectiveCommandLine.value(of: "pci") == nil)
        p.machine.type = .pc
        p.commandLine = "pci=nomsi cma=64M"
        #expect(p.effectiveCommandLine.description == "console=ttyS0 panic=-1 pty.legacy_count=0 reboot=t pci=nomsi cma=64M")
        // Also without the agent (an --init script, the benchmark's bare boot): the same kernel command line.
        p.agentSocket = nil
        p.commandLine = "cma=64M"
        #expect(p.effectiveCommandLine.description == "console=ttyS0 panic=-1 pty.legacy_count=0 reboot=t pci=noacpi cma=64M")
    }

    @Test func userParametersOverrideTheLabDefaults() {
        var p = plan()
        p.commandLine = "console=ttyS1 panic=10 cma=64M reboot=a pty.legacy_count=4"
        #expect(p.effectiveCommandLine.description == "pci=noacpi console=ttyS1 panic=10 cma=64M reboot=a pty.legacy_count=4")
    }

    @Test func hugeGuestsAreBackedOnTouch() {
        let a = plan(.gib(512)).arguments()
        #expect(values(a, "-object") == ["memory-backend-ram,id=ram0,size=524288M,reserve=off"])
    }

    @Test func numaNodesGetOneBackendEach() throws {
        var p = plan(.gib(8))
        p.machine.numaNodes = [.gib(4), .gib(4)]
        try p.validate()
        let a = p.arguments()
        #expect(values(a, "-object") == ["memory-backend-ram,id=ram0,size=4096M,reserve=off", "memory-backend-ram,id=ram1,size=4096M,reserve=off"])
        #expect(values(a, "-numa") == ["node,nodeid=0,memdev=ram0,cpus=0", "node,nodeid=1,memdev=ram1,cpus=1"])
        #expect(values(a, "-machine") == ["pc,accel=tcg,i8042=off"])
    }

    @Test func validationNamesTheProblem() {
        var p = plan(.gib(8))
        p.machine.numaNodes = [.gib(4), .gib(2)]
        #expect(throws: PlanError("NUMA node sizes add up to 6G but memory is 8G")) { try p.validate() }
        p = plan(.mib(64))
        #expect(throws: PlanError.self) { try p.validate() }
        p = plan()
        p.machine.cpus = 0
        #expect(throws: PlanError.self) { try p.validate() }
    }

    @Test func runNameIsTheGuestName() {
        var p = plan()
        p.name = "20261125-081500-seed"
        #expect(Array(p.arguments()[1...2]) == ["-name", "20261125-081500-seed"])
    }

    @Test func kvmAndNoAgent() {
        var p = plan()
        p.accelerator = .kvm
        p.agentSocket = nil
        let a = p.arguments()
        #expect(values(a, "-machine").first == "pc,accel=kvm,i8042=off")
        #expect(!a.contains("-device"))
    }

    @Test func shellQuoting() {
        #expect(shellQuote("cma=1G@1-2G") == "cma=1G@1-2G")
        #expect(shellQuote("a b") == "'a b'")
        #expect(shellQuote("it's") == #"'it'\''s'"#)
        #expect(shellQuote("") == "''")
    }
}
