#!/bin/sh
# cli.sh — the command line (core/main.c): every command answers --help and -h with its usage on
# stdout and exit 0, an option a command does not take is refused by name (exit 2), an option's
# value is never read as an option; the manual page names every option a --help names, renders,
# and `make install` installs it; progress: a piped `tessera run` prints progress lines
# (TESSERA_PROGRESS) and its train.csv does not change, a terminal gets one live line, `tessera
# compare` prints elapsed and ETA on every finished run's line and a live line on a terminal;
# gnuplot run in the C locale (LANG unset) does not warn.
# Not here: what compare computes (compare_*.sh), signals (compare_signal.sh, kill_resume.sh).
set -eu
b=${top_builddir:-.}
src=${top_srcdir:-.}
T="$b/tessera"
tmp=$(mktemp -d "${TMPDIR:-/tmp}/tessera-cli-XXXXXX")
trap 'rm -rf "$tmp"' EXIT
fails=0
fail() { echo "FAIL: $*"; [ -f "$tmp/err" ] && sed 's/^/    /' "$tmp/err" | head -20; fails=$((fails + 1)); }
# st EXPECTED ARGS...: runs tessera with stdout in $tmp/out and stderr in $tmp/err
st() {
    want=$1
    shift
    set +e
    "$T" "$@" >"$tmp/out" 2>"$tmp/err"
    got=$?
    set -e
    [ "$got" = "$want" ] || { fail "tessera $* exited $got, expected $want"; return 1; }
    return 0
}
has() { grep -qF -- "$2" "$1" || fail "$1 lacks '$2'"; }

# ---- --help and -h -------------------------------------------------------------------------
# The commands, as the program's own usage lists them (two blanks, then the name), so a command
# added later is held to the same rule.
"$T" --help >"$tmp/usage"
cmds=$(sed -n 's/^  \([a-z][a-z-]*\) .*/\1/p' "$tmp/usage" | sort -u)
for c in run resume compare plot predict evaluate export recommend plugins describe check-plugin \
         version help; do
    echo "$cmds" | grep -qx "$c" || fail "tessera --help does not list $c"
done
for c in $cmds; do
    st 0 "$c" --help || continue
    head -n 1 "$tmp/out" | grep -q "^usage: tessera $c" || fail "$c --help does not start with its usage"
    [ ! -s "$tmp/err" ] || fail "$c --help wrote to stderr"
    cp "$tmp/out" "$tmp/help.$c"
    st 0 "$c" -h && { cmp -s "$tmp/out" "$tmp/help.$c" || fail "$c -h differs from $c --help"; }
    st 0 help "$c" && { cmp -s "$tmp/out" "$tmp/help.$c" || fail "tessera help $c differs from $c --help"; }
done
# --help anywhere, even after arguments that would start work: nothing is run or written
mkdir "$tmp/cwd"
(cd "$tmp/cwd" && "$T" run "$src/experiments/census_mmoe.ini" train.epochs=1 --help >/dev/null) ||
    fail "run EXP --help did not exit 0"
(cd "$tmp/cwd" && "$T" compare "$src/experiments/census_mmoe.ini" --seeds 2 -h >/dev/null) ||
    fail "compare EXP --seeds 2 -h did not exit 0"
[ -z "$(ls -A "$tmp/cwd")" ] || fail "--help after other arguments wrote $(ls -A "$tmp/cwd")"
st 2 nosuchcommand && has "$tmp/err" "unknown command 'nosuchcommand'"
st 2 help nosuchcommand && has "$tmp/err" "unknown command 'nosuchcommand'"
st 2 && has "$tmp/err" "usage: tessera COMMAND"

# ---- unknown options, missing values ---------------------------------------------------------
for c in $cmds; do
    st 2 "$c" --no-such-option || continue
    has "$tmp/err" "tessera $c: unknown option --no-such-option"
    has "$tmp/err" "tessera $c --help"
done
st 2 run x.ini -q && has "$tmp/err" "unknown option -q"
st 2 run x.ini --results && has "$tmp/err" "tessera run: --results needs a value"
st 2 compare x.ini --seeds && has "$tmp/err" "--seeds needs a value"
st 2 predict RUN --out=p.csv --data d && has "$tmp/err" "give --out and its value as two arguments (--out p.csv)"
# an option's value is the value, even when it reads like an option
st 2 plot --out -h && has "$tmp/err" "usage: tessera plot"
st 1 predict "$tmp/none" --data --help && has "$tmp/err" "is not a finished run"

# plot: a 65th run is refused, not dropped
mkdir "$tmp/runs"
for i in $(seq 1 65); do mkdir "$tmp/runs/r$i" && : >"$tmp/runs/r$i/train.csv"; done
# shellcheck disable=SC2046
st 2 plot $(for i in $(seq 1 65); do echo "$tmp/runs/r$i"; done) --out "$tmp/x.png" &&
    has "$tmp/err" "r65 is a 65th run; one plot draws at most 64"

# ---- the manual page ---------------------------------------------------------------------------
man1="$src/docs/tessera.1"
sed 's/\\-/-/g; s/\\f[BIRP]//g; s/\\&//g' "$man1" >"$tmp/man.txt"
for c in $cmds; do
    grep -q "tessera $c" "$tmp/man.txt" || fail "docs/tessera.1 has no 'tessera $c'"
    # the options: a '-' after a blank, a bracket or a comma (not one inside a word)
    for o in $(grep -oE -- '(^|[ [,])--?[a-z][-a-z]*' "$tmp/help.$c" | tr -d ' [,' | sort -u); do
        grep -q -- "$o\\b" "$tmp/man.txt" || fail "docs/tessera.1 lacks $o (tessera $c --help names it)"
    done
done
for s in NAME SYNOPSIS COMMANDS FILES ENVIRONMENT "EXIT STATUS" EXAMPLES; do
    grep -q "^\.SH \"*$s\"*\$" "$man1" || fail "docs/tessera.1 has no $s section"
done
for v in TESSERA_PLUGIN_PATH TESSERA_DATA_DIR TESSERA_PROGRESS; do
    grep -q "^\.B $v\$" "$man1" || fail "docs/tessera.1 does not describe $v"
done
if command -v groff >/dev/null 2>&1; then
    groff -man -ww -z "$man1" 2>"$tmp/err" || fail "groff failed on docs/tessera.1"
    [ ! -s "$tmp/err" ] || fail "groff warns on docs/tessera.1"
fi
if command -v man >/dev/null 2>&1; then
    MANWIDTH=80 man -l "$man1" >"$tmp/man.out" 2>"$tmp/err" || fail "man -l docs/tessera.1 failed"
    has "$tmp/man.out" "EXIT STATUS"
    has "$tmp/man.out" "tessera compare EXP.ini|SUITE.ini"
else
    echo "man not installed: the page's rendering was not checked"
fi
# make install puts it in man1 (only the man pages: install-man)
(cd "$b" && env -u MAKEFLAGS -u MFLAGS make -s install-man DESTDIR="$tmp/inst" >"$tmp/err" 2>&1) ||
    fail "make install-man DESTDIR=... failed"
[ -n "$(find "$tmp/inst" -path '*/man1/tessera.1' 2>/dev/null)" ] || fail "make install does not install man1/tessera.1"

# ---- progress of a run -------------------------------------------------------------------------
exp() {   # exp FILE NAME: a tiny experiment (a fraction of a second)
    cat >"$1" <<INI
[experiment]
name = $2
seed = 1
[data]
type = synthetic_mmoe
rows = 2000, 300, 300
[layer.h]
type = dense
input = x
units = 8
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
lr = 0.01
[train]
epochs = 2
batch = 32
log_every = 10
INI
}
exp "$tmp/a.ini" small_a
exp "$tmp/b.ini" small_b
# piped, with progress lines as often as they may come (every row of train.csv), and with none
TESSERA_PROGRESS=0.000001 "$T" run "$tmp/a.ini" --results "$tmp/p1" 2>"$tmp/p1.err" </dev/null | cat
TESSERA_PROGRESS=0 "$T" run "$tmp/a.ini" --results "$tmp/p0" 2>"$tmp/p0.err" </dev/null | cat
n=$(grep -cE '^small_a  epoch [12]/2  step [0-9]+/126  loss [0-9.]+  [0-9]+ ex/s  elapsed [0-9]+:[0-9]{2}  ETA [0-9]+:[0-9]{2}$' "$tmp/p1.err" || true)
[ "$n" -ge 10 ] || { fail "a piped run printed $n progress lines, expected one per train.csv row (13)"; cat "$tmp/p1.err"; }
! grep -q "step " "$tmp/p0.err" || fail "TESSERA_PROGRESS=0 still printed progress lines"
! grep -q "$(printf '\r')" "$tmp/p1.err" || fail "a piped run wrote carriage returns"
grep -q '^small_a  epoch 2/2 ' "$tmp/p0.err" || fail "the epoch lines are missing"
# the run's files are the same whether progress is printed or not (examples/s aside)
cut -d, -f1-5 "$tmp/p1/train.csv" >"$tmp/t1" && cut -d, -f1-5 "$tmp/p0/train.csv" >"$tmp/t0"
cmp -s "$tmp/t1" "$tmp/t0" || fail "train.csv changed with progress lines"
cmp -s "$tmp/p1/eval.csv" "$tmp/p0/eval.csv" || fail "eval.csv changed with progress lines"
for v in abc -1 10s; do
    TESSERA_PROGRESS=$v st 2 run "$tmp/a.ini" --results "$tmp/pbad" && has "$tmp/err" "TESSERA_PROGRESS=$v"
done
[ ! -e "$tmp/pbad" ] || fail "a bad TESSERA_PROGRESS still ran"

# in the C locale of a fresh container (LANG unset) gnuplot draws without a warning
if command -v gnuplot >/dev/null 2>&1; then
    env -u LANG -u LC_ALL -u LC_CTYPE "$T" plot "$tmp/p0" --out "$tmp/c.png" >/dev/null 2>"$tmp/err" ||
        fail "plot in the C locale failed"
    [ ! -s "$tmp/err" ] || fail "plot in the C locale printed warnings"
fi

# on a terminal (script(1) gives it one): the live line, rewritten with carriage returns
if command -v script >/dev/null 2>&1; then
    script -qec "'$T' run '$tmp/a.ini' --results '$tmp/p2'" /dev/null </dev/null >"$tmp/tty.out" 2>&1 ||
        fail "run under script failed"
    tr '\r' '\n' <"$tmp/tty.out" >"$tmp/tty.txt"
    n=$(grep -cE '^small_a  epoch [12]/2  step [0-9]+/126 .* ETA [0-9]+:[0-9]{2} +$' "$tmp/tty.txt" || true)
    [ "$n" -ge 10 ] || fail "a run on a terminal showed $n live lines"
    grep -q '^small_a  epoch 1/2  [0-9.]*s' "$tmp/tty.txt" || fail "no epoch line on a terminal"
else
    echo "script not installed: the terminal's live lines were not checked"
fi

# ---- progress of compare -----------------------------------------------------------------------
"$T" compare "$tmp/a.ini" "$tmp/b.ini" --seeds 2 --jobs 2 --out "$tmp/c1" >/dev/null 2>"$tmp/c1.err" ||
    { fail "compare failed"; cat "$tmp/c1.err"; }
re='^  \[[1-4]/4, elapsed [0-9]+:[0-9]{2}, ETA ([0-9]+:[0-9]{2}|\?)\] small_[ab] seed [12]: run$'
n=$(grep -cE "$re" "$tmp/c1.err" || true)
[ "$n" = 4 ] || { fail "compare printed $n run lines with elapsed and ETA, expected 4"; cat "$tmp/c1.err"; }
grep -qE '^  \[4/4, elapsed [0-9:]+, ETA 0:00\]' "$tmp/c1.err" || fail "the last run's line has no ETA 0:00"
grep -qE '^  \[[1-3]/4, elapsed [0-9:]+, ETA [0-9]+:[0-9]{2}\]' "$tmp/c1.err" ||
    fail "no ETA from the finished runs' wall times"
! grep -q "$(printf '\r')" "$tmp/c1.err" || fail "compare wrote carriage returns to a file"
! grep -q "step " "$tmp/c1"/logs/small_a/seed-1.log || fail "compare's run logs hold progress lines"
# reused runs
"$T" compare "$tmp/a.ini" "$tmp/b.ini" --seeds 2 --out "$tmp/c1" >/dev/null 2>"$tmp/c2.err"
# (the ETA is unknown, '?', until a run of the next experiment ends, since none has trained)
n=$(grep -cE '^  \[[1-4]/4, elapsed [0-9:]+, ETA ([0-9:]+|\?)\] small_[ab] seed [12]: reused' "$tmp/c2.err" || true)
[ "$n" = 4 ] || { fail "a reused comparison printed $n lines with elapsed and ETA"; cat "$tmp/c2.err"; }
if command -v script >/dev/null 2>&1; then
    script -qec "'$T' compare '$tmp/a.ini' '$tmp/b.ini' --seeds 2 --out '$tmp/c3'" /dev/null \
        </dev/null >"$tmp/ctty.out" 2>&1 || fail "compare under script failed"
    tr '\r' '\n' <"$tmp/ctty.out" >"$tmp/ctty.txt"
    grep -qE '^tessera compare: [0-4] of 4 done, [01] running, elapsed [0-9]+:[0-9]{2}, ETA ([0-9:]+|\?)' \
        "$tmp/ctty.txt" || { fail "no live line from compare on a terminal"; cat "$tmp/ctty.txt"; }
    n=$(grep -cE "$re" "$tmp/ctty.txt" || true)
    [ "$n" = 4 ] || fail "compare on a terminal printed $n run lines, expected 4"
    grep -q "^tessera compare: 0 reused, 4 run, 0 failed" "$tmp/ctty.txt" || fail "the summary line is not a line of its own"
fi

# ---- a suite file holds [suite] only -------------------------------------------------------------
printf '[suite]\nexperiments = a.ini\n[data]\ntype = census\n' >"$tmp/s.ini"
st 1 compare "$tmp/s.ini" --out "$tmp/c4" &&
    has "$tmp/err" "s.ini:3: [data] in a suite file: a suite holds only [suite]"

[ "$fails" = 0 ] || { echo "$fails failures"; exit 1; }
echo "cli: --help of $(echo "$cmds" | wc -w) commands, unknown options, the manual page, run and compare progress"
