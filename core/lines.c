/* lines.c — reading text data line by line from plain or gzip files, with line numbers for
 * messages, and splitting a line into fields. Every dataset reader uses it, so CRLF endings,
 * long lines, NUL bytes and read errors are handled once.
 *
 * A file that starts with gzip's magic bytes is inflated by ISA-L's igzip when ./configure
 * found libisal-dev (two to three times zlib's speed, docs/data.md "Speed and memory"), else by
 * zlib's gzread; a plain file is read with read(). Either way bytes arrive in blocks of
 * TS_LINES_BLOCK, and lines are cut from the block in place with memchr (no copy): a line is
 * returned where it lies, its '\n' overwritten by the NUL. The partial line at the end of a
 * block moves to the front before the next read; a longer line grows the block.
 *
 * Lines are cut with memchr rather than gzgets(): gzgets stops at a NUL byte without saying
 * so, which silently glued the rest of such a line to the next one (a UTF-16 file is full of
 * NULs). A NUL byte now ends the file with an error that names the line, as soon as it is read
 * (a stream of zeros is refused after one block, not after memory ran out).
 *
 * Only regular files are read (ts_open_regular, shared with the INI and checkpoint readers): a
 * FIFO or a device such as /dev/zero never ends. A line is at most TS_LINE_LIMIT bytes, which
 * also bounds a gzip file that inflates without end into one line (a "zip bomb"). */
#include "internal.h"

#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zlib.h>

#include "config.h"          /* TS_HAVE_ISAL from ./configure (libisal-dev) */
#ifdef TS_HAVE_ISAL
#include <isa-l/igzip_lib.h>
#endif

#define TS_LINES_BLOCK (1 << 18)   /* bytes of lines read ahead (grows for a longer line) */
#define TS_LINES_ZIN (1 << 17)     /* bytes of a gzip file read at a time */
#define TS_NO_NUL ((size_t)-1)
#define TS_LINE_LIMIT (16 << 20)   /* bytes of one line; data lines are kilobytes at most */

int ts_open_regular(const char *path, const char *what, ts_err *e)
{
    /* O_NONBLOCK: opening a FIFO for reading would wait for a writer, possibly for ever */
    int fd = open(path, O_RDONLY | O_NONBLOCK | O_CLOEXEC);
    if (fd < 0) return -1;
    struct stat sb;
    if (fstat(fd, &sb)) {
        int er = errno;
        close(fd);
        errno = er;
        return -1;
    }
    if (!S_ISREG(sb.st_mode)) {
        const char *kind = S_ISFIFO(sb.st_mode) ? "a FIFO (named pipe)"
                         : S_ISCHR(sb.st_mode)  ? "a character device"
                         : S_ISBLK(sb.st_mode)  ? "a block device"
                         : S_ISSOCK(sb.st_mode) ? "a socket"
                         : S_ISDIR(sb.st_mode)  ? "a folder" : "not a file";
        close(fd);
        errno = 0;
        ts_fail(e, "%s is not a regular file but %s, which tessera does not read; give the path "
                "of %s", path, kind, what);
        return -1;
    }
    int fl = fcntl(fd, F_GETFL);
    if (fl != -1) fcntl(fd, F_SETFL, fl & ~O_NONBLOCK);
    return fd;
}

FILE *ts_fopen_regular(const char *path)
{
    ts_err e;
    int fd = ts_open_regular(path, "a file", &e);
    if (fd < 0) return NULL;
    FILE *f = fdopen(fd, "r");
    if (!f) close(fd);
    return f;
}

/* ---- sources: the bytes of a plain file, or of a gzip file inflated ----------------------- */
enum { TS_SRC_PLAIN = 0, TS_SRC_ZLIB, TS_SRC_ISAL };

struct ts_lines {
    int fd;
    int src;              /* TS_SRC_*: chosen by the file's first two bytes (1F 8B: gzip) */
    gzFile gz;            /* TS_SRC_ZLIB */
#ifdef TS_HAVE_ISAL
    struct inflate_state *isal;   /* TS_SRC_ISAL: one gzip member at a time */
    unsigned char *zin;   /* (TS_LINES_ZIN) compressed bytes: zin[zpos .. zlen) unread */
    size_t zpos, zlen;
    int zeof;             /* read() has returned everything */
    int zdone;            /* the last member ended and nothing but trailing bytes follow */
#endif
    char *path;
    char *buf;            /* (cap) bytes read: buf[pos .. len) not yet returned; lines are
                             returned in place, NUL-terminated where their '\n' was */
    size_t cap, pos, len;
    size_t scan;          /* buf[pos .. scan) holds no '\n' (a long line read in pieces) */
    size_t nul;           /* the first NUL byte read (an index into buf), or TS_NO_NUL: the
                             lines before it are returned, the line holding it is an error */
    int eof;              /* the source has returned everything */
    long lineno;
    long long base;       /* bytes of the (inflated) file before buf[0] (ts_lines_offset) */
    int error;            /* 1: a read error; 2: a NUL byte on line lineno + 1; 3: line
                             lineno + 1 is longer than TS_LINE_LIMIT */
    int failing;          /* a read error (errmsg) comes after the bytes the last read gave:
                             their lines are returned first, so the message names the last
                             good line */
    char errmsg[256];
};

ts_lines *ts_lines_open(const char *path, ts_err *e)
{
    ts_lines *r = calloc(1, sizeof *r);
    if (!r) return ts_fail(e, "out of memory"), NULL;
    r->fd = ts_open_regular(path, "a data file", e);
    if (r->fd < 0) {
        if (errno) ts_fail(e, "%s: cannot open: %s", path, strerror(errno));
        free(r);
        return NULL;
    }
    unsigned char magic[2] = {0, 0};
    int gzip = pread(r->fd, magic, 2, 0) == 2 && magic[0] == 0x1F && magic[1] == 0x8B;
    r->path = strdup(path);
    r->cap = TS_LINES_BLOCK;
    r->nul = TS_NO_NUL;
    r->buf = malloc(r->cap);
    int ok = r->path && r->buf;
#ifdef TS_HAVE_ISAL
    if (gzip && ok) {
        r->src = TS_SRC_ISAL;
        r->isal = malloc(sizeof *r->isal);
        r->zin = malloc(TS_LINES_ZIN);
        ok = r->isal && r->zin;
        if (ok) {
            isal_inflate_init(r->isal);
            r->isal->crc_flag = ISAL_GZIP;
        }
    }
#else
    if (gzip && ok) {
        r->src = TS_SRC_ZLIB;
        if (!(r->gz = gzdopen(r->fd, "rb"))) {
            ts_lines_close(r);
            return ts_fail(e, "%s: cannot open: zlib failed", path), NULL;
        }
        r->fd = -1;                               /* gzclose closes it */
        gzbuffer(r->gz, TS_LINES_ZIN);
    }
#endif
    if (!ok) {
        ts_lines_close(r);
        return ts_fail(e, "out of memory"), NULL;
    }
    return r;
}

/* Records a read error; returns -1, or got when the read gave bytes before it (the error then
 * comes with the next read). */
static long fail_read(ts_lines *r, const char *what, long got)
{
    if (what != r->errmsg) snprintf(r->errmsg, sizeof r->errmsg, "%s", what);
    r->failing = got > 0;
    r->error = got <= 0;
    return got > 0 ? got : -1;
}

/* Reads up to n bytes into p: the count, 0 at the end of the file, -1 on an error. */
static long read_plain(ts_lines *r, char *p, size_t n)
{
    for (;;) {
        ssize_t k = read(r->fd, p, n);
        if (k >= 0) return (long)k;
        if (errno != EINTR) return fail_read(r, strerror(errno), 0);
    }
}

static long read_zlib(ts_lines *r, char *p, size_t n)
{
    unsigned ask = n > (1u << 30) ? 1u << 30 : (unsigned)n;
    int k = gzread(r->gz, p, ask);
    int err = Z_OK;
    const char *m = k < (int)ask ? gzerror(r->gz, &err) : NULL;
    if (k < 0 || (err != Z_OK && err != Z_STREAM_END)) {  /* a truncated gzip: Z_BUF_ERROR */
        const char *why = m && !strncmp(m, "<fd:", 4) && strstr(m, ": ") ? strstr(m, ": ") + 2 : m;
        return fail_read(r, why ? why : "gzread failed", k);   /* "<fd:3>: " is not the file */
    }
    return k;
}

#ifdef TS_HAVE_ISAL
/* Compressed bytes: at least want unread in zin unless the file ends first; -1 on an error. */
static int zin_fill(ts_lines *r, size_t want)
{
    if (r->zpos > 0) {
        memmove(r->zin, r->zin + r->zpos, r->zlen - r->zpos);
        r->zlen -= r->zpos;
        r->zpos = 0;
    }
    while (!r->zeof && r->zlen < want) {
        long k = read_plain(r, (char *)r->zin + r->zlen, TS_LINES_ZIN - r->zlen);
        if (k < 0) return -1;
        if (k == 0) r->zeof = 1;
        r->zlen += (size_t)k;
    }
    return 0;
}

/* Inflates into p[0 .. n) with ISA-L; a file of several gzip members (cat a.gz b.gz) reads as
 * their concatenation, and bytes after the last member that do not start another are ignored,
 * as zlib's gzread does. */
static long read_isal(ts_lines *r, char *p, size_t n)
{
    struct inflate_state *s = r->isal;
    s->next_out = (uint8_t *)p;
    s->avail_out = (uint32_t)(n > (1u << 30) ? 1u << 30 : n);
    uint32_t ask = s->avail_out;
    while (s->avail_out > 0 && !r->zdone) {
        if (s->block_state == ISAL_BLOCK_FINISH) {           /* a member ended: another? */
            if (zin_fill(r, 2) < 0) return fail_read(r, r->errmsg, (long)(ask - s->avail_out));
            const unsigned char *z = r->zin + r->zpos;
            if (r->zlen - r->zpos < 2 || z[0] != 0x1F || z[1] != 0x8B) { r->zdone = 1; break; }
            isal_inflate_reset(s);
            s->crc_flag = ISAL_GZIP;
        }
        if (r->zpos == r->zlen && zin_fill(r, 1) < 0)
            return fail_read(r, r->errmsg, (long)(ask - s->avail_out));
        s->next_in = r->zin + r->zpos;
        s->avail_in = (uint32_t)(r->zlen - r->zpos);
        uint32_t out = s->avail_out;
        size_t was = r->zpos;
        int rc = isal_inflate(s), starved = s->avail_in == 0 && r->zeof;
        r->zpos = (size_t)(s->next_in - r->zin);
        if (rc < 0)
            return fail_read(r, rc == ISAL_INCORRECT_CHECKSUM ? "incorrect data check"
                              : rc == ISAL_INVALID_WRAPPER || rc == ISAL_UNSUPPORTED_METHOD
                              ? "not a gzip header" : "invalid compressed data",
                             (long)(ask - s->avail_out));
        /* no progress: the file ended inside a member (nothing more comes out of what ISA-L
         * holds), or it asks for what a gzip file never needs (a dictionary) */
        if (s->avail_out == out && r->zpos == was && s->block_state != ISAL_BLOCK_FINISH)
            return fail_read(r, starved ? "unexpected end of file" : "invalid compressed data",
                             (long)(ask - s->avail_out));
    }
    return (long)(ask - s->avail_out);
}
#endif

/* Appends what the source gives to buf[len .. cap - 1); 0 at the end, -1 on an error. Notes the
 * first NUL byte among the new bytes. */
static int refill(ts_lines *r)
{
    if (r->eof) return 0;
    if (r->failing) {
        r->error = 1;
        return -1;
    }
    char *p = r->buf + r->len;
    size_t room = r->cap - 1 - r->len;        /* one byte for the NUL after a last line */
    long k = r->src == TS_SRC_PLAIN ? read_plain(r, p, room)
#ifdef TS_HAVE_ISAL
           : r->src == TS_SRC_ISAL ? read_isal(r, p, room)
#endif
           : read_zlib(r, p, room);
    if (k < 0) return -1;
    if (k == 0) { r->eof = 1; return 0; }
    if (r->nul == TS_NO_NUL) {
        const char *z = memchr(p, 0, (size_t)k);
        if (z) r->nul = (size_t)(z - r->buf);
    }
    r->len += (size_t)k;
    return 1;
}

/* Makes room after the unread bytes: moves them to the front, or grows buf when they fill it
 * (a long line; TS_LINE_LIMIT bounds it). */
static int make_room(ts_lines *r)
{
    if (r->pos > 0) {
        r->base += (long long)r->pos;
        memmove(r->buf, r->buf + r->pos, r->len - r->pos);
        r->len -= r->pos;
        r->scan -= r->pos;
        if (r->nul != TS_NO_NUL) r->nul -= r->pos;
        r->pos = 0;
    }
    if (r->len + 1 < r->cap) return 0;
    size_t cap = 2 * r->cap;
    char *b = realloc(r->buf, cap);
    if (!b) {
        snprintf(r->errmsg, sizeof r->errmsg, "out of memory for a line of %zu bytes", r->len);
        r->error = 1;
        return -1;
    }
    r->buf = b;
    r->cap = cap;
    return 0;
}

char *ts_lines_next(ts_lines *r, size_t *len)
{
    if (r->error) return NULL;
    for (;;) {
        char *s = r->buf + r->pos, *nl = memchr(r->buf + r->scan, '\n', r->len - r->scan);
        size_t end = nl ? (size_t)(nl - r->buf) : r->len;
        if (r->nul < end) {                     /* >= pos: the lines before had none */
            r->error = 2;
            return NULL;
        }
        if (end - r->pos > TS_LINE_LIMIT) {
            r->error = 3;
            return NULL;
        }
        if (nl || (r->eof && r->pos < r->len)) {   /* a line, or the last one without '\n' */
            size_t n = end - r->pos;
            s[n] = 0;                           /* the '\n', or the byte kept free after len */
            r->pos = r->scan = end + (nl != NULL);
            while (n > 0 && s[n - 1] == '\r') s[--n] = 0;
            r->lineno++;
            if (len) *len = n;
            return s;
        }
        if (r->eof) return NULL;                /* the end of the file */
        r->scan = r->len;
        if (make_room(r) < 0) return NULL;
        if (refill(r) < 0) return NULL;
    }
}

long ts_lines_lineno(const ts_lines *r) { return r->lineno; }
long long ts_lines_offset(const ts_lines *r) { return r->base + (long long)r->pos; }

int ts_lines_seek(ts_lines *r, long long off, long lineno, ts_err *e)
{
    if (off < 0 || lineno < 0) return ts_fail(e, "%s: cannot seek to byte %lld", r->path, off);
    if (r->src == TS_SRC_PLAIN && !r->error && !r->failing) {
        if (lseek(r->fd, (off_t)off, SEEK_SET) < 0)
            return ts_fail(e, "%s: cannot seek to byte %lld: %s", r->path, off, strerror(errno));
        r->pos = r->len = r->scan = 0;
        r->nul = TS_NO_NUL;
        r->eof = 0;
        r->base = off;
        r->lineno = lineno;
        return 0;
    }
    /* gzip: no random access; inflate and skip lines up to the offset */
    while (ts_lines_offset(r) < off && ts_lines_next(r, NULL)) {}
    if (ts_lines_error(r, e) < 0) return -1;
    if (ts_lines_offset(r) != off || r->lineno != lineno)
        return ts_fail(e, "%s: byte %lld (line %ld) is not the start of a line of this file; has "
                       "the file changed since the checkpoint?", r->path, off, lineno);
    return 0;
}
const char *ts_lines_path(const ts_lines *r) { return r->path; }

int ts_lines_error(const ts_lines *r, ts_err *e)
{
    if (!r->error) return 0;
    if (r->error == 2)
        return ts_fail(e, "%s:%ld: the line holds a NUL byte: is the file text in UTF-8 or ASCII? "
                       "(convert UTF-16 with iconv -f UTF-16 -t UTF-8)", r->path, r->lineno + 1);
    if (r->error == 3)
        return ts_fail(e, "%s:%ld: the line is longer than %d MiB without a line break; is this "
                       "a text file of the format the dataset expects (or a damaged .gz)?",
                       r->path, r->lineno + 1, TS_LINE_LIMIT >> 20);
    return ts_fail(e, "%s: read error after line %ld (%s); is the file truncated or not gzip?",
                   r->path, r->lineno, r->errmsg);
}

void ts_lines_close(ts_lines *r)
{
    if (!r) return;
    if (r->gz) gzclose(r->gz);
    if (r->fd >= 0) close(r->fd);
#ifdef TS_HAVE_ISAL
    free(r->isal);
    free(r->zin);
#endif
    free(r->path);
    free(r->buf);
    free(r);
}

int ts_split(char *s, const char *sep, char **fields, int max)
{
    size_t k = strlen(sep);
    int n = 0;
    if (k == 0 || k > 2) {
        for (;;) {
            if (n == max) return max + 1;
            fields[n++] = s;
            char *t = strstr(s, sep);
            if (!t) return n;
            *t = 0;
            s = t + k;
        }
    }
    /* a separator of 1 or 2 bytes (", ", ",", "\t"): the line is searched 8 bytes at a time
     * for the separator's first byte (an exact per-byte compare, no carries between bytes), and
     * the fields cut at the same first occurrences strstr finds; census rows spent 14 % of their
     * parsing in strstr's set-up on every short field, then as much in a byte loop */
    const unsigned char c0 = (unsigned char)sep[0], c1 = (unsigned char)sep[1];
    const uint64_t ones = 0x0101010101010101ull, low7 = 0x7f7f7f7f7f7f7f7full;
    const uint64_t pat = c0 * ones;
    size_t len = strlen(s), from = 0, i = 0;
    if (n == max) return max + 1;
    fields[n++] = s;
    for (; i < len; i += 8) {
        uint64_t m;
        if (len - i >= 8) {
            uint64_t w, x;
            memcpy(&w, s + i, 8);
            x = w ^ pat;
            m = ~(((x & low7) + low7) | x) & (ones << 7);   /* 0x80 in each byte equal to c0 */
        } else {
            m = 0;
            for (size_t j = 0; i + j < len; j++)
                if ((unsigned char)s[i + j] == c0) m |= (uint64_t)0x80 << (8 * j);
        }
        while (m) {
            size_t p = i + (size_t)(__builtin_ctzll(m) >> 3);
            m &= m - 1;
            if (p < from || (k == 2 && (unsigned char)s[p + 1] != c1)) continue;
            s[p] = 0;
            if (n == max) return max + 1;
            fields[n++] = s + p + k;
            from = p + k;
        }
    }
    return n;
}
