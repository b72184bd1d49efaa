#!/bin/sh
# abi.sh — the plugin path and check-plugin from the command line:
#  - broken files in the plugin path (another ABI, a .so that is no plugin, a file that is no
#    shared object, an ops table too small) are skipped: `tessera plugins` lists them with the
#    reason, a run that does not need them succeeds with one warning line per skipped file, and
#    a run that asks for one of them gets "no layer plugin named" plus the reasons;
#  - plugins compiled before an op was appended, or against a newer tessera.h, load and run;
#  - two plugins of one name in one folder: listed, a warning, an error only when used;
#  - a plugin of the same kind and name as a built-in, earlier in the path, wins with a warning
#    that names both files;
#  - check-plugin fails the deliberately broken test plugins with the right sentence, survives a
#    crash, and builds with keys given on the command line.
set -u
b=${top_builddir:-.}
tp="$b/tests/plugins/.libs"
tmp=$(mktemp -d /tmp/tessera-abi-XXXXXX)
trap 'rm -rf "$tmp"' EXIT
fail() { echo "FAIL: $*"; exit 1; }
# has TEXT NEEDLE...: every needle occurs in the text
has() {
    t=$1; shift
    for n in "$@"; do case "$t" in *"$n"*) ;; *) echo "missing: $n"; echo "in: $t"; return 1 ;; esac; done
    return 0
}

# exp TYPE: an experiment whose hidden layer is TYPE (dense gets units = 4)
exp() {
    keys=""
    [ "$1" = dense ] && keys="units = 4"
    cat >"$tmp/$1.ini" <<INI
[experiment]
name = abi_$1
seed = 1
[data]
type = synthetic_mmoe
rows = 300, 100, 100
d = 6
[layer.h]
type = $1
input = x
$keys
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
type = sgd
lr = 0.01
[train]
epochs = 1
batch = 50
INI
    echo "$tmp/$1.ini"
}

# ---- broken files in the plugin path -----------------------------------------------------------
mkdir "$tmp/broken"
cp "$tp/old_abi.so" "$tp/not_plugin.so" "$tp/ops_sizes.so" "$tmp/broken/"
printf 'this is not a shared object\n' >"$tmp/broken/junk.so"
P="$tmp/broken:"
out=$(TESSERA_PLUGIN_PATH=$P "$b/tessera" plugins 2>&1) || fail "tessera plugins failed: $out"
has "$out" "dense" "ops_before_init" "ops_from_future" \
    "$tmp/broken/old_abi.so: built for tessera plugin ABI" \
    "$tmp/broken/not_plugin.so: not a tessera plugin" \
    "$tmp/broken/junk.so: cannot load" \
    "$tmp/broken/ops_sizes.so (entry 2): the layer 'ops_too_small' has an ops table of 8 bytes" ||
    fail "tessera plugins does not list the skipped files with their reasons"
echo "tessera plugins lists the broken files as skipped, with reasons"

TESSERA_PLUGIN_PATH=$P "$b/tessera" run "$(exp dense)" --results "$tmp/r1" --quiet 2>"$tmp/err" ||
    { cat "$tmp/err"; fail "a run that needs none of the broken files failed"; }
n=$(grep -c '^tessera: warning: skipped ' "$tmp/err")
[ "$n" -eq 4 ] || { cat "$tmp/err"; fail "expected one warning per skipped file (4), got $n"; }
echo "a run that does not need them succeeds, with $n warnings"

TESSERA_PLUGIN_PATH=$P "$b/tessera" run "$(exp old_abi)" --results "$tmp/r2" --quiet 2>"$tmp/err" &&
    fail "a run of a plugin that exists only in a skipped file succeeded"
has "$(cat "$tmp/err")" "[layer.h] type = old_abi: no layer plugin named 'old_abi'" \
    "$tmp/broken/old_abi.so (built for tessera plugin ABI" "$tmp/broken/junk.so (cannot load" ||
    fail "no 'no plugin named' error with the skipped files' reasons"
TESSERA_PLUGIN_PATH=$P "$b/tessera" run "$(exp nosuch)" --results "$tmp/r3" --quiet 2>"$tmp/err" &&
    fail "a run of a missing plugin succeeded"
has "$(cat "$tmp/err")" "no layer plugin named 'nosuch'" "Skipped in the plugin path (4;" "not_plugin.so (not a tessera plugin" ||
    fail "the missing-plugin error does not give the skipped files' reasons"
echo "a run that asks for a broken or missing plugin names it and the skipped files' reasons"

for t in ops_before_init ops_from_future; do
    TESSERA_PLUGIN_PATH=$P "$b/tessera" run "$(exp $t)" --results "$tmp/r_$t" --quiet 2>"$tmp/err" ||
        { cat "$tmp/err"; fail "the plugin $t (another size of ops table) did not run"; }
done
echo "plugins with a shorter (older) and a longer (newer) ops table run"

# ---- two plugins of one name in one folder -------------------------------------------------------
mkdir "$tmp/dup"
cp "$tp/bad_grad.so" "$tmp/dup/a.so"
cp "$tp/bad_grad.so" "$tmp/dup/b.so"
P="$tmp/dup:"
out=$(TESSERA_PLUGIN_PATH=$P "$b/tessera" plugins 2>&1) || fail "tessera plugins failed on a duplicate: $out"
has "$out" "$tmp/dup/a.so  [not usable: $tmp/dup/b.so defines the same name in the same folder]" ||
    fail "tessera plugins does not show the duplicate"
TESSERA_PLUGIN_PATH=$P "$b/tessera" run "$(exp dense)" --results "$tmp/r4" --quiet 2>"$tmp/err" ||
    { cat "$tmp/err"; fail "a duplicate name stopped a run that does not use it"; }
has "$(cat "$tmp/err")" "tessera: warning: two plugins define the layer 'bad_grad' in one folder: $tmp/dup/a.so and $tmp/dup/b.so" ||
    fail "no warning for the duplicate"
TESSERA_PLUGIN_PATH=$P "$b/tessera" run "$(exp bad_grad)" --results "$tmp/r5" --quiet 2>"$tmp/err" &&
    fail "a run that uses a name defined twice succeeded"
has "$(cat "$tmp/err")" "two plugins define the layer 'bad_grad' in one folder: $tmp/dup/a.so and $tmp/dup/b.so; remove or rename one" ||
    fail "the duplicate's error does not name both files"
echo "a duplicate name is listed, warned about, and an error only where it is used"

# ---- a plugin named like a built-in, earlier in the path -----------------------------------------
mkdir "$tmp/shadow"
cp "$b/plugins/layers/.libs/dense.so" "$tmp/shadow/dense.so"
P="$tmp/shadow:"
TESSERA_PLUGIN_PATH=$P "$b/tessera" run "$(exp dense)" --results "$tmp/r6" --quiet 2>"$tmp/err" ||
    { cat "$tmp/err"; fail "the run with a shadowing dense failed"; }
has "$(cat "$tmp/err")" "warning: the layer 'dense' of " "/plugins/layers/.libs/dense.so is hidden by the one of $tmp/shadow/dense.so" ||
    fail "no warning naming both files of the shadowed plugin"
out=$(TESSERA_PLUGIN_PATH=$P "$b/tessera" plugins 2>&1)
has "$out" "[hidden by $tmp/shadow/dense.so]" || fail "tessera plugins does not show what is hidden"
echo "a plugin that hides a built-in is used, with a warning naming both files"

# ---- check-plugin ----------------------------------------------------------------------------------
out=$("$b/tessera" check-plugin "$tp/assign_grad.so" 2>&1) && fail "check-plugin passed assign_grad.so"
has "$out" "FAIL layer assign_dx" "assign_dx: backward does not add to the gradient of input 0" \
    "never \`dx[i] = ...\`" "FAIL layer assign_dw" \
    "assign_dw: backward does not add to the gradient of parameter layer.check.a" ||
    fail "check-plugin's accumulation sentence is missing"
echo "check-plugin fails a backward that assigns instead of accumulating"

out=$("$b/tessera" check-plugin "$tp/null_dx.so" 2>&1)
rc=$?
[ $rc -eq 1 ] || fail "check-plugin on null_dx.so exited $rc (a crash of tessera itself?): $out"
has "$out" "FAIL layer null_dx" "null_dx: backward crashed (" "when input 0's gradient is NULL" \
    "0 passed, 1 failed" || fail "check-plugin does not report the NULL-dx crash as a failed check"
"$b/tessera" check-plugin "$tp/null_dx.so" safe=true >"$tmp/out" 2>&1 ||
    { cat "$tmp/out"; fail "check-plugin null_dx.so safe=true: the key given did not take effect"; }
has "$(cat "$tmp/out")" "layer null_dx with keys: safe=true" || fail "the keys used are not shown"
echo "check-plugin reports a crash on a NULL dx as a failed check, and builds with keys given"

out=$("$b/tessera" check-plugin "$tp/no_touch.so" 2>&1) && fail "check-plugin passed no_touch.so"
has "$out" "no_touch: backward wrote gradients into" "rows of the sparse parameter layer.check.table without marking them with ts_param_touch" ||
    fail "check-plugin's ts_param_touch sentence is missing"
echo "check-plugin fails a sparse table that never calls ts_param_touch"

out=$("$b/tessera" check-plugin dense units=7 2>&1) || fail "check-plugin dense units=7: $out"
has "$out" "with keys: units=7 activation=tanh" "at batch 1:" "at batch 9:" "ok   layer dense" ||
    fail "check-plugin dense units=7 did not build with the key or did not vary the batch"
out=$("$b/tessera" check-plugin dense unitz=7 2>&1) && fail "check-plugin accepted an unknown key"
has "$out" "unknown key 'unitz'" "did you mean 'units'" || fail "no message for an unknown key"
printf 'x,y\n' >"$tmp/d.csv"
i=0; while [ $i -lt 50 ]; do echo "$i,$((i % 2))" >>"$tmp/d.csv"; i=$((i + 1)); done
out=$("$b/tessera" check-plugin csv path="$tmp/d.csv" dense=x labels=y 2>&1) ||
    fail "check-plugin csv with keys: $out"
has "$out" "dataset csv: 2 fields" || fail "check-plugin did not open csv with the keys given"
echo "PASS"
