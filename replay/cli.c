/* cli.c - what payq-replay's commands share: exit codes, the run flag, the option tail,
 * error lines, progress. */
#include "cli.h"

#include <errno.h>
#include <inttypes.h>
#include <math.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "audit.h"
#include "dlq.h"
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

/* The shared options, each with the REPLAY_TAKES_* bit that lets a command take it. */
static const struct {
	struct option opt;
	unsigned bit;
} shared[] = {
	{{"partition", required_argument, NULL, OPT_PARTITION}, REPLAY_TAKES_PARTITION},
	{{"from-offset", required_argument, NULL, OPT_FROM_OFFSET}, REPLAY_TAKES_FROM},
	{{"from-time", required_argument, NULL, OPT_FROM_TIME}, REPLAY_TAKES_FROM},
	{{"to-offset", required_argument, NULL, OPT_TO_OFFSET}, REPLAY_TAKES_TO},
	{{"to-time", required_argument, NULL, OPT_TO_TIME}, REPLAY_TAKES_TO},
	{{"to-topic", required_argument, NULL, OPT_TO_TOPIC}, REPLAY_TAKES_TO_TOPIC},
	{{"rate", required_argument, NULL, OPT_RATE}, REPLAY_TAKES_RATE},
	{{"dry-run", no_argument, NULL, OPT_DRY_RUN}, REPLAY_TAKES_DRY_RUN},
	{{"execute", no_argument, NULL, OPT_EXECUTE}, REPLAY_TAKES_EXECUTE},
	{{"force", no_argument, NULL, OPT_FORCE}, REPLAY_TAKES_FORCE},
};

void replay_opts_init(replay_opts_t *o)
{
	memset(o, 0, sizeof(*o));
	payq_range_spec_init(&o->range);
}

void replay_opts_free(replay_opts_t *o)
{
	payq_range_spec_free(&o->range);
}

replay_opt_t replay_range_opt(int opt, const char *arg, payq_range_spec_t *spec, char *errstr,
			      size_t errstr_size)
{
	int64_t v;

	switch (opt) {
	case OPT_PARTITION:
		if (payq_parse_int64(arg, 0, INT32_MAX, &v)) {
			payq_err(errstr, errstr_size,
				 "--partition \"%s\" is not a partition number", arg);
			return REPLAY_OPT_BAD;
		}
		if (payq_grow((void **)&spec->partitions, &spec->partitions_cap,
			      spec->npartitions + 1, sizeof(*spec->partitions))) {
			payq_err(errstr, errstr_size, "out of memory");
			return REPLAY_OPT_BAD;
		}
		spec->partitions[spec->npartitions++] = (int32_t)v;
		return REPLAY_OPT_TAKEN;
	case OPT_FROM_OFFSET:
	case OPT_TO_OFFSET:
		if (payq_parse_int64(arg, 0, INT64_MAX, &v)) {
			payq_err(errstr, errstr_size, "--%s-offset \"%s\" is not an offset",
				 opt == OPT_FROM_OFFSET ? "from" : "to", arg);
			return REPLAY_OPT_BAD;
		}
		*(opt == OPT_FROM_OFFSET ? &spec->from_offset : &spec->to_offset) = v;
		return REPLAY_OPT_TAKEN;
	case OPT_FROM_TIME:
	case OPT_TO_TIME:
		if (payq_parse_iso8601_ms(arg, &v) || v < 0) {
			payq_err(errstr, errstr_size,
				 "--%s-time \"%s\" is not an ISO 8601 time such as "
				 "2026-11-26T10:00:00Z",
				 opt == OPT_FROM_TIME ? "from" : "to", arg);
			return REPLAY_OPT_BAD;
		}
		*(opt == OPT_FROM_TIME ? &spec->from_time_ms : &spec->to_time_ms) = v;
		return REPLAY_OPT_TAKEN;
	default: return REPLAY_OPT_OTHER;
	}
}

/* Parses a rate in messages per second: a positive finite number. */
static bool parse_rate(const char *s, double *out)
{
	char *end;
	double v;

	errno = 0;
	v = strtod(s, &end);
	if (errno || end == s || *end || !isfinite(v) || v <= 0)
		return false;
	*out = v;
	return true;
}

/* Applies one shared option that is not a range option. */
static replay_opt_t shared_opt(int opt, const char *arg, replay_opts_t *o, char *errstr,
			       size_t errstr_size)
{
	switch (opt) {
	case OPT_TO_TOPIC: o->to_topic = arg; return REPLAY_OPT_TAKEN;
	case OPT_DRY_RUN: o->dry_run = true; return REPLAY_OPT_TAKEN;
	case OPT_EXECUTE: o->execute = true; return REPLAY_OPT_TAKEN;
	case OPT_FORCE: o->force = true; return REPLAY_OPT_TAKEN;
	case OPT_RATE:
		if (parse_rate(arg, &o->rate))
			return REPLAY_OPT_TAKEN;
		payq_err(errstr, errstr_size, "--rate \"%s\" is not a positive number", arg);
		return REPLAY_OPT_BAD;
	default: return replay_range_opt(opt, arg, &o->range, errstr, errstr_size);
	}
}

/* The getopt_long table of def: the shared options it takes, then its own. The caller
 * frees it. */
static struct option *longopts_of(const replay_optdef_t *def)
{
	size_t nown = 0, n = 0;
	struct option *l;

	while (nown < REPLAY_OWN_OPTS_MAX && def->own[nown].name)
		nown++;
	l = calloc(PAYQ_ARRAY_SIZE(shared) + nown + 1, sizeof(*l));
	if (!l)
		return NULL;
	for (size_t i = 0; i < PAYQ_ARRAY_SIZE(shared); i++)
		if (def->takes & shared[i].bit)
			l[n++] = shared[i].opt;
	for (size_t i = 0; i < nown; i++)
		l[n++] = def->own[i];
	return l;
}

/* True when opt is a shared option that def takes. */
static bool takes_shared(const replay_optdef_t *def, int opt)
{
	for (size_t i = 0; i < PAYQ_ARRAY_SIZE(shared); i++)
		if (shared[i].opt.val == opt)
			return def->takes & shared[i].bit;
	return false;
}

replay_exit_t replay_parse_opts(const replay_optdef_t *def, int argc, char **argv,
				replay_opts_t *opts, void *cmd, char *errstr, size_t errstr_size)
{
	struct option *longopts = longopts_of(def);
	replay_opt_t res = REPLAY_OPT_TAKEN;
	int opt;

	if (!longopts) {
		payq_err(errstr, errstr_size, "out of memory");
		return REPLAY_EXIT_USAGE;
	}
	optind = 1;
	opterr = 0;
	while (res == REPLAY_OPT_TAKEN &&
	       (opt = getopt_long(argc, argv, "", longopts, NULL)) != -1) {
		if (opt == '?' || opt == ':')
			res = REPLAY_OPT_OTHER;
		else if (takes_shared(def, opt))
			res = shared_opt(opt, optarg, opts, errstr, errstr_size);
		else
			res = def->parse_own(cmd, opt, optarg, errstr, errstr_size);
		if (res == REPLAY_OPT_OTHER)
			payq_err(errstr, errstr_size, "unknown or incomplete option \"%s\"",
				 argv[optind - 1]);
	}
	free(longopts);
	if (res != REPLAY_OPT_TAKEN)
		return REPLAY_EXIT_USAGE;
	if (optind < argc) {
		payq_err(errstr, errstr_size, "unexpected argument \"%s\"", argv[optind]);
		return REPLAY_EXIT_USAGE;
	}
	return REPLAY_EXIT_OK;
}

static replay_opts_t *opts_of(const replay_steps_t *steps, void *cmd)
{
	return (replay_opts_t *)((char *)cmd + steps->opts_at);
}

/* The options and the request. */
static replay_exit_t parse(const replay_steps_t *steps, const payq_config_t *cfg, int argc,
			   char **argv, void *cmd, char *errstr, size_t errstr_size)
{
	if (replay_parse_opts(&steps->opts, argc, argv, opts_of(steps, cmd), cmd, errstr,
			      errstr_size))
		return REPLAY_EXIT_USAGE;
	return steps->request(cfg, cmd, errstr, errstr_size);
}

int replay_command_run(const replay_steps_t *steps, const payq_config_t *cfg, int argc, char **argv)
{
	char errstr[512];
	void *cmd = calloc(1, steps->cmd_size);
	replay_env_t env = {.cfg = cfg};
	replay_exit_t rc = REPLAY_EXIT_FAILED;

	if (!cmd) {
		replay_error(steps->name, "out of memory");
		return rc;
	}
	replay_opts_init(opts_of(steps, cmd));
	rc = parse(steps, cfg, argc, argv, cmd, errstr, sizeof(errstr));
	if (rc != REPLAY_EXIT_OK) {
		replay_usage_error(steps->name, errstr);
	} else if (!(env.rk = payq_range_client_new(cfg, errstr, sizeof(errstr)))) {
		rc = REPLAY_EXIT_FAILED;
		replay_error(steps->name, errstr);
	} else if ((rc = steps->plan(&env, cmd, errstr, sizeof(errstr))) != REPLAY_EXIT_OK) {
		replay_error(steps->name, errstr);
	} else {
		steps->print(&env, cmd);
		rc = steps->execute(&env, cmd);
	}
	steps->cleanup(cmd);
	payq_range_client_destroy(env.rk);
	replay_opts_free(opts_of(steps, cmd));
	free(cmd);
	return rc;
}

void replay_error(const char *cmd, const char *errstr)
{
	fprintf(stderr, "payq-replay %s: %s\n", cmd, errstr);
}

void replay_usage_error(const char *cmd, const char *errstr)
{
	fprintf(stderr, "payq-replay %s: %s (see payq-replay %s --help)\n", cmd, errstr, cmd);
}

replay_exit_t replay_read_exit(const char *cmd, payq_range_read_t rd, const char *errstr)
{
	switch (rd) {
	case PAYQ_RANGE_DONE: return REPLAY_EXIT_OK;
	case PAYQ_RANGE_INTERRUPTED:
		replay_error(cmd, "interrupted");
		return REPLAY_EXIT_INTERRUPTED;
	case PAYQ_RANGE_FAILED: break;
	}
	replay_error(cmd, errstr);
	return REPLAY_EXIT_FAILED;
}

int replay_range_nparts(const payq_range_t *r)
{
	int nparts = 0;

	for (size_t i = 0; i < r->cnt; i++)
		if (r->parts[i].partition + 1 > nparts)
			nparts = r->parts[i].partition + 1;
	return nparts;
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

/* payq-console runs these two in-process, through the same steps as payq-replay. */
int replay_audit_main(const payq_config_t *cfg, int argc, char **argv)
{
	return replay_command_run(&replay_audit_steps, cfg, argc, argv);
}

int replay_dlq_main(const payq_config_t *cfg, int argc, char **argv)
{
	return replay_command_run(&replay_dlq_steps, cfg, argc, argv);
}
