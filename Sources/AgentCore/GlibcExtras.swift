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
