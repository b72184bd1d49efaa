/* test_validity.c — what would give a silently wrong result is refused or said: a label that
 * reaches a layer or a head's input (a label leak), a layer named like a dataset field, a
 * `layer.` input that names no layer, labels a head or its loss cannot take (binary 2, 0.5,
 * -1/+1; real NaN; a class out of range), a layer whose output reaches no head (a warning), and
 * early stopping on a figure the validation split leaves undefined (the last epoch is kept).
 * Each case failed at 0b960b7: the experiment built or ran and reported figures. */
#include "testutil.h"

#include <math.h>

/* 1-based number of the line of text that contains needle (0 if none). */
static int line_of(const char *text, const char *needle)
{
    const char *p = strstr(text, needle);
    if (!p) return 0;
    int n = 1;
    for (const char *q = text; q < p; q++) n += *q == '\n';
    return n;
}

/* "PATH:LINE" of needle in text written to path (a message has it before ": " or ")"). */
static const char *at(const char *path, const char *text, const char *needle)
{
    static char buf[4][512];
    static int k;
    k = (k + 1) % 4;
    snprintf(buf[k], sizeof buf[k], "%s:%d", path, line_of(text, needle));
    return buf[k];
}

/* A csv of n rows: dense a, b; categorical c; labels income = i % 2 and marital = (i / 2) % 2;
 * income of row i is bad[i] where bad[i] is not NULL. */
static const char *write_csv(int n, const char *const *bad)
{
    static char csv[16384];
    snprintf(csv, sizeof csv, "a,b,c,income,marital\n");
    for (int i = 0; i < n; i++) {
        size_t k = strlen(csv);
        char inc[32];
        snprintf(inc, sizeof inc, "%d", i % 2);
        snprintf(csv + k, sizeof csv - k, "%.2f,%.2f,%s,%s,%d\n", (i % 2) - 0.5 + 0.01 * (i % 7),
                 0.1 * (i % 5), i % 3 ? "u" : "v", bad && bad[i] ? bad[i] : inc, (i / 2) % 2);
    }
    return tu_write(".csv", csv);
}

/* An experiment on that csv: `layers` and `heads` are sections; the rest is fixed. */
static const char *csv_exp(const char *csv, const char *layers, const char *heads)
{
    static char text[8192];
    snprintf(text, sizeof text,
             "[experiment]\nname = validity\nseed = 1\n\n"
             "[data]\ntype = csv\npath = %s\ndense = a, b\ncategorical = c\n"
             "labels = income, marital\n\n%s\n%s\n"
             "[optimizer]\ntype = adam\nlr = 0.01\n\n[train]\nepochs = 1\nbatch = 16\n",
             csv, layers, heads);
    return text;
}

static const char *income_head =
    "[head.income]\ntype = binary\ninput = out\nlabel = income\nloss = bce\n";

/* Builds text; the build must fail with every needle in its message (and the file's name). */
static void expect_refusal(const char *text, ...)
{
    const char *path = tu_write(".ini", text);
    ts_err e = {{0}};
    if (tu_build_exp(path, 0, NULL, &e) == 0) {
        print_error("built without an error:\n%s\n", text);
        fail();
    }
    va_list ap;
    va_start(ap, text);
    for (const char *s; (s = va_arg(ap, const char *));)
        if (!strstr(e.msg, s)) { print_error("message: %s\nmissing: %s\n", e.msg, s); fail(); }
    va_end(ap);
    assert_non_null(strstr(e.msg, path));
    unlink(path);
}

/* The same with the path of the experiment known in advance (for FILE:LINE needles). */
static const char *exp_path(const char *text) { return tu_write(".ini", text); }

static void expect_refusal_at(const char *path, ...)
{
    ts_err e = {{0}};
    if (tu_build_exp(path, 0, NULL, &e) == 0) {
        print_error("%s built without an error\n", path);
        fail();
    }
    va_list ap;
    va_start(ap, path);
    for (const char *s; (s = va_arg(ap, const char *));)
        if (!strstr(e.msg, s)) { print_error("message: %s\nmissing: %s\n", e.msg, s); fail(); }
    va_end(ap);
    unlink(path);
}

static void test_label_leaks_are_refused(void **st)
{
    (void)st;
    const char *csv = write_csv(60, NULL);
    /* a layer fed the label of a head (test AUC 1.0 at 0b960b7) */
    char text[8192];
    snprintf(text, sizeof text, "%s",
             csv_exp(csv, "[layer.x]\ntype = concat\ninput = dense, income\n\n"
                          "[layer.out]\ntype = dense\ninput = x\nunits = 1\n", income_head));
    const char *p = exp_path(text);
    expect_refusal_at(p, at(p, text, "input = dense, income"), "[layer.x] input 'income'",
                      "the label of [head.income]", at(p, text, "label = income"),
                      "Take 'income' out of `input =`", NULL);
    /* a head whose input is another head's label (a (B, 1) field passes for a logit) */
    snprintf(text, sizeof text, "%s",
             csv_exp(csv, "[layer.out]\ntype = dense\ninput = dense\nunits = 1\n",
                     "[head.income]\ntype = binary\ninput = out\nlabel = income\nloss = bce\n\n"
                     "[head.marital]\ntype = binary\ninput = income\nlabel = marital\n"
                     "loss = bce\n"));
    p = exp_path(text);
    expect_refusal_at(p, at(p, text, "input = income"), "[head.marital] input 'income'",
                      "the label of [head.income]", NULL);
    /* a head whose input is its own label */
    expect_refusal(csv_exp(csv, "[layer.out]\ntype = dense\ninput = dense\nunits = 1\n",
                           "[head.income]\ntype = binary\ninput = income\nlabel = income\n"
                           "loss = bce\n"),
                   "[head.income] input 'income' is the head's own label", NULL);
    /* a field the dataset declares a label, though no head of this experiment uses it */
    expect_refusal(csv_exp(csv, "[layer.x]\ntype = concat\ninput = dense, marital\n\n"
                                "[layer.out]\ntype = dense\ninput = x\nunits = 1\n", income_head),
                   "[layer.x] input 'marital' is a label: the dataset (type = csv) declares it",
                   NULL);
    /* the same in a bundled dataset: synthetic_mmoe's y2 as a feature of the y1 task */
    expect_refusal("[experiment]\nname = v\n[data]\ntype = synthetic_mmoe\nrows = 50, 10, 10\n"
                   "d = 4\n[layer.xy]\ntype = concat\ninput = x, y2\n[layer.out]\ntype = dense\n"
                   "input = xy\nunits = 1\n[head.y1]\ntype = regression\ninput = out\nlabel = y1\n"
                   "loss = mse\n[optimizer]\ntype = sgd\n[train]\nbatch = 8\n",
                   "[layer.xy] input 'y2' is a label: the dataset (type = synthetic_mmoe)", NULL);
    /* `input = layer.NAME` names a layer: it never falls back to a field (here the label) */
    expect_refusal(csv_exp(csv, "[layer.out]\ntype = dense\ninput = layer.dense\nunits = 1\n",
                           income_head),
                   "[layer.out] input 'layer.dense' names no layer",
                   "'dense' is a field of the dataset: write `input = dense`", NULL);
    unlink(csv);
}

static void test_layer_named_like_a_field(void **st)
{
    (void)st;
    const char *csv = write_csv(60, NULL);
    /* the head meant the layer and got the label (test AUC 1.0 at 0b960b7) */
    char text[8192];
    snprintf(text, sizeof text, "%s",
             csv_exp(csv, "[layer.income]\ntype = dense\ninput = dense\nunits = 1\n",
                     "[head.income]\ntype = binary\ninput = income\nlabel = income\nloss = bce\n"));
    const char *p = exp_path(text);
    expect_refusal_at(p, at(p, text, "[layer.income]"), "[layer.income] has the name of the "
                      "dataset's field 'income' (type = csv)", "Rename the layer", NULL);
    /* a feature field's name: the embedding would be skipped and the ids read as the input */
    expect_refusal(csv_exp(csv, "[layer.categorical]\ntype = embedding\ninput = categorical\n"
                                "dim = 2\n\n[layer.x]\ntype = concat\ninput = categorical, dense\n\n"
                                "[layer.out]\ntype = dense\ninput = x\nunits = 1\n", income_head),
                   "[layer.categorical] has the name of the dataset's field 'categorical'", NULL);
    unlink(csv);
}

static void test_dead_layers_warn(void **st)
{
    (void)st;
    const char *csv = write_csv(60, NULL);
    char text[8192];
    snprintf(text, sizeof text, "%s",
             csv_exp(csv, "[layer.out]\ntype = dense\ninput = dense\nunits = 1\n\n"
                          "[layer.extra]\ntype = dense\ninput = dense\nunits = 3\n\n"
                          "[layer.extra2]\ntype = dense\ninput = extra\nunits = 2\n", income_head));
    const char *p = exp_path(text);
    ts_run_opts o = {0};
    o.log = tmpfile();
    assert_non_null(o.log);
    ts_err e;
    ts_exp *x = ts_exp_load(p, &o, &e);
    assert_non_null(x);
    if (ts_exp_build(x, &e)) { print_error("%s\n", e.msg); fail(); }   /* accepted */
    char log[8192];
    rewind(o.log);
    size_t n = fread(log, 1, sizeof log - 1, o.log);
    log[n] = 0;
    fclose(o.log);
    tu_contains(log, at(p, text, "[layer.extra2]"),
                " warning: nothing reads the output of [layer.extra2]",
                at(p, text, "[layer.extra]\n"),
                " warning: [layer.extra] reaches no head: the layers that read it "
                "([layer.extra2]) feed no head", NULL);
    assert_int_equal(ts_exp_warning_count(x), 2);
    assert_non_null(strstr(ts_exp_warning(x, 0), "[layer.extra]"));
    assert_null(ts_exp_warning(x, 2));
    ts_exp_free(x);
    unlink(p);
    /* a graph without such a layer has no warning */
    p = exp_path(csv_exp(csv, "[layer.out]\ntype = dense\ninput = dense\nunits = 1\n",
                         income_head));
    assert_non_null(x = ts_exp_load(p, NULL, &e));
    if (ts_exp_build(x, &e)) { print_error("%s\n", e.msg); fail(); }
    assert_int_equal(ts_exp_warning_count(x), 0);
    ts_exp_free(x);
    unlink(p);
    unlink(csv);
}

/* label_data (tests/plugins) with extra [data] keys, one layer on x and the given head. */
static const char *ld_exp(const char *data_keys, const char *head, const char *train)
{
    static char text[4096];
    snprintf(text, sizeof text,
             "[experiment]\nname = validity_ld\nseed = 3\n\n"
             "[data]\ntype = label_data\nplugin = %s\n%s\n\n"
             "[layer.out]\ntype = dense\ninput = x\nunits = 1\n\n%s\n"
             "[optimizer]\ntype = adam\nlr = 0.05\n\n[train]\n%s\n",
             tu_build("tests/plugins/.libs/label_data.so"), data_keys, head, train);
    return text;
}

static void test_labels_a_head_cannot_take(void **st)
{
    (void)st;
    /* binary head, labels of 2, 0.5 and -1 among 0/1 (csv: rows land in shuffled splits) */
    const char *bad[60] = {0};
    bad[5] = "2";
    bad[17] = "0.5";
    bad[30] = "-1";
    const char *csv = write_csv(60, bad);
    char text[8192];
    snprintf(text, sizeof text, "%s",
             csv_exp(csv, "[layer.out]\ntype = dense\ninput = dense\nunits = 1\n", income_head));
    const char *p = exp_path(text);
    expect_refusal_at(p, at(p, text, "label = income"),
                      "[head.income] (type binary, loss bce) takes labels of exactly 0 or 1, but "
                      "the field 'income' holds 3 labels that are neither 0 nor 1 (",
                      "Put a 0/1 label in the data", "type = regression, loss = mse", NULL);
    unlink(csv);
    /* labels of -1 and +1 */
    for (int i = 0; i < 60; i++) bad[i] = i % 2 ? "1" : "-1";
    csv = write_csv(60, bad);
    expect_refusal(csv_exp(csv, "[layer.out]\ntype = dense\ninput = dense\nunits = 1\n",
                           income_head),
                   "holds 30 labels that are neither 0 nor 1", NULL);
    unlink(csv);
    /* the exact split and row (label_data's rows are not shuffled) */
    expect_refusal(ld_exp("bad_split = train\nbad_row = 7\nbad_value = 2",
                          "[head.y]\ntype = binary\ninput = out\nlabel = y\nloss = bce\n",
                          "batch = 8"),
                   "holds 1 label that is neither 0 nor 1 (train 1); the first is 2, row 7 of "
                   "the train split", NULL);
    /* a regression head with a binary loss: the loss's label kind is the stricter */
    expect_refusal("[experiment]\nname = v\n[data]\ntype = synthetic_mmoe\nrows = 50, 10, 10\n"
                   "d = 4\n[layer.out]\ntype = dense\ninput = x\nunits = 1\n[head.y1]\n"
                   "type = regression\ninput = out\nlabel = y1\nloss = bce\n[optimizer]\n"
                   "type = sgd\n[train]\nbatch = 8\n",
                   "[head.y1] (type regression, loss bce) takes labels of exactly 0 or 1",
                   "Use a loss for real values (loss = mse)", NULL);
    /* real labels must be finite */
    expect_refusal(ld_exp("bad_split = test\nbad_row = 3\nbad_value = nan",
                          "[head.y]\ntype = regression\ninput = out\nlabel = y\nloss = mse\n",
                          "batch = 8"),
                   "[head.y] (type regression, loss mse) takes finite real labels, but the field "
                   "'y' holds 1 label that is NaN or infinite (test 1); the first is nan, row 3 "
                   "of the test split", NULL);
    /* class indices: whole numbers below the head's class count (popularity: items = 2) */
    expect_refusal(ld_exp("bad_split = valid\nbad_row = 4\nbad_count = 2\nbad_value = 2.5",
                          "[head.pop]\ntype = popularity\ninput = x\nlabel = y\nitems = 2\n",
                          "batch = 8"),
                   "[head.pop] (type popularity) takes class indices, whole numbers in [0, 2), "
                   "but the field 'y' holds 2 labels that are not (valid 2); the first is 2.5, "
                   "row 4 of the valid split", NULL);
    expect_refusal(ld_exp("bad_split = train\nbad_row = 0\nbad_value = 2",
                          "[head.pop]\ntype = popularity\ninput = x\nlabel = y\nitems = 2\n",
                          "batch = 8"),
                   "whole numbers in [0, 2)", "the first is 2, row 0 of the train split", NULL);
    /* and the same data with good labels builds */
    const char *good = tu_write(".ini", ld_exp("", "[head.y]\ntype = binary\ninput = out\n"
                                               "label = y\nloss = bce\n", "batch = 8"));
    ts_err e;
    if (tu_build_exp(good, 0, NULL, &e)) { print_error("%s\n", e.msg); fail(); }
    unlink(good);
}

static void test_early_stop_on_an_undefined_figure(void **st)
{
    (void)st;
    /* every validation label is 0: the validation AUC is NaN at every evaluation. At 0b960b7
     * the run kept and reported its initial weights (best_epoch 0) and stopped after patience */
    const char *ini = tu_write(".ini", ld_exp("rows = 400, 40, 200\nvalid_labels = zeros",
                                              "[head.y]\ntype = binary\ninput = out\n"
                                              "label = y\nloss = bce\n",
                                              "epochs = 4\nbatch = 20\nearly_stop = y.auc\n"
                                              "patience = 1"));
    ts_run_opts o = {0};
    o.results_dir = "/tmp/tessera-test-validity-es";
    o.overwrite = 1;          /* replaces what an earlier test run left */
    o.log = tmpfile();
    assert_non_null(o.log);
    ts_err e;
    if (ts_run(ini, &o, &e)) { print_error("%s\n", e.msg); fail(); }
    char log[16384];
    rewind(o.log);
    size_t n = fread(log, 1, sizeof log - 1, o.log);
    log[n] = 0;
    fclose(o.log);
    tu_contains(log, "warning: [train] early_stop = y.auc is nan on the validation split at "
                "the first evaluation (an AUC is undefined when the split holds one class only); "
                "early stopping is off", "train.run.early_stop_undefined = 1", NULL);
    double v = 0, best = 0, auc = 0;
    if (ts_metrics_get(o.results_dir, "train.run.early_stop_undefined", &v, &e) ||
        ts_metrics_get(o.results_dir, "train.run.best_epoch", &best, &e) ||
        ts_metrics_get(o.results_dir, "test.y.auc", &auc, &e)) {
        print_error("%s\n", e.msg);
        fail();
    }
    assert_true(v == 1);
    assert_true(best == 4);          /* the last epoch, not the initial weights */
    print_message("test AUC with the last epoch's weights: %.4f\n", auc);
    assert_true(auc > 0.8);          /* the kept weights are trained ones */
    /* a defined figure keeps the usual early stopping and no such figure is written */
    char *over[] = {"train.early_stop=y.logloss"};
    o.log = NULL;
    o.noverride = 1;
    o.overrides = over;
    if (ts_run(ini, &o, &e)) { print_error("%s\n", e.msg); fail(); }
    assert_int_equal(ts_metrics_get(o.results_dir, "train.run.early_stop_undefined", &v, &e), -1);
    unlink(ini);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_label_leaks_are_refused),
        cmocka_unit_test(test_layer_named_like_a_field),
        cmocka_unit_test(test_dead_layers_warn),
        cmocka_unit_test(test_labels_a_head_cannot_take),
        cmocka_unit_test(test_early_stop_on_an_undefined_figure),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
