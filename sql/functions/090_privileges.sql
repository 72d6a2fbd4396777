-- Privileges: every table, view and function has a decided privilege (README, "Security model").
--
--   PUBLIC        reads the model registry; sees (mrl.embedding_sets, mrl.queue_status, rotation data) and searches
--                 only the sets whose source table it may SELECT; calls the public mrl.* functions. It cannot write
--                 to any pgmrl table: writers of a source reach the queue only through the SECURITY DEFINER triggers.
--   pgmrl_admin   creates, alters and drops sets over tables it owns (and may read), registers configs, manages the
--                 queue (retry, drop). NOLOGIN: GRANT it to the roles that manage sets. The installer is one too.
--   pgmrl_worker  what `pgmrl serve` needs: reads queued keys and the sources' texts, writes vectors and rotations,
--                 records the sidecar's URL. NOLOGIN: GRANT it to the login the sidecar uses.
-- The roles are created when the installer may create roles; without them, only the installer manages sets.

DO $roles$
BEGIN
    IF EXISTS (SELECT FROM pg_roles WHERE rolname = current_user AND (rolsuper OR rolcreaterole)) THEN
        IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'pgmrl_worker') THEN
            CREATE ROLE pgmrl_worker NOLOGIN;
        END IF;
        IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'pgmrl_admin') THEN
            CREATE ROLE pgmrl_admin NOLOGIN;
        END IF;
        COMMENT ON ROLE pgmrl_worker IS 'pgmrl embedding worker: reads queued source rows, writes their vectors';
        COMMENT ON ROLE pgmrl_admin IS 'pgmrl set administrators: create, alter and drop embedding sets over their own tables';
    ELSIF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'pgmrl_worker') THEN
        RAISE NOTICE 'pgmrl: cannot create the roles pgmrl_worker and pgmrl_admin (needs CREATEROLE); the worker will need the installer''s privileges';
    END IF;
END
$roles$;

-- Schemas.
REVOKE ALL ON SCHEMA mrl, mrl_data, mrl_words, mrl_internal FROM PUBLIC;
GRANT USAGE ON SCHEMA mrl, mrl_data, mrl_words, mrl_internal TO PUBLIC;

-- Tables: nothing for PUBLIC but reading the registry (row-level security narrows it to readable sources).
REVOKE ALL ON ALL TABLES IN SCHEMA mrl FROM PUBLIC;
REVOKE ALL ON ALL SEQUENCES IN SCHEMA mrl FROM PUBLIC;
GRANT SELECT ON mrl.embedding_configs, mrl.embedding_sets, mrl.rotation_components, mrl.queue_status, mrl.failed_items,
                mrl.migrations, mrl.install_record TO PUBLIC;  -- any login may check the schema's version

DROP POLICY IF EXISTS mrl_readers ON mrl.embedding_sets;
CREATE POLICY mrl_readers ON mrl.embedding_sets FOR SELECT USING (mrl_internal._may_see(source, owner));
DROP POLICY IF EXISTS mrl_readers ON mrl.rotation_components;
CREATE POLICY mrl_readers ON mrl.rotation_components FOR SELECT
    USING (EXISTS (SELECT FROM mrl.embedding_sets e WHERE e.id = set_id));
DROP POLICY IF EXISTS mrl_readers ON mrl.embedding_configs;
CREATE POLICY mrl_readers ON mrl.embedding_configs FOR SELECT USING (true);

-- Registered configs belong to the role that registered them (set by this trigger, not by the writer).
CREATE OR REPLACE FUNCTION mrl_internal._check_config_row()
RETURNS trigger
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $fn$
BEGIN
    IF TG_OP = 'INSERT' THEN
        NEW.owner := (SELECT oid FROM pg_roles WHERE rolname = current_user);
    ELSE
        NEW.owner := OLD.owner;
    END IF;
    RETURN NEW;
END
$fn$;
DROP TRIGGER IF EXISTS embedding_configs_owner ON mrl.embedding_configs;
CREATE TRIGGER embedding_configs_owner BEFORE INSERT OR UPDATE ON mrl.embedding_configs
    FOR EACH ROW EXECUTE FUNCTION mrl_internal._check_config_row();

-- Functions: EXECUTE on the public API for everyone; internal helpers only where an invoker-rights public function
-- needs them; worker helpers for the worker; the SECURITY DEFINER triggers for set administrators (who create them).
REVOKE EXECUTE ON ALL FUNCTIONS IN SCHEMA mrl, mrl_internal FROM PUBLIC;
GRANT EXECUTE ON ALL FUNCTIONS IN SCHEMA mrl TO PUBLIC;
GRANT EXECUTE ON FUNCTION
    mrl_internal._set(text), mrl_internal._config(text), mrl_internal._first_normal_oid(),
    mrl_internal._check_columns(regclass, name[], text), mrl_internal._text_expr(regclass, text),
    mrl_internal._check_readable(regclass),
    mrl_internal._check_source(regclass), mrl_internal._may_see(regclass, oid), mrl_internal._owns(oid),
    mrl_internal._vector_text(text), mrl_internal._query_vector(text, text), mrl_internal._trusted_object(oid, oid), mrl_internal._vectors_problem(regclass), mrl_internal._policies_tampered(regclass),
    mrl_internal._planner_code(regclass, bool), mrl_internal._read_unsafe(regclass), mrl_internal._source_problem(regclass), mrl_internal._owns_set(int),
    mrl_internal._tables_problem(mrl.embedding_sets), mrl_internal._check_tables(mrl.embedding_sets),
    mrl_internal._trigger_set(text, oid, name, text, text, text, regproc),
    mrl_internal._changed_rows(mrl.embedding_sets, text),
    mrl_internal._filter_sql(mrl.embedding_sets, jsonb, int), mrl_internal._coarse_dim(mrl.embedding_sets, int),
    mrl_internal._require_index(mrl.embedding_sets, text), mrl_internal._ef_search(mrl.embedding_sets, text, int, int),
    mrl_internal._scan_settings(int, bool), mrl_internal._restore_scan_settings(text[]),
    mrl_internal._two_stage_default(text), mrl_internal._http_embed(text[], text, text), mrl_internal._embed_transport(),
    mrl_internal._reset_tuning(mrl.embedding_sets, mrl.embedding_sets), mrl_internal._strategies(), mrl_internal._check_strategy(text, text[]),
    mrl_internal._check_new_set(text, text, text), mrl_internal._source_key(regclass),
    mrl_internal._coarse_plan(mrl.embedding_configs, int, text), mrl_internal._backfill(mrl.embedding_sets),
    mrl_internal._create_vectors_table(text, regclass, name, text, int, int, bool, text), mrl_internal._check_full_type(text),
    mrl_internal._words_table_ok(regclass, regclass), mrl_internal._lock_and_check(mrl.embedding_sets, text),
    mrl_internal._owns_table(regclass), mrl_internal._cluster(regclass),
    mrl_internal._create_words_table(text, regclass, text, bool),
    mrl_internal._check_chunking(jsonb, mrl.embedding_configs), mrl_internal._check_ts_config(text),
    mrl_internal._search_chunked(mrl.embedding_sets, @vec@.vector, int, text, int, int, jsonb),
    mrl_internal._text_ranks(mrl.embedding_sets, text, int, jsonb),
    mrl_internal._check_query(mrl.embedding_sets, @vec@.vector, int), mrl_internal._candidates(mrl.embedding_sets, text, int, int),
    mrl_internal._check_searchable(mrl.embedding_sets, bool), mrl_internal._stage1_distance(mrl.embedding_sets, text, int),
    mrl_internal._search_sql(text, text, text),
    mrl_internal._sample_queries(mrl.embedding_sets, int, double precision),
    mrl_internal._run_queries(text, @vec@.vector[], int, text, int), mrl_internal._agreement(jsonb, jsonb),
    mrl_internal._agreement_low(jsonb, jsonb),
    mrl_internal._citus_kind(regclass), mrl_internal._is_distributed(regclass),
    mrl_internal._check_citus_source(regclass, name, text, jsonb), mrl_internal._check_citus_owners(mrl.embedding_sets)
  TO PUBLIC;
-- (mrl_internal._distribute_set_tables: only superusers reach it, through create_embedding_set; no grant)

DO $grants$
DECLARE
    s record;
    t text;
BEGIN
    IF (SELECT count(*) FROM pg_roles WHERE rolname IN ('pgmrl_worker', 'pgmrl_admin')) < 2 THEN
        RETURN;
    END IF;
    -- the worker
    GRANT SELECT, INSERT, UPDATE, DELETE ON mrl.queue TO pgmrl_worker;
    GRANT SELECT, INSERT, UPDATE, DELETE ON mrl.queue_intake TO pgmrl_worker;  -- (INSERT: keys moved from Citus nodes)
    GRANT USAGE ON SEQUENCE mrl.queue_intake_bid_seq TO pgmrl_worker;
    GRANT USAGE ON SEQUENCE mrl.queue_qid_seq TO pgmrl_worker;
    GRANT SELECT ON mrl.settings TO pgmrl_worker;
    GRANT UPDATE (rotation_version, rotation_rows, rotation_fitted_at, rotation_requested_at) ON mrl.embedding_sets TO pgmrl_worker;
    GRANT SELECT, INSERT, DELETE ON mrl.rotation_components TO pgmrl_worker;
    GRANT EXECUTE ON FUNCTION
        mrl_internal._fetch_texts(int, text[]), mrl_internal._apply_batch(int, bigint[], text[], text[], @vec@.vector[], bool[], int[], int[], int[]),
        mrl_internal._fail_items(bigint[], text, int), mrl_internal._expand_intake(int), mrl_internal._rotation_due(),
        mrl_internal._sample_embeddings(int, int), mrl_internal._store_rotation(int, @vec@.vector[], double precision[], bigint),
        mrl_internal._rewrite_coarse(mrl.embedding_sets), mrl_internal._compact_after_refit(int),
        mrl_internal._switch_due()
      TO pgmrl_worker;
    -- the worker serves every set; an administrator changes only its own sets, their rotations and queued work,
    -- and its own configs (never the built-in ones)
    DROP POLICY IF EXISTS mrl_service ON mrl.embedding_sets;
    DROP POLICY IF EXISTS mrl_service ON mrl.rotation_components;
    FOREACH t IN ARRAY ARRAY['mrl.embedding_sets', 'mrl.rotation_components', 'mrl.queue', 'mrl.queue_intake'] LOOP
        EXECUTE format('DROP POLICY IF EXISTS mrl_worker ON %s', t);
        EXECUTE format('CREATE POLICY mrl_worker ON %s TO pgmrl_worker USING (true) WITH CHECK (true)', t);
        EXECUTE format('DROP POLICY IF EXISTS mrl_owners ON %s', t);
        EXECUTE format('CREATE POLICY mrl_owners ON %s TO pgmrl_admin USING (%2$s) WITH CHECK (%2$s)', t,
                       CASE WHEN t = 'mrl.embedding_sets' THEN 'mrl_internal._owns(owner)'
                            ELSE 'mrl_internal._owns_set(set_id)' END);
    END LOOP;
    DROP POLICY IF EXISTS mrl_owners ON mrl.embedding_configs;
    CREATE POLICY mrl_owners ON mrl.embedding_configs TO pgmrl_admin
        USING (NOT builtin AND mrl_internal._owns(owner)) WITH CHECK (NOT builtin AND mrl_internal._owns(owner));
    -- set administrators: the registry (the trigger embedding_sets_check validates what they write), the queue,
    -- the storage schema, and every function (the worker's ones too, for `pgmrl refit` and load_vectors).
    GRANT INSERT, UPDATE, DELETE ON mrl.embedding_sets, mrl.embedding_configs, mrl.rotation_components,
                                   mrl.finetune_datasets, mrl.finetune_pairs TO pgmrl_admin;
    GRANT SELECT, INSERT, UPDATE, DELETE ON mrl.queue, mrl.queue_intake, mrl.finetune_datasets, mrl.finetune_pairs TO pgmrl_admin;
    GRANT USAGE ON ALL SEQUENCES IN SCHEMA mrl TO pgmrl_admin;
    GRANT CREATE ON SCHEMA mrl_data, mrl_words TO pgmrl_admin;
    GRANT EXECUTE ON ALL FUNCTIONS IN SCHEMA mrl_internal TO pgmrl_admin;
    -- existing sets (created before these roles, or upgraded)
    FOR s IN SELECT vectors_table, words_table, source FROM mrl.embedding_sets e
              WHERE EXISTS (SELECT FROM pg_class c WHERE c.oid = e.source)
                AND EXISTS (SELECT FROM pg_class c WHERE c.oid = e.vectors_table AND pg_has_role(c.relowner, 'USAGE')) LOOP
        EXECUTE format('GRANT SELECT, INSERT, UPDATE, DELETE ON %s TO pgmrl_worker', s.vectors_table);
        IF current_setting('server_version_num')::int >= 170000 THEN  -- (as mrl_internal._grant_worker)
            EXECUTE format('GRANT MAINTAIN ON %s TO pgmrl_worker', s.vectors_table);
        END IF;
        IF s.words_table IS NOT NULL THEN
            EXECUTE format('GRANT SELECT, INSERT, UPDATE, DELETE ON %s TO pgmrl_worker', s.words_table);
        END IF;
        BEGIN
            EXECUTE format('GRANT SELECT ON %s TO pgmrl_worker', s.source);
        EXCEPTION WHEN insufficient_privilege OR invalid_grant_operation THEN
            RAISE WARNING 'pgmrl: cannot grant SELECT on % to pgmrl_worker: ask its owner to', s.source;
        END;
    END LOOP;
END
$grants$;
