/* host.h — the host side of libtessera, for the tessera program and the test suite:
 * finding plugins, loading and running experiments, conformance checks, reading results.
 * Not installed and not for plugins (a plugin includes tessera.h alone). */
#ifndef TESSERA_HOST_H
#define TESSERA_HOST_H

#include <signal.h>
#include <stdio.h>
#include "tessera.h"

/* ---- plugins ------------------------------------------------------------------------------ */
/* Scans the search path once (TESSERA_PLUGIN_PATH, the installed directory, the build tree).
 * A file that is no usable plugin (not a shared object, no entry symbol, another ABI, an ops
 * table too small) is skipped with its reason, and each problem of the path becomes a warning
 * (ts_plugin_warning); -1 only when out of memory. */
int ts_plugins_scan(ts_err *e);
/* A plugin of a kind by name (a name with '/' is a file, loaded for that use only), scanning
 * first if needed. NULL + message when there is none (with the nearest known name and the
 * reasons of the skipped files) or when two files of one folder define the name. */
const ts_plugin *ts_plugin_find(ts_kind kind, const char *name, ts_err *e);
/* The same for a name of any kind (describe, check-plugin NAME). */
const ts_plugin *ts_plugin_find_any(const char *name, ts_err *e);
/* Opens one plugin file (a path) and returns its index-th entry, validating the ABI and the
 * sizes of the descriptor and the ops table. */
const ts_plugin *ts_plugin_open_file(const char *path, uint32_t index, ts_err *e);
/* Where the plugin was loaded from. */
const char *ts_plugin_path(const ts_plugin *p);
const char *ts_kind_name(ts_kind k);
/* Every plugin found (after a scan), for `tessera plugins`, usable or not. */
int ts_plugin_count(void);
const ts_plugin *ts_plugin_at(int i);
/* NULL when plugin i is the one its name finds; else why not ("hidden by PATH", "not usable:
 * PATH defines the same name in the same folder"), written into buf. */
const char *ts_plugin_note(int i, char *buf, size_t n);
/* Files (or entries of a file) the scan skipped: the path, and the reason in *reason. */
int ts_plugin_skipped_count(void);
const char *ts_plugin_skipped(int i, const char **reason);
/* The scan's warnings, one sentence each, for the program to print (valid until exit). */
int ts_plugin_warning_count(void);
const char *ts_plugin_warning(int i);

/* ---- conformance checks (tessera check-plugin) ------------------------------------------- */
/* Runs the checks for p's kind (docs/plugins.md lists them): for layers and heads, gradients
 * against finite differences at several input shapes, backward accumulating, NULL input
 * gradients (in a forked child, so a crash is a failed check), sparse rows touched; losses'
 * gradients; an optimizer on a quadratic; a dataset's batches when it opens with its keys.
 * Writes a human-readable report into log (may be NULL). Returns 0 when every check passes. */
int ts_check_plugin(const ts_plugin *p, FILE *log, ts_err *e);
/* The same, built with nkeys extra "KEY=VALUE" keys that override the plugin's check_keys. */
int ts_check_plugin_keys(const ts_plugin *p, char *const *keys, int nkeys, FILE *log, ts_err *e);

/* ---- experiments -------------------------------------------------------------------------- */
typedef struct ts_run_opts {
    const char *results_dir;  /* NULL: results/<experiment name> */
    int noverride;
    char **overrides;         /* "section.key=value" */
    FILE *log;                /* progress lines and the final figures; NULL = silent */
    int max_epochs;           /* > 0: cap [train] epochs (compare --quick) */
    int resume;               /* continue from the results folder's latest valid checkpoint */
    double max_memory;        /* bytes a run may use; 0 = the memory the system has available */
    int overwrite;            /* replace the run the results folder holds (its files only) */
    int if_changed;           /* keep a finished run of the same identity; replace a changed one;
                                 resume an unfinished one (what `tessera compare` asks for) */
    ts_open_mode open_mode;   /* TS_OPEN_TRAIN, or evaluate / predict a trained run's data */
    const char *fitted_from;  /* a data_state.txt to open the dataset with (its fitted state);
                                 NULL: --resume uses RUN_DIR's own, a new run fits */
    volatile sig_atomic_t *stop;  /* set (to the signal's number) by the program's signal
                                 handler: the run writes a checkpoint at the next step and
                                 returns -1 with a sentence saying how to resume; NULL = never */
    double progress_every;    /* seconds between progress lines when log is not a terminal
                                 (a terminal gets a live line); 0 = none */
} ts_run_opts;

/* Parses, builds, trains, evaluates and writes results. */
int ts_run(const char *ini_path, const ts_run_opts *o, ts_err *e);

/* For tests and tools: an experiment loaded and built but not trained. */
typedef struct ts_exp ts_exp;
ts_exp *ts_exp_load(const char *ini_path, const ts_run_opts *o, ts_err *e); /* parse + check keys */
int ts_exp_open_data(ts_exp *x, ts_err *e);                                 /* dataset open */
int ts_exp_build(ts_exp *x, ts_err *e);                                     /* graph, params */
ts_data *ts_exp_data(ts_exp *x);
/* What the build accepted but doubts (a layer whose output reaches no head), one sentence each
 * in the form "FILE:LINE: warning: ..."; ts_exp_build also writes them to the run's log. */
int ts_exp_warning_count(const ts_exp *x);
const char *ts_exp_warning(const ts_exp *x, int i);          /* NULL past the last */
const ts_dataset_ops *ts_exp_data_ops(ts_exp *x);
void ts_exp_free(ts_exp *x);

/* ---- applying a trained run (apply.c): tessera predict / evaluate ------------------------- */
int ts_cmd_predict(int argc, char **argv);
int ts_cmd_evaluate(int argc, char **argv);

/* ---- hyper-parameter search (tune.c): tessera tune --------------------------------------- */
int ts_cmd_tune(int argc, char **argv);

/* ---- results ------------------------------------------------------------------------------ */
/* Reads one value of RESULTS_DIR/metrics.json ("test.income.auc"). */
int ts_metrics_get(const char *results_dir, const char *key, double *value, ts_err *e);

/* ---- statistics of comparisons (stats.c) ---------------------------------------------------- */
/* Mean and sample standard deviation (n - 1) of v[0..n); std is NAN for one value. */
void ts_mean_std(const double *v, int n, double *mean, double *std);
/* Two-sided p-value of Student's t statistic with df degrees of freedom. */
double ts_t_pvalue(double t, double df);
/* Paired t-test of a - b over n >= 2 pairs; -1 when n < 2. Equal differences give t = +-inf,
 * p = 0 (all zero: t = 0, p = 1). */
int ts_paired_t(const double *a, const double *b, int n, double *t, double *p);

#endif
