/* report.c — the report of a comparison, written for a reader who pastes it into a paper:
 * report.md (provenance, what differs between the experiments, the runs, the figures with
 * their spread, baselines once, paired t-tests, per-seed wins, the figures' plots), summary.csv
 * (every validation and test figure and the runs' costs, per experiment) and significance.csv.
 * Experiments on the same data form a group, compared with each other only.
 * What it is not: running the experiments (compare.c) or drawing (plots.c). */
#include "config.h"
#include "report.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

typedef struct rep {
    const ts_report_in *in;
    int nsw;                      /* sweep values, 1 without a sweep */
    ts_agg *ag;                   /* (nexp) each experiment's figures */
    ts_conf *conf;                /* (nexp) each experiment's resolved configuration (n = 0: none) */
    ts_sbuf md, csv, sig;
    int have_gp;
    char plots[TS_PATH_MAX + 16]; /* OUT/plots */
} rep;

typedef struct group {
    int no;                       /* 1-based, in the report's order */
    const char *data;             /* what its experiments run on */
    int *m, nm;                   /* its experiments (indices into in->exp) */
    char (*key)[160];             /* the test figures of its table, in order of first appearance */
    int nk;
    char (*base)[TS_NAME_MAX];    /* baseline tasks: the same figures in every run */
    int nbase;
} group;

/* ---- text ------------------------------------------------------------------------------------- */
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
        if (strchr("\\`*[]|<>", *s)) o[n++] = '\\';
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

/* "12.3 s", "4 min 5 s", "1 h 2 min". */
static void duration(char *buf, size_t n, double s)
{
    if (!isfinite(s)) snprintf(buf, n, "–");
    else if (s < 60) snprintf(buf, n, "%.*f s", s < 10 ? 2 : 1, s);
    else if (s < 3600) snprintf(buf, n, "%d min %d s", (int)(s / 60), (int)fmod(s, 60));
    else snprintf(buf, n, "%d h %d min", (int)(s / 3600), (int)fmod(s / 60, 60));
}

/* 1234567 -> "1,234,567". */
static void thousands(char *buf, size_t n, double v)
{
    char digits[32];
    snprintf(digits, sizeof digits, "%.0f", v);
    size_t len = strlen(digits), k = 0;
    for (size_t i = 0; i < len && k + 2 < n; i++) {
        if (i && (len - i) % 3 == 0 && digits[i - 1] != '-') buf[k++] = ',';
        buf[k++] = digits[i];
    }
    buf[k] = 0;
}

/* The figures worth a row: validation and test figures except raw losses and counts. */
static int reportable(const char *key)
{
    if (strncmp(key, "test.", 5) && strncmp(key, "valid.", 6)) return 0;
    const char *m = strrchr(key, '.');
    return m && strcmp(m, ".loss") && strcmp(m, ".positive_rate") && strcmp(m, ".queries") &&
           strcmp(m, ".users") && strcmp(m, ".rows");
}

/* The figures worth a plot and a significance test: each task's main quality measure. */
static int headline(const char *key)
{
    static const char *const main_metrics[] = {".auc", ".mrr", ".map", ".recall@50", ".mse", NULL};
    const char *m = strrchr(key, '.');
    for (int i = 0; m && main_metrics[i]; i++)
        if (!strcmp(m, main_metrics[i])) return !strncmp(key, "test.", 5) && reportable(key);
    return 0;
}

/* Lower is better for errors and losses, higher for AUC, recall and the like. */
static int lower_better(const char *key)
{
    return strstr(key, "loss") || strstr(key, "mse") || strstr(key, "mae") || strstr(key, "rmse");
}

/* A test figure that measures quality (not the combined score's weights). */
static int quality_metric(const char *key)
{
    const char *m = strrchr(key, '.');
    return !strncmp(key, "test.", 5) && reportable(key) && m && strncmp(m, ".w_", 3);
}

/* The task of "test.TASK.METRIC" into buf ("" when key is not a split's figure). */
static void key_task(const char *key, char *buf, size_t n)
{
    const char *a = strchr(key, '.'), *b = strrchr(key, '.');
    if (!a || b == a) { buf[0] = 0; return; }
    snprintf(buf, n, "%.*s", (int)(b - a - 1), a + 1);
}

static int in_list(char (*list)[TS_NAME_MAX], int n, const char *s)
{
    for (int i = 0; i < n; i++)
        if (!strcmp(list[i], s)) return 1;
    return 0;
}

static int is_base_key(const group *g, const char *key)
{
    char task[TS_NAME_MAX];
    key_task(key, task, sizeof task);
    return in_list(g->base, g->nbase, task);
}

/* A link to a figure drawn: the PNG shown, its SVG beside it for papers. */
static void link_plot(rep *r, const char *alt, const char *fname)
{
    char svg[256];
    ts_svg_path(svg, sizeof svg, fname);
    ts_sb_printf(&r->md, "![%s](plots/%s)\n(vector: [%s](plots/%s))\n\n", md_text(alt), fname,
                 svg, svg);
}

/* The run folder of (experiment i, sweep value sw, seed s), NULL when the run did not finish. */
static const char *run_dir(const rep *r, int i, int sw, int s)
{
    return r->in->run_dir[(i * r->nsw + sw) * r->in->seeds + s - 1];
}

/* ---- the header ------------------------------------------------------------------------------- */
/* The command as a shell would take it again: words that need it in single quotes. */
static void command_line(rep *r)
{
    ts_sbuf c = {0};
    ts_sb_printf(&c, "tessera compare");
    for (int i = 0; i < r->in->argc; i++) {
        const char *a = r->in->argv[i];
        int plain = *a && strspn(a, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"
                                    "0123456789._/=,@:+-") == strlen(a);
        ts_sb_printf(&c, " %s", plain ? "" : "'");
        for (const char *p = a; *p; p++) {
            if (*p == '\'') ts_sb_printf(&c, "'\\''");
            else ts_sb_printf(&c, "%c", *p == '\n' || *p == '\r' || *p == '\t' ? ' ' : *p);
        }
        if (!plain) ts_sb_printf(&c, "'");
    }
    /* a code span of more backticks than any run inside it */
    int run = 0, most = 0;
    for (const char *p = c.s; *p; p++) {
        run = *p == '`' ? run + 1 : 0;
        if (run > most) most = run;
    }
    ts_sb_printf(&r->md, "- Command: ");
    for (int i = 0; i <= most; i++) ts_sb_printf(&r->md, "`");
    ts_sb_printf(&r->md, "%s%s%s", most ? " " : "", c.s, most ? " " : "");
    for (int i = 0; i <= most; i++) ts_sb_printf(&r->md, "`");
    ts_sb_printf(&r->md, "\n");
    free(c.s);
}

/* How many finished runs were run now (their metrics.json is newer than the comparison's start)
 * and their wall time summed over every finished run. */
static void run_counts(const rep *r, int *fresh, int *old, double *seconds)
{
    *fresh = *old = 0;
    *seconds = 0;
    for (int i = 0; i < r->in->nexp; i++)
        for (int sw = 0; sw < r->nsw; sw++)
            for (int s = 1; s <= r->in->seeds; s++) {
                const char *d = run_dir(r, i, sw, s);
                char p[TS_PATH_MAX + 16];
                struct stat sb;
                if (!d) continue;
                snprintf(p, sizeof p, "%s/metrics.json", d);
                if (stat(p, &sb)) continue;
                double t = (double)sb.st_mtim.tv_sec + sb.st_mtim.tv_nsec * 1e-9;
                if (t >= r->in->started) (*fresh)++;
                else (*old)++;
                ts_series *se = ts_agg_find(&r->ag[i], "train.run.seconds");
                double v = se ? se->v[sw * r->in->seeds + s - 1] : NAN;
                if (isfinite(v)) *seconds += v;
            }
}

static void header(rep *r)
{
    const ts_report_in *in = r->in;
    char commit[256], machine[1024], date[64], took[64], sum[64];
    ts_sb_printf(&r->md, "# %s\n\n", md_text(in->title));
    if (in->description && *in->description) ts_sb_printf(&r->md, "%s\n\n", md_text(in->description));
    command_line(r);
    ts_source_commit(commit, sizeof commit);
    ts_machine(machine, sizeof machine);
    ts_sb_printf(&r->md, "- tessera %s, commit %s\n- Machine: %s\n", PACKAGE_VERSION, commit,
                 md_text(machine));
    time_t now = time(NULL);
    struct tm tm;
    gmtime_r(&now, &tm);
    strftime(date, sizeof date, "%Y-%m-%d %H:%M UTC", &tm);
    int fresh, old;
    double seconds;
    run_counts(r, &fresh, &old, &seconds);
    duration(took, sizeof took, ts_wall_clock() - in->started);
    duration(sum, sizeof sum, seconds);
    ts_sb_printf(&r->md, "- Date: %s; the comparison took %s (%d run%s run now, %d reused from "
                 "before, %d failed); the finished runs' own wall times add up to %s\n", date, took,
                 fresh, fresh == 1 ? "" : "s", old, in->failed, sum);
    ts_sb_printf(&r->md, "- %d seed%s per experiment%s. Each figure is the mean ± the sample "
                 "standard deviation over seeds (n = number of runs that finished).\n\n",
                 in->seeds, in->seeds > 1 ? "s" : "", in->quick ? ", **quick mode** (fewer epochs "
                 "or less data: figures are below the full runs')" : "");
}

/* ---- a group: experiments on the same data ---------------------------------------------------- */
/* The test figures of the group's table: reportable test keys of any member, in order. */
static int group_keys(rep *r, group *g)
{
    int cap = 0;
    for (int k = 0; k < g->nm; k++) cap += r->ag[g->m[k]].n;
    g->key = malloc((size_t)(cap ? cap : 1) * sizeof *g->key);
    if (!g->key) return -1;
    g->nk = 0;
    for (int k = 0; k < g->nm; k++)
        for (int j = 0; j < r->ag[g->m[k]].n; j++) {
            const char *key = r->ag[g->m[k]].s[j].key;
            if (strncmp(key, "test.", 5) || !reportable(key)) continue;
            int seen = 0;
            for (int i = 0; i < g->nk && !seen; i++) seen = !strcmp(g->key[i], key);
            if (!seen) snprintf(g->key[g->nk++], 160, "%s", key);
        }
    return 0;
}

/* 1 when key is "test.TASK.METRIC" of task (pre = "test.TASK.", pl its length). */
static int task_key(const char *key, const char *pre, int pl)
{
    return !strncmp(key, pre, (size_t)pl) && !strchr(key + pl, '.');
}

/* The runs (member, sweep value, seed) that have a test figure of the task; the seeds among
 * them go to *seeds. */
static int task_runs(const rep *r, const group *g, const char *pre, int pl, int *seeds)
{
    int runs = 0, S = r->in->seeds;
    *seeds = 0;
    for (int s = 0; s < S; s++) {
        int seed_has = 0;
        for (int k = 0; k < g->nm; k++) {
            const ts_agg *a = &r->ag[g->m[k]];
            for (int sw = 0; sw < r->nsw; sw++) {
                int has = 0, i = sw * S + s;
                for (int j = 0; j < a->n && !has; j++)
                    has = task_key(a->s[j].key, pre, pl) && !isnan(a->s[j].v[i]);
                runs += has;
                seed_has |= has;
            }
        }
        *seeds += seed_has;
    }
    return runs;
}

/* 1 when no member's configuration gives the head a loss (`[head.TASK] loss =`). */
static int lossless(const rep *r, const group *g, const char *task)
{
    char key[TS_NAME_MAX + 16];
    snprintf(key, sizeof key, "head.%s.loss", task);
    for (int k = 0; k < g->nm; k++)
        if (ts_conf_get(&r->conf[g->m[k]], key)) return 0;
    return 1;
}

/* 1 when figure key has one value at each sweep value over every run of every member. */
static int same_everywhere(const rep *r, const group *g, const char *key)
{
    int S = r->in->seeds;
    for (int sw = 0; sw < r->nsw; sw++) {
        double ref = NAN;
        for (int k = 0; k < g->nm; k++) {
            const ts_series *o = ts_agg_find(&r->ag[g->m[k]], key);
            for (int s = 0; o && s < S; s++) {
                double w = o->v[sw * S + s];
                if (isnan(w)) continue;
                if (isnan(ref)) ref = w;
                else if (w != ref) return 0;
            }
        }
    }
    return 1;
}

/* A baseline: a head that does not train (BM25, popularity). Its test figures are the same in
 * every run of every member that has them, at each sweep value, over two runs or more; and
 * either two seeds or more gave them (so the seed changes nothing) or no member gives the head a
 * loss (with one seed, experiments that differ in nothing but their names also agree). */
static int constant_task(const rep *r, const group *g, const char *task)
{
    char pre[TS_NAME_MAX + 8];
    int pl = snprintf(pre, sizeof pre, "test.%s.", task), seeds;
    for (int k = 0; k < g->nm; k++) {
        const ts_agg *a = &r->ag[g->m[k]];
        for (int j = 0; j < a->n; j++)
            if (task_key(a->s[j].key, pre, pl) && !same_everywhere(r, g, a->s[j].key)) return 0;
    }
    return task_runs(r, g, pre, pl, &seeds) >= 2 && (seeds >= 2 || lossless(r, g, task));
}

static int group_baselines(rep *r, group *g)
{
    g->base = malloc((size_t)(g->nk ? g->nk : 1) * sizeof *g->base);
    if (!g->base) return -1;
    g->nbase = 0;
    for (int k = 0; k < g->nk; k++) {
        char task[TS_NAME_MAX];
        key_task(g->key[k], task, sizeof task);
        if (task[0] && !in_list(g->base, g->nbase, task) && constant_task(r, g, task))
            snprintf(g->base[g->nbase++], TS_NAME_MAX, "%s", task);
    }
    return 0;
}

/* What a reader cut for the neural fields (train.data.*, from its aux "report"): the lexical
 * baselines read the whole text, so the report says when they saw more. */
static int data_note(const rep *r, int i, char *buf, size_t n)
{
    const ts_agg *a = &r->ag[i];
    ts_series *qc = ts_agg_find(a, "train.data.queries_cut"), *dc = ts_agg_find(a, "train.data.docs_cut"),
              *qw = ts_agg_find(a, "train.data.max_words"), *dw = ts_agg_find(a, "train.data.doc_max_words");
    double q = qc ? qc->v[0] : 0, d = dc ? dc->v[0] : 0;
    if (!(q > 0 || d > 0) || !qw || !dw) return 0;
    snprintf(buf, n, "the neural fields keep %.0f words of a query and %.0f of a document (%.0f "
             "queries and %.0f documents were longer and were cut); the lexical heads (BM25) read "
             "the whole text.", qw->v[0], dw->v[0], q, d);
    return 1;
}

/* Each note once, after the experiments it is about. */
static void data_notes(rep *r, const group *g)
{
    char note[512], other[512];
    int *done = calloc((size_t)g->nm, sizeof *done);
    for (int k = 0; done && k < g->nm; k++) {
        if (done[k] || !data_note(r, g->m[k], note, sizeof note)) continue;
        ts_sb_printf(&r->md, "_%s", md_text(r->in->exp[g->m[k]].name));
        for (int j = k + 1; j < g->nm; j++)
            if (!done[j] && data_note(r, g->m[j], other, sizeof other) && !strcmp(note, other)) {
                ts_sb_printf(&r->md, ", %s", md_text(r->in->exp[g->m[j]].name));
                done[j] = 1;
            }
        ts_sb_printf(&r->md, ": %s_\n\n", note);
    }
    free(done);
}

/* The table header "| first | exp1 | exp2 |" and its rule. */
static void table_head(rep *r, const group *g, const char *first)
{
    ts_sb_printf(&r->md, "| %s |", first);
    for (int k = 0; k < g->nm; k++) ts_sb_printf(&r->md, " %s |", md_text(r->in->exp[g->m[k]].name));
    ts_sb_printf(&r->md, "\n|---|");
    for (int k = 0; k < g->nm; k++) ts_sb_printf(&r->md, "---|");
    ts_sb_printf(&r->md, "\n");
}

/* What differs between the group's experiments: the resolved keys (identity.txt) whose values
 * are not the same in all, name and seed left out (and the swept key, shown per sweep value). */
static int write_diff(rep *r, const group *g)
{
    if (g->nm < 2) return 0;
    const char *skip[] = {"experiment.name", "experiment.seed", "experiment.description",
                          "experiment.quick", r->in->sweep_key, NULL};
    const ts_conf **c = malloc((size_t)g->nm * sizeof *c);
    if (!c) return -1;
    int missing = 0;
    for (int k = 0; k < g->nm; k++) {
        c[k] = &r->conf[g->m[k]];
        missing += !c[k]->n;
    }
    ts_diff_row *rows;
    int nr = ts_conf_diff(c, g->nm, skip, &rows);
    if (nr < 0) { free(c); return -1; }
    if (!nr)
        ts_sb_printf(&r->md, "**What differs**: nothing in the experiments' resolved "
                     "configurations (name and seed aside).\n\n");
    else {
        ts_sb_printf(&r->md, "**What differs** between these experiments (their resolved "
                     "configurations, defaults included; `[section]`: a section only some have):\n\n");
        table_head(r, g, "key");
    }
    for (int i = 0; i < nr; i++) {
        ts_sb_printf(&r->md, rows[i].section ? "| `[%s]` |" : "| %s |", md_text(rows[i].key));
        for (int k = 0; k < g->nm; k++) {
            const char *v = ts_diff_cell(c[k], &rows[i]);
            ts_sb_printf(&r->md, " %s |", !c[k]->n ? "?" : v ? md_text(v) : "–");
        }
        ts_sb_printf(&r->md, "\n");
    }
    if (nr) ts_sb_printf(&r->md, "\n");
    if (missing)
        ts_sb_printf(&r->md, "_?: no finished run of that experiment to read its configuration "
                     "from._\n\n");
    free(rows);
    free(c);
    return 0;
}

/* ---- a sweep value's tables ------------------------------------------------------------------- */
/* Values of one figure of experiment i at sweep value sw; their number. */
static int values(const rep *r, int i, const char *key, int sw, double *v)
{
    return ts_series_values(&r->ag[i], ts_agg_find(&r->ag[i], key), sw, v);
}

/* A cell "mean ± sd" of key (fmt: the printf of one number), "–" without a value. */
static void cell(rep *r, int i, const char *key, int sw, const char *fmt, double *v)
{
    double mean, sd;
    int n = values(r, i, key, sw, v);
    if (!n) { ts_sb_printf(&r->md, " – |"); return; }
    ts_mean_std(v, n, &mean, &sd);
    ts_sb_printf(&r->md, " ");
    ts_sb_printf(&r->md, fmt, mean);
    if (n > 1) { ts_sb_printf(&r->md, " ± "); ts_sb_printf(&r->md, fmt, sd); }
    ts_sb_printf(&r->md, " |");
}

/* The runs: how many finished, parameters, best epoch per seed, wall time and speed per run. */
static void write_runs(rep *r, const group *g, int sw, double *v)
{
    ts_sb_printf(&r->md, "**Runs** (parameters: trainable weights; best epoch: the epoch whose "
                 "weights were kept, per seed; wall time and examples/s: per run, mean ± sd):\n\n");
    table_head(r, g, "run");
    static const char *const rows[] = {"runs finished", "parameters", "best epoch",
                                       "wall time per run", "examples/s (training)", NULL};
    for (int row = 0; rows[row]; row++) {
        ts_sb_printf(&r->md, "| %s |", rows[row]);
        for (int k = 0; k < g->nm; k++) {
            int i = g->m[k], n;
            char buf[64];
            if (row == 0) {
                n = 0;
                for (int s = 1; s <= r->in->seeds; s++) n += run_dir(r, i, sw, s) != NULL;
                ts_sb_printf(&r->md, " %d |", n);
            } else if (row == 1) {
                n = values(r, i, "train.run.params", sw, v);
                if (n) thousands(buf, sizeof buf, v[0]);
                ts_sb_printf(&r->md, " %s |", n ? buf : "–");
            } else if (row == 2) {
                ts_series *se = ts_agg_find(&r->ag[i], "train.run.best_epoch");
                ts_sb_printf(&r->md, " ");
                for (int s = 0; s < r->in->seeds; s++) {
                    double e = se ? se->v[sw * r->in->seeds + s] : NAN;
                    if (isfinite(e)) ts_sb_printf(&r->md, "%s%.0f", s ? ", " : "", e);
                    else ts_sb_printf(&r->md, "%s–", s ? ", " : "");
                }
                ts_sb_printf(&r->md, " |");
            } else if (row == 3) {
                double mean, sd;
                n = values(r, i, "train.run.seconds", sw, v);
                if (n) ts_mean_std(v, n, &mean, &sd);
                if (n) duration(buf, sizeof buf, mean);
                ts_sb_printf(&r->md, " %s", n ? buf : "–");
                if (n > 1) { duration(buf, sizeof buf, sd); ts_sb_printf(&r->md, " ± %s", buf); }
                ts_sb_printf(&r->md, " |");
            } else {
                cell(r, i, "train.run.examples_per_sec", sw, "%.0f", v);
            }
        }
        ts_sb_printf(&r->md, "\n");
    }
    ts_sb_printf(&r->md, "\n");
}

/* Test figures, one row per figure and one column per experiment (reads down a column,
 * compares across a row); baselines are left to their own table. */
static void write_figures(rep *r, const group *g, int sw, double *v)
{
    ts_sb_printf(&r->md, "**Test figures**:\n\n");
    table_head(r, g, "figure");
    ts_sb_printf(&r->md, "| runs finished |");
    for (int k = 0; k < g->nm; k++) {
        int n = 0;
        for (int s = 1; s <= r->in->seeds; s++) n += run_dir(r, g->m[k], sw, s) != NULL;
        ts_sb_printf(&r->md, " %d |", n);
    }
    ts_sb_printf(&r->md, "\n");
    for (int j = 0; j < g->nk; j++) {
        if (is_base_key(g, g->key[j])) continue;
        ts_sb_printf(&r->md, "| %s |", g->key[j] + 5);
        for (int k = 0; k < g->nm; k++) cell(r, g->m[k], g->key[j], sw, "%.4f", v);
        ts_sb_printf(&r->md, "\n");
    }
    ts_sb_printf(&r->md, "\n");
}

/* Baselines once: a figure that is the same in every run of every experiment of the group. */
static void write_baselines(rep *r, const group *g, int sw, double *v)
{
    if (!g->nbase) return;
    ts_sb_printf(&r->md, "**Baselines** (heads that do not train: the same figure in every run of "
                 "every experiment above, so it is shown once):\n\n| figure | value | runs |\n"
                 "|---|---|---|\n");
    for (int j = 0; j < g->nk; j++) {
        if (!is_base_key(g, g->key[j])) continue;
        int runs = 0;
        double first = NAN;
        for (int k = 0; k < g->nm; k++) {
            int n = values(r, g->m[k], g->key[j], sw, v);
            if (n && !runs) first = v[0];
            runs += n;
        }
        if (runs) ts_sb_printf(&r->md, "| %s | %.4f | %d |\n", g->key[j] + 5, first, runs);
    }
    ts_sb_printf(&r->md, "\n");
}

/* summary.csv: every validation and test figure and the runs' costs of each experiment. */
static void write_csv(rep *r, const group *g, int sw, double *v)
{
    for (int k = 0; k < g->nm; k++) {
        int i = g->m[k];
        const ts_agg *a = &r->ag[i];
        for (int j = 0; j < a->n; j++) {
            const char *key = a->s[j].key;
            if (!reportable(key) && strcmp(key, "train.run.examples_per_sec") &&
                strcmp(key, "train.run.seconds") && strcmp(key, "train.run.params") &&
                strcmp(key, "train.run.best_epoch"))
                continue;
            double mean, sd;
            int n = ts_series_values(a, &a->s[j], sw, v);
            if (!n) continue;
            ts_mean_std(v, n, &mean, &sd);
            ts_sb_printf(&r->csv, "%s,%s,%s%s%s,%d,%.9g,%.9g,", csv_field(r->in->exp[i].name),
                         csv_field(g->data), r->in->nsweep ? csv_field(r->in->sweep_val[sw]) : "",
                         r->in->nsweep ? "," : "", csv_field(key), n, mean, sd);
            for (int s = 0; s < n; s++) ts_sb_printf(&r->csv, "%s%.9g", s ? " " : "", v[s]);
            ts_sb_printf(&r->csv, "\n");
        }
    }
}

/* Paired t-tests between members, seed by seed, on each headline figure. */
static void write_ttests(rep *r, const group *g, int sw)
{
    if (g->nm < 2) return;
    if (r->in->seeds < 2) {
        ts_sb_printf(&r->md, "_One seed: no significance test (run with --seeds 3 or more)._\n\n");
        return;
    }
    ts_sb_printf(&r->md, "Paired t-test over seeds (two-sided; a − b):\n\n| metric | a | b | "
                 "mean a − b | t | p |\n|---|---|---|---|---|---|\n");
    int S = r->in->seeds;
    for (int j = 0; j < g->nk; j++) {
        if (!headline(g->key[j]) || is_base_key(g, g->key[j])) continue;
        for (int a = 0; a < g->nm; a++)
            for (int b = a + 1; b < g->nm; b++) {
                ts_series *sa = ts_agg_find(&r->ag[g->m[a]], g->key[j]),
                          *sb = ts_agg_find(&r->ag[g->m[b]], g->key[j]);
                if (!sa || !sb) continue;
                double va[64], vb[64], d[64], t, p, md, sd;
                int n = 0;
                for (int s = 0; s < S && n < 64; s++)
                    if (isfinite(sa->v[sw * S + s]) && isfinite(sb->v[sw * S + s])) {
                        va[n] = sa->v[sw * S + s];
                        vb[n++] = sb->v[sw * S + s];
                    }
                if (ts_paired_t(va, vb, n, &t, &p)) continue;
                for (int s = 0; s < n; s++) d[s] = va[s] - vb[s];
                ts_mean_std(d, n, &md, &sd);
                if (md == 0 && sd == 0) continue;   /* the same figure */
                const char *na = r->in->exp[g->m[a]].name, *nb = r->in->exp[g->m[b]].name;
                ts_sb_printf(&r->md, "| %s | %s | %s | %+.4f | %.2f | %.3g%s |\n", g->key[j] + 5,
                             md_text(na), md_text(nb), md, t, p, p < 0.05 ? " *" : "");
                ts_sb_printf(&r->sig, "%s,%s,%s,%s,%d,%.9g,%.6g,%.6g\n", csv_field(g->data),
                             csv_field(g->key[j]), csv_field(na), csv_field(nb), n, md, t, p);
            }
    }
    ts_sb_printf(&r->md, "\n(* p < 0.05; with few seeds the test has little power: read the "
                 "differences with their spread.)\n\n");
}

/* Each trained head against each baseline of the group on the same ranking figure (ndcg@10,
 * recall@10, recall@50, mrr, per_user_loss), seed by seed within the same runs: the ranking stage against the
 * candidate order it re-ranks, a recall model against popularity. A baseline is the same in every
 * run, so this is the t-test of the seeds' differences from it. */
static int vs_base_metric(const char *key)
{
    static const char *const m[] = {".ndcg@10", ".recall@10", ".recall@50", ".mrr", ".per_user_loss", NULL};
    const char *k = strrchr(key, '.');
    for (int i = 0; k && m[i]; i++) if (!strcmp(k, m[i])) return !strncmp(key, "test.", 5);
    return 0;
}

static void write_base_ttests(rep *r, const group *g, int sw)
{
    int S = r->in->seeds, rows = 0;
    if (!g->nbase || S < 2) return;
    for (int a = 0; a < g->nm; a++)
        for (int j = 0; j < g->nk; j++) {
            if (!vs_base_metric(g->key[j]) || is_base_key(g, g->key[j])) continue;
            for (int b = 0; b < g->nk; b++) {
                if (!is_base_key(g, g->key[b]) || strcmp(strrchr(g->key[b], '.'), strrchr(g->key[j], '.')))
                    continue;
                ts_series *sa = ts_agg_find(&r->ag[g->m[a]], g->key[j]),
                          *sb = ts_agg_find(&r->ag[g->m[a]], g->key[b]);
                if (!sa || !sb) continue;
                double va[64], vb[64], d[64], t, p, md, sd;
                int n = 0;
                for (int s = 0; s < S && n < 64; s++)
                    if (isfinite(sa->v[sw * S + s]) && isfinite(sb->v[sw * S + s])) {
                        va[n] = sa->v[sw * S + s];
                        vb[n++] = sb->v[sw * S + s];
                    }
                if (ts_paired_t(va, vb, n, &t, &p)) continue;
                for (int s = 0; s < n; s++) d[s] = va[s] - vb[s];
                ts_mean_std(d, n, &md, &sd);
                if (sd == 0) continue;
                if (!rows++)
                    ts_sb_printf(&r->md, "Against the baselines: paired t-test over seeds (two-sided; "
                                 "a trained head's figure − the baseline's, in the same runs):\n\n"
                                 "| metric | experiment | baseline | mean − baseline | t | p |\n"
                                 "|---|---|---|---|---|---|\n");
                const char *na = r->in->exp[g->m[a]].name;
                ts_sb_printf(&r->md, "| %s | %s | %s | %+.4f | %.2f | %.3g%s |\n", g->key[j] + 5,
                             md_text(na), md_text(g->key[b] + 5), md, t, p, p < 0.05 ? " *" : "");
                ts_sb_printf(&r->sig, "%s,%s,%s,%s,%d,%.9g,%.6g,%.6g\n", csv_field(g->data),
                             csv_field(g->key[j]), csv_field(na), csv_field(g->key[b]), n, md, t, p);
            }
        }
    if (rows) ts_sb_printf(&r->md, "\n");
}

/* ---- across sweep values ---------------------------------------------------------------------- */
/* One row of per-seed wins: on how many seeds a beats b at each sweep value. */
static void wins_row(rep *r, const group *g, const char *key, int a, int b)
{
    int S = r->in->seeds, low = lower_better(key);
    ts_series *sa = ts_agg_find(&r->ag[g->m[a]], key), *sb = ts_agg_find(&r->ag[g->m[b]], key);
    if (!sa || !sb) return;
    int same = 1;
    for (int i = 0; i < r->nsw * S; i++)
        if (isfinite(sa->v[i]) && sa->v[i] != sb->v[i]) same = 0;
    if (same) return;   /* the same figure: nothing to compare */
    ts_sb_printf(&r->md, "| %s | %s | %s |", key + 5, md_text(r->in->exp[g->m[a]].name),
                 md_text(r->in->exp[g->m[b]].name));
    for (int sw = 0; sw < r->nsw; sw++) {
        int wins = 0, n = 0;
        for (int s = 0; s < S; s++) {
            double va = sa->v[sw * S + s], vb = sb->v[sw * S + s];
            if (!isfinite(va) || !isfinite(vb)) continue;
            n++;
            wins += low ? va < vb : va > vb;
        }
        if (n) ts_sb_printf(&r->md, " %d/%d |", wins, n);
        else ts_sb_printf(&r->md, " – |");
    }
    ts_sb_printf(&r->md, "\n");
}

static void write_wins(rep *r, const group *g)
{
    if (g->nm < 2 || r->in->seeds < 2) return;
    ts_sb_printf(&r->md, "**Per-seed comparison**: seeds on which a beats b (the same seed%s; "
                 "lower is better for errors and losses, higher for the rest):\n\n| metric | a | b |",
                 r->in->nsweep ? " and sweep value" : "");
    for (int sw = 0; sw < r->nsw; sw++) {
        if (r->in->nsweep) ts_sb_printf(&r->md, " %s = %s |", r->in->sweep_key, md_text(r->in->sweep_val[sw]));
        else ts_sb_printf(&r->md, " a wins |");
    }
    ts_sb_printf(&r->md, "\n|---|---|---|");
    for (int sw = 0; sw < r->nsw; sw++) ts_sb_printf(&r->md, "---|");
    ts_sb_printf(&r->md, "\n");
    for (int j = 0; j < g->nk; j++) {
        if (!quality_metric(g->key[j]) || !headline(g->key[j]) || is_base_key(g, g->key[j])) continue;
        for (int a = 0; a < g->nm; a++)
            for (int b = a + 1; b < g->nm; b++) wins_row(r, g, g->key[j], a, b);
    }
    ts_sb_printf(&r->md, "\n");
}

/* ---- plots ------------------------------------------------------------------------------------ */
/* The group's baseline tasks as a NULL-terminated list (malloc). */
static const char **base_list(const group *g)
{
    const char **b = calloc((size_t)g->nbase + 1, sizeof *b);
    for (int i = 0; b && i < g->nbase; i++) b[i] = g->base[i];
    return b;
}

/* Loss and validation curves at the first sweep value: each experiment's mean over its seeds. */
static void plot_loss(rep *r, const group *g)
{
    ts_curve_set *sets = calloc((size_t)g->nm, sizeof *sets);
    char **dirs = calloc((size_t)(g->nm * r->in->seeds), sizeof *dirs);
    const char **base = base_list(g);
    int n = 0, nd = 0;
    for (int k = 0; sets && dirs && base && k < g->nm; k++) {
        int first = nd;
        for (int s = 1; s <= r->in->seeds; s++)
            if (run_dir(r, g->m[k], 0, s)) dirs[nd++] = (char *)run_dir(r, g->m[k], 0, s);
        if (nd > first) sets[n++] = (ts_curve_set){r->in->exp[g->m[k]].name, dirs + first, nd - first};
    }
    char png[TS_PATH_MAX + 64], fname[64], title[1024];
    snprintf(fname, sizeof fname, "loss_%d.png", g->no);
    snprintf(png, sizeof png, "%s/%s", r->plots, fname);
    snprintf(title, sizeof title, "loss and validation curves on %s (%d seed%s%s%s%s%s)", g->data,
             r->in->seeds, r->in->seeds > 1 ? "s" : "", r->in->nsweep ? ", " : "",
             r->in->nsweep ? r->in->sweep_key : "", r->in->nsweep ? " = " : "",
             r->in->nsweep ? r->in->sweep_val[0] : "");
    if (n && !ts_plot_curves("tessera compare", sets, n, base, png, title))
        link_plot(r, "loss and validation curves", fname);
    free(sets);
    free(dirs);
    free(base);
}

/* A figure per experiment for each headline test figure (and training speed); the baselines of
 * the same metric as dashed lines. */
static void plot_figures(rep *r, const group *g, double *v)
{
    char (*names)[TS_NAME_MAX] = calloc((size_t)g->nm, sizeof *names);
    char (*bnames)[TS_NAME_MAX] = calloc((size_t)g->nbase + 1, sizeof *bnames);
    double *mean = calloc((size_t)g->nm + (size_t)g->nbase + 1, sizeof *mean),
           *sd = calloc((size_t)g->nm, sizeof *sd), *bval = mean + g->nm;
    for (int j = 0; names && bnames && mean && sd && j <= g->nk; j++) {
        const char *key = j < g->nk ? g->key[j] : "train.run.examples_per_sec";
        if (j < g->nk && (!headline(key) || is_base_key(g, key))) continue;
        int n = 0, nb = 0;
        for (int k = 0; k < g->nm; k++) {
            int c = values(r, g->m[k], key, 0, v);
            if (!c) continue;
            snprintf(names[n], TS_NAME_MAX, "%s", r->in->exp[g->m[k]].name);
            ts_mean_std(v, c, &mean[n], &sd[n]);
            n++;
        }
        const char *metric = strrchr(key, '.');
        for (int b = 0; j < g->nk && b < g->nbase; b++) {   /* baselines of the same metric */
            char bkey[TS_NAME_MAX + 160];
            snprintf(bkey, sizeof bkey, "test.%s%s", g->base[b], metric);
            for (int k = 0; k < g->nm && !(nb && !strcmp(bnames[nb - 1], g->base[b])); k++)
                if (values(r, g->m[k], bkey, 0, v)) {
                    snprintf(bnames[nb], TS_NAME_MAX, "%s", g->base[b]);
                    bval[nb++] = v[0];
                }
        }
        if (!n) continue;
        char fname[200], part[160], png[TS_PATH_MAX + 256], title[512];
        ts_file_part(part, sizeof part, key);
        snprintf(fname, sizeof fname, "bar_%d_%s.png", g->no, part);
        snprintf(png, sizeof png, "%s/%s", r->plots, fname);
        snprintf(title, sizeof title, "%s on %s (mean ± std over %d seed%s)", key, g->data,
                 r->in->seeds, r->in->seeds > 1 ? "s" : "");
        const char *unit = j == g->nk ? "examples per second (training)" : key;
        if (!ts_plot_bars(png, title, unit, names, mean, sd, n, bnames, bval, nb))
            link_plot(r, key, fname);
    }
    free(names);
    free(bnames);
    free(mean);
    free(sd);
}

/* A sweep: each test figure against the swept value, a line per experiment (a baseline once). */
static void plot_sweeps(rep *r, const group *g, double *v)
{
    int W = r->nsw;
    char (*names)[TS_NAME_MAX] = calloc((size_t)g->nm, sizeof *names);
    double *mean = calloc((size_t)(g->nm * W), sizeof *mean), *sd = calloc((size_t)(g->nm * W), sizeof *sd);
    for (int j = 0; names && mean && sd && j < g->nk; j++) {
        if (!quality_metric(g->key[j])) continue;
        int base = is_base_key(g, g->key[j]), n = 0;
        for (int k = 0; k < g->nm && !(base && n); k++) {
            if (!ts_agg_find(&r->ag[g->m[k]], g->key[j])) continue;
            snprintf(names[n], TS_NAME_MAX, base ? "baseline (the same in every experiment)" : "%s",
                     r->in->exp[g->m[k]].name);
            for (int sw = 0; sw < W; sw++) {
                int c = values(r, g->m[k], g->key[j], sw, v);
                mean[n * W + sw] = sd[n * W + sw] = NAN;
                if (c) ts_mean_std(v, c, &mean[n * W + sw], &sd[n * W + sw]);
            }
            n++;
        }
        if (!n) continue;
        char fname[200], ylabel[256], part[160], png[TS_PATH_MAX + 256], title[512], xlabel[200];
        ts_file_part(part, sizeof part, g->key[j]);
        snprintf(fname, sizeof fname, "sweep_%d_%s.png", g->no, part);
        snprintf(png, sizeof png, "%s/%s", r->plots, fname);
        snprintf(title, sizeof title, "%s against %s, data: %s (mean ± std over %d seed%s)",
                 g->key[j] + 5, r->in->sweep_key, g->data, r->in->seeds, r->in->seeds > 1 ? "s" : "");
        snprintf(xlabel, sizeof xlabel, "%s (the swept value)", r->in->sweep_key);
        if (!ts_plot_sweep(png, title, xlabel, ts_metric_axis(g->key[j], ylabel, sizeof ylabel),
                           r->in->sweep_val, W, names, mean, sd, n)) {
            char alt[400];
            snprintf(alt, sizeof alt, "%s against %s", g->key[j], r->in->sweep_key);
            link_plot(r, alt, fname);
        }
    }
    free(names);
    free(mean);
    free(sd);
}

/* Gate usage of each mixture-of-experts experiment (seed 1; one column per sweep value). */
static void plot_gate_maps(rep *r, const group *g)
{
    char **dirs = calloc((size_t)r->nsw, sizeof *dirs), **subs = calloc((size_t)r->nsw, sizeof *subs);
    for (int k = 0; dirs && subs && k < g->nm; k++) {
        int i = g->m[k], nd = 0;
        for (int sw = 0; sw < r->nsw; sw++) {
            const char *d = run_dir(r, i, sw, 1);
            if (!d) continue;
            dirs[nd] = (char *)d;
            subs[nd] = malloc(160);
            if (!subs[nd]) break;
            if (r->in->nsweep) snprintf(subs[nd], 160, "%s = %s", r->in->sweep_key, r->in->sweep_val[sw]);
            else snprintf(subs[nd], 160, "seed 1");
            nd++;
        }
        char fname[200], part[160], png[TS_PATH_MAX + 256], title[512];
        ts_file_part(part, sizeof part, r->in->exp[i].name);
        snprintf(fname, sizeof fname, "gates_%d_%s.png", g->no, part);
        snprintf(png, sizeof png, "%s/%s", r->plots, fname);
        snprintf(title, sizeof title, "%s: mean gate weight per gate and expert on the test split "
                 "(uniform gate = 1 / its experts)", r->in->exp[i].name);
        if (nd && !ts_plot_gates(png, title, dirs, subs, nd)) {
            char alt[200];
            snprintf(alt, sizeof alt, "gate usage of %s", r->in->exp[i].name);
            link_plot(r, alt, fname);
        }
        for (int j = 0; j < nd; j++) free(subs[j]);
    }
    free(dirs);
    free(subs);
}

/* Recall@K against K, for experiments that report recall@K, at each sweep value. */
static void plot_recalls(rep *r, const group *g)
{
    const char **labels = calloc((size_t)g->nm, sizeof *labels), **base = base_list(g);
    ts_agg **ag = calloc((size_t)g->nm, sizeof *ag);
    for (int k = 0; labels && ag && k < g->nm; k++) {
        labels[k] = r->in->exp[g->m[k]].name;
        ag[k] = &r->ag[g->m[k]];
    }
    for (int sw = 0; labels && ag && base && sw < r->nsw; sw++) {
        char fname[200], png[TS_PATH_MAX + 256], title[512];
        if (r->in->nsweep) snprintf(fname, sizeof fname, "recall_%d_%d.png", g->no, sw + 1);
        else snprintf(fname, sizeof fname, "recall_%d.png", g->no);
        snprintf(png, sizeof png, "%s/%s", r->plots, fname);
        int len = snprintf(title, sizeof title, "Recall@K, data: %s (mean ± std over %d seed%s)",
                           g->data, r->in->seeds, r->in->seeds > 1 ? "s" : "");
        if (r->in->nsweep && len < (int)sizeof title)
            snprintf(title + len, sizeof title - len, " at %s = %s", r->in->sweep_key, r->in->sweep_val[sw]);
        if (!ts_plot_recall(png, title, labels, ag, g->nm, sw, base)) link_plot(r, "Recall@K", fname);
    }
    free(labels);
    free(base);
    free(ag);
}

/* ---- the whole report ------------------------------------------------------------------------- */
static void write_group(rep *r, group *g, double *v)
{
    ts_sb_printf(&r->md, "## Data: %s\n\n", md_text(g->data));
    data_notes(r, g);
    write_diff(r, g);
    for (int sw = 0; sw < r->nsw; sw++) {
        if (r->in->nsweep)
            ts_sb_printf(&r->md, "### %s = %s\n\n", r->in->sweep_key, md_text(r->in->sweep_val[sw]));
        write_runs(r, g, sw, v);
        write_figures(r, g, sw, v);
        write_baselines(r, g, sw, v);
        write_csv(r, g, sw, v);
        write_ttests(r, g, sw);
        write_base_ttests(r, g, sw);
    }
    write_wins(r, g);
    if (!r->have_gp) return;
    plot_loss(r, g);
    if (!r->in->nsweep) plot_figures(r, g, v);
    else plot_sweeps(r, g, v);
    plot_gate_maps(r, g);
    plot_recalls(r, g);
}

/* Reads every finished run's figures, and each experiment's configuration from its first
 * finished run (the sweep's first value where it has one). */
static int read_runs(rep *r)
{
    const ts_report_in *in = r->in;
    r->ag = calloc((size_t)in->nexp, sizeof *r->ag);
    r->conf = calloc((size_t)in->nexp, sizeof *r->conf);
    if (!r->ag || !r->conf) return -1;
    for (int i = 0; i < in->nexp; i++) {
        ts_agg_init(&r->ag[i], r->nsw, in->seeds);
        for (int sw = 0; sw < r->nsw; sw++)
            for (int s = 1; s <= in->seeds; s++) {
                const char *d = run_dir(r, i, sw, s);
                if (!d) continue;
                ts_agg_read(&r->ag[i], d, sw, s);
                if (!r->conf[i].n) ts_conf_read(d, &r->conf[i]);
            }
    }
    return 0;
}

static int save(const char *out, const char *name, const ts_sbuf *b)
{
    char path[TS_PATH_MAX + 32];
    ts_err e;
    snprintf(path, sizeof path, "%s/%s", out, name);
    if (!ts_write_atomic(path, b->s ? b->s : "", b->n, &e)) return 0;
    fprintf(stderr, "tessera compare: %s\n", e.msg);
    return -1;
}

int ts_report_write(const ts_report_in *in)
{
    rep r = {.in = in, .nsw = in->nsweep ? in->nsweep : 1};
    ts_err e;
    double *v = malloc((size_t)in->seeds * sizeof *v);
    int *gdone = calloc((size_t)in->nexp, sizeof *gdone), *members = calloc((size_t)in->nexp, sizeof *members);
    int rc = !v || !gdone || !members || read_runs(&r) ? -1 : 0;
    if (rc) fprintf(stderr, "tessera compare: out of memory while writing the report\n");
    snprintf(r.plots, sizeof r.plots, "%s/plots", in->out);
    if (!rc && (r.have_gp = ts_have_gnuplot()) && ts_mkdirs(r.plots, &e)) {
        fprintf(stderr, "tessera compare: %s; the report has no plots\n", e.msg);
        r.have_gp = 0;
    }
    if (!rc) {
        header(&r);
        if (!r.have_gp) ts_sb_printf(&r.md, "_gnuplot was not found: no plots (apt-get install gnuplot-nox)._\n\n");
        ts_sb_printf(&r.csv, "experiment,data,%s%smetric,n,mean,std,values\n",
                     in->nsweep ? csv_field(in->sweep_key) : "", in->nsweep ? "," : "");
        ts_sb_printf(&r.sig, "data,metric,a,b,n,mean_diff,t,p\n");
    }
    for (int i0 = 0, no = 0; !rc && i0 < in->nexp; i0++) {
        if (gdone[i0]) continue;
        group g = {.no = ++no, .data = in->exp[i0].group, .m = members};
        for (int i = i0; i < in->nexp; i++)
            if (!gdone[i] && !strcmp(in->exp[i].group, g.data)) { g.m[g.nm++] = i; gdone[i] = 1; }
        if (group_keys(&r, &g) || group_baselines(&r, &g)) rc = -1;
        else write_group(&r, &g, v);
        free(g.key);
        free(g.base);
    }
    if (!rc) rc = save(in->out, "report.md", &r.md) | save(in->out, "summary.csv", &r.csv) |
                  save(in->out, "significance.csv", &r.sig);
    for (int i = 0; r.ag && i < in->nexp; i++) ts_agg_free(&r.ag[i]);
    for (int i = 0; r.conf && i < in->nexp; i++) ts_conf_free(&r.conf[i]);
    free(r.ag);
    free(r.conf);
    free(r.md.s);
    free(r.csv.s);
    free(r.sig.s);
    free(v);
    free(gdone);
    free(members);
    return rc;
}
