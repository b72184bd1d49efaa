/* fuzz_synthetic_mmoe.c — libFuzzer harness of the synthetic MMoE data (plugins/datasets/
 * synthetic_mmoe.c, compiled in): the whole input is [data] keys (d, c, m, p, rows, data_seed).
 * Keys asking for more than 2e5 generated numbers (rows x (d + m)) are skipped: they are valid
 * and only slow. docs/fuzzing.md. */
#include "fuzz_dataset.h"

static int affordable(const ts_cfg *cfg)
{
    long d, m;
    double rows[4];
    int n;
    ts_err e;
    if (ts_cfg_int(cfg, "d", &d, &e) || ts_cfg_int(cfg, "m", &m, &e) ||
        ts_cfg_floats(cfg, "rows", rows, 4, &n, &e) || n != 3)
        return 1;                    /* open() reports it, quickly */
    double total = 0;
    for (int i = 0; i < 3; i++) total += fabs(rows[i]);
    return total * (fabs((double)d) + fabs((double)m) + 1) <= 2e5;
}

static const fuzz_aux synth_aux[] = {
    {"w1", sizeof(double)}, {"w2", sizeof(double)}, {"alpha", sizeof(double)},
    {"beta", sizeof(double)}, {NULL, 0}};

static const fuzz_reader synth_reader = {
    .name = "synthetic_mmoe",
    .fixed = "type = synthetic_mmoe\n",
    .path_key = "type", .path_value = "synthetic_mmoe",
    .keys_only = 1, .affordable = affordable,
    .aux = synth_aux, .max_batch = 7};

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    return fuzz_dataset_one(&synth_reader, data, size);
}
