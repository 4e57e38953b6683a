/* sqlbuf.c - builds PostgreSQL array literals for set-based statements. */
#include "sqlbuf.h"

#include <stdlib.h>
#include <string.h>

static bool reserve(payq_sqlbuf_t *b, size_t more)
{
	size_t cap = b->cap ? b->cap : 256;
	char *p;

	if (b->oom)
		return false;
	if (b->len + more <= b->cap)
		return true;
	while (cap < b->len + more)
		cap *= 2;
	p = realloc(b->buf, cap);
	if (!p) {
		b->oom = true;
		return false;
	}
	b->buf = p;
	b->cap = cap;
	return true;
}

void payq_sqlbuf_reset(payq_sqlbuf_t *b)
{
	b->len = 0;
	b->count = 0;
	b->oom = false;
}

void payq_sqlbuf_str(payq_sqlbuf_t *b, const char *s)
{
	size_t n = s ? strlen(s) : 0;

	/* Worst case: every byte escaped, two quotes, a comma and the opening brace. */
	if (!reserve(b, 2 * n + 8))
		return;
	b->buf[b->len++] = b->count ? ',' : '{';
	b->count++;
	if (!s) {
		memcpy(b->buf + b->len, "NULL", 4);
		b->len += 4;
		return;
	}
	b->buf[b->len++] = '"';
	for (size_t i = 0; i < n; i++) {
		if (s[i] == '"' || s[i] == '\\')
			b->buf[b->len++] = '\\';
		b->buf[b->len++] = s[i];
	}
	b->buf[b->len++] = '"';
}

const char *payq_sqlbuf_array(payq_sqlbuf_t *b)
{
	if (!reserve(b, 3))
		return NULL;
	if (!b->count) {
		memcpy(b->buf, "{}", 3);
		return b->buf;
	}
	b->buf[b->len] = '}';
	b->buf[b->len + 1] = '\0';
	return b->buf;
}

void payq_sqlbuf_free(payq_sqlbuf_t *b)
{
	free(b->buf);
	memset(b, 0, sizeof(*b));
}
