/* test_table_stream.c — the `table` reader with stream = true (plugins/datasets/table_stream.c,
 * docs/scale.md): the streamed rows are the in-memory rows (every row a training row, so the two
 * splits agree: the same ids, labels and weights, dense values to float rounding, the same
 * vocabularies in the fitted state); with three splits every row lands in exactly one; shards
 * with a header each read as one file; bad rows say FILE:LINE; and what cannot stream is refused
 * naming its key. Kill-and-resume of a streamed table run: tests/table_stream_resume.sh. */
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

/* An experiment of [data] type = table plus keys (FILE stands for tmpdir/), opened to train. */
static ts_exp *open_table(const char *keys, ts_err *e)
{
    char text[16384], k2[8192];
    size_t n = 0;
    for (const char *s = keys; *s && n < sizeof k2 - 600; s++) {
        if (!strncmp(s, "FILE", 4)) { n += (size_t)snprintf(k2 + n, sizeof k2 - n, "%s/", tmpdir); s += 3; }
        else k2[n++] = *s;
    }
    k2[n] = 0;
    snprintf(text, sizeof text,
             "[experiment]\nname = table_stream_test\n\n[data]\ntype = table\n%s\n\n"
             "[layer.x]\ntype = dense\ninput = age\nunits = 1\n\n"
             "[head.t]\ntype = binary\ninput = x\nlabel = clicked\nloss = bce\n\n"
             "[optimizer]\ntype = adam\n\n[train]\nbatch = 64\n", k2);
    write_file("exp.ini", text);
    ts_run_opts o = {.results_dir = in_tmp("run"), .open_mode = TS_OPEN_TRAIN};
    ts_exp *x = ts_exp_load(in_tmp("exp.ini"), &o, e);
    if (!x) return NULL;
    if (ts_exp_open_data(x, e)) {
        ts_exp_free(x);
        return NULL;
    }
    return x;
}

static ts_exp *must_open(const char *keys)
{
    ts_err e;
    ts_exp *x = open_table(keys, &e);
    if (!x) fail_msg("%s", e.msg);
    return x;
}

static void must_fail(const char *keys, const char *a, const char *b)
{
    ts_err e;
    ts_exp *x = open_table(keys, &e);
    if (x) { ts_exp_free(x); fail_msg("opened but should fail: %s", keys); }
    if (!strstr(e.msg, a)) fail_msg("message lacks \"%s\": %s", a, e.msg);
    if (b && !strstr(e.msg, b)) fail_msg("message lacks \"%s\": %s", b, e.msg);
}

static ts_tensor *field(ts_exp *x, const char *name)
{
    ts_data *D = ts_exp_data(x);
    for (int i = 0; i < D->nfield; i++)
        if (!strcmp(D->field_name[i], name)) return &D->field[i];
    fail_msg("no field %s", name);
    return NULL;
}

static int setup(void **state)
{
    (void)state;
    snprintf(tmpdir, sizeof tmpdir, "/tmp/tessera-tstream-XXXXXX");
    return mkdtemp(tmpdir) ? 0 : -1;
}

static int teardown(void **state)
{
    (void)state;
    char cmd[300];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", tmpdir);
    return system(cmd) == 0 ? 0 : -1;
}

/* n rows: id i, age 20 + i % 50 (missing every 13th), a city (Lima once, then a cycle of five,
 * one quoted with a comma), a hashed zip, hours, clicked i % 3 == 0, a weight, score i. */
static void people(const char *name, int from, int to, int header)
{
    static char text[1 << 20];
    size_t k = 0;
    if (header) k = (size_t)snprintf(text, sizeof text, "age,city,zip,hours,clicked,w,score,tags\n");
    const char *city[5] = {"Paris", "Oslo", "\"New York, NY\"", "Rome", "Kyiv"};
    for (int i = from; i < to; i++) {
        char age[16];
        if (i % 13 == 5) snprintf(age, sizeof age, "?");
        else snprintf(age, sizeof age, "%d", 20 + i % 50);
        /* tags: i % 4 values of a cycle of 11 (none on some rows; t10 + i once in a while) */
        char tags[64] = "";
        for (int t = 0, m = 0; t < i % 4; t++)
            m += snprintf(tags + m, sizeof tags - (size_t)m, "%st%d", t ? "|" : "",
                          i % 97 == 3 && t == 0 ? 1000 + i : (i + t) % 11);
        k += (size_t)snprintf(text + k, sizeof text - k, "%s,%s,z%d,%g,%d,%g,%d,%s\n", age,
                              i == 0 ? "Lima" : city[i % 5], i % 17, 1.5 * (i % 40), i % 3 == 0,
                              1 + (i % 4) * 0.25, i, tags);
    }
    text[k] = 0;
    write_file(name, text);
}

static const char *keys(const char *path, const char *fractions, const char *extra)
{
    static char buf[2][2048];
    static int k;
    k = !k;
    snprintf(buf[k], sizeof buf[k],
             "path = %s\ndense = age(missing:mean), hours(log scale:minmax), score(scale:none)\n"
             "categorical = city(min_count:2), zip(hash:8 seed:3)\nlabels = clicked\n"
             "multi = tags(sep:| min_count:2)\n"
             "weight = w\nsplit_fractions = %s\n%s", path, fractions, extra);
    return buf[k];
}

typedef struct { float age, hours, clicked, w; int32_t city, zip, ntag, tag[4]; int seen; } rowv;

static void take(ts_exp *x, rowv *v, int nv, int n)
{
    for (int j = 0; j < n; j++) {
        int i = (int)lround(field(x, "score")->x[j]);
        assert_true(i >= 0 && i < nv);
        assert_int_equal(v[i].seen, 0);      /* every row once */
        v[i] = (rowv){field(x, "age")->x[j], field(x, "hours")->x[j], field(x, "clicked")->x[j],
                      field(x, "w")->x[j], field(x, "city")->ids[j], field(x, "zip")->ids[j], 0, {0}, 1};
        const ts_tensor *t = field(x, "tags");
        v[i].ntag = t->off[j + 1] - t->off[j];
        assert_true(v[i].ntag == i % 4);
        for (int k = 0; k < v[i].ntag; k++) v[i].tag[k] = t->ids[t->off[j] + k];
    }
}

/* Every training row of an epoch of a streamed dataset, in batches of 7. */
static long stream_all(ts_exp *x, rowv *v, int nv)
{
    ts_data *D = ts_exp_data(x);
    const ts_dataset_ops *ops = ts_exp_data_ops(x);
    ts_err e;
    long total = 0;
    if (ops->stream_begin(D, 0, NULL, &e)) fail_msg("%s", e.msg);
    for (;;) {
        int got = 0;
        if (ops->stream_next(D, 7, &got, &e)) fail_msg("%s", e.msg);
        if (!got) break;
        take(x, v, nv, got);
        total += got;
    }
    return total;
}

/* The lines of a fitted state that are not a dense feature's numbers. */
static void same_state(const char *a, const char *b)
{
    const char *p = a, *q = b;
    while (*p && *q) {
        const char *pe = strchr(p, '\n'), *qe = strchr(q, '\n');
        assert_non_null(pe);
        assert_non_null(qe);
        if (!strncmp(p, "dense ", 6)) {
            double x[5], y[5];
            assert_int_equal(sscanf(p, "dense %lf %lf %lf %lf %lf", &x[0], &x[1], &x[2], &x[3], &x[4]), 5);
            assert_int_equal(sscanf(q, "dense %lf %lf %lf %lf %lf", &y[0], &y[1], &y[2], &y[3], &y[4]), 5);
            for (int k = 0; k < 5; k++)
                if (!(x[k] == y[k] || fabs(x[k] - y[k]) <= 1e-9 * fabs(x[k])))
                    fail_msg("dense statistic %d: %.17g in memory, %.17g streamed", k, x[k], y[k]);
        } else if (pe - p != qe - q || strncmp(p, q, (size_t)(pe - p)))
            fail_msg("fitted states differ: \"%.*s\" / \"%.*s\"", (int)(pe - p), p, (int)(qe - q), q);
        p = pe + 1;
        q = qe + 1;
    }
    assert_true(!*p && !*q);
}

static char *state_of(ts_exp *x)
{
    char *text = NULL;
    size_t n = 0;
    ts_err e;
    if (ts_exp_data_ops(x)->fitted(ts_exp_data(x), &text, &n, &e)) fail_msg("%s", e.msg);
    return text;
}

static void test_streamed_rows_are_the_in_memory_rows(void **st)
{
    (void)st;
    enum { N = 600 };
    people("p.csv", 0, N, 1);
    ts_exp *m = must_open(keys("FILEp.csv", "1, 0, 0", ""));
    ts_exp *s = must_open(keys("FILEp.csv", "1, 0, 0", "stream = true\nshuffle_buffer = 50"));
    assert_int_equal(ts_exp_data(m)->stream, 0);
    assert_int_equal(ts_exp_data(s)->stream, 1);
    assert_int_equal(ts_exp_data(s)->nrows[TS_TRAIN], N);
    static rowv a[N], b[N];
    memset(a, 0, sizeof a);
    memset(b, 0, sizeof b);
    ts_data *D = ts_exp_data(m);
    long rows[N];
    for (long i = 0; i < N; i++) rows[i] = i;
    ts_err e;
    if (ts_exp_data_ops(m)->batch(D, TS_TRAIN, rows, N, &e)) fail_msg("%s", e.msg);
    take(m, a, N, N);
    assert_int_equal(stream_all(s, b, N), N);
    assert_int_equal(field(s, "city")->vocab, field(m, "city")->vocab);
    for (int i = 0; i < N; i++) {
        assert_true(a[i].seen && b[i].seen);
        assert_int_equal(a[i].city, b[i].city);
        assert_int_equal(a[i].zip, b[i].zip);
        assert_int_equal(a[i].ntag, b[i].ntag);
        for (int k = 0; k < a[i].ntag; k++) assert_int_equal(a[i].tag[k], b[i].tag[k]);
        assert_true(a[i].clicked == b[i].clicked && a[i].w == b[i].w);
        assert_true(fabsf(a[i].age - b[i].age) < 1e-5f && fabsf(a[i].hours - b[i].hours) < 1e-5f);
    }
    char *sa = state_of(m), *sb = state_of(s);
    same_state(sa, sb);
    free(sa);
    free(sb);
    ts_exp_free(m);
    ts_exp_free(s);
}

static void test_splits_partition_and_shards_with_headers(void **st)
{
    (void)st;
    enum { N = 900 };
    char cmd[700];
    snprintf(cmd, sizeof cmd, "mkdir -p '%s/sh'", tmpdir);
    assert_int_equal(system(cmd), 0);
    people("sh/a.csv", 0, 300, 1);
    people("sh/b.csv", 300, 650, 1);
    people("sh/c.csv", 650, N, 1);
    ts_exp *s = must_open(keys("FILEsh", "0.6, 0.2, 0.2", "stream = true\nshuffle_buffer = 64"));
    ts_data *D = ts_exp_data(s);
    assert_int_equal(D->nrows[0] + D->nrows[1] + D->nrows[2], N);   /* headers are not rows */
    assert_true(D->nrows[0] > 450 && D->nrows[0] < 630);
    static rowv v[N];
    memset(v, 0, sizeof v);
    assert_int_equal(stream_all(s, v, N), D->nrows[TS_TRAIN]);
    ts_err e;
    for (int sp = 1; sp < 3; sp++) {   /* valid and test, in order, in batches of 10 */
        for (long at = 0; at < D->nrows[sp]; at += 10) {
            long rows[10];
            int n = (int)(D->nrows[sp] - at < 10 ? D->nrows[sp] - at : 10);
            for (int i = 0; i < n; i++) rows[i] = at + i;
            if (ts_exp_data_ops(s)->batch(D, (ts_phase)sp, rows, n, &e)) fail_msg("%s", e.msg);
            take(s, v, N, n);
        }
        long bad = 5;   /* out of order: refused */
        if (D->nrows[sp] > 5) assert_int_not_equal(ts_exp_data_ops(s)->batch(D, (ts_phase)sp, &bad, 1, &e), 0);
    }
    for (int i = 0; i < N; i++) assert_true(v[i].seen);
    const void *p;
    long n;
    assert_int_equal(ts_exp_data_ops(s)->aux(D, "report", &p, &n), 0);
    assert_non_null(strstr(p, "stream_files 3"));
    ts_exp_free(s);
}

static void test_bad_streamed_rows(void **st)
{
    (void)st;
    write_file("bad.csv", "age,city,clicked\n1,a,1\n2,b,0\nx3,c,1\n");
    must_fail("path = FILEbad.csv\ndense = age\ncategorical = city\nlabels = clicked\nstream = true",
              "bad.csv:4: column \"age\" is \"x3\", not a number", "skip_bad_rows");
    write_file("bad.csv", "age,city,clicked\n1,a,1\n2,\"b\nc\",0\n");
    must_fail("path = FILEbad.csv\ndense = age\ncategorical = city\nlabels = clicked\nstream = true",
              "bad.csv:3: field 2 opens a quote that the line does not close", "stream = false");
    write_file("bad.csv", "age,city,clicked\n1,a,1\nx,b,0\n3,c,1\n4,d,0\n");
    ts_exp *x = must_open("path = FILEbad.csv\ndense = age\ncategorical = city\nlabels = clicked\n"
                          "stream = true\nskip_bad_rows = true\nsplit_fractions = 1, 0, 0");
    assert_int_equal(ts_exp_data(x)->nrows[TS_TRAIN], 3);
    const void *p;
    long n;
    assert_int_equal(ts_exp_data_ops(x)->aux(ts_exp_data(x), "skipped_rows", &p, &n), 0);
    assert_int_equal(*(const long *)p, 1);
    ts_exp_free(x);
}

static void test_what_cannot_stream_is_refused(void **st)
{
    (void)st;
    people("p.csv", 0, 60, 1);
    write_file("side.csv", "city,country\nParis,FR\n");
    const char *base = "path = FILEp.csv\nlabels = clicked\nstream = true\n";
    struct { const char *extra, *key, *what; } cases[] = {
        {"split = column\nsplit_column = city", "split", "split = column"},
        {"split = user\nuser = city", "split", "split = user"},
        {"user = city\ntime = score\nmin_history = 1", "min_history", "min_history"},
        {"user = city\ntime = score\nrow_order = user_time", "row_order", "row_order = user_time"},
        {"sequence = city", "sequence", "sequence column \"city\""},
        {"dense = age(missing:0), hours(clip:p1:p99)", "dense", "dense column \"hours\" clipped at training percentiles"},
        {"categorical = city(vocab_rows:all)", "categorical", "categorical \"city\"(vocab_rows:all)"},
        {"tables = places(path:FILEside.csv key:city on:city)\ncategorical = country(table:places)",
         "tables", "side tables"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        char k[2048], want[200];
        snprintf(k, sizeof k, "%s%s%s", base, cases[i].extra,
                 strstr(cases[i].extra, "dense") ? "" : "\ndense = age(missing:0)");
        snprintf(want, sizeof want, "stream = true cannot stream %s", cases[i].what);
        ts_err e;
        ts_exp *x = open_table(k, &e);
        if (x) { ts_exp_free(x); fail_msg("case %zu opened but should fail", i); }
        char kw[64];
        snprintf(kw, sizeof kw, "[data] %s: ", cases[i].key);
        if (!strstr(e.msg, want) || !strstr(e.msg, kw))
            fail_msg("case %zu: message lacks \"%s\" or the key %s: %s", i, want, cases[i].key, e.msg);
    }
    must_fail("path = FILEp.csv\ndense = age(missing:0)\nlabels = clicked\nstream = true\n"
              "shuffle_buffer = 0", "shuffle_buffer = 0: give a number of rows from 1", NULL);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_streamed_rows_are_the_in_memory_rows),
        cmocka_unit_test(test_splits_partition_and_shards_with_headers),
        cmocka_unit_test(test_bad_streamed_rows),
        cmocka_unit_test(test_what_cannot_stream_is_refused),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
