/* stream.c — streamed data: a dataset read as a stream of files (one file, a glob or a folder of
 * shards, plain or gzip) with memory bounded by a shuffle block of rows, not by the data
 * (`stream = true` in [data]; docs/scale.md).
 *
 *  - Splits: a row's split is a hash of its line's bytes and the reader's split_seed, compared
 *    with the split fractions: deterministic, independent of the files' order, of sharding and of
 *    the number of ranks; a duplicated line always lands in the same split.
 *  - Scan: one pass over every file, in name order, that hands each line and its split to the
 *    reader (which fits what it fits on the training rows, and says which rows it keeps) and
 *    counts the rows of each split, and this rank's share of the training rows.
 *  - Training: each epoch reads this rank's files in an order drawn from (seed, epoch, rank); it
 *    fills a block of `buffer` rows, shuffles the block with a generator seeded from (seed, epoch,
 *    rank, block number) and hands it out; then the next block. The position of a block's start
 *    (file, byte offset, line) is what a checkpoint records (8 numbers, TS_STREAM_POS), so a
 *    resumed run re-reads that block, shuffles it alike and skips what was used: bit-identical.
 *  - Ranks: with at least as many files as ranks, rank r reads files r, r + N, ...; with fewer,
 *    every rank reads every file and keeps every N-th training line of each (from the r-th).
 *    Either way no rank holds more than its block.
 *  - Validation and test rows are read in file order, every file, no shuffle, a batch at a time. */
#include "internal.h"
#include "dist.h"

#include <dirent.h>
#include <errno.h>
#include <glob.h>
#include <pthread.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

typedef struct cursor {
    ts_phase split;
    long epoch;
    int *order, norder;      /* files of this epoch, in reading order */
    int k;                   /* order[k] is the file being read (k == norder: the end) */
    ts_lines *in;
    long idx;                /* lines of the split seen in the current file */
    /* training: two blocks; the main thread hands out rows of block cur while a reader thread
     * fills the other (the next block of the epoch). Only the reader thread touches the reading
     * state above while it runs; every other reading joins it first. */
    char *buf[2];            /* (cap) rows of row_bytes each */
    long *perm[2];
    long nb[2];
    int64_t bstart[2][TS_STREAM_POS];  /* where each block started (fill_block) */
    int cur;                 /* the block being handed out */
    long used, blockno, delivered;
    int64_t start[TS_STREAM_POS];      /* the position of block cur's start (checkpoints) */
    pthread_t th;
    int running;             /* the reader thread fills block 1 - cur */
    int th_rc;
    ts_err th_err;
    struct ts_stream *owner;
} cursor;

struct ts_stream {
    char **files;
    int nfiles;
    size_t rb;
    long cap;                /* rows of a block */
    double frac[3];
    uint64_t split_seed, seed;
    int rank, nranks, by_files;
    long rows[3], mine;      /* rows of each split (all files); this rank's training rows */
    int scanned;
    ts_stream_scan_fn scan;
    ts_stream_row_fn row;
    void *user;
    cursor tr, ev;
    long next[3];            /* ts_stream_read: the valid / test row that comes next */
};

static uint64_t mix64(uint64_t x)
{
    x ^= x >> 30;
    x *= 0xbf58476d1ce4e5b9ull;
    x ^= x >> 27;
    x *= 0x94d049bb133111ebull;
    return x ^ (x >> 31);
}

/* A 64-bit hash of a line (8 bytes at a time; little-endian hosts all agree). */
static uint64_t line_hash(const char *s, size_t n, uint64_t seed)
{
    uint64_t h = mix64(seed ^ (0x9e3779b97f4a7c15ull * (n + 1)));
    while (n >= 8) {
        uint64_t w;
        memcpy(&w, s, 8);
        h = (h ^ w) * 0xff51afd7ed558ccdull;
        h ^= h >> 32;
        s += 8;
        n -= 8;
    }
    uint64_t w = ts_tail_word(s, n);
    return mix64(h ^ w);
}

ts_phase ts_stream_split(const ts_stream *s, const char *line, size_t len)
{
    double u = (double)(line_hash(line, len, s->split_seed) >> 11) * 0x1.0p-53;
    return u < s->frac[0] ? TS_TRAIN : u < s->frac[0] + s->frac[1] ? TS_VALID : TS_TEST;
}

static int by_name(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

static int add_file(ts_stream *s, int *cap, const char *path)
{
    if (s->nfiles == *cap) {
        int c = *cap ? 2 * *cap : 16;
        char **m = realloc(s->files, (size_t)c * sizeof *m);
        if (!m) return -1;
        s->files = m;
        *cap = c;
    }
    if (!(s->files[s->nfiles] = strdup(path))) return -1;
    s->nfiles++;
    return 0;
}

/* The files of a pattern: a folder's regular files (not hidden), a glob's matches, or one file;
 * sorted by name. Each is noted as the run's data (ts_ctx_path). */
static int list_files(ts_stream *s, ts_ctx *ctx, const char *pattern, const char *where, ts_err *e)
{
    char path[TS_PATH_MAX], one[TS_PATH_MAX];
    int cap = 0, oom = 0;
    int glob_chars = strpbrk(pattern, "*?[") != NULL;
    struct stat sb;
    if (!glob_chars) {
        ts_ctx_path(ctx, pattern, path, sizeof path);
        if (stat(path, &sb))
            return ts_fail(e, "%s: [data] path = %s: %s: %s; give a file, a folder of shards or a "
                           "glob such as data/shards/*.gz", where, pattern, path, strerror(errno));
        if (S_ISDIR(sb.st_mode)) {
            DIR *d = opendir(path);
            if (!d) return ts_fail(e, "%s: cannot open the folder %s: %s", where, path, strerror(errno));
            struct dirent *de;
            while ((de = readdir(d)) && !oom) {
                if (de->d_name[0] == '.') continue;
                snprintf(one, sizeof one, "%s/%s", path, de->d_name);
                if (stat(one, &sb) || !S_ISREG(sb.st_mode)) continue;
                oom = add_file(s, &cap, one) < 0;
            }
            closedir(d);
        } else {
            oom = add_file(s, &cap, path) < 0;
        }
    } else {
        /* a relative glob is tried as given, then from the experiment's folder (ts_ctx_path's
         * order, on the pattern's folder part) */
        glob_t g;
        int rc = glob(pattern, 0, NULL, &g);
        if (rc == GLOB_NOMATCH && pattern[0] != '/') {
            globfree(&g);
            const char *slash = strrchr(pattern, '/');
            char dir[TS_PATH_MAX];
            if (slash && (size_t)(slash - pattern) < sizeof dir) {
                snprintf(dir, sizeof dir, "%.*s", (int)(slash - pattern), pattern);
                if (!strpbrk(dir, "*?[")) {
                    ts_ctx_path(ctx, dir, path, sizeof path);
                    snprintf(one, sizeof one, "%s%s", path, slash);
                    rc = glob(one, 0, NULL, &g);
                }
            }
        }
        if (rc == 0)
            for (size_t i = 0; i < g.gl_pathc && !oom; i++)
                if (!stat(g.gl_pathv[i], &sb) && S_ISREG(sb.st_mode)) {
                    ts_ctx_path(ctx, g.gl_pathv[i], path, sizeof path);
                    oom = add_file(s, &cap, g.gl_pathv[i]) < 0;
                }
        if (rc == 0 || rc == GLOB_NOMATCH) globfree(&g);
    }
    if (oom) return ts_fail(e, "out of memory");
    if (s->nfiles == 0)
        return ts_fail(e, "%s: [data] path = %s matches no file; give a file, a folder of shards "
                       "or a glob such as data/shards/*.gz", where, pattern);
    qsort(s->files, (size_t)s->nfiles, sizeof *s->files, by_name);
    return 0;
}

static int join_reader(cursor *c, ts_err *e);

static void cursor_free(cursor *c)
{
    ts_err ignored;
    join_reader(c, &ignored);
    ts_lines_close(c->in);
    c->in = NULL;
    free(c->order);
    for (int k = 0; k < 2; k++) {
        free(c->buf[k]);
        free(c->perm[k]);
    }
    memset(c, 0, sizeof *c);
}

void ts_stream_close(ts_stream *s)
{
    if (!s) return;
    cursor_free(&s->tr);
    cursor_free(&s->ev);
    for (int i = 0; i < s->nfiles; i++) free(s->files[i]);
    free(s->files);
    free(s);
}

ts_stream *ts_stream_open(ts_ctx *ctx, const char *pattern, const char *where, size_t row_bytes,
                          long buffer_rows, const double frac[3], uint64_t split_seed,
                          ts_stream_scan_fn scan, ts_stream_row_fn row, void *user, ts_err *e)
{
    if (buffer_rows < 1 || buffer_rows > (1L << 30))
        return ts_fail(e, "%s: shuffle_buffer = %ld: give a number of rows from 1 to 2^30 (65536 "
                       "is about 11 MB of census rows)", where, buffer_rows), NULL;
    ts_stream *s = calloc(1, sizeof *s);
    if (!s) return ts_fail(e, "out of memory"), NULL;
    s->rb = row_bytes ? row_bytes : 1;
    memcpy(s->frac, frac, sizeof s->frac);
    s->split_seed = split_seed;
    s->seed = ctx ? ts_ctx_seed(ctx) : 0;
    s->rank = ts_dist_rank();
    s->nranks = ts_dist_size();
    /* shuffle_buffer is the rows of a shuffle block of the whole job: each of N ranks holds its
     * share, ceil(R / N) rows a block (one process: R), so a rank of N holds no more rows than
     * one process would (docs/scale.md, "Memory per rank") */
    s->cap = (buffer_rows + s->nranks - 1) / s->nranks;
    s->scan = scan;
    s->row = row;
    s->user = user;
    if (list_files(s, ctx, pattern, where, e) < 0) {
        ts_stream_close(s);
        return NULL;
    }
    s->by_files = s->nfiles >= s->nranks;
    return s;
}

int ts_stream_nfiles(const ts_stream *s) { return s->nfiles; }
const char *ts_stream_file(const ts_stream *s, int i)
{
    return i >= 0 && i < s->nfiles ? s->files[i] : NULL;
}

/* This rank reads the idx-th training line of file f. */
static int is_mine(const ts_stream *s, int f, long idx)
{
    if (s->nranks < 2) return 1;
    return s->by_files ? f % s->nranks == s->rank : idx % s->nranks == s->rank;
}

int ts_stream_scan(ts_stream *s, ts_err *e)
{
    memset(s->rows, 0, sizeof s->rows);
    s->mine = 0;
    for (int f = 0; f < s->nfiles; f++) {
        ts_lines *in = ts_lines_open(s->files[f], e);
        if (!in) return -1;
        char *line;
        size_t len;
        long idx = 0;
        while ((line = ts_lines_next(in, &len))) {
            size_t k = 0;
            while (k < len && (line[k] == ' ' || line[k] == '\t')) k++;
            if (k == len) continue;
            ts_phase sp = ts_stream_split(s, line, len);
            int mine = sp == TS_TRAIN && is_mine(s, f, idx);
            if (sp == TS_TRAIN) idx++;
            int rc = s->scan(s->user, sp, line, len, s->files[f], ts_lines_lineno(in), e);
            if (rc < 0) {
                ts_lines_close(in);
                return -1;
            }
            if (rc == 1) {
                s->rows[sp]++;
                s->mine += mine;
            }
        }
        int rc = ts_lines_error(in, e);
        ts_lines_close(in);
        if (rc < 0) return -1;
    }
    s->scanned = 1;
    return 0;
}

long ts_stream_rows(const ts_stream *s, ts_phase split)
{
    return split == TS_TRAIN ? s->mine : s->rows[split];
}

/* Opens file order[k] of the cursor (k < norder), at the start or at a recorded offset. */
static int open_at(ts_stream *s, cursor *c, long long off, long line, ts_err *e)
{
    ts_lines_close(c->in);
    c->in = NULL;
    if (c->k >= c->norder) return 0;
    if (!(c->in = ts_lines_open(s->files[c->order[c->k]], e))) return -1;
    if ((off || line) && ts_lines_seek(c->in, off, line, e) < 0) return -1;
    return 0;
}

/* The next row of the cursor's split (and, training, of this rank) into out: 1, or 0 at the end
 * of the cursor's files, -1 on an error. */
static int next_row(ts_stream *s, cursor *c, void *out, ts_err *e)
{
    for (;;) {
        if (!c->in) {
            if (c->k >= c->norder) return 0;
            c->idx = 0;
            if (open_at(s, c, 0, 0, e) < 0) return -1;
        }
        size_t len;
        char *line = ts_lines_next(c->in, &len);
        if (!line) {
            if (ts_lines_error(c->in, e) < 0) return -1;
            ts_lines_close(c->in);
            c->in = NULL;
            c->k++;
            continue;
        }
        size_t k = 0;
        while (k < len && (line[k] == ' ' || line[k] == '\t')) k++;
        if (k == len || ts_stream_split(s, line, len) != c->split) continue;
        long idx = c->idx++;
        if (c->split == TS_TRAIN && !is_mine(s, c->order[c->k], idx)) continue;
        int rc = s->row(s->user, line, len, ts_lines_path(c->in), ts_lines_lineno(c->in), out, e);
        if (rc < 0) return -1;
        if (rc == 1) return 1;
    }
}

static uint64_t epoch_seed(const ts_stream *s, long epoch, uint64_t what)
{
    return mix64(s->seed ^ mix64((uint64_t)epoch * 0x9e3779b97f4a7c15ull ^
                                 mix64((uint64_t)s->rank + 1) ^ mix64(what)));
}

/* Fills training block `slot` from the cursor's place and shuffles it. Its content depends only
 * on where it starts and its number, never on the thread that fills it. */
static int fill_block(ts_stream *s, cursor *c, int slot, ts_err *e)
{
    int64_t *st = c->bstart[slot];
    st[0] = c->epoch;
    st[1] = c->k;
    st[2] = c->in ? ts_lines_offset(c->in) : 0;
    st[3] = c->in ? ts_lines_lineno(c->in) : 0;
    st[4] = c->in ? c->idx : 0;
    st[5] = c->blockno;
    long nb = 0;
    while (nb < s->cap) {
        int rc = next_row(s, c, c->buf[slot] + (size_t)nb * s->rb, e);
        if (rc < 0) return -1;
        if (rc == 0) break;
        nb++;
    }
    c->nb[slot] = nb;
    for (long i = 0; i < nb; i++) c->perm[slot][i] = i;
    ts_rng r;
    ts_rng_seed(&r, epoch_seed(s, c->epoch, 0x424c4f434bull + (uint64_t)c->blockno));
    ts_rng_shuffle(&r, c->perm[slot], nb);
    c->blockno++;
    return 0;
}

static void *reader_main(void *arg)
{
    cursor *c = arg;
    sigset_t all;
    sigfillset(&all);
    pthread_sigmask(SIG_BLOCK, &all, NULL);   /* signals go to the training thread */
    c->th_rc = fill_block(c->owner, c, 1 - c->cur, &c->th_err);
    return NULL;
}

/* Starts filling the block after cur in the reader thread (synchronously if none can start). */
static int start_reader(ts_stream *s, cursor *c, ts_err *e)
{
    c->owner = s;
    c->th_rc = 0;
    /* TESSERA_STREAM_THREAD=0: no thread, the blocks are read when needed (the same figures) */
    const char *env = getenv("TESSERA_STREAM_THREAD");
    if ((!env || strcmp(env, "0")) && pthread_create(&c->th, NULL, reader_main, c) == 0) {
        c->running = 1;
        return 0;
    }
    return fill_block(s, c, 1 - c->cur, e) < 0 ? -1 : (c->running = 2, 0);
}

/* Waits for the reader thread; its error, if any. */
static int join_reader(cursor *c, ts_err *e)
{
    if (!c->running) return 0;
    if (c->running == 1) pthread_join(c->th, NULL);
    c->running = 0;
    if (c->th_rc < 0) {
        if (e) *e = c->th_err;
        return -1;
    }
    return 0;
}

/* Block cur is used up: the next one (filled by the reader) becomes cur, and the reader starts
 * on the one after. 0, or 1 at the end of the epoch, -1 on an error. */
static int next_block(ts_stream *s, cursor *c, ts_err *e)
{
    if (!c->running && start_reader(s, c, e) < 0) return -1;
    if (join_reader(c, e) < 0) return -1;
    c->cur = 1 - c->cur;
    c->used = 0;
    memcpy(c->start, c->bstart[c->cur], sizeof c->start);
    if (c->nb[c->cur] == 0) return 1;
    return start_reader(s, c, e);
}

int ts_stream_begin(ts_stream *s, ts_phase split, long epoch, const int64_t *pos, ts_err *e)
{
    if (!s->scanned) return ts_fail(e, "stream: begin before the scan (a bug in the reader)");
    cursor *c = split == TS_TRAIN ? &s->tr : &s->ev;
    /* no reading while the reader thread reads (it shares the reader's parsing state) */
    if (join_reader(&s->tr, e) < 0) return -1;
    ts_lines_close(c->in);
    c->in = NULL;
    c->split = split;
    c->epoch = epoch;
    if (!c->order && !(c->order = malloc((size_t)s->nfiles * sizeof *c->order)))
        return ts_fail(e, "out of memory");
    c->norder = 0;
    for (int f = 0; f < s->nfiles; f++)
        if (split != TS_TRAIN || !s->by_files || s->nranks < 2 || f % s->nranks == s->rank)
            c->order[c->norder++] = f;
    c->k = 0;
    c->idx = 0;
    if (split != TS_TRAIN) return 0;
    /* the epoch's order of this rank's files */
    ts_rng r;
    ts_rng_seed(&r, epoch_seed(s, epoch, 0x46494c4553ull));
    for (int i = c->norder - 1; i > 0; i--) {
        int j = (int)ts_rng_below(&r, (uint64_t)i + 1), t = c->order[i];
        c->order[i] = c->order[j];
        c->order[j] = t;
    }
    for (int k = 0; k < 2; k++)
        if (!c->buf[k]) {
            c->buf[k] = malloc((size_t)s->cap * s->rb);
            c->perm[k] = malloc((size_t)s->cap * sizeof *c->perm[k]);
            if (!c->buf[k] || !c->perm[k])
                return ts_fail(e, "stream: out of memory for two shuffle blocks of %ld rows; lower "
                               "shuffle_buffer", s->cap);
        }
    c->cur = 0;
    c->nb[0] = c->nb[1] = c->used = c->blockno = c->delivered = 0;
    memset(c->start, 0, sizeof c->start);
    c->start[0] = epoch;
    if (!pos) return start_reader(s, c, e);   /* the first block is read while the model waits */
    /* resume: the block that was being used, re-read from its recorded start */
    if (pos[0] != epoch || pos[1] < 0 || pos[1] > c->norder || pos[2] < 0 || pos[3] < 0 ||
        pos[4] < 0 || pos[5] < 0 || pos[6] < 0 || pos[6] > s->cap || pos[7] < 0 || pos[7] > s->mine)
        return ts_fail(e, "stream: the checkpoint's position (epoch %lld, file %lld, byte %lld) "
                       "does not fit this run's epoch %ld and %d files", (long long)pos[0],
                       (long long)pos[1], (long long)pos[2], epoch, c->norder);
    c->k = (int)pos[1];
    if (c->k < c->norder && open_at(s, c, pos[2], (long)pos[3], e) < 0) return -1;
    c->idx = (long)pos[4];
    c->blockno = (long)pos[5];
    if (fill_block(s, c, 0, e) < 0) return -1;
    memcpy(c->start, c->bstart[0], sizeof c->start);
    if (pos[6] > c->nb[0])
        return ts_fail(e, "stream: the checkpoint used %lld rows of a block that now has %ld; has "
                       "the data changed since?", (long long)pos[6], c->nb[0]);
    c->used = (long)pos[6];
    c->delivered = (long)pos[7];
    return c->nb[0] > 0 ? start_reader(s, c, e) : 0;
}

int ts_stream_next(ts_stream *s, ts_phase split, void *out, int n, int *got, ts_err *e)
{
    cursor *c = split == TS_TRAIN ? &s->tr : &s->ev;
    *got = 0;
    if (c->split != split || (!c->order))
        return ts_fail(e, "stream: rows asked of a split that was not begun (a bug in the reader)");
    char *o = out;
    if (split != TS_TRAIN && join_reader(&s->tr, e) < 0) return -1;
    while (*got < n) {
        if (split != TS_TRAIN) {
            int rc = next_row(s, c, o + (size_t)*got * s->rb, e);
            if (rc < 0) return -1;
            if (rc == 0) break;
            (*got)++;
            continue;
        }
        if (c->used == c->nb[c->cur]) {
            int rc = next_block(s, c, e);
            if (rc < 0) return -1;
            if (rc == 1) break;
        }
        int b = c->cur;
        memcpy(o + (size_t)*got * s->rb, c->buf[b] + (size_t)c->perm[b][c->used++] * s->rb, s->rb);
        c->delivered++;
        (*got)++;
    }
    return 0;
}

void ts_stream_pos(const ts_stream *s, int64_t pos[TS_STREAM_POS])
{
    const cursor *c = &s->tr;
    memcpy(pos, c->start, 6 * sizeof *pos);
    pos[0] = c->epoch;
    pos[6] = c->used;
    pos[7] = c->delivered;
}

size_t ts_stream_bytes(const ts_stream *s)
{
    return 2 * (size_t)s->cap * (s->rb + sizeof(long));
}

int ts_stream_read(ts_stream *s, ts_phase split, const long *rows, int n, void *out, ts_err *e)
{
    const char *name = split == TS_VALID ? "valid" : "test";
    if (split == TS_TRAIN)
        return ts_fail(e, "stream = true: the training rows come as a stream, not by row number");
    if (n > 0 && rows[0] == 0) {
        if (ts_stream_begin(s, split, 0, NULL, e) < 0) return -1;
        s->next[split] = 0;
    }
    for (int i = 0; i < n; i++)
        if (rows[i] != s->next[split] + i)
            return ts_fail(e, "stream = true reads the %s rows in order; row %ld was asked where "
                           "row %ld comes next", name, rows[i], s->next[split] + i);
    int got = 0;
    if (ts_stream_next(s, split, out, n, &got, e) < 0) return -1;
    if (got != n)
        return ts_fail(e, "the stream gave %d %s rows where %d were asked after its scan; did "
                       "the files change?", got, name, n);
    s->next[split] += n;
    return 0;
}

int ts_stream_report(const ts_stream *s, char *buf, size_t n)
{
    return snprintf(buf, n, "stream_files %d\nstream_train_rows_rank0 %ld\nstream_valid_rows %ld\n"
                    "stream_test_rows %ld\nstream_shuffle_block_rows_per_rank %ld\n"
                    "stream_shuffle_block_bytes %zu\n", s->nfiles,
                    ts_stream_rows(s, TS_TRAIN), ts_stream_rows(s, TS_VALID),
                    ts_stream_rows(s, TS_TEST), s->cap, ts_stream_bytes(s));
}

int ts_stream_row_bytes(ts_stream *s, size_t row_bytes, ts_err *e)
{
    if (s->tr.order || s->ev.order || s->tr.buf[0])
        return ts_fail(e, "stream: the row size changed after reading began (a bug in the reader)");
    s->rb = row_bytes ? row_bytes : 1;
    return 0;
}
