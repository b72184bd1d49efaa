/* lexical.h — the lexical relevance of a (query, document) pair of word-id lists: BM25 and
 * exact-match features (header-only, static), shared by the `bm25` head, the `lexical` layer and
 * the match head's hybrid scorer, so the three compute the same numbers with the same code.
 *
 * With the query's distinct words w (tf(w) = occurrences in the document, |d| its length):
 *   idf(w)       = ln(1 + (N - df(w) + 0.5) / (df(w) + 0.5))     (Lucene's non-negative form)
 *   bm25         = sum_{w: tf > 0} idf(w) tf (k1 + 1) / (tf + k1 (1 - b + b |d| / avgdl))
 *   log_bm25     = ln(1 + bm25)                    (the same order, a scale a small net can use)
 *   overlap      = #{w: tf > 0} / #{w}             (the fraction of query words in the document)
 *   idf_overlap  = sum_{w: tf > 0} idf(w) / sum_w idf(w)
 *   bigram       = the fraction of the query's consecutive word pairs found consecutive in the
 *                  document
 *   doc_overlap  = sum_w tf(w) / |d|              (the fraction of the document's words that the
 *                  query holds: for a short document, such as a lemma, the telling direction)
 * An empty query gives 0 for every feature. N, df and avgdl are the statistics of the training
 * documents (lx_stats); a word id at or past nidf was never seen in training: df = 0.
 * What it is not: a tokenizer (words come as ids from the dataset), nor a ranking protocol
 * (ranking.h).
 */
#ifndef TS_PLUGINS_LEXICAL_H
#define TS_PLUGINS_LEXICAL_H

#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "tessera.h"

enum { LX_BM25, LX_LOG_BM25, LX_OVERLAP, LX_IDF_OVERLAP, LX_BIGRAM, LX_DOC_OVERLAP, LX_NKINDS };
static const char *const lx_names[LX_NKINDS] = {"bm25", "log_bm25", "overlap", "idf_overlap",
                                                "bigram", "doc_overlap"};

/* What BM25 needs from the training documents. */
typedef struct lx_stats {
    const float *idf;     /* (nidf) idf of every word id seen when the statistics were fitted */
    int64_t nidf;
    float idf_unseen;     /* idf of a word id >= nidf: df = 0 */
    double avgdl;         /* mean length of the distinct training documents (> 0) */
    double k1, b;         /* term-frequency saturation, length normalisation */
} lx_stats;

static inline double lx_idf(double N, double df)
{
    return log(1.0 + (N - df + 0.5) / (df + 0.5));
}

/* The BM25 weight of a word of weight idf seen tf times in a document of length dl. */
static inline float lx_term_weight(double k1, double b, float idf, int tf, double dl, double avgdl)
{
    double norm = k1 * (1.0 - b + b * dl / avgdl);
    return (float)(idf * tf * (k1 + 1.0) / (tf + norm));
}

static inline float lx_word_idf(const lx_stats *st, int32_t w)
{
    return w >= 0 && w < st->nidf ? st->idf[w] : st->idf_unseen;
}

/* A query prepared once for many documents: its distinct words own a slot each, and the
 * caller's slot map (one int32 per word id of the vocabulary, -1 when not in the query) says
 * which slot a document word hits. */
typedef struct lx_query {
    int n, cap;           /* distinct words; capacity of the arrays */
    int32_t *word;        /* (cap) distinct word ids, in order of first appearance */
    float *idf;           /* (cap) their idf */
    int32_t *tf;          /* (cap) scratch: occurrences in the document being scored */
    int nbig;             /* consecutive word pairs of the query */
    int32_t *big;         /* (2 cap) their slots, pair k = big[2k], big[2k + 1] */
    uint8_t *hit;         /* (cap) scratch: pair k found in the document */
    double idf_sum;       /* sum of idf over the distinct words */
} lx_query;

static inline void lx_query_free(lx_query *q)
{
    free(q->word); free(q->idf); free(q->tf); free(q->big); free(q->hit);
    memset(q, 0, sizeof *q);
}

/* Grows q to hold queries of up to n words; -1 when out of memory. */
static inline int lx_query_reserve(lx_query *q, long n)
{
    if (n <= q->cap) return 0;
    int cap = q->cap ? q->cap : 64;
    while (cap < n) cap *= 2;
    int32_t *w = realloc(q->word, (size_t)cap * sizeof *w); if (w) q->word = w;
    float *f = realloc(q->idf, (size_t)cap * sizeof *f); if (f) q->idf = f;
    int32_t *t = realloc(q->tf, (size_t)cap * sizeof *t); if (t) q->tf = t;
    int32_t *b = realloc(q->big, (size_t)cap * 2 * sizeof *b); if (b) q->big = b;
    uint8_t *h = realloc(q->hit, (size_t)cap); if (h) q->hit = h;
    if (!w || !f || !t || !b || !h) return -1;
    q->cap = cap;
    return 0;
}

/* Prepares the query words w[0..n) (ids in [0, V); others are skipped) and marks them in slot
 * (V, all -1 before). lx_query_unset clears the marks again. -1 when out of memory. */
static inline int lx_query_set(lx_query *q, const lx_stats *st, const int32_t *w, long n,
                               int32_t *slot, int64_t V)
{
    if (lx_query_reserve(q, n + 1)) return -1;
    q->n = 0;
    q->nbig = 0;
    q->idf_sum = 0;
    int32_t prev = -1;
    for (long k = 0; k < n; k++) {
        int32_t id = w[k];
        if (id < 0 || id >= V) { prev = -1; continue; }
        if (slot[id] < 0) {
            slot[id] = q->n;
            q->word[q->n] = id;
            q->idf[q->n] = lx_word_idf(st, id);
            q->idf_sum += q->idf[q->n];
            q->n++;
        }
        if (prev >= 0) {
            q->big[2 * q->nbig] = prev;
            q->big[2 * q->nbig + 1] = slot[id];
            q->nbig++;
        }
        prev = slot[id];
    }
    return 0;
}

static inline void lx_query_unset(const lx_query *q, int32_t *slot)
{
    for (int k = 0; k < q->n; k++) slot[q->word[k]] = -1;
}

/* Every feature (LX_NKINDS of them, in the order of lx_names) of the prepared query against the
 * document words d[0..dn) (ids in [0, V); others match nothing). */
static inline void lx_pair(lx_query *q, const lx_stats *st, const int32_t *slot, int64_t V,
                           const int32_t *d, long dn, float *out)
{
    for (int k = 0; k < LX_NKINDS; k++) out[k] = 0;
    if (q->n == 0) return;
    long any = 0;             /* most pairs share no word: every feature 0 */
    for (long k = 0; k < dn; k++) any += d[k] >= 0 && d[k] < V && slot[d[k]] >= 0;
    if (!any) return;
    for (int k = 0; k < q->n; k++) q->tf[k] = 0;
    for (long k = 0; k < dn; k++)
        if (d[k] >= 0 && d[k] < V && slot[d[k]] >= 0) q->tf[slot[d[k]]]++;
    float bm = 0;             /* summed in float, word by word, as the bm25 head's index does */
    double hit_idf = 0;
    int hits = 0;
    long found_tokens = 0;
    for (int k = 0; k < q->n; k++) {
        if (!q->tf[k]) continue;
        found_tokens += q->tf[k];
        bm += lx_term_weight(st->k1, st->b, q->idf[k], q->tf[k], (double)dn, st->avgdl);
        hit_idf += q->idf[k];
        hits++;
    }
    out[LX_BM25] = bm;
    out[LX_LOG_BM25] = log1pf(bm);
    out[LX_OVERLAP] = (float)hits / (float)q->n;
    out[LX_IDF_OVERLAP] = q->idf_sum > 0 ? (float)(hit_idf / q->idf_sum) : 0.0f;
    out[LX_DOC_OVERLAP] = dn > 0 ? (float)found_tokens / (float)dn : 0.0f;
    if (q->nbig == 0 || hits == 0) return;
    int found = 0;
    memset(q->hit, 0, (size_t)q->nbig);
    for (long k = 0; k + 1 < dn; k++) {
        int32_t a = d[k], c = d[k + 1];
        if (a < 0 || a >= V || c < 0 || c >= V || slot[a] < 0 || slot[c] < 0) continue;
        for (int j = 0; j < q->nbig; j++)
            if (!q->hit[j] && q->big[2 * j] == slot[a] && q->big[2 * j + 1] == slot[c]) {
                q->hit[j] = 1;
                found++;
            }
    }
    out[LX_BIGRAM] = (float)found / (float)q->nbig;
}

/* Parses a list of feature names into kinds (at most LX_NKINDS, no repeats); the index of the
 * first unknown or repeated name, or -1 when all are good. */
static inline int lx_parse(char names[][TS_NAME_MAX], int n, int *kinds)
{
    for (int i = 0; i < n; i++) {
        kinds[i] = -1;
        for (int k = 0; k < LX_NKINDS; k++)
            if (!strcmp(names[i], lx_names[k])) kinds[i] = k;
        for (int j = 0; j < i && kinds[i] >= 0; j++)
            if (kinds[j] == kinds[i]) kinds[i] = -1;
        if (kinds[i] < 0) return i;
    }
    return -1;
}

/* ---- the fitted statistics ------------------------------------------------------------------
 * A plugin keeps them as frozen parameters, so that params.bin and every checkpoint hold them
 * and a resumed or applied run reads them back instead of refitting: idf (1, V) and
 * meta (1, 2) = {N, avgdl}. They come from the dataset's aux arrays over the distinct training
 * documents: doc_freq (int32 per word id), doc_count (int32[1]), doc_length_mean (double[1]). */

/* Words the statistics cover: the length of the dataset's doc_freq, else fallback. */
static inline int64_t lx_vocab(ts_ctx *ctx, int64_t fallback)
{
    const void *p;
    long n = 0;
    return ts_ctx_aux(ctx, "doc_freq", &p, &n) == 0 && n > 0 ? (int64_t)n : fallback;
}

/* Fills idf (nidf) and meta {N, avgdl} from the dataset (uniform = 0) or with idf 1 and avgdl 1
 * (uniform = 1: data without statistics). */
static inline int lx_fit(ts_ctx *ctx, int uniform, float *idf, int64_t nidf, float *meta,
                         const char *who, ts_err *e)
{
    if (uniform) {
        for (int64_t w = 0; w < nidf; w++) idf[w] = 1.0f;
        meta[0] = 1.0f;
        meta[1] = 1.0f;
        return 0;
    }
    const void *pdf = NULL, *pn = NULL, *pl = NULL;
    long ndf = 0, nn = 0, nl = 0;
    if (ts_ctx_aux(ctx, "doc_freq", &pdf, &ndf) || ts_ctx_aux(ctx, "doc_count", &pn, &nn) ||
        ts_ctx_aux(ctx, "doc_length_mean", &pl, &nl) || ndf != nidf || nn != 1 || nl != 1)
        return ts_fail(e, "%s: stats = train needs the dataset's aux arrays doc_freq, doc_count "
                       "and doc_length_mean (textpairs has them) over the %lld words of the "
                       "input; set stats = uniform for data without them", who, (long long)nidf);
    double N = (double)*(const int32_t *)pn, avgdl = *(const double *)pl;
    for (int64_t w = 0; w < nidf; w++)
        idf[w] = (float)lx_idf(N, (double)((const int32_t *)pdf)[w]);
    meta[0] = (float)N;
    meta[1] = (float)(avgdl > 0 ? avgdl : 1.0);
    return 0;
}

/* The statistics as lx_pair reads them, from the frozen parameters' values. */
static inline lx_stats lx_stats_of(const float *idf, int64_t nidf, const float *meta, double k1,
                                   double b)
{
    lx_stats st = {idf, nidf, (float)lx_idf(meta[0], 0.0), meta[1] > 0 ? meta[1] : 1.0, k1, b};
    return st;
}

#endif
