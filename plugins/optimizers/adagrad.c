/* adagrad.c — Adagrad (Duchi et al., 2011), row-wise lazy on sparse tables.
 *
 * With the accumulator G = initial_accumulator + s, where the slot s starts at 0 (the host
 * zeroes slots, so the initial value is added rather than stored):
 *   s <- s + g^2,   w <- w - lr * g / (sqrt(initial_accumulator + s) + eps)
 * as PyTorch's Adagrad (initial_accumulator_value, eps 1e-10). Sparse parameters update only
 * their touched rows; frozen and tied (p->shared > 0) parameters are left alone.
 * It is not Adadelta or RMSprop (no decay of the accumulator).
 */
#include "tessera.h"

#include <math.h>
#include <stdlib.h>

typedef struct adagrad_state {
    float lr, eps, initial;
    int avx; /* the CPU has AVX: adagrad_span's 8-wide path */
} adagrad_state;

/* Updates n weights w (n) from g (n) and the accumulated squares s (n). The loop is SIMD
 * (AVX where the CPU has it, else SSE2): a scalar sqrtf keeps its errno path and GCC leaves
 * the loop scalar at -O2, which made this update a fifth of the YouTube DNN's training time
 * (perf, issue 17). Every lane computes the same IEEE operations in the same order as the
 * scalar tail (no FMA: the products and sums are separate instructions), so the result is
 * bit-identical to the scalar loop. */
#if defined(__GNUC__) && defined(__x86_64__)
#include <immintrin.h>
__attribute__((target("avx")))
static long adagrad_avx(float lr, float eps, float g0, float *restrict w,
                        const float *restrict g, float *restrict s, long n)
{
    const __m256 LR = _mm256_set1_ps(lr), EPS = _mm256_set1_ps(eps), G0 = _mm256_set1_ps(g0);
    long i = 0;
    for (; i + 8 <= n; i += 8) {
        __m256 gi = _mm256_loadu_ps(g + i);
        __m256 si = _mm256_add_ps(_mm256_loadu_ps(s + i), _mm256_mul_ps(gi, gi));
        _mm256_storeu_ps(s + i, si);
        __m256 den = _mm256_add_ps(_mm256_sqrt_ps(_mm256_add_ps(G0, si)), EPS);
        __m256 wi = _mm256_loadu_ps(w + i);
        _mm256_storeu_ps(w + i, _mm256_sub_ps(wi, _mm256_div_ps(_mm256_mul_ps(LR, gi), den)));
    }
    return i;
}

static long adagrad_sse(float lr, float eps, float g0, float *restrict w,
                        const float *restrict g, float *restrict s, long n)
{
    const __m128 LR = _mm_set1_ps(lr), EPS = _mm_set1_ps(eps), G0 = _mm_set1_ps(g0);
    long i = 0;
    for (; i + 4 <= n; i += 4) {
        __m128 gi = _mm_loadu_ps(g + i);
        __m128 si = _mm_add_ps(_mm_loadu_ps(s + i), _mm_mul_ps(gi, gi));
        _mm_storeu_ps(s + i, si);
        __m128 den = _mm_add_ps(_mm_sqrt_ps(_mm_add_ps(G0, si)), EPS);
        __m128 wi = _mm_loadu_ps(w + i);
        _mm_storeu_ps(w + i, _mm_sub_ps(wi, _mm_div_ps(_mm_mul_ps(LR, gi), den)));
    }
    return i;
}
#endif

static void adagrad_span(const adagrad_state *st, float lr, float *restrict w,
                         const float *restrict g, float *restrict s, long n)
{
    float eps = st->eps, g0 = st->initial;
    long i = 0;
#if defined(__GNUC__) && defined(__x86_64__)
    i = st->avx ? adagrad_avx(lr, eps, g0, w, g, s, n) : adagrad_sse(lr, eps, g0, w, g, s, n);
#endif
    for (; i < n; i++) {
        s[i] += g[i] * g[i];
        w[i] -= lr * g[i] / (sqrtf(g0 + s[i]) + eps);
    }
}

static int init(void **state, const ts_cfg *cfg, ts_err *e)
{
    double lr = 0.01, eps = 1e-10, g0 = 0;
    if (cfg && (ts_cfg_float(cfg, "lr", &lr, e) || ts_cfg_float(cfg, "eps", &eps, e) ||
                ts_cfg_float(cfg, "initial_accumulator", &g0, e)))
        return -1;
    if (!(lr > 0) || !(eps > 0) || !(g0 >= 0))
        return ts_fail(e, "%s: adagrad needs lr > 0, eps > 0 and initial_accumulator >= 0 (got "
                       "%g, %g, %g)", cfg ? ts_cfg_section(cfg) : "adagrad", lr, eps, g0);
    adagrad_state *s = malloc(sizeof *s);
    if (!s) return ts_fail(e, "adagrad: out of memory");
    *s = (adagrad_state){(float)lr, (float)eps, (float)g0, 0};
#if defined(__GNUC__) && defined(__x86_64__)
    __builtin_cpu_init();
    s->avx = __builtin_cpu_supports("avx") != 0;
#endif
    *state = s;
    return 0;
}

static int step(void *state, ts_param *p, long t, float lr_scale, ts_err *e)
{
    (void)t;
    const adagrad_state *s = state;
    if ((p->flags & TS_PARAM_FROZEN) || p->shared > 0) return 0;
    if (!p->state) return ts_fail(e, "adagrad: parameter %s has no optimizer slot", p->name);
    float lr = s->lr * lr_scale;
    long cols = p->cols;
    if (p->flags & TS_PARAM_SPARSE) {
        for (int k = 0; k < p->ntouched; k++) {
            long o = (long)p->touched[k] * cols;
            adagrad_span(s, lr, p->w + o, p->g + o, p->state + o, cols);
        }
    } else {
        adagrad_span(s, lr, p->w, p->g, p->state, (long)p->rows * cols);
    }
    return 0;
}

static void destroy(void *state) { free(state); }

static const ts_key keys[] = {
    {"lr", "float", "0.01", "learning rate"},
    {"eps", "float", "1e-10", "added to sqrt(G) to avoid division by zero"},
    {"initial_accumulator", "float", "0", "starting value of the sum of squared gradients"},
    {NULL, NULL, NULL, NULL}};

/* step() reads only its own state and the parameter it is given: TS_BRANCH_SAFE */
static const ts_optim_ops ops = {.size = sizeof(ts_optim_ops), .nslots = 1, .init = init, .step = step,
    .destroy = destroy, .concurrency = TS_BRANCH_SAFE};

static const ts_plugin plugin = {TS_ABI, sizeof(ts_plugin), TS_OPTIMIZER, "adagrad", "1.0",
    "Adagrad; row-wise lazy on sparse tables", keys, &ops};

const ts_plugin *tessera_plugin_entry(uint32_t i) { return i == 0 ? &plugin : NULL; }
