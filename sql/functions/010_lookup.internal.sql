-- Internal helpers (schema mrl_internal) of 010_lookup.sql: not part of the API; EXECUTE is granted in 090_privileges.sql.

CREATE OR REPLACE FUNCTION mrl_internal._set(set_slug text)
RETURNS mrl.embedding_sets
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pg_temp
AS $fn$
DECLARE
    s mrl.embedding_sets;
BEGIN
    IF set_slug IS NULL THEN
        RAISE EXCEPTION 'embedding set slug is NULL'
            USING ERRCODE = 'null_value_not_allowed',
                  HINT = 'Pass the slug given to mrl.create_embedding_set(); SELECT slug FROM mrl.embedding_sets lists them.';
    END IF;
    SELECT * INTO s FROM mrl.embedding_sets WHERE slug = set_slug;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'unknown embedding set "%"', set_slug
            USING ERRCODE = 'undefined_object',
                  HINT = format('Known sets: %s. Create one with mrl.create_embedding_set().',
                                coalesce((SELECT string_agg(slug, ', ' ORDER BY slug) FROM mrl.embedding_sets), 'none'));
    END IF;
    RETURN s;
END
$fn$;

CREATE OR REPLACE FUNCTION mrl_internal._config(config_name text)
RETURNS mrl.embedding_configs
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pg_temp
AS $fn$
DECLARE
    c mrl.embedding_configs;
BEGIN
    SELECT * INTO c FROM mrl.embedding_configs
     WHERE name = lower(config_name) OR lower(config_name) = ANY (aliases)
     ORDER BY name = lower(config_name) DESC LIMIT 1;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'unknown embedding config "%"', config_name
            USING ERRCODE = 'undefined_object',
                  HINT = format('Known configs: %s. Register another with INSERT INTO mrl.embedding_configs.',
                                (SELECT string_agg(name, ', ' ORDER BY name) FROM mrl.embedding_configs));
    END IF;
    RETURN c;
END
$fn$;

-- Who sees a set: roles that may read its source, its owner, the worker and the installer.
CREATE OR REPLACE FUNCTION mrl_internal._may_see(source regclass, owner oid DEFAULT NULL)
RETURNS bool
LANGUAGE sql STABLE
SET search_path = pg_catalog, pg_temp
AS $fn$
    SELECT coalesce(has_table_privilege(source, 'SELECT'), false)
        OR (owner IS NOT NULL AND EXISTS (SELECT FROM pg_roles r WHERE r.oid = owner) AND pg_has_role(owner, 'USAGE'))
        OR EXISTS (SELECT FROM pg_roles r WHERE r.rolname = 'pgmrl_worker' AND pg_has_role(r.oid, 'USAGE'))
        OR pg_has_role((SELECT c.relowner FROM pg_class c WHERE c.oid = 'mrl.embedding_sets'::regclass), 'USAGE')
$fn$;

-- Whether the current role owns (is a member of the owner of) a set or config.
CREATE OR REPLACE FUNCTION mrl_internal._owns(owner oid)
RETURNS bool
LANGUAGE sql STABLE
SET search_path = pg_catalog, pg_temp
AS $fn$
    SELECT owner IS NOT NULL AND EXISTS (SELECT FROM pg_roles r WHERE r.oid = owner) AND pg_has_role(owner, 'USAGE')
$fn$;

-- Whether the current role owns the set with this id.
CREATE OR REPLACE FUNCTION mrl_internal._owns_set(set_id int)
RETURNS bool
LANGUAGE sql STABLE
SET search_path = pg_catalog, pg_temp
AS $fn$
    SELECT EXISTS (SELECT FROM mrl.embedding_sets e WHERE e.id = set_id AND mrl_internal._owns(e.owner))
$fn$;

-- The search strategies, named once for SQL (Python names them once too, in pgmrl/strategies.py; a test checks
-- that both agree). The first is the default.
CREATE OR REPLACE FUNCTION mrl_internal._strategies()
RETURNS text[]
LANGUAGE sql IMMUTABLE
SET search_path = pg_catalog, pg_temp
AS $fn$
    SELECT ARRAY['two_stage', 'binary_two_stage', 'hnsw', 'coarse', 'exact']
$fn$;

-- Raises invalid_parameter_value unless `strat` is a strategy (of `allowed`, when given).
CREATE OR REPLACE FUNCTION mrl_internal._check_strategy(strat text, allowed text[] DEFAULT NULL)
RETURNS void
LANGUAGE plpgsql IMMUTABLE
SET search_path = pg_catalog, pg_temp
AS $fn$
DECLARE
    valid text[] := coalesce(allowed, mrl_internal._strategies());
BEGIN
    IF strat IS NULL OR NOT strat = ANY (valid) THEN
        RAISE EXCEPTION 'unknown strategy %', coalesce(quote_literal(strat), 'NULL') USING ERRCODE = 'invalid_parameter_value',
              HINT = format('Use %s.', array_to_string(ARRAY(SELECT quote_literal(v) FROM unnest(valid) v), ', '));
    END IF;
END
$fn$;
