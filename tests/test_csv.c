/* test_csv.c — the generic csv dataset plugin on small files made here: named dense,
 * categorical and label columns, standardisation and indexing from the training split, a file
 * without a header, quoted fields, and the messages for a bad row and an unknown column. */
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

#include "host.h"


static void write_file(const char *path, const char *text)
{
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    fputs(text, f);
    fclose(f);
}

/* An experiment over csv file `name` (in tu_dir) with the given [data] lines; opens its data. */
static ts_exp *open_csv(const char *name, const char *data_keys, const char *label, ts_err *e)
{
    char ini[600], text[4096];
    snprintf(ini, sizeof ini, "%s/exp.ini", tu_dir);
    snprintf(text, sizeof text,
             "[experiment]\nname = csv_test\n\n[data]\ntype = csv\npath = %s/%s\n%s\n\n"
             "[layer.x]\ntype = dense\ninput = dense\nunits = 1\n\n"
             "[head.t]\ntype = binary\ninput = x\nlabel = %s\nloss = bce\n\n"
             "[optimizer]\ntype = adam\n\n[train]\nbatch = 64\n", tu_dir, name, data_keys, label);
    write_file(ini, text);
    ts_run_opts o = {.results_dir = tu_dir};
    ts_exp *x = ts_exp_load(ini, &o, e);
    if (!x) return NULL;
    if (ts_exp_open_data(x, e)) { ts_exp_free(x); return NULL; }
    return x;
}

static ts_tensor *field(ts_data *D, const char *name)
{
    for (int i = 0; i < D->nfield; i++)
        if (!strcmp(D->field_name[i], name)) return &D->field[i];
    return NULL;
}

static int setup(void **state)
{
    (void)state;
    return tu_dir_make("csv");
}

static int teardown(void **state)
{
    (void)state;
    return tu_dir_remove();
}

/* 20 rows: age = 20 + i, city cycles over 3 names, clicked = i odd, score = i / 10; an unused
 * column `note`. */
static void small_csv(const char *path, int header, const char *sep)
{
    char text[8192];
    size_t n = 0;
    if (header) n += (size_t)snprintf(text + n, sizeof text - n, "age%scity%snote%sclicked%sscore\n",
                                      sep, sep, sep, sep);
    const char *city[3] = {"Paris", "\"Oslo\"", " Rome "};
    for (int i = 0; i < 20; i++)
        n += (size_t)snprintf(text + n, sizeof text - n, "%d%s%s%sx%s%d%s%g\n", 20 + i, sep,
                              city[i % 3], sep, sep, i % 2, sep, i / 10.0);
    write_file(path, text);
}

static void test_fields_standardisation_and_ids(void **state)
{
    (void)state;
    char path[600];
    snprintf(path, sizeof path, "%s/small.csv", tu_dir);
    small_csv(path, 1, ",");
    ts_err e;
    ts_exp *x = open_csv("small.csv", "dense = age, score\ncategorical = city\nlabels = clicked\n"
                         "split = 0.5, 0.25, 0.25", "clicked", &e);
    if (!x) fail_msg("%s", e.msg);
    ts_data *D = ts_exp_data(x);
    const ts_dataset_ops *ops = ts_exp_data_ops(x);
    assert_int_equal(D->nfield, 3);
    ts_tensor *d = field(D, "dense"), *c = field(D, "categorical"), *y = field(D, "clicked");
    assert_non_null(d); assert_non_null(c); assert_non_null(y);
    assert_int_equal(d->dim[1], 2);
    assert_int_equal(c->dim[1], 1);
    assert_int_equal(y->dim[1], 1);
    assert_int_equal(D->nrows[0], 10);
    assert_int_equal(D->nrows[1], 5);
    assert_int_equal(D->nrows[2], 5);
    /* three cities all appear in 10 training rows of a 3-cycle? Not guaranteed: vocab is the
     * seen cities plus one unseen bucket */
    assert_true(c->vocab >= 2 && c->vocab <= 4);
    const void *p;
    long n;
    assert_int_equal(ops->aux(D, "dense_mean", &p, &n), 0);
    assert_int_equal(n, 2);
    double mean_age = ((const double *)p)[0];
    long rows[20];
    for (int i = 0; i < 10; i++) rows[i] = i;
    assert_int_equal(ops->batch(D, TS_TRAIN, rows, 10, &e), 0);
    double s = 0, s2 = 0, raw = 0, clicks = 0;
    ops->aux(D, "dense_std", &p, &n);
    double sd_age = ((const double *)p)[0];
    for (int i = 0; i < 10; i++) {
        s += d->x[2 * i];
        s2 += d->x[2 * i] * d->x[2 * i];
        raw += d->x[2 * i] * sd_age + mean_age;
        assert_true(c->ids[i] >= 1 && c->ids[i] < c->vocab);   /* 0 is the unseen bucket */
        clicks += y->x[i];
    }
    assert_true(fabs(s / 10) < 1e-5);
    assert_true(fabs(s2 / 10 - 1) < 1e-4);
    assert_true(fabs(raw / 10 - mean_age) < 1e-3);
    assert_true(mean_age >= 20 && mean_age <= 39);
    /* labels are the numbers as written: clicked summed over all splits = 10 */
    for (int sp = 1; sp < 3; sp++) {
        for (int i = 0; i < 5; i++) rows[i] = i;
        assert_int_equal(ops->batch(D, (ts_phase)sp, rows, 5, &e), 0);
        for (int i = 0; i < 5; i++) clicks += y->x[i];
    }
    assert_true(fabs(clicks - 10) < 1e-6);
    ts_exp_free(x);
}

static void test_no_header_and_separator(void **state)
{
    (void)state;
    char path[600];
    snprintf(path, sizeof path, "%s/plain.tsv", tu_dir);
    small_csv(path, 0, "\t");
    ts_err e;
    ts_exp *x = open_csv("plain.tsv", "header = false\nseparator = tab\ndense = 0, 4\ncategorical = 1\n"
                         "labels = 3", "3", &e);
    if (!x) fail_msg("%s", e.msg);
    ts_data *D = ts_exp_data(x);
    assert_int_equal(D->nrows[0] + D->nrows[1] + D->nrows[2], 20);
    assert_non_null(field(D, "3"));
    assert_int_equal(field(D, "dense")->dim[1], 2);
    ts_exp_free(x);
}

static void expect(const char *file, const char *text, const char *keys, const char *const *parts)
{
    char path[600];
    snprintf(path, sizeof path, "%s/%s", tu_dir, file);
    write_file(path, text);
    ts_err e;
    ts_exp *x = open_csv(file, keys, "clicked", &e);
    if (x) { ts_exp_free(x); fail_msg("%s opened but should fail", file); }
    for (; *parts; parts++)
        if (!strstr(e.msg, *parts)) fail_msg("message lacks \"%s\": %s", *parts, e.msg);
}

static void test_messages(void **state)
{
    (void)state;
    const char *good = "age,city,clicked\n30,Paris,1\n31,Oslo,0\n";
    /* a bad row: line 4 has two fields */
    char text[512];
    snprintf(text, sizeof text, "%s32,Rome\n33,Oslo,1\n", good);
    const char *p1[] = {"bad.csv:4:", "expected 3 fields, found 2", "skip_bad_rows", NULL};
    expect("bad.csv", text, "dense = age\ncategorical = city\nlabels = clicked", p1);
    /* a dense value that is not a number, line 3 */
    const char *p2[] = {"num.csv:3:", "\"age\"", "\"x31\"", "not a number", NULL};
    expect("num.csv", "age,city,clicked\n30,Paris,1\nx31,Oslo,0\n",
           "dense = age\ncategorical = city\nlabels = clicked", p2);
    /* an unknown column: the key's file:line, the name and the nearest column */
    const char *p3[] = {"exp.ini:7", "\"agee\"", "nearest is \"age\"", NULL};
    expect("unk.csv", good, "dense = agee\ncategorical = city\nlabels = clicked", p3);
    /* a column named twice */
    const char *p4[] = {"\"city\"", "named twice", NULL};
    expect("two.csv", good, "dense = age\ncategorical = city\nlabels = city, clicked", p4);
    /* a header only */
    const char *p5[] = {"head.csv", "no data rows", NULL};
    expect("head.csv", "age,city,clicked\n", "dense = age\ncategorical = city\nlabels = clicked", p5);
    /* skip_bad_rows keeps the good rows and counts the others */
    char path[600];
    snprintf(path, sizeof path, "%s/skip.csv", tu_dir);
    write_file(path, "age,city,clicked\n30,Paris,1\n31\n32,Rome,1\nabc,Oslo,0\n33,Oslo,1\n");
    ts_err e;
    ts_exp *x = open_csv("skip.csv", "dense = age\ncategorical = city\nlabels = clicked\n"
                         "skip_bad_rows = true", "clicked", &e);
    if (!x) fail_msg("%s", e.msg);
    ts_data *D = ts_exp_data(x);
    assert_int_equal(D->nrows[0] + D->nrows[1] + D->nrows[2], 3);
    const void *p;
    long n;
    assert_int_equal(ts_exp_data_ops(x)->aux(D, "skipped_rows", &p, &n), 0);
    assert_int_equal(*(const long *)p, 2);
    ts_exp_free(x);
}

/* Found by tests/fuzz: a value past float's range became +inf (NaN losses later); a NUL byte
 * (a UTF-16 file) glued a line to the next. Both are refused with the file and line. */
static void test_values_beyond_float_and_nul_bytes(void **state)
{
    (void)state;
    const char *keys = "dense = age\ncategorical = city\nlabels = clicked";
    const char *p1[] = {"big.csv:3:", "\"age\"", "\"1e39\"", "beyond the float range", NULL};
    expect("big.csv", "age,city,clicked\n30,Paris,1\n1e39,Oslo,0\n", keys, p1);
    const char *p2[] = {"lab.csv:2:", "\"clicked\"", "beyond the float range", NULL};
    expect("lab.csv", "age,city,clicked\n30,Paris,-4e38\n31,Oslo,0\n", keys, p2);
    char path[600];
    snprintf(path, sizeof path, "%s/nul.csv", tu_dir);
    static const char nul[] = "age,city,clicked\n30,Paris,1\n3\0001,Oslo,0\n";
    FILE *f = fopen(path, "wb");
    assert_non_null(f);
    assert_int_equal(fwrite(nul, 1, sizeof nul - 1, f), sizeof nul - 1);
    fclose(f);
    ts_err e;
    ts_exp *x = open_csv("nul.csv", keys, "clicked", &e);
    if (x) { ts_exp_free(x); fail_msg("nul.csv opened but should fail"); }
    if (!strstr(e.msg, "nul.csv:3:") || !strstr(e.msg, "NUL byte")) fail_msg("%s", e.msg);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_fields_standardisation_and_ids),
        cmocka_unit_test(test_no_header_and_separator),
        cmocka_unit_test(test_messages),
        cmocka_unit_test(test_values_beyond_float_and_nul_bytes),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
