#!/bin/sh
# holdout.sh — [data] select_fraction (core/holdout.c) end to end on a csv file of random labels
# that a model can only memorise: an embedding of a row's own id (or of its user's id) and a
# logit. A run trains on the training rows the selection split left: its training loss falls to
# ~0 (it memorises every row it trains on), and the held rows score at chance (select AUC ~0.5),
# which they would not (AUC ~1) had they been trained on. Held out by user (select_by), users'
# labels memorised through their id score at chance too; held out by rows, the same users' other
# rows trained, and the held rows score ~1: the check can tell the two apart. metrics.json says
# how many rows trained and how many were held; the steps count only the rows that trained.
# movielens with select_by = user (whole users held out) builds, trains and reports select.*.
# Bad input (a fraction outside (0, 1), select_seed or select_by alone, a misspelt key, a
# select_by field that is not one id per row) is refused with a sentence naming FILE:LINE.
set -u
b=${top_builddir:-.}
T="$b/tessera"
T=$(cd "$(dirname "$T")" && pwd)/$(basename "$T")
src=$(cd "${top_srcdir:-.}" && pwd)
tmp=$(mktemp -d /tmp/tessera-holdout-XXXXXX)
trap 'rm -rf "$tmp"' EXIT
cd "$tmp" || exit 1
failures=0
bad() { echo "FAIL: $*"; failures=$((failures + 1)); }
fig() { sed -n "s/^ *\"$2\": \([-0-9.e]*\).*/\1/p" "$1/metrics.json"; }
# below A B: A < B as numbers
below() { awk -v a="$1" -v b="$2" 'BEGIN { exit !(a + 0 < b + 0) }'; }

# 1000 rows, labels drawn at random per row (rows.csv) or per user of 10 rows (users.csv)
awk 'BEGIN { srand(7); print "id,y"; for (i = 0; i < 1000; i++) printf "r%d,%d\n", i, rand() < 0.5 }' >rows.csv
awk 'BEGIN { srand(11); print "user,y"; for (u = 0; u < 100; u++) lab[u] = rand() < 0.5;
             for (i = 0; i < 1000; i++) { u = (i * 37) % 100; printf "u%d,%d\n", u, lab[u] } }' >users.csv
experiment() {   # experiment FILE COLUMN EXTRA-DATA-LINE
    cat <<INI
[experiment]
name = memo
seed = 1
[data]
type = csv
path = $1
categorical = $2
labels = y
split = 0.8, 0.1, 0.1
$3
[layer.emb]
type = embedding
input = categorical
dim = 8
scale = 0.5
[layer.out]
type = dense
input = emb
units = 1
[head.y]
type = binary
input = out
label = y
loss = bce
[optimizer]
type = adam
lr = 0.05
[train]
epochs = 30
batch = 32
INI
}

# ---- rows held out of training: memorised rows train, held rows at chance --------------------
experiment rows.csv id "select_fraction = 0.25" >rows.ini
if "$T" run rows.ini --results r1 >r1.log 2>&1; then
    tr=$(fig r1 train.data.train_rows) sr=$(fig r1 train.data.select_rows) st=$(fig r1 train.run.steps)
    [ "$tr" = 600 ] && [ "$sr" = 200 ] || bad "800 training rows, 0.25 held: got $tr trained, $sr held"
    # 30 epochs of ceil(600 / 32) = 19 steps: the held rows are not in the epochs
    [ "$st" = 570 ] || bad "steps $st, expected 570 (30 epochs of the 600 rows that train)"
    last=$(tail -n 1 r1/train.csv | cut -d, -f4)
    below "$last" 0.01 || bad "the model did not memorise its training rows (last loss $last)"
    a=$(fig r1 select.y.auc)
    [ -n "$a" ] || bad "no select.y.auc in metrics.json"
    below "$a" 0.7 && below 0.3 "$a" || bad "held rows scored AUC $a: they were trained on"
    grep -q "select y.auc = " r1.log || bad "the log does not give the selection figures"
    [ -n "$(fig r1 valid.y.auc)" ] && [ -n "$(fig r1 test.y.auc)" ] || bad "valid/test figures missing"
else
    bad "run with select_fraction failed:"; sed 's/^/    /' r1.log
fi
# the same run again: the same rows held (the draw is select_seed's, not the experiment's seed)
if "$T" run rows.ini experiment.seed=5 --results r1b >r1b.log 2>&1; then
    [ "$(fig r1b train.data.select_rows)" = 200 ] || bad "another seed held another count"
else
    bad "run with another seed failed"; sed 's/^/    /' r1b.log
fi

# ---- held out by user: at chance; held by rows, the users' other rows trained: ~1 ------------
experiment users.csv user "select_fraction = 0.2
select_by = categorical" >byuser.ini
experiment users.csv user "select_fraction = 0.2" >byrow.ini
if "$T" run byuser.ini --results r2 >r2.log 2>&1 && "$T" run byrow.ini --results r3 >r3.log 2>&1; then
    a2=$(fig r2 select.y.auc) a3=$(fig r3 select.y.auc)
    echo "select AUC: held users $a2, held rows of trained users $a3, held rows (rows.csv) $(fig r1 select.y.auc)"
    below "$a2" 0.75 || bad "held users scored AUC $a2: their users were trained on"
    below 0.95 "$a3" || bad "held rows of trained users scored AUC $a3, expected ~1 (the check cannot see a leak)"
    n2=$(fig r2 train.data.select_rows)
    [ $((n2 % 1)) = 0 ] && [ "$n2" -gt 0 ] || bad "select_by held $n2 rows"
else
    bad "runs with select_by failed:"; sed 's/^/    /' r2.log r3.log 2>/dev/null
fi

# ---- a reader whose training rows are positions in users' histories: whole users held out -----
# (the group field is read before the graph is built; the run must still build and evaluate)
if "$T" run "$src/experiments/movielens_youtube_dnn.ini" data.select_fraction=0.1 data.select_by=user \
        train.epochs=1 train.max_steps=20 --results ml >ml.log 2>&1; then
    [ -n "$(fig ml select.next.mrr)" ] || bad "movielens by user: no select.next.mrr"
    [ "$(fig ml train.data.select_rows)" -gt 0 ] 2>/dev/null || bad "movielens by user: no rows held"
else
    bad "movielens with select_by = user failed:"; tail -3 ml.log | sed 's/^/    /'
fi

# ---- bad input ------------------------------------------------------------------------------
refused() {   # refused WHAT NEEDLE DATA-LINES
    experiment rows.csv id "$3" >bad.ini
    if "$T" run bad.ini --results rb >out.txt 2>&1; then bad "$1: accepted"; return; fi
    grep -q -- "$2" out.txt || { bad "$1: no '$2' in:"; sed 's/^/    /' out.txt; }
    grep -q "bad.ini:" out.txt || { bad "$1: the message names no FILE:LINE"; sed 's/^/    /' out.txt; }
}
refused "fraction 1.5" "between 0 and 1" "select_fraction = 1.5"
refused "fraction 1" "between 0 and 1" "select_fraction = 1"
refused "fraction -0.1" "between 0 and 1" "select_fraction = -0.1"
refused "fraction text" "select_fraction" "select_fraction = most"
refused "fraction of no row" "at least one" "select_fraction = 0.0001"
refused "select_seed alone" "select_fraction is not" "select_seed = 3"
refused "select_by alone" "select_fraction is not" "select_by = categorical"
refused "misspelt key" "select_fraction" "select_fracton = 0.1"
refused "select_by not a field" "select_by = nope" "select_fraction = 0.1
select_by = nope"
refused "select_by a label" "I32 field" "select_fraction = 0.1
select_by = y"
# a streamed dataset reads its training rows in blocks, never by number: no selection split
if "$T" run "$src/experiments/census_mmoe.ini" data.stream=true data.select_fraction=0.1 \
        train.epochs=1 --results st >st.log 2>&1; then
    bad "select_fraction with stream = true: accepted"
else
    grep -q "does not offer" st.log || { bad "stream + select_fraction:"; sed 's/^/    /' st.log; }
fi

[ "$failures" = 0 ] || { echo "holdout.sh: $failures failure(s)"; exit 1; }
echo "holdout.sh: ok"
