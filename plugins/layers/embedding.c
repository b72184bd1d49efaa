/* embedding.c — a lookup table of dense vectors for categorical ids.
 *
 * Input: ids (B, F), F categorical fields that share one id space of size vocab (the dataset
 * offsets each field's ids). Output: (B, F*dim), the F looked-up vectors side by side, or with
 * `layout = fields` (B, F, dim), one vector per field (what fm and other per-field interaction
 * layers take). The two layouts hold the same values in the same order.
 * The table (vocab, dim) is a sparse parameter: backward adds into the rows the batch used and
 * marks them touched, so the optimizer costs what the batch touches, not what the vocabulary is.
 * `pretrained` fills rows from a word2vec text file (read at build, copied into the table by the
 * init op, before a resumed run restores its trained rows); `trainable = false` freezes the table.
 * It is not a bag-of-ids pooling layer (see embedding_bag) and does not handle padding ids.
 */
#include "tessera.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct embedding_state {
    int fields, dim;            /* F, dim */
    int64_t vocab;
    ts_param *table;            /* (vocab, dim), TS_PARAM_SPARSE (| TS_PARAM_FROZEN) */
    float *pre;                 /* (vocab, dim) pretrained vectors read at build, NULL without
                                   and once init has copied them into table->w */
    uint8_t *pre_have;          /* (vocab) 1 when the file gave the row */
    long pre_loaded;            /* rows the file gave */
    long pre_missing;           /* ids in [0, vocab) the file did not give: they keep their init */
    long pre_outside;           /* rows of the file whose id lies outside [0, vocab): ignored */
} embedding_state;

/* out (B, F*dim) or (B, F, dim), the same cells: row b, slot f = table[ids[b, f]].
 * Small widths get a copy of constant size (one or two vector moves, no memcpy call per
 * lookup: census has 32 fields of dim 4, 32k lookups per batch of 1024). */
#define GATHER_FIXED(D)                                                                       \
    for (long i = 0; i < n; i++)                                                              \
        memcpy(out + i * (D), table + (long)ids[i] * (D), sizeof(float) * (D))
static void gather(const int32_t *ids, const float *table, float *out, long n, int dim)
{
    switch (dim) {
    case 1: GATHER_FIXED(1); break;
    case 2: GATHER_FIXED(2); break;
    case 4: GATHER_FIXED(4); break;
    case 8: GATHER_FIXED(8); break;
    case 16: GATHER_FIXED(16); break;
    default:
        for (long i = 0; i < n; i++)
            memcpy(out + i * dim, table + (long)ids[i] * dim, sizeof(float) * (size_t)dim);
    }
}

/* g[ids[i]] += dout[i] for each of the n = B*F lookups, marking the rows touched (only rows
 * not yet marked call ts_param_touch). The additions are the same, in the same order, for
 * every width; small widths get a loop of constant length. */
#define SCATTER_FIXED(D)                                                                      \
    for (long i = 0; i < n; i++) {                                                            \
        float *g = p->g + (long)ids[i] * (D);                                                 \
        const float *d = dout + i * (D);                                                      \
        for (int j = 0; j < (D); j++) g[j] += d[j];                                           \
        if (!touched || !touched[ids[i]]) ts_param_touch(p, ids[i]);                          \
    }
static void scatter_add(const int32_t *ids, const float *dout, ts_param *p, long n, int dim)
{
    const uint8_t *touched = (const uint8_t *)p->is_touched;
    switch (dim) {
    case 1: SCATTER_FIXED(1); break;
    case 2: SCATTER_FIXED(2); break;
    case 4: SCATTER_FIXED(4); break;
    case 8: SCATTER_FIXED(8); break;
    case 16: SCATTER_FIXED(16); break;
    default: SCATTER_FIXED(dim); break;
    }
}

/* Skips blanks; returns the next token's start (NUL at the end of the line). */
static char *skip_blank(char *p)
{
    while (*p == ' ' || *p == '\t') p++;
    return p;
}

/* Reads a word2vec text file: "count dim", then "id v1 .. vdim" per line. */
static int load_pretrained(embedding_state *s, ts_ctx *ctx, const char *name, const char *file,
                           ts_err *e)
{
    char path[4096];
    ts_ctx_path(ctx, file, path, sizeof path);
    s->pre = calloc((size_t)s->vocab * (size_t)s->dim, sizeof(float));
    s->pre_have = calloc((size_t)s->vocab, 1);
    float *v = malloc(sizeof(float) * (size_t)s->dim);   /* (dim) the row being read */
    if (!s->pre || !s->pre_have || !v) {
        free(v);
        return ts_fail(e, "layer.%s: out of memory for a %lld x %d pretrained table", name,
                       (long long)s->vocab, s->dim);
    }
    ts_lines *r = ts_lines_open(path, e);
    if (!r) {
        free(v);
        return -1;
    }
    int rc = -1;
    char *line, *end;
    size_t len;
    long count = -1, rows = 0;
    while ((line = ts_lines_next(r, &len))) {
        long ln = ts_lines_lineno(r);
        char *p = skip_blank(line);
        if (*p == '\0') continue;                    /* blank lines are harmless */
        if (count < 0) {
            errno = 0;
            count = strtol(p, &end, 10);
            long d = end > p ? strtol(end, &end, 10) : -1;
            if (errno || end == p || count < 0 || *skip_blank(end) != '\0') {
                ts_fail(e, "%s:%ld: expected the word2vec header `count dim`; give a word2vec "
                        "text file", path, ln);
                goto done;
            }
            if (d != s->dim) {
                ts_fail(e, "%s:%ld: the vectors have %ld dimensions but layer.%s has dim = %d; "
                        "set dim = %ld or use another file", path, ln, d, name, s->dim, d);
                goto done;
            }
            continue;
        }
        errno = 0;
        long id = strtol(p, &end, 10);
        if (errno || end == p || (*end != ' ' && *end != '\t')) {
            ts_fail(e, "%s:%ld: expected an integer id at the start of the line; this layer "
                    "reads ids, not words (map words to ids first)", path, ln);
            goto done;
        }
        int k = 0;
        for (p = skip_blank(end); *p; p = skip_blank(end)) {
            if (k == s->dim) { k++; break; }
            v[k] = strtof(p, &end);
            if (end == p || !isfinite(v[k])) {
                ts_fail(e, "%s:%ld: value %d is not a finite number; fix the file", path, ln,
                        k + 1);
                goto done;
            }
            k++;
        }
        if (k != s->dim) {
            ts_fail(e, "%s:%ld: expected %d values after the id, found %s%d; the file's "
                    "dimension does not match dim = %d of layer.%s", path, ln, s->dim,
                    k > s->dim ? "more than " : "", k > s->dim ? s->dim : k, s->dim, name);
            goto done;
        }
        rows++;
        if (id < 0 || id >= s->vocab) { s->pre_outside++; continue; }
        memcpy(s->pre + id * s->dim, v, sizeof(float) * (size_t)s->dim);
        if (!s->pre_have[id]) s->pre_loaded++;
        s->pre_have[id] = 1;
    }
    if (ts_lines_error(r, e)) goto done;
    if (count < 0) {
        ts_fail(e, "%s: the file is empty; give a word2vec text file", path);
        goto done;
    }
    if (rows != count) {
        ts_fail(e, "%s: the header announces %ld vectors but the file holds %ld; it may be "
                "truncated", path, count, rows);
        goto done;
    }
    s->pre_missing = (long)s->vocab - s->pre_loaded;
    rc = 0;
done:
    free(v);
    ts_lines_close(r);
    return rc;
}

static int build_impl(ts_layer *L, const ts_cfg *cfg, ts_err *e)
{
    char sh[96];
    if (L->nin != 1)
        return ts_fail(e, "%s: layer.%s takes one input of ids, got %d inputs; give it one field "
                       "of (B, F) ids (the table reader joins categorical columns into one with "
                       "[data] groups = NAME(col1 col2 ...)), or one embedding layer per field",
                       ts_cfg_where(cfg, "input"), L->name, L->nin);
    const ts_tensor *in = L->in[0];
    if (in->dtype != TS_I32 || in->ndim > 2 || in->vocab < 1)
        return ts_fail(e, "%s: layer.%s (embedding) needs ids (B, F) with a vocabulary, got %s; "
                       "use embedding_bag for bags of ids", ts_cfg_where(cfg, "input"), L->name,
                       ts_shape_str(in, sh, sizeof sh));
    long dim;
    int init, trainable, per_field, shard;
    double scale;
    if (ts_cfg_int(cfg, "dim", &dim, e) || ts_cfg_choice(cfg, "init", "normal|uniform", &init, e)
        || ts_cfg_float(cfg, "scale", &scale, e) || ts_cfg_bool(cfg, "trainable", &trainable, e)
        || ts_cfg_choice(cfg, "layout", "flat|fields", &per_field, e)
        || ts_cfg_choice(cfg, "shard", "none|rows", &shard, e))
        return -1;
    if (dim < 1 || dim > 65536)
        return ts_fail(e, "%s: dim = %ld is out of range; use 1 to 65536",
                       ts_cfg_where(cfg, "dim"), dim);
    embedding_state *s = calloc(1, sizeof *s);
    if (!s) return ts_fail(e, "layer.%s: out of memory", L->name);
    L->state = s;
    s->fields = in->ndim == 2 ? in->dim[1] : 1;
    s->dim = (int)dim;
    s->vocab = in->vocab;
    if (s->vocab > INT32_MAX || s->vocab * s->dim > (1LL << 34))
        return ts_fail(e, "layer.%s: a %lld x %d table is too large; lower dim or the vocabulary",
                       L->name, (long long)s->vocab, s->dim);
    const char *pre = ts_cfg_str(cfg, "pretrained");
    if (pre && *pre && load_pretrained(s, L->ctx, L->name, pre, e)) return -1;
    unsigned flags = TS_PARAM_SPARSE | (trainable ? 0u : TS_PARAM_FROZEN) |
                     (shard ? TS_PARAM_SHARDED : 0u);
    if (shard && s->pre)
        return ts_fail(e, "%s: layer.%s: shard = rows with pretrained is not supported; give one "
                       "of them", ts_cfg_where(cfg, "shard"), L->name);
    s->table = ts_param_add(L->ctx, "table", (int)s->vocab, s->dim,
                            init == 0 ? TS_INIT_NORMAL : TS_INIT_UNIFORM, (float)scale, flags, e);
    if (!s->table) return -1;
    ts_tensor *out = &L->out[0];
    out->dtype = TS_F32;
    out->dim[0] = in->dim[0];
    if (per_field) {                      /* (B, F, dim) */
        out->ndim = 3;
        out->dim[1] = s->fields;
        out->dim[2] = s->dim;
    } else {                              /* (B, F*dim) */
        out->ndim = 2;
        out->dim[1] = s->fields * s->dim;
    }
    return 0;
}

/* The arena exists only after build: the host calls init once it is allocated and initialised,
 * and before a resume restores the trained table, so the file's rows replace the init only. */
static int init(ts_layer *L, ts_err *e)
{
    (void)e;
    embedding_state *s = L->state;
    if (!s->pre) return 0;
    for (int64_t r = 0; r < s->vocab; r++)
        if (s->pre_have[r])
            memcpy(s->table->w + r * s->dim, s->pre + r * s->dim, sizeof(float) * (size_t)s->dim);
    free(s->pre);
    s->pre = NULL;
    return 0;
}

static int forward(ts_layer *L, ts_phase phase, ts_err *e)
{
    (void)phase;
    embedding_state *s = L->state;
    const ts_tensor *in = L->in[0];
    long n = (long)in->dim[0] * s->fields;
    for (long i = 0; i < n; i++)
        if (in->ids[i] < 0 || in->ids[i] >= s->vocab)
            return ts_fail(e, "layer.%s: id %d at row %ld is outside [0, %lld); the dataset "
                           "declared a smaller vocabulary than it produces", L->name,
                           in->ids[i], i / s->fields, (long long)s->vocab);
    if (s->table->flags & TS_PARAM_SHARDED)      /* rows from their ranks (a collective) */
        return ts_param_shard_gather(s->table, in->ids, n, L->out[0].x, e);
    gather(in->ids, s->table->w, L->out[0].x, n, s->dim);
    return 0;
}

static int backward(ts_layer *L, ts_err *e)
{
    embedding_state *s = L->state;
    if (s->table->flags & TS_PARAM_FROZEN) return 0;  /* nothing learns: leave g untouched */
    const ts_tensor *in = L->in[0];
    if (s->table->flags & TS_PARAM_SHARDED)      /* gradient rows to their ranks */
        return ts_param_shard_scatter(s->table, in->ids, (long)in->dim[0] * s->fields,
                                      L->out[0].dx, e);
    scatter_add(in->ids, L->out[0].dx, s->table, (long)in->dim[0] * s->fields, s->dim);
    return 0;
}

static void destroy(ts_layer *L)
{
    embedding_state *s = L->state;
    if (s) {
        free(s->pre);
        free(s->pre_have);
    }
    free(s);
    L->state = NULL;
}

static const ts_key keys[] = {
    {"dim", "int", NULL, "width of each field's vector"},
    {"init", "choice:normal|uniform", "normal", "initialisation of the table"},
    {"scale", "float", "0.05", "standard deviation (normal) or half-width (uniform) of the init"},
    {"pretrained", "string", "", "word2vec text file (`count dim`, then `id v1 .. vdim`) whose "
     "vectors replace the init of their rows"},
    {"trainable", "bool", "true", "false freezes the table (useful with pretrained)"},
    {"layout", "choice:flat|fields", "flat", "flat: (B, F*dim), the fields side by side; "
     "fields: (B, F, dim), one vector per field (for fm, reduce)"},
    {"shard", "choice:none|rows", "none", "rows: split the table by rows across MPI ranks (row r "
     "on rank r % ranks; lookups and gradient rows travel by MPI_Alltoallv, docs/scale.md); in "
     "one process the whole table"},
    {NULL, NULL, NULL, NULL}};

/* The pretrained table's counts, so a user sees how much of the vocabulary the file covered:
 * DIR/pretrained_NAME.csv (only when the layer read a file). */
static int report(ts_layer *L, const char *dir, ts_err *e)
{
    const embedding_state *s = L->state;
    if (!s->pre_loaded && !s->pre_missing && !s->pre_outside) return 0;
    char path[4096];
    snprintf(path, sizeof path, "%s/pretrained_%s.csv", dir, L->name);
    FILE *f = fopen(path, "w");
    if (!f) return ts_fail(e, "%s: cannot write", path);
    fprintf(f, "layer,rows_loaded,ids_missing_kept_init,file_rows_outside_vocab\n%s,%ld,%ld,%ld\n",
            L->name, s->pre_loaded, s->pre_missing, s->pre_outside);
    return fclose(f) ? ts_fail(e, "%s: write failed", path) : 0;
}

/* A build that fails frees what it allocated itself (tessera.h): destroy() takes a partial
 * state. */
static int build(ts_layer *L, const ts_cfg *cfg, ts_err *e)
{
    if (build_impl(L, cfg, e) == 0) return 0;
    destroy(L);
    return -1;
}

static const ts_layer_ops ops = {.size = sizeof(ts_layer_ops),
    .build = build, .forward = forward, .backward = backward,
    .destroy = destroy, .report = report, .check_inputs = "i32 4 3 vocab=20", .check_keys = "dim=5",
    .init = init, .concurrency = TS_REPLICA_SAFE | TS_BRANCH_SAFE};

static const ts_plugin plugin = {TS_ABI, sizeof(ts_plugin), TS_LAYER, "embedding", "1.0",
    "lookup table for categorical ids (B, F) -> (B, F*dim) or (B, F, dim), sparse gradients",
    keys, &ops};

const ts_plugin *tessera_plugin_entry(uint32_t i) { return i == 0 ? &plugin : NULL; }
