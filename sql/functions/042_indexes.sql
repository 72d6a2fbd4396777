-- Optional search indexes of a set, all in mrl_data and named after the set:
--   <slug>_coarse_hnsw      the coarse vector (created with the set; mrl.add_coarse_index rebuilds it with other m)
--   <slug>_coarse<d>_hnsw   a shorter prefix of the coarse vector, for coarse_dim => d
--   <slug>_binary_hnsw      binary_quantize(embedding) with hamming distance, for strategy 'binary_two_stage'
--   <slug>_full_hnsw        the full vector, for strategy 'hnsw' (the classic pgvector setup)
-- Building takes a lock that blocks writes to the set's vectors; raise maintenance_work_mem for large sets.

CREATE OR REPLACE FUNCTION mrl.create_full_index(set_slug text, m int DEFAULT 16, ef_construction int DEFAULT 64)
RETURNS text
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $fn$
DECLARE
    s mrl.embedding_sets := mrl_internal._set(set_slug);
    max_dims int := CASE s.full_type WHEN 'halfvec' THEN 4000 ELSE 2000 END;
BEGIN
    IF s.dims > max_dims THEN
        RAISE EXCEPTION 'pgvector''s HNSW indexes % of at most % dimensions; set "%" stores %', s.full_type, max_dims, s.slug, s.dims
            USING ERRCODE = 'feature_not_supported', HINT = 'Use the two-stage search on the coarse vector instead.';
    END IF;
    RETURN mrl_internal._build_index(s, '_full_hnsw', format('(embedding @vec@.%s)', mrl_internal._full_opclass(s.full_type)),
                                     m, ef_construction);
END
$fn$;

CREATE OR REPLACE FUNCTION mrl.add_binary_index(set_slug text, m int DEFAULT 16, ef_construction int DEFAULT 64)
RETURNS text
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $fn$
DECLARE
    s mrl.embedding_sets := mrl_internal._set(set_slug);
BEGIN
    RETURN mrl_internal._build_index(s, '_binary_hnsw',
        format('(((@vec@.binary_quantize(embedding))::bit(%s)) @vec@.bit_hamming_ops)', s.dims), m, ef_construction);
END
$fn$;

-- An index on the first `dim` coarse components (what search uses for coarse_dim => dim); dim = the stored
-- coarse dimension rebuilds the set's main coarse index, e.g. with a smaller m.
CREATE OR REPLACE FUNCTION mrl.add_coarse_index(set_slug text, dim int, m int DEFAULT 16, ef_construction int DEFAULT 64)
RETURNS text
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $fn$
DECLARE
    s mrl.embedding_sets := mrl_internal._set(set_slug);
BEGIN
    IF s.coarse_method = 'none' THEN
        RAISE EXCEPTION 'set "%" keeps no coarse vector', s.slug USING ERRCODE = 'invalid_parameter_value',
              HINT = 'Give the set a truncate_dim with mrl.alter_embedding_set().';
    END IF;
    IF dim IS NULL OR dim = s.truncate_dim THEN
        RETURN mrl_internal._build_index(s, '_coarse_hnsw', '(coarse @vec@.halfvec_cosine_ops)', m, ef_construction);
    END IF;
    PERFORM mrl_internal._coarse_dim(s, dim);  -- the same check as a search with coarse_dim => dim
    RETURN mrl_internal._build_index(s, format('_coarse%s_hnsw', dim),
        format('(((@vec@.l2_normalize(@vec@.subvector(coarse, 1, %s)))::@vec@.halfvec(%s)) @vec@.halfvec_cosine_ops)', dim, dim),
        m, ef_construction);
END
$fn$;

-- The set's search indexes with their sizes.
CREATE OR REPLACE FUNCTION mrl.search_indexes(set_slug text)
RETURNS TABLE (index_name text, kind text, dim int, m int, ef_construction int, size_bytes bigint)
LANGUAGE sql STABLE
SET search_path = pg_catalog, pg_temp
AS $fn$
    SELECT c.relname::text,
           CASE WHEN c.relname LIKE '%\_full\_hnsw' THEN 'full' WHEN c.relname LIKE '%\_binary\_hnsw' THEN 'binary'
                ELSE 'coarse' END,
           CASE WHEN c.relname LIKE '%\_full\_hnsw' OR c.relname LIKE '%\_binary\_hnsw' THEN s.dims
                WHEN c.relname LIKE '%\_coarse\_hnsw' THEN s.truncate_dim
                ELSE substring(c.relname from '_coarse([0-9]+)_hnsw$')::int END,
           coalesce((SELECT o.option_value::int FROM pg_options_to_table(c.reloptions) o WHERE o.option_name = 'm'), 16),
           coalesce((SELECT o.option_value::int FROM pg_options_to_table(c.reloptions) o WHERE o.option_name = 'ef_construction'), 64),
           pg_relation_size(c.oid)
      FROM (SELECT (mrl_internal._set(set_slug)).*) s
      JOIN pg_index i ON i.indrelid = s.vectors_table
      JOIN pg_class c ON c.oid = i.indexrelid
     WHERE left(c.relname, length(s.slug) + 1) = s.slug || '_' AND c.relname LIKE '%\_hnsw'
     ORDER BY 2, 3
$fn$;

-- Per-set search defaults: what mrl.search / two_stage_search use when an argument is not given.
CREATE OR REPLACE FUNCTION mrl.configure_search(set_slug text, strategy text DEFAULT NULL, coarse_k int DEFAULT NULL,
                                                ef_search int DEFAULT NULL, binary_coarse_k int DEFAULT NULL)
RETURNS TABLE (default_strategy text, default_coarse_k int, default_ef_search int, default_binary_coarse_k int)
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $fn$
DECLARE
    s mrl.embedding_sets := mrl_internal._set(set_slug);
BEGIN
    IF strategy IS NOT NULL THEN
        PERFORM mrl_internal._check_strategy(strategy);
    END IF;
    PERFORM mrl_internal._require_index(s, strategy);
    IF coarse_k <= 0 OR binary_coarse_k <= 0 OR coarse_k > 100000 OR binary_coarse_k > 100000 THEN
        RAISE EXCEPTION 'coarse_k and binary_coarse_k must be between 1 and 100000' USING ERRCODE = 'invalid_parameter_value',
              HINT = 'The number of stage-1 candidates; 100 is a good start (mrl.tune chooses one).';
    END IF;
    IF ef_search <= 0 OR ef_search > 1000 THEN
        RAISE EXCEPTION 'ef_search must be between 1 and 1000 (pgvector''s range), got %', ef_search USING ERRCODE = 'invalid_parameter_value',
              HINT = 'Searches that need more candidates than 1000 scan the index iteratively on their own.';
    END IF;
    UPDATE mrl.embedding_sets e
       SET default_strategy = coalesce(configure_search.strategy, e.default_strategy),
           default_coarse_k = coalesce(configure_search.coarse_k, e.default_coarse_k),
           default_ef_search = coalesce(configure_search.ef_search, e.default_ef_search),
           binary_coarse_k = coalesce(configure_search.binary_coarse_k, e.binary_coarse_k)
     WHERE e.id = s.id;
    RETURN QUERY SELECT e.default_strategy, e.default_coarse_k, e.default_ef_search, e.binary_coarse_k
                   FROM mrl.embedding_sets e WHERE e.id = s.id;
END
$fn$;
