/* check_main.h - the one Check main() of the unit tests.
 *
 * A unit test defines only its suites and lists them, NULL-terminated:
 *
 *     PAYQ_TEST_SUITES(codec_suite);
 *
 * and links tests/lib/check_main.c, whose main() runs every listed suite in one runner and
 * exits non-zero when any test failed.
 */
#ifndef PAYQ_TESTS_CHECK_MAIN_H
#define PAYQ_TESTS_CHECK_MAIN_H

#include <check.h>

typedef Suite *(*payq_suite_fn)(void);

/* Defined by each unit test; the last element is NULL. */
extern const payq_suite_fn payq_test_suites[];

#define PAYQ_TEST_SUITES(...) const payq_suite_fn payq_test_suites[] = {__VA_ARGS__, NULL}

#endif
