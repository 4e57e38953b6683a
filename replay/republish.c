/* republish.c - payq-replay republish: copies a range of a topic back onto a topic. */
#include "republish.h"

#include <getopt.h>
#include <inttypes.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "codec.h"
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

typedef struct republish {
	const char *to_topic, *order;
	bool dry_run;
	payq_sink_t *sink;
	PGconn *conn;
	replay_keys_t *keys;
	bool found[LOOKUP_BATCH];
	int64_t total, read, matched, valid, malformed, already, fresh;
	replay_progress_t progress;
	char errstr[512];
} republish_t;

static int flush_lookups(republish_t *r)
{
	size_t n = replay_keys_count(r->keys);

	memset(r->found, 0, sizeof(r->found));
	if (replay_keys_lookup(r->keys, r->conn, r->found, r->errstr, sizeof(r->errstr)))
		return -1;
	for (size_t i = 0; i < n; i++)
		r->found[i] ? r->already++ : r->fresh++;
	return 0;
}

static int on_message(void *opaque, const rd_kafka_message_t *m)
{
	republish_t *r = opaque;

	r->read++;
	if (r->order &&
	    (m->key_len != strlen(r->order) || !m->key || memcmp(m->key, r->order, m->key_len)))
		goto progress;
	r->matched++;
	if (r->dry_run) {
		payq_command_t cmd;

		/* The worker decodes a keyless message against an empty key; so do we. */
		if (payq_codec_decode(m->key ? m->key : "", m->key ? m->key_len : 0, m->payload,
				      m->len, &cmd, NULL, 0) != PAYQ_REASON_OK) {
			r->malformed++;
			goto progress;
		}
		r->valid++;
		if (replay_keys_add(r->keys, cmd.order_id, cmd.command_id,
				    replay_keys_count(r->keys))) {
			log_error("out of memory");
			return -1;
		}
		if (replay_keys_count(r->keys) == LOOKUP_BATCH && flush_lookups(r)) {
			log_error("%s", r->errstr);
			return -1;
		}
	} else if (payq_sink_copy(r->sink, r->to_topic, m, NULL, r->errstr, sizeof(r->errstr))) {
		if (replay_run)
			log_error("%s", r->errstr);
		return -1;
	}
progress:
	if (r->sink) {
		payq_sink_stats_t st = payq_sink_stats(r->sink);
		payq_sink_poll(r->sink);
		replay_progress(&r->progress, false,
				"republish: %" PRId64 "/%" PRId64 " read, %" PRId64
				" sent, %" PRId64 " delivered",
				r->read, r->total, st.queued, st.delivered);
	} else {
		replay_progress(&r->progress, false, "republish: %" PRId64 "/%" PRId64 " read",
				r->read, r->total);
	}
	return 0;
}

int replay_republish_main(const payq_config_t *cfg, int argc, char **argv)
{
	static const struct option longopts[] = {
		{"from-topic", required_argument, NULL, OPT_FROM_TOPIC},
		{"to-topic", required_argument, NULL, OPT_TO_TOPIC},
		{"partition", required_argument, NULL, OPT_PARTITION},
		{"from-offset", required_argument, NULL, OPT_FROM_OFFSET},
		{"from-time", required_argument, NULL, OPT_FROM_TIME},
		{"to-offset", required_argument, NULL, OPT_TO_OFFSET},
		{"to-time", required_argument, NULL, OPT_TO_TIME},
		{"order", required_argument, NULL, OPT_ORDER},
		{"rate", required_argument, NULL, OPT_RATE},
		{"dry-run", no_argument, NULL, OPT_DRY_RUN},
		{"force", no_argument, NULL, OPT_FORCE},
		{NULL, 0, NULL, 0},
	};
	republish_t r;
	payq_range_spec_t spec;
	payq_range_t range = {0};
	const char *from_topic = cfg->topic;
	double rate = 0;
	bool force = false;
	rd_kafka_t *rk = NULL;
	char errstr[512];
	int opt, rc = REPLAY_EXIT_USAGE, rd;

	memset(&r, 0, sizeof(r));
	payq_range_spec_init(&spec);
	replay_progress_init(&r.progress);
	optind = 1;
	opterr = 0;
	while ((opt = getopt_long(argc, argv, "", longopts, NULL)) != -1) {
		int res = replay_range_opt(opt, optarg, &spec, errstr, sizeof(errstr));
		if (res < 0)
			goto usage;
		if (res > 0)
			continue;
		switch (opt) {
		case OPT_FROM_TOPIC: from_topic = optarg; break;
		case OPT_TO_TOPIC: r.to_topic = optarg; break;
		case OPT_ORDER: r.order = optarg; break;
		case OPT_DRY_RUN: r.dry_run = true; break;
		case OPT_FORCE: force = true; break;
		case OPT_RATE:
			if (replay_parse_rate(optarg, &rate)) {
				payq_err(errstr, sizeof(errstr),
					 "--rate \"%s\" is not a positive number", optarg);
				goto usage;
			}
			break;
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
	/* The start is never implied (a whole topic is not copied by accident); an open
	 * end is the log end, fixed when the range is resolved. */
	if ((spec.from_offset < 0) == (spec.from_time_ms < 0) ||
	    (spec.to_offset >= 0 && spec.to_time_ms >= 0)) {
		payq_err(errstr, sizeof(errstr),
			 "give exactly one of --from-offset and "
			 "--from-time, and at most one of --to-offset and --to-time");
		goto usage;
	}
	if (!r.to_topic)
		r.to_topic = from_topic;

	rc = REPLAY_EXIT_FAILED;
	rk = payq_range_client_new(cfg, errstr, sizeof(errstr));
	if (!rk || payq_range_resolve(rk, from_topic, &spec, &range, errstr, sizeof(errstr)))
		goto fail;
	/* A missing target would only fail after message.timeout.ms, per message. */
	if (strcmp(r.to_topic, from_topic) &&
	    payq_kafka_partition_count(rk, r.to_topic, 15000, errstr, sizeof(errstr)) < 0)
		goto fail;
	r.total = payq_range_total(&range);
	printf("republish: %s -> %s, %" PRId64 " messages%s\n", from_topic, r.to_topic, r.total,
	       r.dry_run ? " (dry run)" : "");
	payq_range_print(&range, "  ");

	r.conn = replay_db_connect(cfg, "republish", errstr, sizeof(errstr));
	if (!r.conn) {
		if (r.dry_run || !force) {
			fprintf(stderr, "payq-replay republish: %s\n%s", errstr,
				r.dry_run ? ""
					  : "payq-replay republish: the database is needed to "
					    "check the dedup retention horizon; --force skips "
					    "the check\n");
			goto out;
		}
		log_warn("--force: dedup retention horizon not checked: %s", errstr);
	} else {
		rc = replay_horizon_guard(rk, r.conn, &range, force, r.dry_run, "republish");
		if (rc != REPLAY_EXIT_OK)
			goto out;
		rc = REPLAY_EXIT_FAILED;
	}

	if (r.dry_run) {
		r.keys = replay_keys_new();
		if (!r.keys)
			goto fail_oom;
	} else {
		r.sink = payq_sink_new(cfg, rate, errstr, sizeof(errstr));
		if (!r.sink)
			goto fail;
	}

	rd = payq_range_read(rk, &range, on_message, &r, errstr, sizeof(errstr));
	if (rd == 0 && r.dry_run && flush_lookups(&r)) {
		snprintf(errstr, sizeof(errstr), "%s", r.errstr);
		rd = -1;
	}
	if (r.sink) {
		char ferr[512];
		/* Also after an interruption, so that the summary says what landed. */
		if (payq_sink_finish(r.sink, 330000, (int)cfg->shutdown_timeout_ms, ferr,
				     sizeof(ferr)) &&
		    rd == 0) {
			snprintf(errstr, sizeof(errstr), "%s", ferr);
			rd = replay_run ? -1 : 1;
		}
	}
	replay_progress_end(&r.progress);
	if (r.dry_run) {
		printf("republish: dry run, nothing sent: read=%" PRId64 " matched=%" PRId64
		       " valid=%" PRId64 " already_processed=%" PRId64 " new=%" PRId64
		       " malformed=%" PRId64 "\n",
		       r.read, r.matched, r.valid, r.already, r.fresh, r.malformed);
	} else {
		payq_sink_stats_t st = payq_sink_stats(r.sink);
		printf("republish: read=%" PRId64 " matched=%" PRId64 " sent=%" PRId64
		       " delivered=%" PRId64 " failed=%" PRId64 "\n",
		       r.read, r.matched, st.queued, st.delivered, st.queued - st.delivered);
	}
	if (rd == 1 || !replay_run) {
		fprintf(stderr, "payq-replay republish: interrupted\n");
		rc = REPLAY_EXIT_INTERRUPTED;
	} else if (rd < 0) {
		fprintf(stderr, "payq-replay republish: %s\n", errstr);
	} else {
		rc = REPLAY_EXIT_OK;
	}
	goto out;

fail_oom:
	payq_err(errstr, sizeof(errstr), "out of memory");
fail:
	fprintf(stderr, "payq-replay republish: %s\n", errstr);
	goto out;
usage:
	fprintf(stderr, "payq-replay republish: %s (see payq-replay republish --help)\n", errstr);
out:
	payq_sink_destroy(r.sink);
	replay_keys_free(r.keys);
	if (r.conn)
		PQfinish(r.conn);
	if (rk) {
		rd_kafka_consumer_close(rk);
		rd_kafka_destroy(rk);
	}
	payq_range_free(&range);
	payq_range_spec_free(&spec);
	return rc;
}
