/* test_strtab.c — libtessera's string table: ids numbered per space in order of first appearance,
 * look-up without adding, keys of any bytes and lengths, growth past many thousands of keys with
 * every id and string kept, and the string of an id. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "host.h"

static int32_t id_of(ts_strtab *t, int32_t sp, const char *s, int add)
{
    return ts_strtab_id(t, sp, s, strlen(s), add);
}

static void test_ids_per_space(void **state)
{
    (void)state;
    ts_strtab *t = ts_strtab_new();
    assert_non_null(t);
    assert_int_equal(ts_strtab_count(t, 0), 0);
    assert_int_equal(id_of(t, 0, "red", 1), 0);
    assert_int_equal(id_of(t, 0, "green", 1), 1);
    assert_int_equal(id_of(t, 2, "green", 1), 0);    /* the same text, another space: its own id */
    assert_int_equal(id_of(t, 0, "red", 1), 0);      /* seen: the same id, nothing added */
    assert_int_equal(id_of(t, 2, "red", 1), 1);
    assert_int_equal(id_of(t, 0, "blue", 1), 2);
    assert_int_equal(ts_strtab_count(t, 0), 3);
    assert_int_equal(ts_strtab_count(t, 1), 0);      /* a space between used ones stays empty */
    assert_int_equal(ts_strtab_count(t, 2), 2);
    assert_int_equal(ts_strtab_count(t, 7), 0);
    /* look-up without adding */
    assert_int_equal(id_of(t, 0, "blue", 0), 2);
    assert_int_equal(id_of(t, 2, "blue", 0), -1);
    assert_int_equal(id_of(t, 5, "red", 0), -1);
    assert_int_equal(ts_strtab_count(t, 2), 2);
    /* prefixes, the empty string and embedded NULs are distinct keys */
    assert_int_equal(id_of(t, 0, "re", 1), 3);
    assert_int_equal(id_of(t, 0, "", 1), 4);
    assert_int_equal(ts_strtab_id(t, 0, "red\0x", 5, 1), 5);
    assert_int_equal(ts_strtab_id(t, 0, "red\0x", 3, 0), 0);   /* n bytes only: "red" */
    assert_int_equal(ts_strtab_id(t, 0, "redx", 3, 0), 0);
    assert_string_equal(ts_strtab_str(t, 0, 0), "red");
    assert_string_equal(ts_strtab_str(t, 0, 4), "");
    assert_string_equal(ts_strtab_str(t, 2, 0), "green");
    assert_null(ts_strtab_str(t, 0, 6));
    assert_null(ts_strtab_str(t, 0, -1));
    assert_null(ts_strtab_str(t, 9, 0));
    assert_int_equal(id_of(t, -1, "red", 1), -2);    /* a negative space is refused */
    ts_strtab_free(t);
    ts_strtab_free(NULL);
}

/* 200,000 keys over 3 spaces (past many table and arena growths, and one key longer than an
 * arena block): every id is dense and in order, and every string comes back unchanged. */
static void test_growth_and_round_trip(void **state)
{
    (void)state;
    enum { N = 200000 };
    ts_strtab *t = ts_strtab_new();
    assert_non_null(t);
    char buf[64];
    int32_t next[3] = {0, 0, 0};
    for (int i = 0; i < N; i++) {
        int sp = i % 3;
        snprintf(buf, sizeof buf, "key-%d-%x", i, (unsigned)i * 2654435761u);
        assert_int_equal(id_of(t, sp, buf, 1), next[sp]++);
        if (i == N / 2) {                 /* a key longer than one arena block (64 KiB) */
            size_t n = 100000;
            char *big = malloc(n + 1);
            assert_non_null(big);
            for (size_t k = 0; k < n; k++) big[k] = (char)('a' + k % 26);
            big[n] = 0;
            assert_int_equal(ts_strtab_id(t, 1, big, n, 1), next[1]++);
            assert_int_equal(ts_strtab_id(t, 1, big, n, 0), next[1] - 1);
            assert_string_equal(ts_strtab_str(t, 1, next[1] - 1), big);
            free(big);
        }
    }
    for (int sp = 0; sp < 3; sp++) assert_int_equal(ts_strtab_count(t, sp), next[sp]);
    int32_t seen[3] = {0, 0, 0};
    for (int i = 0; i < N; i++) {
        int sp = i % 3;
        snprintf(buf, sizeof buf, "key-%d-%x", i, (unsigned)i * 2654435761u);
        int32_t id = id_of(t, sp, buf, 0);
        if (sp == 1 && i > N / 2 && seen[1] == (N / 2) / 3 + 1) seen[1]++;   /* the long key */
        assert_int_equal(id, seen[sp]++);
        assert_string_equal(ts_strtab_str(t, sp, id), buf);
        assert_int_equal(id_of(t, (sp + 1) % 3, buf, 0), -1);
    }
    assert_int_equal(id_of(t, 0, "key-0-0", 1), 0);   /* re-adding changes nothing */
    assert_int_equal(ts_strtab_count(t, 0), next[0]);
    ts_strtab_free(t);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_ids_per_space),
        cmocka_unit_test(test_growth_and_round_trip),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
