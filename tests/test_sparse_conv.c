/* test_sparse_conv.c — the sparse_conv layer is CLSM's convolution exactly: its forward against
 * the paper's formula written out in doubles (each position's window as the concatenation of its
 * words' trigram count vectors, times the (w V, F) matrix), its gradients against the same
 * formula's, both with a dense output gradient (the block path of backward) and with the one
 * nonzero per (row, filter) that max pooling leaves (the scatter path, which `check-plugin`'s
 * random gradients never reach), the rows it marks touched, padded cells zeroed after a longer
 * batch, and its refusals (a float input, an even window); for tanh, relu and none (F = 20: the
 * AVX-512 compress of dz in whole and partial 16-feature chunks). The finite-difference check of the
 * conformance suite runs on it as on every plugin (tests/check_plugins.sh).
 * The layer is built on libtessera's internal context (core/internal.h), as check.c does. */
#include "testutil.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "internal.h"

/* F = 20: more than one 16-wide chunk of features and a partial one (the AVX-512 compress) */
enum { B = 5, T = 6, V = 23, W = 3, F = 20, PAD = 1, MAXBAG = 5 };
enum { A_NONE, A_TANH, A_RELU };
static const char *const act_name[] = {"none", "tanh", "relu"};

typedef struct {
    const ts_plugin *pl;
    const ts_layer_ops *ops;
    ts_ctx ctx;
    ts_ini ini;
    ts_layer L;
    ts_tensor in;
    int32_t off[B * T + 1], ids[B * T * MAXBAG], len[B];
    float *arena;
    size_t arena_n;
    int act;          /* A_NONE, A_TANH or A_RELU */
    char owner[40];
    ts_param *Wp, *bp;
} sc;

/* Random bags (0..MAXBAG ids each, repeats allowed: counts above 1) over random lengths 1..T,
 * row 0 of full length and row 1 of length 1. */
static void fill_bags(sc *h, ts_rng *r)
{
    int m = 0;
    for (int b = 0; b < B; b++)
        h->len[b] = b == 0 ? T : b == 1 ? 1 : 1 + (int)(ts_rng_uniform(r) * T) % T;
    for (int c = 0; c < B * T; c++) {
        h->off[c] = m;
        int n = (int)(ts_rng_uniform(r) * (MAXBAG + 1)) % (MAXBAG + 1);
        for (int k = 0; k < n; k++) h->ids[m++] = (int)(ts_rng_uniform(r) * V) % V;
    }
    h->off[B * T] = m;
}

static int try_build(sc *h, const char *keys, ts_tensor in, ts_err *e)
{
    memset(h, 0, sizeof *h);
    if (!(h->pl = ts_plugin_find(TS_LAYER, "sparse_conv", e))) return -1;
    h->ops = h->pl->ops;
    ts_ctx_init(&h->ctx, 7, B);
    snprintf(h->owner, sizeof h->owner, "layer.conv");
    if (ts_ini_from_pairs(&h->ini, h->owner, keys, e)) return -1;
    static const char *const hk[] = {"type", "input", NULL};
    const ts_key *lists[1] = {h->pl->keys};
    if (ts_cfg_validate(&h->ini.sec[0], hk, lists, 1, e)) return -1;
    h->in = in;
    h->L.name = h->owner + 6;
    h->L.ctx = &h->ctx;
    h->L.nin = 1;
    h->L.nout = 1;
    h->L.in[0] = &h->in;
    h->ctx.owner = h->owner;
    return h->ops->build(&h->L, &h->ini.sec[0], e);
}

static void build_act(sc *h, int act)
{
    ts_err e;
    ts_tensor in = {.dtype = TS_BAGS, .ndim = 2, .dim = {B, T}, .vocab = V};
    char keys[80];
    snprintf(keys, sizeof keys, "window=3 filters=%d activation=%s", F, act_name[act]);
    if (try_build(h, keys, in, &e)) fail_msg("%s", e.msg);
    h->act = act;
    h->in.off = h->off;
    h->in.ids = h->ids;
    h->in.len = h->len;
    long n = ts_numel(&h->L.out[0]);
    assert_int_equal(n, B * T * F);
    h->L.out[0].x = calloc((size_t)n, sizeof(float));
    h->L.out[0].dx = calloc((size_t)n, sizeof(float));
    if (ts_ctx_alloc_params(&h->ctx, 0, &h->arena, &h->arena_n, &e)) fail_msg("%s", e.msg);
    for (int i = 0; i < h->ctx.nparams; i++) {
        ts_param *p = h->ctx.params[i];
        size_t a = strlen(p->name);
        if (p->name[a - 1] == 'W') h->Wp = p;
        else h->bp = p;
    }
    assert_non_null(h->Wp);
    assert_non_null(h->bp);
    assert_int_equal(h->Wp->rows, V);
    assert_int_equal(h->Wp->cols, W * F);
    assert_true(h->Wp->flags & TS_PARAM_SPARSE);
    ts_rng r;
    ts_rng_seed(&r, 123);
    for (long j = 0; j < (long)V * W * F; j++) h->Wp->w[j] = (float)(0.3 * ts_rng_normal(&r));
    for (int f = 0; f < F; f++) h->bp->w[f] = (float)(0.2 * ts_rng_normal(&r));
}

static void build(sc *h) { build_act(h, A_TANH); }

/* act(z) and dz = dy act'(z) from the output y = act(z), as the paper's formula defines them */
static double act_of(int act, double z) { return act == A_TANH ? tanh(z) : act == A_RELU ? (z > 0 ? z : 0) : z; }
static double dz_of(int act, double dy, double y)
{
    return act == A_TANH ? dy * (1.0 - y * y) : act == A_RELU ? (y > 0 ? dy : 0) : dy;
}

static void release(sc *h)
{
    if (h->L.state) h->ops->destroy(&h->L);
    free(h->L.out[0].x);
    free(h->L.out[0].dx);
    free(h->arena);
    ts_ctx_free(&h->ctx);
    ts_ini_free(&h->ini);
}

/* x[b, s] (V): the trigram counts of word s of row b, zero outside [0, len b). */
static void counts(const sc *h, int b, int s, double *x)
{
    for (int i = 0; i < V; i++) x[i] = 0;
    if (s < 0 || s >= h->len[b]) return;
    for (int q = h->off[b * T + s]; q < h->off[b * T + s + 1]; q++) x[h->ids[q]] += 1;
}

/* The paper's z[b, t] (F): c + [x_{t-1}, x_t, x_{t+1}] (3V) times Wc (3V, F), where Wc's row
 * k V + i is the table's W[i][block k]. */
static void reference_z(const sc *h, int b, int t, double *z)
{
    double xcat[W * V];
    for (int k = 0; k < W; k++) counts(h, b, t + k - PAD, xcat + k * V);
    for (int f = 0; f < F; f++) {
        double a = h->bp->w[f];
        for (int k = 0; k < W; k++)
            for (int i = 0; i < V; i++) a += xcat[k * V + i] * h->Wp->w[(size_t)i * W * F + k * F + f];
        z[f] = a;
    }
}

static void check_forward(sc *h)
{
    ts_err e;
    if (h->ops->forward(&h->L, TS_TRAIN, &e)) fail_msg("%s", e.msg);
    const float *y = h->L.out[0].x;
    assert_ptr_equal(h->L.out[0].len, h->len);
    double z[F];
    for (int b = 0; b < B; b++)
        for (int t = 0; t < T; t++) {
            if (t < h->len[b]) reference_z(h, b, t, z);
            for (int f = 0; f < F; f++) {
                double want = t < h->len[b] ? act_of(h->act, z[f]) : 0.0;
                float got = y[((size_t)b * T + t) * F + f];
                if (fabs(got - want) > 1e-5 + 1e-5 * fabs(want))
                    fail_msg("y[%d,%d,%d] = %.7f, the paper's formula gives %.7f (len %d)", b, t, f,
                             got, want, h->len[b]);
            }
        }
}

/* Backward with the output gradient dy against dW[i][k F + f] = sum_{b, u} x[b,u]_i
 * dz[b, u-k+pad, f] and db[f] = sum dz, dz = dy (1 - y^2) on valid positions; then the touched
 * rows are exactly the ids of the valid cells. */
static void check_backward(sc *h, const float *dy, const char *what)
{
    ts_err e;
    float *dyb = h->L.out[0].dx;
    memcpy(dyb, dy, sizeof(float) * B * T * F);
    memset(h->Wp->g, 0, sizeof(float) * V * W * F);
    memset(h->bp->g, 0, sizeof(float) * F);
    for (int k = 0; k < h->Wp->ntouched; k++) h->Wp->is_touched[h->Wp->touched[k]] = 0;
    h->Wp->ntouched = 0;
    if (h->ops->backward(&h->L, &e)) fail_msg("%s", e.msg);
    const float *y = h->L.out[0].x;
    static double dW[V * W * F];
    double db[F] = {0}, x[V];
    int used[V] = {0};
    memset(dW, 0, sizeof dW);
    for (int b = 0; b < B; b++)
        for (int u = 0; u < h->len[b]; u++) {
            counts(h, b, u, x);
            for (int i = 0; i < V; i++) used[i] |= x[i] > 0;
            for (int k = 0; k < W; k++) {
                int t = u - k + PAD;
                if (t < 0 || t >= h->len[b]) continue;
                for (int f = 0; f < F; f++) {
                    size_t c = ((size_t)b * T + t) * F + f;
                    double dz = dz_of(h->act, dy[c], y[c]);
                    for (int i = 0; i < V; i++) dW[(size_t)i * W * F + k * F + f] += x[i] * dz;
                }
            }
        }
    for (int b = 0; b < B; b++)
        for (int t = 0; t < h->len[b]; t++)
            for (int f = 0; f < F; f++) {
                size_t c = ((size_t)b * T + t) * F + f;
                db[f] += dz_of(h->act, dy[c], y[c]);
            }
    for (size_t j = 0; j < (size_t)V * W * F; j++)
        if (fabs(h->Wp->g[j] - dW[j]) > 1e-5 + 1e-5 * fabs(dW[j]))
            fail_msg("%s: dW[%zu][%zu] = %.7f, the formula gives %.7f", what, j / (W * F),
                     j % (W * F), h->Wp->g[j], dW[j]);
    for (int f = 0; f < F; f++)
        if (fabs(h->bp->g[f] - db[f]) > 1e-5 + 1e-5 * fabs(db[f]))
            fail_msg("%s: db[%d] = %.7f, the formula gives %.7f", what, f, h->bp->g[f], db[f]);
    for (int i = 0; i < V; i++)
        if (used[i] != h->Wp->is_touched[i])
            fail_msg("%s: row %d is %s touched but %s in a valid word", what, i,
                     h->Wp->is_touched[i] ? "" : "not", used[i] ? "occurs" : "does not occur");
}

static void matches_the_paper(int act)
{
    sc h;
    build_act(&h, act);
    ts_rng r;
    ts_rng_seed(&r, 5);
    float dy[B * T * F];
    for (int round = 0; round < 3; round++) {
        fill_bags(&h, &r);
        check_forward(&h);
        /* a dense gradient on every cell (padded cells too: the layer must ignore them) */
        for (int c = 0; c < B * T * F; c++) dy[c] = (float)ts_rng_normal(&r);
        check_backward(&h, dy, "dense dy");
        /* max pooling's: one nonzero per (row, filter), at a valid position */
        memset(dy, 0, sizeof dy);
        for (int b = 0; b < B; b++)
            for (int f = 0; f < F; f++) {
                int t = (int)(ts_rng_uniform(&r) * h.len[b]) % h.len[b];
                dy[((size_t)b * T + t) * F + f] = (float)ts_rng_normal(&r);
            }
        check_backward(&h, dy, "max-pooling dy");
    }
    release(&h);
}

static void test_matches_the_paper(void **st)
{
    (void)st;
    matches_the_paper(A_TANH);
}

/* relu and none: the other branches of compress (dz = dy where y > 0, and dz = dy) */
static void test_matches_the_paper_relu_none(void **st)
{
    (void)st;
    matches_the_paper(A_RELU);
    matches_the_paper(A_NONE);
}

/* Padded cells are zero after a batch whose rows were longer. */
static void test_padding_zeroed(void **st)
{
    (void)st;
    sc h;
    build(&h);
    ts_rng r;
    ts_rng_seed(&r, 9);
    fill_bags(&h, &r);
    for (int b = 0; b < B; b++) h.len[b] = T;
    check_forward(&h);
    for (int b = 0; b < B; b++) h.len[b] = 1 + b % 2;
    check_forward(&h);   /* checks y = 0 for t >= len */
    release(&h);
}

static void test_refusals(void **st)
{
    (void)st;
    sc h;
    ts_err e;
    ts_tensor f32 = {.dtype = TS_F32, .ndim = 3, .dim = {B, T, 4}};
    assert_int_equal(try_build(&h, "window=3", f32, &e), -1);
    assert_non_null(strstr(e.msg, "use conv1d"));
    release(&h);
    ts_tensor bags = {.dtype = TS_BAGS, .ndim = 2, .dim = {B, T}, .vocab = V};
    assert_int_equal(try_build(&h, "window=4", bags, &e), -1);
    assert_non_null(strstr(e.msg, "odd width"));
    release(&h);
    assert_int_equal(try_build(&h, "init_scale=-1", bags, &e), -1);
    assert_non_null(strstr(e.msg, "init_scale"));
    release(&h);
}

/* An id outside the vocabulary is an error naming the row and step, not a read past the table. */
static void test_bad_id(void **st)
{
    (void)st;
    sc h;
    build(&h);
    ts_rng r;
    ts_rng_seed(&r, 11);
    do fill_bags(&h, &r);
    while (h.off[1] == h.off[0]);   /* row 0, word 0 has an id */
    h.ids[h.off[0]] = V;
    ts_err e;
    assert_int_equal(h.ops->forward(&h.L, TS_TRAIN, &e), -1);
    assert_non_null(strstr(e.msg, "outside the vocabulary"));
    assert_non_null(strstr(e.msg, "row 0 step 0"));
    release(&h);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_matches_the_paper), cmocka_unit_test(test_matches_the_paper_relu_none),
        cmocka_unit_test(test_padding_zeroed),
        cmocka_unit_test(test_refusals), cmocka_unit_test(test_bad_id)};
    return cmocka_run_group_tests(tests, NULL, NULL);
}
