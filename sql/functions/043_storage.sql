-- How a set stores its vectors: compaction, and converting the full vectors between vector and halfvec in place.

-- Rewrites a set's vectors table compactly (no dead row versions left, every index rebuilt), converting its full
-- vectors to full_type when given ('halfvec': half the bytes, no re-embedding). Only the table's owner may; it takes a
-- lock that blocks searches and writes of the set until it commits (seconds per 100,000 rows, plus the full index).
CREATE OR REPLACE FUNCTION mrl.compact_embedding_set(set_slug text, full_type text DEFAULT NULL)
RETURNS TABLE (table_bytes_before bigint, table_bytes_after bigint, stored_as text)
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $fn$
DECLARE
    s mrl.embedding_sets := mrl_internal._set(set_slug);
    vt regclass := s.vectors_table;
    ftype text := mrl_internal._check_full_type(coalesce(compact_embedding_set.full_type, s.full_type));
    before bigint;
    had_full bool := false;
    full_m int;
    full_ef int;
BEGIN
    IF NOT mrl_internal._owns_table(vt) THEN
        RAISE EXCEPTION 'only the owner of % may compact embedding set "%"', vt, s.slug USING ERRCODE = 'insufficient_privilege',
              HINT = format('Run it as %s (the role that created the set).', (SELECT c.relowner::regrole FROM pg_class c WHERE c.oid = vt));
    END IF;
    PERFORM FROM mrl.embedding_sets e WHERE e.id = s.id FOR UPDATE;
    -- (a caller other than the owner, e.g. a superuser, rewrites only what the check saw: ALTER TABLE re-checks the
    -- table's constraints as the caller)
    PERFORM mrl_internal._lock_and_check(s, 'ACCESS EXCLUSIVE');
    before := pg_table_size(vt);
    IF ftype <> s.full_type THEN
        -- the full HNSW index's operator class belongs to the type: rebuilt afterwards with the same parameters
        SELECT true, i.m, i.ef_construction INTO had_full, full_m, full_ef FROM mrl.search_indexes(s.slug) i WHERE i.kind = 'full';
        IF had_full THEN
            EXECUTE format('DROP INDEX mrl_data.%I', s.slug || '_full_hnsw');
        END IF;
        EXECUTE format('ALTER TABLE %1$s ALTER COLUMN embedding TYPE @vec@.%2$s(%3$s) USING embedding::@vec@.%2$s(%3$s)',
                       vt, ftype, s.dims);
        UPDATE mrl.embedding_sets e SET full_type = ftype WHERE e.id = s.id;
        IF coalesce(had_full, false) THEN
            PERFORM mrl.create_full_index(s.slug, full_m, full_ef);
        END IF;
    ELSE
        PERFORM mrl_internal._cluster(vt);
    END IF;
    RETURN QUERY SELECT before, pg_table_size(vt), ftype;
END
$fn$;
