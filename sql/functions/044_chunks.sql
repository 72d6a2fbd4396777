-- Chunked sets: which chunk of each row matched (mrl.search returns each row once, by its best chunk).

CREATE OR REPLACE FUNCTION mrl.search_chunks(
    set_slug text,
    query @vec@.vector,
    k int DEFAULT 10,
    strategy text DEFAULT NULL,
    coarse_k int DEFAULT NULL,
    coarse_dim int DEFAULT NULL,
    filter jsonb DEFAULT NULL
)
RETURNS TABLE (id text, chunk int, start_char int, end_char int, distance double precision)
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $fn$
DECLARE
    s mrl.embedding_sets := mrl_internal._set(set_slug);
BEGIN
    IF s.chunking IS NULL THEN  -- one vector per row: its beginning
        RETURN QUERY SELECT r.id, 0, 0, NULL::int, r.distance FROM mrl.search(set_slug, query, k, strategy, coarse_k, coarse_dim, filter) r;
        RETURN;
    END IF;
    RETURN QUERY EXECUTE format(
        'SELECT r.id, r.chunk, v.start_char, v.end_char, r.distance
           FROM mrl_internal._search_chunked($1, $2, $3, $4, $5, $6, $7) r
           JOIN %s v ON v.id = r.id::%s AND v.chunk = r.chunk
          ORDER BY r.distance, r.id', s.vectors_table, s.pk_type)
        USING s, query, k, coalesce(strategy, s.default_strategy), coarse_k, coarse_dim, filter;
END
$fn$;

CREATE OR REPLACE FUNCTION mrl.search_chunks(
    set_slug text,
    query text,
    k int DEFAULT 10,
    strategy text DEFAULT NULL,
    coarse_k int DEFAULT NULL,
    coarse_dim int DEFAULT NULL,
    filter jsonb DEFAULT NULL
)
RETURNS TABLE (id text, chunk int, start_char int, end_char int, distance double precision)
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pg_temp
AS $fn$
DECLARE
    v @vec@.vector := mrl_internal._query_vector(set_slug, query);
BEGIN
    RETURN QUERY SELECT * FROM mrl.search_chunks(set_slug, v, k, strategy, coarse_k, coarse_dim, filter);
END
$fn$;
