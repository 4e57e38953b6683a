/* test_config.c - unit tests for the settings table: defaults, environment, flags, -X. */
#include <check.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "check_main.h"
#include "config.h"
#include "log.h"
#include "util.h"

#define W PAYQ_PROG_WORKER
#define P PAYQ_PROG_PRODUCER
#define R PAYQ_PROG_REPLAY
#define MAXARGS 12

static const char *const env_names[] = {
	"PAYQ_BROKERS",
	"PAYQ_TOPIC",
	"PAYQ_DLQ_TOPIC",
	"PAYQ_GROUP",
	"PAYQ_INSTANCE_ID",
	"PAYQ_BATCH_MAX",
	"PAYQ_BATCH_WAIT_MS",
	"PAYQ_COMMIT_MODE",
	"PAYQ_PAYMENT_MODE",
	"PAYQ_HTTP_ADDR",
	"PAYQ_LOG_LEVEL",
	"PAYQ_SHUTDOWN_TIMEOUT_MS",
	"PAYQ_RETRY_MAX_MS",
	"PAYQ_STATS_INTERVAL_MS",
	"PAYQ_DB",
	"PAYQ_GATEWAY_URL",
	"PAYQ_KAFKA_CONFIG_FILE",
	"PAYQ_DB_FILE",
	"PAYQ_GATEWAY_API_KEY",
	"PAYQ_GATEWAY_API_KEY_FILE",
	"PAYQ_GATEWAY_URL_FILE",
};

static int saved_log_level;

/* Tests share one process under CK_FORK=no: start each without PAYQ_* variables, and put
 * back the global log level that PAYQ_CF_LOGLEVEL settings change. */
static void setup(void)
{
	for (size_t i = 0; i < PAYQ_ARRAY_SIZE(env_names); i++)
		unsetenv(env_names[i]);
	saved_log_level = payq_log_level;
}

static void teardown(void)
{
	setup();
	payq_log_level = saved_log_level;
	payq_log_clear_secrets(); /* parse_args registers the secrets it sees */
}

static const char *str_at(const payq_config_t *cfg, size_t off)
{
	return *(char *const *)(const void *)((const char *)cfg + off);
}

static int64_t int_at(const payq_config_t *cfg, size_t off)
{
	return *(const int64_t *)(const void *)((const char *)cfg + off);
}

/* What librdkafka itself says about key=value, for comparing error texts. */
static void rdkafka_error(const char *kv, char *errstr, size_t errstr_size)
{
	rd_kafka_conf_t *conf = rd_kafka_conf_new();
	const char *eq = strchr(kv, '=');
	char key[256];

	ck_assert_ptr_nonnull(eq);
	snprintf(key, sizeof(key), "%.*s", (int)(eq - kv), kv);
	errstr[0] = '\0';
	ck_assert_int_ne(rd_kafka_conf_set(conf, key, eq + 1, errstr, errstr_size),
			 RD_KAFKA_CONF_OK);
	rd_kafka_conf_destroy(conf);
	ck_assert_str_ne(errstr, "");
}

/* Runs parse_args with stdout going to a temporary file, and returns what was printed
 * (malloc'd). */
static char *capture_parse(payq_config_t *cfg, unsigned prog, void (*usage)(FILE *fp), int *argc,
			   char **argv, payq_args_result_t *res, char *errstr, size_t errstr_size)
{
	FILE *tmp = tmpfile();
	int saved;
	long len;
	char *out;

	ck_assert_ptr_nonnull(tmp);
	fflush(stdout);
	saved = dup(STDOUT_FILENO);
	ck_assert_int_ge(saved, 0);
	ck_assert_int_eq(dup2(fileno(tmp), STDOUT_FILENO), STDOUT_FILENO);
	*res = payq_config_parse_args(cfg, prog, "payq-test", usage, argc, argv, errstr,
				      errstr_size);
	fflush(stdout);
	ck_assert_int_eq(dup2(saved, STDOUT_FILENO), STDOUT_FILENO);
	close(saved);

	len = ftell(tmp);
	ck_assert_int_ge(len, 0);
	out = malloc((size_t)len + 1);
	ck_assert_ptr_nonnull(out);
	rewind(tmp);
	ck_assert_uint_eq(fread(out, 1, (size_t)len, tmp), (size_t)len);
	out[len] = '\0';
	fclose(tmp);
	return out;
}

START_TEST(test_defaults)
{
	payq_config_t cfg;

	payq_config_init(&cfg);
	ck_assert_str_eq(cfg.brokers, "localhost:9092");
	ck_assert_str_eq(cfg.topic, "payq.commands");
	ck_assert_str_eq(cfg.dlq_topic, "payq.commands.dlq");
	ck_assert_str_eq(cfg.group, "payq-workers");
	ck_assert_ptr_null(cfg.instance_id);
	ck_assert_str_eq(cfg.http_addr, "0.0.0.0:9400");
	ck_assert_ptr_null(cfg.db);
	ck_assert_str_eq(cfg.commit_mode, "async");
	ck_assert_str_eq(cfg.payment_mode, "ledger");
	ck_assert_int_eq(cfg.batch_max, 500);
	ck_assert_int_eq(cfg.batch_wait_ms, 20);
	ck_assert_int_eq(cfg.shutdown_timeout_ms, 25000);
	ck_assert_int_eq(cfg.retry_max_ms, 5000);
	ck_assert_int_eq(cfg.stats_interval_ms, 5000);
	ck_assert_int_eq(cfg.log_level, PAYQ_LOG_INFO);
	ck_assert_ptr_null(cfg.xprops);
	ck_assert_uint_eq(cfg.xprops_cnt, 0);
	payq_config_destroy(&cfg);
	ck_assert_ptr_null(cfg.brokers);

	/* No variables set: loading the environment changes nothing. */
	payq_config_init(&cfg);
	ck_assert_int_eq(payq_config_load_env(&cfg, PAYQ_PROG_ALL, NULL, 0), 0);
	ck_assert_str_eq(cfg.brokers, "localhost:9092");
	ck_assert_int_eq(cfg.batch_max, 500);
	payq_config_destroy(&cfg);
}
END_TEST

enum kind { STR, INT };

struct env_case {
	unsigned prog;
	const char *env, *value;
	int rc;
	enum kind kind;
	size_t off;
	const char *want_str; /* STR; NULL: unset */
	int64_t want_int;     /* INT */
};

#define S(f) STR, offsetof(payq_config_t, f)
#define I(f) INT, offsetof(payq_config_t, f)

static const struct env_case env_cases[] = {
	/* strings */
	{W, "PAYQ_BROKERS", "k1:9092,k2:9092", 0, S(brokers), "k1:9092,k2:9092", 0},
	{P, "PAYQ_BROKERS", "k1:9092", 0, S(brokers), "k1:9092", 0},
	{R, "PAYQ_BROKERS", "k1:9092", 0, S(brokers), "k1:9092", 0},
	{W, "PAYQ_TOPIC", "t", 0, S(topic), "t", 0},
	{W, "PAYQ_DLQ_TOPIC", "t.dlq", 0, S(dlq_topic), "t.dlq", 0},
	{W, "PAYQ_GROUP", "g", 0, S(group), "g", 0},
	{W, "PAYQ_INSTANCE_ID", "payq-worker-0", 0, S(instance_id), "payq-worker-0", 0},
	{W, "PAYQ_HTTP_ADDR", "", 0, S(http_addr), "", 0},
	{W, "PAYQ_DB", "postgres://u:p@h/db", 0, S(db), "postgres://u:p@h/db", 0},
	{R, "PAYQ_DB", "dbname=payq", 0, S(db), "dbname=payq", 0},
	/* integers, with their bounds inclusive */
	{W, "PAYQ_BATCH_MAX", "100", 0, I(batch_max), NULL, 100},
	{W, "PAYQ_BATCH_MAX", "1", 0, I(batch_max), NULL, 1},
	{W, "PAYQ_BATCH_MAX", "100000", 0, I(batch_max), NULL, 100000},
	{W, "PAYQ_BATCH_MAX", "0", -1, I(batch_max), NULL, 500},
	{W, "PAYQ_BATCH_MAX", "100001", -1, I(batch_max), NULL, 500},
	{W, "PAYQ_BATCH_MAX", "-1", -1, I(batch_max), NULL, 500},
	{W, "PAYQ_BATCH_MAX", "abc", -1, I(batch_max), NULL, 500},
	{W, "PAYQ_BATCH_MAX", "", -1, I(batch_max), NULL, 500},
	{W, "PAYQ_BATCH_MAX", "10x", -1, I(batch_max), NULL, 500},
	{W, "PAYQ_BATCH_MAX", "1e3", -1, I(batch_max), NULL, 500},
	{W, "PAYQ_BATCH_MAX", "99999999999999999999", -1, I(batch_max), NULL, 500},
	{W, "PAYQ_BATCH_WAIT_MS", "0", 0, I(batch_wait_ms), NULL, 0},
	{W, "PAYQ_BATCH_WAIT_MS", "60000", 0, I(batch_wait_ms), NULL, 60000},
	{W, "PAYQ_BATCH_WAIT_MS", "60001", -1, I(batch_wait_ms), NULL, 20},
	{W, "PAYQ_SHUTDOWN_TIMEOUT_MS", "100", 0, I(shutdown_timeout_ms), NULL, 100},
	{P, "PAYQ_SHUTDOWN_TIMEOUT_MS", "3600000", 0, I(shutdown_timeout_ms), NULL, 3600000},
	{R, "PAYQ_SHUTDOWN_TIMEOUT_MS", "99", -1, I(shutdown_timeout_ms), NULL, 25000},
	{W, "PAYQ_SHUTDOWN_TIMEOUT_MS", "3600001", -1, I(shutdown_timeout_ms), NULL, 25000},
	{W, "PAYQ_RETRY_MAX_MS", "10", 0, I(retry_max_ms), NULL, 10},
	{W, "PAYQ_RETRY_MAX_MS", "9", -1, I(retry_max_ms), NULL, 5000},
	{W, "PAYQ_RETRY_MAX_MS", "600001", -1, I(retry_max_ms), NULL, 5000},
	{W, "PAYQ_STATS_INTERVAL_MS", "0", 0, I(stats_interval_ms), NULL, 0},
	{W, "PAYQ_STATS_INTERVAL_MS", "-5", -1, I(stats_interval_ms), NULL, 5000},
	/* log level */
	{W, "PAYQ_LOG_LEVEL", "debug", 0, I(log_level), NULL, PAYQ_LOG_DEBUG},
	{P, "PAYQ_LOG_LEVEL", "error", 0, I(log_level), NULL, PAYQ_LOG_ERROR},
	{R, "PAYQ_LOG_LEVEL", "warn", 0, I(log_level), NULL, PAYQ_LOG_WARN},
	{W, "PAYQ_LOG_LEVEL", "warning", 0, I(log_level), NULL, PAYQ_LOG_WARN},
	{W, "PAYQ_LOG_LEVEL", "info", 0, I(log_level), NULL, PAYQ_LOG_INFO},
	{W, "PAYQ_LOG_LEVEL", "DEBUG", -1, I(log_level), NULL, PAYQ_LOG_INFO},
	{W, "PAYQ_LOG_LEVEL", "trace", -1, I(log_level), NULL, PAYQ_LOG_INFO},
	{W, "PAYQ_LOG_LEVEL", "", -1, I(log_level), NULL, PAYQ_LOG_INFO},
	{W, "PAYQ_LOG_LEVEL", "3", -1, I(log_level), NULL, PAYQ_LOG_INFO},
	/* enums */
	{W, "PAYQ_COMMIT_MODE", "sync", 0, S(commit_mode), "sync", 0},
	{W, "PAYQ_COMMIT_MODE", "async", 0, S(commit_mode), "async", 0},
	{W, "PAYQ_COMMIT_MODE", "SYNC", -1, S(commit_mode), "async", 0},
	{W, "PAYQ_COMMIT_MODE", "syn", -1, S(commit_mode), "async", 0},
	{W, "PAYQ_COMMIT_MODE", "syncx", -1, S(commit_mode), "async", 0},
	{W, "PAYQ_COMMIT_MODE", "async|sync", -1, S(commit_mode), "async", 0},
	{W, "PAYQ_COMMIT_MODE", "", -1, S(commit_mode), "async", 0},
	{W, "PAYQ_PAYMENT_MODE", "ledger", 0, S(payment_mode), "ledger", 0},
	{W, "PAYQ_PAYMENT_MODE", "direct", -1, S(payment_mode), "ledger", 0},
	/* another program's variables are ignored, even with values that would be bad */
	{P, "PAYQ_BATCH_MAX", "abc", 0, I(batch_max), NULL, 500},
	{R, "PAYQ_BATCH_MAX", "7", 0, I(batch_max), NULL, 500},
	{P, "PAYQ_COMMIT_MODE", "banana", 0, S(commit_mode), "async", 0},
	{P, "PAYQ_DB", "dbname=payq", 0, S(db), NULL, 0},
	{P, "PAYQ_GROUP", "g", 0, S(group), "payq-workers", 0},
	{R, "PAYQ_INSTANCE_ID", "i", 0, S(instance_id), NULL, 0},
};

START_TEST(test_env)
{
	for (size_t i = 0; i < PAYQ_ARRAY_SIZE(env_cases); i++) {
		const struct env_case *c = &env_cases[i];
		payq_config_t cfg;
		char errstr[256] = "";
		int rc;

		setup();
		ck_assert_int_eq(setenv(c->env, c->value, 1), 0);
		payq_config_init(&cfg);
		rc = payq_config_load_env(&cfg, c->prog, errstr, sizeof(errstr));
		ck_assert_msg(rc == c->rc, "%s=\"%s\" prog %u: rc %d, want %d (%s)", c->env,
			      c->value, c->prog, rc, c->rc, errstr);
		if (c->kind == INT) {
			ck_assert_msg(int_at(&cfg, c->off) == c->want_int,
				      "%s=\"%s\": %lld, want %lld", c->env, c->value,
				      (long long)int_at(&cfg, c->off), (long long)c->want_int);
		} else if (c->want_str) {
			ck_assert_ptr_nonnull(str_at(&cfg, c->off));
			ck_assert_msg(!strcmp(str_at(&cfg, c->off), c->want_str),
				      "%s=\"%s\": \"%s\", want \"%s\"", c->env, c->value,
				      str_at(&cfg, c->off), c->want_str);
		} else {
			ck_assert_msg(str_at(&cfg, c->off) == NULL, "%s=\"%s\": set", c->env,
				      c->value);
		}
		if (c->rc) {
			/* names the setting, its variable and the bad value */
			const payq_setting_t *s = payq_config_find(c->env, c->prog);
			char quoted[64];

			ck_assert_ptr_nonnull(s);
			snprintf(quoted, sizeof(quoted), "\"%s\"", c->value);
			ck_assert_msg(strstr(errstr, s->name) && strstr(errstr, c->env) &&
					      strstr(errstr, quoted),
				      "%s=\"%s\": errstr \"%s\"", c->env, c->value, errstr);
		}
		payq_config_destroy(&cfg);
	}
}
END_TEST

/* The log level setting also sets the level the logger filters by. */
START_TEST(test_env_sets_log_level)
{
	payq_config_t cfg;

	payq_config_init(&cfg);
	ck_assert_int_eq(payq_log_level, PAYQ_LOG_INFO);
	setenv("PAYQ_LOG_LEVEL", "debug", 1);
	ck_assert_int_eq(payq_config_load_env(&cfg, W, NULL, 0), 0);
	ck_assert_int_eq(payq_log_level, PAYQ_LOG_DEBUG);
	payq_config_destroy(&cfg);
}
END_TEST

/* Several variables at once; the first bad one fails the load with its own name. */
START_TEST(test_env_several)
{
	payq_config_t cfg;
	char errstr[256] = "";

	setenv("PAYQ_BATCH_MAX", "100", 1);
	setenv("PAYQ_TOPIC", "orders", 1);
	setenv("PAYQ_COMMIT_MODE", "sync", 1);
	payq_config_init(&cfg);
	ck_assert_int_eq(payq_config_load_env(&cfg, W, errstr, sizeof(errstr)), 0);
	ck_assert_int_eq(cfg.batch_max, 100);
	ck_assert_str_eq(cfg.topic, "orders");
	ck_assert_str_eq(cfg.commit_mode, "sync");
	payq_config_destroy(&cfg);

	setenv("PAYQ_RETRY_MAX_MS", "1", 1);
	payq_config_init(&cfg);
	ck_assert_int_eq(payq_config_load_env(&cfg, W, errstr, sizeof(errstr)), -1);
	ck_assert_ptr_nonnull(strstr(errstr, "PAYQ_RETRY_MAX_MS"));
	ck_assert_ptr_null(strstr(errstr, "PAYQ_BATCH_MAX"));
	payq_config_destroy(&cfg);

	/* errstr may be NULL */
	payq_config_init(&cfg);
	ck_assert_int_eq(payq_config_load_env(&cfg, W, NULL, 0), -1);
	payq_config_destroy(&cfg);
}
END_TEST

/* Argument lists are written as one string and split at each space ("" is none). */
struct args_case {
	const char *name;
	unsigned prog;
	const char *args; /* after argv[0] */
	payq_args_result_t res;
	const char *rest; /* what stays after argv[0] */
	enum kind kind;
	size_t off;
	const char *want_str;
	int64_t want_int;
	const char *err;      /* substring of errstr */
	const char *x_err_kv; /* errstr must equal librdkafka's for this key=value */
};

#define OK PAYQ_ARGS_OK
#define ERR PAYQ_ARGS_ERROR

static const struct args_case args_cases[] = {
	{"separate value", W, "--batch-max 7", OK, "", I(batch_max), NULL, 7, NULL, NULL},
	{"joined value", W, "--batch-max=7", OK, "", I(batch_max), NULL, 7, NULL, NULL},
	{"last one wins", W, "--batch-max 7 --batch-max=8", OK, "", I(batch_max), NULL, 8, NULL,
	 NULL},
	{"string", P, "--brokers k:1", OK, "", S(brokers), "k:1", 0, NULL, NULL},
	{"value with =", R, "--db=host=h", OK, "", S(db), "host=h", 0, NULL, NULL},
	{"empty string", W, "--http-addr=", OK, "", S(http_addr), "", 0, NULL, NULL},
	{"value starting with dashes", W, "--topic --x", OK, "", S(topic), "--x", 0, NULL, NULL},
	{"enum", W, "--commit-mode sync", OK, "", S(commit_mode), "sync", 0, NULL, NULL},
	{"log level", P, "--log-level=debug", OK, "", I(log_level), NULL, PAYQ_LOG_DEBUG, NULL,
	 NULL},
	{"unknown kept in order", W, "a --batch-max 7 -v --unknown b --x=1", OK,
	 "a -v --unknown b --x=1", I(batch_max), NULL, 7, NULL, NULL},
	{"near miss is unknown", W, "--batch-maxx 7 -batch-max 8 batch-max", OK,
	 "--batch-maxx 7 -batch-max 8 batch-max", I(batch_max), NULL, 500, NULL, NULL},
	{"-- ends parsing", W, "--batch-max 7 -- --batch-max 9 -X a", OK, "-- --batch-max 9 -X a",
	 I(batch_max), NULL, 7, NULL, NULL},
	{"nothing", W, "", OK, "", I(batch_max), NULL, 500, NULL, NULL},
	/* another program's settings are not taken, and stay for its own parser to refuse */
	{"producer has no --batch-max", P, "--batch-max 7", OK, "--batch-max 7", I(batch_max), NULL,
	 500, NULL, NULL},
	{"producer has no --db", P, "--db=x", OK, "--db=x", S(db), NULL, 0, NULL, NULL},
	{"replay has no --instance-id", R, "--instance-id i", OK, "--instance-id i", S(instance_id),
	 NULL, 0, NULL, NULL},
	/* errors */
	{"missing value", W, "--batch-max", ERR, "", I(batch_max), NULL, 500,
	 "--batch-max needs a value", NULL},
	{"empty int", W, "--batch-max=", ERR, "", I(batch_max), NULL, 500,
	 "batch-max (PAYQ_BATCH_MAX)", NULL},
	{"int out of range", W, "--batch-max 0", ERR, "", I(batch_max), NULL, 500,
	 "\"0\" is not an integer from 1 to 100000", NULL},
	{"int junk", W, "--batch-max=seven", ERR, "", I(batch_max), NULL, 500, "\"seven\"", NULL},
	{"bad enum", W, "--commit-mode later", ERR, "", S(commit_mode), "async", 0,
	 "commit-mode (PAYQ_COMMIT_MODE): \"later\" is not one of async|sync", NULL},
	{"bad log level", W, "--log-level loud", ERR, "", I(log_level), NULL, PAYQ_LOG_INFO,
	 "log-level (PAYQ_LOG_LEVEL): \"loud\"", NULL},
	/* -X */
	{"-X alone", W, "-X", ERR, "", I(batch_max), NULL, 500, "-X needs key=value, list or dump",
	 NULL},
	{"-X without =", W, "-X client.id", ERR, "", I(batch_max), NULL, 500,
	 "-X client.id: expected key=value", NULL},
	{"-X empty key", W, "-X =1", ERR, "", I(batch_max), NULL, 500, "expected key=value", NULL},
	{"-X joined without =", W, "-Xclient.id", ERR, "", I(batch_max), NULL, 500,
	 "expected key=value", NULL},
	{"-X no such property", W, "-X no.such.property=1", ERR, "", I(batch_max), NULL, 500,
	 "no.such.property", "no.such.property=1"},
	{"-X bad value", W, "-X acks=banana", ERR, "", I(batch_max), NULL, 500, NULL,
	 "acks=banana"},
	{"-X joined bad value", P, "-Xlinger.ms=soon", ERR, "", I(batch_max), NULL, 500, NULL,
	 "linger.ms=soon"},
};

/* Splits a copy of s at each sep into v (at most max tokens, NULL-terminated) and returns
 * the count; free *copy afterwards. */
static int split(const char *s, char sep, char **v, int max, char **copy)
{
	int n = 0;
	char *p;

	*copy = strdup(s);
	ck_assert_ptr_nonnull(*copy);
	for (p = *copy; *p && n < max;) {
		char *end = strchr(p, sep);

		v[n++] = p;
		if (!end)
			break;
		*end = '\0';
		p = end + 1;
	}
	v[n] = NULL;
	return n;
}

START_TEST(test_args)
{
	for (size_t i = 0; i < PAYQ_ARRAY_SIZE(args_cases); i++) {
		const struct args_case *c = &args_cases[i];
		char *argv[MAXARGS + 2], *rest[MAXARGS + 1], *argv_copy, *rest_copy;
		int argc, nrest;
		char errstr[512] = "";
		payq_config_t cfg;
		payq_args_result_t res;

		argv[0] = "payq-test";
		argc = 1 + split(c->args, ' ', argv + 1, MAXARGS, &argv_copy);
		nrest = split(c->rest, ' ', rest, MAXARGS, &rest_copy);

		setup();
		payq_config_init(&cfg);
		res = payq_config_parse_args(&cfg, c->prog, "payq-test", NULL, &argc, argv, errstr,
					     sizeof(errstr));
		ck_assert_msg(res == c->res, "%s: result %d, want %d (%s)", c->name, res, c->res,
			      errstr);
		if (c->res == PAYQ_ARGS_OK) {
			ck_assert_msg(argc == 1 + nrest, "%s: argc %d, want %d", c->name, argc,
				      1 + nrest);
			ck_assert_str_eq(argv[0], "payq-test");
			for (int k = 0; k < nrest; k++)
				ck_assert_msg(!strcmp(argv[1 + k], rest[k]),
					      "%s: argv[%d] \"%s\", want \"%s\"", c->name, 1 + k,
					      argv[1 + k], rest[k]);
			ck_assert_ptr_null(argv[argc]);
		}
		if (c->kind == INT)
			ck_assert_msg(int_at(&cfg, c->off) == c->want_int, "%s: %lld, want %lld",
				      c->name, (long long)int_at(&cfg, c->off),
				      (long long)c->want_int);
		else if (c->want_str)
			ck_assert_msg(str_at(&cfg, c->off) &&
					      !strcmp(str_at(&cfg, c->off), c->want_str),
				      "%s: \"%s\", want \"%s\"", c->name,
				      str_at(&cfg, c->off) ? str_at(&cfg, c->off) : "(null)",
				      c->want_str);
		else
			ck_assert_msg(str_at(&cfg, c->off) == NULL, "%s: set", c->name);
		if (c->err)
			ck_assert_msg(strstr(errstr, c->err), "%s: errstr \"%s\" lacks \"%s\"",
				      c->name, errstr, c->err);
		if (c->x_err_kv) {
			char want[512];

			rdkafka_error(c->x_err_kv, want, sizeof(want));
			ck_assert_msg(!strcmp(errstr, want),
				      "%s: errstr \"%s\", librdkafka says \"%s\"", c->name, errstr,
				      want);
		}
		if (c->res != PAYQ_ARGS_OK)
			ck_assert_uint_eq(cfg.xprops_cnt, 0);
		payq_config_destroy(&cfg);
		free(argv_copy);
		free(rest_copy);
	}
}
END_TEST

/* The programs load the environment first, then parse flags: the flag wins, and settings
 * not given as flags keep their environment values. */
START_TEST(test_flags_override_env)
{
	char *argv[] = {"payq-test", "--batch-max", "7", "--topic=flag-topic", NULL};
	int argc = 4;
	payq_config_t cfg;
	char errstr[256] = "";

	setenv("PAYQ_BATCH_MAX", "100", 1);
	setenv("PAYQ_TOPIC", "env-topic", 1);
	setenv("PAYQ_GROUP", "env-group", 1);
	payq_config_init(&cfg);
	ck_assert_int_eq(payq_config_load_env(&cfg, W, errstr, sizeof(errstr)), 0);
	ck_assert_int_eq(cfg.batch_max, 100);
	ck_assert_int_eq(payq_config_parse_args(&cfg, W, "payq-test", NULL, &argc, argv, errstr,
						sizeof(errstr)),
			 PAYQ_ARGS_OK);
	ck_assert_int_eq(argc, 1);
	ck_assert_int_eq(cfg.batch_max, 7);
	ck_assert_str_eq(cfg.topic, "flag-topic");
	ck_assert_str_eq(cfg.group, "env-group");
	payq_config_destroy(&cfg);
}
END_TEST

/* -X pairs are kept in order, in both the separate and the joined form, and applied to a
 * librdkafka conf; a later pair for the same key wins. */
START_TEST(test_x_apply)
{
	char *argv[] = {
		"payq-test", "-X", "client.id=first",	  "--batch-max", "9", "-Xlinger.ms=7",
		"keep",	     "-X", "client.id=payq-test", "-Xacks=all",	 NULL};
	int argc = 10;
	payq_config_t cfg;
	char errstr[512] = "", val[256];
	size_t val_size;
	rd_kafka_conf_t *conf;

	payq_config_init(&cfg);
	ck_assert_int_eq(payq_config_parse_args(&cfg, W, "payq-test", NULL, &argc, argv, errstr,
						sizeof(errstr)),
			 PAYQ_ARGS_OK);
	ck_assert_int_eq(argc, 2);
	ck_assert_str_eq(argv[1], "keep");
	ck_assert_int_eq(cfg.batch_max, 9);
	ck_assert_uint_eq(cfg.xprops_cnt, 4);
	ck_assert_str_eq(cfg.xprops[0], "client.id=first");
	ck_assert_str_eq(cfg.xprops[1], "linger.ms=7");
	ck_assert_str_eq(cfg.xprops[2], "client.id=payq-test");
	ck_assert_str_eq(cfg.xprops[3], "acks=all");

	conf = rd_kafka_conf_new();
	ck_assert_int_eq(payq_config_apply_x(&cfg, conf, errstr, sizeof(errstr)), 0);
	val_size = sizeof(val);
	ck_assert_int_eq(rd_kafka_conf_get(conf, "client.id", val, &val_size), RD_KAFKA_CONF_OK);
	ck_assert_str_eq(val, "payq-test");
	val_size = sizeof(val);
	ck_assert_int_eq(rd_kafka_conf_get(conf, "linger.ms", val, &val_size), RD_KAFKA_CONF_OK);
	ck_assert_str_eq(val, "7");
	val_size = sizeof(val);
	ck_assert_int_eq(rd_kafka_conf_get(conf, "acks", val, &val_size), RD_KAFKA_CONF_OK);
	ck_assert_str_eq(val, "-1");
	rd_kafka_conf_destroy(conf);
	payq_config_destroy(&cfg);

	/* No pairs: nothing to do. */
	payq_config_init(&cfg);
	conf = rd_kafka_conf_new();
	ck_assert_int_eq(payq_config_apply_x(&cfg, conf, errstr, sizeof(errstr)), 0);
	val_size = sizeof(val);
	ck_assert_int_eq(rd_kafka_conf_get(conf, "client.id", val, &val_size), RD_KAFKA_CONF_OK);
	ck_assert_str_eq(val, "rdkafka");
	rd_kafka_conf_destroy(conf);
	payq_config_destroy(&cfg);
}
END_TEST

/* add_x checks with librdkafka and passes its text on unchanged; apply_x does the same for a
 * pair that only fails on the real conf. */
START_TEST(test_x_errors)
{
	static const char *const bad[] = {
		"no.such.property=1",
		"acks=banana",
		"linger.ms=-5",
		"compression.type=zip",
		"enable.idempotence=maybe",
		"socket.timeout.ms=",
	};
	payq_config_t cfg;
	char errstr[512], want[512];
	rd_kafka_conf_t *conf;

	for (size_t i = 0; i < PAYQ_ARRAY_SIZE(bad); i++) {
		payq_config_init(&cfg);
		errstr[0] = '\0';
		ck_assert_int_eq(payq_config_add_x(&cfg, bad[i], errstr, sizeof(errstr)), -1);
		rdkafka_error(bad[i], want, sizeof(want));
		ck_assert_msg(!strcmp(errstr, want), "%s: \"%s\", librdkafka says \"%s\"", bad[i],
			      errstr, want);
		ck_assert_uint_eq(cfg.xprops_cnt, 0);
		payq_config_destroy(&cfg);
	}

	payq_config_init(&cfg);
	ck_assert_int_eq(payq_config_add_x(&cfg, "client.id=ok", errstr, sizeof(errstr)), 0);
	ck_assert_uint_eq(cfg.xprops_cnt, 1);
	/* A pair that got in some other way is still checked when applied. */
	cfg.xprops = realloc(cfg.xprops, 2 * sizeof(*cfg.xprops));
	ck_assert_ptr_nonnull(cfg.xprops);
	cfg.xprops[1] = strdup("acks=banana");
	cfg.xprops_cnt = 2;
	conf = rd_kafka_conf_new();
	errstr[0] = '\0';
	ck_assert_int_eq(payq_config_apply_x(&cfg, conf, errstr, sizeof(errstr)), -1);
	rdkafka_error("acks=banana", want, sizeof(want));
	ck_assert_str_eq(errstr, want);
	rd_kafka_conf_destroy(conf);
	payq_config_destroy(&cfg);
}
END_TEST

static void usage_marker(FILE *fp)
{
	fprintf(fp, "usage: payq-test [options] USAGE-MARKER\n");
}

/* has and lacks list substrings of stdout, separated by '|'. */
struct exit_case {
	const char *name;
	unsigned prog;
	const char *args;
	const char *has, *lacks;
};

static const struct exit_case exit_cases[] = {
	{"--help worker", W, "--help", "USAGE-MARKER|--batch-max|PAYQ_BATCH_MAX|(default: 500)",
	 ""},
	{"-h producer", P, "-h", "USAGE-MARKER|--brokers|-X dump", "--batch-max|PAYQ_DB"},
	{"--help stops before bad args", W, "--help --batch-max 0", "--commit-mode", ""},
	{"--help after unknown", R, "x --help", "--dlq-topic", "--instance-id"},
	{"--version", W, "--version", "payq-test " PAYQ_VERSION " (librdkafka ", "--batch-max"},
	{"-V", P, "-V", "payq-test " PAYQ_VERSION, ""},
	{"-X list", W, "-X list", "bootstrap.servers|client.id", ""},
	{"-Xlist", W, "-Xlist", "bootstrap.servers", ""},
	{"-X dump defaults", W, "-X dump",
	 "PAYQ_BATCH_MAX = 500\n|PAYQ_DB = (unset)\n|metadata.broker.list = localhost:9092\n"
	 "|PAYQ_LOG_LEVEL = info\n",
	 ""},
	{"-X dump after the rest", W, "-X dump --batch-max 7 -X client.id=dumped --brokers=b:1",
	 "PAYQ_BATCH_MAX = 7\n|client.id = dumped\n|metadata.broker.list = b:1\n", ""},
	{"-Xdump hides the db password", R, "-Xdump --db postgres://u:hunter2@h/db",
	 "PAYQ_DB = user=u password=*** dbname=db host=h\n", "hunter2|PAYQ_BATCH_MAX"},
};

START_TEST(test_exit)
{
	for (size_t i = 0; i < PAYQ_ARRAY_SIZE(exit_cases); i++) {
		const struct exit_case *c = &exit_cases[i];
		char *argv[MAXARGS + 2], *has[MAXARGS + 1], *lacks[MAXARGS + 1];
		char *argv_copy, *has_copy, *lacks_copy;
		int argc, nhas, nlacks;
		char errstr[512] = "";
		payq_config_t cfg;
		payq_args_result_t res;
		char *out;

		argv[0] = "payq-test";
		argc = 1 + split(c->args, ' ', argv + 1, MAXARGS, &argv_copy);
		nhas = split(c->has, '|', has, MAXARGS, &has_copy);
		nlacks = split(c->lacks, '|', lacks, MAXARGS, &lacks_copy);

		payq_config_init(&cfg);
		out = capture_parse(&cfg, c->prog, usage_marker, &argc, argv, &res, errstr,
				    sizeof(errstr));
		ck_assert_msg(res == PAYQ_ARGS_EXIT, "%s: result %d (%s)", c->name, res, errstr);
		for (int k = 0; k < nhas; k++)
			ck_assert_msg(strstr(out, has[k]), "%s: output lacks \"%s\"", c->name,
				      has[k]);
		for (int k = 0; k < nlacks; k++)
			ck_assert_msg(!strstr(out, lacks[k]), "%s: output has \"%s\"", c->name,
				      lacks[k]);
		free(out);
		free(argv_copy);
		free(has_copy);
		free(lacks_copy);
		payq_config_destroy(&cfg);
	}
}
END_TEST

/* Without a usage callback --help still prints the table. */
START_TEST(test_help_without_usage)
{
	char *argv[] = {"payq-test", "--help", NULL};
	int argc = 2;
	payq_config_t cfg;
	payq_args_result_t res;
	char *out;

	payq_config_init(&cfg);
	out = capture_parse(&cfg, P, NULL, &argc, argv, &res, NULL, 0);
	ck_assert_int_eq(res, PAYQ_ARGS_EXIT);
	ck_assert_ptr_nonnull(strstr(out, "Settings ("));
	ck_assert_ptr_null(strstr(out, "USAGE-MARKER"));
	free(out);
	payq_config_destroy(&cfg);
}
END_TEST

/* -X dump once printed librdkafka's secrets (sasl.password, ...) in clear; kept as a
 * regression test (test_secrets_masked covers the rest). */
START_TEST(test_known_bugs)
{
	char *argv[] = {"payq-test", "-X", "sasl.password=hunter2", "-X", "dump", NULL};
	int argc = 5;
	payq_config_t cfg;
	payq_args_result_t res;
	char errstr[512] = "";
	char *out;

	payq_config_init(&cfg);
	out = capture_parse(&cfg, W, NULL, &argc, argv, &res, errstr, sizeof(errstr));
	ck_assert_int_eq(res, PAYQ_ARGS_EXIT);
	ck_assert_msg(!strstr(out, "hunter2"), "-X dump prints sasl.password");
	free(out);
	payq_config_destroy(&cfg);
}
END_TEST

/* -X pairs that would break the offset rule, the group, or the producers' guarantees are
 * refused after every argument is read, with the key named; harmless ones pass. Aliases
 * (request.required.acks, topic.acks) and librdkafka's synonyms (smallest, -1) are judged
 * by the property they set and the value they mean. */
struct refuse_case {
	unsigned prog;
	const char *args;
	const char *err; /* substrings of errstr separated by '|'; NULL: accepted */
};

static const struct refuse_case refuse_cases[] = {
	/* the offset rule and the group (worker consumer) */
	{W, "-X enable.auto.commit=true", "-X enable.auto.commit=true|refused|offset rule"},
	{W, "-X auto.commit.enable=true", "-X auto.commit.enable=true|offset rule"},
	{W, "-X enable.auto.offset.store=true", "enable.auto.offset.store|offset rule"},
	{W, "-X group.id=other", "-X group.id=other|PAYQ_GROUP"},
	{W, "--group g1 -X group.id=g2", "group.id|PAYQ_GROUP"},
	{W, "-X group.instance.id=pod-0", "group.instance.id|PAYQ_INSTANCE_ID"},
	{W, "-X isolation.level=read_uncommitted", "isolation.level|read_committed"},
	{W, "-X enable.partition.eof=true", "enable.partition.eof"},
	{W, "-X auto.offset.reset=latest", "auto.offset.reset|earliest"},
	{W, "-X offset.store.method=file", "offset.store.method|broker"},
	/* the worker's DLQ producer */
	{W, "-X enable.idempotence=false", "enable.idempotence"},
	{W, "-X acks=1", "-X acks=1|acks"},
	{W, "-X transactional.id=t", "transactional.id"},
	/* payq-producer */
	{P, "-X enable.idempotence=false", "enable.idempotence"},
	{P, "-X acks=1", "acks"},
	{P, "-X request.required.acks=0", "request.required.acks"},
	{P, "-X topic.acks=1", "topic.acks"},
	{P, "-X partitioner=consistent_random", "partitioner|murmur2_random"},
	{P, "-X transactional.id=t", "transactional.id"},
	/* payq-replay: its range reader and its idempotent sink */
	{R, "-X group.id=payq-workers", "group.id"},
	{R, "-X enable.auto.commit=true", "enable.auto.commit"},
	{R, "-X enable.partition.eof=false", "enable.partition.eof"},
	{R, "-X isolation.level=read_uncommitted", "isolation.level"},
	{R, "-X auto.offset.reset=earliest", "auto.offset.reset"},
	{R, "-X partitioner=random", "partitioner"},
	{R, "-X acks=1", "acks"},
	/* accepted: the value payq needs anyway, a synonym of it, or a harmless key */
	{W, "-X enable.auto.commit=false", NULL},
	{W, "-X auto.offset.reset=smallest", NULL},
	{W, "-X isolation.level=read_committed", NULL},
	{W, "--group g1 -X group.id=g1", NULL},
	{W, "-X acks=all -X enable.idempotence=true", NULL},
	{W, "-X partitioner=random", NULL}, /* the DLQ producer is not partitioned by key */
	{W, "-X session.timeout.ms=6000 -X heartbeat.interval.ms=500", NULL},
	{P, "-X acks=-1 -X partitioner=murmur2_random", NULL},
	{P, "-X group.id=x -X enable.auto.commit=true", NULL}, /* no consumer in the producer */
	{P, "-X message.timeout.ms=3000 -X linger.ms=50", NULL},
	{R, "-X enable.partition.eof=true -X auto.offset.reset=error", NULL},
};

START_TEST(test_x_refused)
{
	for (size_t i = 0; i < PAYQ_ARRAY_SIZE(refuse_cases); i++) {
		const struct refuse_case *c = &refuse_cases[i];
		char *argv[MAXARGS + 2], *want[MAXARGS + 1], *argv_copy, *want_copy;
		char errstr[512] = "";
		int argc, nwant;
		payq_config_t cfg;
		payq_args_result_t res;

		argv[0] = "payq-test";
		argc = 1 + split(c->args, ' ', argv + 1, MAXARGS, &argv_copy);
		nwant = split(c->err ? c->err : "", '|', want, MAXARGS, &want_copy);
		payq_config_init(&cfg);
		res = payq_config_parse_args(&cfg, c->prog, "payq-test", NULL, &argc, argv, errstr,
					     sizeof(errstr));
		if (!c->err) {
			ck_assert_msg(res == PAYQ_ARGS_OK, "prog %u \"%s\": refused: %s", c->prog,
				      c->args, errstr);
		} else {
			ck_assert_msg(res == PAYQ_ARGS_ERROR, "prog %u \"%s\": accepted", c->prog,
				      c->args);
			for (int k = 0; k < nwant; k++)
				ck_assert_msg(strstr(errstr, want[k]),
					      "prog %u \"%s\": errstr \"%s\" lacks \"%s\"", c->prog,
					      c->args, errstr, want[k]);
		}
		payq_config_destroy(&cfg);
		free(argv_copy);
		free(want_copy);
	}

	/* A group name far longer than any buffer still compares exactly. */
	{
		char group[5001], errstr[512] = "";
		char *argv[] = {"payq-test", "--group", group, "-X", "linger.ms=5", NULL};
		int argc = 5;
		payq_config_t cfg;

		memset(group, 'g', sizeof(group) - 1);
		group[sizeof(group) - 1] = '\0';
		payq_config_init(&cfg);
		ck_assert_msg(payq_config_parse_args(&cfg, W, "payq-test", NULL, &argc, argv,
						     errstr, sizeof(errstr)) == PAYQ_ARGS_OK,
			      "a 5000-byte group: %s", errstr);
		payq_config_destroy(&cfg);
	}
}
END_TEST

/* -X dump shows each Kafka client as it really runs: payq's own defaults, then the -X
 * overrides, then what librdkafka resolved. */
START_TEST(test_dump_clients)
{
	static const struct exit_case cases[] = {
		{"worker", W, "-X dump -X linger.ms=7 --group g9",
		 "Kafka consumer of payq-worker|enable.auto.commit = false\n|enable.auto.offset.store = false\n"
		 "|group.id = g9\n|isolation.level = read_committed\n|Kafka producer (DLQ) of payq-worker"
		 "|enable.idempotence = true\n|linger.ms = 7\n",
		 ""},
		{"producer", P, "-X dump",
		 "enable.idempotence = true\n|partitioner = murmur2_random\n"
		 "|request.required.acks = -1\n",
		 "enable.idempotence = false\n|partitioner = consistent_random\n"},
		{"replay", R, "-X dump",
		 "group.id = payq-replay-reader\n|enable.partition.eof = true\n"
		 "|auto.offset.reset = error\n|partitioner = murmur2_random\n",
		 ""},
	};

	for (size_t i = 0; i < PAYQ_ARRAY_SIZE(cases); i++) {
		const struct exit_case *c = &cases[i];
		char *argv[MAXARGS + 2], *has[MAXARGS + 1], *lacks[MAXARGS + 1];
		char *argv_copy, *has_copy, *lacks_copy, *out;
		int argc, nhas, nlacks;
		char errstr[512] = "";
		payq_config_t cfg;
		payq_args_result_t res;

		argv[0] = "payq-test";
		argc = 1 + split(c->args, ' ', argv + 1, MAXARGS, &argv_copy);
		nhas = split(c->has, '|', has, MAXARGS, &has_copy);
		nlacks = split(c->lacks, '|', lacks, MAXARGS, &lacks_copy);
		payq_config_init(&cfg);
		out = capture_parse(&cfg, c->prog, NULL, &argc, argv, &res, errstr, sizeof(errstr));
		ck_assert_msg(res == PAYQ_ARGS_EXIT, "%s: result %d (%s)", c->name, res, errstr);
		for (int k = 0; k < nhas; k++)
			ck_assert_msg(strstr(out, has[k]), "%s: dump lacks \"%s\"", c->name,
				      has[k]);
		for (int k = 0; k < nlacks; k++)
			ck_assert_msg(!strstr(out, lacks[k]), "%s: dump has \"%s\"", c->name,
				      lacks[k]);
		if (c->prog == W) {
			/* payq's defaults come before the overrides, and the override wins. */
			const char *defaults = strstr(out, "payq's defaults");
			const char *overrides = strstr(out, "-X overrides");
			const char *resolved =
				strstr(out, "consumer of payq-worker: resolved librdkafka");
			ck_assert_msg(defaults && overrides && defaults < overrides,
				      "worker: no defaults-then-overrides sections");
			/* What the consumer runs with, not librdkafka's default (true). */
			ck_assert_ptr_nonnull(resolved);
			ck_assert_msg(!strncmp(strstr(resolved, "enable.auto.commit = "),
					       "enable.auto.commit = false\n", 27),
				      "worker: the consumer resolves enable.auto.commit = true");
		}
		free(out);
		free(argv_copy);
		free(has_copy);
		free(lacks_copy);
		payq_config_destroy(&cfg);
	}
}
END_TEST

/* Secrets reach neither -X dump nor any log line: librdkafka's passwords and keys, the
 * password in PAYQ_DB (URI or conninfo) and the userinfo of PAYQ_GATEWAY_URL. */
static const char *const secrets[] = {"hunter2",      "s3cr3t-key",    "sasl-pw-77",
				      "ssl-key-pw-5", "keystore-pw-6", "oauth-secret-8",
				      "conn pw 9"};

static void assert_no_secret(const char *what, const char *out)
{
	for (size_t i = 0; i < PAYQ_ARRAY_SIZE(secrets); i++)
		ck_assert_msg(!strstr(out, secrets[i]), "%s shows the secret \"%s\":\n%s", what,
			      secrets[i], out);
}

/* Runs fn with stderr going to a temporary file, and returns what was written (malloc'd). */
static char *capture_stderr(void (*fn)(const payq_config_t *cfg), const payq_config_t *cfg)
{
	FILE *tmp = tmpfile();
	int saved;
	long len;
	char *out;

	ck_assert_ptr_nonnull(tmp);
	fflush(stderr);
	saved = dup(STDERR_FILENO);
	ck_assert_int_ge(saved, 0);
	ck_assert_int_eq(dup2(fileno(tmp), STDERR_FILENO), STDERR_FILENO);
	fn(cfg);
	fflush(stderr);
	ck_assert_int_eq(dup2(saved, STDERR_FILENO), STDERR_FILENO);
	close(saved);
	len = ftell(tmp);
	ck_assert_int_ge(len, 0);
	out = malloc((size_t)len + 1);
	ck_assert_ptr_nonnull(out);
	rewind(tmp);
	ck_assert_uint_eq(fread(out, 1, (size_t)len, tmp), (size_t)len);
	out[len] = '\0';
	fclose(tmp);
	return out;
}

static void log_settings(const payq_config_t *cfg)
{
	log_error("connecting to %s", cfg->db);
	log_warn("payment mode gateway: charging through %s", cfg->gateway_url);
	log_info("librdkafka said: sasl.password=sasl-pw-77 ssl.key.password=ssl-key-pw-5");
	log_error("keystore-pw-6, principal=p secret=oauth-secret-8");
}

START_TEST(test_secrets_masked)
{
	static const struct {
		const char *db, *url;
	} envs[] = {
		{"postgresql://payq:hunter2@db.example:5432/payq?sslmode=require",
		 "https://s3cr3t-key@pay.example/v1"},
		{"host=db.example password=hunter2 dbname=payq",
		 "https://user:s3cr3t-key@pay.example:8443/v1"},
		{"host=db.example password='conn pw 9' user=payq",
		 "http://s3cr3t-key:@pay.example"},
		{"postgres://payq@db.example/payq?password=hunter2", "https://pay.example/v1"},
	};

	for (size_t i = 0; i < PAYQ_ARRAY_SIZE(envs); i++) {
		char *argv[] = {"payq-test",
				"-X",
				"sasl.password=sasl-pw-77",
				"-X",
				"ssl.key.password=ssl-key-pw-5",
				"-X",
				"ssl.keystore.password=keystore-pw-6",
				"-X",
				"sasl.oauthbearer.config=principal=p secret=oauth-secret-8",
				"-X",
				"dump",
				NULL};
		int argc = 11;
		payq_config_t cfg;
		payq_args_result_t res;
		char errstr[512] = "";
		char *out;

		setenv("PAYQ_DB", envs[i].db, 1);
		setenv("PAYQ_GATEWAY_URL", envs[i].url, 1);
		payq_config_init(&cfg);
		ck_assert_int_eq(payq_config_load_env(&cfg, W, errstr, sizeof(errstr)), 0);
		out = capture_parse(&cfg, W, NULL, &argc, argv, &res, errstr, sizeof(errstr));
		ck_assert_msg(res == PAYQ_ARGS_EXIT, "%zu: %s", i, errstr);
		assert_no_secret("-X dump", out);
		ck_assert_msg(strstr(out, "PAYQ_DB = ") && strstr(out, "PAYQ_GATEWAY_URL = "),
			      "%zu: dump lacks PAYQ_DB or PAYQ_GATEWAY_URL", i);
		ck_assert_msg(strstr(out, "pay.example"), "%zu: the gateway host is masked too", i);
		free(out);
		out = capture_stderr(log_settings, &cfg);
		assert_no_secret("the log", out);
		ck_assert_msg(strstr(out, "pay.example"), "%zu: log masks the host: %s", i, out);
		free(out);
		payq_config_destroy(&cfg);
		payq_log_clear_secrets();
	}
}
END_TEST

/* payq_log_mask: the longest secret wins, every occurrence goes, and the output is cut
 * to its buffer, always NUL-terminated. */

/* Writes text to a new temporary file of the given mode; the path is in path[64]. */
static void write_file(char *path, const char *text, mode_t mode)
{
	int fd;
	FILE *fp;

	snprintf(path, 64, "/tmp/payq-test-config.XXXXXX");
	fd = mkstemp(path);
	ck_assert_int_ge(fd, 0);
	fp = fdopen(fd, "w");
	ck_assert_ptr_nonnull(fp);
	fputs(text, fp);
	fclose(fp);
	ck_assert_int_eq(chmod(path, mode), 0);
}

/* Parses argv (space-separated, after the program name) for the worker. */
static payq_args_result_t parse_line(payq_config_t *cfg, const char *line, char *errstr,
				     size_t errstr_size, char **out)
{
	char *argv[MAXARGS + 2], *copy;
	int argc;
	payq_args_result_t res;

	argv[0] = "payq-test";
	argc = 1 + split(line, ' ', argv + 1, MAXARGS, &copy);
	argv[argc] = NULL;
	*out = capture_parse(cfg, W, NULL, &argc, argv, &res, errstr, errstr_size);
	free(copy);
	return res;
}

/* -F: comments, blank lines, spaces, "key = value"; its pairs go before every -X pair
 * whatever the order of the arguments; the secret is masked in -X dump. */
START_TEST(test_kafka_file)
{
	char path[64], args[256], errstr[512] = "", *out;
	payq_config_t cfg;

	write_file(path,
		   "# the worker's principal\n\n  security.protocol=SASL_SSL\n"
		   "sasl.mechanism = SCRAM-SHA-512\r\nsasl.username=payq-worker\n"
		   "sasl.password=s3cr3t-value-42\n   # indented comment\nlinger.ms=7\n",
		   0600);
	payq_config_init(&cfg);
	snprintf(args, sizeof(args), "-X linger.ms=9 -F %s", path);
	ck_assert_int_eq(parse_line(&cfg, args, errstr, sizeof(errstr), &out), PAYQ_ARGS_OK);
	free(out);
	ck_assert_uint_eq(cfg.xprops_file_cnt, 5);
	ck_assert_uint_eq(cfg.xprops_cnt, 6);
	ck_assert_str_eq(cfg.xprops[0], "security.protocol=SASL_SSL");
	ck_assert_str_eq(cfg.xprops[1], "sasl.mechanism=SCRAM-SHA-512");
	ck_assert_str_eq(cfg.xprops[3], "sasl.password=s3cr3t-value-42");
	ck_assert_str_eq(cfg.xprops[4], "linger.ms=7");
	ck_assert_str_eq(cfg.xprops[5], "linger.ms=9"); /* -X comes last: it wins */
	ck_assert_str_eq(payq_config_x_origin(&cfg, 4), path);
	ck_assert_str_eq(payq_config_x_origin(&cfg, 5), "-X");
	payq_config_destroy(&cfg);

	/* -X dump: the pairs under their own heading, the password masked everywhere. */
	payq_config_init(&cfg);
	snprintf(args, sizeof(args), "-F %s -X dump", path);
	ck_assert_int_eq(parse_line(&cfg, args, errstr, sizeof(errstr), &out), PAYQ_ARGS_EXIT);
	ck_assert_ptr_nonnull(strstr(out, "from -F "));
	ck_assert_ptr_nonnull(strstr(out, "sasl.password = ***"));
	ck_assert_ptr_null(strstr(out, "s3cr3t-value-42"));
	free(out);
	payq_config_destroy(&cfg);

	/* PAYQ_KAFKA_CONFIG_FILE does the same. */
	setenv("PAYQ_KAFKA_CONFIG_FILE", path, 1);
	payq_config_init(&cfg);
	ck_assert_int_eq(payq_config_load_env(&cfg, W, errstr, sizeof(errstr)), 0);
	ck_assert_int_eq(parse_line(&cfg, "run", errstr, sizeof(errstr), &out), PAYQ_ARGS_OK);
	free(out);
	ck_assert_uint_eq(cfg.xprops_file_cnt, 5);
	payq_config_destroy(&cfg);
	unlink(path);
}
END_TEST

/* What the -F file may not do: a bad line (named by number, its value not quoted), an
 * unknown property, a pinned property, a mode others may read or write. */
START_TEST(test_kafka_file_refused)
{
	static const struct {
		const char *text;
		mode_t mode;
		const char *err; /* after the path */
	} cases[] = {
		{"# ok\nsasl.password\n", 0600, ":2: expected key=value"},
		{"=x\n", 0600, ":1: expected key=value"},
		{"no.such.property=1\n", 0600, ":1: No such configuration property"},
		{"enable.auto.commit=true\n", 0600,
		 ": enable.auto.commit=true: refused: the Kafka consumer of payq-worker"},
		{"sasl.password=x\n", 0644, ": refused: mode 0644 lets every user read it"},
		{"sasl.password=x\n", 0604, ": refused: mode 0604 lets every user read it"},
		{"sasl.password=x\n", 0620, ": refused: mode 0620 lets other users change it"},
	};

	for (size_t i = 0; i < PAYQ_ARRAY_SIZE(cases); i++) {
		char path[64], args[128], errstr[512] = "", *out, *at;
		payq_config_t cfg;

		write_file(path, cases[i].text, cases[i].mode);
		payq_config_init(&cfg);
		snprintf(args, sizeof(args), "-F %s", path);
		ck_assert_msg(parse_line(&cfg, args, errstr, sizeof(errstr), &out) ==
				      PAYQ_ARGS_ERROR,
			      "case %zu accepted", i);
		free(out);
		at = strstr(errstr, path);
		ck_assert_msg(at && strstr(at + strlen(path), cases[i].err),
			      "case %zu: \"%s\" lacks \"%s\"", i, errstr, cases[i].err);
		ck_assert_msg(!strstr(errstr, "sasl.password=x"), "case %zu quotes a secret", i);
		payq_config_destroy(&cfg);
		unlink(path);
	}
}
END_TEST

/* PAYQ_DB_FILE and PAYQ_GATEWAY_API_KEY_FILE: one trailing newline dropped, registered as
 * secrets, refused when others may read them or when the plain variable is set too. */
START_TEST(test_env_files)
{
	char db[64], key[64], url[64], errstr[512] = "", masked[128], *out;
	payq_config_t cfg;

	write_file(db, "host=db dbname=payq password=pw-from-file\n", 0640);
	write_file(key, "api-key-123\r\n", 0400);
	setenv("PAYQ_DB_FILE", db, 1);
	setenv("PAYQ_GATEWAY_API_KEY_FILE", key, 1);
	payq_config_init(&cfg);
	ck_assert_int_eq(payq_config_load_env(&cfg, W, errstr, sizeof(errstr)), 0);
	ck_assert_str_eq(cfg.db, "host=db dbname=payq password=pw-from-file");
	ck_assert_str_eq(cfg.gateway_api_key, "api-key-123");
	/* parse_args registers the conninfo's password, as for PAYQ_DB. */
	ck_assert_int_eq(parse_line(&cfg, "run", errstr, sizeof(errstr), &out), PAYQ_ARGS_OK);
	free(out);
	payq_log_mask("key api-key-123 pw pw-from-file", masked, sizeof(masked));
	ck_assert_str_eq(masked, "key *** pw ***");
	payq_config_destroy(&cfg);
	unsetenv("PAYQ_GATEWAY_API_KEY_FILE");

	/* PAYQ_GATEWAY_URL_FILE: the URL's userinfo is what is masked. */
	write_file(url, "https://user:url-pass-9@gw.example/\n", 0600);
	setenv("PAYQ_GATEWAY_URL_FILE", url, 1);
	payq_config_init(&cfg);
	ck_assert_int_eq(payq_config_load_env(&cfg, W, errstr, sizeof(errstr)), 0);
	ck_assert_str_eq(cfg.gateway_url, "https://user:url-pass-9@gw.example/");
	ck_assert_int_eq(parse_line(&cfg, "run", errstr, sizeof(errstr), &out), PAYQ_ARGS_OK);
	free(out);
	payq_log_mask("at https://user:url-pass-9@gw.example/", masked, sizeof(masked));
	ck_assert_str_eq(masked, "at https://***@gw.example/");
	payq_config_destroy(&cfg);
	unsetenv("PAYQ_GATEWAY_URL_FILE");
	unlink(url);
	setenv("PAYQ_GATEWAY_API_KEY_FILE", key, 1);

	setenv("PAYQ_DB", "host=other", 1);
	payq_config_init(&cfg);
	ck_assert_int_eq(payq_config_load_env(&cfg, W, errstr, sizeof(errstr)), -1);
	ck_assert_str_eq(errstr, "PAYQ_DB and PAYQ_DB_FILE are both set; keep one");
	payq_config_destroy(&cfg);
	unsetenv("PAYQ_DB");

	ck_assert_int_eq(chmod(key, 0444), 0);
	payq_config_init(&cfg);
	ck_assert_int_eq(payq_config_load_env(&cfg, W, errstr, sizeof(errstr)), -1);
	ck_assert_ptr_nonnull(strstr(errstr, key));
	ck_assert_ptr_nonnull(strstr(errstr, "lets every user read it"));
	payq_config_destroy(&cfg);

	/* Two lines are not one value. */
	ck_assert_int_eq(chmod(key, 0600), 0);
	{
		FILE *fp = fopen(key, "w");
		ck_assert_ptr_nonnull(fp);
		fputs("line1\nline2\n", fp);
		fclose(fp);
	}
	payq_config_init(&cfg);
	ck_assert_int_eq(payq_config_load_env(&cfg, W, errstr, sizeof(errstr)), -1);
	ck_assert_ptr_nonnull(strstr(errstr, "more than one line"));
	payq_config_destroy(&cfg);
	unlink(db);
	unlink(key);
}
END_TEST

START_TEST(test_log_mask)
{
	static const struct {
		const char *in;
		size_t size;
		const char *want;
	} cases[] = {
		{"x-abcdef-y abc", 64, "x-***-y ***"},
		{"abcabc", 64, "******"},
		{"no secret here", 64, "no secret here"},
		{"", 64, ""},
		{"abcdef", 3, "**"},
		{"12abc", 4, "12*"},
		{"q", 1, ""},
	};
	char out[64];

	payq_log_add_secret("abc", 3);
	payq_log_add_secret("abcdef", 6);
	payq_log_add_secret("abc", 3); /* registered once */
	payq_log_add_secret("", 0);
	payq_log_add_secret(NULL, 5);
	for (size_t i = 0; i < PAYQ_ARRAY_SIZE(cases); i++) {
		size_t n = payq_log_mask(cases[i].in, out, cases[i].size);

		ck_assert_msg(!strcmp(out, cases[i].want), "\"%s\" (%zu): \"%s\", want \"%s\"",
			      cases[i].in, cases[i].size, out, cases[i].want);
		ck_assert_uint_eq(n, strlen(cases[i].want));
	}
	ck_assert_uint_eq(payq_log_mask("abc", out, 0), 0);
	payq_log_clear_secrets();
	payq_log_mask("abc", out, sizeof(out));
	ck_assert_str_eq(out, "abc");
}
END_TEST

START_TEST(test_find)
{
	static const struct {
		const char *name;
		unsigned prog;
		const char *want; /* flag name, or NULL */
	} cases[] = {
		{"batch-max", W, "batch-max"},
		{"PAYQ_BATCH_MAX", W, "batch-max"},
		{"batch-max", P, NULL},
		{"batch-max", R, NULL},
		{"batch-max", PAYQ_PROG_ALL, "batch-max"},
		{"brokers", P, "brokers"},
		{"db", R, "db"},
		{"db", P, NULL},
		{"instance-id", R, NULL},
		{"batch_max", W, NULL},
		{"BATCH-MAX", W, NULL},
		{"--batch-max", W, NULL},
		{"", W, NULL},
		{"nope", PAYQ_PROG_ALL, NULL},
	};

	for (size_t i = 0; i < PAYQ_ARRAY_SIZE(cases); i++) {
		const payq_setting_t *s = payq_config_find(cases[i].name, cases[i].prog);

		if (!cases[i].want) {
			ck_assert_msg(s == NULL, "%s prog %u: found %s", cases[i].name,
				      cases[i].prog, s ? s->name : "");
			continue;
		}
		ck_assert_msg(s != NULL, "%s prog %u: not found", cases[i].name, cases[i].prog);
		ck_assert_str_eq(s->name, cases[i].want);
	}
}
END_TEST

/* payq_config_set checks the type and the bounds from the table entry. */
START_TEST(test_set)
{
	payq_config_t cfg;
	char errstr[256] = "";
	const payq_setting_t *bm = payq_config_find("batch-max", W);
	const payq_setting_t *cm = payq_config_find("commit-mode", W);

	ck_assert_ptr_nonnull(bm);
	ck_assert_ptr_nonnull(cm);
	ck_assert_int_eq(bm->type, PAYQ_CF_INT);
	ck_assert_int_eq(bm->min, 1);
	ck_assert_int_eq(bm->max, 100000);
	ck_assert_str_eq(bm->env, "PAYQ_BATCH_MAX");
	ck_assert_int_eq(cm->type, PAYQ_CF_ENUM);

	payq_config_init(&cfg);
	ck_assert_int_eq(payq_config_set(&cfg, bm, "42", errstr, sizeof(errstr)), 0);
	ck_assert_int_eq(cfg.batch_max, 42);
	ck_assert_int_eq(payq_config_set(&cfg, bm, "0", errstr, sizeof(errstr)), -1);
	ck_assert_str_eq(errstr,
			 "batch-max (PAYQ_BATCH_MAX): \"0\" is not an integer from 1 to 100000");
	ck_assert_int_eq(cfg.batch_max, 42);
	ck_assert_int_eq(payq_config_set(&cfg, cm, "sync", errstr, sizeof(errstr)), 0);
	ck_assert_int_eq(payq_config_set(&cfg, cm, "async", errstr, sizeof(errstr)), 0);
	ck_assert_str_eq(cfg.commit_mode, "async");
	/* a short errstr is cut, not overrun */
	{
		char small[8];

		memset(small, '#', sizeof(small));
		ck_assert_int_eq(payq_config_set(&cfg, bm, "x", small, sizeof(small)), -1);
		ck_assert_str_eq(small, "batch-m");
	}
	payq_config_destroy(&cfg);
}
END_TEST

START_TEST(test_log_level_parse)
{
	static const struct {
		const char *s;
		int want;
	} cases[] = {
		{"error", PAYQ_LOG_ERROR},
		{"warn", PAYQ_LOG_WARN},
		{"warning", PAYQ_LOG_WARN},
		{"info", PAYQ_LOG_INFO},
		{"debug", PAYQ_LOG_DEBUG},
		{"", -1},
		{"INFO", -1},
		{"Debug", -1},
		{"info ", -1},
		{" info", -1},
		{"trace", -1},
		{"fatal", -1},
		{"err", -1},
		{"2", -1},
		{"warnings", -1},
	};

	for (size_t i = 0; i < PAYQ_ARRAY_SIZE(cases); i++)
		ck_assert_msg(payq_log_level_parse(cases[i].s) == cases[i].want,
			      "\"%s\": %d, want %d", cases[i].s, payq_log_level_parse(cases[i].s),
			      cases[i].want);
	for (int l = PAYQ_LOG_ERROR; l <= PAYQ_LOG_DEBUG; l++)
		ck_assert_int_eq(payq_log_level_parse(payq_log_level_name(l)), l);
	ck_assert_str_eq(payq_log_level_name(-1), "unknown");
	ck_assert_str_eq(payq_log_level_name(PAYQ_LOG_DEBUG + 1), "unknown");
}
END_TEST

static Suite *config_suite(void)
{
	Suite *s = suite_create("config");
	TCase *tc = tcase_create("config");

	tcase_set_timeout(tc, 60);
	tcase_add_checked_fixture(tc, setup, teardown);
	tcase_add_test(tc, test_defaults);
	tcase_add_test(tc, test_env);
	tcase_add_test(tc, test_env_sets_log_level);
	tcase_add_test(tc, test_env_several);
	tcase_add_test(tc, test_args);
	tcase_add_test(tc, test_flags_override_env);
	tcase_add_test(tc, test_x_apply);
	tcase_add_test(tc, test_x_errors);
	tcase_add_test(tc, test_exit);
	tcase_add_test(tc, test_help_without_usage);
	tcase_add_test(tc, test_find);
	tcase_add_test(tc, test_set);
	tcase_add_test(tc, test_log_level_parse);
	tcase_add_test(tc, test_known_bugs);
	tcase_add_test(tc, test_x_refused);
	tcase_add_test(tc, test_dump_clients);
	tcase_add_test(tc, test_secrets_masked);
	tcase_add_test(tc, test_log_mask);
	tcase_add_test(tc, test_kafka_file);
	tcase_add_test(tc, test_kafka_file_refused);
	tcase_add_test(tc, test_env_files);
	suite_add_tcase(s, tc);
	return s;
}

PAYQ_TEST_SUITES(config_suite);
