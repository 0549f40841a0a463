// Multi-call test payload, run inside containers by the integration tests
// (in the spirit of crun's tests/init.c): each verb checks one thing from the
// inside and prints a line the test parses. Statically linked so that it runs
// in any rootfs.
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <unistd.h>
#include <dirent.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <time.h>

static const char *errname(int e) {
  switch (e) {
    case 0: return "OK";
    case EPERM: return "EPERM";
    case EACCES: return "EACCES";
    case EROFS: return "EROFS";
    case ENOENT: return "ENOENT";
    case EINVAL: return "EINVAL";
    case EBUSY: return "EBUSY";
    case ENXIO: return "ENXIO";
    case ELOOP: return "ELOOP";
    case ENOKEY: return "ENOKEY";
    default: return strerror(e);
  }
}

static void on_signal(int sig) {
  char msg[32];
  int n = snprintf(msg, sizeof msg, "caught %d\n", sig);
  if (write(1, msg, n) < 0) _exit(1);
  _exit(40 + sig);
}

static volatile sig_atomic_t counted;
static void count_signal(int sig) { (void)sig; counted++; }

static int write_str(const char *path, const char *s) {
  int fd = open(path, O_WRONLY);
  if (fd < 0) return errno;
  int r = write(fd, s, strlen(s)) < 0 ? errno : 0;
  close(fd);
  return r;
}

static void on_sigsys(int sig) {
  (void)sig;
  static const char msg[] = "SIGSYS\n";
  if (write(1, msg, sizeof msg - 1) < 0) _exit(1);
  _exit(77);
}

// trysys NAME[:ARG0]...: make each syscall with harmless arguments (or ARG0)
// and print NAME=0 or NAME=<errno number>. A SIGSYS (a TRAP action) prints
// SIGSYS and exits 77. Arguments are chosen so that, without a filter, the
// kernel answers something other than EPERM where it can (bad pointers,
// invalid flags), and nothing on the host changes.
static int trysys(int n, char **names) {
  signal(SIGSYS, on_sigsys);
  for (int i = 0; i < n; i++) {
    char name[64];
    snprintf(name, sizeof name, "%s", names[i]);
    char *colon = strchr(name, ':');
    int has_arg = colon != NULL;
    unsigned long arg = 0;
    if (colon) { *colon = 0; arg = strtoul(colon + 1, NULL, 0); }
    long r;
    errno = 0;
    if (!strcmp(name, "keyctl")) r = syscall(SYS_keyctl, 0 /* GET_KEYRING_ID */, -3 /* session */, 0);
    else if (!strcmp(name, "add_key")) r = syscall(SYS_add_key, "user", NULL, NULL, 0, -3);
    else if (!strcmp(name, "request_key")) r = syscall(SYS_request_key, "user", "nodularity-none", NULL, -3);
    else if (!strcmp(name, "bpf")) r = syscall(SYS_bpf, 0x7fff, NULL, 0);
    else if (!strcmp(name, "perf_event_open")) r = syscall(SYS_perf_event_open, NULL, 0, -1, -1, 0);
    else if (!strcmp(name, "userfaultfd")) r = syscall(SYS_userfaultfd, 1 /* USER_MODE_ONLY */ | 0x1000 /* invalid */);
    else if (!strcmp(name, "io_uring_setup")) r = syscall(SYS_io_uring_setup, 1, NULL);
    else if (!strcmp(name, "io_uring_enter")) r = syscall(SYS_io_uring_enter, -1, 0, 0, 0, NULL, 0);
    else if (!strcmp(name, "io_uring_register")) r = syscall(SYS_io_uring_register, -1, 0, NULL, 0);
    else if (!strcmp(name, "kexec_load")) r = syscall(SYS_kexec_load, 0, 0, NULL, 0xffffffffUL);
    else if (!strcmp(name, "kexec_file_load")) r = syscall(SYS_kexec_file_load, -1, -1, 0, NULL, 0xffffffffUL);
    else if (!strcmp(name, "init_module")) r = syscall(SYS_init_module, NULL, 0, NULL);
    else if (!strcmp(name, "finit_module")) r = syscall(SYS_finit_module, -1, NULL, 0);
    else if (!strcmp(name, "delete_module")) r = syscall(SYS_delete_module, NULL, 0);
    else if (!strcmp(name, "open_by_handle_at")) r = syscall(SYS_open_by_handle_at, -1, NULL, 0);
    else if (!strcmp(name, "iopl")) r = syscall(SYS_iopl, 4 /* invalid level */);
    else if (!strcmp(name, "ioperm")) r = syscall(SYS_ioperm, 0x10000 /* past the last port */, 1, 0);
    else if (!strcmp(name, "swapon")) r = syscall(SYS_swapon, NULL, 0);
    else if (!strcmp(name, "swapoff")) r = syscall(SYS_swapoff, NULL);
    else if (!strcmp(name, "reboot")) r = syscall(SYS_reboot, 0, 0, 0, NULL);  // wrong magic: EINVAL
    else if (!strcmp(name, "acct")) r = syscall(SYS_acct, (void *)1);
    else if (!strcmp(name, "settimeofday")) r = syscall(SYS_settimeofday, (void *)1, NULL);
    else if (!strcmp(name, "clock_settime")) r = syscall(SYS_clock_settime, 0, NULL);
    else if (!strcmp(name, "clock_adjtime")) r = syscall(SYS_clock_adjtime, 0, NULL);
    else if (!strcmp(name, "adjtimex")) r = syscall(SYS_adjtimex, NULL);
    else if (!strcmp(name, "quotactl")) r = syscall(SYS_quotactl, 0, NULL, 0, NULL);
#ifdef SYS_quotactl_fd
    else if (!strcmp(name, "quotactl_fd")) r = syscall(SYS_quotactl_fd, -1, 0, 0, NULL);
#endif
    else if (!strcmp(name, "lookup_dcookie")) r = syscall(SYS_lookup_dcookie, 0, NULL, 0);
    else if (!strcmp(name, "uselib")) r = syscall(SYS_uselib, NULL);
    else if (!strcmp(name, "nfsservctl")) r = syscall(SYS_nfsservctl, 0, NULL, NULL);
    else if (!strcmp(name, "personality")) r = syscall(SYS_personality, has_arg ? arg : 0xffffffffUL);
    else if (!strcmp(name, "umask")) r = syscall(SYS_umask, has_arg ? arg : 022);
    else if (!strcmp(name, "getppid")) r = syscall(SYS_getppid);
    else if (!strcmp(name, "unshare")) r = syscall(SYS_unshare, has_arg ? arg : 0);
    else { printf("%s=unknown\n", name); continue; }
    printf("%s=%d\n", name, r < 0 ? errno : 0);
    fflush(stdout);
  }
  return 0;
}

int main(int argc, char **argv) {
  const char *verb = argc > 1 ? argv[1] : "";
  if (!strcmp(verb, "ids")) {
    gid_t groups[64];
    int n = getgroups(64, groups);
    printf("uid=%d euid=%d gid=%d egid=%d ngroups=%d\n", getuid(), geteuid(), getgid(), getegid(), n);
    return 0;
  }
  if (!strcmp(verb, "exit") && argc > 2) return atoi(argv[2]);
  if (!strcmp(verb, "kill-self") && argc > 2) {
    kill(getpid(), atoi(argv[2]));
    pause();
    return 99;
  }
  if (!strcmp(verb, "trap")) {
    // Wait for a forwarded signal; "ready" tells the test we are listening.
    signal(SIGTERM, on_signal);
    signal(SIGINT, on_signal);
    signal(SIGHUP, on_signal);
    signal(SIGUSR1, on_signal);
    printf("ready\n");
    fflush(stdout);
    for (;;) pause();
  }
  if (!strcmp(verb, "write") && argc > 2) {
    int fd = open(argv[2], O_WRONLY | O_CREAT | O_TRUNC, 0644);
    int e = fd < 0 ? errno : 0;
    if (fd >= 0) close(fd);
    printf("write %s: %s\n", argv[2], errname(e));
    return 0;
  }
  if (!strcmp(verb, "remount-rw") && argc > 2) {
    // Directly, then from a nested user+mount namespace where we would hold
    // CAP_SYS_ADMIN: the read-only flag must be locked either way.
    int e1 = mount(NULL, argv[2], NULL, MS_REMOUNT | MS_BIND, NULL) < 0 ? errno : 0;
    int e2;
    uid_t uid = geteuid();
    gid_t gid = getegid();
    if (unshare(CLONE_NEWUSER | CLONE_NEWNS) < 0) {
      e2 = errno;
      printf("remount %s: direct=%s nested=unshare-%s\n", argv[2], errname(e1), errname(e2));
      return 0;
    }
    char map[64];
    snprintf(map, sizeof map, "0 %d 1", uid);
    write_str("/proc/self/uid_map", map);
    write_str("/proc/self/setgroups", "deny");
    snprintf(map, sizeof map, "0 %d 1", gid);
    write_str("/proc/self/gid_map", map);
    e2 = mount(NULL, argv[2], NULL, MS_REMOUNT | MS_BIND, NULL) < 0 ? errno : 0;
    printf("remount %s: direct=%s nested=%s\n", argv[2], errname(e1), errname(e2));
    return 0;
  }
  if (!strcmp(verb, "fds")) {
    // Open fds other than the directory stream itself.
    DIR *d = opendir("/proc/self/fd");
    if (!d) { perror("opendir"); return 1; }
    struct dirent *de;
    printf("fds:");
    while ((de = readdir(d))) {
      if (de->d_name[0] == '.') continue;
      if (atoi(de->d_name) == dirfd(d)) continue;
      printf(" %s", de->d_name);
    }
    printf("\n");
    closedir(d);
    return 0;
  }
  if (!strcmp(verb, "bigout") && argc > 2) {
    // N bytes of a known pattern on stdout, and a marker on stderr.
    long n = atol(argv[2]);
    char buf[65536];
    for (size_t i = 0; i < sizeof buf; i++) buf[i] = 'a' + i % 26;
    while (n > 0) {
      long k = n < (long)sizeof buf ? n : (long)sizeof buf;
      ssize_t w = write(1, buf, k);
      if (w < 0) return 1;
      n -= w;
    }
    fprintf(stderr, "done\n");
    return 0;
  }
  if (!strcmp(verb, "cat")) {
    // Echo stdin to stdout and count the bytes.
    char buf[65536];
    ssize_t r;
    long total = 0;
    while ((r = read(0, buf, sizeof buf)) > 0) {
      total += r;
      if (write(1, buf, r) < 0) return 1;
    }
    fprintf(stderr, "read %ld\n", total);
    return 0;
  }
  if (!strcmp(verb, "countsig") && argc > 3) {
    // Count deliveries of signal N for S seconds: each delivery runs the
    // handler at once, so two sent milliseconds apart count as two (a
    // shell's trap would fold them into one).
    int sig = atoi(argv[2]);
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = count_signal;
    sigaction(sig, &sa, NULL);
    printf("ready\n");
    fflush(stdout);
    struct timespec left = {atoi(argv[3]), 0};
    while (nanosleep(&left, &left) < 0 && errno == EINTR) {}
    printf("%s=%d\n", argv[2], (int)counted);
    return 0;
  }
  if (!strcmp(verb, "addkey") && argc > 3) {
    // Host side: put a "user" key DESC into our session keyring (made for
    // us first), then exec the rest of the command line with it.
    long ks = syscall(SYS_keyctl, 1 /* KEYCTL_JOIN_SESSION_KEYRING */, NULL);
    if (ks < 0) { perror("keyctl join"); return 3; }
    long k = syscall(SYS_add_key, "user", argv[2], "secret-token", 12, -3 /* KEY_SPEC_SESSION_KEYRING */);
    if (k < 0) { perror("add_key"); return 3; }
    execvp(argv[3], argv + 3);
    perror("execvp");
    return 3;
  }
  if (!strcmp(verb, "findkey") && argc > 2) {
    // Is there a "user" key DESC reachable from our session keyring?
    long k = syscall(SYS_keyctl, 10 /* KEYCTL_SEARCH */, -3 /* KEY_SPEC_SESSION_KEYRING */, "user", argv[2], 0);
    printf("findkey %s\n", k >= 0 ? "FOUND" : errno == ENOKEY ? "ENOKEY" : errname(errno));
    return 0;
  }
  if (!strcmp(verb, "rw") && argc > 2) {
    // Open a file (or device) for reading and writing; write back the first
    // 16 bytes it holds (the same bytes: nothing changes if it succeeds).
    int fd = open(argv[2], O_RDWR);
    if (fd < 0) { printf("open %s\n", errname(errno)); return 0; }
    char buf[16];
    ssize_t n = pread(fd, buf, sizeof buf, 0);
    if (n < 0) { printf("read %s\n", errname(errno)); return 0; }
    ssize_t w = pwrite(fd, buf, n, 0);
    printf("rw %s %.*s\n", w < 0 ? errname(errno) : "OK", (int)n, buf);
    return 0;
  }
  if (!strcmp(verb, "trysys")) return trysys(argc - 2, argv + 2);
  if (!strcmp(verb, "nest")) {
    // A nested container's first steps: a user and mount namespace of our
    // own (our id mapped to itself, or to root with "nest root"), then a
    // tmpfs mounted in it. Prints each step's result.
    uid_t uid = geteuid();
    gid_t gid = getegid();
    int as_root = argc > 2 && !strcmp(argv[2], "root");
    if (unshare(CLONE_NEWUSER | CLONE_NEWNS) < 0) { printf("nest: unshare=%s\n", errname(errno)); return 0; }
    char map[64];
    snprintf(map, sizeof map, "%d %d 1", as_root ? 0 : (int)uid, (int)uid);
    int e1 = write_str("/proc/self/uid_map", map);
    int e2 = write_str("/proc/self/setgroups", "deny");
    snprintf(map, sizeof map, "%d %d 1", as_root ? 0 : (int)gid, (int)gid);
    int e3 = write_str("/proc/self/gid_map", map);
    int e4 = mount("none", "/mnt", "tmpfs", 0, "size=1m") < 0 ? errno : 0;
    printf("nest: unshare=OK uid_map=%s setgroups=%s gid_map=%s mount=%s\n", errname(e1), errname(e2), errname(e3), errname(e4));
    return 0;
  }
  if (!strcmp(verb, "int80")) {
    // getpid through the i386 ABI (int 0x80 from 64-bit code): what a 32-bit
    // binary does. A filter for the native ABI only must stop it.
#if defined(__x86_64__)
    long r = 20;  // __NR_getpid on i386
    __asm__ volatile("int $0x80" : "+a"(r) : : "memory");
    printf("int80=%ld\n", r);
#else
    printf("int80=unsupported\n");
#endif
    return 0;
  }
  if (!strcmp(verb, "x32")) {
#if defined(__x86_64__)
    long r = syscall(0x40000000L | 39);  // getpid through the x32 ABI
    printf("x32=%ld errno=%d\n", r, r < 0 ? errno : 0);
#else
    printf("x32=unsupported\n");
#endif
    return 0;
  }
  if (!strcmp(verb, "subreaper") && argc > 2) {
    // Run on the HOST by the tests, as conmon or containerd's shim: become a
    // child subreaper (PR_SET_CHILD_SUBREAPER), run argv[2..] (a launcher
    // that creates a detached container and exits), then adopt what it left
    // behind. Prints "launcher-exited STATUS" and "reaped PID STATUS" for
    // every orphan it reaps, "done" when it has no child left.
    if (prctl(PR_SET_CHILD_SUBREAPER, 1) < 0) { printf("subreaper: prctl=%s\n", errname(errno)); return 1; }
    printf("subreaper %d\n", getpid());
    fflush(stdout);
    pid_t launcher = fork();
    if (launcher == 0) {
      execvp(argv[2], argv + 2);
      _exit(127);
    }
    int st;
    pid_t p;
    while ((p = wait(&st)) > 0) {
      if (p == launcher) printf("launcher-exited %d\n", st);
      else printf("reaped %d %d\n", p, st);
      fflush(stdout);
    }
    printf("done\n");
    return 0;
  }
  if (!strcmp(verb, "recvtty") && argc > 2) {
    // Run on the HOST by the tests, as runc's contrib/cmd/recvtty (and conmon,
    // containerd's shim): listen on the console socket argv[2], take one pty
    // master sent with SCM_RIGHTS, print "name NAME" (the data sent beside
    // it) and "master chr=1 tty=1", then relay what the container's terminal
    // shows to stdout until its last slave closes ("eof").
    int ls = socket(AF_UNIX, SOCK_STREAM, 0);
    struct sockaddr_un sa = {0};
    sa.sun_family = AF_UNIX;
    strncpy(sa.sun_path, argv[2], sizeof sa.sun_path - 1);
    if (ls < 0 || bind(ls, (struct sockaddr *)&sa, sizeof sa) < 0 || listen(ls, 1) < 0) { perror("recvtty"); return 1; }
    printf("listening\n");
    fflush(stdout);
    int c = accept(ls, NULL, NULL);
    char name[4096];
    union { struct cmsghdr h; char buf[CMSG_SPACE(sizeof(int))]; } u;
    struct iovec iov = {name, sizeof name - 1};
    struct msghdr msg = {0};
    msg.msg_iov = &iov;
    msg.msg_iovlen = 1;
    msg.msg_control = u.buf;
    msg.msg_controllen = sizeof u.buf;
    ssize_t n = c < 0 ? -1 : recvmsg(c, &msg, 0);
    struct cmsghdr *cm = n > 0 ? CMSG_FIRSTHDR(&msg) : NULL;
    if (!cm || cm->cmsg_type != SCM_RIGHTS) { printf("no fd (n=%zd)\n", n); return 1; }
    int master;
    memcpy(&master, CMSG_DATA(cm), sizeof master);
    name[n] = 0;
    struct stat st;
    fstat(master, &st);
    printf("name %s\nmaster chr=%d tty=%d\n", name, S_ISCHR(st.st_mode) ? 1 : 0, isatty(master));
    fflush(stdout);
    char buf[4096];
    while ((n = read(master, buf, sizeof buf)) > 0) fwrite(buf, 1, n, stdout);
    printf("\neof\n");
    return 0;
  }
  fprintf(stderr, "payload: unknown verb '%s'\n", verb);
  return 2;
}
