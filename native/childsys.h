// Raw syscalls for the clone child: each returns the kernel's result, a
// value >= 0 or -errno, and never touches errno.
//
// Why not libc: in the vfork-style launch the child shares the parent's
// memory (CLONE_VM) and its thread pointer, so errno there is the PARENT
// thread's thread-local variable; a libc wrapper that fails writes it, and a
// step that read it back would depend on that. glibc's setresuid/setgroups
// would also broadcast to the parent's threads (setxid). So the child calls
// the kernel directly through rawsys.h, as the init does.
#ifndef NODULARITY_CHILDSYS_H
#define NODULARITY_CHILDSYS_H

#include <fcntl.h>
#include <stdint.h>
#include <sys/stat.h>
#include <sys/statfs.h>
#include <sys/socket.h>

#include "rawsys.h"
#include "syscalls.h"

#define CX static inline long

CX cx_read(int fd, void *buf, unsigned long n) {
  return SYS3(__NR_read, fd, buf, n);
}
CX cx_write(int fd, const void *buf, unsigned long n) {
  return SYS3(__NR_write, fd, buf, n);
}
CX cx_close(int fd) {
  return SYS1(__NR_close, fd);
}
CX cx_openat(int dfd, const char *path, int flags, unsigned mode) {
  return SYS4(__NR_openat, dfd, path, flags, mode);
}
CX cx_openat2(int dfd, const char *path, uint64_t flags, uint64_t resolve) {
  struct nod_open_how how = {flags, 0, resolve};
  long r;
  // EAGAIN: a rename elsewhere raced the lookup (RESOLVE_IN_ROOT); try again.
  do {
    r = SYS4(SYS_openat2, dfd, path, &how, sizeof how);
  } while (r == -EAGAIN || r == -EINTR);
  return r;
}
CX cx_fcntl(int fd, int cmd, long arg) {
  return SYS3(__NR_fcntl, fd, cmd, arg);
}
CX cx_dup3(int from, int to) {
  return SYS3(__NR_dup3, from, to, 0);
}
CX cx_fstat(int fd, struct stat *st) {
  return SYS2(__NR_fstat, fd, st);
}
CX cx_fstatat(int dfd, const char *name, struct stat *st, int flags) {
  return SYS4(__NR_newfstatat, dfd, name, st, flags);
}
CX cx_fstatfs(int fd, struct statfs *st) {
  return SYS2(__NR_fstatfs, fd, st);
}
CX cx_mkdirat(int dfd, const char *name, unsigned mode) {
  return SYS3(__NR_mkdirat, dfd, name, mode);
}
CX cx_symlinkat(const char *target, int dfd, const char *name) {
  return SYS3(__NR_symlinkat, target, dfd, name);
}
CX cx_fchmodat(int dfd, const char *name, unsigned mode) {
  return SYS3(__NR_fchmodat, dfd, name, mode);
}
CX cx_fchownat(int dfd, const char *name, long uid, long gid, int flags) {
  return SYS5(__NR_fchownat, dfd, name, uid, gid, flags);
}
CX cx_fchown(int fd, long uid, long gid) {
  return SYS3(__NR_fchown, fd, uid, gid);
}
CX cx_fchmod(int fd, unsigned mode) {
  return SYS2(__NR_fchmod, fd, mode);
}
CX cx_chdir(const char *path) {
  return SYS1(__NR_chdir, path);
}
CX cx_fchdir(int fd) {
  return SYS1(__NR_fchdir, fd);
}
CX cx_mount(const char *src, const char *target, const char *fstype, unsigned long flags, const void *data) {
  return SYS5(__NR_mount, src, target, fstype, flags, data);
}
CX cx_umount2(const char *target, int flags) {
  return SYS2(__NR_umount2, target, flags);
}
CX cx_pivot_root(const char *new_root, const char *put_old) {
  return SYS2(__NR_pivot_root, new_root, put_old);
}
CX cx_open_tree(int dfd, const char *path, unsigned flags) {
  return SYS3(SYS_open_tree, dfd, path, flags);
}
// Attach a detached tree onto what the fd `to` refers to: no path is resolved.
CX cx_move_mount_fd_fd(int fd, int to) {
  return SYS5(SYS_move_mount, fd, "", to, "", MOVE_MOUNT_F_EMPTY_PATH | MOVE_MOUNT_T_EMPTY_PATH);
}
CX cx_move_mount_fd(int fd, const char *to) {
  return SYS5(SYS_move_mount, fd, "", AT_FDCWD, to, MOVE_MOUNT_F_EMPTY_PATH);
}
CX cx_mount_setattr(int dfd, const char *path, unsigned flags, struct nod_mount_attr *attr) {
  return SYS5(SYS_mount_setattr, dfd, path, flags, attr, sizeof *attr);
}
CX cx_prctl(int op, unsigned long a, unsigned long b) {
  return SYS5(__NR_prctl, op, a, b, 0, 0);
}
CX cx_setsid(void) {
  return SYS0(__NR_setsid);
}
CX cx_sethostname(const char *name, unsigned long len) {
  return SYS2(__NR_sethostname, name, len);
}
CX cx_setdomainname(const char *name, unsigned long len) {
  return SYS2(__NR_setdomainname, name, len);
}
CX cx_keyctl(int op, unsigned long a) {
  return SYS5(__NR_keyctl, op, a, 0, 0, 0);
}
CX cx_setgroups(int n, const gid_t *groups) {
  return SYS2(__NR_setgroups, n, groups);
}
CX cx_setresgid(long g) {
  return SYS3(__NR_setresgid, g, g, g);
}
CX cx_setresuid(long u) {
  return SYS3(__NR_setresuid, u, u, u);
}
CX cx_capset(void *hdr, void *data) {
  return SYS2(__NR_capset, hdr, data);
}
CX cx_prlimit(int resource, uint64_t soft, uint64_t hard) {
  uint64_t lim[2] = {soft, hard};
  return SYS4(__NR_prlimit64, 0, resource, lim, 0);
}
CX cx_socket(int domain, int type, int proto) {
  return SYS3(__NR_socket, domain, type, proto);
}
CX cx_ioctl(int fd, unsigned long req, long arg) {
  return SYS3(__NR_ioctl, fd, req, arg);
}
CX cx_sendmsg(int fd, const struct msghdr *msg, int flags) {
  return SYS3(__NR_sendmsg, fd, msg, flags);
}
// A zero-timeout poll of one fd: 1 when it has events, 0 when not, or -errno.
CX cx_poll_now(int fd, short events) {
  struct {
    int fd;
    short events, revents;
  } p = {fd, events, 0};
  struct {
    long sec, nsec;
  } zero = {0, 0};
  return SYS5(__NR_ppoll, &p, 1, &zero, 0, 8);
}
CX cx_close_range(unsigned first, unsigned last, unsigned flags) {
  return SYS3(SYS_close_range, first, last, flags);
}
// The kernel's struct sigaction (not glibc's: its mask is 8 bytes here).
struct cx_sigaction {
  unsigned long handler;
  unsigned long flags;
  unsigned long restorer;
  uint64_t mask;
};
CX cx_sigaction_dfl(int sig) {
  struct cx_sigaction sa = {0, 0, 0, 0};  // SIG_DFL
  return SYS4(__NR_rt_sigaction, sig, &sa, 0, 8);
}
CX cx_sigmask_set(uint64_t mask) {
  return SYS4(__NR_rt_sigprocmask, 2 /* SIG_SETMASK */, &mask, 0, 8);
}
CX cx_execve(const char *path, char *const *argv, char *const *envp) {
  return SYS3(__NR_execve, path, argv, envp);
}
CX cx_execveat(int fd, const char *path, char *const *argv, char *const *envp, int flags) {
  return SYS5(__NR_execveat, fd, path, argv, envp, flags);
}
CX cx_seccomp(unsigned op, unsigned flags, const void *args) {
  return SYS3(__NR_seccomp, op, flags, args);
}
CX cx_mknodat(int dfd, const char *name, unsigned mode, uint64_t dev) {
  return SYS4(__NR_mknodat, dfd, name, mode, dev);
}
CX cx_personality(unsigned long persona) {
  return SYS1(__NR_personality, persona);
}
CX cx_umask(int mask) {
  return SYS1(__NR_umask, mask);
}
CX cx_pipe2(int fds[2], int flags) {
  return SYS2(__NR_pipe2, fds, flags);
}
CX cx_setns(int fd, int nstype) {
  return SYS2(__NR_setns, fd, nstype);
}
CX cx_unshare(int flags) {
  return SYS1(__NR_unshare, flags);
}
// fork(2) as a raw clone: the child runs on a copy of our stack (no CLONE_VM).
CX cx_fork(unsigned long flags) {
  return SYS5(__NR_clone, flags, 0, 0, 0, 0);
}
static inline __attribute__((noreturn)) void cx_exit(int code) {
  for (;;) SYS1(__NR_exit_group, code);
}

#undef CX

#endif
