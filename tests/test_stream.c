/* test_stream.c — the streamed-data machinery of core/stream.c (ts_stream_*, docs/scale.md) on
 * three shards of numbered lines (plain, gzip, plain with blank lines): every row in exactly one
 * split; an epoch hands out every training row exactly once, in a seeded order that differs from
 * the files' order and from the next epoch's; two streams of one seed agree; a stream begun at a
 * position taken mid-epoch continues exactly as the original; valid and test rows come in file
 * order; a folder, a glob and a missing path. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <cmocka.h>
#include "host.h"
#include "testutil.h"

#define N 3000                 /* rows in all */

typedef struct { int32_t id; int32_t pad; } rec;

static int scan_fn(void *u, ts_phase sp, char *line, size_t len, const char *path, long lineno,
                   ts_err *e)
{
    int *split_of = u;
    (void)len; (void)path; (void)lineno; (void)e;
    int id = atoi(line + 4);
    assert_true(id >= 0 && id < N);
    assert_int_equal(split_of[id], -1);   /* each line is seen once by the scan */
    split_of[id] = (int)sp;
    return 1;
}

static int row_fn(void *u, char *line, size_t len, const char *path, long lineno, void *row,
                  ts_err *e)
{
    (void)u; (void)len; (void)path; (void)lineno; (void)e;
    ((rec *)row)->id = atoi(line + 4);
    ((rec *)row)->pad = 7;
    return 1;
}

static int setup(void **state)
{
    (void)state;
    if (tu_dir_make("stream")) return -1;
    char cmd[1024];
    /* rows 0..1199 plain, 1200..2099 gzip, 2100..2999 plain with blank lines between */
    snprintf(cmd, sizeof cmd, "mkdir %s/sh && cd %s/sh && "
             "awk 'BEGIN { for (i = 0; i < 1200; i++) printf \"row %%d, x\\n\", i }' > a.txt && "
             "awk 'BEGIN { for (i = 1200; i < 2100; i++) printf \"row %%d, y\\n\", i }' | gzip > b.gz && "
             "awk 'BEGIN { for (i = 2100; i < %d; i++) printf \"row %%d, z\\n\\n\", i }' > c.txt",
             tu_dir, tu_dir, N);
    return system(cmd) == 0 ? 0 : -1;
}

static int teardown(void **state)
{
    (void)state;
    return tu_dir_remove();
}

static const double frac[3] = {0.6, 0.2, 0.2};

static ts_stream *open_scanned(const char *path, long buffer, int *split_of)
{
    ts_err e;
    for (int i = 0; i < N; i++) split_of[i] = -1;
    ts_stream *s = ts_stream_open(NULL, path, "test", sizeof(rec), buffer, frac, 11, scan_fn,
                                  row_fn, split_of, &e);
    if (!s) fail_msg("%s", e.msg);
    if (ts_stream_scan(s, &e)) fail_msg("%s", e.msg);
    return s;
}

/* The rows of one epoch (all of them: n = its training rows). */
static void read_epoch(ts_stream *s, long epoch, int32_t *ids, long n)
{
    ts_err e;
    rec buf[97];
    long at = 0;
    if (ts_stream_begin(s, TS_TRAIN, epoch, NULL, &e)) fail_msg("%s", e.msg);
    for (;;) {
        int got;
        if (ts_stream_next(s, TS_TRAIN, buf, 97, &got, &e)) fail_msg("%s", e.msg);
        if (!got) break;
        for (int i = 0; i < got; i++) {
            assert_true(at < n);
            assert_int_equal(buf[i].pad, 7);
            ids[at++] = buf[i].id;
        }
    }
    assert_int_equal(at, n);
}

static void test_splits_and_epochs(void **state)
{
    (void)state;
    static int split_of[N];
    ts_stream *s = open_scanned(tu_in("sh"), 250, split_of);
    assert_int_equal(ts_stream_nfiles(s), 3);
    long cnt[3] = {0, 0, 0};
    for (int i = 0; i < N; i++) {
        assert_true(split_of[i] >= 0 && split_of[i] <= 2);   /* every row (blank lines are none) */
        cnt[split_of[i]]++;
    }
    for (int k = 0; k < 3; k++) assert_int_equal(ts_stream_rows(s, (ts_phase)k), cnt[k]);
    assert_true(cnt[0] > 0.55 * N && cnt[0] < 0.65 * N);   /* the fractions, on average */
    assert_true(cnt[1] > 0.15 * N && cnt[2] > 0.15 * N);
    long n = cnt[0];
    int32_t *e1 = malloc((size_t)n * 4), *e2 = malloc((size_t)n * 4), *again = malloc((size_t)n * 4);
    read_epoch(s, 1, e1, n);
    read_epoch(s, 2, e2, n);
    char *hit = calloc(N, 1);
    long in_order = 0, same_place = 0;
    for (long i = 0; i < n; i++) {
        assert_int_equal(split_of[e1[i]], TS_TRAIN);
        assert_int_equal(hit[e1[i]]++, 0);                 /* once an epoch */
        in_order += i > 0 && e1[i] > e1[i - 1];
        same_place += e1[i] == e2[i];
    }
    assert_true(in_order < 0.75 * n);                      /* shuffled, not file order */
    assert_true(same_place < n / 10);                      /* another order each epoch */
    /* the same seed, another stream: the same order */
    static int split2[N];
    ts_stream *t = open_scanned(tu_in("sh"), 250, split2);
    read_epoch(t, 1, again, n);
    assert_memory_equal(e1, again, (size_t)n * 4);
    ts_stream_close(t);
    free(hit); free(e2); free(again);

    /* a position taken mid-epoch, in the middle of a block: a new stream continues the same */
    ts_err e;
    for (long cut = 1; cut < n; cut += 331) {
        ts_stream *a = open_scanned(tu_in("sh"), 250, split2);
        rec buf[400];
        int got;
        assert_int_equal(ts_stream_begin(a, TS_TRAIN, 1, NULL, &e), 0);
        long left = cut;
        while (left > 0) {
            int k = left > 400 ? 400 : (int)left;
            assert_int_equal(ts_stream_next(a, TS_TRAIN, buf, k, &got, &e), 0);
            assert_int_equal(got, k);
            left -= k;
        }
        int64_t pos[TS_STREAM_POS];
        ts_stream_pos(a, pos);
        ts_stream_close(a);
        ts_stream *b = open_scanned(tu_in("sh"), 250, split2);
        if (ts_stream_begin(b, TS_TRAIN, 1, pos, &e)) fail_msg("cut %ld: %s", cut, e.msg);
        long at = cut;
        for (;;) {
            assert_int_equal(ts_stream_next(b, TS_TRAIN, buf, 400, &got, &e), 0);
            if (!got) break;
            for (int i = 0; i < got; i++) assert_int_equal(buf[i].id, e1[at++]);
        }
        assert_int_equal(at, n);
        ts_stream_close(b);
    }
    /* the position names its epoch: another epoch's start is refused */
    ts_stream *c = open_scanned(tu_in("sh"), 250, split2);
    int64_t pos[TS_STREAM_POS] = {1, 0, 0, 0, 0, 0, 0, 0};
    assert_int_equal(ts_stream_begin(c, TS_TRAIN, 2, pos, &e), -1);
    tu_contains(e.msg, "does not fit this run's epoch 2", NULL);
    ts_stream_close(c);

    /* valid and test: file order, exactly the rows of the split */
    for (int sp = TS_VALID; sp <= TS_TEST; sp++) {
        rec buf[64];
        int got, prev = -1;
        long seen = 0;
        assert_int_equal(ts_stream_begin(s, (ts_phase)sp, 0, NULL, &e), 0);
        for (;;) {
            assert_int_equal(ts_stream_next(s, (ts_phase)sp, buf, 64, &got, &e), 0);
            if (!got) break;
            for (int i = 0; i < got; i++) {
                assert_int_equal(split_of[buf[i].id], sp);
                assert_true(buf[i].id > prev);
                prev = buf[i].id;
                seen++;
            }
        }
        assert_int_equal(seen, cnt[sp]);
    }
    free(e1);
    ts_stream_close(s);
}

static void test_paths(void **state)
{
    (void)state;
    static int split_of[N];
    char glob[600];
    snprintf(glob, sizeof glob, "%s/*.txt", tu_in("sh"));
    ts_stream *s = open_scanned(glob, 100, split_of);
    assert_int_equal(ts_stream_nfiles(s), 2);                /* a.txt and c.txt, sorted */
    assert_non_null(strstr(ts_stream_file(s, 0), "a.txt"));
    assert_non_null(strstr(ts_stream_file(s, 1), "c.txt"));
    ts_stream_close(s);
    ts_err e;
    snprintf(glob, sizeof glob, "%s/*.none", tu_in("sh"));
    assert_null(ts_stream_open(NULL, glob, "exp.ini:3", sizeof(rec), 100, frac, 1, scan_fn, row_fn,
                               split_of, &e));
    tu_contains(e.msg, "exp.ini:3", "matches no file", NULL);
    assert_null(ts_stream_open(NULL, tu_in("nothing"), "exp.ini:3", sizeof(rec), 100, frac, 1,
                               scan_fn, row_fn, split_of, &e));
    tu_contains(e.msg, "No such file or directory", NULL);
    assert_null(ts_stream_open(NULL, tu_in("sh"), "exp.ini:4", sizeof(rec), 0, frac, 1, scan_fn,
                               row_fn, split_of, &e));
    tu_contains(e.msg, "shuffle_buffer = 0", NULL);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_splits_and_epochs),
        cmocka_unit_test(test_paths),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
