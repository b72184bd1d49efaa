/* fuzz_dataset.h — the body shared by the dataset-reader harnesses: each fuzz_NAME.c compiles one
 * plugin's .c (so tessera_plugin_entry is that plugin) with this header and describes the files
 * and keys in a fuzz_reader. One input: write the data files, parse [data] with the real INI
 * loader, validate its keys as the host does, then open(), batch() over every split (each batch
 * checked by fuzz_check_field), the aux arrays, and close(). A failed open() must say why.
 * Not a general test driver: it never trains and never builds a graph (fuzz_ini.c does that). */
#ifndef TS_FUZZ_DATASET_H
#define TS_FUZZ_DATASET_H

#include "fuzz_common.h"

typedef struct fuzz_reader {
    const char *name;                /* the harness, for messages */
    /* [data] lines written after the input's keys; "@DIR@" becomes the private folder */
    const char *fixed;
    const char *path_key;            /* a key of fixed whose value must survive (else skip) */
    const char *path_value;          /* its value, with @DIR@ */
    const char *default_keys;        /* the keys of a one-part input */
    int keys_only;                   /* the whole input is [data] keys (no data file) */
    int reuse_last;                  /* files past the last part get the last part's bytes */
    /* The data files of parts 1, 2, ... (relative to the folder, NULL-terminated), given the
     * first data part (movielens picks its file format from it). */
    const char *const *(*files)(const uint8_t *first, size_t n);
    const char *const *all_files;    /* every name files() may give: deleted before each input */
    /* Optional: 0 when the keys ask for more work than a fuzzing run affords (rows x width);
     * such an input is skipped, not reported. */
    int (*affordable)(const ts_cfg *cfg);
    const fuzz_aux *aux;
    int max_batch;
    /* Optional: more checks on an opened dataset (the table reader reopens with its state). */
    void (*after_open)(const struct fuzz_reader *R, const ts_dataset_ops *ops, ts_data *D,
                       const ts_cfg *cfg);
} fuzz_reader;

/* s with every "@DIR@" replaced by dir, into a malloc'ed string. */
static inline char *fuzz_subst(const char *s, const char *dir)
{
    size_t n = 1, dl = strlen(dir);
    for (const char *p = s; *p; p++) n += strncmp(p, "@DIR@", 5) ? 1 : dl;
    char *out = malloc(n), *o = out;
    if (!out) abort();
    for (const char *p = s; *p;) {
        if (!strncmp(p, "@DIR@", 5)) { memcpy(o, dir, dl); o += dl; p += 5; }
        else *o++ = *p++;
    }
    *o = 0;
    return out;
}

static inline int fuzz_dataset_one(const fuzz_reader *R, const uint8_t *data,
                                   size_t size)
{
    const char *dir = fuzz_tmpdir();
    const uint8_t *part[FUZZ_MAX_PARTS];
    size_t len[FUZZ_MAX_PARTS];
    int np = R->keys_only ? 1 : fuzz_split(data, size, part, len);
    if (R->keys_only) { part[0] = data; len[0] = size; }
    int with_keys = R->keys_only || np > 1;
    const uint8_t *keys = with_keys ? part[0] : (const uint8_t *)R->default_keys;
    size_t nkeys = with_keys ? len[0] : strlen(R->default_keys);
    if (memchr(keys, 0, nkeys)) return 0;   /* the INI file loader refuses NUL bytes itself */
    int first = with_keys ? 1 : 0;

    /* The data files: stale ones of the previous input go first. */
    char path[2048];
    for (int i = 0; R->all_files && R->all_files[i]; i++) {
        snprintf(path, sizeof path, "%s/%s", dir, R->all_files[i]);
        unlink(path);
    }
    const char *const *files = first < np ? R->files(part[first], len[first]) : NULL;
    for (int i = 0; files && files[i] && (first + i < np || R->reuse_last); i++) {
        int k = first + i < np ? first + i : np - 1;
        snprintf(path, sizeof path, "%s/%s", dir, files[i]);
        char *slash = strrchr(path, '/');
        *slash = 0;
        mkdir(path, 0700);              /* a subfolder (movielens); EEXIST is fine */
        *slash = '/';
        fuzz_write(path, part[k], len[k]);
    }

    char *fixed = fuzz_subst(R->fixed, dir), *want = fuzz_subst(R->path_value, dir);
    char *text = malloc(nkeys + strlen(fixed) + 16);
    if (!text) abort();
    memcpy(text, "[data]\n", 7);
    memcpy(text + 7, keys, nkeys);
    snprintf(text + 7 + nkeys, strlen(fixed) + 9, "\n%s", fixed);

    const ts_plugin *pl = tessera_plugin_entry(0);
    const ts_dataset_ops *ops = pl->ops;
    static const char *const host_keys[] = {"type", "plugin", NULL};
    const ts_key *lists[1] = {pl->keys};
    ts_ini ini;
    ts_err e = {{0}};
    int ok = ts_ini_load_string(&ini, "fuzz.ini", text, &e) == 0;
    ts_cfg *cd = ok ? ts_ini_find(&ini, "data") : NULL;
    ok = cd && ts_cfg_validate(cd, host_keys, lists, 1, &e) == 0;
    const char *got = ok ? ts_cfg_str(cd, R->path_key) : NULL;
    ok = ok && got && !strcmp(got, want);   /* the input's keys moved our lines elsewhere */
    if (!ok && fuzz_verbose())
        fprintf(stderr, "%s: skipped, [data] does not load: %s\n", R->name,
                e.msg[0] ? e.msg : "our own lines are not in it");
    if (ok && R->affordable && !(ok = R->affordable(cd)) && fuzz_verbose())
        fprintf(stderr, "%s: skipped, too much work for a fuzzing run\n", R->name);
    if (ok) {
        ts_ctx ctx;
        ts_ctx_init(&ctx, 1, R->max_batch);
        ts_data D;
        memset(&D, 0, sizeof D);
        D.ctx = &ctx;
        ctx.data = &D;
        ctx.data_ops = ops;
        e.msg[0] = 0;
        if (ops->open(&D, cd, &e) == 0) {
            if (D.nfield < 1 || D.nfield > TS_MAX_FIELDS)
                FUZZ_BUG("%s: open() declared %d fields", R->name, D.nfield);
            fuzz_walk_dataset(R->name, ops, &D, R->max_batch, R->aux);
            if (R->after_open) R->after_open(R, ops, &D, cd);
            if (fuzz_verbose())
                fprintf(stderr, "%s: opened: %d fields, rows %ld / %ld / %ld\n", R->name,
                        D.nfield, D.nrows[0], D.nrows[1], D.nrows[2]);
        } else if (!e.msg[0]) {
            FUZZ_BUG("%s: open() failed without a message", R->name);
        } else if (fuzz_verbose()) {
            fprintf(stderr, "%s: open() refused: %s\n", R->name, e.msg);
        }
        if (ops->close) ops->close(&D);
        ts_ctx_free(&ctx);
    }
    ts_ini_free(&ini);   /* ts_ini_load_string always leaves it freeable */
    free(text); free(fixed); free(want);
    return 0;
}

/* For readers with fixed file names. */
#define FUZZ_FIXED_FILES(fn, ...)                                                             \
    static const char *const fn##_names[] = {__VA_ARGS__, NULL};                              \
    static const char *const *fn(const uint8_t *first, size_t n)                              \
    { (void)first; (void)n; return fn##_names; }

#endif
