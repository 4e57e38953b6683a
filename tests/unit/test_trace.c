/* test_trace.c - W3C traceparent parsing and child span IDs (headers: worker_observability). */
#include <check.h>
#include <stdlib.h>
#include <string.h>

#include "check_main.h"
#include "trace.h"
#include "util.h"

#define TID "4bf92f3577b34da6a3ce929d0e0e4736"
#define SID "00f067aa0ba902b7"

static const struct {
	const char *value;
	bool ok;
} parse_cases[] = {
	{"00-" TID "-" SID "-01", true},
	{"00-" TID "-" SID "-00", true},
	{"01-" TID "-" SID "-01", true}, /* a later version: its 00 prefix */
	{"01-" TID "-" SID "-01-what-comes-next", true},
	{"00-" TID "-" SID "-01-extra", false}, /* version 00 is exactly 55 characters */
	{"01-" TID "-" SID "-01x", false},
	{"ff-" TID "-" SID "-01", false},			   /* version ff is invalid */
	{"00-4BF92F3577B34DA6A3CE929D0E0E4736-" SID "-01", false}, /* uppercase */
	{"00-00000000000000000000000000000000-" SID "-01", false}, /* all-zero trace ID */
	{"00-" TID "-0000000000000000-01", false},		   /* all-zero span ID */
	{"00-" TID "-" SID "-0g", false},
	{"00_" TID "-" SID "-01", false},
	{"00-" TID "-" SID, false},
	{"", false},
	{"0"
	 "0-" TID "-" SID "-01\n",
	 false},
};

START_TEST(test_parse)
{
	payq_trace_t t;
	const char *v = parse_cases[_i].value;

	ck_assert_int_eq(payq_trace_parse(v, strlen(v), &t), parse_cases[_i].ok);
	ck_assert_int_eq(t.valid, parse_cases[_i].ok);
	if (parse_cases[_i].ok) {
		ck_assert_str_eq(t.trace_id, TID);
		ck_assert_str_eq(t.parent_id, SID);
	}
}
END_TEST

START_TEST(test_child)
{
	payq_trace_t parent, child, fresh;
	char out[PAYQ_TRACEPARENT_LEN + 1], out2[PAYQ_TRACEPARENT_LEN + 1];
	const char *v = "00-" TID "-" SID "-01";

	ck_assert(payq_trace_parse(v, strlen(v), &parent));
	ck_assert_int_eq(payq_trace_child(&parent, out, sizeof(out)), 0);
	ck_assert(payq_trace_parse(out, strlen(out), &child));
	ck_assert_str_eq(child.trace_id, TID);	/* the same trace */
	ck_assert_str_ne(child.parent_id, SID); /* a new span */
	ck_assert_str_eq(child.flags, "01");
	ck_assert_int_eq(payq_trace_child(NULL, out, sizeof(out)), 0);
	ck_assert_int_eq(payq_trace_child(NULL, out2, sizeof(out2)), 0);
	ck_assert(payq_trace_parse(out, strlen(out), &fresh));
	ck_assert_str_ne(out, out2); /* a fresh trace each time */
	ck_assert_int_eq(payq_trace_child(NULL, out, 10), -1);
}
END_TEST

static Suite *trace_suite(void)
{
	Suite *s = suite_create("trace");
	TCase *tc = tcase_create("trace");

	tcase_add_loop_test(tc, test_parse, 0, PAYQ_ARRAY_SIZE(parse_cases));
	tcase_add_test(tc, test_child);
	suite_add_tcase(s, tc);
	return s;
}

PAYQ_TEST_SUITES(trace_suite);
