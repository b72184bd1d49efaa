/* popularity.c — the most-popular baseline of next-item recall: every user gets the items
 * ranked by training frequency (the dataset's aux item_freq, else the labels it saw in
 * training), minus what the user already watched. No loss and no parameters; it reports the
 * same figures as the retrieval head (recall@K = hit rate, ndcg@K, mrr), so a learned model
 * must beat it. Not a trainable head: its input is ignored (any field will do). */
#include "tessera.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define POP_MAXK 8

typedef struct {
    int items, nk, k[POP_MAXK], use_aux;
    const ts_tensor *ex;        /* (B, 1) bags of items to exclude, or NULL */
    float *count;               /* (items) the dataset's item_freq: the score of every user */
    ts_param *counted;          /* (1, items) without item_freq: the labels seen in training, a
                                 * frozen parameter so checkpoints keep the counts */
    float *s;                   /* (items) one row's scores with its watched items at -inf */
    double hit[POP_MAXK], ndcg[POP_MAXK], rr; long n;
} pop_state;

static const ts_key keys[] = {
    {"items", "int", "0", "catalogue size; 0 = from the dataset's item_freq"},
    {"exclude_watched", "string", "history", "a bags field of items never to recommend; none = keep all"},
    {"k", "list", "10,50,100", "cut-offs K of recall@K and ndcg@K"},
    {NULL, NULL, NULL, NULL}};

static int build_impl(ts_head *H, const ts_cfg *cfg, ts_err *e)
{
    pop_state *P = calloc(1, sizeof *P);
    if (!P) return ts_fail(e, "out of memory");
    H->state = P;
    long items;
    char kl[POP_MAXK + 1][TS_NAME_MAX];
    if (ts_cfg_int(cfg, "items", &items, e) || ts_cfg_list(cfg, "k", kl, POP_MAXK, &P->nk, e)) return -1;
    for (int i = 0; i < P->nk; i++)
        if ((P->k[i] = atoi(kl[i])) < 1)
            return ts_fail(e, "%s: k = %s: every cut-off must be a positive integer", ts_cfg_where(cfg, "k"), kl[i]);
    const char *exn = ts_cfg_str(cfg, "exclude_watched");
    if (exn && strcmp(exn, "none")) {
        P->ex = ts_ctx_field(H->ctx, exn);
        if (P->ex && P->ex->dtype != TS_BAGS)
            return ts_fail(e, "%s: exclude_watched = %s must name a bags field of item ids", ts_cfg_where(cfg, "exclude_watched"), exn);
    }
    const void *aux;
    long n = 0;
    const float *freq = ts_ctx_aux(H->ctx, "item_freq", &aux, &n) == 0 ? aux : NULL;
    if (items <= 0) items = freq ? n : 0;
    if (items <= 0) return ts_fail(e, "%s: set items = the catalogue size (the dataset offers no item_freq)", ts_cfg_section(cfg));
    P->items = (int)items;
    ts_head_label_classes(H, items);   /* the host checks every label is in [0, items) */
    P->s = malloc((size_t)items * sizeof(float));
    if (!P->s) return ts_fail(e, "out of memory");
    if (freq && n == items) {
        if (!(P->count = malloc((size_t)items * sizeof(float)))) return ts_fail(e, "out of memory");
        memcpy(P->count, freq, (size_t)items * sizeof(float));
        P->use_aux = 1;
    } else if (!(P->counted = ts_param_add(H->ctx, "count", 1, (int)items, TS_INIT_ZEROS, 0,
                                           TS_PARAM_FROZEN, e))) {
        return -1;
    }
    return 0;
}

static int forward(ts_head *H, ts_phase phase, double *loss, ts_err *e)
{
    pop_state *P = H->state;
    int B = H->in[0]->dim[0];
    *loss = 0;
    if (!H->label) return ts_fail(e, "head %s: set label = the next-item field", H->name);
    float *count = P->use_aux ? P->count : P->counted->w;   /* (items) */
    for (int r = 0; r < B; r++) {
        float y = H->label->x[r];
        if (!(y >= 0 && y < P->items) || y != (float)(int)y)
            return ts_fail(e, "head %s: label %g of row %d is not an item index in [0, %d); check items =", H->name, y, r, P->items);
        int t = (int)y;
        if (phase == TS_TRAIN) {                    /* without item_freq: count training labels */
            if (!P->use_aux) count[t] += 1;
            continue;
        }
        memcpy(P->s, count, (size_t)P->items * sizeof(float));
        int excluded = 0;
        if (P->ex)
            for (int32_t q = P->ex->off[r]; q < P->ex->off[r + 1]; q++) {
                int32_t it = P->ex->ids[q];
                if (it >= 0 && it < P->items) { P->s[it] = -INFINITY; excluded |= it == t; }
            }
        P->n++;
        if (excluded) continue;                     /* a watched target is a miss */
        long k = ts_rank_of(P->s, P->items, t);
        P->rr += 1.0 / k;
        for (int q = 0; q < P->nk; q++)
            if (k <= P->k[q]) { P->hit[q] += 1; P->ndcg[q] += 1.0 / log2(k + 1.0); }
    }
    return 0;
}

static int eval_begin(ts_head *H, ts_phase phase, ts_err *e)
{
    pop_state *P = H->state;
    memset(P->hit, 0, sizeof P->hit); memset(P->ndcg, 0, sizeof P->ndcg);
    P->rr = 0; P->n = 0;
    return 0;
}

static int eval_end(ts_head *H, ts_phase phase, ts_err *e)
{
    pop_state *P = H->state;
    if (P->n == 0) return ts_fail(e, "head %s: no example was evaluated", H->name);
    char name[32];
    for (int q = 0; q < P->nk; q++) {
        snprintf(name, sizeof name, "recall@%d", P->k[q]);
        ts_metric(H->ctx, H->name, name, P->hit[q] / P->n);
    }
    for (int q = 0; q < P->nk; q++) {
        snprintf(name, sizeof name, "ndcg@%d", P->k[q]);
        ts_metric(H->ctx, H->name, name, P->ndcg[q] / P->n);
    }
    ts_metric(H->ctx, H->name, "mrr", P->rr / P->n);
    return 0;
}

static void destroy(ts_head *H)
{
    pop_state *P = H->state;
    if (!P) return;
    free(P->count); free(P->s); free(P);
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
    .eval_end = eval_end, .destroy = destroy, .check_inputs = "f32 5 4", .check_label = "class 7",
    .check_keys = "items=7 k=1,3"};
static const ts_plugin plugin = {TS_ABI, sizeof(ts_plugin), TS_HEAD, "popularity", "1.0",
    "most-popular baseline for next-item recall: recall@K / ndcg@K / mrr, watched items excluded", keys, &ops};
const ts_plugin *tessera_plugin_entry(uint32_t i) { return i == 0 ? &plugin : NULL; }
