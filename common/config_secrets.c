/* config_secrets.c - the secrets among the settings: registering them with the log masker
 * (payq_config_note_secrets), refusing key files others may read, and printing PAYQ_DB
 * and PAYQ_GATEWAY_URL with their secrets masked for -X dump. */
#include "config_secrets.h"

#include <string.h>

#include <libpq-fe.h>

#include "kafka_clients.h"
#include "log.h"
#include "secretfile.h"
#include "util.h"

/* Finds the userinfo of "scheme://userinfo@host...": sets *off and *len and returns true,
 * or false when the URL has none. */
static bool url_userinfo(const char *url, size_t *off, size_t *len)
{
	const char *start = strstr(url, "://"), *end, *at = NULL;

	if (!start)
		return false;
	start += 3;
	end = start + strcspn(start, "/?#");
	for (const char *p = start; p < end; p++)
		if (*p == '@')
			at = p;
	if (!at)
		return false;
	*off = (size_t)(start - url);
	*len = (size_t)(at - start);
	return true;
}

/* Registers the userinfo of a URL, and the password part of it on its own. */
static void note_userinfo(const char *url)
{
	size_t off, len;
	const char *colon;

	if (!url || !url_userinfo(url, &off, &len))
		return;
	payq_log_add_secret(url + off, len);
	colon = memchr(url + off, ':', len);
	if (colon)
		payq_log_add_secret(colon + 1, len - (size_t)(colon + 1 - (url + off)));
}

static bool conninfo_secret_key(const char *key)
{
	return !strcmp(key, "password") || !strcmp(key, "sslpassword");
}

/* Registers the passwords of a libpq conninfo or URI: as libpq decodes them, and, for a
 * URI, as written (percent-encoded) in its userinfo and in a password= query parameter. */
static void note_conninfo(const char *db)
{
	PQconninfoOption *opts;
	const char *q;

	if (!db || !*db)
		return;
	opts = PQconninfoParse(db, NULL);
	for (PQconninfoOption *o = opts; o && o->keyword; o++)
		if (o->val && conninfo_secret_key(o->keyword))
			payq_log_add_secret(o->val, strlen(o->val));
	PQconninfoFree(opts);
	if (strncmp(db, "postgresql://", 13) && strncmp(db, "postgres://", 11))
		return;
	note_userinfo(db);
	for (q = strchr(db, '?'); q && *q; q += strcspn(q, "&")) {
		q++;
		if (!strncmp(q, "password=", 9))
			payq_log_add_secret(q + 9, strcspn(q + 9, "&"));
		else if (!strncmp(q, "sslpassword=", 12))
			payq_log_add_secret(q + 12, strcspn(q + 12, "&"));
	}
}

/* From here on no log line shows a password of PAYQ_DB, the userinfo of PAYQ_GATEWAY_URL,
 * or the value of a secret -X property. */
void payq_config_note_secrets(const payq_config_t *cfg)
{
	note_conninfo(cfg->db);
	note_userinfo(cfg->gateway_url);
	if (cfg->gateway_api_key)
		payq_log_add_secret(cfg->gateway_api_key, strlen(cfg->gateway_api_key));
	for (size_t i = 0; i < cfg->xprops_cnt; i++) {
		const char *eq = strchr(cfg->xprops[i], '=');
		char key[256];

		if (!eq || (size_t)(eq - cfg->xprops[i]) >= sizeof(key))
			continue;
		memcpy(key, cfg->xprops[i], (size_t)(eq - cfg->xprops[i]));
		key[eq - cfg->xprops[i]] = '\0';
		if (payq_kafka_secret_prop(key))
			payq_log_add_secret(eq + 1, strlen(eq + 1));
	}
}

/* The librdkafka properties that name a file holding a private key or a keytab. */
static const char *const key_file_props[] = {"ssl.key.location", "ssl.keystore.location",
					     "sasl.kerberos.keytab"};

/* Refuses a key file that others may read, as the -F file itself. librdkafka reads the last
 * value given, but every one is checked: a refused file should not sit in the settings. */
int payq_config_check_key_files(const payq_config_t *cfg, char *errstr, size_t errstr_size)
{
	for (size_t i = 0; i < cfg->xprops_cnt; i++) {
		const char *eq = strchr(cfg->xprops[i], '=');
		size_t klen = eq ? (size_t)(eq - cfg->xprops[i]) : 0;

		for (size_t k = 0; eq && eq[1] && k < PAYQ_ARRAY_SIZE(key_file_props); k++) {
			char why[512];

			if (strlen(key_file_props[k]) != klen ||
			    strncmp(cfg->xprops[i], key_file_props[k], klen))
				continue;
			if (payq_secret_file_check(eq + 1, why, sizeof(why)))
				return payq_err(errstr, errstr_size, "%s: %s: %s",
						payq_config_x_origin(cfg, i), key_file_props[k],
						why);
		}
	}
	return 0;
}

/* Prints a conninfo as libpq reads it, passwords masked; only that it is set when libpq
 * cannot parse it (its error could quote the password). */
void payq_config_put_conninfo(FILE *fp, const char *env, const char *db)
{
	PQconninfoOption *opts = PQconninfoParse(db, NULL);
	const char *sep = "";

	if (!opts) {
		fprintf(fp, "%s = (set, but libpq cannot parse it)\n", env);
		return;
	}
	fprintf(fp, "%s = ", env);
	for (PQconninfoOption *o = opts; o->keyword; o++) {
		char masked[512];

		if (!o->val)
			continue;
		if (conninfo_secret_key(o->keyword))
			snprintf(masked, sizeof(masked), "***");
		else
			payq_log_mask(o->val, masked, sizeof(masked));
		fprintf(fp, "%s%s=", sep, o->keyword);
		if (!*masked || strpbrk(masked, " '\\")) {
			fputc('\'', fp);
			for (const char *c = masked; *c; c++)
				fprintf(fp, "%s%c", *c == '\'' || *c == '\\' ? "\\" : "", *c);
			fputc('\'', fp);
		} else {
			fputs(masked, fp);
		}
		sep = " ";
	}
	fputc('\n', fp);
	PQconninfoFree(opts);
}

/* Prints a URL with its userinfo as "***". */
void payq_config_put_url(FILE *fp, const char *env, const char *url)
{
	size_t off, len;
	char masked[1024];

	if (url_userinfo(url, &off, &len)) {
		fprintf(fp, "%s = %.*s***%s\n", env, (int)off, url, url + off + len);
		return;
	}
	payq_log_mask(url, masked, sizeof(masked));
	fprintf(fp, "%s = %s\n", env, masked);
}
