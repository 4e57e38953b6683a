/* batch.c - settles one polled batch, step by step: decode, dead-letter, apply (split
 * on poison), charge and settle (gateway mode, charge.c), store the offsets. */
#include "worker.h"

#include <inttypes.h>
#include <stdio.h>
#include <string.h>

#include "crash.h"
#include "log.h"
#include "metrics.h"
#include "util.h"

/* ---- applying a batch ---- */

static int64_t backoff_ms(int attempt, int64_t cap)
{
	int64_t base = 100;
	uint32_t r = 0;

	for (int i = 0; i < attempt && base < cap; i++)
		base *= 2;
	if (base > cap)
		base = cap;
	payq_random_bytes(&r, sizeof(r));
	/* Equal jitter: half fixed, half random, so retries of many pods spread out. */
	return base / 2 + (int64_t)(r % (uint32_t)(base / 2 + 1));
}

payq_connect_t worker_connect(lane_t *l, char *errstr, size_t errstr_size)
{
	worker_t *w = l->w;
	payq_connect_t rc = payq_apply_connect(l->apply, errstr, errstr_size);

	if (rc == PAYQ_CONNECT_FATAL) {
		log_error("%s", errstr);
		w->fatal = true;
	}
	return rc;
}

int64_t worker_db_retry_note(lane_t *l, int *attempt, const char *sqlstate, const char *what,
			     const char *errstr)
{
	worker_t *w = l->w;
	char labels[64];
	const char *state = sqlstate[0] ? sqlstate : "none";
	int64_t wait = backoff_ms((*attempt)++, w->cfg->retry_max_ms);

	snprintf(labels, sizeof(labels), "sqlstate=\"%s\"", state);
	payq_metrics_add("payq_db_retries_total", labels, 1);
	log_warn("database error (SQLSTATE %s), retrying %s in %" PRId64 " ms: %s", state, what,
		 wait, errstr);
	if (!payq_apply_connected(l->apply)) {
		atomic_store(&w->db_ok, false);
		payq_apply_disconnect(l->apply);
	}
	return wait;
}

bool worker_db_retry_wait(lane_t *l, int *attempt, const char *sqlstate, const char *what,
			  const char *errstr)
{
	return worker_tick(l, (int)worker_db_retry_note(l, attempt, sqlstate, what, errstr));
}

/* What apply_range did with its range. */
typedef enum {
	RANGE_APPLIED,	 /* applied in one transaction, with the progress given; or, for a
			  * single command the database refused, appended to poison[] with
			  * nothing written */
	RANGE_SPLIT,	 /* split to find poison: the halves were applied without progress */
	RANGE_ABANDONED, /* a fatal error, a rewind or the shutdown deadline: give it up */
} range_result_t;

/* Applies items[0..n) in one transaction, retrying transient errors forever (until
 * shutdown) and splitting on a permanent error. Poison commands are appended to
 * poison[]. */
static range_result_t apply_range(lane_t *l, payq_item_t *items, size_t n,
				  const payq_progress_t *prog, size_t nprog, size_t *poison,
				  size_t *npoison, size_t base)
{
	worker_t *w = l->w;
	char sqlstate[6], errstr[512];
	int attempt = 0;

	for (;;) {
		payq_apply_status_t st;
		payq_connect_t rc = worker_connect(l, errstr, sizeof(errstr));

		if (rc == PAYQ_CONNECT_FATAL)
			return RANGE_ABANDONED;
		if (rc == PAYQ_CONNECT_OK && worker_resync_progress(l, false))
			return RANGE_ABANDONED; /* the batch is dropped; its partitions resume
						 * from the database */
		if (rc == PAYQ_CONNECT_OK) {
			st = payq_apply_batch(l->apply, items, n, prog, nprog, sqlstate, errstr,
					      sizeof(errstr));
			if (st == PAYQ_APPLY_OK) {
				atomic_store(&w->db_ok, true);
				return RANGE_APPLIED;
			}
			if (st == PAYQ_APPLY_PERMANENT ||
			    (!strcmp(sqlstate, "23505") && attempt >= 5))
				break;
		} else {
			snprintf(sqlstate, sizeof(sqlstate), "08000");
		}
		l->retried = true; /* its COMMIT may have landed all the same */
		if (!worker_db_retry_wait(l, &attempt, sqlstate, "the batch", errstr))
			return RANGE_ABANDONED;
	}

	/* A permanent error: one command made the database refuse. Split to find it. */
	if (n == 1) {
		payq_log_ctx_t ctx = {.topic = w->cfg->topic,
				      .partition = items[0].partition,
				      .offset = items[0].offset,
				      .command_id = items[0].cmd.command_id,
				      .order_id = items[0].cmd.order_id,
				      .trace_id = worker_trace_id(&items[0])};
		payq_log(PAYQ_LOG_ERROR, &ctx, "database refused the command (SQLSTATE %s): %s",
			 sqlstate, errstr);
		l->poison_err[*npoison][0] = '\0';
		snprintf(l->poison_err[*npoison], sizeof(l->poison_err[0]), "SQLSTATE %s: %.150s",
			 sqlstate, errstr);
		poison[(*npoison)++] = base;
		return RANGE_APPLIED;
	}
	log_warn("permanent database error (SQLSTATE %s) in a batch of %zu; splitting: %s",
		 sqlstate, n, errstr);
	if (apply_range(l, items, n / 2, NULL, 0, poison, npoison, base) == RANGE_ABANDONED ||
	    apply_range(l, items + n / 2, n - n / 2, NULL, 0, poison, npoison, base + n / 2) ==
		    RANGE_ABANDONED)
		return RANGE_ABANDONED;
	/* Progress goes in its own transaction, after the poison is dead-lettered. */
	return RANGE_SPLIT;
}

/* One debug line per command of a committed batch, with its order, command and trace. */
static void log_outcomes(const lane_t *l, const payq_item_t *items, size_t n)
{
	const worker_t *w = l->w;
	if (payq_log_level < PAYQ_LOG_DEBUG)
		return;
	for (size_t i = 0; i < n; i++) {
		const payq_item_t *it = &items[i];
		payq_log_ctx_t ctx = {.topic = w->cfg->topic,
				      .partition = it->partition,
				      .offset = it->offset,
				      .command_id = it->cmd.command_id,
				      .order_id = it->cmd.order_id,
				      .trace_id = worker_trace_id(it)};
		payq_log(PAYQ_LOG_DEBUG, &ctx, "%s: %s", payq_cmd_type_name(it->cmd.type),
			 payq_outcome_name(it->outcome));
	}
}

/* What the metrics count for item i of the batch: the committed outcome. Poison has
 * none (its evaluation was rolled back; it was dead-lettered), and after a retry a
 * duplicate of the message's own row is the row's outcome: the first COMMIT landed. */
static payq_outcome_t committed_outcome(const lane_t *l, size_t i, const size_t *poison,
					size_t npoison)
{
	const payq_item_t *it = &l->items[i];

	for (size_t j = 0; j < npoison; j++)
		if (poison[j] == i)
			return PAYQ_OUT__CNT;
	if (it->outcome == PAYQ_OUT_DUPLICATE && it->own_row && l->retried)
		return it->recorded;
	return it->outcome;
}

static void count_outcomes(const lane_t *l, size_t n, const size_t *poison, size_t npoison)
{
	size_t counts[PAYQ_CMD_CANCEL_ORDER + 1][PAYQ_OUT__CNT + 1];

	memset(counts, 0, sizeof(counts));
	for (size_t i = 0; i < n; i++)
		counts[l->items[i].cmd.type][committed_outcome(l, i, poison, npoison)]++;
	for (int t = PAYQ_CMD_CREATE_ORDER; t <= PAYQ_CMD_CANCEL_ORDER; t++) {
		for (int o = 0; o < PAYQ_OUT__CNT; o++) {
			char labels[96];
			if (!counts[t][o])
				continue;
			if (o == PAYQ_OUT_DUPLICATE) {
				payq_metrics_add("payq_duplicates_total", NULL,
						 (double)counts[t][o]);
				continue;
			}
			if (o == PAYQ_OUT_KEY_REUSE) {
				payq_metrics_add("payq_anomalies_total", "kind=\"key_reuse\"",
						 (double)counts[t][o]);
				continue;
			}
			snprintf(labels, sizeof(labels), "type=\"%s\",outcome=\"%s\"",
				 payq_cmd_type_name((payq_cmd_type_t)t),
				 payq_outcome_name((payq_outcome_t)o));
			payq_metrics_add("payq_commands_total", labels, (double)counts[t][o]);
			if (t == PAYQ_CMD_PAY && o == PAYQ_OUT_REJECTED_ALREADY_PAID)
				payq_metrics_add("payq_double_payment_attempts_total", NULL,
						 (double)counts[t][o]);
		}
	}
}

/* Next offset per partition over the whole batch, malformed messages included. */
static size_t batch_progress(const lane_t *l, payq_progress_t *prog)
{
	size_t np = 0;

	for (size_t i = 0; i < l->nbatch; i++) {
		const rd_kafka_message_t *m = l->batch[i].msg;
		size_t j;
		for (j = 0; j < np && prog[j].partition != m->partition; j++)
			;
		if (j == np)
			prog[np++] = (payq_progress_t){m->partition, m->offset + 1};
		else if (m->offset + 1 > prog[j].next_offset)
			prog[j].next_offset = m->offset + 1;
	}
	return np;
}

/* Stores offsets for the batch: called only once everything in it is settled. */
static void store_offsets(lane_t *l, const payq_progress_t *prog, size_t np)
{
	worker_t *w = l->w;
	rd_kafka_topic_partition_list_t *list = rd_kafka_topic_partition_list_new((int)np);
	rd_kafka_resp_err_t err;

	for (size_t i = 0; i < np; i++)
		rd_kafka_topic_partition_list_add(list, w->cfg->topic, prog[i].partition)->offset =
			prog[i].next_offset;
	err = rd_kafka_offsets_store(w->rk, list);
	/* A partition revoked meanwhile fails here, and that is right: its new owner
	 * takes over from the committed offset and the dedup table absorbs the repeat. */
	if (err && err != RD_KAFKA_RESP_ERR__STATE)
		log_warn("storing offsets: %s", rd_kafka_err2str(err));
	rd_kafka_topic_partition_list_destroy(list);
	w->commit_dirty = true;
}

/* Decodes the batch and collects valid commands into l->items. Returns their count. */
static size_t decode_batch(lane_t *l, size_t *ndead)
{
	size_t n = 0;

	*ndead = 0;
	for (size_t i = 0; i < l->nbatch; i++) {
		entry_t *e = &l->batch[i];
		rd_kafka_message_t *m = e->msg;
		payq_item_t *it = &l->items[n];
		rd_kafka_timestamp_type_t tstype;

		e->reason =
			payq_codec_decode(m->key ? m->key : "", m->key ? m->key_len : 0, m->payload,
					  m->len, &it->cmd, e->error, sizeof(e->error));
		if (e->reason != PAYQ_REASON_OK) {
			payq_dlq_entry_t *d = &l->dead[(*ndead)++];
			d->msg = m;
			d->reason = payq_reason_name(e->reason);
			snprintf(d->error, sizeof(d->error), "%s", e->error);
			continue;
		}
		it->partition = m->partition;
		it->offset = m->offset;
		payq_trace_from_message(m, &it->trace);
		it->timestamp_ms = rd_kafka_message_timestamp(m, &tstype);
		n++;
	}
	return n;
}

/* True when payq-replay reset-offsets moved consumer_progress while this worker, out
 * of the group, was still finishing a batch: its position predates the reset, so it
 * stores nothing and exits, and a restart resumes from the reset offsets. What the batch
 * applied is committed and the dedup table absorbs its redelivery: nothing is lost and
 * nothing applied twice. */
static bool stale_position(lane_t *l)
{
	worker_t *w = l->w;
	int32_t partition = -1;

	if (!payq_apply_progress_stale(l->apply, &partition))
		return false;
	log_error("consumer_progress of %s/%" PRId32 " was reset (payq-replay reset-offsets) "
		  "while this worker was out of the group; its position is stale: exiting "
		  "without storing offsets, a restart resumes from the reset offsets",
		  w->cfg->topic, partition);
	w->fatal = true;
	return true;
}

/* Dead-letters entries[0..ndead) of l->dead: their DLQ copies PERSISTED, or the batch
 * abandoned. */
static step_t dead_letter(lane_t *l, size_t ndead)
{
	worker_t *w = l->w;
	if (ndead && payq_dlq_deliver(w->dlq, l->dead, ndead, worker_tick, l)) {
		w->fatal = w->fatal || payq_dlq_fatal(w->dlq, NULL, 0);
		return STEP_ABANDON;
	}
	return STEP_OK;
}

/* Logs and counts the malformed messages just dead-lettered. */
static void log_dead(const lane_t *l, size_t ndead)
{
	const worker_t *w = l->w;
	for (size_t i = 0; i < ndead; i++) {
		char labels[64], order_id[PAYQ_ID_MAX + 1];
		const rd_kafka_message_t *m = l->dead[i].msg;
		payq_trace_t trace;
		payq_log_ctx_t ctx = {
			.topic = w->cfg->topic, .partition = m->partition, .offset = m->offset};
		/* The key names the order when it is a valid ID; the value may be anything. */
		ctx.order_id = payq_codec_key_order_id(m->key, m->key_len, order_id);
		payq_trace_from_message(m, &trace);
		ctx.trace_id = trace.valid ? trace.trace_id : NULL;
		snprintf(labels, sizeof(labels), "reason=\"%s\"", l->dead[i].reason);
		payq_metrics_add("payq_dlq_total", labels, 1);
		payq_log(PAYQ_LOG_WARN, &ctx, "dead-lettered%s: %s: %s",
			 l->dead[i].truncated ? " (truncated copy: too_large_for_dlq)" : "",
			 l->dead[i].reason, l->dead[i].error);
	}
}

/* Applies the n valid commands, then in gateway mode charges and settles them. With the
 * whole batch applied at once, consumer_progress went with it (or, in gateway mode,
 * with the settle); otherwise (a split, or poison) *progress_left is set: progress
 * follows the poison, in settle_poison. */
static step_t apply_and_charge(lane_t *l, size_t n, const payq_progress_t *prog, size_t np,
			       size_t *npoison, bool *progress_left)
{
	worker_t *w = l->w;
	range_result_t r = apply_range(l, l->items, n, prog, np, l->poison, npoison, 0);
	bool whole;

	if (r == RANGE_ABANDONED)
		return STEP_ABANDON;
	whole = r == RANGE_APPLIED && !*npoison;
	if (w->gw && worker_charge_and_settle(l, n, whole ? prog : NULL, whole ? np : 0) != STEP_OK)
		return STEP_ABANDON;
	*progress_left = !whole;
	return STEP_OK;
}

/* Poison found by splitting: dead-letter it, then write consumer_progress alone. */
static step_t settle_poison(lane_t *l, size_t npoison, const payq_progress_t *prog, size_t np)
{
	char sqlstate[6], errstr[256];

	for (size_t i = 0; i < npoison; i++) {
		payq_item_t *it = &l->items[l->poison[i]];
		for (size_t j = 0; j < l->nbatch; j++) {
			rd_kafka_message_t *m = l->batch[j].msg;
			if (m->partition == it->partition && m->offset == it->offset) {
				l->dead[i].msg = m;
				l->dead[i].reason = "db_rejected";
				snprintf(l->dead[i].error, sizeof(l->dead[i].error),
					 "database refused the command: %.200s", l->poison_err[i]);
			}
		}
	}
	if (dead_letter(l, npoison) != STEP_OK)
		return STEP_ABANDON;
	while (payq_apply_batch(l->apply, NULL, 0, prog, np, sqlstate, errstr, sizeof(errstr)) !=
	       PAYQ_APPLY_OK) {
		log_warn("writing progress: %s", errstr);
		if (!worker_tick(l, 500) ||
		    payq_apply_connect(l->apply, errstr, sizeof(errstr)) == PAYQ_CONNECT_FATAL)
			return STEP_ABANDON;
	}
	return STEP_OK;
}

/* After the database COMMIT: stores the batch's offsets and commits them, unless a
 * fatal error or a reset of consumer_progress says to store nothing more. */
static step_t store(lane_t *l, const payq_progress_t *prog, size_t np)
{
	worker_t *w = l->w;
	payq_crash_point("after_db_commit");
	if (l->paused)
		worker_set_paused(l, false);

	if (stale_position(l))
		return STEP_ABANDON;
	/* A fatal error means nothing more is stored, even for a committed batch: the
	 * dedup table absorbs its redelivery. */
	if (w->fatal || payq_dlq_fatal(w->dlq, NULL, 0)) {
		w->fatal = true;
		return STEP_ABANDON;
	}
	store_offsets(l, prog, np);
	worker_commit(w, !strcmp(w->cfg->commit_mode, "sync"));
	return STEP_OK;
}

/* The metrics and the debug log of a settled batch. */
static void observe_batch(const lane_t *l, size_t n, size_t ndead, size_t npoison, int64_t t0)
{
	int64_t now_wall = payq_wall_ms();

	for (size_t i = 0; i < n; i++)
		if (l->items[i].timestamp_ms > 0)
			payq_metrics_observe("payq_commit_latency_seconds", NULL,
					     (double)(now_wall - l->items[i].timestamp_ms) /
						     1000.0);
	count_outcomes(l, n, l->poison, npoison);
	log_outcomes(l, l->items, n);
	payq_metrics_observe("payq_batch_size", NULL, (double)l->nbatch);
	payq_metrics_observe("payq_batch_duration_seconds", NULL,
			     (double)(payq_now_us() - t0) / 1e6);
	log_debug("batch of %zu applied (%zu valid, %zu dead-lettered)", l->nbatch, n, ndead);
}

/* Step 1 of settling a batch: decode it and persist the DLQ copies of its malformed
 * messages. STEP_ABANDON: nothing of the batch is stored, so it will be delivered
 * again. */
static step_t prepare(lane_t *l)
{
	worker_t *w = l->w;
	l->batch_t0 = payq_now_us();
	l->retried = false;
	l->nitems = l->ndead = l->nprog = l->npoison = 0;
#ifdef PAYQ_CRASH_POINTS
	if (payq_fault_point("kafka_fatal"))
		payq_dlq_test_fatal(w->dlq);
#endif
	/* After a fatal error nothing more is applied (nor charged): the batch in hand,
	 * perhaps cut short by the error, is delivered again to the next owner. */
	if (w->fatal)
		return STEP_ABANDON;
	l->nitems = decode_batch(l, &l->ndead);
	l->nprog = batch_progress(l, l->prog);

	/* The offset rule: DLQ copies are PERSISTED before consumer_progress moves past
	 * them, and offsets are stored only after the database COMMIT. */
	if (dead_letter(l, l->ndead) != STEP_OK)
		return STEP_ABANDON;
	log_dead(l, l->ndead);
#ifdef PAYQ_MUTATION_STORE_BEFORE_COMMIT
	/* Deliberately broken build: offsets are stored and committed before the database
	 * transaction, so a crash in between loses the batch. */
	store_offsets(l, l->prog, l->nprog);
	worker_commit(w, true);
#endif
	return STEP_OK;
}

/* Step 2 on the synchronous path: one database transaction with the outcomes and
 * consumer_progress (retried, split on poison, charged and settled in gateway mode),
 * then offsets stored and committed. */
static step_t settle_sync(lane_t *l)
{
	bool progress_left = false;

	if (apply_and_charge(l, l->nitems, l->prog, l->nprog, &l->npoison, &progress_left) !=
	    STEP_OK)
		return STEP_ABANDON;
	if (progress_left && settle_poison(l, l->npoison, l->prog, l->nprog) != STEP_OK)
		return STEP_ABANDON;
	if (store(l, l->prog, l->nprog) != STEP_OK)
		return STEP_ABANDON;
	observe_batch(l, l->nitems, l->ndead, l->npoison, l->batch_t0);
	return STEP_OK;
}

static batch_result_t result_of(lane_t *l, step_t s)
{
	if (s == STEP_OK)
		return BATCH_DONE;
	if (l->rewound) {
		/* Dropped for a rewind, not abandoned: go on from the database. */
		l->rewound = false;
		return BATCH_REWOUND;
	}
	return BATCH_ABANDONED;
}

batch_result_t worker_batch_prepare(lane_t *l)
{
	return result_of(l, prepare(l));
}

batch_result_t worker_batch_settle_sync(lane_t *l)
{
	return result_of(l, settle_sync(l));
}

batch_result_t worker_batch_committed(lane_t *l)
{
	worker_t *w = l->w;
	atomic_store(&w->db_ok, true);
	if (store(l, l->prog, l->nprog) != STEP_OK)
		return result_of(l, STEP_ABANDON);
	observe_batch(l, l->nitems, l->ndead, 0, l->batch_t0);
	return BATCH_DONE;
}

void worker_release_batch(lane_t *l)
{
	for (size_t i = 0; i < l->nbatch; i++)
		rd_kafka_message_destroy(l->batch[i].msg);
	l->nbatch = 0;
}
