// nodularity-init: PID 1 of a container's pid namespace.
//
// Exec'd (from a sealed memfd) as the last setup step, so it holds none of the
// Node process's memory. It forks the payload, tells the parent whether the
// payload's execve worked, forwards termination signals to it, reaps every
// orphan, and exits with the payload's status (128+N for signal N), sending
// the raw wait status to the parent so the signal is reported too.
//
// usage: nodularity-init REPORT_FD PATH ARGV0 [ARGS...]   (environment = payload's)

#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdlib.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#include "protocol.h"

static int report_fd = -1;

static void send_msg(int type, int step, int err) {
  struct child_msg m = {type, step, err, 0, 0};
  ssize_t r;
  do { r = write(report_fd, &m, sizeof m); } while (r < 0 && errno == EINTR);
}

static int is_forwarded(int sig) {
  switch (sig) {
    case SIGTERM: case SIGINT: case SIGHUP: case SIGQUIT:
    case SIGUSR1: case SIGUSR2: case SIGWINCH: case SIGCONT:
      return 1;
  }
  return 0;
}

int main(int argc, char **argv, char **envp) {
  if (argc < 4) return 127;
  report_fd = atoi(argv[1]);
  // The payload must not inherit the report pipe.
  fcntl(report_fd, F_SETFD, FD_CLOEXEC);
  // Not dumpable: the payload (same uid) may not ptrace us or open
  // /proc/1/exe, /proc/1/mem of a process that came from outside.
  prctl(PR_SET_DUMPABLE, 0, 0, 0, 0);

  // Every signal arrived blocked (see child.cc) and stays blocked here: we
  // take them synchronously with sigwaitinfo.
  sigset_t all;
  sigfillset(&all);
  sigprocmask(SIG_BLOCK, &all, NULL);

  int exec_pipe[2];
  if (pipe2(exec_pipe, O_CLOEXEC) < 0) {
    send_msg(MSG_ERROR, STEP_INIT_FORK, errno);
    return 127;
  }
  pid_t child = fork();
  if (child < 0) {
    send_msg(MSG_ERROR, STEP_INIT_FORK, errno);
    return 127;
  }
  if (child == 0) {
    sigset_t none;
    sigemptyset(&none);
    sigprocmask(SIG_SETMASK, &none, NULL);
    execve(argv[2], argv + 3, envp);
    int err = errno;
    ssize_t r = write(exec_pipe[1], &err, sizeof err);
    (void)r;
    _exit(127);
  }
  close(exec_pipe[1]);
  int err = 0;
  ssize_t n;
  do { n = read(exec_pipe[0], &err, sizeof err); } while (n < 0 && errno == EINTR);
  close(exec_pipe[0]);
  if (n == (ssize_t)sizeof err) {
    send_msg(MSG_ERROR, STEP_EXEC, err);
    waitpid(child, NULL, 0);
    return 127;
  }
  send_msg(MSG_EXEC_OK, 0, 0);

  for (;;) {
    siginfo_t si;
    int sig = sigwaitinfo(&all, &si);
    if (sig < 0) continue;
    if (sig == SIGCHLD) {
      int status;
      pid_t pid;
      while ((pid = waitpid(-1, &status, WNOHANG)) > 0) {
        if (pid != child) continue;  // an orphan: reaping is all we owe it
        send_msg(MSG_STATUS, 0, status);
        if (WIFEXITED(status)) return WEXITSTATUS(status);
        return 128 + WTERMSIG(status);
      }
    } else if (is_forwarded(sig)) {
      kill(child, sig);
    }
  }
}
