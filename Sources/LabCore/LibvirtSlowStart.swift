import Foundation

/// Why a libvirt domain took long to appear, in one line.
///
/// The usual cause on CI machines and containers: libvirtd probes QEMU's capabilities as root, where
/// `/dev/kvm` opens and QEMU reports KVM enabled, but decides whether KVM is usable *now* by checking
/// `/dev/kvm`'s permissions for its QEMU user (Debian: `libvirt-qemu`, group `kvm`). Where no udev made the
/// node `root:kvm 0660`, the two answers disagree, libvirtd discards its capability cache on every lookup
/// ("Outdated cached capabilities ... KVM was enabled when probing ..., but it is not available now") and
/// re-probes QEMU about 13 times per domain: ~50 s on a 2-core machine instead of ~0.5 s.
public enum LibvirtSlowStart {
    /// Seconds after which a domain creation counts as slow (a healthy local daemon takes well under one).
    public static let defaultThreshold: Double = 5

    /// What this machine's `/dev/kvm` looks like to libvirt, for a daemon on this machine.
    public struct KVMView: Sendable, Equatable {
        /// `ls -l` style mode of /dev/kvm (`crw-------`) and `owner:group`; nil when there is no /dev/kvm.
        public var mode: String?
        public var owner: String
        /// The user libvirt runs QEMU as, and whether it may open /dev/kvm read-write.
        public var qemuUser: String
        public var qemuUserCanOpen: Bool
        /// Whether the running libvirtd sees /dev/kvm in its own mount namespace (nil: unknown, no pid file).
        public var daemonSeesKVM: Bool?

        public init(mode: String?, owner: String, qemuUser: String, qemuUserCanOpen: Bool, daemonSeesKVM: Bool?) {
            self.mode = mode
            self.owner = owner
            self.qemuUser = qemuUser
            self.qemuUserCanOpen = qemuUserCanOpen
            self.daemonSeesKVM = daemonSeesKVM
        }
    }

    /// Whether `uri` names a daemon on this machine (no host part: `qemu:///system`, `qemu+unix:///system`).
    public static func isLocal(_ uri: String) -> Bool {
        guard let r = uri.range(of: "://") else { return true }
        let rest = uri[r.upperBound...]
        let host = rest.prefix { $0 != "/" && $0 != "?" }
        return host.isEmpty || host == "localhost" || host.hasPrefix("127.") || host == "[::1]"
    }

    /// The one-line explanation for a domain that took `seconds` to be created on `uri`. `kvm` is this
    /// machine's view, given only when the daemon is local.
    public static func notice(seconds: Double, uri: String, kvm: KVMView?) -> String {
        let took = "libvirt took \(formatSeconds(seconds)) to create the domain on \(uri)"
        guard let kvm else {
            return "\(took): a libvirtd whose QEMU user cannot use that host's /dev/kvm re-probes QEMU for every domain "
                + "(its debug log says 'Outdated cached capabilities'); see docs/libvirt.md, 'Slow domain starts'"
        }
        guard let mode = kvm.mode, kvm.daemonSeesKVM != false else {
            let why = kvm.mode == nil ? "this machine has no /dev/kvm" : "the running libvirtd does not see /dev/kvm"
            return "\(took); not the /dev/kvm re-probe (\(why)): `virt-admin daemon-log-filters \"1:qemu\"` shows "
                + "where libvirtd spends the time; see docs/libvirt.md, 'Slow domain starts'"
        }
        if kvm.qemuUserCanOpen {
            return "\(took); /dev/kvm (\(mode) \(kvm.owner)) is usable by libvirt's QEMU user \(kvm.qemuUser), so it is "
                + "not the re-probe cause: `virt-admin daemon-log-filters \"1:qemu\"` shows where libvirtd spends the time"
        }
        return "\(took): libvirtd probes QEMU as root with KVM, but its QEMU user \(kvm.qemuUser) cannot open /dev/kvm "
            + "(\(mode) \(kvm.owner)), so it re-probes QEMU for every domain; restart it with `Scripts/libvirtd start` "
            + "(which starts it without /dev/kvm) or make /dev/kvm root:kvm 0660 as udev does (docs/libvirt.md)"
    }

    /// Whether `uid`/`gids` may open a node with `mode` owned by `owner`/`group` for reading and writing.
    public static func canReadWrite(mode: UInt32, owner: UInt32, group: UInt32, uid: UInt32, gids: [UInt32]) -> Bool {
        if uid == 0 { return true }
        if uid == owner { return mode & 0o600 == 0o600 }
        if gids.contains(group) { return mode & 0o060 == 0o060 }
        return mode & 0o006 == 0o006
    }

    /// `ls -l` style permission string for a character device's mode bits.
    public static func modeString(_ mode: UInt32) -> String {
        let bits: [(UInt32, Character)] = [(0o400, "r"), (0o200, "w"), (0o100, "x"), (0o040, "r"), (0o020, "w"),
                                           (0o010, "x"), (0o004, "r"), (0o002, "w"), (0o001, "x")]
        return "c" + String(bits.map { mode & $0.0 != 0 ? $0.1 : "-" })
    }

    static func formatSeconds(_ s: Double) -> String {
        guard s.isFinite, s >= 0, s < 1e9 else { return "? s" }
        let tenths = Int((s * 10).rounded())
        return "\(tenths / 10).\(tenths % 10) s"
    }
}

extension LibvirtSlowStart {
    /// The user libvirt runs QEMU as, from qemu.conf's last uncommented `user = "..."` line (a leading `+`
    /// marks a numeric id), else Debian's build default `libvirt-qemu`.
    public static func qemuUser(qemuConf text: String?) -> String {
        var user: String?
        for raw in (text ?? "").split(separator: "\n", omittingEmptySubsequences: true) {
            let line = raw.drop { $0 == " " || $0 == "\t" }
            guard line.hasPrefix("user"), let eq = line.firstIndex(of: "=") else { continue }
            guard line[line.startIndex..<eq].trimmingCharacters(in: .whitespaces) == "user" else { continue }
            let value = line[line.index(after: eq)...].trimmingCharacters(in: .whitespaces)
            guard value.count >= 2, value.first == "\"", let close = value.dropFirst().firstIndex(of: "\"") else { continue }
            let v = value[value.index(after: value.startIndex)..<close]
            user = String(v.hasPrefix("+") ? v.dropFirst() : v[...])
        }
        return (user?.isEmpty == false ? user : nil) ?? "libvirt-qemu"
    }
}
