#!/bin/sh
# mpi_scaling.sh — data-parallel training throughput on this machine: examples/s with 1, 2 and 4
# ranks (mpirun -np N, one BLAS thread per rank), the per-rank batch fixed (weak scaling: the
# global batch is N times the per-rank batch), and the scaling efficiency
#   eff(N) = examples/s with N ranks / (N * examples/s with 1 rank)
# (relative to the first count of RANKS when that is not 1).
# Every configuration runs REPEAT times (default 3) and the best figure counts: on a shared
# machine one preempted rank stalls every rank at the next collective, and the best of a few
# runs is the closest to an undisturbed one (the load average is printed at start and end).
# Ranks yield the core while they wait in a collective (mpi_yield_when_idle): Open MPI busy-polls
# otherwise whenever ranks <= cores, and on a machine shared with other work the spinning rank
# takes the core the computing one needs (measured here: 2 ranks of census MMoE, 25,600
# examples/s polling, 105,000 yielding). On dedicated cluster nodes polling is the faster choice.
# Each rank is one core's worth of work: with more ranks than cores (4 ranks on 2 cores) the
# efficiency is bounded by cores / N, and the line says so. `make bench-mpi` runs it in a
# --with-mpi build; docs/distributed.md records figures and the communication model.
# Usage: mpi_scaling.sh BUILDDIR SRCDIR   (RANKS="1 2 4", REPEAT=3, BENCH_MPI_STEPS=... override)
set -eu
b=${1:-.}
s=${2:-.}
mpirun=${MPIRUN:-mpirun}
ranks=${RANKS:-1 2 4}
repeat=${REPEAT:-3}
out=${TMPDIR:-/tmp}/tessera-bench-mpi
mkdir -p "$out"
if [ "$(id -u)" = 0 ]; then
    OMPI_ALLOW_RUN_AS_ROOT=1; OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
    export OMPI_ALLOW_RUN_AS_ROOT OMPI_ALLOW_RUN_AS_ROOT_CONFIRM
fi
OPENBLAS_NUM_THREADS=1; export OPENBLAS_NUM_THREADS
mpi="$mpirun --oversubscribe --bind-to none --mca mpi_yield_when_idle 1 --mca btl self,vader,tcp --mca btl_tcp_if_include lo --mca btl_vader_single_copy_mechanism none -x OPENBLAS_NUM_THREADS${TESSERA_PLUGIN_PATH+ -x TESSERA_PLUGIN_PATH}"
cores=$(nproc)
echo "machine: $cores cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //'); 1 BLAS thread per rank"
echo "load at start:$(uptime | sed 's/.*load average://')"
# 1. one gradient exchange (ts_dist_sum_grads) with each family's sizes, no training around it
if [ -x "$b/bench/bench_comm" ]; then
    for n in $ranks; do
        [ "$n" -ge 2 ] || continue
        $mpi -np "$n" "$b/bench/bench_comm" 30 || echo "bench_comm with $n ranks failed"
    done
fi
# 2. training throughput
printf '%-22s %5s %10s %12s %13s %10s  %s\n' model ranks rank_batch global_batch examples/s efficiency note

# bench NAME EXPERIMENT BATCH STEPS — one line per rank count
bench() {
    name=$1; exp=$2; batch=$3; steps=${BENCH_MPI_STEPS:-$4}
    base=
    for n in $ranks; do
        dir="$out/$name-np$n"
        eps=0
        for i in $(seq "$repeat"); do
            rm -rf "$dir"
            # epochs far beyond max_steps: the run is K global batches, one evaluation at the end
            $mpi -np "$n" "$b/tessera" run "$s/experiments/$exp" train.batch="$batch" \
                train.max_steps="$steps" train.epochs=1000 train.patience=0 train.threads=1 \
                --results "$dir" --quiet >"$dir.log" 2>&1 ||
                { echo "$name, $n ranks: the run failed, see $dir.log"; eps=; break; }
            # global examples per training second (evaluation excluded), rank 0's metrics.json
            v=$(grep '"train.run.examples_per_sec"' "$dir/metrics.json" | sed 's/.*: //; s/,$//')
            eps=$(awk -v v="$v" -v best="$eps" 'BEGIN { printf "%.0f", (v > best ? v : best) }')
        done
        [ -n "$eps" ] || continue
        [ -n "$base" ] || { base=$eps; n0=$n; }
        eff=$(awk -v a="$eps" -v b="$base" -v n="$n" -v n0="$n0" 'BEGIN { printf "%.2f", a * n0 / (n * b) }')
        note=
        [ "$n" -gt "$cores" ] && note="$n ranks on $cores cores: at most $(awk -v c="$cores" -v n="$n" 'BEGIN { printf "%.2f", c / n }')"
        printf '%-22s %5s %10s %12s %13s %10s  %s\n' "$name" "$n" "$batch" $((n * batch)) "$eps" "$eff" "$note"
    done
}
start=$(date +%s)
bench census_mmoe census_mmoe.ini 256 300
bench wikiqa_dssm wikiqa_dssm.ini 256 30
bench movielens_youtube_dnn movielens_youtube_dnn.ini 256 150
echo "load at end:$(uptime | sed 's/.*load average://')"
echo "took $(( $(date +%s) - start )) s; logs and runs in $out"
