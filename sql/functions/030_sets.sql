-- Embedding sets: creation, change capture, removal, status.

-- Functions that turn keys or texts into text pin DateStyle, IntervalStyle, extra_float_digits, TimeZone and
-- bytea_output (SET clauses), so that what a writer's session has set never changes which key is queued or which
-- text is embedded.

-- The rows a statement changed, for a set's triggers: a FROM item c(k, t) over the transition tables with the key
-- (in its own type) and the embedded text of every inserted row, or of every updated row whose text changed.
CREATE OR REPLACE FUNCTION mrl_internal._changed_rows(s mrl.embedding_sets, op text)
RETURNS text
LANGUAGE sql STABLE
SET search_path = pg_catalog, pg_temp
AS $fn$
    SELECT CASE WHEN op = 'INSERT'
        THEN format('(SELECT mrl_src.%1$I AS k, (%2$s)::text AS t FROM mrl_new mrl_src) c', s.pk_column, s.text_expr)
        ELSE format('(SELECT n.k, n.t
                        FROM (SELECT mrl_src.%1$I AS k, (%2$s)::text AS t FROM mrl_new mrl_src) n
                   LEFT JOIN (SELECT mrl_src.%1$I AS k, (%2$s)::text AS t FROM mrl_old mrl_src) o ON o.k = n.k
                       WHERE o.k IS NULL OR n.t IS DISTINCT FROM o.t) c', s.pk_column, s.text_expr) END
$fn$;

-- The set a trigger fires for, checked: the trigger must sit on the set's own source (anyone may attach the trigger
-- function to a table they own, but then it queues nothing for another role's set), and the columns it reads must
-- still have built-in types.
CREATE OR REPLACE FUNCTION mrl_internal._trigger_set(set_arg text, relid oid, trigger_name name, level text,
                                                     timing text, op text, fn regproc)
RETURNS mrl.embedding_sets
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pg_temp
AS $fn$
DECLARE
    s mrl.embedding_sets;
    t record;
BEGIN
    IF set_arg IS NULL OR set_arg !~ '^[0-9]{1,9}$' THEN
        RAISE EXCEPTION 'pgmrl trigger with a bad argument %', coalesce(quote_literal(set_arg), 'NULL')
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    SELECT * INTO s FROM mrl.embedding_sets WHERE id = set_arg::int;
    IF NOT FOUND THEN
        RETURN NULL;  -- set dropped in this transaction
    END IF;
    -- Exactly the trigger mrl_internal._create_triggers made: on the set's source, AFTER ... FOR EACH STATEMENT,
    -- INSERT or UPDATE, with the transition tables under the names the function reads (so that no other relation,
    -- e.g. a temporary view named mrl_new, can stand in for them).
    SELECT tg.tgfoid, tg.tgnewtable, tg.tgoldtable INTO t FROM pg_trigger tg WHERE tg.tgrelid = relid AND tg.tgname = trigger_name;
    IF s.source <> relid OR level <> 'STATEMENT' OR timing <> 'AFTER' OR op NOT IN ('INSERT', 'UPDATE')
       OR trigger_name <> 'mrl_' || s.slug || (CASE op WHEN 'INSERT' THEN '_ins' ELSE '_upd' END)
       OR t.tgfoid IS DISTINCT FROM fn OR t.tgnewtable IS DISTINCT FROM 'mrl_new'
       OR (op = 'UPDATE' AND t.tgoldtable IS DISTINCT FROM 'mrl_old') THEN
        RAISE EXCEPTION 'pgmrl trigger % on % does not belong to embedding set "%" (whose source is %)', trigger_name, relid::regclass, s.slug, s.source
            USING ERRCODE = 'insufficient_privilege',
                  HINT = 'Embedding-set triggers are created by mrl.create_embedding_set(); drop this one.';
    END IF;
    PERFORM mrl_internal._check_columns(s.source, s.text_columns || s.pk_column, format('embedding set "%s"', s.slug));
    RETURN s;
END
$fn$;

-- Statement-level trigger: queues the keys of inserted rows with text, and of updated rows whose embedded text
-- changed (also to empty: the worker then removes the vector), as one array per statement in mrl.queue_intake (the
-- worker expands it into mrl.queue rows: bulk writes stay cheap). TG_ARGV[0] is the set id.
-- SECURITY DEFINER: writers may not touch the queue themselves. What it evaluates as its owner is the set's
-- validated text expression (built-in functions, operators and types only) over the statement's transition tables.
CREATE OR REPLACE FUNCTION mrl_internal._queue_changes()
RETURNS trigger
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
SET DateStyle = 'ISO, MDY' SET IntervalStyle = 'postgres' SET extra_float_digits = 1 SET TimeZone = 'UTC' SET bytea_output = 'hex'
AS $fn$
DECLARE
    s mrl.embedding_sets := mrl_internal._trigger_set(TG_ARGV[0], TG_RELID, TG_NAME, TG_LEVEL, TG_WHEN, TG_OP,
                                                      'mrl_internal._queue_changes'::regproc);
    n bigint;
BEGIN
    IF s.id IS NULL THEN
        RETURN NULL;
    END IF;
    EXECUTE format(
        'INSERT INTO mrl.queue_intake (set_id, ids)
         SELECT $1, array_agg((c.k)::text) FROM %s WHERE $2 OR coalesce(c.t, '''') <> '''' HAVING count(*) > 0',
        mrl_internal._changed_rows(s, TG_OP)) USING s.id, TG_OP = 'UPDATE';
    GET DIAGNOSTICS n = ROW_COUNT;
    IF n > 0 THEN
        PERFORM pg_notify('mrl_queue', s.id::text);
    END IF;
    RETURN NULL;
END
$fn$;

-- The change-capture triggers of a set: queueing (async) or embedding in the statement (sync).
CREATE OR REPLACE FUNCTION mrl_internal._create_triggers(s mrl.embedding_sets)
RETURNS void
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $fn$
DECLARE
    fn text := CASE WHEN s.mode = 'sync' THEN 'mrl_internal._sync_changes' ELSE 'mrl_internal._queue_changes' END;
BEGIN
    IF s.on_create THEN
        EXECUTE format('CREATE TRIGGER %I AFTER INSERT ON %s REFERENCING NEW TABLE AS mrl_new
                        FOR EACH STATEMENT EXECUTE FUNCTION %s(%L)', 'mrl_' || s.slug || '_ins', s.source, fn, s.id);
    END IF;
    IF s.on_update THEN
        EXECUTE format('CREATE TRIGGER %I AFTER UPDATE ON %s REFERENCING OLD TABLE AS mrl_old NEW TABLE AS mrl_new
                        FOR EACH STATEMENT EXECUTE FUNCTION %s(%L)', 'mrl_' || s.slug || '_upd', s.source, fn, s.id);
    END IF;
END
$fn$;

CREATE OR REPLACE FUNCTION mrl_internal._drop_triggers(s mrl.embedding_sets)
RETURNS void
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $fn$
BEGIN
    IF EXISTS (SELECT FROM pg_class WHERE oid = s.source) THEN
        EXECUTE format('DROP TRIGGER IF EXISTS %I ON %s', 'mrl_' || s.slug || '_ins', s.source);
        EXECUTE format('DROP TRIGGER IF EXISTS %I ON %s', 'mrl_' || s.slug || '_upd', s.source);
    END IF;
END
$fn$;

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
    SELECT c.relnamespace = 'mrl_data'::regnamespace AND pg_has_role(c.relowner, 'USAGE')
      INTO ok FROM pg_class c WHERE c.oid = NEW.vectors_table;
    IF NOT coalesce(ok, false) THEN
        RAISE EXCEPTION 'embedding set "%": % is not a vectors table in mrl_data owned by %', NEW.slug, NEW.vectors_table, current_user
            USING ERRCODE = 'insufficient_privilege';
    END IF;
    RETURN NEW;
END
$fn$;

DROP TRIGGER IF EXISTS embedding_sets_check ON mrl.embedding_sets;
CREATE TRIGGER embedding_sets_check BEFORE INSERT OR UPDATE OF id, source, pk_column, pk_type, text_expr, text_columns, vectors_table, config, owner, replaces
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
    IF (SELECT relrowsecurity FROM pg_class WHERE oid = source) THEN
        RAISE EXCEPTION '% has row-level security enabled: its policies would run as the worker that reads it, and hide rows from it', source
            USING ERRCODE = 'insufficient_privilege',
                  HINT = 'Embed a table without row-level security (e.g. a table the application fills from this one).';
    END IF;
    IF mrl_internal._planner_code(source) IS NOT NULL THEN
        RAISE EXCEPTION 'the indexes or statistics of % call %: reading it would run them as the reader (the worker, or you)',
            source, mrl_internal._planner_code(source)
            USING ERRCODE = 'insufficient_privilege',
                  HINT = 'pgmrl reads only tables whose index and statistics expressions use built-in functions.';
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
BEGIN
    EXECUTE format('ALTER TABLE %s ENABLE ROW LEVEL SECURITY', vt);
    EXECUTE format('DROP POLICY IF EXISTS mrl_source_readers ON %s', vt);
    EXECUTE format('CREATE POLICY mrl_source_readers ON %s FOR SELECT USING (pg_catalog.has_table_privilege(%s::oid, %L))',
                   vt, source::oid, 'SELECT');
    IF EXISTS (SELECT FROM pg_roles WHERE rolname = 'pgmrl_worker') THEN
        EXECUTE format('DROP POLICY IF EXISTS mrl_worker ON %s', vt);
        EXECUTE format('CREATE POLICY mrl_worker ON %s TO pgmrl_worker USING (true) WITH CHECK (true)', vt);
    END IF;
    -- sync mode writes vectors in the writer's statement: roles that may write the source may write its vectors,
    -- once the set's owner grants them INSERT, UPDATE, DELETE on the vectors table
    EXECUTE format('DROP POLICY IF EXISTS mrl_sync_writers ON %s', vt);
    EXECUTE format('CREATE POLICY mrl_sync_writers ON %s FOR INSERT WITH CHECK (pg_catalog.has_table_privilege(%s::oid, %L))',
                   vt, source::oid, 'INSERT, UPDATE');
    EXECUTE format('DROP POLICY IF EXISTS mrl_sync_updaters ON %s', vt);
    EXECUTE format('CREATE POLICY mrl_sync_updaters ON %s FOR UPDATE USING (pg_catalog.has_table_privilege(%s::oid, %L))',
                   vt, source::oid, 'INSERT, UPDATE');
    EXECUTE format('DROP POLICY IF EXISTS mrl_sync_deleters ON %s', vt);
    EXECUTE format('CREATE POLICY mrl_sync_deleters ON %s FOR DELETE USING (pg_catalog.has_table_privilege(%s::oid, %L))',
                   vt, source::oid, 'UPDATE');
    EXECUTE format('REVOKE ALL ON %s FROM PUBLIC', vt);
    EXECUTE format('GRANT SELECT ON %s TO PUBLIC', vt);
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
    pk_col name;
    pk_typ text;
    n_pk int;
    expr text;
    method text;
    tdim int := truncate_dim;
    set_id int;
    vt regclass;
    vname text;
BEGIN
    IF slug IS NULL OR slug !~ '^[a-z][a-z0-9_]{0,39}$' THEN
        RAISE EXCEPTION 'invalid slug %', coalesce(quote_literal(slug), 'NULL')
            USING ERRCODE = 'invalid_parameter_value',
                  HINT = 'A slug is 1-40 characters: a lower-case letter, then lower-case letters, digits or _. The free-text name can be anything.';
    END IF;
    vname := format('%I.%I', 'mrl_data', slug);
    IF name IS NULL OR btrim(name) = '' THEN
        RAISE EXCEPTION 'embedding set name is empty' USING ERRCODE = 'invalid_parameter_value',
              HINT = 'Give a human-readable name, e.g. ''Product descriptions''.';
    END IF;
    IF EXISTS (SELECT FROM mrl.embedding_sets e WHERE e.slug = create_embedding_set.slug) OR to_regclass(vname) IS NOT NULL THEN
        RAISE EXCEPTION 'embedding set "%" already exists', slug USING ERRCODE = 'duplicate_object',
              HINT = 'Choose another slug, or drop it first with mrl.drop_embedding_set().';
    END IF;
    PERFORM mrl_internal._check_source(source);
    IF mode IS NULL OR mode NOT IN ('async', 'sync') THEN
        RAISE EXCEPTION 'unknown mode %', coalesce(quote_literal(mode), 'NULL') USING ERRCODE = 'invalid_parameter_value',
              HINT = '''async'' (default) queues changes for the sidecar; ''sync'' embeds inside the writing transaction (needs plpython3u and a running sidecar).';
    END IF;
    c := mrl_internal._config(config);
    IF mode = 'sync' AND NOT mrl.sql_embedding_available() THEN
        RAISE EXCEPTION 'sync mode needs the plpython3u extension, which this server does not have'
            USING ERRCODE = 'feature_not_supported',
                  HINT = 'Use mode => ''async'' (the sidecar embeds queued rows within seconds), or install postgresql-plpython3-NN and run `pgmrl install` again.';
    END IF;

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

    expr := (mrl_internal._text_expr(source, text_column)).expr;

    -- The MRL rules.
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

    -- Storage. The key has the source key's type and follows it (cascade on delete and on key change).
    EXECUTE format(
        'CREATE TABLE %s (
             id %s PRIMARY KEY REFERENCES %s (%I) ON DELETE CASCADE ON UPDATE CASCADE,
             embedding @vec@.vector(%s) NOT NULL,
             coarse @vec@.halfvec%s,
             content_hash text NOT NULL,
             embedded_at timestamptz NOT NULL DEFAULT now(),
             truncated bool NOT NULL DEFAULT false)',
        vname, pk_typ, source, pk_col, c.dims, CASE WHEN method = 'none' THEN '' ELSE format('(%s)', tdim) END);
    vt := vname::regclass;
    INSERT INTO mrl.embedding_sets (name, slug, source, pk_column, pk_type, text_expr, config, dims, truncate_dim,
                                    coarse_method, on_create, on_update, mode, vectors_table)
    VALUES (name, slug, source, pk_col, pk_typ, expr, c.name, c.dims, CASE WHEN method = 'none' THEN NULL ELSE tdim END,
            method, on_create, on_update, mode, vt)
    RETURNING id INTO set_id;
    IF method <> 'none' THEN
        EXECUTE format('CREATE INDEX %I ON %s USING hnsw (coarse @vec@.halfvec_cosine_ops)', slug || '_coarse_hnsw', vt);
    END IF;
    EXECUTE format('COMMENT ON TABLE %s IS %L', vt, format('pgmrl vectors of embedding set %s (%s)', slug, c.name));
    PERFORM mrl_internal._protect_vectors(source, vt);
    PERFORM mrl_internal._grant_worker(source, vt);

    PERFORM mrl_internal._create_triggers(e) FROM mrl.embedding_sets e WHERE e.id = set_id;

    -- Backfill: queue every existing row with text.
    EXECUTE format('INSERT INTO mrl.queue (set_id, id) SELECT $1, (mrl_src.%I)::text FROM ONLY %s mrl_src WHERE coalesce((%s)::text, '''') <> ''''',
                   pk_col, source, expr) USING set_id;
    PERFORM pg_notify('mrl_queue', set_id::text);
    IF method = 'rotation' THEN
        RAISE NOTICE 'set "%": % is not an MRL model; the coarse vector uses a PCA rotation that pgmrl fits once % rows are embedded (or on SELECT mrl.refit_rotation(%)). Until then searches are exact.',
            slug, c.name, (SELECT rotation_min_rows FROM mrl.embedding_sets WHERE id = set_id), quote_literal(slug);
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
