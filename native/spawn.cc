// Parent side of a launch.
//
// Protocol (one report pipe, one optional sync pipe):
//
//   parent (libuv worker thread)            child (clone)                init / payload
//   ----------------------------            -------------                --------------
//   pipe2(report), [pipe2(sync)]
//   clone(NEW*, CLONE_PIDFD) ------------>  reset signals, stdio
//   [ids by parent: write /proc/PID/*_map   [read sync: SYNC_MAPS_WRITTEN]
//    or run newuidmap/newgidmap;            or write own maps (single ID)
//    write SYNC_MAPS_WRITTEN]               mounts, pivot_root, creds ...
//   read(report) <------------------------  MSG_ERROR on failure, _exit(127)
//                                           execve(init)  ---------->   [start gate: MSG_GATE, then
//                                                                         read 1 byte of the gate]
//                                                                        fork + execve(payload)
//   read(report) <----------------------------------------------------- MSG_EXEC_OK | MSG_ERROR
//     (with a start gate the launch completes at MSG_GATE; MSG_EXEC_OK and the rest stay queued)
//   ... later, on the loop (exit_watch.cc):
//   pidfd readable, read(report) <------------------------------------- MSG_STATUS (wait status)
//
// Without init the payload is exec'd by the child directly and EOF on the
// CLOEXEC report pipe means success.
//
// When the child writes its own single-ID maps, the clone is vfork-style
// (CLONE_VM|CLONE_VFORK): no page tables are copied, so launch time does not
// grow with the Node heap, and this worker thread sleeps until the exec. The
// parent-writes-maps modes need the parent to run while the child waits, so
// they clone without CLONE_VM (a plain fork copy).

#include "spawn.h"

#include <errno.h>
#include <fcntl.h>
#include <sched.h>
#include <signal.h>
#include <spawn.h>
#include <linux/nsfs.h>
#include <poll.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "child.h"
#include "syscalls.h"

extern char **environ;

namespace {

constexpr size_t kStackSize = 256 * 1024;

// One child stack per worker thread, reused: a vfork-style child is done with
// it when clone returns, a fork-style child has its own copy.
thread_local void *tls_stack = nullptr;

void *child_stack() {
  if (!tls_stack) {
    void *s = mmap(nullptr, kStackSize, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_STACK, -1, 0);
    if (s == MAP_FAILED) return nullptr;
    tls_stack = s;
  }
  return (char *)tls_stack + kStackSize;  // stacks grow down; mmap is page aligned
}

void close_fd(int *fd) {
  if (*fd >= 0) close(*fd);
  *fd = -1;
}

void set_error(spawn_job *job, int step, int err, int index = 0) {
  job->failed = true;
  job->error = child_msg{MSG_ERROR, step, err, index, 0};
}

int write_proc(pid_t pid, const char *file, const char *data) {
  char path[64];
  snprintf(path, sizeof path, "/proc/%d/%s", (int)pid, file);
  return write_whole_file(path, data);
}

// Run newuidmap/newgidmap PID ARGS..., collecting its stderr for the error.
int run_id_helper(spawn_job *job, char *const *args) {
  std::string pid = std::to_string(job->pid);
  std::vector<char *> argv;
  argv.push_back(args[0]);
  argv.push_back(const_cast<char *>(pid.c_str()));
  for (size_t i = 1; args[i]; i++) argv.push_back(args[i]);
  argv.push_back(nullptr);
  int errp[2];
  if (pipe2(errp, O_CLOEXEC) < 0) return -errno;
  posix_spawn_file_actions_t fa;
  posix_spawn_file_actions_init(&fa);
  posix_spawn_file_actions_adddup2(&fa, errp[1], 2);
  pid_t hp;
  int r = posix_spawn(&hp, argv[0], &fa, nullptr, argv.data(), environ);
  posix_spawn_file_actions_destroy(&fa);
  close(errp[1]);
  if (r != 0) {
    close(errp[0]);
    job->helper_output = std::string(args[0]) + ": " + strerror(r);
    return -r;
  }
  char buf[512];
  ssize_t n;
  std::string out;
  while ((n = read(errp[0], buf, sizeof buf)) > 0 || (n < 0 && errno == EINTR))
    if (n > 0) out.append(buf, n);
  close(errp[0]);
  int status;
  while (waitpid(hp, &status, 0) < 0 && errno == EINTR) {
  }
  if (WIFEXITED(status) && WEXITSTATUS(status) == 0) return 0;
  job->helper_output = std::string(args[0]) + " exited with status " +
                       std::to_string(WIFEXITED(status) ? WEXITSTATUS(status) : -1) + (out.empty() ? "" : ": " + out);
  return -EPERM;
}

// The parent-writes-maps half of the sync protocol. Returns 0 or -errno.
// On failure job->error has the step and index (protocol.h), err is returned.
int write_maps_for_child(spawn_job *job) {
  const launch_plan *p = job->view();
  int r = 0;
  job->error.index = 1;  // written by the parent
  if (p->id_mode == IDMAP_PARENT) {
    if (p->setgroups_deny && (r = write_proc(job->pid, "setgroups", "deny")) < 0 && r != -ENOENT) {
      job->error.step = STEP_SETGROUPS_DENY;
      return r;
    }
    if ((r = write_proc(job->pid, "uid_map", p->uid_map)) < 0) {
      job->error.step = STEP_UID_MAP;
      return r;
    }
    if ((r = write_proc(job->pid, "gid_map", p->gid_map)) < 0) {
      job->error.step = STEP_GID_MAP;
      return r;
    }
  } else {
    job->error.step = STEP_ID_HELPER;
    job->error.index = 0;
    if ((r = run_id_helper(job, p->uid_helper_argv)) < 0) return r;
    job->error.index = 1;
    if ((r = run_id_helper(job, p->gid_helper_argv)) < 0) return r;
  }
  return 0;
}

// Read one record; 0 at EOF, 1 for a record, -errno on error.
int read_msg(int fd, child_msg *m) {
  size_t got = 0;
  while (got < sizeof *m) {
    ssize_t n = read(fd, (char *)m + got, sizeof *m - got);
    if (n == 0) return got == 0 ? 0 : -EPROTO;
    if (n < 0) {
      if (errno == EINTR) continue;
      return -errno;
    }
    got += n;
  }
  return 1;
}

// One fd passed with SCM_RIGHTS, without blocking: 0..N or -errno.
int recv_fd(int sock) {
  char byte;
  struct iovec iov = {&byte, 1};
  union {
    struct cmsghdr h;
    char buf[CMSG_SPACE(sizeof(int))];
  } u;
  struct msghdr msg = {};
  msg.msg_iov = &iov;
  msg.msg_iovlen = 1;
  msg.msg_control = u.buf;
  msg.msg_controllen = sizeof u.buf;
  ssize_t n;
  do {
    n = recvmsg(sock, &msg, MSG_DONTWAIT | MSG_CMSG_CLOEXEC);
  } while (n < 0 && errno == EINTR);
  if (n < 0) return -errno;
  struct cmsghdr *c = CMSG_FIRSTHDR(&msg);
  if (n != 1 || !c || c->cmsg_level != SOL_SOCKET || c->cmsg_type != SCM_RIGHTS || c->cmsg_len != CMSG_LEN(sizeof(int)))
    return -EPROTO;
  int fd;
  memcpy(&fd, CMSG_DATA(c), sizeof fd);
  return fd;
}

}  // namespace

uint64_t now_ns() {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (uint64_t)ts.tv_sec * 1000000000ull + ts.tv_nsec;
}

namespace {

// The first record after the setup (or after the hooks): the exec verdict,
// or MSG_GATE with a start gate.
void launch_verdict(spawn_job *job, int r, child_msg *mp) {
  const launch_plan *p = job->view();
  child_msg &m = *mp;
  if (r < 0) {
    set_error(job, STEP_PROTOCOL, r == -EPROTO ? EPROTO : -r, r == -EPROTO ? PROTO_SHORT : PROTO_READ);
  } else if (r == 0) {
    // EOF: without init, the CLOEXEC pipe closed at a successful execve.
    // With init, the init died before it could say anything.
    if (p->use_init) set_error(job, STEP_EXEC_INIT, ECHILD);
  } else if (m.type == MSG_ERROR) {
    job->failed = true;
    job->error = m;
  } else if (m.type != (job->gate_fd >= 0 ? MSG_GATE : MSG_EXEC_OK)) {
    set_error(job, STEP_PROTOCOL, EPROTO, PROTO_TYPE);
  }
}

// The pty master (terminal without a console socket), and on failure the
// reaping, so that a failed launch leaves no zombie.
void launch_tail(spawn_job *job) {
  const launch_plan *p = job->view();
  if (!job->failed && p->terminal && job->console_socket < 0) {
    // The child sent the pty master before it exec'd; it is queued already.
    int r = recv_fd(job->console_parent);
    if (r < 0)
      set_error(job, STEP_TERMINAL, -r);
    else
      job->terminal_fd = r;
  }
  close_fd(&job->console_parent);

  if (job->failed) {
    // Reap now, so a failed launch leaves no zombie. The child is exiting
    // (127) or never heard SYNC_MAPS_WRITTEN; make sure.
    sys_pidfd_send_signal(job->pidfd, SIGKILL);
    siginfo_t si;
    while (sys_waitid(P_PIDFD, job->pidfd, &si, WEXITED, nullptr) < 0 && errno == EINTR) {
    }
    close_fd(&job->pidfd);
    close_fd(&job->report_rd);
    close_fd(&job->sync_wr);
    job->pid = -1;
  } else if (!p->use_init) {
    close_fd(&job->report_rd);  // nothing more will come
  }
}

}  // namespace

int spawn_prepare(spawn_job *job, const char **failed_call) {
  const launch_plan *p = job->view();
  // A mount namespace joined where a root is to be built: pivot_root there
  // would move the root of every process in it. The planner refuses it
  // (lib/plan/root.ts); this is the same refusal for a plan that did not
  // come from it. An exec (no rootfs) joins the container's own and pivots nothing.
  for (int i = 0; i < p->n_joins; i++)
    if (p->rootfs && p->joins[i].type == CLONE_NEWNS) {
      *failed_call = "join a mount namespace by path with a root to build (refused)";
      return -EPERM;
    }
  for (int i = 0; i < 3; i++) {
    switch (job->stdio_kind[i]) {
      case STDIO_PIPE: {
        int fds[2];
        if (pipe2(fds, O_CLOEXEC) < 0) {
          *failed_call = "pipe2";
          return -errno;
        }
        // stdin: the child reads; stdout/stderr: the child writes.
        job->child_stdio[i] = i == 0 ? fds[0] : fds[1];
        job->parent_stdio[i] = i == 0 ? fds[1] : fds[0];
        job->stdio[i] = job->child_stdio[i];
        break;
      }
      case STDIO_IGNORE:
        if (job->null_fd[i == 0 ? 0 : 1] >= 0) {  // the addon's, opened once (not ours to close)
          job->stdio[i] = job->null_fd[i == 0 ? 0 : 1];
          break;
        }
        job->child_stdio[i] = open("/dev/null", (i == 0 ? O_RDONLY : O_WRONLY) | O_CLOEXEC);
        if (job->child_stdio[i] < 0) {
          *failed_call = "open /dev/null";
          return -errno;
        }
        job->stdio[i] = job->child_stdio[i];
        break;
      default:
        job->stdio[i] = job->stdio_fd[i];
    }
  }
  // The rootfs as the launcher finds it now: the child walks the path again
  // in its own mount namespace (an fd of ours names a mount of this one,
  // which it cannot bind from) and refuses anything but this directory.
  // A prepared launch brings the directory pinned at prepare() instead.
  if (p->rootfs) {
    job->rootfs_fd = job->pinned_rootfs >= 0 ? fcntl(job->pinned_rootfs, F_DUPFD_CLOEXEC, 3)
                                             : open(p->rootfs, O_PATH | O_DIRECTORY | O_CLOEXEC);
    if (job->rootfs_fd < 0) {
      *failed_call = "open rootfs";
      return -errno;
    }
  }
  // Namespaces to join, opened now (the child only calls setns), each checked
  // to be a namespace of the type the plan says. For an exec, the target's
  // pidfd is taken first and checked after: a target that died meanwhile
  // (its pid free for reuse) is refused rather than some other process's
  // namespaces joined.
  int target = -1;
  if (p->join_pid > 0 && (target = sys_pidfd_open(p->join_pid, 0)) < 0) {
    *failed_call = "pidfd_open of the process to enter";
    return -errno;
  }
  for (int i = 0; i < p->n_joins; i++) {
    job->ns_fds[i] = open(p->joins[i].path, O_RDONLY | O_CLOEXEC);
    if (job->ns_fds[i] < 0) {
      *failed_call = "open a namespace to join";
      int e = errno;
      if (target >= 0) close(target);
      return -e;
    }
    int t = ioctl(job->ns_fds[i], NS_GET_NSTYPE);
    if (t != p->joins[i].type) {
      *failed_call = "check a namespace's type (NS_GET_NSTYPE)";
      if (target >= 0) close(target);
      return t < 0 ? -errno : -EINVAL;
    }
  }
  if (target >= 0) {
    struct pollfd pfd = {target, POLLIN, 0};
    int gone = poll(&pfd, 1, 0) == 1;
    close(target);
    if (gone) {
      *failed_call = "enter the process (it exited)";
      return -ESRCH;
    }
  }
  if (p->overlay_persist) {
    job->persist_fd = open(p->overlay_persist, O_PATH | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
    if (job->persist_fd < 0) {
      *failed_call = "open the overlay directory";
      return -errno;
    }
  }
  int fds[2];
  if (pipe2(fds, O_CLOEXEC) < 0) {
    *failed_call = "pipe2";
    return -errno;
  }
  job->report_rd = fds[0];
  job->report_wr = fds[1];
  if (p->id_mode == IDMAP_PARENT || p->id_mode == IDMAP_HELPER || p->hooks_pause) {
    if (pipe2(fds, O_CLOEXEC) < 0) {
      *failed_call = "pipe2";
      return -errno;
    }
    job->sync_rd = fds[0];
    job->sync_wr = fds[1];
  }
  if (p->terminal && job->console_socket < 0) {
    if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, fds) < 0) {
      *failed_call = "socketpair";
      return -errno;
    }
    job->console_parent = fds[0];
    job->console_child = fds[1];
  }
  if (p->use_init) {
    job->report_fd_arg = std::to_string(job->report_wr);
    if (job->gate_fd >= 0) job->report_fd_arg += ":" + std::to_string(job->gate_fd);
    // argv: init REPORT_FD[:GATE_FD] PATH ARGV...
    job->init_argv.clear();
    job->init_argv.push_back(const_cast<char *>("nodularity-init"));
    job->init_argv.push_back(const_cast<char *>(job->report_fd_arg.c_str()));
    job->init_argv.push_back(const_cast<char *>(p->exec_path));
    for (char *const *a = p->argv; *a; a++) job->init_argv.push_back(*a);
    job->init_argv.push_back(nullptr);
  }
  return 0;
}

void spawn_run(spawn_job *job) {
  if (job->timing) job->t[T_WORKER] = now_ns();
  const launch_plan *p = job->view();
  // Join mode is fork-style: setns into a user namespace (and into a time
  // namespace) is refused to a process that shares its memory.
  bool join_mode = p->n_joins || p->unshare_flags || p->fork_after_join;
  // So is a launch that pauses for hooks: this thread runs on meanwhile.
  bool vfork_style = (p->id_mode == IDMAP_SELF || p->id_mode == IDMAP_NONE) && !join_mode && !p->hooks_pause;
  child_args args{p,
                  job->report_wr,
                  job->sync_rd,
                  job->init_fd,
                  job->parent_pidfd,
                  job->console_socket >= 0 ? job->console_socket : job->console_child,
                  job->rootfs_fd,
                  job->persist_fd,
                  {job->stdio[0], job->stdio[1], job->stdio[2]},
                  p->use_init ? job->init_argv.data() : nullptr,
                  job->gate_fd,
                  job->preserve_fds,
                  job->console_socket >= 0,
                  job->ns_fds,
                  job->timing && vfork_style ? job->step_ns : nullptr};

  void *stack = child_stack();
  if (!stack) {
    set_error(job, STEP_CLONE, ENOMEM);
  } else {
    // All signals blocked across clone: the child must not run a Node
    // handler (it shares our memory) before it resets dispositions.
    sigset_t all, old;
    sigfillset(&all);
    pthread_sigmask(SIG_SETMASK, &all, &old);
    int flags = p->clone_flags | CLONE_PIDFD | SIGCHLD | (vfork_style ? CLONE_VM | CLONE_VFORK : 0);
    int pidfd = -1;
    uint64_t t0 = now_ns();
    pid_t pid = clone(child_main, stack, flags, &args, &pidfd);
    int clone_errno = errno;
    uint64_t t1 = now_ns();
    job->clone_ns = t1 - t0;
    if (job->timing) {
      job->t[T_CLONE] = t0;
      job->t[T_CLONE_DONE] = t1;
    }
    pthread_sigmask(SIG_SETMASK, &old, nullptr);
    if (pid < 0) {
      set_error(job, STEP_CLONE, clone_errno);
    } else {
      job->pid = pid;
      job->pidfd = pidfd;
    }
  }

  // The child holds its own copies now; ours would keep pipes from reaching EOF.
  close_fd(&job->report_wr);
  close_fd(&job->sync_rd);
  close_fd(&job->console_child);
  close_fd(&job->rootfs_fd);
  close_fd(&job->persist_fd);
  for (int i = 0; i < MAX_NS_JOINS; i++) close_fd(&job->ns_fds[i]);
  for (int i = 0; i < 3; i++) close_fd(&job->child_stdio[i]);
  if (job->failed) {
    close_fd(&job->sync_wr);
    return;
  }

  if (job->sync_wr >= 0 && (p->id_mode == IDMAP_PARENT || p->id_mode == IDMAP_HELPER)) {
    int r = write_maps_for_child(job);
    char b = r < 0 ? SYNC_ABORT : SYNC_MAPS_WRITTEN;
    ssize_t n = write(job->sync_wr, &b, 1);
    (void)n;
    if (r < 0 || !p->hooks_pause) close_fd(&job->sync_wr);
    if (r < 0) {
      job->failed = true;
      job->error.type = MSG_ERROR;
      job->error.err = -r;
    }
  }

  if (!job->failed) {
    child_msg m;
    int r = read_msg(job->report_rd, &m);
    if (r == 1 && m.type == MSG_PID && p->fork_after_join) {
      // The child joined and forked (CLONE_PARENT: ours) into the pid/time
      // namespaces, and exits: reap it, and go on with the process that
      // continues the setup, which is our child and so cannot be reaped or
      // its pid reused before we open its pidfd.
      siginfo_t si;
      while (sys_waitid(P_PIDFD, job->pidfd, &si, WEXITED, nullptr) < 0 && errno == EINTR) {
      }
      close_fd(&job->pidfd);
      job->pid = m.index;
      job->pidfd = sys_pidfd_open(m.index, 0);
      if (job->pidfd < 0) {
        int e = errno;
        kill(m.index, SIGKILL);
        while (waitpid(m.index, nullptr, __WALL) < 0 && errno == EINTR) {
        }
        job->pid = -1;
        close_fd(&job->report_rd);
        set_error(job, STEP_JOIN_NAMESPACES, e, JOIN_PIDFD);
        return;
      }
      r = read_msg(job->report_rd, &m);
    }
    if (r == 1 && m.type == MSG_HOOKS && p->hooks_pause) {
      // Paused before pivot_root: the caller runs its hooks, then spawn_resume.
      job->paused = true;
      return;
    }
    launch_verdict(job, r, &m);
    if (job->timing) job->t[T_VERDICT] = now_ns();
  }
  launch_tail(job);
}

void spawn_resume(spawn_job *job, bool ok) {
  job->paused = false;
  char b = ok ? SYNC_HOOKS_DONE : SYNC_ABORT;
  ssize_t n = write(job->sync_wr, &b, 1);
  close_fd(&job->sync_wr);
  if (!ok || n != 1) {
    set_error(job, STEP_HOOKS, ECANCELED);
  } else {
    child_msg m;
    int r = read_msg(job->report_rd, &m);
    launch_verdict(job, r, &m);
  }
  launch_tail(job);
}

void spawn_close_all(spawn_job *job) {
  for (int i = 0; i < 3; i++) {
    close_fd(&job->parent_stdio[i]);
    close_fd(&job->child_stdio[i]);
  }
  close_fd(&job->report_rd);
  close_fd(&job->report_wr);
  close_fd(&job->sync_rd);
  close_fd(&job->sync_wr);
  close_fd(&job->console_parent);
  close_fd(&job->console_child);
  close_fd(&job->rootfs_fd);
  close_fd(&job->persist_fd);
  close_fd(&job->terminal_fd);
  close_fd(&job->pidfd);
  for (int i = 0; i < MAX_NS_JOINS; i++) close_fd(&job->ns_fds[i]);
}
