/* test_census.c — the census dataset plugin on the bundled UCI Census-Income (KDD) file: field
 * shapes, split sizes, standardisation with TRAINING statistics only, the two tasks' positive
 * rates, categorical id ranges, and the messages for bad rows, missing and empty files. */
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

static char tmpdir[256], ini[512], datapath[1024];
static ts_exp *full;   /* the bundled file, opened once for the read-only tests */

static const char *good_row[3] = {
    "38, Private, 6, 36, 1st 2nd 3rd or 4th grade, 0, Not in universe, Married-civilian spouse "
    "present, Manufacturing-durable goods, Machine operators assmblrs & inspctrs, White, Mexican "
    "(Mexicano), Female, Not in universe, Not in universe, Full-time schedules, 0, 0, 0, Joint one "
    "under 65 & one 65+, Not in universe, Not in universe, Spouse of householder, Spouse of "
    "householder, 1032.38, ?, ?, ?, Not in universe under 1 year old, ?, 4, Not in universe, "
    "Mexico, Mexico, Mexico, Foreign born- Not a citizen of U S , 0, Not in universe, 2, 12, 95, - 50000.",
    "44, Self-employed-not incorporated, 37, 12, Associates degree-occup /vocational, 0, Not in "
    "universe, Married-civilian spouse present, Business and repair services, Professional "
    "specialty, White, All other, Female, Not in universe, Not in universe, PT for econ reasons "
    "usually PT, 0, 0, 2500, Joint both under 65, Not in universe, Not in universe, Spouse of "
    "householder, Spouse of householder, 1462.33, ?, ?, ?, Not in universe under 1 year old, ?, 1, "
    "Not in universe, United-States, United-States, United-States, Native- Born in the United "
    "States, 0, Not in universe, 2, 26, 95, 50000+.",
    "2, Not in universe, 0, 0, Children, 0, Not in universe, Never married, Not in universe or "
    "children, Not in universe, White, Mexican-American, Male, Not in universe, Not in universe, "
    "Children or Armed Forces, 0, 0, 0, Nonfiler, Not in universe, Not in universe, Child <18 "
    "never marr not in subfamily, Child under 18 never married, 1601.75, ?, ?, ?, Not in universe "
    "under 1 year old, ?, 0, Both parents present, United-States, United-States, United-States, "
    "Native- Born in the United States, 0, Not in universe, 0, 0, 95, - 50000."};

static void write_file(const char *path, const char *text)
{
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    fputs(text, f);
    fclose(f);
}

/* Opens the census dataset of the test experiment with overrides; NULL + message on failure. */
static ts_exp *open_with(char **ov, int nov, ts_err *e)
{
    ts_run_opts o = {.results_dir = tmpdir, .noverride = nov, .overrides = ov};
    ts_exp *x = ts_exp_load(ini, &o, e);
    if (!x) return NULL;
    if (ts_exp_open_data(x, e)) { ts_exp_free(x); return NULL; }
    return x;
}

static ts_tensor *field(ts_data *D, const char *name)
{
    for (int i = 0; i < D->nfield; i++)
        if (!strcmp(D->field_name[i], name)) return &D->field[i];
    fail_msg("no field %s", name);
    return NULL;
}

static int setup(void **state)
{
    (void)state;
    const char *src = getenv("top_srcdir");
    snprintf(datapath, sizeof datapath, "%s/data/census/census-income.test.gz", src ? src : ".");
    snprintf(tmpdir, sizeof tmpdir, "/tmp/tessera-census-XXXXXX");
    if (!mkdtemp(tmpdir)) return -1;
    snprintf(ini, sizeof ini, "%s/census.ini", tmpdir);
    char text[2048];
    snprintf(text, sizeof text,
             "[experiment]\nname = census_test\nseed = 1\n\n[data]\ntype = census\npath = %s\n\n"
             "[layer.x]\ntype = dense\ninput = continuous\nunits = 1\n\n"
             "[head.income]\ntype = binary\ninput = x\nlabel = income\nloss = bce\n\n"
             "[optimizer]\ntype = adam\n\n[train]\nepochs = 1\nbatch = 1000\n", datapath);
    write_file(ini, text);
    ts_err e;
    full = open_with(NULL, 0, &e);
    if (!full) fprintf(stderr, "cannot open the census data: %s\n", e.msg);
    return full ? 0 : -1;
}

static int teardown(void **state)
{
    (void)state;
    ts_exp_free(full);
    char cmd[300];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", tmpdir);
    return system(cmd) == 0 ? 0 : -1;
}

/* Fetches split s in batches of 1000 and calls fn for every batch. */
static void each_batch(ts_exp *x, ts_phase s, void (*fn)(ts_data *, int, void *), void *arg)
{
    ts_data *D = ts_exp_data(x);
    const ts_dataset_ops *ops = ts_exp_data_ops(x);
    long rows[1000];
    ts_err e;
    for (long at = 0; at < D->nrows[s]; at += 1000) {
        int n = (int)(D->nrows[s] - at < 1000 ? D->nrows[s] - at : 1000);
        for (int i = 0; i < n; i++) rows[i] = at + i;
        if (ops->batch(D, s, rows, n, &e)) fail_msg("batch: %s", e.msg);
        fn(D, n, arg);
    }
}

static void test_fields_and_splits(void **state)
{
    (void)state;
    ts_data *D = ts_exp_data(full);
    assert_int_equal(D->nfield, 5);
    ts_tensor *c = field(D, "continuous"), *k = field(D, "categorical");
    assert_int_equal(c->dtype, TS_F32);
    assert_int_equal(c->dim[1], 7);
    assert_int_equal(k->dtype, TS_I32);
    assert_int_equal(k->dim[1], 32);         /* 33 nominal attributes less marital status */
    assert_int_equal(field(D, "income")->dim[1], 1);
    assert_int_equal(field(D, "marital")->dim[1], 1);
    assert_int_equal(field(D, "instance_weight")->dim[1], 1);
    /* 99,762 rows split 0.6 / 0.2 / 0.2 */
    assert_int_equal(D->nrows[TS_TRAIN], 59857);
    assert_int_equal(D->nrows[TS_VALID], 19952);
    assert_int_equal(D->nrows[TS_TEST], 19953);
    const void *p;
    long n;
    assert_int_equal(ts_exp_data_ops(full)->aux(D, "categorical_offsets", &p, &n), 0);
    assert_int_equal(n, 33);
    const int32_t *off = p;
    assert_int_equal(off[32], k->vocab);
    /* every attribute has its unseen bucket plus at least one value (sex: 2 values -> 3 ids) */
    for (int f = 0; f < 32; f++) assert_true(off[f + 1] - off[f] >= 2);
    assert_true(k->vocab > 400 && k->vocab < 700);
}

typedef struct { double s1[7], s2[7]; long n; int bad_id; const int32_t *off; } stats;

static void acc_stats(ts_data *D, int n, void *arg)
{
    stats *st = arg;
    ts_tensor *c = field(D, "continuous"), *k = field(D, "categorical");
    assert_int_equal(c->dim[0], n);
    for (int i = 0; i < n; i++) {
        for (int j = 0; j < 7; j++) {
            st->s1[j] += c->x[i * 7 + j];
            st->s2[j] += (double)c->x[i * 7 + j] * c->x[i * 7 + j];
        }
        for (int f = 0; f < 32; f++) {
            int32_t id = k->ids[i * 32 + f];
            if (id < st->off[f] || id >= st->off[f + 1]) st->bad_id++;
        }
    }
    st->n += n;
}

static void test_standardised_with_training_statistics(void **state)
{
    (void)state;
    ts_data *D = ts_exp_data(full);
    const void *p;
    long n;
    ts_exp_data_ops(full)->aux(D, "categorical_offsets", &p, &n);
    stats tr = {.off = p}, va = {.off = p};
    each_batch(full, TS_TRAIN, acc_stats, &tr);
    each_batch(full, TS_VALID, acc_stats, &va);
    assert_int_equal(tr.bad_id + va.bad_id, 0);
    double worst_valid = 0;
    for (int j = 0; j < 7; j++) {
        double m = tr.s1[j] / tr.n, sd = sqrt(tr.s2[j] / tr.n - m * m);
        assert_true(fabs(m) < 1e-4);        /* statistics from the whole file would miss this */
        assert_true(fabs(sd - 1) < 1e-3);
        double mv = va.s1[j] / va.n;
        if (fabs(mv) > worst_valid) worst_valid = fabs(mv);
    }
    assert_true(worst_valid > 1e-3);        /* valid rows are not re-centred on their own */
    ts_exp_data_ops(full)->aux(D, "continuous_mean", &p, &n);
    assert_int_equal(n, 7);
    double age_mean = ((const double *)p)[0];
    assert_true(age_mean > 33 && age_mean < 36);   /* the file's mean age is 34.6 */
}

/* A shuffled batch of test rows against the file itself: each batch row's instance weight,
 * income label and standardised age must be those of the file line aux row_line names for it,
 * so a batch that mixes rows up (features of one row, labels of another) or reads the wrong
 * row fails. The rows are asked in a scattered order, as training asks them. */
static void test_shuffled_batch_matches_file(void **state)
{
    (void)state;
    ts_data *D = ts_exp_data(full);
    const ts_dataset_ops *ops = ts_exp_data_ops(full);
    const void *p;
    long n;
    assert_int_equal(ops->aux(D, "row_line", &p, &n), 0);
    const long *line_of = p;
    assert_int_equal(n, D->nrows[TS_TEST]);
    assert_int_equal(ops->aux(D, "continuous_mean", &p, &n), 0);
    double age_mean = ((const double *)p)[0];
    assert_int_equal(ops->aux(D, "continuous_std", &p, &n), 0);
    double age_sd = ((const double *)p)[0];
    /* the file's weight, income and age by line number */
    enum { MAXL = 100000 };
    float *w = calloc(MAXL + 1, sizeof(float)), *inc = calloc(MAXL + 1, sizeof(float));
    float *age = calloc(MAXL + 1, sizeof(float));
    assert_true(w && inc && age);
    ts_err e;
    ts_lines *r = ts_lines_open(datapath, &e);
    if (!r) fail_msg("%s", e.msg);
    char *line, *f[42];
    size_t len;
    while ((line = ts_lines_next(r, &len))) {
        long ln = ts_lines_lineno(r);
        if (ln > MAXL || ts_split(line, ", ", f, 42) != 42) continue;
        w[ln] = (float)strtod(f[24], NULL);
        inc[ln] = strncmp(f[41], "50000+", 6) == 0 ? 1.0f : 0.0f;
        age[ln] = (float)strtod(f[0], NULL);
    }
    ts_lines_close(r);
    enum { B = 997 };
    long rows[B];
    long nt = D->nrows[TS_TEST];
    for (int i = 0; i < B; i++) rows[i] = (long)(((long long)i * 7919 + 13) % nt);
    if (ops->batch(D, TS_TEST, rows, B, &e)) fail_msg("batch: %s", e.msg);
    ts_tensor *c = field(D, "continuous"), *bw = field(D, "instance_weight");
    ts_tensor *bi = field(D, "income");
    for (int i = 0; i < B; i++) {
        long ln = line_of[rows[i]];
        assert_true(ln > 0 && ln <= MAXL);
        if (bw->x[i] != w[ln] || bi->x[i] != inc[ln])
            fail_msg("batch row %d (test row %ld, line %ld): weight %g income %g, the file says "
                     "%g and %g", i, rows[i], ln, (double)bw->x[i], (double)bi->x[i],
                     (double)w[ln], (double)inc[ln]);
        double z = (age[ln] - age_mean) / age_sd;
        assert_true(fabs(c->x[i * 7] - z) < 1e-5);
    }
    free(w); free(inc); free(age);
}

typedef struct { double inc, mar; long n; } rates;

static void acc_rates(ts_data *D, int n, void *arg)
{
    rates *r = arg;
    ts_tensor *a = field(D, "income"), *b = field(D, "marital");
    for (int i = 0; i < n; i++) {
        assert_true(a->x[i] == 0 || a->x[i] == 1);
        assert_true(b->x[i] == 0 || b->x[i] == 1);
        r->inc += a->x[i];
        r->mar += b->x[i];
    }
    r->n += n;
}

static void test_label_rates(void **state)
{
    (void)state;
    rates all = {0};
    for (int s = 0; s < 3; s++) {
        rates r = {0};
        each_batch(full, (ts_phase)s, acc_rates, &r);
        assert_true(fabs(r.inc / r.n - 0.0620) < 0.004);
        assert_true(fabs(r.mar / r.n - 0.432) < 0.008);
        all.inc += r.inc; all.mar += r.mar; all.n += r.n;
    }
    assert_int_equal(all.n, 99762);
    assert_int_equal((long)all.inc, 6186);     /* "50000+." rows in the file */
    assert_int_equal((long)all.mar, 43143);    /* "Never married" rows */
}

static void expect_failure(char **ov, int nov, const char *const *parts)
{
    ts_err e;
    ts_exp *x = open_with(ov, nov, &e);
    if (x) { ts_exp_free(x); fail_msg("opened a file that should fail"); }
    for (; *parts; parts++)
        if (!strstr(e.msg, *parts)) fail_msg("message lacks \"%s\": %s", *parts, e.msg);
}

static void test_bad_rows(void **state)
{
    (void)state;
    char path[600], text[8192], ov[700], *ovs[2] = {ov, NULL};
    snprintf(path, sizeof path, "%s/bad.txt", tmpdir);
    /* line 3 has 17 fields */
    snprintf(text, sizeof text, "%s\n%s\n1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 17\n%s\n%s\n",
             good_row[0], good_row[1], good_row[2], good_row[0]);
    write_file(path, text);
    snprintf(ov, sizeof ov, "data.path=%s", path);
    char where[700];
    snprintf(where, sizeof where, "bad.txt:3:");
    const char *p1[] = {where, "expected 42 fields", "found 17", "skip_bad_rows", NULL};
    expect_failure(ovs, 1, p1);
    /* line 2: age is not a number */
    char row[2048];
    snprintf(row, sizeof row, "abc%s", strchr(good_row[1], ','));
    snprintf(text, sizeof text, "%s\n%s\n%s\n", good_row[0], row, good_row[2]);
    write_file(path, text);
    snprintf(where, sizeof where, "bad.txt:2:");
    const char *p2[] = {where, "age", "abc", "not a number", NULL};
    expect_failure(ovs, 1, p2);
    /* with skip_bad_rows the row is counted, the others kept */
    snprintf(text, sizeof text, "%s\n%s\n1, 2\n%s\n\n%s\n%s\n", good_row[0], row, good_row[2],
             good_row[1], good_row[0]);
    write_file(path, text);
    char skip[] = "data.skip_bad_rows=true";
    ovs[1] = skip;
    ts_err e;
    ts_exp *x = open_with(ovs, 2, &e);
    if (!x) fail_msg("%s", e.msg);
    ts_data *D = ts_exp_data(x);
    assert_int_equal(D->nrows[0] + D->nrows[1] + D->nrows[2], 4);
    const void *p;
    long n;
    assert_int_equal(ts_exp_data_ops(x)->aux(D, "skipped_rows", &p, &n), 0);
    assert_int_equal(n, 1);
    assert_int_equal(*(const long *)p, 2);
    ts_exp_free(x);
}

static void test_missing_and_empty_files(void **state)
{
    (void)state;
    char path[600], ov[700], *ovs[1] = {ov};
    snprintf(path, sizeof path, "%s/nowhere.txt.gz", tmpdir);
    snprintf(ov, sizeof ov, "data.path=%s", path);
    const char *p1[] = {"nowhere.txt.gz", "data/census/census-income.test.gz", NULL};
    expect_failure(ovs, 1, p1);
    snprintf(path, sizeof path, "%s/empty.txt", tmpdir);
    write_file(path, "");
    snprintf(ov, sizeof ov, "data.path=%s", path);
    const char *p2[] = {"empty.txt", "no usable rows", NULL};
    expect_failure(ovs, 1, p2);
    char bad_split[] = "data.split=0.5, 0.2";
    ovs[0] = bad_split;
    const char *p3[] = {"split", "sum to 1", NULL};
    expect_failure(ovs, 1, p3);
}

/* Found by tests/fuzz: a value past float's range (it became +inf and every loss NaN), a
 * held-out value whose standardised form overflows float, and a NUL byte in a line (a UTF-16
 * file: the line was glued to the next one). Each is refused with the file and line or value. */
static void test_values_beyond_float_and_nul_bytes(void **state)
{
    (void)state;
    char path[600], text[8192], row[2048], ov[700], split[] = "data.split=0.5, 0.25, 0.25",
         seed[] = "data.split_seed=2", *ovs[3] = {ov, split, seed};
    snprintf(path, sizeof path, "%s/float.txt", tmpdir);
    snprintf(ov, sizeof ov, "data.path=%s", path);
    snprintf(row, sizeof row, "1e39%s", strchr(good_row[1], ','));
    snprintf(text, sizeof text, "%s\n%s\n%s\n", good_row[0], row, good_row[2]);
    write_file(path, text);
    const char *p1[] = {"float.txt:2:", "age", "1e39", "beyond the float range", NULL};
    expect_failure(ovs, 1, p1);
    /* ages 0, 1, 0, ... and a last row of 3e38 that split_seed 2 holds out of the 5 training
     * rows: (3e38 - 0.4) / 0.49 is past float's range */
    size_t n = 0;
    for (int i = 0; i < 10; i++)
        n += (size_t)snprintf(text + n, sizeof text - n, "%s%s\n", i < 9 ? (i % 2 ? "1" : "0") :
                              "3e38", strchr(good_row[i % 3], ','));
    write_file(path, text);
    const char *p2[] = {"age = 3e+38", "training standard deviations", "beyond the float range",
                        NULL};
    expect_failure(ovs, 3, p2);
    FILE *f = fopen(path, "wb");
    assert_non_null(f);
    fprintf(f, "%s\n%s\n4", good_row[0], good_row[1]);
    fputc(0, f);
    fprintf(f, "%s\n", strchr(good_row[2], ','));
    fclose(f);
    const char *p3[] = {"float.txt:3:", "NUL byte", "UTF-16", NULL};
    expect_failure(ovs, 1, p3);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_fields_and_splits),
        cmocka_unit_test(test_standardised_with_training_statistics),
        cmocka_unit_test(test_shuffled_batch_matches_file),
        cmocka_unit_test(test_label_rates),
        cmocka_unit_test(test_bad_rows),
        cmocka_unit_test(test_missing_and_empty_files),
        cmocka_unit_test(test_values_beyond_float_and_nul_bytes),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
