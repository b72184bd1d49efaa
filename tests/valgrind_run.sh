#!/bin/sh
# valgrind_run.sh — a short training run under valgrind's memcheck must report no error and no
# definitely lost block: census MMoE (embedding, concat, MMoE, towers, two binary heads, Adam)
# on the first 3,000 rows of the bundled census file, 2 epochs with checkpoints every 5 steps,
# then the same run resumed with a third epoch (checkpoint writing and reading). Skipped (77)
# when valgrind is not installed; .ci/run installs it.
set -u
b=${top_builddir:-.}
s=${top_srcdir:-.}
command -v valgrind >/dev/null 2>&1 || { echo "valgrind not installed: skipped"; exit 77; }
[ -z "${SAN_CFLAGS:-}" ] || { echo "a sanitizer build (valgrind cannot run it): skipped"; exit 77; }
tmp=$(mktemp -d /tmp/tessera-vg-XXXXXX)
trap 'rm -rf "$tmp"' EXIT
gzip -dc "$s/data/census/census-income.test.gz" | head -n 3000 >"$tmp/census.txt"
export OPENBLAS_NUM_THREADS=1
vg() {
    "$b/libtool" --mode=execute valgrind -q --error-exitcode=3 --leak-check=full \
        --errors-for-leak-kinds=definite --show-leak-kinds=definite "$b/tessera" run \
        "$s/experiments/census_mmoe.ini" data.path="$tmp/census.txt" train.checkpoint_every=5 \
        train.keep_checkpoints=true --results "$tmp/run" --quiet "$@" >"$tmp/log" 2>&1
    rc=$?
    if [ $rc -ne 0 ]; then cat "$tmp/log"; echo "FAIL: valgrind (exit $rc) on: $*"; exit 1; fi
}
vg train.epochs=2
vg train.epochs=3 --resume
[ -f "$tmp/run/metrics.json" ] || { echo "FAIL: no metrics.json"; exit 1; }
echo "valgrind: no errors, no definite leaks (train, checkpoint, resume)"
