/* generate.c - payq-producer's load generator: deterministic orders, anomalies, manifest. */
#include "generate.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "codec.h"
#include "log.h"
#include "manifest.h"
#include "util.h"

#define WINDOW 8	 /* orders interleaved round-robin, so batches mix orders */
#define ORDER_MSGS_MAX 8 /* create, cancel, pay, dup, double pay, key reuse, malformed */

/* Command-ID slots: a role always gets the same k, whatever else the order draws. */
enum { K_CREATE = 1, K_PAY = 2, K_CANCEL = 3, K_DOUBLE_PAY = 4, K_MALFORMED = 5 };

static const char *const currencies[] = {"CNY", "USD", "EUR", "JPY", "GBP"};

/* Malformed messages cycle through every DLQ reason in this order. */
static const payq_reason_t malformed_cycle[] = {
	PAYQ_REASON_NOT_JSON,
	PAYQ_REASON_EMPTY,
	PAYQ_REASON_BAD_AMOUNT,
	PAYQ_REASON_MISSING_FIELD,
	PAYQ_REASON_BAD_FIELD,
	PAYQ_REASON_UNKNOWN_TYPE,
	PAYQ_REASON_UNSUPPORTED_VERSION,
	PAYQ_REASON_DUPLICATE_FIELD,
	PAYQ_REASON_KEY_MISMATCH,
	PAYQ_REASON_BAD_ENCODING,
	PAYQ_REASON_TOO_LARGE,
};

typedef struct gen_msg {
	char *value; /* malloc()ed; NULL with len 0 is a null value */
	size_t len;
	payq_reason_t expect; /* PAYQ_REASON_OK, or the DLQ reason the worker must give */
	const char *type;     /* payq-type header, or NULL */
	char command_id[PAYQ_ID_MAX + 1]; /* payq-command-id header; "" omits it */
} gen_msg_t;

typedef struct gen_order {
	char order_id[PAYQ_ID_MAX + 1];
	gen_msg_t msgs[ORDER_MSGS_MAX];
	int cnt;
} gen_order_t;

typedef struct gen {
	const payq_producer_gen_opts_t *go;
	payq_manifest_t *manifest;
	uint64_t malformed_seq;
	char errstr[512];
} gen_t;

/* splitmix64 (Steele, Lea, Flood 2014): small, fast, and the same on every platform. */
static uint64_t rng_next(uint64_t *x)
{
	uint64_t z = (*x += 0x9e3779b97f4a7c15ULL);
	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
	z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
	return z ^ (z >> 31);
}

/* A uniform double in [0, 1), so that p = 1 always hits and p = 0 never does. */
static double rng_unit(uint64_t *x)
{
	return (double)(rng_next(x) >> 11) * 0x1.0p-53;
}

/* Each order has its own stream, so its messages depend on (seed, n) alone. */
static uint64_t rng_for_order(uint64_t seed, int64_t n)
{
	uint64_t x = seed, st;

	st = rng_next(&x) ^ (uint64_t)n;
	return rng_next(&st);
}

static void command_id(const gen_t *g, int64_t n, int k, char *out)
{
	snprintf(out, PAYQ_ID_MAX + 1, "%sc-%llu-%lld-%d", g->go->id_prefix,
		 (unsigned long long)g->go->seed, (long long)n, k);
}

static int add_valid(gen_order_t *o, const payq_command_t *cmd)
{
	gen_msg_t *m = &o->msgs[o->cnt];

	m->value = payq_codec_encode(cmd);
	if (!m->value)
		return -1;
	m->len = strlen(m->value);
	m->expect = PAYQ_REASON_OK;
	m->type = payq_cmd_type_name(cmd->type);
	memcpy(m->command_id, cmd->command_id, sizeof(m->command_id));
	o->cnt++;
	return 0;
}

/* A value over 64 KiB that is otherwise a valid pay: unknown fields are ignored. */
static char *too_large(const char *head, size_t *len)
{
	size_t pad = PAYQ_VALUE_MAX + 1024, hl = strlen(head);
	char *v = malloc(hl + pad + 32);

	if (!v)
		return NULL;
	memcpy(v, head, hl);
	memcpy(v + hl, ",\"padding\":\"", 12);
	memset(v + hl + 12, 'x', pad);
	memcpy(v + hl + 12 + pad, "\"}", 3);
	*len = hl + 12 + pad + 2;
	return v;
}

/* Builds a value broken in one way, variant v of reason r, and sets the headers to what
 * the value says where it says it validly. Returns 0, or -1 when out of memory. */
static int build_malformed(gen_msg_t *m, payq_reason_t r, uint64_t v, const char *cid,
			   const char *oid, const char *other_oid, long long amt, const char *cur)
{
	static const char *const bad_amounts[] = {"12.5", "\"1999\"", "1e3",
						  "0",	  "-5",	      "1000000000000001"};
	static const char *const bad_fields[] = {",\"currency\":\"cny\"", ",\"currency\":840",
						 ",\"currency\":\"%s\",\"payer_id\":42"};
	static const char *const bad_types[] = {"refund", "Pay", "capture"};
	static const char *const bad_versions[] = {"2", "0", "\"1\""};
	static const char *const bad_utf8[] = {"\xff\xfe", "caf\xc3", "\xc0\xaf"};
	char head[256], fmt[128];
	char *s = NULL;
	int n = -1;

	snprintf(head, sizeof(head),
		 "{\"v\":1,\"type\":\"pay\",\"command_id\":\"%s\",\"order_id\":\"%s\"", cid, oid);
	m->type = "pay";
	snprintf(m->command_id, sizeof(m->command_id), "%s", cid);
	switch (r) {
	case PAYQ_REASON_NOT_JSON:
		m->type = NULL;
		m->command_id[0] = '\0';
		if (v % 4 == 0)
			n = asprintf(&s, "%s,\"amount_minor\":%lld", head, amt);
		else if (v % 4 == 1)
			n = asprintf(&s, "[\"pay\",\"%s\",%lld]", oid, amt);
		else if (v % 4 == 2)
			n = asprintf(&s, "pay %s %lld %s", oid, amt, cur);
		else
			n = asprintf(&s, "\"pay %s\"", oid);
		break;
	case PAYQ_REASON_EMPTY:
		m->type = NULL;
		m->command_id[0] = '\0';
		m->value = NULL;
		m->len = 0;
		return 0;
	case PAYQ_REASON_BAD_AMOUNT:
		n = asprintf(&s, "%s,\"amount_minor\":%s,\"currency\":\"%s\"}", head,
			     bad_amounts[v % PAYQ_ARRAY_SIZE(bad_amounts)], cur);
		break;
	case PAYQ_REASON_MISSING_FIELD:
		if (v % 3 == 0)
			n = asprintf(&s, "%s,\"amount_minor\":%lld}", head, amt);
		else if (v % 3 == 1)
			n = asprintf(&s, "%s,\"currency\":\"%s\"}", head, cur);
		else {
			m->type = "create_order";
			n = asprintf(&s,
				     "{\"v\":1,\"type\":\"create_order\",\"command_id\":\"%s\","
				     "\"order_id\":\"%s\",\"currency\":\"%s\"}",
				     cid, oid, cur);
		}
		break;
	case PAYQ_REASON_BAD_FIELD:
		snprintf(fmt, sizeof(fmt), bad_fields[v % PAYQ_ARRAY_SIZE(bad_fields)], cur);
		n = asprintf(&s, "%s,\"amount_minor\":%lld%s}", head, amt, fmt);
		break;
	case PAYQ_REASON_UNKNOWN_TYPE:
		m->type = bad_types[v % PAYQ_ARRAY_SIZE(bad_types)];
		n = asprintf(&s,
			     "{\"v\":1,\"type\":\"%s\",\"command_id\":\"%s\",\"order_id\":\"%s\","
			     "\"amount_minor\":%lld,\"currency\":\"%s\"}",
			     m->type, cid, oid, amt, cur);
		break;
	case PAYQ_REASON_UNSUPPORTED_VERSION:
		n = asprintf(&s,
			     "{\"v\":%s,\"type\":\"pay\",\"command_id\":\"%s\",\"order_id\":\"%s\","
			     "\"amount_minor\":%lld,\"currency\":\"%s\"}",
			     bad_versions[v % PAYQ_ARRAY_SIZE(bad_versions)], cid, oid, amt, cur);
		break;
	case PAYQ_REASON_DUPLICATE_FIELD:
		if (v % 2 == 0)
			n = asprintf(&s,
				     "%s,\"amount_minor\":%lld,\"currency\":\"%s\",\"amount_"
				     "minor\":%lld}",
				     head, amt, cur, amt);
		else
			n = asprintf(
				&s,
				"%s,\"amount_minor\":%lld,\"currency\":\"%s\",\"type\":\"pay\"}",
				head, amt, cur);
		break;
	case PAYQ_REASON_KEY_MISMATCH:
		n = asprintf(&s,
			     "{\"v\":1,\"type\":\"pay\",\"command_id\":\"%s\",\"order_id\":\"%s\","
			     "\"amount_minor\":%lld,\"currency\":\"%s\"}",
			     cid, other_oid, amt, cur);
		break;
	case PAYQ_REASON_BAD_ENCODING:
		n = asprintf(&s,
			     "%s,\"amount_minor\":%lld,\"currency\":\"%s\",\"payer_id\":\"%s\"}",
			     head, amt, cur, bad_utf8[v % PAYQ_ARRAY_SIZE(bad_utf8)]);
		break;
	case PAYQ_REASON_TOO_LARGE:
	default:
		snprintf(head + strlen(head), sizeof(head) - strlen(head),
			 ",\"amount_minor\":%lld,\"currency\":\"%s\"", amt, cur);
		m->value = too_large(head, &m->len);
		return m->value ? 0 : -1;
	}
	if (n < 0)
		return -1;
	m->value = s;
	m->len = (size_t)n;
	return 0;
}

/* Plans order n: draws every decision in a fixed sequence, then lays out the messages
 * in the order the worker must see them. */
static int plan_order(gen_t *g, int64_t n, gen_order_t *o)
{
	const payq_producer_gen_opts_t *go = g->go;
	uint64_t rng = rng_for_order(go->seed, n);
	int64_t amount = 1 + (int64_t)(rng_next(&rng) % 1000000);
	const char *cur = currencies[rng_next(&rng) % PAYQ_ARRAY_SIZE(currencies)];
	bool cancel = rng_unit(&rng) < go->cancel_rate;
	bool cancel_first = rng_next(&rng) & 1;
	bool dup = rng_unit(&rng) < go->dup_rate;
	bool double_pay = rng_unit(&rng) < go->double_pay_rate;
	bool key_reuse = rng_unit(&rng) < go->key_reuse_rate;
	bool malformed = rng_unit(&rng) < go->malformed_rate;
	uint64_t mal_pos = rng_next(&rng), mal_variant = rng_next(&rng);
	payq_command_t create, pay, c;

	memset(o, 0, sizeof(*o));
	snprintf(o->order_id, sizeof(o->order_id), "%sORD-%llu-%lld", go->id_prefix,
		 (unsigned long long)go->seed, (long long)n);

	memset(&create, 0, sizeof(create));
	create.type = PAYQ_CMD_CREATE_ORDER;
	command_id(g, n, K_CREATE, create.command_id);
	memcpy(create.order_id, o->order_id, sizeof(create.order_id));
	create.amount_minor = amount;
	memcpy(create.currency, cur, 4);
	create.has_customer_id = true;
	snprintf(create.customer_id, sizeof(create.customer_id), "cust-%lld", (long long)n);

	pay = create;
	pay.type = PAYQ_CMD_PAY;
	command_id(g, n, K_PAY, pay.command_id);
	pay.has_customer_id = false;
	pay.customer_id[0] = '\0';
	pay.has_payer_id = true;
	snprintf(pay.payer_id, sizeof(pay.payer_id), "payer-%lld", (long long)n);

	memset(&c, 0, sizeof(c));
	c.type = PAYQ_CMD_CANCEL_ORDER;
	command_id(g, n, K_CANCEL, c.command_id);
	memcpy(c.order_id, o->order_id, sizeof(c.order_id));
	c.has_reason = true;
	snprintf(c.reason, sizeof(c.reason), "customer");

	if (add_valid(o, &create) || (cancel && cancel_first && add_valid(o, &c)) ||
	    add_valid(o, &pay) || (cancel && !cancel_first && add_valid(o, &c)) ||
	    (dup && add_valid(o, &pay)))
		goto oom;
	if (double_pay) {
		payq_command_t again = pay;
		command_id(g, n, K_DOUBLE_PAY, again.command_id);
		if (add_valid(o, &again))
			goto oom;
	}
	if (key_reuse) {
		payq_command_t reuse = pay;
		reuse.amount_minor = amount + 1;
		if (add_valid(o, &reuse))
			goto oom;
	}
	if (malformed) {
		int at = (int)(mal_pos % (uint64_t)(o->cnt + 1));
		payq_reason_t r =
			malformed_cycle[g->malformed_seq++ % PAYQ_ARRAY_SIZE(malformed_cycle)];
		char cid[PAYQ_ID_MAX + 1], other[PAYQ_ID_MAX + 1];
		gen_msg_t m;

		memset(&m, 0, sizeof(m));
		command_id(g, n, K_MALFORMED, cid);
		snprintf(other, sizeof(other), "%sKM-%llu-%lld", go->id_prefix,
			 (unsigned long long)go->seed, (long long)n);
		if (build_malformed(&m, r, mal_variant, cid, o->order_id, other, (long long)amount,
				    cur))
			goto oom;
		m.expect = r;
		memmove(&o->msgs[at + 1], &o->msgs[at], (size_t)(o->cnt - at) * sizeof(m));
		o->msgs[at] = m;
		o->cnt++;
	}
	return 0;
oom:
	payq_err(g->errstr, sizeof(g->errstr), "out of memory");
	return -1;
}

/* Checks every message with the worker's codec, then simulates the outcome table. A
 * disagreement means the manifest would lie, so the run stops. */
static int check_and_simulate(gen_t *g, const gen_order_t *o)
{
	size_t klen = strlen(o->order_id);

	payq_manifest_order_begin(g->manifest);
	for (int i = 0; i < o->cnt; i++) {
		const gen_msg_t *m = &o->msgs[i];
		payq_command_t cmd;
		char err[256] = "";
		payq_reason_t r = payq_codec_decode(o->order_id, klen, m->value, m->len, &cmd, err,
						    sizeof(err));
		if (r != m->expect)
			return payq_err(g->errstr, sizeof(g->errstr),
					"generator bug: order %s message %d was built as %s, "
					"the codec says %s (%s)",
					o->order_id, i, payq_reason_name(m->expect),
					payq_reason_name(r), err);
		if (r == PAYQ_REASON_OK)
			payq_manifest_apply(g->manifest, &cmd);
	}
	payq_manifest_order_end(g->manifest);
	return 0;
}

static void free_order(gen_order_t *o)
{
	for (int i = 0; i < o->cnt; i++)
		free(o->msgs[i].value);
	o->cnt = 0;
}

/* Sends one window of orders round-robin. Returns 0, or -1 when the run stopped. */
static int emit_window(gen_t *g, payq_producer_t *sink, gen_order_t *win, int cnt, int64_t *index)
{
	for (int r = 0; r < ORDER_MSGS_MAX; r++) {
		for (int i = 0; i < cnt; i++) {
			const gen_msg_t *m;
			payq_producer_msg_t sm;

			if (r >= win[i].cnt)
				continue;
			m = &win[i].msgs[r];
			sm = (payq_producer_msg_t){
				.key = win[i].order_id,
				.key_len = strlen(win[i].order_id),
				.value = m->value,
				.value_len = m->len,
				.type = m->type,
				.command_id = m->command_id[0] ? m->command_id : NULL,
			};
			if (payq_producer_send(sink, &sm))
				return -1;
			if (payq_manifest_message(g->manifest, win[i].order_id, (*index)++,
						  m->expect))
				return payq_err(g->errstr, sizeof(g->errstr), "out of memory");
		}
	}
	return 0;
}

int payq_producer_generate(const payq_config_t *cfg, const payq_producer_opts_t *opts,
			   const payq_producer_gen_opts_t *go)
{
	gen_t g = {.go = go};
	gen_order_t *win = calloc(WINDOW, sizeof(*win));
	payq_producer_t *sink = NULL;
	int64_t done = 0, index = 0;
	int rc = PAYQ_PRODUCER_EXIT_UNDELIVERED, sink_rc;

	g.manifest = payq_manifest_new();
	if (!win || !g.manifest) {
		log_error("out of memory");
		goto out;
	}
	sink = payq_producer_new(cfg, opts, g.errstr, sizeof(g.errstr));
	if (!sink) {
		log_error("%s", g.errstr);
		goto out;
	}
	g.errstr[0] = '\0';
	while (done < go->orders) {
		int cnt = go->orders - done < WINDOW ? (int)(go->orders - done) : WINDOW, i;
		int failed = 0;

		for (i = 0; i < cnt && !failed; i++)
			failed = plan_order(&g, done + i + 1, &win[i]) ||
				 check_and_simulate(&g, &win[i]);
		if (!failed)
			failed = emit_window(&g, sink, win, cnt, &index);
		for (int j = 0; j < i; j++)
			free_order(&win[j]);
		if (failed)
			break;
		done += cnt;
	}
	if (g.errstr[0])
		log_error("%s", g.errstr);
	sink_rc = payq_producer_finish(sink);
	rc = g.errstr[0] ? PAYQ_PRODUCER_EXIT_UNDELIVERED : sink_rc;
	log_info("generated %lld of %lld orders (seed %llu, id prefix \"%s\"): %lld messages, "
		 "%lld of them malformed",
		 (long long)done, (long long)go->orders, (unsigned long long)go->seed,
		 go->id_prefix, (long long)payq_manifest_messages(g.manifest),
		 (long long)payq_manifest_malformed_count(g.manifest));
	if (go->manifest_path && done == go->orders) {
		payq_manifest_params_t p = {
			.seed = go->seed,
			.orders = go->orders,
			.id_prefix = go->id_prefix,
			.dup_rate = go->dup_rate,
			.double_pay_rate = go->double_pay_rate,
			.cancel_rate = go->cancel_rate,
			.key_reuse_rate = go->key_reuse_rate,
			.malformed_rate = go->malformed_rate,
		};
		if (payq_manifest_write(g.manifest, &p, go->manifest_path, g.errstr,
					sizeof(g.errstr))) {
			log_error("%s", g.errstr);
			if (rc == PAYQ_PRODUCER_EXIT_OK)
				rc = PAYQ_PRODUCER_EXIT_UNDELIVERED;
		}
	} else if (go->manifest_path) {
		log_error("manifest %s not written: the run stopped after %lld of %lld orders",
			  go->manifest_path, (long long)done, (long long)go->orders);
	}
out:
	payq_producer_destroy(sink);
	payq_manifest_destroy(g.manifest);
	free(win);
	return rc;
}
