#!/bin/sh
# compare_cache.sh — `tessera compare` never reports stale numbers: after an experiment file or
# an override changes, the report's figures are the new runs'; an unchanged comparison run again
# reruns nothing; the summary line ("N reused, M run") says what happened, checked against the
# runs' metrics.json (inode, size and mtime with nanoseconds before and after); a run that now
# fails contributes no figure left by an earlier configuration.
# The reuse decision is the child's (`tessera run --if-changed`: a finished run of the same
# identity is left untouched and writes identity.txt). Where that tessera run does not reuse yet
# (no identity.txt), the test still checks that compare's summary is honest about the reruns.
set -eu
b=${top_builddir:-.}
tmp=$(mktemp -d /tmp/tessera-cmpcache-XXXXXX)
trap 'rm -rf "$tmp"' EXIT
for model in a b; do
    units=4; [ "$model" = b ] && units=8
    cat >"$tmp/$model.ini" <<INI
[experiment]
name = small_$model
seed = 1
[data]
type = synthetic_mmoe
rows = 600, 200, 200
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
epochs = 1
batch = 64
INI
done
runs="small_a/seed-1 small_a/seed-2 small_b/seed-1 small_b/seed-2"
compare() {   # the same comparison each time, plus any overrides given
    set +e
    "$b/tessera" compare "$tmp/a.ini" "$tmp/b.ini" --seeds 2 --jobs 2 --out "$tmp/out" "$@" \
        >/dev/null 2>"$tmp/log"
    rc=$?
    set -e
}
mean() { grep "^$1,.*,test.y1.mse," "$tmp/out/summary.csv" | cut -d, -f5; }
snap() {   # the stat of every run's metrics.json, one line each
    for r in $runs; do
        stat -c "$r %i %s %y" "$tmp/out/runs/$r/metrics.json" 2>/dev/null || echo "$r none"
    done >"$tmp/$1"
}
# honest: the summary's reused count is the number of metrics.json left exactly as they were
honest() {
    same=$(cat "$tmp/$1" "$tmp/$2" | sort | uniq -d | grep -vc ' none$' || true)
    grep -q "tessera compare: $same reused, $((4 - same)) run, 0 failed" "$tmp/log" || {
        cat "$tmp/log" >&2
        echo "FAIL ($3): $same of the 4 metrics.json are untouched, the summary says otherwise" >&2
        exit 1
    }
    echo "$same"
}
# mean over seeds of one experiment's metrics.json values
runs_mean() {
    v1=$(sed -n 's/.*"test.y1.mse": \([^,]*\).*/\1/p' "$tmp/out/runs/$1/seed-1/metrics.json")
    v2=$(sed -n 's/.*"test.y1.mse": \([^,]*\).*/\1/p' "$tmp/out/runs/$1/seed-2/metrics.json")
    awk -v a="$v1" -v b="$v2" 'BEGIN { printf "%.9g", (a + b) / 2 }'
}
close() { awk -v a="$1" -v b="$2" 'BEGIN { d = (a - b) / (a != 0 ? a : 1); exit !(d < 1e-6 && d > -1e-6) }'; }

# 1. A first comparison runs all four.
snap s0
compare
[ "$rc" = 0 ] || { cat "$tmp/log"; echo "FAIL: the first compare exited $rc"; exit 1; }
snap s1
honest s0 s1 "first compare" >/dev/null
a1=$(mean small_a); b1=$(mean small_b)
reuse=no
[ -f "$tmp/out/runs/small_a/seed-1/identity.txt" ] && reuse=yes

# 2. The same comparison again: nothing changed, so nothing reruns (where runs are reusable).
compare
snap s2
n=$(honest s1 s2 "unchanged compare")
if [ "$reuse" = yes ]; then
    [ "$n" = 4 ] || { cat "$tmp/log"; echo "FAIL: an unchanged comparison reran $((4 - n)) runs"; exit 1; }
else
    echo "note: this tessera run does not reuse finished runs yet (no identity.txt); $n of 4 reused"
fi
# reused runs keep their figures (rerun ones may differ in the last bits with several BLAS threads)
[ "$reuse" = no ] || { [ "$(mean small_a)" = "$a1" ] && [ "$(mean small_b)" = "$b1" ]; } ||
    { echo "FAIL: an unchanged comparison changed its figures"; exit 1; }

# 3. Edit one experiment (another learning rate): its figures change, the other's do not.
sed -i 's/^lr = 0.01$/lr = 0.05/' "$tmp/a.ini"
compare
[ "$rc" = 0 ] || { cat "$tmp/log"; echo "FAIL: compare after the edit exited $rc"; exit 1; }
snap s3
n=$(honest s2 s3 "after editing a.ini")
[ "$reuse" = no ] || [ "$n" = 2 ] ||
    { cat "$tmp/log"; echo "FAIL: after editing a.ini, $n runs were reused (expected small_b's 2)"; exit 1; }
a3=$(mean small_a); b3=$(mean small_b)
[ "$a3" != "$a1" ] || { echo "FAIL: small_a's test.y1.mse is still $a1 after lr changed: stale figures"; exit 1; }
[ "$reuse" = no ] || [ "$b3" = "$b1" ] || { echo "FAIL: small_b's figures changed ($b1 -> $b3) though it did not"; exit 1; }
close "$a3" "$(runs_mean small_a)" ||
    { echo "FAIL: the summary's $a3 is not the mean of small_a's runs ($(runs_mean small_a))"; exit 1; }
grep -q "| y1.mse | $(printf '%.4f' "$a3")" "$tmp/out/report.md" ||
    { echo "FAIL: report.md does not show small_a's new figure"; exit 1; }

# 4. An override on the command line changes every run.
compare train.epochs=2
[ "$rc" = 0 ] || { cat "$tmp/log"; echo "FAIL: compare with train.epochs=2 exited $rc"; exit 1; }
snap s4
n=$(honest s3 s4 "with an override")
[ "$n" = 0 ] || { echo "FAIL: $n runs were reused under a new override"; exit 1; }
[ "$(mean small_a)" != "$a3" ] && [ "$(mean small_b)" != "$b3" ] ||
    { echo "FAIL: train.epochs=2 left the figures as they were: stale figures"; exit 1; }

# 5. A run that now fails leaves no figure of its earlier configuration in the report.
sed -i 's/^epochs = 1$/epochz = 1/' "$tmp/a.ini"
compare train.epochs=2
[ "$rc" = 1 ] || { cat "$tmp/log"; echo "FAIL: a comparison with failing runs exited $rc, expected 1"; exit 1; }
grep -q "small_a seed 1: FAILED" "$tmp/log" || { cat "$tmp/log"; echo "FAIL: the failure is not reported"; exit 1; }
grep -q "0 run, 2 failed" "$tmp/log" || grep -q "2 run, 2 failed" "$tmp/log" ||
    { cat "$tmp/log"; echo "FAIL: the summary line does not count the failures"; exit 1; }
if grep -q '^small_a,' "$tmp/out/summary.csv"; then
    echo "FAIL: summary.csv still has figures of small_a, whose runs failed:"
    cat "$tmp/out/summary.csv"
    exit 1
fi
grep -q "| runs finished | 0 | 2 |" "$tmp/out/report.md" ||
    { echo "FAIL: report.md does not say small_a finished no run"; exit 1; }
# 6. One experiment, one seed: every plot is drawn (a bar chart of one point has no spread; its
#    axis must still have a height)
"$b/tessera" compare "$tmp/b.ini" --seeds 1 --out "$tmp/one" >"$tmp/one.log" 2>&1 ||
    { cat "$tmp/one.log"; echo "FAIL: a comparison of one run failed"; exit 1; }
if grep -q "could not draw" "$tmp/one.log"; then
    cat "$tmp/one.log"; echo "FAIL: a plot of one run was not drawn"; exit 1
fi
echo "compare: edited experiments and overrides rerun, unchanged ones reused ($reuse), failures report no stale figure"
