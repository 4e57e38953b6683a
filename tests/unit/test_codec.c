/* test_codec.c - unit tests for the v1 wire format: validation, hash, encode. */
#include <check.h>
#include <cjson/cJSON.h>
#include <dirent.h>
#include <openssl/evp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "check_main.h"
#include "codec.h"
#include "util.h"

#define CREATE "\"v\":1,\"type\":\"create_order\",\"command_id\":\"c-1\",\"order_id\":\"ORD-1\""
#define PAY "\"v\":1,\"type\":\"pay\",\"command_id\":\"c-2\",\"order_id\":\"ORD-1\""
#define CANCEL "\"v\":1,\"type\":\"cancel_order\",\"command_id\":\"c-3\",\"order_id\":\"ORD-1\""
#define MONEY ",\"amount_minor\":1999,\"currency\":\"CNY\""
#define ID64 "a123456789b123456789c123456789d123456789e123456789f123456789g123"

struct decode_case {
	const char *name;
	const char *key; /* NULL skips the key check */
	const char *value;
	size_t len; /* 0: strlen(value) */
	payq_reason_t want;
	const char *msg; /* substring expected in errstr, or NULL */
};

static const struct decode_case decode_cases[] = {
	/* accepted */
	{"create full", "ORD-1", "{" CREATE MONEY ",\"customer_id\":\"u-42\"}", 0, PAYQ_REASON_OK,
	 NULL},
	{"create no customer", "ORD-1", "{" CREATE MONEY "}", 0, PAYQ_REASON_OK, NULL},
	{"pay full", "ORD-1", "{" PAY MONEY ",\"payer_id\":\"u-42\"}", 0, PAYQ_REASON_OK, NULL},
	{"pay no payer", "ORD-1", "{" PAY MONEY "}", 0, PAYQ_REASON_OK, NULL},
	{"cancel full", "ORD-1", "{" CANCEL ",\"reason\":\"customer\"}", 0, PAYQ_REASON_OK, NULL},
	{"cancel no reason", "ORD-1", "{" CANCEL "}", 0, PAYQ_REASON_OK, NULL},
	{"cancel ignores money", "ORD-1", "{" CANCEL ",\"amount_minor\":\"x\",\"currency\":5}", 0,
	 PAYQ_REASON_OK, NULL},
	{"create ignores payer_id", "ORD-1", "{" CREATE MONEY ",\"payer_id\":5}", 0, PAYQ_REASON_OK,
	 NULL},
	{"key NULL skips check", NULL, "{" CREATE MONEY "}", 0, PAYQ_REASON_OK, NULL},
	{"whitespace", "ORD-1",
	 " \t\r\n{ \"v\" : 1 ,\n\"type\":\"pay\" , \"command_id\" :\"c-2\",\"order_id\":\"ORD-1\","
	 "\"amount_minor\" :\t1999 ,\"currency\":\"CNY\" } \n",
	 0, PAYQ_REASON_OK, NULL},
	{"unknown fields", "ORD-1",
	 "{\"x\":{\"amount_minor\":\"1e3\",\"a\":[1,{\"v\":2}],\"b\":{\"a\":1,\"a\":2}}," CREATE
	 ",\"note\":\"\\\"amount_minor\\\":0\"" MONEY ",\"y\":null,\"z\":01}",
	 0, PAYQ_REASON_OK, NULL},
	{"escaped key names", "ORD-1",
	 "{\"\\u0076\":1,\"typ\\u0065\":\"pay\",\"command_id\":\"c-2\",\"order_id\":\"ORD-1\","
	 "\"amount\\u005fminor\":5,\"currency\":\"CNY\"}",
	 0, PAYQ_REASON_OK, NULL},
	{"duplicate command_id", "ORD-1", "{" PAY MONEY ",\"command_id\":\"c\\u002d2\"}", 0,
	 PAYQ_REASON_DUPLICATE_FIELD, "command_id"},
	{"id escape decodes", "ORD-1",
	 "{\"v\":1,\"type\":\"pay\",\"command_id\":\"c\\u002d2\",\"order_id\":\"ORD\\u002d1\"" MONEY
	 "}",
	 0, PAYQ_REASON_OK, NULL},
	{"id 64 chars", NULL,
	 "{\"v\":1,\"type\":\"cancel_order\",\"command_id\":\"" ID64 "\",\"order_id\":\"" ID64
	 "\"}",
	 0, PAYQ_REASON_OK, NULL},
	{"id all allowed chars", NULL,
	 "{\"v\":1,\"type\":\"cancel_order\",\"command_id\":"
	 "\"AZaz09._:-\",\"order_id\":\"o\"}",
	 0, PAYQ_REASON_OK, NULL},
	{"amount 1", "ORD-1", "{" PAY ",\"amount_minor\":1,\"currency\":\"CNY\"}", 0,
	 PAYQ_REASON_OK, NULL},
	{"amount 10^15", "ORD-1",
	 "{" PAY ",\"amount_minor\":1000000000000000,\"currency\":\"CNY\"}", 0, PAYQ_REASON_OK,
	 NULL},
	{"surrogate pair", "ORD-1", "{" CANCEL ",\"reason\":\"\\ud83d\\ude00 \xf0\x9f\x98\x80\"}",
	 0, PAYQ_REASON_OK, NULL},
	{"empty reason", "ORD-1", "{" CANCEL ",\"reason\":\"\"}", 0, PAYQ_REASON_OK, NULL},
	{"non-ASCII reason", "ORD-1", "{" CANCEL ",\"reason\":\"\xc3\xa9\xe2\x82\xac\"}", 0,
	 PAYQ_REASON_OK, NULL},

	/* empty */
	{"zero length", "ORD-1", "", 0, PAYQ_REASON_EMPTY, NULL},
	{"null", "ORD-1", "null", 0, PAYQ_REASON_EMPTY, "null"},
	{"null with whitespace", "ORD-1", " \n null\t", 0, PAYQ_REASON_EMPTY, NULL},

	/* bad_encoding */
	{"overlong C0 AF", "ORD-1", "{" CANCEL ",\"reason\":\"\xc0\xaf\"}", 0,
	 PAYQ_REASON_BAD_ENCODING, "UTF-8"},
	{"overlong E0 80 AF", "ORD-1", "{" CANCEL ",\"reason\":\"\xe0\x80\xaf\"}", 0,
	 PAYQ_REASON_BAD_ENCODING, NULL},
	{"overlong F0 80 80 AF", "ORD-1", "{" CANCEL ",\"reason\":\"\xf0\x80\x80\xaf\"}", 0,
	 PAYQ_REASON_BAD_ENCODING, NULL},
	{"UTF-8 surrogate ED A0 80", "ORD-1", "{" CANCEL ",\"reason\":\"\xed\xa0\x80\"}", 0,
	 PAYQ_REASON_BAD_ENCODING, NULL},
	{"above U+10FFFF", "ORD-1", "{" CANCEL ",\"reason\":\"\xf4\x90\x80\x80\"}", 0,
	 PAYQ_REASON_BAD_ENCODING, NULL},
	{"F5 lead byte", "ORD-1", "{" CANCEL ",\"reason\":\"\xf5\x80\x80\x80\"}", 0,
	 PAYQ_REASON_BAD_ENCODING, NULL},
	{"lone continuation", "ORD-1", "{" CANCEL ",\"reason\":\"a\x80\"}", 0,
	 PAYQ_REASON_BAD_ENCODING, NULL},
	{"truncated in string", "ORD-1", "{" CANCEL ",\"reason\":\"\xe2\x82\"}", 0,
	 PAYQ_REASON_BAD_ENCODING, NULL},
	{"truncated at end", "ORD-1", "{" CANCEL "}\xe2\x82", 0, PAYQ_REASON_BAD_ENCODING, NULL},
	{"FF byte", "ORD-1", "{" CANCEL ",\"reason\":\"\xff\"}", 0, PAYQ_REASON_BAD_ENCODING, NULL},
	{"bad UTF-8 beats not_json", "ORD-1", "{\xc0\xaf", 0, PAYQ_REASON_BAD_ENCODING, NULL},
	{"escaped lone high surrogate", "ORD-1", "{" CANCEL ",\"reason\":\"\\ud800\"}", 0,
	 PAYQ_REASON_BAD_ENCODING, "surrogate"},
	{"escaped lone low surrogate", "ORD-1", "{" CANCEL ",\"reason\":\"\\udc00x\"}", 0,
	 PAYQ_REASON_BAD_ENCODING, NULL},
	{"high surrogate then BMP", "ORD-1", "{" CANCEL ",\"reason\":\"\\ud800\\u0041\"}", 0,
	 PAYQ_REASON_BAD_ENCODING, NULL},
	{"lone surrogate in unknown key", "ORD-1", "{\"\\uDBFF\":1," CANCEL "}", 0,
	 PAYQ_REASON_BAD_ENCODING, NULL},

	/* not_json */
	{"whitespace only", "ORD-1", "  \n", 0, PAYQ_REASON_NOT_JSON, NULL},
	{"unterminated", "ORD-1", "{\"v\":1", 0, PAYQ_REASON_NOT_JSON, NULL},
	{"trailing garbage", "ORD-1", "{" CANCEL "}x", 0, PAYQ_REASON_NOT_JSON, NULL},
	{"two objects", "ORD-1", "{" CANCEL "}{}", 0, PAYQ_REASON_NOT_JSON, NULL},
	{"trailing comma", "ORD-1", "{" CANCEL ",}", 0, PAYQ_REASON_NOT_JSON, NULL},
	{"single quotes", "ORD-1", "{'v':1}", 0, PAYQ_REASON_NOT_JSON, NULL},
	{"array", "ORD-1", "[{" CANCEL "}]", 0, PAYQ_REASON_NOT_JSON, "not an object"},
	{"string", "ORD-1", "\"x\"", 0, PAYQ_REASON_NOT_JSON, NULL},
	{"number", "ORD-1", "42", 0, PAYQ_REASON_NOT_JSON, NULL},
	{"true", "ORD-1", "true", 0, PAYQ_REASON_NOT_JSON, NULL},
	{"bad escape", "ORD-1", "{" CANCEL ",\"reason\":\"\\x41\"}", 0, PAYQ_REASON_NOT_JSON, NULL},
	{"short \\u escape", "ORD-1", "{" CANCEL ",\"reason\":\"\\u12\"}", 0, PAYQ_REASON_NOT_JSON,
	 NULL},
	/* cJSON alone would read a \u with bad hex digits as U+0000. */
	{"\\u bad hex", "ORD-1", "{" CANCEL ",\"reason\":\"\\u00g1\"}", 0, PAYQ_REASON_NOT_JSON,
	 NULL},
	{"\\u bad hex in id", "ORD-1",
	 "{\"v\":1,\"type\":\"cancel_order\",\"command_id\":"
	 "\"c\\uXYZW\",\"order_id\":\"ORD-1\"}",
	 0, PAYQ_REASON_NOT_JSON, NULL},
	{"raw NUL after object", "ORD-1", "{" CANCEL "}\0junk", sizeof("{" CANCEL "}\0junk") - 1,
	 PAYQ_REASON_NOT_JSON, NULL},
	{"raw NUL in string", "ORD-1", "{" CANCEL ",\"reason\":\"a\0b\"}",
	 sizeof("{" CANCEL ",\"reason\":\"a\0b\"}") - 1, PAYQ_REASON_NOT_JSON, NULL},
	{"raw tab in string", "ORD-1", "{" CANCEL ",\"reason\":\"a\tb\"}", 0, PAYQ_REASON_NOT_JSON,
	 NULL},
	{"control byte as whitespace", "ORD-1", "{\x01" CANCEL "}", 0, PAYQ_REASON_NOT_JSON, NULL},
	{"UTF-8 BOM", "ORD-1", "\xef\xbb\xbf{" CANCEL "}", 0, PAYQ_REASON_NOT_JSON, NULL},
	{"deep nesting in field", "ORD-1", NULL, 0, PAYQ_REASON_NOT_JSON, NULL}, /* built below */

	/* duplicate_field */
	{"duplicate v", "ORD-1", "{" CANCEL ",\"v\":1}", 0, PAYQ_REASON_DUPLICATE_FIELD, "\"v\""},
	{"duplicate via escape", "ORD-1", "{" CANCEL ",\"order\\u005fid\":\"ORD-1\"}", 0,
	 PAYQ_REASON_DUPLICATE_FIELD, "order_id"},
	{"duplicate unknown", "ORD-1", "{" CANCEL ",\"x\":1,\"x\":1}", 0,
	 PAYQ_REASON_DUPLICATE_FIELD, NULL},
	{"duplicate beats version", "ORD-1", "{\"v\":2,\"v\":2}", 0, PAYQ_REASON_DUPLICATE_FIELD,
	 NULL},
	{"NUL-bearing key is no duplicate", "ORD-1", "{" CANCEL ",\"v\\u0000x\":1}", 0,
	 PAYQ_REASON_OK, NULL},

	/* v */
	{"v missing", "ORD-1",
	 "{\"type\":\"cancel_order\",\"command_id\":\"c\",\"order_id\":\"ORD-1\"}", 0,
	 PAYQ_REASON_MISSING_FIELD, "v: missing"},
	{"v missing, type bad", "ORD-1", "{\"type\":\"refund\"}", 0, PAYQ_REASON_MISSING_FIELD,
	 NULL},
	{"v 2", "ORD-1", "{\"v\":2,\"type\":\"refund\"}", 0, PAYQ_REASON_UNSUPPORTED_VERSION,
	 "v: must be 1, got 2"},
	{"v string", "ORD-1", "{\"v\":\"1\"}", 0, PAYQ_REASON_UNSUPPORTED_VERSION, NULL},
	{"v 1.0", "ORD-1", "{\"v\":1.0}", 0, PAYQ_REASON_UNSUPPORTED_VERSION, NULL},
	{"v 1e0", "ORD-1", "{\"v\":1e0}", 0, PAYQ_REASON_UNSUPPORTED_VERSION, NULL},
	{"v true", "ORD-1", "{\"v\":true}", 0, PAYQ_REASON_UNSUPPORTED_VERSION, NULL},
	{"v null", "ORD-1", "{\"v\":null}", 0, PAYQ_REASON_UNSUPPORTED_VERSION, NULL},
	{"v 01", "ORD-1", "{\"v\":01}", 0, PAYQ_REASON_UNSUPPORTED_VERSION, NULL},
	{"v -1", "ORD-1", "{\"v\":-1}", 0, PAYQ_REASON_UNSUPPORTED_VERSION, NULL},

	/* type */
	{"type missing", "ORD-1", "{\"v\":1,\"command_id\":\"c\",\"order_id\":\"ORD-1\"}", 0,
	 PAYQ_REASON_MISSING_FIELD, "type: missing"},
	{"type refund", "ORD-1", "{\"v\":1,\"type\":\"refund\"}", 0, PAYQ_REASON_UNKNOWN_TYPE,
	 "got \"refund\""},
	{"type upper case", "ORD-1", "{\"v\":1,\"type\":\"PAY\"}", 0, PAYQ_REASON_UNKNOWN_TYPE,
	 NULL},
	{"type number", "ORD-1", "{\"v\":1,\"type\":2}", 0, PAYQ_REASON_UNKNOWN_TYPE, NULL},
	{"type null", "ORD-1", "{\"v\":1,\"type\":null}", 0, PAYQ_REASON_UNKNOWN_TYPE, NULL},
	{"type with NUL", "ORD-1", "{\"v\":1,\"type\":\"pay\\u0000\"}", 0, PAYQ_REASON_UNKNOWN_TYPE,
	 NULL},
	{"type none", "ORD-1", "{\"v\":1,\"type\":\"none\"}", 0, PAYQ_REASON_UNKNOWN_TYPE, NULL},

	/* missing_field */
	{"command_id missing", "ORD-1",
	 "{\"v\":1,\"type\":\"cancel_order\",\"order_id\":\"ORD-1\"}", 0, PAYQ_REASON_MISSING_FIELD,
	 "command_id"},
	{"order_id missing", "ORD-1", "{\"v\":1,\"type\":\"cancel_order\",\"command_id\":\"c\"}", 0,
	 PAYQ_REASON_MISSING_FIELD, "order_id"},
	{"amount missing", "ORD-1", "{" PAY ",\"currency\":\"CNY\"}", 0, PAYQ_REASON_MISSING_FIELD,
	 "amount_minor"},
	{"currency missing", "ORD-1", "{" CREATE ",\"amount_minor\":5}", 0,
	 PAYQ_REASON_MISSING_FIELD, "currency"},
	{"bad id before missing amount", "ORD-1",
	 "{\"v\":1,\"type\":\"pay\",\"command_id\":\"a b\",\"order_id\":\"ORD-1\"}", 0,
	 PAYQ_REASON_BAD_FIELD, "command_id"},

	/* bad_field */
	{"id empty", "ORD-1",
	 "{\"v\":1,\"type\":\"cancel_order\",\"command_id\":\"\",\"order_id\":"
	 "\"ORD-1\"}",
	 0, PAYQ_REASON_BAD_FIELD, "command_id"},
	{"id 65 chars", NULL,
	 "{\"v\":1,\"type\":\"cancel_order\",\"command_id\":\"c\",\"order_id\":\"" ID64 "x\"}", 0,
	 PAYQ_REASON_BAD_FIELD, "order_id"},
	{"id space", "ORD-1",
	 "{\"v\":1,\"type\":\"cancel_order\",\"command_id\":\"a b\","
	 "\"order_id\":\"ORD-1\"}",
	 0, PAYQ_REASON_BAD_FIELD, NULL},
	{"id slash", "ORD-1",
	 "{\"v\":1,\"type\":\"cancel_order\",\"command_id\":\"a/b\","
	 "\"order_id\":\"ORD-1\"}",
	 0, PAYQ_REASON_BAD_FIELD, NULL},
	{"id \\u00e9", "ORD-1",
	 "{\"v\":1,\"type\":\"cancel_order\",\"command_id\":\"c\","
	 "\"order_id\":\"ORD\\u00e91\"}",
	 0, PAYQ_REASON_BAD_FIELD, "order_id"},
	{"id raw UTF-8", "ORD-1",
	 "{\"v\":1,\"type\":\"cancel_order\",\"command_id\":\"c\xc3\xa9\","
	 "\"order_id\":\"ORD-1\"}",
	 0, PAYQ_REASON_BAD_FIELD, NULL},
	{"id \\u0000", "ORD-1",
	 "{\"v\":1,\"type\":\"cancel_order\",\"command_id\":\"c\\u00001\","
	 "\"order_id\":\"ORD-1\"}",
	 0, PAYQ_REASON_BAD_FIELD, "command_id"},
	{"id number", "ORD-1",
	 "{\"v\":1,\"type\":\"cancel_order\",\"command_id\":7,"
	 "\"order_id\":\"ORD-1\"}",
	 0, PAYQ_REASON_BAD_FIELD, "got 7"},
	{"id null", "ORD-1",
	 "{\"v\":1,\"type\":\"cancel_order\",\"command_id\":null,"
	 "\"order_id\":\"ORD-1\"}",
	 0, PAYQ_REASON_BAD_FIELD, NULL},
	{"id array", "ORD-1",
	 "{\"v\":1,\"type\":\"cancel_order\",\"command_id\":[\"c\"],"
	 "\"order_id\":\"ORD-1\"}",
	 0, PAYQ_REASON_BAD_FIELD, NULL},
	{"currency lower", "ORD-1", "{" PAY ",\"amount_minor\":5,\"currency\":\"cny\"}", 0,
	 PAYQ_REASON_BAD_FIELD, "currency"},
	{"currency 2 letters", "ORD-1", "{" PAY ",\"amount_minor\":5,\"currency\":\"CN\"}", 0,
	 PAYQ_REASON_BAD_FIELD, NULL},
	{"currency 4 letters", "ORD-1", "{" PAY ",\"amount_minor\":5,\"currency\":\"CNYX\"}", 0,
	 PAYQ_REASON_BAD_FIELD, NULL},
	{"currency number", "ORD-1", "{" PAY ",\"amount_minor\":5,\"currency\":156}", 0,
	 PAYQ_REASON_BAD_FIELD, NULL},
	{"currency fullwidth", "ORD-1", "{" PAY ",\"amount_minor\":5,\"currency\":\"C\\uff2eY\"}",
	 0, PAYQ_REASON_BAD_FIELD, NULL},
	{"customer_id number", "ORD-1", "{" CREATE MONEY ",\"customer_id\":42}", 0,
	 PAYQ_REASON_BAD_FIELD, "customer_id"},
	{"customer_id null", "ORD-1", "{" CREATE MONEY ",\"customer_id\":null}", 0,
	 PAYQ_REASON_BAD_FIELD, "customer_id"},
	{"payer_id \\u0000", "ORD-1", "{" PAY MONEY ",\"payer_id\":\"u\\u0000\"}", 0,
	 PAYQ_REASON_BAD_FIELD, "payer_id"},
	{"reason object", "ORD-1", "{" CANCEL ",\"reason\":{}}", 0, PAYQ_REASON_BAD_FIELD,
	 "reason"},

	/* bad_amount */
	{"amount 1e3", "ORD-1", "{" PAY ",\"amount_minor\":1e3,\"currency\":\"CNY\"}", 0,
	 PAYQ_REASON_BAD_AMOUNT,
	 "amount_minor: must be an integer from 1 to 1000000000000000, got 1e3"},
	{"amount 1E3", "ORD-1", "{" PAY ",\"amount_minor\":1E3,\"currency\":\"CNY\"}", 0,
	 PAYQ_REASON_BAD_AMOUNT, NULL},
	{"amount 1.0", "ORD-1", "{" PAY ",\"amount_minor\":1.0,\"currency\":\"CNY\"}", 0,
	 PAYQ_REASON_BAD_AMOUNT, NULL},
	{"amount 1.5", "ORD-1", "{" PAY ",\"amount_minor\":1.5,\"currency\":\"CNY\"}", 0,
	 PAYQ_REASON_BAD_AMOUNT, NULL},
	{"amount 0", "ORD-1", "{" PAY ",\"amount_minor\":0,\"currency\":\"CNY\"}", 0,
	 PAYQ_REASON_BAD_AMOUNT, NULL},
	{"amount -0", "ORD-1", "{" PAY ",\"amount_minor\":-0,\"currency\":\"CNY\"}", 0,
	 PAYQ_REASON_BAD_AMOUNT, NULL},
	{"amount -5", "ORD-1", "{" PAY ",\"amount_minor\":-5,\"currency\":\"CNY\"}", 0,
	 PAYQ_REASON_BAD_AMOUNT, NULL},
	{"amount 01", "ORD-1", "{" PAY ",\"amount_minor\":01,\"currency\":\"CNY\"}", 0,
	 PAYQ_REASON_BAD_AMOUNT, NULL},
	{"amount string", "ORD-1", "{" PAY ",\"amount_minor\":\"100\",\"currency\":\"CNY\"}", 0,
	 PAYQ_REASON_BAD_AMOUNT, "got \"100\""},
	{"amount 10^15+1", "ORD-1",
	 "{" PAY ",\"amount_minor\":1000000000000001,\"currency\":\"CNY\"}", 0,
	 PAYQ_REASON_BAD_AMOUNT, NULL},
	{"amount 20 digits", "ORD-1",
	 "{" PAY ",\"amount_minor\":99999999999999999999,\"currency\":\"CNY\"}", 0,
	 PAYQ_REASON_BAD_AMOUNT, NULL},
	{"amount true", "ORD-1", "{" PAY ",\"amount_minor\":true,\"currency\":\"CNY\"}", 0,
	 PAYQ_REASON_BAD_AMOUNT, NULL},
	{"amount null", "ORD-1", "{" PAY ",\"amount_minor\":null,\"currency\":\"CNY\"}", 0,
	 PAYQ_REASON_BAD_AMOUNT, NULL},
	{"amount before currency", "ORD-1", "{" PAY ",\"amount_minor\":0,\"currency\":\"x\"}", 0,
	 PAYQ_REASON_BAD_AMOUNT, NULL},

	/* key_mismatch */
	{"key differs", "ORD-2", "{" CREATE MONEY "}", 0, PAYQ_REASON_KEY_MISMATCH, "ORD-2"},
	{"key prefix", "ORD-", "{" CREATE MONEY "}", 0, PAYQ_REASON_KEY_MISMATCH, NULL},
	{"key longer", "ORD-11", "{" CREATE MONEY "}", 0, PAYQ_REASON_KEY_MISMATCH, NULL},
	{"key empty", "", "{" CREATE MONEY "}", 0, PAYQ_REASON_KEY_MISMATCH, NULL},
	{"field error before key", "ORD-2", "{" PAY ",\"amount_minor\":0,\"currency\":\"CNY\"}", 0,
	 PAYQ_REASON_BAD_AMOUNT, NULL},
};

/* {"x": [[[...]]], <cancel>}: valid JSON nested past cJSON's limit. */
static char *deep_value(size_t depth)
{
	size_t len = depth * 2 + sizeof("{\"x\":,}") + sizeof(CANCEL);
	char *s = malloc(len), *p = s;

	ck_assert_ptr_nonnull(s);
	p += sprintf(p, "{\"x\":");
	memset(p, '[', depth);
	memset(p + depth, ']', depth);
	p += 2 * depth;
	sprintf(p, ",%s}", CANCEL);
	return s;
}

static payq_reason_t decode(const char *key, const void *value, size_t len, payq_command_t *cmd,
			    char *err, size_t err_size)
{
	return payq_codec_decode(key, key ? strlen(key) : 0, value, len, cmd, err, err_size);
}

START_TEST(test_decode_table)
{
	for (size_t i = 0; i < PAYQ_ARRAY_SIZE(decode_cases); i++) {
		const struct decode_case *c = &decode_cases[i];
		char *owned = c->value ? NULL : deep_value(30000);
		const char *value = c->value ? c->value : owned;
		size_t len = c->len ? c->len : strlen(value);
		payq_command_t cmd;
		char err[256] = "unset";
		payq_reason_t r;

		r = decode(c->key, value, len, &cmd, err, sizeof(err));
		ck_assert_msg(r == c->want, "%s: got %s (%s), want %s", c->name,
			      payq_reason_name(r), err, payq_reason_name(c->want));
		if (r == PAYQ_REASON_OK) {
			ck_assert_msg(err[0] == '\0', "%s: errstr \"%s\" on success", c->name, err);
			ck_assert_int_ne(cmd.type, PAYQ_CMD_NONE);
		} else {
			ck_assert_msg(err[0] != '\0', "%s: empty errstr", c->name);
			ck_assert_int_eq(cmd.type, PAYQ_CMD_NONE);
		}
		if (c->msg)
			ck_assert_msg(strstr(err, c->msg), "%s: errstr \"%s\" lacks \"%s\"",
				      c->name, err, c->msg);
		free(owned);
	}
}
END_TEST

START_TEST(test_decode_fields)
{
	payq_command_t cmd;
	char err[256];

	ck_assert_int_eq(payq_codec_decode("K", 1, "{}", 0, &cmd, err, sizeof(err)),
			 PAYQ_REASON_EMPTY);
	ck_assert_int_eq(payq_codec_decode("K", 1, NULL, 10, &cmd, err, sizeof(err)),
			 PAYQ_REASON_EMPTY);

	const char *v = "{" CREATE ",\"amount_minor\":1000000000000000,\"currency\":\"CNY\","
			"\"customer_id\":\"u-\\\"42\\\"\\n\"}";
	ck_assert_int_eq(decode("ORD-1", v, strlen(v), &cmd, err, sizeof(err)), PAYQ_REASON_OK);
	ck_assert_int_eq(cmd.type, PAYQ_CMD_CREATE_ORDER);
	ck_assert_str_eq(cmd.command_id, "c-1");
	ck_assert_str_eq(cmd.order_id, "ORD-1");
	ck_assert(cmd.amount_minor == PAYQ_AMOUNT_MAX);
	ck_assert_str_eq(cmd.currency, "CNY");
	ck_assert(cmd.has_customer_id && !cmd.has_payer_id && !cmd.has_reason);
	ck_assert_str_eq(cmd.customer_id, "u-\"42\"\n");

	v = "{" CANCEL ",\"reason\":\"\\ud83d\\ude00\\u00e9\\/\\b\\f\\r\\t\\\\\"}";
	ck_assert_int_eq(decode("ORD-1", v, strlen(v), &cmd, err, sizeof(err)), PAYQ_REASON_OK);
	ck_assert_int_eq(cmd.type, PAYQ_CMD_CANCEL_ORDER);
	ck_assert(cmd.has_reason);
	ck_assert_str_eq(cmd.reason, "\xf0\x9f\x98\x80\xc3\xa9/\b\f\r\t\\");
	ck_assert(cmd.amount_minor == 0 && cmd.currency[0] == '\0');

	/* The key is compared as bytes, with its own length. */
	ck_assert_int_eq(payq_codec_decode("ORD-1x", 5, v, strlen(v), &cmd, err, sizeof(err)),
			 PAYQ_REASON_OK);

	/* errstr may be NULL, or tiny. */
	ck_assert_int_eq(payq_codec_decode(NULL, 0, "{}", 2, &cmd, NULL, 0),
			 PAYQ_REASON_MISSING_FIELD);
	ck_assert_int_eq(payq_codec_decode(NULL, 0, "{}", 2, &cmd, err, 4),
			 PAYQ_REASON_MISSING_FIELD);
	ck_assert_str_eq(err, "v: ");
}
END_TEST

/* Builds a value of exactly total bytes: a valid cancel_order padded in field "pad". */
static char *padded(size_t total)
{
	static const char head[] = "{" CANCEL ",\"pad\":\"";
	char *s = malloc(total + 1);

	ck_assert_ptr_nonnull(s);
	ck_assert_uint_gt(total, sizeof(head) + 2);
	memcpy(s, head, sizeof(head) - 1);
	memset(s + sizeof(head) - 1, 'p', total - (sizeof(head) - 1) - 2);
	memcpy(s + total - 2, "\"}", 2);
	s[total] = '\0';
	return s;
}

START_TEST(test_decode_sizes)
{
	payq_command_t cmd;
	char err[256], *s;

	s = padded(PAYQ_VALUE_MAX);
	ck_assert_int_eq(decode("ORD-1", s, PAYQ_VALUE_MAX, &cmd, err, sizeof(err)),
			 PAYQ_REASON_OK);
	free(s);
	s = padded(PAYQ_VALUE_MAX + 1);
	ck_assert_int_eq(decode("ORD-1", s, PAYQ_VALUE_MAX + 1, &cmd, err, sizeof(err)),
			 PAYQ_REASON_TOO_LARGE);
	ck_assert_ptr_nonnull(strstr(err, "65537"));
	/* Size is judged before anything else. */
	s[10] = '\xff';
	ck_assert_int_eq(decode("ORD-1", s, PAYQ_VALUE_MAX + 1, &cmd, err, sizeof(err)),
			 PAYQ_REASON_TOO_LARGE);
	free(s);

	/* Deep nesting fails cleanly: unbalanced, balanced, and too large to parse at all. */
	s = malloc(100000);
	ck_assert_ptr_nonnull(s);
	memset(s, '[', 100000);
	ck_assert_int_eq(decode("ORD-1", s, 60000, &cmd, err, sizeof(err)), PAYQ_REASON_NOT_JSON);
	ck_assert_int_eq(decode("ORD-1", s, 100000, &cmd, err, sizeof(err)), PAYQ_REASON_TOO_LARGE);
	free(s);
	s = deep_value(100);
	ck_assert_int_eq(decode("ORD-1", s, strlen(s), &cmd, err, sizeof(err)), PAYQ_REASON_OK);
	free(s);

	/* Optional strings: 256 bytes after unescaping is the limit. */
	static const struct {
		const char *unit; /* one repeated piece of the reason string */
		size_t count;
		payq_reason_t want;
	} texts[] = {
		{"r", 256, PAYQ_REASON_OK},
		{"r", 257, PAYQ_REASON_BAD_FIELD},
		{"\xc3\xa9", 128, PAYQ_REASON_OK},
		{"\xc3\xa9", 129, PAYQ_REASON_BAD_FIELD},
		{"\\u00e9", 128, PAYQ_REASON_OK}, /* 768 raw bytes, 256 decoded */
		{"\\u00e9", 129, PAYQ_REASON_BAD_FIELD},
		{"\\n", 256, PAYQ_REASON_OK},
	};
	for (size_t i = 0; i < PAYQ_ARRAY_SIZE(texts); i++) {
		char v[2048];
		int n = snprintf(v, sizeof(v), "{%s,\"reason\":\"", CANCEL);
		for (size_t k = 0; k < texts[i].count; k++)
			n += snprintf(v + n, sizeof(v) - (size_t)n, "%s", texts[i].unit);
		snprintf(v + n, sizeof(v) - (size_t)n, "\"}");
		ck_assert_msg(decode("ORD-1", v, strlen(v), &cmd, err, sizeof(err)) ==
				      texts[i].want,
			      "reason %zu x %s: %s", texts[i].count, texts[i].unit, err);
		if (texts[i].want == PAYQ_REASON_OK)
			ck_assert_uint_eq(strlen(cmd.reason), 256);
	}
}
END_TEST

static void hash_hex(const char *key, const char *value, char hex[2 * PAYQ_SHA256_LEN + 1])
{
	payq_command_t cmd;
	char err[256];
	payq_reason_t r = decode(key, value, strlen(value), &cmd, err, sizeof(err));

	ck_assert_msg(r == PAYQ_REASON_OK, "%s: %s", value, err);
	payq_hex(cmd.payload_sha256, PAYQ_SHA256_LEN, hex);
}

/* printf 'v=1:1\ntype=12:create_order\ncommand_id=3:c-1\norder_id=5:ORD-1\n
 * amount_minor=4:1999\ncurrency=3:CNY\ncustomer_id=4:u-42\n' | sha256sum */
#define DESIGN_CREATE_SHA "1f9b311f53524cc0f7bded65298dae3d08ee97994c69bff6b6c017dc2d381638"
/* printf 'v=1:1\ntype=12:cancel_order\ncommand_id=3:c-3\norder_id=5:ORD-1\n' | sha256sum */
#define DESIGN_CANCEL_SHA "11d6c930d3625ab1ff4189e1aa1d9e2a50b4b118263f90512266b617ce509749"
#define DESIGN_CREATE                                                                       \
	"{\"v\":1,\"type\":\"create_order\",\"command_id\":\"c-1\",\"order_id\":\"ORD-1\"," \
	"\"amount_minor\":1999,\"currency\":\"CNY\",\"customer_id\":\"u-42\"}"

START_TEST(test_hash)
{
	/* Same meaning, same hash: key order, whitespace, escapes, unknown fields. */
	static const char *const same[] = {
		DESIGN_CREATE,
		"{\"customer_id\":\"u-42\",\"currency\":\"CNY\",\"amount_minor\":1999,"
		"\"order_id\":\"ORD-1\",\"command_id\":\"c-1\",\"type\":\"create_order\",\"v\":1}",
		" { \"v\" : 1 , \"type\" : \"create_order\" , \"command_id\" : \"c\\u002d1\" , "
		"\"order_id\" : \"ORD-1\" , \"amount_minor\" : 1999 , \"currency\" : \"C\\u004eY\" , "
		"\"customer_id\" : \"u-42\" , \"trace\" : {\"id\":[1,2]} } ",
		"{" CREATE MONEY
		",\"customer_id\":\"u-42\",\"payer_id\":\"other\",\"reason\":\"r\"}",
	};
	/* Each differs from DESIGN_CREATE in one meaningful field. */
	static const char *const differ[] = {
		"{" CREATE MONEY "}",
		"{" CREATE MONEY ",\"customer_id\":\"\"}",
		"{" CREATE MONEY ",\"customer_id\":\"u-43\"}",
		"{" CREATE ",\"amount_minor\":1998,\"currency\":\"CNY\",\"customer_id\":\"u-42\"}",
		"{" CREATE ",\"amount_minor\":1999,\"currency\":\"USD\",\"customer_id\":\"u-42\"}",
		"{\"v\":1,\"type\":\"create_order\",\"command_id\":\"c-2\",\"order_id\":\"ORD-1\"" MONEY
		",\"customer_id\":\"u-42\"}",
		"{\"v\":1,\"type\":\"create_order\",\"command_id\":\"c-1\",\"order_id\":\"ORD-2\"" MONEY
		",\"customer_id\":\"u-42\"}",
		"{\"v\":1,\"type\":\"pay\",\"command_id\":\"c-1\",\"order_id\":\"ORD-1\"" MONEY
		",\"payer_id\":\"u-42\"}",
		/* A value cannot forge a field boundary. */
		"{" CREATE MONEY ",\"customer_id\":\"u-42\\npayer_id=0:\"}",
	};
	char want[2 * PAYQ_SHA256_LEN + 1], got[2 * PAYQ_SHA256_LEN + 1];

	for (size_t i = 0; i < PAYQ_ARRAY_SIZE(same); i++) {
		hash_hex(NULL, same[i], got);
		ck_assert_msg(!strcmp(got, DESIGN_CREATE_SHA), "same[%zu]: %s", i, got);
	}
	for (size_t i = 0; i < PAYQ_ARRAY_SIZE(differ); i++) {
		hash_hex(NULL, differ[i], got);
		ck_assert_msg(strcmp(got, DESIGN_CREATE_SHA), "differ[%zu] hashes the same", i);
		for (size_t k = 0; k < i; k++) {
			hash_hex(NULL, differ[k], want);
			ck_assert_msg(strcmp(got, want), "differ[%zu] == differ[%zu]", i, k);
		}
	}
	hash_hex("ORD-1", "{" CANCEL "}", got);
	ck_assert_str_eq(got, DESIGN_CANCEL_SHA);
	hash_hex("ORD-1", "{" CANCEL ",\"amount_minor\":7,\"currency\":\"CNY\"}", got);
	ck_assert_str_eq(got, DESIGN_CANCEL_SHA);
	hash_hex("ORD-1", "{" CANCEL ",\"reason\":\"\"}", want);
	ck_assert_str_ne(want, DESIGN_CANCEL_SHA);

	/* payq_codec_hash() on a hand-built command agrees with decode. */
	payq_command_t cmd = {
		.type = PAYQ_CMD_CREATE_ORDER, .amount_minor = 1999, .has_customer_id = true};
	strcpy(cmd.command_id, "c-1");
	strcpy(cmd.order_id, "ORD-1");
	strcpy(cmd.currency, "CNY");
	strcpy(cmd.customer_id, "u-42");
	payq_codec_hash(&cmd);
	payq_hex(cmd.payload_sha256, PAYQ_SHA256_LEN, got);
	ck_assert_str_eq(got, DESIGN_CREATE_SHA);
}
END_TEST

START_TEST(test_encode)
{
	static const char *const values[] = {
		DESIGN_CREATE,
		"{" CREATE MONEY "}",
		"{" PAY
		",\"amount_minor\":1000000000000000,\"currency\":\"USD\",\"payer_id\":\"p\"}",
		"{" PAY ",\"amount_minor\":1,\"currency\":\"USD\"}",
		"{" CANCEL ",\"reason\":\"\\\"quoted\\\"\\n\\u0001 \xc3\xa9\\ud83d\\ude00\"}",
		"{" CANCEL ",\"reason\":\"\"}",
		"{" CANCEL "}",
	};
	payq_command_t cmd, back;
	char err[256], *s;

	for (size_t i = 0; i < PAYQ_ARRAY_SIZE(values); i++) {
		ck_assert_int_eq(decode(NULL, values[i], strlen(values[i]), &cmd, err, sizeof(err)),
				 PAYQ_REASON_OK);
		s = payq_codec_encode(&cmd);
		ck_assert_ptr_nonnull(s);
		ck_assert_msg(decode(cmd.order_id, s, strlen(s), &back, err, sizeof(err)) ==
				      PAYQ_REASON_OK,
			      "%s: %s", s, err);
		ck_assert_msg(!memcmp(&cmd, &back, sizeof(cmd)), "round trip differs: %s", s);
		ck_assert_ptr_null(strstr(s, "e+"));
		free(s);
	}

	/* The DESIGN.md example encodes to itself. */
	ck_assert_int_eq(decode(NULL, DESIGN_CREATE, strlen(DESIGN_CREATE), &cmd, err, sizeof(err)),
			 PAYQ_REASON_OK);
	s = payq_codec_encode(&cmd);
	ck_assert_str_eq(s, DESIGN_CREATE);
	free(s);

	/* Only the type's own optional field is written. */
	memset(&cmd, 0, sizeof(cmd));
	cmd.type = PAYQ_CMD_PAY;
	strcpy(cmd.command_id, "c-2");
	strcpy(cmd.order_id, "ORD-1");
	cmd.amount_minor = PAYQ_AMOUNT_MAX;
	strcpy(cmd.currency, "CNY");
	cmd.has_customer_id = cmd.has_reason = true;
	strcpy(cmd.customer_id, "cust");
	s = payq_codec_encode(&cmd);
	ck_assert_str_eq(s,
			 "{\"v\":1,\"type\":\"pay\",\"command_id\":\"c-2\",\"order_id\":\"ORD-1\","
			 "\"amount_minor\":1000000000000000,\"currency\":\"CNY\"}");
	free(s);

	cmd.type = PAYQ_CMD_NONE;
	ck_assert_ptr_null(payq_codec_encode(&cmd));
}
END_TEST

START_TEST(test_names)
{
	static const char *const reasons[] = {
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

	ck_assert_uint_eq(PAYQ_ARRAY_SIZE(reasons), PAYQ_REASON__CNT);
	for (int i = 0; i < PAYQ_REASON__CNT; i++) {
		ck_assert_str_eq(payq_reason_name((payq_reason_t)i), reasons[i]);
		ck_assert_int_eq(payq_reason_parse(reasons[i]), i);
	}
	ck_assert_int_eq(payq_reason_parse("Empty"), -1);
	ck_assert_int_eq(payq_reason_parse(""), -1);
	ck_assert_str_eq(payq_reason_name(PAYQ_REASON__CNT), "unknown");

	static const struct {
		payq_cmd_type_t t;
		const char *name;
	} types[] = {
		{PAYQ_CMD_CREATE_ORDER, "create_order"},
		{PAYQ_CMD_PAY, "pay"},
		{PAYQ_CMD_CANCEL_ORDER, "cancel_order"},
	};
	for (size_t i = 0; i < PAYQ_ARRAY_SIZE(types); i++) {
		ck_assert_str_eq(payq_cmd_type_name(types[i].t), types[i].name);
		ck_assert_int_eq(payq_cmd_type_parse(types[i].name), types[i].t);
	}
	ck_assert_int_eq(payq_cmd_type_parse("refund"), PAYQ_CMD_NONE);
	ck_assert_int_eq(payq_cmd_type_parse("none"), PAYQ_CMD_NONE);
	ck_assert_str_eq(payq_cmd_type_name(PAYQ_CMD_NONE), "none");
}
END_TEST

/* A message key as a log line's order_id: only when it is a valid ID. */
START_TEST(test_key_order_id)
{
	char buf[PAYQ_ID_MAX + 1], long_key[PAYQ_ID_MAX + 1];

	memset(long_key, 'k', sizeof(long_key));
	ck_assert_str_eq(payq_codec_key_order_id("ORD-1", 5, buf), "ORD-1");
	ck_assert_str_eq(payq_codec_key_order_id("ORD-1xyz", 5, buf), "ORD-1"); /* not NUL-ended */
	ck_assert_ptr_nonnull(payq_codec_key_order_id(long_key, PAYQ_ID_MAX, buf));
	ck_assert_ptr_null(payq_codec_key_order_id(long_key, PAYQ_ID_MAX + 1, buf));
	ck_assert_ptr_null(payq_codec_key_order_id("a\"b", 3, buf));
	ck_assert_ptr_null(payq_codec_key_order_id("", 0, buf));
	ck_assert_ptr_null(payq_codec_key_order_id(NULL, 4, buf));
}
END_TEST

START_TEST(test_valid_id)
{
	static const struct {
		const char *id;
		bool ok;
	} ids[] = {
		{"a", true},	   {ID64, true},   {"AZaz09._:-", true}, {"", false},
		{ID64 "x", false}, {"a b", false}, {"a/b", false},	 {"\xc3\xa9", false},
	};

	for (size_t i = 0; i < PAYQ_ARRAY_SIZE(ids); i++)
		ck_assert_msg(payq_codec_valid_id(ids[i].id) == ids[i].ok, "%s", ids[i].id);
	ck_assert(!payq_codec_valid_id(NULL));
}
END_TEST

/* A number is valid JSON at any length. Upstream cJSON 1.7.15 copied at most 63 characters
 * of a number and then failed on the rest (CVE-2023-26819), which made such a message
 * not_json; an unknown field's number must never do that. */
START_TEST(test_long_numbers)
{
	static const char *const numbers[] = {
		"1234567890123456789012345678901234567890123456789012345678901234", /* 64 */
		"-123456789012345678901234567890123456789012345678901234567890123", /* 64 */
		("1234567890123456789012345678901234567890123456789012345678901234567890123456789"
		 "0123456789012345678901234567890123456789012345678901234567890"), /* 140 */
		"0.00000000000000000000000000000000000000000000000000000000000000001",
		"1.5e-00000000000000000000000000000000000000000000000000000000000000007",
		"-0.123456789012345678901234567890123456789012345678901234567890123456789E+308",
	};
	char value[1024], err[256];
	payq_command_t cmd;

	for (size_t i = 0; i < PAYQ_ARRAY_SIZE(numbers); i++) {
		const char *forms[] = {"{\"x\":%s," PAY MONEY "}", "{" PAY MONEY ",\"x\":%s}",
				       "{" PAY MONEY ",\"x\":[1,%s,{\"y\":%s}]}"};

		ck_assert_uint_gt(strlen(numbers[i]), 63);
		for (size_t f = 0; f < PAYQ_ARRAY_SIZE(forms); f++) {
			payq_reason_t r;

			snprintf(value, sizeof(value), forms[f], numbers[i], numbers[i]);
			r = decode("ORD-1", value, strlen(value), &cmd, err, sizeof(err));
			ck_assert_msg(r == PAYQ_REASON_OK, "%s: %s (%s)", value,
				      payq_reason_name(r), err);
			ck_assert_int_eq(cmd.amount_minor, 1999);
		}
	}
	/* Still invalid: a long token that is not a number. */
	snprintf(value, sizeof(value), "{\"x\":%sx," PAY MONEY "}", numbers[0]);
	ck_assert_int_eq(decode("ORD-1", value, strlen(value), &cmd, err, sizeof(err)),
			 PAYQ_REASON_NOT_JSON);
	/* amount_minor itself is judged on its token: a long one is bad_amount, not not_json. */
	snprintf(value, sizeof(value), "{" PAY ",\"amount_minor\":%s,\"currency\":\"CNY\"}",
		 numbers[0]);
	ck_assert_int_eq(decode("ORD-1", value, strlen(value), &cmd, err, sizeof(err)),
			 PAYQ_REASON_BAD_AMOUNT);
}
END_TEST

/* The fields of another command type are ignored as unknown fields are (README, "The
 * command format"): any JSON value is accepted, nothing of it is kept, and payload_sha256
 * is the hash of the command without them, so a replay that adds or drops them is still a
 * duplicate, never a key-reuse conflict. */
START_TEST(test_other_type_fields)
{
	static const struct {
		const char *with, *without;
	} cases[] = {
		{"{" PAY MONEY ",\"customer_id\":\"u-42\"}", "{" PAY MONEY "}"},
		{"{" PAY MONEY ",\"payer_id\":\"p\",\"customer_id\":5,\"reason\":null}",
		 "{" PAY MONEY ",\"payer_id\":\"p\"}"},
		{"{" PAY MONEY ",\"customer_id\":\"\xff\xfe\"}",
		 NULL}, /* bytes still UTF-8 checked */
		{"{" CANCEL ",\"amount_minor\":1999,\"currency\":\"CNY\"}", "{" CANCEL "}"},
		{"{" CANCEL ",\"amount_minor\":-5,\"currency\":\"cny\",\"payer_id\":[1]}",
		 "{" CANCEL "}"},
		{"{" CANCEL ",\"amount_minor\":1e3,\"reason\":\"r\"}",
		 "{" CANCEL ",\"reason\":\"r\"}"},
		{"{" CREATE MONEY ",\"payer_id\":\"p\",\"reason\":{\"a\":1}}",
		 "{" CREATE MONEY "}"},
	};
	char with[2 * PAYQ_SHA256_LEN + 1], without[2 * PAYQ_SHA256_LEN + 1], err[256];
	payq_command_t cmd;

	for (size_t i = 0; i < PAYQ_ARRAY_SIZE(cases); i++) {
		payq_reason_t r = decode("ORD-1", cases[i].with, strlen(cases[i].with), &cmd, err,
					 sizeof(err));

		if (!cases[i].without) {
			ck_assert_msg(r == PAYQ_REASON_BAD_ENCODING, "%zu: %s", i,
				      payq_reason_name(r));
			continue;
		}
		ck_assert_msg(r == PAYQ_REASON_OK, "%zu: %s (%s)", i, payq_reason_name(r), err);
		if (cmd.type == PAYQ_CMD_PAY)
			ck_assert(!cmd.has_customer_id && !cmd.has_reason);
		if (cmd.type == PAYQ_CMD_CANCEL_ORDER)
			ck_assert(cmd.amount_minor == 0 && !cmd.currency[0] && !cmd.has_payer_id);
		if (cmd.type == PAYQ_CMD_CREATE_ORDER)
			ck_assert(!cmd.has_payer_id && !cmd.has_reason);
		hash_hex("ORD-1", cases[i].with, with);
		hash_hex("ORD-1", cases[i].without, without);
		ck_assert_msg(!strcmp(with, without), "%zu: another type's fields change the hash",
			      i);
	}
}
END_TEST

/*
 * The test vectors, tests/vectors/NAME.jsonl (PAYQ_VECTORS_DIR): each line is one message
 * with the reason the codec must give and, for a valid one, its payload hash. The same
 * files are checked against schema/command.schema.json by tests/vectors/check_vectors.py.
 */
struct vector {
	char name[160];
	const char *key; /* NULL skips the key check */
	unsigned char *value;
	size_t len;
	payq_reason_t want;
	const char *sha256; /* hex, for want == PAYQ_REASON_OK */
};

/* The value of one vector: "value" (text) or "value_b64", padded with spaces to "pad_to". */
static unsigned char *vector_value(const cJSON *rec, const char *where, size_t *len)
{
	const cJSON *text = cJSON_GetObjectItemCaseSensitive(rec, "value");
	const cJSON *b64 = cJSON_GetObjectItemCaseSensitive(rec, "value_b64");
	const cJSON *pad = cJSON_GetObjectItemCaseSensitive(rec, "pad_to");
	const char *src = cJSON_IsString(text) ? text->valuestring : NULL;
	size_t n, size;
	unsigned char *buf;

	if (!src) {
		ck_assert_msg(cJSON_IsString(b64), "%s: no value nor value_b64", where);
		src = b64->valuestring;
	}
	n = strlen(src);
	size = n + 1;
	if (cJSON_IsNumber(pad) && pad->valuedouble > (double)size)
		size = (size_t)pad->valuedouble + 1;
	buf = malloc(size);
	ck_assert_ptr_nonnull(buf);
	if (text && cJSON_IsString(text)) {
		memcpy(buf, src, n);
	} else {
		/* EVP_DecodeBlock counts the bytes that '=' padding stands for. */
		int out = EVP_DecodeBlock(buf, (const unsigned char *)src, (int)n);
		ck_assert_msg(out >= 0, "%s: bad base64", where);
		n = (size_t)out - (n >= 1 && src[n - 1] == '=') - (n >= 2 && src[n - 2] == '=');
	}
	if (cJSON_IsNumber(pad) && pad->valuedouble > (double)n) {
		memset(buf + n, ' ', (size_t)pad->valuedouble - n);
		n = (size_t)pad->valuedouble;
	}
	*len = n;
	return buf;
}

static void vector_parse(const char *line, const char *where, cJSON **rec, struct vector *v)
{
	const cJSON *name, *key, *expect, *sha;
	int reason;

	*rec = cJSON_Parse(line);
	ck_assert_msg(*rec != NULL, "%s: not JSON", where);
	name = cJSON_GetObjectItemCaseSensitive(*rec, "name");
	key = cJSON_GetObjectItemCaseSensitive(*rec, "key");
	expect = cJSON_GetObjectItemCaseSensitive(*rec, "expect");
	sha = cJSON_GetObjectItemCaseSensitive(*rec, "sha256");
	ck_assert_msg(cJSON_IsString(name) && cJSON_IsString(expect), "%s: no name or expect",
		      where);
	snprintf(v->name, sizeof(v->name), "%s %s", where, name->valuestring);
	ck_assert_msg(cJSON_IsString(key) || cJSON_IsNull(key), "%s: key", v->name);
	v->key = cJSON_IsString(key) ? key->valuestring : NULL;
	reason = payq_reason_parse(expect->valuestring);
	ck_assert_msg(reason >= 0, "%s: unknown reason %s", v->name, expect->valuestring);
	v->want = (payq_reason_t)reason;
	v->sha256 = cJSON_IsString(sha) ? sha->valuestring : NULL;
	ck_assert_msg(v->want != PAYQ_REASON_OK || v->sha256, "%s: valid without sha256", v->name);
	v->value = vector_value(*rec, v->name, &v->len);
}

static void vector_check(const struct vector *v)
{
	payq_command_t cmd;
	char err[256] = "unset", hex[2 * PAYQ_SHA256_LEN + 1];
	payq_reason_t r;

	r = decode(v->key, v->value, v->len, &cmd, err, sizeof(err));
	ck_assert_msg(r == v->want, "%s: got %s (%s), want %s", v->name, payq_reason_name(r), err,
		      payq_reason_name(v->want));
	if (r != PAYQ_REASON_OK)
		return;
	payq_hex(cmd.payload_sha256, PAYQ_SHA256_LEN, hex);
	ck_assert_msg(!strcmp(hex, v->sha256), "%s: sha256 %s, want %s", v->name, hex, v->sha256);
}

/* Runs every vector of one file; counts the reasons seen. Returns the number of vectors. */
static size_t vector_file(const char *path, size_t seen[PAYQ_REASON__CNT])
{
	FILE *f = fopen(path, "r");
	char *line = NULL, where[64];
	size_t cap = 0, count = 0;
	const char *base = strrchr(path, '/') ? strrchr(path, '/') + 1 : path;

	ck_assert_msg(f != NULL, "cannot open %s", path);
	while (getline(&line, &cap, f) > 0) {
		struct vector v;
		cJSON *rec;

		snprintf(where, sizeof(where), "%.40s:%zu", base, ++count);
		vector_parse(line, where, &rec, &v);
		vector_check(&v);
		seen[v.want]++;
		free(v.value);
		cJSON_Delete(rec);
	}
	free(line);
	fclose(f);
	return count;
}

START_TEST(test_vectors)
{
	const char *dir = getenv("PAYQ_VECTORS_DIR");
	size_t seen[PAYQ_REASON__CNT] = {0}, files = 0, total = 0;
	struct dirent *e;
	DIR *d;

	ck_assert_msg(dir && *dir, "PAYQ_VECTORS_DIR is not set");
	d = opendir(dir);
	ck_assert_msg(d != NULL, "cannot open %s", dir);
	while ((e = readdir(d))) {
		size_t n = strlen(e->d_name);
		char path[4096];

		if (n < 7 || strcmp(e->d_name + n - 6, ".jsonl"))
			continue;
		snprintf(path, sizeof(path), "%s/%s", dir, e->d_name);
		total += vector_file(path, seen);
		files++;
	}
	closedir(d);
	ck_assert_msg(files > 0 && total > 0, "no vectors in %s", dir);
	for (int r = 0; r < PAYQ_REASON__CNT; r++)
		ck_assert_msg(seen[r] > 0, "no vector for %s", payq_reason_name((payq_reason_t)r));
}
END_TEST

static Suite *codec_suite(void)
{
	Suite *s = suite_create("codec");
	TCase *tc = tcase_create("codec");

	tcase_set_timeout(tc, 60);
	tcase_add_test(tc, test_decode_table);
	tcase_add_test(tc, test_decode_fields);
	tcase_add_test(tc, test_decode_sizes);
	tcase_add_test(tc, test_hash);
	tcase_add_test(tc, test_encode);
	tcase_add_test(tc, test_names);
	tcase_add_test(tc, test_valid_id);
	tcase_add_test(tc, test_long_numbers);
	tcase_add_test(tc, test_other_type_fields);
	tcase_add_test(tc, test_key_order_id);
	suite_add_tcase(s, tc);
	/* Its own case, so that the canon-hash mutation check can run it alone (CK_RUN_CASE). */
	tc = tcase_create("vectors");
	tcase_set_timeout(tc, 60);
	tcase_add_test(tc, test_vectors);
	suite_add_tcase(s, tc);
	return s;
}

PAYQ_TEST_SUITES(codec_suite);
