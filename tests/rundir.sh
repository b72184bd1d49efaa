#!/bin/sh
# rundir.sh — the life of a results folder (docs/ini.md, "The results folder"): a second run
# never touches a folder that holds a run; --resume, --overwrite and --if-changed do what they
# say; a finished run is not resumed; unsafe folders and names are refused; two writers are
# kept apart by the lock; a signalled run leaves a resumable folder whose resumption is
# bit-identical to a run never stopped; a file size limit and a changed data file get a
# sentence naming the file. Every case checks the files that were there before are unchanged.
set -u
b=${top_builddir:-.}
T="$b/tessera"
tmp=$(mktemp -d /tmp/tessera-rundir-XXXXXX)
trap 'chmod -R u+w "$tmp" 2>/dev/null; rm -rf "$tmp"' EXIT
cd "$tmp" || exit 1
failures=0
passes=0
ok() { passes=$((passes + 1)); }
bad() { echo "FAIL: $*"; failures=$((failures + 1)); }
sums() { (cd "$1" && find . -type f ! -name .lock -exec md5sum {} + | sort); }

cat >exp.ini <<'INI'
[experiment]
name = rd
seed = 3
[data]
type = synthetic_mmoe
rows = 3000, 500, 500
[layer.h]
type = dense
input = x
units = 8
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
epochs = 2
batch = 64
threads = 1
INI

# expect CODE WORDS... -- CMD: runs CMD, checks the exit code and that stderr holds each word
expect() {
    code=$1; shift
    words=""
    while [ "$1" != "--" ]; do words="$words
$1"; shift; done
    shift
    "$@" >out.txt 2>err.txt
    rc=$?
    if [ "$rc" != "$code" ]; then bad "$* -> exit $rc, expected $code: $(tail -n 2 err.txt)"; return; fi
    echo "$words" | while IFS= read -r w; do
        [ -z "$w" ] && continue
        grep -qF -- "$w" err.txt || { echo "FAIL: $* : message lacks '$w': $(tail -n 2 err.txt)"; echo x >>fails.txt; }
    done
    ok
}

# 1. a finished run, then everything that must not touch it
expect 0 -- "$T" run exp.ini --results r1 --quiet
sums r1 >r1.sum
expect 1 "r1 already holds a finished run" "--overwrite" -- "$T" run exp.ini --results r1 --quiet
expect 1 "r1 already holds a finished run" -- "$T" run exp.ini --results r1 --quiet train.epochs=3
expect 1 "nothing to resume" -- "$T" run exp.ini --results r1 --quiet --resume
expect 1 "nothing to resume" -- "$T" resume r1 --quiet
sums r1 | cmp -s - r1.sum || bad "a refused run changed r1"
# --if-changed: same identity -> untouched
expect 0 "up to date" -- "$T" run exp.ini --results r1 --if-changed
sums r1 | cmp -s - r1.sum || bad "--if-changed with the same identity rewrote r1"
# the thread count is not part of the identity
expect 0 "up to date" -- "$T" run exp.ini --results r1 --if-changed train.threads=2
# --if-changed: a changed key -> rerun, and the log names the key
expect 0 "replacing the finished run" "optimizer.lr = 0.02" -- "$T" run exp.ini --results r1 --if-changed optimizer.lr=0.02
sums r1 | cmp -s - r1.sum && bad "--if-changed with another lr kept the old figures"
grep -q 'optimizer.lr = 0.02' r1/identity.txt || bad "identity.txt lacks the new lr"
# --overwrite replaces the run's files; a file that is not tessera's survives it
echo "my notes" >r1/notes.txt
expect 0 "replacing the finished run" -- "$T" run exp.ini --results r1 --overwrite
[ -f r1/metrics.json ] || bad "--overwrite left no metrics.json"
[ "$(cat r1/notes.txt 2>/dev/null)" = "my notes" ] || bad "--overwrite removed a file that is not tessera's"
expect 2 "exclude each other" -- "$T" run exp.ini --results r1 --overwrite --resume

# 2. unsafe folders and names
mkdir precious && echo keep >precious/README && sums precious >precious.sum
expect 1 "not a results folder" "README" -- "$T" run exp.ini --results precious --quiet
expect 1 "not a results folder" "README" -- "$T" run exp.ini --results precious --overwrite --quiet
sums precious | cmp -s - precious.sum || bad "a refused run touched precious/"
expect 1 "not a results folder" -- "$T" run exp.ini --results . --quiet
expect 1 "not a results folder" -- "$T" run exp.ini --results / --quiet
echo data >afile
expect 1 "is a file, not a folder" -- "$T" run exp.ini --results afile --quiet
expect 1 "--results needs a folder" -- "$T" run exp.ini --results "" --quiet
expect 1 "starts with a dot" -- "$T" run exp.ini experiment.name=.. --quiet
expect 1 "starts with a dot" -- "$T" run exp.ini experiment.name=. --quiet
expect 1 "starts with a dot" -- "$T" run exp.ini experiment.name=../escape --quiet
expect 1 "holds a '/'" -- "$T" run exp.ini experiment.name=x/../../escape --quiet
expect 1 "holds a '/'" -- "$T" run exp.ini experiment.name=a/b --quiet
expect 1 "control character" -- "$T" run exp.ini "experiment.name=$(printf 'a\tb')" --quiet
[ -e escape ] || [ -e ../escape ] && bad "a name escaped the results folder"
[ -e results/.. ] && [ -e results/rd ] && bad "unexpected results/rd"

# a run refused before it wrote anything leaves no folder behind
sed 's/^units = 8$/units = 0/' exp.ini >bad.ini
expect 1 "units" -- "$T" run bad.ini --results never --quiet
[ -e never ] && bad "a refused run left its folder 'never' behind"

# 3. an unfinished run: refused without a flag, resumed with --resume
cp -r r1 r2
rm r2/metrics.json
expect 1 "holds an unfinished run" "--resume" -- "$T" run exp.ini --results r2 --quiet

# 4. two writers: the second is refused while the first trains (the first is made long enough
#    to be still training, then stopped with SIGTERM: it leaves a resumable folder)
"$T" run exp.ini --results r3 --quiet data.rows=200000,500,500 train.epochs=100 2>r3.err &
pid=$!
i=0; while [ ! -f r3/train.csv ] && [ $i -lt 400 ]; do sleep 0.05; i=$((i + 1)); done
if kill -0 $pid 2>/dev/null; then
    expect 1 "is being written by another tessera run" -- "$T" run exp.ini --results r3 --overwrite --quiet
    kill -TERM $pid
    wait $pid
    rc=$?
    [ $rc = 143 ] || bad "the first writer, stopped by SIGTERM, exited $rc: $(cat r3.err)"
    [ -f r3/checkpoint.tsck ] || bad "the first writer left no checkpoint"
else
    bad "the first writer ended before the second started: $(cat r3.err)"
fi

# 5. signals: SIGTERM and SIGINT leave a resumable folder; resuming equals a run never stopped
expect 0 -- "$T" run exp.ini --results ref --quiet data.rows=60000,500,500 train.batch=32
dflt=""
env --default-signal=INT true 2>/dev/null && dflt="env --default-signal=INT"
lines() { if [ -f "$1" ]; then wc -l <"$1"; else echo 0; fi; }
for sig in TERM INT; do
    d=sig$sig
    if [ $sig = TERM ]; then want=143; else want=130; fi
    # a background job of a non-interactive shell starts with SIGINT ignored, and tessera keeps
    # an ignored signal ignored (nohup): give it the default disposition back
    $dflt "$T" run exp.ini --results $d --quiet data.rows=60000,500,500 train.batch=32 2>$d.err &
    pid=$!
    i=0; while [ "$(lines $d/train.csv)" -lt 3 ] && [ $i -lt 400 ]; do sleep 0.02; i=$((i + 1)); done
    kill -$sig $pid
    wait $pid
    rc=$?
    if [ -f $d/metrics.json ]; then
        echo "note: the $sig run finished before the signal (machine too fast); skipped"
    else
        [ $rc = $want ] || bad "SIG$sig: exit $rc, expected $want: $(cat $d.err)"
        grep -q "tessera resume $d" $d.err || bad "SIG$sig: no resume hint: $(cat $d.err)"
        [ -f $d/checkpoint.tsck ] || bad "SIG$sig: no checkpoint"
        expect 0 -- "$T" resume $d --quiet
        cmp -s ref/params.bin $d/params.bin || bad "SIG$sig: the resumed run differs from the uninterrupted one"
        cmp -s ref/eval.csv $d/eval.csv || bad "SIG$sig: eval.csv differs from the uninterrupted run's"
    fi
    ok
done

# 6. the data changed under an unfinished run: resume refuses, naming the file
cat >csv.ini <<'INI'
[experiment]
name = rdcsv
seed = 1
[data]
type = csv
path = t.csv
dense = a, b
labels = y
split = 0.6, 0.2, 0.2
[layer.out]
type = dense
input = dense
units = 1
[head.y]
type = regression
input = out
label = y
loss = mse
[optimizer]
type = sgd
lr = 0.01
[train]
epochs = 1
batch = 8
keep_checkpoints = true
INI
awk 'BEGIN { print "a,b,y"; for (i = 0; i < 200; i++) printf "%d,%d,%d\n", i % 7, i % 5, (i % 7) + (i % 5) }' >t.csv
expect 0 -- "$T" run csv.ini --results c1 --quiet
rm c1/metrics.json
sed -i 's/^3,4,7$/3,4,8/' t.csv
expect 1 "its data changed" "t.csv" -- "$T" run csv.ini --results c1 --resume --quiet

# 7. a file size limit: a sentence naming the file, not a SIGXFSZ death
( ulimit -f 4; exec "$T" run exp.ini --results big --quiet ) 2>big.err
rc=$?
[ $rc = 1 ] || bad "ulimit -f: exit $rc, expected 1: $(cat big.err)"
grep -q "File too large" big.err && grep -q "big/" big.err || bad "ulimit -f: message: $(cat big.err)"

# 8. a read-only folder (as an unprivileged user, since root may write anywhere)
if command -v setpriv >/dev/null && [ "$(id -u)" = 0 ]; then
    mkdir -p ro && chmod 755 "$tmp" && chmod 555 ro
    setpriv --reuid=65534 --regid=65534 --clear-groups "$T" run "$PWD/exp.ini" --results "$PWD/ro/x" --quiet 2>ro.err
    rc=$?
    [ $rc = 1 ] && grep -q "ro/x" ro.err || bad "read-only folder: exit $rc: $(cat ro.err)"
fi

[ -f fails.txt ] && failures=$((failures + $(wc -l <fails.txt)))
echo "rundir: $passes passed, $failures failed"
[ $failures = 0 ]
