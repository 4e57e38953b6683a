/* migrate.h - schema migrations embedded from schema/NNN_name.sql. */
#pragma once

#include <stddef.h>

#include <libpq-fe.h>

typedef struct payq_migration {
	int version;
	const char *name;
	const char *sql;
} payq_migration_t;

extern const payq_migration_t payq_migrations[];
extern const int payq_migrations_cnt;

/* Applies every migration not yet in payq.schema_migrations, each in its own
 * transaction, under an advisory lock so that many pods may start at once. Running
 * it twice is harmless. *applied gets the number applied. Returns 0 or -1 with errstr. */
int payq_migrate(PGconn *conn, int *applied, char *errstr, size_t errstr_size);

typedef enum {
	PAYQ_SCHEMA_OK = 0,
	PAYQ_SCHEMA_TOO_OLD,	/* errstr names the versions and the command to run */
	PAYQ_SCHEMA_UNREADABLE, /* the version could not be read (timeout, serialization
				 * failure, lost connection...): retry like any transient error */
} payq_schema_check_t;

/* Checks that the database has every migration this build knows. Only a version read
 * and found lower is PAYQ_SCHEMA_TOO_OLD. */
payq_schema_check_t payq_migrate_check(PGconn *conn, char *errstr, size_t errstr_size);
