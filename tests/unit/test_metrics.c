/* test_metrics.c - the Prometheus registry, its text format, promtool, and the HTTP endpoint. */
#include <arpa/inet.h>
#include <check.h>
#include <errno.h>
#include <math.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

#include "check_main.h"
#include "http.h"
#include "metrics.h"
#include "util.h"

static void teardown(void)
{
	payq_metrics_reset();
}

static const struct {
	double v;
	const char *text;
} number_cases[] = {
	{0, "0"},
	{-0.0, "0"},
	{1, "1"},
	{-3, "-3"},
	{123456789012345, "123456789012345"},
	{9007199254740991.0, "9007199254740991"},
	{0.1, "0.1"},
	{2.5, "2.5"},
	{0.30000000000000004, "0.30000000000000004"},
	{1e-9, "1e-09"},
	{1.0 / 3, "0.3333333333333333"},
	{1e20, "1e+20"},
	{INFINITY, "+Inf"},
	{-INFINITY, "-Inf"},
	{NAN, "NaN"},
};

START_TEST(test_number_format)
{
	char want[256];
	char *out;

	ck_assert_int_eq(payq_metrics_declare("g", PAYQ_METRIC_GAUGE, "a gauge", NULL, 0), 0);
	payq_metrics_set("g", NULL, number_cases[_i].v);
	out = payq_metrics_render();
	snprintf(want, sizeof(want), "# HELP g a gauge\n# TYPE g gauge\ng %s\n",
		 number_cases[_i].text);
	ck_assert_str_eq(out, want);
	free(out);
}
END_TEST

START_TEST(test_counter_gauge)
{
	char *out;

	ck_assert_int_eq(payq_metrics_declare("payq_commands_total", PAYQ_METRIC_COUNTER,
					      "Commands by type and outcome.", NULL, 0),
			 0);
	ck_assert_int_eq(payq_metrics_declare("payq_dlq_total", PAYQ_METRIC_COUNTER,
					      "Dead-lettered.", NULL, 0),
			 0);
	ck_assert_int_eq(payq_metrics_declare("payq_consumer_lag", PAYQ_METRIC_GAUGE,
					      "Lag in messages.", NULL, 0),
			 0);
	payq_metrics_add("payq_commands_total", "type=\"pay\",outcome=\"applied\"", 1);
	payq_metrics_add("payq_commands_total", "type=\"refund\",outcome=\"rejected\"", 2);
	payq_metrics_add("payq_commands_total", "type=\"pay\",outcome=\"applied\"", 3);
	payq_metrics_add("payq_dlq_total", NULL, 5);
	payq_metrics_set("payq_consumer_lag", "topic=\"t\",partition=\"0\"", 42);
	payq_metrics_set("payq_consumer_lag", "topic=\"t\",partition=\"0\"", 7);
	payq_metrics_add("payq_consumer_lag", "topic=\"t\",partition=\"1\"", -2);

	ck_assert_double_eq(
		payq_metrics_get("payq_commands_total", "type=\"pay\",outcome=\"applied\""), 4);
	ck_assert_double_eq(payq_metrics_get("payq_dlq_total", ""), 5);
	ck_assert_double_eq(payq_metrics_get("payq_dlq_total", "reason=\"x\""), 0);
	ck_assert_double_eq(payq_metrics_get("nope", NULL), 0);

	out = payq_metrics_render();
	ck_assert_str_eq(out, "# HELP payq_commands_total Commands by type and outcome.\n"
			      "# TYPE payq_commands_total counter\n"
			      "payq_commands_total{type=\"pay\",outcome=\"applied\"} 4\n"
			      "payq_commands_total{type=\"refund\",outcome=\"rejected\"} 2\n"
			      "# HELP payq_dlq_total Dead-lettered.\n"
			      "# TYPE payq_dlq_total counter\n"
			      "payq_dlq_total 5\n"
			      "# HELP payq_consumer_lag Lag in messages.\n"
			      "# TYPE payq_consumer_lag gauge\n"
			      "payq_consumer_lag{topic=\"t\",partition=\"0\"} 7\n"
			      "payq_consumer_lag{topic=\"t\",partition=\"1\"} -2\n");
	free(out);
}
END_TEST

/* A revoked partition's lag series goes away; the others stay, in any order. */
START_TEST(test_remove_series)
{
	char *out;

	ck_assert_int_eq(payq_metrics_declare("lag", PAYQ_METRIC_GAUGE, "Lag.", NULL, 0), 0);
	ck_assert_int_eq(payq_metrics_declare("h", PAYQ_METRIC_HISTOGRAM, "H.", (double[]){1}, 1),
			 0);
	payq_metrics_set("lag", "partition=\"0\"", 1);
	payq_metrics_set("lag", "partition=\"1\"", 2);
	payq_metrics_set("lag", "partition=\"2\"", 3);
	payq_metrics_observe("h", "x=\"a\"", 0.5);
	payq_metrics_remove("lag", "partition=\"0\"");
	payq_metrics_remove("lag", "partition=\"9\""); /* absent: no-op */
	payq_metrics_remove("nope", NULL);
	payq_metrics_remove("h", "x=\"a\"");
	ck_assert_double_eq(payq_metrics_get("lag", "partition=\"0\""), 0);
	out = payq_metrics_render();
	ck_assert_str_eq(out, "# HELP lag Lag.\n"
			      "# TYPE lag gauge\n"
			      "lag{partition=\"2\"} 3\n"
			      "lag{partition=\"1\"} 2\n"
			      "# HELP h H.\n"
			      "# TYPE h histogram\n");
	free(out);
	payq_metrics_set("lag", "partition=\"0\"", 4); /* comes back when set again */
	ck_assert_double_eq(payq_metrics_get("lag", "partition=\"0\""), 4);
}
END_TEST

static const struct {
	const char *in;
	size_t size;
	const char *out;
} escape_cases[] = {
	{"payq-workers", 64, "payq-workers"},
	{"a\"b\\c\nd", 64, "a\\\"b\\\\c\\nd"},
	{"abc", 3, "ab"},
	{"a\"", 3, "a"}, /* an escape is never cut in half */
	{"", 1, ""},
};

START_TEST(test_escape_label)
{
	char buf[64];

	payq_metrics_escape_label(buf, escape_cases[_i].size, escape_cases[_i].in);
	ck_assert_str_eq(buf, escape_cases[_i].out);
}
END_TEST

START_TEST(test_histogram)
{
	static const double bounds[] = {0.01, 0.1, 1};
	char *out;

	ck_assert_int_eq(payq_metrics_declare("payq_batch_duration_seconds", PAYQ_METRIC_HISTOGRAM,
					      "Batch time.", bounds, PAYQ_ARRAY_SIZE(bounds)),
			 0);
	payq_metrics_observe("payq_batch_duration_seconds", NULL, 0.005);
	payq_metrics_observe("payq_batch_duration_seconds", NULL, 0.1);
	payq_metrics_observe("payq_batch_duration_seconds", NULL, 0.5);
	payq_metrics_observe("payq_batch_duration_seconds", NULL, 4);
	payq_metrics_observe("payq_batch_duration_seconds", "topic=\"t\"", 1);
	/* A histogram has no counter value; add and get leave it alone. */
	payq_metrics_add("payq_batch_duration_seconds", NULL, 100);
	ck_assert_double_eq(payq_metrics_get("payq_batch_duration_seconds", NULL), 0);

	out = payq_metrics_render();
	ck_assert_str_eq(out, "# HELP payq_batch_duration_seconds Batch time.\n"
			      "# TYPE payq_batch_duration_seconds histogram\n"
			      "payq_batch_duration_seconds_bucket{le=\"0.01\"} 1\n"
			      "payq_batch_duration_seconds_bucket{le=\"0.1\"} 2\n"
			      "payq_batch_duration_seconds_bucket{le=\"1\"} 3\n"
			      "payq_batch_duration_seconds_bucket{le=\"+Inf\"} 4\n"
			      "payq_batch_duration_seconds_sum 4.605\n"
			      "payq_batch_duration_seconds_count 4\n"
			      "payq_batch_duration_seconds_bucket{topic=\"t\",le=\"0.01\"} 0\n"
			      "payq_batch_duration_seconds_bucket{topic=\"t\",le=\"0.1\"} 0\n"
			      "payq_batch_duration_seconds_bucket{topic=\"t\",le=\"1\"} 1\n"
			      "payq_batch_duration_seconds_bucket{topic=\"t\",le=\"+Inf\"} 1\n"
			      "payq_batch_duration_seconds_sum{topic=\"t\"} 1\n"
			      "payq_batch_duration_seconds_count{topic=\"t\"} 1\n");
	free(out);
}
END_TEST

START_TEST(test_empty_families)
{
	static const double bounds[] = {1, 10};
	char *out;

	ck_assert_int_eq(payq_metrics_declare("c_total", PAYQ_METRIC_COUNTER,
					      "Has a \\ and a\nnewline.", NULL, 0),
			 0);
	ck_assert_int_eq(payq_metrics_declare("g", PAYQ_METRIC_GAUGE, NULL, NULL, 0), 0);
	ck_assert_int_eq(payq_metrics_declare("h", PAYQ_METRIC_HISTOGRAM, "H.", bounds, 2), 0);
	out = payq_metrics_render();
	ck_assert_str_eq(out, "# HELP c_total Has a \\\\ and a\\nnewline.\n"
			      "# TYPE c_total counter\n"
			      "c_total 0\n"
			      "# HELP g \n"
			      "# TYPE g gauge\n"
			      "g 0\n"
			      "# HELP h H.\n"
			      "# TYPE h histogram\n");
	free(out);
}
END_TEST

START_TEST(test_declare_rules)
{
	static const double unsorted[] = {1, 0.5};
	static const double with_inf[] = {1, INFINITY};
	char name[32];
	char *out;

	ck_assert_int_eq(payq_metrics_declare("x_total", PAYQ_METRIC_COUNTER, "X.", NULL, 0), 0);
	/* A second declaration is harmless and the first one stays. */
	ck_assert_int_eq(payq_metrics_declare("x_total", PAYQ_METRIC_GAUGE, "Y.", NULL, 0), 0);
	ck_assert_int_eq(payq_metrics_declare("", PAYQ_METRIC_GAUGE, "", NULL, 0), -1);
	ck_assert_int_eq(payq_metrics_declare("9lives", PAYQ_METRIC_GAUGE, "", NULL, 0), -1);
	ck_assert_int_eq(payq_metrics_declare("a-b", PAYQ_METRIC_GAUGE, "", NULL, 0), -1);
	ck_assert_int_eq(payq_metrics_declare("h", PAYQ_METRIC_HISTOGRAM, "", unsorted, 2), -1);
	ck_assert_int_eq(payq_metrics_declare("h", PAYQ_METRIC_HISTOGRAM, "", with_inf, 2), -1);
	payq_metrics_observe("x_total", NULL, 1);
	payq_metrics_add("undeclared", NULL, 1);
	payq_metrics_add("x_total", "a=\"b\"", 0);
	out = payq_metrics_render();
	ck_assert_str_eq(out, "# HELP x_total X.\n# TYPE x_total counter\nx_total{a=\"b\"} 0\n");
	free(out);

	/* The registry is bounded: fill it, then one more fails. */
	int rc = 0, n = 1;
	for (; rc == 0 && n < 1000; n++) {
		snprintf(name, sizeof(name), "m%d", n);
		rc = payq_metrics_declare(name, PAYQ_METRIC_GAUGE, "", NULL, 0);
	}
	ck_assert_int_eq(rc, -1);
	ck_assert_int_lt(n, 1000);
}
END_TEST

#define THREAD_ITERS 20000

static void *adder(void *arg)
{
	for (int i = 0; i < THREAD_ITERS; i++) {
		payq_metrics_add("payq_duplicates_total", NULL, 1);
		payq_metrics_add("payq_commands_total", (const char *)arg, 1);
		payq_metrics_observe("payq_batch_size", NULL, i % 3);
		if (i % 1000 == 0)
			free(payq_metrics_render());
	}
	return NULL;
}

START_TEST(test_threads)
{
	static const double bounds[] = {0, 1};
	pthread_t t[2];
	char *out;

	payq_metrics_declare("payq_duplicates_total", PAYQ_METRIC_COUNTER, "Dups.", NULL, 0);
	payq_metrics_declare("payq_commands_total", PAYQ_METRIC_COUNTER, "Cmds.", NULL, 0);
	payq_metrics_declare("payq_batch_size", PAYQ_METRIC_HISTOGRAM, "Size.", bounds, 2);
	ck_assert_int_eq(pthread_create(&t[0], NULL, adder, "type=\"pay\""), 0);
	ck_assert_int_eq(pthread_create(&t[1], NULL, adder, "type=\"refund\""), 0);
	pthread_join(t[0], NULL);
	pthread_join(t[1], NULL);
	ck_assert_double_eq(payq_metrics_get("payq_duplicates_total", NULL), 2 * THREAD_ITERS);
	ck_assert_double_eq(payq_metrics_get("payq_commands_total", "type=\"pay\""), THREAD_ITERS);
	ck_assert_double_eq(payq_metrics_get("payq_commands_total", "type=\"refund\""),
			    THREAD_ITERS);
	out = payq_metrics_render();
	ck_assert_ptr_nonnull(strstr(out, "payq_batch_size_count 40000\n"));
	ck_assert_ptr_nonnull(strstr(out, "payq_batch_size_bucket{le=\"+Inf\"} 40000\n"));
	free(out);
}
END_TEST

/* Declares and fills a registry shaped like the worker's. */
static void worker_registry(void)
{
	static const double size_bounds[] = {1, 5, 10, 50, 100, 500, 1000};
	static const double sec_bounds[] = {0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1, 5};

	payq_metrics_declare("payq_commands_total", PAYQ_METRIC_COUNTER,
			     "Commands handled, by type and outcome.", NULL, 0);
	payq_metrics_declare("payq_duplicates_total", PAYQ_METRIC_COUNTER, "Commands seen before.",
			     NULL, 0);
	payq_metrics_declare("payq_anomalies_total", PAYQ_METRIC_COUNTER, "Anomalies by kind.",
			     NULL, 0);
	payq_metrics_declare("payq_batch_size", PAYQ_METRIC_HISTOGRAM,
			     "Commands per database transaction.", size_bounds,
			     PAYQ_ARRAY_SIZE(size_bounds));
	payq_metrics_declare("payq_batch_duration_seconds", PAYQ_METRIC_HISTOGRAM,
			     "Time to apply one batch.", sec_bounds, PAYQ_ARRAY_SIZE(sec_bounds));
	payq_metrics_declare("payq_consumer_lag", PAYQ_METRIC_GAUGE,
			     "Messages behind the high watermark.", NULL, 0);
	payq_metrics_declare("payq_last_commit_timestamp_seconds", PAYQ_METRIC_GAUGE,
			     "Wall time of the last offset commit.", NULL, 0);
	payq_metrics_declare("payq_build_info", PAYQ_METRIC_GAUGE, "Build information.", NULL, 0);

	payq_metrics_add("payq_commands_total", "type=\"pay\",outcome=\"applied\"", 10);
	payq_metrics_add("payq_commands_total", "type=\"pay\",outcome=\"rejected\"", 1);
	payq_metrics_add("payq_duplicates_total", NULL, 3);
	payq_metrics_observe("payq_batch_size", NULL, 11);
	payq_metrics_observe("payq_batch_duration_seconds", NULL, 0.0123);
	payq_metrics_set("payq_consumer_lag", "topic=\"payq.commands\",partition=\"0\"", 17);
	payq_metrics_set("payq_consumer_lag", "topic=\"payq.commands\",partition=\"1\"", 0);
	payq_metrics_set("payq_last_commit_timestamp_seconds", NULL, 1795687200.25);
	payq_metrics_set("payq_build_info", "version=\"" PAYQ_VERSION "\"", 1);
}

START_TEST(test_promtool)
{
	char path[] = "/tmp/payq-metrics-XXXXXX", cmd[128], line[512], report[4096] = "";
	char *out;
	FILE *f, *p;
	int fd, status;

	if (access("/usr/bin/promtool", X_OK) != 0) {
		fprintf(stderr, "promtool not found, skipping the check\n");
		return;
	}
	worker_registry();
	out = payq_metrics_render();
	ck_assert_ptr_nonnull(strstr(out, "payq_build_info{version=\"" PAYQ_VERSION "\"} 1\n"));
	ck_assert_ptr_nonnull(strstr(out, "payq_last_commit_timestamp_seconds 1795687200.25\n"));
	ck_assert_ptr_nonnull(strstr(out, "payq_anomalies_total 0\n"));
	fd = mkstemp(path);
	ck_assert_int_ge(fd, 0);
	f = fdopen(fd, "w");
	ck_assert_ptr_nonnull(f);
	fputs(out, f);
	fclose(f);
	free(out);

	snprintf(cmd, sizeof(cmd), "/usr/bin/promtool check metrics < %s 2>&1", path);
	p = popen(cmd, "r");
	ck_assert_ptr_nonnull(p);
	while (fgets(line, sizeof(line), p))
		strncat(report, line, sizeof(report) - strlen(report) - 1);
	status = pclose(p);
	unlink(path);
	ck_assert_msg(status == 0, "promtool failed (%d): %s", status, report);
}
END_TEST

static bool probe_ok(void *opaque, char *msg, size_t msg_size)
{
	return true;
}

static bool probe_not_joined(void *opaque, char *msg, size_t msg_size)
{
	snprintf(msg, msg_size, "%s", (const char *)opaque);
	return false;
}

/* Sends one HTTP/1.0 request to the loopback address of family (AF_INET: 127.0.0.1,
 * AF_INET6: ::1) and reads the whole reply into buf. */
static void http_request_on(int family, int port, const char *method, const char *path, char *buf,
			    size_t size)
{
	struct sockaddr_in sin = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
	struct sockaddr_in6 sin6 = {.sin6_family = AF_INET6,
				    .sin6_port = htons((uint16_t)port),
				    .sin6_addr = IN6ADDR_LOOPBACK_INIT};
	struct sockaddr *sa =
		family == AF_INET6 ? (struct sockaddr *)&sin6 : (struct sockaddr *)&sin;
	socklen_t salen = family == AF_INET6 ? sizeof(sin6) : sizeof(sin);
	struct timeval tv = {.tv_sec = 5};
	char req[256];
	size_t len = 0;
	ssize_t n;
	int fd;

	sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	fd = socket(family, SOCK_STREAM, 0);
	ck_assert_int_ge(fd, 0);
	setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
	ck_assert_msg(connect(fd, sa, salen) == 0, "connect to %s port %d: %s",
		      family == AF_INET6 ? "::1" : "127.0.0.1", port, strerror(errno));
	snprintf(req, sizeof(req), "%s %s HTTP/1.0\r\nHost: localhost\r\n\r\n", method, path);
	ck_assert_int_eq(write(fd, req, strlen(req)), (ssize_t)strlen(req));
	while (len + 1 < size && (n = read(fd, buf + len, size - len - 1)) > 0)
		len += (size_t)n;
	buf[len] = '\0';
	close(fd);
}

static void http_request(int port, const char *method, const char *path, char *buf, size_t size)
{
	http_request_on(AF_INET, port, method, path, buf, size);
}

static const struct {
	const char *method, *path, *status, *header, *body;
} http_cases[] = {
	{"GET", "/metrics", "HTTP/1.1 200",
	 "Content-Type: text/plain; version=0.0.4; charset=utf-8\r\n",
	 "\r\n\r\n# HELP payq_commands_total"},
	{"GET", "/healthz", "HTTP/1.1 200", "Content-Length: 3\r\n", "\r\n\r\nok\n"},
	{"GET", "/readyz", "HTTP/1.1 503", "Content-Type: text/plain", "\r\n\r\nnot joined\n"},
	{"GET", "/nope", "HTTP/1.1 404", "Content-Type: text/plain", "\r\n\r\nnot found\n"},
	{"POST", "/metrics", "HTTP/1.1 405", "Allow: GET, HEAD\r\n", "\r\n\r\nmethod not"},
};

START_TEST(test_http_routes)
{
	char errstr[256] = "", reply[65536];
	payq_http_t *http;

	worker_registry();
	http = payq_http_start("127.0.0.1:0", probe_ok, probe_not_joined, "not joined", errstr,
			       sizeof(errstr));
	ck_assert_msg(http != NULL, "start: %s", errstr);
	ck_assert_int_gt(payq_http_port(http), 0);
	for (size_t i = 0; i < PAYQ_ARRAY_SIZE(http_cases); i++) {
		http_request(payq_http_port(http), http_cases[i].method, http_cases[i].path, reply,
			     sizeof(reply));
		ck_assert_msg(!strncmp(reply, http_cases[i].status, strlen(http_cases[i].status)),
			      "%s %s: %.40s", http_cases[i].method, http_cases[i].path, reply);
		ck_assert_msg(strstr(reply, http_cases[i].header), "%s %s: no %s in %s",
			      http_cases[i].method, http_cases[i].path, http_cases[i].header,
			      reply);
		ck_assert_msg(strstr(reply, http_cases[i].body), "%s %s: no %s in %s",
			      http_cases[i].method, http_cases[i].path, http_cases[i].body, reply);
	}
	ck_assert_ptr_nonnull(strstr(reply, "\r\n\r\nmethod not allowed\n"));
	http_request(payq_http_port(http), "GET", "/metrics", reply, sizeof(reply));
	ck_assert_ptr_nonnull(strstr(reply, "\npayq_duplicates_total 3\n"));
	payq_http_stop(http);
}
END_TEST

START_TEST(test_http_null_probes)
{
	char errstr[256] = "", reply[4096];
	payq_http_t *http = payq_http_start(":0", NULL, NULL, NULL, errstr, sizeof(errstr));

	ck_assert_msg(http != NULL, "start: %s", errstr);
	http_request(payq_http_port(http), "GET", "/readyz", reply, sizeof(reply));
	ck_assert_ptr_nonnull(strstr(reply, "HTTP/1.1 200"));
	ck_assert_ptr_nonnull(strstr(reply, "\r\n\r\nok\n"));
	payq_http_stop(http);
	payq_http_stop(NULL);
}
END_TEST

/* PAYQ_HTTP_ADDR in IPv6: "[::]:PORT" listens on every address, IPv6 and (dual stack)
 * IPv4; "[::1]:PORT" on the IPv6 loopback only. */
static const struct {
	const char *addr;
	bool v4, v6; /* answers on 127.0.0.1, on ::1 */
} v6_addrs[] = {
	{"[::]:0", true, true},
	{"[::1]:0", false, true},
	{"[0:0:0:0:0:0:0:1]:0", false, true},
};

START_TEST(test_http_ipv6)
{
	char errstr[256] = "", reply[4096];
	payq_http_t *http =
		payq_http_start(v6_addrs[_i].addr, NULL, NULL, NULL, errstr, sizeof(errstr));

	ck_assert_msg(http != NULL, "start on %s: %s", v6_addrs[_i].addr, errstr);
	ck_assert_int_gt(payq_http_port(http), 0);
	if (v6_addrs[_i].v6) {
		http_request_on(AF_INET6, payq_http_port(http), "GET", "/healthz", reply,
				sizeof(reply));
		ck_assert_msg(strstr(reply, "HTTP/1.1 200"), "%s over ::1: %.60s",
			      v6_addrs[_i].addr, reply);
	}
	if (v6_addrs[_i].v4) {
		http_request_on(AF_INET, payq_http_port(http), "GET", "/healthz", reply,
				sizeof(reply));
		ck_assert_msg(strstr(reply, "HTTP/1.1 200"), "%s over 127.0.0.1: %.60s",
			      v6_addrs[_i].addr, reply);
	}
	payq_http_stop(http);
}
END_TEST

/* The parser alone: family, address and port of each accepted form. */
static const struct {
	const char *addr;
	int family;
	const char *host; /* inet_ntop of the result */
	int port;
} good_addrs[] = {
	{"0.0.0.0:9400", AF_INET, "0.0.0.0", 9400},
	{":9400", AF_INET, "0.0.0.0", 9400},
	{"127.0.0.1:0", AF_INET, "127.0.0.1", 0},
	{"localhost:80", AF_INET, "127.0.0.1", 80},
	{"[::]:9400", AF_INET6, "::", 9400},
	{"[::1]:9400", AF_INET6, "::1", 9400},
	{"[2001:db8::7]:65535", AF_INET6, "2001:db8::7", 65535},
	{"[::ffff:10.1.2.3]:1", AF_INET6, "::ffff:10.1.2.3", 1},
};

START_TEST(test_http_parse_addr)
{
	payq_sockaddr_t sa;
	char errstr[256] = "", host[INET6_ADDRSTRLEN] = "";
	const void *bin;
	int port;

	ck_assert_msg(payq_http_parse_sockaddr("addr", good_addrs[_i].addr, &sa, errstr,
					       sizeof(errstr)) == 0,
		      "%s: %s", good_addrs[_i].addr, errstr);
	ck_assert_int_eq(sa.ss.ss_family, good_addrs[_i].family);
	if (good_addrs[_i].family == AF_INET6) {
		const struct sockaddr_in6 *s6 = (const struct sockaddr_in6 *)(const void *)&sa.ss;
		ck_assert_uint_eq(sa.len, sizeof(*s6));
		bin = &s6->sin6_addr;
		port = ntohs(s6->sin6_port);
	} else {
		const struct sockaddr_in *s4 = (const struct sockaddr_in *)(const void *)&sa.ss;
		ck_assert_uint_eq(sa.len, sizeof(*s4));
		bin = &s4->sin_addr;
		port = ntohs(s4->sin_port);
	}
	ck_assert_ptr_nonnull(inet_ntop(good_addrs[_i].family, bin, host, sizeof(host)));
	ck_assert_str_eq(host, good_addrs[_i].host);
	ck_assert_int_eq(port, good_addrs[_i].port);
}
END_TEST

static const struct {
	const char *addr, *err;
} bad_addrs[] = {
	{"9400", "want host:port"},
	{"127.0.0.1:", "bad port"},
	{"127.0.0.1:65536", "bad port"},
	{"127.0.0.1:x", "bad port"},
	{"no.such.host.invalid:0", "no.such.host.invalid"},
	{"::1:9400", "brackets"},
	{"::", "brackets"},
	{"[::1]9400", "want [host]:port"},
	{"[::1:9400", "want [host]:port"},
	{"[::1]:", "bad port"},
	{"[::1]:99999", "bad port"},
	{"[]:9400", "not an IPv6 address"},
	{"[127.0.0.1]:9400", "not an IPv6 address"},
	{"[localhost]:9400", "not an IPv6 address"},
	{"[::1]]:9400", "want [host]:port"},
	{"[fe80::1%lo]:9400", "not an IPv6 address"},
};

START_TEST(test_http_bad_addr)
{
	char errstr[256] = "";

	ck_assert_ptr_null(
		payq_http_start(bad_addrs[_i].addr, NULL, NULL, NULL, errstr, sizeof(errstr)));
	ck_assert_msg(strstr(errstr, bad_addrs[_i].err), "%s: %s", bad_addrs[_i].addr, errstr);
}
END_TEST

static Suite *metrics_suite(void)
{
	Suite *s = suite_create("metrics");
	TCase *tc = tcase_create("registry");
	TCase *th = tcase_create("http");

	tcase_add_checked_fixture(tc, NULL, teardown);
	tcase_add_loop_test(tc, test_number_format, 0, PAYQ_ARRAY_SIZE(number_cases));
	tcase_add_test(tc, test_counter_gauge);
	tcase_add_test(tc, test_histogram);
	tcase_add_test(tc, test_remove_series);
	tcase_add_loop_test(tc, test_escape_label, 0, PAYQ_ARRAY_SIZE(escape_cases));
	tcase_add_test(tc, test_empty_families);
	tcase_add_test(tc, test_declare_rules);
	tcase_add_test(tc, test_threads);
	tcase_add_test(tc, test_promtool);
	tcase_set_timeout(tc, 60);
	suite_add_tcase(s, tc);

	tcase_add_checked_fixture(th, NULL, teardown);
	tcase_add_test(th, test_http_routes);
	tcase_add_test(th, test_http_null_probes);
	tcase_add_loop_test(th, test_http_bad_addr, 0, PAYQ_ARRAY_SIZE(bad_addrs));
	tcase_add_loop_test(th, test_http_ipv6, 0, PAYQ_ARRAY_SIZE(v6_addrs));
	tcase_add_loop_test(th, test_http_parse_addr, 0, PAYQ_ARRAY_SIZE(good_addrs));
	tcase_set_timeout(th, 60);
	suite_add_tcase(s, th);
	return s;
}

PAYQ_TEST_SUITES(metrics_suite);
