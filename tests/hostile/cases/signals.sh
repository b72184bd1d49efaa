# signals.sh — signals (area "signals"): SIGTERM, SIGINT or SIGHUP to `tessera run` in the middle
# of training ends it with 128 + the signal after a checkpoint, one line saying the folder is
# consistent and how to resume; `tessera resume` then finishes it bit-identical to a run never
# stopped. A signal to `tessera compare` leaves no child run behind (the runner looks for any
# process left in tessera's session), and the same compare then finishes.

for s in TERM INT HUP; do
    case $s in TERM) n=15 ;; INT) n=2 ;; HUP) n=1 ;; esac
    for at in 10 70; do
        hc "sig$s-to-run-at-step-${at}00" "
            fx ck.ini; T_SIGOK=$((128 + n))
            T_bg main run ck.ini --results run
            wait_for 30 trained run $at || fail harness 'the run never reached step ${at}00'
            sig main $s
            T_wait main
            case \$RC in
                $((128 + n))) _needles 'tessera resume|--resume' ;;
                0) fail harness 'the run finished before the signal' ;;
                *) [ \"\$RC\" -ge 124 ] || fail status \"exited \$RC, not $((128 + n)), on SIG$s\" ;;
            esac
            prop 'no checkpoint left to resume from' test -n \"\$(ls run/*.tsck 2>/dev/null)\"
            T resume run
            succeeded
            prop 'not bit-identical to the run never stopped' same_run run \"\$FX/ref_ck\""
    done
done
hc sigterm-twice-to-run '
    fx ck.ini; T_SIGOK=143
    T_bg main run ck.ini --results run
    wait_for 30 trained run 20 || fail harness "the run never reached step 2000"
    sig main TERM; sleep 0.05; sig main TERM
    T_wait main
    refused -s 143 "tessera resume|--resume"
    T resume run
    succeeded
    prop "not bit-identical to the run never stopped" same_run run "$FX/ref_ck"'
hc sigterm-to-resume '
    ckrun; T_SIGOK=143
    T_bg main resume run
    wait_for 30 trained run 60 || fail harness "the resume never reached step 6000"
    sig main TERM
    T_wait main
    refused -s 143 "tessera resume|--resume"
    T resume run
    succeeded
    prop "not bit-identical to the run never stopped" same_run run "$FX/ref_ck"'
hc sigterm-then-run-resume '
    fx ck.ini; T_SIGOK=143
    T_bg main run ck.ini --results run
    wait_for 30 trained run 30 || fail harness "the run never reached step 3000"
    sig main TERM
    T_wait main
    refused -s 143 "tessera resume|--resume"
    T run ck.ini --results run --resume
    succeeded
    prop "not bit-identical to the run never stopped" same_run run "$FX/ref_ck"'
for s in TERM INT HUP; do
    case $s in TERM) n=15 ;; INT) n=2 ;; HUP) n=1 ;; esac
    hc "sig$s-to-compare" "
        fx ck.ini; sed 's/^name = ck\$/name = ck2/' ck.ini >ck2.ini; T_SIGOK=$((128 + n))
        T_bg main compare ck.ini ck2.ini train.epochs=6 --out cmp --jobs 2
        wait_for 30 trained cmp/runs/ck/seed-1 10 || fail harness 'no child run reached step 1000'
        sig main $s
        T_wait main
        [ \"\$RC\" != 0 ] || fail silent 'compare exited 0 although it was stopped'
        T compare ck.ini ck2.ini train.epochs=6 --out cmp --jobs 2
        succeeded
        prop 'the compare run after the signal did not finish both runs' test \"\$(runs_of cmp/runs)\" = 2"
done
