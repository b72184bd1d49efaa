#!/bin/sh
# reference_current.sh — docs/reference.md is generated from the plugins' own key lists by
# `tessera describe --all --markdown`; this fails when a plugin's keys changed and the page
# was not regenerated (make reference).
set -eu
b=${top_builddir:-.}
s=${top_srcdir:-.}
if ! "$b/tessera" describe --all --markdown | diff -u "$s/docs/reference.md" -; then
    echo "FAIL: docs/reference.md is stale; run 'make reference' and commit it"
    exit 1
fi
echo "docs/reference.md is current"
