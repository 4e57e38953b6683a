/* consume.c - the worker's consume loop: poll a batch, dead-letter, apply, store, commit. */
#include "consume.h"

#include <inttypes.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>
#include <librdkafka/rdkafka.h>

#include "apply.h"
#include "codec.h"
#include "crash.h"
#include "dlq.h"
#include "gateway.h"
#include "http.h"
#include "kafka.h"
#include "lag.h"
#include "log.h"
#include "metrics.h"
#include "reconcile.h"
#include "util.h"
#include "wmetrics.h"

volatile sig_atomic_t payq_run = 1;

/* One polled message and what decoding it found. */
typedef struct entry {
	rd_kafka_message_t *msg;
	payq_reason_t reason;
	char error[256];
} entry_t;

typedef struct worker {
	payq_config_t *cfg;
	rd_kafka_t *rk;
	payq_dlq_t *dlq;
	payq_apply_t *apply;
	payq_http_t *http;
	payq_gateway_t *gw;        /* gateway mode only */
	payq_reconciler_t *reconciler;
	payq_charge_t *charges;    /* gateway mode: this batch's charges */
	size_t *charge_item;       /* the item of each charge */
	bool cooperative;
	bool paused;
	bool fatal;
	bool commit_dirty;
	int64_t async_commit_ms;  /* when the async commit in flight was sent, or 0 */
	bool in_flight;           /* process_batch() is settling w->batch */
	bool retried;             /* an apply attempt of w->batch failed transiently */
	int64_t stop_deadline_ms; /* set when a signal arrives */

	entry_t *batch;    /* the batch being collected or applied, in poll order */
	size_t nbatch;
	entry_t *held;     /* polled while paused; they start the next batch */
	size_t nheld, held_cap;
	payq_item_t *items;
	payq_dlq_entry_t *dead;
	payq_progress_t *prog;
	size_t *poison;
	char (*poison_err)[200];

	uint64_t progress_gen; /* the database session whose progress was last compared */
	bool rewound;          /* resync_progress() dropped the batch and sought back */

	atomic_llong last_poll_ms;
	atomic_bool joined;
	atomic_bool db_ok;
} worker_t;

/* ---- health probes (HTTP thread) ---- */

static bool healthz(void *opaque, char *msg, size_t size)
{
	worker_t *w = opaque;
	int64_t age = payq_now_ms() - atomic_load(&w->last_poll_ms);

	if (age > 30000) {
		snprintf(msg, size, "main loop has not polled for %" PRId64 " ms", age);
		return false;
	}
	return true;
}

static bool readyz(void *opaque, char *msg, size_t size)
{
	worker_t *w = opaque;

	if (!atomic_load(&w->joined)) {
		snprintf(msg, size, "not joined to the consumer group");
		return false;
	}
	if (!atomic_load(&w->db_ok)) {
		snprintf(msg, size, "database not answering");
		return false;
	}
	return true;
}

/* ---- librdkafka callbacks (all run inside rd_kafka_consumer_poll on this thread) ---- */

/* True for the errors that retrying cannot cure: the broker refuses this principal (an ACL
 * is missing) or its credentials. librdkafka would retry them for ever while the worker
 * looks healthy and applies nothing; stopping says what is wrong where an operator looks.
 * Not the local _AUTHENTICATION: librdkafka also reports a connection lost during the SASL
 * handshake (a broker restarting) with it, and that one must be retried. */
static bool access_denied(rd_kafka_resp_err_t err)
{
	switch (err) {
	case RD_KAFKA_RESP_ERR_GROUP_AUTHORIZATION_FAILED:
	case RD_KAFKA_RESP_ERR_TOPIC_AUTHORIZATION_FAILED:
	case RD_KAFKA_RESP_ERR_CLUSTER_AUTHORIZATION_FAILED:
	case RD_KAFKA_RESP_ERR_TRANSACTIONAL_ID_AUTHORIZATION_FAILED:
	case RD_KAFKA_RESP_ERR_SASL_AUTHENTICATION_FAILED:
		return true;
	default:
		return false;
	}
}

/* Stops the worker on an access error: nothing is committed, so nothing is lost. */
static void stop_denied(worker_t *w, rd_kafka_resp_err_t err, const char *reason)
{
	log_error("Kafka refuses access: %s: %s; check this principal's credentials and ACLs "
		  "(README, Security)",
		  rd_kafka_err2name(err), reason);
	w->fatal = true;
	payq_run = 0;
}

static void error_cb(rd_kafka_t *rk, int err, const char *reason, void *opaque)
{
	worker_t *w = opaque;
	char buf[512];

	if (err == RD_KAFKA_RESP_ERR__FATAL) {
		rd_kafka_fatal_error(rk, buf, sizeof(buf));
		log_error("fatal Kafka error: %s", buf);
		w->fatal = true;
		payq_run = 0;
		return;
	}
	if (access_denied((rd_kafka_resp_err_t)err)) {
		stop_denied(w, (rd_kafka_resp_err_t)err, reason);
		return;
	}
	log_warn("Kafka error: %s: %s", rd_kafka_err2name((rd_kafka_resp_err_t)err), reason);
}

/* The result of any commit, synchronous or not. */
static void commit_result(worker_t *w, rd_kafka_resp_err_t err)
{
	if (err == RD_KAFKA_RESP_ERR__NO_OFFSET)
		return;
	if (err) {
		payq_metrics_add("payq_commit_errors_total", NULL, 1);
		log_warn("offset commit failed: %s", rd_kafka_err2str(err));
		/* The stored offsets are still there: try again on the next chance. */
		w->commit_dirty = true;
		return;
	}
	payq_metrics_set("payq_last_commit_timestamp_seconds", NULL,
			 (double)payq_wall_ms() / 1000.0);
}

/* The configured callback: synchronous commits only (the revoke's, the final one),
 * since the async ones carry their own. It must not touch the async in-flight mark: a
 * revoke's commit can complete while an async commit is still being retried. */
static void commit_cb(rd_kafka_t *rk, rd_kafka_resp_err_t err,
		      rd_kafka_topic_partition_list_t *offsets, void *opaque)
{
	(void)rk;
	(void)offsets;
	commit_result(opaque, err);
}

/* The callback of the one async commit in flight (rd_kafka_commit_queue), served on
 * the consumer queue by rd_kafka_consumer_poll like commit_cb. */
static void async_commit_cb(rd_kafka_t *rk, rd_kafka_resp_err_t err,
			    rd_kafka_topic_partition_list_t *offsets, void *opaque)
{
	worker_t *w = opaque;

	(void)rk;
	(void)offsets;
	w->async_commit_ms = 0;
	commit_result(w, err);
}

static int stats_cb(rd_kafka_t *rk, char *json, size_t len, void *opaque)
{
	worker_t *w = opaque;

	(void)rk;
	payq_lag_from_stats(w->cfg->group, json, len);
	return 0; /* librdkafka frees json */
}

static const char *trace_id_of(const payq_item_t *it)
{
	return it->trace.valid ? it->trace.trace_id : NULL;
}

static bool in_list(const rd_kafka_topic_partition_list_t *parts, const rd_kafka_message_t *m)
{
	for (int i = 0; i < parts->cnt; i++)
		if (parts->elems[i].partition == m->partition &&
		    !strcmp(parts->elems[i].topic, rd_kafka_topic_name(m->rkt)))
			return true;
	return false;
}

/* Forgets polled messages of revoked partitions; their new owner gets them again from
 * the committed offset, so nothing is lost. Keeps the rest in order. */
static void drop_partitions(worker_t *w, const rd_kafka_topic_partition_list_t *parts)
{
	size_t k = 0, dropped = 0;

	/* A batch being settled keeps its messages: the DLQ copies point at them, and
	 * applying them anyway is safe (the dedup table and the order locks serialise
	 * us with the new owner; storing their offsets just fails). */
	for (size_t i = 0; i < w->nbatch && !w->in_flight; i++) {
		if (in_list(parts, w->batch[i].msg)) {
			rd_kafka_message_destroy(w->batch[i].msg);
			dropped++;
		} else {
			w->batch[k++] = w->batch[i];
		}
	}
	if (!w->in_flight)
		w->nbatch = k;
	k = 0;
	for (size_t i = 0; i < w->nheld; i++) {
		if (in_list(parts, w->held[i].msg)) {
			rd_kafka_message_destroy(w->held[i].msg);
			dropped++;
		} else {
			w->held[k++] = w->held[i];
		}
	}
	w->nheld = k;
	if (dropped)
		log_info("dropped %zu uncommitted messages of revoked partitions", dropped);
}

static void set_paused(worker_t *w, bool pause);

/* ---- the database is the truth for progress (DESIGN.md, "Worker behaviour") ---- */

/* Where a partition resumes, next to Kafka's idea of it (the committed offset on assign,
 * the worker's own position after a new database session). */
typedef enum {
	RESUME_KAFKA,   /* Kafka and the database agree, or the database has no row */
	RESUME_FORWARD, /* Kafka behind the database: seek forward */
	RESUME_BACK,    /* Kafka ahead (the database lost commits): seek back, re-apply */
	RESUME_GAP,     /* the database's offset is no longer safe to re-apply from */
} resume_t;

/* The earliest offset of a partition that can still be re-applied safely: nothing below
 * the low watermark exists any more, and a message older than the dedup horizon may
 * have lost its dedup row. Returns -1 when the broker does not say. */
static int64_t safe_floor(worker_t *w, const char *topic, int32_t partition)
{
	int64_t low = 0, high = 0, horizon_ms = 0, floor;
	rd_kafka_topic_partition_list_t *at;
	rd_kafka_resp_err_t err;

	err = rd_kafka_query_watermark_offsets(w->rk, topic, partition, &low, &high, 5000);
	if (err) {
		log_warn("low watermark of %s/%d unknown: %s", topic, (int)partition,
			 rd_kafka_err2str(err));
		return -1;
	}
	floor = low;
	if (payq_apply_read_horizon(w->apply, &horizon_ms) || horizon_ms <= 0)
		return floor;
	/* The first message at or after the horizon; none means every message is older. */
	at = rd_kafka_topic_partition_list_new(1);
	rd_kafka_topic_partition_list_add(at, topic, partition)->offset = horizon_ms;
	err = rd_kafka_offsets_for_times(w->rk, at, 5000);
	if (!err && !at->elems[0].err) {
		int64_t h = at->elems[0].offset >= 0 ? at->elems[0].offset : high;
		if (h > floor)
			floor = h;
	} else {
		log_warn("offset of the dedup horizon in %s/%d unknown: %s", topic, (int)partition,
			 rd_kafka_err2str(err ? err : at->elems[0].err));
	}
	rd_kafka_topic_partition_list_destroy(at);
	return floor;
}

/* Decides where a partition resumes from Kafka's offset and consumer_progress (db >= 0),
 * raising the anomaly and counting the rewind. Sets *target. */
static resume_t plan_resume(worker_t *w, const char *topic, int32_t partition, int64_t kafka,
			    int64_t db, const char *what, int64_t *target)
{
	payq_log_ctx_t ctx = {.topic = topic, .partition = partition, .offset = kafka};
	char detail[200];
	int64_t floor;

	*target = kafka;
	if (kafka == db)
		return RESUME_KAFKA;
	if (kafka < db) {
		payq_log(PAYQ_LOG_WARN, &ctx,
			 "%s %" PRId64 " is behind consumer_progress %" PRId64 ": seeking forward",
			 what, kafka, db);
		payq_metrics_add("payq_offset_rewinds_total", "direction=\"forward\"", 1);
		*target = db;
		return RESUME_FORWARD;
	}
	floor = safe_floor(w, topic, partition);
#ifdef PAYQ_MUTATION_TRUST_KAFKA_AHEAD
	/* Deliberately broken build: the old rule, Kafka trusted when it is ahead. */
	floor = kafka;
#endif
	if (floor > db) {
		*target = floor < kafka ? floor : kafka;
		snprintf(detail, sizeof(detail),
			 "%s %" PRId64 " is ahead of consumer_progress %" PRId64
			 ", which is below the earliest safe offset %" PRId64
			 "; going on from %" PRId64 ": the audit names the range",
			 what, kafka, db, floor, *target);
		payq_log(PAYQ_LOG_ERROR, &ctx, "offset_gap: %s", detail);
		payq_apply_anomaly(w->apply, "offset_gap", partition, db, detail);
		payq_metrics_add("payq_anomalies_total", "kind=\"offset_gap\"", 1);
		return *target == kafka ? RESUME_KAFKA : RESUME_GAP;
	}
	snprintf(detail, sizeof(detail),
		 "%s %" PRId64 " is ahead of consumer_progress %" PRId64
		 ": the database lost commits (failover or restore?); seeking back to re-apply",
		 what, kafka, db);
	payq_log(PAYQ_LOG_WARN, &ctx, "progress_rewind: %s", detail);
	payq_apply_anomaly(w->apply, "progress_rewind", partition, kafka, detail);
	payq_metrics_add("payq_anomalies_total", "kind=\"progress_rewind\"", 1);
	payq_metrics_add("payq_offset_rewinds_total", "direction=\"back\"", 1);
	*target = db;
	return RESUME_BACK;
}

/* On assign: compare Kafka's committed offset with consumer_progress and start from the
 * database's (see plan_resume). Partitions moved are added to moved, to be stored. */
static void drift_check(worker_t *w, rd_kafka_topic_partition_list_t *parts,
			rd_kafka_topic_partition_list_t *moved)
{
	char errstr[512];
	rd_kafka_topic_partition_list_t *committed;
	rd_kafka_resp_err_t err;

	if (!parts->cnt)
		return;
	/* While the database is known to be down, do not stall the rebalance on it: the
	 * first batch after the reconnect compares positions instead (resync_progress). */
	if (!atomic_load(&w->db_ok) && !payq_apply_connected(w->apply)) {
		log_warn("drift check skipped: database unavailable");
		return;
	}
	if (payq_apply_connect(w->apply, errstr, sizeof(errstr))) {
		log_warn("drift check skipped, database unavailable: %s", errstr);
		return;
	}
	committed = rd_kafka_topic_partition_list_copy(parts);
	err = rd_kafka_committed(w->rk, committed, 10000);
	if (err) {
		log_warn("drift check skipped, committed offsets unavailable: %s",
			 rd_kafka_err2str(err));
		rd_kafka_topic_partition_list_destroy(committed);
		return;
	}
	for (int i = 0; i < committed->cnt; i++) {
		rd_kafka_topic_partition_t *c = &committed->elems[i];
		int64_t db = payq_apply_read_progress(w->apply, c->partition);
		int64_t kafka = c->offset >= 0 ? c->offset : 0, target;

		if (db == -1 && c->offset >= 0) {
			payq_log_ctx_t ctx = {.topic = c->topic, .partition = c->partition,
					      .offset = c->offset};
			char detail[160];
			snprintf(detail, sizeof(detail),
				 "committed offset %" PRId64 " but no consumer_progress row (a new "
				 "database?): trusting Kafka", c->offset);
			payq_log(PAYQ_LOG_WARN, &ctx, "no_progress: %s", detail);
			payq_apply_anomaly(w->apply, "no_progress", c->partition, c->offset, detail);
			payq_metrics_add("payq_anomalies_total", "kind=\"no_progress\"", 1);
		}
		if (db < 0)
			continue; /* no progress row, or the read failed: trust Kafka */
		if (plan_resume(w, c->topic, c->partition, kafka, db, "committed offset",
				&target) == RESUME_KAFKA)
			continue;
		parts->elems[i].offset = target;
		rd_kafka_topic_partition_list_add(moved, c->topic, c->partition)->offset = target;
	}
	rd_kafka_topic_partition_list_destroy(committed);
	/* This session's progress has been read: no resync needed for it. */
	w->progress_gen = payq_apply_generation(w->apply);
}

/* The next offset this worker would apply in a partition: its first message in the
 * batch or held back, else the consumer's position. -1 when it has consumed nothing. */
static int64_t next_to_apply(const worker_t *w, const rd_kafka_topic_partition_t *p)
{
	for (size_t i = 0; i < w->nbatch; i++)
		if (w->batch[i].msg->partition == p->partition)
			return w->batch[i].msg->offset; /* poll order: the first is the lowest */
	for (size_t i = 0; i < w->nheld; i++)
		if (w->held[i].msg->partition == p->partition)
			return w->held[i].msg->offset;
	return p->offset >= 0 ? p->offset : -1;
}

/* After a new database session, before the batch goes to it: the server may be a
 * promoted replica or a restored backup that lost the last commits, whose
 * consumer_progress is behind what this worker consumed. Then every assigned partition
 * resumes from the database (plan_resume), the batch and the held messages are dropped
 * and their partitions sought back to their first message; returns true (the caller
 * abandons the batch). force: the batch was already applied on the previous session
 * (gateway mode, before its settle), so it is re-applied whatever the progress says. */
static bool resync_progress(worker_t *w, bool force)
{
	rd_kafka_topic_partition_list_t *parts = NULL, *seek, *moved;
	bool rewound = force;
	rd_kafka_error_t *error;

	if (payq_apply_generation(w->apply) == w->progress_gen)
		return false;
	w->progress_gen = payq_apply_generation(w->apply);
	if (rd_kafka_assignment(w->rk, &parts) || !parts->cnt ||
	    rd_kafka_position(w->rk, parts)) {
		if (parts)
			rd_kafka_topic_partition_list_destroy(parts);
		return false;
	}
	seek = rd_kafka_topic_partition_list_new(parts->cnt);
	moved = rd_kafka_topic_partition_list_new(parts->cnt);
	for (int i = 0; i < parts->cnt; i++) {
		rd_kafka_topic_partition_t *p = &parts->elems[i];
		int64_t next = next_to_apply(w, p), db, target;
		resume_t r;

		if (next < 0)
			continue; /* nothing consumed: it starts where the assign put it */
		db = payq_apply_read_progress(w->apply, p->partition);
		target = next;
		/* Only a database behind the position matters here: one ahead of it (a
		 * batch that committed before the connection broke) is absorbed by the
		 * dedup table, as before any failover. */
		r = db < 0 || db >= next ?
			    RESUME_KAFKA :
			    plan_resume(w, p->topic, p->partition, next, db, "position", &target);
		if (r == RESUME_BACK || r == RESUME_GAP) {
			rewound = true;
			rd_kafka_topic_partition_list_add(moved, p->topic, p->partition)->offset =
				target;
		}
		rd_kafka_topic_partition_list_add(seek, p->topic, p->partition)->offset = target;
	}
	if (rewound) {
		/* Only the partitions whose messages are dropped, or that go back, move. */
		for (int i = seek->cnt - 1; i >= 0; i--) {
			rd_kafka_topic_partition_t *s = &seek->elems[i];
			int64_t pos = -1;
			for (int j = 0; j < parts->cnt; j++)
				if (parts->elems[j].partition == s->partition)
					pos = parts->elems[j].offset;
			if (s->offset == pos)
				rd_kafka_topic_partition_list_del_by_idx(seek, i);
		}
		log_warn("database session changed and its progress is behind: dropping %zu "
			 "polled messages and seeking %d partitions back", w->nbatch + w->nheld,
			 seek->cnt);
		for (size_t i = 0; i < w->nheld; i++)
			rd_kafka_message_destroy(w->held[i].msg);
		w->nheld = 0;
		for (size_t i = 0; i < w->nbatch; i++)
			rd_kafka_message_destroy(w->batch[i].msg);
		w->nbatch = 0;
		error = rd_kafka_seek_partitions(w->rk, seek, 10000);
		if (error) {
			log_error("seeking back: %s", rd_kafka_error_string(error));
			rd_kafka_error_destroy(error);
		}
		for (int i = 0; i < seek->cnt; i++)
			if (seek->elems[i].err)
				log_error("seeking %s/%d back: %s", seek->elems[i].topic,
					  (int)seek->elems[i].partition,
					  rd_kafka_err2str(seek->elems[i].err));
		/* Kafka's committed offset follows the database's. */
		if (moved->cnt && !rd_kafka_offsets_store(w->rk, moved))
			w->commit_dirty = true;
		w->rewound = true;
		set_paused(w, false);
	}
	rd_kafka_topic_partition_list_destroy(moved);
	rd_kafka_topic_partition_list_destroy(seek);
	rd_kafka_topic_partition_list_destroy(parts);
	return rewound;
}

static void rebalance_cb(rd_kafka_t *rk, rd_kafka_resp_err_t err,
			 rd_kafka_topic_partition_list_t *parts, void *opaque)
{
	worker_t *w = opaque;
	rd_kafka_error_t *error = NULL;
	rd_kafka_resp_err_t ret = RD_KAFKA_RESP_ERR_NO_ERROR;

	payq_metrics_add("payq_rebalances_total", NULL, 1);
	if (err == RD_KAFKA_RESP_ERR__ASSIGN_PARTITIONS) {
		log_info("assigned %d partitions (%s)", parts->cnt,
			 rd_kafka_rebalance_protocol(rk));
		rd_kafka_topic_partition_list_t *moved = rd_kafka_topic_partition_list_new(0);

		drift_check(w, parts, moved);
		if (w->cooperative)
			error = rd_kafka_incremental_assign(rk, parts);
		else
			ret = rd_kafka_assign(rk, parts);
		/* A partition moved has nothing settled beyond the database's offset, nor
		 * left to apply below it; store it now, so that Kafka's committed offset
		 * follows the database even before new traffic comes. */
		if (moved->cnt && !error && !ret && !rd_kafka_offsets_store(rk, moved))
			w->commit_dirty = true;
		rd_kafka_topic_partition_list_destroy(moved);
		/* librdkafka keeps a partition's pause across revoke and reassign, so set it
		 * explicitly either way: a partition given back must not stay paused. */
		if (w->paused)
			rd_kafka_pause_partitions(rk, parts);
		else
			rd_kafka_resume_partitions(rk, parts);
		atomic_store(&w->joined, true);
	} else if (err == RD_KAFKA_RESP_ERR__REVOKE_PARTITIONS) {
		bool lost = rd_kafka_assignment_lost(rk);

		log_info("revoked %d partitions%s", parts->cnt, lost ? " (assignment lost)" : "");
		/* Lost (session timed out, max.poll.interval.ms passed) or leaving: the worker
		 * holds nothing until it is assigned again. An eager rebalance's revoke is
		 * not that: the member stays in the group and is assigned again at once. */
		if (lost || !payq_run)
			atomic_store(&w->joined, false);
		drop_partitions(w, parts);
		payq_lag_forget(w->cfg->group, parts);
#ifdef PAYQ_MUTATION_LOST_COMMIT_OK
		/* Deliberately broken build: commits even though the assignment is lost. */
		lost = false;
#endif
		/* A lost assignment belongs to someone else now: committing could overwrite
		 * their progress. Stored offsets are all post-COMMIT, so the rest is safe. */
		if (!lost && w->commit_dirty && !w->fatal) {
			rd_kafka_resp_err_t cerr = rd_kafka_commit(rk, NULL, 0);
			if (cerr && cerr != RD_KAFKA_RESP_ERR__NO_OFFSET)
				log_warn("commit on revoke failed: %s", rd_kafka_err2str(cerr));
			w->commit_dirty = false;
		}
		if (w->cooperative)
			error = rd_kafka_incremental_unassign(rk, parts);
		else
			ret = rd_kafka_assign(rk, NULL);
	} else {
		log_error("rebalance error: %s", rd_kafka_err2str(err));
		atomic_store(&w->joined, false);
		ret = rd_kafka_assign(rk, NULL);
	}
	if (error) {
		log_error("incremental rebalance: %s", rd_kafka_error_string(error));
		rd_kafka_error_destroy(error);
	} else if (ret) {
		log_error("assign: %s", rd_kafka_err2str(ret));
	}
}

/* ---- polling ---- */

static int hold(worker_t *w, rd_kafka_message_t *m)
{
	bool fail = payq_fault_point("hold_alloc"); /* tests: as if realloc failed */

	if (fail || w->nheld == w->held_cap) {
		size_t cap = w->held_cap ? w->held_cap * 2 : 64;
		entry_t *p = fail ? NULL : realloc(w->held, cap * sizeof(*p));
		if (!p)
			return -1;
		w->held = p;
		w->held_cap = cap;
	}
	w->held[w->nheld++].msg = m;
	return 0;
}

/* Holding m failed (out of memory). Dropping it alone would be a loss: the offsets of
 * later messages of its partition would be stored past it. So forget the held messages
 * of its partition from m on and seek the partition back to m, which makes it fetched
 * again. If the seek fails, stop: a fatal error stores nothing more, and the partition's
 * next owner fetches m from the committed offset. */
static void rewind_to(worker_t *w, rd_kafka_message_t *m)
{
	rd_kafka_topic_partition_list_t *list = rd_kafka_topic_partition_list_new(1);
	rd_kafka_error_t *error;
	rd_kafka_resp_err_t err;
	size_t k = 0;

	for (size_t i = 0; i < w->nheld; i++) {
		rd_kafka_message_t *h = w->held[i].msg;
		if (h->partition == m->partition && h->offset >= m->offset)
			rd_kafka_message_destroy(h);
		else
			w->held[k++] = w->held[i];
	}
	w->nheld = k;
	rd_kafka_topic_partition_list_add(list, rd_kafka_topic_name(m->rkt), m->partition)->offset =
		m->offset;
	log_warn("out of memory holding %s/%" PRId32 "/%" PRId64 ": seeking back to it",
		 rd_kafka_topic_name(m->rkt), m->partition, m->offset);
	rd_kafka_message_destroy(m);
	error = rd_kafka_seek_partitions(w->rk, list, 10000);
	err = error ? rd_kafka_error_code(error) : list->elems[0].err;
	if (err) {
		log_error("seeking back to a message that could not be held: %s",
			  error ? rd_kafka_error_string(error) : rd_kafka_err2str(err));
		w->fatal = true;
		payq_run = 0;
	}
	if (error)
		rd_kafka_error_destroy(error);
	rd_kafka_topic_partition_list_destroy(list);
}

/* Polls once. A message comes back only if it is a real message; errors are logged. */
static rd_kafka_message_t *poll_one(worker_t *w, int timeout_ms)
{
	rd_kafka_message_t *m = rd_kafka_consumer_poll(w->rk, timeout_ms);

	atomic_store(&w->last_poll_ms, payq_now_ms());
	if (!m)
		return NULL;
	if (m->err == RD_KAFKA_RESP_ERR__FATAL) {
		/* With the main queue forwarded to the consumer, fatal errors such as a
		 * fenced static member arrive here rather than in error_cb. */
		char buf[512];
		rd_kafka_fatal_error(w->rk, buf, sizeof(buf));
		log_error("fatal Kafka error: %s", buf);
		w->fatal = true;
		payq_run = 0;
		rd_kafka_message_destroy(m);
		return NULL;
	}
	if (access_denied(m->err)) {
		stop_denied(w, m->err, rd_kafka_message_errstr(m));
		rd_kafka_message_destroy(m);
		return NULL;
	}
	if (m->err) {
		if (m->err != RD_KAFKA_RESP_ERR__PARTITION_EOF)
			log_warn("consumer: %s", rd_kafka_message_errstr(m));
		rd_kafka_message_destroy(m);
		return NULL;
	}
	return m;
}

static void set_paused(worker_t *w, bool pause)
{
	rd_kafka_topic_partition_list_t *parts;

	if (w->paused == pause)
		return;
	if (rd_kafka_assignment(w->rk, &parts) == RD_KAFKA_RESP_ERR_NO_ERROR) {
		if (pause)
			rd_kafka_pause_partitions(w->rk, parts);
		else
			rd_kafka_resume_partitions(w->rk, parts);
		rd_kafka_topic_partition_list_destroy(parts);
	}
	w->paused = pause;
}

/* Waits wait_ms with fetching paused, still polling so the worker stays in the group.
 * Returns false when the caller should give up: a fatal error, or a shutdown whose
 * deadline has passed. */
static bool tick(void *opaque, int wait_ms)
{
	worker_t *w = opaque;
	int64_t until = payq_now_ms() + wait_ms;

	/* The hold_alloc fault test keeps fetching, so that messages do reach hold(): a
	 * pause discards what was fetched ahead. */
	if (!payq_fault_armed("hold_alloc"))
		set_paused(w, true);
	do {
		rd_kafka_message_t *m = poll_one(w, wait_ms > 100 ? 100 : wait_ms);
		if (m && hold(w, m)) {
#ifdef PAYQ_MUTATION_HOLD_DROP
			/* Deliberately broken build: the message is skipped. */
			rd_kafka_message_destroy(m);
			(void)rewind_to;
#else
			rewind_to(w, m);
#endif
		}
		if (w->fatal)
			return false;
		if (!payq_run) {
			if (!w->stop_deadline_ms)
				w->stop_deadline_ms = payq_now_ms() + w->cfg->shutdown_timeout_ms;
			/* The last fifth is for the final commit and leaving the group. */
			if (payq_now_ms() >= w->stop_deadline_ms - w->cfg->shutdown_timeout_ms / 5)
				return false;
		}
	} while (payq_now_ms() < until);
	return true;
}

/* Fills the batch: held messages first, then polls until batch_max messages or
 * batch_wait_ms after the first one. Returns the batch size. */
static size_t collect(worker_t *w)
{
	size_t max = (size_t)w->cfg->batch_max;
	int64_t deadline = 0;

	while (w->nheld && w->nbatch < max) {
		w->batch[w->nbatch++] = w->held[0];
		memmove(w->held, w->held + 1, --w->nheld * sizeof(*w->held));
	}
	if (w->nbatch)
		deadline = payq_now_ms() + w->cfg->batch_wait_ms;
	while (payq_run && !w->fatal && w->nbatch < max) {
		int64_t now = payq_now_ms();
		int timeout = deadline ? (int)(deadline - now) : 100;
		rd_kafka_message_t *m;

		if (deadline && now >= deadline)
			break;
		m = poll_one(w, timeout > 100 ? 100 : timeout < 0 ? 0 : timeout);
		if (!m) {
			if (!deadline)
				break; /* idle: let the caller do housekeeping */
			continue;
		}
		w->batch[w->nbatch++].msg = m;
		if (payq_fault_point("consumer_fatal"))
			rd_kafka_test_fatal_error(w->rk, RD_KAFKA_RESP_ERR_FENCED_INSTANCE_ID,
						  "payq fault injection");
		if (!deadline)
			deadline = payq_now_ms() + w->cfg->batch_wait_ms;
	}
	return w->nbatch;
}

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

/* After a failed database step: counts the retry by SQLSTATE, drops a broken
 * connection, and waits with backoff while polling paused. Returns false when the
 * caller must give up (fatal error, or the shutdown deadline passed). */
static bool db_retry_wait(worker_t *w, int *attempt, const char *sqlstate, const char *what,
			  const char *errstr)
{
	char labels[64];
	const char *state = sqlstate[0] ? sqlstate : "none";
	int64_t wait = backoff_ms((*attempt)++, w->cfg->retry_max_ms);

	snprintf(labels, sizeof(labels), "sqlstate=\"%s\"", state);
	payq_metrics_add("payq_db_retries_total", labels, 1);
	log_warn("database error (SQLSTATE %s), retrying %s in %" PRId64 " ms: %s", state, what,
		 wait, errstr);
	if (!payq_apply_connected(w->apply)) {
		atomic_store(&w->db_ok, false);
		payq_apply_disconnect(w->apply);
	}
	return tick(w, (int)wait);
}

/* Applies items[0..n) in one transaction, retrying transient errors forever (until
 * shutdown) and splitting on a permanent error. Poison commands are appended to
 * poison[]. Returns 0, or -1 when the batch must be abandoned. */
static int apply_range(worker_t *w, payq_item_t *items, size_t n, const payq_progress_t *prog,
		       size_t nprog, size_t *poison, size_t *npoison, size_t base)
{
	char sqlstate[6], errstr[512];
	int attempt = 0;

	for (;;) {
		payq_apply_status_t st;
		int rc = payq_apply_connect(w->apply, errstr, sizeof(errstr));

		if (rc == -2) {
			log_error("%s", errstr);
			w->fatal = true;
			return -1;
		}
		if (rc == 0 && resync_progress(w, false))
			return -1; /* the batch is dropped; its partitions resume from the database */
		if (rc == 0) {
			st = payq_apply_batch(w->apply, items, n, prog, nprog, sqlstate, errstr,
					      sizeof(errstr));
			if (st == PAYQ_APPLY_OK) {
				atomic_store(&w->db_ok, true);
				return 0;
			}
			if (st == PAYQ_APPLY_PERMANENT ||
			    (!strcmp(sqlstate, "23505") && attempt >= 5))
				break;
		} else {
			snprintf(sqlstate, sizeof(sqlstate), "08000");
		}
		w->retried = true; /* its COMMIT may have landed all the same */
		if (!db_retry_wait(w, &attempt, sqlstate, "the batch", errstr))
			return -1;
	}

	/* A permanent error: one command made the database refuse. Split to find it. */
	if (n == 1) {
		payq_log_ctx_t ctx = {.topic = w->cfg->topic,
				      .partition = items[0].partition,
				      .offset = items[0].offset,
				      .command_id = items[0].cmd.command_id,
				      .order_id = items[0].cmd.order_id,
				      .trace_id = trace_id_of(&items[0])};
		payq_log(PAYQ_LOG_ERROR, &ctx, "database refused the command (SQLSTATE %s): %s",
			 sqlstate, errstr);
		w->poison_err[*npoison][0] = '\0';
		snprintf(w->poison_err[*npoison], sizeof(w->poison_err[0]), "SQLSTATE %s: %.150s",
			 sqlstate, errstr);
		poison[(*npoison)++] = base;
		return 0;
	}
	log_warn("permanent database error (SQLSTATE %s) in a batch of %zu; splitting: %s",
		 sqlstate, n, errstr);
	if (apply_range(w, items, n / 2, NULL, 0, poison, npoison, base) < 0 ||
	    apply_range(w, items + n / 2, n - n / 2, NULL, 0, poison, npoison, base + n / 2) < 0)
		return -1;
	/* Progress goes in its own transaction, after the poison is dead-lettered. */
	return 1;
}

/* Reads the idempotency key stored with each charge's payment, retrying database
 * errors. Returns 0, or -1 when the batch must be abandoned. */
static int read_keys(worker_t *w, size_t k)
{
	char errstr[512];
	int attempt = 0;

	for (;;) {
		int rc = payq_apply_connect(w->apply, errstr, sizeof(errstr));
		if (rc == -2) {
			log_error("%s", errstr);
			w->fatal = true;
			return -1;
		}
		if (rc == 0 && payq_apply_read_keys(w->apply, w->charges, k,
						    payq_gateway_key_retention_ms(w->gw)) == 0)
			return 0;
		if (rc == 0)
			snprintf(errstr, sizeof(errstr), "reading the idempotency keys failed");
		if (!db_retry_wait(w, &attempt, "08000", "the idempotency keys", errstr))
			return -1;
	}
}

/* Records the charges' results with progress. A permanent error (the database refuses
 * something the channel said) must not loop: each charge is then settled alone, and one
 * refused is recorded unknown with the error (settle_refused). */
static payq_apply_status_t settle_batch(worker_t *w, size_t k, const payq_progress_t *prog,
					size_t np, char sqlstate[6], char *errstr, size_t size)
{
	payq_apply_status_t st =
		payq_apply_settle(w->apply, w->charges, k, prog, np, sqlstate, errstr, size);

	if (st != PAYQ_APPLY_PERMANENT)
		return st;
	log_error("settle: the database refused the batch's results (SQLSTATE %s): %s; settling "
		  "them one by one", sqlstate, errstr);
	st = payq_apply_settle_each(w->apply, w->charges, k, sqlstate, errstr, size);
	if (st == PAYQ_APPLY_OK && np)
		st = payq_apply_settle(w->apply, NULL, 0, prog, np, sqlstate, errstr, size);
	/* Progress alone carries nothing from outside; a refusal of it is retried. */
	return st == PAYQ_APPLY_PERMANENT ? PAYQ_APPLY_TRANSIENT : st;
}

/* Gateway mode, steps 2 and 3: charges the batch's pending payments through the
 * channel, concurrently, with the idempotency keys stored with them, then records the
 * results and (when progress is given) the batch's consumer_progress in one
 * transaction, retrying that until it commits. The offsets are stored only after this.
 * Returns 0, or -1 when the batch is abandoned: its pays are then still pending and
 * resume, with the same keys, on redelivery. */
static int charge_and_settle(worker_t *w, size_t n, const payq_progress_t *prog, size_t np)
{
	char sqlstate[6], errstr[512];
	size_t k = 0;
	int attempt = 0;

	for (size_t i = 0; i < n; i++) {
		const payq_item_t *it = &w->items[i];
		payq_charge_t *c = &w->charges[k];
		if (!it->charge)
			continue;
		memset(c, 0, sizeof(*c));
		/* The channel's request is a child span of the command's trace. */
		if (it->trace.valid && payq_trace_child(&it->trace, c->traceparent,
							 sizeof(c->traceparent)) == 0)
			c->tracestate = it->trace.tracestate;
		c->order_id = it->cmd.order_id;
		c->command_id = it->cmd.command_id;
		c->amount_minor = it->cmd.amount_minor;
		c->currency = it->cmd.currency;
		c->payer_id = it->cmd.has_payer_id ? it->cmd.payer_id : NULL;
		c->retry = it->outcome == PAYQ_OUT_DUPLICATE;
		w->charge_item[k++] = i;
	}
	if (!k)
		return 0;
	/* A fatal error met while the batch was applied: charge nothing; the pays stay
	 * pending and resume, with the same keys, on redelivery. */
	if (w->fatal)
		return -1;
	if (read_keys(w, k))
		return -1;
	payq_crash_point("before_charge");
	payq_gateway_charge(w->gw, w->charges, k);
	payq_crash_point("after_charge");

	for (;;) {
		int rc = payq_apply_connect(w->apply, errstr, sizeof(errstr));
		if (rc == -2) {
			log_error("%s", errstr);
			w->fatal = true;
			return -1;
		}
		/* A new session may be a server that never saw the batch's pending payments:
		 * re-apply the batch there; the charges repeat with the same keys. */
		if (rc == 0 && resync_progress(w, true))
			return -1;
		if (rc == 0 && settle_batch(w, k, prog, np, sqlstate, errstr, sizeof(errstr)) ==
				       PAYQ_APPLY_OK)
			break;
		if (rc != 0)
			snprintf(sqlstate, sizeof(sqlstate), "08000");
		if (!db_retry_wait(w, &attempt, sqlstate, "the gateway results", errstr))
			return -1;
	}
	atomic_store(&w->db_ok, true);
	for (size_t j = 0; j < k; j++) {
		const payq_charge_t *c = &w->charges[j];
		payq_item_t *it = &w->items[w->charge_item[j]];
		payq_log_ctx_t ctx = {.topic = w->cfg->topic,
				      .partition = it->partition,
				      .offset = it->offset,
				      .command_id = c->command_id,
				      .order_id = c->order_id,
				      .trace_id = trace_id_of(it)};
		if (c->status == PAYQ_CHARGE_UNKNOWN || c->status == PAYQ_CHARGE_MISMATCH)
			payq_log(PAYQ_LOG_WARN, &ctx, "payment of order %s unknown, left to the "
				 "reconciler: %s", c->order_id, c->detail);
		if (c->status == PAYQ_CHARGE_MISMATCH &&
		    payq_apply_payment_anomaly(w->apply, "charge_mismatch", c->order_id,
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
	return 0;
}

/* One debug line per command of a committed batch, with its order, command and trace. */
static void log_outcomes(const worker_t *w, const payq_item_t *items, size_t n)
{
	if (payq_log_level < PAYQ_LOG_DEBUG)
		return;
	for (size_t i = 0; i < n; i++) {
		const payq_item_t *it = &items[i];
		payq_log_ctx_t ctx = {.topic = w->cfg->topic,
				      .partition = it->partition,
				      .offset = it->offset,
				      .command_id = it->cmd.command_id,
				      .order_id = it->cmd.order_id,
				      .trace_id = trace_id_of(it)};
		payq_log(PAYQ_LOG_DEBUG, &ctx, "%s: %s", payq_cmd_type_name(it->cmd.type),
			 payq_outcome_name(it->outcome));
	}
}

/* What the metrics count for item i of the batch: the committed outcome. Poison has
 * none (its evaluation was rolled back; it was dead-lettered), and after a retry a
 * duplicate of the message's own row is the row's outcome: the first COMMIT landed. */
static payq_outcome_t committed_outcome(const worker_t *w, size_t i, const size_t *poison,
					size_t npoison)
{
	const payq_item_t *it = &w->items[i];

	for (size_t j = 0; j < npoison; j++)
		if (poison[j] == i)
			return PAYQ_OUT__CNT;
	if (it->outcome == PAYQ_OUT_DUPLICATE && it->own_row && w->retried)
		return it->recorded;
	return it->outcome;
}

static void count_outcomes(const worker_t *w, size_t n, const size_t *poison, size_t npoison)
{
	size_t counts[PAYQ_CMD_CANCEL_ORDER + 1][PAYQ_OUT__CNT + 1];

	memset(counts, 0, sizeof(counts));
	for (size_t i = 0; i < n; i++)
		counts[w->items[i].cmd.type][committed_outcome(w, i, poison, npoison)]++;
	for (int t = PAYQ_CMD_CREATE_ORDER; t <= PAYQ_CMD_CANCEL_ORDER; t++) {
		for (int o = 0; o < PAYQ_OUT__CNT; o++) {
			char labels[96];
			if (!counts[t][o])
				continue;
			if (o == PAYQ_OUT_DUPLICATE) {
				payq_metrics_add("payq_duplicates_total", NULL, (double)counts[t][o]);
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
static size_t batch_progress(const worker_t *w, payq_progress_t *prog)
{
	size_t np = 0;

	for (size_t i = 0; i < w->nbatch; i++) {
		const rd_kafka_message_t *m = w->batch[i].msg;
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
static void store_offsets(worker_t *w, const payq_progress_t *prog, size_t np)
{
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

static void commit(worker_t *w, bool sync)
{
	rd_kafka_resp_err_t err;

	if (!w->commit_dirty || w->fatal)
		return;
	/* One async commit at a time. librdkafka retries a commit that met a retriable
	 * error (a coordinator still loading after a broker restart), and a retried older
	 * commit can land after a newer one: the committed offset would move backwards
	 * (seen in the long chaos soak). The offsets stay stored and dirty, so the next
	 * commit, after this one's callback, carries them. (A callback lost in a rebalance
	 * must not stop commits for good: after 10 s the next one goes anyway.) */
	if (!sync && w->async_commit_ms && payq_now_ms() - w->async_commit_ms < 10000)
		return;
	if (sync) {
		err = rd_kafka_commit(w->rk, NULL, 0);
	} else {
		rd_kafka_queue_t *q = rd_kafka_queue_get_consumer(w->rk);
		err = q ? rd_kafka_commit_queue(w->rk, NULL, q, async_commit_cb, w) :
			  RD_KAFKA_RESP_ERR__UNKNOWN_GROUP;
		if (q)
			rd_kafka_queue_destroy(q); /* the commit keeps its own reference */
	}
	if (err && err != RD_KAFKA_RESP_ERR__NO_OFFSET) {
		payq_metrics_add("payq_commit_errors_total", NULL, 1);
		log_warn("offset commit: %s", rd_kafka_err2str(err));
		return;
	}
	if (!sync && !err)
		w->async_commit_ms = payq_now_ms();
	if (sync)
		payq_metrics_set("payq_last_commit_timestamp_seconds", NULL,
				 (double)payq_wall_ms() / 1000.0);
	w->commit_dirty = false;
}

/* Decodes the batch and collects valid commands into w->items. Returns their count. */
static size_t decode_batch(worker_t *w, size_t *ndead)
{
	size_t n = 0;

	*ndead = 0;
	for (size_t i = 0; i < w->nbatch; i++) {
		entry_t *e = &w->batch[i];
		rd_kafka_message_t *m = e->msg;
		payq_item_t *it = &w->items[n];
		rd_kafka_timestamp_type_t tstype;

		e->reason = payq_codec_decode(m->key ? m->key : "", m->key ? m->key_len : 0,
					      m->payload, m->len, &it->cmd, e->error,
					      sizeof(e->error));
		if (e->reason != PAYQ_REASON_OK) {
			payq_dlq_entry_t *d = &w->dead[(*ndead)++];
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
static bool stale_position(worker_t *w)
{
	int32_t partition = -1;

	if (!payq_apply_progress_stale(w->apply, &partition))
		return false;
	log_error("consumer_progress of %s/%" PRId32 " was reset (payq-replay reset-offsets) "
		  "while this worker was out of the group; its position is stale: exiting "
		  "without storing offsets, a restart resumes from the reset offsets",
		  w->cfg->topic, partition);
	w->fatal = true;
	return true;
}

/* Settles one batch: DLQ copies persisted, then one database transaction with the
 * outcomes and consumer_progress, then offsets stored and committed. Returns 0, or -1
 * when the batch was abandoned (shutdown deadline or fatal error): nothing of it is
 * stored, so it will be delivered again. */
static int process_batch(worker_t *w)
{
	payq_progress_t *prog = w->prog;
	size_t *poison = w->poison;
	size_t ndead, n, np, npoison = 0;
	int64_t t0 = payq_now_us();
	int rc;

	w->retried = false;
#ifdef PAYQ_CRASH_POINTS
	if (payq_fault_point("kafka_fatal"))
		payq_dlq_test_fatal(w->dlq);
#endif
	/* After a fatal error nothing more is applied (nor charged): the batch in hand,
	 * perhaps cut short by the error, is delivered again to the next owner. */
	if (w->fatal)
		return -1;
	n = decode_batch(w, &ndead);
	np = batch_progress(w, prog);

	/* The offset rule: DLQ copies are PERSISTED before consumer_progress moves past
	 * them, and offsets are stored only after the database COMMIT. */
	if (ndead && payq_dlq_deliver(w->dlq, w->dead, ndead, tick, w)) {
		w->fatal = w->fatal || payq_dlq_fatal(w->dlq, NULL, 0);
		return -1;
	}
	for (size_t i = 0; i < ndead; i++) {
		char labels[64], order_id[PAYQ_ID_MAX + 1];
		const rd_kafka_message_t *m = w->dead[i].msg;
		payq_trace_t trace;
		payq_log_ctx_t ctx = {.topic = w->cfg->topic, .partition = m->partition,
				      .offset = m->offset};
		/* The key names the order when it is a valid ID; the value may be anything. */
		ctx.order_id = payq_codec_key_order_id(m->key, m->key_len, order_id);
		payq_trace_from_message(m, &trace);
		ctx.trace_id = trace.valid ? trace.trace_id : NULL;
		snprintf(labels, sizeof(labels), "reason=\"%s\"", w->dead[i].reason);
		payq_metrics_add("payq_dlq_total", labels, 1);
		payq_log(PAYQ_LOG_WARN, &ctx, "dead-lettered%s: %s: %s",
			 w->dead[i].truncated ? " (truncated copy: too_large_for_dlq)" : "",
			 w->dead[i].reason, w->dead[i].error);
	}

#ifdef PAYQ_MUTATION_STORE_BEFORE_COMMIT
	/* Deliberately broken build: offsets are stored and committed before the database
	 * transaction, so a crash in between loses the batch. */
	store_offsets(w, prog, np);
	commit(w, true);
#endif
	rc = apply_range(w, w->items, n, prog, np, poison, &npoison, 0);
	if (rc < 0)
		return -1;
	/* Gateway mode: charge, then settle. With the whole batch applied at once, the
	 * settle carries the progress that the apply left out; after a split, progress
	 * follows the poison below, as in ledger mode. */
	if (w->gw && charge_and_settle(w, n, rc == 0 && !npoison ? prog : NULL,
				       rc == 0 && !npoison ? np : 0))
		return -1;
	if (rc > 0 || npoison) {
		/* Poison found by splitting: dead-letter it, then write the progress. */
		char sqlstate[6], errstr[256];
		for (size_t i = 0; i < npoison; i++) {
			payq_item_t *it = &w->items[poison[i]];
			for (size_t j = 0; j < w->nbatch; j++) {
				rd_kafka_message_t *m = w->batch[j].msg;
				if (m->partition == it->partition && m->offset == it->offset) {
					w->dead[i].msg = m;
					w->dead[i].reason = "db_rejected";
					snprintf(w->dead[i].error, sizeof(w->dead[i].error),
						 "database refused the command: %.200s",
						 w->poison_err[i]);
				}
			}
		}
		if (npoison && payq_dlq_deliver(w->dlq, w->dead, npoison, tick, w)) {
			w->fatal = w->fatal || payq_dlq_fatal(w->dlq, NULL, 0);
			return -1;
		}
		while (payq_apply_batch(w->apply, NULL, 0, prog, np, sqlstate, errstr,
					sizeof(errstr)) != PAYQ_APPLY_OK) {
			log_warn("writing progress: %s", errstr);
			if (!tick(w, 500) || payq_apply_connect(w->apply, errstr, sizeof(errstr)) == -2)
				return -1;
		}
	}
	payq_crash_point("after_db_commit");
	if (w->paused)
		set_paused(w, false);

	if (stale_position(w))
		return -1;
	/* A fatal error means nothing more is stored, even for a committed batch: the
	 * dedup table absorbs its redelivery. */
	if (w->fatal || payq_dlq_fatal(w->dlq, NULL, 0)) {
		w->fatal = true;
		return -1;
	}
	store_offsets(w, prog, np);
	commit(w, !strcmp(w->cfg->commit_mode, "sync"));

	{
		int64_t now_wall = payq_wall_ms();
		for (size_t i = 0; i < n; i++)
			if (w->items[i].timestamp_ms > 0)
				payq_metrics_observe("payq_commit_latency_seconds", NULL,
						     (double)(now_wall - w->items[i].timestamp_ms) /
							     1000.0);
	}
	count_outcomes(w, n, poison, npoison);
		log_outcomes(w, w->items, n);
	payq_metrics_observe("payq_batch_size", NULL, (double)w->nbatch);
	payq_metrics_observe("payq_batch_duration_seconds", NULL,
			     (double)(payq_now_us() - t0) / 1e6);
	log_debug("batch of %zu applied (%zu valid, %zu dead-lettered)", w->nbatch, n, ndead);
	return 0;
}

static void release_batch(worker_t *w)
{
	for (size_t i = 0; i < w->nbatch; i++)
		rd_kafka_message_destroy(w->batch[i].msg);
	w->nbatch = 0;
}

/* ---- setup and the loop ---- */

static rd_kafka_t *make_consumer(worker_t *w, char *errstr, size_t errstr_size)
{
	/* Its properties, and the ones -X may not change, are in common/kafka_clients.c. */
	rd_kafka_conf_t *conf;
	rd_kafka_t *rk;
	char strategy[128];
	size_t sz = sizeof(strategy);

	conf = payq_kafka_conf_new(w->cfg, PAYQ_KAFKA_WORKER_CONSUMER, errstr, errstr_size);
	if (!conf)
		return NULL;
	rd_kafka_conf_set_opaque(conf, w);
	rd_kafka_conf_set_error_cb(conf, error_cb);
	rd_kafka_conf_set_rebalance_cb(conf, rebalance_cb);
	rd_kafka_conf_set_offset_commit_cb(conf, commit_cb);
	rd_kafka_conf_set_stats_cb(conf, stats_cb);
	if (rd_kafka_conf_get(conf, "partition.assignment.strategy", strategy, &sz) ==
	    RD_KAFKA_CONF_OK)
		w->cooperative = strstr(strategy, "cooperative") != NULL;
	rk = rd_kafka_new(RD_KAFKA_CONSUMER, conf, errstr, errstr_size);
	if (!rk) {
		rd_kafka_conf_destroy(conf);
		return NULL;
	}
	rd_kafka_poll_set_consumer(rk);
	return rk;
}

static int subscribe(worker_t *w, char *errstr, size_t errstr_size)
{
	rd_kafka_topic_partition_list_t *topics = rd_kafka_topic_partition_list_new(1);
	rd_kafka_resp_err_t err;

	rd_kafka_topic_partition_list_add(topics, w->cfg->topic, RD_KAFKA_PARTITION_UA);
	err = rd_kafka_subscribe(w->rk, topics);
	rd_kafka_topic_partition_list_destroy(topics);
	if (err)
		return payq_err(errstr, errstr_size, "subscribe to %s: %s", w->cfg->topic,
				rd_kafka_err2str(err));
	return 0;
}

/* Milliseconds left before the shutdown deadline (never below 0). */
static int shutdown_left_ms(const worker_t *w)
{
	int64_t left = w->stop_deadline_ms - payq_now_ms();
	return left > 0 ? (int)left : 0;
}

static void final_commit_cb(rd_kafka_t *rk, rd_kafka_resp_err_t err,
			    rd_kafka_topic_partition_list_t *offsets, void *opaque)
{
	(void)rk;
	(void)offsets;
	*(rd_kafka_resp_err_t *)opaque = err;
}

/* The last commit, bounded by the shutdown deadline: a synchronous rd_kafka_commit()
 * waits for the coordinator for as long as it takes. Offsets it could not commit are
 * behind, never ahead: the next owner redelivers them and the dedup table absorbs it. */
static void final_commit(worker_t *w)
{
	rd_kafka_queue_t *q;
	rd_kafka_resp_err_t err = RD_KAFKA_RESP_ERR__IN_PROGRESS;

	if (!w->commit_dirty || w->fatal || !(q = rd_kafka_queue_new(w->rk)))
		return;
	if (!rd_kafka_commit_queue(w->rk, NULL, q, final_commit_cb, &err))
		while (err == RD_KAFKA_RESP_ERR__IN_PROGRESS && shutdown_left_ms(w) > 0)
			rd_kafka_queue_poll_callback(q, shutdown_left_ms(w) < 100 ?
								shutdown_left_ms(w) : 100);
	else
		err = RD_KAFKA_RESP_ERR__NO_OFFSET;
	if (err == RD_KAFKA_RESP_ERR__IN_PROGRESS)
		log_warn("final offset commit: no answer before the shutdown deadline");
	else if (err && err != RD_KAFKA_RESP_ERR__NO_OFFSET)
		log_warn("final offset commit: %s", rd_kafka_err2str(err));
	else
		payq_metrics_set("payq_last_commit_timestamp_seconds", NULL,
				 (double)payq_wall_ms() / 1000.0);
	/* Done or given up: the revoke during close must not commit again, unbounded. */
	w->commit_dirty = false;
	rd_kafka_queue_destroy(q);
}

/* Leaves the group, bounded by the shutdown deadline. Close leaves the group (a static
 * member stays until session.timeout.ms, which is the point of static membership) and
 * runs the final revoke, here on a queue served until the deadline: its rebalance
 * events go to rebalance_cb, anything else (messages still fetched) is dropped.
 * Returns true when the consumer closed. */
static bool close_consumer(worker_t *w)
{
	rd_kafka_queue_t *q = rd_kafka_queue_new(w->rk);
	rd_kafka_error_t *error;
	bool closed;

	if (!q)
		return false;
	if ((error = rd_kafka_consumer_close_queue(w->rk, q))) {
		log_warn("closing the consumer: %s", rd_kafka_error_string(error));
		rd_kafka_error_destroy(error);
	}
	while (!(closed = rd_kafka_consumer_closed(w->rk)) && shutdown_left_ms(w) > 0) {
		rd_kafka_event_t *ev = rd_kafka_queue_poll(q, shutdown_left_ms(w) < 100 ?
								      shutdown_left_ms(w) : 100);
		if (ev && rd_kafka_event_type(ev) == RD_KAFKA_EVENT_REBALANCE)
			rebalance_cb(w->rk, rd_kafka_event_error(ev),
				     rd_kafka_event_topic_partition_list(ev), w);
		if (ev)
			rd_kafka_event_destroy(ev);
	}
	if (!closed)
		log_warn("the consumer did not close before the shutdown deadline; leaving anyway");
	rd_kafka_queue_destroy(q);
	return closed;
}

static void shutdown_worker(worker_t *w)
{
	bool closed = true;

	if (!w->stop_deadline_ms) /* a start that failed */
		w->stop_deadline_ms = payq_now_ms() + 5000;
	/* It abandons its gateway calls and winds down meanwhile. */
	payq_reconciler_request_stop(w->reconciler);
	if (w->rk) {
		final_commit(w);
		if (!w->fatal)
			closed = close_consumer(w);
	}
	payq_dlq_destroy(w->dlq, shutdown_left_ms(w));
	for (size_t i = 0; i < w->nheld; i++)
		rd_kafka_message_destroy(w->held[i].msg);
	release_batch(w);
	/* After a fatal error librdkafka 2.0.2 refuses the consumer close, and a plain
	 * destroy then waits for it for ever. Destroying a consumer whose close is still
	 * under way would wait for that close too: past the deadline it is left to the
	 * process exit, and the group drops the member after session.timeout.ms. */
	if (w->rk && w->fatal)
		rd_kafka_destroy_flags(w->rk, RD_KAFKA_DESTROY_F_NO_CONSUMER_CLOSE);
	else if (w->rk && closed)
		rd_kafka_destroy(w->rk);
	payq_http_stop(w->http);
	payq_reconciler_stop(w->reconciler);
	payq_gateway_destroy(w->gw);
	payq_apply_destroy(w->apply);
	free(w->charges);
	free(w->charge_item);
	free(w->batch);
	free(w->held);
	free(w->items);
	free(w->dead);
	free(w->prog);
	free(w->poison);
	free(w->poison_err);
}

int payq_consume_run(payq_config_t *cfg)
{
	worker_t w;
	char errstr[512];
	int rc = PAYQ_EXIT_OK, crc;
	int64_t last_ping = 0;

	memset(&w, 0, sizeof(w));
	w.cfg = cfg;
	atomic_store(&w.last_poll_ms, payq_now_ms());
	payq_worker_metrics_init();

	w.batch = calloc((size_t)cfg->batch_max, sizeof(*w.batch));
	w.items = calloc((size_t)cfg->batch_max, sizeof(*w.items));
	w.dead = calloc((size_t)cfg->batch_max, sizeof(*w.dead));
	w.prog = calloc((size_t)cfg->batch_max, sizeof(*w.prog));
	w.poison = calloc((size_t)cfg->batch_max, sizeof(*w.poison));
	w.poison_err = calloc((size_t)cfg->batch_max, sizeof(*w.poison_err));
	w.charges = calloc((size_t)cfg->batch_max, sizeof(*w.charges));
	w.charge_item = calloc((size_t)cfg->batch_max, sizeof(*w.charge_item));
	w.apply = payq_apply_new(cfg->db, cfg->group, cfg->topic);
	if (!w.batch || !w.items || !w.dead || !w.prog || !w.poison || !w.poison_err ||
	    !w.charges || !w.charge_item || !w.apply) {
		log_error("out of memory");
		rc = PAYQ_EXIT_RUNTIME;
		goto out;
	}

	if (!strcmp(cfg->payment_mode, "gateway")) {
		int64_t *delays;
		size_t ndelays;
		if (payq_reconcile_parse_schedule(cfg->reconcile_schedule, &delays, &ndelays, errstr,
						  sizeof(errstr)) ||
		    !(w.gw = payq_gateway_new(cfg, errstr, sizeof(errstr)))) {
			log_error("%s", errstr);
			rc = PAYQ_EXIT_USAGE;
			goto out;
		}
		payq_apply_set_gateway(w.apply, delays[0]);
		/* A slow channel must not starve the consumer: keep polling, paused. */
		payq_gateway_set_idle(w.gw, tick, &w);
		free(delays);
		log_info("payment mode gateway: charging through %s (timeout %" PRId64
			 " ms, %" PRId64 " at once)", cfg->gateway_url, cfg->gateway_timeout_ms,
			 cfg->gateway_concurrency);
	}
	if (!strcmp(cfg->reconcile, "on") || (!strcmp(cfg->reconcile, "auto") && w.gw)) {
		w.reconciler = payq_reconciler_start(cfg, errstr, sizeof(errstr));
		if (!w.reconciler) {
			log_error("reconciler: %s", errstr);
			rc = PAYQ_EXIT_USAGE;
			goto out;
		}
	}

	/* A schema that is too old stops the worker before it joins the group. */
	crc = payq_apply_connect(w.apply, errstr, sizeof(errstr));
	if (crc == -2) {
		log_error("%s", errstr);
		rc = PAYQ_EXIT_SCHEMA;
		goto out;
	}
	if (crc == -1)
		log_warn("database not reachable yet, will retry: %s", errstr);
	atomic_store(&w.db_ok, crc == 0);

	if (cfg->http_addr && *cfg->http_addr) {
		w.http = payq_http_start(cfg->http_addr, healthz, readyz, &w, errstr,
					 sizeof(errstr));
		if (!w.http) {
			log_error("%s", errstr);
			rc = PAYQ_EXIT_USAGE;
			goto out;
		}
		log_info("serving /metrics, /healthz and /readyz on port %d",
			 payq_http_port(w.http));
	}

	w.dlq = payq_dlq_new(cfg, errstr, sizeof(errstr));
	if (!w.dlq) {
		log_error("DLQ producer: %s", errstr);
		rc = PAYQ_EXIT_USAGE;
		goto out;
	}
	w.rk = make_consumer(&w, errstr, sizeof(errstr));
	if (!w.rk) {
		log_error("consumer: %s", errstr);
		rc = PAYQ_EXIT_USAGE;
		goto out;
	}
	if (subscribe(&w, errstr, sizeof(errstr))) {
		log_error("%s", errstr);
		rc = PAYQ_EXIT_RUNTIME;
		goto out;
	}
	log_info("consuming %s as group %s (batch %" PRId64 ", wait %" PRId64 " ms, commit %s)",
		 cfg->topic, cfg->group, cfg->batch_max, cfg->batch_wait_ms, cfg->commit_mode);

	while (!w.fatal) {
		/* After a signal: stop fetching, finish the batch already polled, then stop. */
		if (!collect(&w) && !payq_run)
			break;
		if (w.nbatch) {
			w.in_flight = true;
		crc = process_batch(&w);
		w.in_flight = false;
		if (crc && w.rewound) {
			/* Dropped for a rewind, not abandoned: go on from the database. */
			w.rewound = false;
			crc = 0;
		}
		if (crc) {
				rc = PAYQ_EXIT_RUNTIME;
				break;
			}
			release_batch(&w);
			continue;
		}
		/* Idle: flush a pending commit and keep readiness honest. */
		commit(&w, false);
		if (payq_now_ms() - last_ping > 5000) {
			last_ping = payq_now_ms();
			if (payq_apply_connect(w.apply, errstr, sizeof(errstr)) == 0) {
				/* A new session while idle: the lost tail, if any, is re-applied
				 * now rather than when traffic comes. */
				resync_progress(&w, false);
				w.rewound = false;
				atomic_store(&w.db_ok, payq_apply_ping(w.apply) == 0);
			} else {
				atomic_store(&w.db_ok, false);
			}
		}
		if (payq_dlq_fatal(w.dlq, errstr, sizeof(errstr))) {
			log_error("fatal DLQ producer error: %s", errstr);
			w.fatal = true;
		}
	}
	if (w.fatal) {
		if (payq_dlq_fatal(w.dlq, errstr, sizeof(errstr)))
			log_error("fatal DLQ producer error: %s", errstr);
		rc = PAYQ_EXIT_RUNTIME;
	}
	if (!w.stop_deadline_ms)
		w.stop_deadline_ms = payq_now_ms() + cfg->shutdown_timeout_ms;
	log_info("shutting down");
out:
	shutdown_worker(&w);
	return rc;
}
