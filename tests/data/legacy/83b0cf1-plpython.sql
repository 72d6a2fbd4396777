-- pgmrl install script as built at commit 83b0cf1 (plpython variant), by scripts/make_legacy_schemas.py. Do not edit.
-- pgmrl install script (generated). Safe to run again: migrations are recorded in mrl.migrations.

DO $check$ BEGIN IF NOT EXISTS (SELECT FROM pg_extension WHERE extname = 'vector') THEN RAISE EXCEPTION 'pgmrl needs the pgvector extension' USING HINT = 'CREATE EXTENSION vector; (pgvector >= 0.7)'; END IF; END $check$;

CREATE SCHEMA IF NOT EXISTS mrl;

CREATE TABLE IF NOT EXISTS mrl.migrations (name text PRIMARY KEY, applied_at timestamptz NOT NULL DEFAULT now());

ALTER TABLE mrl.migrations ADD COLUMN IF NOT EXISTS checksum text;  -- sha256 of the migration's text

DO $pgmrl_run$ DECLARE recorded text; BEGIN
SELECT checksum INTO recorded FROM mrl.migrations WHERE name = '001_schema.sql';
IF NOT FOUND THEN
EXECUTE $pgmrl_migration$
-- Run once. Tables of the mrl schema; functions live in sql/functions (idempotent).
CREATE SCHEMA IF NOT EXISTS mrl_data;
COMMENT ON SCHEMA mrl_data IS 'pgmrl: per-set vector storage tables (one table per embedding set)';

CREATE TABLE mrl.embedding_configs (
    name                 text PRIMARY KEY CHECK (name ~ '^[a-z0-9][a-z0-9._-]{0,62}$'),
    model                text NOT NULL,
    provider             text NOT NULL DEFAULT 'sentence-transformers',
    dims                 int  NOT NULL CHECK (dims BETWEEN 1 AND 16000),
    supports_mrl         bool NOT NULL DEFAULT false,
    matryoshka_dims      int[],
    default_truncate_dim int,
    query_prefix         text NOT NULL DEFAULT '',
    document_prefix      text NOT NULL DEFAULT '',
    max_seq_length       int,
    params_millions      numeric,
    best_for             text,
    aliases              text[] NOT NULL DEFAULT '{}',
    builtin              bool NOT NULL DEFAULT false,
    created_at           timestamptz NOT NULL DEFAULT now(),
    CHECK (NOT supports_mrl OR (matryoshka_dims IS NOT NULL AND default_truncate_dim = ANY (matryoshka_dims)))
);

CREATE TABLE mrl.embedding_sets (
    id                    serial PRIMARY KEY,
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

-- Principal directions of a set's full vectors (uncentred PCA), strongest first.
CREATE TABLE mrl.rotation_components (
    set_id             int NOT NULL REFERENCES mrl.embedding_sets (id) ON DELETE CASCADE,
    component          int NOT NULL CHECK (component >= 0),
    direction          "public".vector NOT NULL,
    explained_variance double precision,
    PRIMARY KEY (set_id, component)
);

-- Work queue. One row per change; the worker de-duplicates keys within a batch.
-- No foreign key on purpose: bulk statements must not pay a per-row check.
CREATE TABLE mrl.queue (
    qid             bigserial PRIMARY KEY,
    set_id          int  NOT NULL,
    id              text NOT NULL,
    queued_at       timestamptz NOT NULL DEFAULT clock_timestamp(),
    attempts        int  NOT NULL DEFAULT 0,
    next_attempt_at timestamptz,  -- NULL: ready now; set by backoff after a failure
    last_error      text,
    dead            bool NOT NULL DEFAULT false
);
CREATE INDEX queue_pending_idx ON mrl.queue (set_id, qid) WHERE NOT dead;
CREATE INDEX queue_set_id_idx ON mrl.queue (set_id, id);

-- Where the database reaches the sidecar (mrl.embed, sync mode). Written by `pgmrl serve` / `pgmrl configure`.
-- Holds the sidecar's token: readable by the owner only.
CREATE TABLE mrl.settings (
    key        text PRIMARY KEY,
    value      text NOT NULL,
    updated_at timestamptz NOT NULL DEFAULT now()
);
REVOKE ALL ON mrl.settings FROM PUBLIC;

$pgmrl_migration$;
INSERT INTO mrl.migrations (name, checksum) VALUES ('001_schema.sql', '4278e3b44caa747fc61e56045ba8f3620ae1d173f6303fb8f233a178d4406723');
ELSIF recorded IS NULL THEN
UPDATE mrl.migrations SET checksum = '4278e3b44caa747fc61e56045ba8f3620ae1d173f6303fb8f233a178d4406723' WHERE name = '001_schema.sql';
ELSIF recorded NOT IN ('4278e3b44caa747fc61e56045ba8f3620ae1d173f6303fb8f233a178d4406723', 'bd2ee26ea5695f7722315ab083acbfe3405a50db0ea4dabad785c0750125a090') THEN
RAISE EXCEPTION 'pgmrl: migration % was changed after it was applied to this database (recorded checksum %, this pgmrl''s %)', '001_schema.sql', recorded, '4278e3b44caa747fc61e56045ba8f3620ae1d173f6303fb8f233a178d4406723'
USING HINT = 'A landed migration must never be edited: restore its text and put the change in a new migration (or install the pgmrl version that applied it).';
END IF; END $pgmrl_run$;

DO $pgmrl_run$ DECLARE recorded text; BEGIN
SELECT checksum INTO recorded FROM mrl.migrations WHERE name = '001a_repair_early_001.sql';
IF NOT FOUND THEN
EXECUTE $pgmrl_migration$
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

$pgmrl_migration$;
INSERT INTO mrl.migrations (name, checksum) VALUES ('001a_repair_early_001.sql', '02e56e7e86daf6d7d000991f7d23de414f59c741b133cd6edccdb7409f791ee6');
ELSIF recorded IS NULL THEN
UPDATE mrl.migrations SET checksum = '02e56e7e86daf6d7d000991f7d23de414f59c741b133cd6edccdb7409f791ee6' WHERE name = '001a_repair_early_001.sql';
ELSIF recorded NOT IN ('02e56e7e86daf6d7d000991f7d23de414f59c741b133cd6edccdb7409f791ee6') THEN
RAISE EXCEPTION 'pgmrl: migration % was changed after it was applied to this database (recorded checksum %, this pgmrl''s %)', '001a_repair_early_001.sql', recorded, '02e56e7e86daf6d7d000991f7d23de414f59c741b133cd6edccdb7409f791ee6'
USING HINT = 'A landed migration must never be edited: restore its text and put the change in a new migration (or install the pgmrl version that applied it).';
END IF; END $pgmrl_run$;

DO $pgmrl_run$ DECLARE recorded text; BEGIN
SELECT checksum INTO recorded FROM mrl.migrations WHERE name = '002_dead_letters_truncation.sql';
IF NOT FOUND THEN
EXECUTE $pgmrl_migration$
-- When an item was dead-lettered, and whether a stored vector came from a text cut to the model's maximum length.
ALTER TABLE mrl.queue ADD COLUMN failed_at timestamptz;
DO $m$
DECLARE
    vt regclass;
BEGIN
    FOR vt IN SELECT vectors_table FROM mrl.embedding_sets LOOP
        EXECUTE format('ALTER TABLE %s ADD COLUMN IF NOT EXISTS truncated bool NOT NULL DEFAULT false', vt);
    END LOOP;
END
$m$;

$pgmrl_migration$;
INSERT INTO mrl.migrations (name, checksum) VALUES ('002_dead_letters_truncation.sql', 'e94535d0d0e73fc482f17508fe6a9955215bbbf79fcea3bea9fa88ee8796c59d');
ELSIF recorded IS NULL THEN
UPDATE mrl.migrations SET checksum = 'e94535d0d0e73fc482f17508fe6a9955215bbbf79fcea3bea9fa88ee8796c59d' WHERE name = '002_dead_letters_truncation.sql';
ELSIF recorded NOT IN ('e94535d0d0e73fc482f17508fe6a9955215bbbf79fcea3bea9fa88ee8796c59d') THEN
RAISE EXCEPTION 'pgmrl: migration % was changed after it was applied to this database (recorded checksum %, this pgmrl''s %)', '002_dead_letters_truncation.sql', recorded, 'e94535d0d0e73fc482f17508fe6a9955215bbbf79fcea3bea9fa88ee8796c59d'
USING HINT = 'A landed migration must never be edited: restore its text and put the change in a new migration (or install the pgmrl version that applied it).';
END IF; END $pgmrl_run$;

DO $pgmrl_run$ DECLARE recorded text; BEGIN
SELECT checksum INTO recorded FROM mrl.migrations WHERE name = '003_alter_sets.sql';
IF NOT FOUND THEN
EXECUTE $pgmrl_migration$
-- A set being rebuilt with another model or coarse dimension (mrl.alter_embedding_set) is a hidden set that
-- replaces its original once it is fully embedded.
ALTER TABLE mrl.embedding_sets ADD COLUMN replaces int REFERENCES mrl.embedding_sets (id);

$pgmrl_migration$;
INSERT INTO mrl.migrations (name, checksum) VALUES ('003_alter_sets.sql', '7cfdc95692c407d6cbae551b83557ff1fad79f8853b7a0a94b60401044fc31f1');
ELSIF recorded IS NULL THEN
UPDATE mrl.migrations SET checksum = '7cfdc95692c407d6cbae551b83557ff1fad79f8853b7a0a94b60401044fc31f1' WHERE name = '003_alter_sets.sql';
ELSIF recorded NOT IN ('7cfdc95692c407d6cbae551b83557ff1fad79f8853b7a0a94b60401044fc31f1') THEN
RAISE EXCEPTION 'pgmrl: migration % was changed after it was applied to this database (recorded checksum %, this pgmrl''s %)', '003_alter_sets.sql', recorded, '7cfdc95692c407d6cbae551b83557ff1fad79f8853b7a0a94b60401044fc31f1'
USING HINT = 'A landed migration must never be edited: restore its text and put the change in a new migration (or install the pgmrl version that applied it).';
END IF; END $pgmrl_run$;

DO $pgmrl_run$ DECLARE recorded text; BEGIN
SELECT checksum INTO recorded FROM mrl.migrations WHERE name = '004_search_tuning.sql';
IF NOT FOUND THEN
EXECUTE $pgmrl_migration$
-- Search defaults chosen per set (mrl.tune, mrl.configure_search) and the binary coarse stage.
ALTER TABLE mrl.embedding_sets ADD COLUMN default_ef_search int CHECK (default_ef_search > 0);
ALTER TABLE mrl.embedding_sets ADD COLUMN binary_coarse_k int NOT NULL DEFAULT 400 CHECK (binary_coarse_k > 0);
ALTER TABLE mrl.embedding_sets ADD COLUMN default_strategy text NOT NULL DEFAULT 'two_stage'
    CHECK (default_strategy IN ('two_stage', 'binary_two_stage', 'hnsw', 'coarse', 'exact'));
ALTER TABLE mrl.embedding_sets ADD COLUMN tuned_at timestamptz;
ALTER TABLE mrl.embedding_sets ADD COLUMN tuned_agreement double precision;
-- The searches gain a filter and a per-set default strategy: the old signatures go, sql/functions re-creates them.
DROP FUNCTION IF EXISTS mrl.two_stage_search(text, "public".vector, int, int, int);
DROP FUNCTION IF EXISTS mrl.two_stage_search(text, text, int, int, int);
DROP FUNCTION IF EXISTS mrl.search(text, text, int, text, int, int);
DROP FUNCTION IF EXISTS mrl.search(text, "public".vector, int, text, int, int);

$pgmrl_migration$;
INSERT INTO mrl.migrations (name, checksum) VALUES ('004_search_tuning.sql', '6a02baf4a859682d3e0644bd774193182b8cfd4c897d9a1f757ff8a7506820bd');
ELSIF recorded IS NULL THEN
UPDATE mrl.migrations SET checksum = '6a02baf4a859682d3e0644bd774193182b8cfd4c897d9a1f757ff8a7506820bd' WHERE name = '004_search_tuning.sql';
ELSIF recorded NOT IN ('6a02baf4a859682d3e0644bd774193182b8cfd4c897d9a1f757ff8a7506820bd') THEN
RAISE EXCEPTION 'pgmrl: migration % was changed after it was applied to this database (recorded checksum %, this pgmrl''s %)', '004_search_tuning.sql', recorded, '6a02baf4a859682d3e0644bd774193182b8cfd4c897d9a1f757ff8a7506820bd'
USING HINT = 'A landed migration must never be edited: restore its text and put the change in a new migration (or install the pgmrl version that applied it).';
END IF; END $pgmrl_run$;

DO $pgmrl_run$ DECLARE recorded text; BEGIN
SELECT checksum INTO recorded FROM mrl.migrations WHERE name = '005_providers_finetune.sql';
IF NOT FOUND THEN
EXECUTE $pgmrl_migration$
-- Remote providers (Ollama, OpenAI-compatible) and fine-tuning datasets.
ALTER TABLE mrl.embedding_configs ADD COLUMN endpoint text;  -- provider base URL; NULL: the sidecar's default
ALTER TABLE mrl.embedding_configs ADD CONSTRAINT embedding_configs_provider_check
    CHECK (provider IN ('sentence-transformers', 'ollama', 'openai'));

-- Query-document pairs for fine-tuning, generated from an embedding set's documents (split by document).
CREATE TABLE mrl.finetune_datasets (
    name       text PRIMARY KEY CHECK (name ~ '^[a-z0-9][a-z0-9._-]{0,62}$'),
    source     jsonb NOT NULL,  -- {"type": "embedding_set", "slug": ...}
    config     jsonb NOT NULL,  -- {"queries_per_doc": 4, "method": ..., "validation_share": ...}
    stats      jsonb,
    created_at timestamptz NOT NULL DEFAULT now()
);
CREATE TABLE mrl.finetune_pairs (
    dataset text NOT NULL REFERENCES mrl.finetune_datasets (name) ON DELETE CASCADE,
    n       int  NOT NULL,
    doc_id  text NOT NULL,
    query   text NOT NULL,
    split   text NOT NULL CHECK (split IN ('train', 'validation')),
    method  text NOT NULL,
    PRIMARY KEY (dataset, n)
);
CREATE INDEX finetune_pairs_split_idx ON mrl.finetune_pairs (dataset, split);

$pgmrl_migration$;
INSERT INTO mrl.migrations (name, checksum) VALUES ('005_providers_finetune.sql', 'd67cef8af1437beb3fcb02ae505d38d6011f9101645c8d885618ba213dffc7e9');
ELSIF recorded IS NULL THEN
UPDATE mrl.migrations SET checksum = 'd67cef8af1437beb3fcb02ae505d38d6011f9101645c8d885618ba213dffc7e9' WHERE name = '005_providers_finetune.sql';
ELSIF recorded NOT IN ('d67cef8af1437beb3fcb02ae505d38d6011f9101645c8d885618ba213dffc7e9') THEN
RAISE EXCEPTION 'pgmrl: migration % was changed after it was applied to this database (recorded checksum %, this pgmrl''s %)', '005_providers_finetune.sql', recorded, 'd67cef8af1437beb3fcb02ae505d38d6011f9101645c8d885618ba213dffc7e9'
USING HINT = 'A landed migration must never be edited: restore its text and put the change in a new migration (or install the pgmrl version that applied it).';
END IF; END $pgmrl_run$;

DO $pgmrl_run$ DECLARE recorded text; BEGIN
SELECT checksum INTO recorded FROM mrl.migrations WHERE name = '006_queue_intake.sql';
IF NOT FOUND THEN
EXECUTE $pgmrl_migration$
-- Bulk writes queue their keys as one array per statement; the worker expands them into mrl.queue rows.
-- (One queue row per written row cost bulk INSERTs 3.6x their time; one array per statement about 1.3x.)
CREATE TABLE mrl.queue_intake (
    bid       bigserial PRIMARY KEY,
    set_id    int    NOT NULL,
    ids       text[] NOT NULL,
    queued_at timestamptz NOT NULL DEFAULT clock_timestamp()
);

$pgmrl_migration$;
INSERT INTO mrl.migrations (name, checksum) VALUES ('006_queue_intake.sql', '9ae7bb60ee0be456c2c523655a16490bc71633f39fa4dd313cd95d1e90106e36');
ELSIF recorded IS NULL THEN
UPDATE mrl.migrations SET checksum = '9ae7bb60ee0be456c2c523655a16490bc71633f39fa4dd313cd95d1e90106e36' WHERE name = '006_queue_intake.sql';
ELSIF recorded NOT IN ('9ae7bb60ee0be456c2c523655a16490bc71633f39fa4dd313cd95d1e90106e36') THEN
RAISE EXCEPTION 'pgmrl: migration % was changed after it was applied to this database (recorded checksum %, this pgmrl''s %)', '006_queue_intake.sql', recorded, '9ae7bb60ee0be456c2c523655a16490bc71633f39fa4dd313cd95d1e90106e36'
USING HINT = 'A landed migration must never be edited: restore its text and put the change in a new migration (or install the pgmrl version that applied it).';
END IF; END $pgmrl_run$;

DO $pgmrl_run$ DECLARE recorded text; BEGIN
SELECT checksum INTO recorded FROM mrl.migrations WHERE name = '007_security.sql';
IF NOT FOUND THEN
EXECUTE $pgmrl_migration$
-- Shared databases: internal helpers move to their own schema, the queue is no longer writable by PUBLIC (writers
-- reach it only through the SECURITY DEFINER triggers), the registry shows each role only the sets whose source it
-- may read, and the columns a set's text reads are recorded so that the worker can refuse a changed type.
CREATE SCHEMA IF NOT EXISTS mrl_internal;
COMMENT ON SCHEMA mrl_internal IS 'pgmrl: internal helpers (not an API; EXECUTE granted only where a public function needs it)';

-- Source columns the text expression (and the key) read; the worker checks their types before every batch.
ALTER TABLE mrl.embedding_sets ADD COLUMN text_columns name[];

REVOKE INSERT, UPDATE, DELETE, TRUNCATE ON mrl.queue, mrl.queue_intake FROM PUBLIC;
REVOKE ALL ON SEQUENCE mrl.queue_qid_seq, mrl.queue_intake_bid_seq FROM PUBLIC;

-- Keys are never NULL (they come from a primary key).
DELETE FROM mrl.queue_intake WHERE array_position(ids, NULL) IS NOT NULL;
ALTER TABLE mrl.queue_intake ADD CONSTRAINT queue_intake_ids_check CHECK (array_position(ids, NULL) IS NULL);

ALTER TABLE mrl.embedding_sets ENABLE ROW LEVEL SECURITY;
ALTER TABLE mrl.rotation_components ENABLE ROW LEVEL SECURITY;

-- Who owns a set or a registered config (set by the registry's own trigger, never by the writer): set administrators
-- may change only their own. Existing sets belong to the owner of their vectors table.
ALTER TABLE mrl.embedding_sets ADD COLUMN owner oid;
UPDATE mrl.embedding_sets e SET owner = c.relowner FROM pg_class c WHERE c.oid = e.vectors_table;
ALTER TABLE mrl.embedding_configs ADD COLUMN owner oid;
ALTER TABLE mrl.embedding_configs ENABLE ROW LEVEL SECURITY;
ALTER TABLE mrl.queue ENABLE ROW LEVEL SECURITY;
ALTER TABLE mrl.queue_intake ENABLE ROW LEVEL SECURITY;

-- Keys of any length (a bytea or numeric key is far longer as text than the index row limit allows): the queue's
-- lookup index holds a digest of the key, not the key.
DROP INDEX mrl.queue_set_id_idx;
CREATE INDEX queue_set_id_idx ON mrl.queue (set_id, md5(id));

$pgmrl_migration$;
INSERT INTO mrl.migrations (name, checksum) VALUES ('007_security.sql', '1be3eabc4e78b99c718510a865d1da281fdd33c5a10733b2cf71c8ad077098bc');
ELSIF recorded IS NULL THEN
UPDATE mrl.migrations SET checksum = '1be3eabc4e78b99c718510a865d1da281fdd33c5a10733b2cf71c8ad077098bc' WHERE name = '007_security.sql';
ELSIF recorded NOT IN ('1be3eabc4e78b99c718510a865d1da281fdd33c5a10733b2cf71c8ad077098bc', '0d47e65bb27ae73e0341c9d27b571cc79533af9dd34386d3492e074951a5c20b', 'ed1576ae5c6c63f7491cd77ef9f0ad246aebf97f625af49ef8a70460692a29f7') THEN
RAISE EXCEPTION 'pgmrl: migration % was changed after it was applied to this database (recorded checksum %, this pgmrl''s %)', '007_security.sql', recorded, '1be3eabc4e78b99c718510a865d1da281fdd33c5a10733b2cf71c8ad077098bc'
USING HINT = 'A landed migration must never be edited: restore its text and put the change in a new migration (or install the pgmrl version that applied it).';
END IF; END $pgmrl_run$;

DO $pgmrl_run$ DECLARE recorded text; BEGIN
SELECT checksum INTO recorded FROM mrl.migrations WHERE name = '007a_repair_early_007.sql';
IF NOT FOUND THEN
EXECUTE $pgmrl_migration$
-- Run once. 007_security.sql was edited after it landed: databases installed at dfa4366 recorded it without the
-- owner columns and the row-level security of the configs and the queue (added in fe255e2), and those installed at
-- dfa4366 or fe255e2 without the digest index on the queue's keys (added in f1b8e09). This adds what such a
-- database lacks, as today's 007 would have; on any other database it changes nothing.

DO $repair$
BEGIN
    IF NOT EXISTS (SELECT FROM pg_catalog.pg_attribute WHERE attrelid = 'mrl.embedding_sets'::regclass
                                                       AND attname = 'owner' AND NOT attisdropped) THEN
        ALTER TABLE mrl.embedding_sets ADD COLUMN owner oid;
        UPDATE mrl.embedding_sets e SET owner = c.relowner FROM pg_catalog.pg_class c WHERE c.oid = e.vectors_table;
    END IF;
    IF NOT EXISTS (SELECT FROM pg_catalog.pg_attribute WHERE attrelid = 'mrl.embedding_configs'::regclass
                                                       AND attname = 'owner' AND NOT attisdropped) THEN
        ALTER TABLE mrl.embedding_configs ADD COLUMN owner oid;
        ALTER TABLE mrl.embedding_configs ENABLE ROW LEVEL SECURITY;
        ALTER TABLE mrl.queue ENABLE ROW LEVEL SECURITY;
        ALTER TABLE mrl.queue_intake ENABLE ROW LEVEL SECURITY;
    END IF;
    IF coalesce(pg_catalog.pg_get_indexdef(pg_catalog.to_regclass('mrl.queue_set_id_idx')), '')
       NOT LIKE '%md5(id)%' THEN
        DROP INDEX IF EXISTS mrl.queue_set_id_idx;
        CREATE INDEX queue_set_id_idx ON mrl.queue (set_id, md5(id));
    END IF;
END
$repair$;

$pgmrl_migration$;
INSERT INTO mrl.migrations (name, checksum) VALUES ('007a_repair_early_007.sql', '908e5a5f9dbebc07e02277c6d95886f5485b8f28a7663200e45b6c24797a5a78');
ELSIF recorded IS NULL THEN
UPDATE mrl.migrations SET checksum = '908e5a5f9dbebc07e02277c6d95886f5485b8f28a7663200e45b6c24797a5a78' WHERE name = '007a_repair_early_007.sql';
ELSIF recorded NOT IN ('908e5a5f9dbebc07e02277c6d95886f5485b8f28a7663200e45b6c24797a5a78') THEN
RAISE EXCEPTION 'pgmrl: migration % was changed after it was applied to this database (recorded checksum %, this pgmrl''s %)', '007a_repair_early_007.sql', recorded, '908e5a5f9dbebc07e02277c6d95886f5485b8f28a7663200e45b6c24797a5a78'
USING HINT = 'A landed migration must never be edited: restore its text and put the change in a new migration (or install the pgmrl version that applied it).';
END IF; END $pgmrl_run$;

DO $pgmrl_run$ DECLARE recorded text; BEGIN
SELECT checksum INTO recorded FROM mrl.migrations WHERE name = '008_install_record.sql';
IF NOT FOUND THEN
EXECUTE $pgmrl_migration$
-- Run once. What the last install put in place: a digest of the function files it ran (sql/functions, sql/plpython,
-- sql/fallback), written by the install script's last statement, so that a worker can tell a database whose functions
-- are not its own code's (pgmrl.schema.schema_problem) instead of failing on a missing function.
CREATE TABLE mrl.install_record (
    singleton        bool PRIMARY KEY DEFAULT true CHECK (singleton),
    functions_digest text NOT NULL,
    pgmrl_version    text NOT NULL,
    installed_at     timestamptz NOT NULL DEFAULT now()
);
COMMENT ON TABLE mrl.install_record IS
    'pgmrl: the function files the last `pgmrl install` ran (digest) and its version';

$pgmrl_migration$;
INSERT INTO mrl.migrations (name, checksum) VALUES ('008_install_record.sql', '97ed0a46f6b45ba757af887f30b66109d689b2b9e218c8744ae921b12b6afc14');
ELSIF recorded IS NULL THEN
UPDATE mrl.migrations SET checksum = '97ed0a46f6b45ba757af887f30b66109d689b2b9e218c8744ae921b12b6afc14' WHERE name = '008_install_record.sql';
ELSIF recorded NOT IN ('97ed0a46f6b45ba757af887f30b66109d689b2b9e218c8744ae921b12b6afc14') THEN
RAISE EXCEPTION 'pgmrl: migration % was changed after it was applied to this database (recorded checksum %, this pgmrl''s %)', '008_install_record.sql', recorded, '97ed0a46f6b45ba757af887f30b66109d689b2b9e218c8744ae921b12b6afc14'
USING HINT = 'A landed migration must never be edited: restore its text and put the change in a new migration (or install the pgmrl version that applied it).';
END IF; END $pgmrl_run$;

DO $pgmrl_run$ DECLARE recorded text; BEGIN
SELECT checksum INTO recorded FROM mrl.migrations WHERE name = '009_chunks_full_text.sql';
IF NOT FOUND THEN
EXECUTE $pgmrl_migration$
-- Run once. Long texts cut into chunks (each embedded on its own), and a full-text leg for hybrid search.
--   chunking            NULL: one vector per row (its beginning, as before); else how texts are cut, e.g.
--                       {"method": "tokens", "size": 256, "overlap": 32} or {"method": "paragraphs", ...}
--   text_search_config  the text search configuration of the set's tsvector (mrl.hybrid_search)
ALTER TABLE mrl.embedding_sets ADD COLUMN chunking jsonb;
ALTER TABLE mrl.embedding_sets ADD COLUMN text_search_config text NOT NULL DEFAULT 'english';

-- Existing sets gain the tsvector of each row's text (GIN-indexed). The worker fills it for rows already embedded:
-- every stored key is queued once (an unchanged text is not embedded again, only its tsvector written).
DO $fts$
DECLARE
    e record;
BEGIN
    FOR e IN SELECT s.id, s.slug, s.vectors_table FROM mrl.embedding_sets s
               JOIN pg_catalog.pg_class c ON c.oid = s.vectors_table LOOP
        EXECUTE format('ALTER TABLE %s ADD COLUMN IF NOT EXISTS tsv tsvector', e.vectors_table);
        -- rows grow past the toast threshold: their words go out of line, never the vectors
        EXECUTE format('ALTER TABLE %s ALTER COLUMN embedding SET STORAGE MAIN, ALTER COLUMN coarse SET STORAGE MAIN', e.vectors_table);
        EXECUTE format('CREATE INDEX IF NOT EXISTS %I ON %s USING gin (tsv)', e.slug || '_fts', e.vectors_table);
        EXECUTE format('INSERT INTO mrl.queue_intake (set_id, ids)
                        SELECT $1, array_agg(x.id::text) FROM (SELECT id, (row_number() OVER () - 1) / 5000 AS g FROM %s) x
                         GROUP BY x.g', e.vectors_table) USING e.id;
    END LOOP;
END
$fts$;

$pgmrl_migration$;
INSERT INTO mrl.migrations (name, checksum) VALUES ('009_chunks_full_text.sql', '9c1a0d66ae4d806c5fd54b1c93f07411b66c24295f01fb5125cf6c216eea1ab6');
ELSIF recorded IS NULL THEN
UPDATE mrl.migrations SET checksum = '9c1a0d66ae4d806c5fd54b1c93f07411b66c24295f01fb5125cf6c216eea1ab6' WHERE name = '009_chunks_full_text.sql';
ELSIF recorded NOT IN ('9c1a0d66ae4d806c5fd54b1c93f07411b66c24295f01fb5125cf6c216eea1ab6') THEN
RAISE EXCEPTION 'pgmrl: migration % was changed after it was applied to this database (recorded checksum %, this pgmrl''s %)', '009_chunks_full_text.sql', recorded, '9c1a0d66ae4d806c5fd54b1c93f07411b66c24295f01fb5125cf6c216eea1ab6'
USING HINT = 'A landed migration must never be edited: restore its text and put the change in a new migration (or install the pgmrl version that applied it).';
END IF; END $pgmrl_run$;

-- 005_embed_base.sql
-- Whether this server can embed text from SQL: plpython3u (the sidecar's HTTP API) or dblink (the sidecar's
-- PostgreSQL-protocol endpoint) installed mrl_internal._http_embed; without either, the fallback says what to do.
CREATE OR REPLACE FUNCTION mrl.sql_embedding_available()
RETURNS bool
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pg_temp
AS $fn$
BEGIN
    RETURN to_regprocedure('mrl_internal._embed_transport()') IS NOT NULL AND mrl_internal._embed_transport() <> 'none';
END
$fn$;


-- 010_lookup.internal.sql
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


-- 010_lookup.sql
-- Lookups shared by every other function. Idempotent: CREATE OR REPLACE.

-- The coarse (truncated) vector of a full vector, exactly as stored for the set:
--   prefix:   l2_normalize(embedding[1:d])                 (MRL models)
--   rotation: l2_normalize((R . embedding)[1:d])          (fitted principal directions)
-- NULL when the set keeps no coarse vector or its rotation is not fitted yet.
-- Queries are projected with the same function, so documents and queries always agree.
CREATE OR REPLACE FUNCTION mrl.coarse_of(set_id int, embedding "public".vector, coarse_dim int DEFAULT NULL)
RETURNS "public".halfvec
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pg_temp
AS $fn$
DECLARE
    s mrl.embedding_sets;
    d int;
    projected "public".vector;
BEGIN
    SELECT * INTO s FROM mrl.embedding_sets e WHERE e.id = coarse_of.set_id;
    IF NOT FOUND OR embedding IS NULL THEN
        RETURN NULL;
    END IF;
    d := coalesce(coarse_dim, s.truncate_dim);
    IF s.coarse_method = 'prefix' THEN
        RETURN "public".l2_normalize("public".subvector(embedding, 1, d))::"public".halfvec;
    ELSIF s.coarse_method = 'rotation' AND s.rotation_version > 0 THEN
        SELECT array_agg(-(embedding OPERATOR("public".<#>) c.direction) ORDER BY c.component)::real[]::"public".vector
          INTO projected
          FROM mrl.rotation_components c
         WHERE c.set_id = s.id AND c.component < d;
        RETURN "public".l2_normalize(projected)::"public".halfvec;
    END IF;
    RETURN NULL;
END
$fn$;


-- 020_text_expr.internal.sql
-- Internal helpers (schema mrl_internal) of 020_text_expr.sql: not part of the API; EXECUTE is granted in 090_privileges.sql.

-- Object ids below this were created by initdb (built in); anything else was created by some role.
CREATE OR REPLACE FUNCTION mrl_internal._first_normal_oid()
RETURNS oid
LANGUAGE sql IMMUTABLE
SET search_path = pg_catalog, pg_temp
AS $fn$ SELECT 16384::oid $fn$;

-- Raises unless every column named has a built-in type. Used at creation and by the worker and the triggers
-- before every read, so that a type changed afterwards (ALTER COLUMN TYPE, a dropped and re-added column) is refused.
CREATE OR REPLACE FUNCTION mrl_internal._check_columns(source regclass, columns name[], what text)
RETURNS void
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pg_temp
AS $fn$
DECLARE
    col name;
    typ oid;
BEGIN
    IF columns IS NULL THEN
        RAISE EXCEPTION 'the % of % was never validated', what, source USING ERRCODE = 'object_not_in_prerequisite_state',
              HINT = 'Run `pgmrl install` again (it re-validates every set), or recreate the set.';
    END IF;
    FOREACH col IN ARRAY columns LOOP
        SELECT a.atttypid INTO typ FROM pg_attribute a
         WHERE a.attrelid = source AND a.attname = col AND a.attnum > 0 AND NOT a.attisdropped;
        IF NOT FOUND THEN
            RAISE EXCEPTION 'column "%" read by the % of % no longer exists', col, what, source
                USING ERRCODE = 'undefined_column';
        END IF;
        IF typ >= mrl_internal._first_normal_oid() THEN
            RAISE EXCEPTION 'column "%" of % has type %, which is not built in: pgmrl does not read it', col, source, typ::regtype
                USING ERRCODE = 'datatype_mismatch',
                      HINT = 'A type, domain or cast defined by a role would run that role''s code in the worker and the triggers. '
                             'Embed a column of a built-in type (text, varchar, jsonb, ...), e.g. a generated column.';
        END IF;
    END LOOP;
END
$fn$;

-- Raises unless the current role may read the source (a set's creator must).
CREATE OR REPLACE FUNCTION mrl_internal._check_readable(source regclass)
RETURNS void
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pg_temp
AS $fn$
BEGIN
    IF NOT has_table_privilege(source, 'SELECT') THEN
        RAISE EXCEPTION 'permission denied for table %: the role creating an embedding set must be able to read its source', source
            USING ERRCODE = 'insufficient_privilege',
                  HINT = format('GRANT SELECT ON %s TO %I (as its owner), or create the set as a role that can read it.', source, current_user);
    END IF;
END
$fn$;

-- Returns the canonical SQL expression to embed and the source columns it reads. Runs as the caller (who must be
-- able to read the source); needs the TEMP privilege for the throw-away view.
CREATE OR REPLACE FUNCTION mrl_internal._text_expr(source regclass, text_column text, OUT expr text, OUT columns name[])
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pg_temp
AS $fn$
DECLARE
    stripped text;
    view_oid oid;
    tree text;
    def text;
    qualified text;
    suffix text;
    bad text;
    hint text := 'Use a column name or a single expression over the table''s columns with built-in text functions, e.g. '
                 'coalesce(title, '''') || '' '' || body; or add a generated column and embed that.';
BEGIN
    IF text_column IS NULL OR btrim(text_column) = '' THEN
        RAISE EXCEPTION 'text_column is empty'
            USING ERRCODE = 'invalid_parameter_value',
                  HINT = 'Name the column to embed, or give an expression such as title || '' '' || body.';
    END IF;
    PERFORM mrl_internal._check_readable(source);
    -- One expression only: no statement separators or comments outside literals and quoted identifiers.
    stripped := regexp_replace(text_column, '''(?:[^'']|'''')*''', ' ', 'g');
    stripped := regexp_replace(stripped, '"(?:[^"]|"")*"', ' ', 'g');
    IF stripped ~ '[;$\\]|--|/\*|''|"' THEN
        RAISE EXCEPTION 'text expression % is not allowed: it contains a statement separator, comment, dollar quote or unbalanced quote', quote_literal(text_column)
            USING ERRCODE = 'invalid_parameter_value', HINT = hint;
    END IF;
    IF stripped ~* '\m(select|insert|update|delete|into|copy|execute|call|do|values|table|lateral|returning|merge)\M' THEN
        RAISE EXCEPTION 'text expression % is not allowed: subqueries and statements are refused', quote_literal(text_column)
            USING ERRCODE = 'invalid_parameter_value', HINT = hint;
    END IF;
    qualified := format('%I.%I', (SELECT n.nspname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace WHERE c.oid = source),
                        (SELECT c.relname FROM pg_class c WHERE c.oid = source));
    DROP VIEW IF EXISTS pg_temp.pgmrl_text_expr_check;
    BEGIN
        EXECUTE format('CREATE TEMP VIEW pgmrl_text_expr_check AS SELECT (%s)::text AS mrl_text FROM %s mrl_src',
                       text_column, qualified);
    EXCEPTION
        WHEN insufficient_privilege THEN
            RAISE EXCEPTION 'cannot check text expression %: %', quote_literal(text_column), SQLERRM
                USING ERRCODE = 'insufficient_privilege', HINT = 'The role creating a set needs the TEMP privilege on the database.';
        WHEN OTHERS THEN
            RAISE EXCEPTION 'text expression % is not valid for table %: %', quote_literal(text_column), source, SQLERRM
                USING ERRCODE = 'invalid_parameter_value',
                      HINT = format('Columns of %s: %s.', source,
                                    (SELECT string_agg(quote_ident(a.attname), ', ' ORDER BY a.attnum)
                                       FROM pg_attribute a WHERE a.attrelid = source AND a.attnum > 0 AND NOT a.attisdropped));
    END;
    view_oid := 'pg_temp.pgmrl_text_expr_check'::regclass;
    SELECT r.ev_action::text INTO tree FROM pg_rewrite r WHERE r.ev_class = view_oid;

    -- The shape: one output column over the source alone, no subqueries, aggregates, windows, set-returning functions.
    IF tree !~ ':hasAggs false :hasWindowFuncs false :hasTargetSRFs false :hasSubLinks false'
       OR tree ~ '\{(SUBLINK|AGGREF|WINDOWFUNC|GROUPINGFUNC|NEXTVALUEEXPR|PARAM|XMLEXPR|SQLVALUEFUNCTION|CURRENTOFEXPR|MERGESUPPORTFUNC) '
       OR (SELECT count(*) FROM regexp_matches(tree, '\{TARGETENTRY ', 'g')) <> 1
       OR tree !~ ':quals <>\}'
       OR tree ~ '\{VAR :varno \d+ :varattno 0 '  -- a whole-row reference reads every column, present and future
       OR tree ~ ':(groupClause|havingQual|sortClause|limitCount|limitOffset|distinctClause|windowClause|cteList) [^<]' THEN
        DROP VIEW pg_temp.pgmrl_text_expr_check;
        RAISE EXCEPTION 'text expression % is not allowed: only a single expression over the table''s own columns (no subqueries, aggregates or other tables)', quote_literal(text_column)
            USING ERRCODE = 'invalid_parameter_value', HINT = hint;
    END IF;

    SELECT array_agg(a.attname ORDER BY a.attnum) INTO columns
      FROM pg_attribute a
     WHERE a.attrelid = source AND a.attnum IN (
           SELECT d.refobjsubid FROM pg_depend d JOIN pg_rewrite r ON d.classid = 'pg_rewrite'::regclass AND d.objid = r.oid
            WHERE r.ev_class = view_oid AND d.refclassid = 'pg_class'::regclass AND d.refobjid = source AND d.refobjsubid > 0);
    IF columns IS NOT NULL THEN
        PERFORM mrl_internal._check_columns(source, columns, 'text expression');
    END IF;

    -- Functions: built-in, and on the allow-list or a built-in cast function.
    SELECT string_agg(DISTINCT coalesce(f::regprocedure::text, f::text), ', ') INTO bad
      FROM (SELECT m[1]::oid AS f FROM regexp_matches(tree, ':(?:funcid|aggfnoid|winfnoid|hashfuncid|negfuncid) ([1-9][0-9]*)', 'g') m) x
     WHERE NOT EXISTS (SELECT FROM pg_proc p
                        WHERE p.oid = x.f AND p.oid < mrl_internal._first_normal_oid()
                          AND p.pronamespace = 'pg_catalog'::regnamespace AND p.provolatile <> 'v' AND NOT p.proretset
                          AND (p.proname = ANY (mrl.allowed_text_functions())
                               OR EXISTS (SELECT FROM pg_cast c WHERE c.castfunc = p.oid AND c.oid < mrl_internal._first_normal_oid())));
    IF bad IS NULL THEN
        -- Operators: built in, not volatile.
        SELECT string_agg(DISTINCT coalesce(o::regoperator::text, o::text), ', ') INTO bad
          FROM (SELECT m[1]::oid AS o FROM regexp_matches(tree, ':opno ([1-9][0-9]*)', 'g') m) x
         WHERE NOT EXISTS (SELECT FROM pg_operator op JOIN pg_proc p ON p.oid = op.oprcode
                            WHERE op.oid = x.o AND op.oid < mrl_internal._first_normal_oid() AND p.provolatile <> 'v');
    END IF;
    IF bad IS NULL THEN
        -- Every other object the view depends on: the source's columns, or something built in.
        SELECT string_agg(pg_describe_object(d.refclassid, d.refobjid, d.refobjsubid), ', ') INTO bad
          FROM pg_depend d JOIN pg_rewrite r ON d.classid = 'pg_rewrite'::regclass AND d.objid = r.oid
         WHERE r.ev_class = view_oid AND NOT (d.refclassid = 'pg_class'::regclass AND d.refobjid = view_oid)
           AND NOT (d.refclassid = 'pg_class'::regclass AND d.refobjid = source AND d.refobjsubid > 0)
           AND d.refobjid >= mrl_internal._first_normal_oid();
    END IF;
    IF bad IS NOT NULL THEN
        DROP VIEW pg_temp.pgmrl_text_expr_check;
        RAISE EXCEPTION 'text expression % uses %, which is not an allowed text function, operator, cast or type (built-in ones only)', quote_literal(text_column), bad
            USING ERRCODE = 'invalid_parameter_value',
                  HINT = format('Allowed functions: %s (and built-in operators and casts). Or add a generated column and embed that.',
                                array_to_string(mrl.allowed_text_functions(), ', '));
    END IF;

    IF columns IS NULL THEN
        DROP VIEW pg_temp.pgmrl_text_expr_check;
        RAISE EXCEPTION 'text expression % reads no column of %', quote_literal(text_column), source
            USING ERRCODE = 'invalid_parameter_value', HINT = hint;
    END IF;

    -- The canonical form: PostgreSQL's deparse of what it parsed (built-in names resolve in pg_catalog).
    def := rtrim(btrim(pg_get_viewdef(view_oid), E' \n\t'), ';');
    DROP VIEW pg_temp.pgmrl_text_expr_check;
    suffix := 'mrl_src';
    FOREACH suffix IN ARRAY ARRAY['mrl_src', qualified, 'FROM', 'AS mrl_text'] LOOP
        IF right(def, length(suffix)) <> suffix THEN
            RAISE EXCEPTION 'cannot canonicalise text expression % (deparsed as %)', quote_literal(text_column), def
                USING ERRCODE = 'internal_error';
        END IF;
        def := rtrim(left(def, length(def) - length(suffix)), E' \n\t');
    END LOOP;
    IF def !~ '^SELECT\s' THEN
        RAISE EXCEPTION 'cannot canonicalise text expression % (deparsed as %)', quote_literal(text_column), def
            USING ERRCODE = 'internal_error';
    END IF;
    expr := btrim(substr(def, 7), E' \n\t');
END
$fn$;


-- 020_text_expr.sql
-- Validation of the text a set embeds: a column name or an expression over the source's columns.
--
-- What is checked is what PostgreSQL will execute, not the text: the expression is parsed by PostgreSQL into a
-- temporary view over the source, and the view's parse tree and dependencies are inspected. Every function must be
-- a built-in pg_catalog function on the allow-list below (or a built-in cast function), every operator and type
-- built in, every column of the source of a built-in type; no subqueries, aggregates or other relations. The set
-- then stores PostgreSQL's own deparse of the expression (a canonical form), never the caller's string.
--
-- Why: the triggers (SECURITY DEFINER) and the worker evaluate the expression; anything a table owner or another
-- role defined (a function, an operator, a cast, a type) would run with their privileges.

CREATE OR REPLACE FUNCTION mrl.allowed_text_functions()
RETURNS text[]
LANGUAGE sql IMMUTABLE
SET search_path = pg_catalog, pg_temp
AS $fn$
    SELECT ARRAY['coalesce', 'concat', 'concat_ws', 'lower', 'upper', 'initcap', 'trim', 'btrim', 'ltrim',
                 'rtrim', 'substr', 'substring', 'left', 'right', 'replace', 'nullif', 'regexp_replace',
                 'translate', 'array_to_string', 'to_char', 'format', 'length', 'split_part', 'textcat',
                 'greatest', 'least', 'jsonb_extract_path_text', 'json_extract_path_text', 'normalize']
$fn$;

COMMENT ON FUNCTION mrl.allowed_text_functions() IS
    'The built-in functions a set''s text expression may call (besides built-in operators and casts).';


-- 025_guards.internal.sql
-- What the worker, the triggers and the searches check before they touch a set's tables. Whatever a role attaches to
-- a table runs with the privileges of whoever reads or writes it: a source's row-level security policies run as the
-- worker that reads it, a vectors table's triggers, rules, policies, defaults, constraints and index expressions as
-- the worker (or a searcher) that writes or reads it. So pgmrl reads and writes only tables that carry nothing but
-- built-in code (and pgvector's).

-- Whether an object is built in (created by initdb) or part of the pgvector extension.
CREATE OR REPLACE FUNCTION mrl_internal._trusted_object(classid oid, objid oid)
RETURNS bool
LANGUAGE sql STABLE
SET search_path = pg_catalog, pg_temp
AS $fn$
    SELECT objid < mrl_internal._first_normal_oid()
        OR EXISTS (SELECT FROM pg_depend e JOIN pg_extension x ON x.oid = e.refobjid
                    WHERE e.classid = _trusted_object.classid AND e.objid = _trusted_object.objid AND e.deptype = 'e'
                      AND e.refclassid = 'pg_extension'::regclass AND x.extname = 'vector')
$fn$;

-- Whether a vectors table's row-level security policies are other than pgmrl's (the only code a SELECT of it runs).
-- pgmrl's policies call only pinned built-in functions, so they depend on nothing but the table. Cheap: every
-- search checks it.
CREATE OR REPLACE FUNCTION mrl_internal._policies_tampered(vt regclass)
RETURNS bool
LANGUAGE sql STABLE
SET search_path = pg_catalog, pg_temp
AS $fn$
    SELECT EXISTS (SELECT FROM pg_policy p WHERE p.polrelid = vt AND (NOT p.polpermissive OR p.polname NOT IN
                     ('mrl_source_readers', 'mrl_worker', 'mrl_sync_writers', 'mrl_sync_updaters', 'mrl_sync_deleters')))
        OR EXISTS (SELECT FROM pg_policy p
                    CROSS JOIN LATERAL (SELECT FROM pg_depend d
                                         WHERE d.classid = 'pg_policy'::regclass AND d.objid = p.oid
                                           AND NOT (d.refclassid = 'pg_class'::regclass AND d.refobjid = vt) OFFSET 0) z
                    WHERE p.polrelid = vt)
$fn$;

-- What the planner may run while it plans any query on a table: the expressions and predicates of its indexes and
-- its extended statistics are simplified, and a function with constant arguments in them is called then, as the
-- user planning the query. NULL when they call only built-in (and pgvector's) code; else what they call.
DROP FUNCTION IF EXISTS mrl_internal._planner_code(regclass);  -- (an earlier one-argument form)
CREATE OR REPLACE FUNCTION mrl_internal._planner_code(rel regclass, with_defaults bool DEFAULT false)
RETURNS text
LANGUAGE sql STABLE
SET search_path = pg_catalog, pg_temp
AS $fn$
    SELECT string_agg(DISTINCT r.what, ', ')
      FROM (SELECT 'pg_class'::regclass AS classid, i.indexrelid AS objid FROM pg_index i WHERE i.indrelid = rel
            UNION ALL
            SELECT 'pg_statistic_ext'::regclass, x.oid FROM pg_statistic_ext x WHERE x.stxrelid = rel
            UNION ALL  -- with_defaults: also what column defaults, generated columns and constraints call (run on writes)
            SELECT 'pg_attrdef'::regclass, a.oid FROM pg_attrdef a WHERE with_defaults AND a.adrelid = rel
            UNION ALL
            SELECT 'pg_constraint'::regclass, c.oid FROM pg_constraint c WHERE with_defaults AND c.conrelid = rel) o
    CROSS JOIN LATERAL (
           SELECT pg_describe_object(d.refclassid, d.refobjid, 0) AS what
             FROM pg_depend d
            WHERE d.classid = o.classid AND d.objid = o.objid
              AND d.refclassid IN ('pg_proc'::regclass, 'pg_operator'::regclass, 'pg_type'::regclass, 'pg_opclass'::regclass,
                                   'pg_opfamily'::regclass, 'pg_collation'::regclass)
              AND d.refobjid >= mrl_internal._first_normal_oid()
              AND (SELECT e.refobjid FROM pg_depend e
                    WHERE e.classid = d.refclassid AND e.objid = d.refobjid AND e.deptype = 'e' LIMIT 1)
                  IS DISTINCT FROM (SELECT x.oid FROM pg_extension x WHERE x.extname = 'vector')
           OFFSET 0) r  -- (per-object index lookups, never a join over all of pg_depend: every search runs this)
$fn$;

-- Whether reading a vectors table could run a role's code: policies other than pgmrl's, inherited children (whose
-- indexes the planner also looks at), or index and statistics expressions (see above). What every search checks.
CREATE OR REPLACE FUNCTION mrl_internal._read_unsafe(vt regclass)
RETURNS bool
LANGUAGE sql STABLE
SET search_path = pg_catalog, pg_temp
AS $fn$
    SELECT mrl_internal._policies_tampered(vt) OR EXISTS (SELECT FROM pg_inherits WHERE inhparent = vt)
        OR mrl_internal._planner_code(vt) IS NOT NULL
$fn$;

-- NULL when a vectors table carries only what pgmrl put there; else what is wrong.
CREATE OR REPLACE FUNCTION mrl_internal._vectors_problem(vt regclass)
RETURNS text
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pg_temp
AS $fn$
DECLARE
    bad text;
BEGIN
    IF vt IS NULL OR NOT EXISTS (SELECT FROM pg_class WHERE oid = vt AND relnamespace = 'mrl_data'::regnamespace AND relkind = 'r') THEN
        RETURN format('%s is not a vectors table in mrl_data', vt);
    END IF;
    SELECT string_agg(format('trigger %I', tgname), ', ') INTO bad FROM pg_trigger WHERE tgrelid = vt AND NOT tgisinternal;
    IF bad IS NULL THEN
        SELECT string_agg(format('rule %I', rulename), ', ') INTO bad FROM pg_rewrite WHERE ev_class = vt;
    END IF;
    IF bad IS NULL THEN
        SELECT string_agg(format('inheriting table %s', inhrelid::regclass), ', ') INTO bad FROM pg_inherits WHERE inhparent = vt;
    END IF;
    IF bad IS NULL AND mrl_internal._policies_tampered(vt) THEN
        SELECT string_agg(format('policy %I', polname), ', ') INTO bad FROM pg_policy WHERE polrelid = vt;
    END IF;
    IF bad IS NULL THEN
        SELECT string_agg(format('column %I of type %s', a.attname, a.atttypid::regtype), ', ') INTO bad
          FROM pg_attribute a
         WHERE a.attrelid = vt AND a.attnum > 0 AND NOT a.attisdropped
           AND NOT mrl_internal._trusted_object('pg_type'::regclass, a.atttypid);
    END IF;
    IF bad IS NULL THEN
        bad := mrl_internal._planner_code(vt, true);
    END IF;
    RETURN CASE WHEN bad IS NULL THEN NULL
                ELSE format('%s carries %s, which pgmrl did not create', vt, bad) END;
END
$fn$;

-- NULL when reading a source runs no role's code (row-level security policies, planner-evaluated expressions);
-- else what would run. Checked at creation, by the worker, by filtered searches and by mrl.set_status.
CREATE OR REPLACE FUNCTION mrl_internal._source_problem(source regclass)
RETURNS text
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pg_temp
AS $fn$
DECLARE
    code text;
BEGIN
    IF (SELECT relrowsecurity FROM pg_class WHERE oid = source) THEN
        RETURN format('%s has row-level security enabled: its policies would run as whoever reads it (the worker, '
                      'a searcher), and hide rows from the worker', source);
    END IF;
    code := mrl_internal._planner_code(source);
    IF code IS NOT NULL THEN
        RETURN format('the indexes or statistics of %s call %s: the planner would run them as whoever reads it '
                      '(the worker, a searcher)', source, code);
    END IF;
    RETURN NULL;
END
$fn$;

-- NULL when the set's tables are safe to read and write; else what is wrong.
CREATE OR REPLACE FUNCTION mrl_internal._tables_problem(s mrl.embedding_sets)
RETURNS text
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pg_temp
AS $fn$
DECLARE
    problem text;
BEGIN
    IF NOT EXISTS (SELECT FROM pg_class WHERE oid = s.source) THEN
        RETURN format('the source table of embedding set "%s" was dropped', s.slug);
    END IF;
    problem := mrl_internal._source_problem(s.source);
    IF problem IS NOT NULL THEN
        RETURN problem;
    END IF;
    BEGIN
        PERFORM mrl_internal._check_columns(s.source, s.text_columns || s.pk_column, format('embedding set "%s"', s.slug));
    EXCEPTION WHEN OTHERS THEN
        RETURN SQLERRM;
    END;
    RETURN mrl_internal._vectors_problem(s.vectors_table);
END
$fn$;

-- Raises (42501) unless the set's tables are safe to read and write.
CREATE OR REPLACE FUNCTION mrl_internal._check_tables(s mrl.embedding_sets)
RETURNS void
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pg_temp
AS $fn$
DECLARE
    problem text := mrl_internal._tables_problem(s);
BEGIN
    IF problem IS NOT NULL THEN
        RAISE EXCEPTION 'embedding set "%" is refused: %', s.slug, problem
            USING ERRCODE = 'insufficient_privilege',
                  HINT = 'pgmrl reads and writes only tables that run no role''s code: remove what was added (or disable row-level security on the source), or recreate the set.';
    END IF;
END
$fn$;


-- 027_capture.internal.sql
-- Change capture: the statement-level triggers of a set and what they check before they queue anything.

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


-- 028_set_checks.internal.sql
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
    RETURN NEW;
END
$fn$;

DROP TRIGGER IF EXISTS embedding_sets_check ON mrl.embedding_sets;
CREATE TRIGGER embedding_sets_check BEFORE INSERT OR UPDATE OF id, source, pk_column, pk_type, text_expr, text_columns, vectors_table, config, owner, replaces,
                                                        chunking, text_search_config
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


-- 030_sets.internal.sql
-- Internal helpers (schema mrl_internal) of 030_sets.sql: not part of the API; EXECUTE is granted in 090_privileges.sql.

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

-- 4. Storage. The key has the source key's type and follows it (cascade on delete and on key change). A chunked
-- set keeps one row per chunk, keyed by (id, chunk), with the chunk's character offsets in the text [start, end).
-- tsv: the full-text words of the row's (or chunk's) text, for mrl.hybrid_search.
DROP FUNCTION IF EXISTS mrl_internal._create_vectors_table(text, regclass, name, text, int, int);
CREATE OR REPLACE FUNCTION mrl_internal._create_vectors_table(slug text, source regclass, pk_col name, pk_typ text,
                                                              dims int, tdim int, chunked bool DEFAULT false)
RETURNS regclass
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $fn$
DECLARE
    vname text := format('%I.%I', 'mrl_data', slug);
BEGIN
    EXECUTE format(
        'CREATE TABLE %s (
             id %s NOT NULL REFERENCES %s (%I) ON DELETE CASCADE ON UPDATE CASCADE,%s
             embedding "public".vector(%s) NOT NULL,
             coarse "public".halfvec%s,
             content_hash text NOT NULL,
             embedded_at timestamptz NOT NULL DEFAULT now(),
             truncated bool NOT NULL DEFAULT false,
             tsv tsvector,
             PRIMARY KEY (id%s))',
        vname, pk_typ, source, pk_col,
        CASE WHEN chunked THEN '
             chunk int NOT NULL CHECK (chunk >= 0),
             start_char int NOT NULL,
             end_char int NOT NULL,' ELSE '' END,
        dims, CASE WHEN tdim IS NULL THEN '' ELSE format('(%s)', tdim) END,
        CASE WHEN chunked THEN ', chunk' ELSE '' END);
    -- the vector stays in the row: a row longer than the page's toast threshold moves its words (tsv) out of line,
    -- never the vector that every re-rank reads
    EXECUTE format('ALTER TABLE %s ALTER COLUMN embedding SET STORAGE MAIN, ALTER COLUMN coarse SET STORAGE MAIN', vname);
    RETURN vname::regclass;
END
$fn$;

-- How a set cuts its texts: NULL (one vector per row, from its beginning) or a checked, completed JSON object
--   {"method": "tokens" | "paragraphs", "size": tokens per chunk, "overlap": tokens shared by neighbours}.
-- size is at most the model's window (the worker also counts the document prefix and the special tokens); by
-- default half of it.
CREATE OR REPLACE FUNCTION mrl_internal._check_chunking(chunking jsonb, c mrl.embedding_configs)
RETURNS jsonb
LANGUAGE plpgsql IMMUTABLE
SET search_path = pg_catalog, pg_temp
AS $fn$
DECLARE
    method text;
    window_ int := coalesce(c.max_seq_length, 512);
    size int;
    overlap int;
BEGIN
    IF chunking IS NULL OR chunking = 'null'::jsonb OR chunking = '"none"'::jsonb OR chunking ->> 'method' = 'none' THEN
        RETURN NULL;
    END IF;
    IF jsonb_typeof(chunking) = 'string' THEN
        chunking := jsonb_build_object('method', chunking #>> '{}');
    END IF;
    method := chunking ->> 'method';
    IF jsonb_typeof(chunking) <> 'object' OR method IS NULL OR method NOT IN ('tokens', 'paragraphs')
       OR EXISTS (SELECT FROM jsonb_object_keys(chunking) k WHERE k NOT IN ('method', 'size', 'overlap')) THEN
        RAISE EXCEPTION 'invalid chunking %', chunking USING ERRCODE = 'invalid_parameter_value',
              HINT = 'Use NULL (no chunking), ''"tokens"'', ''"paragraphs"'' or e.g. ''{"method": "tokens", "size": 256, "overlap": 32}''.';
    END IF;
    BEGIN
        -- default: half the window (scripts/bench_chunking.py: text past the window found almost as well as its
        -- beginning; whole-window chunks mix more topics into one vector), a quarter of it shared
        size := coalesce((chunking ->> 'size')::int, window_ / 2);
        overlap := coalesce((chunking ->> 'overlap')::int, size / 4);
    EXCEPTION WHEN data_exception THEN
        RAISE EXCEPTION 'chunking size and overlap must be integers, got %', chunking USING ERRCODE = 'invalid_parameter_value';
    END;
    IF size < 16 OR size > window_ THEN
        RAISE EXCEPTION 'chunk size % is out of range for % (window of % tokens)', size, c.name, window_
            USING ERRCODE = 'invalid_parameter_value',
                  HINT = format('Use 16 to %s tokens; a chunk longer than the window would be cut.', window_);
    END IF;
    IF overlap < 0 OR overlap > size / 2 THEN
        RAISE EXCEPTION 'chunk overlap % must be between 0 and half the size (%)', overlap, size / 2
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    RETURN jsonb_build_object('method', method, 'size', size, 'overlap', overlap);
END
$fn$;

-- The text search configuration of a set's full-text words, by its name (as regconfig writes it).
CREATE OR REPLACE FUNCTION mrl_internal._check_ts_config(cfg text)
RETURNS text
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pg_temp
AS $fn$
BEGIN
    IF cfg IS NOT NULL THEN
        BEGIN
            RETURN cfg::regconfig::text;
        EXCEPTION WHEN undefined_object OR invalid_name OR invalid_schema_name OR syntax_error THEN
            NULL;
        END;
    END IF;
    RAISE EXCEPTION 'text search configuration % does not exist', coalesce(quote_literal(cfg), 'NULL')
        USING ERRCODE = 'undefined_object',
              HINT = format('Use one of: %s.', (SELECT string_agg(cfgname, ', ' ORDER BY cfgname) FROM pg_ts_config
                                                 WHERE cfgnamespace = 'pg_catalog'::regnamespace));
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


-- 030_sets.sql
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
    text_search_config text DEFAULT 'english'
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
    chunks jsonb;
    ts_config text := mrl_internal._check_ts_config(text_search_config);
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
    PERFORM mrl_internal._check_readable(source);  -- (the text expression itself: by the registry's trigger, below)
    plan := mrl_internal._coarse_plan(c, truncate_dim, coarse_method);
    chunks := mrl_internal._check_chunking(chunking, c);
    IF chunks IS NOT NULL AND mode = 'sync' THEN
        RAISE EXCEPTION 'a chunked set cannot use sync mode' USING ERRCODE = 'feature_not_supported',
              HINT = 'Use mode => ''async'': the worker cuts the texts with the model''s own tokenizer.';
    END IF;

    vt := mrl_internal._create_vectors_table(slug, source, key.pk_col, key.pk_typ, c.dims, plan.tdim, chunks IS NOT NULL);
    INSERT INTO mrl.embedding_sets (name, slug, source, pk_column, pk_type, text_expr, config, dims, truncate_dim,
                                    coarse_method, on_create, on_update, mode, vectors_table, chunking, text_search_config)
    VALUES (name, slug, source, key.pk_col, key.pk_typ, text_column, c.name, c.dims, plan.tdim, plan.method,
            on_create, on_update, mode, vt, chunks, ts_config)
    RETURNING * INTO s;  -- embedding_sets_check validated and canonicalised the text expression
    IF plan.method <> 'none' THEN
        EXECUTE format('CREATE INDEX %I ON %s USING hnsw (coarse "public".halfvec_cosine_ops)', slug || '_coarse_hnsw', vt);
    END IF;
    EXECUTE format('CREATE INDEX %I ON %s USING gin (tsv)', slug || '_fts', vt);
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


-- 035_alter.internal.sql
-- Internal helpers (schema mrl_internal) of 035_alter.sql: not part of the API; EXECUTE is granted in 090_privileges.sql.

-- Replacements ready to switch in: fully embedded, and with a fitted rotation where one will be fitted.
CREATE OR REPLACE FUNCTION mrl_internal._switch_due()
RETURNS SETOF text
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pg_temp
AS $fn$
DECLARE
    n mrl.embedding_sets;
    rows bigint;
BEGIN
    FOR n IN SELECT * FROM mrl.embedding_sets WHERE replaces IS NOT NULL LOOP
        CONTINUE WHEN mrl_internal._tables_problem(n) IS NOT NULL;
        CONTINUE WHEN EXISTS (SELECT FROM mrl.queue q WHERE q.set_id = n.id AND NOT q.dead)
                   OR EXISTS (SELECT FROM mrl.queue_intake i WHERE i.set_id = n.id);
        IF n.coarse_method = 'rotation' AND n.rotation_version = 0 THEN
            EXECUTE format('SELECT count(*) FROM %s', n.vectors_table) INTO rows;
            CONTINUE WHEN rows >= n.rotation_min_rows;  -- the rotation is fitted first
        END IF;
        RETURN NEXT (SELECT slug FROM mrl.embedding_sets WHERE id = n.replaces);
    END LOOP;
END
$fn$;

-- What mrl.tune chose (coarse_k, ef_search) was measured on the old coarse vectors: a smaller coarse dimension or
-- another model needs more candidates (measured: 128 -> 64 dims kept a tuned coarse_k and agreement fell from
-- 0.99 to 0.94). A switch that changes the coarse vectors puts the defaults back and says to tune again; a switch
-- that keeps them (e.g. only the rotation method named again) keeps the tuning.
CREATE OR REPLACE FUNCTION mrl_internal._reset_tuning(old mrl.embedding_sets, replacement mrl.embedding_sets)
RETURNS void
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $fn$
BEGIN
    IF old.config = replacement.config AND old.truncate_dim IS NOT DISTINCT FROM replacement.truncate_dim
       AND old.coarse_method = replacement.coarse_method THEN
        RETURN;
    END IF;
    UPDATE mrl.embedding_sets
       SET default_coarse_k = replacement.default_coarse_k, binary_coarse_k = replacement.binary_coarse_k,
           default_ef_search = replacement.default_ef_search, tuned_at = NULL, tuned_agreement = NULL
     WHERE id = old.id;
    IF old.tuned_at IS NOT NULL THEN
        RAISE NOTICE 'set "%": its coarse vectors changed, so the tuned search settings were reset to the defaults (coarse_k %)',
            old.slug, replacement.default_coarse_k
              USING HINT = format('Tune again: SELECT * FROM mrl.tune(%L);', old.slug);
    END IF;
END
$fn$;


-- 035_alter.sql
-- Changing a set's model or coarse dimension without a gap (blue/green): a hidden set is embedded in the
-- background by the ordinary worker while the old vectors keep serving, then takes the set's place atomically.

-- chunking: NULL keeps the set's; '"none"' stops chunking. text_search_config: NULL keeps the set's.
CREATE OR REPLACE FUNCTION mrl.alter_embedding_set(set_slug text, config text DEFAULT NULL, truncate_dim int DEFAULT NULL,
                                                   coarse_method text DEFAULT NULL, chunking jsonb DEFAULT NULL,
                                                   text_search_config text DEFAULT NULL)
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
    IF config IS NULL AND truncate_dim IS NULL AND coarse_method IS NULL AND chunking IS NULL AND text_search_config IS NULL THEN
        RAISE EXCEPTION 'nothing to change' USING ERRCODE = 'invalid_parameter_value',
              HINT = 'Give a new config, truncate_dim, coarse_method, chunking or text_search_config.';
    END IF;
    -- The same rules as a new set: validated by create_embedding_set itself.
    PERFORM mrl.create_embedding_set(s.name, next_slug, s.source, s.text_expr, coalesce(config, s.config),
                                     coalesce(truncate_dim, CASE WHEN config IS NULL THEN s.truncate_dim END),
                                     s.on_create, s.on_update,
                                     coalesce(coarse_method, CASE WHEN config IS NULL AND s.coarse_method <> 'none'
                                                                  THEN s.coarse_method END),
                                     'async', coalesce(chunking, s.chunking), coalesce(text_search_config, s.text_search_config));
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
    EXECUTE format('DROP TABLE %s', old_table);
    EXECUTE format('ALTER TABLE %s RENAME TO %I', n.vectors_table, s.slug);
    FOR ix IN SELECT index_name FROM mrl.search_indexes(n.slug) UNION ALL SELECT n.slug || '_fts' LOOP
        CONTINUE WHEN to_regclass(format('mrl_data.%I', ix)) IS NULL;
        EXECUTE format('ALTER INDEX mrl_data.%I RENAME TO %I', ix, s.slug || substr(ix, length(n.slug) + 1));
    END LOOP;
    UPDATE mrl.embedding_sets
       SET config = n.config, dims = n.dims, truncate_dim = n.truncate_dim, coarse_method = n.coarse_method,
           vectors_table = n.vectors_table, rotation_version = n.rotation_version, rotation_rows = n.rotation_rows,
           rotation_fitted_at = n.rotation_fitted_at, rotation_requested_at = n.rotation_requested_at,
           chunking = n.chunking, text_search_config = n.text_search_config
     WHERE id = s.id;
    PERFORM mrl_internal._reset_tuning(s, n);
    DELETE FROM mrl.embedding_sets WHERE id = n.id;
    PERFORM mrl_internal._create_triggers(e) FROM mrl.embedding_sets e WHERE e.id = s.id;
    PERFORM pg_notify('mrl_queue', s.id::text);
END
$fn$;


-- 040_search.internal.sql
-- Internal helpers (schema mrl_internal) of 040_search.sql: not part of the API; EXECUTE is granted in 090_privileges.sql.

-- The WHERE conditions of a filter on alias src, reading the filter from parameter $param; NULL when no filter.
CREATE OR REPLACE FUNCTION mrl_internal._filter_sql(s mrl.embedding_sets, filter jsonb, param int)
RETURNS text
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pg_temp
AS $fn$
DECLARE
    key text;
    val jsonb;
    typ text;
    conds text[] := '{}';
BEGIN
    IF filter IS NULL OR filter = '{}'::jsonb THEN
        RETURN NULL;
    END IF;
    IF jsonb_typeof(filter) <> 'object' THEN
        RAISE EXCEPTION 'filter must be a JSON object, got a JSON %', jsonb_typeof(filter) USING ERRCODE = 'invalid_parameter_value',
              HINT = 'Equality on source columns: ''{"section": "web"}'', any of several values: ''{"section": ["web", "net"]}''.';
    END IF;
    FOR key, val IN SELECT e.key, e.value FROM jsonb_each(filter) e ORDER BY e.key LOOP
        SELECT format_type(a.atttypid, a.atttypmod) INTO typ FROM pg_attribute a
         WHERE a.attrelid = s.source AND a.attname = key AND a.attnum > 0 AND NOT a.attisdropped;
        IF NOT FOUND THEN
            RAISE EXCEPTION 'filter column "%" does not exist in %', key, s.source USING ERRCODE = 'undefined_column',
                  HINT = format('Filter on columns of %s: %s.', s.source,
                                (SELECT string_agg(quote_ident(a.attname), ', ' ORDER BY a.attnum) FROM pg_attribute a
                                  WHERE a.attrelid = s.source AND a.attnum > 0 AND NOT a.attisdropped));
        END IF;
        -- converting the value, and comparing, would run the code of a role's type, domain or operator
        PERFORM mrl_internal._check_columns(s.source, ARRAY[key]::name[], 'filter');
        IF jsonb_typeof(val) = 'object' OR (jsonb_typeof(val) = 'array' AND (jsonb_array_length(val) = 0 OR EXISTS (
                SELECT FROM jsonb_array_elements(val) e WHERE jsonb_typeof(e) IN ('object', 'array', 'null')))) THEN
            RAISE EXCEPTION 'filter value for "%" must be a scalar, null or a non-empty list of scalars, got %', key, val
                USING ERRCODE = 'invalid_parameter_value', HINT = 'e.g. {"section": "web"} or {"section": ["web", "net"]}.';
        END IF;
        -- convert the value(s) now, so that a mismatch names the column rather than failing inside the search
        BEGIN
            EXECUTE format('SELECT array_agg(x::%s) FROM jsonb_array_elements_text($1) x', typ)
              USING CASE WHEN jsonb_typeof(val) = 'array' THEN val ELSE jsonb_build_array(val) END;
        EXCEPTION WHEN data_exception THEN
            RAISE EXCEPTION 'filter value % does not fit column "%" of type %', val, key, typ
                USING ERRCODE = 'invalid_text_representation', HINT = format('Give a %s value.', typ);
        END;
        conds := conds || CASE jsonb_typeof(val)
            WHEN 'null' THEN format('src.%I IS NULL', key)
            WHEN 'array' THEN format('src.%I = ANY (ARRAY(SELECT jsonb_array_elements_text($%s -> %L))::%s[])', key, param, key, typ)
            ELSE format('src.%I = ($%s ->> %L)::%s', key, param, key, typ) END;
    END LOOP;
    RETURN array_to_string(conds, ' AND ');
END
$fn$;

-- The coarse dimension a search (or a coarse index) uses: the stored one, or a checked shorter prefix.
CREATE OR REPLACE FUNCTION mrl_internal._coarse_dim(s mrl.embedding_sets, coarse_dim int)
RETURNS int
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pg_temp
AS $fn$
DECLARE
    allowed int[];
BEGIN
    IF coarse_dim IS NULL THEN
        RETURN s.truncate_dim;
    END IF;
    IF s.coarse_method = 'none' THEN
        RAISE EXCEPTION 'set "%" keeps no coarse vector, so coarse_dim cannot be used', s.slug USING ERRCODE = 'invalid_parameter_value',
              HINT = 'Leave coarse_dim NULL, or create the set with a truncate_dim.';
    END IF;
    IF s.coarse_method = 'prefix' THEN
        SELECT array_agg(d ORDER BY d DESC) INTO allowed FROM mrl.embedding_configs c, unnest(c.matryoshka_dims) d
         WHERE c.name = s.config AND d <= s.truncate_dim;
    ELSE
        allowed := array(SELECT generate_series(s.truncate_dim, 1, -1));
    END IF;
    IF NOT coarse_dim = ANY (allowed) THEN
        RAISE EXCEPTION 'coarse_dim % is not available for set "%" (stored coarse dimension %)', coarse_dim, s.slug, s.truncate_dim
            USING ERRCODE = 'invalid_parameter_value',
                  HINT = CASE WHEN s.coarse_method = 'prefix'
                              THEN format('Use one of: %s.', array_to_string(allowed, ', '))
                              ELSE format('Use a value between 1 and %s.', s.truncate_dim) END;
    END IF;
    RETURN coarse_dim;
END
$fn$;

-- Strategies that need an optional index ('hnsw', 'binary_two_stage') fail clearly without it.
CREATE OR REPLACE FUNCTION mrl_internal._require_index(s mrl.embedding_sets, strategy text)
RETURNS void
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pg_temp
AS $fn$
BEGIN
    IF strategy IN ('hnsw', 'binary_two_stage')
       AND to_regclass(format('mrl_data.%I', s.slug || CASE strategy WHEN 'hnsw' THEN '_full_hnsw' ELSE '_binary_hnsw' END)) IS NULL THEN
        RAISE EXCEPTION 'set "%" has no % index', s.slug, CASE strategy WHEN 'hnsw' THEN 'full-dimension HNSW' ELSE 'binary HNSW' END
            USING ERRCODE = 'object_not_in_prerequisite_state',
                  HINT = format('Create it once: SELECT mrl.%s(%L);', CASE strategy WHEN 'hnsw' THEN 'create_full_index' ELSE 'add_binary_index' END, s.slug);
    END IF;
END
$fn$;

-- Rows an HNSW scan must return for a search: k, or coarse_k candidates, and the set's tuned value for its coarse
-- stage, and never less than the session's setting. hnsw.ef_search itself is capped at pgvector's maximum (1000);
-- beyond it the search uses an iterative index scan (pgvector >= 0.8).
CREATE OR REPLACE FUNCTION mrl_internal._ef_search(s mrl.embedding_sets, strategy text, k int, coarse_k int)
RETURNS int
LANGUAGE sql STABLE
SET search_path = pg_catalog, pg_temp
AS $fn$
    SELECT greatest(CASE strategy WHEN 'hnsw' THEN k WHEN 'binary_two_stage' THEN coarse_k
                                  ELSE greatest(coarse_k, coalesce(s.default_ef_search, 0)) END,
                    coalesce(nullif(current_setting('hnsw.ef_search', true), '')::int, 40))
$fn$;

-- Sets (for this transaction) the index-scan settings that return `wanted` rows; returns the previous values to
-- restore: {ef_search, iterative_scan, max_scan_tuples}. Raises when more than 1000 are wanted and pgvector has no
-- iterative scans.
CREATE OR REPLACE FUNCTION mrl_internal._scan_settings(wanted int, iterate bool)
RETURNS text[]
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $fn$
DECLARE
    old text[] := ARRAY[current_setting('hnsw.ef_search', true), current_setting('hnsw.iterative_scan', true),
                        current_setting('hnsw.max_scan_tuples', true)];
BEGIN
    PERFORM set_config('hnsw.ef_search', least(wanted, 1000)::text, true);
    IF wanted > 1000 OR iterate THEN
        IF old[2] IS NULL THEN
            IF wanted > 1000 THEN
                RAISE EXCEPTION 'returning % rows from an HNSW index needs pgvector >= 0.8 (iterative index scans)', wanted
                    USING ERRCODE = 'feature_not_supported', HINT = 'Use k and coarse_k of at most 1000, or upgrade pgvector.';
            END IF;
        ELSE
            IF old[2] = 'off' THEN
                PERFORM set_config('hnsw.iterative_scan', 'relaxed_order', true);
            END IF;
            IF wanted > 1000 THEN
                PERFORM set_config('hnsw.max_scan_tuples', greatest(coalesce(nullif(old[3], '')::int, 20000), 4 * wanted)::text, true);
            END IF;
        END IF;
    END IF;
    RETURN old;
END
$fn$;

CREATE OR REPLACE FUNCTION mrl_internal._restore_scan_settings(old text[])
RETURNS void
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $fn$
BEGIN
    PERFORM set_config('hnsw.ef_search', coalesce(nullif(old[1], ''), '40'), true);
    IF old[2] IS NOT NULL THEN
        PERFORM set_config('hnsw.iterative_scan', old[2], true);
        PERFORM set_config('hnsw.max_scan_tuples', old[3], true);
    END IF;
END
$fn$;

-- search's steps, in the order it takes them.

-- 1. The query: a non-zero vector of the set's dimensions, and a sane k.
CREATE OR REPLACE FUNCTION mrl_internal._check_query(s mrl.embedding_sets, query "public".vector, k int)
RETURNS void
LANGUAGE plpgsql IMMUTABLE
SET search_path = pg_catalog, pg_temp
AS $fn$
BEGIN
    IF query IS NULL THEN
        RAISE EXCEPTION 'query vector is NULL' USING ERRCODE = 'null_value_not_allowed',
              HINT = 'Pass the embedded query, e.g. from `pgmrl embed` or your model client.';
    END IF;
    IF "public".vector_dims(query) <> s.dims THEN
        RAISE EXCEPTION 'query vector has % dimensions but set "%" stores % (%)', "public".vector_dims(query), s.slug, s.dims, s.config
            USING ERRCODE = 'data_exception',
                  HINT = format('Embed the query with the set''s model (%s); vectors of different models cannot be compared.', s.config);
    END IF;
    IF "public".vector_norm(query) = 0 THEN
        RAISE EXCEPTION 'query vector is all zeros: it has no direction, so cosine distances are undefined'
            USING ERRCODE = 'invalid_parameter_value', HINT = 'Pass the embedding of a non-empty query.';
    END IF;
    IF k IS NULL OR k <= 0 OR k > 10000 THEN
        RAISE EXCEPTION 'k must be between 1 and 10000, got %', coalesce(k::text, 'NULL') USING ERRCODE = 'invalid_parameter_value',
              HINT = 'k is the number of results, e.g. 10.';
    END IF;
END
$fn$;

-- 2. How many stage-1 candidates are re-ranked: the caller's, else the set's (tuned) default, at least k.
CREATE OR REPLACE FUNCTION mrl_internal._candidates(s mrl.embedding_sets, strat text, k int, coarse_k int)
RETURNS int
LANGUAGE plpgsql IMMUTABLE
SET search_path = pg_catalog, pg_temp
AS $fn$
DECLARE
    ck int := coalesce(coarse_k, greatest(CASE WHEN strat = 'binary_two_stage' THEN s.binary_coarse_k ELSE s.default_coarse_k END, k));
BEGIN
    IF ck < k OR ck > 100000 THEN
        RAISE EXCEPTION 'coarse_k % must be at least k (%) and at most 100000', ck, k USING ERRCODE = 'invalid_parameter_value',
              HINT = 'coarse_k is the number of stage-1 candidates re-ranked exactly; 100 is a good start.';
    END IF;
    RETURN ck;
END
$fn$;

-- 3. A searcher runs no role's code either: the vectors table (and, with a filter, the source) must be clean.
CREATE OR REPLACE FUNCTION mrl_internal._check_searchable(s mrl.embedding_sets, filtered bool)
RETURNS void
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pg_temp
AS $fn$
BEGIN
    IF mrl_internal._read_unsafe(s.vectors_table)
       OR (filtered AND mrl_internal._source_problem(s.source) IS NOT NULL) THEN
        RAISE EXCEPTION 'embedding set "%" is refused: %', s.slug,
            coalesce(mrl_internal._vectors_problem(s.vectors_table), mrl_internal._tables_problem(s))
            USING ERRCODE = 'insufficient_privilege', HINT = 'Remove what was added to the vectors table, or recreate the set.';
    END IF;
END
$fn$;

-- 4. The stage-1 ordering expression of a strategy over vectors table alias v ($1: the coarse query, $3: the full
-- query); cd: the coarse dimension searched (a prefix of the stored coarse vector when smaller).
CREATE OR REPLACE FUNCTION mrl_internal._stage1_distance(s mrl.embedding_sets, strat text, cd int)
RETURNS text
LANGUAGE sql IMMUTABLE
SET search_path = pg_catalog, pg_temp
AS $fn$
    SELECT CASE strat
        WHEN 'binary_two_stage' THEN format('("public".binary_quantize(v.embedding))::bit(%s) OPERATOR("public".<~>) "public".binary_quantize($3)', s.dims)
        WHEN 'hnsw' THEN 'v.embedding OPERATOR("public".<=>) $3'
        WHEN 'exact' THEN '(v.embedding OPERATOR("public".<=>) $3) + 0'  -- "+ 0": never an (approximate) index order
        ELSE CASE WHEN cd <> s.truncate_dim
                  THEN format('("public".l2_normalize("public".subvector(v.coarse, 1, %s)))::"public".halfvec(%s)', cd, cd)
                  ELSE 'v.coarse' END || ' OPERATOR("public".<=>) $1' END
$fn$;

-- 5. The statement: two-stage strategies re-rank $2 candidates by the full vector; the others order directly.
CREATE OR REPLACE FUNCTION mrl_internal._search_sql(src text, dist1 text, strat text)
RETURNS text
LANGUAGE sql IMMUTABLE
SET search_path = pg_catalog, pg_temp
AS $fn$
    SELECT CASE WHEN strat IN ('two_stage', 'binary_two_stage') THEN format(
            'WITH candidates AS MATERIALIZED (SELECT v.id, v.embedding FROM %s ORDER BY %s LIMIT $2)
             SELECT c.id::text, (c.embedding OPERATOR("public".<=>) $3)::float8 AS distance FROM candidates c ORDER BY 2 LIMIT $4',
            src, dist1)
        ELSE format(
            'WITH candidates AS MATERIALIZED (SELECT v.id, (%2$s)::float8 AS distance FROM %1$s ORDER BY %2$s LIMIT $4)
             SELECT c.id::text, c.distance FROM candidates c ORDER BY 2',
            src, dist1) END
$fn$;

-- two_stage_search's strategy when none is given: the set's, if it chose the binary coarse stage.
CREATE OR REPLACE FUNCTION mrl_internal._two_stage_default(set_slug text)
RETURNS text
LANGUAGE sql STABLE
SET search_path = pg_catalog, pg_temp
AS $fn$
    SELECT CASE WHEN (mrl_internal._set(set_slug)).default_strategy = 'binary_two_stage' THEN 'binary_two_stage' ELSE 'two_stage' END
$fn$;


-- 040_search.sql
-- Search. Strategies of mrl.search:
--   two_stage         stage 1: HNSW on the coarse vector (query projected by mrl.coarse_of, like the documents);
--                     stage 2: exact cosine distance on the full vector, for the coarse_k candidates only
--   binary_two_stage  stage 1: HNSW (hamming) on binary_quantize(embedding) (mrl.add_binary_index); stage 2 as above
--   hnsw              pgvector's classic full-dimension HNSW on the embedding (mrl.create_full_index)
--   coarse            the coarse vector alone (approximate distances)
--   exact             every full vector (a scan)
-- filter: a JSON object {column: value, column: [any, of, these], column: null} on the source table's columns.

CREATE OR REPLACE FUNCTION mrl.search(
    set_slug text,
    query "public".vector,
    k int DEFAULT 10,
    strategy text DEFAULT NULL,
    coarse_k int DEFAULT NULL,
    coarse_dim int DEFAULT NULL,
    filter jsonb DEFAULT NULL
)
RETURNS TABLE (id text, distance double precision)
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
SET DateStyle = 'ISO, MDY' SET IntervalStyle = 'postgres' SET extra_float_digits = 1 SET TimeZone = 'UTC' SET bytea_output = 'hex'
AS $fn$
DECLARE
    s mrl.embedding_sets := mrl_internal._set(set_slug);
    strat text := coalesce(strategy, s.default_strategy);
    ck int;
    cd int;
    q_coarse "public".halfvec;
    old_scan text[];
    src text;     -- FROM clause
    cond text;    -- filter conditions
    stmt text;
    ids text[];
    dists float8[];
BEGIN
    IF s.chunking IS NOT NULL THEN  -- each row once, by its best chunk
        RETURN QUERY SELECT r.id, r.distance FROM mrl_internal._search_chunked(s, query, k, strat, coarse_k, coarse_dim, filter) r;
        RETURN;
    END IF;
    PERFORM mrl_internal._check_query(s, query, k);
    PERFORM mrl_internal._check_strategy(strat);
    ck := mrl_internal._candidates(s, strat, k, coarse_k);
    cd := mrl_internal._coarse_dim(s, coarse_dim);
    PERFORM mrl_internal._require_index(s, strat);
    PERFORM mrl_internal._check_searchable(s, filter IS NOT NULL);
    IF strat IN ('two_stage', 'coarse') THEN
        q_coarse := mrl.coarse_of(s.id, query, cd);
        IF q_coarse IS NULL THEN
            RAISE NOTICE 'set "%" has no coarse vectors yet (%); searching exactly', s.slug,
                CASE WHEN s.coarse_method = 'none' THEN 'it stores full vectors only'
                     ELSE format('its rotation is fitted once %s rows are embedded; SELECT mrl.refit_rotation(%L) asks for it now', s.rotation_min_rows, s.slug) END;
            strat := 'exact';
        END IF;
    END IF;
    cond := mrl_internal._filter_sql(s, filter, 5);
    src := format('%s v', s.vectors_table);
    IF cond IS NOT NULL THEN
        src := format('%s JOIN ONLY %s src ON src.%I = v.id WHERE %s', src, s.source, s.pk_column, cond);
    END IF;
    stmt := mrl_internal._search_sql(src, mrl_internal._stage1_distance(s, strat, cd), strat);

    -- HNSW returns at most ef_search rows: raise it for this call (iterating past 1000, or when a filter drops
    -- rows: keep scanning the graph until enough rows pass it; re-ranked below anyway), then put it back.
    IF strat <> 'exact' THEN
        old_scan := mrl_internal._scan_settings(mrl_internal._ef_search(s, strat, k, ck), cond IS NOT NULL);
    END IF;
    IF cond IS NULL THEN
        RETURN QUERY EXECUTE stmt USING q_coarse, ck, query, k, filter;
    ELSE
        EXECUTE format('SELECT array_agg(r.id ORDER BY r.distance), array_agg(r.distance ORDER BY r.distance) FROM (%s) r', stmt)
           INTO ids, dists USING q_coarse, ck, query, k, filter;
        IF coalesce(array_length(ids, 1), 0) < k AND strat <> 'exact' THEN
            -- a selective filter: fewer than k candidates passed it, so rank every row that does
            RETURN QUERY EXECUTE format(
                'SELECT v.id::text, (v.embedding OPERATOR("public".<=>) $3)::float8 FROM %s
                  ORDER BY (v.embedding OPERATOR("public".<=>) $3) + 0 LIMIT $4', src)
                USING q_coarse, ck, query, k, filter;
        ELSE
            RETURN QUERY SELECT u.id, u.distance FROM unnest(ids, dists) u(id, distance);
        END IF;
    END IF;
    IF old_scan IS NOT NULL THEN
        PERFORM mrl_internal._restore_scan_settings(old_scan);
    END IF;
END
$fn$;

-- Until 0.1 two_stage_search took (k, coarse_k, coarse_dim, filter, strategy) while search took (k, strategy, coarse_k,
-- coarse_dim, filter): one order now, search's. The old signatures go first (every query type), so no call is
-- ambiguous between them.
DO $old_order$
DECLARE
    typ text;
BEGIN
    FOREACH typ IN ARRAY ARRAY['"public".vector', 'text', '"public".halfvec', 'real[]', 'double precision[]'] LOOP
        EXECUTE format('DROP FUNCTION IF EXISTS mrl.two_stage_search(text, %s, int, int, int, jsonb, text)', typ);
    END LOOP;
END
$old_order$;

CREATE OR REPLACE FUNCTION mrl.two_stage_search(
    set_slug text,
    query "public".vector,
    k int DEFAULT 10,
    strategy text DEFAULT NULL,
    coarse_k int DEFAULT NULL,
    coarse_dim int DEFAULT NULL,
    filter jsonb DEFAULT NULL
)
RETURNS TABLE (id text, distance double precision)
LANGUAGE sql
SET search_path = pg_catalog, pg_temp
AS $fn$
    SELECT * FROM mrl.search(set_slug, query, k, coalesce(strategy, mrl_internal._two_stage_default(set_slug)), coarse_k, coarse_dim, filter)
$fn$;

-- The rows themselves, in rank order, with their distance: no cast of the text ids back to the key's type.
--   SELECT (r.item).*, r.distance FROM mrl.search_rows(NULL::docs, 'docs', :query, k => 5) r;
CREATE OR REPLACE FUNCTION mrl.search_rows(
    source anyelement,
    set_slug text,
    query "public".vector,
    k int DEFAULT 10,
    strategy text DEFAULT NULL,
    coarse_k int DEFAULT NULL,
    coarse_dim int DEFAULT NULL,
    filter jsonb DEFAULT NULL
)
RETURNS TABLE (item anyelement, distance double precision)
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $fn$
DECLARE
    s mrl.embedding_sets := mrl_internal._set(set_slug);
BEGIN
    IF pg_typeof(source) IS DISTINCT FROM (SELECT c.reltype FROM pg_class c WHERE c.oid = s.source)::regtype THEN
        RAISE EXCEPTION 'the first argument of search_rows must be NULL::% (the row type of set "%"''s source), not %',
            s.source, s.slug, pg_typeof(source) USING ERRCODE = 'datatype_mismatch',
            HINT = format('SELECT (r.item).*, r.distance FROM mrl.search_rows(NULL::%s, %L, query) r', s.source, s.slug);
    END IF;
    -- the rows are read as the caller: the source must run nobody's code (row-level security, planner-evaluated
    -- expressions, a key of a type that is not built in), as for the worker and for filtered searches
    PERFORM mrl_internal._check_tables(s);
    RETURN QUERY EXECUTE format(
        'SELECT src, h.distance FROM mrl.search($1, $2, $3, $4, $5, $6, $7) h
           JOIN ONLY %s src ON src.%I OPERATOR(pg_catalog.=) h.id::%s ORDER BY h.distance', s.source, s.pk_column, s.pk_type)
        USING set_slug, query, k, strategy, coarse_k, coarse_dim, filter;
END
$fn$;


-- 042_indexes.internal.sql
-- Internal helpers (schema mrl_internal) of 042_indexes.sql: not part of the API; EXECUTE is granted in 090_privileges.sql.

CREATE OR REPLACE FUNCTION mrl_internal._check_hnsw_params(m int, ef_construction int)
RETURNS void
LANGUAGE plpgsql IMMUTABLE
SET search_path = pg_catalog, pg_temp
AS $fn$
BEGIN
    IF m IS NULL OR m < 2 OR m > 100 THEN
        RAISE EXCEPTION 'm must be between 2 and 100, got %', coalesce(m::text, 'NULL') USING ERRCODE = 'invalid_parameter_value',
              HINT = 'm is the number of graph neighbours per node: 16 is pgvector''s default, 8 halves a small index.';
    END IF;
    IF ef_construction IS NULL OR ef_construction < 2 * m OR ef_construction > 1000 THEN
        RAISE EXCEPTION 'ef_construction must be between 2*m (%) and 1000, got %', 2 * m, coalesce(ef_construction::text, 'NULL')
            USING ERRCODE = 'invalid_parameter_value', HINT = '64 is pgvector''s default.';
    END IF;
END
$fn$;

CREATE OR REPLACE FUNCTION mrl_internal._build_index(s mrl.embedding_sets, suffix text, definition text, m int, ef_construction int)
RETURNS text
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $fn$
DECLARE
    iname text := s.slug || suffix;
BEGIN
    PERFORM mrl_internal._check_hnsw_params(m, ef_construction);
    EXECUTE format('DROP INDEX IF EXISTS mrl_data.%I', iname);
    EXECUTE format('CREATE INDEX %I ON %s USING hnsw %s WITH (m = %s, ef_construction = %s)',
                   iname, s.vectors_table, definition, m, ef_construction);
    RETURN format('mrl_data.%I', iname);
END
$fn$;

-- Builds on a replacement set (mrl.alter_embedding_set) the extra indexes its original has, with the same m.
CREATE OR REPLACE FUNCTION mrl_internal._copy_indexes(from_set mrl.embedding_sets, to_slug text)
RETURNS void
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $fn$
DECLARE
    ix record;
BEGIN
    FOR ix IN SELECT * FROM mrl.search_indexes(from_set.slug) LOOP
        BEGIN
            CASE
                WHEN ix.kind = 'full' THEN PERFORM mrl.create_full_index(to_slug, ix.m, ix.ef_construction);
                WHEN ix.kind = 'binary' THEN PERFORM mrl.add_binary_index(to_slug, ix.m, ix.ef_construction);
                WHEN ix.index_name = from_set.slug || '_coarse_hnsw' THEN
                    IF ix.m <> 16 OR ix.ef_construction <> 64 THEN
                        PERFORM mrl.add_coarse_index(to_slug, NULL, ix.m, ix.ef_construction);
                    END IF;
                ELSE PERFORM mrl.add_coarse_index(to_slug, ix.dim, ix.m, ix.ef_construction);
            END CASE;
        EXCEPTION WHEN invalid_parameter_value OR feature_not_supported THEN
            RAISE NOTICE 'index % is not carried over to the new vectors: %', ix.index_name, SQLERRM;
        END;
    END LOOP;
END
$fn$;


-- 042_indexes.sql
-- Optional search indexes of a set, all in mrl_data and named after the set:
--   <slug>_coarse_hnsw      the coarse vector (created with the set; mrl.add_coarse_index rebuilds it with other m)
--   <slug>_coarse<d>_hnsw   a shorter prefix of the coarse vector, for coarse_dim => d
--   <slug>_binary_hnsw      binary_quantize(embedding) with hamming distance, for strategy 'binary_two_stage'
--   <slug>_full_hnsw        the full vector, for strategy 'hnsw' (the classic pgvector setup)
-- Building takes a lock that blocks writes to the set's vectors; raise maintenance_work_mem for large sets.

CREATE OR REPLACE FUNCTION mrl.create_full_index(set_slug text, m int DEFAULT 16, ef_construction int DEFAULT 64)
RETURNS text
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $fn$
DECLARE
    s mrl.embedding_sets := mrl_internal._set(set_slug);
BEGIN
    IF s.dims > 2000 THEN
        RAISE EXCEPTION 'pgvector''s HNSW indexes vectors of at most 2000 dimensions; set "%" stores %', s.slug, s.dims
            USING ERRCODE = 'feature_not_supported', HINT = 'Use the two-stage search on the coarse vector instead.';
    END IF;
    RETURN mrl_internal._build_index(s, '_full_hnsw', '(embedding "public".vector_cosine_ops)', m, ef_construction);
END
$fn$;

CREATE OR REPLACE FUNCTION mrl.add_binary_index(set_slug text, m int DEFAULT 16, ef_construction int DEFAULT 64)
RETURNS text
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $fn$
DECLARE
    s mrl.embedding_sets := mrl_internal._set(set_slug);
BEGIN
    RETURN mrl_internal._build_index(s, '_binary_hnsw',
        format('((("public".binary_quantize(embedding))::bit(%s)) "public".bit_hamming_ops)', s.dims), m, ef_construction);
END
$fn$;

-- An index on the first `dim` coarse components (what search uses for coarse_dim => dim); dim = the stored
-- coarse dimension rebuilds the set's main coarse index, e.g. with a smaller m.
CREATE OR REPLACE FUNCTION mrl.add_coarse_index(set_slug text, dim int, m int DEFAULT 16, ef_construction int DEFAULT 64)
RETURNS text
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $fn$
DECLARE
    s mrl.embedding_sets := mrl_internal._set(set_slug);
BEGIN
    IF s.coarse_method = 'none' THEN
        RAISE EXCEPTION 'set "%" keeps no coarse vector', s.slug USING ERRCODE = 'invalid_parameter_value',
              HINT = 'Give the set a truncate_dim with mrl.alter_embedding_set().';
    END IF;
    IF dim IS NULL OR dim = s.truncate_dim THEN
        RETURN mrl_internal._build_index(s, '_coarse_hnsw', '(coarse "public".halfvec_cosine_ops)', m, ef_construction);
    END IF;
    PERFORM mrl_internal._coarse_dim(s, dim);  -- the same check as a search with coarse_dim => dim
    RETURN mrl_internal._build_index(s, format('_coarse%s_hnsw', dim),
        format('((("public".l2_normalize("public".subvector(coarse, 1, %s)))::"public".halfvec(%s)) "public".halfvec_cosine_ops)', dim, dim),
        m, ef_construction);
END
$fn$;

-- The set's search indexes with their sizes.
CREATE OR REPLACE FUNCTION mrl.search_indexes(set_slug text)
RETURNS TABLE (index_name text, kind text, dim int, m int, ef_construction int, size_bytes bigint)
LANGUAGE sql STABLE
SET search_path = pg_catalog, pg_temp
AS $fn$
    SELECT c.relname::text,
           CASE WHEN c.relname LIKE '%\_full\_hnsw' THEN 'full' WHEN c.relname LIKE '%\_binary\_hnsw' THEN 'binary'
                ELSE 'coarse' END,
           CASE WHEN c.relname LIKE '%\_full\_hnsw' OR c.relname LIKE '%\_binary\_hnsw' THEN s.dims
                WHEN c.relname LIKE '%\_coarse\_hnsw' THEN s.truncate_dim
                ELSE substring(c.relname from '_coarse([0-9]+)_hnsw$')::int END,
           coalesce((SELECT o.option_value::int FROM pg_options_to_table(c.reloptions) o WHERE o.option_name = 'm'), 16),
           coalesce((SELECT o.option_value::int FROM pg_options_to_table(c.reloptions) o WHERE o.option_name = 'ef_construction'), 64),
           pg_relation_size(c.oid)
      FROM (SELECT (mrl_internal._set(set_slug)).*) s
      JOIN pg_index i ON i.indrelid = s.vectors_table
      JOIN pg_class c ON c.oid = i.indexrelid
     WHERE left(c.relname, length(s.slug) + 1) = s.slug || '_' AND c.relname LIKE '%\_hnsw'
     ORDER BY 2, 3
$fn$;

-- Per-set search defaults: what mrl.search / two_stage_search use when an argument is not given.
CREATE OR REPLACE FUNCTION mrl.configure_search(set_slug text, strategy text DEFAULT NULL, coarse_k int DEFAULT NULL,
                                                ef_search int DEFAULT NULL, binary_coarse_k int DEFAULT NULL)
RETURNS TABLE (default_strategy text, default_coarse_k int, default_ef_search int, default_binary_coarse_k int)
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $fn$
DECLARE
    s mrl.embedding_sets := mrl_internal._set(set_slug);
BEGIN
    IF strategy IS NOT NULL THEN
        PERFORM mrl_internal._check_strategy(strategy);
    END IF;
    PERFORM mrl_internal._require_index(s, strategy);
    IF coarse_k <= 0 OR binary_coarse_k <= 0 OR coarse_k > 100000 OR binary_coarse_k > 100000 THEN
        RAISE EXCEPTION 'coarse_k and binary_coarse_k must be between 1 and 100000' USING ERRCODE = 'invalid_parameter_value',
              HINT = 'The number of stage-1 candidates; 100 is a good start (mrl.tune chooses one).';
    END IF;
    IF ef_search <= 0 OR ef_search > 1000 THEN
        RAISE EXCEPTION 'ef_search must be between 1 and 1000 (pgvector''s range), got %', ef_search USING ERRCODE = 'invalid_parameter_value',
              HINT = 'Searches that need more candidates than 1000 scan the index iteratively on their own.';
    END IF;
    UPDATE mrl.embedding_sets e
       SET default_strategy = coalesce(configure_search.strategy, e.default_strategy),
           default_coarse_k = coalesce(configure_search.coarse_k, e.default_coarse_k),
           default_ef_search = coalesce(configure_search.ef_search, e.default_ef_search),
           binary_coarse_k = coalesce(configure_search.binary_coarse_k, e.binary_coarse_k)
     WHERE e.id = s.id;
    RETURN QUERY SELECT e.default_strategy, e.default_coarse_k, e.default_ef_search, e.binary_coarse_k
                   FROM mrl.embedding_sets e WHERE e.id = s.id;
END
$fn$;


-- 044_chunks.internal.sql
-- Internal helpers (schema mrl_internal) of 044_chunks.sql: not part of the API; EXECUTE is granted in 090_privileges.sql.

-- Search of a chunked set: the chunks are searched like rows (same strategies, same stage-1 index), and each source
-- row is returned once, by its best chunk. Stage 1 returns chunks, not rows: when the candidates found fewer than k
-- rows, it asks for four times as many, until k rows are found or no chunk is left (then every chunk is ranked).
CREATE OR REPLACE FUNCTION mrl_internal._search_chunked(s mrl.embedding_sets, query "public".vector, k int, strat text,
                                                        coarse_k int, coarse_dim int, filter jsonb)
RETURNS TABLE (id text, chunk int, distance double precision)
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
SET DateStyle = 'ISO, MDY' SET IntervalStyle = 'postgres' SET extra_float_digits = 1 SET TimeZone = 'UTC' SET bytea_output = 'hex'
AS $fn$
DECLARE
    ck int;
    cd int;
    q_coarse "public".halfvec;
    old_scan text[];
    src text;
    cond text;
    stmt text;
    ids text[];
    chunk_nos int[];
    dists float8[];
    found_ bigint;
    total bigint;
BEGIN
    IF s.chunking IS NULL THEN
        RAISE EXCEPTION 'embedding set "%" is not chunked', s.slug USING ERRCODE = 'invalid_parameter_value';
    END IF;
    PERFORM mrl_internal._check_query(s, query, k);
    PERFORM mrl_internal._check_strategy(strat);
    ck := mrl_internal._candidates(s, strat, k, coarse_k);
    cd := mrl_internal._coarse_dim(s, coarse_dim);
    PERFORM mrl_internal._require_index(s, strat);
    PERFORM mrl_internal._check_searchable(s, filter IS NOT NULL);
    IF strat IN ('two_stage', 'coarse') THEN
        q_coarse := mrl.coarse_of(s.id, query, cd);
        IF q_coarse IS NULL THEN
            strat := 'exact';
        END IF;
    END IF;
    IF strat IN ('hnsw', 'coarse') THEN
        ck := greatest(4 * k, 40);  -- chunks, for k rows
    END IF;
    cond := mrl_internal._filter_sql(s, filter, 5);
    src := format('%s v', s.vectors_table);
    IF cond IS NOT NULL THEN
        src := format('%s JOIN ONLY %s src ON src.%I = v.id WHERE %s', src, s.source, s.pk_column, cond);
    END IF;
    stmt := format(
        'WITH candidates AS MATERIALIZED (SELECT v.id, v.chunk, (%2$s)::float8 AS distance FROM %1$s ORDER BY %3$s LIMIT $2),
              best AS (SELECT DISTINCT ON (c.id) c.id, c.chunk, c.distance FROM candidates c ORDER BY c.id, c.distance, c.chunk),
              top AS (SELECT * FROM best b ORDER BY b.distance, b.id LIMIT $4)
         SELECT array_agg(t.id::text ORDER BY t.distance, t.id), array_agg(t.chunk ORDER BY t.distance, t.id),
                array_agg(t.distance ORDER BY t.distance, t.id), (SELECT count(*) FROM candidates) FROM top t',
        src,
        CASE WHEN strat IN ('two_stage', 'binary_two_stage', 'exact') THEN 'v.embedding OPERATOR("public".<=>) $3'
             ELSE mrl_internal._stage1_distance(s, strat, cd) END,
        mrl_internal._stage1_distance(s, strat, cd));
    LOOP
        IF strat = 'exact' THEN
            ck := 2147483647;
        ELSE
            old_scan := mrl_internal._scan_settings(ck, cond IS NOT NULL);
        END IF;
        EXECUTE stmt INTO ids, chunk_nos, dists, found_ USING q_coarse, ck, query, k, filter;
        IF old_scan IS NOT NULL THEN
            PERFORM mrl_internal._restore_scan_settings(old_scan);
            old_scan := NULL;
        END IF;
        EXIT WHEN coalesce(array_length(ids, 1), 0) >= k OR strat = 'exact' OR found_ < ck;
        IF total IS NULL THEN
            EXECUTE format('SELECT count(*) FROM %s', src) INTO total USING q_coarse, ck, query, k, filter;
        END IF;
        IF ck >= total OR (ck > 250 AND current_setting('hnsw.iterative_scan', true) IS NULL) THEN
            -- every chunk was a candidate (the approximate scan missed some), or pgvector cannot return more than
            -- 1000 rows from an index: rank them all
            strat := 'exact';
            stmt := format(
                'WITH candidates AS MATERIALIZED (SELECT v.id, v.chunk, (v.embedding OPERATOR("public".<=>) $3)::float8 AS distance FROM %1$s),
                      best AS (SELECT DISTINCT ON (c.id) c.id, c.chunk, c.distance FROM candidates c ORDER BY c.id, c.distance, c.chunk),
                      top AS (SELECT * FROM best b ORDER BY b.distance, b.id LIMIT $4)
                 SELECT array_agg(t.id::text ORDER BY t.distance, t.id), array_agg(t.chunk ORDER BY t.distance, t.id),
                        array_agg(t.distance ORDER BY t.distance, t.id), (SELECT count(*) FROM candidates) FROM top t', src);
        ELSE
            ck := least(ck::bigint * 4, total)::int;
        END IF;
    END LOOP;
    RETURN QUERY SELECT u.id, u.chunk, u.distance FROM unnest(ids, chunk_nos, dists) u(id, chunk, distance);
END
$fn$;


-- 044_chunks.sql
-- Chunked sets: which chunk of each row matched (mrl.search returns each row once, by its best chunk).

CREATE OR REPLACE FUNCTION mrl.search_chunks(
    set_slug text,
    query "public".vector,
    k int DEFAULT 10,
    strategy text DEFAULT NULL,
    coarse_k int DEFAULT NULL,
    coarse_dim int DEFAULT NULL,
    filter jsonb DEFAULT NULL
)
RETURNS TABLE (id text, chunk int, start_char int, end_char int, distance double precision)
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $fn$
DECLARE
    s mrl.embedding_sets := mrl_internal._set(set_slug);
BEGIN
    IF s.chunking IS NULL THEN  -- one vector per row: its beginning
        RETURN QUERY SELECT r.id, 0, 0, NULL::int, r.distance FROM mrl.search(set_slug, query, k, strategy, coarse_k, coarse_dim, filter) r;
        RETURN;
    END IF;
    RETURN QUERY EXECUTE format(
        'SELECT r.id, r.chunk, v.start_char, v.end_char, r.distance
           FROM mrl_internal._search_chunked($1, $2, $3, $4, $5, $6, $7) r
           JOIN %s v ON v.id = r.id::%s AND v.chunk = r.chunk
          ORDER BY r.distance, r.id', s.vectors_table, s.pk_type)
        USING s, query, k, coalesce(strategy, s.default_strategy), coarse_k, coarse_dim, filter;
END
$fn$;

CREATE OR REPLACE FUNCTION mrl.search_chunks(
    set_slug text,
    query text,
    k int DEFAULT 10,
    strategy text DEFAULT NULL,
    coarse_k int DEFAULT NULL,
    coarse_dim int DEFAULT NULL,
    filter jsonb DEFAULT NULL
)
RETURNS TABLE (id text, chunk int, start_char int, end_char int, distance double precision)
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pg_temp
AS $fn$
DECLARE
    v "public".vector := mrl_internal._query_vector(set_slug, query);
BEGIN
    RETURN QUERY SELECT * FROM mrl.search_chunks(set_slug, v, k, strategy, coarse_k, coarse_dim, filter);
END
$fn$;


-- 045_tuning.internal.sql
-- Internal helpers (schema mrl_internal) of 045_tuning.sql: not part of the API; EXECUTE is granted in 090_privileges.sql.

CREATE OR REPLACE FUNCTION mrl_internal._sample_queries(s mrl.embedding_sets, sample int, noise double precision)
RETURNS "public".vector[]
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pg_temp
AS $fn$
DECLARE
    out "public".vector[];
BEGIN
    PERFORM mrl_internal._check_tables(s);
    IF sample IS NULL OR sample < 1 OR sample > 100000 THEN
        RAISE EXCEPTION 'sample must be between 1 and 100000, got %', coalesce(sample::text, 'NULL') USING ERRCODE = 'invalid_parameter_value';
    END IF;
    IF noise IS NULL OR noise < 0 OR noise > 10 THEN
        RAISE EXCEPTION 'noise must be between 0 and 10, got %', coalesce(noise::text, 'NULL') USING ERRCODE = 'invalid_parameter_value',
              HINT = '1.2 (default) puts a query about as far from its document (cosine ~0.64) as the real short-description queries of the Debian corpus are; 0 uses stored vectors as they are.';
    END IF;
    EXECUTE format(
        'SELECT array_agg("public".l2_normalize((SELECT array_agg(u.x + $2 * sqrt(-2 * ln(1 - random())) * cos(2 * pi() * random()) / sqrt(%s)
                                                       ORDER BY u.o)
                                                FROM unnest(e.embedding::real[]) WITH ORDINALITY u(x, o))::"public".vector))
           FROM (SELECT embedding FROM %s ORDER BY random() LIMIT $1) e', s.dims, s.vectors_table)
        INTO out USING sample, noise;
    IF out IS NULL THEN
        RAISE EXCEPTION 'set "%" has no embedded rows to measure with', s.slug USING ERRCODE = 'no_data_found',
              HINT = 'Let `pgmrl serve` embed the set first (SELECT * FROM mrl.set_status(...) shows progress).';
    END IF;
    RETURN out;
END
$fn$;

-- Runs each query through mrl.search; the ids (a JSON array per query) and latency percentiles in ms.
CREATE OR REPLACE FUNCTION mrl_internal._run_queries(set_slug text, queries "public".vector[], k int, strategy text, coarse_k int,
                                            OUT results jsonb, OUT p50_ms double precision, OUT p95_ms double precision)
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pg_temp
AS $fn$
DECLARE
    q "public".vector;
    t0 timestamptz;
    ids text[];
    times double precision[] := '{}';
BEGIN
    results := '[]';
    FOREACH q IN ARRAY queries LOOP
        t0 := clock_timestamp();
        SELECT array_agg(r.id) INTO ids FROM mrl.search(set_slug, q, k, strategy, coarse_k) r;
        times := times || (extract(epoch FROM clock_timestamp() - t0) * 1000)::double precision;
        results := results || jsonb_build_array(to_jsonb(coalesce(ids, '{}')));
    END LOOP;
    SELECT percentile_cont(0.5) WITHIN GROUP (ORDER BY t), percentile_cont(0.95) WITHIN GROUP (ORDER BY t)
      INTO p50_ms, p95_ms FROM unnest(times) t;
END
$fn$;

-- Mean share of each truth list (exact top-k) found in the matching result list.
CREATE OR REPLACE FUNCTION mrl_internal._agreement(results jsonb, truth jsonb)
RETURNS double precision
LANGUAGE sql IMMUTABLE
SET search_path = pg_catalog, pg_temp
AS $fn$
    SELECT avg((SELECT count(*) FROM jsonb_array_elements_text(t.v) e WHERE r.v ? e)::double precision
               / greatest(jsonb_array_length(t.v), 1))
      FROM jsonb_array_elements(results) WITH ORDINALITY r(v, i)
      JOIN jsonb_array_elements(truth) WITH ORDINALITY t(v, i) ON r.i = t.i
$fn$;


-- 045_tuning.sql
-- Self-measured recall: a set checks its own approximate search against exact search, and tunes itself.
-- Queries are stored vectors perturbed by Gaussian noise (norm about `noise`), so that they are near documents
-- without being one of them.

CREATE OR REPLACE FUNCTION mrl.measure_recall(set_slug text, sample int DEFAULT 200, k int DEFAULT 10,
                                              strategy text DEFAULT NULL, coarse_k int DEFAULT NULL,
                                              noise double precision DEFAULT 1.2)
RETURNS TABLE (agreement double precision, p50_ms double precision, p95_ms double precision,
               exact_p50_ms double precision, speedup double precision, queries int, used_strategy text,
               used_coarse_k int, used_ef_search int)
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pg_temp
AS $fn$
DECLARE
    s mrl.embedding_sets := mrl_internal._set(set_slug);
    strat text := coalesce(measure_recall.strategy, s.default_strategy);
    qs "public".vector[] := mrl_internal._sample_queries(s, sample, noise);
    approx record;
    exact record;
    ck int;
BEGIN
    exact := mrl_internal._run_queries(s.slug, qs, k, 'exact', NULL);
    approx := mrl_internal._run_queries(s.slug, qs, k, strat, measure_recall.coarse_k);
    ck := CASE WHEN strat IN ('two_stage', 'binary_two_stage')
               THEN coalesce(measure_recall.coarse_k, greatest(k, CASE WHEN strat = 'binary_two_stage' THEN s.binary_coarse_k ELSE s.default_coarse_k END)) END;
    RETURN QUERY SELECT mrl_internal._agreement(approx.results, exact.results), approx.p50_ms, approx.p95_ms, exact.p50_ms,
                        exact.p50_ms / nullif(approx.p50_ms, 0), cardinality(qs), strat, ck,
                        CASE WHEN strat <> 'exact' THEN mrl_internal._ef_search(s, strat, k, coalesce(ck, k)) END;
END
$fn$;

-- Finds the smallest coarse_k (with ef_search = coarse_k, then 2 * coarse_k) whose agreement@k with exact search
-- reaches target_recall on a sample, and stores it as the set's default. Returns every trial.
CREATE OR REPLACE FUNCTION mrl.tune(set_slug text, target_recall double precision DEFAULT 0.99, sample int DEFAULT 200,
                                   k int DEFAULT 10, strategy text DEFAULT NULL, noise double precision DEFAULT 1.2)
RETURNS TABLE (coarse_k int, ef_search int, agreement double precision, p50_ms double precision, chosen bool)
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pg_temp
AS $fn$
DECLARE
    s mrl.embedding_sets := mrl_internal._set(set_slug);
    strat text := coalesce(tune.strategy, mrl_internal._two_stage_default(set_slug));
    qs "public".vector[];
    truth jsonb;
    run record;
    ck int;
    ef int;
    agree double precision;
    best_ck int;
    best_ef int;
    best double precision := -1;
    cks int[] := '{}';
    efs int[] := '{}';
    agrees double precision[] := '{}';
    p50s double precision[] := '{}';
    old_ef text := current_setting('hnsw.ef_search', true);
BEGIN
    IF target_recall IS NULL OR target_recall <= 0 OR target_recall > 1 THEN
        RAISE EXCEPTION 'target_recall must be in (0, 1], got %', coalesce(target_recall::text, 'NULL') USING ERRCODE = 'invalid_parameter_value',
              HINT = 'The share of exact top-k results the search must find, e.g. 0.99.';
    END IF;
    IF strat NOT IN ('two_stage', 'binary_two_stage') THEN
        RAISE EXCEPTION 'only the two-stage strategies are tuned, not %', quote_literal(strat) USING ERRCODE = 'invalid_parameter_value',
              HINT = 'Use strategy => ''two_stage'' or ''binary_two_stage''.';
    END IF;
    IF strat = 'two_stage' AND (s.coarse_method = 'none' OR (s.coarse_method = 'rotation' AND s.rotation_version = 0)) THEN
        RAISE EXCEPTION 'set "%" has no coarse vectors yet, so there is nothing to tune', s.slug USING ERRCODE = 'object_not_in_prerequisite_state',
              HINT = CASE WHEN s.coarse_method = 'rotation' THEN format('Fit the rotation first: `pgmrl refit %s`.', s.slug)
                          ELSE 'Create the set with a truncate_dim.' END;
    END IF;
    IF k IS NULL OR k < 1 OR k > 1000 THEN
        RAISE EXCEPTION 'k must be between 1 and 1000' USING ERRCODE = 'invalid_parameter_value';
    END IF;
    qs := mrl_internal._sample_queries(s, sample, noise);
    truth := (mrl_internal._run_queries(s.slug, qs, k, 'exact', NULL)).results;
    -- trials run without the set's stored ef_search floor (this transaction only)
    UPDATE mrl.embedding_sets SET default_ef_search = NULL WHERE id = s.id;
    <<grid>>
    FOREACH ck IN ARRAY ARRAY[10, 20, 30, 40, 60, 80, 100, 150, 200, 300, 400, 600, 800, 1000, 1500, 2000, 3000, 5000] LOOP
        CONTINUE WHEN ck < k;
        FOREACH ef IN ARRAY CASE WHEN strat = 'two_stage' THEN ARRAY[ck, 2 * ck] ELSE ARRAY[ck] END LOOP
            PERFORM mrl_internal._scan_settings(greatest(ef, 1), false);
            run := mrl_internal._run_queries(s.slug, qs, k, strat, ck);
            agree := mrl_internal._agreement(run.results, truth);
            cks := cks || ck; efs := efs || ef; agrees := agrees || agree; p50s := p50s || run.p50_ms;
            IF agree > best THEN
                best := agree; best_ck := ck; best_ef := ef;
            END IF;
            EXIT grid WHEN agree >= target_recall;
        END LOOP;
    END LOOP;
    PERFORM set_config('hnsw.ef_search', coalesce(nullif(old_ef, ''), '40'), true);
    IF best < target_recall THEN
        RAISE WARNING 'set "%": agreement % is the best reached (coarse_k %), below the target %', s.slug, round(best::numeric, 4), best_ck, target_recall;
    END IF;
    UPDATE mrl.embedding_sets e
       SET default_coarse_k = CASE WHEN strat = 'two_stage' THEN best_ck ELSE e.default_coarse_k END,
           binary_coarse_k = CASE WHEN strat = 'binary_two_stage' THEN best_ck ELSE e.binary_coarse_k END,
           default_ef_search = CASE WHEN strat = 'two_stage' THEN best_ef ELSE s.default_ef_search END,
           tuned_at = now(), tuned_agreement = best
     WHERE e.id = s.id;
    RETURN QUERY SELECT t.ck, t.ef, t.agree, t.p50, (t.ck = best_ck AND t.ef = best_ef)
                   FROM unnest(cks, efs, agrees, p50s) t(ck, ef, agree, p50);
END
$fn$;


-- 046_hybrid.internal.sql
-- Internal helpers (schema mrl_internal) of 046_hybrid.sql: not part of the API; EXECUTE is granted in 090_privileges.sql.

-- The full-text leg of mrl.hybrid_search: the set's rows (each once, whatever its chunks) that contain words of the
-- query, best first. The query is read by websearch_to_tsquery in the set's text search configuration ("quoted
-- phrases", -excluded, or). A row scores the inverse document frequency (BM25's idf) of each query word it holds,
-- so that a rare word (a name, an error code) outweighs common ones; rows that match the whole query (all words,
-- phrases in order) come first. Rows holding an excluded word are left out.
CREATE OR REPLACE FUNCTION mrl_internal._text_ranks(s mrl.embedding_sets, query_text text, n int, filter jsonb)
RETURNS TABLE (id text, score double precision)
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pg_temp
SET DateStyle = 'ISO, MDY' SET IntervalStyle = 'postgres' SET extra_float_digits = 1 SET TimeZone = 'UTC' SET bytea_output = 'hex'
AS $fn$
DECLARE
    q tsquery := websearch_to_tsquery(s.text_search_config::regconfig, query_text);
    words tsquery[];
    excluded tsquery[];
    total float8;
    cond text;
    src text;
BEGIN
    -- the excluded terms (!'word', or !( phrase )), each a tsquery; then the lexemes of the others, one tsquery each
    SELECT array_agg(DISTINCT substr(m[1], 2)::tsquery) INTO excluded
      FROM regexp_matches(q::text, '(!''(?:[^'']|'''')*''|!\([^()]*\))', 'g') m;
    SELECT array_agg(DISTINCT format('''%s''', m[1])::tsquery) INTO words
      FROM regexp_matches(regexp_replace(q::text, '!''(?:[^'']|'''')*''|!\([^()]*\)', '', 'g'),
                          '''((?:[^'']|'''')*)''', 'g') m;
    IF words IS NULL THEN
        RETURN;
    END IF;
    SELECT CASE WHEN c.reltuples > 0 THEN c.reltuples END INTO total FROM pg_class c WHERE c.oid = s.vectors_table;
    IF total IS NULL THEN
        EXECUTE format('SELECT count(*) FROM %s', s.vectors_table) INTO total;
    END IF;
    cond := mrl_internal._filter_sql(s, filter, 5);
    src := format('%s v', s.vectors_table);
    IF cond IS NOT NULL THEN
        src := format('%s JOIN ONLY %s src ON src.%I = v.id AND %s', src, s.source, s.pk_column, cond);
    END IF;
    RETURN QUERY EXECUTE format(
        'WITH hits AS MATERIALIZED (
              SELECT DISTINCT w.i, v.id FROM unnest($1) WITH ORDINALITY w(q, i)
                JOIN %1$s ON v.tsv OPERATOR(pg_catalog.@@) w.q),
              df AS (SELECT h.i, count(*) AS n FROM hits h GROUP BY h.i),
              scored AS (
              SELECT h.id, sum(ln(1 + (greatest($3, d.n) - d.n + 0.5) / (d.n + 0.5))) AS score
                FROM hits h JOIN df d ON d.i = h.i GROUP BY h.id),
              whole AS (SELECT DISTINCT v.id FROM %1$s
                         WHERE v.id IN (SELECT sc.id FROM scored sc) AND v.tsv OPERATOR(pg_catalog.@@) $2),
              dropped AS (SELECT DISTINCT v.id FROM unnest($4) x(q) JOIN %1$s ON v.tsv OPERATOR(pg_catalog.@@) x.q
                           WHERE v.id IN (SELECT sc.id FROM scored sc))
         SELECT sc.id::text, (sc.score + CASE WHEN sc.id IN (SELECT w.id FROM whole w) THEN 1000 ELSE 0 END)::float8
           FROM scored sc WHERE sc.id NOT IN (SELECT d.id FROM dropped d)
          ORDER BY 2 DESC, 1 LIMIT $6', src)
        USING words, q, total, coalesce(excluded, '{}'), filter, n;
END
$fn$;


-- 046_hybrid.sql
-- Hybrid search: the set's full-text words and its two-stage dense search, fused by reciprocal rank fusion (RRF):
--   score = dense_weight / (rrf_k + dense_rank) + text_weight / (rrf_k + text_rank)
-- over the top `candidates` rows of each leg (a row missing from a leg gets nothing from it). A query naming a
-- package, a function or an error code is found by its words; one that describes is found by its meaning.
-- Whether fusion helps depends on the data and the queries: measure it (`pgmrl eval --hybrid`, README).

CREATE OR REPLACE FUNCTION mrl.hybrid_search(
    set_slug text,
    query_text text,
    query_vector "public".vector DEFAULT NULL,
    k int DEFAULT 10,
    dense_weight double precision DEFAULT 1.0,
    text_weight double precision DEFAULT 1.0,
    rrf_k int DEFAULT 60,
    candidates int DEFAULT NULL,
    filter jsonb DEFAULT NULL,
    strategy text DEFAULT NULL
)
RETURNS TABLE (id text, score double precision, dense_rank int, text_rank int, distance double precision)
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pg_temp
AS $fn$
DECLARE
    s mrl.embedding_sets := mrl_internal._set(set_slug);
    n int := coalesce(candidates, greatest(2 * k, 50));
    v "public".vector := query_vector;
    d_ids text[];
    d_dists float8[];
    t_ids text[];
BEGIN
    IF query_text IS NULL OR btrim(query_text) = '' THEN
        RAISE EXCEPTION 'query_text is NULL or empty' USING ERRCODE = 'null_value_not_allowed',
              HINT = 'Pass the words to search for (and, if you have it, their embedding as query_vector).';
    END IF;
    IF k IS NULL OR k <= 0 OR k > 10000 THEN
        RAISE EXCEPTION 'k must be between 1 and 10000, got %', coalesce(k::text, 'NULL') USING ERRCODE = 'invalid_parameter_value';
    END IF;
    IF n < k OR n > 10000 THEN
        RAISE EXCEPTION 'candidates % must be at least k (%) and at most 10000', n, k USING ERRCODE = 'invalid_parameter_value',
              HINT = 'candidates is how many rows each leg ranks before fusion; the default is max(2k, 50).';
    END IF;
    IF rrf_k IS NULL OR rrf_k < 0 OR dense_weight IS NULL OR text_weight IS NULL OR dense_weight < 0 OR text_weight < 0
       OR dense_weight + text_weight = 0 THEN
        RAISE EXCEPTION 'rrf_k and the weights must be non-negative (and not both weights 0)' USING ERRCODE = 'invalid_parameter_value',
              HINT = 'The usual RRF: rrf_k => 60, dense_weight => 1, text_weight => 1.';
    END IF;
    PERFORM mrl_internal._check_searchable(s, filter IS NOT NULL);
    IF dense_weight > 0 AND v IS NULL THEN
        v := mrl_internal._query_vector(set_slug, query_text);
    END IF;
    IF dense_weight > 0 THEN
        SELECT array_agg(d.id ORDER BY d.distance, d.id), array_agg(d.distance ORDER BY d.distance, d.id) INTO d_ids, d_dists
          FROM mrl.search(set_slug, v, n, coalesce(strategy, mrl_internal._two_stage_default(set_slug)), NULL, NULL, filter) d;
    END IF;
    IF text_weight > 0 THEN
        SELECT array_agg(t.id ORDER BY t.score DESC, t.id) INTO t_ids FROM mrl_internal._text_ranks(s, query_text, n, filter) t;
    END IF;
    RETURN QUERY
    WITH dense AS (SELECT u.id, u.distance, u.r::int AS r FROM unnest(d_ids, d_dists) WITH ORDINALITY u(id, distance, r)),
         txt AS (SELECT u.id, u.r::int AS r FROM unnest(t_ids) WITH ORDINALITY u(id, r))
    SELECT coalesce(d.id, t.id),
           (coalesce(dense_weight / (rrf_k + d.r), 0) + coalesce(text_weight / (rrf_k + t.r), 0))::float8,
           d.r, t.r, d.distance
      FROM dense d FULL JOIN txt t ON t.id = d.id
     ORDER BY 2 DESC, coalesce(d.r, 2147483647), coalesce(t.r, 2147483647), 1
     LIMIT k;
END
$fn$;

-- The full-text leg alone (rows holding the query's words, best first): what hybrid_search fuses, for measuring it.
CREATE OR REPLACE FUNCTION mrl.text_search(set_slug text, query_text text, k int DEFAULT 10, filter jsonb DEFAULT NULL)
RETURNS TABLE (id text, score double precision)
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pg_temp
AS $fn$
DECLARE
    s mrl.embedding_sets := mrl_internal._set(set_slug);
BEGIN
    IF k IS NULL OR k <= 0 OR k > 10000 THEN
        RAISE EXCEPTION 'k must be between 1 and 10000, got %', coalesce(k::text, 'NULL') USING ERRCODE = 'invalid_parameter_value';
    END IF;
    PERFORM mrl_internal._check_searchable(s, filter IS NOT NULL);
    RETURN QUERY SELECT t.id, t.score FROM mrl_internal._text_ranks(s, query_text, k, filter) t ORDER BY t.score DESC, t.id;
END
$fn$;


-- 050_status.sql
-- What a DBA looks at: how far each set is from being fully embedded.

-- Queued: rows in mrl.queue plus keys written but not yet expanded from mrl.queue_intake.
CREATE OR REPLACE VIEW mrl.queue_status WITH (security_barrier) AS
SELECT e.slug,
       (SELECT count(*) FROM mrl.queue q WHERE q.set_id = e.id AND NOT q.dead)
         + (SELECT coalesce(sum(cardinality(i.ids)), 0) FROM mrl.queue_intake i WHERE i.set_id = e.id)::bigint AS queued,
       (SELECT count(*) FROM mrl.queue q WHERE q.set_id = e.id AND q.dead) AS failed,
       clock_timestamp() - least((SELECT min(q.queued_at) FROM mrl.queue q WHERE q.set_id = e.id AND NOT q.dead),
                                 (SELECT min(i.queued_at) FROM mrl.queue_intake i WHERE i.set_id = e.id)) AS oldest_queued_age
  FROM mrl.embedding_sets e
 WHERE mrl_internal._may_see(e.source, e.owner);

CREATE OR REPLACE FUNCTION mrl.set_status(set_slug text)
RETURNS TABLE (slug text, config text, coarse_method text, truncate_dim int, rows bigint, embedded bigint,
               queued bigint, failed bigint, oldest_queued_age interval, rotation_fitted_at timestamptz)
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pg_temp
AS $fn$
DECLARE
    s mrl.embedding_sets := mrl_internal._set(set_slug);
    n_rows bigint;
    n_vec bigint;
BEGIN
    -- counts only tables that run nobody's code (a source's row-level security, a changed vectors table)
    IF EXISTS (SELECT FROM pg_class WHERE oid = s.source) AND mrl_internal._source_problem(s.source) IS NULL THEN
        EXECUTE format('SELECT count(*) FROM ONLY %s', s.source) INTO n_rows;
    END IF;
    IF mrl_internal._vectors_problem(s.vectors_table) IS NULL THEN
        EXECUTE format('SELECT count(%s) FROM %s', CASE WHEN s.chunking IS NULL THEN '*' ELSE 'DISTINCT id' END,
                       s.vectors_table) INTO n_vec;  -- rows embedded (of a chunked set: rows with chunks)
    END IF;
    RETURN QUERY
    SELECT s.slug, s.config, s.coarse_method, s.truncate_dim, n_rows, n_vec,
           qs.queued, qs.failed, qs.oldest_queued_age, s.rotation_fitted_at
      FROM mrl.queue_status qs WHERE qs.slug = s.slug;
END
$fn$;


-- 060_worker.internal.sql
-- Internal helpers (schema mrl_internal) of 060_worker.sql: not part of the API; EXECUTE is granted in 090_privileges.sql.

-- Current text of the given keys. content_hash = md5(text); stored_hash = the hash of the vector stored now
-- (so unchanged texts are not embedded again; of any chunk, in a chunked set). Keys whose row is gone come back
-- with body NULL.
CREATE OR REPLACE FUNCTION mrl_internal._fetch_texts(set_id int, ids text[])
RETURNS TABLE (id text, body text, content_hash text, stored_hash text)
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pg_temp
SET DateStyle = 'ISO, MDY' SET IntervalStyle = 'postgres' SET extra_float_digits = 1 SET TimeZone = 'UTC' SET bytea_output = 'hex'
AS $fn$
DECLARE
    s mrl.embedding_sets;
BEGIN
    SELECT * INTO s FROM mrl.embedding_sets e WHERE e.id = _fetch_texts.set_id;
    IF NOT EXISTS (SELECT FROM pg_class WHERE oid = s.source) THEN
        RAISE EXCEPTION 'the source table of embedding set "%" was dropped', s.slug
            USING ERRCODE = 'undefined_table',
                  HINT = format('Drop the set with SELECT mrl.drop_embedding_set(%L), or recreate it on the new table.', s.slug);
    END IF;
    PERFORM mrl_internal._check_tables(s);
    RETURN QUERY EXECUTE format(
        'SELECT k.id, x.body, md5(x.body), v.content_hash
           FROM unnest($1) AS k(id)
      LEFT JOIN (SELECT mrl_src.%1$I AS mrl_key, (%2$s)::text AS body FROM ONLY %3$s mrl_src WHERE mrl_src.%1$I = ANY ($1::%4$s[])) x
             ON x.mrl_key = k.id::%4$s
      LEFT JOIN LATERAL (SELECT v.content_hash FROM %5$s v WHERE v.id = x.mrl_key LIMIT 1) v ON true',
        s.pk_column, s.text_expr, s.source, s.pk_type, s.vectors_table) USING ids;
END
$fn$;

-- Writes a batch: vectors whose source text still has the hash they were computed from
-- (a text changed meanwhile was queued again by its UPDATE and is embedded later), with the full-text words of the
-- text they were computed from; removes vectors of keys whose text is now NULL or empty, and deletes the claimed
-- queue rows. A chunked set gets one vector per chunk (chunks[i], starts[i], ends[i]: the chunk of ids[i] and its
-- characters [start, end) in the text); a row written now loses the chunks it no longer has.
-- Keys of the batch whose stored vector has no full-text words yet (sets upgraded from before them) get them. The
-- words of a row of an unchunked set are those of its first 300,000 characters (a tsvector holds at most 1 MB).
-- Source rows are KEY SHARE-locked first, in key order: a concurrent DELETE (which cascades to the vectors)
-- then either finishes before or waits after, and never deadlocks with the worker; text UPDATEs never wait.
DROP FUNCTION IF EXISTS mrl_internal._apply_batch(int, bigint[], text[], text[], "public".vector[]);
DROP FUNCTION IF EXISTS mrl_internal._apply_batch(int, bigint[], text[], text[], "public".vector[], bool[]);

CREATE OR REPLACE FUNCTION mrl_internal._apply_batch(set_id int, qids bigint[], ids text[], hashes text[],
                                            embeddings "public".vector[], truncated bool[] DEFAULT NULL,
                                            chunks int[] DEFAULT NULL, starts int[] DEFAULT NULL, ends int[] DEFAULT NULL)
RETURNS bigint
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
SET DateStyle = 'ISO, MDY' SET IntervalStyle = 'postgres' SET extra_float_digits = 1 SET TimeZone = 'UTC' SET bytea_output = 'hex'
AS $fn$
DECLARE
    s mrl.embedding_sets;
    written bigint := 0;
    keys text[];
    w_hashes text[];
    n int := coalesce(array_length(ids, 1), 0);
BEGIN
    SELECT * INTO s FROM mrl.embedding_sets e WHERE e.id = _apply_batch.set_id FOR SHARE;
    IF NOT FOUND THEN
        RETURN 0;  -- the set was dropped
    END IF;
    PERFORM mrl_internal._check_tables(s);
    IF (s.chunking IS NOT NULL) <> (chunks IS NOT NULL) AND n > 0 THEN
        RAISE EXCEPTION 'embedding set "%" is % but the batch %', s.slug,
            CASE WHEN s.chunking IS NULL THEN 'not chunked' ELSE 'chunked' END,
            CASE WHEN chunks IS NULL THEN 'has no chunks' ELSE 'has chunks' END
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    IF chunks IS NOT NULL AND (cardinality(chunks) <> n OR cardinality(starts) <> n OR cardinality(ends) <> n) THEN
        RAISE EXCEPTION 'a batch needs one chunk number and offsets per vector' USING ERRCODE = 'invalid_parameter_value';
    END IF;
    SELECT array_agg(DISTINCT q.id) INTO keys FROM mrl.queue q WHERE q.qid = ANY (qids);
    keys := (SELECT array_agg(DISTINCT k) FROM unnest(coalesce(keys, '{}') || coalesce(ids, '{}')) k);
    -- (Row locks need UPDATE privilege; a worker role without it relies on the foreign-key check's own lock and
    -- retries a batch that a concurrent DELETE made fail.)
    IF has_any_column_privilege(s.source, 'UPDATE') THEN
        EXECUTE format('SELECT count(*) FROM (SELECT 1 FROM ONLY %s WHERE %I = ANY ($1::%s[]) ORDER BY %I FOR KEY SHARE) l',
                       s.source, s.pk_column, s.pk_type, s.pk_column) USING keys;
    END IF;
    IF n > 0 AND chunks IS NULL THEN
        EXECUTE format(
            'INSERT INTO %1$s AS v (id, embedding, coarse, content_hash, embedded_at, truncated, tsv)
             SELECT x.mrl_key, b.embedding, %6$s, b.hash, clock_timestamp(), coalesce(b.truncated, false),
                    pg_catalog.to_tsvector($6::regconfig, left(x.mrl_body, 300000))
               FROM unnest($1, $2, $3, $5) AS b(id, hash, embedding, truncated)
               JOIN (SELECT mrl_src.%2$I AS mrl_key, (%3$s)::text AS mrl_body FROM ONLY %4$s mrl_src WHERE mrl_src.%2$I = ANY ($1::%5$s[])) x
                 ON x.mrl_key = b.id::%5$s AND md5(x.mrl_body) = b.hash
              ORDER BY x.mrl_key
             ON CONFLICT (id) DO UPDATE SET embedding = EXCLUDED.embedding, coarse = EXCLUDED.coarse,
                 content_hash = EXCLUDED.content_hash, embedded_at = EXCLUDED.embedded_at,
                 truncated = EXCLUDED.truncated, tsv = EXCLUDED.tsv',
            s.vectors_table, s.pk_column, s.text_expr, s.source, s.pk_type,
            CASE WHEN s.coarse_method = 'none' THEN 'NULL' ELSE 'mrl.coarse_of($4, b.embedding)' END)
            USING ids, hashes, embeddings, s.id, coalesce(truncated, array_fill(false, ARRAY[n])), s.text_search_config;
        GET DIAGNOSTICS written = ROW_COUNT;
    ELSIF n > 0 THEN
        EXECUTE format(
            'WITH w AS (
                 INSERT INTO %1$s AS v (id, chunk, start_char, end_char, embedding, coarse, content_hash, embedded_at, tsv)
                 SELECT x.mrl_key, b.chunk, b.start_char, b.end_char, b.embedding, %6$s, b.hash, clock_timestamp(),
                        pg_catalog.to_tsvector($6::regconfig, substr(x.mrl_body, b.start_char + 1, b.end_char - b.start_char))
                   FROM unnest($1, $2, $3, $5, $7, $8) AS b(id, hash, embedding, chunk, start_char, end_char)
                   JOIN (SELECT mrl_src.%2$I AS mrl_key, (%3$s)::text AS mrl_body FROM ONLY %4$s mrl_src WHERE mrl_src.%2$I = ANY ($1::%5$s[])) x
                     ON x.mrl_key = b.id::%5$s AND md5(x.mrl_body) = b.hash
                  ORDER BY x.mrl_key, b.chunk
                 ON CONFLICT (id, chunk) DO UPDATE SET start_char = EXCLUDED.start_char, end_char = EXCLUDED.end_char,
                     embedding = EXCLUDED.embedding, coarse = EXCLUDED.coarse, content_hash = EXCLUDED.content_hash,
                     embedded_at = EXCLUDED.embedded_at, tsv = EXCLUDED.tsv
                 RETURNING v.id, v.content_hash)
             SELECT count(*), array_agg(DISTINCT w.id::text || chr(1) || w.content_hash) FROM w',
            s.vectors_table, s.pk_column, s.text_expr, s.source, s.pk_type,
            CASE WHEN s.coarse_method = 'none' THEN 'NULL' ELSE 'mrl.coarse_of($4, b.embedding)' END)
            INTO written, w_hashes
            USING ids, hashes, embeddings, s.id, chunks, s.text_search_config, starts, ends;
        -- chunks of an earlier text of the rows just written (their hash is the old one)
        EXECUTE format(
            'DELETE FROM %1$s v USING unnest($1) w(k)
              WHERE v.id = split_part(w.k, chr(1), 1)::%2$s AND v.content_hash <> split_part(w.k, chr(1), 2)',
            s.vectors_table, s.pk_type) USING w_hashes;
    END IF;
    IF s.chunking IS NULL THEN
        EXECUTE format(
            'UPDATE %1$s v SET tsv = pg_catalog.to_tsvector($2::regconfig, left(x.mrl_body, 300000))
               FROM (SELECT mrl_src.%2$I AS mrl_key, (%3$s)::text AS mrl_body FROM ONLY %4$s mrl_src WHERE mrl_src.%2$I = ANY ($1::%5$s[])) x
              WHERE v.id = x.mrl_key AND v.tsv IS NULL AND v.content_hash = md5(x.mrl_body)',
            s.vectors_table, s.pk_column, s.text_expr, s.source, s.pk_type) USING keys, s.text_search_config;
    END IF;
    -- Texts that became NULL or empty lose their vector(s).
    EXECUTE format(
        'DELETE FROM %1$s v USING (SELECT mrl_src.%2$I AS mrl_key FROM ONLY %4$s mrl_src
                                    WHERE mrl_src.%2$I = ANY ($1::%5$s[]) AND coalesce((%3$s)::text, '''') = '''') x
          WHERE v.id = x.mrl_key',
        s.vectors_table, s.pk_column, s.text_expr, s.source, s.pk_type) USING keys;
    DELETE FROM mrl.queue WHERE qid = ANY (qids);
    RETURN written;
END
$fn$;

-- Records a failed attempt: exponential backoff (capped), dead-lettered after max_attempts.
CREATE OR REPLACE FUNCTION mrl_internal._fail_items(qids bigint[], error text, max_attempts int DEFAULT 5)
RETURNS void
LANGUAGE sql
SET search_path = pg_catalog, pg_temp
AS $fn$
    UPDATE mrl.queue
       SET attempts = attempts + 1,
           last_error = left(error, 2000),
           next_attempt_at = clock_timestamp() + least(interval '1 second' * power(2, attempts + 1), interval '10 minutes'),
           dead = attempts + 1 >= max_attempts,
           failed_at = CASE WHEN attempts + 1 >= max_attempts THEN clock_timestamp() END
     WHERE qid = ANY (qids)
$fn$;

-- Moves keys queued as arrays (mrl.queue_intake) into mrl.queue rows, oldest statements first; keeps their
-- queue time. Concurrent workers take different intake rows. Returns the keys moved.
CREATE OR REPLACE FUNCTION mrl_internal._expand_intake(max_statements int DEFAULT 100)
RETURNS bigint
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $fn$
DECLARE
    n bigint;
    total bigint := 0;
    i record;
BEGIN
    BEGIN
        WITH moved AS (
            DELETE FROM mrl.queue_intake qi  -- (not "i": that is the record below, and plpgsql would read it here)
             WHERE qi.bid IN (SELECT x.bid FROM mrl.queue_intake x ORDER BY x.bid LIMIT max_statements FOR UPDATE SKIP LOCKED)
            RETURNING qi.set_id, qi.ids, qi.queued_at)
        INSERT INTO mrl.queue (set_id, id, queued_at)
        SELECT m.set_id, u.id, m.queued_at
          FROM moved m JOIN mrl.embedding_sets e ON e.id = m.set_id, unnest(m.ids) u(id)
         WHERE u.id IS NOT NULL;
        GET DIAGNOSTICS n = ROW_COUNT;
        RETURN n;
    EXCEPTION WHEN OTHERS THEN
        -- one statement's keys cannot be queued (whatever the reason): move the others, one statement at a time,
        -- and keep that one in the intake with a warning, so that no set waits for it
        RAISE WARNING 'pgmrl: expanding queued keys failed (%); moving them one statement at a time', SQLERRM;
    END;
    FOR i IN SELECT x.bid, x.set_id, x.ids, x.queued_at FROM mrl.queue_intake x ORDER BY x.bid
              LIMIT max_statements FOR UPDATE SKIP LOCKED LOOP
        BEGIN
            INSERT INTO mrl.queue (set_id, id, queued_at)
            SELECT i.set_id, u.id, i.queued_at FROM unnest(i.ids) u(id)
             WHERE u.id IS NOT NULL AND EXISTS (SELECT FROM mrl.embedding_sets e WHERE e.id = i.set_id);
            GET DIAGNOSTICS n = ROW_COUNT;
            DELETE FROM mrl.queue_intake WHERE bid = i.bid;
            total := total + n;
        EXCEPTION WHEN OTHERS THEN
            RAISE WARNING 'pgmrl: the keys written by statement % of set % cannot be queued: %', i.bid, i.set_id, SQLERRM;
        END;
    END LOOP;
    RETURN total;
END
$fn$;


-- 060_worker.sql
-- Functions the embedding worker calls. Each works inside the caller's transaction.

-- Dead-lettered items, with their last error.
CREATE OR REPLACE VIEW mrl.failed_items WITH (security_barrier) AS
SELECT e.slug, q.id, q.attempts, q.last_error, q.queued_at, q.failed_at, q.qid
  FROM mrl.queue q JOIN mrl.embedding_sets e ON e.id = q.set_id
 WHERE q.dead AND mrl_internal._may_see(e.source, e.owner);

-- Puts a set's dead-lettered items back in the queue (attempts reset). Returns how many.
CREATE OR REPLACE FUNCTION mrl.retry_failed(set_slug text)
RETURNS bigint
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $fn$
DECLARE
    s mrl.embedding_sets := mrl_internal._set(set_slug);
    n bigint;
BEGIN
    UPDATE mrl.queue SET dead = false, attempts = 0, next_attempt_at = NULL, failed_at = NULL
     WHERE set_id = s.id AND dead;
    GET DIAGNOSTICS n = ROW_COUNT;
    IF n > 0 THEN
        PERFORM pg_notify('mrl_queue', s.id::text);
    END IF;
    RETURN n;
END
$fn$;


-- 065_rotation.internal.sql
-- The fitted rotation of non-MRL sets. The sidecar fits it (numpy SVD) and stores it with
-- mrl_internal._store_rotation(), which rewrites every coarse vector in the same transaction.

-- Sets whose rotation should be (re)fitted now: asked for, or first reaching rotation_min_rows embedded rows,
-- or grown to twice the rows of the last fit. Never while the set still has queued work (except when asked).
CREATE OR REPLACE FUNCTION mrl_internal._rotation_due()
RETURNS SETOF int
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pg_temp
AS $fn$
DECLARE
    s mrl.embedding_sets;
    n bigint;
BEGIN
    FOR s IN SELECT * FROM mrl.embedding_sets WHERE coarse_method = 'rotation' ORDER BY id LOOP
        IF s.rotation_requested_at IS NOT NULL
           AND (s.rotation_fitted_at IS NULL OR s.rotation_requested_at > s.rotation_fitted_at) THEN
            RETURN NEXT s.id;
            CONTINUE;
        END IF;
        CONTINUE WHEN mrl_internal._tables_problem(s) IS NOT NULL;
        CONTINUE WHEN EXISTS (SELECT FROM mrl.queue q WHERE q.set_id = s.id AND NOT q.dead)
                   OR EXISTS (SELECT FROM mrl.queue_intake i WHERE i.set_id = s.id);
        EXECUTE format('SELECT count(*) FROM %s', s.vectors_table) INTO n;
        IF (s.rotation_version = 0 AND n >= s.rotation_min_rows)
           OR (s.rotation_version > 0 AND n >= 2 * s.rotation_rows) THEN
            RETURN NEXT s.id;
        END IF;
    END LOOP;
END
$fn$;

-- Up to `sample` stored full vectors of a set (all of them when there are fewer), for fitting.
CREATE OR REPLACE FUNCTION mrl_internal._sample_embeddings(set_id int, sample int DEFAULT 50000)
RETURNS SETOF "public".vector
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pg_temp
AS $fn$
DECLARE
    s mrl.embedding_sets := (SELECT e FROM mrl.embedding_sets e WHERE e.id = _sample_embeddings.set_id);
    vt regclass := s.vectors_table;
BEGIN
    PERFORM mrl_internal._check_tables(s);
    RETURN QUERY EXECUTE format('SELECT embedding FROM %s ORDER BY md5(id::text) LIMIT $1', vt) USING sample;
END
$fn$;

CREATE OR REPLACE FUNCTION mrl_internal._store_rotation(set_id int, directions "public".vector[],
                                               explained double precision[], fitted_rows bigint)
RETURNS void
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $fn$
DECLARE
    s mrl.embedding_sets;
    idx text;
BEGIN
    SELECT * INTO s FROM mrl.embedding_sets e WHERE e.id = _store_rotation.set_id FOR UPDATE;
    PERFORM mrl_internal._check_tables(s);
    IF array_length(directions, 1) < s.truncate_dim THEN
        RAISE EXCEPTION 'a rotation for set "%" needs % directions, got %', s.slug, s.truncate_dim, array_length(directions, 1);
    END IF;
    DELETE FROM mrl.rotation_components c WHERE c.set_id = s.id;
    INSERT INTO mrl.rotation_components (set_id, component, direction, explained_variance)
    SELECT s.id, o - 1, d, explained[o] FROM unnest(directions) WITH ORDINALITY AS u(d, o);
    UPDATE mrl.embedding_sets
       SET rotation_version = rotation_version + 1, rotation_rows = fitted_rows,
           rotation_fitted_at = clock_timestamp(), rotation_requested_at = NULL
     WHERE id = s.id;
    -- Rewrite the coarse vectors. Rebuilding the index once is cheaper than updating it row by row, but only the
    -- table's owner may; the least-privileged worker role updates in place.
    idx := s.slug || '_coarse_hnsw';
    IF EXISTS (SELECT FROM pg_class WHERE oid = s.vectors_table AND pg_has_role(relowner, 'USAGE')) THEN
        EXECUTE format('DROP INDEX IF EXISTS mrl_data.%I', idx);
        EXECUTE format('UPDATE %s SET coarse = mrl.coarse_of($1, embedding)', s.vectors_table) USING s.id;
        EXECUTE format('CREATE INDEX %I ON %s USING hnsw (coarse "public".halfvec_cosine_ops)', idx, s.vectors_table);
    ELSE
        EXECUTE format('UPDATE %s SET coarse = mrl.coarse_of($1, embedding)', s.vectors_table) USING s.id;
    END IF;
END
$fn$;


-- 070_configs.sql
-- GENERATED from pyext/pgmrl/guide/catalogue.json by `python -m pgmrl.guide.sqlgen`: edit that file, not this.
-- The models of the embedding model selection guide. Re-running the install refreshes these rows;
-- configs that users register (builtin = false) are never touched.
INSERT INTO mrl.embedding_configs AS c
       (name, model, provider, dims, supports_mrl, matryoshka_dims, default_truncate_dim,
        query_prefix, document_prefix, max_seq_length, params_millions, best_for, aliases, builtin)
VALUES
    ('all-minilm-l6-v2', 'sentence-transformers/all-MiniLM-L6-v2', 'sentence-transformers', 384, false, NULL, NULL,
     '', '', 256, 22.7, 'fast general English search; first stage before LLM re-ranking; bundled, works offline', '{all-minilm,minilm,all-minilm-l6}', true),
    ('nomic-embed-text-v1.5', 'nomic-ai/nomic-embed-text-v1.5', 'sentence-transformers', 768, true, '{768,512,256,128,64}', 256,
     'search_query: ', 'search_document: ', 8192, 137, 'storage-optimised search with Matryoshka truncation; long documents', '{nomic-embed-text,nomic}', true),
    ('mxbai-embed-large-v1', 'mixedbread-ai/mxbai-embed-large-v1', 'sentence-transformers', 1024, true, '{1024,512,256,128,64}', 512,
     'Represent this sentence for searching relevant passages: ', '', 512, 335, 'high-quality English search with Matryoshka truncation', '{mxbai-embed-large,mxbai}', true),
    ('bge-large-en-v1.5', 'BAAI/bge-large-en-v1.5', 'sentence-transformers', 1024, false, NULL, NULL,
     'Represent this sentence for searching relevant passages: ', '', 512, 335, 'high-quality general English retrieval', '{bge-large-en,bge-large}', true),
    ('e5-mistral-7b', 'intfloat/e5-mistral-7b-instruct', 'sentence-transformers', 4096, false, NULL, NULL,
     E'Instruct: Given a web search query, retrieve relevant passages that answer the query\nQuery: ', '', 4096, 7111, 'best quality when a GPU is available; base for domain fine-tuning', '{e5-mistral,e5-mistral-7b-instruct}', true),
    ('multilingual-e5-large', 'intfloat/multilingual-e5-large', 'sentence-transformers', 1024, false, NULL, NULL,
     'query: ', 'passage: ', 512, 560, 'multilingual and CJK search', '{multilingual-e5}', true),
    ('gte-large-en-v1.5', 'Alibaba-NLP/gte-large-en-v1.5', 'sentence-transformers', 1024, false, NULL, NULL,
     '', '', 8192, 434, 'domain-specific search after fine-tuning; long context', '{gte-large-en,gte-large}', true),
    ('multilingual-e5-small', 'intfloat/multilingual-e5-small', 'sentence-transformers', 384, false, NULL, NULL,
     'query: ', 'passage: ', 512, 118, 'multilingual and CJK search, fast', '{multilingual-e5-small}', true),
    ('jina-embeddings-v2-base-code', 'jinaai/jina-embeddings-v2-base-code', 'sentence-transformers', 768, false, NULL, NULL,
     '', '', 8192, 161, 'code search (natural language to code)', '{jina-code,code}', true)
ON CONFLICT (name) DO UPDATE
   SET model = EXCLUDED.model,
       provider = EXCLUDED.provider,
       dims = EXCLUDED.dims,
       supports_mrl = EXCLUDED.supports_mrl,
       matryoshka_dims = EXCLUDED.matryoshka_dims,
       default_truncate_dim = EXCLUDED.default_truncate_dim,
       query_prefix = EXCLUDED.query_prefix,
       document_prefix = EXCLUDED.document_prefix,
       max_seq_length = EXCLUDED.max_seq_length,
       params_millions = EXCLUDED.params_millions,
       best_for = EXCLUDED.best_for,
       aliases = EXCLUDED.aliases
 WHERE c.builtin;


-- 075_recommend.sql
-- GENERATED from pyext/pgmrl/guide/catalogue.json by `python -m pgmrl.guide.sqlgen`: edit that file, not this.
-- The model selection guide's decision tree (the same rules as `pgmrl recommend`): the first rule
-- whose questions are all answered yes.
CREATE OR REPLACE FUNCTION mrl.recommend_config(
    llm_rerank bool DEFAULT false,
    storage bool DEFAULT false,
    domain bool DEFAULT false,
    multilingual bool DEFAULT false,
    code bool DEFAULT false,
    speed bool DEFAULT false)
RETURNS TABLE (config text, alternative text, truncate_dim int, fine_tune bool, reason text)
LANGUAGE sql IMMUTABLE
SET search_path = pg_catalog, pg_temp
AS $fn$
    SELECT t.config, t.alternative, t.truncate_dim, t.fine_tune, t.reason FROM (VALUES
        (1, coalesce(code, false), 'jina-embeddings-v2-base-code', NULL::text, NULL::int, false,
         'code search: a model trained on code and its documentation matches natural-language queries to code far better than a text model'),
        (2, coalesce(multilingual, false) AND coalesce(speed, false), 'multilingual-e5-small', 'multilingual-e5-large'::text, NULL::int, false,
         'multilingual/CJK text, speed first: the small multilingual E5 (384 dims)'),
        (3, coalesce(multilingual, false), 'multilingual-e5-large', 'multilingual-e5-small'::text, NULL::int, false,
         'multilingual/CJK text: English-only models tokenise other scripts poorly'),
        (4, coalesce(llm_rerank, false), 'all-minilm-l6-v2', NULL::text, NULL::int, false,
         'an LLM re-ranks the candidates, so the first stage only needs fast, cheap recall: all-MiniLM-L6-v2 (384 dims)'),
        (5, coalesce(storage, false), 'nomic-embed-text-v1.5', 'mxbai-embed-large-v1'::text, 128::int, false,
         'storage matters: an MRL model keeps most of its quality truncated; nomic 768 -> 128 dims stores 1/6 of the floats (0.5 GB instead of 3.0 GB per 1M documents)'),
        (6, coalesce(domain, false), 'gte-large-en-v1.5', 'e5-mistral-7b'::text, NULL::int, true,
         'domain-specific vocabulary: fine-tune a base model on your documents when the baseline Recall@10 on your validation pairs is below 60%, or when a fine-tuned model beats the base model with its rotation at your coarse dimension on held-out real queries'),
        (7, true, 'bge-large-en-v1.5', 'e5-mistral-7b'::text, NULL::int, false,
         'general English retrieval without special constraints: a strong general model')
    ) t(rank, applies, config, alternative, truncate_dim, fine_tune, reason)
    WHERE t.applies ORDER BY t.rank LIMIT 1
$fn$;


-- 076_finetune.sql
-- Fine-tuning data: the documents of a set (what its vectors embed) and the datasets generated from them.

CREATE OR REPLACE FUNCTION mrl.set_documents(set_slug text)
RETURNS TABLE (id text, body text)
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pg_temp
SET DateStyle = 'ISO, MDY' SET IntervalStyle = 'postgres' SET extra_float_digits = 1 SET TimeZone = 'UTC' SET bytea_output = 'hex'
AS $fn$
DECLARE
    s mrl.embedding_sets := mrl_internal._set(set_slug);
BEGIN
    PERFORM mrl_internal._check_tables(s);
    RETURN QUERY EXECUTE format(
        'SELECT (mrl_src.%1$I)::text, (%2$s)::text FROM ONLY %3$s mrl_src WHERE coalesce((%2$s)::text, '''') <> '''' ORDER BY mrl_src.%1$I',
        s.pk_column, s.text_expr, s.source);
END
$fn$;

CREATE OR REPLACE VIEW mrl.finetune_summary AS
SELECT d.name, d.source ->> 'slug' AS set_slug, d.config, d.created_at,
       count(p.n) FILTER (WHERE p.split = 'train') AS train_pairs,
       count(p.n) FILTER (WHERE p.split = 'validation') AS validation_pairs,
       count(DISTINCT p.doc_id) AS documents
  FROM mrl.finetune_datasets d LEFT JOIN mrl.finetune_pairs p ON p.dataset = d.name
 GROUP BY d.name;

-- Real query-document pairs: the query side from the source's own column or expression (a product's name, an
-- article's headline, a ticket's subject), checked like a set's text expression. Runs as the caller.
CREATE OR REPLACE FUNCTION mrl.set_document_pairs(set_slug text, query_expr text)
RETURNS TABLE (id text, body text, query text)
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pg_temp
SET DateStyle = 'ISO, MDY' SET IntervalStyle = 'postgres' SET extra_float_digits = 1 SET TimeZone = 'UTC' SET bytea_output = 'hex'
AS $fn$
DECLARE
    s mrl.embedding_sets := mrl_internal._set(set_slug);
    q text;
BEGIN
    PERFORM mrl_internal._check_tables(s);
    q := (mrl_internal._text_expr(s.source, query_expr)).expr;
    RETURN QUERY EXECUTE format(
        'SELECT (mrl_src.%1$I)::text, (%2$s)::text, (%4$s)::text FROM ONLY %3$s mrl_src '
        'WHERE coalesce((%2$s)::text, '''') <> '''' ORDER BY mrl_src.%1$I',
        s.pk_column, s.text_expr, s.source, q);
END
$fn$;

-- The stored full vectors of some of a set's rows (what hard-negative mining compares; a chunked set's first
-- chunks). Runs as the caller: the
-- vectors table's row-level security shows only rows of a source the caller may read.
CREATE OR REPLACE FUNCTION mrl.set_embeddings(set_slug text, ids text[])
RETURNS TABLE (id text, embedding "public".vector)
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pg_temp
SET DateStyle = 'ISO, MDY' SET IntervalStyle = 'postgres' SET extra_float_digits = 1 SET TimeZone = 'UTC' SET bytea_output = 'hex'
AS $fn$
DECLARE
    s mrl.embedding_sets := mrl_internal._set(set_slug);
    key_type text;
BEGIN
    PERFORM mrl_internal._check_tables(s);
    SELECT pg_catalog.format_type(a.atttypid, a.atttypmod) INTO key_type
      FROM pg_catalog.pg_attribute a WHERE a.attrelid = s.vectors_table AND a.attname = 'id';
    -- a chunked set: the vector of each row's first chunk (its beginning, what a model with a short window sees)
    RETURN QUERY EXECUTE format('SELECT v.id::text, v.embedding FROM %s v WHERE v.id = ANY ($1::%s[])%s',
                                s.vectors_table, key_type,
                                CASE WHEN EXISTS (SELECT FROM pg_catalog.pg_attribute a
                                                   WHERE a.attrelid = s.vectors_table AND a.attname = 'chunk'
                                                     AND NOT a.attisdropped)
                                     THEN ' AND v.chunk = 0' ELSE '' END)
        USING ids;
END
$fn$;


-- 080_embed.internal.sql
-- Internal helpers (schema mrl_internal) of 080_embed.sql: not part of the API; EXECUTE is granted in 090_privileges.sql.

-- A query that is a vector written as text ('[0.1, 0.2, ...]', or an array '{0.1, ...}' / '{"0.1", ...}' as node-postgres
-- sends a plain array): what pgvector's adapters for
-- psycopg2, asyncpg, node-postgres and SQLAlchemy send when no ::vector cast is written. Such a string reaches the
-- text overloads (PostgreSQL prefers text for an untyped literal or parameter), and must never be embedded as words.
-- Returns the vector, NULL for ordinary text; raises when it looks like a vector but does not parse as one.
CREATE OR REPLACE FUNCTION mrl_internal._vector_text(input text)
RETURNS "public".vector
LANGUAGE plpgsql IMMUTABLE
SET search_path = pg_catalog, pg_temp
AS $fn$
BEGIN
    IF input IS NULL OR input !~ '^\s*(\[[-+0-9.,eE\s]*\]|\{[-+0-9.,eE\s"]*\})\s*$' OR input !~ '[0-9]' THEN
        RETURN NULL;
    END IF;
    BEGIN
        IF btrim(input) LIKE '{%' THEN
            RETURN input::real[]::"public".vector;
        END IF;
        RETURN input::"public".vector;
    EXCEPTION WHEN data_exception THEN
        RAISE EXCEPTION 'query % looks like a vector but is not one: %', left(input, 80), SQLERRM
            USING ERRCODE = 'invalid_text_representation',
                  HINT = 'Pass a query vector as vector (e.g. $2::vector, or ''[0.1, ...]''::vector), or words to search for.';
    END;
END
$fn$;

-- Sync mode: statement-level trigger that embeds the new texts inside the writing transaction, so the vectors
-- are visible at COMMIT. If the sidecar cannot be reached the write fails (never silently skips).
-- Runs as the writer (not SECURITY DEFINER): it writes the set's vectors table, and whatever the table's owner may
-- attach to it must never run with more than the writer's privileges. Writers need INSERT, UPDATE, DELETE on the
-- vectors table (granted by the set's owner).
CREATE OR REPLACE FUNCTION mrl_internal._sync_changes()
RETURNS trigger
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
SET DateStyle = 'ISO, MDY' SET IntervalStyle = 'postgres' SET extra_float_digits = 1 SET TimeZone = 'UTC' SET bytea_output = 'hex'
AS $fn$
DECLARE
    s mrl.embedding_sets := mrl_internal._trigger_set(TG_ARGV[0], TG_RELID, TG_NAME, TG_LEVEL, TG_WHEN, TG_OP,
                                                      'mrl_internal._sync_changes'::regproc);
    keys text[];
    texts text[];
    emptied text[];
BEGIN
    IF s.id IS NULL THEN
        RETURN NULL;
    END IF;
    PERFORM mrl_internal._check_tables(s);
    EXECUTE format(
        'SELECT array_agg((c.k)::text) FILTER (WHERE coalesce(c.t, '''') <> ''''),
                array_agg(c.t) FILTER (WHERE coalesce(c.t, '''') <> ''''),
                array_agg((c.k)::text) FILTER (WHERE coalesce(c.t, '''') = '''')
           FROM %s', mrl_internal._changed_rows(s, TG_OP)) INTO keys, texts, emptied;
    IF emptied IS NOT NULL AND TG_OP = 'UPDATE' THEN
        EXECUTE format('DELETE FROM %s WHERE id = ANY ($1::%s[])', s.vectors_table, s.pk_type) USING emptied;
    END IF;
    IF keys IS NOT NULL THEN
        EXECUTE format(
            'INSERT INTO %1$s AS v (id, embedding, coarse, content_hash, embedded_at, tsv)
             SELECT u.k::%2$s, u.e, %3$s, md5(u.t), clock_timestamp(), pg_catalog.to_tsvector($5::regconfig, left(u.t, 300000))
               FROM unnest($1, $2, $3) AS u(k, t, e)
             ON CONFLICT (id) DO UPDATE SET embedding = EXCLUDED.embedding, coarse = EXCLUDED.coarse,
                 content_hash = EXCLUDED.content_hash, embedded_at = EXCLUDED.embedded_at, tsv = EXCLUDED.tsv',
            s.vectors_table, s.pk_type,
            CASE WHEN s.coarse_method = 'none' THEN 'NULL' ELSE 'mrl.coarse_of($4, u.e)' END)
            USING keys, texts, mrl_internal._http_embed(texts, s.config, 'document'), s.id, s.text_search_config;
    END IF;
    RETURN NULL;
END
$fn$;

-- The query vector of a text search: a vector written as text is that vector; words are embedded with the set's
-- model and query prefix (through the sidecar).
CREATE OR REPLACE FUNCTION mrl_internal._query_vector(set_slug text, query text)
RETURNS "public".vector
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pg_temp
AS $fn$
DECLARE
    v "public".vector := mrl_internal._vector_text(query);
BEGIN
    IF v IS NULL THEN
        IF query IS NULL OR btrim(query) = '' THEN
            RAISE EXCEPTION 'query is NULL or empty' USING ERRCODE = 'null_value_not_allowed',
                  HINT = 'Pass the words to search for, or a query vector.';
        END IF;
        v := mrl.embed(query, (mrl_internal._set(set_slug)).config, 'query');
    END IF;
    RETURN v;
END
$fn$;


-- 080_embed.sql
-- Text in SQL: mrl.embed() and the text overloads of the searches (through the sidecar), and sync mode.

CREATE OR REPLACE FUNCTION mrl.embed(input text, config text DEFAULT 'all-minilm-l6-v2', kind text DEFAULT 'query')
RETURNS "public".vector
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pg_temp
AS $fn$
DECLARE
    c mrl.embedding_configs := mrl_internal._config(config);
BEGIN
    IF input IS NULL OR input = '' THEN
        RAISE EXCEPTION 'text to embed is NULL or empty' USING ERRCODE = 'null_value_not_allowed',
              HINT = 'Pass the words to search for.';
    END IF;
    IF mrl_internal._vector_text(input) IS NOT NULL THEN
        RAISE EXCEPTION 'the text to embed is a vector (%...), not words', left(input, 40) USING ERRCODE = 'invalid_parameter_value',
              HINT = 'A query vector needs no embedding: pass it to the search functions (cast as ::vector).';
    END IF;
    IF kind IS NULL OR kind NOT IN ('query', 'document') THEN
        RAISE EXCEPTION 'kind must be ''query'' or ''document'', got %', coalesce(quote_literal(kind), 'NULL')
            USING ERRCODE = 'invalid_parameter_value',
                  HINT = 'Queries and documents get different prefixes on models that use them (e.g. nomic).';
    END IF;
    RETURN (mrl_internal._http_embed(ARRAY[input], c.name, kind))[1];
END
$fn$;

CREATE OR REPLACE FUNCTION mrl.search(
    set_slug text,
    query text,
    k int DEFAULT 10,
    strategy text DEFAULT NULL,
    coarse_k int DEFAULT NULL,
    coarse_dim int DEFAULT NULL,
    filter jsonb DEFAULT NULL
)
RETURNS TABLE (id text, distance double precision)
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pg_temp
AS $fn$
DECLARE
    v "public".vector := mrl_internal._query_vector(set_slug, query);
BEGIN
    RETURN QUERY SELECT * FROM mrl.search(set_slug, v, k, strategy, coarse_k, coarse_dim, filter);
END
$fn$;

COMMENT ON FUNCTION mrl.search(text, text, int, text, int, int, jsonb) IS
    'Searches a set for words (embedded by the sidecar with the set''s model and query prefix). A vector written as text is searched as that vector.';

CREATE OR REPLACE FUNCTION mrl.two_stage_search(
    set_slug text,
    query text,
    k int DEFAULT 10,
    strategy text DEFAULT NULL,
    coarse_k int DEFAULT NULL,
    coarse_dim int DEFAULT NULL,
    filter jsonb DEFAULT NULL
)
RETURNS TABLE (id text, distance double precision)
LANGUAGE sql VOLATILE
SET search_path = pg_catalog, pg_temp
AS $fn$
    SELECT * FROM mrl.search(set_slug, query, k, coalesce(strategy, mrl_internal._two_stage_default(set_slug)),
                             coarse_k, coarse_dim, filter)  -- the text overload above
$fn$;

COMMENT ON FUNCTION mrl.two_stage_search(text, text, int, text, int, int, jsonb) IS
    'Two-stage search for words: coarse HNSW on the truncated vector, exact re-rank with the full vector. A vector written as text is searched as that vector.';

CREATE OR REPLACE FUNCTION mrl.search_rows(
    source anyelement,
    set_slug text,
    query text,
    k int DEFAULT 10,
    strategy text DEFAULT NULL,
    coarse_k int DEFAULT NULL,
    coarse_dim int DEFAULT NULL,
    filter jsonb DEFAULT NULL
)
RETURNS TABLE (item anyelement, distance double precision)
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pg_temp
AS $fn$
DECLARE
    v "public".vector := mrl_internal._query_vector(set_slug, query);
BEGIN
    RETURN QUERY SELECT * FROM mrl.search_rows(source, set_slug, v, k, strategy, coarse_k, coarse_dim, filter);
END
$fn$;

COMMENT ON FUNCTION mrl.search_rows(anyelement, text, text, int, text, int, int, jsonb) IS
    'mrl.search_rows for words (embedded by the sidecar with the set''s model).';

-- Query vectors of other types: halfvec, real[] and double precision[] are searched as vector (one overload each).
DO $overloads$
DECLARE
    typ text;
    conv text;
BEGIN
    FOREACH typ IN ARRAY ARRAY['"public".halfvec', 'real[]', 'double precision[]'] LOOP
        conv := CASE WHEN typ = 'double precision[]' THEN 'query::real[]::"public".vector' ELSE 'query::"public".vector' END;
        EXECUTE format($sql$
            CREATE OR REPLACE FUNCTION mrl.search(set_slug text, query %1$s, k int DEFAULT 10, strategy text DEFAULT NULL,
                                                  coarse_k int DEFAULT NULL, coarse_dim int DEFAULT NULL, filter jsonb DEFAULT NULL)
            RETURNS TABLE (id text, distance double precision) LANGUAGE sql STABLE SET search_path = pg_catalog, pg_temp
            AS 'SELECT * FROM mrl.search(set_slug, %2$s, k, strategy, coarse_k, coarse_dim, filter)';
            COMMENT ON FUNCTION mrl.search(text, %1$s, int, text, int, int, jsonb) IS 'mrl.search with a %1$s query vector.';
            CREATE OR REPLACE FUNCTION mrl.two_stage_search(set_slug text, query %1$s, k int DEFAULT 10, strategy text DEFAULT NULL,
                                                            coarse_k int DEFAULT NULL, coarse_dim int DEFAULT NULL, filter jsonb DEFAULT NULL)
            RETURNS TABLE (id text, distance double precision) LANGUAGE sql STABLE SET search_path = pg_catalog, pg_temp
            AS 'SELECT * FROM mrl.two_stage_search(set_slug, %2$s, k, strategy, coarse_k, coarse_dim, filter)';
            COMMENT ON FUNCTION mrl.two_stage_search(text, %1$s, int, text, int, int, jsonb) IS 'mrl.two_stage_search with a %1$s query vector.';
            $sql$, typ, conv);
    END LOOP;
END
$overloads$;

-- Where the database reaches the sidecar.
CREATE OR REPLACE FUNCTION mrl.configure_sidecar(url text, token text DEFAULT NULL, timeout_s numeric DEFAULT NULL)
RETURNS void
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $fn$
BEGIN
    IF url IS NULL OR url !~ '^https?://[^/\s]+/?$' THEN
        RAISE EXCEPTION 'sidecar URL % is not of the form http://host:port', coalesce(quote_literal(url), 'NULL')
            USING ERRCODE = 'invalid_parameter_value', HINT = 'e.g. http://127.0.0.1:8765';
    END IF;
    INSERT INTO mrl.settings (key, value) VALUES ('sidecar_url', rtrim(url, '/'))
        ON CONFLICT (key) DO UPDATE SET value = EXCLUDED.value, updated_at = now();
    IF token IS NOT NULL THEN
        INSERT INTO mrl.settings (key, value) VALUES ('sidecar_token', token)
            ON CONFLICT (key) DO UPDATE SET value = EXCLUDED.value, updated_at = now();
    END IF;
    IF timeout_s IS NOT NULL THEN
        IF timeout_s <= 0 OR timeout_s > 600 THEN
            RAISE EXCEPTION 'timeout_s must be in (0, 600]' USING ERRCODE = 'invalid_parameter_value';
        END IF;
        INSERT INTO mrl.settings (key, value) VALUES ('http_timeout_s', timeout_s::text)
            ON CONFLICT (key) DO UPDATE SET value = EXCLUDED.value, updated_at = now();
    END IF;
END
$fn$;

-- Where SQL reaches the sidecar's PostgreSQL-protocol endpoint (servers without plpython3u embed through dblink).
CREATE OR REPLACE FUNCTION mrl.configure_sidecar_pg(host text, port int DEFAULT 8766)
RETURNS void
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $fn$
BEGIN
    IF host IS NULL OR host !~ '^[A-Za-z0-9._:/-]+$' OR port IS NULL OR port NOT BETWEEN 1 AND 65535 THEN
        RAISE EXCEPTION 'sidecar address %:% is not a host name and a port', coalesce(host, 'NULL'), coalesce(port::text, 'NULL')
            USING ERRCODE = 'invalid_parameter_value', HINT = 'e.g. SELECT mrl.configure_sidecar_pg(''127.0.0.1'', 8766)';
    END IF;
    INSERT INTO mrl.settings (key, value) VALUES ('sidecar_pg', format('host=%s port=%s', host, port))
        ON CONFLICT (key) DO UPDATE SET value = EXCLUDED.value, updated_at = now();
END
$fn$;


-- 085_http.sql
-- The sidecar's HTTP client inside PostgreSQL (plpython3u). One keep-alive connection per backend, float32
-- vectors in binary, texts sent in chunks, a bounded timeout: a sidecar that is down is an error, never a hang.
CREATE OR REPLACE FUNCTION mrl_internal._embed_transport()
RETURNS text
LANGUAGE sql IMMUTABLE
SET search_path = pg_catalog, pg_temp
AS $fn$ SELECT 'plpython' $fn$;

CREATE OR REPLACE FUNCTION mrl_internal._http_embed(texts text[], config text, kind text)
RETURNS "public".vector[]
LANGUAGE plpython3u
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $fn$
state = GD.get("pgmrl_http")
if state is None:
    import http.client, json, socket, urllib.parse
    import numpy
    state = GD["pgmrl_http"] = {"conn": None, "target": None, "http": http.client, "json": json,
                                "np": numpy, "split": urllib.parse.urlsplit,
                                "plan": plpy.prepare("SELECT key, value FROM mrl.settings "
                                                     "WHERE key IN ('sidecar_url', 'sidecar_token', 'http_timeout_s')")}
if not texts:
    return []
settings = {r["key"]: r["value"] for r in plpy.execute(state["plan"])}
url = settings.get("sidecar_url", "http://127.0.0.1:8765").rstrip("/")
timeout = float(settings.get("http_timeout_s", "30"))
parts = state["split"](url)
target = (parts.scheme, parts.hostname, parts.port, timeout)
if state["target"] != target and state["conn"] is not None:
    state["conn"].close()
    state["conn"] = None
state["target"] = target
headers = {"Content-Type": "application/json", "Accept": "application/octet-stream"}
if settings.get("sidecar_token"):
    headers["Authorization"] = "Bearer " + settings["sidecar_token"]
hint = ("Start the sidecar with `pgmrl serve` (it records its URL in mrl.settings), "
        "or point the database at it with `pgmrl configure --sidecar-url URL`.")

def post(body):
    for attempt in (1, 2):
        if state["conn"] is None:
            cls = state["http"].HTTPSConnection if parts.scheme == "https" else state["http"].HTTPConnection
            state["conn"] = cls(parts.hostname, parts.port or (443 if parts.scheme == "https" else 80), timeout=timeout)
        try:
            state["conn"].request("POST", "/v1/embed", body=body, headers=headers)
            resp = state["conn"].getresponse()
            return resp, resp.read()
        except (state["http"].RemoteDisconnected, BrokenPipeError, ConnectionResetError) as exc:
            state["conn"].close()
            state["conn"] = None
            if attempt == 2:
                plpy.error("pgmrl sidecar at %s closed the connection (%s)" % (url, exc), hint=hint, sqlstate="08006")
        except OSError as exc:  # refused, unreachable, timed out
            state["conn"].close()
            state["conn"] = None
            plpy.error("pgmrl sidecar at %s is not reachable (%s, timeout %.0f s)" % (url, exc, timeout),
                       hint=hint, sqlstate="08001")

out = []
for start in range(0, len(texts), 128):
    chunk = list(texts[start:start + 128])
    body = state["json"].dumps({"texts": chunk, "config": config, "kind": kind, "format": "f32"})
    resp, data = post(body)
    if resp.status != 200:
        try:
            detail = state["json"].loads(data).get("detail")
        except Exception:
            detail = data[:300].decode("utf-8", "replace")
        if resp.status == 401:
            plpy.error("pgmrl sidecar at %s refused the token" % url,
                       hint="Set the sidecar's token with `pgmrl configure --token ...` (same as PGMRL_TOKEN).",
                       sqlstate="28000")
        plpy.error("pgmrl sidecar at %s answered %d: %s" % (url, resp.status, detail),
                   sqlstate="22023" if resp.status < 500 else "58000")
    dims = int(resp.getheader("X-Dims"))
    vectors = state["np"].frombuffer(data, dtype="<f4").reshape(len(chunk), dims)
    out.extend("[" + ",".join(map(repr, v.tolist())) + "]" for v in vectors)
return out
$fn$;


-- 090_privileges.sql
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
REVOKE ALL ON SCHEMA mrl, mrl_data, mrl_internal FROM PUBLIC;
GRANT USAGE ON SCHEMA mrl, mrl_data, mrl_internal TO PUBLIC;

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
    mrl_internal._create_vectors_table(text, regclass, name, text, int, int, bool),
    mrl_internal._check_chunking(jsonb, mrl.embedding_configs), mrl_internal._check_ts_config(text),
    mrl_internal._search_chunked(mrl.embedding_sets, "public".vector, int, text, int, int, jsonb),
    mrl_internal._text_ranks(mrl.embedding_sets, text, int, jsonb),
    mrl_internal._check_query(mrl.embedding_sets, "public".vector, int), mrl_internal._candidates(mrl.embedding_sets, text, int, int),
    mrl_internal._check_searchable(mrl.embedding_sets, bool), mrl_internal._stage1_distance(mrl.embedding_sets, text, int),
    mrl_internal._search_sql(text, text, text),
    mrl_internal._sample_queries(mrl.embedding_sets, int, double precision),
    mrl_internal._run_queries(text, "public".vector[], int, text, int), mrl_internal._agreement(jsonb, jsonb)
  TO PUBLIC;

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
    GRANT SELECT, UPDATE, DELETE ON mrl.queue_intake TO pgmrl_worker;
    GRANT USAGE ON SEQUENCE mrl.queue_qid_seq TO pgmrl_worker;
    GRANT SELECT ON mrl.settings TO pgmrl_worker;
    GRANT UPDATE (rotation_version, rotation_rows, rotation_fitted_at, rotation_requested_at) ON mrl.embedding_sets TO pgmrl_worker;
    GRANT SELECT, INSERT, DELETE ON mrl.rotation_components TO pgmrl_worker;
    GRANT EXECUTE ON FUNCTION
        mrl_internal._fetch_texts(int, text[]), mrl_internal._apply_batch(int, bigint[], text[], text[], "public".vector[], bool[], int[], int[], int[]),
        mrl_internal._fail_items(bigint[], text, int), mrl_internal._expand_intake(int), mrl_internal._rotation_due(),
        mrl_internal._sample_embeddings(int, int), mrl_internal._store_rotation(int, "public".vector[], double precision[], bigint),
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
    GRANT CREATE ON SCHEMA mrl_data TO pgmrl_admin;
    GRANT EXECUTE ON ALL FUNCTIONS IN SCHEMA mrl_internal TO pgmrl_admin;
    -- existing sets (created before these roles, or upgraded)
    FOR s IN SELECT vectors_table, source FROM mrl.embedding_sets e
              WHERE EXISTS (SELECT FROM pg_class c WHERE c.oid = e.source)
                AND EXISTS (SELECT FROM pg_class c WHERE c.oid = e.vectors_table AND pg_has_role(c.relowner, 'USAGE')) LOOP
        EXECUTE format('GRANT SELECT, INSERT, UPDATE, DELETE ON %s TO pgmrl_worker', s.vectors_table);
        BEGIN
            EXECUTE format('GRANT SELECT ON %s TO pgmrl_worker', s.source);
        EXCEPTION WHEN insufficient_privilege OR invalid_grant_operation THEN
            RAISE WARNING 'pgmrl: cannot grant SELECT on % to pgmrl_worker: ask its owner to', s.source;
        END;
    END LOOP;
END
$grants$;


-- 095_upgrade.sql
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
    FOR f IN SELECT p.oid FROM pg_proc p WHERE p.pronamespace = 'mrl'::regnamespace AND p.proname LIKE '\_%' LOOP
        EXECUTE format('DROP FUNCTION %s', f);
    END LOOP;
    FOR f IN SELECT pg_catalog.to_regprocedure(sig) FROM unnest(ARRAY[
                 -- before mode (a579c14)
                 'mrl.create_embedding_set(text, text, regclass, text, text, int, bool, bool, text)',
                 -- before chunking and the full-text words
                 'mrl.create_embedding_set(text, text, regclass, text, text, int, bool, bool, text, text)',
                 'mrl.alter_embedding_set(text, text, int, text)',
                 -- before owners (fe255e2)
                 'mrl_internal._may_see(regclass)',
                 -- before the exact trigger shape (fe255e2)
                 'mrl_internal._trigger_set(text, oid)'
             ]) sig WHERE pg_catalog.to_regprocedure(sig) IS NOT NULL LOOP
        EXECUTE format('DROP FUNCTION %s', f);
    END LOOP;
END
$upgrade$;


-- 098_comments.sql
-- The public API, described: `\df+ mrl.*` in psql (and \dn+ for the schemas). Every function of schema mrl has one;
-- a test checks it. Who may call what: README, "Security model".
COMMENT ON SCHEMA mrl IS 'pgmrl: embedding sets kept current by triggers and searched in two stages (public API)';
COMMENT ON FUNCTION mrl.sql_embedding_available() IS
    'Whether SQL can embed text here (plpython3u installed the sidecar client): mrl.embed, text searches, sync mode.';
COMMENT ON FUNCTION mrl.coarse_of(int, "public".vector, int) IS
    'The coarse (truncated, normalised) vector of a full vector, exactly as the set stores it (MRL prefix or fitted rotation).';
COMMENT ON FUNCTION mrl.create_embedding_set(text, text, regclass, text, text, int, bool, bool, text, text, jsonb, text) IS
    'Creates an embedding set over a table you own: validates the text (column or built-in expression), creates the vectors table, triggers and queues existing rows. chunking: NULL (one vector per row), "tokens" or "paragraphs" (with size and overlap in tokens); text_search_config: the language of its full-text words. Needs pgmrl_admin.';
COMMENT ON FUNCTION mrl.vectors_table(text) IS 'The vectors table of a set (in schema mrl_data).';
COMMENT ON FUNCTION mrl.drop_embedding_set(text) IS 'Drops a set: its triggers, queued items and vectors (the source table stays).';
COMMENT ON FUNCTION mrl.refit_rotation(text) IS 'Asks the sidecar to refit a set''s PCA rotation (non-MRL models); `pgmrl refit` does it at once.';
COMMENT ON FUNCTION mrl.alter_embedding_set(text, text, int, text, jsonb, text) IS
    'Re-embeds a set with another model, coarse dimension, chunking or text search configuration in the background; the old vectors serve until the new ones are complete.';
COMMENT ON FUNCTION mrl.switch_embedding_set(text, bool) IS 'Switches a finished re-embedding in, atomically (the sidecar does it by itself).';
COMMENT ON FUNCTION mrl.search(text, "public".vector, int, text, int, int, jsonb) IS
    'Searches a set with a query vector: strategy two_stage (default), binary_two_stage, hnsw, coarse or exact; optional JSON equality filter on source columns. Returns ids (as text) and cosine distances.';
COMMENT ON FUNCTION mrl.two_stage_search(text, "public".vector, int, text, int, int, jsonb) IS
    'Two-stage search with a query vector: coarse HNSW on the truncated vector (coarse_k candidates), exact re-rank with the full vector.';
COMMENT ON FUNCTION mrl.create_full_index(text, int, int) IS 'Builds the full-dimension HNSW index (strategy hnsw).';
COMMENT ON FUNCTION mrl.add_binary_index(text, int, int) IS 'Builds the binary-quantised HNSW index (strategy binary_two_stage).';
COMMENT ON FUNCTION mrl.add_coarse_index(text, int, int, int) IS 'Builds an HNSW index on a shorter coarse prefix (coarse_dim), or rebuilds the coarse one with other m.';
COMMENT ON FUNCTION mrl.search_indexes(text) IS 'The search indexes of a set, with their parameters and sizes.';
COMMENT ON FUNCTION mrl.configure_search(text, text, int, int, int) IS 'Sets a set''s default strategy, coarse_k, ef_search (1-1000) and binary coarse_k.';
COMMENT ON FUNCTION mrl.measure_recall(text, int, int, text, int, double precision) IS
    'Self-measured agreement of approximate with exact search on noisy stored vectors, with latencies.';
COMMENT ON FUNCTION mrl.tune(text, double precision, int, int, text, double precision) IS
    'Finds and stores the smallest coarse_k (and ef_search) that reaches the target agreement.';
COMMENT ON FUNCTION mrl.set_status(text) IS 'Rows, embedded vectors, queued and failed items of a set.';
COMMENT ON FUNCTION mrl.retry_failed(text) IS 'Puts a set''s dead-lettered items back in the queue.';
COMMENT ON FUNCTION mrl.recommend_config(bool, bool, bool, bool, bool, bool) IS 'The model selection guide: which embedding config to use, and why.';
COMMENT ON FUNCTION mrl.set_documents(text) IS 'The texts a set embeds (id, body), for fine-tuning and inspection; needs SELECT on the source.';
COMMENT ON FUNCTION mrl.set_document_pairs(text, text) IS
    'Real query-document pairs for fine-tuning: each row''s text (body) with a query taken from its own column or expression (checked like a set''s text expression); runs as the caller.';
COMMENT ON FUNCTION mrl.set_embeddings(text, text[]) IS 'The stored full vectors of the given rows of a set (a chunked set: each row''s first chunk; rows of sources the caller may read).';
COMMENT ON FUNCTION mrl.embed(text, text, text) IS
    'Embeds text through the sidecar (plpython3u, or dblink to its PostgreSQL-protocol endpoint), with the config''s query or document prefix. Refuses a vector written as text.';
COMMENT ON FUNCTION mrl.configure_sidecar(text, text, numeric) IS 'Where SQL reaches the sidecar (URL, token, timeout); the schema owner''s.';
COMMENT ON FUNCTION mrl.configure_sidecar_pg(text, int) IS 'Where SQL reaches the sidecar''s PostgreSQL-protocol endpoint (dblink, servers without plpython3u); the schema owner''s.';
COMMENT ON FUNCTION mrl.search_rows(anyelement, text, "public".vector, int, text, int, int, jsonb) IS
    'The source rows themselves (typed, in rank order) with their distance: SELECT (r.item).*, r.distance FROM mrl.search_rows(NULL::docs, ''docs'', query) r.';
COMMENT ON FUNCTION mrl.search_chunks(text, "public".vector, int, text, int, int, jsonb) IS
    'mrl.search with the best chunk of each row: its number and character offsets [start_char, end_char) in the row''s text.';
COMMENT ON FUNCTION mrl.search_chunks(text, text, int, text, int, int, jsonb) IS
    'mrl.search_chunks for words (embedded by the sidecar with the set''s model).';
COMMENT ON FUNCTION mrl.hybrid_search(text, text, "public".vector, int, double precision, double precision, int, int, jsonb, text) IS
    'Full-text words (websearch syntax, the set''s text search configuration) and two-stage dense search fused by reciprocal rank fusion; both ranks and the fused score per row. query_vector NULL: the sidecar embeds query_text.';
COMMENT ON FUNCTION mrl.text_search(text, text, int, jsonb) IS
    'The full-text leg of mrl.hybrid_search alone: rows holding the query''s words, rare words weighing most.';


INSERT INTO mrl.install_record (functions_digest, pgmrl_version) VALUES ('5cce04d02ed82acc7e3d2722bf842f2c4f527227c1523164e1bf4d414b6f0e5e', '0.1.0')
ON CONFLICT (singleton) DO UPDATE SET functions_digest = EXCLUDED.functions_digest, pgmrl_version = EXCLUDED.pgmrl_version, installed_at = now();
