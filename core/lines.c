/* lines.c — reading text data line by line from plain or gzip files (zlib), with line
 * numbers for messages, and splitting a line into fields. Every dataset reader uses it, so
 * CRLF endings, long lines, NUL bytes and read errors are handled once.
 *
 * Lines are cut from blocks of gzread() with memchr rather than gzgets(): gzgets stops at a
 * NUL byte without saying so, which silently glued the rest of such a line to the next one (a
 * UTF-16 file is full of NULs). A NUL byte now ends the file with an error that names the line,
 * as soon as it is read (a stream of zeros is refused after one block, not after memory ran out).
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

#define TS_LINES_BLOCK (1 << 16)   /* bytes read from the file at a time */
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

struct ts_lines {
    gzFile gz;            /* zlib reads plain files transparently too */
    char *path;
    char *buf;            /* the current line, NUL-terminated */
    size_t cap;
    char *in;             /* (TS_LINES_BLOCK) bytes read ahead: in[pos .. len) are unread */
    size_t pos, len;
    int eof;              /* gzread has returned everything */
    long lineno;
    int error;            /* 1: a read error; 2: a NUL byte on line lineno + 1; 3: line
                             lineno + 1 is longer than TS_LINE_LIMIT */
    char errmsg[256];
};

ts_lines *ts_lines_open(const char *path, ts_err *e)
{
    ts_lines *r = calloc(1, sizeof *r);
    if (!r) return ts_fail(e, "out of memory"), NULL;
    int fd = ts_open_regular(path, "a data file", e);
    if (fd < 0) {
        if (errno) ts_fail(e, "%s: cannot open: %s", path, strerror(errno));
        free(r);
        return NULL;
    }
    r->gz = gzdopen(fd, "rb");
    if (!r->gz) {
        close(fd);
        ts_fail(e, "%s: cannot open: zlib failed", path);
        free(r);
        return NULL;
    }
    gzbuffer(r->gz, 1 << 17);
    r->path = strdup(path);
    r->cap = 4096;
    r->buf = malloc(r->cap);
    r->in = malloc(TS_LINES_BLOCK);
    if (!r->path || !r->buf || !r->in) {
        ts_lines_close(r);
        return ts_fail(e, "out of memory"), NULL;
    }
    return r;
}

/* Refills r->in; 0 at the end of the file, -1 on a read error (recorded in r). */
static int refill(ts_lines *r)
{
    if (r->eof) return 0;
    int k = gzread(r->gz, r->in, TS_LINES_BLOCK);
    int err = Z_OK;
    const char *m = k < TS_LINES_BLOCK ? gzerror(r->gz, &err) : NULL;
    if (k < 0 || (err != Z_OK && err != Z_STREAM_END)) {   /* a truncated gzip: Z_BUF_ERROR */
        r->error = 1;
        snprintf(r->errmsg, sizeof r->errmsg, "%s", m ? m : "gzread failed");
        return -1;
    }
    if (k == 0) r->eof = 1;
    r->pos = 0;
    r->len = (size_t)(k > 0 ? k : 0);
    return k > 0;
}

char *ts_lines_next(ts_lines *r, size_t *len)
{
    size_t n = 0;
    int ended = 0;        /* a '\n' was found */
    if (r->error) return NULL;
    while (!ended) {
        if (r->pos == r->len) {
            int rc = refill(r);
            if (rc < 0) return NULL;
            if (rc == 0) break;
        }
        const char *s = r->in + r->pos, *nl = memchr(s, '\n', r->len - r->pos);
        size_t take = nl ? (size_t)(nl - s) : r->len - r->pos;
        if (memchr(s, 0, take)) {
            r->error = 2;
            return NULL;
        }
        if (n + take > TS_LINE_LIMIT) {
            r->error = 3;
            return NULL;
        }
        if (n + take + 1 > r->cap) {
            size_t cap = r->cap;
            while (n + take + 1 > cap) cap *= 2;
            char *b = realloc(r->buf, cap);
            if (!b) {
                r->error = 1;
                snprintf(r->errmsg, sizeof r->errmsg, "out of memory for a line of %zu bytes",
                         n + take);
                return NULL;
            }
            r->buf = b;
            r->cap = cap;
        }
        memcpy(r->buf + n, s, take);
        n += take;
        r->pos += take + (nl ? 1 : 0);
        ended = nl != NULL;
    }
    if (!ended && n == 0) return NULL;   /* the end of the file */
    r->buf[n] = 0;
    while (n > 0 && r->buf[n - 1] == '\r') r->buf[--n] = 0;
    r->lineno++;
    if (len) *len = n;
    return r->buf;
}

long ts_lines_lineno(const ts_lines *r) { return r->lineno; }
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
    free(r->path);
    free(r->buf);
    free(r->in);
    free(r);
}

int ts_split(char *s, const char *sep, char **fields, int max)
{
    size_t k = strlen(sep);
    int n = 0;
    for (;;) {
        if (n == max) return max + 1;
        fields[n++] = s;
        char *t = strstr(s, sep);
        if (!t) return n;
        *t = 0;
        s = t + k;
    }
}
