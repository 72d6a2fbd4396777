-- Privileges. Writers of a source table need to queue their changes (the triggers run as the writer);
-- searchers need to read the registry. The worker gets its own least-privileged role, `pgmrl_worker`
-- (NOLOGIN: grant it to the login role the sidecar uses), created when the installer may create roles.
GRANT USAGE ON SCHEMA mrl, mrl_data TO PUBLIC;
GRANT SELECT ON mrl.embedding_configs, mrl.embedding_sets, mrl.rotation_components, mrl.queue_status,
                mrl.migrations TO PUBLIC;
GRANT INSERT ON mrl.queue, mrl.queue_intake TO PUBLIC;
GRANT USAGE ON SEQUENCE mrl.queue_qid_seq, mrl.queue_intake_bid_seq TO PUBLIC;
REVOKE ALL ON mrl.settings FROM PUBLIC;

DO $roles$
DECLARE
    s record;
BEGIN
    IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'pgmrl_worker') THEN
        IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = current_user AND (rolsuper OR rolcreaterole)) THEN
            RAISE NOTICE 'pgmrl: cannot create the role pgmrl_worker (needs CREATEROLE); the worker will need the installer''s privileges';
            RETURN;
        END IF;
        CREATE ROLE pgmrl_worker NOLOGIN;
        COMMENT ON ROLE pgmrl_worker IS 'pgmrl embedding worker: reads queued source rows, writes their vectors';
    END IF;
    GRANT SELECT, UPDATE, DELETE ON mrl.queue TO pgmrl_worker;
    GRANT SELECT, UPDATE, DELETE ON mrl.queue_intake TO pgmrl_worker;
    GRANT SELECT ON mrl.settings TO pgmrl_worker;
    GRANT UPDATE (rotation_version, rotation_rows, rotation_fitted_at, rotation_requested_at) ON mrl.embedding_sets TO pgmrl_worker;
    GRANT INSERT, DELETE ON mrl.rotation_components TO pgmrl_worker;
    FOR s IN SELECT vectors_table, source FROM mrl.embedding_sets e
              WHERE EXISTS (SELECT FROM pg_class c WHERE c.oid = e.source) LOOP
        EXECUTE format('GRANT SELECT, INSERT, UPDATE, DELETE ON %s TO pgmrl_worker', s.vectors_table);
        EXECUTE format('GRANT SELECT ON %s TO pgmrl_worker', s.source);
    END LOOP;
END
$roles$;
