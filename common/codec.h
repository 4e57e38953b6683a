/* codec.h - the payq.commands wire format, version 1: decode and validate (codec.c), encode
 * and hash (canon.c). */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define PAYQ_ID_MAX 64			   /* command_id, order_id: 1..64 of [A-Za-z0-9._:-] */
#define PAYQ_TEXT_MAX 256		   /* payer_id, customer_id, reason: at most 256 bytes */
#define PAYQ_VALUE_MAX 65536		   /* a value over 64 KiB is too_large */
#define PAYQ_AMOUNT_MAX 1000000000000000LL /* 10^15 */
#define PAYQ_SHA256_LEN 32

typedef enum {
	PAYQ_CMD_NONE = 0,
	PAYQ_CMD_CREATE_ORDER,
	PAYQ_CMD_PAY,
	PAYQ_CMD_CANCEL_ORDER,
} payq_cmd_type_t;

/* DLQ reason codes, exactly as DESIGN.md names them. */
typedef enum {
	PAYQ_REASON_OK = 0,
	PAYQ_REASON_EMPTY,
	PAYQ_REASON_TOO_LARGE,
	PAYQ_REASON_BAD_ENCODING,
	PAYQ_REASON_NOT_JSON,
	PAYQ_REASON_DUPLICATE_FIELD,
	PAYQ_REASON_UNSUPPORTED_VERSION,
	PAYQ_REASON_UNKNOWN_TYPE,
	PAYQ_REASON_MISSING_FIELD,
	PAYQ_REASON_BAD_FIELD,
	PAYQ_REASON_BAD_AMOUNT,
	PAYQ_REASON_KEY_MISMATCH,
	PAYQ_REASON__CNT
} payq_reason_t;

/* A validated command. Strings are NUL-terminated; an absent optional string has its
 * has_* flag false and is "". amount_minor is 0 and currency "" where absent. */
typedef struct payq_command {
	payq_cmd_type_t type;
	char command_id[PAYQ_ID_MAX + 1];
	char order_id[PAYQ_ID_MAX + 1];
	int64_t amount_minor;
	char currency[4];
	bool has_customer_id, has_payer_id, has_reason;
	char customer_id[PAYQ_TEXT_MAX + 1];
	char payer_id[PAYQ_TEXT_MAX + 1];
	char reason[PAYQ_TEXT_MAX + 1];
	unsigned char payload_sha256[PAYQ_SHA256_LEN]; /* set by decode and by payq_codec_hash() */
} payq_command_t;

/* "create_order", "pay", "cancel_order". */
const char *payq_cmd_type_name(payq_cmd_type_t t);
/* Returns the type for a name, or PAYQ_CMD_NONE. */
payq_cmd_type_t payq_cmd_type_parse(const char *name);

/* "empty", "too_large", ..., "key_mismatch"; "ok" for PAYQ_REASON_OK. */
const char *payq_reason_name(payq_reason_t r);
/* Returns the reason for a code, or -1. */
int payq_reason_parse(const char *name);

/* Decodes and validates one message value against DESIGN.md's rules.
 * key/key_len is the Kafka message key; key == NULL skips the key_mismatch check (the
 * producer validates JSONL lines before it has a key). A NULL value is "empty".
 * On success returns PAYQ_REASON_OK and fills *cmd, including payload_sha256.
 * Otherwise returns the reason code, clears *cmd and writes a readable message naming
 * the field into errstr (which may be NULL). Allocation failure, which the reason codes
 * have no name for, reads as not_json with errstr "out of memory". */
payq_reason_t payq_codec_decode(const void *key, size_t key_len, const void *value,
				size_t value_len, payq_command_t *cmd, char *errstr,
				size_t errstr_size);

/* Computes cmd->payload_sha256 from the canonical form (see codec.c). */
void payq_codec_hash(payq_command_t *cmd);

/* Encodes cmd as the compact v1 JSON object: v, type, command_id, order_id, then
 * amount_minor and currency (create_order, pay) and the type's optional field when its
 * has_* is set. Returns a malloc()ed NUL-terminated string that the caller frees, or
 * NULL on allocation failure or when cmd->type is not a command type. */
char *payq_codec_encode(const payq_command_t *cmd);

/* True when s is 1..64 characters from [A-Za-z0-9._:-]. */
bool payq_codec_valid_id(const char *s);

/* The order ID a message key names, for log lines: copies key into buf (PAYQ_ID_MAX + 1
 * bytes) and returns buf when the key is a valid ID, else NULL (a key from outside may be
 * anything). */
const char *payq_codec_key_order_id(const void *key, size_t key_len, char *buf);
