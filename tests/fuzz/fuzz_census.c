/* fuzz_census.c — libFuzzer harness of the census reader (plugins/datasets/census.c, compiled
 * in): the input is the 42-field ", "-separated file, optionally after a part of [data] keys
 * (split, split_seed, skip_bad_rows, education_label) and a "%%" line. docs/fuzzing.md. */
#include "fuzz_dataset.h"

FUZZ_FIXED_FILES(census_files, "census.txt")

static const fuzz_aux census_aux[] = {
    {"skipped_rows", sizeof(long)}, {"continuous_mean", sizeof(double)},
    {"continuous_std", sizeof(double)}, {"categorical_offsets", sizeof(int32_t)}, {NULL, 0}};

static const fuzz_reader census_reader = {
    .name = "census",
    .fixed = "type = census\npath = @DIR@/census.txt\n",
    .path_key = "path", .path_value = "@DIR@/census.txt",
    .default_keys = "",
    .files = census_files, .all_files = census_files_names,
    .aux = census_aux, .max_batch = 7};

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    return fuzz_dataset_one(&census_reader, data, size);
}
