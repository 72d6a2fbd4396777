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
    v @vec@.vector := mrl_internal._query_vector(set_slug, query);
BEGIN
    RETURN QUERY SELECT * FROM mrl.search(set_slug, v, k, strategy, coarse_k, coarse_dim, filter);
END
$fn$;

COMMENT ON FUNCTION mrl.search(text, text, int, text, int, int, jsonb) IS
    'Searches a set for words (embedded by the sidecar with the set''s model and query prefix). A vector written as text is searched as that vector.';

CREATE OR REPLACE FUNCTION mrl.two_stage_search(
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
    SELECT * FROM mrl.search(set_slug, query, k, coalesce(strategy, mrl_internal._two_stage_default(set_slug)),
                             coarse_k, coarse_dim, filter)  -- the text overload above
$fn$;

COMMENT ON FUNCTION mrl.two_stage_search(text, text, int, text, int, int, jsonb) IS
    'Two-stage search for words: coarse HNSW on the truncated vector, exact re-rank with the full vector. A vector written as text is searched as that vector.';

CREATE OR REPLACE FUNCTION mrl.search_rows(
    source anyelement,
    set_slug text,
    query text,
    k int DEFAULT 10,
    strategy text DEFAULT NULL,
    coarse_k int DEFAULT NULL,
    coarse_dim int DEFAULT NULL,
    filter jsonb DEFAULT NULL
)
RETURNS TABLE (item anyelement, distance double precision)
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pg_temp
AS $fn$
DECLARE
    v @vec@.vector := mrl_internal._query_vector(set_slug, query);
BEGIN
    RETURN QUERY SELECT * FROM mrl.search_rows(source, set_slug, v, k, strategy, coarse_k, coarse_dim, filter);
END
$fn$;

COMMENT ON FUNCTION mrl.search_rows(anyelement, text, text, int, text, int, int, jsonb) IS
    'mrl.search_rows for words (embedded by the sidecar with the set''s model).';

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
            CREATE OR REPLACE FUNCTION mrl.two_stage_search(set_slug text, query %1$s, k int DEFAULT 10, strategy text DEFAULT NULL,
                                                            coarse_k int DEFAULT NULL, coarse_dim int DEFAULT NULL, filter jsonb DEFAULT NULL)
            RETURNS TABLE (id text, distance double precision) LANGUAGE sql STABLE SET search_path = pg_catalog, pg_temp
            AS 'SELECT * FROM mrl.two_stage_search(set_slug, %2$s, k, strategy, coarse_k, coarse_dim, filter)';
            COMMENT ON FUNCTION mrl.two_stage_search(text, %1$s, int, text, int, int, jsonb) IS 'mrl.two_stage_search with a %1$s query vector.';
            $sql$, typ, conv);
    END LOOP;
END
$overloads$;

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

-- Where SQL reaches the sidecar's PostgreSQL-protocol endpoint (servers without plpython3u embed through dblink).
CREATE OR REPLACE FUNCTION mrl.configure_sidecar_pg(host text, port int DEFAULT 8766)
RETURNS void
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $fn$
BEGIN
    IF host IS NULL OR host !~ '^[A-Za-z0-9._:/-]+$' OR port IS NULL OR port NOT BETWEEN 1 AND 65535 THEN
        RAISE EXCEPTION 'sidecar address %:% is not a host name and a port', coalesce(host, 'NULL'), coalesce(port::text, 'NULL')
            USING ERRCODE = 'invalid_parameter_value', HINT = 'e.g. SELECT mrl.configure_sidecar_pg(''127.0.0.1'', 8766)';
    END IF;
    INSERT INTO mrl.settings (key, value) VALUES ('sidecar_pg', format('host=%s port=%s', host, port))
        ON CONFLICT (key) DO UPDATE SET value = EXCLUDED.value, updated_at = now();
END
$fn$;
