/* fuzz_table.c — libFuzzer harness of the table reader (plugins/datasets/table*.c, compiled in).
 * The input is "KEYS\n%%\nMAIN\n%%\nITEMS": KEYS declares the columns (any [data] key of the
 * reader but path; a side table is items.csv in the folder), MAIN is the main file, ITEMS the
 * side table. A one-part input is the main file alone, read with the default keys below. After
 * a good open the harness takes the reader's fitted state and opens the same file again as an
 * evaluated file with it: that must succeed too, and every batch pass the same checks.
 * docs/fuzzing.md. */
#include "fuzz_dataset.h"

FUZZ_FIXED_FILES(table_files, "main.csv", "items.csv")

static const fuzz_aux table_aux[] = {
    {"skipped_rows", sizeof(long)}, {"unseen_values", sizeof(long)}, {"missing_keys", sizeof(long)},
    {"item_freq", sizeof(float)}, {"row_id", sizeof(const char *)}, {NULL, 0}};

/* The fitted state back through the reader, as `tessera evaluate` does. */
static void reopen_with_state(const fuzz_reader *R, const ts_dataset_ops *ops, ts_data *D,
                              const ts_cfg *cfg)
{
    char *text = NULL;
    size_t n = 0;
    ts_err e = {{0}};
    if (ops->fitted(D, &text, &n, &e)) {
        if (!e.msg[0]) FUZZ_BUG("%s: fitted() failed without a message", R->name);
        return;
    }
    if (!text || strlen(text) != n) FUZZ_BUG("%s: fitted() gave %zu bytes that are not %zu", R->name,
                                             text ? strlen(text) : 0, n);
    ts_ctx ctx;
    ts_ctx_init(&ctx, 1, R->max_batch);
    ctx.fitted = text;                           /* ts_ctx_free frees it */
    ctx.nfitted = n;
    ctx.open_mode = TS_OPEN_EVALUATE;
    ts_data E;
    memset(&E, 0, sizeof E);
    E.ctx = &ctx;
    ctx.data = &E;
    ctx.data_ops = ops;
    if (ops->open(&E, cfg, &e))
        FUZZ_BUG("%s: the same file and keys do not open with the state they fitted: %s",
                 R->name, e.msg);
    fuzz_walk_dataset(R->name, ops, &E, R->max_batch, R->aux);
    if (E.nrows[TS_TRAIN] != 0 || E.nrows[TS_VALID] != 0)
        FUZZ_BUG("%s: an evaluated file has training or validation rows", R->name);
    if (ops->close) ops->close(&E);
    ts_ctx_free(&ctx);
}

static const fuzz_reader table_reader = {
    .name = "table",
    .fixed = "type = table\npath = @DIR@/main.csv\n",
    .path_key = "path", .path_value = "@DIR@/main.csv",
    .default_keys = "header = false\ndense = 0(missing:mean), 1(log clip:p5:p95 scale:minmax)\n"
                    "categorical = 2(min_count:2)\nmulti = 3\nsequence = 4(max:3)\n"
                    "labels = 5(mask:has_label)\nid = 2\ngroups = g(c0 c1), h(c2 c3)\n"
                    "skip_bad_rows = true\nsplit_fractions = 0.5, 0.25, 0.25\n",
    .files = table_files, .all_files = table_files_names,
    .aux = table_aux, .max_batch = 7, .after_open = reopen_with_state};

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    return fuzz_dataset_one(&table_reader, data, size);
}
