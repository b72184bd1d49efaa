/* test_config.c — every class of bad experiment input that the core itself catches gets a
 * clear error naming the file, the line and what to do: INI syntax, duplicate sections, long
 * lines, unknown keys (with the nearest known key), missing sections and keys, unknown plugin
 * types, cycles, unknown inputs, shape mismatches, missing data files, malformed data rows,
 * plugins of another ABI and files that are not plugins; and overrides. */
#include "testutil.h"

#include <sys/stat.h>

#include "internal.h"

/* A small valid experiment on the synthetic generator; %s slots take extra lines. */
static const char *exp_text(const char *data_extra, const char *layers)
{
    static char buf[8192];
    snprintf(buf, sizeof buf,
             "[experiment]\nname = cfgtest\nseed = 1\n\n"
             "[data]\ntype = synthetic_mmoe\nrows = 200, 50, 50\n%s\n"
             "%s\n"
             "[head.y1]\ntype = regression\ninput = out\nlabel = y1\nloss = mse\n\n"
             "[optimizer]\ntype = adam\nlr = 0.01\n\n"
             "[train]\nepochs = 1\nbatch = 32\n",
             data_extra, layers);
    return buf;
}

static const char *good_layers =
    "[layer.h]\ntype = dense\ninput = x\nunits = 8\nactivation = relu\n\n"
    "[layer.out]\ntype = dense\ninput = h\nunits = 1\n";

static void expect_error(const char *text, ...)
{
    const char *path = tu_write(".ini", text);
    ts_err e = {{0}};
    int rc = tu_build_exp(path, 0, NULL, &e);
    if (rc == 0) { print_error("no error for:\n%s\n", text); fail(); }
    va_list ap;
    va_start(ap, text);
    for (const char *s; (s = va_arg(ap, const char *));)
        if (!strstr(e.msg, s)) { print_error("message: %s\nmissing: %s\n", e.msg, s); fail(); }
    va_end(ap);
    assert_non_null(strstr(e.msg, path));   /* every message names the file */
    unlink(path);
}

static void test_valid_experiment_builds(void **st)
{
    (void)st;
    const char *path = tu_write(".ini", exp_text("", good_layers));
    ts_err e;
    if (tu_build_exp(path, 0, NULL, &e)) { print_error("%s\n", e.msg); fail(); }
    unlink(path);
}

static void test_unknown_key_suggests_nearest(void **st)
{
    (void)st;
    char text[8192];
    snprintf(text, sizeof text, "%s", exp_text("", good_layers));
    char *p = strstr(text, "epochs");
    memcpy(p, "epocks", 6);
    expect_error(text, "unknown key 'epocks'", "[train]", "did you mean 'epochs'", NULL);
    /* a plugin's own key, misspelt, with its line number */
    snprintf(text, sizeof text, "%s",
             exp_text("", "[layer.h]\ntype = dense\ninput = x\nunit = 8\n\n"
                          "[layer.out]\ntype = dense\ninput = h\nunits = 1\n"));
    expect_error(text, ":12: unknown key 'unit'", "[layer.h]", "did you mean 'units'", NULL);
}

static void test_missing_section_and_key(void **st)
{
    (void)st;
    char text[8192];
    snprintf(text, sizeof text, "%s", exp_text("", good_layers));
    *strstr(text, "[optimizer]") = 0;   /* drop optimizer and train */
    expect_error(text, "has no [optimizer] section", NULL);
    snprintf(text, sizeof text, "%s",
             exp_text("", "[layer.h]\ntype = dense\ninput = x\n\n"
                          "[layer.out]\ntype = dense\ninput = h\nunits = 1\n"));
    expect_error(text, "[layer.h] needs the key 'units'", NULL);
}

static void test_unknown_section(void **st)
{
    (void)st;
    char text[8192];
    snprintf(text, sizeof text, "%s[optimiser]\nlr = 1\n", exp_text("", good_layers));
    expect_error(text, "unknown section [optimiser]", "did you mean [optimizer]", NULL);
}

static void test_unknown_plugin_type(void **st)
{
    (void)st;
    expect_error(exp_text("", "[layer.h]\ntype = dence\ninput = x\nunits = 8\n\n"
                              "[layer.out]\ntype = dense\ninput = h\nunits = 1\n"),
                 ":10:", "no layer plugin named 'dence'", "did you mean 'dense'", NULL);
}

static void test_syntax_errors(void **st)
{
    (void)st;
    expect_error("[experiment]\nname = a\nthis line has no equals sign\n", ":3:", "cannot read this line",
                 NULL);
    expect_error("[experiment]\nname = a\n[train]\nepochs = 1\n[train]\nbatch = 2\n",
                 ":5:", "[train] appears twice", "first on line 3", NULL);
    char text[1024];
    memset(text, 0, sizeof text);
    strcpy(text, "[experiment]\nname = ");
    memset(text + strlen(text), 'a', 300);
    strcat(text, "\n");
    expect_error(text, ":2:", "at most 199", "indented lines", NULL);
    expect_error("[experiment]\nname = a\nname = b\n", ":3:", "set twice", NULL);
    /* found by tests/fuzz: inih cuts a section name at 49 bytes, so the keys of a longer one
     * landed in another section and the message blamed a missing `type =` */
    expect_error("[experiment]\nname = a\n[layer.a_very_long_layer_name_that_inih_would_cut_short]"
                 "\ntype = dense\n", ":3:", "is 54 bytes long", "at most 49", NULL);
    /* and "[ data ]" is the section [data], as it was for the duplicate-section check */
    const char *good = exp_text("", good_layers);
    char *spaced = malloc(strlen(good) + 3), *at;
    assert_non_null(spaced);
    strcpy(spaced, good);
    at = strstr(spaced, "[data]");
    memmove(at + 8, at + 6, strlen(at + 6) + 1);
    memcpy(at, "[ data ]", 8);
    const char *path = tu_write(".ini", spaced);
    ts_err e;
    if (tu_build_exp(path, 0, NULL, &e)) { print_error("%s\n", e.msg); fail(); }
    unlink(path);
    free(spaced);
    /* found by tests/fuzz: c = 1e308 made infinite labels */
    expect_error(exp_text("c = 1e308", good_layers), "c = 1e+308", "[-1e6, 1e6]", NULL);
}

static void test_cycle_is_reported(void **st)
{
    (void)st;
    expect_error(exp_text("", "[layer.a]\ntype = dense\ninput = b\nunits = 8\n\n"
                              "[layer.b]\ntype = dense\ninput = a\nunits = 8\n\n"
                              "[layer.out]\ntype = dense\ninput = b\nunits = 1\n"),
                 "cycle", "[layer.a]", "[layer.b]", NULL);
}

static void test_unknown_input_names_fields(void **st)
{
    (void)st;
    expect_error(exp_text("", "[layer.h]\ntype = dense\ninput = xx\nunits = 8\n\n"
                              "[layer.out]\ntype = dense\ninput = h\nunits = 1\n"),
                 ":11:", "input 'xx' is neither a dataset field nor a layer", "did you mean 'x'",
                 "y1", NULL);
}

static void test_shape_mismatch(void **st)
{
    (void)st;
    /* the regression head wants (B, 1); a (B, 8) input is a shape error naming the section */
    expect_error(exp_text("", "[layer.h]\ntype = dense\ninput = x\nunits = 8\n\n"
                              "[layer.out]\ntype = dense\ninput = h\nunits = 8\n"),
                 "head.y1", "(1024, 8)", NULL);
    /* a layer given the wrong kind of input */
    expect_error(exp_text("", "[layer.e]\ntype = embedding\ninput = x\ndim = 4\n\n"
                              "[layer.out]\ntype = dense\ninput = e\nunits = 1\n"),
                 "layer.e", "(1024, 100) f32", NULL);
}

static void test_missing_data_file(void **st)
{
    (void)st;
    const char *text =
        "[experiment]\nname = a\n[data]\ntype = census\npath = /nonexistent/census.gz\n"
        "[layer.out]\ntype = dense\ninput = continuous\nunits = 1\n"
        "[head.income]\ntype = binary\ninput = out\nlabel = income\nloss = bce\n"
        "[optimizer]\ntype = adam\n[train]\nepochs = 1\n";
    expect_error(text, "/nonexistent/census.gz", NULL);
}

static void test_malformed_data_row(void **st)
{
    (void)st;
    /* a census file whose third row lost its tail */
    char rows[8192] = "";
    const char *good =
        "73, Not in universe, 0, 0, High school graduate, 0, Not in universe, Widowed, "
        "Not in universe or children, Not in universe, White, All other, Female, Not in universe, "
        "Not in universe, Not in labor force, 0, 0, 0, Nonfiler, Not in universe, Not in universe, "
        "Other Rel 18+ ever marr not in subfamily, Other relative of householder, 1700.09, ?, ?, ?, "
        "Not in universe under 1 year old, ?, 0, Not in universe, United-States, United-States, "
        "United-States, Native- Born in the United States, 0, Not in universe, 2, 0, 95, - 50000.\n";
    for (int i = 0; i < 2; i++) strcat(rows, good);
    strcat(rows, "58, Self-employed-not incorporated, 4, 34, Some college but no degree\n");
    for (int i = 0; i < 2; i++) strcat(rows, good);
    const char *data = tu_write(".csv", rows);
    char text[4096];
    snprintf(text, sizeof text,
             "[experiment]\nname = a\n[data]\ntype = census\npath = %s\n"
             "[layer.out]\ntype = dense\ninput = continuous\nunits = 1\n"
             "[head.income]\ntype = binary\ninput = out\nlabel = income\nloss = bce\n"
             "[optimizer]\ntype = adam\n[train]\nepochs = 1\n", data);
    char needle[512];
    snprintf(needle, sizeof needle, "%s:3:", data);
    expect_error(text, needle, NULL);
    unlink(data);
}

static void test_plugin_of_another_abi(void **st)
{
    (void)st;
    char layers[1024];
    snprintf(layers, sizeof layers, "[layer.h]\ntype = old_abi\nplugin = %s\ninput = x\n\n"
             "[layer.out]\ntype = dense\ninput = h\nunits = 1\n",
             tu_build("tests/plugins/.libs/old_abi.so"));
    char abi[32];
    snprintf(abi, sizeof abi, "ABI %u", TS_ABI + 41u);
    expect_error(exp_text("", layers), "old_abi.so", abi, "rebuild", NULL);
}

static void test_file_that_is_not_a_plugin(void **st)
{
    (void)st;
    char layers[1024];
    snprintf(layers, sizeof layers, "[layer.h]\ntype = x\nplugin = %s\ninput = x\n\n"
             "[layer.out]\ntype = dense\ninput = h\nunits = 1\n",
             tu_build("tests/plugins/.libs/not_plugin.so"));
    expect_error(exp_text("", layers), "not_plugin.so", "not a tessera plugin",
                 "tessera_plugin_entry", NULL);
    snprintf(layers, sizeof layers, "[layer.h]\ntype = x\nplugin = /nonexistent/p.so\ninput = x\n\n"
             "[layer.out]\ntype = dense\ninput = h\nunits = 1\n");
    expect_error(exp_text("", layers), "/nonexistent/p.so", "cannot load", NULL);
}

static void test_overrides(void **st)
{
    (void)st;
    const char *path = tu_write(".ini", exp_text("", good_layers));
    ts_err e;
    char *ok[] = {"train.epochs=2", "layer.h.units=4", "data.p=0.9"};
    if (tu_build_exp(path, 3, ok, &e)) { print_error("%s\n", e.msg); fail(); }
    char *bad1[] = {"epochs=2"};
    assert_int_equal(tu_build_exp(path, 1, bad1, &e), -1);
    tu_contains(e.msg, "SECTION.KEY=VALUE", NULL);
    char *bad2[] = {"train.epoch=2"};
    assert_int_equal(tu_build_exp(path, 1, bad2, &e), -1);
    tu_contains(e.msg, "command line", "unknown key 'epoch'", "did you mean 'epochs'", NULL);
    char *bad3[] = {"layer.nope.units=2"};
    assert_int_equal(tu_build_exp(path, 1, bad3, &e), -1);
    tu_contains(e.msg, "[layer.nope]", NULL);
    char *bad4[] = {"train.epochs=many"};
    assert_int_equal(tu_build_exp(path, 1, bad4, &e), -1);
    tu_contains(e.msg, "command line", "'many' is not a whole number", NULL);
    /* out-of-range values: a host key and a plugin's key */
    char *bad5[] = {"train.epochs=0"};
    assert_int_equal(tu_build_exp(path, 1, bad5, &e), -1);
    tu_contains(e.msg, "command line", "[train] epochs = 0 is outside 1..100000", NULL);
    char *bad6[] = {"layer.h.units=0"};
    assert_int_equal(tu_build_exp(path, 1, bad6, &e), -1);
    tu_contains(e.msg, "[layer.h]", "units = 0 is out of range; use 1 to", NULL);
    unlink(path);
}

/* ---- extends = BASE.ini ------------------------------------------------------------------- */
static void write_at(const char *path, const char *text)
{
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    fputs(text, f);
    fclose(f);
}

static void test_extends(void **st)
{
    (void)st;
    char dir[] = "/tmp/tessera-extends-XXXXXX", p[8][512];
    assert_non_null(mkdtemp(dir));
    assert_int_equal(system("true"), 0);
    snprintf(p[0], sizeof p[0], "%s/base", dir);
    assert_int_equal(mkdir(p[0], 0700), 0);
    snprintf(p[1], sizeof p[1], "%s/base/base.ini", dir);
    write_at(p[1], exp_text("", good_layers));
    /* a variant in another folder: its base is found relative to the variant */
    snprintf(p[2], sizeof p[2], "%s/wide.ini", dir);
    write_at(p[2], "[experiment]\nextends = base/base.ini\nname = wide\n\n"
                   "[layer.h]\nunits = 16\n\n[train]\nepochs = 2\n");
    /* a variant of the variant */
    snprintf(p[3], sizeof p[3], "%s/wider.ini", dir);
    write_at(p[3], "[experiment]\nextends = wide.ini\nname = wider\n\n[layer.h]\nunits = 32\n");
    ts_ini ini;
    ts_err e;
    if (ts_ini_load(&ini, p[3], &e)) fail_msg("%s", e.msg);
    ts_cfg *c = ts_ini_find(&ini, "layer.h");
    assert_non_null(c);
    assert_string_equal(ts_cfg_str(c, "units"), "32");          /* the last variant's */
    assert_string_equal(ts_cfg_str(c, "activation"), "relu");   /* the base's */
    assert_string_equal(ts_cfg_str(ts_ini_find(&ini, "train"), "epochs"), "2");  /* the middle's */
    assert_string_equal(ts_cfg_str(ts_ini_find(&ini, "experiment"), "name"), "wider");
    assert_null(ts_cfg_str(ts_ini_find(&ini, "experiment"), "extends"));
    /* each key names the file and line it came from */
    char want[600];
    snprintf(want, sizeof want, "%s:6", p[3]);
    assert_string_equal(ts_cfg_where(c, "units"), want);
    snprintf(want, sizeof want, "%s:", p[1]);
    assert_non_null(strstr(ts_cfg_where(c, "activation"), want));
    ts_ini_free(&ini);
    /* the variant builds, and a bad key of the base is reported at the base's line */
    if (tu_build_exp(p[3], 0, NULL, &e)) fail_msg("%s", e.msg);
    write_at(p[1], exp_text("", "[layer.h]\ntype = dense\ninput = x\nunitz = 8\n\n"
                                "[layer.out]\ntype = dense\ninput = h\nunits = 1\n"));
    assert_int_equal(tu_build_exp(p[3], 0, NULL, &e), -1);
    snprintf(want, sizeof want, "%s:", p[1]);
    tu_contains(e.msg, want, "unknown key 'unitz'", NULL);
    /* a misspelt key of the variant, and a plugin's refusal of a variant's value, are
     * blamed on the variant's own line (the section itself is the base's) */
    write_at(p[1], exp_text("", good_layers));
    write_at(p[2], "[experiment]\nextends = base/base.ini\nname = wide\n\n"
                   "[layer.h]\nunitz = 16\n");
    assert_int_equal(tu_build_exp(p[2], 0, NULL, &e), -1);
    snprintf(want, sizeof want, "%s:6:", p[2]);
    tu_contains(e.msg, want, "unknown key 'unitz'", NULL);
    write_at(p[2], "[experiment]\nextends = base/base.ini\nname = wide\n\n[layer.h]\nunits = 0\n");
    assert_int_equal(tu_build_exp(p[2], 0, NULL, &e), -1);
    tu_contains(e.msg, want, "units = 0", NULL);
    snprintf(want, sizeof want, "%s:", p[1]);
    assert_null(strstr(e.msg, want));           /* no second place, the base's, in front */
    /* a circle, through two files and onto itself */
    snprintf(p[4], sizeof p[4], "%s/a.ini", dir);
    snprintf(p[5], sizeof p[5], "%s/b.ini", dir);
    write_at(p[4], "[experiment]\nname = a\nextends = b.ini\n");
    write_at(p[5], "[experiment]\nname = b\nextends = ./a.ini\n");
    assert_int_equal(tu_build_exp(p[4], 0, NULL, &e), -1);
    tu_contains(e.msg, "b.ini:3", "a circle", NULL);
    write_at(p[4], "[experiment]\nname = a\nextends = a.ini\n");
    assert_int_equal(tu_build_exp(p[4], 0, NULL, &e), -1);
    tu_contains(e.msg, "a.ini:3", "a circle", NULL);
    /* a missing base, an empty value, an override of extends */
    write_at(p[4], "[experiment]\nname = a\nextends = nowhere.ini\n");
    assert_int_equal(tu_build_exp(p[4], 0, NULL, &e), -1);
    tu_contains(e.msg, "a.ini:3", "extends = nowhere.ini", "cannot open", NULL);
    write_at(p[4], "[experiment]\nname = a\nextends =\n");
    assert_int_equal(tu_build_exp(p[4], 0, NULL, &e), -1);
    tu_contains(e.msg, "a.ini:3", "extends is empty", NULL);
    char *over[] = {"experiment.extends=b.ini"};
    assert_int_equal(tu_build_exp(p[2], 1, over, &e), -1);
    tu_contains(e.msg, "experiment.extends cannot be overridden", NULL);
    char cmd[600];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    assert_int_equal(system(cmd), 0);
}

/* ts_ctx_path resolves a name against the experiment's folder, also when the name and the
 * result share one buffer (a plugin resolving in place got an empty path before). */
static void test_ctx_path_in_place(void **st)
{
    (void)st;
    char dir[] = "/tmp/tessera-ctxpath-XXXXXX";
    assert_non_null(mkdtemp(dir));
    char f[600];
    snprintf(f, sizeof f, "%s/rows.tsv", dir);
    FILE *fp = fopen(f, "w");
    assert_non_null(fp);
    fclose(fp);
    ts_ctx ctx;
    ts_ctx_init(&ctx, 1, 4);
    snprintf(ctx.exp_dir, sizeof ctx.exp_dir, "%s", dir);
    char buf[TS_PATH_MAX] = "rows.tsv";
    assert_ptr_equal(ts_ctx_path(&ctx, buf, buf, sizeof buf), buf);
    assert_string_equal(buf, f);
    snprintf(buf, sizeof buf, "nope.tsv");      /* none exists: the name as given */
    assert_string_equal(ts_ctx_path(&ctx, buf, buf, sizeof buf), "nope.tsv");
    ts_ctx_free(&ctx);
    unlink(f);
    rmdir(dir);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_valid_experiment_builds),
        cmocka_unit_test(test_ctx_path_in_place),
        cmocka_unit_test(test_unknown_key_suggests_nearest),
        cmocka_unit_test(test_missing_section_and_key),
        cmocka_unit_test(test_unknown_section),
        cmocka_unit_test(test_unknown_plugin_type),
        cmocka_unit_test(test_syntax_errors),
        cmocka_unit_test(test_cycle_is_reported),
        cmocka_unit_test(test_unknown_input_names_fields),
        cmocka_unit_test(test_shape_mismatch),
        cmocka_unit_test(test_missing_data_file),
        cmocka_unit_test(test_malformed_data_row),
        cmocka_unit_test(test_plugin_of_another_abi),
        cmocka_unit_test(test_file_that_is_not_a_plugin),
        cmocka_unit_test(test_overrides),
        cmocka_unit_test(test_extends),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
