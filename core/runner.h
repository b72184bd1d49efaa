/* runner.h — the process runner of `tessera compare` and `tessera tune` (core/runner.c): runs a
 * list of `tessera run ... --if-changed` commands, a number at a time, each in a process group
 * of its own with its output in its log; forwards SIGINT, SIGTERM and SIGHUP to the runs (which
 * stop at a checkpoint) and pauses them with Ctrl-Z; prints a line per ended run and, when asked,
 * the elapsed time, an ETA and a live line on a terminal. Part of the program, not the library. */
#ifndef TESSERA_RUNNER_H
#define TESSERA_RUNNER_H

#include <sys/stat.h>
#include <sys/types.h>
#include "internal.h"

/* What became of one run. */
typedef enum ts_job_state {
    TS_JOB_WAITING = 0,
    TS_JOB_RUNNING,
    TS_JOB_REUSED,                 /* finished before with the same identity: left as it was */
    TS_JOB_RAN,                    /* finished now (trained or resumed) */
    TS_JOB_FAILED,
    TS_JOB_STOPPED,                /* a forwarded stop signal: it stopped at a checkpoint */
    TS_JOB_KILLED                  /* a forwarded stop signal killed it */
} ts_job_state;

typedef struct ts_job {
    /* the caller's */
    char dir[TS_PATH_MAX];         /* the run folder (the run makes it; the runner its parent) */
    char log[TS_PATH_MAX];         /* its output, appended (the runner makes its folder) */
    char **argv;                   /* the command, NULL-terminated; run as this very program */
    const char *label;             /* its name in the progress lines ("census_mmoe seed 2") */
    int group;                     /* >= 0; runs of one group are expected to take alike long */
    /* the runner's */
    pid_t pid;
    int had_metrics;               /* metrics.json existed when it started: `before` is its stat */
    struct stat before;
    ts_job_state state;
    int signalled;                 /* the signal forwarded to it; 0 = none */
    double t_start, wall;          /* when it started; its wall time once it ended (seconds) */
} ts_job;

typedef struct ts_runner {
    const char *who;               /* "tessera compare": the start of its messages */
    int parallel;                  /* runs at a time (>= 1) */
    int eta;                       /* progress lines with elapsed time and ETA, and a live line
                                    * on a terminal, rewritten every second */
    /* Optional: prints more of a finished run's progress line (tune: its validation figure). */
    void (*note)(const ts_job *j, void *arg);
    void *arg;
} ts_runner;

typedef struct ts_run_counts {
    int started, ran, reused, failed, stopped, killed;
} ts_run_counts;

/* Runs jobs[0..n) as described above. Returns the number that failed, or -1 (with a sentence
 * printed) when nothing could be started; *stopped is the stop signal when SIGINT, SIGTERM or
 * SIGHUP interrupted the batch (its runs then stopped too; jobs[started..n) never started);
 * counts (may be NULL) says what became of the runs. */
int ts_runner_run(const ts_runner *r, ts_job *jobs, int n, ts_run_counts *counts, int *stopped);

/* "SIGINT", "SIGTERM", "SIGHUP", else "a signal". */
const char *ts_runner_signal_name(int sig);

#endif
