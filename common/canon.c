/* canon.c - what payq writes in the v1 wire format: the canonical form that
 * payload_sha256 hashes, and the encoder (payq_codec_hash, payq_codec_encode; codec.h). */
#include "codec.h"

#include <stdio.h>
#include <string.h>

#include <cjson/cJSON.h>
#include <openssl/evp.h>

static size_t canon_add(char *buf, size_t n, const char *name, const char *val, size_t max)
{
	size_t len = strnlen(val, max);

	n += (size_t)sprintf(buf + n, "%s=%zu:", name, len);
	memcpy(buf + n, val, len);
	buf[n + len] = '\n';
	return n + len + 1;
}

/*
 * The canonical form that payload_sha256 hashes. Each meaningful field is one line
 *
 *	<name>=<decimal byte length>:<bytes>\n
 *
 * in this order: v, type, command_id, order_id, then
 *	create_order: amount_minor, currency, customer_id
 *	pay:          amount_minor, currency, payer_id
 *	cancel_order: reason
 * v is "1", type its wire name, amount_minor plain decimal, strings their decoded
 * bytes. An absent optional field has no line, so absent and "" differ. The length
 * prefix stops a value from forging a field boundary. Key order, whitespace, escapes
 * and unknown fields never reach the form. Stored hashes depend on it: do not change it.
 */
void payq_codec_hash(payq_command_t *cmd)
{
	char buf[1024], amount[24];
	size_t n = 0;

	n = canon_add(buf, n, "v", "1", 1);
	n = canon_add(buf, n, "type", payq_cmd_type_name(cmd->type), 16);
#ifdef PAYQ_MUTATION_CANON_HASH
	/* Mutation check only: two fields swapped, so every stored hash would change. */
	n = canon_add(buf, n, "order_id", cmd->order_id, PAYQ_ID_MAX);
	n = canon_add(buf, n, "command_id", cmd->command_id, PAYQ_ID_MAX);
#else
	n = canon_add(buf, n, "command_id", cmd->command_id, PAYQ_ID_MAX);
	n = canon_add(buf, n, "order_id", cmd->order_id, PAYQ_ID_MAX);
#endif
	if (cmd->type == PAYQ_CMD_CREATE_ORDER || cmd->type == PAYQ_CMD_PAY) {
		snprintf(amount, sizeof(amount), "%lld", (long long)cmd->amount_minor);
		n = canon_add(buf, n, "amount_minor", amount, sizeof(amount));
		n = canon_add(buf, n, "currency", cmd->currency, 3);
	}
	if (cmd->type == PAYQ_CMD_CREATE_ORDER && cmd->has_customer_id)
		n = canon_add(buf, n, "customer_id", cmd->customer_id, PAYQ_TEXT_MAX);
	else if (cmd->type == PAYQ_CMD_PAY && cmd->has_payer_id)
		n = canon_add(buf, n, "payer_id", cmd->payer_id, PAYQ_TEXT_MAX);
	else if (cmd->type == PAYQ_CMD_CANCEL_ORDER && cmd->has_reason)
		n = canon_add(buf, n, "reason", cmd->reason, PAYQ_TEXT_MAX);
	if (!EVP_Digest(buf, n, cmd->payload_sha256, NULL, EVP_sha256(), NULL))
		memset(cmd->payload_sha256, 0, PAYQ_SHA256_LEN);
}

char *payq_codec_encode(const payq_command_t *cmd)
{
	cJSON *o = cJSON_CreateObject();
	const char *opt = NULL, *opt_name = NULL;
	char amount[24];
	char *out = NULL;
	bool money = cmd->type == PAYQ_CMD_CREATE_ORDER || cmd->type == PAYQ_CMD_PAY;

	if (!o || cmd->type == PAYQ_CMD_NONE || (unsigned)cmd->type > PAYQ_CMD_CANCEL_ORDER)
		goto out;
	if (cmd->type == PAYQ_CMD_CREATE_ORDER && cmd->has_customer_id) {
		opt_name = "customer_id";
		opt = cmd->customer_id;
	} else if (cmd->type == PAYQ_CMD_PAY && cmd->has_payer_id) {
		opt_name = "payer_id";
		opt = cmd->payer_id;
	} else if (cmd->type == PAYQ_CMD_CANCEL_ORDER && cmd->has_reason) {
		opt_name = "reason";
		opt = cmd->reason;
	}
	/* cJSON prints 10^15 as 1e+15, so the amount goes in as a raw integer token. */
	snprintf(amount, sizeof(amount), "%lld", (long long)cmd->amount_minor);
	if (!cJSON_AddNumberToObject(o, "v", 1) ||
	    !cJSON_AddStringToObject(o, "type", payq_cmd_type_name(cmd->type)) ||
	    !cJSON_AddStringToObject(o, "command_id", cmd->command_id) ||
	    !cJSON_AddStringToObject(o, "order_id", cmd->order_id) ||
	    (money && (!cJSON_AddRawToObject(o, "amount_minor", amount) ||
		       !cJSON_AddStringToObject(o, "currency", cmd->currency))) ||
	    (opt && !cJSON_AddStringToObject(o, opt_name, opt)))
		goto out;
	out = cJSON_PrintUnformatted(o);
out:
	cJSON_Delete(o);
	return out;
}
