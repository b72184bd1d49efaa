# suites.sh — `tessera compare` on suites and sweeps (area "suites"): includes that loop or are
# missing or are not files, duplicate experiment names, sweeps that are repeated, too many, too
# long or path-like, bad options, and the cache of finished runs, which must be keyed by what
# produced them (a changed experiment, override or data file reruns; an unchanged one is reused).

hc control-two-experiments '
    exps ma mb; suite s.ini "ma.ini, mb.ini"
    T compare s.ini --out cmp
    succeeded
    prop "two finished runs" test "$(runs_of cmp/runs)" = 2
    prop "no report.md" test -s cmp/report.md'
hc suite-includes-itself '
    exps ma; suite s.ini "ma.ini, s.ini"
    T compare s.ini --out cmp
    refused s.ini'
hc suite-includes-itself-by-suites-key '
    exps ma; suite s.ini "s.ini" suites
    T compare s.ini --out cmp
    refused s.ini'
hc suite-includes-itself-by-another-path '
    mkdir d; exps ma; mv ma.ini d/; suite d/s.ini "ma.ini, ../d/./s.ini"
    T compare d/s.ini --out cmp
    refused s.ini'
hc suite-includes-itself-by-absolute-path '
    exps ma; suite s.ini "ma.ini, $W/s.ini"
    T compare s.ini --out cmp
    refused s.ini'
hc suite-includes-itself-by-symlink '
    exps ma; suite s.ini "ma.ini, link.ini"; ln -s s.ini link.ini
    T compare s.ini --out cmp
    refused "s.ini|link.ini"'
hc two-suites-include-each-other '
    exps ma mb; suite s1.ini "ma.ini, s2.ini"; suite s2.ini "mb.ini, s1.ini"
    T compare s1.ini --out cmp
    refused s1.ini s2.ini'
hc three-suites-in-a-loop '
    exps ma; suite s1.ini "s2.ini"; suite s2.ini "s3.ini"; suite s3.ini "ma.ini, s1.ini"
    T compare s1.ini --out cmp
    refused s1.ini'
hc diamond-include-is-fine '
    exps ma mb; suite s1.ini "s2.ini, s3.ini"; suite s2.ini "ma.ini"; suite s3.ini "ma.ini, mb.ini"
    T compare s1.ini --out cmp
    succeeded
    prop "ma and mb are not run once each" test "$(runs_of cmp/runs)" = 2'
hc missing-include '
    exps ma; suite s.ini "ma.ini, zz_missing.ini"
    T compare s.ini --out cmp
    refused zz_missing.ini
    prop "a run started although the suite is broken" test "$(runs_of cmp)" = 0'
hc include-is-a-directory '
    exps ma; mkdir sub.ini; suite s.ini "ma.ini, sub.ini"
    T compare s.ini --out cmp
    refused sub.ini'
hc include-is-dev-zero '
    T_LIMIT=5
    exps ma; suite s.ini "ma.ini, /dev/zero"
    T compare s.ini --out cmp
    refused /dev/zero'
hc include-is-a-fifo '
    T_LIMIT=5
    exps ma; mkfifo p.ini; suite s.ini "ma.ini, p.ini"
    T compare s.ini --out cmp
    refused p.ini'
hc include-with-an-error '
    exps ma mb; set_key mb.ini train epochs zz; suite s.ini "ma.ini, mb.ini"
    T compare s.ini --out cmp
    refused mb.ini epochs'
hc include-path-of-80-bytes '
    d=$(printf "sub%02d/" $(seq 1 16)); mkdir -p "$d"; exps ma; mv ma.ini "$d"
    suite s.ini "${d}ma.ini"
    T compare s.ini --out cmp
    either "${d}ma.ini"
    [ "$RC" != 0 ] || prop "the experiment did not run" test "$(runs_of cmp/runs)" = 1'
hc suite-without-experiments '
    printf "[suite]\nname = s\n" >s.ini
    T compare s.ini --out cmp
    refused -s "[12]" s.ini'
hc suite-with-empty-list '
    suite s.ini ""
    T compare s.ini --out cmp
    refused -s "[12]" s.ini'
hc suite-unknown-key '
    exps ma; suite s.ini "ma.ini"; printf "zz_key = 1\n" >>s.ini
    T compare s.ini --out cmp
    refused s.ini zz_key'
hc suite-and-experiment-in-one-file '
    exps ma; cp ma.ini both.ini; printf "\n[suite]\nname = s\nexperiments = ma.ini\n" >>both.ini
    T compare both.ini --out cmp
    refused both.ini'
hc suite-indented-key-under-experiments '
    exps ma mb; printf "[suite]\nname = s\nexperiments = ma.ini, mb.ini\n  description = x\n" >s.ini
    T compare s.ini --out cmp
    refused s.ini:4'
hc duplicate-experiment-names '
    exps ma; cp ma.ini ma2.ini; set_key ma2.ini layer.h units 5; suite s.ini "ma.ini, ma2.ini"
    T compare s.ini --out cmp
    either ma
    [ "$RC" != 0 ] || prop "one of two experiments named ma was dropped" test "$(runs_of cmp/runs)" = 2'
hc duplicate-names-on-the-command-line '
    exps ma; cp ma.ini ma2.ini; set_key ma2.ini layer.h units 5
    T compare ma.ini ma2.ini --out cmp
    either ma
    [ "$RC" != 0 ] || prop "one of two experiments named ma was dropped" test "$(runs_of cmp/runs)" = 2'
hc one-experiment-listed-twice '
    exps ma; suite s.ini "ma.ini, ma.ini"
    T compare s.ini --out cmp
    either ma.ini
    [ "$RC" != 0 ] || prop "ma.ini did not run exactly once" test "$(runs_of cmp/runs)" = 1'

# -- sweeps
hc control-one-sweep '
    exps ma
    T compare ma.ini --sweep train.batch=4,8 --out cmp
    succeeded
    prop "not one run per value" test "$(runs_of cmp/runs)" = 2'
hc two-sweeps '
    exps ma
    T compare ma.ini --sweep train.batch=4,8 --sweep layer.h.units=2,5 --out cmp
    refused -s "[12]" sweep
    [ "$RC" != 0 ] || prop "the first --sweep key was not varied" \
        test "$(grep -l "^batch = 4" $(find cmp -name config.ini) | wc -l)" -ge 1'
hc two-sweeps-of-one-key '
    exps ma
    T compare ma.ini --sweep train.batch=4,8 --sweep train.batch=16 --out cmp
    refused -s "[12]" sweep'
hc sweep-of-17-values '
    exps ma
    T compare ma.ini --sweep train.batch=$(seq -s, 1 17) --out cmp
    either -s "[12]" sweep
    [ "$RC" != 0 ] || prop "not 17 runs for 17 values" test "$(runs_of cmp/runs)" = 17'
hc sweep-of-40-values '
    exps ma
    T compare ma.ini --sweep train.batch=$(seq -s, 1 40) --out cmp
    either -s "[12]" sweep
    [ "$RC" != 0 ] || prop "not 40 runs for 40 values" test "$(runs_of cmp/runs)" = 40'
hc sweep-value-of-100-bytes '
    exps ma; v=$(head -c 100 /dev/zero | tr "\0" v)
    T compare ma.ini --sweep "experiment.description=$v,short" --out cmp
    either sweep
    [ "$RC" != 0 ] || prop "the 100-byte value was cut" grep -q "$v" $(find cmp -name config.ini)'
hc sweep-list-of-2000-bytes '
    exps ma
    T compare ma.ini --sweep "train.batch=$(seq -s, 1000 1400)" --out cmp
    either -s "[12]" sweep'
hc sweep-value-with-slash '
    exps ma
    T compare ma.ini --sweep "experiment.description=a/b,c" --out cmp
    either sweep
    [ "$RC" != 0 ] || prop "not one run per value" test "$(runs_of cmp/runs)" = 2'
hc sweep-value-climbing-out '
    exps ma
    T compare ma.ini --sweep "experiment.description=x/../../../../escape_sw,c" --out cmp
    either sweep
    escaped escape_sw'
hc sweep-value-dot-dot '
    exps ma
    T compare ma.ini --sweep "experiment.description=..,." --out cmp
    either sweep
    [ "$RC" != 0 ] || prop "not one run per value" test "$(runs_of cmp/runs)" = 2'
hc sweep-without-values '
    exps ma
    T compare ma.ini --sweep train.batch= --out cmp
    refused -s "[12]" sweep'
hc sweep-without-equals '
    exps ma
    T compare ma.ini --sweep train.batch --out cmp
    refused -s 2 sweep'
hc sweep-of-unknown-key '
    exps ma
    T compare ma.ini --sweep train.zz_key=1,2 --out cmp
    refused zz_key'
hc sweep-with-empty-values '
    exps ma
    T compare ma.ini --sweep train.batch=4,,8 --out cmp
    either -s "[12]" sweep batch'

# -- options
for opt in "--seeds 0" "--seeds 1000" "--seeds abc" "--seeds -1" "--jobs 0" "--jobs -2" "--jobs abc" "--seeds" "--out"; do
    hc "option-${opt// /=}" "
        exps ma
        T compare ma.ini $opt
        refused -s 2 ${opt%% *}"
done
hc out-is-a-file '
    exps ma; printf "x\n" >afile
    T compare ma.ini --out afile
    refused afile'
hc out-is-a-finished-run '
    exps ma
    T compare ma.ini --out precious/run_done
    either run_done'

# -- the cache of finished runs
hc unchanged-rerun-reuses '
    exps ma
    T compare ma.ini --out cmp
    sha=$(sha1sum cmp/runs/ma/seed-1/metrics.json cmp/runs/ma/seed-1/params.bin)
    mutable cmp
    T compare ma.ini --out cmp
    succeeded
    prop "an unchanged run was trained again" test "$sha" = "$(sha1sum cmp/runs/ma/seed-1/metrics.json cmp/runs/ma/seed-1/params.bin)"'
hc changed-experiment-reruns '
    exps ma
    T compare ma.ini --out cmp
    set_key ma.ini layer.h units 6
    snapshot; mutable cmp
    T compare ma.ini --out cmp
    succeeded
    prop "the report still holds the run of the old file" grep -q "^units = 6" $(find cmp/runs -name config.ini)'
hc changed-override-reruns '
    exps ma
    T compare ma.ini layer.h.units=6 --out cmp
    mutable cmp
    T compare ma.ini layer.h.units=7 --out cmp
    succeeded
    prop "the report still holds the run of the old override" grep -q "^units = 7" $(find cmp/runs -name config.ini)'
hc changed-data-file-reruns '
    fx csv.ini cx.ini; cp "$FX/clicks.csv" .
    T compare cx.ini --out cmp
    sha=$(sha1sum $(find cmp/runs -name metrics.json))
    awk -F, -v OFS=, "NR > 1 { \$4 = (\$4 * 7) % 53 } { print }" clicks.csv >c; mv c clicks.csv
    snapshot; mutable cmp
    T compare cx.ini --out cmp
    succeeded
    prop "a run on the old data file was reused" test "$sha" != "$(sha1sum $(find cmp/runs -name metrics.json))"'
hc half-done-run-is-resumed '
    exps ma
    T compare ma.ini --out cmp
    rm cmp/runs/ma/seed-1/metrics.json
    snapshot; mutable cmp
    T compare ma.ini --out cmp
    succeeded
    prop "the run was not finished again" test -f cmp/runs/ma/seed-1/metrics.json'
