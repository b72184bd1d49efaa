#!/bin/sh
# bench.sh — training throughput of tessera against a tuned PyTorch reference of the same model,
# same batch, the same number of threads each (BENCH_THREADS, default 2). Each family runs
# BENCH_ROUNDS rounds (default 3), tessera and the reference alternating within a round, and
# the table gives the best round of each, their ratio, and each one's peak RSS (the largest over
# the rounds, /usr/bin/time). Then this machine's sgemm peak and the fraction of it CNN-DSSM's
# training reaches. `make bench` runs it; bench/README.md says what each line measures and
# records figures.
#
# tessera runs each family with BENCH_THREADS `train.threads`, its fastest way to use them
# (docs/ini.md): every family but the DSSM also with `train.replicas` = BENCH_THREADS (copies of
# the graph's layers training the parts of each batch, the heads on the whole batch: the same
# training up to float rounding); the DSSM runs its two towers' layers at once instead (the
# same figures as one thread, bit for bit).
#
# The PyTorch references run tuned the way a practitioner would tune them on a small CPU box
# (issue 17): glibc malloc keeps freed memory instead of returning it and faulting fresh pages in
# for every temporary (MALLOC_TRIM_THRESHOLD_=17179869184 MALLOC_MMAP_THRESHOLD_=33554432),
# OpenBLAS single-threaded under torch's own BENCH_THREADS intra-op threads
# (OPENBLAS_NUM_THREADS=1, torch.set_num_threads(BENCH_THREADS)), and each script reports the
# faster of sparse and dense embedding gradients. BENCH_UNTUNED=1 adds one untuned reference
# run per family (plain environment, OPENBLAS_NUM_THREADS unset), in its own labelled column.
#
# Usage: bench.sh BUILDDIR SRCDIR
#   BENCH_ONLY="census_mmoe youtube_dnn"   only these rows (names as in the table; lstm_dssm
#                                          also gives lstm_dssm_vs_nn.LSTM)
#   BENCH_REF_SECONDS=8                    the text/YouTube references' timing cap per variant
# Per-round figures go to $TMPDIR/tessera-bench/rounds.txt.
set -eu
b=${1:-.}
s=${2:-.}
py=/usr/bin/python3
threads=${BENCH_THREADS:-2}
rounds=${BENCH_ROUNDS:-3}
untuned=${BENCH_UNTUNED:-0}
only=${BENCH_ONLY:-}
refsec=${BENCH_REF_SECONDS:-8}
out=${TMPDIR:-/tmp}/tessera-bench
mkdir -p "$out"
log=$out/rounds.txt
: >"$log"
start=$(date +%s)
have_torch=no
"$py" -c 'import torch' 2>/dev/null && have_torch=yes
have_time=no
[ -x /usr/bin/time ] && have_time=yes
tuned_env="MALLOC_TRIM_THRESHOLD_=17179869184 MALLOC_MMAP_THRESHOLD_=33554432 OPENBLAS_NUM_THREADS=1"
echo "tessera: train.threads=$threads; train.replicas=$threads for the census models, cnn_dssm and lstm_dssm"
echo "machine: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //'); $threads thread(s) each; best of $rounds alternating rounds"
echo "PyTorch tuned: $tuned_env, torch.set_num_threads($threads), faster of sparse/dense embedding gradients"
echo "load at start:$(uptime | sed 's/.*load average://')"
[ "$have_torch" = yes ] || echo "PyTorch not found (apt-get install python3-torch): tessera figures only"
[ "$have_time" = yes ] || echo "/usr/bin/time not found (apt-get install time): no peak RSS"
printf '%-22s %5s %12s %12s %6s %12s %8s %8s  %s\n' model batch tessera_ex/s torch_tuned ratio torch_untuned \
    ts_rssMB pt_rssMB pytorch_variant

# fmt0 X — X rounded to an integer, "-" kept
fmt0() { awk -v a="$1" 'BEGIN { if (a == "-" || a == "") print "-"; else printf "%.0f", a }'; }
# maxof A B — the larger, "-" counting as nothing
maxof() { awk -v a="$1" -v b="$2" 'BEGIN { if (a == "-") print b; else if (b == "-") print a; else print (b + 0 > a + 0 ? b : a) }'; }

# row NAME BATCH TESSERA TUNED UNTUNED TS_RSS_KB PT_RSS_KB VARIANT — one line of the table
row() {
    ratio=-
    case "$3$4" in *-*|'') ;; *) ratio=$(awk -v a="$3" -v b="$4" 'BEGIN { printf "%.2f", a / b }') ;; esac
    mb() { awk -v a="$1" 'BEGIN { if (a == "-" || a == "") print "-"; else printf "%.0f", a / 1024 }'; }
    printf '%-22s %5s %12s %12s %6s %12s %8s %8s  %s\n' "$1" "$2" "$(fmt0 "$3")" "$(fmt0 "$4")" "$ratio" \
        "$(fmt0 "$5")" "$(mb "$6")" "$(mb "$7")" "$8"
}

# timed FILE CMD... — runs CMD, its peak RSS in kB written to FILE ("-" without /usr/bin/time)
timed() {
    f=$1; shift
    if [ "$have_time" = yes ]; then /usr/bin/time -f '%M' -o "$f" "$@"; else echo - >"$f"; "$@"; fi
}

# tessera_eps NAME EXPERIMENT OVERRIDES... — runs tessera, prints train.run.examples_per_sec;
# its peak RSS goes to $out/NAME.rss
tessera_eps() {
    name=$1; exp=$2; shift 2
    OPENBLAS_NUM_THREADS=$threads timed "$out/$name.rss" "$b/tessera" run "$s/experiments/$exp" "$@" \
        train.patience=0 train.threads=$threads --results "$out/$name" --overwrite 2>"$out/$name.log" \
        || { echo "$name: tessera run failed, see $out/$name.log" >&2; echo -; return 0; }
    grep '"train.run.examples_per_sec"' "$out/$name/metrics.json" | sed 's/.*: //; s/,$//'
}

# ref FILE RSSFILE SCRIPT ARGS... — a tuned reference run, output to FILE
ref() {
    f=$1; r=$2; shift 2
    if [ "$have_time" = yes ]; then set -- /usr/bin/time -f '%M' -o "$r" "$py" "$@"; else echo - >"$r"; set -- "$py" "$@"; fi
    # shellcheck disable=SC2086
    env $tuned_env "$@" >"$f" 2>&1 || { echo "$* failed, see $f" >&2; echo - >"$r"; }
}
# ref_untuned FILE SCRIPT ARGS... — the same, plain environment
ref_untuned() {
    f=$1; shift
    env -u OPENBLAS_NUM_THREADS -u MALLOC_TRIM_THRESHOLD_ -u MALLOC_MMAP_THRESHOLD_ "$py" "$@" >"$f" 2>&1 \
        || echo "$* failed, see $f" >&2
}

# best NAME FILE — "VALUE VARIANT" of the "NAME best_..._per_sec VALUE VARIANT" line, or "- -"
best() { v=$(awk -v n="$1" '$1 == n && $2 ~ /^best_/ { print $3, $4 }' "$2" 2>/dev/null); echo "${v:-- -}"; }

want() { [ -z "$only" ] && return 0; for w in $only; do [ "$w" = "$1" ] && return 0; done; return 1; }
rss() { v=$(tail -n 1 "$1" 2>/dev/null); case "$v" in ''|*[!0-9]*) echo -;; *) echo "$v";; esac; }

# family NAME BATCH TESSERA_EXP "TESSERA OVERRIDES" REFNAME REFSCRIPT REFARGS...
# runs the rounds and prints the row (and for lstm_dssm the nn.LSTM row)
family() {
    name=$1; batch=$2; exp=$3; ov=$4; rn=$5; shift 5
    bts=-; bpt=-; bvar=-; bnn=-; bnnvar=-; tsr=-; ptr=-; un=-
    i=1
    while [ $i -le "$rounds" ]; do
        # shellcheck disable=SC2086
        ts=$(tessera_eps "$name" "$exp" $ov train.batch="$batch")
        tsr=$(maxof "$tsr" "$(rss "$out/$name.rss")")
        bts=$(maxof "$bts" "$ts")
        line="$name round $i load$(uptime | sed 's/.*load average://' | cut -d, -f1) tessera $ts"
        if [ "$have_torch" = yes ]; then
            ref "$out/torch_$name.$i.txt" "$out/torch_$name.rss" "$@"
            ptr=$(maxof "$ptr" "$(rss "$out/torch_$name.rss")")
            pv=$(best "$rn" "$out/torch_$name.$i.txt")
            v=${pv%% *}
            if [ "$v" != - ] && { [ "$bpt" = - ] || awk -v a="$v" -v b="$bpt" 'BEGIN { exit !(a > b) }'; }; then
                bpt=$v; bvar=${pv#* }
            fi
            line="$line torch_tuned $pv"
            if [ "$rn" = lstm_dssm ]; then
                pv=$(best lstm_dssm_nn "$out/torch_$name.$i.txt"); v=${pv%% *}
                if [ "$v" != - ] && { [ "$bnn" = - ] || awk -v a="$v" -v b="$bnn" 'BEGIN { exit !(a > b) }'; }; then
                    bnn=$v; bnnvar=${pv#* }
                fi
                line="$line nn.LSTM $pv"
            fi
            if [ "$untuned" = 1 ] && [ $i -eq 1 ]; then
                ref_untuned "$out/torch_${name}_untuned.txt" "$@"
                pv=$(best "$rn" "$out/torch_${name}_untuned.txt"); un=${pv%% *}
                line="$line torch_untuned $pv"
            fi
        fi
        echo "$line" >>"$log"
        i=$((i + 1))
    done
    row "$name" "$batch" "$bts" "$bpt" "$un" "$tsr" "$ptr" "$bvar"
    [ "$rn" = lstm_dssm ] && row "lstm_dssm_vs_nn.LSTM" "$batch" "$bts" "$bnn" - - - "$bnnvar: no peepholes, a cheaper model"
    return 0
}

# Census (torch_census.py prints the faster of SparseAdam and dense Adam: --sparse 1,0).
census() {  # name experiment torch_model batch
    want "$1" || return 0
    family "$1" "$4" "$2" "train.epochs=3 train.replicas=$threads" "$3" "$s/bench/torch_census.py" \
        --data "$s/data/census/census-income.test.gz" --model "$3" --batch "$4" --epochs 2 \
        --threads "$threads" --sparse 1,0
}
census census_mlp census_income_mlp.ini mlp 512
census census_shared_bottom census_shared_bottom.ini shared_bottom 1024
census census_mmoe census_mmoe.ini mmoe 1024

# Semantic matching on WordNet, batch 256 (pairs/s): tessera trains one epoch of the 110,659
# training pairs (valid/test cut to 500 so the evaluations stay short); the reference times
# 10,240 pairs per variant (BENCH_REF_SECONDS at most) after 5 untimed steps, and reports its
# fastest.
for m in dssm cnn_dssm lstm_dssm; do
    want $m || continue
    # the DSSM's two towers are alike: running them at once beats splitting the batch; the
    # CNN's and the LSTM's query towers outweigh their document towers (16 words against 3)
    rep=$threads; [ $m = dssm ] && rep=1
    family "$m" 256 "wordnet_$m.ini" "train.epochs=1 data.test_size=500 data.valid_size=500 train.replicas=$rep" "$m" \
        "$s/bench/torch_text.py" --data "$s/data/wordnet/wordnet30_gloss_pairs.tsv.gz" \
        --model $m --batch 256 --threads "$threads" --pairs 10240 --max-seconds "$refsec"
    [ $m = cnn_dssm ] && cnn_ts=$(awk '$1 == "cnn_dssm" { for (i = 1; i < NF; i++) if ($i == "tessera") print $(i + 1) }' "$log" | sort -g | tail -n 1)
done

# YouTube DNN on MovieLens ml-latest-small, batch 256: tessera 2 epochs (198,012 examples); the
# reference 51,200 examples per variant (BENCH_REF_SECONDS at most) after 10 untimed steps.
if want youtube_dnn; then
    family youtube_dnn 256 movielens_youtube_dnn.ini "train.epochs=2" youtube_dnn \
        "$s/bench/torch_youtube.py" --data "$s/data/movielens/ml-latest-small" --batch 256 \
        --threads "$threads" --examples 51200 --max-seconds "$refsec"
fi

# The roof: sgemm GFLOP/s on 2048^3 products, and CNN-DSSM's counted flops per pair (the
# conv and dense products and the cosine sgemm, forward and backward; see flops_per_pair in
# torch_text.py) times its best pairs/s, as a fraction of it.
if [ -x "$b/bench/sgemm_peak" ] && [ -z "$only" ]; then
    peak=$("$b/bench/sgemm_peak" --threads "$threads" --n 2048 | awk '{ print $3 }')
    echo "sgemm peak: $peak GFLOP/s ($threads thread(s), 2048 x 2048 x 2048)"
    flops=$("$py" "$s/bench/torch_text.py" --data "$s/data/wordnet/wordnet30_gloss_pairs.tsv.gz" \
        --model cnn_dssm --flops 2>/dev/null | awk '{ print $3 }') || flops=
    if [ -n "$flops" ] && [ -n "${cnn_ts:-}" ] && [ "$cnn_ts" != - ]; then
        awk -v f="$flops" -v p="$cnn_ts" -v g="$peak" 'BEGIN { printf "cnn_dssm: %.1f MFLOP/pair x %.0f pairs/s = %.1f GFLOP/s = %.0f%% of the sgemm peak\n", f / 1e6, p, f * p / 1e9, 100 * f * p / 1e9 / g }'
    fi
fi
echo "load at end:$(uptime | sed 's/.*load average://'); bench.sh took $(( $(date +%s) - start )) s; rounds in $log"
