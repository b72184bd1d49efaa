/* report.h — what the pieces of a comparison's report share: gnuplot.c (running gnuplot and
 * other helper programs without a shell), runinfo.c (what a run folder and the machine tell:
 * metrics.json, the resolved configuration, the commit, the CPU), plots.c (each figure, and
 * `tessera plot`) and report.c (report.md, summary.csv, significance.csv).
 * compare.c runs the experiments and hands the finished runs to ts_report_write.
 * Part of the program, not of libtessera: these print and never train anything. */
#ifndef TS_REPORT_H
#define TS_REPORT_H

#include <stddef.h>
#include "internal.h"

/* ---- a growing string (gnuplot.c) ---------------------------------------------------------- */
typedef struct ts_sbuf { char *s; size_t n, cap; } ts_sbuf;   /* s NULL until the first write */
/* Appends; out of memory prints a sentence and exits (the program, never the library). */
void ts_sb_printf(ts_sbuf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
void ts_sb_putn(ts_sbuf *b, const char *p, size_t n);

/* ---- helper programs and gnuplot (gnuplot.c) ------------------------------------------------ */
/* Runs args[0] (found in PATH) with args, without a shell, in folder dir (NULL: here), stdin
 * from /dev/null; its standard output and error (up to cap - 1 bytes) go to out. Returns the
 * wait status, or -1 when it could not start (errno set). */
int ts_exec_capture(const char *dir, const char *const *args, char *out, size_t cap);

/* One figure drawn by gnuplot in a private folder (docs/architecture.md, "Plots"): its body is
 * drawn twice by one script, on pngcairo to PATH.png and on svg to PATH.svg beside it. */
typedef struct ts_gp {
    char dir[TS_PATH_MAX];    /* the private folder (mkdtemp) beside the PNG */
    const char *out;          /* the user's path for the PNG */
    const char *who;          /* "tessera plot" or "tessera compare", for messages */
    ts_sbuf s;                /* the script's body, between the terminal lines */
    int w, h;                 /* pixels (PNG); the SVG has the same size in its units */
    int ndata;                /* data files written: d0.dat .. d<ndata-1>.dat */
} ts_gp;

/* Makes the private folder beside png; the body is then written into g->s. */
int ts_gp_begin(ts_gp *g, const char *who, const char *png, int w, int h);
/* Writes text to the next data file of the private folder; its fixed name goes to name. */
int ts_gp_data(ts_gp *g, const char *text, char *name, size_t n);
/* Appends s as a gnuplot string expression that shows s as itself (tic = 1: a tic label, whose
 * % is doubled). */
void ts_gp_str(ts_sbuf *b, const char *s, int tic);
/* Draws the PNG and the SVG, moves both into place and removes the private folder; on failure
 * names the plot, shows gnuplot's words and keeps the folder. 0 or -1. */
int ts_gp_finish(ts_gp *g);
/* Gives up a figure before ts_gp_finish: removes the private folder and what it holds. */
void ts_gp_cleanup(ts_gp *g);
int ts_have_gnuplot(void);
/* The SVG's path beside a PNG's: x.png -> x.svg; a name not ending in .png gets .svg added. */
void ts_svg_path(char *buf, size_t n, const char *png);
/* A piece of a report file name made from user text: [A-Za-z0-9._-] kept, other bytes '_', and a
 * hash added when anything was replaced or cut (docs/architecture.md, "Plots"). */
void ts_file_part(char *buf, size_t n, const char *text);

/* ---- figures of runs (runinfo.c) ------------------------------------------------------------ */
/* One figure ("test.income.auc") over sweep values and seeds: v[sw * seeds + seed - 1]. */
typedef struct ts_series {
    char key[160];
    double *v;                /* (nsw * seeds) NAN where the run has no value */
} ts_series;

typedef struct ts_agg {       /* the figures of one experiment's runs */
    ts_series *s;
    int n, cap;
    int nsw, seeds;
} ts_agg;

void ts_agg_init(ts_agg *a, int nsw, int seeds);
void ts_agg_free(ts_agg *a);
/* Reads dir/metrics.json into run (sw, seed); 0, or -1 when it cannot be read. */
int ts_agg_read(ts_agg *a, const char *dir, int sw, int seed);
ts_series *ts_agg_find(const ts_agg *a, const char *key);
/* The finite values of s at sweep value sw, in seed order, into v (room for a->seeds); their
 * number. s may be NULL (0 values). */
int ts_series_values(const ts_agg *a, const ts_series *s, int sw, double *v);
/* 1 with the finite number that is all of s in *v, 0 when s is not one. */
int ts_number(const char *s, double *v);

/* ---- a run's resolved configuration (runinfo.c) -------------------------------------------- */
typedef struct ts_conf_kv { char *key, *val; } ts_conf_kv;
typedef struct ts_conf {      /* "section.key" = value, sorted by key */
    ts_conf_kv *kv;
    int n;
} ts_conf;
/* identity.txt's `config` lines (the keys that can change a figure), or, in a run without one,
 * config.ini's keys. 0, or -1 (c empty) when neither can be read. */
int ts_conf_read(const char *dir, ts_conf *c);
const char *ts_conf_get(const ts_conf *c, const char *key);
void ts_conf_free(ts_conf *c);

/* One row of "what differs": a key whose value is not the same in every configuration, or a
 * whole section that some configurations lack (section = 1; key is the section's name). */
typedef struct ts_diff_row {
    char key[2 * TS_NAME_MAX + 8];
    int section;
} ts_diff_row;
/* The rows of what differs between the n configurations c[0..n) (a NULL or empty one, a run that
 * could not be read, takes no part), keys in skip (a NULL-terminated list) left out; sorted by key.
 * Returns the number of rows (*rows malloc'ed), or -1 when out of memory. */
int ts_conf_diff(const ts_conf *const *c, int n, const char *const *skip, ts_diff_row **rows);
/* What a configuration shows in a row: the key's value, or for a section row its type (or
 * "present"); NULL when it has neither. */
const char *ts_diff_cell(const ts_conf *c, const ts_diff_row *r);

/* ---- where the comparison ran (runinfo.c) --------------------------------------------------- */
double ts_wall_clock(void);   /* seconds since the epoch, with fractions */
/* `git rev-parse --short HEAD` of tessera's source tree, with " (uncommitted changes)" when its
 * tracked files differ from it; "unknown" when it is no git checkout or git is missing. */
void ts_source_commit(char *buf, size_t n);
/* "AMD EPYC 7B13 (2 cores), 23.5 GiB memory, Linux 6.1.0-18-amd64 x86_64, OpenBLAS 0.3.21";
 * whatever cannot be read is left out. */
void ts_machine(char *buf, size_t n);

/* ---- figures (plots.c) ---------------------------------------------------------------------- */
/* One line of the loss figure: an experiment over its seeds (ndirs run folders; one = no band). */
typedef struct ts_curve_set {
    const char *label;
    char *const *dirs;
    int ndirs;
} ts_curve_set;
/* Training loss and validation figures per epoch: the mean over a set's runs with a min..max
 * band, one panel of training loss and one per validation metric. Tasks named in baseline (NULL
 * ends it; NULL: none) are drawn once, dashed. who names the command in messages. */
int ts_plot_curves(const char *who, const ts_curve_set *sets, int n, const char *const *baseline,
                   const char *png, const char *title);
/* One figure per experiment, mean ± std, with a dashed line per baseline figure (nb of them). */
int ts_plot_bars(const char *png, const char *title, const char *ylabel, char names[][TS_NAME_MAX],
                 const double *mean, const double *sd, int n, char bnames[][TS_NAME_MAX],
                 const double *bvalue, int nb);
/* One figure against the sweep's values: mean[i * nsweep + w] and sd likewise. */
int ts_plot_sweep(const char *png, const char *title, const char *xlabel, const char *ylabel,
                  char *const *sweep_val, int nsweep, char names[][TS_NAME_MAX],
                  const double *mean, const double *sd, int nexp);
/* Gate maps of gates.csv in each of ndir run folders (a column each). 1 when none has one. */
int ts_plot_gates(const char *png, const char *title, char *const *dirs, char *const *subtitles,
                  int ndir);
/* Recall@K against K for experiments labels[i] with figures ag[i] at sweep value sw; a baseline
 * task (in baseline, NULL-terminated) once. 1 when none reports recall@K. */
int ts_plot_recall(const char *png, const char *title, const char *const *labels, ts_agg *const *ag,
                   int n, int sw, const char *const *baseline);
/* The y axis title of a metric, with its unit. */
const char *ts_metric_axis(const char *key, char *buf, size_t n);

/* ---- the report (report.c) ------------------------------------------------------------------ */
typedef struct ts_report_exp {
    const char *name;         /* [experiment] name */
    const char *path;         /* its file */
    const char *group;        /* the data it runs on: experiments of one group are compared */
} ts_report_exp;

typedef struct ts_report_in {
    const char *out;              /* the comparison's folder */
    const char *title;            /* the suite's `name =`, or the experiments' names */
    const char *description;      /* the suite's `description =`, or "" */
    int argc;                     /* the command line after `tessera compare` */
    char *const *argv;
    int seeds, quick;
    const char *sweep_key;        /* NULL: no sweep */
    char *const *sweep_val;       /* (nsweep) the values as given */
    int nsweep;
    const ts_report_exp *exp;
    int nexp;
    /* [(exp * max(nsweep, 1) + sw) * seeds + seed - 1]: the folder of a run that finished now or
     * was reused; NULL for one that failed (a failed run's folder may hold older figures) */
    char *const *run_dir;
    double started;               /* ts_wall_clock() when the comparison started */
    int failed;                   /* runs that failed */
} ts_report_in;

/* Writes OUT/report.md, summary.csv, significance.csv and OUT/plots/. 0, or -1 with a sentence
 * printed when a file could not be written. */
int ts_report_write(const ts_report_in *in);

#endif /* TS_REPORT_H */
