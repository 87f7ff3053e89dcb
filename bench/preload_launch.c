/* preload_launch.c: runs one command for bench_preload.py and reports what it cost.
 *
 *   preload_launch RESULT_FILE CMD ARGS...
 *
 * Forks and execs CMD with LD_PRELOAD set to $BENCH_LD_PRELOAD (if set and not empty), waits
 * for it with wait4 and writes "wall_seconds cpu_seconds maxrss_kib exit_code" to
 * RESULT_FILE (exit_code is negative for a signal). This small program is the parent, not the
 * Python driver, because a child's ru_maxrss also counts the memory it had before exec: the
 * forked copy of a 20 MiB Python process would hide every smaller program's peak.
 */
#define _GNU_SOURCE
#include <stdio.h>
#include <stdlib.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

int main(int argc, char **argv)
{
    if (argc < 3) {
        fprintf(stderr, "usage: %s RESULT_FILE CMD ARGS...\n", argv[0]);
        return 2;
    }
    FILE *out = fopen(argv[1], "w");
    if (!out) {
        perror(argv[1]);
        return 2;
    }
    const char *pre = getenv("BENCH_LD_PRELOAD");
    if (pre && *pre) setenv("LD_PRELOAD", pre, 1);
    unsetenv("BENCH_LD_PRELOAD");
    struct timespec t0, t1;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    pid_t pid = fork();
    if (pid < 0) {
        perror("fork");
        return 2;
    }
    if (pid == 0) {
        execvp(argv[2], argv + 2);
        perror(argv[2]);
        _exit(127);
    }
    int status;
    struct rusage ru;
    if (wait4(pid, &status, 0, &ru) < 0) {
        perror("wait4");
        return 2;
    }
    clock_gettime(CLOCK_MONOTONIC, &t1);
    double wall = (double)(t1.tv_sec - t0.tv_sec) + (double)(t1.tv_nsec - t0.tv_nsec) * 1e-9;
    double cpu = (double)ru.ru_utime.tv_sec + (double)ru.ru_utime.tv_usec * 1e-6 +
                 (double)ru.ru_stime.tv_sec + (double)ru.ru_stime.tv_usec * 1e-6;
    int code = WIFEXITED(status) ? WEXITSTATUS(status) : WIFSIGNALED(status) ? -WTERMSIG(status) : -1000;
    fprintf(out, "%.6f %.6f %ld %d\n", wall, cpu, ru.ru_maxrss, code);
    return fclose(out) ? 2 : 0;
}
