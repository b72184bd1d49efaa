/* lines.c — reading text data line by line from plain or gzip files (zlib), with line
 * numbers for messages, and splitting a line into fields. Every dataset reader uses it, so
 * CRLF endings, long lines, NUL bytes and read errors are handled once.
 *
 * Lines are cut from blocks of gzread() with memchr rather than gzgets(): gzgets stops at a
 * NUL byte without saying so, which silently glued the rest of such a line to the next one (a
 * UTF-16 file is full of NULs). A NUL byte now ends the file with an error that names the line. */
#include "internal.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <zlib.h>

#define TS_LINES_BLOCK (1 << 16)   /* bytes read from the file at a time */

struct ts_lines {
    gzFile gz;            /* zlib reads plain files transparently too */
    char *path;
    char *buf;            /* the current line, NUL-terminated */
    size_t cap;
    char *in;             /* (TS_LINES_BLOCK) bytes read ahead: in[pos .. len) are unread */
    size_t pos, len;
    int eof;              /* gzread has returned everything */
    long lineno;
    int error;            /* 1: a read error; 2: a NUL byte on line lineno + 1 */
    char errmsg[256];
};

ts_lines *ts_lines_open(const char *path, ts_err *e)
{
    ts_lines *r = calloc(1, sizeof *r);
    if (!r) return ts_fail(e, "out of memory"), NULL;
    r->gz = gzopen(path, "rb");
    if (!r->gz) {
        ts_fail(e, "%s: cannot open: %s", path, errno ? strerror(errno) : "zlib failed");
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
    if (memchr(r->buf, 0, n)) {
        r->error = 2;
        return NULL;
    }
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
