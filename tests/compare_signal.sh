#!/bin/sh
# compare_signal.sh — a `tessera compare` that is stopped never leaves its runs training:
# SIGTERM to compare's PID and SIGINT to its process group (what a terminal's Ctrl-C sends) are
# passed on to every running run, compare waits for them, prints one "interrupted" line and
# exits 128 + the signal; SIGKILL to compare (no chance to pass anything on) still ends its runs
# (they get SIGTERM when their parent dies); Ctrl-Z (SIGTSTP) pauses the runs with compare and
# SIGCONT resumes them. The same command run again then finishes and reports.
# Runs are found by their unique --results path in /proc/PID/cmdline; every wait is bounded.
set -eu
b=${top_builddir:-.}
tmp=$(mktemp -d /tmp/tessera-cmpsig-XXXXXX)
# pids of the runs (tessera run --results OUT/runs/...) below output folder $1; "run[s]" keeps
# grep from finding its own command line
runs_of() { grep -l -a -e "$1/run[s]/" /proc/[0-9]*/cmdline 2>/dev/null | cut -d/ -f3 || true; }
cleanup() {
    for p in $(runs_of "$tmp/o1") $(runs_of "$tmp/o2"); do kill -9 "$p" 2>/dev/null || true; done
    [ -n "${cpid:-}" ] && kill -9 "$cpid" 2>/dev/null
    rm -rf "$tmp"
}
trap cleanup EXIT
for model in a b; do
    cat >"$tmp/$model.ini" <<INI
[experiment]
name = slow_$model
seed = 1
[data]
type = synthetic_mmoe
rows = 20000, 200, 200
[layer.h]
type = dense
input = x
units = 64
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
lr = 0.001
[train]
epochs = 60
batch = 64
INI
done
fail() { echo "FAIL: $*"; [ -f "$tmp/err" ] && sed 's/^/    /' "$tmp/err"; exit 1; }
# wait_runs OUT N: until N runs below OUT are training (at most 60 s)
wait_runs() {
    i=0
    while [ "$(runs_of "$1" | wc -l)" -lt "$2" ]; do
        i=$((i + 1))
        [ "$i" -le 600 ] || fail "the runs of $1 did not start within 60 s"
        kill -0 "$cpid" 2>/dev/null || fail "compare ended before its runs were seen"
        sleep 0.1
    done
}
# wait_exit: compare's exit status, waiting at most 60 s
wait_exit() {
    i=0
    while kill -0 "$cpid" 2>/dev/null && [ "$(awk '{ print $3 }' "/proc/$cpid/stat" 2>/dev/null)" != Z ]; do
        i=$((i + 1))
        [ "$i" -le 600 ] || fail "compare did not exit within 60 s of the signal"
        sleep 0.1
    done
    set +e
    wait "$cpid"
    status=$?
    set -e
    cpid=
}
# no_runs OUT SECONDS: no run below OUT is alive (after at most SECONDS)
no_runs() {
    i=0
    while [ -n "$(runs_of "$1")" ]; do
        i=$((i + 1))
        [ "$i" -le $(($2 * 10)) ] || fail "runs of compare outlived it: $(runs_of "$1" | tr '\n' ' ')"
        sleep 0.1
    done
}
# states PID...: the process states (R, S, T, Z...) of the PIDs, in one word
states() { for p in "$@"; do awk '{ printf "%s", $3 }' "/proc/$p/stat" 2>/dev/null || printf '-'; done; }
# until_state WORD PID...: until the PIDs' states read WORD, or a 10 s bound
until_state() {
    want=$1
    shift
    i=0
    while [ "$(states "$@")" != "$want" ]; do
        i=$((i + 1))
        [ "$i" -le 100 ] || fail "processes $* are in states $(states "$@"), expected $want"
        sleep 0.1
    done
}
cmd="compare $tmp/a.ini $tmp/b.ini --jobs 2 --out $tmp/o1"

# 1. SIGTERM to compare's PID.
# shellcheck disable=SC2086
"$b/tessera" $cmd 2>"$tmp/err" &
cpid=$!
wait_runs "$tmp/o1" 2
# Ctrl-Z (SIGTSTP) pauses compare and its runs; SIGCONT lets all of them go on.
kids=$(runs_of "$tmp/o1")
kill -TSTP "$cpid"
# shellcheck disable=SC2086
until_state TTT "$cpid" $kids
kill -CONT "$cpid"
i=0
# shellcheck disable=SC2086
while states "$cpid" $kids | grep -q T; do
    i=$((i + 1))
    [ "$i" -le 100 ] || fail "after SIGCONT, compare and its runs are in states $(states "$cpid" $kids)"
    sleep 0.1
done
kill -TERM "$cpid"
wait_exit
[ "$status" = 143 ] || fail "compare exited $status after SIGTERM, expected 143"
no_runs "$tmp/o1" 1
grep -q "interrupted by SIGTERM: .*; run the same command again to continue" "$tmp/err" ||
    fail "no 'interrupted' line"
[ ! -f "$tmp/o1/report.md" ] || fail "an interrupted comparison wrote a report"
echo "SIGTERM: $(grep interrupted "$tmp/err")"

# 2. SIGINT to compare's process group, as a terminal's Ctrl-C (SIGINT reset to its default:
# a background job of a script starts with it ignored).
# shellcheck disable=SC2086
setsid env --default-signal=INT "$b/tessera" $cmd 2>"$tmp/err" &
cpid=$!
wait_runs "$tmp/o1" 2
kill -INT "-$cpid"
wait_exit
[ "$status" = 130 ] || fail "compare exited $status after SIGINT to its group, expected 130"
no_runs "$tmp/o1" 1
grep -q "interrupted by SIGINT" "$tmp/err" || fail "no 'interrupted' line after SIGINT"
echo "SIGINT: $(grep interrupted "$tmp/err")"

# 3. SIGKILL to compare: its (long) runs must not go on training as orphans.
# shellcheck disable=SC2086
"$b/tessera" compare "$tmp/a.ini" "$tmp/b.ini" --jobs 2 --out "$tmp/o2" train.epochs=100000 2>"$tmp/err" &
cpid=$!
wait_runs "$tmp/o2" 2
kill -KILL "$cpid"
wait_exit
no_runs "$tmp/o2" 10
echo "SIGKILL: no run outlived compare"

# 4. The same command as 1 and 2 again finishes and reports.
set +e
# shellcheck disable=SC2086
"$b/tessera" $cmd >"$tmp/out" 2>"$tmp/err"
status=$?
set -e
[ "$status" = 0 ] || fail "the comparison run again exited $status"
grep -q "0 failed" "$tmp/err" || fail "the comparison run again has failures"
[ "$(grep -c '^slow_[ab],.*,test.y1.mse,' "$tmp/o1/summary.csv")" = 2 ] || fail "summary.csv lacks a run"
echo "compare: stopped runs end with compare; the same command then finishes"
