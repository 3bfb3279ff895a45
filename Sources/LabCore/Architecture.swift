/// The guest's CPU architecture, and everything cmalab does differently for it: which QEMU to run, where
/// the console is, which file a kernel build produces, how the guest learns its memory map, and which agent
/// goes into the initramfs.
///
/// `x86_64` (QEMU `pc`/`q35`, SeaBIOS and e820) and `arm64` (QEMU `virt`, a device tree, RAM from 0x40000000).
/// Adding a case makes the compiler list every place below that has to answer for it; code elsewhere asks these
/// properties instead of naming an architecture's strings itself.
public enum Architecture: String, Sendable, Hashable, CaseIterable, Codable, CustomStringConvertible {
    case x86_64
    case arm64

    /// What an image or a machine gets when it does not name an architecture.
    public static let `default`: Architecture = .x86_64

    /// The name used in `Images/*.yaml` (`arch: x86_64`), in messages, and by QEMU and libvirt.
    public var description: String { rawValue }

    /// The names `arch:` accepts, for error messages.
    public static var knownNames: String { allCases.map(\.rawValue).joined(separator: ", ") }

    /// The architecture an `arch:` value names: its own name, or the other common spelling (`aarch64`, `amd64`).
    public static func named(_ s: String) -> Architecture? {
        switch s {
        case "aarch64": return .arm64
        case "amd64", "x86-64": return .x86_64
        default: return Architecture(rawValue: s)
        }
    }

    /// The image a profile runs on when it names none.
    public var defaultImage: String {
        switch self {
        case .x86_64: return "cma-6.12"
        case .arm64: return "cma-6.12-arm64"
        }
    }

    /// The QEMU machine types this architecture boots on; the first is the default.
    public var machineTypes: [MachineType] {
        switch self {
        case .x86_64: return [.pc, .q35]
        case .arm64: return [.virt]
        }
    }

    /// The `-cpu` model when a profile names none: nil keeps QEMU's default (x86's qemu64). `virt` has no usable
    /// default CPU for a 64-bit kernel; cortex-a53 is the one that booted fastest under TCG
    /// (docs/arm64-groundwork.md: 0.93 s against 1.05 s for `max`).
    public var defaultCPU: String? {
        switch self {
        case .x86_64: return nil
        case .arm64: return "cortex-a53"
        }
    }

    /// The machine type a guest gets when its profile names none.
    public var defaultMachineType: MachineType { machineTypes[0] }

    // MARK: - QEMU and libvirt

    /// The QEMU system emulator for this guest (looked up on `PATH`; `CMALAB_QEMU` overrides it).
    public var qemuBinary: String {
        switch self {
        case .x86_64: return "qemu-system-x86_64"
        case .arm64: return "qemu-system-aarch64"
        }
    }

    /// The Debian package that installs `qemuBinary` (for install hints).
    public var qemuPackage: String {
        switch self {
        case .x86_64: return "qemu-system-x86"
        case .arm64: return "qemu-system-arm"
        }
    }

    /// The `arch` attribute of a libvirt domain's `<os><type>`.
    public var libvirtArch: String {
        switch self {
        case .x86_64: return "x86_64"
        case .arm64: return "aarch64"
        }
    }

    // MARK: - Console

    /// The guest's serial console device: the first UART, which QEMU connects to the lab's console pipe.
    public var consoleDevice: String {
        switch self {
        case .x86_64: return "ttyS0"
        // The `virt` machine's one PL011.
        case .arm64: return "ttyAMA0"
        }
    }

    /// The kernel parameters that put the console on `consoleDevice`, in the order they are added.
    public var consoleParameters: [(key: String, value: String?)] {
        switch self {
        case .x86_64: return [("console", consoleDevice)]
        // `earlycon` (the PL011 that /chosen/stdout-path names) prints from the first line: the PL011 console driver
        // registers only at device_initcall, after CMA activates its areas, so a panic there (a fixed area outside
        // RAM) would otherwise reach the console as nothing at all.
        case .arm64: return [("console", consoleDevice), ("earlycon", nil)]
        }
    }

    /// Kernel parameters that only make a lab guest boot faster; none of them moves a placement (issue 20,
    /// README "How fast it is").
    /// - `pty.legacy_count=0`: LEGACY_PTYS (on in tinyconfig and in Debian's kernels) registers 256 BSD pty
    ///   pairs, 512 devices: ~0.2 s of `pty_init` under TCG, for devices neither the agent nor busybox opens.
    /// - x86 `reboot=t`: the guest has no PS/2 controller (`machineProperties`), so after a panic the kernel's
    ///   keyboard-controller reset would spin ~3 s before falling back; a triple fault resets QEMU, which
    ///   exits at once under -no-reboot.
    public var fastBootParameters: [(key: String, value: String?)] {
        switch self {
        case .x86_64: return [("pty.legacy_count", "0"), ("reboot", "t")]
        case .arm64: return [("pty.legacy_count", "0")]
        }
    }

    /// Properties added to `-machine`. x86: `i8042=off` drops the PS/2 controller, whose keyboard and mouse
    /// probes cost the guest ~0.3 s of a boot under TCG (the mouse probe runs while the agent works). SeaBIOS's
    /// e820 map stays the same; only the DSDT, inside its reserved range, gets shorter.
    public var machineProperties: String {
        switch self {
        case .x86_64: return ",i8042=off"
        case .arm64: return ""
        }
    }

    /// The second UART, where the agent talks when the kernel has no virtio console (`AgentTransport.uart`).
    /// The guest agent opens it as `/dev/<agentUARTDevice>`. Nil when the machine has no second UART (`virt` has one
    /// PL011), so the agent needs virtio there.
    public var agentUARTDevice: String? {
        switch self {
        case .x86_64: return "ttyS1"
        case .arm64: return nil
        }
    }

    // MARK: - Kernel builds

    /// Where `make <kernelMakeTarget>` leaves the bootable image, relative to the build (`O=`) directory.
    public var kernelImagePath: String {
        switch self {
        case .x86_64: return "arch/x86/boot/bzImage"
        // Uncompressed: QEMU boots an arm64 `Image` directly, and TCG would spend time inflating a compressed one.
        case .arm64: return "arch/arm64/boot/Image"
        }
    }

    /// The make target that builds the bootable image.
    public var kernelMakeTarget: String {
        switch self {
        case .x86_64: return "bzImage"
        case .arm64: return "Image"
        }
    }

    /// The file name of the bootable image (`bzImage`); the kernel cache stores it under this name.
    public var kernelImageName: String { Path.basename(kernelImagePath) }

    /// The make targets an image may start its .config from (`build.base`).
    public var baseConfigs: [String] {
        switch self {
        case .x86_64: return ["tinyconfig", "allnoconfig", "defconfig", "x86_64_defconfig", "kvm_guest.config"]
        case .arm64: return ["tinyconfig", "allnoconfig", "defconfig"]
        }
    }

    /// The make variables that select this architecture and its compiler (none for the host's own x86_64).
    public var makeVariables: [String] {
        switch self {
        case .x86_64: return []
        case .arm64: return ["ARCH=arm64", "CROSS_COMPILE=\(crossPrefix)"]
        }
    }

    /// The prefix of the cross tools (`aarch64-linux-gnu-`), empty when the host's own compiler builds it.
    public var crossPrefix: String {
        switch self {
        case .x86_64: return ""
        case .arm64: return "aarch64-linux-gnu-"
        }
    }

    /// The C compiler kernel builds run (part of every build's key), and the Debian package that has it.
    public var compiler: (binary: String, package: String) {
        switch self {
        case .x86_64: return ("gcc", "gcc")
        case .arm64: return ("aarch64-linux-gnu-gcc", "gcc-aarch64-linux-gnu")
        }
    }

    // MARK: - Memory map

    /// How the guest learns which physical addresses are RAM, on a given QEMU machine type.
    public func memoryMapSource(for machine: MachineType) -> MemoryMapSource {
        switch self {
        case .x86_64: return .e820(machine)
        case .arm64: return .deviceTree(machine)
        }
    }

    // MARK: - Agent

    /// Debian's package with a static busybox for this guest, when it is not the host's own (`/bin/busybox` of
    /// busybox-static): the initramfs needs busybox built for the guest (InitramfsStore fetches it).
    public var foreignBusyboxPackage: String? {
        switch self {
        case .x86_64: return nil
        case .arm64: return "busybox-static:arm64"
        }
    }

    /// The static agent binary for this guest: `$CMALAB_AGENT` if set, else where `make agent` builds it
    /// under the checkout `home`.
    public func agentBinary(home: String, environment: [String: String]) -> String {
        switch self {
        case .x86_64: return environment["CMALAB_AGENT"] ?? home + "/.build-agent/release/cmalab-agent"
        case .arm64: return environment["CMALAB_AGENT_ARM64"] ?? home + "/.build-agent/arm64/cmalab-agent"
        }
    }
}

/// Where a guest's memory map comes from.
public enum MemoryMapSource: Equatable, Sendable {
    /// The firmware's e820 table (`BIOS-e820:` lines), which on x86 depends on QEMU's machine type
    /// (`GuestMemoryMap` models it).
    case e820(MachineType)
    /// The `memory` nodes of the device tree QEMU builds for the machine (`virt`: RAM from 0x40000000).
    case deviceTree(MachineType)
}
