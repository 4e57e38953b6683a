/* log.c - JSON-lines logging on stderr. */
#include "log.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "util.h"

int payq_log_level = PAYQ_LOG_INFO;

static const char *const level_names[] = {"error", "warn", "info", "debug"};

int payq_log_level_parse(const char *s)
{
	for (int i = 0; i < (int)(sizeof(level_names) / sizeof(level_names[0])); i++)
		if (!strcmp(s, level_names[i]))
			return i;
	if (!strcmp(s, "warning"))
		return PAYQ_LOG_WARN;
	return -1;
}

const char *payq_log_level_name(int level)
{
	if (level < 0 || level > PAYQ_LOG_DEBUG)
		return "unknown";
	return level_names[level];
}

/* Appends ,"name":"value" (JSON-escaped) at n unless value is NULL; returns the new length. */
static size_t add_string(char *line, size_t size, size_t n, const char *name, const char *value)
{
	if (!value || n >= size)
		return n;
	n += (size_t)snprintf(line + n, size - n, ",\"%s\":", name);
	if (n < size)
		n += payq_json_escape(line + n, size - n, value);
	return n;
}

void payq_log_write(int level, const payq_log_ctx_t *ctx, const char *fmt, ...)
{
	char msg[2048], line[4096];
	struct timespec ts;
	struct tm tm;
	va_list ap;
	size_t n;

	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);

	clock_gettime(CLOCK_REALTIME, &ts);
	gmtime_r(&ts.tv_sec, &tm);
	n = strftime(line, sizeof(line), "{\"ts\":\"%Y-%m-%dT%H:%M:%S", &tm);
	n += (size_t)snprintf(line + n, sizeof(line) - n, ".%03ldZ\",\"level\":\"%s\",\"msg\":",
			      ts.tv_nsec / 1000000, payq_log_level_name(level));
	n += payq_json_escape(line + n, sizeof(line) - n, msg);
	if (ctx) {
		if (ctx->topic && n < sizeof(line)) {
			n += (size_t)snprintf(line + n, sizeof(line) - n, ",\"topic\":");
			n += payq_json_escape(line + n, sizeof(line) - n, ctx->topic);
		}
		if (ctx->partition >= 0 && n < sizeof(line))
			n += (size_t)snprintf(line + n, sizeof(line) - n, ",\"partition\":%d",
					      (int)ctx->partition);
		if (ctx->offset >= 0 && n < sizeof(line))
			n += (size_t)snprintf(line + n, sizeof(line) - n, ",\"offset\":%lld",
					      (long long)ctx->offset);
		n = add_string(line, sizeof(line), n, "order_id", ctx->order_id);
		n = add_string(line, sizeof(line), n, "command_id", ctx->command_id);
		n = add_string(line, sizeof(line), n, "trace_id", ctx->trace_id);
	}
	if (n > sizeof(line) - 3)
		n = sizeof(line) - 3;
	line[n++] = '}';
	line[n++] = '\n';
	/* One write per line, so lines from several threads never interleave. */
	fwrite(line, 1, n, stderr);
}
