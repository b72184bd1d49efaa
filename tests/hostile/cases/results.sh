# results.sh — results folders (area "results"): a run never destroys or mixes up an earlier one
# (refused without --resume or --overwrite; --if-changed reuses an identical finished run),
# folders are locked while a run writes them, paths that are not a run folder are refused, and
# a read-only folder or a file-size limit gets a sentence naming the file. Every case starts with
# precious/run_done (a finished run of mini.ini) and precious/notes.txt, checked after it.

hc second-run-into-a-finished-folder '
    fx mini.ini
    T run mini.ini --results precious/run_done
    refused run_done'
hc second-run-into-the-default-folder '
    fx mini.ini
    T run mini.ini
    snapshot
    T run mini.ini
    refused results/mini'
hc second-run-with-another-override '
    fx mini.ini
    T run mini.ini layer.h.units=5 --results precious/run_done
    refused run_done'
hc second-run-that-fails-late '
    fx mini.ini
    T run mini.ini train.early_stop=y1.zz --results precious/run_done
    refused run_done'
hc resume-flag-on-a-finished-run '
    fx mini.ini
    T run "$FX/mini.ini" --results precious/run_done --resume
    either run_done'
hc tessera-resume-on-a-finished-run '
    T resume precious/run_done
    refused run_done'
hc tessera-resume-twice-on-a-finished-run '
    T resume precious/run_done
    T resume precious/run_done
    refused run_done'
hc overwrite-replaces '
    fx mini.ini; mutable precious/run_done
    T run mini.ini experiment.seed=5 --results precious/run_done --overwrite
    succeeded
    prop "the replaced run is not finished" finished precious/run_done
    prop "the replaced run is not the new one" grep -q "^seed = 5" precious/run_done/config.ini'
hc overwrite-with-a-bad-override-touches-nothing '
    fx mini.ini
    T run mini.ini train.epochs=abc --results precious/run_done --overwrite
    refused epochs'
hc overwrite-that-fails-late-leaves-no-mixture '
    fx mini.ini; mutable precious/run_done
    old=$(cat precious/run_done/metrics.json precious/run_done/config.ini | sha1sum)
    T run mini.ini experiment.seed=5 train.early_stop=y1.zz --results precious/run_done --overwrite
    refused early_stop
    if [ -f precious/run_done/metrics.json ]; then
        prop "the folder mixes the new config.ini with the old metrics.json" \
            test "$old" = "$(cat precious/run_done/metrics.json precious/run_done/config.ini | sha1sum)"
    fi'
hc resume-and-overwrite-together '
    fx mini.ini
    T run mini.ini --results precious/run_done --resume --overwrite
    refused -s "[12]" "resume|overwrite"'
hc if-changed-on-an-identical-run '
    T run "$FX/mini.ini" --results precious/run_done --if-changed
    succeeded "up to date"'
hc if-changed-with-another-override '
    mutable precious/run_done
    T run "$FX/mini.ini" layer.h.units=5 --results precious/run_done --if-changed
    succeeded
    prop "the changed run was not rerun" grep -q "^units = 5" precious/run_done/config.ini
    prop "the rerun did not finish" finished precious/run_done'
hc if-changed-after-the-experiment-file-changed '
    mutable precious/run_done
    fx mini.ini; set_key mini.ini optimizer lr 0.01; set_key mini.ini experiment source "$FX/mini.ini"
    T run mini.ini --results precious/run_done --if-changed
    succeeded
    prop "the changed run was not rerun" grep -q "^lr = 0.01" precious/run_done/config.ini'
hc if-changed-on-an-unfinished-run-resumes '
    ckrun
    T run "$FX/ck.ini" --results run --if-changed
    succeeded
    prop "not bit-identical to the run never stopped" same_run run "$FX/ref_ck"'
hc if-changed-on-a-folder-of-other-files '
    T run "$FX/mini.ini" --results precious --if-changed
    refused precious'

# -- paths that are not a run folder
hc results-dot '
    fx mini.ini; printf "decoy\n" >train.csv; printf "decoy" >checkpoint.tsck
    T run mini.ini --results .
    refused results
    escaped metrics.json; escaped config.ini'
hc results-root '
    fx mini.ini; unprivileged
    T run mini.ini --results /
    refused /'
hc results-is-a-file '
    fx mini.ini; printf "x\n" >afile
    T run mini.ini --results afile
    refused afile'
hc results-below-a-file '
    fx mini.ini; printf "x\n" >afile
    T run mini.ini --results afile/sub
    refused afile'
hc results-holds-other-files '
    fx mini.ini
    T run mini.ini --results precious
    refused precious'
hc results-is-a-symlink-to-a-finished-run '
    fx mini.ini; ln -s precious/run_done link
    T run mini.ini --results link
    refused link'
hc results-is-dev-null '
    fx mini.ini
    T run mini.ini --results /dev/null
    refused /dev/null'
hc results-empty-string '
    fx mini.ini
    T run mini.ini --results ""
    refused -s "[12]" results'
hc results-without-a-value '
    fx mini.ini
    T run mini.ini --results
    refused -s 2 results'
hc results-with-trailing-slash '
    fx mini.ini
    T run mini.ini --results out/
    succeeded
    prop "no finished run in out" finished out'
hc results-with-a-newline '
    fx mini.ini
    T run mini.ini --results "$(printf "a\nb")"
    either results
    [ "$RC" != 0 ] || reload "$(printf "a\nb")"'
hc results-into-an-empty-folder '
    fx mini.ini; mkdir empty
    T run mini.ini --results empty
    succeeded
    prop "no finished run in empty" finished empty'
hc resume-of-a-folder-of-other-files '
    T resume precious
    refused precious'
hc resume-of-a-file '
    T resume precious/notes.txt
    refused notes.txt'
hc resume-of-nothing '
    T resume zz_nothere
    refused zz_nothere'

# -- permissions and limits: a sentence naming the file, never a crash
hc read-only-parent-folder '
    fx mini.ini; mkdir ro; chmod 555 ro; unprivileged
    T run mini.ini --results ro/run
    refused ro/run'
hc read-only-empty-results-folder '
    fx mini.ini; mkdir -m 555 ro_empty; unprivileged
    T run mini.ini --results ro_empty
    refused ro_empty'
hc read-only-unfinished-run-resumed '
    ckrun; chmod -R a-w run; chmod a+r ck.ini; unprivileged
    T resume run
    refused run'
hc file-size-limit-on-the-checkpoint '
    fx ck.ini; T_PRE="ulimit -f 64"
    T run ck.ini --results fsz
    refused fsz'
hc file-size-limit-on-config-ini '
    fx mini.ini; T_PRE="ulimit -f 1"
    T run mini.ini --results fsz
    refused fsz'

# -- two runs in one folder at once: one is refused, the other finishes a clean run
hc two-runs-into-one-folder-at-once '
    fx ck.ini
    T_bg a run ck.ini --results same
    T_bg b run ck.ini --results same
    T_wait a; ra=$RC
    T_wait b; rb=$RC
    if [ "$ra" = 0 ]; then LAST=b; RC=$rb; else LAST=a; RC=$ra; fi
    refused same
    prop "neither run finished" test "$ra" = 0 -o "$rb" = 0
    prop "train.csv holds NUL bytes" no_nul same/train.csv
    prop "not bit-identical to a run alone" same_run same "$FX/ref_ck"'
hc two-resumes-of-one-run-at-once '
    ckrun
    T_bg a resume run
    T_bg b resume run
    T_wait a; ra=$RC
    T_wait b; rb=$RC
    if [ "$ra" = 0 ]; then LAST=b; RC=$rb; else LAST=a; RC=$ra; fi
    refused run
    prop "neither resume finished" test "$ra" = 0 -o "$rb" = 0
    prop "not bit-identical to the run never stopped" same_run run "$FX/ref_ck"'
