/* label_data.c — a test dataset whose labels a test controls: for the label checks and early
 * stopping tests of test_validity.c. Row r of a split has the label y = r % 2 (both classes in
 * every split), or 0 in the validation split with valid_labels = zeros, and two features
 * x = (y - 0.5 + u, v) with u, v uniform in [-1, 1) from a hash of (split, row), so that a
 * linear model learns y well but not perfectly. bad_value replaces the labels of bad_count
 * rows of bad_split from bad_row on ("nan", "inf", "2", "-1" ...). It declares nothing as a
 * label itself (the graph knows y as a label from a head's `label =`). Never installed. */
#include <stdlib.h>
#include <string.h>
#include "tessera.h"

typedef struct {
    long n[3];
    int zeros;                /* valid_labels = zeros */
    int bad_split;            /* -1 none, else the split */
    long bad_row, bad_count;
    float bad_value;
    float *x, *y;             /* (max batch, 2), (max batch) */
    ts_tensor *fx, *fy;
} label_data;

/* A uniform number in [-1, 1) from (split, row, k): splitmix64 of the three. */
static float noise(int split, long row, int k)
{
    uint64_t z = ((uint64_t)split << 40) ^ ((uint64_t)row << 2) ^ (uint64_t)k;
    z += 0x9e3779b97f4a7c15ull;
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    z ^= z >> 31;
    return (float)((double)(z >> 11) / 9007199254740992.0 * 2.0 - 1.0);
}

static void ld_close(ts_data *D)
{
    label_data *s = D->state;
    if (!s) return;
    free(s->x);
    free(s->y);
    free(s);
    D->state = NULL;
}

static int ld_open(ts_data *D, const ts_cfg *cfg, ts_err *e)
{
    label_data *s = calloc(1, sizeof *s);
    if (!s) return ts_fail(e, "label_data: out of memory");
    D->state = s;
    double rows[3];
    int nr = 0;
    if (ts_cfg_floats(cfg, "rows", rows, 3, &nr, e) ||
        ts_cfg_choice(cfg, "valid_labels", "both|zeros", &s->zeros, e) ||
        ts_cfg_choice(cfg, "bad_split", "none|train|valid|test", &s->bad_split, e) ||
        ts_cfg_int(cfg, "bad_row", &s->bad_row, e) || ts_cfg_int(cfg, "bad_count", &s->bad_count, e))
        return -1;
    if (nr != 3) return ts_fail(e, "%s: rows = TRAIN, VALID, TEST", ts_cfg_where(cfg, "rows"));
    s->bad_split -= 1;
    s->bad_value = strtof(ts_cfg_str(cfg, "bad_value"), NULL);
    for (int k = 0; k < 3; k++) D->nrows[k] = s->n[k] = (long)rows[k];
    int mb = ts_ctx_max_batch(D->ctx), two = 2, one = 1;
    s->x = malloc((size_t)mb * 2 * sizeof *s->x);
    s->y = malloc((size_t)mb * sizeof *s->y);
    if (!s->x || !s->y) return ts_fail(e, "label_data: out of memory");
    if (!(s->fx = ts_data_field(D, "x", TS_F32, 2, &two, 0, e)) ||
        !(s->fy = ts_data_field(D, "y", TS_F32, 2, &one, 0, e)))
        return -1;
    return 0;
}

static int ld_batch(ts_data *D, ts_phase split, const long *rows, int n, ts_err *e)
{
    label_data *s = D->state;
    for (int i = 0; i < n; i++) {
        long r = rows[i];
        if (r < 0 || r >= s->n[split]) return ts_fail(e, "label_data: row %ld outside the split", r);
        float y = split == TS_VALID && s->zeros ? 0.0f : (float)(r % 2);
        s->x[2 * i] = y - 0.5f + noise(split, r, 0);
        s->x[2 * i + 1] = noise(split, r, 1);
        if ((int)split == s->bad_split && r >= s->bad_row && r < s->bad_row + s->bad_count)
            y = s->bad_value;
        s->y[i] = y;
    }
    s->fx->x = s->x;
    s->fy->x = s->y;
    s->fx->dim[0] = s->fy->dim[0] = n;
    return 0;
}

static const ts_key keys[] = {
    {"rows", "list", "40, 20, 20", "rows of the train, valid and test splits"},
    {"valid_labels", "choice:both|zeros", "both", "zeros: every validation label is 0"},
    {"bad_split", "choice:none|train|valid|test", "none", "the split whose labels bad_value replaces"},
    {"bad_row", "int", "0", "the first row given bad_value"},
    {"bad_count", "int", "1", "how many rows from bad_row on"},
    {"bad_value", "string", "2", "the label those rows get (strtof: nan, inf, -1, 0.5 ...)"},
    {NULL, NULL, NULL, NULL}};
static const ts_dataset_ops ops = {.size = sizeof(ts_dataset_ops), .open = ld_open, .batch = ld_batch,
                                   .close = ld_close};
static const ts_plugin plugin = {TS_ABI, sizeof(ts_plugin), TS_DATASET, "label_data", "0",
                                 "labels a test controls (test only)", keys, &ops};
const ts_plugin *tessera_plugin_entry(uint32_t i) { return i == 0 ? &plugin : NULL; }
