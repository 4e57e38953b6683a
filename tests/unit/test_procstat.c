/* test_procstat.c - the process_* metrics: /proc/PID/stat parsing and a live reading. */
#include <check.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "check_main.h"
#include "metrics.h"
#include "procstat.h"
#include "util.h"

#define TAIL                                                                            \
	" R 9109 9109 3817 0 -1 4194304 98 0 0 0 250 50 0 0 20 0 1 0 8500 3133440 381 " \
	"18446744073709551615 93899657502720 93899657522601 140731601418800 0 0 0 0 0 0 0"

static const struct {
	const char *text;
	bool ok;
} stat_cases[] = {
	{"9114 (cat)" TAIL, true},
	{"9114 (a b) c)" TAIL, true}, /* a command name with a space and a ')' */
	{"9114 ()" TAIL, true},
	{"9114 (cat) R 1 2 3", false}, /* cut short */
	{"9114 cat" TAIL, false},      /* no ')' at all */
	{"", false},
};

START_TEST(test_parse_stat)
{
	payq_procstat_t ps;

	memset(&ps, 0, sizeof(ps));
	ck_assert_int_eq(payq_procstat_parse_stat(stat_cases[_i].text, 100, 4096, 1000, &ps),
			 stat_cases[_i].ok);
	if (!stat_cases[_i].ok)
		return;
	ck_assert_double_eq_tol(ps.cpu_seconds, 3.0, 1e-9);   /* (250 + 50) / 100 */
	ck_assert_double_eq_tol(ps.start_time, 1085.0, 1e-9); /* 1000 + 8500 / 100 */
	ck_assert_int_eq(ps.vsize_bytes, 3133440);
	ck_assert_int_eq(ps.rss_bytes, 381 * 4096);
}
END_TEST

START_TEST(test_read_self)
{
	payq_procstat_t ps;
	double now = (double)time(NULL);

	ck_assert(payq_procstat_read(&ps));
	ck_assert(ps.rss_bytes > 0);
	ck_assert(ps.vsize_bytes >= ps.rss_bytes);
	ck_assert(ps.start_time > now - 3600 && ps.start_time <= now + 1);
	ck_assert(ps.open_fds >= 3); /* stdin, stdout, stderr */
	ck_assert(ps.max_fds == -1 || ps.max_fds >= ps.open_fds);
}
END_TEST

START_TEST(test_metrics_rendered)
{
	static const char *const names[] = {
		"process_cpu_seconds_total",
		"process_start_time_seconds",
		"process_resident_memory_bytes",
		"process_virtual_memory_bytes",
		"process_open_fds",
	};
	char *out;

	payq_procstat_update_metrics();
	payq_procstat_update_metrics(); /* declaring twice is harmless */
	out = payq_metrics_render();
	for (size_t i = 0; i < PAYQ_ARRAY_SIZE(names); i++) {
		char want[128];
		snprintf(want, sizeof(want), "\n%s ", names[i]);
		ck_assert_msg(strstr(out, want), "%s missing in:\n%s", names[i], out);
	}
	ck_assert(payq_metrics_get("process_resident_memory_bytes", NULL) > 0);
	free(out);
	payq_metrics_reset();
}
END_TEST

static Suite *procstat_suite(void)
{
	Suite *s = suite_create("procstat");
	TCase *tc = tcase_create("procstat");

	tcase_add_loop_test(tc, test_parse_stat, 0, PAYQ_ARRAY_SIZE(stat_cases));
	tcase_add_test(tc, test_read_self);
	tcase_add_test(tc, test_metrics_rendered);
	suite_add_tcase(s, tc);
	return s;
}

PAYQ_TEST_SUITES(procstat_suite);
