# data.sh — data files (area "data"): every bundled reader (census, csv, textpairs as wordnet and
# as wikiqa, movielens) fed its file broken in each way: truncated rows, extra fields, numbers
# that are not, NaN/inf/1e39, empty and header-only files, cut or fake gzip, Latin-1, UTF-16 and
# NUL bytes, /dev/zero, a FIFO and a directory as the path; then binary labels of 2, 0.5, -1 and
# one-class validation splits. A refusal names the data file (FILE:LINE for one bad row).

for r in census csv wordnet wikiqa movielens; do
    hc "$r-control" "reader $r; good \$INI"
    hc "$r-truncated-row" "
        reader $r; edit_line \$DATA 4 'substr(\$0, 1, index(\$0, ENVIRON[\"SEP\"]) - 1)'
        bad \$INI \$DATA:4"
    hc "$r-truncated-last-row" "
        reader $r; n=\$(wc -l <\$DATA); edit_line \$DATA \$n 'substr(\$0, 1, index(\$0, ENVIRON[\"SEP\"]) - 1)'
        bad \$INI \$DATA:\$n"
    hc "$r-file-cut-mid-row" "
        reader $r; s=\$(wc -c <\$DATA); head -c \$((s / 2)) \$DATA >cut; mv cut \$DATA
        T run \$INI --results out
        either \$DATA"
    hc "$r-extra-field" "
        reader $r; edit_line \$DATA 4 '\$0 ENVIRON[\"SEP\"] \"extra\"'
        bad \$INI \$DATA:4"
    hc "$r-empty-file" "reader $r; : >\$DATA; bad \$INI \$DATA"
    [ $r = census ] || hc "$r-header-only" "reader $r; head -n 1 \$DATA >h; mv h \$DATA; bad \$INI \$DATA"
    # one row cannot make a training, a validation and a test split (wikiqa's come in three files)
    [ $r = wikiqa ] || hc "$r-one-row" "
        reader $r; head -n \$((HDR + 1)) \$DATA >h; mv h \$DATA
        bad \$INI \"\$DATA|[data]|validation\""
    hc "$r-utf16" "reader $r; iconv -f UTF-8 -t UTF-16 \$DATA >u; mv u \$DATA; bad \$INI \$DATA"
    hc "$r-nul-byte-in-a-row" "
        reader $r; edit_line \$DATA 3 '\$0 \"\\0\"'
        bad \$INI \$DATA:3"
    hc "$r-crlf" "reader $r; sed -i 's/\$/\\r/' \$DATA; good \$INI"
    hc "$r-blank-lines-at-end" "reader $r; printf '\\n\\n\\n' >>\$DATA; good \$INI"
    hc "$r-latin1-text" "
        reader $r
        F=\$DATA
        case $r in
            movielens) F=ml/movies.csv; sed -i '3 s/Grumpier/Gr\\xfcmpier/' \$F ;;
            *) sed -i '3 s/e/\\xe9/' \$F ;;
        esac
        [ \"\$(tr -cd '\\351\\374' <\$F | wc -c)\" = 1 ] || fail harness 'no Latin-1 byte was written'
        good \$INI"
    hc "$r-path-is-dev-zero" "
        T_LIMIT=5; reader $r; set_key \$INI data path /dev/zero
        bad \$INI /dev/zero"
    hc "$r-path-is-dev-urandom" "
        T_LIMIT=5; reader $r; set_key \$INI data path /dev/urandom
        bad \$INI /dev/urandom"
    hc "$r-path-is-a-fifo" "
        T_LIMIT=5; reader $r; rm \$DATA; mkfifo \$DATA
        bad \$INI \$DATA"
    hc "$r-path-is-a-directory" "
        reader $r; rm \$DATA; mkdir \$DATA
        bad \$INI \$DATA"
    hc "$r-path-is-a-symlink-loop" "
        reader $r; rm \$DATA; ln -s \$(basename \$DATA) \$DATA
        bad \$INI \$(basename \$DATA)"
    hc "$r-row-of-1-MB" "
        reader $r
        { head -n 2 \$DATA; sed -n 3p \$DATA | tr -d '\\n'; head -c 1000000 /dev/zero | tr '\\0' x; echo; tail -n +4 \$DATA; } >big
        mv big \$DATA
        [ \$(wc -c <\$DATA) -gt 1000000 ] || fail harness 'the row did not grow'
        T run \$INI --results out
        either \$DATA"
    [ $r = movielens ] && continue   # movielens reads plain files only
    gz_setup="reader $r; gzip -k \$DATA; [ $r != wikiqa ] || gzip -k wikiqa-dev.tsv wikiqa-test.tsv
              set_key \$INI data path \$DATA.gz"
    hc "$r-gzip-control" "$gz_setup; good \$INI"
    hc "$r-gzip-cut-short" "
        $gz_setup; s=\$(wc -c <\$DATA.gz); head -c \$((s / 2)) \$DATA.gz >c; mv c \$DATA.gz
        bad \$INI \$DATA.gz"
    hc "$r-gzip-of-garbage" "
        $gz_setup; head -c 3000 /dev/urandom >\$DATA.gz
        bad \$INI \$DATA.gz"
    hc "$r-gzip-header-then-garbage" "
        $gz_setup; { head -c 10 \$DATA.gz; head -c 3000 /dev/urandom; } >g; mv g \$DATA.gz
        bad \$INI \$DATA.gz"
    hc "$r-gzip-of-binary" "
        $gz_setup; head -c 5000 /dev/urandom | gzip >\$DATA.gz
        bad \$INI \$DATA.gz"
done

# -- numbers that are not, by reader and column: READER LINE COLUMN. MovieLens checks that a
#    rating is a number and then ignores it, so a non-finite one may pass (docs: every rating is
#    a watch); text that is not a number may not.
while read -r r line col; do
    for v in abc nan inf -inf 1e39 0x1p200 ''; do
        check="bad \$INI \$DATA:$line"
        case $r/$v in movielens/abc | movielens/) ;; movielens/*) check="T run \$INI --results out; either \$DATA:$line" ;; esac
        hc "$r-column-$col-is-'$v'" "
            reader $r; set_field \$DATA $line $col $(q "$v") \"\$SEP\"
            $check"
    done
done <<'COLUMNS'
census 3 1
csv 4 4
movielens 4 3
wikiqa 3 7
COLUMNS
hc census-income-label-unknown '
    reader census; sed -i "5 s/- 50000[.]\$/maybe./" $DATA
    bad $INI $DATA:5'
hc census-skip-bad-rows-all-bad '
    reader census; set_key $INI data skip_bad_rows true
    awk "{ print substr(\$0, 1, 20) }" $DATA >b; mv b $DATA
    bad $INI $DATA'
hc wikiqa-dev-file-missing '
    reader wikiqa; rm wikiqa-dev.tsv
    bad $INI wikiqa-dev.tsv'
hc movielens-movies-file-garbage '
    reader movielens; head -c 2000 /dev/urandom >ml/movies.csv
    bad $INI movies.csv'
hc csv-bom-before-header '
    reader csv; printf "\357\273\277" | cat - $DATA >b; mv b $DATA
    T run $INI --results out
    either age'
hc csv-path-empty '
    reader csv; set_key $INI data path ""
    bad $INI path'
hc csv-column-listed-twice '
    reader csv; set_key $INI data dense "age, age"
    bad $INI age'
hc csv-label-also-a-feature '
    reader csv; set_key $INI data dense "age, hours, clicked"
    bad $INI clicked'

# -- labels a binary head cannot take: the error counts them and names the first bad row
for v in 2 0.5 -1 nan yes 1e39; do
    hc "csv-binary-label-is-'$v'" "
        reader csv; set_field \$DATA 6 5 $(q "$v") ,
        bad \$INI clicked"
done
hc csv-binary-labels-minus-one-plus-one '
    reader csv; awk -F, -v OFS=, "NR > 1 { \$5 = \$5 ? 1 : -1 } { print }" $DATA >l; mv l $DATA
    bad $INI clicked'
hc csv-regression-label-is-nan '
    reader csv
    printf "\n[layer.sp]\ntype = dense\ninput = h\nunits = 1\n\n[head.spend]\ntype = regression\ninput = sp\nlabel = spend\nloss = mse\n" >>$INI
    set_field $DATA 7 6 nan ,
    bad $INI "$DATA:7|spend"'
hc csv-one-class-validation-split '
    reader csv; set_key $INI data split "0.98, 0.01, 0.01"
    T run $INI --results out
    either "auc|valid"
    [ "$RC" != 0 ] || { _needles warning auc; prop "no metrics.json" test -f out/metrics.json; }'
hc csv-one-class-everywhere '
    reader csv; awk -F, -v OFS=, "NR > 1 { \$5 = 0 } { print }" $DATA >l; mv l $DATA
    T run $INI --results out
    either clicked
    [ "$RC" != 0 ] || _needles warning'

# -- a text run's fitted state (data_state.txt: trigrams, words, document hashes, BM25's
# statistics) broken in each way: predict refuses with a sentence naming data_state.txt; a file
# of words the run never saw is predicted
declare -A tstate=(
    [counts-beyond-the-file]='sed -i "s/^words .*/words 2147483646/" r/data_state.txt'
    [a-word-twice]='awk "/^words /{w=NR} w && NR==w+1 {first=\$0} w && NR==w+2 {print first; next} {print}" r/data_state.txt >s; mv s r/data_state.txt'
    [cut-in-half]='s=$(wc -c <r/data_state.txt); head -c $((s / 2)) r/data_state.txt >s; mv s r/data_state.txt'
    [trigram-key-beyond-24-bits]='sed -i "3s/.*/99999999/" r/data_state.txt'
    [doc-freq-above-doc-count]='sed -i "\$s/.*/999999999/" r/data_state.txt'
    [negative-doc-length]='sed -i "s/^doc_length_mean .*/doc_length_mean -nan/" r/data_state.txt'
    [random-bytes]='head -c 300 /dev/urandom >r/data_state.txt'
    [empty]=': >r/data_state.txt'
)
for k in "${!tstate[@]}"; do
    hc "wikiqa-fitted-state-$k" "
        reader wikiqa; T run \$INI --results r; [ \"\$RC\" = 0 ] || fail harness 'training failed'
        ${tstate[$k]}
        T predict r --data wikiqa-test.tsv
        refused data_state.txt"
done
hc wikiqa-predict-words-never-seen '
    reader wikiqa; T run $INI --results r; [ "$RC" = 0 ] || fail harness "training failed"
    printf "Q1\tzyxwv qqqq?\tD1\tT\tD1-0\tvvvv wwww xxxx\t0\n" >new.tsv
    T predict r --data new.tsv
    succeeded'

# -- the ranking reader (movielens_ranking) over a recall run of the fixture's 24 ratings: its
# ratings broken after the recall run was trained, its recall run missing, not a run, a run of
# another model, or too small for the candidates asked; each refused naming the file or key
# (snapshot: the ratings are changed on purpose after the recall run)
rank_setup='reader movielens; T run $INI --results recall; [ "$RC" = 0 ] || fail harness "recall training failed"; fx ranking.ini'
hc ranking-control "$rank_setup; good ranking.ini"
for v in "1,3" "1,3,abc,964981247" "1,3,-2,964981247" "1,3,nan,964981247" "x,y,z,w"; do
    hc "ranking-ratings-row-'$v'" "$rank_setup
        edit_line ml/ratings.csv 3 $(q "\"$v\""); snapshot
        bad ranking.ini ml/ratings.csv:3"
done
hc ranking-ratings-header-only "$rank_setup; head -n 1 ml/ratings.csv >h; mv h ml/ratings.csv; snapshot; bad ranking.ini ml/ratings.csv"
hc ranking-recall-run-missing "$rank_setup; set_key ranking.ini data recall_run nope; bad ranking.ini 'recall_run|not a finished run'"
hc ranking-recall-run-is-a-file "$rank_setup; set_key ranking.ini data recall_run ml/ratings.csv; bad ranking.ini recall_run"
hc ranking-recall-run-of-another-model "
    $rank_setup; reader census; T run census.ini --results other; [ \"\$RC\" = 0 ] || fail harness 'census training failed'
    set_key ranking.ini data recall_run other; bad ranking.ini 'recall_run|retrieval|MovieLens'"
hc ranking-more-candidates-than-items "$rank_setup; set_key ranking.ini data candidates 500; bad ranking.ini candidates"
hc ranking-recall-head-unknown "$rank_setup; set_key ranking.ini data recall_head zzz; bad ranking.ini zzz"
