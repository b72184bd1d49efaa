/* hybrid.c — the scorer of the `hybrid` head: the maths is in hybrid.h.
 *
 * Forward of one pair, x = [cos, f (lexical.h), p (the document row's prior)]:
 *   a_h = b_h + sum_k x_k W[k, h],  t_h = tanh(a_h),  g = u.x + v.t         (R = gamma cos + g)
 * Backward with dR:
 *   du += dR x,  dv += dR t,  da_h = dR v_h (1 - t_h^2),  db += da,  dW[k, h] += x_k da_h,
 *   dx_k = dR u_k + sum_h W[k, h] da_h   (dx_0 goes to the cosine, dx_{1+F+j} to the prior).
 * What it is not: the batch, the loss or the ranking (match.c).
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "hybrid.h"

int hy_build(hy_scorer *h, ts_head *H, const ts_cfg *cfg, long pairs, ts_err *e)
{
    char s1[64], s2[64], names[LX_NKINDS + 1][TS_NAME_MAX];
    if (H->nin < 4 || H->nin > 5 || H->in[2]->dtype != TS_BAGS || H->in[3]->dtype != TS_BAGS ||
        H->in[2]->ndim != 2 || H->in[3]->ndim != 2 || H->in[2]->dim[1] != 1 ||
        H->in[3]->dim[1] != 1)
        return ts_fail(e, "%s: hybrid takes the two tower vectors, the query's and the "
                       "document's word ids (bags (B, 1)) and optionally a document prior "
                       "(B, P): input = q_vec, d_vec, query_words, doc_words[, prior]; got %d "
                       "input(s)%s%s%s%s", ts_cfg_where(cfg, "input"), H->nin,
                       H->nin >= 4 ? ", the third and fourth " : "",
                       H->nin >= 4 ? ts_shape_str(H->in[2], s1, sizeof s1) : "",
                       H->nin >= 4 ? " and " : "",
                       H->nin >= 4 ? ts_shape_str(H->in[3], s2, sizeof s2) : "");
    if (H->in[2]->vocab != H->in[3]->vocab || H->in[2]->vocab <= 0)
        return ts_fail(e, "%s: the query and document word ids must share one vocabulary",
                       ts_cfg_where(cfg, "input"));
    if (H->nin == 5 && (H->in[4]->dtype != TS_F32 || H->in[4]->ndim != 2))
        return ts_fail(e, "%s: the fifth input, the document prior, must be f32 (B, P), got %s",
                       ts_cfg_where(cfg, "input"), ts_shape_str(H->in[4], s1, sizeof s1));
    long units;
    int stats;
    if (ts_cfg_list(cfg, "lexical", names, LX_NKINDS + 1, &h->nf, e) ||
        ts_cfg_int(cfg, "scorer_units", &units, e) || ts_cfg_float(cfg, "k1", &h->k1, e) ||
        ts_cfg_float(cfg, "b", &h->b, e) ||
        ts_cfg_choice(cfg, "stats", "train|uniform", &stats, e))
        return -1;
    int bad = h->nf > LX_NKINDS ? LX_NKINDS : lx_parse(names, h->nf, h->kind);
    if (bad >= 0)
        return ts_fail(e, "%s: lexical = %s: '%s' is unknown or repeated; name each at most "
                       "once among bm25, log_bm25, overlap, idf_overlap, bigram, doc_overlap",
                       ts_cfg_where(cfg, "lexical"), ts_cfg_str(cfg, "lexical"), names[bad]);
    if (units < 0 || units > HY_MAX_UNITS)
        return ts_fail(e, "%s: scorer_units = %ld; use 0 (a linear scorer) .. %d",
                       ts_cfg_where(cfg, "scorer_units"), units, HY_MAX_UNITS);
    if (H->nin == 5 && (H->in[4]->dim[1] < 1 || H->in[4]->dim[1] > HY_MAX_PRIOR))
        return ts_fail(e, "%s: the document prior has %d columns; use 1..%d",
                       ts_cfg_where(cfg, "input"), H->in[4]->dim[1], HY_MAX_PRIOR);
    if (!(h->k1 >= 0) || !(h->b >= 0 && h->b <= 1))
        return ts_fail(e, "%s: BM25 needs k1 >= 0 and 0 <= b <= 1",
                       ts_cfg_where(cfg, h->k1 >= 0 ? "b" : "k1"));
    h->H = (int)units;
    h->P = H->nin == 5 ? H->in[4]->dim[1] : 0;
    h->Dx = 1 + h->nf + h->P;
    h->uniform = stats == 1;
    h->V = H->in[2]->vocab;
    h->nidf = h->uniform ? h->V : lx_vocab(H->ctx, 0);
    if (h->nidf <= 0 || h->nidf > h->V || h->nidf > (1 << 30))
        return ts_fail(e, "%s: stats = train needs the dataset's aux doc_freq over the %lld "
                       "words of the input (textpairs has it); set stats = uniform for data "
                       "without training statistics", ts_cfg_where(cfg, "stats"),
                       (long long)h->V);
    if (!(h->u = ts_param_add(H->ctx, "u", 1, h->Dx, TS_INIT_ZEROS, 0, 0, e))) return -1;
    if (h->H > 0 &&
        (!(h->W = ts_param_add(H->ctx, "W", h->Dx, h->H, TS_INIT_XAVIER, 0, 0, e)) ||
         !(h->bh = ts_param_add(H->ctx, "b", 1, h->H, TS_INIT_ZEROS, 0, 0, e)) ||
         !(h->v = ts_param_add(H->ctx, "v", 1, h->H, TS_INIT_ZEROS, 0, 0, e))))
        return -1;
    if (!(h->idf = ts_param_add(H->ctx, "idf", 1, (int)h->nidf, TS_INIT_ONES, 0, TS_PARAM_FROZEN,
                                e)) ||
        !(h->meta = ts_param_add(H->ctx, "meta", 1, 2, TS_INIT_ONES, 0, TS_PARAM_FROZEN, e)))
        return -1;
    h->cap_pairs = pairs > 0 ? pairs : 1;
    h->slot = malloc((size_t)h->V * sizeof *h->slot);
    h->xbuf = malloc((size_t)h->cap_pairs * h->Dx * sizeof *h->xbuf);
    h->tbuf = malloc((size_t)h->cap_pairs * (h->H ? h->H : 1) * sizeof *h->tbuf);
    if (!h->slot || !h->xbuf || !h->tbuf)
        return ts_fail(e, "%s: out of memory for the scorer's buffers (%ld pairs)",
                       ts_cfg_section(cfg), h->cap_pairs);
    for (int64_t w = 0; w < h->V; w++) h->slot[w] = -1;
    return 0;
}

int hy_init(hy_scorer *h, ts_head *H, ts_err *e)
{
    return lx_fit(H->ctx, h->uniform, h->idf->w, h->nidf, h->meta->w, H->name, e);
}

void hy_free(hy_scorer *h)
{
    free(h->slot); free(h->xbuf); free(h->tbuf);
    free(h->qoff); free(h->doff); free(h->qw); free(h->dw); free(h->prior);
    lx_query_free(&h->q);
    memset(h, 0, sizeof *h);
}

void hy_begin(hy_scorer *h)
{
    h->st = lx_stats_of(h->idf->w, h->nidf, h->meta->w, h->k1, h->b);
}

int hy_query(hy_scorer *h, const int32_t *w, long n)
{
    return lx_query_set(&h->q, &h->st, w, n, h->slot, h->V);
}

void hy_query_end(hy_scorer *h) { lx_query_unset(&h->q, h->slot); }

float hy_pair(hy_scorer *h, float cos, const int32_t *dw, long dn, const float *prior, long pair)
{
    float xs[HY_MAX_DX], f[LX_NKINDS], ts[HY_MAX_UNITS];
    float *x = pair >= 0 ? h->xbuf + (size_t)pair * h->Dx : xs;
    float *t = pair >= 0 ? h->tbuf + (size_t)pair * (h->H ? h->H : 1) : ts;
    lx_pair(&h->q, &h->st, h->slot, h->V, dw, dn, f);
    x[0] = cos;
    for (int k = 0; k < h->nf; k++) x[1 + k] = f[h->kind[k]];
    for (int k = 0; k < h->P; k++) x[1 + h->nf + k] = prior[k];
    double g = 0;
    const float *u = h->u->w;
    for (int k = 0; k < h->Dx; k++) g += (double)u[k] * x[k];
    if (h->H) {
        const float *W = h->W->w, *b = h->bh->w, *v = h->v->w;
        for (int j = 0; j < h->H; j++) {
            double a = b[j];
            for (int k = 0; k < h->Dx; k++) a += (double)x[k] * W[(size_t)k * h->H + j];
            t[j] = tanhf((float)a);
            g += (double)v[j] * t[j];
        }
    }
    return (float)g;
}

float hy_backward(hy_scorer *h, float dR, long pair, float *dprior)
{
    const float *x = h->xbuf + (size_t)pair * h->Dx;
    const float *t = h->tbuf + (size_t)pair * (h->H ? h->H : 1);
    const float *u = h->u->w;
    float *gu = h->u->g;
    float dx[HY_MAX_DX];
    const int Dx = h->Dx;
    for (int k = 0; k < Dx; k++) {
        gu[k] += dR * x[k];
        dx[k] = dR * u[k];
    }
    if (h->H) {
        const float *W = h->W->w, *v = h->v->w;
        float *gW = h->W->g, *gb = h->bh->g, *gv = h->v->g;
        for (int j = 0; j < h->H; j++) {
            float da = dR * v[j] * (1.0f - t[j] * t[j]);
            gv[j] += dR * t[j];
            gb[j] += da;
            for (int k = 0; k < Dx; k++) {
                gW[(size_t)k * h->H + j] += x[k] * da;
                dx[k] += W[(size_t)k * h->H + j] * da;
            }
        }
    }
    for (int k = 0; dprior && k < h->P; k++) dprior[k] += dx[1 + h->nf + k];
    return dx[0];
}

void hy_eval_begin(hy_scorer *h) { h->n = 0; }

static int grow_ids(int32_t **v, long *cap, long need)
{
    if (need <= *cap) return 0;
    long nc = *cap ? *cap : 65536;
    while (nc < need) nc *= 2;
    int32_t *nv = realloc(*v, (size_t)nc * sizeof *nv);
    if (!nv) return -1;
    *v = nv; *cap = nc;
    return 0;
}

int hy_collect(hy_scorer *h, ts_head *H, int B)
{
    const ts_tensor *Q = H->in[2], *D = H->in[3];   /* BAGS (B, 1) */
    if (h->n + B > h->cap) {
        long nc = h->cap ? h->cap * 2 : 4096;
        while (nc < h->n + B) nc *= 2;
        long *qo = realloc(h->qoff, (size_t)(nc + 1) * sizeof *qo); if (qo) h->qoff = qo;
        long *dof = realloc(h->doff, (size_t)(nc + 1) * sizeof *dof); if (dof) h->doff = dof;
        float *pr = h->P ? realloc(h->prior, (size_t)nc * h->P * sizeof *pr) : h->prior;
        if (pr) h->prior = pr;
        if (!qo || !dof || (h->P && !pr)) return -1;
        h->cap = nc;
    }
    if (h->n == 0) h->qoff[0] = h->doff[0] = 0;
    long qn = Q->off[B] - Q->off[0], dn = D->off[B] - D->off[0];
    if (grow_ids(&h->qw, &h->qcap, h->qoff[h->n] + qn + 1) ||
        grow_ids(&h->dw, &h->dcap, h->doff[h->n] + dn + 1))
        return -1;
    for (int i = 0; i < B; i++) {
        long r = h->n + i, qp = h->qoff[r], dp = h->doff[r];
        for (int32_t k = Q->off[i]; k < Q->off[i + 1]; k++) h->qw[qp++] = Q->ids[k];
        for (int32_t k = D->off[i]; k < D->off[i + 1]; k++) h->dw[dp++] = D->ids[k];
        h->qoff[r + 1] = qp;
        h->doff[r + 1] = dp;
        if (h->P) memcpy(h->prior + (size_t)r * h->P, H->in[4]->x + (size_t)i * h->P,
                         (size_t)h->P * sizeof(float));
    }
    h->n += B;
    return 0;
}
