import CLibvirt
import Foundation
import LabCore
import Synchronization

/// The libvirt calls cmalab makes, in one place: connect by URI, transient domains, console and channel
/// streams, storage volumes. Every failure becomes a `LabError(.libvirt)` built from virGetLastError,
/// with a hint that says what to do.
public final class LibvirtConnection: @unchecked Sendable {
    public let uri: String
    let ptr: virConnectPtr

    private static let initialized: Bool = {
        _ = virInitialize()
        // libvirt prints every error on stderr by default; cmalab reports them itself.
        virSetErrorFunc(nil, { _, _ in })
        // Stream I/O runs on libvirt's default event loop, in one thread of its own: blocking sends and
        // receives on one stream from two threads deadlock in libvirt's RPC client. It must be registered
        // before the first connection opens.
        _ = virEventRegisterDefaultImpl()
        let loop = Thread { while true { _ = virEventRunDefaultImpl() } }
        loop.name = "libvirt-events"
        loop.start()
        return true
    }()

    /// Opens a read-write connection (qemu:///system, qemu+ssh://user@host/system, ...).
    public init(uri: String) throws(LabError) {
        _ = Self.initialized
        self.uri = uri
        guard let c = virConnectOpen(uri) else { throw Self.lastError("cannot connect to libvirt at \(uri)", uri: uri) }
        ptr = c
    }

    deinit { virConnectClose(ptr) }

    /// The last libvirt error of this thread as a LabError, with advice for the usual causes.
    static func lastError(_ what: String, uri: String) -> LabError {
        guard let e = virGetLastError() else { return LabError(.libvirt, "\(what): libvirt gave no reason") }
        let code = Int(e.pointee.code)
        let detail = e.pointee.message.map { String(cString: $0) } ?? "error \(code)"
        var hint: String?
        switch code {
        case Int(VIR_ERR_NO_CONNECT.rawValue), Int(VIR_ERR_SYSTEM_ERROR.rawValue), Int(VIR_ERR_RPC.rawValue):
            if uri.contains("+ssh") {
                hint = "check that `ssh` to that host works without a password prompt and that libvirtd runs there (`virsh -c \(uri) version`)"
            } else {
                hint = "start libvirtd (without systemd: `Scripts/libvirtd start`; with systemd: `systemctl start libvirtd`), or pick another daemon with --connect"
            }
        case Int(VIR_ERR_AUTH_FAILED.rawValue), Int(VIR_ERR_AUTH_CANCELLED.rawValue), Int(VIR_ERR_ACCESS_DENIED.rawValue):
            hint = "run cmalab as root or as a member of the `libvirt` group on the libvirt host"
        case Int(VIR_ERR_NO_DOMAIN.rawValue):
            hint = "the domain is gone: it powered off, crashed or was destroyed by someone else"
        case Int(VIR_ERR_NO_STORAGE_POOL.rawValue), Int(VIR_ERR_NO_STORAGE_VOL.rawValue):
            hint = "cmalab keeps its kernels in the libvirt storage pool `\(LibvirtConnection.poolName)`; `virsh -c \(uri) pool-list --all` shows it"
        case Int(VIR_ERR_CONFIG_UNSUPPORTED.rawValue), Int(VIR_ERR_XML_ERROR.rawValue), Int(VIR_ERR_XML_DETAIL.rawValue):
            hint = "the libvirt host's QEMU cannot run this domain; the XML is in the run directory (libvirt-domain.xml)"
        default:
            break
        }
        return LabError(.libvirt, "\(what): \(detail)", hint: hint)
    }

    func lastError(_ what: String) -> LabError { Self.lastError(what, uri: uri) }

    // MARK: - Domains

    /// Creates and starts a transient domain, paused so the console and channel are open before the first
    /// instruction. With `autoDestroy` libvirtd destroys it when this connection closes (cmalab killed).
    public func createPaused(xml: String, autoDestroy: Bool = true) throws(LabError) -> LibvirtDomain {
        var flags = VIR_DOMAIN_START_PAUSED.rawValue
        if autoDestroy { flags |= VIR_DOMAIN_START_AUTODESTROY.rawValue }
        guard let d = virDomainCreateXML(ptr, xml, flags) else { throw lastError("libvirt could not create the domain") }
        return LibvirtDomain(connection: self, ptr: d)
    }

    /// Running domains whose name starts with `prefix`.
    public func activeDomains(prefix: String) -> [LibvirtDomain] {
        var list: UnsafeMutablePointer<virDomainPtr?>?
        let n = virConnectListAllDomains(ptr, &list, VIR_CONNECT_LIST_DOMAINS_ACTIVE.rawValue)
        guard n > 0, let list else { return [] }
        defer { free(list) }
        var out: [LibvirtDomain] = []
        for i in 0..<Int(n) {
            guard let d = list[i] else { continue }
            let dom = LibvirtDomain(connection: self, ptr: d)
            if dom.name.hasPrefix(prefix) { out.append(dom) }
        }
        return out
    }

    public func domain(named name: String) -> LibvirtDomain? {
        virDomainLookupByName(ptr, name).map { LibvirtDomain(connection: self, ptr: $0) }
    }

    /// The host name of the libvirt host (not of this machine, for a remote URI).
    public var hostName: String {
        guard let p = virConnectGetHostname(ptr) else { return "" }
        defer { free(p) }
        return String(cString: p)
    }

    /// Destroys cmalab domains on this connection whose owner process (recorded in their metadata) is gone
    /// on this machine: left behind by a cmalab that died while libvirtd kept them (no autodestroy).
    /// Returns the names destroyed.
    @discardableResult
    public func destroyOrphans(localHost: String = ProcessInfo.processInfo.hostName) -> [String] {
        var destroyed: [String] = []
        for dom in activeDomains(prefix: LibvirtDomainXML.namePrefix) {
            guard let owner = dom.owner, owner.host == localHost else { continue }
            if owner.pid == getpid() { continue }
            if kill(owner.pid, 0) == 0 || errno == EPERM { continue }
            if (try? dom.destroy()) != nil { destroyed.append(dom.name) }
        }
        return destroyed
    }

    // MARK: - Storage

    public static let poolName = "cmalab"
    /// Where the `cmalab` dir pool lives on a libvirt host, when cmalab defines it.
    public static let poolPath = "/var/lib/libvirt/images/cmalab"

    /// The `cmalab` storage pool, defined (dir, autostart), built and started if missing.
    func pool() throws(LabError) -> virStoragePoolPtr {
        var p = virStoragePoolLookupByName(ptr, Self.poolName)
        if p == nil {
            let xml = """
                <pool type='dir'><name>\(Self.poolName)</name>
                  <target><path>\(Self.poolPath)</path><permissions><mode>0755</mode></permissions></target>
                </pool>
                """
            p = virStoragePoolDefineXML(ptr, xml, 0)
            if p == nil {
                // Another cmalab defined it in the meantime.
                p = virStoragePoolLookupByName(ptr, Self.poolName)
                guard p != nil else { throw lastError("cannot define the storage pool `\(Self.poolName)` at \(Self.poolPath)") }
            } else {
                _ = virStoragePoolBuild(p, 0)
                _ = virStoragePoolSetAutostart(p, 1)
            }
        }
        guard let p else { throw lastError("cannot find the storage pool `\(Self.poolName)`") }
        if virStoragePoolIsActive(p) != 1, virStoragePoolCreate(p, 0) != 0, virStoragePoolIsActive(p) != 1 {
            virStoragePoolFree(p)
            throw lastError("cannot start the storage pool `\(Self.poolName)` (\(Self.poolPath))")
        }
        return p
    }

    private static let uploadLock = Mutex(())

    /// Puts a local file on the libvirt host as a volume of the `cmalab` pool and returns its path there.
    /// The volume's name is derived from the file's path, size and mtime, so a file is uploaded once per
    /// host: later boots reuse the volume. The upload goes to a private volume first, which is then
    /// cloned under the final name, so a reader never sees half a file.
    public func volume(for file: String) throws(LabError) -> String {
        var st = stat()
        guard stat(file, &st) == 0 else { throw LabError.posix("cannot read", file) }
        let key = SHA256.hex(Array("\(file)|\(st.st_size)|\(st.st_mtim.tv_sec).\(st.st_mtim.tv_nsec)".utf8)).prefix(16)
        let name = "\(Path.basename(Path.directory(of: file)).prefix(16))-\(Path.basename(file))-\(key)"
            .map { $0.isLetter || $0.isNumber || $0 == "-" || $0 == "_" || $0 == "." ? $0 : "_" }
        let volName = String(name)
        return try Self.uploadLock.withLock { _ throws(LabError) -> String in
            let pool = try self.pool()
            defer { virStoragePoolFree(pool) }
            _ = virStoragePoolRefresh(pool, 0)
            if let v = virStorageVolLookupByName(pool, volName) {
                defer { virStorageVolFree(v) }
                return try self.path(of: v, name: volName)
            }
            let part = "\(volName).part-\(getpid())"
            if let stale = virStorageVolLookupByName(pool, part) { _ = virStorageVolDelete(stale, 0); virStorageVolFree(stale) }
            let volXML = { (n: String) in
                """
                <volume><name>\(n)</name><capacity unit='bytes'>\(st.st_size)</capacity><allocation unit='bytes'>0</allocation>
                  <target><format type='raw'/><permissions><mode>0644</mode></permissions></target></volume>
                """
            }
            guard let tmp = virStorageVolCreateXML(pool, volXML(part), 0) else {
                throw self.lastError("cannot create the volume \(part) in the storage pool `\(Self.poolName)`")
            }
            defer { _ = virStorageVolDelete(tmp, 0); virStorageVolFree(tmp) }
            try self.upload(file, size: UInt64(st.st_size), to: tmp, name: part)
            guard let final = virStorageVolCreateXMLFrom(pool, volXML(volName), tmp, 0) else {
                // Another cmalab process finished the same upload first.
                if let v = virStorageVolLookupByName(pool, volName) { defer { virStorageVolFree(v) }; return try self.path(of: v, name: volName) }
                throw self.lastError("cannot store \(file) as the volume \(volName)")
            }
            defer { virStorageVolFree(final) }
            return try self.path(of: final, name: volName)
        }
    }

    private func path(of v: virStorageVolPtr, name: String) throws(LabError) -> String {
        guard let p = virStorageVolGetPath(v) else { throw lastError("cannot get the path of the volume \(name)") }
        defer { free(p) }
        return String(cString: p)
    }

    private func upload(_ file: String, size: UInt64, to vol: virStorageVolPtr, name: String) throws(LabError) {
        guard let fh = FileHandle(forReadingAtPath: file) else { throw LabError.posix("cannot open", file) }
        defer { try? fh.close() }
        guard let stream = virStreamNew(ptr, 0) else { throw lastError("cannot create a stream to upload \(file)") }
        defer { virStreamFree(stream) }
        guard virStorageVolUpload(vol, stream, 0, size, 0) == 0 else { throw lastError("cannot upload \(file) to the volume \(name)") }
        while true {
            let chunk = fh.readData(ofLength: 1 << 20)
            if chunk.isEmpty { break }
            var off = 0
            while off < chunk.count {
                let n = chunk.withUnsafeBytes { raw in
                    virStreamSend(stream, raw.baseAddress!.advanced(by: off).assumingMemoryBound(to: CChar.self), chunk.count - off)
                }
                guard n > 0 else {
                    let e = lastError("uploading \(file) to the volume \(name) failed")
                    virStreamAbort(stream)
                    throw e
                }
                off += Int(n)
            }
        }
        guard virStreamFinish(stream) == 0 else { throw lastError("uploading \(file) to the volume \(name) did not finish") }
    }
}

/// One libvirt domain (a reference; freeing it does not stop the guest).
public final class LibvirtDomain: @unchecked Sendable {
    public let connection: LibvirtConnection
    let ptr: virDomainPtr
    public let name: String

    init(connection: LibvirtConnection, ptr: virDomainPtr) {
        self.connection = connection; self.ptr = ptr
        name = virDomainGetName(ptr).map { String(cString: $0) } ?? ""
    }

    deinit { virDomainFree(ptr) }

    /// true once the guest has ended: the domain is gone (transient domains vanish when they stop) or
    /// libvirt reports that the guest shut down and is only waiting to be torn down.
    public var guestEnded: Bool {
        var state: Int32 = 0
        var reason: Int32 = 0
        guard virDomainGetState(ptr, &state, &reason, 0) == 0 else { return virDomainIsActive(ptr) != 1 }
        switch UInt32(state) {
        case VIR_DOMAIN_SHUTDOWN.rawValue, VIR_DOMAIN_SHUTOFF.rawValue, VIR_DOMAIN_CRASHED.rawValue: return true
        case VIR_DOMAIN_PAUSED.rawValue: return UInt32(reason) == VIR_DOMAIN_PAUSED_SHUTTING_DOWN.rawValue
        default: return false
        }
    }

    /// true while the guest runs, false once it is gone (transient domains vanish when they stop).
    public var isActive: Bool { virDomainIsActive(ptr) == 1 }

    public func resume() throws(LabError) {
        guard virDomainResume(ptr) == 0 else { throw connection.lastError("cannot start the guest of \(name)") }
    }

    /// Stops the guest at once. Throws only if it is still running afterwards.
    public func destroy() throws(LabError) {
        if virDomainDestroy(ptr) == 0 { return }
        let e = connection.lastError("cannot destroy the domain \(name)")
        if virDomainIsActive(ptr) == 1 { throw e }
    }

    /// The domain's XML as libvirt has it now.
    public var xml: String {
        guard let p = virDomainGetXMLDesc(ptr, 0) else { return "" }
        defer { free(p) }
        return String(cString: p)
    }

    /// The cmalab process that created this domain (from its metadata), if it was cmalab.
    public var owner: (host: String, pid: Int32)? {
        guard let p = virDomainGetMetadata(ptr, Int32(VIR_DOMAIN_METADATA_ELEMENT.rawValue), LibvirtDomainXML.namespace, 0) else { return nil }
        defer { free(p) }
        return LibvirtDomainXML.owner(inDomainXML: String(cString: p))
    }

    /// The serial console (ttyS0) as a stream.
    public func openConsole() throws(LabError) -> LibvirtStream {
        guard let s = virStreamNew(connection.ptr, UInt32(VIR_STREAM_NONBLOCK.rawValue)) else { throw connection.lastError("cannot create a stream for the console") }
        guard virDomainOpenConsole(ptr, nil, s, UInt32(VIR_DOMAIN_CONSOLE_FORCE.rawValue)) == 0 else {
            let e = connection.lastError("cannot open the console of \(name)")
            virStreamFree(s)
            throw e
        }
        return LibvirtStream(connection: connection, ptr: s)
    }

    /// A `<channel>` (by target name) as a stream.
    public func openChannel(_ channel: String) throws(LabError) -> LibvirtStream {
        guard let s = virStreamNew(connection.ptr, UInt32(VIR_STREAM_NONBLOCK.rawValue)) else { throw connection.lastError("cannot create a stream for the channel") }
        guard virDomainOpenChannel(ptr, channel, s, UInt32(VIR_DOMAIN_CHANNEL_FORCE.rawValue)) == 0 else {
            let e = connection.lastError("cannot open the channel \(channel) of \(name)")
            virStreamFree(s)
            throw e
        }
        return LibvirtStream(connection: connection, ptr: s)
    }
}
