/* The C headers the agent uses, and non-variadic, non-macro forms of what Swift cannot import
 * (errno, open, fcntl, MAP_FAILED, SIG_IGN). See Sources/AgentCore/EmbeddedGlibc.swift. */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <termios.h>
#include <time.h>
#include <unistd.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/mount.h>
#include <sys/prctl.h>
#include <sys/reboot.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <sys/uio.h>
#include <sys/un.h>
#include <sys/utsname.h>
#include <sys/wait.h>

static inline int *cmalab_errno_location(void) { return &errno; }
static inline int cmalab_open(const char *path, int flags, mode_t mode) { return open(path, flags, mode); }
static inline int cmalab_fcntl(int fd, int command, long argument) { return fcntl(fd, command, argument); }
static inline void *cmalab_map_failed(void) { return MAP_FAILED; }
static inline __sighandler_t cmalab_sig_ign(void) { return SIG_IGN; }
