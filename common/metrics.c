/* metrics.c - a mutex-guarded Prometheus registry and its text exposition format 0.0.4. */
#include "metrics.h"

#include <math.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MAX_FAMILIES 128

struct series {
	char *labels;	   /* "" when unlabelled */
	double value;	   /* counter or gauge value; histogram sum */
	uint64_t count;	   /* histogram observations */
	uint64_t *buckets; /* per-bucket counts, not cumulative; +Inf is implied by count */
};

struct family {
	char *name;
	char *help;
	payq_metric_type_t type;
	double *bounds;
	size_t nbounds;
	struct series *series;
	size_t nseries, cap;
};

struct buf {
	char *p;
	size_t len, cap;
	bool oom;
};

/* One lock guards everything below; metrics are updated per batch, not per byte. */
static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
static struct family families[MAX_FAMILIES];
static size_t nfamilies;

static bool valid_name(const char *s)
{
	if (!s || !*s || (*s >= '0' && *s <= '9'))
		return false;
	for (; *s; s++) {
		char c = *s;
		if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
		      c == '_' || c == ':'))
			return false;
	}
	return true;
}

static struct family *find_family(const char *name)
{
	for (size_t i = 0; i < nfamilies; i++)
		if (!strcmp(families[i].name, name))
			return &families[i];
	return NULL;
}

/* Finds or creates a series; NULL only when out of memory. */
static struct series *get_series(struct family *f, const char *labels)
{
	struct series *s;

	if (!labels)
		labels = "";
	for (size_t i = 0; i < f->nseries; i++)
		if (!strcmp(f->series[i].labels, labels))
			return &f->series[i];
	if (f->nseries == f->cap) {
		size_t cap = f->cap ? f->cap * 2 : 8;
		struct series *n = realloc(f->series, cap * sizeof(*n));
		if (!n)
			return NULL;
		f->series = n;
		f->cap = cap;
	}
	s = &f->series[f->nseries];
	memset(s, 0, sizeof(*s));
	s->labels = strdup(labels);
	if (f->type == PAYQ_METRIC_HISTOGRAM)
		s->buckets = calloc(f->nbounds ? f->nbounds : 1, sizeof(*s->buckets));
	if (!s->labels || (f->type == PAYQ_METRIC_HISTOGRAM && !s->buckets)) {
		free(s->labels);
		free(s->buckets);
		return NULL;
	}
	f->nseries++;
	return s;
}

int payq_metrics_declare(const char *name, payq_metric_type_t type, const char *help,
			 const double *buckets, size_t nbuckets)
{
	struct family *f;
	int rc = -1;

	if (!valid_name(name))
		return -1;
	if (type == PAYQ_METRIC_HISTOGRAM) {
		for (size_t i = 0; i < nbuckets; i++)
			if (!isfinite(buckets[i]) || (i > 0 && buckets[i] <= buckets[i - 1]))
				return -1;
	} else {
		nbuckets = 0;
	}
	pthread_mutex_lock(&lock);
	if (find_family(name)) {
		rc = 0;
		goto out;
	}
	if (nfamilies == MAX_FAMILIES)
		goto out;
	f = &families[nfamilies];
	memset(f, 0, sizeof(*f));
	f->name = strdup(name);
	f->help = strdup(help ? help : "");
	f->type = type;
	f->nbounds = nbuckets;
	if (nbuckets) {
		f->bounds = malloc(nbuckets * sizeof(*f->bounds));
		if (f->bounds)
			memcpy(f->bounds, buckets, nbuckets * sizeof(*f->bounds));
	}
	if (!f->name || !f->help || (nbuckets && !f->bounds)) {
		free(f->name);
		free(f->help);
		free(f->bounds);
		goto out;
	}
	nfamilies++;
	rc = 0;
out:
	pthread_mutex_unlock(&lock);
	return rc;
}

static void update(const char *name, const char *labels, double v, bool set)
{
	struct family *f;
	struct series *s;

	pthread_mutex_lock(&lock);
	f = find_family(name);
	if (f && f->type != PAYQ_METRIC_HISTOGRAM && (s = get_series(f, labels)))
		s->value = set ? v : s->value + v;
	pthread_mutex_unlock(&lock);
}

void payq_metrics_add(const char *name, const char *labels, double v)
{
	update(name, labels, v, false);
}

void payq_metrics_set(const char *name, const char *labels, double v)
{
	update(name, labels, v, true);
}

void payq_metrics_observe(const char *name, const char *labels, double v)
{
	struct family *f;
	struct series *s;

	pthread_mutex_lock(&lock);
	f = find_family(name);
	if (f && f->type == PAYQ_METRIC_HISTOGRAM && (s = get_series(f, labels))) {
		/* NaN compares false everywhere, so it lands in +Inf only. */
		for (size_t i = 0; i < f->nbounds; i++) {
			if (v <= f->bounds[i]) {
				s->buckets[i]++;
				break;
			}
		}
		s->count++;
		s->value += v;
	}
	pthread_mutex_unlock(&lock);
}

void payq_metrics_remove(const char *name, const char *labels)
{
	struct family *f;

	if (!labels)
		labels = "";
	pthread_mutex_lock(&lock);
	f = find_family(name);
	for (size_t i = 0; f && i < f->nseries; i++) {
		if (strcmp(f->series[i].labels, labels))
			continue;
		free(f->series[i].labels);
		free(f->series[i].buckets);
		/* Order does not matter: rendering takes the series as they lie. */
		f->series[i] = f->series[--f->nseries];
		break;
	}
	pthread_mutex_unlock(&lock);
}

size_t payq_metrics_escape_label(char *buf, size_t size, const char *value)
{
	size_t n = 0;

	for (const char *p = value; *p; p++) {
		const char *rep = *p == '\\'   ? "\\\\"
				  : *p == '"'  ? "\\\""
				  : *p == '\n' ? "\\n"
					       : NULL;
		size_t len = rep ? 2 : 1;
		if (n + len >= size)
			break;
		if (rep)
			memcpy(buf + n, rep, 2);
		else
			buf[n] = *p;
		n += len;
	}
	if (size)
		buf[n < size ? n : size - 1] = '\0';
	return n;
}

double payq_metrics_get(const char *name, const char *labels)
{
	struct family *f;
	double v = 0;

	if (!labels)
		labels = "";
	pthread_mutex_lock(&lock);
	f = find_family(name);
	if (f && f->type != PAYQ_METRIC_HISTOGRAM) {
		for (size_t i = 0; i < f->nseries; i++) {
			if (!strcmp(f->series[i].labels, labels)) {
				v = f->series[i].value;
				break;
			}
		}
	}
	pthread_mutex_unlock(&lock);
	return v;
}

static void bprintf(struct buf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static void bprintf(struct buf *b, const char *fmt, ...)
{
	va_list ap;
	int n;

	if (b->oom)
		return;
	for (;;) {
		va_start(ap, fmt);
		n = vsnprintf(b->p + b->len, b->cap - b->len, fmt, ap);
		va_end(ap);
		if (n < 0) {
			b->oom = true;
			return;
		}
		if ((size_t)n < b->cap - b->len)
			break;
		size_t cap =
			b->cap * 2 > b->len + (size_t)n + 1 ? b->cap * 2 : b->len + (size_t)n + 1;
		char *p = realloc(b->p, cap);
		if (!p) {
			b->oom = true;
			return;
		}
		b->p = p;
		b->cap = cap;
	}
	b->len += (size_t)n;
}

/* Shortest text that reads back as v: integers in full, else up to 17 digits. */
static void format_value(char *out, size_t size, double v)
{
	if (isnan(v)) {
		snprintf(out, size, "NaN");
	} else if (isinf(v)) {
		snprintf(out, size, v > 0 ? "+Inf" : "-Inf");
	} else if (v == floor(v) && fabs(v) < 9007199254740992.0) {
		snprintf(out, size, "%lld", (long long)v);
	} else {
		for (int prec = 15; prec <= 17; prec++) {
			snprintf(out, size, "%.*g", prec, v);
			if (strtod(out, NULL) == v)
				break;
		}
	}
}

static void render_help(struct buf *b, const char *help)
{
	for (; *help; help++) {
		if (*help == '\\')
			bprintf(b, "\\\\");
		else if (*help == '\n')
			bprintf(b, "\\n");
		else
			bprintf(b, "%c", *help);
	}
}

/* One sample line: name[suffix]{labels[,extra]} value */
static void render_sample(struct buf *b, const struct family *f, const char *suffix,
			  const char *labels, const char *extra, double v)
{
	char num[64];
	bool any = *labels || extra;

	format_value(num, sizeof(num), v);
	bprintf(b, "%s%s%s%s%s%s%s %s\n", f->name, suffix, any ? "{" : "", labels,
		*labels && extra ? "," : "", extra ? extra : "", any ? "}" : "", num);
}

static void render_family(struct buf *b, const struct family *f)
{
	static const char *const type_names[] = {"counter", "gauge", "histogram"};
	char le[80], num[64];

	bprintf(b, "# HELP %s ", f->name);
	render_help(b, f->help);
	bprintf(b, "\n# TYPE %s %s\n", f->name, type_names[f->type]);
	if (f->type != PAYQ_METRIC_HISTOGRAM) {
		/* An unused family still shows a zero so dashboards and alerts see it. */
		if (!f->nseries)
			render_sample(b, f, "", "", NULL, 0);
		for (size_t i = 0; i < f->nseries; i++)
			render_sample(b, f, "", f->series[i].labels, NULL, f->series[i].value);
		return;
	}
	for (size_t i = 0; i < f->nseries; i++) {
		const struct series *s = &f->series[i];
		uint64_t cum = 0;

		for (size_t j = 0; j < f->nbounds; j++) {
			cum += s->buckets[j];
			format_value(num, sizeof(num), f->bounds[j]);
			snprintf(le, sizeof(le), "le=\"%s\"", num);
			render_sample(b, f, "_bucket", s->labels, le, (double)cum);
		}
		render_sample(b, f, "_bucket", s->labels, "le=\"+Inf\"", (double)s->count);
		render_sample(b, f, "_sum", s->labels, NULL, s->value);
		render_sample(b, f, "_count", s->labels, NULL, (double)s->count);
	}
}

char *payq_metrics_render(void)
{
	struct buf b = {.cap = 4096};

	b.p = malloc(b.cap);
	if (!b.p)
		return NULL;
	b.p[0] = '\0';
	pthread_mutex_lock(&lock);
	for (size_t i = 0; i < nfamilies; i++)
		render_family(&b, &families[i]);
	pthread_mutex_unlock(&lock);
	if (b.oom) {
		free(b.p);
		return NULL;
	}
	return b.p;
}

void payq_metrics_reset(void)
{
	pthread_mutex_lock(&lock);
	for (size_t i = 0; i < nfamilies; i++) {
		struct family *f = &families[i];
		for (size_t j = 0; j < f->nseries; j++) {
			free(f->series[j].labels);
			free(f->series[j].buckets);
		}
		free(f->series);
		free(f->bounds);
		free(f->help);
		free(f->name);
	}
	memset(families, 0, sizeof(families));
	nfamilies = 0;
	pthread_mutex_unlock(&lock);
}
