/* actions.c - payq-console: every action is a plan first (exact targets, count, hash);
 * execute takes only that plan, fresh and unchanged, once, and after its
 * payq.operator_actions row is written. The work itself is payq-replay's and the
 * reconciler's own code, called in-process. */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "audit.h"
#include "console.h"
#include "dlq.h"
#include "log.h"
#include "pg.h"
#include "reconcile.h"
#include "util.h"

#define MAX_PLANS 128
#define OUTPUT_MAX 16384

typedef enum {
	ACT_DLQ_REDRIVE,
	ACT_RECONCILE_NOW,
	ACT_RESOLVE,
	ACT_AUDIT_REPAIR,
	ACT_ANOMALY_ACK,
	ACT__COUNT,
} action_kind_t;

typedef struct action_def {
	const char *name;
	console_role_t plan_role, exec_role;
	bool irreversible; /* typed confirmation even for one target */
} action_def_t;

static const action_def_t defs[ACT__COUNT] = {
	[ACT_DLQ_REDRIVE] = {"dlq-redrive", CONSOLE_ROLE_OPERATOR, CONSOLE_ROLE_OPERATOR, false},
	[ACT_RECONCILE_NOW] = {"reconcile-now", CONSOLE_ROLE_OPERATOR, CONSOLE_ROLE_OPERATOR,
			       false},
	[ACT_RESOLVE] = {"resolve", CONSOLE_ROLE_ADMIN, CONSOLE_ROLE_ADMIN, true},
	[ACT_AUDIT_REPAIR] = {"audit-repair", CONSOLE_ROLE_OPERATOR, CONSOLE_ROLE_ADMIN, true},
	[ACT_ANOMALY_ACK] = {"anomaly-ack", CONSOLE_ROLE_OPERATOR, CONSOLE_ROLE_OPERATOR, false},
};

typedef enum { PLAN_FREE, PLAN_READY, PLAN_DONE } plan_state_t;

typedef struct plan {
	plan_state_t state;
	char id[33];
	action_kind_t kind;
	cJSON *params, *targets;
	char hash[65];
	int64_t created_ms;
	char actor[128];
	bool ok;
	char *result;
} plan_t;

static plan_t plans[MAX_PLANS];

static action_kind_t kind_parse(const char *s)
{
	for (int k = 0; s && k < ACT__COUNT; k++)
		if (!strcmp(defs[k].name, s))
			return (action_kind_t)k;
	return ACT__COUNT;
}

static const char *param(const cJSON *params, const char *name)
{
	const cJSON *v = cJSON_GetObjectItemCaseSensitive(params, name);
	return cJSON_IsString(v) && v->valuestring[0] && strlen(v->valuestring) <= 200
		       ? v->valuestring
		       : NULL;
}

/* Runs fn with stdout going to a temporary file, and returns what it printed: the
 * subcommands report on stdout. The server has one thread, so nothing else prints
 * meanwhile. */
typedef int (*run_fn)(void *arg);
static int run_captured(run_fn fn, void *arg, char **out)
{
	FILE *tmp = tmpfile();
	int saved, rc;
	size_t n;

	*out = calloc(1, OUTPUT_MAX);
	if (!tmp || !*out) {
		if (tmp)
			fclose(tmp);
		return -1;
	}
	fflush(stdout);
	saved = dup(STDOUT_FILENO);
	dup2(fileno(tmp), STDOUT_FILENO);
	rc = fn(arg);
	fflush(stdout);
	dup2(saved, STDOUT_FILENO);
	close(saved);
	rewind(tmp);
	n = fread(*out, 1, OUTPUT_MAX - 1, tmp);
	(*out)[n] = '\0';
	fclose(tmp);
	return rc;
}

typedef struct argv_run {
	int (*main_fn)(const payq_config_t *cfg, int argc, char **argv);
	int argc;
	char *argv[16];
} argv_run_t;

static int run_argv(void *arg)
{
	argv_run_t *a = arg;
	return a->main_fn(&console.act_cfg, a->argc, a->argv);
}

/* audit --repair without --execute: the gap lines are the targets. */
static cJSON *audit_targets(const cJSON *params, char *errstr, size_t errstr_size)
{
	argv_run_t a = {.main_fn = replay_audit_main, .argc = 2, .argv = {"audit", "--repair"}};
	char *out = NULL, *save = NULL;
	int rc = run_captured(run_argv, &a, &out);
	cJSON *t;

	(void)params;
	if (rc != 0 && rc != 1) {
		payq_err(errstr, errstr_size, "audit --repair (dry run) exited %d: %.300s", rc,
			 out ? out : "");
		free(out);
		return NULL;
	}
	t = cJSON_CreateArray();
	for (char *line = strtok_r(out, "\n", &save); line; line = strtok_r(NULL, "\n", &save))
		if (!strncmp(line, "gap ", 4))
			cJSON_AddItemToArray(t, cJSON_CreateString(line));
	free(out);
	return t;
}

/* An array of the "target" column of sql's rows. */
static cJSON *sql_targets(const char *sql, int n, const char *const *params, char *errstr,
			  size_t errstr_size)
{
	cJSON *rows =
		console_sql_rows(&console.ro, console.cfg.db, sql, n, params, errstr, errstr_size);
	cJSON *t, *row;

	if (!rows)
		return NULL;
	t = cJSON_CreateArray();
	cJSON_ArrayForEach(row, rows)
	{
		cJSON *v = cJSON_GetObjectItem(row, "target");
		cJSON_AddItemToArray(t,
				     cJSON_CreateString(cJSON_IsString(v) ? v->valuestring : "?"));
	}
	cJSON_Delete(rows);
	return t;
}

static const char sql_payment_target[] =
	"SELECT order_id || '/' || command_id || ' ' || status || ' attempts=' || attempts"
	" || ' key=' || coalesce(idempotency_key, '') AS target FROM payq.payments"
	" WHERE order_id = $1 AND command_id = $2 AND status IN ('pending', 'unknown')";

static const char sql_anomaly_targets[] =
	"SELECT id::text AS target FROM payq.anomalies WHERE kind = $1"
	" AND id NOT IN (SELECT (jsonb_array_elements_text(targets))::bigint"
	"   FROM payq.operator_actions WHERE action = 'anomaly-ack' AND phase = 'result' AND ok)"
	" ORDER BY id LIMIT 10000";

/* What the action would act on now. NULL with errstr on bad params or an error. */
static cJSON *compute_targets(action_kind_t k, const cJSON *params, char *errstr,
			      size_t errstr_size)
{
	const char *p2[2] = {param(params, "order"), param(params, "command")};
	cJSON *t = NULL, *scan;

	switch (k) {
	case ACT_DLQ_REDRIVE:
		if (!param(params, "reason")) {
			payq_err(errstr, errstr_size, "dlq-redrive needs a reason");
			return NULL;
		}
		scan = console_dlq_scan(param(params, "reason"), true, &t, errstr, errstr_size);
		cJSON_Delete(scan);
		return scan ? t : NULL;
	case ACT_RESOLVE: {
		const char *how = param(params, "how");
		if (!how || (strcmp(how, "succeeded") && strcmp(how, "failed")) ||
		    (!strcmp(how, "succeeded") && !param(params, "charge_id"))) {
			payq_err(errstr, errstr_size,
				 "resolve needs how=succeeded (with "
				 "charge_id) or how=failed");
			return NULL;
		}
	}
		/* fall through */
	case ACT_RECONCILE_NOW:
		if (!p2[0] || !p2[1]) {
			payq_err(errstr, errstr_size, "needs order and command");
			return NULL;
		}
		return sql_targets(sql_payment_target, 2, p2, errstr, errstr_size);
	case ACT_AUDIT_REPAIR: return audit_targets(params, errstr, errstr_size);
	case ACT_ANOMALY_ACK:
		if (!param(params, "kind")) {
			payq_err(errstr, errstr_size, "anomaly-ack needs a kind");
			return NULL;
		}
		p2[0] = param(params, "kind");
		return sql_targets(sql_anomaly_targets, 1, p2, errstr, errstr_size);
	default: payq_err(errstr, errstr_size, "unknown action"); return NULL;
	}
}

static void plan_hash(action_kind_t k, const cJSON *params, const cJSON *targets, char out[65])
{
	char *p = cJSON_PrintUnformatted(params), *t = cJSON_PrintUnformatted(targets), *all = NULL;

	if (asprintf(&all, "%s\n%s\n%s", defs[k].name, p ? p : "", t ? t : "") < 0)
		all = NULL;
	console_sha256_hex(all ? all : "", out);
	free(all);
	free(p);
	free(t);
}

/* Appends one payq.operator_actions row. Returns 0, or -1 with errstr: the caller must
 * then not act. */
static int log_action(const console_ident_t *id, const plan_t *pl, const char *phase,
		      const char *reason, const char *result, bool ok, char *errstr,
		      size_t errstr_size)
{
	static const char sql[] =
		"INSERT INTO payq.operator_actions (actor, role, action, phase, plan_id, plan_hash,"
		" target_count, targets, params, reason, result, ok, order_ids)"
		" VALUES ($1, $2, $3, $4, $5, $6, $7::integer, $8::jsonb, $9::jsonb, $10, $11,"
		" $12::boolean, CASE WHEN $13 = '' THEN '{}'::text[] ELSE ARRAY[$13] END)"
		" RETURNING id";
	char count[24], clean_reason[512] = "", clean_result[OUTPUT_MAX];
	char *targets = cJSON_PrintUnformatted(pl->targets),
	     *params = cJSON_PrintUnformatted(pl->params);
	const char *order = param(pl->params, "order");
	const char *v[13];
	PGresult *res;
	int rc = 0;

	if (!console.act || PQstatus(console.act) != CONNECTION_OK) {
		if (console.act)
			PQfinish(console.act);
		console.act = payq_pg_connect(console.act_cfg.db, "payq-console-actions", errstr,
					      errstr_size);
		if (!console.act) {
			free(targets);
			free(params);
			return -1;
		}
	}
	snprintf(count, sizeof(count), "%d", cJSON_GetArraySize(pl->targets));
	if (reason)
		payq_utf8_clean(clean_reason, sizeof(clean_reason), reason, strlen(reason));
	payq_utf8_clean(clean_result, sizeof(clean_result), result ? result : "",
			result ? strlen(result) : 0);
	v[0] = id->user;
	v[1] = console_role_name(id->role);
	v[2] = defs[pl->kind].name;
	v[3] = phase;
	v[4] = pl->id;
	v[5] = pl->hash;
	v[6] = count;
	v[7] = targets ? targets : "[]";
	v[8] = params ? params : "{}";
	v[9] = reason ? clean_reason : NULL;
	v[10] = clean_result;
	v[11] = ok ? "true" : "false";
	v[12] = order ? order : "";
	res = PQexecParams(console.act, sql, 13, NULL, v, NULL, NULL, 0);
	if (PQresultStatus(res) != PGRES_TUPLES_OK)
		rc = payq_err(errstr, errstr_size, "writing payq.operator_actions: %s",
			      PQerrorMessage(console.act));
	PQclear(res);
	free(targets);
	free(params);
	return rc;
}

static plan_t *plan_slot(void)
{
	plan_t *oldest = &plans[0];

	for (size_t i = 0; i < MAX_PLANS; i++) {
		if (plans[i].state == PLAN_FREE)
			return &plans[i];
		if (plans[i].created_ms < oldest->created_ms)
			oldest = &plans[i];
	}
	cJSON_Delete(oldest->params);
	cJSON_Delete(oldest->targets);
	free(oldest->result);
	memset(oldest, 0, sizeof(*oldest));
	return oldest;
}

static plan_t *plan_find(const char *pid)
{
	for (size_t i = 0; pid && i < MAX_PLANS; i++)
		if (plans[i].state != PLAN_FREE && !strcmp(plans[i].id, pid))
			return &plans[i];
	return NULL;
}

static bool needs_confirmation(const plan_t *pl)
{
	return defs[pl->kind].irreversible || cJSON_GetArraySize(pl->targets) > 1;
}

static cJSON *plan_json(const plan_t *pl)
{
	cJSON *j = cJSON_CreateObject();

	cJSON_AddStringToObject(j, "plan_id", pl->id);
	cJSON_AddStringToObject(j, "action", defs[pl->kind].name);
	cJSON_AddItemToObject(j, "params", cJSON_Duplicate(pl->params, 1));
	cJSON_AddItemToObject(j, "targets", cJSON_Duplicate(pl->targets, 1));
	cJSON_AddNumberToObject(j, "count", cJSON_GetArraySize(pl->targets));
	cJSON_AddStringToObject(j, "hash", pl->hash);
	cJSON_AddBoolToObject(j, "confirm_count", needs_confirmation(pl));
	cJSON_AddNumberToObject(j, "expires_in_s", (double)console.plan_ttl_ms / 1000.0);
	return j;
}

void console_plan(const console_ident_t *id, const char *body, console_reply_t *r)
{
	cJSON *req = cJSON_Parse(body ? body : ""), *params, *targets;
	action_kind_t k = kind_parse(cJSON_GetStringValue(cJSON_GetObjectItem(req, "action")));
	char errstr[512];
	plan_t *pl;

	if (k == ACT__COUNT) {
		cJSON_Delete(req);
		console_error(r, 400,
			      "action: one of dlq-redrive, reconcile-now, resolve, "
			      "audit-repair, anomaly-ack");
		return;
	}
	if (!console_allowed(id, defs[k].plan_role)) {
		cJSON_Delete(req);
		console_error(r, 403, "%s may not plan %s", console_role_name(id->role),
			      defs[k].name);
		return;
	}
	params = cJSON_DetachItemFromObject(req, "params");
	cJSON_Delete(req);
	if (!cJSON_IsObject(params)) {
		cJSON_Delete(params);
		params = cJSON_CreateObject();
	}
	if (!(targets = compute_targets(k, params, errstr, sizeof(errstr)))) {
		cJSON_Delete(params);
		console_error(r, 400, "%s", errstr);
		return;
	}
	pl = plan_slot();
	if (console_random_hex(16, pl->id)) {
		cJSON_Delete(params);
		cJSON_Delete(targets);
		console_error(r, 500, "no randomness");
		return;
	}
	pl->kind = k;
	pl->params = params;
	pl->targets = targets;
	pl->created_ms = payq_now_ms();
	snprintf(pl->actor, sizeof(pl->actor), "%s", id->user);
	plan_hash(k, params, targets, pl->hash);
	/* The dry run is an action too: it is logged, and without its row there is no plan. */
	if (log_action(id, pl, "plan", NULL, "dry run", true, errstr, sizeof(errstr))) {
		cJSON_Delete(pl->params);
		cJSON_Delete(pl->targets);
		memset(pl, 0, sizeof(*pl));
		console_error(r, 503, "%s: nothing planned", errstr);
		return;
	}
	pl->state = PLAN_READY;
	console_json(r, 200, plan_json(pl));
}

/* dlq re-drive of exactly the plan's records: per partition, the span from the first to
 * the last planned offset, filtered by the reason. Records that arrive later lie past it. */
typedef struct redrive {
	const plan_t *pl;
} redrive_t;

static int run_redrive(void *arg)
{
	const plan_t *pl = ((redrive_t *)arg)->pl;
	const char *reason = param(pl->params, "reason");
	int worst = 0;

	for (int part = 0; part < 4096; part++) {
		int64_t lo = -1, hi = -1;
		const cJSON *t;
		cJSON_ArrayForEach(t, pl->targets)
		{
			int32_t p;
			int64_t o;
			if (sscanf(t->valuestring, "%" SCNd32 "/%" SCNd64, &p, &o) != 2 ||
			    p != part)
				continue;
			lo = lo < 0 || o < lo ? o : lo;
			hi = o > hi ? o : hi;
		}
		if (lo < 0)
			continue;
		char ps[16], from[24], to[24], rate[32];
		snprintf(ps, sizeof(ps), "%d", part);
		snprintf(from, sizeof(from), "%" PRId64, lo);
		snprintf(to, sizeof(to), "%" PRId64, hi + 1);
		snprintf(rate, sizeof(rate), "%g", console.rate);
		argv_run_t a = {.main_fn = replay_dlq_main,
				.argc = 11,
				.argv = {"dlq", "--reason", (char *)reason, "--partition", ps,
					 "--from-offset", from, "--to-offset", to, "--rate", rate}};
		int rc = run_argv(&a);
		if (rc > worst)
			worst = rc;
	}
	return worst;
}

typedef struct one_payment {
	const plan_t *pl;
} one_payment_t;

static int run_reconcile_now(void *arg)
{
	const plan_t *pl = ((one_payment_t *)arg)->pl;
	return payq_reconcile_one(&console.act_cfg, param(pl->params, "order"),
				  param(pl->params, "command"));
}

static int run_resolve(void *arg)
{
	const plan_t *pl = ((one_payment_t *)arg)->pl;
	bool ok = !strcmp(param(pl->params, "how"), "succeeded");
	argv_run_t a = {.main_fn = payq_reconcile_main,
			.argc = ok ? 7 : 6,
			.argv = {"reconcile", "--order", (char *)param(pl->params, "order"),
				 "--command", (char *)param(pl->params, "command"),
				 ok ? "--mark-succeeded" : "--mark-failed",
				 ok ? (char *)param(pl->params, "charge_id") : NULL}};
	return run_argv(&a);
}

/* Runs the plan's action. Returns true when it succeeded; *out gets its output. */
static bool run_plan(plan_t *pl, char **out)
{
	int rc;

	*out = NULL;
	switch (pl->kind) {
	case ACT_DLQ_REDRIVE: {
		redrive_t a = {pl};
		rc = run_captured(run_redrive, &a, out);
		return rc == 0;
	}
	case ACT_RECONCILE_NOW: {
		one_payment_t a = {pl};
		rc = run_captured(run_reconcile_now, &a, out);
		return rc == 0;
	}
	case ACT_RESOLVE: {
		one_payment_t a = {pl};
		rc = run_captured(run_resolve, &a, out);
		return rc == 0;
	}
	case ACT_AUDIT_REPAIR: {
		argv_run_t a = {.main_fn = replay_audit_main,
				.argc = 3,
				.argv = {"audit", "--repair", "--execute"}};
		rc = run_captured(run_argv, &a, out);
		/* 1: gaps were found (and repaired); audit again once the workers caught up. */
		return rc == 0 || rc == 1;
	}
	case ACT_ANOMALY_ACK:
	default: *out = strdup("acknowledged"); return true;
	}
}

/* A refusal is logged too (best effort: the refusal stands without its row). */
static void refuse(const console_ident_t *id, plan_t *pl, console_reply_t *r, unsigned status,
		   const char *why)
{
	char errstr[512];

	if (pl)
		log_action(id, pl, "refused", NULL, why, false, errstr, sizeof(errstr));
	console_error(r, status, "%s", why);
}

void console_execute(const console_ident_t *id, const char *body, console_reply_t *r)
{
	cJSON *req = cJSON_Parse(body ? body : ""), *now, *j;
	plan_t *pl = plan_find(cJSON_GetStringValue(cJSON_GetObjectItem(req, "plan_id")));
	const char *hash = cJSON_GetStringValue(cJSON_GetObjectItem(req, "hash"));
	const char *confirm = cJSON_GetStringValue(cJSON_GetObjectItem(req, "confirm"));
	const char *reason = cJSON_GetStringValue(cJSON_GetObjectItem(req, "reason"));
	char errstr[512], count[24], now_hash[65], *out = NULL;

	if (!pl) {
		cJSON_Delete(req);
		console_error(r, 404, "no such plan: make a dry run first");
		return;
	}
	if (!console_allowed(id, defs[pl->kind].exec_role)) {
		refuse(id, pl, r, 403, "this role may not execute this action");
	} else if (pl->state == PLAN_DONE) {
		/* A double submit: the first one ran; this one does nothing. */
		j = plan_json(pl);
		cJSON_AddBoolToObject(j, "already_executed", true);
		cJSON_AddBoolToObject(j, "ok", pl->ok);
		cJSON_AddStringToObject(j, "result", pl->result ? pl->result : "");
		console_json(r, 409, j);
	} else if (!hash || strcmp(hash, pl->hash)) {
		refuse(id, pl, r, 409, "the hash is not this plan's");
	} else if (payq_now_ms() - pl->created_ms > console.plan_ttl_ms) {
		refuse(id, pl, r, 409, "the plan is stale: make a new dry run");
	} else if (snprintf(count, sizeof(count), "%d", cJSON_GetArraySize(pl->targets)),
		   needs_confirmation(pl) && (!confirm || strcmp(confirm, count))) {
		refuse(id, pl, r, 400, "type the number of targets to confirm");
	} else if (pl->kind == ACT_RESOLVE && (!reason || strlen(reason) < 3)) {
		refuse(id, pl, r, 400, "resolving by hand needs a reason");
	} else if (!(now = compute_targets(pl->kind, pl->params, errstr, sizeof(errstr)))) {
		refuse(id, pl, r, 503, errstr);
	} else if (plan_hash(pl->kind, pl->params, now, now_hash), cJSON_Delete(now),
		   strcmp(now_hash, pl->hash)) {
		refuse(id, pl, r, 409,
		       "the targets have changed since the dry run: make a new one");
	} else if (log_action(id, pl, "execute", reason, "", true, errstr, sizeof(errstr))) {
		console_error(r, 503, "%s: the action did not run", errstr);
	} else {
		pl->state = PLAN_DONE; /* before it runs: a second submit must not run it again */
		pl->ok = run_plan(pl, &out);
		pl->result = out ? out : strdup("");
		if (log_action(id, pl, "result", reason, pl->result, pl->ok, errstr,
			       sizeof(errstr)))
			log_error("console: %s (the action ran: %s)", errstr,
				  pl->ok ? "ok" : "failed");
		j = plan_json(pl);
		cJSON_AddBoolToObject(j, "ok", pl->ok);
		cJSON_AddStringToObject(j, "result", pl->result);
		console_json(r, pl->ok ? 200 : 500, j);
	}
	cJSON_Delete(req);
}
