/* http.c - /metrics, /healthz and /readyz served by libmicrohttpd's own thread. */
#include "http.h"

#include <arpa/inet.h>
#include <microhttpd.h>
#include <netdb.h>
#include <netinet/in.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include "log.h"
#include "metrics.h"
#include "procstat.h"
#include "util.h"

#define METRICS_CONTENT_TYPE "text/plain; version=0.0.4; charset=utf-8"
#define TEXT_CONTENT_TYPE "text/plain; charset=utf-8"

struct payq_http {
	struct MHD_Daemon *daemon;
	payq_http_probe_fn healthz;
	payq_http_probe_fn readyz;
	void *opaque;
	int port;
};

/* The port after the host: digits to the end, 0..65535. */
static int parse_port(const char *what, const char *addr, const char *digits, uint16_t *port,
		      char *errstr, size_t errstr_size)
{
	int64_t v;

	if (payq_parse_int64(digits, 0, 65535, &v) < 0)
		return payq_err(errstr, errstr_size, "%s \"%s\": bad port", what, addr);
	*port = (uint16_t)v;
	return 0;
}

/* "[v6]:port": only an IPv6 literal goes in the brackets (no names, no zone ids). */
static int parse_ipv6(const char *what, const char *addr, payq_sockaddr_t *sa, char *errstr,
		      size_t errstr_size)
{
	struct sockaddr_in6 *sin6 = (struct sockaddr_in6 *)(void *)&sa->ss;
	const char *close = strchr(addr, ']');
	char host[INET6_ADDRSTRLEN];
	size_t len;
	uint16_t port;

	if (!close || close[1] != ':' || strchr(close + 1, ']'))
		return payq_err(errstr, errstr_size, "%s \"%s\": want [host]:port", what, addr);
	if (parse_port(what, addr, close + 2, &port, errstr, errstr_size) < 0)
		return -1;
	len = (size_t)(close - addr - 1);
	if (len >= sizeof(host))
		return payq_err(errstr, errstr_size, "%s \"%s\": not an IPv6 address", what, addr);
	memcpy(host, addr + 1, len);
	host[len] = '\0';
	sin6->sin6_family = AF_INET6;
	sin6->sin6_port = htons(port);
	if (inet_pton(AF_INET6, host, &sin6->sin6_addr) != 1)
		return payq_err(errstr, errstr_size, "%s \"%s\": not an IPv6 address", what, addr);
	sa->len = sizeof(*sin6);
	return 0;
}

/* "host:port" in IPv4: a dotted quad, a name, or nothing for every address. */
static int parse_ipv4(const char *what, const char *addr, payq_sockaddr_t *sa, char *errstr,
		      size_t errstr_size)
{
	struct sockaddr_in *sin = (struct sockaddr_in *)(void *)&sa->ss;
	const char *colon = strrchr(addr, ':');
	char host[256];
	uint16_t port;

	if (!colon)
		return payq_err(errstr, errstr_size, "%s \"%s\": want host:port", what, addr);
	if (memchr(addr, ':', (size_t)(colon - addr)))
		return payq_err(errstr, errstr_size,
				"%s \"%s\": an IPv6 address goes in brackets, as [::1]:9400", what,
				addr);
	if (parse_port(what, addr, colon + 1, &port, errstr, errstr_size) < 0)
		return -1;
	if ((size_t)(colon - addr) >= sizeof(host))
		return payq_err(errstr, errstr_size, "%s \"%s\": host too long", what, addr);
	memcpy(host, addr, (size_t)(colon - addr));
	host[colon - addr] = '\0';

	sin->sin_family = AF_INET;
	sin->sin_port = htons(port);
	sa->len = sizeof(*sin);
	if (!host[0]) {
		sin->sin_addr.s_addr = htonl(INADDR_ANY);
	} else if (inet_pton(AF_INET, host, &sin->sin_addr) != 1) {
		struct addrinfo hints = {.ai_family = AF_INET, .ai_socktype = SOCK_STREAM};
		struct addrinfo *res;
		int rc = getaddrinfo(host, NULL, &hints, &res);
		if (rc)
			return payq_err(errstr, errstr_size, "%s \"%s\": %s", what, addr,
					gai_strerror(rc));
		sin->sin_addr = ((struct sockaddr_in *)(void *)res->ai_addr)->sin_addr;
		freeaddrinfo(res);
	}
	return 0;
}

int payq_http_parse_sockaddr(const char *what, const char *addr, payq_sockaddr_t *sa, char *errstr,
			     size_t errstr_size)
{
	memset(sa, 0, sizeof(*sa));
	if (!addr)
		return payq_err(errstr, errstr_size, "%s \"\": want host:port", what);
	if (addr[0] == '[')
		return parse_ipv6(what, addr, sa, errstr, errstr_size);
	return parse_ipv4(what, addr, sa, errstr, errstr_size);
}

int payq_http_parse_addr(const char *what, const char *addr, struct sockaddr_in *sin, char *errstr,
			 size_t errstr_size)
{
	payq_sockaddr_t sa;

	if (payq_http_parse_sockaddr(what, addr, &sa, errstr, errstr_size) < 0)
		return -1;
	if (sa.ss.ss_family != AF_INET)
		return payq_err(errstr, errstr_size, "%s \"%s\": IPv4 only here", what, addr);
	memcpy(sin, &sa.ss, sizeof(*sin));
	return 0;
}

static void mhd_logger(void *cls, const char *fmt, va_list ap)
{
	char msg[512];

	vsnprintf(msg, sizeof(msg), fmt, ap);
	msg[strcspn(msg, "\n")] = '\0';
	log_warn("http: %s", msg);
}

static enum MHD_Result reply(struct MHD_Connection *conn, unsigned int status,
			     struct MHD_Response *resp, const char *content_type)
{
	enum MHD_Result ret;

	if (!resp)
		return MHD_NO;
	MHD_add_response_header(resp, MHD_HTTP_HEADER_CONTENT_TYPE, content_type);
	if (status == MHD_HTTP_METHOD_NOT_ALLOWED)
		MHD_add_response_header(resp, MHD_HTTP_HEADER_ALLOW, "GET, HEAD");
	ret = MHD_queue_response(conn, status, resp);
	MHD_destroy_response(resp);
	return ret;
}

static enum MHD_Result reply_text(struct MHD_Connection *conn, unsigned int status,
				  const char *text)
{
	struct MHD_Response *resp = MHD_create_response_from_buffer(
		strlen(text), (void *)(uintptr_t)text, MHD_RESPMEM_MUST_COPY);
	return reply(conn, status, resp, TEXT_CONTENT_TYPE);
}

static enum MHD_Result reply_probe(struct payq_http *http, struct MHD_Connection *conn,
				   payq_http_probe_fn probe)
{
	char msg[256] = "";
	size_t len;

	if (!probe || probe(http->opaque, msg, sizeof(msg) - 1))
		return reply_text(conn, MHD_HTTP_OK, "ok\n");
	msg[sizeof(msg) - 2] = '\0';
	len = strlen(msg);
	if (!len)
		len = (size_t)snprintf(msg, sizeof(msg), "unavailable");
	if (msg[len - 1] != '\n')
		strcpy(msg + len, "\n");
	return reply_text(conn, MHD_HTTP_SERVICE_UNAVAILABLE, msg);
}

static enum MHD_Result handle(void *cls, struct MHD_Connection *conn, const char *url,
			      const char *method, const char *version, const char *upload_data,
			      size_t *upload_data_size, void **con_cls)
{
	struct payq_http *http = cls;

	/* HEAD is GET without a body, which libmicrohttpd strips itself. */
	if (strcmp(method, MHD_HTTP_METHOD_GET) && strcmp(method, MHD_HTTP_METHOD_HEAD))
		return reply_text(conn, MHD_HTTP_METHOD_NOT_ALLOWED, "method not allowed\n");
	if (!strcmp(url, "/metrics")) {
		char *body;
		payq_procstat_update_metrics();
		body = payq_metrics_render();
		struct MHD_Response *resp = NULL;
		/* MUST_FREE hands body to libmicrohttpd, which free()s it, unless it fails. */
		if (body)
			resp = MHD_create_response_from_buffer(strlen(body), body,
							       MHD_RESPMEM_MUST_FREE);
		if (!resp) {
			free(body);
			return reply_text(conn, MHD_HTTP_INTERNAL_SERVER_ERROR, "out of memory\n");
		}
		return reply(conn, MHD_HTTP_OK, resp, METRICS_CONTENT_TYPE);
	}
	if (!strcmp(url, "/healthz"))
		return reply_probe(http, conn, http->healthz);
	if (!strcmp(url, "/readyz"))
		return reply_probe(http, conn, http->readyz);
	return reply_text(conn, MHD_HTTP_NOT_FOUND, "not found\n");
}

payq_http_t *payq_http_start(const char *addr, payq_http_probe_fn healthz,
			     payq_http_probe_fn readyz, void *opaque, char *errstr,
			     size_t errstr_size)
{
	payq_sockaddr_t sa;
	const union MHD_DaemonInfo *info;
	struct payq_http *http;
	unsigned int flags = MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_ERROR_LOG;

	if (payq_http_parse_sockaddr("http address", addr, &sa, errstr, errstr_size) < 0)
		return NULL;
	/* An IPv6 socket with IPV6_V6ONLY off: "[::]" takes IPv4 clients too (the kubelet's
	 * probes, payq-httpcheck on 127.0.0.1). */
	if (sa.ss.ss_family == AF_INET6)
		flags |= MHD_USE_DUAL_STACK;
	http = calloc(1, sizeof(*http));
	if (!http) {
		payq_err(errstr, errstr_size, "out of memory");
		return NULL;
	}
	http->healthz = healthz;
	http->readyz = readyz;
	http->opaque = opaque;
	http->daemon =
		MHD_start_daemon(flags, 0, NULL, NULL, handle, http, MHD_OPTION_EXTERNAL_LOGGER,
				 mhd_logger, NULL, MHD_OPTION_SOCK_ADDR, (struct sockaddr *)&sa.ss,
				 MHD_OPTION_CONNECTION_TIMEOUT, (unsigned int)10, MHD_OPTION_END);
	if (!http->daemon) {
		payq_err(errstr, errstr_size, "http: cannot listen on %s", addr);
		goto fail;
	}
	info = MHD_get_daemon_info(http->daemon, MHD_DAEMON_INFO_BIND_PORT);
	if (!info || !info->port) {
		payq_err(errstr, errstr_size, "http: cannot learn the port bound for %s", addr);
		goto fail;
	}
	http->port = info->port;
	return http;
fail:
	payq_http_stop(http);
	return NULL;
}

int payq_http_port(const payq_http_t *http)
{
	return http ? http->port : -1;
}

void payq_http_stop(payq_http_t *http)
{
	if (!http)
		return;
	if (http->daemon)
		MHD_stop_daemon(http->daemon);
	free(http);
}
