import Glibc
import LabProtocol

/// Finds and opens the guest end of the host channel.
public enum AgentChannel {
    /// The virtio-serial port named `AgentProtocol.virtioPortName`, waiting up to
    /// `virtioWaitMilliseconds` for it to appear (ports are probed asynchronously),
    /// else the second UART in raw mode. `cmalab.channel=uart` on the kernel command
    /// line skips virtio. Returns nil if neither can be opened.
    public static func find(
        paths: AgentPaths = AgentPaths(), virtioWaitMilliseconds: Int = 3000
    ) -> (fd: Int32, description: String)? {
        let cmdline = (try? readText(joinPath(paths.proc, "cmdline"))) ?? ""
        let forceUART = cmdline.split(whereSeparator: { $0.isWhitespace }).contains("cmalab.channel=uart")
        if !forceUART, let port = openVirtioPort(paths: paths, waitMilliseconds: virtioWaitMilliseconds) {
            return port
        }
        let uart = joinPath(paths.dev, "ttyS1")
        guard let fd = openRawUART(uart) else { return nil }
        return (fd, "uart:" + uart)
    }

    private static func openVirtioPort(paths: AgentPaths, waitMilliseconds: Int) -> (fd: Int32, description: String)? {
        let ports = joinPath(paths.sys, "class/virtio-ports")
        // No class directory: the kernel has no virtio console driver, nothing will appear.
        guard isDirectory(ports) else { return nil }
        let deadline = monotonicNanoseconds() + UInt64(max(0, waitMilliseconds)) * 1_000_000
        while true {
            for entry in (try? listDirectory(ports)) ?? [] {
                let name = (try? readText(joinPath(joinPath(ports, entry.name), "name")))?.trimmed
                guard name == AgentProtocol.virtioPortName else { continue }
                // The /dev node may lag behind sysfs; retry until the deadline.
                let device = joinPath(paths.dev, entry.name)
                let fd = open(device, O_RDWR | O_NOCTTY | O_CLOEXEC)
                if fd >= 0 { return (fd, "virtio:" + device) }
            }
            if monotonicNanoseconds() >= deadline { return nil }
            // The port shows up a few ms after the driver binds; a listing costs well under 1 ms.
            sleepMilliseconds(5)
        }
    }

    /// Opens a serial port as a raw 8-bit byte pipe: 115200 baud, no echo, no line
    /// editing or flow control, reads return as soon as one byte is available.
    static func openRawUART(_ path: String) -> Int32? {
        let fd = open(path, O_RDWR | O_NOCTTY | O_CLOEXEC)
        guard fd >= 0 else { return nil }
        var settings = termios()
        guard tcgetattr(fd, &settings) == 0 else {
            close(fd)
            return nil
        }
        cfmakeraw(&settings)
        cfsetispeed(&settings, speed_t(B115200))
        cfsetospeed(&settings, speed_t(B115200))
        settings.c_cflag |= tcflag_t(CLOCAL | CREAD)
        withUnsafeMutableBytes(of: &settings.c_cc) { controlCharacters in
            controlCharacters[Int(VMIN)] = 1
            controlCharacters[Int(VTIME)] = 0
        }
        guard tcsetattr(fd, TCSANOW, &settings) == 0 else {
            close(fd)
            return nil
        }
        return fd
    }
}
