/* audit.c - payq-replay audit: checks the topic against the database and the DLQ. */
#include "audit.h"

#include <inttypes.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>

#include "admin.h"
#include "cli.h"
#include "codec.h"
#include "db.h"
#include "kafka.h"
#include "log.h"
#include "range.h"
#include "repair.h"
#include "sink.h"
#include "util.h"

#define LOOKUP_BATCH 500

enum { OPT_REPAIR = OPT__FIRST_OWN };

void replay_audit_usage(FILE *fp)
{
	fprintf(fp,
		"Usage: payq-replay audit [--group G] [--from-time ISO8601 | --from-offset N]\n"
		"         [--partition P]... [--repair [--execute] [--force]] [settings]\n"
		"\n"
		"Proves that nothing was lost. Reads the commands topic (--topic) from the start\n"
		"(or --from-*) up to the group's consumer_progress, with every high watermark\n"
		"fixed at the start, and checks that:\n"
		"  - every valid command has its processed_commands row (order_id, command_id),\n"
		"    or was dead-lettered by the database (db_rejected);\n"
		"  - every malformed message has a DLQ record of the group (payq-dlq-group,\n"
		"    -topic, -partition and -offset headers) in --dlq-topic;\n"
		"  - the group's committed offset is not ahead of consumer_progress.\n"
		"Each gap is printed on stdout as `gap KIND topic/partition[/offset] ...`, and\n"
		"under it (except no_progress) the command line that republishes exactly its\n"
		"records: `  repair: payq-replay republish --from-topic T --partition P\n"
		"--from-offset O --to-offset O2`.\n"
		"Messages past consumer_progress (not consumed yet) and messages older than the\n"
		"dedup retention horizon (their rows may be pruned) are counted, not checked. A\n"
		"message is older than the horizon when its offset is at or below the highest\n"
		"offset whose row prune deleted, or when it lies before the first row first seen\n"
		"after the horizon and its timestamp is before it: the horizon protects rows by\n"
		"when the worker saw a message, not by the timestamp its producer set.\n"
		"Only the group's own DLQ records count (payq-dlq-group header); a DLQ record of a\n"
		"payq-replay copy also stands for the original its payq-replay-of header names.\n"
		"\n"
		"  --group G          the consumer group (default: the --group setting)\n"
		"  --from-time T      start at the first message at or after T\n"
		"  --from-offset N    start at offset N in every selected partition\n"
		"  --partition P      only this partition; repeatable\n"
		"  --repair           after the audit, republish exactly the gaps' records (a dry\n"
		"                     run that lists them unless --execute); refused (exit 2) when\n"
		"                     a record is past the dedup retention horizon, as republish\n"
		"                     is, unless --force. The exit code stays 1 while gaps were\n"
		"                     found: audit again once the workers consumed the copies\n"
		"  --execute          with --repair: send the copies\n"
		"  --force            with --repair: republish even past the dedup horizon\n"
		"\n");
	replay_print_exit_codes(fp);
}

typedef struct pending {
	int32_t partition;
	int64_t offset;
	payq_cmd_type_t type;
	char order_id[PAYQ_ID_MAX + 1], command_id[PAYQ_ID_MAX + 1];
} pending_t;

/* What the operator asked for. */
typedef struct audit_req {
	replay_opts_t o; /* --partition, --from-*; with --repair: --execute, --force */
	bool repair;
} audit_req_t;

/* What the audit reads before it checks: the range up to the group's progress, fixed at
 * its start, and the group's offsets in Kafka and in the database, per partition. */
typedef struct audit_plan {
	rd_kafka_t *rk; /* the env's reader, borrowed */
	payq_range_t range, dlq;
	int64_t *committed, *progress, unconsumed;
} audit_plan_t;

/* The check: the horizon, the dead letters, the lookups in flight, the counts, the gaps. */
typedef struct audit {
	const char *topic, *group;
	PGconn *conn;
	int64_t horizon;
	int64_t *pruned, *after; /* per partition: see replay_db_horizon_offsets() */
	int nparts;
	uint64_t *dlq; /* sorted (partition << 48 | offset) dead-lettered from topic */
	size_t ndlq, dlq_cap;
	replay_keys_t keys;
	pending_t pend[LOOKUP_BATCH];
	bool found[LOOKUP_BATCH];
	size_t npend;
	int64_t total, read, valid, malformed, dead_lettered, old, gaps;
	replay_progress_t progress;
	replay_gaps_t repairs;
	bool oom; /* a gap could not be recorded for --repair */
	char errstr[512];
} audit_t;

/* The command's state, through its steps. */
typedef struct audit_cmd {
	audit_req_t req;
	audit_plan_t plan;
	audit_t run;
} audit_cmd_t;

static uint64_t dlq_key(int64_t partition, int64_t offset)
{
	return (uint64_t)partition << 48 | ((uint64_t)offset & ((1ull << 48) - 1));
}

static int cmp_u64(const void *a, const void *b)
{
	uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
	return (x > y) - (x < y);
}

static bool in_dlq(const audit_t *a, int32_t partition, int64_t offset)
{
	uint64_t k = dlq_key(partition, offset);
	return a->ndlq && bsearch(&k, a->dlq, a->ndlq, sizeof(k), cmp_u64);
}

/* Parses "topic/partition/offset" (a payq-replay-of header) of the audited topic. Topic
 * names cannot contain '/', so the last two separate the numbers. */
static bool parse_replay_of(const char *v, const char *topic, int64_t *partition, int64_t *offset)
{
	const char *o = strrchr(v, '/'), *p;
	char pbuf[16];

	if (!o || o == v)
		return false;
	for (p = o - 1; p > v && *p != '/'; p--)
		;
	if (p == v || (size_t)(p - v) != strlen(topic) || strncmp(v, topic, (size_t)(p - v)) ||
	    (size_t)(o - p - 1) >= sizeof(pbuf))
		return false;
	memcpy(pbuf, p + 1, (size_t)(o - p - 1));
	pbuf[o - p - 1] = '\0';
	return !payq_parse_int64(pbuf, 0, INT32_MAX, partition) &&
	       !payq_parse_int64(o + 1, 0, (1ll << 48) - 1, offset);
}

static int add_dead_letter(audit_t *a, int64_t partition, int64_t offset)
{
	if (a->ndlq == a->dlq_cap &&
	    payq_grow((void **)&a->dlq, &a->dlq_cap, a->dlq_cap ? a->dlq_cap * 2 : 1024,
		      sizeof(*a->dlq))) {
		log_error("out of memory");
		return -1;
	}
	a->dlq[a->ndlq++] = dlq_key(partition, offset);
	return 0;
}

/* Collects the source coordinates of each DLQ record that the audited group dead-lettered
 * from the audited topic. Another group reading the same topic into the same DLQ topic
 * dead-letters the same malformed messages; its copies say nothing about this group.
 * A record that was itself a payq-replay copy also stands for the original it names, so
 * that republishing a malformed message repairs its missing_dlq gap. */
static int on_dead_letter(void *opaque, const rd_kafka_message_t *m)
{
	audit_t *a = opaque;
	char t[256], g[256], p[16], o[32], of[320];
	int64_t pv, ov;

	if (payq_kafka_header_str(m, "payq-dlq-group", g, sizeof(g)) || strcmp(g, a->group) ||
	    payq_kafka_header_str(m, "payq-dlq-topic", t, sizeof(t)) || strcmp(t, a->topic) ||
	    payq_kafka_header_str(m, "payq-dlq-partition", p, sizeof(p)) ||
	    payq_kafka_header_str(m, "payq-dlq-offset", o, sizeof(o)) ||
	    payq_parse_int64(p, 0, INT32_MAX, &pv) || payq_parse_int64(o, 0, (1ll << 48) - 1, &ov))
		return 0;
	if (add_dead_letter(a, pv, ov))
		return -1;
	if (!payq_kafka_header_str(m, PAYQ_REPLAY_OF, of, sizeof(of)) &&
	    parse_replay_of(of, a->topic, &pv, &ov))
		return add_dead_letter(a, pv, ov);
	return 0;
}

static void gap_missing_row(audit_t *a, const pending_t *p)
{
	a->gaps++;
	replay_progress_end(&a->progress);
	printf("gap missing_row %s/%" PRId32 "/%" PRId64 " type=%s order_id=%s command_id=%s: "
	       "valid command without a processed_commands row or DLQ record\n",
	       a->topic, p->partition, p->offset, payq_cmd_type_name(p->type), p->order_id,
	       p->command_id);
	if (replay_gaps_add(&a->repairs, a->topic, p->partition, p->offset, p->offset + 1))
		a->oom = true;
}

static void gap_missing_dlq(audit_t *a, const rd_kafka_message_t *m, payq_reason_t reason)
{
	a->gaps++;
	replay_progress_end(&a->progress);
	printf("gap missing_dlq %s/%" PRId32 "/%" PRId64 " reason=%s: malformed "
	       "message without a DLQ record\n",
	       a->topic, m->partition, m->offset, payq_reason_name(reason));
	if (replay_gaps_add(&a->repairs, a->topic, m->partition, m->offset, m->offset + 1))
		a->oom = true;
}

static int flush_lookups(audit_t *a)
{
	memset(a->found, 0, sizeof(a->found));
	if (replay_keys_lookup(&a->keys, a->conn, a->found, a->errstr, sizeof(a->errstr)))
		return -1;
	for (size_t i = 0; i < a->npend; i++) {
		if (a->found[i])
			continue;
		if (in_dlq(a, a->pend[i].partition, a->pend[i].offset))
			a->dead_lettered++; /* db_rejected: the database refused it */
		else
			gap_missing_row(a, &a->pend[i]);
	}
	a->npend = 0;
	return 0;
}

/* True when m may be older than the dedup horizon, so that its row may have been pruned.
 * The horizon protects rows by when the worker first saw a record, which the record's
 * CreateTime does not tell (a producer may stamp any time): at or below the highest
 * pruned offset, a record is past it; from the first row first seen after it on, a
 * record is within it; in between, the CreateTime is all there is to go by. */
static bool past_horizon(const audit_t *a, const rd_kafka_message_t *m)
{
	int64_t pruned, after;

	if (a->horizon < 0 || m->partition < 0 || m->partition >= a->nparts)
		return false;
	pruned = a->pruned[m->partition];
	after = a->after[m->partition];
	if (pruned >= 0 && m->offset <= pruned)
		return true;
	return (after < 0 || m->offset < after) && rd_kafka_message_timestamp(m, NULL) < a->horizon;
}

static int on_command(void *opaque, const rd_kafka_message_t *m)
{
	audit_t *a = opaque;
	payq_command_t cmd;
	char err[256];
	payq_reason_t reason;

	a->read++;
	if (past_horizon(a, m)) {
		a->old++;
		goto progress;
	}
	reason = payq_codec_decode(m->key ? m->key : "", m->key ? m->key_len : 0, m->payload,
				   m->len, &cmd, err, sizeof(err));
	if (reason != PAYQ_REASON_OK) {
		a->malformed++;
		if (!in_dlq(a, m->partition, m->offset))
			gap_missing_dlq(a, m, reason);
		goto progress;
	}
	a->valid++;
	a->pend[a->npend] =
		(pending_t){.partition = m->partition, .offset = m->offset, .type = cmd.type};
	memcpy(a->pend[a->npend].order_id, cmd.order_id, sizeof(cmd.order_id));
	memcpy(a->pend[a->npend].command_id, cmd.command_id, sizeof(cmd.command_id));
	if (replay_keys_add(&a->keys, cmd.order_id, cmd.command_id, a->npend)) {
		log_error("out of memory");
		return -1;
	}
	if (++a->npend == LOOKUP_BATCH && flush_lookups(a)) {
		log_error("%s", a->errstr);
		return -1;
	}
progress:
	replay_progress(&a->progress, false,
			"audit: %" PRId64 "/%" PRId64 " read, %" PRId64 " gaps", a->read, a->total,
			a->gaps);
	return 0;
}

/* Compares the group's committed offsets with consumer_progress, partition by partition. */
static void compare_offsets(audit_t *a, const char *group, const payq_range_t *r,
			    const int64_t *committed, const int64_t *progress)
{
	for (size_t i = 0; i < r->cnt; i++) {
		int32_t p = r->parts[i].partition;
		int64_t c = committed[p], g = progress[p];

		if (c >= 0 && g >= 0 && c > g) {
			a->gaps++;
			printf("gap offset_ahead %s/%" PRId32 " committed=%" PRId64
			       " consumer_progress=%" PRId64 ": group %s committed past what the "
			       "database recorded; offsets [%" PRId64 ", %" PRId64
			       ") may have been "
			       "skipped\n",
			       a->topic, p, c, g, group, g, c);
			if (replay_gaps_add(&a->repairs, a->topic, p, g, c))
				a->oom = true;
		} else if (c > 0 && g < 0) {
			a->gaps++;
			printf("gap no_progress %s/%" PRId32 " committed=%" PRId64
			       ": group %s committed offsets but consumer_progress has no row\n",
			       a->topic, p, c, group);
		} else if (g >= 0 && c < g) {
			char cs[24] = "none";
			if (c >= 0)
				snprintf(cs, sizeof(cs), "%" PRId64, c);
			printf("note %s/%" PRId32 " committed=%s consumer_progress=%" PRId64
			       ": Kafka is behind the database; the worker seeks forward on "
			       "assign\n",
			       a->topic, p, cs, g);
		}
	}
}

static replay_opt_t parse_own(void *cmd, int opt, const char *arg, char *errstr, size_t errstr_size)
{
	audit_req_t *req = &((audit_cmd_t *)cmd)->req;

	(void)arg;
	(void)errstr;
	(void)errstr_size;
	if (opt != OPT_REPAIR)
		return REPLAY_OPT_OTHER;
	req->repair = true;
	return REPLAY_OPT_TAKEN;
}

static replay_exit_t request(const payq_config_t *cfg, void *cmd, char *errstr, size_t errstr_size)
{
	audit_req_t *req = &((audit_cmd_t *)cmd)->req;
	audit_t *a = &((audit_cmd_t *)cmd)->run;

	a->topic = cfg->topic;
	a->group = cfg->group;
	replay_progress_init(&a->progress);
	if ((req->o.execute || req->o.force) && !req->repair) {
		payq_err(errstr, errstr_size, "--execute and --force go with --repair");
		return REPLAY_EXIT_USAGE;
	}
	if (req->o.range.from_offset >= 0 && req->o.range.from_time_ms >= 0) {
		payq_err(errstr, errstr_size, "give at most one of --from-offset and --from-time");
		return REPLAY_EXIT_USAGE;
	}
	return REPLAY_EXIT_OK;
}

/* The database's and Kafka's view of the group, per partition, the horizon, and the DLQ's
 * range. */
static int read_group_state(const payq_config_t *cfg, audit_plan_t *plan, audit_t *a, char *errstr,
			    size_t errstr_size)
{
	int nparts = replay_range_nparts(&plan->range);
	payq_range_spec_t whole_dlq;

	plan->committed = calloc((size_t)nparts + 1, sizeof(*plan->committed));
	plan->progress = calloc((size_t)nparts + 1, sizeof(*plan->progress));
	a->pruned = calloc((size_t)nparts + 1, sizeof(*a->pruned));
	a->after = calloc((size_t)nparts + 1, sizeof(*a->after));
	a->nparts = nparts;
	if (!plan->committed || !plan->progress || !a->pruned || !a->after)
		return payq_err(errstr, errstr_size, "out of memory");
	/* Progress first, then the DLQ's watermarks: the worker persists a dead letter
	 * before it commits the progress past it, so every DLQ record for an offset below
	 * this progress is below the DLQ high watermark read next. */
	if (replay_db_progress(a->conn, cfg->group, a->topic, plan->progress, nparts, errstr,
			       errstr_size) ||
	    replay_group_committed(plan->rk, cfg->group, a->topic, nparts, plan->committed, errstr,
				   errstr_size) ||
	    replay_db_horizon(a->conn, &a->horizon, errstr, errstr_size) ||
	    replay_db_horizon_offsets(a->conn, a->topic, a->pruned, a->after, nparts, errstr,
				      errstr_size))
		return -1;
	payq_range_spec_init(&whole_dlq);
	return payq_range_resolve(plan->rk, cfg->dlq_topic, &whole_dlq, &plan->dlq, errstr,
				  errstr_size);
}

/* Only what the group has consumed can be checked: the range ends at its progress. */
static void clamp_to_progress(audit_plan_t *plan)
{
	for (size_t i = 0; i < plan->range.cnt; i++) {
		payq_range_part_t *p = &plan->range.parts[i];
		int64_t g = plan->progress[p->partition];
		int64_t done = g < 0 ? p->start : g;
		if (done < p->end) {
			plan->unconsumed += p->end - (done > p->start ? done : p->start);
			p->end = done > p->start ? done : p->start;
		}
	}
}

/* Reads what the audit checks against: the group's offsets, the horizon and the group's
 * dead letters. Returns REPLAY_EXIT_OK, or another code with errstr. */
static replay_exit_t plan_audit(const replay_env_t *env, void *cmd, char *errstr,
				size_t errstr_size)
{
	const payq_config_t *cfg = env->cfg;
	const audit_req_t *req = &((audit_cmd_t *)cmd)->req;
	audit_plan_t *plan = &((audit_cmd_t *)cmd)->plan;
	audit_t *a = &((audit_cmd_t *)cmd)->run;

	a->conn = replay_db_connect(cfg, "audit", errstr, errstr_size);
	if (!a->conn)
		return REPLAY_EXIT_FAILED;
	plan->rk = env->rk;
	if (payq_range_resolve(plan->rk, a->topic, &req->o.range, &plan->range, errstr,
			       errstr_size) ||
	    read_group_state(cfg, plan, a, errstr, errstr_size))
		return REPLAY_EXIT_FAILED;
	switch (payq_range_read(plan->rk, &plan->dlq, on_dead_letter, a, errstr, errstr_size)) {
	case PAYQ_RANGE_DONE: break;
	case PAYQ_RANGE_INTERRUPTED:
		snprintf(errstr, errstr_size, "interrupted");
		return REPLAY_EXIT_INTERRUPTED;
	case PAYQ_RANGE_FAILED: return REPLAY_EXIT_FAILED;
	}
	if (a->ndlq)
		qsort(a->dlq, a->ndlq, sizeof(*a->dlq), cmp_u64);
	clamp_to_progress(plan);
	a->total = payq_range_total(&plan->range);
	return REPLAY_EXIT_OK;
}

static void print_plan(const replay_env_t *env, const void *cmd)
{
	const payq_config_t *cfg = env->cfg;
	const audit_t *a = &((const audit_cmd_t *)cmd)->run;
	char when[40];

	printf("audit: group %s, %s: %" PRId64 " messages to check, %zu dead letters from it "
	       "in %s%s%s\n",
	       cfg->group, a->topic, a->total, a->ndlq, cfg->dlq_topic,
	       a->horizon >= 0 ? ", dedup horizon " : "",
	       a->horizon >= 0 ? replay_fmt_time(a->horizon, when, sizeof(when)) : "");
	fflush(stdout);
}

/* Reads the range and checks every message; prints each gap as it is found. */
static replay_exit_t scan(audit_t *a, const audit_plan_t *plan)
{
	char errstr[512];
	payq_range_read_t rd =
		payq_range_read(plan->rk, &plan->range, on_command, a, errstr, sizeof(errstr));

	if (rd == PAYQ_RANGE_DONE && flush_lookups(a)) {
		snprintf(errstr, sizeof(errstr), "%s", a->errstr);
		rd = PAYQ_RANGE_FAILED;
	}
	replay_progress_end(&a->progress);
	return replay_read_exit("audit", rd, errstr);
}

/* Checks the range, prints the summary and, with --repair, republishes the gaps' records
 * (a dry run unless --execute). Returns REPLAY_EXIT_GAPS while gaps were found. */
static replay_exit_t execute(const replay_env_t *env, void *cmd)
{
	const payq_config_t *cfg = env->cfg;
	const audit_req_t *req = &((audit_cmd_t *)cmd)->req;
	const audit_plan_t *plan = &((audit_cmd_t *)cmd)->plan;
	audit_t *a = &((audit_cmd_t *)cmd)->run;
	replay_exit_t rc = scan(a, plan), rrc;

	if (rc != REPLAY_EXIT_OK)
		return rc;
	compare_offsets(a, cfg->group, &plan->range, plan->committed, plan->progress);
	printf("audit: read=%" PRId64 " valid=%" PRId64 " malformed=%" PRId64
	       " db_rejected=%" PRId64 " older_than_horizon=%" PRId64 " not_consumed=%" PRId64
	       " gaps=%" PRId64 "\n",
	       a->read, a->valid, a->malformed, a->dead_lettered, a->old, plan->unconsumed,
	       a->gaps);
	fflush(stdout);
	rc = a->gaps ? REPLAY_EXIT_GAPS : REPLAY_EXIT_OK;
	if (!req->repair)
		return rc;
	if (a->oom) {
		replay_error("audit", "out of memory recording the gaps to repair");
		return REPLAY_EXIT_FAILED;
	}
	rrc = replay_gaps_repair(cfg, plan->rk, a->conn, a->topic, &plan->range, &a->repairs,
				 req->o.execute, req->o.force);
	return rrc != REPLAY_EXIT_OK ? rrc : rc;
}

static void cleanup(void *cmd)
{
	audit_cmd_t *c = cmd;

	free(c->plan.committed);
	free(c->plan.progress);
	free(c->run.dlq);
	free(c->run.pruned);
	free(c->run.after);
	replay_gaps_free(&c->run.repairs);
	replay_keys_free(&c->run.keys);
	if (c->run.conn)
		PQfinish(c->run.conn);
	payq_range_free(&c->plan.range);
	payq_range_free(&c->plan.dlq);
}

/* The command, in the order of replay_steps_t's fields. */
/* clang-format off */
const replay_steps_t replay_audit_steps = {
	"audit", {REPLAY_TAKES_PARTITION | REPLAY_TAKES_FROM | REPLAY_TAKES_EXECUTE | REPLAY_TAKES_FORCE, {
		{"repair", no_argument, NULL, OPT_REPAIR},
	}, parse_own}, sizeof(audit_cmd_t), offsetof(audit_cmd_t, req.o),
	request, plan_audit, print_plan, execute, cleanup};
/* clang-format on */
