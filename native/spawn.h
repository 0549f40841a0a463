// Parent side of a launch: pipes, the clone itself, id maps written from
// outside when the child cannot write its own, and the wait for exec.
#ifndef NODULARITY_SPAWN_H
#define NODULARITY_SPAWN_H

#include <memory>
#include <string>
#include <vector>
#include "child.h"
#include "plan.h"
#include "protocol.h"

enum stdio_kind { STDIO_INHERIT = 0, STDIO_PIPE = 1, STDIO_IGNORE = 2, STDIO_FD = 3 };

// Points of a timed launch (spawn_job.t), in the order they happen.
enum launch_time {
  T_CALL,        // spawn() entered the addon (main thread)
  T_QUEUED,      // the launch handed to the worker (main thread free again)
  T_WORKER,      // a worker thread took it
  T_CLONE,       // just before clone
  T_CLONE_DONE,  // clone returned: vfork-style, the child has exec'd (the init, or the payload)
  T_VERDICT,     // the exec verdict read (with the init: the payload exec'd)
  T_ONOK,        // back on the main thread, before the JS callback
  T_CONVERTED,   // the JS plan converted to C (main thread, between T_CALL and T_QUEUED)
  T_COUNT
};

uint64_t now_ns();

struct spawn_job {
  // The plan: converted for this launch (own), or a compiled plan shared by
  // a prepared container's launches (base) with this launch's changes in
  // own's storage. plan_view is what everything reads; read-only once set.
  std::shared_ptr<const plan_store> base;
  std::unique_ptr<plan_store> own;
  launch_plan plan_view;
  const launch_plan *view() const { return &plan_view; }
  int stdio_kind[3] = {STDIO_INHERIT, STDIO_INHERIT, STDIO_INHERIT};
  int stdio_fd[3] = {0, 1, 2};         // for STDIO_FD / STDIO_INHERIT
  int parent_stdio[3] = {-1, -1, -1};  // our ends of pipes, handed to JS
  int child_stdio[3] = {-1, -1, -1};   // fds we opened for the child, closed after clone
  int report_rd = -1, report_wr = -1;
  int sync_rd = -1, sync_wr = -1;
  int console_parent = -1, console_child = -1;  // socketpair for the pty master (terminal only)
  int init_fd = -1;                             // borrowed, owned by the addon
  int null_fd[2] = {-1, -1};                    // /dev/null read, write: borrowed, owned by the addon (or -1)
  int parent_pidfd = -1;                        // borrowed: pidfd of this process, owned by the addon
  int persist_fd = -1;                          // O_PATH fd of plan.overlay_persist, checked the same way
  int rootfs_fd = -1;                           // O_PATH fd of plan.rootfs, checked by the child against its own lookup
  int stdio[3] = {-1, -1, -1};                  // fds the child places on 0, 1, 2
  // Per-launch fds of the caller (borrowed, never closed here): the start
  // gate the init reads one byte from before the payload runs, the console
  // socket the pty master is sent over (instead of our socketpair), and how
  // many fds from 3 up stay open in the payload.
  int gate_fd = -1;
  int console_socket = -1;
  int preserve_fds = 0;
  // Timing of this launch (launch.timing): CLOCK_MONOTONIC ns at each
  // point of enum launch_time, and the child's step times (child.h).
  bool timing = false;
  uint64_t t[T_COUNT] = {};
  uint64_t step_ns[CHILD_STEP_TIMES] = {};
  int pinned_rootfs = -1;     // rootfs fd a prepared launch pinned (borrowed; duplicated)
  std::string report_fd_arg;  // init argv[1]: REPORT_FD[:GATE_FD]
  int ns_fds[MAX_NS_JOINS] = {-1, -1, -1, -1, -1, -1, -1, -1};  // plan.joins opened, closed after clone
  std::vector<char *> init_argv;  // nodularity-init REPORT_FD PATH ARGV... (pointers into the plan and report_fd_arg)

  // Results.
  int pid = -1;
  int pidfd = -1;
  bool failed = false;
  child_msg error{};          // when failed
  std::string helper_output;  // stderr of newuidmap/newgidmap when they failed
  uint64_t clone_ns = 0;      // time the clone call blocked this thread
  int terminal_fd = -1;       // the pty master received from the child, handed to JS
  bool paused = false;        // stopped before pivot_root for the caller's hooks (MSG_HOOKS)
};

// Main thread, before queueing: opens pipes, /dev/null and the rootfs fd,
// fills the job's stdio and init argv (the plan is not touched). Returns 0 or
// -errno (and the name of the call).
int spawn_prepare(spawn_job *job, const char **failed_call);

// Worker thread: clone, id maps, wait for the exec verdict. Never throws;
// sets job->failed and job->error. On failure the child is already reaped.
void spawn_run(spawn_job *job);

// Worker thread, after a pause for hooks (job->paused): tell the child to go
// on (ok) or to give up, then the rest of spawn_run.
void spawn_resume(spawn_job *job, bool ok);

// Close every fd the job still owns (after failure, or the parent's pipe
// ends that JS never took).
void spawn_close_all(spawn_job *job);

#endif
