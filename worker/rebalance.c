/* rebalance.c - assign and revoke: the drift check between Kafka's offsets and
 * consumer_progress (plan_resume, worker_resync_progress), and dropping the polled
 * messages of revoked partitions. */
#include "worker.h"

#include "consume.h"

#include <inttypes.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "crash.h"
#include "lag.h"
#include "log.h"
#include "metrics.h"

static bool in_list(const rd_kafka_topic_partition_list_t *parts, const rd_kafka_message_t *m)
{
	for (int i = 0; i < parts->cnt; i++)
		if (parts->elems[i].partition == m->partition &&
		    !strcmp(parts->elems[i].topic, rd_kafka_topic_name(m->rkt)))
			return true;
	return false;
}

/* Forgets lane l's polled messages of revoked partitions; their new owner gets them
 * again from the committed offset, so nothing is lost. Keeps the rest in order.
 * Returns how many it dropped. */
static size_t drop_lane_partitions(lane_t *l, const rd_kafka_topic_partition_list_t *parts)
{
	size_t k = 0, dropped = 0;

	/* A batch being settled keeps its messages: the DLQ copies point at them, and
	 * applying them anyway is safe (the dedup table and the order locks serialise
	 * us with the new owner; storing their offsets just fails). */
	for (size_t i = 0; i < l->nbatch && !l->in_flight; i++) {
		if (in_list(parts, l->batch[i].msg)) {
			rd_kafka_message_destroy(l->batch[i].msg);
			dropped++;
		} else {
			l->batch[k++] = l->batch[i];
		}
	}
	if (!l->in_flight)
		l->nbatch = k;
	k = 0;
	for (size_t i = 0; i < l->nheld; i++) {
		if (in_list(parts, l->held[i].msg)) {
			rd_kafka_message_destroy(l->held[i].msg);
			dropped++;
		} else {
			l->held[k++] = l->held[i];
		}
	}
	l->nheld = k;
	return dropped;
}

static void drop_partitions(worker_t *w, const rd_kafka_topic_partition_list_t *parts)
{
	size_t dropped = 0;

	for (int i = 0; i < w->nlanes; i++)
		dropped += drop_lane_partitions(&w->lanes[i], parts);
	if (dropped)
		log_info("dropped %zu uncommitted messages of revoked partitions", dropped);
}

/* ---- the database is the truth for progress (DESIGN.md, "Worker behaviour") ---- */

/* Where a partition resumes, next to Kafka's idea of it (the committed offset on assign,
 * the worker's own position after a new database session). */
typedef enum {
	RESUME_KAFKA,	/* Kafka and the database agree, or the database has no row */
	RESUME_FORWARD, /* Kafka behind the database: seek forward */
	RESUME_BACK,	/* Kafka ahead (the database lost commits): seek back, re-apply */
	RESUME_GAP,	/* the database's offset is no longer safe to re-apply from */
} resume_t;

/* The earliest offset of a partition that can still be re-applied safely: nothing below
 * the low watermark exists any more, and a message older than the dedup horizon may
 * have lost its dedup row. Returns -1 when the broker does not say. */
static int64_t safe_floor(lane_t *l, const char *topic, int32_t partition)
{
	worker_t *w = l->w;
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
	if (payq_apply_read_horizon(l->apply, &horizon_ms) || horizon_ms <= 0)
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
static resume_t plan_resume(lane_t *l, const char *topic, int32_t partition, int64_t kafka,
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
	floor = safe_floor(l, topic, partition);
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
		payq_apply_anomaly(l->apply, "offset_gap", partition, db, detail);
		payq_metrics_add("payq_anomalies_total", "kind=\"offset_gap\"", 1);
		return *target == kafka ? RESUME_KAFKA : RESUME_GAP;
	}
	snprintf(detail, sizeof(detail),
		 "%s %" PRId64 " is ahead of consumer_progress %" PRId64
		 ": the database lost commits (failover or restore?); seeking back to re-apply",
		 what, kafka, db);
	payq_log(PAYQ_LOG_WARN, &ctx, "progress_rewind: %s", detail);
	payq_apply_anomaly(l->apply, "progress_rewind", partition, kafka, detail);
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
	lane_t *l = &w->lanes[0]; /* any lane's connection reads the same rows */

	if (!parts->cnt)
		return;
	/* While the database is known to be down, do not stall the rebalance on it: the
	 * first batch after the reconnect compares positions instead (worker_resync_progress). */
	if (!atomic_load(&w->db_ok) && !payq_apply_connected(l->apply)) {
		log_warn("drift check skipped: database unavailable");
		return;
	}
	if (payq_apply_connect(l->apply, errstr, sizeof(errstr))) {
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
		int64_t db, kafka = c->offset >= 0 ? c->offset : 0, target;
		payq_progress_read_t pr = payq_apply_read_progress(l->apply, c->partition, &db);

		if (pr == PAYQ_PROGRESS_NONE && c->offset >= 0) {
			payq_log_ctx_t ctx = {
				.topic = c->topic, .partition = c->partition, .offset = c->offset};
			char detail[160];
			snprintf(detail, sizeof(detail),
				 "committed offset %" PRId64 " but no consumer_progress row (a new "
				 "database?): trusting Kafka",
				 c->offset);
			payq_log(PAYQ_LOG_WARN, &ctx, "no_progress: %s", detail);
			payq_apply_anomaly(l->apply, "no_progress", c->partition, c->offset,
					   detail);
			payq_metrics_add("payq_anomalies_total", "kind=\"no_progress\"", 1);
		}
		if (pr != PAYQ_PROGRESS_FOUND || db < 0)
			continue; /* no progress row, or the read failed: trust Kafka */
		if (plan_resume(l, c->topic, c->partition, kafka, db, "committed offset",
				&target) == RESUME_KAFKA)
			continue;
		parts->elems[i].offset = target;
		rd_kafka_topic_partition_list_add(moved, c->topic, c->partition)->offset = target;
	}
	rd_kafka_topic_partition_list_destroy(committed);
	/* This session's progress has been read: no resync needed for it. */
	l->progress_gen = payq_apply_generation(l->apply);
}

/* The next offset this worker would apply in a partition: its first message in the
 * batch or held back, else the consumer's position. -1 when it has consumed nothing. */
static int64_t next_to_apply(const lane_t *l, const rd_kafka_topic_partition_t *p)
{
	for (size_t i = 0; i < l->nbatch; i++)
		if (l->batch[i].msg->partition == p->partition)
			return l->batch[i].msg->offset; /* poll order: the first is the lowest */
	for (size_t i = 0; i < l->nheld; i++)
		if (l->held[i].msg->partition == p->partition)
			return l->held[i].msg->offset;
	return p->offset >= 0 ? p->offset : -1;
}

/* worker_resync_progress found a rewind: drops the batch and the held messages, seeks
 * the partitions in seek that move (from their positions in parts) and stores the
 * offsets of those in moved, the database's. */
static void rewind_partitions(lane_t *l, const rd_kafka_topic_partition_list_t *parts,
			      rd_kafka_topic_partition_list_t *seek,
			      rd_kafka_topic_partition_list_t *moved)
{
	worker_t *w = l->w;
	rd_kafka_error_t *error;

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
		 "polled messages and seeking %d partitions back",
		 l->nbatch + l->nheld, seek->cnt);
	for (size_t i = 0; i < l->nheld; i++)
		rd_kafka_message_destroy(l->held[i].msg);
	l->nheld = 0;
	for (size_t i = 0; i < l->nbatch; i++)
		rd_kafka_message_destroy(l->batch[i].msg);
	l->nbatch = 0;
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
	l->rewound = true;
	worker_set_paused(l, false);
}

/* After a new database session of lane l, before the batch goes to it: the server may
 * be a promoted replica or a restored backup that lost the last commits, whose
 * consumer_progress is behind what this worker consumed. Then every assigned partition
 * of the lane resumes from the database (plan_resume), the lane's batch and held
 * messages are dropped and their partitions sought back to their first message (each
 * lane compares its own partitions on its own session); returns true (the caller
 * abandons the batch). force: the batch was already applied on the previous session
 * (gateway mode, before its settle), so it is re-applied whatever the progress says. */
bool worker_resync_progress(lane_t *l, bool force)
{
	worker_t *w = l->w;
	rd_kafka_topic_partition_list_t *parts = NULL, *seek, *moved;
	bool rewound = force;

	if (payq_apply_generation(l->apply) == l->progress_gen)
		return false;
	l->progress_gen = payq_apply_generation(l->apply);
	if (rd_kafka_assignment(w->rk, &parts) || !parts->cnt || rd_kafka_position(w->rk, parts)) {
		if (parts)
			rd_kafka_topic_partition_list_destroy(parts);
		return false;
	}
	seek = rd_kafka_topic_partition_list_new(parts->cnt);
	moved = rd_kafka_topic_partition_list_new(parts->cnt);
	for (int i = 0; i < parts->cnt; i++) {
		rd_kafka_topic_partition_t *p = &parts->elems[i];
		int64_t next, db, target;
		payq_progress_read_t pr;
		resume_t r;

		/* Another lane's partition, or nothing consumed: it starts where the assign
		 * put it. */
		if (worker_lane_of(w, p->partition) != l || (next = next_to_apply(l, p)) < 0)
			continue;
		pr = payq_apply_read_progress(l->apply, p->partition, &db);
		target = next;
		/* Only a database behind the position matters here: one ahead of it (a
		 * batch that committed before the connection broke) is absorbed by the
		 * dedup table, as before any failover. */
		r = pr != PAYQ_PROGRESS_FOUND || db < 0 || db >= next
			    ? RESUME_KAFKA
			    : plan_resume(l, p->topic, p->partition, next, db, "position", &target);
		if (r == RESUME_BACK || r == RESUME_GAP) {
			rewound = true;
			rd_kafka_topic_partition_list_add(moved, p->topic, p->partition)->offset =
				target;
		}
		rd_kafka_topic_partition_list_add(seek, p->topic, p->partition)->offset = target;
	}
	if (rewound)
		rewind_partitions(l, parts, seek, moved);
	rd_kafka_topic_partition_list_destroy(moved);
	rd_kafka_topic_partition_list_destroy(seek);
	rd_kafka_topic_partition_list_destroy(parts);
	return rewound;
}

/* Pauses or resumes each partition about to be assigned as its lane is, before the
 * assign. librdkafka keeps a partition's pause across revoke and reassign, so each one is
 * set explicitly either way.
 *
 * Why before: librdkafka (2.0.2) drops an operation on a partition as outdated once it
 * has served one with a newer version barrier. The assign's fetch start, in librdkafka's
 * main thread, takes its barrier and then queues itself; a pause or resume made from this
 * thread between the two takes a newer barrier and can be queued first. The fetch start
 * is then dropped, and the partition is never fetched, with no error: CI saw partition 3
 * of 6 stay unfetched for a minute, and tests/faults/assign_race.sh forces it.
 * rd_kafka_pause_partitions returns once its operation is served, so nothing of these can
 * overtake the start. (A pause the loop makes in the moments after an assign, a lane
 * entering the synchronous path say, could still meet it, if it fell between those two
 * steps of the start; the assign itself no longer makes one.)
 *
 * A partition librdkafka does not know yet (the first assign of a topic) has never been
 * paused. One of a paused lane is left running rather than paused after the assign, and
 * logged; its lane still counts as paused, and resuming the lane resumes it too. */
static void set_pauses(worker_t *w, rd_kafka_topic_partition_list_t *parts)
{
	rd_kafka_topic_partition_list_t *pause = rd_kafka_topic_partition_list_new(parts->cnt);
	rd_kafka_topic_partition_list_t *resume = rd_kafka_topic_partition_list_new(parts->cnt);
	for (int i = 0; i < parts->cnt; i++) {
		const rd_kafka_topic_partition_t *p = &parts->elems[i];
		rd_kafka_topic_partition_list_add(worker_lane_of(w, p->partition)->paused ? pause
											  : resume,
						  p->topic, p->partition);
	}
	if (pause->cnt)
		rd_kafka_pause_partitions(w->rk, pause);
	if (resume->cnt)
		rd_kafka_resume_partitions(w->rk, resume);
	for (int i = 0; i < pause->cnt; i++)
		if (pause->elems[i].err == RD_KAFKA_RESP_ERR__UNKNOWN_PARTITION)
			log_warn("partition %d of a paused lane was not known before its assign: "
				 "it runs until the lane pauses again",
				 (int)pause->elems[i].partition);
	for (int i = 0; i < resume->cnt; i++)
		if (resume->elems[i].err == RD_KAFKA_RESP_ERR__UNKNOWN_PARTITION)
			log_debug("partition %d not known before its assign",
				  (int)resume->elems[i].partition);
	rd_kafka_topic_partition_list_destroy(pause);
	rd_kafka_topic_partition_list_destroy(resume);
}

void worker_rebalance_cb(rd_kafka_t *rk, rd_kafka_resp_err_t err,
			 rd_kafka_topic_partition_list_t *parts, void *opaque)
{
	worker_t *w = opaque;
	rd_kafka_error_t *error = NULL;
	rd_kafka_resp_err_t ret = RD_KAFKA_RESP_ERR_NO_ERROR;

	payq_metrics_add("payq_rebalances_total", NULL, 1);
	/* A batch in flight on the lane finishes first (or is left to the synchronous
	 * path): the drift check needs the connection, and a finished batch's offsets are
	 * stored while its partitions are still assigned (consume.c, loop). */
	for (int i = 0; i < w->nlanes; i++)
		lane_quiesce(&w->lanes[i]);
	if (err == RD_KAFKA_RESP_ERR__ASSIGN_PARTITIONS) {
		log_info("assigned %d partitions (%s)", parts->cnt,
			 rd_kafka_rebalance_protocol(rk));
		rd_kafka_topic_partition_list_t *moved = rd_kafka_topic_partition_list_new(0);

		drift_check(w, parts, moved);
#ifndef PAYQ_MUTATION_PAUSE_AFTER_ASSIGN
		set_pauses(w, parts);
#endif
		if (w->cooperative)
			error = rd_kafka_incremental_assign(rk, parts);
		else
			ret = rd_kafka_assign(rk, parts);
		if (payq_fault_armed("assign_race"))
			usleep(100 * 1000); /* tests: this thread held up after the assign */
#ifdef PAYQ_MUTATION_PAUSE_AFTER_ASSIGN
		/* Deliberately broken build: the old order, pauses set after the assign. */
		set_pauses(w, parts);
#endif
		/* A partition moved has nothing settled beyond the database's offset, nor
		 * left to apply below it; store it now, so that Kafka's committed offset
		 * follows the database even before new traffic comes. */
		if (moved->cnt && !error && !ret && !rd_kafka_offsets_store(rk, moved))
			w->commit_dirty = true;
		rd_kafka_topic_partition_list_destroy(moved);
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
