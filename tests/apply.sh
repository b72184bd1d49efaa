#!/bin/sh
# apply.sh — a trained run applied to new rows (tessera predict / evaluate, docs/data.md): the
# run's own test rows written out as a new file give the same AUC as the run's test evaluation
# and the same per-row predictions as its predictions.csv; rows without the label are predicted;
# a value the training split never had is counted and takes its unseen bucket; the fitted state
# is never refitted (a file of one row reads as it would inside the training data); a run
# without a fitted state, a non-empty --out and a missing file get sentences; a resumed run whose
# fitted state changed is refused (the checkpoint carries it).
set -u
b=${top_builddir:-.}
src=${top_srcdir:-.}
T="$b/tessera"
tmp=$(mktemp -d /tmp/tessera-apply-XXXXXX)
trap 'rm -rf "$tmp"' EXIT
failures=0
passes=0
check() { if "$@"; then passes=$((passes + 1)); return 0; fi; failures=$((failures + 1)); return 1; }
bad() { echo "FAIL: $*"; return 1; }

"$T" run "$src/experiments/census_mmoe.ini" train.epochs=1 train.threads=1 --results "$tmp/run" \
    train.keep_checkpoints=true --quiet || { echo "FAIL: training"; exit 1; }
for f in predictions.csv data_state.txt; do
    check test -s "$tmp/run/$f" || echo "FAIL: the run wrote no $f"
done
# the test split's rows, by the file lines predictions.csv names
gzip -dc "$src/data/census/census-income.test.gz" >"$tmp/all.txt"
tail -n +2 "$tmp/run/predictions.csv" | cut -d, -f2 >"$tmp/lines.txt"
awk 'NR == FNR { want[NR] = $1; n = NR; next } { row[FNR] = $0 }
     END { for (i = 1; i <= n; i++) print row[want[i]] }' "$tmp/lines.txt" "$tmp/all.txt" >"$tmp/test.txt"

# evaluate: the same AUC as the run's own test evaluation
"$T" evaluate "$tmp/run" --data "$tmp/test.txt" --out "$tmp/ev" >"$tmp/ev.txt" 2>"$tmp/ev.err" ||
    { echo "FAIL: evaluate: $(cat "$tmp/ev.err")"; failures=$((failures + 1)); }
for task in income marital; do
    want=$(sed -n "s/.*\"test\.$task\.auc\": \([0-9.e-]*\).*/\1/p" "$tmp/run/metrics.json")
    got=$(sed -n "s/^test\.$task\.auc = //p" "$tmp/ev.txt")
    check awk -v a="$want" -v b="$got" 'BEGIN { d = a - b; if (d < 0) d = -d; exit !(b != "" && d < 1e-6) }' ||
        echo "FAIL: $task AUC: run $want, evaluate $got"
done
check test -s "$tmp/ev/predictions.csv" || echo "FAIL: evaluate --out wrote no predictions.csv"

# predict: the same numbers, line by line, as the run's predictions.csv
"$T" predict "$tmp/run" --data "$tmp/test.txt" --out "$tmp/pred.csv" 2>"$tmp/pred.err" ||
    { echo "FAIL: predict: $(cat "$tmp/pred.err")"; failures=$((failures + 1)); }
check test "$(head -n 1 "$tmp/pred.csv")" = "income,marital" || echo "FAIL: header $(head -n 1 "$tmp/pred.csv")"
tail -n +2 "$tmp/run/predictions.csv" | cut -d, -f3,5 >"$tmp/want.csv"
tail -n +2 "$tmp/pred.csv" >"$tmp/got.csv"
check cmp -s "$tmp/want.csv" "$tmp/got.csv" || echo "FAIL: predict differs from the run's predictions.csv"
# to stdout as well
"$T" predict "$tmp/run" --data "$tmp/test.txt" --quiet 2>/dev/null | tail -n +2 >"$tmp/got2.csv"
check cmp -s "$tmp/want.csv" "$tmp/got2.csv" || echo "FAIL: predict to stdout differs"

# one row alone reads as inside the big file (nothing refitted on the new file); a batch of one
# row takes another BLAS kernel, so the figures agree to float rounding, not to the bit
head -n 1 "$tmp/test.txt" >"$tmp/one.txt"
"$T" predict "$tmp/run" --data "$tmp/one.txt" --quiet 2>/dev/null | tail -n 1 >"$tmp/one.csv"
check awk -F, -v w="$(head -n 1 "$tmp/want.csv")" 'BEGIN { split(w, a, ",") }
    { for (i = 1; i <= 2; i++) { d = $i - a[i]; if (d < 0) d = -d; if (d > 1e-5 * (a[i] > 0 ? a[i] : -a[i]) + 1e-7) exit 1 } }' \
    "$tmp/one.csv" || echo "FAIL: a one-row file predicts $(cat "$tmp/one.csv"), inside the file $(head -n 1 "$tmp/want.csv")"

# rows without the label (41 fields), and an unseen value
head -n 5 "$tmp/test.txt" | sed 's/, [^,]*$//' >"$tmp/nolabel.txt"
sed -i '1s/^\([^,]*\), [^,]*,/\1, Martian worker,/' "$tmp/nolabel.txt"
"$T" predict "$tmp/run" --data "$tmp/nolabel.txt" >"$tmp/nl.csv" 2>"$tmp/nl.err"
check test "$(wc -l <"$tmp/nl.csv")" = 6 || echo "FAIL: predict without labels: $(cat "$tmp/nl.err")"
check grep -q "1 categorical values were not in the training vocabulary" "$tmp/nl.err" ||
    echo "FAIL: the unseen value was not counted: $(cat "$tmp/nl.err")"
# evaluate needs the labels
"$T" evaluate "$tmp/run" --data "$tmp/nolabel.txt" >/dev/null 2>"$tmp/ev2.err"
check test $? = 1 || echo "FAIL: evaluate without labels did not refuse"
check grep -q "nolabel.txt:1: expected 42 fields" "$tmp/ev2.err" || echo "FAIL: $(cat "$tmp/ev2.err")"

# refusals
"$T" evaluate "$tmp/run" --data "$tmp/test.txt" --out "$tmp/ev" >/dev/null 2>"$tmp/r1.err"
check grep -q "is not empty" "$tmp/r1.err" || echo "FAIL: non-empty --out: $(cat "$tmp/r1.err")"
"$T" predict "$tmp/run" --data "$tmp/nope.txt" >/dev/null 2>"$tmp/r2.err"
check grep -q "nope.txt" "$tmp/r2.err" || echo "FAIL: missing file: $(cat "$tmp/r2.err")"
cp -r "$tmp/run" "$tmp/old" && rm "$tmp/old/data_state.txt"
"$T" predict "$tmp/old" --data "$tmp/test.txt" >/dev/null 2>"$tmp/r3.err"
check grep -q "has no data_state.txt" "$tmp/r3.err" || echo "FAIL: no fitted state: $(cat "$tmp/r3.err")"
"$T" predict "$tmp" --data "$tmp/test.txt" >/dev/null 2>"$tmp/r4.err"
check grep -q "is not a finished run" "$tmp/r4.err" || echo "FAIL: not a run: $(cat "$tmp/r4.err")"
"$T" predict "$tmp/run" >/dev/null 2>"$tmp/r5.err"
check test $? = 2 || echo "FAIL: predict without --data"
# the run folder itself was never written by predict / evaluate
check test ! -e "$tmp/run/metrics.json.tmp" || echo "FAIL: temporary file left in the run"

# the fitted state travels in the checkpoint too: a resumed run whose data_state.txt was changed
# (another mean) is refused, naming the FITS block
cp -r "$tmp/run" "$tmp/edited" && rm "$tmp/edited/metrics.json"
sed -i 's/^continuous 0 [^ ]*/continuous 0 40.5/' "$tmp/edited/data_state.txt"
"$T" resume "$tmp/edited" --quiet 2>"$tmp/r6.err"
check test $? = 1 || echo "FAIL: a changed data_state.txt was resumed"
check grep -q "FITS block" "$tmp/r6.err" || echo "FAIL: FITS: $(cat "$tmp/r6.err")"

echo "apply: $passes passed, $failures failed"
[ $failures = 0 ]
