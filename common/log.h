/* log.h - JSON-lines logging on stderr, filtered by level before formatting. */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef enum {
	PAYQ_LOG_ERROR = 0,
	PAYQ_LOG_WARN,
	PAYQ_LOG_INFO,
	PAYQ_LOG_DEBUG,
} payq_log_level_t;

/* Kafka coordinates and the command a log line is about; any field may be unset (NULL
 * topic, partition < 0, offset < 0, NULL command_id, order_id or trace_id). Every line about
 * a command carries its order_id, and its trace_id when the message had a traceparent. */
typedef struct payq_log_ctx {
	const char *topic;
	int32_t partition;
	int64_t offset;
	const char *command_id;
	const char *order_id;
	const char *trace_id;
} payq_log_ctx_t;

extern int payq_log_level;

/* Parses "error", "warn", "info" or "debug". Returns the level, or -1. */
int payq_log_level_parse(const char *s);
const char *payq_log_level_name(int level);

/* Registers a secret (a password, an API key) that must never appear in a log line: from
 * now on payq_log_write() and payq_log_mask() print "***" in its place. The text is
 * copied; NULL and "" are ignored. Call it at startup, before any thread logs. */
void payq_log_add_secret(const char *s, size_t len);
/* Forgets every registered secret (for tests). */
void payq_log_clear_secrets(void);
/* Copies in to out (size bytes, NUL-terminated, cut if need be) with every registered
 * secret replaced by "***". Returns the length written. */
size_t payq_log_mask(const char *in, char *out, size_t size);

/* Writes one JSON line {"ts","level","msg",...ctx} to stderr, secrets masked. Use the macros, which
 * test the level first so that filtered messages cost no formatting. */
void payq_log_write(int level, const payq_log_ctx_t *ctx, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

#define payq_log(lvl, ctx, ...)                                    \
	do {                                                       \
		if ((int)(lvl) <= payq_log_level)                  \
			payq_log_write((lvl), (ctx), __VA_ARGS__); \
	} while (0)

#define log_error(...) payq_log(PAYQ_LOG_ERROR, NULL, __VA_ARGS__)
#define log_warn(...) payq_log(PAYQ_LOG_WARN, NULL, __VA_ARGS__)
#define log_info(...) payq_log(PAYQ_LOG_INFO, NULL, __VA_ARGS__)
#define log_debug(...) payq_log(PAYQ_LOG_DEBUG, NULL, __VA_ARGS__)
