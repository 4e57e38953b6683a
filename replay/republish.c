/* republish.c - payq-replay republish: copies a range of a topic back onto a topic. */
#include "republish.h"

#include <inttypes.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "codec.h"
#include "copy.h"
#include "db.h"
#include "horizon.h"
#include "kafka.h"
#include "log.h"
#include "range.h"
#include "sink.h"
#include "util.h"

#define LOOKUP_BATCH 500

enum { OPT_FROM_TOPIC = OPT__FIRST_OWN, OPT_ORDER };

void replay_republish_usage(FILE *fp)
{
	fprintf(fp,
		"Usage: payq-replay republish [--from-topic T] [--to-topic T2] [--partition P]...\n"
		"         (--from-offset N | --from-time ISO8601) [--to-offset N | --to-time ISO8601]\n"
		"         [--order ID] [--rate MSGS_PER_S] [--dry-run] [--force] [settings]\n"
		"\n"
		"Copies the records of a range back onto a topic, keeping key, value and headers and\n"
		"adding payq-replay-of: <topic>/<partition>/<offset>. The producer is idempotent\n"
		"(acks=all) and keys go through murmur2, so each copy lands in the partition its\n"
		"order maps to; every copy must have a PERSISTED delivery report. The worker's dedup\n"
		"table turns copies of applied commands into duplicates.\n"
		"\n"
		"  --from-topic T     topic to read (default: --topic)\n"
		"  --to-topic T2      topic to write (default: the --from-topic)\n"
		"  --partition P      only this partition; repeatable (default: all)\n"
		"  --from-offset N    first offset, in every selected partition\n"
		"  --from-time T      first message with a timestamp at or after T\n"
		"  --to-offset N      stop before offset N (exclusive)\n"
		"  --to-time T        stop before the first message at or after T (exclusive)\n"
		"                     (neither: the end of the log, as it is when the command\n"
		"                     starts; records produced meanwhile are not copied)\n"
		"  --order ID         only records whose key is ID\n"
		"  --rate R           at most R messages per second\n"
		"  --dry-run          send nothing: count the commands already in processed_commands\n"
		"                     and those that would be new (needs the database)\n"
		"  --force            replay even past the dedup retention horizon\n"
		"\n"
		"Refused (exit 2) when the range holds messages older than the dedup retention\n"
		"horizon recorded by `payq-worker prune`, unless --force. Progress is shown on\n"
		"stderr when it is a terminal; the summary line goes to stdout.\n"
		"\n");
	replay_print_exit_codes(fp);
}

/* What the operator asked for. */
typedef struct republish_req {
	replay_opts_t o; /* the range, --to-topic, --rate, --dry-run, --force */
	const char *from_topic, *to_topic, *order;
} republish_req_t;

/* What the command reads before it copies: the range, fixed at its start. */
typedef struct republish_plan {
	payq_range_t range;
} republish_plan_t;

/* The run: copies (or, for a dry run, lookups) and their counts. */
typedef struct republish {
	replay_copy_t copy; /* no sink: a dry run */
	const char *to_topic, *order;
	PGconn *conn;
	replay_keys_t keys;
	bool found[LOOKUP_BATCH];
	int64_t valid, malformed, already, fresh;
	char errstr[512];
} republish_t;

/* The command's state, through its steps. */
typedef struct republish_cmd {
	republish_req_t req;
	republish_plan_t plan;
	republish_t run;
} republish_cmd_t;

static int flush_lookups(republish_t *r)
{
	size_t n = replay_keys_count(&r->keys);

	memset(r->found, 0, sizeof(r->found));
	if (replay_keys_lookup(&r->keys, r->conn, r->found, r->errstr, sizeof(r->errstr)))
		return -1;
	for (size_t i = 0; i < n; i++)
		r->found[i] ? r->already++ : r->fresh++;
	return 0;
}

/* Dry run: counts m as valid or malformed, and looks valid ones up in batches. */
static int count_message(republish_t *r, const rd_kafka_message_t *m)
{
	payq_command_t cmd;

	/* The worker decodes a keyless message against an empty key; so do we. */
	if (payq_codec_decode(m->key ? m->key : "", m->key ? m->key_len : 0, m->payload, m->len,
			      &cmd, NULL, 0) != PAYQ_REASON_OK) {
		r->malformed++;
		return 0;
	}
	r->valid++;
	if (replay_keys_add(&r->keys, cmd.order_id, cmd.command_id, replay_keys_count(&r->keys))) {
		log_error("out of memory");
		return -1;
	}
	if (replay_keys_count(&r->keys) == LOOKUP_BATCH && flush_lookups(r)) {
		log_error("%s", r->errstr);
		return -1;
	}
	return 0;
}

static int on_message(void *opaque, const rd_kafka_message_t *m)
{
	republish_t *r = opaque;

	r->copy.read++;
	if (!r->order ||
	    (m->key_len == strlen(r->order) && m->key && !memcmp(m->key, r->order, m->key_len))) {
		r->copy.matched++;
		if (!r->copy.sink ? count_message(r, m)
				  : replay_copy_one(&r->copy, r->to_topic, m, NULL))
			return -1;
	}
	replay_copy_progress(&r->copy, false);
	return 0;
}

static replay_opt_t parse_own(void *cmd, int opt, const char *arg, char *errstr, size_t errstr_size)
{
	republish_req_t *req = &((republish_cmd_t *)cmd)->req;

	(void)errstr;
	(void)errstr_size;
	switch (opt) {
	case OPT_FROM_TOPIC: req->from_topic = arg; return REPLAY_OPT_TAKEN;
	case OPT_ORDER: req->order = arg; return REPLAY_OPT_TAKEN;
	default: return REPLAY_OPT_OTHER;
	}
}

static replay_exit_t request(const payq_config_t *cfg, void *cmd, char *errstr, size_t errstr_size)
{
	republish_req_t *req = &((republish_cmd_t *)cmd)->req;
	const payq_range_spec_t *spec = &req->o.range;

	if (!req->from_topic)
		req->from_topic = cfg->topic;
	/* The start is never implied (a whole topic is not copied by accident); an open
	 * end is the log end, fixed when the range is resolved. */
	if ((spec->from_offset < 0) == (spec->from_time_ms < 0) ||
	    (spec->to_offset >= 0 && spec->to_time_ms >= 0)) {
		payq_err(errstr, errstr_size,
			 "give exactly one of --from-offset and "
			 "--from-time, and at most one of --to-offset and --to-time");
		return REPLAY_EXIT_USAGE;
	}
	req->to_topic = req->o.to_topic ? req->o.to_topic : req->from_topic;
	return REPLAY_EXIT_OK;
}

static replay_exit_t plan_copy(const replay_env_t *env, void *cmd, char *errstr, size_t errstr_size)
{
	const republish_req_t *req = &((republish_cmd_t *)cmd)->req;
	republish_plan_t *plan = &((republish_cmd_t *)cmd)->plan;

	if (payq_range_resolve(env->rk, req->from_topic, &req->o.range, &plan->range, errstr,
			       errstr_size))
		return REPLAY_EXIT_FAILED;
	/* A missing target would only fail after message.timeout.ms, per message. */
	if (strcmp(req->to_topic, req->from_topic) &&
	    payq_kafka_partition_count(env->rk, req->to_topic, 15000, errstr, errstr_size) < 0)
		return REPLAY_EXIT_FAILED;
	return REPLAY_EXIT_OK;
}

static void print_plan(const replay_env_t *env, const void *cmd)
{
	const republish_req_t *req = &((const republish_cmd_t *)cmd)->req;
	const republish_plan_t *plan = &((const republish_cmd_t *)cmd)->plan;

	(void)env;
	printf("republish: %s -> %s, %" PRId64 " messages%s\n", req->from_topic, req->to_topic,
	       payq_range_total(&plan->range), req->o.dry_run ? " (dry run)" : "");
	payq_range_print(&plan->range, "  ");
}

/* Connects to the database and refuses a range past the dedup retention horizon; without
 * a database, only --force goes on (not for a dry run, which reads the dedup rows). */
static replay_exit_t guard(const replay_env_t *env, const republish_req_t *req,
			   const republish_plan_t *plan, PGconn **conn)
{
	char errstr[512];

	*conn = replay_db_connect(env->cfg, "republish", errstr, sizeof(errstr));
	if (*conn)
		return replay_horizon_guard(env->rk, *conn, &plan->range, req->o.force,
					    req->o.dry_run, "republish");
	if (req->o.dry_run || !req->o.force) {
		fprintf(stderr, "payq-replay republish: %s\n%s", errstr,
			req->o.dry_run ? ""
				       : "payq-replay republish: the database is needed to "
					 "check the dedup retention horizon; --force skips "
					 "the check\n");
		return REPLAY_EXIT_FAILED;
	}
	log_warn("--force: dedup retention horizon not checked: %s", errstr);
	return REPLAY_EXIT_OK;
}

static void print_summary(const republish_t *r)
{
	if (r->copy.sink) {
		replay_copy_print_sent(&r->copy);
		putchar('\n');
		return;
	}
	printf("republish: dry run, nothing sent: read=%" PRId64 " matched=%" PRId64
	       " valid=%" PRId64 " already_processed=%" PRId64 " new=%" PRId64 " malformed=%" PRId64
	       "\n",
	       r->copy.read, r->copy.matched, r->valid, r->already, r->fresh, r->malformed);
}

/* Copies the range (or, for a dry run, counts what is already processed), then prints the
 * summary. */
static replay_exit_t execute(const replay_env_t *env, void *cmd)
{
	const republish_req_t *req = &((republish_cmd_t *)cmd)->req;
	const republish_plan_t *plan = &((republish_cmd_t *)cmd)->plan;
	republish_t *r = &((republish_cmd_t *)cmd)->run;
	char errstr[512];
	payq_range_read_t rd;
	replay_exit_t rc = guard(env, req, plan, &r->conn);

	if (rc != REPLAY_EXIT_OK)
		return rc;
	r->to_topic = req->to_topic;
	r->order = req->order;
	if (replay_copy_start(&r->copy, "republish", env->cfg, req->o.rate, req->o.dry_run,
			      payq_range_total(&plan->range), errstr, sizeof(errstr))) {
		replay_error("republish", errstr);
		return REPLAY_EXIT_FAILED;
	}
	rd = replay_copy_read(&r->copy, env, &plan->range, on_message, r, errstr, sizeof(errstr));
	/* A dry run's last lookups (a run that sends makes none). */
	if (rd == PAYQ_RANGE_DONE && !r->copy.sink && flush_lookups(r)) {
		snprintf(errstr, sizeof(errstr), "%s", r->errstr);
		rd = PAYQ_RANGE_FAILED;
	}
	print_summary(r);
	return replay_read_exit("republish", replay_run ? rd : PAYQ_RANGE_INTERRUPTED, errstr);
}

static void cleanup(void *cmd)
{
	republish_cmd_t *c = cmd;

	replay_copy_free(&c->run.copy);
	replay_keys_free(&c->run.keys);
	if (c->run.conn)
		PQfinish(c->run.conn);
	payq_range_free(&c->plan.range);
}

/* The command, in the order of replay_steps_t's fields. */
/* clang-format off */
const replay_steps_t replay_republish_steps = {
	"republish", {REPLAY_TAKES_COPY, {
		{"from-topic", required_argument, NULL, OPT_FROM_TOPIC},
		{"order", required_argument, NULL, OPT_ORDER},
	}, parse_own}, sizeof(republish_cmd_t), offsetof(republish_cmd_t, req.o),
	request, plan_copy, print_plan, execute, cleanup};
/* clang-format on */
