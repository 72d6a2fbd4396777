-- Text in SQL: mrl.embed() and the text overloads of the searches (through the sidecar), and sync mode.

CREATE OR REPLACE FUNCTION mrl.embed(input text, config text DEFAULT 'all-minilm-l6-v2', kind text DEFAULT 'query')
RETURNS @vec@.vector
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pg_temp
AS $fn$
DECLARE
    c mrl.embedding_configs := mrl_internal._config(config);
BEGIN
    IF input IS NULL OR input = '' THEN
        RAISE EXCEPTION 'text to embed is NULL or empty' USING ERRCODE = 'null_value_not_allowed',
              HINT = 'Pass the words to search for.';
    END IF;
    IF mrl_internal._vector_text(input) IS NOT NULL THEN
        RAISE EXCEPTION 'the text to embed is a vector (%...), not words', left(input, 40) USING ERRCODE = 'invalid_parameter_value',
              HINT = 'A query vector needs no embedding: pass it to the search functions (cast as ::vector).';
    END IF;
    IF kind IS NULL OR kind NOT IN ('query', 'document') THEN
        RAISE EXCEPTION 'kind must be ''query'' or ''document'', got %', coalesce(quote_literal(kind), 'NULL')
            USING ERRCODE = 'invalid_parameter_value',
                  HINT = 'Queries and documents get different prefixes on models that use them (e.g. nomic).';
    END IF;
    RETURN (mrl_internal._http_embed(ARRAY[input], c.name, kind))[1];
END
$fn$;

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

CREATE OR REPLACE FUNCTION mrl.search(
    set_slug text,
    query text,
    k int DEFAULT 10,
    strategy text DEFAULT NULL,
    coarse_k int DEFAULT NULL,
    coarse_dim int DEFAULT NULL,
    filter jsonb DEFAULT NULL
)
RETURNS TABLE (id text, distance double precision)
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
    RETURN QUERY SELECT * FROM mrl.search(set_slug, v, k, strategy, coarse_k, coarse_dim, filter);
END
$fn$;
COMMENT ON FUNCTION mrl.search(text, text, int, text, int, int, jsonb) IS
    'Searches a set for words (embedded by the sidecar with the set''s model and query prefix). A vector written as text is searched as that vector.';

CREATE OR REPLACE FUNCTION mrl.two_stage_search(
    set_slug text,
    query text,
    k int DEFAULT 10,
    coarse_k int DEFAULT NULL,
    coarse_dim int DEFAULT NULL,
    filter jsonb DEFAULT NULL,
    strategy text DEFAULT NULL
)
RETURNS TABLE (id text, distance double precision)
LANGUAGE sql VOLATILE
SET search_path = pg_catalog, pg_temp
AS $fn$
    SELECT * FROM mrl.search(set_slug, query, k, coalesce(strategy, mrl_internal._two_stage_default(set_slug)),
                             coarse_k, coarse_dim, filter)  -- the text overload above
$fn$;
COMMENT ON FUNCTION mrl.two_stage_search(text, text, int, int, int, jsonb, text) IS
    'Two-stage search for words: coarse HNSW on the truncated vector, exact re-rank with the full vector. A vector written as text is searched as that vector.';

-- Query vectors of other types: halfvec, real[] and double precision[] are searched as vector (one overload each).
DO $overloads$
DECLARE
    typ text;
    conv text;
BEGIN
    FOREACH typ IN ARRAY ARRAY['@vec@.halfvec', 'real[]', 'double precision[]'] LOOP
        conv := CASE WHEN typ = 'double precision[]' THEN 'query::real[]::@vec@.vector' ELSE 'query::@vec@.vector' END;
        EXECUTE format($sql$
            CREATE OR REPLACE FUNCTION mrl.search(set_slug text, query %1$s, k int DEFAULT 10, strategy text DEFAULT NULL,
                                                  coarse_k int DEFAULT NULL, coarse_dim int DEFAULT NULL, filter jsonb DEFAULT NULL)
            RETURNS TABLE (id text, distance double precision) LANGUAGE sql STABLE SET search_path = pg_catalog, pg_temp
            AS 'SELECT * FROM mrl.search(set_slug, %2$s, k, strategy, coarse_k, coarse_dim, filter)';
            COMMENT ON FUNCTION mrl.search(text, %1$s, int, text, int, int, jsonb) IS 'mrl.search with a %1$s query vector.';
            CREATE OR REPLACE FUNCTION mrl.two_stage_search(set_slug text, query %1$s, k int DEFAULT 10, coarse_k int DEFAULT NULL,
                                                            coarse_dim int DEFAULT NULL, filter jsonb DEFAULT NULL, strategy text DEFAULT NULL)
            RETURNS TABLE (id text, distance double precision) LANGUAGE sql STABLE SET search_path = pg_catalog, pg_temp
            AS 'SELECT * FROM mrl.two_stage_search(set_slug, %2$s, k, coarse_k, coarse_dim, filter, strategy)';
            COMMENT ON FUNCTION mrl.two_stage_search(text, %1$s, int, int, int, jsonb, text) IS 'mrl.two_stage_search with a %1$s query vector.';
            $sql$, typ, conv);
    END LOOP;
END
$overloads$;

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
    PERFORM mrl_internal._check_tables(s);
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
             SELECT u.k::%2$s, u.e, %3$s, md5(u.t), clock_timestamp() FROM unnest($1, $2, $3) AS u(k, t, e)
             ON CONFLICT (id) DO UPDATE SET embedding = EXCLUDED.embedding, coarse = EXCLUDED.coarse,
                 content_hash = EXCLUDED.content_hash, embedded_at = EXCLUDED.embedded_at',
            s.vectors_table, s.pk_type,
            CASE WHEN s.coarse_method = 'none' THEN 'NULL' ELSE 'mrl.coarse_of($4, u.e)' END)
            USING keys, texts, mrl_internal._http_embed(texts, s.config, 'document'), s.id;
    END IF;
    RETURN NULL;
END
$fn$;

-- Where the database reaches the sidecar.
CREATE OR REPLACE FUNCTION mrl.configure_sidecar(url text, token text DEFAULT NULL, timeout_s numeric DEFAULT NULL)
RETURNS void
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $fn$
BEGIN
    IF url IS NULL OR url !~ '^https?://[^/\s]+/?$' THEN
        RAISE EXCEPTION 'sidecar URL % is not of the form http://host:port', coalesce(quote_literal(url), 'NULL')
            USING ERRCODE = 'invalid_parameter_value', HINT = 'e.g. http://127.0.0.1:8765';
    END IF;
    INSERT INTO mrl.settings (key, value) VALUES ('sidecar_url', rtrim(url, '/'))
        ON CONFLICT (key) DO UPDATE SET value = EXCLUDED.value, updated_at = now();
    IF token IS NOT NULL THEN
        INSERT INTO mrl.settings (key, value) VALUES ('sidecar_token', token)
            ON CONFLICT (key) DO UPDATE SET value = EXCLUDED.value, updated_at = now();
    END IF;
    IF timeout_s IS NOT NULL THEN
        IF timeout_s <= 0 OR timeout_s > 600 THEN
            RAISE EXCEPTION 'timeout_s must be in (0, 600]' USING ERRCODE = 'invalid_parameter_value';
        END IF;
        INSERT INTO mrl.settings (key, value) VALUES ('http_timeout_s', timeout_s::text)
            ON CONFLICT (key) DO UPDATE SET value = EXCLUDED.value, updated_at = now();
    END IF;
END
$fn$;
