/* offsets.c - payq-replay reset-offsets: moves a stopped group's offsets, and its progress. */
#include "offsets.h"

#include <getopt.h>
#include <inttypes.h>
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

enum {
	OPT_TO_EARLIEST = OPT__FIRST_OWN,
	OPT_TO_LATEST,
	OPT_SHIFT_BY,
	OPT_EXECUTE,
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
		if (replay_range_opt(OPT_PARTITION, tok, spec, errstr, errstr_size) < 0) {
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
	res = PQexecParams(
		conn,
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
static int apply(rd_kafka_t *rk, PGconn *conn, const char *group, const payq_range_t *r,
		 const int64_t *next, size_t *changed)
{
	rd_kafka_topic_partition_list_t *l = rd_kafka_topic_partition_list_new((int)r->cnt);
	char errstr[512];
	int rc = REPLAY_EXIT_FAILED;

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

int replay_offsets_main(const payq_config_t *cfg, bool group_given, int argc, char **argv)
{
	static const struct option longopts[] = {
		{"to-earliest", no_argument, NULL, OPT_TO_EARLIEST},
		{"to-latest", no_argument, NULL, OPT_TO_LATEST},
		{"to-offset", required_argument, NULL, OPT_TO_OFFSET},
		{"to-time", required_argument, NULL, OPT_TO_TIME},
		{"shift-by", required_argument, NULL, OPT_SHIFT_BY},
		{"execute", no_argument, NULL, OPT_EXECUTE},
		{"force", no_argument, NULL, OPT_FORCE},
		{NULL, 0, NULL, 0},
	};
	payq_range_spec_t spec, tspec;
	payq_range_t range = {0}, rewind = {0};
	replay_group_info_t info;
	reset_mode_t mode = MODE_NONE;
	int64_t arg = 0, *current = NULL, *progress = NULL, *next = NULL;
	bool execute = false, force = false, active;
	char *topic = NULL, errstr[512];
	int opt, nmodes = 0, nparts = 0, rc = REPLAY_EXIT_USAGE;
	rd_kafka_t *rk = NULL;
	PGconn *conn = NULL;
	size_t changed = 0;

	payq_range_spec_init(&spec);
	payq_range_spec_init(&tspec);
	optind = 1;
	opterr = 0;
	while ((opt = getopt_long(argc, argv, "", longopts, NULL)) != -1) {
		switch (opt) {
		case OPT_TO_EARLIEST:
			mode = MODE_EARLIEST;
			nmodes++;
			break;
		case OPT_TO_LATEST:
			mode = MODE_LATEST;
			nmodes++;
			break;
		case OPT_TO_OFFSET:
		case OPT_TO_TIME:
			if (replay_range_opt(opt, optarg, &tspec, errstr, sizeof(errstr)) < 0)
				goto usage;
			mode = opt == OPT_TO_OFFSET ? MODE_OFFSET : MODE_TIME;
			nmodes++;
			break;
		case OPT_SHIFT_BY:
			if (payq_parse_int64(optarg, -INT64_MAX / 2, INT64_MAX / 2, &arg)) {
				payq_err(errstr, sizeof(errstr),
					 "--shift-by \"%s\" is not an integer", optarg);
				goto usage;
			}
			mode = MODE_SHIFT;
			nmodes++;
			break;
		case OPT_EXECUTE: execute = true; break;
		case OPT_FORCE: force = true; break;
		default:
			payq_err(errstr, sizeof(errstr), "unknown or incomplete option \"%s\"",
				 argv[optind - 1]);
			goto usage;
		}
	}
	if (optind < argc) {
		payq_err(errstr, sizeof(errstr), "unexpected argument \"%s\"", argv[optind]);
		goto usage;
	}
	if (nmodes != 1) {
		payq_err(errstr, sizeof(errstr),
			 "give exactly one of --to-earliest, --to-latest, "
			 "--to-offset, --to-time and --shift-by");
		goto usage;
	}
	if (!group_given) {
		payq_err(errstr, sizeof(errstr), "--group G is required (or PAYQ_GROUP)");
		goto usage;
	}
	if (parse_topic(cfg->topic, &topic, &spec, errstr, sizeof(errstr)))
		goto usage;

	rc = REPLAY_EXIT_FAILED;
	rk = payq_range_client_new(cfg, errstr, sizeof(errstr));
	if (!rk || payq_range_resolve(rk, topic, &spec, &range, errstr, sizeof(errstr)))
		goto fail;
	for (size_t i = 0; i < range.cnt; i++)
		if (range.parts[i].partition + 1 > nparts)
			nparts = range.parts[i].partition + 1;
	current = calloc((size_t)nparts + 1, sizeof(*current));
	progress = calloc((size_t)nparts + 1, sizeof(*progress));
	next = calloc(range.cnt + 1, sizeof(*next));
	if (!current || !progress || !next) {
		payq_err(errstr, sizeof(errstr), "out of memory");
		goto fail;
	}
	if (replay_group_describe(rk, cfg->group, &info, errstr, sizeof(errstr)) ||
	    replay_group_committed(rk, cfg->group, topic, nparts, current, errstr, sizeof(errstr)))
		goto fail;
	active = replay_group_active(&info);

	for (int p = 0; p < nparts; p++)
		progress[p] = -1;
	if (replay_db_configured(cfg)) {
		conn = replay_db_connect(cfg, "reset-offsets", errstr, sizeof(errstr));
		if (!conn || replay_db_progress(conn, cfg->group, topic, progress, nparts, errstr,
						sizeof(errstr)))
			goto fail;
	}

	if (mode == MODE_TIME &&
	    payq_range_offsets_for_time(rk, &range, tspec.to_time_ms, next, errstr, sizeof(errstr)))
		goto fail;
	for (size_t i = 0; i < range.cnt; i++) {
		const payq_range_part_t *p = &range.parts[i];
		int64_t cur = current[p->partition], v = next[i];

		switch (mode) {
		case MODE_EARLIEST: v = p->low; break;
		case MODE_LATEST: v = p->high; break;
		case MODE_OFFSET: v = tspec.to_offset; break;
		case MODE_TIME: break;
		case MODE_SHIFT: v = cur + arg; break;
		case MODE_NONE: break;
		}
		/* --shift-by has nothing to shift where nothing is committed: left alone (-1). */
		if (mode == MODE_SHIFT && cur < 0)
			next[i] = -1;
		else
			next[i] = v < p->low ? p->low : v > p->high ? p->high : v;
	}

	printf("reset-offsets: group %s (%s, %zu members)%s\n", cfg->group,
	       rd_kafka_consumer_group_state_name(info.state), info.members,
	       execute ? "" : " (dry run)");
	printf("%-24s %9s %12s %12s %12s %12s %12s\n", "TOPIC", "PARTITION", "LOW", "HIGH",
	       "CURRENT", "NEW", "PROGRESS");
	for (size_t i = 0; i < range.cnt; i++) {
		const payq_range_part_t *p = &range.parts[i];
		char c[24], n[24], g[24];
		fmt_off(c, sizeof(c), current[p->partition]);
		fmt_off(n, sizeof(n), next[i]);
		fmt_off(g, sizeof(g), conn ? progress[p->partition] : -1);
		printf("%-24s %9" PRId32 " %12" PRId64 " %12" PRId64 " %12s %12s %12s\n", topic,
		       p->partition, p->low, p->high, c, n, g);
	}
	fflush(stdout);

	/* The messages a rewind makes the group consume again: [new, current). */
	rewind.topic = topic;
	rewind.parts = calloc(range.cnt + 1, sizeof(*rewind.parts));
	if (!rewind.parts) {
		payq_err(errstr, sizeof(errstr), "out of memory");
		rewind.topic = NULL;
		goto fail;
	}
	for (size_t i = 0; i < range.cnt; i++) {
		payq_range_part_t *w = &rewind.parts[rewind.cnt];
		int64_t cur = current[range.parts[i].partition];
		if (next[i] < 0)
			continue;
		*w = range.parts[i];
		w->start = next[i];
		w->end = cur >= 0 ? cur : range.parts[i].high;
		if (w->end > w->start)
			rewind.cnt++;
	}
	if (conn && rewind.cnt) {
		rc = replay_horizon_guard(rk, conn, &rewind, force, !execute, "reset-offsets");
		if (rc != REPLAY_EXIT_OK)
			goto out;
		rc = REPLAY_EXIT_FAILED;
	}

	if (active) {
		fprintf(stderr,
			"payq-replay reset-offsets: %s: group %s has %zu active members "
			"(%s): %s; stop its consumers first\n",
			execute ? "refused" : "note", cfg->group, info.members,
			rd_kafka_consumer_group_state_name(info.state),
			*info.detail ? info.detail : "rebalancing");
		if (execute) {
			rc = REPLAY_EXIT_ACTIVE;
			goto out;
		}
	}
	if (!execute) {
		printf("dry run: nothing changed; add --execute to apply%s\n",
		       conn ? " (consumer_progress is set too)" : "");
		rc = REPLAY_EXIT_OK;
		goto out;
	}
	if (!conn && !force) {
		fprintf(stderr,
			"payq-replay reset-offsets: refused: no database configured (--db or "
			"PAYQ_DB). The worker's drift check takes consumer_progress as the truth "
			"and would undo the move, so both must move together. --force resets "
			"Kafka only, and the workers undo it.\n");
		rc = REPLAY_EXIT_USAGE;
		goto out;
	}
	rc = apply(rk, conn, cfg->group, &range, next, &changed);
	if (rc == REPLAY_EXIT_OK) {
		printf("applied: committed offsets of group %s moved on %zu partitions of %s\n",
		       cfg->group, changed, topic);
		if (conn)
			printf("applied: consumer_progress of group %s set to the same offsets in "
			       "PostgreSQL, so the worker's drift check keeps them\n",
			       cfg->group);
		else
			printf("warning: consumer_progress NOT changed (no database): the worker's "
			       "drift check may undo this reset\n");
	}
	goto out;

fail:
	fprintf(stderr, "payq-replay reset-offsets: %s\n", errstr);
	goto out;
usage:
	fprintf(stderr, "payq-replay reset-offsets: %s (see payq-replay reset-offsets --help)\n",
		errstr);
out:
	free(rewind.parts);
	free(current);
	free(progress);
	free(next);
	if (conn)
		PQfinish(conn);
	if (rk) {
		rd_kafka_consumer_close(rk);
		rd_kafka_destroy(rk);
	}
	payq_range_free(&range);
	payq_range_spec_free(&spec);
	payq_range_spec_free(&tspec);
	free(topic);
	return rc;
}
