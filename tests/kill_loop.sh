# kill_loop.sh — sourced by kill_resume.sh, stream_resume.sh and table_stream_resume.sh: the one
# loop that kills runs with SIGKILL at random moments and resumes them.
# kill_trials LO SPAN: until $trials runs were killed, start `tessera run $args` into a fresh
# folder, kill it after a delay of (LO + SPAN x U) x $dur_ms milliseconds (U uniform, drawn from
# $KILL_SEED or the shell's pid; KILL_DELAYS="0.31 0.77 ..." gives the delays in seconds
# instead), resume it with --resume and check it with the caller's `same DIR`. A run that ended
# before its kill is no trial. Uses $b (the build folder), $tmp, $args, $trials, $dur_ms; exits
# with a FAIL line on the first difference; sets $killed.
kill_trials() {
    _lo=$1
    _span=$2
    killed=0
    _n=0
    _seed=${KILL_SEED:-$$}
    _delays=${KILL_DELAYS:-}
    while [ "$killed" -lt "$trials" ]; do
        _n=$((_n + 1))
        [ "$_n" -le $((trials * 3)) ] || { echo "FAIL: too many runs ended before their kill"; exit 1; }
        if [ -n "$_delays" ]; then
            _d=$(echo "$_delays" | cut -d' ' -f"$_n")
            [ -n "$_d" ] || break
        else
            _d=$(awk -v s="$_seed" -v n="$_n" -v t="$dur_ms" -v lo="$_lo" -v sp="$_span" \
                'BEGIN { srand(s + n); printf "%.3f", t * (lo + sp * rand()) / 1000 }')
        fi
        _dir="$tmp/k$_n"
        # shellcheck disable=SC2086
        "$b/tessera" run $args --results "$_dir" &
        _pid=$!
        sleep "$_d"
        if kill -9 "$_pid" 2>/dev/null; then
            wait "$_pid" 2>/dev/null || true
            if [ -f "$_dir/metrics.json" ]; then _finished=yes; else _finished=no; fi
        else
            wait "$_pid" || true
            _finished=yes
        fi
        if [ "$_finished" = yes ]; then
            echo "run $_n: finished before the kill at ${_d}s; not a trial"
            continue
        fi
        _ck=$(ls "$_dir" 2>/dev/null | grep tsck | tr '\n' ' ')
        # the same command with --resume: from the newest valid checkpoint, or from the start
        # when the kill came before the first one
        # shellcheck disable=SC2086
        "$b/tessera" run $args --results "$_dir" --resume ||
            { echo "FAIL: trial $((killed + 1)): resume failed (kill at ${_d}s)"; exit 1; }
        killed=$((killed + 1))
        if ! same "$_dir"; then
            echo "FAIL: trial $killed (kill at ${_d}s, checkpoints then: ${_ck:-none}) is not bit-identical"
            exit 1
        fi
        echo "trial $killed: killed at ${_d}s (checkpoints: ${_ck:-none}), resumed: bit-identical"
        rm -rf "$_dir"
    done
}
