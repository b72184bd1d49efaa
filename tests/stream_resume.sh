#!/bin/sh
# stream_resume.sh — streamed data ([data] stream = true, docs/scale.md): the bundled census file
# cut into three shards (plain, gzip, plain) in a folder, a shuffle block of 5000 rows (so an
# epoch holds many blocks and a checkpoint lands inside a block, a file and a gzip member).
#  1. two runs of the same experiment are bit-identical (seeded epoch order), also without the
#     reader thread (TESSERA_STREAM_THREAD=0);
#  2. runs killed with SIGKILL at random moments and resumed (--resume) end bit-identical to the
#     uninterrupted run: params.bin, metrics.json but the timings, eval.csv, train.csv's losses
#     (KILL_TRIALS, default 4; KILL_DELAYS="0.3 0.8" repeats a failure);
#  3. the split is by the rows' content: the same rows in other shards give the same figures;
#  4. a reader that cannot stream refuses stream = true, naming the key;
#  5. given the fitted state of the reference (fitted_state =), a run fits nothing and trains the
#     same model.
set -eu
b=${top_builddir:-.}
s=${top_srcdir:-.}
trials=${KILL_TRIALS:-4}
tmp=$(mktemp -d /tmp/tessera-stream-XXXXXX)
trap 'rm -rf "$tmp"' EXIT
export OPENBLAS_NUM_THREADS=1
mkdir "$tmp/sh" "$tmp/sh2"
gzip -dc "$s/data/census/census-income.test.gz" >"$tmp/all.txt"
head -n 40000 "$tmp/all.txt" >"$tmp/sh/a.txt"
sed -n '40001,70000p' "$tmp/all.txt" | gzip -1 >"$tmp/sh/b.gz"
sed -n '70001,$p' "$tmp/all.txt" >"$tmp/sh/c.txt"
# the same rows cut elsewhere, for 3.
head -n 10000 "$tmp/all.txt" >"$tmp/sh2/x.txt"
sed -n '10001,$p' "$tmp/all.txt" | gzip -1 >"$tmp/sh2/y.gz"
rm "$tmp/all.txt"
args="$s/experiments/census_mmoe.ini data.stream=true data.path=$tmp/sh data.shuffle_buffer=5000 train.epochs=2 train.checkpoint_every=7 train.threads=1 --quiet"

# shellcheck disable=SC2086
start=$(date +%s%N)
"$b/tessera" run $args --results "$tmp/ref"
dur_ms=$(( ($(date +%s%N) - start) / 1000000 ))
echo "uninterrupted streamed run: $dur_ms ms"
[ -f "$tmp/ref/params.bin" ] || { echo "FAIL: the reference run wrote no params.bin"; exit 1; }
auc=$(grep '"test.income.auc"' "$tmp/ref/metrics.json" | sed 's/.*: *//; s/,//')
awk -v a="$auc" 'BEGIN { exit !(a > 0.92) }' || { echo "FAIL: streamed test income AUC $auc <= 0.92"; exit 1; }
echo "streamed test income AUC $auc"

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
same "$tmp/again" || { echo "FAIL: two streamed runs of the same experiment differ"; exit 1; }
echo "two runs: bit-identical"
rm -rf "$tmp/again"
# the reader thread changes no figure: without it (blocks read when needed) the same run
# shellcheck disable=SC2086
TESSERA_STREAM_THREAD=0 "$b/tessera" run $args --results "$tmp/nothread"
same "$tmp/nothread" || { echo "FAIL: the run without the reader thread differs"; exit 1; }
echo "without the reader thread: bit-identical"
rm -rf "$tmp/nothread"

# 2. kill and resume
. "$s/tests/kill_loop.sh"
kill_trials 0.2 0.75

# 3. the split follows the rows, not the files: the same rows in two other shards give the same
# validation and test rows, hence the same fitted state
# shellcheck disable=SC2086
"$b/tessera" run $args data.path="$tmp/sh2/*" --results "$tmp/other"
cmp -s "$tmp/ref/data_state.txt" "$tmp/other/data_state.txt" || { echo "FAIL: the fitted state depends on how the rows are cut into files"; exit 1; }
for k in valid.income.positive_rate test.income.positive_rate test.marital.positive_rate; do
    a=$(grep "\"$k\"" "$tmp/ref/metrics.json")
    o=$(grep "\"$k\"" "$tmp/other/metrics.json")
    [ "$a" = "$o" ] || { echo "FAIL: $k differs with other shards: $a / $o"; exit 1; }
done
echo "other shards, same rows: same fitted state and splits"

# 5. a fitted state given (fitted_state =): nothing is fitted, and a state equal to the one the
# reference fitted trains the very same model
cp "$tmp/ref/data_state.txt" "$tmp/state.txt"
# shellcheck disable=SC2086
"$b/tessera" run $args data.fitted_state="$tmp/state.txt" --results "$tmp/given"
same "$tmp/given" || { echo "FAIL: a run given the reference's fitted state differs from it"; exit 1; }
echo "fitted_state given: bit-identical to the run that fitted it"

# 4. a reader that does not stream
if "$b/tessera" run "$s/experiments/movielens_two_tower.ini" data.stream=true --results "$tmp/no" >"$tmp/no.txt" 2>&1; then
    echo "FAIL: movielens accepted stream = true"; exit 1
fi
grep -q "cannot stream its rows" "$tmp/no.txt" || { echo "FAIL: unclear refusal:"; cat "$tmp/no.txt"; exit 1; }
echo "a reader that cannot stream: refused ($(head -c 120 "$tmp/no.txt"))"
# bad streamed input: a glob that matches nothing, a block of no rows, an unreadable fitted state
refused() {   # WHAT EXPECTED [overrides]: the run fails and says EXPECTED
    what=$1; want=$2; shift 2
    if "$b/tessera" run "$s/experiments/census_mmoe.ini" data.stream=true "$@" --results "$tmp/bad" >"$tmp/bad.txt" 2>&1; then
        echo "FAIL: $what was accepted"; exit 1
    fi
    grep -q "$want" "$tmp/bad.txt" || { echo "FAIL: $what: unclear message:"; cat "$tmp/bad.txt"; exit 1; }
    echo "$what: $(tail -n 1 "$tmp/bad.txt" | head -c 160)"
}
refused "a glob of no file" "matches no file; give a file, a folder of shards or a glob" "data.path=$tmp/none/*.gz"
refused "shuffle_buffer = 0" "command line: shuffle_buffer = 0: give a number of rows from 1" data.shuffle_buffer=0
refused "an unreadable fitted state" "fitted_state = $tmp/nope: cannot read" "data.fitted_state=$tmp/nope"
echo "PASS"
