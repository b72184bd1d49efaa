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

/* The entries of n consecutive positions (n, F) where dy is nonzero, as (position-major)
 * features into f and dz = dy * act'(y) into g, with p (n + 1) the offsets of each position's
 * entries from p0. Branch-free: every slot is written, the count advances past nonzeros only. */
static inline int compress(const float *y, const float *dy, int n, int F, int act, int32_t *f,
                           float *g, int32_t *p, int p0)
{
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
