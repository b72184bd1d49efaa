/* plots.c — what each figure of a comparison shows (loss and validation curves over seeds, a
 * figure per experiment, a figure against a swept value, gate maps, Recall@K against K) and
 * `tessera plot`. Every figure is a PNG with an SVG beside it (gnuplot.c draws them; no string
 * of a user is read as code there). What it is not: the report's text (report.c). */
#include "config.h"
#include "report.h"
#include "gates.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#define MAX_TASKS 16       /* tasks of one run drawn in the validation panels */
#define MAX_PANELS 5       /* validation panels (one per task) beside the training loss */

/* ---- curves over seeds ------------------------------------------------------------------------ */
/* A point of one run: at step (or epoch) `at`, x on the plot's axis, value y. */
typedef struct pt { double at, x, y; } pt;
typedef struct pts { pt *p; int n, cap; } pts;

static void pts_add(pts *v, double at, double x, double y)
{
    if (v->n == v->cap) {
        int cap = v->cap ? 2 * v->cap : 256;
        pt *t = realloc(v->p, (size_t)cap * sizeof *t);
        if (!t) return;   /* a shorter curve rather than none */
        v->p = t;
        v->cap = cap;
    }
    v->p[v->n++] = (pt){at, x, y};
}

static int cmp_at(const void *a, const void *b)
{
    double d = ((const pt *)a)->at - ((const pt *)b)->at;
    return d < 0 ? -1 : d > 0;
}

/* The points of several runs as "x mean min max" lines, one per distinct `at` (the same step of
 * every seed), in order; the mean is over the runs that reached it. */
static void pts_summary(pts *v, ts_sbuf *d)
{
    if (v->n) qsort(v->p, (size_t)v->n, sizeof *v->p, cmp_at);
    for (int i = 0; i < v->n;) {
        int j = i;
        double sum = 0, lo = INFINITY, hi = -INFINITY;
        for (; j < v->n && v->p[j].at == v->p[i].at; j++) {
            sum += v->p[j].y;
            if (v->p[j].y < lo) lo = v->p[j].y;
            if (v->p[j].y > hi) hi = v->p[j].y;
        }
        ts_sb_printf(d, "%.9g %.9g %.9g %.9g\n", v->p[i].x, sum / (j - i), lo, hi);
        i = j;
    }
}

/* The training curve of a run: train.csv's step, epoch and weighted total loss (columns 1, 2
 * and 4); rows that are not numbers (the header) are left out. */
static void read_train_curve(const char *dir, pts *v)
{
    char p[TS_PATH_MAX + 16];
    snprintf(p, sizeof p, "%s/train.csv", dir);
    ts_err e;
    ts_lines *r = ts_lines_open(p, &e);
    char *line;
    while (r && (line = ts_lines_next(r, NULL))) {
        char *fld[8];
        double step, x, y;
        if (ts_split(line, ",", fld, 7) >= 4 && ts_number(fld[0], &step) &&
            ts_number(fld[1], &x) && ts_number(fld[3], &y))
            pts_add(v, step, x, y);
    }
    if (r) ts_lines_close(r);
}

/* The validation rows of a run's eval.csv: "epoch,step,valid,TASK,METRIC,value". f(arg, task,
 * metric, epoch, value) is called for each. */
typedef void (*valid_fn)(void *arg, const char *task, const char *metric, double epoch, double y);
static void read_valid(const char *dir, valid_fn f, void *arg)
{
    char p[TS_PATH_MAX + 16];
    snprintf(p, sizeof p, "%s/eval.csv", dir);
    ts_err e;
    ts_lines *r = ts_lines_open(p, &e);
    char *line;
    while (r && (line = ts_lines_next(r, NULL))) {
        char *fld[8];
        double x, y;
        if (ts_split(line, ",", fld, 7) >= 6 && !strcmp(fld[2], "valid") &&
            ts_number(fld[0], &x) && ts_number(fld[5], &y))
            f(arg, fld[3], fld[4], x, y);
    }
    if (r) ts_lines_close(r);
}

typedef struct task_pick {   /* each task's best-ranked validation metric over every run */
    char task[MAX_TASKS][TS_NAME_MAX], metric[MAX_TASKS][TS_NAME_MAX];
    int rank[MAX_TASKS], n;
    char early[MAX_TASKS][TS_NAME_MAX];   /* the metrics early stopping watches ([train] early_stop) */
    int nearly;
} task_pick;

/* The metric a task's validation curve shows: one that early stopping watches (so a baseline
 * shows the figure its learned neighbour is chosen by), else the first of these it has (a head's
 * quality measure before its loss), else its first one that is not a count. -1: a count. */
static int metric_rank(const task_pick *tp, const char *m)
{
    static const char *const order[] = {"auc", "mrr", "map", "recall@50", "ndcg@10", "recall@10",
                                        "mse", "mae", "logloss", "loss", NULL};
    static const char *const counts[] = {"queries", "users", "rows", "positive_rate", NULL};
    for (int i = 0; counts[i]; i++)
        if (!strcmp(m, counts[i])) return -1;
    for (int i = 0; i < tp->nearly; i++)
        if (!strcmp(m, tp->early[i])) return i;
    for (int i = 0; order[i]; i++)
        if (!strcmp(m, order[i])) return MAX_TASKS + i;
    return 100;
}

/* The metric of a run's [train] early_stop (TASK.METRIC), added to tp's list. */
static void add_early(task_pick *tp, const char *dir)
{
    ts_conf c;
    if (ts_conf_read(dir, &c)) return;
    const char *es = ts_conf_get(&c, "train.early_stop"), *dot = es ? strrchr(es, '.') : NULL;
    int seen = 0;
    for (int i = 0; dot && i < tp->nearly; i++) seen |= !strcmp(tp->early[i], dot + 1);
    if (dot && dot[1] && !seen && tp->nearly < MAX_TASKS)
        snprintf(tp->early[tp->nearly++], TS_NAME_MAX, "%s", dot + 1);
    ts_conf_free(&c);
}

static void pick_metric(void *arg, const char *task, const char *metric, double x, double y)
{
    task_pick *tp = arg;
    int r = metric_rank(tp, metric), t = 0;
    if (r < 0) return;
    while (t < tp->n && strcmp(tp->task[t], task)) t++;
    if (t == tp->n) {
        if (tp->n == MAX_TASKS) return;
        snprintf(tp->task[tp->n], TS_NAME_MAX, "%s", task);
        tp->rank[tp->n++] = 1 << 30;
    }
    if (r < tp->rank[t]) {
        tp->rank[t] = r;
        snprintf(tp->metric[t], TS_NAME_MAX, "%s", metric);
    }
}

typedef struct valid_take { const char *task, *metric; pts *v; } valid_take;

static void take_valid(void *arg, const char *task, const char *metric, double x, double y)
{
    valid_take *vt = arg;
    if (!strcmp(task, vt->task) && !strcmp(metric, vt->metric)) pts_add(vt->v, x, x, y);
}

/* 1 + the position of task in the NULL-terminated list baseline; 0 when it is not there. */
static int is_baseline(const char *const *baseline, const char *task)
{
    for (int i = 0; baseline && baseline[i]; i++)
        if (!strcmp(baseline[i], task)) return i + 1;
    return 0;
}

/* The look of a baseline's line (b from is_baseline): grey, a dash of its own. */
static void baseline_style(char *buf, size_t n, int b)
{
    snprintf(buf, n, "linecolor rgb '%s' dt %d", b % 2 ? "#555555" : "#8c8c8c", (b - 1) % 4 + 2);
}

/* The colour of experiment i: gnuplot's first eight, then eight more, so up to 16 experiments
 * are told apart (grey is kept for baselines). */
static const char *colour_of(int i)
{
    static const char *const c[16] = {"#9400d3", "#009e73", "#56b4e9", "#e69f00", "#f0e442",
                                      "#0072b2", "#e51e10", "#000000", "#8c564b", "#e377c2",
                                      "#bcbd22", "#17becf", "#ff7f0e", "#2ca02c", "#1f3a93",
                                      "#b03060"};
    return c[i % 16];
}

/* A panel's curves, gathered before it is drawn: the plot command and the x values seen. */
typedef struct panel {
    ts_sbuf pl;
    double xlo, xhi, ylo, yhi;
    int bmargin;   /* character rows below the plot: tics, label and the key (the same in every
                    * panel of a figure, so the plots line up) */
} panel;

/* Adds one curve (points of its runs) of style `style` to the panel: the band when there are
 * several runs, then the mean with its title. */
static int curve(ts_gp *g, panel *p, pts *v, int nruns, const char *style, const char *title,
                 int with_points)
{
    ts_sbuf d = {0};
    char name[32];
    pts_summary(v, &d);
    for (int i = 0; i < v->n; i++) {
        if (v->p[i].x < p->xlo) p->xlo = v->p[i].x;
        if (v->p[i].x > p->xhi) p->xhi = v->p[i].x;
        if (v->p[i].y < p->ylo) p->ylo = v->p[i].y;
        if (v->p[i].y > p->yhi) p->yhi = v->p[i].y;
    }
    int rc = d.n ? ts_gp_data(g, d.s, name, sizeof name) : 0;
    free(d.s);
    if (rc || !v->n) return rc;
    ts_sbuf *pl = &p->pl;
    if (nruns > 1)
        ts_sb_printf(pl, "%s'%s' using 1:3:4 with filledcurves %s fillstyle transparent solid "
                     "0.18 noborder notitle", pl->n ? ", " : "", name, style);
    ts_sb_printf(pl, "%s'%s' using 1:2 with %s %s lw 2 title ", pl->n ? ", " : "", name,
                 with_points ? "linespoints pt 7 ps 0.8" : "lines", style);
    ts_gp_str(pl, title, 0);
    return 0;
}

/* Draws the panel's curves, or says why it is empty. A range of one value (one epoch, a
 * constant curve) is widened: gnuplot would warn and guess. */
static void draw_panel(ts_sbuf *s, panel *p, const char *why)
{
    ts_sb_printf(s, "set bmargin %d\n", p->bmargin);
    if (!p->pl.n) {
        ts_sb_printf(s, "set label 1 '%s' at graph 0.5, graph 0.5 center\nset xrange [0:1]\n"
                     "set yrange [0:1]\nunset key\nplot -1 notitle\nunset label 1\n"
                     "set key below box\nset autoscale xy\n", why);
        free(p->pl.s);
        return;
    }
    if (p->xlo == p->xhi) ts_sb_printf(s, "set xrange [%.9g:%.9g]\n", p->xlo - 0.5, p->xhi + 0.5);
    double pad = fabs(p->ylo) * 0.05 > 1e-3 ? fabs(p->ylo) * 0.05 : 1e-3;
    if (p->ylo == p->yhi) ts_sb_printf(s, "set yrange [%.9g:%.9g]\n", p->ylo - pad, p->yhi + pad);
    ts_sb_printf(s, "plot %s\nset autoscale xy\n", p->pl.s);
    free(p->pl.s);
}

/* The first panel: the training loss of each set, mean over its runs with a min..max band. */
static int train_panel(ts_gp *g, const ts_curve_set *sets, int n, int bmargin)
{
    panel p = {{0}, INFINITY, -INFINITY, INFINITY, -INFINITY, bmargin};
    ts_sb_printf(&g->s, "set title 'training loss, weighted sum over tasks (mean over each log "
                 "interval)'\nset xlabel 'epoch'\nset ylabel 'loss per example (nats; mse: "
                 "label units squared)'\n");
    int rc = 0;
    for (int i = 0; i < n && !rc; i++) {
        pts v = {0};
        char style[40];
        for (int r = 0; r < sets[i].ndirs; r++) read_train_curve(sets[i].dirs[r], &v);
        snprintf(style, sizeof style, "linecolor rgb '%s'", colour_of(i));
        rc = curve(g, &p, &v, sets[i].ndirs, style, sets[i].label, 0);
        free(v.p);
    }
    if (rc) { free(p.pl.s); return rc; }
    draw_panel(&g->s, &p, "no run has logged a training loss yet");   /* killed before its first log line */
    return 0;
}

/* The validation curve of task k of every set that has it (a baseline: of the first only). */
static int task_curves(ts_gp *g, panel *p, const ts_curve_set *sets, int n, const task_pick *tp,
                       int k, int base)
{
    int rc = 0;
    for (int i = 0; i < n && !rc; i++) {
        pts v = {0};
        valid_take vt = {tp->task[k], tp->metric[k], &v};
        for (int r = 0; r < sets[i].ndirs; r++) read_valid(sets[i].dirs[r], take_valid, &vt);
        char style[64];
        ts_sbuf lab = {0};
        if (base) {
            baseline_style(style, sizeof style, base);
            ts_sb_printf(&lab, "%s (baseline)", tp->task[k]);
        } else {
            snprintf(style, sizeof style, "linecolor rgb '%s'", colour_of(i));
            ts_sb_printf(&lab, "%s", sets[i].label);
        }
        int had = v.n > 0;
        rc = curve(g, p, &v, base ? 1 : sets[i].ndirs, style, lab.s, 1);
        free(lab.s);
        free(v.p);
        if (base && had) break;
    }
    return rc;
}

/* One validation panel: task k's curve per set, and the baselines of the same metric once. */
static int valid_panel(ts_gp *g, const ts_curve_set *sets, int n, const task_pick *tp, int k,
                       const char *const *baseline, int bmargin)
{
    panel p = {{0}, INFINITY, -INFINITY, INFINITY, -INFINITY, bmargin};
    ts_sbuf t = {0};
    char axis[256];
    ts_sb_printf(&t, "validation %s.%s per epoch", tp->task[k], tp->metric[k]);
    ts_sb_printf(&g->s, "set title ");
    ts_gp_str(&g->s, t.s, 0);
    ts_sb_printf(&g->s, "\nset xlabel 'epoch'\nset ylabel ");
    ts_gp_str(&g->s, ts_metric_axis(tp->metric[k], axis, sizeof axis), 0);
    ts_sb_printf(&g->s, "\n");
    free(t.s);
    int rc = task_curves(g, &p, sets, n, tp, k, is_baseline(baseline, tp->task[k]));
    for (int b = 0; b < tp->n && !rc; b++)
        if (b != k && is_baseline(baseline, tp->task[b]) && !strcmp(tp->metric[b], tp->metric[k]))
            rc = task_curves(g, &p, sets, n, tp, b, is_baseline(baseline, tp->task[b]));
    if (rc) { free(p.pl.s); return rc; }
    draw_panel(&g->s, &p, "no validation figure");
    return 0;
}

/* The tasks that get a validation panel: each learned one (a baseline is drawn beside them), or
 * each baseline when no task learns; at most MAX_PANELS. */
static int panel_tasks(const task_pick *tp, const char *const *baseline, int *k)
{
    int np = 0;
    for (int i = 0; i < tp->n && np < MAX_PANELS; i++)
        if (!is_baseline(baseline, tp->task[i])) k[np++] = i;
    if (!np)
        for (int i = 0; i < tp->n && np < MAX_PANELS; i++) k[np++] = i;
    return np;
}

int ts_plot_curves(const char *who, const ts_curve_set *sets, int n, const char *const *baseline,
                   const char *png, const char *title)
{
    static task_pick tp;
    memset(&tp, 0, sizeof tp);
    int banded = 0, k[MAX_PANELS];
    for (int i = 0; i < n; i++)
        if (sets[i].ndirs) add_early(&tp, sets[i].dirs[0]);
    for (int i = 0; i < n; i++) {
        banded |= sets[i].ndirs > 1;
        for (int r = 0; r < sets[i].ndirs; r++) read_valid(sets[i].dirs[r], pick_metric, &tp);
    }
    int np = panel_tasks(&tp, baseline, k), cells = 1 + (np ? np : 1);
    int rows = cells > 3 ? 2 : 1, cols = (cells + rows - 1) / rows;
    /* below each plot: tics, the axis label and the key, two entries a row */
    int nb = 0;
    for (int i = 0; i < tp.n; i++) nb += is_baseline(baseline, tp.task[i]) != 0;
    int bmargin = 5 + (n + nb + 1) / 2;
    ts_gp g;
    if (ts_gp_begin(&g, who, png, cols * 600, rows * (380 + 16 * bmargin))) return -1;
    ts_sb_printf(&g.s, "set key below box\nset grid\nset multiplot layout %d,%d title ", rows, cols);
    ts_sbuf t = {0};
    ts_sb_printf(&t, "%s%s", title, banded ? "; line: mean over seeds, band: min..max" : "");
    ts_gp_str(&g.s, t.s, 0);
    free(t.s);
    ts_sb_printf(&g.s, "\n");
    int rc = train_panel(&g, sets, n, bmargin);
    for (int j = 0; j < np && !rc; j++) rc = valid_panel(&g, sets, n, &tp, k[j], baseline, bmargin);
    if (!rc && !np) {
        panel p = {{0}, 0, 0, 0, 0, bmargin};
        ts_sb_printf(&g.s, "set title 'validation figures per epoch'\n");
        draw_panel(&g.s, &p, "no run has validation figures (eval.csv)");
    }
    ts_sb_printf(&g.s, "unset multiplot\n");
    if (rc) { ts_gp_cleanup(&g); return rc; }
    return ts_gp_finish(&g);
}

/* ---- tessera plot ------------------------------------------------------------------------------ */
/* A run's label: its experiment's name and seed (config.ini), or "" when it has none. */
static void run_label(const char *dir, char *buf, size_t n)
{
    ts_conf c;
    buf[0] = 0;
    if (ts_conf_read(dir, &c)) return;
    const char *name = ts_conf_get(&c, "experiment.name"), *seed = ts_conf_get(&c, "experiment.seed");
    if (name) snprintf(buf, n, "%s%s%s", name, seed ? " seed " : "", seed ? seed : "");
    ts_conf_free(&c);
}

/* The last k components of path (trailing slashes left out); k past the first gives it all. */
static void path_tail(const char *path, int k, char *buf, size_t n)
{
    size_t len = strlen(path);
    while (len > 1 && path[len - 1] == '/') len--;
    size_t b = len;
    for (int i = 0; i < k && b > 0; i++) {
        if (i) b--;   /* past the slash */
        while (b > 0 && path[b - 1] != '/') b--;
    }
    snprintf(buf, n, "%.*s", (int)(len - b), path + b);
}

/* Labels of the run folders: "NAME seed N" from each run's configuration; where two runs share
 * one (or a folder has none), the shortest ends of their paths that tell them apart. */
static void run_labels(char *const *dirs, int n, char (*lab)[256])
{
    for (int i = 0; i < n; i++) run_label(dirs[i], lab[i], sizeof lab[i]);
    int clash[64] = {0};
    for (int i = 0; i < n; i++)
        for (int j = 0; j < n; j++)
            if (i != j && (!lab[i][0] || !strcmp(lab[i], lab[j]))) clash[i] = 1;
    for (int i = 0; i < n; i++) {
        if (!clash[i]) continue;
        for (int k = 1; k < 64; k++) {
            path_tail(dirs[i], k, lab[i], sizeof lab[i]);
            int unique = 1;
            char other[256];
            for (int j = 0; j < n && unique; j++) {
                if (j == i || !clash[j]) continue;
                path_tail(dirs[j], k, other, sizeof other);
                unique = strcmp(other, lab[i]) != 0;
            }
            if (unique || !strchr(dirs[i], '/')) break;
        }
    }
}

int ts_cmd_plot(int argc, char **argv)
{
    char *dirs[64], out[TS_PATH_MAX] = "curves.png";
    static char lab[64][256];
    int n = 0;
    for (int i = 0; i < argc; i++) {
        if (!strcmp(argv[i], "--out") && i + 1 < argc) {
            snprintf(out, sizeof out, "%s", argv[++i]);
            size_t len = strlen(out);
            if (len > 4 && !strcmp(out + len - 4, ".svg")) {
                fprintf(stderr, "tessera plot: --out %s: give the PNG's name (such as curves.png); "
                        "the SVG is written beside it\n", out);
                return 2;
            }
        } else if (n == 64) {
            fprintf(stderr, "tessera plot: %s is a 65th run; one plot draws at most 64, so plot "
                    "them in several parts\n", argv[i]);
            return 2;
        } else {
            char p[TS_PATH_MAX + 16];
            struct stat sb;
            snprintf(p, sizeof p, "%s/train.csv", argv[i]);
            if (stat(p, &sb)) {
                fprintf(stderr, "tessera plot: %s has no train.csv; give run folders (results/NAME)\n",
                        argv[i]);
                return 1;
            }
            dirs[n++] = argv[i];
        }
    }
    if (!n) {
        fprintf(stderr, "usage: tessera plot RUN_DIR ... [--out FILE.png] (tessera plot --help)\n");
        return 2;
    }
    if (!ts_have_gnuplot()) {
        fprintf(stderr, "tessera plot: gnuplot not found (apt-get install gnuplot-nox)\n");
        return 1;
    }
    run_labels(dirs, n, lab);
    ts_curve_set sets[64];
    for (int i = 0; i < n; i++) sets[i] = (ts_curve_set){lab[i], &dirs[i], 1};
    if (ts_plot_curves("tessera plot", sets, n, NULL, out, "loss curves")) return 1;
    printf("%s\n", out);
    return 0;
}

/* ---- one figure per experiment ----------------------------------------------------------------- */
const char *ts_metric_axis(const char *key, char *buf, size_t n)
{
    const char *m = strrchr(key, '.');
    m = m ? m + 1 : key;
    if (!strcmp(m, "mse")) snprintf(buf, n, "%s: mean squared error (label units squared)", key);
    else if (!strcmp(m, "mae")) snprintf(buf, n, "%s: mean absolute error (label units)", key);
    else if (!strcmp(m, "auc")) snprintf(buf, n, "%s: ROC AUC (0.5 = chance)", key);
    else if (!strcmp(m, "logloss")) snprintf(buf, n, "%s: log loss (nats per example)", key);
    else if (!strcmp(m, "loss")) snprintf(buf, n, "%s: loss per example", key);
    else if (!strcmp(m, "mrr")) snprintf(buf, n, "%s: mean reciprocal rank", key);
    else if (!strcmp(m, "map")) snprintf(buf, n, "%s: mean average precision", key);
    else if (!strncmp(m, "ndcg@", 5)) snprintf(buf, n, "%s: normalised DCG of the top K", key);
    else if (!strncmp(m, "recall@", 7))
        snprintf(buf, n, "%s: fraction of targets in the top K", key);
    else snprintf(buf, n, "%s", key);
    return buf;
}

/* Points with error bars, not bars: a bar's length would be read from an axis that does not start
 * at zero. The names are tic labels of the script, not strings of the data. */
int ts_plot_bars(const char *png, const char *title, const char *ylabel, char names[][TS_NAME_MAX],
                 const double *mean, const double *sd, int n, char bnames[][TS_NAME_MAX],
                 const double *bvalue, int nb)
{
    ts_gp g;
    ts_sbuf d = {0};
    char dat[32];
    double lo = INFINITY, hi = -INFINITY;
    for (int i = 0; i < n; i++) {
        double e = isfinite(sd[i]) ? sd[i] : 0;
        ts_sb_printf(&d, "%d %.9g %.9g\n", i, mean[i], e);
        if (mean[i] - e < lo) lo = mean[i] - e;
        if (mean[i] + e > hi) hi = mean[i] + e;
    }
    for (int b = 0; b < nb; b++) {
        if (bvalue[b] < lo) lo = bvalue[b];
        if (bvalue[b] > hi) hi = bvalue[b];
    }
    if (ts_gp_begin(&g, "tessera compare", png, 900, 480)) { free(d.s); return -1; }
    if (ts_gp_data(&g, d.s ? d.s : "", dat, sizeof dat)) { free(d.s); ts_gp_cleanup(&g); return -1; }
    free(d.s);
    /* a margin that survives printing even when every point is the same large value */
    double mag = fabs(lo) > fabs(hi) ? fabs(lo) : fabs(hi);
    double pad = (hi - lo) * 0.25;
    if (pad < 0.05 * mag) pad = 0.05 * mag;
    if (pad < 1e-3) pad = 1e-3;
    ts_sbuf *s = &g.s;
    ts_sb_printf(s, "set title ");
    ts_gp_str(s, title, 0);
    ts_sb_printf(s, "\nset ylabel ");
    ts_gp_str(s, ylabel, 0);
    ts_sb_printf(s, "\nset grid ytics\nset xtics rotate by -20 (");
    for (int i = 0; i < n; i++) {
        ts_sb_printf(s, "%s", i ? ", " : "");
        ts_gp_str(s, names[i], 1);
        ts_sb_printf(s, " %d", i);
    }
    ts_sb_printf(s, ")\n%s\nset yrange [%.9g:%.9g]\nset xrange [-0.6:%d.6]\nset bmargin 6\n"
                 "plot '%s' using 1:2:3 with yerrorbars lc rgb '#2b5d9b' pt 7 ps 1.5 lw 2 notitle, "
                 "'' using 1:($2+$3):(sprintf('%%.4g', $2)) with labels offset 0,1 notitle",
                 nb ? "set key top right box opaque" : "set key off", lo - pad, hi + pad, n - 1, dat);
    for (int b = 0; b < nb; b++) {   /* a baseline: the same figure for every experiment */
        ts_sbuf t = {0};
        ts_sb_printf(&t, "%s (baseline) %.4g", bnames[b], bvalue[b]);
        ts_sb_printf(s, ", %.9g with lines dt %d lw 1.5 lc rgb '#555555' title ", bvalue[b], b % 4 + 2);
        ts_gp_str(s, t.s, 0);
        free(t.s);
    }
    ts_sb_printf(s, "\n");
    return ts_gp_finish(&g);
}

/* ---- a figure against the swept value --------------------------------------------------------- */
/* x values are the sweep values when they are all numbers, else their positions with the values
 * as tic labels; a small horizontal offset per experiment keeps the error bars apart. */
int ts_plot_sweep(const char *png, const char *title, const char *xlabel, const char *ylabel,
                  char *const *sweep_val, int nsweep, char names[][TS_NAME_MAX],
                  const double *mean, const double *sd, int nexp)
{
    ts_sbuf d = {0};
    char dat[32];
    double *xv = malloc((size_t)nsweep * sizeof *xv), lo = INFINITY, hi = -INFINITY;
    if (!xv) return -1;
    int numeric = 1;
    for (int w = 0; w < nsweep; w++)
        if (!ts_number(sweep_val[w], &xv[w])) numeric = 0;
    for (int w = 0; w < nsweep && !numeric; w++) xv[w] = w;
    for (int w = 0; w < nsweep; w++) {
        if (xv[w] < lo) lo = xv[w];
        if (xv[w] > hi) hi = xv[w];
    }
    double span = hi > lo ? hi - lo : 1, shift = 0.012 * span;
    for (int i = 0; i < nexp; i++) {
        double off = (i - (nexp - 1) / 2.0) * shift;
        for (int w = 0; w < nsweep; w++) {
            double m = mean[i * nsweep + w], e = sd[i * nsweep + w];
            if (isfinite(m)) ts_sb_printf(&d, "%.9g %.9g %.9g\n", xv[w] + off, m, isfinite(e) ? e : 0);
        }
        ts_sb_printf(&d, "\n\n");
    }
    ts_gp g;
    if (ts_gp_begin(&g, "tessera compare", png, 900, 560)) { free(d.s); free(xv); return -1; }
    if (ts_gp_data(&g, d.s ? d.s : "", dat, sizeof dat)) { free(d.s); free(xv); ts_gp_cleanup(&g); return -1; }
    free(d.s);
    ts_sbuf *s = &g.s;
    ts_sb_printf(s, "set title ");
    ts_gp_str(s, title, 0);
    ts_sb_printf(s, "\nset xlabel ");
    ts_gp_str(s, xlabel, 0);
    ts_sb_printf(s, "\nset ylabel ");
    ts_gp_str(s, ylabel, 0);
    ts_sb_printf(s, "\nset grid\nset key below box\nset bmargin 7\nset xrange [%.9g:%.9g]\n"
                 "set offsets 0, 0, graph 0.08, graph 0.08\nset xtics (", lo - 0.08 * span,
                 hi + 0.08 * span);
    for (int w = 0; w < nsweep; w++) {   /* tics at the swept values, labelled as written */
        ts_sb_printf(s, "%s", w ? ", " : "");
        ts_gp_str(s, sweep_val[w], 1);
        ts_sb_printf(s, " %.9g", xv[w]);
    }
    free(xv);
    ts_sb_printf(s, ")\nplot ");
    for (int i = 0; i < nexp; i++) {
        ts_sb_printf(s, "%s'%s' index %d using 1:2:3 with yerrorlines lw 2 pt 7 ps 1.2 title ",
                     i ? ", " : "", dat, i);
        ts_gp_str(s, names[i], 0);
    }
    ts_sb_printf(s, "\n");
    return ts_gp_finish(&g);
}

/* ---- gate maps --------------------------------------------------------------------------------- */
/* Gate usage of one experiment's mixture-of-experts layers (gates.csv, written by the layers'
 * report(); core/gates.c reads it): for every mixture (a layer's level) a gates x experts
 * heatmap with the values printed, one row of panels per mixture and one column per run
 * (one per sweep value). Each cell is a box of its own (boxxyerror), not a pixel of
 * `with image`, so any shape draws (gnuplot's image needs 2 x 2 cells: a one-task, two-expert
 * gate drew nothing), and a cell a gate does not reach (PLE's task gates skip the other tasks'
 * experts) stays grey. */
typedef struct gate_key { char layer[TS_NAME_MAX]; int level; } gate_key;

static const ts_gate_mix *find_mix(const ts_gates *g, const gate_key *k)
{
    for (int m = 0; m < g->nmix; m++)
        if (!strcmp(g->mix[m].layer, k->layer) && g->mix[m].level == k->level) return &g->mix[m];
    return NULL;
}

/* The tic labels of a gate map: the experts along x, the gates along y. */
static void gate_tics(ts_sbuf *s, const ts_gate_mix *m)
{
    int longnames = 0;
    for (int k = 0; k < m->nexp; k++) longnames |= strlen(m->expert[k]) > 3;
    ts_sb_printf(s, "set xrange [-0.5:%d.5]\nset yrange [%d.5:-0.5]\nset xtics (", m->nexp - 1,
                 m->ngate - 1);
    for (int k = 0; k < m->nexp; k++) {
        ts_sb_printf(s, "%s", k ? ", " : "");
        ts_gp_str(s, m->expert[k], 1);
        ts_sb_printf(s, " %d", k);
    }
    ts_sb_printf(s, ") nomirror%s\nset ytics (", longnames ? " rotate by 30 right" : " norotate");
    for (int r = 0; r < m->ngate; r++) {
        ts_sb_printf(s, "%s", r ? ", " : "");
        ts_gp_str(s, m->gate[r], 1);
        ts_sb_printf(s, " %d", r);
    }
    ts_sb_printf(s, ") nomirror\n");
}

/* One panel: the heatmap of mixture m (NULL: an empty panel that says what is missing). */
static int plot_gate_panel(ts_gp *gp, const ts_gate_mix *m, const char *title, double top)
{
    ts_sbuf *s = &gp->s;
    int holes = 0;
    for (long i = 0; m && i < (long)m->ngate * m->nexp; i++) holes |= isnan(m->w[i]);
    ts_sbuf full = {0};
    ts_sb_printf(&full, "%s%s", title, holes ? " (grey: not one of the gate's experts)" : "");
    ts_sb_printf(s, "set title ");
    ts_gp_str(s, full.s, 0);
    free(full.s);
    ts_sb_printf(s, "\n");
    if (!m) {   /* a blank panel under its title */
        ts_sb_printf(s, "unset xtics\nunset ytics\nunset xlabel\nunset ylabel\nset border 0\n"
                     "set xrange [0:1]\nset yrange [0:1]\nplot -1 notitle\n"
                     "set border 31\nset xlabel 'expert'\nset ylabel 'gate'\n");
        return 0;
    }
    char dat[32];
    ts_sbuf d = {0};
    for (int r = 0; r < m->ngate; r++)
        for (int k = 0; k < m->nexp; k++) {
            double w = m->w[(long)r * m->nexp + k];
            if (!isnan(w)) ts_sb_printf(&d, "%d %d %.6f\n", k, r, w);
        }
    int rc = ts_gp_data(gp, d.s ? d.s : "", dat, sizeof dat);
    free(d.s);
    if (rc) return rc;
    if (holes)   /* grey behind the cells: what shows through is a cell the gate does not reach */
        ts_sb_printf(s, "set object 1 rectangle from graph 0, 0 to graph 1, 1 behind "
                     "fillcolor rgb '#d9d9d9' fillstyle solid 1.0 noborder\n");
    gate_tics(s, m);
    /* values printed in each cell, white on the dark ones */
    ts_sb_printf(s, "plot '%s' using 1:2:(0.5):(0.5):3 with boxxyerror fillstyle solid 1.0 "
                 "noborder linecolor palette, '' using 1:2:(sprintf('%%.2f', $3)):"
                 "($3 > %g ? 0xffffff : 0x000000) with labels textcolor rgb variable font 'sans,8'\n",
                 dat, top / 2);
    if (holes) ts_sb_printf(s, "unset object 1\n");
    return 0;
}

/* The mixtures of every run, in order of first appearance (a sweep may change them); the largest
 * gate count and expert count go to *tallest and *widest. -1 when out of memory. */
static int gate_keys(const ts_gates *g, int ndir, gate_key **keys, int *tallest, int *widest)
{
    int nkey = 0;
    *keys = NULL;
    for (int r = 0; r < ndir; r++)
        for (int m = 0; m < g[r].nmix; m++) {
            const ts_gate_mix *x = &g[r].mix[m];
            if (x->ngate > *tallest) *tallest = x->ngate;
            if (x->nexp > *widest) *widest = x->nexp;
            int seen = 0;
            for (int j = 0; j < nkey && !seen; j++)
                seen = !strcmp((*keys)[j].layer, x->layer) && (*keys)[j].level == x->level;
            if (seen) continue;
            gate_key *t = realloc(*keys, (size_t)(nkey + 1) * sizeof *t);
            if (!t) { free(*keys); *keys = NULL; return -1; }
            *keys = t;
            snprintf(t[nkey].layer, sizeof t[nkey].layer, "%s", x->layer);
            t[nkey++].level = x->level;
        }
    return nkey;
}

/* One colour scale for every panel, from 0 to the largest weight rounded up to 0.1: a
 * near-uniform gate (all 1/E) then reads pale, a specialised one dark. */
static double gate_top(const ts_gates *g, int ndir)
{
    double top = 0.1;
    for (int r = 0; r < ndir; r++)
        for (int m = 0; m < g[r].nmix; m++)
            for (long i = 0; i < (long)g[r].mix[m].ngate * g[r].mix[m].nexp; i++)
                if (g[r].mix[m].w[i] > top) top = g[r].mix[m].w[i];
    return ceil(top * 10 - 1e-9) / 10;
}

static int draw_gates(const char *png, const char *title, const ts_gates *g, char *const *subtitles,
                      int ndir, const gate_key *keys, int nkey, int tallest, int widest)
{
    double top = gate_top(g, ndir);
    int pw = 200 + 45 * widest, ph = 130 + 50 * tallest;
    if (pw < (ndir > 1 ? 560 : 760)) pw = ndir > 1 ? 560 : 760;
    ts_gp gp;
    if (ts_gp_begin(&gp, "tessera compare", png, pw * ndir, 40 + ph * nkey)) return -1;
    ts_sbuf *s = &gp.s;
    ts_sb_printf(s, "set multiplot layout %d,%d title ", nkey, ndir);
    ts_gp_str(s, title, 0);
    ts_sb_printf(s, "\nset xlabel 'expert'\nset ylabel 'gate'\n"
                 "set palette defined (0 'white', 0.5 '#6baed6', 1 '#08306b')\nset cbrange [0:%g]\n"
                 "set tics out\nunset key\n", top);
    int rc = 0;
    for (int k = 0; k < nkey && !rc; k++)
        for (int r = 0; r < ndir && !rc; r++) {
            const ts_gate_mix *m = find_mix(&g[r], &keys[k]);
            char sub[512];
            int len = keys[k].layer[0] ? snprintf(sub, sizeof sub, "%s level %d, ", keys[k].layer,
                                                  keys[k].level) : 0;
            snprintf(sub + len, sizeof sub - len, "%s%s", subtitles[r],
                     m ? "" : g[r].nmix ? " (no such level)" : " (no gates.csv)");
            rc = plot_gate_panel(&gp, m, sub, top);
        }
    ts_sb_printf(s, "unset multiplot\n");
    if (rc) { ts_gp_cleanup(&gp); return rc; }
    return ts_gp_finish(&gp);
}

int ts_plot_gates(const char *png, const char *title, char *const *dirs, char *const *subtitles,
                  int ndir)
{
    ts_gates *g = calloc((size_t)ndir, sizeof *g);
    if (!g) return -1;
    int any = 0, tallest = 1, widest = 1;
    for (int r = 0; r < ndir; r++) any |= !ts_gates_read(dirs[r], &g[r]);
    gate_key *keys = NULL;
    int nkey = any ? gate_keys(g, ndir, &keys, &tallest, &widest) : 0;
    int rc = !any ? 1 : nkey < 0 ? -1
             : draw_gates(png, title, g, subtitles, ndir, keys, nkey, tallest, widest);
    for (int r = 0; r < ndir; r++) ts_gates_free(&g[r]);
    free(g);
    free(keys);
    return rc;
}

/* ---- Recall@K against K ------------------------------------------------------------------------ */
/* The tasks of a with test.TASK.recall@K figures, in order of first appearance. */
static int recall_tasks(const ts_agg *a, char tasks[][TS_NAME_MAX], int max)
{
    int nt = 0;
    for (int j = 0; j < a->n; j++) {
        const char *key = a->s[j].key, *r = strstr(key, ".recall@");
        if (strncmp(key, "test.", 5) || !r) continue;
        char task[TS_NAME_MAX];
        snprintf(task, sizeof task, "%.*s", (int)(r - key - 5), key + 5);
        int seen = 0;
        for (int t = 0; t < nt; t++) seen |= !strcmp(tasks[t], task);
        if (!seen && nt < max) snprintf(tasks[nt++], TS_NAME_MAX, "%s", task);
    }
    return nt;
}

static int cmp_int(const void *a, const void *b)
{
    return *(const int *)a - *(const int *)b;
}

/* One line of the recall figure, "K mean sd" sorted by K, into d; the largest K into *kmax.
 * 0 when the task has no finite figure at sweep value sw. */
static int recall_line(const ts_agg *a, const char *task, int sw, ts_sbuf *d, int *kmax)
{
    int ks[64], nk = 0, wrote = 0;
    char pre[TS_NAME_MAX + 16];
    snprintf(pre, sizeof pre, "test.%s.recall@", task);
    for (int j = 0; j < a->n && nk < 64; j++)
        if (!strncmp(a->s[j].key, pre, strlen(pre))) ks[nk++] = atoi(a->s[j].key + strlen(pre));
    qsort(ks, (size_t)nk, sizeof *ks, cmp_int);
    double *v = malloc((size_t)a->seeds * sizeof *v);
    for (int i = 0; v && i < nk; i++) {
        char key[TS_NAME_MAX + 32];
        snprintf(key, sizeof key, "%s%d", pre, ks[i]);
        double mean, sd;
        int c = ts_series_values(a, ts_agg_find(a, key), sw, v);
        if (!c) continue;
        ts_mean_std(v, c, &mean, &sd);
        ts_sb_printf(d, "%d %.9g %.9g\n", ks[i], mean, isfinite(sd) ? sd : 0);
        if (ks[i] > *kmax) *kmax = ks[i];
        wrote = 1;
    }
    free(v);
    if (wrote) ts_sb_printf(d, "\n\n");
    return wrote;
}

int ts_plot_recall(const char *png, const char *title, const char *const *labels, ts_agg *const *ag,
                   int n, int sw, const char *const *baseline)
{
    ts_sbuf d = {0};
    char dat[32], lines[64][2 * TS_NAME_MAX + 16], style[64][64];
    int nl = 0, kmax = 0;
    for (int m = 0; m < n && nl < 64; m++) {
        char tasks[MAX_TASKS][TS_NAME_MAX];
        int nt = recall_tasks(ag[m], tasks, MAX_TASKS), learned = 0;
        for (int t = 0; t < nt; t++) learned += !is_baseline(baseline, tasks[t]);
        for (int t = 0; t < nt && nl < 64; t++) {
            int base = is_baseline(baseline, tasks[t]), dup = 0;
            char lab[sizeof lines[0]];
            if (base) snprintf(lab, sizeof lab, "%s (baseline)", tasks[t]);
            else snprintf(lab, sizeof lab, "%s%s%s", labels[m], learned > 1 ? " " : "",
                          learned > 1 ? tasks[t] : "");
            for (int j = 0; j < nl && base; j++)   /* a baseline once, in grey */
                dup |= !strcmp(lines[j], lab);
            if (dup || !recall_line(ag[m], tasks[t], sw, &d, &kmax)) continue;
            if (base) baseline_style(style[nl], sizeof style[nl], base);
            else snprintf(style[nl], sizeof style[nl], "linecolor rgb '%s' dt %d", colour_of(m), t % 5 + 1);
            snprintf(lines[nl++], sizeof lines[0], "%s", lab);
        }
    }
    if (!nl) { free(d.s); return 1; }
    ts_gp g;
    if (ts_gp_begin(&g, "tessera compare", png, 900, 560)) { free(d.s); return -1; }
    if (ts_gp_data(&g, d.s, dat, sizeof dat)) { free(d.s); ts_gp_cleanup(&g); return -1; }
    free(d.s);
    ts_sb_printf(&g.s, "set title ");
    ts_gp_str(&g.s, title, 0);
    ts_sb_printf(&g.s, "\nset xlabel 'K (items retrieved per query)'\n"
                 "set ylabel 'Recall@K (fraction of held-out targets in the top K)'\nset grid\n"
                 "set key below box\nset bmargin 7\nset xrange [0:%g]\nset yrange [0:*]\nplot ",
                 kmax * 1.05);
    for (int i = 0; i < nl; i++) {
        ts_sb_printf(&g.s, "%s'%s' index %d using 1:2:3 with yerrorlines lw 2 pt 7 %s title ",
                     i ? ", " : "", dat, i, style[i]);
        ts_gp_str(&g.s, lines[i], 0);
    }
    ts_sb_printf(&g.s, "\n");
    return ts_gp_finish(&g);
}
