/* cli.c - what payq-replay's subcommands share: exit codes, the run flag, options, progress. */
#include "cli.h"

#include <errno.h>
#include <inttypes.h>
#include <math.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "signals.h"
#include "util.h"

volatile sig_atomic_t replay_run = 1;

void replay_handle_signals(void)
{
	payq_signals_install(&replay_run);
}

void replay_print_exit_codes(FILE *fp)
{
	fprintf(fp,
		"Exit codes:\n"
		"  0    done (audit: no gaps)\n"
		"  1    audit found gaps\n"
		"  2    bad arguments or settings; or refused because the range reaches past the\n"
		"       dedup retention horizon (use --force)\n"
		"  3    refused: the consumer group has active members\n"
		"  4    Kafka or PostgreSQL error, or a copy without a PERSISTED delivery report\n"
		"  130  interrupted by SIGINT or SIGTERM\n"
		"\n");
}

int replay_range_opt(int opt, const char *arg, payq_range_spec_t *spec, char *errstr,
		     size_t errstr_size)
{
	int64_t v;

	switch (opt) {
	case OPT_PARTITION: {
		int32_t *grown;
		if (payq_parse_int64(arg, 0, INT32_MAX, &v))
			return payq_err(errstr, errstr_size,
					"--partition \"%s\" is not a partition number", arg);
		grown = realloc(spec->partitions, (spec->npartitions + 1) * sizeof(*grown));
		if (!grown)
			return payq_err(errstr, errstr_size, "out of memory");
		spec->partitions = grown;
		spec->partitions[spec->npartitions++] = (int32_t)v;
		return 1;
	}
	case OPT_FROM_OFFSET:
	case OPT_TO_OFFSET:
		if (payq_parse_int64(arg, 0, INT64_MAX, &v))
			return payq_err(errstr, errstr_size, "--%s-offset \"%s\" is not an offset",
					opt == OPT_FROM_OFFSET ? "from" : "to", arg);
		*(opt == OPT_FROM_OFFSET ? &spec->from_offset : &spec->to_offset) = v;
		return 1;
	case OPT_FROM_TIME:
	case OPT_TO_TIME:
		if (payq_parse_iso8601_ms(arg, &v) || v < 0)
			return payq_err(errstr, errstr_size,
					"--%s-time \"%s\" is not an ISO 8601 time such as "
					"2026-11-26T10:00:00Z",
					opt == OPT_FROM_TIME ? "from" : "to", arg);
		*(opt == OPT_FROM_TIME ? &spec->from_time_ms : &spec->to_time_ms) = v;
		return 1;
	default: return 0;
	}
}

int replay_parse_rate(const char *s, double *out)
{
	char *end;
	double v;

	errno = 0;
	v = strtod(s, &end);
	if (errno || end == s || *end || !isfinite(v) || v <= 0)
		return -1;
	*out = v;
	return 0;
}

const char *replay_fmt_time(int64_t ms, char *buf, size_t size)
{
	time_t t = (time_t)(ms / 1000);
	struct tm tm;
	char base[32];

	gmtime_r(&t, &tm);
	strftime(base, sizeof(base), "%Y-%m-%dT%H:%M:%S", &tm);
	snprintf(buf, size, "%s.%03dZ", base, (int)(ms % 1000));
	return buf;
}

void replay_progress_init(replay_progress_t *p)
{
	memset(p, 0, sizeof(*p));
	p->tty = isatty(STDERR_FILENO);
}

void replay_progress(replay_progress_t *p, bool force, const char *fmt, ...)
{
	va_list ap;
	int64_t now;

	if (!p->tty)
		return;
	now = payq_now_ms();
	if (!force && p->shown && now - p->last_ms < 200)
		return;
	p->last_ms = now;
	p->shown = true;
	fputs("\r\033[K", stderr);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fflush(stderr);
}

void replay_progress_end(replay_progress_t *p)
{
	if (p->tty && p->shown)
		fputc('\n', stderr);
	p->shown = false;
}
