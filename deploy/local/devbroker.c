/* devbroker.c - payq-devbroker: librdkafka's mock cluster on loopback, for the demo. */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <librdkafka/rdkafka.h>
#include <librdkafka/rdkafka_mock.h>

#include "util.h"

static volatile sig_atomic_t run = 1;

static void stop(int sig)
{
	(void)sig;
	run = 0;
}

static void usage(FILE *fp)
{
	fprintf(fp,
		"Usage: payq-devbroker [--brokers N] [--partitions N] [--topic NAME]...\n"
		"\n"
		"Serves librdkafka's built-in mock Kafka cluster on loopback ports, creates the\n"
		"topics (default payq.commands and payq.commands.dlq), prints the bootstrap\n"
		"servers on stdout and runs until SIGTERM or SIGINT. It keeps data in memory\n"
		"only. It is the demo's default broker; tests use a real Apache Kafka broker.\n"
		"\n"
		"Exit codes: 0 stopped by a signal, 1 cluster error, 2 usage error.\n");
}

int main(int argc, char **argv)
{
	const char *topics[16];
	int ntopics = 0;
	int64_t brokers = 1, partitions = 12;
	char errstr[512];
	rd_kafka_conf_t *conf;
	rd_kafka_t *rk;
	rd_kafka_mock_cluster_t *mc;

	for (int i = 1; i < argc; i++) {
		const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;

		if (!strcmp(a, "--help") || !strcmp(a, "-h")) {
			usage(stdout);
			return 0;
		} else if (!strcmp(a, "--version")) {
			printf("payq-devbroker %s (librdkafka %s)\n", PAYQ_VERSION,
			       rd_kafka_version_str());
			return 0;
		} else if (!strcmp(a, "--brokers") && v) {
			if (payq_parse_int64(v, 1, 16, &brokers)) {
				fprintf(stderr, "payq-devbroker: --brokers: \"%s\" is not 1..16\n", v);
				return 2;
			}
			i++;
		} else if (!strcmp(a, "--partitions") && v) {
			if (payq_parse_int64(v, 1, 1000, &partitions)) {
				fprintf(stderr, "payq-devbroker: --partitions: \"%s\" is not 1..1000\n",
					v);
				return 2;
			}
			i++;
		} else if (!strcmp(a, "--topic") && v) {
			if (ntopics == (int)PAYQ_ARRAY_SIZE(topics)) {
				fprintf(stderr, "payq-devbroker: too many --topic\n");
				return 2;
			}
			topics[ntopics++] = v;
			i++;
		} else {
			fprintf(stderr, "payq-devbroker: unknown or incomplete argument \"%s\"\n", a);
			usage(stderr);
			return 2;
		}
	}
	if (!ntopics) {
		topics[ntopics++] = "payq.commands";
		topics[ntopics++] = "payq.commands.dlq";
	}

	/* The mock cluster lives inside a client handle; a producer is the lightest. */
	conf = rd_kafka_conf_new();
	rd_kafka_conf_set(conf, "log_level", "3", NULL, 0);
	rk = rd_kafka_new(RD_KAFKA_PRODUCER, conf, errstr, sizeof(errstr));
	if (!rk) {
		fprintf(stderr, "payq-devbroker: %s\n", errstr);
		return 1;
	}
	mc = rd_kafka_mock_cluster_new(rk, (int)brokers);
	if (!mc) {
		fprintf(stderr, "payq-devbroker: could not create the mock cluster\n");
		rd_kafka_destroy(rk);
		return 1;
	}
	for (int i = 0; i < ntopics; i++) {
		rd_kafka_resp_err_t err = rd_kafka_mock_topic_create(mc, topics[i], (int)partitions,
								     (int)brokers);
		if (err) {
			fprintf(stderr, "payq-devbroker: topic %s: %s\n", topics[i],
				rd_kafka_err2str(err));
			rd_kafka_mock_cluster_destroy(mc);
			rd_kafka_destroy(rk);
			return 1;
		}
	}

	signal(SIGINT, stop);
	signal(SIGTERM, stop);
	printf("%s\n", rd_kafka_mock_cluster_bootstraps(mc));
	fflush(stdout);
	while (run)
		usleep(100 * 1000);

	rd_kafka_mock_cluster_destroy(mc);
	rd_kafka_destroy(rk);
	return 0;
}
