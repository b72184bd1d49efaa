#!/bin/sh
# out_of_tree.sh — the plugin author's path, end to end: install tessera (DESTDIR), build
# docs/example/scale.c against it with pkg-config alone, pass check-plugin, and use the new
# plugin in an experiment through TESSERA_PLUGIN_PATH.
set -eu
b=${top_builddir:-.}
s=${top_srcdir:-.}
tmp=$(mktemp -d /tmp/tessera-oot-XXXXXX)
trap 'rm -rf "$tmp"' EXIT
# Only the library, the header and tessera.pc: installing the plugins would make libtool relink
# them in the build tree while other tests load them.
make -s -C "$b" install-libLTLIBRARIES install-includeHEADERS install-pkgconfigDATA DESTDIR="$tmp" \
    >"$tmp/install.log" 2>&1 ||
    { cat "$tmp/install.log"; echo "FAIL: make install"; exit 1; }
pc=$(find "$tmp" -name tessera.pc | head -n 1)
[ -n "$pc" ] || { echo "FAIL: tessera.pc was not installed"; exit 1; }
PKG_CONFIG_PATH=$(dirname "$pc"); export PKG_CONFIG_PATH
PKG_CONFIG_SYSROOT_DIR=$tmp; export PKG_CONFIG_SYSROOT_DIR
[ -n "$(find "$tmp" -name tessera.h)" ] || { echo "FAIL: header not installed"; exit 1; }
# shellcheck disable=SC2046
${CC:-cc} -std=c11 -Wall -Wextra -Werror -O2 -shared -fPIC -o "$tmp/scale.so" \
    "$s/docs/example/scale.c" $(pkg-config --cflags --libs tessera) ${SAN_CFLAGS:-}
"$b/tessera" check-plugin "$tmp/scale.so"
cat >"$tmp/exp.ini" <<INI
[experiment]
name = oot
seed = 1
[data]
type = synthetic_mmoe
rows = 2000, 200, 200
[layer.s]
type = scale
input = x
init = 0.5
[layer.out]
type = dense
input = s
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
batch = 64
INI
TESSERA_PLUGIN_PATH="$tmp:" "$b/tessera" run "$tmp/exp.ini" --results "$tmp/run" --quiet
grep -q '"test.y1.mse"' "$tmp/run/metrics.json" || { echo "FAIL: no metrics"; exit 1; }
echo "out-of-tree plugin built with pkg-config, checked and used in a run"
