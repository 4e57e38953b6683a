/* util.c - small helpers shared by every payq program. */
#include "util.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <time.h>

int64_t payq_now_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

int64_t payq_now_us(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

int64_t payq_wall_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_REALTIME, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

size_t payq_json_escape(char *buf, size_t size, const char *s)
{
	size_t n = 0;

	if (size < 3) {
		if (size)
			buf[0] = '\0';
		return 0;
	}
	buf[n++] = '"';
	for (; *s && n + 8 < size; s++) {
		unsigned char c = (unsigned char)*s;
		switch (c) {
		case '"': buf[n++] = '\\'; buf[n++] = '"'; break;
		case '\\': buf[n++] = '\\'; buf[n++] = '\\'; break;
		case '\n': buf[n++] = '\\'; buf[n++] = 'n'; break;
		case '\r': buf[n++] = '\\'; buf[n++] = 'r'; break;
		case '\t': buf[n++] = '\\'; buf[n++] = 't'; break;
		default:
			if (c < 0x20)
				n += (size_t)snprintf(buf + n, size - n, "\\u%04x", c);
			else
				buf[n++] = (char)c;
		}
	}
	buf[n++] = '"';
	buf[n] = '\0';
	return n;
}

int payq_err(char *errstr, size_t errstr_size, const char *fmt, ...)
{
	va_list ap;

	if (errstr && errstr_size) {
		va_start(ap, fmt);
		vsnprintf(errstr, errstr_size, fmt, ap);
		va_end(ap);
	}
	return -1;
}

int payq_parse_int64(const char *s, int64_t min, int64_t max, int64_t *out)
{
	char *end;
	long long v;

	if (!s || !*s)
		return -1;
	errno = 0;
	v = strtoll(s, &end, 10);
	if (errno || *end || v < min || v > max)
		return -1;
	*out = v;
	return 0;
}

int payq_parse_duration_ms(const char *s, int64_t *out)
{
	static const struct {
		const char *suffix;
		int64_t ms;
	} units[] = {{"ms", 1}, {"s", 1000}, {"m", 60000}, {"h", 3600000}, {"d", 86400000}};
	char *end;
	long long v;

	if (!s || !*s)
		return -1;
	errno = 0;
	v = strtoll(s, &end, 10);
	if (errno || v < 0 || end == s)
		return -1;
	for (size_t i = 0; i < PAYQ_ARRAY_SIZE(units); i++) {
		if (!strcmp(end, units[i].suffix)) {
			if (v > INT64_MAX / units[i].ms)
				return -1;
			*out = v * units[i].ms;
			return 0;
		}
	}
	return -1;
}

int payq_parse_iso8601_ms(const char *s, int64_t *out)
{
	struct tm tm;
	const char *p;
	int64_t frac_ms = 0, offset_s = 0;

	memset(&tm, 0, sizeof(tm));
	p = strptime(s, "%Y-%m-%dT%H:%M:%S", &tm);
	if (!p)
		return -1;
	if (*p == '.') {
		int64_t scale = 100;
		for (p++; *p >= '0' && *p <= '9'; p++) {
			frac_ms += (*p - '0') * scale;
			scale /= 10;
		}
	}
	if (*p == 'Z') {
		p++;
	} else if (*p == '+' || *p == '-') {
		int hh, mm;
		if (sscanf(p + 1, "%2d:%2d", &hh, &mm) != 2)
			return -1;
		offset_s = (hh * 3600 + mm * 60) * (*p == '+' ? 1 : -1);
		p += 6;
	} else {
		return -1;
	}
	if (*p)
		return -1;
	*out = ((int64_t)timegm(&tm) - offset_s) * 1000 + frac_ms;
	return 0;
}

int payq_random_bytes(void *buf, size_t n)
{
	unsigned char *p = buf;

	while (n > 0) {
		ssize_t r = getrandom(p, n, 0);
		if (r < 0) {
			if (errno == EINTR)
				continue;
			return -1;
		}
		p += r;
		n -= (size_t)r;
	}
	return 0;
}

void payq_hex(const unsigned char *in, size_t n, char *out)
{
	static const char digits[] = "0123456789abcdef";

	for (size_t i = 0; i < n; i++) {
		out[2 * i] = digits[in[i] >> 4];
		out[2 * i + 1] = digits[in[i] & 0xf];
	}
	out[2 * n] = '\0';
}
