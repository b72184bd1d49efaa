/* test_tune.c — the pure pieces of `tessera tune` (core/tune.h): reading KEY=SPEC arguments and
 * refusing the malformed ones with a sentence, the grid's trials and its limit, random draws
 * (inside their ranges, whole numbers kept whole, log-uniform spread, reproducible, no trial
 * drawn twice), the direction of a figure, and the choice among trials (validation figures
 * only, failed trials and NaN never chosen, ties kept by the default). tests/tune.sh runs the
 * command end to end. */
#include "testutil.h"
#include "tune.h"

#include <math.h>

static ts_tune_key key;

static void parse_ok(const char *arg)
{
    ts_err e;
    if (ts_tune_parse_key(arg, &key, &e)) fail_msg("%s: %s", arg, e.msg);
}

/* The argument is refused, and the sentence holds `needle`. */
static void parse_refused(const char *arg, const char *needle)
{
    ts_err e;
    memset(&e, 0, sizeof e);
    assert_int_equal(ts_tune_parse_key(arg, &key, &e), -1);
    if (!strstr(e.msg, needle)) fail_msg("%s: the message '%s' lacks '%s'", arg, e.msg, needle);
}

static void test_parse_kinds(void **st)
{
    (void)st;
    parse_ok("layer.mix.units=8, 16 ,32");
    assert_int_equal(key.kind, TS_TUNE_LIST);
    assert_string_equal(key.key, "layer.mix.units");
    assert_int_equal(key.nval, 3);
    assert_string_equal(key.val[1], "16");
    parse_ok("train.epochs=2:9");
    assert_int_equal(key.kind, TS_TUNE_RANGE);
    assert_true(key.integer);
    assert_float_equal(key.lo, 2, 0);
    assert_float_equal(key.hi, 9, 0);
    parse_ok("optimizer.lr=0.001:0.1");
    assert_int_equal(key.kind, TS_TUNE_RANGE);
    assert_false(key.integer);
    parse_ok("optimizer.lr=log:1e-4:1e-2");
    assert_int_equal(key.kind, TS_TUNE_LOG);
    assert_false(key.integer);
    assert_float_equal(key.lo, 1e-4, 1e-18);
    parse_ok("layer.mix.experts=log:2:64");
    assert_int_equal(key.kind, TS_TUNE_LOG);
    assert_true(key.integer);
    parse_ok("optimizer.type=adam");
    assert_int_equal(key.kind, TS_TUNE_FIXED);
    assert_string_equal(key.val[0], "adam");
    parse_ok("data.path=a:b.csv");              /* a ':' that is not a range: one value */
    assert_int_equal(key.kind, TS_TUNE_FIXED);
    parse_ok("experiment.seed=7");              /* fixing the seed is allowed; searching is not */
    assert_int_equal(key.kind, TS_TUNE_FIXED);
    parse_ok("data.split=0.5 0.25 0.25");       /* a value that is a list: spaces, fixed */
    assert_int_equal(key.kind, TS_TUNE_FIXED);
    parse_ok("layer.x.input=emb continuous, emb");   /* a list of two such values */
    assert_int_equal(key.kind, TS_TUNE_LIST);
    assert_string_equal(key.val[0], "emb continuous");
}

static void test_parse_refusals(void **st)
{
    (void)st;
    parse_refused("units=8,16", "not SECTION.KEY=VALUES");
    parse_refused("layer.h.units", "not SECTION.KEY=VALUES");
    parse_refused("layer.h.units=", "gives no value");
    parse_refused("layer.h.units=8,,16", "value 2 of the list is empty");
    parse_refused("layer.h.units=8,16,", "value 3 of the list is empty");
    parse_refused("layer.h.units=8,16,8", "the value 8 is listed twice");
    parse_refused("optimizer.lr=0.1:0.01", "low end 0.1 is above its high end 0.01");
    parse_refused("optimizer.lr=0.1:0.1", "holds one value");
    parse_refused("optimizer.lr=log:0:1", "needs LO > 0");
    parse_refused("optimizer.lr=log:-1:1", "needs LO > 0");
    parse_refused("optimizer.lr=log:1:0.1", "above its high end");
    parse_refused("optimizer.lr=log:a:b", "log:LO:HI with two numbers");
    parse_refused("experiment.seed=1,2,3", "--seeds");
    parse_refused("experiment.name=x", "cannot be set by tune");
    parse_refused("data.split_seed=1:5", "move rows between");
    parse_refused("data.split=0.6,0.2,0.2", "move rows between");
    parse_refused("layer.h units=8,16", "no space");
    parse_refused("layer.h.units=8\n,16", "control character");
    char many[TS_TUNE_MAX_VALUES * 4 + 64] = "layer.h.units=";
    for (int i = 0; i <= TS_TUNE_MAX_VALUES; i++)
        snprintf(many + strlen(many), sizeof many - strlen(many), "%s%d", i ? "," : "", i);
    parse_refused(many, "a list holds at most");
}

static void test_grid(void **st)
{
    (void)st;
    ts_tune_key k[3];
    ts_err e;
    assert_int_equal(ts_tune_parse_key("layer.h.units=4,8", &k[0], &e), 0);
    assert_int_equal(ts_tune_parse_key("optimizer.type=adam", &k[1], &e), 0);
    assert_int_equal(ts_tune_parse_key("optimizer.lr=0.1,0.01,0.001", &k[2], &e), 0);
    assert_int_equal(ts_tune_grid_size(k, 3), 6);
    static ts_tune_trial t[TS_TUNE_MAX_GRID];
    int n = 0;
    assert_int_equal(ts_tune_grid(k, 3, t, TS_TUNE_MAX_GRID, &n, &e), 0);
    assert_int_equal(n, 6);
    /* the last key varies fastest; the fixed key is no part of a trial */
    assert_string_equal(t[0].val[0], "4");
    assert_string_equal(t[0].val[2], "0.1");
    assert_string_equal(t[1].val[2], "0.01");
    assert_string_equal(t[3].val[0], "8");
    assert_string_equal(t[3].val[2], "0.1");
    assert_string_equal(t[5].val[2], "0.001");
    assert_string_equal(t[4].val[1], "");
    for (int i = 0; i < n; i++)
        for (int j = 0; j < i; j++)
            assert_false(!strcmp(t[i].val[0], t[j].val[0]) && !strcmp(t[i].val[2], t[j].val[2]));
    /* a range has no grid */
    assert_int_equal(ts_tune_parse_key("optimizer.lr=log:0.001:0.1", &k[2], &e), 0);
    assert_int_equal(ts_tune_grid(k, 3, t, TS_TUNE_MAX_GRID, &n, &e), -1);
    assert_non_null(strstr(e.msg, "--random N"));
    /* a grid over the limit: 16 x 16 x 2 = 512 */
    char a[200] = "layer.a.units=", b[200] = "layer.b.units=";
    for (int i = 0; i < 16; i++) {
        snprintf(a + strlen(a), sizeof a - strlen(a), "%s%d", i ? "," : "", i);
        snprintf(b + strlen(b), sizeof b - strlen(b), "%s%d", i ? "," : "", i);
    }
    assert_int_equal(ts_tune_parse_key(a, &k[0], &e), 0);
    assert_int_equal(ts_tune_parse_key(b, &k[1], &e), 0);
    assert_int_equal(ts_tune_parse_key("layer.c.units=1,2", &k[2], &e), 0);
    assert_int_equal(ts_tune_grid_size(k, 3), -1);
    assert_int_equal(ts_tune_grid(k, 3, t, TS_TUNE_MAX_GRID, &n, &e), -1);
    assert_non_null(strstr(e.msg, "512 trials, over the limit of 256"));
    assert_int_equal(ts_tune_grid_size(k, 2), 256);   /* at the limit: allowed */
}

static void test_random_draws(void **st)
{
    (void)st;
    ts_tune_key k[4];
    ts_err e;
    assert_int_equal(ts_tune_parse_key("train.epochs=2:5", &k[0], &e), 0);
    assert_int_equal(ts_tune_parse_key("optimizer.lr=log:0.0001:1", &k[1], &e), 0);
    assert_int_equal(ts_tune_parse_key("layer.h.drop=0.1:0.3", &k[2], &e), 0);
    assert_int_equal(ts_tune_parse_key("layer.h.units=8,16,32", &k[3], &e), 0);
    static ts_tune_trial t[400], u[400];
    int got = 0, below = 0, seen[6] = {0}, lists[3] = {0};
    assert_int_equal(ts_tune_random(k, 4, 400, 7, t, &got, &e), 0);
    assert_int_equal(got, 400);
    for (int i = 0; i < got; i++) {
        char *end;
        long ep = strtol(t[i].val[0], &end, 10);
        assert_true(*end == 0 && ep >= 2 && ep <= 5);   /* whole numbers stay whole */
        seen[ep]++;
        double lr = strtod(t[i].val[1], NULL);
        assert_true(lr >= 0.0001 && lr <= 1);
        below += lr < 0.01;                              /* 0.01: the geometric middle */
        double dr = strtod(t[i].val[2], NULL);
        assert_true(dr >= 0.1 && dr <= 0.3);
        for (int v = 0; v < 3; v++) lists[v] += !strcmp(t[i].val[3], k[3].val[v]);
    }
    for (int ep = 2; ep <= 5; ep++) assert_true(seen[ep] > 50);   /* both ends drawn */
    /* log-uniform: half the draws below the geometric middle (uniform would give ~1 %) */
    assert_true(below > 160 && below < 240);
    for (int v = 0; v < 3; v++) assert_true(lists[v] > 90);
    /* the same seed draws the same trials (a resumed search finds its trials again) */
    assert_int_equal(ts_tune_random(k, 4, 400, 7, u, &got, &e), 0);
    assert_memory_equal(t, u, sizeof t);
    /* a longer search with the same seed starts with the shorter one's trials */
    static ts_tune_trial w[10];
    assert_int_equal(ts_tune_random(k, 4, 10, 7, w, &got, &e), 0);
    assert_memory_equal(w, t, sizeof w);
    assert_int_equal(ts_tune_random(k, 4, 400, 8, u, &got, &e), 0);
    assert_true(memcmp(t, u, sizeof t) != 0);
}

static void test_random_distinct_and_refusals(void **st)
{
    (void)st;
    ts_tune_key k[2];
    ts_err e;
    static ts_tune_trial t[20];
    int got = -1;
    assert_int_equal(ts_tune_parse_key("layer.h.units=4,8", &k[0], &e), 0);
    assert_int_equal(ts_tune_parse_key("optimizer.type=adam", &k[1], &e), 0);
    /* two distinct trials in the space: five asked, two drawn, never one twice */
    assert_int_equal(ts_tune_random(k, 2, 5, 1, t, &got, &e), 0);
    assert_int_equal(got, 2);
    assert_string_not_equal(t[0].val[0], t[1].val[0]);
    assert_int_equal(ts_tune_random(k, 2, 0, 1, t, &got, &e), -1);
    assert_non_null(strstr(e.msg, "--random 0"));
    assert_int_equal(ts_tune_random(k + 1, 1, 3, 1, t, &got, &e), -1);   /* only a fixed key */
    assert_non_null(strstr(e.msg, "needs a key to search"));
}

static void test_direction(void **st)
{
    (void)st;
    assert_true(ts_tune_lower_better("income.logloss"));
    assert_true(ts_tune_lower_better("y1.mse"));
    assert_true(ts_tune_lower_better("y1.mae"));
    assert_true(ts_tune_lower_better("next.loss"));
    assert_false(ts_tune_lower_better("income.auc"));
    assert_false(ts_tune_lower_better("next.recall@50"));
    assert_false(ts_tune_lower_better("match.mrr"));
}

static void test_choose(void **st)
{
    (void)st;
    double v[5] = {0.90, 0.93, NAN, 0.95, 0.93};
    unsigned char ok[5] = {1, 1, 1, 1, 1};
    assert_int_equal(ts_tune_choose(v, ok, 5, 0), 3);
    assert_int_equal(ts_tune_choose(v, ok, 5, 1), 0);        /* lower is better: the default */
    ok[3] = 0;                                                /* a failed trial is never chosen */
    assert_int_equal(ts_tune_choose(v, ok, 5, 0), 1);        /* a tie goes to the earlier one */
    double tie[3] = {0.5, 0.5, 0.4};
    unsigned char all[3] = {1, 1, 1};
    assert_int_equal(ts_tune_choose(tie, all, 3, 0), 0);     /* the default kept on a tie */
    double none[2] = {NAN, NAN};
    assert_int_equal(ts_tune_choose(none, all, 2, 0), -1);
    unsigned char off[3] = {0, 0, 0};
    assert_int_equal(ts_tune_choose(tie, off, 3, 0), -1);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_parse_kinds),
        cmocka_unit_test(test_parse_refusals),
        cmocka_unit_test(test_grid),
        cmocka_unit_test(test_random_draws),
        cmocka_unit_test(test_random_distinct_and_refusals),
        cmocka_unit_test(test_direction),
        cmocka_unit_test(test_choose),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
