#!/bin/sh
# plot_injection.sh — no user-controlled string is ever interpreted by gnuplot or a shell
# (issue 12). Hostile strings (quotes, backslash, $(...), backticks, a gnuplot system() call,
# @macro, %s, enhanced-text markup, spaces, non-ASCII, and where the file system allows them a
# newline, a control character and a byte that is not UTF-8) are used as (a) experiment names in
# `tessera compare --quick`, (b) run folders given to `tessera plot`, (c) the --out path of
# `tessera plot`, (d) the --out folder of compare, and as sweep values. It checks that no
# witness file W appears anywhere, that every plot is a PNG where it was asked for, that the
# scripts handed to gnuplot hold no path, and, by drawing each captured script again with
# gnuplot's svg terminal, that every label is shown as itself; summary.csv and report.md keep
# their shape (quoted CSV fields, escaped Markdown).
set -eu
b=$(cd "${top_builddir:-.}" && pwd)
command -v gnuplot >/dev/null 2>&1 || { echo "SKIP: gnuplot is not installed"; exit 77; }
real_gnuplot=$(command -v gnuplot)
tmp=$(mktemp -d /tmp/tessera-inj-XXXXXX)
trap '[ -n "${KEEP_TMP:-}" ] || rm -rf "$tmp"' EXIT   # KEEP_TMP=1 keeps it to look at
fail() { echo "FAIL: $*"; exit 1; }

# A gnuplot that keeps a copy of each script and its data files, then runs the real one.
mkdir "$tmp/bin" "$tmp/cap" "$tmp/cwd"
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
cd "$tmp/cwd"

is_png() {   # the 8 magic bytes of a PNG file
    [ -f "$1" ] && [ "$(head -c 8 "$1" | od -An -tx1 | tr -d ' \n')" = 89504e470d0a1a0a ]
}
no_witness() {
    w=$(find "$tmp" -name W -print)
    [ -z "$w" ] || fail "$1: a witness file was created: $w"
    [ ! -e "$tmp/cwd/W" ] || fail "$1: W in the working folder"
}

# ---- (a) hostile experiment names, (d) a hostile --out folder of compare ----------------------
nl='
'
tab=$(printf '\t')
cr=$(printf '\r')
i=0
files=""
for name in "q'uote" 'd"quote' 'back\slash' '$(touch W)' '`touch W`' "'; system('touch W'); '" \
        "x' . system('touch W') . '" '@macro @@ @' '%s %d %%' 'with  spaces' "Jürgen's ✓" \
        'a_b^{c}&d'; do
    i=$((i + 1))
    cat >"e$i.ini" <<EOF
[experiment]
name = $name
seed = 1
quick = train.epochs=2
[data]
type = synthetic_mmoe
rows = 400, 100, 100
[layer.mix]
type = mmoe
input = x
experts = 2
units = 4
tasks = y1, y2
[layer.o1]
type = dense
input = mix.y1
units = 1
[layer.o2]
type = dense
input = mix.y2
units = 1
[head.y1]
type = regression
input = o1
label = y1
loss = mse
[head.y2]
type = regression
input = o2
label = y2
loss = mse
[optimizer]
type = adam
lr = 0.01
[train]
epochs = 4
batch = 100
EOF
    files="$files e$i.ini"
done
cmpout="$tmp/cwd/O'Brien \$(touch W) \`touch W\` Jürgen ✓ %s"
# shellcheck disable=SC2086
"$b/tessera" compare $files --quick --jobs 2 --out "$cmpout" >"$tmp/cmp.out" 2>"$tmp/cmp.err" ||
    { cat "$tmp/cmp.err"; fail "compare exited $?"; }
no_witness "compare with hostile experiment names"
[ -s "$cmpout/report.md" ] || fail "compare wrote no report.md"
grep -q "gnuplot" "$tmp/cmp.err" && { cat "$tmp/cmp.err"; fail "gnuplot complained"; }
# every plot the report links exists and is a PNG: loss curves, 3 bar charts, 12 gate maps
n=0
for f in $(sed -n 's/^!\[.*\](plots\/\([^)]*\))$/\1/p' "$cmpout/report.md"); do
    is_png "$cmpout/plots/$f" || fail "plots/$f is linked from report.md but is not a PNG"
    n=$((n + 1))
done
[ "$n" -eq 16 ] || { cat "$cmpout/report.md"; fail "expected 16 plots in report.md, found $n"; }
[ "$(ls "$cmpout/plots" | grep -c '^gates_1_.*\.png$')" -eq 12 ] || { ls "$cmpout/plots"; fail "gate maps collide"; }
[ -z "$(find "$tmp/cwd" -name '.tessera-plot-*')" ] || fail "a temporary plot folder was left behind"
# the tables keep their shape: a name's quote is doubled inside a quoted CSV field, and a
# Markdown cell never ends inside a name
grep -q '^"d""quote",' "$cmpout/summary.csv" || { cat "$cmpout/summary.csv"; fail "summary.csv: d\"quote not quoted"; }
grep -q '^"d""quote"' "$cmpout/significance.csv" 2>/dev/null || grep -q 'd""quote' "$cmpout/significance.csv" 2>/dev/null ||
    [ "$(wc -l <"$cmpout/significance.csv")" -le 1 ] || fail "significance.csv: d\"quote not quoted"
grep -qF 'back\\slash' "$cmpout/report.md" || { grep 'slash' "$cmpout/report.md"; fail "report.md: back\\slash not escaped"; }
grep -qF '\`touch W\`' "$cmpout/report.md" || { grep 'touch' "$cmpout/report.md"; fail "report.md: backticks not escaped"; }

# ---- sweep values as tic labels (gnuplot reads explicit tic labels as format strings) ----------
"$b/tessera" compare e1.ini --quick --sweep "experiment.description=%s x,it's \$(touch W)" \
    --out "$tmp/cwd/sweep" >"$tmp/sw.out" 2>"$tmp/sw.err" || { cat "$tmp/sw.err"; fail "sweep compare"; }
no_witness "compare --sweep with hostile values"
ls "$tmp"/cwd/sweep/plots/sweep_1_*.png >/dev/null 2>&1 || fail "no sweep plot"
for f in "$tmp"/cwd/sweep/plots/*.png; do is_png "$f" || fail "$f is not a PNG"; done

# ---- (b) hostile run folders and (c) hostile --out paths of `tessera plot` --------------------
src="$cmpout/runs/with  spaces/seed-1"
[ -s "$src/train.csv" ] || fail "no run to copy"
k=0
ff=$(printf '\377')
soh=$(printf '\001')
set --   # every folder, for one plot of all of them
for h in "q'uote" 'd"quote' 'back\slash' '$(touch W)' '`touch W`' "'; system('touch W'); '" \
        "a';system('touch W');'" '@macro' '%s %d' 'with  spaces' "Jürgen's ✓" 'a_b^{c}&d' \
        "s'\$(touch W)'" "new${nl}line" "tab${tab}and${cr}cr" "bad${ff}byte" "ctl${soh}x" '-dash'; do
    k=$((k + 1))
    cp -R "$src" "./$h"
    "$b/tessera" plot "./$h" --out "./$h.png" >"$tmp/p.out" 2>"$tmp/p.err" ||
        { cat "$tmp/p.err"; fail "tessera plot on folder #$k exited $?"; }
    is_png "./$h.png" || fail "tessera plot --out #$k: no PNG where asked"
    [ ! -s "$tmp/p.err" ] || { cat "$tmp/p.err"; fail "tessera plot #$k printed warnings"; }
    [ "$(cat "$tmp/p.out")" = "./$h.png" ] || fail "tessera plot #$k printed another path"
    set -- "$@" "./$h"
done
no_witness "tessera plot with hostile folders and --out paths"
# all of them in one plot: every folder's name is a key entry
"$b/tessera" plot "$@" --out "$tmp/cwd/all \`touch W\`.png" >/dev/null 2>"$tmp/p.err" ||
    { cat "$tmp/p.err"; fail "tessera plot of all folders"; }
is_png "$tmp/cwd/all \`touch W\`.png" || fail "no PNG of all folders"
no_witness "tessera plot of all folders"

# ---- refusals: --out that names a folder, --out in a folder that does not exist ----------------
if "$b/tessera" plot "./with  spaces" --out "$tmp/cwd/" 2>"$tmp/p.err"; then fail "--out DIR/ accepted"; fi
grep -q "names a folder; give a file name such as curves.png" "$tmp/p.err" || { cat "$tmp/p.err"; fail "message"; }
if "$b/tessera" plot "./with  spaces" --out "$tmp/nope/x.png" 2>"$tmp/p.err"; then fail "missing folder accepted"; fi
grep -q "cannot make a temporary folder beside $tmp/nope/x.png to draw it in: No such file or directory" \
    "$tmp/p.err" || { cat "$tmp/p.err"; fail "message for a missing folder"; }

# ---- a gnuplot that fails: its words, the plot named, the script kept, exit status 1 -----------
mkdir "$tmp/badbin"
printf '#!/bin/sh\n[ "$1" = --version ] && exit 0\necho "plot.gp line 3: no such terminal" >&2\nexit 1\n' \
    >"$tmp/badbin/gnuplot"
chmod +x "$tmp/badbin/gnuplot"
if PATH="$tmp/badbin:$PATH" "$b/tessera" plot "./with  spaces" --out "./bad'.png" 2>"$tmp/p.err"; then
    fail "a failing gnuplot was not reported"
fi
grep -q "^tessera plot: gnuplot could not draw ./bad'.png; it said:\$" "$tmp/p.err" &&
    grep -q "^plot.gp line 3: no such terminal\$" "$tmp/p.err" &&
    grep -q "^the script and its data are kept in ./.tessera-plot-.* (gnuplot 5 with the pngcairo" \
        "$tmp/p.err" || { cat "$tmp/p.err"; fail "message for a failing gnuplot"; }
[ ! -e "./bad'.png" ] || fail "a failed plot left a PNG"
kept=$(find . -maxdepth 1 -name '.tessera-plot-*')
[ -f "$kept/plot.gp" ] || fail "the failed script was not kept"
rm -rf "$kept"

# ---- the scripts gnuplot was given: no path in any, every label drawn as itself ----------------
ncap=0
for d in "$tmp"/cap/*/; do
    ncap=$((ncap + 1))
    grep -qF "$tmp" "$d/plot.gp" && { cat "$d/plot.gp"; fail "a path reached a gnuplot script"; }
    grep -q '^set terminal pngcairo noenhanced' "$d/plot.gp" || fail "a script without noenhanced"
    # the same script on the svg terminal (text kept as text); enhanced text would show as tspans
    sed -e 's/^set terminal pngcairo/set terminal svg/' -e "s/^set output 'out.png'/set output 'out.svg'/" \
        "$d/plot.gp" >"$d/svg.gp"
    (cd "$d" && "$real_gnuplot" svg.gp 2>"$d/err") || { cat "$d/err"; fail "svg redraw"; }
    grep -q '<tspan' "$d/out.svg" && fail "enhanced text in $d"
    sed -n 's/^[[:space:]]*<text[^>]*>\(.*\)<\/text>$/\1/p' "$d/out.svg" >>"$tmp/texts"
done
[ "$ncap" -ge 20 ] || fail "only $ncap gnuplot scripts were captured"
has_text() {   # a text element that is exactly $1 (svg escapes & and <)
    e=$(printf '%s' "$1" | sed -e 's/&/\&amp;/g' -e 's/</\&lt;/g')
    grep -qxF -- "$e" "$tmp/texts" || fail "the label '$1' is not drawn as itself"
}
for name in "q'uote" 'd"quote' 'back\slash' '$(touch W)' '`touch W`' "'; system('touch W'); '" \
        "x' . system('touch W') . '" '@macro @@ @' '%s %d %%' 'with  spaces' "Jürgen's ✓" \
        'a_b^{c}&d' '%s x' "it's \$(touch W)" 'new line' 'tab and cr' '-dash' \
        "a';system('touch W');'" "s'\$(touch W)'" 'bad�byte' 'ctl�x'; do
    has_text "$name"
done
no_witness "the end"
echo "plots: $ncap gnuplot scripts, no shell, no interpretation, every label drawn as itself"
