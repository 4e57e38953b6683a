/* strmap.h - an open-addressing index from one or two strings to an array position.
 *
 * The map stores pointers, not copies: the keys must outlive it (or its next reset).
 * It never grows by itself: reset it with room for every key it will hold. */
#pragma once

#include <stddef.h>

typedef struct payq_strmap_slot {
	const char *k1, *k2; /* k2 is NULL for a one-string key */
	int idx;	     /* -1 when empty */
} payq_strmap_slot_t;

typedef struct payq_strmap {
	payq_strmap_slot_t *slots;
	size_t cap; /* a power of two, at least twice the keys it may hold */
} payq_strmap_t;

typedef enum {
	PAYQ_STRMAP_OK = 0,
	PAYQ_STRMAP_NOMEM,
} payq_strmap_status_t;

/* Empties the map and makes room for want keys. */
payq_strmap_status_t payq_strmap_reset(payq_strmap_t *m, size_t want);

/* Frees the slots; the map may be reset again afterwards. */
void payq_strmap_free(payq_strmap_t *m);

/* Returns the slot for (k1, k2): either the existing one (idx >= 0) or the empty one to
 * fill (set k1, k2 and idx). k2 may be NULL. The map must have been reset with room. */
payq_strmap_slot_t *payq_strmap_slot(payq_strmap_t *m, const char *k1, const char *k2);

/* The position stored for (k1, k2), or -1. */
int payq_strmap_get(payq_strmap_t *m, const char *k1, const char *k2);

/* Stores idx for (k1, k2), replacing any position it had. */
void payq_strmap_put(payq_strmap_t *m, const char *k1, const char *k2, int idx);
