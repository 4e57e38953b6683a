/* test_pg.c - unit tests for the libpq helpers that need no server: the start warning for
 * sslmode below verify-full towards a remote host, and which settings each program reads. */
#include <check.h>
#include <stdbool.h>
#include <stdlib.h>

#include "check_main.h"
#include "config.h"
#include "pg.h"

struct warn_case {
	const char *conninfo;
	const char *pgsslmode; /* PGSSLMODE, or NULL */
	bool warns;
};

static const struct warn_case warn_cases[] = {
	{"", NULL, false}, /* libpq's default: the unix socket */
	{"dbname=payq", NULL, false},
	{"host=/var/run/postgresql dbname=payq", NULL, false},
	{"host=127.0.0.1 dbname=payq", NULL, false},
	{"host=127.10.0.3 sslmode=disable", NULL, false},
	{"host=localhost sslmode=disable", NULL, false},
	{"host=::1 sslmode=prefer", NULL, false},
	{"host=db.example dbname=payq", NULL, true},
	{"host=db.example sslmode=disable", NULL, true},
	{"host=db.example sslmode=allow", NULL, true},
	{"host=db.example sslmode=require", NULL, true},
	{"host=db.example sslmode=verify-ca", NULL, true},
	{"host=db.example sslmode=verify-full", NULL, false},
	{"host=localhost,db.example sslmode=require", NULL, true},
	{"host=localhost,127.0.0.2 sslmode=require", NULL, false},
	{"host=127.0.0.1 hostaddr=10.0.0.7", NULL, true},
	{"hostaddr=10.0.0.7 sslmode=verify-full", NULL, false},
	{"host=db.example", "verify-full", false},
	{"host=db.example", "require", true},
	{"host=db.example sslmode=verify-full", "disable", false},
	{"postgresql://u:secret@db.example/payq", NULL, true},
	{"postgresql://db.example/payq?sslmode=verify-full", NULL, false},
	{"postgresql://localhost/payq?sslmode=disable", NULL, false},
	{"host='", NULL, false}, /* unparsable: connecting reports it */
};

START_TEST(test_warn_insecure)
{
	const struct warn_case *c = &warn_cases[_i];

	unsetenv("PGHOST");
	unsetenv("PGHOSTADDR");
	if (c->pgsslmode)
		setenv("PGSSLMODE", c->pgsslmode, 1);
	else
		unsetenv("PGSSLMODE");
	ck_assert_msg(payq_pg_warn_insecure(c->conninfo) == c->warns, "%s (PGSSLMODE=%s): want %s",
		      c->conninfo, c->pgsslmode ? c->pgsslmode : "unset",
		      c->warns ? "a warning" : "none");
	unsetenv("PGSSLMODE");
}
END_TEST

START_TEST(test_warn_pghost)
{
	setenv("PGHOST", "db.example", 1);
	unsetenv("PGSSLMODE");
	ck_assert(payq_pg_warn_insecure(NULL));
	ck_assert(!payq_pg_warn_insecure("host=127.0.0.1"));
	unsetenv("PGHOST");
}
END_TEST

/* The session timeouts are the worker's; the connection bounds the worker's and replay's. */
START_TEST(test_session_settings)
{
	static const char *const worker_only[] = {"PAYQ_DB_STATEMENT_TIMEOUT_MS",
						  "PAYQ_DB_LOCK_TIMEOUT_MS",
						  "PAYQ_DB_IDLE_IN_TRANSACTION_TIMEOUT_MS"};
	static const char *const both[] = {"PAYQ_DB_CONNECT_TIMEOUT_S", "PAYQ_DB_KEEPALIVES_IDLE_S",
					   "PAYQ_DB_KEEPALIVES_INTERVAL_S",
					   "PAYQ_DB_KEEPALIVES_COUNT",
					   "PAYQ_DB_TCP_USER_TIMEOUT_MS"};

	for (size_t i = 0; i < sizeof(worker_only) / sizeof(worker_only[0]); i++) {
		ck_assert_ptr_nonnull(payq_config_find(worker_only[i], PAYQ_PROG_WORKER));
		ck_assert_ptr_null(payq_config_find(worker_only[i], PAYQ_PROG_REPLAY));
		ck_assert_ptr_null(payq_config_find(worker_only[i], PAYQ_PROG_PRODUCER));
	}
	for (size_t i = 0; i < sizeof(both) / sizeof(both[0]); i++) {
		ck_assert_ptr_nonnull(payq_config_find(both[i], PAYQ_PROG_WORKER));
		ck_assert_ptr_nonnull(payq_config_find(both[i], PAYQ_PROG_REPLAY));
		ck_assert_ptr_null(payq_config_find(both[i], PAYQ_PROG_PRODUCER));
	}
}
END_TEST

/* No connection, no result: a lost connection, transient. */
START_TEST(test_transient_without_result)
{
	ck_assert(payq_pg_transient(NULL, NULL));
}
END_TEST

static Suite *pg_suite(void)
{
	Suite *s = suite_create("pg");
	TCase *tc = tcase_create("core");

	tcase_add_loop_test(tc, test_warn_insecure, 0,
			    (int)(sizeof(warn_cases) / sizeof(warn_cases[0])));
	tcase_add_test(tc, test_warn_pghost);
	tcase_add_test(tc, test_session_settings);
	tcase_add_test(tc, test_transient_without_result);
	suite_add_tcase(s, tc);
	return s;
}

PAYQ_TEST_SUITES(pg_suite);
