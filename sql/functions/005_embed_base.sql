-- Whether this server can embed text from SQL: plpython3u (the sidecar's HTTP API) or dblink (the sidecar's
-- PostgreSQL-protocol endpoint) installed mrl_internal._http_embed; without either, the fallback says what to do.
CREATE OR REPLACE FUNCTION mrl.sql_embedding_available()
RETURNS bool
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pg_temp
AS $fn$
BEGIN
    RETURN to_regprocedure('mrl_internal._embed_transport()') IS NOT NULL AND mrl_internal._embed_transport() <> 'none';
END
$fn$;
