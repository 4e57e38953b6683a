/* secretfile.c - reading the files that hold secrets, refusing those others may read. */
#include "secretfile.h"

#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "util.h"

/* Bits that must be clear: readable by others, writable by the group or others. */
#define SECRET_FORBIDDEN_MODE (S_IROTH | S_IWGRP | S_IWOTH)

static int check_stat(const char *path, const struct stat *st, char *errstr, size_t errstr_size)
{
	if (!S_ISREG(st->st_mode))
		return payq_err(errstr, errstr_size, "secret file %s: not a regular file", path);
	if (st->st_mode & SECRET_FORBIDDEN_MODE)
		return payq_err(errstr, errstr_size,
				"secret file %s: refused: mode %04o lets %s; make it 0600 or 0640 "
				"(chmod 600 %s)",
				path, (unsigned)(st->st_mode & 07777),
				st->st_mode & S_IROTH ? "every user read it"
						      : "other users change it",
				path);
	return 0;
}

int payq_secret_file_check(const char *path, char *errstr, size_t errstr_size)
{
	struct stat st;

	if (stat(path, &st))
		return payq_err(errstr, errstr_size, "secret file %s: %s", path, strerror(errno));
	return check_stat(path, &st, errstr, errstr_size);
}

int payq_secret_file_read(const char *path, char **out, size_t *len, char *errstr,
			  size_t errstr_size)
{
	struct stat st;
	char *buf = NULL;
	size_t n = 0;
	int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY);

	*out = NULL;
	*len = 0;
	if (fd < 0)
		return payq_err(errstr, errstr_size, "secret file %s: %s", path, strerror(errno));
	if (fstat(fd, &st)) {
		payq_err(errstr, errstr_size, "secret file %s: %s", path, strerror(errno));
		goto fail;
	}
	if (check_stat(path, &st, errstr, errstr_size))
		goto fail;
	/* One byte more than allowed tells a file that is too large from one that fits. */
	buf = malloc(PAYQ_SECRET_FILE_MAX + 2);
	if (!buf) {
		payq_err(errstr, errstr_size, "out of memory");
		goto fail;
	}
	while (n <= PAYQ_SECRET_FILE_MAX) {
		ssize_t r = read(fd, buf + n, PAYQ_SECRET_FILE_MAX + 1 - n);

		if (r < 0 && errno == EINTR)
			continue;
		if (r < 0) {
			payq_err(errstr, errstr_size, "secret file %s: %s", path, strerror(errno));
			goto fail;
		}
		if (r == 0)
			break;
		n += (size_t)r;
	}
	if (n > PAYQ_SECRET_FILE_MAX) {
		payq_err(errstr, errstr_size, "secret file %s: larger than %d bytes", path,
			 PAYQ_SECRET_FILE_MAX);
		goto fail;
	}
	if (memchr(buf, '\0', n)) {
		payq_err(errstr, errstr_size, "secret file %s: holds a NUL byte", path);
		goto fail;
	}
	buf[n] = '\0';
	close(fd);
	*out = buf;
	*len = n;
	return 0;
fail:
	free(buf);
	close(fd);
	return -1;
}

int payq_secret_file_value(const char *path, char **out, char *errstr, size_t errstr_size)
{
	size_t n;

	if (payq_secret_file_read(path, out, &n, errstr, errstr_size))
		return -1;
	if (n && (*out)[n - 1] == '\n')
		(*out)[--n] = '\0';
	if (n && (*out)[n - 1] == '\r')
		(*out)[--n] = '\0';
	if (strpbrk(*out, "\r\n")) {
		free(*out);
		*out = NULL;
		return payq_err(errstr, errstr_size,
				"secret file %s: holds more than one line; a value is one line",
				path);
	}
	return 0;
}
