#!/bin/sh
# replicas.sh — [train] replicas = R and [train] threads (docs/ini.md, docs/architecture.md).
# Replicas: R copies of the graph's layers train the R parts of each batch at once, the heads run
# once on the whole batch, and the copies' gradients are summed: the same training as one copy,
# up to the order of float sums. Census MMoE, K Adam steps:
#   replicas = 2, batch B   against   replicas = 1, batch B
# must end with the same parameters within float rounding (|a - b| <= 1e-6 + 1e-4 |b|, as the
# MPI equivalence test) and the same metrics (1e-4), while replicas = 1 with batch B/2 (what a
# copy would train without the sum) must NOT pass the comparison. The heads see the whole batch,
# so the same holds for the DSSM (in-batch negatives) and the YouTube DNN (sampled negatives,
# the popularity head's counts), checked with SGD (Adam and Adagrad turn a rounding difference
# in a near-zero gradient into a step of lr). Also: uneven parts (batch 7 over 3 copies; batch 1
# over 2, one copy idle), two runs alike bit for bit, one epoch resumed for a second alike,
# and the refusals. Threads: the layers of a level run at once (the DSSM's two towers, MMoE's
# towers) and the optimizer's parameters too, bit for bit the run of one thread.
set -eu
b=${top_builddir:-.}
s=${top_srcdir:-.}
tmp=$(mktemp -d /tmp/tessera-replicas-XXXXXX)
trap 'rm -rf "$tmp"' EXIT
export OPENBLAS_NUM_THREADS=1
K=40
B=128
tol="--atol 1e-6 --rtol 1e-4"
exp="$s/experiments/census_mmoe.ini"
common="train.log_every=10 train.threads=2"
fail() { echo "FAIL: $*"; exit 1; }
run() {   # DIR [overrides]
    dir=$1; shift
    "$b/tessera" run "$exp" $common "$@" --results "$tmp/$dir" --quiet >"$tmp/$dir.log" 2>&1 ||
        { cat "$tmp/$dir.log"; fail "run $dir ($*)"; }
}
run r2 train.epochs=1 train.max_steps=$K train.batch=$B train.replicas=2
run r1 train.epochs=1 train.max_steps=$K train.batch=$B
run half train.epochs=1 train.max_steps=$K train.batch=$((B / 2))
rc=0
"$b/tests/params_diff" "$tmp/r2/params.bin" "$tmp/r1/params.bin" $tol >"$tmp/diff.txt" || rc=$?
echo "replicas = 2 vs 1, batch $B, $K steps: $(tail -n 1 "$tmp/diff.txt")"
[ "$rc" = 0 ] || { cat "$tmp/diff.txt"; fail "replicas = 2 did not train the model of replicas = 1"; }
rc=0
"$b/tests/params_diff" "$tmp/half/params.bin" "$tmp/r1/params.bin" $tol >"$tmp/control.txt" || rc=$?
echo "control, batch $((B / 2)) vs $B: $(tail -n 1 "$tmp/control.txt")"
[ "$rc" = 1 ] || fail "the control (half the batch) passed the tolerance (rc $rc): the comparison cannot tell runs apart"
metrics() { grep -E '"(valid|test)\.' "$1" | tr -d ' ",' | sed 's/:/ /' | sort; }
metrics "$tmp/r2/metrics.json" >"$tmp/m2"
metrics "$tmp/r1/metrics.json" >"$tmp/m1"
[ -s "$tmp/m1" ] || fail "no metrics in $tmp/r1/metrics.json"
join "$tmp/m2" "$tmp/m1" >"$tmp/mb"
[ "$(wc -l <"$tmp/mb")" = "$(wc -l <"$tmp/m1")" ] || { diff "$tmp/m2" "$tmp/m1"; fail "different metrics reported"; }
awk '{ d = $2 - $3; if (d < 0) d = -d; if (!(d <= 1e-4)) { print "FAIL: " $1 ": " $2 " (replicas 2) vs " $3; bad = 1 } }
     END { exit bad }' "$tmp/mb" || exit 1
ex2=$(tail -n 1 "$tmp/r2/train.csv" | cut -d, -f3); ex1=$(tail -n 1 "$tmp/r1/train.csv" | cut -d, -f3)
[ "$ex2" = "$ex1" ] && [ "$ex1" = $((K * B)) ] || fail "examples seen: $ex2 (replicas 2), $ex1, expected $((K * B))"
l2=$(tail -n 1 "$tmp/r2/train.csv" | cut -d, -f4); l1=$(tail -n 1 "$tmp/r1/train.csv" | cut -d, -f4)
awk -v a="$l2" -v b="$l1" 'BEGIN { d = a - b; if (d < 0) d = -d; exit !(d <= 1e-4 * (1 + b)) }' ||
    fail "logged loss $l2 (replicas 2) vs $l1"
echo "metrics ($(grep -c . "$tmp/mb") figures), examples seen and the logged loss agree"

# uneven parts: 7 rows over 3 copies (3, 2, 2), 1 row over 2 (one copy idle)
for spec in "7 3" "1 2"; do
    set -- $spec
    run "u$1_$2" train.epochs=1 train.max_steps=12 train.batch=$1 train.replicas=$2
    run "u$1_1" train.epochs=1 train.max_steps=12 train.batch=$1
    "$b/tests/params_diff" "$tmp/u$1_$2/params.bin" "$tmp/u$1_1/params.bin" $tol >"$tmp/u.txt" ||
        { cat "$tmp/u.txt"; fail "batch $1 over $2 copies did not train the one-copy model"; }
done
echo "uneven parts (batch 7 over 3 copies, batch 1 over 2) train the one-copy model"

# two runs alike; a run of one epoch, resumed for a second, equals the run of two epochs
run again train.epochs=1 train.max_steps=$K train.batch=$B train.replicas=2
cmp "$tmp/r2/params.bin" "$tmp/again/params.bin" || fail "two runs with replicas = 2 differ"
run two train.epochs=2 train.batch=512 train.replicas=2 train.keep_checkpoints=true
run part train.epochs=1 train.batch=512 train.replicas=2 train.keep_checkpoints=true
"$b/tessera" run "$exp" $common train.epochs=2 train.batch=512 train.replicas=2 --resume \
    --results "$tmp/part" --quiet >"$tmp/resume.log" 2>&1 || { cat "$tmp/resume.log"; fail "the resumed run"; }
cmp "$tmp/two/params.bin" "$tmp/part/params.bin" || fail "one epoch resumed for a second, replicas = 2, differs from two epochs in one go"
echo "replicas = 2: two runs alike, and one epoch resumed for a second alike, bit for bit"

# the heads run once on the whole batch: in-batch negatives (DSSM) and sampled negatives and
# counted labels (YouTube DNN) are those of one copy
text="$s/experiments/wordnet_dssm.ini data.test_size=200 data.valid_size=200 train.epochs=1 train.max_steps=20 train.batch=64 optimizer.type=sgd optimizer.lr=0.05 train.threads=2 --quiet"
yt="$s/experiments/movielens_youtube_dnn.ini train.epochs=1 train.max_steps=30 optimizer.type=sgd optimizer.lr=0.05 train.threads=2 --quiet"
for m in text yt; do
    eval "args=\$$m"
    "$b/tessera" run $args train.replicas=2 --results "$tmp/${m}2" >"$tmp/${m}2.log" 2>&1 || { cat "$tmp/${m}2.log"; fail "$m, replicas = 2"; }
    "$b/tessera" run $args --results "$tmp/${m}1" >"$tmp/${m}1.log" 2>&1 || { cat "$tmp/${m}1.log"; fail "$m, replicas = 1"; }
    "$b/tests/params_diff" "$tmp/${m}2/params.bin" "$tmp/${m}1/params.bin" $tol >"$tmp/${m}.txt" ||
        { cat "$tmp/${m}.txt"; fail "$m: replicas = 2 did not train the model of replicas = 1"; }
    echo "$m, replicas = 2 vs 1 (SGD): $(tail -n 1 "$tmp/${m}.txt")"
done

# threads: bit for bit the run of one thread (the DSSM's towers, MMoE's two towers at once; with
# Adam at batch 256, the query table's touched rows in bands, the next batch read beside the
# optimizer and the match head's row tasks)
adam="$s/experiments/wordnet_dssm.ini data.test_size=200 data.valid_size=200 train.epochs=1 train.max_steps=15 --quiet"
for m in text adam mmoe; do
    case $m in
        text) args="$text" ;;
        adam) args="$adam" ;;
        *) args="$exp train.epochs=1 train.max_steps=$K train.batch=$B --quiet" ;;
    esac
    "$b/tessera" run $args train.threads=1 --results "$tmp/${m}_t1" >"$tmp/${m}_t1.log" 2>&1 || { cat "$tmp/${m}_t1.log"; fail "$m, threads = 1"; }
    "$b/tessera" run $args train.threads=2 --results "$tmp/${m}_t2" >"$tmp/${m}_t2.log" 2>&1 || { cat "$tmp/${m}_t2.log"; fail "$m, threads = 2"; }
    cmp "$tmp/${m}_t1/params.bin" "$tmp/${m}_t2/params.bin" || fail "$m: threads = 2 changed the trained parameters"
    grep -v '"train.run\.' "$tmp/${m}_t1/metrics.json" >"$tmp/a.json"
    grep -v '"train.run\.' "$tmp/${m}_t2/metrics.json" >"$tmp/b.json"
    cmp -s "$tmp/a.json" "$tmp/b.json" || { diff "$tmp/a.json" "$tmp/b.json"; fail "$m: threads = 2 changed a figure"; }
done
"$b/tessera" run "$s/experiments/wordnet_dssm.ini" data.test_size=200 data.valid_size=200 train.max_steps=1 \
    train.threads=2 --results "$tmp/text_log" >"$tmp/text_log.log" 2>&1 || { cat "$tmp/text_log.log"; fail "the DSSM run with a log"; }
grep -q "threads: 2; layers run at once: q_hash + d_hash; q_l1 + d_l1; q_l2 + d_l2; q_vec + d_vec" "$tmp/text_log.log" ||
    { cat "$tmp/text_log.log"; fail "the log does not say which layers run at once"; }
echo "threads = 2: the DSSM's towers and MMoE's towers at once, params.bin and every figure as with one thread"

# refusals, each naming the key and what to do
refused() {   # NAME PATTERN [overrides]
    name=$1; pat=$2; shift 2
    if "$b/tessera" run "$exp" train.max_steps=2 "$@" --results "$tmp/$name" --quiet >"$tmp/$name.log" 2>&1; then
        fail "$name: accepted"
    fi
    grep -q -- "$pat" "$tmp/$name.log" || { cat "$tmp/$name.log"; fail "$name: no clear message"; }
}
refused gradnorm "replicas = 2: not with weighting = gradnorm" train.replicas=2 train.weighting=gradnorm
refused range "\[train\] replicas = 0 is outside 1..64" train.replicas=0
echo "refused with a clear message: weighting = gradnorm, replicas = 0"
