/* movielens_ranking.c — training data for the YouTube DNN's ranking stage (Covington, Adams,
 * Sargin, RecSys 2016, section 4), drawn from a trained recall run.
 *
 * The watches (ratings.csv, movies.csv of an ml-latest-small style folder) are sorted per user
 * by time, ties in file order, as the movielens dataset sorts them. A user step (u, p) is the
 * moment before watch p: its impressions are the recall run's top-K items (`candidates`, 100)
 * for a user vector computed from the watches before p only (the recall dataset's history
 * and genre bags, example age 0 as at serving), every earlier watch excluded. The step's
 * rows are its K candidates, in candidate order; a row's label is 1 when the candidate is
 * watch p (the positive), else 0. A watch p that is not among the candidates is NOT added: an
 * impression log only holds what the recall stage showed, so such a step has no positive
 * (training: K negatives; evaluation: a miss for every ordering of the candidates).
 * Splits (leave-last-out, as the recall stage): the test step is each user's last watch,
 * the validation step the one before, the training steps the `train_steps` positions before
 * that (p >= 1). Users with fewer than 3 watches are dropped.
 *
 * Fields (each row one candidate of one step):
 *   item I32 (B, 1)          the candidate (items numbered by ascending movieId)
 *   history BAGS (B, 1)      the last `history` watches before the step
 *   recent BAGS (B, 1)       the last `recent` watches before the step
 *   item_genres BAGS (B, 1)  the candidate's genres
 *   cont F32 (B, 3C)         the C continuous features below, each as q, q^2, sqrt(q) with q its
 *                            quantile (empirical CDF, ties at the mid rank) among the training rows
 *   raw F32 (B, C)           the same features unnormalised
 *   label F32 (B, 1)         1: the candidate is the watch that followed
 *   weight F32 (B, 1)        the positive's rating (the engagement stand-in; positive_weight =
 *                            unit: 1), 1 for a negative
 *   step I32 (B, 1)          the step's id, the ranking group
 *   recall_score F32 (B, 1)  the recall score u.v + b: ordering by it is the candidate order
 *   popularity F32 (B, 1)    log(1 + watches of the candidate by anyone before the step's time)
 * Continuous features (C = 7): recall score, recall rank (1..K), days since the user last
 * watched one of the candidate's genres (36500 when never), how many of the user's previous
 * `impression_window` steps showed the candidate, log(1 + the candidate's watches before the
 * step's time), the number of the user's earlier watches, and the example age (train:
 * (t_end - t) / (t_end - t_start) over the training steps' times; 0 for validation and test).
 * Everything a row holds comes from watches before its step (the step's own time for the
 * popularity count, which counts strictly earlier watches), except the fitted quantiles and the
 * example age's span, which are training-split statistics (tests/test_ranking.c checks this).
 * aux: item_raw_id (int32, items), item_title (const char *, items), step_user (int32 raw
 * userId per step), step_pos (int32), nsteps (long), candidates (long: K). */
#include "tessera.h"

#include <fcntl.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <unistd.h>

#define NC 7                    /* continuous features */
#define NEVER_DAYS 36500.0f

typedef struct { int64_t user, item, time; float rating; long order; } rk_row;

typedef struct {
    int nusers, nitems, ngenres, history, recent, K, unit_weight;
    int32_t *uoff;              /* (nusers + 1) */
    int32_t *witem;             /* (nwatches) own item index, per user in time order */
    int64_t *wtime;
    float *wrate;
    int32_t *uraw;              /* (nusers) userId */
    int64_t *iraw;              /* (nitems) movieId ascending = the item index */
    int32_t *iraw32;
    int32_t *goff, *gids;       /* (nitems + 1) genres of each item */
    char **gname;
    char **title;               /* (nitems) from movies.csv, or NULL */
    long kaux;                  /* K, as the aux "candidates" */
    /* steps */
    long nsteps, nstep_split[3];
    int32_t *s_user, *s_pos, *s_uraw;   /* (nsteps) */
    int8_t *s_split;
    /* rows, per split in step order */
    long nrows[3];
    long *r_base[3];            /* (nrows) index into the global row arrays */
    long ntotal;
    int32_t *r_step, *r_item;   /* (ntotal) */
    float *r_raw;               /* (ntotal, NC) */
    uint8_t *r_label;
    float *q_sorted;            /* (NC, nq) training values per feature, sorted */
    long nq;
    /* batch buffers */
    int32_t *b_item, *b_step, *h_off, *h_ids, *c_off, *c_ids, *g_off, *g_ids;
    float *b_cont, *b_raw, *b_label, *b_weight, *b_score, *b_pop;
    ts_tensor *t_item, *t_hist, *t_recent, *t_genres, *t_cont, *t_raw, *t_label, *t_weight,
        *t_step, *t_score, *t_pop;
} rk_state;

static const ts_key keys[] = {
    {"path", "string", "data/movielens/ml-latest-small",
     "folder with ratings.csv and movies.csv (the ml-latest-small layout)"},
    {"recall_run", "string", NULL, "results folder of a trained recall run (a retrieval head) "
     "whose top-K items are each step's impressions"},
    {"recall_head", "string", "", "the recall run's retrieval head; empty = its head of type retrieval"},
    {"candidates", "int", "100", "K: impressions per step, the recall run's top K"},
    {"train_steps", "int", "10", "training steps per user: the positions just before its "
     "validation step"},
    {"history", "int", "50", "watches before the step in the history bag (and in the recall "
     "run's input: keep it equal to the recall run's data.history)"},
    {"recent", "int", "5", "last watches in the recent bag"},
    {"positive_weight", "choice:rating|unit", "rating", "the weight field of a positive row: its "
     "rating (the engagement stand-in of weighted logistic regression) or 1 (plain logistic "
     "regression); a negative weighs 1 either way"},
    {"impression_window", "int", "10", "earlier steps of the user over which `shown before` "
     "counts the candidate's impressions"},
    {NULL, NULL, NULL, NULL}};

static int by_user_time(const void *a, const void *b)
{
    const rk_row *x = a, *y = b;
    if (x->user != y->user) return x->user < y->user ? -1 : 1;
    if (x->time != y->time) return x->time < y->time ? -1 : 1;
    return (x->order > y->order) - (x->order < y->order);
}

static int cmp_i64(const void *a, const void *b)
{
    int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
    return (x > y) - (x < y);
}

static int cmp_f(const void *a, const void *b)
{
    float x = *(const float *)a, y = *(const float *)b;
    return (x > y) - (x < y);
}

static long find_i64(const int64_t *v, long n, int64_t x)
{
    long lo = 0, hi = n - 1;
    while (lo <= hi) {
        long m = (lo + hi) / 2;
        if (v[m] == x) return m;
        if (v[m] < x) lo = m + 1; else hi = m - 1;
    }
    return -1;
}

static int read_ratings(const char *path, rk_row **out, long *nout, ts_err *e)
{
    ts_lines *L = ts_lines_open(path, e);
    if (!L) return -1;
    rk_row *rows = NULL;
    long n = 0, cap = 0;
    char *line, *f[6];
    while ((line = ts_lines_next(L, NULL))) {
        long ln = ts_lines_lineno(L);
        if (!*line || (ln == 1 && !strncmp(line, "userId", 6))) continue;
        int nf = ts_split(line, ",", f, 5);
        char *e0, *e1, *e2, *e3;
        long long u = nf == 4 ? strtoll(f[0], &e0, 10) : 0, it = nf == 4 ? strtoll(f[1], &e1, 10) : 0;
        double r = nf == 4 ? strtod(f[2], &e2) : 0;
        long long t = nf == 4 ? strtoll(f[3], &e3, 10) : 0;
        if (nf != 4 || *e0 || *e1 || *e2 || *e3 || e0 == f[0] || e1 == f[1] || e2 == f[2] ||
            e3 == f[3] || !isfinite(r) || r < 0) {
            free(rows);
            ts_lines_close(L);
            return ts_fail(e, "%s:%ld: expected userId,movieId,rating,timestamp (integers, a "
                           "rating >= 0); fix or delete the row", path, ln);
        }
        if (n == cap) {
            cap = cap ? 2 * cap : 4096;
            rk_row *g = realloc(rows, (size_t)cap * sizeof *rows);
            if (!g) { free(rows); ts_lines_close(L); return ts_fail(e, "%s: out of memory", path); }
            rows = g;
        }
        rows[n] = (rk_row){u, it, t, (float)r, n};
        n++;
    }
    int rc = ts_lines_error(L, e);
    ts_lines_close(L);
    if (!rc && n == 0) rc = ts_fail(e, "%s: no rating rows", path);
    if (rc) { free(rows); return -1; }
    *out = rows;
    *nout = n;
    return 0;
}

/* movies.csv: movieId,title,genres (title possibly quoted); genres split on '|'. */
static int read_movies(rk_state *S, const char *path, ts_err *e)
{
    ts_lines *L = ts_lines_open(path, e);
    if (!L) return -1;
    char **gl = calloc((size_t)S->nitems, sizeof *gl);
    S->gname = calloc(256, sizeof *S->gname);
    S->title = calloc((size_t)S->nitems, sizeof *S->title);
    if (!gl || !S->gname || !S->title) { free(gl); ts_lines_close(L); return ts_fail(e, "out of memory"); }
    char *line;
    int rc = 0;
    while (!rc && (line = ts_lines_next(L, NULL))) {
        long ln = ts_lines_lineno(L);
        if (!*line || (ln == 1 && !strncmp(line, "movieId", 7))) continue;
        char *c1 = strchr(line, ','), *c2 = strrchr(line, ','), *end;
        long long raw = strtoll(line, &end, 10);
        if (!c1 || c2 <= c1 || end != c1) {
            rc = ts_fail(e, "%s:%ld: expected movieId,title,genres; fix or delete the row", path, ln);
            break;
        }
        long k = find_i64(S->iraw, S->nitems, raw);
        if (k < 0) continue;
        free(gl[k]);
        free(S->title[k]);
        *c2 = 0;
        char *t = c1 + 1;
        size_t tl = strlen(t);
        if (tl >= 2 && t[0] == '"' && t[tl - 1] == '"') { t[tl - 1] = 0; t++; }
        if (!(gl[k] = strdup(c2 + 1)) || !(S->title[k] = strdup(t))) rc = ts_fail(e, "out of memory");
    }
    if (!rc) rc = ts_lines_error(L, e);
    ts_lines_close(L);
    long ng = 0, gcap = 0;
    S->goff = calloc((size_t)S->nitems + 1, sizeof *S->goff);
    if (!rc && !S->goff) rc = ts_fail(e, "out of memory");
    for (int i = 0; !rc && i < S->nitems; i++) {
        for (char *tok = gl[i] ? strtok(gl[i], "|") : NULL; tok && !rc; tok = strtok(NULL, "|")) {
            int g = 0;
            while (g < S->ngenres && strcmp(S->gname[g], tok)) g++;
            if (g == S->ngenres) {
                if (g >= 255) { rc = ts_fail(e, "%s: more than 255 genres", path); break; }
                if (!(S->gname[g] = strdup(tok))) { rc = ts_fail(e, "out of memory"); break; }
                S->ngenres++;
            }
            if (ng == gcap) {
                gcap = gcap ? 2 * gcap : 4096;
                int32_t *p = realloc(S->gids, (size_t)gcap * sizeof *p);
                if (!p) { rc = ts_fail(e, "out of memory"); break; }
                S->gids = p;
            }
            S->gids[ng++] = g;
        }
        S->goff[i + 1] = (int32_t)ng;
    }
    for (int i = 0; i < S->nitems; i++) free(gl[i]);
    free(gl);
    if (!rc && !S->gids && !(S->gids = calloc(1, sizeof *S->gids))) rc = ts_fail(e, "out of memory");
    return rc;
}

static void rk_close(ts_data *D)
{
    rk_state *S = D->state;
    if (!S) return;
    void *p[] = {S->uoff, S->witem, S->wtime, S->wrate, S->uraw, S->iraw, S->iraw32, S->goff,
                 S->gids, S->s_user, S->s_pos, S->s_uraw, S->s_split, S->r_base[0], S->r_base[1],
                 S->r_base[2], S->r_step, S->r_item, S->r_raw, S->r_label, S->q_sorted, S->b_item,
                 S->b_step, S->h_off, S->h_ids, S->c_off, S->c_ids, S->g_off, S->g_ids, S->b_cont,
                 S->b_raw, S->b_label, S->b_weight, S->b_score, S->b_pop};
    for (size_t i = 0; i < sizeof p / sizeof *p; i++) free(p[i]);
    for (int g = 0; S->gname && g < S->ngenres; g++) free(S->gname[g]);
    for (int i = 0; S->title && i < S->nitems; i++) free(S->title[i]);
    free(S->title);
    free(S->gname);
    free(S);
    D->state = NULL;
}

/* Mid-rank empirical CDF of x among the n sorted values v. */
static float quantile(const float *v, long n, float x)
{
    long lo = 0, hi = n;                      /* first >= x */
    while (lo < hi) { long m = (lo + hi) / 2; if (v[m] < x) lo = m + 1; else hi = m; }
    long a = lo;
    hi = n;                                   /* first > x */
    while (lo < hi) { long m = (lo + hi) / 2; if (v[m] <= x) lo = m + 1; else hi = m; }
    return n ? (float)(((double)a + 0.5 * (double)(lo - a)) / (double)n) : 0.5f;
}

/* The recall stage: candidates of every step that needs them, from the watches before it. */
typedef struct {
    long ncs;                   /* computed steps */
    int32_t *cs_user, *cs_pos;  /* (ncs) user and position, by user then position */
    int32_t *cand;              /* (ncs, K) own item indices, best first (-1 past the last) */
    float *score;               /* (ncs, K) */
} cands_t;

/* The recall run's folder: recall_run as a data path (the current folder, the experiment's
 * folder and its parent, TESSERA_DATA_DIR); failing that, inside `tessera compare` (this run's
 * folder is OUT/runs/NAME/seed-N), the same comparison's seed-1 run of the experiment named by
 * recall_run's last component (OUT/runs/movielens_youtube_dnn/seed-1), waiting while that run
 * still holds its lock, so a suite that lists the recall experiment first trains both. */
static void recall_dir(ts_ctx *ctx, const char *want, char *out, size_t n)
{
    char probe[3100], got[3100];
    snprintf(probe, sizeof probe, "%s/config.ini", want);
    ts_ctx_path(ctx, probe, got, sizeof got);
    snprintf(out, n, "%s", want);
    if (access(got, F_OK) == 0) return;
    const char *rd = ts_ctx_results_dir(ctx), *base = strrchr(want, '/');
    base = base ? base + 1 : want;
    size_t k = strlen(rd);
    const char *seed = k ? strrchr(rd, '/') : NULL;
    if (!seed || strncmp(seed, "/seed-", 6) || !*base) return;
    const char *name = seed;
    while (name > rd && name[-1] != '/') name--;            /* OUT/runs/NAME/ */
    if (name - rd < 6 || strncmp(name - 6, "/runs/", 6)) return;
    char sib[3100], lock[3200];
    snprintf(sib, sizeof sib, "%.*s%s/seed-1", (int)(name - rd), rd, base);
    snprintf(lock, sizeof lock, "%s/.lock", sib);
    int fd = open(lock, O_RDONLY);
    if (fd >= 0) { flock(fd, LOCK_SH); close(fd); }         /* the recall run has finished */
    snprintf(probe, sizeof probe, "%s/params.bin", sib);
    if (access(probe, F_OK) == 0) snprintf(out, n, "%s", sib);
}

static int recall_candidates(rk_state *S, ts_ctx *ctx, const ts_cfg *cfg, long window,
                             long train_steps, cands_t *C, ts_err *e)
{
    ts_err le;
    char rdir[3100];
    recall_dir(ctx, ts_cfg_str(cfg, "recall_run"), rdir, sizeof rdir);
    ts_retriever *R = ts_retriever_open(ctx, rdir, ts_cfg_str(cfg, "recall_head"), &le);
    if (!R) return ts_fail(e, "%s: recall_run: %s", ts_cfg_where(cfg, "recall_run"), le.msg);
    int rc = 0, N = ts_retriever_items(R), B = ts_retriever_max_batch(R);
    if (B > 256) B = 256;
    const void *p;
    long n;
    const int32_t *rraw = NULL, *rgoff = NULL, *rgids = NULL;
    if (ts_retriever_aux(R, "item_raw_id", &p, &n) == 0 && n == N) rraw = p;
    if (ts_retriever_aux(R, "item_feature_off", &p, &n) == 0 && n == (long)N + 1) rgoff = p;
    if (ts_retriever_aux(R, "item_feature_ids", &p, &n) == 0) rgids = p;
    ts_tensor *th = ts_retriever_field(R, "history"), *tg = ts_retriever_field(R, "genres"),
              *ta = ts_retriever_field(R, "age");
    if (!rraw || !th || th->dtype != TS_BAGS || (tg && tg->dtype != TS_BAGS) || (ta && ta->dtype != TS_F32)) {
        ts_retriever_close(R);
        return ts_fail(e, "%s: the recall run's dataset is not a MovieLens next-watch dataset (type = "
                       "movielens: a `history` bag field and item_raw_id); train the recall stage "
                       "with experiments/movielens_youtube_dnn.ini", ts_cfg_where(cfg, "recall_run"));
    }
    if (S->K >= N) {
        ts_retriever_close(R);
        return ts_fail(e, "%s: candidates = %d, but the recall run scores only %d items: the "
                       "impressions would be every item, not its top K; give candidates < %d",
                       ts_cfg_where(cfg, "candidates"), S->K, N, N);
    }
    int K = S->K;
    int32_t *to_recall = malloc((size_t)S->nitems * sizeof *to_recall);   /* own -> recall item */
    int32_t *from_recall = malloc((size_t)N * sizeof *from_recall);
    for (int i = 0; to_recall && i < S->nitems; i++) to_recall[i] = -1;
    for (int j = 0; from_recall && to_recall && j < N; j++) {
        long k = find_i64(S->iraw, S->nitems, rraw[j]);
        from_recall[j] = (int32_t)k;
        if (k >= 0) to_recall[k] = j;
    }
    /* the steps to score: each user's ranking steps and the window before them */
    C->ncs = 0;
    for (int u = 0; u < S->nusers; u++) {
        long len = S->uoff[u + 1] - S->uoff[u], lo = len - 2 - train_steps - window;
        C->ncs += len - (lo < 1 ? 1 : lo);
    }
    C->cs_user = malloc((size_t)C->ncs * sizeof *C->cs_user);
    C->cs_pos = malloc((size_t)C->ncs * sizeof *C->cs_pos);
    C->cand = malloc((size_t)C->ncs * K * sizeof *C->cand);
    C->score = malloc((size_t)C->ncs * K * sizeof *C->score);
    float *s = malloc((size_t)B * N * sizeof *s);                           /* (B, N) */
    int32_t *hoff = malloc((size_t)(B + 1) * sizeof *hoff), *goff = malloc((size_t)(B + 1) * sizeof *goff);
    int32_t *hids = malloc((size_t)B * S->history * sizeof *hids);
    long gcap = (long)B * S->history * 32 + 1;
    int32_t *gids = malloc((size_t)gcap * sizeof *gids);
    float *age = calloc((size_t)B, sizeof *age);
    if (!to_recall || !from_recall || !C->cs_user || !C->cs_pos || !C->cand || !C->score || !s ||
        !hoff || !goff || !hids || !gids || !age) rc = ts_fail(e, "out of memory for the candidates");
    long c = 0;
    for (int u = 0; !rc && u < S->nusers; u++) {
        long len = S->uoff[u + 1] - S->uoff[u], lo = len - 2 - train_steps - window;
        for (long q = lo < 1 ? 1 : lo; q < len; q++, c++) { C->cs_user[c] = u; C->cs_pos[c] = (int32_t)q; }
    }
    for (long c0 = 0; !rc && c0 < C->ncs; c0 += B) {
        int b = (int)(C->ncs - c0 < B ? C->ncs - c0 : B);
        long gn = 0;
        hoff[0] = goff[0] = 0;
        for (int i = 0; i < b; i++) {
            int u = C->cs_user[c0 + i];
            long first = S->uoff[u], q = C->cs_pos[c0 + i], h0 = q > S->history ? q - S->history : 0;
            int32_t hn = 0;
            for (long h = h0; h < q; h++) {
                int32_t it = to_recall[S->witem[first + h]];
                if (it < 0) continue;
                hids[hoff[i] + hn++] = it;
                for (int32_t k = rgoff ? rgoff[it] : 0; rgoff && rgids && k < rgoff[it + 1] && gn < gcap; k++)
                    gids[gn++] = rgids[k];
            }
            hoff[i + 1] = hoff[i] + hn;
            goff[i + 1] = (int32_t)gn;
        }
        th->ids = hids; th->off = hoff;
        if (tg) { tg->ids = gids; tg->off = goff; }
        if (ta) ta->x = age;
        if (ts_retriever_score(R, b, s, NULL, &le)) { rc = ts_fail(e, "%s", le.msg); break; }
        for (int i = 0; i < b; i++) {
            int u = C->cs_user[c0 + i];
            long first = S->uoff[u], q = C->cs_pos[c0 + i];
            float *si = s + (size_t)i * N;
            for (long h = 0; h < q; h++) {                 /* every earlier watch excluded */
                int32_t it = to_recall[S->witem[first + h]];
                if (it >= 0) si[it] = -INFINITY;
            }
            int32_t top[1024];
            int m = ts_topk(si, N, K, top);
            for (int k = 0; k < K; k++) {
                C->cand[(c0 + i) * K + k] = k < m ? from_recall[top[k]] : -1;
                C->score[(c0 + i) * K + k] = k < m ? si[top[k]] : 0;
            }
        }
    }
    free(to_recall); free(from_recall); free(s); free(hoff); free(goff); free(hids); free(gids); free(age);
    ts_retriever_close(R);
    return rc;
}

static int rk_open(ts_data *D, const ts_cfg *cfg, ts_err *e)
{
    long K, tsteps, hist, recent, window;
    if (ts_cfg_int(cfg, "candidates", &K, e) || ts_cfg_int(cfg, "train_steps", &tsteps, e) ||
        ts_cfg_int(cfg, "history", &hist, e) || ts_cfg_int(cfg, "recent", &recent, e) ||
        ts_cfg_int(cfg, "impression_window", &window, e)) return -1;
    int unit = 0;
    if (ts_cfg_choice(cfg, "positive_weight", "rating|unit", &unit, e)) return -1;
    if (K < 1 || K > 1000) return ts_fail(e, "%s: candidates = %ld must lie in 1..1000", ts_cfg_where(cfg, "candidates"), K);
    if (tsteps < 1 || tsteps > 100000) return ts_fail(e, "%s: train_steps = %ld must lie in 1..100000", ts_cfg_where(cfg, "train_steps"), tsteps);
    if (hist < 1 || hist > 10000) return ts_fail(e, "%s: history = %ld must lie in 1..10000", ts_cfg_where(cfg, "history"), hist);
    if (recent < 1 || recent > hist) return ts_fail(e, "%s: recent = %ld must lie in 1..history (%ld)", ts_cfg_where(cfg, "recent"), recent, hist);
    if (window < 0 || window > 1000) return ts_fail(e, "%s: impression_window = %ld must lie in 0..1000", ts_cfg_where(cfg, "impression_window"), window);
    char dir[3000], name[3100], rp[3100], mp[3100];
    ts_ctx_path(D->ctx, ts_cfg_str(cfg, "path"), dir, sizeof dir);
    snprintf(name, sizeof name, "%s/ratings.csv", dir);
    ts_ctx_path(D->ctx, name, rp, sizeof rp);
    snprintf(name, sizeof name, "%s/movies.csv", dir);
    ts_ctx_path(D->ctx, name, mp, sizeof mp);
    rk_state *S = calloc(1, sizeof *S);
    if (!S) return ts_fail(e, "out of memory");
    D->state = S;
    S->history = (int)hist; S->recent = (int)recent; S->K = (int)K; S->unit_weight = unit;
    rk_row *rows = NULL;
    long n = 0;
    if (read_ratings(rp, &rows, &n, e)) { rk_close(D); return -1; }
    /* items: ascending movieId */
    int64_t *ids = malloc((size_t)n * sizeof *ids);
    if (!ids) { free(rows); rk_close(D); return ts_fail(e, "out of memory"); }
    for (long i = 0; i < n; i++) ids[i] = rows[i].item;
    qsort(ids, (size_t)n, sizeof *ids, cmp_i64);
    long ni = 0;
    for (long i = 0; i < n; i++) if (!ni || ids[ni - 1] != ids[i]) ids[ni++] = ids[i];
    S->iraw = ids;
    S->nitems = (int)ni;
    S->iraw32 = malloc((size_t)ni * sizeof *S->iraw32);
    for (long i = 0; S->iraw32 && i < ni; i++) S->iraw32[i] = (int32_t)ids[i];
    qsort(rows, (size_t)n, sizeof *rows, by_user_time);
    /* users with >= 3 watches */
    S->uoff = malloc(((size_t)n + 1) * sizeof *S->uoff);
    S->uraw = malloc(((size_t)n + 1) * sizeof *S->uraw);
    S->witem = malloc((size_t)n * sizeof *S->witem);
    S->wtime = malloc((size_t)n * sizeof *S->wtime);
    S->wrate = malloc((size_t)n * sizeof *S->wrate);
    if (!S->iraw32 || !S->uoff || !S->uraw || !S->witem || !S->wtime || !S->wrate) {
        free(rows); rk_close(D); return ts_fail(e, "out of memory");
    }
    long w = 0;
    S->uoff[0] = 0;
    for (long a = 0, b; a < n; a = b) {
        for (b = a; b < n && rows[b].user == rows[a].user; b++) {}
        if (b - a < 3) continue;
        for (long i = a; i < b; i++, w++) {
            S->witem[w] = (int32_t)find_i64(S->iraw, ni, rows[i].item);
            S->wtime[w] = rows[i].time;
            S->wrate[w] = rows[i].rating;
        }
        S->uraw[S->nusers++] = (int32_t)rows[a].user;
        S->uoff[S->nusers] = (int32_t)w;
    }
    free(rows);
    if (S->nusers == 0) { rk_close(D); return ts_fail(e, "%s: no user has 3 or more ratings", rp); }
    if (read_movies(S, mp, e)) { rk_close(D); return -1; }
    cands_t C = {0};
    int rc = recall_candidates(S, D->ctx, cfg, window, tsteps, &C, e);
    K = S->K;
    /* steps and rows */
    if (!rc) {
        for (int u = 0; u < S->nusers; u++) {
            long len = S->uoff[u + 1] - S->uoff[u], lo = len - 2 - tsteps;
            S->nsteps += len - (lo < 1 ? 1 : lo);
        }
        S->ntotal = S->nsteps * K;
        S->s_user = malloc((size_t)S->nsteps * sizeof *S->s_user);
        S->s_pos = malloc((size_t)S->nsteps * sizeof *S->s_pos);
        S->s_uraw = malloc((size_t)S->nsteps * sizeof *S->s_uraw);
        S->s_split = malloc((size_t)S->nsteps);
        S->r_step = malloc((size_t)S->ntotal * sizeof *S->r_step);
        S->r_item = malloc((size_t)S->ntotal * sizeof *S->r_item);
        S->r_raw = malloc((size_t)S->ntotal * NC * sizeof *S->r_raw);
        S->r_label = malloc((size_t)S->ntotal);
        if (!S->s_user || !S->s_pos || !S->s_uraw || !S->s_split || !S->r_step || !S->r_item ||
            !S->r_raw || !S->r_label) rc = ts_fail(e, "out of memory for %ld rows", S->ntotal);
    }
    /* per item, every watch time sorted: the popularity before a time */
    int32_t *poff = NULL;
    int64_t *ptime = NULL;
    if (!rc) {
        long nw = S->uoff[S->nusers];
        poff = calloc((size_t)S->nitems + 1, sizeof *poff);
        ptime = malloc((size_t)(nw ? nw : 1) * sizeof *ptime);
        int32_t *fill = calloc((size_t)S->nitems, sizeof *fill);
        if (!poff || !ptime || !fill) rc = ts_fail(e, "out of memory");
        for (long i = 0; !rc && i < nw; i++) poff[S->witem[i] + 1]++;
        for (int i = 0; !rc && i < S->nitems; i++) poff[i + 1] += poff[i];
        for (long i = 0; !rc && i < nw; i++) ptime[poff[S->witem[i]] + fill[S->witem[i]]++] = S->wtime[i];
        for (int i = 0; !rc && i < S->nitems; i++)
            qsort(ptime + poff[i], (size_t)(poff[i + 1] - poff[i]), sizeof *ptime, cmp_i64);
        free(fill);
    }
    int64_t *glast = !rc ? malloc((size_t)(S->ngenres + 1) * sizeof *glast) : NULL;
    int32_t *shown = !rc ? calloc((size_t)S->nitems, sizeof *shown) : NULL;
    if (!rc && (!glast || !shown)) rc = ts_fail(e, "out of memory");
    long st = 0, c = 0;
    int64_t t_lo = INT64_MAX, t_hi = INT64_MIN;
    for (int u = 0; !rc && u < S->nusers; u++) {
        long first = S->uoff[u], len = S->uoff[u + 1] - first, lo = len - 2 - tsteps;
        if (lo < 1) lo = 1;
        for (int g = 0; g <= S->ngenres; g++) glast[g] = INT64_MIN;
        long cfirst = c;                          /* this user's computed steps start here */
        long hpos = 0;                            /* watches folded into glast */
        for (; c < C.ncs && C.cs_user[c] == u; c++) {
            long q = C.cs_pos[c];
            /* shown before: the candidates of the previous `window` computed steps */
            if (c - cfirst > window) {
                long old = c - window - 1;
                for (long k = 0; k < K; k++) if (C.cand[old * K + k] >= 0) shown[C.cand[old * K + k]]--;
            }
            while (hpos < q) {                    /* genres of watches before q */
                int32_t it = S->witem[first + hpos];
                for (int32_t k = S->goff[it]; k < S->goff[it + 1]; k++) glast[S->gids[k]] = S->wtime[first + hpos];
                hpos++;
            }
            if (q >= lo) {
                int64_t t = S->wtime[first + q];
                S->s_user[st] = u;
                S->s_pos[st] = (int32_t)q;
                S->s_uraw[st] = S->uraw[u];
                S->s_split[st] = q == len - 1 ? TS_TEST : q == len - 2 ? TS_VALID : TS_TRAIN;
                if (S->s_split[st] == TS_TRAIN) { if (t < t_lo) t_lo = t; if (t > t_hi) t_hi = t; }
                for (long k = 0; k < K; k++) {
                    long r = st * K + k;
                    int32_t it = C.cand[c * K + k];
                    float *x = S->r_raw + r * NC;
                    S->r_step[r] = (int32_t)st;
                    S->r_item[r] = it;
                    S->r_label[r] = it >= 0 && it == S->witem[first + q];
                    int64_t gl = INT64_MIN;
                    for (int32_t j = it >= 0 ? S->goff[it] : 0; it >= 0 && j < S->goff[it + 1]; j++)
                        if (glast[S->gids[j]] > gl) gl = glast[S->gids[j]];
                    long pb = 0;
                    if (it >= 0) {                /* watches of it strictly before t */
                        long a = poff[it], b = poff[it + 1];
                        while (a < b) { long m = (a + b) / 2; if (ptime[m] < t) a = m + 1; else b = m; }
                        pb = a - poff[it];
                    }
                    x[0] = C.score[c * K + k];
                    x[1] = (float)(k + 1);
                    x[2] = gl == INT64_MIN ? NEVER_DAYS : (float)((double)(t - gl) / 86400.0);
                    x[3] = it >= 0 ? (float)shown[it] : 0;
                    x[4] = (float)log1p((double)pb);
                    x[5] = (float)q;
                    x[6] = (float)t;              /* the example age, set below */
                }
                st++;
            }
            for (long k = 0; k < K; k++) if (C.cand[c * K + k] >= 0) shown[C.cand[c * K + k]]++;
        }
        for (long cc = c - window < cfirst ? cfirst : c - window; cc < c; cc++)   /* back to 0 */
            for (long k = 0; k < K; k++) if (C.cand[cc * K + k] >= 0) shown[C.cand[cc * K + k]]--;
    }
    free(poff); free(ptime); free(glast); free(shown);
    free(C.cs_user); free(C.cs_pos); free(C.cand); free(C.score);
    if (rc) { rk_close(D); return -1; }
    double span = t_hi > t_lo ? (double)(t_hi - t_lo) : 1.0;
    for (long st2 = 0; st2 < S->nsteps; st2++) {
        int train = S->s_split[st2] == TS_TRAIN;
        S->nstep_split[S->s_split[st2]]++;
        for (long k = 0; k < K; k++) {
            float *x = S->r_raw + (st2 * K + k) * NC;
            x[6] = train ? (float)(((double)t_hi - (double)x[6]) / span) : 0.0f;
        }
    }
    /* the training rows' quantiles; rows per split */
    for (int sp = 0; sp < 3; sp++) {
        S->nrows[sp] = S->nstep_split[sp] * K;
        S->r_base[sp] = malloc((size_t)(S->nrows[sp] ? S->nrows[sp] : 1) * sizeof(long));
        if (!S->r_base[sp]) { rk_close(D); return ts_fail(e, "out of memory"); }
        long m = 0;
        for (long r = 0; r < S->ntotal; r++) if (S->s_split[S->r_step[r]] == sp) S->r_base[sp][m++] = r;
    }
    S->nq = S->nrows[TS_TRAIN];
    S->q_sorted = malloc((size_t)NC * (S->nq ? S->nq : 1) * sizeof *S->q_sorted);
    if (!S->q_sorted) { rk_close(D); return ts_fail(e, "out of memory"); }
    for (int f = 0; f < NC; f++) {
        float *v = S->q_sorted + (size_t)f * S->nq;
        for (long i = 0; i < S->nq; i++) v[i] = S->r_raw[S->r_base[TS_TRAIN][i] * NC + f];
        qsort(v, (size_t)S->nq, sizeof *v, cmp_f);
    }
    /* fields */
    int B = ts_ctx_max_batch(D->ctx), one[1] = {1}, nc3[1] = {3 * NC}, nc[1] = {NC};
    if (B < 1) B = 1;
    int maxg = 0;
    for (int i = 0; i < S->nitems; i++) if (S->goff[i + 1] - S->goff[i] > maxg) maxg = S->goff[i + 1] - S->goff[i];
    S->b_item = malloc((size_t)B * sizeof(int32_t));
    S->b_step = malloc((size_t)B * sizeof(int32_t));
    S->h_off = malloc((size_t)(B + 1) * sizeof(int32_t));
    S->h_ids = malloc((size_t)B * S->history * sizeof(int32_t));
    S->c_off = malloc((size_t)(B + 1) * sizeof(int32_t));
    S->c_ids = malloc((size_t)B * S->recent * sizeof(int32_t));
    S->g_off = malloc((size_t)(B + 1) * sizeof(int32_t));
    S->g_ids = malloc(((size_t)B * maxg + 1) * sizeof(int32_t));
    S->b_cont = malloc((size_t)B * 3 * NC * sizeof(float));
    S->b_raw = malloc((size_t)B * NC * sizeof(float));
    S->b_label = malloc((size_t)B * sizeof(float));
    S->b_weight = malloc((size_t)B * sizeof(float));
    S->b_score = malloc((size_t)B * sizeof(float));
    S->b_pop = malloc((size_t)B * sizeof(float));
    if (!S->b_item || !S->b_step || !S->h_off || !S->h_ids || !S->c_off || !S->c_ids || !S->g_off ||
        !S->g_ids || !S->b_cont || !S->b_raw || !S->b_label || !S->b_weight || !S->b_score || !S->b_pop) {
        rk_close(D);
        return ts_fail(e, "out of memory");
    }
    if (!(S->t_item = ts_data_field(D, "item", TS_I32, 2, one, S->nitems, e)) ||
        !(S->t_hist = ts_data_field(D, "history", TS_BAGS, 2, one, S->nitems, e)) ||
        !(S->t_recent = ts_data_field(D, "recent", TS_BAGS, 2, one, S->nitems, e)) ||
        !(S->t_genres = ts_data_field(D, "item_genres", TS_BAGS, 2, one, S->ngenres > 0 ? S->ngenres : 1, e)) ||
        !(S->t_cont = ts_data_field(D, "cont", TS_F32, 2, nc3, 0, e)) ||
        !(S->t_raw = ts_data_field(D, "raw", TS_F32, 2, nc, 0, e)) ||
        !(S->t_label = ts_data_field(D, "label", TS_F32, 2, one, 0, e)) ||
        !(S->t_weight = ts_data_field(D, "weight", TS_F32, 2, one, 0, e)) ||
        !(S->t_step = ts_data_field(D, "step", TS_I32, 2, one, S->nsteps > 0 ? S->nsteps : 1, e)) ||
        !(S->t_score = ts_data_field(D, "recall_score", TS_F32, 2, one, 0, e)) ||
        !(S->t_pop = ts_data_field(D, "popularity", TS_F32, 2, one, 0, e)) ||
        ts_data_label(D, "label", e)) {
        rk_close(D);
        return -1;
    }
    for (int sp = 0; sp < 3; sp++) D->nrows[sp] = S->nrows[sp];
    return 0;
}

static int rk_batch(ts_data *D, ts_phase split, const long *rows, int n, ts_err *e)
{
    rk_state *S = D->state;
    long hn = 0, cn = 0, gn = 0;
    S->h_off[0] = S->c_off[0] = S->g_off[0] = 0;
    for (int i = 0; i < n; i++) {
        if (rows[i] < 0 || rows[i] >= S->nrows[split])
            return ts_fail(e, "movielens_ranking: row %ld outside split %d", rows[i], (int)split);
        long r = S->r_base[split][rows[i]];
        int32_t st = S->r_step[r], it = S->r_item[r], u = S->s_user[st], q = S->s_pos[st];
        long first = S->uoff[u];
        S->b_item[i] = it >= 0 ? it : 0;
        S->b_step[i] = st;
        for (long h = q > S->history ? q - S->history : 0; h < q; h++) S->h_ids[hn++] = S->witem[first + h];
        S->h_off[i + 1] = (int32_t)hn;
        for (long h = q > S->recent ? q - S->recent : 0; h < q; h++) S->c_ids[cn++] = S->witem[first + h];
        S->c_off[i + 1] = (int32_t)cn;
        for (int32_t k = it >= 0 ? S->goff[it] : 0; it >= 0 && k < S->goff[it + 1]; k++) S->g_ids[gn++] = S->gids[k];
        S->g_off[i + 1] = (int32_t)gn;
        const float *x = S->r_raw + r * NC;
        for (int f = 0; f < NC; f++) {
            float qv = quantile(S->q_sorted + (size_t)f * S->nq, S->nq, x[f]);
            S->b_raw[i * NC + f] = x[f];
            S->b_cont[i * 3 * NC + 3 * f] = qv;
            S->b_cont[i * 3 * NC + 3 * f + 1] = qv * qv;
            S->b_cont[i * 3 * NC + 3 * f + 2] = sqrtf(qv);
        }
        S->b_label[i] = S->r_label[r] ? 1.0f : 0.0f;
        S->b_weight[i] = S->r_label[r] && !S->unit_weight ? S->wrate[first + q] : 1.0f;
        S->b_score[i] = x[0];
        S->b_pop[i] = x[4];
    }
    S->t_item->ids = S->b_item; S->t_step->ids = S->b_step;
    S->t_hist->ids = S->h_ids; S->t_hist->off = S->h_off;
    S->t_recent->ids = S->c_ids; S->t_recent->off = S->c_off;
    S->t_genres->ids = S->g_ids; S->t_genres->off = S->g_off;
    S->t_cont->x = S->b_cont; S->t_raw->x = S->b_raw; S->t_label->x = S->b_label;
    S->t_weight->x = S->b_weight; S->t_score->x = S->b_score; S->t_pop->x = S->b_pop;
    ts_tensor *all[] = {S->t_item, S->t_hist, S->t_recent, S->t_genres, S->t_cont, S->t_raw,
                        S->t_label, S->t_weight, S->t_step, S->t_score, S->t_pop};
    for (size_t k = 0; k < sizeof all / sizeof *all; k++) all[k]->dim[0] = n;
    return 0;
}

static int rk_aux(ts_data *D, const char *name, const void **ptr, long *n)
{
    rk_state *S = D->state;
    if (!strcmp(name, "item_raw_id")) { *ptr = S->iraw32; *n = S->nitems; }
    else if (!strcmp(name, "step_user")) { *ptr = S->s_uraw; *n = S->nsteps; }
    else if (!strcmp(name, "step_pos")) { *ptr = S->s_pos; *n = S->nsteps; }
    else if (!strcmp(name, "nsteps")) { *ptr = &S->nsteps; *n = 1; }
    else if (!strcmp(name, "candidates")) { S->kaux = S->K; *ptr = &S->kaux; *n = 1; }
    else if (!strcmp(name, "item_title") && S->title) { *ptr = S->title; *n = S->nitems; }
    else return -1;
    return 0;
}

static const ts_dataset_ops ops = {.size = sizeof(ts_dataset_ops),
    .open = rk_open, .batch = rk_batch, .aux = rk_aux, .close = rk_close,
    .concurrency = TS_BRANCH_SAFE};   /* batch() fills the fields only */
static const ts_plugin plugin = {TS_ABI, sizeof(ts_plugin), TS_DATASET, "movielens_ranking", "1.0",
    "MovieLens ranking data: each user step's recall top-K impressions with the YouTube DNN's "
    "ranking features", keys, &ops};
const ts_plugin *tessera_plugin_entry(uint32_t i) { return i == 0 ? &plugin : NULL; }
