/* fuzz_common.h — what every libFuzzer harness of tessera shares: a private temporary folder
 * removed at exit, writing files into it, cutting an input into parts, and the oracle that checks
 * a dataset's batch against the contract of tessera.h (shapes, ids inside their vocabulary,
 * monotone bag offsets, finite floats). Test code only: it may print and abort, library code may
 * not. Not a test framework: a harness is one LLVMFuzzerTestOneInput and this header.
 *
 * The input format of the dataset harnesses (docs/fuzzing.md):
 *   parts are separated by lines that are exactly "%%";
 *   one part:        the data file itself, read with the harness's default keys;
 *   two or more:     part 0 = INI lines added to [data] (before the harness's own type/path lines,
 *                    so an input cannot redirect a path: a second `path =` is a duplicate key),
 *                    part 1, 2, ... = the data files (missing ones are deleted, not left over). */
#ifndef TS_FUZZ_COMMON_H
#define TS_FUZZ_COMMON_H

#define _GNU_SOURCE   /* mkdtemp, nftw */
#include <ftw.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "internal.h"

#define FUZZ_MAX_PARTS 8

/* Stops the run with a message: libFuzzer saves the input as a crash reproducer. */
#define FUZZ_BUG(...) do { fprintf(stderr, "fuzz oracle: " __VA_ARGS__); fputc('\n', stderr); \
                           abort(); } while (0)

static char fuzz_dir[1024];   /* the harness's private folder, made once */

/* TESSERA_FUZZ_VERBOSE=1: say what happened to each input (for writing seeds, not for runs). */
static inline int fuzz_verbose(void)
{
    static int v = -1;
    if (v < 0) v = getenv("TESSERA_FUZZ_VERBOSE") && atoi(getenv("TESSERA_FUZZ_VERBOSE")) > 0;
    return v;
}

static inline int fuzz_rm_one(const char *path, const struct stat *sb, int flag,
                              struct FTW *ftw)
{
    (void)sb; (void)flag; (void)ftw;
    return remove(path);
}

static inline void fuzz_cleanup(void)
{
    if (fuzz_dir[0]) nftw(fuzz_dir, fuzz_rm_one, 16, FTW_DEPTH | FTW_PHYS);
}

/* Makes $TMPDIR/tessera-fuzz-XXXXXX (once) and returns it. */
static inline const char *fuzz_tmpdir(void)
{
    if (fuzz_dir[0]) return fuzz_dir;
    const char *t = getenv("TMPDIR");
    snprintf(fuzz_dir, sizeof fuzz_dir, "%s/tessera-fuzz-XXXXXX", t && *t ? t : "/tmp");
    if (!mkdtemp(fuzz_dir)) { perror(fuzz_dir); exit(2); }
    atexit(fuzz_cleanup);
    return fuzz_dir;
}

/* Writes n bytes to path; exits (not a finding) when the disk refuses. */
static inline void fuzz_write(const char *path, const void *data, size_t n)
{
    FILE *f = fopen(path, "wb");
    if (!f || (n && fwrite(data, 1, n, f) != n) || fclose(f)) {
        perror(path);
        exit(2);
    }
}

/* Copies a file of the source tree (tests/fuzz/data/...) to dst. */
static inline void fuzz_copy(const char *src, const char *dst)
{
    FILE *f = fopen(src, "rb");
    if (!f) { perror(src); exit(2); }
    char buf[1 << 16];
    size_t n = fread(buf, 1, sizeof buf, f);
    if (!feof(f)) { fprintf(stderr, "%s: over 64 KiB; keep fuzz data tiny\n", src); exit(2); }
    fclose(f);
    fuzz_write(dst, buf, n);
}

/* Cuts data at lines that are exactly "%%" (the separator line and its newline go); returns
 * the number of parts, at most FUZZ_MAX_PARTS (the rest stays in the last part). */
static inline int fuzz_split(const uint8_t *data, size_t size, const uint8_t **part,
                             size_t *len)
{
    int np = 0;
    size_t start = 0;
    for (size_t i = 0; i + 2 <= size && np < FUZZ_MAX_PARTS - 1; i++) {
        if ((i == 0 || data[i - 1] == '\n') && data[i] == '%' && data[i + 1] == '%' &&
            (i + 2 == size || data[i + 2] == '\n')) {
            part[np] = data + start;
            len[np++] = i - start;
            start = i + 3 > size ? size : i + 3;
            i = start - 1;
        }
    }
    part[np] = data + start;
    len[np++] = size - start;
    return np;
}

/* ---- the dataset oracle ------------------------------------------------------------------- */
/* Checks field t after batch() of n rows against tessera.h: dim[0] = n, buffers present, every
 * id in [0, vocab), bag offsets non-negative and monotone, sequence lengths in 1..dim[1], floats
 * finite (a non-finite feature or label turns training into NaN without naming file and line).
 * Reading every element lets AddressSanitizer catch a buffer that is too short. */
static inline void fuzz_check_field(const char *reader, const char *name, const ts_tensor *t,
                                    int n)
{
    if (t->ndim < 1 || t->ndim > TS_MAX_DIMS)
        FUZZ_BUG("%s: field %s has ndim %d", reader, name, t->ndim);
    if (t->dim[0] != n)
        FUZZ_BUG("%s: field %s has dim[0] = %d after a batch of %d rows", reader, name,
                 t->dim[0], n);
    for (int k = 1; k < t->ndim; k++)
        if (t->dim[k] < 1) FUZZ_BUG("%s: field %s has dim[%d] = %d", reader, name, k, t->dim[k]);
    if (n == 0) return;
    long numel = ts_numel(t);
    switch (t->dtype) {
    case TS_F32:
        if (!t->x) FUZZ_BUG("%s: F32 field %s has no values", reader, name);
        for (long i = 0; i < numel; i++)
            if (!isfinite(t->x[i]))
                FUZZ_BUG("%s: field %s element %ld is %g", reader, name, i, (double)t->x[i]);
        break;
    case TS_I32:
        if (!t->ids) FUZZ_BUG("%s: I32 field %s has no ids", reader, name);
        for (long i = 0; i < numel; i++)
            if (t->ids[i] < 0 || (t->vocab > 0 && t->ids[i] >= t->vocab))
                FUZZ_BUG("%s: field %s id %ld is %d, outside [0, %lld)", reader, name, i,
                         (int)t->ids[i], (long long)t->vocab);
        break;
    case TS_BAGS: {
        if (t->ndim != 2) FUZZ_BUG("%s: BAGS field %s has %d dims, not 2", reader, name, t->ndim);
        if (!t->off) FUZZ_BUG("%s: BAGS field %s has no offsets", reader, name);
        long cells = (long)t->dim[0] * t->dim[1];
        if (t->off[0] < 0) FUZZ_BUG("%s: field %s off[0] = %d", reader, name, (int)t->off[0]);
        for (long c = 0; c < cells; c++)
            if (t->off[c + 1] < t->off[c])
                FUZZ_BUG("%s: field %s offsets decrease at cell %ld", reader, name, c);
        if (t->off[cells] > 0 && !t->ids) FUZZ_BUG("%s: BAGS field %s has no ids", reader, name);
        for (long i = t->off[0]; i < t->off[cells]; i++)
            if (t->ids[i] < 0 || (t->vocab > 0 && t->ids[i] >= t->vocab))
                FUZZ_BUG("%s: field %s bag id %ld is %d, outside [0, %lld)", reader, name, i,
                         (int)t->ids[i], (long long)t->vocab);
        if (t->len)
            for (int r = 0; r < n; r++)
                if (t->len[r] < 1 || t->len[r] > t->dim[1])
                    FUZZ_BUG("%s: field %s row %d has length %d outside 1..%d", reader, name, r,
                             (int)t->len[r], t->dim[1]);
        break;
    }
    default:
        FUZZ_BUG("%s: field %s has dtype %d", reader, name, (int)t->dtype);
    }
}

/* An aux array a reader offers, and the size of one element (to read it all). */
typedef struct fuzz_aux { const char *name; size_t elem; } fuzz_aux;

/* Every split in batches of up to max_batch rows, each batch checked; then the aux arrays. */
static inline void fuzz_walk_dataset(const char *reader, const ts_dataset_ops *ops,
                                     ts_data *D, int max_batch, const fuzz_aux *aux)
{
    static long rows[4096];
    if (max_batch > 4096) max_batch = 4096;
    for (int s = 0; s < 3; s++) {
        if (D->nrows[s] < 0) FUZZ_BUG("%s: split %d has %ld rows", reader, s, D->nrows[s]);
        for (long start = 0; start < D->nrows[s]; start += max_batch) {
            int n = (int)(D->nrows[s] - start < max_batch ? D->nrows[s] - start : max_batch);
            for (int i = 0; i < n; i++) rows[i] = start + i;
            ts_err e;
            if (ops->batch(D, (ts_phase)s, rows, n, &e))
                FUZZ_BUG("%s: batch of rows %ld..%ld of split %d failed after a good open: %s",
                         reader, start, start + n - 1, s, e.msg);
            for (int f = 0; f < D->nfield; f++)
                fuzz_check_field(reader, D->field_name[f], &D->field[f], n);
        }
    }
    for (int a = 0; aux && aux[a].name; a++) {
        const void *p = NULL;
        long n = -1;
        if (!ops->aux || ops->aux(D, aux[a].name, &p, &n)) continue;
        if (n < 0 || (n > 0 && !p)) FUZZ_BUG("%s: aux %s gives %ld elements at %p", reader,
                                             aux[a].name, n, p);
        volatile unsigned char sink = 0;
        for (size_t i = 0; i < (size_t)n * aux[a].elem; i++) sink ^= ((const unsigned char *)p)[i];
        (void)sink;
    }
}

#endif
