/* state.c - payq-sandbox-gateway's shared state: the fault dice and the charge store, an
 * append-only ledger of charges with a hash index of their idempotency keys. */
#include "state.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>
#include <microhttpd.h>

struct sandbox_state st = {
	.lock = PTHREAD_MUTEX_INITIALIZER, .decline_suffix = 13, .decline_payer = "declined-"};

/* Allocation failure in a test double is not worth a recovery path. */
void *must(void *p)
{
	if (!p) {
		fputs(PROG ": out of memory\n", stderr);
		abort();
	}
	return p;
}

/* ---- dice (splitmix64, seeded; callers hold st.lock) ---- */

uint64_t rng_next(void)
{
	uint64_t z = (st.rng += 0x9e3779b97f4a7c15ULL);

	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
	z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
	return z ^ (z >> 31);
}

/* True with probability p: 0 never, 1 always. */
bool roll(double p)
{
	return (double)(rng_next() >> 11) * 0x1p-53 < p;
}

/* ---- keys and ledger (callers hold st.lock) ---- */

static size_t hash(const char *s)
{
	uint64_t h = 0xcbf29ce484222325ULL; /* FNV-1a */

	for (; *s; s++)
		h = (h ^ (unsigned char)*s) * 0x100000001b3ULL;
	return (size_t)h;
}

charge_t *table_find(const char *key)
{
	size_t mask = st.nslots - 1;

	for (size_t i = hash(key) & mask; st.nslots && st.slots[i]; i = (i + 1) & mask) {
		charge_t *c = st.recs[st.slots[i] - 1];
		if (!c->forgotten && !strcmp(c->key, key)) /* a forgotten key is no key */
			return c;
	}
	return NULL;
}

static void slot_put(uint32_t idx)
{
	size_t mask = st.nslots - 1, i = hash(st.recs[idx - 1]->key) & mask;

	while (st.slots[i])
		i = (i + 1) & mask;
	st.slots[i] = idx;
}

/* Appends c to the ledger and indexes its key; the table stays at most half full. */
void table_add(charge_t *c)
{
	if (st.nrecs == st.caprecs) {
		st.caprecs = st.caprecs ? st.caprecs * 2 : 1024;
		st.recs = must(realloc(st.recs, st.caprecs * sizeof(*st.recs)));
	}
	st.recs[st.nrecs++] = c;
	if (st.nrecs * 2 <= st.nslots) {
		slot_put((uint32_t)st.nrecs);
		return;
	}
	st.nslots = st.nslots ? st.nslots * 2 : 2048;
	free(st.slots);
	st.slots = must(calloc(st.nslots, sizeof(*st.slots)));
	for (size_t i = 1; i <= st.nrecs; i++)
		slot_put((uint32_t)i);
}

/* Forgets every key, charge and counter. A request sleeping meanwhile sees the new
 * generation and does not touch its freed charge. */
void state_clear(void)
{
	for (size_t i = 0; i < st.nrecs; i++) {
		free(st.recs[i]->body);
		free(st.recs[i]);
	}
	free(st.recs);
	free(st.slots);
	st.recs = NULL;
	st.slots = NULL;
	st.nrecs = st.caprecs = st.nslots = st.charges = st.declines = 0;
	memset(st.stats, 0, sizeof(st.stats));
	st.generation++;
}

/* A new in-progress charge. Charge ids are never reused, not even after a reset. */
charge_t *charge_new(const char *key, const charge_req_t *r)
{
	size_t lk = strlen(key) + 1, lo = strlen(r->order_id) + 1;
	size_t lc = strlen(r->command_id) + 1, lp = r->payer_id ? strlen(r->payer_id) + 1 : 0;
	charge_t *c = must(calloc(1, sizeof(*c) + lk + lo + lc + lp));
	char *p = c->buf;

	c->key = memcpy(p, key, lk);
	c->order_id = memcpy(p += lk, r->order_id, lo);
	c->command_id = memcpy(p += lo, r->command_id, lc);
	c->payer_id = lp ? memcpy(p + lc, r->payer_id, lp) : NULL;
	memcpy(c->currency, r->currency, 4);
	c->amount_minor = r->amount_minor;
	c->seq = ++st.next_seq;
	c->status = CH_IN_PROGRESS;
	return c;
}

bool same_request(const charge_t *c, const charge_req_t *r)
{
	return !strcmp(c->order_id, r->order_id) && !strcmp(c->command_id, r->command_id) &&
	       c->amount_minor == r->amount_minor && !strcmp(c->currency, r->currency) &&
	       (c->payer_id && r->payer_id ? !strcmp(c->payer_id, r->payer_id)
					   : c->payer_id == r->payer_id);
}

/* A decline code that is not valid UTF-8 (a stray 0xff), long enough that a cut by
 * bytes splits one of its two-byte characters. */
static const char bad_decline[] =
	"card_declined\xff\xc3\x28"
	"\xc3\xbc\xc3\xbc\xc3\xbc\xc3\xbc\xc3\xbc\xc3\xbc\xc3\xbc\xc3\xbc\xc3\xbc\xc3\xbc"
	"\xc3\xbc\xc3\xbc\xc3\xbc\xc3\xbc\xc3\xbc\xc3\xbc\xc3\xbc\xc3\xbc\xc3\xbc\xc3\xbc"
	"\xc3\xbc\xc3\xbc\xc3\xbc\xc3\xbc\xc3\xbc\xc3\xbc\xc3\xbc\xc3\xbc\xc3\xbc\xc3\xbc";

/* The decline rules, payer first; NULL means the charge goes through. */
static const char *decline_code(const charge_t *c)
{
	size_t n = strlen(st.decline_payer);

	if (n && c->payer_id && !strncmp(c->payer_id, st.decline_payer, n))
		return st.bad_text ? bad_decline : "card_declined";
	if (st.decline_suffix >= 0 && c->amount_minor % 100 == st.decline_suffix)
		return "insufficient_funds";
	return NULL;
}

/* Decides an in-progress charge and stores the answer every replay repeats. */
void charge_finish(charge_t *c)
{
	const char *code = decline_code(c);
	cJSON *o = must(cJSON_CreateObject());
	char id[32];

	snprintf(id, sizeof(id), "ch_%08" PRIu64, c->seq);
	c->status = code ? CH_DECLINED : CH_SUCCEEDED;
	c->http_status = code ? MHD_HTTP_PAYMENT_REQUIRED : MHD_HTTP_CREATED;
	*(code ? &st.declines : &st.charges) += 1;
	cJSON_AddStringToObject(o, "id", id);
	cJSON_AddStringToObject(o, "idempotency_key", c->key);
	cJSON_AddStringToObject(o, "status", code ? "declined" : "succeeded");
	if (code)
		cJSON_AddStringToObject(o, "decline_code", code);
	cJSON_AddStringToObject(o, "order_id", c->order_id);
	cJSON_AddStringToObject(o, "command_id", c->command_id);
	cJSON_AddNumberToObject(o, "amount_minor", (double)c->amount_minor);
	cJSON_AddStringToObject(o, "currency", c->currency);
	c->body = must(cJSON_PrintUnformatted(o));
	cJSON_Delete(o);
}

/* The stored answer as it goes out: itself, or (with a "lie" fault) with another
 * amount, currency or key. Under st.lock; returns a malloc'd string. */
char *answer_body(const charge_t *c)
{
	cJSON *o;
	char *out, key[KEY_MAX + 8];

	if (st.lie == LIE_NONE || !(o = cJSON_Parse(c->body)))
		return must(strdup(c->body));
	if (st.lie == LIE_AMOUNT) {
		cJSON_ReplaceItemInObjectCaseSensitive(
			o, "amount_minor", must(cJSON_CreateNumber((double)c->amount_minor + 1)));
	} else if (st.lie == LIE_CURRENCY) {
		const char *other = strcmp(c->currency, "XXX") ? "XXX" : "XTS";
		cJSON_ReplaceItemInObjectCaseSensitive(o, "currency",
						       must(cJSON_CreateString(other)));
	} else {
		snprintf(key, sizeof(key), "%s-other", c->key);
		cJSON_ReplaceItemInObjectCaseSensitive(o, "idempotency_key",
						       must(cJSON_CreateString(key)));
	}
	out = must(cJSON_PrintUnformatted(o));
	cJSON_Delete(o);
	return out;
}
