#!/bin/bash
# Least privilege and TLS towards PostgreSQL (schema/007_roles.sql, tests/pg_roles):
# - the database is migrated as payq_owner; the worker runs as payq_worker over TLS with
#   sslmode=verify-full, applies commands, and that is what pg_stat_ssl shows;
# - payq_worker can neither ALTER, DROP, TRUNCATE nor CREATE anything (42501), nor write
#   outside its tables; payq_readonly only reads; payq_replay reads and moves
#   consumer_progress, nothing more;
# - verify-full refuses a server whose certificate another CA signed;
# - a conninfo below verify-full towards a remote host makes the worker warn at start,
#   and the verify-full one does not;
# - a migrating user that may not create roles, on a cluster without them, fails with a
#   message naming them; once they exist it migrates (a second throwaway cluster).
# shellcheck source=tests/lib/common.sh
source "${PAYQ_SOURCE_ROOT:-$(dirname "$0")/../..}/tests/lib/common.sh"
# shellcheck source=tests/integration/worker_lib.sh
source "$PAYQ_SOURCE_ROOT/tests/integration/worker_lib.sh"
require_env PAYQ_TEST_READONLY_DB PAYQ_TEST_PG_DIR

wl_init db_roles 2

# ---- the worker as payq_worker, verify-full ----
wl_worker_start w1
wl_wait_assigned w1
{
	wl_cmd_create R-1 R-1:c 100
	wl_cmd_pay R-1 R-1:p 100
} | wl_produce
wl_wait_drained 60
wl_check_workers_alive
assert_eq "applied paid" "$(wl_sql "SELECT c.outcome || ' ' || o.status FROM payq.processed_commands c
	JOIN payq.orders o USING (order_id) WHERE c.command_id = 'R-1:p'")" "the worker applied the commands"
# One connection per apply lane (PAYQ_APPLY_LANES): every one of them.
assert_eq "payq_worker t TLSv1.3" "$(wl_sql "SELECT DISTINCT a.usename, s.ssl, s.version
	FROM pg_stat_activity a JOIN pg_stat_ssl s USING (pid) WHERE a.datname = current_database()
	AND a.application_name = 'payq-worker'")" "every connection of the worker is payq_worker over TLS"
assert_eq "payq_owner" "$(wl_sql "SELECT nspowner::regrole FROM pg_namespace WHERE nspname = 'payq'")" \
	"the schema belongs to payq_owner, who migrated it"
if grep -q '"level":"warn".*sslmode' "$WL_DIR/w1.log"; then
	die "the worker warned about sslmode with verify-full: $(grep sslmode "$WL_DIR/w1.log")"
fi
pass "no sslmode warning with verify-full"

# ---- what each role may not do ----
# as_role CONNINFO SQL: runs SQL; prints the SQLSTATE of its error, or "ok".
as_role() {
	local out
	if out=$(psql "$1 dbname=$WL_DBNAME" -XAtq -v ON_ERROR_STOP=1 -v VERBOSITY=verbose -c "$2" 2>&1); then
		echo ok
	else
		sed -n 's/^ERROR:  \([0-9A-Z]\{5\}\):.*/\1/p' <<<"$out" | head -n 1
		[[ $out == *ERROR:* ]] || echo "no-error-line: $out"
	fi
}
# refused ROLE_DB SQL...: every statement fails with 42501 (insufficient_privilege).
refused() {
	local db=$1 s got
	shift
	for s in "$@"; do
		got=$(as_role "$db" "$s")
		[[ $got == 42501 ]] || die "expected 42501 for '$s', got '$got'"
	done
}
allowed() {
	local db=$1 s got
	shift
	for s in "$@"; do
		got=$(as_role "$db" "$s")
		[[ $got == ok ]] || die "expected '$s' to succeed, got '$got'"
	done
}

refused "$PAYQ_TEST_WORKER_DB" \
	"ALTER TABLE payq.orders ADD COLUMN evil text" \
	"ALTER TABLE payq.payments DROP CONSTRAINT payments_pkey" \
	"DROP TABLE payq.payments" \
	"DROP TABLE payq.schema_migrations" \
	"DROP SCHEMA payq CASCADE" \
	"DROP FUNCTION payq.expect_rows(bigint, bigint, text)" \
	"DROP INDEX payq.processed_commands_first_seen" \
	"TRUNCATE payq.orders" \
	"CREATE TABLE payq.evil (i int)" \
	"CREATE VIEW payq.evil AS SELECT 1" \
	"CREATE FUNCTION payq.evil() RETURNS int LANGUAGE sql AS 'SELECT 1'" \
	"CREATE INDEX evil ON payq.orders (customer_id)" \
	"CREATE TABLE public.evil (i int)" \
	"CREATE SCHEMA evil" \
	"CREATE TRIGGER evil BEFORE INSERT ON payq.orders FOR EACH ROW EXECUTE FUNCTION payq.expect_rows()" \
	"DELETE FROM payq.orders" \
	"DELETE FROM payq.payments" \
	"INSERT INTO payq.schema_migrations VALUES (999, 'evil')"
# A GRANT it may not give only warns ("no privileges were granted"): check its effect.
as_role "$PAYQ_TEST_WORKER_DB" "GRANT SELECT ON payq.orders TO PUBLIC" >/dev/null
assert_eq f "$(wl_sql "SELECT has_table_privilege('public', 'payq.orders', 'SELECT')")" \
	"payq_worker cannot grant anything"
pass "payq_worker cannot ALTER, DROP, TRUNCATE or CREATE, nor write outside its tables (42501 each)"
allowed "$PAYQ_TEST_WORKER_DB" "SELECT count(*) FROM payq.orders" \
	"UPDATE payq.orders SET updated_at = updated_at WHERE false"
refused "$PAYQ_TEST_READONLY_DB" \
	"INSERT INTO payq.anomalies (kind, detail) VALUES ('x', 'y')" \
	"UPDATE payq.consumer_progress SET next_offset = 0" \
	"CREATE TABLE payq.evil (i int)"
allowed "$PAYQ_TEST_READONLY_DB" "SELECT count(*) FROM payq.orders, payq.payments, payq.anomalies" \
	"SELECT count(*) FROM payq.processed_commands, payq.consumer_progress, payq.schema_migrations"
pass "payq_readonly reads every table and writes none"
refused "$PAYQ_TEST_REPLAY_DB" \
	"UPDATE payq.orders SET status = 'paid'" \
	"DELETE FROM payq.consumer_progress" \
	"ALTER TABLE payq.consumer_progress ADD COLUMN evil text"
allowed "$PAYQ_TEST_REPLAY_DB" "SELECT count(*) FROM payq.dedup_horizon, payq.dedup_pruned_offsets" \
	"UPDATE payq.consumer_progress SET updated_at = updated_at WHERE false"
pass "payq_replay reads and may move consumer_progress, nothing more"

# ---- verify-full against a certificate of another CA ----
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 1 \
	-subj "/CN=not the test CA" -keyout "$WL_DIR/other.key" -out "$WL_DIR/other.crt" >/dev/null 2>&1 ||
	die "openssl could not make a second CA"
rc=0
PAYQ_DB="$WL_WORKER_DB sslrootcert=$WL_DIR/other.crt" PAYQ_LOG_LEVEL=info "$WL_EXE" migrate \
	>"$WL_DIR/badca.log" 2>&1 || rc=$?
assert_eq 1 "$rc" "a worker that cannot verify the server exits 1"
grep -q 'certificate verify failed' "$WL_DIR/badca.log" ||
	die "no 'certificate verify failed' in: $(cat "$WL_DIR/badca.log")"
pass "verify-full refuses a server certificate from another CA"

# ---- the start warning ----
for mode in disable prefer require verify-ca; do
	PAYQ_DB="host=db.invalid dbname=payq sslmode=$mode" PAYQ_DB_CONNECT_TIMEOUT_S=2 \
		"$WL_EXE" migrate >"$WL_DIR/warn-$mode.log" 2>&1 || true
	grep -q "\"level\":\"warn\",\"msg\":\"PostgreSQL: sslmode=$mode towards db.invalid" "$WL_DIR/warn-$mode.log" ||
		die "no sslmode warning for sslmode=$mode: $(cat "$WL_DIR/warn-$mode.log")"
done
PGSSLMODE=require PAYQ_DB="host=127.0.0.1,db.invalid dbname=payq" PAYQ_DB_CONNECT_TIMEOUT_S=2 \
	"$WL_EXE" migrate >"$WL_DIR/warn-env.log" 2>&1 || true
grep -q '"level":"warn","msg":"PostgreSQL: sslmode=require towards db.invalid' "$WL_DIR/warn-env.log" ||
	die "no sslmode warning for PGSSLMODE=require and a remote second host: $(cat "$WL_DIR/warn-env.log")"
PAYQ_DB="host=db.invalid dbname=payq sslmode=verify-full" PAYQ_DB_CONNECT_TIMEOUT_S=2 \
	"$WL_EXE" migrate >"$WL_DIR/warn-none.log" 2>&1 || true
if grep -q 'sslmode=' "$WL_DIR/warn-none.log"; then
	die "an sslmode warning with verify-full: $(cat "$WL_DIR/warn-none.log")"
fi
pass "below verify-full towards a remote host the worker warns at start (level warn)"

# ---- a migrating user that may not create roles ----
pg2=$WL_DIR/pg2
"$PAYQ_SOURCE_ROOT/deploy/local/pg" start "$pg2" >"$WL_DIR/pg2.out" 2>"$WL_DIR/pg2.err" ||
	die "cannot start a second cluster: $(cat "$WL_DIR/pg2.err")"
on_exit "'$PAYQ_SOURCE_ROOT/deploy/local/pg' stop '$pg2' >/dev/null 2>&1"
pg2_super=$(cat "$WL_DIR/pg2.out")
pw=$(openssl rand -hex 16)
printf '127.0.0.1:%s:*:migrator:%s\n' "$(cat "$pg2/port")" "$pw" >"$WL_DIR/pg2pass"
chmod 0600 "$WL_DIR/pg2pass"
psql "$pg2_super" -XAtq -v ON_ERROR_STOP=1 >/dev/null <<SQL || die "cannot set up the second cluster"
CREATE ROLE migrator LOGIN NOCREATEROLE PASSWORD '$pw';
GRANT CREATE ON DATABASE payq TO migrator;
SQL
migrator_db="host=127.0.0.1 port=$(cat "$pg2/port") dbname=payq user=migrator passfile=$WL_DIR/pg2pass sslmode=verify-full sslrootcert=$pg2/tls/ca.crt"
rc=0
PAYQ_DB=$migrator_db "$WL_EXE" migrate >"$WL_DIR/pg2-migrate1.log" 2>&1 || rc=$?
assert_eq 1 "$rc" "migrate without the roles, as a user that may not create them, exits 1"
grep -q 'roles payq_owner, payq_worker, payq_replay, payq_readonly do not exist and role migrator may not create roles' \
	"$WL_DIR/pg2-migrate1.log" || die "the error does not name the roles: $(cat "$WL_DIR/pg2-migrate1.log")"
pass "the error names the missing roles and what to run"
psql "$pg2_super" -XAtq -v ON_ERROR_STOP=1 -c "CREATE ROLE payq_owner; CREATE ROLE payq_worker;
	CREATE ROLE payq_replay; CREATE ROLE payq_readonly" >/dev/null || die "cannot create the roles"
PAYQ_DB=$migrator_db "$WL_EXE" migrate >"$WL_DIR/pg2-migrate2.log" 2>&1 ||
	die "migrate failed once the roles exist: $(cat "$WL_DIR/pg2-migrate2.log")"
assert_eq t "$(psql "$pg2_super" -XAtq -c "SELECT has_table_privilege('payq_worker', 'payq.orders', 'UPDATE')
	AND NOT has_table_privilege('payq_worker', 'payq.orders', 'DELETE')")" \
	"once the roles exist, migrate grants them their privileges"
psql "$pg2_super" -XAtq -v ON_ERROR_STOP=1 -c "CREATE DATABASE fresh" \
	-c "GRANT CREATE ON DATABASE fresh TO migrator" \
	-c "DROP OWNED BY payq_owner, payq_worker, payq_replay, payq_readonly" \
	-c "DROP ROLE payq_owner, payq_worker, payq_replay, payq_readonly" \
	-c "ALTER ROLE migrator CREATEROLE" >"$WL_DIR/pg2-reset.log" 2>&1 ||
	die "cannot reset the roles: $(cat "$WL_DIR/pg2-reset.log")"
PAYQ_DB="${migrator_db/dbname=payq/dbname=fresh}" "$WL_EXE" migrate >"$WL_DIR/pg2-migrate3.log" 2>&1 ||
	die "migrate as a CREATEROLE user failed: $(cat "$WL_DIR/pg2-migrate3.log")"
assert_eq "4 f" "$(psql "$pg2_super" -XAtq -F ' ' -c "SELECT count(*), bool_or(rolcanlogin) FROM pg_roles
	WHERE rolname IN ('payq_owner', 'payq_worker', 'payq_replay', 'payq_readonly')")" \
	"a migrating user with CREATEROLE creates the four roles, NOLOGIN"
