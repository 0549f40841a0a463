// Exit notification on the libuv loop: a uv_poll_t on the container's pidfd,
// reaped with waitid(P_PIDFD). No thread per container, no SIGCHLD handler,
// no waitpid(-1).
#ifndef NODULARITY_EXIT_WATCH_H
#define NODULARITY_EXIT_WATCH_H

#include <stdint.h>
#include <sys/resource.h>
#include <uv.h>

struct exit_info {
  int exit_code;  // payload's exit code, or 128+N when killed by signal N
  int signal;     // N, or 0
  // The init's, from waitid, except ru_maxrss: the payload's peak (KiB) from
  // the init's MSG_STATUS, or -1 when there is none (no init, or the init
  // died before it could report). What waitid gives would be wrong: the
  // process we clone execs from Node's memory (vfork-style, or a fork copy),
  // and exec folds the old mm's high-water mark into ru_maxrss.
  struct rusage rusage;
  uint64_t seen_ns;  // CLOCK_MONOTONIC when the exit was seen (the pidfd polled readable)
};

struct exit_watch {
  uv_poll_t poll;
  int pidfd;
  int report_fd;  // init's report pipe (MSG_STATUS), or -1
  void (*on_exit)(exit_watch *, const exit_info *);
  void *data;
};

// Starts watching; on exit calls on_exit once, on the loop thread, after the
// fds are closed. The watch frees itself after on_exit returns.
int exit_watch_start(uv_loop_t *loop, exit_watch *w);
void exit_watch_ref(exit_watch *w, bool ref);

#endif
