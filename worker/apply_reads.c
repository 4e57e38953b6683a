/* apply_reads.c - small statements outside any batch: the dedup horizon, and an
 * anomaly not tied to a command. */
#include "apply_internal.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <libpq-fe.h>

#include "pg.h"
#include "util.h"

int payq_apply_read_horizon(payq_apply_t *a, int64_t *horizon_ms)
{
	PGresult *res;
	int ret = -1;

	*horizon_ms = 0;
	if (!payq_apply_connected(a))
		return -1;
	res = PQexecPrepared(a->conn, "read_horizon", 0, NULL, NULL, NULL, 0);
	if (PQresultStatus(res) == PGRES_TUPLES_OK) {
		ret = 0;
		if (PQntuples(res) == 1)
			*horizon_ms = strtoll(PQgetvalue(res, 0, 0), NULL, 10);
	} else {
		a->healthy = PQstatus(a->conn) == CONNECTION_OK;
	}
	PQclear(res);
	return ret;
}

int payq_apply_anomaly(payq_apply_t *a, const char *kind, int32_t partition, int64_t offset,
		       const char *detail)
{
	char pbuf[16], obuf[32];
	const char *params[5] = {kind, detail, a->topic, pbuf, obuf};
	PGresult *res;
	int ret;

	if (!payq_apply_connected(a))
		return -1;
	snprintf(pbuf, sizeof(pbuf), "%d", (int)partition);
	snprintf(obuf, sizeof(obuf), "%" PRId64, offset);
	res = payq_pg_exec_prepared(a->conn, "ins_anomaly", 5, params, NULL, NULL, 0);
	ret = PQresultStatus(res) == PGRES_COMMAND_OK ? 0 : -1;
	PQclear(res);
	return ret;
}
