import Foundation
import LabCore

extension LibvirtSlowStart.KVMView {
    /// How /dev/kvm looks to a libvirtd on this machine: the node's mode and owner, whether libvirt's QEMU
    /// user (qemu.conf) may open it, and whether the running libvirtd (its pid file) sees it at all: a
    /// daemon started by `Scripts/libvirtd start` may run in a mount namespace without it.
    static func local(device: String = "/dev/kvm", qemuConf: String = "/etc/libvirt/qemu.conf",
                      pidFiles: [String] = ["/run/libvirtd.pid", "/var/run/libvirtd.pid"]) -> Self {
        let user = LibvirtSlowStart.qemuUser(qemuConf: try? String(contentsOfFile: qemuConf, encoding: .utf8))
        var daemonSees: Bool?
        for f in pidFiles {
            guard let text = try? String(contentsOfFile: f, encoding: .utf8),
                  let pid = Int32(text.trimmingCharacters(in: .whitespacesAndNewlines)), pid > 0, kill(pid, 0) == 0 else { continue }
            var st = stat()
            let root = "/proc/\(pid)/root"
            guard stat(root + "/", &st) == 0 else { break }   // not ours to look into
            daemonSees = stat(root + device, &st) == 0
            break
        }
        var st = stat()
        guard stat(device, &st) == 0 else {
            return Self(mode: nil, owner: "", qemuUser: user, qemuUserCanOpen: false, daemonSeesKVM: daemonSees)
        }
        let mode = UInt32(st.st_mode) & 0o777
        let owner = (getpwuid(st.st_uid).map { String(cString: $0.pointee.pw_name) } ?? String(st.st_uid)) + ":"
            + (getgrgid(st.st_gid).map { String(cString: $0.pointee.gr_name) } ?? String(st.st_gid))
        var canOpen = false
        if let pw = getpwnam(user) ?? UInt32(user).flatMap({ getpwuid($0) }) {
            let uid = pw.pointee.pw_uid, gid = pw.pointee.pw_gid
            var count: Int32 = 64
            var groups = [gid_t](repeating: 0, count: Int(count))
            if getgrouplist(pw.pointee.pw_name, gid, &groups, &count) < 0 { count = 0 }
            let gids = [gid] + groups.prefix(Int(max(0, min(count, 64))))
            canOpen = LibvirtSlowStart.canReadWrite(mode: mode, owner: st.st_uid, group: st.st_gid, uid: uid, gids: gids)
        }
        return Self(mode: LibvirtSlowStart.modeString(mode), owner: owner, qemuUser: user, qemuUserCanOpen: canOpen,
                    daemonSeesKVM: daemonSees)
    }
}
