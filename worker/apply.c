/* apply.c - applies a batch of commands to PostgreSQL in one transaction. */
#include "apply.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <libpq-fe.h>

#include "crash.h"
#include "log.h"
#include "metrics.h"
#include "migrate.h"
#include "pg.h"
#include "sqlbuf.h"
#include "util.h"

/*
 * A batch takes two round trips, each one pipeline:
 *
 *   1. BEGIN; read the dedup rows of the batch's orders; then lock every order of the
 *      batch FOR UPDATE (in order_id order, so two workers never deadlock) and read it.
 *      The order of the two matters. Each statement has its own snapshot, and a
 *      FOR UPDATE that waits for another worker's transaction (a zombie after a lost
 *      assignment, say) sees that worker's updates to the rows it locks but not the
 *      orders it created. Were the dedup read second, it would see that worker's new
 *      dedup rows while the order read missed its new orders: its create_order counted
 *      as a duplicate and a later pay in our batch rejected as an unknown order (the
 *      gateway chaos soak found this). With the dedup read first, the order state is
 *      never older than the dedup state: anything that worker committed after the
 *      dedup read looks new to us, and writing it again fails on a unique key (23505),
 *      which rolls back and retries the batch with fresh reads.
 *   2. The outcome table (outcome.c, no I/O) is evaluated in offset order against
 *      those rows and the batch's own earlier commands, merging every change to one
 *      order into one row write. Then set-based writes over arrays (new orders, version-checked order
 *      updates, payments, dedup rows, duplicate counters, anomalies, progress) and
 *      COMMIT.
 *
 * The unique partial index on payments still refuses a second live payment, whatever
 * this code does.
 *
 * Gateway mode changes only pay: the payment is written pending, the order stays unpaid
 * and the caller charges the channel after COMMIT, then settles (payq_apply_settle()).
 * consumer_progress then moves in the settling transaction, not in this one, so a
 * crash before the settle leaves the pay to be redelivered and resumed.
 */

enum {
	P_ORD_ID, P_ORD_AMOUNT, P_ORD_CUR, P_ORD_CUST, P_ORD_STATUS, P_ORD_VERSION, P_ORD_PAID,
	P_UPD_ID, P_UPD_OLD, P_UPD_NEW, P_UPD_STATUS, P_UPD_PAID,
	P_PAY_ORDER, P_PAY_CMD, P_PAY_AMOUNT, P_PAY_CUR, P_PAY_PAYER, P_PAY_KEY,
	P_SET_ORDER, P_SET_CMD, P_SET_STATUS, P_SET_CHARGE, P_SET_DECLINE, P_SET_DETAIL,
	P_PC_ORDER, P_PC_CMD, P_PC_TYPE, P_PC_HASH, P_PC_OUT, P_PC_DETAIL, P_PC_PART, P_PC_OFF,
	P_PC_DUPS,
	P_DUP_ORDER, P_DUP_CMD, P_DUP_N,
	P_AN_KIND, P_AN_ORDER, P_AN_CMD, P_AN_DETAIL, P_AN_PART, P_AN_OFF,
	P_PR_PART, P_PR_NEXT, P_PR_GEN,
	P_LOCK_IDS,
	P__CNT
};

struct payq_apply {
	char *conninfo, *group, *topic;
	PGconn *conn;
	bool healthy;
	uint64_t generation; /* counts connections made: a new one may be a new server */
	bool gateway;
	char first_look_s[32]; /* gateway mode: seconds, as a query parameter */

	/* Scratch reused from batch to batch. */
	payq_batch_state_t batch; /* the outcome table's state (outcome.h) */
	char (*hex)[2 * PAYQ_SHA256_LEN + 1];
	payq_outcome_out_t *out;
	size_t items_cap;
	payq_sqlbuf_t p[P__CNT];

	/* The reset generation of each partition's consumer_progress row, read when the
	 * partition was assigned (payq_apply_read_progress). A progress write is guarded by
	 * it; a write refused because reset-offsets moved the row meanwhile sets stale. */
	struct gen {
		int32_t partition;
		int64_t generation;
	} *gens;
	size_t ngens, gens_cap;
	bool stale;
	int32_t stale_partition;
	size_t counts[8];
};

static const struct {
	const char *name, *sql;
} statements[] = {
	/* Both reads probe the primary key once per order through LATERAL: on fresh,
	 * unanalysed tables the planner would otherwise guess that an = ANY() over a few
	 * hundred ids matches most of the table and scan all of it. Locks are taken in
	 * order_id order, so two workers never deadlock on the same orders. */
	{"lock_orders",
	 "SELECT o.order_id, o.status, o.version, o.amount_minor, o.currency"
	 " FROM (SELECT DISTINCT id FROM unnest($1::text[]) AS u(id) ORDER BY id) AS k"
	 " JOIN LATERAL (SELECT * FROM payq.orders WHERE order_id = k.id FOR UPDATE) AS o"
	 " ON true"},
	/* Gateway mode also needs to know whether a payment is in progress. */
	{"lock_orders_gw",
	 "SELECT o.order_id, o.status, o.version, o.amount_minor, o.currency,"
	 " EXISTS (SELECT 1 FROM payq.payments p WHERE p.order_id = o.order_id"
	 " AND p.status IN ('pending', 'unknown'))"
	 " FROM (SELECT DISTINCT id FROM unnest($1::text[]) AS u(id) ORDER BY id) AS k"
	 " JOIN LATERAL (SELECT * FROM payq.orders WHERE order_id = k.id FOR UPDATE) AS o"
	 " ON true"},
	/* Every dedup row of the batch's orders, an index range scan on the key's prefix
	 * (OFFSET 0 keeps the planner from flattening the probe into a hash join).
	 * Rows of commands not in the batch are simply never looked up. */
	{"read_dedup",
	 "SELECT p.order_id, p.command_id, encode(p.payload_sha256, 'hex'),"
	 " p.outcome = 'pending', p.outcome, p.kafka_topic, p.kafka_partition, p.kafka_offset"
	 " FROM unnest($1::text[]) AS k(id)"
	 " JOIN LATERAL (SELECT * FROM payq.processed_commands WHERE order_id = k.id"
	 " OFFSET 0) AS p"
	 " ON true"},
	{"ins_orders",
	 "INSERT INTO payq.orders (order_id, amount_minor, currency, customer_id, status,"
	 " version, paid_command_id)"
	 " SELECT * FROM unnest($1::text[], $2::bigint[], $3::text[], $4::text[], $5::text[],"
	 " $6::int[], $7::text[])"},
	{"upd_orders",
	 "WITH u AS (UPDATE payq.orders o SET status = x.status, version = x.new_version,"
	 " paid_command_id = x.paid, updated_at = now()"
	 " FROM unnest($1::text[], $2::int[], $3::int[], $4::text[], $5::text[])"
	 " AS x(order_id, old_version, new_version, status, paid)"
	 " WHERE o.order_id = x.order_id AND o.version = x.old_version RETURNING 1)"
	 " SELECT payq.expect_rows(cardinality($1::text[]), (SELECT count(*) FROM u),"
	 " 'order version check')"},
	{"ins_payments",
	 "INSERT INTO payq.payments (order_id, command_id, amount_minor, currency, payer_id, status)"
	 " SELECT o, c, a, cur, p, 'succeeded'"
	 " FROM unnest($1::text[], $2::text[], $3::bigint[], $4::text[], $5::text[])"
	 " AS x(o, c, a, cur, p)"},
	/* The idempotency key (payq_gateway_key()) is fixed here, once, for every later
	 * charge and query: they all read it back (read_keys). */
	{"ins_payments_gw",
	 "INSERT INTO payq.payments (order_id, command_id, amount_minor, currency, payer_id, status,"
	 " idempotency_key, next_attempt_at)"
	 " SELECT o, c, a, cur, p, 'pending', k, now() + make_interval(secs => $1)"
	 " FROM unnest($2::text[], $3::text[], $4::bigint[], $5::text[], $6::text[], $7::text[])"
	 " AS x(o, c, a, cur, p, k)"},
	/* The stored key of each live payment to charge, and whether it was recorded longer
	 * ago than the channel keeps keys ($3 seconds). */
	{"read_keys",
	 "SELECT k.i, p.idempotency_key, p.created_at < now() - make_interval(secs => $3)"
	 " FROM unnest($1::text[], $2::text[]) WITH ORDINALITY AS k(o, c, i)"
	 " JOIN payq.payments p ON p.order_id = k.o AND p.command_id = k.c"
	 " AND p.status IN ('pending', 'unknown') AND p.idempotency_key IS NOT NULL"},
	/* An anomaly about one payment, once: a payment looked at again and again (by the
	 * reconciler) raises it on the first look only. Returns a row when it was new. */
	{"ins_payment_anomaly",
	 "INSERT INTO payq.anomalies (kind, order_id, command_id, detail)"
	 " SELECT $1, $2, $3, $4 WHERE NOT EXISTS (SELECT 1 FROM payq.anomalies"
	 " WHERE kind = $1 AND order_id = $2 AND command_id = $3) RETURNING 1"},
	/* Step 3 of gateway mode, one statement: only payments still pending or unknown
	 * move, and the order and the outcome follow the payment. */
	{"settle",
	 "WITH r AS (SELECT * FROM unnest($2::text[], $3::text[], $4::text[], $5::text[],"
	 " $6::text[], $7::text[]) AS r(order_id, command_id, status, charge_id, decline, detail)),"
	 " p AS (UPDATE payq.payments p SET status = r.status,"
	 " gateway_charge_id = coalesce(r.charge_id, p.gateway_charge_id),"
	 " decline_code = r.decline, updated_at = now(),"
	 " next_attempt_at = CASE WHEN r.status = 'unknown'"
	 " THEN now() + make_interval(secs => $1) END"
	 " FROM r WHERE p.order_id = r.order_id AND p.command_id = r.command_id"
	 " AND p.status IN ('pending', 'unknown')"
	 " RETURNING p.order_id, p.command_id, p.status, r.detail),"
	 " o AS (UPDATE payq.orders o SET status = 'paid', version = o.version + 1,"
	 " paid_command_id = p.command_id, updated_at = now()"
	 " FROM p WHERE p.status = 'succeeded' AND o.order_id = p.order_id"
	 " AND o.status = 'unpaid' RETURNING 1),"
	 " c AS (UPDATE payq.processed_commands c SET outcome = CASE p.status"
	 " WHEN 'succeeded' THEN 'applied' WHEN 'failed' THEN 'rejected_declined'"
	 " ELSE 'pending' END, detail = p.detail"
	 " FROM p WHERE c.order_id = p.order_id AND c.command_id = p.command_id RETURNING 1)"
	 " SELECT (SELECT count(*) FROM p), (SELECT count(*) FROM p WHERE status = 'succeeded'),"
	 " (SELECT count(*) FROM o)"},
	{"ins_processed",
#ifdef PAYQ_MUTATION_SKIP_DEDUP
	 /* Deliberately broken build: the dedup check is skipped, so a redelivery is
	  * evaluated again and overwrites the first outcome. */
	 "INSERT INTO payq.processed_commands AS p (order_id, command_id, command_type,"
	 " payload_sha256, outcome, detail, kafka_topic, kafka_partition, kafka_offset, duplicates)"
	 " SELECT o, c, t, decode(h, 'hex'), oc, d, $1, pa, off, dup"
	 " FROM unnest($2::text[], $3::text[], $4::text[], $5::text[], $6::text[], $7::text[],"
	 " $8::int[], $9::bigint[], $10::int[]) AS x(o, c, t, h, oc, d, pa, off, dup)"
	 " ON CONFLICT (order_id, command_id) DO UPDATE SET outcome = EXCLUDED.outcome,"
	 " detail = EXCLUDED.detail"},
#else
	 "INSERT INTO payq.processed_commands (order_id, command_id, command_type,"
	 " payload_sha256, outcome, detail, kafka_topic, kafka_partition, kafka_offset, duplicates)"
	 " SELECT o, c, t, decode(h, 'hex'), oc, d, $1, pa, off, dup"
	 " FROM unnest($2::text[], $3::text[], $4::text[], $5::text[], $6::text[], $7::text[],"
	 " $8::int[], $9::bigint[], $10::int[]) AS x(o, c, t, h, oc, d, pa, off, dup)"},
#endif
	{"upd_dups",
	 "UPDATE payq.processed_commands p SET duplicates = p.duplicates + x.n, last_seen_at = now()"
	 " FROM unnest($1::text[], $2::text[], $3::int[]) AS x(o, c, n)"
	 " WHERE p.order_id = x.o AND p.command_id = x.c"},
	{"ins_anomalies",
	 "INSERT INTO payq.anomalies (kind, order_id, command_id, detail, kafka_topic,"
	 " kafka_partition, kafka_offset)"
	 " SELECT k, o, c, d, $1, pa, off FROM unnest($2::text[], $3::text[], $4::text[],"
	 " $5::text[], $6::int[], $7::bigint[]) AS x(k, o, c, d, pa, off)"},
	/* Progress only moves forward, and only under the reset generation this worker read
	 * on assign: a worker that left the group but still finishes a batch must not raise
	 * the row past a reset made meanwhile. A partition whose generation is not known yet
	 * (NULL) takes the row's current one. RETURNING lists the partitions written. */
	{"upsert_progress",
	 "INSERT INTO payq.consumer_progress AS c (group_id, topic, partition, next_offset,"
	 " reset_generation)"
	 " SELECT $1, $2, pa, n, coalesce(g, (SELECT r.reset_generation"
	 " FROM payq.consumer_progress r WHERE r.group_id = $1 AND r.topic = $2"
	 " AND r.partition = pa), 0)"
	 " FROM unnest($3::int[], $4::bigint[], $5::bigint[]) AS x(pa, n, g)"
	 " ON CONFLICT (group_id, topic, partition) DO UPDATE"
	 " SET next_offset = GREATEST(c.next_offset, EXCLUDED.next_offset), updated_at = now()"
#ifndef PAYQ_MUTATION_UNGUARDED_PROGRESS
	 " WHERE c.reset_generation = EXCLUDED.reset_generation"
#endif
	 " RETURNING partition, reset_generation"},
	{"read_progress",
	 "SELECT next_offset, reset_generation FROM payq.consumer_progress"
	 " WHERE group_id = $1 AND topic = $2 AND partition = $3"},
	{"ins_anomaly",
	 "INSERT INTO payq.anomalies (kind, detail, kafka_topic, kafka_partition, kafka_offset)"
	 " VALUES ($1, $2, $3, $4, $5)"},
	{"read_horizon",
	 "SELECT (extract(epoch FROM horizon) * 1000)::bigint FROM payq.dedup_horizon"},
};

payq_apply_t *payq_apply_new(const char *conninfo, const char *group, const char *topic)
{
	payq_apply_t *a = calloc(1, sizeof(*a));

	if (!a)
		return NULL;
	a->conninfo = strdup(conninfo ? conninfo : "");
	a->group = strdup(group);
	a->topic = strdup(topic);
	if (!a->conninfo || !a->group || !a->topic) {
		payq_apply_destroy(a);
		return NULL;
	}
	return a;
}

void payq_apply_destroy(payq_apply_t *a)
{
	if (!a)
		return;
	payq_apply_disconnect(a);
	for (int i = 0; i < P__CNT; i++)
		payq_sqlbuf_free(&a->p[i]);
	payq_batch_free(&a->batch);
	free(a->hex);
	free(a->out);
	free(a->gens);
	free(a->conninfo);
	free(a->group);
	free(a->topic);
	free(a);
}

void payq_apply_disconnect(payq_apply_t *a)
{
	if (a->conn)
		PQfinish(a->conn);
	a->conn = NULL;
	a->healthy = false;
}

bool payq_apply_connected(const payq_apply_t *a)
{
	return a->conn && a->healthy && PQstatus(a->conn) == CONNECTION_OK;
}

payq_connect_t payq_apply_connect(payq_apply_t *a, char *errstr, size_t errstr_size)
{
	if (payq_apply_connected(a))
		return PAYQ_CONNECT_OK;
	payq_apply_disconnect(a);
	a->conn = payq_pg_connect(a->conninfo, "payq-worker", errstr, errstr_size);
	if (!a->conn)
		return PAYQ_CONNECT_RETRY;
	switch (payq_migrate_check(a->conn, errstr, errstr_size)) {
	case PAYQ_SCHEMA_OK:
		break;
	case PAYQ_SCHEMA_TOO_OLD:
		payq_apply_disconnect(a);
		return PAYQ_CONNECT_FATAL;
	case PAYQ_SCHEMA_UNREADABLE:
		payq_apply_disconnect(a);
		return PAYQ_CONNECT_RETRY;
	}
	/* A generic plan frozen while the tables were small would scan them whole for
	 * ever after; custom plans follow the tables' real size. Planning is cheap
	 * next to a round trip. */
	if (payq_pg_exec(a->conn, "SET plan_cache_mode = force_custom_plan", errstr,
			 errstr_size)) {
		payq_apply_disconnect(a);
		return PAYQ_CONNECT_RETRY;
	}
	for (size_t i = 0; i < PAYQ_ARRAY_SIZE(statements); i++) {
		PGresult *res = payq_pg_prepare(a->conn, statements[i].name, statements[i].sql, 0, NULL);
		if (PQresultStatus(res) != PGRES_COMMAND_OK) {
			payq_err(errstr, errstr_size, "preparing %s: %s", statements[i].name,
				 PQerrorMessage(a->conn));
			PQclear(res);
			payq_apply_disconnect(a);
			return PAYQ_CONNECT_RETRY;
		}
		PQclear(res);
	}
	a->healthy = true;
	a->generation++;
	return PAYQ_CONNECT_OK;
}

uint64_t payq_apply_generation(const payq_apply_t *a)
{
	return a->generation;
}

int payq_apply_ping(payq_apply_t *a)
{
	PGresult *res;
	int ok;

	if (!payq_apply_connected(a))
		return -1;
	res = payq_pg_query(a->conn, "SELECT 1");
	ok = PQresultStatus(res) == PGRES_TUPLES_OK;
	PQclear(res);
	if (!ok)
		a->healthy = false;
	return ok ? 0 : -1;
}

/* Sends one prepared statement with n parameters taken from a->p[first...]. */
static int send_prepared(payq_apply_t *a, const char *name, const char *const *fixed, int nfixed,
			 int first, int n)
{
	const char *values[16];
	int k = 0;

	for (int i = 0; i < nfixed; i++)
		values[k++] = fixed[i];
	for (int i = 0; i < n; i++) {
		values[k] = payq_sqlbuf_array(&a->p[first + i]);
		/* A NULL array would unnest to nothing and silently drop rows. */
		if (!values[k++])
			return -1;
	}
	return PQsendQueryPrepared(a->conn, name, k, values, NULL, NULL, 0) ? 0 : -1;
}

/* Reads the results of a pipeline up to its sync. keep[i] receives the tuples of query
 * i when keep is not NULL. Returns PAYQ_APPLY_OK or the status of the first error. */
static payq_apply_status_t pipeline_finish(payq_apply_t *a, int nq, PGresult **keep,
					   char sqlstate[6], char *errstr, size_t errstr_size)
{
	payq_apply_status_t st = PAYQ_APPLY_OK;
	int q = 0, nulls = 0;

	for (;;) {
		PGresult *r = payq_pg_get_result(a->conn);
		ExecStatusType es;

		if (!r) {
			if (PQstatus(a->conn) != CONNECTION_OK || ++nulls > nq + 1) {
				if (st == PAYQ_APPLY_OK) {
					st = PAYQ_APPLY_TRANSIENT;
					payq_err(errstr, errstr_size, "%s", PQerrorMessage(a->conn));
				}
				break;
			}
			q++;
			continue;
		}
		es = PQresultStatus(r);
		if (es == PGRES_PIPELINE_SYNC) {
			PQclear(r);
			break;
		}
		if (es == PGRES_FATAL_ERROR && st == PAYQ_APPLY_OK) {
			snprintf(sqlstate, 6, "%s", payq_pg_sqlstate(r));
			payq_err(errstr, errstr_size, "%s", PQresultErrorMessage(r));
			/* 23505 here means another worker won a race for the same key; the
			 * retry sees its row. The caller caps these retries. */
			st = payq_pg_transient(a->conn, r) || !strcmp(sqlstate, "23505") ?
				     PAYQ_APPLY_TRANSIENT : PAYQ_APPLY_PERMANENT;
#ifndef PAYQ_MUTATION_READONLY_KEEP
			/* 25006: this server is a standby, or a primary fenced read-only
			 * during a failover. Retrying here would never succeed: drop the
			 * connection, so that the reconnect (multi-host, read-write) finds
			 * the primary. (The mutant keeps it and stalls.) */
			if (!strcmp(sqlstate, "25006"))
				a->healthy = false;
#endif
		}
		if (keep && q < nq && es == PGRES_TUPLES_OK && !keep[q]) {
			keep[q] = r;
			continue;
		}
		PQclear(r);
	}
	if (errstr[0])
		errstr[strcspn(errstr, "\n")] = '\0';
	if (PQpipelineStatus(a->conn) != PQ_PIPELINE_OFF && !PQexitPipelineMode(a->conn) &&
	    st == PAYQ_APPLY_OK) {
		st = PAYQ_APPLY_TRANSIENT;
		payq_err(errstr, errstr_size, "leaving pipeline mode: %s", PQerrorMessage(a->conn));
	}
	return st;
}

static void rollback(payq_apply_t *a)
{
	if (PQstatus(a->conn) != CONNECTION_OK) {
		a->healthy = false;
		return;
	}
	if (PQpipelineStatus(a->conn) != PQ_PIPELINE_OFF) {
		/* The pipeline could not be drained: the connection's state is unknown. */
		a->healthy = false;
		return;
	}
	if (PQtransactionStatus(a->conn) != PQTRANS_IDLE)
		PQclear(payq_pg_query(a->conn, "ROLLBACK"));
	if (PQstatus(a->conn) != CONNECTION_OK)
		a->healthy = false;
}

static int prepare_scratch(payq_apply_t *a, size_t n)
{
	if (payq_batch_reset(&a->batch, n, n) != PAYQ_OUTCOME_OK)
		return -1;
	if (n > a->items_cap) {
		void *h = realloc(a->hex, n * sizeof(*a->hex));
		void *d;
		if (!h)
			return -1;
		a->hex = h;
		d = realloc(a->out, n * sizeof(*a->out));
		if (!d)
			return -1;
		a->out = d;
		a->items_cap = n;
	}
	for (int i = 0; i < P__CNT; i++)
		payq_sqlbuf_reset(&a->p[i]);
	return 0;
}

/* Round trip 1: BEGIN, read the dedup rows, then lock and read the orders (the order
 * of the two is explained on top). */
static payq_apply_status_t read_state(payq_apply_t *a, payq_item_t *items, size_t n,
				      PGresult **locked, PGresult **dedup, char sqlstate[6],
				      char *errstr, size_t errstr_size)
{
	PGresult *keep[3] = {NULL, NULL, NULL};
	payq_apply_status_t st;

	for (size_t i = 0; i < n; i++) {
		const payq_command_t *c = &items[i].cmd;
		size_t before = a->batch.norders;

		payq_hex(c->payload_sha256, PAYQ_SHA256_LEN, a->hex[i]);
		/* prepare_scratch made room for one order per item. */
		payq_batch_order(&a->batch, c->order_id, true);
		if (a->batch.norders > before)
			payq_sqlbuf_str(&a->p[P_LOCK_IDS], c->order_id);
	}

	if (!PQenterPipelineMode(a->conn) ||
	    !PQsendQueryParams(a->conn, "BEGIN", 0, NULL, NULL, NULL, NULL, 0) ||
#ifndef PAYQ_MUTATION_LOCK_BEFORE_DEDUP
	    send_prepared(a, "read_dedup", NULL, 0, P_LOCK_IDS, 1) ||
	    send_prepared(a, a->gateway ? "lock_orders_gw" : "lock_orders", NULL, 0, P_LOCK_IDS, 1) ||
#else
	    /* Deliberately broken build: the dedup read after the order lock, whose
	     * snapshot can miss the orders a zombie created (see the comment on top). */
	    send_prepared(a, a->gateway ? "lock_orders_gw" : "lock_orders", NULL, 0, P_LOCK_IDS, 1) ||
	    send_prepared(a, "read_dedup", NULL, 0, P_LOCK_IDS, 1) ||
#endif
	    !PQpipelineSync(a->conn)) {
		payq_err(errstr, errstr_size, "sending: %s", PQerrorMessage(a->conn));
		errstr[strcspn(errstr, "\n")] = '\0';
		pipeline_finish(a, 3, NULL, sqlstate, errstr + strlen(errstr), 0);
		return PAYQ_APPLY_TRANSIENT;
	}
	st = pipeline_finish(a, 3, keep, sqlstate, errstr, errstr_size);
#ifndef PAYQ_MUTATION_LOCK_BEFORE_DEDUP
	*dedup = keep[1];
	*locked = keep[2];
#else
	*locked = keep[1];
	*dedup = keep[2];
#endif
	PQclear(keep[0]);
	if (st == PAYQ_APPLY_OK && (!*locked || !*dedup)) {
		st = PAYQ_APPLY_TRANSIENT;
		payq_err(errstr, errstr_size, "missing result in the read pipeline");
	}
	return st;
}

static int load_state(payq_apply_t *a, size_t n, PGresult *locked, PGresult *dedup)
{
	/* The dedup read returns every row of the batch's orders, not only the batch's
	 * commands, so size the key index for both. */
	if (payq_batch_reserve_keys(&a->batch, n + (size_t)PQntuples(dedup)) != PAYQ_OUTCOME_OK)
		return -1;

	for (int r = 0; r < PQntuples(locked); r++) {
		payq_order_state_t *o = payq_batch_order(&a->batch, PQgetvalue(locked, r, 0), false);

		if (!o)
			continue;
		o->in_db = o->exists = true;
		o->status = payq_order_status_parse(PQgetvalue(locked, r, 1));
		o->db_version = o->version = atoi(PQgetvalue(locked, r, 2));
		o->amount = strtoll(PQgetvalue(locked, r, 3), NULL, 10);
		o->currency = PQgetvalue(locked, r, 4);
		o->in_progress = a->gateway && PQgetvalue(locked, r, 5)[0] == 't';
	}
#ifndef PAYQ_MUTATION_SKIP_DEDUP
	for (int r = 0; r < PQntuples(dedup); r++) {
		payq_key_state_t *k =
			payq_batch_key_add(&a->batch, PQgetvalue(dedup, r, 0), PQgetvalue(dedup, r, 1));
		k->in_db = true;
		k->hash_hex = PQgetvalue(dedup, r, 2);
		k->pending = PQgetvalue(dedup, r, 3)[0] == 't';
		k->outcome = PQgetvalue(dedup, r, 4);
		k->topic = PQgetvalue(dedup, r, 5);
		k->partition = (int32_t)atoi(PQgetvalue(dedup, r, 6));
		k->offset = strtoll(PQgetvalue(dedup, r, 7), NULL, 10);
	}
#else
	(void)dedup;
#endif
	return 0;
}

/* The effects of one command that are rows of their own: a key_reuse anomaly, a
 * payment. */
static void command_rows(payq_apply_t *a, const payq_item_t *it, const payq_outcome_out_t *out)
{
	const payq_command_t *c = &it->cmd;
	char num[32], key[PAYQ_GATEWAY_KEY_MAX + 1];

	if (out->key_reuse) {
		payq_sqlbuf_str(&a->p[P_AN_KIND], "key_reuse");
		payq_sqlbuf_str(&a->p[P_AN_ORDER], c->order_id);
		payq_sqlbuf_str(&a->p[P_AN_CMD], c->command_id);
		payq_sqlbuf_str(&a->p[P_AN_DETAIL],
				"same (order_id, command_id) with another payload_sha256");
		snprintf(num, sizeof(num), "%d", (int)it->partition);
		payq_sqlbuf_str(&a->p[P_AN_PART], num);
		snprintf(num, sizeof(num), "%" PRId64, it->offset);
		payq_sqlbuf_str(&a->p[P_AN_OFF], num);
	}
	if (out->new_payment) {
		payq_sqlbuf_str(&a->p[P_PAY_ORDER], c->order_id);
		payq_sqlbuf_str(&a->p[P_PAY_CMD], c->command_id);
		snprintf(num, sizeof(num), "%" PRId64, c->amount_minor);
		payq_sqlbuf_str(&a->p[P_PAY_AMOUNT], num);
		payq_sqlbuf_str(&a->p[P_PAY_CUR], c->currency);
		payq_sqlbuf_str(&a->p[P_PAY_PAYER], c->has_payer_id ? c->payer_id : NULL);
		payq_gateway_key(c->order_id, c->command_id, key, sizeof(key));
		payq_sqlbuf_str(&a->p[P_PAY_KEY], key);
	}
}

/* Dedup rows of new keys, and duplicate counters of the keys already recorded. */
static void key_rows(payq_apply_t *a, const payq_item_t *items)
{
	char num[32];

	for (size_t j = 0; j < a->batch.nkeys; j++) {
		const payq_key_state_t *k = &a->batch.keys[j];
		if (k->in_db) {
			if (!k->dups)
				continue;
			payq_sqlbuf_str(&a->p[P_DUP_ORDER], k->order_id);
			payq_sqlbuf_str(&a->p[P_DUP_CMD], k->command_id);
			snprintf(num, sizeof(num), "%d", k->dups);
			payq_sqlbuf_str(&a->p[P_DUP_N], num);
		} else {
			const payq_item_t *it = &items[k->first];
			const char *detail = a->out[k->first].detail;
			payq_sqlbuf_str(&a->p[P_PC_ORDER], k->order_id);
			payq_sqlbuf_str(&a->p[P_PC_CMD], k->command_id);
			payq_sqlbuf_str(&a->p[P_PC_TYPE], payq_cmd_type_name(it->cmd.type));
			payq_sqlbuf_str(&a->p[P_PC_HASH], k->hash_hex);
			payq_sqlbuf_str(&a->p[P_PC_OUT], payq_outcome_name(it->outcome));
			payq_sqlbuf_str(&a->p[P_PC_DETAIL], detail[0] ? detail : NULL);
			snprintf(num, sizeof(num), "%d", (int)it->partition);
			payq_sqlbuf_str(&a->p[P_PC_PART], num);
			snprintf(num, sizeof(num), "%" PRId64, it->offset);
			payq_sqlbuf_str(&a->p[P_PC_OFF], num);
			snprintf(num, sizeof(num), "%d", k->dups);
			payq_sqlbuf_str(&a->p[P_PC_DUPS], num);
		}
	}
}

/* One row write per changed order, whatever number of commands touched it. */
static void order_rows(payq_apply_t *a)
{
	char num[32];

	for (size_t j = 0; j < a->batch.norders; j++) {
		const payq_order_state_t *o = &a->batch.orders[j];
		if (!o->changed)
			continue;
		if (!o->in_db) {
			payq_sqlbuf_str(&a->p[P_ORD_ID], o->order_id);
			snprintf(num, sizeof(num), "%" PRId64, o->amount);
			payq_sqlbuf_str(&a->p[P_ORD_AMOUNT], num);
			payq_sqlbuf_str(&a->p[P_ORD_CUR], o->currency);
			payq_sqlbuf_str(&a->p[P_ORD_CUST], o->customer_id);
			payq_sqlbuf_str(&a->p[P_ORD_STATUS], payq_order_status_name(o->status));
			snprintf(num, sizeof(num), "%d", o->version);
			payq_sqlbuf_str(&a->p[P_ORD_VERSION], num);
			payq_sqlbuf_str(&a->p[P_ORD_PAID], o->paid_command_id);
		} else {
			payq_sqlbuf_str(&a->p[P_UPD_ID], o->order_id);
			snprintf(num, sizeof(num), "%d", o->db_version);
			payq_sqlbuf_str(&a->p[P_UPD_OLD], num);
			snprintf(num, sizeof(num), "%d", o->version);
			payq_sqlbuf_str(&a->p[P_UPD_NEW], num);
			payq_sqlbuf_str(&a->p[P_UPD_STATUS], payq_order_status_name(o->status));
			payq_sqlbuf_str(&a->p[P_UPD_PAID], o->paid_command_id);
		}
	}
}

/* Runs the outcome table (outcome.c) over the batch in offset order and fills the
 * write arrays with its effects. */
static void evaluate(payq_apply_t *a, payq_item_t *items, size_t n)
{
	a->batch.gateway = a->gateway;
	for (size_t i = 0; i < n; i++) {
		payq_item_t *it = &items[i];
		payq_outcome_out_t *out = &a->out[i];
		const payq_outcome_in_t in = {
			.cmd = &it->cmd,
			.hash_hex = a->hex[i],
			.topic = a->topic,
			.partition = it->partition,
			.offset = it->offset,
		};

		payq_outcome_eval(&a->batch, &in, (int)i, out);
		it->outcome = out->outcome;
		it->charge = out->charge;
		it->own_row = out->own_row;
		it->recorded = out->recorded;
		command_rows(a, it, out);
	}
	key_rows(a, items);
	order_rows(a);
}

static struct gen *gen_find(payq_apply_t *a, int32_t partition)
{
	for (size_t i = 0; i < a->ngens; i++)
		if (a->gens[i].partition == partition)
			return &a->gens[i];
	return NULL;
}

/* Remembers a partition's reset generation. Out of memory it stays unknown, and the
 * next progress write takes the row's current one. */
static void gen_set(payq_apply_t *a, int32_t partition, int64_t generation)
{
	struct gen *g = gen_find(a, partition);

	if (!g && !payq_grow((void **)&a->gens, &a->gens_cap,
			a->ngens < a->gens_cap ? a->gens_cap : 2 * a->gens_cap + 4,
			sizeof(*a->gens)))
		g = &a->gens[a->ngens++];
	if (!g)
		return;
	g->partition = partition;
	g->generation = generation;
}

/* Fills the progress parameters: partition, next offset, expected reset generation. */
static void progress_params(payq_apply_t *a, const payq_progress_t *progress, size_t n)
{
	char num[32];

	for (size_t i = 0; i < n; i++) {
		const struct gen *g = gen_find(a, progress[i].partition);
		snprintf(num, sizeof(num), "%d", (int)progress[i].partition);
		payq_sqlbuf_str(&a->p[P_PR_PART], num);
		snprintf(num, sizeof(num), "%" PRId64, progress[i].next_offset);
		payq_sqlbuf_str(&a->p[P_PR_NEXT], num);
		snprintf(num, sizeof(num), "%" PRId64, g ? g->generation : 0);
		payq_sqlbuf_str(&a->p[P_PR_GEN], g ? num : NULL);
	}
}

/* After a committed progress write: every partition that upsert_progress did not
 * return was refused, its row reset meanwhile; the others confirm their generation. */
static void note_progress(payq_apply_t *a, const payq_progress_t *progress, size_t n,
			  const PGresult *res)
{
	for (size_t i = 0; i < n; i++) {
		int r = 0, rows = res ? PQntuples(res) : 0;
		for (; r < rows; r++)
			if (strtol(PQgetvalue(res, r, 0), NULL, 10) == progress[i].partition)
				break;
		if (r < rows) {
			gen_set(a, progress[i].partition, strtoll(PQgetvalue(res, r, 1), NULL, 10));
		} else if (!a->stale) {
			a->stale = true;
			a->stale_partition = progress[i].partition;
		}
	}
}

bool payq_apply_progress_stale(const payq_apply_t *a, int32_t *partition)
{
	if (a->stale && partition)
		*partition = a->stale_partition;
	return a->stale;
}

/* Round trip 2: the writes and COMMIT. */
static payq_apply_status_t write_state(payq_apply_t *a, bool begin, bool settle_later,
				       const payq_progress_t *progress,
				       size_t nprogress, char sqlstate[6], char *errstr,
				       size_t errstr_size)
{
	const char *topic_param[] = {a->topic};
	const char *prog_params[] = {a->group, a->topic};
	const char *look_param[] = {a->first_look_s};
	PGresult *keep[16] = {NULL};
	payq_apply_status_t st;
	int nq = 0, bad = 0, prog_q = -1;

	/* Progress moves with the settle, after the charges. */
	if (settle_later)
		nprogress = 0;
	progress_params(a, progress, nprogress);

	if (!PQenterPipelineMode(a->conn))
		bad = 1;
	/* Round trip 1 opened the transaction unless the batch had no commands. */
	if (!bad && begin) {
		bad = !PQsendQueryParams(a->conn, "BEGIN", 0, NULL, NULL, NULL, NULL, 0);
		nq++;
	}
#define SEND(cond, ...)                                         \
	do {                                                    \
		if (!bad && (cond)) {                           \
			bad = send_prepared(a, __VA_ARGS__); \
			nq++;                                   \
		}                                               \
	} while (0)
	/* Orders first: payments reference them. */
	SEND(a->p[P_ORD_ID].count, "ins_orders", NULL, 0, P_ORD_ID, 7);
	SEND(a->p[P_UPD_ID].count, "upd_orders", NULL, 0, P_UPD_ID, 5);
	SEND(a->p[P_PAY_ORDER].count && !a->gateway, "ins_payments", NULL, 0, P_PAY_ORDER, 5);
	SEND(a->p[P_PAY_ORDER].count && a->gateway, "ins_payments_gw", look_param, 1, P_PAY_ORDER,
	     6);
	SEND(a->p[P_PC_ORDER].count, "ins_processed", topic_param, 1, P_PC_ORDER, 9);
	SEND(a->p[P_DUP_ORDER].count, "upd_dups", NULL, 0, P_DUP_ORDER, 3);
	SEND(a->p[P_AN_KIND].count, "ins_anomalies", topic_param, 1, P_AN_KIND, 6);
	if (nprogress)
		prog_q = nq;
	SEND(nprogress, "upsert_progress", prog_params, 2, P_PR_PART, 3);
#undef SEND
	if (!bad) {
		payq_crash_point("before_db_commit");
		payq_stall_point("before_db_commit");
		bad = !PQsendQueryParams(a->conn, "COMMIT", 0, NULL, NULL, NULL, NULL, 0) ||
		      !PQpipelineSync(a->conn);
		nq++;
	}
	if (bad) {
		payq_err(errstr, errstr_size, "sending: %s", PQerrorMessage(a->conn));
		errstr[strcspn(errstr, "\n")] = '\0';
		a->healthy = false;
		return PAYQ_APPLY_TRANSIENT;
	}
	st = pipeline_finish(a, nq, keep, sqlstate, errstr, errstr_size);
	if (st == PAYQ_APPLY_OK && prog_q >= 0)
		note_progress(a, progress, nprogress, keep[prog_q]);
	for (size_t i = 0; i < PAYQ_ARRAY_SIZE(keep); i++)
		PQclear(keep[i]);
	return st;
}

payq_apply_status_t payq_apply_batch(payq_apply_t *a, payq_item_t *items, size_t n,
				     const payq_progress_t *progress, size_t nprogress,
				     char sqlstate[6], char *errstr, size_t errstr_size)
{
	PGresult *locked = NULL, *dedup = NULL;
	payq_apply_status_t st;

	sqlstate[0] = '\0';
	errstr[0] = '\0';
	if (!payq_apply_connected(a)) {
		payq_err(errstr, errstr_size, "not connected");
		return PAYQ_APPLY_TRANSIENT;
	}
	if (prepare_scratch(a, n ? n : 1)) {
		payq_err(errstr, errstr_size, "out of memory");
		return PAYQ_APPLY_TRANSIENT;
	}

	if (n == 0) {
		st = write_state(a, true, false, progress, nprogress, sqlstate, errstr,
				 errstr_size);
	} else {
		st = read_state(a, items, n, &locked, &dedup, sqlstate, errstr, errstr_size);
		if (st == PAYQ_APPLY_OK && load_state(a, n, locked, dedup)) {
			st = PAYQ_APPLY_TRANSIENT;
			payq_err(errstr, errstr_size, "out of memory");
		}
		if (st == PAYQ_APPLY_OK) {
			bool settle_later = false;
			evaluate(a, items, n);
			for (size_t i = 0; i < n && !settle_later; i++)
				settle_later = items[i].charge;
			st = write_state(a, false, settle_later, progress, nprogress, sqlstate,
					 errstr, errstr_size);
		}
	}
	/* The strings in the write arrays may point into these results. */
	PQclear(locked);
	PQclear(dedup);
	if (st != PAYQ_APPLY_OK) {
		rollback(a);
#ifndef PAYQ_MUTATION_CHARGE_POISON
		/* Nothing of this evaluation is recorded, so nothing of it may be charged: a
		 * poison pay isolated by splitting ends on a rolled-back evaluation. */
		for (size_t i = 0; i < n; i++)
			items[i].charge = false;
#endif
	}
	return st;
}

void payq_apply_set_gateway(payq_apply_t *a, int64_t first_look_ms)
{
	a->gateway = true;
	snprintf(a->first_look_s, sizeof(a->first_look_s), "%.3f", (double)first_look_ms / 1000.0);
}

/* payments.status for what the channel said; not-found never gets here. */
static const char *settled_status(payq_charge_status_t s)
{
	return s == PAYQ_CHARGE_SUCCEEDED ? "succeeded" :
	       s == PAYQ_CHARGE_DECLINED  ? "failed" : "unknown";
}

payq_apply_status_t payq_apply_settle(payq_apply_t *a, const payq_charge_t *c, size_t n,
				      const payq_progress_t *progress, size_t nprogress,
				      char sqlstate[6], char *errstr, size_t errstr_size)
{
	const char *look_param[] = {a->first_look_s};
	const char *prog_params[] = {a->group, a->topic};
	PGresult *keep[4] = {NULL, NULL, NULL, NULL};
	payq_apply_status_t st;
	int nq = 3;

	sqlstate[0] = '\0';
	errstr[0] = '\0';
	if (!payq_apply_connected(a)) {
		payq_err(errstr, errstr_size, "not connected");
		return PAYQ_APPLY_TRANSIENT;
	}
	if (prepare_scratch(a, 1)) {
		payq_err(errstr, errstr_size, "out of memory");
		return PAYQ_APPLY_TRANSIENT;
	}
	for (size_t i = 0; i < n; i++) {
		payq_sqlbuf_str(&a->p[P_SET_ORDER], c[i].order_id);
		payq_sqlbuf_str(&a->p[P_SET_CMD], c[i].command_id);
		payq_sqlbuf_str(&a->p[P_SET_STATUS], settled_status(c[i].status));
		payq_sqlbuf_str(&a->p[P_SET_CHARGE], c[i].charge_id[0] ? c[i].charge_id : NULL);
		payq_sqlbuf_str(&a->p[P_SET_DECLINE],
				c[i].decline_code[0] ? c[i].decline_code : NULL);
		payq_sqlbuf_str(&a->p[P_SET_DETAIL], c[i].detail);
	}
	progress_params(a, progress, nprogress);
	if (!PQenterPipelineMode(a->conn) ||
	    !PQsendQueryParams(a->conn, "BEGIN", 0, NULL, NULL, NULL, NULL, 0) ||
	    send_prepared(a, "settle", look_param, 1, P_SET_ORDER, 6) ||
	    (nprogress &&
	     (nq++, send_prepared(a, "upsert_progress", prog_params, 2, P_PR_PART, 3))) ||
	    !PQsendQueryParams(a->conn, "COMMIT", 0, NULL, NULL, NULL, NULL, 0) ||
	    !PQpipelineSync(a->conn)) {
		payq_err(errstr, errstr_size, "sending: %s", PQerrorMessage(a->conn));
		errstr[strcspn(errstr, "\n")] = '\0';
		a->healthy = false;
		rollback(a);
		return PAYQ_APPLY_TRANSIENT;
	}
	st = pipeline_finish(a, nq, keep, sqlstate, errstr, errstr_size);
	if (st == PAYQ_APPLY_OK && keep[1] && PQntuples(keep[1]) == 1 &&
	    strcmp(PQgetvalue(keep[1], 0, 1), PQgetvalue(keep[1], 0, 2)))
		/* A succeeded payment whose order was not unpaid: the outcome table should
		 * have made that impossible. The money moved; say so loudly. */
		log_error("settle: %s succeeded payments but %s orders marked paid",
			  PQgetvalue(keep[1], 0, 1), PQgetvalue(keep[1], 0, 2));
	if (st == PAYQ_APPLY_OK && nprogress)
		note_progress(a, progress, nprogress, keep[2]);
	for (int i = 0; i < 4; i++)
		PQclear(keep[i]);
	if (st != PAYQ_APPLY_OK)
		rollback(a);
	return st;
}

payq_progress_read_t payq_apply_read_progress(payq_apply_t *a, int32_t partition,
					      int64_t *next)
{
	char pbuf[16];
	const char *params[3] = {a->group, a->topic, pbuf};
	PGresult *res;
	payq_progress_read_t found = PAYQ_PROGRESS_ERROR;

	*next = -1;
	if (!payq_apply_connected(a))
		return PAYQ_PROGRESS_ERROR;
	snprintf(pbuf, sizeof(pbuf), "%d", (int)partition);
	res = payq_pg_exec_prepared(a->conn, "read_progress", 3, params, NULL, NULL, 0);
	if (PQresultStatus(res) == PGRES_TUPLES_OK) {
		found = PQntuples(res) ? PAYQ_PROGRESS_FOUND : PAYQ_PROGRESS_NONE;
		if (found == PAYQ_PROGRESS_FOUND)
			*next = strtoll(PQgetvalue(res, 0, 0), NULL, 10);
		/* The generation this assignment works under; no row yet is generation 0. */
		gen_set(a, partition,
			PQntuples(res) ? strtoll(PQgetvalue(res, 0, 1), NULL, 10) : 0);
	} else
		a->healthy = PQstatus(a->conn) == CONNECTION_OK;
	PQclear(res);
	return found;
}

int payq_apply_read_horizon(payq_apply_t *a, int64_t *horizon_ms)
{
	PGresult *res;
	int ret = -1;

	*horizon_ms = 0;
	if (!payq_apply_connected(a))
		return -1;
	res = PQexecPrepared(a->conn, "read_horizon", 0, NULL, NULL, NULL, 0);
	if (PQresultStatus(res) == PGRES_TUPLES_OK) {
		ret = 0;
		if (PQntuples(res) == 1)
			*horizon_ms = strtoll(PQgetvalue(res, 0, 0), NULL, 10);
	} else {
		a->healthy = PQstatus(a->conn) == CONNECTION_OK;
	}
	PQclear(res);
	return ret;
}

int payq_apply_anomaly(payq_apply_t *a, const char *kind, int32_t partition, int64_t offset,
		       const char *detail)
{
	char pbuf[16], obuf[32];
	const char *params[5] = {kind, detail, a->topic, pbuf, obuf};
	PGresult *res;
	int ret;

	if (!payq_apply_connected(a))
		return -1;
	snprintf(pbuf, sizeof(pbuf), "%d", (int)partition);
	snprintf(obuf, sizeof(obuf), "%" PRId64, offset);
	res = payq_pg_exec_prepared(a->conn, "ins_anomaly", 5, params, NULL, NULL, 0);
	ret = PQresultStatus(res) == PGRES_COMMAND_OK ? 0 : -1;
	PQclear(res);
	return ret;
}

int payq_apply_read_keys(payq_apply_t *a, payq_charge_t *c, size_t n, int64_t retention_ms)
{
	char secs[32];
	const char *params[3];
	PGresult *res;
	int ret = 0;

	for (size_t i = 0; i < n; i++) {
		c[i].key[0] = '\0';
		c[i].past_retention = false;
	}
	if (!n)
		return 0;
	if (!payq_apply_connected(a) || prepare_scratch(a, 1))
		return -1;
	for (size_t i = 0; i < n; i++) {
		payq_sqlbuf_str(&a->p[P_SET_ORDER], c[i].order_id);
		payq_sqlbuf_str(&a->p[P_SET_CMD], c[i].command_id);
	}
	snprintf(secs, sizeof(secs), "%.3f", (double)retention_ms / 1000.0);
	params[0] = payq_sqlbuf_array(&a->p[P_SET_ORDER]);
	params[1] = payq_sqlbuf_array(&a->p[P_SET_CMD]);
	params[2] = secs;
	if (!params[0] || !params[1])
		return -1;
	res = PQexecPrepared(a->conn, "read_keys", 3, params, NULL, NULL, 0);
	if (PQresultStatus(res) != PGRES_TUPLES_OK) {
		a->healthy = PQstatus(a->conn) == CONNECTION_OK;
		ret = -1;
	}
	for (int r = 0; !ret && r < PQntuples(res); r++) {
		int64_t i = strtoll(PQgetvalue(res, r, 0), NULL, 10) - 1;
		if (i < 0 || (size_t)i >= n)
			continue;
		snprintf(c[i].key, sizeof(c[i].key), "%s", PQgetvalue(res, r, 1));
		c[i].past_retention = PQgetvalue(res, r, 2)[0] == 't';
	}
	PQclear(res);
#ifdef PAYQ_MUTATION_CHARGE_POISON
	/* Deliberately broken build: a charge without a recorded payment still gets a key,
	 * built from its IDs, so the rolled-back pay it was for is charged. */
	for (size_t i = 0; !ret && i < n; i++)
		if (!c[i].key[0])
			payq_gateway_key(c[i].order_id, c[i].command_id, c[i].key,
					 sizeof(c[i].key));
#endif
	return ret;
}

int payq_apply_payment_anomaly(payq_apply_t *a, const char *kind, const char *order_id,
			       const char *command_id, const char *detail)
{
	const char *params[4] = {kind, order_id, command_id, detail};
	char labels[96];
	PGresult *res;
	int ret = -1;

	if (!payq_apply_connected(a))
		return -1;
	res = PQexecPrepared(a->conn, "ins_payment_anomaly", 4, params, NULL, NULL, 0);
	if (PQresultStatus(res) == PGRES_TUPLES_OK) {
		ret = PQntuples(res);
		if (ret) {
			snprintf(labels, sizeof(labels), "kind=\"%s\"", kind);
			payq_metrics_add("payq_anomalies_total", labels, 1);
		}
	} else {
		a->healthy = PQstatus(a->conn) == CONNECTION_OK;
	}
	PQclear(res);
	return ret;
}

/* The database refused to record what the channel said for c: record it unknown with
 * the refusal instead (text we wrote, valid UTF-8), for a person and the reconciler. */
static payq_apply_status_t settle_refused(payq_apply_t *a, payq_charge_t *c,
					  const char *state, const char *why, char sqlstate[6],
					  char *errstr, size_t errstr_size)
{
	char clean[120];
	payq_apply_status_t st;

	payq_utf8_clean(clean, sizeof(clean), why, strlen(why));
	log_error("settle_refused: order %s command %s: the database refused to record \"%s\" "
		  "(SQLSTATE %s: %s); recording the payment unknown", c->order_id, c->command_id,
		  payq_charge_status_name(c->status), state, clean);
	c->status = PAYQ_CHARGE_UNKNOWN;
	c->charge_id[0] = c->decline_code[0] = '\0';
	snprintf(c->detail, sizeof(c->detail), "settle refused by the database (SQLSTATE %s): %s",
		 state, clean);
	st = payq_apply_settle(a, c, 1, NULL, 0, sqlstate, errstr, errstr_size);
	if (st == PAYQ_APPLY_OK && payq_apply_payment_anomaly(a, "settle_refused", c->order_id,
							      c->command_id, c->detail) < 0)
		return PAYQ_APPLY_TRANSIENT;
	return st;
}

payq_apply_status_t payq_apply_settle_each(payq_apply_t *a, payq_charge_t *c, size_t n,
					   char sqlstate[6], char *errstr, size_t errstr_size)
{
	char state[6];

	for (size_t i = 0; i < n; i++) {
		payq_apply_status_t st = payq_apply_settle(a, &c[i], 1, NULL, 0, sqlstate, errstr,
							   errstr_size);
		if (st == PAYQ_APPLY_PERMANENT) {
			snprintf(state, sizeof(state), "%s", sqlstate);
			st = settle_refused(a, &c[i], state, errstr, sqlstate, errstr, errstr_size);
			if (st == PAYQ_APPLY_PERMANENT) {
				/* Not even "unknown" could be written: the payment stays as it
				 * was (pending or unknown), and the reconciler finds it. */
				log_error("settle_refused: order %s command %s stays as it was: %s",
					  c[i].order_id, c[i].command_id, errstr);
				continue;
			}
		}
		if (st != PAYQ_APPLY_OK)
			return st;
	}
	return PAYQ_APPLY_OK;
}
