#!/bin/sh
# report.sh — the report of a real `tessera compare` (core/report.c, plots.c): a suite of two
# small nets that differ in two keys and a matching pair with a BM25 head on generated text,
# 2 seeds each. The title is the suite's name; the "what differs" tables list exactly the
# differing keys; the runs table gives the parameter counts the layers' shapes imply;
# summary.csv holds the validation figures; BM25 appears once; every PNG has an SVG beside it
# that parses as XML; the validation panel of the matching pair is drawn (match.mrr per epoch) with
# BM25 once; `tessera plot` labels runs by experiment and seed, and by folder where those clash.
set -eu
b=$(cd "${top_builddir:-.}" && pwd)
command -v gnuplot >/dev/null 2>&1 || { echo "SKIP: gnuplot is not installed"; exit 77; }
tmp=$(mktemp -d "${TMPDIR:-/tmp}/tessera-report-XXXXXX")
trap '[ -n "${KEEP_TMP:-}" ] || rm -rf "$tmp"' EXIT   # KEEP_TMP=1 keeps it to look at
fail() { echo "FAIL: $*"; exit 1; }
cd "$tmp"

# ---- the suite --------------------------------------------------------------------------------
d=20
for m in a b; do
    units=4; lr=0.01
    [ "$m" = b ] && { units=8; lr=0.02; }
    cat >"$m.ini" <<EOF
[experiment]
name = small_$m
seed = 1
[data]
type = synthetic_mmoe
rows = 600, 200, 200
d = $d
[layer.h]
type = dense
input = x
units = $units
activation = relu
[layer.out]
type = dense
input = h
units = 1
[head.y1]
type = regression
input = out
label = y1
loss = mse
[optimizer]
type = adam
lr = $lr
[train]
epochs = 3
batch = 64
EOF
done
# query/answer groups: the relevant answer shares a word with its query, 3 others are random
for sp in train dev test; do
    n=60; off=0
    [ "$sp" = dev ] && { n=20; off=1000; }
    [ "$sp" = test ] && { n=20; off=2000; }
    awk -v n=$n -v off=$off 'BEGIN {
        srand(7 + off)
        split("red green blue cat dog fish bird tree rock sand wind rain sun moon star lake hill road door wall", W, " ")
        print "id\tquestion\tanswer\trel"
        for (i = 0; i < n; i++) {
            q = off + i; a = W[1 + q % 20]; b = W[1 + (q * 7 + 3) % 20]
            printf "q%d\twhat about %s %s\tthe %s %s note\t1\n", q, a, b, a, W[1 + int(rand() * 20)]
            for (j = 0; j < 3; j++)
                printf "q%d\twhat about %s %s\tthe %s %s note\t0\n", q, a, b, W[1 + int(rand() * 20)], W[1 + int(rand() * 20)]
        } }' >"qa-$sp.tsv"
done
for m in small wide; do
    dim=8; [ "$m" = wide ] && dim=16
    cat >"m_$m.ini" <<EOF
[experiment]
name = match_$m
seed = 1
[data]
type = textpairs
format = tsv
path = qa-train.tsv
valid_path = qa-dev.tsv
test_path = qa-test.tsv
query_column = question
doc_column = answer
label_column = rel
group_column = id
[layer.q_vec]
type = embedding_bag
input = query
dim = $dim
[layer.d_vec]
type = embedding_bag
input = doc
dim = $dim
[head.match]
type = match
input = q_vec, d_vec
label = label
loss = softmax_ce
rank = group
negatives = 2
[head.bm25]
type = bm25
input = query_words, doc_words
label = label
weight = 0
rank = group
[optimizer]
type = adam
lr = 0.05
[train]
epochs = 3
batch = 16
early_stop = match.mrr
EOF
done
printf '[suite]\nname = Report test suite\ndescription = two nets and a matching pair\nexperiments = a.ini, b.ini, m_small.ini, m_wide.ini\n' >suite.ini
"$b/tessera" compare suite.ini --seeds 2 --jobs 2 --out "$tmp/out" >out.log 2>err.log ||
    { cat err.log; fail "compare exited $?"; }
md=out/report.md

# ---- report.md -----------------------------------------------------------------------------------
[ "$(sed -n 1p $md)" = "# Report test suite" ] || { head -3 $md; fail "the title is not the suite's name"; }
grep -Eq '^- tessera [^,]+, commit ([0-9a-f]{7,}( \(with uncommitted changes\))?|unknown)$' $md ||
    { grep -n 'commit' $md; fail "no commit line"; }
grep -q '^- Machine: .*core' $md || fail "no machine line"
# the rows of the "what differs" table of data group $1, without its header
differs() {
    awk -v g="$1" '/^## Data/ { n++ } n == g && /^\*\*What differs\*\*/ { on = 1; next }
        on && /^\| / { if (++k > 1) print; next } on && /^\|---/ { next } on && k { exit }' $md
}
[ "$(differs 1)" = "| layer.h.units | 4 | 8 |
| optimizer.lr | 0.01 | 0.02 |" ] || { differs 1; fail "what differs between small_a and small_b"; }
[ "$(differs 2)" = "| layer.d_vec.dim | 8 | 16 |
| layer.q_vec.dim | 8 | 16 |" ] || { differs 2; fail "what differs between the matching pair"; }
# a dense layer of u units on x (d wide) then one of 1: (d + 1) u + u + 1 weights
grep -qx "| parameters | $(( (d + 1) * 4 + 5 )) | $(( (d + 1) * 8 + 9 )) |" $md ||
    { grep -n parameters $md; fail "parameter counts"; }
grep -Eq '^\| best epoch \| [0-9], [0-9] \| [0-9], [0-9] \|$' $md || fail "best epochs"
# BM25: the same in every run, so once in the baselines table (no column of its own), and
# beside it only as the "b" of the t-tests against the baselines
[ "$(grep -c 'bm25\.mrr' $md | tr -d ' ')" = "$(( 1 + $(grep -c '^| [a-z_.@0-9]* | [^|]* | bm25\.mrr |' $md) ))" ] ||
    { grep -n bm25 $md; fail "bm25.mrr is not shown once"; }
grep -Eq '^\| bm25\.mrr \| [0-9.]+ \| 4 \|$' $md || fail "the baselines table lacks bm25.mrr over 4 runs"
grep -Eq '^\| match\.mrr \| [0-9.]+ ± [0-9.]+ \| [0-9.]+ ± [0-9.]+ \|$' $md || fail "no match.mrr row"

# ---- summary.csv: validation figures beside the test figures, and the runs' costs ---------------
for e in small_a small_b; do
    [ "$(grep -c "^$e,synthetic_mmoe,valid\.y1\.mse,2," out/summary.csv)" = 1 ] || fail "summary.csv: $e valid.y1.mse"
    [ "$(grep -c "^$e,synthetic_mmoe,train\.run\.params,2," out/summary.csv)" = 1 ] || fail "summary.csv: $e params"
done
[ "$(grep -c '^match_[a-z]*,.*,valid\.match\.mrr,2,' out/summary.csv)" = 2 ] || fail "summary.csv: valid.match.mrr"

# ---- plots: an SVG beside every PNG, well-formed XML -----------------------------------------------
npng=0
for f in $(sed -n 's/^!\[.*\](plots\/\([^)]*\.png\))$/\1/p' $md); do
    s=${f%.png}.svg
    [ -s "out/plots/$s" ] || fail "plots/$s is missing"
    grep -qF "(vector: [$s](plots/$s))" $md || fail "report.md does not link plots/$s"
    npng=$((npng + 1))
done
[ "$npng" -ge 6 ] || fail "only $npng plots in report.md"
[ "$(ls out/plots/*.svg | wc -l)" = "$(ls out/plots/*.png | wc -l)" ] || fail "PNG and SVG counts differ"
"$b/tests/xml_wellformed" out/plots/*.svg || fail "an SVG is not well-formed XML"
texts() { sed -n 's/^[[:space:]]*<text[^>]*>\(.*\)<\/text>$/\1/p' "$1"; }
texts out/plots/loss_1.svg | grep -qx 'validation y1.mse per epoch' || fail "loss_1: no validation panel"
texts out/plots/loss_2.svg | grep -qx 'validation match.mrr per epoch' || fail "loss_2: the matching pair's validation panel is empty"
[ "$(texts out/plots/loss_2.svg | grep -cx 'bm25 (baseline)')" = 1 ] || fail "loss_2: bm25 is not drawn once"

# ---- tessera plot: runs by experiment and seed; clashing ones by their folders --------------------
r=out/runs
"$b/tessera" plot $r/small_a/seed-1 $r/small_a/seed-2 $r/small_b/seed-1 --out p.png >/dev/null 2>p.err ||
    { cat p.err; fail "tessera plot"; }
"$b/tests/xml_wellformed" p.svg || fail "p.svg is not well-formed XML"
for l in 'small_a seed 1' 'small_a seed 2' 'small_b seed 1'; do
    texts p.svg | grep -qx "$l" || { texts p.svg; fail "tessera plot: no label '$l'"; }
done
texts p.svg | grep -q 'seed-1' && fail "tessera plot labels a run seed-1"
mkdir -p copies/one copies/two
cp -R $r/small_a/seed-1 copies/one/run
cp -R $r/small_a/seed-1 copies/two/run
"$b/tessera" plot copies/one/run copies/two/run --out q.png >/dev/null 2>p.err || { cat p.err; fail "tessera plot of copies"; }
texts q.svg | grep -qx 'one/run' && texts q.svg | grep -qx 'two/run' || { texts q.svg; fail "clashing labels"; }
if "$b/tessera" plot copies/one/run --out q.svg 2>p.err; then fail "--out x.svg accepted"; fi
grep -q "give the PNG's name" p.err || { cat p.err; fail "message for --out x.svg"; }
echo "report: title, what differs, runs, baselines once, valid.* in summary.csv, $npng plots with SVGs, plot labels"
