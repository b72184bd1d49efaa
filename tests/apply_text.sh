#!/bin/sh
# apply_text.sh — a trained text matcher applied to new rows (textpairs' fitted state,
# docs/data.md): the WikiQA hybrid's run evaluated on the WikiQA test file gives its own test
# figures again (the words keep their ids, so the frozen idf of the lexical features applies,
# and every document its id, so rankings break ties as in the run); predict gives the run's
# per-row scores, with or without the label column, and a row alone scores as inside the file; a
# WordNet-format file is read whole as the test split; a changed data_state.txt is refused with
# a sentence.
set -u
b=${top_builddir:-.}
src=${top_srcdir:-.}
T="$b/tessera"
tmp=$(mktemp -d /tmp/tessera-apply-text-XXXXXX)
trap 'rm -rf "$tmp"' EXIT
failures=0
passes=0
check() { if "$@"; then passes=$((passes + 1)); return 0; fi; failures=$((failures + 1)); return 1; }

"$T" run "$src/experiments/wikiqa_hybrid.ini" train.epochs=1 train.threads=1 --quiet \
    layer.q_words.dim=32 layer.d_words.dim=32 layer.q_conv.filters=32 layer.d_conv.filters=32 \
    layer.q_vec.units=16 layer.d_vec.units=16 --results "$tmp/run" || { echo "FAIL: training"; exit 1; }
check test -s "$tmp/run/data_state.txt" || echo "FAIL: the run wrote no data_state.txt"

# evaluate on the test file: the run's own test figures (rankings: the same order, ties included)
test_file=$(ls "$src"/data/wikiqa/WikiQA-test.tsv.gz)
"$T" evaluate "$tmp/run" --data "$test_file" --out "$tmp/ev" 2>"$tmp/ev.err" >"$tmp/ev.out" ||
    echo "FAIL: evaluate: $(cat "$tmp/ev.err")"
for m in match.map match.mrr match.ndcg@10 bm25.map file_order.map match.auc; do
    want=$(grep -o "\"test\.$m\": [-0-9.e]*" "$tmp/run/metrics.json" | awk '{print $2}')
    got=$(grep -o "\"test\.$m\": [-0-9.e]*" "$tmp/ev/metrics.json" | awk '{print $2}')
    check awk -v a="$want" -v b="$got" 'BEGIN { d = a - b; exit !(a != "" && (d < 0 ? -d : d) < 1e-6) }' ||
        echo "FAIL: test.$m: the run $want, evaluate $got"
done

# predict: the run's scores row by row (float rounding: other batch sizes, other kernels)
"$T" predict "$tmp/run" --data "$test_file" --quiet >"$tmp/pred.csv" 2>"$tmp/pred.err" ||
    echo "FAIL: predict: $(cat "$tmp/pred.err")"
check test "$(head -n 1 "$tmp/pred.csv")" = "match,bm25,file_order" || echo "FAIL: header $(head -n 1 "$tmp/pred.csv")"
tail -n +2 "$tmp/run/predictions.csv" | cut -d, -f2,4,6 >"$tmp/want.csv"
tail -n +2 "$tmp/pred.csv" >"$tmp/got.csv"
check test "$(wc -l <"$tmp/want.csv")" = "$(wc -l <"$tmp/got.csv")" || echo "FAIL: row counts differ"
check paste -d, "$tmp/want.csv" "$tmp/got.csv" | awk -F, '
    function ad(x) { return x < 0 ? -x : x }
    { for (k = 1; k <= 3; k++) if (ad($k - $(k + 3)) > 1e-4 * (1 + ad($k))) { print "FAIL: row " NR ": " $0; bad = 1; exit } }
    END { exit bad }' || true

# rows without the label (6 fields), and one row alone; a question's first sentence has no
# other rows, so its bm25 (avgdl of the file's documents) differs: compare the hybrid's score
zcat "$test_file" | sed -n 2,6p | cut -f1-6 >"$tmp/nolabel.tsv"
"$T" predict "$tmp/run" --data "$tmp/nolabel.tsv" --quiet >"$tmp/nl.csv" 2>"$tmp/nl.err"
check test "$(wc -l <"$tmp/nl.csv")" = 6 || echo "FAIL: predict without labels: $(cat "$tmp/nl.err")"
zcat "$test_file" | sed -n 2p >"$tmp/one.tsv"
"$T" predict "$tmp/run" --data "$tmp/one.tsv" --quiet 2>/dev/null | tail -n 1 | cut -d, -f1 >"$tmp/one.csv"
check awk -v a="$(head -n 1 "$tmp/want.csv" | cut -d, -f1)" -v b="$(cat "$tmp/one.csv")" \
    'BEGIN { d = a - b; exit !(b != "" && (d < 0 ? -d : d) < 1e-4) }' ||
    echo "FAIL: a one-row file scores $(cat "$tmp/one.csv"), inside the file $(head -n 1 "$tmp/want.csv")"
"$T" evaluate "$tmp/run" --data "$tmp/nolabel.tsv" >/dev/null 2>"$tmp/ev2.err"
check grep -q "nolabel.tsv:1: expected 7 tab-separated fields" "$tmp/ev2.err" ||
    echo "FAIL: evaluate without labels: $(cat "$tmp/ev2.err")"

# a changed fitted state is refused, naming what could not be read
cp -r "$tmp/run" "$tmp/edited"
sed -i '2s/.*/trigrams x/' "$tmp/edited/data_state.txt"
"$T" predict "$tmp/edited" --data "$tmp/one.tsv" >/dev/null 2>"$tmp/r1.err"
check test $? = 1 || echo "FAIL: a changed data_state.txt was applied"
check grep -q "fitted state (data_state.txt) cannot be read at the trigrams" "$tmp/r1.err" ||
    echo "FAIL: $(cat "$tmp/r1.err")"

# WordNet: a trained run applied to a file of three synsets reads it whole as test
"$T" run "$src/experiments/wordnet_dssm.ini" train.epochs=1 train.max_steps=5 train.threads=1 \
    data.test_size=200 data.valid_size=200 --quiet --results "$tmp/wn" || echo "FAIL: WordNet training"
zcat "$src/data/wordnet/wordnet30_gloss_pairs.tsv.gz" | sed -n 2,4p >"$tmp/three.tsv"
"$T" predict "$tmp/wn" --data "$tmp/three.tsv" >"$tmp/wn.csv" 2>"$tmp/wn.err"
check test "$(wc -l <"$tmp/wn.csv")" = 4 || echo "FAIL: WordNet predict: $(cat "$tmp/wn.err")"
check grep -q "3 rows of" "$tmp/wn.err" || echo "FAIL: WordNet rows: $(cat "$tmp/wn.err")"

echo "apply_text: $passes passed, $failures failed"
[ $failures = 0 ]
