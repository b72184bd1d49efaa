#!/bin/sh
# shard_one.sh — `shard = rows` on an embedding or embedding_bag table (docs/scale.md) in one
# process (census MMoE; the YouTube DNN's bags): the rank
# holds the whole table, so the run must be the unsharded run, bit for bit (the lookups and the
# gradient rows go through ts_param_shard_gather/_scatter instead of the layer's own loops).
# The retrieval head's item table (head.TASK.shard = rows) likewise, sampled and full softmax.
# Also: a value other than none|rows, and shard = rows with pretrained, are refused with the key
# named. Runs in every build (in an MPI build a plain `tessera run` is one process too).
set -eu
b=${top_builddir:-.}
s=${top_srcdir:-.}
tmp=$(mktemp -d /tmp/tessera-shard-XXXXXX)
trap 'rm -rf "$tmp"' EXIT
export OPENBLAS_NUM_THREADS=1
exp="$s/experiments/census_mmoe.ini"
common="train.max_steps=30 train.epochs=1 train.threads=1 --quiet"
fail() { echo "FAIL: $*"; exit 1; }
"$b/tessera" run "$exp" $common --results "$tmp/whole" >"$tmp/whole.log" 2>&1 ||
    { cat "$tmp/whole.log"; fail "the unsharded run"; }
"$b/tessera" run "$exp" $common layer.emb.shard=rows --results "$tmp/rows" >"$tmp/rows.log" 2>&1 ||
    { cat "$tmp/rows.log"; fail "the run with layer.emb.shard=rows"; }
cmp "$tmp/whole/params.bin" "$tmp/rows/params.bin" ||
    fail "shard = rows in one process changed the trained parameters"
m() { grep -E '"(valid|test)\.' "$1" | sort; }
m "$tmp/whole/metrics.json" >"$tmp/m1"
m "$tmp/rows/metrics.json" >"$tmp/m2"
[ -s "$tmp/m1" ] && cmp "$tmp/m1" "$tmp/m2" || fail "the metrics differ"
[ -s "$tmp/rows/predictions.csv" ] || fail "one process with shard = rows wrote no predictions.csv"
echo "one process: shard = rows trains the unsharded model bit for bit ($(grep -c . "$tmp/m1") metrics equal)"
# bad values: a clear error naming the key
if "$b/tessera" run "$exp" $common layer.emb.shard=cols --results "$tmp/bad" >"$tmp/bad.log" 2>&1; then
    fail "shard = cols was accepted"
fi
grep -q "shard = 'cols' is not one of none|rows" "$tmp/bad.log" || { cat "$tmp/bad.log"; fail "no clear error for shard = cols"; }
printf '1 4\n0 0.1 0.2 0.3 0.4\n' >"$tmp/pre.txt"
if "$b/tessera" run "$exp" $common layer.emb.shard=rows layer.emb.pretrained="$tmp/pre.txt" \
        --results "$tmp/pre" >"$tmp/pre.log" 2>&1; then
    fail "shard = rows with pretrained was accepted"
fi
grep -q "shard = rows with pretrained is not supported" "$tmp/pre.log" || { cat "$tmp/pre.log"; fail "no clear error for shard with pretrained"; }
echo "shard = cols and shard = rows with pretrained are refused, naming the key"
# embedding_bag (pooled per row: the YouTube DNN's watch history and genres) is the same
yt="$s/experiments/movielens_youtube_dnn.ini train.max_steps=30 train.epochs=1 train.threads=1 --quiet"
"$b/tessera" run $yt --results "$tmp/yt" >"$tmp/yt.log" 2>&1 || { cat "$tmp/yt.log"; fail "the YouTube DNN run"; }
"$b/tessera" run $yt layer.watch_emb.shard=rows layer.genre_emb.shard=rows --results "$tmp/yt_rows" \
    >"$tmp/yt_rows.log" 2>&1 || { cat "$tmp/yt_rows.log"; fail "the YouTube DNN run with shard = rows"; }
cmp "$tmp/yt/params.bin" "$tmp/yt_rows/params.bin" ||
    fail "embedding_bag with shard = rows in one process changed the trained parameters"
echo "one process: embedding_bag with shard = rows trains the unsharded YouTube DNN bit for bit"
# the retrieval head's item table (head.TASK.shard = rows: V and b): in one process the whole
# table, so the sampled and the full softmax train the unsharded model bit for bit, evaluation
# included; an item tower and a loss plugin under the full softmax are refused
"$b/tessera" run $yt head.next.shard=rows --results "$tmp/yt_head" >"$tmp/yt_head.log" 2>&1 ||
    { cat "$tmp/yt_head.log"; fail "the YouTube DNN run with head.next.shard=rows"; }
cmp "$tmp/yt/params.bin" "$tmp/yt_head/params.bin" ||
    fail "the retrieval head with shard = rows in one process changed the trained parameters (sampled)"
m "$tmp/yt/metrics.json" >"$tmp/m1"
m "$tmp/yt_head/metrics.json" >"$tmp/m2"
grep -q recall "$tmp/m1" && cmp "$tmp/m1" "$tmp/m2" || fail "the retrieval head's metrics differ with shard = rows (sampled)"
cmp "$tmp/yt/item_vectors.bin" "$tmp/yt_head/item_vectors.bin" || fail "one process with head shard = rows wrote other item vectors"
ytf="$s/experiments/movielens_youtube_dnn_full_softmax.ini train.max_steps=5 train.epochs=1 train.threads=1 --quiet"
"$b/tessera" run $ytf --results "$tmp/ytf" >"$tmp/ytf.log" 2>&1 || { cat "$tmp/ytf.log"; fail "the full-softmax YouTube DNN"; }
"$b/tessera" run $ytf head.next.shard=rows --results "$tmp/ytf_rows" >"$tmp/ytf_rows.log" 2>&1 ||
    { cat "$tmp/ytf_rows.log"; fail "the full-softmax YouTube DNN with head.next.shard=rows"; }
cmp "$tmp/ytf/params.bin" "$tmp/ytf_rows/params.bin" ||
    fail "the retrieval head with shard = rows in one process changed the trained parameters (full)"
m "$tmp/ytf/metrics.json" >"$tmp/m1"
m "$tmp/ytf_rows/metrics.json" >"$tmp/m2"
grep -q recall "$tmp/m1" && cmp "$tmp/m1" "$tmp/m2" || fail "the retrieval head's metrics differ with shard = rows (full)"
echo "one process: the retrieval head with shard = rows trains the unsharded model bit for bit (sampled and full softmax)"
if "$b/tessera" run "$s/experiments/movielens_two_tower.ini" train.max_steps=1 head.next.shard=rows \
        --results "$tmp/tt" >"$tmp/tt.log" 2>&1; then
    fail "shard = rows with an item tower was accepted"
fi
grep -q "shard = rows with an item tower (item_tower = .*) is not supported" "$tmp/tt.log" ||
    { cat "$tmp/tt.log"; fail "no clear error for shard = rows with an item tower"; }
if "$b/tessera" run $ytf head.next.shard=rows head.next.loss=softmax_ce --results "$tmp/fl" >"$tmp/fl.log" 2>&1; then
    fail "softmax = full with shard = rows and a loss plugin was accepted"
fi
grep -q "softmax = full with shard = rows computes the softmax cross-entropy across the ranks itself; remove loss =" "$tmp/fl.log" ||
    { cat "$tmp/fl.log"; fail "no clear error for shard = rows with loss ="; }
echo "the retrieval head refuses shard = rows with an item tower, and with loss = under the full softmax"
