import Glibc

// glibc functions that Swift's Glibc module does not import: `reboot` lives in
// <sys/reboot.h>, which the module map leaves out, and the other two are GNU
// extensions hidden without _GNU_SOURCE. Declared here by symbol name; every
// argument is an int or a pointer, which pass the same way in Swift and C.

@_silgen_name("reboot")
func glibcReboot(_ command: Int32) -> Int32

@_silgen_name("pipe2")
func glibcPipe2(_ fds: UnsafeMutablePointer<Int32>, _ flags: Int32) -> Int32

@_silgen_name("posix_spawn_file_actions_addchdir_np")
func glibcSpawnAddChdir(
    _ actions: UnsafeMutablePointer<posix_spawn_file_actions_t>, _ path: UnsafePointer<CChar>
) -> Int32

/// Commands for reboot(2), from <sys/reboot.h>.
let RB_AUTOBOOT: Int32 = 0x0123_4567
let RB_POWER_OFF: Int32 = 0x4321_FEDC

/// vmsplice(2), a GNU extension: `ssize_t vmsplice(int fd, const struct iovec *iov, size_t nr_segs, unsigned int flags)`.
@_silgen_name("vmsplice")
func glibcVmsplice(_ fd: Int32, _ iov: UnsafePointer<iovec>, _ segments: Int, _ flags: UInt32) -> Int

/// ioctl(2) with a pointer argument. The C declaration is variadic; on x86-64 and arm64 Linux a pointer in
/// the variadic position is passed like a fixed one.
@_silgen_name("ioctl")
func glibcIoctl(_ fd: Int32, _ request: UInt, _ argument: UnsafeMutableRawPointer) -> Int32

/// syscall(2) with three arguments (variadic in C, passed in the same registers).
@_silgen_name("syscall")
func glibcSyscall3(_ number: Int, _ a: Int, _ b: UnsafePointer<CChar>, _ c: Int) -> Int

/// finit_module(2)'s number: glibc has no wrapper for it.
#if arch(x86_64)
let sysFinitModule = 313
#elseif arch(arm64)
let sysFinitModule = 273
#endif
