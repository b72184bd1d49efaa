/* cosine.c — the cosine similarity of two (B, E) inputs, row by row: (B, E), (B, E) -> (B, 1).
 *
 * What it is for: the relevance score of DSSM-style two-tower models as a building block (a head
 * that wants a scaled cosine over many candidates, like `match`, computes its own).
 *   c = a.b / (na nb),  na = sqrt(|a|^2 + eps), nb = sqrt(|b|^2 + eps)
 * The eps inside the square root keeps c finite (and exactly differentiable) for zero vectors:
 *   dc/da = b / (na nb) - c a / na^2,   dc/db = a / (na nb) - c b / nb^2.
 * What it is not: a distance, nor a similarity against every other row of the batch.
 */
#include <math.h>
#include <stdlib.h>

#include "tessera.h"

typedef struct {
    double eps;        /* added to the squared norms */
    float *na, *nb;    /* (Bmax) the norms of the last forward */
} cos_state;

static const ts_key keys[] = {
    {"eps", "float", "1e-8", "added to squared norms so that zero vectors give 0, not NaN"},
    {NULL, NULL, NULL, NULL}};

static int build_impl(ts_layer *L, const ts_cfg *cfg, ts_err *e)
{
    char s1[64], s2[64];
    if (L->nin != 2)
        return ts_fail(e, "%s: cosine takes two inputs (B, E) and (B, E), got %d; set input = A, B",
                       ts_cfg_where(cfg, "input"), L->nin);
    const ts_tensor *a = L->in[0], *b = L->in[1];
    if (a->dtype != TS_F32 || b->dtype != TS_F32 || a->ndim != 2 || b->ndim != 2 ||
        a->dim[1] != b->dim[1])
        return ts_fail(e, "%s: cosine needs two f32 inputs of the same shape (B, E), got %s and %s",
                       ts_cfg_where(cfg, "input"), ts_shape_str(a, s1, sizeof s1),
                       ts_shape_str(b, s2, sizeof s2));
    cos_state *s = calloc(1, sizeof *s);
    if (!s) return ts_fail(e, "cosine: out of memory");
    L->state = s;
    if (ts_cfg_float(cfg, "eps", &s->eps, e)) return -1;
    if (!(s->eps > 0)) return ts_fail(e, "%s: eps must be > 0", ts_cfg_where(cfg, "eps"));
    s->na = malloc((size_t)a->dim[0] * sizeof(float));
    s->nb = malloc((size_t)a->dim[0] * sizeof(float));
    if (!s->na || !s->nb) return ts_fail(e, "cosine: out of memory");
    ts_tensor *out = &L->out[0];
    out->dtype = TS_F32;
    out->ndim = 2;
    out->dim[0] = a->dim[0];
    out->dim[1] = 1;
    return 0;
}

static int forward(ts_layer *L, ts_phase phase, ts_err *e)
{
    (void)phase; (void)e;
    cos_state *s = L->state;
    const int B = L->in[0]->dim[0], E = L->in[0]->dim[1];
    const float *a = L->in[0]->x, *b = L->in[1]->x;  /* (B, E) each */
    float *c = L->out[0].x;                            /* (B, 1) */
    for (int r = 0; r < B; r++) {
        const float *ar = a + (size_t)r * E, *br = b + (size_t)r * E;
        double ab = 0, aa = 0, bb = 0;
        for (int j = 0; j < E; j++) {
            ab += (double)ar[j] * br[j];
            aa += (double)ar[j] * ar[j];
            bb += (double)br[j] * br[j];
        }
        s->na[r] = (float)sqrt(aa + s->eps);
        s->nb[r] = (float)sqrt(bb + s->eps);
        c[r] = (float)(ab / ((double)s->na[r] * s->nb[r]));
    }
    return 0;
}

static int backward(ts_layer *L, ts_err *e)
{
    (void)e;
    cos_state *s = L->state;
    const ts_tensor *A = L->in[0], *Bt = L->in[1];
    const float *dc = L->out[0].dx, *c = L->out[0].x;  /* (B, 1) */
    if (!dc) return 0;
    const int B = A->dim[0], E = A->dim[1];
    for (int r = 0; r < B; r++) {
        const float *ar = A->x + (size_t)r * E, *br = Bt->x + (size_t)r * E;
        float na = s->na[r], nb = s->nb[r], g = dc[r];
        float inv = g / (na * nb);
        if (A->dx) {
            float ka = g * c[r] / (na * na);
            float *d = A->dx + (size_t)r * E;
            for (int j = 0; j < E; j++) d[j] += inv * br[j] - ka * ar[j];
        }
        if (Bt->dx) {
            float kb = g * c[r] / (nb * nb);
            float *d = Bt->dx + (size_t)r * E;
            for (int j = 0; j < E; j++) d[j] += inv * ar[j] - kb * br[j];
        }
    }
    return 0;
}

static void destroy(ts_layer *L)
{
    cos_state *s = L->state;
    if (!s) return;
    free(s->na);
    free(s->nb);
    free(s);
    L->state = NULL;
}


/* A failed build frees what it allocated: the host calls destroy only after a build succeeded. */
static int build(ts_layer *L, const ts_cfg *cfg, ts_err *e)
{
    if (build_impl(L, cfg, e) == 0) return 0;
    destroy(L);
    return -1;
}
static const ts_layer_ops ops = {
    .size = sizeof(ts_layer_ops),
    .build = build, .forward = forward, .backward = backward, .destroy = destroy,
    .check_inputs = "f32 5 4; f32 5 4", .check_keys = "", .concurrency = TS_REPLICA_SAFE | TS_BRANCH_SAFE};
static const ts_plugin plugin = {
    TS_ABI, sizeof(ts_plugin), TS_LAYER, "cosine", "1.0",
    "row-wise cosine similarity of two (B,E) inputs -> (B,1), eps-safe", keys, &ops};

const ts_plugin *tessera_plugin_entry(uint32_t i) { return i == 0 ? &plugin : NULL; }
