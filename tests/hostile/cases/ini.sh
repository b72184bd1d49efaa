# ini.sh — experiment files (area "ini"): malformed lines and sections, encodings, huge lines
# and files, indented keys under lists, duplicates, unknown keys/sections/types, wrong values
# and ranges (in the file and on the command line), long and hostile names, label leaks, name
# clashes, graph errors, and things that are not INI files at all. Every refusal must name the
# file (FILE:LINE where there is one line to blame) or the key. The base is fixtures/mini.ini.

sections="experiment data layer.h head.y1 optimizer train"

# -- lines that are not `key = value`, in every section: the message names FILE:LINE
for s in $sections; do
    hc "no-equals-in-[$s]" "
        fx mini.ini bad.ini
        after_header bad.ini $s 'this line has no equals sign'
        bad bad.ini bad.ini:\$(lineno bad.ini 'this line has no')"
    hc "empty-key-in-[$s]" "
        fx mini.ini bad.ini
        after_header bad.ini $s '= a value without a key'
        bad bad.ini bad.ini:\$(lineno bad.ini '= a value without')"
    hc "key-twice-in-[$s]" "
        fx mini.ini bad.ini
        after_header bad.ini $s 'zz_twice = 1'
        after_header bad.ini $s 'zz_twice = 2'
        bad bad.ini bad.ini zz_twice"
    hc "unknown-key-in-[$s]" "
        fx mini.ini bad.ini
        after_header bad.ini $s 'zz_unknown_key = 1'
        bad bad.ini bad.ini:\$(lineno bad.ini zz_unknown_key) zz_unknown_key"
    hc "section-[$s]-twice" "
        fx mini.ini bad.ini
        printf '\n[%s]\n' $s >>bad.ini
        bad bad.ini bad.ini $s"
done

# -- section headers that are not one: the header's line, or the key under it, is blamed
n=0
for h in '[unterminated' '[]' '[ ]' '[layer.]' '[head.]' '[layer.h' ']' '[[train]]' \
         '[train] trailing words' '[layer.a b]' '[layer.h]]' '[.h]'; do
    n=$((n + 1))
    hc "bad-section-header-$n" "
        fx mini.ini bad.ini
        printf '%s\nzz = 1\n' $(q "$h") >>bad.ini
        n=\$(wc -l <bad.ini)
        bad bad.ini \"bad.ini:\$((n - 1))|bad.ini:\$n\""
done

# -- unknown sections and section kinds
for sec in optimiser layers.h heads.y1 suite data.extra train.more layer head experiment.x; do
    hc "unknown-section-[$sec]" "
        fx mini.ini bad.ini
        printf '\n[%s]\ntype = dense\n' $sec >>bad.ini
        bad bad.ini bad.ini $sec"
done
hc "section-case-differs-[Train]" '
    fx mini.ini bad.ini
    printf "\n[Train]\nbatch = 4\n" >>bad.ini
    bad bad.ini bad.ini Train'

# -- encodings
hc bom-then-valid-file '
    printf "\357\273\277" >bom.ini
    cat "$FX/mini.ini" >>bom.ini
    good bom.ini'
hc bom-hides-duplicate-experiment '
    printf "\357\273\277[experiment]\nseed = 99\n" >bom.ini
    cat "$FX/mini.ini" >>bom.ini
    bad bom.ini bom.ini experiment'
hc bom-in-the-middle '
    fx mini.ini bad.ini
    printf "\357\273\277[layer.extra]\ntype = dense\ninput = h\nunits = 2\n" >>bad.ini
    bad bad.ini bad.ini:$(( $(wc -l <bad.ini) - 3 ))'
hc crlf-line-endings '
    sed "s/\$/\r/" "$FX/mini.ini" >crlf.ini
    good crlf.ini'
hc mixed-line-endings '
    awk "NR % 2 { printf \"%s\r\n\", \$0; next } { print }" "$FX/mini.ini" >mixed.ini
    good mixed.ini'
hc cr-only-line-endings '
    tr "\n" "\r" <"$FX/mini.ini" >cr.ini
    bad cr.ini cr.ini'
hc nul-byte-in-a-value '
    fx mini.ini bad.ini
    after_key bad.ini train batch "log_every = 1"
    sed -i "s/^log_every = 1/log_every = 1\x00junk/" bad.ini
    bad bad.ini bad.ini'
hc nul-byte-in-a-key '
    fx mini.ini bad.ini
    sed -i "s/^batch = 8/bat\x00ch = 8/" bad.ini
    bad bad.ini bad.ini'
hc nul-byte-first '
    printf "\000" >bad.ini
    cat "$FX/mini.ini" >>bad.ini
    bad bad.ini bad.ini'
hc utf16-file '
    printf "\377\376" >u16.ini
    iconv -f UTF-8 -t UTF-16LE "$FX/mini.ini" >>u16.ini
    bad u16.ini u16.ini'
hc latin1-in-a-comment '
    fx mini.ini l1.ini
    printf "; caf\351 cr\350me\n" >>l1.ini
    good l1.ini'
hc invalid-utf8-key '
    fx mini.ini bad.ini
    after_header bad.ini train "$(printf "b\377tch = 8")"
    bad bad.ini bad.ini'
hc control-char-in-name '
    fx mini.ini bad.ini
    set_key bad.ini experiment name "$(printf "a\001b")"
    bad bad.ini bad.ini name'
hc escape-sequence-in-name '
    fx mini.ini bad.ini
    set_key bad.ini experiment name "$(printf "a\033[2Jb")"
    bad bad.ini bad.ini name'

# -- huge lines and files: a sentence, fast, bounded memory
hc line-of-10-KB '
    fx mini.ini bad.ini
    after_header bad.ini experiment "description = $(head -c 10000 /dev/zero | tr "\0" x)"
    bad bad.ini bad.ini:$(lineno bad.ini "description =")'
hc line-of-1-MB '
    fx mini.ini m.ini
    { head -n 3 m.ini; printf "description = "; head -c 1000000 /dev/zero | tr "\0" x; echo
      tail -n +4 m.ini; } >bad.ini
    bad bad.ini bad.ini:4'
hc comment-of-5-KB '
    fx mini.ini big.ini
    printf "; %s\n" "$(head -c 5000 /dev/zero | tr "\0" c)" >>big.ini
    T run big.ini --results out
    either big.ini'
hc file-of-20-MB-of-comments '
    fx mini.ini big.ini
    yes "; a comment line that repeats" | head -c 20000000 >>big.ini
    T run big.ini --results out
    either big.ini'
hc file-of-100k-blank-lines '
    yes "" | head -n 100000 >big.ini
    cat "$FX/mini.ini" >>big.ini
    good big.ini'
hc 5000-unknown-sections '
    fx mini.ini big.ini
    awk "BEGIN { for (i = 0; i < 5000; i++) printf \"[zz%d]\nk = v\n\", i }" >>big.ini
    bad big.ini big.ini:$(lineno big.ini "[zz0]") zz0'
hc 1-MB-without-a-newline '
    head -c 1000000 /dev/zero | tr "\0" "k" >big.ini
    bad big.ini big.ini'

# -- an indented `key = value` under a list key is not a list item
hc indented-key-under-input '
    fx mini.ini bad.ini
    del_key bad.ini layer.h units
    after_key bad.ini layer.h input "  units = 3"
    bad bad.ini bad.ini:$(lineno bad.ini "  units = 3") units'
hc indented-key-under-rows '
    fx mini.ini bad.ini
    del_key bad.ini data d
    after_key bad.ini data rows "    d = 4"
    bad bad.ini bad.ini:$(lineno bad.ini "    d = 4")'
hc indented-key-under-head-input '
    fx mini.ini bad.ini
    del_key bad.ini head.y1 loss
    after_key bad.ini head.y1 input "  loss = mse"
    bad bad.ini bad.ini:$(lineno bad.ini "  loss = mse") loss'
hc indented-key-under-mmoe-tasks '
    cat >bad.ini <<INI
[experiment]
name = mm
[data]
type = synthetic_mmoe
rows = 20, 5, 5
d = 4
[layer.mix]
type = mmoe
input = x
experts = 2
tasks = y1, y2
  units = 4
[layer.o1]
type = dense
input = mix.y1
units = 1
[head.y1]
type = regression
input = o1
label = y1
loss = mse
[optimizer]
type = adam
[train]
batch = 8
INI
    bad bad.ini bad.ini:12 units'
hc indented-key-under-early-stop '
    fx mini.ini bad.ini
    after_key bad.ini train batch "early_stop = y1.mse"
    after_key bad.ini train early_stop "   patience = 2"
    bad bad.ini bad.ini:$(lineno bad.ini "   patience = 2") patience'
hc control-indented-list-continuation '
    fx mini.ini ok.ini
    set_key ok.ini data rows "20,"
    after_key ok.ini data rows "  5, 5"
    good ok.ini'

# -- unknown and mismatched plugin types
hc "unknown-type-data" '
    fx mini.ini bad.ini; set_key bad.ini data type zz_nope
    bad bad.ini bad.ini zz_nope'
hc "unknown-type-layer" '
    fx mini.ini bad.ini; set_key bad.ini layer.h type zz_nope
    bad bad.ini bad.ini zz_nope'
hc "unknown-type-head" '
    fx mini.ini bad.ini; set_key bad.ini head.y1 type zz_nope
    bad bad.ini bad.ini zz_nope'
hc "unknown-loss" '
    fx mini.ini bad.ini; set_key bad.ini head.y1 loss zz_nope
    bad bad.ini bad.ini zz_nope'
hc "unknown-optimizer" '
    fx mini.ini bad.ini; set_key bad.ini optimizer type zz_nope
    bad bad.ini bad.ini zz_nope'
for pair in "layer.h type adam" "layer.h type binary" "head.y1 type dense" "head.y1 loss adam" \
            "data type dense" "optimizer type bce" "head.y1 loss regression" "data type mse"; do
    set -- $pair
    hc "wrong-kind-$1-$2=$3" "
        fx mini.ini bad.ini; set_key bad.ini $1 $2 $3
        bad bad.ini bad.ini $3"
done
hc empty-type '
    fx mini.ini bad.ini; set_key bad.ini layer.h type ""
    bad bad.ini bad.ini layer.h'
hc missing-type '
    fx mini.ini bad.ini; del_key bad.ini layer.h type
    bad bad.ini bad.ini layer.h'
hc missing-experiment-name '
    fx mini.ini bad.ini; del_key bad.ini experiment name
    bad bad.ini bad.ini name'
hc no-head-at-all '
    fx mini.ini bad.ini
    awk "/^\[head.y1\]/ { skip = 1; next } /^\[/ { skip = 0 } !skip" "$FX/mini.ini" >bad.ini
    bad bad.ini bad.ini head'

# -- wrong values and ranges: in the file (FILE and key named) and on the command line (key named)
while read -r sec key val; do
    [ -n "$sec" ] || continue
    v=${val//@/ }
    hc "value-$sec.$key=$v" "
        fx mini.ini bad.ini
        set_key bad.ini $sec $key $(q "$v")
        bad bad.ini $key"
    hc "override-$sec.$key=$v" "
        fx mini.ini
        bad mini.ini $key -- $(q "$sec.$key=$v")"
done <<'VALUES'
train epochs abc
train epochs 0
train epochs -1
train epochs 1.5
train epochs 1e9
train epochs 99999999999999999999
train epochs @
train batch 0
train batch -8
train batch abc
train batch 2147483648
train batch 1e12
train patience -1
train log_every -1
train max_steps -1
train clip_norm -1
train clip_norm nan
train checkpoint_every -1
train keep_checkpoints maybe
train early_stop y1.zz_metric
train early_stop zz_task.mse
train weighting zz_nope
optimizer lr abc
optimizer lr nan
optimizer lr inf
optimizer lr -0.1
optimizer lr 1e400
experiment seed abc
experiment seed 1e99
experiment seed 18446744073709551616
layer.h units 0
layer.h units -3
layer.h units abc
layer.h units 2147483648
layer.h units 3.5
layer.h activation zz_nope
layer.h init zz_nope
layer.h bias maybe
head.y1 weight abc
head.y1 weight nan
head.y1 weight inf
head.y1 weight -1
data rows a,@b,@c
data rows 0,@0,@0
data rows -20,@5,@5
data rows 20,@5
data rows 20,@5,@5,@5
data d 0
data d -1
data d 1000000000
data p 2
data p -2
data p nan
data c nan
data m -1
VALUES

hc override-of-a-missing-layer '
    fx mini.ini
    bad mini.ini layer.zz_nothere -- layer.zz_nothere.units=3'
hc override-without-a-dot '
    fx mini.ini
    T run mini.ini epochs=3 --results out
    refused -s "[12]" epochs'
hc override-with-empty-key '
    fx mini.ini
    T run mini.ini train.=3 --results out
    refused -s "[12]" train'
hc override-with-newline-in-a-value '
    fx mini.ini
    T run mini.ini "$(printf "experiment.description=a\nb")" --results out
    either description
    [ "$RC" != 0 ] || reload out'
hc override-with-semicolon-in-a-value '
    fx mini.ini
    T run mini.ini "experiment.description=text ; not a comment" --results out
    succeeded
    [ "$RC" != 0 ] || { reload out; prop "the description lost its text after ;" grep -q "not a comment" out/config.ini; }'
hc override-with-5-KB-value '
    fx mini.ini
    T run mini.ini "experiment.description=$(head -c 5000 /dev/zero | tr "\0" d)" --results out
    either description
    [ "$RC" != 0 ] || reload out'
hc override-with-hash-in-a-value '
    fx mini.ini
    T run mini.ini "experiment.description=a # b" --results out
    succeeded
    [ "$RC" != 0 ] || reload out'

# -- long names and paths: a run's config.ini must load again
hc experiment-name-of-190-bytes '
    fx mini.ini long.ini
    n=$(head -c 190 /dev/zero | tr "\0" n)
    set_key long.ini experiment name "$n"
    T run long.ini
    either name
    if [ "$RC" = 0 ]; then
        prop "the run is not in results/NAME (the name was cut?)" finished "results/$n"
        reload "results/$n"
    fi'
hc experiment-name-of-300-bytes '
    fx mini.ini
    T run mini.ini "experiment.name=$(head -c 300 /dev/zero | tr "\0" n)"
    refused name'
hc experiment-path-of-200-bytes '
    d=$(printf "dir-%s/" $(seq -w 1 30) | cut -c1-190)
    mkdir -p "$d"
    cp "$FX/mini.ini" "$d/exp.ini"
    T run "$d/exp.ini" --results out
    succeeded
    reload out'
hc results-path-of-200-bytes '
    d=$(printf "res-%s/" $(seq -w 1 30) | cut -c1-190)
    fx mini.ini
    T run mini.ini --results "$d"
    succeeded
    prop "the run did not finish" finished "$d"
    [ "$RC" != 0 ] || reload "$d"'
hc layer-name-of-45-bytes '
    fx mini.ini ok.ini
    n=$(head -c 43 /dev/zero | tr "\0" l)
    sed -i "s/^\[layer.h\]/[layer.$n]/; s/^input = h\$/input = $n/" ok.ini
    good ok.ini'
hc section-name-of-60-bytes '
    fx mini.ini bad.ini
    n=$(head -c 54 /dev/zero | tr "\0" l)
    sed -i "s/^\[layer.h\]/[layer.$n]/; s/^input = h\$/input = $n/" bad.ini
    bad bad.ini bad.ini:$(lineno bad.ini "[layer.$n]")'
hc ini-path-of-5000-bytes '
    T run "$(head -c 5000 /dev/zero | tr "\0" p).ini"
    refused ppppp'

# -- hostile characters in the experiment name: no code runs; either a run whose folder has
#    exactly that name and whose config.ini loads again, or a refusal naming the key
n=0
for name in "a'b" 'a"b' 'a\b' '$(touch pwned_a)' '`touch pwned_b`' "x' . system('touch pwned_c') . '" \
            'a;b' 'a#b' 'Bob s runs' '名前' '-rf' 'a*b' '~root' 'a|touch pwned_d' 'a%sb%n'; do
    n=$((n + 1))
    hc "hostile-experiment-name-$n" "
        fx mini.ini h.ini
        set_key h.ini experiment name $(q "$name")
        T run h.ini
        either name
        if [ \"\$RC\" = 0 ]; then
            prop 'no folder results/NAME holds the run' finished results/$(q "$name")
            reload results/$(q "$name")
        fi"
done
n=0
for name in "$(printf 'a\tb')" "$(printf 'a\177b')" '.' '..' '' 'a/b' '../escape_n' '/tmp/escape_abs'; do
    n=$((n + 1))
    hc "refused-experiment-name-$n" "
        fx mini.ini
        printf 'decoy\n' >train.csv; printf 'decoy' >checkpoint.tsck
        mkdir -p results; printf 'decoy\n' >results/train.csv
        T run mini.ini $(q "experiment.name=$name")
        refused name
        for p in escape_n results/a config.ini metrics.json results/config.ini results/metrics.json; do
            escaped \$p
        done"
done
hc experiment-name-with-newline '
    fx mini.ini
    T run mini.ini "$(printf "experiment.name=a\nb")"
    refused name'
n=0
for lname in "a'b" 'a"b' 'a$b' 'a b' 'é'; do
    n=$((n + 1))
    hc "hostile-layer-name-$n" "
        fx mini.ini h.ini
        sed -i $(q "s/^\\[layer.h\\]/[layer.$lname]/; s/^input = h\$/input = $lname/") h.ini
        T run h.ini --results out
        either h.ini
        [ \"\$RC\" != 0 ] || reload out"
done

# -- the graph: label leaks, name clashes, cycles, missing inputs
hc label-as-layer-input '
    fx mini.ini bad.ini; set_key bad.ini layer.h input y1
    bad bad.ini bad.ini y1'
hc label-beside-features '
    fx mini.ini bad.ini
    set_key bad.ini layer.h input cat
    printf "\n[layer.cat]\ntype = concat\ninput = x, y1\n" >>bad.ini
    bad bad.ini bad.ini y1'
hc label-straight-into-its-head '
    fx mini.ini bad.ini; set_key bad.ini head.y1 input y1
    bad bad.ini bad.ini y1'
hc census-label-in-concat '
    fx census.ini bad.ini; cp "$FX/census.txt" .
    set_key bad.ini layer.x input "emb, continuous, income"
    bad bad.ini bad.ini income'
hc csv-label-as-input '
    fx csv.ini bad.ini; cp "$FX/clicks.csv" .
    set_key bad.ini layer.x input "emb, dense, clicked"
    bad bad.ini bad.ini clicked'
hc layer-named-like-a-field '
    fx mini.ini bad.ini
    printf "\n[layer.x]\ntype = dense\ninput = h\nunits = 2\n" >>bad.ini
    bad bad.ini bad.ini layer.x'
hc layer-named-like-a-label '
    fx mini.ini bad.ini
    printf "\n[layer.y2]\ntype = dense\ninput = h\nunits = 2\n" >>bad.ini
    bad bad.ini bad.ini:$(lineno bad.ini "[layer.y2]")'
# [layer.dense] beside the field dense: either resolution of `input = emb, dense` runs, so
# only a refusal of the clash keeps the model the file describes
hc csv-layer-named-like-a-field '
    fx csv.ini bad.ini; cp "$FX/clicks.csv" .
    printf "\n[layer.dense]\ntype = embedding\ninput = categorical\ndim = 1\n" >>bad.ini
    bad bad.ini bad.ini dense'
hc layer-feeding-nothing-warns '
    fx mini.ini w.ini
    printf "\n[layer.zz_dangling]\ntype = dense\ninput = h\nunits = 2\n" >>w.ini
    good w.ini
    succeeded zz_dangling'
hc two-layer-cycle '
    fx mini.ini bad.ini
    set_key bad.ini layer.h input y
    bad bad.ini bad.ini "cycle|layer.h"'
hc self-input '
    fx mini.ini bad.ini; set_key bad.ini layer.h input h
    bad bad.ini bad.ini layer.h'
hc three-layer-cycle '
    fx mini.ini bad.ini
    set_key bad.ini layer.h input c
    printf "\n[layer.b]\ntype = dense\ninput = y\nunits = 1\n\n[layer.c]\ntype = dense\ninput = b\nunits = 4\n" >>bad.ini
    bad bad.ini bad.ini layer.b'
hc unknown-input '
    fx mini.ini bad.ini; set_key bad.ini layer.h input zz_nothere
    bad bad.ini bad.ini:$(lineno bad.ini zz_nothere) zz_nothere'
hc empty-input '
    fx mini.ini bad.ini; set_key bad.ini layer.h input ""
    bad bad.ini bad.ini layer.h'
hc input-with-trailing-comma '
    fx mini.ini bad.ini; set_key bad.ini layer.h input "x,"
    T run bad.ini --results out
    either bad.ini'
hc output-of-a-single-output-layer '
    fx mini.ini bad.ini; set_key bad.ini layer.y input h.zz_out
    bad bad.ini bad.ini h.zz_out'
hc unknown-head-input '
    fx mini.ini bad.ini; set_key bad.ini head.y1 input zz_nothere
    bad bad.ini bad.ini zz_nothere'
hc head-input-of-wrong-shape '
    fx mini.ini bad.ini; set_key bad.ini head.y1 input h
    bad bad.ini bad.ini head.y1'
hc share-with-a-missing-layer '
    fx mini.ini bad.ini; set_key bad.ini layer.y share layer.zz_nothere
    bad bad.ini bad.ini zz_nothere'
hc share-with-itself '
    fx mini.ini bad.ini; set_key bad.ini layer.y share layer.y
    bad bad.ini bad.ini layer.y'
hc share-with-another-type '
    fx mini.ini bad.ini
    printf "\n[layer.t]\ntype = tanh\ninput = h\nshare = layer.h\n" >>bad.ini
    bad bad.ini bad.ini layer.t'
hc head-label-missing-field '
    fx mini.ini bad.ini; set_key bad.ini head.y1 label zz_nolabel
    bad bad.ini bad.ini zz_nolabel'

# -- things that are not INI files
hc ini-is-dev-zero '
    T_LIMIT=5
    T run /dev/zero --results out
    refused /dev/zero'
hc ini-is-dev-urandom '
    T_LIMIT=5
    T run /dev/urandom --results out
    refused /dev/urandom'
hc ini-is-a-fifo '
    T_LIMIT=5
    mkfifo pipe.ini
    T run pipe.ini --results out
    refused pipe.ini'
hc ini-is-a-directory '
    mkdir dir.ini
    bad dir.ini dir.ini'
hc ini-does-not-exist '
    bad nothere.ini nothere.ini'
hc ini-is-empty '
    : >empty.ini
    bad empty.ini empty.ini'
hc ini-is-dev-null '
    bad /dev/null /dev/null'
hc ini-is-only-comments '
    printf "; nothing\n# here\n" >c.ini
    bad c.ini c.ini'
hc ini-is-binary-garbage '
    awk "BEGIN { srand(12); for (i = 0; i < 4000; i++) printf \"%c\", 1 + int(rand() * 255) }" >g.ini
    bad g.ini g.ini'
hc ini-is-gzip '
    gzip -c "$FX/mini.ini" >z.ini
    bad z.ini z.ini'
hc ini-is-a-symlink-loop '
    ln -s loop2.ini loop1.ini; ln -s loop1.ini loop2.ini
    bad loop1.ini loop1.ini'
hc ini-name-with-quotes-and-spaces '
    cp "$FX/mini.ini" "Bob'"'"'s \$(touch pwned_e) exp.ini"
    good "Bob'"'"'s \$(touch pwned_e) exp.ini"'

# -- extends = BASE.ini: bases that are not files, circles, chains, keys blamed in the right file
hc extends-a-fifo '
    T_LIMIT=5
    mkfifo base.ini
    ext_variant v.ini base.ini
    bad v.ini v.ini:2 base.ini'
hc extends-a-directory '
    mkdir base.ini
    ext_variant v.ini base.ini
    bad v.ini v.ini:2 base.ini'
hc extends-a-missing-file '
    ext_variant v.ini nowhere.ini
    bad v.ini v.ini:2 nowhere.ini'
hc extends-dev-zero '
    T_LIMIT=5
    ext_variant v.ini /dev/zero
    bad v.ini v.ini:2 /dev/zero'
hc extends-itself '
    ext_variant v.ini v.ini
    bad v.ini v.ini:2 circle'
hc extends-a-circle-of-three '
    ext_variant a.ini b.ini; ext_variant b.ini c.ini; ext_variant c.ini a.ini
    bad a.ini circle'
hc extends-a-chain-too-deep '
    for i in $(seq 1 20); do ext_variant v$i.ini v$((i + 1)).ini; done
    fx mini.ini v21.ini
    bad v1.ini "extend one another"'
hc extends-empty-value '
    printf "[experiment]\nextends =\nname = v\n" >v.ini
    bad v.ini v.ini:2 extends'
hc extends-overridden-on-the-command-line '
    fx mini.ini
    bad mini.ini extends -- experiment.extends=mini.ini'
hc extends-base-with-a-bad-key-blames-the-base '
    fx mini.ini base.ini
    after_header base.ini layer.h "zz_unknown = 1"
    ext_variant v.ini base.ini
    bad v.ini base.ini:$(lineno base.ini zz_unknown) zz_unknown'
hc extends-a-garbage-base '
    awk "BEGIN { srand(7); for (i = 0; i < 3000; i++) printf \"%c\", 1 + int(rand() * 255) }" >base.ini
    ext_variant v.ini base.ini
    bad v.ini base.ini'
hc extends-a-valid-base-runs '
    fx mini.ini base.ini
    ext_variant v.ini base.ini
    T run v.ini --results out
    succeeded
    prop "the resolved config holds no extends key and units = 5 of the variant" \
        sh -c "! grep -q extends out/config.ini && grep -q \"units = 5\" out/config.ini"'
hc extends-name-with-shell-characters '
    fx mini.ini "b\$(touch pwned_x) ase.ini"
    ext_variant v.ini "b\$(touch pwned_x) ase.ini"
    T run v.ini --results out
    succeeded'

# -- per-row weights and masks on heads
for key in sample_weight mask; do
    hc "head-$key-names-no-field" "
        fx mini.ini bad.ini
        after_header bad.ini head.y1 '$key = nowhere'
        bad bad.ini bad.ini:\$(lineno bad.ini nowhere) nowhere"
    hc "head-$key-is-its-own-label" "
        fx mini.ini bad.ini
        after_header bad.ini head.y1 '$key = y1'
        bad bad.ini bad.ini:\$(lineno bad.ini '$key = y1') \"own label\""
    hc "head-$key-is-a-feature-field-of-several-columns" "
        fx mini.ini bad.ini
        after_header bad.ini head.y1 '$key = x'
        bad bad.ini bad.ini:\$(lineno bad.ini '$key = x') \"one number a row\""
done
hc head-mask-of-real-values '
    fx mini.ini bad.ini
    after_header bad.ini head.y1 "mask = y2"
    bad bad.ini "bad.ini:$(lineno bad.ini "mask = y2")" "a mask is 0 or 1"'
hc head-takes-unknown-kind '
    fx mini.ini bad.ini
    set_key bad.ini head.y1 type binary
    after_header bad.ini head.y1 "takes = odds"
    bad bad.ini bad.ini:$(lineno bad.ini "takes = odds") takes'

# -- [train] replicas and threads: values out of range or of the wrong type are refused naming
#    the key; a graph they cannot run is refused with the reason; a batch smaller than the
#    copies, and more threads than layers, still train
for v in 0 65 -1 two 1.5; do
    hc "train-replicas-$v" "
        fx mini.ini bad.ini; set_key bad.ini train replicas '$v'
        bad bad.ini bad.ini replicas"
done
hc train-replicas-gradnorm '
    fx mini.ini bad.ini; set_key bad.ini train replicas 2; set_key bad.ini train weighting gradnorm
    bad bad.ini bad.ini replicas gradnorm'
hc train-replicas-more-than-batch '
    fx mini.ini ok.ini; set_key ok.ini train replicas 16; set_key ok.ini train batch 3
    good ok.ini'
hc train-threads-many '
    fx mini.ini ok.ini; set_key ok.ini train threads 64
    good ok.ini'
