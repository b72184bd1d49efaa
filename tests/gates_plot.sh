#!/bin/sh
# gates_plot.sh — `tessera compare` draws the gate heatmaps of gates.csv for any shape: a
# one-task MMoE with 2 experts (a 1 x 2 matrix, which gnuplot's `with image` refused to draw:
# "Image grid must be at least 4 points"), every level of a PLE layer, and two mixture layers of
# one experiment (gates.csv keeps both). Each gate script is drawn again on gnuplot's svg terminal
# to read what it shows: one printed value per row of gates.csv, a panel per level.
set -eu
b=$(cd "${top_builddir:-.}" && pwd)
command -v gnuplot >/dev/null 2>&1 || { echo "SKIP: gnuplot is not installed"; exit 77; }
real_gnuplot=$(command -v gnuplot)
tmp=$(mktemp -d "${TMPDIR:-/tmp}/tessera-gates-XXXXXX")
trap '[ -n "${KEEP_TMP:-}" ] || rm -rf "$tmp"' EXIT   # KEEP_TMP=1 keeps it to look at
fail() { echo "FAIL: $*"; exit 1; }

# A gnuplot that keeps a copy of each script and its data files, then runs the real one.
mkdir "$tmp/bin" "$tmp/cap"
cat >"$tmp/bin/gnuplot" <<EOF
#!/bin/sh
if [ "\${1:-}" = plot.gp ]; then
    d=\$(mktemp -d "$tmp/cap/XXXXXX")
    cp ./*.gp ./*.dat "\$d"/ 2>/dev/null || true
fi
exec "$real_gnuplot" "\$@"
EOF
chmod +x "$tmp/bin/gnuplot"
PATH="$tmp/bin:$PATH"
export PATH
cd "$tmp"

exp_head() {   # an experiment on synthetic_mmoe, up to its layers
    printf '[experiment]\nname = %s\nseed = 1\n[data]\ntype = synthetic_mmoe\nrows = 400, 100, 100\nd = 6\n' "$1"
}
tail_heads() {   # towers and heads for y1 (and y2), optimizer, training
    for k in $2; do
        printf '[layer.o%s]\ntype = dense\ninput = %s.y%s\nunits = 1\n' "$k" "$1" "$k"
        printf '[head.y%s]\ntype = regression\ninput = o%s\nlabel = y%s\nloss = mse\n' "$k" "$k" "$k"
    done
    printf '[optimizer]\ntype = adam\nlr = 0.01\n[train]\nepochs = 2\nbatch = 100\n'
}
{ exp_head one_task; printf '[layer.mix]\ntype = mmoe\ninput = x\nexperts = 2\nunits = 4\ntasks = y1\n'
  tail_heads mix 1; } >one.ini
{ exp_head ple_two; printf '[layer.mix]\ntype = ple\ninput = x\ntasks = y1, y2\nlevels = 2\n'
  printf 'shared_experts = 1\ntask_experts = 1\nexpert_units = 4\n'; tail_heads mix "1 2"; } >ple.ini
{ exp_head stacked; printf '[layer.lower]\ntype = mmoe\ninput = x\nexperts = 3\nunits = 4\ntasks = a, b\n'
  printf '[layer.cat]\ntype = concat\ninput = lower.a, lower.b\n'
  printf '[layer.upper]\ntype = ple\ninput = cat\ntasks = y1, y2\nlevels = 2\nexpert_units = 4\n'
  tail_heads upper "1 2"; } >stacked.ini

"$b/tessera" compare one.ini ple.ini stacked.ini --jobs 1 --out "$tmp/cmp" >"$tmp/cmp.out" 2>"$tmp/cmp.err" ||
    { cat "$tmp/cmp.err"; fail "compare exited $?"; }
grep -q "gnuplot" "$tmp/cmp.err" && { cat "$tmp/cmp.err"; fail "gnuplot complained"; }
for n in one_task ple_two stacked; do
    f="$tmp/cmp/plots/gates_1_$n.png"
    [ "$(od -An -tx1 -N8 "$f" | tr -d ' \n')" = 89504e470d0a1a0a ] || fail "$f is not a PNG"
    grep -q "(plots/gates_1_$n.png)" "$tmp/cmp/report.md" || fail "report.md does not show $f"
done

# gates.csv keeps every mixture: lower's level 1 and upper's levels 1 and 2
g="$tmp/cmp/runs/stacked/seed-1/gates.csv"
[ -f "$g" ] || g=$(find "$tmp/cmp/runs" -path '*stacked*' -name gates.csv | sed -n 1p)
[ "$(sed -n 1p "$g")" = "layer,level,gate,expert,weight" ] || fail "gates.csv header: $(sed -n 1p "$g")"
[ "$(cut -d, -f1,2 "$g" | sed 1d | sort -u | tr '\n' ' ')" = "lower,1 upper,1 upper,2 " ] ||
    { cat "$g"; fail "gates.csv does not hold every mixture level"; }

# Each gate map drawn on the svg terminal: the printed values (two decimals, one per row of the
# run's gates.csv) and the panel titles.
texts() {   # the text elements of the captured gate script whose title names experiment $1
    d=$(grep -l "^set multiplot .*'$1: mean gate weight" "$tmp"/cap/*/plot.gp | sed -n 1p)
    [ -n "$d" ] || fail "no gate script was captured for $1"
    d=$(dirname "$d")
    sed -e 's/^set terminal pngcairo/set terminal svg/' -e "s/^set output 'out.png'/set output 'out.svg'/" \
        "$d/plot.gp" >"$d/svg.gp"
    (cd "$d" && "$real_gnuplot" svg.gp 2>"$d/err") || { cat "$d/err"; fail "svg redraw of $1"; }
    [ ! -s "$d/err" ] || { cat "$d/err"; fail "gnuplot warned drawing $1"; }
    sed -n 's/^[[:space:]]*<text[^>]*>\(.*\)<\/text>$/\1/p' "$d/out.svg"
}
values() { grep -c '^[01]\.[0-9][0-9]$' || true; }
for n in one_task ple_two stacked; do
    csv=$(find "$tmp/cmp/runs" -path "*$n*" -name gates.csv | sed -n 1p)
    rows=$(($(wc -l <"$csv") - 1))
    t=$(texts "$n")
    [ "$(printf '%s\n' "$t" | values)" -eq "$rows" ] ||
        { printf '%s\n' "$t"; cat "$csv"; fail "$n: the map prints not one value per row of gates.csv ($rows)"; }
done
texts one_task | grep -qx '0.[0-9][0-9]' || fail "one_task: no value drawn"
t=$(texts stacked)
for p in "lower level 1, seed 1" "upper level 1, seed 1 (grey: not one of the gate's experts)" \
         "upper level 2, seed 1 (grey: not one of the gate's experts)"; do
    printf '%s\n' "$t" | grep -qxF "$p" || { printf '%s\n' "$t"; fail "stacked: no panel '$p'"; }
done
echo "gate maps: a 1 x 2 gate, PLE's two levels and two mixture layers drawn, one value per gates.csv row"
