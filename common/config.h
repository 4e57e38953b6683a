/* config.h - the one settings table: environment, then flags, then the -F file, then -X
 * passthrough. */
#pragma once

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include <librdkafka/rdkafka.h>

/* Which programs read a setting; --help and -X dump show only their own. */
#define PAYQ_PROG_WORKER 0x1u
#define PAYQ_PROG_PRODUCER 0x2u
#define PAYQ_PROG_REPLAY 0x4u
#define PAYQ_PROG_ALL 0x7u

/* The most apply lanes (PAYQ_APPLY_LANES) a worker runs. */
#define PAYQ_LANES_MAX 8

typedef enum { PAYQ_CF_STR, PAYQ_CF_INT, PAYQ_CF_LOGLEVEL, PAYQ_CF_ENUM } payq_cf_type_t;

typedef struct payq_config {
	char *brokers;
	char *topic;
	char *dlq_topic;
	char *group;
	char *instance_id;
	char *http_addr;
	char *db;
	char *commit_mode;	 /* "async" (default) or "sync": sync commits after every batch */
	char *payment_mode;	 /* "ledger" (default) or "gateway" */
	char *gateway_url;	 /* gateway mode: the payment channel's base URL */
	char *gateway_ca_file;	 /* PEM CA bundle for the channel's certificate */
	char *gateway_cert_file; /* PEM client certificate, and */
	char *gateway_cert_key_file;  /* its private key */
	char *gateway_allow_insecure; /* "1": an http:// channel is allowed */
	char *reconcile;	      /* "auto" (on in gateway mode), "on" or "off" */
	char *reconcile_schedule;     /* delays between reconciliation attempts, "1m,5m,..." */
	char *gateway_key_retention;  /* how long the channel keeps idempotency keys, "24h" */
	int64_t batch_max;
	int64_t batch_wait_ms;
	int64_t apply_lanes; /* PAYQ_APPLY_LANES, 1..PAYQ_LANES_MAX */
	int64_t shutdown_timeout_ms;
	int64_t retry_max_ms;
	int64_t stats_interval_ms;
	int64_t log_level;
	int64_t gateway_timeout_ms;
	int64_t gateway_connect_timeout_ms;
	int64_t gateway_concurrency;
	int64_t reconcile_max_attempts;
	int64_t reconcile_interval_ms;
	char *kafka_config_file; /* -F FILE: librdkafka key=value lines, secrets included */
	char *gateway_api_key;	 /* gateway mode: sent as Authorization: Bearer */
	/* Bounds of every database session (common/pg.h); 0 turns one off. */
	int64_t db_statement_timeout_ms;
	int64_t db_lock_timeout_ms;
	int64_t db_idle_in_transaction_timeout_ms;
	int64_t db_connect_timeout_s;
	int64_t db_keepalives_idle_s;
	int64_t db_keepalives_interval_s;
	int64_t db_keepalives_count;
	int64_t db_tcp_user_timeout_ms;
	/* -X key=value pairs applied to every librdkafka client: first the xprops_file_cnt
	 * pairs of the -F file, in file order, then the -X pairs in the order given. */
	char **xprops;
	size_t xprops_cnt;
	size_t xprops_file_cnt;
} payq_config_t;

typedef struct payq_setting {
	const char *name; /* the flag is --name */
	const char *env;  /* PAYQ_* variable */
	payq_cf_type_t type;
	const char *def;     /* default as text; NULL means unset */
	size_t offset;	     /* field in payq_config_t */
	int64_t min, max;    /* PAYQ_CF_INT bounds */
	const char *choices; /* PAYQ_CF_ENUM: "a|b|c" */
	unsigned progs;
	const char *help;
} payq_setting_t;

typedef enum {
	PAYQ_ARGS_OK = 0,     /* continue: unknown arguments were left in argv */
	PAYQ_ARGS_EXIT = 1,   /* --help, --version, -X list or -X dump was served: exit 0 */
	PAYQ_ARGS_ERROR = -1, /* errstr names the problem: exit 2 */
} payq_args_result_t;

/* Fills cfg with the table's defaults. Free with payq_config_destroy(). */
void payq_config_init(payq_config_t *cfg);
void payq_config_destroy(payq_config_t *cfg);

/* Reads every PAYQ_* variable of this program's settings. A secret setting (PAYQ_DB,
 * PAYQ_GATEWAY_API_KEY) is read from the file named by its *_FILE variable when that is set
 * (payq_secret_file_value: a file others may read is refused); both set is an error.
 * Returns 0, or -1 with errstr naming the variable and the bad value (never a secret). */
int payq_config_load_env(payq_config_t *cfg, unsigned prog, char *errstr, size_t errstr_size);

/* Sets one setting from text, checking type and bounds. Returns 0 or -1. */
int payq_config_set(payq_config_t *cfg, const payq_setting_t *s, const char *value, char *errstr,
		    size_t errstr_size);

/* Returns the setting for a flag name (without dashes) or PAYQ_* variable, or NULL. */
const payq_setting_t *payq_config_find(const char *name, unsigned prog);

/* Adds one -X key=value after checking it with librdkafka, whose error text is copied
 * to errstr unchanged. Returns 0 or -1. */
int payq_config_add_x(payq_config_t *cfg, const char *kv, char *errstr, size_t errstr_size);

/* Consumes the common arguments from argv: --<setting> VALUE, --<setting>=VALUE,
 * -F FILE (--kafka-config-file), -X key=value, -X list, -X dump, --help and --version. The
 * rest stay in argv, in order, and *argc is updated. usage() prints the program's own part of
 * --help. Once every argument is read, the -F file's pairs are added before the -X pairs
 * (payq_config_load_kafka_file), the secrets of the settings are registered with the logger
 * (payq_log_add_secret), key files librdkafka is given are checked as secret files, and a
 * pair that would change a property prog's Kafka clients rely on is refused
 * (payq_kafka_check_x), before -X dump is served. */
payq_args_result_t payq_config_parse_args(payq_config_t *cfg, unsigned prog, const char *progname,
					  void (*usage)(FILE *fp), int *argc, char **argv,
					  char *errstr, size_t errstr_size);

/* Reads cfg->kafka_config_file (kcat's -F format: key=value lines, '#' comments and blank
 * lines; spaces around the line are ignored) as a secret file, and puts its pairs before the
 * -X pairs, each checked by librdkafka as -X is. Returns 0, or -1 with errstr naming the file
 * and line, never the value. */
int payq_config_load_kafka_file(payq_config_t *cfg, char *errstr, size_t errstr_size);

/* Where the i-th pair of cfg->xprops comes from, for messages: "-X" or the -F file's name. */
const char *payq_config_x_origin(const payq_config_t *cfg, size_t i);

/* Prints the settings of prog as a help table. */
void payq_config_print_help(FILE *fp, unsigned prog);

/* Prints the resolved settings, then each librdkafka client of prog as it really runs:
 * payq's properties, the -X overrides, and what librdkafka resolved (kafka_clients.h).
 * Secrets print as "***": the passwords of PAYQ_DB, the userinfo of PAYQ_GATEWAY_URL, the
 * gateway API key and librdkafka's passwords and keys (from -F as from -X). */
void payq_config_dump(const payq_config_t *cfg, unsigned prog, FILE *fp);

/* Applies the -X pairs to conf. Returns 0, or -1 with librdkafka's error text. */
int payq_config_apply_x(const payq_config_t *cfg, rd_kafka_conf_t *conf, char *errstr,
			size_t errstr_size);
