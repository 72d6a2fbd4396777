-- Search. Stage 1: HNSW on the coarse vector (query projected by mrl.coarse_of, like the documents).
-- Stage 2: exact cosine distance on the full vector, for the stage-1 candidates only.

CREATE OR REPLACE FUNCTION mrl.search(
    set_slug text,
    query @vec@.vector,
    k int DEFAULT 10,
    strategy text DEFAULT 'two_stage',
    coarse_k int DEFAULT NULL,
    coarse_dim int DEFAULT NULL
)
RETURNS TABLE (id text, distance double precision)
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $fn$
DECLARE
    s mrl.embedding_sets := mrl._set(set_slug);
    ck int;
    cd int;
    q_coarse @vec@.halfvec;
    old_ef text;
    coarse_expr text := 'v.coarse';
    allowed int[];
BEGIN
    IF query IS NULL THEN
        RAISE EXCEPTION 'query vector is NULL' USING ERRCODE = 'null_value_not_allowed',
              HINT = 'Pass the embedded query, e.g. from `pgmrl embed` or your model client.';
    END IF;
    IF @vec@.vector_dims(query) <> s.dims THEN
        RAISE EXCEPTION 'query vector has % dimensions but set "%" stores % (%)', @vec@.vector_dims(query), s.slug, s.dims, s.config
            USING ERRCODE = 'data_exception',
                  HINT = format('Embed the query with the set''s model (%s); vectors of different models cannot be compared.', s.config);
    END IF;
    IF k IS NULL OR k <= 0 OR k > 10000 THEN
        RAISE EXCEPTION 'k must be between 1 and 10000, got %', coalesce(k::text, 'NULL') USING ERRCODE = 'invalid_parameter_value',
              HINT = 'k is the number of results, e.g. 10.';
    END IF;
    IF strategy IS NULL OR strategy NOT IN ('two_stage', 'exact', 'coarse') THEN
        RAISE EXCEPTION 'unknown strategy %', coalesce(quote_literal(strategy), 'NULL') USING ERRCODE = 'invalid_parameter_value',
              HINT = 'Use ''two_stage'' (default), ''coarse'' or ''exact''.';
    END IF;
    ck := coalesce(coarse_k, greatest(s.default_coarse_k, k));
    IF ck < k OR ck > 100000 THEN
        RAISE EXCEPTION 'coarse_k % must be at least k (%) and at most 100000', ck, k USING ERRCODE = 'invalid_parameter_value',
              HINT = 'coarse_k is the number of stage-1 candidates re-ranked exactly; 100 is a good start.';
    END IF;
    cd := coalesce(coarse_dim, s.truncate_dim);
    IF coarse_dim IS NOT NULL THEN
        IF s.coarse_method = 'none' THEN
            RAISE EXCEPTION 'set "%" keeps no coarse vector, so coarse_dim cannot be used', s.slug USING ERRCODE = 'invalid_parameter_value',
                  HINT = 'Leave coarse_dim NULL, or create the set with a truncate_dim.';
        END IF;
        IF s.coarse_method = 'prefix' THEN
            SELECT array_agg(d ORDER BY d DESC) INTO allowed FROM mrl.embedding_configs c, unnest(c.matryoshka_dims) d
             WHERE c.name = s.config AND d <= s.truncate_dim;
        ELSE
            allowed := array(SELECT generate_series(s.truncate_dim, 1, -1));
        END IF;
        IF NOT coarse_dim = ANY (allowed) THEN
            RAISE EXCEPTION 'coarse_dim % is not available for set "%" (stored coarse dimension %)', coarse_dim, s.slug, s.truncate_dim
                USING ERRCODE = 'invalid_parameter_value',
                      HINT = CASE WHEN s.coarse_method = 'prefix'
                                  THEN format('Use one of: %s.', array_to_string(allowed, ', '))
                                  ELSE format('Use a value between 1 and %s.', s.truncate_dim) END;
        END IF;
    END IF;

    IF strategy <> 'exact' THEN
        q_coarse := mrl.coarse_of(s.id, query, cd);
        IF q_coarse IS NULL THEN
            RAISE NOTICE 'set "%" has no coarse vectors yet (%); searching exactly', s.slug,
                CASE WHEN s.coarse_method = 'none' THEN 'it stores full vectors only'
                     ELSE format('its rotation is fitted once %s rows are embedded; SELECT mrl.refit_rotation(%L) asks for it now', s.rotation_min_rows, s.slug) END;
            strategy := 'exact';
        END IF;
    END IF;

    IF strategy = 'exact' THEN
        RETURN QUERY EXECUTE format(
            'SELECT v.id::text, (v.embedding OPERATOR(@vec@.<=>) $1)::float8 AS distance
               FROM %s v ORDER BY v.embedding OPERATOR(@vec@.<=>) $1 LIMIT $2', s.vectors_table)
            USING query, k;
        RETURN;
    END IF;

    IF cd <> s.truncate_dim THEN
        coarse_expr := format('(@vec@.l2_normalize(@vec@.subvector(v.coarse, 1, %s)))::@vec@.halfvec(%s)', cd, cd);
    END IF;
    -- HNSW returns at most ef_search rows: raise it for this call, then put it back.
    old_ef := current_setting('hnsw.ef_search', true);
    PERFORM set_config('hnsw.ef_search', greatest(ck, coalesce(nullif(old_ef, '')::int, 40))::text, true);
    IF strategy = 'coarse' THEN
        RETURN QUERY EXECUTE format(
            'SELECT v.id::text, (%1$s OPERATOR(@vec@.<=>) $1)::float8 AS distance
               FROM %2$s v ORDER BY %1$s OPERATOR(@vec@.<=>) $1 LIMIT $2', coarse_expr, s.vectors_table)
            USING q_coarse, k;
    ELSE
        RETURN QUERY EXECUTE format(
            'WITH candidates AS MATERIALIZED (
                 SELECT v.id, v.embedding FROM %2$s v ORDER BY %1$s OPERATOR(@vec@.<=>) $1 LIMIT $2)
             SELECT c.id::text, (c.embedding OPERATOR(@vec@.<=>) $3)::float8 AS distance
               FROM candidates c ORDER BY 2 LIMIT $4', coarse_expr, s.vectors_table)
            USING q_coarse, ck, query, k;
    END IF;
    PERFORM set_config('hnsw.ef_search', coalesce(old_ef, '40'), true);
END
$fn$;

CREATE OR REPLACE FUNCTION mrl.two_stage_search(
    set_slug text,
    query @vec@.vector,
    k int DEFAULT 10,
    coarse_k int DEFAULT NULL,
    coarse_dim int DEFAULT NULL
)
RETURNS TABLE (id text, distance double precision)
LANGUAGE sql
SET search_path = pg_catalog, pg_temp
AS $fn$
    SELECT * FROM mrl.search(set_slug, query, k, 'two_stage', coarse_k, coarse_dim)
$fn$;
