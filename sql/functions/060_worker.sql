-- Functions the embedding worker calls. Each works inside the caller's transaction.

-- Current text of the given keys. content_hash = md5(text); stored_hash = the hash of the vector stored now
-- (so unchanged texts are not embedded again). Keys whose row is gone come back with body NULL.
CREATE OR REPLACE FUNCTION mrl._fetch_texts(set_id int, ids text[])
RETURNS TABLE (id text, body text, content_hash text, stored_hash text)
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pg_temp
AS $fn$
DECLARE
    s mrl.embedding_sets;
BEGIN
    SELECT * INTO s FROM mrl.embedding_sets e WHERE e.id = _fetch_texts.set_id;
    RETURN QUERY EXECUTE format(
        'SELECT k.id, x.body, md5(x.body), v.content_hash
           FROM unnest($1) AS k(id)
      LEFT JOIN (SELECT %1$I AS mrl_key, (%2$s)::text AS body FROM %3$s WHERE %1$I = ANY ($1::%4$s[])) x
             ON x.mrl_key = k.id::%4$s
      LEFT JOIN %5$s v ON v.id = x.mrl_key',
        s.pk_column, s.text_expr, s.source, s.pk_type, s.vectors_table) USING ids;
END
$fn$;

-- Writes a batch: vectors whose source text still has the hash they were computed from
-- (a text changed meanwhile was queued again by its UPDATE and is embedded later),
-- removes vectors of keys whose text is now NULL or empty, and deletes the claimed queue rows.
CREATE OR REPLACE FUNCTION mrl._apply_batch(set_id int, qids bigint[], ids text[], hashes text[],
                                            embeddings @vec@.vector[])
RETURNS bigint
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $fn$
DECLARE
    s mrl.embedding_sets;
    written bigint := 0;
BEGIN
    SELECT * INTO s FROM mrl.embedding_sets e WHERE e.id = _apply_batch.set_id FOR SHARE;
    IF NOT FOUND THEN
        RETURN 0;  -- the set was dropped
    END IF;
    IF coalesce(array_length(ids, 1), 0) > 0 THEN
        EXECUTE format(
            'INSERT INTO %1$s AS v (id, embedding, coarse, content_hash, embedded_at)
             SELECT x.mrl_key, b.embedding, %6$s, b.hash, clock_timestamp()
               FROM unnest($1, $2, $3) AS b(id, hash, embedding)
               JOIN (SELECT %2$I AS mrl_key, md5((%3$s)::text) AS mrl_hash FROM %4$s WHERE %2$I = ANY ($1::%5$s[])) x
                 ON x.mrl_key = b.id::%5$s AND x.mrl_hash = b.hash
             ON CONFLICT (id) DO UPDATE SET embedding = EXCLUDED.embedding, coarse = EXCLUDED.coarse,
                 content_hash = EXCLUDED.content_hash, embedded_at = EXCLUDED.embedded_at',
            s.vectors_table, s.pk_column, s.text_expr, s.source, s.pk_type,
            CASE WHEN s.coarse_method = 'none' THEN 'NULL' ELSE 'mrl.coarse_of($4, b.embedding)' END)
            USING ids, hashes, embeddings, s.id;
        GET DIAGNOSTICS written = ROW_COUNT;
    END IF;
    -- Texts that became NULL or empty lose their vector. Keys are those of the claimed queue rows.
    EXECUTE format(
        'DELETE FROM %1$s v USING (SELECT %2$I AS mrl_key FROM %4$s
                                    WHERE %2$I = ANY ((SELECT array_agg(q.id) FROM mrl.queue q WHERE q.qid = ANY ($1))::%5$s[])
                                      AND coalesce((%3$s)::text, '''') = '''') x
          WHERE v.id = x.mrl_key',
        s.vectors_table, s.pk_column, s.text_expr, s.source, s.pk_type) USING qids;
    DELETE FROM mrl.queue WHERE qid = ANY (qids);
    RETURN written;
END
$fn$;

-- Records a failed attempt: exponential backoff (capped), dead-lettered after max_attempts.
CREATE OR REPLACE FUNCTION mrl._fail_items(qids bigint[], error text, max_attempts int DEFAULT 5)
RETURNS void
LANGUAGE sql
SET search_path = pg_catalog, pg_temp
AS $fn$
    UPDATE mrl.queue
       SET attempts = attempts + 1,
           last_error = left(error, 2000),
           next_attempt_at = clock_timestamp() + least(interval '1 second' * power(2, attempts + 1), interval '10 minutes'),
           dead = attempts + 1 >= max_attempts
     WHERE qid = ANY (qids)
$fn$;
