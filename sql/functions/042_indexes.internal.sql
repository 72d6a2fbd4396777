-- Internal helpers (schema mrl_internal) of 042_indexes.sql: not part of the API; EXECUTE is granted in 090_privileges.sql.

CREATE OR REPLACE FUNCTION mrl_internal._check_hnsw_params(m int, ef_construction int)
RETURNS void
LANGUAGE plpgsql IMMUTABLE
SET search_path = pg_catalog, pg_temp
AS $fn$
BEGIN
    IF m IS NULL OR m < 2 OR m > 100 THEN
        RAISE EXCEPTION 'm must be between 2 and 100, got %', coalesce(m::text, 'NULL') USING ERRCODE = 'invalid_parameter_value',
              HINT = 'm is the number of graph neighbours per node: 16 is pgvector''s default, 8 halves a small index.';
    END IF;
    IF ef_construction IS NULL OR ef_construction < 2 * m OR ef_construction > 1000 THEN
        RAISE EXCEPTION 'ef_construction must be between 2*m (%) and 1000, got %', 2 * m, coalesce(ef_construction::text, 'NULL')
            USING ERRCODE = 'invalid_parameter_value', HINT = '64 is pgvector''s default.';
    END IF;
END
$fn$;

CREATE OR REPLACE FUNCTION mrl_internal._build_index(s mrl.embedding_sets, suffix text, definition text, m int, ef_construction int)
RETURNS text
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $fn$
DECLARE
    iname text := s.slug || suffix;
BEGIN
    PERFORM mrl_internal._check_hnsw_params(m, ef_construction);
    EXECUTE format('DROP INDEX IF EXISTS mrl_data.%I', iname);
    EXECUTE format('CREATE INDEX %I ON %s USING hnsw %s WITH (m = %s, ef_construction = %s)',
                   iname, s.vectors_table, definition, m, ef_construction);
    RETURN format('mrl_data.%I', iname);
END
$fn$;

-- The cosine operator class of a set's full vectors.
CREATE OR REPLACE FUNCTION mrl_internal._full_opclass(full_type text)
RETURNS text
LANGUAGE sql IMMUTABLE
SET search_path = pg_catalog, pg_temp
AS $fn$ SELECT CASE full_type WHEN 'halfvec' THEN 'halfvec_cosine_ops' ELSE 'vector_cosine_ops' END $fn$;

-- Builds on a replacement set (mrl.alter_embedding_set) the extra indexes its original has, with the same m.
CREATE OR REPLACE FUNCTION mrl_internal._copy_indexes(from_set mrl.embedding_sets, to_slug text)
RETURNS void
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $fn$
DECLARE
    ix record;
BEGIN
    FOR ix IN SELECT * FROM mrl.search_indexes(from_set.slug) LOOP
        BEGIN
            CASE
                WHEN ix.kind = 'full' THEN PERFORM mrl.create_full_index(to_slug, ix.m, ix.ef_construction);
                WHEN ix.kind = 'binary' THEN PERFORM mrl.add_binary_index(to_slug, ix.m, ix.ef_construction);
                WHEN ix.index_name = from_set.slug || '_coarse_hnsw' THEN
                    IF ix.m <> 16 OR ix.ef_construction <> 64 THEN
                        PERFORM mrl.add_coarse_index(to_slug, NULL, ix.m, ix.ef_construction);
                    END IF;
                ELSE PERFORM mrl.add_coarse_index(to_slug, ix.dim, ix.m, ix.ef_construction);
            END CASE;
        EXCEPTION WHEN invalid_parameter_value OR feature_not_supported THEN
            RAISE NOTICE 'index % is not carried over to the new vectors: %', ix.index_name, SQLERRM;
        END;
    END LOOP;
END
$fn$;
