/* apply.c — `tessera predict` and `tessera evaluate`: a trained run applied to new rows of the
 * same layout. The run's config.ini is loaded with data.path set to the new file, the dataset
 * is opened with the run's fitted state (data_state.txt: vocabularies, statistics, never
 * refitted) so every row of the file, in file order, is read as the training rows were, the
 * trained weights (params.bin) are loaded, and each head predicts. Part of the program: it prints.
 * It never writes into the run's folder (a finished run is immutable). */
#include "config.h"
#include "internal.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

typedef struct apply_args {
    const char *run, *data, *out;
    char **over;
    int nover, quiet;
} apply_args;

static int usage(const char *cmd)
{
    if (!strcmp(cmd, "predict"))
        fprintf(stderr, "usage: tessera predict RUN_DIR --data FILE [--out FILE.csv] "
                "[SECTION.KEY=VALUE ...] (tessera predict --help)\n");
    else
        fprintf(stderr, "usage: tessera evaluate RUN_DIR --data FILE [--out DIR] "
                "[SECTION.KEY=VALUE ...] (tessera evaluate --help)\n");
    return 2;
}

static int parse(const char *cmd, int argc, char **argv, apply_args *a)
{
    memset(a, 0, sizeof *a);
    if (!(a->over = calloc((size_t)argc + 2, sizeof *a->over))) return -1;
    for (int i = 0; i < argc; i++) {
        if (!strcmp(argv[i], "--data") && i + 1 < argc) a->data = argv[++i];
        else if (!strcmp(argv[i], "--out") && i + 1 < argc) a->out = argv[++i];
        else if (!strcmp(argv[i], "--quiet")) a->quiet = 1;
        else if (argv[i][0] == '-') {
            fprintf(stderr, "tessera %s: unknown option %s; 'tessera %s --help' lists the options\n",
                    cmd, argv[i], cmd);
            return -1;
        } else if (!a->run) a->run = argv[i];
        else if (strchr(argv[i], '=')) a->over[a->nover++] = argv[i];
        else {
            fprintf(stderr, "tessera %s: '%s' is neither an option nor SECTION.KEY=VALUE\n", cmd,
                    argv[i]);
            return -1;
        }
    }
    return a->run && a->data ? 0 : -1;
}

/* Loads, opens with the fitted state, builds and loads the weights. */
static ts_exp *load(const apply_args *a, ts_open_mode mode, ts_err *e)
{
    char cfg[TS_PATH_MAX + 32], state[TS_PATH_MAX + 32], params[TS_PATH_MAX + 32];
    snprintf(cfg, sizeof cfg, "%s/config.ini", a->run);
    snprintf(state, sizeof state, "%s/data_state.txt", a->run);
    snprintf(params, sizeof params, "%s/params.bin", a->run);
    struct stat sb;
    if (stat(cfg, &sb) || stat(params, &sb))
        return ts_fail(e, "%s is not a finished run (it has no %s): give the folder a `tessera "
                       "run` wrote", a->run, stat(cfg, &sb) ? "config.ini" : "params.bin"), NULL;
    char assign[TS_PATH_MAX + 16];
    snprintf(assign, sizeof assign, "data.path=%s", a->data);
    a->over[a->nover] = assign;
    ts_run_opts o = {0};
    o.results_dir = a->run;
    o.noverride = a->nover + 1;
    o.overrides = a->over;
    o.open_mode = mode;
    o.fitted_from = access(state, F_OK) == 0 ? state : NULL;
    ts_exp *x = ts_exp_load(cfg, &o, e);
    if (!x) return NULL;
    const ts_dataset_ops *dops = x->data_pl->ops;
    if (!o.fitted_from) {
        ts_fail(e, "%s has no data_state.txt, so the vocabularies and statistics its dataset "
                "(type = %s) fitted on the training rows are not known%s; without them new rows "
                "would be read differently from the training rows. Train the run again with this "
                "tessera", a->run, x->data_pl->name,
                TS_OP(dops, fitted) ? " (the run was made by an older tessera)" :
                " (this dataset plugin does not save its fitted state)");
        ts_exp_free(x);
        return NULL;
    }
    if (ts_exp_build(x, e) || ts_load_params(x, params, e)) {
        ts_exp_free(x);
        return NULL;
    }
    return x;
}

static void log_unseen(const apply_args *a, ts_exp *x)
{
    const void *p;
    long n;
    if (a->quiet) return;
    fprintf(stderr, "%s: %ld rows of %s\n", x->name, x->data.nrows[TS_TEST], a->data);
    if (ts_ctx_aux(&x->ctx, "unseen_values", &p, &n) == 0 && n == 1 && *(const long *)p > 0)
        fprintf(stderr, "%s: %ld categorical values were not in the training vocabulary; they "
                "take their column's unseen bucket, as in training\n", x->name, *(const long *)p);
    if (x->skipped_rows > 0)
        fprintf(stderr, "%s: skipped %ld malformed rows (skip_bad_rows = true)\n", x->name,
                x->skipped_rows);
}

int ts_cmd_predict(int argc, char **argv)
{
    apply_args a;
    if (parse("predict", argc, argv, &a)) { free(a.over); return usage("predict"); }
    ts_err e;
    ts_exp *x = load(&a, TS_OPEN_PREDICT, &e);
    int rc = x ? 0 : -1;
    if (!rc) {
        log_unseen(&a, x);
        rc = ts_exp_evaluate(x, TS_TEST, &e);
    }
    char tmp[TS_PATH_MAX];
    if (!rc) {
        /* stdout goes through a temporary file, so a failed head never leaves half a table */
        const char *out = a.out;
        if (!out) {
            snprintf(tmp, sizeof tmp, "/tmp/tessera-predict-%d.csv", (int)getpid());
            out = tmp;
        }
        int w = ts_write_predictions(x, out, 0, 0, &e);
        if (w) rc = -1;
        if (!w && !a.out) {
            FILE *f = fopen(tmp, "r");
            char buf[1 << 16];
            size_t k;
            while (f && (k = fread(buf, 1, sizeof buf, f)) > 0) fwrite(buf, 1, k, stdout);
            if (f) fclose(f);
            unlink(tmp);
            if (fflush(stdout)) rc = ts_fail(&e, "cannot write the predictions: %s", strerror(errno));
        } else if (!w && !a.quiet) {
            fprintf(stderr, "%s: predictions in %s\n", x->name, a.out);
        }
    }
    ts_exp_free(x);
    free(a.over);
    if (rc) fprintf(stderr, "tessera predict: %s\n", e.msg);
    return rc ? 1 : 0;
}

int ts_cmd_evaluate(int argc, char **argv)
{
    apply_args a;
    if (parse("evaluate", argc, argv, &a)) { free(a.over); return usage("evaluate"); }
    ts_err e;
    int rc = 0;
    if (a.out) {
        char other[300] = "";
        ts_dir_state st = ts_rundir_state(a.out, other, sizeof other);
        if (st != TS_DIR_EMPTY)
            rc = ts_fail(&e, "%s is not empty: give --out a new or empty folder (evaluate writes "
                         "metrics.json and predictions.csv there)", a.out);
    }
    ts_exp *x = rc ? NULL : load(&a, TS_OPEN_EVALUATE, &e);
    if (!x) rc = -1;
    if (!rc) {
        log_unseen(&a, x);
        x->ctx.nmetrics = 0;
        rc = ts_exp_evaluate(x, TS_TEST, &e);
    }
    if (!rc) {
        for (int i = 0; i < x->ctx.nmetrics; i++) {
            const ts_metric_rec *m = &x->ctx.metrics[i];
            printf("test.%s.%s = %.6f\n", m->task, m->metric, m->value);
        }
        if (a.out) {
            char p[TS_PATH_MAX + 32];
            snprintf(p, sizeof p, "%s/metrics.json", a.out);
            if (ts_mkdirs(a.out, &e) || ts_write_metrics_json(p, x->ctx.metrics, x->ctx.nmetrics, &e))
                rc = -1;
            snprintf(p, sizeof p, "%s/predictions.csv", a.out);
            if (!rc && ts_write_predictions(x, p, 1, 1, &e) < 0) rc = -1;
            if (!rc && !a.quiet) fprintf(stderr, "%s: metrics.json and predictions.csv in %s\n",
                                         x->name, a.out);
        }
    }
    ts_exp_free(x);
    free(a.over);
    if (rc) fprintf(stderr, "tessera evaluate: %s\n", e.msg);
    return rc ? 1 : 0;
}
