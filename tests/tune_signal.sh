#!/bin/sh
# tune_signal.sh — a `tessera tune` stopped by SIGTERM in the middle of a trial passes the signal
# on to its run, waits for it, says it was interrupted, writes no report and exits 143, leaving
# no run training; the same command run again resumes the stopped trial from its checkpoint,
# reuses the finished ones and reports. Runs are found by their --results path in
# /proc/PID/cmdline; every wait is bounded.
set -eu
b=${top_builddir:-.}
tmp=$(mktemp -d /tmp/tessera-tunesig-XXXXXX)
runs_of() { grep -l -a -e "$tmp/o/trial[s]/" /proc/[0-9]*/cmdline 2>/dev/null | cut -d/ -f3 || true; }
cleanup() {
    for p in $(runs_of); do kill -9 "$p" 2>/dev/null || true; done
    [ -n "${tpid:-}" ] && kill -9 "$tpid" 2>/dev/null
    rm -rf "$tmp"
}
trap cleanup EXIT
fail() { echo "FAIL: $*"; [ -f "$tmp/err" ] && sed 's/^/    /' "$tmp/err"; exit 1; }
cat >"$tmp/exp.ini" <<'INI'
[experiment]
name = slowish
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
epochs = 12
batch = 64
early_stop = y1.mse
INI
cmd="tune $tmp/exp.ini optimizer.lr=0.003,0.01 --seeds 1 --jobs 1 --out $tmp/o"
# shellcheck disable=SC2086
"$b/tessera" $cmd 2>"$tmp/err" >/dev/null &
tpid=$!
# the default trial (the first to run) has trained an epoch
i=0
until grep -q "epoch 1/" "$tmp/o/logs/trials-default-seed-1.log" 2>/dev/null; do
    i=$((i + 1))
    [ "$i" -le 600 ] || fail "the first trial did not train an epoch within 60 s"
    kill -0 "$tpid" 2>/dev/null || fail "tune ended before its first trial trained"
    sleep 0.1
done
kill -TERM "$tpid"
set +e
wait "$tpid"
status=$?
set -e
tpid=
[ "$status" = 143 ] || fail "tune exited $status after SIGTERM, expected 143"
grep -q "interrupted by signal 15" "$tmp/err" || fail "no 'interrupted' line"
i=0
while [ -n "$(runs_of)" ]; do
    i=$((i + 1))
    [ "$i" -le 100 ] || fail "runs outlived tune: $(runs_of | tr '\n' ' ')"
    sleep 0.1
done
[ ! -e "$tmp/o/report.md" ] || fail "a report was written from half a search"
stopped=$(grep -l "interrupted by signal 15" "$tmp"/o/logs/*.log 2>/dev/null || true)
[ -n "$stopped" ] || fail "no run says it was interrupted"
# shellcheck disable=SC2086
"$b/tessera" $cmd 2>"$tmp/err" >/dev/null || fail "the resumed search failed"
[ -s "$tmp/o/report.md" ] || fail "the resumed search wrote no report"
for log in $stopped; do
    grep -q "resumed from the checkpoint" "$log" || fail "$log: the stopped run did not resume"
done
[ "$(wc -l <"$tmp/o/trials.csv")" = 4 ] || fail "trials.csv: $(cat "$tmp/o/trials.csv")"
echo "tune: a stopped search stopped its run, and resumed it from its checkpoint"
