/* table.h — private to the `table` dataset plugin (table.c, table_spec.c, table_parse.c,
 * table_columns.c, table_vocab.c, table_state.c, table_split.c, which build into one
 * table.so): the reader's declarations (tables, source columns, features, groups) and the
 * functions the files share. Not installed and not part of the plugin ABI; the only public
 * header is tessera.h.
 *
 * Vocabulary of this reader:
 *   table    the main delimited file ([data] path) or a side table joined to it by key
 *   source   one column of a table that something reads (a feature, a label, a split rule)
 *   feature  one declared output: dense, categorical, multi, sequence, label, weight or id;
 *            each has one field of its own (and may belong to a group)
 *   raw id   a source's text value interned in the string table, numbered in file order
 *   final id what a vocabulary or a hash makes of a raw id: the ids a field holds */
#ifndef TS_TABLE_H
#define TS_TABLE_H

#include "tessera.h"

#include <stdint.h>

#define TB_MAX_TABLES 8        /* the main file and up to 7 side tables */
#define TB_SIG_MAX 512         /* one feature's canonical declaration */
#define TB_PATH_MAX 4096
#define TB_STATE_MAGIC "tessera-table-state 1"

/* ---- declarations: NAME(option:arg:arg option ...), the list syntax of every column key ---- */
typedef struct tb_opt {
    char *key;                 /* "clip" */
    int nargs;
    char **args;               /* "p1", "p99" (quotes removed) */
} tb_opt;

typedef struct tb_spec {
    char *name;                /* the column, table or group name (quotes removed) */
    int nopt;
    tb_opt *opt;
} tb_spec;

typedef struct tb_specs {
    int n;
    tb_spec *s;
} tb_specs;

/* Parses "a, \"b c\"(log clip:0:9), d(min_count:5)" into specs; -1 with a reason in why. */
int tb_specs_parse(const char *text, tb_specs *out, char *why, size_t nwhy);
void tb_specs_free(tb_specs *l);
const tb_opt *tb_opt_find(const tb_spec *s, const char *key);

/* ---- tables and their source columns -------------------------------------------------------- */
enum { TB_NEED_NUM = 1u, TB_NEED_TIME = 2u, TB_NEED_TOK = 4u, TB_NEED_LIST = 8u, TB_NEED_SPLIT = 16u };

typedef struct tb_slot {       /* a value of the intern cache: compared without a pointer */
    uint64_t w[2];             /* its first 16 bytes, zero-padded */
    uint32_t n;                /* its length */
    int32_t id;                /* -1: an empty slot */
} tb_slot;

typedef struct tb_src {
    int table;                 /* index into tb_data.tab */
    char *name;                /* the column's name (header, columns = or its position) */
    int col;                   /* its position in the file; -1: absent (a label when predicting) */
    unsigned need;             /* TB_NEED_*: what the reader keeps of each row's value */
    int missing_ok;            /* NUM: a missing marker is kept as NaN rather than a bad row */
    int optional;              /* may be absent from the file (labels in PREDICT mode) */
    int direct;                /* stream = true: f + 1 when only feature f, hashed, reads it: a
                                  row's tok is the final id, the value never interned */
    char list_sep[16];         /* LIST: separator of the values inside the field */
    int in_group;              /* g + 1: its values live in group g's packed rows, column gcol */
    int gcol;
    size_t stride;             /* num / tok hold a row's value every stride cells (1, or the
                                  group's width when in_group): TB_NUM(s, r), TB_TOK(s, r) */
    float *num;                /* NUM: (rows) the value, NaN when missing */
    double *time;              /* TIME: (rows) the value in double (timestamps need 53 bits) */
    int32_t *tok;              /* TOK: (rows) raw id in string space = this source's index */
    int64_t *loff;             /* LIST: (rows + 1) offsets into lids */
    int32_t *lids;             /* LIST: raw ids of every row's values */
    int64_t lcap, lused;
    struct tb_slot *cache;     /* TOK, LIST while reading: a hash table in front of the string
                                  table (open addressing, cmask + 1 slots) */
    uint32_t cmask, cn;
    const char **cs;           /* (cn) the string table's copy of each raw id (stable): the
                                  bytes after the first 16 of a longer value */
} tb_src;

typedef struct tb_table {
    char name[TS_NAME_MAX];    /* "" for the main file, else the side table's name */
    char path[TB_PATH_MAX];
    char sep[16];              /* field separator */
    int header, quoting, trim, latin1;
    int nuser;                 /* columns = names for a file without a header */
    char **username;
    int ncol;                  /* fields of every row */
    char **colname;            /* (ncol) */
    long n, cap;               /* rows read, rows allocated */
    long *line;                /* (rows) the first line of each row: key messages, aux row_line */
    int key_src, on_src;       /* side tables: its key column; the main column joined to it */
    int32_t *key_row;          /* side tables: (raw ids of the key) the row of each key, -1 */
    long key_cap;
    int32_t *join;             /* side tables: (main rows) the side row of each main row, -1 */
    int32_t *item_row;         /* side tables on the item column: (items) side row of an item */
} tb_table;

/* ---- features ------------------------------------------------------------------------------- */
typedef enum tb_kind { TB_DENSE = 0, TB_CAT, TB_MULTI, TB_SEQ, TB_LABEL, TB_WEIGHT, TB_ID } tb_kind;
enum { TB_SCALE_STANDARD = 0, TB_SCALE_NONE, TB_SCALE_MINMAX };
enum { TB_FILL_NONE = 0, TB_FILL_VALUE, TB_FILL_MEAN };
enum { TB_ORDER_FREQUENCY = 0, TB_ORDER_FIRST, TB_ORDER_VALUE };

typedef struct tb_feat {
    tb_kind kind;
    char field[TS_NAME_MAX];   /* the output field */
    char sig[TB_SIG_MAX];      /* canonical declaration: the fitted state must hold the same */
    int src;                   /* its source column */
    int group;                 /* its group, -1 none */
    int own_field;             /* it has a field of its own */
    int packed;                /* only its group reads it, from the group's packed rows */
    /* dense: t(v) = slog1p(clip(v)) (log) or clip(v); missing -> fill; out = (t - shift) / div */
    int log, scale, fill_kind;
    double clip_lo, clip_hi;   /* raw units; -inf / inf when not clipped */
    double q_lo, q_hi;         /* percentiles (0..100) to fit the clip bounds from, or NAN */
    double fill;               /* TB_FILL_VALUE: raw units; after fitting: t units */
    double shift, div;
    float *val;                /* (rows of its table) the output value */
    float missing_out;         /* the output of a row whose side-table key is missing */
    /* categorical, multi, sequence */
    int hash;                  /* 1: ids = hash(value, seed) mod buckets; 0: a vocabulary */
    int64_t buckets;
    uint64_t seed;
    long min_count;
    int vocab_of;              /* the feature whose vocabulary this one uses (itself: own) */
    char vocab_name[TS_NAME_MAX];  /* vocab:FIELD as declared, resolved into vocab_of */
    int32_t nvocab;            /* ids lie in [0, nvocab); 0 = out of vocabulary */
    int32_t *map;              /* (nmap) raw id of src -> final id */
    int32_t nmap;
    int maxlen, maxlen_auto;   /* sequence: steps kept (the last ones); fitted when auto */
    int as_bag;                /* sequence: BAGS (B, 1) instead of I32 (B, L) with len */
    int history;               /* sequence: the values of the user's earlier rows (by time) */
    long unseen;               /* cells outside the vocabulary, over the rows read */
    int order;                 /* TB_ORDER_*: how a vocabulary numbers its values (order:) */
    int ties_value;            /* ties of the frequency order by value, not first appearance */
    int rows_all;              /* vocab_rows:all: every row's values are in the vocabulary */
    int no_oov;                /* oov:none: ids 0.. are values, no out-of-vocabulary id */
    int over;                  /* multi over:FIELD: a side column gathered over the values of
                                  that main-file sequence (its items' genres); -1 none */
    char over_name[TS_NAME_MAX];
    int32_t *over_row;         /* (raw ids of over's column) the side row of each value, -1 */
    int example_age;           /* dense example_age: (t_max - t) / (t_max - t_min) over the
                                  training examples, 0 in every other split (serving time) */
    /* label */
    int regression;
    double threshold;          /* binary from a number: 1 when v >= threshold (NAN: none) */
    int npos, nneg, nmv;       /* positive / negative words; map words and values */
    char **pos, **neg, **mkey;
    double *mval;
    char mask[TS_NAME_MAX];    /* "" or the name of its 0/1 mask field */
    char times_name[TS_NAME_MAX];  /* label times:FIELD: multiplied by that label (ESMM's
                                    * click x conversion); "" none */
    int times_of;              /* that label's index, -1 none */
    char ids_name[TS_NAME_MAX];    /* label ids:FIELD: the id of the value in FIELD's vocabulary */
    int ids_of;                /* that field's index, -1 none */
    float *lab;                /* label, weight: (main rows) the value */
    uint8_t *present;          /* label: (main rows) 1 when the row has one */
    /* batch */
    ts_tensor *t, *tm;
    float *bx, *bm;            /* (cap * width) values; (cap) mask */
    int32_t *bids, *blen, *boff;
    int64_t bids_cap;
} tb_feat;

typedef struct tb_group {
    char name[TS_NAME_MAX];
    int kind;                  /* TB_DENSE (F32 (B, F)), TB_CAT (I32 (B, F)), TB_MULTI (BAGS (B, F)) */
    int n;
    int feat[TS_MAX_FIELDS];
    int64_t off[TS_MAX_FIELDS + 1];   /* id offsets of each member; off[n] = the group's vocab */
    ts_tensor *t;
    float *bx;
    int32_t *bids, *boff;
    int64_t bids_cap;
    int packable;              /* every member a single value of a main-file column */
    int inplace;               /* some members are read straight into px / pids */
    float *px;                 /* packed (main rows, n) dense values, row-major; or NULL */
    int32_t *pids;             /* packed (main rows, n) ids with offsets, row-major; or NULL */
} tb_group;

enum { TB_SPLIT_RANDOM = 0, TB_SPLIT_USER, TB_SPLIT_TIME, TB_SPLIT_COLUMN };

typedef struct tb_data {
    ts_open_mode mode;
    int from_state;            /* the fitted state came from ts_ctx_fitted: nothing is refitted */
    int ntab;
    tb_table tab[TB_MAX_TABLES];
    int nsrc, srccap;
    tb_src *src;
    int nfeat, featcap;
    tb_feat *feat;
    int ngroup;
    tb_group group[TS_MAX_FIELDS];
    int column_fields_all;     /* grouped features keep their own fields too */
    ts_strtab *strs;           /* raw values: space = source index; vocabularies: nsrc + feature */
    int nmissing;
    char **missing;            /* markers of a missing number ("", ?, NA, ...) */
    int skip_bad, vocab_first; /* vocabulary order: 1 first appearance, 0 training frequency */
    long default_min_count;
    long skipped, unseen, missing_keys;
    /* splits */
    int split_kind;
    double frac[3];
    uint64_t split_seed;
    int split_src, user_src, item_src, time_src, id_feat;
    int has_history;           /* a sequence is made of each user's earlier rows (or rows are
                                  ordered or kept by them: row_order, min_history) */
    long min_history;          /* a row is an example when its user has this many earlier rows */
    int row_order_user;        /* row_order = user_time: each split's rows by user, then time */
    long *period;              /* (nperiod) the rows vocabularies and popularity count: the
                                  training split before min_history; every row when applying */
    long nperiod;
    int32_t *hist_rows;        /* (main rows) the rows by user, then time, then file order */
    int32_t *hist_at, *hist_first;  /* (main rows) a row's place in hist_rows; its user's first */
    long nrows[3];
    long *rows[3];             /* examples: < tab[0].n a main row; else sampled negative - n */
    long *train_sorted;        /* the training rows in file order, while fitting */
    long ntrain_sorted;
    /* negative sampling */
    int negatives, neg_popularity, item_feat;
    int neg_declared;          /* negatives as declared (PREDICT samples none but keeps the field) */
    uint64_t neg_seed;
    char implicit[TS_NAME_MAX];
    long nneg;
    int32_t *neg_row, *neg_item;   /* (nneg) the positive's main row; the sampled item id */
    int32_t **item_map;        /* (nfeat) categorical features of the item column: (items) the
                                  feature's id of each item id, for sampled rows; else NULL */
    double *pop;               /* (item vocab) training interactions per item id */
    float *item_freq;          /* the same as floats, for aux item_freq */
    ts_tensor *t_implicit;
    float *b_implicit;
    const char **row_id;       /* (nrows[TS_TEST]) built on first use */
    long *row_line;            /* (nrows[TS_TEST]) each test row's first line, built on first use */
    int cap;                   /* rows of the batch buffers */
    ts_tensor *t_dummy;
    /* stream = true */
    struct tb_stream *stream;
    void *line_plan;           /* table_parse.c's plan of a row */
    struct tb_reader *line_reader_p;
} tb_data;

#define TB_NUM(s, r) ((s)->num[(size_t)(r) * (s)->stride])
#define TB_TOK(s, r) ((s)->tok[(size_t)(r) * (s)->stride])

/* table_spec.c: the list syntax; one feature from its declaration */
int tb_add_feature(tb_data *T, const ts_cfg *cfg, tb_kind kind, const tb_spec *sp, ts_err *e);
int tb_feat_sig(tb_data *T, tb_feat *f);
extern const char *const tb_kind_key[];

/* table_declare.c: [data] keys -> tables, sources, features, groups, splits, sampling */
int tb_declare(tb_data *T, ts_data *D, const ts_cfg *cfg, ts_err *e);

/* table_record.c: records of a delimited file, split into fields; values interned */
typedef struct tb_reader {
    ts_lines *in;
    const tb_table *t;
    size_t seplen;
    char *rec;                /* the record when it needed a copy (Latin-1, quotes over lines) */
    size_t reccap, reclen;
    char *buf;                /* the record being split: rec, or the lines buffer itself */
    size_t len;
    size_t *off, *flen;       /* (fcap) each field's start and length in buf */
    char **f;                 /* (fcap) each field, NUL-terminated after the split */
    int fcap;
    long line;                /* the record's first line */
    int trim_space, trim_tab; /* trim = true, and the separator holds no space / tab */
    int why_named;            /* the last -2's why names the file and line itself (a read
                                 error of the line reader) */
} tb_reader;
/* The next record: 1 (fields in R->f, lengths in R->flen), 0 at the end of the file, -1 a bad
 * record (why), -2 a read error or out of memory (why). R->line is the record's first line. */
int tb_record_next(tb_reader *R, int *nf, char *why, size_t nwhy);
int tb_record_line(tb_reader *R, char *line, size_t len, long lineno, int *nf, char *why, size_t nwhy);
void tb_record_free(tb_reader *R);
int tb_parse_number(const char *s, size_t n, double *v);   /* s[n] == 0; -1 if not a finite number */
int tb_is_missing(const tb_data *T, const char *s, size_t n);

int32_t tb_intern(tb_data *T, int src, const char *s, size_t n);   /* raw id; -2 out of memory */

/* table_parse.c: one file into its source columns */
int tb_read_table(tb_data *T, int t, const ts_cfg *cfg, ts_err *e);
int tb_src_get(tb_data *T, int table, const char *name, ts_err *e);
int tb_read_head(tb_data *T, const ts_cfg *cfg, ts_err *e);
int tb_parse_line(tb_data *T, char *line, size_t len, long lineno, char *why, size_t nwhy);
void tb_free_head(tb_data *T);
/* table_stream.c: stream = true (docs/scale.md) */
int tb_stream_open(tb_data *T, ts_data *D, const ts_cfg *cfg, long buffer, ts_err *e);
int tb_stream_batch(ts_data *D, ts_phase split, const long *rows, int n, ts_err *e);
int tb_stream_begin(ts_data *D, long epoch, const int64_t *pos, ts_err *e);
int tb_stream_next(ts_data *D, int n, int *got, ts_err *e);
void tb_stream_pos(ts_data *D, int64_t *pos);
void tb_stream_close(tb_data *T);
const char *tb_stream_report(const tb_data *T);
int tb_stream_fitted(const tb_data *T, char **text, size_t *n, ts_err *e);
/* table.c: a batch's group fields from its features' buffers (row b), and the fields pointed
 * at the buffers (n rows) */
int tb_group_row(tb_data *T, int b, long r, ts_err *e);
void tb_point_fields(tb_data *T, int n);
int tb_ensure_cap(tb_data *T, int cap);
int tb_bag_room(int32_t **ids, int64_t *cap, int64_t need);   /* a bag buffer grown to need ids */

/* table_columns.c: fitting and applying column transforms */
int tb_fit(tb_data *T, ts_err *e);
int tb_apply(tb_data *T, ts_err *e);
/* table_vocab.c: vocabularies; counted: training counts a group's pass made, or NULL */
typedef struct {
    int32_t raw;
    long count;              /* in the training rows (the training split before min_history) */
    long all;                /* in every row (vocab_rows:all) */
    int isnum;               /* order by value: the value is a number, num */
    double num;
    const char *s;
} tb_count;

int tb_fit_vocab(tb_data *T, int fi, tb_count *counted, ts_err *e);
int tb_apply_vocab(tb_data *T, int fi, ts_err *e);   /* the map of raw values to ids */
int tb_map_extend(tb_data *T, int i);   /* stream = true: the map grown to new raw ids */
double tb_dense_out(const tb_feat *f, double x);   /* table_columns.c: the output of raw x (NaN: missing) */
double tb_dense_t(const tb_feat *f, double x);     /* clip, then log */
/* The row of f's table that main row r reads: r itself, or its side table's joined row (-1). */
static inline int tb_src_row(const tb_data *T, const tb_feat *f, long r)
{
    int t = T->src[f->src].table;
    return t == 0 ? (int)r : T->tab[t].join[r];
}
uint64_t tb_hash(const char *s, size_t n, uint64_t seed);
/* The first id of a vocabulary: 1 when id 0 is the out-of-vocabulary bucket, 0 with oov:none. */
static inline int32_t tb_base(const tb_data *T, const tb_feat *f)
{
    return T->feat[f->vocab_of].no_oov ? 0 : 1;
}
/* A gathered (over:) feature's ids for main row r appended to *ids from at (grown as needed);
 * returns the new end, or -1 when out of memory. */
int64_t tb_gather(const tb_data *T, const tb_feat *f, long r, int32_t **ids, int64_t *cap, int64_t at);
int tb_pack(tb_data *T, ts_err *e);   /* row-major copies of groups of main-file columns */
void tb_plan_packing(tb_data *T);     /* which columns are read straight into a group's rows */
int tb_label_value(tb_data *T, tb_feat *f, const char *s, size_t n, float *v, int *present,
                   char *why, size_t nwhy);

/* table_state.c: the fitted state as text */
int tb_state_write(tb_data *T, char **text, size_t *n, ts_err *e);
int tb_state_read(tb_data *T, const char *text, size_t n, ts_err *e);

/* table_split.c: splits, joins, negative sampling */
int tb_join(tb_data *T, ts_err *e);
int tb_histories(tb_data *T, ts_err *e);
int tb_split(tb_data *T, ts_err *e);
int tb_popularity(tb_data *T, ts_err *e);   /* item popularity, maps for sampled rows */
int tb_negatives(tb_data *T, ts_err *e);

#endif
