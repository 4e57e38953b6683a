-- 007_roles.sql - least-privilege roles. Roles belong to the cluster, GRANTs to this
-- database: every database that payq migrates gets the same grants.
--
--   payq_owner     owns the schema and runs `payq-worker migrate` (DDL)
--   payq_worker    DML on the tables the worker writes; no DDL, no CREATE in payq
--   payq_replay    reads everything; writes consumer_progress (reset-offsets)
--   payq_readonly  reads everything (dashboards, audits)
--
-- A migrating user that may create roles (superuser, or CREATEROLE) creates the missing
-- ones as NOLOGIN group roles: give them LOGIN and a password, or GRANT them to login
-- users. A migrating user that may not fails here, naming the roles to create first.
DO $$
DECLARE
    r       text;
    missing text[] := '{}';
    can     boolean;
BEGIN
    SELECT rolsuper OR rolcreaterole INTO can FROM pg_roles WHERE rolname = current_user;
    FOREACH r IN ARRAY ARRAY['payq_owner', 'payq_worker', 'payq_replay', 'payq_readonly'] LOOP
        CONTINUE WHEN EXISTS (SELECT 1 FROM pg_roles WHERE rolname = r);
        IF can THEN
            EXECUTE format('CREATE ROLE %I NOLOGIN', r);
            RAISE NOTICE 'created role % (NOLOGIN)', r;
        ELSE
            missing := missing || r;
        END IF;
    END LOOP;
    IF cardinality(missing) > 0 THEN
        RAISE EXCEPTION 'roles % do not exist and role % may not create roles: as a superuser run CREATE ROLE <name> LOGIN PASSWORD ''...'' for each (see README, Security), then migrate again',
            array_to_string(missing, ', '), current_user
            USING ERRCODE = 'insufficient_privilege';
    END IF;
END $$;

REVOKE ALL ON SCHEMA payq FROM PUBLIC;
GRANT USAGE ON SCHEMA payq TO payq_worker, payq_replay, payq_readonly;

-- The worker: its own tables only. DELETE only where prune removes rows.
GRANT SELECT ON payq.schema_migrations TO payq_worker;
GRANT SELECT, INSERT, UPDATE ON
    payq.orders, payq.payments, payq.processed_commands, payq.anomalies,
    payq.consumer_progress, payq.dedup_horizon, payq.dedup_pruned_offsets
    TO payq_worker;
GRANT DELETE ON payq.processed_commands TO payq_worker;
REVOKE EXECUTE ON ALL FUNCTIONS IN SCHEMA payq FROM PUBLIC;
GRANT EXECUTE ON ALL FUNCTIONS IN SCHEMA payq TO payq_worker;

-- Replay and audits read everything; reset-offsets moves consumer_progress.
GRANT SELECT ON ALL TABLES IN SCHEMA payq TO payq_replay, payq_readonly;
GRANT INSERT, UPDATE ON payq.consumer_progress TO payq_replay;

-- Tables that later migrations create, as the same migrating user, are readable by
-- replay and dashboards at once; the worker's DML on them is granted by the migration
-- that creates them.
ALTER DEFAULT PRIVILEGES IN SCHEMA payq GRANT SELECT ON TABLES TO payq_replay, payq_readonly;
