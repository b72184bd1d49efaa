#!/usr/bin/env bash
# run.sh — the hostile-input corpus of issue 12 (`make check-hostile`): several hundred cases of
# bad INI files, suites, data files, checkpoints, results folders, signals, plugins and plot
# names, each run in a fresh folder under a time limit, each outcome classified:
#   crash    killed by a signal tessera did not ask for, or a sanitizer / "internal" / "a bug" message
#   hang     the time limit passed, or a process tessera started outlived it (an orphan)
#   exec     a witness file appeared: a name or path was run as code (gnuplot, a shell)
#   loss     a file present before the run (a finished run, an unrelated file, the inputs) changed
#   silent   a refusal was expected but tessera exited 0, or a promised property does not hold
#   status   another exit status than the contract's (1 refused, 2 bad command line, 0 done)
#   message  refused, but the message does not name the file, key or section it must name
# The expected outcome of every case is the contract of issue 12, not what any commit does.
# It is not a unit test (those are in `make check`) and it never times performance.
#
#   tests/hostile/run.sh [--jobs N] [--only AREA,...] [--match GLOB] [--keep] [--list] [--show] [-v]
# --show prints every case with the first line tessera said; -v every failure's details.
# Environment: top_builddir, top_srcdir (make sets them), HOSTILE_TIMEOUT (30 s per command),
# HOSTILE_JOBS (2). Ends with `hostile: N passed, N failed`; exits 1 when a case failed.
set -u
here=$(cd "$(dirname "$0")" && pwd)
export SRC=${top_srcdir:-$(cd "$here/../.." && pwd)}
export BUILD=${top_builddir:-$SRC}
export TESSERA=$BUILD/tessera
export HP=$BUILD/tests/hostile/plugins/.libs
export TP=$BUILD/tests/plugins/.libs
export FORGE=$BUILD/tests/hostile/ckpt_forge
export HOSTILE_LIB=$here/lib.sh
export OPENBLAS_NUM_THREADS=1
export TESSERA_PLUGIN_PATH=
export LC_ALL=C
unset TESSERA_DATA_DIR TESSERA_MPI
# Leaks on a refusal's path are not what this corpus looks for (`make check` under ASan does).
export ASAN_OPTIONS=${HOSTILE_ASAN_OPTIONS:-detect_leaks=0:abort_on_error=1}
export UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1}

# ---- one case (run by xargs in a separate process) -----------------------------------------
if [ "${1:-}" = --one ]; then
    f=$2
    id=$(basename "$f" .case)
    W=$HT/w/$id
    H=$HT/h/$id
    export W H
    mkdir -p "$W/precious" "$H"
    cd "$W" || exit 1
    # The precious things every case starts with: a finished run and an unrelated file.
    cp -R "$FX/run_done" precious/run_done
    printf 'notes that are not part of any run\n' >precious/notes.txt
    # shellcheck source=lib.sh
    . "$HOSTILE_LIB"
    # shellcheck disable=SC1090
    . "$f"
    case_body >"$H/case.log" 2>&1
    cd "$W" || exit 1
    check_loss
    w=$(find "$W" "$FX" -name 'pwned*' -print 2>/dev/null | head -n 3 | tr '\n' ' ')
    [ -z "$w" ] || fail exec "a witness file appeared: $w"
    [ "$_nruns" -gt 0 ] || fail harness "the case ran no command: $(tail -n 2 "$H/case.log" | tr '\n' ' ')"
    said=$( { [ -n "$LAST" ] && grep -a -h -v -E -e '^$' -e '^[^ ]+  (epoch [0-9]|test |results in |no checkpoint in )' "$H/$LAST.err" "$H/$LAST.out"; } 2>/dev/null |
        head -n 1 | tr '\t' ' ' | cut -c1-240)
    if [ -z "$CASE_CLASS" ]; then
        printf 'pass\t-\t%s\t%s\t-\t%s (exit %s)\n' "$CASE_AREA" "$CASE_NAME" "$said" "$RC" >"$HT/res/$id"
        [ -n "${HOSTILE_KEEP:-}" ] || rm -rf "$W" "$H"
    else
        printf 'FAIL\t%s\t%s\t%s\t%s\t%s (exit %s)\n' "$CASE_CLASS" "$CASE_AREA" "$CASE_NAME" \
            "$(printf '%s' "$CASE_DETAIL" | tr '\n\t' '  ' | cut -c1-300)" "$said" "$RC" >"$HT/res/$id"
        [ -n "${HOSTILE_KEEP:-}" ] || rm -rf "$W"
    fi
    exit 0
fi

# ---- options -------------------------------------------------------------------------------
jobs=${HOSTILE_JOBS:-2}
only=
match='*'
list=
verbose=
show=
while [ $# -gt 0 ]; do
    case $1 in
        --jobs) jobs=$2; shift ;;
        --only) only=,$2,; shift ;;
        --match) match=$2; shift ;;
        --keep) export HOSTILE_KEEP=1 ;;
        --list) list=1 ;;
        -v) verbose=1 ;;
        --show) show=1 ;;
        *) echo "usage: $0 [--jobs N] [--only AREA,...] [--match GLOB] [--keep] [--list] [--show] [-v]" >&2; exit 2 ;;
    esac
    shift
done

for need in "$TESSERA" "$FORGE" "$HP/dx_assign.so" "$TP/old_abi.so"; do
    [ -e "$need" ] || { echo "hostile: $need is missing: build with \`make check-hostile\`" >&2; exit 2; }
done
# A memory bound for every command (a reader fed /dev/zero must not take the machine); a
# sanitizer build reserves terabytes of address space, so it gets none.
if ldd "$BUILD/.libs/libtessera.so" 2>/dev/null | grep -q -E 'libasan|libubsan' ||
   ldd "$TESSERA" 2>/dev/null | grep -q libasan; then
    export HOSTILE_ULIMIT='ulimit -c 0;'
else
    export HOSTILE_ULIMIT='ulimit -c 0; ulimit -v 2097152;'
fi

export HT
HT=$(mktemp -d "${TMPDIR:-/tmp}/tessera-hostile-XXXXXX")
chmod 755 "$HT"
mkdir -p "$HT/cases" "$HT/w" "$HT/h" "$HT/res"
started=$(date +%s)

# ---- the cases -----------------------------------------------------------------------------
# hc NAME BODY: one case of the current AREA; BODY is shell run in the case's folder (lib.sh).
declare -A seen_name
ncase=0
hc() {
    local name=$1 body=$2
    [ -z "${seen_name[$AREA/$name]:-}" ] || { echo "hostile: two cases named $AREA/$name" >&2; exit 2; }
    seen_name[$AREA/$name]=1
    case $only in *,"$AREA",* | '') ;; *) return 0 ;; esac
    # shellcheck disable=SC2254
    case $AREA/$name in $match) ;; *) return 0 ;; esac
    ncase=$((ncase + 1))
    {
        printf 'CASE_AREA=%q\nCASE_NAME=%q\n' "$AREA" "$name"
        printf 'case_body() {\n%s\n:\n}\n' "$body"
    } >"$HT/cases/$(printf '%04d' "$ncase").case"
}
q() { printf '%q' "$1"; }   # quotes a value for a case body
for f in "$here"/cases/*.sh; do
    AREA=$(basename "$f" .sh)
    # shellcheck disable=SC1090
    . "$f"
done
[ "$ncase" -gt 0 ] || { echo "hostile: no case matches" >&2; rm -rf "$HT"; exit 2; }
if [ -n "$list" ]; then
    for c in "$HT"/cases/*.case; do sed -n 's/^CASE_AREA=\(.*\)/\1/p; s/^CASE_NAME=\(.*\)/\1/p' "$c" | paste -sd/; done
    rm -rf "$HT"
    exit 0
fi

# ---- shared fixtures, made once by the tessera under test ----------------------------------
export FX=$HT/fx
mkdir -p "$FX/ml"
cp "$here"/fixtures/*.ini "$FX/"
cp "$SRC"/tests/fuzz/data/wordnet.tsv "$SRC"/tests/fuzz/data/wikiqa-*.tsv "$FX/"
cp "$SRC/tests/fuzz/data/ml-ratings.csv" "$FX/ml/ratings.csv"
cp "$SRC/tests/fuzz/data/ml-movies.csv" "$FX/ml/movies.csv"
for i in 1 2 3 4 5 6 7 8 9 10; do cat "$SRC/tests/fuzz/data/census.txt"; done >"$FX/census.txt"
# clicks.csv: 200 rows, both classes in every split, a regression column
awk 'BEGIN { print "age,city,device,hours,clicked,spend"
             split("paris lyon nice lille", c, " "); split("mobile desktop tablet", d, " ")
             for (i = 0; i < 200; i++) { a = 18 + (i * 7) % 50; h = 5 + (i * 13) % 50
                 print a "," c[1 + i % 4] "," d[1 + (i * 5) % 3] "," h "," ((a + h + i % 3) % 2) "," (a * 0.5 + h * 0.25) } }' \
    >"$FX/clicks.csv"
fixture() {   # fixture NAME ARGS...: a run the cases rely on; the corpus cannot go on without it
    local name=$1
    shift
    if ! (cd "$FX" && "$TESSERA" run "$@" --quiet) >"$HT/fixture-$name.log" 2>&1; then
        echo "hostile: cannot make the fixture $name (tessera run $*):" >&2
        cat "$HT/fixture-$name.log" >&2
        exit 2
    fi
}
fixture run_done mini.ini --results run_done
fixture ref_ck ck.ini --results ref_ck
fixture other_run mini.ini layer.h.units=5 train.keep_checkpoints=true --results other_run
# run_killed: ck.ini killed by SIGKILL just after its first epoch's checkpoint-best.tsck, so it
# holds checkpoint.tsck, checkpoint.prev.tsck and checkpoint-best.tsck and is not finished.
for attempt in 1 2 3 4 5; do
    rm -rf "$FX/run_killed"
    (cd "$FX" && exec "$TESSERA" run ck.ini --results run_killed --quiet) >/dev/null 2>&1 &
    pid=$!
    n=0
    while [ ! -f "$FX/run_killed/checkpoint-best.tsck" ] && [ $n -lt 6000 ] && kill -0 $pid 2>/dev/null; do
        sleep 0.005
        n=$((n + 1))
    done
    kill -KILL $pid 2>/dev/null
    wait $pid 2>/dev/null
    rm -f "$FX/run_killed"/*.tmp "$FX/run_killed/checkpoint.new.tsck"
    if [ ! -f "$FX/run_killed/metrics.json" ] && [ -f "$FX/run_killed/checkpoint.tsck" ] &&
       [ -f "$FX/run_killed/checkpoint.prev.tsck" ] && [ -f "$FX/run_killed/checkpoint-best.tsck" ]; then
        break
    fi
    [ $attempt -lt 5 ] || { echo "hostile: could not stop ck.ini in its second epoch (5 tries)" >&2; exit 2; }
done
(cd "$FX" && find . -type f -print0 | sort -z | xargs -0 sha1sum) >"$HT/fx.sums"

# ---- run -----------------------------------------------------------------------------------
echo "hostile: $ncase cases and a last check that the shared fixtures are unchanged, $jobs at a time, in $HT"
find "$HT/cases" -name '*.case' -print0 | sort -z | xargs -0 -r -P "$jobs" -n 1 bash "$here/run.sh" --one
(cd "$FX" && sha1sum --quiet -c "$HT/fx.sums" 2>/dev/null) >"$HT/fx.check" ||
    printf 'FAIL\tloss\tresults\tshared-fixtures-unchanged\t%s\t-\n' "$(tr '\n' ' ' <"$HT/fx.check" | cut -c1-300)" >"$HT/res/9999"
[ -e "$HT/res/9999" ] || printf 'pass\t-\tresults\tshared-fixtures-unchanged\t-\t-\n' >"$HT/res/9999"

# ---- report --------------------------------------------------------------------------------
cat "$HT"/res/* >"$HT/results.tsv"
missing=$(( ncase + 1 - $(wc -l <"$HT/results.tsv") ))
awk -F'\t' '$1 == "FAIL" { printf "FAIL [%s] %s/%s: %s\n", $2, $3, $4, $5 }' "$HT/results.tsv"
[ -z "$show" ] || awk -F'\t' '{ printf "%-4s %s/%s: %s\n", $1, $3, $4, $6 }' "$HT/results.tsv"
[ -z "$verbose" ] || for fl in "$HT"/h/*/failures; do [ -f "$fl" ] && { echo "--- $fl"; cat "$fl"; }; done
awk -F'\t' -v missing="$missing" '
    { if ($1 == "FAIL") c[$2]++ }
    END {
        printf "hostile: by class: crash %d, hang %d, loss %d, silent %d, exec %d, status %d, message %d, harness %d\n",
            c["crash"], c["hang"], c["loss"], c["silent"], c["exec"], c["status"], c["message"], c["harness"] + missing
    }' "$HT/results.tsv"
printf 'hostile: by area (failed/cases):%s\n' "$(awk -F'\t' '{ n[$3]++; if ($1 == "FAIL") f[$3]++ }
    END { for (a in n) printf "%s %d/%d\n", a, f[a], n[a] }' "$HT/results.tsv" | sort | sed 's/^/ /' | tr -d '\n')"
passed=$(grep -c '^pass' "$HT/results.tsv")
failed=$(( $(grep -c '^FAIL' "$HT/results.tsv") + missing ))
echo "hostile: $(( $(date +%s) - started )) s; case logs of the failures in $HT/h"
echo "hostile: $passed passed, $failed failed"
if [ "$failed" = 0 ] && [ -z "${HOSTILE_KEEP:-}" ]; then rm -rf "$HT"; fi
[ "$failed" = 0 ]
