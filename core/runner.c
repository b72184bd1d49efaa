/* runner.c — the process runner that `tessera compare` and `tessera tune` share (runner.h).
 * Each run is a child in a process group of its own (so a terminal's Ctrl-C reaches it once,
 * through the parent) that gets SIGTERM when the parent dies (Linux PDEATHSIG); the parent
 * forwards SIGINT, SIGTERM and SIGHUP to the runs, which stop at a checkpoint, and SIGTSTP
 * (Ctrl-Z) stops and continues them with itself. A signal ignored when the parent started
 * (nohup) stays ignored. */
#include "config.h"
#include "runner.h"

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/time.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>
#ifdef __linux__
#include <sys/prctl.h>
#endif

#define NCAUGHT 4
static const int caught[NCAUGHT] = {SIGINT, SIGTERM, SIGHUP, SIGTSTP};
static volatile sig_atomic_t stop_sig;     /* the latest stop signal received; 0 = none */
static volatile sig_atomic_t stop_count;   /* how many were received */
static volatile sig_atomic_t pause_req;    /* SIGTSTP received, not yet acted on */

static void on_signal(int sig)
{
    if (sig == SIGTSTP) {
        pause_req = 1;
        return;
    }
    stop_sig = sig;
    stop_count++;
}

static void on_child(int sig) { (void)sig; }   /* only wakes sigsuspend */
static void on_alarm(int sig) { (void)sig; }   /* only wakes sigsuspend: the live line's clock */

const char *ts_runner_signal_name(int sig)
{
    return sig == SIGINT ? "SIGINT" : sig == SIGTERM ? "SIGTERM" : sig == SIGHUP ? "SIGHUP" : "a signal";
}

/* metrics.json of a run folder: st filled and 1 when it exists. */
static int stat_metrics(const char *dir, struct stat *st)
{
    char p[TS_PATH_MAX + 16];
    snprintf(p, sizeof p, "%s/metrics.json", dir);
    return stat(p, st) == 0;
}

static int same_file_state(const struct stat *a, const struct stat *b)
{
    return a->st_dev == b->st_dev && a->st_ino == b->st_ino && a->st_size == b->st_size &&
           a->st_mtim.tv_sec == b->st_mtim.tv_sec && a->st_mtim.tv_nsec == b->st_mtim.tv_nsec;
}

static double now_s(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

/* Starts one job with its output in its log. child_mask is the signal mask to restore in the
 * child; handled[i] says whether the parent caught caught[i]. 0, or -1 with a message printed. */
static int start_job(const ts_runner *r, ts_job *j, const char *self, const sigset_t *child_mask,
                     const int *handled, int devnull)
{
    ts_err e;
    char parent[TS_PATH_MAX];
    snprintf(parent, sizeof parent, "%s", j->log);
    *strrchr(parent, '/') = 0;
    int fd = -1;
    if (ts_mkdirs(parent, &e)) fprintf(stderr, "%s: %s\n", r->who, e.msg);
    else if ((fd = open(j->log, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644)) < 0)
        fprintf(stderr, "%s: cannot write the run's log %s: %s\n", r->who, j->log, strerror(errno));
    snprintf(parent, sizeof parent, "%s", j->dir);
    *strrchr(parent, '/') = 0;   /* the run makes its own folder */
    if (fd >= 0 && ts_mkdirs(parent, &e)) {
        fprintf(stderr, "%s: %s\n", r->who, e.msg);
        close(fd);
        fd = -1;
    }
    if (fd < 0) return -1;
    j->had_metrics = stat_metrics(j->dir, &j->before);
    pid_t me = getpid();
    pid_t pid = fork();
    if (pid == 0) {
        /* only async-signal-safe calls from here to execv */
        setpgid(0, 0);
#ifdef __linux__
        prctl(PR_SET_PDEATHSIG, SIGTERM);
        if (getppid() != me) _exit(128 + SIGTERM);   /* the parent died before prctl */
#endif
        struct sigaction dfl;
        memset(&dfl, 0, sizeof dfl);
        dfl.sa_handler = SIG_DFL;
        sigemptyset(&dfl.sa_mask);
        for (int i = 0; i < NCAUGHT; i++)
            if (handled[i]) sigaction(caught[i], &dfl, NULL);
        sigaction(SIGCHLD, &dfl, NULL);
        sigprocmask(SIG_SETMASK, child_mask, NULL);
        dup2(devnull, 0);
        dup2(fd, 1);
        dup2(fd, 2);
        execv(self, j->argv);
        static const char msg[] = "tessera: cannot execute tessera for this run\n";
        ssize_t w = write(2, msg, sizeof msg - 1);
        (void)w;
        _exit(127);
    }
    int err = errno;
    close(fd);
    if (pid < 0) {
        fprintf(stderr, "%s: cannot start a run (fork: %s)\n", r->who, strerror(err));
        return -1;
    }
    setpgid(pid, pid);   /* as the child does: whichever comes first */
    j->pid = pid;
    return 0;
}

/* The last non-empty line of a run's log: its own error. */
static void print_last_line(const char *log)
{
    char line[2048] = "", last[2048] = "";
    FILE *f = ts_fopen_regular(log);
    while (f && fgets(line, sizeof line, f)) if (line[0] != '\n') snprintf(last, sizeof last, "%s", line);
    if (f) fclose(f);
    last[strcspn(last, "\n")] = 0;
    fprintf(stderr, "      %s\n      (log: %s)\n", last, log);
}

/* What became of a job whose process ended with status; the progress line's word for it. */
static const char *reap(ts_job *j, int status)
{
    struct stat after;
    int has = stat_metrics(j->dir, &after);
    if (WIFEXITED(status) && WEXITSTATUS(status) == 0 && has) {
        int same = j->had_metrics && same_file_state(&j->before, &after);
        j->state = same ? TS_JOB_REUSED : TS_JOB_RAN;
        return same ? "reused (finished before with the same configuration)" : "run";
    }
    if (j->signalled && WIFEXITED(status) && WEXITSTATUS(status) == 128 + j->signalled) {
        j->state = TS_JOB_STOPPED;
        return "stopped at a checkpoint";
    }
    if (j->signalled && WIFSIGNALED(status)) {
        j->state = TS_JOB_KILLED;
        return "stopped by the signal";
    }
    j->state = TS_JOB_FAILED;
    return WIFEXITED(status) && WEXITSTATUS(status) == 0 ? "FAILED (it wrote no metrics.json)"
                                                         : "FAILED";
}

/* ---- progress -------------------------------------------------------------------------------
 * A line per ended run, with (eta) the elapsed time and an ETA; on a terminal also one live line
 * under them, rewritten every second (docs/ini.md, "Progress"). */
typedef struct progress {
    int tty;                       /* the live line is shown */
    int live;                      /* the width of the live line shown; 0 = none */
    double t0;                     /* when the first run started */
    double *sum;                   /* (ngroup) wall seconds of each group's ended runs */
    int *cnt;                      /* (ngroup) how many */
    int ngroup;
} progress;

/* "m:ss", or "h:mm:ss" from an hour on; "?" for a negative (unknown) time. */
static const char *duration(char *buf, size_t n, double secs)
{
    long s = secs < 1e9 ? (long)(secs + 0.5) : 0;
    if (secs < 0) snprintf(buf, n, "?");
    else if (s >= 3600) snprintf(buf, n, "%ld:%02ld:%02ld", s / 3600, s / 60 % 60, s % 60);
    else snprintf(buf, n, "%ld:%02ld", s / 60, s % 60);
    return buf;
}

/* Seconds until every run has ended, estimated from the wall times of the runs that ended:
 * a run is expected to take the mean of its group's finished runs, or, before one of them has
 * finished, the mean of every run that trained (reused runs take no time, failed ones are left
 * out). The running runs take what they have left, the waiting ones (jobs[next..nj)) go, in
 * order, to the first of the slots to come free. -1 when no run has trained yet. */
static double estimate_eta(progress *pg, const ts_job *jobs, int nj, int next, int slots, double tn)
{
    double all = 0;
    int nall = 0;
    memset(pg->sum, 0, (size_t)pg->ngroup * sizeof *pg->sum);
    memset(pg->cnt, 0, (size_t)pg->ngroup * sizeof *pg->cnt);
    for (int i = 0; i < next; i++) {
        const ts_job *j = &jobs[i];
        if (j->state != TS_JOB_RAN && j->state != TS_JOB_REUSED) continue;
        pg->sum[j->group] += j->wall;
        pg->cnt[j->group]++;
        if (j->state == TS_JOB_RAN) { all += j->wall; nall++; }
    }
    double left[256] = {0}, total = 0, longest = 0;
    int n = slots < 256 ? slots : 256, k = 0;
    for (int i = 0; i < nj; i++) {
        const ts_job *j = &jobs[i];
        if (i < next && j->state != TS_JOB_RUNNING) continue;
        double est = pg->cnt[j->group] ? pg->sum[j->group] / pg->cnt[j->group] : nall ? all / nall : -1;
        if (est < 0) return -1;
        if (i < next) {                        /* running: what it has left */
            est -= tn - j->t_start;
            if (est < 0) est = 0;
            if (k < n) left[k++] = est;
        } else {                               /* waiting: after the first slot to come free */
            int m = 0;
            for (int s = 1; s < n; s++) if (left[s] < left[m]) m = s;
            left[m] += est;
        }
        total += est;
        if (est > longest) longest = est;
    }
    double eta = 0;
    for (int s = 0; s < n; s++) if (left[s] > eta) eta = left[s];
    /* more than 256 slots: the work spread evenly over them (no run ends before its start) */
    if (slots > n) eta = total / slots > longest ? total / slots : longest;
    return eta;
}

/* Removes the live line, so that the next line printed starts a line of its own. */
static void live_clear(progress *p)
{
    if (p->live) fprintf(stderr, "\r%*s\r", p->live, "");
    p->live = 0;
}

static void live_show(progress *p, const char *who, int done, int nj, int running, int failed,
                      double elapsed, double eta)
{
    char el[32], et[32], fl[32] = "";
    if (failed) snprintf(fl, sizeof fl, " (%d failed)", failed);
    int w = fprintf(stderr, "\r%s: %d of %d done%s, %d running, elapsed %s, ETA %s", who,
                    done, nj, fl, running, duration(el, sizeof el, elapsed),
                    duration(et, sizeof et, eta));
    if (w > 0 && w < p->live) fprintf(stderr, "%*s", p->live - w, "");   /* the old line's end */
    fflush(stderr);
    if (w > p->live) p->live = w;
}

int ts_runner_run(const ts_runner *r, ts_job *jobs, int nj, ts_run_counts *counts, int *stopped)
{
    ts_run_counts cnt = {0};
    *stopped = 0;
    if (counts) *counts = cnt;
    static char self[TS_PATH_MAX];
    ssize_t k = readlink("/proc/self/exe", self, sizeof self - 1);
    if (k <= 0) {
        fprintf(stderr, "%s: cannot find the tessera program (/proc/self/exe: %s)\n", r->who,
                strerror(errno));
        return -1;
    }
    self[k] = 0;
    /* a program rebuilt under a long search: the path names the new file or nothing (Linux
     * appends " (deleted)"); the runs are then started from the very program that runs here */
    if (access(self, X_OK)) snprintf(self, sizeof self, "/proc/self/exe");
    progress pg = {r->eta && isatty(STDERR_FILENO), 0, now_s(), NULL, NULL, 0};
    for (int i = 0; i < nj; i++)
        if (jobs[i].group + 1 > pg.ngroup) pg.ngroup = jobs[i].group + 1;
    pg.sum = calloc((size_t)pg.ngroup + 1, sizeof *pg.sum);
    pg.cnt = calloc((size_t)pg.ngroup + 1, sizeof *pg.cnt);
    int devnull = open("/dev/null", O_RDONLY | O_CLOEXEC);
    if (!pg.sum || !pg.cnt || devnull < 0) {
        if (devnull < 0) fprintf(stderr, "%s: cannot open /dev/null: %s\n", r->who, strerror(errno));
        else fprintf(stderr, "%s: out of memory\n", r->who);
        if (devnull >= 0) close(devnull);
        free(pg.sum);
        free(pg.cnt);
        return -1;
    }
    int slots = r->parallel < 1 ? 1 : r->parallel;

    /* The caught signals and SIGCHLD are blocked except inside sigsuspend, so none is missed
     * between a check and the wait. */
    sigset_t block, orig, wait_mask;
    sigemptyset(&block);
    for (int i = 0; i < NCAUGHT; i++) sigaddset(&block, caught[i]);
    sigaddset(&block, SIGCHLD);
    if (pg.tty) sigaddset(&block, SIGALRM);
    sigprocmask(SIG_BLOCK, &block, &orig);
    wait_mask = orig;
    for (int i = 0; i < NCAUGHT; i++) sigdelset(&wait_mask, caught[i]);
    sigdelset(&wait_mask, SIGCHLD);
    struct sigaction sa, old[NCAUGHT], old_chld, old_alrm;
    memset(&sa, 0, sizeof sa);
    sigemptyset(&sa.sa_mask);
    int handled[NCAUGHT] = {0};
    stop_sig = 0;
    stop_count = 0;
    pause_req = 0;
    for (int i = 0; i < NCAUGHT; i++) {
        sigaction(caught[i], NULL, &old[i]);
        if (old[i].sa_handler == SIG_IGN) continue;   /* nohup: stays ignored */
        sa.sa_handler = on_signal;
        sigaction(caught[i], &sa, NULL);
        handled[i] = 1;
    }
    sa.sa_handler = on_child;
    sa.sa_flags = SA_NOCLDSTOP;
    sigaction(SIGCHLD, &sa, &old_chld);
    /* on a terminal a timer wakes the loop every second to move the live line's clock on (a
     * timer is not inherited by fork, and exec resets the handler) */
    struct itimerval tick = {{1, 0}, {1, 0}}, no_tick = {{0, 0}, {0, 0}};
    if (pg.tty) {
        sa.sa_handler = on_alarm;
        sa.sa_flags = 0;
        sigaction(SIGALRM, &sa, &old_alrm);
        sigdelset(&wait_mask, SIGALRM);
        setitimer(ITIMER_REAL, &tick, NULL);
    }

    int next = 0, running = 0, done = 0, forwarded = 0;
    for (;;) {
        if (pause_req) {   /* Ctrl-Z: the runs stop with the parent and go on with it */
            pause_req = 0;
            for (int i = 0; i < next; i++)
                if (jobs[i].state == TS_JOB_RUNNING) kill(jobs[i].pid, SIGSTOP);
            raise(SIGSTOP);
            for (int i = 0; i < next; i++)
                if (jobs[i].state == TS_JOB_RUNNING) kill(jobs[i].pid, SIGCONT);
        }
        if (stop_count != forwarded) {   /* pass each stop signal on to every running run */
            forwarded = stop_count;
            for (int i = 0; i < next; i++)
                if (jobs[i].state == TS_JOB_RUNNING) {
                    kill(jobs[i].pid, stop_sig);
                    jobs[i].signalled = stop_sig;
                }
        }
        if (!stop_sig && running < slots && next < nj) live_clear(&pg);   /* its messages */
        while (!stop_sig && running < slots && next < nj) {
            ts_job *j = &jobs[next++];
            j->t_start = now_s();
            if (start_job(r, j, self, &orig, handled, devnull)) {
                j->state = TS_JOB_FAILED;
                cnt.failed++;
                done++;
                continue;
            }
            j->state = TS_JOB_RUNNING;
            running++;
        }
        int status, reaped = 0;
        pid_t pid;
        while (running && (pid = waitpid(-1, &status, WNOHANG)) > 0) {
            ts_job *j = NULL;
            for (int i = 0; i < next && !j; i++)
                if (jobs[i].state == TS_JOB_RUNNING && jobs[i].pid == pid) j = &jobs[i];
            if (!j) continue;   /* not a run of ours */
            reaped++;
            running--;
            done++;
            j->wall = now_s() - j->t_start;
            const char *what = reap(j, status);
            cnt.ran += j->state == TS_JOB_RAN;
            cnt.reused += j->state == TS_JOB_REUSED;
            cnt.failed += j->state == TS_JOB_FAILED;
            cnt.stopped += j->state == TS_JOB_STOPPED;
            cnt.killed += j->state == TS_JOB_KILLED;
            live_clear(&pg);
            if (r->eta) {
                double tn = now_s(), eta = estimate_eta(&pg, jobs, stop_sig ? next : nj, next, slots, tn);
                char el[32], et[32];
                fprintf(stderr, "  [%d/%d, elapsed %s, ETA %s] %s: %s", done, nj,
                        duration(el, sizeof el, tn - pg.t0), duration(et, sizeof et, eta),
                        j->label, what);
            } else {
                fprintf(stderr, "  [%d/%d] %s: %s", done, nj, j->label, what);
            }
            if (r->note && (j->state == TS_JOB_RAN || j->state == TS_JOB_REUSED)) r->note(j, r->arg);
            fprintf(stderr, "\n");
            if (j->state == TS_JOB_FAILED) print_last_line(j->log);
        }
        if (!running && (stop_sig || next == nj)) break;
        if (pg.tty && !reaped) {   /* about to wait: the runs that could start have started */
            double tn = now_s();
            live_show(&pg, r->who, done, nj, running, cnt.failed, tn - pg.t0,
                      estimate_eta(&pg, jobs, stop_sig ? next : nj, next, slots, tn));
        }
        if (!reaped) sigsuspend(&wait_mask);
    }
    live_clear(&pg);
    if (pg.tty) {
        setitimer(ITIMER_REAL, &no_tick, NULL);
        sigaction(SIGALRM, &old_alrm, NULL);
    }
    for (int i = 0; i < NCAUGHT; i++)
        if (handled[i]) sigaction(caught[i], &old[i], NULL);
    sigaction(SIGCHLD, &old_chld, NULL);
    sigprocmask(SIG_SETMASK, &orig, NULL);
    close(devnull);
    free(pg.sum);
    free(pg.cnt);
    cnt.started = next;
    if (stop_sig) *stopped = stop_sig;
    if (counts) *counts = cnt;
    return cnt.failed;
}
