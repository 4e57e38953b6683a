/* test_util.c - unit tests for the shared helpers: number, duration and time parsing, JSON
 * escaping, hex and random bytes. */
#include <check.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "check_main.h"
#include "util.h"

/* Every parser gets an exact-size heap copy, so that ASan and valgrind catch any read past
 * the terminating NUL. */
static char *dup_exact(const char *s)
{
	char *d = strdup(s);

	ck_assert_ptr_nonnull(d);
	return d;
}

struct int_case {
	const char *s;
	int64_t min, max;
	int rc;
	int64_t want;
};

static const struct int_case int_cases[] = {
	{"0", 0, 10, 0, 0},
	{"10", 0, 10, 0, 10},
	{"-5", -10, 10, 0, -5},
	{"-0", 0, 0, 0, 0},
	{"007", 0, 10, 0, 7},
	{"100", 1, 100000, 0, 100},
	{"9223372036854775807", INT64_MIN, INT64_MAX, 0, INT64_MAX},
	{"-9223372036854775808", INT64_MIN, INT64_MAX, 0, INT64_MIN},
	/* bounds are inclusive, one past is refused */
	{"11", 0, 10, -1, 0},
	{"-1", 0, 10, -1, 0},
	{"0", 1, 100000, -1, 0},
	{"100001", 1, 100000, -1, 0},
	/* overflow */
	{"9223372036854775808", INT64_MIN, INT64_MAX, -1, 0},
	{"-9223372036854775809", INT64_MIN, INT64_MAX, -1, 0},
	{"99999999999999999999999", INT64_MIN, INT64_MAX, -1, 0},
	/* junk */
	{"", INT64_MIN, INT64_MAX, -1, 0},
	{"-", INT64_MIN, INT64_MAX, -1, 0},
	{"abc", INT64_MIN, INT64_MAX, -1, 0},
	{"5x", INT64_MIN, INT64_MAX, -1, 0},
	{"5 ", INT64_MIN, INT64_MAX, -1, 0},
	{"5\n", INT64_MIN, INT64_MAX, -1, 0},
	{"1.5", INT64_MIN, INT64_MAX, -1, 0},
	{"1e3", INT64_MIN, INT64_MAX, -1, 0},
	{"0x10", INT64_MIN, INT64_MAX, -1, 0},
	{"1,000", INT64_MIN, INT64_MAX, -1, 0},
	{"--1", INT64_MIN, INT64_MAX, -1, 0},
};

START_TEST(test_parse_int64)
{
	for (size_t i = 0; i < PAYQ_ARRAY_SIZE(int_cases); i++) {
		const struct int_case *c = &int_cases[i];
		char *s = dup_exact(c->s);
		int64_t v = 12345;
		int rc = payq_parse_int64(s, c->min, c->max, &v);

		ck_assert_msg(rc == c->rc, "\"%s\" [%lld, %lld]: rc %d, want %d", c->s,
			      (long long)c->min, (long long)c->max, rc, c->rc);
		if (c->rc == 0)
			ck_assert_msg(v == c->want, "\"%s\": %lld, want %lld", c->s, (long long)v,
				      (long long)c->want);
		else
			ck_assert_msg(v == 12345, "\"%s\": output written on failure", c->s);
		free(s);
	}
	ck_assert_int_eq(payq_parse_int64(NULL, 0, 10, &(int64_t){0}), -1);
}
END_TEST

struct duration_case {
	const char *s;
	int rc;
	int64_t want;
};

static const struct duration_case duration_cases[] = {
	{"500ms", 0, 500},
	{"30s", 0, 30000},
	{"15m", 0, 900000},
	{"2h", 0, 7200000},
	{"7d", 0, 604800000},
	{"0ms", 0, 0},
	{"0s", 0, 0},
	{"1ms", 0, 1},
	{"90m", 0, 5400000},
	{"9223372036854775807ms", 0, INT64_MAX},
	{"106751991167d", 0, INT64_C(106751991167) * 86400000},
	/* overflow after scaling */
	{"106751991168d", -1, 0},
	{"9223372036854775808ms", -1, 0},
	/* bad */
	{"", -1, 0},
	{"30", -1, 0},
	{"ms", -1, 0},
	{"s", -1, 0},
	{"-1s", -1, 0},
	{"1.5s", -1, 0},
	{"30S", -1, 0},
	{"30MS", -1, 0},
	{"30 s", -1, 0},
	{"30s ", -1, 0},
	{"30sec", -1, 0},
	{"30us", -1, 0},
	{"30w", -1, 0},
	{"1h30m", -1, 0},
	{"abc", -1, 0},
};

START_TEST(test_parse_duration)
{
	for (size_t i = 0; i < PAYQ_ARRAY_SIZE(duration_cases); i++) {
		const struct duration_case *c = &duration_cases[i];
		char *s = dup_exact(c->s);
		int64_t v = 12345;
		int rc = payq_parse_duration_ms(s, &v);

		ck_assert_msg(rc == c->rc, "\"%s\": rc %d, want %d", c->s, rc, c->rc);
		if (c->rc == 0)
			ck_assert_msg(v == c->want, "\"%s\": %lld, want %lld", c->s, (long long)v,
				      (long long)c->want);
		else
			ck_assert_msg(v == 12345, "\"%s\": output written on failure", c->s);
		free(s);
	}
	ck_assert_int_eq(payq_parse_duration_ms(NULL, &(int64_t){0}), -1);
}
END_TEST

struct iso_case {
	const char *s;
	int rc;
	int64_t want;
};

static const struct iso_case iso_cases[] = {
	{"2026-11-26T10:00:00Z", 0, INT64_C(1795687200000)},
	{"1970-01-01T00:00:00Z", 0, 0},
	{"1969-12-31T23:59:59Z", 0, -1000},
	{"1969-12-31T23:59:59.5Z", 0, -500},
	{"2000-02-29T23:59:59Z", 0, INT64_C(951868799000)},
	{"2038-01-19T03:14:08Z", 0, INT64_C(2147483648000)},
	/* fraction: any number of digits, milliseconds kept, the rest dropped */
	{"2026-11-26T10:00:00.5Z", 0, INT64_C(1795687200500)},
	{"2026-11-26T10:00:00.05Z", 0, INT64_C(1795687200050)},
	{"2026-11-26T10:00:00.123Z", 0, INT64_C(1795687200123)},
	{"2026-11-26T10:00:00.123999Z", 0, INT64_C(1795687200123)},
	{"2026-11-26T10:00:00.000000001Z", 0, INT64_C(1795687200000)},
	/* offsets */
	{"2026-11-26T10:00:00+00:00", 0, INT64_C(1795687200000)},
	{"2026-11-26T10:00:00-00:00", 0, INT64_C(1795687200000)},
	{"2026-11-26T12:00:00+02:00", 0, INT64_C(1795687200000)},
	{"2026-11-26T15:30:00+05:30", 0, INT64_C(1795687200000)},
	{"2026-11-26T08:30:00-01:30", 0, INT64_C(1795687200000)},
	{"2026-11-26T12:00:00.250+02:00", 0, INT64_C(1795687200250)},
	{"2024-12-31T23:00:00-05:00", 0, INT64_C(1735704000000)},
	{"2026-11-27T00:30:00+14:30", 0, INT64_C(1795687200000)},
	/* junk */
	{"", -1, 0},
	{"junk", -1, 0},
	{"2026-11-26", -1, 0},
	{"2026-11-26T10:00:00", -1, 0},
	{"2026-11-26T10:00", -1, 0},
	{"2026-11-26T10:00Z", -1, 0},
	{"2026-11-26 10:00:00Z", -1, 0},
	{"2026-11-26T10:00:00z", -1, 0},
	{"2026-11-26T10:00:00ZZ", -1, 0},
	{"2026-11-26T10:00:00Z ", -1, 0},
	{"2026-11-26T10:00:00UTC", -1, 0},
	{"2026-11-26T10:00:00+0200", -1, 0},
	{"2026-11-26T10:00:00+02", -1, 0},
	{"2026-11-26T10:00:00+02:00x", -1, 0},
	{"2026-11-26T10:00:00+", -1, 0},
	{"2026-11-26T10:00:00.5", -1, 0},
	{"2026-13-01T00:00:00Z", -1, 0},
	{"2026-11-32T00:00:00Z", -1, 0},
	{"2026-11-26T24:00:00Z", -1, 0},
	{"2026-11-26T10:60:00Z", -1, 0},
	{"1795687200000", -1, 0},
};

START_TEST(test_parse_iso8601)
{
	for (size_t i = 0; i < PAYQ_ARRAY_SIZE(iso_cases); i++) {
		const struct iso_case *c = &iso_cases[i];
		char *s = dup_exact(c->s);
		int64_t v = 12345;
		int rc = payq_parse_iso8601_ms(s, &v);

		ck_assert_msg(rc == c->rc, "\"%s\": rc %d, want %d", c->s, rc, c->rc);
		if (c->rc == 0)
			ck_assert_msg(v == c->want, "\"%s\": %lld, want %lld", c->s, (long long)v,
				      (long long)c->want);
		else
			ck_assert_msg(v == 12345, "\"%s\": output written on failure", c->s);
		free(s);
	}
}
END_TEST

/* Inputs the parsers accept or mishandle today, kept here as the regression tests for the bugs
 * reported against util.c. They fail (the first two read past the NUL, which ASan and valgrind
 * report), fixed since; kept as regression tests. */
static const struct iso_case iso_bug_cases[] = {
	{"2026-11-26T10:00:00+1:00", -1, 0},  /* offset shorter than hh:mm: p += 6 overruns */
	{"2026-11-26T10:00:00+01:0", -1, 0},  /* same */
	{"2026-11-26T10:00:00+99:99", -1, 0}, /* offset out of range */
	{"2026-11-26T10:00:00+-1:30", -1, 0}, /* sign inside the offset */
	{"2026-11-26T10:00:00+ 1:30", -1, 0}, /* space inside the offset */
	{"2026-02-30T00:00:00Z", -1, 0},      /* no such day: timegm() makes it March 2 */
	{"2026-1-5T1:2:3Z", -1, 0},	      /* one-digit fields */
	{" 2026-11-26T10:00:00Z", -1, 0},     /* leading space */
	{"2026-11-26T10:00:00.Z", -1, 0},     /* '.' without digits */
};

START_TEST(test_utf8_clean)
{
	char buf[16];
	static const char text[] = "ok \xff\xc3\x28 \xc3\xbc\xed\xa0\x80\xc0\xaf\xf4\x90\x80\x80";

	/* Invalid bytes (a stray 0xff, a lead byte without its continuation, a surrogate,
	 * an overlong '/', a code point above U+10FFFF) each become U+FFFD. */
	char big[128];
	payq_utf8_clean(big, sizeof(big), text, sizeof(text) - 1);
	ck_assert_str_eq(big, "ok \xef\xbf\xbd\xef\xbf\xbd( \xc3\xbc"
			      "\xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbd"
			      "\xef\xbf\xbd\xef\xbf\xbd"
			      "\xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbd");
	/* Cut on a character boundary: 7 bytes of room hold three 2-byte characters. */
	char small[8];
	payq_utf8_clean(small, sizeof(small), "\xc3\xbc\xc3\xbc\xc3\xbc\xc3\xbc", 8);
	ck_assert_str_eq(small, "\xc3\xbc\xc3\xbc\xc3\xbc");
	/* A sequence cut short at the end of the input, and control characters. */
	payq_utf8_clean(buf, sizeof(buf), "ab\xe2\x82", 4);
	ck_assert_str_eq(buf, "ab\xef\xbf\xbd\xef\xbf\xbd");
	payq_utf8_clean(buf, sizeof(buf), "a\nb\tc", 5);
	ck_assert_str_eq(buf, "a b c");
	payq_utf8_clean(buf, sizeof(buf), "a\0b", 3);
	ck_assert_str_eq(buf, "a");
	payq_utf8_clean(buf, 1, "abc", 3);
	ck_assert_str_eq(buf, "");
}
END_TEST

START_TEST(test_known_bugs)
{
	for (size_t i = 0; i < PAYQ_ARRAY_SIZE(iso_bug_cases); i++) {
		const struct iso_case *c = &iso_bug_cases[i];
		char *s = dup_exact(c->s);
		int64_t v = 0;
		int rc = payq_parse_iso8601_ms(s, &v);

		ck_assert_msg(rc == c->rc, "\"%s\": rc %d, want %d", c->s, rc, c->rc);
		free(s);
	}
	/* "A whole decimal integer" should not take leading blanks or a plus sign. */
	ck_assert_int_eq(payq_parse_int64(" 5", 0, 10, &(int64_t){0}), -1);
	ck_assert_int_eq(payq_parse_int64("+5", 0, 10, &(int64_t){0}), -1);
	ck_assert_int_eq(payq_parse_duration_ms(" 30s", &(int64_t){0}), -1);
	ck_assert_int_eq(payq_parse_duration_ms("+30s", &(int64_t){0}), -1);
	/* Truncation should not split a UTF-8 sequence: "é" is C3 A9. */
	{
		char buf[16];
		size_t n = payq_json_escape(buf, sizeof(buf),
					    "\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9");

		ck_assert_msg(n >= 2 && (unsigned char)buf[n - 2] != 0xc3, "split UTF-8: %s", buf);
	}
}
END_TEST

struct escape_case {
	const char *name;
	const char *s;
	const char *want;
};

static const struct escape_case escape_cases[] = {
	{"empty", "", "\"\""},
	{"plain", "hello world", "\"hello world\""},
	{"quote", "say \"hi\"", "\"say \\\"hi\\\"\""},
	{"backslash", "C:\\dir\\", "\"C:\\\\dir\\\\\""},
	{"newline", "a\nb", "\"a\\nb\""},
	{"carriage return", "a\rb", "\"a\\rb\""},
	{"tab", "a\tb", "\"a\\tb\""},
	{"0x01", "\x01", "\"\\u0001\""},
	{"backspace", "\b", "\"\\u0008\""},
	{"form feed", "\f", "\"\\u000c\""},
	{"0x1f", "\x1f", "\"\\u001f\""},
	{"space and DEL pass", " \x7f", "\" \x7f\""},
	{"slash passes", "a/b", "\"a/b\""},
	{"UTF-8 passes", "\xc3\xa9\xe2\x82\xac", "\"\xc3\xa9\xe2\x82\xac\""},
	{"all together", "\"\\\n\x02", "\"\\\"\\\\\\n\\u0002\""},
};

START_TEST(test_json_escape)
{
	for (size_t i = 0; i < PAYQ_ARRAY_SIZE(escape_cases); i++) {
		const struct escape_case *c = &escape_cases[i];
		char buf[128];
		size_t n;

		memset(buf, '#', sizeof(buf));
		n = payq_json_escape(buf, sizeof(buf), c->s);
		ck_assert_msg(!strcmp(buf, c->want), "%s: got %s, want %s", c->name, buf, c->want);
		ck_assert_msg(n == strlen(c->want), "%s: returned %zu, want %zu", c->name, n,
			      strlen(c->want));
	}
}
END_TEST

/* Every buffer size from 0 up: never more than size - 1 bytes, always NUL-terminated, the
 * result is a closed JSON string holding a prefix of the whole escape, no byte past size is
 * touched, and a large enough buffer gets everything. */
START_TEST(test_json_escape_truncation)
{
	static const char *const inputs[] = {
		"abcdefghijklmnopqrstuvwxyz",
		"\x01\x02\x03\x04\x05\x06\x07\x08\x0b\x0e",
		"\"\\\"\\\"\\\"\\\"\\",
		("a\nb\tc\x01"
		 "d\"e\\f"),
	};

	for (size_t i = 0; i < PAYQ_ARRAY_SIZE(inputs); i++) {
		char full[256];
		size_t full_n = payq_json_escape(full, sizeof(full), inputs[i]);

		for (size_t size = 0; size <= full_n + 10; size++) {
			char *buf = malloc(size ? size : 1);
			size_t n;

			ck_assert_ptr_nonnull(buf);
			memset(buf, '#', size ? size : 1);
			n = payq_json_escape(size ? buf : NULL, size, inputs[i]);
			if (size == 0) {
				ck_assert_uint_eq(n, 0);
				ck_assert_int_eq(buf[0], '#');
				free(buf);
				continue;
			}
			ck_assert_msg(n <= size - 1, "input %zu size %zu: n %zu", i, size, n);
			ck_assert_msg(buf[n] == '\0', "input %zu size %zu: not terminated", i,
				      size);
			ck_assert_uint_eq(strlen(buf), n);
			if (size >= full_n + 1 + 8) {
				/* room for the whole text; the escaper keeps 8 spare bytes */
				ck_assert_str_eq(buf, full);
			} else if (n > 0) {
				ck_assert_int_eq(buf[0], '"');
				ck_assert_int_eq(buf[n - 1], '"');
				ck_assert_msg(n >= 2 && !strncmp(buf, full, n - 1),
					      "input %zu size %zu: %s is no prefix of %s", i, size,
					      buf, full);
			}
			if (size >= 3)
				ck_assert_msg(n >= 2, "input %zu size %zu: no quotes", i, size);
			free(buf);
		}
	}
}
END_TEST

START_TEST(test_hex)
{
	static const struct {
		unsigned char in[8];
		size_t n;
		const char *want;
	} cases[] = {
		{{0}, 0, ""},
		{{0x00}, 1, "00"},
		{{0xff}, 1, "ff"},
		{{0x0a, 0xb0}, 2, "0ab0"},
		{{0x01, 0x23, 0x45, 0x67, 0x89, 0xab, 0xcd, 0xef}, 8, "0123456789abcdef"},
	};

	for (size_t i = 0; i < PAYQ_ARRAY_SIZE(cases); i++) {
		char out[17];

		memset(out, '#', sizeof(out));
		payq_hex(cases[i].in, cases[i].n, out);
		ck_assert_str_eq(out, cases[i].want);
		ck_assert_int_eq(out[2 * cases[i].n], '\0');
		if (2 * cases[i].n + 1 < sizeof(out))
			ck_assert_int_eq(out[2 * cases[i].n + 1], '#');
	}
}
END_TEST

START_TEST(test_random_bytes)
{
	unsigned char a[32], b[32];
	static unsigned char big[1 << 20];
	unsigned count[256] = {0};
	unsigned max = 0;

	memset(a, 0, sizeof(a));
	memset(b, 0, sizeof(b));
	ck_assert_int_eq(payq_random_bytes(a, sizeof(a)), 0);
	ck_assert_int_eq(payq_random_bytes(b, sizeof(b)), 0);
	/* Two 256-bit draws are equal, or all zero, with probability 2^-256. */
	ck_assert(memcmp(a, b, sizeof(a)) != 0);
	ck_assert(memcmp(a, (unsigned char[32]){0}, sizeof(a)) != 0);
	ck_assert_int_eq(payq_random_bytes(a, 0), 0);

	/* A large request is filled completely (getrandom may return short reads): each byte
	 * value appears about 4096 times; a byte left zero would show as a spike at 0. */
	ck_assert_int_eq(payq_random_bytes(big, sizeof(big)), 0);
	for (size_t i = 0; i < sizeof(big); i++)
		count[big[i]]++;
	for (size_t v = 0; v < 256; v++)
		if (count[v] > max)
			max = count[v];
	ck_assert_msg(max < 4096 + 1000, "most common byte appears %u times", max);
	ck_assert_msg(count[0] < 4096 + 1000, "zero appears %u times", count[0]);
}
END_TEST

START_TEST(test_clocks)
{
	int64_t ms = payq_now_ms(), us = payq_now_us(), wall = payq_wall_ms();

	ck_assert_int_ge(payq_now_ms(), ms);
	ck_assert_int_ge(payq_now_us(), us);
	/* monotonic ms and us come from the same clock */
	ck_assert_int_le(ms, us / 1000 + 1);
	/* the wall clock is after 2024-01-01 */
	ck_assert_int_gt(wall, INT64_C(1704067200000));
}
END_TEST

/* payq_utf8_scrub: what PostgreSQL would refuse becomes '?', byte for byte; valid text,
 * including 4-byte characters, is untouched. */
static const struct {
	const char *in, *out;
	size_t replaced;
} scrub_cases[] = {
	{"", "", 0},
	{"plain ascii", "plain ascii", 0},
	{"caf\xc3\xa9 \xe2\x82\xac \xf0\x9f\x98\x80", "caf\xc3\xa9 \xe2\x82\xac \xf0\x9f\x98\x80",
	 0},
	{("a\xff"
	  "b"),
	 "a?b", 1},
	{"\xc0\xaf", "??", 2},		 /* overlong '/' */
	{"\xe0\x80\xaf", "???", 3},	 /* overlong, 3 bytes */
	{"\xed\xa0\x80", "???", 3},	 /* UTF-16 surrogate D800 */
	{"\xf4\x90\x80\x80", "????", 4}, /* above U+10FFFF */
	{"cut \xe2\x82", "cut ??", 2},	 /* a character cut at the end of a buffer */
	{"\xc3", "?", 1},
	{"\x80\xbf", "??", 2}, /* continuation bytes alone */
	{"ok\xc3\xa9\xc3", "ok\xc3\xa9?", 1},
};

START_TEST(test_utf8_scrub)
{
	char buf[64];

	snprintf(buf, sizeof(buf), "%s", scrub_cases[_i].in);
	ck_assert_uint_eq(payq_utf8_scrub(buf), scrub_cases[_i].replaced);
	ck_assert_str_eq(buf, scrub_cases[_i].out);
}
END_TEST

/* payq_grow: grows to what is asked, never shrinks, keeps the contents. */
START_TEST(test_grow)
{
	int *arr = NULL;
	size_t cap = 0;

	ck_assert_int_eq(payq_grow((void **)&arr, &cap, 4, sizeof(*arr)), 0);
	ck_assert_uint_eq(cap, 4);
	for (int i = 0; i < 4; i++)
		arr[i] = i;
	ck_assert_int_eq(payq_grow((void **)&arr, &cap, 2, sizeof(*arr)), 0);
	ck_assert_uint_eq(cap, 4);
	ck_assert_int_eq(payq_grow((void **)&arr, &cap, 100, sizeof(*arr)), 0);
	ck_assert_uint_eq(cap, 100);
	for (int i = 0; i < 4; i++)
		ck_assert_int_eq(arr[i], i);
	free(arr);
}
END_TEST

static Suite *util_suite(void)
{
	Suite *s = suite_create("util");
	TCase *tc = tcase_create("util");

	tcase_set_timeout(tc, 60);
	tcase_add_test(tc, test_parse_int64);
	tcase_add_loop_test(tc, test_utf8_scrub, 0, PAYQ_ARRAY_SIZE(scrub_cases));
	tcase_add_test(tc, test_parse_duration);
	tcase_add_test(tc, test_parse_iso8601);
	tcase_add_test(tc, test_json_escape);
	tcase_add_test(tc, test_json_escape_truncation);
	tcase_add_test(tc, test_hex);
	tcase_add_test(tc, test_random_bytes);
	tcase_add_test(tc, test_clocks);
	tcase_add_test(tc, test_known_bugs);
	tcase_add_test(tc, test_utf8_clean);
	tcase_add_test(tc, test_grow);
	suite_add_tcase(s, tc);
	return s;
}

PAYQ_TEST_SUITES(util_suite);
