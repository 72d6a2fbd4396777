-- pgmrl on every node of a Citus cluster (the coordinator and each worker; `pgmrl install` on the coordinator runs it
-- on all of them, idempotent). Triggers on a distributed table fire on the workers' shards only, in the worker's part
-- of the (possibly two-phase) transaction: there they cannot reach the coordinator's queue, nor NOTIFY. So a shard's
-- statement trigger writes the keys it changed into mrl_node.intake on its own node, in the same local transaction
-- as the rows; the sidecar moves them from every node into the coordinator's mrl.queue_intake (pgmrl.worker.citus).
--
-- Privileges: PUBLIC nothing. The trigger function runs as pgmrl_node_queue, a NOLOGIN role that may only INSERT
-- into the intake: whatever a shard trigger evaluates, it evaluates with no other privilege. Only superusers attach
-- it (sets over distributed tables are theirs); pgmrl_worker reads and deletes intake rows.

DO $roles$
BEGIN
    IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'pgmrl_node_queue') THEN
        CREATE ROLE pgmrl_node_queue NOLOGIN;
    END IF;
    IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'pgmrl_worker') THEN
        CREATE ROLE pgmrl_worker NOLOGIN;
    END IF;
    IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'pgmrl_admin') THEN
        CREATE ROLE pgmrl_admin NOLOGIN;
    END IF;
END
$roles$;

CREATE SCHEMA IF NOT EXISTS mrl_node;
REVOKE ALL ON SCHEMA mrl_node FROM PUBLIC;
REVOKE ALL ON SCHEMA mrl_node FROM pgmrl_admin;
GRANT USAGE ON SCHEMA mrl_node TO pgmrl_node_queue, pgmrl_worker;

-- Keys written by one statement on one shard: ids are the key values as text; source the distributed table the
-- shard belongs to (the sidecar moves a row only into a set over that table).
CREATE TABLE IF NOT EXISTS mrl_node.intake (
    bid bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    set_id int NOT NULL,
    ids text[] NOT NULL,
    queued_at timestamptz NOT NULL DEFAULT clock_timestamp()
);
ALTER TABLE mrl_node.intake ADD COLUMN IF NOT EXISTS source text;
REVOKE ALL ON mrl_node.intake FROM PUBLIC;
GRANT INSERT ON mrl_node.intake TO pgmrl_node_queue;
GRANT SELECT, DELETE ON mrl_node.intake TO pgmrl_worker;

-- The statement trigger of a distributed source (mrl_internal._create_triggers): TG_ARGV = set id, the distributed
-- table (schema-qualified), its key column. It queues the keys of every inserted or updated row (whether the
-- embedded text changed is checked by the worker, which skips a text whose hash it has stored already). It refuses
-- to run anywhere but on a shard of that table placed on this node and owned by the table's owner, AFTER ... FOR
-- EACH STATEMENT, with the transition table mrl_new, and on the table's distribution column (a NOT NULL primary
-- key of a built-in type, so that its text output is built-in code). The table is found by name in the catalog (no
-- privilege on its schema is needed), its shards by Citus' own shard naming (long names are shortened).
CREATE OR REPLACE FUNCTION mrl_node._queue_shard_changes()
RETURNS trigger
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
SET DateStyle = 'ISO, MDY' SET IntervalStyle = 'postgres' SET extra_float_digits = 1 SET TimeZone = 'UTC' SET bytea_output = 'hex'
AS $fn$
DECLARE
    name_parts text[];
    src oid;
    keytype oid;
BEGIN
    IF TG_NARGS <> 3 OR TG_ARGV[0] !~ '^[0-9]{1,9}$' OR TG_LEVEL <> 'STATEMENT' OR TG_WHEN <> 'AFTER'
       OR TG_OP NOT IN ('INSERT', 'UPDATE') THEN
        RAISE EXCEPTION 'mrl_node._queue_shard_changes: not a pgmrl shard trigger' USING ERRCODE = 'insufficient_privilege';
    END IF;
    BEGIN
        name_parts := parse_ident(TG_ARGV[1]);
    EXCEPTION WHEN OTHERS THEN
        name_parts := NULL;
    END;
    IF cardinality(name_parts) = 2 THEN
        SELECT c.oid INTO src FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
         WHERE n.nspname = name_parts[1] AND c.relname = name_parts[2];
    END IF;
    IF src IS NULL OR NOT EXISTS (
           SELECT FROM pg_catalog.pg_dist_shard d
             JOIN pg_catalog.pg_class c ON c.oid = d.logicalrelid
             JOIN pg_catalog.pg_class sh ON sh.oid = TG_RELID
             JOIN pg_catalog.pg_dist_partition p ON p.logicalrelid = d.logicalrelid
            WHERE d.logicalrelid = src AND p.partmethod = 'h'
              AND sh.relnamespace = c.relnamespace AND sh.relowner = c.relowner
              AND (parse_ident(pg_catalog.shard_name(d.logicalrelid, d.shardid)))[
                      cardinality(parse_ident(pg_catalog.shard_name(d.logicalrelid, d.shardid)))] = sh.relname
              AND pg_catalog.column_to_column_name(p.logicalrelid, p.partkey) = TG_ARGV[2]
              AND EXISTS (SELECT FROM pg_catalog.pg_dist_placement pl
                           WHERE pl.shardid = d.shardid AND pl.groupid = (SELECT groupid FROM pg_catalog.pg_dist_local_group)))
       OR NOT EXISTS (SELECT FROM pg_catalog.pg_trigger t WHERE t.tgrelid = TG_RELID AND t.tgname = TG_NAME
                         AND t.tgfoid = 'mrl_node._queue_shard_changes'::regproc AND t.tgnewtable = 'mrl_new') THEN
        RAISE EXCEPTION 'pgmrl shard trigger % on % is not on a shard of % placed on this node', TG_NAME, TG_RELID::regclass, TG_ARGV[1]
            USING ERRCODE = 'insufficient_privilege';
    END IF;
    SELECT a.atttypid INTO keytype FROM pg_catalog.pg_attribute a
     WHERE a.attrelid = TG_RELID AND a.attname = TG_ARGV[2] AND a.attnum > 0 AND NOT a.attisdropped AND a.attnotnull;
    IF keytype IS NULL OR keytype >= 16384 THEN
        RAISE EXCEPTION 'pgmrl shard trigger %: the key column % is missing, nullable or not of a built-in type', TG_NAME, TG_ARGV[2]
            USING ERRCODE = 'insufficient_privilege';
    END IF;
    EXECUTE format('INSERT INTO mrl_node.intake (set_id, ids, source) SELECT $1, array_agg(mrl_new.%I::text), $2
                      FROM mrl_new HAVING count(*) > 0', TG_ARGV[2]) USING TG_ARGV[0]::int, TG_ARGV[1];
    RETURN NULL;
END
$fn$;
ALTER FUNCTION mrl_node._queue_shard_changes() OWNER TO pgmrl_node_queue;
-- EXECUTE is checked when a trigger is created, not when it fires (any writer). Only superusers create sets over
-- distributed tables (mrl_internal._check_citus_source), and they need no grant.
REVOKE ALL ON FUNCTION mrl_node._queue_shard_changes() FROM PUBLIC, pgmrl_admin;
