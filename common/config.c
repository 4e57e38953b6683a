/* config.c - the one settings table: environment, then flags, then the -F file, then -X
 * passthrough (config_secrets.c keeps the secrets among them out of logs and dumps). */
#include "config.h"

#include <ctype.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include "config_secrets.h"
#include "kafka_clients.h"
#include "log.h"
#include "secretfile.h"
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
	{"apply-lanes", "PAYQ_APPLY_LANES", PAYQ_CF_INT, "2", OFF(apply_lanes), 1, PAYQ_LANES_MAX,
	 NULL, W,
	 "database connections applying batches side by side; partition p goes to lane p % N "
	 "(gateway mode uses 1)"},
	{"commit-mode", "PAYQ_COMMIT_MODE", PAYQ_CF_ENUM, "async", OFF(commit_mode), 0, 0,
	 "async|sync", W, "Kafka offset commit after each batch: async, or sync (textbook mode)"},
	{"payment-mode", "PAYQ_PAYMENT_MODE", PAYQ_CF_ENUM, "ledger", OFF(payment_mode), 0, 0,
	 "ledger|gateway", W,
	 "how pay takes effect: ledger (a payments row) or gateway (charge a payment channel)"},
	{"gateway-url", "PAYQ_GATEWAY_URL", PAYQ_CF_STR, NULL, OFF(gateway_url), 0, 0, NULL, W,
	 "gateway mode: base URL of the payment channel (POST /charges, GET /charges/KEY)"},
	{"gateway-ca-file", "PAYQ_GATEWAY_CA_FILE", PAYQ_CF_STR, NULL, OFF(gateway_ca_file), 0, 0,
	 NULL, W,
	 "gateway mode: PEM bundle of the CAs that sign the channel's certificate "
	 "(default: the system's)"},
	{"gateway-cert-file", "PAYQ_GATEWAY_CERT_FILE", PAYQ_CF_STR, NULL, OFF(gateway_cert_file),
	 0, 0, NULL, W, "gateway mode: PEM client certificate for a channel that asks for one"},
	{"gateway-cert-key-file", "PAYQ_GATEWAY_CERT_KEY_FILE", PAYQ_CF_STR, NULL,
	 OFF(gateway_cert_key_file), 0, 0, NULL, W,
	 "gateway mode: PEM private key of the client certificate (default: in the cert file)"},
	{"gateway-allow-insecure", "PAYQ_GATEWAY_ALLOW_INSECURE", PAYQ_CF_ENUM, "0",
	 OFF(gateway_allow_insecure), 0, 0, "0|1", W,
	 "gateway mode: 1 allows a plaintext http:// channel (sandbox and tests only)"},
	{"gateway-timeout-ms", "PAYQ_GATEWAY_TIMEOUT_MS", PAYQ_CF_INT, "10000",
	 OFF(gateway_timeout_ms), 10, 600000, NULL, W,
	 "gateway mode: whole-request timeout; a charge that times out is unknown"},
	{"gateway-connect-timeout-ms", "PAYQ_GATEWAY_CONNECT_TIMEOUT_MS", PAYQ_CF_INT, "2000",
	 OFF(gateway_connect_timeout_ms), 10, 600000, NULL, W, "gateway mode: TCP connect timeout"},
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
	{"stats-interval-ms", "PAYQ_STATS_INTERVAL_MS", PAYQ_CF_INT, "5000", OFF(stats_interval_ms),
	 0, 3600000, NULL, W, "librdkafka statistics interval, for lag"},
	{"db", "PAYQ_DB", PAYQ_CF_STR, NULL, OFF(db), 0, 0, NULL, W | R,
	 "PostgreSQL conninfo or URI; libpq's PG* variables apply when unset (or PAYQ_DB_FILE)"},
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
	{"db-idle-in-transaction-timeout-ms", "PAYQ_DB_IDLE_IN_TRANSACTION_TIMEOUT_MS", PAYQ_CF_INT,
	 "60000", OFF(db_idle_in_transaction_timeout_ms), 0, 3600000, NULL, W,
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
	{"kafka-config-file", "PAYQ_KAFKA_CONFIG_FILE", PAYQ_CF_STR, NULL, OFF(kafka_config_file),
	 0, 0, NULL, W | P | R,
	 "-F: librdkafka key=value file (SASL, TLS), applied after flags, before -X; mode 0600"},
	{"gateway-api-key", "PAYQ_GATEWAY_API_KEY", PAYQ_CF_STR, NULL, OFF(gateway_api_key), 0, 0,
	 NULL, W,
	 "gateway mode: API key, sent as Authorization: Bearer (use PAYQ_GATEWAY_API_KEY_FILE)"},
};

/* Settings whose value is or holds a secret: each also reads from the file its *_FILE
 * variable names, and -X dump prints "***" for the secret (PAYQ_DB: its passwords only,
 * PAYQ_GATEWAY_URL: its userinfo only). */
static const size_t secret_settings[] = {OFF(db), OFF(gateway_url), OFF(gateway_api_key)};

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

int payq_config_set(payq_config_t *cfg, const payq_setting_t *s, const char *value, char *errstr,
		    size_t errstr_size)
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

static bool secret_setting(const payq_setting_t *s)
{
	for (size_t i = 0; i < PAYQ_ARRAY_SIZE(secret_settings); i++)
		if (secret_settings[i] == s->offset)
			return true;
	return false;
}

/* A secret setting from the file its *_FILE variable names. Sets *found when that variable
 * is set. The error text names variables and the file, never the value. */
static int load_env_file(payq_config_t *cfg, const payq_setting_t *s, bool *found, char *errstr,
			 size_t errstr_size)
{
	char name[64], *value;
	const char *path;
	int rc;

	*found = false;
	snprintf(name, sizeof(name), "%s_FILE", s->env);
	path = getenv(name);
	if (!path)
		return 0;
	*found = true;
	if (getenv(s->env))
		return payq_err(errstr, errstr_size, "%s and %s are both set; keep one", s->env,
				name);
	/* Its secret parts are registered with the logger by payq_config_parse_args, as
	 * for a value from the environment. */
	if (payq_secret_file_value(path, &value, errstr, errstr_size))
		return -1;
	rc = payq_config_set(cfg, s, value, errstr, errstr_size);
	explicit_bzero(value, strlen(value));
	free(value);
	if (rc)
		return payq_err(errstr, errstr_size, "%s (%s): the value is not valid", name, path);
	return 0;
}

int payq_config_load_env(payq_config_t *cfg, unsigned prog, char *errstr, size_t errstr_size)
{
	for (size_t i = 0; i < PAYQ_ARRAY_SIZE(settings); i++) {
		const char *v;
		bool from_file = false;

		if (!(settings[i].progs & prog))
			continue;
		if (secret_setting(&settings[i]) &&
		    load_env_file(cfg, &settings[i], &from_file, errstr, errstr_size))
			return -1;
		v = getenv(settings[i].env);
		if (!from_file && v && payq_config_set(cfg, &settings[i], v, errstr, errstr_size))
			return -1;
	}
	return 0;
}

/* Checks key=value with librdkafka and inserts it at position at of cfg->xprops. */
static int insert_x(payq_config_t *cfg, size_t at, const char *kv, char *errstr, size_t errstr_size)
{
	const char *eq = strchr(kv, '=');
	char key[256], **grown, *dup;
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
	dup = strdup(kv);
	if (!dup)
		return payq_err(errstr, errstr_size, "out of memory");
	memmove(&cfg->xprops[at + 1], &cfg->xprops[at], (cfg->xprops_cnt - at) * sizeof(*grown));
	cfg->xprops[at] = dup;
	cfg->xprops_cnt++;
	return 0;
}

int payq_config_add_x(payq_config_t *cfg, const char *kv, char *errstr, size_t errstr_size)
{
	return insert_x(cfg, cfg->xprops_cnt, kv, errstr, errstr_size);
}

const char *payq_config_x_origin(const payq_config_t *cfg, size_t i)
{
	return i < cfg->xprops_file_cnt && cfg->kafka_config_file ? cfg->kafka_config_file : "-X";
}

/* Cuts the spaces around a line in place. */
static char *trim(char *line)
{
	char *end = line + strlen(line);

	while (isspace((unsigned char)*line))
		line++;
	while (end > line && isspace((unsigned char)end[-1]))
		*--end = '\0';
	return line;
}

/* Adds line lineno of the -F file, already trimmed and not a comment, before the -X pairs. */
static int add_file_line(payq_config_t *cfg, char *line, size_t lineno, char *errstr,
			 size_t errstr_size)
{
	const char *path = cfg->kafka_config_file;
	char *eq = strchr(line, '='), *key, *value, *pair, err[512], masked[sizeof(err)];
	size_t need;

	if (!eq || eq == line)
		return payq_err(errstr, errstr_size, "%s:%zu: expected key=value", path, lineno);
	*eq = '\0';
	key = trim(line); /* "key = value" as well as "key=value" */
	value = trim(eq + 1);
	if (payq_kafka_secret_prop(key))
		payq_log_add_secret(value, strlen(value));
	need = strlen(key) + strlen(value) + 2;
	pair = malloc(need);
	if (!pair)
		return payq_err(errstr, errstr_size, "out of memory");
	snprintf(pair, need, "%s=%s", key, value);
	if (insert_x(cfg, cfg->xprops_file_cnt, pair, err, sizeof(err))) {
		/* librdkafka's text may quote the value: mask the secrets in it. */
		payq_log_mask(err, masked, sizeof(masked));
		explicit_bzero(pair, need);
		free(pair);
		return payq_err(errstr, errstr_size, "%s:%zu: %s", path, lineno, masked);
	}
	cfg->xprops_file_cnt++;
	explicit_bzero(pair, need);
	free(pair);
	return 0;
}

int payq_config_load_kafka_file(payq_config_t *cfg, char *errstr, size_t errstr_size)
{
	const char *path = cfg->kafka_config_file;
	char *text;
	size_t len, lineno = 0;
	int rc = 0;

	if (!path || !*path || cfg->xprops_file_cnt)
		return 0;
	if (payq_secret_file_read(path, &text, &len, errstr, errstr_size))
		return -1;
	/* Split on '\n' by hand: strtok_r would skip blank lines and so miscount. */
	for (char *line = text, *next; line && !rc; line = next) {
		char *kv;

		next = strchr(line, '\n');
		if (next)
			*next++ = '\0';
		lineno++;
		kv = trim(line);
		if (*kv && *kv != '#')
			rc = add_file_line(cfg, kv, lineno, errstr, errstr_size);
	}
	/* The file's text held secrets: do not leave them in freed memory. */
	explicit_bzero(text, len);
	free(text);
	return rc;
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
	fprintf(fp, "Settings (environment first, then flags, then the -F file, then -X):\n");
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
	fprintf(fp, "  %-24s %-26s %s\n", "-F FILE", "PAYQ_KAFKA_CONFIG_FILE",
		"librdkafka key=value lines (kcat -F), before -X");
	for (size_t i = 0; i < PAYQ_ARRAY_SIZE(settings); i++) {
		char env[64];

		if (!(settings[i].progs & prog) || !secret_setting(&settings[i]))
			continue;
		snprintf(env, sizeof(env), "%s_FILE", settings[i].env);
		fprintf(fp, "  %-24s %-26s %s from this file (mode 0600 or 0640)\n", "", env,
			settings[i].env);
	}
	fprintf(fp, "  %-24s %-26s %s\n", "-X key=value", "", "any librdkafka property");
	fprintf(fp, "  %-24s %-26s %s\n", "-X list", "", "list librdkafka properties");
	fprintf(fp, "  %-24s %-26s %s\n", "-X dump", "",
		"print the resolved settings and librdkafka configuration, then exit");
	fprintf(fp, "  %-24s %-26s %s\n", "--help, --version", "", "");
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
			fprintf(fp, "%s = %s\n", s->env,
				payq_log_level_name((int)*int_field(c, s)));
			continue;
		}
		v = *str_field(c, s);
		if (!v)
			fprintf(fp, "%s = (unset)\n", s->env);
		else if (s->offset == OFF(db))
			payq_config_put_conninfo(fp, s->env, v);
		else if (s->offset == OFF(gateway_url))
			payq_config_put_url(fp, s->env, v);
		else if (secret_setting(s))
			fprintf(fp, "%s = ***\n", s->env);
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

/* What set_flag did with one "--name[=value]" argument. */
typedef enum {
	FLAG_SET,     /* a setting of this program: set */
	FLAG_UNKNOWN, /* not a setting: left for the program's own options */
	FLAG_ERROR,   /* a setting without a value, or a bad value: errstr says which */
} flag_t;

static flag_t set_flag(payq_config_t *cfg, unsigned prog, int argc, char **argv, int *i,
		       char *errstr, size_t errstr_size)
{
	const char *a = argv[*i], *eq = strchr(a, '='), *v;
	size_t len = eq ? (size_t)(eq - a - 2) : strlen(a + 2);
	const payq_setting_t *s;
	char name[64];

	if (len >= sizeof(name))
		return FLAG_UNKNOWN;
	memcpy(name, a + 2, len);
	name[len] = '\0';
	s = payq_config_find(name, prog);
	if (!s)
		return FLAG_UNKNOWN;
	v = flag_value(argc, argv, i, eq);
	if (!v) {
		payq_err(errstr, errstr_size, "--%s needs a value", s->name);
		return FLAG_ERROR;
	}
	return payq_config_set(cfg, s, v, errstr, errstr_size) ? FLAG_ERROR : FLAG_SET;
}

/* After every argument: the -F file, the secrets, and the -X checks (a flag such as
 * --group may come after the -X it concerns); then -X dump if asked. */
static payq_args_result_t finish_args(payq_config_t *cfg, unsigned prog, bool dump, char *errstr,
				      size_t errstr_size)
{
	if (payq_config_load_kafka_file(cfg, errstr, errstr_size))
		return PAYQ_ARGS_ERROR;
	payq_config_note_secrets(cfg);
	if (payq_config_check_key_files(cfg, errstr, errstr_size))
		return PAYQ_ARGS_ERROR;
	if (payq_kafka_check_x(cfg, prog, errstr, errstr_size))
		return PAYQ_ARGS_ERROR;
	if (dump) {
		payq_config_dump(cfg, prog, stdout);
		return PAYQ_ARGS_EXIT;
	}
	return PAYQ_ARGS_OK;
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
		if (!strncmp(a, "-F", 2)) {
			const char *file = a[2] ? a + 2 : (i + 1 < *argc ? argv[++i] : NULL);
			if (!file)
				return payq_err(errstr, errstr_size,
						"-F needs a librdkafka configuration file");
			if (payq_config_set(cfg, payq_config_find("kafka-config-file", prog), file,
					    errstr, errstr_size))
				return PAYQ_ARGS_ERROR;
			continue;
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
			flag_t f = set_flag(cfg, prog, *argc, argv, &i, errstr, errstr_size);

			if (f == FLAG_ERROR)
				return PAYQ_ARGS_ERROR;
			if (f == FLAG_SET)
				continue;
		}
		argv[out++] = argv[i];
	}
	*argc = out;
	argv[out] = NULL;
	return finish_args(cfg, prog, dump, errstr, errstr_size);
}
