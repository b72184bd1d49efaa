/* test_metrics.c — the shared kernels against brute force: exact AUC with ties (pairwise
 * count), top-K (full sort) with ties and excluded items, rank of a target, logloss, the
 * random generator's reproducibility, and the line reader on CRLF, long and gzip input. */
#include "testutil.h"

#include <math.h>
#include <zlib.h>

static double auc_pairs(const float *s, const float *y, long n)
{
    double num = 0, pairs = 0;
    for (long i = 0; i < n; i++)
        for (long j = 0; j < n; j++) {
            if (!(y[i] > 0.5f) || y[j] > 0.5f) continue;
            pairs++;
            num += s[i] > s[j] ? 1 : s[i] == s[j] ? 0.5 : 0;
        }
    return num / pairs;
}

static void test_auc_matches_pairwise_count(void **st)
{
    (void)st;
    ts_rng r;
    ts_rng_seed(&r, 7);
    for (int trial = 0; trial < 20; trial++) {
        long n = 50 + trial * 13;
        float s[400], y[400];
        for (long i = 0; i < n; i++) {
            s[i] = (float)(ts_rng_below(&r, 12)) / 4.0f;   /* many ties */
            y[i] = ts_rng_uniform(&r) < 0.3 ? 1.0f : 0.0f;
        }
        y[0] = 1; y[1] = 0;
        assert_float_equal(ts_auc(s, y, NULL, n), auc_pairs(s, y, n), 1e-12);
    }
    float s[4] = {0.1f, 0.4f, 0.35f, 0.8f}, y[4] = {0, 0, 1, 1};
    assert_float_equal(ts_auc(s, y, NULL, 4), 0.75, 1e-12);   /* the sklearn doc example */
    float one[3] = {1, 1, 1};
    assert_true(isnan(ts_auc(s, one, NULL, 3)));
}

static void test_auc_weights_count_as_repeats(void **st)
{
    (void)st;
    float s[3] = {0.2f, 0.5f, 0.9f}, y[3] = {1, 0, 1}, w[3] = {2, 1, 1};
    float s2[4] = {0.2f, 0.2f, 0.5f, 0.9f}, y2[4] = {1, 1, 0, 1};
    assert_float_equal(ts_auc(s, y, w, 3), ts_auc(s2, y2, NULL, 4), 1e-12);
}

static int cmp_desc(const void *a, const void *b, void *arg)
{
    const float *s = arg;
    int32_t i = *(const int32_t *)a, j = *(const int32_t *)b;
    if (s[i] != s[j]) return s[i] > s[j] ? -1 : 1;
    return i - j;
}

static void test_topk_matches_sort(void **st)
{
    (void)st;
    ts_rng r;
    ts_rng_seed(&r, 11);
    static float s[3000];
    static int32_t all[3000], top[200];
    for (int trial = 0; trial < 30; trial++) {
        long n = 1 + (long)ts_rng_below(&r, 3000);
        int k = 1 + (int)ts_rng_below(&r, 200);
        long valid = 0;
        for (long i = 0; i < n; i++) {
            s[i] = (float)ts_rng_below(&r, 50);   /* ties */
            if (ts_rng_uniform(&r) < 0.1) s[i] = -INFINITY;   /* excluded */
            if (s[i] != -INFINITY) all[valid++] = (int32_t)i;
        }
        qsort_r(all, (size_t)valid, sizeof *all, cmp_desc, s);
        int m = ts_topk(s, n, k, top);
        assert_int_equal(m, valid < k ? valid : k);
        for (int i = 0; i < m; i++) assert_int_equal(top[i], all[i]);
        for (int i = 0; i < m; i++)   /* rank_of agrees with the sorted position */
            assert_int_equal(ts_rank_of(s, n, top[i]), i + 1);
    }
}

static void test_logloss_by_hand(void **st)
{
    (void)st;
    float p[2] = {0.8f, 0.25f}, y[2] = {1, 0};
    assert_float_equal(ts_logloss(p, y, NULL, 2), -(log(0.8) + log(0.75)) / 2, 1e-6);
}

static void test_grow_pair_keeps_values(void **st)
{
    (void)st;
    float *a = NULL, *b = NULL;
    long cap = 0;
    assert_int_equal(ts_grow_pair(&a, &b, &cap, 10), 0);
    assert_int_equal(cap, 4096);
    for (int i = 0; i < 10; i++) { a[i] = (float)i; b[i] = (float)-i; }
    assert_int_equal(ts_grow_pair(&a, &b, &cap, 5000), 0);
    assert_int_equal(cap, 8192);
    for (int i = 0; i < 10; i++) { assert_true(a[i] == (float)i); assert_true(b[i] == (float)-i); }
    assert_int_equal(ts_grow_pair(&a, &b, &cap, 100), 0);   /* never shrinks */
    assert_int_equal(cap, 8192);
    free(a);
    free(b);
}

static void test_rng_is_reproducible(void **st)
{
    (void)st;
    ts_rng a, b;
    ts_rng_seed(&a, 3);
    ts_rng_seed(&b, 3);
    for (int i = 0; i < 100; i++) assert_true(ts_rng_next(&a) == ts_rng_next(&b));
    ts_rng_seed(&b, 4);
    assert_false(ts_rng_next(&a) == ts_rng_next(&b));
    double m = 0, v = 0;
    for (int i = 0; i < 20000; i++) { double z = ts_rng_normal(&a); m += z; v += z * z; }
    assert_true(fabs(m / 20000) < 0.03 && fabs(v / 20000 - 1) < 0.05);
}

/* ts_split's word-at-a-time search for 1- and 2-byte separators cuts where strstr does: random
 * lines of separator bytes, short fields, "::" (a separator that overlaps itself), and max */
static int split_by_strstr(char *s, const char *sep, char **fields, int max)
{
    size_t k = strlen(sep);
    int n = 0;
    for (;;) {
        if (n == max) return max + 1;
        fields[n++] = s;
        char *t = strstr(s, sep);
        if (!t) return n;
        *t = 0;
        s = t + k;
    }
}

static void test_split_matches_strstr(void **st)
{
    (void)st;
    static const char *const seps[] = {", ", ",", "::", "\t", "|", ":", " ,"};
    static const char alphabet[] = "ab, :\t|:";
    ts_rng r;
    ts_rng_seed(&r, 7);
    for (int t = 0; t < 20000; t++) {
        char a[80], b[80], *fa[16], *fb[16];
        int len = (int)ts_rng_below(&r, 70);
        for (int i = 0; i < len; i++) a[i] = alphabet[ts_rng_below(&r, sizeof alphabet - 1)];
        a[len] = 0;
        memcpy(b, a, (size_t)len + 1);
        const char *sep = seps[ts_rng_below(&r, 7)];
        int max = (int)ts_rng_below(&r, 12);
        int na = ts_split(a, sep, fa, max), nb = split_by_strstr(b, sep, fb, max);
        assert_int_equal(na, nb);
        assert_memory_equal(a, b, (size_t)len + 1);
        for (int i = 0; i < na && i < max; i++) assert_int_equal(fa[i] - a, fb[i] - b);
    }
}

static void test_lines_crlf_long_and_gzip(void **st)
{
    (void)st;
    char big[10000];
    memset(big, 'x', sizeof big - 1);
    big[sizeof big - 1] = 0;
    char *text = malloc(20100);
    snprintf(text, 20100, "a\tb\r\n%s\nlast", big);
    const char *plain = tu_write(".txt", text);
    char gzpath[300];
    snprintf(gzpath, sizeof gzpath, "%s.gz", plain);
    gzFile g = gzopen(gzpath, "wb");
    gzputs(g, text);
    gzclose(g);
    const char *paths[2] = {plain, gzpath};
    for (int i = 0; i < 2; i++) {
        ts_err e;
        ts_lines *r = ts_lines_open(paths[i], &e);
        assert_non_null(r);
        size_t n;
        char *l = ts_lines_next(r, &n);
        assert_string_equal(l, "a\tb");
        char *f[4];
        assert_int_equal(ts_split(l, "\t", f, 4), 2);
        assert_string_equal(f[1], "b");
        l = ts_lines_next(r, &n);
        assert_int_equal(n, sizeof big - 1);
        l = ts_lines_next(r, &n);
        assert_string_equal(l, "last");
        assert_int_equal(ts_lines_lineno(r), 3);
        assert_null(ts_lines_next(r, &n));
        assert_int_equal(ts_lines_error(r, &e), 0);
        ts_lines_close(r);
    }
    ts_err e;
    /* found by tests/fuzz: a NUL byte (a UTF-16 file) glued the rest of its line to the next
     * line; now the read stops there with the file and line */
    static const char nul[] = "a\nb\0c\nd\n";
    const char *np = tu_write(".txt", "");
    FILE *f = fopen(np, "wb");
    assert_non_null(f);
    assert_int_equal(fwrite(nul, 1, sizeof nul - 1, f), sizeof nul - 1);
    fclose(f);
    ts_lines *r = ts_lines_open(np, &e);
    assert_non_null(r);
    size_t n;
    assert_string_equal(ts_lines_next(r, &n), "a");
    assert_null(ts_lines_next(r, &n));
    assert_int_equal(ts_lines_error(r, &e), -1);
    tu_contains(e.msg, np, ":2:", "NUL byte", NULL);
    ts_lines_close(r);
    unlink(np);
    assert_null(ts_lines_open("/nonexistent/file.csv", &e));
    tu_contains(e.msg, "/nonexistent/file.csv", "cannot open", NULL);
    unlink(gzpath);
    unlink(plain);
    free(text);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_auc_matches_pairwise_count),
        cmocka_unit_test(test_auc_weights_count_as_repeats),
        cmocka_unit_test(test_topk_matches_sort),
        cmocka_unit_test(test_logloss_by_hand),
        cmocka_unit_test(test_rng_is_reproducible),
        cmocka_unit_test(test_grow_pair_keeps_values),
        cmocka_unit_test(test_lines_crlf_long_and_gzip),
        cmocka_unit_test(test_split_matches_strstr),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
