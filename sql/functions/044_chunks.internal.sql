-- Internal helpers (schema mrl_internal) of 044_chunks.sql: not part of the API; EXECUTE is granted in 090_privileges.sql.

-- Search of a chunked set: the chunks are searched like rows (same strategies, same stage-1 index), and each source
-- row is returned once, by its best chunk. Stage 1 returns chunks, not rows: when the candidates found fewer than k
-- rows, it asks for four times as many, until k rows are found or no chunk is left (then every chunk is ranked).
CREATE OR REPLACE FUNCTION mrl_internal._search_chunked(s mrl.embedding_sets, query @vec@.vector, k int, strat text,
                                                        coarse_k int, coarse_dim int, filter jsonb)
RETURNS TABLE (id text, chunk int, distance double precision)
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
SET DateStyle = 'ISO, MDY' SET IntervalStyle = 'postgres' SET extra_float_digits = 1 SET TimeZone = 'UTC' SET bytea_output = 'hex'
AS $fn$
DECLARE
    ck int;
    cd int;
    q_coarse @vec@.halfvec;
    old_scan text[];
    src text;
    cond text;
    stmt text;
    ids text[];
    chunk_nos int[];
    dists float8[];
    found_ bigint;
    total bigint;
BEGIN
    IF s.chunking IS NULL THEN
        RAISE EXCEPTION 'embedding set "%" is not chunked', s.slug USING ERRCODE = 'invalid_parameter_value';
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
            strat := 'exact';
        END IF;
    END IF;
    IF strat IN ('hnsw', 'coarse') THEN
        ck := greatest(4 * k, 40);  -- chunks, for k rows
    END IF;
    cond := mrl_internal._filter_sql(s, filter, 5);
    src := format('%s v', s.vectors_table);
    IF cond IS NOT NULL THEN
        src := format('%s JOIN ONLY %s src ON src.%I = v.id WHERE %s', src, s.source, s.pk_column, cond);
    END IF;
    stmt := format(
        'WITH candidates AS MATERIALIZED (SELECT v.id, v.chunk, (%2$s)::float8 AS distance FROM %1$s ORDER BY %3$s LIMIT $2),
              best AS (SELECT DISTINCT ON (c.id) c.id, c.chunk, c.distance FROM candidates c ORDER BY c.id, c.distance, c.chunk),
              top AS (SELECT * FROM best b ORDER BY b.distance, b.id LIMIT $4)
         SELECT array_agg(t.id::text ORDER BY t.distance, t.id), array_agg(t.chunk ORDER BY t.distance, t.id),
                array_agg(t.distance ORDER BY t.distance, t.id), (SELECT count(*) FROM candidates) FROM top t',
        src,
        CASE WHEN strat IN ('two_stage', 'binary_two_stage', 'exact') THEN 'v.embedding OPERATOR(@vec@.<=>) $3'
             ELSE mrl_internal._stage1_distance(s, strat, cd) END,
        mrl_internal._stage1_distance(s, strat, cd));
    LOOP
        IF strat = 'exact' THEN
            ck := 2147483647;
        ELSE
            old_scan := mrl_internal._scan_settings(ck, cond IS NOT NULL);
        END IF;
        EXECUTE stmt INTO ids, chunk_nos, dists, found_ USING q_coarse, ck, query, k, filter;
        IF old_scan IS NOT NULL THEN
            PERFORM mrl_internal._restore_scan_settings(old_scan);
            old_scan := NULL;
        END IF;
        EXIT WHEN coalesce(array_length(ids, 1), 0) >= k OR strat = 'exact' OR found_ < ck;
        IF total IS NULL THEN
            EXECUTE format('SELECT count(*) FROM %s', src) INTO total USING q_coarse, ck, query, k, filter;
        END IF;
        IF ck >= total OR (ck > 250 AND current_setting('hnsw.iterative_scan', true) IS NULL) THEN
            -- every chunk was a candidate (the approximate scan missed some), or pgvector cannot return more than
            -- 1000 rows from an index: rank them all
            strat := 'exact';
            stmt := format(
                'WITH candidates AS MATERIALIZED (SELECT v.id, v.chunk, (v.embedding OPERATOR(@vec@.<=>) $3)::float8 AS distance FROM %1$s),
                      best AS (SELECT DISTINCT ON (c.id) c.id, c.chunk, c.distance FROM candidates c ORDER BY c.id, c.distance, c.chunk),
                      top AS (SELECT * FROM best b ORDER BY b.distance, b.id LIMIT $4)
                 SELECT array_agg(t.id::text ORDER BY t.distance, t.id), array_agg(t.chunk ORDER BY t.distance, t.id),
                        array_agg(t.distance ORDER BY t.distance, t.id), (SELECT count(*) FROM candidates) FROM top t', src);
        ELSE
            ck := least(ck::bigint * 4, total)::int;
        END IF;
    END LOOP;
    RETURN QUERY SELECT u.id, u.chunk, u.distance FROM unnest(ids, chunk_nos, dists) u(id, chunk, distance);
END
$fn$;
