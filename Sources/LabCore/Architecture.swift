/// The guest's CPU architecture, and everything cmalab does differently for it: which QEMU to run, where
/// the console is, which file a kernel build produces, how the guest learns its memory map, and which agent
/// goes into the initramfs.
///
/// Only `x86_64` exists today. Adding a case (`aarch64`) makes the compiler list every place below that has
/// to answer for it; code elsewhere asks these properties instead of naming x86 strings itself.
public enum Architecture: String, Sendable, Hashable, CaseIterable, Codable, CustomStringConvertible {
    case x86_64

    /// What an image or a machine gets when it does not name an architecture.
    public static let `default`: Architecture = .x86_64

    /// The name used in `Images/*.yaml` (`arch: x86_64`), in messages, and by QEMU and libvirt.
    public var description: String { rawValue }

    /// The names `arch:` accepts, for error messages.
    public static var knownNames: String { allCases.map(\.rawValue).joined(separator: ", ") }

    // MARK: - QEMU and libvirt

    /// The QEMU system emulator for this guest (looked up on `PATH`; `CMALAB_QEMU` overrides it).
    public var qemuBinary: String {
        switch self {
        case .x86_64: return "qemu-system-x86_64"
        }
    }

    /// The Debian package that installs `qemuBinary` (for install hints).
    public var qemuPackage: String {
        switch self {
        case .x86_64: return "qemu-system-x86"
        }
    }

    /// The `arch` attribute of a libvirt domain's `<os><type>`.
    public var libvirtArch: String {
        switch self {
        case .x86_64: return "x86_64"
        }
    }

    // MARK: - Console

    /// The guest's serial console device: the first UART, which QEMU connects to the lab's console pipe.
    public var consoleDevice: String {
        switch self {
        case .x86_64: return "ttyS0"
        }
    }

    /// The kernel parameters that put the console on `consoleDevice`, in the order they are added.
    public var consoleParameters: [(key: String, value: String?)] {
        switch self {
        case .x86_64: return [("console", consoleDevice)]
        }
    }

    /// The second UART, where the agent talks when the kernel has no virtio console (`AgentTransport.uart`).
    /// The guest agent opens it as `/dev/<agentUARTDevice>`.
    public var agentUARTDevice: String {
        switch self {
        case .x86_64: return "ttyS1"
        }
    }

    // MARK: - Kernel builds

    /// Where `make <kernelMakeTarget>` leaves the bootable image, relative to the build (`O=`) directory.
    public var kernelImagePath: String {
        switch self {
        case .x86_64: return "arch/x86/boot/bzImage"
        }
    }

    /// The make target that builds the bootable image.
    public var kernelMakeTarget: String {
        switch self {
        case .x86_64: return "bzImage"
        }
    }

    /// The file name of the bootable image (`bzImage`); the kernel cache stores it under this name.
    public var kernelImageName: String { Path.basename(kernelImagePath) }

    /// The make targets an image may start its .config from (`build.base`).
    public var baseConfigs: [String] {
        switch self {
        case .x86_64: return ["tinyconfig", "allnoconfig", "defconfig", "x86_64_defconfig", "kvm_guest.config"]
        }
    }

    // MARK: - Memory map

    /// How the guest learns which physical addresses are RAM, on a given QEMU machine type.
    public func memoryMapSource(for machine: MachineType) -> MemoryMapSource {
        switch self {
        case .x86_64: return .e820(machine)
        }
    }

    // MARK: - Agent

    /// The static agent binary for this guest: `$CMALAB_AGENT` if set, else where `make agent` builds it
    /// under the checkout `home`.
    public func agentBinary(home: String, environment: [String: String]) -> String {
        switch self {
        case .x86_64: return environment["CMALAB_AGENT"] ?? home + "/.build-agent/release/cmalab-agent"
        }
    }
}

/// Where a guest's memory map comes from.
public enum MemoryMapSource: Equatable, Sendable {
    /// The firmware's e820 table (`BIOS-e820:` lines), which on x86 depends on QEMU's machine type
    /// (`GuestMemoryMap` models it).
    case e820(MachineType)
}
