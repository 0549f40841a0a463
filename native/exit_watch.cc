// Exit notification: uv_poll_t on the pidfd, reap with waitid(P_PIDFD).

#include "exit_watch.h"

#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "protocol.h"
#include "syscalls.h"

namespace {

void on_closed(uv_handle_t *h) {
  delete reinterpret_cast<exit_watch *>(h->data);
}

// The init's last words: the payload's raw wait status and peak RSS (KiB).
// Absent when the init itself was killed (SIGKILL from kill(), the timeout's
// escalation, or another process) or crashed: then the status is the init's.
bool read_status(int fd, int *status, long *maxrss) {
  child_msg m;
  bool found = false;
  for (;;) {
    ssize_t n = read(fd, &m, sizeof m);
    if (n < 0 && errno == EINTR) continue;
    if (n != (ssize_t)sizeof m) break;
    if (m.type == MSG_STATUS) {
      *status = m.err;
      *maxrss = m.index;
      found = true;
    }
  }
  return found;
}

void on_readable(uv_poll_t *poll, int status, int events) {
  exit_watch *w = reinterpret_cast<exit_watch *>(poll->data);
  siginfo_t si;
  memset(&si, 0, sizeof si);
  exit_info info;
  memset(&info, 0, sizeof info);
  int r;
  do {
    r = sys_waitid(P_PIDFD, w->pidfd, &si, WEXITED | WNOHANG, &info.rusage);
  } while (r < 0 && errno == EINTR);
  if (r == 0 && si.si_pid == 0) return;  // not yet: spurious wakeup
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  info.seen_ns = (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
  if (r < 0) {
    info.exit_code = -1;  // already reaped by someone else; report what we can
  } else if (si.si_code == CLD_EXITED) {
    info.exit_code = si.si_status;
  } else {
    info.signal = si.si_status;
    info.exit_code = 128 + si.si_status;
  }
  int ws;
  long maxrss = 0;
  info.rusage.ru_maxrss = -1;  // unknown unless the init reports it
  if (w->report_fd >= 0 && read_status(w->report_fd, &ws, &maxrss)) {
    info.rusage.ru_maxrss = maxrss;
    if (WIFEXITED(ws)) {
      info.exit_code = WEXITSTATUS(ws);
      info.signal = 0;
    } else if (WIFSIGNALED(ws)) {
      info.signal = WTERMSIG(ws);
      info.exit_code = 128 + info.signal;
    }
  }
  uv_poll_stop(poll);
  close(w->pidfd);
  w->pidfd = -1;
  if (w->report_fd >= 0) close(w->report_fd);
  w->report_fd = -1;
  w->on_exit(w, &info);
  uv_close(reinterpret_cast<uv_handle_t *>(poll), on_closed);
}

}  // namespace

int exit_watch_start(uv_loop_t *loop, exit_watch *w) {
  if (w->report_fd >= 0) fcntl(w->report_fd, F_SETFL, fcntl(w->report_fd, F_GETFL) | O_NONBLOCK);
  int r = uv_poll_init(loop, &w->poll, w->pidfd);
  if (r < 0) return r;
  w->poll.data = w;
  return uv_poll_start(&w->poll, UV_READABLE, on_readable);
}

void exit_watch_ref(exit_watch *w, bool ref) {
  if (ref)
    uv_ref(reinterpret_cast<uv_handle_t *>(&w->poll));
  else
    uv_unref(reinterpret_cast<uv_handle_t *>(&w->poll));
}
