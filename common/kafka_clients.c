/* kafka_clients.c - each program's librdkafka clients: what payq sets, what -X may not
 * change, and -X dump. One table serves the clients, the -X check and the dump alike. */
#include "kafka_clients.h"

#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

#include "log.h"
#include "util.h"

/* Where a property's value comes from. */
typedef enum {
	V_FIXED,       /* prop_t.value */
	V_GROUP,       /* PAYQ_GROUP */
	V_INSTANCE_ID, /* PAYQ_INSTANCE_ID; unset when empty */
	V_STATS_MS,    /* PAYQ_STATS_INTERVAL_MS */
} vsrc_t;

typedef struct prop {
	const char *key;
	vsrc_t src;
	const char *value; /* V_FIXED; NULL: left unset (librdkafka's default) */
	bool check_only;   /* not set, only guarded: -X may give it this value (NULL: none).
			    * librdkafka's default is what payq needs, or the property is the
			    * legacy consumer's, and setting a deprecated one logs a warning. */
	const char *pin;   /* why -X may not change it; NULL: -X may */
} prop_t;

typedef struct client {
	const char *title; /* "the Kafka consumer of payq-worker" */
	unsigned prog;
	const prop_t *props;
} client_t;

#define OFFSET_RULE \
	"offsets are stored and committed only after the database COMMIT (the offset rule)"
#define NOT_TRANSACTIONAL "payq's producers are idempotent, not transactional"
#define IDEMPOTENT "retries must not duplicate or reorder a message"
#define ALL_ACKS "a message counts as written only once every in-sync replica has it"
#define MURMUR2 \
	"an order's commands must land in the partition murmur2 of its key gives (as the Java client)"

/* clang-format off */
static const prop_t worker_consumer[] = {
	{"client.id", V_FIXED, "payq-worker", false, NULL},
	{"group.id", V_GROUP, NULL, false,
	 "the group is PAYQ_GROUP (--group), which consumer_progress and the DLQ headers name"},
	{"group.instance.id", V_INSTANCE_ID, NULL, false,
	 "static membership is PAYQ_INSTANCE_ID (--instance-id)"},
	{"enable.auto.commit", V_FIXED, "false", false, OFFSET_RULE},
	{"enable.auto.offset.store", V_FIXED, "false", false, OFFSET_RULE},
	{"auto.commit.enable", V_FIXED, "false", true, OFFSET_RULE},
	{"offset.store.method", V_FIXED, "broker", true,
	 "the committed offsets must be the group's on the broker, which the check on assign reads"},
	{"auto.offset.reset", V_FIXED, "earliest", false,
	 "a partition without a committed offset must start at its first command, not skip any"},
	{"isolation.level", V_FIXED, "read_committed", false,
	 "a command from an aborted transaction must never be applied"},
	{"enable.partition.eof", V_FIXED, "false", false,
	 "the poll loop expects messages and errors only"},
	{"statistics.interval.ms", V_STATS_MS, NULL, false, NULL},
	/* The prefetch queue, sized by measurement (tests/bench, phase (h)). librdkafka 2.0.2
	 * stops fetching once the queue passes this size and looks again only when its
	 * broker thread wakes, up to a second later; worker/fetch_wake.c wakes it once the
	 * queue is half drained. With that, 2 MiB and 7 MiB drain at the same rate (without
	 * it, 7 MiB meant one queue a second: about 40k commands/s), and 4 MiB keeps half a
	 * queue, about 0.2 s of work, ahead of the refill. What else bounds the memory is the
	 * overshoot of one fetch past the threshold, up to max.partition.fetch.bytes per
	 * partition (1 MiB by default: 96 MiB RSS at 16 MiB): 64 KiB per partition and 1 MiB
	 * per fetch. The broker still returns a larger message whole. */
	{"queued.max.messages.kbytes", V_FIXED, "4096", false, NULL},
	{"max.partition.fetch.bytes", V_FIXED, "65536", false, NULL},
	{"fetch.max.bytes", V_FIXED, "1048576", false, NULL},
	{NULL, V_FIXED, NULL, false, NULL},
};

static const prop_t worker_dlq[] = {
	{"client.id", V_FIXED, "payq-worker-dlq", false, NULL},
	{"enable.idempotence", V_FIXED, "true", false, IDEMPOTENT},
	{"acks", V_FIXED, "all", false,
	 ALL_ACKS ", and the offset moves past a malformed message on its copy's report"},
	{"transactional.id", V_FIXED, NULL, true, NOT_TRANSACTIONAL},
	{"linger.ms", V_FIXED, "5", false, NULL},
	{"message.timeout.ms", V_FIXED, "30000", false, NULL},
	{NULL, V_FIXED, NULL, false, NULL},
};

/* What payq-producer and payq-replay's copies share: idempotent, and keyed as the Java client
 * keys, so that a copy lands where its original did. */
#define KEYED_PRODUCER \
	{"enable.idempotence", V_FIXED, "true", false, IDEMPOTENT}, \
	{"acks", V_FIXED, "all", false, ALL_ACKS}, \
	{"partitioner", V_FIXED, "murmur2_random", false, MURMUR2}, \
	{"transactional.id", V_FIXED, NULL, true, NOT_TRANSACTIONAL}, \
	{"linger.ms", V_FIXED, "5", false, NULL}, \
	{"compression.type", V_FIXED, "lz4", false, NULL}

static const prop_t producer[] = {
	{"client.id", V_FIXED, "payq-producer", false, NULL},
	KEYED_PRODUCER,
	{"message.timeout.ms", V_FIXED, "30000", false, NULL},
	{NULL, V_FIXED, NULL, false, NULL},
};

/* assign() needs a group.id, but this client never joins or commits. */
static const prop_t replay_reader[] = {
	{"client.id", V_FIXED, "payq-replay", false, NULL},
	{"group.id", V_FIXED, "payq-replay-reader", false,
	 "the reader only assigns partitions, and must never act as a worker group"},
	{"enable.auto.commit", V_FIXED, "false", false, "the reader never commits offsets"},
	{"enable.auto.offset.store", V_FIXED, "false", false, "the reader never commits offsets"},
	{"enable.partition.eof", V_FIXED, "true", false, "a range read ends at each partition's end"},
	{"auto.offset.reset", V_FIXED, "error", false,
	 "an offset past retention must fail the read, not move it elsewhere"},
	{"isolation.level", V_FIXED, "read_committed", false,
	 "a command from an aborted transaction must never be copied or audited as sent"},
	{NULL, V_FIXED, NULL, false, NULL},
};

static const prop_t replay_sink[] = {
	{"client.id", V_FIXED, "payq-replay", false, NULL},
	KEYED_PRODUCER,
	{NULL, V_FIXED, NULL, false, NULL},
};

static const client_t clients[PAYQ_KAFKA__CNT] = {
	[PAYQ_KAFKA_WORKER_CONSUMER] = {"the Kafka consumer of payq-worker", PAYQ_PROG_WORKER, worker_consumer},
	[PAYQ_KAFKA_WORKER_DLQ] = {"the Kafka producer (DLQ) of payq-worker", PAYQ_PROG_WORKER, worker_dlq},
	[PAYQ_KAFKA_PRODUCER] = {"the Kafka producer of payq-producer", PAYQ_PROG_PRODUCER, producer},
	[PAYQ_KAFKA_REPLAY_READER] = {"the Kafka reader of payq-replay", PAYQ_PROG_REPLAY, replay_reader},
	[PAYQ_KAFKA_REPLAY_SINK] = {"the Kafka producer of payq-replay", PAYQ_PROG_REPLAY, replay_sink},
};
/* clang-format on */

/* Returns the value payq gives p, or NULL when p stays at librdkafka's default. */
static const char *prop_value(const payq_config_t *cfg, const prop_t *p, char *buf, size_t size)
{
	switch (p->src) {
	case V_GROUP: return cfg->group;
	case V_INSTANCE_ID: return cfg->instance_id && *cfg->instance_id ? cfg->instance_id : NULL;
	case V_STATS_MS: snprintf(buf, size, "%" PRId64, cfg->stats_interval_ms); return buf;
	case V_FIXED: break;
	}
	return p->value;
}

/* Splits an -X pair into key (NUL-terminated in key[]) and value. Pairs were checked by
 * payq_config_add_x, so the '=' is there and the key fits. */
static const char *split_pair(const char *kv, char *key, size_t size)
{
	const char *eq = strchr(kv, '=');
	size_t len = eq ? (size_t)(eq - kv) : strlen(kv);

	if (len >= size)
		len = size - 1;
	memcpy(key, kv, len);
	key[len] = '\0';
	return eq ? eq + 1 : "";
}

void payq_kafka_log_cb(const rd_kafka_t *rk, int level, const char *fac, const char *buf)
{
	/* librdkafka uses syslog levels: 0-3 error, 4 warning, 5-6 info, 7 debug. */
	int lvl = level <= 3   ? PAYQ_LOG_ERROR
		  : level == 4 ? PAYQ_LOG_WARN
		  : level <= 6 ? PAYQ_LOG_INFO
			       : PAYQ_LOG_DEBUG;

	payq_log(lvl, NULL, "librdkafka %s %s: %s", rd_kafka_name(rk), fac, buf);
}

/* Sets bootstrap.servers and the client's own properties on conf. */
static int set_own(const payq_config_t *cfg, const client_t *c, rd_kafka_conf_t *conf, char *errstr,
		   size_t errstr_size)
{
	if (rd_kafka_conf_set(conf, "bootstrap.servers", cfg->brokers, errstr, errstr_size) !=
	    RD_KAFKA_CONF_OK)
		return -1;
	for (const prop_t *p = c->props; p->key; p++) {
		char buf[32];
		const char *v = prop_value(cfg, p, buf, sizeof(buf));

		if (!v || p->check_only)
			continue;
		if (rd_kafka_conf_set(conf, p->key, v, errstr, errstr_size) != RD_KAFKA_CONF_OK)
			return -1;
	}
	return 0;
}

rd_kafka_conf_t *payq_kafka_conf_new(const payq_config_t *cfg, payq_kafka_client_t client,
				     char *errstr, size_t errstr_size)
{
	rd_kafka_conf_t *conf = rd_kafka_conf_new();

	if ((unsigned)client >= PAYQ_KAFKA__CNT) {
		payq_err(errstr, errstr_size, "unknown Kafka client %d", (int)client);
		goto fail;
	}
	if (set_own(cfg, &clients[client], conf, errstr, errstr_size) ||
	    payq_config_apply_x(cfg, conf, errstr, errstr_size))
		goto fail;
	rd_kafka_conf_set_log_cb(conf, payq_kafka_log_cb);
	return conf;
fail:
	rd_kafka_conf_destroy(conf);
	return NULL;
}

/* Reads prop from conf as librdkafka holds it ("all" reads "-1"; unset reads ""). Returns
 * false when the value does not fit, which librdkafka reports by a larger *size. */
static bool conf_value(rd_kafka_conf_t *conf, const char *prop, char *buf, size_t size)
{
	size_t n = size;

	switch (rd_kafka_conf_get(conf, prop, buf, &n)) {
	case RD_KAFKA_CONF_OK: return n <= size;
	case RD_KAFKA_CONF_UNKNOWN: /* also what an unset string property reads as */
		buf[0] = '\0';
		return true;
	default: return false;
	}
}

/* True when setting key=value changes prop away from need (NULL: librdkafka's default).
 * Judged on a scratch conf, so an alias (auto.commit.enable for enable.auto.commit) or a
 * synonym (acks=-1 for all) is read as librdkafka reads it. A value that cannot be read
 * back counts as changed: the check fails closed. */
static bool changes(const char *prop, const char *need, const char *key, const char *value)
{
	/* Either value as set, or a short enum name or number as librdkafka reads it back. */
	size_t size = (need ? strlen(need) : 0) + strlen(value) + 64;
	char *before = malloc(size), *after = malloc(size), err[256];
	rd_kafka_conf_t *conf = rd_kafka_conf_new();
	bool changed = true;

	if (!before || !after)
		goto out;
	if (need)
		rd_kafka_conf_set(conf, prop, need, err, sizeof(err));
	if (!conf_value(conf, prop, before, size))
		goto out;
	rd_kafka_conf_set(conf, key, value, err, sizeof(err));
	changed = !conf_value(conf, prop, after, size) || strcmp(before, after) != 0;
out:
	rd_kafka_conf_destroy(conf);
	free(before);
	free(after);
	return changed;
}

int payq_kafka_check_x(const payq_config_t *cfg, unsigned prog, char *errstr, size_t errstr_size)
{
	for (size_t i = 0; i < cfg->xprops_cnt; i++) {
		char key[256];
		const char *value = split_pair(cfg->xprops[i], key, sizeof(key));

		for (size_t c = 0; c < PAYQ_KAFKA__CNT; c++) {
			if (!(clients[c].prog & prog))
				continue;
			for (const prop_t *p = clients[c].props; p->key; p++) {
				char buf[32];
				const char *need = prop_value(cfg, p, buf, sizeof(buf));

				if (!p->pin || !changes(p->key, need, key, value))
					continue;
				/* A pinned property is never a secret: the pair may be quoted. */
				return payq_err(errstr, errstr_size,
						"%s%s%s: refused: %s needs %s%s%s; %s",
						payq_config_x_origin(cfg, i),
						i < cfg->xprops_file_cnt ? ": " : " ",
						cfg->xprops[i], clients[c].title, p->key,
						need ? "=" : " unset", need ? need : "", p->pin);
			}
		}
	}
	return 0;
}

bool payq_kafka_secret_prop(const char *name)
{
	return strstr(name, "password") || strstr(name, "secret") || strstr(name, ".key.pem") ||
	       !strcmp(name, "ssl_key") || strstr(name, "sasl.oauthbearer.config");
}

/* Prints "key = value", the value masked when the property or a registered secret says so. */
static void put(FILE *fp, const char *key, const char *value)
{
	/* "***" for a one-byte secret is the most masking can grow a value. */
	size_t size = 3 * strlen(value) + 1;
	char *masked = malloc(size);

	if (payq_kafka_secret_prop(key) && *value) {
		fprintf(fp, "%s = ***\n", key);
	} else if (!masked) {
		fprintf(fp, "%s = (out of memory)\n", key);
	} else {
		payq_log_mask(value, masked, size);
		fprintf(fp, "%s = %s\n", key, masked);
	}
	free(masked);
}

static void put_dump(FILE *fp, const char **arr, size_t cnt)
{
	for (size_t i = 0; i + 1 < cnt; i += 2)
		if (!strstr(arr[i], "_cb") && strcmp(arr[i], "opaque"))
			put(fp, arr[i], arr[i + 1]);
}

static void dump_client(const payq_config_t *cfg, const client_t *c, payq_kafka_client_t id,
			FILE *fp)
{
	char errstr[512];
	rd_kafka_conf_t *conf;
	const char **arr;
	size_t cnt;

	fprintf(fp, "# %s: payq's defaults\n", c->title);
	put(fp, "bootstrap.servers", cfg->brokers);
	for (const prop_t *p = c->props; p->key; p++) {
		char buf[32];
		const char *v = prop_value(cfg, p, buf, sizeof(buf));

		if (v && !p->check_only)
			put(fp, p->key, v);
	}
	for (size_t i = 0; i < cfg->xprops_cnt; i++) {
		char key[256];
		const char *value = split_pair(cfg->xprops[i], key, sizeof(key));

		if (i == 0 && cfg->xprops_file_cnt)
			fprintf(fp, "# %s: from -F %s\n", c->title, cfg->kafka_config_file);
		if (i == cfg->xprops_file_cnt)
			fprintf(fp, "# %s: -X overrides\n", c->title);
		put(fp, key, value);
	}
	if (cfg->xprops_cnt == cfg->xprops_file_cnt)
		fprintf(fp, "# %s: -X overrides\n", c->title);
	fprintf(fp, "# %s: resolved librdkafka configuration\n", c->title);
	conf = payq_kafka_conf_new(cfg, id, errstr, sizeof(errstr));
	if (!conf) {
		char masked[sizeof(errstr)];

		payq_log_mask(errstr, masked, sizeof(masked));
		fprintf(fp, "# error: %s\n", masked);
		return;
	}
	arr = rd_kafka_conf_dump(conf, &cnt);
	put_dump(fp, arr, cnt);
	rd_kafka_conf_dump_free(arr, cnt);
	if (rd_kafka_conf_get_default_topic_conf(conf)) {
		arr = rd_kafka_topic_conf_dump(rd_kafka_conf_get_default_topic_conf(conf), &cnt);
		put_dump(fp, arr, cnt);
		rd_kafka_conf_dump_free(arr, cnt);
	}
	rd_kafka_conf_destroy(conf);
}

void payq_kafka_dump(const payq_config_t *cfg, unsigned prog, FILE *fp)
{
	for (size_t c = 0; c < PAYQ_KAFKA__CNT; c++)
		if (clients[c].prog & prog)
			dump_client(cfg, &clients[c], (payq_kafka_client_t)c, fp);
}
