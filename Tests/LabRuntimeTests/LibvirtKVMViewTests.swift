import Foundation
import Testing
import LabCore
@testable import LabRuntime

/// The KVM view is read from a real device node (a /dev/null clone, 1:3, made with mknod), a real qemu.conf
/// and a real process's mount namespace (/proc/PID/root).
struct LibvirtKVMViewTests {
    @Test(.enabled(if: getuid() == 0, "mknod needs root")) func theViewReadsTheNodeTheUserAndTheDaemonsNamespace() throws {
        let dir = NSTemporaryDirectory() + "cmalab-kvmview-\(UUID().uuidString)"
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let node = dir + "/kvm"
        #expect(mknod(node, S_IFCHR | 0o600, dev_t((1 << 8) | 3)) == 0)
        #expect(chmod(node, 0o600) == 0)
        try "user = \"nobody\"\n".write(toFile: dir + "/qemu.conf", atomically: true, encoding: .utf8)
        try "\(getpid())\n".write(toFile: dir + "/libvirtd.pid", atomically: true, encoding: .utf8)

        let closed = LibvirtSlowStart.KVMView.local(device: node, qemuConf: dir + "/qemu.conf", pidFiles: [dir + "/libvirtd.pid"])
        #expect(closed.mode == "crw-------")
        #expect(closed.owner == "root:root")
        #expect(closed.qemuUser == "nobody")
        #expect(!closed.qemuUserCanOpen)
        #expect(closed.daemonSeesKVM == true)   // this process's namespace has the node

        #expect(chmod(node, 0o666) == 0)
        let open = LibvirtSlowStart.KVMView.local(device: node, qemuConf: dir + "/qemu.conf", pidFiles: [dir + "/libvirtd.pid"])
        #expect(open.qemuUserCanOpen)

        let none = LibvirtSlowStart.KVMView.local(device: dir + "/absent", qemuConf: dir + "/absent.conf", pidFiles: [dir + "/absent.pid"])
        #expect(none.mode == nil && none.daemonSeesKVM == nil && none.qemuUser == "libvirt-qemu")
    }
}
