/* generate.h - payq-producer's load generator: deterministic orders, anomalies, manifest. */
#pragma once

#include <stdint.h>

#include "config.h"
#include "sink.h"

#define PAYQ_GEN_PREFIX_MAX 24 /* --id-prefix length, so that IDs stay within 64 chars */
#define PAYQ_GEN_ORDERS_MAX 1000000000LL
#define PAYQ_GEN_SEED_MAX 9007199254740991ULL /* 2^53 - 1: exact as a JSON number */

typedef struct payq_producer_gen_opts {
	int64_t orders;
	uint64_t seed;
	const char *id_prefix;	   /* "" by default; [A-Za-z0-9._:-] only */
	double dup_rate;	   /* probability of an identical re-send of the pay */
	double double_pay_rate;	   /* a second pay with a new command_id */
	double cancel_rate;	   /* a cancel, before or after the pay (half each) */
	double key_reuse_rate;	   /* the pay's command_id again with another amount */
	double malformed_rate;	   /* an extra message with a broken value */
	const char *manifest_path; /* NULL: no manifest */
} payq_producer_gen_opts_t;

/* Generates go->orders orders and sends them through a sink made from cfg and opts.
 *
 * Every order (order_id "<prefix>ORD-<seed>-<n>", command IDs "<prefix>c-<seed>-<n>-<k>")
 * gets create_order then pay, plus the anomalies drawn for it from a PRNG seeded by
 * (seed, n), so the bytes depend only on the seed and the arguments. One order's messages
 * keep their logical order; windows of orders are interleaved round-robin. Each message
 * is checked with the codec against what it was built to be (valid, or the DLQ reason it
 * must get), and the manifest simulates DESIGN.md's outcome table per order.
 *
 * The manifest is written once every order is generated, even when some delivery
 * failed (the exit code says so); an interrupted run writes none.
 * Returns a PAYQ_PRODUCER_EXIT_* code. */
int payq_producer_generate(const payq_config_t *cfg, const payq_producer_opts_t *opts,
			   const payq_producer_gen_opts_t *go);
