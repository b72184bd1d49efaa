/* bm25.c — the BM25 baseline as a head: no loss, no parameters, the match head's ranking.
 *
 * What it is for: putting a lexical baseline beside the learned matching models in the same run,
 * with the same candidates and the same metric code (ranking.h). Inputs: the word-id bags of the
 * query and of the document (BAGS (B, 1), e.g. query_words, doc_words). Over the evaluated split:
 *   score(q, d) = sum_{w in q, distinct} idf(w) tf (k1+1) / (tf + k1 (1 - b + b |d|/avgdl)),
 *   tf = tf(w, d)
 *   idf(w) = ln(1 + (N - df(w) + 0.5) / (df(w) + 0.5))       (Lucene's non-negative form)
 * computed by lexical.h (the `lexical` layer and the match head's hybrid scorer use the same
 * code), with avgdl the mean length of the split's distinct documents (avgdl = split) or of the
 * training documents (avgdl = train: aux "doc_length_mean"), and N, df from the dataset's
 * training documents (idf = train: aux "doc_count", "doc_freq") or from the split's own distinct
 * documents (idf = eval). rank = all ranks every query against every distinct document through
 * an inverted index; rank = group against its own candidates. scorer = file_order instead scores
 * a group's candidates by their position in the file (earlier is better), the WikiQA positional
 * baseline. Metrics land under the head's section name ([head.bm25] -> test.bm25.mrr); every
 * row's own pair score is handed out (predictions) in split order.
 * What it is not: a trainable model (training batches pass through untouched), nor a tokenizer.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tessera.h"
#include "lexical.h"
#include "ranking.h"

typedef struct {
    double k1, b;
    int all_mode, idf_train, file_order, avgdl_train;
    char group_field[TS_NAME_MAX], doc_field[TS_NAME_MAX];
    int64_t vocab;            /* word ids lie in [0, vocab) */
    long n, cap;              /* rows collected */
    int32_t *qid, *doc;       /* (cap) */
    float *label;             /* (cap) */
    long *qoff, *doff;        /* (cap + 1) into qw, dw */
    int32_t *qw, *dw;         /* (qcap), (dcap) word ids of every collected row */
    long qcap, dcap;
    float *ps;                /* (n) the last evaluation's pair scores, for predictions */
} bm25_state;

static const ts_key keys[] = {
    {"k1", "float", "1.2", "term-frequency saturation"},
    {"b", "float", "0.75", "document-length normalisation"},
    {"idf", "choice:train|eval", "train",
     "document frequencies from the training documents or from the evaluated split's"},
    {"rank", "choice:all|group", "all",
     "all: every query against every distinct document; group: against its own candidates"},
    {"scorer", "choice:bm25|file_order", "bm25",
     "file_order: a group's candidates in file order (the positional baseline)"},
    {"avgdl", "choice:split|train", "split",
     "mean document length of the evaluated split's distinct documents, or of the training "
     "documents (the dataset's aux doc_length_mean)"},
    {"group_field", "string", "qid", "dataset field with the query group id"},
    {"doc_field", "string", "doc_id", "dataset field with the distinct document id"},
    {NULL, NULL, NULL, NULL}};

static int build_impl(ts_head *H, const ts_cfg *cfg, ts_err *e)
{
    char s1[64], s2[64];
    if (H->nin != 2 || H->in[0]->dtype != TS_BAGS || H->in[1]->dtype != TS_BAGS)
        return ts_fail(e, "%s: bm25 takes two bags inputs, the query's and the document's word ids "
                       "(input = query_words, doc_words), got %d input(s)%s%s%s",
                       ts_cfg_where(cfg, "input"), H->nin, H->nin == 2 ? ": " : "",
                       H->nin == 2 ? ts_shape_str(H->in[0], s1, sizeof s1) : "",
                       H->nin == 2 ? ts_shape_str(H->in[1], s2, sizeof s2) : "");
    if (H->in[0]->vocab != H->in[1]->vocab || H->in[0]->vocab <= 0)
        return ts_fail(e, "%s: the query and document word ids must share one vocabulary",
                       ts_cfg_where(cfg, "input"));
    bm25_state *s = calloc(1, sizeof *s);
    if (!s) return ts_fail(e, "bm25: out of memory");
    H->state = s;
    int idf, rank, scorer, avgdl;
    if (ts_cfg_float(cfg, "k1", &s->k1, e) || ts_cfg_float(cfg, "b", &s->b, e) ||
        ts_cfg_choice(cfg, "idf", "train|eval", &idf, e) ||
        ts_cfg_choice(cfg, "rank", "all|group", &rank, e) ||
        ts_cfg_choice(cfg, "scorer", "bm25|file_order", &scorer, e) ||
        ts_cfg_choice(cfg, "avgdl", "split|train", &avgdl, e))
        return -1;
    if (!(s->k1 >= 0) || !(s->b >= 0 && s->b <= 1))
        return ts_fail(e, "%s: BM25 needs k1 >= 0 and 0 <= b <= 1",
                       ts_cfg_where(cfg, s->k1 >= 0 ? "b" : "k1"));
    s->idf_train = idf == 0;
    s->all_mode = rank == 0;
    s->file_order = scorer == 1;
    s->avgdl_train = avgdl == 1;
    if (s->file_order && s->all_mode)
        return ts_fail(e, "%s: scorer = file_order orders a group's own candidates; set "
                       "rank = group", ts_cfg_where(cfg, "scorer"));
    s->vocab = H->in[0]->vocab;
    snprintf(s->group_field, sizeof s->group_field, "%s", ts_cfg_str(cfg, "group_field"));
    snprintf(s->doc_field, sizeof s->doc_field, "%s", ts_cfg_str(cfg, "doc_field"));
    return 0;
}

static int eval_begin(ts_head *H, ts_phase phase, ts_err *e)
{
    (void)phase; (void)e;
    bm25_state *s = H->state;
    s->n = 0;
    return 0;
}

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

static int forward(ts_head *H, ts_phase phase, double *loss, ts_err *e)
{
    bm25_state *s = H->state;
    *loss = 0;
    if (phase == TS_TRAIN) return 0;
    const ts_tensor *Q = H->in[0], *D = H->in[1];
    const int B = Q->dim[0], Tq = Q->dim[1], Td = D->dim[1];
    const ts_tensor *gq = ts_ctx_field(H->ctx, s->group_field);
    const ts_tensor *gd = ts_ctx_field(H->ctx, s->doc_field);
    if (s->n + B > s->cap) {
        long nc = s->cap ? s->cap * 2 : 4096;
        while (nc < s->n + B) nc *= 2;
        int32_t *a = realloc(s->qid, (size_t)nc * sizeof *a); if (a) s->qid = a;
        int32_t *c = realloc(s->doc, (size_t)nc * sizeof *c); if (c) s->doc = c;
        float *l = realloc(s->label, (size_t)nc * sizeof *l); if (l) s->label = l;
        long *qo = realloc(s->qoff, (size_t)(nc + 1) * sizeof *qo); if (qo) s->qoff = qo;
        long *dof = realloc(s->doff, (size_t)(nc + 1) * sizeof *dof); if (dof) s->doff = dof;
        if (!a || !c || !l || !qo || !dof)
            return ts_fail(e, "bm25: out of memory while collecting the evaluation");
        s->cap = nc;
    }
    if (s->n == 0) s->qoff[0] = s->doff[0] = 0;
    long qn = Q->off[(long)B * Tq] - Q->off[0], dn = D->off[(long)B * Td] - D->off[0];
    if (grow_ids(&s->qw, &s->qcap, s->qoff[s->n] + qn) ||
        grow_ids(&s->dw, &s->dcap, s->doff[s->n] + dn))
        return ts_fail(e, "bm25: out of memory while collecting the evaluation");
    for (int i = 0; i < B; i++) {
        long r = s->n + i, qp = s->qoff[r], dp = s->doff[r];
        for (int32_t k = Q->off[(long)i * Tq]; k < Q->off[(long)(i + 1) * Tq]; k++)
            s->qw[qp++] = Q->ids[k];
        for (int32_t k = D->off[(long)i * Td]; k < D->off[(long)(i + 1) * Td]; k++)
            s->dw[dp++] = D->ids[k];
        s->qoff[r + 1] = qp;
        s->doff[r + 1] = dp;
        s->qid[r] = gq ? gq->ids[i] : (int32_t)r;
        s->doc[r] = gd ? gd->ids[i] : (int32_t)r;
        s->label[r] = H->label ? H->label->x[i] : 1.0f;
    }
    s->n += B;
    return 0;
}

/* BM25 of row r's query against row r's document (lexical.h); q and slot are scratch. */
static float pair_score(const bm25_state *s, const lx_stats *st, lx_query *q, int32_t *slot,
                        long r)
{
    float f[LX_NKINDS];
    lx_query_set(q, st, s->qw + s->qoff[r], s->qoff[r + 1] - s->qoff[r], slot, s->vocab);
    lx_pair(q, st, slot, s->vocab, s->dw + s->doff[r], s->doff[r + 1] - s->doff[r], f);
    lx_query_unset(q, slot);
    return f[LX_BM25];
}

/* Ranks every query of the split against every distinct document through an inverted index
 * of the documents: postings (document, tf) per word, CSR in post_off (V + 1). */
static int rank_all(const bm25_state *s, const rk_groups *g, const float *idf, double avgdl,
                    rk_acc *acc, ts_err *e)
{
    const int64_t V = s->vocab;
    long nd = g->nd, npost = s->n ? s->doff[s->n] : 0;
    long *post_off = calloc((size_t)V + 1, sizeof *post_off);
    int32_t *post_doc = malloc(((size_t)npost + 1) * sizeof *post_doc);
    int32_t *post_tf = malloc(((size_t)npost + 1) * sizeof *post_tf);
    int32_t *stamp = malloc((size_t)V * sizeof *stamp);
    float *sc = malloc(((size_t)nd + 1) * sizeof *sc);
    uint32_t *tie = malloc(((size_t)nd + 1) * sizeof *tie);
    long *rel = malloc(((size_t)nd + 1) * sizeof *rel);
    long *ranks = malloc(((size_t)nd + 1) * sizeof *ranks);
    int rc = 0;
    if (!post_off || !post_doc || !post_tf || !stamp || !sc || !tie || !rel || !ranks) {
        rc = ts_fail(e, "bm25: out of memory while ranking %ld documents", nd);
        goto done;
    }
    for (int64_t w = 0; w < V; w++) stamp[w] = -1;
    for (long c = 0; c < nd; c++) {  /* count the postings of each word */
        long r = g->doc_row[c];
        for (long k = s->doff[r]; k < s->doff[r + 1]; k++) {
            int32_t w = s->dw[k];
            if (stamp[w] != (int32_t)c) { stamp[w] = (int32_t)c; post_off[w + 1]++; }
        }
    }
    for (int64_t w = 0; w < V; w++) post_off[w + 1] += post_off[w];
    for (int64_t w = 0; w < V; w++) stamp[w] = -1;
    for (long c = 0; c < nd; c++) {  /* fill them; post_off[w] walks to the start of w + 1 */
        long r = g->doc_row[c];
        for (long k = s->doff[r]; k < s->doff[r + 1]; k++) {
            int32_t w = s->dw[k];
            if (stamp[w] == (int32_t)c) { post_tf[post_off[w] - 1]++; continue; }
            stamp[w] = (int32_t)c;
            post_doc[post_off[w]] = (int32_t)c;
            post_tf[post_off[w]++] = 1;
        }
    }
    for (int64_t w = V; w > 0; w--) post_off[w] = post_off[w - 1];
    post_off[0] = 0;
    for (int64_t w = 0; w < V; w++) stamp[w] = -1;
    for (long c = 0; c < nd; c++) tie[c] = rk_tie(s->doc[g->doc_row[c]]);
    for (long q = 0; q < g->nq; q++) {
        const long *rows = g->order + g->qstart[q];
        long m = g->qstart[q + 1] - g->qstart[q], R = 0, r0 = rows[0];
        memset(sc, 0, (size_t)nd * sizeof *sc);
        for (long k = s->qoff[r0]; k < s->qoff[r0 + 1]; k++) {
            int32_t w = s->qw[k];
            if (w < 0 || w >= V || stamp[w] == (int32_t)q) continue;  /* distinct query words */
            stamp[w] = (int32_t)q;
            for (long p = post_off[w]; p < post_off[w + 1]; p++) {
                long c = post_doc[p], dr = g->doc_row[c];
                double dl = (double)(s->doff[dr + 1] - s->doff[dr]);
                sc[c] += lx_term_weight(s->k1, s->b, idf[w], post_tf[p], dl, avgdl);
            }
        }
        for (long k = 0; k < m; k++)
            if (s->label[rows[k]] > 0.5f) {
                long c = g->cand[rows[k]], dup = 0;
                for (long t = 0; t < R; t++) dup |= rel[t] == c;
                if (!dup) rel[R++] = c;
            }
        rk_add(acc, sc, tie, nd, rel, R, ranks);
    }
done:
    free(post_off); free(post_doc); free(post_tf); free(stamp); free(sc); free(tie); free(rel);
    free(ranks);
    return rc;
}

/* Ranks each query's own rows by their pair scores ps (group mode), and reports their AUC. */
static int rank_groups(bm25_state *s, ts_head *H, const rk_groups *g, const float *ps,
                       rk_acc *acc, ts_err *e)
{
    long maxm = 1;
    for (long q = 0; q < g->nq; q++)
        if (g->qstart[q + 1] - g->qstart[q] > maxm) maxm = g->qstart[q + 1] - g->qstart[q];
    float *sc = malloc((size_t)maxm * sizeof *sc);
    uint32_t *tie = malloc((size_t)maxm * sizeof *tie);
    long *rel = malloc((size_t)maxm * sizeof *rel), *ranks = malloc((size_t)maxm * sizeof *ranks);
    if (!sc || !tie || !rel || !ranks) {
        free(sc); free(tie); free(rel); free(ranks);
        return ts_fail(e, "bm25: out of memory while ranking");
    }
    for (long q = 0; q < g->nq; q++) {
        const long *rows = g->order + g->qstart[q];
        long m = g->qstart[q + 1] - g->qstart[q], R = 0;
        for (long k = 0; k < m; k++) {
            sc[k] = ps[rows[k]];
            tie[k] = rk_tie(s->doc[rows[k]]);
            if (s->label[rows[k]] > 0.5f) rel[R++] = k;
        }
        rk_add(acc, sc, tie, m, rel, R, ranks);
    }
    ts_metric(H->ctx, H->name, "auc", ts_auc(ps, s->label, NULL, s->n));
    free(sc); free(tie); free(rel); free(ranks);
    return 0;
}

static int eval_end(ts_head *H, ts_phase phase, ts_err *e)
{
    (void)phase;
    bm25_state *s = H->state;
    const int64_t V = s->vocab;
    rk_groups g;
    if (rk_groups_make(&g, s->qid, s->doc, s->n))
        return ts_fail(e, "bm25: out of memory while ranking");
    float *idf = malloc((size_t)V * sizeof *idf);
    float *ps = realloc(s->ps, ((size_t)s->n + 1) * sizeof *ps);
    if (ps) s->ps = ps;
    int32_t *stamp = malloc((size_t)V * sizeof *stamp), *df = calloc((size_t)V, sizeof *df);
    lx_query lq = {0};
    int rc = 0;
    if (!idf || !ps || !stamp || !df) {
        rc = ts_fail(e, "bm25: out of memory while ranking %ld documents", g.nd);
        goto done;
    }
    /* avgdl and the split's own df over its distinct documents */
    double avgdl = 0;
    for (int64_t w = 0; w < V; w++) stamp[w] = -1;
    for (long c = 0; c < g.nd; c++) {
        long r = g.doc_row[c];
        avgdl += (double)(s->doff[r + 1] - s->doff[r]);
        for (long k = s->doff[r]; k < s->doff[r + 1]; k++) {
            int32_t w = s->dw[k];
            if (w < 0 || w >= V) {
                rc = ts_fail(e, "bm25: word id %d outside [0, %lld)", w, (long long)V);
                goto done;
            }
            if (stamp[w] != (int32_t)c) { stamp[w] = (int32_t)c; df[w]++; }
        }
    }
    avgdl = g.nd > 0 && avgdl > 0 ? avgdl / (double)g.nd : 1.0;
    const void *p_df = NULL, *p_n = NULL, *p_l = NULL;
    long n_df = 0, n_n = 0, n_l = 0;
    int from_train = s->idf_train && ts_ctx_aux(H->ctx, "doc_freq", &p_df, &n_df) == 0 &&
                     ts_ctx_aux(H->ctx, "doc_count", &p_n, &n_n) == 0 && n_df == V && n_n == 1;
    if (s->idf_train && !from_train) {
        rc = ts_fail(e, "bm25 %s: idf = train needs the dataset's aux arrays doc_freq and "
                     "doc_count (textpairs has them); set idf = eval for another dataset", H->name);
        goto done;
    }
    if (s->avgdl_train) {
        if (ts_ctx_aux(H->ctx, "doc_length_mean", &p_l, &n_l) || n_l != 1) {
            rc = ts_fail(e, "bm25 %s: avgdl = train needs the dataset's aux doc_length_mean "
                         "(textpairs has it); set avgdl = split for another dataset", H->name);
            goto done;
        }
        avgdl = *(const double *)p_l > 0 ? *(const double *)p_l : 1.0;
    }
    double N = from_train ? (double)*(const int32_t *)p_n : (double)g.nd;
    for (int64_t w = 0; w < V; w++)
        idf[w] = (float)lx_idf(N, from_train ? (double)((const int32_t *)p_df)[w] : (double)df[w]);
    lx_stats st = {idf, V, (float)lx_idf(N, 0.0), avgdl, s->k1, s->b};
    for (int64_t w = 0; w < V; w++) stamp[w] = -1;   /* now the query's slot map */
    for (long q = 0; q < g.nq; q++)
        for (long k = g.qstart[q]; k < g.qstart[q + 1]; k++) {
            long r = g.order[k];
            if (s->file_order) ps[r] = (float)-(k - g.qstart[q]);
            else if (lx_query_reserve(&lq, s->qoff[r + 1] - s->qoff[r] + 1)) {
                rc = ts_fail(e, "bm25: out of memory while scoring");
                goto done;
            } else ps[r] = pair_score(s, &st, &lq, stamp, r);
        }
    rk_acc acc = {0};
    if (s->all_mode) rc = rank_all(s, &g, idf, avgdl, &acc, e);
    else rc = rank_groups(s, H, &g, ps, &acc, e);
    if (!rc) rk_report(H->ctx, H->name, &acc);
done:
    free(idf); free(stamp); free(df);
    lx_query_free(&lq);
    rk_groups_free(&g);
    return rc;
}

/* The last evaluation's pair scores (BM25 of each row's own pair, or the file-order score) and
 * labels, in the order of the split's rows. */
static int predictions(ts_head *H, const float **score, const float **label, long *n)
{
    bm25_state *s = H->state;
    if (!s || !s->ps) return -1;
    *score = s->ps;
    *label = s->label;
    *n = s->n;
    return 0;
}

static void destroy(ts_head *H)
{
    bm25_state *s = H->state;
    if (!s) return;
    free(s->qid); free(s->doc); free(s->label); free(s->qoff); free(s->doff);
    free(s->qw); free(s->dw); free(s->ps);
    free(s);
    H->state = NULL;
}


/* A failed build frees what it allocated: the host calls destroy only after a build succeeded. */
static int build(ts_head *H, const ts_cfg *cfg, ts_err *e)
{
    if (build_impl(H, cfg, e) == 0) return 0;
    destroy(H);
    return -1;
}
static const ts_head_ops ops = {
    .size = sizeof(ts_head_ops),
    .build = build, .forward = forward, .eval_begin = eval_begin, .eval_end = eval_end,
    .destroy = destroy, .predictions = predictions,
    .check_inputs = "bags 6 1 vocab=12; bags 6 1 vocab=12",
    .check_label = "binary",
    .check_keys = "idf=eval rank=group"};
static const ts_plugin plugin = {
    TS_ABI, sizeof(ts_plugin), TS_HEAD, "bm25", "1.0",
    "BM25 lexical baseline (no training): ranks like the match head, MRR/MAP/NDCG/Recall", keys,
    &ops};

const ts_plugin *tessera_plugin_entry(uint32_t i) { return i == 0 ? &plugin : NULL; }
