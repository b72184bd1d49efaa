/* config.c — experiment files: parsing with inih (with line numbers, duplicate sections and
 * long lines caught before inih sees them), command-line overrides, typed getters with
 * defaults, unknown-key errors with the nearest known key, and writing the resolved file.
 * It knows nothing of plugins beyond their ts_key lists. */
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
typedef struct parse_state {
    ts_ini *ini;
    const char *text;      /* whole file */
    size_t pos;
    int line;              /* line last handed to inih */
    int line_indented;     /* it began with white space: a continuation line */
    ts_cfg *cur;
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
    size_t k = n < (size_t)num - 1 ? n : (size_t)num - 1;   /* prescan guarantees n fits */
    memcpy(str, s, k);
    str[k] = 0;
    ps->pos += n;
    ps->line++;
    ps->line_indented = (s[0] == ' ' || s[0] == '\t');
    return str;
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
    ts_entry *en = ts_cfg_entry(c, name);
    if (en && ps->line_indented && ps->cur == c) {
        /* a continuation line of a long value: join with ", " */
        size_t a = strlen(en->value), b = strlen(value);
        char *v = realloc(en->value, a + b + 3);
        if (!v) return 0;
        memcpy(v + a, ", ", 2);
        memcpy(v + a + 2, value, b + 1);
        en->value = v;
        return 1;
    }
    if (en) {
        ps->failed = 1;
        ts_fail(ps->e, "%s:%d: [%s] %s is set twice (first on line %d); keep one of the two",
                ps->ini->file, ps->line, sec, name, en->line);
        return 0;
    }
    ps->cur = c;
    return add_entry(c, name, value, ps->line) != NULL;
}

/* Before inih: catch what Debian's inih r55 gets wrong silently (two sections of one name
 * merge) or reports badly (a line over its limit), and record every section's line. */
static int prescan(ts_ini *ini, const char *text, ts_err *e)
{
    int line = 0;
    for (const char *s = text; *s;) {
        const char *nl = strchr(s, '\n');
        size_t n = nl ? (size_t)(nl - s) : strlen(s);
        line++;
        if (n > INI_LINE_LIMIT)
            return ts_fail(e, "%s:%d: line is %zu bytes long; the INI reader takes at most %d. "
                           "Continue a long value on indented lines below the key",
                           ini->file, line, n, INI_LINE_LIMIT);
        char buf[INI_LINE_LIMIT + 2];
        memcpy(buf, s, n);
        buf[n] = 0;
        trim(buf);
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
            if (!add_section(ini, name, line)) return ts_fail(e, "out of memory");
        }
        s += n + (nl ? 1 : 0);
    }
    return 0;
}

static int parse_text(ts_ini *ini, const char *text, ts_err *e)
{
    if (prescan(ini, text, e)) return -1;
    parse_state ps = {.ini = ini, .text = text, .e = e};
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
    return parse_text(ini, text, e);
}

int ts_ini_load(ts_ini *ini, const char *path, ts_err *e)
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

int ts_ini_override(ts_ini *ini, const char *assign, ts_err *e)
{
    const char *eq = strchr(assign, '=');
    const char *dot = eq ? memchr(assign, '.', (size_t)(eq - assign)) : NULL;
    if (!eq || !dot)
        return ts_fail(e, "command line: '%s' is not an override; write SECTION.KEY=VALUE, "
                       "e.g. train.epochs=3 or layer.q_conv.filters=300", assign);
    /* The key is what follows the last dot before '='; the section is everything before. */
    const char *last = dot;
    for (const char *p = dot; p < eq; p++)
        if (*p == '.') last = p;
    char section[2 * TS_NAME_MAX], key[TS_NAME_MAX], value[4096];
    snprintf(section, sizeof section, "%.*s", (int)(last - assign), assign);
    snprintf(key, sizeof key, "%.*s", (int)(eq - last - 1), last + 1);
    snprintf(value, sizeof value, "%s", eq + 1);
    trim(section); trim(key); trim(value);
    ts_cfg *c = ts_ini_find(ini, section);
    if (!c) {
        /* Layers and heads must be described in the file; the fixed sections may be added. */
        if (strchr(section, '.'))
            return ts_fail(e, "command line: '%s' names section [%s], which %s does not have",
                           assign, section, ini->file);
        c = add_section(ini, section, 0);
        if (!c) return ts_fail(e, "out of memory");
    }
    ts_entry *en = ts_cfg_entry(c, key);
    if (en) {
        free(en->value);
        en->value = xstrdup(value);
        en->line = 0;
        return 0;
    }
    return add_entry(c, key, value, 0) ? 0 : ts_fail(e, "out of memory");
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
    memset(ini, 0, sizeof *ini);
}

int ts_ini_write(const ts_ini *ini, const char *path, ts_err *e)
{
    size_t cap = 4096, n = 0;
    char *out = malloc(cap);
    if (!out) return ts_fail(e, "out of memory");
#define EMIT(...) do { \
        int k_ = snprintf(out + n, cap - n, __VA_ARGS__); \
        while ((size_t)k_ >= cap - n) { cap *= 2; out = realloc(out, cap); \
            k_ = snprintf(out + n, cap - n, __VA_ARGS__); } \
        n += (size_t)k_; } while (0)
    EMIT("; resolved configuration of %s: file values, command-line overrides and defaults\n",
         ini->file);
    for (int i = 0; i < ini->nsec; i++) {
        const ts_cfg *c = &ini->sec[i];
        EMIT("\n[%s]\n", c->name);
        for (int j = 0; j < c->n; j++) EMIT("%s = %s\n", c->ent[j].key, c->ent[j].value);
        for (int l = 0; l < 4; l++)
            for (const ts_key *k = c->keys[l]; k && k->key; k++)
                if (k->def && !ts_cfg_entry(c, k->key)) EMIT("%s = %s ; default\n", k->key, k->def);
    }
#undef EMIT
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
        if (c->ent[i].line) snprintf(where, sizeof where, "%s:%d", c->file, c->ent[i].line);
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
    if (en && en->line) snprintf(m->where, sizeof m->where, "%s:%d", c->file, en->line);
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
