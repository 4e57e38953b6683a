/* control.c - payq-sandbox-gateway's control API, for the tests and the demo: GET /healthz,
 * GET and POST /faults, GET /ledger and /ledger.csv, GET /stats, POST /reset and /forget. */
#include "control.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>

#include "server.h"
#include "state.h"
#include "util.h"

static const char *const lie_names[LIE__CNT] = {"none", "amount", "currency", "key"};

static const char *const stat_names[S_COUNT] = {
	[S_POST] = "post_charges", [S_GET] = "get_charges",	 [S_REPLAYED] = "replayed",
	[S_409] = "conflicts_409", [S_422] = "mismatch_422",	 [S_ERRORS] = "errors_injected",
	[S_DROPPED] = "dropped",   [S_401] = "unauthorized_401",
};

static enum MHD_Result get_healthz(struct MHD_Connection *conn, const request_t *req)
{
	return reply(conn, MHD_HTTP_OK, must(strdup("ok\n")), "text/plain; charset=utf-8", NULL,
		     NULL);
}

/* The numeric faults, for GET and POST /faults. */
static const struct fault {
	const char *name;
	int64_t *ms;  /* 0..DELAY_MAX_MS, or */
	double *rate; /* 0..1 */
} faults[] = {
	{"latency_ms", &st.latency_ms, NULL},
	{"jitter_ms", &st.jitter_ms, NULL},
	{"error_rate", NULL, &st.error_rate},
	{"drop_rate", NULL, &st.drop_rate},
};

static enum MHD_Result get_faults(struct MHD_Connection *conn, const request_t *req)
{
	cJSON *o = must(cJSON_CreateObject());

	pthread_mutex_lock(&st.lock);
	for (size_t i = 0; i < PAYQ_ARRAY_SIZE(faults); i++)
		cJSON_AddNumberToObject(o, faults[i].name,
					faults[i].ms ? (double)*faults[i].ms : *faults[i].rate);
	cJSON_AddBoolToObject(o, "down", st.down);
	cJSON_AddStringToObject(o, "lie", lie_names[st.lie]);
	cJSON_AddBoolToObject(o, "bad_text", st.bad_text);
	pthread_mutex_unlock(&st.lock);
	return reply_json(conn, o);
}

static int lie_parse(const cJSON *v)
{
	for (int i = 0; cJSON_IsString(v) && i < LIE__CNT; i++)
		if (!strcmp(v->valuestring, lie_names[i]))
			return i;
	return -1;
}

/* Checks one field of POST /faults: NULL, or what is wrong with it. */
static const char *fault_check(const cJSON *v)
{
	int64_t ms;

	if (!strcmp(v->string, "down") || !strcmp(v->string, "bad_text"))
		return cJSON_IsBool(v) ? NULL : "must be true or false";
	if (!strcmp(v->string, "lie"))
		return lie_parse(v) >= 0 ? NULL : "must be none, amount, currency or key";
	for (size_t i = 0; i < PAYQ_ARRAY_SIZE(faults); i++) {
		if (strcmp(v->string, faults[i].name))
			continue;
		if (faults[i].ms)
			return json_int(v, 0, DELAY_MAX_MS, &ms) ? NULL
								 : "must be an integer 0..600000";
		return cJSON_IsNumber(v) && v->valuedouble >= 0 && v->valuedouble <= 1
			       ? NULL
			       : "must be a number 0..1";
	}
	return "unknown fault (want latency_ms, jitter_ms, error_rate, drop_rate, down, lie or "
	       "bad_text)";
}

/* Applies the fields given, or none when one is bad, and answers the new state. */
static enum MHD_Result post_faults(struct MHD_Connection *conn, const request_t *req)
{
	cJSON *o = req->body ? cJSON_ParseWithLength(req->body, req->len) : NULL;
	const cJSON *v, *down = cJSON_GetObjectItemCaseSensitive(o, "down");
	const char *bad = cJSON_IsObject(o) ? NULL : "want a JSON object";
	char err[256] = "body";

	for (v = bad ? NULL : o->child; v && !bad; v = v->next)
		if ((bad = fault_check(v)))
			snprintf(err, sizeof(err), "%s", v->string);
	if (bad) {
		cJSON_Delete(o);
		return reply_error(conn, MHD_HTTP_BAD_REQUEST, "%s: %s", err, bad);
	}
	pthread_mutex_lock(&st.lock);
	for (size_t i = 0; i < PAYQ_ARRAY_SIZE(faults); i++) {
		if (!(v = cJSON_GetObjectItemCaseSensitive(o, faults[i].name)))
			continue;
		if (faults[i].ms)
			*faults[i].ms = (int64_t)v->valuedouble;
		else
			*faults[i].rate = v->valuedouble;
	}
	if ((v = cJSON_GetObjectItemCaseSensitive(o, "lie")))
		st.lie = (lie_t)lie_parse(v);
	if ((v = cJSON_GetObjectItemCaseSensitive(o, "bad_text")))
		st.bad_text = cJSON_IsTrue(v);
	pthread_mutex_unlock(&st.lock);
	if (down && api_set_down(cJSON_IsTrue(down), err, sizeof(err))) {
		cJSON_Delete(o);
		return reply_error(conn, MHD_HTTP_INTERNAL_SERVER_ERROR, "down: %s", err);
	}
	cJSON_Delete(o);
	return get_faults(conn, req);
}

static int cmp_str(const void *a, const void *b)
{
	return strcmp(*(const char *const *)a, *(const char *const *)b);
}

/* The summary a payment worker is judged by: multi_charged_orders must stay empty. */
static enum MHD_Result get_ledger(struct MHD_Connection *conn, const request_t *req)
{
	cJSON *o = must(cJSON_CreateObject()), *multi = must(cJSON_CreateArray());
	const char **orders;
	size_t n = 0, distinct = 0;

	pthread_mutex_lock(&st.lock);
	orders = must(malloc((st.charges + 1) * sizeof(*orders)));
	for (size_t i = 0; i < st.nrecs; i++)
		if (st.recs[i]->status == CH_SUCCEEDED)
			orders[n++] = st.recs[i]->order_id;
	/* Sorted, an order charged k times is a run of k; list each run longer than 1. */
	qsort(orders, n, sizeof(*orders), cmp_str);
	for (size_t i = 0; i < n; i++) {
		if (!i || strcmp(orders[i], orders[i - 1]))
			distinct++;
		else if (i == 1 || strcmp(orders[i - 1], orders[i - 2]))
			cJSON_AddItemToArray(multi, must(cJSON_CreateString(orders[i])));
	}
	cJSON_AddNumberToObject(o, "charges", (double)st.charges);
	cJSON_AddNumberToObject(o, "declines", (double)st.declines);
	cJSON_AddNumberToObject(o, "keys", (double)st.nrecs);
	pthread_mutex_unlock(&st.lock);
	free(orders);
	cJSON_AddNumberToObject(o, "orders_charged", (double)distinct);
	cJSON_AddItemToObject(o, "multi_charged_orders", multi);
	return reply_json(conn, o);
}

/* key,order_id,command_id,amount_minor,currency,status,charge_id for each decided key. */
static enum MHD_Result get_ledger_csv(struct MHD_Connection *conn, const request_t *req)
{
	char *buf = NULL;
	size_t len = 0;
	FILE *fp = must(open_memstream(&buf, &len));

	pthread_mutex_lock(&st.lock);
	for (size_t i = 0; i < st.nrecs; i++) {
		const charge_t *c = st.recs[i];
		if (c->status != CH_IN_PROGRESS)
			fprintf(fp, "%s,%s,%s,%" PRId64 ",%s,%s,ch_%08" PRIu64 "\n", c->key,
				c->order_id, c->command_id, c->amount_minor, c->currency,
				c->status == CH_SUCCEEDED ? "succeeded" : "declined", c->seq);
	}
	pthread_mutex_unlock(&st.lock);
	if (fclose(fp))
		must(NULL);
	return reply(conn, MHD_HTTP_OK, buf, "text/csv; charset=utf-8", NULL, NULL);
}

static enum MHD_Result get_stats(struct MHD_Connection *conn, const request_t *req)
{
	cJSON *o = must(cJSON_CreateObject());

	pthread_mutex_lock(&st.lock);
	for (size_t i = 0; i < S_COUNT; i++)
		cJSON_AddNumberToObject(o, stat_names[i], (double)st.stats[i]);
	pthread_mutex_unlock(&st.lock);
	return reply_json(conn, o);
}

/* Forgets keys, charges and counters (not the faults) and answers the empty ledger. */
static enum MHD_Result post_reset(struct MHD_Connection *conn, const request_t *req)
{
	pthread_mutex_lock(&st.lock);
	state_clear();
	pthread_mutex_unlock(&st.lock);
	return get_ledger(conn, req);
}

/* Forgets every idempotency key, as a real channel does after its retention (Stripe:
 * 24 h): a later POST with such a key charges again. The ledger keeps the charges. */
static enum MHD_Result post_forget(struct MHD_Connection *conn, const request_t *req)
{
	cJSON *o = must(cJSON_CreateObject());
	size_t n = 0;

	pthread_mutex_lock(&st.lock);
	for (size_t i = 0; i < st.nrecs; i++)
		if (st.recs[i]->status != CH_IN_PROGRESS && !st.recs[i]->forgotten) {
			st.recs[i]->forgotten = true;
			n++;
		}
	pthread_mutex_unlock(&st.lock);
	cJSON_AddNumberToObject(o, "forgotten", (double)n);
	return reply_json(conn, o);
}

static const struct route {
	const char *path, *method;
	enum MHD_Result (*fn)(struct MHD_Connection *conn, const request_t *req);
} routes[] = {
	/* clang-format off */
	{"/healthz",    "GET",  get_healthz},
	{"/faults",     "GET",  get_faults},
	{"/faults",     "POST", post_faults},
	{"/ledger",     "GET",  get_ledger},
	{"/ledger.csv", "GET",  get_ledger_csv},
	{"/stats",      "GET",  get_stats},
	{"/reset",      "POST", post_reset},
	{"/forget",     "POST", post_forget},
	/* clang-format on */
};

enum MHD_Result on_control(void *cls, struct MHD_Connection *conn, const char *url,
			   const char *method, const char *version, const char *data, size_t *size,
			   void **con_cls)
{
	const char *allow = NULL;

	if (!gather(con_cls, data, size))
		return MHD_YES;
	for (size_t i = 0; i < PAYQ_ARRAY_SIZE(routes); i++) {
		if (strcmp(url, routes[i].path))
			continue;
		if (!strcmp(method, routes[i].method))
			return routes[i].fn(conn, *con_cls);
		allow = routes[i].method;
	}
	if (allow)
		return reply_405(conn, !strcmp(url, "/faults") ? "GET, POST" : allow);
	return reply_error(conn, MHD_HTTP_NOT_FOUND, "not found: %s", url);
}
