/* control.h - payq-sandbox-gateway's control API: health, fault switches, ledger, counters,
 * reset and forget. Never faulty, always plaintext. */
#pragma once

#include <microhttpd.h>

/* The libmicrohttpd handler of the control listener. */
enum MHD_Result on_control(void *cls, struct MHD_Connection *conn, const char *url,
			   const char *method, const char *version, const char *data, size_t *size,
			   void **con_cls);
