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

. "$s/tests/kill_loop.sh"
kill_trials 0.05 0.9
[ "$killed" -ge "$trials" ] || { echo "FAIL: only $killed kills"; exit 1; }
echo "PASS: $killed of $killed killed runs resumed bit-identical"
