#!/bin/sh
# bench.sh — training throughput of tessera against the PyTorch reference of the same model,
# same batch, the same number of threads each (BENCH_THREADS, default 2), one run each; prints
# examples/s (pairs/s for the matching models) and the ratio tessera / PyTorch, then this
# machine's sgemm peak and the fraction of it CNN-DSSM's training reaches. `make bench` runs it;
# bench/README.md says what each line measures and records figures.
# Usage: bench.sh BUILDDIR SRCDIR
set -eu
b=${1:-.}
s=${2:-.}
py=/usr/bin/python3
threads=${BENCH_THREADS:-2}
out=${TMPDIR:-/tmp}/tessera-bench
mkdir -p "$out"
start=$(date +%s)
have_torch=no
"$py" -c 'import torch' 2>/dev/null && have_torch=yes
echo "machine: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //'); $threads thread(s) each"
echo "load at start:$(uptime | sed 's/.*load average://')"
[ "$have_torch" = yes ] || echo "PyTorch not found (apt-get install python3-torch): tessera figures only"
printf '%-24s %6s %13s %13s %7s  %s\n' model batch tessera_ex/s pytorch_ex/s ratio pytorch_variant

# row NAME BATCH TESSERA PYTORCH VARIANT — one line of the table ("-" where a figure is missing)
row() {
    ratio=-
    case "$3$4" in *-*|'') ;; *) ratio=$(awk -v a="$3" -v b="$4" 'BEGIN { printf "%.2f", a / b }') ;; esac
    printf '%-24s %6s %13s %13s %7s  %s\n' "$1" "$2" \
        "$(awk -v a="$3" 'BEGIN { if (a == "-") print "-"; else printf "%.0f", a }')" \
        "$(awk -v a="$4" 'BEGIN { if (a == "-") print "-"; else printf "%.0f", a }')" "$ratio" "$5"
}

# tessera_eps NAME EXPERIMENT OVERRIDES... — runs tessera, prints train.run.examples_per_sec
tessera_eps() {
    name=$1; exp=$2; shift 2
    OPENBLAS_NUM_THREADS=$threads "$b/tessera" run "$s/experiments/$exp" "$@" train.patience=0 \
        train.threads=$threads --results "$out/$name" 2>"$out/$name.log" \
        || { echo "$name: tessera run failed, see $out/$name.log" >&2; echo -; return 0; }
    grep '"train.run.examples_per_sec"' "$out/$name/metrics.json" | sed 's/.*: //; s/,$//'
}

# best NAME FILE — the "NAME best_..._per_sec VALUE VARIANT" line of a reference's output
best() { awk -v n="$1" '$1 == n && $2 ~ /^best_/ { print $3, $4 }' "$2"; }

bench_one() {  # name experiment torch_model batch
    name=$1; exp=$2; tm=$3; batch=$4
    ts=$(tessera_eps "$name" "$exp" train.epochs=3 train.batch="$batch")
    pt=-
    if [ "$have_torch" = yes ]; then
        # the faster of sparse (SparseAdam) and dense embedding gradients
        pt=0
        for sp in 1 0; do
            v=$("$py" "$s/bench/torch_census.py" --data "$s/data/census/census-income.test.gz" \
                --model "$tm" --batch "$batch" --epochs 2 --threads $threads --sparse $sp | awk '{print $3}')
            pt=$(awk -v a="$pt" -v b="$v" 'BEGIN { print (b > a ? b : a) }')
        done
    fi
    row "$name" "$batch" "$ts" "$pt" "best of sparse/dense"
}
bench_one census_mlp census_income_mlp.ini mlp 512
bench_one census_shared_bottom census_shared_bottom.ini shared_bottom 1024
bench_one census_mmoe census_mmoe.ini mmoe 1024

# Semantic matching on WordNet, batch 256 (pairs/s): tessera trains one epoch of the 110,659
# training pairs (valid/test cut to 500 so the evaluations stay short); the reference times
# 10,240 pairs per variant (10 s at most) after 5 untimed steps, and reports its fastest.
cnn_ts=-
flops=
for m in dssm cnn_dssm lstm_dssm; do
    ts=$(tessera_eps "wordnet_$m" "wordnet_$m.ini" train.epochs=1 train.batch=256 \
         data.test_size=500 data.valid_size=500)
    [ "$m" = cnn_dssm ] && cnn_ts=$ts
    pt="- -"
    ptn="- -"
    if [ "$have_torch" = yes ]; then
        "$py" "$s/bench/torch_text.py" --data "$s/data/wordnet/wordnet30_gloss_pairs.tsv.gz" \
            --model $m --batch 256 --threads $threads --pairs 10240 --max-seconds 10 \
            >"$out/torch_$m.txt" 2>&1 || echo "torch_text.py $m failed, see $out/torch_$m.txt"
        pt=$(best $m "$out/torch_$m.txt"); [ -n "$pt" ] || pt="- -"
        [ $m = lstm_dssm ] && { ptn=$(best lstm_dssm_nn "$out/torch_$m.txt"); [ -n "$ptn" ] || ptn="- -"; }
        [ $m = cnn_dssm ] && flops=$(awk '$2 == "flops_per_pair" { print $3 }' "$out/torch_$m.txt")
    fi
    set -- $pt
    row "$m" 256 "$ts" "$1" "$2"
    if [ $m = lstm_dssm ]; then
        set -- $ptn
        row "lstm_dssm_vs_nn.LSTM" 256 "$ts" "$1" "$2: no peepholes, a cheaper model"
    fi
done

# YouTube DNN on MovieLens ml-latest-small, batch 256: tessera 2 epochs (198,012 examples); the
# reference 51,200 examples per variant (10 s at most) after 10 untimed steps.
ts=$(tessera_eps youtube_dnn movielens_youtube_dnn.ini train.epochs=2 train.batch=256)
pt="- -"
if [ "$have_torch" = yes ]; then
    "$py" "$s/bench/torch_youtube.py" --data "$s/data/movielens/ml-latest-small" --batch 256 \
        --threads $threads --examples 51200 --max-seconds 10 >"$out/torch_youtube.txt" 2>&1 \
        || echo "torch_youtube.py failed, see $out/torch_youtube.txt"
    pt=$(best youtube_dnn "$out/torch_youtube.txt"); [ -n "$pt" ] || pt="- -"
fi
set -- $pt
row youtube_dnn 256 "$ts" "$1" "$2"

# The roof: sgemm GFLOP/s on 2048^3 products, and CNN-DSSM's counted flops per pair (the
# conv and dense products and the cosine sgemm, forward and backward; see flops_per_pair in
# torch_text.py) times its pairs/s, as a fraction of it.
if [ -x "$b/bench/sgemm_peak" ]; then
    peak=$("$b/bench/sgemm_peak" --threads $threads --n 2048 | awk '{ print $3 }')
    echo "sgemm peak: $peak GFLOP/s ($threads thread(s), 2048 x 2048 x 2048)"
    [ -n "$flops" ] || flops=$("$py" "$s/bench/torch_text.py" --data "$s/data/wordnet/wordnet30_gloss_pairs.tsv.gz" \
        --model cnn_dssm --flops 2>/dev/null | awk '{ print $3 }') || flops=
    if [ -n "$flops" ] && [ "$cnn_ts" != - ]; then
        awk -v f="$flops" -v p="$cnn_ts" -v g="$peak" 'BEGIN { printf "cnn_dssm: %.1f MFLOP/pair x %.0f pairs/s = %.1f GFLOP/s = %.0f%% of the sgemm peak\n", f / 1e6, p, f * p / 1e9, 100 * f * p / 1e9 / g }'
    fi
fi
echo "load at end:$(uptime | sed 's/.*load average://'); bench.sh took $(( $(date +%s) - start )) s"
