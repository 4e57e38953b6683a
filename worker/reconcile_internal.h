/* reconcile_internal.h - the reconciler's state, shared by reconcile.c (the passes and
 * the thread) and reconcile_cli.c (payq-worker reconcile). Private to the worker. */
#pragma once

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

#include <libpq-fe.h>

#include "apply.h"
#include "gateway.h"
#include "reconcile.h"

enum { PAGE = 200 }; /* payments read, asked about and settled at a time */

struct payq_reconciler {
	const payq_config_t *cfg;
	int64_t *delays;
	size_t ndelays;
	PGconn *conn; /* the leader lock, the scan and the bookkeeping */
	bool leader;
	payq_apply_t *apply; /* settling, on its own connection */
	payq_gateway_t *gw;
	pthread_t thread;
	bool threaded;
	bool report; /* reconcile --once: print what needs a person on stdout */
	const char *only_order, *only_command; /* payq_reconcile_one: just this payment */
	atomic_bool stop;
	payq_charge_t c[PAGE], again[PAGE], done[PAGE];
};

/* What one pass did. */
typedef struct tally {
	int64_t looked, succeeded, declined, recharged, unresolved, raised, held, mismatched;
} tally_t;

/* What a pass (or getting ready for one) came to. */
typedef enum {
	PASS_DONE,	 /* looked at everything due (t says what it did) */
	PASS_NOT_LEADER, /* another reconciler holds the leader lock: nothing done */
	PASS_ERROR,	 /* a database error, in errstr */
} pass_result_t;

/* A reconciler with its gateway client and applier, not connected yet; NULL with errstr
 * on a bad schedule, gateway setting or out of memory. */
payq_reconciler_t *reconciler_new(const payq_config_t *cfg, char *errstr, size_t errstr_size);
void reconciler_free(payq_reconciler_t *r);

/* Connects both connections; with take_lock, also tries to become the leader. */
pass_result_t reconciler_ready(payq_reconciler_t *r, bool take_lock, char *errstr,
			       size_t errstr_size);

/* One pass over every payment due (all: due or not). With take_lock, only as the leader. */
pass_result_t reconciler_pass(payq_reconciler_t *r, bool take_lock, bool all, tally_t *t,
			      char *errstr, size_t errstr_size);
