/* tune.c — `tessera tune`: a hyper-parameter search that chooses on the validation split only.
 * Trials (a grid of lists, or --random N draws of lists, ranges and log-uniform ranges) each run
 * once per trial seed as `tessera run EXP.ini KEY=VALUE ... --results OUT/trials/NNN/seed-S
 * --if-changed`, --jobs at a time, so an interrupted search run again reuses every finished run
 * and resumes the others; the experiment as given runs as one more trial ("default"). The trial
 * with the best (mean) validation figure is written out as OUT/selected.ini, a complete
 * experiment, and then it and the default are run over --seeds fresh seeds (none a trial's) and
 * compared on the test split (paired t-test, stats.c). The search never reads a trial's test
 * figure: every figure it chooses by is read through choice_figure() below. docs/tuning.md says
 * which split chooses what, and the bias of choosing on the split that also chose each trial's
 * epoch (--select-on valid, the default) against --select-on valid-last and --select-on holdout
 * (a selection split held out of the training rows, [data] select_fraction: core/holdout.c).
 * Part of the program, not the library: it prints, and runs its trials through the process runner
 * it shares with `tessera compare` (core/runner.c: process groups, PDEATHSIG, forwarded stops). */
#define _GNU_SOURCE                /* realpath */
#include "config.h"
#include "internal.h"
#include "tune.h"
#include "runner.h"

#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <signal.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <unistd.h>
#ifdef __linux__
#include <sys/prctl.h>
#endif

#define TUNE_MAX_SEEDS 32

/* ==== the pure pieces (tune.h) ================================================================ */

/* Keys a search may not vary: they change what the figures are measured on, not the model. */
static const char *not_searchable(const char *key)
{
    static const struct { const char *key, *why; } no[] = {
        {"experiment.seed", "the seed is not a hyper-parameter: every trial runs with the "
                            "experiment's seed (--trial-seeds N: N seeds from it), and --seeds N "
                            "sets the seeds of the final comparison"},
        {"experiment.name", "tune names the selected experiment itself (NAME_tuned)"},
        {"experiment.source", "it says where the experiment file is"},
        {"experiment.extends", "a file's base is read with the file"},
        {"data.split", "it would move rows between the training, validation and test splits"},
        {"data.split_seed", "it would move rows between the training, validation and test splits"},
        {"data.split_fractions", "it would move rows between the training, validation and test "
                                 "splits"},
        {"data.path", "each trial would be measured on other data"},
        {"data.select_fraction", "it would move rows between training and the selection split "
                                 "(--select-fraction F sets it for every run)"},
        {"data.select_seed", "it would move rows between training and the selection split"},
        {"data.select_by", "it would move rows between training and the selection split"},
        {NULL, NULL}};
    for (int i = 0; no[i].key; i++)
        if (!strcmp(key, no[i].key)) return no[i].why;
    return NULL;
}

/* 1 with the finite number that is all of s in *v; 0 when s is not one. */
static int parse_number(const char *s, double *v)
{
    char *end;
    if (!*s || strchr(" \t", *s)) return 0;
    errno = 0;
    *v = strtod(s, &end);
    return end != s && !*end && isfinite(*v) && errno != ERANGE;
}

/* 1 when s is written as a whole number (digits with an optional sign). */
static int written_integer(const char *s)
{
    if (*s == '-' || *s == '+') s++;
    return *s && strspn(s, "0123456789") == strlen(s) && strlen(s) <= 15;
}

/* "LO:HI" of two numbers into k's range; 0 when text is not two numbers around one ':'. */
static int parse_range(const char *text, ts_tune_key *k)
{
    const char *colon = strchr(text, ':');
    if (!colon || strchr(colon + 1, ':')) return 0;
    char lo[TS_TUNE_VAL_MAX], hi[TS_TUNE_VAL_MAX];
    if ((size_t)(colon - text) >= sizeof lo || strlen(colon + 1) >= sizeof hi) return 0;
    snprintf(lo, sizeof lo, "%.*s", (int)(colon - text), text);
    snprintf(hi, sizeof hi, "%s", colon + 1);
    if (!parse_number(lo, &k->lo) || !parse_number(hi, &k->hi)) return 0;
    k->integer = written_integer(lo) && written_integer(hi);
    return 1;
}

/* The checks of a range once read: LO < HI, and LO > 0 for a log range. */
static int check_range(const ts_tune_key *k, const char *spec, ts_err *e)
{
    if (k->lo > k->hi)
        return ts_fail(e, "%s=%s: the range's low end %g is above its high end %g; write LO:HI "
                       "with LO < HI", k->key, spec, k->lo, k->hi);
    if (k->lo == k->hi)
        return ts_fail(e, "%s=%s: the range holds one value; write LO:HI with LO < HI, or the "
                       "value alone to fix the key", k->key, spec);
    if (k->kind == TS_TUNE_LOG && k->lo <= 0)
        return ts_fail(e, "%s=%s: a log-uniform range needs LO > 0 (the logarithm of %g is not "
                       "defined); give a positive low end such as log:0.0001:%g, or a plain "
                       "range LO:HI", k->key, spec, k->lo, k->hi);
    return 0;
}

/* The comma-separated values of a list into k. */
static int parse_list(const char *spec, ts_tune_key *k, ts_err *e)
{
    int n = 1;
    for (const char *c = spec; *c; c++) n += *c == ',';
    if (n > TS_TUNE_MAX_VALUES)
        return ts_fail(e, "%s: %d values; a list holds at most %d: use a range (LO:HI) with "
                       "--random, or fewer values", k->key, n, TS_TUNE_MAX_VALUES);
    k->kind = TS_TUNE_LIST;
    for (const char *a = spec;; a++) {
        size_t len = strcspn(a, ",");
        const char *s = a, *end = a + len;
        while (s < end && (*s == ' ' || *s == '\t')) s++;
        while (end > s && (end[-1] == ' ' || end[-1] == '\t')) end--;
        if (end == s)
            return ts_fail(e, "%s=%s: value %d of the list is empty; separate the values by "
                           "single commas (such as 8,16,32)", k->key, spec, k->nval + 1);
        if ((size_t)(end - s) >= TS_TUNE_VAL_MAX)
            return ts_fail(e, "%s: value %d is longer than %d bytes", k->key, k->nval + 1,
                           TS_TUNE_VAL_MAX - 1);
        snprintf(k->val[k->nval], TS_TUNE_VAL_MAX, "%.*s", (int)(end - s), s);
        for (int j = 0; j < k->nval; j++)
            if (!strcmp(k->val[j], k->val[k->nval]))
                return ts_fail(e, "%s=%s: the value %s is listed twice", k->key, spec,
                               k->val[j]);
        k->nval++;
        a += len;
        if (!*a) break;
    }
    return 0;
}

int ts_tune_parse_key(const char *arg, ts_tune_key *k, ts_err *e)
{
    memset(k, 0, sizeof *k);
    const char *eq = strchr(arg, '=');
    if (!eq || eq == arg || !memchr(arg, '.', (size_t)(eq - arg)))
        return ts_fail(e, "'%.200s' is not SECTION.KEY=VALUES: write a list (layer.mix.units=8,16),"
                       " a range (optimizer.lr=0.0001:0.01), a log-uniform range "
                       "(optimizer.lr=log:0.0001:0.01) or one value", arg);
    if ((size_t)(eq - arg) >= TS_TUNE_KEY_MAX)
        return ts_fail(e, "'%.60s...': the key is longer than %d bytes", arg, TS_TUNE_KEY_MAX - 1);
    snprintf(k->key, sizeof k->key, "%.*s", (int)(eq - arg), arg);
    for (const char *c = k->key; *c; c++)
        if ((unsigned char)*c <= ' ' || *c == 0x7f)
            return ts_fail(e, "'%s': a key holds no space or control character; write "
                           "SECTION.KEY=VALUES", k->key);
    const char *spec = eq + 1;
    for (const char *c = spec; *c; c++)
        if ((unsigned char)*c < 0x20 || *c == 0x7f)
            return ts_fail(e, "%s: the values hold a control character, which an INI value "
                           "cannot hold", k->key);
    if (!*spec)
        return ts_fail(e, "%s= gives no value: give a list (V1,V2,...), a range (LO:HI or "
                       "log:LO:HI) or one value", k->key);
    ts_tune_key probe;
    int searched = strchr(spec, ',') || !strncmp(spec, "log:", 4) || parse_range(spec, &probe);
    const char *why = not_searchable(k->key);
    int never = !strcmp(k->key, "experiment.name") || !strcmp(k->key, "experiment.extends") ||
                !strcmp(k->key, "experiment.source");
    int list_valued = !strcmp(k->key, "data.split") || !strcmp(k->key, "data.split_fractions");
    /* tune sets it itself with --select-on holdout (--select-fraction) */
    if (!strcmp(k->key, "data.select_fraction")) never = 1;
    if (why && (searched || never))
        return ts_fail(e, "%s cannot be %s: %s%s%s%s", k->key, never ? "set by tune" : "searched",
                       why, list_valued && strchr(spec, ',') ? " (to fix it for every run, write "
                       "its list with spaces: " : "", list_valued && strchr(spec, ',') ? k->key : "",
                       list_valued && strchr(spec, ',') ? "='0.6 0.2 0.2')" : "");
    if (!strncmp(spec, "log:", 4)) {
        k->kind = TS_TUNE_LOG;
        if (!parse_range(spec + 4, k))
            return ts_fail(e, "%s=%s: write a log-uniform range as log:LO:HI with two numbers "
                           "(such as log:0.0001:0.01)", k->key, spec);
        if (check_range(k, spec, e)) return -1;
    } else if (strchr(spec, ',')) {
        if (parse_list(spec, k, e)) return -1;
    } else if (parse_range(spec, k)) {
        k->kind = TS_TUNE_RANGE;
        if (check_range(k, spec, e)) return -1;
    } else {
        k->kind = TS_TUNE_FIXED;
        if (strlen(spec) >= TS_TUNE_VAL_MAX)
            return ts_fail(e, "%s: the value is longer than %d bytes", k->key, TS_TUNE_VAL_MAX - 1);
        snprintf(k->val[0], TS_TUNE_VAL_MAX, "%s", spec);
        k->nval = 1;
    }
    return 0;
}

long ts_tune_grid_size(const ts_tune_key *keys, int nkeys)
{
    long n = 1;
    for (int i = 0; i < nkeys; i++) {
        if (keys[i].kind != TS_TUNE_LIST) continue;
        n *= keys[i].nval;
        if (n > TS_TUNE_MAX_GRID) return -1;
    }
    return n;
}

int ts_tune_grid(const ts_tune_key *keys, int nkeys, ts_tune_trial *t, int max, int *n, ts_err *e)
{
    *n = 0;
    for (int i = 0; i < nkeys; i++)
        if (keys[i].kind == TS_TUNE_RANGE || keys[i].kind == TS_TUNE_LOG)
            return ts_fail(e, "%s is a range, and a range has no grid: give --random N to draw N "
                           "trials, or list the values (V1,V2,...)", keys[i].key);
    long size = ts_tune_grid_size(keys, nkeys);
    if (size < 0) {
        double full = 1;
        for (int i = 0; i < nkeys; i++) if (keys[i].kind == TS_TUNE_LIST) full *= keys[i].nval;
        return ts_fail(e, "the grid of these lists holds %.0f trials, over the limit of %d: give "
                       "--random N to draw N of them, or fewer values", full, TS_TUNE_MAX_GRID);
    }
    if (size > max) return ts_fail(e, "the grid holds %ld trials, more than %d", size, max);
    for (long g = 0; g < size; g++) {
        long rest = g;
        for (int i = nkeys - 1; i >= 0; i--) {   /* the last key varies fastest */
            if (keys[i].kind != TS_TUNE_LIST) { t[g].val[i][0] = 0; continue; }
            snprintf(t[g].val[i], TS_TUNE_VAL_MAX, "%s", keys[i].val[rest % keys[i].nval]);
            rest /= keys[i].nval;
        }
    }
    *n = (int)size;
    return 0;
}

/* One draw of key k into out. */
static void draw_value(const ts_tune_key *k, ts_rng *r, char *out)
{
    double u = ts_rng_uniform(r), v;
    switch (k->kind) {
    case TS_TUNE_LIST:
        snprintf(out, TS_TUNE_VAL_MAX, "%s", k->val[ts_rng_below(r, (uint64_t)k->nval)]);
        return;
    case TS_TUNE_RANGE:
        if (k->integer) {
            long long lo = (long long)k->lo, span = (long long)k->hi - lo + 1;
            snprintf(out, TS_TUNE_VAL_MAX, "%lld", lo + (long long)ts_rng_below(r, (uint64_t)span));
            return;
        }
        v = k->lo + u * (k->hi - k->lo);
        break;
    case TS_TUNE_LOG:
        if (k->integer) {
            /* log-uniform over the whole numbers: floor of a draw in [LO, HI + 1) */
            double x = exp(log(k->lo) + u * (log(k->hi + 1) - log(k->lo)));
            long long w = (long long)floor(x);
            if (w > (long long)k->hi) w = (long long)k->hi;
            if (w < (long long)k->lo) w = (long long)k->lo;
            snprintf(out, TS_TUNE_VAL_MAX, "%lld", w);
            return;
        }
        v = exp(log(k->lo) + u * (log(k->hi) - log(k->lo)));
        break;
    default:
        out[0] = 0;
        return;
    }
    /* four significant digits, kept inside the range the user wrote */
    char buf[64];
    snprintf(buf, sizeof buf, "%.4g", v);
    double w = strtod(buf, NULL);
    if (w < k->lo) snprintf(buf, sizeof buf, "%.17g", k->lo);
    if (w > k->hi) snprintf(buf, sizeof buf, "%.17g", k->hi);
    snprintf(out, TS_TUNE_VAL_MAX, "%s", buf);
}

static int same_trial(const ts_tune_trial *a, const ts_tune_trial *b, int nkeys)
{
    for (int i = 0; i < nkeys; i++)
        if (strcmp(a->val[i], b->val[i])) return 0;
    return 1;
}

int ts_tune_random(const ts_tune_key *keys, int nkeys, int n, uint64_t seed, ts_tune_trial *t,
                   int *got, ts_err *e)
{
    *got = 0;
    if (n < 1 || n > TS_TUNE_MAX_TRIALS)
        return ts_fail(e, "--random %d: give a number of trials from 1 to %d", n,
                       TS_TUNE_MAX_TRIALS);
    int searched = 0;
    for (int i = 0; i < nkeys; i++) searched += keys[i].kind != TS_TUNE_FIXED;
    if (!searched)
        return ts_fail(e, "--random needs a key to search: give a list (V1,V2,...) or a range "
                       "(LO:HI, log:LO:HI)");
    ts_rng r;
    ts_rng_seed(&r, seed);
    for (int g = 0; g < n; g++) {
        int tries = 0, dup;
        do {
            for (int i = 0; i < nkeys; i++) draw_value(&keys[i], &r, t[g].val[i]);
            dup = 0;
            for (int j = 0; j < g && !dup; j++) dup = same_trial(&t[j], &t[g], nkeys);
        } while (dup && ++tries < 200);
        if (dup) break;            /* the space holds fewer distinct trials than asked */
        (*got)++;
    }
    return 0;
}

int ts_tune_lower_better(const char *metric)
{
    return strstr(metric, "loss") || strstr(metric, "mse") || strstr(metric, "mae") ||
           strstr(metric, "rmse");
}

int ts_tune_choose(const double *valid, const unsigned char *ok, int n, int lower)
{
    int best = -1;
    for (int i = 0; i < n; i++) {
        if (!ok[i] || !isfinite(valid[i])) continue;
        if (best < 0 || (lower ? valid[i] < valid[best] : valid[i] > valid[best])) best = i;
    }
    return best;
}

/* ==== the program ============================================================================= */

enum { SELECT_VALID = 0, SELECT_VALID_LAST, SELECT_HOLDOUT };
#define TUNE_SELECT_FRACTION 0.1   /* --select-on holdout without --select-fraction */
#define HALVING_ETA 3              /* --halving: each rung keeps the best third, 3 times the epochs */

typedef struct tune_opts {
    const char *exp;               /* EXP.ini as given */
    char name[TS_NAME_MAX];        /* its [experiment] name */
    char out[TS_PATH_MAX];
    int random, seeds, jobs, select_on;
    double select_fraction;        /* --select-fraction F (0: not given) */
    long halving;                  /* --halving R: the first rung's epochs (0: no halving) */
    char budget[48];               /* "train.epochs=E" of a rung's runs ("" otherwise) */
    char holdout[64];              /* the "data.select_fraction=F" every run gets ("" none) */
    char holdout_desc[256];        /* the selection split in words, for the report */
    int trial_seeds;               /* seeds per trial: base_seed, base_seed + 1, ... */
    long base_seed;                /* the experiment's [experiment] seed */
    int final_seed[TUNE_MAX_SEEDS];    /* the final comparison's seeds: none of the trials' */
    uint64_t search_seed;
    char metric[2 * TS_NAME_MAX];  /* "income.auc" */
    char metric_from[64];          /* "[train] early_stop" or "--metric" */
    char early_stop[2 * TS_NAME_MAX];  /* the experiment's [train] early_stop ("" none) */
    long patience, epochs;
    ts_tune_key *keys;             /* every KEY=SPEC, fixed ones too, in order */
    int nkeys;
    char default_val[TS_TUNE_MAX_KEYS][TS_TUNE_VAL_MAX];  /* the default's value of each key */
} tune_opts;

/* The keys of a trial's command line: fixed keys as given, searched keys from the trial. */
static const char *key_value(const tune_opts *o, const ts_tune_trial *t, int i)
{
    return o->keys[i].kind == TS_TUNE_FIXED ? o->keys[i].val[0] : t ? t->val[i] : NULL;
}

#define TS_STR_(x) #x
#define TS_STR(x) TS_STR_(x)
/* `tessera tune --help` (main.c's command table prints it, so does a --help reaching here). */
const char ts_tune_help[] =
        "usage: tessera tune EXP.ini [--random N] [--seeds N] [--jobs N] [--out DIR]\n"
        "          [--metric TASK.FIG] [--select-on valid|valid-last|holdout]\n"
        "          [--select-fraction F] [--halving R] [--trial-seeds N] [--search-seed N]\n"
        "          SECTION.KEY=V1,V2,... SECTION.KEY=LO:HI SECTION.KEY=log:LO:HI SECTION.KEY=VALUE ...\n"
        "\n"
        "Searches hyper-parameters of one experiment, chooses on the validation split (or on a\n"
        "selection split held out of training) only, and reports the chosen configuration\n"
        "beside the experiment as given on the test split.\n"
        "\n"
        "  KEY=V1,V2,...   a list: an axis of the grid, or a uniform choice with --random\n"
        "  KEY=LO:HI       a range, uniform (whole numbers stay whole); needs --random\n"
        "  KEY=log:LO:HI   a log-uniform range (LO > 0), for rates; needs --random\n"
        "  KEY=VALUE       a plain override of every run\n"
        "  --random N      draw N trials (search seed --search-seed, default 1); without it the\n"
        "                  lists form a grid of at most " TS_STR(TS_TUNE_MAX_GRID) " trials\n"
        "  --seeds N       seeds of the final comparison on the test split (default 3), none\n"
        "                  of them a trial's: the chosen configuration is run afresh\n"
        "  --trial-seeds N each trial runs with N seeds (the experiment's and the next ones)\n"
        "                  and is judged by their mean validation figure (default 1)\n"
        "  --jobs N        runs at a time, each with (cores / N) threads (default 1)\n"
        "  --out DIR       the search's folder (default results/tune-NAME)\n"
        "  --metric T.F    the validation figure that chooses (default: [train] early_stop);\n"
        "                  lower is better when its name holds loss, mse or mae, higher otherwise\n"
        "  --select-on valid       (default) each trial early-stops on the validation split and\n"
        "                          is chosen on it too: the chosen figure is optimistic\n"
        "  --select-on valid-last  trials train [train] epochs with early stopping off, so the\n"
        "                          validation split chooses the trial and nothing else\n"
        "  --select-on holdout     trials early-stop on the validation split and are chosen on\n"
        "                          a selection split: F of the training rows, held out of every\n"
        "                          run's training ([data] select_fraction; select.TASK.FIG)\n"
        "  --select-fraction F     its size, 0 < F < 1 (default: the experiment's [data]\n"
        "                          select_fraction, else 0.1)\n"
        "  --halving R     successive halving: every trial trains R epochs, the best third (by\n"
        "                  the figure that chooses) 3R, ... until [train] epochs; the others\n"
        "                  stop early (judged on fewer epochs: biased against slow learners)\n"
        "\n"
        "The experiment as given runs as one more trial (\"default\"). DIR gets trials/ (a run\n"
        "folder per trial), trials.csv, selected.ini (a complete experiment: tessera run takes it\n"
        "as is), final/ (both over --seeds seeds) and report.md. A search run again with the same\n"
        "command reuses every finished run and resumes the others; docs/tuning.md explains it.\n";

static void usage(FILE *f) { fputs(ts_tune_help, f); }

/* A whole number in [lo, hi] for option opt; -1 with a sentence when s is not one. */
static int parse_count(const char *opt, const char *s, long lo, long hi, long *out)
{
    char *end;
    errno = 0;
    long v = strtol(s, &end, 10);
    if (end == s || *end || errno || v < lo || v > hi) {
        fprintf(stderr, "tessera tune: %s %s: give a whole number from %ld to %ld\n", opt, s, lo, hi);
        return -1;
    }
    *out = v;
    return 0;
}

/* Reads the command line into o. Returns 0, 1 (out of memory) or 2 (usage), or -1 for --help. */
static int parse_args(int argc, char **argv, tune_opts *o)
{
    o->seeds = 3;
    o->trial_seeds = 1;
    o->jobs = 1;
    o->search_seed = 1;
    o->keys = calloc((size_t)argc + 1, sizeof *o->keys);
    if (!o->keys) { fprintf(stderr, "tessera tune: out of memory\n"); return 1; }
    int nsearched = 0;
    for (int i = 0; i < argc; i++) {
        const char *a = argv[i];
        if (!strcmp(a, "--help") || !strcmp(a, "-h")) return -1;
        int takes = !strcmp(a, "--random") || !strcmp(a, "--seeds") || !strcmp(a, "--jobs") ||
                    !strcmp(a, "--out") || !strcmp(a, "--metric") || !strcmp(a, "--select-on") ||
                    !strcmp(a, "--search-seed") || !strcmp(a, "--trial-seeds") ||
                    !strcmp(a, "--select-fraction") || !strcmp(a, "--halving");
        if (takes && i + 1 >= argc) {
            fprintf(stderr, "tessera tune: %s needs a value (tessera tune --help)\n", a);
            return 2;
        }
        long v;
        if (!strcmp(a, "--random")) {
            if (parse_count(a, argv[++i], 1, TS_TUNE_MAX_TRIALS, &v)) return 2;
            o->random = (int)v;
        } else if (!strcmp(a, "--seeds")) {
            if (parse_count(a, argv[++i], 1, TUNE_MAX_SEEDS, &v)) return 2;
            o->seeds = (int)v;
        } else if (!strcmp(a, "--trial-seeds")) {
            if (parse_count(a, argv[++i], 1, TUNE_MAX_SEEDS, &v)) return 2;
            o->trial_seeds = (int)v;
        } else if (!strcmp(a, "--jobs")) {
            if (parse_count(a, argv[++i], 1, 4096, &v)) return 2;
            o->jobs = (int)v;
        } else if (!strcmp(a, "--search-seed")) {
            if (parse_count(a, argv[++i], 0, 2147483647L, &v)) return 2;
            o->search_seed = (uint64_t)v;
        } else if (!strcmp(a, "--out")) {
            const char *d = argv[++i];
            if (!*d || strlen(d) + 64 >= sizeof o->out) {
                fprintf(stderr, "tessera tune: --out: give a folder path of 1 to %zu bytes\n",
                        sizeof o->out - 65);
                return 2;
            }
            snprintf(o->out, sizeof o->out, "%s", d);
        } else if (!strcmp(a, "--metric")) {
            const char *m = argv[++i], *dot = strchr(m, '.');
            if (!dot || dot == m || !dot[1] || strchr(dot + 1, '.') || strlen(m) >= sizeof o->metric ||
                strpbrk(m, " \t,=/")) {
                fprintf(stderr, "tessera tune: --metric %s: write TASK.FIGURE, a figure the task's "
                        "head reports on the validation split (such as income.auc)\n", m);
                return 2;
            }
            snprintf(o->metric, sizeof o->metric, "%s", m);
            snprintf(o->metric_from, sizeof o->metric_from, "--metric");
        } else if (!strcmp(a, "--select-on")) {
            const char *s = argv[++i];
            if (!strcmp(s, "valid")) o->select_on = SELECT_VALID;
            else if (!strcmp(s, "valid-last")) o->select_on = SELECT_VALID_LAST;
            else if (!strcmp(s, "holdout")) o->select_on = SELECT_HOLDOUT;
            else {
                fprintf(stderr, "tessera tune: --select-on %s: give valid (trials early-stop on "
                        "the validation split and are chosen on it), valid-last (no early "
                        "stopping in trials: the split chooses only the trial) or holdout (trials "
                        "early-stop on the validation split and are chosen on a selection split "
                        "held out of the training rows)\n", s);
                return 2;
            }
        } else if (!strcmp(a, "--halving")) {
            if (parse_count(a, argv[++i], 1, 100000, &v)) return 2;
            o->halving = v;
        } else if (!strcmp(a, "--select-fraction")) {
            const char *f = argv[++i];
            char *end;
            errno = 0;
            double fr = strtod(f, &end);
            if (end == f || *end || errno || !(fr > 0 && fr < 1)) {
                fprintf(stderr, "tessera tune: --select-fraction %s: give the share of the "
                        "training split to hold out for selection, between 0 and 1 (such as "
                        "0.1)\n", f);
                return 2;
            }
            o->select_fraction = fr;
        } else if (a[0] == '-') {
            fprintf(stderr, "tessera tune: unknown option %s (tessera tune --help)\n", a);
            return 2;
        } else if (strchr(a, '=') && !memchr(a, '/', strcspn(a, "="))) {
            ts_tune_key *k = &o->keys[o->nkeys];
            ts_err e;
            if (ts_tune_parse_key(a, k, &e)) { fprintf(stderr, "tessera tune: %s\n", e.msg); return 2; }
            for (int j = 0; j < o->nkeys; j++)
                if (!strcmp(o->keys[j].key, k->key)) {
                    fprintf(stderr, "tessera tune: %s is given twice; give it once, with every "
                            "value in one list\n", k->key);
                    return 2;
                }
            if (k->kind != TS_TUNE_FIXED) nsearched++;
            if (++o->nkeys > TS_TUNE_MAX_KEYS) {
                fprintf(stderr, "tessera tune: more than %d keys; a search varies at most %d "
                        "(fix the others in the experiment file)\n", TS_TUNE_MAX_KEYS,
                        TS_TUNE_MAX_KEYS);
                return 2;
            }
        } else if (!o->exp) {
            o->exp = a;
        } else {
            fprintf(stderr, "tessera tune: '%s': one experiment per search (%s is the first); "
                    "keys are SECTION.KEY=VALUES\n", a, o->exp);
            return 2;
        }
    }
    if (!o->exp) {
        fprintf(stderr, "tessera tune: no experiment: tessera tune EXP.ini KEY=V1,V2,... "
                "(tessera tune --help)\n");
        return 2;
    }
    if (o->select_fraction > 0 && o->select_on != SELECT_HOLDOUT) {
        fprintf(stderr, "tessera tune: --select-fraction sizes the selection split of "
                "--select-on holdout; give --select-on holdout too, or leave it out\n");
        return 2;
    }
    if (!nsearched) {
        fprintf(stderr, "tessera tune: nothing to search: give at least one key with a list "
                "(layer.mix.units=8,16,32) or a range (optimizer.lr=log:0.0001:0.01)\n");
        return 2;
    }
    return 0;
}

/* ---- the experiment and every trial's configuration, checked before any run ---------------- */

/* The override arguments of one run, "KEY=VALUE" strings into v (malloc'ed each); the count. */
static int trial_overrides(const tune_opts *o, const ts_tune_trial *t, char **v)
{
    int n = 0;
    for (int i = 0; i < o->nkeys; i++) {
        const char *val = key_value(o, t, i);
        if (!val || !*val) continue;   /* a searched key a probe leaves out */
        v[n++] = NULL;
        size_t len = strlen(o->keys[i].key) + strlen(val) + 2;
        if (!(v[n - 1] = malloc(len))) return -1;
        snprintf(v[n - 1], len, "%s=%s", o->keys[i].key, val);
    }
    if (o->select_on == SELECT_VALID_LAST) v[n++] = strdup("train.early_stop=");
    if (o->holdout[0]) v[n++] = strdup(o->holdout);
    if (o->budget[0]) v[n++] = strdup(o->budget);   /* a rung of --halving: last, it wins */
    return n;
}

static void free_strings(char **v, int n)
{
    for (int i = 0; i < n; i++) free(v[i]);
}

/* The section and key of "layer.mix.units" (the key is what follows the last dot). */
static ts_cfg *key_section(ts_exp *x, const char *key, const char **name)
{
    const char *dot = strrchr(key, '.');
    char sec[TS_TUNE_KEY_MAX];
    snprintf(sec, sizeof sec, "%.*s", (int)(dot - key), key);
    *name = dot + 1;
    return ts_ini_find(&x->ini, sec);
}

/* The declared type of a key ("int", "float", ...), or NULL for a host key. */
static const char *key_type(const ts_cfg *c, const char *key)
{
    for (int l = 0; l < 4; l++)
        for (const ts_key *k = c->keys[l]; k && k->key; k++)
            if (!strcmp(k->key, key)) return k->type;
    return NULL;
}

/* Loads the experiment with one trial's overrides (key names, sections and [train] numbers are
 * checked; values only at the run). NULL with the message printed. */
static ts_exp *load_trial(const tune_opts *o, const ts_tune_trial *t, const char *what)
{
    char *over[TS_TUNE_MAX_KEYS + 4] = {0};
    int n = trial_overrides(o, t, over);
    ts_run_opts ro = {0};
    ro.overrides = over;
    ro.noverride = n < 0 ? 0 : n;
    ts_err e;
    ts_exp *x = n < 0 ? NULL : ts_exp_load(o->exp, &ro, &e);
    if (n < 0) snprintf(e.msg, sizeof e.msg, "out of memory");
    if (!x) fprintf(stderr, "tessera tune: %s%s%s\n", what ? what : "", what ? ": " : "", e.msg);
    free_strings(over, n < 0 ? 0 : n);
    return x;
}

/* A range on a key the plugin declares as a whole number must be one of whole numbers; a
 * range on a key that is not a number at all (a string, a choice) is refused. */
static int check_types(const tune_opts *o, ts_exp *x)
{
    for (int i = 0; i < o->nkeys; i++) {
        const ts_tune_key *k = &o->keys[i];
        const char *name;
        ts_cfg *c = key_section(x, k->key, &name);
        const char *type = c ? key_type(c, name) : NULL;
        if (!type || (k->kind != TS_TUNE_RANGE && k->kind != TS_TUNE_LOG)) continue;
        if (!strcmp(type, "int") && !k->integer) {
            fprintf(stderr, "tessera tune: %s is a whole number (%s declares it int), and the "
                    "range %g:%g is written with decimals; write whole ends such as %.0f:%.0f\n",
                    k->key, ts_cfg_section(c), k->lo, k->hi, ceil(k->lo), floor(k->hi));
            return -1;
        }
        if (strcmp(type, "int") && strcmp(type, "float")) {
            fprintf(stderr, "tessera tune: %s is of type %s, not a number: a range cannot draw "
                    "it; list its values instead (V1,V2,...)\n", k->key, type);
            return -1;
        }
    }
    return 0;
}

/* --select-on holdout: the selection split every run holds out of its training rows. The
 * experiment's own [data] select_fraction when it has one and --select-fraction is not given;
 * else data.select_fraction=F (default 0.1) for every run, the default's too. */
static int read_holdout(tune_opts *o, ts_exp *x)
{
    ts_cfg *cd = ts_ini_find(&x->ini, "data");
    const char *fs = cd ? ts_cfg_str(cd, "select_fraction") : NULL;
    const char *ss = cd ? ts_cfg_str(cd, "select_seed") : NULL;
    const char *by = cd ? ts_cfg_str(cd, "select_by") : NULL;
    double own = fs && *fs ? strtod(fs, NULL) : 0;
    const char *from = "--select-fraction";
    double f = o->select_fraction;
    if (f <= 0 && own > 0) {
        f = own;
        from = "the experiment's [data] select_fraction";
    } else if (f <= 0) {
        f = TUNE_SELECT_FRACTION;
        from = "--select-on holdout's default";
    }
    if (f != own) snprintf(o->holdout, sizeof o->holdout, "data.select_fraction=%g", f);
    snprintf(o->holdout_desc, sizeof o->holdout_desc, "%g of the training split's %s (%s), drawn "
             "with select_seed %s and held out of training in every run", f,
             by && *by ? "groups of select_by" : "rows", from, ss && *ss ? ss : "2026");
    if (by && *by) {
        size_t l = strlen(o->holdout_desc);
        snprintf(o->holdout_desc + l, sizeof o->holdout_desc - l, " (whole %s groups)", by);
    }
    return 0;
}

/* Reads what the search needs from the experiment as given (name, early stopping, the default
 * value of each key) and checks the metric names a head. */
static int read_experiment(tune_opts *o)
{
    tune_opts plain = *o;          /* the experiment as given: its own early stopping */
    plain.select_on = SELECT_VALID;
    ts_exp *x = load_trial(&plain, NULL, o->exp);
    if (!x) return -1;
    int rc = check_types(o, x);
    snprintf(o->name, sizeof o->name, "%s", x->name);
    snprintf(o->early_stop, sizeof o->early_stop, "%s", x->early_stop);
    o->patience = x->patience;
    o->epochs = x->epochs;
    if (!rc && o->halving && o->halving * HALVING_ETA > o->epochs) {
        fprintf(stderr, "tessera tune: --halving %ld: a rung of %ld epochs leads to one of %ld, and "
                "the experiment trains %ld ([train] epochs): give at most a third of them (%ld), or "
                "leave --halving out\n", o->halving, o->halving, o->halving * HALVING_ETA,
                o->epochs, o->epochs / HALVING_ETA);
        rc = -1;
    }
    for (int i = 0; !rc && o->halving && i < o->nkeys; i++)
        if (!strcmp(o->keys[i].key, "train.epochs") || !strcmp(o->keys[i].key, "train.max_steps")) {
            fprintf(stderr, "tessera tune: %s with --halving: successive halving sets each rung's "
                    "epochs itself; fix %s in the experiment, or leave --halving out\n",
                    o->keys[i].key, o->keys[i].key);
            rc = -1;
        }
    o->base_seed = (long)x->ctx.seed;
    /* the final seeds: 1, 2, ... skipping the trials' own, so no final run is a trial's run */
    for (long k = 1, n = 0; n < o->seeds; k++)
        if (k < o->base_seed || k >= o->base_seed + o->trial_seeds) o->final_seed[n++] = (int)k;
    for (int i = 0; i < o->nkeys; i++) {
        const char *name;
        ts_cfg *c = key_section(x, o->keys[i].key, &name);
        const char *v = c ? ts_cfg_str(c, name) : NULL;
        snprintf(o->default_val[i], TS_TUNE_VAL_MAX, "%s", v ? v : "(unset)");
    }
    if (!rc && o->select_on == SELECT_HOLDOUT) rc = read_holdout(o, x);
    ts_cfg *ct = ts_ini_find(&x->ini, "train");
    const char *es = ct ? ts_cfg_str(ct, "early_stop") : NULL;
    if (!rc && !o->metric[0]) {
        if (!es || !*es) {
            fprintf(stderr, "tessera tune: %s has no [train] early_stop, so there is no figure to "
                    "choose by: give --metric TASK.FIGURE (such as income.auc)\n", o->exp);
            rc = -1;
        } else {
            snprintf(o->metric, sizeof o->metric, "%s", es);
            snprintf(o->metric_from, sizeof o->metric_from, "[train] early_stop");
        }
    }
    if (!rc) {
        char head[2 * TS_NAME_MAX + 8];
        snprintf(head, sizeof head, "head.%.*s", (int)strcspn(o->metric, "."), o->metric);
        if (!ts_ini_find(&x->ini, head)) {
            fprintf(stderr, "tessera tune: %s %s: %s has no [%s]; name a task of one of its heads\n",
                    o->metric_from, o->metric, o->exp, head);
            rc = -1;
        }
    }
    ts_exp_free(x);
    return rc;
}

/* ---- running: core/runner.c, --jobs at a time, stop signals forwarded ------------------------ */
#define J_WAITING TS_JOB_WAITING
#define J_RUNNING TS_JOB_RUNNING
#define J_REUSED TS_JOB_REUSED
#define J_RAN TS_JOB_RAN
#define J_FAILED TS_JOB_FAILED
#define J_STOPPED TS_JOB_STOPPED
#define J_KILLED TS_JOB_KILLED
#define T_HALVED 7                 /* a trial's state: stopped by --halving at a rung */
#define LABEL_MAX 96
typedef char job_label[LABEL_MAX];

/* Runs jobs[0..n) (labels given), `parallel` at a time; `note` (may be NULL) adds to each
 * progress line. Returns the number that failed, or -1 when nothing could start; *stopped is
 * the stop signal when SIGINT, SIGTERM or SIGHUP interrupted the batch (its runs then stopped). */
static int run_jobs(ts_job *jobs, int n, int parallel, void (*note)(const ts_job *, void *),
                    void *arg, int *stopped)
{
    ts_runner r = {"tessera tune", parallel, 1, note, arg};   /* elapsed, ETA, the live line */
    ts_run_counts c;
    int failed = ts_runner_run(&r, jobs, n, &c, stopped);
    if (failed >= 0 && *stopped)
        fprintf(stderr, "tessera tune: interrupted by signal %d (%s): %d of %d runs of this step "
                "finished, %d not started; run the same command again to continue (finished runs "
                "are reused, stopped ones resume from their checkpoints)\n", *stopped,
                strsignal(*stopped), c.started, n, n - c.started);
    return failed;
}

/* The argv of `tessera run INI threads KEYS... seed --results DIR --if-changed`. */
static char **run_argv(const char *ini, long seed, int threads, char **over, int nover,
                       const char *dir)
{
    char **v = calloc((size_t)nover + 12, sizeof *v);
    if (!v) return NULL;
    int a = 0, bad = 0;
    v[a++] = strdup("tessera");
    v[a++] = strdup("run");
    v[a++] = strdup(ini);
    char buf[64];
    snprintf(buf, sizeof buf, "train.threads=%d", threads);
    v[a++] = strdup(buf);
    for (int i = 0; i < nover; i++) v[a++] = strdup(over[i]);
    snprintf(buf, sizeof buf, "experiment.seed=%ld", seed);   /* last: it wins over a fixed one */
    v[a++] = strdup(buf);
    v[a++] = strdup("--results");
    v[a++] = strdup(dir);
    v[a++] = strdup("--if-changed");
    for (int i = 0; i < a; i++) bad |= !v[i];
    if (bad) {
        for (int i = 0; i < a; i++) free(v[i]);
        free(v);
        return NULL;
    }
    return v;
}

static void free_argv(char **v)
{
    for (int i = 0; v && v[i]; i++) free(v[i]);
    free(v);
}

/* ---- reading figures: the validation split only for choosing -------------------------------- */

/* "select" (--select-on holdout) or "valid": the split whose figure chooses the trial. */
static const char *choice_split(const tune_opts *o)
{
    return o->select_on == SELECT_HOLDOUT ? "select" : "valid";
}

/* The validation figure valid.METRIC of a run's metrics.json. NAN when the run has none. */
static double valid_figure(const char *dir, const char *metric)
{
    char key[2 * TS_NAME_MAX + 8];
    snprintf(key, sizeof key, "valid.%s", metric);
    double v;
    ts_err e;
    return ts_metrics_get(dir, key, &v, &e) ? NAN : v;
}

/* The figure that chooses: select.METRIC (--select-on holdout) or valid.METRIC of a trial's
 * metrics.json, never a test figure. NAN when the run has none. */
static double choice_figure(const tune_opts *o, const char *dir)
{
    char key[2 * TS_NAME_MAX + 8];
    snprintf(key, sizeof key, "%s.%s", choice_split(o), o->metric);
    double v;
    ts_err e;
    return ts_metrics_get(dir, key, &v, &e) ? NAN : v;
}

static double run_figure(const char *dir, const char *key)
{
    double v;
    ts_err e;
    return ts_metrics_get(dir, key, &v, &e) ? NAN : v;
}

/* A growing string. */
typedef struct sbuf { char *s; size_t n, cap; int oom; } sbuf;
static void sb_printf(sbuf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void sb_printf(sbuf *b, const char *fmt, ...)
{
    if (b->oom) return;
    for (;;) {
        va_list ap;
        va_start(ap, fmt);
        int k = vsnprintf(b->s ? b->s + b->n : NULL, b->s ? b->cap - b->n : 0, fmt, ap);
        va_end(ap);
        if (k < 0) return;
        if (b->s && (size_t)k < b->cap - b->n) { b->n += (size_t)k; return; }
        size_t cap = b->cap ? b->cap * 2 : 4096;
        while (cap < b->n + (size_t)k + 1) cap *= 2;
        char *s = realloc(b->s, cap);
        if (!s) { b->oom = 1; return; }
        b->s = s;
        b->cap = cap;
    }
}

static int write_text(const char *path, const sbuf *b)
{
    ts_err e;
    if (b->oom) { fprintf(stderr, "tessera tune: out of memory writing %s\n", path); return -1; }
    if (ts_write_atomic(path, b->s ? b->s : "", b->n, &e)) {
        fprintf(stderr, "tessera tune: %s\n", e.msg);
        return -1;
    }
    return 0;
}

/* A CSV field: quoted when it holds a comma, a quote or a line break. */
static void csv_field(sbuf *b, const char *s)
{
    if (!strpbrk(s, ",\"\r\n")) { sb_printf(b, "%s", s); return; }
    sb_printf(b, "\"");
    for (; *s; s++) sb_printf(b, *s == '"' ? "\"\"" : "%c", *s);
    sb_printf(b, "\"");
}

/* Text for a Markdown table cell: | ` * [ ] < > \ escaped, line breaks as spaces. */
static void md_field(sbuf *b, const char *s)
{
    for (; *s; s++) {
        if (strchr("\\`*[]|<>", *s)) sb_printf(b, "\\");
        sb_printf(b, "%c", *s == '\n' || *s == '\r' || *s == '\t' ? ' ' : *s);
    }
}

/* ---- the search ------------------------------------------------------------------------------ */
typedef struct search {
    tune_opts *o;
    ts_tune_trial *trial;          /* trial[0] is the default (no searched values) */
    int ntrial;                    /* the default + the drawn trials */
    int asked;                     /* --random N or the grid's size */
    double *valid;                 /* (ntrial) the figure that chooses (choice_figure); NAN none */
    double *vfig;                  /* (ntrial) with --select-on holdout: the validation figure */
    double *best_epoch;            /* (ntrial) train.run.best_epoch */
    unsigned char *ok;             /* (ntrial) finished now or reused */
    int *state;                    /* (ntrial) J_*, or T_HALVED */
    long *halved_at;               /* (ntrial) --halving: the epochs of the rung that stopped it */
    double *halved_fig;            /* (ntrial) its figure there (NAN: none) */
    int chosen;
    int threads;
} search;

/* OUT/trials/NNN/seed-S (OUT/trials/default/seed-S for the default). */
static void trial_dir(char *buf, size_t n, const tune_opts *o, int t, long seed)
{
    if (t == 0) snprintf(buf, n, "%s/trials/default/seed-%ld", o->out, seed);
    else snprintf(buf, n, "%s/trials/%03d/seed-%ld", o->out, t, seed);
}

static void trial_label(char *buf, size_t n, const tune_opts *o, const ts_tune_trial *t, int i)
{
    if (i == 0) { snprintf(buf, n, "default (the experiment as given)"); return; }
    size_t k = (size_t)snprintf(buf, n, "trial %d", i);
    for (int j = 0; j < o->nkeys && k < n; j++)
        if (o->keys[j].kind != TS_TUNE_FIXED)
            k += (size_t)snprintf(buf + k, n - k, " %s=%s", o->keys[j].key, t->val[j]);
}

/* The progress line's choosing figure of a finished trial. */
static void note_valid(const ts_job *j, void *arg)
{
    const tune_opts *o = arg;
    double v = choice_figure(o, j->dir);
    if (isfinite(v)) fprintf(stderr, "; %s %s %.4f", choice_split(o), o->metric, v);
}

/* The trials: the grid, or --random draws; trial 0 is the default. Each trial's configuration
 * is loaded once (key names, sections, [train] numbers) before anything runs. */
static int make_trials(search *s)
{
    tune_opts *o = s->o;
    int max = o->random ? o->random : TS_TUNE_MAX_GRID;
    ts_tune_trial *t = calloc((size_t)max + 1, sizeof *t);
    if (!t) { fprintf(stderr, "tessera tune: out of memory\n"); return 1; }
    s->trial = t;
    ts_err e;
    int n = 0;
    if (o->random) {
        if (ts_tune_random(o->keys, o->nkeys, o->random, o->search_seed, t + 1, &n, &e)) {
            fprintf(stderr, "tessera tune: %s\n", e.msg);
            return 2;
        }
        if (n < o->random)
            fprintf(stderr, "tessera tune: note: the lists hold %d distinct trials, fewer than "
                    "--random %d; all %d run\n", n, o->random, n);
        s->asked = o->random;
    } else {
        if (ts_tune_grid(o->keys, o->nkeys, t + 1, max, &n, &e)) {
            fprintf(stderr, "tessera tune: %s\n", e.msg);
            return 2;
        }
        s->asked = n;
    }
    s->ntrial = n + 1;
    for (int i = 0; i < o->nkeys; i++) t[0].val[i][0] = 0;
    /* each searched key alone first, so that a sentence names the key rather than a trial */
    for (int k = 0; k < o->nkeys && n; k++) {
        if (o->keys[k].kind == TS_TUNE_FIXED) continue;
        ts_tune_trial probe;
        for (int i = 0; i < o->nkeys; i++) probe.val[i][0] = 0;
        snprintf(probe.val[k], TS_TUNE_VAL_MAX, "%s", t[1].val[k]);
        ts_exp *px = load_trial(o, &probe, o->keys[k].key);
        if (!px) return 2;
        ts_exp_free(px);
    }
    for (int i = 1; i < s->ntrial; i++) {
        char what[1024];
        trial_label(what, sizeof what, o, &t[i], i);
        ts_exp *x = load_trial(o, &t[i], what);
        if (!x) return 2;
        ts_exp_free(x);
    }
    return 0;
}

/* The argv of trial i with a seed, or (final) of the default's run for the test comparison. */
static char **trial_argv(const search *s, int i, long seed, int final, const char *dir)
{
    const tune_opts *o = s->o;
    char *over[TS_TUNE_MAX_KEYS + 4] = {0};
    /* the final runs of the default are the experiment as given: no valid-last switch */
    tune_opts plain = *o;
    if (final) plain.select_on = SELECT_VALID;
    int n = trial_overrides(&plain, i ? &s->trial[i] : NULL, over);
    char **v = n < 0 ? NULL : run_argv(o->exp, seed, s->threads, over, n, dir);
    free_strings(over, n < 0 ? 0 : n);
    return v;
}

static void log_path(char *buf, size_t n, const tune_opts *o, const char *dir)
{
    /* OUT/REST -> OUT/logs/REST.log, REST's '/' as '-' */
    const char *rest = dir + strlen(o->out) + 1;
    size_t k = (size_t)snprintf(buf, n, "%s/logs/", o->out);
    for (; *rest && k + 5 < n; rest++) buf[k++] = *rest == '/' ? '-' : *rest;
    snprintf(buf + k, n - k, ".log");
}

/* A trial's figures from its seeds' runs jobs[0..k): the mean validation figure and best
 * epoch when every seed finished; its state the worst of theirs. */
static void trial_result(search *s, int t, const ts_job *jobs, int k)
{
    double v = 0, vv = 0, ep = 0;
    int all = 1, ran = 0, failed = 0, stopped = 0;
    for (int r = 0; r < k; r++) {
        int st = jobs[r].state;
        all &= st == J_RAN || st == J_REUSED;
        ran |= st == J_RAN;
        failed |= st == J_FAILED;
        stopped |= st == J_STOPPED || st == J_KILLED || st == J_WAITING || st == J_RUNNING;
        if (st == J_RAN || st == J_REUSED) {
            v += choice_figure(s->o, jobs[r].dir);
            vv += valid_figure(jobs[r].dir, s->o->metric);
            ep += run_figure(jobs[r].dir, "train.run.best_epoch");
        }
    }
    s->ok[t] = all;
    s->state[t] = failed ? J_FAILED : stopped ? J_STOPPED : ran ? J_RAN : J_REUSED;
    s->valid[t] = all ? v / k : NAN;
    s->vfig[t] = all ? vv / k : NAN;
    s->best_epoch[t] = all ? ep / k : NAN;
}

/* --halving R: successive halving before phase 1. Rung k trains every trial still in the search
 * for R x 3^k epochs (its own folders, OUT/trials/NNN/rung-E/seed-S, so a search run again reuses
 * them) and keeps the best third by the figure that chooses (the validation or the selection
 * split, as the final choice); the others stop there (T_HALVED, with the rung's epochs and
 * figure). A rung of E epochs runs while 3E <= [train] epochs (a next budget worth the name):
 * phase 1 then trains the survivors and the default in full. The default is never halved: every trial is compared with it. 0, or -1 when nothing
 * could run; *stopped as run_jobs. */
static int run_rungs(search *s, int *stopped)
{
    tune_opts *o = s->o;
    *stopped = 0;
    if (!o->halving) return 0;
    int ts = o->trial_seeds, lower = ts_tune_lower_better(o->metric), na = 0;
    int *alive = malloc((size_t)s->ntrial * sizeof *alive);
    double *fig = malloc((size_t)s->ntrial * sizeof *fig);
    if (!alive || !fig) { free(alive); free(fig); fprintf(stderr, "tessera tune: out of memory\n"); return -1; }
    for (int t = 1; t < s->ntrial; t++) alive[na++] = t;
    int rc = 0;
    for (long E = o->halving; E * HALVING_ETA <= o->epochs && na > 1 && !rc && !*stopped;
         E *= HALVING_ETA) {
        int n = na * ts, keep = (na + HALVING_ETA - 1) / HALVING_ETA;
        ts_job *jobs = calloc((size_t)n, sizeof *jobs);
        job_label *label = calloc((size_t)n, sizeof *label);
        if (!jobs || !label) { free(jobs); free(label); rc = -1; fprintf(stderr, "tessera tune: out of memory\n"); break; }
        snprintf(o->budget, sizeof o->budget, "train.epochs=%ld", E);
        for (int i = 0; i < n && !rc; i++) {
            ts_job *j = &jobs[i];
            int t = alive[i / ts];
            long seed = o->base_seed + i % ts;
            j->label = label[i];
            snprintf(j->dir, sizeof j->dir, "%s/trials/%03d/rung-%ld/seed-%ld", o->out, t, E, seed);
            snprintf(label[i], LABEL_MAX, "trial %d, rung of %ld epoch%s", t, E, E > 1 ? "s" : "");
            if (ts > 1) {
                size_t l = strlen(label[i]);
                snprintf(label[i] + l, LABEL_MAX - l, ", seed %ld", seed);
            }
            log_path(j->log, sizeof j->log, o, j->dir);
            if (!(j->argv = trial_argv(s, t, seed, 0, j->dir))) {
                fprintf(stderr, "tessera tune: out of memory\n");
                rc = -1;
            }
        }
        o->budget[0] = 0;
        fprintf(stderr, "tessera tune: --halving: %d trials for %ld epoch%s, judged on %s.%s; the "
                "best %d go%s on\n", na, E, E > 1 ? "s" : "", choice_split(o), o->metric, keep,
                keep == 1 ? "es" : "");
        int failed = rc ? -1 : run_jobs(jobs, n, o->jobs, note_valid, o, stopped);
        if (failed < 0) rc = -1;
        for (int k = 0; k < na && !rc && !*stopped; k++) {
            double v = 0;
            int all = 1;
            for (int r = 0; r < ts; r++) {
                const ts_job *j = &jobs[k * ts + r];
                all &= j->state == J_RAN || j->state == J_REUSED;
                if (all) v += choice_figure(o, j->dir);
            }
            fig[alive[k]] = all ? v / ts : NAN;
        }
        for (int i = 0; i < n; i++) free_argv(jobs[i].argv);
        free(jobs);
        free(label);
        if (rc || *stopped) break;
        /* the best first (NaN last; ties to the lower trial), then keep the first `keep` */
        for (int i = 1; i < na; i++)
            for (int j = i; j > 0; j--) {
                double x = fig[alive[j - 1]], y = fig[alive[j]];
                int swap = isfinite(y) && (!isfinite(x) || (lower ? y < x : y > x) ||
                                           (y == x && alive[j] < alive[j - 1]));
                if (!swap) break;
                int tmp = alive[j]; alive[j] = alive[j - 1]; alive[j - 1] = tmp;
            }
        int kept = 0;
        for (int k = 0; k < na; k++) {
            int t = alive[k];
            if (k < keep && isfinite(fig[t])) { alive[kept++] = t; continue; }
            s->halved_at[t] = E;
            s->halved_fig[t] = fig[t];
            s->state[t] = isfinite(fig[t]) ? T_HALVED : J_FAILED;
        }
        na = kept;
        for (int i = 1; i < na; i++)   /* back in trial order */
            for (int j = i; j > 0 && alive[j] < alive[j - 1]; j--) {
                int tmp = alive[j]; alive[j] = alive[j - 1]; alive[j - 1] = tmp;
            }
    }
    free(alive);
    free(fig);
    return rc;
}

/* Phase 1: every trial over its seeds (with --halving, those the rungs kept), and the default's
 * final runs (they need no choice). */
static int run_trials(search *s, int *stopped)
{
    tune_opts *o = s->o;
    int ts = o->trial_seeds, na = 0;
    int *alive = malloc((size_t)s->ntrial * sizeof *alive);
    if (!alive) { fprintf(stderr, "tessera tune: out of memory\n"); return -1; }
    for (int t = 0; t < s->ntrial; t++) if (!s->halved_at[t]) alive[na++] = t;
    int nt = na * ts, n = nt + o->seeds;
    ts_job *jobs = calloc((size_t)n, sizeof *jobs);
    job_label *label = calloc((size_t)n, sizeof *label);
    if (!jobs || !label) {
        free(jobs);
        free(label);
        free(alive);
        fprintf(stderr, "tessera tune: out of memory\n");
        return -1;
    }
    int rc = 0;
    for (int i = 0; i < n && !rc; i++) {
        ts_job *j = &jobs[i];
        j->label = label[i];
        int final = i >= nt, t = final ? 0 : alive[i / ts];
        long seed = final ? o->final_seed[i - nt] : o->base_seed + i % ts;
        if (final) {
            snprintf(j->dir, sizeof j->dir, "%s/final/default/seed-%ld", o->out, seed);
            snprintf(label[i], LABEL_MAX, "default, seed %ld (for the test comparison)", seed);
        } else {
            trial_dir(j->dir, sizeof j->dir, o, t, seed);
            if (t) snprintf(label[i], LABEL_MAX, "trial %d", t);
            else snprintf(label[i], LABEL_MAX, "default (trial 0)");
            if (ts > 1) {
                size_t l = strlen(label[i]);
                snprintf(label[i] + l, LABEL_MAX - l, ", seed %ld", seed);
            }
        }
        log_path(j->log, sizeof j->log, o, j->dir);
        if (!(j->argv = trial_argv(s, t, seed, final, j->dir))) {
            fprintf(stderr, "tessera tune: out of memory\n");
            rc = -1;
        }
    }
    fprintf(stderr, "tessera tune: %d trial%s%s and the default%s, chosen on the %s split "
            "(%s.%s, %s is better)%s; then the default over %d seed%s; %d run%s at a time\n",
            na - 1, na == 2 ? "" : "s", o->halving ? " (those --halving kept)" : "",
            ts > 1 ? ", each over its seeds" : "",
            o->select_on == SELECT_HOLDOUT ? "selection" : "validation", choice_split(o),
            o->metric, ts_tune_lower_better(o->metric) ? "lower" : "higher",
            o->select_on == SELECT_VALID_LAST ? ", trials without early stopping" : "", o->seeds,
            o->seeds > 1 ? "s" : "", o->jobs, o->jobs > 1 ? "s" : "");
    int failed = rc ? -1 : run_jobs(jobs, n, o->jobs, note_valid, o, stopped);
    for (int k = 0; k < na && failed >= 0; k++) trial_result(s, alive[k], jobs + k * ts, ts);
    for (int t = 0; t < s->ntrial && failed >= 0; t++)
        if (s->halved_at[t]) { s->ok[t] = 0; s->valid[t] = s->vfig[t] = s->best_epoch[t] = NAN; }
    int final_ok = 1;
    for (int i = nt; i < n; i++) final_ok &= jobs[i].state == J_RAN || jobs[i].state == J_REUSED;
    for (int i = 0; i < n; i++) free_argv(jobs[i].argv);
    free(jobs);
    free(label);
    free(alive);
    if (failed < 0) return -1;
    return final_ok ? 0 : 1;
}

/* Which figures of the validation split the default reported, for the message of a --metric
 * that names none. */
static void say_valid_figures(const tune_opts *o)
{
    char dir[TS_PATH_MAX], p[TS_PATH_MAX + 16], line[1024];
    trial_dir(dir, sizeof dir, o, 0, o->base_seed);
    snprintf(p, sizeof p, "%s/metrics.json", dir);
    FILE *f = ts_fopen_regular(p);
    char pre[16];
    snprintf(pre, sizeof pre, "\"%s.", choice_split(o));
    fprintf(stderr, "tessera tune: no trial reported %s.%s (the choice is made on the %s split "
            "only); the %s figures of the default are:", choice_split(o), o->metric,
            o->select_on == SELECT_HOLDOUT ? "selection" : "validation",
            o->select_on == SELECT_HOLDOUT ? "selection" : "validation");
    while (f && fgets(line, sizeof line, f)) {
        char *q = strstr(line, pre);
        if (!q) continue;
        q += strlen(pre);
        fprintf(stderr, " %.*s", (int)strcspn(q, "\""), q);
    }
    if (f) fclose(f);
    fprintf(stderr, "; give one with --metric TASK.FIGURE\n");
}

/* trials.csv: one line per trial, its keys, its validation figure, its best epoch, its status. */
static int write_trials_csv(const search *s)
{
    const tune_opts *o = s->o;
    sbuf b = {0};
    sb_printf(&b, "trial,status");
    for (int i = 0; i < o->nkeys; i++)
        if (o->keys[i].kind != TS_TUNE_FIXED) { sb_printf(&b, ","); csv_field(&b, o->keys[i].key); }
    if (o->select_on == SELECT_HOLDOUT) sb_printf(&b, ",valid.%s", o->metric);
    sb_printf(&b, ",%s.%s,best_epoch,chosen%s\n", choice_split(o), o->metric,
              o->halving ? ",halved_at_epochs,halved_figure" : "");
    for (int t = 0; t < s->ntrial; t++) {
        static const char *const st[] = {"not started", "not finished", "reused", "ran", "failed",
                                         "stopped", "stopped", "halved"};
        if (t) sb_printf(&b, "%d,%s", t, st[s->state[t]]);
        else sb_printf(&b, "default,%s", st[s->state[t]]);
        for (int i = 0; i < o->nkeys; i++) {
            if (o->keys[i].kind == TS_TUNE_FIXED) continue;
            sb_printf(&b, ",");
            csv_field(&b, t ? s->trial[t].val[i] : o->default_val[i]);
        }
        if (o->select_on == SELECT_HOLDOUT && isfinite(s->vfig[t])) sb_printf(&b, ",%.9g", s->vfig[t]);
        else if (o->select_on == SELECT_HOLDOUT) sb_printf(&b, ",");
        if (isfinite(s->valid[t])) sb_printf(&b, ",%.9g", s->valid[t]);
        else sb_printf(&b, ",");
        if (isfinite(s->best_epoch[t])) sb_printf(&b, o->trial_seeds > 1 ? ",%.2f" : ",%.0f", s->best_epoch[t]);
        else sb_printf(&b, ",");
        sb_printf(&b, ",%d", t == s->chosen);
        if (o->halving && s->halved_at[t] && isfinite(s->halved_fig[t]))
            sb_printf(&b, ",%ld,%.9g", s->halved_at[t], s->halved_fig[t]);
        else if (o->halving && s->halved_at[t]) sb_printf(&b, ",%ld,", s->halved_at[t]);
        else if (o->halving) sb_printf(&b, ",,");
        sb_printf(&b, "\n");
    }
    char path[TS_PATH_MAX + 32];
    snprintf(path, sizeof path, "%s/trials.csv", o->out);
    int rc = write_text(path, &b);
    free(b.s);
    return rc;
}

/* selected.ini: the experiment file resolved (its base read in), with the fixed keys, the
 * chosen trial's values (and, with valid-last, early stopping off), a name of its own and the
 * path of the original file as [experiment] source, so data paths resolve from anywhere. */
static int write_selected(const search *s, char *path, size_t pathn)
{
    const tune_opts *o = s->o;
    ts_ini ini;
    ts_err e;
    snprintf(path, pathn, "%s/selected.ini", o->out);
    if (ts_ini_load(&ini, o->exp, &e)) { fprintf(stderr, "tessera tune: %s\n", e.msg); return -1; }
    char *over[TS_TUNE_MAX_KEYS + 6] = {0};
    tune_opts plain = *o;
    if (s->chosen == 0) plain.select_on = SELECT_VALID;   /* the default as given */
    int n = trial_overrides(&plain, s->chosen ? &s->trial[s->chosen] : NULL, over), rc = n < 0;
    char name[TS_NAME_MAX + 16], abs[TS_PATH_MAX], src[TS_PATH_MAX + 32];
    snprintf(name, sizeof name, "experiment.name=%.*s_tuned", TS_NAME_MAX - 7, o->name);
    if (n >= 0) over[n++] = strdup(name);
    ts_cfg *ce = ts_ini_find(&ini, "experiment");
    if (n >= 0 && !(ce && ts_cfg_entry(ce, "source")) && realpath(o->exp, abs)) {
        snprintf(src, sizeof src, "experiment.source=%s", abs);
        over[n++] = strdup(src);
    }
    for (int i = 0; i < n && !rc; i++) {
        if (!over[i]) { fprintf(stderr, "tessera tune: out of memory\n"); rc = -1; break; }
        if (ts_ini_override(&ini, over[i], &e)) { fprintf(stderr, "tessera tune: %s\n", e.msg); rc = -1; }
    }
    char *text = NULL;
    size_t len = 0;
    if (!rc && ts_ini_format(&ini, &text, &len, &e)) { fprintf(stderr, "tessera tune: %s\n", e.msg); rc = -1; }
    if (!rc) {
        sbuf b = {0};
        sb_printf(&b, "; %s, selected by `tessera tune` from %s on the %s split\n"
                  "; (%s.%s = %.6g; the experiment as given: %.6g). Run it with\n"
                  "; tessera run %s\n", o->name, o->exp, o->select_on == SELECT_HOLDOUT ?
                  "selection" : "validation", choice_split(o), o->metric, s->valid[s->chosen],
                  s->valid[0], path);
        if (s->chosen == 0)
            sb_printf(&b, "; No trial beat the experiment as given: this is that experiment.\n");
        else
            for (int i = 0; i < o->nkeys; i++)
                if (o->keys[i].kind != TS_TUNE_FIXED)
                    sb_printf(&b, "; %s = %s (searched; the experiment had %s)\n", o->keys[i].key,
                              s->trial[s->chosen].val[i], o->default_val[i]);
        if (o->holdout[0])
            sb_printf(&b, "; [data] select_fraction = %s: the selection split the search chose "
                      "on (--select-on holdout); remove it to train on every training row\n",
                      strchr(o->holdout, '=') + 1);
        if (s->chosen && o->select_on == SELECT_VALID_LAST)
            sb_printf(&b, "; [train] early_stop is off: the trials were chosen without early "
                      "stopping (--select-on valid-last)\n");
        sb_printf(&b, "%.*s", (int)len, text);
        rc = write_text(path, &b);
        free(b.s);
    }
    free(text);
    free_strings(over, n < 0 ? 0 : n);
    ts_ini_free(&ini);
    return rc;
}

/* Phase 3: the selected experiment over the seeds (selected.ini as is). */
static int run_selected(search *s, const char *selected, int *stopped)
{
    const tune_opts *o = s->o;
    ts_job *jobs = calloc((size_t)o->seeds, sizeof *jobs);
    job_label *label = calloc((size_t)o->seeds, sizeof *label);
    if (!jobs || !label) {
        free(jobs);
        free(label);
        fprintf(stderr, "tessera tune: out of memory\n");
        return -1;
    }
    int rc = 0;
    for (int k = 0; k < o->seeds && !rc; k++) {
        ts_job *j = &jobs[k];
        int seed = o->final_seed[k];
        j->label = label[k];
        snprintf(j->dir, sizeof j->dir, "%s/final/selected/seed-%d", o->out, seed);
        snprintf(label[k], LABEL_MAX, "selected, seed %d (for the test comparison)", seed);
        log_path(j->log, sizeof j->log, o, j->dir);
        if (!(j->argv = run_argv(selected, seed, s->threads, NULL, 0, j->dir))) rc = -1;
    }
    int failed = rc ? -1 : run_jobs(jobs, o->seeds, o->jobs, NULL, NULL, stopped);
    for (int k = 0; k < o->seeds; k++) free_argv(jobs[k].argv);
    free(jobs);
    free(label);
    return failed;
}

/* "2, 3 and 4": the final comparison's seeds. */
static void seed_list(sbuf *b, const tune_opts *o)
{
    for (int k = 0; k < o->seeds; k++)
        sb_printf(b, "%s%d", k == 0 ? "" : k + 1 < o->seeds ? ", " : " and ", o->final_seed[k]);
}

/* The test figures of the final runs: every "test.TASK.FIG" key of metrics.json (not the loss,
 * label rate or combined weights), per seed; NAN where a run has none. */
typedef struct final_fig {
    char key[2 * TS_NAME_MAX + 8];
    double v[2][TUNE_MAX_SEEDS];   /* [0] the default, [1] the selected */
} final_fig;

static int reportable(const char *key)
{
    const char *m = strrchr(key, '.');
    return !strncmp(key, "test.", 5) && m && strcmp(m, ".loss") && strcmp(m, ".positive_rate") &&
           strcmp(m, ".queries") && strcmp(m, ".users") && strncmp(m, ".w_", 3);
}

static int read_final(const tune_opts *o, int which, int k, final_fig *f, int nf, int max)
{
    char p[TS_PATH_MAX + 64], line[1024];
    snprintf(p, sizeof p, "%s/final/%s/seed-%d/metrics.json", o->out, which ? "selected" : "default",
             o->final_seed[k]);
    FILE *in = ts_fopen_regular(p);
    while (in && fgets(line, sizeof line, in)) {
        char *q1 = strchr(line, '"'), *q2 = q1 ? strchr(q1 + 1, '"') : NULL;
        if (!q2) continue;
        *q2 = 0;
        const char *key = q1 + 1, *colon = strchr(q2 + 1, ':');
        if (!colon || !reportable(key)) continue;
        int i = 0;
        while (i < nf && strcmp(f[i].key, key)) i++;
        if (i == nf) {
            if (nf == max) continue;
            snprintf(f[nf].key, sizeof f[nf].key, "%s", key);
            for (int a = 0; a < 2; a++) for (int r = 0; r < TUNE_MAX_SEEDS; r++) f[nf].v[a][r] = NAN;
            nf++;
        }
        f[i].v[which][k] = strncmp(colon + 2, "null", 4) ? strtod(colon + 1, NULL) : NAN;
    }
    if (in) fclose(in);
    return nf;
}

/* The report's section on the test split: each figure's mean ± std for both, the paired
 * difference, t and p, and on how many seeds the selected configuration won. */
static void report_final(sbuf *b, const search *s)
{
    const tune_opts *o = s->o;
    final_fig *f = calloc(64, sizeof *f);
    if (!f) { b->oom = 1; return; }
    int nf = 0;
    for (int w = 0; w < (s->chosen ? 2 : 1); w++)
        for (int k = 0; k < o->seeds; k++) nf = read_final(o, w, k, f, nf, 64);
    if (!s->chosen) {
        sb_printf(b, "No trial beat the default on the %s split, so the selected "
                  "configuration is the default; its test figures over %d seed%s:\n\n| figure | "
                  "default |\n|---|---|\n", o->select_on == SELECT_HOLDOUT ? "selection" :
                  "validation", o->seeds, o->seeds > 1 ? "s" : "");
        for (int i = 0; i < nf; i++) {
            double m, sd;
            ts_mean_std(f[i].v[0], o->seeds, &m, &sd);
            sb_printf(b, "| %s | %.4f%s", f[i].key + 5, m, o->seeds > 1 ? "" : " |\n");
            if (o->seeds > 1) sb_printf(b, " ± %.4f |\n", sd);
        }
        free(f);
        return;
    }
    sb_printf(b, "| figure | default | selected | selected − default | t | p | selected better |\n"
              "|---|---|---|---|---|---|---|\n");
    for (int i = 0; i < nf; i++) {
        double a[TUNE_MAX_SEEDS], c[TUNE_MAX_SEEDS], d[TUNE_MAX_SEEDS];
        int n = 0, wins = 0, low = ts_tune_lower_better(f[i].key);
        for (int r = 0; r < o->seeds; r++)
            if (isfinite(f[i].v[0][r]) && isfinite(f[i].v[1][r])) {
                a[n] = f[i].v[0][r];
                c[n] = f[i].v[1][r];
                d[n] = c[n] - a[n];
                wins += low ? c[n] < a[n] : c[n] > a[n];
                n++;
            }
        if (!n) continue;
        double ma, sa, mc, sc, md, sdd, t, p;
        ts_mean_std(a, n, &ma, &sa);
        ts_mean_std(c, n, &mc, &sc);
        ts_mean_std(d, n, &md, &sdd);
        sb_printf(b, "| %s%s | %.4f", f[i].key + 5, !strcmp(f[i].key + 5, o->metric) ? " (the "
                  "search's figure)" : "", ma);
        if (n > 1) sb_printf(b, " ± %.4f", sa);
        sb_printf(b, " | %.4f", mc);
        if (n > 1) sb_printf(b, " ± %.4f", sc);
        sb_printf(b, " | %+.4f |", md);
        if (!ts_paired_t(c, a, n, &t, &p)) sb_printf(b, " %.2f | %.3g%s |", t, p, p < 0.05 ? " *" : "");
        else sb_printf(b, " – | – |");
        sb_printf(b, " %d/%d (%s is better) |\n", wins, n, low ? "lower" : "higher");
    }
    sb_printf(b, "\nEach figure is the mean ± the sample standard deviation over seed%s ",
              o->seeds > 1 ? "s" : "");
    seed_list(b, o);
    sb_printf(b, " (the same seeds for both, so the test is paired: two-sided t-test on the %d "
              "differences; * p < 0.05). With few seeds the test has little power: read the "
              "difference with its spread.\n", o->seeds);
    free(f);
}

/* The figures' order in the trials table: by validation figure, best first, then the rest. */
static void rank_trials(const search *s, int *order)
{
    int lower = ts_tune_lower_better(s->o->metric), n = 0;
    for (int t = 0; t < s->ntrial; t++) order[n++] = t;
    for (int i = 1; i < n; i++)
        for (int j = i; j > 0; j--) {
            double a = s->valid[order[j - 1]], b = s->valid[order[j]];
            int swap = isfinite(b) && (!isfinite(a) || (lower ? b < a : b > a));
            if (!swap) break;
            int tmp = order[j]; order[j] = order[j - 1]; order[j - 1] = tmp;
        }
}

static void report_space(sbuf *b, const search *s)
{
    const tune_opts *o = s->o;
    sb_printf(b, "## The search\n\n| key | searched over | the experiment's value |\n|---|---|---|\n");
    for (int i = 0; i < o->nkeys; i++) {
        const ts_tune_key *k = &o->keys[i];
        if (k->kind == TS_TUNE_FIXED) continue;
        sb_printf(b, "| %s | ", k->key);
        if (k->kind == TS_TUNE_LIST)
            for (int v = 0; v < k->nval; v++) { md_field(b, k->val[v]); sb_printf(b, v + 1 < k->nval ? ", " : ""); }
        else
            sb_printf(b, "%s %g to %g%s", k->kind == TS_TUNE_LOG ? "log-uniform" : "uniform",
                      k->lo, k->hi, k->integer ? " (whole numbers)" : "");
        sb_printf(b, " | ");
        md_field(b, o->default_val[i]);
        sb_printf(b, " |\n");
    }
    int nfixed = 0;
    for (int i = 0; i < o->nkeys; i++) nfixed += o->keys[i].kind == TS_TUNE_FIXED;
    if (nfixed) {
        sb_printf(b, "\nSet in every run (the default's too):");
        for (int i = 0; i < o->nkeys; i++)
            if (o->keys[i].kind == TS_TUNE_FIXED) {
                sb_printf(b, " `%s=", o->keys[i].key);
                md_field(b, o->keys[i].val[0]);
                sb_printf(b, "`");
            }
        sb_printf(b, ".\n");
    }
    int finished = 0, failed = 0;
    for (int t = 1; t < s->ntrial; t++) { finished += s->ok[t]; failed += s->state[t] == J_FAILED; }
    if (o->random)
        sb_printf(b, "\nBudget: %d random trial%s (--random %d, search seed %llu)", s->ntrial - 1,
                  s->ntrial == 2 ? "" : "s", s->asked, (unsigned long long)o->search_seed);
    else
        sb_printf(b, "\nBudget: the grid of the lists, %d trial%s", s->ntrial - 1,
                  s->ntrial == 2 ? "" : "s");
    sb_printf(b, ", and the default; %d finished, %d failed", finished, failed);
    if (o->halving) {
        int halved = 0;
        for (int t = 1; t < s->ntrial; t++) halved += s->state[t] == T_HALVED;
        sb_printf(b, ", %d stopped by --halving %ld", halved, o->halving);
    }
    sb_printf(b, "; %d run%s at a time. ", o->jobs, o->jobs > 1 ? "s" : "");
    if (o->trial_seeds > 1)
        sb_printf(b, "Every trial runs with seeds %ld to %ld (--trial-seeds %d) and is judged by "
                  "the mean of their validation figures.\n\n", o->base_seed,
                  o->base_seed + o->trial_seeds - 1, o->trial_seeds);
    else
        sb_printf(b, "Every trial runs with the experiment's seed, %ld: a difference between "
                  "trials smaller than the spread over seeds of the last section is noise "
                  "(--trial-seeds N averages N seeds per trial).\n\n", o->base_seed);
}

static const char *ho_split_name(const tune_opts *o)
{
    return o->select_on == SELECT_HOLDOUT ? "selection" : "validation";
}

/* "Which split chose what", the sentence the issue asks of every report. */
static void report_splits(sbuf *b, const search *s)
{
    const tune_opts *o = s->o;
    int lower = ts_tune_lower_better(o->metric);
    sb_printf(b, "## Which split chose what\n\n| decision | made on | by |\n|---|---|---|\n");
    if (o->select_on == SELECT_VALID_LAST)
        sb_printf(b, "| each trial's epoch | nothing: early stopping is off in the trials "
                  "(--select-on valid-last) | every trial trains [train] epochs = %ld and keeps "
                  "the last |\n", o->epochs);
    else if (o->early_stop[0])
        sb_printf(b, "| each trial's epoch | the validation split | [train] early_stop = %s "
                  "(%s%ld): the trial keeps its best epoch |\n", o->early_stop,
                  o->patience > 0 ? "patience " : "no patience: every epoch of ", o->patience > 0 ?
                  o->patience : o->epochs);
    else
        sb_printf(b, "| each trial's epoch | nothing: the experiment has no early stopping | "
                  "every trial keeps its last epoch |\n");
    if (o->select_on == SELECT_HOLDOUT)
        sb_printf(b, "| the configuration | the selection split: %s; no run trains on it and "
                  "no epoch is chosen on it | select.%s of each trial, its best-epoch weights "
                  "evaluated on the held rows (%s is better; %s) |\n", o->holdout_desc,
                  o->metric, lower ? "lower" : "higher", o->metric_from);
    else
        sb_printf(b, "| the configuration | the validation split | valid.%s of each trial (%s is "
                  "better; %s) |\n", o->metric, lower ? "lower" : "higher", o->metric_from);
    if (o->halving) {
        sb_printf(b, "| which trials train to the end (--halving %ld) | the %s split | successive "
                  "halving: every trial trains", o->halving, ho_split_name(o));
        for (long E = o->halving; E * HALVING_ETA <= o->epochs; E *= HALVING_ETA)
            sb_printf(b, "%s %ld", E == o->halving ? "" : ",", E);
        sb_printf(b, " epochs in turn, and each rung keeps the best third by %s.%s at that "
                  "budget; the default is never stopped |\n", choice_split(o), o->metric);
    }
    sb_printf(b, "| the figures of the last section | the test split | fresh runs of the default "
              "and of the selected configuration, seed%s ", o->seeds > 1 ? "s" : "");
    seed_list(b, o);
    sb_printf(b, " (no trial's seed)%s; the search read no test figure |\n\n",
              o->select_on == SELECT_HOLDOUT ? ", holding out the same selection split" : "");
    if (o->halving)
        sb_printf(b, "**Successive halving.** A trial stopped at a rung was judged on its figure "
                  "after fewer epochs than it would have trained: a configuration that learns "
                  "slowly (a small learning rate, strong regularisation) can look worse early and "
                  "better late, and is then stopped although it would have won. Each rung is also "
                  "one more comparison of many trials on the same %s split. The trials that "
                  "reached [train] epochs are compared as without halving; the stopped ones are "
                  "listed with their rung's figure, which is not comparable to the others'.\n\n",
                  ho_split_name(o));
    if (o->select_on == SELECT_HOLDOUT)
        sb_printf(b, "Three splits, three decisions: the validation split chose each trial's "
                  "epoch, the selection split (rows no run trained on) chose the trial, the test "
                  "split gave the figures. The selection figure of the chosen trial is still the "
                  "best of many noisy figures and so optimistic; the test figures of the last "
                  "section are the estimate. Every run, the test comparison's too, trains without "
                  "the held rows.%s\n\n", o->holdout[0] ? " selected.ini keeps the holdout so "
                  "that it is the procedure that was chosen; remove its [data] select_fraction "
                  "to train on every training row." : "");
    else if (o->select_on == SELECT_VALID && o->early_stop[0])
        sb_printf(b, "**Bias.** Each trial's validation figure is the best of its epochs on the "
                  "same split that then compares the trials, so it is optimistic twice over "
                  "(the epoch, then the trial, chosen on one split; keras-tuner's issue 1018). "
                  "The validation figures below rank the trials; they do not estimate how the "
                  "chosen configuration does on new data: the test figures of the last section "
                  "do. `--select-on valid-last` trains every trial without early stopping, so "
                  "the validation split chooses the trial and nothing else; `--select-on "
                  "holdout` chooses the trial on a split of its own.\n\n");
    else
        sb_printf(b, "The validation split chose the trial and nothing else. The best "
                  "validation figure of many trials is still the maximum of noisy figures and "
                  "so optimistic; the test figures of the last section are the estimate.\n\n");
}

static void report_trials(sbuf *b, const search *s, const char *selected)
{
    const tune_opts *o = s->o;
    int *order = malloc((size_t)s->ntrial * sizeof *order);
    if (!order) { b->oom = 1; return; }
    rank_trials(s, order);
    int shown = s->ntrial < 20 ? s->ntrial : 20;
    int ho = o->select_on == SELECT_HOLDOUT;
    sb_printf(b, "## Trials, best %s figure first%s\n\n| trial |", ho ? "selection" : "validation",
              s->ntrial > shown ?
              " (the first 20; trials.csv has them all)" : "");
    for (int i = 0; i < o->nkeys; i++)
        if (o->keys[i].kind != TS_TUNE_FIXED) sb_printf(b, " %s |", o->keys[i].key);
    if (ho) sb_printf(b, " valid.%s |", o->metric);
    sb_printf(b, " %s.%s | best epoch | status |\n|---|", choice_split(o), o->metric);
    if (ho) sb_printf(b, "---|");
    for (int i = 0; i < o->nkeys; i++) if (o->keys[i].kind != TS_TUNE_FIXED) sb_printf(b, "---|");
    sb_printf(b, "---|---|---|\n");
    static const char *const st[] = {"not started", "not finished", "finished (reused)",
                                     "finished", "failed", "stopped", "stopped",
                                     "stopped by --halving"};
    for (int r = 0; r < shown; r++) {
        int t = order[r];
        if (t) sb_printf(b, "| %s%d%s |", t == s->chosen ? "**" : "", t, t == s->chosen ? "**" : "");
        else sb_printf(b, "| %sdefault%s |", t == s->chosen ? "**" : "", t == s->chosen ? "**" : "");
        for (int i = 0; i < o->nkeys; i++) {
            if (o->keys[i].kind == TS_TUNE_FIXED) continue;
            sb_printf(b, " ");
            md_field(b, t ? s->trial[t].val[i] : o->default_val[i]);
            sb_printf(b, " |");
        }
        if (ho && isfinite(s->vfig[t])) sb_printf(b, " %.4f |", s->vfig[t]);
        else if (ho) sb_printf(b, " – |");
        if (isfinite(s->valid[t])) sb_printf(b, " %.4f |", s->valid[t]);
        else sb_printf(b, " – |");
        if (isfinite(s->best_epoch[t]))
            sb_printf(b, o->trial_seeds > 1 ? " %.1f |" : " %.0f |", s->best_epoch[t]);
        else sb_printf(b, " – |");
        if (s->state[t] == T_HALVED)
            sb_printf(b, " stopped by --halving after %ld epoch%s (%s.%s %.4f) |\n", s->halved_at[t],
                      s->halved_at[t] > 1 ? "s" : "", choice_split(o), o->metric, s->halved_fig[t]);
        else sb_printf(b, " %s |\n", st[s->state[t]]);
    }
    free(order);
    int c = s->chosen;
    sb_printf(b, "\n## Chosen\n\n");
    if (!c)
        sb_printf(b, "The default (%s.%s %.4f): no trial beat it on the %s split. ",
                  choice_split(o), o->metric, s->valid[0], ho ? "selection" : "validation");
    else {
        sb_printf(b, "Trial %d:", c);
        for (int i = 0; i < o->nkeys; i++)
            if (o->keys[i].kind != TS_TUNE_FIXED) {
                sb_printf(b, " `%s=", o->keys[i].key);
                md_field(b, s->trial[c].val[i]);
                sb_printf(b, "`");
            }
        sb_printf(b, ", %s.%s %.4f against the default's %.4f (%+.4f; %s). ", choice_split(o),
                  o->metric,
                  s->valid[c], s->valid[0], s->valid[c] - s->valid[0], o->trial_seeds > 1 ?
                  "means over the trial seeds" : "one seed each");
    }
    sb_printf(b, "It is written as `");
    md_field(b, selected);
    sb_printf(b, "`, a complete experiment: `tessera run ");
    md_field(b, selected);
    sb_printf(b, "` trains it as is.\n\n");
}

static int write_report(const search *s, const char *selected, int argc, char **argv)
{
    const tune_opts *o = s->o;
    sbuf b = {0};
    sb_printf(&b, "# Hyper-parameter search: ");
    md_field(&b, o->name);
    sb_printf(&b, "\n\nCommand: `tessera tune");
    for (int i = 0; i < argc; i++) { sb_printf(&b, " "); md_field(&b, argv[i]); }
    sb_printf(&b, "`  \ntessera %s. Run folders: trials/ (one per trial), final/ (the test "
              "comparison); logs/; every trial's figures in trials.csv.\n\n", PACKAGE_VERSION);
    report_splits(&b, s);
    report_space(&b, s);
    report_trials(&b, s, selected);
    sb_printf(&b, "## The default and the selected configuration on the test split\n\n");
    report_final(&b, s);
    char path[TS_PATH_MAX + 32];
    snprintf(path, sizeof path, "%s/report.md", o->out);
    int rc = write_text(path, &b);
    free(b.s);
    return rc;
}

int ts_cmd_tune(int argc, char **argv)
{
    tune_opts o;
    memset(&o, 0, sizeof o);
    int rc = parse_args(argc, argv, &o);
    if (rc == -1) { usage(stdout); free(o.keys); return 0; }
    if (rc) { free(o.keys); return rc; }
    ts_err e;
    if (ts_plugins_scan(&e)) { fprintf(stderr, "tessera tune: %s\n", e.msg); free(o.keys); return 1; }
    if (read_experiment(&o)) { free(o.keys); return 2; }
    if (!o.out[0]) snprintf(o.out, sizeof o.out, "results/tune-%s", o.name);
    search s;
    memset(&s, 0, sizeof s);
    s.o = &o;
    rc = make_trials(&s);
    s.valid = calloc((size_t)s.ntrial + 1, sizeof *s.valid);
    s.best_epoch = calloc((size_t)s.ntrial + 1, sizeof *s.best_epoch);
    s.vfig = calloc((size_t)s.ntrial + 1, sizeof *s.vfig);
    s.halved_at = calloc((size_t)s.ntrial + 1, sizeof *s.halved_at);
    s.halved_fig = calloc((size_t)s.ntrial + 1, sizeof *s.halved_fig);
    s.ok = calloc((size_t)s.ntrial + 1, 1);
    s.state = calloc((size_t)s.ntrial + 1, sizeof *s.state);
    if (!rc && (!s.valid || !s.vfig || !s.best_epoch || !s.ok || !s.state || !s.halved_at ||
                !s.halved_fig)) {
        fprintf(stderr, "tessera tune: out of memory\n");
        rc = 1;
    }
    if (!rc && ts_mkdirs(o.out, &e)) { fprintf(stderr, "tessera tune: %s\n", e.msg); rc = 1; }
    long ncpu = sysconf(_SC_NPROCESSORS_ONLN);
    s.threads = ncpu / o.jobs > 0 ? (int)(ncpu / o.jobs) : 1;
    char th[16];
    snprintf(th, sizeof th, "%d", s.threads);
    setenv("OPENBLAS_NUM_THREADS", th, 1);   /* inherited by every run */
    setenv("TESSERA_MPI", "0", 1);
    int stopped = 0, final_bad = 0;
    if (!rc) {
        final_bad = run_rungs(&s, &stopped);
        if (!final_bad && !stopped) final_bad = run_trials(&s, &stopped);
        if (final_bad < 0) rc = 1;
        else if (stopped) rc = 128 + stopped;
    }
    char selected[TS_PATH_MAX + 32] = "";
    if (!rc) {
        s.chosen = ts_tune_choose(s.valid, s.ok, s.ntrial, ts_tune_lower_better(o.metric));
        if (s.chosen < 0 || !s.ok[0] || !isfinite(s.valid[0])) {
            if (s.ok[0] && !isfinite(s.valid[0])) say_valid_figures(&o);
            else fprintf(stderr, "tessera tune: %s; see the logs in %s/logs\n", !s.ok[0] ?
                         "the default (the experiment as given) did not finish, and the search "
                         "compares every trial with it" : "no trial finished", o.out);
            write_trials_csv(&s);
            rc = 1;
        }
    }
    if (!rc && (write_trials_csv(&s) || write_selected(&s, selected, sizeof selected))) rc = 1;
    if (!rc && s.chosen) {
        fprintf(stderr, "tessera tune: chose trial %d on the %s split (%s.%s %.4f; the "
                "default %.4f); now it over %d seed%s\n", s.chosen, o.select_on == SELECT_HOLDOUT ?
                "selection" : "validation", choice_split(&o), o.metric, s.valid[s.chosen],
                s.valid[0], o.seeds, o.seeds > 1 ? "s" : "");
        int failed = run_selected(&s, selected, &stopped);
        if (stopped) rc = 128 + stopped;
        else if (failed) final_bad = 1;
    } else if (!rc) {
        fprintf(stderr, "tessera tune: no trial beat the default on the %s split "
                "(%s.%s %.4f); selected.ini is the default\n", o.select_on == SELECT_HOLDOUT ?
                "selection" : "validation", choice_split(&o), o.metric, s.valid[0]);
    }
    if (!rc && write_report(&s, selected, argc, argv)) rc = 1;
    if (!rc && final_bad) {
        fprintf(stderr, "tessera tune: some runs of the test comparison failed (see %s/logs); "
                "the report covers the seeds that finished\n", o.out);
        rc = 1;
    }
    if (!rc || (rc == 1 && final_bad)) {
        int nfail = 0;
        for (int t = 1; t < s.ntrial; t++) nfail += s.state[t] == J_FAILED;
        if (nfail)
            fprintf(stderr, "tessera tune: %d trial%s failed (see %s/logs); the choice is among "
                    "the trials that finished\n", nfail, nfail > 1 ? "s" : "", o.out);
        printf("%s/report.md\n", o.out);
    }
    free(s.trial);
    free(s.valid);
    free(s.best_epoch);
    free(s.vfig);
    free(s.halved_at);
    free(s.halved_fig);
    free(s.ok);
    free(s.state);
    free(o.keys);
    return rc;
}
