-- Internal helpers (schema mrl_internal) of 060_worker.sql: not part of the API; EXECUTE is granted in 090_privileges.sql.

-- Current text of the given keys. content_hash = md5(text); stored_hash = the hash of the vector stored now
-- (so unchanged texts are not embedded again; of any chunk, in a chunked set). Keys whose row is gone come back
-- with body NULL.
CREATE OR REPLACE FUNCTION mrl_internal._fetch_texts(set_id int, ids text[])
RETURNS TABLE (id text, body text, content_hash text, stored_hash text)
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pg_temp
SET DateStyle = 'ISO, MDY' SET IntervalStyle = 'postgres' SET extra_float_digits = 1 SET TimeZone = 'UTC' SET bytea_output = 'hex'
AS $fn$
DECLARE
    s mrl.embedding_sets;
BEGIN
    SELECT * INTO s FROM mrl.embedding_sets e WHERE e.id = _fetch_texts.set_id;
    IF NOT EXISTS (SELECT FROM pg_class WHERE oid = s.source) THEN
        RAISE EXCEPTION 'the source table of embedding set "%" was dropped', s.slug
            USING ERRCODE = 'undefined_table',
                  HINT = format('Drop the set with SELECT mrl.drop_embedding_set(%L), or recreate it on the new table.', s.slug);
    END IF;
    PERFORM mrl_internal._check_tables(s);
    IF mrl_internal._is_distributed(s.source) THEN
        PERFORM mrl_internal._check_citus_owners(s);
        -- Citus: the rows and the stored hashes are fetched from the shards first (materialised), then matched with
        -- the keys here (a lateral join of a table function with a distributed table cannot be pushed down)
        RETURN QUERY EXECUTE format(
            'WITH x AS MATERIALIZED (SELECT (mrl_src.%1$I)::text AS k, (%2$s)::text AS body FROM %3$s mrl_src
                                      WHERE mrl_src.%1$I = ANY ($1::%4$s[])),
                  v AS MATERIALIZED (SELECT (v.id)::text AS k, v.content_hash FROM %5$s v WHERE v.id = ANY ($1::%4$s[]))
             SELECT k.id, x.body, md5(x.body), v.content_hash
               FROM unnest($1) AS k(id) LEFT JOIN x ON x.k = k.id LEFT JOIN v ON v.k = k.id',
            s.pk_column, s.text_expr, s.source, s.pk_type, s.vectors_table) USING ids;
        RETURN;
    END IF;
    RETURN QUERY EXECUTE format(
        'SELECT k.id, x.body, md5(x.body), v.content_hash
           FROM unnest($1) AS k(id)
      LEFT JOIN (SELECT mrl_src.%1$I AS mrl_key, (%2$s)::text AS body FROM ONLY %3$s mrl_src WHERE mrl_src.%1$I = ANY ($1::%4$s[])) x
             ON x.mrl_key = k.id::%4$s
      LEFT JOIN LATERAL (SELECT v.content_hash FROM %5$s v WHERE v.id = x.mrl_key LIMIT 1) v ON true',
        s.pk_column, s.text_expr, s.source, s.pk_type, s.vectors_table) USING ids;
END
$fn$;

-- Writes a batch: vectors whose source text still has the hash they were computed from
-- (a text changed meanwhile was queued again by its UPDATE and is embedded later), with the full-text words of the
-- text they were computed from; removes vectors of keys whose text is now NULL or empty, and deletes the claimed
-- queue rows. A chunked set gets one vector per chunk (chunks[i], starts[i], ends[i]: the chunk of ids[i] and its
-- characters [start, end) in the text); a row written now loses the chunks it no longer has.
-- Keys of the batch whose stored vector has no full-text words yet (sets upgraded from before them) get them. The
-- words of a row of an unchunked set are those of its first 300,000 characters (a tsvector holds at most 1 MB).
-- Source rows are KEY SHARE-locked first, in key order: a concurrent DELETE (which cascades to the vectors)
-- then either finishes before or waits after, and never deadlocks with the worker; text UPDATEs never wait.
DROP FUNCTION IF EXISTS mrl_internal._apply_batch(int, bigint[], text[], text[], @vec@.vector[]);
DROP FUNCTION IF EXISTS mrl_internal._apply_batch(int, bigint[], text[], text[], @vec@.vector[], bool[]);

CREATE OR REPLACE FUNCTION mrl_internal._apply_batch(set_id int, qids bigint[], ids text[], hashes text[],
                                            embeddings @vec@.vector[], truncated bool[] DEFAULT NULL,
                                            chunks int[] DEFAULT NULL, starts int[] DEFAULT NULL, ends int[] DEFAULT NULL)
RETURNS bigint
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
SET DateStyle = 'ISO, MDY' SET IntervalStyle = 'postgres' SET extra_float_digits = 1 SET TimeZone = 'UTC' SET bytea_output = 'hex'
AS $fn$
DECLARE
    s mrl.embedding_sets;
    written bigint := 0;
    keys text[];
    w_hashes text[];
    n int := coalesce(array_length(ids, 1), 0);
    distributed bool;  -- a set over a Citus-distributed source
BEGIN
    SELECT * INTO s FROM mrl.embedding_sets e WHERE e.id = _apply_batch.set_id FOR SHARE;
    IF NOT FOUND THEN
        RETURN 0;  -- the set was dropped
    END IF;
    PERFORM mrl_internal._lock_and_check(s, 'ROW EXCLUSIVE');
    distributed := mrl_internal._is_distributed(s.source);
    IF (s.chunking IS NOT NULL) <> (chunks IS NOT NULL) AND n > 0 THEN
        RAISE EXCEPTION 'embedding set "%" is % but the batch %', s.slug,
            CASE WHEN s.chunking IS NULL THEN 'not chunked' ELSE 'chunked' END,
            CASE WHEN chunks IS NULL THEN 'has no chunks' ELSE 'has chunks' END
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    IF chunks IS NOT NULL AND (cardinality(chunks) <> n OR cardinality(starts) <> n OR cardinality(ends) <> n) THEN
        RAISE EXCEPTION 'a batch needs one chunk number and offsets per vector' USING ERRCODE = 'invalid_parameter_value';
    END IF;
    SELECT array_agg(DISTINCT q.id) INTO keys FROM mrl.queue q WHERE q.qid = ANY (qids);
    keys := (SELECT array_agg(DISTINCT k) FROM unnest(coalesce(keys, '{}') || coalesce(ids, '{}')) k);
    -- (Row locks need UPDATE privilege; a worker role without it relies on the foreign-key check's own lock and
    -- retries a batch that a concurrent DELETE made fail.)
    -- (On a Citus-distributed source a multi-shard row lock is not possible; the co-located foreign key check
    -- of the vectors' INSERT takes its lock on each shard.)
    IF has_any_column_privilege(s.source, 'UPDATE') AND NOT distributed THEN
        EXECUTE format('SELECT count(*) FROM (SELECT 1 FROM ONLY %s WHERE %I = ANY ($1::%s[]) ORDER BY %I FOR KEY SHARE) l',
                       s.source, s.pk_column, s.pk_type, s.pk_column) USING keys;
    END IF;
    IF n > 0 AND chunks IS NULL AND distributed THEN
        -- Citus: the full and coarse vectors are computed here, in the stored types, so that the statement sent to
        -- the shards casts and calls nothing (the coarse vectors use the set's one rotation on every shard)
        EXECUTE format(
            'INSERT INTO %1$s AS v (id, embedding, coarse, content_hash, embedded_at, truncated)
             SELECT x.mrl_key, b.embedding, b.coarse, b.hash, clock_timestamp(), coalesce(b.truncated, false)
               FROM unnest($1, $2, %6$s, $4, $5) AS b(id, hash, embedding, coarse, truncated)
               JOIN (SELECT mrl_src.%2$I AS mrl_key, (%3$s)::text AS mrl_body FROM %4$s mrl_src WHERE mrl_src.%2$I = ANY ($1::%5$s[])) x
                 ON x.mrl_key = b.id::%5$s AND md5(x.mrl_body) = b.hash
              ORDER BY x.mrl_key
             ON CONFLICT (id) DO UPDATE SET embedding = EXCLUDED.embedding, coarse = EXCLUDED.coarse,
                 content_hash = EXCLUDED.content_hash, embedded_at = EXCLUDED.embedded_at,
                 truncated = EXCLUDED.truncated',
            s.vectors_table, s.pk_column, s.text_expr, s.source, s.pk_type, CASE WHEN s.full_type = 'halfvec' THEN '$6' ELSE '$3' END)
            USING ids, hashes, embeddings,
                  (SELECT array_agg(CASE WHEN s.coarse_method = 'none' THEN NULL ELSE mrl.coarse_of(s.id, e) END ORDER BY o)
                     FROM unnest(embeddings) WITH ORDINALITY u(e, o)),
                  coalesce(truncated, array_fill(false, ARRAY[n])),
                  CASE WHEN s.full_type = 'halfvec' THEN embeddings::@vec@.halfvec[] END;
        GET DIAGNOSTICS written = ROW_COUNT;
    ELSIF n > 0 AND chunks IS NULL THEN
        EXECUTE format(
            'INSERT INTO %1$s AS v (id, embedding, coarse, content_hash, embedded_at, truncated)
             SELECT x.mrl_key, b.embedding, %6$s, b.hash, clock_timestamp(), coalesce(b.truncated, false)
               FROM unnest($1, $2, $3, $5) AS b(id, hash, embedding, truncated)
               JOIN (SELECT mrl_src.%2$I AS mrl_key, (%3$s)::text AS mrl_body FROM ONLY %4$s mrl_src WHERE mrl_src.%2$I = ANY ($1::%5$s[])) x
                 ON x.mrl_key = b.id::%5$s AND md5(x.mrl_body) = b.hash
              ORDER BY x.mrl_key
             ON CONFLICT (id) DO UPDATE SET embedding = EXCLUDED.embedding, coarse = EXCLUDED.coarse,
                 content_hash = EXCLUDED.content_hash, embedded_at = EXCLUDED.embedded_at,
                 truncated = EXCLUDED.truncated',
            s.vectors_table, s.pk_column, s.text_expr, s.source, s.pk_type,
            CASE WHEN s.coarse_method = 'none' THEN 'NULL' ELSE 'mrl.coarse_of($4, b.embedding)' END)
            USING ids, hashes, embeddings, s.id, coalesce(truncated, array_fill(false, ARRAY[n]));
        GET DIAGNOSTICS written = ROW_COUNT;
    ELSIF n > 0 THEN
        EXECUTE format(
            'WITH w AS (
                 INSERT INTO %1$s AS v (id, chunk, start_char, end_char, embedding, coarse, content_hash, embedded_at)
                 SELECT x.mrl_key, b.chunk, b.start_char, b.end_char, b.embedding, %6$s, b.hash, clock_timestamp()
                   FROM unnest($1, $2, $3, $5, $7, $8) AS b(id, hash, embedding, chunk, start_char, end_char)
                   JOIN (SELECT mrl_src.%2$I AS mrl_key, (%3$s)::text AS mrl_body FROM ONLY %4$s mrl_src WHERE mrl_src.%2$I = ANY ($1::%5$s[])) x
                     ON x.mrl_key = b.id::%5$s AND md5(x.mrl_body) = b.hash
                  ORDER BY x.mrl_key, b.chunk
                 ON CONFLICT (id, chunk) DO UPDATE SET start_char = EXCLUDED.start_char, end_char = EXCLUDED.end_char,
                     embedding = EXCLUDED.embedding, coarse = EXCLUDED.coarse, content_hash = EXCLUDED.content_hash,
                     embedded_at = EXCLUDED.embedded_at
                 RETURNING v.id, v.content_hash)
             SELECT count(*), array_agg(DISTINCT w.id::text || chr(1) || w.content_hash) FROM w',
            s.vectors_table, s.pk_column, s.text_expr, s.source, s.pk_type,
            CASE WHEN s.coarse_method = 'none' THEN 'NULL' ELSE 'mrl.coarse_of($4, b.embedding)' END)
            INTO written, w_hashes
            USING ids, hashes, embeddings, s.id, chunks, NULL::text, starts, ends;
        -- chunks of an earlier text of the rows just written (their hash is the old one)
        EXECUTE format(
            'DELETE FROM %1$s v USING unnest($1) w(k)
              WHERE v.id = split_part(w.k, chr(1), 1)::%2$s AND v.content_hash <> split_part(w.k, chr(1), 2)',
            s.vectors_table, s.pk_type) USING w_hashes;
    END IF;
    -- The full-text words of every current vector of the batch's keys (written now, or kept: an unchanged text
    -- queued again gets words it may lack), from the text the vector was computed from.
    IF s.words_table IS NOT NULL THEN
        EXECUTE format(
            'INSERT INTO %1$s AS w (id%6$s, tsv)
             SELECT v.id%7$s, pg_catalog.to_tsvector($2::regconfig, %8$s)
               FROM (SELECT mrl_src.%2$I AS mrl_key, (%3$s)::text AS mrl_body FROM ONLY %4$s mrl_src WHERE mrl_src.%2$I = ANY ($1::%5$s[])) x
               JOIN %9$s v ON v.id = x.mrl_key AND v.content_hash = md5(x.mrl_body)
              ORDER BY 1%6$s
             ON CONFLICT (id%6$s) DO UPDATE SET tsv = EXCLUDED.tsv',
            s.words_table, s.pk_column, s.text_expr, s.source, s.pk_type,
            CASE WHEN s.chunking IS NULL THEN '' ELSE ', chunk' END,
            CASE WHEN s.chunking IS NULL THEN '' ELSE ', v.chunk' END,
            CASE WHEN s.chunking IS NULL THEN 'left(x.mrl_body, 300000)'
                 ELSE 'substr(x.mrl_body, v.start_char + 1, v.end_char - v.start_char)' END,
            s.vectors_table) USING keys, s.text_search_config;
    END IF;
    -- Texts that became NULL or empty lose their vector(s).
    EXECUTE format(
        'DELETE FROM %1$s v USING (SELECT mrl_src.%2$I AS mrl_key FROM ONLY %4$s mrl_src
                                    WHERE mrl_src.%2$I = ANY ($1::%5$s[]) AND coalesce((%3$s)::text, '''') = '''') x
          WHERE v.id = x.mrl_key',
        s.vectors_table, s.pk_column, s.text_expr, s.source, s.pk_type) USING keys;
    DELETE FROM mrl.queue WHERE qid = ANY (qids);
    RETURN written;
END
$fn$;

-- Records a failed attempt: exponential backoff (capped), dead-lettered after max_attempts.
CREATE OR REPLACE FUNCTION mrl_internal._fail_items(qids bigint[], error text, max_attempts int DEFAULT 5)
RETURNS void
LANGUAGE sql
SET search_path = pg_catalog, pg_temp
AS $fn$
    UPDATE mrl.queue
       SET attempts = attempts + 1,
           last_error = left(error, 2000),
           next_attempt_at = clock_timestamp() + least(interval '1 second' * power(2, attempts + 1), interval '10 minutes'),
           dead = attempts + 1 >= max_attempts,
           failed_at = CASE WHEN attempts + 1 >= max_attempts THEN clock_timestamp() END
     WHERE qid = ANY (qids)
$fn$;

-- Moves keys queued as arrays (mrl.queue_intake) into mrl.queue rows, oldest statements first; keeps their
-- queue time. Concurrent workers take different intake rows. Returns the keys moved.
CREATE OR REPLACE FUNCTION mrl_internal._expand_intake(max_statements int DEFAULT 100)
RETURNS bigint
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $fn$
DECLARE
    n bigint;
    total bigint := 0;
    i record;
BEGIN
    BEGIN
        WITH moved AS (
            DELETE FROM mrl.queue_intake qi  -- (not "i": that is the record below, and plpgsql would read it here)
             WHERE qi.bid IN (SELECT x.bid FROM mrl.queue_intake x ORDER BY x.bid LIMIT max_statements FOR UPDATE SKIP LOCKED)
            RETURNING qi.set_id, qi.ids, qi.queued_at)
        INSERT INTO mrl.queue (set_id, id, queued_at)
        SELECT m.set_id, u.id, m.queued_at
          FROM moved m JOIN mrl.embedding_sets e ON e.id = m.set_id, unnest(m.ids) u(id)
         WHERE u.id IS NOT NULL;
        GET DIAGNOSTICS n = ROW_COUNT;
        RETURN n;
    EXCEPTION WHEN OTHERS THEN
        -- one statement's keys cannot be queued (whatever the reason): move the others, one statement at a time,
        -- and keep that one in the intake with a warning, so that no set waits for it
        RAISE WARNING 'pgmrl: expanding queued keys failed (%); moving them one statement at a time', SQLERRM;
    END;
    FOR i IN SELECT x.bid, x.set_id, x.ids, x.queued_at FROM mrl.queue_intake x ORDER BY x.bid
              LIMIT max_statements FOR UPDATE SKIP LOCKED LOOP
        BEGIN
            INSERT INTO mrl.queue (set_id, id, queued_at)
            SELECT i.set_id, u.id, i.queued_at FROM unnest(i.ids) u(id)
             WHERE u.id IS NOT NULL AND EXISTS (SELECT FROM mrl.embedding_sets e WHERE e.id = i.set_id);
            GET DIAGNOSTICS n = ROW_COUNT;
            DELETE FROM mrl.queue_intake WHERE bid = i.bid;
            total := total + n;
        EXCEPTION WHEN OTHERS THEN
            RAISE WARNING 'pgmrl: the keys written by statement % of set % cannot be queued: %', i.bid, i.set_id, SQLERRM;
        END;
    END LOOP;
    RETURN total;
END
$fn$;
