/// The libvirt domain XML of one boot: a pure function of the QEMU plan, like `QEMUPlan.arguments()`.
///
/// The domain is transient (created, never defined), TCG (`type='qemu'`), boots the kernel directly, has
/// ACPI so the agent's poweroff ends it, destroys itself on poweroff, reboot and crash (QEMU's
/// `-no-reboot`), has its console on a pty serial port (read with virDomainOpenConsole) and the agent on a
/// virtio-serial `<channel>` named `org.cmalab.agent.0` (read with virDomainOpenChannel). Its
/// `<metadata>` names the cmalab process that owns it, so a later cmalab can destroy a domain whose owner
/// was killed.
public struct LibvirtDomainXML: Sendable, Equatable {
    /// The metadata namespace cmalab writes into every domain it creates.
    public static let namespace = "https://cmalab.dev/xmlns/libvirt-domain/1"
    /// Every cmalab domain's name starts with this.
    public static let namePrefix = "cmalab-"
    /// The agent's virtio-serial port name (the guest looks for it in /sys/class/virtio-ports).
    public static let agentChannel = "org.cmalab.agent.0"

    public var name: String
    public var machine: MachineSpec
    /// Paths on the libvirt host (storage volumes there, for a remote host).
    public var kernel: String
    public var initrd: String?
    public var commandLine: String
    /// Whether the agent channel is present (nil: boot without the agent).
    public var agent: Bool
    /// Owner process for the orphan cleanup.
    public var ownerHost: String
    public var ownerPID: Int32
    /// The emulator binary on the libvirt host; nil lets libvirt pick its default.
    public var emulator: String?

    public init(name: String, machine: MachineSpec, kernel: String, initrd: String?, commandLine: String, agent: Bool,
                ownerHost: String, ownerPID: Int32, emulator: String? = nil) {
        self.name = name; self.machine = machine; self.kernel = kernel; self.initrd = initrd; self.commandLine = commandLine
        self.agent = agent; self.ownerHost = ownerHost; self.ownerPID = ownerPID; self.emulator = emulator
    }

    /// A domain name for a run: the prefix plus the run directory's name, cut to what libvirt and QEMU take.
    public static func domainName(forRun run: String) -> String {
        let safe = run.map { $0.isLetter || $0.isNumber || $0 == "-" || $0 == "_" || $0 == "." ? $0 : "_" }
        return String((namePrefix + String(safe)).prefix(100))
    }

    /// The NUMA cells: node i gets cpus i*k...(i+1)*k-1 (the last node gets the rest), as in QEMUPlan.
    public var numaCells: [(id: Int, cpus: String?, mebibytes: UInt64)] {
        let n = machine.numaNodes.count
        guard n > 0 else { return [] }
        let perNode = max(1, machine.cpus / n)
        return machine.numaNodes.enumerated().map { i, size in
            let first = i * perNode
            guard first < machine.cpus else { return (i, nil, size.mebibytes) }
            let last = i == n - 1 ? machine.cpus - 1 : min(machine.cpus - 1, first + perNode - 1)
            return (i, first == last ? "\(first)" : "\(first)-\(last)", size.mebibytes)
        }
    }

    public func render() -> String {
        var x: [String] = []
        x.append("<domain type='qemu'>")
        x.append("  <name>\(Self.escape(name))</name>")
        x.append("  <metadata>")
        x.append("    <cmalab:owner xmlns:cmalab='\(Self.namespace)' host='\(Self.escape(ownerHost))' pid='\(ownerPID)'/>")
        x.append("  </metadata>")
        x.append("  <memory unit='MiB'>\(machine.memory.mebibytes)</memory>")
        // Guest RAM is only backed when touched, as with the QEMU backend (which uses reserve=off, an
        // option libvirt cannot set): a memfd is created with VM_NORESERVE, so a guest larger than the host
        // starts, and nothing is preallocated.
        x.append("  <memoryBacking>")
        x.append("    <source type='memfd'/>")
        x.append("    <access mode='shared'/>")
        x.append("    <allocation mode='ondemand'/>")
        x.append("  </memoryBacking>")
        x.append("  <vcpu placement='static'>\(machine.cpus)</vcpu>")
        x.append("  <os>")
        x.append("    <type arch='\(machine.architecture.libvirtArch)' machine='\(machine.type.rawValue)'>hvm</type>")
        x.append("    <kernel>\(Self.escape(kernel))</kernel>")
        if let initrd { x.append("    <initrd>\(Self.escape(initrd))</initrd>") }
        x.append("    <cmdline>\(Self.escape(commandLine))</cmdline>")
        x.append("  </os>")
        x.append("  <features>")
        x.append("    <acpi/>")
        x.append("  </features>")
        let cells = numaCells
        if machine.cpuModel != nil || !cells.isEmpty {
            let cpu = machine.cpuModel.map(Self.cpu(fromQEMU:))
            switch cpu?.model {
            case nil: x.append("  <cpu>")
            case "max"?: x.append("  <cpu mode='maximum' check='none'>")
            case "host"?: x.append("  <cpu mode='host-passthrough' check='none'>")
            case let model?:
                x.append("  <cpu mode='custom' match='exact' check='none'>")
                x.append("    <model fallback='forbid'>\(Self.escape(model))</model>")
            }
            for (name, on) in cpu?.features ?? [] {
                x.append("    <feature policy='\(on ? "require" : "disable")' name='\(Self.escape(name))'/>")
            }
            if !cells.isEmpty {
                x.append("    <numa>")
                for c in cells {
                    let cpus = c.cpus.map { " cpus='\($0)'" } ?? ""
                    x.append("      <cell id='\(c.id)'\(cpus) memory='\(c.mebibytes)' unit='MiB'/>")
                }
                x.append("    </numa>")
            }
            x.append("  </cpu>")
        }
        x.append("  <clock offset='utc'/>")
        x.append("  <on_poweroff>destroy</on_poweroff>")
        x.append("  <on_reboot>destroy</on_reboot>")
        x.append("  <on_crash>destroy</on_crash>")
        x.append("  <devices>")
        if let emulator { x.append("    <emulator>\(Self.escape(emulator))</emulator>") }
        x.append("    <serial type='pty'>")
        x.append("      <target port='0'/>")
        x.append("    </serial>")
        x.append("    <console type='pty'>")
        x.append("      <target type='serial' port='0'/>")
        x.append("    </console>")
        if agent {
            // A unix channel without a path: libvirt picks one on its host; cmalab reaches it as a stream.
            x.append("    <channel type='unix'>")
            x.append("      <source mode='bind'/>")
            x.append("      <target type='virtio' name='\(Self.agentChannel)'/>")
            x.append("    </channel>")
        }
        x.append("    <controller type='usb' model='none'/>")
        x.append("    <memballoon model='none'/>")
        x.append("  </devices>")
        x.append("</domain>")
        return x.joined(separator: "\n") + "\n"
    }

    /// A QEMU `-cpu` value (`max`, `host`, `Skylake-Server`, `qemu64,+pdpe1gb,-x2apic`) as a libvirt model
    /// (`max` and `host` become the `maximum` and `host-passthrough` modes) and features.
    public static func cpu(fromQEMU value: String) -> (model: String, features: [(String, Bool)]) {
        let parts = value.split(separator: ",").map(String.init)
        var features: [(String, Bool)] = []
        for p in parts.dropFirst() {
            if p.hasPrefix("+") { features.append((String(p.dropFirst()), true)) }
            else if p.hasPrefix("-") { features.append((String(p.dropFirst()), false)) }
            else if p.hasSuffix("=on") { features.append((String(p.dropLast(3)), true)) }
            else if p.hasSuffix("=off") { features.append((String(p.dropLast(4)), false)) }
        }
        return (parts.first ?? value, features)
    }

    /// Escapes text for XML element content and single-quoted attributes.
    public static func escape(_ s: String) -> String {
        var out = ""
        for ch in s {
            switch ch {
            case "&": out += "&amp;"
            case "<": out += "&lt;"
            case ">": out += "&gt;"
            case "'": out += "&apos;"
            case "\"": out += "&quot;"
            default: out.append(ch)
            }
        }
        return out
    }

    /// The owner recorded in a domain's XML, or in what virDomainGetMetadata returns for the cmalab
    /// namespace (`<owner host=".." pid=".."/>`, without the prefix); nil if there is none.
    public static func owner(inDomainXML xml: String) -> (host: String, pid: Int32)? {
        let tag = try! Regex(#"<(?:[A-Za-z0-9_.-]+:)?owner\s([^>]*)>"#)
        guard let m = xml.firstMatch(of: tag), let attrs = m.output[1].substring else { return nil }
        func attr(_ name: String) -> String? {
            let a = try! Regex(#"(?:^|\s)"# + name + #"\s*=\s*(?:"([^"]*)"|'([^']*)')"#)
            guard let v = attrs.firstMatch(of: a) else { return nil }
            return (v.output[1].substring ?? v.output[2].substring).map(String.init)
        }
        guard let host = attr("host"), let pidText = attr("pid"), let pid = Int32(pidText) else { return nil }
        return (host, pid)
    }
}
