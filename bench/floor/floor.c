// floor: the least work that gives the same container as nodularity's
// default, so the benchmark can say how far the library is from the kernel's
// own cost. It clones into new user, mount, pid, ipc and uts namespaces
// (optionally net), maps the caller's uid/gid to itself, binds the rootfs,
// gives it a fresh /proc and a minimal /dev, makes it read-only, pivots into
// it and execs the command. No init, no policy, no error recovery.
//
//   floor [--fork] [--net] [--loop N] ROOTFS [CMD [ARG...]]
//
// --fork   the parent writes the id maps while the child waits on a pipe
//          (what root and newuidmap ranges need); the default is a
//          vfork-style clone where the child writes its own single-ID maps.
// --loop N launch N times in this process and print one JSON line with the
//          spawn->exit time of each launch in nanoseconds; without it, launch
//          once and exit with the command's status (for timing from Node).
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <net/if.h>
#include <sched.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/mount.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define STACK_SIZE (256 * 1024)

static const char *const DEVICES[] = {"null", "zero", "full", "random", "urandom", "tty"};
#define N_DEVICES (sizeof DEVICES / sizeof DEVICES[0])
static const char *const DEV_LINKS[][2] = {
    {"/proc/self/fd", "fd"}, {"/proc/self/fd/0", "stdin"}, {"/proc/self/fd/1", "stdout"},
    {"/proc/self/fd/2", "stderr"}, {"pts/ptmx", "ptmx"},
};
#define N_DEV_LINKS (sizeof DEV_LINKS / sizeof DEV_LINKS[0])

// Everything the child touches is computed here before clone, because in the
// vfork-style mode the child runs on the parent's memory and must not
// allocate; the fork mode uses the same plan so the two differ only in who
// writes the maps.
struct plan {
  const char *rootfs;
  char **argv;
  char *envp[2];
  int net;
  int parent_writes_maps;
  int sync_fd;           // child reads one byte here in --fork mode
  char uid_map[64], gid_map[64];
  unsigned long ro_flags; // remount flags: read-only plus the locked ones the rootfs already has
  char dev[4096], proc[4096], pts[4096], shm[4096];
  char dev_node[N_DEVICES][4096], dev_host[N_DEVICES][64];
  char dev_link[N_DEV_LINKS][4096];
  // --phases (vfork mode: the child shares our memory): CLOCK_MONOTONIC ns at
  // the child's start, after its id maps, after its mounts, after pivot_root
  // (just before execve); the parent's at clone, clone's return and reaping.
  int timed;
  uint64_t t_child[4];
  uint64_t t_clone, t_clone_ret, t_reaped;
};

static uint64_t now_ns(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static int write_file(const char *path, const char *text) {
  int fd = open(path, O_WRONLY | O_CLOEXEC);
  if (fd < 0) return -errno;
  ssize_t n = write(fd, text, strlen(text));
  int err = n < 0 ? -errno : 0;
  close(fd);
  return err;
}

// Child-side failure: say which step failed and stop. snprintf+write rather
// than stdio, because in vfork mode stdio's buffers belong to the parent.
static void die_step(const char *step, const char *path, int err) {
  char msg[4400];
  int n = snprintf(msg, sizeof msg, "floor: %s %s: %s\n", step, path ? path : "", strerror(err));
  if (n > 0) (void)!write(2, msg, (size_t)n);
  _exit(127);
}

#define STEP(call, step, path) do { if ((call) < 0) die_step(step, path, errno); } while (0)

static void bring_up_loopback(void) {
  int s = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
  if (s < 0) die_step("socket", "lo", errno);
  struct ifreq ifr;
  memset(&ifr, 0, sizeof ifr);
  strcpy(ifr.ifr_name, "lo");
  ifr.ifr_flags = IFF_UP | IFF_LOOPBACK | IFF_RUNNING;
  if (ioctl(s, SIOCSIFFLAGS, &ifr) < 0) die_step("SIOCSIFFLAGS", "lo", errno);
  close(s);
}

static int child_main(void *arg) {
  struct plan *p = arg;
  int r;
  if (p->timed) p->t_child[0] = now_ns();

  if (p->parent_writes_maps) {
    char c;
    if (read(p->sync_fd, &c, 1) != 1) die_step("wait for maps", NULL, errno ? errno : EPIPE);
  } else {
    // setgroups must be denied before gid_map may be written by an
    // unprivileged process (CVE-2014-8989).
    if ((r = write_file("/proc/self/uid_map", p->uid_map)) < 0) die_step("write", "uid_map", -r);
    if ((r = write_file("/proc/self/setgroups", "deny")) < 0) die_step("write", "setgroups", -r);
    if ((r = write_file("/proc/self/gid_map", p->gid_map)) < 0) die_step("write", "gid_map", -r);
  }
  if (p->timed) p->t_child[1] = now_ns();

  // Nothing we mount may propagate back to the host.
  STEP(mount(NULL, "/", NULL, MS_REC | MS_PRIVATE, NULL), "make / rprivate", "/");
  STEP(mount(p->rootfs, p->rootfs, NULL, MS_BIND | MS_REC, NULL), "bind", p->rootfs);

  STEP(mount("tmpfs", p->dev, "tmpfs", MS_NOSUID | MS_NOEXEC, "mode=0755"), "mount tmpfs", p->dev);
  for (size_t i = 0; i < N_DEVICES; i++) {
    int fd = open(p->dev_node[i], O_WRONLY | O_CREAT | O_CLOEXEC, 0666);
    if (fd < 0) die_step("create", p->dev_node[i], errno);
    close(fd);
    STEP(mount(p->dev_host[i], p->dev_node[i], NULL, MS_BIND, NULL), "bind", p->dev_node[i]);
  }
  for (size_t i = 0; i < N_DEV_LINKS; i++)
    STEP(symlink(DEV_LINKS[i][0], p->dev_link[i]), "symlink", p->dev_link[i]);
  STEP(mkdir(p->pts, 0755), "mkdir", p->pts);
  STEP(mkdir(p->shm, 01777), "mkdir", p->shm);
  STEP(mount("devpts", p->pts, "devpts", MS_NOSUID | MS_NOEXEC, "newinstance,ptmxmode=0666,mode=620"),
       "mount devpts", p->pts);

  // proc is mounted while the host's /proc is still reachable: the kernel
  // only lets a user namespace mount proc when a fully visible one exists in
  // the mount namespace (mount_too_revealing), and after the old root is
  // detached none would.
  STEP(mount("proc", p->proc, "proc", MS_NOSUID | MS_NODEV | MS_NOEXEC, NULL), "mount proc", p->proc);

  // Read-only last, once the mount points under it exist. The remount must
  // repeat the flags the source already has, or a user namespace gets EPERM.
  STEP(mount(NULL, p->rootfs, NULL, MS_REMOUNT | MS_BIND | p->ro_flags, NULL), "remount ro", p->rootfs);

  if (p->net) bring_up_loopback();
  if (p->timed) p->t_child[2] = now_ns();

  STEP(chdir(p->rootfs), "chdir", p->rootfs);
  STEP(syscall(SYS_pivot_root, ".", "."), "pivot_root", p->rootfs);
  STEP(umount2(".", MNT_DETACH), "detach old root", "/");
  STEP(chdir("/"), "chdir", "/");
  STEP(sethostname("floor", 5), "sethostname", "floor");
  if (p->timed) p->t_child[3] = now_ns();

  execve(p->argv[0], p->argv, p->envp);
  die_step("execve", p->argv[0], errno);
  return 127;
}

static unsigned long locked_flags(const char *path) {
  struct statvfs sv;
  if (statvfs(path, &sv) < 0) {
    fprintf(stderr, "floor: statvfs %s: %s\n", path, strerror(errno));
    exit(2);
  }
  unsigned long f = 0;
  if (sv.f_flag & ST_NOSUID) f |= MS_NOSUID;
  if (sv.f_flag & ST_NODEV) f |= MS_NODEV;
  if (sv.f_flag & ST_NOEXEC) f |= MS_NOEXEC;
  if (sv.f_flag & ST_NOATIME) f |= MS_NOATIME;
  if (sv.f_flag & ST_NODIRATIME) f |= MS_NODIRATIME;
  if (sv.f_flag & ST_RELATIME) f |= MS_RELATIME;
  return f;
}

static void join(char *dst, const char *a, const char *b) {
  if ((size_t)snprintf(dst, 4096, "%s/%s", a, b) >= 4096) {
    fprintf(stderr, "floor: path too long: %s/%s\n", a, b);
    exit(2);
  }
}

static void plan_init(struct plan *p, const char *rootfs, char **argv, int net, int fork_mode) {
  memset(p, 0, sizeof *p);
  p->rootfs = rootfs;
  p->argv = argv;
  p->envp[0] = "PATH=/usr/local/bin:/usr/bin:/bin:/usr/sbin:/sbin";
  p->net = net;
  p->parent_writes_maps = fork_mode;
  snprintf(p->uid_map, sizeof p->uid_map, "%u %u 1\n", getuid(), getuid());
  snprintf(p->gid_map, sizeof p->gid_map, "%u %u 1\n", getgid(), getgid());
  p->ro_flags = MS_RDONLY | MS_NOSUID | MS_NODEV | locked_flags(rootfs);
  join(p->dev, rootfs, "dev");
  join(p->proc, rootfs, "proc");
  join(p->pts, p->dev, "pts");
  join(p->shm, p->dev, "shm");
  for (size_t i = 0; i < N_DEVICES; i++) {
    join(p->dev_node[i], p->dev, DEVICES[i]);
    snprintf(p->dev_host[i], sizeof p->dev_host[i], "/dev/%s", DEVICES[i]);
  }
  for (size_t i = 0; i < N_DEV_LINKS; i++) join(p->dev_link[i], p->dev, DEV_LINKS[i][1]);
}

static int write_proc_map(pid_t pid, const char *file, const char *text) {
  char path[64];
  snprintf(path, sizeof path, "/proc/%d/%s", (int)pid, file);
  int r = write_file(path, text);
  if (r < 0) fprintf(stderr, "floor: write %s: %s\n", path, strerror(-r));
  return r;
}

// One launch, start to reaped; returns the wait status or -1.
static int launch(struct plan *p, char *stack) {
  int flags = CLONE_NEWUSER | CLONE_NEWNS | CLONE_NEWPID | CLONE_NEWIPC | CLONE_NEWUTS | SIGCHLD;
  if (p->net) flags |= CLONE_NEWNET;
  int sync[2] = {-1, -1};
  if (p->parent_writes_maps) {
    if (pipe2(sync, O_CLOEXEC) < 0) { perror("floor: pipe2"); return -1; }
    p->sync_fd = sync[0];
  } else {
    // The child shares our memory and we sleep until it execs, so there is
    // no copy of page tables and no round trip.
    flags |= CLONE_VM | CLONE_VFORK;
  }
  p->t_clone = now_ns();
  pid_t pid = clone(child_main, stack + STACK_SIZE, flags, p);
  p->t_clone_ret = now_ns();
  if (pid < 0) {
    fprintf(stderr, "floor: clone: %s\n", strerror(errno));
    if (sync[0] >= 0) { close(sync[0]); close(sync[1]); }
    return -1;
  }
  if (p->parent_writes_maps) {
    close(sync[0]);
    int bad = write_proc_map(pid, "uid_map", p->uid_map) < 0 ||
              write_proc_map(pid, "setgroups", "deny") < 0 ||
              write_proc_map(pid, "gid_map", p->gid_map) < 0;
    if (bad) kill(pid, SIGKILL);
    else if (write(sync[1], "m", 1) != 1) perror("floor: sync write");
    close(sync[1]);
  }
  int st;
  while (waitpid(pid, &st, 0) < 0)
    if (errno != EINTR) { perror("floor: waitpid"); return -1; }
  p->t_reaped = now_ns();
  return st;
}

static void usage(void) {
  fprintf(stderr, "usage: floor [--fork] [--net] [--loop N [--phases]] ROOTFS [CMD [ARG...]]\n");
  exit(2);
}

int main(int argc, char **argv) {
  int fork_mode = 0, net = 0, phases = 0;
  long loops = 0;
  int i = 1;
  for (; i < argc && strncmp(argv[i], "--", 2) == 0; i++) {
    if (!strcmp(argv[i], "--fork")) fork_mode = 1;
    else if (!strcmp(argv[i], "--net")) net = 1;
    else if (!strcmp(argv[i], "--phases")) phases = 1;
    else if (!strcmp(argv[i], "--loop") && i + 1 < argc) loops = strtol(argv[++i], NULL, 10);
    else usage();
  }
  if (i >= argc || argv[i][0] != '/') usage();
  const char *rootfs = argv[i++];
  static char *default_cmd[] = {"/bin/true", NULL};
  char **cmd = i < argc ? &argv[i] : default_cmd;

  struct plan *p = malloc(sizeof *p);
  char *stack = mmap(NULL, STACK_SIZE, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_STACK, -1, 0);
  if (!p || stack == MAP_FAILED) { perror("floor: alloc"); return 2; }
  plan_init(p, rootfs, cmd, net, fork_mode);
  if (phases && fork_mode) {
    fprintf(stderr, "floor: --phases times the vfork mode only (the child writes its times into our memory)\n");
    return 2;
  }
  p->timed = phases;

  if (loops <= 0) {
    int st = launch(p, stack);
    if (st < 0) return 125;
    return WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
  }

  uint64_t *ns = calloc((size_t)loops, sizeof *ns);
  uint64_t(*ph)[7] = calloc((size_t)loops, sizeof *ph);
  if (!ns || !ph) { perror("floor: alloc"); return 2; }
  for (long k = 0; k < loops; k++) {
    uint64_t t0 = now_ns();
    int st = launch(p, stack);
    ns[k] = now_ns() - t0;
    uint64_t row[7] = {p->t_clone, p->t_child[0], p->t_child[1], p->t_child[2], p->t_child[3], p->t_clone_ret, p->t_reaped};
    memcpy(ph[k], row, sizeof row);
    if (st < 0 || !WIFEXITED(st) || WEXITSTATUS(st) != 0) {
      fprintf(stderr, "floor: launch %ld failed (status %d)\n", k, st);
      return 1;
    }
  }
  printf("{\"mode\":\"%s\",\"net\":%s,\"ns\":[", fork_mode ? "fork" : "vfork", net ? "true" : "false");
  for (long k = 0; k < loops; k++) printf("%s%llu", k ? "," : "", (unsigned long long)ns[k]);
  printf("]");
  if (phases) {
    // Per launch: clone, child start, maps done, mounts done, pivot done (exec next), clone returned, reaped.
    printf(",\"phases\":[");
    for (long k = 0; k < loops; k++) {
      printf("%s[", k ? "," : "");
      for (int j = 0; j < 7; j++) printf("%s%llu", j ? "," : "", (unsigned long long)ph[k][j]);
      printf("]");
    }
    printf("]");
  }
  printf("}\n");
  return 0;
}
