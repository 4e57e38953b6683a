/* fuzz_codec.c - libFuzzer target for payq_codec_decode(), the parser of every message value
 * read from payq.commands (and of the producer's JSONL lines).
 *
 * Beyond ASan and UBSan, it checks what the worker relies on: a decoded command's strings
 * are bounded, NUL-terminated valid UTF-8 and its ids match [A-Za-z0-9._:-]{1,64}; the
 * same value with the order id as the Kafka key decodes the same; the command re-encoded
 * (payq_codec_encode) decodes to the same fields and the same payload hash; a refused value
 * gives a reason code and a bounded, valid UTF-8 message. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "codec.h"
#include "fuzz_util.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void check_command(const payq_command_t *c)
{
	FUZZ_CHECK(c->type == PAYQ_CMD_CREATE_ORDER || c->type == PAYQ_CMD_PAY ||
		   c->type == PAYQ_CMD_CANCEL_ORDER);
	FUZZ_CHECK(payq_codec_valid_id(c->command_id));
	FUZZ_CHECK(payq_codec_valid_id(c->order_id));
	fuzz_check_text("currency", c->currency, sizeof(c->currency));
	fuzz_check_text("customer_id", c->customer_id, sizeof(c->customer_id));
	fuzz_check_text("payer_id", c->payer_id, sizeof(c->payer_id));
	fuzz_check_text("reason", c->reason, sizeof(c->reason));
	if (c->type != PAYQ_CMD_CANCEL_ORDER) {
		FUZZ_CHECK(c->amount_minor >= 1 && c->amount_minor <= PAYQ_AMOUNT_MAX);
		FUZZ_CHECK(strlen(c->currency) == 3);
	}
}

static bool same_command(const payq_command_t *a, const payq_command_t *b)
{
	return a->type == b->type && !strcmp(a->command_id, b->command_id) &&
	       !strcmp(a->order_id, b->order_id) && a->amount_minor == b->amount_minor &&
	       !strcmp(a->currency, b->currency) && a->has_customer_id == b->has_customer_id &&
	       a->has_payer_id == b->has_payer_id && a->has_reason == b->has_reason &&
	       !strcmp(a->customer_id, b->customer_id) && !strcmp(a->payer_id, b->payer_id) &&
	       !strcmp(a->reason, b->reason) &&
	       !memcmp(a->payload_sha256, b->payload_sha256, sizeof(a->payload_sha256));
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	payq_command_t cmd, keyed, again;
	char errstr[256];
	payq_reason_t r;
	char *encoded;

	memset(errstr, 0x55, sizeof(errstr)); /* no NUL unless decode writes one */
	r = payq_codec_decode(NULL, 0, data, size, &cmd, errstr, sizeof(errstr));
	FUZZ_CHECK(r >= PAYQ_REASON_OK && r < PAYQ_REASON__CNT);
	if (r != PAYQ_REASON_OK) {
		fuzz_check_text("errstr", errstr, sizeof(errstr));
		FUZZ_CHECK(cmd.type == PAYQ_CMD_NONE);
		return 0;
	}
	check_command(&cmd);

	/* The Kafka key the producer sets: the order id. */
	FUZZ_CHECK(payq_codec_decode(cmd.order_id, strlen(cmd.order_id), data, size, &keyed, NULL,
				     0) == PAYQ_REASON_OK);
	FUZZ_CHECK(same_command(&cmd, &keyed));

	/* Round trip through the encoder. */
	encoded = payq_codec_encode(&cmd);
	FUZZ_CHECK(encoded != NULL);
	r = payq_codec_decode(cmd.order_id, strlen(cmd.order_id), encoded, strlen(encoded), &again,
			      errstr, sizeof(errstr));
	if (r != PAYQ_REASON_OK) {
		fprintf(stderr, "re-encoded command refused (%s: %s): %s\n", payq_reason_name(r),
			errstr, encoded);
		abort();
	}
	FUZZ_CHECK(same_command(&cmd, &again));
	free(encoded);
	return 0;
}
