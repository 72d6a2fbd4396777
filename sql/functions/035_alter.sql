-- Changing a set's model or coarse dimension without a gap (blue/green): a hidden set is embedded in the
-- background by the ordinary worker while the old vectors keep serving, then takes the set's place atomically.

-- chunking: NULL keeps the set's; '"none"' stops chunking. text_search_config, full_type: NULL keeps the set's
-- (to change only the full vectors' type, mrl.compact_embedding_set converts them in place without re-embedding).
CREATE OR REPLACE FUNCTION mrl.alter_embedding_set(set_slug text, config text DEFAULT NULL, truncate_dim int DEFAULT NULL,
                                                   coarse_method text DEFAULT NULL, chunking jsonb DEFAULT NULL,
                                                   text_search_config text DEFAULT NULL, full_type text DEFAULT NULL)
RETURNS text
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $fn$
DECLARE
    s mrl.embedding_sets := mrl_internal._set(set_slug);
    next_slug text := 'mrl_next_' || s.id;
BEGIN
    IF s.replaces IS NOT NULL THEN
        RAISE EXCEPTION 'set "%" is itself a pending replacement', s.slug USING ERRCODE = 'invalid_parameter_value';
    END IF;
    IF EXISTS (SELECT FROM mrl.embedding_sets WHERE replaces = s.id) THEN
        RAISE EXCEPTION 'set "%" is already being re-embedded', s.slug USING ERRCODE = 'object_in_use',
              HINT = format('Wait for it (SELECT * FROM mrl.set_status(%L)), or cancel: SELECT mrl.drop_embedding_set(%L).', next_slug, next_slug);
    END IF;
    IF config IS NULL AND truncate_dim IS NULL AND coarse_method IS NULL AND chunking IS NULL AND text_search_config IS NULL
       AND full_type IS NULL THEN
        RAISE EXCEPTION 'nothing to change' USING ERRCODE = 'invalid_parameter_value',
              HINT = 'Give a new config, truncate_dim, coarse_method, chunking, text_search_config or full_type.';
    END IF;
    -- The same rules as a new set: validated by create_embedding_set itself.
    PERFORM mrl.create_embedding_set(s.name, next_slug, s.source, s.text_expr, coalesce(config, s.config),
                                     coalesce(truncate_dim, CASE WHEN config IS NULL THEN s.truncate_dim END),
                                     s.on_create, s.on_update,
                                     coalesce(coarse_method, CASE WHEN config IS NULL AND s.coarse_method <> 'none'
                                                                  THEN s.coarse_method END),
                                     'async', coalesce(chunking, s.chunking), coalesce(text_search_config, s.text_search_config),
                                     coalesce(full_type, s.full_type));
    UPDATE mrl.embedding_sets SET replaces = s.id, rotation_min_rows = s.rotation_min_rows WHERE slug = next_slug;
    PERFORM mrl_internal._copy_indexes(s, next_slug);
    RETURN format('re-embedding "%s" as "%s"; the old vectors serve until it is complete, then `pgmrl serve` switches '
                  'it in (or SELECT mrl.switch_embedding_set(%L))', s.slug, next_slug, s.slug);
END
$fn$;

-- Puts the finished replacement in the set's place, in one transaction: same slug, same vectors table name.
CREATE OR REPLACE FUNCTION mrl.switch_embedding_set(set_slug text, force bool DEFAULT false)
RETURNS void
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $fn$
DECLARE
    s mrl.embedding_sets := mrl_internal._set(set_slug);
    n mrl.embedding_sets;
    pending bigint;
    old_table regclass := s.vectors_table;
    ix text;
BEGIN
    PERFORM FROM mrl.embedding_sets WHERE id = s.id FOR UPDATE;
    SELECT * INTO n FROM mrl.embedding_sets WHERE replaces = s.id FOR UPDATE;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'set "%" has no pending replacement', s.slug USING ERRCODE = 'invalid_parameter_value',
              HINT = 'Start one with mrl.alter_embedding_set().';
    END IF;
    SELECT count(*) + coalesce((SELECT sum(cardinality(ids)) FROM mrl.queue_intake WHERE set_id = n.id), 0)
      INTO pending FROM mrl.queue WHERE set_id = n.id AND NOT dead;
    IF pending > 0 AND NOT force THEN
        RAISE EXCEPTION 'the replacement of "%" still has % queued rows', s.slug, pending USING ERRCODE = 'object_not_in_prerequisite_state',
              HINT = 'Let `pgmrl serve` finish, or pass force => true to switch now (missing rows are embedded afterwards).';
    END IF;
    PERFORM mrl_internal._drop_triggers(s);
    PERFORM mrl_internal._drop_triggers(n);
    -- queued work of the replacement continues under the set's id
    UPDATE mrl.queue SET set_id = s.id WHERE set_id = n.id;
    UPDATE mrl.queue_intake SET set_id = s.id WHERE set_id = n.id;
    DELETE FROM mrl.rotation_components WHERE set_id = s.id;
    UPDATE mrl.rotation_components SET set_id = s.id WHERE set_id = n.id;
    IF s.words_table IS NOT NULL AND mrl_internal._words_table_ok(s.words_table, old_table) THEN
        EXECUTE format('DROP TABLE %s', s.words_table);
    END IF;
    EXECUTE format('DROP TABLE %s', old_table);
    EXECUTE format('ALTER TABLE %s RENAME TO %I', n.vectors_table, s.slug);
    EXECUTE format('ALTER TABLE %s RENAME TO %I', n.words_table, s.slug);
    FOR ix IN SELECT index_name FROM mrl.search_indexes(n.slug) LOOP
        CONTINUE WHEN to_regclass(format('mrl_data.%I', ix)) IS NULL;
        EXECUTE format('ALTER INDEX mrl_data.%I RENAME TO %I', ix, s.slug || substr(ix, length(n.slug) + 1));
    END LOOP;
    EXECUTE format('ALTER INDEX mrl_words.%I RENAME TO %I', n.slug || '_fts', s.slug || '_fts');
    UPDATE mrl.embedding_sets
       SET config = n.config, dims = n.dims, truncate_dim = n.truncate_dim, coarse_method = n.coarse_method,
           vectors_table = n.vectors_table, rotation_version = n.rotation_version, rotation_rows = n.rotation_rows,
           rotation_fitted_at = n.rotation_fitted_at, rotation_requested_at = n.rotation_requested_at,
           chunking = n.chunking, text_search_config = n.text_search_config, full_type = n.full_type,
           words_table = n.words_table
     WHERE id = s.id;
    PERFORM mrl_internal._reset_tuning(s, n);
    DELETE FROM mrl.embedding_sets WHERE id = n.id;
    PERFORM mrl_internal._create_triggers(e) FROM mrl.embedding_sets e WHERE e.id = s.id;
    PERFORM pg_notify('mrl_queue', s.id::text);
END
$fn$;
