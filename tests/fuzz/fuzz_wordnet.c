/* fuzz_wordnet.c — libFuzzer harness of the textpairs reader in WordNet format
 * (plugins/datasets/textpairs.c, compiled in): the input is the gloss-pairs file
 * (`synset_id pos lemmas definition examples`, tab-separated), optionally after a part of
 * [data] keys and a "%%" line. A one-part input holds out test_size = 2, valid_size = 1 synsets
 * (the defaults, 5000 and 2000, need a real-sized file). docs/fuzzing.md. */
#include "fuzz_dataset.h"

FUZZ_FIXED_FILES(wordnet_files, "gloss.tsv")

static const fuzz_aux textpairs_aux[] = {
    {"doc_freq", sizeof(int32_t)}, {"doc_count", sizeof(int32_t)},
    {"trigram_keys", sizeof(int32_t)}, {"skipped_rows", sizeof(int32_t)}, {NULL, 0}};

static const fuzz_reader wordnet_reader = {
    .name = "textpairs (wordnet)",
    .fixed = "type = textpairs\nformat = wordnet\npath = @DIR@/gloss.tsv\n",
    .path_key = "path", .path_value = "@DIR@/gloss.tsv",
    .default_keys = "test_size = 2\nvalid_size = 1\n",
    .files = wordnet_files, .all_files = wordnet_files_names,
    .aux = textpairs_aux, .max_batch = 7};

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    return fuzz_dataset_one(&wordnet_reader, data, size);
}
