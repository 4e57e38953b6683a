/* server.h - the HTTP side of payq-sandbox-gateway (libmicrohttpd, GnuTLS for TLS): the
 * credentials of the payments API, request bodies, replies, and the listening sockets and
 * daemons, including the payments listener that "down" switches off. */
#pragma once

#include <netinet/in.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <cjson/cJSON.h>
#include <microhttpd.h>

#define BODY_MAX (64 * 1024)
#define JSON_TYPE "application/json"

/* The payments API's credentials: with --tls-cert and --tls-key it speaks HTTPS only;
 * with --api-key-file every payments request needs "Authorization: Bearer KEY". Read
 * once at start (main.c), then only read. */
struct sandbox_creds {
	char *cert, *key; /* PEM, NUL-terminated; NULL: plaintext */
	char *client_ca;  /* PEM: a client certificate it signed is required; NULL: none asked */
	char *api_key;	  /* NULL: no check */
};
extern struct sandbox_creds creds;

/* A request's body, gathered across the handler calls. */
typedef struct request {
	char *body;
	size_t len;
	bool too_large;
} request_t;

/* Queues body (malloc'd; taken) with status, plus one optional header. */
enum MHD_Result reply(struct MHD_Connection *conn, unsigned int status, char *body,
		      const char *type, const char *header, const char *value);
/* Answers 200 with o as JSON; deletes o. */
enum MHD_Result reply_json(struct MHD_Connection *conn, cJSON *o);
/* Answers {"error": MESSAGE}. */
enum MHD_Result reply_error(struct MHD_Connection *conn, unsigned int status, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));
/* Answers 405 with an Allow header. */
enum MHD_Result reply_405(struct MHD_Connection *conn, const char *allow);

/* Gathers a request body into *con_cls (a request_t); true on the handler's last call. */
bool gather(void **con_cls, const char *data, size_t *size);
/* An integral JSON number in [min, max]. */
bool json_int(const cJSON *v, int64_t min, int64_t max, int64_t *out);

/* A socket bound to *sin, not yet listening; port 0 becomes the port chosen. Returns it,
 * or -1 with err. */
int bind_socket(struct sockaddr_in *sin, char *err, size_t size);
/* Listens on fd and serves it with handler (with TLS: creds). Returns the daemon, or NULL
 * with err. */
struct MHD_Daemon *serve(int fd, MHD_AccessHandlerCallback handler, bool tls, char *err,
			 size_t size);

/* The payments listener. api_start() binds *addr (port 0 becomes the port chosen) and
 * serves it; -1 with err on failure. api_set_down() switches it down or up; -1 with err
 * when the listener did not follow. reap() stops the daemons left by "down" once their
 * connections are gone (every one when all). api_stop() stops and closes it all, also
 * after a failed api_start(). */
int api_start(struct sockaddr_in *addr, char *err, size_t size);
int api_set_down(bool down, char *err, size_t size);
void reap(bool all);
void api_stop(void);
