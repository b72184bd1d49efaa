/* checkpoint.c — checkpoints of a training run, so a run killed at any step resumes where it
 * stopped and ends bit-identical to one never interrupted (one BLAS thread). A checkpoint holds
 * what the arena alone does not: the optimizer's slots, the generator, the epoch's shuffled
 * order, the step, the loss accumulators of the log, the best weights, GradNorm's weights.
 * docs/checkpoints.md documents the format; in short, every integer and float little-endian:
 *
 *   char[4] "TSCK", uint32 version = 1, then blocks, each
 *       char[4] tag, uint64 length L, L bytes, uint32 CRC-32 of the tag, length and bytes
 *   HEAD  uint32 ABI, uint32 0x01020304 (byte order), uint64 the experiment's hash,
 *         uint32 optimizer slots, uint32 heads, int64 training rows, int64 weights (nw)
 *   META  int64 epoch, s, step, seen, seen_log, logged_steps, best_epoch, bad_evals,
 *         train_off, eval_off; int32 shuffled, done; float64 loss_acc, best_score, train_time,
 *         wall; float64 loss_sum of every head
 *   CONF  the experiment's canonical text (what the hash is of; named when they differ)
 *   RNG   uint64[4] the run's xoshiro256** state
 *   ORDR  int64[rows] this epoch's order of the training rows
 *   PARM  the parameters' records, params.bin's layout (params_io.c): uint32 count, then per
 *         parameter uint32 name length, name, int32 rows, int32 cols, float32 weights
 *   OPTS  float32 optimizer slots, slots * rows * cols per parameter, in PARM's order
 *   BEST  float32[nw] the weights of the best validation so far (the arena's w block)
 *   GNRM  int64 updates, float64[6 * heads] GradNorm's state (GradNorm runs only)
 *   FITS  the dataset's fitted state as text (data_state.txt; readers with a fitted op only)
 *   STRM  streamed data only: int64[8 * ranks] every rank's stream position (docs/scale.md)
 *   END   empty: the file is complete
 *
 * Files in the results folder: checkpoint.tsck (the latest), checkpoint.prev.tsck (the one
 * before), checkpoint-best.tsck (at the best validation). Each is written to a temporary file,
 * fsync'd and renamed, so a reader never sees half of one; resuming tries them newest first and
 * says why it passes over one. A CRC proves the bytes are as written, not that they make sense:
 * every field is checked against the experiment (sizes, ranges, the loop's invariants) before
 * anything is restored, so a forged file is refused like a damaged one and never crashes. */
#include "internal.h"

#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <dirent.h>
#include <stdio.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zlib.h>

#define CK_VERSION 1u

static const char *const ck_files[] = {"checkpoint.tsck", "checkpoint.prev.tsck",
                                       "checkpoint-best.tsck"};

/* A run whose tables are split across ranks (TS_PARAM_SHARDED, docs/scale.md): every rank writes
 * and reads its own files, ".rankK-of-N" before each name's extension. */
static int ck_rank, ck_size;
static long long ck_want = -1;    /* ts_ckpt_resume_at: the step a file must be of; -1 any */

void ts_ckpt_shard(int rank, int size)
{
    ck_rank = rank;
    ck_size = size;
}

/* dir/name, with this rank's part in a sharded run: checkpoint.rank1-of-2.tsck */
static void ck_path(char *buf, size_t n, const char *dir, const char *name)
{
    const char *dot = strrchr(name, '.');
    if (ck_size < 2 || !dot) {
        snprintf(buf, n, "%s/%s", dir, name);
        return;
    }
    snprintf(buf, n, "%s/%.*s.rank%d-of-%d%s", dir, (int)(dot - name), name, ck_rank, ck_size, dot);
}

/* Keys left out of the configuration's text. mode 0 (checkpoints): keys that may change between
 * a run and its resumption (how long it trains, how it logs and saves, the threads); everything
 * else must match. mode 1 (a run's identity): only keys that cannot change a figure (threads,
 * logging, checkpoint cadence, the experiment file's own path and description). */
static int volatile_key(int mode, const char *sec, const char *key)
{
    static const char *const train0[] = {"epochs", "patience", "max_steps", "checkpoint_every",
                                         "keep_checkpoints", "threads", NULL};
    static const char *const train1[] = {"checkpoint_every", "keep_checkpoints", "threads",
                                         "log_every", NULL};
    static const char *const exp[] = {"description", "quick", "source", NULL};
    const char *const *list = !strcmp(sec, "train") ? (mode ? train1 : train0)
                              : !strcmp(sec, "experiment") ? exp : NULL;
    for (; list && *list; list++)
        if (!strcmp(*list, key)) return 1;
    return 0;
}

uint64_t ts_hash64(const void *p, size_t n)
{
    const unsigned char *b = p;
    uint64_t h = 0xcbf29ce484222325ull;
    for (size_t i = 0; i < n; i++) h = (h ^ b[i]) * 0x100000001b3ull;
    return h;
}

static int cmp_str(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

/* Appends "section.key = value" to lines (grown as needed); -1 when out of memory. */
static int add_line(char ***lines, int *nl, int *cap, int mode, const char *sec,
                    const char *key, const char *val)
{
    if (volatile_key(mode, sec, key)) return 0;
    if (*nl == *cap) {
        char **m = realloc(*lines, (size_t)(*cap = *cap ? 2 * *cap : 64) * sizeof *m);
        if (!m) return -1;
        *lines = m;
    }
    size_t len = strlen(sec) + strlen(key) + strlen(val) + 5;
    if (!((*lines)[*nl] = malloc(len))) return -1;
    snprintf((*lines)[(*nl)++], len, "%s.%s = %s", sec, key, val);
    return 0;
}

char *ts_config_text(const ts_exp *x, int mode, size_t *n)
{
    /* One line "section.key = value" per set or defaulted key, sorted: the order of sections
     * and keys in the file, and whether a default is written out, do not change the identity. */
    const ts_ini *ini = &x->ini;
    char **lines = NULL;
    int nl = 0, cap = 0, oom = 0;
    for (int i = 0; i < ini->nsec && !oom; i++) {
        const ts_cfg *c = &ini->sec[i];
        for (int j = 0; j < c->n && !oom; j++)
            oom = add_line(&lines, &nl, &cap, mode, c->name, c->ent[j].key, c->ent[j].value);
        for (int l = 0; l < 4 && !oom; l++)
            for (const ts_key *k = c->keys[l]; k && k->key && !oom; k++)
                if (k->def && !ts_cfg_entry(c, k->key))
                    oom = add_line(&lines, &nl, &cap, mode, c->name, k->key, k->def);
    }
    if (nl) qsort(lines, (size_t)nl, sizeof *lines, cmp_str);
    size_t total = 1;
    for (int i = 0; i < nl; i++) total += strlen(lines[i]) + 1;
    char *out = oom ? NULL : malloc(total);
    size_t o = 0;
    for (int i = 0; i < nl; i++) {
        if (out) {
            size_t k = strlen(lines[i]);
            memcpy(out + o, lines[i], k);
            out[o + k] = '\n';
            o += k + 1;
        }
        free(lines[i]);
    }
    free(lines);
    if (out) out[o] = 0;
    *n = o;
    return out;
}

/* ---- writing ----------------------------------------------------------------------------------- */
typedef struct ck_writer {
    FILE *f;
    unsigned long crc;
    uint64_t left;                /* bytes the open block still owes */
    int bad;                      /* the first failure: 1 a write failed (err), 2 a size bug */
    int err;                      /* errno of the failed write */
} ck_writer;

static void w_raw(ck_writer *w, const void *p, size_t n)
{
    if (w->bad) return;
    w->crc = crc32(w->crc, p, (uInt)n);
    if (fwrite(p, 1, n, w->f) != n) { w->bad = 1; w->err = errno; return; }
    if (n > w->left) w->bad = 2;
    else w->left -= n;
}

static void w_begin(ck_writer *w, const char *tag, uint64_t len)
{
    w->crc = crc32(0L, Z_NULL, 0);
    w->left = 12;
    w_raw(w, tag, 4);
    w_raw(w, &len, 8);
    w->left = len;
}

static void w_end(ck_writer *w)
{
    uint32_t c = (uint32_t)w->crc;
    if (w->bad) return;            /* the first failure is the one reported */
    if (w->left) w->bad = 2;       /* the length announced is not what was written */
    else if (fwrite(&c, 4, 1, w->f) != 1) { w->bad = 1; w->err = errno; }
}

static void w_i64(ck_writer *w, int64_t v) { w_raw(w, &v, 8); }
static void w_f64(ck_writer *w, double v) { w_raw(w, &v, 8); }

static void w_floats(ck_writer *w, const float *p, size_t n)
{
    if (w->bad) return;
    size_t bytes = n * sizeof(float);
    if (bytes > w->left) { w->bad = 2; return; }
    if (ts_put_floats(w->f, p, n, &w->crc)) { w->bad = 1; w->err = errno; return; }
    w->left -= bytes;
}

/* Writes the checkpoint to tmp and renames it to path once it is complete on disk. */
static int write_file(ts_exp *x, const ts_loop *l, const char *tmp, const char *path, ts_err *e)
{
    FILE *f = fopen(tmp, "wb");
    if (!f)
        return ts_fail(e, "cannot write the checkpoint %s: %s; check the results folder and the "
                       "disk", tmp, strerror(errno));
    ck_writer w = {f, 0, 8, 0, 0};
    uint32_t v = CK_VERSION;
    w.crc = 0;
    if (fwrite("TSCK", 1, 4, f) != 4 || fwrite(&v, 4, 1, f) != 1) w.bad = 1;
    const ts_optim_ops *oo = x->opt_pl->ops;
    int nslots = oo->nslots, K = x->nheads;
    size_t nconf = 0;
    char *conf = ts_config_text(x, 0, &nconf);
    if (!conf) { fclose(f); remove(tmp); return ts_fail(e, "out of memory"); }

    w_begin(&w, "HEAD", 4 + 4 + 8 + 4 + 4 + 8 + 8);
    uint32_t head[2] = {TS_ABI, 0x01020304u};
    w_raw(&w, head, sizeof head);
    uint64_t hash = ts_hash64(conf, nconf);
    w_raw(&w, &hash, 8);
    uint32_t sk[2] = {(uint32_t)nslots, (uint32_t)K};
    w_raw(&w, sk, sizeof sk);
    w_i64(&w, l->ntrain);
    w_i64(&w, l->nw);
    w_end(&w);

    w_begin(&w, "META", 10 * 8 + 2 * 4 + 4 * 8 + (uint64_t)K * 8);
    int64_t m[10] = {l->epoch, l->s, l->step, l->seen, l->seen_log, l->logged_steps,
                     l->best_epoch, l->bad_evals, l->train_off, l->eval_off};
    w_raw(&w, m, sizeof m);
    int32_t flags[2] = {l->shuffled, l->done};
    w_raw(&w, flags, sizeof flags);
    w_f64(&w, l->loss_acc);
    w_f64(&w, l->best_score);
    w_f64(&w, l->train_time);
    w_f64(&w, l->wall);
    for (int h = 0; h < K; h++) w_f64(&w, x->heads[h].loss_sum);
    w_end(&w);

    w_begin(&w, "CONF", nconf);
    w_raw(&w, conf, nconf);
    w_end(&w);
    free(conf);

    w_begin(&w, "RNG ", 32);
    w_raw(&w, x->ctx.rng.s, 32);
    w_end(&w);

    w_begin(&w, "ORDR", l->streamed ? 0 : (uint64_t)l->ntrain * 8);
    for (long i = 0; i < l->ntrain && !l->streamed; i++) w_i64(&w, l->order[i]);
    w_end(&w);

    w_begin(&w, "PARM", ts_params_records_size(x));
    if (!w.bad) {
        uint64_t before = w.left;
        int rc = ts_params_write_records(f, x, &w.crc);
        if (rc) { w.bad = rc == 2 ? 3 : 1; w.err = errno; }
        else w.left -= before;
    }
    w_end(&w);

    uint64_t nstate = 0;
    for (int i = 0; i < x->ctx.nparams; i++)
        if (!x->ctx.params[i]->shared)
            nstate += (uint64_t)x->ctx.params[i]->rows * x->ctx.params[i]->cols * nslots;
    w_begin(&w, "OPTS", nstate * 4);
    for (int i = 0; i < x->ctx.nparams && nslots; i++) {
        const ts_param *p = x->ctx.params[i];
        if (!p->shared) w_floats(&w, p->state, (size_t)p->rows * p->cols * nslots);
    }
    w_end(&w);

    w_begin(&w, "BEST", (uint64_t)l->nw * 4);
    w_floats(&w, l->best, (size_t)l->nw);
    w_end(&w);

    if (l->gn) {
        w_begin(&w, "GNRM", 8 + (uint64_t)K * 6 * 8);
        w_i64(&w, *l->gn_t);
        w_raw(&w, l->gn, (size_t)K * 6 * sizeof(double));
        w_end(&w);
    }
    if (x->data_state) {            /* what the reader fitted: resume must read rows the same way */
        w_begin(&w, "FITS", (uint64_t)x->ndata_state);
        w_raw(&w, x->data_state, x->ndata_state);
        w_end(&w);
    }
    if (l->streamed) {
        w_begin(&w, "STRM", (uint64_t)l->nspos * 8);
        w_raw(&w, l->spos, (size_t)l->nspos * 8);
        w_end(&w);
    }
    w_begin(&w, "END ", 0);
    w_end(&w);

    int bad = w.bad, err = w.err;
    if (!bad && (fflush(f) || fsync(fileno(f)))) { bad = 1; err = errno; }
    if (fclose(f) && !bad) { bad = 1; err = errno; }
    if (bad) {
        remove(tmp);
        if (bad == 1)
            return ts_write_error(e, tmp, err, "the previous checkpoint is kept");
        return ts_fail(e, "cannot write the checkpoint %s: the sizes of its blocks do not add up "
                       "(a bug in tessera: please report it); the previous checkpoint is kept",
                       path);
    }
    if (rename(tmp, path)) {
        int er = errno;
        remove(tmp);
        return ts_fail(e, "cannot rename %s to %s: %s", tmp, path, strerror(er));
    }
    return 0;
}

/* Makes a rename in dir durable. */
static void sync_dir(const char *dir)
{
    int fd = open(dir, O_RDONLY);
    if (fd >= 0) {
        fsync(fd);
        close(fd);
    }
}

int ts_ckpt_save(ts_exp *x, const ts_loop *l, int best, ts_err *e)
{
    const char *dir = x->ctx.results_dir;
    char latest[TS_PATH_MAX + 32], prev[TS_PATH_MAX + 32], bestp[TS_PATH_MAX + 32];
    ck_path(latest, sizeof latest, dir, ck_files[0]);
    ck_path(prev, sizeof prev, dir, ck_files[1]);
    ck_path(bestp, sizeof bestp, dir, ck_files[2]);
    /* The new file is complete on disk before the old latest becomes prev, so at every moment
     * one complete checkpoint has one of the three names. */
    char tmp[TS_PATH_MAX + 48], tmp2[TS_PATH_MAX + 48];
    ck_path(tmp, sizeof tmp, dir, "checkpoint.tmp");
    ck_path(tmp2, sizeof tmp2, dir, "checkpoint.new.tsck");
    if (write_file(x, l, tmp, tmp2, e)) return -1;
    if (access(latest, F_OK) == 0 && rename(latest, prev))
        return ts_fail(e, "cannot rename %s to %s: %s", latest, prev, strerror(errno));
    if (rename(tmp2, latest)) return ts_fail(e, "cannot rename %s to %s: %s", tmp2, latest, strerror(errno));
    ck_path(tmp, sizeof tmp, dir, "checkpoint-best.tmp");
    if (best && write_file(x, l, tmp, bestp, e)) return -1;
    sync_dir(dir);
    return 0;
}

void ts_ckpt_clean(const char *dir, int keep)
{
    char p[TS_PATH_MAX + 32];
    for (int i = 0; i < 3 && !keep; i++) {
        ck_path(p, sizeof p, dir, ck_files[i]);
        remove(p);
    }
    static const char *const tmps[] = {"checkpoint.new.tsck", "checkpoint.tmp",
                                       "checkpoint-best.tmp"};
    for (int i = 0; i < 3; i++) {
        ck_path(p, sizeof p, dir, tmps[i]);
        remove(p);
    }
}

/* ---- reading ----------------------------------------------------------------------------------- */
static uint32_t rd_u32(const unsigned char *p)
{
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

static uint64_t rd_u64(const unsigned char *p) { return rd_u32(p) | (uint64_t)rd_u32(p + 4) << 32; }

static double rd_f64(const unsigned char *p)
{
    uint64_t u = rd_u64(p);
    double d;
    memcpy(&d, &u, 8);
    return d;
}

enum { B_HEAD, B_META, B_CONF, B_RNG, B_ORDR, B_PARM, B_OPTS, B_BEST, B_GNRM, B_FITS, B_STRM,
       B_END, NBLK };
static const char blk_tag[NBLK][5] = {"HEAD", "META", "CONF", "RNG ", "ORDR", "PARM", "OPTS",
                                      "BEST", "GNRM", "FITS", "STRM", "END "};
static const char *const blk_name[NBLK] = {"HEAD", "META", "CONF", "RNG", "ORDR", "PARM", "OPTS",
                                           "BEST", "GNRM", "FITS", "STRM", "END"};   /* for messages */

/* A block's tag for a message: its 4 bytes, a byte outside printable ASCII as '?' (buf: 5). */
static const char *ck_tag(const unsigned char *b, char *buf)
{
    for (int i = 0; i < 4; i++) buf[i] = b[i] >= 0x20 && b[i] < 0x7f ? (char)b[i] : '?';
    buf[4] = 0;
    return buf;
}

typedef struct ck_file {
    unsigned char *buf;
    size_t n;
    const unsigned char *p[NBLK];
    uint64_t len[NBLK];
} ck_file;

/* Splits the file into blocks and checks each CRC; NULL or the reason it is unusable (in why,
 * cap bytes). A CRC proves only that the bytes were not damaged since they were written, not that
 * they make sense: every field is checked against the experiment afterwards (ck_restore). */
static const char *ck_parse(ck_file *c, char *why, size_t cap)
{
    if (c->n < 8 || memcmp(c->buf, "TSCK", 4)) return "it does not start with \"TSCK\"";
    if (rd_u32(c->buf + 4) != CK_VERSION) return "its format version is not 1";
    size_t off = 8;
    while (off < c->n) {
        if (c->n - off < 16) return "it is cut short (a block header is incomplete)";
        uint64_t len = rd_u64(c->buf + off + 4);
        if (len > c->n - off - 16) return "it is cut short (a block runs past the end)";
        const unsigned char *b = c->buf + off;
        uint32_t crc = (uint32_t)crc32(crc32(0L, Z_NULL, 0), b, (uInt)12);
        uint64_t o = 0;
        while (o < len) {
            uInt piece = (uInt)(len - o < (1u << 30) ? len - o : (1u << 30));
            crc = (uint32_t)crc32(crc, b + 12 + o, piece);
            o += piece;
        }
        if (crc != rd_u32(b + 12 + len)) {
            char tag[5];
            snprintf(why, cap, "the CRC-32 of its %s block does not match", ck_tag(b, tag));
            return why;
        }
        /* A tag this tessera does not know is skipped (a later version may add blocks); a known
         * one twice is not something a writer does. */
        for (int k = 0; k < NBLK; k++)
            if (!memcmp(b, blk_tag[k], 4)) {
                if (c->p[k]) {
                    snprintf(why, cap, "it has two %s blocks; the file was not written by this "
                             "tessera", blk_name[k]);
                    return why;
                }
                c->p[k] = b + 12;
                c->len[k] = len;
            }
        off += 16 + (size_t)len;
        if (!memcmp(b, "END ", 4)) break;
    }
    if (!c->p[B_END]) return "it is cut short (no END block)";
    if (c->len[B_END] || off != c->n) {
        snprintf(why, cap, "%s; the file was not written by this tessera", c->len[B_END] ?
                 "its END block is not empty" : "it has bytes after its END block");
        return why;
    }
    for (int k = 0; k < NBLK; k++)
        if (!c->p[k] && k != B_GNRM && k != B_FITS && k != B_STRM) {
            snprintf(why, cap, "it has no %s block", blk_name[k]);
            return why;
        }
    return NULL;
}

/* Appends [p, p + n) to out (cap bytes, NUL-terminated), a byte outside printable ASCII as '?':
 * a forged CONF block must not put terminal escapes into a message. */
static void put_text(char *out, size_t cap, const char *p, size_t n)
{
    size_t k = strlen(out);
    for (size_t i = 0; i < n && k + 1 < cap; i++) {
        unsigned char ch = (unsigned char)p[i];
        out[k++] = ch >= 0x20 && ch < 0x7f ? (char)ch : '?';
    }
    out[k] = 0;
}

/* The first lines that differ between two canonical configurations, for the message. a is the
 * checkpoint's CONF block (any bytes: its last line may lack its newline), b this experiment's. */
static void config_diff(const char *a, size_t na, const char *b, size_t nb, char *out, size_t cap)
{
    /* Both are sorted lines: a merge names keys present in one only or with other values. */
    out[0] = 0;
    int shown = 0;
    const char *pa = a, *pb = b, *ea = a + na, *eb = b + nb;
    while ((pa < ea || pb < eb) && shown < 3) {
        /* a line ends at its newline or at the end of its text */
        const char *la = pa < ea ? memchr(pa, '\n', (size_t)(ea - pa)) : NULL;
        const char *lb = pb < eb ? memchr(pb, '\n', (size_t)(eb - pb)) : NULL;
        if (pa < ea && !la) la = ea;
        if (pb < eb && !lb) lb = eb;
        size_t ka = la ? (size_t)(la - pa) : 0, kb = lb ? (size_t)(lb - pb) : 0;
        if (la && lb && ka == kb && !memcmp(pa, pb, ka)) {
            pa = la < ea ? la + 1 : ea;
            pb = lb < eb ? lb + 1 : eb;
            continue;
        }
        /* compare the "section.key" part to pair them up */
        const char *qa = la ? memchr(pa, ' ', ka) : NULL, *qb = lb ? memchr(pb, ' ', kb) : NULL;
        size_t ia = qa ? (size_t)(qa - pa) : ka, ib = qb ? (size_t)(qb - pb) : kb;
        int c = !la ? 1 : !lb ? -1 : strncmp(pa, pb, ia < ib ? ia : ib);
        if (c == 0 && ia != ib) c = ia < ib ? -1 : 1;
        if (shown) put_text(out, cap, "; ", 2);
        if (c == 0) {
            put_text(out, cap, pb, kb);
            put_text(out, cap, " (checkpoint: ", 14);
            put_text(out, cap, pa + ia + (ka - ia >= 3 ? 3 : ka - ia), ka - ia >= 3 ? ka - ia - 3 : 0);
            put_text(out, cap, ")", 1);
        } else if (c < 0) {
            put_text(out, cap, "the checkpoint has ", 19);
            put_text(out, cap, pa, ka);
        } else {
            put_text(out, cap, "now ", 4);
            put_text(out, cap, pb, kb);
        }
        if (c <= 0) pa = la < ea ? la + 1 : ea;
        if (c >= 0) pb = lb < eb ? lb + 1 : eb;
        shown++;
    }
}

/* ---- checking every field ----------------------------------------------------------------------
 * A block whose CRC matches was not damaged, but it may still have been edited with the CRC redone,
 * or written by a buggy or foreign program: nothing read from it is used before it is checked
 * against the experiment (sizes, ranges, the invariants the training loop keeps). A file that fails
 * is refused like a damaged one, so resuming falls back to the next checkpoint. */

/* "PATH: BLOCK block: WHAT; the file was not written by this tessera for this experiment" */
static int forged(ts_err *e, const char *path, int blk, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
static int forged(ts_err *e, const char *path, int blk, const char *fmt, ...)
{
    char what[TS_ERR_MAX / 2];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(what, sizeof what, fmt, ap);
    va_end(ap);
    return ts_fail(e, "%s: %s block: %s; the file was not written by this tessera for this "
                   "experiment", path, blk_name[blk], what);
}

/* The index of the first non-finite float of p[0..n) (unaligned), or -1. */
static long first_nonfinite(const unsigned char *p, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        float f;
        memcpy(&f, p + 4 * i, 4);
        if (!isfinite(f)) return (long)i;
    }
    return -1;
}

static float float_at(const unsigned char *p, long i)
{
    float f;
    memcpy(&f, p + 4 * i, 4);
    return f;
}

/* Bytes of the results folder's file name, or -1 when it does not exist. */
static long long file_size(const ts_exp *x, const char *name)
{
    char p[TS_PATH_MAX + 32];
    snprintf(p, sizeof p, "%s/%s", x->ctx.results_dir, name);
    struct stat st;
    return stat(p, &st) ? -1 : (long long)st.st_size;
}

/* META: the loop's counters against each other, the training rows and the log files. */
static int check_meta(const ts_exp *x, const ts_loop *l, const unsigned char *m, const char *path,
                      ts_err *e)
{
    long long v[10];
    for (int k = 0; k < 10; k++) v[k] = (long long)rd_u64(m + 8 * k);
    long long epoch = v[0], s = v[1], step = v[2], seen = v[3], seen_log = v[4], logged = v[5],
              best_epoch = v[6], bad = v[7], n = l->ntrain, batch = x->batch > 0 ? x->batch : 1;
    uint32_t shuffled = rd_u32(m + 80), done = rd_u32(m + 84);
    if (step < 0) return forged(e, path, B_META, "the step count is %lld", step);
    if (seen < step)
        return forged(e, path, B_META, "%lld examples seen in %lld steps (a step sees at least "
                      "one)", seen, step);
    /* every epoch that ended took at least one step */
    if (epoch < 1 || (n > 0 && epoch - 1 > step))
        return forged(e, path, B_META, "epoch %lld after %lld steps (the epoch lies in 1..steps "
                      "+ 1)", epoch, step);
    if (n > 0 && (seen / n > epoch || (seen / n == epoch && seen % n)))
        return forged(e, path, B_META, "%lld examples seen by epoch %lld, more than %lld epochs "
                      "of %lld training rows hold", seen, epoch, epoch, n);
    /* a step of the epoch starts at row s * batch * ranks, inside the training rows */
    if (s < 0 || s > step || (s > 0 && (n == 0 || s > (n - 1) / batch)))
        return forged(e, path, B_META, "the next step within epoch %lld is %lld, but an epoch of "
                      "%lld training rows in batches of %lld has %lld steps (%lld taken in all)",
                      epoch, s, n, batch, (n + batch - 1) / batch, step);
    if (shuffled > 1 || done > 1)
        return forged(e, path, B_META, "the flag %s is %u (0 or 1)", shuffled > 1 ? "shuffled" :
                      "done", shuffled > 1 ? shuffled : done);
    if (s > 0 && !shuffled)
        return forged(e, path, B_META, "epoch %lld is at step %lld but its order of rows was not "
                      "drawn (shuffled = 0)", epoch, s);
    if (seen_log < 0 || seen_log > seen)
        return forged(e, path, B_META, "%lld examples seen at the last log line, of %lld seen in "
                      "all", seen_log, seen);
    if (logged < 0 || logged > step || logged > seen - seen_log)
        return forged(e, path, B_META, "%lld steps since the last log line, which has %lld "
                      "examples since it and %lld steps in all", logged, seen - seen_log, step);
    if (best_epoch < 0 || best_epoch >= epoch)
        return forged(e, path, B_META, "the best epoch is %lld while epoch %lld is under way",
                      best_epoch, epoch);
    /* an evaluation either improves (best epoch = it, count 0) or counts one more */
    if (bad != epoch - 1 - best_epoch)
        return forged(e, path, B_META, "the count of evaluations without improvement is %lld, "
                      "but %lld epochs ended after the best one (%lld)", bad,
                      epoch - 1 - best_epoch, best_epoch);
    static const char *const csv[2] = {"train.csv", "eval.csv"};
    for (int k = 0; k < 2; k++) {
        long long off = v[8 + k], have = file_size(x, csv[k]);
        if (off < 1)
            return forged(e, path, B_META, "%lld bytes of %s written (its header line comes first)",
                          off, csv[k]);
        /* a missing file is open_files' message; a shorter one would be padded with zeros */
        if (have >= 0 && off > have)
            return ts_fail(e, "%s: META block: %lld bytes of %s written, but %s/%s holds %lld; "
                           "the checkpoint is newer than the file (was it cut or replaced?)", path,
                           off, csv[k], x->ctx.results_dir, csv[k], have);
    }
    /* the loss sum, (the best figure: below), the seconds trained and run */
    for (int k = 0; k < 4; k++) {
        double d = rd_f64(m + 88 + 8 * k);
        if (k != 1 && (!isfinite(d) || (k >= 2 && d < 0)))
            return forged(e, path, B_META, k == 0 ? "the loss sum since the last log line is %g" :
                          k == 2 ? "the time trained is %g s" : "the time run is %g s", d);
    }
    for (int h = 0; h < x->nheads; h++) {
        double d = rd_f64(m + 120 + 8 * h);
        if (!isfinite(d))
            return forged(e, path, B_META, "the loss sum of task %s since the last log line is %g",
                          x->heads[h].H.name, d);
    }
    /* with early_stop, the best figure is finite once an epoch improved it, else the start's
     * infinity; without, it is not used */
    double best = rd_f64(m + 96);
    if (x->early_stop[0] && (best_epoch > 0 ? !isfinite(best) : !isinf(best)))
        return forged(e, path, B_META, "the best %s is %g, %s", x->early_stop, best,
                      best_epoch > 0 ? "though an epoch improved it" :
                      "though no epoch has improved it yet");
    return 0;
}

/* ORDR: a permutation of the training rows. */
static int check_order(const ts_loop *l, const unsigned char *o, const char *path, ts_err *e)
{
    unsigned char *hit = calloc((size_t)(l->ntrain ? l->ntrain : 1), 1);
    if (!hit) return ts_fail(e, "%s: out of memory", path);
    int rc = 0;
    for (long i = 0; i < l->ntrain && !rc; i++) {
        long long r = (long long)rd_u64(o + 8 * i);
        if (r < 0 || r >= l->ntrain)
            rc = forged(e, path, B_ORDR, "position %ld holds row %lld, outside the %ld training "
                        "rows", i, r, l->ntrain);
        else if (hit[r]++)
            rc = forged(e, path, B_ORDR, "row %lld appears twice", r);
    }
    free(hit);
    return rc;
}

/* The parameter whose weights hold the arena's float i, and its row and column. */
static const ts_param *param_at(const ts_exp *x, long i, long *row, long *col)
{
    for (int k = 0; k < x->ctx.nparams; k++) {
        const ts_param *p = x->ctx.params[k];
        long o = (long)(p->w - x->arena), n = (long)p->rows * p->cols;
        if (!p->shared && i >= o && i < o + n) {
            *row = (i - o) / p->cols;
            *col = (i - o) % p->cols;
            return p;
        }
    }
    return NULL;
}

/* OPTS and BEST: finite floats, named by parameter, row and column. r: PARM's records, whose
 * names and shapes already match the experiment's one to one (the OPTS order). */
static int check_floats(const ts_exp *x, const ck_file *c, const ts_prec *r, uint32_t count,
                        int nslots, const char *path, ts_err *e)
{
    const unsigned char *st = c->p[B_OPTS];
    for (uint32_t k = 0; k < count && nslots; k++) {
        size_t nf = (size_t)r[k].rows * r[k].cols;
        for (int j = 0; j < nslots; j++, st += nf * 4) {
            long i = first_nonfinite(st, nf);
            if (i >= 0)
                return forged(e, path, B_OPTS, "optimizer slot %d of %.*s holds %g at row %ld, "
                              "column %ld", j + 1, (int)r[k].len, r[k].name, float_at(st, i),
                              i / r[k].cols, i % r[k].cols);
        }
    }
    long i = first_nonfinite(c->p[B_BEST], (size_t)(c->len[B_BEST] / 4)), row = 0, col = 0;
    if (i >= 0) {
        const ts_param *p = param_at(x, i, &row, &col);
        return forged(e, path, B_BEST, "the best weights of %s hold %g at row %ld, column %ld",
                      p ? p->name : "?", float_at(c->p[B_BEST], i), row, col);
    }
    return 0;
}

/* GNRM: the update count and GradNorm's (6, K) doubles (weights, first losses, losses, norms,
 * Adam's two moments). */
static int check_gradnorm(const ts_exp *x, const unsigned char *g, long long step,
                          const char *path, ts_err *e)
{
    long long t = (long long)rd_u64(g);
    if (t < 0 || t > step)
        return forged(e, path, B_GNRM, "%lld updates after %lld steps (one a step)", t, step);
    static const char *const what[6] = {"weight", "first loss", "loss", "gradient norm",
                                        "first moment", "second moment"};
    int K = x->nheads;
    for (int j = 0; j < 6 * K; j++) {
        double d = rd_f64(g + 8 + 8 * j);
        int part = j / K;
        /* weights stay positive; first losses are set (>= 1e-12) at the first update; norms and
         * second moments are not negative */
        if (!isfinite(d) || (part == 0 && d <= 0) || (part == 1 && t > 0 && d <= 0) ||
            ((part == 3 || part == 5) && d < 0))
            return forged(e, path, B_GNRM, "the %s of task %s is %g", what[part],
                          x->heads[j % K].H.name, d);
    }
    /* every update scales the weights to sum to K; before the first they are all 1 */
    double sum = 0;
    for (int k = 0; k < K; k++) sum += rd_f64(g + 8 + 8 * k);
    if (t > 0 ? !(fabs(sum - K) <= 1e-6 * K) : sum != K)
        return forged(e, path, B_GNRM, "the task weights sum to %.17g, not to the %d tasks", sum, K);
    return 0;
}

/* Checks one checkpoint against the experiment and, when it fits, restores it. Nothing of x or l
 * changes unless every check passed. */
static int ck_restore(ts_exp *x, ts_loop *l, const char *path, ts_err *e)
{
    ck_file c = {0};
    if (ts_read_file(path, &c.buf, &c.n, e)) return -1;
    char whybuf[128];
    const char *why = ck_parse(&c, whybuf, sizeof whybuf);
    int rc = -1;
    ts_prec *r = NULL;
    size_t nconf = 0;
    char *conf = NULL;
    if (why) { ts_fail(e, "%s is damaged: %s", path, why); goto out; }
    const unsigned char *h = c.p[B_HEAD];
    const ts_optim_ops *oo = x->opt_pl->ops;
    int K = x->nheads;
    if (c.len[B_HEAD] != 40) { ts_fail(e, "%s is damaged: its HEAD block has the wrong size", path); goto out; }
    if (rd_u32(h) != TS_ABI) {
        ts_fail(e, "%s was written by a tessera of plugin ABI %u; this one is ABI %u", path,
                rd_u32(h), (unsigned)TS_ABI);
        goto out;
    }
    if (rd_u32(h + 4) != 0x01020304u) { ts_fail(e, "%s was written on a host of another byte order", path); goto out; }
    if (!(conf = ts_config_text(x, 0, &nconf))) { ts_fail(e, "out of memory"); goto out; }
    if (rd_u64(h + 8) != ts_hash64(conf, nconf)) {
        /* another experiment's checkpoint holds that experiment's text, with its hash */
        if (rd_u64(h + 8) != ts_hash64(c.p[B_CONF], (size_t)c.len[B_CONF])) {
            forged(e, path, B_HEAD, "the configuration's hash is not the hash of the CONF block");
            goto out;
        }
        char diff[900];
        config_diff((const char *)c.p[B_CONF], (size_t)c.len[B_CONF], conf, nconf, diff, sizeof diff);
        ts_fail(e, "%s belongs to another experiment: %s. Resume with the run's own config.ini "
                "(tessera resume RUN_DIR), or start again without --resume", path, diff);
        goto out;
    }
    if (c.len[B_CONF] != nconf || memcmp(c.p[B_CONF], conf, nconf)) {
        forged(e, path, B_CONF, "its text is not the configuration whose hash HEAD holds");
        goto out;
    }
    if ((int)rd_u32(h + 16) != oo->nslots || (int)rd_u32(h + 20) != K ||
        (long)rd_u64(h + 24) != l->ntrain || (long)rd_u64(h + 32) != l->nw) {
        ts_fail(e, "%s does not fit this run: it has %u optimizer slots, %u heads, %ld training "
                "rows and %ld weights; the run has %d, %d, %ld and %ld (did the data change?)",
                path, rd_u32(h + 16), rd_u32(h + 20), (long)rd_u64(h + 24), (long)rd_u64(h + 32),
                oo->nslots, K, l->ntrain, l->nw);
        goto out;
    }
    uint64_t nstate = 0;
    for (int i = 0; i < x->ctx.nparams; i++)
        if (!x->ctx.params[i]->shared)
            nstate += (uint64_t)x->ctx.params[i]->rows * x->ctx.params[i]->cols * oo->nslots;
    if (c.len[B_META] != 10 * 8 + 8 + 32 + (uint64_t)K * 8 || c.len[B_RNG] != 32 ||
        c.len[B_ORDR] != (l->streamed ? 0 : (uint64_t)l->ntrain * 8) || c.len[B_BEST] != (uint64_t)l->nw * 4 ||
        c.len[B_OPTS] != nstate * 4 || (l->gn && c.len[B_GNRM] != 8 + (uint64_t)K * 48) ||
        (!l->gn) != (!c.p[B_GNRM])) {
        ts_fail(e, "%s does not fit this run: a block has the wrong size", path);
        goto out;
    }
    uint32_t count = 0;
    if (!(r = ts_params_parse(c.p[B_PARM], (size_t)c.len[B_PARM], &count, &why))) {
        forged(e, path, B_PARM, "%s", why);
        goto out;
    }
    char parm[TS_PATH_MAX + 48];
    snprintf(parm, sizeof parm, "%s: PARM block", path);
    if (ts_params_match(x, r, count, parm, e)) goto out;
    if (check_meta(x, l, c.p[B_META], path, e)) goto out;
    if (ck_want >= 0 && (long long)rd_u64(c.p[B_META] + 16) != ck_want) {
        ts_fail(e, "%s is of step %lld; the other ranks resume at step %lld", path,
                (long long)rd_u64(c.p[B_META] + 16), ck_want);
        goto out;
    }
    uint64_t rng[4];
    for (int k = 0; k < 4; k++) rng[k] = rd_u64(c.p[B_RNG] + 8 * k);
    if (!(rng[0] | rng[1] | rng[2] | rng[3])) {
        forged(e, path, B_RNG, "the generator's state is all zero (xoshiro256** would then draw "
               "only zeros)");
        goto out;
    }
    if (l->streamed != (c.p[B_STRM] != NULL)) {
        ts_fail(e, "%s was written by a run that %s its data; this one %s (set [data] stream as "
                "the run had it)", path, c.p[B_STRM] ? "streamed" : "held", l->streamed ?
                "streams it" : "holds it in memory");
        goto out;
    }
    if (l->streamed && c.len[B_STRM] != (uint64_t)l->nspos * 8) {
        ts_fail(e, "%s was written by a streamed run of %llu ranks; this one has %d: resume with "
                "the same number of ranks (mpirun -np %llu), or start again", path,
                (unsigned long long)(c.len[B_STRM] / (8 * TS_STREAM_POS)), l->nspos / TS_STREAM_POS,
                (unsigned long long)(c.len[B_STRM] / (8 * TS_STREAM_POS)));
        goto out;
    }
    if ((!l->streamed && check_order(l, c.p[B_ORDR], path, e)) || check_floats(x, &c, r, count, oo->nslots, path, e))
        goto out;
    if (l->gn && check_gradnorm(x, c.p[B_GNRM], (long long)rd_u64(c.p[B_META] + 16), path, e))
        goto out;
    /* The data must be read as when the checkpoint was written (a checkpoint of an older tessera
     * has no FITS block: nothing to compare). */
    if (c.p[B_FITS] && (!x->data_state || c.len[B_FITS] != (uint64_t)x->ndata_state ||
                        memcmp(c.p[B_FITS], x->data_state, x->ndata_state))) {
        ts_fail(e, "%s: its FITS block (what the dataset fitted on the training split: "
                "vocabularies, statistics) differs from the state the data was read with now "
                "(the run folder's data_state.txt, or a refit); resuming would read rows "
                "differently from the steps before. Restore data_state.txt, or start again with "
                "--overwrite", path);
        goto out;
    }
    /* Every check passed: restore. */
    ts_params_copy(x, r, count);
    const unsigned char *st = c.p[B_OPTS];
    for (uint32_t k = 0; k < count && oo->nslots; k++) {
        size_t nf = (size_t)r[k].rows * r[k].cols * oo->nslots;
        for (int i = 0; i < x->ctx.nparams; i++) {
            ts_param *p = x->ctx.params[i];
            if (!p->shared && strlen(p->name) == r[k].len && !memcmp(p->name, r[k].name, r[k].len)) {
                memcpy(p->state, st, nf * sizeof(float));
                break;
            }
        }
        st += nf * sizeof(float);
    }
    const unsigned char *m = c.p[B_META];
    long *mv[10] = {&l->epoch, &l->s, &l->step, &l->seen, &l->seen_log, &l->logged_steps,
                    &l->best_epoch, &l->bad_evals, &l->train_off, &l->eval_off};
    for (int k = 0; k < 10; k++) *mv[k] = (long)rd_u64(m + 8 * k);
    l->shuffled = (int)rd_u32(m + 80);
    l->done = (int)rd_u32(m + 84);
    l->loss_acc = rd_f64(m + 88);
    l->best_score = rd_f64(m + 96);
    l->train_time = rd_f64(m + 104);
    l->wall = rd_f64(m + 112);
    for (int k = 0; k < K; k++) x->heads[k].loss_sum = rd_f64(m + 120 + 8 * k);
    for (int k = 0; k < 4; k++) x->ctx.rng.s[k] = rng[k];
    for (long i = 0; i < l->ntrain && !l->streamed; i++) l->order[i] = (long)rd_u64(c.p[B_ORDR] + 8 * i);
    for (int i = 0; l->streamed && i < l->nspos; i++) l->spos[i] = (int64_t)rd_u64(c.p[B_STRM] + 8 * i);
    l->spos_ok = l->streamed;
    memcpy(l->best, c.p[B_BEST], (size_t)l->nw * sizeof(float));
    if (l->gn) {
        *l->gn_t = (long)rd_u64(c.p[B_GNRM]);
        memcpy(l->gn, c.p[B_GNRM] + 8, (size_t)K * 6 * sizeof(double));
    }
    rc = 0;
out:
    free(r);
    free(conf);
    free(c.buf);
    return rc;
}

/* The number of ranks of a sharded run whose checkpoint lies in dir, other than this run's
 * (0: none): its files cannot be split again for another number of ranks. */
static int other_shards(const char *dir)
{
    DIR *d = opendir(dir);
    if (!d) return 0;
    int found = 0;
    struct dirent *en;
    while ((en = readdir(d)) && !found) {
        int m = 0, len = 0;
        if (sscanf(en->d_name, "checkpoint.rank0-of-%d.tsck%n", &m, &len) == 1 &&
            en->d_name[len] == 0 && m != (ck_size < 2 ? 1 : ck_size))
            found = m;
    }
    closedir(d);
    return found;
}

int ts_ckpt_resume_at(ts_exp *x, ts_loop *l, long step, FILE *log, ts_err *e)
{
    ck_want = step;
    int rc = ts_ckpt_resume(x, l, log, e);
    ck_want = -1;
    return rc;
}

int ts_ckpt_resume(ts_exp *x, ts_loop *l, FILE *log, ts_err *e)
{
    const char *dir = x->ctx.results_dir;
    char msgs[3][sizeof e->msg];
    int tried = 0;
    int m = other_shards(dir);
    if (m > 1) {
        char mine[TS_PATH_MAX + 32];
        ck_path(mine, sizeof mine, dir, ck_files[0]);
        struct stat sb;
        if (lstat(mine, &sb))
            return ts_fail(e, "%s holds the checkpoints of a run that split its embedding tables "
                           "across %d ranks (checkpoint.rankK-of-%d.tsck), and this run has %d: a "
                           "rank's file holds the rows r with r %% %d = K, which another number of "
                           "ranks cannot take over. Resume with mpirun -np %d, or start again "
                           "without --resume", dir, m, m, ck_size < 2 ? 1 : ck_size, m, m);
    }
    for (int i = 0; i < 3; i++) {
        char path[TS_PATH_MAX + 32];
        ck_path(path, sizeof path, dir, ck_files[i]);
        struct stat sb;
        if (lstat(path, &sb)) continue;     /* no such file; one that cannot be read is named */
        ts_err ce;
        if (!ck_restore(x, l, path, &ce)) {
            if (log && tried)
                fprintf(log, "%s  resuming from %s instead\n", x->name, path);
            return 1;
        }
        snprintf(msgs[tried++], sizeof msgs[0], "%s", ce.msg);
        if (log) fprintf(log, "%s  refused: %s\n", x->name, ce.msg);
    }
    if (!tried) return 0;
    return ts_fail(e, "no usable checkpoint in %s (%d refused; the first: %s). Start again "
                   "without --resume", dir, tried, msgs[0]);
}
