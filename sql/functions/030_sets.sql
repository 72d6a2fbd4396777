-- Embedding sets: creation, removal, the rotation request (change capture: 027, checks: 028).

-- create_embedding_set's steps, in the order it takes them.

-- 1. The arguments that need no catalog: slug, name, mode, and that the slug is free.
CREATE OR REPLACE FUNCTION mrl_internal._check_new_set(name text, slug text, mode text)
RETURNS void
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pg_temp
AS $fn$
BEGIN
    IF slug IS NULL OR slug !~ '^[a-z][a-z0-9_]{0,39}$' THEN
        RAISE EXCEPTION 'invalid slug %', coalesce(quote_literal(slug), 'NULL')
            USING ERRCODE = 'invalid_parameter_value',
                  HINT = 'A slug is 1-40 characters: a lower-case letter, then lower-case letters, digits or _. The free-text name can be anything.';
    END IF;
    IF name IS NULL OR btrim(name) = '' THEN
        RAISE EXCEPTION 'embedding set name is empty' USING ERRCODE = 'invalid_parameter_value',
              HINT = 'Give a human-readable name, e.g. ''Product descriptions''.';
    END IF;
    IF EXISTS (SELECT FROM mrl.embedding_sets e WHERE e.slug = _check_new_set.slug)
       OR to_regclass(format('%I.%I', 'mrl_data', slug)) IS NOT NULL THEN
        RAISE EXCEPTION 'embedding set "%" already exists', slug USING ERRCODE = 'duplicate_object',
              HINT = 'Choose another slug, or drop it first with mrl.drop_embedding_set().';
    END IF;
    IF mode IS NULL OR mode NOT IN ('async', 'sync') THEN
        RAISE EXCEPTION 'unknown mode %', coalesce(quote_literal(mode), 'NULL') USING ERRCODE = 'invalid_parameter_value',
              HINT = '''async'' (default) queues changes for the sidecar; ''sync'' embeds inside the writing transaction (needs plpython3u and a running sidecar).';
    END IF;
END
$fn$;

-- 2. The source's key: one column, of a built-in type (the vectors table's key copies its type).
CREATE OR REPLACE FUNCTION mrl_internal._source_key(source regclass, OUT pk_col name, OUT pk_typ text)
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pg_temp
AS $fn$
DECLARE
    n_pk int;
BEGIN
    SELECT count(*) INTO n_pk FROM pg_index i, unnest(i.indkey) WHERE i.indrelid = source AND i.indisprimary;
    IF n_pk = 0 THEN
        RAISE EXCEPTION 'table % has no primary key', source USING ERRCODE = 'invalid_table_definition',
              HINT = format('Add one, e.g. ALTER TABLE %s ADD COLUMN id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY.', source);
    ELSIF n_pk > 1 THEN
        RAISE EXCEPTION 'table % has a composite primary key', source USING ERRCODE = 'invalid_table_definition',
              HINT = 'pgmrl needs a single-column primary key: add a surrogate key column (bigint identity or uuid) with a unique constraint.';
    END IF;
    SELECT a.attname, format_type(a.atttypid, a.atttypmod) INTO pk_col, pk_typ
      FROM pg_index i JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = i.indkey[0]
     WHERE i.indrelid = source AND i.indisprimary;
    PERFORM mrl_internal._check_columns(source, ARRAY[pk_col], 'primary key');
END
$fn$;

-- 3. The MRL rules: which coarse vector the set keeps ('prefix' of an MRL model, a fitted 'rotation', or 'none',
-- whose tdim is NULL) and its dimension.
CREATE OR REPLACE FUNCTION mrl_internal._coarse_plan(c mrl.embedding_configs, truncate_dim int, coarse_method text,
                                                     OUT method text, OUT tdim int)
LANGUAGE plpgsql IMMUTABLE
SET search_path = pg_catalog, pg_temp
AS $fn$
BEGIN
    tdim := truncate_dim;
    IF tdim IS NOT NULL AND (tdim <= 0 OR tdim >= c.dims) THEN
        RAISE EXCEPTION 'truncate_dim % is out of range for % (% dimensions)', tdim, c.name, c.dims
            USING ERRCODE = 'invalid_parameter_value',
                  HINT = CASE WHEN c.supports_mrl
                              THEN format('Use one of its Matryoshka dimensions below %s: %s, or NULL for the default %s.',
                                          c.dims, array_to_string(array(SELECT d FROM unnest(c.matryoshka_dims) d WHERE d < c.dims ORDER BY d DESC), ', '), c.default_truncate_dim)
                              ELSE format('Use a value between 1 and %s (e.g. 128), or NULL to store full vectors only.', c.dims - 1) END;
    END IF;
    IF coarse_method IS NOT NULL AND coarse_method NOT IN ('prefix', 'rotation') THEN
        RAISE EXCEPTION 'unknown coarse_method %', quote_literal(coarse_method) USING ERRCODE = 'invalid_parameter_value',
              HINT = 'Use ''prefix'' (MRL models) or ''rotation'' (fitted PCA rotation), or leave it NULL to choose by model.';
    END IF;
    IF c.supports_mrl THEN
        tdim := coalesce(tdim, c.default_truncate_dim);
        method := coalesce(coarse_method, 'prefix');
        IF method = 'prefix' AND NOT tdim = ANY (c.matryoshka_dims) THEN
            RAISE EXCEPTION 'truncate_dim % is not a Matryoshka dimension of %', tdim, c.name
                USING ERRCODE = 'invalid_parameter_value',
                      HINT = format('%s was trained for: %s. Pick one of those (default %s).', c.name,
                                    array_to_string(c.matryoshka_dims, ', '), c.default_truncate_dim);
        END IF;
    ELSIF tdim IS NULL THEN
        IF coarse_method IS NOT NULL THEN
            RAISE EXCEPTION 'coarse_method % needs a truncate_dim', quote_literal(coarse_method) USING ERRCODE = 'invalid_parameter_value',
                  HINT = 'Give truncate_dim (e.g. 128) to keep a coarse vector.';
        END IF;
        method := 'none';
    ELSE
        IF coarse_method = 'prefix' THEN
            RAISE EXCEPTION 'raw prefix truncation of % is refused: it was not trained with Matryoshka loss', c.name
                USING ERRCODE = 'invalid_parameter_value',
                      HINT = 'Leave coarse_method NULL so pgmrl fits a PCA rotation on the set''s vectors and truncates the rotated vector, or use an MRL model (e.g. nomic-embed-text-v1.5).';
        END IF;
        method := 'rotation';
    END IF;
END
$fn$;

-- 4. Storage. The key has the source key's type and follows it (cascade on delete and on key change).
CREATE OR REPLACE FUNCTION mrl_internal._create_vectors_table(slug text, source regclass, pk_col name, pk_typ text,
                                                              dims int, tdim int)
RETURNS regclass
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $fn$
DECLARE
    vname text := format('%I.%I', 'mrl_data', slug);
BEGIN
    EXECUTE format(
        'CREATE TABLE %s (
             id %s PRIMARY KEY REFERENCES %s (%I) ON DELETE CASCADE ON UPDATE CASCADE,
             embedding @vec@.vector(%s) NOT NULL,
             coarse @vec@.halfvec%s,
             content_hash text NOT NULL,
             embedded_at timestamptz NOT NULL DEFAULT now(),
             truncated bool NOT NULL DEFAULT false)',
        vname, pk_typ, source, pk_col, dims, CASE WHEN tdim IS NULL THEN '' ELSE format('(%s)', tdim) END);
    RETURN vname::regclass;
END
$fn$;

-- 5. Backfill: queue every existing row with text (the expression as the registry's trigger stored it).
CREATE OR REPLACE FUNCTION mrl_internal._backfill(s mrl.embedding_sets)
RETURNS void
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $fn$
BEGIN
    EXECUTE format('INSERT INTO mrl.queue (set_id, id) SELECT $1, (mrl_src.%I)::text FROM ONLY %s mrl_src WHERE coalesce((%s)::text, '''') <> ''''',
                   s.pk_column, s.source, s.text_expr) USING s.id;
    PERFORM pg_notify('mrl_queue', s.id::text);
END
$fn$;

CREATE OR REPLACE FUNCTION mrl.create_embedding_set(
    name text,
    slug text,
    source regclass,
    text_column text,
    config text DEFAULT 'all-minilm-l6-v2',
    truncate_dim int DEFAULT NULL,
    on_create bool DEFAULT true,
    on_update bool DEFAULT true,
    coarse_method text DEFAULT NULL,
    mode text DEFAULT 'async'
)
RETURNS regclass
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
SET DateStyle = 'ISO, MDY' SET IntervalStyle = 'postgres' SET extra_float_digits = 1 SET TimeZone = 'UTC' SET bytea_output = 'hex'
AS $fn$
DECLARE
    c mrl.embedding_configs;
    key record;
    plan record;
    s mrl.embedding_sets;
    vt regclass;
BEGIN
    PERFORM mrl_internal._check_new_set(name, slug, mode);
    PERFORM mrl_internal._check_source(source);
    c := mrl_internal._config(config);
    IF mode = 'sync' AND NOT mrl.sql_embedding_available() THEN
        RAISE EXCEPTION 'sync mode needs the plpython3u extension, which this server does not have'
            USING ERRCODE = 'feature_not_supported',
                  HINT = 'Use mode => ''async'' (the sidecar embeds queued rows within seconds), or install postgresql-plpython3-NN and run `pgmrl install` again.';
    END IF;
    key := mrl_internal._source_key(source);
    PERFORM mrl_internal._check_readable(source);  -- (the text expression itself: by the registry's trigger, below)
    plan := mrl_internal._coarse_plan(c, truncate_dim, coarse_method);

    vt := mrl_internal._create_vectors_table(slug, source, key.pk_col, key.pk_typ, c.dims, plan.tdim);
    INSERT INTO mrl.embedding_sets (name, slug, source, pk_column, pk_type, text_expr, config, dims, truncate_dim,
                                    coarse_method, on_create, on_update, mode, vectors_table)
    VALUES (name, slug, source, key.pk_col, key.pk_typ, text_column, c.name, c.dims, plan.tdim, plan.method,
            on_create, on_update, mode, vt)
    RETURNING * INTO s;  -- embedding_sets_check validated and canonicalised the text expression
    IF plan.method <> 'none' THEN
        EXECUTE format('CREATE INDEX %I ON %s USING hnsw (coarse @vec@.halfvec_cosine_ops)', slug || '_coarse_hnsw', vt);
    END IF;
    EXECUTE format('COMMENT ON TABLE %s IS %L', vt, format('pgmrl vectors of embedding set %s (%s)', slug, c.name));
    PERFORM mrl_internal._protect_vectors(source, vt);
    PERFORM mrl_internal._grant_worker(source, vt);
    PERFORM mrl_internal._create_triggers(s);
    PERFORM mrl_internal._backfill(s);
    IF plan.method = 'rotation' THEN
        RAISE NOTICE 'set "%": % is not an MRL model; the coarse vector uses a PCA rotation that pgmrl fits once % rows are embedded (or on SELECT mrl.refit_rotation(%)). Until then searches are exact.',
            slug, c.name, s.rotation_min_rows, quote_literal(slug);
    END IF;
    RETURN vt;
END
$fn$;

CREATE OR REPLACE FUNCTION mrl.vectors_table(set_slug text)
RETURNS regclass
LANGUAGE sql STABLE
SET search_path = pg_catalog, pg_temp
AS $fn$ SELECT (mrl_internal._set(set_slug)).vectors_table $fn$;

CREATE OR REPLACE FUNCTION mrl.drop_embedding_set(set_slug text)
RETURNS void
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $fn$
DECLARE
    s mrl.embedding_sets := mrl_internal._set(set_slug);
    pending text;
BEGIN
    -- a re-embedding in progress (mrl.alter_embedding_set) goes with it
    FOR pending IN SELECT slug FROM mrl.embedding_sets WHERE replaces = s.id LOOP
        PERFORM mrl.drop_embedding_set(pending);
    END LOOP;
    PERFORM mrl_internal._drop_triggers(s);
    EXECUTE format('DROP TABLE IF EXISTS %s', s.vectors_table);
    DELETE FROM mrl.queue WHERE set_id = s.id;
    DELETE FROM mrl.queue_intake WHERE set_id = s.id;
    DELETE FROM mrl.embedding_sets WHERE id = s.id;
END
$fn$;

-- Ask the sidecar to (re)fit the set's PCA rotation; `pgmrl refit` does it at once.
CREATE OR REPLACE FUNCTION mrl.refit_rotation(set_slug text)
RETURNS text
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $fn$
DECLARE
    s mrl.embedding_sets := mrl_internal._set(set_slug);
BEGIN
    IF s.coarse_method <> 'rotation' THEN
        RAISE EXCEPTION 'set "%" does not use a rotation (coarse method: %)', s.slug, s.coarse_method
            USING ERRCODE = 'invalid_parameter_value',
                  HINT = 'Only sets of non-MRL models with a truncate_dim keep a fitted rotation.';
    END IF;
    UPDATE mrl.embedding_sets SET rotation_requested_at = clock_timestamp() WHERE id = s.id;
    PERFORM pg_notify('mrl_queue', s.id::text);
    RETURN format('rotation refit of "%s" requested: a running `pgmrl serve` fits it within seconds (or run `pgmrl refit %s` now)', s.slug, s.slug);
END
$fn$;
