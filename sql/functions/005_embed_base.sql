-- Whether this server can embed text from SQL (plpython3u installed the HTTP client of the sidecar).
CREATE OR REPLACE FUNCTION mrl.sql_embedding_available()
RETURNS bool
LANGUAGE sql STABLE
SET search_path = pg_catalog, pg_temp
AS $fn$
    SELECT EXISTS (SELECT FROM pg_proc p JOIN pg_language l ON l.oid = p.prolang
                    WHERE p.oid = to_regprocedure('mrl_internal._http_embed(text[], text, text)') AND l.lanname = 'plpython3u')
$fn$;
