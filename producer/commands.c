/* commands.c - payq-producer's pay, create-order, cancel and send subcommands. */
#include "commands.h"

#include <ctype.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "log.h"
#include "util.h"

#define ID_RULE "1 to 64 characters from [A-Za-z0-9._:-]"

static int check_id(const char *flag, const char *v, char *out, char *errstr, size_t errstr_size)
{
	if (!payq_codec_valid_id(v))
		return payq_err(errstr, errstr_size, "--%s: \"%s\" is not a valid ID (%s)", flag, v,
				ID_RULE);
	snprintf(out, PAYQ_ID_MAX + 1, "%s", v);
	return 0;
}

static int check_text(const char *flag, const char *v, char *out, bool *has, char *errstr,
		      size_t errstr_size)
{
	if (!v)
		return 0;
	if (strlen(v) > PAYQ_TEXT_MAX)
		return payq_err(errstr, errstr_size, "--%s: longer than %d bytes", flag,
				PAYQ_TEXT_MAX);
	snprintf(out, PAYQ_TEXT_MAX + 1, "%s", v);
	*has = true;
	return 0;
}

int payq_producer_command_from_flags(payq_cmd_type_t t, const payq_producer_flags_t *f,
				     payq_command_t *cmd, bool *generated, char *errstr,
				     size_t errstr_size)
{
	payq_command_t check;
	char err[256];
	char *json;
	payq_reason_t r;

	memset(cmd, 0, sizeof(*cmd));
	cmd->type = t;
	*generated = false;
	if (!f->order)
		return payq_err(errstr, errstr_size, "--order is required");
	if (check_id("order", f->order, cmd->order_id, errstr, errstr_size))
		return -1;
	if (f->command_id) {
		if (check_id("command-id", f->command_id, cmd->command_id, errstr, errstr_size))
			return -1;
	} else {
		unsigned char raw[16];
		if (payq_random_bytes(raw, sizeof(raw)))
			return payq_err(errstr, errstr_size, "no random bytes for a command ID");
		payq_hex(raw, sizeof(raw), cmd->command_id);
		*generated = true;
	}
	if (t != PAYQ_CMD_CANCEL_ORDER) {
		if (!f->amount)
			return payq_err(errstr, errstr_size, "--amount is required");
		if (payq_parse_int64(f->amount, 1, PAYQ_AMOUNT_MAX, &cmd->amount_minor))
			return payq_err(errstr, errstr_size,
					"--amount: \"%s\" is not an integer from 1 to %lld "
					"(minor units, e.g. 1999 for 19.99)",
					f->amount, (long long)PAYQ_AMOUNT_MAX);
		if (!f->currency)
			return payq_err(errstr, errstr_size, "--currency is required");
		if (strlen(f->currency) != 3 || !isupper((unsigned char)f->currency[0]) ||
		    !isupper((unsigned char)f->currency[1]) ||
		    !isupper((unsigned char)f->currency[2]))
			return payq_err(
				errstr, errstr_size,
				"--currency: \"%s\" is not three capital letters (e.g. CNY)",
				f->currency);
		memcpy(cmd->currency, f->currency, 4);
	}
	if (check_text("payer", f->payer, cmd->payer_id, &cmd->has_payer_id, errstr, errstr_size) ||
	    check_text("customer", f->customer, cmd->customer_id, &cmd->has_customer_id, errstr,
		       errstr_size) ||
	    check_text("reason", f->reason, cmd->reason, &cmd->has_reason, errstr, errstr_size))
		return -1;

	/* The flags look right; the codec has the last word, exactly as the worker will. */
	json = payq_codec_encode(cmd);
	if (!json)
		return payq_err(errstr, errstr_size, "out of memory");
	r = payq_codec_decode(cmd->order_id, strlen(cmd->order_id), json, strlen(json), &check, err,
			      sizeof(err));
	free(json);
	if (r != PAYQ_REASON_OK)
		return payq_err(errstr, errstr_size, "invalid command: %s: %s", payq_reason_name(r),
				err);
	memcpy(cmd->payload_sha256, check.payload_sha256, PAYQ_SHA256_LEN);
	return 0;
}

/* Opens the producer; logs why it could not. */
static payq_producer_t *open_producer(const payq_config_t *cfg, const payq_producer_opts_t *opts)
{
	char errstr[512];
	payq_producer_t *p = payq_producer_new(cfg, opts, errstr, sizeof(errstr));

	if (!p)
		log_error("%s", errstr);
	return p;
}

int payq_producer_command_send(const payq_config_t *cfg, const payq_producer_opts_t *opts,
			       payq_cmd_type_t t, const payq_producer_flags_t *f)
{
	payq_command_t cmd;
	bool generated;
	char errstr[512];
	char *json = NULL;
	payq_producer_t *sink = NULL;
	payq_producer_msg_t m;
	int rc;

	if (payq_producer_command_from_flags(t, f, &cmd, &generated, errstr, sizeof(errstr))) {
		fprintf(stderr, "payq-producer: %s\n", errstr);
		return PAYQ_PRODUCER_EXIT_USAGE;
	}
	json = payq_codec_encode(&cmd);
	if (!json) {
		log_error("out of memory");
		return PAYQ_PRODUCER_EXIT_UNDELIVERED;
	}
	sink = open_producer(cfg, opts);
	if (!sink) {
		rc = PAYQ_PRODUCER_EXIT_UNDELIVERED;
		goto done;
	}
	if (generated && !opts->dry_run) {
		printf("%s\n", cmd.command_id);
		fflush(stdout);
	}
	m = (payq_producer_msg_t){
		.key = cmd.order_id,
		.key_len = strlen(cmd.order_id),
		.value = json,
		.value_len = strlen(json),
		.type = payq_cmd_type_name(t),
		.command_id = cmd.command_id,
	};
	payq_producer_send(sink, &m);
	rc = payq_producer_finish(sink);
done:
	payq_producer_destroy(sink);
	free(json);
	return rc;
}

typedef struct line {
	char *text;
	size_t len;
	size_t lineno;
	payq_cmd_type_t type;
	char order_id[PAYQ_ID_MAX + 1];
	char command_id[PAYQ_ID_MAX + 1];
} line_t;

static bool blank(const char *s, size_t len)
{
	for (size_t i = 0; i < len; i++)
		if (!isspace((unsigned char)s[i]))
			return false;
	return true;
}

/* Reads and validates every line; keeps the valid ones in *lines. Returns the number of
 * invalid lines, or -1 with errstr when the input cannot be read. */
static long read_lines(FILE *fp, line_t **lines, size_t *cnt, char *errstr, size_t errstr_size)
{
	size_t cap = 0, lineno = 0, bufsz = 0;
	long invalid = 0;
	char *buf = NULL;
	ssize_t n;

	while ((n = getline(&buf, &bufsz, fp)) >= 0) {
		payq_command_t cmd;
		char err[256];
		payq_reason_t r;
		size_t len = (size_t)n;

		lineno++;
		if (len && buf[len - 1] == '\n')
			len--;
		if (blank(buf, len))
			continue;
		r = payq_codec_decode(NULL, 0, buf, len, &cmd, err, sizeof(err));
		if (r != PAYQ_REASON_OK) {
			fprintf(stderr, "line %zu: %s: %s\n", lineno, payq_reason_name(r), err);
			invalid++;
			continue;
		}
		if (*cnt == cap) {
			size_t ncap = cap ? 2 * cap : 64;
			line_t *grown = realloc(*lines, ncap * sizeof(*grown));
			if (!grown)
				goto oom;
			*lines = grown;
			cap = ncap;
		}
		line_t *l = &(*lines)[*cnt];
		l->text = malloc(len ? len : 1);
		if (!l->text)
			goto oom;
		memcpy(l->text, buf, len);
		l->len = len;
		l->lineno = lineno;
		l->type = cmd.type;
		memcpy(l->order_id, cmd.order_id, sizeof(l->order_id));
		memcpy(l->command_id, cmd.command_id, sizeof(l->command_id));
		(*cnt)++;
	}
	if (ferror(fp)) {
		free(buf);
		return payq_err(errstr, errstr_size, "read error: %s", strerror(errno));
	}
	free(buf);
	return invalid;
oom:
	free(buf);
	return payq_err(errstr, errstr_size, "out of memory");
}

int payq_producer_command_send_file(const payq_config_t *cfg, const payq_producer_opts_t *opts,
				    const char *path, bool skip_invalid)
{
	FILE *fp = strcmp(path, "-") ? fopen(path, "r") : stdin;
	line_t *lines = NULL;
	size_t cnt = 0;
	payq_producer_t *sink = NULL;
	char errstr[512];
	long invalid;
	int rc = PAYQ_PRODUCER_EXIT_USAGE;

	if (!fp) {
		fprintf(stderr, "payq-producer: %s: %s\n", path, strerror(errno));
		return PAYQ_PRODUCER_EXIT_USAGE;
	}
	invalid = read_lines(fp, &lines, &cnt, errstr, sizeof(errstr));
	if (fp != stdin)
		fclose(fp);
	if (invalid < 0) {
		fprintf(stderr, "payq-producer: %s: %s\n", path, errstr);
		goto done;
	}
	if (invalid && !skip_invalid) {
		fprintf(stderr,
			"payq-producer: %s: %ld invalid line(s), nothing sent "
			"(--skip-invalid sends the %zu valid ones)\n",
			path, invalid, cnt);
		goto done;
	}
	if (invalid)
		log_warn("%s: skipping %ld invalid line(s), sending %zu", path, invalid, cnt);
	if (!cnt) {
		log_warn("%s: no commands to send", path);
		rc = PAYQ_PRODUCER_EXIT_OK;
		goto done;
	}
	sink = open_producer(cfg, opts);
	if (!sink) {
		rc = PAYQ_PRODUCER_EXIT_UNDELIVERED;
		goto done;
	}
	for (size_t i = 0; i < cnt; i++) {
		payq_producer_msg_t m = {
			.key = lines[i].order_id,
			.key_len = strlen(lines[i].order_id),
			.value = lines[i].text,
			.value_len = lines[i].len,
			.type = payq_cmd_type_name(lines[i].type),
			.command_id = lines[i].command_id,
		};
		if (payq_producer_send(sink, &m))
			break;
	}
	rc = payq_producer_finish(sink);
done:
	payq_producer_destroy(sink);
	for (size_t i = 0; i < cnt; i++)
		free(lines[i].text);
	free(lines);
	return rc;
}
