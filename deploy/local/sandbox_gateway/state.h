/* state.h - what payq-sandbox-gateway's handlers share: the fault settings, the counters, the
 * fault dice and the charge store (one record per idempotency key, in charge id order, which
 * is also the ledger), all under st.lock. */
#pragma once

#include <pthread.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define PROG "payq-sandbox-gateway"
#define KEY_MAX 255
#define DELAY_MAX_MS 600000

typedef enum { CH_IN_PROGRESS, CH_SUCCEEDED, CH_DECLINED } charge_status_t;

/* Hostile answers (POST /faults "lie"): the answer names another amount, currency or
 * key than the request, as a buggy or compromised channel might. The charge itself is
 * recorded as asked. */
typedef enum { LIE_NONE, LIE_AMOUNT, LIE_CURRENCY, LIE_KEY, LIE__CNT } lie_t;

/* One idempotency key and what it did. The strings live in buf, after the struct. */
typedef struct charge {
	uint64_t seq; /* the charge id's number, given when the key is first seen */
	int64_t amount_minor;
	charge_status_t status;
	unsigned int http_status;
	char *body; /* the stored answer, NULL while in progress */
	const char *key, *order_id, *command_id, *payer_id; /* payer_id may be NULL */
	char currency[4];
	bool forgotten; /* POST /forget: the key expired, the charge stays in the ledger */
	char buf[];
} charge_t;

/* A parsed POST /charges body; the strings belong to the cJSON tree. */
typedef struct charge_req {
	const char *order_id, *command_id, *currency, *payer_id;
	int64_t amount_minor;
} charge_req_t;

/* The counters of GET /stats (their names are in control.c). */
enum { S_POST, S_GET, S_REPLAYED, S_409, S_422, S_ERRORS, S_DROPPED, S_401, S_COUNT };

/* Everything the handlers share, under one mutex that is never held across a sleep. The
 * options table of main.c writes the fault fields and the decline rules before the
 * listeners start. */
struct sandbox_state {
	pthread_mutex_t lock;
	int64_t latency_ms, jitter_ms;
	double error_rate, drop_rate;
	bool down;
	lie_t lie;
	bool bad_text; /* declines and errors carry invalid UTF-8 */
	uint64_t stats[S_COUNT];
	uint64_t rng;
	int64_t decline_suffix;
	const char *decline_payer;
	charge_t **recs; /* in charge id order */
	size_t nrecs, caprecs;
	uint32_t *slots; /* open addressing over recs: index + 1, 0 = empty */
	size_t nslots;
	uint64_t next_seq, generation; /* generation changes on every reset */
	size_t charges, declines;
};
extern struct sandbox_state st;

/* Returns p; aborts with a message when it is NULL (out of memory). */
void *must(void *p);

/* The fault dice, seeded through st.rng; callers hold st.lock. rng_next() is the next
 * number, roll(p) is true with probability p (0 never, 1 always). */
uint64_t rng_next(void);
bool roll(double p);

/* The charge store; callers hold st.lock. */

/* The record of key, or NULL (also when the key was forgotten). */
charge_t *table_find(const char *key);
/* Appends c (taken) to the ledger and indexes its key. */
void table_add(charge_t *c);
/* Forgets every key, charge and counter (not the faults), and starts a new generation. */
void state_clear(void);
/* A new in-progress charge for key and r (the caller adds it with table_add()). */
charge_t *charge_new(const char *key, const charge_req_t *r);
/* True when r is the request c was made for. */
bool same_request(const charge_t *c, const charge_req_t *r);
/* Decides an in-progress charge (succeeded or declined) and stores its answer. */
void charge_finish(charge_t *c);
/* The stored answer of c as it goes out (changed by a "lie" fault); the caller frees it. */
char *answer_body(const charge_t *c);
