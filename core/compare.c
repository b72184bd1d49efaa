/* compare.c — `tessera compare`: run experiments over seeds (and an
 * optional sweep of one key) in parallel processes, each started as `tessera run --if-changed`
 * so a finished run of the same configuration is reused and any other one is run or resumed;
 * then hand the runs that finished to the report (core/report.c: report.md, summary.csv,
 * significance.csv, plots).
 * It is part of the program, not the library: it prints, forks and forwards signals to its runs.
 * It never trains anything itself, and writes no report or plot itself (report.c, plots.c). */
#include "config.h"
#include "internal.h"
#include "report.h"

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

/* The report's title: the `name =` of each suite given on the command line (its file's name when
 * it has none) and the name of each experiment given there, joined by ", "; and the suites'
 * descriptions. */
static char cmp_title[1024], cmp_description[2048];

static void add_title(const char *title, const char *description)
{
    size_t n = strlen(cmp_title);
    snprintf(cmp_title + n, sizeof cmp_title - n, "%s%s", n ? ", " : "", title);
    n = strlen(cmp_description);
    if (description && *description)
        snprintf(cmp_description + n, sizeof cmp_description - n, "%s%s", n ? " " : "", description);
}

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
        if (!depth) {
            const char *base = strrchr(path, '/'), *title = ts_cfg_str(s, "name");
            char file[TS_NAME_MAX];
            base = base ? base + 1 : path;
            snprintf(file, sizeof file, "%.*s", (int)strcspn(base, "."), base);
            add_title(title && *title ? title : file, ts_cfg_str(s, "description"));
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
    if (!depth) add_title(x->name, NULL);
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

/* ---- the report ---------------------------------------------------------------------------- */
/* Hands the runs that finished now or were reused (ok) to the report (core/report.c); a failed
 * run's folder may still hold the figures of an earlier configuration, so it is left out. */
static int write_report(const cmp_opts *o, const cmp_exp *xs, int nx, const unsigned char *ok,
                        int argc, char **argv, const char *suite_name, double started, int failed)
{
    int nsw = o->nsweep ? o->nsweep : 1, nrun = nx * nsw * o->seeds, rc = -1;
    ts_report_exp *exp = calloc((size_t)nx, sizeof *exp);
    char **dirs = calloc((size_t)nrun, sizeof *dirs);
    int oom = !exp || !dirs;
    for (int i = 0; !oom && i < nx; i++) exp[i] = (ts_report_exp){xs[i].name, xs[i].path, xs[i].group};
    for (int i = 0, k = 0; !oom && i < nx; i++)   /* k = (i * nsw + sw) * seeds + s - 1 */
        for (int sw = 0; sw < nsw; sw++)
            for (int s = 1; s <= o->seeds; s++, k++) {
                char dir[TS_PATH_MAX];
                if (ok[k] && !run_dir(dir, sizeof dir, o, &xs[i], s, sw) && !(dirs[k] = strdup(dir)))
                    oom = 1;
            }
    if (!oom) {
        ts_report_in in = {
            .out = o->out, .title = cmp_title[0] ? cmp_title : suite_name,
            .description = cmp_description, .argc = argc, .argv = argv, .seeds = o->seeds,
            .quick = o->quick, .sweep_key = o->sweep_key, .sweep_val = o->sweep_val,
            .nsweep = o->nsweep, .exp = exp, .nexp = nx, .run_dir = dirs, .started = started,
            .failed = failed};
        rc = ts_report_write(&in);
    } else {
        fprintf(stderr, "tessera compare: out of memory\n");
    }
    for (int k = 0; dirs && k < nrun; k++) free(dirs[k]);
    free(dirs);
    free(exp);
    return rc;
}

/* ---- compare ------------------------------------------------------------------------------- */
int ts_cmd_compare(int argc, char **argv)
{
    double started = ts_wall_clock();   /* the report says how long the comparison took */
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

    rc = write_report(&o, xs, nx, ok, argc, argv, suite_name, started, failed);
    free(ok);
    if (failed) fprintf(stderr, "tessera compare: %d run%s failed (see %s/logs); the report "
                        "covers the runs that finished\n", failed, failed > 1 ? "s" : "", o.out);
    if (!rc) printf("%s/report.md\n", o.out);
    cmp_free(&o, xs, nx);
    return failed || rc ? 1 : 0;
}
