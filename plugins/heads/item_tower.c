/* item_tower.c — the retrieval head's item tower (item_tower.h): item vectors computed from the
 * item's id embedding and its feature bags, so an item with few or no training watches still
 * gets a vector from its genres (cold start), and items that share features share strength.
 *
 *   x_i = [ e_id(i) (E) ; mean_{g in bag_k(i)} T_k[g] (F) for each bag k ]
 *   h_{l+1} = relu(h_l W_l + c_l) for the hidden layers,  v_i = h_{L-1} W_{L-1} + c_{L-1}
 *
 * W_l is (in, out) as in the dense layer. Backward: dW_l += h_l^T dh_{l+1}, dc_l += colsum
 * dh_{l+1}, dh_l = dh_{l+1} W_l^T (times relu' below the top), then dx scattered: the id part
 * into row i of the id table, each bag's part divided by the bag's size into its feature rows.
 * An item with an empty bag gets a zero mean for it. The id table starts at zero, so an item
 * never touched in training is represented by its features alone.
 * Not the scoring and not the loss: plugins/heads/retrieval.c does those over the vectors. */
#include "item_tower.h"

#include <cblas.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* The aux arrays of one bag, checked against the catalogue; where = FILE:LINE for messages. */
static int read_bag(rt_bag *b, ts_ctx *ctx, int items, const char *where, const char *tower,
                    ts_err *e)
{
    char name[3][TS_NAME_MAX + 8];
    const void *p[3];
    long n[3];
    static const char *const sfx[3] = {"off", "ids", "vocab"};
    for (int k = 0; k < 3; k++) {
        snprintf(name[k], sizeof name[k], "%s_%s", b->prefix, sfx[k]);
        if (ts_ctx_aux(ctx, name[k], &p[k], &n[k]) || !p[k])
            return ts_fail(e, "%s: item_tower = %s needs the item feature bag '%s': the dataset's "
                           "aux arrays %s_off, %s_ids and %s_vocab (docs/data.md, \"Aux arrays\"), "
                           "and it offers no %s; use item_tower = id, name a bag it has in "
                           "item_features =, or a dataset with item features", where, tower,
                           b->prefix, b->prefix, b->prefix, b->prefix, name[k]);
    }
    b->off = p[0];
    b->ids = p[1];
    if (n[0] != (long)items + 1)
        return ts_fail(e, "%s: aux %s holds %ld offsets, but the catalogue has %d items (%d "
                       "offsets expected); the dataset's feature bags do not match its items",
                       where, name[0], n[0], items, items + 1);
    if (n[2] != 1 || (b->vocab = *(const long *)p[2]) < 1 || b->vocab > (1L << 30))
        return ts_fail(e, "%s: aux %s must be one long, the number of feature ids (1 .. 2^30)%s",
                       where, name[2], n[2] == 1 ? "" : "; it holds several values");
    if (b->off[0] != 0)
        return ts_fail(e, "%s: aux %s must start at 0, it starts at %d", where, name[0], b->off[0]);
    for (int i = 0; i < items; i++)
        if (b->off[i + 1] < b->off[i])
            return ts_fail(e, "%s: aux %s decreases at item %d (%d then %d); offsets must not "
                           "decrease", where, name[0], i, b->off[i], b->off[i + 1]);
    if ((long)b->off[items] > n[1])
        return ts_fail(e, "%s: aux %s ends at %d but %s holds %ld ids", where, name[0],
                       b->off[items], name[1], n[1]);
    for (int i = 0; i < items; i++)
        for (int32_t k = b->off[i]; k < b->off[i + 1]; k++)
            if (b->ids[k] < 0 || b->ids[k] >= b->vocab)
                return ts_fail(e, "%s: aux %s: item %d has feature id %d, outside [0, %ld) of %s",
                               where, name[1], i, b->ids[k], b->vocab, name[2]);
    return 0;
}

/* item_tower = a list of `id` and `features`; *use_id, *use_f say which. */
static int read_parts(const ts_cfg *cfg, int *use_id, int *use_f, ts_err *e)
{
    char w[4][TS_NAME_MAX];
    int n;
    *use_id = *use_f = 0;
    if (ts_cfg_list(cfg, "item_tower", w, 3, &n, e)) return -1;
    for (int i = 0; i < n; i++) {
        int *flag = !strcmp(w[i], "id") ? use_id : !strcmp(w[i], "features") ? use_f : NULL;
        if (!flag || *flag)
            return ts_fail(e, "%s: item_tower = %s: %s; give id (a free vector per item), "
                           "id,features or features", ts_cfg_where(cfg, "item_tower"),
                           ts_cfg_str(cfg, "item_tower"), flag ? "a word is repeated" :
                           "each word is id or features");
        *flag = 1;
    }
    if (n == 0)
        return ts_fail(e, "%s: item_tower is empty; give id, id,features or features",
                       ts_cfg_where(cfg, "item_tower"));
    return 0;
}

int rt_tower_wanted(const ts_cfg *cfg)
{
    int use_id, use_f;
    ts_err e;
    return read_parts(cfg, &use_id, &use_f, &e) == 0 && use_f;
}

/* The keys that shape a tower over features must not come without features. */
static int keys_without_features(const ts_cfg *cfg, int use_id, long idd, int nf, int nu, long fd,
                                 ts_err *e)
{
    const char *k = nf ? "item_features" : nu ? "item_tower_units" : fd ? "item_feature_dim" :
                    idd ? "item_id_dim" : NULL;
    if (!k) return 0;
    return ts_fail(e, "%s: %s = %s shapes an item tower over item features, but item_tower = %s "
                   "has no features; set item_tower = %s, or remove %s", ts_cfg_where(cfg, k), k,
                   ts_cfg_str(cfg, k), ts_cfg_str(cfg, "item_tower"),
                   use_id ? "id,features" : "features", k);
}

static int alloc_buffers(rt_tower *T, ts_err *e)
{
    for (int l = 0; l <= T->nlayer; l++) {
        size_t n = (size_t)T->maxn * (size_t)T->units[l];
        if (!(T->h[l] = malloc(n * sizeof(float))) || !(T->dh[l] = malloc(n * sizeof(float))))
            return ts_fail(e, "out of memory for the item tower's activations");
    }
    if (!(T->all = malloc((size_t)T->items * sizeof *T->all))) return ts_fail(e, "out of memory");
    for (int i = 0; i < T->items; i++) T->all[i] = i;
    return 0;
}

/* The tables and layers, declared in this order: id, each bag, then W and c per layer. */
static int declare(rt_tower *T, ts_ctx *ctx, int sparse, ts_err *e)
{
    unsigned fl = sparse ? TS_PARAM_SPARSE : 0;
    if (T->E && !(T->id = ts_param_add(ctx, "emb_id", T->items, T->E, TS_INIT_ZEROS, 0, fl, e)))
        return -1;
    for (int k = 0; k < T->nbag; k++) {
        char name[TS_NAME_MAX + 8];
        snprintf(name, sizeof name, "emb_%s", T->bag[k].prefix);
        if (!(T->bag[k].T = ts_param_add(ctx, name, (int)T->bag[k].vocab, T->F, TS_INIT_NORMAL,
                                         1.0f / sqrtf((float)T->F), fl, e))) return -1;
    }
    for (int l = 0; l < T->nlayer; l++) {
        char wn[32], cn[32];
        int last = l == T->nlayer - 1;
        snprintf(wn, sizeof wn, "tower_W%d", l + 1);
        snprintf(cn, sizeof cn, "tower_c%d", l + 1);
        if (!(T->W[l] = ts_param_add(ctx, wn, T->units[l], T->units[l + 1],
                                     last ? TS_INIT_XAVIER : TS_INIT_HE, 0, 0, e)) ||
            !(T->c[l] = ts_param_add(ctx, cn, 1, T->units[l + 1], TS_INIT_ZEROS, 0, 0, e)))
            return -1;
    }
    return 0;
}

/* 0: a tower over features; 1: item_tower = id, no tower (the caller's free vectors); -1: an
 * error. */
static int build_impl(rt_tower *T, ts_ctx *ctx, const ts_cfg *cfg, int sparse, ts_err *e)
{
    char feats[RT_TOWER_MAXBAGS][TS_NAME_MAX], ul[RT_TOWER_MAXLAYERS][TS_NAME_MAX];
    int use_id, use_f, nf, nu;
    long idd, fd;
    if (read_parts(cfg, &use_id, &use_f, e) ||
        ts_cfg_list(cfg, "item_features", feats, RT_TOWER_MAXBAGS, &nf, e) ||
        ts_cfg_int(cfg, "item_id_dim", &idd, e) || ts_cfg_int(cfg, "item_feature_dim", &fd, e) ||
        ts_cfg_list(cfg, "item_tower_units", ul, RT_TOWER_MAXLAYERS - 1, &nu, e)) return -1;
    if (!use_f) return keys_without_features(cfg, use_id, idd, nf, nu, fd, e) ? -1 : 1;
    if (!use_id && idd)
        return ts_fail(e, "%s: item_id_dim = %ld, but item_tower = %s has no id; add id or remove "
                       "item_id_dim", ts_cfg_where(cfg, "item_id_dim"), idd,
                       ts_cfg_str(cfg, "item_tower"));
    if (idd < 0 || idd > 65536 || fd < 0 || fd > 65536)
        return ts_fail(e, "%s: item_id_dim and item_feature_dim must lie in 0..65536 (0 = the user "
                       "vector's width)", ts_cfg_where(cfg, idd < 0 || idd > 65536 ? "item_id_dim" :
                       "item_feature_dim"));
    T->E = use_id ? (int)(idd ? idd : T->D) : 0;
    T->F = (int)(fd ? fd : T->D);
    T->nbag = nf ? nf : 1;
    const char *where = ts_cfg_where(cfg, nf ? "item_features" : "item_tower");
    T->din = T->E;
    for (int k = 0; k < T->nbag; k++) {
        snprintf(T->bag[k].prefix, sizeof T->bag[k].prefix, "%s", nf ? feats[k] : "item_feature");
        for (int j = 0; j < k; j++)
            if (!strcmp(T->bag[j].prefix, T->bag[k].prefix))
                return ts_fail(e, "%s: item_features names %s twice", where, T->bag[k].prefix);
        if (read_bag(&T->bag[k], ctx, T->items, where, ts_cfg_str(cfg, "item_tower"), e)) return -1;
        T->bag[k].col = T->din;
        T->din += T->F;
    }
    T->nlayer = nu + 1;
    T->units[0] = T->din;
    for (int l = 0; l < nu; l++) {
        char *end;
        long u = strtol(ul[l], &end, 10);
        if (*end || u < 1 || u > 65536)
            return ts_fail(e, "%s: item_tower_units = %s: every width must be a whole number in "
                           "1..65536", ts_cfg_where(cfg, "item_tower_units"), ul[l]);
        T->units[l + 1] = (int)u;
    }
    T->units[T->nlayer] = T->D;
    return declare(T, ctx, sparse, e) || alloc_buffers(T, e) ? -1 : 0;
}

int rt_tower_build(rt_tower **out, ts_ctx *ctx, const ts_cfg *cfg, int items, int D, int maxn,
                   int sparse, ts_err *e)
{
    *out = NULL;
    rt_tower *T = calloc(1, sizeof *T);
    if (!T) return ts_fail(e, "out of memory");
    T->items = items;
    T->D = D;
    T->maxn = maxn;
    int rc = build_impl(T, ctx, cfg, sparse, e);
    if (rc) {                                     /* an error, or item_tower = id: no tower */
        rt_tower_free(T);
        return rc < 0 ? -1 : 0;
    }
    *out = T;
    return 0;
}

/* x rows of items[0..n): the id row and each bag's mean. */
static void gather(rt_tower *T, const int32_t *items, int n)
{
    int din = T->din, F = T->F;
    for (int r = 0; r < n; r++) {
        float *x = T->h[0] + (long)r * din;
        int it = items[r];
        if (T->E) memcpy(x, T->id->w + (long)it * T->E, (size_t)T->E * sizeof *x);
        for (int k = 0; k < T->nbag; k++) {
            const rt_bag *b = &T->bag[k];
            float *m = x + b->col;
            int32_t a = b->off[it], z = b->off[it + 1];
            memset(m, 0, (size_t)F * sizeof *m);
            for (int32_t q = a; q < z; q++)
                cblas_saxpy(F, 1.0f, b->T->w + (long)b->ids[q] * F, 1, m, 1);
            if (z > a) cblas_sscal(F, 1.0f / (float)(z - a), m, 1);
        }
    }
}

const float *rt_tower_forward(rt_tower *T, const int32_t *items, int n)
{
    gather(T, items, n);
    for (int l = 0; l < T->nlayer; l++) {
        int in = T->units[l], out = T->units[l + 1];
        float *y = T->h[l + 1];                    /* (n, out) */
        for (int r = 0; r < n; r++) memcpy(y + (long)r * out, T->c[l]->w, (size_t)out * sizeof *y);
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, n, out, in, 1.0f, T->h[l], in,
                    T->W[l]->w, out, 1.0f, y, out);
        if (l < T->nlayer - 1)
            for (long i = 0; i < (long)n * out; i++) y[i] = y[i] > 0 ? y[i] : 0;
    }
    return T->h[T->nlayer];
}

float *rt_tower_dv(rt_tower *T) { return T->dh[T->nlayer]; }

void rt_tower_backward(rt_tower *T, const int32_t *items, int n)
{
    for (int l = T->nlayer - 1; l >= 0; l--) {
        int in = T->units[l], out = T->units[l + 1];
        float *dy = T->dh[l + 1], *dx = T->dh[l];  /* (n, out), (n, in) */
        if (l < T->nlayer - 1)                     /* relu': h > 0 exactly where the input was */
            for (long i = 0; i < (long)n * out; i++) if (!(T->h[l + 1][i] > 0)) dy[i] = 0;
        cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, in, out, n, 1.0f, T->h[l], in, dy,
                    out, 1.0f, T->W[l]->g, out);
        float *dc = T->c[l]->g;
        for (int r = 0; r < n; r++) cblas_saxpy(out, 1.0f, dy + (long)r * out, 1, dc, 1);
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, n, in, out, 1.0f, dy, out,
                    T->W[l]->w, out, 0.0f, dx, in);
    }
    int din = T->din, F = T->F;
    for (int r = 0; r < n; r++) {
        const float *dxr = T->dh[0] + (long)r * din;
        int it = items[r];
        if (T->E) {
            cblas_saxpy(T->E, 1.0f, dxr, 1, T->id->g + (long)it * T->E, 1);
            if (T->id->flags & TS_PARAM_SPARSE) ts_param_touch(T->id, it);
        }
        for (int k = 0; k < T->nbag; k++) {
            const rt_bag *b = &T->bag[k];
            int32_t a = b->off[it], z = b->off[it + 1];
            for (int32_t q = a; q < z; q++) {
                cblas_saxpy(F, 1.0f / (float)(z - a), dxr + b->col, 1, b->T->g + (long)b->ids[q] * F, 1);
                if (b->T->flags & TS_PARAM_SPARSE) ts_param_touch(b->T, b->ids[q]);
            }
        }
    }
}

void rt_tower_catalogue(rt_tower *T, float *V)
{
    for (int i0 = 0; i0 < T->items; i0 += T->maxn) {
        int n = T->items - i0 < T->maxn ? T->items - i0 : T->maxn;
        const float *v = rt_tower_forward(T, T->all + i0, n);
        memcpy(V + (long)i0 * T->D, v, (size_t)n * T->D * sizeof *V);
    }
}

void rt_tower_free(rt_tower *T)
{
    if (!T) return;
    for (int l = 0; l <= RT_TOWER_MAXLAYERS; l++) { free(T->h[l]); free(T->dh[l]); }
    free(T->all);
    free(T);
}
