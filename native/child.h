// Entry point of the clone child: runs the setup steps of a launch plan and
// execs the init or the payload. See child.cc for the rules it lives by.
#ifndef NODULARITY_CHILD_H
#define NODULARITY_CHILD_H

#include "plan.h"

struct child_args {
  const launch_plan *plan;
  int report_fd;  // write end of the report pipe (CLOEXEC)
  int sync_fd;    // read end of the sync pipe, or -1 when the child maps itself
  int init_fd;    // sealed memfd (or file) of the init binary, or -1
  int parent_pidfd; // pidfd of the launching process (readable once it is gone), or -1
  int console_fd;   // our end of the console socketpair (terminal only), or -1
};

int child_main(void *arg);

#endif
