#!/bin/sh
# bench/stream.sh BUILDDIR SRCDIR — streamed against in-memory data (docs/scale.md): census MMoE
# on a file of REPEATS (default 50, ~5M rows) copies of the bundled census file, made in
# $TMPDIR/tessera-bench-stream (never committed; kept for the next run), one epoch, one BLAS
# thread. For each mode it prints the peak RSS (/usr/bin/time -v, "Maximum resident set size")
# and the training throughput (metrics.json train.run.examples_per_sec), then the ratios; in a
# --with-mpi build (MPIRUN set) also `mpirun -np 2` streamed, each rank's peak RSS. Asserts
# nothing: a benchmark, not a test. BENCH_STREAM_EXP=census_mmoe_table.ini measures the table
# reader on the same file.
set -eu
b=${1:-.}
s=${2:-.}
reps=${BENCH_STREAM_REPEATS:-50}
buffer=${BENCH_STREAM_BUFFER:-65536}
work=${TMPDIR:-/tmp}/tessera-bench-stream
mkdir -p "$work"
data="$work/census-x$reps.txt.gz"
if [ ! -s "$data" ]; then
    echo "making $data ($reps copies of the bundled file)..."
    gzip -dc "$s/data/census/census-income.test.gz" >"$work/one.txt"
    i=0
    while [ "$i" -lt "$reps" ]; do cat "$work/one.txt"; i=$((i + 1)); done | gzip -1 >"$data.tmp"
    mv "$data.tmp" "$data"
    rm -f "$work/one.txt"
fi
rows=$(gzip -dc "$data" | wc -l)
echo "data: $data, $rows rows, $(du -m "$data" | cut -f1) MB compressed"
export OPENBLAS_NUM_THREADS=1
exp="$s/experiments/${BENCH_STREAM_EXP:-census_mmoe.ini}"   # census_mmoe_table.ini: the table reader
common="data.path=$data train.epochs=1 train.threads=1"

rss_mb() { awk -F: '/Maximum resident set size/ { printf "%.0f", $2 / 1024 }' "$1"; }
eps() { grep '"train.run.examples_per_sec"' "$1/metrics.json" | sed 's/.*: *//; s/,//' | awk '{ printf "%.0f", $1 }'; }
wall() { awk -F': ' '/Elapsed \(wall clock\)/ { print $2 }' "$1"; }

run() {   # NAME [overrides]
    name=$1; shift
    rm -rf "$work/$name"
    # shellcheck disable=SC2086
    /usr/bin/time -v -o "$work/$name.time" "$b/tessera" run "$exp" $common "$@" \
        --results "$work/$name" --quiet >"$work/$name.log" 2>&1 || { cat "$work/$name.log"; exit 1; }
    echo "$name: peak RSS $(rss_mb "$work/$name.time") MB, training $(eps "$work/$name") ex/s, wall $(wall "$work/$name.time")"
}

run memory
run stream data.stream=true data.shuffle_buffer="$buffer"
m=$(rss_mb "$work/memory.time"); st=$(rss_mb "$work/stream.time")
em=$(eps "$work/memory"); es=$(eps "$work/stream")
awk -v m="$m" -v s="$st" -v em="$em" -v es="$es" 'BEGIN {
    printf "streamed / in memory: peak RSS %.2f (%d / %d MB), training throughput %.3f (%d / %d ex/s)\n",
           s / m, s, m, es / em, es, em }'

if [ -n "${MPIRUN:-}" ] && command -v "$MPIRUN" >/dev/null 2>&1; then
    if [ "$(id -u)" = 0 ]; then
        OMPI_ALLOW_RUN_AS_ROOT=1; OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
        export OMPI_ALLOW_RUN_AS_ROOT OMPI_ALLOW_RUN_AS_ROOT_CONFIRM
    fi
    rm -rf "$work/mpi"
    # shellcheck disable=SC2016
    $MPIRUN --oversubscribe --mca btl self,vader,tcp --mca btl_tcp_if_include lo \
        --mca btl_vader_single_copy_mechanism none -x OPENBLAS_NUM_THREADS -np 2 \
        sh -c '/usr/bin/time -v -o "$0.$OMPI_COMM_WORLD_RANK" "$@"' "$work/mpi.time" \
        "$b/tessera" run "$exp" $common data.stream=true data.shuffle_buffer="$buffer" \
        --results "$work/mpi" --quiet >"$work/mpi.log" 2>&1 || { cat "$work/mpi.log"; exit 1; }
    echo "mpirun -np 2 streamed: peak RSS rank 0 $(rss_mb "$work/mpi.time.0") MB, rank 1 $(rss_mb "$work/mpi.time.1") MB; training $(eps "$work/mpi") ex/s (both ranks), wall $(wall "$work/mpi.time.0")"
fi
