#!/bin/sh
# compare_resume.sh — tessera compare end to end on two small experiments and two seeds:
# the report's numbers equal the runs' metrics.json, plots are produced, and after an
# "interrupted" comparison (one run's results removed) a second call runs that pair again (and
# only that pair where `tessera run --if-changed` reuses finished runs: they write identity.txt).
set -eu
b=${top_builddir:-.}
tmp=$(mktemp -d /tmp/tessera-cmp-XXXXXX)
trap 'rm -rf "$tmp"' EXIT
for model in a b; do
    units=4; [ "$model" = b ] && units=16
    cat >"$tmp/$model.ini" <<INI
[experiment]
name = small_$model
seed = 1
[data]
type = synthetic_mmoe
rows = 1500, 300, 300
[layer.h]
type = dense
input = x
units = $units
activation = relu
[layer.out]
type = dense
input = h
units = 1
[head.y1]
type = regression
input = out
label = y1
loss = mse
[optimizer]
type = adam
lr = 0.01
[train]
epochs = 2
batch = 64
INI
done
"$b/tessera" compare "$tmp/a.ini" "$tmp/b.ini" --seeds 2 --jobs 2 --out "$tmp/out" 2>"$tmp/log1"
grep -q "0 reused, 4 run, 0 failed" "$tmp/log1" || { cat "$tmp/log1"; echo "FAIL: expected 4 runs"; exit 1; }
[ -s "$tmp/out/report.md" ] && [ -s "$tmp/out/summary.csv" ] || { echo "FAIL: no report"; exit 1; }
if command -v gnuplot >/dev/null; then
    ls "$tmp"/out/plots/*.png >/dev/null 2>&1 || { cat "$tmp/log1"; echo "FAIL: no plot"; exit 1; }
fi
# The report's mean equals the mean of the runs' metrics.json values.
v1=$(sed -n 's/.*"test.y1.mse": \(.*\),*/\1/p' "$tmp/out/runs/small_a/seed-1/metrics.json" | tr -d ,)
v2=$(sed -n 's/.*"test.y1.mse": \(.*\),*/\1/p' "$tmp/out/runs/small_a/seed-2/metrics.json" | tr -d ,)
mean=$(grep '^small_a,.*,test.y1.mse,' "$tmp/out/summary.csv" | cut -d, -f5)
awk -v a="$v1" -v b="$v2" -v m="$mean" 'BEGIN { d = (a + b) / 2 - m; exit !(d < 1e-9 && d > -1e-9) }' ||
    { echo "FAIL: summary mean $mean is not the mean of $v1 and $v2"; exit 1; }
# Interrupt: lose one run's results; the next compare runs only that one.
rm "$tmp/out/runs/small_b/seed-2/metrics.json"
"$b/tessera" compare "$tmp/a.ini" "$tmp/b.ini" --seeds 2 --jobs 2 --out "$tmp/out" 2>"$tmp/log2"
if [ -f "$tmp/out/runs/small_a/seed-1/identity.txt" ]; then
    grep -q "3 reused, 1 run, 0 failed" "$tmp/log2" || { cat "$tmp/log2"; echo "FAIL: resume reran finished runs"; exit 1; }
fi
grep -q "small_b seed 2: run$" "$tmp/log2" || { cat "$tmp/log2"; echo "FAIL: the missing run did not run"; exit 1; }
[ -s "$tmp/out/runs/small_b/seed-2/metrics.json" ] || { echo "FAIL: not rerun"; exit 1; }
echo "compare: report equals the runs, plots drawn, the missing pair ran again"
