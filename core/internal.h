/* internal.h — libtessera private structures: the parsed INI, the run context, the graph
 * and the experiment. Shared by the core sources only; plugins never see it. */
#ifndef TESSERA_INTERNAL_H
#define TESSERA_INTERNAL_H

#include <stdio.h>
#include "tessera.h"
#include "host.h"

#include <stdint.h>
#include <string.h>

#define TS_PATH_MAX 4096

/* ---- INI ----------------------------------------------------------------------------------- */
typedef struct ts_entry {
    char key[TS_NAME_MAX];
    char *value;              /* continuation lines joined (", " or raw: docs/ini.md) */
    int line;                 /* 0 = from the command line */
    int used;                 /* a declared key of some reader */
    const char *file;         /* the file of `line` when not its section's (a variant's key over
                               * an `extends =` base section); NULL = the section's file */
} ts_entry;

struct ts_cfg {
    char name[2 * TS_NAME_MAX];   /* "layer.q_conv" */
    const char *file;             /* the experiment file (owned by ts_ini) */
    int line;                     /* line of the [section] header; 0 = command line */
    ts_entry *ent;
    int n, cap;
    const ts_key *keys[4];        /* declared keys (plugin, loss, ...) for defaults */
    char where[TS_PATH_MAX + 32]; /* scratch for ts_cfg_where */
};

typedef struct ts_ini {
    char *file;
    ts_cfg *sec;
    int nsec, cap;
    char **bases;             /* the files `extends =` brought in, base first (owned) */
    int nbases;
} ts_ini;

/* Reads an experiment file; `[experiment] extends = BASE.ini` (relative to the file) first reads
 * BASE (which may extend another), then lays the file's sections and keys over it, key by key;
 * the result holds no `extends` key, and each key remembers the file it came from. */
int ts_ini_load(ts_ini *ini, const char *path, ts_err *e);
int ts_ini_load_string(ts_ini *ini, const char *name, const char *text, ts_err *e);
int ts_ini_override(ts_ini *ini, const char *assign, ts_err *e);
ts_cfg *ts_ini_find(ts_ini *ini, const char *section);
int ts_ini_write(const ts_ini *ini, const char *path, ts_err *e);
/* The text ts_ini_write writes (malloc'ed): every value on its key's line or, when it cannot be
 * (too long, blanks at its ends, " ;"), on raw continuation lines (docs/ini.md), so that
 * ts_ini_load reads back the same sections, keys and values. */
int ts_ini_format(const ts_ini *ini, char **text, size_t *len, ts_err *e);
/* Why a value cannot be stored in an INI file (a line break), or NULL when it can. Every entry
 * point of values that do not come from a file (overrides) refuses what this refuses. */
const char *ts_ini_value_problem(const char *value);
/* Why a section name (section != 0) or a key given on the command line cannot be written to an
 * INI file and read back (empty, too long, blanks, control characters, [ ] = : ; #), or NULL. */
const char *ts_ini_name_problem(const char *name, int section);
#define TS_INI_FILE_LIMIT (16 << 20)   /* bytes: a larger experiment file is refused */
void ts_ini_free(ts_ini *ini);
/* Rejects a key that is neither a host key nor declared by the plugins' key lists, naming the
 * nearest known key; records the key lists for defaults. Also rejects a missing required key. */
int ts_cfg_validate(ts_cfg *c, const char *const *host_keys, const ts_key *const *lists, int nlists,
                    ts_err *e);
ts_entry *ts_cfg_entry(const ts_cfg *c, const char *key);
/* Levenshtein distance, for "did you mean". */
int ts_edit_distance(const char *a, const char *b);

/* ---- the run context ----------------------------------------------------------------------- */
typedef struct ts_metric_rec {
    ts_phase split;
    char task[TS_NAME_MAX];
    char metric[TS_NAME_MAX];
    double value;
} ts_metric_rec;

struct ts_ctx {
    ts_rng rng;                    /* the run's generator: init, shuffling, sampling */
    uint64_t seed;
    int max_batch;
    char results_dir[TS_PATH_MAX];
    char exp_dir[TS_PATH_MAX];     /* folder of the experiment file */
    ts_data *data;
    const ts_dataset_ops *data_ops;
    ts_param **params;             /* every declared parameter, in declaration order */
    int nparams, cap;
    const char *owner;             /* "layer.q_conv" while it builds */
    ts_param **share_from;         /* `share =`: the other layer's params, in order */
    int share_n, share_i;
    ts_phase phase;
    size_t n_dense;                /* floats of the dense parameters: the arena's w and g
                                    * blocks each start with them (ts_ctx_alloc_params) */
    ts_metric_rec *metrics;        /* figures reported by the current evaluation */
    int nmetrics, mcap;
    ts_open_mode open_mode;        /* how the dataset is opened (tessera.h) */
    char *fitted;                  /* a trained run's fitted data state given to open(), or NULL */
    size_t nfitted;
    char **data_files;             /* every existing path ts_ctx_path resolved: the run's data,
                                    * hashed into its identity (rundir.c) */
    int ndata, data_cap;
    unsigned char field_label[TS_MAX_FIELDS];  /* 1: the dataset declared the field a label
                                                * (ts_data_label); layers may never read it */
    long label_classes;            /* set by ts_head_label_classes while a head builds */
    struct ts_hnode *heads;        /* the experiment's heads (ts_head_weights finds H there) */
    int nheads;
    struct ts_pool *pool;          /* [train] threads' pool for ts_ctx_parallel, or NULL */
};

void ts_ctx_init(ts_ctx *ctx, uint64_t seed, int max_batch);
void ts_ctx_free(ts_ctx *ctx);
/* Allocates w, g and optimizer state for every parameter in one arena and initialises w. */
int ts_ctx_alloc_params(ts_ctx *ctx, int nslots, float **arena, size_t *arena_n, ts_err *e);
void ts_param_init_values(ts_param *p, ts_rng *r);
/* Zeroes gradients: whole dense ones, touched rows of sparse ones. */
void ts_params_zero_grad(ts_ctx *ctx);
void ts_param_zero_grad(ts_param *p);   /* one parameter's */

/* ---- the graph ----------------------------------------------------------------------------- */
typedef struct ts_node {
    ts_layer L;
    const ts_plugin *pl;
    const ts_layer_ops *ops;
    ts_cfg *cfg;
    int nin;
    char in_name[TS_MAX_IN][2 * TS_NAME_MAX];
    char share[2 * TS_NAME_MAX];
    int first_param, nparam;       /* its slice of ctx->params */
    int built;
} ts_node;

typedef struct ts_hnode {
    ts_head H;
    const ts_plugin *pl;
    const ts_head_ops *ops;
    ts_cfg *cfg;
    const ts_plugin *loss_pl;      /* the plugin of `loss =`, or NULL */
    double weight;                 /* static weight of the task's loss */
    double last_loss;              /* this step's mean loss */
    double loss_sum;               /* since the last log line */
    int built;                     /* build() succeeded: destroy() is owed */
    long label_classes;            /* > 0: the label is a class index in [0, label_classes) */
    const ts_tensor *sample_weight;  /* `sample_weight =`: (B, 1) per-row weights, or NULL */
    const ts_tensor *mask;         /* `mask =`: (B, 1) 1 = the row has this task's label */
    float *wbuf;                   /* (max_batch) their product for this batch */
} ts_hnode;

struct ts_exp {
    ts_ini ini;
    ts_ctx ctx;
    ts_run_opts opts;
    char name[TS_NAME_MAX];
    const ts_plugin *data_pl;
    ts_data data;
    int data_open;
    ts_node *nodes;                /* topologically sorted after ts_exp_build */
    int nnodes;
    ts_hnode *heads;
    int nheads;
    const ts_plugin *opt_pl;
    void *opt_state;
    float *arena;
    size_t arena_n;
    int built;
    /* [train] */
    long epochs, batch, eval_batch, log_every, patience, threads;
    long replicas;                      /* [train] replicas: copies of the graph training a
                                         * batch's parts at once (train.c), 1 = none */
    struct ts_exp *replica_of;          /* a replica: the experiment whose weights it shares */
    /* the execution schedule (graph.c): the layers by level (a layer's level is one more than its
     * inputs' highest), forward in this order, backward in the reverse one; the layers of a
     * level with lvl_par set may run at once on pool's threads */
    int *sched, *lvl, nlvl;             /* (nnodes) node indices; (nlvl + 1) level starts */
    unsigned char *lvl_par;             /* (nlvl) */
    int *node_rc;                       /* (nnodes) a task's status and message */
    ts_err *node_err;
    struct ts_pool *pool;               /* [train] threads >= 2 (train.c), or NULL */
    long max_steps;                     /* > 0: stop after that many optimizer steps */
    long checkpoint_every;              /* > 0: a checkpoint every that many steps too */
    int keep_checkpoints;               /* keep them after a finished run */
    long skipped_rows;                  /* the dataset's aux skipped_rows; -1 = not reported */
    double clip_norm;
    char early_stop[2 * TS_NAME_MAX];   /* "income.auc"; "" = last epoch */
    int weighting;                      /* 0 static, 1 uncertainty */
    ts_param *log_var;                  /* uncertainty weighting: (1, nheads) */
    /* the results folder (rundir.c) */
    int lock_fd;                        /* flock'ed RUN_DIR/.lock while this run writes; -1 */
    int dir_state;                      /* ts_dir_state found when the lock was taken */
    int dir_created;                    /* this run made the folder (removed again if left empty) */
    int up_to_date;                     /* --if-changed found the same finished run: no training */
    char *identity;                     /* identity.txt's text (ts_rundir_prepare) */
    char *data_state;                   /* what the dataset fitted (its fitted() op), or NULL */
    char *data_report;                  /* the dataset's aux "report" ("name value" lines), or NULL */
    size_t ndata_state;
    char **warnings;                    /* (nwarnings) sentences of the build (ts_exp_warning) */
    int nwarnings;
    /* [data] select_fraction (holdout.c): the training split's rows that train (train_rows) and
     * those held out as the selection split (select_rows), both in row order; NULL: none held */
    long *train_rows, ntrain_rows;
    long *select_rows, nselect;
};

/* The selection split's figures are recorded under this split (metrics.json: select.TASK.FIG).
 * A host-only value: plugins only ever see TS_TRAIN, TS_VALID and TS_TEST. */
#define TS_SELECT ((ts_phase)3)
/* Draws the selection split out of n training rows with seed: round(frac x n) rows, or with
 * group (row -> 0..ngroups) round(frac x ngroups) whole groups. sel and keep (n each) get the
 * held and the kept rows in row order. Refuses a fraction outside (0, 1) or one that holds out
 * nothing or everything. */
int ts_holdout_draw(long n, const long *group, long ngroups, double frac, uint64_t seed,
                    long *sel, long *nsel, long *keep, long *nkeep, ts_err *e);
/* After the dataset opened for training: reads [data] select_fraction, select_seed and
 * select_by and fills x->train_rows / x->select_rows (nothing without select_fraction). */
int ts_exp_holdout(ts_exp *x, ts_err *e);
/* Evaluates the selection split (the heads see a validation split); figures as TS_SELECT. */
int ts_exp_evaluate_select(ts_exp *x, ts_err *e);

/* Resolves a name of `input =`: a dataset field, a layer output, or LAYER.OUTPUT. */
ts_tensor *ts_exp_tensor(ts_exp *x, const char *name);
int ts_exp_forward(ts_exp *x, ts_phase phase, int n, ts_err *e);
/* A fixed set of threads (pool.c): ts_pool_run runs fn(arg, 0..ntasks-1) on them and the
 * caller, and returns when all have run. ts_pool_new(n < 2) and a failed start give NULL, which
 * ts_pool_run treats as one thread. */
typedef struct ts_pool ts_pool;
/* The little-endian value of the n < 8 bytes at p (what memcpy into a zeroed word gives),
 * without the byte-wise copy whose 8-byte reload stalls on store forwarding. */
static inline uint64_t ts_tail_word(const char *s, size_t n)
{
    const unsigned char *p = (const unsigned char *)s;
    if (n >= 4) {
        uint32_t a, b;
        memcpy(&a, p, 4);
        memcpy(&b, p + n - 4, 4);
        return (uint64_t)a | (uint64_t)b << (8 * (n - 4));
    }
    if (n == 0) return 0;
    return (uint64_t)p[0] | (uint64_t)p[n / 2] << (8 * (n / 2)) | (uint64_t)p[n - 1] << (8 * (n - 1));
}

/* One polling step of a thread waiting for work (the x86 pause instruction). */
static inline void ts_relax(void)
{
#if defined(__x86_64__) || defined(__i386__)
    __builtin_ia32_pause();
#endif
}
ts_pool *ts_pool_new(int nthreads);
int ts_pool_threads(const ts_pool *p);
void ts_pool_run(ts_pool *p, int ntasks, void (*fn)(void *arg, int task), void *arg);
void ts_pool_free(ts_pool *p);

/* [train] replicas: a copy of the built experiment x0's layers (read from the same file and
 * overrides; no heads) that shares x0's weights, has gradients and layer state of its own for
 * ceil(batch/replicas) rows, and neither data nor outputs of its own: ts_exp_replica_view points
 * its fields and its layers' outputs (x and dx) at rows lo..lo+n of x0's. Freed with
 * ts_exp_free (which leaves x0's dataset and outputs alone). */
ts_exp *ts_exp_replica(ts_exp *x0, ts_err *e);
int ts_exp_replica_view(ts_exp *r, const ts_exp *x0, int lo, int n, ts_err *e);
int ts_exp_backward(ts_exp *x, ts_err *e);
/* One full evaluation of a split: heads' metrics land in x->ctx.metrics. */
int ts_exp_evaluate(ts_exp *x, ts_phase split, ts_err *e);
int ts_exp_train(ts_exp *x, FILE *log, ts_err *e);
/* [train] group_by: reorders the shuffled training rows order[0..n) so that the rows of each of
 * the ng groups (group[row] in [0, ng)) are adjacent, the groups in an order drawn from rng. */
int ts_group_order(long *order, long n, const long *group, long ng, ts_rng *rng, ts_err *e);

/* ---- the results folder (rundir.c; docs/ini.md "The results folder") ------------------------ */
typedef enum ts_dir_state {
    TS_DIR_EMPTY = 0,      /* missing, empty, or only log.txt / .lock */
    TS_DIR_FINISHED,       /* a run that wrote metrics.json */
    TS_DIR_UNFINISHED,     /* a run's files without metrics.json (killed, interrupted, failed) */
    TS_DIR_FOREIGN         /* files tessera did not write: never written into */
} ts_dir_state;
/* Refuses an experiment name that is not one safe folder name ('/', control characters,
 * a leading dot, empty or too long); where is "FILE:LINE" for the message. */
int ts_check_run_name(const char *name, const char *where, ts_err *e);
/* What dir holds; for TS_DIR_FOREIGN the name of one file that is not tessera's into other. */
ts_dir_state ts_rundir_state(const char *dir, char *other, size_t n);
/* Creates dir if needed and takes an exclusive flock on dir/.lock (closed on exec); a second
 * writer gets a sentence naming the folder and the holder's pid. */
int ts_rundir_lock(const char *dir, int *fd, ts_err *e);
void ts_rundir_unlock(int fd);
/* Releases x's lock; a folder this run created and left holding nothing but the lock goes too. */
void ts_rundir_release(ts_exp *x);
/* Removes the files a run writes (and nothing else) from dir. */
int ts_rundir_clear(const char *dir, ts_err *e);
/* identity.txt's text for a built experiment: the library, every plugin used (kind, name,
 * version, checksum, path), every data file (checksum, size, path) and the resolved
 * configuration; *key hashes it without the paths. NULL when out of memory. */
char *ts_rundir_identity(const ts_exp *x, uint64_t *key);
/* The key of dir/identity.txt (and its text when text != NULL; caller frees): -1 when none. */
int ts_rundir_read_key(const char *dir, uint64_t *key, char **text);
/* A short list of the identity lines of new_text that old_text lacks ("train.lr = 0.01; ..."). */
void ts_rundir_diff(const char *old_text, const char *new_text, char *out, size_t n);
/* Before the experiment is built (rank 0): refuses a folder of foreign files, takes the lock,
 * and refuses a folder that holds a run unless --resume, --overwrite or --if-changed allow it;
 * a finished run with nothing to resume is refused under --resume too. */
int ts_rundir_begin(ts_exp *x, ts_err *e);
/* After the build, before any file is written: applies --overwrite / --if-changed / --resume
 * with the run's identity. *resume = 1: continue from a checkpoint; x->up_to_date = 1: an
 * identical finished run is there, write nothing. Keeps the identity text in x->identity. */
int ts_rundir_prepare(ts_exp *x, FILE *log, int *resume, ts_err *e);
/* Writes x->identity to RUN_DIR/identity.txt (atomically), once the run has started. */
int ts_rundir_write_identity(ts_exp *x, ts_err *e);
/* The resolved configuration as sorted "section.key = value" lines. mode 0: for checkpoints
 * (keys that may change on resume left out); mode 1: for a run's identity (keys that cannot
 * change a figure left out: threads, logging, checkpoint cadence, the file's own path). */
char *ts_config_text(const ts_exp *x, int mode, size_t *n);

/* ---- results ------------------------------------------------------------------------------- */
int ts_mkdirs(const char *path, ts_err *e);
/* "cannot write PATH: <strerror>; <what to do for a full disk, a size limit, a read-only
 * folder>; <kept>" (kept NULL: "the files written before are kept"). Returns -1. */
int ts_write_error(ts_err *e, const char *path, int err, const char *kept);
/* Writes text to path through a temporary file and rename(), so a reader never sees half. */
int ts_write_atomic(const char *path, const char *text, size_t n, ts_err *e);
int ts_write_metrics_json(const char *path, const ts_metric_rec *m, int n, ts_err *e);
const char *ts_phase_name(ts_phase p);
/* After an evaluation of the test split: one CSV line per test row, in split order, with each
 * head's prediction (binary: probability; regression: value) and, with_labels, its label;
 * with_row adds the row's index (and its file line when the dataset offers aux "row_line");
 * an `id` column when it offers "row_id". Heads without per-row predictions are left out;
 * 1 (with a sentence in e, nothing written) when no head has them. */
int ts_write_predictions(ts_exp *x, const char *path, int with_labels, int with_row, ts_err *e);

/* ---- check-plugin helpers ------------------------------------------------------------------ */
/* Builds a section from "k=v k=v" for a plugin's check; caller frees with ts_ini_free. */
int ts_ini_from_pairs(ts_ini *ini, const char *section, const char *pairs, ts_err *e);

/* ---- trained parameters (params_io.c) ------------------------------------------------------ */
/* Writes every parameter's weights (tied copies once) to path, "TSPR" layout with a CRC-32
 * (params_io.c documents it); written to a temporary file and renamed. */
int ts_save_params(ts_exp *x, const char *path, ts_err *e);
/* Reads path into a built experiment's weights after checking the CRC and that names and
 * shapes match one to one; on a mismatch names what differs and changes nothing. */
int ts_load_params(ts_exp *x, const char *path, ts_err *e);
/* The pieces, shared with checkpoints: a parameter record of the file (into its buffer). */
typedef struct ts_prec {
    const char *name;             /* not NUL-terminated */
    uint32_t len;
    int32_t rows, cols;
    const unsigned char *w;       /* (rows, cols) floats, unaligned */
    int used;
} ts_prec;
size_t ts_params_records_size(const ts_exp *x);       /* bytes of the count and the records */
int ts_params_write_records(FILE *f, ts_exp *x, unsigned long *crc);
/* Parses the count and records of [b, b + n); NULL with the reason in *corrupt. */
ts_prec *ts_params_parse(const unsigned char *b, size_t n, uint32_t *count, const char **corrupt);
/* Names and shapes one to one with the experiment's parameters; a message naming what differs. */
int ts_params_match(ts_exp *x, ts_prec *r, uint32_t count, const char *path, ts_err *e);
void ts_params_copy(ts_exp *x, const ts_prec *r, uint32_t count);
int ts_put_floats(FILE *f, const float *w, size_t n, unsigned long *crc);   /* + CRC-32 */
uint32_t ts_crc_of(const unsigned char *p, size_t n);
/* Reads a whole regular file (a params.bin, a checkpoint) into *buf (malloc'ed, n bytes). */
int ts_read_file(const char *path, unsigned char **buf, size_t *n, ts_err *e);
/* Opens path for reading when it is a regular file (a symbolic link to one is fine) and returns
 * the descriptor; never blocks, even on a FIFO. -1 with errno set when open() fails (e is left
 * for the caller's message), -1 with errno = 0 and a sentence in e naming what path is instead
 * (a FIFO, a device, a socket, a folder); `what` is what the caller wanted ("a data file"). */
int ts_open_regular(const char *path, const char *what, ts_err *e);
/* fopen(path, "r") for a regular file only (NULL for a FIFO, a device, a folder): the program's
 * readers of files a run wrote (metrics.json, gates.csv, config.ini) never block on a planted FIFO. */
FILE *ts_fopen_regular(const char *path);
/* Bytes of the (inflated) file before the next line ts_lines_next will return. */
long long ts_lines_offset(const ts_lines *r);
/* Continues reading at byte off, the start of line lineno + 1 (an offset ts_lines_offset gave
 * when ts_lines_lineno was lineno): a seek in a plain file, lines inflated and skipped in gzip. */
int ts_lines_seek(ts_lines *r, long long off, long lineno, ts_err *e);

/* ---- checkpoints (checkpoint.c; docs/checkpoints.md documents the format) -------------------- */
/* The training loop's state between two steps: with the arena's weights and optimizer slots it
 * is everything a resumed run needs to continue exactly where the killed one stopped. */
typedef struct ts_loop {
    long epoch;                    /* the epoch being trained, 1-based */
    long s;                        /* the next step within it */
    int shuffled;                  /* order holds this epoch's shuffle already */
    int done;                      /* training is over (last epoch, max_steps or early stop) */
    long step;                     /* optimizer steps taken */
    long seen, seen_log, logged_steps, best_epoch, bad_evals;
    double loss_acc, best_score, train_time, wall;   /* seconds trained, seconds run */
    long ntrain;
    long *order;                   /* (ntrain) this epoch's order of the training rows */
    long nw;
    float *best;                   /* (nw) the weights of the best validation so far */
    long train_off, eval_off;      /* bytes of train.csv and eval.csv written */
    double *gn;                    /* GradNorm's (6 K) doubles, or NULL */
    long *gn_t;                    /* GradNorm's update count */
    int streamed;                  /* [data] stream = true: no order (ORDR empty); ntrain is the
                                    * training rows of every rank together */
    int64_t *spos;                 /* streamed: (nspos) every rank's TS_STREAM_POS numbers */
    int nspos;
    int spos_ok;                   /* a resume restored spos */
} ts_loop;

/* Writes RUN_DIR/checkpoint.tsck atomically (temporary file, fsync, rename), keeping the one it
 * replaces as checkpoint.prev.tsck; best != 0 also writes checkpoint-best.tsck. */
int ts_ckpt_save(ts_exp *x, const ts_loop *l, int best, ts_err *e);
/* Restores the newest valid checkpoint of the results folder into x and l: 1 when one was
 * restored, 0 when the folder has none, -1 with a message when none is usable. Each rejected file
 * is reported on log with the reason (damaged, another experiment: the keys that differ). */
int ts_ckpt_resume(ts_exp *x, ts_loop *l, FILE *log, ts_err *e);
/* Removes the checkpoint files of a finished run (with keep: only unfinished temporary ones). */
void ts_ckpt_clean(const char *dir, int keep);
/* A run with tables split across size > 1 ranks: this rank saves, resumes and cleans its own
 * files (checkpoint.rankK-of-N.tsck, ...); a resume with another number of ranks is refused. */
void ts_ckpt_shard(int rank, int size);
/* ts_ckpt_resume, taking only a checkpoint of the given step (the ranks of a sharded run agree
 * on one: a kill may land between two ranks' writes). */
int ts_ckpt_resume_at(ts_exp *x, ts_loop *l, long step, FILE *log, ts_err *e);
/* The experiment's identity for checkpoints: the resolved INI as canonical text (sorted
 * sections and keys; the keys that may change on resume left out), and its 64-bit FNV-1a hash. */
char *ts_ckpt_config_text(const ts_exp *x, size_t *n);
uint64_t ts_hash64(const void *p, size_t n);

/* Refuses, before the parameters are allocated, an experiment whose estimated memory (what the
 * process holds now + parameters with gradients and optimizer slots + activations + the best
 * weights' copy) exceeds the run's max_memory or the memory available. */
int ts_exp_check_memory(ts_exp *x, int nslots, ts_err *e);

#endif
