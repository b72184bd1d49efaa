# plots.sh — plots and reports (area "plots"): experiment names, run folders, sweep values and
# --out paths with quotes, backslashes, $(), backticks, newlines, system(, spaces and non-ASCII
# reach gnuplot; no user string may ever run as code (a witness file pwned_* must never appear),
# and a legitimate name works: the PNG exists where asked. The runner checks the witness files.

n=0
for out in "a'b.png" 'a"b.png' 'a\b.png' '$(touch pwned_o1).png' '`touch pwned_o2`.png' \
           "x';system('touch pwned_o3');'.png" "$(printf "a'\n!touch pwned_o4\n'.png")" \
           "x' . system('touch pwned_o5') . '.png" 'Bob s plot.png' 'é.png' "$(printf 'a\nb.png')" \
           'a;touch pwned_o6;.png'; do
    n=$((n + 1))
    hc "plot-out-$n" "
        o=$(q "$out")
        T plot precious/run_done --out \"\$o\"
        either out
        [ \"\$RC\" != 0 ] || prop 'no PNG at the --out path' is_png \"\$o\""
done
n=0
for d in "Bob's runs" 'a"b' 'a\b' '$(touch pwned_d1)' '`touch pwned_d2`' \
         "x' . system('touch pwned_d3') . '" 'é runs' "$(printf "x'\n!touch pwned_d4\n'")"; do
    n=$((n + 1))
    hc "plot-run-folder-$n" "
        d=$(q "$d"); cp -R precious/run_done \"\$d\"
        T plot \"\$d\" --out p.png
        succeeded
        prop 'no PNG' is_png p.png"
done
hc plot-two-runs-one-hostile '
    d="x'"'"' . system('"'"'touch pwned_d5'"'"') . '"'"'"; cp -R precious/run_done "$d"
    T plot precious/run_done "$d" --out p.png
    succeeded
    prop "no PNG" is_png p.png'
hc plot-out-into-a-missing-folder '
    T plot precious/run_done --out zz_missing/p.png
    refused zz_missing'
hc plot-out-is-a-folder '
    mkdir p.png
    T plot precious/run_done --out p.png
    refused p.png'
hc plot-out-is-a-run-folder '
    T plot precious/run_done --out precious/run_done
    refused run_done'
hc plot-of-a-folder-without-a-run '
    T plot precious --out p.png
    refused precious'
n=0
for name in "x' . system('touch pwned_e1') . '" 'a"b' '$(touch pwned_e2)' '`touch pwned_e3`' "Bob's" 'a\b' '名前' \
            "x'; system('touch pwned_e4'); '"; do
    n=$((n + 1))
    hc "compare-experiment-name-$n" "
        exps ma; set_key ma.ini experiment name $(q "$name")
        exps mb
        T compare ma.ini mb.ini --out cmp
        either name
        [ \"\$RC\" != 0 ] || { prop 'no report.md' test -s cmp/report.md; prop 'fewer than 3 plots' plots_in cmp 3; }"
done
n=0
for out in "cmp'\$(touch pwned_f1)" "cmp' . system('touch pwned_f2') . '" 'cmp`touch pwned_f3`' "Bob's cmp"; do
    n=$((n + 1))
    hc "compare-out-$n" "
        exps ma mb; o=$(q "$out")
        T compare ma.ini mb.ini --out \"\$o\"
        either out
        [ \"\$RC\" != 0 ] || { prop 'no report.md in the --out folder' test -s \"\$o/report.md\"; prop 'fewer than 3 plots' plots_in \"\$o\" 3; }"
done
n=0
for v in "x' . system('touch pwned_g1') . '" "a'b" '$(touch pwned_g2)'; do
    n=$((n + 1))
    hc "compare-sweep-value-$n" "
        exps ma
        T compare ma.ini --sweep $(q "experiment.description=$v,plain") --out cmp
        either sweep
        [ \"\$RC\" != 0 ] || prop 'fewer than 3 plots' plots_in cmp 3"
done
