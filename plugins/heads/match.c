/* match.c — the DSSM matching head: a scaled cosine trained with in-batch negatives.
 *
 * What it is for: the loss and the evaluation of two-tower semantic matching (DSSM, CNN-DSSM,
 * LSTM-DSSM; Huang et al. 2013). Inputs q (B, E) and d (B, E); the relevance of a pair is
 *   R(q, d) = gamma cos(q, d),  cos = q.d / (|q|_e |d|_e),  |v|_e = sqrt(|v|^2 + 1e-8)
 * with gamma fixed (key gamma) or learned (learn_gamma). Training: for every positive row i (rows
 * with label 0 — WikiQA's wrong sentences — are skipped when positives_only is set) the softmax
 * runs over its own document and J = negatives documents of OTHER rows of the batch (drawn with
 * ts_ctx_rng, never the same doc_id nor another positive of the same qid):
 *   loss_i = -log( exp R(q_i, d_i) / sum_{c in {i} + negatives} exp R(q_i, d_c) )
 * computed by the loss plugin (loss = softmax_ce, class 0 = the positive). When the batch has no
 * more than J other rows, all of them are used (deterministic, which the gradient check needs);
 * slots without a valid negative get a logit of -1e30 (probability 0, gradient 0). All in-batch
 * cosines are one sgemm C = qh dh^T over the unit vectors, and the gradient goes back through two
 * more (dqh = dC dh, ddh = dC^T qh), so J = B - 1 (every other row) costs little more than J = 4.
 * Evaluation ranks with ranking.h: rank = all (each query against every distinct document of the
 * split) or group (each query against its own candidates, plus the AUC of all pair scores).
 * negatives_from = group keeps only the batch's rows of the same qid as negatives (a question's
 * wrong candidates; [train] group_by = qid keeps a question's rows in one batch).
 * The second plugin of this file, `hybrid`, is the same head with R = gamma cos + a learned
 * scorer of the cosine, lexical features of the pair and a document prior (hybrid.h), for every
 * candidate alike: the in-batch negatives and, at evaluation, every ranked document.
 * What it is not: a sampled softmax over a corpus (that is the retrieval head).
 */
#include <cblas.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tessera.h"
#include "hybrid.h"
#include "../layers/vecmath.h"
#include "ranking.h"

#define EPS2 1e-8f
/* The head's row-wise work runs in tasks of CHUNK rows (ts_ctx_parallel): a number of tasks
 * fixed by the batch, so the result is the same for any [train] threads. */
#define CHUNK 64
#define MASKED (-1e30f)

typedef struct {
    int E, J, Bmax, learn, all_mode, pos_only, group_neg;
    int hybrid;              /* the hybrid head: R = gamma cos + the scorer (sc) */
    hy_scorer sc;
    float gamma0;
    ts_param *gamma;         /* (1, 1) when learned */
    char group_field[TS_NAME_MAX], doc_field[TS_NAME_MAX];
    /* training buffers, (Bmax) rows */
    float *qn, *dn;          /* (Bmax) norms */
    float *qh, *dh;          /* (Bmax, E) unit vectors q/|q|_e, d/|d|_e */
    float *dqh, *ddh;        /* (Bmax, E) their gradients */
    float *C, *dC;           /* (Bmax, Bmax) all in-batch cosines qh dh^T, and d loss / d C */
    float *z, *dz, *cosv;    /* (Bmax, 1+J) logits, their gradient, cosines */
    int32_t *cand;           /* (Bmax, 1+J) the row of each candidate, -1 masked */
    int32_t *ridx;           /* (Bmax) each row's place among the rows that carry a loss, -1
                                for a row without one */
    ts_err *terr;            /* (tasks of Bmax rows) a task's loss error (batch_loss) */
    int oom;                 /* a task ran out of memory (the hybrid's scorer) */
    int32_t *mark;           /* (Bmax) sampling scratch: which rows a row already drew */
    float *y;                /* (Bmax) class 0 */
    ts_rng eval_rng;         /* negatives of the evaluation loss (training's stream stays put) */
    /* evaluation accumulators, grown as the split streams by */
    long n, cap;
    float *eq, *ed;          /* (cap, E) unit vectors */
    float *score, *label;    /* (cap) */
    int32_t *qid, *doc;      /* (cap) */
} match_state;

/* The keys both heads read after gamma (match's; the hybrid adds its scorer's). */
#define MATCH_KEYS \
    {"learn_gamma", "bool", "false", "learn gamma as a parameter"}, \
    {"negatives", "int", "4", \
     "J: negatives per positive, drawn from the other documents of the batch"}, \
    {"rank", "choice:all|group", "all", \
     "all: rank each query against every distinct document; group: against its own candidates"}, \
    {"positives_only", "bool", "true", \
     "train only on rows with label 1 (others are candidates, not pairs)"}, \
    {"negatives_from", "choice:batch|group", "batch", \
     "batch: any other row of the batch; group: only rows of the same qid (a question's wrong " \
     "candidates; use [train] group_by = qid)"}, \
    {"group_field", "string", "qid", "dataset field with the query group id"}, \
    {"doc_field", "string", "doc_id", "dataset field with the distinct document id"}

static const ts_key keys[] = {
    {"gamma", "float", "10", "the softmax smoothing factor gamma (initial value when learned)"},
    MATCH_KEYS,
    {NULL, NULL, NULL, NULL}};

/* The hybrid head's keys: the match head's, then the scorer's (hybrid.h). */
static const ts_key hybrid_keys[] = {
    {"gamma", "float", "10", "the softmax smoothing factor gamma of the cosine (initial value when "
     "learned)"},
    MATCH_KEYS,
    {"lexical", "list", "log_bm25, overlap, idf_overlap, bigram, doc_overlap",
     "lexical features of each scored pair (lexical.h): bm25, log_bm25, overlap, idf_overlap, "
     "bigram, doc_overlap; empty = none"},
    {"scorer_units", "int", "8", "tanh units of the scorer over [cos, lexical, prior]; 0 = linear"},
    {"k1", "float", "1.2", "BM25 term-frequency saturation"},
    {"b", "float", "0.75", "BM25 document-length normalisation"},
    {"stats", "choice:train|uniform", "train",
     "train: idf and avgdl of the training documents (the dataset's aux doc_freq, doc_count, "
     "doc_length_mean), kept as frozen parameters; uniform: idf 1 and avgdl 1"},
    {NULL, NULL, NULL, NULL}};

static int build_impl(ts_head *H, const ts_cfg *cfg, int hybrid, ts_err *e)
{
    char s1[64], s2[64];
    if (!hybrid && H->nin != 2)
        return ts_fail(e, "%s: the match head takes two inputs, the query and document vectors; "
                       "set input = Q, D (type = hybrid adds the word ids and a prior)",
                       ts_cfg_where(cfg, "input"));
    if (hybrid && H->nin < 4)
        return ts_fail(e, "%s: the hybrid head takes the query and document vectors, then their "
                       "word ids: input = q_vec, d_vec, query_words, doc_words[, prior]; got %d "
                       "input(s)", ts_cfg_where(cfg, "input"), H->nin);
    const ts_tensor *q = H->in[0], *d = H->in[1];
    if (q->dtype != TS_F32 || d->dtype != TS_F32 || q->ndim != 2 || d->ndim != 2 ||
        q->dim[1] != d->dim[1])
        return ts_fail(e, "%s: match needs two f32 inputs of the same shape (B, E), got %s and %s",
                       ts_cfg_where(cfg, "input"), ts_shape_str(q, s1, sizeof s1),
                       ts_shape_str(d, s2, sizeof s2));
    if (!H->loss)
        return ts_fail(e, "%s: the match head trains through a softmax over candidates; set "
                       "loss = softmax_ce", ts_cfg_section(cfg));
    if (H->loss->label_kind != TS_LABEL_CLASS)
        return ts_fail(e, "%s: the match head needs a loss over class indices (loss = softmax_ce)",
                       ts_cfg_where(cfg, "loss"));
    match_state *s = calloc(1, sizeof *s);
    if (!s) return ts_fail(e, "match: out of memory");
    H->state = s;
    double g;
    long J;
    int rank;
    s->hybrid = hybrid;
    if (ts_cfg_float(cfg, "gamma", &g, e) || ts_cfg_bool(cfg, "learn_gamma", &s->learn, e) ||
        ts_cfg_int(cfg, "negatives", &J, e) || ts_cfg_choice(cfg, "rank", "all|group", &rank, e) ||
        ts_cfg_bool(cfg, "positives_only", &s->pos_only, e) ||
        ts_cfg_choice(cfg, "negatives_from", "batch|group", &s->group_neg, e))
        return -1;
    if (J < 1 || J > 1024)
        return ts_fail(e, "%s: negatives = %ld; use 1..1024", ts_cfg_where(cfg, "negatives"), J);
    if (s->group_neg && !ts_ctx_field(H->ctx, ts_cfg_str(cfg, "group_field")))
        return ts_fail(e, "%s: negatives_from = group needs the query group field %s, which the "
                       "dataset does not have; set group_field",
                       ts_cfg_where(cfg, "negatives_from"), ts_cfg_str(cfg, "group_field"));
    s->E = q->dim[1];
    s->J = (int)J;
    s->Bmax = q->dim[0];
    s->gamma0 = (float)g;
    s->all_mode = rank == 0;
    snprintf(s->group_field, sizeof s->group_field, "%s", ts_cfg_str(cfg, "group_field"));
    snprintf(s->doc_field, sizeof s->doc_field, "%s", ts_cfg_str(cfg, "doc_field"));
    if (s->learn &&
        !(s->gamma = ts_param_add(H->ctx, "gamma", 1, 1, TS_INIT_CONST, s->gamma0, 0, e)))
        return -1;
    size_t B = (size_t)s->Bmax, K = (size_t)s->J + 1;
    s->qn = malloc(B * sizeof(float));
    s->dn = malloc(B * sizeof(float));
    s->z = malloc(B * K * sizeof(float));
    s->dz = malloc(B * K * sizeof(float));
    s->cosv = malloc(B * K * sizeof(float));
    s->qh = malloc(B * (size_t)s->E * sizeof(float));
    s->dh = malloc(B * (size_t)s->E * sizeof(float));
    s->dqh = malloc(B * (size_t)s->E * sizeof(float));
    s->ddh = malloc(B * (size_t)s->E * sizeof(float));
    if (B > 4096)
        return ts_fail(e, "%s: the match head keeps a (B, B) matrix of in-batch cosines; a "
                       "batch of %zu rows is too large, use [train] batch and eval_batch <= 4096",
                       ts_cfg_section(cfg), B);
    s->C = malloc(B * B * sizeof(float));
    s->dC = malloc(B * B * sizeof(float));
    s->cand = malloc(B * K * sizeof(int32_t));
    s->ridx = malloc(B * sizeof(int32_t));
    s->terr = malloc((B + CHUNK - 1) / CHUNK * sizeof(ts_err));
    s->mark = malloc(B * sizeof(int32_t));
    s->y = calloc(B, sizeof(float));
    if (!s->qn || !s->dn || !s->z || !s->dz || !s->cosv || !s->cand || !s->terr || !s->ridx || !s->mark ||
        !s->y || !s->qh || !s->dh || !s->dqh || !s->ddh || !s->C || !s->dC)
        return ts_fail(e, "match: out of memory");
    if (hybrid && hy_build(&s->sc, H, cfg, (long)B * (long)K, e)) return -1;
    ts_rng_seed(&s->eval_rng, ts_ctx_seed(H->ctx) ^ 0x6d61746368ull);
    return 0;
}

/* a . b in 8 interleaved partial sums added in a fixed order: a loop that vectorises (one sum
 * in order was a chain of dependent adds, 4% of a DSSM step) and the same bits on every copy */
TS_VEC static float dotf(const float *a, const float *b, int n)
{
    float s[8] = {0, 0, 0, 0, 0, 0, 0, 0};
    int j = 0;
    for (; j + 8 <= n; j += 8)
        for (int l = 0; l < 8; l++) s[l] += a[j + l] * b[j + l];
    for (; j < n; j++) s[j & 7] += a[j] * b[j];
    return ((s[0] + s[1]) + (s[2] + s[3])) + ((s[4] + s[5]) + (s[6] + s[7]));
}

/* y (n) = x (n) / d */
TS_VEC static void div_span(const float *x, float d, float *y, int n)
{
    for (int j = 0; j < n; j++) y[j] = x[j] / d;
}

/* o (n) += (g - v proj) inv: the gradient through v / |v|_e */
TS_VEC static void unit_back(float *o, const float *g, const float *v, float proj, float inv, int n)
{
    for (int j = 0; j < n; j++) o[j] += (g[j] - v[j] * proj) * inv;
}

/* Row j may serve as a negative for row i: another row and document, not a positive of i's
 * query. */
static int may_negate(const int32_t *qid, const int32_t *doc, const float *lab, int i, int j,
                      int group_only)
{
    if (j == i) return 0;
    if (group_only && (!qid || qid[j] != qid[i])) return 0;
    if (doc && doc[j] == doc[i]) return 0;
    if (qid && qid[j] == qid[i] && (!lab || lab[j] > 0.5f)) return 0;
    return 1;
}

#define MAXTASK (4096 / CHUNK)

typedef struct {
    ts_head *H;
    match_state *s;
    int B, E, K, det, n;
    const float *q, *d, *lab;
    const int32_t *qid, *doc;
    float gamma;
    int train;
    int loss_in_task;             /* the loss allows it (TS_BRANCH_SAFE): each task its rows' */
    int r0[MAXTASK + 1];          /* task t's rows with a loss: r0[t] .. r0[t + 1] - 1 */
    double loss[MAXTASK];         /* each task's part of the loss */
    int rc[MAXTASK];              /* its loss's status; the message in the state's terr */
    float dgamma[MAXTASK];        /* each task's part of d loss / d gamma, summed in task order */
} pass;

/* Rows [i0, i1) of a task. */
static void chunk_rows(const pass *a, int t, int *i0, int *i1)
{
    *i0 = t * CHUNK;
    *i1 = *i0 + CHUNK < a->B ? *i0 + CHUNK : a->B;
}

/* The unit vectors of the task's rows. */
static void unit_task(void *arg, int t)
{
    pass *a = arg;
    match_state *s = a->s;
    const int E = a->E;
    int i0, i1;
    chunk_rows(a, t, &i0, &i1);
    for (int i = i0; i < i1; i++) {
        const float *qi = a->q + (size_t)i * E, *di = a->d + (size_t)i * E;
        float *oq = s->qh + (size_t)i * E, *od = s->dh + (size_t)i * E;
        s->qn[i] = sqrtf(dotf(qi, qi, E) + EPS2);
        s->dn[i] = sqrtf(dotf(di, di, E) + EPS2);
        div_span(qi, s->qn[i], oq, E);
        div_span(di, s->dn[i], od, E);
    }
}

/* The task's rows of C = qh dh^T, their candidates when every other row is one (det), and
 * their logits. */
static void logit_task(void *arg, int t)
{
    pass *a = arg;
    match_state *s = a->s;
    const int B = a->B, E = a->E, K = a->K;
    int i0, i1;
    chunk_rows(a, t, &i0, &i1);
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, i1 - i0, B, E, 1.0f,
                s->qh + (size_t)i0 * E, E, s->dh, E, 0.0f, s->C + (size_t)i0 * B, B);
    const ts_tensor *QW = s->hybrid ? a->H->in[2] : NULL, *DW = s->hybrid ? a->H->in[3] : NULL;
    const ts_tensor *PR = s->hybrid && a->H->nin == 5 ? a->H->in[4] : NULL;
    for (int i = i0; i < i1; i++) {
        int r = s->ridx[i];
        if (r < 0) continue;
        int32_t *c = s->cand + (size_t)r * K;
        if (a->det) {   /* every other row (of the group): deterministic */
            int m = 1;
            c[0] = i;
            for (int j = 0; j < B && m < K; j++)
                if (may_negate(a->qid, a->doc, a->lab, i, j, s->group_neg)) c[m++] = j;
            for (; m < K; m++) c[m] = -1;
        }
        /* the hybrid's scorer keeps the row's query between calls: its tasks run in order
         * on one thread (batch_loss) */
        if (QW && hy_query(&s->sc, QW->ids + QW->off[i], QW->off[i + 1] - QW->off[i])) {
            s->oom = 1;
            return;
        }
        const float *Ci = s->C + (size_t)i * B;
        float *cv = s->cosv + (size_t)r * K, *z = s->z + (size_t)r * K;
        for (int k = 0; k < K; k++) {
            int j = c[k];
            float cs = j < 0 ? 0 : Ci[j];
            cv[k] = cs;
            z[k] = j < 0 ? MASKED : a->gamma * cs;
            if (QW && j >= 0)   /* the scorer of the pair (query i, document j): hybrid.h */
                z[k] += hy_pair(&s->sc, cs, DW->ids + DW->off[j], DW->off[j + 1] - DW->off[j],
                                PR ? PR->x + (size_t)j * s->sc.P : NULL, (long)r * K + k);
        }
        if (QW) hy_query_end(&s->sc);
    }
    /* the task's rows' part of the mean loss over the n rows: its own mean weighted by its
     * share, the gradient scale likewise */
    int r0 = a->r0[t], nr = a->r0[t + 1] - r0;
    a->rc[t] = 0;
    a->loss[t] = 0;
    if (a->loss_in_task && nr > 0) {
        double l = 0;
        a->rc[t] = a->H->loss->eval(a->H->loss_state, nr, K, s->z + (size_t)r0 * K, s->y, NULL, &l,
                                    a->train ? s->dz + (size_t)r0 * K : NULL,
                                    a->train ? a->H->grad_scale * (float)nr / (float)a->n : 0.0f,
                                    &s->terr[t]);
        a->loss[t] = l * nr / a->n;
    }
}

/* dC's rows of the task: dC[i, j] = gamma dz over the candidates; dR/dgamma = cos. */
static void dc_task(void *arg, int t)
{
    pass *a = arg;
    match_state *s = a->s;
    const int B = a->B, K = a->K;
    const ts_tensor *PR = s->hybrid && a->H->nin == 5 ? a->H->in[4] : NULL;
    int i0, i1;
    chunk_rows(a, t, &i0, &i1);
    float dgamma = 0;
    for (int i = i0; i < i1; i++) {
        float *dCi = s->dC + (size_t)i * B;
        memset(dCi, 0, (size_t)B * sizeof(float));
        int r = s->ridx[i];
        if (r < 0) continue;
        if (s->gamma)   /* learned: one sum in candidate order (a chain of adds; only then) */
            for (int k = 0; k < K; k++)
                if (s->cand[(size_t)r * K + k] >= 0)
                    dgamma += s->dz[(size_t)r * K + k] * s->cosv[(size_t)r * K + k];
        for (int k = 0; k < K; k++) {
            int j = s->cand[(size_t)r * K + k];
            if (j < 0) continue;
            float g = s->dz[(size_t)r * K + k];
            dCi[j] += a->gamma * g;
            if (s->hybrid)   /* the scorer's parameters, the prior, and its path to the cosine */
                dCi[j] += hy_backward(&s->sc, g, (long)r * K + k,
                                      PR && PR->dx ? PR->dx + (size_t)j * s->sc.P : NULL);
        }
    }
    a->dgamma[t] = dgamma;
    /* the task's rows of dqh = dC dh */
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, i1 - i0, a->E, B, 1.0f,
                s->dC + (size_t)i0 * B, B, s->dh, a->E, 0.0f, s->dqh + (size_t)i0 * a->E, a->E);
}

/* The task's rows of ddh = dC^T qh (dC whole), and through the normalisation v/|v|_e:
 * dv = (dvh - vh (vh . dvh)) / |v|_e into q->dx and d->dx. */
static void grad_task(void *arg, int t)
{
    pass *a = arg;
    match_state *s = a->s;
    const int B = a->B, E = a->E;
    int i0, i1;
    chunk_rows(a, t, &i0, &i1);
    cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, i1 - i0, E, B, 1.0f, s->dC + i0, B,
                s->qh, E, 0.0f, s->ddh + (size_t)i0 * E, E);
    for (int side = 0; side < 2; side++) {
        float *dv = side ? a->H->in[1]->dx : a->H->in[0]->dx;
        const float *vh = side ? s->dh : s->qh, *dvh = side ? s->ddh : s->dqh;
        const float *nv = side ? s->dn : s->qn;
        if (!dv) continue;
        for (int i = i0; i < i1; i++) {
            const float *v = vh + (size_t)i * E, *gv = dvh + (size_t)i * E;
            float proj = dotf(v, gv, E), inv = 1.0f / nv[i];
            unit_back(dv + (size_t)i * E, gv, v, proj, inv, E);
        }
    }
}

/* The batch's softmax loss; with train, also the gradients into q->dx, d->dx and gamma. Every
 * in-batch cosine at once: C = qh dh^T (B, B); the gradient goes back through two more
 * products (dqh = dC dh, ddh = dC^T qh). */
static int batch_loss(ts_head *H, ts_rng *rng, int train, double *loss, ts_err *e)
{
    match_state *s = H->state;
    const ts_tensor *Q = H->in[0], *D = H->in[1];
    const int B = Q->dim[0], J = s->J, K = J + 1;
    const ts_tensor *gq = ts_ctx_field(H->ctx, s->group_field);
    const ts_tensor *gd = ts_ctx_field(H->ctx, s->doc_field);
    pass a = {H, s, B, s->E, K, B - 1 <= J || s->group_neg, 0, Q->x, D->x,
              H->label ? H->label->x : NULL, gq ? gq->ids : NULL, gd ? gd->ids : NULL,
              s->gamma ? s->gamma->w[0] : s->gamma0, train,
              (TS_OP(H->loss, concurrency) & TS_BRANCH_SAFE) != 0, {0}, {0}, {0}, {0}};
    /* the hybrid's scorer is one state: its passes run in order on this thread */
    ts_ctx *par = s->hybrid ? NULL : H->ctx;
    int ntask = (B + CHUNK - 1) / CHUNK;
    ts_ctx_parallel(H->ctx, ntask, unit_task, &a);
    /* the rows that carry a loss, and their negatives when drawn (one random stream, in
     * row order) */
    int n = 0;
    for (int i = 0; i < B; i++) s->mark[i] = 0;
    for (int i = 0; i < B; i++) {
        if (i % CHUNK == 0) a.r0[i / CHUNK] = n;
        s->ridx[i] = -1;
        if (s->pos_only && a.lab && !(a.lab[i] > 0.5f)) continue;
        if (!a.det) {   /* distinct negatives: mark[j] == n + 1 once row j is a candidate */
            int32_t *c = s->cand + (size_t)n * K;
            int m = 1;
            c[0] = i;
            for (int tries = 0; m < K && tries < 8 * J; tries++) {
                int j = (int)ts_rng_below(rng, (uint64_t)B);
                if (s->mark[j] != n + 1 && may_negate(a.qid, a.doc, a.lab, i, j, s->group_neg)) {
                    s->mark[j] = n + 1;
                    c[m++] = j;
                }
            }
            for (; m < K; m++) c[m] = -1;
        }
        s->ridx[i] = n++;
    }
    a.r0[ntask] = a.n = n;
    s->oom = 0;
    if (train) memset(s->dz, 0, (size_t)n * K * sizeof(float));
    ts_ctx_parallel(par, ntask, logit_task, &a);
    if (s->oom) return ts_fail(e, "hybrid: out of memory");
    *loss = 0;
    if (n == 0) return 0;
    if (a.loss_in_task) {
        for (int t = 0; t < ntask; t++) {
            if (a.rc[t]) return ts_fail(e, "%s", s->terr[t].msg);
            *loss += a.loss[t];
        }
    } else if (H->loss->eval(H->loss_state, n, K, s->z, s->y, NULL, loss, train ? s->dz : NULL,
                             train ? H->grad_scale : 0.0f, e)) {
        return -1;
    }
    if (!train) return 0;
    ts_ctx_parallel(par, ntask, dc_task, &a);
    ts_ctx_parallel(H->ctx, ntask, grad_task, &a);
    float dgamma = 0;
    for (int t = 0; t < ntask; t++) dgamma += a.dgamma[t];
    if (s->gamma) s->gamma->g[0] += dgamma;
    return 0;
}

static int grow(match_state *s, long need)
{
    if (need <= s->cap) return 0;
    long nc = s->cap ? s->cap : 4096;
    while (nc < need) nc *= 2;
    float *eq = realloc(s->eq, (size_t)nc * s->E * sizeof(float));
    if (eq) s->eq = eq;
    float *ed = realloc(s->ed, (size_t)nc * s->E * sizeof(float));
    if (ed) s->ed = ed;
    float *sc = realloc(s->score, (size_t)nc * sizeof(float));
    if (sc) s->score = sc;
    float *lb = realloc(s->label, (size_t)nc * sizeof(float));
    if (lb) s->label = lb;
    int32_t *qi = realloc(s->qid, (size_t)nc * sizeof(int32_t));
    if (qi) s->qid = qi;
    int32_t *dc = realloc(s->doc, (size_t)nc * sizeof(int32_t));
    if (dc) s->doc = dc;
    if (!eq || !ed || !sc || !lb || !qi || !dc) return -1;
    s->cap = nc;
    return 0;
}

static int forward(ts_head *H, ts_phase phase, double *loss, ts_err *e)
{
    match_state *s = H->state;
    if (s->hybrid) hy_begin(&s->sc);   /* the statistics, as the frozen parameters hold them */
    if (phase == TS_TRAIN) return batch_loss(H, ts_ctx_rng(H->ctx), 1, loss, e);
    if (batch_loss(H, &s->eval_rng, 0, loss, e)) return -1;
    const int B = H->in[0]->dim[0], E = s->E;
    if (grow(s, s->n + B))
        return ts_fail(e, "match: out of memory while collecting the evaluation");
    const ts_tensor *gq = ts_ctx_field(H->ctx, s->group_field);
    const ts_tensor *gd = ts_ctx_field(H->ctx, s->doc_field);
    for (int i = 0; i < B; i++) {
        long r = s->n + i;
        float *oq = s->eq + (size_t)r * E, *od = s->ed + (size_t)r * E;
        memcpy(oq, s->qh + (size_t)i * E, (size_t)E * sizeof(float));
        memcpy(od, s->dh + (size_t)i * E, (size_t)E * sizeof(float));
        s->score[r] = s->C[(size_t)i * B + i];
        if (s->hybrid) {   /* R of the row's own pair, for rank = group and the AUC */
            const ts_tensor *QW = H->in[2], *DW = H->in[3];
            const ts_tensor *PR = H->nin == 5 ? H->in[4] : NULL;
            const float gamma = s->gamma ? s->gamma->w[0] : s->gamma0;
            if (hy_query(&s->sc, QW->ids + QW->off[i], QW->off[i + 1] - QW->off[i]))
                return ts_fail(e, "hybrid: out of memory");
            s->score[r] = gamma * s->score[r] +
                          hy_pair(&s->sc, s->score[r], DW->ids + DW->off[i],
                                  DW->off[i + 1] - DW->off[i],
                                  PR ? PR->x + (size_t)i * s->sc.P : NULL, -1);
            hy_query_end(&s->sc);
        }
        s->label[r] = H->label ? H->label->x[i] : 1.0f;
        s->qid[r] = gq ? gq->ids[i] : (int32_t)r;
        s->doc[r] = gd ? gd->ids[i] : (int32_t)r;
    }
    s->n += B;
    if (s->hybrid && s->all_mode && hy_collect(&s->sc, H, B))
        return ts_fail(e, "hybrid: out of memory while collecting the evaluation");
    return 0;
}

static int eval_begin(ts_head *H, ts_phase phase, ts_err *e)
{
    (void)phase; (void)e;
    match_state *s = H->state;
    s->n = 0;
    if (s->hybrid) hy_eval_begin(&s->sc);
    ts_rng_seed(&s->eval_rng, ts_ctx_seed(H->ctx) ^ 0x6d61746368ull);
    return 0;
}

/* The hybrid's R of query row r0 against every distinct document, from their cosines in sc. */
static int hybrid_all(match_state *s, long r0, const rk_groups *g, float *sc)
{
    hy_scorer *h = &s->sc;
    const float gamma = s->gamma ? s->gamma->w[0] : s->gamma0;
    if (hy_query(h, HY_QW(h, r0), HY_QN(h, r0))) return -1;
    for (long c = 0; c < g->nd; c++) {
        long dr = g->doc_row[c];
        sc[c] = gamma * sc[c] + hy_pair(h, sc[c], HY_DW(h, dr), HY_DN(h, dr), HY_PRIOR(h, dr), -1);
    }
    hy_query_end(h);
    return 0;
}

static int eval_end(ts_head *H, ts_phase phase, ts_err *e)
{
    (void)phase;
    match_state *s = H->state;
    const int E = s->E;
    if (s->hybrid) hy_begin(&s->sc);
    rk_groups g;
    if (rk_groups_make(&g, s->qid, s->doc, s->n))
        return ts_fail(e, "match: out of memory while ranking");
    long ncand = s->all_mode ? g.nd : 1;
    for (long q = 0; q < g.nq; q++) {
        long m = g.qstart[q + 1] - g.qstart[q];
        if (m > ncand && !s->all_mode) ncand = m;
    }
    float *sc = malloc((size_t)(ncand + 1) * sizeof(float));
    uint32_t *tie = malloc((size_t)(ncand + 1) * sizeof(uint32_t));
    long *rel = malloc((size_t)(ncand + 1) * sizeof(long));
    long *ranks = malloc((size_t)(ncand + 1) * sizeof(long));
    float *Dm = s->all_mode ? malloc((size_t)(g.nd + 1) * E * sizeof(float)) : NULL;
    if (!sc || !tie || !rel || !ranks || (s->all_mode && !Dm)) {
        free(sc); free(tie); free(rel); free(ranks); free(Dm); rk_groups_free(&g);
        return ts_fail(e, "match: out of memory while ranking %ld documents", g.nd);
    }
    rk_acc acc = {0};
    if (s->all_mode) {
        for (long c = 0; c < g.nd; c++) {
            memcpy(Dm + (size_t)c * E, s->ed + (size_t)g.doc_row[c] * E, (size_t)E * sizeof(float));
            tie[c] = rk_tie(s->doc[g.doc_row[c]]);
        }
    }
    for (long q = 0; q < g.nq; q++) {
        const long *rows = g.order + g.qstart[q];
        long m = g.qstart[q + 1] - g.qstart[q], R = 0;
        if (s->all_mode) {
            /* scores of the query against every distinct document: (nd, E) x (E) */
            cblas_sgemv(CblasRowMajor, CblasNoTrans, (int)g.nd, E, 1.0f, Dm, E,
                        s->eq + (size_t)rows[0] * E, 1, 0.0f, sc, 1);
            if (s->hybrid && hybrid_all(s, rows[0], &g, sc)) {
                free(sc); free(tie); free(rel); free(ranks); free(Dm); rk_groups_free(&g);
                return ts_fail(e, "hybrid: out of memory while ranking");
            }
            for (long k = 0; k < m; k++)
                if (s->label[rows[k]] > 0.5f) {
                    long c = g.cand[rows[k]], dup = 0;
                    for (long t = 0; t < R; t++) dup |= rel[t] == c;
                    if (!dup) rel[R++] = c;
                }
            rk_add(&acc, sc, tie, g.nd, rel, R, ranks);
        } else {
            for (long k = 0; k < m; k++) {
                sc[k] = s->score[rows[k]];
                tie[k] = rk_tie(s->doc[rows[k]]);
                if (s->label[rows[k]] > 0.5f) rel[R++] = k;
            }
            rk_add(&acc, sc, tie, m, rel, R, ranks);
        }
    }
    rk_report(H->ctx, H->name, &acc);
    if (!s->all_mode) ts_metric(H->ctx, H->name, "auc", ts_auc(s->score, s->label, NULL, s->n));
    if (s->gamma) ts_metric(H->ctx, H->name, "gamma", s->gamma->w[0]);
    free(sc); free(tie); free(rel); free(ranks); free(Dm); rk_groups_free(&g);
    return 0;
}

static void destroy(ts_head *H)
{
    match_state *s = H->state;
    if (!s) return;
    free(s->qn); free(s->dn); free(s->z); free(s->dz); free(s->cosv); free(s->cand);
    free(s->qh); free(s->dh); free(s->dqh); free(s->ddh); free(s->C); free(s->dC);
    free(s->terr); free(s->ridx); free(s->mark); free(s->y);
    free(s->eq); free(s->ed); free(s->score); free(s->label); free(s->qid); free(s->doc);
    hy_free(&s->sc);
    free(s);
    H->state = NULL;
}

/* The last evaluation's score of every row's own pair (the cosine; the hybrid's R) and labels,
 * in the order of the split's rows. */
static int predictions(ts_head *H, const float **score, const float **label, long *n)
{
    match_state *s = H->state;
    if (!s || !s->score) return -1;
    *score = s->score;
    *label = s->label;
    *n = s->n;
    return 0;
}

static int init_hybrid(ts_head *H, ts_err *e)
{
    match_state *s = H->state;
    return hy_init(&s->sc, H, e);
}


/* A failed build frees what it allocated: the host calls destroy only after a build succeeded. */
static int build(ts_head *H, const ts_cfg *cfg, ts_err *e)
{
    if (build_impl(H, cfg, 0, e) == 0) return 0;
    destroy(H);
    return -1;
}
static int build_hybrid(ts_head *H, const ts_cfg *cfg, ts_err *e)
{
    if (build_impl(H, cfg, 1, e) == 0) return 0;
    destroy(H);
    return -1;
}
static const ts_head_ops ops = {
    .size = sizeof(ts_head_ops),
    .build = build, .forward = forward, .eval_begin = eval_begin, .eval_end = eval_end,
    .destroy = destroy, .predictions = predictions,
    .check_inputs = "f32 5 4; f32 5 4", .check_label = "binary",
    .check_keys = "loss=softmax_ce negatives=4 learn_gamma=true gamma=5"};
static const ts_head_ops hybrid_ops = {
    .size = sizeof(ts_head_ops),
    .build = build_hybrid, .forward = forward, .eval_begin = eval_begin, .eval_end = eval_end,
    .destroy = destroy, .predictions = predictions,
    .check_inputs = "f32 6 4; f32 6 4; bags 6 1 vocab=9; bags 6 1 vocab=9; f32 6 2",
    .check_label = "binary",
    .check_keys = "loss=softmax_ce negatives=4 learn_gamma=true gamma=5 stats=uniform "
                  "scorer_units=3 lexical=bm25,log_bm25,overlap,idf_overlap,bigram,doc_overlap",
    .init = init_hybrid};
static const ts_plugin plugin = {
    TS_ABI, sizeof(ts_plugin), TS_HEAD, "match", "1.0",
    "DSSM matching: gamma*cos(q,d), softmax over in-batch negatives; ranking MRR/MAP/NDCG/Recall",
    keys, &ops};
static const ts_plugin hybrid_plugin = {
    TS_ABI, sizeof(ts_plugin), TS_HEAD, "hybrid", "1.0",
    "hybrid lexical-semantic matching: gamma*cos + a learned scorer of cos, BM25/exact-match "
    "features and a document prior; ranks like match", hybrid_keys, &hybrid_ops};

const ts_plugin *tessera_plugin_entry(uint32_t i)
{
    return i == 0 ? &plugin : i == 1 ? &hybrid_plugin : NULL;
}
