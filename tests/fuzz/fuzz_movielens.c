/* fuzz_movielens.c — libFuzzer harness of the MovieLens reader (plugins/datasets/movielens.c,
 * compiled in). The input is "KEYS\n%%\nRATINGS\n%%\nMOVIES\n%%\nUSERS" (or RATINGS alone, or
 * RATINGS and MOVIES); the ratings part picks the folder layout, as a real folder would:
 * with "::" it is ml-1m (ratings.dat, movies.dat, users.dat), with a tab ml-100k (u.data, u.item,
 * u.user), else ml-latest (ratings.csv, movies.csv). Missing parts are missing files.
 * docs/fuzzing.md. */
#include "fuzz_dataset.h"

static const char *const ml_csv[] = {"ml/ratings.csv", "ml/movies.csv", NULL};
static const char *const ml_dat[] = {"ml/ratings.dat", "ml/movies.dat", "ml/users.dat", NULL};
static const char *const ml_100k[] = {"ml/u.data", "ml/u.item", "ml/u.user", NULL};
static const char *const ml_all[] = {"ml/ratings.csv", "ml/movies.csv", "ml/ratings.dat",
    "ml/movies.dat", "ml/users.dat", "ml/u.data", "ml/u.item", "ml/u.user", NULL};

static const char *const *ml_files(const uint8_t *first, size_t n)
{
    for (size_t i = 0; i + 1 < n; i++)
        if (first[i] == ':' && first[i + 1] == ':') return ml_dat;
    return memchr(first, '\t', n) ? ml_100k : ml_csv;
}

static const fuzz_aux ml_aux[] = {
    {"item_freq", sizeof(float)}, {"item_title", sizeof(char *)}, {"item_raw_id", sizeof(int32_t)},
    {"genre_name", sizeof(char *)}, {"user_raw_id", sizeof(int32_t)}, {NULL, 0}};

static const fuzz_reader ml_reader = {
    .name = "movielens",
    .fixed = "type = movielens\npath = @DIR@/ml\n",
    .path_key = "path", .path_value = "@DIR@/ml",
    .default_keys = "history = 3\n",
    .files = ml_files, .all_files = ml_all,
    .aux = ml_aux, .max_batch = 7};

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    return fuzz_dataset_one(&ml_reader, data, size);
}
