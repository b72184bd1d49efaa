/* test_stats.c — the comparison's statistics against hand-computed and textbook values:
 * mean and sample standard deviation, Student's t p-values at tabulated critical points, and
 * the paired t-test on a small hand-worked case. */
#include "testutil.h"

#include <math.h>

static void test_mean_std(void **st)
{
    (void)st;
    double v[8] = {2, 4, 4, 4, 5, 5, 7, 9}, m, s;
    ts_mean_std(v, 8, &m, &s);
    assert_float_equal(m, 5.0, 1e-12);
    assert_float_equal(s, sqrt(32.0 / 7.0), 1e-12);   /* sample (n - 1) deviation */
    ts_mean_std(v, 1, &m, &s);
    assert_float_equal(m, 2.0, 1e-12);
    assert_true(isnan(s));
}

static void test_t_pvalue_at_table_points(void **st)
{
    (void)st;
    /* two-sided critical values of Student's t (any statistics textbook's table) */
    assert_float_equal(ts_t_pvalue(3.182446, 3), 0.05, 1e-5);
    assert_float_equal(ts_t_pvalue(5.840909, 3), 0.01, 1e-5);
    assert_float_equal(ts_t_pvalue(2.228139, 10), 0.05, 1e-5);
    assert_float_equal(ts_t_pvalue(12.706205, 1), 0.05, 1e-5);
    assert_float_equal(ts_t_pvalue(-2.228139, 10), 0.05, 1e-5);   /* symmetric */
    assert_float_equal(ts_t_pvalue(0, 4), 1.0, 1e-12);
}

static void test_paired_t_by_hand(void **st)
{
    (void)st;
    /* d = a - b = {1, 2, 3, 3}: mean 2.25, sd sqrt(2.75 / 3), t = 2.25 / (sd / 2) = 4.70016 */
    double a[4] = {1, 2, 3, 4}, b[4] = {0, 0, 0, 1}, t, p;
    assert_int_equal(ts_paired_t(a, b, 4, &t, &p), 0);
    assert_float_equal(t, 2.25 / (sqrt(2.75 / 3) / 2), 1e-9);
    assert_true(p > 0.01 && p < 0.05);   /* between the df = 3 table points 5.84 and 3.18 */
    assert_float_equal(p, ts_t_pvalue(t, 3), 1e-15);
    /* pairing matters: the same values unpaired would not be this significant */
    double c[4] = {5, 6, 7, 8}, d[4] = {4, 5, 6, 7};
    assert_int_equal(ts_paired_t(c, d, 4, &t, &p), 0);   /* constant difference */
    assert_true(isinf(t) && p == 0);
    assert_int_equal(ts_paired_t(a, b, 1, &t, &p), -1);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_mean_std),
        cmocka_unit_test(test_t_pvalue_at_table_points),
        cmocka_unit_test(test_paired_t_by_hand),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
