#!/bin/sh
# sparse_conv.sh — `make bench-sparse-conv`: CNN-DSSM's training throughput on WordNet with the
# factorised convolution (embedding_bag + conv1d, experiments/wordnet_cnn_dssm.ini) against the
# paper's sparse one (sparse_conv, experiments/wordnet_cnn_dssm_sparse.ini), alternating within
# each round, at 1 and 2 threads (OPENBLAS_NUM_THREADS). Each run trains one epoch of the
# 110,659 training pairs at batch 256 (valid/test cut to 500, as bench.sh does) and reports
# train.run.examples_per_sec from its metrics.json (pairs/s); the table gives every round and
# the best of each. Nothing here is part of `make check`.
#
# Usage: sparse_conv.sh BUILDDIR SRCDIR     (BENCH_ROUNDS=2 rounds by default)
set -eu
b=${1:-.}
s=${2:-.}
rounds=${BENCH_ROUNDS:-2}
out=$(mktemp -d "${TMPDIR:-/tmp}/tessera-bench-sparse-XXXXXX")
trap 'rm -rf "$out"' EXIT
echo "machine: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //')"
echo "load at start:$(uptime | sed 's/.*load average://')"
printf '%-8s %-7s %-12s %10s\n' round threads model pairs/s
best() { sort -g | tail -n 1; }
for th in 1 2; do
    for r in $(seq 1 "$rounds"); do
        for m in cnn_dssm cnn_dssm_sparse; do
            d="$out/$m-$th-$r"
            OPENBLAS_NUM_THREADS=$th "$b/tessera" run "$s/experiments/wordnet_$m.ini" --quiet \
                --results "$d" train.epochs=1 data.test_size=500 data.valid_size=500 >/dev/null
            v=$(sed -n 's/.*"train.run.examples_per_sec": *\([0-9.eE+-]*\).*/\1/p' "$d/metrics.json")
            printf '%-8s %-7s %-12s %10.0f\n' "$r" "$th" "$m" "$v"
            echo "$th $m $v" >>"$out/all.txt"
            rm -rf "$d"
        done
    done
done
for th in 1 2; do
    f=$(awk -v t="$th" '$1 == t && $2 == "cnn_dssm" { print $3 }' "$out/all.txt" | best)
    p=$(awk -v t="$th" '$1 == t && $2 == "cnn_dssm_sparse" { print $3 }' "$out/all.txt" | best)
    awk -v t="$th" -v f="$f" -v p="$p" 'BEGIN { printf "best at %d thread(s): factorised %.0f, sparse %.0f pairs/s (%.2fx)\n", t, f, p, p / f }'
done
echo "load at end:$(uptime | sed 's/.*load average://')"
