/* util.h - small helpers shared by every payq program: time, JSON escaping, strings. */
#pragma once

#include <stddef.h>
#include <stdint.h>

#define PAYQ_ARRAY_SIZE(a) (sizeof(a) / sizeof((a)[0]))

/* Monotonic clock in milliseconds / microseconds. */
int64_t payq_now_ms(void);
int64_t payq_now_us(void);
/* Wall clock in milliseconds since the epoch. */
int64_t payq_wall_ms(void);

/* Replaces, in place, every byte of s that is not part of a valid UTF-8 sequence (as
 * PostgreSQL reads it: no overlong forms, no surrogates, nothing above U+10FFFF, no cut
 * sequence at the end) with '?'. For text from outside that is stored in PostgreSQL,
 * which refuses the whole statement over one bad byte. Returns the bytes replaced. */
size_t payq_utf8_scrub(char *s);

/* Writes s as a quoted JSON string into buf (always NUL-terminated when size > 0).
 * Returns the number of bytes written, never more than size - 1. */
size_t payq_json_escape(char *buf, size_t size, const char *s);

/* Formats errstr like snprintf and returns -1, for one-line error returns. */
int payq_err(char *errstr, size_t errstr_size, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

/* Parses a whole decimal integer in [min, max]. Returns 0, or -1 on any junk. */
int payq_parse_int64(const char *s, int64_t min, int64_t max, int64_t *out);

/* Parses a duration such as "500ms", "30s", "15m", "2h" or "7d" into milliseconds. */
int payq_parse_duration_ms(const char *s, int64_t *out);

/* Parses an ISO 8601 UTC time ("2026-11-26T10:00:00Z", fraction optional, or a
 * +hh:mm offset) into milliseconds since the epoch. Returns 0 or -1. */
int payq_parse_iso8601_ms(const char *s, int64_t *out);

/* Fills buf with n random bytes from the kernel. Returns 0 or -1. */
int payq_random_bytes(void *buf, size_t n);

/* Lower-case hex of n bytes into out (2n + 1 bytes). */
void payq_hex(const unsigned char *in, size_t n, char *out);

/* The length of the strict UTF-8 character (RFC 3629: no overlong forms, no encoded
 * surrogates, nothing above U+10FFFF, not cut short) at s[0..n), or 0 when there is none. */
size_t payq_utf8_char_len(const unsigned char *s, size_t n);

/* Copies n bytes of untrusted text (a payment channel's answer) into buf as valid
 * UTF-8: each byte that does not start a valid character becomes U+FFFD, control
 * characters become spaces, a NUL ends the text, and the copy is cut on a character
 * boundary to fit size (always NUL-terminated when size > 0). Returns buf. */
char *payq_utf8_clean(char *buf, size_t size, const char *s, size_t n);

/* Makes *arr, an array of elem-byte elements with room for *cap, hold at least want
 * (never shrinks). Returns 0, or -1 out of memory with *arr and *cap unchanged. */
int payq_grow(void **arr, size_t *cap, size_t want, size_t elem);
