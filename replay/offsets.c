/* offsets.c - payq-replay reset-offsets: moves a stopped group's offsets, and its progress. */
#include "offsets.h"

#include <inttypes.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>

#include "admin.h"
#include "cli.h"
#include "db.h"
#include "horizon.h"
#include "log.h"
#include "pg.h"
#include "range.h"
#include "sqlbuf.h"
#include "util.h"

/* --to-offset and --to-time are reset-offsets' own (the new offset, not the end of a
 * range): they keep the shared ids, which replay_range_opt() knows, but the command does not
 * take the shared range options. */
enum {
	OPT_TO_EARLIEST = OPT__FIRST_OWN,
	OPT_TO_LATEST,
	OPT_SHIFT_BY,
};

typedef enum {
	MODE_NONE,
	MODE_EARLIEST,
	MODE_LATEST,
	MODE_OFFSET,
	MODE_TIME,
	MODE_SHIFT,
} reset_mode_t;

void replay_offsets_usage(FILE *fp)
{
	fprintf(fp,
		"Usage: payq-replay reset-offsets --group G\n"
		"         (--to-earliest | --to-latest | --to-offset N | --to-time ISO8601 |\n"
		"          --shift-by N) [--topic T[:P,...]] [--execute] [--force] [settings]\n"
		"\n"
		"Moves a consumer group's committed offsets, as kafka-consumer-groups\n"
		"--reset-offsets does. A dry run by default: prints, per partition, the\n"
		"watermarks, the current committed offset, the new one and the group's\n"
		"consumer_progress row.\n"
		"\n"
		"  --group G          the consumer group (required, or PAYQ_GROUP)\n"
		"  --topic T[:P,...]  the topic, optionally only some partitions (default: --topic\n"
		"                     setting, all partitions)\n"
		"  --to-earliest      the low watermark\n"
		"  --to-latest        the high watermark\n"
		"  --to-offset N      offset N, clamped to the watermarks\n"
		"  --to-time T        the first message with a timestamp at or after T (the high\n"
		"                     watermark when there is none)\n"
		"  --shift-by N       the committed offset plus N (negative rewinds); partitions\n"
		"                     without a committed offset are left alone\n"
		"  --execute          apply: AlterConsumerGroupOffsets, refused while the group has\n"
		"                     members (DescribeConsumerGroups); static members stay members\n"
		"                     until session.timeout.ms after they stop\n"
		"  --force            apply even past the dedup retention horizon, or without a\n"
		"                     database\n"
		"\n"
		"With --execute, consumer_progress of the group is set to the new offsets in the\n"
		"same step (a database transaction held open around the Kafka call), and its\n"
		"reset generation is raised: a worker that left the group but still finishes a\n"
		"batch then cannot raise the progress again; it exits instead. Otherwise the\n"
		"worker's drift check on assign would undo the move: consumer_progress is the\n"
		"truth. So --execute needs the database (--db or PAYQ_DB) unless --force, which\n"
		"moves Kafka only, and which the workers undo by seeking to consumer_progress.\n"
		"A rewind that would re-consume messages older than the dedup retention\n"
		"horizon is refused (exit 2) unless --force.\n"
		"\n");
	replay_print_exit_codes(fp);
}

/* Splits "T" or "T:P,P,..." into topic and spec->partitions. */
static int parse_topic(const char *arg, char **topic, payq_range_spec_t *spec, char *errstr,
		       size_t errstr_size)
{
	const char *colon = strchr(arg, ':');
	char *list, *save = NULL;

	*topic = colon ? strndup(arg, (size_t)(colon - arg)) : strdup(arg);
	if (!*topic)
		return payq_err(errstr, errstr_size, "out of memory");
	if (!colon)
		return 0;
	list = strdup(colon + 1);
	if (!list)
		return payq_err(errstr, errstr_size, "out of memory");
	for (char *tok = strtok_r(list, ",", &save); tok; tok = strtok_r(NULL, ",", &save)) {
		if (replay_range_opt(OPT_PARTITION, tok, spec, errstr, errstr_size) ==
		    REPLAY_OPT_BAD) {
			free(list);
			return -1;
		}
	}
	free(list);
	if (!spec->npartitions)
		return payq_err(errstr, errstr_size, "--topic %s: no partitions after ':'", arg);
	return 0;
}

static void fmt_off(char *buf, size_t size, int64_t v)
{
	if (v < 0)
		snprintf(buf, size, "-");
	else
		snprintf(buf, size, "%" PRId64, v);
}

/* Writes consumer_progress inside an open transaction. */
static int write_progress(PGconn *conn, const char *group, const payq_range_t *r,
			  const int64_t *next, char *errstr, size_t errstr_size)
{
	payq_sqlbuf_t parts = {0}, offs = {0};
	const char *params[4];
	PGresult *res;
	int ret = 0;

	for (size_t i = 0; i < r->cnt; i++) {
		char p[16], o[32];
		if (next[i] < 0)
			continue;
		snprintf(p, sizeof(p), "%" PRId32, r->parts[i].partition);
		snprintf(o, sizeof(o), "%" PRId64, next[i]);
		payq_sqlbuf_str(&parts, p);
		payq_sqlbuf_str(&offs, o);
	}
	params[0] = group;
	params[1] = r->topic;
	params[2] = payq_sqlbuf_array(&parts);
	params[3] = payq_sqlbuf_array(&offs);
	if (!params[2] || !params[3]) {
		ret = payq_err(errstr, errstr_size, "out of memory");
		goto out;
	}
	/* Unlike the worker's GREATEST upsert, this may move progress backwards: that is
	 * the point of a rewind. The new reset generation fences the progress write of a
	 * worker that left the group but still finishes a batch: the worker writes only
	 * under the generation it read on assign. */
	res = PQexecParams(conn,
			   "INSERT INTO payq.consumer_progress AS c (group_id, topic, partition,"
			   " next_offset, reset_generation)"
			   " SELECT $1, $2, p, n, 1 FROM unnest($3::int[], $4::bigint[]) AS x(p, n)"
			   " ON CONFLICT (group_id, topic, partition) DO UPDATE"
			   " SET next_offset = EXCLUDED.next_offset,"
			   " reset_generation = c.reset_generation + 1, updated_at = now()",
			   4, NULL, params, NULL, NULL, 0);
	if (PQresultStatus(res) != PGRES_COMMAND_OK) {
		ret = payq_err(errstr, errstr_size, "writing consumer_progress: %s",
			       PQerrorMessage(conn));
		errstr[strcspn(errstr, "\n")] = '\0';
	}
	PQclear(res);
out:
	payq_sqlbuf_free(&parts);
	payq_sqlbuf_free(&offs);
	return ret;
}

/* Applies the new offsets: progress first inside an open transaction, then Kafka, then
 * COMMIT, so a failed Kafka call leaves the database as it was. */
static replay_exit_t apply(rd_kafka_t *rk, PGconn *conn, const char *group, const payq_range_t *r,
			   const int64_t *next, size_t *changed)
{
	rd_kafka_topic_partition_list_t *l = rd_kafka_topic_partition_list_new((int)r->cnt);
	char errstr[512];
	replay_exit_t rc = REPLAY_EXIT_FAILED;

	*changed = 0;
	for (size_t i = 0; i < r->cnt; i++) {
		if (next[i] < 0)
			continue;
		rd_kafka_topic_partition_list_add(l, r->topic, r->parts[i].partition)->offset =
			next[i];
		(*changed)++;
	}
	if (!*changed) {
		rc = REPLAY_EXIT_OK;
		goto out;
	}
	if (conn && (payq_pg_exec(conn, "BEGIN", errstr, sizeof(errstr)) ||
		     write_progress(conn, group, r, next, errstr, sizeof(errstr)))) {
		fprintf(stderr, "payq-replay reset-offsets: %s; nothing changed\n", errstr);
		PQclear(PQexec(conn, "ROLLBACK"));
		goto out;
	}
	if (replay_group_alter(rk, group, l, errstr, sizeof(errstr))) {
		fprintf(stderr, "payq-replay reset-offsets: %s; nothing changed\n", errstr);
		if (conn)
			PQclear(PQexec(conn, "ROLLBACK"));
		goto out;
	}
	if (conn && payq_pg_exec(conn, "COMMIT", errstr, sizeof(errstr))) {
		fprintf(stderr,
			"payq-replay reset-offsets: Kafka offsets were changed, but writing "
			"consumer_progress failed: %s. Run the same command again before starting "
			"the workers, or their drift check will undo a rewind.\n",
			errstr);
		goto out;
	}
	rc = REPLAY_EXIT_OK;
out:
	rd_kafka_topic_partition_list_destroy(l);
	return rc;
}

/* What the operator asked for. */
typedef struct reset_req {
	replay_opts_t o; /* --execute, --force */
	reset_mode_t mode;
	int nmodes;		 /* how many of the mode options were given: one is right */
	int64_t shift;		 /* --shift-by */
	int64_t target;		 /* --to-offset N, or --to-time T in ms since the epoch */
	char *topic;		 /* --topic T[:P,...] */
	payq_range_spec_t parts; /* its partitions */
} reset_req_t;

/* What the command reads and works out before it changes anything. */
typedef struct reset_plan {
	rd_kafka_t *rk; /* the env's reader, borrowed */
	PGconn *conn;	/* NULL without a database */
	payq_range_t range;
	replay_group_info_t info;
	bool active;
	int nparts;
	int64_t *current, *progress; /* per partition number */
	int64_t *next;		     /* per range.parts[i]; -1: left alone */
	payq_range_t rewind;	     /* the messages the group consumes again: [new, current) */
} reset_plan_t;

/* The command's state, through its steps. */
typedef struct reset_cmd {
	reset_req_t req;
	reset_plan_t plan;
} reset_cmd_t;

static replay_opt_t parse_own(void *cmd, int opt, const char *arg, char *errstr, size_t errstr_size)
{
	reset_req_t *req = &((reset_cmd_t *)cmd)->req;

	switch (opt) {
	case OPT_TO_EARLIEST: req->mode = MODE_EARLIEST; break;
	case OPT_TO_LATEST: req->mode = MODE_LATEST; break;
	case OPT_TO_OFFSET:
	case OPT_TO_TIME: {
		payq_range_spec_t to; /* read as the end of a range would be */
		payq_range_spec_init(&to);
		if (replay_range_opt(opt, arg, &to, errstr, errstr_size) == REPLAY_OPT_BAD)
			return REPLAY_OPT_BAD;
		req->mode = opt == OPT_TO_OFFSET ? MODE_OFFSET : MODE_TIME;
		req->target = opt == OPT_TO_OFFSET ? to.to_offset : to.to_time_ms;
		break;
	}
	case OPT_SHIFT_BY:
		if (payq_parse_int64(arg, -INT64_MAX / 2, INT64_MAX / 2, &req->shift)) {
			payq_err(errstr, errstr_size, "--shift-by \"%s\" is not an integer", arg);
			return REPLAY_OPT_BAD;
		}
		req->mode = MODE_SHIFT;
		break;
	default: return REPLAY_OPT_OTHER;
	}
	req->nmodes++;
	return REPLAY_OPT_TAKEN;
}

static replay_exit_t request(const payq_config_t *cfg, void *cmd, char *errstr, size_t errstr_size)
{
	reset_req_t *req = &((reset_cmd_t *)cmd)->req;

	if (req->nmodes != 1) {
		payq_err(errstr, errstr_size,
			 "give exactly one of --to-earliest, --to-latest, "
			 "--to-offset, --to-time and --shift-by");
		return REPLAY_EXIT_USAGE;
	}
	if (!cfg->group) {
		payq_err(errstr, errstr_size, "--group G is required (or PAYQ_GROUP)");
		return REPLAY_EXIT_USAGE;
	}
	payq_range_spec_init(&req->parts);
	if (parse_topic(cfg->topic, &req->topic, &req->parts, errstr, errstr_size))
		return REPLAY_EXIT_USAGE;
	return REPLAY_EXIT_OK;
}

/* The new offset of each partition, clamped to its watermarks. */
static void compute_next(const reset_req_t *req, reset_plan_t *plan)
{
	for (size_t i = 0; i < plan->range.cnt; i++) {
		const payq_range_part_t *p = &plan->range.parts[i];
		int64_t cur = plan->current[p->partition], v = plan->next[i];

		switch (req->mode) {
		case MODE_EARLIEST: v = p->low; break;
		case MODE_LATEST: v = p->high; break;
		case MODE_OFFSET: v = req->target; break;
		case MODE_TIME: break; /* already read by payq_range_offsets_for_time() */
		case MODE_SHIFT: v = cur + req->shift; break;
		case MODE_NONE: break;
		}
		/* --shift-by has nothing to shift where nothing is committed: left alone (-1). */
		if (req->mode == MODE_SHIFT && cur < 0)
			plan->next[i] = -1;
		else
			plan->next[i] = v < p->low ? p->low : v > p->high ? p->high : v;
	}
}

/* The messages a rewind makes the group consume again: [new, current). */
static int compute_rewind(reset_plan_t *plan)
{
	const payq_range_t *r = &plan->range;

	plan->rewind.parts = calloc(r->cnt + 1, sizeof(*plan->rewind.parts));
	if (!plan->rewind.parts)
		return -1;
	plan->rewind.topic = strdup(r->topic);
	if (!plan->rewind.topic)
		return -1;
	for (size_t i = 0; i < r->cnt; i++) {
		payq_range_part_t *w = &plan->rewind.parts[plan->rewind.cnt];
		int64_t cur = plan->current[r->parts[i].partition];
		if (plan->next[i] < 0)
			continue;
		*w = r->parts[i];
		w->start = plan->next[i];
		w->end = cur >= 0 ? cur : r->parts[i].high;
		if (w->end > w->start)
			plan->rewind.cnt++;
	}
	return 0;
}

/* Reads the group's state in Kafka and in the database, and works out the new offsets.
 * Returns REPLAY_EXIT_OK, or REPLAY_EXIT_FAILED with errstr. */
static replay_exit_t plan_reset(const replay_env_t *env, void *cmd, char *errstr,
				size_t errstr_size)
{
	const payq_config_t *cfg = env->cfg;
	const reset_req_t *req = &((reset_cmd_t *)cmd)->req;
	reset_plan_t *plan = &((reset_cmd_t *)cmd)->plan;

	plan->rk = env->rk;
	if (payq_range_resolve(plan->rk, req->topic, &req->parts, &plan->range, errstr,
			       errstr_size))
		return REPLAY_EXIT_FAILED;
	plan->nparts = replay_range_nparts(&plan->range);
	plan->current = calloc((size_t)plan->nparts + 1, sizeof(*plan->current));
	plan->progress = calloc((size_t)plan->nparts + 1, sizeof(*plan->progress));
	plan->next = calloc(plan->range.cnt + 1, sizeof(*plan->next));
	if (!plan->current || !plan->progress || !plan->next)
		goto oom;
	if (replay_group_describe(plan->rk, cfg->group, &plan->info, errstr, errstr_size) ||
	    replay_group_committed(plan->rk, cfg->group, req->topic, plan->nparts, plan->current,
				   errstr, errstr_size))
		return REPLAY_EXIT_FAILED;
	plan->active = replay_group_active(&plan->info);
	for (int p = 0; p < plan->nparts; p++)
		plan->progress[p] = -1;
	if (replay_db_configured(cfg)) {
		plan->conn = replay_db_connect(cfg, "reset-offsets", errstr, errstr_size);
		if (!plan->conn ||
		    replay_db_progress(plan->conn, cfg->group, req->topic, plan->progress,
				       plan->nparts, errstr, errstr_size))
			return REPLAY_EXIT_FAILED;
	}
	if (req->mode == MODE_TIME &&
	    payq_range_offsets_for_time(plan->rk, &plan->range, req->target, plan->next, errstr,
					errstr_size))
		return REPLAY_EXIT_FAILED;
	compute_next(req, plan);
	if (compute_rewind(plan))
		goto oom;
	return REPLAY_EXIT_OK;
oom:
	payq_err(errstr, errstr_size, "out of memory");
	return REPLAY_EXIT_FAILED;
}

static void print_plan(const replay_env_t *env, const void *cmd)
{
	const payq_config_t *cfg = env->cfg;
	const reset_req_t *req = &((const reset_cmd_t *)cmd)->req;
	const reset_plan_t *plan = &((const reset_cmd_t *)cmd)->plan;

	printf("reset-offsets: group %s (%s, %zu members)%s\n", cfg->group,
	       rd_kafka_consumer_group_state_name(plan->info.state), plan->info.members,
	       req->o.execute ? "" : " (dry run)");
	printf("%-24s %9s %12s %12s %12s %12s %12s\n", "TOPIC", "PARTITION", "LOW", "HIGH",
	       "CURRENT", "NEW", "PROGRESS");
	for (size_t i = 0; i < plan->range.cnt; i++) {
		const payq_range_part_t *p = &plan->range.parts[i];
		char c[24], n[24], g[24];
		fmt_off(c, sizeof(c), plan->current[p->partition]);
		fmt_off(n, sizeof(n), plan->next[i]);
		fmt_off(g, sizeof(g), plan->conn ? plan->progress[p->partition] : -1);
		printf("%-24s %9" PRId32 " %12" PRId64 " %12" PRId64 " %12s %12s %12s\n",
		       req->topic, p->partition, p->low, p->high, c, n, g);
	}
	fflush(stdout);
}

/* The refusals before a move: past the dedup horizon, an active group, no database.
 * Returns REPLAY_EXIT_OK to go on with the move. */
static replay_exit_t check(const payq_config_t *cfg, const reset_req_t *req,
			   const reset_plan_t *plan)
{
	replay_exit_t rc;

	if (plan->conn && plan->rewind.cnt) {
		rc = replay_horizon_guard(plan->rk, plan->conn, &plan->rewind, req->o.force,
					  !req->o.execute, "reset-offsets");
		if (rc != REPLAY_EXIT_OK)
			return rc;
	}
	if (plan->active) {
		fprintf(stderr,
			"payq-replay reset-offsets: %s: group %s has %zu active members "
			"(%s): %s; stop its consumers first\n",
			req->o.execute ? "refused" : "note", cfg->group, plan->info.members,
			rd_kafka_consumer_group_state_name(plan->info.state),
			*plan->info.detail ? plan->info.detail : "rebalancing");
		if (req->o.execute)
			return REPLAY_EXIT_ACTIVE;
	}
	if (req->o.execute && !plan->conn && !req->o.force) {
		fprintf(stderr,
			"payq-replay reset-offsets: refused: no database configured (--db or "
			"PAYQ_DB). The worker's drift check takes consumer_progress as the truth "
			"and would undo the move, so both must move together. --force resets "
			"Kafka only, and the workers undo it.\n");
		return REPLAY_EXIT_USAGE;
	}
	return REPLAY_EXIT_OK;
}

/* After the refusals, moves the offsets (with --execute) and says what moved; a dry run
 * only says how. */
static replay_exit_t execute(const replay_env_t *env, void *cmd)
{
	const payq_config_t *cfg = env->cfg;
	const reset_req_t *req = &((reset_cmd_t *)cmd)->req;
	const reset_plan_t *plan = &((reset_cmd_t *)cmd)->plan;
	size_t changed = 0;
	replay_exit_t rc = check(cfg, req, plan);

	if (rc != REPLAY_EXIT_OK)
		return rc;
	if (!req->o.execute) {
		printf("dry run: nothing changed; add --execute to apply%s\n",
		       plan->conn ? " (consumer_progress is set too)" : "");
		return REPLAY_EXIT_OK;
	}
	rc = apply(plan->rk, plan->conn, cfg->group, &plan->range, plan->next, &changed);
	if (rc != REPLAY_EXIT_OK)
		return rc;
	printf("applied: committed offsets of group %s moved on %zu partitions of %s\n", cfg->group,
	       changed, req->topic);
	if (plan->conn)
		printf("applied: consumer_progress of group %s set to the same offsets in "
		       "PostgreSQL, so the worker's drift check keeps them\n",
		       cfg->group);
	else
		printf("warning: consumer_progress NOT changed (no database): the worker's "
		       "drift check may undo this reset\n");
	return REPLAY_EXIT_OK;
}

static void cleanup(void *cmd)
{
	reset_cmd_t *c = cmd;

	free(c->plan.current);
	free(c->plan.progress);
	free(c->plan.next);
	if (c->plan.conn)
		PQfinish(c->plan.conn);
	payq_range_free(&c->plan.rewind);
	payq_range_free(&c->plan.range);
	payq_range_spec_free(&c->req.parts);
	free(c->req.topic);
}

/* The command, in the order of replay_steps_t's fields. */
/* clang-format off */
const replay_steps_t replay_offsets_steps = {
	"reset-offsets", {REPLAY_TAKES_EXECUTE | REPLAY_TAKES_FORCE, {
		{"to-earliest", no_argument, NULL, OPT_TO_EARLIEST},
		{"to-latest", no_argument, NULL, OPT_TO_LATEST},
		{"to-offset", required_argument, NULL, OPT_TO_OFFSET},
		{"to-time", required_argument, NULL, OPT_TO_TIME},
		{"shift-by", required_argument, NULL, OPT_SHIFT_BY},
	}, parse_own}, sizeof(reset_cmd_t), offsetof(reset_cmd_t, req.o),
	request, plan_reset, print_plan, execute, cleanup};
/* clang-format on */
