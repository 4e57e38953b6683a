/* server.c - the HTTP side of payq-sandbox-gateway: request bodies and replies shared by both
 * APIs, the listening sockets, the libmicrohttpd daemons (GnuTLS for the payments API's TLS
 * and client certificates), and the payments listener that "down" quiesces and "up" serves
 * again on the same port. */
#include "server.h"

#include <arpa/inet.h>
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "payments.h"
#include "state.h"
#include "util.h"

struct sandbox_creds creds;

/* The payments listener. Its socket stays bound for the whole run, so that "down" keeps
 * the port (shutdown() stops the listening) and "up" listens on it again. */
static struct {
	pthread_mutex_t lock;
	int fd;
	struct MHD_Daemon *daemon;   /* NULL while down */
	struct MHD_Daemon **retired; /* quiesced daemons finishing their connections */
	size_t nretired;
} api = {.lock = PTHREAD_MUTEX_INITIALIZER, .fd = -1};

/* Queues body (malloc'd; taken) with status, plus one optional header. */
enum MHD_Result reply(struct MHD_Connection *conn, unsigned int status, char *body,
		      const char *type, const char *header, const char *value)
{
	struct MHD_Response *resp =
		MHD_create_response_from_buffer(strlen(body), body, MHD_RESPMEM_MUST_FREE);
	enum MHD_Result ret;

	if (!resp) {
		free(body);
		return MHD_NO;
	}
	MHD_add_response_header(resp, MHD_HTTP_HEADER_CONTENT_TYPE, type);
	if (header)
		MHD_add_response_header(resp, header, value);
	ret = MHD_queue_response(conn, status, resp);
	MHD_destroy_response(resp);
	return ret;
}

enum MHD_Result reply_json(struct MHD_Connection *conn, cJSON *o)
{
	char *body = must(cJSON_PrintUnformatted(o));

	cJSON_Delete(o);
	return reply(conn, MHD_HTTP_OK, body, JSON_TYPE, NULL, NULL);
}

/* Answers {"error": MESSAGE}. */
enum MHD_Result reply_error(struct MHD_Connection *conn, unsigned int status, const char *fmt, ...)
{
	char msg[512], quoted[1100], *body;
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	payq_json_escape(quoted, sizeof(quoted), msg);
	if (asprintf(&body, "{\"error\":%s}", quoted) < 0)
		must(NULL);
	return reply(conn, status, body, JSON_TYPE, NULL, NULL);
}

enum MHD_Result reply_405(struct MHD_Connection *conn, const char *allow)
{
	char *body = must(strdup("{\"error\":\"method not allowed\"}"));

	return reply(conn, MHD_HTTP_METHOD_NOT_ALLOWED, body, JSON_TYPE, MHD_HTTP_HEADER_ALLOW,
		     allow);
}

/* libmicrohttpd calls a handler once for the headers, once per body chunk and once at
 * the end. Gathers the body (past BODY_MAX it is dropped and remembered as too large)
 * and returns true on that last call. */
bool gather(void **con_cls, const char *data, size_t *size)
{
	request_t *req = *con_cls;

	if (!req) {
		*con_cls = must(calloc(1, sizeof(*req)));
		return false;
	}
	if (!*size)
		return true;
	if (req->too_large || req->len + *size > BODY_MAX) {
		req->too_large = true;
		free(req->body);
		req->body = NULL;
		req->len = 0;
	} else {
		req->body = must(realloc(req->body, req->len + *size + 1));
		memcpy(req->body + req->len, data, *size);
		req->len += *size;
		req->body[req->len] = '\0';
	}
	*size = 0;
	return false;
}

/* Called for every request the handler saw, answered or not. */
static void request_done(void *cls, struct MHD_Connection *conn, void **con_cls,
			 enum MHD_RequestTerminationCode toe)
{
	request_t *req = *con_cls;

	if (req)
		free(req->body);
	free(req);
	*con_cls = NULL;
}

/* An integral JSON number in [min, max]. */
bool json_int(const cJSON *v, int64_t min, int64_t max, int64_t *out)
{
	if (!cJSON_IsNumber(v) || !(v->valuedouble >= (double)min) ||
	    !(v->valuedouble <= (double)max) || v->valuedouble != (double)(int64_t)v->valuedouble)
		return false;
	*out = (int64_t)v->valuedouble;
	return true;
}

/* ---- listeners ---- */

/* A TCP socket bound to sin with SO_REUSEADDR, or -1 with errno. */
static int bind_one(const struct sockaddr_in *sin)
{
	int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0), on = 1, e;

	if (fd < 0)
		return -1;
	setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &on, sizeof(on));
	if (!bind(fd, (const struct sockaddr *)sin, sizeof(*sin)))
		return fd;
	e = errno;
	close(fd);
	errno = e;
	return -1;
}

/* A socket bound to *sin, not yet listening; port 0 becomes the port chosen. Linux lets
 * go of an automatically chosen port when its listening socket is shut down ("down"),
 * but keeps one bound by number: so a probe socket picks the port, and the real socket
 * binds it by number (SO_REUSEADDR allows both until the probe is closed). */
int bind_socket(struct sockaddr_in *sin, char *err, size_t size)
{
	socklen_t len = sizeof(*sin);
	int probe = -1, fd = -1;

	if (!sin->sin_port &&
	    ((probe = bind_one(sin)) < 0 || getsockname(probe, (struct sockaddr *)sin, &len)))
		goto out;
	fd = bind_one(sin);
out:
	if (fd < 0)
		payq_err(err, size, "bind %s:%d: %s", inet_ntoa(sin->sin_addr),
			 ntohs(sin->sin_port), strerror(errno));
	if (probe >= 0)
		close(probe);
	return fd;
}

static void mhd_logger(void *cls, const char *fmt, va_list ap)
{
	char msg[512];

	vsnprintf(msg, sizeof(msg), fmt, ap);
	msg[strcspn(msg, "\n")] = '\0';
	/* Drops and cut connections say this; they are deliberate here. */
	if (!strstr(msg, "Application reported internal error"))
		fprintf(stderr, PROG ": http: %s\n", msg);
}

/* Listens on fd and serves it with handler: one thread per connection, so that a
 * latency sleep holds up only its own request, and poll(), so that descriptors above
 * FD_SETSIZE work. ITC makes MHD_quiesce_daemon possible. */
struct MHD_Daemon *serve(int fd, MHD_AccessHandlerCallback handler, bool tls, char *err,
			 size_t size)
{
	struct MHD_Daemon *d;
	unsigned int flags = MHD_USE_THREAD_PER_CONNECTION | MHD_USE_INTERNAL_POLLING_THREAD |
			     MHD_USE_POLL | MHD_USE_ITC | MHD_USE_ERROR_LOG;
	/* TLS: the certificate and key, and the CA of client certificates (MHD then asks
	 * the client for one; client_cert_ok() checks it). */
	struct MHD_OptionItem tls_opts[] = {
		{tls ? MHD_OPTION_HTTPS_MEM_CERT : MHD_OPTION_END, 0, creds.cert},
		{MHD_OPTION_HTTPS_MEM_KEY, 0, creds.key},
		{creds.client_ca ? MHD_OPTION_HTTPS_MEM_TRUST : MHD_OPTION_END, 0, creds.client_ca},
		{MHD_OPTION_END, 0, NULL},
	};

	if (listen(fd, 1024)) {
		payq_err(err, size, "listen: %s", strerror(errno));
		return NULL;
	}
	d = MHD_start_daemon(flags | (tls ? MHD_USE_TLS : 0), 0, NULL, NULL, handler, NULL,
			     MHD_OPTION_EXTERNAL_LOGGER, mhd_logger, NULL, MHD_OPTION_LISTEN_SOCKET,
			     fd, MHD_OPTION_NOTIFY_COMPLETED, request_done, NULL,
			     MHD_OPTION_CONNECTION_LIMIT, (unsigned int)4096,
			     MHD_OPTION_CONNECTION_TIMEOUT, (unsigned int)60, MHD_OPTION_ARRAY,
			     tls_opts, MHD_OPTION_END);
	if (!d)
		payq_err(err, size, "libmicrohttpd could not start");
	return d;
}

/* Stops listening: new connections are refused at once, the port stays ours. The old
 * daemon keeps its connections and is stopped by reap() once they are gone. Quiescing
 * also keeps MHD from closing api.fd. Under api.lock. */
static int api_quiesce(char *err, size_t size)
{
	if (MHD_quiesce_daemon(api.daemon) == MHD_INVALID_SOCKET)
		return payq_err(err, size, "libmicrohttpd could not stop listening");
	shutdown(api.fd, SHUT_RD);
	api.retired = must(realloc(api.retired, (api.nretired + 1) * sizeof(*api.retired)));
	api.retired[api.nretired++] = api.daemon;
	api.daemon = NULL;
	return 0;
}

/* Switches the payments API down or up; -1 with err when the listener did not follow. */
int api_set_down(bool down, char *err, size_t size)
{
	bool was_up;
	int rc = 0;

	pthread_mutex_lock(&api.lock);
	was_up = api.daemon;
	if (down && api.daemon) {
		pthread_mutex_lock(&st.lock);
		st.down = true; /* first, so that no new request starts */
		pthread_mutex_unlock(&st.lock);
		rc = api_quiesce(err, size);
	} else if (!down && !api.daemon) {
		api.daemon = serve(api.fd, on_api, creds.cert, err, size);
		rc = api.daemon ? 0 : -1;
	}
	pthread_mutex_lock(&st.lock);
	st.down = !api.daemon;
	pthread_mutex_unlock(&st.lock);
	if (was_up != !!api.daemon)
		fprintf(stderr, PROG ": payments API %s\n", api.daemon ? "up" : "down");
	pthread_mutex_unlock(&api.lock);
	return rc;
}

/* Stops the retired daemons that have no connection left (every one when all). */
void reap(bool all)
{
	size_t kept = 0;

	pthread_mutex_lock(&api.lock);
	for (size_t i = 0; i < api.nretired; i++) {
		const union MHD_DaemonInfo *info =
			MHD_get_daemon_info(api.retired[i], MHD_DAEMON_INFO_CURRENT_CONNECTIONS);
		if (all || (info && !info->num_connections))
			MHD_stop_daemon(api.retired[i]);
		else
			api.retired[kept++] = api.retired[i];
	}
	api.nretired = kept;
	pthread_mutex_unlock(&api.lock);
}

int api_start(struct sockaddr_in *addr, char *err, size_t size)
{
	if ((api.fd = bind_socket(addr, err, size)) < 0 ||
	    !(api.daemon = serve(api.fd, on_api, creds.cert, err, size)))
		return -1;
	return 0;
}

void api_stop(void)
{
	char err[512];

	pthread_mutex_lock(&api.lock);
	if (api.daemon)
		api_quiesce(err, sizeof(err)); /* so that api.fd is ours to close */
	pthread_mutex_unlock(&api.lock);
	reap(true);
	if (api.fd >= 0)
		close(api.fd);
	free(api.retired);
}
