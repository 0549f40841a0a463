// Wire format shared by the parent, the clone child and the init: the steps
// of container setup, the parent<->child sync bytes and the report record.
// Plain C so that init.c (a separate static binary) can include it.
#ifndef NODULARITY_PROTOCOL_H
#define NODULARITY_PROTOCOL_H

#include <stdint.h>

// Setup steps. These numbers are wire values (the report record carries
// them, lib/errors.ts names them by position in STEP_NAMES, a unit test checks
// the two agree): APPEND ONLY. A new step goes last (before the count), even
// when it runs in the middle of child_main; never renumber, never reuse. The
// order the child runs them in is child_main's table (child.cc), not this one.
//
// What `index` and `detail` of a report mean, per step (0 where not listed):
//   STEP_CLONE            parent: clone(2) itself; also a child stack mmap failure (ENOMEM)
//   STEP_SETGROUPS_DENY, STEP_UID_MAP, STEP_GID_MAP
//                         index: 0 written by the child (single ID), 1 by the parent (ranges)
//   STEP_WAIT_MAPS        err ECANCELED: the parent sent no SYNC_MAPS_WRITTEN (it gave up)
//   STEP_MOUNT            index: the op's index in plan.ops; detail: a mount_call
//   STEP_OVERLAY_ROOT     detail: a mount_call
//   STEP_BIND_ROOTFS      detail: a mount_call
//   STEP_ROOT_READONLY    detail: a mount_call
//   STEP_ROOT_NODEV       detail: a mount_call
//   STEP_RLIMIT           index: the rlimit's index in plan.rlimits
//   STEP_CAP_BOUNDING, STEP_CAP_AMBIENT
//                         index: the capability number
//   STEP_PARENT_DEATH     index: 0 armed first thing, 1 armed again after the uid change
//   STEP_SETUP_IDS        index: 0 setresgid, 1 setresuid (to the namespace's root, ranges only)
//   STEP_ID_HELPER        parent: index 0 newuidmap, 1 newgidmap (its stderr travels beside)
//   STEP_INIT_FORK        init: fork of the payload failed
//   STEP_EXEC             child (no init) or init: execve of the payload
//   STEP_PROTOCOL         parent: the report pipe broke the protocol; index: enum protocol_fault
//   STEP_SECCOMP          index: 0 loaded before the credentials (no_new_privs off), 1 last before exec
//   STEP_JOIN_NAMESPACES          index: 0..n-1 setns of plan.joins[index]; JOIN_UNSHARE_USER, JOIN_UNSHARE, JOIN_FORK
//                         (enum join_index) the namespaces made after the joins, the fork into them;
//                         parent: JOIN_PIDFD, pidfd_open of the process that continues after the fork
//   STEP_SYSCTL           index: the entry's index in plan.sysctls
//   STEP_PROCESS_ATTRS    index: 0 oom_score_adj, 1 personality (umask cannot fail)
//   STEP_HOOKS            err ECANCELED: the caller's hooks failed (SYNC_ABORT) or it went away
//   STEP_START_GATE       init: the start gate ended (EOF, err 0) or failed (err) before a byte came;
//                         the payload was never run. Not a launch failure: read after MSG_GATE.
enum child_step {
  STEP_CLONE = 0,
  STEP_SIGNALS,
  STEP_STDIO,
  STEP_SETGROUPS_DENY,
  STEP_UID_MAP,
  STEP_GID_MAP,
  STEP_WAIT_MAPS,
  STEP_HOSTNAME,
  STEP_DOMAINNAME,
  STEP_ROOT_PROPAGATION,
  STEP_BIND_ROOTFS,
  STEP_MOUNT,
  STEP_LOOPBACK,
  STEP_PIVOT_ROOT,
  STEP_ROOT_READONLY,
  STEP_CHDIR,
  STEP_RLIMIT,
  STEP_CAP_BOUNDING,
  STEP_SETGROUPS,
  STEP_SETGID,
  STEP_SETUID,
  STEP_CAPSET,
  STEP_CAP_AMBIENT,
  STEP_NO_NEW_PRIVS,
  STEP_PARENT_DEATH,
  STEP_CLOSE_FDS,
  STEP_EXEC_INIT,
  STEP_INIT_FORK,
  STEP_EXEC,
  STEP_ID_HELPER,
  STEP_OVERLAY_ROOT,
  STEP_KEYRING,
  STEP_ROOT_FD,  // no longer reported (the root steps open the root fd); kept for the numbering
  STEP_SETSID,
  STEP_TERMINAL,
  STEP_SETUP_IDS,
  STEP_ROOT_NODEV,
  STEP_PROTOCOL,
  STEP_SECCOMP,          // seccomp(SECCOMP_SET_MODE_FILTER) of the plan's program
  STEP_START_GATE,       // init: waiting on the start gate (SpawnOptions.startGate)
  STEP_JOIN_NAMESPACES,  // setns into namespaces given by path (or a process's), unshare the new ones, fork into them
  STEP_SYSCTL,           // linux.sysctl: /proc/sys/KEY of our own namespaces, before pivot_root
  STEP_PROCESS_ATTRS,    // process.oomScoreAdj, linux.personality, process.user.umask
  STEP_HOOKS,            // paused before pivot_root for the caller's hooks (SpawnOptions.beforePivot)
  STEP_COUNT
};

// Which syscall of a mount-like step failed (`detail`). Append only, as above.
enum mount_call {
  CALL_MOUNT = 0,
  CALL_MOUNT_SETATTR,
  CALL_REMOUNT,
  CALL_MKDIR,
  CALL_MKFILE,
  CALL_SYMLINK,
  CALL_STAT,
  CALL_FALLBACK_BIND,
  CALL_OPEN_TREE,
  CALL_MOVE_MOUNT,
  CALL_RESOLVE,     // openat2(RESOLVE_IN_ROOT ...) of the target (or its parent)
  CALL_EXISTS,      // the entry to create exists as something else (a symlink)
  CALL_SPLIT_PATH,  // the target has no parent to create it in (the root itself, or too long)
  CALL_CHMOD,       // copying the lower layer's mode onto an overlay mount point
  CALL_IDENTITY,    // the rootfs path no longer names the directory the launcher opened (ESTALE)
  CALL_MKNOD,       // mknodat of a linux.devices node (or its chown/chmod)
};

// STEP_JOIN_NAMESPACES's index beyond the joins themselves (0..n-1).
enum join_index {
  JOIN_UNSHARE_USER = 100,  // unshare(CLONE_NEWUSER) after the joins
  JOIN_UNSHARE = 101,       // unshare() of the other new namespaces
  JOIN_FORK = 102,          // the fork (CLONE_PARENT) into the pid/time namespaces, which apply to children
  JOIN_PIDFD = 103,         // parent: pidfd_open of the forked process
  JOIN_TIME_OFFSETS = 104,  // writing /proc/self/timens_offsets (linux.timeOffsets)
};

// STEP_PROTOCOL's index: what the parent read on the report pipe.
enum protocol_fault {
  PROTO_READ = 0,   // read(2) failed (err is its errno)
  PROTO_SHORT = 1,  // EOF in the middle of a record
  PROTO_TYPE = 2,   // a record of a type not allowed here
};

// Parent -> child over the sync pipe, one byte each, when the parent writes
// the id maps (ranges through newuidmap, or root with several ranges), and
// once more after the hooks when the child pauses for them.
enum sync_msg {
  SYNC_MAPS_WRITTEN = 'M',
  SYNC_ABORT = 'A',
  SYNC_HOOKS_DONE = 'H',  // the caller's hooks ran: go on to pivot_root (after MSG_HOOKS)
};

// Child/init -> parent over the report pipe.
enum msg_type {
  MSG_ERROR = 1,    // setup or exec failed: step, err (errno), index, detail
  MSG_EXEC_OK = 2,  // init only: the payload was exec'd
  MSG_STATUS = 3,   // init only: the payload's raw wait status in `err`
  MSG_GATE = 4,     // init only: set up and waiting on the start gate (the launch is complete)
  MSG_PID = 5,      // child, after the joins: it forked (CLONE_PARENT) and exits; `index` is the pid that goes on
  MSG_HOOKS = 6,    // child: set up but for pivot_root, waiting on the sync pipe while the caller runs hooks
};

// Fixed-size record; 20 bytes < PIPE_BUF, so every write is atomic.
struct child_msg {
  int32_t type;
  int32_t step;
  int32_t err;
  int32_t index;
  int32_t detail;
};

#endif
