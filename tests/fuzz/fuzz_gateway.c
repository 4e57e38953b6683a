/* fuzz_gateway.c - libFuzzer target for payq_gateway_classify(), the reader of the payment
 * channel's answers (worker/gateway.c).
 *
 * Input: byte 0 picks the HTTP status (from the statuses the client tells apart, or a raw
 * one), byte 1 bit 0 says charge (POST) or status query (GET); the rest is the body, cut
 * at the client's 4 KiB and NUL-terminated as the client keeps it. Beyond ASan and UBSan it
 * checks what reaches PostgreSQL (payments.gateway_charge_id, decline_code, detail) and the
 * logs: NUL-terminated valid UTF-8 within each buffer, a valid status, NOT_FOUND only for a
 * query's 404, SUCCEEDED only for a 2xx. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "fuzz_util.h"
#include "gateway.h"
#include "log.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerInitialize(int *argc, char ***argv);

enum { BODY_MAX = 4095 }; /* gateway.c's RESPONSE_MAX - 1 */

static const long statuses[] = {200, 201, 202, 400, 402, 404, 409, 422, 429, 500, 502, 503};

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
	payq_log_level = -1; /* quiet: classify logs every 400 and 422 answer */
	return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	/* The payment every answer is checked against (key, amount, currency). */
	payq_charge_t c = {.order_id = "ORD-1",
			   .command_id = "c-1",
			   .currency = "EUR",
			   .amount_minor = 100,
			   .key = "ORD-1|c-1"};
	size_t n = sizeof(statuses) / sizeof(statuses[0]), len;
	long status;
	bool post;
	char *body;

	if (size < 2)
		return 0;
	status = data[0] < n ? statuses[data[0]] : 100 + (long)data[0] * 2;
	post = data[1] & 1;
	len = size - 2 < BODY_MAX ? size - 2 : BODY_MAX;
	body = malloc(len + 1);
	FUZZ_CHECK(body != NULL);
	memcpy(body, data + 2, len);
	body[len] = '\0';

	memset(c.charge_id, 0x55, sizeof(c.charge_id));
	memset(c.decline_code, 0x55, sizeof(c.decline_code));
	memset(c.detail, 0x55, sizeof(c.detail));
	payq_gateway_classify(&c, status, body, len, post);

	FUZZ_CHECK(c.http_status == status);
	FUZZ_CHECK(c.status == PAYQ_CHARGE_SUCCEEDED || c.status == PAYQ_CHARGE_DECLINED ||
		   c.status == PAYQ_CHARGE_UNKNOWN || c.status == PAYQ_CHARGE_NOT_FOUND ||
		   c.status == PAYQ_CHARGE_MISMATCH);
	/* An answer about another payment is one that would have settled this one. */
	FUZZ_CHECK(c.status != PAYQ_CHARGE_MISMATCH || status / 100 == 2 || status == 402);
	FUZZ_CHECK(c.status != PAYQ_CHARGE_NOT_FOUND || (!post && status == 404));
	/* Only a 2xx says money moved. (Its id may be "", or start with \u0000: the client
	 * then records the success without a charge id.) */
	if (c.status == PAYQ_CHARGE_SUCCEEDED)
		FUZZ_CHECK(status / 100 == 2);
	fuzz_check_text("charge_id", c.charge_id, sizeof(c.charge_id));
	fuzz_check_text("decline_code", c.decline_code, sizeof(c.decline_code));
	fuzz_check_text("detail", c.detail, sizeof(c.detail));
	free(body);
	return 0;
}
