// The launch plan. Two halves:
//  - launch_plan: what the child reads. Plain data only (no STL, nothing with
//    a destructor or an allocator behind it): numbers, NUL-terminated strings
//    and pointer + count arrays. Immutable once plan_from_js() returns; the
//    same for every launch of this plan (the per-launch fds, stdio and init
//    argv are in child_args, child.h).
//  - plan_store: owns the storage those pointers point into. Only the
//    parent side (plan.cc, spawn.cc) sees it.
// Policy is the planner's (lib/plan): which failures an op may skip, when it
// falls back to a bind, is said per op here, not decided in the child.
#ifndef NODULARITY_PLAN_H
#define NODULARITY_PLAN_H

#include <linux/filter.h>
#include <stdint.h>
#include <sys/types.h>
#include <memory>
#include <string>
#include <vector>

enum op_kind {
  OP_MOUNT = 0,     // mount(source, target, fstype, flags, data), then setattr
  OP_BIND = 1,      // bind (MS_REC if recursive), then mount_setattr
  OP_MKDIR = 2,     // mkdir(target, mode); EEXIST is fine
  OP_MKFILE = 3,    // create an empty file as a mount point; EEXIST is fine
  OP_SYMLINK = 4,   // symlink(source, target); EEXIST is fine
  OP_MASK = 5,      // maskedPaths: /dev/null over files, empty ro tmpfs over dirs
  OP_READONLY = 6,  // readonlyPaths: bind onto itself, recursively read-only
  OP_MKNOD = 7,     // linux.devices as root without a user namespace: mknod(target, mode, rdev), chown, chmod
};

// How the child finds an op's target inside the new root (openat2 from an fd
// of it; never a host path string).
enum resolve_mode {
  // The plan's canonical container path, RESOLVE_IN_ROOT|RESOLVE_NO_SYMLINKS:
  // the planner already followed the image's symlinks, so meeting one now
  // means the tree changed under us (ELOOP), and nothing is followed on the host.
  RES_EXACT = 0,
  // A path the spec names as such (maskedPaths, readonlyPaths):
  // RESOLVE_IN_ROOT|RESOLVE_NO_MAGICLINKS, symlinks followed inside the root;
  // a missing path is skipped.
  RES_FOLLOW = 1,
};

enum id_mode {
  IDMAP_NONE = 0,    // no user namespace
  IDMAP_SELF = 1,    // the child writes its own single-ID maps (vfork-style clone)
  IDMAP_PARENT = 2,  // the parent writes them (root with ranges) while the child waits
  IDMAP_HELPER = 3,  // the parent runs newuidmap/newgidmap while the child waits
};

struct mount_op {
  int kind;
  const char *source;   // may be NULL
  const char *target;   // container path, resolved by the child from the root fd (resolve_mode)
  const char *fstype;   // may be NULL
  const char *data;     // may be NULL
  unsigned long flags;  // MS_* for mount(2)
  uint64_t attr_set;    // MOUNT_ATTR_* set after mounting (recursively when `recursive`)
  uint64_t attr_clr;
  uint64_t rattr_set;  // MOUNT_ATTR_* from the recursive options (rro, rnosuid, ...): always AT_RECURSIVE
  uint64_t rattr_clr;
  int resolve;           // resolve_mode
  uint64_t propagation;  // MS_SLAVE/MS_PRIVATE/MS_SHARED/MS_UNBINDABLE or 0
  int recursive;
  unsigned mode;             // for OP_MKDIR / OP_MKFILE
  const char *fallback;      // OP_MOUNT only: rbind this host path when mount(2) fails with an errno
                             // in fallback_errnos; set by the planner only where the caller allowed it
  uint64_t fallback_errnos;  // bit N set: errno N falls back (N < 64)
  int skip_missing;          // a target that does not exist (ENOENT) skips the op (maskedPaths, readonlyPaths)
  uint64_t rdev;             // OP_MKNOD: makedev(major, minor); mode holds S_IFCHR/S_IFBLK and the permissions
  long uid, gid;             // OP_MKNOD: owner, -1 to leave
};

struct sysctl_op {
  const char *path;  // /proc/sys/... (of the child's own namespaces: it writes before pivot_root)
  const char *value;
};

// A mount point made in the overlay's upper layer before the overlay is mounted.
struct prep_op {
  const char *path;  // host path under the upper layer (a trailing '/' for a directory)
  int dir;  // directory (its mode and owner copied from the lower layer when it exists there), else an empty file
};

// A namespace to join (setns) instead of creating it: linux.namespaces[].path,
// or /proc/PID/ns/* of the process an exec enters.
struct ns_join {
  int type;          // CLONE_NEW*
  const char *path;  // opened (and its type checked) by the launcher before clone
};
#define MAX_NS_JOINS 8

struct rlimit_op {
  int resource;
  uint64_t soft, hard;
};

struct launch_plan {
  int clone_flags = 0;
  int id_mode = IDMAP_NONE;
  const char *uid_map = nullptr;  // text for /proc/.../uid_map
  const char *gid_map = nullptr;
  int setgroups_deny = 0;
  int setup_uid = -1;  // ids to take once the maps exist (root of the
  int setup_gid = -1;  // namespace when mapped), or -1 to keep ours
  // newuidmap/newgidmap argv without the pid (IDMAP_HELPER; the parent runs them).
  char *const *uid_helper_argv = nullptr;
  char *const *gid_helper_argv = nullptr;

  // Join mode (any join, or an exec into a running container): the clone
  // makes no namespace (clone_flags has none) and is fork-style; the child
  // joins these in order (user first), then unshares unshare_flags (user
  // first), then, when fork_after_join, forks (CLONE_PARENT) so that the
  // pid and time namespaces, which apply to children, hold the init.
  const ns_join *joins = nullptr;
  int n_joins = 0;
  int unshare_flags = 0;
  int fork_after_join = 0;
  int join_pid = 0;  // exec: the target, whose pidfd is checked alive after its ns files are opened
  // linux.timeOffsets for a new time namespace: "monotonic S NS\nboottime S NS\n" (timens_offsets format)
  const char *time_offsets = nullptr;

  const sysctl_op *sysctls = nullptr;  // linux.sysctl (namespaced keys only: the planner checked)
  int n_sysctls = 0;
  int oom_score_adj = 0, set_oom_score_adj = 0;
  long personality = -1;  // PER_LINUX / PER_LINUX32, or -1 to leave
  int umask = -1;         // process.user.umask, or -1 to leave
  // Pause before pivot_root (MSG_HOOKS, then a sync byte) while the caller
  // runs hooks (prestart/createRuntime/createContainer); fork-style clone.
  int hooks_pause = 0;

  const char *hostname = nullptr;
  const char *domainname = nullptr;
  uint64_t root_propagation = 0;        // applied to "/" first, recursively (slave or private: never shared)
  uint64_t root_propagation_after = 0;  // linux.rootfsPropagation on the new "/" after pivot_root (MS_REC for r*)
  const char *rootfs = nullptr;         // absolute host path, no symlinks (the launcher opens it before clone);
                                        // null for an exec into a running container (no root steps at all)
  int root_readonly = 0;
  // Overlay root: the image becomes the read-only lower layer of an overlay
  // whose upper layer lives in a tmpfs mounted over the rootfs path, so that
  // mount points missing in a read-only image can be created (or the whole
  // root made writable, --writable-tmpfs). All null when not used.
  const char *overlay_tmpfs_data = nullptr;                   // tmpfs options
  const char *overlay_dirs[3] = {nullptr, nullptr, nullptr};  // lower, upper, work (host paths)
  const char *overlay_data = nullptr;                         // overlay mount options
  // Mount points to make in the upper layer before the overlay is mounted:
  // made there, they belong to us, so an image owned by ids we cannot map
  // still takes them.
  const prep_op *overlay_prep = nullptr;
  // A persistent overlay directory (--overlay DIR): the host directory
  // (absolute, no symlinks; the launcher opens it before clone) is bound at
  // overlay_persist_at inside the tmpfs. Writable: overlay_dirs[1] and [2]
  // are its upper and work. Read-only: its upper is an extra lower layer
  // (named in overlay_data) and the tmpfs keeps the upper and work.
  const char *overlay_persist = nullptr;
  const char *overlay_persist_at = nullptr;
  int overlay_persist_ro = 0;
  int n_overlay_prep = 0;
  const mount_op *ops = nullptr;
  int n_ops = 0;
  int loopback = 0;
  const char *cwd = nullptr;  // container path
  const rlimit_op *rlimits = nullptr;
  int n_rlimits = 0;

  int set_ids = 0;
  uid_t uid = 0;
  gid_t gid = 0;
  int set_groups = 0;
  const gid_t *groups = nullptr;
  int n_groups = 0;
  int cap_last = 40;
  uint64_t cap_bounding = 0, cap_effective = 0, cap_permitted = 0, cap_inheritable = 0, cap_ambient = 0;
  int no_new_privs = 1;  // default on, also when the key is missing (runtime-spec says false; we are stricter)
  int pdeathsig = 0;
  int root_nodev = 1;  // the root and its submounts nodev, recursively
  // process.terminal: a pty made in the container's devpts; the slave is the
  // payload's stdio and controlling terminal, the master goes to the parent.
  int terminal = 0;
  unsigned short console_rows = 0, console_cols = 0;

  const char *exec_path = nullptr;  // container path of the payload
  char *const *argv = nullptr;
  char *const *envp = nullptr;
  int use_init = 0;

  // linux.seccomp: the BPF program libseccomp generated before clone
  // (lib/seccomp), loaded by the child with seccomp(2) and these
  // SECCOMP_FILTER_FLAG_*; no filter when seccomp_len is 0 (storage in
  // plan_store::seccomp).
  const struct sock_filter *seccomp_filter = nullptr;
  unsigned short seccomp_len = 0;
  unsigned seccomp_flags = 0;
};

// The storage behind a launch_plan (parent side only). Filled by
// plan_from_js(); `plan` points into the vectors, which are never resized
// after it returns.
struct plan_store {
  launch_plan plan;
  std::vector<std::unique_ptr<char[]>> strings;
  std::vector<mount_op> ops;
  std::vector<rlimit_op> rlimits;
  std::vector<ns_join> joins;
  std::vector<sysctl_op> sysctls;
  std::vector<prep_op> overlay_prep;
  std::vector<char *> argv, envp, uid_helper_argv, gid_helper_argv;
  std::vector<gid_t> groups;
  std::vector<struct sock_filter> seccomp;
};

#endif
