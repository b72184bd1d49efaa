# lib.sh — the functions a hostile case (tests/hostile/cases/*.sh) is written with: copying
# fixtures, editing INI files, running tessera under a time limit in its own session, and the
# expectations that classify the outcome (crash, hang, loss, silent, exec, status, message).
# Sourced by run.sh for each case, inside the case's fresh folder $W; not a general test library.
#
# A case body runs with: TESSERA (the program), FX (the shared fixtures; never write there),
# W (the case's folder, the current directory), H (the case's harness folder, outside W),
# HP (hostile test plugins), TP (tests/plugins), FORGE (ckpt_forge), SRC, BUILD.

# ---- failures ------------------------------------------------------------------------------
# A case fails with the first failure of the highest class: crash > hang > exec > loss > silent >
# status > message > harness. Every detail is kept for the log; the case line shows the first.
_rank() {
    case $1 in crash) echo 1 ;; hang) echo 2 ;; exec) echo 3 ;; loss) echo 4 ;; silent) echo 5 ;;
        status) echo 6 ;; message) echo 7 ;; *) echo 8 ;; esac
}
CASE_CLASS=
CASE_DETAIL=
fail() {   # fail CLASS DETAIL
    printf '%s: %s\n' "$1" "$2" >>"$H/failures"
    if [ -z "$CASE_CLASS" ] || [ "$(_rank "$1")" -lt "$(_rank "$CASE_CLASS")" ]; then
        CASE_CLASS=$1
        CASE_DETAIL=$2
    fi
}

# ---- fixtures and INI editing --------------------------------------------------------------
fx() {     # fx NAME [DEST]: copy a fixture file or folder from $FX into the case's folder
    cp -R "$FX/$1" "${2:-.}" || fail harness "no fixture $1"
}

# set_key FILE SECTION KEY VALUE: replace KEY's value in [SECTION], or add the key after the
# section's header line; the section is added at the end when the file lacks it.
set_key() {
    F=$1 SEC=$2 KEY=$3 VAL=$4 awk '
        BEGIN { sec = ENVIRON["SEC"]; key = ENVIRON["KEY"]; val = ENVIRON["VAL"] }
        /^[ \t]*\[/ { if (insec && !done) { print key " = " val; done = 1 }
                      s = $0; gsub(/^[ \t]*\[|\][ \t]*(;.*)?$/, "", s); insec = (s == sec) }
        insec && !done && $0 ~ "^[ \t]*" key "[ \t]*=" { print key " = " val; done = 1; next }
        { print }
        END { if (!done) { if (!insec) print "\n[" sec "]"; print key " = " val } }
    ' "$1" >"$1.tmp" && mv "$1.tmp" "$1" || fail harness "could not edit $1"
}

del_key() {   # del_key FILE SECTION KEY
    F=$1 SEC=$2 KEY=$3 awk '
        BEGIN { sec = ENVIRON["SEC"]; key = ENVIRON["KEY"] }
        /^[ \t]*\[/ { s = $0; gsub(/^[ \t]*\[|\][ \t]*(;.*)?$/, "", s); insec = (s == sec) }
        insec && $0 ~ "^[ \t]*" key "[ \t]*=" { next }
        { print }
    ' "$1" >"$1.tmp" && mv "$1.tmp" "$1" || fail harness "could not edit $1"
}

# after_header FILE SECTION TEXT: insert TEXT (raw, may hold any bytes but NUL) on the line after
# [SECTION]'s header; prints nothing. The inserted line's number is then $(lineno FILE TEXT).
after_header() {
    SEC=$2 TXT=$3 awk '
        BEGIN { sec = ENVIRON["SEC"]; txt = ENVIRON["TXT"] }
        { print }
        /^[ \t]*\[/ { s = $0; gsub(/^[ \t]*\[|\][ \t]*(;.*)?$/, "", s);
                      if (s == sec && !done) { print txt; done = 1 } }
    ' "$1" >"$1.tmp" && mv "$1.tmp" "$1" || fail harness "could not edit $1"
}

# after_key FILE SECTION KEY TEXT: insert TEXT on the line after KEY in [SECTION].
after_key() {
    SEC=$2 KEY=$3 TXT=$4 awk '
        BEGIN { sec = ENVIRON["SEC"]; key = ENVIRON["KEY"]; txt = ENVIRON["TXT"] }
        /^[ \t]*\[/ { s = $0; gsub(/^[ \t]*\[|\][ \t]*(;.*)?$/, "", s); insec = (s == sec) }
        { print }
        insec && !done && $0 ~ "^[ \t]*" key "[ \t]*=" { print txt; done = 1 }
    ' "$1" >"$1.tmp" && mv "$1.tmp" "$1" || fail harness "could not edit $1"
}

lineno() {   # lineno FILE TEXT: the number of the first line holding TEXT (fixed string)
    grep -n -F -m1 -- "$2" "$1" | cut -d: -f1
}

# ---- running tessera -----------------------------------------------------------------------
# Every run is `timeout` > sh (memory limit, writes its pid) > setsid > tessera: tessera leads
# its own session, so a process it leaves behind (a compare's child run, gnuplot) is found by
# its session id after tessera ends. T_LIMIT (seconds), T_WRAP (a command prefix such as
# setpriv), T_PRE (shell run first, e.g. `ulimit -f 8`) and T_STDIN apply to the next runs.
T_LIMIT=${HOSTILE_TIMEOUT:-30}
T_WRAP=
T_PRE=
T_STDIN=/dev/null
T_SIGOK=          # the exit status a signal case asked for (128 + signal), not a crash
CRASH_RE='AddressSanitizer|runtime error:|Segmentation fault|core dumped|internal|a bug'
RC=
LAST=             # label of the last run waited for: $H/$LAST.out, $H/$LAST.err
_nruns=0
_snap=

T_bg() {   # T_bg LABEL ARGS...: start tessera ARGS in the background
    local label=$1
    shift
    [ -n "$_snap" ] || snapshot
    _nruns=$((_nruns + 1))
    rm -f "$H/$label.pid"
    date +%s >"$H/$label.start"
    printf '%s ' "$@" >"$H/$label.args"
    # shellcheck disable=SC2086
    timeout -k 3 "$T_LIMIT" $T_WRAP \
        sh -c "$HOSTILE_ULIMIT ${T_PRE:-:}; echo \$\$ >\"\$0\"; exec setsid \"\$@\"" \
        "$H/$label.pid" "$TESSERA" "$@" <"$T_STDIN" >"$H/$label.out" 2>"$H/$label.err" &
    echo $! >"$H/$label.tpid"
}

T_pid() {   # T_pid LABEL: tessera's pid (waits until the wrapper wrote it)
    local n=0
    while [ ! -s "$H/$1.pid" ] && [ $n -lt 500 ]; do sleep 0.01; n=$((n + 1)); done
    cat "$H/$1.pid" 2>/dev/null
}

T_wait() {  # T_wait LABEL: wait for it, classify crash/hang/orphans; sets RC and LAST
    local label=$1 tpid rc start now sid left n
    tpid=$(cat "$H/$label.tpid")
    wait "$tpid"
    rc=$?
    RC=$rc
    LAST=$label
    start=$(cat "$H/$label.start")
    now=$(date +%s)
    if [ "$rc" = 124 ] || { [ "$rc" = 137 ] && [ $((now - start)) -ge "$T_LIMIT" ]; }; then
        fail hang "tessera $(_args "$label") did not end within ${T_LIMIT}s"
    elif [ "$rc" = 126 ] || [ "$rc" = 127 ] || [ "$rc" = 125 ]; then
        fail harness "could not start tessera (status $rc): $(head -c 300 "$H/$label.err")"
    elif [ "$rc" -ge 128 ] && [ "$rc" != "$T_SIGOK" ]; then
        fail crash "tessera $(_args "$label") was killed by signal $((rc - 128)) (status $rc)"
    fi
    local said
    said=$(grep -a -h -m1 -E "$CRASH_RE" "$H/$label.err" "$H/$label.out" | head -n1 | cut -c1-240)
    [ -z "$said" ] || fail crash "tessera $(_args "$label") says: $said"
    # Processes left in tessera's session: wait up to 1 s for them to end, then they are orphans.
    sid=$(cat "$H/$label.pid" 2>/dev/null)
    if [ -n "$sid" ]; then
        n=0
        while left=$(session_members "$sid") && [ -n "$left" ] && [ $n -lt 10 ]; do
            sleep 0.1
            n=$((n + 1))
        done
        if [ -n "$left" ]; then
            fail hang "orphans of tessera $(_args "$label") still run after it ended: $(
                for p in $left; do tr '\0' ' ' <"/proc/$p/cmdline" 2>/dev/null | head -c 120; echo; done |
                    head -n 3 | tr '\n' ';')"
            for p in $left; do kill -KILL "$p" 2>/dev/null; done
        fi
    fi
    return 0
}

session_members() {   # session_members SID: the pids of the processes in session SID (/proc)
    local sid=$1 f l
    for f in /proc/[0-9]*/stat; do
        read -r l <"$f" 2>/dev/null || continue
        l=${l##*) }
        # shellcheck disable=SC2086
        set -- $l   # state ppid pgrp session ...
        if [ "${4:-}" = "$sid" ]; then f=${f#/proc/}; echo "${f%/stat}"; fi
    done
}

T() {      # T ARGS...: run tessera ARGS and wait for it
    T_bg main "$@"
    T_wait main
}

_args() { tr '\n' ' ' <"$H/$1.args" 2>/dev/null | head -c 160; }

sig() {    # sig LABEL SIGNAL: send SIGNAL to the running tessera of LABEL
    local pid
    pid=$(T_pid "$1")
    [ -n "$pid" ] && kill -s "$2" "$pid" 2>/dev/null
}

wait_for() {   # wait_for SECONDS TEST...: poll TEST every 10 ms; 1 when it never held
    local limit=$(( $1 * 100 )) n=0
    shift
    until "$@"; do
        n=$((n + 1))
        [ $n -lt $limit ] || return 1
        sleep 0.01
    done
}

output() { cat "$H/$LAST.out" "$H/$LAST.err"; }

# has NEEDLE: the last run's output (stdout and stderr) holds NEEDLE, case-insensitively;
# "a|b" accepts either.
has() {
    local alt rest=$1
    while :; do
        alt=${rest%%|*}
        grep -a -q -i -F -- "$alt" "$H/$LAST.out" "$H/$LAST.err" && return 0
        [ "$alt" = "$rest" ] && return 1
        rest=${rest#*|}
    done
}

_first_line() { grep -a -h -v '^$' "$H/$LAST.err" "$H/$LAST.out" 2>/dev/null | head -n1 | cut -c1-200; }

_needles() {   # every needle must appear; otherwise a message failure
    local nd
    for nd in "$@"; do
        has "$nd" || { fail message "the message does not name '$nd': $(_first_line)"; return 1; }
    done
}

# ---- expectations --------------------------------------------------------------------------
# refused [-s STATUS] NEEDLE...: the last run refused naming each NEEDLE; STATUS is a case
# pattern (1 by default; 2 for a malformed command line; "[12]" where either is right)
refused() {
    local want=1
    [ "${1:-}" = -s ] && { want=$2; shift 2; }
    # shellcheck disable=SC2254
    case $RC in
        0) fail silent "exited 0 where a refusal was expected" ;;
        $want) _needles "$@" ;;
        *) [ "$RC" -ge 124 ] || fail status "exited $RC where $want was expected: $(_first_line)" ;;
    esac
}

succeeded() {   # succeeded [NEEDLE...]: the last run exited 0 (and printed each NEEDLE)
    if [ "$RC" = 0 ]; then _needles "$@"
    elif [ "$RC" -lt 124 ]; then fail status "exited $RC where success was expected: $(_first_line)"
    fi
}

# either [-s STATUS] NEEDLE...: success, or a refusal (STATUS as for refused) naming each NEEDLE
either() {
    local want=1
    [ "${1:-}" = -s ] && { want=$2; shift 2; }
    # shellcheck disable=SC2254
    case $RC in
        0) ;;
        $want) _needles "$@" ;;
        *) [ "$RC" -ge 124 ] || fail status "exited $RC (expected 0, or $want with a sentence): $(_first_line)" ;;
    esac
}

prop() {   # prop DESCRIPTION TEST...: a property of a result that must hold (else silent)
    local d=$1
    shift
    "$@" || fail silent "$d"
}

escaped() {  # escaped PATH: PATH must not exist (something was written outside the case's folders)
    [ ! -e "$1" ] && [ ! -L "$1" ] || fail loss "wrote outside its folder: $1"
}

# ---- loss: everything present before the first run must be unchanged at the end ------------
_mutable=
mutable() {  # mutable PATH...: a run may change these (a folder resumed or replaced on purpose)
    local p
    for p in "$@"; do _mutable="$_mutable ./${p#./}"; done
}

snapshot() {   # record every file and symlink under $W with its checksum (again: replaces it)
    _snap=1
    local p
    find . \( -type f -o -type l \) -print0 2>/dev/null | sort -z |
        while IFS= read -r -d '' p; do
            if [ -L "$p" ]; then printf 'l %s %s\0' "$(readlink -- "$p" | sha1sum | cut -c1-40)" "$p"
            else printf 'f %s %s\0' "$(sha1sum -- "$p" 2>/dev/null | cut -c1-40)" "$p"; fi
        done >"$H/manifest"
}

check_loss() {
    [ -n "$_snap" ] || return 0
    local rec kind sum path m skip now
    while IFS= read -r -d '' rec; do
        kind=${rec%% *}
        rec=${rec#* }
        sum=${rec%% *}
        path=${rec#* }
        skip=
        for m in $_mutable; do
            case $path in "$m" | "$m"/*) skip=1 ;; esac
        done
        case ${path##*/} in .lock | *.lock) skip=1 ;; esac   # a lock file holds a pid, not results
        [ -z "$skip" ] || continue
        if [ ! -e "$path" ] && [ ! -L "$path" ]; then
            fail loss "$path was deleted"
            continue
        fi
        if [ "$kind" = l ]; then
            now=$( [ -L "$path" ] && readlink -- "$path" | sha1sum | cut -c1-40)
        else
            now=$( [ -f "$path" ] && [ ! -L "$path" ] && sha1sum -- "$path" 2>/dev/null | cut -c1-40)
        fi
        [ "$now" = "$sum" ] || fail loss "$path was changed"
    done <"$H/manifest"
}

# ---- results -------------------------------------------------------------------------------
# same_run DIR REF: DIR's results equal REF's (params.bin byte for byte, metrics.json but the
# timings, eval.csv); the check of "bit-identical after a resume" from docs/checkpoints.md.
same_run() {
    cmp -s "$1/params.bin" "$2/params.bin" || return 1
    cmp -s <(grep -v '"train.run\.' "$1/metrics.json") <(grep -v '"train.run\.' "$2/metrics.json") || return 1
    cmp -s "$1/eval.csv" "$2/eval.csv"
}

finished() { [ -f "$1/metrics.json" ] && [ -f "$1/config.ini" ] && [ -f "$1/params.bin" ]; }
no_nul() { [ "$(tr -d '\000' <"$1" | wc -c)" = "$(wc -c <"$1")" ]; }   # no_nul FILE

# ---- shorthands the case files share -------------------------------------------------------
# bad FILE NEEDLE... [-- ARGS]: `tessera run FILE ARGS` must refuse naming every NEEDLE and
# leave no finished-looking folder.
bad() {
    local f=$1 nd=()
    shift
    while [ $# -gt 0 ] && [ "$1" != -- ]; do nd+=("$1"); shift; done
    [ "${1:-}" = -- ] && shift
    T run "$f" "$@" --results out
    refused "${nd[@]}"
    prop "a refused run left metrics.json" test ! -e out/metrics.json
}

# good FILE [ARGS]: `tessera run FILE ARGS` must finish a run in out/
ext_variant() {   # ext_variant FILE BASE: a variant that extends BASE and changes one key
    printf '[experiment]\nextends = %s\nname = variant\n\n[layer.h]\nunits = 5\n' "$2" >"$1"
}

good() {
    local f=$1
    shift
    T run "$f" "$@" --results out
    succeeded
    prop "the run did not finish (no metrics.json)" finished out
}

# reload DIR: the config.ini a run wrote must load again (run it into DIR.again)
reload() {
    T run "$1/config.ini" --results "$1.again"
    succeeded
    prop "the config.ini of $1 does not run again" finished "$1.again"
}

exps() {   # exps NAME...: NAME.ini, the base experiment named NAME
    local x
    for x in "$@"; do
        sed "s/^name = mini\$/name = $x/" "$FX/mini.ini" >"$x.ini"
    done
}

suite() {   # suite FILE LIST [KEY]: a suite FILE whose KEY (experiments) is LIST
    printf '[suite]\nname = %s\n%s = %s\n' "$(basename "$1" .ini)" "${3:-experiments}" "$2" >"$1"
}

trained() { [ "$(wc -l <"$1/train.csv" 2>/dev/null || echo 0)" -ge "$2" ]; }   # trained DIR LINES
runs_of() { find "$1" -name metrics.json 2>/dev/null | wc -l; }   # finished runs under a folder
plots_in() {   # plots_in DIR N: DIR/plots holds at least N PNG files, each a real PNG
    local f n=0
    for f in "$1"/plots/*.png; do is_png "$f" && n=$((n + 1)); done
    [ "$n" -ge "$2" ]
}
is_png() { [ "$(head -c 4 "$1" 2>/dev/null | od -An -c | tr -d ' ')" = '211PNG' ]; }

# reader NAME: the fixture experiment of a dataset reader and its data in the case's folder;
# sets INI (the experiment), DATA (the file the cases break), SEP (its field separator) and
# HDR (1 when its first line is a header)
reader() {
    case $1 in
        census) fx census.ini; fx census.txt; INI=census.ini DATA=census.txt SEP=', ' HDR=0 ;;
        csv) fx csv.ini; fx clicks.csv; INI=csv.ini DATA=clicks.csv SEP=, HDR=1 ;;
        wordnet) fx wordnet.ini; fx wordnet.tsv; INI=wordnet.ini DATA=wordnet.tsv SEP=$'\t' HDR=1 ;;
        wikiqa) fx wikiqa.ini; fx wikiqa-train.tsv; fx wikiqa-dev.tsv; fx wikiqa-test.tsv
                INI=wikiqa.ini DATA=wikiqa-train.tsv SEP=$'\t' HDR=1 ;;
        movielens) fx movielens.ini; fx ml; INI=movielens.ini DATA=ml/ratings.csv SEP=, HDR=1 ;;
    esac
    export SEP
}

# set_field FILE LINE COLUMN VALUE SEP: replace one field of one line
set_field() {
    L=$2 C=$3 V=$4 S=$5 awk 'BEGIN { l = ENVIRON["L"]; c = ENVIRON["C"]; v = ENVIRON["V"]; s = ENVIRON["S"] }
        NR == l { n = split($0, f, s); f[c] = v; out = f[1]; for (i = 2; i <= n; i++) out = out s f[i]; print out; next }
        { print }' "$1" >"$1.tmp" && mv "$1.tmp" "$1" || fail harness "could not edit $1"
}

# edit_line FILE LINE AWK-EXPR: replace line LINE by the value of an awk expression of $0
edit_line() {
    L=$2 awk "NR == ENVIRON[\"L\"] { print $3; next } { print }" "$1" >"$1.tmp" && mv "$1.tmp" "$1" || fail harness "could not edit $1"
}

# ckrun: the killed run of ck.ini (three checkpoints, not finished) as ./run, which the case
# may resume (so it is mutable); ck_resumes NEEDLE...: `tessera resume run` must finish it,
# saying NEEDLE (the checkpoint it passed over), bit-identical to the run never stopped.
ckrun() { cp -R "$FX/run_killed" run; fx ck.ini; mutable run; }
ck_resumes() {
    T resume run
    succeeded "$@"
    prop "the resumed run is not bit-identical to the one never stopped" same_run run "$FX/ref_ck"
}
forge() { "$FORGE" "$@" >/dev/null || fail harness "ckpt_forge $* failed"; }

# unprivileged: the next runs drop to the user nobody when the corpus runs as root (which
# ignores file permissions), so a read-only folder is read-only to tessera
unprivileged() {
    if [ "$(id -u)" = 0 ]; then
        command -v setpriv >/dev/null || { fail harness "running as root without setpriv"; return 1; }
        T_WRAP="setpriv --reuid=65534 --regid=65534 --clear-groups"
        chmod 777 "$H"   # the wrapper, then nobody, writes tessera's pid there
    fi
}
