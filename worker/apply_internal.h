/* apply_internal.h - what apply.c, apply_sql.c, apply_progress.c, apply_reads.c and
 * apply_gateway.c share: the applier's struct, its query parameter arrays and the
 * helpers the gateway and progress code reuse. Private to those files. */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <libpq-fe.h>

#include "apply.h"
#include "outcome.h"
#include "sqlbuf.h"

/* The query parameter arrays, one payq_sqlbuf_t each, filled per batch; one line per
 * statement, which clang-format would break into one line per name. */
/* clang-format off */
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
/* clang-format on */

/* Reading one pipeline's results up to its sync: apply_pipeline_finish waits for them,
 * apply_async.c takes them as they arrive. */
typedef struct apply_pipe {
	int nq, q, nulls;
	payq_apply_status_t st;
	PGresult **keep; /* keep[i]: the tuples of query i (may be NULL) */
	char *sqlstate;	 /* 6 bytes */
	char *errstr;
	size_t errstr_size;
} apply_pipe_t;

/* Where the fast path's batch is (apply_async.c). */
typedef enum {
	APPLY_ASYNC_NONE,   /* no batch in flight on this connection */
	APPLY_ASYNC_READS,  /* round trip 1 sent */
	APPLY_ASYNC_DEDUP,  /* round trip 1 without the lock sent (after duplicates only) */
	APPLY_ASYNC_LOCK,   /* then the lock of the orders with a command not found */
	APPLY_ASYNC_WRITES, /* round trip 2 (writes, progress, COMMIT) sent */
} apply_async_phase_t;

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
	} * gens;
	size_t ngens, gens_cap;
	bool stale;
	int32_t stale_partition;
	size_t counts[8];

	/* The fast path's batch in flight (apply_async.c): its items and progress belong to
	 * the caller until payq_apply_async_step says DONE or FAILED. */
	apply_async_phase_t phase;
	bool want_write; /* PQflush left output to send */
	payq_item_t *async_items;
	size_t async_n;
	const payq_progress_t *async_prog;
	size_t async_nprog;
	/* The last batch's commands were all found by its dedup read (a replay): the next
	 * one sends the dedup read alone, then locks only the orders that need it. */
	bool dups_only;
	int prog_q;
	PGresult *keep[16], *locked, *dedup;
	apply_pipe_t pipe;
	char sqlstate[6];
	char errstr[512];
#ifdef PAYQ_MUTATION_EARLY_SEND
	int skip; /* pipelines of batches forgotten before their COMMIT result */
#endif
};

/* The prepared statements (apply_sql.c), prepared on every new connection. */
typedef struct apply_statement {
	const char *name, *sql;
} apply_statement_t;
extern const apply_statement_t apply_statements[];
extern const size_t apply_nstatements;

/* Sends one prepared statement with n parameters taken from a->p[first...]. */
int apply_send_prepared(payq_apply_t *a, const char *name, const char *const *fixed, int nfixed,
			int first, int n);
/* Reads the results of a pipeline up to its sync. keep[i] receives the tuples of query
 * i when keep is not NULL. Returns PAYQ_APPLY_OK or the status of the first error. */
payq_apply_status_t apply_pipeline_finish(payq_apply_t *a, int nq, PGresult **keep,
					  char sqlstate[6], char *errstr, size_t errstr_size);
/* Rolls back an open transaction, or marks the connection unhealthy when its state is
 * unknown. */
void apply_rollback(payq_apply_t *a);
/* Resets the scratch for a batch of n items. Returns 0 or -1 (out of memory). */
int apply_prepare_scratch(payq_apply_t *a, size_t n);

/* apply_progress.c: the reset generation of each partition, and the progress writes'
 * parameters and results. */
void apply_gen_set(payq_apply_t *a, int32_t partition, int64_t generation);
void apply_progress_params(payq_apply_t *a, const payq_progress_t *progress, size_t n);
void apply_note_progress(payq_apply_t *a, const payq_progress_t *progress, size_t n,
			 const PGresult *res);

/* One result of a pipeline (NULL included) into p. True when the pipeline has ended: its
 * sync arrived, or the connection broke. */
bool apply_pipe_take(payq_apply_t *a, apply_pipe_t *p, PGresult *r);
/* After the pipeline has ended: leaves pipeline mode. Returns the pipeline's status. */
payq_apply_status_t apply_pipe_end(payq_apply_t *a, apply_pipe_t *p);
/* Round trip 1, sent (see apply.c's top comment). Returns 0 or -1. */
int apply_send_reads(payq_apply_t *a, payq_item_t *items, size_t n);
/* The fast path after a batch of duplicates only: round trip 1 without the lock (BEGIN,
 * the dedup read), then the lock of the orders in P_LOCK_IDS. Each returns 0 or -1. */
int apply_send_dedup(payq_apply_t *a, payq_item_t *items, size_t n);
int apply_send_lock(payq_apply_t *a);
/* Round trip 1's results, keep[0..3), into *locked and *dedup. */
payq_apply_status_t apply_take_reads(PGresult **keep, PGresult **locked, PGresult **dedup,
				     payq_apply_status_t st, char *errstr, size_t errstr_size);
/* Loads round trip 1's rows into the outcome table's state. Returns 0 or -1. */
int apply_load_state(payq_apply_t *a, size_t n, PGresult *locked, PGresult *dedup);
/* The same in two steps: the dedup rows (0 or -1), then the locked orders. */
int apply_load_keys(payq_apply_t *a, size_t n, PGresult *dedup);
void apply_load_orders(payq_apply_t *a, PGresult *locked);
/* After apply_load_keys: whether the dedup read found every one of items[0..n) (it
 * stops at the first it did not). */
bool apply_all_found(payq_apply_t *a, const payq_item_t *items, size_t n);
/* After apply_load_keys: the orders of the items the dedup read did not find replace
 * P_LOCK_IDS (the lock statement takes each once). An order whose commands were all
 * found has duplicates only: nothing of it is read or written, so it needs no lock. */
void apply_unfound_orders(payq_apply_t *a, const payq_item_t *items, size_t n);
/* Runs the outcome table over items[0..n) and fills the write arrays. */
void apply_evaluate(payq_apply_t *a, payq_item_t *items, size_t n);
/* Round trip 2, sent: writes, progress, COMMIT. Returns 0 or -1. */
int apply_send_writes(payq_apply_t *a, bool begin, bool settle_later,
		      const payq_progress_t *progress, size_t nprogress, int *nq, int *prog_q);
