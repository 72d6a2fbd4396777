-- pgmrl on every node of a Citus cluster (the coordinator and each worker; `pgmrl install` on the coordinator runs it
-- on all of them, idempotent). Triggers on a distributed table fire on the workers' shards only, in the worker's part
-- of the (possibly two-phase) transaction: there they cannot reach the coordinator's queue, nor NOTIFY. So a shard's
-- statement trigger writes the keys it changed into mrl_node.intake on its own node, in the same local transaction
-- as the rows; the sidecar moves them from every node into the coordinator's mrl.queue_intake (pgmrl.worker.citus).
--
-- Privileges: PUBLIC nothing. The trigger function runs as pgmrl_node_queue, a NOLOGIN role that may only INSERT
-- into the intake: whatever a shard trigger evaluates, it evaluates with no other privilege. pgmrl_admin (set
-- administrators) may attach it (create_embedding_set does); pgmrl_worker reads and deletes intake rows.

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
GRANT USAGE ON SCHEMA mrl_node TO pgmrl_node_queue, pgmrl_worker, pgmrl_admin;

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
-- to run anywhere but on a shard of that table, AFTER ... FOR EACH STATEMENT, with the transition table mrl_new of
-- that shard, and on a key of a built-in type (its text output is then built-in code).
CREATE OR REPLACE FUNCTION mrl_node._queue_shard_changes()
RETURNS trigger
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
SET DateStyle = 'ISO, MDY' SET IntervalStyle = 'postgres' SET extra_float_digits = 1 SET TimeZone = 'UTC' SET bytea_output = 'hex'
AS $fn$
DECLARE
    src regclass;
    keytype oid;
BEGIN
    IF TG_NARGS <> 3 OR TG_ARGV[0] !~ '^[0-9]{1,9}$' OR TG_LEVEL <> 'STATEMENT' OR TG_WHEN <> 'AFTER'
       OR TG_OP NOT IN ('INSERT', 'UPDATE') THEN
        RAISE EXCEPTION 'mrl_node._queue_shard_changes: not a pgmrl shard trigger' USING ERRCODE = 'insufficient_privilege';
    END IF;
    src := to_regclass(TG_ARGV[1]);
    IF src IS NULL OR NOT EXISTS (
           SELECT FROM pg_catalog.pg_dist_shard d
             JOIN pg_catalog.pg_class c ON c.oid = d.logicalrelid
             JOIN pg_catalog.pg_class sh ON sh.oid = TG_RELID
            WHERE d.logicalrelid = src AND sh.relnamespace = c.relnamespace
              AND sh.relname = c.relname || '_' || d.shardid)
       OR NOT EXISTS (SELECT FROM pg_catalog.pg_trigger t WHERE t.tgrelid = TG_RELID AND t.tgname = TG_NAME
                         AND t.tgfoid = 'mrl_node._queue_shard_changes'::regproc AND t.tgnewtable = 'mrl_new') THEN
        RAISE EXCEPTION 'pgmrl shard trigger % on % is not on a shard of %', TG_NAME, TG_RELID::regclass, TG_ARGV[1]
            USING ERRCODE = 'insufficient_privilege';
    END IF;
    SELECT a.atttypid INTO keytype FROM pg_catalog.pg_attribute a
     WHERE a.attrelid = TG_RELID AND a.attname = TG_ARGV[2] AND a.attnum > 0 AND NOT a.attisdropped;
    IF keytype IS NULL OR keytype >= 16384 THEN
        RAISE EXCEPTION 'pgmrl shard trigger %: the key column % is missing or not of a built-in type', TG_NAME, TG_ARGV[2]
            USING ERRCODE = 'insufficient_privilege';
    END IF;
    EXECUTE format('INSERT INTO mrl_node.intake (set_id, ids, source) SELECT $1, array_agg(mrl_new.%I::text), $2
                      FROM mrl_new HAVING count(*) > 0', TG_ARGV[2]) USING TG_ARGV[0]::int, TG_ARGV[1];
    RETURN NULL;
END
$fn$;
ALTER FUNCTION mrl_node._queue_shard_changes() OWNER TO pgmrl_node_queue;
-- EXECUTE is checked when a trigger is created (by a set administrator), not when it fires (any writer).
REVOKE ALL ON FUNCTION mrl_node._queue_shard_changes() FROM PUBLIC;
GRANT EXECUTE ON FUNCTION mrl_node._queue_shard_changes() TO pgmrl_admin;
