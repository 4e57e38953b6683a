/* secretfile.h - files that hold secrets: the -F librdkafka configuration, PAYQ_*_FILE, and
 * the key files librdkafka is pointed at. They must not be readable by every user. */
#pragma once

#include <stdbool.h>
#include <stddef.h>

/* The most a secret file may hold: a conninfo, an API key or a few dozen librdkafka lines. */
#define PAYQ_SECRET_FILE_MAX (64 * 1024)

/* Checks that path is a regular file that no other user may read and no group or other user
 * may write (mode & 0026 is zero: 0600, 0400, 0640 and 0440 pass). Returns 0, or -1 with
 * errstr naming the file and what is wrong; it never quotes the file's content. */
int payq_secret_file_check(const char *path, char *errstr, size_t errstr_size);

/* Reads a whole secret file after payq_secret_file_check(), on the opened descriptor (no
 * race with a chmod or rename in between). The text is NUL-terminated in *out (free it),
 * its length in *len. A file holding a NUL byte or more than PAYQ_SECRET_FILE_MAX bytes is
 * refused. Returns 0 or -1 with errstr. */
int payq_secret_file_read(const char *path, char **out, size_t *len, char *errstr,
			  size_t errstr_size);

/* Reads a file holding one value (PAYQ_DB_FILE, PAYQ_GATEWAY_API_KEY_FILE): as
 * payq_secret_file_read(), less one trailing newline ("\n" or "\r\n"), as `echo` and
 * Kubernetes Secrets written from a shell leave it. A value spread over lines is refused. */
int payq_secret_file_value(const char *path, char **out, char *errstr, size_t errstr_size);
