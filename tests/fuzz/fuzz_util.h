/* fuzz_util.h - checks shared by the fuzz targets: an output that reaches PostgreSQL or a log
 * must be a NUL-terminated, valid UTF-8 string inside its buffer. */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* True when s[0..n) is valid UTF-8 as PostgreSQL reads it: no overlong forms, no UTF-16
 * surrogates, nothing above U+10FFFF. */
static inline bool fuzz_utf8_valid(const unsigned char *s, size_t n)
{
	size_t i = 0;

	while (i < n) {
		unsigned char c = s[i];
		size_t len;
		unsigned long cp;

		if (c < 0x80) {
			i++;
			continue;
		}
		if (c >= 0xc2 && c <= 0xdf)
			len = 2, cp = c & 0x1fu;
		else if (c >= 0xe0 && c <= 0xef)
			len = 3, cp = c & 0x0fu;
		else if (c >= 0xf0 && c <= 0xf4)
			len = 4, cp = c & 0x07u;
		else
			return false;
		if (n - i < len)
			return false;
		for (size_t k = 1; k < len; k++) {
			if ((s[i + k] & 0xc0) != 0x80)
				return false;
			cp = cp << 6 | (s[i + k] & 0x3fu);
		}
		if ((len == 3 && cp < 0x800) || (len == 4 && cp < 0x10000) || cp > 0x10ffff ||
		    (cp >= 0xd800 && cp <= 0xdfff))
			return false;
		i += len;
	}
	return true;
}

/* Aborts (a finding) unless buf[0..size) holds a NUL-terminated valid UTF-8 string. */
static inline void fuzz_check_text(const char *what, const char *buf, size_t size)
{
	size_t n = strnlen(buf, size);

	if (n == size) {
		fprintf(stderr, "%s: not NUL-terminated within its %zu bytes\n", what, size);
		abort();
	}
	if (!fuzz_utf8_valid((const unsigned char *)buf, n)) {
		fprintf(stderr, "%s: not valid UTF-8: \"%.*s\"\n", what, (int)n, buf);
		abort();
	}
}

#define FUZZ_CHECK(cond)                                                                         \
	do {                                                                                     \
		if (!(cond)) {                                                                   \
			fprintf(stderr, "%s:%d: check failed: %s\n", __FILE__, __LINE__, #cond); \
			abort();                                                                 \
		}                                                                                \
	} while (0)
