#!/bin/sh
# mpi_shard.sh — a sharded embedding table (layer.emb.shard = rows, docs/scale.md) over 2 ranks
# trains the model 1 process trains with the whole table and twice the batch (census MMoE, K
# Adam steps, as tests/mpi_equiv.sh):
#  1. each rank writes params.rank{0,1}-of-2.bin holding about half of the table's rows (and no
#     params.bin); the replicated weights are bit-identical in both, and the table reassembled
#     from them (row r = local row r / 2 of rank r % 2) with them equals the one-process
#     params.bin within float rounding (|a - b| <= 1e-6 + 1e-4 |b|); a run whose lookups came
#     from the wrong rank, or whose gradient rows were not summed, does not (the control: one
#     process with half the batch fails the same comparison);
#  2. every valid./test. metric agrees within 1e-4, and the logged loss too;
#  3. gradient clipping (clip_norm: a norm summed over the shards) stays equivalent;
#  4. every rank checkpoints its shard: a run of 1 epoch resumed to 2 is bit-identical to 2 epochs;
#  5. ranks whose latest checkpoints are of different steps (a kill between two ranks' writes)
#     resume together from the older one, still bit-identical;
#  6. --resume with another number of ranks (3, or 1 process) is refused, naming -np 2;
#  7. embedding_bag sharded (the YouTube DNN), one step against 1 process;
#  8. the retrieval head's item table sharded too, full and sampled softmax, 3 steps against 1 process;
#  9. evaluation over the split table: the same figures as 1 process with the same weights;
# 10. export of a sharded run is refused, naming the fix.
# Run by make check in a --with-mpi build (tests/mpi.am).
set -eu
b=${top_builddir:-.}
s=${top_srcdir:-.}
mpirun=${MPIRUN:-mpirun}
K=${MPI_SHARD_STEPS:-40}
B=${MPI_SHARD_BATCH:-64}
tol="--atol 1e-6 --rtol 1e-4"
tmp=$(mktemp -d /tmp/tessera-mpishard-XXXXXX)
trap 'rm -rf "$tmp"' EXIT
command -v "$mpirun" >/dev/null 2>&1 || { echo "FAIL: $mpirun not found; apt-get install openmpi-bin"; exit 1; }
if [ "$(id -u)" = 0 ]; then
    OMPI_ALLOW_RUN_AS_ROOT=1; OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
    export OMPI_ALLOW_RUN_AS_ROOT OMPI_ALLOW_RUN_AS_ROOT_CONFIRM
fi
OPENBLAS_NUM_THREADS=1; export OPENBLAS_NUM_THREADS
mpi="$mpirun --oversubscribe --mca mpi_yield_when_idle 1 --mca btl self,vader,tcp --mca btl_tcp_if_include lo --mca btl_vader_single_copy_mechanism none -x TESSERA_PLUGIN_PATH -x OPENBLAS_NUM_THREADS"
exp="$s/experiments/census_mmoe.ini"
common="train.max_steps=$K train.epochs=1 train.log_every=10 train.threads=1"
fail() { echo "FAIL: $*"; exit 1; }

run_mpi() {   # DIR [overrides]
    dir=$1; shift
    timeout 300 $mpi -np 2 "$b/tessera" run "$exp" $common train.batch="$B" layer.emb.shard=rows \
        "$@" --results "$tmp/$dir" --quiet >"$tmp/$dir.log" 2>&1 ||
        { cat "$tmp/$dir.log"; fail "mpirun -np 2 tessera run $dir"; }
}
run_one() {   # DIR BATCH [overrides]
    dir=$1; batch=$2; shift 2
    "$b/tessera" run "$exp" $common train.batch="$batch" "$@" --results "$tmp/$dir" --quiet \
        >"$tmp/$dir.log" 2>&1 || { cat "$tmp/$dir.log"; fail "single-process run $dir"; }
}
compare() {   # MPI_DIR ONE_DIR: the shards against one params.bin
    "$b/tests/params_diff" --shards 2 "$tmp/$1/params.rank0-of-2.bin" "$tmp/$1/params.rank1-of-2.bin" \
        "$tmp/$2/params.bin" $tol
}
metrics_agree() {   # MPI_DIR ONE_DIR
    m() { grep -E '"(valid|test)\.' "$1" | tr -d ' ",' | sed 's/:/ /' | sort; }
    m "$tmp/$1/metrics.json" >"$tmp/ma"
    m "$tmp/$2/metrics.json" >"$tmp/mb"
    [ -s "$tmp/mb" ] || fail "no metrics in $tmp/$2/metrics.json"
    join "$tmp/ma" "$tmp/mb" >"$tmp/mab"
    [ "$(wc -l <"$tmp/mab")" = "$(wc -l <"$tmp/mb")" ] || { diff "$tmp/ma" "$tmp/mb"; fail "different metrics"; }
    awk '{ d = $2 - $3; if (d < 0) d = -d; if (!(d <= 1e-4)) { print "FAIL: " $1 ": " $2 " vs " $3; bad = 1 } }
         END { exit bad }' "$tmp/mab" || exit 1
    la=$(tail -n 1 "$tmp/$1/train.csv" | cut -d, -f4)
    lb=$(tail -n 1 "$tmp/$2/train.csv" | cut -d, -f4)
    awk -v a="$la" -v b="$lb" 'BEGIN { d = a - b; if (d < 0) d = -d; exit !(d <= 1e-4 * (1 + b)) }' ||
        fail "logged loss $la (2 ranks, sharded) vs $lb (1 process)"
}

# 1. 2 ranks x B rows with the table split, against 1 process x 2B rows
start=$(date +%s)
run_mpi mpi
echo "2 ranks x $B rows, sharded table, $K steps: $(( $(date +%s) - start )) s"
[ ! -e "$tmp/mpi/params.bin" ] || fail "a sharded 2-rank run wrote params.bin (it holds one shard only)"
run_one one $((2 * B))
run_one half "$B"
rc=0
compare mpi one >"$tmp/diff.txt" || rc=$?
grep "reassembled" "$tmp/diff.txt" || { cat "$tmp/diff.txt"; fail "no table was reassembled from the shards"; }
tail -n 1 "$tmp/diff.txt"
[ "$rc" = 0 ] || { cat "$tmp/diff.txt"; fail "2 ranks with a sharded table did not train the model of 1 process x $((2 * B))"; }
rc=0
compare mpi half >"$tmp/control.txt" || rc=$?
tail -n 1 "$tmp/control.txt"
[ "$rc" = 1 ] || { cat "$tmp/control.txt"; fail "the control (1 process, half the batch) passed (rc $rc): the comparison cannot tell runs apart"; }
# each rank holds half the table: the shards' sizes
r0=$(wc -c <"$tmp/mpi/params.rank0-of-2.bin"); r1=$(wc -c <"$tmp/mpi/params.rank1-of-2.bin"); w=$(wc -c <"$tmp/one/params.bin")
echo "params bytes: rank 0 $r0, rank 1 $r1, one process $w"
[ "$r0" -lt "$w" ] && [ "$r1" -lt "$w" ] || fail "a rank's parameter file is not smaller than the whole model's"
# 2. metrics and loss
metrics_agree mpi one
echo "metrics and logged loss agree within 1e-4"
# 3. clipping by the global norm, summed over the shards
run_mpi clip train.clip_norm=0.05
run_one clip1 $((2 * B)) train.clip_norm=0.05
rc=0
compare clip clip1 >"$tmp/diffc.txt" || rc=$?
tail -n 1 "$tmp/diffc.txt"
[ "$rc" = 0 ] || { cat "$tmp/diffc.txt"; fail "with clip_norm, 2 sharded ranks differ from 1 process"; }
# 4. checkpoints per shard: one epoch, then --resume with epochs = 2, ends bit-identical to a run
#    of 2 epochs (every rank's params file and the metrics)
ck="train.checkpoint_every=20 train.keep_checkpoints=true train.batch=512 layer.emb.shard=rows train.threads=1"
res() {   # DIR EPOCHS [more]: a sharded 2-rank run of the full census training split
    dir=$1; ep=$2; shift 2
    timeout 300 $mpi -np 2 "$b/tessera" run "$exp" $ck train.epochs="$ep" "$@" --results "$tmp/$dir" \
        >"$tmp/$dir.log" 2>&1 || { cat "$tmp/$dir.log"; fail "mpirun -np 2 tessera run $dir (epochs $ep $*)"; }
}
same() {   # DIR: bit-identical to full
    for r in 0 1; do
        cmp "$tmp/full/params.rank$r-of-2.bin" "$tmp/$1/params.rank$r-of-2.bin" ||
            fail "$1: rank $r's parameters differ from the uninterrupted run's"
    done
    grep '"test\.' "$tmp/full/metrics.json" >"$tmp/mf"
    grep '"test\.' "$tmp/$1/metrics.json" >"$tmp/m1"
    cmp "$tmp/mf" "$tmp/m1" || fail "$1: the test metrics differ from the uninterrupted run's"
}
res full 2
[ -e "$tmp/full/checkpoint.rank1-of-2.tsck" ] || fail "rank 1 wrote no checkpoint of its shard"
res part 1
res part 2 --resume
grep -q "resumed from the checkpoint" "$tmp/part.log" || { cat "$tmp/part.log"; fail "the run did not resume"; }
same part
echo "checkpoints per shard: 1 epoch + --resume to 2 epochs is bit-identical to 2 epochs"
# 5. a kill between two ranks' writes, simulated: rank 1's latest checkpoint is one older than
#    rank 0's; the ranks agree on the older step (rank 0 takes its previous file), still identical
res cut 1
mv "$tmp/cut/checkpoint.prev.rank1-of-2.tsck" "$tmp/cut/checkpoint.rank1-of-2.tsck"
res cut 2 --resume
grep -q "going back to step" "$tmp/cut.log" || { cat "$tmp/cut.log"; fail "the ranks did not agree on the older step"; }
same cut
echo "ranks whose latest checkpoints differ by a step resume together from the older one"
# 6. another number of ranks: refused, naming the number to use
res other 1
if timeout 120 $mpi -np 3 "$b/tessera" run "$exp" $ck train.epochs=2 --resume --results "$tmp/other" \
        >"$tmp/np3.log" 2>&1; then
    fail "--resume with 3 ranks of a 2-rank sharded run was accepted"
fi
grep -q "Resume with mpirun -np 2" "$tmp/np3.log" || { cat "$tmp/np3.log"; fail "no clear message for 3 ranks"; }
if "$b/tessera" run "$exp" $ck train.epochs=2 --resume --results "$tmp/other" >"$tmp/np1.log" 2>&1; then
    fail "--resume in one process of a 2-rank sharded run was accepted"
fi
grep -q "Resume with mpirun -np 2" "$tmp/np1.log" || { cat "$tmp/np1.log"; fail "no clear message for 1 process"; }
echo "--resume with 3 ranks or 1 process of a 2-rank sharded run is refused with a message"
# 7. embedding_bag (the YouTube DNN's watch history and genres, pooled by mean) sharded over 2
#    ranks against 1 process with twice the batch, after one Adagrad step: this model under
#    Adagrad amplifies rounding within a few steps (step ~ lr * g / |g| for tiny g), for the
#    unsharded data-parallel run as much (measured: 0.18 apart after 30 steps either way), so one
#    step is what can be compared; half the batch is the control again
yt="$s/experiments/movielens_youtube_dnn_full_softmax.ini train.max_steps=1 train.epochs=1 train.threads=1 --quiet"
timeout 300 $mpi -np 2 "$b/tessera" run $yt train.batch=64 layer.watch_emb.shard=rows \
    layer.genre_emb.shard=rows --results "$tmp/yt" >"$tmp/yt.log" 2>&1 ||
    { cat "$tmp/yt.log"; fail "mpirun -np 2 YouTube DNN with sharded bags"; }
"$b/tessera" run $yt train.batch=128 --results "$tmp/yt1" >"$tmp/yt1.log" 2>&1 || { cat "$tmp/yt1.log"; fail "YouTube DNN, 1 process"; }
"$b/tessera" run $yt train.batch=64 --results "$tmp/yth" >"$tmp/yth.log" 2>&1 || { cat "$tmp/yth.log"; fail "YouTube DNN, 1 process, half batch"; }
ytd() { "$b/tests/params_diff" --shards 2 "$tmp/yt/params.rank0-of-2.bin" "$tmp/yt/params.rank1-of-2.bin" "$tmp/$1/params.bin" $tol; }
rc=0; ytd yt1 >"$tmp/ytd.txt" || rc=$?
[ "$(grep -c reassembled "$tmp/ytd.txt")" = 2 ] || { cat "$tmp/ytd.txt"; fail "the two bag tables were not reassembled"; }
tail -n 1 "$tmp/ytd.txt"
[ "$rc" = 0 ] || { cat "$tmp/ytd.txt"; fail "sharded embedding_bag over 2 ranks differs from 1 process"; }
rc=0; ytd yth >"$tmp/ytc.txt" || rc=$?
[ "$rc" = 1 ] || { cat "$tmp/ytc.txt"; fail "the YouTube control (half the batch) passed (rc $rc)"; }
metrics_agree yt yt1
echo "embedding_bag sharded over 2 ranks: one step equals 1 process x 128, metrics within 1e-4"
# 8. the retrieval head's item table (head.next.shard = rows: V and b) with the watch table,
#    2 ranks x 64 against 1 process x 128, 3 steps, full and sampled softmax. Adagrad's
#    initial_accumulator = 0.1 keeps its first steps from turning rounding into lr * sign(g)
#    (see 7); half the batch is the control. The sampled run scores the negatives rank 0 drew
#    (as one process draws them) on every rank, so it is comparable step for step.
headrun() {   # NAME EXP
    y="$s/experiments/$2 train.max_steps=3 train.epochs=1 train.threads=1 optimizer.initial_accumulator=0.1 --quiet"
    timeout 300 $mpi -np 2 "$b/tessera" run $y train.batch=64 layer.watch_emb.shard=rows head.next.shard=rows \
        --results "$tmp/$1" >"$tmp/$1.log" 2>&1 || { cat "$tmp/$1.log"; fail "mpirun -np 2 $2 with the head's table sharded"; }
    "$b/tessera" run $y train.batch=128 --results "$tmp/$1_1" >"$tmp/$1_1.log" 2>&1 || { cat "$tmp/$1_1.log"; fail "$2, 1 process"; }
    "$b/tessera" run $y train.batch=64 --results "$tmp/$1_h" >"$tmp/$1_h.log" 2>&1 || { cat "$tmp/$1_h.log"; fail "$2, 1 process, half batch"; }
    hd() { "$b/tests/params_diff" --shards 2 "$tmp/$1/params.rank0-of-2.bin" "$tmp/$1/params.rank1-of-2.bin" "$tmp/$2/params.bin" $tol; }
    rc=0; hd "$1" "$1_1" >"$tmp/$1.d" || rc=$?
    [ "$(grep -c reassembled "$tmp/$1.d")" = 3 ] || { cat "$tmp/$1.d"; fail "$1: the watch table, V and b were not reassembled"; }
    tail -n 1 "$tmp/$1.d"
    [ "$rc" = 0 ] || { cat "$tmp/$1.d"; fail "$1: the head's table sharded over 2 ranks differs from 1 process"; }
    rc=0; hd "$1" "$1_h" >"$tmp/$1.c" || rc=$?
    [ "$rc" = 1 ] || { cat "$tmp/$1.c"; fail "$1: the control (half the batch) passed (rc $rc)"; }
    metrics_agree "$1" "$1_1"
    [ ! -e "$tmp/$1/item_vectors.bin" ] || fail "$1: a 2-rank run with the head's table split wrote item_vectors.bin"
}
headrun hfull movielens_youtube_dnn_full_softmax.ini
echo "retrieval head sharded, full softmax: 3 steps equal 1 process x 128, metrics within 1e-4"
headrun hsamp movielens_youtube_dnn.ini
echo "retrieval head sharded, sampled softmax: 3 steps equal 1 process x 128, metrics within 1e-4"
# 9. evaluation over the split table: the same weights give the same figures. Adam with lr =
#    1e-30 changes no weight that is not ~0, so both runs evaluate the initial model: recall@K,
#    ndcg@K and mrr equal to the last digit (merged top-K, ties to the lower id, ranks summed
#    over the ranks), the full-softmax loss (log-sum-exp combined over the ranks, summed in
#    another order) within 1e-9 relative
y="$s/experiments/movielens_youtube_dnn_full_softmax.ini train.max_steps=1 train.epochs=1 train.threads=1 optimizer.type=adam optimizer.lr=1e-30 --quiet"
timeout 300 $mpi -np 2 "$b/tessera" run $y train.batch=64 head.next.shard=rows --results "$tmp/ev" >"$tmp/ev.log" 2>&1 ||
    { cat "$tmp/ev.log"; fail "mpirun -np 2, evaluation with the head's table sharded"; }
"$b/tessera" run $y train.batch=128 --results "$tmp/ev1" >"$tmp/ev1.log" 2>&1 || { cat "$tmp/ev1.log"; fail "evaluation, 1 process"; }
ev() { grep -E '"(valid|test)\.next\.' "$1" | tr -d ' ",' | sed 's/:/ /' | sort; }
ev "$tmp/ev/metrics.json" >"$tmp/eva"; ev "$tmp/ev1/metrics.json" >"$tmp/evb"
grep -v full_softmax_loss "$tmp/eva" >"$tmp/eva.k"; grep -v full_softmax_loss "$tmp/evb" >"$tmp/evb.k"
[ "$(grep -c recall "$tmp/evb.k")" -ge 2 ] && cmp "$tmp/eva.k" "$tmp/evb.k" ||
    { diff "$tmp/eva" "$tmp/evb"; fail "the evaluation of the split table differs from one process's"; }
join "$tmp/eva" "$tmp/evb" | awk '/full_softmax_loss/ { n++; d = $2 - $3; if (d < 0) d = -d; if (!(d <= 1e-9 * $3)) { print "FAIL: " $0; bad = 1 } }
    END { exit bad || n != 2 }' || fail "the full-softmax loss over the split table differs from one process's"
echo "evaluation over the split table: $(wc -l <"$tmp/evb.k") figures equal to the last digit, the loss within 1e-9"
# 10. export (and recommend, predict: they load params.bin) of a sharded run: refused, naming the fix
if "$b/tessera" export "$tmp/ev" --out "$tmp/evx" >"$tmp/evx.log" 2>&1; then fail "export of a 2-rank sharded run was accepted"; fi
grep -q "split its tables across 2 ranks (shard = rows.*run the experiment again in one process" "$tmp/evx.log" ||
    { cat "$tmp/evx.log"; fail "no clear message for export of a sharded run"; }
echo "export of a sharded run is refused with a message"
# 11. a rank without rows in a step still takes part in the exchanges: census MMoE has 59,857
#     training rows, so with batch 1247 on 2 ranks each epoch's last step has 1 row and rank 1
#     none. It must run its layers over no rows (the exchange is collective), not hang.
timeout 120 $mpi -np 2 "$b/tessera" run "$exp" train.epochs=2 train.batch=1247 train.threads=1 \
    layer.emb.shard=rows --results "$tmp/zero" --quiet >"$tmp/zero.log" 2>&1 ||
    { cat "$tmp/zero.log"; fail "a step with no rows on one rank (sharded table): the job failed or hung"; }
[ "$(tail -n 1 "$tmp/zero/train.csv" | cut -d, -f3)" = 119714 ] || fail "two epochs did not see 2 x 59,857 rows"
echo "a step with no rows on one rank: the sharded exchange goes on, two epochs end"
