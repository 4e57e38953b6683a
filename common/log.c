/* log.c - JSON-lines logging on stderr. */
#include "log.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "util.h"

int payq_log_level = PAYQ_LOG_INFO;

static const char *const level_names[] = {"error", "warn", "info", "debug"};

/* Registered secrets, longest first so that a password inside a longer userinfo does not
 * leave the rest of it showing. Written at startup only, then read by every thread. */
static struct secret {
	char *s;
	size_t len;
} * secrets;
static size_t nsecrets;

void payq_log_add_secret(const char *s, size_t len)
{
	struct secret *grown;
	size_t at;
	char *copy;

	if (!s || !len)
		return;
	for (size_t i = 0; i < nsecrets; i++)
		if (secrets[i].len == len && !memcmp(secrets[i].s, s, len))
			return;
	grown = realloc(secrets, (nsecrets + 1) * sizeof(*grown));
	if (!grown)
		return;
	secrets = grown;
	copy = malloc(len);
	if (!copy)
		return;
	memcpy(copy, s, len);
	for (at = 0; at < nsecrets && secrets[at].len >= len; at++)
		;
	memmove(&secrets[at + 1], &secrets[at], (nsecrets - at) * sizeof(*secrets));
	secrets[at] = (struct secret){copy, len};
	nsecrets++;
}

void payq_log_clear_secrets(void)
{
	for (size_t i = 0; i < nsecrets; i++)
		free(secrets[i].s);
	free(secrets);
	secrets = NULL;
	nsecrets = 0;
}

/* Returns the length of the registered secret that starts at p, or 0. */
static size_t secret_at(const char *p, size_t left)
{
	for (size_t i = 0; i < nsecrets; i++)
		if (secrets[i].len <= left && !memcmp(p, secrets[i].s, secrets[i].len))
			return secrets[i].len;
	return 0;
}

size_t payq_log_mask(const char *in, char *out, size_t size)
{
	size_t n = strlen(in), o = 0;

	if (!size)
		return 0;
	for (size_t i = 0; i < n && o + 1 < size;) {
		size_t len = secret_at(in + i, n - i);

		if (!len) {
			out[o++] = in[i++];
			continue;
		}
		for (const char *m = "***"; *m && o + 1 < size; m++)
			out[o++] = *m;
		i += len;
	}
	out[o] = '\0';
	return o;
}

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
	char raw[2048], msg[2048], line[4096];
	struct timespec ts;
	struct tm tm;
	va_list ap;
	size_t n;

	va_start(ap, fmt);
	vsnprintf(raw, sizeof(raw), fmt, ap);
	va_end(ap);
	payq_log_mask(raw, msg, sizeof(msg));

	clock_gettime(CLOCK_REALTIME, &ts);
	gmtime_r(&ts.tv_sec, &tm);
	n = strftime(line, sizeof(line), "{\"ts\":\"%Y-%m-%dT%H:%M:%S", &tm);
	n += (size_t)snprintf(line + n, sizeof(line) - n,
			      ".%03ldZ\",\"level\":\"%s\",\"msg\":", ts.tv_nsec / 1000000,
			      payq_log_level_name(level));
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
