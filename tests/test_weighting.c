/* test_weighting.c — how tasks are weighted and combined (core/train.c):
 *  - output weights: the grid search finds a known best weight vector (labels made from
 *    p1 + 0.3 p2), and end to end on Census-Income it reports valid/test.combined.* never below
 *    the task's own validation AUC, and rejects an unknown figure or task; on a ranking figure
 *    (MAP, MRR) each query ranks its own rows: a hand case where only a mixture of two rankers
 *    puts every relevant row first, the figure of one ranker alone equal to MAP by hand;
 *  - GradNorm: with its rate at 0 (weights fixed at 1) its per-task backward passes give the
 *    same training run as one backward pass; on a two-task toy problem it moves weight toward
 *    the task whose loss falls more slowly; a graph without a shared layer is refused;
 *  - uncertainty weighting: the learned log-variances settle at log(MSE) of each task;
 *  - a frozen pretrained embedding keeps its vectors through a whole training run.
 * The end-to-end runs use small generated csv files and a few seconds of training. */
#include "testutil.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <cmocka.h>

#include "internal.h"

/* core/train.c: the grid search of [train] output_weights. */
int ts_output_weights_search(const float *const *score, int K, const float *label, long n,
                             double *best_w, double *best_auc, float *buf);
int ts_output_weights_rank(const float *const *score, int K, const float *label,
                           const int32_t *group, long n, const char *figure, double *best_w,
                           double *best, float *buf);


static int setup(void **state)
{
    (void)state;
    return tu_dir_make("weighting");
}

static int teardown(void **state)
{
    (void)state;
    return tu_dir_remove();
}

static const char *src(const char *rel)
{
    static char buf[4][4096];
    static int k;
    const char *top = getenv("top_srcdir");
    k = (k + 1) % 4;
    snprintf(buf[k], sizeof buf[k], "%s/%s", top && *top ? top : ".", rel);
    return buf[k];
}

static void write_text(const char *path, const char *text)
{
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    fputs(text, f);
    fclose(f);
}

/* Runs an experiment with overrides (NULL-terminated); returns ts_run's status, message in e. */
static int run(const char *ini, const char *results, ts_err *e, ...)
{
    char *over[32];
    int n = 0;
    va_list ap;
    va_start(ap, e);
    for (const char *s; n < 32 && (s = va_arg(ap, const char *));) over[n++] = (char *)s;
    va_end(ap);
    ts_run_opts o = {.results_dir = results, .noverride = n, .overrides = over, .overwrite = 1};
    return ts_run(ini, &o, e);
}

static double metric(const char *dir, const char *key)
{
    double v = NAN;
    ts_err e;
    if (ts_metrics_get(dir, key, &v, &e)) fail_msg("%s", e.msg);
    return v;
}

/* ---- output weights: the search ------------------------------------------------------------ */
static void test_search_finds_known_weights(void **unused)
{
    (void)unused;
    enum { N = 20000 };
    float *p1 = malloc(N * sizeof(float)), *p2 = malloc(N * sizeof(float));
    float *p3 = malloc(N * sizeof(float)), *y = malloc(N * sizeof(float));
    float *buf = malloc(N * sizeof(float));
    ts_rng r;
    ts_rng_seed(&r, 5);
    long pos = 0;
    for (int i = 0; i < N; i++) {
        p1[i] = (float)ts_rng_uniform(&r);
        p2[i] = (float)ts_rng_uniform(&r);
        p3[i] = (float)ts_rng_uniform(&r);              /* unrelated to the label */
        y[i] = p1[i] + 0.3f * p2[i] > 0.8f;
        pos += y[i] > 0.5f;
    }
    assert_true(pos > N / 5 && pos < 4 * N / 5);
    double w[3], auc;
    /* Two scores: only the direction (1, 0.3) separates the classes perfectly. */
    const float *two[2] = {p1, p2};
    assert_int_equal(ts_output_weights_search(two, 2, y, N, w, &auc, buf), 0);
    assert_float_equal(auc, 1.0, 1e-5);             /* float rounding at the threshold */
    assert_float_equal(w[0], 1.0, 1e-12);
    assert_float_equal(w[1], 0.3, 1e-12);
    /* Listed the other way round the weights follow: (0.3, 1) scaled to a largest weight of 1
     * is (0.3, 1) itself; the third score gets weight 0. */
    const float *three[3] = {p2, p3, p1};
    assert_int_equal(ts_output_weights_search(three, 3, y, N, w, &auc, buf), 0);
    assert_float_equal(auc, 1.0, 1e-5);
    assert_float_equal(w[0], 0.3, 1e-12);
    assert_float_equal(w[1], 0.0, 1e-12);
    assert_float_equal(w[2], 1.0, 1e-12);
    /* A single score is the task's own AUC, and is not beaten by any mixture of one score. */
    const float *one[1] = {p1};
    assert_int_equal(ts_output_weights_search(one, 1, y, N, w, &auc, buf), 0);
    assert_float_equal(w[0], 1.0, 1e-12);
    assert_float_equal(auc, ts_auc(p1, y, NULL, N), 1e-12);
    assert_true(auc < 0.99);
    /* One class only: no AUC to maximise. */
    for (int i = 0; i < N; i++) y[i] = 0;
    assert_int_equal(ts_output_weights_search(two, 2, y, N, w, &auc, buf), -1);
    free(p1); free(p2); free(p3); free(y); free(buf);
}

/* ---- output weights on a ranking figure: each query's own rows -------------------------------
 * Four queries of three candidates each, one relevant (label 1). Ranker A orders queries 0-1
 * right and puts the relevant row of queries 2-3 second; ranker B the other way round; the scores
 * are made so that A + B orders every query right, while the pooled rows (one ranking over all
 * twelve) cannot be ordered by any mixture, so the figure is truly per query. */
static void test_output_weights_rank_hand(void **unused)
{
    (void)unused;
    /*                    q0: rel first     q1           q2: rel second      q3 */
    const float A[12] = {0.9f, 0.5f, 0.1f, 1.8f, 1.4f, 1.0f, 0.5f, 0.6f, 0.0f, 0.4f, 0.5f, 0.1f};
    const float B[12] = {0.2f, 0.3f, 0.0f, 0.1f, 0.2f, 0.0f, 0.9f, 0.1f, 0.2f, 0.8f, 0.3f, 0.0f};
    const float y[12] = {1, 0, 0, 1, 0, 0, 1, 0, 0, 1, 0, 0};
    const int32_t g[12] = {7, 7, 7, 3, 3, 3, 9, 9, 9, 5, 5, 5};
    float buf[12];
    double w[2], f;
    /* A alone: RR 1, 1, 1/2, 1/2 -> MRR = MAP = 0.75 (one relevant row per query). */
    const float *a[1] = {A};
    assert_int_equal(ts_output_weights_rank(a, 1, y, g, 12, "map", w, &f, buf), 0);
    assert_float_equal(f, 0.75, 1e-12);
    assert_int_equal(ts_output_weights_rank(a, 1, y, g, 12, "mrr", w, &f, buf), 0);
    assert_float_equal(f, 0.75, 1e-12);
    /* The mixture: every relevant row first; A + B ranks q0 (1.1 > 0.8 > 0.1), q1 (0.9 > 0.6 >
     * 1.0), q2 (1.4 > 0.7 > 0.2), q3 (1.2 > 0.8 > 0.1). The first vector found with the best
     * figure is kept: (1, 0.1)... (1, 1) all tie at 1, so only the figure and its being above
     * both rankers' own is asserted, and that the weights are reported with the largest 1.
     * (A + B on q1 is 1.9 > 1.6 > 1.0.) */
    const float *ab[2] = {A, B};
    assert_int_equal(ts_output_weights_rank(ab, 2, y, g, 12, "map", w, &f, buf), 0);
    assert_float_equal(f, 1.0, 1e-12);
    assert_true(w[0] > 0 && w[1] > 0);
    assert_float_equal(w[0] > w[1] ? w[0] : w[1], 1.0, 1e-12);
    double both = A[0] * w[0] + B[0] * w[1], other = A[1] * w[0] + B[1] * w[1];
    assert_true(both > other);                         /* the weights found really do it */
    assert_int_equal(ts_output_weights_rank(ab, 2, y, g, 12, "ndcg@10", w, &f, buf), 0);
    assert_float_equal(f, 1.0, 1e-12);
    /* Pooled over all rows (AUC) no mixture is perfect: q1's second row is above q0's relevant
     * row in both rankers. */
    double auc;
    assert_int_equal(ts_output_weights_search(ab, 2, y, 12, w, &auc, buf), 0);
    assert_true(auc < 1.0);
    /* No relevant row in any query, or an unknown figure: refused. */
    const float z[12] = {0};
    assert_int_equal(ts_output_weights_rank(ab, 2, z, g, 12, "map", w, &f, buf), -1);
    assert_int_equal(ts_output_weights_rank(ab, 2, y, g, 12, "auc", w, &f, buf), -1);
}

/* ---- output weights: end to end on Census-Income ------------------------------------------- */
static void test_output_weights_census(void **unused)
{
    (void)unused;
    ts_err e;
    const char *ini = src("experiments/census_mmoe.ini"), *dir = tu_in("ow");
    if (run(ini, dir, &e, "train.epochs=1", "train.batch=512", "optimizer.lr=0.003",
            "train.output_weights=income.auc", NULL))
        fail_msg("%s", e.msg);
    double va = metric(dir, "valid.combined.auc"), vi = metric(dir, "valid.income.auc");
    double ta = metric(dir, "test.combined.auc");
    print_message("valid income AUC %.4f, combined %.4f; test combined %.4f\n", vi, va, ta);
    double wi = metric(dir, "test.combined.w_income"), wm = metric(dir, "test.combined.w_marital");
    assert_true(va >= vi - 1e-12);                      /* (1, 0) is in the grid */
    assert_true(ta > 0.9 && ta <= 1);
    assert_true(wi >= 0 && wi <= 1 && wm >= 0 && wm <= 1);
    assert_float_equal(wi > wm ? wi : wm, 1.0, 1e-12);   /* reported with the largest weight 1 */
    /* Only AUC, and only a head that hands out predictions. */
    assert_int_not_equal(run(ini, tu_in("ow-bad"), &e, "train.epochs=1",
                             "train.output_weights=income.logloss", NULL), 0);
    assert_non_null(strstr(e.msg, "output_weights = income.logloss"));
    assert_non_null(strstr(e.msg, "TASK.auc"));
    assert_int_not_equal(run(ini, tu_in("ow-bad"), &e, "train.epochs=1",
                             "train.output_weights=salary.auc", NULL), 0);
    assert_non_null(strstr(e.msg, "no head of that name"));
    /* A ranking figure needs the field of the queries: none named, or one that is not an id. */
    assert_int_not_equal(run(ini, tu_in("ow-bad"), &e, "train.epochs=1",
                             "train.output_weights=income.map", NULL), 0);
    assert_non_null(strstr(e.msg, "output_group = FIELD"));
    assert_int_not_equal(run(ini, tu_in("ow-bad"), &e, "train.epochs=1",
                             "train.output_weights=income.mrr", "train.output_group=income",
                             NULL), 0);
    assert_non_null(strstr(e.msg, "output_group = income: name an I32 field"));
}

/* ---- toy two-task data --------------------------------------------------------------------- */
/* rows of x1..x4 ~ N(0, 1), a category c0..c9, and two targets:
 *   ya = x1 - x2 + 0.5 x3 + noise_a N(0, 1),   yb = sin(2 x1) x4 + 0.5 x2 + noise_b N(0, 1) */
static const char *toy_csv(const char *name, int rows, double noise_a, double noise_b)
{
    const char *path = tu_in(name);
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    ts_rng r;
    ts_rng_seed(&r, 11);
    fprintf(f, "x1,x2,x3,x4,cat,ya,yb\n");
    for (int i = 0; i < rows; i++) {
        double x[4];
        for (int j = 0; j < 4; j++) x[j] = ts_rng_normal(&r);
        int c = (int)ts_rng_below(&r, 10);
        double ya = x[0] - x[1] + 0.5 * x[2] + noise_a * ts_rng_normal(&r);
        double yb = sin(2 * x[0]) * x[3] + 0.5 * x[1] + noise_b * ts_rng_normal(&r);
        fprintf(f, "%.6f,%.6f,%.6f,%.6f,c%d,%.6f,%.6f\n", x[0], x[1], x[2], x[3], c, ya, yb);
    }
    fclose(f);
    return path;
}

/* A shared ReLU bottom and a linear tower per task (GradNorm's W: the bottom's weights). */
static const char *toy_shared_ini(const char *name, const char *csv, const char *train_extra)
{
    static char text[4096];
    snprintf(text, sizeof text,
             "[experiment]\nname = toy\nseed = 3\n\n"
             "[data]\ntype = csv\npath = %s\ndense = x1, x2, x3, x4\nlabels = ya, yb\n"
             "split = 0.8, 0.1, 0.1\n\n"
             "[layer.bottom]\ntype = dense\ninput = dense\nunits = 32\nactivation = relu\n\n"
             "[layer.a]\ntype = dense\ninput = bottom\nunits = 1\n\n"
             "[layer.b]\ntype = dense\ninput = bottom\nunits = 1\n\n"
             "[head.ya]\ntype = regression\ninput = a\nlabel = ya\nloss = mse\n\n"
             "[head.yb]\ntype = regression\ninput = b\nlabel = yb\nloss = mse\n\n"
             "[optimizer]\ntype = adam\nlr = 0.005\n\n"
             "[train]\nepochs = 4\nbatch = 64\nlog_every = 1\n%s\n", csv, train_extra);
    const char *path = tu_in(name);
    write_text(path, text);
    return path;
}

/* Column col (0-based) of every data row of a csv file into v; returns the row count. */
static int csv_column(const char *path, int col, double *v, int max)
{
    FILE *f = fopen(path, "r");
    assert_non_null(f);
    char line[1024];
    int n = 0;
    if (!fgets(line, sizeof line, f)) { fclose(f); return 0; }
    while (n < max && fgets(line, sizeof line, f)) {
        char *p = line;
        for (int c = 0; c < col && p; c++) { p = strchr(p, ','); if (p) p++; }
        assert_non_null(p);
        v[n++] = strtod(p, NULL);
    }
    fclose(f);
    return n;
}

/* ---- GradNorm ------------------------------------------------------------------------------ */
static void test_gradnorm_passes_sum_to_one_backward(void **unused)
{
    (void)unused;
    ts_err e;
    const char *csv = toy_csv("eq.csv", 4000, 0.1, 0.5);
    const char *a = toy_shared_ini("eq-static.ini", csv, ""),
               *b = toy_shared_ini("eq-gn.ini", csv, "weighting = gradnorm\ngradnorm_lr = 0");
    if (run(a, tu_in("eq-s"), &e, "train.epochs=1", NULL)) fail_msg("%s", e.msg);
    if (run(b, tu_in("eq-g"), &e, "train.epochs=1", NULL)) fail_msg("%s", e.msg);
    static double la[200], lb[200], wa[200];
    char pa[600], pb[600];
    snprintf(pa, sizeof pa, "%s/train.csv", tu_in("eq-s"));
    snprintf(pb, sizeof pb, "%s/train.csv", tu_in("eq-g"));
    double worst = 0;
    for (int col = 4; col <= 5; col++) {         /* loss.ya, loss.yb of every step */
        int na = csv_column(pa, col, la, 200), nb = csv_column(pb, col, lb, 200);
        assert_int_equal(na, 50);                /* 3200 rows / 64 */
        assert_int_equal(nb, na);
        for (int i = 0; i < na; i++) {
            double d = fabs(la[i] - lb[i]) / fabs(la[i]);
            worst = d > worst ? d : worst;
        }
        for (int i = 0; i < na; i++)
            if (fabs(la[i] - lb[i]) > 1e-4 * fabs(la[i]) + 1e-6)
                fail_msg("step %d, column %d: static %.9g, gradnorm with fixed weights %.9g",
                         i + 1, col, la[i], lb[i]);
    }
    print_message("largest relative difference of a step's loss: %.2g\n", worst);
    /* the weights stayed at 1 and are logged */
    int nw = csv_column(pb, 7, wa, 200);
    assert_int_equal(nw, 50);
    for (int i = 0; i < nw; i++) assert_float_equal(wa[i], 1.0, 1e-9);
}

static void test_gradnorm_favours_slow_task(void **unused)
{
    (void)unused;
    ts_err e;
    /* ya is a noise-free linear function: its loss falls fast relative to its start. yb is
     * non-linear and noisy (noise variance 1 of a total about 1.5): its loss ratio stays high. */
    const char *csv = toy_csv("slow.csv", 8000, 0.0, 1.0);
    const char *ini = toy_shared_ini("slow.ini", csv, "weighting = gradnorm\ngradnorm_alpha = 1.5");
    const char *dir = tu_in("slow");
    if (run(ini, dir, &e, NULL)) fail_msg("%s", e.msg);
    double wa = metric(dir, "train.gradnorm.w_ya"), wb = metric(dir, "train.gradnorm.w_yb");
    print_message("gradnorm weights: ya %.3f, yb %.3f; test mse ya %.4f, yb %.4f\n", wa, wb,
                  metric(dir, "test.ya.mse"), metric(dir, "test.yb.mse"));
    assert_float_equal(wa + wb, 2.0, 1e-6);              /* renormalised to the task count */
    if (!(wb > 1.3 && wa < 0.7))
        fail_msg("GradNorm weights ya %.3f, yb %.3f: expected the slow task yb to gain", wa, wb);
    /* The easy task is down-weighted, not dropped: its test MSE stays far below its label
     * variance of 2.25 (measured 0.036). */
    assert_true(metric(dir, "test.ya.mse") < 0.1);
    /* A graph where no layer feeds both heads has no W: refused with the reason. */
    char text[2048];
    snprintf(text, sizeof text,
             "[experiment]\nname = split\n\n[data]\ntype = csv\npath = %s\ndense = x1, x2, x3, x4\n"
             "labels = ya, yb\n\n[layer.a]\ntype = dense\ninput = dense\nunits = 1\n\n"
             "[layer.b]\ntype = dense\ninput = dense\nunits = 1\n\n"
             "[head.ya]\ntype = regression\ninput = a\nlabel = ya\nloss = mse\n\n"
             "[head.yb]\ntype = regression\ninput = b\nlabel = yb\nloss = mse\n\n"
             "[optimizer]\ntype = adam\n\n[train]\nweighting = gradnorm\n", csv);
    write_text(tu_in("split.ini"), text);
    assert_int_not_equal(run(tu_in("split.ini"), tu_in("split"), &e, NULL), 0);
    assert_non_null(strstr(e.msg, "gradnorm needs a layer"));
}

/* ---- uncertainty weighting ----------------------------------------------------------------- */
static void test_uncertainty_learns_log_mse(void **unused)
{
    (void)unused;
    ts_err e;
    /* Separate linear layers: ya (linear, noise 0.1) fits down to an MSE of about 0.01, yb
     * (non-linear, noise 1) to about 1.5. exp(-s) L + s is smallest at s = log L, so s_k should
     * settle at log(MSE_k). 2000 Adam steps of rate 0.01: s_ya needs about 500 to reach -4.6. */
    const char *csv = toy_csv("unc.csv", 10000, 0.1, 1.0);
    char text[2048];
    snprintf(text, sizeof text,
             "[experiment]\nname = unc\nseed = 2\n\n[data]\ntype = csv\npath = %s\n"
             "dense = x1, x2, x3, x4\nlabels = ya, yb\nsplit = 0.8, 0.1, 0.1\n\n"
             "[layer.a]\ntype = dense\ninput = dense\nunits = 1\n\n"
             "[layer.b]\ntype = dense\ninput = dense\nunits = 1\n\n"
             "[head.ya]\ntype = regression\ninput = a\nlabel = ya\nloss = mse\n\n"
             "[head.yb]\ntype = regression\ninput = b\nlabel = yb\nloss = mse\n\n"
             "[optimizer]\ntype = adam\nlr = 0.01\n\n"
             "[train]\nepochs = 16\nbatch = 64\nweighting = uncertainty\n", csv);
    write_text(tu_in("unc.ini"), text);
    const char *dir = tu_in("unc");
    if (run(tu_in("unc.ini"), dir, &e, NULL)) fail_msg("%s", e.msg);
    /* s_k is fitted to the training batches' loss: compare with its mean over the last 400
     * steps (train.csv rows every 100 steps), and with the validation MSE more loosely. */
    static double col[64];
    char tpath[600];
    snprintf(tpath, sizeof tpath, "%s/train.csv", dir);
    for (int k = 0; k < 2; k++) {
        char key[64], mkey[64];
        snprintf(key, sizeof key, "train.uncertainty.log_var_%s", k ? "yb" : "ya");
        snprintf(mkey, sizeof mkey, "valid.%s.mse", k ? "yb" : "ya");
        double s = metric(dir, key), mse = metric(dir, mkey), tl = 0;
        int n = csv_column(tpath, 4 + k, col, 64);
        assert_true(n > 10);
        for (int i = n - 4; i < n; i++) tl += col[i] / 4;
        print_message("%s = %.3f, log(train loss) = %.3f, log(%s) = %.3f\n", key, s, log(tl),
                      mkey, log(mse));
        if (fabs(s - log(tl)) > 0.1 || fabs(s - log(mse)) > 0.2)
            fail_msg("%s = %.3f but log(train loss) = %.3f, log(%s) = %.3f", key, s, log(tl),
                     mkey, log(mse));
    }
    /* and the two tasks really differ, so the check above is not vacuous */
    assert_true(metric(dir, "train.uncertainty.log_var_yb") -
                metric(dir, "train.uncertainty.log_var_ya") > 3);
}

/* ---- a frozen pretrained table through a whole run ---------------------------------------- */
static void test_frozen_pretrained_survives_training(void **unused)
{
    (void)unused;
    ts_err e;
    const char *csv = toy_csv("frozen.csv", 3000, 0.1, 0.5);
    /* vocab of `cat`: 10 values + the unseen bucket = 11 rows of 3 */
    FILE *f = fopen(tu_in("vec.txt"), "w");
    assert_non_null(f);
    fprintf(f, "9 3\n");   /* ids 9 and 10 are missing: they keep their init and are counted */
    for (int id = 0; id < 9; id++)
        fprintf(f, "%d %.3f %.3f %.3f\n", id, 0.1 * id, -0.2, 1.0 - 0.05 * id);
    fclose(f);
    for (int trainable = 0; trainable <= 1; trainable++) {
        char text[3072];
        snprintf(text, sizeof text,
                 "[experiment]\nname = frozen\nseed = 4\n\n[data]\ntype = csv\npath = %s\n"
                 "dense = x1, x2, x3, x4\ncategorical = cat\nlabels = ya, yb\n\n"
                 "[layer.emb]\ntype = embedding\ninput = categorical\ndim = 3\npretrained = %s\n"
                 "trainable = %s\n\n[layer.x]\ntype = concat\ninput = emb, dense\n\n"
                 "[layer.bottom]\ntype = dense\ninput = x\nunits = 8\nactivation = relu\n\n"
                 "[layer.a]\ntype = dense\ninput = bottom\nunits = 1\n\n"
                 "[layer.b]\ntype = dense\ninput = bottom\nunits = 1\n\n"
                 "[head.ya]\ntype = regression\ninput = a\nlabel = ya\nloss = mse\n\n"
                 "[head.yb]\ntype = regression\ninput = b\nlabel = yb\nloss = mse\n\n"
                 "[optimizer]\ntype = adam\nlr = 0.01\n\n"
                 "[train]\nepochs = 2\nbatch = 32\nweighting = gradnorm\n",
                 csv, tu_in("vec.txt"), trainable ? "true" : "false");
        write_text(tu_in("frozen.ini"), text);
        ts_run_opts o = {.results_dir = tu_in("frozen"), .overwrite = 1};
        ts_exp *x = ts_exp_load(tu_in("frozen.ini"), &o, &e);
        if (!x) fail_msg("%s", e.msg);
        if (ts_exp_train(x, NULL, &e)) fail_msg("%s", e.msg);
        ts_param *T = NULL;
        for (int i = 0; i < x->ctx.nparams; i++)
            if (strstr(x->ctx.params[i]->name, "emb")) T = x->ctx.params[i];
        assert_non_null(T);
        assert_int_equal(T->rows, 11);
        int moved = 0;
        for (int id = 0; id < 9; id++) {
            const float want[3] = {(float)(0.1 * id), -0.2f, (float)(1.0 - 0.05 * id)};
            for (int j = 0; j < 3; j++) moved |= fabsf(T->w[id * 3 + j] - want[j]) > 1e-6f;
        }
        /* frozen: every vector exactly as read; trainable: the same start has moved */
        assert_int_equal(moved, trainable);
        /* the counts of the file's coverage, in the run's results */
        char line[256] = "";
        snprintf(text, sizeof text, "%s/pretrained_emb.csv", tu_in("frozen"));
        FILE *r = fopen(text, "r");
        assert_non_null(r);
        assert_non_null(fgets(line, sizeof line, r));
        assert_non_null(fgets(line, sizeof line, r));
        fclose(r);
        assert_string_equal(line, "emb,9,2,0\n");
        ts_exp_free(x);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_search_finds_known_weights),
        cmocka_unit_test(test_output_weights_rank_hand),
        cmocka_unit_test(test_output_weights_census),
        cmocka_unit_test(test_gradnorm_passes_sum_to_one_backward),
        cmocka_unit_test(test_gradnorm_favours_slow_task),
        cmocka_unit_test(test_uncertainty_learns_log_mse),
        cmocka_unit_test(test_frozen_pretrained_survives_training),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
