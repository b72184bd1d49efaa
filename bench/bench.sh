#!/bin/sh
# bench.sh — training throughput of tessera against the PyTorch reference of the same model,
# same batch, 2 threads each, one run each; prints examples/s and the ratio. `make bench` runs it.
# Usage: bench.sh BUILDDIR SRCDIR
set -eu
b=${1:-.}
s=${2:-.}
py=/usr/bin/python3
threads=2
out=${TMPDIR:-/tmp}/tessera-bench
mkdir -p "$out"
have_torch=no
"$py" -c 'import torch' 2>/dev/null && have_torch=yes
echo "machine: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //')"
[ "$have_torch" = yes ] || echo "PyTorch not found (apt-get install python3-torch): tessera figures only"
printf '%-22s %8s %14s %14s %8s\n' model batch tessera_ex/s pytorch_ex/s ratio
bench_one() {  # name experiment torch_model batch
    name=$1; exp=$2; tm=$3; batch=$4
    OPENBLAS_NUM_THREADS=$threads "$b/tessera" run "$s/experiments/$exp" train.epochs=3 \
        train.patience=0 train.batch="$batch" train.threads=$threads --results "$out/$name" \
        2>"$out/$name.log" || { echo "$name: tessera run failed, see $out/$name.log"; return 1; }
    ts=$(grep '"train.run.examples_per_sec"' "$out/$name/metrics.json" | sed 's/.*: //; s/,$//')
    pt=-
    ratio=-
    if [ "$have_torch" = yes ]; then
        # the faster of sparse (SparseAdam) and dense embedding gradients
        pt=0
        for sp in 1 0; do
            v=$("$py" "$s/bench/torch_census.py" --data "$s/data/census/census-income.test.gz" \
                --model "$tm" --batch "$batch" --epochs 2 --threads $threads --sparse $sp | awk '{print $3}')
            pt=$(awk -v a="$pt" -v b="$v" 'BEGIN { print (b > a ? b : a) }')
        done
        ratio=$(awk -v a="$ts" -v b="$pt" 'BEGIN { printf "%.2f", a / b }')
    fi
    printf '%-22s %8s %14.0f %14.0f %8s\n' "$name" "$batch" "$ts" "$pt" "$ratio"
}
bench_one census_mlp census_income_mlp.ini mlp 512
bench_one census_shared_bottom census_shared_bottom.ini shared_bottom 1024
bench_one census_mmoe census_mmoe.ini mmoe 1024
