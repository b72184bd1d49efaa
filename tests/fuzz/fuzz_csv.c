/* fuzz_csv.c — libFuzzer harness of the generic csv reader (plugins/datasets/csv.c, compiled
 * in). The input is "KEYS\n%%\nFILE": KEYS names the columns (dense, categorical, labels) and may
 * set header, separator, split, skip_bad_rows. A one-part input is the file alone, read with
 * header = false and columns 0 (dense), 1 (categorical), 2 (label). docs/fuzzing.md. */
#include "fuzz_dataset.h"

FUZZ_FIXED_FILES(csv_files, "data.csv")

static const fuzz_aux csv_aux[] = {
    {"skipped_rows", sizeof(long)}, {"dense_mean", sizeof(double)},
    {"dense_std", sizeof(double)}, {"categorical_offsets", sizeof(int32_t)}, {NULL, 0}};

static const fuzz_reader csv_reader = {
    .name = "csv",
    .fixed = "type = csv\npath = @DIR@/data.csv\n",
    .path_key = "path", .path_value = "@DIR@/data.csv",
    .default_keys = "header = false\ndense = 0\ncategorical = 1\nlabels = 2\n",
    .files = csv_files, .all_files = csv_files_names,
    .aux = csv_aux, .max_batch = 7};

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    return fuzz_dataset_one(&csv_reader, data, size);
}
