-- Hybrid search: the set's full-text words and its two-stage dense search, fused by reciprocal rank fusion (RRF):
--   score = dense_weight / (rrf_k + dense_rank) + text_weight / (rrf_k + text_rank)
-- over the top `candidates` rows of each leg (a row missing from a leg gets nothing from it). A query naming a
-- package, a function or an error code is found by its words; one that describes is found by its meaning.
-- Whether fusion helps depends on the data and the queries: measure it (`pgmrl eval --hybrid`, README).

CREATE OR REPLACE FUNCTION mrl.hybrid_search(
    set_slug text,
    query_text text,
    query_vector @vec@.vector DEFAULT NULL,
    k int DEFAULT 10,
    dense_weight double precision DEFAULT 1.0,
    text_weight double precision DEFAULT 1.0,
    rrf_k int DEFAULT 60,
    candidates int DEFAULT NULL,
    filter jsonb DEFAULT NULL,
    strategy text DEFAULT NULL
)
RETURNS TABLE (id text, score double precision, dense_rank int, text_rank int, distance double precision)
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pg_temp
AS $fn$
DECLARE
    s mrl.embedding_sets := mrl_internal._set(set_slug);
    n int := coalesce(candidates, greatest(2 * k, 50));
    v @vec@.vector := query_vector;
    d_ids text[];
    d_dists float8[];
    t_ids text[];
BEGIN
    IF query_text IS NULL OR btrim(query_text) = '' THEN
        RAISE EXCEPTION 'query_text is NULL or empty' USING ERRCODE = 'null_value_not_allowed',
              HINT = 'Pass the words to search for (and, if you have it, their embedding as query_vector).';
    END IF;
    IF k IS NULL OR k <= 0 OR k > 10000 THEN
        RAISE EXCEPTION 'k must be between 1 and 10000, got %', coalesce(k::text, 'NULL') USING ERRCODE = 'invalid_parameter_value';
    END IF;
    IF n < k OR n > 10000 THEN
        RAISE EXCEPTION 'candidates % must be at least k (%) and at most 10000', n, k USING ERRCODE = 'invalid_parameter_value',
              HINT = 'candidates is how many rows each leg ranks before fusion; the default is max(2k, 50).';
    END IF;
    IF rrf_k IS NULL OR rrf_k < 0 OR dense_weight IS NULL OR text_weight IS NULL OR dense_weight < 0 OR text_weight < 0
       OR dense_weight + text_weight = 0 THEN
        RAISE EXCEPTION 'rrf_k and the weights must be non-negative (and not both weights 0)' USING ERRCODE = 'invalid_parameter_value',
              HINT = 'The usual RRF: rrf_k => 60, dense_weight => 1, text_weight => 1.';
    END IF;
    PERFORM mrl_internal._check_searchable(s, filter IS NOT NULL);
    IF dense_weight > 0 AND v IS NULL THEN
        v := mrl_internal._query_vector(set_slug, query_text);
    END IF;
    IF dense_weight > 0 THEN
        SELECT array_agg(d.id ORDER BY d.distance, d.id), array_agg(d.distance ORDER BY d.distance, d.id) INTO d_ids, d_dists
          FROM mrl.search(set_slug, v, n, coalesce(strategy, mrl_internal._two_stage_default(set_slug)), NULL, NULL, filter) d;
    END IF;
    IF text_weight > 0 THEN
        SELECT array_agg(t.id ORDER BY t.score DESC, t.id) INTO t_ids FROM mrl_internal._text_ranks(s, query_text, n, filter) t;
    END IF;
    RETURN QUERY
    WITH dense AS (SELECT u.id, u.distance, u.r::int AS r FROM unnest(d_ids, d_dists) WITH ORDINALITY u(id, distance, r)),
         txt AS (SELECT u.id, u.r::int AS r FROM unnest(t_ids) WITH ORDINALITY u(id, r))
    SELECT coalesce(d.id, t.id),
           (coalesce(dense_weight / (rrf_k + d.r), 0) + coalesce(text_weight / (rrf_k + t.r), 0))::float8,
           d.r, t.r, d.distance
      FROM dense d FULL JOIN txt t ON t.id = d.id
     ORDER BY 2 DESC, coalesce(d.r, 2147483647), coalesce(t.r, 2147483647), 1
     LIMIT k;
END
$fn$;

-- The full-text leg alone (rows holding the query's words, best first): what hybrid_search fuses, for measuring it.
CREATE OR REPLACE FUNCTION mrl.text_search(set_slug text, query_text text, k int DEFAULT 10, filter jsonb DEFAULT NULL)
RETURNS TABLE (id text, score double precision)
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pg_temp
AS $fn$
DECLARE
    s mrl.embedding_sets := mrl_internal._set(set_slug);
BEGIN
    IF k IS NULL OR k <= 0 OR k > 10000 THEN
        RAISE EXCEPTION 'k must be between 1 and 10000, got %', coalesce(k::text, 'NULL') USING ERRCODE = 'invalid_parameter_value';
    END IF;
    PERFORM mrl_internal._check_searchable(s, filter IS NOT NULL);
    RETURN QUERY SELECT t.id, t.score FROM mrl_internal._text_ranks(s, query_text, k, filter) t ORDER BY t.score DESC, t.id;
END
$fn$;
