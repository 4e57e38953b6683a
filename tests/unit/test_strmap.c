/* test_strmap.c - unit tests for the string index: one and two keys, collisions of the
 * separator, replacement, reset, many keys. */
#include <check.h>
#include <stdio.h>
#include <stdlib.h>

#include "check_main.h"
#include "strmap.h"

START_TEST(test_one_and_two_keys)
{
	payq_strmap_t m = {0};

	ck_assert_int_eq(payq_strmap_reset(&m, 4), PAYQ_STRMAP_OK);
	ck_assert_int_eq(payq_strmap_get(&m, "o1", NULL), -1);
	payq_strmap_put(&m, "o1", NULL, 0);
	payq_strmap_put(&m, "o1", "c1", 1);
	ck_assert_int_eq(payq_strmap_get(&m, "o1", NULL), 0);
	ck_assert_int_eq(payq_strmap_get(&m, "o1", "c1"), 1);
	ck_assert_int_eq(payq_strmap_get(&m, "o1", "c2"), -1);
	ck_assert_int_eq(payq_strmap_get(&m, "o2", NULL), -1);
	payq_strmap_free(&m);
}
END_TEST

/* ("ab", "c") and ("a", "bc") are different keys. */
START_TEST(test_split_point_matters)
{
	payq_strmap_t m = {0};

	ck_assert_int_eq(payq_strmap_reset(&m, 2), PAYQ_STRMAP_OK);
	payq_strmap_put(&m, "ab", "c", 7);
	ck_assert_int_eq(payq_strmap_get(&m, "a", "bc"), -1);
	ck_assert_int_eq(payq_strmap_get(&m, "ab", "c"), 7);
	ck_assert_int_eq(payq_strmap_get(&m, "abc", ""), -1);
	payq_strmap_free(&m);
}
END_TEST

START_TEST(test_replace_and_reset)
{
	payq_strmap_t m = {0};

	ck_assert_int_eq(payq_strmap_reset(&m, 1), PAYQ_STRMAP_OK);
	payq_strmap_put(&m, "k", NULL, 1);
	payq_strmap_put(&m, "k", NULL, 2);
	ck_assert_int_eq(payq_strmap_get(&m, "k", NULL), 2);
	ck_assert_int_eq(payq_strmap_reset(&m, 1), PAYQ_STRMAP_OK);
	ck_assert_int_eq(payq_strmap_get(&m, "k", NULL), -1);
	payq_strmap_free(&m);
	ck_assert_ptr_null(m.slots);
}
END_TEST

/* Thousands of keys, after a reset that grows the table: each finds its own position. */
START_TEST(test_many)
{
	enum { N = 5000 };
	static char k1[N][16], k2[N][16];
	payq_strmap_t m = {0};

	ck_assert_int_eq(payq_strmap_reset(&m, 10), PAYQ_STRMAP_OK);
	ck_assert_int_eq(payq_strmap_reset(&m, N), PAYQ_STRMAP_OK);
	ck_assert_uint_ge(m.cap, 2 * N);
	for (int i = 0; i < N; i++) {
		snprintf(k1[i], sizeof(k1[i]), "order-%d", i / 3);
		snprintf(k2[i], sizeof(k2[i]), "cmd-%d", i);
		ck_assert_int_eq(payq_strmap_get(&m, k1[i], k2[i]), -1);
		payq_strmap_put(&m, k1[i], k2[i], i);
	}
	for (int i = 0; i < N; i++)
		ck_assert_int_eq(payq_strmap_get(&m, k1[i], k2[i]), i);
	payq_strmap_free(&m);
}
END_TEST

static Suite *strmap_suite(void)
{
	Suite *s = suite_create("strmap");
	TCase *tc = tcase_create("strmap");

	tcase_set_timeout(tc, 60);
	tcase_add_test(tc, test_one_and_two_keys);
	tcase_add_test(tc, test_split_point_matters);
	tcase_add_test(tc, test_replace_and_reset);
	tcase_add_test(tc, test_many);
	suite_add_tcase(s, tc);
	return s;
}

PAYQ_TEST_SUITES(strmap_suite);
