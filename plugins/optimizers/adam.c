/* adam.c — Adam (Kingma & Ba, 2015) with bias correction, and lazy Adam for sparse tables.
 *
 * With g' = g + weight_decay * w (L2, as PyTorch's Adam), slots m and v (starting at 0):
 *   m <- b1 m + (1 - b1) g',   v <- b2 v + (1 - b2) g'^2
 *   w <- w - lr * (m / (1 - b1^t)) / (sqrt(v / (1 - b2^t)) + eps)
 * The first step moves every weight by about -lr * sign(g). For a TS_PARAM_SPARSE table only
 * the touched rows' moments move (lazy Adam, TensorFlow's LazyAdamOptimizer), bias-corrected
 * with the global step t; untouched rows keep their moments. Frozen and tied (p->shared > 0)
 * parameters are left alone. It is not AdamW (decoupled decay) and not AMSGrad.
 * The update runs over every weight of every step (a DSSM step moves about 2 million), so it is
 * written with SSE intrinsics on x86-64: four weights per instruction, the same operations in
 * the same order as the scalar loop (so the same results). The compiler cannot vectorise the
 * scalar loop itself: sqrtf may set errno, and GCC keeps that call scalar even under
 * optimize("no-math-errno"); scalar, the update took 3.7 ns per weight, with SSE 0.9 ns.
 * Where the CPU has AVX, adam_avx does 8 weights per instruction first (issue 17: Adam was a
 * fifth of DSSM's training time in perf), the same operations again, so the same bits.
 */
#include "tessera.h"

#include <math.h>
#include <stdlib.h>
#if defined(__SSE2__)
#include <emmintrin.h>
#endif

typedef struct adam_state {
    float lr, beta1, beta2, eps, weight_decay;
} adam_state;

/* Updates n weights w (n) with gradient g (n), moments m (n) and v (n); b1, b2, eps, wd are the
 * configured constants. a = lr / (1 - b1^t), c = 1 / sqrt(1 - b2^t): the bias corrections
 * folded into two scalars. */
#if defined(__GNUC__) && defined(__x86_64__)
#include <immintrin.h>
/* The same loop 8 weights per instruction, for CPUs with AVX (adam_span's first part there):
 * the same operations in the same order, no FMA, so the same bits. Returns the weights done. */
__attribute__((target("avx")))
static long adam_avx(float b1, float b2, float eps, float wd, float a, float c,
                     float *restrict w, const float *restrict g, float *restrict m,
                     float *restrict v, long n)
{
    const __m256 B1 = _mm256_set1_ps(b1), B2 = _mm256_set1_ps(b2), C1 = _mm256_set1_ps(1.0f - b1),
                 C2 = _mm256_set1_ps(1.0f - b2), EPS = _mm256_set1_ps(eps), WD = _mm256_set1_ps(wd),
                 A = _mm256_set1_ps(a), C = _mm256_set1_ps(c);
    long i = 0;
    for (; i + 8 <= n; i += 8) {
        __m256 wi = _mm256_loadu_ps(w + i);
        __m256 gi = _mm256_add_ps(_mm256_loadu_ps(g + i), _mm256_mul_ps(WD, wi));
        __m256 mi = _mm256_add_ps(_mm256_mul_ps(B1, _mm256_loadu_ps(m + i)), _mm256_mul_ps(C1, gi));
        __m256 vi = _mm256_add_ps(_mm256_mul_ps(B2, _mm256_loadu_ps(v + i)),
                                  _mm256_mul_ps(_mm256_mul_ps(C2, gi), gi));
        _mm256_storeu_ps(m + i, mi);
        _mm256_storeu_ps(v + i, vi);
        __m256 den = _mm256_add_ps(_mm256_mul_ps(_mm256_sqrt_ps(vi), C), EPS);
        _mm256_storeu_ps(w + i, _mm256_sub_ps(wi, _mm256_div_ps(_mm256_mul_ps(A, mi), den)));
    }
    return i;
}

/* No cached flag: step() runs on several threads at once ([train] threads), and the test reads
 * a word the CPU-indicator constructor wrote once at load. */
static int have_avx(void)
{
    __builtin_cpu_init();
    return __builtin_cpu_supports("avx") != 0;
}
#endif

static void adam_span(float b1, float b2, float eps, float wd, float a, float c,
                      float *restrict w, const float *restrict g, float *restrict m,
                      float *restrict v, long n)
{
    long i = 0;
#if defined(__GNUC__) && defined(__x86_64__)
    if (have_avx()) i = adam_avx(b1, b2, eps, wd, a, c, w, g, m, v, n);
#endif
#if defined(__SSE2__)
    const __m128 B1 = _mm_set1_ps(b1), B2 = _mm_set1_ps(b2), C1 = _mm_set1_ps(1.0f - b1),
                 C2 = _mm_set1_ps(1.0f - b2), EPS = _mm_set1_ps(eps), WD = _mm_set1_ps(wd),
                 A = _mm_set1_ps(a), C = _mm_set1_ps(c);
    for (; i + 4 <= n; i += 4) {   /* what AVX left (or all of it without AVX) */
        __m128 wi = _mm_loadu_ps(w + i);
        __m128 gi = _mm_add_ps(_mm_loadu_ps(g + i), _mm_mul_ps(WD, wi));
        __m128 mi = _mm_add_ps(_mm_mul_ps(B1, _mm_loadu_ps(m + i)), _mm_mul_ps(C1, gi));
        __m128 vi = _mm_add_ps(_mm_mul_ps(B2, _mm_loadu_ps(v + i)),
                               _mm_mul_ps(_mm_mul_ps(C2, gi), gi));
        _mm_storeu_ps(m + i, mi);
        _mm_storeu_ps(v + i, vi);
        __m128 den = _mm_add_ps(_mm_mul_ps(_mm_sqrt_ps(vi), C), EPS);
        _mm_storeu_ps(w + i, _mm_sub_ps(wi, _mm_div_ps(_mm_mul_ps(A, mi), den)));
    }
#endif
    for (; i < n; i++) {
        float gi = g[i] + wd * w[i];
        m[i] = b1 * m[i] + (1.0f - b1) * gi;
        v[i] = b2 * v[i] + (1.0f - b2) * gi * gi;
        w[i] -= a * m[i] / (sqrtf(v[i]) * c + eps);
    }
}

static int init(void **state, const ts_cfg *cfg, ts_err *e)
{
    double lr = 1e-3, b1 = 0.9, b2 = 0.999, eps = 1e-8, wd = 0;
    if (cfg && (ts_cfg_float(cfg, "lr", &lr, e) || ts_cfg_float(cfg, "beta1", &b1, e) ||
                ts_cfg_float(cfg, "beta2", &b2, e) || ts_cfg_float(cfg, "eps", &eps, e) ||
                ts_cfg_float(cfg, "weight_decay", &wd, e)))
        return -1;
    if (!(lr > 0) || !(b1 >= 0 && b1 < 1) || !(b2 >= 0 && b2 < 1) || !(eps > 0) || !(wd >= 0))
        return ts_fail(e, "%s: adam needs lr > 0, beta1 and beta2 in [0, 1), eps > 0 and "
                       "weight_decay >= 0 (got %g, %g, %g, %g, %g)",
                       cfg ? ts_cfg_section(cfg) : "adam", lr, b1, b2, eps, wd);
    adam_state *s = malloc(sizeof *s);
    if (!s) return ts_fail(e, "adam: out of memory");
    *s = (adam_state){(float)lr, (float)b1, (float)b2, (float)eps, (float)wd};
    *state = s;
    return 0;
}

static int step(void *state, ts_param *p, long t, float lr_scale, ts_err *e)
{
    const adam_state *s = state;
    if ((p->flags & TS_PARAM_FROZEN) || p->shared > 0) return 0;
    if (t < 1) return ts_fail(e, "adam: step t = %ld; steps count from 1", t);
    if (!p->state) return ts_fail(e, "adam: parameter %s has no optimizer slots", p->name);
    long n = (long)p->rows * p->cols, cols = p->cols;
    float a = (float)(s->lr * lr_scale / (1.0 - pow(s->beta1, (double)t)));
    float c = (float)(1.0 / sqrt(1.0 - pow(s->beta2, (double)t)));
    float *m = p->state, *v = p->state + n;      /* two slots of (rows, cols) */
    if (p->flags & TS_PARAM_SPARSE) {
        /* The touched rows in ascending order when they are not too sparse a part of the
         * table: walking w, g, m and v upwards lets the hardware prefetcher run ahead, and the
         * update took half the time of the same rows in the order a batch touched them
         * (3,500 of 10,000 rows of 300). Each row's update is independent of the others, so
         * the order changes no result. */
        if (p->is_touched && (long)p->rows <= 64L * p->ntouched) {
            for (long r = 0; r < p->rows; r++) {
                if (!p->is_touched[r]) continue;
                long o = r * cols;
                adam_span(s->beta1, s->beta2, s->eps, s->weight_decay, a, c, p->w + o, p->g + o,
                          m + o, v + o, cols);
            }
        } else {
            for (int k = 0; k < p->ntouched; k++) {
                long o = (long)p->touched[k] * cols;
                adam_span(s->beta1, s->beta2, s->eps, s->weight_decay, a, c, p->w + o,
                          p->g + o, m + o, v + o, cols);
            }
        }
    } else {
        adam_span(s->beta1, s->beta2, s->eps, s->weight_decay, a, c, p->w, p->g, m, v, n);
    }
    return 0;
}

static void destroy(void *state) { free(state); }

static const ts_key keys[] = {
    {"lr", "float", "0.001", "learning rate"},
    {"beta1", "float", "0.9", "decay of the first moment"},
    {"beta2", "float", "0.999", "decay of the second moment"},
    {"eps", "float", "1e-8", "added to sqrt(v) to avoid division by zero"},
    {"weight_decay", "float", "0", "L2 penalty added to the gradient: g + weight_decay * w"},
    {NULL, NULL, NULL, NULL}};

/* step() reads only its own state and the parameter it is given: TS_BRANCH_SAFE */
static const ts_optim_ops ops = {.size = sizeof(ts_optim_ops), .nslots = 2, .init = init, .step = step,
    .destroy = destroy, .concurrency = TS_BRANCH_SAFE};

static const ts_plugin plugin = {TS_ABI, sizeof(ts_plugin), TS_OPTIMIZER, "adam", "1.0",
    "Adam with bias correction; lazy Adam on sparse tables", keys, &ops};

const ts_plugin *tessera_plugin_entry(uint32_t i) { return i == 0 ? &plugin : NULL; }
