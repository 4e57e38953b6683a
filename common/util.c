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

/* Length of the valid UTF-8 sequence at s (1..4), or 0 when s[0] does not start one. */
size_t payq_utf8_scrub(char *s)
{
	unsigned char *p = (unsigned char *)s;
	size_t replaced = 0, n = strlen(s);

	for (size_t i = 0; i < n;) {
		size_t len = payq_utf8_char_len(p + i, n - i);
		if (len) {
			i += len;
		} else {
			p[i++] = '?';
			replaced++;
		}
	}
	return replaced;
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
		case '"':
			buf[n++] = '\\';
			buf[n++] = '"';
			break;
		case '\\':
			buf[n++] = '\\';
			buf[n++] = '\\';
			break;
		case '\n':
			buf[n++] = '\\';
			buf[n++] = 'n';
			break;
		case '\r':
			buf[n++] = '\\';
			buf[n++] = 'r';
			break;
		case '\t':
			buf[n++] = '\\';
			buf[n++] = 't';
			break;
		default:
			if (c < 0x20)
				n += (size_t)snprintf(buf + n, size - n, "\\u%04x", c);
			else
				buf[n++] = (char)c;
		}
	}
	/* Never cut a UTF-8 sequence in half when the buffer ran out. */
	if (*s) {
		while (n > 1 && ((unsigned char)buf[n - 1] & 0xc0) == 0x80)
			n--;
		if (n > 1 && ((unsigned char)buf[n - 1] & 0xc0) == 0xc0)
			n--;
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

	/* strtoll would accept leading blanks and a plus sign; a setting may not. */
	if (!s || !((*s >= '0' && *s <= '9') || (*s == '-' && s[1] >= '0' && s[1] <= '9')))
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

	if (!s || *s < '0' || *s > '9')
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

	/* Exactly YYYY-MM-DDTHH:MM:SS first: strptime takes one-digit fields and blanks. */
	static const char shape[] = "dddd-dd-ddTdd:dd:dd";
	for (size_t i = 0; i < sizeof(shape) - 1; i++)
		if (shape[i] == 'd' ? (s[i] < '0' || s[i] > '9') : s[i] != shape[i])
			return -1;
	memset(&tm, 0, sizeof(tm));
	p = strptime(s, "%Y-%m-%dT%H:%M:%S", &tm);
	if (!p)
		return -1;
	if (*p == '.') {
		int64_t scale = 100;
		if (p[1] < '0' || p[1] > '9')
			return -1;
		for (p++; *p >= '0' && *p <= '9'; p++) {
			frac_ms += (*p - '0') * scale;
			scale /= 10;
		}
	}
	if (*p == 'Z') {
		p++;
	} else if (*p == '+' || *p == '-') {
		/* Exactly [+-]hh:mm, checked before stepping over it. */
		if (strlen(p) != 6 || p[3] != ':')
			return -1;
		for (int i = 1; i < 6; i++)
			if (i != 3 && (p[i] < '0' || p[i] > '9'))
				return -1;
		offset_s = ((p[1] - '0') * 10 + (p[2] - '0')) * 3600 +
			   ((p[4] - '0') * 10 + (p[5] - '0')) * 60;
		if (p[1] > '2' || (p[1] == '2' && p[2] > '3') || p[4] > '5')
			return -1;
		if (*p == '-')
			offset_s = -offset_s;
		p += 6;
	} else {
		return -1;
	}
	if (*p)
		return -1;
	{
		/* timegm() normalises 30 February to 2 March; refuse days that do not exist. */
		struct tm check = tm, back;
		time_t t = timegm(&check);
		gmtime_r(&t, &back);
		if (back.tm_mday != tm.tm_mday || back.tm_mon != tm.tm_mon)
			return -1;
		*out = ((int64_t)t - offset_s) * 1000 + frac_ms;
	}
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

size_t payq_utf8_char_len(const unsigned char *s, size_t n)
{
	unsigned char c, lo = 0x80, hi = 0xbf;
	size_t need;

	if (!n)
		return 0;
	c = s[0];
	if (c < 0x80)
		return 1;
	if (c >= 0xc2 && c <= 0xdf)
		need = 1;
	else if (c >= 0xe0 && c <= 0xef)
		need = 2;
	else if (c >= 0xf0 && c <= 0xf4)
		need = 3;
	else
		return 0;
	/* The second byte carries the overlong, surrogate and range limits. */
	if (c == 0xe0)
		lo = 0xa0;
	else if (c == 0xed)
		hi = 0x9f;
	else if (c == 0xf0)
		lo = 0x90;
	else if (c == 0xf4)
		hi = 0x8f;
	if (n - 1 < need || s[1] < lo || s[1] > hi)
		return 0;
	for (size_t k = 2; k <= need; k++)
		if ((s[k] & 0xc0) != 0x80)
			return 0;
	return need + 1;
}

char *payq_utf8_clean(char *buf, size_t size, const char *s, size_t n)
{
	static const char replacement[] = "\xef\xbf\xbd"; /* U+FFFD */
	const unsigned char *in = (const unsigned char *)s;
	size_t o = 0;

	if (!size)
		return buf;
	for (size_t i = 0; i < n && in[i];) {
		size_t len = payq_utf8_char_len(in + i, n - i);
		const char *from = len ? s + i : replacement;
		size_t out = len ? len : sizeof(replacement) - 1;
		if (o + out > size - 1)
			break; /* only whole characters */
		memcpy(buf + o, from, out);
		/* Control characters (newlines in a log line, say) become spaces. */
		if (len == 1 && (in[i] < 0x20 || in[i] == 0x7f))
			buf[o] = ' ';
		o += out;
		i += len ? len : 1;
	}
	buf[o] = '\0';
	return buf;
}

int payq_grow(void **arr, size_t *cap, size_t want, size_t elem)
{
	void *p;

	if (want <= *cap)
		return 0;
	p = realloc(*arr, want * elem);
	if (!p)
		return -1;
	*arr = p;
	*cap = want;
	return 0;
}
