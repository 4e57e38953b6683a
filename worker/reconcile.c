/* reconcile.c - gateway mode's reconciler (a payment janitor).
 *
 * A payment stays pending when the worker died between recording it and settling it,
 * and goes unknown when the channel did not answer clearly. Either way money may have
 * moved. Each pass takes the payments that are due, asks the channel about each
 * idempotency key (GET /charges/KEY), and:
 *   - succeeded or declined: settles it, as the worker would have (payq_apply_settle);
 *   - not found (the channel never saw the key): charges again with the same key, but
 *     only within PAYQ_GATEWAY_KEY_RETENTION of the payment: past it the channel may
 *     have charged and then forgotten the key, so a person decides (unresolved_payment,
 *     and `payq-worker reconcile --once` prints the commands that resolve it);
 *   - an answer about another key, amount or currency: settles nothing, raises
 *     charge_mismatch once;
 *   - anything else: looks again after the next wait of PAYQ_RECONCILE_SCHEDULE, and
 *     after PAYQ_RECONCILE_MAX_ATTEMPTS looks raises the anomaly unresolved_payment
 *     once (payq_payments_unresolved counts them). It never gives up: a person may fix
 *     the channel, and the next look settles the payment.
 * One payment the database refuses to settle is recorded unknown (settle_refused) and
 * the pass goes on with the next.
 * Every step is idempotent, so two reconcilers, or a reconciler and a worker resuming
 * the same pay, are safe; the leader lock only avoids doing the work twice.
 */
#include "reconcile_internal.h"

#include <inttypes.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <libpq-fe.h>

#include "apply.h"
#include "consume.h"
#include "gateway.h"
#include "log.h"
#include "metrics.h"
#include "migrate.h"
#include "pg.h"
#include "util.h"
#include "wmetrics.h"

/* Any constant shared by every reconciler of a database; "payq" in ASCII. */
#define LEADER_LOCK "SELECT pg_try_advisory_lock(1885434225)"

/* The due payments after a given payment_id ($2), oldest first; $1 true takes the not
 * yet due ones too. The partial index keeps this cheap: it only holds live ones. */
static const char sql_due[] =
	"SELECT payment_id, order_id, command_id, amount_minor, currency, payer_id, attempts,"
	" coalesce(idempotency_key, ''), created_at < now() - make_interval(secs => $3),"
	" to_char(created_at AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS\"Z\"')"
	" FROM payq.payments WHERE status IN ('pending', 'unknown')"
	" AND (coalesce(next_attempt_at, '-infinity') <= now() OR $1::boolean)"
	" AND payment_id > $2::bigint"
	" AND ($4::text IS NULL OR (order_id = $4 AND command_id = $5))"
	" ORDER BY payment_id LIMIT 200";

/* A look that settled nothing: count it and set the next one. */
static const char sql_again[] =
	"UPDATE payq.payments SET attempts = attempts + 1, updated_at = now(),"
	" next_attempt_at = now() + make_interval(secs => $3)"
	" WHERE order_id = $1 AND command_id = $2 AND status IN ('pending', 'unknown')"
	" RETURNING attempts";

static const char sql_unresolved[] =
	"SELECT count(*) FROM payq.payments WHERE status IN ('pending', 'unknown')"
	" AND attempts >= $1::int";

int payq_reconcile_parse_schedule(const char *text, int64_t **delays_ms, size_t *n, char *errstr,
				  size_t errstr_size)
{
	char *copy = strdup(text ? text : ""), *save = NULL, *tok;
	int64_t *d = NULL;
	size_t cnt = 0;

	*delays_ms = NULL;
	*n = 0;
	if (!copy)
		return payq_err(errstr, errstr_size, "out of memory");
	for (tok = strtok_r(copy, ",", &save); tok; tok = strtok_r(NULL, ",", &save)) {
		int64_t ms, *p = realloc(d, (cnt + 1) * sizeof(*d));
		if (!p) {
			free(d);
			free(copy);
			return payq_err(errstr, errstr_size, "out of memory");
		}
		d = p;
		if (payq_parse_duration_ms(tok, &ms) || ms < 0) {
			payq_err(errstr, errstr_size,
				 "reconcile-schedule (PAYQ_RECONCILE_SCHEDULE): \"%s\" is not a "
				 "duration such as 500ms, 30s, 5m, 1h or 1d",
				 tok);
			free(d);
			free(copy);
			return -1;
		}
		d[cnt++] = ms;
	}
	free(copy);
	if (!cnt) {
		free(d);
		return payq_err(errstr, errstr_size,
				"reconcile-schedule (PAYQ_RECONCILE_SCHEDULE) "
				"is empty; give waits such as 1m,5m,1h");
	}
	*delays_ms = d;
	*n = cnt;
	return 0;
}

void reconciler_free(payq_reconciler_t *r)
{
	if (!r)
		return;
	if (r->conn)
		PQfinish(r->conn);
	payq_apply_destroy(r->apply);
	payq_gateway_destroy(r->gw);
	free(r->delays);
	free(r);
}

/* The gateway's idle hook: a stopping reconciler abandons its requests at once (the
 * payments stay as they are, for the next look), so that shutdown keeps its deadline. */
static bool still_running(void *opaque, int wait_ms)
{
	payq_reconciler_t *r = opaque;

	(void)wait_ms;
	return !atomic_load(&r->stop);
}

payq_reconciler_t *reconciler_new(const payq_config_t *cfg, char *errstr, size_t errstr_size)
{
	payq_reconciler_t *r = calloc(1, sizeof(*r));

	if (!r) {
		payq_err(errstr, errstr_size, "out of memory");
		return NULL;
	}
	r->cfg = cfg;
	if (payq_reconcile_parse_schedule(cfg->reconcile_schedule, &r->delays, &r->ndelays, errstr,
					  errstr_size) ||
	    !(r->gw = payq_gateway_new(cfg, errstr, errstr_size))) {
		reconciler_free(r);
		return NULL;
	}
	r->apply = payq_apply_new(cfg->db, cfg->group, cfg->topic);
	if (!r->apply) {
		payq_err(errstr, errstr_size, "out of memory");
		reconciler_free(r);
		return NULL;
	}
	payq_apply_set_gateway(r->apply, r->delays[0]);
	payq_gateway_set_idle(r->gw, still_running, r);
	return r;
}

pass_result_t reconciler_ready(payq_reconciler_t *r, bool take_lock, char *errstr,
			       size_t errstr_size)
{
	PGresult *res;

	if (r->conn && PQstatus(r->conn) != CONNECTION_OK) {
		PQfinish(r->conn);
		r->conn = NULL;
	}
	if (!r->conn) {
		r->leader = false;
		r->conn = payq_pg_connect(r->cfg->db, "payq-reconciler", errstr, errstr_size);
		if (!r->conn)
			return PASS_ERROR;
		/* Checked once per connection: drop it unless the check passed, so the
		 * next attempt checks again (a failed read is not a passed check). */
		if (payq_migrate_check(r->conn, errstr, errstr_size) != PAYQ_SCHEMA_OK) {
			PQfinish(r->conn);
			r->conn = NULL;
			return PASS_ERROR;
		}
	}
	if (take_lock && !r->leader) {
		res = PQexec(r->conn, LEADER_LOCK);
		if (PQresultStatus(res) != PGRES_TUPLES_OK) {
			payq_err(errstr, errstr_size, "leader lock: %s", PQerrorMessage(r->conn));
			PQclear(res);
			return PASS_ERROR;
		}
		r->leader = PQgetvalue(res, 0, 0)[0] == 't';
		PQclear(res);
		if (!r->leader)
			return PASS_NOT_LEADER;
		log_info("reconciler: this worker leads (advisory lock taken)");
	}
	if (payq_apply_connect(r->apply, errstr, errstr_size))
		return PASS_ERROR;
	return PASS_DONE;
}

static int64_t delay_after(const payq_reconciler_t *r, int64_t attempts)
{
	size_t i = (size_t)attempts < r->ndelays ? (size_t)attempts : r->ndelays - 1;
	return r->delays[i];
}

/* Counts one more look at c and raises the anomaly when it reaches the limit. */
static int look_again(payq_reconciler_t *r, const payq_charge_t *c, int64_t attempts, tally_t *t,
		      char *errstr, size_t errstr_size)
{
	char secs[32];
	const char *params[3] = {c->order_id, c->command_id, secs};
	PGresult *res;
	int64_t now_attempts;

	snprintf(secs, sizeof(secs), "%.3f", (double)delay_after(r, attempts + 1) / 1000.0);
	res = PQexecParams(r->conn, sql_again, 3, NULL, params, NULL, NULL, 0);
	if (PQresultStatus(res) != PGRES_TUPLES_OK) {
		payq_err(errstr, errstr_size, "counting a look: %s", PQerrorMessage(r->conn));
		PQclear(res);
		return -1;
	}
	t->unresolved++;
	if (PQntuples(res) == 0) { /* settled meanwhile by someone else */
		PQclear(res);
		return 0;
	}
	now_attempts = strtoll(PQgetvalue(res, 0, 0), NULL, 10);
	PQclear(res);
	if (now_attempts >= r->cfg->reconcile_max_attempts &&
	    payq_apply_payment_anomaly(r->apply, "unresolved_payment", c->order_id, c->command_id,
				       c->detail) == 1) {
		payq_log_ctx_t ctx = {.partition = -1,
				      .offset = -1,
				      .command_id = c->command_id,
				      .order_id = c->order_id};
		payq_log(PAYQ_LOG_ERROR, &ctx,
			 "unresolved_payment: order %s command %s still unknown after %" PRId64
			 " looks: %s",
			 c->order_id, c->command_id, now_attempts, c->detail);
		t->raised++;
	}
	return 0;
}

/* A payment past the channel's key retention that the channel does not know: the
 * charge may have been made and its key forgotten, so no automatic charge again. A
 * person looks it up at the channel and says what happened. */
static void hold_for_person(payq_reconciler_t *r, payq_charge_t *c, const char *created, tally_t *t)
{
	snprintf(c->detail, sizeof(c->detail),
		 "gateway: no charge with key %.40s, and the payment "
		 "(%s) is older than PAYQ_GATEWAY_KEY_RETENTION: left for a person",
		 c->key, created);
	t->held++;
	if (payq_apply_payment_anomaly(r->apply, "unresolved_payment", c->order_id, c->command_id,
				       c->detail) == 1) {
		log_error("unresolved_payment: order %s command %s: %s", c->order_id, c->command_id,
			  c->detail);
		t->raised++;
	}
	if (r->report)
		printf("unresolved: order %s command %s, %" PRId64 " %s, key %s, recorded %s:\n"
		       "  the channel does not know the key, and the payment is older than the\n"
		       "  channel keeps keys (PAYQ_GATEWAY_KEY_RETENTION), so it may have been charged\n"
		       "  already. Look the key up at the channel, then run one of:\n"
		       "    payq-worker reconcile --order %s --command %s --mark-succeeded CHARGE_ID\n"
		       "    payq-worker reconcile --order %s --command %s --mark-failed\n"
		       "    payq-worker reconcile --order %s --command %s --charge-again\n",
		       c->order_id, c->command_id, c->amount_minor, c->currency, c->key, created,
		       c->order_id, c->command_id, c->order_id, c->command_id, c->order_id,
		       c->command_id);
}

/* Settles c[0..n); when the database refuses them together, one by one, so that one
 * payment it refuses (recorded unknown, settle_refused) does not hold up the others. */
static int settle(payq_reconciler_t *r, payq_charge_t *c, size_t n, char *errstr,
		  size_t errstr_size)
{
	char sqlstate[6];
	payq_apply_status_t st;

	if (!n)
		return 0;
	st = payq_apply_settle(r->apply, c, n, NULL, 0, sqlstate, errstr, errstr_size);
	if (st == PAYQ_APPLY_PERMANENT)
		st = payq_apply_settle_each(r->apply, c, n, sqlstate, errstr, errstr_size);
	if (st != PAYQ_APPLY_OK) {
		if (!payq_apply_connected(r->apply))
			payq_apply_disconnect(r->apply);
		return -1;
	}
	return 0;
}

/* One page of due payments. Returns the rows looked at, or -1. *last moves on. */
static int page(payq_reconciler_t *r, bool all, int64_t *last, tally_t *t, char *errstr,
		size_t errstr_size)
{
	char lastbuf[32], retention[32];
	const char *params[5] = {all ? "true" : "false", lastbuf, retention, r->only_order,
				 r->only_command};
	PGresult *res;
	size_t n, nagain = 0, ndone = 0;
	int64_t attempts[PAGE];

	snprintf(lastbuf, sizeof(lastbuf), "%" PRId64, *last);
	snprintf(retention, sizeof(retention), "%.3f",
		 (double)payq_gateway_key_retention_ms(r->gw) / 1000.0);
	res = PQexecParams(r->conn, sql_due, 5, NULL, params, NULL, NULL, 0);
	if (PQresultStatus(res) != PGRES_TUPLES_OK) {
		payq_err(errstr, errstr_size, "reading due payments: %s", PQerrorMessage(r->conn));
		PQclear(res);
		return -1;
	}
	n = (size_t)PQntuples(res);
	for (size_t i = 0; i < n; i++) {
		payq_charge_t *c = &r->c[i];
		memset(c, 0, sizeof(*c));
		*last = strtoll(PQgetvalue(res, (int)i, 0), NULL, 10);
		c->order_id = PQgetvalue(res, (int)i, 1);
		c->command_id = PQgetvalue(res, (int)i, 2);
		c->amount_minor = strtoll(PQgetvalue(res, (int)i, 3), NULL, 10);
		c->currency = PQgetvalue(res, (int)i, 4);
		c->payer_id = PQgetisnull(res, (int)i, 5) ? NULL : PQgetvalue(res, (int)i, 5);
		c->retry = true;
		attempts[i] = strtoll(PQgetvalue(res, (int)i, 6), NULL, 10);
		snprintf(c->key, sizeof(c->key), "%s", PQgetvalue(res, (int)i, 7));
		c->past_retention = PQgetvalue(res, (int)i, 8)[0] == 't';
	}
	payq_gateway_query(r->gw, r->c, n);

	/* The channel never saw these keys: the charge can be made now, with the same key;
	 * unless the key may have been forgotten since (past the retention). */
	for (size_t i = 0; i < n; i++) {
		if (r->c[i].status != PAYQ_CHARGE_NOT_FOUND)
			continue;
		if (r->c[i].past_retention) {
			r->c[i].status = PAYQ_CHARGE_UNKNOWN;
			hold_for_person(r, &r->c[i], PQgetvalue(res, (int)i, 9), t);
			continue;
		}
		r->again[nagain++] = r->c[i];
	}
	payq_gateway_charge(r->gw, r->again, nagain);
	t->recharged += (int64_t)nagain;
	for (size_t i = 0, j = 0; i < n && j < nagain; i++)
		if (r->c[i].status == PAYQ_CHARGE_NOT_FOUND)
			r->c[i] = r->again[j++];

	for (size_t i = 0; i < n; i++) {
		payq_charge_t *c = &r->c[i];
		t->looked++;
		if (c->status == PAYQ_CHARGE_SUCCEEDED || c->status == PAYQ_CHARGE_DECLINED) {
			t->succeeded += c->status == PAYQ_CHARGE_SUCCEEDED;
			t->declined += c->status == PAYQ_CHARGE_DECLINED;
			r->done[ndone++] = *c;
			payq_log_ctx_t ctx = {.partition = -1,
					      .offset = -1,
					      .command_id = c->command_id,
					      .order_id = c->order_id};
			payq_log(PAYQ_LOG_INFO, &ctx, "reconciler: order %s command %s %s",
				 c->order_id, c->command_id, c->detail);
			continue;
		}
		if (c->status == PAYQ_CHARGE_MISMATCH) {
			t->mismatched++;
			payq_apply_payment_anomaly(r->apply, "charge_mismatch", c->order_id,
						   c->command_id, c->detail);
		}
		if (look_again(r, c, attempts[i], t, errstr, errstr_size)) {
			PQclear(res);
			return -1;
		}
	}
	if (settle(r, r->done, ndone, errstr, errstr_size)) {
		PQclear(res);
		return -1;
	}
	PQclear(res);
	return (int)n;
}

static void publish_unresolved(payq_reconciler_t *r)
{
	char maxbuf[32];
	const char *params[1] = {maxbuf};
	PGresult *res;

	snprintf(maxbuf, sizeof(maxbuf), "%" PRId64, r->cfg->reconcile_max_attempts);
	res = PQexecParams(r->conn, sql_unresolved, 1, NULL, params, NULL, NULL, 0);
	if (PQresultStatus(res) == PGRES_TUPLES_OK)
		payq_metrics_set("payq_payments_unresolved", NULL,
				 strtod(PQgetvalue(res, 0, 0), NULL));
	PQclear(res);
}

pass_result_t reconciler_pass(payq_reconciler_t *r, bool take_lock, bool all, tally_t *t,
			      char *errstr, size_t errstr_size)
{
	int64_t last = 0;
	pass_result_t rc = reconciler_ready(r, take_lock, errstr, errstr_size);
	int got;

	if (rc != PASS_DONE)
		return rc;
	memset(t, 0, sizeof(*t));
	do {
		got = page(r, all, &last, t, errstr, errstr_size);
		if (got < 0)
			return PASS_ERROR;
	} while (got == PAGE && !atomic_load(&r->stop));
	payq_metrics_add("payq_reconciled_total", "result=\"succeeded\"", (double)t->succeeded);
	payq_metrics_add("payq_reconciled_total", "result=\"declined\"", (double)t->declined);
	payq_metrics_add("payq_reconciled_total", "result=\"unresolved\"", (double)t->unresolved);
	publish_unresolved(r);
	return PASS_DONE;
}

static void nap(payq_reconciler_t *r, int64_t ms)
{
	for (int64_t end = payq_now_ms() + ms; payq_now_ms() < end && !atomic_load(&r->stop);)
		usleep(20000);
}

static void *thread_main(void *opaque)
{
	payq_reconciler_t *r = opaque;
	char errstr[512];
	tally_t t;

	while (!atomic_load(&r->stop)) {
		pass_result_t rc = reconciler_pass(r, true, false, &t, errstr, sizeof(errstr));

		if (rc == PASS_ERROR) {
			log_warn("reconciler: %s", errstr);
			if (r->conn && PQstatus(r->conn) != CONNECTION_OK) {
				PQfinish(r->conn);
				r->conn = NULL;
			}
		} else if (rc == PASS_DONE && t.looked) {
			log_info("reconciler: looked at %" PRId64 ": %" PRId64
				 " succeeded, %" PRId64 " declined, %" PRId64
				 " charged again, %" PRId64 " unresolved",
				 t.looked, t.succeeded, t.declined, t.recharged, t.unresolved);
		}
		nap(r, r->cfg->reconcile_interval_ms);
	}
	return NULL;
}

payq_reconciler_t *payq_reconciler_start(const payq_config_t *cfg, char *errstr, size_t errstr_size)
{
	payq_reconciler_t *r = reconciler_new(cfg, errstr, errstr_size);

	if (!r)
		return NULL;
	if (pthread_create(&r->thread, NULL, thread_main, r)) {
		payq_err(errstr, errstr_size, "starting the reconciler thread failed");
		reconciler_free(r);
		return NULL;
	}
	r->threaded = true;
	return r;
}

void payq_reconciler_request_stop(payq_reconciler_t *r)
{
	if (r)
		atomic_store(&r->stop, true);
}

void payq_reconciler_stop(payq_reconciler_t *r)
{
	if (!r)
		return;
	atomic_store(&r->stop, true);
	if (r->threaded)
		pthread_join(r->thread, NULL);
	reconciler_free(r);
}
