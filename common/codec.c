/* codec.c - the payq.commands v1 wire format: names and strict decoding (canon.c holds the
 * payload hash and the encoder). */
#include "codec.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>

#include "util.h"

static const char *const type_names[] = {"none", "create_order", "pay", "cancel_order"};

static const char *const reason_names[PAYQ_REASON__CNT] = {
	"ok",
	"empty",
	"too_large",
	"bad_encoding",
	"not_json",
	"duplicate_field",
	"unsupported_version",
	"unknown_type",
	"missing_field",
	"bad_field",
	"bad_amount",
	"key_mismatch",
};

const char *payq_cmd_type_name(payq_cmd_type_t t)
{
	if ((unsigned)t >= PAYQ_ARRAY_SIZE(type_names))
		return "none";
	return type_names[t];
}

payq_cmd_type_t payq_cmd_type_parse(const char *name)
{
	for (size_t i = 1; i < PAYQ_ARRAY_SIZE(type_names); i++)
		if (!strcmp(name, type_names[i]))
			return (payq_cmd_type_t)i;
	return PAYQ_CMD_NONE;
}

const char *payq_reason_name(payq_reason_t r)
{
	if ((unsigned)r >= PAYQ_REASON__CNT)
		return "unknown";
	return reason_names[r];
}

int payq_reason_parse(const char *name)
{
	for (int i = 0; i < PAYQ_REASON__CNT; i++)
		if (!strcmp(name, reason_names[i]))
			return i;
	return -1;
}

static bool id_char(unsigned char c)
{
	return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
	       c == '.' || c == '_' || c == ':' || c == '-';
}

static bool valid_id_n(const char *s, size_t len)
{
	if (len < 1 || len > PAYQ_ID_MAX)
		return false;
	for (size_t i = 0; i < len; i++)
		if (!id_char((unsigned char)s[i]))
			return false;
	return true;
}

bool payq_codec_valid_id(const char *s)
{
	return s && valid_id_n(s, strnlen(s, PAYQ_ID_MAX + 1));
}

const char *payq_codec_key_order_id(const void *key, size_t key_len, char *buf)
{
	if (!key || !valid_id_n(key, key_len))
		return NULL;
	memcpy(buf, key, key_len);
	buf[key_len] = '\0';
	return buf;
}

/* Returns the offset of the first byte that is not strict UTF-8 (RFC 3629: no overlong
 * forms, no encoded surrogates, nothing above U+10FFFF, no truncation), or n. */
static size_t utf8_invalid_at(const unsigned char *s, size_t n)
{
	size_t i = 0, len;

	while (i < n && (len = payq_utf8_char_len(s + i, n - i)))
		i += len;
	return i;
}

/* A top-level member: raw key (inside its quotes), raw value, decoded key. */
struct member {
	size_t key_off, key_len;
	size_t val_off, val_len;
	const char *name;
	size_t name_len;
};

struct doc {
	const char *s;
	size_t n;
	struct member *m;
	size_t cnt, cap;
	bool open;   /* the last member's value has started but not ended */
	char *arena; /* decoded strings; never more than n bytes in all */
	size_t used;
	char *errstr;
	size_t errstr_size;
};

__attribute__((format(printf, 3, 4))) static payq_reason_t fail(struct doc *d, payq_reason_t r,
								const char *fmt, ...)
{
	va_list ap;

	if (d->errstr && d->errstr_size) {
		va_start(ap, fmt);
		vsnprintf(d->errstr, d->errstr_size, fmt, ap);
		va_end(ap);
	}
	return r;
}

/* Quotes a raw span for an error message: at most 40 bytes, cut on a character
 * boundary, control bytes as '?', so a hostile value cannot bloat or break a header. */
static const char *show(const char *p, size_t len, char buf[48])
{
	size_t k = 0;
	bool cut = len > 40;

	if (cut) {
		len = 40;
		while (len > 0 && ((unsigned char)p[len] & 0xc0) == 0x80)
			len--;
	}
	for (size_t i = 0; i < len; i++)
		buf[k++] = (unsigned char)p[i] < 0x20 || p[i] == 0x7f ? '?' : p[i];
	if (cut)
		for (int i = 0; i < 3; i++)
			buf[k++] = '.';
	buf[k] = '\0';
	return buf;
}

static long hex4(const unsigned char *s, size_t n, size_t i)
{
	long v = 0;

	if (n < 4 || i > n - 4)
		return -1;
	for (size_t k = i; k < i + 4; k++) {
		unsigned char c = s[k];
		int x = c >= '0' && c <= '9'   ? c - '0'
			: c >= 'a' && c <= 'f' ? c - 'a' + 10
			: c >= 'A' && c <= 'F' ? c - 'A' + 10
					       : -1;
		if (x < 0)
			return -1;
		v = v * 16 + x;
	}
	return v;
}

static bool json_ws(unsigned char c)
{
	return c == ' ' || c == '\t' || c == '\n' || c == '\r';
}

static void close_value(struct doc *d, size_t end)
{
	struct member *m = &d->m[d->cnt - 1];

	if (!d->open)
		return;
	while (m->val_off < end && json_ws((unsigned char)d->s[m->val_off]))
		m->val_off++;
	while (end > m->val_off && json_ws((unsigned char)d->s[end - 1]))
		end--;
	m->val_len = end - m->val_off;
	d->open = false;
}

static void note(size_t *bad, size_t at)
{
	if (*bad == SIZE_MAX)
		*bad = at;
}

/* Scans one string body starting at *i, leaving *i past the closing quote. Returns
 * false on an escaped lone surrogate; notes other faults at *bad. cJSON would decode
 * a \u with bad hex digits as U+0000, so that is caught here. */
static bool scan_string(const unsigned char *s, size_t n, size_t *i, size_t *bad)
{
	size_t p = *i;

	while (p < n && s[p] != '"') {
		long cp, lo;

		if (s[p] < 0x20)
			note(bad, p);
		if (s[p] != '\\' || p + 1 >= n) {
			p++;
			continue;
		}
		if (s[p + 1] != 'u' || (cp = hex4(s, n, p + 2)) < 0) {
			if (s[p + 1] == 'u' || !memchr("\"\\/bfnrt", s[p + 1], 8))
				note(bad, p);
			p += 2;
			continue;
		}
		p += 6;
		if (cp >= 0xdc00 && cp <= 0xdfff)
			return false;
		if (cp >= 0xd800 && cp <= 0xdbff) {
			if (p + 1 >= n || s[p] != '\\' || s[p + 1] != 'u')
				return false;
			lo = hex4(s, n, p + 2);
			if (lo < 0xdc00 || lo > 0xdfff)
				return false;
			p += 6;
		}
	}
	if (p >= n)
		note(bad, n);
	*i = p + 1;
	return true;
}

/*
 * One pass over the raw bytes for what cJSON lets through or reports too coarsely.
 * An escaped lone surrogate is bad_encoding, as raw invalid UTF-8 is. Raw control
 * bytes (cJSON takes them as whitespace or string content, and a NUL would end its
 * input early) and non-ASCII bytes outside strings (a BOM) are not_json. Number syntax
 * is left to cJSON, which also takes 01 and 1.; that only matters in ignored fields,
 * since v and amount_minor are checked on their raw token. The pass also records the
 * span of every top-level member, trusted only after cJSON has accepted an object.
 */
static payq_reason_t scan(struct doc *d)
{
	const unsigned char *s = (const unsigned char *)d->s;
	size_t i = 0, bad = SIZE_MAX;
	bool want_key = false;
	int depth = 0;

	while (i < d->n) {
		unsigned char c = s[i];

		if (c == '"') {
			size_t start = ++i;

			if (!scan_string(s, d->n, &i, &bad))
				return fail(d, PAYQ_REASON_BAD_ENCODING,
					    "string escapes a lone UTF-16 surrogate near byte %zu",
					    start);
			if (depth != 1 || !want_key)
				continue;
			if (d->cnt == d->cap) {
				size_t cap = d->cap ? 2 * d->cap : 16;
				struct member *m = realloc(d->m, cap * sizeof(*m));
				if (!m)
					return fail(d, PAYQ_REASON_NOT_JSON, "out of memory");
				d->m = m;
				d->cap = cap;
			}
			d->m[d->cnt++] =
				(struct member){.key_off = start, .key_len = i - 1 - start};
			want_key = false;
			continue;
		}
		switch (c) {
		case '{':
		case '[':
			if (++depth == 1)
				want_key = c == '{';
			break;
		case '}':
		case ']':
			if (depth-- == 1 && d->cnt)
				close_value(d, i);
			break;
		case ',':
			if (depth == 1 && d->cnt) {
				close_value(d, i);
				want_key = true;
			}
			break;
		case ':':
			if (depth == 1 && d->cnt && !d->open) {
				d->m[d->cnt - 1].val_off = i + 1;
				d->open = true;
			}
			break;
		default:
			if (!json_ws(c) && (c < 0x20 || c >= 0x80))
				note(&bad, i);
		}
		i++;
	}
	if (bad != SIZE_MAX)
		return fail(d, PAYQ_REASON_NOT_JSON, "not valid JSON: bad byte at offset %zu", bad);
	return PAYQ_REASON_OK;
}

static size_t put_utf8(unsigned long cp, char *out)
{
	static const unsigned char lead[] = {0, 0, 0xc0, 0xe0, 0xf0};
	size_t len = cp < 0x80 ? 1 : cp < 0x800 ? 2 : cp < 0x10000 ? 3 : 4;

	for (size_t k = len - 1; k > 0; k--, cp >>= 6)
		out[k] = (char)(0x80 | (cp & 0x3f));
	out[0] = (char)(lead[len] | cp);
	return len;
}

/* Decodes the body of a string that scan() and cJSON accepted into the arena. The
 * result is never longer than the raw body, so the arena (n bytes) cannot overflow. */
static const char *unescape(struct doc *d, size_t off, size_t len, size_t *out_len)
{
	const unsigned char *s = (const unsigned char *)d->s;
	char *out = d->arena + d->used;
	size_t o = 0, i = off, end = off + len;

	while (i < end) {
		unsigned long cp;

		if (s[i] != '\\') {
			out[o++] = (char)s[i++];
			continue;
		}
		i += 2;
		switch (s[i - 1]) {
		case 'b': out[o++] = '\b'; break;
		case 'f': out[o++] = '\f'; break;
		case 'n': out[o++] = '\n'; break;
		case 'r': out[o++] = '\r'; break;
		case 't': out[o++] = '\t'; break;
		case 'u':
			cp = (unsigned long)hex4(s, end, i);
			i += 4;
			if (cp >= 0xd800 && cp <= 0xdbff) {
				cp = 0x10000 + ((cp - 0xd800) << 10) +
				     ((unsigned long)hex4(s, end, i + 2) - 0xdc00);
				i += 6;
			}
			o += put_utf8(cp, out + o);
			break;
		default: out[o++] = (char)s[i - 1];
		}
	}
	d->used += o;
	*out_len = o;
	return out;
}

static int cmp_name(const void *a, const void *b)
{
	const struct member *x = a, *y = b;
	int c = memcmp(x->name, y->name, x->name_len < y->name_len ? x->name_len : y->name_len);

	if (c)
		return c;
	return (x->name_len > y->name_len) - (x->name_len < y->name_len);
}

static const struct member *find(const struct doc *d, const char *name)
{
	size_t len = strlen(name);

	for (size_t i = 0; i < d->cnt; i++)
		if (d->m[i].name_len == len && !memcmp(d->m[i].name, name, len))
			return &d->m[i];
	return NULL;
}

/* Returns the decoded string value of m, or NULL when it is not a JSON string. */
static const char *get_string(struct doc *d, const struct member *m, size_t *len)
{
	if (d->s[m->val_off] != '"')
		return NULL;
	return unescape(d, m->val_off + 1, m->val_len - 2, len);
}

static payq_reason_t check_id(struct doc *d, const char *field, char *dst)
{
	const struct member *m = find(d, field);
	const char *v;
	size_t len;
	char sb[48];

	if (!m)
		return fail(d, PAYQ_REASON_MISSING_FIELD, "%s: missing", field);
	v = get_string(d, m, &len);
	if (!v || !valid_id_n(v, len))
		return fail(
			d, PAYQ_REASON_BAD_FIELD,
			"%s: must be a string of 1 to %d characters from [A-Za-z0-9._:-], got %s",
			field, PAYQ_ID_MAX, show(d->s + m->val_off, m->val_len, sb));
	memcpy(dst, v, len);
	dst[len] = '\0';
	return PAYQ_REASON_OK;
}

static payq_reason_t check_amount(struct doc *d, int64_t *out)
{
	const struct member *m = find(d, "amount_minor");
	const char *p;
	int64_t v = 0;
	char sb[48];

	if (!m)
		return fail(d, PAYQ_REASON_MISSING_FIELD, "amount_minor: missing");
	p = d->s + m->val_off;
	/* cJSON reads numbers as doubles, so judge the token itself: 1e3 and 1.0 are out. */
	if (m->val_len <= 16 && p[0] >= '1' && p[0] <= '9') {
		for (size_t i = 0; i < m->val_len && v >= 0; i++)
			v = p[i] >= '0' && p[i] <= '9' ? v * 10 + (p[i] - '0') : -1;
		if (v >= 1 && v <= PAYQ_AMOUNT_MAX) {
			*out = v;
			return PAYQ_REASON_OK;
		}
	}
	return fail(d, PAYQ_REASON_BAD_AMOUNT,
		    "amount_minor: must be an integer from 1 to %lld, got %s",
		    (long long)PAYQ_AMOUNT_MAX, show(p, m->val_len, sb));
}

static payq_reason_t check_currency(struct doc *d, char *dst)
{
	const struct member *m = find(d, "currency");
	const char *v;
	size_t len;
	char sb[48];

	if (!m)
		return fail(d, PAYQ_REASON_MISSING_FIELD, "currency: missing");
	v = get_string(d, m, &len);
	if (!v || len != 3 || v[0] < 'A' || v[0] > 'Z' || v[1] < 'A' || v[1] > 'Z' || v[2] < 'A' ||
	    v[2] > 'Z')
		return fail(d, PAYQ_REASON_BAD_FIELD,
			    "currency: must be three capital letters A-Z, got %s",
			    show(d->s + m->val_off, m->val_len, sb));
	memcpy(dst, v, 3);
	dst[3] = '\0';
	return PAYQ_REASON_OK;
}

/* An optional text field; null counts as the wrong JSON type, not as absent. */
static payq_reason_t check_text(struct doc *d, const char *field, bool *has, char *dst)
{
	const struct member *m = find(d, field);
	const char *v;
	size_t len;
	char sb[48];

	if (!m)
		return PAYQ_REASON_OK;
	v = get_string(d, m, &len);
	if (!v || len > PAYQ_TEXT_MAX || memchr(v, '\0', len))
		return fail(d, PAYQ_REASON_BAD_FIELD,
			    "%s: must be a string of at most %d bytes without NUL, got %s", field,
			    PAYQ_TEXT_MAX, show(d->s + m->val_off, m->val_len, sb));
	memcpy(dst, v, len);
	dst[len] = '\0';
	*has = true;
	return PAYQ_REASON_OK;
}

/* v, type, then the fields of that type in one fixed order. Fields that belong to
 * another type (amount_minor on cancel_order, payer_id on create_order, ...) are
 * ignored like unknown fields: they are not validated, stored or hashed. */
static payq_reason_t check_fields(struct doc *d, payq_command_t *cmd)
{
	const struct member *m;
	const char *v;
	payq_reason_t r;
	size_t len;
	char sb[48];

	m = find(d, "v");
	if (!m)
		return fail(d, PAYQ_REASON_MISSING_FIELD, "v: missing");
	if (m->val_len != 1 || d->s[m->val_off] != '1')
		return fail(d, PAYQ_REASON_UNSUPPORTED_VERSION, "v: must be 1, got %s",
			    show(d->s + m->val_off, m->val_len, sb));
	m = find(d, "type");
	if (!m)
		return fail(d, PAYQ_REASON_MISSING_FIELD, "type: missing");
	v = get_string(d, m, &len);
	for (int t = PAYQ_CMD_CREATE_ORDER; v && t <= PAYQ_CMD_CANCEL_ORDER; t++)
		if (strlen(type_names[t]) == len && !memcmp(v, type_names[t], len))
			cmd->type = (payq_cmd_type_t)t;
	if (cmd->type == PAYQ_CMD_NONE)
		return fail(d, PAYQ_REASON_UNKNOWN_TYPE,
			    "type: must be create_order, pay or cancel_order, got %s",
			    show(d->s + m->val_off, m->val_len, sb));
	if ((r = check_id(d, "command_id", cmd->command_id)) ||
	    (r = check_id(d, "order_id", cmd->order_id)))
		return r;
	switch (cmd->type) {
	case PAYQ_CMD_CREATE_ORDER:
	case PAYQ_CMD_PAY:
		if ((r = check_amount(d, &cmd->amount_minor)) ||
		    (r = check_currency(d, cmd->currency)))
			return r;
		if (cmd->type == PAYQ_CMD_PAY)
			return check_text(d, "payer_id", &cmd->has_payer_id, cmd->payer_id);
		return check_text(d, "customer_id", &cmd->has_customer_id, cmd->customer_id);
	default: return check_text(d, "reason", &cmd->has_reason, cmd->reason);
	}
}

static bool is_null_literal(const char *s, size_t n)
{
	while (n && json_ws((unsigned char)*s))
		s++, n--;
	while (n && json_ws((unsigned char)s[n - 1]))
		n--;
	return n == 4 && !memcmp(s, "null", 4);
}

payq_reason_t payq_codec_decode(const void *key, size_t key_len, const void *value,
				size_t value_len, payq_command_t *cmd, char *errstr,
				size_t errstr_size)
{
	struct doc d = {.s = value, .n = value_len, .errstr = errstr, .errstr_size = errstr_size};
	const char *end = NULL;
	cJSON *root = NULL;
	char *buf = NULL;
	payq_reason_t r;
	size_t bad;

	memset(cmd, 0, sizeof(*cmd));
	if (errstr && errstr_size)
		errstr[0] = '\0';
	if (!value || !value_len)
		return fail(&d, PAYQ_REASON_EMPTY, "value is empty");
	if (value_len > PAYQ_VALUE_MAX)
		return fail(&d, PAYQ_REASON_TOO_LARGE, "value is %zu bytes, over the %d byte limit",
			    value_len, PAYQ_VALUE_MAX);
	if (is_null_literal(value, value_len))
		return fail(&d, PAYQ_REASON_EMPTY, "value is JSON null");
	bad = utf8_invalid_at(value, value_len);
	if (bad < value_len)
		return fail(&d, PAYQ_REASON_BAD_ENCODING, "invalid UTF-8 at byte %zu", bad);
	if ((r = scan(&d)))
		goto out;

	/* One block: a NUL-terminated copy for cJSON, then the arena. */
	buf = malloc(2 * value_len + 1);
	if (!buf) {
		r = fail(&d, PAYQ_REASON_NOT_JSON, "out of memory");
		goto out;
	}
	memcpy(buf, value, value_len);
	buf[value_len] = '\0';
	d.arena = buf + value_len + 1;
	/* Counting the NUL in the length makes cJSON reject trailing garbage. Its nesting
	 * limit (CJSON_NESTING_LIMIT) turns deep nesting into a clean failure. */
	root = cJSON_ParseWithLengthOpts(buf, value_len + 1, &end, 1);
	if (!root) {
		r = fail(&d, PAYQ_REASON_NOT_JSON, "not valid JSON near byte %zu",
			 end ? (size_t)(end - buf) : 0);
		goto out;
	}
	if (!cJSON_IsObject(root)) {
		r = fail(&d, PAYQ_REASON_NOT_JSON, "value is valid JSON but not an object");
		goto out;
	}
	if ((size_t)cJSON_GetArraySize(root) != d.cnt || d.open) {
		r = fail(&d, PAYQ_REASON_NOT_JSON, "could not read the top-level members");
		goto out;
	}

	/* Keys compare after unescaping, so "v" and "\u0076" are the same key. */
	for (size_t i = 0; i < d.cnt; i++)
		d.m[i].name = unescape(&d, d.m[i].key_off, d.m[i].key_len, &d.m[i].name_len);
	if (d.cnt > 1)
		qsort(d.m, d.cnt, sizeof(*d.m), cmp_name);
	for (size_t i = 1; i < d.cnt; i++) {
		if (!cmp_name(&d.m[i - 1], &d.m[i])) {
			char sb[48];
			r = fail(&d, PAYQ_REASON_DUPLICATE_FIELD, "duplicate key \"%s\"",
				 show(d.m[i].name, d.m[i].name_len, sb));
			goto out;
		}
	}

	if ((r = check_fields(&d, cmd)))
		goto out;
	if (key && (key_len != strlen(cmd->order_id) || memcmp(key, cmd->order_id, key_len))) {
		char sb[48];
		r = fail(&d, PAYQ_REASON_KEY_MISMATCH,
			 "order_id %s differs from the message key %s", cmd->order_id,
			 show(key, key_len, sb));
		goto out;
	}
	payq_codec_hash(cmd);
out:
	cJSON_Delete(root);
	free(buf);
	free(d.m);
	if (r)
		memset(cmd, 0, sizeof(*cmd));
	return r;
}
