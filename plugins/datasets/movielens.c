/* movielens.c — MovieLens as next-watch prediction for candidate generation (the YouTube DNN
 * recall model, Covington et al., RecSys 2016). Every rating is a watch. Per user the watches
 * are sorted by time (ties keep file order); the last one is the test target, the one before
 * it the validation target, and every earlier position p >= 1 a training example whose label
 * is watch p and whose history is the up to `history` watches before it.
 *
 * Reads ml-latest-small / ml-25m style folders (ratings.csv, movies.csv), ml-1m / ml-10m
 * folders (`::`-separated ratings.dat, movies.dat, users.dat) and ml-100k (u.data, u.item,
 * u.user); each file may be gzip-compressed (ratings.dat.gz). users.dat needs UserID, Gender,
 * Age and Occupation; further fields (Zip, ...) are ignored. Titles and genres come out in UTF-8:
 * ml-1m and ml-10m write them in Latin-1, converted under `encoding = auto` (a title that is not
 * valid UTF-8 is read as Latin-1) or `latin-1`; `utf-8` refuses invalid bytes with FILE:LINE.
 * skip_bad_rows skips bad rows, never a whole file: a file none of whose rows parse is an error
 * that says what its first row holds. Not a rating-prediction dataset: the rating value is
 * checked and then ignored.
 *
 * Fields, each (B, 1): history BAGS (item ids), genres BAGS (the history's genres), watched
 * BAGS (every earlier watch: what a recommender must not suggest again), age F32 (the paper's
 * example age, (t_max - t) / (t_max - t_min) over training examples, 0 at serving time, i.e.
 * for validation and test), next_item F32 (the label, an item index), user I32, and where the
 * files have them gender, user_age, occupation I32. Items are re-indexed by descending
 * training frequency (id 0 = most watched), so a log-uniform sampler approximates popularity.
 * aux: item_freq (float), item_title (const char *), item_raw_id (int32), skipped_rows (long),
 * genre_name,
 * user_raw_id (int32, the files' userId of each user index: `tessera recommend --user`), and
 * each item's genres as the item feature bag of the retrieval head's item tower (docs/data.md,
 * "Aux arrays"): item_feature_off (int32, items + 1), item_feature_ids (int32 genre ids),
 * item_feature_vocab (one long: the genres), item_feature_name (const char *, the genres);
 * none of them when there is no movies file (no genres). */
#include "tessera.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

typedef struct { int64_t user, item, time; long order; } ml_row;

typedef struct {
    int nusers, nitems, ngenres, nocc, history, has_users, maxg, maxw;
    long skipped;           /* bad rows skipped under skip_bad_rows, in all three files */
    int encoding;           /* 0 auto, 1 utf-8, 2 latin-1 (titles and genres) */
    int32_t *uoff;          /* (nusers + 1) each user's watches in witem */
    int32_t *witem;         /* (nwatches) item index, per user in time order */
    int64_t *wtime;         /* (nwatches) */
    int32_t *goff, *gids;   /* (nitems + 1), genres of each item */
    int32_t *ex_user, *ex_pos;  /* (ntrain) training examples: user, position of the label */
    float *item_freq;       /* (nitems) training watches of each item */
    char **title;           /* (nitems) */
    int32_t *raw_id;        /* (nitems) the files' movie id */
    int32_t *user_raw_id;   /* (nusers) the files' user id */
    int64_t *raw_sorted;    /* (nitems) raw ids ascending, and their index below */
    int32_t *raw_to_new;    /* (nitems) */
    char **genre;           /* (ngenres) */
    int32_t *gender, *uage, *occ;   /* (nusers) user features, when users.dat / u.user exist */
    double tmax, tspan;
    long feature_vocab;     /* ngenres as the aux item_feature_vocab */
    /* batch buffers, sized for the largest batch at open */
    int32_t *h_off, *h_ids, *g_off, *g_ids, *w_off, *w_ids, *f_user, *f_gen, *f_uage, *f_occ;
    float *f_age, *f_label;
    ts_tensor *t_hist, *t_gen, *t_watch, *t_age, *t_label, *t_user, *t_gender, *t_uage, *t_occ;
} ml_state;

static const ts_key keys[] = {
    {"path", "string", "data/movielens/ml-latest-small",
     "folder with ratings.csv + movies.csv, ratings.dat (+ movies.dat, users.dat) or u.data"},
    {"history", "int", "50", "most recent earlier watches in the history bag (N)"},
    {"min_count", "int", "1", "drop items with fewer ratings than this before the split"},
    {"skip_bad_rows", "bool", "false", "skip malformed rows instead of failing (a file whose rows "
     "all fail is still an error)"},
    {"encoding", "choice:auto|utf-8|latin-1", "auto", "of titles and genres: auto reads a title "
     "that is not valid UTF-8 as Latin-1 (ml-1m, ml-10m); utf-8 refuses invalid bytes"},
    {NULL, NULL, NULL, NULL}};

static int by_user_time(const void *a, const void *b)
{
    const ml_row *x = a, *y = b;
    if (x->user != y->user) return x->user < y->user ? -1 : 1;
    if (x->time != y->time) return x->time < y->time ? -1 : 1;
    return (x->order > y->order) - (x->order < y->order);
}

static int by_i64(const void *a, const void *b)
{
    int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
    return (x > y) - (x < y);
}

static int parse_i64(const char *s, int64_t *out)
{
    char *end;
    if (!*s) return -1;
    long long v = strtoll(s, &end, 10);
    while (*end == ' ') end++;
    *out = v;
    return *end ? -1 : 0;
}

static long find_raw(const ml_state *S, int64_t raw)
{
    long lo = 0, hi = S->nitems - 1;
    while (lo <= hi) {
        long m = (lo + hi) / 2;
        if (S->raw_sorted[m] == raw) return m;
        if (S->raw_sorted[m] < raw) lo = m + 1; else hi = m - 1;
    }
    return -1;
}

/* access(), not fopen(): opening a FIFO would wait for a writer; ts_lines_open refuses one */
static int file_exists(const char *p) { return access(p, F_OK) == 0; }

/* DIR/NAME or DIR/NAME.gz into buf; 0 when neither exists. */
static int find_file(const char *dir, const char *name, char *buf, size_t n)
{
    snprintf(buf, n, "%s/%s", dir, name);
    if (file_exists(buf)) return 1;
    snprintf(buf, n, "%s/%s.gz", dir, name);
    return file_exists(buf);
}

/* Length of the valid UTF-8 prefix of s (strlen(s) when it is all valid). */
static size_t utf8_valid(const unsigned char *s)
{
    const unsigned char *p = s;
    while (*p) {
        int k = *p < 0x80 ? 0 : (*p & 0xe0) == 0xc0 && *p >= 0xc2 ? 1 : (*p & 0xf0) == 0xe0 ? 2
                : (*p & 0xf8) == 0xf0 && *p <= 0xf4 ? 3 : -1;
        if (k < 0) break;
        int i = 1;
        while (i <= k && (p[i] & 0xc0) == 0x80) i++;
        if (i <= k) break;
        p += k + 1;
    }
    return (size_t)(p - s);
}

/* A title or genre as UTF-8 (malloc'ed): as it is when valid, converted from Latin-1 under
 * encoding auto or latin-1; NULL with *bad set when utf-8 was asked and the text is not. */
static char *to_utf8(const char *s, int encoding, size_t *bad)
{
    size_t n = strlen(s), ok = utf8_valid((const unsigned char *)s);
    *bad = (size_t)-1;
    if (encoding != 2 && ok == n) return strdup(s);
    if (encoding == 1) { *bad = ok; return NULL; }
    char *out = malloc(2 * n + 1), *w = out;
    if (!out) return NULL;
    for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
        if (*p < 0x80) *w++ = (char)*p;
        else { *w++ = (char)(0xc0 | (*p >> 6)); *w++ = (char)(0x80 | (*p & 0x3f)); }
    }
    *w = 0;
    return out;
}

/* After a file: skip_bad_rows must not have skipped all of it (another layout, not bad rows). */
static int whole_file_bad(const char *path, long rows, long bad, long first_ln, const char *why,
                          ts_err *e)
{
    if (rows == 0 || bad < rows) return 0;
    return ts_fail(e, "%s: none of its %ld rows parse (line %ld: %s), so skip_bad_rows would drop "
                   "the whole file; is it a file of another layout or encoding?", path, rows,
                   first_ln, why);
}

/* Reads ratings as (user, item, time) rows; fmt 0 = csv with header, 1 = "::", 2 = tab. */
static int read_ratings(const char *path, int fmt, long *skipped, ml_row **rows_out, long *n_out,
                        ts_err *e)
{
    ts_lines *L = ts_lines_open(path, e);
    if (!L) return -1;
    const char *sep = fmt == 0 ? "," : fmt == 1 ? "::" : "\t";
    ml_row *rows = NULL;
    long n = 0, cap = 0, nread = 0, nbad = 0, first_bad = 0;
    char *line, *f[6], first_why[128] = "";
    while ((line = ts_lines_next(L, NULL))) {
        long ln = ts_lines_lineno(L);
        if (!*line || (fmt == 0 && ln == 1 && strncmp(line, "userId", 6) == 0)) continue;
        nread++;
        int nf = ts_split(line, sep, f, 5);
        int64_t u, it, t;
        const char *bad = NULL;
        char msg[96];
        if (nf != 4) {
            snprintf(msg, sizeof msg, "expected 4 fields (user, movie, rating, timestamp), found %d", nf);
            bad = msg;
        } else if (parse_i64(f[0], &u) || parse_i64(f[1], &it)) {
            bad = "user and movie ids must be integers";
        } else if (parse_i64(f[3], &t)) {
            bad = "the timestamp must be an integer";
        } else {
            char *end;
            strtod(f[2], &end);
            if (end == f[2] || *end) bad = "the rating must be a number";
        }
        if (bad) {
            if (!nbad++) { first_bad = ln; snprintf(first_why, sizeof first_why, "%s", bad); }
            if (skipped) { (*skipped)++; continue; }
            ts_fail(e, "%s:%ld: %s; fix or delete the row, or set skip_bad_rows = true", path, ln, bad);
            free(rows); ts_lines_close(L);
            return -1;
        }
        if (n == cap) {
            cap = cap ? 2 * cap : 1024;   /* doubling: a tiny file costs kilobytes */
            ml_row *g = realloc(rows, (size_t)cap * sizeof *rows);
            if (!g) { free(rows); ts_lines_close(L); return ts_fail(e, "%s: out of memory", path); }
            rows = g;
        }
        rows[n] = (ml_row){u, it, t, n};
        n++;
    }
    int rc = ts_lines_error(L, e);
    ts_lines_close(L);
    if (!rc) rc = whole_file_bad(path, nread, nbad, first_bad, first_why, e);
    if (rc) { free(rows); return -1; }
    if (n == 0)   /* (and rows is NULL: nothing below may sort or copy it) */
        return ts_fail(e, "%s: no rating rows%s; a MovieLens ratings file has one `user, movie, "
                       "rating, timestamp` row per line", path,
                       skipped ? " that parse (bad ones were skipped)" : "");
    *rows_out = rows;
    *n_out = n;
    return 0;
}

static int genre_id(ml_state *S, const char *g, ts_err *e)
{
    for (int i = 0; i < S->ngenres; i++)
        if (!strcmp(S->genre[i], g)) return i;
    if (S->ngenres >= 256) return ts_fail(e, "more than 256 distinct genres: is this a MovieLens movies file?");
    size_t bad;
    S->genre[S->ngenres] = to_utf8(g, S->encoding == 1 ? 0 : S->encoding, &bad);
    return S->genre[S->ngenres] ? S->ngenres++ : ts_fail(e, "out of memory");
}

/* Movies: titles and genres of the rated items. fmt 0 = csv (quoted titles), 1 = "::",
 * 2 = ml-100k u.item (19 genre flags). Movies nobody rated are ignored. */
static const char *k100genres[19] = {"unknown", "Action", "Adventure", "Animation", "Children's",
    "Comedy", "Crime", "Documentary", "Drama", "Fantasy", "Film-Noir", "Horror", "Musical",
    "Mystery", "Romance", "Sci-Fi", "Thriller", "War", "Western"};

static int read_movies(ml_state *S, const char *path, int fmt, long *skipped, ts_err *e)
{
    ts_lines *L = ts_lines_open(path, e);
    if (!L) return -1;
    int32_t *tmp = malloc((size_t)S->nitems * 32 * sizeof *tmp), *cnt = calloc((size_t)S->nitems, sizeof *cnt);
    S->genre = calloc(256, sizeof *S->genre);
    if (!tmp || !cnt || !S->genre) { free(tmp); free(cnt); ts_lines_close(L); return ts_fail(e, "out of memory"); }
    char *line, *f[32], first_why[160] = "";
    int rc = 0;
    long nread = 0, nbad = 0, first_bad = 0;
    while (!rc && (line = ts_lines_next(L, NULL))) {
        long ln = ts_lines_lineno(L);
        if (!*line || (fmt == 0 && ln == 1 && strncmp(line, "movieId", 7) == 0)) continue;
        nread++;
        char *title, *genres = NULL, *c1 = strchr(line, fmt == 2 ? '|' : fmt == 1 ? ':' : ',');
        int64_t raw;
        int ok = c1 != NULL;
        if (ok && fmt == 0) {                   /* id,title,genres: title may be "quoted, with commas" */
            char *c2 = strrchr(line, ',');
            ok = c2 > c1;
            if (ok) {
                *c1 = *c2 = 0; title = c1 + 1; genres = c2 + 1;
                size_t tl = strlen(title);
                if (tl >= 2 && title[0] == '"' && title[tl - 1] == '"') {
                    title[tl - 1] = 0; title++;
                    for (char *r = title, *w = title; ; r++) {   /* "" -> " */
                        if (r[0] == '"' && r[1] == '"') r++;
                        if (!(*w++ = *r)) break;
                    }
                }
            }
        } else if (ok) {
            int nf = ts_split(line, fmt == 1 ? "::" : "|", f, 30);
            ok = fmt == 1 ? nf == 3 : nf == 24;
            if (ok) { title = f[1]; genres = fmt == 1 ? f[2] : NULL; }
        }
        if (ok) ok = parse_i64(line, &raw) == 0;
        if (!ok) {
            const char *want = fmt == 0 ? "movieId,title,genres" : fmt == 1 ? "MovieID::Title::Genres"
                               : "24 |-separated fields (id|title|date|video date|url|19 genre flags)";
            if (!nbad++) { first_bad = ln; snprintf(first_why, sizeof first_why, "expected %s", want); }
            if (skipped) { (*skipped)++; continue; }
            rc = ts_fail(e, "%s:%ld: expected %s; fix or delete the row, or set skip_bad_rows = true",
                         path, ln, want);
            break;
        }
        long k = find_raw(S, raw);
        if (k < 0) continue;
        int32_t it = S->raw_to_new[k];
        size_t badat;
        char *t8 = to_utf8(title, S->encoding, &badat);
        if (!t8) {
            rc = badat == (size_t)-1 ? ts_fail(e, "out of memory")
                 : ts_fail(e, "%s:%ld: the title holds a byte that is not UTF-8 (0x%02x at byte %zu); "
                           "set [data] encoding = latin-1 (ml-1m and ml-10m are Latin-1), or auto",
                           path, ln, (unsigned char)title[badat], badat + 1);
            break;
        }
        if (S->title[it]) { free(S->title[it]); cnt[it] = 0; }   /* a repeated id: the last row wins */
        S->title[it] = t8;
        if (fmt == 2) {
            for (int g = 0; g < 19 && !rc; g++)
                if (f[5 + g][0] == '1' && cnt[it] < 32) {
                    int id = genre_id(S, k100genres[g], e);
                    if (id < 0) rc = -1; else tmp[(long)it * 32 + cnt[it]++] = id;
                }
        } else {
            char *gl[33];
            int ng = ts_split(genres, "|", gl, 32);
            for (int g = 0; g < ng && g < 32 && !rc; g++)
                if (gl[g][0]) {
                    int id = genre_id(S, gl[g], e);
                    if (id < 0) rc = -1; else tmp[(long)it * 32 + cnt[it]++] = id;
                }
        }
    }
    if (!rc) rc = ts_lines_error(L, e);
    if (!rc) rc = whole_file_bad(path, nread, nbad, first_bad, first_why, e);
    ts_lines_close(L);
    S->goff = malloc((size_t)(S->nitems + 1) * sizeof *S->goff);
    long total = 0;
    for (int i = 0; i < S->nitems; i++) total += cnt[i];
    S->gids = malloc((size_t)(total + 1) * sizeof *S->gids);
    if (!rc && (!S->goff || !S->gids)) rc = ts_fail(e, "out of memory");
    if (!rc) {
        S->goff[0] = 0;
        for (int i = 0; i < S->nitems; i++) {
            memcpy(S->gids + S->goff[i], tmp + (long)i * 32, (size_t)cnt[i] * sizeof *tmp);
            S->goff[i + 1] = S->goff[i] + cnt[i];
            if (cnt[i] > S->maxg) S->maxg = cnt[i];
        }
    }
    free(tmp); free(cnt);
    return rc;
}

/* users.dat (UserID::Gender::Age::Occupation::Zip) or u.user (id|age|gender|occupation|zip):
 * the first four fields are needed, further ones ignored. Age becomes ml-1m's 7 buckets (under
 * 18, 18, 25, 35, 45, 50, 56+). */
static int read_users(ml_state *S, const char *path, int fmt, const int64_t *uraw, long *skipped, ts_err *e)
{
    static const int edges[6] = {18, 25, 35, 45, 50, 56};
    char occ_names[64][TS_NAME_MAX];
    ts_lines *L = ts_lines_open(path, e);
    if (!L) return -1;
    char *line, *f[17], why[200], first_why[200] = "";
    long nread = 0, nbad = 0, first_bad = 0;
    const char *layout = fmt == 1 ? "UserID::Gender(M|F)::Age::Occupation(0-63)[::Zip...]"
                                  : "id|age|gender(M|F)|occupation[|zip...]";
    while ((line = ts_lines_next(L, NULL))) {
        long ln = ts_lines_lineno(L);
        if (!*line) continue;
        nread++;
        int nf = ts_split(line, fmt == 1 ? "::" : "|", f, 16);
        int64_t id = 0, age = 0, occ = 0;
        why[0] = 0;
        if (nf < 4) {
            snprintf(why, sizeof why, "expected at least 4 %s-separated fields (%s), found %d",
                     fmt == 1 ? "::" : "|", layout, nf);
        } else {
            const char *gs = fmt == 1 ? f[1] : f[2], *as = fmt == 1 ? f[2] : f[1];
            if (parse_i64(f[0], &id)) snprintf(why, sizeof why, "the user id \"%.30s\" is not a whole number", f[0]);
            else if (parse_i64(as, &age)) snprintf(why, sizeof why, "the age \"%.30s\" is not a whole number", as);
            else if (!(gs[0] == 'M' || gs[0] == 'F') || gs[1])
                snprintf(why, sizeof why, "the gender \"%.30s\" is not M or F", gs);
            else if (fmt == 1 && (parse_i64(f[3], &occ) || occ < 0 || occ >= 64))
                snprintf(why, sizeof why, "the occupation \"%.30s\" is not a number in 0..63", f[3]);
            if (!why[0] && fmt == 2) {                 /* occupations are names: number them */
                for (occ = 0; occ < S->nocc && strcmp(occ_names[occ], f[3]); occ++) {}
                if (occ == S->nocc) {
                    if (S->nocc < 64) snprintf(occ_names[S->nocc++], TS_NAME_MAX, "%s", f[3]);
                    else snprintf(why, sizeof why, "more than 64 distinct occupations");
                }
            }
        }
        if (why[0]) {
            if (!nbad++) { first_bad = ln; snprintf(first_why, sizeof first_why, "%s", why); }
            if (skipped) { (*skipped)++; continue; }
            ts_lines_close(L);
            return ts_fail(e, "%s:%ld: %s; fix or delete the row, or set skip_bad_rows = true", path,
                           ln, why);
        }
        const char *gs = fmt == 1 ? f[1] : f[2];
        int64_t *p = bsearch(&id, uraw, (size_t)S->nusers, sizeof *uraw, by_i64);
        if (!p) continue;
        long u = p - uraw;
        int b = 0;
        while (b < 6 && age >= edges[b]) b++;
        S->gender[u] = gs[0] == 'F';
        S->uage[u] = b;
        S->occ[u] = (int32_t)occ;
        if (fmt == 1 && occ + 1 > S->nocc) S->nocc = (int)occ + 1;
    }
    int rc = ts_lines_error(L, e);
    ts_lines_close(L);
    if (!rc) rc = whole_file_bad(path, nread, nbad, first_bad, first_why, e);
    return rc;
}

static void ml_close(ts_data *D)
{
    ml_state *S = D->state;
    if (!S) return;
    for (int i = 0; S->title && i < S->nitems; i++) free(S->title[i]);
    for (int i = 0; S->genre && i < S->ngenres; i++) free(S->genre[i]);
    void *bufs[] = {S->uoff, S->witem, S->wtime, S->goff, S->gids, S->ex_user, S->ex_pos, S->item_freq,
        S->title, S->raw_id, S->user_raw_id, S->raw_sorted, S->raw_to_new, S->genre, S->gender, S->uage,
        S->occ, S->h_off, S->h_ids, S->g_off, S->g_ids, S->w_off, S->w_ids, S->f_user, S->f_gen, S->f_uage, S->f_occ,
        S->f_age, S->f_label};
    for (size_t i = 0; i < sizeof bufs / sizeof *bufs; i++) free(bufs[i]);
    free(S);
    D->state = NULL;
}

/* Users (>= 3 watches) in raw id order, their watches in time order, items re-indexed by
 * descending training frequency (ties: raw id), the training examples and the age scale. */
static int build_index(ml_state *S, ml_row *rows, long n, long min_count, int64_t **uraw_out, ts_err *e)
{
    int64_t *raw = malloc((size_t)(n + 1) * sizeof *raw);
    if (!raw) return ts_fail(e, "out of memory");
    for (long i = 0; i < n; i++) raw[i] = rows[i].item;
    qsort(raw, (size_t)n, sizeof *raw, by_i64);
    if (min_count > 1) {                 /* drop rare items: count by runs of the sorted ids */
        long m = 0;
        for (long i = 0; i < n; i++) {
            int64_t *lo = bsearch(&rows[i].item, raw, (size_t)n, sizeof *raw, by_i64);
            long a = lo - raw, b = a;
            while (a > 0 && raw[a - 1] == rows[i].item) a--;
            while (b < n && raw[b] == rows[i].item) b++;
            if (b - a >= min_count) rows[m++] = rows[i];
        }
        n = m;
    }
    qsort(rows, (size_t)n, sizeof *rows, by_user_time);
    long nw = 0, nu = 0;                 /* keep users with a training, a validation and a test watch */
    for (long i = 0, j; i < n; i = j) {
        for (j = i; j < n && rows[j].user == rows[i].user; j++) {}
        if (j - i >= 3) { memmove(rows + nw, rows + i, (size_t)(j - i) * sizeof *rows); nw += j - i; nu++; }
    }
    if (nu == 0) { free(raw); return ts_fail(e, "no user has 3 or more watches: check the ratings file and min_count"); }
    long ni = 0;
    for (long i = 0; i < nw; i++) raw[i] = rows[i].item;
    qsort(raw, (size_t)nw, sizeof *raw, by_i64);
    for (long i = 0; i < nw; i++) if (i == 0 || raw[i] != raw[i - 1]) raw[ni++] = raw[i];
    S->nusers = (int)nu; S->nitems = (int)ni; S->raw_sorted = raw;
    S->uoff = malloc((size_t)(nu + 1) * sizeof *S->uoff);
    S->witem = malloc((size_t)nw * sizeof *S->witem);
    S->wtime = malloc((size_t)nw * sizeof *S->wtime);
    S->item_freq = calloc((size_t)ni, sizeof *S->item_freq);
    S->raw_to_new = malloc((size_t)ni * sizeof *S->raw_to_new);
    S->raw_id = malloc((size_t)ni * sizeof *S->raw_id);
    S->title = calloc((size_t)ni, sizeof *S->title);
    int64_t *uraw = malloc((size_t)nu * sizeof *uraw), *key = malloc((size_t)ni * sizeof *key);
    long ntrain = nw - 3 * nu;           /* positions 1 .. n-3 of each user */
    S->ex_user = malloc((size_t)(ntrain + 1) * sizeof *S->ex_user);
    S->ex_pos = malloc((size_t)(ntrain + 1) * sizeof *S->ex_pos);
    *uraw_out = uraw;
    if (!S->uoff || !S->witem || !S->wtime || !S->item_freq || !S->raw_to_new || !S->raw_id || !S->title ||
        !uraw || !key || !S->ex_user || !S->ex_pos) { free(key); return ts_fail(e, "out of memory"); }
    long u = 0, t = 0;
    S->uoff[0] = 0;
    for (long i = 0, j; i < nw; i = j, u++) {
        for (j = i; j < nw && rows[j].user == rows[i].user; j++) {
            S->witem[j] = (int32_t)find_raw(S, rows[j].item);     /* sorted-raw index for now */
            S->wtime[j] = rows[j].time;
        }
        uraw[u] = rows[i].user;
        S->uoff[u + 1] = (int32_t)j;
        for (long p = i; p < j - 2; p++) S->item_freq[S->witem[p]] += 1;   /* training-period watches */
        for (long p = 1; p < j - i - 2; p++) { S->ex_user[t] = (int32_t)u; S->ex_pos[t] = (int32_t)p; t++; }
    }
    /* New index = position in (descending frequency, ascending raw id); freq < 2^24 is exact. */
    for (long k = 0; k < ni; k++) key[k] = ((int64_t)(16777216 - (int64_t)S->item_freq[k]) << 32) | k;
    qsort(key, (size_t)ni, sizeof *key, by_i64);
    float *freq = malloc((size_t)ni * sizeof *freq);
    if (!freq) { free(key); return ts_fail(e, "out of memory"); }
    for (long r = 0; r < ni; r++) {
        long k = key[r] & 0xffffffff;
        S->raw_to_new[k] = (int32_t)r;
        S->raw_id[r] = (int32_t)raw[k];
        freq[r] = S->item_freq[k];
    }
    free(key); free(S->item_freq); S->item_freq = freq;
    for (long i = 0; i < nw; i++) S->witem[i] = S->raw_to_new[S->witem[i]];
    double tmin = 1e300, tmax = -1e300;
    for (long x = 0; x < ntrain; x++) {
        double tt = (double)S->wtime[S->uoff[S->ex_user[x]] + S->ex_pos[x]];
        if (tt < tmin) tmin = tt;
        if (tt > tmax) tmax = tt;
    }
    S->tmax = ntrain ? tmax : 0;
    S->tspan = ntrain && tmax > tmin ? tmax - tmin : 1;
    S->maxw = 0;
    for (long x = 0; x < nu; x++)
        if (S->uoff[x + 1] - S->uoff[x] > S->maxw) S->maxw = S->uoff[x + 1] - S->uoff[x];
    return 0;
}

static int ml_open(ts_data *D, const ts_cfg *cfg, ts_err *e)
{
    long hist, minc;
    int skip, encoding;
    if (ts_cfg_int(cfg, "history", &hist, e) || ts_cfg_int(cfg, "min_count", &minc, e) ||
        ts_cfg_bool(cfg, "skip_bad_rows", &skip, e) || ts_cfg_choice(cfg, "encoding",
        "auto|utf-8|latin-1", &encoding, e)) return -1;
    if (hist < 1 || hist > 100000)
        return ts_fail(e, "%s: history = %ld must lie in 1..100000", ts_cfg_where(cfg, "history"), hist);
    char dir[3000], rp[3100], mp[3100], up[3100];
    ts_ctx_path(D->ctx, ts_cfg_str(cfg, "path"), dir, sizeof dir);
    static const char *rn[3] = {"ratings.csv", "ratings.dat", "u.data"}, *mn[3] = {"movies.csv", "movies.dat", "u.item"};
    int fmt = 0;
    for (; fmt < 3; fmt++)
        if (find_file(dir, rn[fmt], rp, sizeof rp)) break;
    if (fmt == 3)
        return ts_fail(e, "%s: %s holds no ratings.csv, ratings.dat or u.data (nor .gz); set path = "
                       "to a MovieLens folder such as data/movielens/ml-latest-small",
                       ts_cfg_where(cfg, "path"), dir);
    ml_state *S = calloc(1, sizeof *S);
    if (!S) return ts_fail(e, "out of memory");
    D->state = S;
    S->history = (int)hist;
    S->encoding = encoding;
    ml_row *rows = NULL;
    long n = 0;
    int64_t *uraw = NULL;
    long *skipped = skip ? &S->skipped : NULL;   /* NULL: a bad row is an error */
    int rc = read_ratings(rp, fmt, skipped, &rows, &n, e);
    if (!rc) rc = build_index(S, rows, n, minc, &uraw, e);
    free(rows);
    if (!rc && find_file(dir, mn[fmt], mp, sizeof mp)) rc = read_movies(S, mp, fmt, skipped, e);
    else if (!rc) {                       /* no movies file: no genres, ids as titles */
        S->goff = calloc((size_t)S->nitems + 1, sizeof *S->goff);
        S->gids = calloc(1, sizeof *S->gids);
        if (!S->goff || !S->gids) rc = ts_fail(e, "out of memory");
    }
    for (int i = 0; !rc && i < S->nitems; i++)
        if (!S->title[i]) {
            char b[32];
            snprintf(b, sizeof b, "movie %d", (int)S->raw_id[i]);
            if (!(S->title[i] = strdup(b))) rc = ts_fail(e, "out of memory");
        }
    if (!rc && fmt > 0 && find_file(dir, fmt == 1 ? "users.dat" : "u.user", up, sizeof up)) {
        S->has_users = 1;
        S->gender = calloc((size_t)S->nusers, sizeof *S->gender);
        S->uage = calloc((size_t)S->nusers, sizeof *S->uage);
        S->occ = calloc((size_t)S->nusers, sizeof *S->occ);
        rc = !S->gender || !S->uage || !S->occ ? ts_fail(e, "out of memory")
                                                : read_users(S, up, fmt, uraw, skipped, e);
    }
    if (!rc && !(S->user_raw_id = malloc((size_t)S->nusers * sizeof *S->user_raw_id)))
        rc = ts_fail(e, "out of memory");
    for (int u = 0; !rc && u < S->nusers; u++) S->user_raw_id[u] = (int32_t)uraw[u];
    free(uraw);
    int B = ts_ctx_max_batch(D->ctx), one[1] = {1};
    if (B < 1) B = 1;
    if (!rc) {
        S->h_off = malloc((size_t)(B + 1) * sizeof(int32_t));
        S->h_ids = malloc((size_t)B * (size_t)hist * sizeof(int32_t));
        S->g_off = malloc((size_t)(B + 1) * sizeof(int32_t));
        S->g_ids = malloc(((size_t)B * (size_t)hist * (size_t)S->maxg + 1) * sizeof(int32_t));
        S->w_off = malloc((size_t)(B + 1) * sizeof(int32_t));
        S->w_ids = malloc((size_t)B * (size_t)S->maxw * sizeof(int32_t));
        S->f_user = malloc((size_t)B * sizeof(int32_t));
        S->f_age = malloc((size_t)B * sizeof(float));
        S->f_label = malloc((size_t)B * sizeof(float));
        S->f_gen = malloc((size_t)B * sizeof(int32_t));
        S->f_uage = malloc((size_t)B * sizeof(int32_t));
        S->f_occ = malloc((size_t)B * sizeof(int32_t));
        if (!S->h_off || !S->h_ids || !S->g_off || !S->g_ids || !S->w_off || !S->w_ids || !S->f_user ||
            !S->f_age || !S->f_label || !S->f_gen || !S->f_uage || !S->f_occ) rc = ts_fail(e, "out of memory");
    }
    if (!rc && (!(S->t_hist = ts_data_field(D, "history", TS_BAGS, 2, one, S->nitems, e)) ||
                !(S->t_gen = ts_data_field(D, "genres", TS_BAGS, 2, one, S->ngenres > 0 ? S->ngenres : 1, e)) ||
                !(S->t_watch = ts_data_field(D, "watched", TS_BAGS, 2, one, S->nitems, e)) ||
                !(S->t_age = ts_data_field(D, "age", TS_F32, 2, one, 0, e)) ||
                !(S->t_label = ts_data_field(D, "next_item", TS_F32, 2, one, 0, e)) ||
                !(S->t_user = ts_data_field(D, "user", TS_I32, 2, one, S->nusers, e)) ||
                ts_data_label(D, "next_item", e)))   /* never a layer's input */
        rc = -1;
    if (!rc && S->has_users &&
        (!(S->t_gender = ts_data_field(D, "gender", TS_I32, 2, one, 2, e)) ||
         !(S->t_uage = ts_data_field(D, "user_age", TS_I32, 2, one, 7, e)) ||
         !(S->t_occ = ts_data_field(D, "occupation", TS_I32, 2, one, S->nocc > 0 ? S->nocc : 1, e))))
        rc = -1;
    if (rc) { ml_close(D); return -1; }
    S->feature_vocab = S->ngenres;
    D->nrows[TS_TRAIN] = (long)S->uoff[S->nusers] - 3L * S->nusers;
    D->nrows[TS_VALID] = D->nrows[TS_TEST] = S->nusers;
    return 0;
}

/* Example i of a split: a user and the position of its label watch. */
static int ml_batch(ts_data *D, ts_phase split, const long *rows, int n, ts_err *e)
{
    ml_state *S = D->state;
    long g_n = 0, w_n = 0;
    S->h_off[0] = S->g_off[0] = S->w_off[0] = 0;
    for (int i = 0; i < n; i++) {
        long r = rows[i];
        if (r < 0 || r >= D->nrows[split]) return ts_fail(e, "movielens: row %ld outside split %d", r, (int)split);
        int u = split == TS_TRAIN ? S->ex_user[r] : (int)r;
        long first = S->uoff[u], len = S->uoff[u + 1] - first;
        long pos = split == TS_TRAIN ? S->ex_pos[r] : split == TS_VALID ? len - 2 : len - 1;
        long lab = first + pos, h0 = pos > S->history ? lab - S->history : first;
        long hn = lab - h0;                       /* (hn) the most recent earlier watches */
        memcpy(S->h_ids + S->h_off[i], S->witem + h0, (size_t)hn * sizeof(int32_t));
        S->h_off[i + 1] = S->h_off[i] + (int32_t)hn;
        for (long h = h0; h < lab; h++) {
            int32_t it = S->witem[h];
            for (int32_t k = S->goff[it]; k < S->goff[it + 1]; k++) S->g_ids[g_n++] = S->gids[k];
        }
        S->g_off[i + 1] = (int32_t)g_n;
        memcpy(S->w_ids + w_n, S->witem + first, (size_t)pos * sizeof(int32_t));
        w_n += pos;
        S->w_off[i + 1] = (int32_t)w_n;
        S->f_age[i] = split == TS_TRAIN ? (float)((S->tmax - (double)S->wtime[lab]) / S->tspan) : 0.0f;
        S->f_label[i] = (float)S->witem[lab];
        S->f_user[i] = u;
        if (S->has_users) { S->f_gen[i] = S->gender[u]; S->f_uage[i] = S->uage[u]; S->f_occ[i] = S->occ[u]; }
    }
    S->t_hist->ids = S->h_ids; S->t_hist->off = S->h_off;
    S->t_gen->ids = S->g_ids; S->t_gen->off = S->g_off;
    S->t_watch->ids = S->w_ids; S->t_watch->off = S->w_off;
    S->t_age->x = S->f_age; S->t_label->x = S->f_label; S->t_user->ids = S->f_user;
    ts_tensor *all[] = {S->t_hist, S->t_gen, S->t_watch, S->t_age, S->t_label, S->t_user};
    for (int k = 0; k < 6; k++) all[k]->dim[0] = n;
    if (S->has_users) {
        S->t_gender->ids = S->f_gen; S->t_uage->ids = S->f_uage; S->t_occ->ids = S->f_occ;
        S->t_gender->dim[0] = S->t_uage->dim[0] = S->t_occ->dim[0] = n;
    }
    return 0;
}

static int ml_aux(ts_data *D, const char *name, const void **ptr, long *n)
{
    ml_state *S = D->state;
    if (!strcmp(name, "item_freq")) *ptr = S->item_freq;
    else if (!strcmp(name, "item_title")) *ptr = S->title;
    else if (!strcmp(name, "item_raw_id")) *ptr = S->raw_id;
    else if (!strcmp(name, "genre_name")) { *ptr = S->genre; *n = S->ngenres; return 0; }
    else if (!strncmp(name, "item_feature_", 13)) {          /* genres, when there are any */
        const char *w = name + 13;
        if (S->ngenres < 1) return -1;
        if (!strcmp(w, "off")) { *ptr = S->goff; *n = (long)S->nitems + 1; }
        else if (!strcmp(w, "ids")) { *ptr = S->gids; *n = S->goff[S->nitems]; }
        else if (!strcmp(w, "vocab")) { *ptr = &S->feature_vocab; *n = 1; }
        else if (!strcmp(w, "name")) { *ptr = S->genre; *n = S->ngenres; }
        else return -1;
        return 0;
    }
    else if (!strcmp(name, "user_raw_id")) { *ptr = S->user_raw_id; *n = S->nusers; return 0; }
    else if (!strcmp(name, "skipped_rows")) { *ptr = &S->skipped; *n = 1; return 0; }
    else return -1;
    *n = S->nitems;
    return 0;
}

static const ts_dataset_ops ops = {.size = sizeof(ts_dataset_ops),
    .open = ml_open, .batch = ml_batch, .aux = ml_aux, .close = ml_close,
    .concurrency = TS_BRANCH_SAFE};   /* batch() fills the fields only */
static const ts_plugin plugin = {TS_ABI, sizeof(ts_plugin), TS_DATASET, "movielens", "1.0",
    "MovieLens watches as next-item prediction: history bags, leave-last-out validation and test", keys, &ops};
const ts_plugin *tessera_plugin_entry(uint32_t i) { return i == 0 ? &plugin : NULL; }
