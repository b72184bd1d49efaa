/* layer_harness.h — one layer plugin built on its own, for the tests of the mixture layers
 * (test_mmoe.c, test_ple.c): B x D standard-normal inputs (seed 99), every parameter, biases
 * included, drawn N(0, 0.25) (seed 123) so that no zero hides an error, outputs and their
 * gradients allocated. Header-only (static); include after cmocka.h and internal.h. */
#ifndef TS_TESTS_LAYER_HARNESS_H
#define TS_TESTS_LAYER_HARNESS_H

enum { B = 6, D = 7 };
typedef struct harness {
    const ts_plugin *pl;
    const ts_layer_ops *ops;
    ts_ctx ctx;
    ts_ini ini;
    ts_layer L;
    ts_tensor in;
    float *arena;
    size_t arena_n;
    char owner[80];
} harness;

/* Builds layer `name` of type on the inputs; -1 with e on a build error (h_free still applies). */
static int h_try(harness *h, const char *type, const char *name, const char *keys, ts_err *e)
{
    memset(h, 0, sizeof *h);
    if (!(h->pl = ts_plugin_find(TS_LAYER, type, e))) return -1;
    h->ops = h->pl->ops;
    ts_ctx_init(&h->ctx, 7, B);
    snprintf(h->owner, sizeof h->owner, "layer.%s", name);
    if (ts_ini_from_pairs(&h->ini, h->owner, keys, e)) return -1;
    static const char *const hk[] = {"type", "input", NULL};
    const ts_key *lists[1] = {h->pl->keys};
    if (ts_cfg_validate(&h->ini.sec[0], hk, lists, 1, e)) return -1;
    ts_rng r;
    ts_rng_seed(&r, 99);
    h->in = (ts_tensor){.dtype = TS_F32, .ndim = 2, .dim = {B, D}};
    h->in.x = malloc(B * D * sizeof(float));
    h->in.dx = calloc(B * D, sizeof(float));
    for (int i = 0; i < B * D; i++) h->in.x[i] = (float)ts_rng_normal(&r);
    h->L.name = h->owner + 6;
    h->L.ctx = &h->ctx;
    h->L.nin = 1;
    h->L.nout = 1;
    h->L.in[0] = &h->in;
    h->ctx.owner = h->owner;
    return h->ops->build(&h->L, &h->ini.sec[0], e);
}

/* h_try that must succeed, then the outputs and the random parameters. */
static void h_build(harness *h, const char *type, const char *name, const char *keys)
{
    ts_err e;
    if (h_try(h, type, name, keys, &e)) fail_msg("%s", e.msg);
    for (int k = 0; k < h->L.nout; k++) {
        long n = ts_numel(&h->L.out[k]);
        h->L.out[k].x = calloc((size_t)n, sizeof(float));
        h->L.out[k].dx = calloc((size_t)n, sizeof(float));
    }
    if (ts_ctx_alloc_params(&h->ctx, 0, &h->arena, &h->arena_n, &e)) fail_msg("%s", e.msg);
    ts_rng r;
    ts_rng_seed(&r, 123);
    for (int i = 0; i < h->ctx.nparams; i++) {
        ts_param *p = h->ctx.params[i];
        for (long j = 0; j < (long)p->rows * p->cols; j++) p->w[j] = (float)(0.5 * ts_rng_normal(&r));
    }
}

static void h_free(harness *h)
{
    if (h->L.state) h->ops->destroy(&h->L);
    for (int k = 0; k < h->L.nout; k++) { free(h->L.out[k].x); free(h->L.out[k].dx); }
    free(h->in.x); free(h->in.dx); free(h->arena);
    ts_ctx_free(&h->ctx);
    ts_ini_free(&h->ini);
}

/* The parameter whose name ends in ".suffix". */
static ts_param *param(harness *h, const char *suffix)
{
    for (int i = 0; i < h->ctx.nparams; i++) {
        const char *n = h->ctx.params[i]->name;
        size_t a = strlen(n), b = strlen(suffix);
        if (a > b && !strcmp(n + a - b, suffix) && n[a - b - 1] == '.') return h->ctx.params[i];
    }
    fail_msg("no parameter %s", suffix);
    return NULL;
}

#endif
