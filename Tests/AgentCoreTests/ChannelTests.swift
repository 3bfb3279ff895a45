import Glibc
import Testing
@testable import AgentCore
import LabProtocol

@Suite struct ChannelTests {
    @Test func findsTheNamedVirtioPort() throws {
        let fixture = try Fixture()
        try fixture.write("sys/class/virtio-ports/vport0p0/name", "org.qemu.guest_agent.0\n")
        try fixture.write("sys/class/virtio-ports/vport1p1/name", AgentProtocol.virtioPortName + "\n")
        try fixture.write("dev/vport0p0", "")
        try fixture.write("dev/vport1p1", "")
        let channel = try #require(AgentChannel.find(paths: fixture.paths, virtioWaitMilliseconds: 0))
        close(channel.fd)
        #expect(channel.description == "virtio:" + fixture.path("dev/vport1p1"))
    }

    @Test func waitsForThePortThenFallsBack() throws {
        let fixture = try Fixture()
        try fixture.makeDirectory("sys/class/virtio-ports")
        let start = monotonicNanoseconds()
        #expect(AgentChannel.find(paths: fixture.paths, virtioWaitMilliseconds: 200) == nil)
        #expect(monotonicNanoseconds() - start >= 200_000_000)
    }

    @Test func fallsBackToARawUART() throws {
        let fixture = try Fixture()
        try fixture.write("sys/class/virtio-ports/vport1p1/name", AgentProtocol.virtioPortName + "\n")
        try fixture.write("dev/vport1p1", "")
        try fixture.write("proc/cmdline", "console=ttyS0 cmalab.channel=uart quiet\n")
        // A pseudo-terminal stands in for the serial port.
        var master: Int32 = -1
        var slaveFD: Int32 = -1
        var name = [CChar](repeating: 0, count: 256)
        try #require(openpty(&master, &slaveFD, &name, nil, nil) == 0)
        defer {
            close(master)
            close(slaveFD)
        }
        let slave = name.withUnsafeBufferPointer { String(cString: $0.baseAddress!) }
        try fixture.makeDirectory("dev")
        #expect(symlink(slave, fixture.path("dev/ttyS1")) == 0)

        let channel = try #require(AgentChannel.find(paths: fixture.paths, virtioWaitMilliseconds: 0))
        defer { close(channel.fd) }
        #expect(channel.description == "uart:" + fixture.path("dev/ttyS1"))
        var settings = termios()
        #expect(tcgetattr(channel.fd, &settings) == 0)
        #expect(settings.c_lflag & tcflag_t(ICANON | ECHO) == 0)
        #expect(cfgetispeed(&settings) == speed_t(B115200))
        #expect(settings.c_cflag & tcflag_t(CLOCAL | CREAD) == tcflag_t(CLOCAL | CREAD))
        let vmin = withUnsafeBytes(of: settings.c_cc) { $0[Int(VMIN)] }
        #expect(vmin == 1)
    }

    @Test func nothingToOpen() throws {
        let fixture = try Fixture()
        #expect(AgentChannel.find(paths: fixture.paths, virtioWaitMilliseconds: 0) == nil)
        // A regular file is not a terminal.
        try fixture.write("dev/ttyS1", "")
        #expect(AgentChannel.find(paths: fixture.paths, virtioWaitMilliseconds: 0) == nil)
    }

    @Test func countersParser() {
        #expect(AgentHandler.parseCounters("nr_free_pages 5\n\nbad\nx y\nnr_cma 7\n") == [
            Counter(name: "nr_free_pages", value: 5), Counter(name: "nr_cma", value: 7),
        ])
    }
}

@Suite struct ReadyLineTests {
    @Test func uptimeIsPrintedWithMilliseconds() {
        #expect(AgentBoot.seconds(1_562_999_999) == "1.562")
        #expect(AgentBoot.seconds(0) == "0.000")
        #expect(AgentBoot.seconds(12_005_000_000) == "12.005")
    }
}
