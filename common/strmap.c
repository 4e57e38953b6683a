/* strmap.c - an open-addressing index from one or two strings to an array position. */
#include "strmap.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

/* FNV-1a over one or two strings, with a separator so ("ab", "c") and ("a", "bc")
 * differ. */
static uint32_t hash2(const char *k1, const char *k2)
{
	uint32_t h = 2166136261u;

	for (const char *s = k1; *s; s++)
		h = (h ^ (unsigned char)*s) * 16777619u;
	h = (h ^ 0x1f) * 16777619u;
	for (const char *s = k2 ? k2 : ""; *s; s++)
		h = (h ^ (unsigned char)*s) * 16777619u;
	return h;
}

payq_strmap_status_t payq_strmap_reset(payq_strmap_t *m, size_t want)
{
	size_t cap = 64;

	while (cap < want * 2)
		cap <<= 1;
	if (cap > m->cap) {
		payq_strmap_slot_t *s = realloc(m->slots, cap * sizeof(*s));
		if (!s)
			return PAYQ_STRMAP_NOMEM;
		m->slots = s;
		m->cap = cap;
	}
	for (size_t i = 0; i < m->cap; i++)
		m->slots[i].idx = -1;
	return PAYQ_STRMAP_OK;
}

void payq_strmap_free(payq_strmap_t *m)
{
	free(m->slots);
	m->slots = NULL;
	m->cap = 0;
}

/* Ends: the map is at most half full (payq_strmap_reset), so an empty slot exists. */
payq_strmap_slot_t *payq_strmap_slot(payq_strmap_t *m, const char *k1, const char *k2)
{
	size_t i = hash2(k1, k2) & (m->cap - 1);

	for (;; i = (i + 1) & (m->cap - 1)) {
		payq_strmap_slot_t *s = &m->slots[i];
		if (s->idx < 0)
			return s;
		if (!strcmp(s->k1, k1) && (k2 ? s->k2 && !strcmp(s->k2, k2) : !s->k2))
			return s;
	}
}

int payq_strmap_get(payq_strmap_t *m, const char *k1, const char *k2)
{
	return payq_strmap_slot(m, k1, k2)->idx;
}

void payq_strmap_put(payq_strmap_t *m, const char *k1, const char *k2, int idx)
{
	payq_strmap_slot_t *s = payq_strmap_slot(m, k1, k2);

	s->k1 = k1;
	s->k2 = k2;
	s->idx = idx;
}
