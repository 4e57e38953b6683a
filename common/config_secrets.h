/* config_secrets.h - the secrets among the settings (config.c's helpers; not for programs). */
#pragma once

#include <stddef.h>
#include <stdio.h>

#include "config.h"

/* From here on no log line shows a password of PAYQ_DB, the userinfo of PAYQ_GATEWAY_URL,
 * the gateway API key, or the value of a secret -X property. */
void payq_config_note_secrets(const payq_config_t *cfg);

/* Refuses a -X or -F key file (ssl.key.location, ssl.keystore.location,
 * sasl.kerberos.keytab) that others may read. Returns 0, or -1 with errstr naming the
 * origin and the property. */
int payq_config_check_key_files(const payq_config_t *cfg, char *errstr, size_t errstr_size);

/* -X dump: "ENV = conninfo" with passwords as ***, and "ENV = URL" with its userinfo as ***. */
void payq_config_put_conninfo(FILE *fp, const char *env, const char *db);
void payq_config_put_url(FILE *fp, const char *env, const char *url);
