/* reconcile.h - gateway mode's reconciler: asks the payment channel about payments
 * left pending or unknown, and settles them. */
#pragma once

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "config.h"

/* Parses PAYQ_RECONCILE_SCHEDULE ("1m,5m,15m,1h"): the wait before each look, the last
 * one repeating. Returns 0 with a malloc'ed array, or -1 with errstr. */
int payq_reconcile_parse_schedule(const char *text, int64_t **delays_ms, size_t *n, char *errstr,
				  size_t errstr_size);

typedef struct payq_reconciler payq_reconciler_t;

/* Starts the reconciler as a thread of the worker. Only the holder of a PostgreSQL
 * advisory lock (one per database) does the work; the others wait for it. Returns
 * NULL with errstr on a configuration error. */
payq_reconciler_t *payq_reconciler_start(const payq_config_t *cfg, char *errstr,
					 size_t errstr_size);
/* Tells the reconciler thread to stop, without waiting: its gateway calls in flight
 * are abandoned. payq_reconciler_stop() then joins it. */
void payq_reconciler_request_stop(payq_reconciler_t *r);
void payq_reconciler_stop(payq_reconciler_t *r);

/* Prints reconcile's lines for payq-worker --help. */
void payq_reconcile_usage(FILE *fp);

/* payq-worker reconcile [--once] [--all]: the reconciler in the foreground, until
 * SIGTERM; --once makes one pass and prints a summary (and how to resolve each payment
 * left for a person); --all looks at every pending and unknown payment, due or not.
 * --order O --command C with --mark-succeeded ID, --mark-failed or --charge-again
 * records a person's decision about one payment. Returns a PAYQ_EXIT_* code. */
int payq_reconcile_main(const payq_config_t *cfg, int argc, char **argv);

/* One pass of the reconciler over one pending or unknown payment (due or not), as
 * `reconcile --once --all` would treat it: ask the channel, settle, or count a look.
 * Prints its summary on stdout. Returns a PAYQ_EXIT_* code. For payq-console. */
int payq_reconcile_one(const payq_config_t *cfg, const char *order, const char *command);
