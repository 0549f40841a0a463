// The child side of clone: a straight list of setup steps, then exec.
//
// This code runs in a copy of a multithreaded Node process, and in the
// vfork-style path it even shares the parent's memory (CLONE_VM) while the
// parent thread is suspended. So: async-signal-safe calls only, no malloc, no
// C++ exceptions, no stdio, no N-API, no writes to any memory but our own
// stack. glibc wrappers that act on "all threads" (setresuid, setgroups) are
// replaced by raw syscalls: their setxid broadcast would signal the parent's
// threads. Every step returns 0 or -errno; the first failure is reported to
// the parent as a child_msg record and the child exits 127.

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
#include <sys/ioctl.h>
#include <sys/mount.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <termios.h>
#include <sys/stat.h>
#include <sys/statfs.h>
#include <sys/statvfs.h>
#include <unistd.h>

#include "protocol.h"
#include "syscalls.h"

#ifndef PR_CAP_AMBIENT
#define PR_CAP_AMBIENT 47
#define PR_CAP_AMBIENT_RAISE 2
#define PR_CAP_AMBIENT_CLEAR_ALL 4
#endif
#ifndef ST_RELATIME
#define ST_RELATIME 4096
#endif

// Report a failed step to the parent and die. Never returns.
static void child_fail(const child_args *a, int step, int err, int index, int detail) {
  struct child_msg m = {MSG_ERROR, step, err, index, detail};
  ssize_t r;
  do { r = write(a->report_fd, &m, sizeof m); } while (r < 0 && errno == EINTR);
  _exit(127);
}

// Default dispositions everywhere: Node ignores SIGPIPE and handles others,
// and SIG_IGN survives execve. The mask stays full until just before exec.
static void step_reset_signals(void) {
  struct sigaction sa;
  memset(&sa, 0, sizeof sa);
  sa.sa_handler = SIG_DFL;
  for (int sig = 1; sig < NSIG; sig++) {
    if (sig == SIGKILL || sig == SIGSTOP) continue;
    sigaction(sig, &sa, NULL);  // EINVAL for glibc-reserved RT signals is fine
  }
}

// Place the requested fds on 0, 1, 2. Sources below 3 are first moved up so
// that placing one cannot clobber another (e.g. stdout given as fd 0).
static int step_stdio(const launch_plan *p) {
  int src[3];
  for (int i = 0; i < 3; i++) {
    src[i] = p->stdio[i];
    if (src[i] >= 0 && src[i] < 3 && src[i] != i) {
      int moved = fcntl(src[i], F_DUPFD_CLOEXEC, 3);
      if (moved < 0) return -errno;
      src[i] = moved;
    }
  }
  for (int i = 0; i < 3; i++) {
    if (src[i] < 0) continue;
    if (src[i] == i) {
      if (fcntl(i, F_SETFD, 0) < 0) return -errno;
    } else if (dup2(src[i], i) < 0) {
      return -errno;
    }
  }
  // Node (libuv) sets O_NONBLOCK on the pipes and terminals it uses for its
  // own stdio, and the flag lives in the open file description we share: a
  // payload reading or writing a non-blocking stdin/stdout gets EAGAIN and
  // loses data. Clear it, as libuv does for child_process.
  for (int i = 0; i < 3; i++) {
    int fl = fcntl(i, F_GETFL);
    if (fl >= 0 && (fl & O_NONBLOCK) && fcntl(i, F_SETFL, fl & ~O_NONBLOCK) < 0) return -errno;
  }
  return 0;
}

// The parent-death signal, and a check that the launching process did not
// die before it was set (the signal would then never come). getppid() cannot
// tell inside a new PID namespace (it is 0 there), so ask the launcher's
// pidfd, which becomes readable once that process is gone.
static void step_parent_death(const child_args *a, int index) {
  const launch_plan *p = a->plan;
  if (!p->pdeathsig) return;
  if (prctl(PR_SET_PDEATHSIG, p->pdeathsig, 0, 0, 0) < 0) child_fail(a, STEP_PARENT_DEATH, errno, index, 0);
  if (a->parent_pidfd >= 0) {
    struct pollfd pfd = {a->parent_pidfd, POLLIN, 0};
    if (poll(&pfd, 1, 0) > 0) _exit(127);  // nobody is left to report to
  }
}

// Unprivileged single-ID map written by the child itself: it holds
// CAP_SETUID in its new namespace and maps only its own euid, which the
// kernel allows; gid_map needs setgroups "deny" first (CVE-2014-8989).
static void step_self_maps(const child_args *a) {
  const launch_plan *p = a->plan;
  int r = write_whole_file("/proc/self/setgroups", "deny");
  if (r < 0 && r != -ENOENT) child_fail(a, STEP_SETGROUPS_DENY, -r, 0, 0);
  if ((r = write_whole_file("/proc/self/uid_map", p->uid_map)) < 0) child_fail(a, STEP_UID_MAP, -r, 0, 0);
  if ((r = write_whole_file("/proc/self/gid_map", p->gid_map)) < 0) child_fail(a, STEP_GID_MAP, -r, 0, 0);
}

// Block until the parent has written our maps; anything but the agreed
// byte (including EOF when the parent gave up) aborts.
static void step_wait_maps(const child_args *a) {
  char b = 0;
  ssize_t n;
  do { n = read(a->sync_fd, &b, 1); } while (n < 0 && errno == EINTR);
  if (n != 1 || b != SYNC_MAPS_WRITTEN) child_fail(a, STEP_WAIT_MAPS, n < 0 ? errno : ECANCELED, 0, 0);
  close(a->sync_fd);
}

// "/proc/self/fd/N" for a syscall that takes only a path (mount(2)): the
// kernel follows the magic link to exactly what the fd refers to. No snprintf
// (not async-signal-safe).
static void fd_path(char buf[32], int fd) {
  static const char prefix[] = "/proc/self/fd/";
  char digits[12];
  int n = 0;
  unsigned v = (unsigned)fd;
  do { digits[n++] = (char)('0' + v % 10); v /= 10; } while (v && n < 11);
  memcpy(buf, prefix, sizeof prefix - 1);
  int k = sizeof prefix - 1;
  while (n) buf[k++] = digits[--n];
  buf[k] = '\0';
}

// Resolve a container path from the root fd; see enum resolve_mode.
// Returns an O_PATH fd or -errno.
static int resolve_in_root(int rootfd, const char *path, int mode) {
  uint64_t resolve = RESOLVE_IN_ROOT | RESOLVE_NO_MAGICLINKS | (mode == RES_EXACT ? RESOLVE_NO_SYMLINKS : 0);
  int fd;
  do { fd = sys_openat2(rootfd, path, O_PATH | O_CLOEXEC, resolve); } while (fd < 0 && (errno == EAGAIN || errno == EINTR));
  return fd < 0 ? -errno : fd;
}

// Mount flags that statfs reports and that a bind remount must repeat:
// leaving out a flag the kernel locked (nosuid, nodev, ro, atime) is EPERM.
static unsigned long locked_flags(int fd) {
  struct statfs sf;
  if (fstatfs(fd, &sf) < 0) return 0;
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
  if (sys_mount_setattr(fd, "", AT_EMPTY_PATH | (recursive ? AT_RECURSIVE : 0), &attr) == 0) return 0;
  if (errno != ENOSYS) return -errno;
  *call = CALL_REMOUNT;
  char path[32];
  fd_path(path, fd);
  if (propagation && mount(NULL, path, NULL, (recursive ? MS_REC : 0) | propagation, NULL) < 0) return -errno;
  if (set || clr) {
    unsigned long f = (locked_flags(fd) | attr_to_ms(set)) & ~attr_to_ms(clr);
    if (mount(NULL, path, NULL, MS_REMOUNT | MS_BIND | f, NULL) < 0) return -errno;
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
  int tree = tree_of >= 0 ? sys_open_tree_fd(tree_of, fl) : sys_open_tree(src, fl);
  if (tree < 0) return -errno;
  *call = CALL_MOVE_MOUNT;
  int r = sys_move_mount_fd_fd(tree, tfd) < 0 ? -errno : 0;
  if (r == 0 && op) r = op_attrs(op, tree, call);
  close(tree);
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
  int r = split_parent(op->target, parent, &name);
  if (r < 0) return r;
  *call = CALL_RESOLVE;
  int dfd;
  do { dfd = sys_openat2(rootfd, parent, O_PATH | O_DIRECTORY | O_CLOEXEC, RESOLVE_IN_ROOT | RESOLVE_NO_SYMLINKS | RESOLVE_NO_MAGICLINKS); } while (dfd < 0 && (errno == EAGAIN || errno == EINTR));
  if (dfd < 0) return -errno;
  int err = 0;
  switch (op->kind) {
    case OP_MKDIR:
      *call = CALL_MKDIR;
      if (mkdirat(dfd, name, op->mode) < 0) err = errno;
      break;
    case OP_MKFILE: {
      *call = CALL_MKFILE;
      int fd = openat(dfd, name, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC | O_NOCTTY | O_NONBLOCK, op->mode);
      if (fd < 0) err = errno;
      else close(fd);
      break;
    }
    case OP_SYMLINK:
      *call = CALL_SYMLINK;
      if (symlinkat(op->source, dfd, name) < 0) err = errno;
      break;
  }
  if (err == EEXIST && op->kind != OP_SYMLINK) {
    // Already there: fine, unless it is a symlink (which the planner would
    // have followed): the tree changed under us.
    struct stat st;
    *call = CALL_EXISTS;
    if (fstatat(dfd, name, &st, AT_SYMLINK_NOFOLLOW) < 0) err = errno;
    else if (S_ISLNK(st.st_mode)) err = ELOOP;
    else if (op->kind == OP_MKDIR && !S_ISDIR(st.st_mode)) err = ENOTDIR;
    else err = 0;
  } else if (err == EEXIST) {
    err = 0;
  }
  close(dfd);
  return -err;
}

// Interpret one mount op of the plan against the new root. *call says which
// syscall failed. Every target is found from rootfd (openat2), so no image
// symlink and no earlier mount can send an op to a host path.
static int run_op(int rootfd, const mount_op *op, int *call) {
  if (op->kind == OP_MKDIR || op->kind == OP_MKFILE || op->kind == OP_SYMLINK) return create_entry(rootfd, op, call);
  *call = CALL_RESOLVE;
  int tfd = resolve_in_root(rootfd, op->target, op->resolve);
  if (tfd < 0) return op->resolve == RES_FOLLOW && tfd == -ENOENT ? 0 : tfd;
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
      if (mount(op->source, path, op->fstype, op->flags, op->data) < 0) {
        // Only where the caller opted in (allowHostProc) or the planner chose
        // a read-only host tree: bind the host's instead.
        if (!op->fallback || (errno != EPERM && errno != EACCES && errno != EBUSY)) { r = -errno; break; }
        r = bind_onto(op, op->fallback, -1, tfd, 1, call);
        if (r < 0 && *call == CALL_OPEN_TREE) *call = CALL_FALLBACK_BIND;
        break;
      }
      if (op->propagation || op->rattr_set || op->rattr_clr) {
        // The fd still names the covered mount point: reopen to reach the new mount.
        *call = CALL_RESOLVE;
        int mfd = resolve_in_root(rootfd, op->target, RES_EXACT);
        if (mfd < 0) { r = mfd; break; }
        r = setattr_fd(mfd, 0, 0, op->propagation, 0, call);
        if (r == 0) r = setattr_fd(mfd, op->rattr_set, op->rattr_clr, 0, 1, call);
        close(mfd);
      }
      break;
    case OP_MASK:
      *call = CALL_STAT;
      if (fstat(tfd, &st) < 0) { r = -errno; break; }
      *call = CALL_MOUNT;
      if (S_ISDIR(st.st_mode)) {
        if (mount("tmpfs", path, "tmpfs", MS_RDONLY | MS_NOSUID | MS_NODEV | MS_NOEXEC, "size=0,mode=000") < 0) r = -errno;
      } else {
        r = bind_onto(nullptr, op->source, -1, tfd, 0, call);
      }
      break;
    case OP_READONLY:
      r = bind_onto(op, nullptr, tfd, tfd, 1, call);
      break;
    default:
      r = -EINVAL;
  }
  close(tfd);
  return r;
}

// Bring up lo in a new network namespace (it starts down); nothing else.
static int step_loopback(void) {
  int s = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
  if (s < 0) return -errno;
  struct ifreq ifr;
  memset(&ifr, 0, sizeof ifr);
  ifr.ifr_name[0] = 'l';
  ifr.ifr_name[1] = 'o';
  int r = 0;
  if (ioctl(s, SIOCGIFFLAGS, &ifr) < 0) r = -errno;
  if (r == 0) {
    ifr.ifr_flags |= IFF_UP | IFF_RUNNING;
    if (ioctl(s, SIOCSIFFLAGS, &ifr) < 0) r = -errno;
  }
  close(s);
  return r;
}

// pivot_root(".", ".") stacks the old root on the new one; making it slave
// before the detach keeps the unmount from propagating to the host (crun,
// runc and LXC do the same).
// The image as the lower layer of an overlay on a fresh tmpfs, mounted at the
// rootfs path itself so every later op and pivot_root use the same paths:
// clone the image's tree, cover the rootfs path with a tmpfs, attach the
// clone inside it as "lower", then stack the overlay on top at the same path.
static int step_overlay_root(const launch_plan *p, int *call) {
  *call = CALL_OPEN_TREE;
  int fd = sys_open_tree(p->rootfs, OPEN_TREE_CLONE | OPEN_TREE_CLOEXEC | AT_RECURSIVE);
  if (fd < 0) return -errno;
  int err = 0;
  *call = CALL_MOUNT;
  if (mount("tmpfs", p->rootfs, "tmpfs", MS_NOSUID | MS_NODEV, p->overlay_tmpfs_data) < 0) err = errno;
  for (int i = 0; i < 3 && !err; i++) {
    *call = CALL_MKDIR;
    if (mkdir(p->overlay_dirs[i], 0755) < 0) err = errno;
  }
  if (!err) {
    *call = CALL_MOVE_MOUNT;
    if (sys_move_mount_fd(fd, p->overlay_dirs[0]) < 0) err = errno;
  }
  close(fd);
  if (err) return -err;
  for (char *const *q = p->overlay_prep; *q; q++) {
    size_t n = strlen(*q);
    if ((*q)[n - 1] == '/') {
      *call = CALL_MKDIR;
      if (mkdir(*q, 0755) < 0 && errno != EEXIST) return -errno;
    } else {
      *call = CALL_MKFILE;
      int f = open(*q, O_WRONLY | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0644);
      if (f < 0 && errno != EEXIST) return -errno;
      if (f >= 0) close(f);
    }
  }
  *call = CALL_MOUNT;
  if (mount("overlay", p->rootfs, "overlay", 0, p->overlay_data) < 0) return -errno;
  return 0;
}

static int step_pivot_root(int rootfd) {
  if (fchdir(rootfd) < 0) return -errno;
  if (sys_pivot_root(".", ".") < 0) return -errno;
  if (mount(NULL, ".", NULL, MS_SLAVE | MS_REC, NULL) < 0) return -errno;
  if (umount2(".", MNT_DETACH) < 0) return -errno;
  if (chdir("/") < 0) return -errno;
  return 0;
}

// process.terminal, as runc and crun do it: a pty from the container's own
// devpts (after pivot_root, so /dev/pts is the new instance), its master sent
// to the parent over the console socket, its slave our controlling terminal
// and stdio. The slave belongs to the payload's user.
static int step_terminal(const child_args *a) {
  const launch_plan *p = a->plan;
  int master = open("/dev/pts/ptmx", O_RDWR | O_NOCTTY | O_CLOEXEC | O_NOFOLLOW);
  if (master < 0) return -errno;
  int err = 0, slave = -1, unlock = 0;
  struct stat st;
  if (fstat(master, &st) < 0) err = errno;
  else if (!S_ISCHR(st.st_mode)) err = ENOTTY;   // not our devpts: refuse
  if (!err && ioctl(master, TIOCSPTLCK, &unlock) < 0) err = errno;
  if (!err && (slave = ioctl(master, TIOCGPTPEER, O_RDWR | O_NOCTTY | O_CLOEXEC)) < 0) err = errno;
  if (!err && p->console_rows && p->console_cols) {
    struct winsize ws = {p->console_rows, p->console_cols, 0, 0};
    if (ioctl(slave, TIOCSWINSZ, &ws) < 0) err = errno;
  }
  if (!err && p->set_ids && fchown(slave, p->uid, (gid_t)-1) < 0) err = errno;
  if (!err) {
    char byte = 'T';
    struct iovec iov = {&byte, 1};
    union { struct cmsghdr h; char buf[CMSG_SPACE(sizeof(int))]; } u;
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
    ssize_t n;
    do { n = sendmsg(a->console_fd, &msg, MSG_NOSIGNAL); } while (n < 0 && errno == EINTR);
    if (n != 1) err = n < 0 ? errno : EIO;
  }
  close(master);
  close(a->console_fd);
  if (!err && ioctl(slave, TIOCSCTTY, 0) < 0) err = errno;
  for (int i = 0; i < 3 && !err; i++)
    if (dup2(slave, i) < 0) err = errno;
  if (slave > 2) close(slave);
  return -err;
}

static int set_caps(const launch_plan *p) {
  struct __user_cap_header_struct hdr = {_LINUX_CAPABILITY_VERSION_3, 0};
  struct __user_cap_data_struct data[2];
  for (int i = 0; i < 2; i++) {
    data[i].effective = (uint32_t)(p->cap_effective >> (32 * i));
    data[i].permitted = (uint32_t)(p->cap_permitted >> (32 * i));
    data[i].inheritable = (uint32_t)(p->cap_inheritable >> (32 * i));
  }
  return syscall(SYS_capset, &hdr, data) < 0 ? -errno : 0;
}

// Drop to the payload's credentials and capabilities. The bounding set goes
// first (it needs CAP_SETPCAP, which the uid change would take away); keepcaps
// lets the capabilities the spec keeps survive a change to a non-zero uid.
static void step_credentials(const child_args *a) {
  const launch_plan *p = a->plan;
  for (int c = 0; c <= p->cap_last; c++) {
    if (p->cap_bounding & (1ULL << c)) continue;
    if (prctl(PR_CAPBSET_DROP, c, 0, 0, 0) < 0 && errno != EINVAL) child_fail(a, STEP_CAP_BOUNDING, errno, c, 0);
  }
  if (p->set_ids) {
    prctl(PR_SET_KEEPCAPS, 1, 0, 0, 0);
    if (p->set_groups && syscall(SYS_setgroups, p->n_groups, p->groups) < 0) child_fail(a, STEP_SETGROUPS, errno, 0, 0);
    if (syscall(SYS_setresgid, p->gid, p->gid, p->gid) < 0) child_fail(a, STEP_SETGID, errno, 0, 0);
    if (syscall(SYS_setresuid, p->uid, p->uid, p->uid) < 0) child_fail(a, STEP_SETUID, errno, 0, 0);
  }
  int r = set_caps(p);
  if (r < 0) child_fail(a, STEP_CAPSET, -r, 0, 0);
  prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL, 0, 0, 0);
  for (int c = 0; c <= p->cap_last; c++) {
    if (!(p->cap_ambient & (1ULL << c))) continue;
    if (prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_RAISE, c, 0, 0) < 0) child_fail(a, STEP_CAP_AMBIENT, errno, c, 0);
  }
}

// linux.seccomp: load the program compiled before clone (lib/seccomp). With
// no_new_privs this is the last step before exec, so only the exec (and the
// init, whose syscalls every runtime-built profile allows) runs under it.
// Without no_new_privs the kernel wants CAP_SYS_ADMIN in our user namespace,
// which the credential step may drop: then, as runc does, it is loaded just
// before that step, and the rest of the setup runs under the filter too.
static int step_seccomp(const launch_plan *p) {
  struct sock_fprog prog = {p->seccomp_len, const_cast<struct sock_filter *>(p->seccomp_filter)};
  return syscall(SYS_seccomp, SECCOMP_SET_MODE_FILTER, p->seccomp_flags, &prog) < 0 ? -errno : 0;
}

int child_main(void *arg) {
  const child_args *a = (const child_args *)arg;
  const launch_plan *p = a->plan;
  int r;

  step_reset_signals();
  // First, before anything that takes time: a launcher killed from here on
  // takes this child with it.
  step_parent_death(a, 0);
  if ((r = step_stdio(p)) < 0) child_fail(a, STEP_STDIO, -r, 0, 0);
  // A session of our own: a terminal's Ctrl-C (sent to its foreground process
  // group) and a batch system's signal to the launcher's process group reach
  // the launcher only, which forwards them once; the container never joins
  // the launcher's terminal job control.
  if (setsid() < 0) child_fail(a, STEP_SETSID, errno, 0, 0);

  if (p->id_mode == IDMAP_SELF) step_self_maps(a);
  else if (p->id_mode == IDMAP_PARENT || p->id_mode == IDMAP_HELPER) step_wait_maps(a);

  // When the parent mapped ranges, our own host id may be unmapped (we would
  // create files as the overflow id, EOVERFLOW): become the namespace's root.
  if (p->setup_gid >= 0 && syscall(SYS_setresgid, p->setup_gid, p->setup_gid, p->setup_gid) < 0)
    child_fail(a, STEP_SETGID, errno, 1, 0);
  if (p->setup_uid >= 0 && syscall(SYS_setresuid, p->setup_uid, p->setup_uid, p->setup_uid) < 0)
    child_fail(a, STEP_SETUID, errno, 1, 0);

  // A session keyring of our own: the launcher's (Kerberos and AFS tokens
  // live there) must not be readable by the payload. Kernels without keys
  // have nothing to hide.
  if (syscall(SYS_keyctl, KEYCTL_JOIN_SESSION_KEYRING, NULL) < 0 && errno != ENOSYS)
    child_fail(a, STEP_KEYRING, errno, 0, 0);

  // From here on we hold every capability in our own user namespace.
  if (p->hostname && sethostname(p->hostname, strlen(p->hostname)) < 0) child_fail(a, STEP_HOSTNAME, errno, 0, 0);
  if (p->domainname && setdomainname(p->domainname, strlen(p->domainname)) < 0)
    child_fail(a, STEP_DOMAINNAME, errno, 0, 0);

  // Nothing we mount may propagate back to the host; slave (the default)
  // still lets host mounts (autofs under /cvmfs) propagate in.
  if (p->root_propagation && mount(NULL, "/", NULL, MS_REC | p->root_propagation, NULL) < 0)
    child_fail(a, STEP_ROOT_PROPAGATION, errno, 0, 0);
  // pivot_root needs the new root to be a mount point.
  if (p->overlay_data) {
    int call = CALL_MOUNT;
    if ((r = step_overlay_root(p, &call)) < 0) child_fail(a, STEP_OVERLAY_ROOT, -r, 0, call);
  } else if (mount(p->rootfs, p->rootfs, NULL, MS_BIND | MS_REC, NULL) < 0) {
    child_fail(a, STEP_BIND_ROOTFS, errno, 0, 0);
  }
  // Every later path is resolved from this fd, inside the new root.
  int rootfd = open(p->rootfs, O_PATH | O_DIRECTORY | O_CLOEXEC);
  if (rootfd < 0) child_fail(a, STEP_ROOT_FD, errno, 0, 0);
  // Device nodes that came with the image are inert: the root and every
  // mount under it are nodev. Only the /dev the runtime makes (binds of the
  // host's null, zero, ...; mounted later) has devices.
  if (p->root_nodev) {
    int call = CALL_MOUNT_SETATTR;
    if ((r = setattr_fd(rootfd, MOUNT_ATTR_NODEV, 0, 0, 1, &call)) < 0) child_fail(a, STEP_ROOT_FD, -r, 1, call);
  }

  for (int i = 0; i < p->n_ops; i++) {
    int call = CALL_MOUNT;
    if ((r = run_op(rootfd, &p->ops[i], &call)) < 0) child_fail(a, STEP_MOUNT, -r, i, call);
  }
  if (p->loopback && (r = step_loopback()) < 0) child_fail(a, STEP_LOOPBACK, -r, 0, 0);
  if ((r = step_pivot_root(rootfd)) < 0) child_fail(a, STEP_PIVOT_ROOT, -r, 0, 0);
  close(rootfd);
  if (p->root_readonly) {
    int call = CALL_MOUNT_SETATTR;
    int fd = open("/", O_PATH | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0) child_fail(a, STEP_ROOT_READONLY, errno, 0, CALL_RESOLVE);
    if ((r = setattr_fd(fd, MOUNT_ATTR_RDONLY, 0, 0, 0, &call)) < 0) child_fail(a, STEP_ROOT_READONLY, -r, 0, call);
    close(fd);
  }

  if (p->terminal && (r = step_terminal(a)) < 0) child_fail(a, STEP_TERMINAL, -r, 0, 0);

  for (int i = 0; i < p->n_rlimits; i++) {
    struct rlimit rl = {(rlim_t)p->rlimits[i].soft, (rlim_t)p->rlimits[i].hard};
    if (setrlimit((__rlimit_resource_t)p->rlimits[i].resource, &rl) < 0) child_fail(a, STEP_RLIMIT, errno, i, 0);
  }

  if (p->seccomp_len && !p->no_new_privs && (r = step_seccomp(p)) < 0) child_fail(a, STEP_SECCOMP, -r, 0, 0);
  step_credentials(a);
  // As the payload's user, without capabilities: a cwd it may not enter is an error, not a surprise.
  if (chdir(p->cwd) < 0) child_fail(a, STEP_CHDIR, errno, 0, 0);
  if (p->no_new_privs && prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) < 0) child_fail(a, STEP_NO_NEW_PRIVS, errno, 0, 0);
  // Again after the uid change, which clears the parent-death signal.
  step_parent_death(a, 1);

  // Every fd above stdio closes at exec: the Node process's sockets, files
  // and pipes must not reach the payload. Marking (not closing) keeps the
  // report pipe usable until exec succeeds.
  if (sys_close_range(3, ~0U, CLOSE_RANGE_CLOEXEC) < 0) {
    if (errno != ENOSYS && errno != EINVAL) child_fail(a, STEP_CLOSE_FDS, errno, 0, 0);
    for (int fd = 3; fd < 65536; fd++) fcntl(fd, F_SETFD, FD_CLOEXEC);
  }

  if (p->seccomp_len && p->no_new_privs && (r = step_seccomp(p)) < 0) child_fail(a, STEP_SECCOMP, -r, 1, 0);

  if (p->use_init) {
    // The init inherits the report fd (it sends EXEC_OK and the exit status)
    // and keeps every signal blocked until it has its own handling in place:
    // from the parent namespace a default-disposition signal would kill it.
    if (fcntl(a->report_fd, F_SETFD, 0) < 0) child_fail(a, STEP_EXEC_INIT, errno, 0, 0);
    syscall(SYS_execveat, a->init_fd, "", p->init_argv, p->envp, AT_EMPTY_PATH);
    child_fail(a, STEP_EXEC_INIT, errno, 0, 0);
  }

  sigset_t none;
  sigemptyset(&none);
  sigprocmask(SIG_SETMASK, &none, NULL);
  execve(p->exec_path, p->argv, p->envp);
  child_fail(a, STEP_EXEC, errno, 0, 0);
  return 127;
}
