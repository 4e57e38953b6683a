/* payments.h - payq-sandbox-gateway's payments API: POST /charges and GET /charges/KEY, with
 * their injected faults and latency, the credentials check and the request log. */
#pragma once

#include <stdio.h>

#include <microhttpd.h>

/* --request-log: opened line-buffered by main.c, NULL when not asked for. */
extern FILE *request_log;

/* The libmicrohttpd handler of the payments listener. */
enum MHD_Result on_api(void *cls, struct MHD_Connection *conn, const char *url, const char *method,
		       const char *version, const char *data, size_t *size, void **con_cls);

/* The latency sleeps: nap_init() once at startup; nap_wake_all() wakes every sleeper for
 * good (before the daemons stop, so that stopping waits for nobody); nap_destroy() last. */
void nap_init(void);
void nap_wake_all(void);
void nap_destroy(void);
