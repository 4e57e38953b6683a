/* devbroker.c - payq-devbroker: librdkafka's mock cluster on loopback, for the demo and the
 * fault-injection tests (through the optional --control channel). */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <librdkafka/rdkafka.h>
#include <librdkafka/rdkafka_mock.h>

#include "signals.h"
#include "util.h"

static volatile sig_atomic_t run = 1;

static void usage(FILE *fp)
{
	fprintf(fp,
		"Usage: payq-devbroker [--brokers N] [--partitions N] [--topic NAME]...\n"
		"                      [--control FIFO|-]\n"
		"\n"
		"Serves librdkafka's built-in mock Kafka cluster on loopback ports, creates the\n"
		"topics (default payq.commands and payq.commands.dlq) with N partitions each\n"
		"(default 12) replicated on every broker (default 1 broker, ids 1..N), prints the\n"
		"bootstrap servers as the first line on stdout and runs until SIGTERM or SIGINT.\n"
		"It keeps data in memory only. It is the demo's default broker and the fault\n"
		"tests' broker; it is not a substitute for the real-broker tests.\n"
		"\n"
		"--control FIFO|-  read fault-injection commands, one per line, from a FIFO\n"
		"                  (created when missing) or from stdin (-). Each command is\n"
		"                  answered by one line on stdout: \"ok\" (\"ok N\" for stack) or\n"
		"                  \"error: MESSAGE\". Without --control nothing is read.\n"
		"\n"
		"Commands (API is a Kafka API key name such as OffsetCommit or its number; ERR\n"
		"is a librdkafka error name such as REBALANCE_IN_PROGRESS, _TRANSPORT or\n"
		"RD_KAFKA_RESP_ERR_NOT_COORDINATOR, or its number; a single ERR is repeated\n"
		"COUNT times, otherwise there must be COUNT of them):\n"
		"  errors API COUNT ERR...            the next COUNT requests of API, on any\n"
		"                                     broker, fail with ERR (in order)\n"
		"  rtt_errors BROKER API COUNT ERR:MS...\n"
		"                                     the next COUNT requests of API on BROKER\n"
		"                                     are answered after MS ms with ERR\n"
		"                                     (NO_ERROR or 0 for a slow success)\n"
		"  stack BROKER API                   pending rtt_errors of API on BROKER\n"
		"  clear API                          drop pending errors of API (cluster-wide)\n"
		"  broker down|up ID                  disconnect a broker and refuse connections,\n"
		"                                     or accept them again (-1: every broker);\n"
		"                                     leaders do not move. While a broker is down\n"
		"                                     its port stays bound (not listening), so no\n"
		"                                     other program can take it meanwhile\n"
		"  leader TOPIC PARTITION BROKER      move a partition's leader\n"
		"  coordinator group|transaction KEY BROKER\n"
		"                                     move a group's (transactional id's)\n"
		"                                     coordinator\n"
		"  rtt BROKER MS                      delay every response of BROKER (-1: all)\n"
		"  topic_error TOPIC ERR              return ERR for TOPIC in metadata\n"
		"  ping                               answer ok\n"
		"\n"
		"Exit codes: 0 stopped by a signal, 1 cluster error, 2 usage error.\n");
}

/* Kafka protocol API keys by name, for the control commands. */
static const char *const api_names[] = {
	"Produce",
	"Fetch",
	"ListOffsets",
	"Metadata",
	"LeaderAndIsr",
	"StopReplica",
	"UpdateMetadata",
	"ControlledShutdown",
	"OffsetCommit",
	"OffsetFetch",
	"FindCoordinator",
	"JoinGroup",
	"Heartbeat",
	"LeaveGroup",
	"SyncGroup",
	"DescribeGroups",
	"ListGroups",
	"SaslHandshake",
	"ApiVersions",
	"CreateTopics",
	"DeleteTopics",
	"DeleteRecords",
	"InitProducerId",
	"OffsetForLeaderEpoch",
	"AddPartitionsToTxn",
	"AddOffsetsToTxn",
	"EndTxn",
	"WriteTxnMarkers",
	"TxnOffsetCommit",
	"DescribeAcls",
	"CreateAcls",
	"DeleteAcls",
	"DescribeConfigs",
	"AlterConfigs",
	"AlterReplicaLogDirs",
	"DescribeLogDirs",
	"SaslAuthenticate",
	"CreatePartitions",
	"CreateDelegationToken",
	"RenewDelegationToken",
	"ExpireDelegationToken",
	"DescribeDelegationToken",
	"DeleteGroups",
	"ElectLeaders",
	"IncrementalAlterConfigs",
	"AlterPartitionReassignments",
	"ListPartitionReassignments",
	"OffsetDelete",
};

static int parse_api(const char *s, int16_t *out)
{
	int64_t v;

	for (size_t i = 0; i < PAYQ_ARRAY_SIZE(api_names); i++) {
		if (!strcasecmp(s, api_names[i])) {
			*out = (int16_t)i;
			return 0;
		}
	}
	if (payq_parse_int64(s, 0, 32767, &v))
		return -1;
	*out = (int16_t)v;
	return 0;
}

/* Accepts librdkafka's error names (REQUEST_TIMED_OUT, _TRANSPORT), with or without the
 * RD_KAFKA_RESP_ERR_ prefix, case-insensitively, or a number. */
static int parse_err(const char *s, rd_kafka_resp_err_t *out)
{
	const struct rd_kafka_err_desc *descs;
	size_t cnt;
	int64_t v;

	if (!strncasecmp(s, "RD_KAFKA_RESP_ERR_", 18))
		s += 18;
	if (!strcasecmp(s, "NO_ERROR")) {
		*out = RD_KAFKA_RESP_ERR_NO_ERROR;
		return 0;
	}
	rd_kafka_get_err_descs(&descs, &cnt);
	for (size_t i = 0; i < cnt; i++) {
		if (descs[i].name && !strcasecmp(s, descs[i].name)) {
			*out = descs[i].code;
			return 0;
		}
	}
	if (payq_parse_int64(s, -200, 32767, &v))
		return -1;
	*out = (rd_kafka_resp_err_t)v;
	return 0;
}

static int parse_i32(const char *s, int32_t min, int32_t max, int32_t *out)
{
	int64_t v;

	if (payq_parse_int64(s, min, max, &v))
		return -1;
	*out = (int32_t)v;
	return 0;
}

/* ---- holding the ports of down brokers ----
 *
 * librdkafka 2.0.2's mock closes a broker's listening socket on set_down and binds the
 * same port again on set_up. Meanwhile any program on the machine could get that port
 * (another mock cluster, an outgoing connection) and clients would then reach the wrong
 * server. So while a broker is down, a socket of ours keeps the port bound, without
 * listening: connections are refused, as from a down broker. */

#define MAX_BROKERS 16

static int broker_port[MAX_BROKERS + 1]; /* by broker id, from the bootstrap list */
static int held_fd[MAX_BROKERS + 1];

static void ports_init(const char *bootstraps)
{
	const char *p = bootstraps;

	for (int id = 1; id <= MAX_BROKERS && p && *p; id++) {
		const char *colon = strchr(p, ':'), *comma = strchr(p, ',');
		if (colon && (!comma || colon < comma))
			broker_port[id] = atoi(colon + 1);
		p = comma ? comma + 1 : NULL;
	}
	for (int id = 0; id <= MAX_BROKERS; id++)
		held_fd[id] = -1;
}

static void port_hold(int id)
{
	struct sockaddr_in sin;
	int fd, on = 1;

	if (id < 1 || id > MAX_BROKERS || !broker_port[id] || held_fd[id] >= 0)
		return;
	fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return;
	setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &on, sizeof(on));
	memset(&sin, 0, sizeof(sin));
	sin.sin_family = AF_INET;
	sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	sin.sin_port = htons((uint16_t)broker_port[id]);
	if (bind(fd, (struct sockaddr *)&sin, sizeof(sin))) {
		fprintf(stderr, "payq-devbroker: could not hold the port %d of broker %d: %s\n",
			broker_port[id], id, strerror(errno));
		close(fd);
		return;
	}
	held_fd[id] = fd;
}

static void port_release(int id)
{
	if (id < 1 || id > MAX_BROKERS || held_fd[id] < 0)
		return;
	close(held_fd[id]);
	held_fd[id] = -1;
}

/* Applies fn to one broker id, or to every one for -1. */
static void each_broker(int32_t id, void (*fn)(int))
{
	for (int i = 1; i <= MAX_BROKERS; i++)
		if (id == -1 || id == i)
			fn(i);
}

/* ---- the control channel ---- */

#define MAX_ARGS 1024

static void reply(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

static void reply(const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vprintf(fmt, ap);
	va_end(ap);
	putchar('\n');
	fflush(stdout);
}

static int fail(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

static int fail(const char *fmt, ...)
{
	va_list ap;

	fputs("error: ", stdout);
	va_start(ap, fmt);
	vprintf(fmt, ap);
	va_end(ap);
	putchar('\n');
	fflush(stdout);
	return -1;
}

/* Reports the result of a mock call. */
static int done(rd_kafka_resp_err_t err)
{
	if (err)
		return fail("%s", rd_kafka_err2str(err));
	reply("ok");
	return 0;
}

/* COUNT followed by one ERR (repeated) or COUNT of them; rtts gets the :MS parts when
 * not NULL. Returns the count, or -1 after replying with the error. */
static int parse_errs(char **av, int ac, rd_kafka_resp_err_t *errs, int *rtts)
{
	int32_t count;

	if (ac < 2)
		return fail("expected COUNT and at least one error");
	if (parse_i32(av[0], 1, MAX_ARGS, &count))
		return fail("COUNT \"%s\" is not 1..%d", av[0], MAX_ARGS);
	if (ac - 1 != 1 && ac - 1 != count)
		return fail("COUNT is %d but %d errors were given", count, ac - 1);
	for (int i = 0; i < ac - 1; i++) {
		char *spec = av[i + 1], *colon = strchr(spec, ':');
		int32_t ms = 0;

		if (rtts && !colon)
			return fail("\"%s\": expected ERR:MS", spec);
		if (colon) {
			if (!rtts)
				return fail("\"%s\": no :MS here (see rtt_errors)", spec);
			*colon = '\0';
			if (parse_i32(colon + 1, 0, 3600000, &ms))
				return fail("\"%s\": MS is not 0..3600000", colon + 1);
		}
		if (parse_err(spec, &errs[i]))
			return fail("unknown error \"%s\"", spec);
		if (rtts)
			rtts[i] = ms;
	}
	for (int i = ac - 1; i < count; i++) {
		errs[i] = errs[0];
		if (rtts)
			rtts[i] = rtts[0];
	}
	return count;
}

/* Runs one line of the control channel and replies "ok ..." or "error ...". It is long on
 * purpose: one short branch per control command, each checking its own arguments, in the
 * order --help lists them; each branch is one rdkafka_mock call. */
static int command(rd_kafka_mock_cluster_t *mc, char *line)
{
	static rd_kafka_resp_err_t errs[MAX_ARGS];
	static int rtts[MAX_ARGS];
	char *av[MAX_ARGS + 8], *save = NULL, *tok;
	int ac = 0, count;
	int16_t api;
	int32_t broker, partition, ms;

	for (tok = strtok_r(line, " \t\r", &save); tok && ac < (int)PAYQ_ARRAY_SIZE(av);
	     tok = strtok_r(NULL, " \t\r", &save))
		av[ac++] = tok;
	if (!ac || av[0][0] == '#')
		return 0; /* blank lines and comments get no reply */

	if (!strcmp(av[0], "ping") && ac == 1) {
		reply("ok");
		return 0;
	}
	if (!strcmp(av[0], "errors")) {
		if (ac < 4 || parse_api(av[1], &api))
			return fail("usage: errors API COUNT ERR...");
		count = parse_errs(av + 2, ac - 2, errs, NULL);
		if (count < 0)
			return -1;
		rd_kafka_mock_push_request_errors_array(mc, api, (size_t)count, errs);
		reply("ok");
		return 0;
	}
	if (!strcmp(av[0], "rtt_errors")) {
		if (ac < 5 || parse_i32(av[1], -1, 1 << 30, &broker) || parse_api(av[2], &api))
			return fail("usage: rtt_errors BROKER API COUNT ERR:MS...");
		count = parse_errs(av + 3, ac - 3, errs, rtts);
		if (count < 0)
			return -1;
		/* One tuple per call: each push appends to the broker's stack, in order. */
		for (int i = 0; i < count; i++) {
			rd_kafka_resp_err_t err = rd_kafka_mock_broker_push_request_error_rtts(
				mc, broker, api, 1, errs[i], rtts[i]);
			if (err)
				return fail("broker %d: %s", broker, rd_kafka_err2str(err));
		}
		reply("ok");
		return 0;
	}
	if (!strcmp(av[0], "stack")) {
		size_t cnt = 0;
		rd_kafka_resp_err_t err;

		if (ac != 3 || parse_i32(av[1], 0, 1 << 30, &broker) || parse_api(av[2], &api))
			return fail("usage: stack BROKER API");
		err = rd_kafka_mock_broker_error_stack_cnt(mc, broker, api, &cnt);
		if (err)
			return fail("%s", rd_kafka_err2str(err));
		reply("ok %zu", cnt);
		return 0;
	}
	if (!strcmp(av[0], "clear")) {
		if (ac != 2 || parse_api(av[1], &api))
			return fail("usage: clear API");
		rd_kafka_mock_clear_request_errors(mc, api);
		reply("ok");
		return 0;
	}
	if (!strcmp(av[0], "broker")) {
		if (ac != 3 || (strcmp(av[1], "down") && strcmp(av[1], "up")) ||
		    parse_i32(av[2], -1, 1 << 30, &broker))
			return fail("usage: broker down|up ID");
		if (!strcmp(av[1], "down")) {
			rd_kafka_resp_err_t err = rd_kafka_mock_broker_set_down(mc, broker);
			if (!err)
				each_broker(broker, port_hold);
			return done(err);
		}
		each_broker(broker, port_release);
		return done(rd_kafka_mock_broker_set_up(mc, broker));
	}
	if (!strcmp(av[0], "leader")) {
		if (ac != 4 || parse_i32(av[2], 0, 1 << 30, &partition) ||
		    parse_i32(av[3], -1, 1 << 30, &broker))
			return fail("usage: leader TOPIC PARTITION BROKER");
		return done(rd_kafka_mock_partition_set_leader(mc, av[1], partition, broker));
	}
	if (!strcmp(av[0], "coordinator")) {
		if (ac != 4 || (strcmp(av[1], "group") && strcmp(av[1], "transaction")) ||
		    parse_i32(av[3], -1, 1 << 30, &broker))
			return fail("usage: coordinator group|transaction KEY BROKER");
		return done(rd_kafka_mock_coordinator_set(mc, av[1], av[2], broker));
	}
	if (!strcmp(av[0], "rtt")) {
		if (ac != 3 || parse_i32(av[1], -1, 1 << 30, &broker) ||
		    parse_i32(av[2], 0, 3600000, &ms))
			return fail("usage: rtt BROKER MS");
		return done(rd_kafka_mock_broker_set_rtt(mc, broker, ms));
	}
	if (!strcmp(av[0], "topic_error")) {
		rd_kafka_resp_err_t err;

		if (ac != 3 || parse_err(av[2], &err))
			return fail("usage: topic_error TOPIC ERR");
		rd_kafka_mock_topic_set_error(mc, av[1], err);
		reply("ok");
		return 0;
	}
	return fail("unknown command \"%s\" (see --help)", av[0]);
}

/* Line buffer for the control channel. */
typedef struct control {
	int fd;
	char buf[65536];
	size_t len;
} control_t;

static int control_open(control_t *c, const char *path)
{
	struct stat st;

	c->len = 0;
	if (!strcmp(path, "-")) {
		c->fd = STDIN_FILENO;
		return 0;
	}
	if (stat(path, &st)) {
		if (errno != ENOENT || mkfifo(path, 0600)) {
			fprintf(stderr, "payq-devbroker: --control %s: %s\n", path,
				strerror(errno));
			return -1;
		}
	} else if (!S_ISFIFO(st.st_mode)) {
		fprintf(stderr, "payq-devbroker: --control %s: not a FIFO\n", path);
		return -1;
	}
	/* Read-write, so that the FIFO never reports end of file between writers. */
	c->fd = open(path, O_RDWR | O_CLOEXEC);
	if (c->fd < 0) {
		fprintf(stderr, "payq-devbroker: --control %s: %s\n", path, strerror(errno));
		return -1;
	}
	return 0;
}

/* Reads what is available and runs every complete line. Returns -1 at end of file. */
static int control_read(control_t *c, rd_kafka_mock_cluster_t *mc)
{
	ssize_t n = read(c->fd, c->buf + c->len, sizeof(c->buf) - 1 - c->len);
	char *start, *nl;

	if (n < 0)
		return errno == EINTR || errno == EAGAIN ? 0 : -1;
	if (n == 0) {
		if (c->len) { /* a last line without its newline */
			c->buf[c->len] = '\0';
			command(mc, c->buf);
			c->len = 0;
		}
		return -1;
	}
	c->len += (size_t)n;
	c->buf[c->len] = '\0';
	start = c->buf;
	while ((nl = strchr(start, '\n'))) {
		*nl = '\0';
		command(mc, start);
		start = nl + 1;
	}
	c->len -= (size_t)(start - c->buf);
	memmove(c->buf, start, c->len);
	if (c->len == sizeof(c->buf) - 1) {
		fail("line too long");
		c->len = 0;
	}
	return 0;
}

/* What the command line asked for. */
typedef struct options {
	const char *topics[16];
	int ntopics;
	int64_t brokers, partitions;
	const char *control_path;
} options_t;

/* Parses argv into o. Returns -1 to go on, or the exit code (0 after --help). */
static int parse_args(int argc, char **argv, options_t *o)
{
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
			if (payq_parse_int64(v, 1, MAX_BROKERS, &o->brokers)) {
				fprintf(stderr, "payq-devbroker: --brokers: \"%s\" is not 1..16\n",
					v);
				return 2;
			}
			i++;
		} else if (!strcmp(a, "--partitions") && v) {
			if (payq_parse_int64(v, 1, 1000, &o->partitions)) {
				fprintf(stderr,
					"payq-devbroker: --partitions: \"%s\" is not 1..1000\n", v);
				return 2;
			}
			i++;
		} else if (!strcmp(a, "--topic") && v) {
			if (o->ntopics == (int)PAYQ_ARRAY_SIZE(o->topics)) {
				fprintf(stderr, "payq-devbroker: too many --topic\n");
				return 2;
			}
			o->topics[o->ntopics++] = v;
			i++;
		} else if (!strcmp(a, "--control") && v) {
			o->control_path = v;
			i++;
		} else {
			fprintf(stderr, "payq-devbroker: unknown or incomplete argument \"%s\"\n",
				a);
			usage(stderr);
			return 2;
		}
	}
	if (!o->ntopics) {
		o->topics[o->ntopics++] = "payq.commands";
		o->topics[o->ntopics++] = "payq.commands.dlq";
	}
	return -1;
}

int main(int argc, char **argv)
{
	options_t o = {.brokers = 1, .partitions = 12};
	char errstr[512];
	rd_kafka_conf_t *conf;
	rd_kafka_t *rk;
	rd_kafka_mock_cluster_t *mc;
	control_t control = {.fd = -1};
	int rc = parse_args(argc, argv, &o);

	if (rc >= 0)
		return rc;
	if (o.control_path && control_open(&control, o.control_path))
		return 2;

	/* The mock cluster lives inside a client handle; a producer is the lightest. */
	conf = rd_kafka_conf_new();
	rd_kafka_conf_set(conf, "log_level", "3", NULL, 0);
	rk = rd_kafka_new(RD_KAFKA_PRODUCER, conf, errstr, sizeof(errstr));
	if (!rk) {
		fprintf(stderr, "payq-devbroker: %s\n", errstr);
		return 1;
	}
	mc = rd_kafka_mock_cluster_new(rk, (int)o.brokers);
	if (!mc) {
		fprintf(stderr, "payq-devbroker: could not create the mock cluster\n");
		rd_kafka_destroy(rk);
		return 1;
	}
	for (int i = 0; i < o.ntopics; i++) {
		rd_kafka_resp_err_t err = rd_kafka_mock_topic_create(
			mc, o.topics[i], (int)o.partitions, (int)o.brokers);
		if (err) {
			fprintf(stderr, "payq-devbroker: topic %s: %s\n", o.topics[i],
				rd_kafka_err2str(err));
			rd_kafka_mock_cluster_destroy(mc);
			rd_kafka_destroy(rk);
			return 1;
		}
	}

	payq_signals_install(&run);
	ports_init(rd_kafka_mock_cluster_bootstraps(mc));
	printf("%s\n", rd_kafka_mock_cluster_bootstraps(mc));
	fflush(stdout);
	while (run) {
		if (control.fd >= 0) {
			struct pollfd pfd = {.fd = control.fd, .events = POLLIN};
			int r = poll(&pfd, 1, 100);

			if (r > 0 && control_read(&control, mc)) {
				/* End of stdin: stop reading, keep serving. */
				if (control.fd != STDIN_FILENO)
					close(control.fd);
				control.fd = -1;
			}
		} else {
			usleep(100 * 1000);
		}
	}

	if (control.fd >= 0 && control.fd != STDIN_FILENO)
		close(control.fd);
	each_broker(-1, port_release);
	rd_kafka_mock_cluster_destroy(mc);
	rd_kafka_destroy(rk);
	return 0;
}
