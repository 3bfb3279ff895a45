import Testing
@testable import LabCore

/// The one-line explanation of a slow libvirt domain start, from the states measured on real machines.
struct LibvirtSlowStartTests {
    /// This machine before the fix: /dev/kvm 0600 root:root (no udev), libvirtd started without a namespace.
    static let unusable = LibvirtSlowStart.KVMView(mode: "crw-------", owner: "root:root", qemuUser: "libvirt-qemu",
                                                  qemuUserCanOpen: false, daemonSeesKVM: true)

    @Test func aKVMNodeTheQEMUUserCannotOpenIsNamedWithTheFix() {
        let line = LibvirtSlowStart.notice(seconds: 52.44, uri: "qemu:///system", kvm: Self.unusable)
        #expect(line.hasPrefix("libvirt took 52.4 s to create the domain on qemu:///system: "))
        #expect(line.contains("libvirt-qemu cannot open /dev/kvm (crw------- root:root)"))
        #expect(line.contains("re-probes QEMU for every domain"))
        #expect(line.contains("`Scripts/libvirtd start`"))
        #expect(!line.contains("\n"))
    }

    @Test func aDaemonThatDoesNotSeeKVMIsNotBlamedOnIt() {
        var v = Self.unusable
        v.daemonSeesKVM = false
        let hidden = LibvirtSlowStart.notice(seconds: 6, uri: "qemu:///system", kvm: v)
        #expect(hidden.contains("not the /dev/kvm re-probe (the running libvirtd does not see /dev/kvm)"))
        v.mode = nil
        v.daemonSeesKVM = nil
        #expect(LibvirtSlowStart.notice(seconds: 6, uri: "qemu:///system", kvm: v).contains("this machine has no /dev/kvm"))
        let usable = LibvirtSlowStart.KVMView(mode: "crw-rw----", owner: "root:kvm", qemuUser: "libvirt-qemu",
                                              qemuUserCanOpen: true, daemonSeesKVM: true)
        let line = LibvirtSlowStart.notice(seconds: 7.25, uri: "qemu:///system", kvm: usable)
        #expect(line.contains("7.3 s") && line.contains("not the re-probe cause") && !line.contains("Scripts/libvirtd"))
    }

    @Test func aRemoteDaemonGetsTheCauseToLookFor() {
        #expect(!LibvirtSlowStart.isLocal("qemu+ssh://root@lab1/system"))
        let line = LibvirtSlowStart.notice(seconds: 50, uri: "qemu+ssh://root@lab1/system", kvm: nil)
        #expect(line.contains("on qemu+ssh://root@lab1/system") && line.contains("Outdated cached capabilities"))
    }

    @Test func localURIs() {
        for uri in ["qemu:///system", "qemu+unix:///system", "qemu+unix:///system?socket=/run/x", "qemu://localhost/system", "qemu:///session"] {
            #expect(LibvirtSlowStart.isLocal(uri), "\(uri)")
        }
        for uri in ["qemu+ssh://lab1/system", "qemu+tcp://10.0.0.1/system", "qemu+tls://host.example/system"] {
            #expect(!LibvirtSlowStart.isLocal(uri), "\(uri)")
        }
    }

    @Test func accessFollowsOwnerGroupAndOther() {
        let kvmGroup: UInt32 = 107, qemu: UInt32 = 64055
        #expect(!LibvirtSlowStart.canReadWrite(mode: 0o600, owner: 0, group: 0, uid: qemu, gids: [kvmGroup, qemu]))
        #expect(LibvirtSlowStart.canReadWrite(mode: 0o660, owner: 0, group: kvmGroup, uid: qemu, gids: [kvmGroup, qemu]))
        #expect(!LibvirtSlowStart.canReadWrite(mode: 0o640, owner: 0, group: kvmGroup, uid: qemu, gids: [kvmGroup]))
        #expect(LibvirtSlowStart.canReadWrite(mode: 0o666, owner: 0, group: 0, uid: qemu, gids: []))
        #expect(LibvirtSlowStart.canReadWrite(mode: 0o600, owner: 0, group: 0, uid: 0, gids: []))
        // The owner's bits decide for the owner even when the group's would allow more.
        #expect(!LibvirtSlowStart.canReadWrite(mode: 0o066, owner: qemu, group: kvmGroup, uid: qemu, gids: [kvmGroup]))
        #expect(LibvirtSlowStart.modeString(0o600) == "crw-------")
        #expect(LibvirtSlowStart.modeString(0o660) == "crw-rw----")
    }

    @Test func theQEMUUserComesFromQemuConf() {
        // Debian's qemu.conf ships the setting commented out.
        #expect(LibvirtSlowStart.qemuUser(qemuConf: "#user = \"qemu\"   # A user named \"qemu\"\n#group = \"qemu\"\n") == "libvirt-qemu")
        #expect(LibvirtSlowStart.qemuUser(qemuConf: nil) == "libvirt-qemu")
        #expect(LibvirtSlowStart.qemuUser(qemuConf: "user = \"root\"\ngroup = \"root\"\n") == "root")
        #expect(LibvirtSlowStart.qemuUser(qemuConf: "  user=\"+0\" # numeric\n") == "0")
        #expect(LibvirtSlowStart.qemuUser(qemuConf: "username = \"x\"\nuser = \"a\"\nuser = \"b\"\n") == "b")
        #expect(LibvirtSlowStart.qemuUser(qemuConf: "user = \"\n") == "libvirt-qemu")
    }
}
