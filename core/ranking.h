/* ranking.h — the ranking protocol shared by the `match` and `bm25` heads and the host's
 * output-weight search over rankings (core/train.c) (header-only, static).
 *
 * What it is for: turning the pairs an evaluation saw — (qid, doc_id, label) per row plus a
 * score — into per-query rankings and the usual retrieval figures, so that a learned model and
 * BM25 are judged by exactly the same code:
 *   mode all:   each query (a qid with >= 1 positive row) is ranked against every distinct doc_id
 *               of the split; relevant = the doc_ids of its positive rows (WordNet reverse
 *               dictionary: the true lemma string among all held-out lemma strings);
 *   mode group: each query is ranked against its own rows only (WikiQA candidates).
 * For relevant items at ranks r_1 < ... < r_R (1-based, among all n candidates):
 *   RR = 1/r_1, AP = (1/R) sum_k k/r_k, Recall@K = #{r_k <= K}/R,
 *   nDCG@10 = sum_{r_k<=10} 1/log2(1+r_k) / sum_{i<=min(R,10)} 1/log2(1+i);
 * every figure is the mean over queries.
 * Ties (BM25 gives many zeros) are broken by a fixed hash of the doc_id, so neither the file order
 * nor the label can favour the relevant item. What it is not: a public API of libtessera.
 */
#ifndef TS_PLUGINS_RANKING_H
#define TS_PLUGINS_RANKING_H

#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

typedef struct {
    double rr, ap, ndcg10, r1, r10;  /* sums over queries */
    long nq;                        /* queries ranked */
} rk_acc;

/* A fixed pseudo-random tie-break key of a document (murmur3's finaliser). */
static inline uint32_t rk_tie(int32_t doc)
{
    uint32_t h = (uint32_t)doc ^ 0x9e3779b9u;
    h ^= h >> 16; h *= 0x85ebca6bu; h ^= h >> 13; h *= 0xc2b2ae35u; h ^= h >> 16;
    return h;
}

/* 1-based rank of candidate t among n: better score first, ties by tie key, then by index. */
static inline long rk_rank(const float *s, const uint32_t *tie, long n, long t)
{
    float st = s[t];
    uint32_t kt = tie[t];
    long r = 1;
    for (long j = 0; j < n; j++)
        if (s[j] > st || (s[j] == st && (tie[j] < kt || (tie[j] == kt && j < t)))) r++;
    return r;
}

static int rk_cmp_long(const void *a, const void *b)
{
    long x = *(const long *)a, y = *(const long *)b;
    return (x > y) - (x < y);
}

/* Adds one query: scores s over n candidates, rel[0..R) the indices of its relevant candidates
 * (distinct), tie keys per candidate, ranks a scratch of R longs. */
static inline void rk_add(rk_acc *a, const float *s, const uint32_t *tie, long n, const long *rel,
                          long R, long *ranks)
{
    if (R <= 0) return;
    for (long k = 0; k < R; k++) ranks[k] = rk_rank(s, tie, n, rel[k]);
    qsort(ranks, (size_t)R, sizeof *ranks, rk_cmp_long);
    double ap = 0, dcg = 0, idcg = 0;
    long hit1 = 0, hit10 = 0;
    for (long k = 0; k < R; k++) {
        ap += (double)(k + 1) / (double)ranks[k];
        if (ranks[k] <= 10) { dcg += 1.0 / log2(1.0 + (double)ranks[k]); hit10++; }
        if (ranks[k] <= 1) hit1++;
        if (k < 10) idcg += 1.0 / log2(2.0 + (double)k);
    }
    a->rr += 1.0 / (double)ranks[0];
    a->ap += ap / (double)R;
    a->ndcg10 += dcg / idcg;
    a->r1 += (double)hit1 / (double)R;
    a->r10 += (double)hit10 / (double)R;
    a->nq++;
}

/* The evaluation's rows grouped into queries and candidates. */
typedef struct {
    long n;            /* rows */
    long *order;       /* (n) rows sorted by (qid, row) */
    long nq;           /* groups (distinct qids) */
    long *qstart;      /* (nq + 1) group g = order[qstart[g] .. qstart[g+1]) */
    long nd;           /* distinct documents */
    long *cand;        /* (n) the distinct-document index of each row */
    long *doc_row;     /* (nd) one row holding that document */
} rk_groups;

typedef struct { int32_t key; long row; } rk_keyed;

static int rk_by_key(const void *a, const void *b)
{
    const rk_keyed *x = a, *y = b;
    if (x->key != y->key) return x->key < y->key ? -1 : 1;
    return (x->row > y->row) - (x->row < y->row);
}

/* rows 0..n) sorted by (key, row) into out. */
static inline int rk_sort_rows(const int32_t *key, long n, long *out)
{
    rk_keyed *v = malloc((size_t)(n + 1) * sizeof *v);
    if (!v) return -1;
    for (long i = 0; i < n; i++) v[i] = (rk_keyed){key[i], i};
    qsort(v, (size_t)n, sizeof *v, rk_by_key);
    for (long i = 0; i < n; i++) out[i] = v[i].row;
    free(v);
    return 0;
}

static inline void rk_groups_free(rk_groups *g)
{
    free(g->order); free(g->qstart); free(g->cand); free(g->doc_row);
    memset(g, 0, sizeof *g);
}

/* Groups n rows by qid and numbers the distinct doc_ids. Returns -1 when out of memory. */
static inline int rk_groups_make(rk_groups *g, const int32_t *qid, const int32_t *doc, long n)
{
    memset(g, 0, sizeof *g);
    g->n = n;
    g->order = malloc((size_t)(n + 1) * sizeof(long));
    g->qstart = malloc((size_t)(n + 2) * sizeof(long));
    g->cand = malloc((size_t)(n + 1) * sizeof(long));
    g->doc_row = malloc((size_t)(n + 1) * sizeof(long));
    long *by_doc = malloc((size_t)(n + 1) * sizeof(long));
    if (!g->order || !g->qstart || !g->cand || !g->doc_row || !by_doc) {
        free(by_doc); rk_groups_free(g); return -1;
    }
    if (rk_sort_rows(qid, n, g->order) || rk_sort_rows(doc, n, by_doc)) {
        free(by_doc); rk_groups_free(g); return -1;
    }
    for (long i = 0; i < n; i++) {
        if (i == 0 || qid[g->order[i]] != qid[g->order[i - 1]]) g->qstart[g->nq++] = i;
        if (i == 0 || doc[by_doc[i]] != doc[by_doc[i - 1]]) g->doc_row[g->nd++] = by_doc[i];
        g->cand[by_doc[i]] = g->nd - 1;
    }
    g->qstart[g->nq] = n;
    free(by_doc);
    return 0;
}

/* Reports the accumulated figures under task through ts_metric. */
static inline void rk_report(ts_ctx *ctx, const char *task, const rk_acc *a)
{
    double q = a->nq > 0 ? (double)a->nq : NAN;
    ts_metric(ctx, task, "mrr", a->rr / q);
    ts_metric(ctx, task, "map", a->ap / q);
    ts_metric(ctx, task, "ndcg@10", a->ndcg10 / q);
    ts_metric(ctx, task, "recall@1", a->r1 / q);
    ts_metric(ctx, task, "recall@10", a->r10 / q);
    ts_metric(ctx, task, "queries", (double)a->nq);
}

#endif
