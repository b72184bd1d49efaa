#!/bin/sh
# tests/fuzz/run.sh SECONDS [NAME...] — builds the libFuzzer harnesses (build.sh) and runs each
# for SECONDS, one after the other (each is one process: the machine's other cores stay free).
# NAME is ini, census, csv, wordnet, wikiqa, movielens, synthetic_mmoe, checkpoint, suite or
# table; none means all.
#
# Prints per harness the inputs it executed (libFuzzer's stat::number_of_executed_units), the
# time and the outcome, and exits 1 when any harness crashed, leaked, hit a sanitizer report,
# the oracle of fuzz_common.h, a timeout or the memory limit; it then prints the report and
# the command that reproduces it from the saved input. Exit 2: a usage or build error.
#
# Environment: FUZZ_OUT (default $TMPDIR/tessera-fuzz-out): OUT/bin (build), OUT/corpus/NAME
# (the corpus each run grows and the next one starts from; the seeds of tests/fuzz/corpus/NAME
# are read, never written), OUT/artifacts/NAME (crash inputs), OUT/logs/NAME.log.
# FUZZ_FLAGS: more libFuzzer flags (e.g. -runs=1000000 to stop at a count before SECONDS).
# What it is not: a corpus minimiser or a CI script (.ci/run calls it).
set -u

usage() { echo "usage: $0 SECONDS [ini|census|csv|wordnet|wikiqa|movielens|synthetic_mmoe|checkpoint|suite|table ...]" >&2
          exit 2; }
[ $# -ge 1 ] || usage
secs=$1
shift
case "$secs" in ''|*[!0-9]*) usage;; esac
all="ini census csv wordnet wikiqa movielens synthetic_mmoe checkpoint suite table"
names=${*:-$all}
for n in $names; do
    case " $all " in
        *" $n "*) ;;
        *) echo "run.sh: no harness '$n' (one of: $all)" >&2; exit 2;;
    esac
done

here=$(cd "$(dirname "$0")" && pwd)
out=${FUZZ_OUT:-${TMPDIR:-/tmp}/tessera-fuzz-out}
mkdir -p "$out" || exit 2
out=$(cd "$out" && pwd)
start=$(date +%s)
sh "$here/build.sh" "$out/bin" >"$out/build.log" 2>&1 || { cat "$out/build.log" >&2
    echo "run.sh: the build failed (log above)" >&2; exit 2; }

# Out-of-memory is a path to test, not a crash: an allocation over 256 MiB returns NULL and the
# code must say so. abort() (the oracle) and UBSan stop the run with a saved input.
ASAN_OPTIONS=${ASAN_OPTIONS:-allocator_may_return_null=1:max_allocation_size_mb=256:detect_leaks=1}
UBSAN_OPTIONS=${UBSAN_OPTIONS:-halt_on_error=1:print_stacktrace=1}
OPENBLAS_NUM_THREADS=1
export ASAN_OPTIONS UBSAN_OPTIONS OPENBLAS_NUM_THREADS

failed=0
printf '%-16s %12s %8s %10s  %s\n' harness executions seconds exec/s outcome
for n in $names; do
    bin="$out/bin/fuzz_$n"
    work="$out/corpus/$n"
    art="$out/artifacts/$n"
    log="$out/logs/$n.log"
    mkdir -p "$work" "$art" "$out/logs" "$out/tmp"
    rm -f "$art"/*
    dict=
    [ -f "$here/$n.dict" ] && dict="-dict=$here/$n.dict"
    t0=$(date +%s)
    # shellcheck disable=SC2086
    # TESSERA_FUZZ_WRITE_SEEDS: fuzz_checkpoint adds genuine files of this build to its corpus
    TMPDIR="$out/tmp" TESSERA_FUZZ_WRITE_SEEDS="$work" "$bin" -max_total_time="$secs" -print_final_stats=1 -timeout=25 \
        -rss_limit_mb=2048 -max_len=16384 -artifact_prefix="$art/" $dict ${FUZZ_FLAGS:-} \
        "$work" "$here/corpus/$n" >"$log" 2>&1
    rc=$?
    t1=$(date +%s)
    execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -n 1)
    [ -n "$execs" ] || execs=0
    dt=$((t1 - t0))
    rate=$((execs / (dt > 0 ? dt : 1)))
    bad='ERROR: (AddressSanitizer|LeakSanitizer|libFuzzer)|runtime error:|fuzz oracle:|SUMMARY: '
    if [ "$rc" -eq 0 ] && ! grep -q -E "$bad" "$log"; then
        printf '%-16s %12s %8s %10s  %s\n' "$n" "$execs" "$dt" "$rate" ok
    else
        failed=1
        printf '%-16s %12s %8s %10s  %s\n' "$n" "$execs" "$dt" "$rate" "FAILED (exit $rc)"
        echo "---- $n: report ($log)"
        grep -n -E -A 40 'ERROR: |runtime error:|fuzz oracle:' "$log" | head -n 80
        for a in "$art"/*; do
            [ -e "$a" ] || continue
            echo "---- reproducer: $a"
            echo "     rerun: TMPDIR=/tmp $bin $a"
            head -c 600 "$a" | od -c | head -n 12
        done
    fi
done
echo "run.sh: $(($(date +%s) - start)) s in all (build included); logs in $out/logs"
exit $failed
