/* dlq.c - payq-replay dlq: re-drives dead letters to the topic they came from. */
#include "dlq.h"

#include <inttypes.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "codec.h"
#include "copy.h"
#include "db.h"
#include "kafka.h"
#include "log.h"
#include "range.h"
#include "sink.h"
#include "util.h"

#define DLQ_PREFIX "payq-dlq-"

enum { OPT_REASON = OPT__FIRST_OWN };

void replay_dlq_usage(FILE *fp)
{
	fprintf(fp,
		"Usage: payq-replay dlq [--reason CODE]... [--to-topic T] [--partition P]...\n"
		"         [--from-offset N | --from-time ISO8601] [--to-offset N | --to-time ISO8601]\n"
		"         [--rate MSGS_PER_S] [--dry-run] [--force] [settings]\n"
		"\n"
		"Re-drives dead letters from the DLQ topic (--dlq-topic) after a fix: each record\n"
		"goes to the topic named in its payq-dlq-topic header (or --to-topic) with its key,\n"
		"value and headers, minus the payq-dlq-* headers, plus payq-replay-of:\n"
		"<dlq topic>/<partition>/<offset>. The producer is idempotent (acks=all, murmur2\n"
		"keys) and every copy must have a PERSISTED delivery report.\n"
		"\n"
		"  --reason CODE      only dead letters with this payq-dlq-reason; repeatable.\n"
		"                     Codes: empty, too_large, bad_encoding, not_json,\n"
		"                     duplicate_field, unsupported_version, unknown_type,\n"
		"                     missing_field, bad_field, bad_amount, key_mismatch,\n"
		"                     db_rejected\n"
		"  --to-topic T       send every record to T instead of its payq-dlq-topic\n"
		"  --partition P, --from-offset N, --from-time T, --to-offset N, --to-time T\n"
		"                     a slice of the DLQ, as for republish (default: all of it)\n"
		"  --rate R           at most R messages per second\n"
		"  --dry-run          send nothing: list each record and whether this build's codec\n"
		"                     accepts it now\n"
		"  --force            re-drive even records older than the dedup retention horizon\n"
		"\n"
		"Refused (exit 2) when a selected record's original timestamp (payq-dlq-timestamp)\n"
		"is older than the dedup retention horizon, unless --force. The summary line goes\n"
		"to stdout. A record that is still malformed goes back to the DLQ: select by\n"
		"--reason and range so that it is not re-driven again and again.\n"
		"\n");
	replay_print_exit_codes(fp);
}

/* What the operator asked for. */
typedef struct dlq_req {
	replay_opts_t o; /* the slice of the DLQ, --to-topic, --rate, --dry-run, --force */
	const char **reasons;
	size_t nreasons, reasons_cap;
} dlq_req_t;

/* What the command reads before it re-drives: the slice of the DLQ, fixed at its start. */
typedef struct dlq_plan {
	payq_range_t range;
} dlq_plan_t;

/* The run: the --reason filter, the targets known to exist, copies and counts. */
typedef struct redrive {
	const char *to_topic;
	const char *const *reasons;
	size_t nreasons;
	replay_copy_t copy; /* no sink: a dry run */
	rd_kafka_t *rk;
	char **known; /* target topics that exist */
	size_t nknown;
	char *missing; /* the last target found missing, not asked again */
	int64_t skipped, unknown, valid_now, still_bad, oldest_ts;
} redrive_t;

/* The command's state, through its steps. */
typedef struct dlq_cmd {
	dlq_req_t req;
	dlq_plan_t plan;
	redrive_t run;
} dlq_cmd_t;

static bool reason_known(const char *code)
{
	return !strcmp(code, "db_rejected") || payq_reason_parse(code) > PAYQ_REASON_OK;
}

/* True when m passes the --reason filter; fills reason and target. */
static bool select_record(redrive_t *d, const rd_kafka_message_t *m, char *reason, size_t rsize,
			  char *target, size_t tsize)
{
	bool match = !d->nreasons;

	if (payq_kafka_header_str(m, "payq-dlq-reason", reason, rsize))
		snprintf(reason, rsize, "?");
	for (size_t i = 0; i < d->nreasons && !match; i++)
		match = !strcmp(d->reasons[i], reason);
	if (!match)
		return false;
	if (d->to_topic)
		snprintf(target, tsize, "%s", d->to_topic);
	else if (payq_kafka_header_str(m, "payq-dlq-topic", target, tsize))
		*target = '\0';
	return true;
}

/* First pass: the oldest original timestamp among the selected records. */
static int on_scan(void *opaque, const rd_kafka_message_t *m)
{
	redrive_t *d = opaque;
	char reason[64], target[256], ts[32];
	int64_t v;

	if (!select_record(d, m, reason, sizeof(reason), target, sizeof(target)) || !*target)
		return 0;
	if (payq_kafka_header_str(m, "payq-dlq-timestamp", ts, sizeof(ts)) ||
	    payq_parse_int64(ts, 0, INT64_MAX, &v))
		v = rd_kafka_message_timestamp(m, NULL);
	if (v >= 0 && (d->oldest_ts < 0 || v < d->oldest_ts))
		d->oldest_ts = v;
	return 0;
}

/* True when topic exists; asks the broker once per topic. A missing topic would only
 * fail after message.timeout.ms, per message. */
static bool target_exists(redrive_t *d, const char *topic)
{
	char errstr[256], **grown;

	for (size_t i = 0; i < d->nknown; i++)
		if (!strcmp(d->known[i], topic))
			return true;
	if (d->missing && !strcmp(d->missing, topic))
		return false;
	if (payq_kafka_partition_count(d->rk, topic, 15000, errstr, sizeof(errstr)) < 0) {
		log_error("%s", errstr);
		free(d->missing);
		d->missing = strdup(topic);
		return false;
	}
	grown = realloc(d->known, (d->nknown + 1) * sizeof(*grown));
	if (grown) {
		d->known = grown;
		d->known[d->nknown] = strdup(topic);
		if (d->known[d->nknown])
			d->nknown++;
	}
	return true;
}

/* Dry run: one line for the record m, with whether this build's codec accepts it now. */
static void print_dry_record(redrive_t *d, const rd_kafka_message_t *m, const char *reason,
			     const char *target)
{
	char from[320], t[128], p[16], o[32], err[256];
	payq_command_t cmd;
	payq_reason_t now = payq_codec_decode(m->key ? m->key : "", m->key ? m->key_len : 0,
					      m->payload, m->len, &cmd, err, sizeof(err));

	if (payq_kafka_header_str(m, "payq-dlq-topic", t, sizeof(t)))
		snprintf(t, sizeof(t), "?");
	if (payq_kafka_header_str(m, "payq-dlq-partition", p, sizeof(p)))
		snprintf(p, sizeof(p), "?");
	if (payq_kafka_header_str(m, "payq-dlq-offset", o, sizeof(o)))
		snprintf(o, sizeof(o), "?");
	snprintf(from, sizeof(from), "%s/%s/%s", t, p, o);
	if (now == PAYQ_REASON_OK) {
		d->valid_now++;
		printf("  %s/%" PRId32 "/%" PRId64 " reason=%s from=%s -> %s: now valid "
		       "(%s %s %s)\n",
		       rd_kafka_topic_name(m->rkt), m->partition, m->offset, reason, from, target,
		       payq_cmd_type_name(cmd.type), cmd.order_id, cmd.command_id);
	} else {
		d->still_bad++;
		printf("  %s/%" PRId32 "/%" PRId64 " reason=%s from=%s -> %s: still %s: %s\n",
		       rd_kafka_topic_name(m->rkt), m->partition, m->offset, reason, from, target,
		       payq_reason_name(now), err);
	}
}

static int on_record(void *opaque, const rd_kafka_message_t *m)
{
	redrive_t *d = opaque;
	char reason[64], target[256];

	d->copy.read++;
	if (!select_record(d, m, reason, sizeof(reason), target, sizeof(target)))
		goto progress;
	d->copy.matched++;
	if (!*target) {
		log_warn("%s/%" PRId32 "/%" PRId64 ": no payq-dlq-topic header; skipped (use "
			 "--to-topic)",
			 rd_kafka_topic_name(m->rkt), m->partition, m->offset);
		d->skipped++;
		goto progress;
	}
	if (!target_exists(d, target)) {
		log_error("%s/%" PRId32 "/%" PRId64 ": target topic %s does not exist; not "
			  "re-driven",
			  rd_kafka_topic_name(m->rkt), m->partition, m->offset, target);
		d->unknown++;
		goto progress;
	}
	if (!d->copy.sink)
		print_dry_record(d, m, reason, target);
	else if (replay_copy_one(&d->copy, target, m, DLQ_PREFIX))
		return -1;
progress:
	replay_copy_progress(&d->copy, true);
	return 0;
}

/* Refuses when a selected record is older than the horizon; see horizon.h. */
static replay_exit_t dlq_horizon(const payq_config_t *cfg, rd_kafka_t *rk,
				 const payq_range_t *range, redrive_t *d, bool force)
{
	char errstr[512], when[40], oldest[40];
	int64_t horizon;
	PGconn *conn = replay_db_connect(cfg, "dlq", errstr, sizeof(errstr));
	int read;

	if (!conn) {
		if (force) {
			log_warn("--force: dedup retention horizon not checked: %s", errstr);
			return REPLAY_EXIT_OK;
		}
		fprintf(stderr,
			"payq-replay dlq: %s\npayq-replay dlq: the database is needed to "
			"check the dedup retention horizon; --force skips the check\n",
			errstr);
		return REPLAY_EXIT_FAILED;
	}
	read = replay_db_horizon(conn, &horizon, errstr, sizeof(errstr));
	PQfinish(conn);
	if (read) {
		replay_error("dlq", errstr);
		return REPLAY_EXIT_FAILED;
	}
	if (horizon < 0)
		return REPLAY_EXIT_OK;
	d->oldest_ts = -1;
	switch (payq_range_read(rk, range, on_scan, d, errstr, sizeof(errstr))) {
	case PAYQ_RANGE_DONE: break;
	case PAYQ_RANGE_INTERRUPTED: return REPLAY_EXIT_INTERRUPTED;
	case PAYQ_RANGE_FAILED: replay_error("dlq", errstr); return REPLAY_EXIT_FAILED;
	}
	if (d->oldest_ts < 0 || d->oldest_ts >= horizon)
		return REPLAY_EXIT_OK;
	replay_fmt_time(horizon, when, sizeof(when));
	replay_fmt_time(d->oldest_ts, oldest, sizeof(oldest));
	if (force) {
		log_warn("--force: re-driving dead letters from %s, older than the dedup horizon "
			 "%s",
			 oldest, when);
		return REPLAY_EXIT_OK;
	}
	fprintf(stderr,
		"payq-replay dlq: refused: selected dead letters go back to %s, older than the "
		"dedup retention horizon %s. processed_commands rows of that age may have been "
		"pruned, so a command applied since could be applied a second time. Narrow the "
		"selection (--from-time, --reason), or pass --force if you are sure.\n",
		oldest, when);
	return REPLAY_EXIT_USAGE;
}

static replay_opt_t parse_own(void *cmd, int opt, const char *arg, char *errstr, size_t errstr_size)
{
	dlq_req_t *req = &((dlq_cmd_t *)cmd)->req;

	if (opt != OPT_REASON)
		return REPLAY_OPT_OTHER;
	if (!reason_known(arg)) {
		payq_err(errstr, errstr_size, "--reason \"%s\" is not a DLQ reason code", arg);
		return REPLAY_OPT_BAD;
	}
	if (payq_grow((void **)&req->reasons, &req->reasons_cap, req->nreasons + 1,
		      sizeof(*req->reasons))) {
		payq_err(errstr, errstr_size, "out of memory");
		return REPLAY_OPT_BAD;
	}
	req->reasons[req->nreasons++] = arg;
	return REPLAY_OPT_TAKEN;
}

static replay_exit_t request(const payq_config_t *cfg, void *cmd, char *errstr, size_t errstr_size)
{
	const payq_range_spec_t *spec = &((dlq_cmd_t *)cmd)->req.o.range;

	(void)cfg;
	if ((spec->from_offset >= 0 && spec->from_time_ms >= 0) ||
	    (spec->to_offset >= 0 && spec->to_time_ms >= 0)) {
		payq_err(errstr, errstr_size,
			 "give at most one of --from-offset and "
			 "--from-time, and at most one of --to-offset and --to-time");
		return REPLAY_EXIT_USAGE;
	}
	return REPLAY_EXIT_OK;
}

static replay_exit_t plan_redrive(const replay_env_t *env, void *cmd, char *errstr,
				  size_t errstr_size)
{
	const dlq_req_t *req = &((dlq_cmd_t *)cmd)->req;
	dlq_plan_t *plan = &((dlq_cmd_t *)cmd)->plan;

	if (payq_range_resolve(env->rk, env->cfg->dlq_topic, &req->o.range, &plan->range, errstr,
			       errstr_size))
		return REPLAY_EXIT_FAILED;
	return REPLAY_EXIT_OK;
}

static void print_plan(const replay_env_t *env, const void *cmd)
{
	const dlq_req_t *req = &((const dlq_cmd_t *)cmd)->req;
	const dlq_plan_t *plan = &((const dlq_cmd_t *)cmd)->plan;

	printf("dlq: %s -> %s, %" PRId64 " dead letters to look at%s\n", env->cfg->dlq_topic,
	       req->o.to_topic ? req->o.to_topic : "each record's payq-dlq-topic",
	       payq_range_total(&plan->range), req->o.dry_run ? " (dry run)" : "");
	payq_range_print(&plan->range, "  ");
}

static void print_summary(const redrive_t *d)
{
	if (d->copy.sink) {
		replay_copy_print_sent(&d->copy);
		printf(" skipped=%" PRId64 " unknown_topic=%" PRId64 "\n", d->skipped, d->unknown);
		return;
	}
	printf("dlq: dry run, nothing sent: read=%" PRId64 " matched=%" PRId64 " valid_now=%" PRId64
	       " still_malformed=%" PRId64 " skipped=%" PRId64 " unknown_topic=%" PRId64 "\n",
	       d->copy.read, d->copy.matched, d->valid_now, d->still_bad, d->skipped, d->unknown);
}

/* Re-drives the selected dead letters (or, for a dry run, lists them), then prints the
 * summary. A record whose target topic does not exist fails the run. */
static replay_exit_t execute(const replay_env_t *env, void *cmd)
{
	dlq_cmd_t *c = cmd;
	redrive_t *d = &c->run;
	replay_exit_t rc = REPLAY_EXIT_OK;
	payq_range_read_t rd;
	char errstr[512];

	d->to_topic = c->req.o.to_topic;
	d->reasons = c->req.reasons;
	d->nreasons = c->req.nreasons;
	d->rk = env->rk;
	/* A dry run only lists: the horizon matters to copies. */
	if (!c->req.o.dry_run)
		rc = dlq_horizon(env->cfg, env->rk, &c->plan.range, d, c->req.o.force);
	if (rc != REPLAY_EXIT_OK)
		return rc;
	if (replay_copy_start(&d->copy, "dlq", env->cfg, c->req.o.rate, c->req.o.dry_run,
			      payq_range_total(&c->plan.range), errstr, sizeof(errstr))) {
		replay_error("dlq", errstr);
		return REPLAY_EXIT_FAILED;
	}
	rd = replay_copy_read(&d->copy, env, &c->plan.range, on_record, d, errstr, sizeof(errstr));
	print_summary(d);
	rc = replay_read_exit("dlq", replay_run ? rd : PAYQ_RANGE_INTERRUPTED, errstr);
	if (rc == REPLAY_EXIT_OK && d->unknown) {
		fprintf(stderr,
			"payq-replay dlq: %" PRId64 " dead letters were not re-driven: "
			"their target topic does not exist\n",
			d->unknown);
		rc = REPLAY_EXIT_FAILED;
	}
	return rc;
}

static void cleanup(void *cmd)
{
	dlq_cmd_t *c = cmd;

	replay_copy_free(&c->run.copy);
	for (size_t i = 0; i < c->run.nknown; i++)
		free(c->run.known[i]);
	free(c->run.known);
	free(c->run.missing);
	payq_range_free(&c->plan.range);
	free(c->req.reasons);
}

/* The command, in the order of replay_steps_t's fields. */
/* clang-format off */
const replay_steps_t replay_dlq_steps = {
	"dlq", {REPLAY_TAKES_COPY, {
		{"reason", required_argument, NULL, OPT_REASON},
	}, parse_own}, sizeof(dlq_cmd_t), offsetof(dlq_cmd_t, req.o),
	request, plan_redrive, print_plan, execute, cleanup};
/* clang-format on */
