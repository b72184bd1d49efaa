#!/bin/sh
# check_plugins.sh — `tessera check-plugin` on every plugin built in the tree must pass, and on
# the test plugin with a deliberately wrong backward it must fail. (Duplicate names in the plugin
# path and the other broken test plugins: tests/abi.sh.)
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

