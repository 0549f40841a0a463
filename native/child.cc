// The child side of clone: a flat, ordered table of setup steps, then exec.
//
// This code runs in a copy of a multithreaded Node process, and in the
// vfork-style path it even shares the parent's memory (CLONE_VM) while the
// parent thread is suspended. So: async-signal-safe calls only, no malloc, no
// C++ exceptions, no stdio, no N-API, no writes to any memory but our own
// stack (and the launcher's step-time array, when it times the launch:
// child_args.step_ns, its own memory set aside for this). Every syscall goes through childsys.h (raw, returns -errno):
// errno is the parent thread's thread-local variable here, so nothing may rely on it, and glibc's setxid wrappers would
// signal the parent's threads.
//
// Every step is `static int step_x(const child_args *, child_fail *)`: it
// returns 0 (done, or nothing to do for this plan) or -errno, having put its
// index/detail in the child_fail (protocol.h says what they mean per step).
// No step reports or exits by itself: child_main reports the first failure as
// one child_msg record and exits 127. Adding a step = a new value at the end
// of enum child_step (protocol.h), its name in lib/errors.ts STEP_NAMES, its
// row in lib/plan/describe.ts, a row in STEPS below, and docs/architecture.md.

#include "child.h"

#include <errno.h>
#include <fcntl.h>
#include <linux/capability.h>
#include <linux/filter.h>
#include <linux/seccomp.h>
#include <net/if.h>
#include <poll.h>
#include <sched.h>
#include <signal.h>
#include <string.h>
#include <time.h>
#include <sys/ioctl.h>
#include <sys/mount.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/statfs.h>
#include <sys/statvfs.h>
#include <sys/uio.h>
#include <termios.h>
#include <unistd.h>

#include "childsys.h"
#include "protocol.h"

#ifndef PR_CAP_AMBIENT
#define PR_CAP_AMBIENT 47
#define PR_CAP_AMBIENT_RAISE 2
#define PR_CAP_AMBIENT_CLEAR_ALL 4
#endif
#ifndef ST_RELATIME
#define ST_RELATIME 4096
#endif
#ifndef OVERLAYFS_SUPER_MAGIC
#define OVERLAYFS_SUPER_MAGIC 0x794c7630
#endif

// State that steps hand on to later steps; it lives on the child's stack.
struct child_state {
  int rootfd;  // O_PATH fd of the new root's mount (bind or overlay), from the root steps to pivot_root
};

// child_args as the steps see it: the parent's args plus our own state.
struct child_ctx {
  child_args a;
  child_state st;
};
#define STATE(a) (&((child_ctx *)(a))->st)

// ---------------------------------------------------------------- helpers

// "/proc/self/fd/N" for a syscall that takes only a path (mount(2)): the
// kernel follows the magic link to exactly what the fd refers to. No snprintf
// (not async-signal-safe).
static void fd_path(char buf[32], int fd) {
  static const char prefix[] = "/proc/self/fd/";
  char digits[12];
  int n = 0;
  unsigned v = (unsigned)fd;
  do {
    digits[n++] = (char)('0' + v % 10);
    v /= 10;
  } while (v && n < 11);
  memcpy(buf, prefix, sizeof prefix - 1);
  int k = sizeof prefix - 1;
  while (n) buf[k++] = digits[--n];
  buf[k] = '\0';
}

// Write a whole string to an existing file (procfs: uid_map, setgroups).
static int write_file(const char *path, const char *data) {
  int fd = (int)cx_openat(AT_FDCWD, path, O_WRONLY | O_CLOEXEC, 0);
  if (fd < 0) return fd;
  size_t len = strlen(data);
  long n = cx_write(fd, data, len);
  cx_close(fd);
  return n < 0 ? (int)n : ((size_t)n != len ? -EIO : 0);
}

// Resolve a container path from the root fd; see enum resolve_mode.
// Returns an O_PATH fd or -errno.
static int resolve_in_root(int rootfd, const char *path, int mode) {
  uint64_t resolve = RESOLVE_IN_ROOT | RESOLVE_NO_MAGICLINKS | (mode == RES_EXACT ? RESOLVE_NO_SYMLINKS : 0);
  return (int)cx_openat2(rootfd, path, O_PATH | O_CLOEXEC, resolve);
}

// Mount flags that statfs reports and that a bind remount must repeat:
// leaving out a flag the kernel locked (nosuid, nodev, ro, atime) is EPERM.
static unsigned long locked_flags(int fd) {
  struct statfs sf;
  if (cx_fstatfs(fd, &sf) < 0) return 0;
  unsigned long f = 0;
  if (sf.f_flags & ST_RDONLY) f |= MS_RDONLY;
  if (sf.f_flags & ST_NOSUID) f |= MS_NOSUID;
  if (sf.f_flags & ST_NODEV) f |= MS_NODEV;
  if (sf.f_flags & ST_NOEXEC) f |= MS_NOEXEC;
  if (sf.f_flags & ST_NOATIME) f |= MS_NOATIME;
  if (sf.f_flags & ST_NODIRATIME) f |= MS_NODIRATIME;
  if (sf.f_flags & ST_RELATIME) f |= MS_RELATIME;
  return f;
}

static unsigned long attr_to_ms(uint64_t attr) {
  unsigned long f = 0;
  if (attr & MOUNT_ATTR_RDONLY) f |= MS_RDONLY;
  if (attr & MOUNT_ATTR_NOSUID) f |= MS_NOSUID;
  if (attr & MOUNT_ATTR_NODEV) f |= MS_NODEV;
  if (attr & MOUNT_ATTR_NOEXEC) f |= MS_NOEXEC;
  if (attr & MOUNT_ATTR_NOATIME) f |= MS_NOATIME;
  if (attr & MOUNT_ATTR_NODIRATIME) f |= MS_NODIRATIME;
  return f;
}

// Attributes and propagation for the mount fd refers to (and its submounts
// when recursive), one mount_setattr call each; on kernels without it (< 5.12)
// a remount through the fd's magic link that keeps the locked flags (top
// mount only).
static int setattr_fd(int fd, uint64_t set, uint64_t clr, uint64_t propagation, int recursive, int *call) {
  if (!set && !clr && !propagation) return 0;
  struct nod_mount_attr attr = {set, clr, propagation, 0};
  *call = CALL_MOUNT_SETATTR;
  long r = cx_mount_setattr(fd, "", AT_EMPTY_PATH | (recursive ? AT_RECURSIVE : 0), &attr);
  if (r != -ENOSYS) return (int)r;
  *call = CALL_REMOUNT;
  char path[32];
  fd_path(path, fd);
  if (propagation && (r = cx_mount(NULL, path, NULL, (recursive ? MS_REC : 0) | propagation, NULL)) < 0) return (int)r;
  if (set || clr) {
    unsigned long f = (locked_flags(fd) | attr_to_ms(set)) & ~attr_to_ms(clr);
    if ((r = cx_mount(NULL, path, NULL, MS_REMOUNT | MS_BIND | f, NULL)) < 0) return (int)r;
  }
  return 0;
}

// The op's attributes on the mount at fd: the plain options (recursively for
// rbind), then the recursive ones (rro, rnosuid, ...).
static int op_attrs(const mount_op *op, int fd, int *call) {
  int r = setattr_fd(fd, op->attr_set, op->attr_clr, op->propagation, op->recursive, call);
  if (r == 0) r = setattr_fd(fd, op->rattr_set, op->rattr_clr, 0, 1, call);
  return r;
}

// Attach a copy of the tree at src (a host path, or tree_of when >= 0) onto
// the target fd, then apply the op's attributes to the attached copy.
static int bind_onto(const mount_op *op, const char *src, int tree_of, int tfd, int recursive, int *call) {
  *call = CALL_OPEN_TREE;
  unsigned fl = OPEN_TREE_CLONE | OPEN_TREE_CLOEXEC | (recursive ? AT_RECURSIVE : 0);
  int tree = (int)(tree_of >= 0 ? cx_open_tree(tree_of, "", fl | AT_EMPTY_PATH) : cx_open_tree(AT_FDCWD, src, fl));
  if (tree < 0) return tree;
  *call = CALL_MOVE_MOUNT;
  int r = (int)cx_move_mount_fd_fd(tree, tfd);
  if (r == 0 && op) r = op_attrs(op, tree, call);
  cx_close(tree);
  return r;
}

// Split a container path into its parent (copied into buf) and last name.
static int split_parent(const char *path, char buf[4096], const char **name) {
  size_t n = strlen(path);
  while (n > 1 && path[n - 1] == '/') n--;
  size_t slash = n;
  while (slash > 0 && path[slash - 1] != '/') slash--;
  if (slash == 0 || slash == n || n >= 4096) return -EINVAL;  // not absolute, or the root itself
  memcpy(buf, path, slash);
  buf[slash] = '\0';
  *name = path + slash;
  return 0;
}

// Create a missing mount point (dir, empty file or symlink) whose parent the
// planner expects at exactly this canonical path. The entry itself is made
// with O_EXCL/O_NOFOLLOW semantics: an existing symlink is an error (ELOOP),
// an existing entry of another kind is left to the mount to judge.
static int create_entry(int rootfd, const mount_op *op, int *call) {
  char parent[4096];
  const char *name;
  *call = CALL_SPLIT_PATH;
  int r = split_parent(op->target, parent, &name);
  if (r < 0) return r;
  *call = CALL_RESOLVE;
  int dfd = (int)cx_openat2(rootfd, parent, O_PATH | O_DIRECTORY | O_CLOEXEC,
                            RESOLVE_IN_ROOT | RESOLVE_NO_SYMLINKS | RESOLVE_NO_MAGICLINKS);
  if (dfd < 0) return dfd;
  switch (op->kind) {
    case OP_MKDIR:
      *call = CALL_MKDIR;
      r = (int)cx_mkdirat(dfd, name, op->mode);
      break;
    case OP_MKFILE: {
      *call = CALL_MKFILE;
      int fd = (int)cx_openat(dfd, name, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC | O_NOCTTY | O_NONBLOCK,
                              op->mode);
      r = fd < 0 ? fd : (int)cx_close(fd);
      break;
    }
    case OP_SYMLINK:
      *call = CALL_SYMLINK;
      r = (int)cx_symlinkat(op->source, dfd, name);
      break;
    case OP_MKNOD:
      // A device of linux.devices, made by root outside any user namespace
      // (the planner binds the host's node otherwise); owner and mode as
      // the spec says, whatever our umask.
      *call = CALL_MKNOD;
      r = (int)cx_mknodat(dfd, name, op->mode, op->rdev);
      if (r == 0 && (op->uid >= 0 || op->gid >= 0))
        r = (int)cx_fchownat(dfd, name, op->uid, op->gid, AT_SYMLINK_NOFOLLOW);
      if (r == 0) r = (int)cx_fchmodat(dfd, name, op->mode & 07777);
      cx_close(dfd);
      return r;
  }
  if (r == -EEXIST && op->kind != OP_SYMLINK) {
    // Already there: fine, unless it is a symlink (which the planner would
    // have followed): the tree changed under us.
    struct stat st;
    *call = CALL_EXISTS;
    r = (int)cx_fstatat(dfd, name, &st, AT_SYMLINK_NOFOLLOW);
    if (r == 0 && S_ISLNK(st.st_mode))
      r = -ELOOP;
    else if (r == 0 && op->kind == OP_MKDIR && !S_ISDIR(st.st_mode))
      r = -ENOTDIR;
  } else if (r == -EEXIST) {
    r = 0;
  }
  cx_close(dfd);
  return r;
}

// Whether the op's plan says this errno falls back to binding op->fallback.
static bool falls_back(const mount_op *op, int r) {
  return op->fallback && r < 0 && -r < 64 && (op->fallback_errnos & (1ULL << -r));
}

// Interpret one mount op of the plan against the new root. *call says which
// syscall failed. Every target is found from rootfd (openat2), so no image
// symlink and no earlier mount can send an op to a host path.
static int run_op(int rootfd, const mount_op *op, int *call) {
  if (op->kind == OP_MKDIR || op->kind == OP_MKFILE || op->kind == OP_SYMLINK || op->kind == OP_MKNOD)
    return create_entry(rootfd, op, call);
  *call = CALL_RESOLVE;
  int tfd = resolve_in_root(rootfd, op->target, op->resolve);
  if (tfd < 0) return op->skip_missing && tfd == -ENOENT ? 0 : tfd;
  char path[32];
  fd_path(path, tfd);
  int r = 0;
  struct stat st;
  switch (op->kind) {
    case OP_BIND:
      r = bind_onto(op, op->source, -1, tfd, op->recursive, call);
      break;
    case OP_MOUNT:
      *call = CALL_MOUNT;
      r = (int)cx_mount(op->source, path, op->fstype, op->flags, op->data);
      if (falls_back(op, r)) {
        // Only where the planner chose it: the caller opted in
        // (allowHostProc), or a read-only host tree stands in (sysfs, cgroup).
        r = bind_onto(op, op->fallback, -1, tfd, 1, call);
        if (r < 0 && *call == CALL_OPEN_TREE) *call = CALL_FALLBACK_BIND;
        break;
      }
      if (r == 0 && (op->propagation || op->rattr_set || op->rattr_clr)) {
        // The fd still names the covered mount point: reopen to reach the new mount.
        *call = CALL_RESOLVE;
        int mfd = resolve_in_root(rootfd, op->target, RES_EXACT);
        if (mfd < 0) {
          r = mfd;
          break;
        }
        r = setattr_fd(mfd, 0, 0, op->propagation, 0, call);
        if (r == 0) r = setattr_fd(mfd, op->rattr_set, op->rattr_clr, 0, 1, call);
        cx_close(mfd);
      }
      break;
    case OP_MASK:
      *call = CALL_STAT;
      if ((r = (int)cx_fstat(tfd, &st)) < 0) break;
      *call = CALL_MOUNT;
      if (S_ISDIR(st.st_mode))
        r = (int)cx_mount("tmpfs", path, "tmpfs", MS_RDONLY | MS_NOSUID | MS_NODEV | MS_NOEXEC, "size=0,mode=000");
      else
        r = bind_onto(nullptr, op->source, -1, tfd, 0, call);
      break;
    case OP_READONLY:
      r = bind_onto(op, nullptr, tfd, tfd, 1, call);
      break;
    default:
      r = -EINVAL;
  }
  cx_close(tfd);
  return r;
}

// A host directory as this mount namespace sees it, checked to be the one
// the launcher opened before clone (launcher_fd): the path is walked once,
// without following any symlink, and a directory swapped in since is
// refused (ESTALE) instead of being used.
static int open_checked(const char *path, int launcher_fd, int *call) {
  *call = CALL_RESOLVE;
  int fd =
      (int)cx_openat2(AT_FDCWD, path, O_PATH | O_DIRECTORY | O_CLOEXEC, RESOLVE_NO_SYMLINKS | RESOLVE_NO_MAGICLINKS);
  if (fd < 0) return fd;
  struct stat mine, launcher;
  *call = CALL_IDENTITY;
  int r = (int)cx_fstat(fd, &mine);
  if (r == 0) r = (int)cx_fstat(launcher_fd, &launcher);
  if (r == 0 && (mine.st_dev != launcher.st_dev || mine.st_ino != launcher.st_ino)) r = -ESTALE;
  if (r < 0) {
    cx_close(fd);
    return r;
  }
  return fd;
}

// The rootfs directory, checked as above (the container's root is never
// whatever the path reaches by the time the child looks).
static int open_rootfs_checked(const child_args *a, int *call) {
  return open_checked(a->plan->rootfs, a->rootfs_fd, call);
}

// Copy the lower layer's mode (and owner, where our namespace maps it) onto a
// directory just made in the overlay's upper layer (dfd/name, rel its path
// under the upper layer): the upper directory's attributes are what the
// merged tree shows, so a 0755 upper /root would replace the image's 0700
// one, and /tmp would lose its 1777. The directory is changed through an fd
// opened without following symlinks (a persistent upper is the payload's).
static int copy_lower_attrs(const launch_plan *p, const char *rel, int dfd, const char *name, int *call) {
  size_t nl = strlen(p->overlay_dirs[0]), nr = strlen(rel);
  char lower[4096];
  if (nl + nr >= sizeof lower) return 0;
  memcpy(lower, p->overlay_dirs[0], nl);
  memcpy(lower + nl, rel, nr + 1);
  struct stat st;
  if (cx_fstatat(AT_FDCWD, lower, &st, AT_SYMLINK_NOFOLLOW) < 0 || !S_ISDIR(st.st_mode))
    return 0;  // new in upper: ours
  *call = CALL_CHMOD;
  int fd = (int)cx_openat(dfd, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC, 0);
  if (fd < 0) return fd;
  int r = (int)cx_fchmod(fd, st.st_mode & 07777);
  // An owner our namespace does not map (the overflow id) cannot be given:
  // the directory stays ours, with the image's mode.
  if (r == 0) cx_fchown(fd, st.st_uid, st.st_gid);
  cx_close(fd);
  return r;
}

// One mount point of the plan made in the upper layer (upfd), found from
// upfd without following any symlink or leaving it: an earlier payload
// filled a persistent upper, and a symlink it left there (upper/tmp -> /etc)
// must never send the creation to the host. An existing symlink is ELOOP, an
// existing non-directory where a directory is needed ENOTDIR.
static int make_prep(const launch_plan *p, int upfd, const prep_op *q, int *call) {
  const char *rel = q->path + strlen(p->overlay_dirs[1]);
  char parent[4096], name[256];
  const char *last;
  *call = CALL_SPLIT_PATH;
  int r = split_parent(rel, parent, &last);
  if (r < 0) return r;
  size_t n = strlen(last);
  while (n > 0 && last[n - 1] == '/') n--;
  if (n == 0 || n >= sizeof name) return -ENAMETOOLONG;
  memcpy(name, last, n);
  name[n] = '\0';
  *call = CALL_RESOLVE;
  int dfd = (int)cx_openat2(upfd, parent, O_PATH | O_DIRECTORY | O_CLOEXEC,
                            RESOLVE_IN_ROOT | RESOLVE_NO_SYMLINKS | RESOLVE_NO_MAGICLINKS | RESOLVE_NO_XDEV);
  if (dfd < 0) return dfd;
  if (q->dir) {
    *call = CALL_MKDIR;
    r = (int)cx_mkdirat(dfd, name, 0755);
    if (r == 0) r = copy_lower_attrs(p, rel, dfd, name, call);
  } else {
    *call = CALL_MKFILE;
    int f =
        (int)cx_openat(dfd, name, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC | O_NOCTTY | O_NONBLOCK, 0644);
    r = f < 0 ? f : (int)cx_close(f);
  }
  if (r == -EEXIST) {
    struct stat st;
    *call = CALL_EXISTS;
    r = (int)cx_fstatat(dfd, name, &st, AT_SYMLINK_NOFOLLOW);
    if (r == 0 && S_ISLNK(st.st_mode))
      r = -ELOOP;
    else if (r == 0 && q->dir && !S_ISDIR(st.st_mode))
      r = -ENOTDIR;
  }
  cx_close(dfd);
  return r;
}

// The persistent overlay directory (checked against the launcher's fd)
// bound, alone (not its submounts), at overlay_persist_at in the tmpfs; its
// upper (and work, when writable) must be real directories of that mount.
static int bind_persist(const child_args *a, int *call) {
  const launch_plan *p = a->plan;
  int fd = open_checked(p->overlay_persist, a->persist_fd, call);
  if (fd < 0) return fd;
  *call = CALL_MKDIR;
  int r = (int)cx_mkdirat(AT_FDCWD, p->overlay_persist_at, 0755);
  int tree = -1;
  if (r == 0) {
    *call = CALL_OPEN_TREE;
    r = tree = (int)cx_open_tree(fd, "", OPEN_TREE_CLONE | OPEN_TREE_CLOEXEC | AT_EMPTY_PATH);
  }
  cx_close(fd);
  if (r >= 0) {
    *call = CALL_MOVE_MOUNT;
    r = (int)cx_move_mount_fd(tree, p->overlay_persist_at);
  }
  static const char *const names[2] = {"upper", "work"};
  for (int i = 0; i < (p->overlay_persist_ro ? 1 : 2) && r == 0; i++) {
    *call = CALL_RESOLVE;
    int d = (int)cx_openat2(tree, names[i], O_PATH | O_DIRECTORY | O_CLOEXEC,
                            RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS | RESOLVE_NO_MAGICLINKS | RESOLVE_NO_XDEV);
    r = d < 0 ? d : (int)cx_close(d);
  }
  if (tree >= 0) cx_close(tree);
  return r;
}

// The image as the lower layer of an overlay on a fresh tmpfs, mounted at the
// rootfs path itself so every later op and pivot_root use the same paths:
// clone the image's tree, cover the rootfs path with a tmpfs, attach the
// clone inside it as "lower", then stack the overlay on top at the same path.
// With a persistent overlay directory, it is bound into the tmpfs too, and
// the upper layer (or an extra lower one, read-only) is its "upper".
// *index: 1 + the prep op that failed, else 0.
static int overlay_root(const child_args *a, int rfd, int *call, int *index) {
  const launch_plan *p = a->plan;
  char rpath[32];
  fd_path(rpath, rfd);
  *call = CALL_OPEN_TREE;
  int tree = (int)cx_open_tree(rfd, "", OPEN_TREE_CLONE | OPEN_TREE_CLOEXEC | AT_RECURSIVE | AT_EMPTY_PATH);
  if (tree < 0) return tree;
  *call = CALL_MOUNT;
  int r = (int)cx_mount("tmpfs", rpath, "tmpfs", MS_NOSUID | MS_NODEV, p->overlay_tmpfs_data);
  bool persist_rw = p->overlay_persist && !p->overlay_persist_ro;
  for (int i = 0; i < (persist_rw ? 1 : 3) && r == 0; i++) {  // a writable persistent overlay brings upper and work
    *call = CALL_MKDIR;
    r = (int)cx_mkdirat(AT_FDCWD, p->overlay_dirs[i], 0755);
  }
  if (r == 0) {
    *call = CALL_MOVE_MOUNT;
    r = (int)cx_move_mount_fd(tree, p->overlay_dirs[0]);
  }
  cx_close(tree);
  if (r == 0 && p->overlay_persist) r = bind_persist(a, call);
  if (r < 0) return r;
  *call = CALL_RESOLVE;
  int upfd = (int)cx_openat2(AT_FDCWD, p->overlay_dirs[1], O_PATH | O_DIRECTORY | O_CLOEXEC,
                             RESOLVE_NO_SYMLINKS | RESOLVE_NO_MAGICLINKS);
  if (upfd < 0) return upfd;
  for (int i = 0; i < p->n_overlay_prep && r == 0; i++) {
    r = make_prep(p, upfd, &p->overlay_prep[i], call);
    if (r < 0) *index = i + 1;
  }
  cx_close(upfd);
  if (r < 0) return r;
  *call = CALL_MOUNT;
  return (int)cx_mount("overlay", p->rootfs, "overlay", 0, p->overlay_data);
}

static int set_caps(const launch_plan *p) {
  struct __user_cap_header_struct hdr = {_LINUX_CAPABILITY_VERSION_3, 0};
  struct __user_cap_data_struct data[2];
  for (int i = 0; i < 2; i++) {
    data[i].effective = (uint32_t)(p->cap_effective >> (32 * i));
    data[i].permitted = (uint32_t)(p->cap_permitted >> (32 * i));
    data[i].inheritable = (uint32_t)(p->cap_inheritable >> (32 * i));
  }
  return (int)cx_capset(&hdr, data);
}

// ------------------------------------------------------------------ steps

// Default dispositions everywhere: Node ignores SIGPIPE and handles others,
// and SIG_IGN survives execve. The mask stays full until just before exec.
static int step_reset_signals(const child_args *, child_fail *) {
  for (int sig = 1; sig <= 64; sig++) {
    if (sig == SIGKILL || sig == SIGSTOP) continue;
    cx_sigaction_dfl(sig);  // nothing to do about a failure: the exec resets handlers anyway
  }
  return 0;
}

// The parent-death signal, and a check that the launching process did not
// die before it was set (the signal would then never come). getppid() cannot
// tell inside a new PID namespace (it is 0 there), so ask the launcher's
// pidfd, which becomes readable once that process is gone. Armed twice:
// first thing (index 0), and after the uid change that clears it (index 1).
static int parent_death(const child_args *a, child_fail *f, int index) {
  f->index = index;
  if (!a->plan->pdeathsig) return 0;
  long r = cx_prctl(PR_SET_PDEATHSIG, a->plan->pdeathsig, 0);
  if (r < 0) return (int)r;
  // Gone already: nobody will read our report; ESRCH ends the child the same way.
  if (a->parent_pidfd >= 0 && cx_poll_now(a->parent_pidfd, POLLIN) > 0) return -ESRCH;
  return 0;
}
static int step_parent_death_early(const child_args *a, child_fail *f) {
  return parent_death(a, f, 0);
}
static int step_parent_death(const child_args *a, child_fail *f) {
  return parent_death(a, f, 1);
}

// Join mode: the namespaces given by path (or an exec's target's), user
// first, so that the others are joined, and the new ones made, with the
// capabilities and ownership of that user namespace; then the new ones,
// user first again; then a fork into the pid and time namespaces, which a
// process's setns/unshare gives only to its children. The fork is
// CLONE_PARENT (the launcher's child, as the rest of the setup expects);
// this process reports its pid and exits, and the new one waits until that
// record is written, so the launcher reads MSG_PID before anything of it.
static int step_join_namespaces(const child_args *a, child_fail *f) {
  const launch_plan *p = a->plan;
  long r;
  for (int i = 0; i < p->n_joins; i++) {
    f->index = i;
    if ((r = cx_setns(a->ns_fds[i], p->joins[i].type)) < 0) return (int)r;
  }
  for (int i = 0; i < p->n_joins; i++) cx_close(a->ns_fds[i]);
  f->index = JOIN_UNSHARE_USER;
  if ((p->unshare_flags & CLONE_NEWUSER) && (r = cx_unshare(CLONE_NEWUSER)) < 0) return (int)r;
  f->index = JOIN_UNSHARE;
  int rest = p->unshare_flags & ~CLONE_NEWUSER;
  if (rest && (r = cx_unshare(rest)) < 0) return (int)r;
  if (p->time_offsets) {
    // Only before any process is in the new time namespace: us, its maker, not yet.
    f->index = JOIN_TIME_OFFSETS;
    if ((r = write_file("/proc/self/timens_offsets", p->time_offsets)) < 0) return (int)r;
  }
  if (!p->fork_after_join) return 0;
  f->index = JOIN_FORK;
  int gate[2];
  if ((r = cx_pipe2(gate, O_CLOEXEC)) < 0) return (int)r;
  long pid = cx_fork(CLONE_PARENT | SIGCHLD);
  if (pid < 0) return (int)pid;
  if (pid == 0) {
    char b;
    cx_close(gate[1]);
    do {
      r = cx_read(gate[0], &b, 1);
    } while (r == -EINTR);
    cx_close(gate[0]);
    return r == 1 ? 0 : -ECANCELED;
  }
  struct child_msg m = {MSG_PID, STEP_JOIN_NAMESPACES, 0, (int32_t)pid, 0};
  long n;
  do {
    n = cx_write(a->report_fd, &m, sizeof m);
  } while (n == -EINTR);
  char b = 'P';
  cx_write(gate[1], &b, 1);
  cx_exit(0);
}

// Place the requested fds on 0, 1, 2. Sources below 3 are first moved up so
// that placing one cannot clobber another (e.g. stdout given as fd 0).
static int step_stdio(const child_args *a, child_fail *) {
  int src[3];
  long r;
  for (int i = 0; i < 3; i++) {
    src[i] = a->stdio[i];
    if (src[i] >= 0 && src[i] < 3 && src[i] != i) {
      if ((r = cx_fcntl(src[i], F_DUPFD_CLOEXEC, 3)) < 0) return (int)r;
      src[i] = (int)r;
    }
  }
  for (int i = 0; i < 3; i++) {
    if (src[i] < 0) continue;
    r = src[i] == i ? cx_fcntl(i, F_SETFD, 0) : cx_dup3(src[i], i);
    if (r < 0) return (int)r;
  }
  // Node (libuv) sets O_NONBLOCK on the pipes and terminals it uses for its
  // own stdio, and the flag lives in the open file description we share: a
  // payload reading or writing a non-blocking stdin/stdout gets EAGAIN and
  // loses data. Clear it, as libuv does for child_process.
  for (int i = 0; i < 3; i++) {
    long fl = cx_fcntl(i, F_GETFL, 0);
    if (fl >= 0 && (fl & O_NONBLOCK) && (r = cx_fcntl(i, F_SETFL, fl & ~O_NONBLOCK)) < 0) return (int)r;
  }
  return 0;
}

// A session of our own: a terminal's Ctrl-C (sent to its foreground process
// group) and a batch system's signal to the launcher's process group reach
// the launcher only, which forwards them once; the container never joins
// the launcher's terminal job control.
static int step_setsid(const child_args *, child_fail *) {
  long r = cx_setsid();
  return r < 0 ? (int)r : 0;
}

// Unprivileged single-ID map written by the child itself: it holds
// CAP_SETUID in its new namespace and maps only its own euid, which the
// kernel allows; gid_map needs setgroups "deny" first (CVE-2014-8989).
static int step_setgroups_deny(const child_args *a, child_fail *) {
  if (a->plan->id_mode != IDMAP_SELF) return 0;
  int r = write_file("/proc/self/setgroups", "deny");
  return r == -ENOENT ? 0 : r;  // kernels before 3.19 have no such file
}
static int step_uid_map(const child_args *a, child_fail *) {
  return a->plan->id_mode == IDMAP_SELF ? write_file("/proc/self/uid_map", a->plan->uid_map) : 0;
}
static int step_gid_map(const child_args *a, child_fail *) {
  return a->plan->id_mode == IDMAP_SELF ? write_file("/proc/self/gid_map", a->plan->gid_map) : 0;
}

// Block until the parent has written our maps; anything but the agreed
// byte (including EOF when the parent gave up) aborts.
static int step_wait_maps(const child_args *a, child_fail *) {
  if (a->plan->id_mode != IDMAP_PARENT && a->plan->id_mode != IDMAP_HELPER) return 0;
  char b = 0;
  long n;
  do {
    n = cx_read(a->sync_fd, &b, 1);
  } while (n == -EINTR);
  if (!a->plan->hooks_pause) cx_close(a->sync_fd);  // else step_hooks reads it once more
  if (n < 0) return (int)n;
  return n == 1 && b == SYNC_MAPS_WRITTEN ? 0 : -ECANCELED;
}

// Hooks before pivot_root (runtime-spec's prestart, createRuntime,
// createContainer): every namespace exists and every mount is in place; we
// tell the launcher (MSG_HOOKS) and wait for its byte. Anything else than
// SYNC_HOOKS_DONE (a failed hook, the launcher gone) ends the launch.
static int step_hooks(const child_args *a, child_fail *) {
  if (!a->plan->hooks_pause) return 0;
  struct child_msg m = {MSG_HOOKS, STEP_HOOKS, 0, 0, 0};
  long n;
  do {
    n = cx_write(a->report_fd, &m, sizeof m);
  } while (n == -EINTR);
  if (n != (long)sizeof m) return n < 0 ? (int)n : -EIO;
  char b = 0;
  do {
    n = cx_read(a->sync_fd, &b, 1);
  } while (n == -EINTR);
  cx_close(a->sync_fd);
  if (n < 0) return (int)n;
  return n == 1 && b == SYNC_HOOKS_DONE ? 0 : -ECANCELED;
}

// When the parent mapped ranges, our own host id may be unmapped (we would
// create files as the overflow id, EOVERFLOW): become the namespace's root.
static int step_setup_ids(const child_args *a, child_fail *f) {
  const launch_plan *p = a->plan;
  long r;
  f->index = 0;
  if (p->setup_gid >= 0 && (r = cx_setresgid(p->setup_gid)) < 0) return (int)r;
  f->index = 1;
  if (p->setup_uid >= 0 && (r = cx_setresuid(p->setup_uid)) < 0) return (int)r;
  return 0;
}

// A session keyring of our own: the launcher's (Kerberos and AFS tokens
// live there) must not be readable by the payload. Kernels without keys
// have nothing to hide.
static int step_keyring(const child_args *, child_fail *) {
  long r = cx_keyctl(KEYCTL_JOIN_SESSION_KEYRING, 0);
  return r < 0 && r != -ENOSYS ? (int)r : 0;
}

// From here on we hold every capability in our own user namespace.
static int step_hostname(const child_args *a, child_fail *) {
  const char *h = a->plan->hostname;
  return h ? (int)cx_sethostname(h, strlen(h)) : 0;
}
static int step_domainname(const child_args *a, child_fail *) {
  const char *d = a->plan->domainname;
  return d ? (int)cx_setdomainname(d, strlen(d)) : 0;
}

// Nothing we mount may propagate back to the host; slave (the default)
// still lets host mounts (autofs under /cvmfs) propagate in. Never shared
// here, whatever linux.rootfsPropagation asks: the copies of a shared host
// mount stay in the host's peer group (root without a user namespace), so
// the rootfs bind and every mount under it would appear on the host, and
// pivot_root(2) refuses a new root whose parent mount is shared (EINVAL).
static int step_root_propagation(const child_args *a, child_fail *) {
  uint64_t prop = a->plan->root_propagation;
  return prop ? (int)cx_mount(NULL, "/", NULL, MS_REC | prop, NULL) : 0;
}

// linux.rootfsPropagation on the container's own "/" once it is the root
// (as runc applies it after pivot_root): a shared "/" here starts a peer
// group of the container's own, still a slave of the host's, so mounts made
// inside reach binds of "/" inside and nothing of the host.
static int step_root_propagation_after(const child_args *a, child_fail *f) {
  uint64_t prop = a->plan->root_propagation_after;
  if (!prop || !a->plan->rootfs) return 0;
  f->index = 1;
  return (int)cx_mount(NULL, "/", NULL, prop, NULL);
}

// The rootfs bound onto itself (pivot_root needs the new root to be a mount
// point): a recursive clone of the checked directory attached onto it, whose
// fd is the root fd every later path is resolved from.
static int step_bind_rootfs(const child_args *a, child_fail *f) {
  if (a->plan->overlay_data || !a->plan->rootfs) return 0;
  int rfd = open_rootfs_checked(a, &f->detail);
  if (rfd < 0) return rfd;
  f->detail = CALL_OPEN_TREE;
  int tree = (int)cx_open_tree(rfd, "", OPEN_TREE_CLONE | OPEN_TREE_CLOEXEC | AT_RECURSIVE | AT_EMPTY_PATH);
  int r = tree;
  if (tree >= 0) {
    f->detail = CALL_MOVE_MOUNT;
    r = (int)cx_move_mount_fd_fd(tree, rfd);
  }
  cx_close(rfd);
  if (r < 0) {
    if (tree >= 0) cx_close(tree);
    return r;
  }
  STATE(a)->rootfd = tree;  // attached now: the fd names the new root mount
  return 0;
}

// The overlay root (see overlay_root), then its fd, checked to be the
// overlay we just stacked (not whatever the path reaches now).
static int step_overlay_root(const child_args *a, child_fail *f) {
  const launch_plan *p = a->plan;
  if (!p->overlay_data) return 0;
  int rfd = open_rootfs_checked(a, &f->detail);
  if (rfd < 0) return rfd;
  int r = overlay_root(a, rfd, &f->detail, &f->index);
  cx_close(rfd);
  if (r < 0) return r;
  f->detail = CALL_RESOLVE;
  int fd = (int)cx_openat2(AT_FDCWD, p->rootfs, O_PATH | O_DIRECTORY | O_CLOEXEC,
                           RESOLVE_NO_SYMLINKS | RESOLVE_NO_MAGICLINKS);
  if (fd < 0) return fd;
  struct statfs sf;
  f->detail = CALL_IDENTITY;
  if ((r = (int)cx_fstatfs(fd, &sf)) == 0 && (unsigned long)sf.f_type != OVERLAYFS_SUPER_MAGIC) r = -ESTALE;
  if (r < 0) {
    cx_close(fd);
    return r;
  }
  STATE(a)->rootfd = fd;
  return 0;
}

// Device nodes that came with the image are inert: the root and every
// mount under it are nodev. Only the /dev the runtime makes (binds of the
// host's null, zero, ...; mounted later) has devices.
static int step_root_nodev(const child_args *a, child_fail *f) {
  if (!a->plan->root_nodev) return 0;
  return setattr_fd(STATE(a)->rootfd, MOUNT_ATTR_NODEV, 0, 0, 1, &f->detail);
}

// The plan's mount ops, in order.
static int step_mounts(const child_args *a, child_fail *f) {
  const launch_plan *p = a->plan;
  for (int i = 0; i < p->n_ops; i++) {
    f->index = i;
    int r = run_op(STATE(a)->rootfd, &p->ops[i], &f->detail);
    if (r < 0) return r;
  }
  return 0;
}

// Bring up lo in a new network namespace (it starts down); nothing else.
static int step_loopback(const child_args *a, child_fail *) {
  if (!a->plan->loopback) return 0;
  int s = (int)cx_socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
  if (s < 0) return s;
  struct ifreq ifr;
  memset(&ifr, 0, sizeof ifr);
  ifr.ifr_name[0] = 'l';
  ifr.ifr_name[1] = 'o';
  int r = (int)cx_ioctl(s, SIOCGIFFLAGS, (long)&ifr);
  if (r == 0) {
    ifr.ifr_flags |= IFF_UP | IFF_RUNNING;
    r = (int)cx_ioctl(s, SIOCSIFFLAGS, (long)&ifr);
  }
  cx_close(s);
  return r;
}

// linux.sysctl, before pivot_root: /proc here is still the launcher's
// procfs, and /proc/sys/net and the ipc keys show the namespaces of the
// process that opens them, which are our own (the planner allows only
// those). Written before the container's /proc/sys is made read-only.
static int step_sysctl(const child_args *a, child_fail *f) {
  const launch_plan *p = a->plan;
  for (int i = 0; i < p->n_sysctls; i++) {
    f->index = i;
    int r = write_file(p->sysctls[i].path, p->sysctls[i].value);
    if (r < 0) return r;
  }
  return 0;
}

// process.oomScoreAdj (index 0; lowering it needs CAP_SYS_RESOURCE of the
// host), linux.personality (index 1), process.user.umask: attributes the
// payload inherits across exec.
static int step_process_attrs(const child_args *a, child_fail *f) {
  const launch_plan *p = a->plan;
  if (p->set_oom_score_adj) {
    f->index = 0;
    char buf[16];
    int v = p->oom_score_adj, n = 0;
    unsigned u = v < 0 ? (unsigned)-v : (unsigned)v;
    char digits[12];
    int k = 0;
    do {
      digits[k++] = (char)('0' + u % 10);
      u /= 10;
    } while (u && k < 11);
    if (v < 0) buf[n++] = '-';
    while (k) buf[n++] = digits[--k];
    buf[n] = '\0';
    int r = write_file("/proc/self/oom_score_adj", buf);
    if (r < 0) return r;
  }
  if (p->personality >= 0) {
    f->index = 1;
    long r = cx_personality((unsigned long)p->personality);
    if (r < 0) return (int)r;
  }
  if (p->umask >= 0) cx_umask(p->umask);
  return 0;
}

// pivot_root(".", ".") stacks the old root on the new one; making it slave
// before the detach keeps the unmount from propagating to the host (crun,
// runc and LXC do the same).
static int step_pivot_root(const child_args *a, child_fail *) {
  if (!a->plan->rootfs) return 0;  // an exec: setns into the mount namespace set root and cwd to its root
  int rootfd = STATE(a)->rootfd;
  long r;
  if ((r = cx_fchdir(rootfd)) < 0) return (int)r;
  if ((r = cx_pivot_root(".", ".")) < 0) return (int)r;
  if ((r = cx_mount(NULL, ".", NULL, MS_SLAVE | MS_REC, NULL)) < 0) return (int)r;
  if ((r = cx_umount2(".", MNT_DETACH)) < 0) return (int)r;
  if ((r = cx_chdir("/")) < 0) return (int)r;
  cx_close(rootfd);
  STATE(a)->rootfd = -1;
  return 0;
}

static int step_root_readonly(const child_args *a, child_fail *f) {
  if (!a->plan->root_readonly) return 0;
  f->detail = CALL_RESOLVE;
  int fd = (int)cx_openat(AT_FDCWD, "/", O_PATH | O_DIRECTORY | O_CLOEXEC, 0);
  if (fd < 0) return fd;
  int r = setattr_fd(fd, MOUNT_ATTR_RDONLY, 0, 0, 0, &f->detail);
  cx_close(fd);
  return r;
}

// process.terminal, as runc and crun do it: a pty from the container's own
// devpts (after pivot_root, so /dev/pts is the new instance), its master sent
// to the parent over the console socket, its slave our controlling terminal
// and stdio. The slave belongs to the payload's user.
static int step_terminal(const child_args *a, child_fail *) {
  const launch_plan *p = a->plan;
  if (!p->terminal) return 0;
  int master = (int)cx_openat(AT_FDCWD, "/dev/pts/ptmx", O_RDWR | O_NOCTTY | O_CLOEXEC | O_NOFOLLOW, 0);
  if (master < 0) return master;
  int r = 0, slave = -1, unlock = 0;
  struct stat st;
  if ((r = (int)cx_fstat(master, &st)) == 0 && !S_ISCHR(st.st_mode)) r = -ENOTTY;  // not our devpts: refuse
  if (r == 0) r = (int)cx_ioctl(master, TIOCSPTLCK, (long)&unlock);
  if (r == 0) {
    long s = cx_ioctl(master, TIOCGPTPEER, O_RDWR | O_NOCTTY | O_CLOEXEC);
    if (s < 0)
      r = (int)s;
    else
      slave = (int)s;
  }
  if (r == 0 && p->console_rows && p->console_cols) {
    struct winsize ws = {p->console_rows, p->console_cols, 0, 0};
    r = (int)cx_ioctl(slave, TIOCSWINSZ, (long)&ws);
  }
  if (r == 0 && p->set_ids) r = (int)cx_fchown(slave, p->uid, -1);
  if (r == 0) {
    // To our own socketpair one byte; to a caller's console socket (runc's
    // --console-socket protocol, what conmon and containerd's shim read) the
    // pty's name, "/dev/pts/N", as the data beside the fd, as runc sends it.
    char name[32] = "T";
    unsigned long len = 1;
    unsigned ptn = 0;
    if (a->console_named && cx_ioctl(master, TIOCGPTN, (long)&ptn) == 0) {
      static const char prefix[] = "/dev/pts/";
      char digits[12];
      int n = 0;
      do {
        digits[n++] = (char)('0' + ptn % 10);
        ptn /= 10;
      } while (ptn && n < 11);
      memcpy(name, prefix, sizeof prefix - 1);
      len = sizeof prefix - 1;
      while (n) name[len++] = digits[--n];
      name[len] = '\0';
    }
    struct iovec iov = {name, len};
    union {
      struct cmsghdr h;
      char buf[CMSG_SPACE(sizeof(int))];
    } u;
    memset(&u, 0, sizeof u);
    struct msghdr msg;
    memset(&msg, 0, sizeof msg);
    msg.msg_iov = &iov;
    msg.msg_iovlen = 1;
    msg.msg_control = u.buf;
    msg.msg_controllen = sizeof u.buf;
    struct cmsghdr *c = CMSG_FIRSTHDR(&msg);
    c->cmsg_level = SOL_SOCKET;
    c->cmsg_type = SCM_RIGHTS;
    c->cmsg_len = CMSG_LEN(sizeof(int));
    memcpy(CMSG_DATA(c), &master, sizeof master);
    long n;
    do {
      n = cx_sendmsg(a->console_fd, &msg, MSG_NOSIGNAL);
    } while (n == -EINTR);
    r = n == (long)len ? 0 : n < 0 ? (int)n : -EIO;
  }
  cx_close(master);
  cx_close(a->console_fd);
  if (r == 0) r = (int)cx_ioctl(slave, TIOCSCTTY, 0);
  for (int i = 0; i < 3 && r == 0; i++) {
    long d = slave != i ? cx_dup3(slave, i) : i;  // dup3 returns the new fd, not 0
    if (d < 0) r = (int)d;
  }
  if (slave > 2) cx_close(slave);
  return r < 0 ? r : 0;
}

static int step_rlimits(const child_args *a, child_fail *f) {
  const launch_plan *p = a->plan;
  for (int i = 0; i < p->n_rlimits; i++) {
    f->index = i;
    long r = cx_prlimit(p->rlimits[i].resource, p->rlimits[i].soft, p->rlimits[i].hard);
    if (r < 0) return (int)r;
  }
  return 0;
}

// Drop to the payload's credentials and capabilities. The bounding set goes
// first (it needs CAP_SETPCAP, which the uid change would take away); keepcaps
// lets the capabilities the spec keeps survive a change to a non-zero uid.
static int step_cap_bounding(const child_args *a, child_fail *f) {
  const launch_plan *p = a->plan;
  for (int c = 0; c <= p->cap_last; c++) {
    if (p->cap_bounding & (1ULL << c)) continue;
    f->index = c;
    long r = cx_prctl(PR_CAPBSET_DROP, c, 0);
    if (r < 0 && r != -EINVAL) return (int)r;  // EINVAL: a capability this kernel lacks
  }
  if (p->set_ids) cx_prctl(PR_SET_KEEPCAPS, 1, 0);
  return 0;
}
static int step_setgroups(const child_args *a, child_fail *) {
  const launch_plan *p = a->plan;
  return p->set_ids && p->set_groups ? (int)cx_setgroups(p->n_groups, p->groups) : 0;
}
static int step_setgid(const child_args *a, child_fail *) {
  return a->plan->set_ids ? (int)cx_setresgid(a->plan->gid) : 0;
}
static int step_setuid(const child_args *a, child_fail *) {
  return a->plan->set_ids ? (int)cx_setresuid(a->plan->uid) : 0;
}
static int step_capset(const child_args *a, child_fail *) {
  return set_caps(a->plan);
}
static int step_cap_ambient(const child_args *a, child_fail *f) {
  const launch_plan *p = a->plan;
  cx_prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL, 0);  // nothing raised yet on kernels without ambient
  for (int c = 0; c <= p->cap_last; c++) {
    if (!(p->cap_ambient & (1ULL << c))) continue;
    f->index = c;
    long r = cx_prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_RAISE, c);
    if (r < 0) return (int)r;
  }
  return 0;
}

// As the payload's user, without capabilities: a cwd it may not enter is an error, not a surprise.
static int step_chdir(const child_args *a, child_fail *) {
  return (int)cx_chdir(a->plan->cwd);
}

static int step_no_new_privs(const child_args *a, child_fail *) {
  return a->plan->no_new_privs ? (int)cx_prctl(PR_SET_NO_NEW_PRIVS, 1, 0) : 0;
}

// Every fd above stdio closes at exec: the Node process's sockets, files
// and pipes must not reach the payload. Marking (not closing) keeps the
// report pipe usable until exec succeeds. The caller's fds 3 .. 3+N-1
// (preserveFds, runc's --preserve-fds) stay open at their numbers: the
// launcher checked they are open, so every fd it opened itself lies above.
static int step_close_fds(const child_args *a, child_fail *) {
  unsigned first = 3 + (unsigned)a->preserve_fds;
  for (unsigned fd = 3; fd < first; fd++) {
    long r = cx_fcntl((int)fd, F_SETFD, 0);
    if (r < 0) return (int)r;
  }
  long r = cx_close_range(first, ~0U, CLOSE_RANGE_CLOEXEC);
  if (r == 0) return 0;
  // Kernels before 5.11 (ENOSYS, EINVAL), or a seccomp profile loaded before
  // this step (no_new_privs off) that lacks close_range: EPERM under
  // runtime-tools' profile. As runc's CloseExecFrom: each fd listed in
  // /proc/self/fd (the container's proc: our own fd table), else by number.
  if (r != -ENOSYS && r != -EINVAL && r != -EPERM) return (int)r;
  int dir = (int)cx_openat(AT_FDCWD, "/proc/self/fd", O_RDONLY | O_DIRECTORY | O_CLOEXEC, 0);
  if (dir < 0) {
    for (unsigned fd = first; fd < 65536; fd++) cx_fcntl((int)fd, F_SETFD, FD_CLOEXEC);
    return 0;
  }
  alignas(8) char buf[2048];
  long n;
  while ((n = cx_getdents64(dir, buf, sizeof buf)) > 0) {
    for (long off = 0; off < n;) {
      const char *rec = buf + off;
      unsigned short reclen;
      __builtin_memcpy(&reclen, rec + 16,
                       sizeof reclen);  // struct linux_dirent64: d_ino, d_off, d_reclen, d_type, d_name
      const char *name = rec + 19;
      unsigned long fd = 0;
      bool num = *name != 0;
      for (const char *c = name; *c; c++) {
        if (*c < '0' || *c > '9') {
          num = false;
          break;
        }
        fd = fd * 10 + (unsigned long)(*c - '0');
      }
      if (num && fd >= first && (int)fd != dir) {
        long e = cx_fcntl((int)fd, F_SETFD, FD_CLOEXEC);
        if (e < 0 && e != -EBADF) {
          cx_close(dir);
          return (int)e;  // a profile that refuses fcntl too: better no container than a leaked fd
        }
      }
      off += reclen;
    }
  }
  cx_close(dir);
  return n < 0 ? (int)n : 0;
}

// linux.seccomp: load the program compiled before clone (lib/seccomp). With
// no_new_privs it is loaded last before exec, so only the exec (and the
// init, whose syscalls every runtime-built profile allows) runs under it.
// Without no_new_privs the kernel wants CAP_SYS_ADMIN in our user namespace,
// which the credential steps drop: then, as runc does, it is loaded just
// before them (index 0), and the rest of the setup runs under the filter.
static int load_seccomp(const launch_plan *p) {
  struct sock_fprog prog = {p->seccomp_len, const_cast<struct sock_filter *>(p->seccomp_filter)};
  return (int)cx_seccomp(SECCOMP_SET_MODE_FILTER, p->seccomp_flags, &prog);
}
static int step_seccomp_early(const child_args *a, child_fail *f) {
  f->index = 0;
  return a->plan->seccomp_len && !a->plan->no_new_privs ? load_seccomp(a->plan) : 0;
}
static int step_seccomp(const child_args *a, child_fail *f) {
  f->index = 1;
  return a->plan->seccomp_len && a->plan->no_new_privs ? load_seccomp(a->plan) : 0;
}

// The init inherits the report fd (it sends EXEC_OK and the exit status)
// and keeps every signal blocked until it has its own handling in place:
// from the parent namespace a default-disposition signal would kill it.
static int step_exec_init(const child_args *a, child_fail *) {
  if (!a->plan->use_init) return 0;
  long r = cx_fcntl(a->report_fd, F_SETFD, 0);
  if (r < 0) return (int)r;
  if (a->gate_fd >= 0 && (r = cx_fcntl(a->gate_fd, F_SETFD, 0)) < 0) return (int)r;  // the init closes it
  return (int)cx_execveat(a->init_fd, "", a->init_argv, a->plan->envp, AT_EMPTY_PATH);
}

// Without an init: the payload gets an empty signal mask, then is exec'd.
static int step_exec(const child_args *a, child_fail *) {
  cx_sigmask_set(0);
  return (int)cx_execve(a->plan->exec_path, a->plan->argv, a->plan->envp);
}

// The steps in the order they run. Why this order: the joins (join mode)
// first, since they may fork and the process that goes on arms its own
// parent-death signal; the parent-death signal then (a launcher killed from here on takes the child with it); the id
// maps before anything that needs capabilities in the new namespace; every mount before pivot_root; the terminal after
// it (the container's devpts); the bounding set before the uid change (it needs CAP_SETPCAP); chdir as the payload's
// user; the parent-death signal again after the uid change, which clears it; exec last.
struct step_row {
  int step;
  int (*run)(const child_args *, child_fail *);
};
static const step_row STEPS[] = {
    {STEP_SIGNALS, step_reset_signals},
    {STEP_JOIN_NAMESPACES, step_join_namespaces},
    {STEP_PARENT_DEATH, step_parent_death_early},
    {STEP_STDIO, step_stdio},
    {STEP_SETSID, step_setsid},
    {STEP_SETGROUPS_DENY, step_setgroups_deny},
    {STEP_UID_MAP, step_uid_map},
    {STEP_GID_MAP, step_gid_map},
    {STEP_WAIT_MAPS, step_wait_maps},
    {STEP_SETUP_IDS, step_setup_ids},
    {STEP_KEYRING, step_keyring},
    {STEP_HOSTNAME, step_hostname},
    {STEP_DOMAINNAME, step_domainname},
    {STEP_ROOT_PROPAGATION, step_root_propagation},
    {STEP_BIND_ROOTFS, step_bind_rootfs},
    {STEP_OVERLAY_ROOT, step_overlay_root},
    {STEP_ROOT_NODEV, step_root_nodev},
    {STEP_MOUNT, step_mounts},
    {STEP_LOOPBACK, step_loopback},
    {STEP_SYSCTL, step_sysctl},
    {STEP_PROCESS_ATTRS, step_process_attrs},
    {STEP_HOOKS, step_hooks},
    {STEP_PIVOT_ROOT, step_pivot_root},
    {STEP_ROOT_PROPAGATION, step_root_propagation_after},
    {STEP_ROOT_READONLY, step_root_readonly},
    {STEP_TERMINAL, step_terminal},
    {STEP_RLIMIT, step_rlimits},
    {STEP_SECCOMP, step_seccomp_early},
    {STEP_CAP_BOUNDING, step_cap_bounding},
    {STEP_SETGROUPS, step_setgroups},
    {STEP_SETGID, step_setgid},
    {STEP_SETUID, step_setuid},
    {STEP_CAPSET, step_capset},
    {STEP_CAP_AMBIENT, step_cap_ambient},
    {STEP_CHDIR, step_chdir},
    {STEP_NO_NEW_PRIVS, step_no_new_privs},
    {STEP_PARENT_DEATH, step_parent_death},
    {STEP_CLOSE_FDS, step_close_fds},
    {STEP_SECCOMP, step_seccomp},
    {STEP_EXEC_INIT, step_exec_init},
    {STEP_EXEC, step_exec},
};

static_assert(sizeof STEPS / sizeof STEPS[0] < CHILD_STEP_TIMES, "child_args.step_ns has a slot per step row");

int child_step_rows(int *steps, int max) {
  int n = 0;
  for (const step_row &s : STEPS)
    if (n < max) steps[n++] = s.step;
  return n;
}

// CLOCK_MONOTONIC in ns: clock_gettime is async-signal-safe (the vDSO; no errno on success).
static uint64_t child_now_ns() {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

int child_main(void *arg) {
  child_ctx ctx;
  ctx.a = *(const child_args *)arg;  // our own copy, beside our own state
  ctx.st.rootfd = -1;
  const child_args *a = &ctx.a;
  if (a->step_ns) a->step_ns[0] = child_now_ns();
  int r = -EINVAL;
  child_fail f = {STEP_EXEC, 0, 0};
  for (size_t i = 0; i < sizeof STEPS / sizeof STEPS[0]; i++) {
    f = child_fail{STEPS[i].step, 0, 0};
    if ((r = STEPS[i].run(a, &f)) < 0) break;
    if (a->step_ns) a->step_ns[i + 1] = child_now_ns();
  }
  // Only a failure gets here (a successful exec does not return): one record, then exit.
  struct child_msg m = {MSG_ERROR, f.step, -r, f.index, f.detail};
  long n;
  do {
    n = cx_write(a->report_fd, &m, sizeof m);
  } while (n == -EINTR);
  cx_exit(127);
}
