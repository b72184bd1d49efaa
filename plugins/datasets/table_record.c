/* table_record.c — the table reader's records: a delimited file's lines (ts_lines: plain or
 * gzip, CRLF) split into fields with any separator and RFC 4180 quoting (a quoted separator,
 * doubled quotes, a quoted field over several lines), a UTF-8 byte-order mark dropped, UTF-8
 * checked (a sentence naming the first invalid byte) or Latin-1 converted to UTF-8; the numbers
 * in fields (an exact fast path, strtod otherwise); and text values interned to raw ids through
 * a per-column hash table in front of the string table. What a field means is decided by
 * table_parse.c. */
#include "table.h"

#include <ctype.h>
#include <float.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#define TB_RECORD_MAX ((size_t)1 << 26)   /* a quoted field may span lines, up to 64 MiB */


int tb_parse_number(const char *s, size_t n, double *v)
{
    static const double p10[23] = {1e0, 1e1, 1e2, 1e3, 1e4, 1e5, 1e6, 1e7, 1e8, 1e9, 1e10, 1e11,
        1e12, 1e13, 1e14, 1e15, 1e16, 1e17, 1e18, 1e19, 1e20, 1e21, 1e22};
    size_t i = 0;
    int neg = 0, digits = 0, frac = 0, seen = 0;
    uint64_t m = 0;
    if (i < n && (s[i] == '-' || s[i] == '+')) neg = s[i++] == '-';
    for (; i < n && s[i] >= '0' && s[i] <= '9'; i++, seen = 1) {
        if (digits < 16) m = m * 10 + (uint64_t)(s[i] - '0');
        digits += digits >= 16 || m != 0;    /* significant digits: leading zeros do not count */
    }
    if (i < n && s[i] == '.')
        for (i++; i < n && s[i] >= '0' && s[i] <= '9'; i++, seen = 1, frac++) {
            if (digits < 16) m = m * 10 + (uint64_t)(s[i] - '0');
            digits += digits >= 16 || m != 0;
        }
    /* m < 10^15 < 2^53 and 10^frac are exact doubles: one correctly rounded division is what
     * strtod returns. Anything else (exponents, long mantissas, inf) goes to strtod. */
    if (i == n && seen && digits <= 15 && frac <= 22) {
        double d = (double)m / p10[frac];
        *v = neg ? -d : d;
        return 0;
    }
    if (n == 0) return -1;
    char *end;
    double d = strtod(s, &end);
    if (end != s + n || !isfinite(d)) return -1;
    *v = d;
    return 0;
}

int tb_is_missing(const tb_data *T, const char *s, size_t n)
{
    if (n == 0) return 1;
    for (int i = 0; i < T->nmissing; i++)
        if (strlen(T->missing[i]) == n && !memcmp(T->missing[i], s, n)) return 1;
    return 0;
}

/* Offset of the first byte of s[0..n) that is not valid UTF-8, or -1. */
static long utf8_bad(const unsigned char *s, size_t n)
{
    size_t i = 0;
    while (i < n) {
        if (i + 8 <= n) {
            uint64_t w;
            memcpy(&w, s + i, 8);
            if (!(w & 0x8080808080808080ull)) { i += 8; continue; }
        }
        unsigned c = s[i];
        if (c < 0x80) { i++; continue; }
        size_t k = c >= 0xC2 && c <= 0xDF ? 1 : c >= 0xE0 && c <= 0xEF ? 2 : c >= 0xF0 && c <= 0xF4 ? 3 : 0;
        if (!k || i + k >= n) return (long)i;       /* a lead byte, or one cut short */
        for (size_t j = 1; j <= k; j++)
            if ((s[i + j] & 0xC0) != 0x80) return (long)i;
        unsigned c1 = s[i + 1];
        if ((c == 0xE0 && c1 < 0xA0) || (c == 0xED && c1 > 0x9F) || (c == 0xF0 && c1 < 0x90) ||
            (c == 0xF4 && c1 > 0x8F))
            return (long)i;
        i += k + 1;
    }
    return -1;
}

/* Appends s[0..n) to the record copy, converting Latin-1 bytes to UTF-8 when asked. */
static int append(tb_reader *R, const char *s, size_t n, int latin1)
{
    size_t need = R->reclen + 2 * n + 2;
    if (need > TB_RECORD_MAX) return -1;
    if (need > R->reccap) {
        size_t cap = R->reccap ? R->reccap : 4096;
        while (cap < need) cap *= 2;
        char *r = realloc(R->rec, cap);
        if (!r) return -1;
        R->rec = r;
        R->reccap = cap;
    }
    char *o = R->rec + R->reclen;
    if (!latin1) { memcpy(o, s, n); o += n; }
    else for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c < 0x80) *o++ = (char)c;
        else { *o++ = (char)(0xC0 | (c >> 6)); *o++ = (char)(0x80 | (c & 0x3F)); }
    }
    *o = 0;
    R->reclen = (size_t)(o - R->rec);
    return 0;
}

/* The next line, checked (UTF-8) or converted (Latin-1); 1, 0 at the end, -1 bad (why), -2 fatal. */
static int next_line(tb_reader *R, int into_rec, char *why, size_t nwhy)
{
    size_t len;
    char *line = ts_lines_next(R->in, &len);
    if (!line) {
        ts_err sub;
        if (ts_lines_error(R->in, &sub) < 0) { snprintf(why, nwhy, "%s", sub.msg); return -2; }
        return 0;
    }
    if (ts_lines_lineno(R->in) == 1 && len >= 3 && !memcmp(line, "\xEF\xBB\xBF", 3)) line += 3, len -= 3;
    if (!into_rec) R->line = ts_lines_lineno(R->in);
    if (!R->t->latin1) {
        long bad = utf8_bad((const unsigned char *)line, len);
        if (bad >= 0) {
            char on[48] = "";
            if (ts_lines_lineno(R->in) != R->line) snprintf(on, sizeof on, " on line %ld", ts_lines_lineno(R->in));
            snprintf(why, nwhy, "byte %ld%s (0x%02X, after \"%.*s\") is not UTF-8 (a Latin-1 file? "
                     "set encoding = latin-1)", bad + 1, on, (unsigned char)line[bad],
                     (int)(bad > 24 ? 24 : bad), line + (bad > 24 ? bad - 24 : 0));
            return -1;
        }
    }
    if (into_rec || R->t->latin1) {
        if (append(R, line, len, R->t->latin1) < 0) {
            snprintf(why, nwhy, "a record over %zu MiB (an unclosed quote?)", TB_RECORD_MAX >> 20);
            return -2;
        }
        R->buf = R->rec;
        R->len = R->reclen;
    } else {
        R->buf = line;
        R->len = len;
    }
    return 1;
}

/* Offset of the first byte c in s[0..n), or n: eight bytes at a time (fields are short, and a
 * call to memchr per field cost more than the scan). */
static inline size_t find_byte(const char *s, size_t n, char c)
{
    size_t i = 0;
#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
    const uint64_t ones = 0x0101010101010101ull, pat = ones * (unsigned char)c;
    for (; i + 8 <= n; i += 8) {
        uint64_t w;
        memcpy(&w, s + i, 8);
        w ^= pat;                                      /* a zero byte where s has c */
        uint64_t t = (w - ones) & ~w & 0x8080808080808080ull;
        if (t) return i + (size_t)(__builtin_ctzll(t) >> 3);
    }
#endif
    while (i < n && s[i] != c) i++;
    return i;
}

/* A line without quotes (the common case) split on a one-byte separator in one pass, eight
 * bytes a step, every separator of a word found from an exact per-byte match mask. */
static int split_plain(tb_reader *R, int *nf, char *why, size_t nwhy)
{
    char *b = R->buf, sep = R->t->sep[0];
    size_t len = R->len, start = 0, i = 0;
    int n = 0;
    const uint64_t lo7 = 0x7F7F7F7F7F7F7F7Full, pat = 0x0101010101010101ull * (unsigned char)sep;
    for (;;) {
        size_t cut = len;                              /* the next separator, or the end */
        for (; i + 8 <= len; i += 8) {
            uint64_t w;
            memcpy(&w, b + i, 8);
            w ^= pat;
            uint64_t m = ~(((w & lo7) + lo7) | w | lo7);   /* 0x80 where the byte is sep */
            if (!m) continue;
            cut = i + (size_t)(__builtin_ctzll(m) >> 3);
            break;
        }
        if (cut == len) for (; i < len; i++) if (b[i] == sep) { cut = i; break; }
        if (n == R->fcap) {
            int cap = R->fcap ? 2 * R->fcap : 64;
            char **f = realloc(R->f, (size_t)cap * sizeof *f);
            if (f) R->f = f;
            size_t *l = f ? realloc(R->flen, (size_t)cap * sizeof *l) : NULL;
            if (l) R->flen = l;
            size_t *o = l ? realloc(R->off, (size_t)cap * sizeof *o) : NULL;
            if (!o) { snprintf(why, nwhy, "out of memory"); return -2; }
            R->off = o;
            R->fcap = cap;
        }
        size_t a = start, e = cut;
        while (a < e && ((b[a] == ' ' && R->trim_space) || (b[a] == '\t' && R->trim_tab))) a++;
        while (e > a && ((b[e - 1] == ' ' && R->trim_space) || (b[e - 1] == '\t' && R->trim_tab))) e--;
        b[e] = 0;                                      /* e <= cut: never past the separator */
        R->f[n] = b + a;
        R->flen[n++] = e - a;
        if (cut == len) break;
        start = i = cut + 1;
    }
    *nf = n;
    return 1;
}

static inline int is_trim(const tb_reader *R, char c)
{
    return (c == ' ' && R->trim_space) || (c == '\t' && R->trim_tab);
}

/* The next record split into fields: 1, 0 at the end, -1 a bad record (why), -2 fatal (why). */
int tb_record_next(tb_reader *R, int *nf, char *why, size_t nwhy)
{
    int rc;
    for (;;) {
        R->reclen = 0;
        if ((rc = next_line(R, 0, why, nwhy)) <= 0) {
            if (rc != -1) R->line = ts_lines_lineno(R->in) + 1;
            return rc;
        }
        size_t k = 0;
        while (k < R->len && isspace((unsigned char)R->buf[k])) k++;
        if (k < R->len) break;                            /* blank lines carry nothing */
    }
    if (R->seplen == 1 && (!R->t->quoting || !memchr(R->buf, '"', R->len)))
        return split_plain(R, nf, why, nwhy);
    const char *sep = R->t->sep;
    size_t pos = 0;
    int n = 0;
    for (;;) {
        if (n == R->fcap) {
            int cap = R->fcap ? 2 * R->fcap : 64;
            size_t *o = realloc(R->off, (size_t)cap * sizeof *o), *l = o ? realloc(R->flen, (size_t)cap * sizeof *l) : NULL;
            if (o) R->off = o;
            if (l) R->flen = l;
            char **f = l ? realloc(R->f, (size_t)cap * sizeof *f) : NULL;
            if (!f) { snprintf(why, nwhy, "out of memory"); return -2; }
            R->f = f;
            R->fcap = cap;
        }
        size_t p = pos;
        while (p < R->len && is_trim(R, R->buf[p])) p++;
        if (R->t->quoting && p < R->len && R->buf[p] == '"') {
            size_t out = p, rd = p + 1;
            for (;;) {
                if (rd == R->len) {                        /* the field goes on on the next line */
                    if (R->buf != R->rec) { R->reclen = 0; if (append(R, R->buf, R->len, 0) < 0) goto big; }
                    if (append(R, "\n", 1, 0) < 0) goto big;
                    rc = next_line(R, 1, why, nwhy);
                    if (rc == 0) {
                        snprintf(why, nwhy, "field %d opens a quote that is never closed; close it "
                                 "(a quote inside a quoted field is written \"\")", n + 1);
                        return -1;
                    }
                    if (rc < 0) return rc;
                    continue;
                }
                char c = R->buf[rd];
                if (c == '"' && rd + 1 < R->len && R->buf[rd + 1] == '"') { R->buf[out++] = '"'; rd += 2; continue; }
                if (c == '"') { rd++; break; }
                R->buf[out++] = c;
                rd++;
            }
            R->off[n] = p;
            R->flen[n++] = out - p;
            while (rd < R->len && is_trim(R, R->buf[rd])) rd++;
            if (rd == R->len) break;
            if (strncmp(R->buf + rd, sep, R->seplen)) {
                snprintf(why, nwhy, "field %d has text after its closing quote (\"%.20s\"); a quote "
                         "inside a quoted field is written \"\"", n, R->buf + rd);
                return -1;
            }
            pos = rd + R->seplen;
            continue;
        }
        const char *q;
        if (R->seplen == 1) {
            size_t at = pos + find_byte(R->buf + pos, R->len - pos, sep[0]);
            q = at < R->len ? R->buf + at : NULL;
        } else q = strstr(R->buf + pos, sep);
        size_t end = q ? (size_t)(q - R->buf) : R->len, fe = end;
        while (fe > p && is_trim(R, R->buf[fe - 1])) fe--;
        if (p > fe) p = fe;
        R->off[n] = p;
        R->flen[n++] = fe - p;
        if (!q) break;
        pos = end + R->seplen;
    }
    for (int i = 0; i < n; i++) {
        R->f[i] = R->buf + R->off[i];
        R->f[i][R->flen[i]] = 0;
    }
    *nf = n;
    return 1;
big:
    snprintf(why, nwhy, "a record over %zu MiB (an unclosed quote?)", TB_RECORD_MAX >> 20);
    return -2;
}

void tb_record_free(tb_reader *R)
{
    ts_lines_close(R->in);
    free(R->rec); free(R->off); free(R->flen); free(R->f);
    memset(R, 0, sizeof *R);
}

/* ---- values: interned through a per-column hash table in front of the string table ---- */
/* The last bytes of a string as one word, from overlapping loads (no loop over bytes). */
static inline uint64_t tail_word(const char *s, size_t n)
{
    uint64_t w = 0;
    uint32_t a, b;
    uint16_t c, d;
    if (n >= 8) memcpy(&w, s + n - 8, 8);
    else if (n >= 4) { memcpy(&a, s, 4); memcpy(&b, s + n - 4, 4); w = (uint64_t)a << 32 | b; }
    else if (n >= 2) { memcpy(&c, s, 2); memcpy(&d, s + n - 2, 2); w = (uint64_t)c << 16 | d; }
    else if (n == 1) w = (unsigned char)s[0];
    return w;
}

static inline uint32_t fast_hash(const char *s, size_t n)
{
    uint64_t h = 0x243F6A8885A308D3ull ^ n, w;
    size_t i = 0;
    for (; i + 8 < n; i += 8) {
        memcpy(&w, s + i, 8);
        h = (h ^ w) * 0x9E3779B97F4A7C15ull;
        h ^= h >> 29;
    }
    h = (h ^ tail_word(s, n)) * 0x9E3779B97F4A7C15ull;
    return (uint32_t)(h >> 32) ^ (uint32_t)h;
}

/* a[0..n) == b[0..n) for the short strings of a field, without a call */
static inline int same(const char *a, const char *b, size_t n)
{
    uint64_t x, y;
    for (; n > 8; n -= 8, a += 8, b += 8) {
        memcpy(&x, a, 8);
        memcpy(&y, b, 8);
        if (x != y) return 0;
    }
    return tail_word(a, n) == tail_word(b, n);
}

int32_t tb_intern(tb_data *T, int src, const char *s, size_t n)
{
    tb_src *c = &T->src[src];
    uint32_t h = fast_hash(s, n);
    if (c->cache)
        for (uint32_t j = h & c->cmask; c->cache[j].id >= 0; j = (j + 1) & c->cmask) {
            int32_t id = c->cache[j].id;
            if (c->cache[j].hash == h && c->cl[id] == n && same(c->cs[id], s, n)) return id;
        }
    int32_t id = ts_strtab_id(T->strs, src, s, n, 1);
    if (id < 0) return id;
    if (id != (int32_t)c->cn) return -2;             /* every new value passes through here */
    if (!c->cache || 2 * (c->cn + 1) > c->cmask + 1) {    /* grow: keep the load under 1/2 */
        uint32_t cap = c->cache ? 2 * (c->cmask + 1) : 16;
        tb_slot *nc = cap ? malloc(cap * sizeof *nc) : NULL;
        const char **ns = nc ? realloc(c->cs, cap / 2 * sizeof *ns) : NULL;
        if (ns) c->cs = ns;
        uint32_t *nl = ns ? realloc(c->cl, cap / 2 * sizeof *nl) : NULL;
        if (nl) c->cl = nl;
        if (!nl) { free(nc); return -2; }
        for (uint32_t j = 0; j < cap; j++) nc[j].id = -1;
        for (uint32_t j = 0; c->cache && j <= c->cmask; j++) {
            if (c->cache[j].id < 0) continue;
            uint32_t k = c->cache[j].hash & (cap - 1);
            while (nc[k].id >= 0) k = (k + 1) & (cap - 1);
            nc[k] = c->cache[j];
        }
        free(c->cache);
        c->cache = nc;
        c->cmask = cap - 1;
    }
    uint32_t j = h & c->cmask;
    while (c->cache[j].id >= 0) j = (j + 1) & c->cmask;
    c->cache[j] = (tb_slot){h, id};
    c->cs[id] = ts_strtab_str(T->strs, src, id);
    c->cl[id] = (uint32_t)n;
    c->cn++;
    return id;
}
