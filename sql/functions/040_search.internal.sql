-- Internal helpers (schema mrl_internal) of 040_search.sql: not part of the API; EXECUTE is granted in 090_privileges.sql.

-- The WHERE conditions of a filter on alias src, reading the filter from parameter $param; NULL when no filter.
CREATE OR REPLACE FUNCTION mrl_internal._filter_sql(s mrl.embedding_sets, filter jsonb, param int)
RETURNS text
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pg_temp
AS $fn$
DECLARE
    key text;
    val jsonb;
    typ text;
    conds text[] := '{}';
BEGIN
    IF filter IS NULL OR filter = '{}'::jsonb THEN
        RETURN NULL;
    END IF;
    IF jsonb_typeof(filter) <> 'object' THEN
        RAISE EXCEPTION 'filter must be a JSON object, got a JSON %', jsonb_typeof(filter) USING ERRCODE = 'invalid_parameter_value',
              HINT = 'Equality on source columns: ''{"section": "web"}'', any of several values: ''{"section": ["web", "net"]}''.';
    END IF;
    FOR key, val IN SELECT e.key, e.value FROM jsonb_each(filter) e ORDER BY e.key LOOP
        SELECT format_type(a.atttypid, a.atttypmod) INTO typ FROM pg_attribute a
         WHERE a.attrelid = s.source AND a.attname = key AND a.attnum > 0 AND NOT a.attisdropped;
        IF NOT FOUND THEN
            RAISE EXCEPTION 'filter column "%" does not exist in %', key, s.source USING ERRCODE = 'undefined_column',
                  HINT = format('Filter on columns of %s: %s.', s.source,
                                (SELECT string_agg(quote_ident(a.attname), ', ' ORDER BY a.attnum) FROM pg_attribute a
                                  WHERE a.attrelid = s.source AND a.attnum > 0 AND NOT a.attisdropped));
        END IF;
        -- converting the value, and comparing, would run the code of a role's type, domain or operator
        PERFORM mrl_internal._check_columns(s.source, ARRAY[key]::name[], 'filter');
        IF jsonb_typeof(val) = 'object' OR (jsonb_typeof(val) = 'array' AND (jsonb_array_length(val) = 0 OR EXISTS (
                SELECT FROM jsonb_array_elements(val) e WHERE jsonb_typeof(e) IN ('object', 'array', 'null')))) THEN
            RAISE EXCEPTION 'filter value for "%" must be a scalar, null or a non-empty list of scalars, got %', key, val
                USING ERRCODE = 'invalid_parameter_value', HINT = 'e.g. {"section": "web"} or {"section": ["web", "net"]}.';
        END IF;
        -- convert the value(s) now, so that a mismatch names the column rather than failing inside the search
        BEGIN
            EXECUTE format('SELECT array_agg(x::%s) FROM jsonb_array_elements_text($1) x', typ)
              USING CASE WHEN jsonb_typeof(val) = 'array' THEN val ELSE jsonb_build_array(val) END;
        EXCEPTION WHEN data_exception THEN
            RAISE EXCEPTION 'filter value % does not fit column "%" of type %', val, key, typ
                USING ERRCODE = 'invalid_text_representation', HINT = format('Give a %s value.', typ);
        END;
        conds := conds || CASE jsonb_typeof(val)
            WHEN 'null' THEN format('src.%I IS NULL', key)
            WHEN 'array' THEN format('src.%I = ANY (ARRAY(SELECT jsonb_array_elements_text($%s -> %L))::%s[])', key, param, key, typ)
            ELSE format('src.%I = ($%s ->> %L)::%s', key, param, key, typ) END;
    END LOOP;
    RETURN array_to_string(conds, ' AND ');
END
$fn$;

-- The coarse dimension a search (or a coarse index) uses: the stored one, or a checked shorter prefix.
CREATE OR REPLACE FUNCTION mrl_internal._coarse_dim(s mrl.embedding_sets, coarse_dim int)
RETURNS int
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pg_temp
AS $fn$
DECLARE
    allowed int[];
BEGIN
    IF coarse_dim IS NULL THEN
        RETURN s.truncate_dim;
    END IF;
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
    RETURN coarse_dim;
END
$fn$;

-- Strategies that need an optional index ('hnsw', 'binary_two_stage') fail clearly without it.
CREATE OR REPLACE FUNCTION mrl_internal._require_index(s mrl.embedding_sets, strategy text)
RETURNS void
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pg_temp
AS $fn$
BEGIN
    IF strategy IN ('hnsw', 'binary_two_stage')
       AND to_regclass(format('mrl_data.%I', s.slug || CASE strategy WHEN 'hnsw' THEN '_full_hnsw' ELSE '_binary_hnsw' END)) IS NULL THEN
        RAISE EXCEPTION 'set "%" has no % index', s.slug, CASE strategy WHEN 'hnsw' THEN 'full-dimension HNSW' ELSE 'binary HNSW' END
            USING ERRCODE = 'object_not_in_prerequisite_state',
                  HINT = format('Create it once: SELECT mrl.%s(%L);', CASE strategy WHEN 'hnsw' THEN 'create_full_index' ELSE 'add_binary_index' END, s.slug);
    END IF;
END
$fn$;

-- Rows an HNSW scan must return for a search: k, or coarse_k candidates, and the set's stored ef_search when the
-- search uses the set's own coarse_k (the pair mrl.tune chose), and never less than the session's setting. hnsw.ef_search itself is capped at pgvector's maximum (1000);
-- beyond it the search uses an iterative index scan (pgvector >= 0.8).
CREATE OR REPLACE FUNCTION mrl_internal._ef_search(s mrl.embedding_sets, strategy text, k int, coarse_k int)
RETURNS int
LANGUAGE sql STABLE
SET search_path = pg_catalog, pg_temp
AS $fn$
    SELECT greatest(CASE strategy WHEN 'hnsw' THEN k WHEN 'binary_two_stage' THEN coarse_k
                                  -- the set's stored ef_search (tuned or configured) goes with its own
                                  -- coarse_k; a call that asks for another coarse_k walks coarse_k deep
                                  ELSE greatest(coarse_k, CASE WHEN coarse_k = greatest(k, s.default_coarse_k)
                                                               THEN coalesce(s.default_ef_search, 0) ELSE 0 END) END,
                    coalesce(nullif(current_setting('hnsw.ef_search', true), '')::int, 40))
$fn$;

-- Sets (for this transaction) the index-scan settings that return `wanted` rows; returns the previous values to
-- restore: {ef_search, iterative_scan, max_scan_tuples}. Raises when more than 1000 are wanted and pgvector has no
-- iterative scans.
CREATE OR REPLACE FUNCTION mrl_internal._scan_settings(wanted int, iterate bool)
RETURNS text[]
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $fn$
DECLARE
    old text[] := ARRAY[current_setting('hnsw.ef_search', true), current_setting('hnsw.iterative_scan', true),
                        current_setting('hnsw.max_scan_tuples', true)];
BEGIN
    PERFORM set_config('hnsw.ef_search', least(wanted, 1000)::text, true);
    IF wanted > 1000 OR iterate THEN
        IF old[2] IS NULL THEN
            IF wanted > 1000 THEN
                RAISE EXCEPTION 'returning % rows from an HNSW index needs pgvector >= 0.8 (iterative index scans)', wanted
                    USING ERRCODE = 'feature_not_supported', HINT = 'Use k and coarse_k of at most 1000, or upgrade pgvector.';
            END IF;
        ELSE
            IF old[2] = 'off' THEN
                PERFORM set_config('hnsw.iterative_scan', 'relaxed_order', true);
            END IF;
            IF wanted > 1000 THEN
                PERFORM set_config('hnsw.max_scan_tuples', greatest(coalesce(nullif(old[3], '')::int, 20000), 4 * wanted)::text, true);
            END IF;
        END IF;
    END IF;
    RETURN old;
END
$fn$;

CREATE OR REPLACE FUNCTION mrl_internal._restore_scan_settings(old text[])
RETURNS void
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $fn$
BEGIN
    PERFORM set_config('hnsw.ef_search', coalesce(nullif(old[1], ''), '40'), true);
    IF old[2] IS NOT NULL THEN
        PERFORM set_config('hnsw.iterative_scan', old[2], true);
        PERFORM set_config('hnsw.max_scan_tuples', old[3], true);
    END IF;
END
$fn$;

-- search's steps, in the order it takes them.

-- 1. The query: a non-zero vector of the set's dimensions, and a sane k.
CREATE OR REPLACE FUNCTION mrl_internal._check_query(s mrl.embedding_sets, query @vec@.vector, k int)
RETURNS void
LANGUAGE plpgsql IMMUTABLE
SET search_path = pg_catalog, pg_temp
AS $fn$
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
    IF @vec@.vector_norm(query) = 0 THEN
        RAISE EXCEPTION 'query vector is all zeros: it has no direction, so cosine distances are undefined'
            USING ERRCODE = 'invalid_parameter_value', HINT = 'Pass the embedding of a non-empty query.';
    END IF;
    IF k IS NULL OR k <= 0 OR k > 10000 THEN
        RAISE EXCEPTION 'k must be between 1 and 10000, got %', coalesce(k::text, 'NULL') USING ERRCODE = 'invalid_parameter_value',
              HINT = 'k is the number of results, e.g. 10.';
    END IF;
END
$fn$;

-- 2. How many stage-1 candidates are re-ranked: the caller's, else the set's (tuned) default, at least k.
CREATE OR REPLACE FUNCTION mrl_internal._candidates(s mrl.embedding_sets, strat text, k int, coarse_k int)
RETURNS int
LANGUAGE plpgsql IMMUTABLE
SET search_path = pg_catalog, pg_temp
AS $fn$
DECLARE
    ck int := coalesce(coarse_k, greatest(CASE WHEN strat = 'binary_two_stage' THEN s.binary_coarse_k ELSE s.default_coarse_k END, k));
BEGIN
    IF ck < k OR ck > 100000 THEN
        RAISE EXCEPTION 'coarse_k % must be at least k (%) and at most 100000', ck, k USING ERRCODE = 'invalid_parameter_value',
              HINT = 'coarse_k is the number of stage-1 candidates re-ranked exactly; 100 is a good start.';
    END IF;
    RETURN ck;
END
$fn$;

-- 3. A searcher runs no role's code either: the vectors table (and, with a filter, the source) must be clean.
CREATE OR REPLACE FUNCTION mrl_internal._check_searchable(s mrl.embedding_sets, filtered bool)
RETURNS void
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pg_temp
AS $fn$
BEGIN
    IF mrl_internal._is_distributed(s.source) THEN
        PERFORM mrl_internal._check_citus_owners(s);  -- (the shards a search reads on the workers)
    END IF;
    IF mrl_internal._read_unsafe(s.vectors_table)
       OR (filtered AND mrl_internal._source_problem(s.source) IS NOT NULL) THEN
        RAISE EXCEPTION 'embedding set "%" is refused: %', s.slug,
            coalesce(mrl_internal._vectors_problem(s.vectors_table), mrl_internal._tables_problem(s))
            USING ERRCODE = 'insufficient_privilege', HINT = 'Remove what was added to the vectors table, or recreate the set.';
    END IF;
END
$fn$;

-- 4. The stage-1 ordering expression of a strategy over vectors table alias v ($1: the coarse query, $3: the full
-- query); cd: the coarse dimension searched (a prefix of the stored coarse vector when smaller).
CREATE OR REPLACE FUNCTION mrl_internal._stage1_distance(s mrl.embedding_sets, strat text, cd int)
RETURNS text
LANGUAGE sql IMMUTABLE
SET search_path = pg_catalog, pg_temp
AS $fn$
    SELECT CASE strat
        WHEN 'binary_two_stage' THEN format('(@vec@.binary_quantize(v.embedding))::bit(%s) OPERATOR(@vec@.<~>) @vec@.binary_quantize($3)', s.dims)
        WHEN 'hnsw' THEN 'v.embedding OPERATOR(@vec@.<=>) $3'
        WHEN 'exact' THEN '(v.embedding OPERATOR(@vec@.<=>) $3) + 0'  -- "+ 0": never an (approximate) index order
        ELSE CASE WHEN cd <> s.truncate_dim
                  THEN format('(@vec@.l2_normalize(@vec@.subvector(v.coarse, 1, %s)))::@vec@.halfvec(%s)', cd, cd)
                  ELSE 'v.coarse' END || ' OPERATOR(@vec@.<=>) $1' END
$fn$;

-- 5. The statement: two-stage strategies re-rank $2 candidates by the full vector; the others order directly.
CREATE OR REPLACE FUNCTION mrl_internal._search_sql(src text, dist1 text, strat text)
RETURNS text
LANGUAGE sql IMMUTABLE
SET search_path = pg_catalog, pg_temp
AS $fn$
    SELECT CASE WHEN strat IN ('two_stage', 'binary_two_stage') THEN format(
            'WITH candidates AS MATERIALIZED (SELECT v.id, v.embedding FROM %s ORDER BY %s LIMIT $2)
             SELECT c.id::text, (c.embedding OPERATOR(@vec@.<=>) $3)::float8 AS distance FROM candidates c ORDER BY 2 LIMIT $4',
            src, dist1)
        -- ("+ 0": sorted again by the distance itself; PostgreSQL 18 may take the CTE's index order as its order,
        -- and an HNSW index computes distances in its own arithmetic, a few 1e-6 apart from the operator's)
        ELSE format(
            'WITH candidates AS MATERIALIZED (SELECT v.id, (%2$s)::float8 AS distance FROM %1$s ORDER BY %2$s LIMIT $4)
             SELECT c.id::text, c.distance FROM candidates c ORDER BY c.distance + 0',
            src, dist1) END
$fn$;

-- two_stage_search's strategy when none is given: the set's, if it chose the binary coarse stage.
CREATE OR REPLACE FUNCTION mrl_internal._two_stage_default(set_slug text)
RETURNS text
LANGUAGE sql STABLE
SET search_path = pg_catalog, pg_temp
AS $fn$
    SELECT CASE WHEN (mrl_internal._set(set_slug)).default_strategy = 'binary_two_stage' THEN 'binary_two_stage' ELSE 'two_stage' END
$fn$;
