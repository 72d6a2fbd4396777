-- The fitted rotation of non-MRL sets. The sidecar fits it (numpy SVD) and stores it with
-- mrl_internal._store_rotation(), which rewrites every coarse vector in the same transaction.

-- Sets whose rotation should be (re)fitted now: asked for, or first reaching rotation_min_rows embedded rows,
-- or grown to twice the rows of the last fit. Never while the set still has queued work (except when asked).
CREATE OR REPLACE FUNCTION mrl_internal._rotation_due()
RETURNS SETOF int
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pg_temp
AS $fn$
DECLARE
    s mrl.embedding_sets;
    n bigint;
BEGIN
    FOR s IN SELECT * FROM mrl.embedding_sets WHERE coarse_method = 'rotation' ORDER BY id LOOP
        IF s.rotation_requested_at IS NOT NULL
           AND (s.rotation_fitted_at IS NULL OR s.rotation_requested_at > s.rotation_fitted_at) THEN
            RETURN NEXT s.id;
            CONTINUE;
        END IF;
        CONTINUE WHEN mrl_internal._tables_problem(s) IS NOT NULL;
        CONTINUE WHEN EXISTS (SELECT FROM mrl.queue q WHERE q.set_id = s.id AND NOT q.dead)
                   OR EXISTS (SELECT FROM mrl.queue_intake i WHERE i.set_id = s.id);
        EXECUTE format('SELECT count(*) FROM %s', s.vectors_table) INTO n;
        IF (s.rotation_version = 0 AND n >= s.rotation_min_rows)
           OR (s.rotation_version > 0 AND n >= 2 * s.rotation_rows) THEN
            RETURN NEXT s.id;
        END IF;
    END LOOP;
END
$fn$;

-- Up to `sample` stored full vectors of a set (all of them when there are fewer), for fitting.
CREATE OR REPLACE FUNCTION mrl_internal._sample_embeddings(set_id int, sample int DEFAULT 50000)
RETURNS SETOF @vec@.vector
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pg_temp
AS $fn$
DECLARE
    s mrl.embedding_sets := (SELECT e FROM mrl.embedding_sets e WHERE e.id = _sample_embeddings.set_id);
    vt regclass := s.vectors_table;
BEGIN
    PERFORM mrl_internal._check_tables(s);
    RETURN QUERY EXECUTE format('SELECT embedding::@vec@.vector FROM %s ORDER BY md5(id::text) LIMIT $1', vt) USING sample;
END
$fn$;

CREATE OR REPLACE FUNCTION mrl_internal._store_rotation(set_id int, directions @vec@.vector[],
                                               explained double precision[], fitted_rows bigint)
RETURNS void
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $fn$
DECLARE
    s mrl.embedding_sets;
BEGIN
    SELECT * INTO s FROM mrl.embedding_sets e WHERE e.id = _store_rotation.set_id FOR UPDATE;
    PERFORM mrl_internal._check_tables(s);
    IF array_length(directions, 1) < s.truncate_dim THEN
        RAISE EXCEPTION 'a rotation for set "%" needs % directions, got %', s.slug, s.truncate_dim, array_length(directions, 1);
    END IF;
    DELETE FROM mrl.rotation_components c WHERE c.set_id = s.id;
    INSERT INTO mrl.rotation_components (set_id, component, direction, explained_variance)
    SELECT s.id, o - 1, d, explained[o] FROM unnest(directions) WITH ORDINALITY AS u(d, o);
    UPDATE mrl.embedding_sets
       SET rotation_version = rotation_version + 1, rotation_rows = fitted_rows,
           rotation_fitted_at = clock_timestamp(), rotation_requested_at = NULL
     WHERE id = s.id;
    PERFORM mrl_internal._rewrite_coarse(s);
END
$fn$;

-- Every coarse vector of a set computed again (after a new rotation), leaving no dead rows behind: an UPDATE of
-- every row would keep each old version until a VACUUM FULL (the table twice its size, and stage 2's reads spread
-- over twice the pages). The table's owner rewrites it once with ALTER TABLE ... USING, which writes each row and
-- builds each index once. Another role (the least-privileged worker) may only update in place; it compacts the
-- table afterwards, once the update is committed (mrl_internal._compact_after_refit).
CREATE OR REPLACE FUNCTION mrl_internal._rewrite_coarse(s mrl.embedding_sets)
RETURNS text
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $fn$
DECLARE
    vt regclass := s.vectors_table;
BEGIN
    IF mrl_internal._is_distributed(s.source) THEN
        -- Citus: the shards cannot run mrl.coarse_of (the rotation lives on the coordinator). The full vectors are
        -- fetched, their coarse vectors computed here, and written back by key (a co-located join per shard).
        PERFORM mrl_internal._lock_and_check(s, 'ROW EXCLUSIVE');
        IF mrl_internal._owns_table(vt) THEN
            EXECUTE format('ALTER TABLE %s ALTER COLUMN coarse TYPE @vec@.halfvec(%s) USING NULL', vt, s.truncate_dim);
        END IF;
        EXECUTE format('WITH f AS MATERIALIZED (SELECT v.id, v.embedding FROM %1$s v),
                             c AS MATERIALIZED (SELECT f.id, mrl.coarse_of($1, f.embedding::@vec@.vector) AS coarse FROM f)
                        UPDATE %1$s v SET coarse = c.coarse FROM c WHERE v.id = c.id', vt) USING s.id;
        RETURN 'updated in place';
    END IF;
    IF mrl_internal._owns_table(vt) THEN
        PERFORM mrl_internal._lock_and_check(s, 'ACCESS EXCLUSIVE');  -- (as in mrl.compact_embedding_set)
        EXECUTE format('ALTER TABLE %s ALTER COLUMN coarse TYPE @vec@.halfvec(%s) USING mrl.coarse_of(%s, embedding::@vec@.vector)',
                       vt, s.truncate_dim, s.id);
        RETURN 'rewritten';
    END IF;
    PERFORM mrl_internal._lock_and_check(s, 'ROW EXCLUSIVE');
    EXECUTE format('UPDATE %s SET coarse = mrl.coarse_of($1, embedding::@vec@.vector)', vt) USING s.id;
    RETURN 'updated in place';
END
$fn$;

-- After a refit by a role that does not own the vectors table (its update committed: a CLUSTER in the same
-- transaction would keep every old row version), compacts the table where the role holds MAINTAIN on it
-- (PostgreSQL 17+, granted to the worker with each set). 'rewritten' when the refit already rewrote the table,
-- 'clustered', or NULL when only the owner can (mrl.compact_embedding_set).
CREATE OR REPLACE FUNCTION mrl_internal._compact_after_refit(set_id int)
RETURNS text
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $fn$
DECLARE
    s mrl.embedding_sets := (SELECT e FROM mrl.embedding_sets e WHERE e.id = _compact_after_refit.set_id);
    vt regclass := s.vectors_table;
BEGIN
    PERFORM mrl_internal._check_tables(s);
    IF mrl_internal._owns_table(vt) THEN
        RETURN 'rewritten';
    END IF;
    IF current_setting('server_version_num')::int >= 170000 THEN  -- (the privilege is unknown before)
        IF has_table_privilege(vt, 'MAINTAIN') THEN
            PERFORM mrl_internal._cluster(vt);
            RETURN 'clustered';
        END IF;
    END IF;
    RETURN NULL;
END
$fn$;
