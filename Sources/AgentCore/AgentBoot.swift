import Glibc

/// What the agent does as PID 1 of the guest's initramfs.
public enum AgentBoot {
    /// Mounts the kernel filesystems the agent reads, makes sure descriptors 0-2 are
    /// open and sets PATH. Already-mounted filesystems are fine; other problems (a
    /// kernel without debugfs, say) are returned as messages, not treated as fatal.
    public static func setUpPID1() -> [String] {
        let mounts: [(source: String, target: String, type: String, flags: UInt, options: String?)] = [
            ("proc", "/proc", "proc", UInt(MS_NOSUID | MS_NODEV | MS_NOEXEC), nil),
            ("sysfs", "/sys", "sysfs", UInt(MS_NOSUID | MS_NODEV | MS_NOEXEC), nil),
            ("devtmpfs", "/dev", "devtmpfs", UInt(MS_NOSUID), "mode=0755"),
            ("debugfs", "/sys/kernel/debug", "debugfs", UInt(MS_NOSUID | MS_NODEV | MS_NOEXEC), nil),
            ("tmpfs", "/tmp", "tmpfs", UInt(MS_NOSUID | MS_NODEV), "mode=1777"),
            ("tmpfs", "/run", "tmpfs", UInt(MS_NOSUID | MS_NODEV), "mode=0755"),
        ]
        var problems = [String]()
        for entry in mounts {
            if mkdir(entry.target, 0o755) != 0 && errno != EEXIST {
                problems.append(SystemError("mkdir \(entry.target)").description)
                continue
            }
            let rc = mount(entry.source, entry.target, entry.type, entry.flags, entry.options)
            if rc != 0 && errno != EBUSY {
                problems.append(SystemError("mount \(entry.type) on \(entry.target)").description)
            }
        }
        // Without a /dev/console in the initramfs the kernel starts init with 0-2
        // closed; fill them so pipes created later never land there.
        while true {
            let fd = open("/dev/null", O_RDWR)
            if fd < 0 { break }
            if fd > 2 {
                close(fd)
                break
            }
        }
        setenv("PATH", ProcessRunner.defaultPath, 1)
        return problems
    }

    /// Nanoseconds as seconds with three decimals ("1.562"), without Foundation's formatting.
    public static func seconds(_ nanoseconds: UInt64) -> String {
        let ms = nanoseconds / 1_000_000
        let fraction = String(ms % 1000)
        return "\(ms / 1000)." + String(repeating: "0", count: 3 - fraction.count) + fraction
    }

    /// Writes one line to /dev/console (stderr if that cannot be opened).
    public static func console(_ line: String) {
        let bytes = Array((line + "\n").utf8)
        let fd = open("/dev/console", O_WRONLY | O_NOCTTY | O_CLOEXEC)
        try? writeAll(fd >= 0 ? fd : 2, bytes, "console")
        if fd >= 0 { close(fd) }
    }

    /// Reports `message` on the console and powers the guest off. Outside PID 1
    /// (running on a development host) it just exits with status 1.
    public static func fatal(_ message: String) -> Never {
        console("cmalab-agent: fatal: \(message)")
        perform(.poweroff, exitStatus: 1)
    }

    /// Syncs and powers off or reboots the guest; outside PID 1 exits instead.
    public static func perform(_ action: PowerAction, exitStatus: Int32 = 0) -> Never {
        sync()
        if getpid() == 1 {
            _ = glibcReboot(action == .poweroff ? RB_POWER_OFF : RB_AUTOBOOT)
            // Only reached if reboot(2) failed; PID 1 exiting panics the kernel,
            // which at least ends the run.
        }
        exit(exitStatus)
    }
}
