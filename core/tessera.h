/* tessera.h — the one public header of tessera: tensors, parameters, configuration access,
 * errors, random numbers, shared metric kernels and the plugin ABI.
 *
 * A plugin includes this file only, links against libtessera and exports one symbol,
 * tessera_plugin_entry(). It is not the place for the host's own machinery (graph, loader,
 * training loop): those live in the core sources behind this interface.
 *
 * Conventions
 *  - Tensors are float32 (or int32 ids), row-major; dim[0] is the batch.
 *  - Every function that can fail returns 0 on success and -1 on failure, with a sentence in
 *    the ts_err it was given. Library and plugin code never prints and never exits.
 *  - backward() ACCUMULATES (+=) into input gradients and parameter gradients; the host zeroes
 *    them once per step.
 */
#ifndef TESSERA_H
#define TESSERA_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define TS_ABI 3u             /* bumped only when a field moves (see "The plugin ABI" below); 3: ops tables carry their size */
#define TS_MAX_DIMS 4         /* a tensor has 1..4 dimensions */
#define TS_MAX_IN 16          /* inputs of one layer or head */
#define TS_MAX_OUT 16         /* named outputs of one layer (MMoE: one per task) */
#define TS_MAX_FIELDS 64      /* fields of one dataset */
#define TS_NAME_MAX 64        /* longest name of a layer, field, output or parameter, with NUL */
#define TS_ERR_MAX 1024       /* longest error message, with NUL */

/* ------------------------------------------------------------------------------------------
 * Errors: a status is an int (0 ok, -1 failed); the message travels in a ts_err.
 * ------------------------------------------------------------------------------------------ */
typedef struct ts_err {
    char msg[TS_ERR_MAX];     /* one or more sentences: what went wrong and what to do */
} ts_err;

/* Formats the message into e (if e is not NULL) and returns -1, so `return ts_fail(...)`. */
int ts_fail(ts_err *e, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* ------------------------------------------------------------------------------------------
 * Random numbers: xoshiro256** seeded through splitmix64. Explicit state, no globals.
 * ------------------------------------------------------------------------------------------ */
typedef struct ts_rng {
    uint64_t s[4];            /* xoshiro256** state; never all zero */
} ts_rng;

void ts_rng_seed(ts_rng *r, uint64_t seed);
uint64_t ts_rng_next(ts_rng *r);                 /* 64 uniform bits */
double ts_rng_uniform(ts_rng *r);                /* [0, 1) with 53 bits */
double ts_rng_normal(ts_rng *r);                 /* N(0, 1), Box-Muller */
uint64_t ts_rng_below(ts_rng *r, uint64_t n);    /* uniform in [0, n), unbiased; n > 0 */
void ts_rng_shuffle(ts_rng *r, long *a, long n); /* Fisher-Yates */

/* ------------------------------------------------------------------------------------------
 * Tensors
 * ------------------------------------------------------------------------------------------ */
typedef enum ts_dtype {
    TS_F32 = 0,   /* x holds dim[0]*...*dim[ndim-1] floats; dx the same shape or NULL */
    TS_I32 = 1,   /* ids holds dim[0]*...*dim[ndim-1] ids in [0, vocab) */
    TS_BAGS = 2   /* a bag of ids per cell of (dim[0], dim[1]): cell c holds ids[off[c] .. off[c+1]) */
} ts_dtype;

typedef struct ts_tensor {
    ts_dtype dtype;            /* what the buffers below hold */
    int ndim;                  /* 1..TS_MAX_DIMS */
    int dim[TS_MAX_DIMS];      /* dim[0] = rows of this batch (at build: the largest batch) */
    float *x;                  /* TS_F32: values, (dim[0], ..., dim[ndim-1]) */
    float *dx;                 /* TS_F32: d loss / d x, same shape; NULL when nothing needs it */
    int32_t *ids;              /* TS_I32: (dim...) ids; TS_BAGS: every bag's ids, concatenated */
    int32_t *off;              /* TS_BAGS: (dim[0]*dim[1] + 1) offsets into ids; NULL otherwise */
    int32_t *len;              /* sequences: (dim[0]) valid steps along dim[1], 1..dim[1];
                                  NULL = every row uses all dim[1] steps */
    int64_t vocab;             /* TS_I32 / TS_BAGS: ids lie in [0, vocab) */
} ts_tensor;

/* Number of cells: dim[0]*...*dim[ndim-1]. */
long ts_numel(const ts_tensor *t);
/* Elements of one row: dim[1]*...*dim[ndim-1] (1 for a 1-d tensor). */
long ts_rowsize(const ts_tensor *t);
/* "(256, 16, 300) f32" into buf; returns buf. */
const char *ts_shape_str(const ts_tensor *t, char *buf, size_t n);

/* ------------------------------------------------------------------------------------------
 * Configuration: a plugin reads the keys of its own INI section through these getters.
 * The host has already rejected keys the plugin did not declare (ts_key lists) and filled
 * in declared defaults, so a getter only fails on a value of the wrong type or range; its
 * message names the file, line, section and key.
 * ------------------------------------------------------------------------------------------ */
typedef struct ts_cfg ts_cfg;

const char *ts_cfg_section(const ts_cfg *c);                 /* "layer.q_conv" */
const char *ts_cfg_str(const ts_cfg *c, const char *key);    /* value, default, or NULL */
/* "FILE:LINE" of the key (or of the section when the key is absent), for messages. */
const char *ts_cfg_where(const ts_cfg *c, const char *key);
int ts_cfg_int(const ts_cfg *c, const char *key, long *out, ts_err *e);
int ts_cfg_float(const ts_cfg *c, const char *key, double *out, ts_err *e);
int ts_cfg_bool(const ts_cfg *c, const char *key, int *out, ts_err *e);   /* true/false/1/0/yes/no/on/off */
/* A list split on commas and white space: up to max items of TS_NAME_MAX bytes. */
int ts_cfg_list(const ts_cfg *c, const char *key, char items[][TS_NAME_MAX], int max, int *n,
                ts_err *e);
/* A list of numbers: "0.6, 0.2, 0.2". */
int ts_cfg_floats(const ts_cfg *c, const char *key, double *out, int max, int *n, ts_err *e);
/* The value must be one of the words in choices ("sum|mean|max"); *out is its index. */
int ts_cfg_choice(const ts_cfg *c, const char *key, const char *choices, int *out, ts_err *e);

/* ------------------------------------------------------------------------------------------
 * Parameters: declared at build time, allocated by the host in one arena afterwards.
 * Read p->w and p->g at forward/backward time, never at build time (they are NULL then).
 * ------------------------------------------------------------------------------------------ */
typedef enum ts_init {
    TS_INIT_ZEROS = 0,
    TS_INIT_ONES,
    TS_INIT_CONST,            /* every weight = scale */
    TS_INIT_UNIFORM,          /* U(-scale, scale) */
    TS_INIT_NORMAL,           /* N(0, scale^2) */
    TS_INIT_XAVIER,           /* U(-a, a), a = sqrt(6 / (fan_in + fan_out)); fans = rows, cols */
    TS_INIT_HE                /* N(0, 2 / fan_in); fan_in = rows */
} ts_init;

enum {
    TS_PARAM_SPARSE = 1u,     /* rows are updated only when touched (embedding tables) */
    TS_PARAM_FROZEN = 2u,     /* never updated (a pretrained, non-trainable table) */
    TS_PARAM_SHARDED = 4u     /* with TS_PARAM_SPARSE: split by rows across the MPI ranks (row r
                                 lives on rank r % ranks, at local row r / ranks); w, g, touched
                                 and the optimizer state hold this rank's rows only, and a layer
                                 reads and writes rows with ts_param_shard_gather/_scatter */
};

typedef struct ts_param {
    char name[2 * TS_NAME_MAX];  /* "layer.q_conv.W" */
    int rows, cols;           /* a (rows, cols) matrix; a vector has rows = 1 */
    unsigned flags;           /* TS_PARAM_* */
    ts_init init;             /* how the host initialises w */
    float scale;              /* the init's scale where it has one */
    float *w;                 /* (rows, cols) weights, in the arena */
    float *g;                 /* (rows, cols) gradient, in the arena; zeroed by the host each step */
    float *state;             /* optimizer slots: nslots * rows * cols floats (host-owned) */
    int32_t *touched;         /* TS_PARAM_SPARSE: rows with a gradient this step (ntouched of them) */
    int ntouched;
    uint8_t *is_touched;      /* TS_PARAM_SPARSE: (rows) 1 when the row is in touched */
    int shared;               /* > 0: tied to an earlier declaration; the owner updates it */
    void *host;               /* private to the host */
    int64_t shard_rows;       /* TS_PARAM_SHARDED: rows of the whole table (rows: this rank's) */
} ts_param;

typedef struct ts_ctx ts_ctx;     /* the host's run context, opaque to plugins */

/* Declares a parameter of the layer or head being built. With `share = layer.other` the host
 * returns the other layer's parameter of the same position and checks its shape. */
ts_param *ts_param_add(ts_ctx *ctx, const char *name, int rows, int cols, ts_init init,
                       float scale, unsigned flags, ts_err *e);
/* Marks row r of a sparse parameter as having a gradient this step (idempotent). */
void ts_param_touch(ts_param *p, int32_t r);

/* Phases of a run. */
typedef enum ts_phase { TS_TRAIN = 0, TS_VALID = 1, TS_TEST = 2 } ts_phase;

/* The run's random generator (seeded from [experiment] seed), its phase, and lookups. */
ts_rng *ts_ctx_rng(ts_ctx *ctx);
int ts_ctx_max_batch(const ts_ctx *ctx);
uint64_t ts_ctx_seed(const ts_ctx *ctx);
/* The results folder of this run ("" when none, e.g. under check-plugin). */
const char *ts_ctx_results_dir(const ts_ctx *ctx);
/* Runs fn(arg, 0) ... fn(arg, ntasks - 1) and returns when all have run: on the threads of
 * [train] threads when they are free (a head's forward, a layer alone in its level of the
 * graph), else one after another on the calling thread. Tasks may run in any order and at once,
 * so each writes only its own memory and draws no random numbers; split work into a number of
 * tasks fixed by the shapes (say 32 rows a task), not by the number of threads, and combine any
 * partial sums in task order afterwards: the result is then the same for any [train] threads. */
void ts_ctx_parallel(ts_ctx *ctx, int ntasks, void (*fn)(void *arg, int task), void *arg);
/* A dataset field by name (a head's label, a group id, a history to exclude); NULL if none.
 * The pointer stays valid for the whole run; its contents change with each batch. */
const ts_tensor *ts_ctx_field(ts_ctx *ctx, const char *name);
/* Auxiliary data a dataset offers (item frequencies, titles...); -1 when it has none. */
int ts_ctx_aux(ts_ctx *ctx, const char *name, const void **ptr, long *n);
/* Reports one evaluation figure: split.task.metric = value (metrics.json, eval.csv). */
void ts_metric(ts_ctx *ctx, const char *task, const char *metric, double value);

/* How the dataset is being opened (ts_dataset_ops.open reads it):
 *  TS_OPEN_TRAIN     fit what must be fitted on the training split (or take ts_ctx_fitted's
 *                    state when there is one) and make the train / valid / test splits;
 *  TS_OPEN_EVALUATE  apply a trained run to a file of the same layout: every row of the file, in
 *                    file order, is the test split (valid and train are empty); labels required;
 *                    the fitted state is ts_ctx_fitted's, never refitted;
 *  TS_OPEN_PREDICT   the same, but label columns may be absent (their fields then hold 0). */
typedef enum ts_open_mode { TS_OPEN_TRAIN = 0, TS_OPEN_EVALUATE = 1, TS_OPEN_PREDICT = 2 } ts_open_mode;
ts_open_mode ts_ctx_open_mode(const ts_ctx *ctx);
/* The fitted state of a trained run (the text the dataset's fitted() op returned when the run
 * was trained), for a reader opened to apply that run or to resume it: the reader takes its
 * vocabularies, statistics, hashing seeds and lengths from it instead of fitting them again.
 * NULL when the reader must fit them itself. */
const char *ts_ctx_fitted(const ts_ctx *ctx, size_t *n);

/* Resolves a data path named in an experiment: absolute as given; else relative to the current
 * folder if it exists there; else relative to the experiment file's folder and its parent; else
 * under $TESSERA_DATA_DIR. Writes the chosen path into buf (the first candidate if none exists,
 * so the caller's "cannot open" message names it) and returns buf. path may be buf itself. */
const char *ts_ctx_path(ts_ctx *ctx, const char *path, char *buf, size_t n);

/* ------------------------------------------------------------------------------------------
 * Reading text data: lines of a plain or gzip-compressed file (chosen by the .gz suffix),
 * with line numbers for messages. Handles \n and \r\n endings and lines of any length.
 * ------------------------------------------------------------------------------------------ */
typedef struct ts_lines ts_lines;
ts_lines *ts_lines_open(const char *path, ts_err *e);
/* The next line without its ending (NUL-terminated, valid until the next call), or NULL at the
 * end of the file or on a read error (then ts_lines_error returns -1 with the message). */
char *ts_lines_next(ts_lines *r, size_t *len);
long ts_lines_lineno(const ts_lines *r);          /* 1-based number of the line last returned */
const char *ts_lines_path(const ts_lines *r);
int ts_lines_error(const ts_lines *r, ts_err *e); /* 0, or -1 with "FILE: read error: ..." */
void ts_lines_close(ts_lines *r);
/* Splits s in place on the separator string sep (", " or "\t" or ","); returns the number of
 * fields (at most max; one more field than max returns max + 1 and stops splitting). */
int ts_split(char *s, const char *sep, char **fields, int max);

/* Grows two float arrays together (a head's evaluation scores and labels) to hold need values,
 * doubling from 4096; *cap is their common capacity. -1 when out of memory (both stay valid). */
int ts_grow_pair(float **a, float **b, long *cap, long need);

/* ------------------------------------------------------------------------------------------
 * Shared kernels: metrics and ranking, so every head computes them the same way.
 * ------------------------------------------------------------------------------------------ */
/* Exact ROC AUC with ties counted as one half (Mann-Whitney U). label > 0.5 is positive; a NaN
 * label is missing (a masked row) and left out, here and in ts_logloss.
 * w may be NULL (unit weights). Returns NAN when one class is absent. */
double ts_auc(const float *score, const float *label, const float *w, long n);
/* Mean binary cross-entropy of probabilities p (clamped to [1e-7, 1 - 1e-7]). */
double ts_logloss(const float *p, const float *label, const float *w, long n);
/* Indices of the k largest of s[0..n) into top[0..k), best first, ties broken by lower index;
 * entries with s = -INFINITY are never returned (excluded items). Returns how many were written. */
int ts_topk(const float *s, long n, int k, int32_t *top);
/* 1-based rank of s[target] among s[0..n): 1 + #{j: s_j > s_t} + #{j < t: s_j == s_t}. */
long ts_rank_of(const float *s, long n, long target);

/* ------------------------------------------------------------------------------------------
 * A string table for datasets: (space, string) -> dense id. Each space (an attribute, a column,
 * a vocabulary) numbers its strings 0, 1, 2, ... in order of first appearance. Keys are copied
 * into an arena; ts_strtab_str pointers stay valid until ts_strtab_free. Not thread-safe.
 * ------------------------------------------------------------------------------------------ */
typedef struct ts_strtab ts_strtab;
ts_strtab *ts_strtab_new(void);                     /* NULL when out of memory */
/* The id of s[0..n) (any bytes) in space (>= 0), added when new and add != 0; -1 when absent
 * and add == 0; -2 when out of memory (or space < 0). */
int32_t ts_strtab_id(ts_strtab *t, int32_t space, const char *s, size_t n, int add);
int32_t ts_strtab_count(const ts_strtab *t, int32_t space);  /* distinct strings of a space */
/* The NUL-terminated string of an id, or NULL when there is no such id. */
const char *ts_strtab_str(const ts_strtab *t, int32_t space, int32_t id);
void ts_strtab_free(ts_strtab *t);                  /* NULL is fine */

/* ------------------------------------------------------------------------------------------
 * The plugin ABI
 *
 * How it grows: APPEND ONLY; NEVER REORDER; BUMP TS_ABI ONLY WHEN A FIELD MOVES.
 *  - Every ops table (ts_layer_ops, ts_loss_ops, ts_optim_ops, ts_head_ops, ts_dataset_ops)
 *    starts with `uint32_t size`, which a plugin sets to sizeof the table as it was compiled
 *    (`.size = sizeof(ts_layer_ops)`), as SQLite modules carry iVersion and Vulkan structs sType.
 *  - A new op or field is appended at the end of its table. The host reads it only when the
 *    plugin's size covers it (TS_OP below), so a plugin compiled before the op existed keeps
 *    loading, and sees the host treat the op as absent (NULL); a plugin compiled against a newer
 *    tessera.h loads in an older host, which ignores what lies past the fields it knows.
 *  - A field is never removed, reordered or retyped; when that cannot be avoided, TS_ABI is
 *    bumped and the host refuses plugins of another ABI with a sentence saying to rebuild them.
 *  - ABI 3 is the first growable layout: the host refuses an ops table smaller than ABI 3's
 *    first layout (everything above the "appended" line of each table).
 * ------------------------------------------------------------------------------------------ */

/* Bytes of the ops table `ops` up to the end of its field `f`. */
#define TS_OPS_END(ops, f) \
    ((size_t)((const char *)&(ops)->f - (const char *)(ops)) + sizeof (ops)->f)
/* The field `f` of a plugin's ops table when the plugin's size covers it, else 0 (NULL): the one
 * way the host reads an optional op, e.g. `if (TS_OP(ops, init)) TS_OP(ops, init)(L, e);`. */
#define TS_OP(ops, f) ((size_t)(ops)->size >= TS_OPS_END(ops, f) ? (ops)->f : 0)

typedef enum ts_kind { TS_LAYER = 1, TS_LOSS, TS_OPTIMIZER, TS_HEAD, TS_DATASET } ts_kind;

typedef struct ts_key {           /* one INI key a plugin accepts */
    const char *key;              /* NULL ends the list */
    const char *type;             /* "int", "float", "bool", "string", "list", "choice:a|b" */
    const char *def;              /* default as text; NULL = required */
    const char *help;             /* one sentence for `tessera describe` */
} ts_key;

typedef struct ts_plugin {
    uint32_t abi;                 /* = TS_ABI; the host refuses a mismatch */
    uint32_t size;                /* = sizeof(ts_plugin); the host reads nothing past it */
    ts_kind kind;
    const char *name;             /* the value of `type =` in an experiment */
    const char *version;          /* the plugin's own version, "1.0" */
    const char *summary;          /* one line for `tessera plugins` */
    const ts_key *keys;           /* printed by `tessera describe NAME` */
    const void *ops;              /* ts_layer_ops, ts_loss_ops, ... by kind */
} ts_plugin;

/* The only exported symbol of a plugin file. Returns NULL past the last entry. */
typedef const ts_plugin *(*ts_entry_fn)(uint32_t index);
const ts_plugin *tessera_plugin_entry(uint32_t index);

/* ---- layers ---------------------------------------------------------------------------- */
typedef struct ts_layer {
    const char *name;             /* "q_conv" from [layer.q_conv] */
    int nin;                      /* inputs, in the order of `input =` */
    ts_tensor *in[TS_MAX_IN];     /* host-owned; in[i]->dx is NULL when nothing upstream learns */
    int nout;                     /* outputs: 1 unless build() says otherwise */
    ts_tensor out[TS_MAX_OUT];    /* build sets dtype/ndim/dim[1..]; the host allocates F32 x, dx */
    char out_name[TS_MAX_OUT][TS_NAME_MAX];  /* "" for the single output; "income" -> mix.income */
    void *state;                  /* the plugin's own */
    ts_ctx *ctx;                  /* the host's: rng, params */
} ts_layer;

typedef struct ts_layer_ops {
    uint32_t size;                /* = sizeof(ts_layer_ops) as the plugin was compiled */
    /* Reads keys, checks inputs' dtypes and shapes, sets outputs' shapes (dim[0] = the largest
     * batch), declares parameters. */
    int (*build)(ts_layer *L, const ts_cfg *cfg, ts_err *e);
    /* out = f(in); dim[0] of every input and output already equals this batch's rows.
     * Outputs that keep a time axis pass the sequence lengths through (out->len = in->len). */
    int (*forward)(ts_layer *L, ts_phase phase, ts_err *e);
    /* in->dx += (d out / d in)^T out->dx, p->g += ...; skips inputs whose dx is NULL. */
    int (*backward)(ts_layer *L, ts_err *e);
    /* Frees what build allocated; called only after a successful build (a build that fails
     * frees what it allocated itself). May be NULL. */
    void (*destroy)(ts_layer *L);
    /* Optional: called after the test evaluation to write extra results (gates.csv). */
    int (*report)(ts_layer *L, const char *dir, ts_err *e);
    /* For `tessera check-plugin`: the inputs to check on and the keys to build with.
     * check_inputs: "f32 4 6; i32 4 3 vocab=20; bags 4 5 vocab=30 len" (rows, dims, options;
     * `len` draws random sequence lengths). check_keys: "units=3 activation=tanh". */
    const char *check_inputs;
    const char *check_keys;
    /* ---- appended after ABI 3's first layout: the host reads these through TS_OP ---- */
    /* Optional: called once, after the host has allocated the parameter arena and initialised
     * the weights, and BEFORE a checkpoint (resume) or trained weights (params.bin) are restored:
     * the place to write data of the plugin's own into p->w (pretrained vectors), which training
     * and a restore may then overwrite. Never called again in the run. */
    int (*init)(ts_layer *L, ts_err *e);
    /* What the host may run at once (flags; 0, the value of every plugin built before the field
     * existed, allows nothing):
     *  TS_REPLICA_SAFE: forward(TS_TRAIN) and backward write only the layer's own state, its
     *    outputs, its inputs' dx and its parameters' g (never p->w, a global or another layer's
     *    state), so several copies of the graph's layers may train parts of a batch at once,
     *    sharing the weights ([train] replicas, docs/ini.md; the heads run once, on the whole
     *    batch);
     *  TS_BRANCH_SAFE: besides, forward and backward draw no random numbers (ts_ctx_rng), so the
     *    layer may run at the same time as another layer of the same graph that does not depend
     *    on it (the two towers of a DSSM; [train] threads, docs/architecture.md). */
    int concurrency;
} ts_layer_ops;

#define TS_REPLICA_SAFE 1
#define TS_BRANCH_SAFE 2

/* ---- losses ---------------------------------------------------------------------------- */
typedef enum ts_label_kind {
    TS_LABEL_BINARY = 0,          /* y in {0, 1}, one per row; z is (n, 1) */
    TS_LABEL_REAL,                /* y real, (n, k) like z */
    TS_LABEL_CLASS                /* y a class index in [0, k) stored as float; z is (n, k) */
} ts_label_kind;

typedef struct ts_loss_ops {
    uint32_t size;                /* = sizeof(ts_loss_ops) as the plugin was compiled */
    ts_label_kind label_kind;
    /* Reads the loss's keys from the head's section (pos_weight...). */
    int (*init)(void **state, const ts_cfg *cfg, ts_err *e);
    /* loss = sum_i w_i l(z_i, y_i) / sum_i w_i  (w NULL = 1). z is (n, k).
     * If dz is not NULL: dz += scale * d loss / d z. */
    int (*eval)(void *state, int n, int k, const float *z, const float *y, const float *w,
                double *loss, float *dz, float scale, ts_err *e);
    void (*destroy)(void *state);                                    /* may be NULL */
    /* ---- appended ----
     * TS_BRANCH_SAFE: eval() only reads its state, so a head may evaluate parts of its rows at
     * once (ts_ctx_parallel). 0: one call at a time. */
    int concurrency;
} ts_loss_ops;

/* ---- optimizers ------------------------------------------------------------------------ */
typedef struct ts_optim_ops {
    uint32_t size;                /* = sizeof(ts_optim_ops) as the plugin was compiled */
    int nslots;                   /* floats of state per weight (adam 2, adagrad 1, sgd 0-1) */
    int (*init)(void **state, const ts_cfg *cfg, ts_err *e);
    /* One update of p with p->g. t counts steps from 1. A TS_PARAM_SPARSE parameter is
     * updated only in its p->touched rows. lr_scale multiplies the configured rate. */
    int (*step)(void *state, ts_param *p, long t, float lr_scale, ts_err *e);
    void (*destroy)(void *state);                                    /* may be NULL */
    /* ---- appended ---- */
    /* TS_BRANCH_SAFE: step() of two parameters may run at once (it writes only p's w and slots
     * and reads its own state), so the host spreads a step's parameters over [train] threads. */
    int concurrency;
} ts_optim_ops;

/* ---- heads ----------------------------------------------------------------------------- */
typedef struct ts_head {
    const char *name;             /* the task: "income" from [head.income] */
    int nin;
    ts_tensor *in[TS_MAX_IN];     /* from `input =` */
    const ts_tensor *label;       /* the dataset field of `label =`; NULL when the head has none */
    const ts_loss_ops *loss;      /* from `loss =`; NULL for a head that does not train */
    void *loss_state;
    float grad_scale;             /* set by the host each step: the task's weight in the total */
    void *state;                  /* the plugin's own */
    ts_ctx *ctx;
} ts_head;

typedef struct ts_head_ops {
    uint32_t size;                /* = sizeof(ts_head_ops) as the plugin was compiled */
    int (*build)(ts_head *H, const ts_cfg *cfg, ts_err *e);
    /* Predictions and the batch's mean loss (*loss; 0 for a head without one).
     * TS_TRAIN: also in[i]->dx += grad_scale * d loss / d in[i] (and parameter gradients).
     * TS_VALID / TS_TEST: accumulate what eval_end needs. */
    int (*forward)(ts_head *H, ts_phase phase, double *loss, ts_err *e);
    int (*eval_begin)(ts_head *H, ts_phase phase, ts_err *e);
    /* Reports the split's metrics with ts_metric(ctx, H->name, "auc", v). */
    int (*eval_end)(ts_head *H, ts_phase phase, ts_err *e);
    void (*destroy)(ts_head *H);                                    /* may be NULL */
    /* Optional: extra results after the test evaluation. */
    int (*report)(ts_head *H, const char *dir, ts_err *e);
    /* For check-plugin: inputs as in ts_layer_ops, and the label to draw ("binary", "real",
     * "class K", or NULL for none). The kind word is also what the host checks the label field
     * of an experiment against before training (with the loss's label_kind: the stricter). */
    const char *check_inputs;
    const char *check_label;
    const char *check_keys;
    /* Optional: the scores and labels the last evaluation accumulated, n of each,
     * in the order of the split's rows; valid until the next eval_begin. A binary head gives
     * sigmoid probabilities, a regression head its predictions. The host combines them across
     * tasks ([train] output_weights). Returns -1 when the head keeps no per-row scores. */
    int (*predictions)(ts_head *H, const float **score, const float **label, long *n);
    /* ---- appended after ABI 3's first layout: the host reads these through TS_OP ---- */
    /* Optional: as ts_layer_ops.init, for a head that holds parameters. */
    int (*init)(ts_head *H, ts_err *e);
    /* 1: the head honours per-row weights and label masks (its section's `sample_weight =` and
     * `mask =`, read with ts_head_weights and ts_head_mask); the host refuses those keys on a
     * head that leaves this 0. */
    int row_weights;
} ts_head_ops;

/* ---- datasets -------------------------------------------------------------------------- */
typedef struct ts_data {
    int nfield;
    char field_name[TS_MAX_FIELDS][TS_NAME_MAX];
    ts_tensor field[TS_MAX_FIELDS];   /* open(): dtype, ndim, dim[1..], vocab; batch(): values */
    long nrows[3];                    /* examples per split: [TS_TRAIN], [TS_VALID], [TS_TEST] */
    void *state;                      /* the plugin's own */
    ts_ctx *ctx;
    /* ---- appended ---- */
    int stream;                       /* open() sets 1 when training rows are streamed (below) */
} ts_data;

/* Declares a field at open(): dims excludes the batch dimension (ndim-1 of them).
 * The dataset owns the buffers it points the field at in batch(). */
ts_tensor *ts_data_field(ts_data *D, const char *name, ts_dtype dtype, int ndim, const int *dims,
                         int64_t vocab, ts_err *e);

typedef struct ts_dataset_ops {
    uint32_t size;                /* = sizeof(ts_dataset_ops) as the plugin was compiled */
    /* Reads the files, makes the splits, declares the fields. */
    int (*open)(ts_data *D, const ts_cfg *cfg, ts_err *e);
    /* Fills every field with examples rows[0..n) of split; sets dim[0] = n. */
    int (*batch)(ts_data *D, ts_phase split, const long *rows, int n, ts_err *e);
    /* Optional: named auxiliary arrays (see ts_ctx_aux). By convention "skipped_rows" is one
     * long: the malformed rows skipped under skip_bad_rows = true, which the host reports; and
     * "report" is text of "name value" lines (value a number) that the host logs as
     * `data: name = value` and writes into metrics.json as train.data.NAME (what a reader cut,
     * dropped or truncated, so a reader never changes the data without a word). */
    int (*aux)(ts_data *D, const char *name, const void **ptr, long *n);
    /* Frees the dataset; called after open(), also after a failed one (so open() leaves
     * D->state NULL or valid). May be NULL. */
    void (*close)(ts_data *D);
    /* Optional (appended, ABI 3): what open() fitted on the training split (vocabularies,
     * standardisation statistics, hashing seeds, truncation lengths) as text in a form the same
     * reader parses back from ts_ctx_fitted(); *text is malloc'ed and the host frees it. The host
     * writes it into the run folder (data_state.txt) so predict, evaluate and resume read new
     * rows exactly as the training rows were read. */
    int (*fitted)(ts_data *D, char **text, size_t *n, ts_err *e);
    /* ---- appended: streamed training rows (`stream = true` in [data], docs/scale.md) ----
     * A reader that streams sets D->stream = 1 at open(); then D->nrows[TS_TRAIN] is THIS rank's
     * share of the training rows, batch() serves the valid and test splits only (rows asked in
     * order, 0, 1, 2, ...), and the host draws training rows with these three ops. A reader
     * that leaves D->stream 0 never sees them called. */
    /* Starts epoch `epoch` (1-based) of this rank's training rows; pos NULL: from the epoch's
     * start, else a position stream_pos gave (a resumed run), from which the rows continue
     * exactly as they would have. */
    int (*stream_begin)(ts_data *D, long epoch, const int64_t *pos, ts_err *e);
    /* Fills every field with the next rows of the epoch, up to n; *got of them (0 at its end). */
    int (*stream_next)(ts_data *D, int n, int *got, ts_err *e);
    /* Where the epoch stands: TS_STREAM_POS numbers that a checkpoint keeps. */
    void (*stream_pos)(ts_data *D, int64_t *pos);
    /* ---- appended ----
     * TS_BRANCH_SAFE: batch() of the training split fills the fields and touches nothing else
     * that anything else reads (no random numbers of ts_ctx_rng, no state a later call or a
     * checkpoint depends on), so under [train] threads the host reads the next step's rows
     * while the optimizer updates the parameters. 0: one thing after the other. */
    int concurrency;
} ts_dataset_ops;

/* ------------------------------------------------------------------------------------------
 * Labels (appended functions; no struct changes). Before training the host checks every label
 * a head reads against what the head and its loss take (binary: exactly 0 or 1; real: finite;
 * class: a whole number in [0, k)), and it refuses a graph in which a label reaches a layer or
 * a head's input (a label leak). A field named by a head's `label =` is a label; so is a field
 * its dataset declares one.
 * ------------------------------------------------------------------------------------------ */
/* At open(): declares the field `name` (declared before with ts_data_field) a label or another
 * target of prediction (a task's answer, an example weight): heads may read it, layers never.
 * -1 when the dataset has no field of that name. */
int ts_data_label(ts_data *D, const char *name, ts_err *e);
/* At build(): a head whose label is a class index (an item id) says how many classes there are,
 * so that the host's check refuses a label outside [0, k) before training. */
void ts_head_label_classes(ts_head *H, long k);

/* ---- per-row weights and label masks of a head --------------------------------------------
 * A head section may name `sample_weight = FIELD` (a number >= 0 a row) and `mask = FIELD` (1: the
 * row has this task's label, 0: it has none, as a conversion label exists only for clicked rows).
 * The host checks both fields before training (finite, >= 0; a mask 0 or 1) and skips masked
 * rows when it checks the labels. For the rows of the current batch (n of them):
 *   ts_head_weights: w_i = weight_i * mask_i, what the head hands its loss (sum w l / sum w) and
 *                    weighs its figures with; NULL when the head has neither key (all 1);
 *   ts_head_mask:    the mask field's values, or NULL: a masked row has no label, so the head
 *                    leaves it out of its figures and reports its label as missing (NaN).
 * Only the host's heads have them: a head built elsewhere (check-plugin) gets NULL. */
const float *ts_head_weights(ts_head *H, int n);
const float *ts_head_mask(const ts_head *H);

/* ---- a finished retrieval run as a scoring function (core/retriever.c) --------------------
 * For a plugin that needs a recall stage's candidates (a ranking dataset): loads RUN_DIR's
 * config.ini and params.bin (RUN_DIR resolved as a data path: ts_ctx_path), builds the run's
 * experiment (its dataset opened as the run opened it, so item numbers match the weights) and
 * finds its retrieval head (`head` names it; NULL or "" = the head of type retrieval). The
 * caller fills the run's dataset fields for n <= ts_retriever_max_batch rows (each field starts
 * as zeros / empty bags; the caller may point ids, off and x at buffers of its own) and
 * ts_retriever_score writes scores (n, items) = U V^T + b and, when user is not NULL, the user
 * vectors U (n, D). The run's own rows are never read, so the caller decides what each row's
 * user vector sees. ts_retriever_aux reads the run's dataset aux arrays (item_raw_id...). */
typedef struct ts_retriever ts_retriever;
ts_retriever *ts_retriever_open(ts_ctx *ctx, const char *run_dir, const char *head, ts_err *e);
ts_tensor *ts_retriever_field(ts_retriever *r, const char *name);
int ts_retriever_aux(ts_retriever *r, const char *name, const void **ptr, long *n);
int ts_retriever_items(const ts_retriever *r);
int ts_retriever_dim(const ts_retriever *r);
int ts_retriever_max_batch(const ts_retriever *r);
int ts_retriever_score(ts_retriever *r, int n, float *scores, float *user, ts_err *e);
void ts_retriever_close(ts_retriever *r);   /* NULL is fine */

/* ---- streamed data (appended functions; docs/scale.md) -------------------------------------
 * What a reader needs to stream its rows: the files of a pattern (a file, a folder of shards or
 * a glob; plain or gzip), each line's split by a hash of its bytes and split_seed, a scan that
 * lets the reader fit and counts the rows, this rank's share of the training rows read through
 * a shuffle block of `buffer_rows` rows, and positions a checkpoint keeps. The reader parses a
 * line into a fixed-size row record of its own (row_bytes). */
#define TS_STREAM_POS 8
typedef struct ts_stream ts_stream;
/* The scan's call for every non-blank line: fit on TS_TRAIN lines; 1: a row the reader keeps,
 * 0: a row it skips (skip_bad_rows), -1: an error (message in e). The line may be changed. */
typedef int (*ts_stream_scan_fn)(void *user, ts_phase split, char *line, size_t len,
                                 const char *path, long lineno, ts_err *e);
/* A line of the split being read into a row record: 1 kept, 0 skipped, -1 an error. */
typedef int (*ts_stream_row_fn)(void *user, char *line, size_t len, const char *path,
                                long lineno, void *row, ts_err *e);
ts_stream *ts_stream_open(ts_ctx *ctx, const char *pattern, const char *where, size_t row_bytes,
                          long buffer_rows, const double frac[3], uint64_t split_seed,
                          ts_stream_scan_fn scan, ts_stream_row_fn row, void *user, ts_err *e);
void ts_stream_close(ts_stream *s);
int ts_stream_nfiles(const ts_stream *s);
const char *ts_stream_file(const ts_stream *s, int i);
/* The split of a line (its bytes without the line ending). */
ts_phase ts_stream_split(const ts_stream *s, const char *line, size_t len);
/* The pass over every file (in name order) that calls scan and counts rows. */
int ts_stream_scan(ts_stream *s, ts_err *e);
/* Rows of a split after the scan: TS_TRAIN: this rank's share; valid and test: every row. */
long ts_stream_rows(const ts_stream *s, ts_phase split);
/* Starts reading a split: training, epoch's shuffled order (pos: resume there, or NULL);
 * valid and test, file order (epoch and pos unused). */
int ts_stream_begin(ts_stream *s, ts_phase split, long epoch, const int64_t *pos, ts_err *e);
/* Up to n row records of the split into out (n * row_bytes bytes); *got of them, 0 at the end. */
int ts_stream_next(ts_stream *s, ts_phase split, void *out, int n, int *got, ts_err *e);
/* The training cursor's position (what ts_stream_begin takes back). */
void ts_stream_pos(const ts_stream *s, int64_t pos[TS_STREAM_POS]);
/* Bytes the stream holds for its block (the memory bound of streamed rows). */
size_t ts_stream_bytes(const ts_stream *s);
/* A batch of valid or test rows for a reader's batch(): rows must come in order from row 0 (a
 * request of row 0 restarts the split); n row records into out. */
int ts_stream_read(ts_stream *s, ts_phase split, const long *rows, int n, void *out, ts_err *e);
/* The size of a row record set after the scan (a reader whose rows' size the scan finds:
 * the longest bag); before any ts_stream_begin. */
int ts_stream_row_bytes(ts_stream *s, size_t row_bytes, ts_err *e);
/* The stream's figures for a reader's aux "report" (files, rows, block bytes); snprintf's. */
int ts_stream_report(const ts_stream *s, char *buf, size_t n);

/* ---- sharded tables (TS_PARAM_SHARDED; docs/distributed.md, docs/scale.md) ---------------
 * Collective calls: every rank calls them in the same order (every rank runs the same graph on
 * its slice of the batch, possibly of 0 rows). In one process they are plain loops over the
 * whole table. ids are global row ids in [0, p->shard_rows). */
/* out[i] (p->cols floats) = row ids[i] of the whole table, fetched from the rank that owns it. */
int ts_param_shard_gather(ts_param *p, const int32_t *ids, long n, float *out, ts_err *e);
/* Adds d[i] (p->cols floats) into the gradient of row ids[i] on the rank that owns it, marking
 * it touched there; every rank's rows are added in rank order, then i order. */
int ts_param_shard_scatter(ts_param *p, const int32_t *ids, long n, const float *d, ts_err *e);


/* ---- collectives for a plugin that splits its work across the ranks (docs/scale.md) --------
 * Every rank calls them in the same order; in one process (or a build without MPI) a gather is
 * a copy and a reduction the identity. A rank's share comes first for rank 0, then rank 1, ... */
int ts_dist_rank(void);                 /* 0 in one process */
int ts_dist_size(void);                 /* 1 in one process */
/* all (size * bytes) = every rank's `bytes` bytes of mine, in rank order. */
int ts_dist_allgather(const void *mine, size_t bytes, void *all, ts_err *e);
/* all = every rank's bytes_of[r] bytes, in rank order (bytes == bytes_of[this rank]). */
int ts_dist_allgatherv(const void *mine, size_t bytes, void *all, const size_t *bytes_of, ts_err *e);
int ts_dist_sum(double *v, int n, ts_err *e);           /* in place, over the ranks */
int ts_dist_sum_floats(float *v, size_t n, ts_err *e);  /* in place, over the ranks */
int ts_dist_max(double *v, int n, ts_err *e);           /* in place, over the ranks */
int ts_dist_bcast(void *v, size_t bytes, ts_err *e);    /* rank 0's bytes to every rank */

#ifdef __cplusplus
}
#endif
#endif /* TESSERA_H */
