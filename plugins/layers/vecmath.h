/* vecmath.h — what lets the hot elementwise loops of the plugins run as SIMD code, and a tanh
 * that vectorises.
 *
 * What it is for: the project builds with plain -O2 (no -march), at which GCC vectorises almost
 * no loop, and libm's tanhf is a scalar call of about 20 ns. The layers' elementwise passes
 * (tanh over every conv position, Adam over every weight, the embedding-bag row sums) then cost
 * more than the sgemms around them. TS_VEC marks such a kernel function:
 *   - GCC: optimize("O3", "no-trapping-math") turns the loop vectoriser on for that function
 *     only; no-trapping-math lets it compute both sides of a ?: (if-conversion). Neither
 *     changes a result: no reassociation, no fast-math, IEEE rounding of every operation as
 *     written. (A libm call such as sqrtf or expf stays scalar: GCC's builtins keep -fmath-errno
 *     whatever the attribute says; adam.c uses SSE intrinsics for its sqrtf.)
 *   - x86-64 Linux, GCC or clang >= 14: target_clones makes copies for CPUs with AVX-512 (16
 *     floats per instruction) and with AVX2 (8, instead of SSE2's 4), chosen once at load time
 *     (an ifunc), and the plain x86-64 copy otherwise. (AVX-512 halved ts_vec_tanh's share of
 *     a DSSM run and gained 1-4% on the text models, issue 17.) (Not "arch=haswell": GCC's
 *     resolver then tests for that CPU model, so an AMD CPU would get the plain copy.)
 *     With -std=c11 GCC contracts no a * b + c into an FMA, so every copy rounds alike; a
 *     compiler that contracts (clang) may differ in the last bit between them. On one machine
 *     a run stays deterministic either way.
 * A TS_VEC function must do its work in its own body (GCC does not inline a helper compiled
 * with other options into it), and is a plain function over explicit buffers, as every kernel
 * here. Each plugin that includes this header gets its own copies (static functions).
 * What it is not: a portable SIMD library, nor a place for anything that needs a particular
 * summation order (reductions stay scalar where the order matters).
 */
#ifndef TS_PLUGIN_VECMATH_H
#define TS_PLUGIN_VECMATH_H

#include <stdint.h>

#if defined(__clang__)
#  if defined(__x86_64__) && defined(__linux__) && __clang_major__ >= 14
/* no `unused` here: clang refuses it beside target_clones (the functions of this header are
 * static inline instead, which clang does not report when unused) */
#    define TS_VEC __attribute__((target_clones("avx512f", "avx2", "default")))
#  else
#    define TS_VEC __attribute__((unused))
#  endif
#elif defined(__GNUC__)
#  if defined(__x86_64__) && defined(__linux__)
#    define TS_VEC __attribute__((unused, optimize("O3", "no-trapping-math"), \
                                   target_clones("avx512f", "avx2", "default")))
#  else
#    define TS_VEC __attribute__((unused, optimize("O3", "no-trapping-math")))
#  endif
#else
#  define TS_VEC
#endif

/* OUT = e^c for c in [-80, 18]: Cephes' expf. c = n ln 2 + r, |r| <= ln(2)/2, with n = round(c /
 * ln 2) (adding 1.5 * 2^23 rounds to an integer in the low mantissa bits) and ln 2 in two parts;
 * e^r by a degree-7 polynomial; times 2^n put straight into the exponent bits. A macro, so that
 * each TS_VEC kernel below does the work in its own body. */
#define TS_EXPF(c, OUT)                                                         \
    do {                                                                        \
        union { float f; uint32_t i; } k_, p_;                                  \
        k_.f = (c) * 1.44269504088896341f + 12582912.0f;                        \
        float nf_ = k_.f - 12582912.0f;                                         \
        float r_ = ((c) - nf_ * 0.693359375f) + nf_ * 2.12194440e-4f;           \
        float q_ = 1.9875691500e-4f;                                            \
        q_ = q_ * r_ + 1.3981999507e-3f;                                        \
        q_ = q_ * r_ + 8.3334519073e-3f;                                        \
        q_ = q_ * r_ + 4.1665795894e-2f;                                        \
        q_ = q_ * r_ + 1.6666665459e-1f;                                        \
        q_ = q_ * r_ + 5.0000001201e-1f;                                        \
        p_.f = q_ * r_ * r_ + r_ + 1.0f;                                        \
        p_.i += (k_.i - 0x4B400000u) << 23;                                     \
        (OUT) = p_.f;                                                           \
    } while (0)

/* y (n) = tanh(x (n)), within 1 ulp of the correctly rounded value (checked over every float
 * in [-20, 20]); x and y may be the same buffer. NaN gives NaN, +-inf give +-1.
 *   |x| < 0.625: tanh x = x + x s P(s), s = x^2 (Cephes' tanhf polynomial), no cancellation;
 *   else:        tanh |x| = 1 - 2 / (e + 1), e = exp(2 |x|) with |x| capped at 9 (tanh 9 rounds
 *                to 1 in float), exp by TS_EXPF.
 * Both branches are computed for every element and one is selected, so the loop vectorises. */
TS_VEC static inline void ts_vec_tanh(const float *x, float *y, long n)
{
    for (long i = 0; i < n; i++) {
        float v = x[i], a = v < 0 ? -v : v;
        a = a > 9.0f ? 9.0f : a;                       /* a NaN stays NaN */
        float t = 2.0f * a, et;
        TS_EXPF(t, et);                                 /* e^t, n in [0, 26] */
        float big = 1.0f - 2.0f / (et + 1.0f);
        big = v < 0 ? -big : big;
        float s = v * v;
        float w = -5.70498872745e-3f;
        w = w * s + 2.06390887954e-2f;
        w = w * s - 5.37397155531e-2f;
        w = w * s + 1.33314422036e-1f;
        w = w * s - 3.33332819422e-1f;
        float small = w * s * v + v;
        y[i] = a < 0.625f ? small : big;
    }
}

/* y (n) = exp(x (n) - m) for x <= m: the shifted logits of a softmax, m their maximum, by
 * TS_EXPF, within 1 ulp of libm's expf (test_vec_exp); 0 for t < -80 (e^-80 = 2e-35, nothing
 * beside the 1 of the maximum), which keeps 2^n a normal float. NaN gives NaN. */
TS_VEC static inline void ts_vec_exp_shift(const float *x, float m, float *y, long n)
{
    for (long i = 0; i < n; i++) {
        float t = x[i] - m;
        float c = t < -80.0f ? -80.0f : t;
        c = c > 0.0f ? 0.0f : c;
        float ec;
        TS_EXPF(c, ec);                                 /* n in [-116, 0] */
        float v = t < -80.0f ? 0.0f : ec;
        y[i] = t == t ? v : t;
    }
}

/* The largest of x (n), n >= 1, in 8 lanes: a scan's value for any x without NaN (with a NaN
 * it is NaN or the largest of the rest; a softmax over the row is NaN either way). */
TS_VEC static inline float ts_vec_max(const float *x, long n)
{
    float a[8];
    for (int l = 0; l < 8; l++) a[l] = x[0];
    long i = 0;
    for (; i + 8 <= n; i += 8)
        for (int l = 0; l < 8; l++) a[l] = x[i + l] > a[l] ? x[i + l] : a[l];
    for (; i < n; i++) a[0] = x[i] > a[0] ? x[i] : a[0];
    float m = a[0];
    for (int l = 1; l < 8; l++) m = a[l] > m ? a[l] : m;
    return m;
}

/* sum of x (n) in double, in 8 interleaved partial sums combined in a fixed order: the same
 * result on every machine and copy, and a loop that vectorises. */
TS_VEC static inline double ts_vec_sum_d(const float *x, long n)
{
    double a[8] = {0, 0, 0, 0, 0, 0, 0, 0};
    long i = 0;
    for (; i + 8 <= n; i += 8)
        for (int l = 0; l < 8; l++) a[l] += (double)x[i + l];
    for (; i < n; i++) a[i & 7] += (double)x[i];
    return ((a[0] + a[1]) + (a[2] + a[3])) + ((a[4] + a[5]) + (a[6] + a[7]));
}

#endif /* TS_PLUGIN_VECMATH_H */
