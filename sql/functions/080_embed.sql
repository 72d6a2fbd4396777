-- Text in SQL: mrl.embed() and the text overloads of the searches (through the sidecar), and sync mode.

CREATE OR REPLACE FUNCTION mrl.embed(input text, config text DEFAULT 'all-minilm-l6-v2', kind text DEFAULT 'query')
RETURNS @vec@.vector
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pg_temp
AS $fn$
DECLARE
    c mrl.embedding_configs := mrl._config(config);
BEGIN
    IF input IS NULL OR input = '' THEN
        RAISE EXCEPTION 'text to embed is NULL or empty' USING ERRCODE = 'null_value_not_allowed',
              HINT = 'Pass the words to search for.';
    END IF;
    IF kind IS NULL OR kind NOT IN ('query', 'document') THEN
        RAISE EXCEPTION 'kind must be ''query'' or ''document'', got %', coalesce(quote_literal(kind), 'NULL')
            USING ERRCODE = 'invalid_parameter_value',
                  HINT = 'Queries and documents get different prefixes on models that use them (e.g. nomic).';
    END IF;
    RETURN (mrl._http_embed(ARRAY[input], c.name, kind))[1];
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
LANGUAGE sql VOLATILE
SET search_path = pg_catalog, pg_temp
AS $fn$
    SELECT * FROM mrl.search(set_slug, mrl.embed(query, (mrl._set(set_slug)).config, 'query'),
                             k, strategy, coarse_k, coarse_dim, filter)
$fn$;

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
    SELECT * FROM mrl.search(set_slug, query, k, coalesce(strategy, mrl._two_stage_default(set_slug)),
                             coarse_k, coarse_dim, filter)  -- the text overload above
$fn$;

-- Sync mode: statement-level trigger that embeds the new texts inside the writing transaction, so the vectors
-- are visible at COMMIT. If the sidecar cannot be reached the write fails (never silently skips).
CREATE OR REPLACE FUNCTION mrl._sync_changes()
RETURNS trigger
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $fn$
DECLARE
    s mrl.embedding_sets;
    keys text[];
    texts text[];
    emptied text[];
BEGIN
    SELECT * INTO s FROM mrl.embedding_sets WHERE id = TG_ARGV[0]::int;
    IF NOT FOUND THEN
        RETURN NULL;
    END IF;
    EXECUTE format(
        'SELECT array_agg((c.k)::text) FILTER (WHERE coalesce(c.t, '''') <> ''''),
                array_agg(c.t) FILTER (WHERE coalesce(c.t, '''') <> ''''),
                array_agg((c.k)::text) FILTER (WHERE coalesce(c.t, '''') = '''')
           FROM %s', mrl._changed_rows(s, TG_OP)) INTO keys, texts, emptied;
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
            USING keys, texts, mrl._http_embed(texts, s.config, 'document'), s.id;
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
