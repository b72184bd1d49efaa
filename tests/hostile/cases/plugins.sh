# plugins.sh — plugins a third party writes (area "plugins"): a bad .so anywhere in the plugin
# path (another ABI, a helper library that is not a plugin, a file that is not ELF, an empty
# file, a folder named .so, a dangling link, a cut ELF, two files of one name, a file overriding
# a built-in) is skipped with a warning naming it, and commands that do not use it still work
# with the same results; an experiment that uses it is refused naming it. `tessera check-plugin`
# fails (with a sentence, not a crash) the test plugins that break the contract: dx = instead of
# +=, a NULL dx written, a sparse table that never calls ts_param_touch.

# badso KIND: put one bad plugin file of KIND into ./plugdir, first in the plugin path; sets BAD
# (the file's name, which a warning must give)
kinds="old_abi not_plugin not_elf empty_file folder dangling_link cut_elf duplicate override"
setup_kind() {
    case $1 in
        old_abi) echo 'cp "$TP/old_abi.so" plugdir/old_abi.so; BAD=old_abi.so' ;;
        not_plugin) echo 'cp "$TP/not_plugin.so" plugdir/libhelper.so; BAD=libhelper.so' ;;
        not_elf) echo 'printf "#!/bin/sh\necho not a library\n" >plugdir/script.so; BAD=script.so' ;;
        empty_file) echo ': >plugdir/empty.so; BAD=empty.so' ;;
        folder) echo 'mkdir plugdir/folder.so; BAD=folder.so' ;;
        dangling_link) echo 'ln -s nowhere.so plugdir/dangling.so; BAD=dangling.so' ;;
        cut_elf) echo 'head -c 3000 "$BUILD/plugins/layers/.libs/dense.so" >plugdir/cut.so; BAD=cut.so' ;;
        duplicate) echo 'cp "$BUILD/plugins/layers/.libs/activation.so" plugdir/act_a.so
                         cp "$BUILD/plugins/layers/.libs/activation.so" plugdir/act_b.so; BAD=act_b.so' ;;
        override) echo 'cp "$BUILD/plugins/layers/.libs/dense.so" plugdir/my_dense.so; BAD=my_dense.so' ;;
    esac
}
for k in $kinds; do
    pre="mkdir plugdir; $(setup_kind $k); export TESSERA_PLUGIN_PATH=\$W/plugdir:"
    hc "$k-then-plugins" "
        $pre
        T plugins
        succeeded \$BAD
        prop 'the built-in plugins are not listed' grep -q 'mmoe' \$H/main.out"
    hc "$k-then-describe" "
        $pre
        T describe mmoe
        succeeded experts"
    hc "$k-then-run" "
        $pre; fx mini.ini
        T run mini.ini --results out
        succeeded
        prop 'the results differ from the same run without the plugin' same_run out precious/run_done"
    hc "$k-then-check-plugin" "
        $pre
        T check-plugin \"\$BUILD/plugins/losses/.libs/mse.so\"
        succeeded"
    hc "$k-then-version" "
        $pre
        T version
        succeeded"
done
hc override-is-recorded-in-the-run '
    mkdir plugdir; cp "$BUILD/plugins/layers/.libs/dense.so" plugdir/my_dense.so
    export TESSERA_PLUGIN_PATH=$W/plugdir:; fx mini.ini
    T run mini.ini --results out
    succeeded my_dense.so
    prop "the run does not record which dense.so ran" grep -q -s my_dense.so out/config.ini out/metrics.json out/identity.txt'
hc duplicate-used-by-the-experiment '
    mkdir plugdir; cp "$BUILD/plugins/layers/.libs/activation.so" plugdir/act_a.so
    cp "$BUILD/plugins/layers/.libs/activation.so" plugdir/act_b.so
    export TESSERA_PLUGIN_PATH=$W/plugdir:; fx mini.ini
    printf "\n[layer.t]\ntype = tanh\ninput = h\n" >>mini.ini; set_key mini.ini layer.y input t
    bad mini.ini act_a.so act_b.so'
for f in old_abi not_plugin; do
    hc "experiment-loads-$f-by-path" "
        fx mini.ini; cp \"\$TP/$f.so\" ./$f.so; set_key mini.ini layer.h plugin ./$f.so
        bad mini.ini $f.so"
done
hc experiment-loads-a-text-file-by-path '
    fx mini.ini; printf "text\n" >fake.so; set_key mini.ini layer.h plugin ./fake.so
    bad mini.ini fake.so'
hc experiment-loads-a-missing-file-by-path '
    fx mini.ini; set_key mini.ini layer.h plugin ./zz_missing.so
    bad mini.ini zz_missing.so'
hc experiment-loads-a-plugin-of-another-kind '
    fx mini.ini; set_key mini.ini layer.h plugin "$BUILD/plugins/losses/.libs/mse.so"
    bad mini.ini mse.so'
hc control-loss-from-a-file '
    fx mini.ini; set_key mini.ini head.y1 loss "$BUILD/plugins/losses/.libs/mse.so"
    good mini.ini
    prop "not the same results as loss = mse" same_run out precious/run_done'
hc loss-from-a-file-of-another-abi '
    fx mini.ini; cp "$TP/old_abi.so" .; set_key mini.ini head.y1 loss ./old_abi.so
    bad mini.ini old_abi.so'

# -- check-plugin on plugins that break the contract, and on files that are not plugins
hc check-plugin-control-dense '
    T check-plugin "$BUILD/plugins/layers/.libs/dense.so"
    succeeded'
hc check-plugin-control-embedding '
    T check-plugin "$BUILD/plugins/layers/.libs/embedding.so"
    succeeded'
hc check-plugin-wrong-backward '
    T check-plugin "$TP/bad_grad.so"
    refused bad_grad'
hc check-plugin-dx-assigned-not-accumulated '
    T check-plugin "$HP/dx_assign.so"
    refused dx_assign'
# check-plugin may run a backward in a child and report its segfault (or a sanitizer's report of
# it) as a sentence: here only the exit status and "internal"/"a bug" tell a crash of tessera
hc check-plugin-null-dx-written '
    CRASH_RE="internal|a bug"
    T check-plugin "$HP/null_dx.so"
    refused null_dx'
hc check-plugin-sparse-table-never-touched '
    T check-plugin "$HP/sparse_no_touch.so"
    refused sparse_no_touch'
hc check-plugin-all-three-broken-at-once '
    CRASH_RE="internal|a bug"
    T check-plugin "$HP/dx_assign.so" "$HP/null_dx.so" "$HP/sparse_no_touch.so"
    refused dx_assign null_dx sparse_no_touch'
hc check-plugin-broken-after-a-good-one '
    T check-plugin "$BUILD/plugins/layers/.libs/dense.so" "$HP/dx_assign.so"
    refused dx_assign'
hc check-plugin-by-name-from-the-path '
    export TESSERA_PLUGIN_PATH=$HP:
    T check-plugin dx_assign
    refused dx_assign'
hc check-plugin-old-abi '
    T check-plugin "$TP/old_abi.so"
    refused old_abi.so'
hc check-plugin-not-a-plugin '
    T check-plugin "$TP/not_plugin.so"
    refused not_plugin.so'
hc check-plugin-text-file '
    printf "text\n" >fake.so
    T check-plugin fake.so
    refused fake.so'
hc check-plugin-empty-file '
    : >empty.so
    T check-plugin ./empty.so
    refused empty.so'
hc check-plugin-folder '
    mkdir dir.so
    T check-plugin ./dir.so
    refused dir.so'
hc check-plugin-missing-file '
    T check-plugin ./zz_missing.so
    refused zz_missing.so'
hc check-plugin-unknown-name '
    T check-plugin zz_no_such_plugin
    refused zz_no_such_plugin'
hc describe-unknown-name '
    T describe zz_no_such_plugin
    refused zz_no_such_plugin'
hc run-uses-the-broken-plugins-path '
    export TESSERA_PLUGIN_PATH=$HP:; fx mini.ini
    T run mini.ini --results out
    succeeded
    prop "the results differ with the test plugins in the path" same_run out precious/run_done'
