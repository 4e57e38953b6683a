/* charge.c - gateway mode's steps 2 and 3 for a committed batch: read the stored
 * idempotency keys, charge the batch's pending payments through the channel, then settle
 * the answers with the batch's progress (worker_charge_and_settle; batch.c calls it
 * between the apply and the store of the offsets). */
#include "worker.h"

#include <inttypes.h>
#include <stdio.h>
#include <string.h>

#include "crash.h"
#include "log.h"

/* Reads the idempotency key stored with each charge's payment, retrying database
 * errors. STEP_ABANDON: the batch must be abandoned. */
static step_t read_keys(lane_t *l, size_t k)
{
	worker_t *w = l->w;
	char errstr[512];
	int attempt = 0;

	for (;;) {
		payq_connect_t rc = worker_connect(l, errstr, sizeof(errstr));

		if (rc == PAYQ_CONNECT_FATAL)
			return STEP_ABANDON;
		if (rc == PAYQ_CONNECT_OK &&
		    payq_apply_read_keys(l->apply, w->charges, k,
					 payq_gateway_key_retention_ms(w->gw)) == 0)
			return STEP_OK;
		if (rc == PAYQ_CONNECT_OK)
			snprintf(errstr, sizeof(errstr), "reading the idempotency keys failed");
		if (!worker_db_retry_wait(l, &attempt, "08000", "the idempotency keys", errstr))
			return STEP_ABANDON;
	}
}

/* Records the charges' results with progress. A permanent error (the database refuses
 * something the channel said) must not loop: each charge is then settled alone, and one
 * refused is recorded unknown with the error (settle_refused). */
static payq_apply_status_t settle_batch(lane_t *l, size_t k, const payq_progress_t *prog, size_t np,
					char sqlstate[6], char *errstr, size_t size)
{
	worker_t *w = l->w;
	payq_apply_status_t st =
		payq_apply_settle(l->apply, w->charges, k, prog, np, sqlstate, errstr, size);

	if (st != PAYQ_APPLY_PERMANENT)
		return st;
	log_error("settle: the database refused the batch's results (SQLSTATE %s): %s; settling "
		  "them one by one",
		  sqlstate, errstr);
	st = payq_apply_settle_each(l->apply, w->charges, k, sqlstate, errstr, size);
	if (st == PAYQ_APPLY_OK && np)
		st = payq_apply_settle(l->apply, NULL, 0, prog, np, sqlstate, errstr, size);
	/* Progress alone carries nothing from outside; a refusal of it is retried. */
	return st == PAYQ_APPLY_PERMANENT ? PAYQ_APPLY_TRANSIENT : st;
}

/* Fills w->charges with the batch's pending payments, and w->charge_item with the item
 * of each. Returns their count. */
static size_t build_charges(lane_t *l, size_t n)
{
	worker_t *w = l->w;
	size_t k = 0;

	for (size_t i = 0; i < n; i++) {
		const payq_item_t *it = &l->items[i];
		payq_charge_t *c = &w->charges[k];
		if (!it->charge)
			continue;
		memset(c, 0, sizeof(*c));
		/* The channel's request is a child span of the command's trace. */
		if (it->trace.valid &&
		    payq_trace_child(&it->trace, c->traceparent, sizeof(c->traceparent)) == 0)
			c->tracestate = it->trace.tracestate;
		c->order_id = it->cmd.order_id;
		c->command_id = it->cmd.command_id;
		c->amount_minor = it->cmd.amount_minor;
		c->currency = it->cmd.currency;
		c->payer_id = it->cmd.has_payer_id ? it->cmd.payer_id : NULL;
		c->retry = it->outcome == PAYQ_OUT_DUPLICATE;
		w->charge_item[k++] = i;
	}
	return k;
}

/* After the settle: logs unknown and mismatched charges, records charge_mismatch, and
 * sets the outcome (and the row's outcome, for metrics) of each charged item. */
static void record_charges(lane_t *l, size_t k)
{
	worker_t *w = l->w;
	for (size_t j = 0; j < k; j++) {
		const payq_charge_t *c = &w->charges[j];
		payq_item_t *it = &l->items[w->charge_item[j]];
		payq_log_ctx_t ctx = {.topic = w->cfg->topic,
				      .partition = it->partition,
				      .offset = it->offset,
				      .command_id = c->command_id,
				      .order_id = c->order_id,
				      .trace_id = worker_trace_id(it)};
		if (c->status == PAYQ_CHARGE_UNKNOWN || c->status == PAYQ_CHARGE_MISMATCH)
			payq_log(PAYQ_LOG_WARN, &ctx,
				 "payment of order %s unknown, left to the "
				 "reconciler: %s",
				 c->order_id, c->detail);
		if (c->status == PAYQ_CHARGE_MISMATCH &&
		    payq_apply_payment_anomaly(l->apply, "charge_mismatch", c->order_id,
					       c->command_id, c->detail) < 0)
			/* The reconciler's next look meets the same answer and raises it. */
			payq_log(PAYQ_LOG_WARN, &ctx, "recording charge_mismatch failed");
		/* A pay whose first COMMIT landed before its retry counts as its own row. */
		if (it->own_row && it->recorded == PAYQ_OUT_PENDING) {
			if (c->status == PAYQ_CHARGE_SUCCEEDED)
				it->recorded = PAYQ_OUT_APPLIED;
			else if (c->status == PAYQ_CHARGE_DECLINED)
				it->recorded = PAYQ_OUT_REJECTED_DECLINED;
		}
		if (it->outcome != PAYQ_OUT_PENDING)
			continue; /* a resumed redelivery counts as a duplicate */
		if (c->status == PAYQ_CHARGE_SUCCEEDED)
			it->outcome = PAYQ_OUT_APPLIED;
		else if (c->status == PAYQ_CHARGE_DECLINED)
			it->outcome = PAYQ_OUT_REJECTED_DECLINED;
	}
}

/* Gateway mode, steps 2 and 3: charges the batch's pending payments through the
 * channel, concurrently, with the idempotency keys stored with them, then records the
 * results and (when progress is given) the batch's consumer_progress in one
 * transaction, retrying that until it commits. The offsets are stored only after this.
 * STEP_ABANDON: the batch is abandoned; its pays are then still pending and resume,
 * with the same keys, on redelivery. */
step_t worker_charge_and_settle(lane_t *l, size_t n, const payq_progress_t *prog, size_t np)
{
	worker_t *w = l->w;
	char sqlstate[6], errstr[512];
	size_t k = build_charges(l, n);
	int attempt = 0;

	if (!k)
		return STEP_OK;
	/* A fatal error met while the batch was applied: charge nothing; the pays stay
	 * pending and resume, with the same keys, on redelivery. */
	if (w->fatal)
		return STEP_ABANDON;
	if (read_keys(l, k) != STEP_OK)
		return STEP_ABANDON;
	payq_crash_point("before_charge");
	payq_gateway_charge(w->gw, w->charges, k);
	payq_crash_point("after_charge");

	for (;;) {
		payq_connect_t rc = worker_connect(l, errstr, sizeof(errstr));

		if (rc == PAYQ_CONNECT_FATAL)
			return STEP_ABANDON;
		/* A new session may be a server that never saw the batch's pending payments:
		 * re-apply the batch there; the charges repeat with the same keys. */
		if (rc == PAYQ_CONNECT_OK && worker_resync_progress(l, true))
			return STEP_ABANDON;
		if (rc == PAYQ_CONNECT_OK &&
		    settle_batch(l, k, prog, np, sqlstate, errstr, sizeof(errstr)) == PAYQ_APPLY_OK)
			break;
		if (rc != PAYQ_CONNECT_OK)
			snprintf(sqlstate, sizeof(sqlstate), "08000");
		if (!worker_db_retry_wait(l, &attempt, sqlstate, "the gateway results", errstr))
			return STEP_ABANDON;
	}
	atomic_store(&w->db_ok, true);
	record_charges(l, k);
	return STEP_OK;
}
