#!/bin/sh
# check_plugins.sh — `tessera check-plugin` on every plugin built in the tree must pass, and on
# the test plugin with a deliberately wrong backward it must fail.
set -u
b=${top_builddir:-.}
plugins=$(ls "$b"/plugins/*/.libs/*.so)
[ -n "$plugins" ] || { echo "no plugins built under $b/plugins"; exit 1; }
# shellcheck disable=SC2086
if ! "$b/tessera" check-plugin $plugins; then
    echo "FAIL: a plugin of the tree does not pass check-plugin"
    exit 1
fi
if "$b/tessera" check-plugin "$b/tests/plugins/.libs/bad_grad.so" >/dev/null 2>&1; then
    echo "FAIL: check-plugin passed a layer whose backward is wrong"
    exit 1
fi
echo "check-plugin fails on the wrong backward, as it should"

# Two plugins of one name in a folder of the plugin path: the loader refuses both and names them.
tmp=$(mktemp -d /tmp/tessera-dup-XXXXXX)
trap 'rm -rf "$tmp"' EXIT
cp "$b/plugins/layers/.libs/dense.so" "$tmp/dense_a.so"
cp "$b/plugins/layers/.libs/dense.so" "$tmp/dense_b.so"
out=$(TESSERA_PLUGIN_PATH="$tmp:" "$b/tessera" plugins 2>&1) && {
    echo "FAIL: tessera plugins accepted two plugins named dense"; exit 1; }
case "$out" in
    *"two plugins define the layer 'dense'"*dense_a.so*dense_b.so*|*"two plugins define the layer 'dense'"*dense_b.so*dense_a.so*)
        echo "duplicate plugin names are refused: $out" ;;
    *) echo "FAIL: unexpected message for duplicate plugins: $out"; exit 1 ;;
esac
