#!/bin/sh
# tune.sh — `tessera tune` end to end on a small synthetic experiment: --help; bad input refused
# with a sentence before anything runs (unknown key, empty list, LO > HI, a log range from 0, a
# grid over the limit, --random 0, a range without --random, ...); a grid search whose choice is
# the best validation figure of trials.csv, whose selected.ini `tessera run` takes as is and
# reproduces the chosen trial; the choice made on validation figures only (test figures of the
# trials forged to favour another trial change nothing, a forged validation figure changes the
# choice: the test would fail if test figures leaked into it); an interrupted search (a trial's
# results lost) resumed by running only that trial; a random search over ranges with
# --select-on valid-last (no early stopping in trials, draws inside their ranges); --select-on
# holdout (the trial chosen on a selection split held out of every run's training rows: its
# figure chooses, a validation figure does not); --halving (rungs keep the best third by the
# rung's figure, the rung runs reused when the search runs again).
set -u
b=${top_builddir:-.}
T="$b/tessera"
tmp=$(mktemp -d /tmp/tessera-tune-XXXXXX)
trap 'rm -rf "$tmp"' EXIT
cd "$tmp" || exit 1
failures=0
passes=0
ok() { passes=$((passes + 1)); }
bad() { echo "FAIL: $*"; failures=$((failures + 1)); }
ncpu=$(getconf _NPROCESSORS_ONLN 2>/dev/null || echo 1)

cat >exp.ini <<'INI'
[experiment]
name = tiny
seed = 1
[data]
type = synthetic_mmoe
rows = 1500, 300, 300
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
epochs = 3
batch = 64
early_stop = y1.mse
INI
sed '/^early_stop/d' exp.ini >nostop.ini

# ---- --help ---------------------------------------------------------------------------------
if "$T" tune --help >help.txt 2>help.err && grep -q "usage: tessera tune EXP.ini" help.txt &&
   grep -q -- "--select-on valid-last" help.txt && grep -q "log-uniform" help.txt &&
   [ ! -s help.err ]; then ok; else bad "tune --help"; fi
"$T" --help | grep -q "tune EXP.ini" && ok || bad "tessera --help does not list tune"

# ---- bad input: exit 2, a sentence, nothing run, no crash ----------------------------------
# refused WHAT NEEDLE ARGS...: tune ARGS exits 2 and says NEEDLE, and made no folder
refused() {
    what=$1 needle=$2
    shift 2
    "$T" tune "$@" --out "$tmp/refused" >out.txt 2>err.txt
    rc=$?
    if [ "$rc" != 2 ]; then bad "$what: exit $rc, expected 2"; sed 's/^/    /' err.txt; return; fi
    if ! grep -q -- "$needle" err.txt; then bad "$what: no '$needle' in:"; sed 's/^/    /' err.txt; return; fi
    if [ -e "$tmp/refused" ]; then bad "$what: made the search folder"; rm -rf "$tmp/refused"; return; fi
    ok
}
refused "unknown key" "did you mean 'units'" exp.ini layer.h.unitz=4,8
refused "unknown section" "names section \[layer.nope\]" exp.ini layer.nope.units=4,8
refused "empty value" "gives no value" exp.ini layer.h.units=
refused "empty list element" "value 2 of the list is empty" exp.ini layer.h.units=4,,8
refused "LO > HI" "low end 0.1 is above its high end 0.01" exp.ini optimizer.lr=0.1:0.01 --random 3
refused "log range from 0" "needs LO > 0" exp.ini optimizer.lr=log:0:0.1 --random 3
refused "grid over the limit" "over the limit of 256" exp.ini \
    layer.h.units=1,2,3,4,5,6,7,8,9,10,11,12,13,14,15,16,17 \
    optimizer.lr=0.1,0.2,0.3,0.4,0.5,0.6,0.7,0.8,0.9,1,2,3,4,5,6,7
refused "--random 0" "give a whole number from 1" exp.ini --random 0 layer.h.units=4,8
refused "range without --random" "give --random N" exp.ini optimizer.lr=0.001:0.1
refused "decimal range on an int key" "is a whole number" exp.ini layer.h.units=2.5:8 --random 2
refused "range on a choice" "not a number" exp.ini layer.h.activation=1:3 --random 2
refused "nothing searched" "nothing to search" exp.ini optimizer.lr=0.01
refused "key given twice" "given twice" exp.ini layer.h.units=4,8 layer.h.units=16,32
refused "seed searched" "--seeds N" exp.ini experiment.seed=1,2
refused "metric of no head" "has no \[head.nope\]" exp.ini layer.h.units=4,8 --metric nope.mse
refused "no early_stop, no --metric" "give --metric" nostop.ini layer.h.units=4,8
refused "bad trial value" "outside 1..100000" exp.ini train.epochs=0,2
refused "unknown option" "unknown option --bogus" exp.ini layer.h.units=4,8 --bogus
refused "missing file" "cannot open" missing.ini layer.h.units=4,8
refused "two experiments" "one experiment per search" exp.ini exp.ini layer.h.units=4,8

# ---- a grid search --------------------------------------------------------------------------
# --jobs = the cores: one BLAS thread per run, as `tessera run` here has (bit-identical runs)
cmd="tune exp.ini layer.h.units=2,8 optimizer.lr=0.003,0.03 --seeds 2 --jobs $ncpu --out o"
# shellcheck disable=SC2086
"$T" $cmd >out1.txt 2>err1.txt || { bad "the grid search failed"; sed 's/^/    /' err1.txt; }
[ "$(cat out1.txt)" = o/report.md ] && [ -s o/report.md ] && ok || bad "no report.md"
[ "$(wc -l <o/trials.csv)" = 6 ] && ok || bad "trials.csv has not 1 + 5 lines"
head -1 o/trials.csv | grep -q "^trial,status,layer.h.units,optimizer.lr,valid.y1.mse,best_epoch,chosen$" &&
    ok || bad "trials.csv header: $(head -1 o/trials.csv)"
grep -q "test\." o/trials.csv && bad "trials.csv holds a test figure" || ok
# the chosen line is the lowest valid.y1.mse (lower is better for mse)
best=$(awk -F, 'NR > 1 && $5 != "" { if (b == "" || $5 < v) { v = $5; b = $1 } } END { print b }' o/trials.csv)
chosen=$(awk -F, 'NR > 1 && $7 == 1 { print $1 }' o/trials.csv)
[ -n "$best" ] && [ "$best" = "$chosen" ] && ok || bad "chosen trial $chosen is not the best on validation ($best)"
grep -q "| the configuration | the validation split | valid.y1.mse" o/report.md && ok ||
    bad "report.md does not say which split chose the configuration"
grep -q "the test split | fresh runs" o/report.md && grep -q "selected − default" o/report.md &&
    ok || bad "report.md has no test comparison"
for d in default selected; do
    for s in 2 3; do [ -s "o/final/$d/seed-$s/metrics.json" ] || bad "no final run $d seed $s"; done
done
# selected.ini is a complete experiment that `tessera run` takes as is, from another folder,
# and it is the chosen trial: the same validation figure (same seed, one BLAS thread)
mkdir elsewhere
(cd elsewhere && "$T" run ../o/selected.ini --results r --quiet) 2>run.err && ok ||
    { bad "tessera run selected.ini failed"; sed 's/^/    /' run.err; }
want=$(awk -F, -v c="$chosen" '$1 == c { print $5 }' o/trials.csv)
got=$(sed -n 's/.*"valid.y1.mse": \([^,]*\),*/\1/p' elsewhere/r/metrics.json)
awk -v a="$want" -v g="$got" 'BEGIN { d = a - g; exit !(a != "" && d < 1e-7 && d > -1e-7) }' &&
    ok || bad "selected.ini's run gives valid.y1.mse $got, the chosen trial $want"
grep -q "^name = tiny_tuned" o/selected.ini && ok || bad "selected.ini's name"

# ---- an interrupted search resumes: only the lost trial runs again --------------------------
cp o/trials.csv trials1.csv
rm o/trials/003/seed-1/metrics.json
# shellcheck disable=SC2086
"$T" $cmd >/dev/null 2>err2.txt || bad "the resumed search failed"
grep -q "trial 3: run;" err2.txt && ok || { bad "trial 3 did not run again"; sed 's/^/    /' err2.txt; }
[ "$(grep -c "reused" err2.txt)" = 8 ] && ok || { bad "the other 8 runs were not reused"; sed 's/^/    /' err2.txt; }
cut -d, -f1,3- trials1.csv >a.csv
cut -d, -f1,3- o/trials.csv >b.csv
cmp -s a.csv b.csv && ok || bad "the resumed search's trials.csv differs: $(diff a.csv b.csv)"

# ---- the choice reads validation figures only -----------------------------------------------
# the worst trial on validation gets by far the best test figure in its metrics.json, every
# other trial a bad one: a search that read test figures would now choose it
worst=$(awk -F, 'NR > 2 && $5 != "" { if (w == "" || $5 > v) { v = $5; w = $1 } } END { print w }' o/trials.csv)
for d in o/trials/*/seed-1; do
    t=$(basename "$(dirname "$d")")
    v=99
    [ "$t" = "$(printf %03d "$worst")" ] && v=0.000001
    sed -i "s/\"test.y1.mse\": [^,]*/\"test.y1.mse\": $v/; s/\"test.y1.mae\": [^,]*/\"test.y1.mae\": $v/" "$d/metrics.json"
done
# shellcheck disable=SC2086
"$T" $cmd >/dev/null 2>err3.txt || bad "the search over forged test figures failed"
[ "$(grep -c "trial [0-9]*: reused" err3.txt)" = 4 ] || bad "the trials were not reused (the forgery is gone)"
chosen3=$(awk -F, 'NR > 1 && $7 == 1 { print $1 }' o/trials.csv)
[ "$chosen3" = "$chosen" ] && ok || bad "forged test figures moved the choice from $chosen to $chosen3"
# and the same forgery on the validation figure does move it: the choice is made on it
sed -i "s/\"valid.y1.mse\": [^,]*/\"valid.y1.mse\": 0.000001/" "o/trials/$(printf %03d "$worst")/seed-1/metrics.json"
# shellcheck disable=SC2086
"$T" $cmd >/dev/null 2>err4.txt || bad "the search over a forged validation figure failed"
chosen4=$(awk -F, 'NR > 1 && $7 == 1 { print $1 }' o/trials.csv)
[ "$chosen4" = "$worst" ] && ok || bad "a forged validation figure of trial $worst did not move the choice ($chosen4)"
grep -q "^Trial $worst:" o/report.md && ok || bad "report.md does not name trial $worst"

# ---- a random search over ranges, trials without early stopping ------------------------------
"$T" tune exp.ini --random 4 train.epochs=2:4 optimizer.lr=log:0.001:0.1 layer.h.units=8 \
    --select-on valid-last --seeds 1 --jobs "$ncpu" --out r >/dev/null 2>err5.txt ||
    { bad "the random search failed"; sed 's/^/    /' err5.txt; }
[ "$(wc -l <r/trials.csv)" = 6 ] && ok || bad "random: trials.csv has not 1 + 5 lines"
awk -F, 'NR > 2 { if ($3 !~ /^[0-9]+$/ || $3 < 2 || $3 > 4 || $4 < 0.001 || $4 > 0.1) exit 1 }' r/trials.csv &&
    ok || { bad "random draws outside their ranges:"; cat r/trials.csv; }
# no early stopping: every trial keeps its last epoch, and its config has early_stop empty
awk -F, 'NR > 2 && $6 != $3 { exit 1 }' r/trials.csv && ok || { bad "valid-last: a trial kept an earlier epoch"; cat r/trials.csv; }
grep -q "^early_stop = *$" r/trials/001/seed-1/config.ini && ok || bad "valid-last: trial 1 early-stopped"
grep -q "^units = 8" r/trials/002/seed-1/config.ini && ok || bad "the fixed key is not in trial 2"
grep -q "nothing: early stopping is off in the trials" r/report.md && ok || bad "valid-last: the report does not say so"
if [ "$(awk -F, 'NR > 1 && $7 == 1 { print $1 }' r/trials.csv)" != default ]; then
    grep -q "^early_stop = *$" r/selected.ini && ok || bad "valid-last: selected.ini early-stops"
fi

# ---- --trial-seeds: a trial judged by the mean over its seeds; no final run reuses one ---------
"$T" tune exp.ini layer.h.units=2,8 --trial-seeds 2 --seeds 1 --jobs "$ncpu" --out m >/dev/null 2>err6.txt ||
    { bad "the search with --trial-seeds failed"; sed 's/^/    /' err6.txt; }
v1=$(sed -n 's/.*"valid.y1.mse": \([^,]*\),*/\1/p' m/trials/002/seed-1/metrics.json)
v2=$(sed -n 's/.*"valid.y1.mse": \([^,]*\),*/\1/p' m/trials/002/seed-2/metrics.json)
mean=$(awk -F, '$1 == 2 { print $4 }' m/trials.csv)
awk -v a="$v1" -v b="$v2" -v m="$mean" 'BEGIN { d = (a + b) / 2 - m; exit !(a != b && d < 1e-7 && d > -1e-7) }' &&
    ok || bad "trial 2's figure $mean is not the mean of its seeds' $v1 and $v2"
[ -s m/final/default/seed-3/metrics.json ] && [ ! -e m/final/default/seed-1 ] && ok ||
    bad "the final runs took a trial's seed: $(ls m/final/default)"

# ---- a trial that fails is reported and left out of the choice; a failed default stops it ----
"$T" tune exp.ini layer.h.activation=relu,nope --seeds 1 --jobs "$ncpu" --out f >/dev/null 2>err7.txt &&
    ok || { bad "a search with a failing trial failed"; sed 's/^/    /' err7.txt; }
[ "$(awk -F, '$1 == 2 { print $2 "," $4 "," $6 }' f/trials.csv)" = "failed,,0" ] && ok ||
    { bad "the failing trial's line"; cat f/trials.csv; }
grep -q "1 trial failed" err7.txt && ok || bad "no word of the failed trial"
"$T" tune exp.ini layer.h.units=4,8 layer.h.activation=nope --seeds 1 --out g >/dev/null 2>err8.txt
[ $? = 1 ] && grep -q "the default (the experiment as given) did not finish" err8.txt && ok ||
    { bad "a failing default"; sed 's/^/    /' err8.txt; }

# ---- --select-on holdout: epoch on validation, trial on a selection split held out of training --
refused "--select-fraction alone" "give --select-on holdout too" exp.ini layer.h.units=4,8 --select-fraction 0.2
refused "--select-fraction 1.5" "between 0 and 1" exp.ini layer.h.units=4,8 --select-on holdout --select-fraction 1.5
refused "select_fraction as a key" "data.select_fraction cannot be set by tune" exp.ini layer.h.units=4,8 data.select_fraction=0.2
refused "select_seed searched" "data.select_seed cannot be searched" exp.ini layer.h.units=4,8 data.select_seed=1,2
refused "--select-on nonsense" "or holdout" exp.ini layer.h.units=4,8 --select-on test
hcmd="tune exp.ini layer.h.units=2,8 optimizer.lr=0.003,0.03 --select-on holdout --seeds 1 --jobs $ncpu --out h"
# shellcheck disable=SC2086
"$T" $hcmd >/dev/null 2>errh.txt || { bad "the holdout search failed"; sed 's/^/    /' errh.txt; }
head -1 h/trials.csv | grep -q "^trial,status,layer.h.units,optimizer.lr,valid.y1.mse,select.y1.mse,best_epoch,chosen$" &&
    ok || bad "holdout trials.csv header: $(head -1 h/trials.csv)"
# every run (trials, default, final) holds out 10 % of the 1500 training rows and trains on the rest
for d in h/trials/*/seed-1 h/final/*/seed-*; do
    grep -q '"train.data.select_rows": 150,\?$' "$d/metrics.json" && grep -q '"train.data.train_rows": 1350,\?$' "$d/metrics.json" ||
        bad "$d did not hold out 150 of 1500 training rows"
done
hbest=$(awk -F, 'NR > 1 && $6 != "" { if (b == "" || $6 < v) { v = $6; b = $1 } } END { print b }' h/trials.csv)
hchosen=$(awk -F, 'NR > 1 && $8 == 1 { print $1 }' h/trials.csv)
[ -n "$hbest" ] && [ "$hbest" = "$hchosen" ] && ok || bad "holdout: chosen $hchosen is not the best on the selection split ($hbest)"
grep -q "| each trial's epoch | the validation split |" h/report.md &&
    grep -q "| the configuration | the selection split: 0.1 of the training split's rows" h/report.md &&
    ok || bad "holdout: report.md does not say which split chose what"
grep -q "^select_fraction = 0.1" h/selected.ini && ok || bad "holdout: selected.ini lacks the holdout"
# the validation figure no longer chooses: the worst trial on the selection split gets the best
# validation figure, and the choice stays; its selection figure forged, the choice moves to it
hworst=$(awk -F, 'NR > 2 && $6 != "" { if (w == "" || $6 > v) { v = $6; w = $1 } } END { print w }' h/trials.csv)
wf="h/trials/$(printf %03d "$hworst")/seed-1/metrics.json"
sed -i "s/\"valid.y1.mse\": [^,]*/\"valid.y1.mse\": 0.000001/" "$wf"
# shellcheck disable=SC2086
"$T" $hcmd >/dev/null 2>errh2.txt || bad "the holdout search over a forged validation figure failed"
[ "$(awk -F, 'NR > 1 && $8 == 1 { print $1 }' h/trials.csv)" = "$hchosen" ] && ok ||
    bad "holdout: a forged validation figure moved the choice"
sed -i "s/\"select.y1.mse\": [^,]*/\"select.y1.mse\": 0.000001/" "$wf"
# shellcheck disable=SC2086
"$T" $hcmd >/dev/null 2>errh3.txt || bad "the holdout search over a forged selection figure failed"
[ "$(awk -F, 'NR > 1 && $8 == 1 { print $1 }' h/trials.csv)" = "$hworst" ] && ok ||
    bad "holdout: a forged selection figure of trial $hworst did not move the choice"
# the experiment's own select_fraction is the selection split when --select-fraction is not given
sed 's/^rows = .*/&\nselect_fraction = 0.2/' exp.ini >own.ini
"$T" tune own.ini layer.h.units=2,8 --select-on holdout --seeds 1 --jobs "$ncpu" --out h2 >/dev/null 2>errh4.txt ||
    { bad "the holdout search with the experiment's fraction failed"; sed 's/^/    /' errh4.txt; }
grep -q '"train.data.select_rows": 300,\?$' h2/trials/001/seed-1/metrics.json && ok || bad "the experiment's select_fraction 0.2 was not used"
grep -q "the experiment's \[data\] select_fraction" h2/report.md && ok || bad "report.md does not say whose fraction"

# ---- --halving: rungs of 1 and 3 epochs keep the best third by the figure that chooses --------
refused "--halving over a third of [train] epochs" "give at most a third of them (1)" exp.ini layer.h.units=4,8 --halving 2
refused "--halving with epochs searched" "successive halving sets each rung's epochs" exp.ini \
    layer.h.units=4,8 train.epochs=2,3 --halving 1
sed 's/^epochs = 3/epochs = 9/' exp.ini >e9.ini
scmd="tune e9.ini layer.h.units=2,4,8 optimizer.lr=0.001,0.01,0.03 --halving 1 --seeds 1 --jobs $ncpu --out sh"
# shellcheck disable=SC2086
"$T" $scmd >/dev/null 2>errs.txt || { bad "the search with --halving failed"; sed 's/^/    /' errs.txt; }
[ "$(ls -d sh/trials/*/rung-1 | wc -l)" = 9 ] && [ "$(ls -d sh/trials/*/rung-3 | wc -l)" = 3 ] &&
    [ "$(ls -d sh/trials/*/seed-1 | wc -l)" = 2 ] && ok ||
    bad "--halving: not 9 trials at 1 epoch, 3 at 3 and 1 (and the default) at 9: $(ls -d sh/trials/*/*)"
# the three that went on are the best three at 1 epoch (lowest valid.y1.mse of their rung-1 runs)
rung1() { for d in sh/trials/0*/rung-1/seed-1; do
              echo "$(sed -n 's/.*"valid.y1.mse": \([^,]*\),*/\1/p' "$d/metrics.json") $(echo "$d" | cut -d/ -f3)"
          done | sort -g | head -3 | cut -d' ' -f2 | sort | tr '\n' ' '; }
went=$(ls -d sh/trials/*/rung-3 | cut -d/ -f3 | sort | tr '\n' ' ')
[ "$(rung1)" = "$went" ] && ok || bad "--halving: rung 3 holds $went, the best at 1 epoch are $(rung1)"
awk -F, 'NR > 1 && $2 == "halved" { n++ } END { exit !(n == 8) }' sh/trials.csv && ok ||
    { bad "--halving: trials.csv has not 8 halved trials"; cat sh/trials.csv; }
grep -q "stopped by --halving after 1 epoch" sh/report.md && grep -q "^\*\*Successive halving.\*\*" sh/report.md &&
    ok || bad "--halving: the report does not say which trials stopped, or the bias"
# the rung's decision reads the rung's figure: the worst at 1 epoch, forged the best, goes on
worst1=$(for d in sh/trials/0*/rung-1/seed-1; do
             echo "$(sed -n 's/.*"valid.y1.mse": \([^,]*\),*/\1/p' "$d/metrics.json") $(echo "$d" | cut -d/ -f3)"
         done | sort -g | tail -1 | cut -d' ' -f2)
sed -i 's/"valid.y1.mse": [^,]*/"valid.y1.mse": 0.000001/' "sh/trials/$worst1/rung-1/seed-1/metrics.json"
# shellcheck disable=SC2086
"$T" $scmd >/dev/null 2>errs2.txt || { bad "the --halving search run again failed"; sed 's/^/    /' errs2.txt; }
[ -d "sh/trials/$worst1/rung-3" ] && ok || bad "--halving: a forged rung figure of trial $worst1 did not promote it"
[ "$(grep -c "rung of 1 epoch: reused" errs2.txt)" = 9 ] && ok || bad "--halving: the rung runs were not reused"

echo "tune: $passes passed, $failures failed"
[ "$failures" = 0 ]
