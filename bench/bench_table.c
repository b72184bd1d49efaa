/* bench_table.c — load speed and memory of the `table` dataset reader (docs/data.md): writes a
 * table of N rows by repeating the bundled census file (plain text, or gzip with --gz), then
 * opens it through an experiment's [data] section (the census MMoE through the table reader:
 * 7 dense, 32 categorical columns, 2 labels, a weight, a random split) and reports rows per
 * second of open() (read, split, fit, apply) on one thread, and the peak resident memory it
 * added per row, and which inflater read a gzip file (ISA-L's igzip when ./configure found
 * libisal-dev, else zlib). A benchmark, not a test: nothing here is asserted.
 *
 *   bench/bench_table EXPERIMENT.ini CENSUS.gz ROWS [--gz] [--keep FILE]
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>
#include <unistd.h>
#include <zlib.h>

#include "config.h"      /* TS_HAVE_ISAL: which inflater core/lines.c was built with */
#include "host.h"

#ifdef TS_HAVE_ISAL
#define INFLATER "ISA-L igzip"
#else
#define INFLATER "zlib"
#endif

static double now(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

static double cpu(void)
{
    struct rusage u;
    getrusage(RUSAGE_SELF, &u);
    return (double)u.ru_utime.tv_sec + 1e-6 * (double)u.ru_utime.tv_usec +
           (double)u.ru_stime.tv_sec + 1e-6 * (double)u.ru_stime.tv_usec;
}

/* Resident memory now, from /proc/self/statm (bytes). */
static long rss_now(void)
{
    long pages = 0, res = 0;
    FILE *f = fopen("/proc/self/statm", "r");
    if (f) {
        if (fscanf(f, "%ld %ld", &pages, &res) != 2) res = 0;
        fclose(f);
    }
    return res * sysconf(_SC_PAGESIZE);
}

static long rss_peak(void)
{
    struct rusage u;
    getrusage(RUSAGE_SELF, &u);
    return u.ru_maxrss * 1024L;
}

/* Writes rows lines of src, repeated, to dst (gzip level 1 when gz). */
static int make_table(const char *src, const char *dst, long rows, int gz, long *bytes)
{
    ts_err e;
    char *line;
    size_t len;
    long n = 0;
    gzFile out = gzopen(dst, gz ? "wb1" : "wbT");
    if (!out) { fprintf(stderr, "bench_table: cannot write %s\n", dst); return -1; }
    *bytes = 0;
    while (n < rows) {
        ts_lines *in = ts_lines_open(src, &e);
        if (!in) { fprintf(stderr, "bench_table: %s\n", e.msg); gzclose(out); return -1; }
        while (n < rows && (line = ts_lines_next(in, &len))) {
            gzwrite(out, line, (unsigned)len);
            gzputc(out, '\n');
            *bytes += (long)len + 1;
            n++;
        }
        ts_lines_close(in);
    }
    return gzclose(out) == Z_OK ? 0 : -1;
}

int main(int argc, char **argv)
{
    if (argc < 4) {
        fprintf(stderr, "usage: bench_table EXPERIMENT.ini CENSUS.gz ROWS [--gz] [--keep FILE]\n");
        return 2;
    }
    long rows = atol(argv[3]), bytes = 0;
    int gz = 0;
    const char *keep = NULL;
    for (int i = 4; i < argc; i++) {
        if (!strcmp(argv[i], "--gz")) gz = 1;
        else if (!strcmp(argv[i], "--keep") && i + 1 < argc) keep = argv[++i];
    }
    char path[4096];
    if (keep) snprintf(path, sizeof path, "%s", keep);
    else snprintf(path, sizeof path, "/tmp/tessera-bench-table-%ld%s", (long)getpid(), gz ? ".gz" : ".txt");
    if (!keep || access(path, R_OK) != 0) {
        double t0 = now();
        if (make_table(argv[2], path, rows, gz, &bytes) < 0) return 1;
        printf("wrote %s: %ld rows, %.1f MB of text, in %.1f s\n", path, rows, bytes / 1e6, now() - t0);
    }
    char over[4200], *ov[2] = {over, "train.batch=1024"};
    snprintf(over, sizeof over, "data.path=%s", path);
    ts_run_opts o = {.results_dir = "/tmp/tessera-bench-table-run", .noverride = 2, .overrides = ov};
    ts_err e;
    ts_exp *x = ts_exp_load(argv[1], &o, &e);
    if (!x) { fprintf(stderr, "bench_table: %s\n", e.msg); return 1; }
    long rss0 = rss_now();
    double t0 = now(), c0 = cpu();
    int rc = ts_exp_open_data(x, &e);
    double wall = now() - t0, used = cpu() - c0;
    long peak = rss_peak();
    if (rc) { fprintf(stderr, "bench_table: %s\n", e.msg); ts_exp_free(x); return 1; }
    ts_data *D = ts_exp_data(x);
    long n = D->nrows[0] + D->nrows[1] + D->nrows[2];
    printf("table reader, %s file: %ld rows opened in %.2f s wall, %.2f s CPU (one thread): "
           "%.0f rows/s (wall), %.0f rows/s (CPU)\n", gz ? "gzip (" INFLATER ")" : "plain", n,
           wall, used, n / wall, n / used);
    printf("peak resident memory added by open(): %.1f MB, %.0f bytes per row\n",
           (peak - rss0) / 1e6, (double)(peak - rss0) / (double)n);
    ts_exp_free(x);
    if (!keep) unlink(path);
    return 0;
}
