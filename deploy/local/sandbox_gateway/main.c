/* main.c - payq-sandbox-gateway: a card processor test double with idempotency keys, status
 * queries, declines, switchable faults and a ledger of real charges. This file holds the
 * command line (--help, the options table, the credential files), the port file and main():
 * start both listeners, wait for SIGINT or SIGTERM, stop. */
#include <arpa/inet.h>
#include <errno.h>
#include <inttypes.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <microhttpd.h>

#include "control.h"
#include "http.h"
#include "payments.h"
#include "server.h"
#include "signals.h"
#include "state.h"
#include "util.h"

#define FILE_MAX (1024 * 1024) /* --tls-cert, --tls-key, --api-key-file */

static volatile sig_atomic_t run = 1;

static void usage(FILE *fp)
{
	fprintf(fp,
		"Usage: payq-sandbox-gateway [--listen HOST:PORT] [--control HOST:PORT]\n"
		"         [--port-file FILE] [--latency-ms N] [--jitter-ms N] [--error-rate P]\n"
		"         [--drop-rate P] [--decline-suffix NN] [--decline-payer PREFIX] [--seed S]\n"
		"         [--request-log FILE] [--tls-cert FILE --tls-key FILE]\n"
		"         [--tls-client-ca FILE] [--api-key-file FILE]\n"
		"\n"
		"A card processor for the tests and the demo. It keeps every idempotency key in\n"
		"memory, repeats the first answer to a repeated request, declines some charges and\n"
		"injects faults on request. Runs until SIGTERM or SIGINT.\n"
		"\n"
		"  --listen HOST:PORT      payments API (default 127.0.0.1:0, a free port)\n"
		"  --control HOST:PORT     control API, never faulty (default 127.0.0.1:0)\n"
		"  --port-file FILE        write \"API_PORT CONTROL_PORT\" there once listening\n"
		"  --latency-ms N          delay of each payments request (default 0), plus\n"
		"  --jitter-ms N           a uniform 0..N ms (default 0)\n"
		"  --error-rate P          share of payments requests answered 503 (default 0)\n"
		"  --drop-rate P           share of charges whose answer is lost (default 0)\n"
		"  --decline-suffix NN     decline amounts ending in NN, insufficient_funds\n"
		"                          (default 13; -1: never)\n"
		"  --decline-payer PREFIX  decline payer ids starting with PREFIX, card_declined\n"
		"                          (default \"declined-\"; \"\": never)\n"
		"  --seed S                seed of the fault dice (default: from the clock)\n"
		"  --request-log FILE      append one JSON line per payments request: method, path,\n"
		"                          idempotency_key, traceparent, tracestate\n"
		"  --tls-cert FILE         PEM certificate (chain) of the payments API, which then\n"
		"  --tls-key FILE          speaks HTTPS only, with this PEM private key\n"
		"  --tls-client-ca FILE    with --tls-cert: a payments request needs a client\n"
		"                          certificate this PEM CA signed; else 403\n"
		"  --api-key-file FILE     every payments request needs \"Authorization: Bearer\n"
		"                          KEY\", KEY being this file's one line; else 401\n"
		"\n"
		"Payments API: POST /charges, GET /charges/KEY. Control API: GET /healthz,\n"
		"GET|POST /faults (latency_ms, jitter_ms, error_rate, drop_rate, down; lie: answers\n"
		"name another amount, currency or key; bad_text: decline and error texts are not\n"
		"valid UTF-8), GET /ledger, GET /ledger.csv, GET /stats, POST /reset (forgets keys,\n"
		"charges and counters), POST /forget (forgets the keys only, as after a channel's\n"
		"key retention: the same key then charges again).\n"
		"amount_minor must be a plain decimal integer (1e+15 is refused with 400).\n"
		"The control API is always plaintext and open: bind it to loopback.\n"
		"\n"
		"Exit codes: 0 stopped by a signal, 1 runtime error, 2 usage error.\n");
}

typedef enum { OPT_STRING, OPT_INT, OPT_RATE } opt_type_t;

static const char *listen_arg = "127.0.0.1:0", *control_arg = "127.0.0.1:0", *port_file;
static const char *request_log_arg, *tls_cert_arg, *tls_key_arg, *tls_client_ca_arg;
static const char *api_key_arg;
static int64_t seed = -1;

static const struct option_def {
	const char *name;
	opt_type_t type;
	void *dst;
	int64_t min, max;
} options[] = {
	{"--listen", OPT_STRING, &listen_arg, 0, 0},
	{"--control", OPT_STRING, &control_arg, 0, 0},
	{"--port-file", OPT_STRING, &port_file, 0, 0},
	{"--latency-ms", OPT_INT, &st.latency_ms, 0, DELAY_MAX_MS},
	{"--jitter-ms", OPT_INT, &st.jitter_ms, 0, DELAY_MAX_MS},
	{"--error-rate", OPT_RATE, &st.error_rate, 0, 0},
	{"--drop-rate", OPT_RATE, &st.drop_rate, 0, 0},
	{"--decline-suffix", OPT_INT, &st.decline_suffix, -1, 99},
	{"--decline-payer", OPT_STRING, &st.decline_payer, 0, 0},
	{"--seed", OPT_INT, &seed, 0, INT64_MAX},
	{"--request-log", OPT_STRING, &request_log_arg, 0, 0},
	{"--tls-cert", OPT_STRING, &tls_cert_arg, 0, 0},
	{"--tls-key", OPT_STRING, &tls_key_arg, 0, 0},
	{"--tls-client-ca", OPT_STRING, &tls_client_ca_arg, 0, 0},
	{"--api-key-file", OPT_STRING, &api_key_arg, 0, 0},
};

/* Stores one option value. Returns 0, or -1 after saying what is wrong. */
static int set_option(const struct option_def *o, const char *v)
{
	char *end;
	double d;

	if (o->type == OPT_STRING) {
		*(const char **)o->dst = v;
		return 0;
	}
	if (o->type == OPT_INT) {
		if (!payq_parse_int64(v, o->min, o->max, o->dst))
			return 0;
		fprintf(stderr, PROG ": %s: \"%s\" is not an integer %" PRId64 "..%" PRId64 "\n",
			o->name, v, o->min, o->max);
		return -1;
	}
	errno = 0;
	d = strtod(v, &end);
	if (!errno && end != v && !*end && d >= 0 && d <= 1) {
		*(double *)o->dst = d;
		return 0;
	}
	fprintf(stderr, PROG ": %s: \"%s\" is not a number 0..1\n", o->name, v);
	return -1;
}

/* Returns -1 to go on, or the exit code. */
static int parse_args(int argc, char **argv)
{
	for (int i = 1; i < argc; i++) {
		const struct option_def *o = NULL;

		if (!strcmp(argv[i], "--help") || !strcmp(argv[i], "-h")) {
			usage(stdout);
			return 0;
		}
		if (!strcmp(argv[i], "--version")) {
			printf(PROG " %s (libmicrohttpd %s)\n", PAYQ_VERSION, MHD_get_version());
			return 0;
		}
		for (size_t j = 0; j < PAYQ_ARRAY_SIZE(options); j++)
			if (!strcmp(argv[i], options[j].name))
				o = &options[j];
		if (!o) {
			fprintf(stderr, PROG ": unknown argument \"%s\" (see --help)\n", argv[i]);
			return 2;
		}
		if (i + 1 == argc) {
			fprintf(stderr, PROG ": %s needs a value (see --help)\n", argv[i]);
			return 2;
		}
		if (set_option(o, argv[++i]))
			return 2;
	}
	return -1;
}

/* Reads a whole file (at most FILE_MAX bytes) as a NUL-terminated string. Returns it,
 * or NULL after saying what is wrong (never quoting the content). */
static char *slurp(const char *opt, const char *path)
{
	FILE *fp = fopen(path, "r");
	char *buf = NULL;
	size_t len = 0;

	if (!fp) {
		fprintf(stderr, PROG ": %s %s: %s\n", opt, path, strerror(errno));
		return NULL;
	}
	buf = must(malloc(FILE_MAX + 1));
	len = fread(buf, 1, FILE_MAX + 1, fp);
	if (ferror(fp) || len > FILE_MAX || memchr(buf, '\0', len)) {
		fprintf(stderr, PROG ": %s %s: %s\n", opt, path,
			ferror(fp) ? strerror(errno) : "too large, or not text");
		free(buf);
		buf = NULL;
	} else {
		buf[len] = '\0';
	}
	fclose(fp);
	return buf;
}

/* Loads --tls-cert, --tls-key and --api-key-file. Returns 0, or 2 (a usage error). */
static int load_creds(void)
{
	if (!tls_cert_arg != !tls_key_arg) {
		fprintf(stderr, PROG ": --tls-cert and --tls-key go together\n");
		return 2;
	}
	if (tls_cert_arg && MHD_is_feature_supported(MHD_FEATURE_TLS) != MHD_YES) {
		fprintf(stderr, PROG ": this libmicrohttpd (%s) is built without TLS\n",
			MHD_get_version());
		return 2;
	}
	if (tls_client_ca_arg && !tls_cert_arg) {
		fprintf(stderr, PROG ": --tls-client-ca needs --tls-cert and --tls-key\n");
		return 2;
	}
	if (tls_cert_arg && (!(creds.cert = slurp("--tls-cert", tls_cert_arg)) ||
			     !(creds.key = slurp("--tls-key", tls_key_arg))))
		return 2;
	if (tls_client_ca_arg && !(creds.client_ca = slurp("--tls-client-ca", tls_client_ca_arg)))
		return 2;
	if (api_key_arg) {
		size_t len;
		if (!(creds.api_key = slurp("--api-key-file", api_key_arg)))
			return 2;
		len = strcspn(creds.api_key, "\r\n");
		creds.api_key[len] = '\0';
		if (!len) {
			fprintf(stderr, PROG ": --api-key-file %s: the first line is empty\n",
				api_key_arg);
			return 2;
		}
	}
	return 0;
}

/* Writes "API_PORT CONTROL_PORT\n" to FILE.tmp and renames it: readers never see half. */
static int write_port_file(const char *path, int api_port, int control_port)
{
	char tmp[4096];
	FILE *fp;

	snprintf(tmp, sizeof(tmp), "%s.tmp", path);
	if (!(fp = fopen(tmp, "w"))) {
		fprintf(stderr, PROG ": --port-file %s: %s\n", tmp, strerror(errno));
		return -1;
	}
	fprintf(fp, "%d %d\n", api_port, control_port);
	if (fclose(fp) || rename(tmp, path)) {
		fprintf(stderr, PROG ": --port-file %s: %s\n", path, strerror(errno));
		unlink(tmp);
		return -1;
	}
	return 0;
}

/* Binds both listeners and serves them. Returns the control daemon, or NULL. */
static struct MHD_Daemon *start(struct sockaddr_in *api_addr, struct sockaddr_in *control_addr)
{
	struct MHD_Daemon *control = NULL;
	char err[512];
	int fd;

	if (api_start(api_addr, err, sizeof(err))) {
		fprintf(stderr, PROG ": payments API: %s\n", err);
		return NULL;
	}
	if ((fd = bind_socket(control_addr, err, sizeof(err))) < 0 ||
	    !(control = serve(fd, on_control, false, err, sizeof(err)))) {
		if (fd >= 0)
			close(fd);
		fprintf(stderr, PROG ": control API: %s\n", err);
	}
	return control;
}

/* Stops the listeners (control may be NULL) and frees what startup took. */
static void stop(struct MHD_Daemon *control)
{
	nap_wake_all(); /* first, so that stopping the daemons waits for no sleeper */
	if (control)
		MHD_stop_daemon(control);
	api_stop();
	state_clear();
	nap_destroy();
	if (request_log)
		fclose(request_log);
	free(creds.cert);
	free(creds.key);
	free(creds.client_ca);
	free(creds.api_key);
}

int main(int argc, char **argv)
{
	struct MHD_Daemon *control;
	struct sockaddr_in api_addr, control_addr;
	/* A client that hangs up before its answer is written must not end the program, so
	 * SIGPIPE is ignored here; payq_signals_install() handles only SIGINT and SIGTERM. */
	struct sigaction ignore = {.sa_handler = SIG_IGN};
	char err[512], host[2][INET_ADDRSTRLEN];
	int rc = parse_args(argc, argv);

	if (rc >= 0)
		return rc;
	if (payq_http_parse_addr("--listen", listen_arg, &api_addr, err, sizeof(err)) ||
	    payq_http_parse_addr("--control", control_arg, &control_addr, err, sizeof(err))) {
		fprintf(stderr, PROG ": %s\n", err);
		return 2;
	}
	if (request_log_arg && !(request_log = fopen(request_log_arg, "a"))) {
		fprintf(stderr, PROG ": --request-log %s: %s\n", request_log_arg, strerror(errno));
		return 2;
	}
	if (request_log)
		setvbuf(request_log, NULL, _IOLBF, 0);
	if ((rc = load_creds()))
		return rc;
	st.rng = seed >= 0 ? (uint64_t)seed : (uint64_t)payq_wall_ms() ^ (uint64_t)getpid() << 32;
	nap_init();
	payq_signals_install(&run);
	sigaction(SIGPIPE, &ignore, NULL);

	rc = 1;
	control = start(&api_addr, &control_addr);
	inet_ntop(AF_INET, &api_addr.sin_addr, host[0], sizeof(host[0]));
	inet_ntop(AF_INET, &control_addr.sin_addr, host[1], sizeof(host[1]));
	if (control && (!port_file || !write_port_file(port_file, ntohs(api_addr.sin_port),
						       ntohs(control_addr.sin_port)))) {
		fprintf(stderr, "listening: api %s:%d control %s:%d\n", host[0],
			ntohs(api_addr.sin_port), host[1], ntohs(control_addr.sin_port));
		while (run) {
			usleep(100 * 1000);
			reap(false);
		}
		rc = 0;
	}
	stop(control);
	return rc;
}
