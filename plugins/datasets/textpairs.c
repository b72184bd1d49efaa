/* textpairs.c — query/document text pairs with DSSM word hashing (WordNet glosses, WikiQA).
 *
 * What it is for: the data of the semantic matching models (DSSM, CNN-DSSM, LSTM-DSSM) and of the
 * BM25 baseline. Word hashing follows Huang et al. (CIKM 2013): a word is lower-cased, wrapped as
 * "#word#" and cut into letter trigrams ("#go", "goo", "ood", "od#"); the trigram vocabulary is the
 * vocab_cap most frequent trigrams of the TRAINING split (ties by byte order), unseen trigrams are
 * dropped. A word is a run of ASCII letters and digits and of bytes >= 0x80 (UTF-8 letters travel
 * as bytes); everything else separates words.
 *   format = wordnet: one row per synset `synset_id pos lemmas definition examples`; query = the
 *     definition, document = the lemmas ('_' -> ' '); a split_seed shuffle holds out test_size
 *     synsets as test and valid_size as validation; label 1; qid = the row.
 *   format = wikiqa: the three WikiQA files (header, CRLF, `QuestionID Question DocumentID
 *     DocumentTitle SentenceID Sentence Label`); qid = the question, label 0/1 as given.
 *   format = tsv: any three files of the same layout (train, valid, test: path, valid_path,
 *     test_path) whose columns are named by query_column, doc_column, label_column and
 *     group_column: names of a header line, or 0-based numbers for a file without one (header =
 *     auto: the first line is a header when it holds every named column); separator as in csv.
 *     qid = the group column's value (default: the query text); label a number as given.
 * Queries and documents are cut to max_words / doc_max_words words for the neural fields; the
 * *_words fields (BM25) hold the whole text. aux "report" says how many texts were cut, which the
 * host logs and writes into metrics.json (train.data.*).
 * Fields (B rows): query, doc      BAGS (B, max_words) trigram ids per word, len = words (>= 1)
 *                  label           F32 (B, 1)
 *                  qid, doc_id     I32 (B, 1) the query group; the distinct (lower-cased) document
 *                  query_words, doc_words  BAGS (B, 1) word ids of the whole text (for BM25)
 *                  position        F32 (B, 1) the row's place among its group's rows in its file
 *                                  (0 = the question's first candidate; WordNet: always 0)
 * aux: "doc_freq" (int32 per word: distinct training documents containing it), "doc_count"
 * (int32[1]: distinct training documents), "doc_length_mean" (double[1]: their mean number of
 * words, BM25's avgdl), "trigram_keys" (int32 per trigram id: its three bytes
 * b0<<16 | b1<<8 | b2), "skipped_rows" (long[1]), "report" (text: "name value" lines).
 * What it is not: a tokenizer with stemming or stop words.
 */
#include <ctype.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tessera.h"

/* ---- interned strings: one ts_strtab, a space per kind, ids dense in order of appearance -- */
enum { SP_WORDS, SP_QUERIES, SP_DOCS, SP_QIDS, SP_DOCHASH };

/* The id of s[0..n) in space sp, added if new (*added = 1); -1 when out of memory. */
static int32_t intern(ts_strtab *t, int32_t sp, const char *s, size_t n, int *added)
{
    int32_t before = ts_strtab_count(t, sp);
    int32_t id = ts_strtab_id(t, sp, s, n, 1);
    *added = id == before;
    return id < 0 ? -1 : id;
}

/* ---- growable int32 arrays ---------------------------------------------------------------- */
typedef struct { int32_t *v; long n, cap; } ivec;

static int ipush(ivec *a, int32_t x)
{
    if (a->n == a->cap) {
        long nc = a->cap ? a->cap * 2 : 4096;
        int32_t *nv = realloc(a->v, (size_t)nc * sizeof *nv);
        if (!nv) return -1;
        a->v = nv; a->cap = nc;
    }
    a->v[a->n++] = x;
    return 0;
}

/* ---- the dataset ------------------------------------------------------------------------- */
typedef struct { int32_t q, d, qid; float label; int32_t pos; } example;

typedef struct {
    int T, Td;                   /* words kept per query (max_words) / document (doc_max_words) */
    ts_strtab *tab;              /* words, queries, docs, qids: one space each (SP_) */
    ivec qw_off, qw, dw_off, dw; /* word ids of each distinct query / document text */
    ivec tri_off, tri;           /* (nwords + 1) offsets, trigram ids of each word */
    int32_t *tri_keys;           /* (ntri) packed bytes of trigram id */
    int32_t ntri;
    int32_t *doc_freq, doc_count;
    double doc_length_mean;      /* words per distinct training document (BM25's avgdl) */
    long skipped;            /* bad rows skipped under skip_bad_rows */
    /* The fitted state (what training fitted; read back to apply or resume a run): */
    int apply;               /* opened to apply a run: the one file given is the test split */
    int predict;             /* ... and its labels may be absent (0) */
    int fitted;              /* a fitted state was given: nothing is refitted */
    int32_t nw_fit, nq_fit, nd_fit;   /* given: training's words, query groups, documents */
    int32_t ndf;             /* doc_freq entries (training's words) */
    ivec doc_gid;            /* each document text's id: training's (by a hash of its text), a
                                new text past nd_fit */
    int32_t nd_new;          /* new document texts so far */
    char *state;             /* the fitted state's text (fitted()) */
    size_t nstate;
    char report[512];        /* aux "report": "name value" lines about what was cut */
    example *ex[3]; long nex[3], cap[3];
    /* batch buffers, for the largest batch */
    int32_t *q_off, *q_ids, *q_len, *d_off, *d_ids, *d_len;
    int32_t *qw_boff, *qw_bids, *dw_boff, *dw_bids;
    int32_t *qid_b, *doc_b;
    float *label_b, *pos_b;
    ts_tensor *f_query, *f_doc, *f_label, *f_qid, *f_doc_id, *f_qw, *f_dw;  /* the fields */
    ts_tensor *f_pos;
} tp_state;

static int is_word_byte(unsigned char c) { return isalnum(c) || c >= 0x80; }

/* Appends the word ids of text s to (off, ids) and returns 0; -1 when out of memory. */
static int tokenize(tp_state *S, const char *s, ivec *off, ivec *ids)
{
    char w[256];
    size_t i = 0, n = strlen(s);
    if (off->n == 0 && ipush(off, 0)) return -1;
    while (i < n) {
        while (i < n && !is_word_byte((unsigned char)s[i])) i++;
        size_t k = 0;
        while (i < n && is_word_byte((unsigned char)s[i])) {
            if (k < sizeof w - 1) w[k++] = (char)tolower((unsigned char)s[i]);  /* longer: cut */
            i++;
        }
        if (k == 0) break;
        int added;
        int32_t id = intern(S->tab, SP_WORDS, w, k, &added);
        if (id < 0 || ipush(ids, id)) return -1;
    }
    return ipush(off, (int32_t)ids->n);
}

/* Interns a text (lower-cased identity) into tab, tokenizing it the first time it is seen. */
static int32_t add_text(tp_state *S, int32_t sp, ivec *off, ivec *ids, char *s)
{
    for (char *p = s; *p; p++) *p = (char)tolower((unsigned char)*p);
    int added;
    int32_t id = intern(S->tab, sp, s, strlen(s), &added);
    if (id < 0) return -1;
    if (added && tokenize(S, s, off, ids)) return -1;
    return id;
}

/* A 64-bit hash of a text (FNV-1a, then splitmix64's finaliser), as 16 hex digits in out[17]. */
static void text_hash(const char *t, char *out)
{
    uint64_t h = 0xcbf29ce484222325ull;
    for (const unsigned char *p = (const unsigned char *)t; *p; p++) h = (h ^ *p) * 0x100000001b3ull;
    h ^= h >> 30; h *= 0xbf58476d1ce4e5b9ull; h ^= h >> 27; h *= 0x94d049bb133111ebull; h ^= h >> 31;
    snprintf(out, 17, "%016llx", (unsigned long long)h);
}

/* Interns a document text; the first time, its id: the same as in training when the fitted
 * state knows the text, a new one past training's otherwise (identity without a state). */
static int32_t add_doc(tp_state *S, char *s)
{
    int32_t d = add_text(S, SP_DOCS, &S->dw_off, &S->dw, s);
    if (d < 0 || d < S->doc_gid.n) return d;
    int32_t g = d;
    if (S->fitted) {
        char hx[17];
        text_hash(ts_strtab_str(S->tab, SP_DOCS, d), hx);
        g = ts_strtab_id(S->tab, SP_DOCHASH, hx, 16, 0);
        if (g < 0) g = S->nd_fit + S->nd_new++;
    }
    return ipush(&S->doc_gid, g) ? -1 : d;
}

static int add_example(tp_state *S, int split, int32_t q, int32_t d, int32_t qid, float label)
{
    if (S->nex[split] == S->cap[split]) {
        long nc = S->cap[split] ? S->cap[split] * 2 : 4096;
        example *ne = realloc(S->ex[split], (size_t)nc * sizeof *ne);
        if (!ne) return -1;
        S->ex[split] = ne; S->cap[split] = nc;
    }
    S->ex[split][S->nex[split]++] = (example){q, d, qid, label, 0};
    return 0;
}

#define OOM(e) ts_fail(e, "textpairs: out of memory while reading the data")

/* WordNet rows `synset_id pos lemmas definition examples`; split by a split_seed shuffle. */
static int read_wordnet(tp_state *S, const char *path, long test_size, long valid_size,
                        uint64_t seed, int skip_bad, ts_err *e)
{
    ts_lines *r = ts_lines_open(path, e);
    if (!r) return -1;
    example *all = NULL;
    long n = 0, cap = 0;
    char *line, *f[8];
    size_t len;
    while ((line = ts_lines_next(r, &len))) {
        long ln = ts_lines_lineno(r);
        if (ln == 1 && strncmp(line, "synset_id\t", 10) == 0) continue;
        if (len == 0) continue;
        int nf = ts_split(line, "\t", f, 6);
        if (nf < 4 || nf > 5 || !f[2][0]) {
            if (skip_bad) { S->skipped++; continue; }
            ts_lines_close(r); free(all);
            return ts_fail(e, "%s:%ld: expected 5 tab-separated fields (synset_id pos lemmas "
                           "definition examples) with lemmas, found %d; fix or delete the row, or "
                           "set skip_bad_rows = true", path, ln, nf);
        }
        for (char *p = f[2]; *p; p++) if (*p == '_') *p = ' ';
        int32_t d = add_doc(S, f[2]);
        int32_t q = add_text(S, SP_QUERIES, &S->qw_off, &S->qw, f[3]);
        if (d < 0 || q < 0) { ts_lines_close(r); free(all); return OOM(e); }
        if (n == cap) {
            cap = cap ? cap * 2 : 1024;   /* doubling: a tiny file costs kilobytes */
            example *na = realloc(all, (size_t)cap * sizeof *na);
            if (!na) { ts_lines_close(r); free(all); return OOM(e); }
            all = na;
        }
        all[n] = (example){q, d, (int32_t)n, 1.0f, 0};
        n++;
    }
    int bad = ts_lines_error(r, e);
    ts_lines_close(r);
    if (bad) { free(all); return -1; }
    if (S->apply) {                      /* applying a run: every synset of the file is test */
        int rc = 0;
        for (long i = 0; i < n && !rc; i++)
            rc = add_example(S, TS_TEST, all[i].q, all[i].d, all[i].qid, 1.0f);
        free(all);
        if (rc) return OOM(e);
        return n ? 0 : ts_fail(e, "%s: no synset rows", path);
    }
    if (test_size < 1 || valid_size < 0 || test_size + valid_size >= n) {
        free(all);
        return ts_fail(e, "%s: %ld synsets cannot hold test_size = %ld and valid_size = %ld with "
                       "rows left to train on; lower them", path, n, test_size, valid_size);
    }
    long *perm = malloc((size_t)n * sizeof *perm);
    char *where = malloc((size_t)n);
    if (!perm || !where) { free(all); free(perm); free(where); return OOM(e); }
    for (long i = 0; i < n; i++) perm[i] = i;
    ts_rng rng;
    ts_rng_seed(&rng, seed);
    ts_rng_shuffle(&rng, perm, n);
    for (long i = 0; i < n; i++)
        where[perm[i]] = i < test_size ? TS_TEST : i < test_size + valid_size ? TS_VALID : TS_TRAIN;
    int rc = 0;
    for (long i = 0; i < n && !rc; i++)  /* file order inside each split */
        rc = add_example(S, where[i], all[i].q, all[i].d, all[i].qid, 1.0f);
    free(perm); free(where); free(all);
    return rc ? OOM(e) : 0;
}

/* One WikiQA file: a header, then
 * `QuestionID Question DocumentID DocumentTitle SentenceID Sentence Label`. */
static int read_wikiqa(tp_state *S, const char *path, int split, int skip_bad, ts_err *e)
{
    ts_lines *r = ts_lines_open(path, e);
    if (!r) return -1;
    char *line, *f[9];
    size_t len;
    long rows = 0;
    while ((line = ts_lines_next(r, &len))) {
        long ln = ts_lines_lineno(r);
        if (ln == 1 && strncmp(line, "QuestionID\t", 11) == 0) continue;
        if (len == 0) continue;
        int nf = ts_split(line, "\t", f, 8);
        int bad = nf != 7 || !((f[6][0] == '0' || f[6][0] == '1') && f[6][1] == '\0');
        if (S->predict && nf == 6) bad = 0, f[6] = "0";   /* predict: the label may be absent */
        if (bad) {
            if (skip_bad) { S->skipped++; continue; }
            ts_lines_close(r);
            return ts_fail(e, "%s:%ld: expected 7 tab-separated fields ending in a 0/1 label%s, "
                           "found %d fields; fix or delete the row, or set skip_bad_rows = true",
                           path, ln, S->predict ? " (or 6 without it)" : "", nf);
        }
        int added;
        int32_t qid = intern(S->tab, SP_QIDS, f[0], strlen(f[0]), &added);
        int32_t q = add_text(S, SP_QUERIES, &S->qw_off, &S->qw, f[1]);
        int32_t d = add_doc(S, f[5]);
        if (qid < 0 || q < 0 || d < 0 || add_example(S, split, q, d, qid, f[6][0] == '1'))
            { ts_lines_close(r); return OOM(e); }
        rows++;
    }
    int bad = ts_lines_error(r, e);
    ts_lines_close(r);
    if (bad) return -1;
    if (rows == 0)
        return ts_fail(e, "%s: no question-sentence rows; is this a WikiQA .tsv(.gz) file?", path);
    return 0;
}

/* The columns of format = tsv, resolved against a file's first line. */
typedef struct {
    const char *name[4];     /* query, doc, label, group ("" = none) */
    int col[4];              /* their 0-based positions */
    const char *sep;
    int header;              /* -1 auto, 0 no, 1 yes */
} tsv_layout;

/* Finds the columns in the first line (split into f[0..nf)); 1 when that line is a header. */
static int tsv_columns(tsv_layout *L, char **f, int nf, const char *path, int label_optional,
                       ts_err *e)
{
    static const char *const what[4] = {"query_column", "doc_column", "label_column", "group_column"};
    int by_name = 0, all_named = 1;
    for (int k = 0; k < 4; k++) {
        if (!*L->name[k]) { L->col[k] = -1; continue; }
        char *end;
        long c = strtol(L->name[k], &end, 10);
        int numeric = *end == 0 && c >= 0;
        L->col[k] = -1;
        for (int j = 0; j < nf; j++)
            if (!strcmp(f[j], L->name[k])) L->col[k] = j;
        if (L->col[k] < 0) {
            all_named = 0;
            if (numeric) L->col[k] = (int)c;
        } else {
            by_name = 1;
        }
    }
    int header = L->header >= 0 ? L->header : all_named && by_name;
    for (int k = 0; k < 4; k++) {
        if (!*L->name[k]) continue;
        if (header) {
            L->col[k] = -1;
            for (int j = 0; j < nf; j++)
                if (!strcmp(f[j], L->name[k])) L->col[k] = j;
        }
        if (k == 2 && label_optional && (L->col[k] < 0 || L->col[k] >= nf)) {
            L->col[k] = -1;                 /* predict: no label column, labels 0 */
            continue;
        }
        if (L->col[k] < 0 || L->col[k] >= nf) {
            char found[300] = "";
            size_t o = 0;
            for (int j = 0; j < nf && o + 40 < sizeof found; j++)
                o += (size_t)snprintf(found + o, sizeof found - o, "%s\"%.30s\"", j ? ", " : "", f[j]);
            return ts_fail(e, "%s:1: [data] %s = %s names no column of the file (its first line "
                           "holds %d fields: %s); name a column of the header, or give a 0-based "
                           "number for a file without one", path, what[k], L->name[k], nf, found);
        }
    }
    return header;
}

/* A file of format = tsv into split. */
static int read_tsv(tp_state *S, const char *path, int split, tsv_layout *L, int skip_bad,
                    ts_err *e)
{
    ts_lines *r = ts_lines_open(path, e);
    if (!r) return -1;
    char *line, **f = NULL;
    size_t len;
    long rows = 0;
    int nfmax = 0, ncol = 0, rc = 0;
    while ((line = ts_lines_next(r, &len)) && !rc) {
        long ln = ts_lines_lineno(r);
        if (len == 0) continue;
        if (!f) {                           /* the first line fixes the columns */
            nfmax = 1;
            for (const char *p = strstr(line, L->sep); p; p = strstr(p + strlen(L->sep), L->sep)) nfmax++;
            if (!(f = malloc((size_t)(nfmax + 1) * sizeof *f))) { rc = OOM(e); break; }
            char *copy = strdup(line);
            if (!copy) { rc = OOM(e); break; }
            ncol = ts_split(copy, L->sep, f, nfmax);
            int h = tsv_columns(L, f, ncol, path, S->predict, e);
            free(copy);
            if (h < 0) { rc = -1; break; }
            if (h) continue;
        }
        int nf = ts_split(line, L->sep, f, nfmax);
        const char *why = NULL;
        char *end = NULL;
        double label = 0;
        if (nf != ncol) why = "a field count other than the first line's";
        else if (L->col[2] >= 0) {
            label = strtod(f[L->col[2]], &end);
            if (end == f[L->col[2]] || *end || label != label) why = "a label that is not a number";
        }
        if (why) {
            if (skip_bad) { S->skipped++; continue; }
            rc = ts_fail(e, "%s:%ld: %s (%d fields, the first line has %d); fix or delete the "
                         "row, or set skip_bad_rows = true", path, ln, why, nf, ncol);
            break;
        }
        const char *g = L->col[3] >= 0 ? f[L->col[3]] : f[L->col[0]];
        int added;
        char gbuf[1024];
        snprintf(gbuf, sizeof gbuf, "%s", g);    /* add_text lower-cases the query in place */
        int32_t qid = intern(S->tab, SP_QIDS, gbuf, strlen(gbuf), &added);
        int32_t q = add_text(S, SP_QUERIES, &S->qw_off, &S->qw, f[L->col[0]]);
        int32_t d = add_doc(S, f[L->col[1]]);
        if (qid < 0 || q < 0 || d < 0 || add_example(S, split, q, d, qid, (float)label))
            { rc = OOM(e); break; }
        rows++;
    }
    if (!rc) rc = ts_lines_error(r, e);
    ts_lines_close(r);
    free(f);
    if (!rc && rows == 0)
        rc = ts_fail(e, "%s: no query-document rows (a header alone, or every row skipped)", path);
    return rc;
}

typedef struct { uint32_t key; long count; } tri_count;

static int by_count(const void *a, const void *b)
{
    const tri_count *x = a, *y = b;
    if (x->count != y->count) return x->count < y->count ? 1 : -1;
    return (x->key > y->key) - (x->key < y->key);
}

static uint32_t tri_key(const char *w, size_t k, size_t i)  /* trigram i of "#w#" */
{
    unsigned char c[3];
    for (int j = 0; j < 3; j++) {
        size_t p = i + (size_t)j;  /* position in "#w#" */
        c[j] = p == 0 || p == k + 1 ? '#' : (unsigned char)w[p - 1];
    }
    return (uint32_t)c[0] << 16 | (uint32_t)c[1] << 8 | c[2];
}

/* Counts trigrams over the training texts (each word occurrence counts), keeps the vocab_cap
 * most frequent, and lists each word's trigram ids (repeats kept: the hashing vector counts). */
static int build_trigrams(tp_state *S, long vocab_cap, ts_err *e)
{
    int32_t nw = ts_strtab_count(S->tab, SP_WORDS);
    long *wc = calloc((size_t)nw + 1, sizeof *wc);
    if (!wc) return OOM(e);
    for (long i = 0; i < S->nex[TS_TRAIN]; i++) {
        const example *x = &S->ex[TS_TRAIN][i];
        for (int32_t k = S->qw_off.v[x->q]; k < S->qw_off.v[x->q + 1]; k++) wc[S->qw.v[k]]++;
        for (int32_t k = S->dw_off.v[x->d]; k < S->dw_off.v[x->d + 1]; k++) wc[S->dw.v[k]]++;
    }
    /* trigram -> count in an open-addressing table of (key + 1), at most half full: sized by
     * the trigrams the training words can hold (a word of k bytes has k), up to 2^20 slots, so a
     * small file does not pay for 2^20 slots three times over */
    const uint32_t max_slots = 1u << 20;
    size_t bound = 0;
    for (int32_t w = 0; w < nw; w++)
        if (wc[w]) bound += strlen(ts_strtab_str(S->tab, SP_WORDS, w));
    uint32_t ns = 1024;
    while (ns < max_slots && (size_t)ns < 2 * bound + 2) ns *= 2;
    tri_count *tab = calloc(ns, sizeof *tab);
    if (!tab) { free(wc); return OOM(e); }
    long distinct = 0;
    for (int32_t w = 0; w < nw; w++) {
        if (!wc[w]) continue;
        const char *s = ts_strtab_str(S->tab, SP_WORDS, w);
        size_t k = strlen(s);
        for (size_t i = 0; i < k; i++) {
            uint32_t key = tri_key(s, k, i) + 1, h = (key * 2654435761u) & (ns - 1);
            while (tab[h].key && tab[h].key != key) h = (h + 1) & (ns - 1);
            if (!tab[h].key) { tab[h].key = key; distinct++; }
            tab[h].count += wc[w];
            if (distinct > (long)max_slots / 2) {
                free(wc); free(tab);
                return ts_fail(e, "textpairs: more than %u distinct letter trigrams in the "
                               "training texts; is this natural-language text?", max_slots / 2);
            }
        }
    }
    free(wc);
    long m = 0;
    for (uint32_t h = 0; h < ns; h++) if (tab[h].key) tab[m++] = tab[h];
    qsort(tab, (size_t)m, sizeof *tab, by_count);
    S->ntri = (int32_t)(m < vocab_cap ? m : vocab_cap);
    if (S->ntri == 0) {
        free(tab);
        return ts_fail(e, "textpairs: the training texts hold no words; check the data files");
    }
    S->tri_keys = malloc((size_t)S->ntri * sizeof *S->tri_keys);
    if (!S->tri_keys) { free(tab); return OOM(e); }
    for (int32_t i = 0; i < S->ntri; i++) S->tri_keys[i] = (int32_t)(tab[i].key - 1);
    free(tab);
    return 0;
}

/* Lists each word's trigram ids under the vocabulary tri_keys (fitted or given); trigrams
 * outside it are dropped. */
static int map_trigrams(tp_state *S, ts_err *e)
{
    int32_t nw = ts_strtab_count(S->tab, SP_WORDS);
    uint32_t ns = 1024;
    while (ns < 2u * (uint32_t)S->ntri + 2) ns *= 2;
    int32_t *id_of = malloc(ns * sizeof *id_of);    /* key -> id, open addressing */
    uint32_t *key_at = calloc(ns, sizeof *key_at);
    if (!id_of || !key_at) { free(id_of); free(key_at); return OOM(e); }
    for (int32_t i = 0; i < S->ntri; i++) {
        uint32_t key = (uint32_t)S->tri_keys[i] + 1, h = (key * 2654435761u) & (ns - 1);
        while (key_at[h]) h = (h + 1) & (ns - 1);
        key_at[h] = key;
        id_of[h] = i;
    }
    int rc = ipush(&S->tri_off, 0);
    for (int32_t w = 0; w < nw && !rc; w++) {
        const char *s = ts_strtab_str(S->tab, SP_WORDS, w);
        size_t k = strlen(s);
        for (size_t i = 0; i < k && !rc; i++) {
            uint32_t key = tri_key(s, k, i) + 1, h = (key * 2654435761u) & (ns - 1);
            while (key_at[h] && key_at[h] != key) h = (h + 1) & (ns - 1);
            if (key_at[h]) rc = ipush(&S->tri, id_of[h]);
        }
        if (!rc) rc = ipush(&S->tri_off, (int32_t)S->tri.n);
    }
    free(id_of); free(key_at);
    return rc ? OOM(e) : 0;
}

/* BM25's document frequencies over the distinct documents of the training split. */
static int build_doc_freq(tp_state *S, ts_err *e)
{
    int32_t nw = ts_strtab_count(S->tab, SP_WORDS), nd = ts_strtab_count(S->tab, SP_DOCS);
    S->doc_freq = calloc((size_t)nw + 1, sizeof *S->doc_freq);
    int32_t *stamp = malloc(((size_t)nw + 1) * sizeof *stamp);
    uint8_t *seen = calloc((size_t)nd + 1, 1);
    if (!S->doc_freq || !stamp || !seen) { free(stamp); free(seen); return OOM(e); }
    for (int32_t w = 0; w < nw; w++) stamp[w] = -1;
    for (long i = 0; i < S->nex[TS_TRAIN]; i++) {
        int32_t d = S->ex[TS_TRAIN][i].d;
        if (seen[d]) continue;
        seen[d] = 1;
        S->doc_count++;
        S->doc_length_mean += S->dw_off.v[d + 1] - S->dw_off.v[d];
        for (int32_t k = S->dw_off.v[d]; k < S->dw_off.v[d + 1]; k++) {
            int32_t w = S->dw.v[k];
            if (stamp[w] != d) { stamp[w] = d; S->doc_freq[w]++; }
        }
    }
    free(stamp); free(seen);
    S->ndf = nw;
    if (S->doc_count > 0) S->doc_length_mean /= S->doc_count;
    return 0;
}

/* ---- the fitted state ---------------------------------------------------------------------
 * What training fitted, as text (fitted(); the host keeps it in the run folder as
 * data_state.txt and in checkpoints): the trigram vocabulary (packed keys in id order), every word
 * in id order (train, valid and test files' words: their ids index the frozen idf of the lexical
 * layer and the hybrid head), a 64-bit hash of every document text in id order (so a document
 * seen in training keeps its id, and with it its tie-break key in the rankings), the number of
 * query groups, BM25's statistics of the training documents. Opened with it (predict, evaluate,
 * resume), the reader refits nothing: a word or document not in it gets an id past training's,
 * which lexical features treat as never seen (df = 0) and an embedding over those fields
 * refuses. Lines: "tessera-textpairs-state 1", "trigrams N" + N lines, "words N" + N lines,
 * "documents N" + N lines, "queries N", "doc_count N", "doc_length_mean X", "doc_freq N" + N
 * lines. */
static int st_add(tp_state *S, size_t *cap, const char *t, size_t k)
{
    if (S->nstate + k + 1 > *cap) {
        size_t nc = *cap ? *cap * 2 : 1 << 16;
        while (nc < S->nstate + k + 1) nc *= 2;
        char *ns = realloc(S->state, nc);
        if (!ns) return -1;
        S->state = ns;
        *cap = nc;
    }
    memcpy(S->state + S->nstate, t, k);
    S->nstate += k;
    S->state[S->nstate] = 0;
    return 0;
}

static int st_line(tp_state *S, size_t *cap, const char *fmt, long long v)
{
    char b[64];
    int k = snprintf(b, sizeof b, fmt, v);
    return st_add(S, cap, b, (size_t)k);
}

static int write_state(tp_state *S, int32_t nq, ts_err *e)
{
    size_t cap = 0;
    int32_t nw = ts_strtab_count(S->tab, SP_WORDS), nd = ts_strtab_count(S->tab, SP_DOCS);
    char b[64];
    int bad = st_add(S, &cap, "tessera-textpairs-state 1\n", 26) ||
              st_line(S, &cap, "trigrams %lld\n", S->ntri);
    for (int32_t i = 0; i < S->ntri && !bad; i++) bad = st_line(S, &cap, "%lld\n", S->tri_keys[i]);
    bad = bad || st_line(S, &cap, "words %lld\n", nw);
    for (int32_t w = 0; w < nw && !bad; w++) {
        const char *t = ts_strtab_str(S->tab, SP_WORDS, w);
        bad = st_add(S, &cap, t, strlen(t)) || st_add(S, &cap, "\n", 1);
    }
    bad = bad || st_line(S, &cap, "documents %lld\n", nd);
    for (int32_t d = 0; d < nd && !bad; d++) {
        char hx[18];
        text_hash(ts_strtab_str(S->tab, SP_DOCS, d), hx);
        hx[16] = '\n';
        bad = st_add(S, &cap, hx, 17);
    }
    bad = bad || st_line(S, &cap, "queries %lld\n", nq) ||
          st_line(S, &cap, "doc_count %lld\n", S->doc_count);
    int k = snprintf(b, sizeof b, "doc_length_mean %.17g\n", S->doc_length_mean);
    bad = bad || st_add(S, &cap, b, (size_t)k) || st_line(S, &cap, "doc_freq %lld\n", S->ndf);
    for (int32_t w = 0; w < S->ndf && !bad; w++) bad = st_line(S, &cap, "%lld\n", S->doc_freq[w]);
    return bad ? OOM(e) : 0;
}

/* The next line of the state at *p (before end) into line (NUL-ended); -1 at the end. */
static int st_next(const char **p, const char *end, char *line, size_t cap)
{
    if (*p >= end) return -1;
    const char *nl = memchr(*p, '\n', (size_t)(end - *p));
    size_t k = nl ? (size_t)(nl - *p) : (size_t)(end - *p);
    if (k >= cap) k = cap - 1;   /* longer lines are malformed: the parse below refuses them */
    memcpy(line, *p, k);
    line[k] = 0;
    *p = nl ? nl + 1 : end;
    return 0;
}

/* "NAME N" with 0 <= N <= max into *n; -1 otherwise. */
static int st_count(const char **p, const char *end, const char *name, long max, long *n)
{
    char line[128], w[32];
    if (st_next(p, end, line, sizeof line) || sscanf(line, "%31s %ld", w, n) != 2 ||
        strcmp(w, name) || *n < 0 || *n > max)
        return -1;
    return 0;
}

/* Reads a fitted state into S: the words interned first (ids 0..nw_fit), the trigram keys, the
 * documents' hashes, BM25's statistics. */
static int read_state(tp_state *S, const char *text, size_t n, ts_err *e)
{
    const char *p = text, *end = text + n;
    char line[320] = "";
    long cnt, v;
    const char *what = "its first line";
    if (st_next(&p, end, line, sizeof line) || strcmp(line, "tessera-textpairs-state 1"))
        goto bad;
    what = "the trigrams";
    if (st_count(&p, end, "trigrams", 1L << 24, &cnt) || cnt < 1) goto bad;
    S->ntri = (int32_t)cnt;
    if (!(S->tri_keys = malloc((size_t)cnt * sizeof *S->tri_keys))) return OOM(e);
    for (long i = 0; i < cnt; i++) {
        char *q;
        if (st_next(&p, end, line, sizeof line)) goto bad;
        v = strtol(line, &q, 10);
        if (q == line || *q || v < 0 || v >= 1L << 24) goto bad;
        S->tri_keys[i] = (int32_t)v;
    }
    what = "the words";
    if (st_count(&p, end, "words", 0x7ffffffeL, &cnt)) goto bad;
    for (long i = 0; i < cnt; i++) {
        if (st_next(&p, end, line, sizeof line) || !line[0] || strlen(line) > 255) goto bad;
        int added;
        if (intern(S->tab, SP_WORDS, line, strlen(line), &added) != i || !added) goto bad;
    }
    S->nw_fit = (int32_t)cnt;
    what = "the documents";
    if (st_count(&p, end, "documents", 0x7ffffffeL, &cnt)) goto bad;
    for (long i = 0; i < cnt; i++) {
        if (st_next(&p, end, line, sizeof line) || strlen(line) != 16) goto bad;
        /* two training texts of one hash (odds ~ 2^-64 a pair) share the first's id */
        if (ts_strtab_id(S->tab, SP_DOCHASH, line, 16, 1) < 0) return OOM(e);
    }
    S->nd_fit = (int32_t)cnt;
    what = "the statistics";
    if (st_count(&p, end, "queries", 0x7ffffffeL, &cnt)) goto bad;
    S->nq_fit = (int32_t)cnt;
    if (st_count(&p, end, "doc_count", 0x7ffffffeL, &cnt)) goto bad;
    S->doc_count = (int32_t)cnt;
    if (st_next(&p, end, line, sizeof line) ||
        sscanf(line, "doc_length_mean %lg", &S->doc_length_mean) != 1 ||
        !(S->doc_length_mean >= 0) || !isfinite(S->doc_length_mean))
        goto bad;
    what = "the document frequencies";
    if (st_count(&p, end, "doc_freq", S->nw_fit, &cnt)) goto bad;
    S->ndf = (int32_t)cnt;
    if (!(S->doc_freq = calloc((size_t)cnt + 1, sizeof *S->doc_freq))) return OOM(e);
    for (long i = 0; i < cnt; i++) {
        char *q;
        if (st_next(&p, end, line, sizeof line)) goto bad;
        v = strtol(line, &q, 10);
        if (q == line || *q || v < 0 || v > S->doc_count) goto bad;
        S->doc_freq[i] = (int32_t)v;
    }
    S->fitted = 1;
    return 0;
bad:
    return ts_fail(e, "textpairs: the fitted state (data_state.txt) cannot be read at %s (\"%.60s\"); "
                   "it was not written by this reader, or was changed: train the run again",
                   what, line);
}

/* Each row's position among the earlier rows of its group in the same file (split): 0 for the
 * first candidate of a question, 1 for the next... (WordNet: every row is its own group, 0). */
static int number_positions(tp_state *S, ts_err *e)
{
    int32_t nq = ts_strtab_count(S->tab, SP_QIDS);
    for (int sp = 0; sp < 3; sp++) {
        int32_t mx = nq;
        for (long i = 0; i < S->nex[sp]; i++) if (S->ex[sp][i].qid >= mx) mx = S->ex[sp][i].qid + 1;
        int32_t *seen = calloc((size_t)mx + 1, sizeof *seen);
        if (!seen) return OOM(e);
        for (long i = 0; i < S->nex[sp]; i++) S->ex[sp][i].pos = seen[S->ex[sp][i].qid]++;
        free(seen);
    }
    return 0;
}

static const ts_key keys[] = {
    {"format", "choice:wordnet|wikiqa|tsv", "wordnet",
     "which files: WordNet gloss pairs, WikiQA, or any three files of named columns (tsv)"},
    {"path", "string", "",
     "wordnet: the gloss-pairs file; wikiqa, tsv: the train file (default: the bundled copy)"},
    {"valid_path", "string", "", "wikiqa, tsv: the dev file (default: path with train -> dev)"},
    {"test_path", "string", "", "wikiqa, tsv: the test file (default: path with train -> test)"},
    {"query_column", "string", "query", "tsv: the query's column (a header name, or a 0-based number)"},
    {"doc_column", "string", "document", "tsv: the document's column"},
    {"label_column", "string", "label", "tsv: the label's column (a number: 1 relevant, 0 not)"},
    {"group_column", "string", "", "tsv: the column that groups a query's candidates (default: "
     "the query text)"},
    {"separator", "string", "tab", "tsv: the field separator: the text itself, or tab, comma, "
     "semicolon, pipe"},
    {"header", "choice:auto|true|false", "auto", "tsv: auto = the first line is a header when it "
     "holds every named column"},
    {"max_words", "int", "16", "words kept per query (later words are cut)"},
    {"doc_max_words", "int", "0", "words kept per document; 0 = max_words"},
    {"vocab_cap", "int", "30000", "letter trigrams kept: the most frequent of the training split"},
    {"split_seed", "int", "2026", "wordnet: seed of the test/validation hold-out"},
    {"test_size", "int", "5000", "wordnet: synsets held out for test"},
    {"valid_size", "int", "2000", "wordnet: synsets held out for validation"},
    {"skip_bad_rows", "bool", "false",
     "skip malformed rows (counted in aux skipped_rows) instead of failing"},
    {NULL, NULL, NULL, NULL}};

/* path with its last "train" replaced by word, into buf; -1 if path has no "train". */
static int sibling(const char *path, const char *word, char *buf, size_t n)
{
    const char *p = NULL, *q = path;
    while ((q = strstr(q, "train"))) p = q++;
    if (!p) return -1;
    snprintf(buf, n, "%.*s%s%s", (int)(p - path), path, word, p + 5);
    return 0;
}

static int max_tokens(const ivec *off, long n, int cap_words, const ivec *tri_off, const ivec *ids,
                      long *max_tri)
{
    /* the largest number of words of a text, and of trigram ids within its first cap_words words */
    int mw = 0;
    for (long t = 0; t < n; t++) {
        int w = off->v[t + 1] - off->v[t];
        if (w > mw) mw = w;
        long c = 0;
        for (int32_t k = off->v[t]; k < off->v[t + 1] && k - off->v[t] < cap_words; k++)
            c += tri_off->v[ids->v[k] + 1] - tri_off->v[ids->v[k]];
        if (c > *max_tri) *max_tri = c;
    }
    return mw;
}

static int open_impl(ts_data *D, const ts_cfg *cfg, ts_err *e)
{
    tp_state *S = calloc(1, sizeof *S);
    if (!S) return ts_fail(e, "textpairs: out of memory");
    D->state = S;
    if (!(S->tab = ts_strtab_new())) return ts_fail(e, "textpairs: out of memory");
    int format, skip_bad;
    long T, Td, cap, seed, test_size, valid_size;
    if (ts_cfg_choice(cfg, "format", "wordnet|wikiqa|tsv", &format, e) ||
        ts_cfg_int(cfg, "max_words", &T, e) || ts_cfg_int(cfg, "doc_max_words", &Td, e) ||
        ts_cfg_int(cfg, "vocab_cap", &cap, e) || ts_cfg_int(cfg, "split_seed", &seed, e) ||
        ts_cfg_int(cfg, "test_size", &test_size, e) ||
        ts_cfg_int(cfg, "valid_size", &valid_size, e) ||
        ts_cfg_bool(cfg, "skip_bad_rows", &skip_bad, e))
        return -1;
    if (T < 1 || T > 1024 || Td < 0 || Td > 1024)
        return ts_fail(e, "%s: max_words and doc_max_words must lie in 1..1024 (doc_max_words 0 = "
                       "max_words)", ts_cfg_where(cfg, "max_words"));
    if (cap < 1) return ts_fail(e, "%s: vocab_cap must be >= 1", ts_cfg_where(cfg, "vocab_cap"));
    S->T = (int)T;
    S->Td = Td ? (int)Td : (int)T;
    int mode = ts_ctx_open_mode(D->ctx);
    S->apply = mode != TS_OPEN_TRAIN;
    S->predict = mode == TS_OPEN_PREDICT;
    size_t nfit;
    const char *fit = ts_ctx_fitted(D->ctx, &nfit);
    if (fit && read_state(S, fit, nfit, e)) return -1;
    if (S->apply && !fit)
        return ts_fail(e, "textpairs: applying a run needs the vocabularies it fitted "
                       "(data_state.txt); train the run again with this tessera");
    const char *p = ts_cfg_str(cfg, "path");
    if (!p || !*p)
        p = format == 0 ? "data/wordnet/wordnet30_gloss_pairs.tsv.gz"
                        : "data/wikiqa/WikiQA-train.tsv.gz";
    char path[4096], other[4096], full[4096];
    snprintf(path, sizeof path, "%s", p);
    tsv_layout lay = {{ts_cfg_str(cfg, "query_column"), ts_cfg_str(cfg, "doc_column"),
                       ts_cfg_str(cfg, "label_column"), ts_cfg_str(cfg, "group_column")},
                      {0}, "\t", -1};
    if (format == 2) {
        static const char *const named[][2] = {{"tab", "\t"}, {"\\t", "\t"}, {"comma", ","},
                                               {"semicolon", ";"}, {"pipe", "|"}, {"space", " "}};
        const char *sep = ts_cfg_str(cfg, "separator");
        for (size_t i = 0; sep && i < sizeof named / sizeof named[0]; i++)
            if (!strcmp(sep, named[i][0])) sep = named[i][1];
        if (!sep || !*sep)
            return ts_fail(e, "%s: [data] separator is empty; name it: tab, comma, semicolon, "
                           "pipe, space", ts_cfg_where(cfg, "separator"));
        lay.sep = sep;
        int h;
        if (ts_cfg_choice(cfg, "header", "auto|true|false", &h, e)) return -1;
        lay.header = h == 0 ? -1 : h == 1;
        for (int k = 0; k < 4; k++) if (!lay.name[k]) lay.name[k] = "";
        if (!*lay.name[0] || !*lay.name[1] || !*lay.name[2])
            return ts_fail(e, "%s: format = tsv needs query_column, doc_column and label_column",
                           ts_cfg_where(cfg, "format"));
        const char *given = ts_cfg_str(cfg, "path");
        if (!given || !*given)
            return ts_fail(e, "%s: format = tsv needs path = the training file (and valid_path, "
                           "test_path, or a path with \"train\" in its name)",
                           ts_cfg_where(cfg, "format"));
    }
    if (format == 0) {
        ts_ctx_path(D->ctx, path, full, sizeof full);
        if (read_wordnet(S, full, test_size, valid_size, (uint64_t)seed, skip_bad, e)) return -1;
    } else {
        ts_ctx_path(D->ctx, path, full, sizeof full);
        int first = S->apply ? TS_TEST : TS_TRAIN;   /* applying a run: the one file is test */
        if (format == 2 ? read_tsv(S, full, first, &lay, skip_bad, e)
                        : read_wikiqa(S, full, first, skip_bad, e)) return -1;
        static const char *key[2] = {"valid_path", "test_path"}, *word[2] = {"dev", "test"};
        for (int k = 0; k < 2 && !S->apply; k++) {
            const char *v = ts_cfg_str(cfg, key[k]);
            if (v && *v) snprintf(other, sizeof other, "%s", v);
            else if (sibling(path, word[k], other, sizeof other))
                return ts_fail(e, "%s: cannot guess the %s file from path = %s (no \"train\" "
                               "in it); set %s", ts_cfg_where(cfg, "path"), word[k], path, key[k]);
            ts_ctx_path(D->ctx, other, full, sizeof full);
            if (format == 2 ? read_tsv(S, full, k == 0 ? TS_VALID : TS_TEST, &lay, skip_bad, e)
                            : read_wikiqa(S, full, k == 0 ? TS_VALID : TS_TEST, skip_bad, e))
                return -1;
        }
    }
    if (S->nex[TS_TRAIN] == 0 && !S->apply)
        return ts_fail(e, "textpairs: the training split is empty; check path");
    if (S->fitted ? map_trigrams(S, e)
                  : build_trigrams(S, cap, e) || map_trigrams(S, e) || build_doc_freq(S, e))
        return -1;
    if (number_positions(S, e)) return -1;

    /* batch buffers for the largest batch: worst-case sizes, so batch() never allocates */
    long B = ts_ctx_max_batch(D->ctx), qtri = 0, dtri = 0;
    if (B < 1) B = 1;
    int32_t nqt = ts_strtab_count(S->tab, SP_QUERIES), ndt = ts_strtab_count(S->tab, SP_DOCS);
    int qmw = max_tokens(&S->qw_off, nqt, S->T, &S->tri_off, &S->qw, &qtri);
    int dmw = max_tokens(&S->dw_off, ndt, S->Td, &S->tri_off, &S->dw, &dtri);
    long qcut = 0, dcut = 0;
    for (int32_t t = 0; t < nqt; t++) qcut += S->qw_off.v[t + 1] - S->qw_off.v[t] > S->T;
    for (int32_t t = 0; t < ndt; t++) dcut += S->dw_off.v[t + 1] - S->dw_off.v[t] > S->Td;
    snprintf(S->report, sizeof S->report,
             "max_words %d\ndoc_max_words %d\nqueries %ld\nqueries_cut %ld\nquery_words_max %d\n"
             "docs %ld\ndocs_cut %ld\ndoc_words_max %d\n", S->T, S->Td, (long)nqt, qcut, qmw,
             (long)ndt, dcut, dmw);
    S->q_off = malloc((size_t)(B * S->T + 1) * sizeof(int32_t));
    S->d_off = malloc((size_t)(B * S->Td + 1) * sizeof(int32_t));
    S->q_ids = malloc((size_t)(B * qtri + 1) * sizeof(int32_t));
    S->d_ids = malloc((size_t)(B * dtri + 1) * sizeof(int32_t));
    S->q_len = malloc((size_t)B * sizeof(int32_t));
    S->d_len = malloc((size_t)B * sizeof(int32_t));
    S->qw_boff = malloc((size_t)(B + 1) * sizeof(int32_t));
    S->dw_boff = malloc((size_t)(B + 1) * sizeof(int32_t));
    S->qw_bids = malloc((size_t)(B * qmw + 1) * sizeof(int32_t));
    S->dw_bids = malloc((size_t)(B * dmw + 1) * sizeof(int32_t));
    S->qid_b = malloc((size_t)B * sizeof(int32_t));
    S->doc_b = malloc((size_t)B * sizeof(int32_t));
    S->label_b = malloc((size_t)B * sizeof(float));
    S->pos_b = malloc((size_t)B * sizeof(float));
    if (!S->q_off || !S->d_off || !S->q_ids || !S->d_ids || !S->q_len || !S->d_len ||
        !S->qw_boff || !S->dw_boff || !S->qw_bids || !S->dw_bids || !S->qid_b || !S->doc_b ||
        !S->label_b || !S->pos_b)
        return ts_fail(e, "textpairs: cannot allocate batch buffers for %ld rows; lower [train] "
                       "batch", B);

    int one = 1;
    int32_t nq = format == 0 ? (int32_t)(S->nex[0] + S->nex[1] + S->nex[2])
                             : ts_strtab_count(S->tab, SP_QIDS);
    int64_t nwv = ts_strtab_count(S->tab, SP_WORDS) > 0 ? ts_strtab_count(S->tab, SP_WORDS) : 1;
    if (S->fitted) {                  /* the fields keep training's vocabularies */
        nq = S->nq_fit;
        ndt = S->nd_fit;
        nwv = S->nw_fit > 0 ? S->nw_fit : 1;
        if (!(S->state = malloc(nfit + 1))) return OOM(e);
        memcpy(S->state, fit, nfit);
        S->state[nfit] = 0;
        S->nstate = nfit;
    } else if (write_state(S, nq, e)) {
        return -1;
    }
    if (!(S->f_query = ts_data_field(D, "query", TS_BAGS, 2, (int[]){S->T}, S->ntri, e)) ||
        !(S->f_doc = ts_data_field(D, "doc", TS_BAGS, 2, (int[]){S->Td}, S->ntri, e)) ||
        !(S->f_label = ts_data_field(D, "label", TS_F32, 2, &one, 0, e)) ||
        !(S->f_qid = ts_data_field(D, "qid", TS_I32, 2, &one, nq > 0 ? nq : 1, e)) ||
        !(S->f_doc_id = ts_data_field(D, "doc_id", TS_I32, 2, &one, ndt, e)) ||
        !(S->f_qw = ts_data_field(D, "query_words", TS_BAGS, 2, &one, nwv, e)) ||
        !(S->f_dw = ts_data_field(D, "doc_words", TS_BAGS, 2, &one, nwv, e)) ||
        !(S->f_pos = ts_data_field(D, "position", TS_F32, 2, &one, 0, e)) ||
        ts_data_label(D, "label", e))   /* never a layer's input */
        return -1;
    for (int s = 0; s < 3; s++) D->nrows[s] = S->nex[s];
    return 0;
}

/* One text as a (T) row of trigram bags: cell t = trigrams of word t; len = max(1, words). */
static void fill_bags(const tp_state *S, const ivec *off, const ivec *ids, int32_t text, int T,
                      int32_t *cell_off, int32_t *out_ids, int32_t *pos, int32_t *len)
{
    int32_t w0 = off->v[text], nw = off->v[text + 1] - w0;
    if (nw > T) nw = T;
    for (int t = 0; t < T; t++) {
        cell_off[t] = *pos;
        if (t >= nw) continue;
        int32_t w = ids->v[w0 + t];
        for (int32_t k = S->tri_off.v[w]; k < S->tri_off.v[w + 1]; k++)
            out_ids[(*pos)++] = S->tri.v[k];
    }
    *len = nw > 0 ? nw : 1;
}

static int batch(ts_data *D, ts_phase split, const long *rows, int n, ts_err *e)
{
    tp_state *S = D->state;
    ts_tensor *q = S->f_query, *d = S->f_doc, *lab = S->f_label, *qid = S->f_qid,
              *did = S->f_doc_id, *qw = S->f_qw, *dw = S->f_dw;
    int32_t qp = 0, dp = 0, qwp = 0, dwp = 0;
    for (int i = 0; i < n; i++) {
        if (rows[i] < 0 || rows[i] >= S->nex[split])
            return ts_fail(e, "textpairs: row %ld is outside split %d (%ld rows)", rows[i],
                           (int)split, S->nex[split]);
        const example *x = &S->ex[split][rows[i]];
        fill_bags(S, &S->qw_off, &S->qw, x->q, S->T, S->q_off + (size_t)i * S->T, S->q_ids, &qp,
                  &S->q_len[i]);
        fill_bags(S, &S->dw_off, &S->dw, x->d, S->Td, S->d_off + (size_t)i * S->Td, S->d_ids, &dp,
                  &S->d_len[i]);
        S->qw_boff[i] = qwp;
        for (int32_t k = S->qw_off.v[x->q]; k < S->qw_off.v[x->q + 1]; k++)
            S->qw_bids[qwp++] = S->qw.v[k];
        S->dw_boff[i] = dwp;
        for (int32_t k = S->dw_off.v[x->d]; k < S->dw_off.v[x->d + 1]; k++)
            S->dw_bids[dwp++] = S->dw.v[k];
        S->label_b[i] = x->label;
        S->pos_b[i] = (float)x->pos;
        S->qid_b[i] = x->qid + (S->apply ? S->nq_fit : 0);   /* applied: past training's */
        S->doc_b[i] = S->doc_gid.v[x->d];
    }
    S->q_off[(size_t)n * S->T] = qp;
    S->d_off[(size_t)n * S->Td] = dp;
    S->qw_boff[n] = qwp;
    S->dw_boff[n] = dwp;
    q->off = S->q_off; q->ids = S->q_ids; q->len = S->q_len;
    d->off = S->d_off; d->ids = S->d_ids; d->len = S->d_len;
    qw->off = S->qw_boff; qw->ids = S->qw_bids; qw->len = NULL;
    dw->off = S->dw_boff; dw->ids = S->dw_bids; dw->len = NULL;
    lab->x = S->label_b; qid->ids = S->qid_b; did->ids = S->doc_b;
    S->f_pos->x = S->pos_b;
    q->dim[0] = d->dim[0] = lab->dim[0] = qid->dim[0] = did->dim[0] = qw->dim[0] = dw->dim[0] = n;
    S->f_pos->dim[0] = n;
    return 0;
}

static int aux(ts_data *D, const char *name, const void **ptr, long *n)
{
    tp_state *S = D->state;
    if (!strcmp(name, "doc_freq")) {
        *ptr = S->doc_freq;
        *n = S->ndf;
        return 0;
    }
    if (!strcmp(name, "doc_count")) { *ptr = &S->doc_count; *n = 1; return 0; }
    if (!strcmp(name, "doc_length_mean")) { *ptr = &S->doc_length_mean; *n = 1; return 0; }
    if (!strcmp(name, "trigram_keys")) { *ptr = S->tri_keys; *n = S->ntri; return 0; }
    if (!strcmp(name, "skipped_rows")) { *ptr = &S->skipped; *n = 1; return 0; }
    if (!strcmp(name, "report")) { *ptr = S->report; *n = (long)strlen(S->report); return 0; }
    return -1;
}

/* What open() fitted (the text above), for the host to keep in the run folder. */
static int fitted(ts_data *D, char **text, size_t *n, ts_err *e)
{
    tp_state *S = D->state;
    if (!(*text = malloc(S->nstate + 1))) return OOM(e);
    memcpy(*text, S->state, S->nstate + 1);
    *n = S->nstate;
    return 0;
}

static void close_data(ts_data *D)
{
    tp_state *S = D->state;
    if (!S) return;
    ts_strtab_free(S->tab);
    free(S->qw_off.v); free(S->qw.v); free(S->dw_off.v); free(S->dw.v);
    free(S->tri_off.v); free(S->tri.v); free(S->tri_keys); free(S->doc_freq);
    free(S->doc_gid.v); free(S->state);
    for (int s = 0; s < 3; s++) free(S->ex[s]);
    free(S->q_off); free(S->q_ids); free(S->q_len); free(S->d_off); free(S->d_ids); free(S->d_len);
    free(S->qw_boff); free(S->qw_bids); free(S->dw_boff); free(S->dw_bids);
    free(S->qid_b); free(S->doc_b); free(S->label_b); free(S->pos_b);
    free(S);
    D->state = NULL;
}


/* A failed open frees what it read: the host calls close only after an open succeeded. */
static int open_data(ts_data *D, const ts_cfg *cfg, ts_err *e)
{
    if (open_impl(D, cfg, e) == 0) return 0;
    close_data(D);
    return -1;
}
static const ts_dataset_ops ops = {
    .size = sizeof(ts_dataset_ops),
    .open = open_data, .batch = batch, .aux = aux, .close = close_data, .fitted = fitted,
    .concurrency = TS_BRANCH_SAFE};   /* batch() fills the fields only */
static const ts_plugin plugin = {
    TS_ABI, sizeof(ts_plugin), TS_DATASET, "textpairs", "1.0",
    "query/document text pairs with DSSM letter-trigram word hashing (WordNet glosses, WikiQA)",
    keys, &ops};

const ts_plugin *tessera_plugin_entry(uint32_t i) { return i == 0 ? &plugin : NULL; }
