/* test_holdout.c — the selection split's draw (core/holdout.c, ts_holdout_draw): the held and
 * the kept rows are disjoint and together are every training row, the count is round(F x n), the
 * same seed draws the same rows and another seed others, whole groups are held out with a group
 * field, and a fraction that holds out nothing or everything is refused with a sentence. That the
 * run trains on none of the held rows is tests/holdout.sh's (a model that memorises its training
 * rows scores them at chance). */
#include "testutil.h"
#include "internal.h"

#include <stdlib.h>
#include <string.h>

#define N 1000

/* Every row once: in sel or in keep, both ascending. */
static void check_partition(const long *sel, long ns, const long *keep, long nk, long n)
{
    unsigned char *hit = calloc((size_t)n, 1);
    assert_non_null(hit);
    assert_int_equal(ns + nk, n);
    for (long i = 0; i < ns; i++) {
        assert_true(sel[i] >= 0 && sel[i] < n);
        assert_int_equal(hit[sel[i]]++, 0);
        if (i) assert_true(sel[i] > sel[i - 1]);
    }
    for (long i = 0; i < nk; i++) {
        assert_true(keep[i] >= 0 && keep[i] < n);
        assert_int_equal(hit[keep[i]]++, 0);   /* a held row is never a training row */
        if (i) assert_true(keep[i] > keep[i - 1]);
    }
    free(hit);
}

static void test_rows(void **state)
{
    (void)state;
    static long sel[N], keep[N], sel2[N], keep2[N];
    long ns, nk, ns2, nk2;
    ts_err e;
    assert_int_equal(ts_holdout_draw(N, NULL, 0, 0.1, 2026, sel, &ns, keep, &nk, &e), 0);
    assert_int_equal(ns, 100);
    check_partition(sel, ns, keep, nk, N);
    /* the same seed: the same rows (every trial and seed of a search holds out the same rows) */
    assert_int_equal(ts_holdout_draw(N, NULL, 0, 0.1, 2026, sel2, &ns2, keep2, &nk2, &e), 0);
    assert_int_equal(ns2, ns);
    assert_memory_equal(sel, sel2, (size_t)ns * sizeof *sel);
    /* another seed: other rows */
    assert_int_equal(ts_holdout_draw(N, NULL, 0, 0.1, 7, sel2, &ns2, keep2, &nk2, &e), 0);
    assert_int_equal(ns2, 100);
    assert_true(memcmp(sel, sel2, (size_t)ns * sizeof *sel) != 0);
    /* spread over the split, not a block at one end */
    assert_true(sel[0] < N / 4 && sel[ns - 1] > 3 * N / 4);
    assert_int_equal(ts_holdout_draw(N, NULL, 0, 0.333, 1, sel, &ns, keep, &nk, &e), 0);
    assert_int_equal(ns, 333);
    check_partition(sel, ns, keep, nk, N);
}

static void test_groups(void **state)
{
    (void)state;
    static long group[N], sel[N], keep[N];
    long ns, nk;
    ts_err e;
    for (long i = 0; i < N; i++) group[i] = (i * 7) % 50;   /* 50 groups of 20 rows, interleaved */
    assert_int_equal(ts_holdout_draw(N, group, 50, 0.2, 3, sel, &ns, keep, &nk, &e), 0);
    check_partition(sel, ns, keep, nk, N);
    assert_int_equal(ns, 10 * 20);                          /* 10 whole groups */
    unsigned char held[50] = {0}, kept[50] = {0};
    for (long i = 0; i < ns; i++) held[group[sel[i]]] = 1;
    for (long i = 0; i < nk; i++) kept[group[keep[i]]] = 1;
    int nheld = 0;
    for (int g = 0; g < 50; g++) {
        assert_false(held[g] && kept[g]);                   /* no group on both sides */
        nheld += held[g];
    }
    assert_int_equal(nheld, 10);
}

static void test_refused(void **state)
{
    (void)state;
    static long sel[N], keep[N];
    long ns, nk;
    ts_err e;
    assert_int_equal(ts_holdout_draw(N, NULL, 0, 0, 1, sel, &ns, keep, &nk, &e), -1);
    assert_non_null(strstr(e.msg, "between 0 and 1"));
    assert_int_equal(ts_holdout_draw(N, NULL, 0, 1, 1, sel, &ns, keep, &nk, &e), -1);
    assert_int_equal(ts_holdout_draw(N, NULL, 0, 1.5, 1, sel, &ns, keep, &nk, &e), -1);
    /* 0.0001 of 1000 rows rounds to none */
    assert_int_equal(ts_holdout_draw(N, NULL, 0, 0.0001, 1, sel, &ns, keep, &nk, &e), -1);
    assert_non_null(strstr(e.msg, "at least one"));
    /* 0.9 of 3 groups rounds to all three */
    static long group[N];
    for (long i = 0; i < N; i++) group[i] = i % 3;
    assert_int_equal(ts_holdout_draw(N, group, 3, 0.9, 1, sel, &ns, keep, &nk, &e), -1);
    assert_non_null(strstr(e.msg, "3 groups"));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_rows),
        cmocka_unit_test(test_groups),
        cmocka_unit_test(test_refused),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
