/* apply.c - applies a batch of commands to PostgreSQL in one transaction. */
#include "apply_internal.h"

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
 *      order into one row write. Then set-based writes over arrays (new orders, version-checked
 * order updates, payments, dedup rows, duplicate counters, anomalies, progress) and COMMIT.
 *
 * The fast path (apply_async.c) splits round trip 1 after a batch of duplicates only: the
 * dedup read alone, then the lock of just the orders with a command it did not find (a
 * duplicate reads and writes nothing of its order). The lock still comes after the dedup
 * read, in a later statement, so the rule above holds.
 *
 * The unique partial index on payments still refuses a second live payment, whatever
 * this code does.
 *
 * Gateway mode changes only pay: the payment is written pending, the order stays unpaid
 * and the caller charges the channel after COMMIT, then settles (payq_apply_settle()).
 * consumer_progress then moves in the settling transaction, not in this one, so a
 * crash before the settle leaves the pay to be redelivered and resumed.
 */
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
	if (payq_apply_async_busy(a))
		payq_apply_async_abandon(a);
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
	case PAYQ_SCHEMA_OK: break;
	case PAYQ_SCHEMA_TOO_OLD: payq_apply_disconnect(a); return PAYQ_CONNECT_FATAL;
	case PAYQ_SCHEMA_UNREADABLE: payq_apply_disconnect(a); return PAYQ_CONNECT_RETRY;
	}
	/* A generic plan frozen while the tables were small would scan them whole for
	 * ever after; custom plans follow the tables' real size. Planning is cheap
	 * next to a round trip. JIT never pays for these short statements, and on tables
	 * never analyzed (a new deployment, until autoanalyze) it compiled read_dedup for
	 * 50-110 ms on each call of a 1 ms query: 4.9x to 6.2x fewer batches per second
	 * (tests/bench/sql_variants/README.md). */
	if (payq_pg_exec(a->conn, "SET plan_cache_mode = force_custom_plan", errstr, errstr_size) ||
	    payq_pg_exec(a->conn, "SET jit = off", errstr, errstr_size)) {
		payq_apply_disconnect(a);
		return PAYQ_CONNECT_RETRY;
	}
	for (size_t i = 0; i < apply_nstatements; i++) {
		PGresult *res = payq_pg_prepare(a->conn, apply_statements[i].name,
						apply_statements[i].sql, 0, NULL);
		if (PQresultStatus(res) != PGRES_COMMAND_OK) {
			payq_err(errstr, errstr_size, "preparing %s: %s", apply_statements[i].name,
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
int apply_send_prepared(payq_apply_t *a, const char *name, const char *const *fixed, int nfixed,
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

bool apply_pipe_take(payq_apply_t *a, apply_pipe_t *p, PGresult *r)
{
	ExecStatusType es;

	if (!r) {
		if (PQstatus(a->conn) != CONNECTION_OK || ++p->nulls > p->nq + 1) {
			if (p->st == PAYQ_APPLY_OK) {
				p->st = PAYQ_APPLY_TRANSIENT;
				payq_err(p->errstr, p->errstr_size, "%s", PQerrorMessage(a->conn));
			}
			return true;
		}
		p->q++;
		return false;
	}
	es = PQresultStatus(r);
	if (es == PGRES_PIPELINE_SYNC) {
		PQclear(r);
		return true;
	}
	if (es == PGRES_FATAL_ERROR && p->st == PAYQ_APPLY_OK) {
		snprintf(p->sqlstate, 6, "%s", payq_pg_sqlstate(r));
		payq_err(p->errstr, p->errstr_size, "%s", PQresultErrorMessage(r));
		/* 23505 here means another worker won a race for the same key; the
		 * retry sees its row. The caller caps these retries. */
		p->st = payq_pg_transient(a->conn, r) || !strcmp(p->sqlstate, "23505")
				? PAYQ_APPLY_TRANSIENT
				: PAYQ_APPLY_PERMANENT;
#ifndef PAYQ_MUTATION_READONLY_KEEP
		/* 25006: this server is a standby, or a primary fenced read-only
		 * during a failover. Retrying here would never succeed: drop the
		 * connection, so that the reconnect (multi-host, read-write) finds
		 * the primary. (The mutant keeps it and stalls.) */
		if (!strcmp(p->sqlstate, "25006"))
			a->healthy = false;
#endif
	}
	if (p->keep && p->q < p->nq && es == PGRES_TUPLES_OK && !p->keep[p->q]) {
		p->keep[p->q] = r;
		return false;
	}
	PQclear(r);
	return false;
}

payq_apply_status_t apply_pipe_end(payq_apply_t *a, apply_pipe_t *p)
{
	if (p->errstr_size && p->errstr[0])
		p->errstr[strcspn(p->errstr, "\n")] = '\0';
	if (PQpipelineStatus(a->conn) != PQ_PIPELINE_OFF && !PQexitPipelineMode(a->conn) &&
	    p->st == PAYQ_APPLY_OK) {
		p->st = PAYQ_APPLY_TRANSIENT;
		payq_err(p->errstr, p->errstr_size, "leaving pipeline mode: %s",
			 PQerrorMessage(a->conn));
	}
	return p->st;
}

payq_apply_status_t apply_pipeline_finish(payq_apply_t *a, int nq, PGresult **keep,
					  char sqlstate[6], char *errstr, size_t errstr_size)
{
	apply_pipe_t p = {.nq = nq,
			  .keep = keep,
			  .sqlstate = sqlstate,
			  .errstr = errstr,
			  .errstr_size = errstr_size};

	while (!apply_pipe_take(a, &p, payq_pg_get_result(a->conn)))
		;
	return apply_pipe_end(a, &p);
}

void apply_rollback(payq_apply_t *a)
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

int apply_prepare_scratch(payq_apply_t *a, size_t n)
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

/* The batch's orders, each once, into the outcome table's state and P_LOCK_IDS; each
 * payload hash in hex. */
static void collect_orders(payq_apply_t *a, payq_item_t *items, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		const payq_command_t *c = &items[i].cmd;
		size_t before = a->batch.norders;

		payq_hex(c->payload_sha256, PAYQ_SHA256_LEN, a->hex[i]);
		/* prepare_scratch made room for one order per item. */
		payq_batch_order(&a->batch, c->order_id, true);
		if (a->batch.norders > before)
			payq_sqlbuf_str(&a->p[P_LOCK_IDS], c->order_id);
	}
}

/* Round trip 1, sent: BEGIN, read the dedup rows, then lock and read the orders (the
 * order of the two is explained on top). Returns 0, or -1 when sending failed. */
int apply_send_reads(payq_apply_t *a, payq_item_t *items, size_t n)
{
	collect_orders(a, items, n);
	if (!PQenterPipelineMode(a->conn) ||
	    !PQsendQueryParams(a->conn, "BEGIN", 0, NULL, NULL, NULL, NULL, 0) ||
#ifndef PAYQ_MUTATION_LOCK_BEFORE_DEDUP
	    apply_send_prepared(a, "read_dedup", NULL, 0, P_LOCK_IDS, 1) ||
	    apply_send_prepared(a, a->gateway ? "lock_orders_gw" : "lock_orders", NULL, 0,
				P_LOCK_IDS, 1) ||
#else
	    /* Deliberately broken build: the dedup read after the order lock, whose
	     * snapshot can miss the orders a zombie created (see the comment on top). */
	    apply_send_prepared(a, a->gateway ? "lock_orders_gw" : "lock_orders", NULL, 0,
				P_LOCK_IDS, 1) ||
	    apply_send_prepared(a, "read_dedup", NULL, 0, P_LOCK_IDS, 1) ||
#endif
	    !PQpipelineSync(a->conn))
		return -1;
	return 0;
}

/* The fast path's round trip 1 after a batch of duplicates only, sent: BEGIN and the
 * dedup read alone; the orders it must lock follow (apply_send_lock). Returns 0 or -1. */
int apply_send_dedup(payq_apply_t *a, payq_item_t *items, size_t n)
{
	collect_orders(a, items, n);
	if (!PQenterPipelineMode(a->conn) ||
	    !PQsendQueryParams(a->conn, "BEGIN", 0, NULL, NULL, NULL, NULL, 0) ||
	    apply_send_prepared(a, "read_dedup", NULL, 0, P_LOCK_IDS, 1) ||
	    !PQpipelineSync(a->conn))
		return -1;
	return 0;
}

/* Sent, in the transaction apply_send_dedup began: the lock of the orders in P_LOCK_IDS
 * (apply_unfound_orders). Its snapshot is later than the dedup read's, as on top.
 * Returns 0 or -1. */
int apply_send_lock(payq_apply_t *a)
{
	if (!PQenterPipelineMode(a->conn) ||
	    apply_send_prepared(a, "lock_orders", NULL, 0, P_LOCK_IDS, 1) ||
	    !PQpipelineSync(a->conn))
		return -1;
	return 0;
}

/* Round trip 1's results (keep[0..3)): sets the locked orders and the dedup rows. */
payq_apply_status_t apply_take_reads(PGresult **keep, PGresult **locked, PGresult **dedup,
				     payq_apply_status_t st, char *errstr, size_t errstr_size)
{
#ifndef PAYQ_MUTATION_LOCK_BEFORE_DEDUP
	*dedup = keep[1];
	*locked = keep[2];
#else
	*locked = keep[1];
	*dedup = keep[2];
#endif
	PQclear(keep[0]);
	keep[0] = NULL;
	if (st == PAYQ_APPLY_OK && (!*locked || !*dedup)) {
		st = PAYQ_APPLY_TRANSIENT;
		payq_err(errstr, errstr_size, "missing result in the read pipeline");
	}
	return st;
}

/* Round trip 1. */
static payq_apply_status_t read_state(payq_apply_t *a, payq_item_t *items, size_t n,
				      PGresult **locked, PGresult **dedup, char sqlstate[6],
				      char *errstr, size_t errstr_size)
{
	PGresult *keep[3] = {NULL, NULL, NULL};
	payq_apply_status_t st;

	if (apply_send_reads(a, items, n)) {
		payq_err(errstr, errstr_size, "sending: %s", PQerrorMessage(a->conn));
		errstr[strcspn(errstr, "\n")] = '\0';
		apply_pipeline_finish(a, 3, NULL, sqlstate, errstr + strlen(errstr), 0);
		return PAYQ_APPLY_TRANSIENT;
	}
	st = apply_pipeline_finish(a, 3, keep, sqlstate, errstr, errstr_size);
	return apply_take_reads(keep, locked, dedup, st, errstr, errstr_size);
}

/* Round trip 2, sent: the writes and COMMIT. Sets *nq to the number of statements and
 * *prog_q to the index of the progress write (-1: none). Returns 0, or -1 when sending
 * failed (the connection is then marked broken). */
int apply_send_writes(payq_apply_t *a, bool begin, bool settle_later,
		      const payq_progress_t *progress, size_t nprogress, int *nq_out, int *prog_q)
{
	const char *topic_param[] = {a->topic};
	const char *prog_params[] = {a->group, a->topic};
	const char *look_param[] = {a->first_look_s};
	int nq = 0, bad = 0;

	*prog_q = -1;
	/* Progress moves with the settle, after the charges. */
	if (settle_later)
		nprogress = 0;
	apply_progress_params(a, progress, nprogress);

	if (!PQenterPipelineMode(a->conn))
		bad = 1;
	/* Round trip 1 opened the transaction unless the batch had no commands. */
	if (!bad && begin) {
		bad = !PQsendQueryParams(a->conn, "BEGIN", 0, NULL, NULL, NULL, NULL, 0);
		nq++;
	}
#define SEND(cond, ...)                                            \
	do {                                                       \
		if (!bad && (cond)) {                              \
			bad = apply_send_prepared(a, __VA_ARGS__); \
			nq++;                                      \
		}                                                  \
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
		*prog_q = nq;
	SEND(nprogress, "upsert_progress", prog_params, 2, P_PR_PART, 3);
#undef SEND
	/* Tests: a transient error inside the transaction, so that its COMMIT answers
	 * ROLLBACK and the batch is retried (the early-send mutation check). */
	if (!bad && payq_fault_point("fail_before_commit")) {
		bad = !PQsendQueryParams(a->conn,
					 "DO $$BEGIN RAISE EXCEPTION 'payq fault "
					 "injection' USING ERRCODE = '40001'; END$$",
					 0, NULL, NULL, NULL, NULL, 0);
		nq++;
	}
	if (!bad) {
		payq_crash_point("before_db_commit");
		payq_stall_point("before_db_commit");
		bad = !PQsendQueryParams(a->conn, "COMMIT", 0, NULL, NULL, NULL, NULL, 0) ||
		      !PQpipelineSync(a->conn);
		nq++;
	}
	*nq_out = nq;
	if (bad) {
		a->healthy = false;
		return -1;
	}
	return 0;
}

/* Round trip 2. */
static payq_apply_status_t write_state(payq_apply_t *a, bool begin, bool settle_later,
				       const payq_progress_t *progress, size_t nprogress,
				       char sqlstate[6], char *errstr, size_t errstr_size)
{
	PGresult *keep[16] = {NULL};
	payq_apply_status_t st;
	int nq = 0, prog_q = -1;

	if (apply_send_writes(a, begin, settle_later, progress, nprogress, &nq, &prog_q)) {
		payq_err(errstr, errstr_size, "sending: %s", PQerrorMessage(a->conn));
		errstr[strcspn(errstr, "\n")] = '\0';
		return PAYQ_APPLY_TRANSIENT;
	}
	st = apply_pipeline_finish(a, nq, keep, sqlstate, errstr, errstr_size);
	if (st == PAYQ_APPLY_OK && prog_q >= 0)
		apply_note_progress(a, progress, nprogress, keep[prog_q]);
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
	if (apply_prepare_scratch(a, n ? n : 1)) {
		payq_err(errstr, errstr_size, "out of memory");
		return PAYQ_APPLY_TRANSIENT;
	}

	if (n == 0) {
		st = write_state(a, true, false, progress, nprogress, sqlstate, errstr,
				 errstr_size);
	} else {
		st = read_state(a, items, n, &locked, &dedup, sqlstate, errstr, errstr_size);
		if (st == PAYQ_APPLY_OK && apply_load_state(a, n, locked, dedup)) {
			st = PAYQ_APPLY_TRANSIENT;
			payq_err(errstr, errstr_size, "out of memory");
		}
		if (st == PAYQ_APPLY_OK) {
			bool settle_later = false;
			apply_evaluate(a, items, n);
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
		apply_rollback(a);
#ifndef PAYQ_MUTATION_CHARGE_POISON
		/* Nothing of this evaluation is recorded, so nothing of it may be charged: a
		 * poison pay isolated by splitting ends on a rolled-back evaluation. */
		for (size_t i = 0; i < n; i++)
			items[i].charge = false;
#endif
	}
	return st;
}
