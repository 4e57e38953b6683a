/* http.h - the worker's HTTP endpoint: /metrics, /healthz and /readyz on libmicrohttpd. */
#pragma once

#include <stdbool.h>
#include <stddef.h>

#include <netinet/in.h>
#include <sys/socket.h>

typedef struct payq_http payq_http_t;

/* Health probes; called from the HTTP thread, so they must only read atomics or take
 * their own locks. Return true for 200, false for 503; write a short reason into msg. */
typedef bool (*payq_http_probe_fn)(void *opaque, char *msg, size_t msg_size);

/* Starts serving on addr ("host:port", "0.0.0.0:9400", ":9400", "[::]:9400", "[::1]:9400";
 * port 0 picks a free one). "[::]" is dual stack: IPv4 clients connect too. Returns the
 * server, or NULL with errstr. */
payq_http_t *payq_http_start(const char *addr, payq_http_probe_fn healthz,
			     payq_http_probe_fn readyz, void *opaque, char *errstr,
			     size_t errstr_size);

/* A listening address, IPv4 or IPv6: the sockaddr in ss, its length in len. */
typedef struct payq_sockaddr {
	struct sockaddr_storage ss;
	socklen_t len;
} payq_sockaddr_t;

/* Splits an address into a sockaddr:
 *   "host:port"    IPv4: a dotted quad, or a name resolved to its first IPv4 address;
 *   ":port"        every IPv4 address (0.0.0.0);
 *   "[v6]:port"    an IPv6 literal ("[::]" every address, "[::1]" the loopback).
 * An IPv6 address without brackets is refused (which colon is the port's?). Errors start
 * with what (e.g. a flag name). Returns 0, or -1 with errstr. */
int payq_http_parse_sockaddr(const char *what, const char *addr, payq_sockaddr_t *sa, char *errstr,
			     size_t errstr_size);

/* payq_http_parse_sockaddr() for IPv4 only: "[v6]:port" is refused. */
int payq_http_parse_addr(const char *what, const char *addr, struct sockaddr_in *sin, char *errstr,
			 size_t errstr_size);

/* The port actually bound. */
int payq_http_port(const payq_http_t *http);

/* Stops the server and frees it. NULL is ignored. */
void payq_http_stop(payq_http_t *http);
