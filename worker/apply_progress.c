/* apply_progress.c - consumer_progress: the reset generation each partition's progress
 * writes are guarded by, the writes' parameters and results, and the read on assign. */
#include "apply_internal.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <libpq-fe.h>

#include "pg.h"
#include "util.h"

static struct gen *gen_find(payq_apply_t *a, int32_t partition)
{
	for (size_t i = 0; i < a->ngens; i++)
		if (a->gens[i].partition == partition)
			return &a->gens[i];
	return NULL;
}

/* Remembers a partition's reset generation. Out of memory it stays unknown, and the
 * next progress write takes the row's current one. */
void apply_gen_set(payq_apply_t *a, int32_t partition, int64_t generation)
{
	struct gen *g = gen_find(a, partition);

	if (!g && !payq_grow((void **)&a->gens, &a->gens_cap,
			     a->ngens < a->gens_cap ? a->gens_cap : 2 * a->gens_cap + 4,
			     sizeof(*a->gens)))
		g = &a->gens[a->ngens++];
	if (!g)
		return;
	g->partition = partition;
	g->generation = generation;
}

/* Fills the progress parameters: partition, next offset, expected reset generation. */
void apply_progress_params(payq_apply_t *a, const payq_progress_t *progress, size_t n)
{
	char num[32];

	for (size_t i = 0; i < n; i++) {
		const struct gen *g = gen_find(a, progress[i].partition);
		snprintf(num, sizeof(num), "%d", (int)progress[i].partition);
		payq_sqlbuf_str(&a->p[P_PR_PART], num);
		snprintf(num, sizeof(num), "%" PRId64, progress[i].next_offset);
		payq_sqlbuf_str(&a->p[P_PR_NEXT], num);
		snprintf(num, sizeof(num), "%" PRId64, g ? g->generation : 0);
		payq_sqlbuf_str(&a->p[P_PR_GEN], g ? num : NULL);
	}
}

/* After a committed progress write: every partition that upsert_progress did not
 * return was refused, its row reset meanwhile; the others confirm their generation. */
void apply_note_progress(payq_apply_t *a, const payq_progress_t *progress, size_t n,
			 const PGresult *res)
{
	for (size_t i = 0; i < n; i++) {
		int r = 0, rows = res ? PQntuples(res) : 0;
		for (; r < rows; r++)
			if (strtol(PQgetvalue(res, r, 0), NULL, 10) == progress[i].partition)
				break;
		if (r < rows) {
			apply_gen_set(a, progress[i].partition,
				      strtoll(PQgetvalue(res, r, 1), NULL, 10));
		} else if (!a->stale) {
			a->stale = true;
			a->stale_partition = progress[i].partition;
		}
	}
}

bool payq_apply_progress_stale(const payq_apply_t *a, int32_t *partition)
{
	if (a->stale && partition)
		*partition = a->stale_partition;
	return a->stale;
}

payq_progress_read_t payq_apply_read_progress(payq_apply_t *a, int32_t partition, int64_t *next)
{
	char pbuf[16];
	const char *params[3] = {a->group, a->topic, pbuf};
	PGresult *res;
	payq_progress_read_t found = PAYQ_PROGRESS_ERROR;

	*next = -1;
	if (!payq_apply_connected(a))
		return PAYQ_PROGRESS_ERROR;
	snprintf(pbuf, sizeof(pbuf), "%d", (int)partition);
	res = payq_pg_exec_prepared(a->conn, "read_progress", 3, params, NULL, NULL, 0);
	if (PQresultStatus(res) == PGRES_TUPLES_OK) {
		found = PQntuples(res) ? PAYQ_PROGRESS_FOUND : PAYQ_PROGRESS_NONE;
		if (found == PAYQ_PROGRESS_FOUND)
			*next = strtoll(PQgetvalue(res, 0, 0), NULL, 10);
		/* The generation this assignment works under; no row yet is generation 0. */
		apply_gen_set(a, partition,
			      PQntuples(res) ? strtoll(PQgetvalue(res, 0, 1), NULL, 10) : 0);
	} else
		a->healthy = PQstatus(a->conn) == CONNECTION_OK;
	PQclear(res);
	return found;
}
