/* compare.c — `tessera compare` and `tessera plot`: run experiments over seeds (and an
 * optional sweep of one key) in parallel processes, each started as `tessera run --if-changed`
 * so a finished run of the same configuration is reused and any other one is run or resumed;
 * aggregate mean ± std over seeds with a paired t-test between experiments on the same data, and
 * write a report folder (report.md, summary.csv, significance.csv, gnuplot PNGs).
 * It is part of the program, not the library: it prints, forks, forwards signals to its runs and
 * runs gnuplot. It never trains anything itself. */
#include "config.h"
#include "internal.h"
#include "gates.h"

#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdint.h>
#include <math.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>
#ifdef __linux__
#include <sys/prctl.h>
#endif

/* Limits that are refused with a sentence when passed (never cut): the report's tables and plots
 * are sized by them. */
#define MAX_EXP 64
#define MAX_KEYS 256
#define MAX_SEEDS 32
#define MAX_SWEEP 16
#define MAX_SUITE_DEPTH 32         /* suites including suites */
#define MAX_FOLDER_NAME 255        /* NAME_MAX of Linux file systems: one path component */

typedef struct cmp_exp {
    char path[TS_PATH_MAX];
    char name[TS_NAME_MAX];
    int name_line;                 /* the line of `name =` in path */
    dev_t dev;                     /* the file's identity: the same file listed twice runs once */
    ino_t ino;
    char *group;                   /* the data it runs on: [data] type, format and path (malloc) */
    char *quick;                   /* [experiment] quick: overrides for --quick (malloc; "" none) */
} cmp_exp;

typedef struct cmp_opts {
    int seeds, jobs, quick;
    char out[TS_PATH_MAX];
    char **over;                   /* the SECTION.KEY=VALUE arguments, in order (argv's strings) */
    int nover;
    char *sweep_key;               /* "data.p" (malloc); NULL: no sweep */
    char *sweep_val[MAX_SWEEP];    /* the values as given (malloc) */
    char *sweep_dir[MAX_SWEEP];    /* each value's folder name KEY=VALUE, '/' and '%' escaped */
    int nsweep;
} cmp_opts;

static int file_exists(const char *p)
{
    struct stat sb;
    return stat(p, &sb) == 0;
}

/* A printf into a new string; NULL when out of memory. */
static char *str_printf(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static char *str_printf(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(NULL, 0, fmt, ap);
    va_end(ap);
    char *s = n < 0 ? NULL : malloc((size_t)n + 1);
    if (!s) return NULL;
    va_start(ap, fmt);
    vsnprintf(s, (size_t)n + 1, fmt, ap);
    va_end(ap);
    return s;
}

static void cmp_free(cmp_opts *o, cmp_exp *xs, int nx)
{
    for (int i = 0; i < nx; i++) {
        free(xs[i].group);
        free(xs[i].quick);
        xs[i].group = xs[i].quick = NULL;
    }
    free(o->over);
    free(o->sweep_key);
    for (int i = 0; i < o->nsweep; i++) { free(o->sweep_val[i]); free(o->sweep_dir[i]); }
    o->over = NULL;
    o->sweep_key = NULL;
    o->nsweep = 0;
}

/* ---- reading experiments and suites -------------------------------------------------------- */
/* The suites being read, outermost first: an include that is already on it closes a cycle. */
typedef struct suite_frame {
    const char *path;
    dev_t dev;
    ino_t ino;
} suite_frame;

/* Why an experiment name cannot name the folder OUT/runs/NAME; NULL when it can. */
static const char *bad_name(const char *s)
{
    if (!*s) return "it is empty";
    if (!strcmp(s, ".") || !strcmp(s, "..")) return "'.' and '..' are not folder names";
    if (strchr(s, '/')) return "it holds a '/'";
    for (const char *c = s; *c; c++)
        if ((unsigned char)*c < 0x20 || *c == 0x7f) return "it holds a control character";
    if (strlen(s) >= TS_NAME_MAX) return "it is longer than 63 bytes";
    return NULL;
}

static int add_file(cmp_exp *v, int *n, const char *path, suite_frame *stack, int depth);

/* The files a [suite] key lists (commas and white space between them), each read in turn;
 * relative paths are relative to the suite's folder. */
static int add_listed(cmp_exp *v, int *n, const char *suite, ts_cfg *s, const char *key,
                      suite_frame *stack, int depth)
{
    const char *list = ts_cfg_str(s, key);
    ts_entry *en = ts_cfg_entry(s, key);
    if (!list) return 0;
    const char *slash = strrchr(suite, '/');
    for (const char *a = list; *a;) {
        while (*a == ',' || *a == ' ' || *a == '\t' || *a == '\n' || *a == '\r') a++;
        if (!*a) break;
        size_t len = strcspn(a, ", \t\r\n");
        char p[TS_PATH_MAX];
        int k;
        if (a[0] == '/' || !slash) k = snprintf(p, sizeof p, "%.*s", (int)len, a);
        else k = snprintf(p, sizeof p, "%.*s/%.*s", (int)(slash - suite), suite, (int)len, a);
        if (k < 0 || k >= (int)sizeof p) {
            fprintf(stderr, "tessera compare: %s:%d: [suite] %s: the path '%.60s...' is longer than "
                    "%d bytes; move the files closer to the suite\n", suite, en ? en->line : 0, key,
                    a, TS_PATH_MAX - 1);
            return -1;
        }
        /* a suite listed here that is already being read closes a cycle */
        struct stat sb;
        if (!stat(p, &sb))
            for (int d = 0; d < depth; d++) {
                if (stack[d].dev != sb.st_dev || stack[d].ino != sb.st_ino) continue;
                fprintf(stderr, "tessera compare: %s:%d: [suite] %s lists %s, which is already being "
                        "read: the suites include each other in a cycle (", suite,
                        en ? en->line : 0, key, p);
                for (int c = d; c < depth; c++) fprintf(stderr, "%s -> ", stack[c].path);
                fprintf(stderr, "%s); remove one of these includes\n", p);
                return -1;
            }
        if (add_file(v, n, p, stack, depth)) return -1;
        a += len;
    }
    return 0;
}

/* Reads an experiment (added to v) or a suite (its experiments and suites, recursively).
 * stack[0..depth) are the suites that led here. */
static int add_file(cmp_exp *v, int *n, const char *path, suite_frame *stack, int depth)
{
    ts_ini ini;
    ts_err e;
    if (ts_ini_load(&ini, path, &e)) { fprintf(stderr, "tessera compare: %s\n", e.msg); return -1; }
    struct stat sb;
    if (stat(path, &sb)) memset(&sb, 0, sizeof sb);
    ts_cfg *s = ts_ini_find(&ini, "suite");
    if (s && ts_ini_find(&ini, "experiment")) {
        fprintf(stderr, "tessera compare: %s: holds both [suite] (line %d) and [experiment] (line "
                "%d); a file is a suite or an experiment: move the experiment into its own file "
                "and list it under [suite] experiments\n", path, s->line,
                ts_ini_find(&ini, "experiment")->line);
        ts_ini_free(&ini);
        return -1;
    }
    if (s) {
        int listed = 0;
        for (int i = 0; i < s->n; i++)
            if ((!strcmp(s->ent[i].key, "experiments") || !strcmp(s->ent[i].key, "suites")) &&
                s->ent[i].value[strspn(s->ent[i].value, " \t,")])
                listed = 1;
        if (!listed) {
            fprintf(stderr, "tessera compare: %s:%d: [suite] lists no experiment: give "
                    "`experiments = a.ini, b.ini` (paths relative to the suite) or `suites = ...`\n",
                    path, s->line);
            ts_ini_free(&ini);
            return -1;
        }
        for (int i = 0; i < ini.nsec; i++)
            if (strcmp(ini.sec[i].name, "suite")) {   /* it would be read by nothing */
                fprintf(stderr, "tessera compare: %s:%d: [%s] in a suite file: a suite holds "
                        "only [suite] (name, description, experiments, suites); move the section "
                        "into an experiment file\n", path, ini.sec[i].line, ini.sec[i].name);
                ts_ini_free(&ini);
                return -1;
            }
        for (int i = 0; i < s->n; i++)
            if (strcmp(s->ent[i].key, "experiments") && strcmp(s->ent[i].key, "suites") &&
                strcmp(s->ent[i].key, "name") && strcmp(s->ent[i].key, "description")) {
                fprintf(stderr, "tessera compare: %s:%d: unknown key '%s' in [suite] (name, "
                        "description, experiments, suites)\n", path, s->ent[i].line, s->ent[i].key);
                ts_ini_free(&ini);
                return -1;
            }
        if (depth == MAX_SUITE_DEPTH) {
            fprintf(stderr, "tessera compare: %s: suites nested more than %d deep (", path,
                    MAX_SUITE_DEPTH);
            for (int d = 0; d < depth && d < 3; d++) fprintf(stderr, "%s -> ", stack[d].path);
            fprintf(stderr, "... -> %s); list the experiments in fewer levels of suites\n", path);
            ts_ini_free(&ini);
            return -1;
        }
        stack[depth] = (suite_frame){path, sb.st_dev, sb.st_ino};
        int rc = add_listed(v, n, path, s, "experiments", stack, depth + 1) ||
                 add_listed(v, n, path, s, "suites", stack, depth + 1);
        ts_ini_free(&ini);
        return rc ? -1 : 0;
    }
    ts_cfg *ce = ts_ini_find(&ini, "experiment"), *cd = ts_ini_find(&ini, "data");
    const char *name = ce ? ts_cfg_str(ce, "name") : NULL;
    if (!ce || !cd || !name) {
        fprintf(stderr, "tessera compare: %s: neither a suite ([suite]) nor an experiment with "
                "[experiment] name and [data]\n", path);
        ts_ini_free(&ini);
        return -1;
    }
    ts_entry *ne = ts_cfg_entry(ce, "name");
    int line = ne ? ne->line : 0;
    const char *why = bad_name(name);
    if (why) {
        /* the name is not echoed raw: it may hold control characters */
        fprintf(stderr, "tessera compare: %s:%d: [experiment] name cannot name a folder (%s); "
                "compare keeps each experiment's runs in OUT/runs/NAME, so use at most 63 "
                "letters, digits, '_', '-' or '.'\n", path, line, why);
        ts_ini_free(&ini);
        return -1;
    }
    for (int i = 0; i < *n; i++) {
        if (sb.st_ino && v[i].dev == sb.st_dev && v[i].ino == sb.st_ino) {
            int other = strcmp(path, v[i].path) != 0;
            fprintf(stderr, "tessera compare: note: %s is listed more than once%s%s%s; it runs "
                    "once\n", path, other ? " (also as " : "", other ? v[i].path : "",
                    other ? ")" : "");
            ts_ini_free(&ini);
            return 0;
        }
        if (!strcmp(v[i].name, name)) {
            fprintf(stderr, "tessera compare: %s:%d: [experiment] name = %s is also the name of "
                    "%s (line %d); a comparison keeps runs and report columns by name, so give "
                    "one of the two another name\n", path, line, name, v[i].path, v[i].name_line);
            ts_ini_free(&ini);
            return -1;
        }
    }
    if (*n == MAX_EXP) {
        fprintf(stderr, "tessera compare: %s: a comparison holds at most %d experiments and this "
                "is one more; split them over several compares (each with its own --out)\n",
                path, MAX_EXP);
        ts_ini_free(&ini);
        return -1;
    }
    if (strlen(path) >= TS_PATH_MAX) {
        fprintf(stderr, "tessera compare: %.60s...: the path is longer than %d bytes\n", path,
                TS_PATH_MAX - 1);
        ts_ini_free(&ini);
        return -1;
    }
    cmp_exp *x = &v[*n];
    memset(x, 0, sizeof *x);
    snprintf(x->path, sizeof x->path, "%s", path);
    snprintf(x->name, sizeof x->name, "%s", name);
    x->name_line = line;
    x->dev = sb.st_dev;
    x->ino = sb.st_ino;
    const char *type = ts_cfg_str(cd, "type"), *dpath = ts_cfg_str(cd, "path"),
               *fmt = ts_cfg_str(cd, "format"), *q = ts_cfg_str(ce, "quick");
    x->group = str_printf("%s%s%s%s%s", type ? type : "?", fmt ? " " : "", fmt ? fmt : "",
                          dpath ? " " : "", dpath ? dpath : "");
    x->quick = str_printf("%s", q ? q : "");
    ts_ini_free(&ini);
    if (!x->group || !x->quick) {
        free(x->group);
        free(x->quick);
        fprintf(stderr, "tessera compare: out of memory\n");
        return -1;
    }
    (*n)++;
    return 0;
}

static int add_experiment(cmp_exp *v, int *n, const char *path)
{
    suite_frame stack[MAX_SUITE_DEPTH];
    return add_file(v, n, path, stack, 0);
}

/* ---- the command line ---------------------------------------------------------------------- */
static int parse_count(const char *opt, const char *s, int lo, int hi, int *out)
{
    char *end;
    errno = 0;
    long v = strtol(s, &end, 10);
    if (end == s || *end || errno || v < lo || v > hi) {
        fprintf(stderr, "tessera compare: %s %s: give a whole number from %d to %d\n", opt, s, lo, hi);
        return -1;
    }
    *out = (int)v;
    return 0;
}

/* The folder name of one sweep value: KEY=VALUE with '%' and '/' written as %25 and %2F, so a
 * value never names a folder outside the comparison's. NULL when out of memory. */
static char *sweep_folder(const char *key, const char *val)
{
    size_t n = strlen(key) + 1;
    for (const char *c = val; *c; c++) n += *c == '/' || *c == '%' ? 3 : 1;
    char *s = malloc(n + 1), *w = s;
    if (!s) return NULL;
    w += sprintf(w, "%s=", key);
    for (const char *c = val; *c; c++) {
        if (*c == '/' || *c == '%') w += sprintf(w, "%%%02X", (unsigned char)*c);
        else *w++ = *c;
    }
    *w = 0;
    return s;
}

/* --sweep SECTION.KEY=V1,V2,...: one key, up to MAX_SWEEP distinct values. Exit status 2 on a
 * malformed sweep, 0 when it is read. */
static int parse_sweep(cmp_opts *o, const char *arg)
{
    const char *eq = strchr(arg, '=');
    if (o->sweep_key) {
        fprintf(stderr, "tessera compare: --sweep is given twice (%s and %.*s); a comparison sweeps "
                "one key: run one compare per key (each with its own --out), and fix the other key "
                "with an override such as %.*s=VALUE\n", o->sweep_key, eq ? (int)(eq - arg) : 60,
                arg, eq ? (int)(eq - arg) : 60, arg);
        return 2;
    }
    if (!eq || eq == arg || !memchr(arg, '.', (size_t)(eq - arg)) || !eq[1]) {
        fprintf(stderr, "tessera compare: --sweep %s: write --sweep SECTION.KEY=V1,V2,... (such as "
                "data.p=0.5,0.9,1.0)\n", arg);
        return 2;
    }
    for (const char *c = arg; c < eq; c++)
        if ((unsigned char)*c <= ' ' || *c == 0x7f || *c == '/') {
            fprintf(stderr, "tessera compare: --sweep %.*s: a key holds no '/', space or control "
                    "character; write SECTION.KEY (such as data.p)\n", (int)(eq - arg), arg);
            return 2;
        }
    o->sweep_key = str_printf("%.*s", (int)(eq - arg), arg);
    if (!o->sweep_key) { fprintf(stderr, "tessera compare: out of memory\n"); return 1; }
    const char *key = o->sweep_key;
    int nvals = 1;
    for (const char *c = eq + 1; *c; c++) nvals += *c == ',';
    if (nvals > MAX_SWEEP) {
        fprintf(stderr, "tessera compare: --sweep %s: %d values; a sweep holds at most %d: split it "
                "over several compares, each with its own --out\n", key, nvals, MAX_SWEEP);
        return 2;
    }
    for (const char *a = eq + 1;; a++) {
        size_t len = strcspn(a, ",");
        int i = o->nsweep;
        if (!len) {
            fprintf(stderr, "tessera compare: --sweep %s: value %d is empty; separate the values by "
                    "single commas\n", key, i + 1);
            return 2;
        }
        for (size_t c = 0; c < len; c++)
            if ((unsigned char)a[c] < 0x20 || a[c] == 0x7f) {
                fprintf(stderr, "tessera compare: --sweep %s: value %d holds a control character, "
                        "which an INI value cannot hold\n", key, i + 1);
                return 2;
            }
        o->sweep_val[i] = str_printf("%.*s", (int)len, a);
        o->sweep_dir[i] = o->sweep_val[i] ? sweep_folder(key, o->sweep_val[i]) : NULL;
        o->nsweep++;
        if (!o->sweep_dir[i]) { fprintf(stderr, "tessera compare: out of memory\n"); return 1; }
        for (int j = 0; j < i; j++)
            if (!strcmp(o->sweep_val[j], o->sweep_val[i])) {
                fprintf(stderr, "tessera compare: --sweep %s: the value %s is listed twice\n", key,
                        o->sweep_val[i]);
                return 2;
            }
        if (strlen(o->sweep_dir[i]) > MAX_FOLDER_NAME) {
            fprintf(stderr, "tessera compare: --sweep %s: value %d (%.40s...) makes a run folder "
                    "name (KEY=VALUE) of %zu bytes, and a folder name holds at most %d; use shorter "
                    "values, or one experiment file per value\n", key, i + 1, o->sweep_val[i],
                    strlen(o->sweep_dir[i]), MAX_FOLDER_NAME);
            return 2;
        }
        a += len;
        if (!*a) break;
    }
    return 0;
}

/* Reads the command line into o and xs. Returns 0, or the exit status (1 bad file, 2 usage). */
static int parse_args(int argc, char **argv, cmp_opts *o, cmp_exp *xs, int *nx, char *suite_name,
                      size_t suite_name_n)
{
    o->seeds = 1;
    o->jobs = 1;
    o->over = calloc((size_t)argc + 1, sizeof *o->over);
    if (!o->over) { fprintf(stderr, "tessera compare: out of memory\n"); return 1; }
    for (int i = 0; i < argc; i++) {
        const char *a = argv[i];
        int takes_value = !strcmp(a, "--seeds") || !strcmp(a, "--jobs") || !strcmp(a, "--out") ||
                          !strcmp(a, "--sweep");
        if (takes_value && i + 1 >= argc) {
            fprintf(stderr, "tessera compare: %s needs a value (%s)\n", a,
                    !strcmp(a, "--out") ? "--out DIR" : !strcmp(a, "--sweep") ?
                    "--sweep SECTION.KEY=V1,V2,..." : "a whole number");
            return 2;
        }
        if (!strcmp(a, "--seeds")) {
            if (parse_count(a, argv[++i], 1, MAX_SEEDS, &o->seeds)) return 2;
        } else if (!strcmp(a, "--jobs")) {
            if (parse_count(a, argv[++i], 1, 4096, &o->jobs)) return 2;
        } else if (!strcmp(a, "--quick")) {
            o->quick = 1;
        } else if (!strcmp(a, "--out")) {
            const char *d = argv[++i];
            /* room for /runs/NAME/KEY=VALUE/seed-N below it is checked once the runs are known */
            if (!*d || strlen(d) >= sizeof o->out) {
                fprintf(stderr, "tessera compare: --out: give a folder path of 1 to %zu bytes\n",
                        sizeof o->out - 1);
                return 2;
            }
            snprintf(o->out, sizeof o->out, "%s", d);
        } else if (!strcmp(a, "--sweep")) {
            int rc = parse_sweep(o, argv[++i]);
            if (rc) return rc;
        } else if (a[0] == '-') {
            fprintf(stderr, "tessera compare: unknown option %s; 'tessera compare --help' lists "
                    "the options\n", a);
            return 2;
        } else if (strchr(a, '=') && !strstr(a, ".ini")) {
            o->over[o->nover++] = argv[i];
        } else {
            if (!suite_name[0]) {
                const char *b = strrchr(a, '/');
                b = b ? b + 1 : a;
                snprintf(suite_name, suite_name_n, "%.*s", (int)strcspn(b, "."), b);
            }
            if (add_experiment(xs, nx, a)) return 1;
        }
    }
    /* An override of the swept key would make every point of the sweep the same run. */
    for (int i = 0; o->sweep_key && i < o->nover; i++) {
        size_t k = strcspn(o->over[i], "=");
        if (k == strlen(o->sweep_key) && !strncmp(o->over[i], o->sweep_key, k)) {
            fprintf(stderr, "tessera compare: %s is both swept (--sweep) and set by the override "
                    "%s; drop one of the two\n", o->sweep_key, o->over[i]);
            return 2;
        }
    }
    return 0;
}

/* ---- running ------------------------------------------------------------------------------- */
/* What became of one run. */
enum { J_WAITING, J_RUNNING, J_REUSED, J_RAN, J_FAILED, J_STOPPED, J_KILLED };

typedef struct job {
    int exp, seed, sweep;
    char dir[TS_PATH_MAX];         /* the run folder, OUT/runs/NAME[/KEY=VALUE]/seed-N */
    char *log;                     /* its log, OUT/logs/NAME[/KEY=VALUE]/seed-N.log (malloc) */
    pid_t pid;                     /* while it runs */
    int had_metrics;               /* metrics.json existed when it started: `before` is its stat */
    struct stat before;
    int state;                     /* J_* */
    int signalled;                 /* the signal forwarded to it; 0 = none */
    double t_start, wall;          /* when it started; its wall time once it ended (seconds) */
} job;

/* OUT/runs/NAME[/KEY=VALUE]/seed-N; -1 when it does not fit in n bytes. */
static int run_dir(char *buf, size_t n, const cmp_opts *o, const cmp_exp *x, int seed, int sw)
{
    int k;
    if (o->nsweep)
        k = snprintf(buf, n, "%s/runs/%s/%s/seed-%d", o->out, x->name, o->sweep_dir[sw], seed);
    else
        k = snprintf(buf, n, "%s/runs/%s/seed-%d", o->out, x->name, seed);
    return k < 0 || (size_t)k >= n ? -1 : 0;
}

/* SIGINT, SIGTERM and SIGHUP stop a comparison and SIGTSTP (Ctrl-Z) pauses it; the runs hear of
 * either from compare (they are in process groups of their own, so a terminal's Ctrl-C reaches
 * each exactly once, through compare). */
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

static const char *signal_name(int sig)
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

/* Starts `tessera run EXP experiment.seed=S train.threads=T [quick] [sweep] [overrides]
 * --results DIR --if-changed` with its output in the job's log. The child leads a process group
 * of its own and gets SIGTERM when compare dies (Linux), so it never outlives compare.
 * child_mask is the signal mask to restore in the child; handled[i] says whether compare caught
 * caught[i]. Returns 0, or -1 with a message printed. */
static int start_job(const cmp_opts *o, const cmp_exp *x, job *j, const char *self, int blas_threads,
                     const sigset_t *child_mask, const int *handled, int devnull)
{
    char *quick = str_printf("%s", o->quick ? x->quick : "");
    int nq = 0;
    for (const char *c = quick ? quick : ""; *c; c++) nq += *c == ' ' || *c == '\t';
    char **argv = calloc((size_t)(nq + o->nover + 16), sizeof *argv);
    if (!quick || !argv) {
        free(quick);
        free(argv);
        fprintf(stderr, "tessera compare: out of memory\n");
        return -1;
    }
    char seedarg[64], threadsarg[64];
    int a = 0;
    argv[a++] = (char *)self;
    argv[a++] = "run";
    argv[a++] = (char *)x->path;
    snprintf(seedarg, sizeof seedarg, "experiment.seed=%d", j->seed);
    argv[a++] = seedarg;
    snprintf(threadsarg, sizeof threadsarg, "train.threads=%d", blas_threads);
    argv[a++] = threadsarg;
    /* --quick: the experiment's own quick overrides (split on white space and commas between
     * assignments), then the sweep and the command line's overrides, which win. */
    char *save = NULL;
    for (char *t = strtok_r(quick, " \t", &save); t; t = strtok_r(NULL, " \t", &save)) {
        size_t n = strlen(t);
        while (n && t[n - 1] == ',') t[--n] = 0;
        if (n) argv[a++] = t;
    }
    char *sweeparg = NULL;
    if (o->nsweep) {
        sweeparg = str_printf("%s=%s", o->sweep_key, o->sweep_val[j->sweep]);
        if (!sweeparg) { free(quick); free(argv); fprintf(stderr, "tessera compare: out of memory\n"); return -1; }
        argv[a++] = sweeparg;
    }
    for (int i = 0; i < o->nover; i++) argv[a++] = o->over[i];
    argv[a++] = "--results";
    argv[a++] = j->dir;
    /* the run decides: unchanged and finished -> left as it is; half done -> resumed; else run */
    argv[a++] = "--if-changed";
    argv[a] = NULL;

    ts_err e;
    char parent[TS_PATH_MAX];
    snprintf(parent, sizeof parent, "%s", j->log);
    *strrchr(parent, '/') = 0;
    int fd = -1;
    if (ts_mkdirs(parent, &e)) fprintf(stderr, "tessera compare: %s\n", e.msg);
    else if ((fd = open(j->log, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644)) < 0)
        fprintf(stderr, "tessera compare: cannot write the run's log %s: %s\n", j->log, strerror(errno));
    snprintf(parent, sizeof parent, "%s", j->dir);
    *strrchr(parent, '/') = 0;   /* the run makes its own folder */
    if (fd >= 0 && ts_mkdirs(parent, &e)) {
        fprintf(stderr, "tessera compare: %s\n", e.msg);
        close(fd);
        fd = -1;
    }
    if (fd < 0) { free(quick); free(sweeparg); free(argv); return -1; }
    j->had_metrics = stat_metrics(j->dir, &j->before);
    pid_t me = getpid();
    pid_t pid = fork();
    if (pid == 0) {
        /* only async-signal-safe calls from here to execv */
        setpgid(0, 0);
#ifdef __linux__
        prctl(PR_SET_PDEATHSIG, SIGTERM);
        if (getppid() != me) _exit(128 + SIGTERM);   /* compare died before prctl */
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
        execv(self, argv);
        static const char msg[] = "tessera compare: cannot execute tessera for this run\n";
        ssize_t w = write(2, msg, sizeof msg - 1);
        (void)w;
        _exit(127);
    }
    int err = errno;
    close(fd);
    free(quick);
    free(sweeparg);
    free(argv);
    if (pid < 0) {
        fprintf(stderr, "tessera compare: cannot start a run (fork: %s)\n", strerror(err));
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

/* ---- progress ------------------------------------------------------------------------------ */
/* What compare says while it runs (docs/ini.md, "Progress"): a line per finished run with the
 * elapsed time and an ETA; on a terminal also one live line under them, rewritten every second. */
typedef struct progress {
    int tty;                       /* stderr is a terminal: show the live line */
    int live;                      /* the width of the live line shown; 0 = none */
    double t0;                     /* when the first run started */
} progress;

static double now_s(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

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
 * a run is expected to take the mean of its experiment's finished runs, or, before one of them
 * has finished, the mean of every run that trained (reused runs take no time, failed ones are
 * left out). The running runs take what they have left, the waiting ones (jobs[next..nj)) go,
 * in order, to the first of the --jobs slots to come free. -1 when no run has trained yet. */
static double estimate_eta(const job *jobs, int nj, int next, int slots, double tn)
{
    double sum[MAX_EXP] = {0}, all = 0;
    int cnt[MAX_EXP] = {0}, nall = 0;
    for (int i = 0; i < next; i++) {
        const job *j = &jobs[i];
        if (j->state != J_RAN && j->state != J_REUSED) continue;
        sum[j->exp] += j->wall;
        cnt[j->exp]++;
        if (j->state == J_RAN) { all += j->wall; nall++; }
    }
    double left[256] = {0}, total = 0, longest = 0;
    int n = slots < 256 ? slots : 256, k = 0;
    for (int i = 0; i < nj; i++) {
        const job *j = &jobs[i];
        if (i < next && j->state != J_RUNNING) continue;
        double est = cnt[j->exp] ? sum[j->exp] / cnt[j->exp] : nall ? all / nall : -1;
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

static void live_show(progress *p, int done, int nj, int running, int failed, double elapsed,
                      double eta)
{
    char el[32], et[32], fl[32] = "";
    if (failed) snprintf(fl, sizeof fl, " (%d failed)", failed);
    int w = fprintf(stderr, "\rtessera compare: %d of %d done%s, %d running, elapsed %s, ETA %s",
                    done, nj, fl, running, duration(el, sizeof el, elapsed),
                    duration(et, sizeof et, eta));
    if (w > 0 && w < p->live) fprintf(stderr, "%*s", p->live - w, "");   /* the old line's end */
    fflush(stderr);
    if (w > p->live) p->live = w;
}

static void on_alarm(int sig) { (void)sig; }   /* only wakes sigsuspend: the live line's clock */

/* Runs every (experiment, sweep value, seed), --jobs at a time. ok[(exp * nsweep + sweep) *
 * seeds + seed - 1] is set to 1 for each run that finished now or was reused, so the report reads
 * no figures a failed run left from an earlier configuration. Returns the number of runs that
 * failed; -1 when nothing could be started. *stopped is the stop signal when SIGINT, SIGTERM or
 * SIGHUP interrupted the comparison (its runs then stopped, and the caller exits 128 + it). */
static int run_all(const cmp_opts *o, const cmp_exp *xs, int nx, unsigned char *ok, int *stopped)
{
    int nsw = o->nsweep ? o->nsweep : 1;
    int total = nx * o->seeds * nsw;
    *stopped = 0;
    job *jobs = calloc((size_t)total, sizeof *jobs);
    if (!jobs) { fprintf(stderr, "tessera compare: out of memory\n"); return -1; }
    size_t outlen = strlen(o->out);
    int nj = 0, rc = 0;
    for (int i = 0; i < nx && !rc; i++)
        for (int sw = 0; sw < nsw && !rc; sw++)
            for (int s = 1; s <= o->seeds && !rc; s++) {
                job *j = &jobs[nj++];
                j->exp = i; j->seed = s; j->sweep = sw;
                if (run_dir(j->dir, sizeof j->dir, o, &xs[i], s, sw) || strlen(j->dir) + 32 >= TS_PATH_MAX) {
                    fprintf(stderr, "tessera compare: the run folders below %s would be longer than "
                            "%d bytes; use a shorter --out\n", o->out, TS_PATH_MAX - 32);
                    rc = -1;
                    break;
                }
                /* OUT/runs/REST -> OUT/logs/REST.log */
                j->log = str_printf("%s/logs/%s.log", o->out, j->dir + outlen + strlen("/runs/"));
                if (!j->log) { fprintf(stderr, "tessera compare: out of memory\n"); rc = -1; }
            }
    static char self[TS_PATH_MAX];
    ssize_t k = rc ? 0 : readlink("/proc/self/exe", self, sizeof self - 1);
    if (!rc && k <= 0) {
        fprintf(stderr, "tessera compare: cannot find the tessera program (/proc/self/exe: %s)\n",
                strerror(errno));
        rc = -1;
    }
    int devnull = rc ? -1 : open("/dev/null", O_RDONLY | O_CLOEXEC);
    if (!rc && devnull < 0) {
        fprintf(stderr, "tessera compare: cannot open /dev/null: %s\n", strerror(errno));
        rc = -1;
    }
    if (rc) {
        for (int i = 0; i < nj; i++) free(jobs[i].log);
        free(jobs);
        return -1;
    }
    self[k] = 0;
    long ncpu = sysconf(_SC_NPROCESSORS_ONLN);
    int jobsn = o->jobs < 1 ? 1 : o->jobs;
    int threads = (int)(ncpu / jobsn) > 0 ? (int)(ncpu / jobsn) : 1;
    char th[16];
    snprintf(th, sizeof th, "%d", threads);
    setenv("OPENBLAS_NUM_THREADS", th, 1);   /* inherited by every run */
    setenv("TESSERA_MPI", "0", 1);           /* a compare under mpirun: its runs are single processes */
    setenv("TESSERA_PROGRESS", "0", 0);      /* no progress lines in the runs' logs, unless asked */
    fprintf(stderr, "tessera compare: %d runs (%d experiments x %d seeds%s), %d at a time with %d "
            "BLAS thread%s each; a finished run whose configuration, data and plugins are "
            "unchanged is reused\n", total, nx, o->seeds, o->nsweep ? " x sweep" : "", jobsn,
            threads, threads > 1 ? "s" : "");

    /* The caught signals and SIGCHLD are blocked except inside sigsuspend, so none is missed
     * between a check and the wait. A signal that was ignored when compare started stays ignored
     * (nohup, a background job of a non-interactive shell). */
    progress pg = {isatty(STDERR_FILENO), 0, now_s()};
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
        if (old[i].sa_handler == SIG_IGN) continue;
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

    int next = 0, running = 0, done = 0, failed = 0, reused = 0, ran = 0;
    int stopped_ckpt = 0, killed = 0, forwarded = 0;
    for (;;) {
        if (pause_req) {   /* Ctrl-Z: the runs stop with compare and go on with it */
            pause_req = 0;
            for (int i = 0; i < next; i++)
                if (jobs[i].state == J_RUNNING) kill(jobs[i].pid, SIGSTOP);
            raise(SIGSTOP);
            for (int i = 0; i < next; i++)
                if (jobs[i].state == J_RUNNING) kill(jobs[i].pid, SIGCONT);
        }
        if (stop_count != forwarded) {   /* pass each stop signal on to every running run */
            forwarded = stop_count;
            for (int i = 0; i < next; i++)
                if (jobs[i].state == J_RUNNING) {
                    kill(jobs[i].pid, stop_sig);
                    jobs[i].signalled = stop_sig;
                }
        }
        if (!stop_sig && running < jobsn && next < nj) live_clear(&pg);   /* its messages */
        while (!stop_sig && running < jobsn && next < nj) {
            job *j = &jobs[next++];
            j->t_start = now_s();
            if (start_job(o, &xs[j->exp], j, self, threads, &orig, handled, devnull)) {
                j->state = J_FAILED;
                failed++;
                done++;
                continue;
            }
            j->state = J_RUNNING;
            running++;
        }
        int status, reaped = 0;
        pid_t pid;
        while (running && (pid = waitpid(-1, &status, WNOHANG)) > 0) {
            job *j = NULL;
            for (int i = 0; i < next && !j; i++)
                if (jobs[i].state == J_RUNNING && jobs[i].pid == pid) j = &jobs[i];
            if (!j) continue;   /* not a run of ours */
            reaped++;
            running--;
            done++;
            j->wall = now_s() - j->t_start;
            struct stat after;
            int has = stat_metrics(j->dir, &after);
            const char *what;
            if (WIFEXITED(status) && WEXITSTATUS(status) == 0 && has) {
                int same = j->had_metrics && same_file_state(&j->before, &after);
                j->state = same ? J_REUSED : J_RAN;
                what = same ? "reused (finished before with the same configuration)" : "run";
                if (same) reused++;
                else ran++;
                ok[(j->exp * nsw + j->sweep) * o->seeds + j->seed - 1] = 1;
            } else if (j->signalled && WIFEXITED(status) && WEXITSTATUS(status) == 128 + j->signalled) {
                j->state = J_STOPPED;
                what = "stopped at a checkpoint";
                stopped_ckpt++;
            } else if (j->signalled && WIFSIGNALED(status)) {
                j->state = J_KILLED;
                what = "stopped by the signal";
                killed++;
            } else {
                j->state = J_FAILED;
                what = WIFEXITED(status) && WEXITSTATUS(status) == 0 ? "FAILED (it wrote no "
                       "metrics.json)" : "FAILED";
                failed++;
            }
            double tn = now_s(), eta = estimate_eta(jobs, stop_sig ? next : nj, next, jobsn, tn);
            char el[32], et[32];
            live_clear(&pg);
            fprintf(stderr, "  [%d/%d, elapsed %s, ETA %s] %s seed %d%s%s%s%s: %s\n", done, nj,
                    duration(el, sizeof el, tn - pg.t0), duration(et, sizeof et, eta),
                    xs[j->exp].name, j->seed, o->nsweep ? " " : "", o->nsweep ? o->sweep_key : "",
                    o->nsweep ? "=" : "", o->nsweep ? o->sweep_val[j->sweep] : "", what);
            if (j->state == J_FAILED) print_last_line(j->log);
        }
        if (!running && (stop_sig || next == nj)) break;
        if (pg.tty && !reaped) {   /* about to wait: the runs that could start have started */
            double tn = now_s();
            live_show(&pg, done, nj, running, failed, tn - pg.t0,
                      estimate_eta(jobs, stop_sig ? next : nj, next, jobsn, tn));
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
    if (stop_sig) {
        *stopped = stop_sig;
        fprintf(stderr, "tessera compare: interrupted by %s:", signal_name(stop_sig));
        const char *sep = " ";
        if (stopped_ckpt) {
            fprintf(stderr, "%s%d run%s stopped at a checkpoint", sep, stopped_ckpt,
                    stopped_ckpt == 1 ? "" : "s");
            sep = ", ";
        }
        if (killed) {
            fprintf(stderr, "%s%d run%s killed by it (resuming from %s last checkpoint, if any)",
                    sep, killed, killed == 1 ? "" : "s", killed == 1 ? "its" : "their");
            sep = ", ";
        }
        if (reused + ran) { fprintf(stderr, "%s%d finished", sep, reused + ran); sep = ", "; }
        if (failed) { fprintf(stderr, "%s%d failed", sep, failed); sep = ", "; }
        if (nj - next) fprintf(stderr, "%s%d not started", sep, nj - next);
        fprintf(stderr, "; run the same command again to continue\n");
    } else {
        fprintf(stderr, "tessera compare: %d reused, %d run, %d failed\n", reused, ran, failed);
    }
    for (int i = 0; i < nj; i++) free(jobs[i].log);
    free(jobs);
    return failed;
}

/* ---- aggregation --------------------------------------------------------------------------- */
typedef struct series {
    char key[160];                      /* "test.income.auc" */
    double v[MAX_SWEEP][MAX_SEEDS];     /* NAN where the run has no value */
} series;

typedef struct agg {
    series *s;
    int n;
    int dropped;                        /* figures past MAX_KEYS (said once) */
} agg;

static series *agg_get(agg *a, const char *key)
{
    for (int i = 0; i < a->n; i++)
        if (!strcmp(a->s[i].key, key)) return &a->s[i];
    if (a->n == MAX_KEYS) return NULL;
    series *s = &a->s[a->n++];
    snprintf(s->key, sizeof s->key, "%s", key);
    for (int i = 0; i < MAX_SWEEP; i++)
        for (int j = 0; j < MAX_SEEDS; j++) s->v[i][j] = NAN;
    return s;
}

static void read_metrics(const char *dir, agg *a, int sw, int seed)
{
    char path[TS_PATH_MAX + 16], line[1024];
    snprintf(path, sizeof path, "%s/metrics.json", dir);
    FILE *f = ts_fopen_regular(path);
    if (!f) return;
    while (fgets(line, sizeof line, f)) {
        char *q1 = strchr(line, '"'), *q2 = q1 ? strchr(q1 + 1, '"') : NULL;
        if (!q2) continue;
        *q2 = 0;
        char *colon = strchr(q2 + 1, ':');
        if (!colon) continue;
        double v = strncmp(colon + 2, "null", 4) ? strtod(colon + 1, NULL) : NAN;
        series *s = agg_get(a, q1 + 1);
        if (s) s->v[sw][seed - 1] = v;
        else if (!a->dropped++)
            fprintf(stderr, "tessera compare: warning: %s has more than %d figures; the report "
                    "leaves out %s and the figures after it\n", path, MAX_KEYS, q1 + 1);
    }
    fclose(f);
}

/* A name as Markdown text: characters that would end a table cell, a link or start markup are
 * escaped (not `_`: GitHub's Markdown reads no emphasis inside a word, and run names are full
 * of them), line breaks become spaces. Four rotating buffers, so one printf may use several. */
static const char *md_text(const char *s)
{
    static char buf[4][1024];
    static int k;
    char *o = buf[k = (k + 1) % 4];
    size_t n = 0;
    for (; *s && n + 3 < sizeof buf[0]; s++) {
        if (strchr("\\`*[]|<>", *s)) o[n++] = '\\';   /* `_` inside a word is no markup */
        o[n++] = *s == '\n' || *s == '\r' || *s == '\t' ? ' ' : *s;
    }
    o[n] = 0;
    return o;
}

/* A CSV field (RFC 4180): quoted, with quotes doubled, when it holds a comma, a quote or a
 * line break; as it is otherwise. Four rotating buffers. */
static const char *csv_field(const char *s)
{
    static char buf[4][1024];
    static int k;
    char *o = buf[k = (k + 1) % 4];
    if (!strpbrk(s, ",\"\r\n")) { snprintf(o, sizeof buf[0], "%s", s); return o; }
    size_t n = 0;
    o[n++] = '"';
    for (; *s && n + 3 < sizeof buf[0]; s++) {
        if (*s == '"') o[n++] = '"';
        o[n++] = *s;
    }
    o[n++] = '"';
    o[n] = 0;
    return o;
}

/* Metrics worth a column: test figures except raw losses, plus training speed. */
static int reportable(const char *key)
{
    if (!strncmp(key, "train.run.examples_per_sec", 26)) return 1;
    if (strncmp(key, "test.", 5)) return 0;
    const char *m = strrchr(key, '.');
    return m && strcmp(m, ".loss") && strcmp(m, ".positive_rate") && strcmp(m, ".queries") &&
           strcmp(m, ".users");
}

/* The figures worth a plot and a significance test: each task's main quality measure. */
static int headline(const char *key)
{
    static const char *const main_metrics[] = {".auc", ".mrr", ".map", ".recall@50", ".mse",
                                               ".examples_per_sec", NULL};
    const char *m = strrchr(key, '.');
    for (int i = 0; m && main_metrics[i]; i++)
        if (!strcmp(m, main_metrics[i])) return reportable(key);
    return 0;
}

static int write_file(const char *path, const char *text)
{
    ts_err e;
    if (ts_write_atomic(path, text, strlen(text), &e)) {
        fprintf(stderr, "tessera: %s\n", e.msg);
        return -1;
    }
    return 0;
}

/* A growing string. */
typedef struct sbuf { char *s; size_t n, cap; } sbuf;
static void sb_printf(sbuf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void sb_printf(sbuf *b, const char *fmt, ...)
{
    for (;;) {
        va_list ap;
        va_start(ap, fmt);
        int k = vsnprintf(b->s ? b->s + b->n : NULL, b->s ? b->cap - b->n : 0, fmt, ap);
        va_end(ap);
        if (b->s && (size_t)k < b->cap - b->n) { b->n += (size_t)k; return; }
        size_t cap = b->cap ? b->cap * 2 : 4096;
        while (cap < b->n + (size_t)k + 1) cap *= 2;
        b->s = realloc(b->s, cap);
        b->cap = cap;
    }
}

/* ---- gnuplot ------------------------------------------------------------------------------- */
/* No user-controlled string (an experiment or task name, a run folder, --out, a data path, a
 * sweep value) is ever interpreted by gnuplot or by a shell (issue 12):
 * - gnuplot runs without a shell: fork, chdir into a private folder, execvp("gnuplot",
 *   {"gnuplot", "plot.gp"}); its output comes back through a pipe that tessera only reads
 *   (so no SIGPIPE can reach tessera), and `have_gnuplot` execs `gnuplot --version` the same way;
 * - the private folder is made with mkdtemp beside the output; the data go into files of fixed
 *   names there (d0.dat, d1.dat, ...), gnuplot draws out.png there, and C rename()s it to the
 *   user's path: no path ever appears in a script;
 * - every text (title, key entry, axis and tic label) is written by gp_str as a gnuplot string
 *   expression of single-quoted pieces that hold no quote, joined by the variable TS_Q, which
 *   holds one quote: Bob's -> 'Bob'.TS_Q.'s'. Read in gnuplot 5.4 (scanner.c, command.c) and
 *   measured: inside single quotes there is no backquote command substitution (there is inside
 *   double quotes) and no backslash escape; @macros are not expanded while the macro pass counts
 *   an odd number of ' before them (it toggles on every ' and ignores nesting, so a " that
 *   holds a ' would confuse it: hence a variable, not "'"); and doubling a quote ('') is not
 *   enough: a string that starts with a quote, or holds two in a row, falls apart into several
 *   tokens. Explicit tic labels are format strings (`%s` in one prints a number), so gp_str
 *   doubles `%` in them. Control characters would end the command line, and bytes that are not
 *   UTF-8 make gnuplot re-read the whole string as Latin-1, so both are replaced. The terminal
 *   is `noenhanced`: _ ^ { } @ & are shown as themselves. */
typedef struct gp_plot {
    char dir[TS_PATH_MAX];    /* the private folder (mkdtemp) */
    const char *out;          /* the user's path for the PNG */
    const char *who;          /* "tessera plot" or "tessera compare", for messages */
    sbuf s;                   /* the script */
    int ndata;                /* data files written: d0.dat .. d<ndata-1>.dat */
} gp_plot;

static void sb_putn(sbuf *b, const char *p, size_t n)
{
    sb_printf(b, "%.*s", (int)n, p);
}

/* The length of the valid UTF-8 sequence at p (1 to 4), or 0 when the bytes there are not
 * one (a stray continuation byte, an overlong form, a surrogate, beyond U+10FFFF) or encode a
 * C1 control character (U+0080 to U+009F). */
static size_t utf8_len(const unsigned char *p)
{
    size_t n;
    unsigned cp;
    if (p[0] < 0x80) return 1;
    if (p[0] >= 0xc2 && p[0] <= 0xdf) { n = 2; cp = p[0] & 0x1fu; }
    else if (p[0] >= 0xe0 && p[0] <= 0xef) { n = 3; cp = p[0] & 0x0fu; }
    else if (p[0] >= 0xf0 && p[0] <= 0xf4) { n = 4; cp = p[0] & 0x07u; }
    else return 0;
    for (size_t i = 1; i < n; i++) {
        if ((p[i] & 0xc0) != 0x80) return 0;
        cp = cp << 6 | (p[i] & 0x3fu);
    }
    if ((n == 3 && cp < 0x800) || (n == 4 && (cp < 0x10000 || cp > 0x10ffff)) ||
        (cp >= 0xd800 && cp <= 0xdfff) || cp <= 0x9f)
        return 0;
    return n;
}

/* Appends s as a gnuplot string expression that shows s as itself: single-quoted pieces joined
 * by .TS_Q. where s has a quote; tab, newline and carriage return shown as a space; other control
 * characters, DEL and bytes that are not UTF-8 shown as U+FFFD (the replacement character); in
 * a tic label (tic = 1) % doubled. */
static void gp_str(sbuf *b, const char *s, int tic)
{
    const unsigned char *p = (const unsigned char *)s;
    sb_putn(b, "'", 1);
    while (*p) {
        size_t n = utf8_len(p);
        if (*p == '\'') sb_putn(b, "'.TS_Q.'", 8);
        else if (*p == '%' && tic) sb_putn(b, "%%", 2);
        else if (*p == '\t' || *p == '\n' || *p == '\r') sb_putn(b, " ", 1);
        else if (*p < 0x20 || *p == 0x7f || !n) sb_putn(b, "\xef\xbf\xbd", 3);
        else { sb_putn(b, (const char *)p, n); p += n; continue; }
        p++;
    }
    sb_putn(b, "'", 1);
}

/* A file of the private folder: "d3.dat", "plot.gp", "out.png". */
static void gp_path(char *buf, size_t n, const gp_plot *g, const char *name)
{
    snprintf(buf, n, "%s/%s", g->dir, name);
}

/* Removes the private folder and the files tessera and gnuplot put there. */
static void gp_cleanup(gp_plot *g)
{
    char p[TS_PATH_MAX + 32], name[32];
    for (int i = 0; i < g->ndata; i++) {
        snprintf(name, sizeof name, "d%d.dat", i);
        gp_path(p, sizeof p, g, name);
        unlink(p);
    }
    gp_path(p, sizeof p, g, "plot.gp");
    unlink(p);
    gp_path(p, sizeof p, g, "out.png");
    unlink(p);
    rmdir(g->dir);
    free(g->s.s);
    g->s.s = NULL;
}

/* Makes the private folder beside png and starts the script: a pngcairo terminal of w x h
 * pixels writing out.png. */
static int gp_begin(gp_plot *g, const char *who, const char *png, int w, int h)
{
    memset(g, 0, sizeof *g);
    g->out = png;
    g->who = who;
    size_t len = strlen(png);
    const char *slash = strrchr(png, '/');
    if (!len || png[len - 1] == '/') {
        fprintf(stderr, "%s: the plot's path '%s' names a folder; give a file name such as "
                "curves.png\n", who, png);
        return -1;
    }
    int room = slash ? snprintf(g->dir, sizeof g->dir, "%.*s/.tessera-plot-XXXXXX",
                                (int)(slash - png), png)
                     : snprintf(g->dir, sizeof g->dir, ".tessera-plot-XXXXXX");
    if (room >= (int)sizeof g->dir) {
        fprintf(stderr, "%s: the plot's path '%s' is too long\n", who, png);
        return -1;
    }
    if (!mkdtemp(g->dir)) {
        fprintf(stderr, "%s: cannot make a temporary folder beside %s to draw it in: %s; give "
                "a path in an existing folder you can write\n", who, png, strerror(errno));
        return -1;
    }
    sb_printf(&g->s, "TS_Q = \"'\"\nset encoding utf8\nset terminal pngcairo noenhanced size %d,%d "
              "font 'sans,10'\nset output 'out.png'\n", w, h);
    return 0;
}

/* Writes text to the next data file of the private folder; its fixed name goes to name. */
static int gp_data(gp_plot *g, const char *text, char *name, size_t n)
{
    char p[TS_PATH_MAX + 32];
    snprintf(name, n, "d%d.dat", g->ndata);
    gp_path(p, sizeof p, g, name);
    FILE *f = fopen(p, "wx");
    if (!f) {
        fprintf(stderr, "%s: cannot write %s: %s\n", g->who, p, strerror(errno));
        return -1;
    }
    g->ndata++;
    size_t k = strlen(text);
    int bad = fwrite(text, 1, k, f) != k;
    if (fclose(f) || bad) {
        fprintf(stderr, "%s: cannot write %s: %s\n", g->who, p, strerror(errno));
        return -1;
    }
    return 0;
}

/* Runs gnuplot on plot.gp in folder dir, without a shell; its standard output and error
 * (up to cap - 1 bytes) go to msg. Returns the wait status, or -1 when it could not start. */
static int gp_exec(const char *dir, const char *const *args, char *msg, size_t cap)
{
    int fd[2];
    msg[0] = 0;
    if (pipe(fd)) return -1;
    pid_t pid = fork();
    if (pid < 0) {
        int er = errno;
        close(fd[0]);
        close(fd[1]);
        errno = er;
        return -1;
    }
    if (pid == 0) {
        /* Only async-signal-safe calls between fork and exec (BLAS threads may exist). */
        int null = open("/dev/null", O_RDONLY);
        if (null >= 0) dup2(null, 0);
        if (null > 2) close(null);
        dup2(fd[1], 1);
        dup2(fd[1], 2);
        close(fd[0]);
        if (fd[1] > 2) close(fd[1]);
        if (dir && chdir(dir)) {
            static const char nodir[] = "cannot enter the temporary folder\n";
            ssize_t k = write(2, nodir, sizeof nodir - 1);
            (void)k;
            _exit(126);
        }
        execvp("gnuplot", (char *const *)args);
        static const char nope[] = "cannot run gnuplot: not found in PATH or not executable\n";
        ssize_t k = write(2, nope, sizeof nope - 1);
        (void)k;
        _exit(127);
    }
    close(fd[1]);
    size_t n = 0;
    char buf[4096];
    for (;;) {
        ssize_t k = read(fd[0], buf, sizeof buf);
        if (k < 0 && errno == EINTR) continue;
        if (k <= 0) break;
        size_t take = (size_t)k < cap - 1 - n ? (size_t)k : cap - 1 - n;
        memcpy(msg + n, buf, take);
        n += take;
    }
    msg[n] = 0;
    close(fd[0]);
    int st;
    while (waitpid(pid, &st, 0) < 0)
        if (errno != EINTR) return -1;
    return st;
}

/* Runs the script, then moves out.png to the user's path. On failure the message names the
 * plot and shows gnuplot's words; the private folder is kept then, to read the script. */
static int gp_finish(gp_plot *g)
{
    char script[TS_PATH_MAX + 32], png[TS_PATH_MAX + 32], msg[4096];
    gp_path(script, sizeof script, g, "plot.gp");
    FILE *f = fopen(script, "wx");
    int bad = !f || fputs(g->s.s, f) == EOF;
    if ((f && fclose(f)) || bad) {
        fprintf(stderr, "%s: cannot write %s: %s\n", g->who, script, strerror(errno));
        gp_cleanup(g);
        return -1;
    }
    const char *const args[] = {"gnuplot", "plot.gp", NULL};
    int st = gp_exec(g->dir, args, msg, sizeof msg);
    gp_path(png, sizeof png, g, "out.png");
    if (st == -1 || !WIFEXITED(st) || WEXITSTATUS(st) || !file_exists(png)) {
        if (st == -1) snprintf(msg, sizeof msg, "cannot start it: %s\n", strerror(errno));
        fprintf(stderr, "%s: gnuplot could not draw %s; it said:\n%s%sthe script and its data "
                "are kept in %s (gnuplot 5 with the pngcairo terminal is needed: apt-get install "
                "gnuplot-nox)\n", g->who, g->out, msg,
                msg[0] && msg[strlen(msg) - 1] != '\n' ? "\n" : "", g->dir);
        free(g->s.s);
        g->s.s = NULL;
        return -1;
    }
    if (msg[0])   /* warnings of a plot that was drawn */
        fprintf(stderr, "%s: gnuplot, drawing %s:\n%s%s", g->who, g->out, msg,
                msg[strlen(msg) - 1] != '\n' ? "\n" : "");
    if (rename(png, g->out)) {
        fprintf(stderr, "%s: cannot move the plot to %s: %s\n", g->who, g->out, strerror(errno));
        gp_cleanup(g);
        return -1;
    }
    gp_cleanup(g);
    return 0;
}

/* A piece of a report file name made from user text (an experiment name, a metric key) into
 * buf: bytes outside [A-Za-z0-9._-] become '_' ('@' too, as report names always had:
 * bar_1_test.next.recall_50.png). When any other byte was replaced, or the text was cut to fit,
 * "-" and 8 hex digits of a hash of the whole text follow, so "a b" and "a_b" stay two files.
 * The name is used by rename() and in the report's markdown links, never in a script. */
static void file_part(char *buf, size_t n, const char *text)
{
    uint32_t h = 2166136261u;   /* FNV-1a */
    size_t k = 0, room = n > 10 ? n - 10 : 1;
    int changed = 0;
    for (const unsigned char *p = (const unsigned char *)text; *p; p++) {
        h = (h ^ *p) * 16777619u;
        int ok = (*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') ||
                 (*p >= '0' && *p <= '9') || *p == '.' || *p == '_' || *p == '-';
        if (!ok && *p != '@') changed = 1;
        if (k + 1 < room) buf[k++] = ok ? (char)*p : '_';
        else changed = 1;
    }
    buf[k] = 0;
    if (changed) snprintf(buf + k, n - k, "-%08x", (unsigned)h);
}

static int have_gnuplot(void)
{
    char msg[256];
    const char *const args[] = {"gnuplot", "--version", NULL};
    int st = gp_exec(NULL, args, msg, sizeof msg);
    return st != -1 && WIFEXITED(st) && WEXITSTATUS(st) == 0;
}

/* 1 with the finite number that is all of s (strtod) in *v, or 0 when s is not one. */
static int number(const char *s, double *v)
{
    char *end;
    *v = strtod(s, &end);
    return end != s && !*end && isfinite(*v);
}

/* The training curve of a run: (epoch, weighted total loss) from train.csv's columns 2 and 4,
 * one "x y" line per logged row; rows that are not numbers (the header) are left out. */
static void read_train_curve(const char *dir, sbuf *d)
{
    char p[TS_PATH_MAX + 16];
    snprintf(p, sizeof p, "%s/train.csv", dir);
    ts_err e;
    ts_lines *r = ts_lines_open(p, &e);
    char *line;
    while (r && (line = ts_lines_next(r, NULL))) {
        char *fld[8];
        double x, y;
        if (ts_split(line, ",", fld, 7) >= 4 && number(fld[1], &x) && number(fld[3], &y))
            sb_printf(d, "%.9g %.9g\n", x, y);
    }
    if (r) ts_lines_close(r);
}

/* The validation loss curves of a run, one per task in eval.csv's order of first appearance:
 * (epoch, value) of the rows "valid,TASK,loss". Returns the number of tasks (at most 16). */
static int read_valid_losses(const char *dir, char tasks[16][TS_NAME_MAX], sbuf d[16])
{
    char p[TS_PATH_MAX + 16];
    snprintf(p, sizeof p, "%s/eval.csv", dir);
    ts_err e;
    ts_lines *r = ts_lines_open(p, &e);
    char *line;
    int nt = 0;
    while (r && (line = ts_lines_next(r, NULL))) {
        char *fld[8];
        double x, y;
        if (ts_split(line, ",", fld, 7) < 6 || strcmp(fld[2], "valid") || strcmp(fld[4], "loss") ||
            !number(fld[0], &x) || !number(fld[5], &y))
            continue;
        int t = 0;
        while (t < nt && strcmp(tasks[t], fld[3])) t++;
        if (t == nt) {
            if (nt == 16) continue;
            snprintf(tasks[nt++], TS_NAME_MAX, "%s", fld[3]);
        }
        sb_printf(&d[t], "%.9g %.9g\n", x, y);
    }
    if (r) ts_lines_close(r);
    return nt;
}

/* Loss curves of runs: train loss (train.csv) and validation loss per task (eval.csv), one line
 * per run, against epochs. who names the command in messages. */
static int plot_curves(const char *who, char **dirs, char **labels, int n, const char *png,
                       const char *title)
{
    gp_plot g;
    if (gp_begin(&g, who, png, 1200, 560)) return -1;
    sbuf *s = &g.s, pl = {0};
    char name[32];
    int rc = 0, any = 0;
    sb_printf(s, "set key below box\nset grid\nset bmargin 8\nset multiplot layout 1,2 title ");
    gp_str(s, title, 0);
    /* Left: training loss (weighted total) against epoch; right: validation loss per task. */
    /* The loss plugin sets the unit: nats for bce and softmax, squared label units for mse. */
    sb_printf(s, "\nset title 'training loss, weighted sum over tasks (mean over each log "
              "interval)'\nset xlabel 'epoch'\n"
              "set ylabel 'loss per example (nats; mse: label units squared)'\n");
    for (int i = 0; i < n && !rc; i++) {
        sbuf d = {0};
        read_train_curve(dirs[i], &d);
        if (d.n && !(rc = gp_data(&g, d.s, name, sizeof name))) {
            sb_printf(&pl, "%s'%s' using 1:2 with lines lw 2 title ", any ? ", " : "", name);
            gp_str(&pl, labels[i], 0);
            any = 1;
        }
        free(d.s);
    }
    if (any)
        sb_printf(s, "plot %s\n", pl.s);
    else   /* killed before its first log line: say so instead of an empty plot */
        sb_printf(s, "set label 1 'no run has logged a training loss yet' at graph 0.5, graph 0.5 "
                  "center\nset xrange [0:1]\nset yrange [0:1]\nunset key\nplot -1 notitle\n"
                  "unset label 1\nset key below box\nset autoscale xy\n");
    sb_printf(s, "set title 'validation loss per task (log scale)'\nset xlabel 'epoch'\n"
              "set ylabel 'loss per example (nats; mse: label units squared)'\nset logscale y\n");
    free(pl.s);
    pl = (sbuf){0};
    any = 0;
    for (int i = 0; i < n && !rc; i++) {
        static char tasks[16][TS_NAME_MAX];
        sbuf d[16] = {{0}};
        int nt = read_valid_losses(dirs[i], tasks, d);
        for (int t = 0; t < nt && !rc; t++) {
            if (!d[t].n || (rc = gp_data(&g, d[t].s, name, sizeof name))) continue;
            sb_printf(&pl, "%s'%s' using 1:2 with linespoints lw 2 title ", any ? ", " : "", name);
            /* "RUN TASK": one string, so the pieces are joined before quoting */
            sbuf lab = {0};
            sb_printf(&lab, "%s %s", labels[i], tasks[t]);
            gp_str(&pl, lab.s, 0);
            free(lab.s);
            any = 1;
        }
        for (int t = 0; t < nt; t++) free(d[t].s);
    }
    if (any)
        sb_printf(s, "plot %s\n", pl.s);
    else   /* retrieval heads report no validation loss: say so instead of an empty plot */
        sb_printf(s, "set label 1 'no head reports a validation loss' at graph 0.5, graph 0.5 "
                  "center\nunset logscale y\nset xrange [0:1]\nset yrange [0:1]\nunset key\n"
                  "plot -1 notitle\n");
    free(pl.s);
    sb_printf(s, "unset multiplot\n");
    if (rc) { gp_cleanup(&g); return rc; }
    return gp_finish(&g);
}

int ts_cmd_plot(int argc, char **argv)
{
    char *dirs[64], *labels[64], out[TS_PATH_MAX] = "curves.png";
    static char labbuf[64][256];
    int n = 0;
    for (int i = 0; i < argc; i++) {
        if (!strcmp(argv[i], "--out") && i + 1 < argc) snprintf(out, sizeof out, "%s", argv[++i]);
        else if (n == 64) {
            fprintf(stderr, "tessera plot: %s is a 65th run; one plot draws at most 64, so plot "
                    "them in several parts\n", argv[i]);
            return 2;
        } else {
            char p[TS_PATH_MAX + 16];
            snprintf(p, sizeof p, "%s/train.csv", argv[i]);
            if (!file_exists(p)) {
                fprintf(stderr, "tessera plot: %s has no train.csv; give run folders (results/NAME)\n",
                        argv[i]);
                return 1;
            }
            dirs[n] = argv[i];
            /* the label: the folder's last name, without trailing slashes */
            size_t len = strlen(argv[i]);
            while (len > 1 && argv[i][len - 1] == '/') len--;
            size_t b = len;
            while (b > 0 && argv[i][b - 1] != '/') b--;
            snprintf(labbuf[n], sizeof labbuf[n], "%.*s", (int)(len - b), argv[i] + b);
            labels[n] = labbuf[n];
            n++;
        }
    }
    if (!n) {
        fprintf(stderr, "usage: tessera plot RUN_DIR ... [--out FILE.png] (tessera plot --help)\n");
        return 2;
    }
    if (!have_gnuplot()) { fprintf(stderr, "tessera plot: gnuplot not found (apt-get install gnuplot-nox)\n"); return 1; }
    if (plot_curves("tessera plot", dirs, labels, n, out, "loss curves")) return 1;
    printf("%s\n", out);
    return 0;
}

/* Bars of one metric per experiment, mean ± std over seeds. */
static int plot_bars(const char *png, const char *title, const char *ylabel, char names[][TS_NAME_MAX],
                     const double *mean, const double *std, int n)
{
    gp_plot g;
    sbuf d = {0};
    char dat[32];
    double lo = INFINITY, hi = -INFINITY;
    for (int i = 0; i < n; i++) {
        double sd = isfinite(std[i]) ? std[i] : 0;
        sb_printf(&d, "%d %.9g %.9g\n", i, mean[i], sd);
        if (mean[i] - sd < lo) lo = mean[i] - sd;
        if (mean[i] + sd > hi) hi = mean[i] + sd;
    }
    if (gp_begin(&g, "tessera compare", png, 900, 480)) { free(d.s); return -1; }
    if (gp_data(&g, d.s ? d.s : "", dat, sizeof dat)) { free(d.s); gp_cleanup(&g); return -1; }
    free(d.s);
    /* a margin that survives printing even when every point is the same large value */
    double mag = fabs(lo) > fabs(hi) ? fabs(lo) : fabs(hi);
    double pad = (hi - lo) * 0.25;
    if (pad < 0.05 * mag) pad = 0.05 * mag;
    if (pad < 1e-3) pad = 1e-3;
    /* Points with error bars, not bars: a bar's length would be read from an axis that does
     * not start at zero. The names are tic labels of the script, not strings of the data. */
    sb_printf(&g.s, "set title ");
    gp_str(&g.s, title, 0);
    sb_printf(&g.s, "\nset ylabel ");
    gp_str(&g.s, ylabel, 0);
    sb_printf(&g.s, "\nset grid ytics\nset xtics rotate by -20 (");
    for (int i = 0; i < n; i++) {
        sb_printf(&g.s, "%s", i ? ", " : "");
        gp_str(&g.s, names[i], 1);
        sb_printf(&g.s, " %d", i);
    }
    sb_printf(&g.s, ")\nset key off\nset yrange [%.9g:%.9g]\nset xrange [-0.6:%d.6]\nset bmargin 6\n"
              "plot '%s' using 1:2:3 with yerrorbars lc rgb '#2b5d9b' pt 7 ps 1.5 lw 2, "
              "'' using 1:($2+$3):(sprintf('%%.4g', $2)) with labels offset 0,1\n",
              lo - pad, hi + pad, n - 1, dat);
    return gp_finish(&g);
}

/* ---- multi-task figures: sweeps, per-seed wins, gate heatmaps, Recall@K curves ------------- */
static series *find_series(agg *a, const char *key)
{
    for (int j = 0; j < a->n; j++)
        if (!strcmp(a->s[j].key, key)) return &a->s[j];
    return NULL;
}

/* Lower is better for errors and losses, higher for AUC, recall and the like. */
static int lower_better(const char *key)
{
    return strstr(key, "loss") || strstr(key, "mse") || strstr(key, "mae") || strstr(key, "rmse");
}

/* A test figure that measures quality (not the combined score's weights or a label rate). */
static int quality_metric(const char *key)
{
    const char *m = strrchr(key, '.');
    return !strncmp(key, "test.", 5) && reportable(key) && m && strncmp(m, ".w_", 3);
}

/* The y axis title of a metric, with its unit. */
static const char *metric_axis(const char *key, char *buf, size_t n)
{
    const char *m = strrchr(key, '.');
    m = m ? m + 1 : key;
    if (!strcmp(m, "mse")) snprintf(buf, n, "%s: mean squared error (label units squared)", key);
    else if (!strcmp(m, "mae")) snprintf(buf, n, "%s: mean absolute error (label units)", key);
    else if (!strcmp(m, "auc")) snprintf(buf, n, "%s: ROC AUC (0.5 = chance)", key);
    else if (!strcmp(m, "logloss")) snprintf(buf, n, "%s: log loss (nats per example)", key);
    else if (!strncmp(m, "recall@", 7))
        snprintf(buf, n, "%s: fraction of targets in the top K", key);
    else snprintf(buf, n, "%s", key);
    return buf;
}

/* One metric against the sweep value: a line per experiment, mean ± std over seeds.
 * mean and sd are (nexp, MAX_SWEEP); x values are the sweep values when they are all numbers,
 * else their positions with the values as tic labels. */
static int plot_sweep(const char *png, const char *title, const char *xlabel, const char *ylabel,
                      const cmp_opts *o, char names[][TS_NAME_MAX], double mean[][MAX_SWEEP],
                      double sd[][MAX_SWEEP], int nexp)
{
    sbuf d = {0};
    char dat[32];
    double xv[MAX_SWEEP], lo = INFINITY, hi = -INFINITY;
    int numeric = 1;
    for (int w = 0; w < o->nsweep; w++)
        if (!number(o->sweep_val[w], &xv[w])) numeric = 0;
    for (int w = 0; w < o->nsweep && !numeric; w++) xv[w] = w;
    for (int w = 0; w < o->nsweep; w++) {
        if (xv[w] < lo) lo = xv[w];
        if (xv[w] > hi) hi = xv[w];
    }
    double span = hi > lo ? hi - lo : 1, shift = 0.012 * span;
    for (int i = 0; i < nexp; i++) {
        /* a small horizontal offset per experiment keeps the error bars apart */
        double off = (i - (nexp - 1) / 2.0) * shift;
        for (int w = 0; w < o->nsweep; w++)
            if (isfinite(mean[i][w]))
                sb_printf(&d, "%.9g %.9g %.9g\n", xv[w] + off, mean[i][w],
                          isfinite(sd[i][w]) ? sd[i][w] : 0);
        sb_printf(&d, "\n\n");
    }
    gp_plot g;
    if (gp_begin(&g, "tessera compare", png, 900, 560)) { free(d.s); return -1; }
    if (gp_data(&g, d.s ? d.s : "", dat, sizeof dat)) { free(d.s); gp_cleanup(&g); return -1; }
    free(d.s);
    sb_printf(&g.s, "set title ");
    gp_str(&g.s, title, 0);
    sb_printf(&g.s, "\nset xlabel ");
    gp_str(&g.s, xlabel, 0);
    sb_printf(&g.s, "\nset ylabel ");
    gp_str(&g.s, ylabel, 0);
    sb_printf(&g.s, "\nset grid\nset key below box\nset bmargin 7\nset xrange [%.9g:%.9g]\n"
              "set offsets 0, 0, graph 0.08, graph 0.08\n", lo - 0.08 * span, hi + 0.08 * span);
    /* tics at the swept values, labelled as written (xv holds positions when not numeric) */
    sb_printf(&g.s, "set xtics (");
    for (int w = 0; w < o->nsweep; w++) {
        sb_printf(&g.s, "%s", w ? ", " : "");
        gp_str(&g.s, o->sweep_val[w], 1);
        sb_printf(&g.s, " %.9g", xv[w]);
    }
    sb_printf(&g.s, ")\nplot ");
    for (int i = 0; i < nexp; i++) {
        sb_printf(&g.s, "%s'%s' index %d using 1:2:3 with yerrorlines lw 2 pt 7 ps 1.2 title ",
                  i ? ", " : "", dat, i);
        gp_str(&g.s, names[i], 0);
    }
    sb_printf(&g.s, "\n");
    return gp_finish(&g);
}

/* Gate usage of one experiment's mixture-of-experts layers (gates.csv, written by the layers'
 * report(); core/gates.c reads it): for every mixture (a layer's level) a gates x experts
 * heatmap with the values printed, one row of panels per mixture and one column per run
 * (ndir of them, one per sweep value). Each cell is a box of its own (boxxyerror), not a pixel of
 * `with image`, so any shape draws (gnuplot's image needs 2 x 2 cells: a one-task, two-expert
 * gate drew nothing), and a cell a gate does not reach (PLE's task gates skip the other tasks'
 * experts) stays grey. Returns 1 when no run has a gates.csv. */
typedef struct gate_key { char layer[TS_NAME_MAX]; int level; } gate_key;

static const ts_gate_mix *find_mix(const ts_gates *g, const gate_key *k)
{
    for (int m = 0; m < g->nmix; m++)
        if (!strcmp(g->mix[m].layer, k->layer) && g->mix[m].level == k->level) return &g->mix[m];
    return NULL;
}

/* One panel: the heatmap of mixture m (NULL: an empty panel that says what is missing). */
static int plot_gate_panel(gp_plot *gp, const ts_gate_mix *m, const char *title, double top)
{
    sbuf *s = &gp->s;
    int holes = 0;
    for (long i = 0; m && i < (long)m->ngate * m->nexp; i++) holes |= isnan(m->w[i]);
    sbuf full = {0};
    sb_printf(&full, "%s%s", title, holes ? " (grey: not one of the gate's experts)" : "");
    sb_printf(s, "set title ");
    gp_str(s, full.s, 0);
    free(full.s);
    sb_printf(s, "\n");
    if (!m) {   /* a blank panel under its title */
        sb_printf(s, "unset xtics\nunset ytics\nunset xlabel\nunset ylabel\nset border 0\n"
                  "set xrange [0:1]\nset yrange [0:1]\nplot -1 notitle\n"
                  "set border 31\nset xlabel 'expert'\nset ylabel 'gate'\n");
        return 0;
    }
    char dat[32];
    sbuf d = {0};
    int longnames = 0;
    for (int r = 0; r < m->ngate; r++)
        for (int k = 0; k < m->nexp; k++) {
            double w = m->w[(long)r * m->nexp + k];
            if (!isnan(w)) sb_printf(&d, "%d %d %.6f\n", k, r, w);
        }
    for (int k = 0; k < m->nexp; k++) longnames |= strlen(m->expert[k]) > 3;
    int rc = gp_data(gp, d.s ? d.s : "", dat, sizeof dat);
    free(d.s);
    if (rc) return rc;
    if (holes)   /* grey behind the cells: what shows through is a cell the gate does not reach */
        sb_printf(s, "set object 1 rectangle from graph 0, 0 to graph 1, 1 behind "
                  "fillcolor rgb '#d9d9d9' fillstyle solid 1.0 noborder\n");
    sb_printf(s, "set xrange [-0.5:%d.5]\nset yrange [%d.5:-0.5]\nset xtics (", m->nexp - 1,
              m->ngate - 1);
    for (int k = 0; k < m->nexp; k++) {
        sb_printf(s, "%s", k ? ", " : "");
        gp_str(s, m->expert[k], 1);
        sb_printf(s, " %d", k);
    }
    sb_printf(s, ") nomirror%s\nset ytics (", longnames ? " rotate by 30 right" : " norotate");
    for (int r = 0; r < m->ngate; r++) {
        sb_printf(s, "%s", r ? ", " : "");
        gp_str(s, m->gate[r], 1);
        sb_printf(s, " %d", r);
    }
    /* values printed in each cell, white on the dark ones */
    sb_printf(s, ") nomirror\nplot '%s' using 1:2:(0.5):(0.5):3 with boxxyerror fillstyle solid 1.0 "
              "noborder linecolor palette, '' using 1:2:(sprintf('%%.2f', $3)):"
              "($3 > %g ? 0xffffff : 0x000000) with labels textcolor rgb variable font 'sans,8'\n",
              dat, top / 2);
    if (holes) sb_printf(s, "unset object 1\n");
    return 0;
}

static int plot_gates(const char *png, const char *title, char dirs[][TS_PATH_MAX],
                      char subtitles[][128], int ndir)
{
    ts_gates *g = calloc((size_t)ndir, sizeof *g);
    gate_key *keys = NULL;
    int nkey = 0, any = 0, tallest = 1, widest = 1;
    if (!g) return -1;
    /* the mixtures of every run, in order of first appearance (a sweep may change them) */
    for (int r = 0; r < ndir; r++) {
        if (ts_gates_read(dirs[r], &g[r])) continue;
        any = 1;
        for (int m = 0; m < g[r].nmix; m++) {
            const ts_gate_mix *x = &g[r].mix[m];
            if (x->ngate > tallest) tallest = x->ngate;
            if (x->nexp > widest) widest = x->nexp;
            gate_key k = {"", x->level};
            snprintf(k.layer, sizeof k.layer, "%s", x->layer);
            int seen = 0;
            for (int j = 0; j < nkey && !seen; j++)
                seen = !strcmp(keys[j].layer, k.layer) && keys[j].level == k.level;
            if (seen) continue;
            gate_key *t = realloc(keys, (size_t)(nkey + 1) * sizeof *t);
            if (!t) { any = -1; break; }
            keys = t;
            keys[nkey++] = k;
        }
    }
    if (any != 1) {
        for (int r = 0; r < ndir; r++) ts_gates_free(&g[r]);
        free(g);
        free(keys);
        return any ? -1 : 1;
    }
    /* One colour scale for every panel, from 0 to the largest weight rounded up to 0.1: a
     * near-uniform gate (all 1/E) then reads pale, a specialised one dark. */
    double top = 0.1;
    for (int r = 0; r < ndir; r++)
        for (int m = 0; m < g[r].nmix; m++)
            for (long i = 0; i < (long)g[r].mix[m].ngate * g[r].mix[m].nexp; i++)
                if (g[r].mix[m].w[i] > top) top = g[r].mix[m].w[i];
    top = ceil(top * 10 - 1e-9) / 10;
    int pw = 200 + 45 * widest, ph = 130 + 50 * tallest;
    if (pw < (ndir > 1 ? 560 : 760)) pw = ndir > 1 ? 560 : 760;
    gp_plot gp;
    int rc = gp_begin(&gp, "tessera compare", png, pw * ndir, 40 + ph * nkey), begun = !rc;
    if (begun) {
        sbuf *s = &gp.s;
        sb_printf(s, "set multiplot layout %d,%d title ", nkey, ndir);
        gp_str(s, title, 0);
        sb_printf(s, "\nset xlabel 'expert'\nset ylabel 'gate'\n"
                  "set palette defined (0 'white', 0.5 '#6baed6', 1 '#08306b')\nset cbrange [0:%g]\n"
                  "set tics out\nunset key\n", top);
        for (int k = 0; k < nkey && !rc; k++)
            for (int r = 0; r < ndir && !rc; r++) {
                const ts_gate_mix *m = find_mix(&g[r], &keys[k]);
                char sub[512];
                int n = keys[k].layer[0] ? snprintf(sub, sizeof sub, "%s level %d, ", keys[k].layer,
                                                    keys[k].level) : 0;
                snprintf(sub + n, sizeof sub - n, "%s%s", subtitles[r],
                         m ? "" : g[r].nmix ? " (no such level)" : " (no gates.csv)");
                rc = plot_gate_panel(&gp, m, sub, top);
            }
        sb_printf(s, "unset multiplot\n");
    }
    for (int r = 0; r < ndir; r++) ts_gates_free(&g[r]);
    free(g);
    free(keys);
    if (rc) {
        if (begun) gp_cleanup(&gp);
        return rc;
    }
    return gp_finish(&gp);
}

/* Recall@K against K (test figures named recall@K): a line per experiment and task, mean ± std
 * over seeds, for sweep value sw. Returns 1 when no experiment reports recall@K. */
static int plot_recall(const char *png, const char *title, const cmp_opts *o, const cmp_exp *xs,
                       const int *members, int nm, agg *ag, int sw)
{
    sbuf d = {0};
    char dat[32];
    char lines[64][2 * TS_NAME_MAX + 8];
    int nl = 0, kmax = 0;
    for (int m = 0; m < nm && nl < 64; m++) {
        agg *a = &ag[members[m]];
        /* tasks with recall@K figures */
        char tasks[16][TS_NAME_MAX];
        int nt = 0;
        for (int j = 0; j < a->n; j++) {
            const char *key = a->s[j].key, *r = strstr(key, ".recall@");
            if (strncmp(key, "test.", 5) || !r) continue;
            char task[TS_NAME_MAX];
            snprintf(task, sizeof task, "%.*s", (int)(r - key - 5), key + 5);
            int seen = 0;
            for (int t = 0; t < nt; t++) seen |= !strcmp(tasks[t], task);
            if (!seen && nt < 16) snprintf(tasks[nt++], TS_NAME_MAX, "%s", task);
        }
        for (int t = 0; t < nt && nl < 64; t++) {
            /* points sorted by K */
            int ks[64], nk = 0;
            for (int j = 0; j < a->n; j++) {
                char pre[TS_NAME_MAX + 16];
                snprintf(pre, sizeof pre, "test.%s.recall@", tasks[t]);
                if (strncmp(a->s[j].key, pre, strlen(pre)) || nk == 64) continue;
                ks[nk++] = atoi(a->s[j].key + strlen(pre));
            }
            for (int i = 1; i < nk; i++)
                for (int j = i; j > 0 && ks[j - 1] > ks[j]; j--) { int tk = ks[j]; ks[j] = ks[j - 1]; ks[j - 1] = tk; }
            int wrote = 0;
            for (int i = 0; i < nk; i++) {
                char key[TS_NAME_MAX + 32];
                snprintf(key, sizeof key, "test.%s.recall@%d", tasks[t], ks[i]);
                series *se = find_series(a, key);
                double v[MAX_SEEDS], mean, sd;
                int c = 0;
                for (int r = 0; se && r < o->seeds; r++) if (isfinite(se->v[sw][r])) v[c++] = se->v[sw][r];
                if (!c) continue;
                ts_mean_std(v, c, &mean, &sd);
                sb_printf(&d, "%d %.9g %.9g\n", ks[i], mean, isfinite(sd) ? sd : 0);
                if (ks[i] > kmax) kmax = ks[i];
                wrote = 1;
            }
            if (!wrote) continue;
            sb_printf(&d, "\n\n");
            snprintf(lines[nl++], sizeof lines[0], "%s%s%s", xs[members[m]].name, nt > 1 ? " " : "",
                     nt > 1 ? tasks[t] : "");
        }
    }
    if (!nl) { free(d.s); return 1; }
    gp_plot g;
    if (gp_begin(&g, "tessera compare", png, 900, 560)) { free(d.s); return -1; }
    if (gp_data(&g, d.s, dat, sizeof dat)) { free(d.s); gp_cleanup(&g); return -1; }
    free(d.s);
    sb_printf(&g.s, "set title ");
    gp_str(&g.s, title, 0);
    sb_printf(&g.s, "\nset xlabel 'K (items retrieved per query)'\n"
              "set ylabel 'Recall@K (fraction of held-out targets in the top K)'\nset grid\n"
              "set key below box\nset bmargin 7\nset xrange [0:%g]\nset yrange [0:*]\nplot ",
              kmax * 1.05);
    for (int i = 0; i < nl; i++) {
        sb_printf(&g.s, "%s'%s' index %d using 1:2:3 with yerrorlines lw 2 pt 7 title ",
                  i ? ", " : "", dat, i);
        gp_str(&g.s, lines[i], 0);
    }
    sb_printf(&g.s, "\n");
    return gp_finish(&g);
}

/* ---- compare ------------------------------------------------------------------------------- */
int ts_cmd_compare(int argc, char **argv)
{
    cmp_opts o;
    memset(&o, 0, sizeof o);
    static cmp_exp xs[MAX_EXP];
    int nx = 0;
    char suite_name[TS_NAME_MAX] = "";
    int rc = parse_args(argc, argv, &o, xs, &nx, suite_name, sizeof suite_name);
    if (!rc && !nx) {
        fprintf(stderr, "usage: tessera compare EXP.ini|SUITE.ini ... [--seeds N] [--jobs N] "
                "[--quick] [--sweep SECTION.KEY=V1,V2] [--out DIR] [SECTION.KEY=VALUE ...] "
                "(tessera compare --help)\n");
        rc = 2;
    }
    if (rc) { cmp_free(&o, xs, nx); return rc; }
    if (!o.out[0]) snprintf(o.out, sizeof o.out, "results/compare-%s%s", nx == 1 ? xs[0].name : suite_name,
                            o.quick ? "-quick" : "");
    ts_err e;
    if (ts_mkdirs(o.out, &e)) { fprintf(stderr, "tessera: %s\n", e.msg); cmp_free(&o, xs, nx); return 1; }
    int nsw = o.nsweep ? o.nsweep : 1, stopped = 0;
    unsigned char *ok = calloc((size_t)(nx * nsw * o.seeds), 1);
    int failed = ok ? run_all(&o, xs, nx, ok, &stopped) : -1;
    if (failed < 0 || stopped) {   /* no report from half a comparison */
        free(ok);
        cmp_free(&o, xs, nx);
        return stopped ? 128 + stopped : 1;
    }

    /* Aggregate the runs that finished now or were reused: a failed run's folder may still hold
     * the figures of an earlier configuration. */
    agg *ag = calloc((size_t)nx, sizeof *ag);
    for (int i = 0; i < nx; i++) {
        ag[i].s = calloc(MAX_KEYS, sizeof(series));
        for (int sw = 0; sw < nsw; sw++)
            for (int s = 1; s <= o.seeds; s++) {
                if (!ok[(i * nsw + sw) * o.seeds + s - 1]) continue;
                char dir[TS_PATH_MAX];
                run_dir(dir, sizeof dir, &o, &xs[i], s, sw);
                read_metrics(dir, &ag[i], sw, s);
            }
    }
    free(ok);
    sbuf md = {0}, csv = {0}, sig = {0};
    sb_printf(&md, "# Comparison: %s\n\n", md_text(suite_name));
    sb_printf(&md, "Command: `tessera compare");
    for (int i = 0; i < argc; i++) sb_printf(&md, " %s", argv[i]);
    sb_printf(&md, "`  \ntessera %s, %d seed%s per experiment%s. Each figure is the mean ± the "
              "sample standard deviation over seeds (n = number of runs that finished).\n\n",
              PACKAGE_VERSION, o.seeds, o.seeds > 1 ? "s" : "", o.quick ? ", **quick mode** "
              "(fewer epochs or less data: figures are below the full runs')" : "");
    sb_printf(&csv, "experiment,data,%s%smetric,n,mean,std,values\n", o.nsweep ? o.sweep_key : "",
              o.nsweep ? "," : "");
    sb_printf(&sig, "data,metric,a,b,n,mean_diff,t,p\n");
    int have_gp = have_gnuplot();
    if (!have_gp) sb_printf(&md, "_gnuplot was not found: no plots (apt-get install gnuplot-nox)._\n\n");
    char plots[TS_PATH_MAX + 16];
    snprintf(plots, sizeof plots, "%s/plots", o.out);
    ts_mkdirs(plots, &e);

    /* Groups: experiments on the same data. */
    int gdone[MAX_EXP] = {0}, gno = 0;
    for (int g = 0; g < nx; g++) {
        if (gdone[g]) continue;
        int members[MAX_EXP], nm = 0;
        for (int i = g; i < nx; i++)
            if (!gdone[i] && !strcmp(xs[i].group, xs[g].group)) { members[nm++] = i; gdone[i] = 1; }
        gno++;
        sb_printf(&md, "## Data: %s\n\n", md_text(xs[g].group));
        /* What a reader cut for the neural fields (train.data.*, from its aux "report"): the
         * lexical baselines read the whole text, so the report says when they saw more. */
        for (int m = 0; m < nm; m++) {
            agg *am = &ag[members[m]];
            series *qc = find_series(am, "train.data.queries_cut"),
                   *dc = find_series(am, "train.data.docs_cut"),
                   *qw = find_series(am, "train.data.max_words"),
                   *dw = find_series(am, "train.data.doc_max_words");
            double q = qc ? qc->v[0][0] : 0, d = dc ? dc->v[0][0] : 0;
            if (!(q > 0 || d > 0) || !qw || !dw) continue;
            sb_printf(&md, "_%s: the neural fields keep %.0f words of a query and %.0f of a "
                      "document (%.0f queries and %.0f documents were longer and were cut); the "
                      "lexical heads (BM25) read the whole text._\n\n", md_text(xs[members[m]].name),
                      qw->v[0][0], dw->v[0][0], q, d);
        }
        /* columns: reportable keys present in any member */
        char keys[MAX_KEYS][160];
        int nk = 0;
        for (int m = 0; m < nm; m++)
            for (int k = 0; k < ag[members[m]].n; k++) {
                const char *key = ag[members[m]].s[k].key;
                if (!reportable(key)) continue;
                int seen = 0;
                for (int j = 0; j < nk; j++) seen |= !strcmp(keys[j], key);
                if (!seen && nk < MAX_KEYS) snprintf(keys[nk++], 160, "%s", key);
            }
        for (int sw = 0; sw < nsw; sw++) {
            if (o.nsweep) sb_printf(&md, "### %s = %s\n\n", o.sweep_key, md_text(o.sweep_val[sw]));
            /* One row per figure, one column per experiment: reads down a column, compares
             * across a row. */
            sb_printf(&md, "| figure |");
            for (int m = 0; m < nm; m++) sb_printf(&md, " %s |", md_text(xs[members[m]].name));
            sb_printf(&md, "\n|---|");
            for (int m = 0; m < nm; m++) sb_printf(&md, "---|");
            sb_printf(&md, "\n| runs finished |");
            for (int m = 0; m < nm; m++) {
                int nruns = 0;
                series *any = ag[members[m]].n ? &ag[members[m]].s[0] : NULL;
                for (int r = 0; any && r < o.seeds; r++) if (isfinite(any->v[sw][r])) nruns++;
                sb_printf(&md, " %d |", nruns);
            }
            sb_printf(&md, "\n");
            for (int k = 0; k < nk; k++) {
                sb_printf(&md, "| %s |", keys[k] + (strncmp(keys[k], "test.", 5) ? 0 : 5));
                int whole = strstr(keys[k], "examples_per_sec") != NULL;
                for (int m = 0; m < nm; m++) {
                    int i = members[m];
                    series *s = NULL;
                    for (int j = 0; j < ag[i].n; j++) if (!strcmp(ag[i].s[j].key, keys[k])) s = &ag[i].s[j];
                    double v[MAX_SEEDS], mean, sd;
                    int n = 0;
                    for (int r = 0; s && r < o.seeds; r++) if (isfinite(s->v[sw][r])) v[n++] = s->v[sw][r];
                    if (!n) { sb_printf(&md, " – |"); continue; }
                    ts_mean_std(v, n, &mean, &sd);
                    if (n > 1) sb_printf(&md, whole ? " %.0f ± %.0f |" : " %.4f ± %.4f |", mean, sd);
                    else sb_printf(&md, whole ? " %.0f |" : " %.4f |", mean);
                    sb_printf(&csv, "%s,%s,%s%s%s,%d,%.9g,%.9g,", csv_field(xs[i].name),
                              csv_field(xs[g].group), o.nsweep ? csv_field(o.sweep_val[sw]) : "",
                              o.nsweep ? "," : "", keys[k], n, mean, sd);
                    for (int r = 0; r < n; r++) sb_printf(&csv, "%s%.9g", r ? " " : "", v[r]);
                    sb_printf(&csv, "\n");
                }
                sb_printf(&md, "\n");
            }
            sb_printf(&md, "\n");
            /* Paired t-tests between members, seed by seed. */
            if (nm > 1 && o.seeds > 1) {
                sb_printf(&md, "Paired t-test over seeds (two-sided; a − b):\n\n| metric | a | b | mean a − b | t | p |\n|---|---|---|---|---|---|\n");
                for (int k = 0; k < nk; k++) {
                    if (strncmp(keys[k], "test.", 5) || !headline(keys[k])) continue;
                    for (int a = 0; a < nm; a++)
                        for (int b = a + 1; b < nm; b++) {
                            series *sa = NULL, *sb = NULL;
                            for (int j = 0; j < ag[members[a]].n; j++) if (!strcmp(ag[members[a]].s[j].key, keys[k])) sa = &ag[members[a]].s[j];
                            for (int j = 0; j < ag[members[b]].n; j++) if (!strcmp(ag[members[b]].s[j].key, keys[k])) sb = &ag[members[b]].s[j];
                            if (!sa || !sb) continue;
                            double va[MAX_SEEDS], vb[MAX_SEEDS], t, p, md_, sd_;
                            int n = 0;
                            for (int r = 0; r < o.seeds; r++)
                                if (isfinite(sa->v[sw][r]) && isfinite(sb->v[sw][r])) { va[n] = sa->v[sw][r]; vb[n] = sb->v[sw][r]; n++; }
                            if (ts_paired_t(va, vb, n, &t, &p)) continue;
                            double d[MAX_SEEDS];
                            for (int r = 0; r < n; r++) d[r] = va[r] - vb[r];
                            ts_mean_std(d, n, &md_, &sd_);
                            if (md_ == 0 && sd_ == 0) continue;   /* the same figure (a shared baseline) */
                            sb_printf(&md, "| %s | %s | %s | %+.4f | %.2f | %.3g%s |\n", keys[k] + 5,
                                      md_text(xs[members[a]].name), md_text(xs[members[b]].name), md_,
                                      t, p, p < 0.05 ? " *" : "");
                            sb_printf(&sig, "%s,%s,%s,%s,%d,%.9g,%.6g,%.6g\n", csv_field(xs[g].group),
                                      keys[k], csv_field(xs[members[a]].name),
                                      csv_field(xs[members[b]].name), n, md_, t, p);
                        }
                }
                sb_printf(&md, "\n(* p < 0.05; with few seeds the test has little power: read the differences with their spread.)\n\n");
            } else if (nm > 1) {
                sb_printf(&md, "_One seed: no significance test (run with --seeds 3 or more)._\n\n");
            }
        }
        /* Per-seed wins: on how many seeds experiment a beats b, figure by figure. */
        if (nm > 1 && o.seeds > 1) {
            sb_printf(&md, "### Per-seed comparison\n\nSeeds on which a beats b (the same seed%s; "
                      "lower is better for errors and losses, higher for the rest):\n\n"
                      "| metric | a | b |", o.nsweep ? " and sweep value" : "");
            for (int sw = 0; sw < nsw; sw++) {
                if (o.nsweep) sb_printf(&md, " %s = %s |", o.sweep_key, md_text(o.sweep_val[sw]));
                else sb_printf(&md, " a wins |");
            }
            sb_printf(&md, "\n|---|---|---|");
            for (int sw = 0; sw < nsw; sw++) sb_printf(&md, "---|");
            sb_printf(&md, "\n");
            for (int k = 0; k < nk; k++) {
                if (!quality_metric(keys[k]) || !headline(keys[k])) continue;
                int low = lower_better(keys[k]);
                for (int a = 0; a < nm; a++)
                    for (int b = a + 1; b < nm; b++) {
                        series *sa = find_series(&ag[members[a]], keys[k]),
                               *sb = find_series(&ag[members[b]], keys[k]);
                        if (!sa || !sb) continue;
                        int same = 1;
                        for (int sw = 0; sw < nsw; sw++)
                            for (int r = 0; r < o.seeds; r++)
                                if (isfinite(sa->v[sw][r]) && sa->v[sw][r] != sb->v[sw][r]) same = 0;
                        if (same) continue;   /* a shared baseline: nothing to compare */
                        sb_printf(&md, "| %s | %s | %s |", keys[k] + 5, md_text(xs[members[a]].name),
                                  md_text(xs[members[b]].name));
                        for (int sw = 0; sw < nsw; sw++) {
                            int wins = 0, n = 0;
                            for (int r = 0; r < o.seeds; r++) {
                                double va = sa->v[sw][r], vb = sb->v[sw][r];
                                if (!isfinite(va) || !isfinite(vb)) continue;
                                n++;
                                wins += low ? va < vb : va > vb;
                            }
                            if (n) sb_printf(&md, " %d/%d |", wins, n);
                            else sb_printf(&md, " – |");
                        }
                        sb_printf(&md, "\n");
                    }
            }
            sb_printf(&md, "\n");
        }
        if (!have_gp) continue;
        /* Plots: loss curves (first seed of each), bars for each test metric. */
        char *dirs[MAX_EXP], *labels[MAX_EXP];
        char dirbuf[MAX_EXP][TS_PATH_MAX];
        int nd = 0;
        for (int m = 0; m < nm; m++) {
            run_dir(dirbuf[nd], TS_PATH_MAX, &o, &xs[members[m]], 1, 0);
            char p[TS_PATH_MAX + 16];
            snprintf(p, sizeof p, "%s/train.csv", dirbuf[nd]);
            if (!file_exists(p)) continue;
            dirs[nd] = dirbuf[nd];
            labels[nd] = xs[members[m]].name;
            nd++;
        }
        char png[TS_PATH_MAX + 64], title[512];
        if (nd) {
            snprintf(png, sizeof png, "%s/loss_%d.png", plots, gno);
            snprintf(title, sizeof title, "loss curves on %s (seed 1%s%s%s%s)", xs[g].group,
                     o.nsweep ? ", " : "", o.nsweep ? o.sweep_key : "", o.nsweep ? " = " : "",
                     o.nsweep ? o.sweep_val[0] : "");
            if (!plot_curves("tessera compare", dirs, labels, nd, png, title))
                sb_printf(&md, "![loss curves](plots/loss_%d.png)\n\n", gno);
        }
        for (int k = 0; k < nk && !o.nsweep; k++) {
            if (!headline(keys[k])) continue;
            char names[MAX_EXP][TS_NAME_MAX];
            double mean[MAX_EXP], sd[MAX_EXP];
            int n = 0;
            for (int m = 0; m < nm; m++) {
                series *s = NULL;
                for (int j = 0; j < ag[members[m]].n; j++) if (!strcmp(ag[members[m]].s[j].key, keys[k])) s = &ag[members[m]].s[j];
                double v[MAX_SEEDS];
                int c = 0;
                for (int r = 0; s && r < o.seeds; r++) if (isfinite(s->v[0][r])) v[c++] = s->v[0][r];
                if (!c) continue;
                snprintf(names[n], TS_NAME_MAX, "%s", xs[members[m]].name);
                ts_mean_std(v, c, &mean[n], &sd[n]);
                n++;
            }
            if (!n) continue;
            char fname[200], part[160];
            file_part(part, sizeof part, keys[k]);
            snprintf(fname, sizeof fname, "bar_%d_%s.png", gno, part);
            snprintf(png, sizeof png, "%s/%s", plots, fname);
            snprintf(title, sizeof title, "%s on %s (mean ± std over %d seed%s)", keys[k], xs[g].group,
                     o.seeds, o.seeds > 1 ? "s" : "");
            const char *unit = strstr(keys[k], "examples_per_sec") ? "examples per second" : keys[k];
            if (!plot_bars(png, title, unit, names, mean, sd, n))
                sb_printf(&md, "![%s](plots/%s)\n\n", keys[k], fname);
        }
        /* A sweep: each test figure against the swept value, a line per experiment. */
        for (int k = 0; k < nk && o.nsweep; k++) {
            if (!quality_metric(keys[k])) continue;
            static char names[MAX_EXP][TS_NAME_MAX];
            static double mean[MAX_EXP][MAX_SWEEP], sd[MAX_EXP][MAX_SWEEP];
            int n = 0;
            for (int m = 0; m < nm; m++) {
                series *se = find_series(&ag[members[m]], keys[k]);
                if (!se) continue;
                snprintf(names[n], TS_NAME_MAX, "%s", xs[members[m]].name);
                for (int sw = 0; sw < nsw; sw++) {
                    double v[MAX_SEEDS];
                    int c = 0;
                    for (int r = 0; r < o.seeds; r++) if (isfinite(se->v[sw][r])) v[c++] = se->v[sw][r];
                    mean[n][sw] = sd[n][sw] = NAN;
                    if (c) ts_mean_std(v, c, &mean[n][sw], &sd[n][sw]);
                }
                n++;
            }
            if (!n) continue;
            char fname[200], ylabel[256], part[160];
            file_part(part, sizeof part, keys[k]);
            snprintf(fname, sizeof fname, "sweep_%d_%s.png", gno, part);
            snprintf(png, sizeof png, "%s/%s", plots, fname);
            snprintf(title, sizeof title, "%s against %s, data: %s (mean ± std over %d seed%s)",
                     keys[k] + 5, o.sweep_key, xs[g].group, o.seeds, o.seeds > 1 ? "s" : "");
            char xlabel[200];
            snprintf(xlabel, sizeof xlabel, "%s (the swept value)", o.sweep_key);
            if (!plot_sweep(png, title, xlabel, metric_axis(keys[k], ylabel, sizeof ylabel),
                            &o, names, mean, sd, n))
                sb_printf(&md, "![%s against %s](plots/%s)\n\n", keys[k], o.sweep_key, fname);
        }
        /* Gate usage of each mixture-of-experts run (seed 1; one panel per sweep value). */
        for (int m = 0; m < nm; m++) {
            static char gdirs[MAX_SWEEP][TS_PATH_MAX], subs[MAX_SWEEP][128];
            for (int sw = 0; sw < nsw; sw++) {
                run_dir(gdirs[sw], TS_PATH_MAX, &o, &xs[members[m]], 1, sw);
                if (o.nsweep) snprintf(subs[sw], sizeof subs[sw], "%s = %s", o.sweep_key, o.sweep_val[sw]);
                else snprintf(subs[sw], sizeof subs[sw], "seed 1");
            }
            char fname[200], part[160];
            file_part(part, sizeof part, xs[members[m]].name);
            snprintf(fname, sizeof fname, "gates_%d_%s.png", gno, part);
            snprintf(png, sizeof png, "%s/%s", plots, fname);
            snprintf(title, sizeof title, "%s: mean gate weight per gate and expert on the test split "
                     "(uniform gate = 1 / its experts)", xs[members[m]].name);
            if (!plot_gates(png, title, gdirs, subs, nsw))
                sb_printf(&md, "![gate usage of %s](plots/%s)\n\n", md_text(xs[members[m]].name), fname);
        }
        /* Recall@K against K, for experiments that report recall@K. */
        for (int sw = 0; sw < nsw; sw++) {
            char fname[200];
            if (o.nsweep) snprintf(fname, sizeof fname, "recall_%d_%d.png", gno, sw + 1);
            else snprintf(fname, sizeof fname, "recall_%d.png", gno);
            snprintf(png, sizeof png, "%s/%s", plots, fname);
            snprintf(title, sizeof title, "Recall@K, data: %s (mean ± std over %d seed%s)",
                     xs[g].group, o.seeds, o.seeds > 1 ? "s" : "");
            if (o.nsweep) {
                size_t l = strlen(title);
                snprintf(title + l, sizeof title - l, " at %s = %s", o.sweep_key, o.sweep_val[sw]);
            }
            if (!plot_recall(png, title, &o, xs, members, nm, ag, sw))
                sb_printf(&md, "![Recall@K](plots/%s)\n\n", fname);
        }
    }
    char path[TS_PATH_MAX + 32];
    snprintf(path, sizeof path, "%s/report.md", o.out);
    write_file(path, md.s);
    snprintf(path, sizeof path, "%s/summary.csv", o.out);
    write_file(path, csv.s);
    snprintf(path, sizeof path, "%s/significance.csv", o.out);
    write_file(path, sig.s);
    free(md.s); free(csv.s); free(sig.s);
    for (int i = 0; i < nx; i++) free(ag[i].s);
    free(ag);
    if (failed) fprintf(stderr, "tessera compare: %d run%s failed (see %s/logs); the report "
                        "covers the runs that finished\n", failed, failed > 1 ? "s" : "", o.out);
    printf("%s/report.md\n", o.out);
    cmp_free(&o, xs, nx);
    return failed ? 1 : 0;
}
