-- Sets over a table distributed by Citus (README "Scaling out"). Without Citus every function here answers "not
-- distributed" and nothing else changes. The catalog and functions of Citus are reached through EXECUTE only, so
-- that these functions are valid on a server that does not have it.

-- What a table is to Citus: kind 'distributed' (hash-distributed, with its distribution column), 'reference',
-- 'other' (a Citus local or single-shard table), or NULL (not a Citus table, or no Citus here).
CREATE OR REPLACE FUNCTION mrl_internal._citus_kind(rel regclass, OUT kind text, OUT dist_column name)
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pg_temp
AS $fn$
BEGIN
    IF pg_catalog.to_regclass('pg_catalog.pg_dist_partition') IS NULL THEN
        RETURN;
    END IF;
    EXECUTE 'SELECT CASE WHEN p.partmethod = ''h'' THEN ''distributed'' WHEN p.repmodel = ''t'' THEN ''reference''
                         ELSE ''other'' END,
                    CASE WHEN p.partmethod = ''h'' THEN pg_catalog.column_to_column_name(p.logicalrelid, p.partkey) END
               FROM pg_catalog.pg_dist_partition p WHERE p.logicalrelid = $1'
        INTO kind, dist_column USING rel;
END
$fn$;

CREATE OR REPLACE FUNCTION mrl_internal._is_distributed(rel regclass)
RETURNS bool
LANGUAGE sql STABLE
SET search_path = pg_catalog, pg_temp
AS $fn$
    SELECT (mrl_internal._citus_kind(rel)).kind IS NOT DISTINCT FROM 'distributed'
$fn$;

-- What a set over a Citus table must be: a hash-distributed source whose distribution column is its primary key
-- (the vectors are co-located with their row), embedded by the sidecar (async), one vector per row, created by a
-- superuser over a table a superuser owns (the set's tables are then the creator's too).
CREATE OR REPLACE FUNCTION mrl_internal._check_citus_source(source regclass, pk_col name, mode text, chunking jsonb)
RETURNS bool
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pg_temp
AS $fn$
DECLARE
    c record := mrl_internal._citus_kind(source);
BEGIN
    IF c.kind IS NULL THEN
        RETURN false;
    ELSIF c.kind <> 'distributed' THEN
        RAISE EXCEPTION 'embedding sets over a Citus % table (%) are not supported', c.kind, source
            USING ERRCODE = 'feature_not_supported',
                  HINT = 'Distribute the table by its primary key (SELECT create_distributed_table(...)), or keep it a plain local table.';
    ELSIF c.dist_column IS DISTINCT FROM pk_col THEN
        RAISE EXCEPTION '% is distributed by %, not by its primary key %: its vectors could not be co-located with their rows', source, c.dist_column, pk_col
            USING ERRCODE = 'feature_not_supported',
                  HINT = 'An embedding set over a distributed table needs the distribution column to be the single-column primary key.';
    ELSIF mode <> 'async' THEN
        RAISE EXCEPTION 'a set over the distributed table % cannot use % mode: its triggers run on the workers'' shards', source, mode
            USING ERRCODE = 'feature_not_supported', HINT = 'Use mode => ''async''.';
    ELSIF chunking IS NOT NULL THEN
        RAISE EXCEPTION 'chunked sets over a distributed table (%) are not supported yet', source
            USING ERRCODE = 'feature_not_supported', HINT = 'Create the set without chunking.';
    ELSIF NOT coalesce((SELECT r.rolsuper FROM pg_roles r WHERE r.rolname = current_user), false)
       OR NOT coalesce((SELECT r.rolsuper FROM pg_class pc JOIN pg_roles r ON r.oid = pc.relowner WHERE pc.oid = source), false) THEN
        -- pgmrl checks the tables it reads and writes on the coordinator; a distributed table's shards on the
        -- workers are other tables, which their owner can change there (Citus lets any role unhide and alter its
        -- own shards): code attached to them would run as the sidecar or a searcher
        RAISE EXCEPTION 'sets over the distributed table % can be created only by a superuser, over a table a superuser owns', source
            USING ERRCODE = 'insufficient_privilege',
                  HINT = 'The shards on the workers are outside the checks pgmrl makes on the coordinator: only a role that may run any code anyway may own them.';
    ELSIF pg_catalog.to_regproc('mrl_node._queue_shard_changes') IS NULL THEN
        RAISE EXCEPTION 'pgmrl''s node script is not installed in this database' USING ERRCODE = 'undefined_function',
              HINT = 'Run `pgmrl install` on the coordinator: it installs what every node needs.';
    END IF;
    RETURN true;
END
$fn$;

-- Distributes a new set's vectors and words tables by their key, co-located with the source: the cascade of a
-- DELETE and the worker's writes for one row stay on one shard. (A distributed foreign key may not cascade an
-- UPDATE of the distribution column, which Citus does not allow anyway: ON UPDATE is dropped.)
CREATE OR REPLACE FUNCTION mrl_internal._distribute_set_tables(source regclass, pk_col name, vt regclass, wt regclass)
RETURNS void
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $fn$
DECLARE
    fk name;
BEGIN
    SELECT conname INTO fk FROM pg_constraint WHERE conrelid = vt AND contype = 'f';
    EXECUTE format('ALTER TABLE %s DROP CONSTRAINT %I, ADD FOREIGN KEY (id) REFERENCES %s (%I) ON DELETE CASCADE',
                   vt, fk, source, pk_col);
    SELECT conname INTO fk FROM pg_constraint WHERE conrelid = wt AND contype = 'f';
    EXECUTE format('ALTER TABLE %s DROP CONSTRAINT %I, ADD FOREIGN KEY (id) REFERENCES %s (id) ON DELETE CASCADE',
                   wt, fk, vt);
    EXECUTE 'SELECT pg_catalog.create_distributed_table($1, ''id'', colocate_with => $2)' USING vt, source::text;
    EXECUTE 'SELECT pg_catalog.create_distributed_table($1, ''id'', colocate_with => $2)' USING wt, source::text;
END
$fn$;

-- At every batch of a distributed set: its tables (and so their shards on the workers) are still owned by superusers
-- (an ownership change by a superuser after the set was created hands the shards to a role pgmrl cannot check).
CREATE OR REPLACE FUNCTION mrl_internal._check_citus_owners(s mrl.embedding_sets)
RETURNS void
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pg_temp
AS $fn$
DECLARE
    bad text;
BEGIN
    SELECT string_agg(c.oid::regclass::text || ' (owner ' || r.rolname || ')', ', ') INTO bad
      FROM pg_class c JOIN pg_roles r ON r.oid = c.relowner
     WHERE c.oid IN (s.source, s.vectors_table, s.words_table) AND NOT r.rolsuper;
    IF bad IS NOT NULL THEN
        RAISE EXCEPTION 'embedding set "%" is refused: its distributed tables must be owned by a superuser: %', s.slug, bad
            USING ERRCODE = 'insufficient_privilege',
                  HINT = 'The shards of a distributed table are outside the checks pgmrl makes on the coordinator; give the tables back to a superuser (ALTER TABLE ... OWNER TO).';
    END IF;
END
$fn$;
