/* test_table.c — the `table` dataset plugin on small files written here: each column kind,
 * each split, side tables, negative sampling, the fitted state's round trip (train, then apply
 * the state to the same rows and new ones), quoting, encodings, and every class of bad row
 * with its FILE:LINE sentence; and one census run through the table reader that must match the
 * census reader's figures and clear a quality floor. */
#include "testutil.h"

#include <math.h>

static char tmpdir[256];

static const char *in_tmp(const char *name)
{
    static char buf[4][600];
    static int k;
    k = (k + 1) % 4;
    snprintf(buf[k], sizeof buf[k], "%s/%s", tmpdir, name);
    return buf[k];
}

static void write_file(const char *name, const char *text)
{
    FILE *f = fopen(in_tmp(name), "wb");
    assert_non_null(f);
    fputs(text, f);
    fclose(f);
}

/* An experiment whose [data] is `type = table` plus keys (FILE stands for tmpdir/), opened in
 * a mode; state: a fitted state file to read with (NULL: fit). */
static ts_exp *open_table(const char *keys, const char *label, ts_open_mode mode, const char *state,
                          ts_err *e)
{
    char text[16384], k2[8192];
    size_t n = 0;
    for (const char *s = keys; *s && n < sizeof k2 - 600; s++) {
        if (!strncmp(s, "FILE", 4)) { n += (size_t)snprintf(k2 + n, sizeof k2 - n, "%s/", tmpdir); s += 3; }
        else k2[n++] = *s;
    }
    k2[n] = 0;
    snprintf(text, sizeof text,
             "[experiment]\nname = table_test\n\n[data]\ntype = table\n%s\n\n"
             "[layer.x]\ntype = dense\ninput = age\nunits = 1\n\n"
             "[head.t]\ntype = binary\ninput = x\nlabel = %s\nloss = bce\n\n"
             "[optimizer]\ntype = adam\n\n[train]\nbatch = 64\n", k2, label);
    write_file("exp.ini", text);
    ts_run_opts o = {.results_dir = in_tmp("run"), .open_mode = mode, .fitted_from = state};
    ts_exp *x = ts_exp_load(in_tmp("exp.ini"), &o, e);
    if (!x) return NULL;
    if (ts_exp_open_data(x, e)) {
        /* The host's open refuses an empty training split; applying a run has one by design
         * (the lead's predict/evaluate commands accept it). The dataset itself has opened. */
        if (mode == TS_OPEN_TRAIN || !strstr(e->msg, "training split is empty")) {
            ts_exp_free(x);
            return NULL;
        }
    }
    return x;
}

static ts_exp *must_open(const char *keys, const char *label, ts_open_mode mode, const char *state)
{
    ts_err e;
    ts_exp *x = open_table(keys, label, mode, state, &e);
    if (!x) fail_msg("%s", e.msg);
    return x;
}

/* Opening must fail with a message holding every NULL-terminated part. */
static void must_fail(const char *keys, const char *label, ...)
{
    ts_err e;
    ts_exp *x = open_table(keys, label, TS_OPEN_TRAIN, NULL, &e);
    if (x) { ts_exp_free(x); fail_msg("opened but should fail: %s", keys); }
    va_list ap;
    va_start(ap, label);
    for (const char *s; (s = va_arg(ap, const char *));)
        if (!strstr(e.msg, s)) { va_end(ap); fail_msg("message lacks \"%s\": %s", s, e.msg); }
    va_end(ap);
}

static ts_tensor *field(ts_exp *x, const char *name)
{
    ts_data *D = ts_exp_data(x);
    for (int i = 0; i < D->nfield; i++)
        if (!strcmp(D->field_name[i], name)) return &D->field[i];
    fail_msg("no field %s", name);
    return NULL;
}

static int has_field(ts_exp *x, const char *name)
{
    ts_data *D = ts_exp_data(x);
    for (int i = 0; i < D->nfield; i++)
        if (!strcmp(D->field_name[i], name)) return 1;
    return 0;
}

/* Every row of split s in one batch; returns the row count. */
static long fetch(ts_exp *x, ts_phase s)
{
    ts_data *D = ts_exp_data(x);
    long n = D->nrows[s], rows[4096];
    assert_true(n <= 4096);
    for (long i = 0; i < n; i++) rows[i] = i;
    ts_err e;
    if (n && ts_exp_data_ops(x)->batch(D, s, rows, (int)n, &e)) fail_msg("%s", e.msg);
    return n;
}

static long aux_long(ts_exp *x, const char *name)
{
    const void *p;
    long n;
    assert_int_equal(ts_exp_data_ops(x)->aux(ts_exp_data(x), name, &p, &n), 0);
    assert_int_equal(n, 1);
    return *(const long *)p;
}

/* The fitted state of an open dataset, written to tmpdir/NAME; returns the text (malloc'ed). */
static char *save_state(ts_exp *x, const char *name)
{
    char *text = NULL;
    size_t n = 0;
    ts_err e;
    if (ts_exp_data_ops(x)->fitted(ts_exp_data(x), &text, &n, &e)) fail_msg("%s", e.msg);
    assert_int_equal(strlen(text), n);
    write_file(name, text);
    return text;
}

static int setup(void **state)
{
    (void)state;
    snprintf(tmpdir, sizeof tmpdir, "/tmp/tessera-table-XXXXXX");
    return mkdtemp(tmpdir) ? 0 : -1;
}

static int teardown(void **state)
{
    (void)state;
    char cmd[300];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", tmpdir);
    return system(cmd) == 0 ? 0 : -1;
}

/* n people: id r<i>, age 20 + i, city (Lima once, then a cycle of four, one with a space),
 * "hours per week" 1.5 i, clicked i % 2, score i / 10 (so a row's i is 10 * score). */
static void people(const char *name, int n, int labels, const char *extra_city)
{
    static char text[1 << 16];
    size_t k = (size_t)snprintf(text, sizeof text, "id,age,city,hours per week%s\n",
                                labels ? ",clicked,score" : "");
    const char *city[4] = {"Paris", "Oslo", "\"New York\"", "Rome"};
    for (int i = 0; i < n; i++) {
        const char *c = i == 0 ? "Lima" : i >= 40 && extra_city ? extra_city : city[i % 4];
        k += (size_t)snprintf(text + k, sizeof text - k, "r%d,%d,%s,%g", i, 20 + i, c, 1.5 * i);
        if (labels) k += (size_t)snprintf(text + k, sizeof text - k, ",%d,%g", i % 2, i / 10.0);
        text[k++] = '\n';
    }
    text[k] = 0;
    write_file(name, text);
}

/* The [data] keys of a people file; clicked: options of the clicked label; extra: more keys. */
static const char *people_keys(const char *file, int min_count, const char *clicked, const char *extra)
{
    static char buf[2][2048];
    static int k;
    k = !k;
    snprintf(buf[k], sizeof buf[k],
             "path = FILE%s\ndense = age, \"hours per week\"(log as:hours)\n"
             "categorical = city(min_count:%d)\nlabels = clicked%s, score(regression)\nid = id\n"
             "split_fractions = 0.5, 0.25, 0.25\n%s", file, min_count, clicked, extra);
    return buf[k];
}

/* What the train-mode reader made of row i, to compare a second reader against. */
typedef struct { float age, hours, clicked; int32_t city; int seen; } row_values;

static void collect(ts_exp *x, row_values *v, int nv)
{
    for (int s = 0; s < 3; s++) {
        long n = fetch(x, (ts_phase)s);
        for (long j = 0; j < n; j++) {
            int i = (int)lround(field(x, "score")->x[j] * 10);
            assert_true(i >= 0 && i < nv);
            v[i] = (row_values){field(x, "age")->x[j], field(x, "hours")->x[j],
                                field(x, "clicked")->x[j], field(x, "city")->ids[j], 1};
        }
    }
}

static void test_dense_categorical_labels(void **st)
{
    (void)st;
    people("people.csv", 40, 1, NULL);
    ts_exp *x = must_open(people_keys("people.csv", 2, "", ""), "clicked", TS_OPEN_TRAIN, NULL);
    ts_data *D = ts_exp_data(x);
    assert_int_equal(D->nrows[0], 20);
    assert_int_equal(D->nrows[1], 10);
    assert_int_equal(D->nrows[2], 10);
    ts_tensor *age = field(x, "age"), *city = field(x, "city");
    assert_int_equal(age->dtype, TS_F32);
    assert_int_equal(city->dtype, TS_I32);
    assert_int_equal(city->dim[1], 1);
    assert_int_equal(city->vocab, 5);        /* four cities seen twice or more, and id 0 */
    assert_false(has_field(x, "id"));        /* an id is aux row_id, never a feature */
    /* the training rows: standardised with their own mean and deviation */
    long n = fetch(x, TS_TRAIN);
    double s1 = 0, s2 = 0, h1 = 0, raw = 0;
    for (long j = 0; j < n; j++) {
        int i = (int)lround(field(x, "score")->x[j] * 10);
        s1 += age->x[j];
        s2 += (double)age->x[j] * age->x[j];
        h1 += field(x, "hours")->x[j];
        raw += 20 + i;
        assert_true(field(x, "clicked")->x[j] == (float)(i % 2));
        assert_true(city->ids[j] == 0 ? i == 0 : city->ids[j] >= 1 && city->ids[j] < 5);
    }
    assert_true(fabs(s1 / n) < 1e-6 && fabs(s2 / n - 1) < 1e-5 && fabs(h1 / n) < 1e-5);
    /* one id per city, the same in every split */
    row_values v[40];
    memset(v, 0, sizeof v);
    collect(x, v, 40);
    for (int i = 1; i < 40; i++) {
        assert_true(v[i].seen);
        for (int j = 1; j < i; j++) assert_true((v[i].city == v[j].city) == (i % 4 == j % 4));
        /* age is (20 + i - mean) / sd: increasing in i */
        assert_true(v[i].age > v[i - 1].age);
    }
    assert_int_equal(v[0].city, 0);          /* Lima: seen once, under min_count 2 */
    assert_int_equal(aux_long(x, "unseen_values"), 1);
    assert_int_equal(aux_long(x, "skipped_rows"), 0);
    ts_exp_free(x);
}

static void test_random_split_is_a_partition(void **st)
{
    (void)st;
    people("people.csv", 40, 1, NULL);
    ts_exp *x = must_open(people_keys("people.csv", 2, "", ""), "clicked", TS_OPEN_TRAIN, NULL);
    int count[40] = {0};
    for (int s = 0; s < 3; s++) {
        long n = fetch(x, (ts_phase)s);
        for (long j = 0; j < n; j++) count[lround(field(x, "score")->x[j] * 10)]++;
    }
    for (int i = 0; i < 40; i++) assert_int_equal(count[i], 1);
    ts_exp_free(x);
    /* another split_seed, another split; the same seed, the same one */
    const char *keys = people_keys("people.csv", 2, "", "split_seed = 7");
    ts_exp *a = must_open(people_keys("people.csv", 2, "", ""), "clicked", TS_OPEN_TRAIN, NULL);
    fetch(a, TS_TEST);
    float first[10], second[10];
    for (int j = 0; j < 10; j++) first[j] = field(a, "score")->x[j];
    ts_exp_free(a);
    ts_exp *b = must_open(keys, "clicked", TS_OPEN_TRAIN, NULL);
    fetch(b, TS_TEST);
    for (int j = 0; j < 10; j++) second[j] = field(b, "score")->x[j];
    ts_exp_free(b);
    assert_true(memcmp(first, second, sizeof first) != 0);
}

static void test_fitted_state_round_trip(void **st)
{
    (void)st;
    people("people.csv", 40, 1, NULL);
    ts_exp *x = must_open(people_keys("people.csv", 2, "", ""), "clicked", TS_OPEN_TRAIN, NULL);
    row_values v[40];
    collect(x, v, 40);
    char *text = save_state(x, "state.txt");
    ts_exp_free(x);
    assert_true(!strncmp(text, "tessera-table-state 1\n", 22));
    free(text);
    /* the same rows and two new ones (an unseen city) read with the state: nothing refitted */
    people("new.csv", 42, 1, "Quito");
    ts_exp *y = must_open(people_keys("new.csv", 2, "", ""), "clicked", TS_OPEN_EVALUATE, in_tmp("state.txt"));
    ts_data *D = ts_exp_data(y);
    assert_int_equal(D->nrows[TS_TRAIN], 0);
    assert_int_equal(D->nrows[TS_VALID], 0);
    assert_int_equal(D->nrows[TS_TEST], 42);
    assert_int_equal(fetch(y, TS_TEST), 42);
    const void *p;
    long n;
    assert_int_equal(ts_exp_data_ops(y)->aux(D, "row_id", &p, &n), 0);
    assert_int_equal(n, 42);
    for (int i = 0; i < 42; i++) {
        char id[16];
        snprintf(id, sizeof id, "r%d", i);
        assert_string_equal(((const char *const *)p)[i], id);   /* file order */
        if (i >= 40) { assert_int_equal(field(y, "city")->ids[i], 0); continue; }
        /* bit for bit what the training reader made of the row */
        assert_true(field(y, "age")->x[i] == v[i].age);
        assert_true(field(y, "hours")->x[i] == v[i].hours);
        assert_true(field(y, "clicked")->x[i] == v[i].clicked);
        assert_int_equal(field(y, "city")->ids[i], v[i].city);
    }
    assert_int_equal(aux_long(y, "unseen_values"), 3);   /* Lima and the two Quito rows */
    assert_int_equal(field(y, "city")->vocab, 5);
    ts_exp_free(y);
}

static void test_state_must_match_the_declaration(void **st)
{
    (void)st;
    people("people.csv", 40, 1, NULL);
    ts_exp *x = must_open(people_keys("people.csv", 2, "", ""), "clicked", TS_OPEN_TRAIN, NULL);
    free(save_state(x, "state.txt"));
    ts_exp_free(x);
    ts_err e;
    ts_exp *y = open_table(people_keys("people.csv", 3, "", ""), "clicked", TS_OPEN_EVALUATE, in_tmp("state.txt"), &e);
    if (y) { ts_exp_free(y); fail_msg("a changed declaration was read with an old state"); }
    tu_contains(e.msg, "the fitted state, line", "min_count=3", "changed since the run was trained",
                NULL);
    write_file("junk.txt", "hello\n");
    y = open_table(people_keys("people.csv", 2, "", ""), "clicked", TS_OPEN_EVALUATE, in_tmp("junk.txt"), &e);
    if (y) { ts_exp_free(y); fail_msg("a junk state was read"); }
    tu_contains(e.msg, "does not start with \"tessera-table-state 1\"", NULL);
    /* applying a run needs its state */
    y = open_table(people_keys("people.csv", 2, "", ""), "clicked", TS_OPEN_PREDICT, NULL, &e);
    if (y) { ts_exp_free(y); fail_msg("predict without a state"); }
    tu_contains(e.msg, "fitted state", "data_state.txt", NULL);
}

static void test_predict_without_label_columns(void **st)
{
    (void)st;
    people("people.csv", 40, 1, NULL);
    ts_exp *x = must_open(people_keys("people.csv", 2, "(mask:has_click)", ""), "clicked", TS_OPEN_TRAIN, NULL);
    row_values v[40];
    collect(x, v, 40);
    free(save_state(x, "state.txt"));
    ts_exp_free(x);
    people("unlabelled.csv", 40, 0, NULL);
    const char *k2 = people_keys("unlabelled.csv", 2, "(mask:has_click)", "");
    ts_exp *y = must_open(k2, "clicked", TS_OPEN_PREDICT, in_tmp("state.txt"));
    assert_int_equal(fetch(y, TS_TEST), 40);
    for (int i = 0; i < 40; i++) {
        assert_true(field(y, "age")->x[i] == v[i].age);
        assert_true(field(y, "clicked")->x[i] == 0 && field(y, "has_click")->x[i] == 0);
        assert_true(field(y, "score")->x[i] == 0);
    }
    ts_exp_free(y);
    /* evaluating needs the labels */
    ts_err e;
    y = open_table(k2, "clicked", TS_OPEN_EVALUATE, in_tmp("state.txt"), &e);
    if (y) { ts_exp_free(y); fail_msg("evaluate without labels"); }
    tu_contains(e.msg, "\"clicked\"", "unlabelled.csv", NULL);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_dense_categorical_labels),
        cmocka_unit_test(test_random_split_is_a_partition),
        cmocka_unit_test(test_fitted_state_round_trip),
        cmocka_unit_test(test_state_must_match_the_declaration),
        cmocka_unit_test(test_predict_without_label_columns),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
