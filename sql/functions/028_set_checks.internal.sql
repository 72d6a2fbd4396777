-- What a set must satisfy: the registry's own trigger (every write of what a set reads is checked), where a set may
-- read from, and the privileges and row-level security of its vectors table.

-- The registry guards itself: whoever inserts a set, or changes what it reads, gets its text expression validated
-- and canonicalised (as that role), its key checked, and its vectors table checked to be a pgmrl table of theirs.
-- (The triggers and the worker evaluate these columns, so no path may store them unchecked.)
CREATE OR REPLACE FUNCTION mrl_internal._check_set_row()
RETURNS trigger
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $fn$
DECLARE
    pk_col name;
    pk_typ text;
    ok bool;
BEGIN
    IF NEW.source IS NULL OR NOT EXISTS (SELECT FROM pg_class WHERE oid = NEW.source) THEN
        RAISE EXCEPTION 'embedding set "%": its source table does not exist', NEW.slug USING ERRCODE = 'undefined_table';
    END IF;
    PERFORM mrl_internal._check_source(NEW.source);
    SELECT a.attname, format_type(a.atttypid, a.atttypmod) INTO pk_col, pk_typ
      FROM pg_index i JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = i.indkey[0]
     WHERE i.indrelid = NEW.source AND i.indisprimary AND i.indnatts = 1;
    IF TG_OP = 'INSERT' THEN
        NEW.owner := (SELECT oid FROM pg_roles WHERE rolname = current_user);
    ELSE
        NEW.owner := OLD.owner;  -- never changes
        IF NEW.id IS DISTINCT FROM OLD.id THEN
            RAISE EXCEPTION 'the id of embedding set "%" cannot change', OLD.slug USING ERRCODE = 'insufficient_privilege';
        END IF;
    END IF;
    -- a replacement (mrl.alter_embedding_set) replaces a set of the same owner, never another role's
    IF NEW.replaces IS NOT NULL AND (TG_OP = 'INSERT' OR NEW.replaces IS DISTINCT FROM OLD.replaces)
       AND (NEW.replaces = NEW.id OR NOT EXISTS (SELECT FROM mrl.embedding_sets e WHERE e.id = NEW.replaces
                                                   AND e.owner IS NOT DISTINCT FROM NEW.owner AND e.replaces IS NULL)) THEN
        RAISE EXCEPTION 'embedding set "%" cannot replace set %: not a set of the same owner', NEW.slug, NEW.replaces
            USING ERRCODE = 'insufficient_privilege';
    END IF;
    IF pk_col IS DISTINCT FROM NEW.pk_column OR pk_typ IS DISTINCT FROM NEW.pk_type THEN
        RAISE EXCEPTION 'embedding set "%": % (%) is not the single-column primary key of %', NEW.slug, NEW.pk_column, NEW.pk_type, NEW.source
            USING ERRCODE = 'invalid_table_definition';
    END IF;
    PERFORM mrl_internal._check_columns(NEW.source, ARRAY[pk_col], 'primary key');
    SELECT x.expr, x.columns INTO NEW.text_expr, NEW.text_columns FROM mrl_internal._text_expr(NEW.source, NEW.text_expr) x;
    -- a set uses a built-in config or one its owner registered (another administrator's endpoint would receive its texts)
    IF NOT EXISTS (SELECT FROM mrl.embedding_configs c WHERE c.name = NEW.config
                      AND (c.builtin OR c.owner IS NULL OR pg_has_role(c.owner, 'USAGE'))) THEN
        RAISE EXCEPTION 'embedding set "%": config "%" belongs to another role', NEW.slug, NEW.config
            USING ERRCODE = 'insufficient_privilege', HINT = 'Use a built-in config or register your own.';
    END IF;
    -- how the worker cuts texts (the vectors table's layout follows it: it changes only with the table) and the
    -- text search configuration of the full-text words
    IF TG_OP = 'UPDATE' AND NEW.chunking IS DISTINCT FROM OLD.chunking AND NEW.vectors_table = OLD.vectors_table THEN
        RAISE EXCEPTION 'the chunking of embedding set "%" cannot change in place', OLD.slug USING ERRCODE = 'invalid_parameter_value',
              HINT = 'Re-embed it: SELECT mrl.alter_embedding_set(slug, chunking => ...).';
    END IF;
    NEW.chunking := mrl_internal._check_chunking(NEW.chunking, mrl_internal._config(NEW.config));
    NEW.text_search_config := mrl_internal._check_ts_config(NEW.text_search_config);
    SELECT c.relnamespace = 'mrl_data'::regnamespace AND pg_has_role(c.relowner, 'USAGE')
      INTO ok FROM pg_class c WHERE c.oid = NEW.vectors_table;
    IF NOT coalesce(ok, false) THEN
        RAISE EXCEPTION 'embedding set "%": % is not a vectors table in mrl_data owned by %', NEW.slug, NEW.vectors_table, current_user
            USING ERRCODE = 'insufficient_privilege';
    END IF;
    -- the words table: NULL (a set whose words could not be moved out of its vectors table), or a table of the
    -- same owner in mrl_words whose key references the set's vectors (the worker writes it, set removals drop it)
    IF NEW.words_table IS NOT NULL AND NOT mrl_internal._words_table_ok(NEW.words_table, NEW.vectors_table) THEN
        RAISE EXCEPTION 'embedding set "%": % is not the words table in mrl_words of its vectors %', NEW.slug, NEW.words_table, NEW.vectors_table
            USING ERRCODE = 'insufficient_privilege';
    END IF;
    RETURN NEW;
END
$fn$;

-- Whether wt is a words table of the vectors table vt: in mrl_words, owned by vt's owner (whom the caller may act
-- as), with a foreign key to vt. What the registry accepts, and what a set's removal checks before dropping it.
CREATE OR REPLACE FUNCTION mrl_internal._words_table_ok(wt regclass, vt regclass)
RETURNS bool
LANGUAGE sql STABLE
SET search_path = pg_catalog, pg_temp
AS $fn$
    SELECT EXISTS (SELECT FROM pg_class w JOIN pg_class v ON v.oid = vt
                    WHERE w.oid = wt AND w.relkind = 'r' AND w.relnamespace = 'mrl_words'::regnamespace
                      AND w.relowner = v.relowner AND pg_has_role(w.relowner, 'USAGE')
                      AND EXISTS (SELECT FROM pg_constraint c WHERE c.conrelid = wt AND c.contype = 'f' AND c.confrelid = vt))
$fn$;

DROP TRIGGER IF EXISTS embedding_sets_check ON mrl.embedding_sets;
CREATE TRIGGER embedding_sets_check BEFORE INSERT OR UPDATE OF id, source, pk_column, pk_type, text_expr, text_columns, vectors_table, config, owner, replaces,
                                                        chunking, text_search_config, words_table
    ON mrl.embedding_sets FOR EACH ROW EXECUTE FUNCTION mrl_internal._check_set_row();

-- Where a set may not read from: pgmrl's own schemas, the system catalogs, temporary tables, non-tables.
CREATE OR REPLACE FUNCTION mrl_internal._check_source(source regclass)
RETURNS void
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pg_temp
AS $fn$
DECLARE
    nsp text;
    kind "char";
    problem text;
BEGIN
    IF source IS NULL THEN
        RAISE EXCEPTION 'source table is NULL' USING ERRCODE = 'null_value_not_allowed';
    END IF;
    SELECT n.nspname, c.relkind INTO nsp, kind FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace WHERE c.oid = source;
    IF nsp IN ('mrl', 'mrl_data', 'mrl_internal', 'pg_catalog', 'information_schema', 'pg_toast')
       OR nsp LIKE 'pg\_temp\_%' OR nsp LIKE 'pg\_toast\_temp\_%' THEN
        RAISE EXCEPTION 'an embedding set cannot read %: it is in schema %', source, nsp
            USING ERRCODE = 'insufficient_privilege',
                  HINT = 'Sources are ordinary tables in your own schemas (temporary tables are invisible to the worker).';
    END IF;
    IF kind NOT IN ('r', 'p') THEN
        RAISE EXCEPTION '% is not a table', source USING ERRCODE = 'wrong_object_type',
              HINT = 'An embedding set is bound to an ordinary table with a primary key.';
    END IF;
    problem := mrl_internal._source_problem(source);
    IF problem IS NOT NULL THEN
        RAISE EXCEPTION '%', problem USING ERRCODE = 'insufficient_privilege',
              HINT = 'pgmrl reads only tables without row-level security whose index and statistics expressions use '
                     'built-in functions (embed a table the application fills from this one).';
    END IF;
END
$fn$;

-- The worker role reads the source (and must reach its schema) and writes the vectors.
CREATE OR REPLACE FUNCTION mrl_internal._grant_worker(source regclass, vt regclass)
RETURNS void
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $fn$
DECLARE
    nsp name := (SELECT n.nspname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace WHERE c.oid = source);
BEGIN
    IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'pgmrl_worker') THEN
        RETURN;
    END IF;
    EXECUTE format('GRANT SELECT, INSERT, UPDATE, DELETE ON %s TO pgmrl_worker', vt);
    IF current_setting('server_version_num')::int >= 170000 THEN
        -- so that the worker's automatic rotation refits can compact the table (mrl_internal._rewrite_coarse)
        EXECUTE format('GRANT MAINTAIN ON %s TO pgmrl_worker', vt);
    END IF;
    EXECUTE format('GRANT SELECT ON %s TO pgmrl_worker', source);
    IF NOT has_schema_privilege('pgmrl_worker', nsp, 'USAGE') THEN
        BEGIN
            EXECUTE format('GRANT USAGE ON SCHEMA %I TO pgmrl_worker', nsp);
        EXCEPTION WHEN insufficient_privilege OR invalid_grant_operation THEN
            NULL;  -- said below
        END;
        IF NOT has_schema_privilege('pgmrl_worker', nsp, 'USAGE') THEN
            RAISE EXCEPTION 'the worker role pgmrl_worker cannot use schema %, and % may not grant it', nsp, current_user
                USING ERRCODE = 'insufficient_privilege',
                      HINT = format('Ask the schema''s owner: GRANT USAGE ON SCHEMA %I TO pgmrl_worker;', nsp);
        END IF;
    END IF;
END
$fn$;

-- Row-level security of a vectors table: every role that may read the source may read (and so search) its vectors;
-- the worker writes them.
CREATE OR REPLACE FUNCTION mrl_internal._protect_vectors(source regclass, vt regclass)
RETURNS void
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $fn$
DECLARE
    -- the source in the policies: by oid; on a Citus-distributed set by name (a regclass constant), so that the
    -- copies of the policies on the workers' shards name the workers' own copy of the source table
    src text := CASE WHEN mrl_internal._is_distributed(source) THEN format('%L::regclass', source::text)
                     ELSE format('%s::oid', source::oid) END;
BEGIN
    EXECUTE format('ALTER TABLE %s ENABLE ROW LEVEL SECURITY', vt);
    EXECUTE format('DROP POLICY IF EXISTS mrl_source_readers ON %s', vt);
    EXECUTE format('CREATE POLICY mrl_source_readers ON %s FOR SELECT USING (pg_catalog.has_table_privilege(%s, %L))',
                   vt, src, 'SELECT');
    IF EXISTS (SELECT FROM pg_roles WHERE rolname = 'pgmrl_worker') THEN
        EXECUTE format('DROP POLICY IF EXISTS mrl_worker ON %s', vt);
        EXECUTE format('CREATE POLICY mrl_worker ON %s TO pgmrl_worker USING (true) WITH CHECK (true)', vt);
    END IF;
    -- sync mode writes vectors in the writer's statement: roles that may write the source may write its vectors,
    -- once the set's owner grants them INSERT, UPDATE, DELETE on the vectors table
    EXECUTE format('DROP POLICY IF EXISTS mrl_sync_writers ON %s', vt);
    EXECUTE format('CREATE POLICY mrl_sync_writers ON %s FOR INSERT WITH CHECK (pg_catalog.has_table_privilege(%s, %L))',
                   vt, src, 'INSERT, UPDATE');
    EXECUTE format('DROP POLICY IF EXISTS mrl_sync_updaters ON %s', vt);
    EXECUTE format('CREATE POLICY mrl_sync_updaters ON %s FOR UPDATE USING (pg_catalog.has_table_privilege(%s, %L))',
                   vt, src, 'INSERT, UPDATE');
    EXECUTE format('DROP POLICY IF EXISTS mrl_sync_deleters ON %s', vt);
    EXECUTE format('CREATE POLICY mrl_sync_deleters ON %s FOR DELETE USING (pg_catalog.has_table_privilege(%s, %L))',
                   vt, src, 'UPDATE');
    EXECUTE format('REVOKE ALL ON %s FROM PUBLIC', vt);
    EXECUTE format('GRANT SELECT ON %s TO PUBLIC', vt);
END
$fn$;
