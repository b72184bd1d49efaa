/* scale.c — an example tessera layer plugin written outside the tree: y = x ⊙ a, a learned
 * per-feature scale (a vector of the input's last width, initialised to `init`).
 *
 * It shows everything a plugin needs: the key list, build (check the input, set the output
 * shape, declare the parameter), forward, backward (accumulate with +=), and the one exported
 * entry. Build it against an installed tessera:
 *   cc -std=c11 -O2 -shared -fPIC -o scale.so scale.c $(pkg-config --cflags --libs tessera)
 *   tessera check-plugin ./scale.so
 *   TESSERA_PLUGIN_PATH=$PWD: tessera run my.ini     (with `type = scale` in a [layer.*])
 * It is an example, not a layer the bundled experiments use. */
#include <tessera.h>
#include <stdlib.h>

typedef struct scale_state {
    int width;       /* the input's last dimension D */
    ts_param *a;     /* (1, D) the scales */
} scale_state;

static int build(ts_layer *L, const ts_cfg *cfg, ts_err *e)
{
    if (L->nin != 1 || L->in[0]->dtype != TS_F32)
        return ts_fail(e, "scale takes one float input");
    double init;
    if (ts_cfg_float(cfg, "init", &init, e)) return -1;
    scale_state *s = calloc(1, sizeof *s);
    if (!s) return ts_fail(e, "out of memory");
    const ts_tensor *x = L->in[0];
    s->width = x->dim[x->ndim - 1];
    s->a = ts_param_add(L->ctx, "a", 1, s->width, TS_INIT_CONST, (float)init, 0, e);
    if (!s->a) { free(s); return -1; }
    L->out[0] = *x;                 /* same dtype, shape and lengths as the input */
    L->out[0].x = L->out[0].dx = NULL;   /* the host allocates them */
    L->state = s;
    return 0;
}

/* y (rows, D) = x (rows, D) * a (D) */
static int forward(ts_layer *L, ts_phase phase, ts_err *e)
{
    (void)phase; (void)e;
    const scale_state *s = L->state;
    long rows = ts_numel(L->in[0]) / s->width;
    const float *x = L->in[0]->x, *a = s->a->w;
    float *y = L->out[0].x;
    for (long r = 0; r < rows; r++)
        for (int j = 0; j < s->width; j++) y[r * s->width + j] = x[r * s->width + j] * a[j];
    L->out[0].len = L->in[0]->len;
    return 0;
}

/* da_j += sum_r dy_rj x_rj ; dx_rj += dy_rj a_j */
static int backward(ts_layer *L, ts_err *e)
{
    (void)e;
    const scale_state *s = L->state;
    long rows = ts_numel(L->in[0]) / s->width;
    const float *x = L->in[0]->x, *a = s->a->w, *dy = L->out[0].dx;
    float *dx = L->in[0]->dx, *da = s->a->g;
    for (long r = 0; r < rows; r++)
        for (int j = 0; j < s->width; j++) {
            da[j] += dy[r * s->width + j] * x[r * s->width + j];
            if (dx) dx[r * s->width + j] += dy[r * s->width + j] * a[j];
        }
    return 0;
}

static void destroy(ts_layer *L) { free(L->state); }

static const ts_key keys[] = {
    {"init", "float", "1", "initial value of every scale"},
    {NULL, NULL, NULL, NULL}};
static const ts_layer_ops ops = {.size = sizeof(ts_layer_ops),
    .build = build, .forward = forward, .backward = backward,
                                 .destroy = destroy, .check_inputs = "f32 4 3 5 len"};
static const ts_plugin plugin = {TS_ABI, sizeof(ts_plugin), TS_LAYER, "scale", "1.0",
                                 "y = x * a, a learned scale per feature (example plugin)", keys,
                                 &ops};

const ts_plugin *tessera_plugin_entry(uint32_t index) { return index == 0 ? &plugin : NULL; }
