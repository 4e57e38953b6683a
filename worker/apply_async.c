/* apply_async.c - the fast path of payq_apply_batch without blocking: the same two
 * round trips (apply.c's top comment), sent on a non-blocking connection in pipeline
 * mode, their results taken as they arrive, so that the worker's loop polls Kafka
 * meanwhile (lane.c). Anything but a clean COMMIT ends in PAYQ_ASYNC_FAILED, and the
 * caller settles the batch on the synchronous path instead.
 *
 * After a batch whose commands the dedup read found all (a replay, a redelivered
 * backlog), round trip 1 is split: the dedup read goes alone, and only the orders with a
 * command it did not find are locked, in a round trip of their own (none at all when it
 * found every one). A duplicate reads and writes nothing of its order, so its order needs
 * no lock; the lock that is taken still comes after the dedup read (model/README.md,
 * "Locks a replay does not take"). Any other batch reads and locks in one round trip,
 * which costs new commands no extra round trip. */
#include "apply_internal.h"

#include <stdio.h>
#include <string.h>

#include <libpq-fe.h>

#include "util.h"

static void clear_results(payq_apply_t *a)
{
	for (size_t i = 0; i < PAYQ_ARRAY_SIZE(a->keep); i++) {
		PQclear(a->keep[i]);
		a->keep[i] = NULL;
	}
	/* The strings in the write arrays may point into these: cleared only once the
	 * writes are sent or given up. */
	PQclear(a->locked);
	PQclear(a->dedup);
	a->locked = a->dedup = NULL;
}

static void start_pipe(payq_apply_t *a, int nq)
{
	memset(&a->pipe, 0, sizeof(a->pipe));
	a->pipe.nq = nq;
	a->pipe.keep = a->keep;
	a->pipe.sqlstate = a->sqlstate;
	a->pipe.errstr = a->errstr;
	a->pipe.errstr_size = sizeof(a->errstr);
}

/* Flushes what libpq could not send at once. Returns 0 or -1. */
static int flush(payq_apply_t *a)
{
	int r = PQflush(a->conn);

	a->want_write = r == 1;
	return r < 0 ? -1 : 0;
}

/* The batch failed: leaves the connection usable for the synchronous path (rolled back,
 * blocking again), or drops it when its state is unknown. */
static payq_async_t fail(payq_apply_t *a, const char *what)
{
	if (what && !a->errstr[0])
		payq_err(a->errstr, sizeof(a->errstr), "%s: %s", what, PQerrorMessage(a->conn));
	a->errstr[strcspn(a->errstr, "\n")] = '\0';
	clear_results(a);
	a->phase = APPLY_ASYNC_NONE;
	a->want_write = false;
	if (a->conn && PQstatus(a->conn) == CONNECTION_OK &&
	    PQpipelineStatus(a->conn) == PQ_PIPELINE_OFF && PQsetnonblocking(a->conn, 0) == 0)
		apply_rollback(a);
	else
		payq_apply_disconnect(a);
	return PAYQ_ASYNC_FAILED;
}

int payq_apply_async_send(payq_apply_t *a, payq_item_t *items, size_t n,
			  const payq_progress_t *progress, size_t nprogress)
{
	a->sqlstate[0] = a->errstr[0] = '\0';
	if (a->gateway || !n || a->phase != APPLY_ASYNC_NONE || !payq_apply_connected(a) ||
	    apply_prepare_scratch(a, n))
		return -1;
	if (PQsetnonblocking(a->conn, 1)) {
		a->healthy = false;
		return -1;
	}
	a->async_items = items;
	a->async_n = n;
	a->async_prog = progress;
	a->async_nprog = nprogress;
	if (a->dups_only) {
		start_pipe(a, 2);
		a->phase = APPLY_ASYNC_DEDUP;
	} else {
		start_pipe(a, 3);
		a->phase = APPLY_ASYNC_READS;
	}
	if ((a->dups_only ? apply_send_dedup(a, items, n) : apply_send_reads(a, items, n)) ||
	    flush(a)) {
		a->healthy = false;
		fail(a, "sending");
		return -1;
	}
	return 0;
}

#ifdef PAYQ_MUTATION_EARLY_SEND
/* Deliberately broken build: the batch in flight is taken for committed as soon as its
 * COMMIT is sent, and the next one is pipelined behind it on the same connection; the
 * forgotten batch's results, its COMMIT's among them, are read and thrown away. */
void payq_apply_async_forget(payq_apply_t *a)
{
	clear_results(a);
	a->phase = APPLY_ASYNC_NONE;
	a->skip++;
}

/* True while results of forgotten batches are still to be thrown away. */
static bool skip_forgotten(payq_apply_t *a)
{
	while (a->skip && !PQisBusy(a->conn)) {
		PGresult *r = PQgetResult(a->conn);
		if (!r && PQstatus(a->conn) != CONNECTION_OK) {
			a->skip = 0;
			break;
		}
		if (r && PQresultStatus(r) == PGRES_PIPELINE_SYNC)
			a->skip--;
		PQclear(r);
	}
	return a->skip > 0;
}
#endif

/* Takes the results that have arrived. True when the pipeline has ended. */
static bool take_results(payq_apply_t *a)
{
	if (!PQconsumeInput(a->conn) && PQstatus(a->conn) != CONNECTION_OK)
		return apply_pipe_take(a, &a->pipe, NULL);
#ifdef PAYQ_MUTATION_EARLY_SEND
	if (skip_forgotten(a))
		return false;
#endif
	while (!PQisBusy(a->conn))
		if (apply_pipe_take(a, &a->pipe, PQgetResult(a->conn)))
			return true;
	return false;
}

/* A pipeline of nq statements is sent: its results are awaited in phase. */
static payq_async_t await_pipe(payq_apply_t *a, int nq, apply_async_phase_t phase)
{
	start_pipe(a, nq);
	a->phase = phase;
	if (flush(a))
		return fail(a, "sending");
	return PAYQ_ASYNC_WAIT;
}

/* The pipeline has ended: moves the rows of its statement q to *to. Returns 0, or -1
 * (the error set) when it failed or that result is missing. */
static int take_rows(payq_apply_t *a, int q, PGresult **to)
{
	if (apply_pipe_end(a, &a->pipe) != PAYQ_APPLY_OK)
		return -1;
	*to = a->keep[q];
	a->keep[q] = NULL;
	if (!*to) {
		payq_err(a->errstr, sizeof(a->errstr), "missing result in the read pipeline");
		return -1;
	}
	return 0;
}

/* The reads are in and loaded: evaluates and sends round trip 2. */
static payq_async_t send_writes(payq_apply_t *a)
{
	int nq = 0;

	apply_evaluate(a, a->async_items, a->async_n);
	if (apply_send_writes(a, false, false, a->async_prog, a->async_nprog, &nq, &a->prog_q))
		return fail(a, "sending");
	return await_pipe(a, nq, APPLY_ASYNC_WRITES);
}

/* Round trip 1 is in: loads it, then the writes. */
static payq_async_t reads_done(payq_apply_t *a)
{
	payq_apply_status_t st = apply_pipe_end(a, &a->pipe);

	st = apply_take_reads(a->keep, &a->locked, &a->dedup, st, a->errstr, sizeof(a->errstr));
	a->keep[1] = a->keep[2] = NULL; /* now in locked and dedup */
	if (st != PAYQ_APPLY_OK)
		return fail(a, NULL);
	if (apply_load_state(a, a->async_n, a->locked, a->dedup)) {
		payq_err(a->errstr, sizeof(a->errstr), "out of memory");
		return fail(a, NULL);
	}
	a->dups_only = apply_all_found(a, a->async_items, a->async_n);
	return send_writes(a);
}

/* The dedup read alone (BEGIN, then the read: statement 1) is in: locks the orders with
 * a command it did not find, or goes on to the writes when there are none. */
static payq_async_t dedup_done(payq_apply_t *a)
{
	if (take_rows(a, 1, &a->dedup))
		return fail(a, NULL);
	if (apply_load_keys(a, a->async_n, a->dedup)) {
		payq_err(a->errstr, sizeof(a->errstr), "out of memory");
		return fail(a, NULL);
	}
	a->dups_only = apply_all_found(a, a->async_items, a->async_n);
	if (a->dups_only)
		return send_writes(a);
	apply_unfound_orders(a, a->async_items, a->async_n);
	if (apply_send_lock(a))
		return fail(a, "sending");
	return await_pipe(a, 1, APPLY_ASYNC_LOCK);
}

/* The lock is in: loads the orders, then the writes. */
static payq_async_t lock_done(payq_apply_t *a)
{
	if (take_rows(a, 0, &a->locked))
		return fail(a, NULL);
	apply_load_orders(a, a->locked);
	return send_writes(a);
}

/* Round trip 2 is in: the COMMIT result decides. */
static payq_async_t writes_done(payq_apply_t *a)
{
	if (apply_pipe_end(a, &a->pipe) != PAYQ_APPLY_OK)
		return fail(a, NULL);
	if (PQsetnonblocking(a->conn, 0)) {
		/* Committed all the same; the next use of the connection finds it broken. */
		a->healthy = false;
	}
	if (a->prog_q >= 0)
		apply_note_progress(a, a->async_prog, a->async_nprog, a->keep[a->prog_q]);
	clear_results(a);
	a->phase = APPLY_ASYNC_NONE;
	return PAYQ_ASYNC_DONE;
}

payq_async_t payq_apply_async_step(payq_apply_t *a)
{
	if (a->phase == APPLY_ASYNC_NONE)
		return PAYQ_ASYNC_FAILED;
	if (a->want_write && flush(a))
		return fail(a, "sending");
	if (!take_results(a))
		return PAYQ_ASYNC_WAIT;
	switch (a->phase) {
	case APPLY_ASYNC_READS: return reads_done(a);
	case APPLY_ASYNC_DEDUP: return dedup_done(a);
	case APPLY_ASYNC_LOCK: return lock_done(a);
	default: return writes_done(a);
	}
}

bool payq_apply_async_busy(const payq_apply_t *a)
{
	return a->phase != APPLY_ASYNC_NONE;
}

bool payq_apply_async_commit_sent(const payq_apply_t *a)
{
	return a->phase == APPLY_ASYNC_WRITES;
}

int payq_apply_socket(const payq_apply_t *a)
{
	return a->conn ? PQsocket(a->conn) : -1;
}

bool payq_apply_async_wants_write(const payq_apply_t *a)
{
	return a->want_write;
}

void payq_apply_async_abandon(payq_apply_t *a)
{
	clear_results(a);
	a->phase = APPLY_ASYNC_NONE;
	a->want_write = false;
	payq_apply_disconnect(a);
}

bool payq_apply_async_permanent(const payq_apply_t *a)
{
	return a->pipe.st == PAYQ_APPLY_PERMANENT;
}

const char *payq_apply_async_error(const payq_apply_t *a, const char **sqlstate)
{
	if (sqlstate)
		*sqlstate = a->sqlstate;
	return a->errstr;
}
