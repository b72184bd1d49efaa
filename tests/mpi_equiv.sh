#!/bin/sh
# mpi_equiv.sh — data-parallel training is the same training (docs/distributed.md).
# Census MMoE, same seed, K optimizer steps:
#   two ranks (mpirun --oversubscribe -np 2) with a per-rank batch of B rows
#   one process with a batch of 2B rows
# must end with the same parameters within float rounding (every weight
# |a - b| <= 1e-6 + 1e-4 |b|; measured: max |a - b| 6e-8 after 40 steps, 2e-7 after 467) and
# the same metrics (1e-4), while one process with
# a batch of B rows (what a rank would train without the gradient sum) must NOT pass the same
# comparison: the tolerance tells the two apart. Last, a rank that fails on its own (its data
# file is missing) must end the whole job with its message, never a hang.
# Run by make check in a --with-mpi build (tests/mpi.am); needs mpirun (openmpi-bin).
set -eu
b=${top_builddir:-.}
s=${top_srcdir:-.}
mpirun=${MPIRUN:-mpirun}
K=${MPI_EQUIV_STEPS:-40}
tol="--atol 1e-6 --rtol 1e-4"
B=${MPI_EQUIV_BATCH:-64}
tmp=$(mktemp -d /tmp/tessera-mpi-XXXXXX)
trap 'rm -rf "$tmp"' EXIT
command -v "$mpirun" >/dev/null 2>&1 || { echo "FAIL: $mpirun not found; apt-get install openmpi-bin"; exit 1; }
# Open MPI refuses root unless told; CI runs as root. The BLAS runs one thread per rank.
if [ "$(id -u)" = 0 ]; then
    OMPI_ALLOW_RUN_AS_ROOT=1; OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
    export OMPI_ALLOW_RUN_AS_ROOT OMPI_ALLOW_RUN_AS_ROOT_CONFIRM
fi
OPENBLAS_NUM_THREADS=1; export OPENBLAS_NUM_THREADS
# Shared-memory and loopback transports only: the test never touches a network.
mpi="$mpirun --oversubscribe --mca mpi_yield_when_idle 1 --mca btl self,vader,tcp --mca btl_tcp_if_include lo --mca btl_vader_single_copy_mechanism none -x TESSERA_PLUGIN_PATH -x OPENBLAS_NUM_THREADS"
exp="$s/experiments/census_mmoe.ini"
common="train.max_steps=$K train.epochs=1 train.log_every=10"

run_one() {   # DIR BATCH [more overrides]: one process
    dir=$1; batch=$2; shift 2
    "$b/tessera" run "$exp" $common train.batch="$batch" "$@" --results "$tmp/$dir" --quiet \
        >"$tmp/$dir.log" 2>&1 || { cat "$tmp/$dir.log"; echo "FAIL: single-process run $dir"; exit 1; }
}

# 1. two ranks with B rows each, timed (a hang would hit the timeout)
start=$(date +%s)
timeout 300 $mpi -np 2 "$b/tessera" run "$exp" $common train.batch="$B" --results "$tmp/mpi" \
    --quiet >"$tmp/mpi.log" 2>&1 || { cat "$tmp/mpi.log"; echo "FAIL: mpirun -np 2 tessera run"; exit 1; }
echo "2 ranks x $B rows, $K steps: $(( $(date +%s) - start )) s"
[ -s "$tmp/mpi/params.bin" ] || { cat "$tmp/mpi.log"; echo "FAIL: the MPI run wrote no params.bin"; exit 1; }
# 2. one process with 2B rows (the same global batch), and the control: one process with B rows
run_one one $((2 * B))
run_one half "$B"

echo "--- 2 ranks x $B vs 1 process x $((2 * B)):"
rc=0
"$b/tests/params_diff" "$tmp/mpi/params.bin" "$tmp/one/params.bin" $tol >"$tmp/diff.txt" || rc=$?
tail -n 1 "$tmp/diff.txt"
[ "$rc" = 0 ] || { cat "$tmp/diff.txt"; echo "FAIL: 2 ranks x $B rows did not train the model of 1 process x $((2 * B)) rows"; exit 1; }
echo "--- control, 1 process x $B vs 1 process x $((2 * B)) (must differ):"
rc=0
"$b/tests/params_diff" "$tmp/half/params.bin" "$tmp/one/params.bin" $tol >"$tmp/control.txt" || rc=$?
tail -n 1 "$tmp/control.txt"
[ "$rc" = 1 ] || { cat "$tmp/control.txt"; echo "FAIL: the control (half the batch) passed the tolerance (rc $rc), so the comparison cannot tell runs apart"; exit 1; }

# 3. the same metrics: every valid./test. figure within 1e-4
metrics() { grep -E '"(valid|test)\.' "$1" | tr -d ' ",' | sed 's/:/ /' | sort; }
metrics "$tmp/mpi/metrics.json" >"$tmp/m_mpi"
metrics "$tmp/one/metrics.json" >"$tmp/m_one"
[ -s "$tmp/m_one" ] || { echo "FAIL: no metrics in $tmp/one/metrics.json"; exit 1; }
join "$tmp/m_mpi" "$tmp/m_one" >"$tmp/m_both"
[ "$(wc -l <"$tmp/m_both")" = "$(wc -l <"$tmp/m_one")" ] ||
    { diff "$tmp/m_mpi" "$tmp/m_one"; echo "FAIL: the two runs report different metrics"; exit 1; }
awk '{ d = $2 - $3; if (d < 0) d = -d; if (!(d <= 1e-4)) { print "FAIL: " $1 ": " $2 " (2 ranks) vs " $3 " (1 process)"; bad = 1 } }
     END { exit bad }' "$tmp/m_both" || exit 1
echo "metrics agree: $(grep -c . "$tmp/m_both") figures within 1e-4, e.g. $(grep test.income.auc "$tmp/m_both")"
# The log counts the global batch: the last line of both train.csv shows K * 2B examples.
ex_mpi=$(tail -n 1 "$tmp/mpi/train.csv" | cut -d, -f3)
ex_one=$(tail -n 1 "$tmp/one/train.csv" | cut -d, -f3)
[ "$ex_mpi" = "$ex_one" ] && [ "$ex_one" = $((K * 2 * B)) ] ||
    { echo "FAIL: examples seen: $ex_mpi (2 ranks), $ex_one (1 process), expected $((K * 2 * B))"; exit 1; }
loss_mpi=$(tail -n 1 "$tmp/mpi/train.csv" | cut -d, -f4)
loss_one=$(tail -n 1 "$tmp/one/train.csv" | cut -d, -f4)
awk -v a="$loss_mpi" -v b="$loss_one" 'BEGIN { d = a - b; if (d < 0) d = -d; exit !(d <= 1e-4 * (1 + b)) }' ||
    { echo "FAIL: logged loss $loss_mpi (2 ranks) vs $loss_one (1 process)"; exit 1; }

# 4. rank 1 alone fails (its data file is missing) while rank 0 is ready to train: the job
# must end with rank 1's message and a failure status, well before the timeout.
start=$(date +%s)
rc=0
timeout 120 $mpi -np 1 "$b/tessera" run "$exp" $common --results "$tmp/fail" --quiet : \
    -np 1 "$b/tessera" run "$exp" $common data.path="$tmp/no-such-file.gz" --results "$tmp/fail" \
    --quiet >"$tmp/fail.log" 2>&1 || rc=$?
took=$(( $(date +%s) - start ))
[ "$rc" != 0 ] && [ "$rc" != 124 ] || { cat "$tmp/fail.log"; echo "FAIL: a failing rank gave status $rc after $took s (124: the job hung)"; exit 1; }
grep -q "no-such-file" "$tmp/fail.log" || { cat "$tmp/fail.log"; echo "FAIL: the failing rank's message is not in the job's output"; exit 1; }
echo "a failing rank ended the job in $took s with status $rc and its message"
echo "mpi_equiv: 2 ranks x $B rows == 1 process x $((2 * B)) rows after $K steps"
