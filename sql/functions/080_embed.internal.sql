-- Internal helpers (schema mrl_internal) of 080_embed.sql: not part of the API; EXECUTE is granted in 090_privileges.sql.

-- A query that is a vector written as text ('[0.1, 0.2, ...]', or an array '{0.1, ...}' / '{"0.1", ...}' as node-postgres
-- sends a plain array): what pgvector's adapters for
-- psycopg2, asyncpg, node-postgres and SQLAlchemy send when no ::vector cast is written. Such a string reaches the
-- text overloads (PostgreSQL prefers text for an untyped literal or parameter), and must never be embedded as words.
-- Returns the vector, NULL for ordinary text; raises when it looks like a vector but does not parse as one.
CREATE OR REPLACE FUNCTION mrl_internal._vector_text(input text)
RETURNS @vec@.vector
LANGUAGE plpgsql IMMUTABLE
SET search_path = pg_catalog, pg_temp
AS $fn$
BEGIN
    IF input IS NULL OR input !~ '^\s*(\[[-+0-9.,eE\s]*\]|\{[-+0-9.,eE\s"]*\})\s*$' OR input !~ '[0-9]' THEN
        RETURN NULL;
    END IF;
    BEGIN
        IF btrim(input) LIKE '{%' THEN
            RETURN input::real[]::@vec@.vector;
        END IF;
        RETURN input::@vec@.vector;
    EXCEPTION WHEN data_exception THEN
        RAISE EXCEPTION 'query % looks like a vector but is not one: %', left(input, 80), SQLERRM
            USING ERRCODE = 'invalid_text_representation',
                  HINT = 'Pass a query vector as vector (e.g. $2::vector, or ''[0.1, ...]''::vector), or words to search for.';
    END;
END
$fn$;

-- Sync mode: statement-level trigger that embeds the new texts inside the writing transaction, so the vectors
-- are visible at COMMIT. If the sidecar cannot be reached the write fails (never silently skips).
-- Runs as the writer (not SECURITY DEFINER): it writes the set's vectors table, and whatever the table's owner may
-- attach to it must never run with more than the writer's privileges. Writers need INSERT, UPDATE, DELETE on the
-- vectors table (granted by the set's owner).
CREATE OR REPLACE FUNCTION mrl_internal._sync_changes()
RETURNS trigger
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
SET DateStyle = 'ISO, MDY' SET IntervalStyle = 'postgres' SET extra_float_digits = 1 SET TimeZone = 'UTC' SET bytea_output = 'hex'
AS $fn$
DECLARE
    s mrl.embedding_sets := mrl_internal._trigger_set(TG_ARGV[0], TG_RELID, TG_NAME, TG_LEVEL, TG_WHEN, TG_OP,
                                                      'mrl_internal._sync_changes'::regproc);
    keys text[];
    texts text[];
    emptied text[];
BEGIN
    IF s.id IS NULL THEN
        RETURN NULL;
    END IF;
    PERFORM mrl_internal._lock_and_check(s, 'ROW EXCLUSIVE');
    EXECUTE format(
        'SELECT array_agg((c.k)::text) FILTER (WHERE coalesce(c.t, '''') <> ''''),
                array_agg(c.t) FILTER (WHERE coalesce(c.t, '''') <> ''''),
                array_agg((c.k)::text) FILTER (WHERE coalesce(c.t, '''') = '''')
           FROM %s', mrl_internal._changed_rows(s, TG_OP)) INTO keys, texts, emptied;
    IF emptied IS NOT NULL AND TG_OP = 'UPDATE' THEN
        EXECUTE format('DELETE FROM %s WHERE id = ANY ($1::%s[])', s.vectors_table, s.pk_type) USING emptied;
    END IF;
    IF keys IS NOT NULL THEN
        EXECUTE format(
            'INSERT INTO %1$s AS v (id, embedding, coarse, content_hash, embedded_at)
             SELECT u.k::%2$s, u.e, %3$s, md5(u.t), clock_timestamp()
               FROM unnest($1, $2, $3) AS u(k, t, e)
             ON CONFLICT (id) DO UPDATE SET embedding = EXCLUDED.embedding, coarse = EXCLUDED.coarse,
                 content_hash = EXCLUDED.content_hash, embedded_at = EXCLUDED.embedded_at',
            s.vectors_table, s.pk_type,
            CASE WHEN s.coarse_method = 'none' THEN 'NULL' ELSE 'mrl.coarse_of($4, u.e)' END)
            USING keys, texts, mrl_internal._http_embed(texts, s.config, 'document'), s.id;
        IF s.words_table IS NOT NULL THEN
            EXECUTE format(
                'INSERT INTO %1$s AS w (id, tsv)
                 SELECT u.k::%2$s, pg_catalog.to_tsvector($3::regconfig, left(u.t, 300000)) FROM unnest($1, $2) AS u(k, t)
                 ON CONFLICT (id) DO UPDATE SET tsv = EXCLUDED.tsv', s.words_table, s.pk_type)
                USING keys, texts, s.text_search_config;
        END IF;
    END IF;
    RETURN NULL;
END
$fn$;

-- The query vector of a text search: a vector written as text is that vector; words are embedded with the set's
-- model and query prefix (through the sidecar).
CREATE OR REPLACE FUNCTION mrl_internal._query_vector(set_slug text, query text)
RETURNS @vec@.vector
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pg_temp
AS $fn$
DECLARE
    v @vec@.vector := mrl_internal._vector_text(query);
BEGIN
    IF v IS NULL THEN
        IF query IS NULL OR btrim(query) = '' THEN
            RAISE EXCEPTION 'query is NULL or empty' USING ERRCODE = 'null_value_not_allowed',
                  HINT = 'Pass the words to search for, or a query vector.';
        END IF;
        v := mrl.embed(query, (mrl_internal._set(set_slug)).config, 'query');
    END IF;
    RETURN v;
END
$fn$;
