/* item_tower.h — the item tower of the retrieval head (plugins/heads/item_tower.c): an item's
 * vector computed from its id embedding and the mean embeddings of its feature bags (genres),
 * through dense layers, instead of one free vector per item id.
 *
 *   x_i = [ e_id(i) ; mean_{g in bag_1(i)} T_1[g] ; ... ]          (din)
 *   h_1 = relu(W_1 x_i + c_1), ...,  v_i = W_L h_{L-1} + c_L        (D, the user vector's width)
 *
 * The feature bags come from the dataset's aux arrays PREFIX_off (int32, items + 1 offsets),
 * PREFIX_ids (int32 ids) and PREFIX_vocab (one long), docs/data.md "Aux arrays". Compiled into
 * retrieval.so; not a plugin of its own and not part of libtessera. */
#ifndef TS_PLUGINS_ITEM_TOWER_H
#define TS_PLUGINS_ITEM_TOWER_H

#include "tessera.h"

#define RT_TOWER_MAXBAGS 4      /* feature bags (aux prefixes) of one tower */
#define RT_TOWER_MAXLAYERS 4    /* dense layers: hidden ones plus the last, linear one */

typedef struct rt_bag {
    char prefix[TS_NAME_MAX];   /* "item_feature": the aux arrays PREFIX_off, _ids, _vocab */
    const int32_t *off;         /* (items + 1) item i's ids are ids[off[i] .. off[i + 1]) */
    const int32_t *ids;         /* (off[items]) feature ids in [0, vocab) */
    long vocab;
    int col;                    /* where the bag's mean starts in x */
    ts_param *T;                /* (vocab, F) feature embeddings */
} rt_bag;

typedef struct rt_tower {
    int items, D, E, F, din, nbag, nlayer, maxn;
    int units[RT_TOWER_MAXLAYERS + 1];   /* units[0] = din, ..., units[nlayer] = D */
    ts_param *id;               /* (items, E) id embeddings, or NULL (item_tower = features) */
    rt_bag bag[RT_TOWER_MAXBAGS];
    ts_param *W[RT_TOWER_MAXLAYERS];     /* (units[l + 1], units[l]) */
    ts_param *c[RT_TOWER_MAXLAYERS];     /* (1, units[l + 1]) */
    float *h[RT_TOWER_MAXLAYERS + 1];    /* (maxn, units[l]) activations; h[0] = x, h[nlayer] = v */
    float *dh[RT_TOWER_MAXLAYERS + 1];   /* (maxn, units[l]) their gradients */
    int32_t *all;               /* (items) 0, 1, ..., items - 1 */
} rt_tower;

/* 1 when item_tower names features (the head's item vectors come from a tower), else 0; a
 * malformed value is 0 here and an error of rt_tower_build. */
int rt_tower_wanted(const ts_cfg *cfg);
/* Reads the tower keys of the retrieval head's section (item_tower, item_features,
 * item_id_dim, item_feature_dim, item_tower_units). *T = NULL when item_tower = id (the free
 * vector per item: the caller's own path); else a tower with its parameters declared (tables
 * sparse when `sparse`), able to run maxn items at once. -1 with FILE:LINE on bad keys or on a
 * missing or malformed aux array. */
int rt_tower_build(rt_tower **T, ts_ctx *ctx, const ts_cfg *cfg, int items, int D, int maxn,
                   int sparse, ts_err *e);
/* The vectors (n, D) of items[0..n), n <= maxn; valid until the next call. */
const float *rt_tower_forward(rt_tower *T, const int32_t *items, int n);
/* The buffer (maxn, D) the caller fills with d loss / d v for the n items of the last
 * forward, before rt_tower_backward. */
float *rt_tower_dv(rt_tower *T);
/* Adds the gradients of the last forward's n items into W, c, the id rows and the feature
 * rows (touching the rows of sparse tables). */
void rt_tower_backward(rt_tower *T, const int32_t *items, int n);
/* Every item's vector into V (items, D), maxn items per pass. */
void rt_tower_catalogue(rt_tower *T, float *V);
void rt_tower_free(rt_tower *T);

#endif
