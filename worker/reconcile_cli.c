/* reconcile_cli.c - `payq-worker reconcile`: passes run by hand (--once, --all), and one
 * payment resolved by a person (--mark-succeeded, --mark-failed, --charge-again), each
 * recorded as the reconciler (reconcile.c) would have. */
#include "reconcile_internal.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "consume.h"
#include "log.h"
#include "util.h"
#include "wmetrics.h"

void payq_reconcile_usage(FILE *fp)
{
	fprintf(fp,
		"reconcile  gateway mode: ask the payment channel about pending and unknown\n"
		"         payments and settle them (the workers do it too, under a leader lock).\n"
		"         --once   one pass, then print a summary, and for each payment that\n"
		"                  needs a person, how to resolve it; then exit\n"
		"         --all    look at every pending and unknown payment, due or not\n"
		"         --order ID --command ID  one pending or unknown payment, resolved by\n"
		"                  a person who looked it up at the channel, with one of:\n"
		"           --mark-succeeded CHARGE_ID  the channel charged it\n"
		"           --mark-failed               the channel did not charge it, and it\n"
		"                                       must not be charged (order stays unpaid)\n"
		"           --charge-again              the channel did not charge it: charge it\n"
		"                                       now with its stored key\n");
}

typedef enum { RESOLVE_NONE, RESOLVE_SUCCEEDED, RESOLVE_FAILED, RESOLVE_CHARGE } resolve_t;

static const char sql_one[] =
	"SELECT amount_minor, currency, payer_id, coalesce(idempotency_key, '') FROM payq.payments"
	" WHERE order_id = $1 AND command_id = $2 AND status IN ('pending', 'unknown')";

/* payq-worker reconcile --order O --command C --mark-succeeded ID | --mark-failed |
 * --charge-again: what a person decided about one payment, recorded as the reconciler
 * would have. Returns a PAYQ_EXIT_* code. */
static int resolve_one(payq_reconciler_t *r, const char *order, const char *command, resolve_t how,
		       const char *charge_id)
{
	const char *params[2] = {order, command};
	char errstr[512], sqlstate[6];
	payq_charge_t c;
	PGresult *res;
	int rc = PAYQ_EXIT_OK;

	if (reconciler_ready(r, false, errstr, sizeof(errstr)) != PASS_DONE) {
		fprintf(stderr, "payq-worker reconcile: %s\n", errstr);
		return PAYQ_EXIT_RUNTIME;
	}
	res = PQexecParams(r->conn, sql_one, 2, NULL, params, NULL, NULL, 0);
	if (PQresultStatus(res) != PGRES_TUPLES_OK || PQntuples(res) != 1) {
		fprintf(stderr, "payq-worker reconcile: %s\n",
			PQresultStatus(res) != PGRES_TUPLES_OK
				? PQerrorMessage(r->conn)
				: "no pending or unknown payment for this order and command");
		PQclear(res);
		return PAYQ_EXIT_RUNTIME;
	}
	memset(&c, 0, sizeof(c));
	c.order_id = order;
	c.command_id = command;
	c.amount_minor = strtoll(PQgetvalue(res, 0, 0), NULL, 10);
	c.currency = PQgetvalue(res, 0, 1);
	c.payer_id = PQgetisnull(res, 0, 2) ? NULL : PQgetvalue(res, 0, 2);
	snprintf(c.key, sizeof(c.key), "%s", PQgetvalue(res, 0, 3));
	c.retry = true;
	if (how == RESOLVE_SUCCEEDED) {
		c.status = PAYQ_CHARGE_SUCCEEDED;
		payq_utf8_clean(c.charge_id, sizeof(c.charge_id), charge_id, strlen(charge_id));
		snprintf(c.detail, sizeof(c.detail), "resolved by a person: charge %s succeeded",
			 c.charge_id);
	} else if (how == RESOLVE_FAILED) {
		c.status = PAYQ_CHARGE_DECLINED;
		snprintf(c.decline_code, sizeof(c.decline_code), "resolved_not_charged");
		snprintf(c.detail, sizeof(c.detail), "resolved by a person: not charged");
	} else {
		/* The person checked: the channel has no charge under this key. */
		payq_gateway_charge(r->gw, &c, 1);
	}
	if (payq_apply_settle(r->apply, &c, 1, NULL, 0, sqlstate, errstr, sizeof(errstr)) !=
	    PAYQ_APPLY_OK) {
		fprintf(stderr, "payq-worker reconcile: recording it: %s\n", errstr);
		rc = PAYQ_EXIT_RUNTIME;
	} else {
		printf("reconcile: order %s command %s: %s (payment %s)\n", order, command,
		       c.detail,
		       c.status == PAYQ_CHARGE_SUCCEEDED  ? "succeeded"
		       : c.status == PAYQ_CHARGE_DECLINED ? "failed"
							  : "unknown");
	}
	PQclear(res);
	return rc;
}

int payq_reconcile_one(const payq_config_t *cfg, const char *order, const char *command)
{
	char errstr[512];
	payq_reconciler_t *r = reconciler_new(cfg, errstr, sizeof(errstr));
	tally_t t;
	int rc = PAYQ_EXIT_OK;

	if (!r) {
		fprintf(stderr, "payq-worker reconcile: %s\n", errstr);
		return PAYQ_EXIT_USAGE;
	}
	r->report = true;
	r->only_order = order;
	r->only_command = command;
	if (reconciler_pass(r, false, true, &t, errstr, sizeof(errstr)) == PASS_ERROR) {
		fprintf(stderr, "payq-worker reconcile: %s\n", errstr);
		rc = PAYQ_EXIT_RUNTIME;
	} else {
		printf("reconcile: order %s command %s: looked at %" PRId64 ": %" PRId64
		       " succeeded, %" PRId64 " declined, %" PRId64 " charged again, %" PRId64
		       " unresolved\n",
		       order, command, t.looked, t.succeeded, t.declined, t.recharged,
		       t.unresolved);
	}
	reconciler_free(r);
	return rc;
}

int payq_reconcile_main(const payq_config_t *cfg, int argc, char **argv)
{
	bool once = false, all = false;
	const char *order = NULL, *command = NULL, *charge_id = NULL;
	resolve_t how = RESOLVE_NONE;
	char errstr[512];
	payq_reconciler_t *r;
	tally_t t;
	int rc = PAYQ_EXIT_OK;

	for (int i = 1; i < argc; i++) {
		if (!strcmp(argv[i], "--once")) {
			once = true;
		} else if (!strcmp(argv[i], "--all")) {
			all = true;
		} else if (!strcmp(argv[i], "--order") && i + 1 < argc) {
			order = argv[++i];
		} else if (!strcmp(argv[i], "--command") && i + 1 < argc) {
			command = argv[++i];
		} else if (!strcmp(argv[i], "--mark-succeeded") && i + 1 < argc &&
			   how == RESOLVE_NONE) {
			how = RESOLVE_SUCCEEDED;
			charge_id = argv[++i];
		} else if (!strcmp(argv[i], "--mark-failed") && how == RESOLVE_NONE) {
			how = RESOLVE_FAILED;
		} else if (!strcmp(argv[i], "--charge-again") && how == RESOLVE_NONE) {
			how = RESOLVE_CHARGE;
		} else {
			fprintf(stderr,
				"payq-worker reconcile: unknown argument \"%s\" (see --help)\n",
				argv[i]);
			return PAYQ_EXIT_USAGE;
		}
	}
	if ((how != RESOLVE_NONE) != (order && command) ||
	    ((order || command) && how == RESOLVE_NONE) || (how != RESOLVE_NONE && (once || all)) ||
	    (how == RESOLVE_SUCCEEDED && !*charge_id)) {
		fprintf(stderr, "payq-worker reconcile: --order and --command go together with "
				"exactly one of --mark-succeeded CHARGE_ID, --mark-failed or "
				"--charge-again (see --help)\n");
		return PAYQ_EXIT_USAGE;
	}
	payq_worker_metrics_init();
	r = reconciler_new(cfg, errstr, sizeof(errstr));
	if (!r) {
		fprintf(stderr, "payq-worker reconcile: %s\n", errstr);
		return PAYQ_EXIT_USAGE;
	}
	if (how != RESOLVE_NONE) {
		rc = resolve_one(r, order, command, how, charge_id);
		reconciler_free(r);
		return rc;
	}
	r->report = once;
	do {
		/* --once runs without the lock: every step is idempotent, and an operator
		 * running it by hand should not wait for the workers' leader. */
		pass_result_t prc = reconciler_pass(r, !once, all, &t, errstr, sizeof(errstr));

		if (prc == PASS_ERROR) {
			log_error("reconcile: %s", errstr);
			if (once) {
				rc = strstr(errstr, "schema") ? PAYQ_EXIT_SCHEMA
							      : PAYQ_EXIT_RUNTIME;
				break;
			}
		} else if (once) {
			printf("reconcile: looked at %" PRId64 ": %" PRId64 " succeeded, %" PRId64
			       " declined, %" PRId64 " charged again, %" PRId64
			       " unresolved (%" PRId64 " reported as unresolved_payment, %" PRId64
			       " past the key retention, %" PRId64
			       " answers not about their payment)\n",
			       t.looked, t.succeeded, t.declined, t.recharged, t.unresolved,
			       t.raised, t.held, t.mismatched);
		}
		if (!once)
			for (int64_t end = payq_now_ms() + cfg->reconcile_interval_ms;
			     payq_run && payq_now_ms() < end;)
				usleep(20000);
	} while (!once && payq_run);
	reconciler_free(r);
	return rc;
}
