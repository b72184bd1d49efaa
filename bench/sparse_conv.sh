#!/bin/sh
# sparse_conv.sh — `make bench-sparse-conv`: CNN-DSSM's training throughput on WordNet with the
# factorised convolution (embedding_bag + conv1d, experiments/wordnet_cnn_dssm.ini) against the
# paper's sparse one (sparse_conv, experiments/wordnet_cnn_dssm_sparse.ini), alternating within
# each round, at 1 and 2 threads (OPENBLAS_NUM_THREADS). Each run trains one epoch of the
# 110,659 training pairs at batch 256 (valid/test cut to 500, as bench.sh does) and reports
# train.run.examples_per_sec from its metrics.json (pairs/s); the table gives every round and
# the best of each. On a shared machine those wall-clock figures move with the load, so at one
# thread each model also trains one and two epochs under /usr/bin/time: 110,659 pairs over the
# difference of the two runs' CPU seconds (user + system) is its throughput per CPU second, which
# the other processes of the machine barely change (the second epoch adds one evaluation of the
# 500 validation pairs, too). Nothing here is part of `make check`.
#
# Usage: sparse_conv.sh BUILDDIR SRCDIR     (BENCH_ROUNDS=2 rounds by default; BENCH_PART=wall
#        or cpu runs only the wall-clock rounds or only the CPU-second figures)
set -eu
b=${1:-.}
s=${2:-.}
rounds=${BENCH_ROUNDS:-2}
out=$(mktemp -d "${TMPDIR:-/tmp}/tessera-bench-sparse-XXXXXX")
trap 'rm -rf "$out"' EXIT
echo "machine: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //')"
echo "load at start:$(uptime | sed 's/.*load average://')"
part=${BENCH_PART:-all}
[ "$part" = cpu ] || printf '%-8s %-7s %-12s %10s\n' round threads model pairs/s
best() { sort -g | tail -n 1; }
[ "$part" = cpu ] || for th in 1 2; do
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
[ "$part" = cpu ] || for th in 1 2; do
    f=$(awk -v t="$th" '$1 == t && $2 == "cnn_dssm" { print $3 }' "$out/all.txt" | best)
    p=$(awk -v t="$th" '$1 == t && $2 == "cnn_dssm_sparse" { print $3 }' "$out/all.txt" | best)
    awk -v t="$th" -v f="$f" -v p="$p" 'BEGIN { printf "best at %d thread(s): factorised %.0f, sparse %.0f pairs/s (%.2fx)\n", t, f, p, p / f }'
done
# pairs per CPU second at one thread: CPU(2 epochs) - CPU(1 epoch)
cpu() {  # model epochs -> user + system seconds
    d="$out/cpu-$1-$2"
    /usr/bin/time -f '%U %S' -o "$d.time" env OPENBLAS_NUM_THREADS=1 "$b/tessera" run \
        "$s/experiments/wordnet_$1.ini" --quiet --results "$d" train.epochs="$2" \
        data.test_size=500 data.valid_size=500 >/dev/null
    rm -rf "$d"
    awk '{ print $1 + $2 }' "$d.time"
}
if [ "$part" != wall ] && [ -x /usr/bin/time ]; then
    for m in cnn_dssm cnn_dssm_sparse; do
        c1=$(cpu $m 1)
        c2=$(cpu $m 2)
        awk -v m="$m" -v a="$c1" -v b="$c2" 'BEGIN { printf "%s at 1 thread: %.0f pairs per CPU second (one epoch = %.1f CPU s; runs of 1 and 2 epochs: %.1f and %.1f CPU s)\n", m, 110659 / (b - a), b - a, a, b }'
    done
fi
echo "load at end:$(uptime | sed 's/.*load average://')"
