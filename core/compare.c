/* compare.c — `tessera compare`: run experiments over seeds (and an
 * optional sweep of one key) in parallel processes, each started as `tessera run --if-changed`
 * so a finished run of the same configuration is reused and any other one is run or resumed;
 * then hand the runs that finished to the report (core/report.c: report.md, summary.csv,
 * significance.csv, plots).
 * It is part of the program, not the library: it prints, and runs its runs through the process
 * runner it shares with `tessera tune` (core/runner.c: forks, forwards signals, shows progress).
 * It never trains anything itself, and writes no report or plot itself (report.c, plots.c). */
#include "config.h"
#include "internal.h"
#include "report.h"
#include "runner.h"

#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdint.h>
#include <math.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <time.h>
#include <unistd.h>

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

static void free_argv(char **v)
{
    for (int i = 0; v && v[i]; i++) free(v[i]);
    free(v);
}

/* `tessera run EXP experiment.seed=S train.threads=T [quick] [sweep] [overrides] --results DIR
 * --if-changed` (malloc'ed strings, NULL-terminated), or NULL when out of memory. */
static char **run_argv(const cmp_opts *o, const cmp_exp *x, int seed, int sw, int threads,
                       const char *dir)
{
    char *quick = str_printf("%s", o->quick ? x->quick : "");
    int nq = 0;
    for (const char *c = quick ? quick : ""; *c; c++) nq += *c == ' ' || *c == '\t';
    char **argv = calloc((size_t)(nq + o->nover + 16), sizeof *argv);
    if (!quick || !argv) { free(quick); free(argv); return NULL; }
    int a = 0;
    argv[a++] = str_printf("tessera");
    argv[a++] = str_printf("run");
    argv[a++] = str_printf("%s", x->path);
    argv[a++] = str_printf("experiment.seed=%d", seed);
    argv[a++] = str_printf("train.threads=%d", threads);
    /* --quick: the experiment's own quick overrides (split on white space and commas between
     * assignments), then the sweep and the command line's overrides, which win. */
    char *save = NULL;
    for (char *t = strtok_r(quick, " \t", &save); t; t = strtok_r(NULL, " \t", &save)) {
        size_t n = strlen(t);
        while (n && t[n - 1] == ',') t[--n] = 0;
        if (n) argv[a++] = str_printf("%s", t);
    }
    if (o->nsweep) argv[a++] = str_printf("%s=%s", o->sweep_key, o->sweep_val[sw]);
    for (int i = 0; i < o->nover; i++) argv[a++] = str_printf("%s", o->over[i]);
    argv[a++] = str_printf("--results");
    argv[a++] = str_printf("%s", dir);
    /* the run decides: unchanged and finished -> left as it is; half done -> resumed; else run */
    argv[a++] = str_printf("--if-changed");
    free(quick);
    int bad = 0;
    for (int i = 0; i < a; i++) bad |= !argv[i];
    if (bad) {
        for (int i = 0; i < a; i++) free(argv[i]);
        free(argv);
        return NULL;
    }
    return argv;
}

/* Runs every (experiment, sweep value, seed), --jobs at a time, through the process runner
 * (core/runner.c: SIGINT, SIGTERM and SIGHUP stop a comparison at its runs' checkpoints, SIGTSTP
 * pauses it, a live line with the ETA on a terminal). ok[(exp * nsweep + sweep) * seeds +
 * seed - 1] is set to 1 for each run that finished now or was reused, so the report reads no
 * figures a failed run left from an earlier configuration. Returns the number of runs that
 * failed; -1 when nothing could be started. *stopped is the stop signal when SIGINT, SIGTERM or
 * SIGHUP interrupted the comparison (its runs then stopped, and the caller exits 128 + it). */
static int run_all(const cmp_opts *o, const cmp_exp *xs, int nx, unsigned char *ok, int *stopped)
{
    int nsw = o->nsweep ? o->nsweep : 1;
    int total = nx * o->seeds * nsw;
    *stopped = 0;
    ts_job *jobs = calloc((size_t)total, sizeof *jobs);
    int *which = calloc((size_t)total * 3, sizeof *which);   /* exp, sweep, seed of each */
    if (!jobs || !which) {
        free(jobs);
        free(which);
        fprintf(stderr, "tessera compare: out of memory\n");
        return -1;
    }
    long ncpu = sysconf(_SC_NPROCESSORS_ONLN);
    int jobsn = o->jobs < 1 ? 1 : o->jobs;
    int threads = (int)(ncpu / jobsn) > 0 ? (int)(ncpu / jobsn) : 1;
    size_t outlen = strlen(o->out);
    int nj = 0, rc = 0;
    for (int i = 0; i < nx && !rc; i++)
        for (int sw = 0; sw < nsw && !rc; sw++)
            for (int s = 1; s <= o->seeds && !rc; s++) {
                ts_job *j = &jobs[nj];
                which[3 * nj] = i; which[3 * nj + 1] = sw; which[3 * nj + 2] = s;
                nj++;
                j->group = i;
                if (run_dir(j->dir, sizeof j->dir, o, &xs[i], s, sw) || strlen(j->dir) + 32 >= TS_PATH_MAX) {
                    fprintf(stderr, "tessera compare: the run folders below %s would be longer than "
                            "%d bytes; use a shorter --out\n", o->out, TS_PATH_MAX - 32);
                    rc = -1;
                    break;
                }
                /* OUT/runs/REST -> OUT/logs/REST.log */
                snprintf(j->log, sizeof j->log, "%s/logs/%s.log", o->out,
                         j->dir + outlen + strlen("/runs/"));
                j->label = str_printf("%s seed %d%s%s%s%s", xs[i].name, s, o->nsweep ? " " : "",
                                      o->nsweep ? o->sweep_key : "", o->nsweep ? "=" : "",
                                      o->nsweep ? o->sweep_val[sw] : "");
                j->argv = run_argv(o, &xs[i], s, sw, threads, j->dir);
                if (!j->label || !j->argv) { fprintf(stderr, "tessera compare: out of memory\n"); rc = -1; }
            }
    int failed = -1;
    if (!rc) {
        char th[16];
        snprintf(th, sizeof th, "%d", threads);
        setenv("OPENBLAS_NUM_THREADS", th, 1);   /* inherited by every run */
        setenv("TESSERA_MPI", "0", 1);           /* a compare under mpirun: its runs are single processes */
        setenv("TESSERA_PROGRESS", "0", 0);      /* no progress lines in the runs' logs, unless asked */
        fprintf(stderr, "tessera compare: %d runs (%d experiments x %d seeds%s), %d at a time with %d "
                "thread%s each; a finished run whose configuration, data and plugins are "
                "unchanged is reused\n", total, nx, o->seeds, o->nsweep ? " x sweep" : "", jobsn,
                threads, threads > 1 ? "s" : "");
        ts_runner r = {"tessera compare", jobsn, 1, NULL, NULL};
        ts_run_counts c;
        failed = ts_runner_run(&r, jobs, nj, &c, stopped);
        for (int i = 0; failed >= 0 && i < nj; i++)
            if (jobs[i].state == TS_JOB_RAN || jobs[i].state == TS_JOB_REUSED)
                ok[(which[3 * i] * nsw + which[3 * i + 1]) * o->seeds + which[3 * i + 2] - 1] = 1;
        if (failed >= 0 && *stopped) {
            fprintf(stderr, "tessera compare: interrupted by %s:", ts_runner_signal_name(*stopped));
            const char *sep = " ";
            if (c.stopped) {
                fprintf(stderr, "%s%d run%s stopped at a checkpoint", sep, c.stopped,
                        c.stopped == 1 ? "" : "s");
                sep = ", ";
            }
            if (c.killed) {
                fprintf(stderr, "%s%d run%s killed by it (resuming from %s last checkpoint, if any)",
                        sep, c.killed, c.killed == 1 ? "" : "s", c.killed == 1 ? "its" : "their");
                sep = ", ";
            }
            if (c.reused + c.ran) { fprintf(stderr, "%s%d finished", sep, c.reused + c.ran); sep = ", "; }
            if (c.failed) { fprintf(stderr, "%s%d failed", sep, c.failed); sep = ", "; }
            if (nj - c.started) fprintf(stderr, "%s%d not started", sep, nj - c.started);
            fprintf(stderr, "; run the same command again to continue\n");
        } else if (failed >= 0) {
            fprintf(stderr, "tessera compare: %d reused, %d run, %d failed\n", c.reused, c.ran,
                    c.failed);
        }
    }
    for (int i = 0; i < nj; i++) {
        free((char *)jobs[i].label);
        free_argv(jobs[i].argv);
    }
    free(jobs);
    free(which);
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
