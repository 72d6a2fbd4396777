-- The sidecar reached through dblink, for servers without plpython3u (the embedded default, managed services): the
-- sidecar answers the PostgreSQL protocol (`pgmrl serve --pg-port`), so dblink asks it
-- `SELECT embedding FROM embed(config, kind, text)`. Every wait is bounded by http_timeout_s: a sidecar that is down is
-- an error naming its address, never a hang. The token is the connection's password (in mrl.settings, which only the
-- schema's owner reads: hence SECURITY DEFINER).
--
-- Who else could use the connection: dblink's connections belong to the session, not to a role, so whoever may call
-- dblink's functions in the same session could replace or read through a connection left open. pgmrl installs dblink
-- in its own schema, mrl_dblink, closed to PUBLIC: then one connection per session stays open between calls (named
-- after a digest of the address and token, so a changed token opens a new one). When dblink was already installed
-- elsewhere (@dblink_shared@), every call opens its connection and closes it before returning, errors included.
CREATE OR REPLACE FUNCTION mrl_internal._embed_transport()
RETURNS text
LANGUAGE sql IMMUTABLE
SET search_path = pg_catalog, pg_temp
AS $fn$ SELECT 'dblink' $fn$;

DO $private$
BEGIN
    IF '@dblink@' = 'mrl_dblink' THEN
        REVOKE ALL ON SCHEMA mrl_dblink FROM PUBLIC;
        REVOKE EXECUTE ON ALL FUNCTIONS IN SCHEMA mrl_dblink FROM PUBLIC;
    END IF;
END
$private$;

-- A libpq connection-string value: quoted, with \ and ' escaped the way libpq reads them.
CREATE OR REPLACE FUNCTION mrl_internal._conninfo_value(v text)
RETURNS text
LANGUAGE sql IMMUTABLE
SET search_path = pg_catalog, pg_temp
AS $fn$ SELECT '''' || replace(replace(coalesce(v, ''), '\', '\\'), '''', '\''') || '''' $fn$;

-- A standard-conforming SQL string literal (quotes doubled; backslashes are plain characters, as the endpoint reads
-- them).
CREATE OR REPLACE FUNCTION mrl_internal._sql_string(v text)
RETURNS text
LANGUAGE sql IMMUTABLE
SET search_path = pg_catalog, pg_temp
AS $fn$ SELECT '''' || replace(v, '''', '''''') || '''' $fn$;

CREATE OR REPLACE FUNCTION mrl_internal._http_embed(texts text[], config text, kind text)
RETURNS @vec@.vector[]
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $fn$
DECLARE
    shared constant bool := @dblink_shared@;
    address text;
    token text;
    timeout_s numeric;
    shown text;
    conn text;
    conninfo text;
    detail text;
    deadline timestamptz;
    t text;
    v text;
    stmt text;
    out @vec@.vector[] := '{}';
BEGIN
    IF texts IS NULL OR cardinality(texts) = 0 THEN
        RETURN out;
    END IF;
    SELECT max(value) FILTER (WHERE key = 'sidecar_pg'), max(value) FILTER (WHERE key = 'sidecar_token'),
           coalesce(max(value) FILTER (WHERE key = 'http_timeout_s'), '30')::numeric
      INTO address, token, timeout_s
      FROM mrl.settings WHERE key IN ('sidecar_pg', 'sidecar_token', 'http_timeout_s');
    address := coalesce(address, 'host=127.0.0.1 port=8766');  -- (configure_sidecar_pg checked host and port)
    shown := replace(replace(address, 'host=', ''), ' port=', ':');
    conn := 'mrl_' || left(encode(sha256(convert_to(address || E'\n' || coalesce(token, ''), 'UTF8')), 'hex'), 24);
    -- SCRAM only where libpq can insist on it (16+): a server that asks for the password in clear gets nothing
    conninfo := format('%s user=pgmrl dbname=pgmrl password=%s connect_timeout=%s application_name=pgmrl%s', address,
                       mrl_internal._conninfo_value(token), greatest(1, ceil(timeout_s))::int,
                       CASE WHEN current_setting('server_version_num')::int >= 160000
                            THEN ' require_auth=scram-sha-256' ELSE '' END);
    BEGIN
        -- connections of an earlier address or token go; this one is opened when missing
        PERFORM @dblink@.dblink_disconnect(c) FROM unnest(coalesce(@dblink@.dblink_get_connections(), '{}')) c
          WHERE c LIKE 'mrl\_%' AND c <> conn;
        FOREACH t IN ARRAY texts LOOP
            stmt := format('SELECT embedding FROM embed(%s, %s, %s)', mrl_internal._sql_string(config),
                           mrl_internal._sql_string(kind), mrl_internal._sql_string(t));
            IF NOT conn = ANY (coalesce(@dblink@.dblink_get_connections(), '{}'))
               OR @dblink@.dblink_send_query(conn, stmt) <> 1 THEN  -- first use, or the connection broke
                IF conn = ANY (coalesce(@dblink@.dblink_get_connections(), '{}')) THEN
                    PERFORM @dblink@.dblink_disconnect(conn);
                END IF;
                BEGIN
                    PERFORM @dblink@.dblink_connect(conn, conninfo);
                EXCEPTION WHEN sqlclient_unable_to_establish_sqlconnection OR invalid_password
                               OR invalid_authorization_specification THEN
                    GET STACKED DIAGNOSTICS detail = PG_EXCEPTION_DETAIL;
                    IF token <> '' AND position(token IN coalesce(detail, '')) > 0 THEN
                        detail := 'the connection string was refused';  -- never echo the token
                    END IF;
                    IF detail ~* 'password|authentication|SCRAM' THEN
                        RAISE EXCEPTION 'pgmrl sidecar at % refused the token', shown
                            USING ERRCODE = 'invalid_authorization_specification',
                                  HINT = 'Set the sidecar''s token with `pgmrl configure --token ...` (same as PGMRL_TOKEN).';
                    END IF;
                    RAISE EXCEPTION 'pgmrl sidecar at % is not reachable (%)', shown, coalesce(nullif(detail, ''), SQLERRM)
                        USING ERRCODE = 'connection_exception',
                              HINT = 'Start it with `pgmrl serve --pg-port 8766` (it records its address in mrl.settings), '
                                     'or point the database at it with SELECT mrl.configure_sidecar_pg(host, port).';
                END;
                IF @dblink@.dblink_send_query(conn, stmt) <> 1 THEN
                    RAISE EXCEPTION 'pgmrl sidecar at % closed the connection', shown USING ERRCODE = 'connection_failure';
                END IF;
            END IF;
            deadline := clock_timestamp() + make_interval(secs => timeout_s);
            WHILE @dblink@.dblink_is_busy(conn) = 1 LOOP
                IF clock_timestamp() > deadline THEN
                    RAISE EXCEPTION 'pgmrl sidecar at % did not answer within % s', shown, timeout_s
                        USING ERRCODE = 'query_canceled',
                              HINT = 'Check that `pgmrl serve` runs and is not overloaded; the timeout is mrl.configure_sidecar(..., timeout_s).';
                END IF;
                PERFORM pg_sleep(0.0002);
            END LOOP;
            SELECT r.embedding INTO v FROM @dblink@.dblink_get_result(conn) AS r(embedding text);
            PERFORM FROM @dblink@.dblink_get_result(conn) AS r(embedding text);  -- the end of the query's results
            out := out || v::@vec@.vector;
        END LOOP;
    EXCEPTION WHEN OTHERS THEN
        -- a connection in an unknown state is never reused; with a shared dblink none outlives the call
        IF conn = ANY (coalesce(@dblink@.dblink_get_connections(), '{}')) THEN
            PERFORM @dblink@.dblink_disconnect(conn);
        END IF;
        RAISE;
    END;
    IF shared THEN
        PERFORM @dblink@.dblink_disconnect(conn);
    END IF;
    RETURN out;
END
$fn$;
