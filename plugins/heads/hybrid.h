/* hybrid.h — the learned scorer of the `hybrid` head (match.c): the scaled cosine of two towers
 * plus a small dense net over the cosine, lexical features of the pair (lexical.h) and
 * document-side features (a prior such as the candidate's position):
 *   x = [cos, f_1 .. f_F (lexical), p_1 .. p_P (prior of the document's row)]      (Dx)
 *   R = gamma cos + u.x + sum_h v_h tanh(b_h + sum_k x_k W[k, h])                 (H hidden)
 * u, W, b, v are learned (u, b, v start at 0, so R starts as the plain DSSM score); the BM25
 * statistics are frozen parameters fitted from the training split (lexical.h). The scorer rates
 * any (query, document) pair, which is what in-batch negatives and ranking every distinct
 * document need: a layer only sees each row's own pair.
 * What it is not: the head (match.c owns the batch, the loss and the ranking).
 */
#ifndef TS_PLUGINS_HYBRID_H
#define TS_PLUGINS_HYBRID_H

#include "tessera.h"
#include "lexical.h"

#define HY_MAX_UNITS 256                          /* scorer_units */
#define HY_MAX_PRIOR 64                           /* columns of the document prior */
#define HY_MAX_DX (1 + LX_NKINDS + HY_MAX_PRIOR)  /* width of x */

typedef struct hy_scorer {
    int nf, kind[LX_NKINDS];  /* the lexical features of x, in order */
    int P;                    /* width of the document prior (input 4), 0 = none */
    int H;                    /* hidden units, 0 = linear */
    int Dx;                   /* 1 + nf + P */
    int uniform;              /* stats = uniform */
    double k1, b;
    int64_t V, nidf;          /* word ids in [0, V); statistics over [0, nidf) */
    ts_param *u, *W, *bh, *v; /* (1, Dx), (Dx, H), (1, H), (1, H); W, bh, v only when H > 0 */
    ts_param *idf, *meta;     /* frozen: (1, nidf), (1, 2) = {N, avgdl} */
    int32_t *slot;            /* (V) the current query's slot map */
    lx_query q;
    lx_stats st;              /* set by hy_begin from the frozen parameters */
    float *xbuf, *tbuf;       /* (cap_pairs, Dx), (cap_pairs, H): each scored pair's x and t */
    long cap_pairs;
    /* an evaluation's rows: word ids and priors, for ranking every distinct document */
    long n, cap;
    long *qoff, *doff;        /* (cap + 1) */
    int32_t *qw, *dw;         /* word ids of every collected row */
    long qcap, dcap;
    float *prior;             /* (cap, P) */
} hy_scorer;

/* Reads the keys (lexical, scorer_units, k1, b, stats) and the inputs 2.. of H (query words,
 * document words, optional prior), declares the parameters; pairs = the most pairs one batch
 * scores (rows x candidates). */
int hy_build(hy_scorer *h, ts_head *H, const ts_cfg *cfg, long pairs, ts_err *e);
int hy_init(hy_scorer *h, ts_head *H, ts_err *e);           /* fits the statistics */
void hy_free(hy_scorer *h);
void hy_begin(hy_scorer *h);                                 /* reads the statistics */

/* Prepares a query of word ids w[0..n) for hy_pair; hy_query_end releases it. */
int hy_query(hy_scorer *h, const int32_t *w, long n);
void hy_query_end(hy_scorer *h);
/* Scores the prepared query against a document: R - gamma cos (what the scorer adds). Keeps x
 * and the hidden values in slot `pair` (< cap_pairs) for hy_backward, or nowhere when pair < 0. */
float hy_pair(hy_scorer *h, float cos, const int32_t *dw, long dn, const float *prior, long pair);
/* Backward of pair `pair` with dR = d loss / d R: the scorer's parameter gradients, the prior's
 * gradient into dprior (P, may be NULL); returns d loss / d cos through the scorer (without the
 * gamma term). */
float hy_backward(hy_scorer *h, float dR, long pair, float *dprior);

/* Evaluation: forget the rows, keep a batch's words and priors, and the row's ranges. */
void hy_eval_begin(hy_scorer *h);
int hy_collect(hy_scorer *h, ts_head *H, int B);
#define HY_QW(h, r) ((h)->qw + (h)->qoff[r])
#define HY_QN(h, r) ((h)->qoff[(r) + 1] - (h)->qoff[r])
#define HY_DW(h, r) ((h)->dw + (h)->doff[r])
#define HY_DN(h, r) ((h)->doff[(r) + 1] - (h)->doff[r])
#define HY_PRIOR(h, r) ((h)->P ? (h)->prior + (size_t)(r) * (h)->P : NULL)

#endif
