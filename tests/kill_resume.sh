#!/bin/sh
# kill_resume.sh — a run killed with SIGKILL at a random moment and resumed with
# `tessera run ... --resume` ends bit-identical to a run never interrupted: params.bin byte for byte, every
# figure of metrics.json but the timings, eval.csv, and train.csv's loss columns. Ten kills
# (KILL_TRIALS), one BLAS thread, a checkpoint every 7 steps on census MMoE (3 epochs). Kills that
# land before the first checkpoint resume from the start; kills inside a checkpoint's write leave
# the previous one, which the resume must find. The delays are printed so a failure can be
# repeated with KILL_DELAYS="0.31 0.77 ...".
set -eu
b=${top_builddir:-.}
s=${top_srcdir:-.}
trials=${KILL_TRIALS:-10}
tmp=$(mktemp -d /tmp/tessera-kill-XXXXXX)
trap 'rm -rf "$tmp"' EXIT
export OPENBLAS_NUM_THREADS=1
args="$s/experiments/census_mmoe.ini train.epochs=3 train.checkpoint_every=7 train.threads=1 --quiet"

# shellcheck disable=SC2086
start=$(date +%s%N)
"$b/tessera" run $args --results "$tmp/ref"
dur_ms=$(( ($(date +%s%N) - start) / 1000000 ))
echo "uninterrupted run: $dur_ms ms"
[ -f "$tmp/ref/params.bin" ] || { echo "FAIL: the reference run wrote no params.bin"; exit 1; }

same() {   # same DIR: DIR's results equal the reference's
    cmp -s "$tmp/ref/params.bin" "$1/params.bin" || { echo "params.bin differs"; return 1; }
    grep -v '"train.run\.' "$tmp/ref/metrics.json" >"$tmp/a.json"
    grep -v '"train.run\.' "$1/metrics.json" >"$tmp/b.json"
    cmp -s "$tmp/a.json" "$tmp/b.json" || { echo "metrics.json differs:"; diff "$tmp/a.json" "$tmp/b.json"; return 1; }
    cmp -s "$tmp/ref/eval.csv" "$1/eval.csv" || { echo "eval.csv differs"; return 1; }
    cut -d, -f1-6 "$tmp/ref/train.csv" >"$tmp/a.csv"
    cut -d, -f1-6 "$1/train.csv" >"$tmp/b.csv"
    cmp -s "$tmp/a.csv" "$tmp/b.csv" || { echo "train.csv's losses differ"; return 1; }
    ls "$1" | grep -q tsck && { echo "checkpoints left after the finished run"; return 1; }
    return 0
}

killed=0
n=0
seed=${KILL_SEED:-$$}
delays=${KILL_DELAYS:-}
while [ "$killed" -lt "$trials" ]; do
    n=$((n + 1))
    [ "$n" -le $((trials * 3)) ] || { echo "FAIL: too many runs ended before their kill"; exit 1; }
    if [ -n "$delays" ]; then
        d=$(echo "$delays" | cut -d' ' -f"$n")
        [ -n "$d" ] || break
    else
        # a delay in [5%, 95%] of the uninterrupted run's time
        d=$(awk -v s="$seed" -v n="$n" -v t="$dur_ms" 'BEGIN { srand(s + n); printf "%.3f", t * (0.05 + 0.9 * rand()) / 1000 }')
    fi
    dir="$tmp/k$n"
    # shellcheck disable=SC2086
    "$b/tessera" run $args --results "$dir" &
    pid=$!
    sleep "$d"
    if kill -9 "$pid" 2>/dev/null; then
        wait "$pid" 2>/dev/null || true
        if [ -f "$dir/metrics.json" ]; then finished=yes; else finished=no; fi
    else
        wait "$pid" || true
        finished=yes
    fi
    if [ "$finished" = yes ]; then
        echo "run $n: finished before the kill at ${d}s; not a trial"
        continue
    fi
    ck=$(ls "$dir" 2>/dev/null | grep tsck | tr '\n' ' ')
    # the same command with --resume: from the newest valid checkpoint, or from the start when
    # the kill came before the first one
    # shellcheck disable=SC2086
    "$b/tessera" run $args --results "$dir" --resume || { echo "FAIL: trial $((killed + 1)): resume failed (kill at ${d}s)"; exit 1; }
    killed=$((killed + 1))
    if ! same "$dir"; then
        echo "FAIL: trial $killed (kill at ${d}s, checkpoints then: ${ck:-none}) is not bit-identical"
        exit 1
    fi
    echo "trial $killed: killed at ${d}s (checkpoints: ${ck:-none}), resumed: bit-identical"
    rm -rf "$dir"
done
[ "$killed" -ge "$trials" ] || { echo "FAIL: only $killed kills"; exit 1; }
echo "PASS: $killed of $killed killed runs resumed bit-identical"
