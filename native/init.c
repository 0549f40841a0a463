// nodularity-init: PID 1 of a container's pid namespace.
//
// Exec'd (from a sealed memfd) as the last setup step, so it holds none of the
// Node process's memory. It forks the payload, tells the parent whether the
// payload's execve worked, forwards termination signals to it, reaps every
// orphan, and exits with the payload's status (128+N for signal N), sending
// the raw wait status to the parent so the signal is reported too.
//
// Built -nostdlib -static (see rawsys.h for why): no libc, raw syscalls only.
//
// usage: nodularity-init REPORT_FD[:GATE_FD] PATH ARGV0 [ARGS...]   (environment = payload's)
//   GATE_FD: an fd to read one byte from before the payload is forked (the
//   create/start split, SpecOptions.startGate).

#include <stdint.h>

#include "protocol.h"
#include "rawsys.h"

enum {
  SIGHUP_ = 1,
  SIGINT_ = 2,
  SIGQUIT_ = 3,
  SIGUSR1_ = 10,
  SIGUSR2_ = 12,
  SIGTERM_ = 15,
  SIGCHLD_ = 17,
  SIGCONT_ = 18,
  SIGWINCH_ = 28,
};
#define SIG_BLOCK_ 0
#define SIG_SETMASK_ 2
#define WNOHANG_ 1
#define F_SETFD_ 2
#define FD_CLOEXEC_ 1
#define O_CLOEXEC_ 02000000
#define PR_SET_DUMPABLE_ 4
#define TIOCSPGRP_ 0x5410
#define POLLIN_ 0x001
#define RAW_EAGAIN 11

// The compiler may emit calls to these for struct copies and zeroing.
void *memset(void *s, int c, unsigned long n) {
  unsigned char *p = (unsigned char *)s;
  while (n--) *p++ = (unsigned char)c;
  return s;
}
void *memcpy(void *d, const void *s, unsigned long n) {
  unsigned char *dp = (unsigned char *)d;
  const unsigned char *sp = (const unsigned char *)s;
  while (n--) *dp++ = *sp++;
  return d;
}

static int report_fd = -1;

static void send_msg3(int type, int step, int err, int index) {
  struct child_msg m = {type, step, err, index, 0};
  long r;
  do {
    r = SYS3(__NR_write, report_fd, &m, sizeof m);
  } while (r == -RAW_EINTR);
}

static void send_msg(int type, int step, int err) {
  send_msg3(type, step, err, 0);
}

static __attribute__((noreturn)) void do_exit(int code) {
  for (;;) SYS1(__NR_exit_group, code);
}

static int is_forwarded(int sig) {
  switch (sig) {
    case SIGTERM_:
    case SIGINT_:
    case SIGHUP_:
    case SIGQUIT_:
    case SIGUSR1_:
    case SIGUSR2_:
    case SIGWINCH_:
    case SIGCONT_:
      return 1;
  }
  return 0;
}

struct pollfd_ {
  int fd;
  short events, revents;
};

// The start gate: the container is set up and waits, with nothing of the
// launcher's, for one byte on the gate (runtime-spec's "created" state).
// The launcher learns it is here from MSG_GATE; a byte starts the payload.
// EOF or an error ends the container without running it (127, and a
// STEP_START_GATE record). A terminating signal (the forwarded set but
// WINCH/CONT) sent now ends it as that signal would end the payload: there is
// none to forward to, and kill of a created container must stop it.
static void wait_gate(int gate) {
  SYS3(__NR_fcntl, gate, F_SETFD_, FD_CLOEXEC_);
  uint64_t all = ~(uint64_t)0;
  long sfd = SYS4(__NR_signalfd4, -1, &all, sizeof all, O_CLOEXEC_);
  send_msg(MSG_GATE, 0, 0);
  for (;;) {
    struct pollfd_ p[2] = {{gate, POLLIN_, 0}, {(int)sfd, POLLIN_, 0}};
    long r = SYS5(__NR_ppoll, p, sfd >= 0 ? 2 : 1, 0, 0, sizeof all);
    if (r == -RAW_EINTR) continue;
    if (r < 0) {
      send_msg(MSG_ERROR, STEP_START_GATE, (int)-r);
      do_exit(127);
    }
    if (sfd >= 0 && p[1].revents) {
      unsigned char info[128];  // struct signalfd_siginfo; ssi_signo is the first u32
      if (SYS3(__NR_read, sfd, info, sizeof info) == (long)sizeof info) {
        int sig = (int)*(uint32_t *)info;
        if (is_forwarded(sig) && sig != SIGWINCH_ && sig != SIGCONT_) {
          send_msg3(MSG_STATUS, 0, sig, 0);  // as a wait status: killed by sig
          do_exit(128 + sig);
        }
      }
    }
    if (p[0].revents) {
      unsigned char b;
      r = SYS3(__NR_read, gate, &b, 1);
      if (r == 1) break;
      if (r == -RAW_EINTR || r == -RAW_EAGAIN) continue;
      send_msg(MSG_ERROR, STEP_START_GATE, r < 0 ? (int)-r : 0);
      do_exit(127);
    }
  }
  SYS1(__NR_close, gate);
  if (sfd >= 0) SYS1(__NR_close, sfd);
}

static int parse_int(const char *s) {
  int v = 0;
  while (*s >= '0' && *s <= '9') v = v * 10 + (*s++ - '0');
  return v;
}

__attribute__((used)) void init_main(long *sp) {
  int argc = (int)sp[0];
  char **argv = (char **)(sp + 1);
  char **envp = argv + argc + 1;
  if (argc < 4) do_exit(127);
  report_fd = parse_int(argv[1]);
  int gate = -1;
  for (const char *c = argv[1]; *c; c++)
    if (*c == ':') gate = parse_int(c + 1);
  // The payload must not inherit the report pipe.
  SYS3(__NR_fcntl, report_fd, F_SETFD_, FD_CLOEXEC_);
  // Not dumpable: the payload (same uid) may not ptrace us or open
  // /proc/1/exe, /proc/1/mem of a process that came from outside.
  SYS5(__NR_prctl, PR_SET_DUMPABLE_, 0, 0, 0, 0);

  // Every signal arrived blocked (see child.cc) and stays blocked here: we
  // take them synchronously with rt_sigtimedwait. That is also why they reach
  // us at all: as PID 1 of the namespace (SIGNAL_UNKILLABLE) the kernel drops
  // a signal whose disposition is SIG_DFL (sig_task_ignored(): unless it is
  // SIGKILL or SIGSTOP from an ancestor pid namespace; get_signal(): unless
  // SIGKILL/SIGSTOP), but a blocked signal is never dropped when sent
  // (sig_ignored()) and rt_sigtimedwait dequeues it without get_signal's
  // filter. A payload run without us has no such shield and, as PID 1,
  // ignores SIGTERM it has no handler for: container.ts escalates to SIGKILL.
  // SIGKILL from the launcher's namespace ends us, and the namespace with us.
  uint64_t all = ~(uint64_t)0;
  SYS4(__NR_rt_sigprocmask, SIG_BLOCK_, &all, 0, sizeof all);

  if (gate >= 0) wait_gate(gate);

  int exec_pipe[2];
  long r = SYS2(__NR_pipe2, exec_pipe, O_CLOEXEC_);
  if (r < 0) {
    send_msg(MSG_ERROR, STEP_INIT_FORK, (int)-r);
    do_exit(127);
  }
  long child = SYS5(__NR_clone, SIGCHLD_, 0, 0, 0, 0);
  if (child < 0) {
    send_msg(MSG_ERROR, STEP_INIT_FORK, (int)-child);
    do_exit(127);
  }
  if (child == 0) {
    // The payload leads a process group of its own and, when our stdin is the
    // container's terminal, that group is the terminal's foreground: Ctrl-C
    // typed there reaches the payload once, from the kernel, and not us (we
    // would forward it a second time). Signals are still blocked, so
    // tcsetpgrp from what is now a background group raises no SIGTTOU.
    SYS2(__NR_setpgid, 0, 0);
    int me = (int)SYS0(__NR_getpid);
    SYS3(__NR_ioctl, 0, TIOCSPGRP_, &me);  // ENOTTY without a terminal: fine
    uint64_t none = 0;
    SYS4(__NR_rt_sigprocmask, SIG_SETMASK_, &none, 0, sizeof none);
    int err = (int)-SYS3(__NR_execve, argv[2], argv + 3, envp);
    SYS3(__NR_write, exec_pipe[1], &err, sizeof err);
    do_exit(127);
  }
  SYS1(__NR_close, exec_pipe[1]);
  int err = 0;
  do {
    r = SYS3(__NR_read, exec_pipe[0], &err, sizeof err);
  } while (r == -RAW_EINTR);
  SYS1(__NR_close, exec_pipe[0]);
  if (r == (long)sizeof err) {
    send_msg(MSG_ERROR, STEP_EXEC, err);
    int st;
    SYS4(__NR_wait4, child, &st, 0, 0);
    do_exit(127);
  }
  send_msg(MSG_EXEC_OK, 0, 0);

  for (;;) {
    unsigned char info[128];  // siginfo_t; si_signo is the first int
    long sig = SYS4(__NR_rt_sigtimedwait, &all, info, 0, sizeof all);
    if (sig < 0) continue;
    if (sig == SIGCHLD_) {
      int status;
      long pid;
      // struct rusage: two timevals, then ru_maxrss (KiB) as the 5th long.
      long ru[18];
      while ((pid = SYS4(__NR_wait4, -1, &status, WNOHANG_, ru)) > 0) {
        if (pid != child) continue;  // an orphan: reaping is all we owe it
        // The payload's own peak RSS: ours (and so what the parent's waitid
        // reports) is Node's, inherited through the vfork-style clone.
        send_msg3(MSG_STATUS, 0, status, ru[4] > 0x7fffffff ? 0x7fffffff : (int)ru[4]);
        if ((status & 0x7f) == 0) do_exit((status >> 8) & 0xff);
        do_exit(128 + (status & 0x7f));
      }
    } else if (is_forwarded((int)sig)) {
      SYS2(__NR_kill, child, sig);
    }
  }
}

// Entry point: hand the initial stack (argc, argv..., envp...) to init_main
// with the stack aligned as the ABI wants for a call.
#if defined(__x86_64__)
__asm__(
    ".text\n.global _start\n_start:\n  xor %rbp, %rbp\n  mov %rsp, %rdi\n  and $-16, %rsp\n  call init_main\n  hlt\n");
#elif defined(__aarch64__)
__asm__(".text\n.global _start\n_start:\n  mov x0, sp\n  bl init_main\n  brk #0\n");
#endif
