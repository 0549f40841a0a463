// Entry point of the clone child: runs the setup steps of a launch plan and
// execs the init or the payload. See child.cc for the rules it lives by.
#ifndef NODULARITY_CHILD_H
#define NODULARITY_CHILD_H

#include <stdint.h>

#include "plan.h"

// What the child reads besides the plan: the fds the parent opened for this
// launch (the plan itself holds none: it is the same for every launch).
struct child_args {
  const launch_plan *plan;
  int report_fd;           // write end of the report pipe (CLOEXEC)
  int sync_fd;             // read end of the sync pipe, or -1 when the child maps itself
  int init_fd;             // sealed memfd (or file) of the init binary, or -1
  int parent_pidfd;        // pidfd of the launching process (readable once it is gone), or -1
  int console_fd;          // our end of the console socketpair (terminal only), or -1
  int rootfs_fd;           // O_PATH fd of plan->rootfs, opened by the launcher before clone
  int persist_fd;          // O_PATH fd of plan->overlay_persist (same), or -1
  int stdio[3];            // fds to place on 0, 1, 2 (-1: leave as is)
  char *const *init_argv;  // nodularity-init REPORT_FD[:GATE_FD] PATH ARGV..., when plan->use_init
  int gate_fd;             // the caller's start gate, inherited by the init, or -1
  int preserve_fds;        // fds 3 .. 3+N-1 stay open in the payload
  int console_named;       // console_fd is the caller's console socket: send the pty's name with the master
  const int *ns_fds;       // plan->joins[i] opened by the launcher (plan->n_joins of them)
  // When the launcher times this launch (vfork-style only: CLONE_VM, so the
  // launcher sees what is written): CLOCK_MONOTONIC ns at the child's start
  // ([0]) and after each row of the step table ([i + 1]); else null.
  uint64_t *step_ns;
};

// Size of child_args.step_ns: the step table's rows, plus the start.
#define CHILD_STEP_TIMES 64

// Where a step says what failed, beyond its errno: the step's wire value
// (preset from child_main's table) and its index/detail (protocol.h says
// what they mean per step).
struct child_fail {
  int step;
  int index;
  int detail;
};

int child_main(void *arg);

// The step table's rows in order (their enum child_step values), for naming
// step_ns[i + 1]; returns the number of rows.
int child_step_rows(int *steps, int max);

#endif
