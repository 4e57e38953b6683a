/* manifest.h - the generator's expected results: DESIGN.md's outcome table, simulated per order. */
#pragma once

#include <stdbool.h>
#include <stdint.h>

#include "codec.h"

/* The manifest, keys in this order (what a consumer of each message once must find):
 *   seed, orders, messages (all emitted, malformed included),
 *   valid_commands  distinct (order_id, command_id) rows in processed_commands,
 *   outcomes        {create_order|pay|cancel_order: {outcome: count}}, every outcome
 *                   DESIGN.md's table allows for the type, zeros included,
 *   duplicates      SUM(processed_commands.duplicates),
 *   double_payment_attempts, anomalies {key_reuse},
 *   dlq             {reason: count} for every reason code,
 *   malformed       [{order_id, index (0-based emission order = --print line - 1), reason}],
 *   paid_orders, cancelled_orders, unpaid_orders, id_prefix, rates {dup, double_pay,
 *   cancel, key_reuse, malformed}. */
typedef struct payq_manifest payq_manifest_t;

/* Run parameters recorded in the manifest so a run can be reproduced. */
typedef struct payq_manifest_params {
	uint64_t seed;
	int64_t orders;
	const char *id_prefix;
	double dup_rate, double_pay_rate, cancel_rate, key_reuse_rate, malformed_rate;
} payq_manifest_params_t;

/* Returns an empty manifest, or NULL when out of memory. Free with payq_manifest_destroy(). */
payq_manifest_t *payq_manifest_new(void);
void payq_manifest_destroy(payq_manifest_t *m);

/* Starts the simulation of one order: no order row, no command seen. Orders are
 * independent (each has its own order_id), so one order is simulated at a time. */
void payq_manifest_order_begin(payq_manifest_t *m);

/* Applies one valid command (decoded by the codec, so payload_sha256 is set) in the order
 * the worker will see it: the order's messages share a partition and keep their order. */
void payq_manifest_apply(payq_manifest_t *m, const payq_command_t *cmd);

/* Ends the order and counts its final status: paid, cancelled or unpaid. */
void payq_manifest_order_end(payq_manifest_t *m);

/* Counts one emitted message; malformed ones (reason != PAYQ_REASON_OK) are listed with
 * their index in emission order (0-based) and the DLQ reason the worker must give.
 * Returns 0, or -1 when out of memory. */
int payq_manifest_message(payq_manifest_t *m, const char *order_id, int64_t index,
			  payq_reason_t reason);

int64_t payq_manifest_messages(const payq_manifest_t *m);
int64_t payq_manifest_malformed_count(const payq_manifest_t *m);

/* Writes the manifest as pretty-printed JSON with a fixed key order to path ("-" is
 * stdout). Every outcome of every command type appears, zeros included, as does every
 * DLQ reason. Returns 0, or -1 with errstr. */
int payq_manifest_write(const payq_manifest_t *m, const payq_manifest_params_t *p, const char *path,
			char *errstr, size_t errstr_size);
