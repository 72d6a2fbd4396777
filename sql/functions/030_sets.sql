-- Embedding sets: creation, removal, the rotation request (change capture: 027, checks: 028).

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
    mode text DEFAULT 'async',
    chunking jsonb DEFAULT NULL,
    text_search_config text DEFAULT 'english',
    full_type text DEFAULT 'halfvec'
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
    wt regclass;
    chunks jsonb;
    ts_config text := mrl_internal._check_ts_config(text_search_config);
    ftype text := mrl_internal._check_full_type(full_type);
    distributed bool;
BEGIN
    PERFORM mrl_internal._check_new_set(name, slug, mode);
    PERFORM mrl_internal._check_source(source);
    c := mrl_internal._config(config);
    IF mode = 'sync' AND NOT mrl.sql_embedding_available() THEN
        RAISE EXCEPTION 'sync mode needs SQL that can embed text (the plpython3u or the dblink extension), which this server does not have'
            USING ERRCODE = 'feature_not_supported',
                  HINT = 'Use mode => ''async'' (the sidecar embeds queued rows within seconds), or install the contrib package (dblink) or postgresql-plpython3-NN and run `pgmrl install` again.';
    END IF;
    key := mrl_internal._source_key(source);
    distributed := mrl_internal._check_citus_source(source, key.pk_col, mode, chunking);
    PERFORM mrl_internal._check_readable(source);  -- (the text expression itself: by the registry's trigger, below)
    plan := mrl_internal._coarse_plan(c, truncate_dim, coarse_method);
    chunks := mrl_internal._check_chunking(chunking, c);
    IF chunks IS NOT NULL AND mode = 'sync' THEN
        RAISE EXCEPTION 'a chunked set cannot use sync mode' USING ERRCODE = 'feature_not_supported',
              HINT = 'Use mode => ''async'': the worker cuts the texts with the model''s own tokenizer.';
    END IF;

    vt := mrl_internal._create_vectors_table(slug, source, key.pk_col, key.pk_typ, c.dims, plan.tdim, chunks IS NOT NULL, ftype);
    wt := mrl_internal._create_words_table(slug, vt, key.pk_typ, chunks IS NOT NULL);
    IF distributed THEN
        PERFORM mrl_internal._distribute_set_tables(source, key.pk_col, vt, wt);
    END IF;
    INSERT INTO mrl.embedding_sets (name, slug, source, pk_column, pk_type, text_expr, config, dims, truncate_dim,
                                    coarse_method, on_create, on_update, mode, vectors_table, chunking, text_search_config,
                                    full_type, words_table)
    VALUES (name, slug, source, key.pk_col, key.pk_typ, text_column, c.name, c.dims, plan.tdim, plan.method,
            on_create, on_update, mode, vt, chunks, ts_config, ftype, wt)
    RETURNING * INTO s;  -- embedding_sets_check validated and canonicalised the text expression
    IF plan.method <> 'none' THEN
        EXECUTE format('CREATE INDEX %I ON %s USING hnsw (coarse @vec@.halfvec_cosine_ops)', slug || '_coarse_hnsw', vt);
    END IF;
    EXECUTE format('COMMENT ON TABLE %s IS %L', vt, format('pgmrl vectors of embedding set %s (%s)', slug, c.name));
    EXECUTE format('COMMENT ON TABLE %s IS %L', wt, format('pgmrl full-text words of embedding set %s', slug));
    PERFORM mrl_internal._protect_vectors(source, vt);
    PERFORM mrl_internal._protect_vectors(source, wt);
    PERFORM mrl_internal._grant_worker(source, vt);
    IF EXISTS (SELECT FROM pg_roles WHERE rolname = 'pgmrl_worker') THEN
        EXECUTE format('GRANT SELECT, INSERT, UPDATE, DELETE ON %s TO pgmrl_worker', wt);
    END IF;
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

-- The words table of a set (in schema mrl_words): a sync-mode writer needs INSERT, UPDATE, DELETE on it as on the
-- vectors table.
CREATE OR REPLACE FUNCTION mrl.words_table(set_slug text)
RETURNS regclass
LANGUAGE sql STABLE
SET search_path = pg_catalog, pg_temp
AS $fn$ SELECT (mrl_internal._set(set_slug)).words_table $fn$;

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
    IF s.words_table IS NOT NULL AND mrl_internal._words_table_ok(s.words_table, s.vectors_table) THEN
        EXECUTE format('DROP TABLE %s', s.words_table);
    END IF;
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
