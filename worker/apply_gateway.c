/* apply_gateway.c - gateway mode's database steps: the settle of the channel's
 * answers (one by one when the database refuses them together), the idempotency keys,
 * and anomalies about one payment. */
#include "apply_internal.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <libpq-fe.h>

#include "log.h"
#include "metrics.h"
#include "util.h"

void payq_apply_set_gateway(payq_apply_t *a, int64_t first_look_ms)
{
	a->gateway = true;
	snprintf(a->first_look_s, sizeof(a->first_look_s), "%.3f", (double)first_look_ms / 1000.0);
}

/* payments.status for what the channel said; not-found never gets here. */
static const char *settled_status(payq_charge_status_t s)
{
	return s == PAYQ_CHARGE_SUCCEEDED  ? "succeeded"
	       : s == PAYQ_CHARGE_DECLINED ? "failed"
					   : "unknown";
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
	if (apply_prepare_scratch(a, 1)) {
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
	apply_progress_params(a, progress, nprogress);
	if (!PQenterPipelineMode(a->conn) ||
	    !PQsendQueryParams(a->conn, "BEGIN", 0, NULL, NULL, NULL, NULL, 0) ||
	    apply_send_prepared(a, "settle", look_param, 1, P_SET_ORDER, 6) ||
	    (nprogress &&
	     (nq++, apply_send_prepared(a, "upsert_progress", prog_params, 2, P_PR_PART, 3))) ||
	    !PQsendQueryParams(a->conn, "COMMIT", 0, NULL, NULL, NULL, NULL, 0) ||
	    !PQpipelineSync(a->conn)) {
		payq_err(errstr, errstr_size, "sending: %s", PQerrorMessage(a->conn));
		errstr[strcspn(errstr, "\n")] = '\0';
		a->healthy = false;
		apply_rollback(a);
		return PAYQ_APPLY_TRANSIENT;
	}
	st = apply_pipeline_finish(a, nq, keep, sqlstate, errstr, errstr_size);
	if (st == PAYQ_APPLY_OK && keep[1] && PQntuples(keep[1]) == 1 &&
	    strcmp(PQgetvalue(keep[1], 0, 1), PQgetvalue(keep[1], 0, 2)))
		/* A succeeded payment whose order was not unpaid: the outcome table should
		 * have made that impossible. The money moved; say so loudly. */
		log_error("settle: %s succeeded payments but %s orders marked paid",
			  PQgetvalue(keep[1], 0, 1), PQgetvalue(keep[1], 0, 2));
	if (st == PAYQ_APPLY_OK && nprogress)
		apply_note_progress(a, progress, nprogress, keep[2]);
	for (int i = 0; i < 4; i++)
		PQclear(keep[i]);
	if (st != PAYQ_APPLY_OK)
		apply_rollback(a);
	return st;
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
	if (!payq_apply_connected(a) || apply_prepare_scratch(a, 1))
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
static payq_apply_status_t settle_refused(payq_apply_t *a, payq_charge_t *c, const char *state,
					  const char *why, char sqlstate[6], char *errstr,
					  size_t errstr_size)
{
	char clean[120];
	payq_apply_status_t st;

	payq_utf8_clean(clean, sizeof(clean), why, strlen(why));
	log_error("settle_refused: order %s command %s: the database refused to record \"%s\" "
		  "(SQLSTATE %s: %s); recording the payment unknown",
		  c->order_id, c->command_id, payq_charge_status_name(c->status), state, clean);
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
		payq_apply_status_t st =
			payq_apply_settle(a, &c[i], 1, NULL, 0, sqlstate, errstr, errstr_size);
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
