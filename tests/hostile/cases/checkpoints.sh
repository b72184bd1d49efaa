# checkpoints.sh — damaged and forged checkpoints (area "checkpoints"), on a run of ck.ini killed
# in its second epoch (checkpoint.tsck, checkpoint.prev.tsck, checkpoint-best.tsck). A damaged or
# forged latest checkpoint is passed over with a sentence naming it, the previous one is used,
# and the run ends bit-identical to the one never stopped; with none usable the run is refused
# and nothing in the folder changes. ckpt_forge writes fields with a valid CRC, so only checks of
# the fields themselves can refuse them (docs/checkpoints.md has the layout).

hc control-resume '
    ckrun
    ck_resumes'
hc control-run-resume '
    ckrun
    T run ck.ini --results run --resume
    succeeded
    prop "not bit-identical to the run never stopped" same_run run "$FX/ref_ck"'

# -- damaged files
hc zero-length '
    ckrun; : >run/checkpoint.tsck
    ck_resumes checkpoint.tsck'
for cut in 4 8 16 40 1000 half -1; do
    hc "cut-short-at-$cut" "
        ckrun; s=\$(wc -c <run/checkpoint.tsck)
        case $cut in half) n=\$((s / 2)) ;; -1) n=\$((s - 1)) ;; *) n=$cut ;; esac
        head -c \$n run/checkpoint.tsck >c; mv c run/checkpoint.tsck
        ck_resumes checkpoint.tsck"
done
for blk in HEAD META CONF 'RNG ' ORDR PARM OPTS BEST 'END '; do
    hc "flipped-byte-in-${blk% }" "
        ckrun; at=\$(\"\$FORGE\" run/checkpoint.tsck list | awk -v b=$(q "$blk") '\$1 == b || \$1 \" \" == b { print \$2; exit }')
        [ -n \"\$at\" ] || fail harness 'no block $blk'
        [ $(q "$blk") != 'END ' ] || at=\$((at - 12))
        printf '\\377' | dd of=run/checkpoint.tsck bs=1 seek=\$at conv=notrunc 2>/dev/null
        ck_resumes checkpoint.tsck"
done
hc flipped-magic '
    ckrun; printf "XSCK" | dd of=run/checkpoint.tsck bs=1 conv=notrunc 2>/dev/null
    ck_resumes checkpoint.tsck'
hc format-version-2 '
    ckrun; printf "\002" | dd of=run/checkpoint.tsck bs=1 seek=4 conv=notrunc 2>/dev/null
    ck_resumes checkpoint.tsck'
hc garbage-file '
    ckrun; head -c 5000 /dev/urandom >run/checkpoint.tsck
    ck_resumes checkpoint.tsck'
# a folder where the latest checkpoint goes: passed over on resume; the next checkpoint cannot
# take its name, so the run may also stop there with a sentence naming it
hc directory-named-checkpoint '
    ckrun; rm run/checkpoint.tsck; mkdir run/checkpoint.tsck
    T resume run
    either checkpoint.tsck
    [ "$RC" != 0 ] || prop "not bit-identical to the run never stopped" same_run run "$FX/ref_ck"'
hc symlink-to-dev-zero '
    T_LIMIT=10; ckrun; rm run/checkpoint.tsck; ln -s /dev/zero run/checkpoint.tsck
    ck_resumes checkpoint.tsck'
hc fifo-named-checkpoint '
    T_LIMIT=10; ckrun; rm run/checkpoint.tsck; mkfifo run/checkpoint.tsck
    ck_resumes checkpoint.tsck'
hc symlink-loop '
    ckrun; rm run/checkpoint.tsck; ln -s checkpoint.tsck run/checkpoint.tsck
    ck_resumes checkpoint.tsck'
hc another-experiments-checkpoint '
    ckrun; cp "$FX/other_run/checkpoint.tsck" run/checkpoint.tsck
    ck_resumes checkpoint.tsck'
hc conf-edited-and-rehashed '
    ckrun; at=$("$FORGE" run/checkpoint.tsck list | awk "\$1 == \"CONF\" { print \$2 }")
    off=$(grep -a -b -o "seed = 7" run/checkpoint.tsck | head -n1 | cut -d: -f1)
    printf 9 | dd of=run/checkpoint.tsck bs=1 seek=$((off + 7)) conv=notrunc 2>/dev/null
    forge run/checkpoint.tsck rehash
    ck_resumes checkpoint.tsck'

# -- forged fields, CRC fixed: BLOCK OFFSET TYPE VALUE NAME
while read -r blk off type val name; do
    [ -n "$blk" ] || continue
    hc "forged-$name" "
        ckrun; forge run/checkpoint.tsck set $blk $off $type $val
        ck_resumes checkpoint.tsck"
done <<'FIELDS'
HEAD 0 u32 99 plugin-abi
HEAD 4 u32 0 byte-order-mark
HEAD 8 u64 12345 configuration-hash
HEAD 16 u32 0 optimizer-slots-0
HEAD 16 u32 1000000 optimizer-slots-huge
HEAD 20 u32 0 heads-0
HEAD 20 u32 99 heads-99
HEAD 24 i64 0 training-rows-0
HEAD 24 i64 -1 training-rows-negative
HEAD 24 i64 1099511627776 training-rows-2^40
HEAD 32 i64 0 weights-0
HEAD 32 i64 -1 weights-negative
HEAD 32 i64 1099511627776 weights-2^40
META 0 i64 -1 epoch-negative
META 0 i64 99999 epoch-beyond-epochs
META 8 i64 1099511627776 step-in-epoch-2^40
META 8 i64 -5 step-in-epoch-negative
META 16 i64 -5 steps-negative
META 48 i64 99 best-epoch-in-the-future
META 56 i64 -1 evaluations-without-gain-negative
META 64 i64 1099511627776 train-csv-bytes-2^40
META 64 i64 -1 train-csv-bytes-negative
META 72 i64 1099511627776 eval-csv-bytes-2^40
META 80 i32 7 shuffled-flag-7
ORDR 0 i64 -1 order-entry-negative
ORDR 0 i64 40000 order-entry-past-the-rows
ORDR 0 i64 1099511627776 order-entry-2^40
PARM 0 u32 0 parameter-count-0
PARM 0 u32 2147483647 parameter-count-huge
PARM 4 u32 2147483647 parameter-name-length-huge
PARM 4 u32 0 parameter-name-length-0
BEST 0 f32 nan best-weight-nan
OPTS 4 f32 nan optimizer-slot-nan
FIELDS
hc forged-order-not-a-permutation '
    ckrun; v=$("$FORGE" run/checkpoint.tsck get ORDR 0 i64)
    forge run/checkpoint.tsck set ORDR 8 i64 "$v"
    ck_resumes checkpoint.tsck'
hc forged-rng-state-zero '
    ckrun; for o in 0 8 16 24; do forge run/checkpoint.tsck set "RNG" $o u64 0; done
    ck_resumes checkpoint.tsck'
for what in "rows -1" "rows 1000000" "cols 0" "cols 2147483647"; do
    set -- $what
    hc "forged-first-parameter-$1=$2" "
        ckrun; n=\$(\"\$FORGE\" run/checkpoint.tsck get PARM 4 u32)
        forge run/checkpoint.tsck set PARM \$((8 + n + $([ $1 = rows ] && echo 0 || echo 4))) i32 $2
        ck_resumes checkpoint.tsck"
done
for blk in META CONF ORDR PARM; do
    hc "forged-length-of-$blk" "
        ckrun; forge run/checkpoint.tsck setlen $blk 1099511627776
        ck_resumes checkpoint.tsck"
done
hc forged-length-of-CONF-shorter '
    ckrun; forge run/checkpoint.tsck setlen CONF 10
    ck_resumes checkpoint.tsck'

# -- none usable: refused, and the folder is left exactly as it was
hc all-three-zero-length '
    ckrun; for f in run/checkpoint*.tsck; do : >"$f"; done
    _mutable=; snapshot
    T resume run
    refused run'
hc all-three-forged '
    ckrun; for f in run/checkpoint*.tsck; do forge "$f" set HEAD 24 i64 -1; done
    _mutable=; snapshot
    T resume run
    refused run'
hc all-three-of-another-experiment '
    ckrun; for f in run/checkpoint*.tsck; do cp "$FX/other_run/checkpoint.tsck" "$f"; done
    _mutable=; snapshot
    T resume run
    refused run'
hc config-edited-since '
    ckrun; set_key run/config.ini optimizer lr 0.5
    _mutable=; snapshot
    T resume run
    refused run lr'
hc config-missing '
    ckrun; rm run/config.ini
    _mutable=; snapshot
    T resume run
    refused run config.ini'
hc config-is-garbage '
    ckrun; head -c 3000 /dev/urandom >run/config.ini
    _mutable=; snapshot
    T resume run
    refused config.ini'
hc only-the-best-left '
    ckrun; rm run/checkpoint.tsck run/checkpoint.prev.tsck
    ck_resumes'
hc train-csv-cut-before-the-checkpoint '
    ckrun; s=$(wc -c <run/train.csv); head -c $((s / 3)) run/train.csv >t; mv t run/train.csv
    T resume run
    either train.csv
    [ "$RC" != 0 ] || prop "not bit-identical to the run never stopped" same_run run "$FX/ref_ck"'

# -- the data file changed under a run with checkpoints (same row count)
hc data-edited-in-place-then-resumed '
    fx csv.ini; fx clicks.csv
    T run csv.ini train.keep_checkpoints=true --results run
    awk -F, -v OFS=, "NR > 1 { \$4 = (\$4 * 7) % 53 } { print }" clicks.csv >c; mv c clicks.csv
    snapshot
    T run csv.ini train.keep_checkpoints=true train.epochs=3 --results run --resume
    refused clicks.csv'
