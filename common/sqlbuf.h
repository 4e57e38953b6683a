/* sqlbuf.h - builds PostgreSQL array literals ({"a","b",NULL}) for set-based statements. */
#pragma once

#include <stdbool.h>
#include <stddef.h>

typedef struct payq_sqlbuf {
	char *buf;
	size_t len, cap;
	size_t count; /* elements appended */
	bool oom;     /* an allocation failed; the literal is incomplete */
} payq_sqlbuf_t;

/* Empties the array, keeping its memory. A zeroed struct is a valid empty array. */
void payq_sqlbuf_reset(payq_sqlbuf_t *b);

/* Appends one element, quoted and escaped; NULL appends SQL NULL. */
void payq_sqlbuf_str(payq_sqlbuf_t *b, const char *s);

/* Returns the literal, valid until the next change. Returns NULL after an allocation
 * failure. */
const char *payq_sqlbuf_array(payq_sqlbuf_t *b);

void payq_sqlbuf_free(payq_sqlbuf_t *b);
