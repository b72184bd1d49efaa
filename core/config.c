/* config.c — experiment files: parsing with inih (with line numbers, duplicate sections and
 * long lines caught before inih sees them, continuation lines read from the file's own text:
 * list lines joined with ", ", raw lines joined as they are), command-line overrides (refusing
 * what no INI file can hold), typed getters with defaults, unknown-key errors with the nearest
 * known key, and writing the resolved file so that it reads back the same (docs/ini.md).
 * `extends = BASE.ini` lays a variant over its base. It knows nothing of plugins beyond their
 * ts_key lists. */
#define _DEFAULT_SOURCE   /* realpath */
#include "internal.h"

#include <ctype.h>
#include <strings.h>
#include <errno.h>
#include <ini.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define INI_LINE_LIMIT 199   /* Debian's libinih (r55) reads at most INI_MAX_LINE - 1 bytes */
#define INI_SECTION_LIMIT 49 /* and keeps MAX_SECTION - 1 bytes of a section name: a longer one
                                would be cut and its keys land in a section of the cut name */

static char *xstrdup(const char *s)
{
    size_t n = strlen(s) + 1;
    char *d = malloc(n);
    if (d) memcpy(d, s, n);
    return d;
}

static void trim(char *s)
{
    size_t n = strlen(s);
    while (n && isspace((unsigned char)s[n - 1])) s[--n] = 0;
    size_t k = 0;
    while (s[k] && isspace((unsigned char)s[k])) k++;
    if (k) memmove(s, s + k, n - k + 1);
}

ts_cfg *ts_ini_find(ts_ini *ini, const char *section)
{
    for (int i = 0; i < ini->nsec; i++)
        if (!strcmp(ini->sec[i].name, section)) return &ini->sec[i];
    return NULL;
}

static ts_cfg *add_section(ts_ini *ini, const char *name, int line)
{
    if (ini->nsec == ini->cap) {
        int cap = ini->cap ? 2 * ini->cap : 16;
        ts_cfg *s = realloc(ini->sec, (size_t)cap * sizeof *s);
        if (!s) return NULL;
        ini->sec = s;
        ini->cap = cap;
    }
    ts_cfg *c = &ini->sec[ini->nsec++];
    memset(c, 0, sizeof *c);
    snprintf(c->name, sizeof c->name, "%s", name);
    c->file = ini->file;
    c->line = line;
    return c;
}

ts_entry *ts_cfg_entry(const ts_cfg *c, const char *key)
{
    for (int i = 0; i < c->n; i++)
        if (!strcmp(c->ent[i].key, key)) return &c->ent[i];
    return NULL;
}

static ts_entry *add_entry(ts_cfg *c, const char *key, const char *value, int line)
{
    if (c->n == c->cap) {
        int cap = c->cap ? 2 * c->cap : 8;
        ts_entry *n = realloc(c->ent, (size_t)cap * sizeof *n);
        if (!n) return NULL;
        c->ent = n;
        c->cap = cap;
    }
    ts_entry *en = &c->ent[c->n++];
    memset(en, 0, sizeof *en);
    snprintf(en->key, sizeof en->key, "%s", key);
    en->value = xstrdup(value);
    en->line = line;
    return en->value ? en : NULL;
}

/* ---- parsing ------------------------------------------------------------------------------- */
/* How inih (r55, built with its defaults: multi-line values, ';' and '#' starting a comment line,
 * ';' after white space starting an inline comment, '=' or ':' between a key and its value) sees
 * a line. The pre-scan and the reader both classify lines with it, so they agree with inih, and
 * with each other, on which lines are section headers and which continue a value. */
enum { LINE_BLANK, LINE_COMMENT, LINE_CONT, LINE_SECTION, LINE_KEY, LINE_OTHER };

static int is_blank(char c) { return isspace((unsigned char)c) != 0; }

/* s[0..n) is one line without its '\n'. *have_key is inih's "previous name": set by a key line,
 * cleared by a section header; while it is set, an indented non-blank line continues that key. */
static int classify_line(const char *s, size_t n, int *have_key)
{
    size_t a = 0, b = n;
    while (b > 0 && is_blank(s[b - 1])) b--;
    while (a < b && is_blank(s[a])) a++;
    if (a == b) return LINE_BLANK;
    if (s[a] == ';' || s[a] == '#') return LINE_COMMENT;
    if (*have_key && a > 0) return LINE_CONT;
    if (s[a] == '[') {
        for (size_t i = a + 1; i < b; i++) {
            if (s[i] == ']') { *have_key = 0; return LINE_SECTION; }
            if (s[i] == ';' && is_blank(s[i - 1])) break;   /* an inline comment first */
        }
        return LINE_OTHER;   /* inih reports it */
    }
    for (size_t i = a; i < b; i++) {
        if (s[i] == '=' || s[i] == ':') { *have_key = 1; return LINE_KEY; }
        if (s[i] == ';' && i > a && is_blank(s[i - 1])) break;
    }
    return LINE_OTHER;
}

typedef struct parse_state {
    ts_ini *ini;
    const char *text;      /* whole file, after a UTF-8 byte order mark */
    size_t pos;
    int line;              /* line last handed to inih */
    const char *ltext;     /* that line as it is in the file, without its '\n' */
    size_t llen;
    int kind;              /* its LINE_* */
    int have_key;          /* classify_line's state */
    int last_sec, last_ent; /* the entry of the last key line (inih passes continuation
                               lines under its name cut at 49 bytes, so it is not looked up) */
    ts_err *e;
    int failed;
} parse_state;

static char *reader(char *str, int num, void *stream)
{
    parse_state *ps = stream;
    if (!ps->text[ps->pos]) return NULL;
    const char *s = ps->text + ps->pos;
    const char *nl = strchr(s, '\n');
    size_t n = nl ? (size_t)(nl - s + 1) : strlen(s);
    /* The pre-scan let through only comment and blank lines longer than inih's buffer: cut
     * them, which leaves them comments (or blank). */
    size_t k = n < (size_t)num - 1 ? n : (size_t)num - 1;
    memcpy(str, s, k);
    str[k] = 0;
    ps->pos += n;
    ps->line++;
    ps->ltext = s;
    ps->llen = nl ? n - 1 : n;
    ps->kind = classify_line(ps->ltext, ps->llen, &ps->have_key);
    return str;
}

/* An indented line that would continue a list but reads as `key = value` (an identifier, maybe
 * blanks, '='): almost always a key indented by mistake, which would add "units", "=", "16" to
 * the list above it. */
static int looks_like_key(const char *s)
{
    if (!isalpha((unsigned char)*s) && *s != '_') return 0;
    while (isalnum((unsigned char)*s) || *s == '_') s++;
    while (*s == ' ' || *s == '\t') s++;
    return *s == '=';
}

/* A continuation line of en's value, read from the file's own text (not inih's copy, so inih's
 * handling of comments on continuation lines does not matter). docs/ini.md: a line starting with
 * '\' appends its text as is (raw), any other appends a list item after ", ". */
static int continue_value(parse_state *ps, ts_cfg *c, ts_entry *en)
{
    const char *s = ps->ltext, *end = ps->ltext + ps->llen;
    while (end > s && is_blank(end[-1])) end--;
    while (s < end && is_blank(*s)) s++;
    const char *sep = "";
    if (*s == '\\') {
        s++;
        if (end > s && end[-1] == '\\') end--;    /* the end marker: keeps what is before it */
    } else {
        if (looks_like_key(s) || *s == '[') {
            ps->failed = 1;
            size_t show = (size_t)(end - s) < 60 ? (size_t)(end - s) : 60;
            return ts_fail(ps->e, "%s:%d: the indented line '%.*s%s' would continue [%s] %s "
                           "(line %d) as more list items; remove the indentation to make it %s "
                           "of its own", ps->ini->file, ps->line, (int)show, s,
                           show < (size_t)(end - s) ? "..." : "", c->name, en->key, en->line,
                           *s == '[' ? "a section header" : "a key"), 0;
        }
        for (const char *p = s + 1; p < end; p++)       /* an inline comment, as on a key line */
            if (*p == ';' && is_blank(p[-1])) {
                end = p;
                break;
            }
        while (end > s && is_blank(end[-1])) end--;
        if (*en->value) sep = ", ";
    }
    size_t a = strlen(en->value), b = (size_t)(end - s), k = strlen(sep);
    char *v = realloc(en->value, a + k + b + 1);
    if (!v) {
        ps->failed = 1;
        return ts_fail(ps->e, "out of memory"), 0;
    }
    memcpy(v + a, sep, k);
    memcpy(v + a + k, s, b);
    v[a + k + b] = 0;
    en->value = v;
    return 1;
}

static int handler(void *user, const char *section, const char *name, const char *value)
{
    parse_state *ps = user;
    if (ps->failed) return 0;
    if (!*section) {
        ps->failed = 1;
        ts_fail(ps->e, "%s:%d: key '%s' comes before any [section]; put it under the section it "
                "belongs to (e.g. [experiment])", ps->ini->file, ps->line, name);
        return 0;
    }
    /* inih keeps the spaces inside the brackets; prescan recorded "[ data ]" as "data" */
    char sec[2 * TS_NAME_MAX];
    snprintf(sec, sizeof sec, "%s", section);
    trim(sec);
    ts_cfg *c = ts_ini_find(ps->ini, sec);
    if (!c) {  /* cannot happen after prescan, but stay safe */
        c = add_section(ps->ini, sec, ps->line);
        if (!c) return 0;
    }
    if (ps->kind == LINE_CONT && ps->last_sec >= 0 && &ps->ini->sec[ps->last_sec] == c)
        return continue_value(ps, c, &c->ent[ps->last_ent]);
    ts_entry *en = ts_cfg_entry(c, name);
    if (en) {
        ps->failed = 1;
        ts_fail(ps->e, "%s:%d: [%s] %s is set twice (first on line %d); keep one of the two",
                ps->ini->file, ps->line, sec, name, en->line);
        return 0;
    }
    if (!add_entry(c, name, value, ps->line)) return 0;
    ps->last_sec = (int)(c - ps->ini->sec);
    ps->last_ent = c->n - 1;
    return 1;
}

/* Before inih: catch what Debian's inih r55 gets wrong silently (two sections of one name
 * merge) or reports badly (a line over its limit), and record every section's line. */
static int prescan(ts_ini *ini, const char *text, ts_err *e)
{
    int line = 0, have_key = 0;
    for (const char *s = text; *s;) {
        const char *nl = strchr(s, '\n');
        size_t n = nl ? (size_t)(nl - s) : strlen(s);
        line++;
        int kind = classify_line(s, n, &have_key);
        if (n > INI_LINE_LIMIT && kind != LINE_COMMENT && kind != LINE_BLANK)
            return ts_fail(e, "%s:%d: line is %zu bytes long; the INI reader takes at most %d. "
                           "Continue a long value on indented lines below the key (a line "
                           "starting with '\\' joins without \", \", e.g. for a path; "
                           "docs/ini.md)", ini->file, line, n, INI_LINE_LIMIT);
        char buf[INI_LINE_LIMIT + 2];
        if (kind == LINE_SECTION || (kind == LINE_OTHER && n <= INI_LINE_LIMIT)) {
            memcpy(buf, s, n);
            buf[n] = 0;
            trim(buf);
        } else {
            buf[0] = 0;
        }
        if (buf[0] == '[') {
            char *end = strchr(buf, ']');
            if (!end)
                return ts_fail(e, "%s:%d: section header without ']'", ini->file, line);
            *end = 0;
            char *name = buf + 1;
            trim(name);
            if (strlen(name) > INI_SECTION_LIMIT)
                return ts_fail(e, "%s:%d: section name [%s] is %zu bytes long; the INI reader "
                               "keeps at most %d: shorten it", ini->file, line, name,
                               strlen(name), INI_SECTION_LIMIT);
            ts_cfg *c = ts_ini_find(ini, name);
            if (c)
                return ts_fail(e, "%s:%d: section [%s] appears twice (first on line %d); every "
                               "section name must be unique: rename one, e.g. [layer.%s_2]",
                               ini->file, line, name, c->line, name);
            if (kind == LINE_SECTION && !add_section(ini, name, line))
                return ts_fail(e, "out of memory");
        }
        s += n + (nl ? 1 : 0);
    }
    return 0;
}

static int parse_text(ts_ini *ini, const char *text, ts_err *e)
{
    /* A UTF-8 byte order mark: inih skips it on the first line; skipping it here for both the
     * pre-scan and inih keeps them agreeing on whether that line is a section header. */
    if (!strncmp(text, "\xEF\xBB\xBF", 3)) text += 3;
    if (prescan(ini, text, e)) return -1;
    parse_state ps = {.ini = ini, .text = text, .e = e, .last_sec = -1};
    int rc = ini_parse_stream(reader, &ps, handler, &ps);
    if (ps.failed) return -1;
    if (rc > 0)
        return ts_fail(e, "%s:%d: cannot read this line: expected `key = value`, `[section]` or "
                       "a comment starting with ';' or '#'", ini->file, rc);
    if (rc < 0) return ts_fail(e, "%s: the INI reader failed (%d)", ini->file, rc);
    return 0;
}

int ts_ini_load_string(ts_ini *ini, const char *name, const char *text, ts_err *e)
{
    memset(ini, 0, sizeof *ini);
    ini->file = xstrdup(name);
    int rc = parse_text(ini, text, e);
    if (rc) ts_ini_free(ini);
    return rc;
}

static int load_file(ts_ini *ini, const char *path, ts_err *e);

/* ---- extends = BASE.ini ----------------------------------------------------------------------
 * A variant states only what differs: its file is read, then its base (recursively), and the
 * variant's sections and keys are laid over the base's, key by key. Data paths still resolve
 * from the variant's folder (the experiment's), so keep a base beside its variants. */
#define EXTENDS_DEPTH 16

static int load_chain(ts_ini *ini, const char *path, char chain[][TS_PATH_MAX], int depth,
                      ts_err *e);

/* Moves base's sections into ini before ini's own, then lays ini's keys over them. */
static int lay_over(ts_ini *ini, ts_ini *base, ts_err *e)
{
    ts_cfg *own = ini->sec;
    int nown = ini->nsec;
    char **bases = realloc(base->bases, (size_t)(base->nbases + 1) * sizeof *bases);
    if (!bases) return ts_fail(e, "out of memory");
    bases[base->nbases++] = base->file;       /* base's own name: its sections point at it */
    ini->bases = bases;
    ini->nbases = base->nbases;
    ini->sec = base->sec;
    ini->nsec = base->nsec;
    ini->cap = base->cap;
    memset(base, 0, sizeof *base);
    int rc = 0;
    for (int i = 0; i < nown; i++) {
        ts_cfg *c = &own[i], *to = rc ? NULL : ts_ini_find(ini, c->name);
        if (!rc && !to) {                       /* a section of its own: moved as it is */
            if (!(to = add_section(ini, c->name, c->line))) { rc = ts_fail(e, "out of memory"); }
            else { free(to->ent); *to = *c; to->file = ini->file; c->ent = NULL; c->n = 0; continue; }
        }
        for (int j = 0; j < c->n; j++) {
            ts_entry *en = rc ? NULL : ts_cfg_entry(to, c->ent[j].key);
            if (!rc && !en && !(en = add_entry(to, c->ent[j].key, "", 0)))
                rc = ts_fail(e, "out of memory");
            if (!rc) {
                free(en->value);
                en->value = c->ent[j].value;
                en->line = c->ent[j].line;
                en->file = ini->file;
            } else {
                free(c->ent[j].value);
            }
        }
        free(c->ent);
    }
    free(own);
    return rc;
}

static int load_chain(ts_ini *ini, const char *path, char chain[][TS_PATH_MAX], int depth,
                      ts_err *e)
{
    if (load_file(ini, path, e)) return -1;
    ts_cfg *ce = ts_ini_find(ini, "experiment");
    ts_entry *ex = ce ? ts_cfg_entry(ce, "extends") : NULL;
    if (!ex) return 0;
    if (!*ex->value)
        return ts_fail(e, "%s:%d: [experiment] extends is empty: name the experiment file this one "
                       "varies (extends = base.ini, relative to this file)", path, ex->line);
    char base_path[TS_PATH_MAX];
    const char *slash = strrchr(path, '/');
    if (ex->value[0] == '/' || !slash) snprintf(base_path, sizeof base_path, "%s", ex->value);
    else snprintf(base_path, sizeof base_path, "%.*s/%s", (int)(slash - path), path, ex->value);
    char real[TS_PATH_MAX];
    if (!realpath(base_path, real))
        return ts_fail(e, "%s:%d: [experiment] extends = %s: cannot open %s: %s", path, ex->line,
                       ex->value, base_path, strerror(errno));
    for (int i = 0; i <= depth; i++)
        if (!strcmp(chain[i], real))
            return ts_fail(e, "%s:%d: [experiment] extends = %s: a circle (%s extends, through "
                           "its bases, itself); one of the files must not extend another", path,
                           ex->line, ex->value, base_path);
    if (depth + 1 >= EXTENDS_DEPTH)
        return ts_fail(e, "%s:%d: [experiment] extends = %s: more than %d files extend one "
                       "another; flatten the chain", path, ex->line, ex->value, EXTENDS_DEPTH);
    snprintf(chain[depth + 1], TS_PATH_MAX, "%s", real);
    char where[TS_PATH_MAX + 300];
    snprintf(where, sizeof where, "%s:%d: [experiment] extends = %.200s", path, ex->line, ex->value);
    /* drop the key: the merged experiment stands alone (config.ini, identity.txt) */
    free(ex->value);
    *ex = ce->ent[--ce->n];
    ts_ini base;
    if (load_chain(&base, base_path, chain, depth + 1, e)) {
        ts_ini_free(&base);
        if (!strstr(e->msg, "extends =")) {  /* the base itself is unreadable: say who named it */
            char why[sizeof e->msg];
            snprintf(why, sizeof why, "%s", e->msg);
            return ts_fail(e, "%s: %s", where, why);
        }
        return -1;
    }
    return lay_over(ini, &base, e);
}

/* On a failure nothing stays allocated (ts_ini_free is idempotent, so callers may still call it). */
int ts_ini_load(ts_ini *ini, const char *path, ts_err *e)
{
    char (*chain)[TS_PATH_MAX] = malloc(EXTENDS_DEPTH * sizeof *chain);
    if (!chain) { memset(ini, 0, sizeof *ini); return ts_fail(e, "out of memory"); }
    if (!realpath(path, chain[0])) snprintf(chain[0], TS_PATH_MAX, "%s", path);
    int rc = load_chain(ini, path, chain, 0, e);
    free(chain);
    if (rc) ts_ini_free(ini);
    return rc;
}

static int load_file(ts_ini *ini, const char *path, ts_err *e)
{
    memset(ini, 0, sizeof *ini);
    ini->file = xstrdup(path);
    int fd = ts_open_regular(path, "an experiment file", e);
    if (fd < 0)
        return errno ? ts_fail(e, "%s: cannot open the experiment file: %s", path,
                               strerror(errno)) : -1;
    /* Read at most one byte past the limit: a file that keeps growing ends the read there. */
    size_t cap = 1 << 16, n = 0;
    char *text = malloc(cap);
    int err = 0;
    while (text && n <= TS_INI_FILE_LIMIT) {
        if (n + 1 == cap) {
            char *t = realloc(text, cap *= 2);
            if (!t) { free(text); text = NULL; break; }
            text = t;
        }
        ssize_t k = read(fd, text + n, cap - n - 1);
        if (k < 0 && errno == EINTR) continue;
        if (k < 0) { err = errno; break; }
        if (k == 0) break;
        n += (size_t)k;
    }
    close(fd);
    if (!text) return ts_fail(e, "%s: out of memory", path);
    if (err) {
        free(text);
        return ts_fail(e, "%s: read error: %s", path, strerror(err));
    }
    if (n > TS_INI_FILE_LIMIT) {
        free(text);
        return ts_fail(e, "%s: is over %d MiB, too large for an experiment file; is it the "
                       "right file?", path, TS_INI_FILE_LIMIT >> 20);
    }
    text[n] = 0;
    if (strlen(text) != n) {
        free(text);
        return ts_fail(e, "%s: contains a NUL byte; is it a text file?", path);
    }
    int rc = parse_text(ini, text, e);
    free(text);
    return rc;
}

/* ---- what an INI file can hold -------------------------------------------------------------- */
const char *ts_ini_value_problem(const char *value)
{
    if (strpbrk(value, "\n\r"))
        return "holds a line break, which an INI file cannot hold (the run's config.ini must "
               "read back the same); give the value on one line";
    return NULL;
}

const char *ts_ini_name_problem(const char *name, int section)
{
    size_t n = strlen(name);
    if (!n) return section ? "the section name is empty" : "the key is empty";
    if (n > (section ? INI_SECTION_LIMIT : TS_NAME_MAX - 1))
        return section ? "the section name is longer than the 49 bytes the INI reader keeps"
                       : "the key is longer than 63 bytes";
    for (const unsigned char *p = (const unsigned char *)name; *p; p++)
        if (*p < 0x20 || *p == 0x7f || isspace(*p) || strchr("[]=:;#", *p))
            return section ? "a section name cannot hold white space, control characters or "
                             "any of [ ] = : ; #"
                           : "a key cannot hold white space, control characters or any of "
                             "[ ] = : ; #";
    return NULL;
}

int ts_ini_override(ts_ini *ini, const char *assign, ts_err *e)
{
    const char *eq = strchr(assign, '=');
    const char *dot = eq ? memchr(assign, '.', (size_t)(eq - assign)) : NULL;
    if (!eq || !dot)
        return ts_fail(e, "command line: '%.200s' is not an override; write SECTION.KEY=VALUE, "
                       "e.g. train.epochs=3 or layer.q_conv.filters=300", assign);
    /* The key is what follows the last dot before '='; the section is everything before. */
    const char *last = dot;
    for (const char *p = dot; p < eq; p++)
        if (*p == '.') last = p;
    size_t ls = (size_t)(last - assign), lk = (size_t)(eq - last - 1);
    char *section = malloc(ls + 1), *key = malloc(lk + 1), *value = xstrdup(eq + 1);
    int rc = -1;
    if (!section || !key || !value) { ts_fail(e, "out of memory"); goto out; }
    memcpy(section, assign, ls);
    section[ls] = 0;
    memcpy(key, last + 1, lk);
    key[lk] = 0;
    trim(section); trim(key); trim(value);
    const char *why;
    if (!strcmp(section, "experiment") && !strcmp(key, "extends")) {
        ts_fail(e, "command line: experiment.extends cannot be overridden: a file's base is read "
                "with the file; give the variant file instead");
        goto out;
    }
    if ((why = ts_ini_name_problem(section, 1)) || (why = ts_ini_name_problem(key, 0))) {
        ts_fail(e, "command line: '%.*s': %s; write SECTION.KEY=VALUE, e.g. train.epochs=3",
                (int)(eq - assign) < 120 ? (int)(eq - assign) : 120, assign, why);
        goto out;
    }
    if ((why = ts_ini_value_problem(value))) {
        ts_fail(e, "command line: [%s] %s: the value %s", section, key, why);
        goto out;
    }
    ts_cfg *c = ts_ini_find(ini, section);
    if (!c) {
        /* Layers and heads must be described in the file; the fixed sections may be added. */
        if (strchr(section, '.')) {
            ts_fail(e, "command line: '%.*s' names section [%s], which %s does not have",
                    (int)(eq - assign), assign, section, ini->file);
            goto out;
        }
        c = add_section(ini, section, 0);
        if (!c) { ts_fail(e, "out of memory"); goto out; }
    }
    ts_entry *en = ts_cfg_entry(c, key);
    if (en) {
        free(en->value);
        en->value = value;
        value = NULL;
        en->line = 0;
        rc = 0;
    } else {
        rc = add_entry(c, key, value, 0) ? 0 : ts_fail(e, "out of memory");
    }
out:
    free(section);
    free(key);
    free(value);
    return rc;
}

int ts_ini_from_pairs(ts_ini *ini, const char *section, const char *pairs, ts_err *e)
{
    memset(ini, 0, sizeof *ini);
    ini->file = xstrdup("check");
    ts_cfg *c = add_section(ini, section, 0);
    if (!c) return ts_fail(e, "out of memory");
    char *buf = xstrdup(pairs ? pairs : ""), *save = NULL;
    for (char *t = strtok_r(buf, " ", &save); t; t = strtok_r(NULL, " ", &save)) {
        char *eq = strchr(t, '=');
        if (!eq) { free(buf); return ts_fail(e, "check keys: '%s' is not key=value", t); }
        *eq = 0;
        add_entry(c, t, eq + 1, 0);
    }
    free(buf);
    return 0;
}

void ts_ini_free(ts_ini *ini)
{
    for (int i = 0; i < ini->nsec; i++) {
        for (int j = 0; j < ini->sec[i].n; j++) free(ini->sec[i].ent[j].value);
        free(ini->sec[i].ent);
    }
    free(ini->sec);
    free(ini->file);
    for (int i = 0; i < ini->nbases; i++) free(ini->bases[i]);
    free(ini->bases);
    memset(ini, 0, sizeof *ini);
}

/* ---- writing ------------------------------------------------------------------------------- */
typedef struct outbuf {
    char *p;
    size_t n, cap;
    int oom;
} outbuf;

static void put(outbuf *o, const char *s, size_t n)
{
    if (o->oom) return;
    if (o->n + n + 1 > o->cap) {
        size_t cap = o->cap ? o->cap : 4096;
        while (o->n + n + 1 > cap) cap *= 2;
        char *t = realloc(o->p, cap);
        if (!t) { o->oom = 1; return; }
        o->p = t;
        o->cap = cap;
    }
    memcpy(o->p + o->n, s, n);
    o->n += n;
    o->p[o->n] = 0;
}

static void puts_(outbuf *o, const char *s) { put(o, s, strlen(s)); }

/* `key = value` reads back as value when inih's trimming and inline comments leave it alone. */
static int fits_key_line(const char *key, const char *v, size_t extra)
{
    size_t n = strlen(v);
    if (!n || is_blank(v[0]) || is_blank(v[n - 1]) || v[0] == ';') return 0;
    for (size_t i = 1; i < n; i++)
        if (v[i] == ';' && is_blank(v[i - 1])) return 0;
    return strlen(key) + 3 + n + extra <= INI_LINE_LIMIT;
}

#define RAW_INDENT "  \\"          /* a raw continuation line: two blanks, then the marker */
#define RAW_TEXT (INI_LINE_LIMIT - 4) /* bytes of the value per line: the line's marker, and
                                       one byte for a closing '\' */

/* One key: on its own line when it can be, else `key =` and the value on raw continuation lines
 * of at most RAW_TEXT bytes each, cut where no UTF-8 character is split. */
static void put_entry(outbuf *o, const char *key, const char *v, int is_default)
{
    const char *tag = is_default ? " ; default" : "";
    if (fits_key_line(key, v, strlen(tag))) {
        puts_(o, key); puts_(o, " = "); puts_(o, v); puts_(o, tag); puts_(o, "\n");
        return;
    }
    puts_(o, key); puts_(o, " ="); puts_(o, tag); puts_(o, "\n");
    for (size_t n = strlen(v); n;) {
        size_t k = n < RAW_TEXT ? n : RAW_TEXT;
        if (k < n) {   /* v[k] starts the next line: step back to the start of its character */
            size_t back = 0;
            while (back < 4 && back < k && ((unsigned char)v[k - back] & 0xC0) == 0x80) back++;
            if (back < k && ((unsigned char)v[k - back] & 0xC0) != 0x80) k -= back;
        }
        puts_(o, RAW_INDENT);
        put(o, v, k);
        if (is_blank(v[k - 1]) || v[k - 1] == '\\') puts_(o, "\\");   /* keeps the end */
        puts_(o, "\n");
        v += k;
        n -= k;
    }
}

int ts_ini_format(const ts_ini *ini, char **text, size_t *len, ts_err *e)
{
    outbuf o = {0};
    *text = NULL;
    *len = 0;
    /* The comment names the experiment file (tessera export reads it back); a comment line may
     * be longer than the INI reader's line, and a control character would end it. */
    puts_(&o, "; resolved configuration of ");
    for (const char *f = ini->file; *f; f++)
        put(&o, (unsigned char)*f < 0x20 || *f == 0x7f ? "?" : f, 1);
    puts_(&o, ": file values, command-line overrides and defaults\n");
    for (int i = 0; i < ini->nsec; i++) {
        const ts_cfg *c = &ini->sec[i];
        const char *why = ts_ini_name_problem(c->name, 1);
        if (why && (strlen(c->name) > INI_SECTION_LIMIT || strpbrk(c->name, "[]\n\r"))) {
            free(o.p);
            return ts_fail(e, "cannot write the section [%.60s]: %s", c->name, why);
        }
        puts_(&o, "\n["); puts_(&o, c->name); puts_(&o, "]\n");
        for (int j = 0; j < c->n; j++) {
            if ((why = ts_ini_value_problem(c->ent[j].value))) {
                free(o.p);
                return ts_fail(e, "cannot write [%s] %s: the value %s", c->name, c->ent[j].key,
                               why);
            }
            put_entry(&o, c->ent[j].key, c->ent[j].value, 0);
        }
        for (int l = 0; l < 4; l++)
            for (const ts_key *k = c->keys[l]; k && k->key; k++)
                if (k->def && !ts_cfg_entry(c, k->key)) {
                    if ((why = ts_ini_value_problem(k->def))) {
                        free(o.p);
                        return ts_fail(e, "cannot write [%s] %s: its default %s", c->name,
                                       k->key, why);
                    }
                    put_entry(&o, k->key, k->def, 1);
                }
    }
    if (o.oom) {
        free(o.p);
        return ts_fail(e, "out of memory");
    }
    if (o.n > TS_INI_FILE_LIMIT) {
        free(o.p);
        return ts_fail(e, "the resolved configuration of %s would be %zu bytes, over the %d MiB "
                       "an experiment file may have; shorten its longest values", ini->file, o.n,
                       TS_INI_FILE_LIMIT >> 20);
    }
    *text = o.p;
    *len = o.n;
    return 0;
}

int ts_ini_write(const ts_ini *ini, const char *path, ts_err *e)
{
    char *out;
    size_t n;
    if (ts_ini_format(ini, &out, &n, e)) return -1;
    int rc = ts_write_atomic(path, out, n, e);
    free(out);
    return rc;
}

/* ---- validation ---------------------------------------------------------------------------- */
int ts_edit_distance(const char *a, const char *b)
{
    size_t la = strlen(a), lb = strlen(b);
    if (la > 63 || lb > 63) return 99;
    int d[64][64];
    for (size_t i = 0; i <= la; i++) d[i][0] = (int)i;
    for (size_t j = 0; j <= lb; j++) d[0][j] = (int)j;
    for (size_t i = 1; i <= la; i++)
        for (size_t j = 1; j <= lb; j++) {
            int c = d[i - 1][j - 1] + (tolower((unsigned char)a[i - 1]) != tolower((unsigned char)b[j - 1]));
            if (d[i - 1][j] + 1 < c) c = d[i - 1][j] + 1;
            if (d[i][j - 1] + 1 < c) c = d[i][j - 1] + 1;
            d[i][j] = c;
        }
    return d[la][lb];
}

int ts_cfg_validate(ts_cfg *c, const char *const *host_keys, const ts_key *const *lists, int nlists,
                    ts_err *e)
{
    for (int l = 0; l < 4; l++) c->keys[l] = l < nlists ? lists[l] : NULL;
    for (int i = 0; i < c->n; i++) {
        const char *k = c->ent[i].key;
        int known = 0, best = 99;
        const char *near = NULL;
        for (int h = 0; host_keys && host_keys[h]; h++) {
            if (!strcmp(host_keys[h], k)) known = 1;
            int d = ts_edit_distance(k, host_keys[h]);
            if (d < best) { best = d; near = host_keys[h]; }
        }
        for (int l = 0; l < nlists && !known; l++)
            for (const ts_key *kk = lists[l]; kk && kk->key; kk++) {
                if (!strcmp(kk->key, k)) known = 1;
                int d = ts_edit_distance(k, kk->key);
                if (d < best) { best = d; near = kk->key; }
            }
        if (known) { c->ent[i].used = 1; continue; }
        char where[TS_PATH_MAX + 32];
        if (c->ent[i].line)
            snprintf(where, sizeof where, "%s:%d", c->ent[i].file ? c->ent[i].file : c->file,
                     c->ent[i].line);
        else snprintf(where, sizeof where, "command line");
        if (near && best <= 3)
            return ts_fail(e, "%s: unknown key '%s' in [%s]; did you mean '%s'? (`tessera describe` "
                           "lists a plugin's keys)", where, k, c->name, near);
        return ts_fail(e, "%s: unknown key '%s' in [%s]; `tessera describe TYPE` lists the keys "
                       "this section accepts", where, k, c->name);
    }
    for (int l = 0; l < nlists; l++)
        for (const ts_key *kk = lists[l]; kk && kk->key; kk++)
            if (!kk->def && !ts_cfg_entry(c, kk->key))
                return ts_fail(e, "%s:%d: [%s] needs the key '%s' (%s)", c->file, c->line,
                               c->name, kk->key, kk->help ? kk->help : kk->type);
    return 0;
}

/* ---- getters ------------------------------------------------------------------------------- */
const char *ts_cfg_section(const ts_cfg *c) { return c->name; }

const char *ts_cfg_str(const ts_cfg *c, const char *key)
{
    ts_entry *en = ts_cfg_entry(c, key);
    if (en) return en->value;
    for (int l = 0; l < 4; l++)
        for (const ts_key *k = c->keys[l]; k && k->key; k++)
            if (!strcmp(k->key, key)) return k->def;
    return NULL;
}

const char *ts_cfg_where(const ts_cfg *c, const char *key)
{
    ts_cfg *m = (ts_cfg *)c;   /* the scratch buffer is the only thing written */
    ts_entry *en = key ? ts_cfg_entry(c, key) : NULL;
    if (en && en->line)
        snprintf(m->where, sizeof m->where, "%s:%d", en->file ? en->file : c->file, en->line);
    else if (en) snprintf(m->where, sizeof m->where, "command line");
    else snprintf(m->where, sizeof m->where, "%s:%d", c->file, c->line);
    return m->where;
}

static int need(const ts_cfg *c, const char *key, const char **v, ts_err *e)
{
    *v = ts_cfg_str(c, key);
    if (!*v) return ts_fail(e, "%s: [%s] needs the key '%s'", ts_cfg_where(c, NULL), c->name, key);
    return 0;
}

int ts_cfg_int(const ts_cfg *c, const char *key, long *out, ts_err *e)
{
    const char *v;
    if (need(c, key, &v, e)) return -1;
    char *end;
    errno = 0;
    long x = strtol(v, &end, 10);
    while (*end == ' ') end++;
    if (errno || end == v || *end)
        return ts_fail(e, "%s: [%s] %s = '%s' is not a whole number", ts_cfg_where(c, key),
                       c->name, key, v);
    *out = x;
    return 0;
}

int ts_cfg_float(const ts_cfg *c, const char *key, double *out, ts_err *e)
{
    const char *v;
    if (need(c, key, &v, e)) return -1;
    char *end;
    errno = 0;
    double x = strtod(v, &end);
    while (*end == ' ') end++;
    if (errno || end == v || *end || !isfinite(x))
        return ts_fail(e, "%s: [%s] %s = '%s' is not a finite number", ts_cfg_where(c, key),
                       c->name, key, v);
    *out = x;
    return 0;
}

int ts_cfg_bool(const ts_cfg *c, const char *key, int *out, ts_err *e)
{
    const char *v;
    if (need(c, key, &v, e)) return -1;
    static const char *yes[] = {"true", "1", "yes", "on"}, *no[] = {"false", "0", "no", "off"};
    for (int i = 0; i < 4; i++) {
        if (!strcasecmp(v, yes[i])) { *out = 1; return 0; }
        if (!strcasecmp(v, no[i])) { *out = 0; return 0; }
    }
    return ts_fail(e, "%s: [%s] %s = '%s' is not true or false", ts_cfg_where(c, key), c->name,
                   key, v);
}

int ts_cfg_list(const ts_cfg *c, const char *key, char items[][TS_NAME_MAX], int max, int *n,
                ts_err *e)
{
    const char *v;
    *n = 0;
    if (need(c, key, &v, e)) return -1;
    for (const char *s = v; *s;) {
        while (*s == ',' || isspace((unsigned char)*s)) s++;
        if (!*s) break;
        const char *t = s;
        while (*t && *t != ',' && !isspace((unsigned char)*t)) t++;
        if (*n == max)
            return ts_fail(e, "%s: [%s] %s lists more than %d items", ts_cfg_where(c, key),
                           c->name, key, max);
        if (t - s >= TS_NAME_MAX)
            return ts_fail(e, "%s: [%s] %s: '%.*s' is longer than %d bytes", ts_cfg_where(c, key),
                           c->name, key, (int)(t - s), s, TS_NAME_MAX - 1);
        snprintf(items[*n], TS_NAME_MAX, "%.*s", (int)(t - s), s);
        (*n)++;
        s = t;
    }
    return 0;
}

int ts_cfg_floats(const ts_cfg *c, const char *key, double *out, int max, int *n, ts_err *e)
{
    char items[64][TS_NAME_MAX];
    if (max > 64) max = 64;
    if (ts_cfg_list(c, key, items, max, n, e)) return -1;
    for (int i = 0; i < *n; i++) {
        char *end;
        out[i] = strtod(items[i], &end);
        if (end == items[i] || *end || !isfinite(out[i]))
            return ts_fail(e, "%s: [%s] %s: '%s' is not a number", ts_cfg_where(c, key), c->name,
                           key, items[i]);
    }
    return 0;
}

int ts_cfg_choice(const ts_cfg *c, const char *key, const char *choices, int *out, ts_err *e)
{
    const char *v;
    if (need(c, key, &v, e)) return -1;
    int i = 0;
    for (const char *s = choices; *s; i++) {
        const char *t = strchr(s, '|');
        size_t n = t ? (size_t)(t - s) : strlen(s);
        if (strlen(v) == n && !strncmp(v, s, n)) { *out = i; return 0; }
        s += n + (t ? 1 : 0);
    }
    return ts_fail(e, "%s: [%s] %s = '%s' is not one of %s", ts_cfg_where(c, key), c->name, key,
                   v, choices);
}
