-- Installed when the server has neither plpython3u nor dblink: SQL cannot reach the sidecar, and says how to search
-- instead.
CREATE OR REPLACE FUNCTION mrl_internal._embed_transport()
RETURNS text
LANGUAGE sql IMMUTABLE
SET search_path = pg_catalog, pg_temp
AS $fn$ SELECT 'none' $fn$;

CREATE OR REPLACE FUNCTION mrl_internal._http_embed(texts text[], config text, kind text)
RETURNS @vec@.vector[]
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $fn$
BEGIN
    RAISE EXCEPTION 'embedding text from SQL needs the dblink or the plpython3u extension, and this server has neither'
        USING ERRCODE = 'feature_not_supported',
              HINT = 'Search with a query vector instead: mrl.two_stage_search(slug, query_vector), with the vector from '
                     '`pgmrl search` / pgmrl.Client.embed() or the sidecar (POST /v1/embed, GET /api/v1/search). '
                     'To enable: install the contrib package (dblink) or postgresql-plpython3-NN, then run `pgmrl install` again.';
END
$fn$;
