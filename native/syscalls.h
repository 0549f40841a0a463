// Thin wrappers for syscalls that glibc 2.36 lacks or wraps with extra work.
// Each returns the raw result (-1 with errno set), as libc wrappers do.
#ifndef NODULARITY_SYSCALLS_H
#define NODULARITY_SYSCALLS_H

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <string.h>
#include <stdint.h>
#include <sys/syscall.h>
#include <sys/types.h>
#include <unistd.h>

#ifndef SYS_pidfd_open
#define SYS_pidfd_open 434
#endif
#ifndef SYS_pidfd_send_signal
#define SYS_pidfd_send_signal 424
#endif
#ifndef SYS_close_range
#define SYS_close_range 436
#endif
#ifndef SYS_open_tree
#define SYS_open_tree 428
#endif
#ifndef SYS_move_mount
#define SYS_move_mount 429
#endif
#ifndef OPEN_TREE_CLONE
#define OPEN_TREE_CLONE 1
#endif
#ifndef OPEN_TREE_CLOEXEC
#define OPEN_TREE_CLOEXEC O_CLOEXEC
#endif
#ifndef MOVE_MOUNT_F_EMPTY_PATH
#define MOVE_MOUNT_F_EMPTY_PATH 0x00000004
#endif
#ifndef SYS_mount_setattr
#define SYS_mount_setattr 442
#endif
#ifndef CLONE_PIDFD
#define CLONE_PIDFD 0x00001000
#endif
#ifndef P_PIDFD
#define P_PIDFD 3
#endif
#ifndef CLOSE_RANGE_CLOEXEC
#define CLOSE_RANGE_CLOEXEC (1U << 2)
#endif
#ifndef AT_RECURSIVE
#define AT_RECURSIVE 0x8000
#endif
#ifndef MOUNT_ATTR_RDONLY
#define MOUNT_ATTR_RDONLY 0x00000001
#define MOUNT_ATTR_NOSUID 0x00000002
#define MOUNT_ATTR_NODEV 0x00000004
#define MOUNT_ATTR_NOEXEC 0x00000008
#endif
#ifndef MOUNT_ATTR__ATIME
#define MOUNT_ATTR__ATIME 0x00000070
#define MOUNT_ATTR_NOATIME 0x00000010
#define MOUNT_ATTR_STRICTATIME 0x00000020
#define MOUNT_ATTR_NODIRATIME 0x00000080
#endif
#ifndef SYS_openat2
#define SYS_openat2 437
#endif
#ifndef MOVE_MOUNT_T_EMPTY_PATH
#define MOVE_MOUNT_T_EMPTY_PATH 0x00000040
#endif
#ifndef RESOLVE_NO_XDEV
#define RESOLVE_NO_XDEV 0x01
#define RESOLVE_NO_MAGICLINKS 0x02
#define RESOLVE_NO_SYMLINKS 0x04
#define RESOLVE_BENEATH 0x08
#define RESOLVE_IN_ROOT 0x10
#endif
#ifndef KEYCTL_JOIN_SESSION_KEYRING
#define KEYCTL_JOIN_SESSION_KEYRING 1
#endif

struct nod_mount_attr {
  uint64_t attr_set;
  uint64_t attr_clr;
  uint64_t propagation;
  uint64_t userns_fd;
};

struct nod_open_how {
  uint64_t flags;
  uint64_t mode;
  uint64_t resolve;
};

// openat2(2), Linux 5.6: path resolution with RESOLVE_* scoping.
static inline int sys_openat2(int dfd, const char *path, uint64_t flags, uint64_t resolve) {
  struct nod_open_how how = {flags, 0, resolve};
  return (int)syscall(SYS_openat2, dfd, path, &how, sizeof how);
}

// A detached copy of the mount tree at path (open_tree(2), Linux 5.2).
static inline int sys_open_tree(const char *path, unsigned flags) {
  return (int)syscall(SYS_open_tree, AT_FDCWD, path, flags);
}
// The same, of what an fd refers to (AT_EMPTY_PATH).
static inline int sys_open_tree_fd(int fd, unsigned flags) {
  return (int)syscall(SYS_open_tree, fd, "", flags | AT_EMPTY_PATH);
}
// Attach a detached tree onto what the fd `to` refers to: no path is resolved.
static inline int sys_move_mount_fd_fd(int fd, int to) {
  return (int)syscall(SYS_move_mount, fd, "", to, "", MOVE_MOUNT_F_EMPTY_PATH | MOVE_MOUNT_T_EMPTY_PATH);
}
// Attach a detached tree (from open_tree) at path (move_mount(2), Linux 5.2).
static inline int sys_move_mount_fd(int fd, const char *to) {
  return (int)syscall(SYS_move_mount, fd, "", AT_FDCWD, to, MOVE_MOUNT_F_EMPTY_PATH);
}

static inline int sys_pidfd_open(pid_t pid, unsigned flags) {
  return (int)syscall(SYS_pidfd_open, pid, flags);
}
static inline int sys_pidfd_send_signal(int pidfd, int sig) {
  return (int)syscall(SYS_pidfd_send_signal, pidfd, sig, NULL, 0);
}
static inline int sys_close_range(unsigned first, unsigned last, unsigned flags) {
  return (int)syscall(SYS_close_range, first, last, flags);
}
static inline int sys_mount_setattr(int dfd, const char *path, unsigned flags, struct nod_mount_attr *attr) {
  return (int)syscall(SYS_mount_setattr, dfd, path, flags, attr, sizeof(*attr));
}
static inline int sys_pivot_root(const char *new_root, const char *put_old) {
  return (int)syscall(SYS_pivot_root, new_root, put_old);
}
// waitid(2) with the rusage argument that the glibc wrapper hides.
static inline int sys_waitid(int idtype, int id, siginfo_t *info, int options, struct rusage *ru) {
  return (int)syscall(SYS_waitid, idtype, id, info, options, ru);
}

// Write a whole string to an existing file (procfs: uid_map, setgroups).
// Returns 0 or -errno; async-signal-safe, so the child uses it too.
static inline int write_whole_file(const char *path, const char *data) {
  int fd = open(path, O_WRONLY | O_CLOEXEC);
  if (fd < 0) return -errno;
  size_t len = strlen(data);
  ssize_t n = write(fd, data, len);
  int err = n < 0 ? -errno : ((size_t)n != len ? -EIO : 0);
  close(fd);
  return err;
}

#endif
