/* compose.h — what the composing layers (add, multiply, dot, reduce, reshape, split, fm, cross,
 * dropout, layer_norm) share: the name an experiment gave an input, for messages that say which
 * input is wrong, and the checks of a float input's shape.
 *
 * What it is for: the sentences of build errors ("FILE:LINE: layer.sum (add): input 2 'b' is
 * (512, 4) f32 but input 1 'a' is (512, 3) f32; ..."), so every layer words them alike.
 * What it is not: a kernel library; each plugin keeps its maths in its own file. Each plugin that
 * includes it gets its own copies (static inline functions).
 */
#ifndef TS_PLUGIN_COMPOSE_H
#define TS_PLUGIN_COMPOSE_H

#include <ctype.h>
#include <stdio.h>
#include <string.h>

#include "tessera.h"

/* The i-th (0-based) name of the section's `input =` list into buf ("input 3" when the section
 * has no such key, as under `tessera check-plugin`); returns buf. */
static inline const char *ts_compose_input_name(const ts_cfg *cfg, int i, char *buf, size_t n)
{
    const char *s = ts_cfg_str(cfg, "input");
    for (int k = 0; s && *s; k++) {
        while (*s == ',' || isspace((unsigned char)*s)) s++;
        const char *t = s;
        while (*t && *t != ',' && !isspace((unsigned char)*t)) t++;
        if (t == s) break;
        if (k == i) {
            snprintf(buf, n, "'%.*s'", (int)(t - s), s);
            return buf;
        }
        s = t;
    }
    snprintf(buf, n, "input %d", i + 1);
    return buf;
}

/* 1 when a and b have the same number of dimensions and the same sizes after the batch. */
static inline int ts_compose_same_shape(const ts_tensor *a, const ts_tensor *b)
{
    if (a->ndim != b->ndim) return 0;
    for (int d = 1; d < a->ndim; d++)
        if (a->dim[d] != b->dim[d]) return 0;
    return 1;
}

/* Refuses input i unless it is float; `what` says what the layer needs ("(B, F, D)"). */
static inline int ts_compose_need_f32(const ts_layer *L, const ts_cfg *cfg, const char *type,
                                      int i, const char *what, ts_err *e)
{
    const ts_tensor *t = L->in[i];
    if (t->dtype == TS_F32) return 0;
    char nm[TS_NAME_MAX + 16], sh[96];
    return ts_fail(e, "%s: layer.%s (%s): input %s is %s, not floats; %s needs floats %s (put an "
                   "embedding layer in front of ids)", ts_cfg_where(cfg, "input"), L->name, type,
                   ts_compose_input_name(cfg, i, nm, sizeof nm), ts_shape_str(t, sh, sizeof sh),
                   type, what);
}

/* Refuses a layer that does not have between lo and hi inputs. */
static inline int ts_compose_need_inputs(const ts_layer *L, const ts_cfg *cfg, const char *type,
                                         int lo, int hi, const char *how, ts_err *e)
{
    if (L->nin >= lo && L->nin <= hi) return 0;
    return ts_fail(e, "%s: layer.%s (%s) takes %s, got %d input%s", ts_cfg_where(cfg, "input"),
                   L->name, type, how, L->nin, L->nin == 1 ? "" : "s");
}

#endif /* TS_PLUGIN_COMPOSE_H */
