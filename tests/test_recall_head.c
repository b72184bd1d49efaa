/* test_recall_head.c — the retrieval and popularity heads and the top-K kernels they use:
 * ts_topk / ts_rank_of against a brute-force sort on random scores with ties and excluded
 * items; the retrieval head's blocked evaluation (several blocks, a partial last one, ties,
 * targets past the top-K list, excluded targets) against brute force on integer scores that
 * every summation order computes exactly; both heads' metrics on a hand case; finite-
 * difference gradient checks for full and sampled softmax (each sampler, logQ on and off);
 * and the head's built-in softmax cross-entropy against the softmax_ce plugin.
 * Not a quality test: test_recall_e2e.c trains on MovieLens. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "internal.h"

/* ---- ts_topk and ts_rank_of against a sort ----------------------------------------------- */
static const float *cmp_s;
static int by_score_then_index(const void *a, const void *b)
{
    int32_t i = *(const int32_t *)a, j = *(const int32_t *)b;
    if (cmp_s[i] != cmp_s[j]) return cmp_s[i] > cmp_s[j] ? -1 : 1;
    return (i > j) - (i < j);
}

static void topk_against_sort(void **state)
{
    enum { N = 1000 };
    float s[N];
    int32_t order[N], top[1500];
    ts_rng r;
    ts_rng_seed(&r, 11);
    for (int trial = 0; trial < 20; trial++) {
        int live = 0;
        for (int j = 0; j < N; j++) {
            s[j] = ts_rng_uniform(&r) < 0.2 ? -INFINITY : (float)ts_rng_below(&r, 25);  /* many ties */
            if (s[j] != -INFINITY) order[live++] = j;
        }
        cmp_s = s;
        qsort(order, (size_t)live, sizeof *order, by_score_then_index);
        static const int ks[] = {1, 7, 100, 999, 1500};
        for (int q = 0; q < 5; q++) {
            int m = ts_topk(s, N, ks[q], top);
            assert_int_equal(m, ks[q] < live ? ks[q] : live);
            assert_memory_equal(top, order, sizeof(int32_t) * (size_t)m);
        }
        for (int i = 0; i < live; i += 37) assert_int_equal(ts_rank_of(s, N, order[i]), i + 1);
    }
}

/* ---- a head in a bare run context ---------------------------------------------------------- */
typedef struct {
    ts_ctx ctx;
    ts_ini ini;
    ts_head H;
    const ts_head_ops *ops;
    float *arena;
    size_t arena_n;
    ts_data D;                  /* holds the exclusion field "watched" */
    ts_tensor in, label;
} hb;

static const float *fake_freq;
static long fake_items;
static int fake_aux(ts_data *D, const char *name, const void **p, long *n)
{
    if (strcmp(name, "item_freq") || !fake_freq) return -1;
    *p = fake_freq;
    *n = fake_items;
    return 0;
}
static const ts_dataset_ops fake_ops = {.size = sizeof(ts_dataset_ops), .aux = fake_aux};

static void hb_build(hb *h, const char *type, const char *pairs, int B, int Dim, const ts_loss_ops *loss)
{
    ts_err e = {{0}};
    memset(h, 0, sizeof *h);
    const ts_plugin *p = ts_plugin_find(TS_HEAD, type, &e);
    if (!p) fail_msg("%s", e.msg);
    h->ops = p->ops;
    ts_ctx_init(&h->ctx, 5, B);
    h->ctx.owner = "head.t";
    h->ctx.data = &h->D;
    h->ctx.data_ops = &fake_ops;
    h->D.nfield = 1;
    snprintf(h->D.field_name[0], TS_NAME_MAX, "watched");
    h->D.field[0] = (ts_tensor){.dtype = TS_BAGS, .ndim = 2, .dim = {B, 1}, .vocab = 1 << 20};
    h->D.field[0].off = calloc((size_t)B + 1, sizeof(int32_t));
    h->D.field[0].ids = calloc((size_t)B * 64 + 1, sizeof(int32_t));
    h->in = (ts_tensor){.dtype = TS_F32, .ndim = 2, .dim = {B, Dim}};
    h->in.x = calloc((size_t)B * Dim, sizeof(float));
    h->in.dx = calloc((size_t)B * Dim, sizeof(float));
    h->label = (ts_tensor){.dtype = TS_F32, .ndim = 2, .dim = {B, 1}};
    h->label.x = calloc((size_t)B, sizeof(float));
    h->H = (ts_head){.name = "t", .nin = 1, .in = {&h->in}, .label = &h->label, .loss = loss,
                     .grad_scale = 1, .ctx = &h->ctx};
    if (ts_ini_from_pairs(&h->ini, "head.t", pairs, &e)) fail_msg("%s", e.msg);
    const ts_key *lists[1] = {p->keys};
    if (ts_cfg_validate(&h->ini.sec[0], NULL, lists, 1, &e)) fail_msg("%s", e.msg);
    if (h->ops->build(&h->H, &h->ini.sec[0], &e)) fail_msg("build: %s", e.msg);
    assert_int_equal(ts_ctx_alloc_params(&h->ctx, 0, &h->arena, &h->arena_n, &e), 0);
}

static void hb_free(hb *h)
{
    if (h->ops->destroy) h->ops->destroy(&h->H);
    free(h->D.field[0].off); free(h->D.field[0].ids);
    free(h->in.x); free(h->in.dx); free(h->label.x); free(h->arena);
    ts_ini_free(&h->ini);
    ts_ctx_free(&h->ctx);
}

static void set_rows(hb *h, int B)
{
    h->in.dim[0] = h->label.dim[0] = h->D.field[0].dim[0] = B;
}

static double metric(hb *h, const char *name)
{
    for (int i = 0; i < h->ctx.nmetrics; i++)
        if (!strcmp(h->ctx.metrics[i].metric, name)) return h->ctx.metrics[i].value;
    fail_msg("no metric %s", name);
    return NAN;
}

static void run_eval(hb *h)
{
    ts_err e = {{0}};
    double loss;
    h->ctx.phase = TS_VALID;
    h->ctx.nmetrics = 0;
    assert_int_equal(h->ops->eval_begin(&h->H, TS_VALID, &e), 0);
    if (h->ops->forward(&h->H, TS_VALID, &loss, &e)) fail_msg("%s", e.msg);
    assert_int_equal(h->ops->eval_end(&h->H, TS_VALID, &e), 0);
}

/* Items 0..4 with vectors (1,0) (0,1) (1,1) (-1,0) (0,-1). Row 0: u = (2,1), scores
 * 2 1 3 -2 -1, target 2: rank 1. Row 1: u = (1,0), scores 1 0 1 -1 0, item 0 excluded,
 * target 4: above it item 2 (score 1) and item 1 (a tie with a lower index): rank 3. */
static void metrics_by_hand(void **state)
{
    hb h;
    hb_build(&h, "retrieval", "items=5 softmax=full k=1,3 exclude_watched=watched", 2, 2, NULL);
    static const float V[10] = {1, 0, 0, 1, 1, 1, -1, 0, 0, -1}, U[4] = {2, 1, 1, 0};
    memcpy(h.ctx.params[0]->w, V, sizeof V);
    memcpy(h.in.x, U, sizeof U);
    h.label.x[0] = 2; h.label.x[1] = 4;
    int32_t off[3] = {0, 0, 1};
    memcpy(h.D.field[0].off, off, sizeof off);
    h.D.field[0].ids[0] = 0;
    run_eval(&h);
    assert_float_equal(metric(&h, "recall@1"), 0.5, 1e-12);
    assert_float_equal(metric(&h, "recall@3"), 1.0, 1e-12);
    assert_float_equal(metric(&h, "ndcg@1"), 0.5, 1e-12);
    assert_float_equal(metric(&h, "ndcg@3"), 0.75, 1e-12);      /* (1 + 1/log2(4)) / 2 */
    assert_float_equal(metric(&h, "mrr"), 2.0 / 3, 1e-12);
    /* full-softmax loss: log sum exp(s) - s_t per row, no exclusion */
    double l0 = log(exp(2) + exp(1) + exp(3) + exp(-2) + exp(-1)) - 3;
    double l1 = log(exp(1) + 1 + exp(1) + exp(-1) + 1) - 0;
    assert_float_equal(metric(&h, "full_softmax_loss"), (l0 + l1) / 2, 1e-5);
    h.label.x[1] = 0;                          /* a watched target is a miss */
    run_eval(&h);
    assert_float_equal(metric(&h, "recall@3"), 0.5, 1e-12);
    assert_float_equal(metric(&h, "mrr"), 0.5, 1e-12);
    h.label.x[1] = 5;                          /* not an item */
    ts_err e = {{0}};
    double loss;
    assert_int_equal(h.ops->forward(&h.H, TS_VALID, &loss, &e), -1);
    assert_non_null(strstr(e.msg, "not an item index"));
    hb_free(&h);

    /* popularity without item_freq counts training labels: counts 1 3 0 2 0. Row 0 target 3:
     * rank 2. Row 1 (item 0 excluded) target 4: above it 1, 3 and item 2 (tie, lower): rank 4. */
    hb_build(&h, "popularity", "items=5 k=1,3 exclude_watched=watched", 6, 1, NULL);
    static const float train[6] = {1, 1, 1, 3, 3, 0};
    memcpy(h.label.x, train, sizeof train);
    double l;
    assert_int_equal(h.ops->forward(&h.H, TS_TRAIN, &l, &e), 0);
    set_rows(&h, 2);
    h.label.x[0] = 3; h.label.x[1] = 4;
    memcpy(h.D.field[0].off, off, sizeof off);
    run_eval(&h);
    assert_float_equal(metric(&h, "recall@1"), 0.0, 1e-12);
    assert_float_equal(metric(&h, "recall@3"), 0.5, 1e-12);
    assert_float_equal(metric(&h, "ndcg@3"), 0.5 / log2(3.0), 1e-12);
    assert_float_equal(metric(&h, "mrr"), (0.5 + 0.25) / 2, 1e-12);
    hb_free(&h);
    /* with the dataset's item_freq the same ranking comes from the aux array */
    static const float freq[5] = {1, 3, 0, 2, 0};
    fake_freq = freq; fake_items = 5;
    hb_build(&h, "popularity", "k=1,3 exclude_watched=watched", 2, 1, NULL);
    h.label.x[0] = 3; h.label.x[1] = 4;
    memcpy(h.D.field[0].off, off, sizeof off);
    run_eval(&h);
    assert_float_equal(metric(&h, "mrr"), (0.5 + 0.25) / 2, 1e-12);
    fake_freq = NULL;
    hb_free(&h);
}

/* The blocked evaluation against brute force: 1000 items in blocks of 64, integer vectors so
 * scores are exact, many ties, random exclusions that sometimes hold the target. */
static void blocked_eval_against_brute_force(void **state)
{
    enum { N = 1000, Dm = 6, B = 37 };
    hb h;
    hb_build(&h, "retrieval", "items=1000 softmax=full eval_block=64 k=1,10,50 exclude_watched=watched", B, Dm, NULL);
    ts_rng r;
    ts_rng_seed(&r, 3);
    float *V = h.ctx.params[0]->w, *bias = h.ctx.params[1]->w;
    for (int i = 0; i < N * Dm; i++) V[i] = (float)ts_rng_below(&r, 5) - 2.0f;
    for (int i = 0; i < N; i++) bias[i] = (float)ts_rng_below(&r, 7) - 3.0f;
    double hit[3] = {0}, ndcg[3] = {0}, rr = 0, ls = 0;
    static const int K[3] = {1, 10, 50};
    long nrows = 0, deep = 0;
    h.ctx.phase = TS_VALID;
    h.ctx.nmetrics = 0;
    ts_err e = {{0}};
    assert_int_equal(h.ops->eval_begin(&h.H, TS_VALID, &e), 0);
    for (int batch = 0; batch < 2; batch++) {
        int nb = batch ? 20 : B;
        set_rows(&h, nb);
        ts_tensor *ex = &h.D.field[0];
        ex->off[0] = 0;
        for (int row = 0; row < nb; row++) {
            for (int d = 0; d < Dm; d++) h.in.x[row * Dm + d] = (float)ts_rng_below(&r, 4);
            int t = (int)ts_rng_below(&r, N), ne = (int)ts_rng_below(&r, 40);
            h.label.x[row] = (float)t;
            for (int q = 0; q < ne; q++)
                ex->ids[ex->off[row] + q] = q == 0 && row % 9 == 4 ? t : (int32_t)ts_rng_below(&r, N);
            ex->off[row + 1] = ex->off[row] + ne;
        }
        double loss;
        if (h.ops->forward(&h.H, TS_VALID, &loss, &e)) fail_msg("%s", e.msg);
        for (int row = 0; row < nb; row++, nrows++) {
            float s[N];
            double m = -1e300, se = 0;
            for (int j = 0; j < N; j++) {
                float v = bias[j];
                for (int d = 0; d < Dm; d++) v += h.in.x[row * Dm + d] * V[j * Dm + d];
                s[j] = v;
                if (v > m) m = v;
            }
            int t = (int)h.label.x[row], excluded = 0;
            for (int j = 0; j < N; j++) se += exp(s[j] - m);
            ls += log(se) + m - s[t];
            for (int32_t q = ex->off[row]; q < ex->off[row + 1]; q++) {
                excluded |= ex->ids[q] == t;
                s[ex->ids[q]] = -INFINITY;
            }
            if (excluded) continue;
            long rank = 1;
            for (int j = 0; j < N; j++) rank += s[j] > s[t] || (s[j] == s[t] && j < t);
            deep += rank > 50;
            rr += 1.0 / rank;
            for (int q = 0; q < 3; q++)
                if (rank <= K[q]) { hit[q] += 1; ndcg[q] += 1 / log2(rank + 1.0); }
        }
    }
    assert_int_equal(h.ops->eval_end(&h.H, TS_VALID, &e), 0);
    assert_true(deep > 5);                     /* the second pass was exercised */
    char name[32];
    for (int q = 0; q < 3; q++) {
        snprintf(name, sizeof name, "recall@%d", K[q]);
        assert_float_equal(metric(&h, name), hit[q] / nrows, 1e-12);
        snprintf(name, sizeof name, "ndcg@%d", K[q]);
        assert_float_equal(metric(&h, name), ndcg[q] / nrows, 1e-12);
    }
    assert_float_equal(metric(&h, "mrr"), rr / nrows, 1e-12);
    assert_float_equal(metric(&h, "full_softmax_loss"), ls / nrows, 1e-4);
    hb_free(&h);
}

/* ---- gradients ------------------------------------------------------------------------------ */
static void check_keys(const char *keys)
{
    ts_err e = {{0}};
    const ts_plugin *p = ts_plugin_find(TS_HEAD, "retrieval", &e);
    if (!p) fail_msg("%s", e.msg);
    ts_head_ops ops = *(const ts_head_ops *)p->ops;
    ops.check_keys = keys;
    ts_plugin q = *p;
    q.ops = &ops;
    if (ts_check_plugin(&q, stderr, &e)) fail_msg("check with %s: %s", keys, e.msg);
}

static void gradient_checks(void **state)
{
    check_keys("items=7 softmax=full k=1,3");
    check_keys("items=7 softmax=sampled negatives=6 k=1,3");
    check_keys("items=7 softmax=sampled negatives=4 sampler=uniform logq_correction=false");
    check_keys("items=40 softmax=sampled negatives=12 eval_block=16");
    ts_err e = {{0}};
    const ts_plugin *p = ts_plugin_find(TS_HEAD, "popularity", &e);
    assert_non_null(p);
    if (ts_check_plugin(p, stderr, &e)) fail_msg("%s", e.msg);
}

/* Loss and gradients of the built-in softmax cross-entropy equal the softmax_ce plugin's. */
static void builtin_loss_matches_plugin(void **state)
{
    ts_err e = {{0}};
    const ts_plugin *lp = ts_plugin_find(TS_LOSS, "softmax_ce", &e);
    if (!lp) fail_msg("%s", e.msg);
    const ts_loss_ops *lo = lp->ops;
    static const char *modes[2] = {"items=30 softmax=full", "items=30 softmax=sampled negatives=8"};
    for (int m = 0; m < 2; m++) {
        hb a, b;
        hb_build(&a, "retrieval", modes[m], 9, 5, NULL);
        hb_build(&b, "retrieval", modes[m], 9, 5, lo);
        assert_int_equal(lo->init(&b.H.loss_state, &b.ini.sec[0], &e), 0);
        ts_rng r;
        ts_rng_seed(&r, 8);
        for (int i = 0; i < 45; i++) a.in.x[i] = b.in.x[i] = (float)ts_rng_normal(&r);
        for (int i = 0; i < 9; i++) a.label.x[i] = b.label.x[i] = (float)ts_rng_below(&r, 30);
        double la, lb;
        assert_int_equal(a.ops->forward(&a.H, TS_TRAIN, &la, &e), 0);
        assert_int_equal(b.ops->forward(&b.H, TS_TRAIN, &lb, &e), 0);
        assert_true(la > 0 && isfinite(la));
        assert_float_equal(la, lb, 1e-5);
        for (int i = 0; i < 45; i++) assert_float_equal(a.in.dx[i], b.in.dx[i], 1e-6);
        for (int i = 0; i < 30 * 5; i++) assert_float_equal(a.ctx.params[0]->g[i], b.ctx.params[0]->g[i], 1e-6);
        if (lo->destroy) lo->destroy(b.H.loss_state);
        hb_free(&a);
        hb_free(&b);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(topk_against_sort),
        cmocka_unit_test(metrics_by_hand),
        cmocka_unit_test(blocked_eval_against_brute_force),
        cmocka_unit_test(gradient_checks),
        cmocka_unit_test(builtin_loss_matches_plugin),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
