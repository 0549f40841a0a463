// hide-cgroup2: run a command in a private mount namespace where the cgroup2
// mount of a cgroup v1 "hybrid" host is covered by an empty tmpfs.
//
//   hide-cgroup2 CMD [ARG...]
//
// crun 1.8 refuses to start on a hybrid host whose cgroup2 hierarchy holds a
// controller ("cgroups in hybrid mode not supported"), even with
// --cgroup-manager=disabled. The benchmark launches crun through this shim so
// it can be measured at all; the shim costs one extra exec, much less than
// `unshare -m sh -c 'umount ...; exec crun'` would. Covering rather than
// unmounting because, for an unprivileged caller, mounts inherited into a new
// user namespace are locked and cannot be unmounted, but can be covered.
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <sched.h>
#include <stdio.h>
#include <string.h>
#include <sys/mount.h>
#include <unistd.h>

#define CGROUP2_DIR "/sys/fs/cgroup/unified"

static int write_file(const char *path, const char *text) {
  int fd = open(path, O_WRONLY | O_CLOEXEC);
  if (fd < 0) return -1;
  ssize_t n = write(fd, text, strlen(text));
  int saved = errno;
  close(fd);
  errno = saved;
  return n < 0 ? -1 : 0;
}

static int fail(const char *what, const char *path) {
  fprintf(stderr, "hide-cgroup2: %s %s: %s\n", what, path, strerror(errno));
  return 125;
}

int main(int argc, char **argv) {
  if (argc < 2) {
    fprintf(stderr, "usage: hide-cgroup2 CMD [ARG...]\n");
    return 2;
  }
  uid_t uid = geteuid();
  gid_t gid = getegid();
  if (uid == 0) {
    if (unshare(CLONE_NEWNS) < 0) return fail("unshare", "CLONE_NEWNS");
  } else {
    // Without privilege a mount namespace needs a user namespace; map the
    // caller to root in it so the runtime started next sees euid 0 and
    // creates its other namespaces itself.
    if (unshare(CLONE_NEWUSER | CLONE_NEWNS) < 0) return fail("unshare", "CLONE_NEWUSER|CLONE_NEWNS");
    char map[64];
    snprintf(map, sizeof map, "0 %u 1\n", uid);
    if (write_file("/proc/self/uid_map", map) < 0) return fail("write", "/proc/self/uid_map");
    if (write_file("/proc/self/setgroups", "deny") < 0) return fail("write", "/proc/self/setgroups");
    snprintf(map, sizeof map, "0 %u 1\n", gid);
    if (write_file("/proc/self/gid_map", map) < 0) return fail("write", "/proc/self/gid_map");
  }
  // Private first, or the tmpfs would propagate back to the host's /sys.
  if (mount(NULL, "/", NULL, MS_REC | MS_PRIVATE, NULL) < 0) return fail("make rprivate", "/");
  if (mount("tmpfs", CGROUP2_DIR, "tmpfs", MS_NOSUID | MS_NODEV | MS_NOEXEC, "size=4k") < 0)
    return fail("mount tmpfs on", CGROUP2_DIR);
  execvp(argv[1], &argv[1]);
  return fail("exec", argv[1]);
}
