#!/bin/sh
# tests/fuzz/build.sh OUTDIR — builds every libFuzzer harness of tessera with clang, from the
# source tree and without autotools (no configure needed, nothing written to the source tree).
#
#   OUTDIR/fuzz_ini, fuzz_census, fuzz_csv, fuzz_wordnet, fuzz_wikiqa, fuzz_movielens,
#   fuzz_synthetic_mmoe, fuzz_checkpoint, fuzz_suite, fuzz_table
#                           the harnesses (-fsanitize=fuzzer,address,undefined)
#   OUTDIR/plugins/*.so     every plugin, sanitized and coverage-instrumented, for fuzz_ini
#   OUTDIR/obj/             objects, rebuilt only when a source or a core header is newer
#
# The core sources are libtessera's, read from libtessera_la_SOURCES in Makefile.am, so a new
# core file is picked up without editing this script. Environment: CC (default clang, else
# clang-14), FUZZ_CFLAGS (added to the compile flags), JOBS (parallel compiles, default 2).
# What it is not: a replacement for the autotools build, or a runner (run.sh runs them).
set -eu

usage() { echo "usage: $0 OUTDIR" >&2; exit 2; }
[ $# -eq 1 ] || usage

src=$(cd "$(dirname "$0")/../.." && pwd)
mkdir -p "$1"
out=$(cd "$1" && pwd)
if [ -z "${CC:-}" ]; then
    if command -v clang >/dev/null 2>&1; then CC=clang; else CC=clang-14; fi
fi
command -v "$CC" >/dev/null 2>&1 ||
    { echo "build.sh: $CC not found; apt-get install clang" >&2; exit 2; }
JOBS=${JOBS:-2}

pc() { pkg-config "$@" 2>/dev/null || true; }
DEPS_CFLAGS="$(pc --cflags openblas) $(pc --cflags inih) $(pc --cflags zlib)"
DEPS_LIBS="$(pc --libs inih) $(pc --libs zlib) $(pc --libs openblas)"
[ -n "$(pc --libs openblas)" ] || DEPS_LIBS="-linih -lz -lopenblas"
SAN="-fsanitize=address,undefined -fno-sanitize-recover=undefined -fno-omit-frame-pointer"
CFLAGS="-std=c11 -D_POSIX_C_SOURCE=200809L -g -O1 -Wall -Wextra -Wno-unused-parameter $SAN \
-I$src/core $DEPS_CFLAGS ${FUZZ_CFLAGS:-}"

# libtessera's .c files, from Makefile.am (continuation lines joined)
core=$(sed -e ':a' -e '/\\$/N; s/\\\n//; ta' "$src/Makefile.am" |
       sed -n 's/^libtessera_la_SOURCES *= *//p' | tr ' \t' '\n\n' | grep '\.c$')
[ -n "$core" ] || { echo "build.sh: no libtessera_la_SOURCES in $src/Makefile.am" >&2; exit 1; }

mkdir -p "$out/obj/core" "$out/obj/plugins" "$out/plugins"
# The config.h of this build (no configure): core/rundir.c and core/compare.c include config.h
# and fall back on their own PACKAGE_VERSION; fuzz_suite.c defines it for compare.c. Like
# ./configure, .gz data is inflated by ISA-L when libisal-dev is there (core/lines.c);
# FUZZ_ISAL=no fuzzes the zlib path instead.
printf '/* config.h of the fuzz build (build.sh): no configure; sources define their fallbacks */\n' > "$out/obj/config.h.new"
if [ "${FUZZ_ISAL:-yes}" != no ] && [ -n "$(pc --libs libisal)" ]; then
    printf '#define TS_HAVE_ISAL 1\n' >> "$out/obj/config.h.new"
    CFLAGS="$CFLAGS $(pc --cflags libisal)"
    DEPS_LIBS="$DEPS_LIBS $(pc --libs libisal)"
fi
cmp -s "$out/obj/config.h.new" "$out/obj/config.h" 2>/dev/null || mv "$out/obj/config.h.new" "$out/obj/config.h"
rm -f "$out/obj/config.h.new"
CFLAGS="$CFLAGS -I$out/obj"
headers="$src/core/tessera.h $src/core/internal.h $src/core/host.h $src/tests/fuzz/fuzz_common.h \
$src/tests/fuzz/fuzz_dataset.h $out/obj/config.h"

# stale TARGET SOURCES...: true when TARGET is missing or older than a source or a core header
stale() {
    t=$1; shift
    [ -e "$t" ] || return 0
    for s in "$@" $headers; do [ -e "$s" ] && [ "$s" -nt "$t" ] && return 0; done
    return 1
}

# Jobs: one line per command, run JOBS at a time; any failure stops the build.
jobs_file="$out/obj/jobs.txt"
: > "$jobs_file"
job() { printf '%s\n' "$*" >> "$jobs_file"; }
run_jobs() {
    if [ -s "$jobs_file" ]; then
        tr '\n' '\0' < "$jobs_file" | xargs -0 -P "$JOBS" -I{} sh -c '{}' || exit 1
    fi
    : > "$jobs_file"
}

# 1. core objects (coverage for the fuzzer, no main)
objs=""
for f in $core; do
    o="$out/obj/core/$(basename "$f" .c).o"
    objs="$objs $o"
    stale "$o" "$src/$f" && job "$CC $CFLAGS -fsanitize=fuzzer-no-link -c '$src/$f' -o '$o'"
done
# 2. plugins: shared objects whose libtessera symbols come from the harness (-rdynamic), one per
# libtool module of plugins/*.am with every .c file of its _SOURCES (table.so, retrieval.so and
# match.so are built from several). A part compiled as a .so of its own would be a file without
# tessera_plugin_entry, which the host dlcloses: libFuzzer keeps counting into its unmapped
# coverage counters.
table_parts=$(ls "$src"/plugins/datasets/table_*.c 2>/dev/null | tr '\n' ' ')
for f in "$src"/plugins/datasets/*.c; do   # the dataset harnesses link their plugin in as objects
    o="$out/obj/plugins/$(basename "$f" .c).o"
    stale "$o" "$f" && job "$CC $CFLAGS -fsanitize=fuzzer-no-link -c '$f' -o '$o'"
done
awk '/_la_SOURCES[ \t]*=/ { on = 1; line = $0; sub(/.*=/, "", line) }
     on && !/_la_SOURCES/ { line = line " " $0 }
     on && !/\\$/ { n = split(line, w, /[ \t\\]+/); out = ""
                     for (i = 1; i <= n; i++) if (w[i] ~ /\.c$/) out = out " " w[i]
                     print out; on = 0 }' "$src"/plugins/*.am > "$out/obj/modules.txt"
while read -r first rest; do
    [ -n "$first" ] || continue
    name=$(basename "$first" .c)
    srcs="'$src/$first'"
    deps="$src/$first"
    for r in $rest; do srcs="$srcs '$src/$r'"; deps="$deps $src/$r"; done
    so="$out/plugins/$name.so"
    # shellcheck disable=SC2086
    stale "$so" $deps && job "$CC $CFLAGS -fsanitize=fuzzer-no-link -fPIC -shared $srcs \
-o '$so' $(pc --libs openblas) -lm"
done < "$out/obj/modules.txt"
run_jobs

# 3. harnesses
link() {   # link NAME EXTRA_OBJECTS...
    n=$1; shift
    stale "$out/$n" "$src/tests/fuzz/$n.c" $objs "$@" || return 0
    job "$CC $CFLAGS -fsanitize=fuzzer -DFUZZ_SRCDIR='\"$src/tests/fuzz\"' \
-DFUZZ_PLUGIN_DIR='\"$out/plugins\"' '$src/tests/fuzz/$n.c' $objs $* -rdynamic $DEPS_LIBS -ldl -lm \
-o '$out/$n'"
}
link fuzz_ini
link fuzz_census "$out/obj/plugins/census.o"
link fuzz_csv "$out/obj/plugins/csv.o"
link fuzz_wordnet "$out/obj/plugins/textpairs.o"
link fuzz_wikiqa "$out/obj/plugins/textpairs.o"
link fuzz_movielens "$out/obj/plugins/movielens.o"
link fuzz_synthetic_mmoe "$out/obj/plugins/synthetic_mmoe.o"
link fuzz_checkpoint
if stale "$out/fuzz_suite" "$src/tests/fuzz/fuzz_suite.c" "$src/core/compare.c" $objs; then
    job "$CC $CFLAGS -I'$out/obj' -fsanitize=fuzzer '$src/tests/fuzz/fuzz_suite.c' $objs -rdynamic \
$DEPS_LIBS -ldl -lm -o '$out/fuzz_suite'"
fi
# shellcheck disable=SC2046
link fuzz_table "$out/obj/plugins/table.o" $(for p in $table_parts; do
    printf '%s ' "$out/obj/plugins/$(basename "$p" .c).o"; done)
run_jobs
rm -f "$jobs_file"
echo "build.sh: harnesses in $out"
