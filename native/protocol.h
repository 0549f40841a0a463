// Wire format shared by the parent, the clone child and the init: the steps
// of container setup, the parent<->child sync bytes and the report record.
// Plain C so that init.c (a separate static binary) can include it.
#ifndef NODULARITY_PROTOCOL_H
#define NODULARITY_PROTOCOL_H

#include <stdint.h>

// Setup steps, roughly in the order the child runs them (chdir comes after
// the credentials). lib/errors.ts keeps the same
// names in the same order (STEP_NAMES); a test checks the two agree.
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
  STEP_ROOT_FD,
  STEP_SETSID,
  STEP_TERMINAL,
  STEP_SECCOMP,      // seccomp(SECCOMP_SET_MODE_FILTER) of the plan's program
  STEP_COUNT
};

// Which syscall of a mount op failed (child_msg.detail for STEP_MOUNT).
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
  CALL_RESOLVE,      // openat2(RESOLVE_IN_ROOT ...) of the target (or its parent)
  CALL_EXISTS,       // the entry to create exists as something else (a symlink)
};

// Parent -> child over the sync pipe, one byte, only when the parent writes
// the id maps (ranges through newuidmap, or root with several ranges).
enum sync_msg {
  SYNC_MAPS_WRITTEN = 'M',
  SYNC_ABORT = 'A',
};

// Child/init -> parent over the report pipe.
enum msg_type {
  MSG_ERROR = 1,    // setup or exec failed: step, err (errno), index, detail
  MSG_EXEC_OK = 2,  // init only: the payload was exec'd
  MSG_STATUS = 3,   // init only: the payload's raw wait status in `err`
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
