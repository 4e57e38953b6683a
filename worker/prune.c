/* prune.c - dedup retention: records the horizon, then deletes old dedup rows in batches. */
#include "prune.h"

#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

#include "consume.h"
#include "log.h"
#include "migrate.h"
#include "pg.h"
#include "util.h"

#define PRUNE_BATCH_DEFAULT 1000
#define PRUNE_BATCH_MAX 100000

/* The horizon only moves forward: rows before an earlier, later-reaching horizon may
 * be gone already, whatever this run's cutoff is. */
static const char sql_horizon[] =
	"INSERT INTO payq.dedup_horizon AS h (horizon)"
	" VALUES (now() - $1::bigint * interval '1 millisecond')"
	" ON CONFLICT (id) DO UPDATE SET horizon = GREATEST(h.horizon, EXCLUDED.horizon),"
	" updated_at = now()"
	" RETURNING now() - $1::bigint * interval '1 millisecond', h.horizon";

/* ctid = ANY(ARRAY(...)) is a TID scan over one small batch found through the
 * first_seen_at index; `ctid IN (SELECT ...)` may be planned as a join over the table.
 * The same statement records the highest offset deleted per partition: a record's
 * CreateTime says nothing reliable about when its row was first seen, so payq-replay
 * places the horizon by these offsets too. */
static const char sql_delete[] =
	"WITH d AS (DELETE FROM payq.processed_commands WHERE ctid = ANY(ARRAY("
	"SELECT ctid FROM payq.processed_commands WHERE first_seen_at < $1::timestamptz"
	" LIMIT $2::int)) RETURNING kafka_topic, kafka_partition, kafka_offset),"
	" o AS (INSERT INTO payq.dedup_pruned_offsets AS x (topic, partition, max_offset)"
	" SELECT kafka_topic, kafka_partition, max(kafka_offset) FROM d"
	" WHERE kafka_topic IS NOT NULL AND kafka_partition IS NOT NULL"
	" AND kafka_offset IS NOT NULL GROUP BY 1, 2"
	" ON CONFLICT (topic, partition) DO UPDATE"
	" SET max_offset = GREATEST(x.max_offset, EXCLUDED.max_offset), updated_at = now()),"
	" n AS (SELECT count(*) AS c FROM d)"
	" UPDATE payq.dedup_horizon SET pruned_rows = pruned_rows + n.c FROM n RETURNING n.c";

static int pg_fail(PGconn *conn, PGresult *res, const char *what, char *errstr, size_t errstr_size)
{
	payq_err(errstr, errstr_size, "%s: %s", what, PQerrorMessage(conn));
	errstr[strcspn(errstr, "\n")] = '\0';
	PQclear(res);
	return -1;
}

int payq_prune(PGconn *conn, int64_t older_than_ms, int64_t batch, int64_t *deleted, char *errstr,
	       size_t errstr_size)
{
	char msbuf[32], batchbuf[32], cutoff[64];
	const char *hparams[1] = {msbuf};
	const char *dparams[2] = {cutoff, batchbuf};
	PGresult *res;

	*deleted = 0;
	snprintf(msbuf, sizeof(msbuf), "%" PRId64, older_than_ms);
	snprintf(batchbuf, sizeof(batchbuf), "%" PRId64, batch);

	/* Autocommit: the horizon is durable before the first row is deleted. */
	res = PQexecParams(conn, sql_horizon, 1, NULL, hparams, NULL, NULL, 0);
	if (PQresultStatus(res) != PGRES_TUPLES_OK || PQntuples(res) != 1)
		return pg_fail(conn, res, "recording the dedup horizon", errstr, errstr_size);
	snprintf(cutoff, sizeof(cutoff), "%s", PQgetvalue(res, 0, 0));
	log_info("dedup horizon is %s; deleting processed_commands first seen before %s",
		 PQgetvalue(res, 0, 1), cutoff);
	PQclear(res);

	for (;;) {
		int64_t n;

		res = PQexecParams(conn, sql_delete, 2, NULL, dparams, NULL, NULL, 0);
		if (PQresultStatus(res) != PGRES_TUPLES_OK || PQntuples(res) != 1)
			return pg_fail(conn, res, "deleting processed_commands", errstr,
				       errstr_size);
		n = strtoll(PQgetvalue(res, 0, 0), NULL, 10);
		PQclear(res);
		*deleted += n;
		if (n < batch)
			break;
		log_debug("pruned %" PRId64 " rows so far", *deleted);
	}
	return 0;
}

void payq_prune_usage(FILE *fp)
{
	fprintf(fp,
		"prune    --older-than DURATION [--batch N]: delete processed_commands rows first\n"
		"         seen more than DURATION ago (30s, 15m, 2h, 7d), N rows per short\n"
		"         transaction (default %d). It first records the dedup horizon, which\n"
		"         payq-replay refuses to replay past without --force. Keep DURATION longer\n"
		"         than the topic's retention.ms plus any replay window.\n",
		PRUNE_BATCH_DEFAULT);
}

/* Returns the value of "--name=value" or "--name value" when argv[*i] is that flag,
 * advancing *i; NULL otherwise. *missing is set when the value is absent. */
static const char *opt_value(int argc, char **argv, int *i, const char *name, int *missing)
{
	size_t len = strlen(name);
	const char *a = argv[*i];

	if (strncmp(a, name, len))
		return NULL;
	if (a[len] == '=')
		return a + len + 1;
	if (a[len])
		return NULL;
	if (*i + 1 >= argc) {
		*missing = 1;
		return NULL;
	}
	return argv[++*i];
}

int payq_prune_main(const payq_config_t *cfg, int argc, char **argv)
{
	int64_t older_than = -1, batch = PRUNE_BATCH_DEFAULT, deleted = 0;
	char errstr[512];
	PGconn *conn;
	int rc = PAYQ_EXIT_OK;
	payq_schema_check_t schema;

	for (int i = 1; i < argc; i++) {
		int missing = 0;
		const char *v;

		if ((v = opt_value(argc, argv, &i, "--older-than", &missing))) {
			if (payq_parse_duration_ms(v, &older_than) || older_than <= 0) {
				fprintf(stderr,
					"payq-worker prune: --older-than \"%s\" is not a "
					"positive duration such as 12h or 30d\n",
					v);
				return PAYQ_EXIT_USAGE;
			}
		} else if ((v = opt_value(argc, argv, &i, "--batch", &missing))) {
			if (payq_parse_int64(v, 1, PRUNE_BATCH_MAX, &batch)) {
				fprintf(stderr,
					"payq-worker prune: --batch \"%s\" is not an integer "
					"from 1 to %d\n",
					v, PRUNE_BATCH_MAX);
				return PAYQ_EXIT_USAGE;
			}
		} else {
			fprintf(stderr, "payq-worker prune: %s \"%s\" (see --help)\n",
				missing ? "missing value for" : "unknown argument", argv[i]);
			return PAYQ_EXIT_USAGE;
		}
	}
	if (older_than < 0) {
		fprintf(stderr, "payq-worker prune: --older-than DURATION is required\n");
		return PAYQ_EXIT_USAGE;
	}

	conn = payq_pg_connect(cfg->db, "payq-worker prune", errstr, sizeof(errstr));
	if (!conn) {
		log_error("%s", errstr);
		return PAYQ_EXIT_RUNTIME;
	}
	schema = payq_migrate_check(conn, errstr, sizeof(errstr));
	if (schema != PAYQ_SCHEMA_OK) {
		/* Only a schema read and found old is exit 3; a failed read is a runtime
		 * error, worth running again. */
		log_error("%s", errstr);
		rc = schema == PAYQ_SCHEMA_TOO_OLD ? PAYQ_EXIT_SCHEMA : PAYQ_EXIT_RUNTIME;
	} else if (payq_prune(conn, older_than, batch, &deleted, errstr, sizeof(errstr))) {
		log_error("prune: %s (%" PRId64 " rows deleted before the error)", errstr, deleted);
		rc = PAYQ_EXIT_RUNTIME;
	} else {
		log_info("pruned %" PRId64 " processed_commands rows", deleted);
		printf("pruned %" PRId64 " processed_commands rows\n", deleted);
	}
	PQfinish(conn);
	return rc;
}
