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

/* Checks that the database has every migration this build knows. Returns 0, or -1
 * with errstr naming the versions and the command to run. */
int payq_migrate_check(PGconn *conn, char *errstr, size_t errstr_size);
