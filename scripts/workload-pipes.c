// A kmalloc-heavy workload with a known per-operation cost: create a pipe and close it, as fast as possible.
// Each pipe allocates (and frees) a pipe_inode_info and a 16-slot pipe_buffer array (kmalloc-cg-1k), two files,
// an inode and a dentry. Prints "ops=N secs=S ops_per_sec=R" at the end.
//   cc -O2 -o workload-pipes scripts/workload-pipes.c && ./workload-pipes SECONDS
#define _GNU_SOURCE
#include <stdio.h>
#include <stdlib.h>
#include <time.h>
#include <unistd.h>

static double now(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return ts.tv_sec + ts.tv_nsec / 1e9;
}

int main(int argc, char **argv) {
  double secs = argc > 1 ? atof(argv[1]) : 1.0;
  double start = now(), end = start + secs, t = start;
  long ops = 0;
  int fds[2];
  while (t < end) {
    for (int i = 0; i < 256; i++) {
      if (pipe(fds) != 0) {
        perror("pipe");
        return 1;
      }
      close(fds[0]);
      close(fds[1]);
    }
    ops += 256;
    t = now();
  }
  printf("ops=%ld secs=%.3f ops_per_sec=%.0f\n", ops, t - start, ops / (t - start));
  return 0;
}
