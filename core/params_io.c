/* params_io.c — saving and loading a run's trained parameters (RUN_DIR/params.bin), so a run
 * can be reloaded by `tessera export` and `tessera recommend` without training again.
 * Not a checkpoint: the optimizer's slots and the step count are not kept, so a reloaded run
 * cannot resume training exactly.
 *
 * Layout of params.bin, every integer and float little-endian:
 *
 *   offset  type        what
 *   0       char[4]     magic "TSPR"
 *   4       uint32      version = 1
 *   8       uint32      count: the parameters stored (every declared one except tied copies)
 *   then count records, in declaration order:
 *           uint32      name length L (1..255)
 *           char[L]     name, no NUL ("layer.tower1.W", "head.next.V")
 *           int32       rows
 *           int32       cols
 *           float32     rows * cols weights, row-major
 *   end     uint32      CRC-32 (zlib's, IEEE 802.3) of every byte before it
 *
 * Loading reads the whole file, checks magic, version, sizes and the CRC, then matches the
 * records to the built experiment's parameters BY NAME (each once) and checks their shapes and
 * that every weight is finite; nothing is copied into the weights unless every parameter
 * matches. */
#include "internal.h"

#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zlib.h>

#define TS_PARAMS_VERSION 1u
#define TS_PARAMS_MAXNAME 255u

static int little_endian(void)
{
    const uint16_t one = 1;
    return *(const uint8_t *)&one == 1;
}

/* Writes n bytes and folds them into the running CRC. */
static int put(FILE *f, const void *p, size_t n, unsigned long *crc)
{
    *crc = crc32(*crc, p, (uInt)n);
    return fwrite(p, 1, n, f) == n ? 0 : -1;
}

static int put_u32(FILE *f, uint32_t v, unsigned long *crc) { return put(f, &v, 4, crc); }

/* The records of every parameter (tied copies once), after their count: the body of params.bin
 * and of a checkpoint's PARM block. Returns 0, -1 on a write error, 2 on a bad name. */
static int put_records(FILE *f, ts_exp *x, uLong *crc)
{
    uint32_t count = 0;
    for (int i = 0; i < x->ctx.nparams; i++) count += !x->ctx.params[i]->shared;
    int bad = put_u32(f, count, crc);
    for (int i = 0; i < x->ctx.nparams && !bad; i++) {
        const ts_param *p = x->ctx.params[i];
        if (p->shared) continue;      /* a tied copy: the owner's record holds the weights */
        size_t len = strlen(p->name);
        if (len < 1 || len > TS_PARAMS_MAXNAME) return 2;
        int32_t shape[2] = {p->rows, p->cols};
        bad = put_u32(f, (uint32_t)len, crc) || put(f, p->name, len, crc) ||
              put(f, shape, sizeof shape, crc) ||
              ts_put_floats(f, p->w, (size_t)p->rows * (size_t)p->cols, crc);
    }
    return bad ? -1 : 0;
}

size_t ts_params_records_size(const ts_exp *x)
{
    size_t n = 4;
    for (int i = 0; i < x->ctx.nparams; i++) {
        const ts_param *p = x->ctx.params[i];
        if (!p->shared) n += 4 + strlen(p->name) + 8 + (size_t)p->rows * p->cols * sizeof(float);
    }
    return n;
}

int ts_params_write_records(FILE *f, ts_exp *x, unsigned long *crc)
{
    uLong c = *crc;
    int rc = put_records(f, x, &c);
    *crc = c;
    return rc;
}

int ts_put_floats(FILE *f, const float *w, size_t n, unsigned long *crc)
{
    /* in 1 GiB pieces, so crc32's uInt length never overflows */
    const unsigned char *b = (const unsigned char *)w;
    size_t bytes = n * sizeof(float);
    for (size_t o = 0; o < bytes; o += (size_t)1 << 30)
        if (put(f, b + o, bytes - o < ((size_t)1 << 30) ? bytes - o : (size_t)1 << 30, crc))
            return -1;
    return 0;
}

int ts_save_params(ts_exp *x, const char *path, ts_err *e)
{
    if (!little_endian())
        return ts_fail(e, "%s: params.bin is little-endian and this host is not; no file written",
                       path);
    if (!x->built || !x->arena)
        return ts_fail(e, "%s: the experiment is not built, so it has no parameters to save", path);
    char tmp[TS_PATH_MAX + 16];
    snprintf(tmp, sizeof tmp, "%s.tmp%d", path, (int)getpid());
    FILE *f = fopen(tmp, "wb");
    if (!f) return ts_fail(e, "cannot write %s: %s; check the results folder", tmp, strerror(errno));
    uLong crc = crc32(0L, Z_NULL, 0);
    int bad = put(f, "TSPR", 4, &crc) || put_u32(f, TS_PARAMS_VERSION, &crc);
    if (!bad) bad = put_records(f, x, &crc);
    uint32_t c = (uint32_t)crc;
    if (!bad) bad = fwrite(&c, 4, 1, f) != 1;
    int err = errno;
    if (!bad && fflush(f)) { bad = 1; err = errno; }
    if (fclose(f) != 0 && !bad) { bad = 1; err = errno; }
    if (bad) {
        remove(tmp);
        if (bad == 2)
            return ts_fail(e, "cannot write %s: a parameter name is empty or longer than 255 bytes",
                           path);
        return ts_write_error(e, tmp, err, "no params.bin was written");
    }
    if (rename(tmp, path)) {
        int er = errno;
        remove(tmp);
        return ts_fail(e, "cannot rename %s to %s: %s", tmp, path, strerror(er));
    }
    return 0;
}

/* zlib's crc32 takes a uInt length: fold a large buffer in 1 GiB pieces. */
uint32_t ts_crc_of(const unsigned char *p, size_t n)
{
    uLong c = crc32(0L, Z_NULL, 0);
    for (size_t o = 0; o < n; o += (size_t)1 << 30)
        c = crc32(c, p + o, (uInt)(n - o < ((size_t)1 << 30) ? n - o : (size_t)1 << 30));
    return (uint32_t)c;
}

static uint32_t get_u32(const unsigned char *p)
{
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

/* Appends one difference to the message (at most a few are spelled out). */
static void note(char *msg, size_t cap, int *n, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
static void note(char *msg, size_t cap, int *n, const char *fmt, ...)
{
    if (++*n > 4) return;
    size_t k = strlen(msg);
    if (k + 2 >= cap) return;
    if (k) { msg[k++] = ';'; msg[k++] = ' '; msg[k] = 0; }
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg + k, cap - k, fmt, ap);
    va_end(ap);
}

int ts_read_file(const char *path, unsigned char **buf, size_t *n, ts_err *e)
{
    /* A regular file only: a FIFO or /dev/zero would never end. Its size bounds the read, so a
     * file that grows meanwhile is read as it was (and its CRC tells). */
    int fd = ts_open_regular(path, "a file tessera wrote (params.bin, a checkpoint)", e);
    if (fd < 0) return errno ? ts_fail(e, "cannot open %s: %s", path, strerror(errno)) : -1;
    struct stat sb;
    if (fstat(fd, &sb) || sb.st_size < 0 || (uint64_t)sb.st_size >= SIZE_MAX) {
        close(fd);
        return ts_fail(e, "%s: cannot read its size", path);
    }
    size_t size = (size_t)sb.st_size;
    *buf = malloc(size + 1);
    if (!*buf) {
        close(fd);
        return ts_fail(e, "%s: out of memory for %zu bytes", path, size);
    }
    *n = 0;
    while (*n < size) {
        ssize_t k = read(fd, *buf + *n, size - *n);
        if (k < 0 && errno == EINTR) continue;
        if (k <= 0) break;
        *n += (size_t)k;
    }
    close(fd);
    if (*n != size) { free(*buf); return ts_fail(e, "%s: read error", path); }
    return 0;
}

ts_prec *ts_params_parse(const unsigned char *b, size_t n, uint32_t *count, const char **corrupt)
{
    *corrupt = NULL;
    if (n < 4) { *corrupt = "its parameter records are cut short"; return NULL; }
    uint32_t c = get_u32(b);
    if (c > (n - 4) / 13) { *corrupt = "its parameter count is larger than the file"; return NULL; }
    ts_prec *r = calloc(c ? c : 1, sizeof *r);
    if (!r) { *corrupt = "out of memory"; return NULL; }
    size_t off = 4;
    for (uint32_t i = 0; i < c; i++) {
        if (n - off < 4 || (r[i].len = get_u32(b + off)) < 1 || r[i].len > TS_PARAMS_MAXNAME ||
            n - off - 4 < r[i].len + 8) { *corrupt = "a record is cut short"; break; }
        r[i].name = (const char *)b + off + 4;
        off += 4 + r[i].len;
        r[i].rows = (int32_t)get_u32(b + off);
        r[i].cols = (int32_t)get_u32(b + off + 4);
        off += 8;
        uint64_t bytes = (uint64_t)(uint32_t)r[i].rows * (uint32_t)r[i].cols * 4u;
        if (r[i].rows < 1 || r[i].cols < 1 || bytes > n - off) {
            *corrupt = "a record's weights run past the end";
            break;
        }
        r[i].w = b + off;
        off += (size_t)bytes;
    }
    if (!*corrupt && off != n) *corrupt = "it has bytes after the last record";
    if (*corrupt) { free(r); return NULL; }
    *count = c;
    return r;
}

/* The record of parameter p, or -1. */
static long find_rec(const ts_prec *r, uint32_t count, const ts_param *p)
{
    size_t len = strlen(p->name);
    for (uint32_t k = 0; k < count; k++)
        if (r[k].len == len && !memcmp(r[k].name, p->name, len)) return k;
    return -1;
}

/* A record's name for a message (out: 4 * TS_NAME_MAX bytes): the file's bytes, cut, with a byte
 * outside printable ASCII as '?', so a forged name cannot put terminal escapes into a message. */
static const char *rec_name(const ts_prec *r, char *out)
{
    size_t n = r->len < 4 * TS_NAME_MAX - 4 ? r->len : 4 * TS_NAME_MAX - 4, k = 0;
    for (size_t i = 0; i < n; i++) {
        unsigned char ch = (unsigned char)r->name[i];
        out[k++] = ch >= 0x20 && ch < 0x7f ? (char)ch : '?';
    }
    if (n < r->len) { memcpy(out + k, "...", 3); k += 3; }
    out[k] = 0;
    return out;
}

int ts_params_match(ts_exp *x, ts_prec *r, uint32_t count, const char *path, ts_err *e)
{
    char diff[768] = "", name[4 * TS_NAME_MAX];
    int ndiff = 0;
    for (uint32_t k = 0; k < count; k++) r[k].used = 0;
    for (int i = 0; i < x->ctx.nparams; i++) {
        const ts_param *p = x->ctx.params[i];
        if (p->shared) continue;
        long k = find_rec(r, count, p);
        if (k < 0) {
            note(diff, sizeof diff, &ndiff, "%s (%d, %d) is not in the file", p->name, p->rows, p->cols);
            continue;
        }
        r[k].used = 1;
        if (r[k].rows != p->rows || r[k].cols != p->cols)
            note(diff, sizeof diff, &ndiff, "%s is (%d, %d) in the file but (%d, %d) in the "
                 "experiment", p->name, r[k].rows, r[k].cols, p->rows, p->cols);
    }
    for (uint32_t k = 0; k < count; k++) {
        if (r[k].used) continue;
        /* a second record of a declared name: find_rec matched the first one */
        ts_param dup = {.rows = 0};
        int twice = r[k].len < sizeof dup.name && ndiff < 4;
        if (twice) {
            memcpy(dup.name, r[k].name, r[k].len);
            dup.name[r[k].len] = 0;
            twice = strlen(dup.name) == r[k].len && find_rec(r, k, &dup) >= 0;
        }
        if (twice)
            note(diff, sizeof diff, &ndiff, "the file has %s twice", rec_name(&r[k], name));
        else
            note(diff, sizeof diff, &ndiff, "the file has %s (%d, %d), which the experiment "
                 "does not declare", rec_name(&r[k], name), r[k].rows, r[k].cols);
    }
    if (ndiff)
        return ts_fail(e, "%s does not match the experiment (%d difference%s): %s%s. Load it with "
                       "the run's own config.ini and the same plugins and data", path, ndiff,
                       ndiff > 1 ? "s" : "", diff, ndiff > 4 ? "; ..." : "");
    /* Names and shapes match: the weights must be numbers a run can go on from. */
    for (uint32_t k = 0; k < count; k++) {
        size_t n = (size_t)r[k].rows * (size_t)r[k].cols;
        for (size_t i = 0; i < n; i++) {
            float f;
            memcpy(&f, r[k].w + 4 * i, 4);
            if (!isfinite(f))
                return ts_fail(e, "%s: %s holds %g at row %zu, column %zu: the file is damaged, "
                               "was not written by tessera, or comes from a run that diverged",
                               path, rec_name(&r[k], name), f, i / (size_t)r[k].cols,
                               i % (size_t)r[k].cols);
        }
    }
    return 0;
}

void ts_params_copy(ts_exp *x, const ts_prec *r, uint32_t count)
{
    for (int i = 0; i < x->ctx.nparams; i++) {
        ts_param *p = x->ctx.params[i];
        long k = p->shared ? -1 : find_rec(r, count, p);
        if (k >= 0) memcpy(p->w, r[k].w, (size_t)p->rows * (size_t)p->cols * sizeof(float));
    }
}

/* N when path's folder holds params.rank0-of-N.bin (a run sharded over N ranks), else 0. */
static int sharded_params(const char *path)
{
    char buf[TS_PATH_MAX + 64];
    const char *slash = strrchr(path, '/');
    int len = slash ? (int)(slash - path) : 1;
    for (int n = 2; n <= 4096; n++) {
        snprintf(buf, sizeof buf, "%.*s/params.rank0-of-%d.bin", len, slash ? path : ".", n);
        if (access(buf, F_OK) == 0) return n;
    }
    return 0;
}

int ts_load_params(ts_exp *x, const char *path, ts_err *e)
{
    if (!little_endian())
        return ts_fail(e, "%s: params.bin is little-endian and this host is not", path);
    if (!x->built || !x->arena)
        return ts_fail(e, "%s: build the experiment before loading its parameters", path);
    unsigned char *b = NULL;
    size_t n = 0;
    if (access(path, R_OK)) {
        int err = errno, nr = sharded_params(path);
        if (nr > 1)
            return ts_fail(e, "cannot open %s: the run split its tables across %d ranks (shard = rows, "
                           "docs/scale.md) and wrote each rank's rows to params.rankK-of-%d.bin, no "
                           "params.bin; reading a model from its shards is not implemented: run the "
                           "experiment again in one process (shard = rows keeps the whole table there) "
                           "or without shard = rows, and use that run", path, nr, nr);
        return ts_fail(e, "cannot open %s: %s; a run writes it at the end of training (runs "
                       "made before params.bin existed must be run again)", path, strerror(err));
    }
    if (ts_read_file(path, &b, &n, e)) return -1;
    const char *corrupt = NULL;
    ts_prec *r = NULL;
    uint32_t count = 0;
    if (n < 16 || memcmp(b, "TSPR", 4))
        corrupt = "it does not start with \"TSPR\" (not a tessera params.bin)";
    else if (get_u32(b + 4) != TS_PARAMS_VERSION)
        corrupt = "its version is not 1; this tessera reads version 1";
    else if (get_u32(b + n - 4) != ts_crc_of(b, n - 4))
        corrupt = "its CRC-32 does not match (the file is truncated or damaged)";
    else
        r = ts_params_parse(b + 8, n - 12, &count, &corrupt);
    if (corrupt) {
        free(b);
        return ts_fail(e, "%s is not a valid parameter file: %s. Run the experiment again to "
                       "write a new one", path, corrupt);
    }
    int rc = ts_params_match(x, r, count, path, e);
    if (!rc) ts_params_copy(x, r, count);
    free(r);
    free(b);
    return rc;
}
