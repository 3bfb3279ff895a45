import Glibc

#if hasFeature(Embedded)
// The Embedded Swift build of the agent (Scripts/build-agent) imports glibc's C headers through its own
// module map (Scripts/agent/module.modulemap, also named Glibc), without Swift's Glibc overlay. These are
// the pieces of that overlay the agent uses; the C helpers behind them are in Scripts/agent/glibc.h.
public var errno: Int32 {
    get { cmalab_errno_location().pointee }
    set { cmalab_errno_location().pointee = newValue }
}
public func open(_ path: UnsafePointer<CChar>, _ flags: Int32) -> Int32 { cmalab_open(path, flags, 0) }
public func open(_ path: UnsafePointer<CChar>, _ flags: Int32, _ mode: mode_t) -> Int32 { cmalab_open(path, flags, mode) }
public func fcntl(_ fd: Int32, _ command: Int32) -> Int32 { cmalab_fcntl(fd, command, 0) }
public func fcntl(_ fd: Int32, _ command: Int32, _ argument: Int32) -> Int32 { cmalab_fcntl(fd, command, Int(argument)) }
public var MAP_FAILED: UnsafeMutableRawPointer! { cmalab_map_failed() }
public var SIG_IGN: __sighandler_t? { cmalab_sig_ign() }
#endif

/// errno, read the same way in both builds.
public func currentErrno() -> Int32 { errno }
