-- Run once. 001_schema.sql was edited after it landed (commit a579c14 added mrl.embedding_sets.mode and
-- mrl.settings), so a database installed at the first core version (f74a3b3) recorded 001 without them and
-- 002.. could not run. This brings such a database to today's 001; on any other database it changes nothing.
-- Landed migrations are never edited again: sql/migrations/CHECKSUMS and the install refuse a changed one.

-- mrl.settings: where the database reaches the sidecar; holds its token, so readable by the owner only.
DO $settings$
BEGIN
    IF to_regclass('mrl.settings') IS NULL THEN
        CREATE TABLE mrl.settings (
            key        text PRIMARY KEY,
            value      text NOT NULL,
            updated_at timestamptz NOT NULL DEFAULT now()
        );
        REVOKE ALL ON mrl.settings FROM PUBLIC;
    END IF;
END
$settings$;

-- mrl.embedding_sets.mode, in the place today's 001 gives it (after on_update): the registry is rebuilt with the
-- same rows, ids, id sequence, constraints and grants. The old layout's views and functions that use the table's
-- row type are dropped first (sql/functions creates today's); foreign keys to it are re-created. When objects
-- outside pgmrl's schemas depend on the table, it is kept and the column is added at the end instead.
DO $sets$
DECLARE
    t       regclass := to_regclass('mrl.embedding_sets');
    owner_  oid;
    acl     aclitem[];
    note    text;
    cols    text;
    fks     text[] := '{}';
    fk      record;
    dep     record;
    g       record;
    foreign_deps text;
BEGIN
    IF t IS NULL OR EXISTS (SELECT FROM pg_attribute WHERE attrelid = t AND attname = 'mode' AND NOT attisdropped) THEN
        RETURN;  -- a fresh install (001 made the current layout) or a database past 001's edit
    END IF;

    -- Whatever depends on the table or its row type, apart from its own parts (columns' defaults, constraints,
    -- indexes, sequence, toast table, row type) and foreign keys from other tables.
    SELECT string_agg(pg_catalog.pg_describe_object(d.classid, d.objid, d.objsubid), ', ')
      INTO foreign_deps
      FROM pg_catalog.pg_depend d
      LEFT JOIN pg_catalog.pg_rewrite r ON d.classid = 'pg_catalog.pg_rewrite'::regclass AND r.oid = d.objid
      LEFT JOIN pg_catalog.pg_class v ON v.oid = r.ev_class
      LEFT JOIN pg_catalog.pg_proc p ON d.classid = 'pg_catalog.pg_proc'::regclass AND p.oid = d.objid
     WHERE ((d.refclassid = 'pg_catalog.pg_class'::regclass AND d.refobjid = t)
            OR (d.refclassid = 'pg_catalog.pg_type'::regclass
                AND d.refobjid = (SELECT reltype FROM pg_catalog.pg_class WHERE oid = t)))
       AND d.deptype = 'n'
       AND NOT (d.classid = 'pg_catalog.pg_constraint'::regclass
                AND EXISTS (SELECT FROM pg_catalog.pg_constraint k WHERE k.oid = d.objid
                             AND (k.conrelid = t OR k.contype = 'f' AND k.confrelid = t)))
       AND NOT (d.classid = 'pg_catalog.pg_attrdef'::regclass)
       AND coalesce(v.relnamespace, p.pronamespace, 0) <> 'mrl'::regnamespace;
    IF foreign_deps IS NOT NULL
       OR EXISTS (SELECT FROM pg_catalog.pg_trigger WHERE tgrelid = t AND NOT tgisinternal)
       OR EXISTS (SELECT FROM pg_catalog.pg_policy WHERE polrelid = t)
       OR EXISTS (SELECT FROM pg_catalog.pg_inherits WHERE inhrelid = t OR inhparent = t) THEN
        RAISE NOTICE 'pgmrl: % depend on mrl.embedding_sets; its new column "mode" goes at the end of the table',
            coalesce(foreign_deps, 'triggers, policies or inheritance');
        ALTER TABLE mrl.embedding_sets ADD COLUMN mode text NOT NULL DEFAULT 'async' CHECK (mode IN ('async', 'sync'));
        RETURN;
    END IF;

    -- The old layout's views and row-type functions in mrl (today's are created by sql/functions).
    FOR dep IN SELECT DISTINCT d.classid, d.objid,
                      CASE WHEN d.classid = 'pg_catalog.pg_rewrite'::regclass
                           THEN format('DROP VIEW IF EXISTS %s', r.ev_class::regclass)
                           ELSE format('DROP FUNCTION IF EXISTS %s', d.objid::regprocedure) END AS stmt
                 FROM pg_catalog.pg_depend d
                 LEFT JOIN pg_catalog.pg_rewrite r ON d.classid = 'pg_catalog.pg_rewrite'::regclass AND r.oid = d.objid
                WHERE ((d.refclassid = 'pg_catalog.pg_class'::regclass AND d.refobjid = t)
                       OR (d.refclassid = 'pg_catalog.pg_type'::regclass
                           AND d.refobjid = (SELECT reltype FROM pg_catalog.pg_class WHERE oid = t)))
                  AND d.deptype = 'n'
                  AND d.classid IN ('pg_catalog.pg_rewrite'::regclass, 'pg_catalog.pg_proc'::regclass) LOOP
        EXECUTE dep.stmt;
    END LOOP;

    -- Foreign keys from other tables, re-created by name once the new table exists.
    FOR fk IN SELECT k.conname, k.conrelid::regclass AS tab, pg_catalog.pg_get_constraintdef(k.oid) AS def
                FROM pg_catalog.pg_constraint k WHERE k.contype = 'f' AND k.confrelid = t AND k.conrelid <> t LOOP
        fks := fks || format('ALTER TABLE %s ADD CONSTRAINT %I %s', fk.tab, fk.conname, fk.def);
        EXECUTE format('ALTER TABLE %s DROP CONSTRAINT %I', fk.tab, fk.conname);
    END LOOP;

    SELECT c.relowner, c.relacl, pg_catalog.obj_description(c.oid, 'pg_class') INTO owner_, acl, note
      FROM pg_catalog.pg_class c WHERE c.oid = t;
    SELECT string_agg(format('%I', attname), ', ' ORDER BY attnum) INTO cols
      FROM pg_catalog.pg_attribute WHERE attrelid = t AND attnum > 0 AND NOT attisdropped;

    -- Out of the way: the old table and its constraints (generated constraint names are unique per schema).
    ALTER TABLE mrl.embedding_sets RENAME TO embedding_sets_001;
    FOR dep IN SELECT conname FROM pg_catalog.pg_constraint WHERE conrelid = t LOOP
        EXECUTE format('ALTER TABLE mrl.embedding_sets_001 RENAME CONSTRAINT %I TO %I',
                       dep.conname, 'old_001_' || dep.conname);
    END LOOP;
    ALTER SEQUENCE mrl.embedding_sets_id_seq OWNED BY NONE;

    -- As 001_schema.sql defines it today (id: the serial's own sequence, kept).
    CREATE TABLE mrl.embedding_sets (
        id                    integer NOT NULL DEFAULT nextval('mrl.embedding_sets_id_seq'::regclass) PRIMARY KEY,
        name                  text NOT NULL,
        slug                  text NOT NULL UNIQUE CHECK (slug ~ '^[a-z][a-z0-9_]{0,39}$'),
        source                regclass NOT NULL,
        pk_column             name NOT NULL,
        pk_type               text NOT NULL,
        text_expr             text NOT NULL,
        config                text NOT NULL REFERENCES mrl.embedding_configs (name),
        dims                  int  NOT NULL,
        truncate_dim          int,
        coarse_method         text NOT NULL CHECK (coarse_method IN ('none', 'prefix', 'rotation')),
        on_create             bool NOT NULL DEFAULT true,
        on_update             bool NOT NULL DEFAULT true,
        mode                  text NOT NULL DEFAULT 'async' CHECK (mode IN ('async', 'sync')),
        vectors_table         regclass NOT NULL,
        default_coarse_k      int  NOT NULL DEFAULT 100 CHECK (default_coarse_k > 0),
        rotation_min_rows     int  NOT NULL DEFAULT 1000 CHECK (rotation_min_rows > 0),
        rotation_version      int  NOT NULL DEFAULT 0,
        rotation_rows         bigint,
        rotation_fitted_at    timestamptz,
        rotation_requested_at timestamptz,
        created_at            timestamptz NOT NULL DEFAULT now()
    );
    ALTER SEQUENCE mrl.embedding_sets_id_seq OWNED BY mrl.embedding_sets.id;
    EXECUTE format('INSERT INTO mrl.embedding_sets (%1$s) SELECT %1$s FROM mrl.embedding_sets_001', cols);

    IF owner_ <> (SELECT relowner FROM pg_catalog.pg_class WHERE oid = 'mrl.embedding_sets'::regclass) THEN
        EXECUTE format('ALTER TABLE mrl.embedding_sets OWNER TO %I', pg_catalog.pg_get_userbyid(owner_));
    END IF;
    FOR g IN SELECT a.grantee, a.privilege_type, a.is_grantable FROM pg_catalog.aclexplode(acl) a
              WHERE a.grantee <> owner_ LOOP
        EXECUTE format('GRANT %s ON mrl.embedding_sets TO %s%s', g.privilege_type,
                       CASE WHEN g.grantee = 0 THEN 'PUBLIC'
                            ELSE format('%I', pg_catalog.pg_get_userbyid(g.grantee)) END,
                       CASE WHEN g.is_grantable THEN ' WITH GRANT OPTION' ELSE '' END);
    END LOOP;
    IF note IS NOT NULL THEN
        EXECUTE format('COMMENT ON TABLE mrl.embedding_sets IS %L', note);
    END IF;

    DROP TABLE mrl.embedding_sets_001;
    FOR i IN 1 .. coalesce(array_length(fks, 1), 0) LOOP
        EXECUTE fks[i];
    END LOOP;
END
$sets$;
