/* test_sqlbuf.c - unit tests for PostgreSQL array literals: quoting, NULL, growth, reuse. */
#include <check.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "check_main.h"
#include "sqlbuf.h"
#include "util.h"

#define MAXELEMS 8
/* Marks the end of elems[], so that NULL can stand for SQL NULL. */
#define END ((const char *)&end_marker)

static const char end_marker;

struct literal_case {
	const char *name;
	const char *elems[MAXELEMS];
	const char *want;
};

/* PostgreSQL's array input only treats \ and " specially inside a quoted element;
 * everything else, including , { } and spaces, is taken literally. */
static const struct literal_case literal_cases[] = {
	{"empty", {END}, "{}"},
	{"one", {"a", END}, "{\"a\"}"},
	{"two", {"a", "b", END}, "{\"a\",\"b\"}"},
	{"empty string", {"", END}, "{\"\"}"},
	{"NULL", {NULL, END}, "{NULL}"},
	{"NULL first and last", {NULL, "x", NULL, END}, "{NULL,\"x\",NULL}"},
	{"only NULLs", {NULL, NULL, END}, "{NULL,NULL}"},
	{"string NULL is quoted", {"NULL", "null", END}, "{\"NULL\",\"null\"}"},
	{"double quote", {"a\"b", END}, "{\"a\\\"b\"}"},
	{"only a quote", {"\"", END}, "{\"\\\"\"}"},
	{"backslash", {"a\\b", END}, "{\"a\\\\b\"}"},
	{"trailing backslash", {"x\\", END}, "{\"x\\\\\"}"},
	{"escaped quote stays escaped", {"\\\"", END}, "{\"\\\\\\\"\"}"},
	{"comma", {"a,b", END}, "{\"a,b\"}"},
	{"braces", {"{x}", "}", "{", END}, "{\"{x}\",\"}\",\"{\"}"},
	{"spaces", {" a b ", END}, "{\" a b \"}"},
	{"tab and newline", {"a\tb\nc", END}, "{\"a\tb\nc\"}"},
	{"single quote", {"O'Brien", END}, "{\"O'Brien\"}"},
	{"UTF-8", {"\xc3\xa9\xe2\x82\xac", END}, "{\"\xc3\xa9\xe2\x82\xac\"}"},
	{"mixed",
	 {"{\"k\":\"v\\n\"}", NULL, "", END},
	 "{\"{\\\"k\\\":\\\"v\\\\n\\\"}\",NULL,\"\"}"},
};

static void fill(payq_sqlbuf_t *b, const char *const *elems)
{
	for (size_t k = 0; k < MAXELEMS && elems[k] != END; k++)
		payq_sqlbuf_str(b, elems[k]);
}

START_TEST(test_literals)
{
	for (size_t i = 0; i < PAYQ_ARRAY_SIZE(literal_cases); i++) {
		const struct literal_case *c = &literal_cases[i];
		payq_sqlbuf_t b = {0};
		size_t count = 0;

		while (count < MAXELEMS && c->elems[count] != END)
			count++;
		fill(&b, c->elems);
		ck_assert_msg(!strcmp(payq_sqlbuf_array(&b), c->want), "%s: got %s, want %s",
			      c->name, payq_sqlbuf_array(&b), c->want);
		ck_assert_msg(b.count == count, "%s: count %zu, want %zu", c->name, b.count, count);
		ck_assert_msg(!b.oom, "%s", c->name);
		payq_sqlbuf_free(&b);
	}
}
END_TEST

/* The literal stays valid until the next change, and asking twice gives the same text. */
START_TEST(test_array_twice_then_append)
{
	payq_sqlbuf_t b = {0};

	payq_sqlbuf_str(&b, "a");
	ck_assert_str_eq(payq_sqlbuf_array(&b), "{\"a\"}");
	ck_assert_str_eq(payq_sqlbuf_array(&b), "{\"a\"}");
	payq_sqlbuf_str(&b, NULL);
	ck_assert_str_eq(payq_sqlbuf_array(&b), "{\"a\",NULL}");
	payq_sqlbuf_str(&b, "b");
	ck_assert_str_eq(payq_sqlbuf_array(&b), "{\"a\",NULL,\"b\"}");
	payq_sqlbuf_free(&b);
}
END_TEST

/* A zeroed struct is an empty array, before and after free. */
START_TEST(test_zeroed_and_freed)
{
	payq_sqlbuf_t b = {0};

	ck_assert_str_eq(payq_sqlbuf_array(&b), "{}");
	ck_assert_uint_eq(b.count, 0);
	payq_sqlbuf_free(&b);
	ck_assert_ptr_null(b.buf);
	ck_assert_uint_eq(b.len, 0);
	ck_assert_uint_eq(b.cap, 0);
	payq_sqlbuf_free(&b); /* twice is harmless */
	payq_sqlbuf_reset(&b);
	ck_assert_str_eq(payq_sqlbuf_array(&b), "{}");
	payq_sqlbuf_free(&b);
}
END_TEST

/* Reset keeps the memory and starts a fresh array, also after an empty one. */
START_TEST(test_reset_reuse)
{
	payq_sqlbuf_t b = {0};
	char *mem;
	size_t cap;

	for (int k = 0; k < 50; k++)
		payq_sqlbuf_str(&b, "payment-command-id");
	ck_assert_ptr_nonnull(payq_sqlbuf_array(&b));
	mem = b.buf;
	cap = b.cap;

	payq_sqlbuf_reset(&b);
	ck_assert_uint_eq(b.count, 0);
	ck_assert_uint_eq(b.len, 0);
	ck_assert_str_eq(payq_sqlbuf_array(&b), "{}");
	ck_assert_ptr_eq(b.buf, mem);
	ck_assert_uint_eq(b.cap, cap);

	payq_sqlbuf_str(&b, "x");
	ck_assert_str_eq(payq_sqlbuf_array(&b), "{\"x\"}");
	payq_sqlbuf_reset(&b);
	payq_sqlbuf_str(&b, NULL);
	payq_sqlbuf_str(&b, "y\"");
	ck_assert_str_eq(payq_sqlbuf_array(&b), "{NULL,\"y\\\"\"}");
	ck_assert_ptr_eq(b.buf, mem);
	payq_sqlbuf_reset(&b);
	ck_assert_str_eq(payq_sqlbuf_array(&b), "{}");
	payq_sqlbuf_free(&b);
}
END_TEST

/* Many elements, and elements far beyond the first allocation, force several reallocs; the
 * result must equal a literal built independently here. */
START_TEST(test_growth)
{
	static const size_t counts[] = {1, 10, 100, 1000, 10000};
	static const size_t sizes[] = {0, 1, 127, 128, 255, 256, 1000, 5000};

	for (size_t i = 0; i < PAYQ_ARRAY_SIZE(counts); i++) {
		payq_sqlbuf_t b = {0};
		size_t want_size = 16 * counts[i] + 3, n = 0;
		char *want = malloc(want_size);
		char id[32];

		ck_assert_ptr_nonnull(want);
		want[n++] = '{';
		for (size_t k = 0; k < counts[i]; k++) {
			if (k % 7 == 3) {
				payq_sqlbuf_str(&b, NULL);
				n += (size_t)snprintf(want + n, want_size - n, "%sNULL",
						      k ? "," : "");
				continue;
			}
			snprintf(id, sizeof(id), "c-%zu", k);
			payq_sqlbuf_str(&b, id);
			n += (size_t)snprintf(want + n, want_size - n, "%s\"%s\"", k ? "," : "",
					      id);
		}
		ck_assert_uint_lt(n + 2, want_size);
		want[n++] = '}';
		want[n] = '\0';
		ck_assert_msg(!strcmp(payq_sqlbuf_array(&b), want), "%zu elements", counts[i]);
		ck_assert_uint_eq(b.count, counts[i]);
		ck_assert_uint_eq(strlen(payq_sqlbuf_array(&b)), n);
		free(want);
		payq_sqlbuf_free(&b);
	}

	/* One long element that is all escapes: the worst case for the reservation. */
	for (size_t i = 0; i < PAYQ_ARRAY_SIZE(sizes); i++) {
		for (int pass = 0; pass < 2; pass++) {
			payq_sqlbuf_t b = {0};
			char *s = malloc(sizes[i] + 1), *want = malloc(2 * sizes[i] + 5);
			size_t n = 0;

			ck_assert_ptr_nonnull(s);
			ck_assert_ptr_nonnull(want);
			want[n++] = '{';
			want[n++] = '"';
			for (size_t k = 0; k < sizes[i]; k++) {
				s[k] = pass ? '\\' : (k % 2 ? '"' : 'a');
				if (s[k] != 'a')
					want[n++] = '\\';
				want[n++] = s[k];
			}
			s[sizes[i]] = '\0';
			want[n++] = '"';
			want[n++] = '}';
			want[n] = '\0';
			payq_sqlbuf_str(&b, s);
			ck_assert_msg(!strcmp(payq_sqlbuf_array(&b), want), "size %zu pass %d",
				      sizes[i], pass);
			free(s);
			free(want);
			payq_sqlbuf_free(&b);
		}
	}
}
END_TEST

static Suite *sqlbuf_suite(void)
{
	Suite *s = suite_create("sqlbuf");
	TCase *tc = tcase_create("sqlbuf");

	tcase_set_timeout(tc, 60);
	tcase_add_test(tc, test_literals);
	tcase_add_test(tc, test_array_twice_then_append);
	tcase_add_test(tc, test_zeroed_and_freed);
	tcase_add_test(tc, test_reset_reuse);
	tcase_add_test(tc, test_growth);
	suite_add_tcase(s, tc);
	return s;
}

PAYQ_TEST_SUITES(sqlbuf_suite);
