/* config.c - the one settings table: environment, then flags, then -X passthrough. */
#include "config.h"

#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include <libpq-fe.h>

#include "kafka_clients.h"
#include "log.h"
#include "util.h"

#define OFF(f) offsetof(payq_config_t, f)
#define W PAYQ_PROG_WORKER
#define P PAYQ_PROG_PRODUCER
#define R PAYQ_PROG_REPLAY

/* The table drives defaults, environment, flags, --help and -X dump alike. */
static const payq_setting_t settings[] = {
	{"brokers", "PAYQ_BROKERS", PAYQ_CF_STR, "localhost:9092", OFF(brokers), 0, 0, NULL,
	 W | P | R, "Kafka bootstrap servers"},
	{"topic", "PAYQ_TOPIC", PAYQ_CF_STR, "payq.commands", OFF(topic), 0, 0, NULL, W | P | R,
	 "commands topic"},
	{"dlq-topic", "PAYQ_DLQ_TOPIC", PAYQ_CF_STR, "payq.commands.dlq", OFF(dlq_topic), 0, 0,
	 NULL, W | R, "dead-letter topic"},
	{"group", "PAYQ_GROUP", PAYQ_CF_STR, "payq-workers", OFF(group), 0, 0, NULL, W | R,
	 "consumer group"},
	{"instance-id", "PAYQ_INSTANCE_ID", PAYQ_CF_STR, NULL, OFF(instance_id), 0, 0, NULL, W,
	 "static membership id (group.instance.id), usually the pod name"},
	{"batch-max", "PAYQ_BATCH_MAX", PAYQ_CF_INT, "500", OFF(batch_max), 1, 100000, NULL, W,
	 "most commands applied in one database transaction"},
	{"batch-wait-ms", "PAYQ_BATCH_WAIT_MS", PAYQ_CF_INT, "20", OFF(batch_wait_ms), 0, 60000,
	 NULL, W, "longest wait to fill a batch"},
	{"commit-mode", "PAYQ_COMMIT_MODE", PAYQ_CF_ENUM, "async", OFF(commit_mode), 0, 0,
	 "async|sync", W, "Kafka offset commit after each batch: async, or sync (textbook mode)"},
	{"payment-mode", "PAYQ_PAYMENT_MODE", PAYQ_CF_ENUM, "ledger", OFF(payment_mode), 0, 0,
	 "ledger|gateway", W,
	 "how pay takes effect: ledger (a payments row) or gateway (charge a payment channel)"},
	{"gateway-url", "PAYQ_GATEWAY_URL", PAYQ_CF_STR, NULL, OFF(gateway_url), 0, 0, NULL, W,
	 "gateway mode: base URL of the payment channel (POST /charges, GET /charges/KEY)"},
	{"gateway-timeout-ms", "PAYQ_GATEWAY_TIMEOUT_MS", PAYQ_CF_INT, "10000",
	 OFF(gateway_timeout_ms), 10, 600000, NULL, W,
	 "gateway mode: whole-request timeout; a charge that times out is unknown"},
	{"gateway-connect-timeout-ms", "PAYQ_GATEWAY_CONNECT_TIMEOUT_MS", PAYQ_CF_INT, "2000",
	 OFF(gateway_connect_timeout_ms), 10, 600000, NULL, W,
	 "gateway mode: TCP connect timeout"},
	{"gateway-concurrency", "PAYQ_GATEWAY_CONCURRENCY", PAYQ_CF_INT, "32",
	 OFF(gateway_concurrency), 1, 1024, NULL, W,
	 "gateway mode: most charges in flight at once (connections to the channel)"},
	{"gateway-key-retention", "PAYQ_GATEWAY_KEY_RETENTION", PAYQ_CF_STR, "24h",
	 OFF(gateway_key_retention), 0, 0, NULL, W,
	 "gateway mode: how long the channel keeps an idempotency key; a payment older than "
	 "this that the channel does not know is left for a person, never charged again"},
	{"reconcile", "PAYQ_RECONCILE", PAYQ_CF_ENUM, "auto", OFF(reconcile), 0, 0, "auto|on|off",
	 W, "run the reconciler inside the worker under a leader lock (auto: in gateway mode)"},
	{"reconcile-schedule", "PAYQ_RECONCILE_SCHEDULE", PAYQ_CF_STR, "1m,5m,15m,1h,6h,24h",
	 OFF(reconcile_schedule), 0, 0, NULL, W,
	 "waits before each look at a pending or unknown payment; the last one repeats"},
	{"reconcile-max-attempts", "PAYQ_RECONCILE_MAX_ATTEMPTS", PAYQ_CF_INT, "6",
	 OFF(reconcile_max_attempts), 1, 1000, NULL, W,
	 "looks after which a payment is reported as unresolved_payment (it is still retried)"},
	{"reconcile-interval-ms", "PAYQ_RECONCILE_INTERVAL_MS", PAYQ_CF_INT, "1000",
	 OFF(reconcile_interval_ms), 10, 3600000, NULL, W,
	 "how often the reconciler looks for due payments"},
	{"http-addr", "PAYQ_HTTP_ADDR", PAYQ_CF_STR, "0.0.0.0:9400", OFF(http_addr), 0, 0, NULL, W,
	 "address for /metrics, /healthz and /readyz; empty disables"},
	{"log-level", "PAYQ_LOG_LEVEL", PAYQ_CF_LOGLEVEL, "info", OFF(log_level), 0, 0, NULL,
	 W | P | R, "error, warn, info or debug"},
	{"shutdown-timeout-ms", "PAYQ_SHUTDOWN_TIMEOUT_MS", PAYQ_CF_INT, "25000",
	 OFF(shutdown_timeout_ms), 100, 3600000, NULL, W | P | R, "deadline for a clean shutdown"},
	{"retry-max-ms", "PAYQ_RETRY_MAX_MS", PAYQ_CF_INT, "5000", OFF(retry_max_ms), 10, 600000,
	 NULL, W, "cap of the database retry backoff"},
	{"stats-interval-ms", "PAYQ_STATS_INTERVAL_MS", PAYQ_CF_INT, "5000",
	 OFF(stats_interval_ms), 0, 3600000, NULL, W, "librdkafka statistics interval, for lag"},
	{"db", "PAYQ_DB", PAYQ_CF_STR, NULL, OFF(db), 0, 0, NULL, W | R,
	 "PostgreSQL conninfo or URI; libpq's PG* variables apply when unset"},
	/* Session bounds. They take precedence over the same settings in PAYQ_DB. A batch
	 * of 500 takes tens of milliseconds; the largest allowed batch a few seconds. */
	{"db-statement-timeout-ms", "PAYQ_DB_STATEMENT_TIMEOUT_MS", PAYQ_CF_INT, "30000",
	 OFF(db_statement_timeout_ms), 0, 3600000, NULL, W,
	 "statement_timeout of the worker's sessions (0: none); also bounds the wait for an "
	 "answer, with PAYQ_DB_TCP_USER_TIMEOUT_MS"},
	{"db-lock-timeout-ms", "PAYQ_DB_LOCK_TIMEOUT_MS", PAYQ_CF_INT, "5000",
	 OFF(db_lock_timeout_ms), 0, 3600000, NULL, W,
	 "lock_timeout of the worker's sessions (0: none): a batch behind a migration's lock "
	 "is retried"},
	{"db-idle-in-transaction-timeout-ms", "PAYQ_DB_IDLE_IN_TRANSACTION_TIMEOUT_MS",
	 PAYQ_CF_INT, "60000", OFF(db_idle_in_transaction_timeout_ms), 0, 3600000, NULL, W,
	 "idle_in_transaction_session_timeout of the worker's sessions (0: none)"},
	{"db-connect-timeout-s", "PAYQ_DB_CONNECT_TIMEOUT_S", PAYQ_CF_INT, "10",
	 OFF(db_connect_timeout_s), 2, 3600, NULL, W | R,
	 "libpq connect_timeout: longest wait to connect, TLS and authentication included"},
	{"db-keepalives-idle-s", "PAYQ_DB_KEEPALIVES_IDLE_S", PAYQ_CF_INT, "10",
	 OFF(db_keepalives_idle_s), 1, 7200, NULL, W | R,
	 "TCP keepalive: idle seconds before the first probe"},
	{"db-keepalives-interval-s", "PAYQ_DB_KEEPALIVES_INTERVAL_S", PAYQ_CF_INT, "5",
	 OFF(db_keepalives_interval_s), 1, 600, NULL, W | R,
	 "TCP keepalive: seconds between probes"},
	{"db-keepalives-count", "PAYQ_DB_KEEPALIVES_COUNT", PAYQ_CF_INT, "3",
	 OFF(db_keepalives_count), 1, 100, NULL, W | R,
	 "TCP keepalive: unanswered probes before the connection is dropped"},
	{"db-tcp-user-timeout-ms", "PAYQ_DB_TCP_USER_TIMEOUT_MS", PAYQ_CF_INT, "10000",
	 OFF(db_tcp_user_timeout_ms), 0, 3600000, NULL, W | R,
	 "libpq tcp_user_timeout: longest time sent data may stay unacknowledged (0: the "
	 "kernel's)"},
};

#undef W
#undef P
#undef R

static char **str_field(payq_config_t *cfg, const payq_setting_t *s)
{
	return (char **)(void *)((char *)cfg + s->offset);
}

static int64_t *int_field(payq_config_t *cfg, const payq_setting_t *s)
{
	return (int64_t *)(void *)((char *)cfg + s->offset);
}

static bool enum_has(const char *choices, const char *v)
{
	size_t n = strlen(v);
	const char *p = choices;

	while (p && *p) {
		const char *bar = strchr(p, '|');
		size_t len = bar ? (size_t)(bar - p) : strlen(p);
		if (len == n && !strncmp(p, v, n))
			return true;
		p = bar ? bar + 1 : NULL;
	}
	return false;
}

int payq_config_set(payq_config_t *cfg, const payq_setting_t *s, const char *value,
		    char *errstr, size_t errstr_size)
{
	int64_t v;
	int lvl;

	switch (s->type) {
	case PAYQ_CF_ENUM:
		if (!enum_has(s->choices, value))
			return payq_err(errstr, errstr_size, "%s (%s): \"%s\" is not one of %s",
					s->name, s->env, value, s->choices);
		/* fall through */
	case PAYQ_CF_STR: {
		char *dup = strdup(value);
		if (!dup)
			return payq_err(errstr, errstr_size, "out of memory");
		free(*str_field(cfg, s));
		*str_field(cfg, s) = dup;
		return 0;
	}
	case PAYQ_CF_INT:
		if (payq_parse_int64(value, s->min, s->max, &v))
			return payq_err(errstr, errstr_size,
					"%s (%s): \"%s\" is not an integer from %lld to %lld",
					s->name, s->env, value, (long long)s->min,
					(long long)s->max);
		*int_field(cfg, s) = v;
		return 0;
	case PAYQ_CF_LOGLEVEL:
		lvl = payq_log_level_parse(value);
		if (lvl < 0)
			return payq_err(errstr, errstr_size,
					"%s (%s): \"%s\" is not one of error, warn, info, debug",
					s->name, s->env, value);
		*int_field(cfg, s) = lvl;
		payq_log_level = lvl;
		return 0;
	}
	return payq_err(errstr, errstr_size, "%s: unknown setting type", s->name);
}

void payq_config_init(payq_config_t *cfg)
{
	memset(cfg, 0, sizeof(*cfg));
	for (size_t i = 0; i < PAYQ_ARRAY_SIZE(settings); i++)
		if (settings[i].def)
			payq_config_set(cfg, &settings[i], settings[i].def, NULL, 0);
}

void payq_config_destroy(payq_config_t *cfg)
{
	for (size_t i = 0; i < PAYQ_ARRAY_SIZE(settings); i++)
		if (settings[i].type == PAYQ_CF_STR || settings[i].type == PAYQ_CF_ENUM)
			free(*str_field(cfg, &settings[i]));
	for (size_t i = 0; i < cfg->xprops_cnt; i++)
		free(cfg->xprops[i]);
	free(cfg->xprops);
	memset(cfg, 0, sizeof(*cfg));
}

const payq_setting_t *payq_config_find(const char *name, unsigned prog)
{
	for (size_t i = 0; i < PAYQ_ARRAY_SIZE(settings); i++)
		if ((settings[i].progs & prog) &&
		    (!strcmp(settings[i].name, name) || !strcmp(settings[i].env, name)))
			return &settings[i];
	return NULL;
}

int payq_config_load_env(payq_config_t *cfg, unsigned prog, char *errstr, size_t errstr_size)
{
	for (size_t i = 0; i < PAYQ_ARRAY_SIZE(settings); i++) {
		const char *v;
		if (!(settings[i].progs & prog))
			continue;
		v = getenv(settings[i].env);
		if (v && payq_config_set(cfg, &settings[i], v, errstr, errstr_size))
			return -1;
	}
	return 0;
}

int payq_config_add_x(payq_config_t *cfg, const char *kv, char *errstr, size_t errstr_size)
{
	const char *eq = strchr(kv, '=');
	char key[256], **grown;
	rd_kafka_conf_t *scratch;
	rd_kafka_conf_res_t res;

	if (!eq || eq == kv || (size_t)(eq - kv) >= sizeof(key))
		return payq_err(errstr, errstr_size, "-X %s: expected key=value, list or dump", kv);
	memcpy(key, kv, (size_t)(eq - kv));
	key[eq - kv] = '\0';

	/* Try it on a scratch conf so librdkafka's own error text reaches the user. */
	scratch = rd_kafka_conf_new();
	res = rd_kafka_conf_set(scratch, key, eq + 1, errstr, errstr_size);
	rd_kafka_conf_destroy(scratch);
	if (res != RD_KAFKA_CONF_OK)
		return -1;

	grown = realloc(cfg->xprops, (cfg->xprops_cnt + 1) * sizeof(*grown));
	if (!grown)
		return payq_err(errstr, errstr_size, "out of memory");
	cfg->xprops = grown;
	cfg->xprops[cfg->xprops_cnt] = strdup(kv);
	if (!cfg->xprops[cfg->xprops_cnt])
		return payq_err(errstr, errstr_size, "out of memory");
	cfg->xprops_cnt++;
	return 0;
}

int payq_config_apply_x(const payq_config_t *cfg, rd_kafka_conf_t *conf, char *errstr,
			size_t errstr_size)
{
	for (size_t i = 0; i < cfg->xprops_cnt; i++) {
		char key[256];
		const char *eq = strchr(cfg->xprops[i], '=');
		size_t klen = (size_t)(eq - cfg->xprops[i]);

		memcpy(key, cfg->xprops[i], klen);
		key[klen] = '\0';
		if (rd_kafka_conf_set(conf, key, eq + 1, errstr, errstr_size) != RD_KAFKA_CONF_OK)
			return -1;
	}
	return 0;
}

void payq_config_print_help(FILE *fp, unsigned prog)
{
	fprintf(fp, "Settings (environment first, then flags, then -X):\n");
	for (size_t i = 0; i < PAYQ_ARRAY_SIZE(settings); i++) {
		const payq_setting_t *s = &settings[i];
		char flag[64];
		if (!(s->progs & prog))
			continue;
		snprintf(flag, sizeof(flag), "--%s", s->name);
		fprintf(fp, "  %-24s %-26s %s", flag, s->env, s->help);
		if (s->def)
			fprintf(fp, " (default: %s)", *s->def ? s->def : "\"\"");
		fputc('\n', fp);
	}
	fprintf(fp, "  %-24s %-26s %s\n", "-X key=value", "", "any librdkafka property");
	fprintf(fp, "  %-24s %-26s %s\n", "-X list", "", "list librdkafka properties");
	fprintf(fp, "  %-24s %-26s %s\n", "-X dump", "",
		"print the resolved settings and librdkafka configuration, then exit");
	fprintf(fp, "  %-24s %-26s %s\n", "--help, --version", "", "");
}

/* Finds the userinfo of "scheme://userinfo@host...": sets *off and *len and returns true,
 * or false when the URL has none. */
static bool url_userinfo(const char *url, size_t *off, size_t *len)
{
	const char *start = strstr(url, "://"), *end, *at = NULL;

	if (!start)
		return false;
	start += 3;
	end = start + strcspn(start, "/?#");
	for (const char *p = start; p < end; p++)
		if (*p == '@')
			at = p;
	if (!at)
		return false;
	*off = (size_t)(start - url);
	*len = (size_t)(at - start);
	return true;
}

/* Registers the userinfo of a URL, and the password part of it on its own. */
static void note_userinfo(const char *url)
{
	size_t off, len;
	const char *colon;

	if (!url || !url_userinfo(url, &off, &len))
		return;
	payq_log_add_secret(url + off, len);
	colon = memchr(url + off, ':', len);
	if (colon)
		payq_log_add_secret(colon + 1, len - (size_t)(colon + 1 - (url + off)));
}

static bool conninfo_secret_key(const char *key)
{
	return !strcmp(key, "password") || !strcmp(key, "sslpassword");
}

/* Registers the passwords of a libpq conninfo or URI: as libpq decodes them, and, for a
 * URI, as written (percent-encoded) in its userinfo and in a password= query parameter. */
static void note_conninfo(const char *db)
{
	PQconninfoOption *opts;
	const char *q;

	if (!db || !*db)
		return;
	opts = PQconninfoParse(db, NULL);
	for (PQconninfoOption *o = opts; o && o->keyword; o++)
		if (o->val && conninfo_secret_key(o->keyword))
			payq_log_add_secret(o->val, strlen(o->val));
	PQconninfoFree(opts);
	if (strncmp(db, "postgresql://", 13) && strncmp(db, "postgres://", 11))
		return;
	note_userinfo(db);
	for (q = strchr(db, '?'); q && *q; q += strcspn(q, "&")) {
		q++;
		if (!strncmp(q, "password=", 9))
			payq_log_add_secret(q + 9, strcspn(q + 9, "&"));
		else if (!strncmp(q, "sslpassword=", 12))
			payq_log_add_secret(q + 12, strcspn(q + 12, "&"));
	}
}

/* From here on no log line shows a password of PAYQ_DB, the userinfo of PAYQ_GATEWAY_URL,
 * or the value of a secret -X property. */
static void note_secrets(const payq_config_t *cfg)
{
	note_conninfo(cfg->db);
	note_userinfo(cfg->gateway_url);
	for (size_t i = 0; i < cfg->xprops_cnt; i++) {
		const char *eq = strchr(cfg->xprops[i], '=');
		char key[256];

		if (!eq || (size_t)(eq - cfg->xprops[i]) >= sizeof(key))
			continue;
		memcpy(key, cfg->xprops[i], (size_t)(eq - cfg->xprops[i]));
		key[eq - cfg->xprops[i]] = '\0';
		if (payq_kafka_secret_prop(key))
			payq_log_add_secret(eq + 1, strlen(eq + 1));
	}
}

/* Prints a conninfo as libpq reads it, passwords masked; only that it is set when libpq
 * cannot parse it (its error could quote the password). */
static void put_conninfo(FILE *fp, const char *env, const char *db)
{
	PQconninfoOption *opts = PQconninfoParse(db, NULL);
	const char *sep = "";

	if (!opts) {
		fprintf(fp, "%s = (set, but libpq cannot parse it)\n", env);
		return;
	}
	fprintf(fp, "%s = ", env);
	for (PQconninfoOption *o = opts; o->keyword; o++) {
		char masked[512];

		if (!o->val)
			continue;
		if (conninfo_secret_key(o->keyword))
			snprintf(masked, sizeof(masked), "***");
		else
			payq_log_mask(o->val, masked, sizeof(masked));
		fprintf(fp, "%s%s=", sep, o->keyword);
		if (!*masked || strpbrk(masked, " '\\")) {
			fputc('\'', fp);
			for (const char *c = masked; *c; c++)
				fprintf(fp, "%s%c", *c == '\'' || *c == '\\' ? "\\" : "", *c);
			fputc('\'', fp);
		} else {
			fputs(masked, fp);
		}
		sep = " ";
	}
	fputc('\n', fp);
	PQconninfoFree(opts);
}

/* Prints a URL with its userinfo as "***". */
static void put_url(FILE *fp, const char *env, const char *url)
{
	size_t off, len;
	char masked[1024];

	if (url_userinfo(url, &off, &len)) {
		fprintf(fp, "%s = %.*s***%s\n", env, (int)off, url, url + off + len);
		return;
	}
	payq_log_mask(url, masked, sizeof(masked));
	fprintf(fp, "%s = %s\n", env, masked);
}

void payq_config_dump(const payq_config_t *cfg, unsigned prog, FILE *fp)
{
	payq_config_t *c = (payq_config_t *)(void *)cfg;

	fprintf(fp, "# payq settings: defaults, then the environment, then flags\n");
	for (size_t i = 0; i < PAYQ_ARRAY_SIZE(settings); i++) {
		const payq_setting_t *s = &settings[i];
		const char *v;
		char masked[1024];

		if (!(s->progs & prog))
			continue;
		if (s->type == PAYQ_CF_INT) {
			fprintf(fp, "%s = %lld\n", s->env, (long long)*int_field(c, s));
			continue;
		}
		if (s->type == PAYQ_CF_LOGLEVEL) {
			fprintf(fp, "%s = %s\n", s->env, payq_log_level_name((int)*int_field(c, s)));
			continue;
		}
		v = *str_field(c, s);
		if (!v)
			fprintf(fp, "%s = (unset)\n", s->env);
		else if (s->offset == OFF(db))
			put_conninfo(fp, s->env, v);
		else if (s->offset == OFF(gateway_url))
			put_url(fp, s->env, v);
		else {
			payq_log_mask(v, masked, sizeof(masked));
			fprintf(fp, "%s = %s\n", s->env, masked);
		}
	}
	payq_kafka_dump(cfg, prog, fp);
}

/* Returns the value of "--name=value" or "--name value", advancing *i; NULL if absent. */
static const char *flag_value(int argc, char **argv, int *i, const char *eq)
{
	if (eq)
		return eq + 1;
	if (*i + 1 >= argc)
		return NULL;
	return argv[++*i];
}

payq_args_result_t payq_config_parse_args(payq_config_t *cfg, unsigned prog, const char *progname,
					  void (*usage)(FILE *fp), int *argc, char **argv,
					  char *errstr, size_t errstr_size)
{
	int out = 1;
	bool dump = false;

	for (int i = 1; i < *argc; i++) {
		const char *a = argv[i];

		if (!strcmp(a, "--")) {
			while (i < *argc)
				argv[out++] = argv[i++];
			break;
		}
		if (!strcmp(a, "--help") || !strcmp(a, "-h")) {
			if (usage)
				usage(stdout);
			payq_config_print_help(stdout, prog);
			return PAYQ_ARGS_EXIT;
		}
		if (!strcmp(a, "--version") || !strcmp(a, "-V")) {
			printf("%s %s (librdkafka %s)\n", progname, PAYQ_VERSION,
			       rd_kafka_version_str());
			return PAYQ_ARGS_EXIT;
		}
		if (!strncmp(a, "-X", 2)) {
			const char *kv = a[2] ? a + 2 : (i + 1 < *argc ? argv[++i] : NULL);
			if (!kv)
				return payq_err(errstr, errstr_size,
						"-X needs key=value, list or dump");
			if (!strcmp(kv, "list")) {
				rd_kafka_conf_properties_show(stdout);
				return PAYQ_ARGS_EXIT;
			}
			if (!strcmp(kv, "dump")) {
				dump = true;
				continue;
			}
			if (payq_config_add_x(cfg, kv, errstr, errstr_size))
				return PAYQ_ARGS_ERROR;
			continue;
		}
		if (!strncmp(a, "--", 2)) {
			const char *eq = strchr(a, '=');
			char name[64];
			size_t len = eq ? (size_t)(eq - a - 2) : strlen(a + 2);
			const payq_setting_t *s;

			if (len < sizeof(name)) {
				memcpy(name, a + 2, len);
				name[len] = '\0';
				s = payq_config_find(name, prog);
				if (s) {
					const char *v = flag_value(*argc, argv, &i, eq);
					if (!v)
						return payq_err(errstr, errstr_size,
								"--%s needs a value", s->name);
					if (payq_config_set(cfg, s, v, errstr, errstr_size))
						return PAYQ_ARGS_ERROR;
					continue;
				}
			}
		}
		argv[out++] = argv[i];
	}
	*argc = out;
	argv[out] = NULL;
	note_secrets(cfg);
	/* After every argument: a flag such as --group may come after the -X it concerns. */
	if (payq_kafka_check_x(cfg, prog, errstr, errstr_size))
		return PAYQ_ARGS_ERROR;
	if (dump) {
		payq_config_dump(cfg, prog, stdout);
		return PAYQ_ARGS_EXIT;
	}
	return PAYQ_ARGS_OK;
}
