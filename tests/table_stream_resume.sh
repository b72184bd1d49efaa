#!/bin/sh
# table_stream_resume.sh — the `table` reader with stream = true (docs/scale.md, docs/data.md):
# census MMoE through the table reader (experiments/census_mmoe_table.ini) on the bundled file cut
# into three shards (plain, gzip, plain), a shuffle block of 5000 rows.
#  1. two runs are bit-identical, and a quality floor holds;
#  2. runs killed with SIGKILL at random moments and resumed (--resume) end bit-identical to the
#     uninterrupted run (KILL_TRIALS, default 2; KILL_DELAYS="0.3 0.8" repeats a failure);
#  3. the same rows cut into other shards give the same fitted state and splits;
#  4. what the table reader cannot stream is refused, naming the key;
#  and `tessera evaluate` applies a streamed run in memory with its fitted state.
set -eu
b=${top_builddir:-.}
s=${top_srcdir:-.}
trials=${KILL_TRIALS:-2}
tmp=$(mktemp -d /tmp/tessera-tstream-XXXXXX)
trap 'rm -rf "$tmp"' EXIT
export OPENBLAS_NUM_THREADS=1
mkdir "$tmp/sh" "$tmp/sh2"
gzip -dc "$s/data/census/census-income.test.gz" >"$tmp/all.txt"
head -n 40000 "$tmp/all.txt" >"$tmp/sh/a.txt"
sed -n '40001,70000p' "$tmp/all.txt" | gzip -1 >"$tmp/sh/b.gz"
sed -n '70001,$p' "$tmp/all.txt" >"$tmp/sh/c.txt"
head -n 25000 "$tmp/all.txt" | gzip -1 >"$tmp/sh2/x.gz"
sed -n '25001,$p' "$tmp/all.txt" >"$tmp/sh2/y.txt"
rm "$tmp/all.txt"
args="$s/experiments/census_mmoe_table.ini data.stream=true data.path=$tmp/sh data.shuffle_buffer=5000 train.epochs=2 train.checkpoint_every=7 train.threads=1 --quiet"

start=$(date +%s%N)
# shellcheck disable=SC2086
"$b/tessera" run $args --results "$tmp/ref"
dur_ms=$(( ($(date +%s%N) - start) / 1000000 ))
echo "uninterrupted streamed table run: $dur_ms ms"
[ -f "$tmp/ref/params.bin" ] || { echo "FAIL: the reference run wrote no params.bin"; exit 1; }
auc=$(grep '"test.income.auc"' "$tmp/ref/metrics.json" | sed 's/.*: *//; s/,//')
awk -v a="$auc" 'BEGIN { exit !(a > 0.92) }' || { echo "FAIL: streamed test income AUC $auc <= 0.92"; exit 1; }
echo "streamed table test income AUC $auc"

same() {   # same DIR: DIR's results equal the reference's
    cmp -s "$tmp/ref/params.bin" "$1/params.bin" || { echo "params.bin differs"; return 1; }
    grep -v '"train.run\.' "$tmp/ref/metrics.json" >"$tmp/a.json"
    grep -v '"train.run\.' "$1/metrics.json" >"$tmp/b.json"
    cmp -s "$tmp/a.json" "$tmp/b.json" || { echo "metrics.json differs:"; diff "$tmp/a.json" "$tmp/b.json"; return 1; }
    cmp -s "$tmp/ref/eval.csv" "$1/eval.csv" || { echo "eval.csv differs"; return 1; }
    cut -d, -f1-6 "$tmp/ref/train.csv" >"$tmp/a.csv"
    cut -d, -f1-6 "$1/train.csv" >"$tmp/b.csv"
    cmp -s "$tmp/a.csv" "$tmp/b.csv" || { echo "train.csv's losses differ"; return 1; }
    return 0
}

# 1. reproducible
# shellcheck disable=SC2086
"$b/tessera" run $args --results "$tmp/again"
same "$tmp/again" || { echo "FAIL: two streamed table runs of the same experiment differ"; exit 1; }
echo "two runs: bit-identical"
rm -rf "$tmp/again"

# 2. kill and resume
. "$s/tests/kill_loop.sh"
kill_trials 0.2 0.75

# 3. the split follows the rows, not the files
# shellcheck disable=SC2086
"$b/tessera" run $args data.path="$tmp/sh2/*" train.epochs=1 --results "$tmp/other"
cmp -s "$tmp/ref/data_state.txt" "$tmp/other/data_state.txt" || { echo "FAIL: the fitted state depends on how the rows are cut into files"; exit 1; }
for k in valid.income.positive_rate test.income.positive_rate test.marital.positive_rate; do
    a=$(grep "\"$k\"" "$tmp/ref/metrics.json")
    o=$(grep "\"$k\"" "$tmp/other/metrics.json")
    [ "$a" = "$o" ] || { echo "FAIL: $k differs with other shards: $a / $o"; exit 1; }
done
echo "other shards, same rows: same fitted state and splits"

# a streamed run is applied in memory with the state it fitted (evaluate on one shard)
"$b/tessera" evaluate "$tmp/ref" --data "$tmp/sh/a.txt" --out "$tmp/ev" >"$tmp/ev.txt" 2>&1 || { echo "FAIL: evaluate of a streamed table run:"; cat "$tmp/ev.txt"; exit 1; }
ea=$(grep 'test.income.auc' "$tmp/ev.txt" | sed 's/.*= *//')
awk -v a="$ea" 'BEGIN { exit !(a > 0.92) }' || { echo "FAIL: evaluate's income AUC $ea <= 0.92"; exit 1; }
echo "evaluate on a shard, in memory, with the streamed run's state: income AUC $ea"

# 4. refused, naming the key
if "$b/tessera" run "$s/experiments/census_mmoe_table.ini" data.stream=true data.split=column \
        data.split_column=year --results "$tmp/no" >"$tmp/no.txt" 2>&1; then
    echo "FAIL: split = column was accepted with stream = true"; exit 1
fi
grep -q "\[data\] split: stream = true cannot stream split = column" "$tmp/no.txt" || { echo "FAIL: unclear refusal:"; cat "$tmp/no.txt"; exit 1; }
echo "refused: $(tail -n 1 "$tmp/no.txt" | head -c 160)"
echo "PASS"
