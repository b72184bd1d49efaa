/* convmath.h — what the two convolutions over words (conv1d over word vectors, sparse_conv over
 * the words' letter-trigram bags) share: their activations, and the nonzeros of the gradient
 * before the activation that max-over-time pooling leaves (one per filter per text).
 *
 * What it is for: one definition of act, act' and of the compressed dZ, so both layers agree on
 * them. What it is not: the convolutions' own maths, which each layer keeps in its file. Each
 * plugin that includes it gets its own copies (static functions).
 */
#ifndef TS_PLUGIN_CONVMATH_H
#define TS_PLUGIN_CONVMATH_H

#include <stdint.h>

#include "vecmath.h"

/* the order of the `activation` key's choice list: none|tanh|relu */
enum { ACT_NONE = 0, ACT_TANH, ACT_RELU };

/* y (n) = act(z (n)) for relu and none (tanh goes through ts_vec_tanh). */
TS_VEC static void act_plain(const float *z, float *y, long n, int act)
{
    if (act == ACT_RELU)
        for (long i = 0; i < n; i++) y[i] = z[i] > 0 ? z[i] : 0.0f;
    else
        for (long i = 0; i < n; i++) y[i] = z[i];
}

/* dz (n) = dy * act'(z), from the output y: tanh' = 1 - y^2, relu' = [y > 0]. */
TS_VEC static void act_grad(const float *y, const float *dy, float *dz, long n, int act)
{
    if (act == ACT_TANH)
        for (long i = 0; i < n; i++) dz[i] = dy[i] * (1.0f - y[i] * y[i]);
    else if (act == ACT_RELU)
        for (long i = 0; i < n; i++) dz[i] = y[i] > 0 ? dy[i] : 0.0f;
    else
        for (long i = 0; i < n; i++) dz[i] = dy[i];
}

#if defined(__GNUC__) && defined(__x86_64__) && defined(__linux__)
#include <immintrin.h>
#define TS_CONV_AVX512 1
/* compress below, 16 features per instruction on CPUs with AVX-512F: dz computed with the same
 * operations (no FMA), the nonzeros of dy selected by a mask and packed by vcompressps. Writes
 * only the entries kept (the scalar loop also writes one slot past each, which is never read). */
__attribute__((target("avx512f"), unused))
static int compress_avx512(const float *y, const float *dy, int n, int F, int act, int32_t *f,
                           float *g, int32_t *p, int p0)
{
    const __m512 one = _mm512_set1_ps(1.0f), zero = _mm512_setzero_ps();
    const __m512i iota = _mm512_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15);
    int m = p0;
    for (int t = 0; t < n; t++, y += F, dy += F) {
        p[t] = m;
        for (int j = 0; j < F; j += 16) {
            const __mmask16 in = F - j >= 16 ? (__mmask16)0xffff : (__mmask16)((1u << (F - j)) - 1);
            __m512 d = _mm512_maskz_loadu_ps(in, dy + j);
            __mmask16 nz = _mm512_mask_cmp_ps_mask(in, d, zero, _CMP_NEQ_UQ);   /* dy != 0 */
            if (!nz) continue;
            __m512 v = _mm512_maskz_loadu_ps(in, y + j), z;
            if (act == ACT_TANH)
                z = _mm512_mul_ps(d, _mm512_sub_ps(one, _mm512_mul_ps(v, v)));
            else if (act == ACT_RELU)   /* !(y > 0): 0 (a NaN y too) */
                z = _mm512_maskz_mov_ps(_mm512_cmp_ps_mask(v, zero, _CMP_GT_OQ), d);
            else
                z = d;
            _mm512_mask_compressstoreu_ps(g + m, nz, z);
            _mm512_mask_compressstoreu_epi32(f + m, nz, _mm512_add_epi32(iota, _mm512_set1_epi32(j)));
            m += __builtin_popcount(nz);
        }
    }
    p[n] = m;
    return m;
}

static inline int conv_have_avx512(void)
{
    static int a = -1;
    if (a < 0) {
        __builtin_cpu_init();
        a = __builtin_cpu_supports("avx512f") != 0;
    }
    return a;
}
#endif

/* The entries of n consecutive positions (n, F) where dy is nonzero, as (position-major)
 * features into f and dz = dy * act'(y) into g, with p (n + 1) the offsets of each position's
 * entries from p0. Branch-free: every slot is written, the count advances past nonzeros only. */
static inline int compress(const float *y, const float *dy, int n, int F, int act, int32_t *f,
                           float *g, int32_t *p, int p0)
{
#ifdef TS_CONV_AVX512
    if (conv_have_avx512()) return compress_avx512(y, dy, n, F, act, f, g, p, p0);
#endif
    int m = p0;
    for (int t = 0; t < n; t++, y += F, dy += F) {
        p[t] = m;
        if (act == ACT_TANH)
            for (int j = 0; j < F; j++) {
                f[m] = j;
                g[m] = dy[j] * (1.0f - y[j] * y[j]);
                m += dy[j] != 0.0f;
            }
        else
            for (int j = 0; j < F; j++) {
                f[m] = j;
                g[m] = act == ACT_RELU && !(y[j] > 0) ? 0.0f : dy[j];
                m += dy[j] != 0.0f;
            }
    }
    p[n] = m;
    return m;
}

#endif /* TS_PLUGIN_CONVMATH_H */
