-- Search. Strategies of mrl.search:
--   two_stage         stage 1: HNSW on the coarse vector (query projected by mrl.coarse_of, like the documents);
--                     stage 2: exact cosine distance on the full vector, for the coarse_k candidates only
--   binary_two_stage  stage 1: HNSW (hamming) on binary_quantize(embedding) (mrl.add_binary_index); stage 2 as above
--   hnsw              pgvector's classic full-dimension HNSW on the embedding (mrl.create_full_index)
--   coarse            the coarse vector alone (approximate distances)
--   exact             every full vector (a scan)
-- filter: a JSON object {column: value, column: [any, of, these], column: null} on the source table's columns.

CREATE OR REPLACE FUNCTION mrl.search(
    set_slug text,
    query @vec@.vector,
    k int DEFAULT 10,
    strategy text DEFAULT NULL,
    coarse_k int DEFAULT NULL,
    coarse_dim int DEFAULT NULL,
    filter jsonb DEFAULT NULL
)
RETURNS TABLE (id text, distance double precision)
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
SET DateStyle = 'ISO, MDY' SET IntervalStyle = 'postgres' SET extra_float_digits = 1 SET TimeZone = 'UTC' SET bytea_output = 'hex'
AS $fn$
DECLARE
    s mrl.embedding_sets := mrl_internal._set(set_slug);
    strat text := coalesce(strategy, s.default_strategy);
    ck int;
    cd int;
    q_coarse @vec@.halfvec;
    old_scan text[];
    src text;     -- FROM clause
    cond text;    -- filter conditions
    stmt text;
    ids text[];
    dists float8[];
BEGIN
    IF s.chunking IS NOT NULL THEN  -- each row once, by its best chunk
        RETURN QUERY SELECT r.id, r.distance FROM mrl_internal._search_chunked(s, query, k, strat, coarse_k, coarse_dim, filter) r;
        RETURN;
    END IF;
    PERFORM mrl_internal._check_query(s, query, k);
    PERFORM mrl_internal._check_strategy(strat);
    ck := mrl_internal._candidates(s, strat, k, coarse_k);
    cd := mrl_internal._coarse_dim(s, coarse_dim);
    PERFORM mrl_internal._require_index(s, strat);
    PERFORM mrl_internal._check_searchable(s, filter IS NOT NULL);
    IF strat IN ('two_stage', 'coarse') THEN
        q_coarse := mrl.coarse_of(s.id, query, cd);
        IF q_coarse IS NULL THEN
            RAISE NOTICE 'set "%" has no coarse vectors yet (%); searching exactly', s.slug,
                CASE WHEN s.coarse_method = 'none' THEN 'it stores full vectors only'
                     ELSE format('its rotation is fitted once %s rows are embedded; SELECT mrl.refit_rotation(%L) asks for it now', s.rotation_min_rows, s.slug) END;
            strat := 'exact';
        END IF;
    END IF;
    cond := mrl_internal._filter_sql(s, filter, 5);
    src := format('%s v', s.vectors_table);
    IF cond IS NOT NULL THEN
        src := format('%s JOIN ONLY %s src ON src.%I = v.id WHERE %s', src, s.source, s.pk_column, cond);
    END IF;
    stmt := mrl_internal._search_sql(src, mrl_internal._stage1_distance(s, strat, cd), strat);

    -- HNSW returns at most ef_search rows: raise it for this call (iterating past 1000, or when a filter drops
    -- rows: keep scanning the graph until enough rows pass it; re-ranked below anyway), then put it back.
    IF strat <> 'exact' THEN
        old_scan := mrl_internal._scan_settings(mrl_internal._ef_search(s, strat, k, ck), cond IS NOT NULL);
    END IF;
    IF cond IS NULL THEN
        RETURN QUERY EXECUTE stmt USING q_coarse, ck, query, k, filter;
    ELSE
        EXECUTE format('SELECT array_agg(r.id ORDER BY r.distance), array_agg(r.distance ORDER BY r.distance) FROM (%s) r', stmt)
           INTO ids, dists USING q_coarse, ck, query, k, filter;
        IF coalesce(array_length(ids, 1), 0) < k AND strat <> 'exact' THEN
            -- a selective filter: fewer than k candidates passed it, so rank every row that does
            RETURN QUERY EXECUTE format(
                'SELECT v.id::text, (v.embedding OPERATOR(@vec@.<=>) $3)::float8 FROM %s
                  ORDER BY (v.embedding OPERATOR(@vec@.<=>) $3) + 0 LIMIT $4', src)
                USING q_coarse, ck, query, k, filter;
        ELSE
            RETURN QUERY SELECT u.id, u.distance FROM unnest(ids, dists) u(id, distance);
        END IF;
    END IF;
    IF old_scan IS NOT NULL THEN
        PERFORM mrl_internal._restore_scan_settings(old_scan);
    END IF;
END
$fn$;

-- Until 0.1 two_stage_search took (k, coarse_k, coarse_dim, filter, strategy) while search took (k, strategy, coarse_k,
-- coarse_dim, filter): one order now, search's. The old signatures go first (every query type), so no call is
-- ambiguous between them.
DO $old_order$
DECLARE
    typ text;
BEGIN
    FOREACH typ IN ARRAY ARRAY['@vec@.vector', 'text', '@vec@.halfvec', 'real[]', 'double precision[]'] LOOP
        EXECUTE format('DROP FUNCTION IF EXISTS mrl.two_stage_search(text, %s, int, int, int, jsonb, text)', typ);
    END LOOP;
END
$old_order$;

CREATE OR REPLACE FUNCTION mrl.two_stage_search(
    set_slug text,
    query @vec@.vector,
    k int DEFAULT 10,
    strategy text DEFAULT NULL,
    coarse_k int DEFAULT NULL,
    coarse_dim int DEFAULT NULL,
    filter jsonb DEFAULT NULL
)
RETURNS TABLE (id text, distance double precision)
LANGUAGE sql
SET search_path = pg_catalog, pg_temp
AS $fn$
    SELECT * FROM mrl.search(set_slug, query, k, coalesce(strategy, mrl_internal._two_stage_default(set_slug)), coarse_k, coarse_dim, filter)
$fn$;

-- The rows themselves, in rank order, with their distance: no cast of the text ids back to the key's type.
--   SELECT (r.item).*, r.distance FROM mrl.search_rows(NULL::docs, 'docs', :query, k => 5) r;
CREATE OR REPLACE FUNCTION mrl.search_rows(
    source anyelement,
    set_slug text,
    query @vec@.vector,
    k int DEFAULT 10,
    strategy text DEFAULT NULL,
    coarse_k int DEFAULT NULL,
    coarse_dim int DEFAULT NULL,
    filter jsonb DEFAULT NULL
)
RETURNS TABLE (item anyelement, distance double precision)
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $fn$
DECLARE
    s mrl.embedding_sets := mrl_internal._set(set_slug);
BEGIN
    IF pg_typeof(source) IS DISTINCT FROM (SELECT c.reltype FROM pg_class c WHERE c.oid = s.source)::regtype THEN
        RAISE EXCEPTION 'the first argument of search_rows must be NULL::% (the row type of set "%"''s source), not %',
            s.source, s.slug, pg_typeof(source) USING ERRCODE = 'datatype_mismatch',
            HINT = format('SELECT (r.item).*, r.distance FROM mrl.search_rows(NULL::%s, %L, query) r', s.source, s.slug);
    END IF;
    -- the rows are read as the caller: the source must run nobody's code (row-level security, planner-evaluated
    -- expressions, a key of a type that is not built in), as for the worker and for filtered searches
    PERFORM mrl_internal._check_tables(s);
    RETURN QUERY EXECUTE format(
        'SELECT src, h.distance FROM mrl.search($1, $2, $3, $4, $5, $6, $7) h
           JOIN ONLY %s src ON src.%I OPERATOR(pg_catalog.=) h.id::%s ORDER BY h.distance', s.source, s.pk_column, s.pk_type)
        USING set_slug, query, k, strategy, coarse_k, coarse_dim, filter;
END
$fn$;
