-- Brings sets created by earlier versions up to the current rules (idempotent; runs on every install):
-- text expressions validated and canonicalised (a set whose expression is now refused keeps working for nobody:
-- the worker dead-letters its items with the reason, and a warning says so here), triggers on the current
-- functions, vectors tables under row-level security with all their policies, and the helpers of the old layout
-- (mrl._*) dropped.
-- Last, signatures that newer ones replaced (CREATE OR REPLACE adds an overload instead): a plain call to an old
-- and a new create_embedding_set is "not unique". Found by comparing databases installed at every landed version,
-- upgraded, with a fresh install (tests/test_upgrade.py); a signature replaced later is added here.
DO $upgrade$
DECLARE
    s record;
    f regprocedure;
BEGIN
    FOR s IN SELECT * FROM mrl.embedding_sets WHERE text_columns IS NULL ORDER BY id LOOP
        BEGIN
            UPDATE mrl.embedding_sets SET text_expr = text_expr WHERE id = s.id;  -- embedding_sets_check validates
        EXCEPTION WHEN OTHERS THEN
            RAISE WARNING 'pgmrl: embedding set "%" reads %, which is now refused: %. Its queued rows will fail until it is recreated.',
                s.slug, s.text_expr, SQLERRM;
        END;
    END LOOP;
    FOR s IN SELECT e.* FROM mrl.embedding_sets e
              WHERE EXISTS (SELECT FROM pg_trigger t JOIN pg_proc p ON p.oid = t.tgfoid
                             WHERE t.tgrelid = e.source AND p.pronamespace = 'mrl'::regnamespace
                               AND t.tgname IN ('mrl_' || e.slug || '_ins', 'mrl_' || e.slug || '_upd')) LOOP
        PERFORM mrl_internal._drop_triggers(e) FROM mrl.embedding_sets e WHERE e.id = s.id;
        PERFORM mrl_internal._create_triggers(e) FROM mrl.embedding_sets e WHERE e.id = s.id;
    END LOOP;
    FOR s IN SELECT e.* FROM mrl.embedding_sets e JOIN pg_class c ON c.oid = e.vectors_table
              WHERE (NOT c.relrowsecurity  -- before row-level security, or before sync mode's policies (dfa4366)
                     OR (SELECT count(*) FROM pg_policy p WHERE p.polrelid = c.oid AND p.polname IN
                           ('mrl_source_readers', 'mrl_sync_writers', 'mrl_sync_updaters', 'mrl_sync_deleters')) < 4)
                AND pg_has_role(c.relowner, 'USAGE')
                AND EXISTS (SELECT FROM pg_class x WHERE x.oid = e.source) LOOP
        PERFORM mrl_internal._protect_vectors(s.source, s.vectors_table);
    END LOOP;
    -- words tables made by migration 010 from the vectors' column
    FOR s IN SELECT e.* FROM mrl.embedding_sets e JOIN pg_class c ON c.oid = e.words_table
              WHERE NOT c.relrowsecurity AND pg_has_role(c.relowner, 'USAGE')
                AND EXISTS (SELECT FROM pg_class x WHERE x.oid = e.source) LOOP
        PERFORM mrl_internal._protect_vectors(s.source, s.words_table);
    END LOOP;
    FOR f IN SELECT p.oid FROM pg_proc p WHERE p.pronamespace = 'mrl'::regnamespace AND p.proname LIKE '\_%' LOOP
        EXECUTE format('DROP FUNCTION %s', f);
    END LOOP;
    FOR f IN SELECT pg_catalog.to_regprocedure(sig) FROM unnest(ARRAY[
                 -- before mode (a579c14)
                 'mrl.create_embedding_set(text, text, regclass, text, text, int, bool, bool, text)',
                 -- before chunking and the full-text words
                 'mrl.create_embedding_set(text, text, regclass, text, text, int, bool, bool, text, text)',
                 'mrl.alter_embedding_set(text, text, int, text)',
                 -- before full_type (compact storage)
                 'mrl.create_embedding_set(text, text, regclass, text, text, int, bool, bool, text, text, jsonb, text)',
                 'mrl.alter_embedding_set(text, text, int, text, jsonb, text)',
                 -- before owners (fe255e2)
                 'mrl_internal._may_see(regclass)',
                 -- before the exact trigger shape (fe255e2)
                 'mrl_internal._trigger_set(text, oid)'
             ]) sig WHERE pg_catalog.to_regprocedure(sig) IS NOT NULL LOOP
        EXECUTE format('DROP FUNCTION %s', f);
    END LOOP;
END
$upgrade$;
