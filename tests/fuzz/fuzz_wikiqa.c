/* fuzz_wikiqa.c — libFuzzer harness of the textpairs reader in WikiQA format
 * (plugins/datasets/textpairs.c, compiled in). The input is "KEYS\n%%\nTRAIN\n%%\nDEV\n%%\nTEST"
 * (the three .tsv files: header, then `QuestionID Question DocumentID DocumentTitle SentenceID
 * Sentence Label`); files past the last part repeat it, so a one-part input is all three. The dev
 * and test paths come from path's "train" (the reader's own rule). docs/fuzzing.md. */
#include "fuzz_dataset.h"

FUZZ_FIXED_FILES(wikiqa_files, "WikiQA-train.tsv", "WikiQA-dev.tsv", "WikiQA-test.tsv")

static const fuzz_aux textpairs_aux[] = {
    {"doc_freq", sizeof(int32_t)}, {"doc_count", sizeof(int32_t)},
    {"trigram_keys", sizeof(int32_t)}, {"skipped_rows", sizeof(int32_t)}, {NULL, 0}};

static const fuzz_reader wikiqa_reader = {
    .name = "textpairs (wikiqa)",
    .fixed = "type = textpairs\nformat = wikiqa\npath = @DIR@/WikiQA-train.tsv\n",
    .path_key = "path", .path_value = "@DIR@/WikiQA-train.tsv",
    .default_keys = "",
    .files = wikiqa_files, .all_files = wikiqa_files_names, .reuse_last = 1,
    .aux = textpairs_aux, .max_batch = 7};

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    return fuzz_dataset_one(&wikiqa_reader, data, size);
}
