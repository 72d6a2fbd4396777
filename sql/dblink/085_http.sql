-- The sidecar reached through dblink, for servers without plpython3u (the embedded default, managed services): the
-- sidecar answers the PostgreSQL protocol (`pgmrl serve --pg-port`), so dblink, available almost everywhere, asks it
-- `SELECT embedding FROM embed(config, kind, text)`. One named connection per backend ('mrl_sidecar'), opened on
-- first use and re-opened once when it broke; every wait bounded by http_timeout_s: a sidecar that is down is an
-- error naming its address, never a hang. The token is the connection's password (kept in mrl.settings, which only
-- the schema's owner reads: hence SECURITY DEFINER, for _http_embed only; its helpers run inside it).
CREATE OR REPLACE FUNCTION mrl_internal._embed_transport()
RETURNS text
LANGUAGE sql IMMUTABLE
SET search_path = pg_catalog, pg_temp
AS $fn$ SELECT 'dblink' $fn$;

CREATE OR REPLACE FUNCTION mrl_internal._sidecar_key(address text, token text)
RETURNS text
LANGUAGE sql IMMUTABLE
SET search_path = pg_catalog, pg_temp
AS $fn$ SELECT encode(sha256(convert_to(address || E'\n' || coalesce(token, ''), 'UTF8')), 'hex') $fn$;

CREATE OR REPLACE FUNCTION mrl_internal._sidecar_connect(address text, token text, timeout_s numeric)
RETURNS void
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $fn$
DECLARE
    shown text := replace(replace(address, 'host=', ''), ' port=', ':');
    detail text;
BEGIN
    IF 'mrl_sidecar' = ANY (coalesce(@dblink@.dblink_get_connections(), '{}')) THEN
        PERFORM @dblink@.dblink_disconnect('mrl_sidecar');
    END IF;
    PERFORM @dblink@.dblink_connect('mrl_sidecar',
        format('%s user=pgmrl dbname=pgmrl password=%s connect_timeout=%s application_name=pgmrl',
               address, quote_literal(coalesce(token, '')), greatest(1, ceil(timeout_s))::int));
    -- which address and token this session's connection was opened with (a digest: the token itself stays here)
    PERFORM set_config('pgmrl.sidecar_key', mrl_internal._sidecar_key(address, token), false);
EXCEPTION WHEN sqlclient_unable_to_establish_sqlconnection OR invalid_password OR invalid_authorization_specification THEN
    GET STACKED DIAGNOSTICS detail = PG_EXCEPTION_DETAIL;
    IF detail ~* 'password|authentication' THEN
        RAISE EXCEPTION 'pgmrl sidecar at % refused the token', shown USING ERRCODE = 'invalid_authorization_specification',
              HINT = 'Set the sidecar''s token with `pgmrl configure --token ...` (same as PGMRL_TOKEN).';
    END IF;
    RAISE EXCEPTION 'pgmrl sidecar at % is not reachable (%)', shown, coalesce(nullif(detail, ''), SQLERRM)
        USING ERRCODE = 'connection_exception',
              HINT = 'Start it with `pgmrl serve --pg-port 8766` (it records its address in mrl.settings), or point the '
                     'database at it with SELECT mrl.configure_sidecar_pg(host, port).';
END
$fn$;

CREATE OR REPLACE FUNCTION mrl_internal._http_embed(texts text[], config text, kind text)
RETURNS @vec@.vector[]
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $fn$
DECLARE
    address text;
    token text;
    timeout_s numeric;
    deadline timestamptz;
    t text;
    v text;
    sent int;
    out @vec@.vector[] := '{}';
    shown text;
BEGIN
    IF texts IS NULL OR cardinality(texts) = 0 THEN
        RETURN out;
    END IF;
    SELECT max(value) FILTER (WHERE key = 'sidecar_pg'), max(value) FILTER (WHERE key = 'sidecar_token'),
           coalesce(max(value) FILTER (WHERE key = 'http_timeout_s'), '30')::numeric
      INTO address, token, timeout_s
      FROM mrl.settings WHERE key IN ('sidecar_pg', 'sidecar_token', 'http_timeout_s');
    address := coalesce(address, 'host=127.0.0.1 port=8766');
    shown := replace(replace(address, 'host=', ''), ' port=', ':');
    FOREACH t IN ARRAY texts LOOP
        IF NOT 'mrl_sidecar' = ANY (coalesce(@dblink@.dblink_get_connections(), '{}'))
           OR current_setting('pgmrl.sidecar_key', true) IS DISTINCT FROM mrl_internal._sidecar_key(address, token) THEN
            -- first use in this session, or the sidecar's address or token changed: (re)connect
            PERFORM mrl_internal._sidecar_connect(address, token, timeout_s);
        END IF;
        sent := @dblink@.dblink_send_query('mrl_sidecar', format('SELECT embedding FROM embed(%L, %L, %L)', config, kind, t));
        IF sent <> 1 THEN  -- the connection broke (the sidecar restarted): once more on a new one
            PERFORM mrl_internal._sidecar_connect(address, token, timeout_s);
            sent := @dblink@.dblink_send_query('mrl_sidecar', format('SELECT embedding FROM embed(%L, %L, %L)', config, kind, t));
            IF sent <> 1 THEN
                RAISE EXCEPTION 'pgmrl sidecar at % closed the connection: %', shown,
                    @dblink@.dblink_error_message('mrl_sidecar') USING ERRCODE = 'connection_failure';
            END IF;
        END IF;
        deadline := clock_timestamp() + make_interval(secs => timeout_s);
        WHILE @dblink@.dblink_is_busy('mrl_sidecar') = 1 LOOP
            IF clock_timestamp() > deadline THEN
                PERFORM @dblink@.dblink_cancel_query('mrl_sidecar');
                PERFORM @dblink@.dblink_disconnect('mrl_sidecar');
                RAISE EXCEPTION 'pgmrl sidecar at % did not answer within % s', shown, timeout_s
                    USING ERRCODE = 'query_canceled',
                          HINT = 'Check that `pgmrl serve` runs and is not overloaded; the timeout is mrl.configure_sidecar(..., timeout_s).';
            END IF;
            PERFORM pg_sleep(0.0002);
        END LOOP;
        SELECT r.embedding INTO v FROM @dblink@.dblink_get_result('mrl_sidecar') AS r(embedding text);
        PERFORM FROM @dblink@.dblink_get_result('mrl_sidecar') AS r(embedding text);  -- the end of the query's results
        out := out || v::@vec@.vector;
    END LOOP;
    RETURN out;
END
$fn$;
