// Whole-process cost of a command, /usr/bin/time -v style: run it N times
// (fork, execvp, wait4) and print, per run, the wall time and the CPU time
// (user + system, the command and every descendant it waited for) as JSON:
//   {"wall_ns":[...],"cpu_ns":[...],"maxrss_kib":[...],"status":S}
// S is the first non-zero wait status (0 when every run exited 0). stdin is
// /dev/null; stdout and stderr are kept (the caller redirects them).
//
//   rusage N CMD [ARG...]     ({{n}} in an argument: the run's number)
#define _GNU_SOURCE
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static uint64_t now_ns(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static uint64_t tv_ns(struct timeval tv) { return (uint64_t)tv.tv_sec * 1000000000u + (uint64_t)tv.tv_usec * 1000u; }

int main(int argc, char **argv) {
  if (argc < 3) {
    fprintf(stderr, "usage: rusage N CMD [ARG...]\n");
    return 2;
  }
  long n = strtol(argv[1], NULL, 10);
  if (n < 1) n = 1;
  uint64_t *wall = calloc((size_t)n, sizeof *wall), *cpu = calloc((size_t)n, sizeof *cpu);
  long *rss = calloc((size_t)n, sizeof *rss);
  char **args = calloc((size_t)argc, sizeof *args);
  if (!wall || !cpu || !rss || !args) return 2;
  int first_bad = 0;
  for (long k = 0; k < n; k++) {
    char num[32];
    snprintf(num, sizeof num, "%ld", k);
    static char buf[64][4096];
    for (int i = 2; i < argc; i++) {
      char *at = strstr(argv[i], "{{n}}");
      if (!at || i - 2 >= 64) {
        args[i - 2] = argv[i];
        continue;
      }
      snprintf(buf[i - 2], sizeof buf[i - 2], "%.*s%s%s", (int)(at - argv[i]), argv[i], num, at + 5);
      args[i - 2] = buf[i - 2];
    }
    args[argc - 2] = NULL;
    uint64_t t0 = now_ns();
    pid_t pid = fork();
    if (pid < 0) {
      perror("rusage: fork");
      return 2;
    }
    if (pid == 0) {
      int null = open("/dev/null", O_RDONLY);
      if (null >= 0) dup2(null, 0);
      execvp(args[0], args);
      perror(args[0]);
      _exit(127);
    }
    int st;
    struct rusage ru;
    while (wait4(pid, &st, 0, &ru) < 0) {
      perror("rusage: wait4");
      return 2;
    }
    wall[k] = now_ns() - t0;
    cpu[k] = tv_ns(ru.ru_utime) + tv_ns(ru.ru_stime);
    rss[k] = ru.ru_maxrss;
    if (st && !first_bad) first_bad = st;
  }
  printf("{\"status\":%d,\"wall_ns\":[", first_bad);
  for (long k = 0; k < n; k++) printf("%s%llu", k ? "," : "", (unsigned long long)wall[k]);
  printf("],\"cpu_ns\":[");
  for (long k = 0; k < n; k++) printf("%s%llu", k ? "," : "", (unsigned long long)cpu[k]);
  printf("],\"maxrss_kib\":[");
  for (long k = 0; k < n; k++) printf("%s%ld", k ? "," : "", rss[k]);
  printf("]}\n");
  return 0;
}
