/* retrieval.c — the candidate-generation head of the YouTube DNN (Covington et al., RecSys
 * 2016): next-item prediction as extreme multiclass classification over the whole catalogue.
 *
 *   P(next = i | u) = exp(u.v_i + b_i) / sum_j exp(u.v_j + b_j)      u (B, D) from `input =`
 *
 * Training: softmax = full computes every logit (one sgemm) and the loss plugin's softmax
 * cross-entropy (or a built-in one when `loss =` is absent). softmax = sampled scores the
 * target and J negatives shared by the batch, drawn with replacement from Q (log_uniform,
 * frequency^power or uniform), with the logQ correction z_i -= log(J Q(i)) (Jean et al. 2015,
 * Bengio & Senecal 2008) on the target and the negatives; a negative equal to a row's target
 * (an accidental hit) is masked. Only the touched rows of V and b are updated (sparse).
 * Evaluation: for every row, the scores of ALL items in blocks of `eval_block` items (sgemm),
 * the items the user already watched set to -inf, top-K by ts_topk merged across blocks, the
 * exact rank of the target; recall@K (= hit rate, one target per row), ndcg@K and mrr. A target
 * that is itself among the excluded items counts as a miss.
 * Item vectors: by default v_i is a free vector per item id (V, the YouTube DNN). With
 * `item_tower = id,features` (or `features`) v_i comes from the item tower over the item's id
 * embedding and feature bags (item_tower.c, a two-tower model): training runs the tower over the
 * batch's targets and negatives (or, for softmax = full, the catalogue) and sends the gradients
 * back through it; V is then a frozen copy of the tower's output for every item, refreshed at
 * each evaluation's start and before report(), which the blocked scoring and export read.
 * `rare_below = N` adds the figures over the rows whose target has fewer than N training watches
 * (item_freq): where item features should help most.
 * Not a serving index: report() writes the item vectors for `tessera export`, which also reads
 * the parameters head.TASK.V and head.TASK.b from params.bin by these names (core/export.c). */
#include "tessera.h"
#include "item_tower.h"
#include "../layers/vecmath.h"

#include <cblas.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define RT_MAXK 8
#define RT_MASK (-1e30f)   /* a masked logit: exp() is 0 without the inf - inf of -INFINITY */

typedef struct {
    int items, D, sampled, J, sampler, logq, nk, kmax, k[RT_MAXK], blk, maxb;
    float power;
    ts_param *V, *b;            /* (items, D) output embeddings, (items, 1) biases */
    const ts_tensor *ex;        /* (B, 1) bags of items to exclude at evaluation, or NULL */
    double *cdf;                /* (items) cumulative Q for sampler = frequency */
    float *z, *dz;              /* full: (B, items); sampled: (B, 1 + J) logits and gradient */
    float *zero_lab;            /* (B) label 0 = the target's column of a sampled row */
    int32_t *samp;              /* (J) the shared negatives */
    float *corr;                /* (J) log(J Q(s_j)), 0 without the correction */
    float *Vs, *dVs;            /* (J, D) gathered negative rows and their gradient */
    int32_t *tgt;               /* (B) target items */
    float *S;                   /* (B, blk) one block of evaluation scores */
    float *best_s, *tmp_s, *mrg_s; int32_t *best_i, *tmp_i, *mrg_i;  /* (B, kmax), (kmax), (kmax) */
    int *nbest;                 /* (B) */
    float *st;                  /* (B) the target's score */
    double *lse_m, *lse_s;      /* (B) running log-sum-exp: max and sum of exp(s - max) */
    long *rank;                 /* (B) rank of the target, 0 = still unknown, -1 = excluded */
    int32_t *exs; long excap;   /* excluded ids, sorted per row */
    long *exo, *ptr;            /* (B + 1) row starts in exs, (B) walking pointers */
    double hit[RT_MAXK], ndcg[RT_MAXK], rr, loss; long count;
    rt_tower *tower;            /* the item tower, or NULL: V is a free vector per item */
    int32_t *list;              /* (maxb + J) a tower step's items: the targets, then the negatives */
    const float *freq;          /* (items) the dataset's item_freq, or NULL */
    long rare_below;            /* > 0: figures over the rows whose target has freq < rare_below */
    double rhit[RT_MAXK], rndcg[RT_MAXK], rrr; long rcount;
    /* shard = rows over several ranks (docs/scale.md): V and b hold this rank's rows only, global
     * item g at local row g / nr on rank g % nr */
    int split, nr, rk;
    int32_t *sids;              /* sampled: (J + maxb) the negatives, then the targets */
    float *srow, *sgrad;        /* sampled: (J + maxb, D) their gathered rows, gradient rows */
    float *sb, *sgb;            /* sampled: (J + maxb) their gathered biases, bias gradients */
    float *ua, *zl, *dua;       /* full: (nr maxb, D) every rank's U, (nr maxb, nl) logits, dU */
    int32_t *ta;                /* full: (nr maxb) every rank's targets */
    double *red;                /* (3 nr maxb) per-row maxima, sums, target logits / counts */
    size_t *bytes_of;           /* (nr) */
    int *cnt;                   /* (nr) rows per rank */
    char *topall;               /* eval: (nr, maxb (1 + 2 kmax)) every rank's top-K lists */
} rt_state;

static const ts_key keys[] = {
    {"items", "int", "0", "catalogue size; 0 = from the dataset (aux item_freq, or the exclusion field's vocab)"},
    {"softmax", "choice:full|sampled", "sampled", "full: every item's logit; sampled: target + J shared negatives"},
    {"negatives", "int", "100", "J, negatives per batch for softmax = sampled"},
    {"sampler", "choice:log_uniform|frequency|uniform", "log_uniform", "the proposal Q of the negatives"},
    {"frequency_power", "float", "0.75", "sampler = frequency draws items with Q ~ (count + 1)^power"},
    {"logq_correction", "bool", "true", "subtract log(J Q(i)) from the sampled logits, the target's too"},
    {"exclude_watched", "string", "history", "a bags field of items never to recommend at evaluation; none = keep all"},
    {"k", "list", "10,50,100", "cut-offs K of recall@K and ndcg@K"},
    {"eval_block", "int", "4096", "items scored per sgemm at evaluation"},
    {"item_tower", "list", "id", "what an item's vector is made of: id (a free vector per item), or an "
     "item tower over id,features or features (the dataset's item feature bags, docs/data.md)"},
    {"item_features", "list", "", "aux prefixes of the tower's feature bags (PREFIX_off, PREFIX_ids, "
     "PREFIX_vocab); empty = item_feature"},
    {"item_id_dim", "int", "0", "width of the tower's id embedding; 0 = the user vector's width D"},
    {"item_feature_dim", "int", "0", "width of each feature embedding (mean over the bag); 0 = D"},
    {"item_tower_units", "list", "", "widths of the tower's hidden ReLU layers; empty = one linear "
     "layer from [id; features] to D"},
    {"shard", "choice:none|rows", "none", "rows: split V and b by rows across MPI ranks (item i on "
     "rank i % ranks, as an embedding's shard = rows): sampled softmax gathers the batch's rows, full "
     "softmax and evaluation score each rank's rows and merge; refused with item_tower; one process: "
     "the whole table"},
    {"rare_below", "int", "0", "> 0: also rare_recall@K, rare_ndcg@K, rare_mrr over the rows whose "
     "target has fewer training watches than this (item_freq), and their count rare_targets"},
    {NULL, NULL, NULL, NULL}};

static double log_q(const rt_state *R, int i)
{
    if (R->sampler == 0) return log(log((i + 2.0) / (i + 1.0)) / log(R->items + 1.0));
    if (R->sampler == 1) return log(R->cdf[i] - (i ? R->cdf[i - 1] : 0.0));
    return -log((double)R->items);
}

static int draw(rt_state *R, ts_rng *rng)
{
    double u = ts_rng_uniform(rng);
    long i;
    if (R->sampler == 0) i = (long)floor(exp(u * log(R->items + 1.0))) - 1;   /* inverse CDF */
    else if (R->sampler == 1) {
        long lo = 0, hi = R->items - 1;                  /* first i with cdf[i] > u */
        while (lo < hi) { long m = (lo + hi) / 2; if (R->cdf[m] > u) hi = m; else lo = m + 1; }
        i = lo;
    } else i = (long)ts_rng_below(rng, (uint64_t)R->items);
    return (int)(i < 0 ? 0 : i >= R->items ? R->items - 1 : i);
}

TS_VEC static void scale_row(float *g, float a, int k)
{
    for (int j = 0; j < k; j++) g[j] *= a;
}

/* The built-in softmax cross-entropy (when `loss =` is absent): mean over the n rows of
 * log sum_j exp(z_j - m) - (z_c - m), m = the row max; dz (n, k), zeroed by the caller, gets
 * scale / n * (softmax(z) - onehot(c)). One exp per logit (vecmath.h's), kept in dz between
 * the passes. */
static double softmax_ce(int n, int k, const float *z, const float *y, float *dz, float scale)
{
    double total = 0;
    for (int r = 0; r < n; r++) {
        const float *zr = z + (long)r * k;
        float *g = dz + (long)r * k, m = ts_vec_max(zr, k);
        ts_vec_exp_shift(zr, m, g, k);
        double s = ts_vec_sum_d(g, k);
        int c = (int)y[r];
        total += log(s) + m - zr[c];
        scale_row(g, (float)(scale / n / s), k);
        g[c] -= scale / n;
    }
    return total / n;
}

static int loss_of(ts_head *H, int n, int k, const float *z, const float *y, float *dz, double *loss, ts_err *e)
{
    if (H->loss) return H->loss->eval(H->loss_state, n, k, z, y, NULL, loss, dz, H->grad_scale, e);
    *loss = softmax_ce(n, k, z, y, dz, H->grad_scale);
    return 0;
}

/* The item tower (none for item_tower = id) and the rare-target figures. */
static int build_extras(ts_head *H, rt_state *R, const ts_cfg *cfg, const float *freq, long naux,
                        ts_err *e)
{
    long bl = R->blk < R->items ? R->blk : R->items, tn = R->maxb + R->J;
    if (rt_tower_build(&R->tower, H->ctx, cfg, R->items, R->D,
                       (int)(!R->sampled ? R->items : tn > bl ? tn : bl), R->sampled, e)) return -1;
    if (R->tower && !(R->list = malloc((size_t)tn * sizeof *R->list))) return ts_fail(e, "out of memory");
    if (ts_cfg_int(cfg, "rare_below", &R->rare_below, e)) return -1;
    if (R->rare_below > 0 && (!freq || naux != R->items))
        return ts_fail(e, "%s: rare_below = %ld needs the dataset's item_freq (training watches of "
                       "each of the %d items); remove rare_below", ts_cfg_where(cfg, "rare_below"),
                       R->rare_below, R->items);
    R->freq = freq;
    return 0;
}

static int build_impl(ts_head *H, const ts_cfg *cfg, ts_err *e)
{
    rt_state *R = calloc(1, sizeof *R);
    if (!R) return ts_fail(e, "out of memory");
    H->state = R;
    long items, J, blk;
    double power;
    char kl[RT_MAXK + 1][TS_NAME_MAX];
    if (ts_cfg_int(cfg, "items", &items, e) || ts_cfg_choice(cfg, "softmax", "full|sampled", &R->sampled, e) ||
        ts_cfg_int(cfg, "negatives", &J, e) || ts_cfg_choice(cfg, "sampler", "log_uniform|frequency|uniform",
        &R->sampler, e) || ts_cfg_float(cfg, "frequency_power", &power, e) ||
        ts_cfg_bool(cfg, "logq_correction", &R->logq, e) ||
        ts_cfg_list(cfg, "k", kl, RT_MAXK, &R->nk, e) || ts_cfg_int(cfg, "eval_block", &blk, e)) return -1;
    if (H->nin != 1 || H->in[0]->dtype != TS_F32 || H->in[0]->ndim != 2)
        return ts_fail(e, "%s: the retrieval head takes one (B, D) f32 input, the user vector", ts_cfg_section(cfg));
    if (H->loss && H->loss->label_kind != TS_LABEL_CLASS)
        return ts_fail(e, "%s: the loss must take a class label (loss = softmax_ce)", ts_cfg_section(cfg));
    const char *exn = ts_cfg_str(cfg, "exclude_watched");
    if (exn && strcmp(exn, "none")) {
        R->ex = ts_ctx_field(H->ctx, exn);
        if (R->ex && R->ex->dtype != TS_BAGS)
            return ts_fail(e, "%s: exclude_watched = %s must name a bags field of item ids", ts_cfg_where(cfg, "exclude_watched"), exn);
    }
    const void *aux;
    long naux = 0;
    const float *freq = ts_ctx_aux(H->ctx, "item_freq", &aux, &naux) == 0 ? aux : NULL;
    if (items <= 0) items = freq ? naux : R->ex ? (long)R->ex->vocab : 0;
    if (items <= 0)
        return ts_fail(e, "%s: set items = the catalogue size (the dataset offers no item_freq)", ts_cfg_section(cfg));
    if (J < 1 || blk < 1) return ts_fail(e, "%s: negatives and eval_block must be positive", ts_cfg_section(cfg));
    ts_head_label_classes(H, items);   /* the host checks every label is in [0, items) */
    R->items = (int)items; R->D = H->in[0]->dim[1]; R->J = (int)J; R->blk = (int)blk; R->power = (float)power;
    R->maxb = H->in[0]->dim[0] > ts_ctx_max_batch(H->ctx) ? H->in[0]->dim[0] : ts_ctx_max_batch(H->ctx);
    for (int i = 0; i < R->nk; i++) {
        R->k[i] = atoi(kl[i]);
        if (R->k[i] < 1) return ts_fail(e, "%s: k = %s: every cut-off must be a positive integer", ts_cfg_where(cfg, "k"), kl[i]);
        if (R->k[i] > R->kmax) R->kmax = R->k[i];
    }
    if (R->kmax > R->items) R->kmax = R->items;
    if (R->sampled && R->sampler == 1) {
        if (!freq || naux != items)
            return ts_fail(e, "%s: sampler = frequency needs the dataset's item_freq for %ld items; use log_uniform", ts_cfg_section(cfg), items);
        if (!(R->cdf = malloc((size_t)items * sizeof *R->cdf))) return ts_fail(e, "out of memory");
        double c = 0;
        for (long i = 0; i < items; i++) R->cdf[i] = c += pow(freq[i] + 1.0, power);
        for (long i = 0; i < items; i++) R->cdf[i] /= c;
    }
    unsigned fl = R->sampled ? TS_PARAM_SPARSE : 0;
    int shard;
    if (ts_cfg_choice(cfg, "shard", "none|rows", &shard, e)) return -1;
    if (shard && rt_tower_wanted(cfg))
        return ts_fail(e, "%s: shard = rows with an item tower (item_tower = %s) is not supported: the "
                       "tower computes every item's vector from shared weights, there is no table of "
                       "rows to split; use item_tower = id, or shard = none", ts_cfg_where(cfg, "shard"),
                       ts_cfg_str(cfg, "item_tower"));
    if (shard && !R->sampled && H->loss)
        return ts_fail(e, "%s: softmax = full with shard = rows computes the softmax cross-entropy "
                       "across the ranks itself; remove loss = (the built-in loss is the same "
                       "softmax cross-entropy), or use softmax = sampled", ts_cfg_where(cfg, "shard"));
    R->nr = ts_dist_size(); R->rk = ts_dist_rank();
    R->split = shard && R->nr > 1;   /* one process: the whole table, as shard = none */
    if (R->split) fl |= TS_PARAM_SPARSE | TS_PARAM_SHARDED;
    else { R->nr = 1; R->rk = 0; }
    if (rt_tower_wanted(cfg))   /* V: the tower's output for every item, a frozen copy */
        R->V = ts_param_add(H->ctx, "V", R->items, R->D, TS_INIT_ZEROS, 0, TS_PARAM_FROZEN, e);
    else
        R->V = ts_param_add(H->ctx, "V", R->items, R->D, TS_INIT_NORMAL, 1.0f / sqrtf((float)R->D), fl, e);
    if (!R->V || !(R->b = ts_param_add(H->ctx, "b", R->items, 1, TS_INIT_ZEROS, 0, fl, e))) return -1;
    if (build_extras(H, R, cfg, freq, naux, e)) return -1;
    long B = R->maxb, zc = R->sampled ? 1 + R->J : R->split ? 1 : R->items, kb = R->kmax > 0 ? R->kmax : 1;
    if (R->split) {
        long nl = R->V->rows, NB = (long)R->nr * B, JB = R->J + B;
        R->sids = malloc((size_t)JB * sizeof *R->sids);
        R->sb = malloc((size_t)JB * sizeof *R->sb); R->sgb = malloc((size_t)JB * sizeof *R->sgb);
        R->srow = malloc((size_t)(JB * R->D) * sizeof *R->srow);
        R->sgrad = malloc((size_t)(JB * R->D) * sizeof *R->sgrad);
        R->red = malloc((size_t)(3 * NB) * sizeof *R->red);
        R->bytes_of = malloc((size_t)R->nr * sizeof *R->bytes_of);
        R->cnt = malloc((size_t)R->nr * sizeof *R->cnt);
        R->topall = malloc((size_t)(NB * (1 + 2 * kb)) * 4);
        if (!R->sids || !R->sb || !R->sgb || !R->srow || !R->sgrad || !R->red || !R->bytes_of || !R->cnt ||
            !R->topall) return ts_fail(e, "out of memory");
        if (!R->sampled) {
            R->ua = malloc((size_t)(NB * R->D) * sizeof *R->ua);
            R->dua = malloc((size_t)(NB * R->D) * sizeof *R->dua);
            R->ta = malloc((size_t)NB * sizeof *R->ta);
            R->zl = malloc((size_t)(NB * nl) * sizeof *R->zl);
            if (!R->ua || !R->dua || !R->ta || !R->zl)
                return ts_fail(e, "out of memory for softmax = full over %ld rows x %ld items of this rank; "
                               "use softmax = sampled", NB, nl);
        }
    }
    R->z = malloc((size_t)(B * zc) * sizeof(float)); R->dz = malloc((size_t)(B * zc) * sizeof(float));
    R->zero_lab = calloc((size_t)B, sizeof(float)); R->tgt = malloc((size_t)B * sizeof(int32_t));
    R->samp = malloc((size_t)R->J * sizeof(int32_t)); R->corr = malloc((size_t)R->J * sizeof(float));
    R->Vs = malloc((size_t)R->J * R->D * sizeof(float)); R->dVs = malloc((size_t)R->J * R->D * sizeof(float));
    long bl = R->blk < R->items ? R->blk : R->items;
    R->S = malloc((size_t)(B * bl) * sizeof(float));
    R->best_s = malloc((size_t)(B * kb) * sizeof(float)); R->best_i = malloc((size_t)(B * kb) * sizeof(int32_t));
    R->tmp_s = malloc((size_t)kb * sizeof(float)); R->tmp_i = malloc((size_t)kb * sizeof(int32_t));
    R->mrg_s = malloc((size_t)kb * sizeof(float)); R->mrg_i = malloc((size_t)kb * sizeof(int32_t));
    R->nbest = malloc((size_t)B * sizeof(int)); R->st = malloc((size_t)B * sizeof(float));
    R->lse_m = malloc((size_t)B * sizeof(double)); R->lse_s = malloc((size_t)B * sizeof(double));
    R->rank = malloc((size_t)B * sizeof(long)); R->exo = malloc((size_t)(B + 1) * sizeof(long));
    R->ptr = malloc((size_t)B * sizeof(long));
    if (!R->z || !R->dz || !R->zero_lab || !R->tgt || !R->samp || !R->corr || !R->Vs || !R->dVs || !R->S ||
        !R->best_s || !R->best_i || !R->tmp_s || !R->tmp_i || !R->mrg_s || !R->mrg_i || !R->nbest || !R->st ||
        !R->lse_m || !R->lse_s || !R->rank || !R->exo || !R->ptr) return ts_fail(e, "out of memory");
    return 0;
}

static int targets(ts_head *H, rt_state *R, int B, ts_err *e)
{
    if (!H->label) return ts_fail(e, "head %s: set label = the next-item field (an item index)", H->name);
    for (int r = 0; r < B; r++) {
        float y = H->label->x[r];
        if (!(y >= 0 && y < R->items) || y != (float)(int)y)
            return ts_fail(e, "head %s: label %g of row %d is not an item index in [0, %d); check items =", H->name, y, r, R->items);
        R->tgt[r] = (int)y;
    }
    return 0;
}

/* Full softmax: z = U V^T + b (B, items); dU += dz V, dV += dz^T U, db += colsum dz. */
static int train_full(ts_head *H, rt_state *R, int B, double *loss, ts_err *e)
{
    const float *U = H->in[0]->x;                   /* (B, D) */
    float *V = R->V->w, *z = R->z, *dz = R->dz;     /* (items, D), (B, items) */
    int N = R->items, D = R->D;
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, B, N, D, 1.0f, U, D, V, D, 0.0f, z, N);
    for (int r = 0; r < B; r++) for (int j = 0; j < N; j++) z[(long)r * N + j] += R->b->w[j];
    memset(dz, 0, (size_t)B * N * sizeof *dz);
    if (loss_of(H, B, N, z, H->label->x, dz, loss, e)) return -1;
    if (H->in[0]->dx)
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, B, D, N, 1.0f, dz, N, V, D, 1.0f, H->in[0]->dx, D);
    cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, N, D, B, 1.0f, dz, N, U, D, 1.0f, R->V->g, D);
    for (int r = 0; r < B; r++) for (int j = 0; j < N; j++) R->b->g[j] += dz[(long)r * N + j];
    return 0;
}

/* The J shared negatives of a step and their corrections log(J Q(s_j)) (0 without logQ). */
static void draw_negatives(rt_state *R, ts_rng *rng)
{
    int J = R->J;
    for (int j = 0; j < J; j++) {
        R->samp[j] = draw(R, rng);
        R->corr[j] = R->logq ? (float)(log((double)J) + log_q(R, R->samp[j])) : 0.0f;
    }
}

/* Sampled softmax: row r's logits are [u_r.v_t + b_t, u_r.v_s1 + b_s1, ...] - log(J Q(.)),
 * the target in column 0; the J negatives are shared, so their scores are one sgemm. */
static int train_sampled(ts_head *H, rt_state *R, int B, double *loss, ts_err *e)
{
    const float *U = H->in[0]->x;                   /* (B, D) */
    int J = R->J, D = R->D, C = 1 + J;
    float *V = R->V->w, *bw = R->b->w, *z = R->z, *dz = R->dz;   /* z, dz (B, 1 + J) */
    draw_negatives(R, ts_ctx_rng(H->ctx));          /* new negatives every step */
    for (int j = 0; j < J; j++) memcpy(R->Vs + (long)j * D, V + (long)R->samp[j] * D, (size_t)D * sizeof(float));
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, B, J, D, 1.0f, U, D, R->Vs, D, 0.0f, z + 1, C);
    for (int r = 0; r < B; r++) {
        int t = R->tgt[r];
        float *zr = z + (long)r * C;
        zr[0] = cblas_sdot(D, U + (long)r * D, 1, V + (long)t * D, 1) + bw[t] -
                (R->logq ? (float)(log((double)J) + log_q(R, t)) : 0.0f);
        for (int j = 0; j < J; j++) zr[1 + j] = R->samp[j] == t ? RT_MASK : zr[1 + j] + bw[R->samp[j]] - R->corr[j];
    }
    memset(dz, 0, (size_t)B * C * sizeof *dz);
    if (loss_of(H, B, C, z, R->zero_lab, dz, loss, e)) return -1;
    for (int r = 0; r < B; r++)                     /* an accidental hit gets no gradient */
        for (int j = 0; j < J; j++) if (R->samp[j] == R->tgt[r]) dz[(long)r * C + 1 + j] = 0;
    if (H->in[0]->dx) {
        float *dx = H->in[0]->dx;                   /* (B, D) */
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, B, D, J, 1.0f, dz + 1, C, R->Vs, D, 1.0f, dx, D);
        for (int r = 0; r < B; r++) cblas_saxpy(D, dz[(long)r * C], V + (long)R->tgt[r] * D, 1, dx + (long)r * D, 1);
    }
    cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, J, D, B, 1.0f, dz + 1, C, U, D, 0.0f, R->dVs, D);
    for (int j = 0; j < J; j++) {
        int s = R->samp[j];
        cblas_saxpy(D, 1.0f, R->dVs + (long)j * D, 1, R->V->g + (long)s * D, 1);
        float gb = 0;
        for (int r = 0; r < B; r++) gb += dz[(long)r * C + 1 + j];
        R->b->g[s] += gb;
        ts_param_touch(R->V, s); ts_param_touch(R->b, s);
    }
    for (int r = 0; r < B; r++) {
        int t = R->tgt[r];
        cblas_saxpy(D, dz[(long)r * C], U + (long)r * D, 1, R->V->g + (long)t * D, 1);
        R->b->g[t] += dz[(long)r * C];
        ts_param_touch(R->V, t); ts_param_touch(R->b, t);
    }
    return 0;
}

/* ---- shard = rows over several ranks: V and b hold this rank's rows (item g: local row g / nr
 * on rank g % nr). docs/scale.md, "The retrieval head's item table". */

/* Sampled softmax, split: rank 0 draws the J negatives from its generator (seeded as one
 * process's) and broadcasts them, so every rank scores the negatives one process would draw;
 * the rows of the negatives and of this rank's targets are gathered from their owners, and their
 * gradient rows scattered back (weighted there by this rank's share of the global batch, as an
 * embedding's are). The logits, the loss and dU are train_sampled's. */
/* The sampled logits' loss and gradient dz (B, 1 + J), an accidental hit's masked, and the
 * user vectors' gradient dU += dz_neg Vs + dz_target Vt (Vs (J, D) the negatives' rows, Vt
 * (B, D) the targets'). */
static int sampled_grad(ts_head *H, rt_state *R, int B, const float *z, float *dz,
                        const float *Vs, const float *Vt, double *loss, ts_err *e)
{
    int J = R->J, C = 1 + J, D = R->D;
    memset(dz, 0, (size_t)B * C * sizeof *dz);
    if (loss_of(H, B, C, z, R->zero_lab, dz, loss, e)) return -1;
    for (int r = 0; r < B; r++)                     /* an accidental hit gets no gradient */
        for (int j = 0; j < J; j++) if (R->samp[j] == R->tgt[r]) dz[(long)r * C + 1 + j] = 0;
    if (H->in[0]->dx) {
        float *dx = H->in[0]->dx;                   /* (B, D) */
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, B, D, J, 1.0f, dz + 1, C, Vs, D, 1.0f, dx, D);
        for (int r = 0; r < B; r++) cblas_saxpy(D, dz[(long)r * C], Vt + (long)r * D, 1, dx + (long)r * D, 1);
    }
    return 0;
}

static int train_sampled_split(ts_head *H, rt_state *R, int B, double *loss, ts_err *e)
{
    const float *U = H->in[0]->x;                   /* (B, D) */
    int J = R->J, D = R->D, C = 1 + J, n = J + B;
    float *z = R->z, *dz = R->dz;                   /* (B, 1 + J) */
    if (R->rk == 0) draw_negatives(R, ts_ctx_rng(H->ctx));
    if (ts_dist_bcast(R->samp, (size_t)J * sizeof *R->samp, e)) return -1;
    for (int j = 0; j < J; j++)
        R->corr[j] = R->logq ? (float)(log((double)J) + log_q(R, R->samp[j])) : 0.0f;
    memcpy(R->sids, R->samp, (size_t)J * sizeof *R->sids);          /* negatives, then targets */
    memcpy(R->sids + J, R->tgt, (size_t)B * sizeof *R->sids);
    if (ts_param_shard_gather(R->V, R->sids, n, R->srow, e) ||
        ts_param_shard_gather(R->b, R->sids, n, R->sb, e)) return -1;
    const float *Vs = R->srow, *Vt = R->srow + (long)J * D, *bs = R->sb, *bt = R->sb + J;
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, B, J, D, 1.0f, U, D, Vs, D, 0.0f, z + 1, C);
    for (int r = 0; r < B; r++) {
        int t = R->tgt[r];
        float *zr = z + (long)r * C;
        zr[0] = cblas_sdot(D, U + (long)r * D, 1, Vt + (long)r * D, 1) + bt[r] -
                (R->logq ? (float)(log((double)J) + log_q(R, t)) : 0.0f);
        for (int j = 0; j < J; j++) zr[1 + j] = R->samp[j] == t ? RT_MASK : zr[1 + j] + bs[j] - R->corr[j];
    }
    if (sampled_grad(H, R, B, z, dz, Vs, Vt, loss, e)) return -1;
    float *gs = R->sgrad, *gt = R->sgrad + (long)J * D;   /* (J, D) negatives', (B, D) targets' */
    cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, J, D, B, 1.0f, dz + 1, C, U, D, 0.0f, gs, D);
    for (int j = 0; j < J; j++) {
        float gb = 0;
        for (int r = 0; r < B; r++) gb += dz[(long)r * C + 1 + j];
        R->sgb[j] = gb;
    }
    for (int r = 0; r < B; r++) {
        float g = dz[(long)r * C];
        for (int k = 0; k < D; k++) gt[(long)r * D + k] = g * U[(long)r * D + k];
        R->sgb[J + r] = g;
    }
    if (ts_param_shard_scatter(R->V, R->sids, n, R->sgrad, e) ||
        ts_param_shard_scatter(R->b, R->sids, n, R->sgb, e)) return -1;
    return 0;
}

/* Every rank's row counts (cnt), their sum and where this rank's rows start in it. */
static int rows_of_ranks(rt_state *R, int B, long *total, long *first, ts_err *e)
{
    if (ts_dist_allgather(&B, sizeof B, R->cnt, e)) return -1;
    *total = *first = 0;
    for (int k = 0; k < R->nr; k++) {
        if (k == R->rk) *first = *total;
        *total += R->cnt[k];
    }
    if (*total > (long)R->nr * R->maxb)
        return ts_fail(e, "retrieval: %ld rows over the ranks exceed the %d x %d the head holds", *total,
                       R->nr, R->maxb);
    return 0;
}

/* Full softmax, split: every rank's U and targets are gathered (the global batch, in rank order);
 * each rank computes the logits of its items for all of them, the row maxima (max over the ranks)
 * and sums of exp (summed over the ranks) give the softmax, as softmax_ce computes it: the same
 * float maximum, one expf per logit, the gradient scale / Bg * (softmax - onehot). This rank's
 * rows of V and b get their whole gradient here (every local row is touched; the host does not
 * weight a split table again); dU of all rows is summed over the ranks and this rank keeps its
 * rows, multiplied by Bg / B: the host weights a rank's dense gradients by B / Bg. */
static int train_full_split(ts_head *H, rt_state *R, int B, double *loss, ts_err *e)
{
    const float *U = H->in[0]->x;                   /* (B, D) */
    int D = R->D, nl = R->V->rows;
    long Bg, first;
    if (rows_of_ranks(R, B, &Bg, &first, e)) return -1;
    for (int k = 0; k < R->nr; k++) R->bytes_of[k] = (size_t)R->cnt[k] * D * sizeof(float);
    if (ts_dist_allgatherv(U, (size_t)B * D * sizeof(float), R->ua, R->bytes_of, e)) return -1;
    for (int k = 0; k < R->nr; k++) R->bytes_of[k] = (size_t)R->cnt[k] * sizeof(int32_t);
    if (ts_dist_allgatherv(R->tgt, (size_t)B * sizeof(int32_t), R->ta, R->bytes_of, e)) return -1;
    float *z = R->zl;                                 /* (Bg, nl) */
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (int)Bg, nl, D, 1.0f, R->ua, D, R->V->w, D, 0.0f, z, nl);
    double *mx = R->red, *sum = R->red + Bg, *zt = R->red + 2 * Bg;
    for (long r = 0; r < Bg; r++) {
        float *zr = z + r * nl, m = -INFINITY;
        for (int j = 0; j < nl; j++) { zr[j] += R->b->w[j]; m = zr[j] > m ? zr[j] : m; }
        mx[r] = m;
    }
    if (ts_dist_max(mx, (int)Bg, e)) return -1;
    for (long r = 0; r < Bg; r++) {
        float *zr = z + r * nl, m = (float)mx[r];
        int t = R->ta[r];
        zt[r] = t % R->nr == R->rk ? (double)zr[t / R->nr] - m : 0.0;     /* z_t - m, on its owner */
        double s = 0;
        for (int j = 0; j < nl; j++) s += zr[j] = expf(zr[j] - m);   /* z now holds exp(z - m) */
        sum[r] = s;
    }
    if (ts_dist_sum(sum, (int)(2 * Bg), e)) return -1;
    double mine = 0;
    float gs = H->grad_scale;
    for (long r = 0; r < Bg; r++) {
        double lr = log(sum[r]) - zt[r];
        if (r >= first && r < first + B) mine += lr;
        float *g = z + r * nl, a = (float)(gs / Bg / sum[r]);
        for (int j = 0; j < nl; j++) g[j] *= a;
        int t = R->ta[r];
        if (t % R->nr == R->rk) g[t / R->nr] -= gs / Bg;
    }
    *loss = B ? mine / B : 0;
    cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, nl, D, (int)Bg, 1.0f, z, nl, R->ua, D, 1.0f, R->V->g, D);
    for (long r = 0; r < Bg; r++) for (int j = 0; j < nl; j++) R->b->g[j] += z[r * nl + j];
    for (int j = 0; j < nl; j++) { ts_param_touch(R->V, j); ts_param_touch(R->b, j); }
    if (H->in[0]->dx) {
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, (int)Bg, D, nl, 1.0f, z, nl, R->V->w, D, 0.0f,
                    R->dua, D);
        if (ts_dist_sum_floats(R->dua, (size_t)Bg * D, e)) return -1;
        float w = (float)((double)Bg / (B ? B : 1));
        float *dx = H->in[0]->dx;
        for (long i = 0; i < (long)B * D; i++) dx[i] += w * R->dua[first * D + i];
    }
    return 0;
}

/* Sampled softmax over the item tower: one tower pass gives the targets' vectors (rows 0..B)
 * and the negatives' (rows B..B + J); the logits, the loss and dU are those of train_sampled,
 * and the vectors' gradients go back through the tower. */
static int train_tower_sampled(ts_head *H, rt_state *R, int B, double *loss, ts_err *e)
{
    const float *U = H->in[0]->x;                   /* (B, D) */
    int J = R->J, D = R->D, C = 1 + J;
    float *bw = R->b->w, *z = R->z, *dz = R->dz;    /* z, dz (B, 1 + J) */
    draw_negatives(R, ts_ctx_rng(H->ctx));
    memcpy(R->list, R->tgt, (size_t)B * sizeof *R->list);
    memcpy(R->list + B, R->samp, (size_t)J * sizeof *R->list);
    const float *Vt = rt_tower_forward(R->tower, R->list, B + J), *Vs = Vt + (long)B * D;
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, B, J, D, 1.0f, U, D, Vs, D, 0.0f, z + 1, C);
    for (int r = 0; r < B; r++) {
        int t = R->tgt[r];
        float *zr = z + (long)r * C;
        zr[0] = cblas_sdot(D, U + (long)r * D, 1, Vt + (long)r * D, 1) + bw[t] -
                (R->logq ? (float)(log((double)J) + log_q(R, t)) : 0.0f);
        for (int j = 0; j < J; j++) zr[1 + j] = R->samp[j] == t ? RT_MASK : zr[1 + j] + bw[R->samp[j]] - R->corr[j];
    }
    if (sampled_grad(H, R, B, z, dz, Vs, Vt, loss, e)) return -1;
    float *dv = rt_tower_dv(R->tower);              /* (B + J, D) */
    for (int r = 0; r < B; r++) {
        float *d = dv + (long)r * D, g = dz[(long)r * C];
        for (int k = 0; k < D; k++) d[k] = g * U[(long)r * D + k];
        R->b->g[R->tgt[r]] += g;
        ts_param_touch(R->b, R->tgt[r]);
    }
    cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, J, D, B, 1.0f, dz + 1, C, U, D, 0.0f, dv + (long)B * D, D);
    for (int j = 0; j < J; j++) {
        float gb = 0;
        for (int r = 0; r < B; r++) gb += dz[(long)r * C + 1 + j];
        R->b->g[R->samp[j]] += gb;
        ts_param_touch(R->b, R->samp[j]);
    }
    rt_tower_backward(R->tower, R->list, B + J);
    return 0;
}

/* Full softmax over the item tower: the tower over the whole catalogue every step, then the
 * logits of train_full, and dV = dz^T U back through the tower. */
static int train_tower_full(ts_head *H, rt_state *R, int B, double *loss, ts_err *e)
{
    const float *U = H->in[0]->x;                   /* (B, D) */
    int N = R->items, D = R->D;
    float *z = R->z, *dz = R->dz;                   /* (B, items) */
    const float *V = rt_tower_forward(R->tower, R->tower->all, N);   /* (items, D) */
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, B, N, D, 1.0f, U, D, V, D, 0.0f, z, N);
    for (int r = 0; r < B; r++) for (int j = 0; j < N; j++) z[(long)r * N + j] += R->b->w[j];
    memset(dz, 0, (size_t)B * N * sizeof *dz);
    if (loss_of(H, B, N, z, H->label->x, dz, loss, e)) return -1;
    if (H->in[0]->dx)
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, B, D, N, 1.0f, dz, N, V, D, 1.0f, H->in[0]->dx, D);
    cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, N, D, B, 1.0f, dz, N, U, D, 0.0f, rt_tower_dv(R->tower), D);
    for (int r = 0; r < B; r++) for (int j = 0; j < N; j++) R->b->g[j] += dz[(long)r * N + j];
    rt_tower_backward(R->tower, R->tower->all, N);
    return 0;
}

static int cmp_i32(const void *a, const void *b)
{
    int32_t x = *(const int32_t *)a, y = *(const int32_t *)b;
    return (x > y) - (x < y);
}

/* Scores of local rows [j0, j0 + nb) for every row into S (B, nb): s = U V[j0 .. j0 + nb)^T + b.
 * In one process (or shard = none) local rows are the items. */
static void score_block(rt_state *R, const float *U, int B, int j0, int nb)
{
    float *S = R->S;                                /* (B, nb) */
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, B, nb, R->D, 1.0f, U, R->D, R->V->w + (long)j0 * R->D,
                R->D, 0.0f, S, nb);
    const float *bw = R->b->w + j0;
    for (int r = 0; r < B; r++) {
        float *s = S + (long)r * nb;
        for (int j = 0; j < nb; j++) s[j] += bw[j];
    }
}

/* Sets the excluded items of the block of local rows [j0, j0 + nb) to -inf; ptr[r] walks row r's
 * sorted list (global ids; item g is local row g / nr of rank g % nr) across blocks. */
static void exclude_block(rt_state *R, int B, int j0, int nb, long *ptr)
{
    long end = (long)(j0 + nb) * R->nr;             /* every global id of a local row below j0 + nb */
    for (int r = 0; r < B; r++) {
        if (ptr[r] < 0) continue;
        float *s = R->S + (long)r * nb;
        while (ptr[r] < R->exo[r + 1] && R->exs[ptr[r]] < end) {
            int32_t it = R->exs[ptr[r]++];
            if (it % R->nr == R->rk && it / R->nr >= j0) s[it / R->nr - j0] = -INFINITY;
        }
    }
}

/* a before b in a top-K list: the higher score, on a tie the lower item id (as ts_topk). */
static int ahead(float as, int32_t ai, float bs, int32_t bi) { return as > bs || (as == bs && ai < bi); }

/* Merges row r's running top list with a block's (both best first; the block's ids are all
 * larger, so on a tie the running entry stays ahead, as in ts_topk). */
static void merge_top(rt_state *R, int r, const float *bs, const int32_t *bi, int m)
{
    float *as = R->best_s + (long)r * R->kmax;
    int32_t *ai = R->best_i + (long)r * R->kmax;
    int na = R->nbest[r], i = 0, j = 0, o = 0;
    while (o < R->kmax && (i < na || j < m)) {
        if (j >= m || (i < na && as[i] >= bs[j])) { R->mrg_s[o] = as[i]; R->mrg_i[o++] = ai[i++]; }
        else { R->mrg_s[o] = bs[j]; R->mrg_i[o++] = bi[j++]; }
    }
    memcpy(as, R->mrg_s, (size_t)o * sizeof *as);
    memcpy(ai, R->mrg_i, (size_t)o * sizeof *ai);
    R->nbest[r] = o;
}

/* Split: every rank's (running maximum, sum) of the log-sum-exp, the target's score (from its
 * owner) and top-K lists are combined over the ranks; afterwards every rank holds what one
 * process would (the lists exactly; the log-sum-exp to rounding: its sums are added in another
 * order). */
static int merge_ranks(rt_state *R, int B, ts_err *e)
{
    int kb = R->kmax > 0 ? R->kmax : 1, nr = R->nr;
    double *m = R->red, *v = R->red + B;            /* (B) maxima, (2B) sums and target scores */
    for (int r = 0; r < B; r++) m[r] = R->lse_m[r];
    if (ts_dist_max(m, B, e)) return -1;
    for (int r = 0; r < B; r++) {
        v[r] = R->lse_s[r] * exp(R->lse_m[r] - m[r]);
        v[B + r] = R->tgt[r] % nr == R->rk ? R->st[r] : 0.0;
    }
    if (ts_dist_sum(v, 2 * B, e)) return -1;
    for (int r = 0; r < B; r++) { R->lse_m[r] = m[r]; R->lse_s[r] = v[r]; R->st[r] = (float)v[B + r]; }
    if (R->kmax <= 0) return 0;
    size_t per = (size_t)B * (1 + 2 * kb) * 4;     /* nbest (B), scores (B, kb), ids (B, kb) */
    char *mine = R->topall + (size_t)R->rk * per;   /* gathered in place below */
    int32_t *nb = (int32_t *)mine;
    float *sc = (float *)(mine + (size_t)B * 4);
    int32_t *id = (int32_t *)(mine + (size_t)B * (1 + kb) * 4);
    for (int r = 0; r < B; r++) {
        nb[r] = R->nbest[r];
        memcpy(sc + (long)r * kb, R->best_s + (long)r * R->kmax, (size_t)R->nbest[r] * 4);
        memcpy(id + (long)r * kb, R->best_i + (long)r * R->kmax, (size_t)R->nbest[r] * 4);
    }
    char *tmp = malloc(per);
    if (!tmp) return ts_fail(e, "out of memory");
    memcpy(tmp, mine, per);
    int rc = ts_dist_allgather(tmp, per, R->topall, e);
    free(tmp);
    if (rc) return -1;
    for (int r = 0; r < B; r++) {                   /* an nr-way merge of the ranks' lists */
        int *pos = R->cnt, o = 0;                   /* (nr) the next entry of each rank's list */
        memset(pos, 0, (size_t)nr * sizeof *pos);
        while (o < R->kmax) {
            int best = -1;
            float bs = 0; int32_t bi = 0;
            for (int k = 0; k < nr; k++) {
                const char *blk = R->topall + (size_t)k * per;
                if (pos[k] >= ((const int32_t *)blk)[r]) continue;
                float s = ((const float *)(blk + (size_t)B * 4))[(long)r * kb + pos[k]];
                int32_t i = ((const int32_t *)(blk + (size_t)B * (1 + kb) * 4))[(long)r * kb + pos[k]];
                if (best < 0 || ahead(s, i, bs, bi)) { best = k; bs = s; bi = i; }
            }
            if (best < 0) break;
            pos[best]++;
            R->best_s[(long)r * R->kmax + o] = bs; R->best_i[(long)r * R->kmax + o++] = bi;
        }
        R->nbest[r] = o;
    }
    return 0;
}

/* Every row against the whole catalogue: full-softmax loss, top-K, the target's exact rank.
 * Split (shard = rows over several ranks; every rank evaluates the same batch): each rank scores
 * only its rows in blocks and keeps its top-K; merge_ranks combines them, and the target's rank
 * past the top-K list is the sum over the ranks of their counts. */
static int eval_batch(ts_head *H, rt_state *R, int B, double *loss, ts_err *e)
{
    const float *U = H->in[0]->x;                   /* (B, D) */
    const int nr = R->nr, rk = R->rk, nl = R->V->rows;   /* one process: nr 1, nl items */
    long tot = 0;
    R->exo[0] = 0;
    for (int r = 0; r < B; r++) {
        if (R->ex) tot += R->ex->off[r + 1] - R->ex->off[r];
        R->exo[r + 1] = tot;
    }
    if (tot > R->excap) {
        int32_t *g = realloc(R->exs, (size_t)tot * sizeof *g);
        if (!g) return ts_fail(e, "out of memory");
        R->exs = g; R->excap = tot;
    }
    for (int r = 0; r < B; r++) {
        long n = R->exo[r + 1] - R->exo[r];
        R->rank[r] = 0;
        if (n) {
            int32_t *x = R->exs + R->exo[r];
            memcpy(x, R->ex->ids + R->ex->off[r], (size_t)n * sizeof *x);
            qsort(x, (size_t)n, sizeof *x, cmp_i32);
            if (bsearch(&R->tgt[r], x, (size_t)n, sizeof *x, cmp_i32)) R->rank[r] = -1;
        }
        R->nbest[r] = 0; R->lse_m[r] = -INFINITY; R->lse_s[r] = 0; R->ptr[r] = R->exo[r];
        R->st[r] = 0;
    }
    for (int j0 = 0; j0 < nl; j0 += R->blk) {
        int nb = nl - j0 < R->blk ? nl - j0 : R->blk;
        score_block(R, U, B, j0, nb);
        for (int r = 0; r < B; r++) {
            const float *s = R->S + (long)r * nb;
            float m = -INFINITY;
            for (int j = 0; j < nb; j++) m = s[j] > m ? s[j] : m;
            double nm = m > R->lse_m[r] ? m : R->lse_m[r], acc = 0;
            for (int j = 0; j < nb; j++) acc += expf(s[j] - (float)nm);
            R->lse_s[r] = R->lse_s[r] * exp(R->lse_m[r] - nm) + acc;
            R->lse_m[r] = nm;
            int t = R->tgt[r];
            if (t % nr == rk && t / nr >= j0 && t / nr < j0 + nb) R->st[r] = s[t / nr - j0];
        }
        exclude_block(R, B, j0, nb, R->ptr);
        for (int r = 0; r < B && R->kmax > 0; r++) {
            const float *s = R->S + (long)r * nb;
            int m = ts_topk(s, nb, R->kmax, R->tmp_i);
            for (int q = 0; q < m; q++) { R->tmp_s[q] = s[R->tmp_i[q]]; R->tmp_i[q] = (R->tmp_i[q] + j0) * nr + rk; }
            merge_top(R, r, R->tmp_s, R->tmp_i, m);
        }
    }
    if (R->split && merge_ranks(R, B, e)) return -1;
    int need = 0;
    for (int r = 0; r < B; r++) {
        if (R->st[r] != R->st[r]) R->rank[r] = -1;  /* a NaN score ranks nowhere */
        for (int q = 0; q < R->nbest[r] && R->rank[r] == 0; q++)
            if (R->best_i[(long)r * R->kmax + q] == R->tgt[r]) R->rank[r] = q + 1;
        if (R->rank[r] == 0) { need = 1; R->rank[r] = 1; R->ptr[r] = R->exo[r]; }
        else R->ptr[r] = -1;
    }
    /* Past the top-K list: rank = 1 + #{s_j > s_t} + #{j < t: s_j = s_t}, over a second pass of
     * the same sgemm (same shapes and inputs give bit-identical scores); split, each rank counts
     * its items and the counts are summed. (need is alike on every rank: the lists are.) */
    double *cnt = R->red;                           /* (B) this rank's counts, split */
    for (int r = 0; r < B && R->split; r++) cnt[r] = 0;
    for (int j0 = 0; need && j0 < nl; j0 += R->blk) {
        int nb = nl - j0 < R->blk ? nl - j0 : R->blk;
        score_block(R, U, B, j0, nb);
        exclude_block(R, B, j0, nb, R->ptr);
        for (int r = 0; r < B; r++) {
            if (R->ptr[r] < 0) continue;
            const float *s = R->S + (long)r * nb;
            float st = R->st[r];
            long c = 0;
            int t = R->tgt[r];                      /* items below the target win ties */
            if (nr == 1) {
                int tl = t - j0;
                for (int j = 0; j < nb; j++) c += s[j] > st || (s[j] == st && j < tl);
            } else {
                for (int j = 0; j < nb; j++) c += s[j] > st || (s[j] == st && (long)(j0 + j) * nr + rk < t);
            }
            if (R->split) cnt[r] += c; else R->rank[r] += c;
        }
    }
    if (R->split && need) {
        if (ts_dist_sum(cnt, B, e)) return -1;
        for (int r = 0; r < B; r++) if (R->ptr[r] >= 0) R->rank[r] += (long)cnt[r];
    }
    double ls = 0;
    for (int r = 0; r < B; r++) {
        ls += log(R->lse_s[r]) + R->lse_m[r] - R->st[r];
        long k = R->rank[r];
        int rare = R->rare_below > 0 && R->freq[R->tgt[r]] < (float)R->rare_below;
        R->rcount += rare;
        if (k < 1) continue;                        /* excluded target: a miss everywhere */
        R->rr += 1.0 / k;
        for (int q = 0; q < R->nk; q++)
            if (k <= R->k[q]) { R->hit[q] += 1; R->ndcg[q] += 1.0 / log2(k + 1.0); }
        if (!rare) continue;
        R->rrr += 1.0 / k;
        for (int q = 0; q < R->nk; q++)
            if (k <= R->k[q]) { R->rhit[q] += 1; R->rndcg[q] += 1.0 / log2(k + 1.0); }
    }
    R->loss += ls;
    R->count += B;
    *loss = ls / B;
    return 0;
}

static int forward(ts_head *H, ts_phase phase, double *loss, ts_err *e)
{
    rt_state *R = H->state;
    int B = H->in[0]->dim[0];
    *loss = 0;
    if (B <= 0) return 0;
    if (targets(H, R, B, e)) return -1;
    if (phase != TS_TRAIN) return eval_batch(H, R, B, loss, e);
    if (R->tower) return R->sampled ? train_tower_sampled(H, R, B, loss, e) : train_tower_full(H, R, B, loss, e);
    if (R->split) return R->sampled ? train_sampled_split(H, R, B, loss, e) : train_full_split(H, R, B, loss, e);
    return R->sampled ? train_sampled(H, R, B, loss, e) : train_full(H, R, B, loss, e);
}

static int eval_begin(ts_head *H, ts_phase phase, ts_err *e)
{
    rt_state *R = H->state;
    memset(R->hit, 0, sizeof R->hit); memset(R->ndcg, 0, sizeof R->ndcg);
    R->rr = R->loss = 0; R->count = 0;
    memset(R->rhit, 0, sizeof R->rhit); memset(R->rndcg, 0, sizeof R->rndcg);
    R->rrr = 0; R->rcount = 0;
    if (R->tower) rt_tower_catalogue(R->tower, R->V->w);   /* once per evaluation */
    return 0;
}

static int eval_end(ts_head *H, ts_phase phase, ts_err *e)
{
    rt_state *R = H->state;
    if (R->count == 0) return ts_fail(e, "head %s: no example was evaluated", H->name);
    char name[32];
    for (int q = 0; q < R->nk; q++) {
        snprintf(name, sizeof name, "recall@%d", R->k[q]);
        ts_metric(H->ctx, H->name, name, R->hit[q] / R->count);
    }
    for (int q = 0; q < R->nk; q++) {
        snprintf(name, sizeof name, "ndcg@%d", R->k[q]);
        ts_metric(H->ctx, H->name, name, R->ndcg[q] / R->count);
    }
    ts_metric(H->ctx, H->name, "mrr", R->rr / R->count);
    ts_metric(H->ctx, H->name, "full_softmax_loss", R->loss / R->count);
    if (R->rare_below > 0) {   /* NaN when no target of the split is rare */
        double n = R->rcount ? (double)R->rcount : NAN;
        for (int q = 0; q < R->nk; q++) {
            snprintf(name, sizeof name, "rare_recall@%d", R->k[q]);
            ts_metric(H->ctx, H->name, name, R->rhit[q] / n);
        }
        for (int q = 0; q < R->nk; q++) {
            snprintf(name, sizeof name, "rare_ndcg@%d", R->k[q]);
            ts_metric(H->ctx, H->name, name, R->rndcg[q] / n);
        }
        ts_metric(H->ctx, H->name, "rare_mrr", R->rrr / n);
        ts_metric(H->ctx, H->name, "rare_targets", (double)R->rcount);
    }
    return 0;
}

/* item_vectors.txt: "index<TAB>raw_id<TAB>bias<TAB>v_1 ... v_D<TAB>title" after a '#' header;
 * item_vectors.bin: "TSIV", uint32 version 1, int32 items, int32 D, then V (items, D) and
 * b (items) as little-endian float32: what `tessera export` / `recommend` read. */
static int report(ts_head *H, const char *dir, ts_err *e)
{
    rt_state *R = H->state;
    const void *p;
    long n;
    if (R->split) return 0;   /* V holds this rank's rows only: no item_vectors (docs/scale.md) */
    if (R->tower) rt_tower_catalogue(R->tower, R->V->w);   /* the vectors the weights give now */
    const char *const *title = ts_ctx_aux(H->ctx, "item_title", &p, &n) == 0 && n == R->items ? p : NULL;
    const int32_t *raw = ts_ctx_aux(H->ctx, "item_raw_id", &p, &n) == 0 && n == R->items ? p : NULL;
    char path[4096];
    snprintf(path, sizeof path, "%s/item_vectors.txt", dir);
    FILE *f = fopen(path, "w");
    if (!f) return ts_fail(e, "cannot write %s: check the results folder", path);
    fprintf(f, "# tessera retrieval head %s: items=%d dim=%d; index raw_id bias v_1..v_%d title\n", H->name, R->items, R->D, R->D);
    for (int i = 0; i < R->items; i++) {
        fprintf(f, "%d\t%d\t%.7g\t", i, raw ? raw[i] : i, R->b->w[i]);
        for (int d = 0; d < R->D; d++) fprintf(f, d ? " %.7g" : "%.7g", R->V->w[(long)i * R->D + d]);
        fprintf(f, "\t%s\n", title && title[i] ? title[i] : "");
    }
    int bad = fclose(f) != 0;
    snprintf(path, sizeof path, "%s/item_vectors.bin", dir);
    if (bad || !(f = fopen(path, "wb"))) return ts_fail(e, "cannot write %s: check the results folder and disk space", path);
    uint32_t hdr[4] = {0x56495354u /* "TSIV" */, 1, (uint32_t)R->items, (uint32_t)R->D};
    bad = fwrite(hdr, sizeof hdr, 1, f) != 1 || fwrite(R->V->w, sizeof(float), (size_t)R->items * R->D, f) != (size_t)R->items * R->D ||
          fwrite(R->b->w, sizeof(float), (size_t)R->items, f) != (size_t)R->items;
    if (fclose(f) || bad) return ts_fail(e, "cannot write %s: check disk space", path);
    return 0;
}

static void destroy(ts_head *H)
{
    rt_state *R = H->state;
    if (!R) return;
    void *bufs[] = {R->cdf, R->z, R->dz, R->zero_lab, R->samp, R->corr, R->Vs, R->dVs, R->tgt, R->S, R->best_s,
        R->tmp_s, R->mrg_s, R->best_i, R->tmp_i, R->mrg_i, R->nbest, R->st, R->lse_m, R->lse_s, R->rank, R->exs,
        R->exo, R->ptr, R->list, R->sids, R->srow, R->sgrad, R->sb, R->sgb, R->ua, R->zl, R->dua, R->ta, R->red,
        R->bytes_of, R->cnt, R->topall};
    for (size_t i = 0; i < sizeof bufs / sizeof *bufs; i++) free(bufs[i]);
    rt_tower_free(R->tower);
    free(R);
    H->state = NULL;
}

/* A build that fails frees what it allocated itself (tessera.h): destroy() takes a partial
 * state. */
static int build(ts_head *H, const ts_cfg *cfg, ts_err *e)
{
    if (build_impl(H, cfg, e) == 0) return 0;
    destroy(H);
    return -1;
}

static const ts_head_ops ops = {.size = sizeof(ts_head_ops),
    .build = build, .forward = forward, .eval_begin = eval_begin,
    .eval_end = eval_end, .destroy = destroy, .report = report, .check_inputs = "f32 5 4",
    .check_label = "class 7", .check_keys = "items=7 softmax=sampled negatives=6 k=1,3"};
static const ts_plugin plugin = {TS_ABI, sizeof(ts_plugin), TS_HEAD, "retrieval", "1.0",
    "YouTube DNN candidate generation: full or sampled softmax over items, recall@K / ndcg@K / mrr", keys, &ops};
const ts_plugin *tessera_plugin_entry(uint32_t i) { return i == 0 ? &plugin : NULL; }
