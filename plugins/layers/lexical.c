/* lexical.c — lexical relevance features of each row's (query, document) pair, as a layer.
 *
 * What it is for: letting a matcher learn from exact matches. Inputs: the word-id bags of the
 * query and of the document (BAGS (B, 1), e.g. the textpairs fields query_words, doc_words);
 * output (B, F): for each row the features named by `features`, in that order, computed by
 * lexical.h (the code the bm25 head ranks with, so `bm25` here equals that head's score with
 * idf = train and avgdl = train):
 *   bm25, log_bm25 = ln(1 + bm25), overlap (fraction of the query's distinct words found in the
 *   document), idf_overlap (the same weighted by idf), bigram (fraction of the query's
 *   consecutive word pairs found consecutive in the document), doc_overlap (fraction of the
 *   document's words that the query holds).
 * The statistics (idf of every word, N, avgdl) are those of the training split's distinct
 * documents (the dataset's aux doc_freq, doc_count, doc_length_mean), fitted once at init and
 * kept as frozen parameters (idf (1, V), meta (1, 2) = {N, avgdl}): params.bin and checkpoints
 * hold them, so a resumed or applied run reads them back instead of refitting them on its rows.
 * The features feed dense layers that learn (a scorer); the layer itself has no gradient path:
 * its inputs are word ids and its parameters are frozen, so backward does nothing.
 * What it is not: a pairwise scorer over other rows' documents (the match head's `lexical` key
 * scores in-batch negatives and every candidate of a ranking with the same code).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tessera.h"
#include "../heads/lexical.h"

typedef struct {
    int nf, kind[LX_NKINDS];  /* the features of the output, in order */
    int uniform;              /* stats = uniform: idf 1, avgdl 1 */
    double k1, b;
    int64_t V;                /* word ids of the inputs lie in [0, V) */
    int64_t nidf;             /* words the statistics cover */
    ts_param *idf, *meta;     /* frozen: (1, nidf) idf; (1, 2) N, avgdl */
    int32_t *slot;            /* (V) the query's slot map, -1 outside it */
    lx_query q;
} lex_state;

static const ts_key keys[] = {
    {"features", "list", "bm25, overlap, idf_overlap, bigram",
     "the output columns, in order: bm25, log_bm25, overlap, idf_overlap, bigram, doc_overlap"},
    {"k1", "float", "1.2", "BM25 term-frequency saturation"},
    {"b", "float", "0.75", "BM25 document-length normalisation"},
    {"stats", "choice:train|uniform", "train",
     "train: idf and avgdl of the training documents (the dataset's aux doc_freq, doc_count, "
     "doc_length_mean); uniform: idf 1 and avgdl 1, for data without them"},
    {NULL, NULL, NULL, NULL}};

static int build_impl(ts_layer *L, const ts_cfg *cfg, ts_err *e)
{
    char s1[64], s2[64];
    if (L->nin != 2 || L->in[0]->dtype != TS_BAGS || L->in[1]->dtype != TS_BAGS ||
        L->in[0]->ndim != 2 || L->in[1]->ndim != 2 || L->in[0]->dim[1] != 1 ||
        L->in[1]->dim[1] != 1)
        return ts_fail(e, "%s: lexical takes two bags inputs (B, 1), the query's and the "
                       "document's word ids (input = query_words, doc_words), got %d "
                       "input(s)%s%s%s%s",
                       ts_cfg_where(cfg, "input"), L->nin, L->nin == 2 ? ": " : "",
                       L->nin == 2 ? ts_shape_str(L->in[0], s1, sizeof s1) : "",
                       L->nin == 2 ? " and " : "",
                       L->nin == 2 ? ts_shape_str(L->in[1], s2, sizeof s2) : "");
    if (L->in[0]->vocab != L->in[1]->vocab || L->in[0]->vocab <= 0)
        return ts_fail(e, "%s: the query and document word ids must share one vocabulary (got "
                       "%lld and %lld words)", ts_cfg_where(cfg, "input"),
                       (long long)L->in[0]->vocab, (long long)L->in[1]->vocab);
    lex_state *s = calloc(1, sizeof *s);
    if (!s) return ts_fail(e, "lexical: out of memory");
    L->state = s;
    char names[LX_NKINDS + 1][TS_NAME_MAX];
    int stats;
    if (ts_cfg_list(cfg, "features", names, LX_NKINDS + 1, &s->nf, e) ||
        ts_cfg_float(cfg, "k1", &s->k1, e) || ts_cfg_float(cfg, "b", &s->b, e) ||
        ts_cfg_choice(cfg, "stats", "train|uniform", &stats, e))
        return -1;
    int bad = s->nf > LX_NKINDS ? LX_NKINDS : lx_parse(names, s->nf, s->kind);
    if (s->nf == 0 || bad >= 0)
        return ts_fail(e, "%s: features = %s: %s%s%s; name each at most once among bm25, "
                       "log_bm25, overlap, idf_overlap, bigram, doc_overlap",
                       ts_cfg_where(cfg, "features"), ts_cfg_str(cfg, "features"),
                       s->nf == 0 ? "empty" : "'", s->nf == 0 ? "" : names[bad],
                       s->nf == 0 ? "" : "' is unknown or repeated");
    if (!(s->k1 >= 0) || !(s->b >= 0 && s->b <= 1))
        return ts_fail(e, "%s: BM25 needs k1 >= 0 and 0 <= b <= 1",
                       ts_cfg_where(cfg, s->k1 >= 0 ? "b" : "k1"));
    s->uniform = stats == 1;
    s->V = L->in[0]->vocab;
    s->nidf = s->uniform ? s->V : lx_vocab(L->ctx, 0);
    if (s->nidf <= 0 || s->nidf > s->V)
        return ts_fail(e, "%s: stats = train needs the dataset's aux doc_freq over the %lld "
                       "words of the input (textpairs has it); set stats = uniform for data "
                       "without training statistics", ts_cfg_where(cfg, "stats"),
                       (long long)s->V);
    if (s->nidf > (1 << 30)) return ts_fail(e, "%s: too many words", ts_cfg_section(cfg));
    if (!(s->idf = ts_param_add(L->ctx, "idf", 1, (int)s->nidf, TS_INIT_ONES, 0, TS_PARAM_FROZEN,
                                e)) ||
        !(s->meta = ts_param_add(L->ctx, "meta", 1, 2, TS_INIT_ONES, 0, TS_PARAM_FROZEN, e)))
        return -1;
    if (!(s->slot = malloc((size_t)s->V * sizeof *s->slot)))
        return ts_fail(e, "lexical: out of memory for %lld words", (long long)s->V);
    for (int64_t w = 0; w < s->V; w++) s->slot[w] = -1;
    ts_tensor *out = &L->out[0];
    out->dtype = TS_F32;
    out->ndim = 2;
    out->dim[0] = L->in[0]->dim[0];
    out->dim[1] = s->nf;
    return 0;
}

/* The statistics, fitted once: a resumed or applied run then restores them over these. */
static int init(ts_layer *L, ts_err *e)
{
    lex_state *s = L->state;
    return lx_fit(L->ctx, s->uniform, s->idf->w, s->nidf, s->meta->w, L->name, e);
}

static int forward(ts_layer *L, ts_phase phase, ts_err *e)
{
    (void)phase;
    lex_state *s = L->state;
    const ts_tensor *Q = L->in[0], *D = L->in[1];  /* BAGS (B, 1) */
    const int B = Q->dim[0];
    float *out = L->out[0].x;                       /* (B, F) */
    lx_stats st = lx_stats_of(s->idf->w, s->nidf, s->meta->w, s->k1, s->b);
    float f[LX_NKINDS];
    for (int i = 0; i < B; i++) {
        if (lx_query_set(&s->q, &st, Q->ids + Q->off[i], Q->off[i + 1] - Q->off[i], s->slot,
                         s->V))
            return ts_fail(e, "lexical: out of memory");
        lx_pair(&s->q, &st, s->slot, s->V, D->ids + D->off[i], D->off[i + 1] - D->off[i], f);
        lx_query_unset(&s->q, s->slot);
        for (int k = 0; k < s->nf; k++) out[(size_t)i * s->nf + k] = f[s->kind[k]];
    }
    return 0;
}

/* No gradient path: word ids in, frozen statistics. */
static int backward(ts_layer *L, ts_err *e)
{
    (void)L; (void)e;
    return 0;
}

static void destroy(ts_layer *L)
{
    lex_state *s = L->state;
    if (!s) return;
    free(s->slot);
    lx_query_free(&s->q);
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
    .check_inputs = "bags 5 1 vocab=12; bags 5 1 vocab=12",
    .check_keys = "stats=uniform features=bm25,log_bm25,overlap,idf_overlap,bigram,doc_overlap",
    .init = init, .concurrency = TS_REPLICA_SAFE | TS_BRANCH_SAFE};
static const ts_plugin plugin = {
    TS_ABI, sizeof(ts_plugin), TS_LAYER, "lexical", "1.0",
    "BM25 and exact-match features of each row's (query, document) word ids -> (B, F), no gradient",
    keys, &ops};

const ts_plugin *tessera_plugin_entry(uint32_t i) { return i == 0 ? &plugin : NULL; }
