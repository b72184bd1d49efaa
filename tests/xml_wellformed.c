/* xml_wellformed.c — checks that files are well-formed XML (the SVG figures of a report), so the
 * tests need no XML tool the build does not already install. Usage: xml_wellformed FILE...;
 * exit status 0 when every file is, 1 with "FILE:LINE: why" for the first fault of each other.
 * What it checks: UTF-8, one root element, every tag closed in order, attributes quoted with
 * no '<' and no name twice, every '&' a reference, comments, processing instructions, CDATA and a
 * DOCTYPE (with an internal subset) skipped whole. What it is not: a validator against a DTD.
 * Test code only. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct doc {
    const char *s, *p, *end, *file;
    const char *why;
} doc;

static int line_of(const doc *d)
{
    int n = 1;
    for (const char *c = d->s; c < d->p; c++) n += *c == '\n';
    return n;
}

static int bad(doc *d, const char *why)
{
    if (!d->why) d->why = why;
    return -1;
}

static int valid_utf8(const unsigned char *p, size_t n)
{
    for (size_t i = 0; i < n;) {
        unsigned c = p[i];
        size_t k = c < 0x80 ? 1 : (c >> 5) == 6 ? 2 : (c >> 4) == 14 ? 3 : (c >> 3) == 30 ? 4 : 0;
        if (!k || i + k > n || (k == 2 && c < 0xc2)) return 0;
        for (size_t j = 1; j < k; j++)
            if ((p[i + j] & 0xc0) != 0x80) return 0;
        i += k;
    }
    return 1;
}

static int name_start(char c) { return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_' || c == ':' || (unsigned char)c >= 0x80; }
static int name_char(char c) { return name_start(c) || (c >= '0' && c <= '9') || c == '-' || c == '.'; }

static size_t name_len(const char *p, const char *end)
{
    size_t n = 0;
    if (p >= end || !name_start(*p)) return 0;
    while (p + n < end && name_char(p[n])) n++;
    return n;
}

static void skip_space(doc *d)
{
    while (d->p < d->end && strchr(" \t\r\n", *d->p)) d->p++;
}

/* &name; &#123; &#x1F; at d->p (which is '&'). */
static int reference(doc *d)
{
    const char *p = d->p + 1;
    if (p < d->end && *p == '#') {
        p++;
        int hex = p < d->end && *p == 'x';
        p += hex;
        const char *digits = p;
        while (p < d->end && strchr(hex ? "0123456789abcdefABCDEF" : "0123456789", *p)) p++;
        if (p == digits) return bad(d, "'&#' without digits");
    } else {
        size_t n = name_len(p, d->end);
        if (!n) return bad(d, "'&' that starts no reference (write &amp;)");
        p += n;
    }
    if (p >= d->end || *p != ';') return bad(d, "a reference without ';'");
    d->p = p + 1;
    return 0;
}

/* Skips to just past the text `to`; -1 when it never comes. */
static int skip_past(doc *d, const char *to, const char *what)
{
    const char *q = d->p;
    size_t n = strlen(to);
    while (q + n <= d->end && memcmp(q, to, n)) q++;
    if (q + n > d->end) return bad(d, what);
    d->p = q + n;
    return 0;
}

/* <!DOCTYPE ...> with an optional [internal subset]. */
static int doctype(doc *d)
{
    int depth = 0;
    for (; d->p < d->end; d->p++) {
        if (*d->p == '[') depth++;
        else if (*d->p == ']') depth--;
        else if (*d->p == '>' && !depth) { d->p++; return 0; }
    }
    return bad(d, "an unclosed DOCTYPE");
}

/* The attributes of a start tag, up to '>' or '/>'; *empty = 1 for '/>'. */
static int attributes(doc *d, int *empty)
{
    const char *names[256];
    size_t lens[256];
    int na = 0;
    for (;;) {
        const char *before = d->p;
        skip_space(d);
        if (d->p >= d->end) return bad(d, "an unclosed tag");
        if (*d->p == '>') { d->p++; *empty = 0; return 0; }
        if (*d->p == '/') {
            if (d->p + 1 >= d->end || d->p[1] != '>') return bad(d, "'/' not followed by '>'");
            d->p += 2;
            *empty = 1;
            return 0;
        }
        if (d->p == before) return bad(d, "attributes without space between them");
        size_t n = name_len(d->p, d->end);
        if (!n) return bad(d, "a bad attribute name");
        for (int i = 0; i < na; i++)
            if (lens[i] == n && !memcmp(names[i], d->p, n)) return bad(d, "an attribute given twice");
        if (na < 256) { names[na] = d->p; lens[na++] = n; }
        d->p += n;
        skip_space(d);
        if (d->p >= d->end || *d->p != '=') return bad(d, "an attribute without '='");
        d->p++;
        skip_space(d);
        if (d->p >= d->end || (*d->p != '"' && *d->p != '\'')) return bad(d, "an unquoted attribute value");
        char q = *d->p++;
        while (d->p < d->end && *d->p != q) {
            if (*d->p == '<') return bad(d, "'<' in an attribute value");
            if (*d->p == '&') { if (reference(d)) return -1; }
            else d->p++;
        }
        if (d->p >= d->end) return bad(d, "an unclosed attribute value");
        d->p++;
    }
}

static int check(doc *d)
{
    const char *stack[4096];
    size_t slen[4096];
    int depth = 0, roots = 0;
    while (d->p < d->end) {
        if (*d->p == '&') { if (reference(d)) return -1; continue; }
        if (*d->p != '<') {
            if (!depth && !strchr(" \t\r\n", *d->p)) return bad(d, "text outside the root element");
            d->p++;
            continue;
        }
        if (!strncmp(d->p, "<!--", 4)) { if (skip_past(d, "-->", "an unclosed comment")) return -1; continue; }
        if (!strncmp(d->p, "<![CDATA[", 9)) {
            if (!depth) return bad(d, "CDATA outside the root element");
            if (skip_past(d, "]]>", "an unclosed CDATA section")) return -1;
            continue;
        }
        if (!strncmp(d->p, "<?", 2)) { if (skip_past(d, "?>", "an unclosed processing instruction")) return -1; continue; }
        if (!strncmp(d->p, "<!DOCTYPE", 9)) { if (roots || doctype(d)) return bad(d, "a misplaced DOCTYPE"); continue; }
        if (d->p + 1 < d->end && d->p[1] == '/') {
            d->p += 2;
            size_t n = name_len(d->p, d->end);
            if (!depth || n != slen[depth - 1] || memcmp(d->p, stack[depth - 1], n))
                return bad(d, "an end tag that closes no open element of its name");
            depth--;
            d->p += n;
            skip_space(d);
            if (d->p >= d->end || *d->p != '>') return bad(d, "an end tag without '>'");
            d->p++;
            continue;
        }
        d->p++;
        size_t n = name_len(d->p, d->end);
        if (!n) return bad(d, "'<' that starts no tag (write &lt;)");
        if (!depth && roots++) return bad(d, "a second root element");
        if (depth == 4096) return bad(d, "elements nested too deep");
        const char *name = d->p;
        d->p += n;
        int empty;
        if (attributes(d, &empty)) return -1;
        if (!empty) { stack[depth] = name; slen[depth++] = n; }
    }
    if (depth) return bad(d, "an element left open at the end");
    if (!roots) return bad(d, "no root element");
    return 0;
}

int main(int argc, char **argv)
{
    int rc = 0;
    for (int i = 1; i < argc; i++) {
        FILE *f = fopen(argv[i], "rb");
        if (!f) { fprintf(stderr, "%s: cannot open\n", argv[i]); rc = 1; continue; }
        char *s = NULL;
        size_t n = 0, cap = 0, k;
        char buf[65536];
        while ((k = fread(buf, 1, sizeof buf, f)) > 0) {
            if (n + k > cap) {
                cap = (n + k) * 2;
                char *t = realloc(s, cap);
                if (!t) { fprintf(stderr, "out of memory\n"); return 2; }
                s = t;
            }
            memcpy(s + n, buf, k);
            n += k;
        }
        fclose(f);
        doc d = {s ? s : "", s ? s : "", (s ? s : "") + n, argv[i], NULL};
        if (!valid_utf8((const unsigned char *)d.s, n)) d.why = "bytes that are not UTF-8";
        else check(&d);
        if (d.why) {
            fprintf(stderr, "%s:%d: not well-formed XML: %s\n", argv[i], line_of(&d), d.why);
            rc = 1;
        }
        free(s);
    }
    return rc;
}
