#!/bin/sh
# inifiles_run.sh — a run's config.ini reads back: an experiment under a folder path longer than
# inih's line (the `source =` line), a description with " ;" and one of 5 KiB given on the
# command line; the config.ini is then run as an experiment itself and writes the same values.
# A line break in an override is refused with a sentence before anything is written.
set -eu
b=${top_builddir:-.}
tmp=$(mktemp -d /tmp/tessera-inifiles-XXXXXX)
trap 'rm -rf "$tmp"' EXIT
deep="$tmp/a_folder_name_long_enough_to_matter/another_folder_name_long_enough/and_a_third_one/and_a_fourth_one/and_a_fifth_one/and_a_sixth_one_to_pass_the_199_bytes_of_a_line/experiments"
mkdir -p "$deep"
cat >"$deep/small.ini" <<INI
[experiment]
name = small
seed = 1
[data]
type = synthetic_mmoe
rows = 300, 100, 100
[layer.out]
type = dense
input = x
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
batch = 50
INI
long=$(awk 'BEGIN { for (i = 0; i < 500; i++) printf "word%d ;x, ", i }')
"$b/tessera" run "$deep/small.ini" --results "$tmp/r1" --quiet \
    "experiment.description=a ;b # c = d $long" 2>"$tmp/err" || { cat "$tmp/err"; exit 1; }
# the config.ini of the run is an experiment file that loads and runs
"$b/tessera" run "$tmp/r1/config.ini" --results "$tmp/r2" --quiet 2>"$tmp/err" || {
    echo "the run's config.ini does not read back:"; cat "$tmp/err"; exit 1; }
# both runs hold the same resolved description and source (the lines after "description =")
for r in r1 r2; do
    awk '/^(description|source) =/ { on = 1; print; next } on && /^  \\/ { print; next } { on = 0 }' \
        "$tmp/$r/config.ini" >"$tmp/$r.values"
done
cmp "$tmp/r1.values" "$tmp/r2.values" || { diff "$tmp/r1.values" "$tmp/r2.values" | head; exit 1; }
# the value of source, its raw continuation lines joined, is the experiment's path
joined=$(awk '/^source =/ { on = 1; next } on && /^  \\/ { l = substr($0, 4); sub(/\\$/, "", l);
    printf "%s", l; next } { on = 0 }' "$tmp/r1/config.ini")
[ "$joined" = "$(cd "$deep" && pwd -P)/small.ini" ] || {
    echo "source reads back as '$joined'"; exit 1; }
# a line break cannot be written to an INI file: refused where it enters, nothing written
if "$b/tessera" run "$deep/small.ini" --results "$tmp/r3" --quiet "experiment.description=one
two" 2>"$tmp/err"; then echo "a value with a line break was accepted"; exit 1; fi
grep -q "command line: \[experiment\] description: the value holds a line break" "$tmp/err" || {
    cat "$tmp/err"; exit 1; }
[ ! -e "$tmp/r3/config.ini" ]
echo "inifiles_run: ok"
