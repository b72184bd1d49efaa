#!/bin/sh
# compare_inputs.sh — what `tessera compare` does with odd comparisons: two experiments of one
# name (refused, naming both files), the same file listed twice (run once, with a note), suites
# that include each other or nest too deep (refused, naming the cycle), a second --sweep, too
# many, empty, repeated or over-long sweep values (refused with the limit), sweep values and
# experiment names that would leave the output folder (escaped or refused), and the lists that
# used to be cut silently (65 overrides, a --quick list over 1 KiB): each reaches the run.
# Not here: re-running changed experiments (compare_cache.sh) and signals (compare_signal.sh).
set -eu
b=${top_builddir:-.}
tmp=$(mktemp -d /tmp/tessera-cmpin-XXXXXX)
trap 'rm -rf "$tmp"' EXIT
fails=0
fail() { echo "FAIL: $*"; [ -f "$tmp/err" ] && sed 's/^/    /' "$tmp/err" | head -20; fails=$((fails + 1)); }

exp() {   # exp FILE NAME: a tiny experiment (a fraction of a second)
    cat >"$1" <<INI
[experiment]
name = $2
seed = 1
[data]
type = synthetic_mmoe
rows = 300, 100, 100
[layer.h]
type = dense
input = x
units = 4
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
lr = 0.01
[train]
epochs = 1
batch = 64
INI
}
# cmp EXPECTED_STATUS ARGS...: runs compare, stderr to $tmp/err; reports an unexpected status
cmp() {
    want=$1
    shift
    set +e
    "$b/tessera" compare "$@" >"$tmp/out.txt" 2>"$tmp/err"
    got=$?
    set -e
    [ "$got" = "$want" ] || { fail "compare $* exited $got, expected $want"; return 1; }
    return 0
}
has() { grep -qF -- "$1" "$tmp/err" || fail "expected the message '$1'"; }

mkdir -p "$tmp/e" "$tmp/s"
exp "$tmp/e/a.ini" small_a
exp "$tmp/e/b.ini" small_b
exp "$tmp/e/a_copy.ini" small_a

# -- two experiments of one name: refused, both files named ------------------------------------
cmp 1 "$tmp/e/a.ini" "$tmp/e/a_copy.ini" --out "$tmp/o1" &&
    has "a_copy.ini:2: [experiment] name = small_a is also the name of $tmp/e/a.ini (line 2)"
printf '[suite]\nexperiments = ../e/a.ini, ../e/b.ini, ../e/a_copy.ini\n' >"$tmp/s/names.ini"
cmp 1 "$tmp/s/names.ini" --out "$tmp/o1" && has "is also the name of $tmp/s/../e/a.ini"

# -- the same file twice (directly, in one suite, in two overlapping suites): it runs once ------
cmp 0 "$tmp/e/a.ini" "$tmp/e/a.ini" --out "$tmp/o2" &&
    has "note: $tmp/e/a.ini is listed more than once" && has "0 reused, 1 run, 0 failed"
printf '[suite]\nexperiments = ../e/a.ini, ../e/b.ini\n' >"$tmp/s/ab.ini"
printf '[suite]\nexperiments = ../e/b.ini, ../e/b.ini\n' >"$tmp/s/bb.ini"
cmp 0 "$tmp/s/ab.ini" "$tmp/s/bb.ini" --out "$tmp/o3" &&
    has "note: $tmp/s/../e/b.ini is listed more than once" && has "2 runs (2 experiments x 1 seeds)"

# -- include cycles and depth: a sentence, not a stack overflow --------------------------------
printf '[suite]\nname = self\nsuites = self.ini\n' >"$tmp/s/self.ini"
cmp 1 "$tmp/s/self.ini" --out "$tmp/o4" &&
    has "self.ini:3: [suite] suites lists $tmp/s/self.ini, which is already being read" &&
    has "cycle ($tmp/s/self.ini -> $tmp/s/self.ini)"
printf '[suite]\nexperiments = ../e/a.ini\nsuites = y.ini\n' >"$tmp/s/x.ini"
printf '[suite]\nsuites = x.ini\n' >"$tmp/s/y.ini"
cmp 1 "$tmp/s/x.ini" --out "$tmp/o4" && has "cycle ($tmp/s/x.ini -> $tmp/s/y.ini -> $tmp/s/x.ini)"
i=1
while [ $i -le 40 ]; do printf '[suite]\nsuites = d%d.ini\n' $((i + 1)) >"$tmp/s/d$i.ini"; i=$((i + 1)); done
printf '[suite]\nexperiments = ../e/a.ini\n' >"$tmp/s/d41.ini"
cmp 1 "$tmp/s/d1.ini" --out "$tmp/o4" && has "suites nested more than 32 deep"

# -- --sweep: one key, at most 16 distinct non-empty values, folder names that fit --------------
cmp 2 "$tmp/e/a.ini" --sweep train.lr=0.1,0.2 --sweep data.p=0.5,0.9 --out "$tmp/o5" &&
    has "--sweep is given twice (train.lr and data.p)"
cmp 2 "$tmp/e/a.ini" --sweep data.p=1,2,3,4,5,6,7,8,9,10,11,12,13,14,15,16,17 --out "$tmp/o5" &&
    has "--sweep data.p: 17 values; a sweep holds at most 16"
cmp 2 "$tmp/e/a.ini" --sweep data.p=0.5,,0.9 --out "$tmp/o5" && has "value 2 is empty"
cmp 2 "$tmp/e/a.ini" --sweep data.p=0.5,0.9,0.5 --out "$tmp/o5" && has "the value 0.5 is listed twice"
long=$(printf '%0300d' 7)
cmp 2 "$tmp/e/a.ini" --sweep "experiment.description=$long" --out "$tmp/o5" &&
    has "a folder name holds at most 255"
cmp 2 "$tmp/e/a.ini" --sweep data.p=0.5,0.9 data.p=0.7 --out "$tmp/o5" &&
    has "data.p is both swept (--sweep) and set by the override data.p=0.7"
[ -e "$tmp/o5/runs" ] && fail "a refused sweep started runs"

# A value with '/' and '..' stays inside the output folder (escaped as %2F in the folder name).
cmp 0 "$tmp/e/a.ini" --sweep "experiment.description=../../../../../esc,x/y" --out "$tmp/o6" &&
    { [ -f "$tmp/o6/runs/small_a/experiment.description=..%2F..%2F..%2F..%2F..%2Fesc/seed-1/metrics.json" ] &&
      [ -f "$tmp/o6/runs/small_a/experiment.description=x%2Fy/seed-1/metrics.json" ] ||
      fail "the escaped sweep folders are missing"; }
[ -e "$tmp/esc" ] || [ -e "$tmp/o6/runs/small_a/experiment.description=x" ] &&
    fail "a sweep value made a folder outside its run folder"

# -- experiment names that cannot be folder names ----------------------------------------------
exp "$tmp/e/evil.ini" ../../evil
cmp 1 "$tmp/e/evil.ini" --out "$tmp/o7" && has "evil.ini:2: [experiment] name cannot name a folder (it holds a '/')"
[ -e "$tmp/evil" ] && fail "the name ../../evil made a folder outside the comparison"
exp "$tmp/e/long1.ini" "$(printf 'n%.0s' $(seq 70))1"
cmp 1 "$tmp/e/long1.ini" --out "$tmp/o7" && has "it is longer than 63 bytes"

# -- 65 experiments: refused with the limit and the file ----------------------------------------
list=""
i=1
while [ $i -le 65 ]; do exp "$tmp/e/m$i.ini" "m$i"; list="$list $tmp/e/m$i.ini"; i=$((i + 1)); done
# shellcheck disable=SC2086
cmp 1 $list --out "$tmp/o8" && has "m65.ini: a comparison holds at most 64 experiments"

# -- command-line numbers ------------------------------------------------------------------------
cmp 2 "$tmp/e/a.ini" --seeds 3x --out "$tmp/o9" && has "--seeds 3x: give a whole number from 1 to 32"
cmp 2 "$tmp/e/a.ini" --jobs 0 --out "$tmp/o9" && has "--jobs 0: give a whole number from 1 to 4096"
cmp 2 "$tmp/e/a.ini" --out && has "--out needs a value"

# -- nothing cut: the 65th override and the end of a 2 KiB quick list reach the run --------------
overs=""
i=1
while [ $i -le 64 ]; do overs="$overs train.batch=32"; i=$((i + 1)); done
# shellcheck disable=SC2086
cmp 0 "$tmp/e/a.ini" $overs train.epochs=2 --out "$tmp/o10" &&
    { grep -q '^epochs = 2' "$tmp/o10/runs/small_a/seed-1/config.ini" ||
      fail "the 65th override (train.epochs=2) did not reach the run"; }
exp "$tmp/e/q.ini" small_q
sed -i 's/^seed = 1$/seed = 1\nquick = train.batch=32/' "$tmp/e/q.ini"
# 150 more quick assignments on continuation lines (2.2 KiB), the last one the one that counts
awk '{ print } /^quick = / { for (i = 0; i < 150; i++) print "  train.batch=32"; print "  train.epochs=2" }' \
    "$tmp/e/q.ini" >"$tmp/e/q2.ini"
cmp 0 "$tmp/e/q2.ini" --quick --out "$tmp/o11" &&
    { grep -q '^epochs = 2' "$tmp/o11/runs/small_q/seed-1/config.ini" ||
      fail "the end of a long quick list (train.epochs=2) did not reach the run"; }

[ "$fails" = 0 ] || { echo "$fails failure(s)"; exit 1; }
echo "compare: names, duplicates, cycles, sweeps and long lists refused or passed on whole"
