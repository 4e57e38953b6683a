/* auth.c - payq-console: who is asking, from a trusted proxy's headers, a token from the
 * token file (a session cookie or a bearer header), or nobody (loopback only). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include <microhttpd.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>

#include "console.h"
#include "util.h"

#define MAX_TOKENS 64
#define MAX_SESSIONS 256
#define SESSION_TTL_MS (12 * 3600 * 1000LL)
#define COOKIE "payq_console"

typedef struct token {
	char token[129];
	char user[128];
	console_role_t role;
} token_t;

typedef struct session {
	char id[65];
	char user[128];
	console_role_t role;
	char csrf[65];
	int64_t expires_ms;
} session_t;

static token_t tokens[MAX_TOKENS];
static size_t ntokens;
static session_t sessions[MAX_SESSIONS];

/* Token file lines: TOKEN ROLE NAME; '#' starts a comment. Tokens of fewer than 16
 * characters are refused: they could be guessed. */
int console_auth_init(const char *token_file, char *errstr, size_t errstr_size)
{
	char line[512];
	FILE *fp;
	int lineno = 0;

	if (!token_file)
		return 0;
	if (!(fp = fopen(token_file, "r")))
		return payq_err(errstr, errstr_size, "%s: cannot open", token_file);
	while (fgets(line, sizeof(line), fp)) {
		char tok[256], role[32], user[256];
		lineno++;
		if (line[0] == '#' || line[strspn(line, " \t\r\n")] == '\0')
			continue;
		if (sscanf(line, "%255s %31s %255s", tok, role, user) != 3 ||
		    console_role_parse(role) == CONSOLE_ROLE_NONE || strlen(tok) < 16 ||
		    strlen(tok) >= sizeof(tokens[0].token) ||
		    strlen(user) >= sizeof(tokens[0].user) || ntokens == MAX_TOKENS) {
			fclose(fp);
			return payq_err(errstr, errstr_size,
					"%s:%d: expected TOKEN ROLE NAME (a token of 16 to 128 "
					"characters, role viewer, operator or admin)",
					token_file, lineno);
		}
		snprintf(tokens[ntokens].token, sizeof(tokens[0].token), "%s", tok);
		snprintf(tokens[ntokens].user, sizeof(tokens[0].user), "%s", user);
		tokens[ntokens++].role = console_role_parse(role);
	}
	fclose(fp);
	if (!ntokens)
		return payq_err(errstr, errstr_size, "%s: no token", token_file);
	return 0;
}

/* CSRF token of an identity without a session: HMAC of who it is, under the secret that
 * is new at every start. */
static void hmac_csrf(const char *who, char out[65])
{
	unsigned char md[EVP_MAX_MD_SIZE];
	unsigned int len = 0;

	HMAC(EVP_sha256(), console.secret, sizeof(console.secret), (const unsigned char *)who,
	     strlen(who), md, &len);
	for (unsigned int i = 0; i < 32 && i < len; i++)
		snprintf(out + 2 * i, 3, "%02x", md[i]);
	out[64] = '\0';
}

/* Constant time, so that a token is not guessed byte by byte. */
static bool same(const char *a, const char *b)
{
	size_t la = strlen(a), lb = strlen(b);
	unsigned char d = la != lb;

	for (size_t i = 0; i < la && i < lb; i++)
		d |= (unsigned char)(a[i] ^ b[i]);
	return d == 0;
}

static const token_t *find_token(const char *tok)
{
	for (size_t i = 0; i < ntokens; i++)
		if (same(tokens[i].token, tok))
			return &tokens[i];
	return NULL;
}

static bool from_header(struct MHD_Connection *conn, console_ident_t *id)
{
	const char *user = MHD_lookup_connection_value(conn, MHD_HEADER_KIND, console.user_header);
	const char *role = MHD_lookup_connection_value(conn, MHD_HEADER_KIND, console.role_header);
	char who[300];

	if (!user || !*user || strlen(user) >= sizeof(id->user) ||
	    console_role_parse(role) == CONSOLE_ROLE_NONE)
		return false;
	payq_utf8_clean(id->user, sizeof(id->user), user, strlen(user));
	id->role = console_role_parse(role);
	snprintf(who, sizeof(who), "header\n%s\n%s", id->user, role);
	hmac_csrf(who, id->csrf);
	return true;
}

static bool from_tokens(struct MHD_Connection *conn, console_ident_t *id)
{
	const char *authz = MHD_lookup_connection_value(conn, MHD_HEADER_KIND, "Authorization");
	const char *cookie = MHD_lookup_connection_value(conn, MHD_COOKIE_KIND, COOKIE);
	int64_t now = payq_now_ms();

	if (authz && !strncmp(authz, "Bearer ", 7)) {
		const token_t *t = find_token(authz + 7);
		if (!t)
			return false;
		snprintf(id->user, sizeof(id->user), "%s", t->user);
		id->role = t->role;
		id->bearer = true;
		return true;
	}
	if (!cookie)
		return false;
	for (size_t i = 0; i < MAX_SESSIONS; i++) {
		session_t *s = &sessions[i];
		if (!s->id[0] || s->expires_ms < now || !same(s->id, cookie))
			continue;
		snprintf(id->user, sizeof(id->user), "%s", s->user);
		id->role = s->role;
		snprintf(id->csrf, sizeof(id->csrf), "%s", s->csrf);
		return true;
	}
	return false;
}

bool console_identify(struct MHD_Connection *conn, console_ident_t *id)
{
	memset(id, 0, sizeof(*id));
	switch (console.auth) {
	case CONSOLE_AUTH_HEADER: return from_header(conn, id);
	case CONSOLE_AUTH_TOKENS: return from_tokens(conn, id);
	case CONSOLE_AUTH_LOCAL:
	default:
		snprintf(id->user, sizeof(id->user), "local");
		id->role = console.local_role;
		hmac_csrf("local", id->csrf);
		return true;
	}
}

/* body: token=... (a form) */
void console_login(const char *body, console_reply_t *r)
{
	char tok[160] = "";
	const token_t *t;
	session_t *slot = NULL;
	int64_t now = payq_now_ms();

	if (console.auth != CONSOLE_AUTH_TOKENS) {
		console_error(r, 404, "no token login: identity comes from %s",
			      console.auth == CONSOLE_AUTH_HEADER ? "the proxy" : "loopback");
		return;
	}
	if (body && !strncmp(body, "token=", 6)) {
		size_t n = strcspn(body + 6, "&");
		if (n < sizeof(tok)) {
			memcpy(tok, body + 6, n);
			tok[n] = '\0';
			MHD_http_unescape(tok);
		}
	}
	if (!(t = find_token(tok))) {
		console_error(r, 401, "unknown token");
		return;
	}
	for (size_t i = 0; i < MAX_SESSIONS && !slot; i++)
		if (!sessions[i].id[0] || sessions[i].expires_ms < now)
			slot = &sessions[i];
	if (!slot) {
		size_t oldest = 0;
		for (size_t i = 1; i < MAX_SESSIONS; i++)
			if (sessions[i].expires_ms < sessions[oldest].expires_ms)
				oldest = i;
		slot = &sessions[oldest];
	}
	if (console_random_hex(32, slot->id) || console_random_hex(32, slot->csrf)) {
		slot->id[0] = '\0';
		console_error(r, 500, "no randomness");
		return;
	}
	snprintf(slot->user, sizeof(slot->user), "%s", t->user);
	slot->role = t->role;
	slot->expires_ms = now + SESSION_TTL_MS;
	snprintf(r->set_cookie, sizeof(r->set_cookie),
		 COOKIE "=%s; Path=/; HttpOnly; SameSite=Strict; Max-Age=43200", slot->id);
	cJSON *j = cJSON_CreateObject();
	cJSON_AddStringToObject(j, "user", slot->user);
	cJSON_AddStringToObject(j, "role", console_role_name(slot->role));
	console_json(r, 200, j);
}

bool console_allowed(const console_ident_t *id, console_role_t need)
{
#ifdef PAYQ_MUTATION_CONSOLE_CLIENT_ROLES
	/* Mutant: the server trusts the page to hide what a role may not do. */
	(void)need;
	return id->role != CONSOLE_ROLE_NONE;
#else
	return id->role >= need;
#endif
}
