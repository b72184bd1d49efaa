/* test_two_tower.c — the retrieval head's item tower (plugins/heads/item_tower.c, issue 14):
 * the tower's vectors against the formula computed here; finite differences of the training
 * loss against the gradients of every tower parameter (id and feature tables, W and c of each
 * layer), the user vector and the biases, for sampled and full softmax, with and without hidden
 * layers, logQ on and off (check-plugin cannot reach the tower: it needs the dataset's aux
 * arrays); bad tower keys and bad aux arrays refused with what to do, and FILE:LINE from an
 * experiment file; the movielens reader's genres as the aux item feature bag; and, end to end on
 * ml-latest-small, experiments/movielens_two_tower.ini above the popularity baseline, items
 * never watched in training getting vectors that follow their genres (cold start), and
 * `tessera export` writing the tower's vectors: the ones that were scored. */
#include "testutil.h"
#include "internal.h"

#include <math.h>

/* ---- a head in a bare run context, with a fake dataset of item feature bags --------------- */
enum { NI = 9 };                         /* items of the fake catalogue */
/* bag item_feature (vocab 6): item 4 has none; bag item_tag (vocab 4) */
static int32_t f_off[NI + 1] = {0, 2, 3, 5, 6, 6, 8, 9, 11, 12};
static int32_t f_ids[12] = {0, 1, 2, 3, 1, 4, 5, 0, 2, 3, 5, 1};
static long f_vocab = 6;
static int32_t t_off[NI + 1] = {0, 1, 2, 3, 4, 5, 6, 7, 8, 10};
static int32_t t_ids[10] = {0, 1, 2, 3, 0, 1, 2, 3, 0, 2};
static long t_vocab = 4;
static float fake_freq[NI] = {9, 8, 7, 5, 4, 3, 1, 0, 0};
static int fake_has_tag = 1, fake_has_freq = 1;

static int fake_aux(ts_data *D, const char *name, const void **p, long *n)
{
    (void)D;
    if (!strcmp(name, "item_freq") && fake_has_freq) { *p = fake_freq; *n = NI; return 0; }
    if (!strcmp(name, "item_feature_off")) { *p = f_off; *n = NI + 1; return 0; }
    if (!strcmp(name, "item_feature_ids")) { *p = f_ids; *n = 12; return 0; }
    if (!strcmp(name, "item_feature_vocab")) { *p = &f_vocab; *n = 1; return 0; }
    if (!fake_has_tag) return -1;
    if (!strcmp(name, "item_tag_off")) { *p = t_off; *n = NI + 1; return 0; }
    if (!strcmp(name, "item_tag_ids")) { *p = t_ids; *n = 10; return 0; }
    if (!strcmp(name, "item_tag_vocab")) { *p = &t_vocab; *n = 1; return 0; }
    return -1;
}
static const ts_dataset_ops fake_ops = {.size = sizeof(ts_dataset_ops), .aux = fake_aux};

typedef struct {
    ts_ctx ctx;
    ts_ini ini;
    ts_head H;
    const ts_head_ops *ops;
    float *arena;
    size_t arena_n;
    ts_data D;
    ts_tensor in, label;
    int built;
} hb;

/* Builds the retrieval head with the keys in pairs; -1 with the build's message in e. */
static int hb_build(hb *h, const char *pairs, int B, int Dim, ts_err *e)
{
    memset(h, 0, sizeof *h);
    const ts_plugin *p = ts_plugin_find(TS_HEAD, "retrieval", e);
    if (!p) fail_msg("%s", e->msg);
    h->ops = p->ops;
    ts_ctx_init(&h->ctx, 5, B);
    h->ctx.owner = "head.t";
    h->ctx.data = &h->D;
    h->ctx.data_ops = &fake_ops;
    h->in = (ts_tensor){.dtype = TS_F32, .ndim = 2, .dim = {B, Dim}};
    h->in.x = calloc((size_t)B * Dim, sizeof(float));
    h->in.dx = calloc((size_t)B * Dim, sizeof(float));
    h->label = (ts_tensor){.dtype = TS_F32, .ndim = 2, .dim = {B, 1}};
    h->label.x = calloc((size_t)B, sizeof(float));
    h->H = (ts_head){.name = "t", .nin = 1, .in = {&h->in}, .label = &h->label, .grad_scale = 1,
                     .ctx = &h->ctx};
    if (ts_ini_from_pairs(&h->ini, "head.t", pairs, e)) fail_msg("%s", e->msg);
    const ts_key *lists[1] = {p->keys};
    if (ts_cfg_validate(&h->ini.sec[0], NULL, lists, 1, e)) fail_msg("%s", e->msg);
    if (h->ops->build(&h->H, &h->ini.sec[0], e)) return -1;
    h->built = 1;
    assert_int_equal(ts_ctx_alloc_params(&h->ctx, 0, &h->arena, &h->arena_n, e), 0);
    return 0;
}

static void hb_free(hb *h)
{
    if (h->built && h->ops->destroy) h->ops->destroy(&h->H);
    free(h->in.x); free(h->in.dx); free(h->label.x); free(h->arena);
    ts_ini_free(&h->ini);
    ts_ctx_free(&h->ctx);
}

static ts_param *param(hb *h, const char *name)
{
    char full[160];
    snprintf(full, sizeof full, "head.t.%s", name);
    for (int i = 0; i < h->ctx.nparams; i++)
        if (!strcmp(h->ctx.params[i]->name, full)) return h->ctx.params[i];
    return NULL;
}

/* Random weights (not the inits: zero id rows and biases would hide errors), inputs, labels. */
static void randomise(hb *h, ts_rng *r, int B, int Dim)
{
    for (int i = 0; i < h->ctx.nparams; i++) {
        ts_param *p = h->ctx.params[i];
        for (long j = 0; j < (long)p->rows * p->cols; j++) p->w[j] = (float)(0.5 * ts_rng_normal(r));
    }
    for (int i = 0; i < B * Dim; i++) h->in.x[i] = (float)ts_rng_normal(r);
    for (int i = 0; i < B; i++) h->label.x[i] = (float)ts_rng_below(r, NI);
}

static void zero_grads(hb *h)
{
    memset(h->in.dx, 0, (size_t)ts_numel(&h->in) * sizeof(float));
    for (int i = 0; i < h->ctx.nparams; i++) {
        ts_param *p = h->ctx.params[i];
        memset(p->g, 0, (size_t)p->rows * p->cols * sizeof(float));
        if (p->is_touched) memset(p->is_touched, 0, (size_t)p->rows);
        p->ntouched = 0;
    }
}

/* The training loss with the run's rng at the same state (the same negatives every time). */
static double train_loss(hb *h, const ts_rng *rng0)
{
    ts_err e = {{0}};
    double loss;
    h->ctx.rng = *rng0;
    if (h->ops->forward(&h->H, TS_TRAIN, &loss, &e)) fail_msg("forward: %s", e.msg);
    return loss;
}

/* Central differences against g at w[j]: 1 when they agree at one of three step sizes; 0 when
 * they do not; 2 when the loss has a kink (a ReLU switching) within the smallest step: the one-
 * sided differences then disagree, the gradient is one side's slope (or between the two), and no
 * central difference is the gradient. */
static int fd_agrees(hb *h, const ts_rng *rng0, float *w, float g)
{
    static const float steps[3] = {1e-2f, 2e-3f, 5e-4f};
    float w0 = *w;
    double l0 = train_loss(h, rng0), fwd = 0, bwd = 0, fd = 0;
    for (int s = 0; s < 3; s++) {
        *w = w0 + steps[s];
        double lp = train_loss(h, rng0);
        *w = w0 - steps[s];
        double lm = train_loss(h, rng0);
        *w = w0;
        fd = (lp - lm) / (2.0 * steps[s]);
        fwd = (lp - l0) / steps[s];
        bwd = (l0 - lm) / steps[s];
        if (fabs(fd - g) <= 2e-3 + 2e-2 * fabs(g)) return 1;
    }
    double tol = 2e-3 + 2e-2 * fabs(g), lo = fwd < bwd ? fwd : bwd, hi = fwd < bwd ? bwd : fwd;
    if (hi - lo > tol && g >= lo - tol && g <= hi + tol) return 2;   /* g is one side's slope */
    print_error("fd %.6g (one-sided %.6g, %.6g) against gradient %.6g\n", fd, fwd, bwd, (double)g);
    return 0;
}

/* Every trainable parameter's gradient and the user vector's against finite differences. */
static void fd_check(const char *pairs, int B, int Dim)
{
    hb h;
    ts_err e = {{0}};
    if (hb_build(&h, pairs, B, Dim, &e)) fail_msg("build %s: %s", pairs, e.msg);
    ts_rng r;
    ts_rng_seed(&r, 17);
    randomise(&h, &r, B, Dim);
    ts_rng rng0 = h.ctx.rng;
    zero_grads(&h);
    double l0 = train_loss(&h, &rng0);
    assert_true(isfinite(l0) && l0 > 0);
    /* the gradients of that one pass, kept: every finite difference below adds more */
    float **g0 = calloc((size_t)h.ctx.nparams, sizeof *g0), *dx0 = malloc((size_t)B * Dim * sizeof *dx0);
    memcpy(dx0, h.in.dx, (size_t)B * Dim * sizeof *dx0);
    for (int i = 0; i < h.ctx.nparams; i++) {
        ts_param *p = h.ctx.params[i];
        size_t n = (size_t)p->rows * p->cols;
        g0[i] = malloc(n * sizeof **g0);
        memcpy(g0[i], p->g, n * sizeof **g0);
    }
    int checked = 0, wrong = 0, kinks = 0, tower_params = 0;
    for (int i = 0; i < h.ctx.nparams; i++) {
        ts_param *p = h.ctx.params[i];
        long n = (long)p->rows * p->cols;
        const float *g = g0[i];
        if (p->flags & TS_PARAM_FROZEN) {      /* V, the tower's output: no gradient */
            for (long j = 0; j < n; j++) assert_true(g[j] == 0);
            continue;
        }
        tower_params += strstr(p->name, ".emb_") || strstr(p->name, ".tower_");
        int sparse = (p->flags & TS_PARAM_SPARSE) != 0;
        if (sparse) assert_true(p->ntouched > 0);
        for (int q = 0; q < 24; q++) {
            long j;
            if (sparse) j = (long)p->touched[ts_rng_below(&r, (uint64_t)p->ntouched)] * p->cols +
                            (long)ts_rng_below(&r, (uint64_t)p->cols);
            else j = (long)ts_rng_below(&r, (uint64_t)n);
            int ok = fd_agrees(&h, &rng0, p->w + j, g[j]);
            checked += ok == 1;
            kinks += ok == 2;
            if (!ok) {
                print_error("%s: %s[%ld]\n", pairs, p->name, j);
                wrong++;
            }
        }
    }
    for (int q = 0; q < 16; q++) {
        long j = (long)ts_rng_below(&r, (uint64_t)B * Dim);
        int ok = fd_agrees(&h, &rng0, h.in.x + j, dx0[j]);
        checked += ok == 1;
        kinks += ok == 2;
        if (!ok) { print_error("%s: dU[%ld]\n", pairs, j); wrong++; }
    }
    printf("# %s: %d coordinates agree, %d wrong, %d at a ReLU kink\n", pairs, checked, wrong, kinks);
    assert_true(tower_params >= 3);
    assert_int_equal(wrong, 0);
    assert_true(kinks * 10 <= checked);        /* a kink now and then, not a wrong gradient */
    for (int i = 0; i < h.ctx.nparams; i++) free(g0[i]);
    free(g0); free(dx0);
    hb_free(&h);
}

static void tower_gradients(void **state)
{
    (void)state;
    fd_check("items=9 softmax=sampled negatives=5 item_tower=id,features item_id_dim=3 "
             "item_feature_dim=2 item_features=item_feature,item_tag", 6, 4);
    fd_check("items=9 softmax=sampled negatives=7 item_tower=id,features item_tower_units=5,3", 5, 4);
    fd_check("items=9 softmax=sampled negatives=4 sampler=uniform logq_correction=false "
             "item_tower=features item_tower_units=6", 4, 3);
    fd_check("items=9 softmax=full item_tower=id,features item_feature_dim=3 "
             "item_features=item_tag,item_feature item_tower_units=4", 5, 3);
    fd_check("items=9 softmax=full item_tower=features", 3, 2);
}

/* ---- the tower's vectors: V after eval_begin against the formula ----------------------------- */
static void tower_matches_formula(void **state)
{
    (void)state;
    enum { B = 2, D = 3, E = 2, F = 2, H1 = 4 };
    hb h;
    ts_err e = {{0}};
    if (hb_build(&h, "items=9 softmax=sampled negatives=3 item_tower=id,features item_id_dim=2 "
                 "item_feature_dim=2 item_features=item_feature,item_tag item_tower_units=4",
                 B, D, &e)) fail_msg("%s", e.msg);
    ts_param *V = param(&h, "V"), *id = param(&h, "emb_id"), *tf = param(&h, "emb_item_feature"),
             *tt = param(&h, "emb_item_tag"), *W1 = param(&h, "tower_W1"), *c1 = param(&h, "tower_c1"),
             *W2 = param(&h, "tower_W2"), *c2 = param(&h, "tower_c2");
    assert_true(V && id && tf && tt && W1 && c1 && W2 && c2);
    assert_true(V->flags & TS_PARAM_FROZEN);
    assert_true((id->flags & TS_PARAM_SPARSE) && (tf->flags & TS_PARAM_SPARSE));
    assert_int_equal(W1->rows, E + 2 * F); assert_int_equal(W1->cols, H1);
    assert_int_equal(W2->rows, H1); assert_int_equal(W2->cols, D);
    for (long j = 0; j < (long)id->rows * id->cols; j++) assert_true(id->w[j] == 0);   /* zero init */
    ts_rng r;
    ts_rng_seed(&r, 4);
    randomise(&h, &r, B, D);
    assert_int_equal(h.ops->eval_begin(&h.H, TS_VALID, &e), 0);
    for (int i = 0; i < NI; i++) {
        double x[E + 2 * F], hid[H1], v;
        for (int k = 0; k < E; k++) x[k] = id->w[i * E + k];
        for (int k = 0; k < 2 * F; k++) x[E + k] = 0;
        for (int q = f_off[i]; q < f_off[i + 1]; q++)
            for (int k = 0; k < F; k++) x[E + k] += tf->w[f_ids[q] * F + k] / (f_off[i + 1] - f_off[i]);
        for (int q = t_off[i]; q < t_off[i + 1]; q++)
            for (int k = 0; k < F; k++) x[E + F + k] += tt->w[t_ids[q] * F + k] / (t_off[i + 1] - t_off[i]);
        for (int u = 0; u < H1; u++) {
            double a = c1->w[u];
            for (int k = 0; k < E + 2 * F; k++) a += x[k] * W1->w[k * H1 + u];
            hid[u] = a > 0 ? a : 0;
        }
        for (int d = 0; d < D; d++) {
            v = c2->w[d];
            for (int u = 0; u < H1; u++) v += hid[u] * W2->w[u * D + d];
            assert_float_equal(V->w[i * D + d], v, 1e-5);
        }
    }
    hb_free(&h);
}

/* ---- bad keys and bad aux arrays ------------------------------------------------------------ */
static void expect_refused(const char *pairs, ...)
{
    hb h;
    ts_err e = {{0}};
    assert_int_equal(hb_build(&h, pairs, 2, 3, &e), -1);
    va_list ap;
    va_start(ap, pairs);
    for (const char *s; (s = va_arg(ap, const char *));) tu_contains(e.msg, s, NULL);
    va_end(ap);
    hb_free(&h);
}

static void bad_keys_and_aux(void **state)
{
    (void)state;
    expect_refused("items=9 item_tower=id item_tower_units=8", "item_tower_units = 8",
                   "item_tower = id has no features", "set item_tower = id,features", NULL);
    expect_refused("items=9 item_feature_dim=4", "item_feature_dim = 4", "no features", NULL);
    expect_refused("items=9 item_tower=id item_features=item_tag", "item_features = item_tag", NULL);
    expect_refused("items=9 item_tower=idd,features", "item_tower = idd,features",
                   "each word is id or features", NULL);
    expect_refused("items=9 item_tower=features,features", "a word is repeated", NULL);
    expect_refused("items=9 item_tower=features item_id_dim=4", "item_id_dim = 4", "has no id", NULL);
    expect_refused("items=9 item_tower=id,features item_tower_units=4,x", "item_tower_units = x",
                   "whole number", NULL);
    expect_refused("items=9 item_tower=id,features item_features=item_genre", "item_genre",
                   "item_genre_off, item_genre_ids and item_genre_vocab", "docs/data.md",
                   "use item_tower = id", NULL);
    fake_has_tag = 0;
    expect_refused("items=9 item_tower=id,features item_features=item_feature,item_tag",
                   "'item_tag'", "offers no item_tag_off", NULL);
    fake_has_tag = 1;
    expect_refused("items=8 item_tower=features", "9 offsets", "the catalogue has 8 items", NULL);
    f_off[3] = 7;                                 /* 5 -> 7: then 6 after it */
    expect_refused("items=9 item_tower=features", "item_feature_off decreases at item 3", NULL);
    f_off[3] = 5;
    f_ids[4] = 6;                                 /* outside vocab 6 */
    expect_refused("items=9 item_tower=features", "item_feature_ids: item 2 has feature id 6",
                   "outside [0, 6)", NULL);
    f_ids[4] = 1;
    f_vocab = 0;
    expect_refused("items=9 item_tower=features", "item_feature_vocab must be one long", NULL);
    f_vocab = 6;
    fake_has_freq = 0;
    expect_refused("items=9 rare_below=5", "rare_below = 5 needs the dataset's item_freq", NULL);
    fake_has_freq = 1;
    hb h;                                         /* and the good case builds */
    ts_err e = {{0}};
    if (hb_build(&h, "items=9 item_tower=features", 2, 3, &e)) fail_msg("%s", e.msg);
    hb_free(&h);
}

/* rare_recall@K counts only the rows whose target has item_freq < rare_below. */
static void rare_figures(void **state)
{
    (void)state;
    hb h;
    ts_err e = {{0}};
    if (hb_build(&h, "items=9 softmax=full k=1,3 rare_below=4 exclude_watched=none", 3, 2, &e))
        fail_msg("%s", e.msg);
    float *V = param(&h, "V")->w;                 /* item i: (i, 0); u = (1, 0): rank = 9 - i */
    memset(V, 0, NI * 2 * sizeof *V);
    for (int i = 0; i < NI; i++) V[2 * i] = (float)i;
    for (int r = 0; r < 3; r++) h.in.x[2 * r] = 1;
    h.label.x[0] = 8; h.label.x[1] = 6; h.label.x[2] = 1;   /* freq 0, 1 (rare), 8; ranks 1, 3, 8 */
    double loss;
    h.ctx.nmetrics = 0;
    assert_int_equal(h.ops->eval_begin(&h.H, TS_VALID, &e), 0);
    assert_int_equal(h.ops->forward(&h.H, TS_VALID, &loss, &e), 0);
    assert_int_equal(h.ops->eval_end(&h.H, TS_VALID, &e), 0);
    double want[][2] = {{0, 1.0 / 3}, {0, 2.0 / 3}, {1, 0.5}, {2, 1}, {3, 2}, {4, 0.5 * (1 + 1.0 / 3)}};
    static const char *const names[] = {"recall@1", "recall@3", "rare_recall@1", "rare_recall@3",
                                        "rare_targets", "rare_mrr"};
    for (int q = 0; q < 6; q++) {
        int found = 0;
        for (int i = 0; i < h.ctx.nmetrics; i++)
            if (!strcmp(h.ctx.metrics[i].metric, names[q])) {
                assert_float_equal(h.ctx.metrics[i].value, want[q][1], 1e-12);
                found = 1;
            }
        if (!found) fail_msg("no metric %s", names[q]);
    }
    hb_free(&h);
}

/* ---- MovieLens: the reader's genres as the item feature bag ---------------------------------- */
static char data_ov[4200];            /* data.path=<source tree>/data/movielens/ml-latest-small */

static ts_exp *build_exp(const char *ini, const char *results, int nover, char **over, ts_err *e)
{
    ts_run_opts o = {.results_dir = results, .noverride = nover, .overrides = over};
    ts_exp *x = ts_exp_load(ini, &o, e);
    if (x && ts_exp_build(x, e)) { ts_exp_free(x); x = NULL; }
    return x;
}

static void movielens_genres_as_aux(void **state)
{
    (void)state;
    ts_err e = {{0}};
    char *ov[1] = {data_ov};
    ts_exp *x = build_exp(tu_src("experiments/movielens_two_tower.ini"), NULL, 1, ov, &e);
    if (!x) fail_msg("%s", e.msg);
    const void *p;
    long n, items, nids, nv, nn;
    assert_int_equal(ts_ctx_aux(&x->ctx, "item_freq", &p, &items), 0);
    assert_int_equal(items, 9724);
    assert_int_equal(ts_ctx_aux(&x->ctx, "item_feature_off", &p, &n), 0);
    assert_int_equal(n, items + 1);
    const int32_t *off = p;
    assert_int_equal(ts_ctx_aux(&x->ctx, "item_feature_ids", &p, &nids), 0);
    const int32_t *ids = p;
    assert_int_equal(nids, off[items]);
    assert_int_equal(ts_ctx_aux(&x->ctx, "item_feature_vocab", &p, &nv), 0);
    assert_int_equal(nv, 1);
    long vocab = *(const long *)p;
    assert_int_equal(ts_ctx_aux(&x->ctx, "item_feature_name", &p, &nn), 0);
    assert_int_equal(nn, vocab);
    const char *const *name = p;
    assert_int_equal(vocab, 20);                       /* 19 genres and "(no genres listed)" */
    assert_int_equal(ts_ctx_aux(&x->ctx, "item_raw_id", &p, &n), 0);
    const int32_t *raw = p;
    int toy = -1;
    for (long i = 0; i < items; i++) if (raw[i] == 1) toy = (int)i;
    assert_true(toy >= 0);                             /* Toy Story: Adventure|Animation|Children|Comedy|Fantasy */
    char got[256] = "";
    for (int32_t q = off[toy]; q < off[toy + 1]; q++)
        snprintf(got + strlen(got), sizeof got - strlen(got), "%s%s", q > off[toy] ? "|" : "", name[ids[q]]);
    assert_string_equal(got, "Adventure|Animation|Children|Comedy|Fantasy");
    ts_exp_free(x);
}

/* ---- bad input in an experiment file: FILE:LINE --------------------------------------------- */
/* A small MovieLens experiment whose [head.next] holds `head`; expects a build error holding
 * FILE:LINE of the line that starts with line_of, and the needles. */
static void expect_bad_ini(const char *path_value, const char *head, const char *line_of, ...)
{
    char text[4096];
    snprintf(text, sizeof text,
             "[experiment]\nname = bad_tower\n[data]\ntype = movielens\npath = %s\n"
             "[layer.u]\ntype = embedding_bag\ninput = history\ncombine = row\npool = mean\ndim = 8\n"
             "[head.next]\ntype = retrieval\ninput = u\nlabel = next_item\nexclude_watched = watched\n%s"
             "[optimizer]\ntype = adagrad\n[train]\nepochs = 1\nbatch = 64\n", path_value, head);
    const char *path = tu_write(".ini", text);
    const char *hit = strstr(text, line_of);
    assert_non_null(hit);
    int line = 1;
    for (const char *c = text; c < hit; c++) line += *c == '\n';
    ts_err e = {{0}};
    assert_int_equal(tu_build_exp(path, 0, NULL, &e), -1);
    char where[600];
    snprintf(where, sizeof where, "%s:%d:", path, line);
    tu_contains(e.msg, where, NULL);
    va_list ap;
    va_start(ap, line_of);
    for (const char *s; (s = va_arg(ap, const char *));) tu_contains(e.msg, s, NULL);
    va_end(ap);
    unlink(path);
}

static void bad_input_names_the_line(void **state)
{
    (void)state;
    const char *ml = tu_src("data/movielens/ml-latest-small");
    expect_bad_ini(ml, "item_tower = id\nitem_tower_units = 32\n", "item_tower_units",
                   "item_tower_units = 32 shapes an item tower over item features", NULL);
    expect_bad_ini(ml, "item_tower = id, features\nitem_features = item_tag\n", "item_features",
                   "needs the item feature bag 'item_tag'", "item_tag_off", NULL);
    /* a MovieLens folder without movies.csv has no genres: no item feature bag */
    char dir[64], path[128];
    snprintf(dir, sizeof dir, "/tmp/tessera-test-twotower-XXXXXX");
    assert_non_null(mkdtemp(dir));
    snprintf(path, sizeof path, "%s/ratings.csv", dir);
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    fprintf(f, "userId,movieId,rating,timestamp\n");
    for (int u = 1; u <= 4; u++)
        for (int k = 0; k < 6; k++) fprintf(f, "%d,%d,4.0,%d\n", u, 1 + (u * 7 + k * 3) % 10, 1000 + k);
    fclose(f);
    expect_bad_ini(dir, "item_tower = id, features\n", "item_tower", "item_feature_off",
                   "use item_tower = id", NULL);
    unlink(path);
    rmdir(dir);
}

/* ---- end to end on ml-latest-small ---------------------------------------------------------- */
static double metric_of(const char *dir, const char *key)
{
    double v;
    ts_err e = {{0}};
    if (ts_metrics_get(dir, key, &v, &e)) fail_msg("%s", e.msg);
    return v;
}

/* Trains ini for `epochs` into a fresh folder (dir, 64 bytes). */
static void train(const char *ini, const char *epochs, char *dir)
{
    snprintf(dir, 64, "/tmp/tessera-test-twotower-XXXXXX");
    assert_non_null(mkdtemp(dir));
    char *ov[] = {(char *)epochs, "train.patience=0", data_ov};
    ts_run_opts o = {.results_dir = dir, .noverride = 3, .overrides = ov};
    ts_err e = {{0}};
    if (ts_run(ini, &o, &e)) fail_msg("ts_run(%s): %s", ini, e.msg);
}

/* The trained run in dir rebuilt, its params.bin loaded, and the retrieval head's V made as an
 * evaluation makes it (eval_begin: the tower over the catalogue). */
static ts_exp *reload(const char *dir, ts_hnode **head, ts_err *e)
{
    char cfg[128], pp[128], *ov[1] = {data_ov};
    snprintf(cfg, sizeof cfg, "%s/config.ini", dir);
    snprintf(pp, sizeof pp, "%s/params.bin", dir);
    ts_exp *x = build_exp(cfg, dir, 1, ov, e);
    if (!x) fail_msg("%s", e->msg);
    if (ts_load_params(x, pp, e)) fail_msg("%s", e->msg);
    *head = NULL;
    for (int i = 0; i < x->nheads; i++) if (!strcmp(x->heads[i].H.name, "next")) *head = &x->heads[i];
    assert_non_null(*head);
    assert_int_equal((*head)->ops->eval_begin(&(*head)->H, TS_TEST, e), 0);
    return x;
}

static const float *param_w(ts_exp *x, const char *name)
{
    for (int i = 0; i < x->ctx.nparams; i++) if (!strcmp(x->ctx.params[i]->name, name)) return x->ctx.params[i]->w;
    fail_msg("no parameter %s", name);
    return NULL;
}

static int cmpd(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

/* Cold start: items with no training watch (item_freq 0) and known genres. For each genre g, m_g
 * is the mean vector of the well-trained items (>= 20 watches) of that genre; a cold item's
 * vector should point towards the m_g of its own genres more than towards the others':
 * own - other = mean cos(v, m_g), g in its genres, minus the same over the other genres.
 * Returns the mean of own - other over the cold items; *ncold, *norm_ratio (median norm of the
 * cold vectors over that of the trained ones) for the record. */
static double genre_alignment(ts_exp *x, const float *V, int D, int *ncold, double *norm_ratio)
{
    const void *p;
    long items, n, vocab;
    assert_int_equal(ts_ctx_aux(&x->ctx, "item_freq", &p, &items), 0);
    const float *freq = p;
    assert_int_equal(ts_ctx_aux(&x->ctx, "item_feature_off", &p, &n), 0);
    const int32_t *off = p;
    assert_int_equal(ts_ctx_aux(&x->ctx, "item_feature_ids", &p, &n), 0);
    const int32_t *ids = p;
    assert_int_equal(ts_ctx_aux(&x->ctx, "item_feature_vocab", &p, &n), 0);
    vocab = *(const long *)p;
    double *m = calloc((size_t)(vocab * D), sizeof *m), *cold_norm = malloc((size_t)items * sizeof *cold_norm);
    double *warm_norm = malloc((size_t)items * sizeof *warm_norm);
    int *cnt = calloc((size_t)vocab, sizeof *cnt), nw = 0;
    for (long i = 0; i < items; i++) {
        if (freq[i] < 20) continue;
        double s = 0;
        for (int d = 0; d < D; d++) s += (double)V[i * D + d] * V[i * D + d];
        warm_norm[nw++] = sqrt(s);
        for (int32_t q = off[i]; q < off[i + 1]; q++) {
            cnt[ids[q]]++;
            for (int d = 0; d < D; d++) m[ids[q] * D + d] += V[i * D + d];
        }
    }
    for (long g = 0; g < vocab; g++) {
        double s = 0;
        for (int d = 0; d < D; d++) s += m[g * D + d] * m[g * D + d];
        for (int d = 0; d < D; d++) m[g * D + d] /= s > 0 ? sqrt(s) : 1;
    }
    double total = 0;
    *ncold = 0;
    for (long i = 0; i < items; i++) {
        if (freq[i] != 0 || off[i + 1] == off[i]) continue;
        double s = 0, own = 0, other = 0;
        int no = 0, nt = 0;
        for (int d = 0; d < D; d++) s += (double)V[i * D + d] * V[i * D + d];
        cold_norm[*ncold] = sqrt(s);
        (*ncold)++;
        if (s == 0) continue;                       /* a zero vector aligns with nothing */
        for (long g = 0; g < vocab; g++) {
            if (!cnt[g]) continue;
            double c = 0;
            for (int d = 0; d < D; d++) c += V[i * D + d] * m[g * D + d];
            c /= sqrt(s);
            int mine = 0;
            for (int32_t q = off[i]; q < off[i + 1]; q++) mine |= ids[q] == g;
            if (mine) { own += c; no++; } else { other += c; nt++; }
        }
        if (no && nt) total += own / no - other / nt;
    }
    qsort(cold_norm, (size_t)*ncold, sizeof *cold_norm, cmpd);
    qsort(warm_norm, (size_t)nw, sizeof *warm_norm, cmpd);
    *norm_ratio = *ncold && nw ? cold_norm[*ncold / 2] / warm_norm[nw / 2] : 0;
    free(m); free(cnt); free(cold_norm); free(warm_norm);
    return *ncold ? total / *ncold : 0;
}

static void two_tower_learns(void **state)
{
    (void)state;
    char dir[64], ydir[64];
    train(tu_src("experiments/movielens_two_tower.ini"), "train.epochs=3", dir);
    double model = metric_of(dir, "test.next.recall@50"), pop = metric_of(dir, "test.popularity.recall@50");
    printf("# two-tower test recall@50 %.4f (popularity %.4f), recall@10 %.4f, mrr %.4f, "
           "rare_recall@100 %.4f over %g rare targets\n", model, pop,
           metric_of(dir, "test.next.recall@10"), metric_of(dir, "test.next.mrr"),
           metric_of(dir, "test.next.rare_recall@100"), metric_of(dir, "test.next.rare_targets"));
    assert_true(model > pop + 0.04);              /* 0.1918 against 0.1082 measured */
    assert_true(metric_of(dir, "test.next.rare_targets") > 50);

    /* the reloaded run scores as the run did: V made from the loaded weights */
    ts_err e = {{0}};
    ts_hnode *hn;
    ts_exp *x = reload(dir, &hn, &e);
    x->ctx.nmetrics = 0;
    if (ts_exp_evaluate(x, TS_TEST, &e)) fail_msg("%s", e.msg);
    for (int i = 0; i < x->ctx.nmetrics; i++) {
        ts_metric_rec *m = &x->ctx.metrics[i];
        if (strcmp(m->task, "next") || strncmp(m->metric, "recall@", 7)) continue;
        char key[160];
        snprintf(key, sizeof key, "test.next.%s", m->metric);
        assert_true(fabs(m->value - metric_of(dir, key)) < 1e-12);
    }
    /* `tessera export` writes the vectors that were scored, the tower's, bit for bit */
    const float *V = param_w(x, "head.next.V"), *b = param_w(x, "head.next.b");
    char cmd[8400], path[160];
    snprintf(cmd, sizeof cmd, "'%s' export '%s' --out '%s/exp' '%s' >/dev/null", tu_build("tessera"), dir, dir, data_ov);
    assert_int_equal(system(cmd), 0);
    snprintf(path, sizeof path, "%s/exp/item_vectors.bin", dir);
    FILE *f = fopen(path, "rb");
    assert_non_null(f);
    uint32_t hdr[4];
    assert_int_equal(fread(hdr, sizeof hdr, 1, f), 1);
    assert_int_equal(hdr[2], 9724);
    assert_int_equal(hdr[3], 64);
    float *iv = malloc(9724 * 65 * sizeof *iv);
    assert_int_equal(fread(iv, sizeof *iv, 9724 * 65, f), 9724 * 65);
    fclose(f);
    assert_memory_equal(iv, V, 9724 * 64 * sizeof *iv);
    assert_memory_equal(iv + 9724 * 64, b, 9724 * sizeof *iv);
    /* and the V of params.bin (what `recommend` scores with) is that too */
    ts_exp *y = build_exp(tu_src("experiments/movielens_two_tower.ini"), NULL, 1, (char *[]){data_ov}, &e);
    if (!y) fail_msg("%s", e.msg);
    snprintf(path, sizeof path, "%s/params.bin", dir);
    if (ts_load_params(y, path, &e)) fail_msg("%s", e.msg);
    assert_memory_equal(param_w(y, "head.next.V"), V, 9724 * 64 * sizeof *iv);
    ts_exp_free(y);
    free(iv);

    /* cold start: the tower's cold vectors follow their genres; the id-only model's do not */
    int ncold;
    double ratio, tower = genre_alignment(x, V, 64, &ncold, &ratio);
    printf("# two-tower: %d items never watched in training; their vectors' genre alignment "
           "%.3f, median norm %.2f of the trained items'\n", ncold, tower, ratio);
    ts_exp_free(x);
    train(tu_src("experiments/movielens_youtube_dnn.ini"), "train.epochs=3", ydir);
    x = reload(ydir, &hn, &e);
    double ratio_y, idonly = genre_alignment(x, param_w(x, "head.next.V"), 64, &ncold, &ratio_y);
    printf("# id-only (YouTube DNN): genre alignment %.3f, median norm %.2f\n", idonly, ratio_y);
    ts_exp_free(x);
    assert_true(ncold > 20);
    assert_true(tower > 0.08);                     /* 0.156 measured, seed 1, one BLAS thread */
    assert_true(tower > idonly + 0.08);            /* the id-only model's: 0.000 */
    assert_true(ratio > 0.05);                     /* not a vector near zero */
    snprintf(cmd, sizeof cmd, "rm -rf '%s' '%s'", dir, ydir);
    assert_int_equal(system(cmd), 0);
}

int main(void)
{
    snprintf(data_ov, sizeof data_ov, "data.path=%s", tu_src("data/movielens/ml-latest-small"));
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(tower_gradients),
        cmocka_unit_test(tower_matches_formula),
        cmocka_unit_test(bad_keys_and_aux),
        cmocka_unit_test(rare_figures),
        cmocka_unit_test(movielens_genres_as_aux),
        cmocka_unit_test(bad_input_names_the_line),
        cmocka_unit_test(two_tower_learns),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
