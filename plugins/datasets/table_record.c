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

/* -1 with a sentence in why when line[0..len) is not UTF-8 (the reader's line, or a later one of
 * a record over several lines); 0 when it is. */
static int utf8_check(tb_reader *R, const char *line, size_t len, char *why, size_t nwhy)
{
    long bad = utf8_bad((const unsigned char *)line, len);
    if (bad < 0) return 0;
    char on[48] = "";
    if (ts_lines_lineno(R->in) != R->line) snprintf(on, sizeof on, " on line %ld", ts_lines_lineno(R->in));
    snprintf(why, nwhy, "byte %ld%s (0x%02X, after \"%.*s\") is not UTF-8 (a Latin-1 file? "
             "set encoding = latin-1)", bad + 1, on, (unsigned char)line[bad],
             (int)(bad > 24 ? 24 : bad), line + (bad > 24 ? bad - 24 : 0));
    return -1;
}

/* The next line, converted (Latin-1) or, when check, checked (UTF-8; the first line of a record
 * is checked by the caller, in its pass over the line); 1, 0 at the end, -1 bad (why), -2 fatal. */
static int next_line(tb_reader *R, int into_rec, int check, char *why, size_t nwhy)
{
    size_t len;
    char *line = ts_lines_next(R->in, &len);
    if (!line) {
        ts_err sub;
        if (ts_lines_error(R->in, &sub) < 0) {
            snprintf(why, nwhy, "%s", sub.msg);
            R->why_named = 1;
            return -2;
        }
        return 0;
    }
    if (ts_lines_lineno(R->in) == 1 && len >= 3 && !memcmp(line, "\xEF\xBB\xBF", 3)) line += 3, len -= 3;
    if (!into_rec) R->line = ts_lines_lineno(R->in);
    if (check && !R->t->latin1 && utf8_check(R, line, len, why, nwhy) < 0) return -1;
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

/* Bit i set where p[i] is c, of the 64 bytes at p: SSE2 (every x86-64), else eight bytes a step. */
#if defined(__SSE2__)
#include <emmintrin.h>
static inline uint64_t mask16(__m128i v, char c)
{
    return (uint64_t)(uint16_t)_mm_movemask_epi8(_mm_cmpeq_epi8(v, _mm_set1_epi8(c)));
}
/* The separators, quotes and bytes >= 0x80 among the 64 bytes at p. */
static inline void classify64(const char *p, char sep, uint64_t *ms, uint64_t *mq, uint64_t *mh)
{
    uint64_t s = 0, q = 0, h = 0;
    for (int k = 0; k < 4; k++) {
        __m128i v = _mm_loadu_si128((const __m128i *)(const void *)(p + 16 * k));
        s |= mask16(v, sep) << (16 * k);
        q |= mask16(v, '"') << (16 * k);
        h |= (uint64_t)(uint16_t)_mm_movemask_epi8(v) << (16 * k);
    }
    *ms = s, *mq = q, *mh = h;
}
#else
/* Bit i where byte i of w has its top bit set (the eight bits gathered by one multiply). */
static inline uint64_t top_bits(uint64_t w)
{
    return (((w >> 7) & 0x0101010101010101ull) * 0x0102040810204080ull) >> 56;
}
static inline uint64_t mask8(uint64_t w, char c)
{
    const uint64_t lo7 = 0x7F7F7F7F7F7F7F7Full;
    w ^= 0x0101010101010101ull * (unsigned char)c;
    return top_bits(~(((w & lo7) + lo7) | w | lo7));   /* 0x80 where the byte was c */
}
static inline void classify64(const char *p, char sep, uint64_t *ms, uint64_t *mq, uint64_t *mh)
{
    uint64_t s = 0, q = 0, h = 0;
    for (int k = 0; k < 8; k++) {
        uint64_t w;
        memcpy(&w, p + 8 * k, 8);
        s |= mask8(w, sep) << (8 * k);
        q |= mask8(w, '"') << (8 * k);
        h |= top_bits(w) << (8 * k);
    }
    *ms = s, *mq = q, *mh = h;
}
#endif

static int grow_fields(tb_reader *R)
{
    int cap = R->fcap ? 2 * R->fcap : 64;
    char **f = realloc(R->f, (size_t)cap * sizeof *f);
    if (f) R->f = f;
    size_t *l = f ? realloc(R->flen, (size_t)cap * sizeof *l) : NULL;
    if (l) R->flen = l;
    size_t *o = l ? realloc(R->off, (size_t)cap * sizeof *o) : NULL;
    if (!o) return -1;
    R->off = o;
    R->fcap = cap;
    return 0;
}

/* A line split on a one-byte separator in one pass over blocks of 64 bytes, each classified at
 * once: its separators (every field cut from the bit mask), its quotes (a line with one, when
 * quoting, goes to the quote-aware split: 0 is returned, the line untouched) and its bytes over
 * 0x7F (the line is then checked as UTF-8). NULs end the fields once the line is known to split
 * here. 1 split, 0 not here, -1 bad (why), -2 fatal. */
static int split_plain(tb_reader *R, int *nf, char *why, size_t nwhy)
{
    char *b = R->buf, sep = R->t->sep[0], tail[64];
    size_t len = R->len, start = 0;
    int n = 0, checked = R->t->latin1, quoting = R->t->quoting;
    const int ts = R->trim_space, tt = R->trim_tab;
#define TB_TRIM(c) (((c) == ' ' && ts) || ((c) == '\t' && tt))
    for (size_t base = 0;; base += 64) {
        uint64_t ms = 0, mq = 0, mh = 0;
        int last = len - base <= 64;
        if (!last) classify64(b + base, sep, &ms, &mq, &mh);
        else {                                         /* the last bytes: a copy, zero-padded */
            memset(tail, 0, sizeof tail);
            memcpy(tail, b + base, len - base);
            classify64(tail, sep, &ms, &mq, &mh);
            ms &= len - base == 64 ? ~(uint64_t)0 : ((uint64_t)1 << (len - base)) - 1;
            ms |= len - base == 64 ? 0 : (uint64_t)1 << (len - base);   /* the end cuts too */
        }
        if (mq && quoting) return 0;
        if (mh && !checked) {
            if (utf8_check(R, b, len, why, nwhy) < 0) return -1;
            checked = 1;
        }
        while (ms) {                                   /* a field ends at each bit */
            size_t a = start, e = base + (size_t)__builtin_ctzll(ms);
            ms &= ms - 1;
            start = e + 1;
            while (a < e && TB_TRIM(b[a])) a++;
            while (e > a && TB_TRIM(b[e - 1])) e--;
            if (n == R->fcap && grow_fields(R) < 0) { snprintf(why, nwhy, "out of memory"); return -2; }
            R->f[n] = b + a;
            R->flen[n++] = e - a;
        }
        if (last) break;
    }
    if (start <= len) {                   /* a line of 64 k bytes: its last field ends here */
        size_t a = start, e = len;
        while (a < e && TB_TRIM(b[a])) a++;
        while (e > a && TB_TRIM(b[e - 1])) e--;
        if (n == R->fcap && grow_fields(R) < 0) { snprintf(why, nwhy, "out of memory"); return -2; }
        R->f[n] = b + a;
        R->flen[n++] = e - a;
    }
#undef TB_TRIM
    for (int i = 0; i < n; i++) R->f[i][R->flen[i]] = 0;   /* at or before its separator */
    *nf = n;
    return 1;
}

static inline int is_trim(const tb_reader *R, char c)
{
    return (c == ' ' && R->trim_space) || (c == '\t' && R->trim_tab);
}

static int split_record(tb_reader *R, int *nf, char *why, size_t nwhy);

/* The next record split into fields: 1, 0 at the end, -1 a bad record (why), -2 fatal (why). */
int tb_record_next(tb_reader *R, int *nf, char *why, size_t nwhy)
{
    int rc;
    for (;;) {
        R->reclen = 0;
        if ((rc = next_line(R, 0, 0, why, nwhy)) <= 0) {
            if (rc != -1) R->line = ts_lines_lineno(R->in) + 1;
            return rc;
        }
        size_t k = 0;
        while (k < R->len && isspace((unsigned char)R->buf[k])) k++;
        if (k < R->len) break;                            /* blank lines carry nothing */
    }
    return split_record(R, nf, why, nwhy);
}

/* One line (stream = true: the line reader is the stream's) split into fields like a record
 * of the file; a quoted field cannot go on over the next line. Latin-1 is converted. */
int tb_record_line(tb_reader *R, char *line, size_t len, long lineno, int *nf, char *why, size_t nwhy)
{
    R->line = lineno;
    R->reclen = 0;
    if (lineno == 1 && len >= 3 && !memcmp(line, "\xEF\xBB\xBF", 3)) line += 3, len -= 3;
    if (R->t->latin1) {
        if (append(R, line, len, 1) < 0) { snprintf(why, nwhy, "out of memory"); return -2; }
        R->buf = R->rec;
        R->len = R->reclen;
    } else {
        R->buf = line;
        R->len = len;
    }
    return split_record(R, nf, why, nwhy);
}

static int split_record(tb_reader *R, int *nf, char *why, size_t nwhy)
{
    int rc;
    if (R->seplen == 1 && (rc = split_plain(R, nf, why, nwhy)) != 0) return rc;
    if (!R->t->latin1 && utf8_check(R, R->buf, R->len, why, nwhy) < 0) return -1;
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
                if (rd == R->len && !R->in) {
                    snprintf(why, nwhy, "field %d opens a quote that the line does not close; "
                             "stream = true reads one record a line (a quoted field over several "
                             "lines needs stream = false)", n + 1);
                    return -1;
                }
                if (rd == R->len) {                        /* the field goes on on the next line */
                    if (R->buf != R->rec) { R->reclen = 0; if (append(R, R->buf, R->len, 0) < 0) goto big; }
                    if (append(R, "\n", 1, 0) < 0) goto big;
                    rc = next_line(R, 1, 1, why, nwhy);
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
static inline uint64_t load8(const char *s) { uint64_t w; memcpy(&w, s, 8); return w; }
static inline uint64_t load4(const char *s) { uint32_t w; memcpy(&w, s, 4); return w; }

/* The first 16 bytes of s[0..n), zero-padded, from loads inside s[0..n) (overlapping ones for
 * the last bytes: no loop over bytes, nothing read past the value). */
static inline void prefix16(const char *s, size_t n, uint64_t w[2])
{
    if (n >= 16) { w[0] = load8(s); w[1] = load8(s + 8); return; }
    w[1] = 0;
    if (n >= 8) { w[0] = load8(s); if (n > 8) w[1] = load8(s + n - 8) >> (8 * (16 - n)); }
    else if (n >= 4) w[0] = load4(s) | (load4(s + n - 4) >> (8 * (8 - n))) << 32;
    else {
        w[0] = 0;
        for (size_t i = 0; i < n; i++) w[0] |= (uint64_t)(unsigned char)s[i] << (8 * i);
    }
}

/* The hash of a value from its prefix words, and its further bytes eight at a time. */
static inline uint32_t value_hash(const char *s, size_t n, const uint64_t w[2])
{
    const uint64_t k = 0x9E3779B97F4A7C15ull;
    uint64_t h = (w[0] ^ (0x243F6A8885A308D3ull + n)) * k;
    h = (h ^ (h >> 29) ^ w[1]) * k;
    for (size_t i = 16; i < n; i += 8) {
        h = (h ^ (h >> 29) ^ load8(s + (i + 8 <= n ? i : n - 8))) * k;
    }
    return (uint32_t)(h >> 32) ^ (uint32_t)h;
}

int32_t tb_intern(tb_data *T, int src, const char *s, size_t n)
{
    tb_src *c = &T->src[src];
    uint64_t w[2];
    prefix16(s, n, w);
    uint32_t h = value_hash(s, n, w);
    if (c->cache)
        for (uint32_t j = h & c->cmask; c->cache[j].id >= 0; j = (j + 1) & c->cmask) {
            const tb_slot *o = &c->cache[j];
            if (o->w[0] == w[0] && o->w[1] == w[1] && o->n == n &&
                (n <= 16 || !memcmp(c->cs[o->id] + 16, s + 16, n - 16)))
                return o->id;
        }
    int32_t id = ts_strtab_id(T->strs, src, s, n, 1);
    if (id < 0) return id;
    if (id != (int32_t)c->cn) return -2;             /* every new value passes through here */
    if (!c->cache || 2 * (c->cn + 1) > c->cmask + 1) {    /* grow: keep the load under 1/2 */
        uint32_t cap = c->cache ? 2 * (c->cmask + 1) : 16;
        tb_slot *nc = malloc(cap * sizeof *nc);
        const char **ns = nc ? realloc(c->cs, cap / 2 * sizeof *ns) : NULL;
        if (ns) c->cs = ns;
        if (!ns) { free(nc); return -2; }
        for (uint32_t j = 0; j < cap; j++) nc[j].id = -1;
        for (uint32_t j = 0; c->cache && j <= c->cmask; j++) {
            const tb_slot *o = &c->cache[j];
            if (o->id < 0) continue;
            uint32_t k = value_hash(c->cs[o->id], o->n, o->w) & (cap - 1);
            while (nc[k].id >= 0) k = (k + 1) & (cap - 1);
            nc[k] = *o;
        }
        free(c->cache);
        c->cache = nc;
        c->cmask = cap - 1;
    }
    uint32_t j = h & c->cmask;
    while (c->cache[j].id >= 0) j = (j + 1) & c->cmask;
    c->cache[j] = (tb_slot){{w[0], w[1]}, (uint32_t)n, id};
    c->cs[id] = ts_strtab_str(T->strs, src, id);
    c->cn++;
    return id;
}
