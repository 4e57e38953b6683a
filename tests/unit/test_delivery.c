/* test_delivery.c - common/delivery.c without a broker: a message that cannot be delivered
 * is reported as not persisted, the wait keeps to its bound, and destroy says what it
 * dropped; common/signals.c: SIGINT and SIGTERM clear the run flag. */
#include <check.h>
#include <signal.h>
#include <stdlib.h>

#include "check_main.h"
#include "config.h"
#include "delivery.h"
#include "signals.h"
#include "util.h"

typedef struct reports {
	int persisted;
	int failed;
} reports_t;

static void on_report(void *opaque, const rd_kafka_message_t *m, bool persisted)
{
	reports_t *r = opaque;

	(void)m;
	if (persisted)
		r->persisted++;
	else
		r->failed++;
}

/* A producer pointed at a closed port, with a short message timeout. */
static payq_delivery_t *unreachable(payq_config_t *cfg, reports_t *r)
{
	payq_delivery_opts_t o = {
		.client = PAYQ_KAFKA_REPLAY_SINK, .on_report = on_report, .opaque = r};
	char errstr[512];
	payq_delivery_t *d;

	payq_config_init(cfg);
	free(cfg->brokers);
	cfg->brokers = strdup("127.0.0.1:1");
	ck_assert_int_eq(payq_config_add_x(cfg, "message.timeout.ms=1500", errstr, sizeof(errstr)),
			 0);
	ck_assert_int_eq(payq_config_add_x(cfg, "log_level=0", errstr, sizeof(errstr)), 0);
	d = payq_delivery_new(cfg, &o, errstr, sizeof(errstr));
	ck_assert_msg(d != NULL, "%s", errstr);
	return d;
}

static rd_kafka_resp_err_t produce(payq_delivery_t *d)
{
	payq_delivery_msg_t m = {
		.topic = "payq.test", .key = "k", .key_len = 1, .value = "v", .value_len = 1};

	return payq_delivery_produce(d, &m, NULL, NULL);
}

START_TEST(test_undeliverable_is_not_persisted)
{
	payq_config_t cfg;
	reports_t r = {0};
	payq_delivery_t *d = unreachable(&cfg, &r);

	ck_assert_int_eq(produce(d), RD_KAFKA_RESP_ERR_NO_ERROR);
	ck_assert_int_eq(payq_delivery_outstanding(d), 1);
	ck_assert_int_eq(payq_delivery_wait(d, payq_now_ms() + 20000, 100, NULL, NULL),
			 PAYQ_DELIVERY_DONE);
	ck_assert_int_eq(r.persisted, 0);
	ck_assert_int_eq(r.failed, 1);
	ck_assert_int_eq(payq_delivery_outstanding(d), 0);
	ck_assert_int_eq(payq_delivery_destroy(d, 0), 0);
	payq_config_destroy(&cfg);
}
END_TEST

START_TEST(test_wait_keeps_to_its_bound)
{
	payq_config_t cfg;
	reports_t r = {0};
	payq_delivery_t *d = unreachable(&cfg, &r);
	int64_t t0;

	ck_assert_int_eq(produce(d), RD_KAFKA_RESP_ERR_NO_ERROR);
	t0 = payq_now_ms();
	ck_assert_int_eq(payq_delivery_wait(d, t0 + 200, 50, NULL, NULL), PAYQ_DELIVERY_TIMEOUT);
	ck_assert_int_lt(payq_now_ms() - t0, 1200);
	ck_assert_int_eq(r.failed + r.persisted, 0);
	/* Dropped without a report: the report callback's opaque may be gone by then. */
	ck_assert_int_eq(payq_delivery_destroy(d, 0), 1);
	ck_assert_int_eq(r.failed + r.persisted, 0);
	payq_config_destroy(&cfg);
}
END_TEST

static bool stop_now(void *opaque, int64_t *deadline_ms)
{
	(void)deadline_ms;
	(*(int *)opaque)++;
	return false;
}

START_TEST(test_keep_stops_the_wait)
{
	payq_config_t cfg;
	reports_t r = {0};
	payq_delivery_t *d = unreachable(&cfg, &r);
	int asked = 0;

	ck_assert_int_eq(produce(d), RD_KAFKA_RESP_ERR_NO_ERROR);
	ck_assert_int_eq(payq_delivery_wait(d, INT64_MAX, 50, stop_now, &asked),
			 PAYQ_DELIVERY_STOPPED);
	ck_assert_int_eq(asked, 1);
	payq_delivery_purge(d);
	ck_assert_int_eq(r.failed, 1);
	ck_assert_int_eq(payq_delivery_destroy(d, 0), 0);
	payq_config_destroy(&cfg);
}
END_TEST

START_TEST(test_signal_clears_the_flag)
{
	volatile sig_atomic_t run = 1;
	int sig = _i ? SIGINT : SIGTERM;

	payq_signals_install(&run);
	ck_assert(!payq_signals_stopped());
	ck_assert_int_eq(raise(sig), 0);
	ck_assert_int_eq(run, 0);
	ck_assert(payq_signals_stopped());
}
END_TEST

static Suite *delivery_suite(void)
{
	Suite *s = suite_create("delivery");
	TCase *tc = tcase_create("delivery");

	tcase_set_timeout(tc, 60);
	tcase_add_test(tc, test_undeliverable_is_not_persisted);
	tcase_add_test(tc, test_wait_keeps_to_its_bound);
	tcase_add_test(tc, test_keep_stops_the_wait);
	tcase_add_loop_test(tc, test_signal_clears_the_flag, 0, 2);
	suite_add_tcase(s, tc);
	return s;
}

PAYQ_TEST_SUITES(delivery_suite);
