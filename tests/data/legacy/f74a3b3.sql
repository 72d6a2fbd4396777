-- pgmrl install script as built at commit f74a3b3 (default variant), by scripts/make_legacy_schemas.py. Do not edit.
-- pgmrl install script (generated). Safe to run again: migrations are recorded in mrl.migrations.

DO $check$ BEGIN IF NOT EXISTS (SELECT FROM pg_extension WHERE extname = 'vector') THEN RAISE EXCEPTION 'pgmrl needs the pgvector extension' USING HINT = 'CREATE EXTENSION vector; (pgvector >= 0.7)'; END IF; END $check$;

CREATE SCHEMA IF NOT EXISTS mrl;

CREATE TABLE IF NOT EXISTS mrl.migrations (name text PRIMARY KEY, applied_at timestamptz NOT NULL DEFAULT now());

DO $pgmrl_run$ BEGIN
IF NOT EXISTS (SELECT FROM mrl.migrations WHERE name = '001_schema.sql') THEN
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

$pgmrl_migration$;
INSERT INTO mrl.migrations (name) VALUES ('001_schema.sql');
END IF; END $pgmrl_run$;

-- 010_lookup.sql
-- Lookups shared by every other function. Idempotent: CREATE OR REPLACE.

CREATE OR REPLACE FUNCTION mrl._set(set_slug text)
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

CREATE OR REPLACE FUNCTION mrl._config(config_name text)
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


-- 020_text_expr.sql
-- Validation of the text a set embeds: a column name or an expression over the source's columns.
-- The Python client checks expressions with a real SQL parser first; this is the server-side guard for
-- callers that go straight to SQL. It refuses anything that could run a second statement or a subquery,
-- allows only a list of plain text functions, and lets PostgreSQL itself check that the columns exist.

CREATE OR REPLACE FUNCTION mrl.allowed_text_functions()
RETURNS text[]
LANGUAGE sql IMMUTABLE
SET search_path = pg_catalog, pg_temp
AS $fn$
    SELECT ARRAY['coalesce', 'concat', 'concat_ws', 'lower', 'upper', 'initcap', 'trim', 'btrim', 'ltrim',
                 'rtrim', 'substr', 'substring', 'left', 'right', 'replace', 'nullif', 'regexp_replace',
                 'translate', 'array_to_string', 'to_char', 'format', 'length', 'repeat', 'split_part',
                 'greatest', 'least', 'jsonb_extract_path_text', 'json_extract_path_text']
$fn$;

-- Returns the SQL expression to embed (a quoted identifier when text_column names a column).
CREATE OR REPLACE FUNCTION mrl._text_expr(source regclass, text_column text)
RETURNS text
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pg_temp
AS $fn$
DECLARE
    stripped text;
    fn text;
    expr text;
BEGIN
    IF text_column IS NULL OR btrim(text_column) = '' THEN
        RAISE EXCEPTION 'text_column is empty'
            USING ERRCODE = 'invalid_parameter_value',
                  HINT = 'Name the column to embed, or give an expression such as title || '' '' || body.';
    END IF;
    -- A plain column name (exact spelling, any case).
    IF EXISTS (SELECT FROM pg_attribute a WHERE a.attrelid = source AND a.attname = text_column
                                            AND a.attnum > 0 AND NOT a.attisdropped) THEN
        expr := format('%I', text_column);
    ELSE
        -- Remove string literals and quoted identifiers, then look at what is left.
        stripped := regexp_replace(text_column, '''(?:[^'']|'''')*''', ' ', 'g');
        stripped := regexp_replace(stripped, '"(?:[^"]|"")*"', ' ', 'g');
        IF stripped ~ '[;$\\]|--|/\*|''|"' THEN
            RAISE EXCEPTION 'text expression % is not allowed: it contains a statement separator, comment, dollar quote or unbalanced quote', quote_literal(text_column)
                USING ERRCODE = 'invalid_parameter_value',
                      HINT = 'Use a single expression over the table''s columns, e.g. title || '' '' || body.';
        END IF;
        IF stripped ~* '\m(select|insert|update|delete|with|from|into|copy|execute|call|do|values|table|lateral|returning|merge)\M' THEN
            RAISE EXCEPTION 'text expression % is not allowed: subqueries and statements are refused', quote_literal(text_column)
                USING ERRCODE = 'invalid_parameter_value',
                      HINT = 'Use a single expression over the table''s columns, e.g. coalesce(title, '''') || '' '' || body.';
        END IF;
        FOR fn IN SELECT lower(m[1]) FROM regexp_matches(stripped, '([A-Za-z_][A-Za-z0-9_.]*)\s*\(', 'g') AS m LOOP
            IF NOT fn = ANY (mrl.allowed_text_functions()) AND fn NOT IN ('and', 'or', 'not', 'in', 'is', 'when', 'then', 'else', 'case', 'cast', 'as', 'like', 'ilike') THEN
                RAISE EXCEPTION 'text expression % calls %(), which is not an allowed text function', quote_literal(text_column), fn
                    USING ERRCODE = 'invalid_parameter_value',
                          HINT = format('Allowed functions: %s. Or add a generated column and embed that.',
                                        array_to_string(mrl.allowed_text_functions(), ', '));
            END IF;
        END LOOP;
        expr := text_column;
    END IF;
    -- Let PostgreSQL check names and types without reading a row.
    BEGIN
        EXECUTE format('SELECT (%s)::text FROM %s LIMIT 0', expr, source);
    EXCEPTION WHEN OTHERS THEN
        RAISE EXCEPTION 'text expression % is not valid for table %: %', quote_literal(text_column), source, SQLERRM
            USING ERRCODE = 'invalid_parameter_value',
                  HINT = format('Columns of %s: %s.', source,
                                (SELECT string_agg(quote_ident(a.attname), ', ' ORDER BY a.attnum)
                                   FROM pg_attribute a WHERE a.attrelid = source AND a.attnum > 0 AND NOT a.attisdropped));
    END;
    RETURN expr;
END
$fn$;


-- 030_sets.sql
-- Embedding sets: creation, change capture, removal, status.

-- Statement-level trigger: queues the keys of inserted rows, and of updated rows whose embedded text changed.
-- TG_ARGV[0] is the set id. Transition tables: mrl_new (INSERT, UPDATE) and mrl_old (UPDATE).
CREATE OR REPLACE FUNCTION mrl._queue_changes()
RETURNS trigger
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $fn$
DECLARE
    s mrl.embedding_sets;
    n bigint;
BEGIN
    SELECT * INTO s FROM mrl.embedding_sets WHERE id = TG_ARGV[0]::int;
    IF NOT FOUND THEN
        RETURN NULL;  -- set dropped in this transaction
    END IF;
    IF TG_OP = 'INSERT' THEN
        EXECUTE format(
            'INSERT INTO mrl.queue (set_id, id)
             SELECT $1, (%1$I)::text FROM mrl_new WHERE coalesce((%2$s)::text, '''') <> ''''',
            s.pk_column, s.text_expr) USING s.id;
    ELSE
        EXECUTE format(
            'INSERT INTO mrl.queue (set_id, id)
             SELECT $1, (n.k)::text
               FROM (SELECT %1$I AS k, (%2$s)::text AS t FROM mrl_new) n
          LEFT JOIN (SELECT %1$I AS k, (%2$s)::text AS t FROM mrl_old) o ON o.k = n.k
              WHERE o.k IS NULL OR n.t IS DISTINCT FROM o.t',
            s.pk_column, s.text_expr) USING s.id;
    END IF;
    GET DIAGNOSTICS n = ROW_COUNT;
    IF n > 0 THEN
        PERFORM pg_notify('mrl_queue', s.id::text);
    END IF;
    RETURN NULL;
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
    coarse_method text DEFAULT NULL
)
RETURNS regclass
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
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
    vname text := format('%I.%I', 'mrl_data', slug);
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
    IF EXISTS (SELECT FROM mrl.embedding_sets e WHERE e.slug = create_embedding_set.slug) THEN
        RAISE EXCEPTION 'embedding set "%" already exists', slug USING ERRCODE = 'duplicate_object',
              HINT = 'Choose another slug, or drop it first with mrl.drop_embedding_set().';
    END IF;
    IF source IS NULL THEN
        RAISE EXCEPTION 'source table is NULL' USING ERRCODE = 'null_value_not_allowed';
    END IF;
    IF (SELECT relkind FROM pg_class WHERE oid = source) NOT IN ('r', 'p') THEN
        RAISE EXCEPTION '% is not a table', source USING ERRCODE = 'wrong_object_type',
              HINT = 'An embedding set is bound to an ordinary table with a primary key.';
    END IF;
    c := mrl._config(config);

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

    expr := mrl._text_expr(source, text_column);

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
    INSERT INTO mrl.embedding_sets (name, slug, source, pk_column, pk_type, text_expr, config, dims, truncate_dim,
                                    coarse_method, on_create, on_update, vectors_table)
    VALUES (name, slug, source, pk_col, pk_typ, expr, c.name, c.dims, CASE WHEN method = 'none' THEN NULL ELSE tdim END,
            method, on_create, on_update, 'mrl.embedding_sets'::regclass)
    RETURNING id INTO set_id;

    EXECUTE format(
        'CREATE TABLE %s (
             id %s PRIMARY KEY REFERENCES %s (%I) ON DELETE CASCADE ON UPDATE CASCADE,
             embedding "public".vector(%s) NOT NULL,
             coarse "public".halfvec%s,
             content_hash text NOT NULL,
             embedded_at timestamptz NOT NULL DEFAULT now())',
        vname, pk_typ, source, pk_col, c.dims, CASE WHEN method = 'none' THEN '' ELSE format('(%s)', tdim) END);
    vt := vname::regclass;
    IF method <> 'none' THEN
        EXECUTE format('CREATE INDEX %I ON %s USING hnsw (coarse "public".halfvec_cosine_ops)', slug || '_coarse_hnsw', vt);
    END IF;
    EXECUTE format('COMMENT ON TABLE %s IS %L', vt, format('pgmrl vectors of embedding set %s (%s)', slug, c.name));
    UPDATE mrl.embedding_sets SET vectors_table = vt WHERE id = set_id;

    IF on_create THEN
        EXECUTE format('CREATE TRIGGER %I AFTER INSERT ON %s REFERENCING NEW TABLE AS mrl_new
                        FOR EACH STATEMENT EXECUTE FUNCTION mrl._queue_changes(%L)', 'mrl_' || slug || '_ins', source, set_id);
    END IF;
    IF on_update THEN
        EXECUTE format('CREATE TRIGGER %I AFTER UPDATE ON %s REFERENCING OLD TABLE AS mrl_old NEW TABLE AS mrl_new
                        FOR EACH STATEMENT EXECUTE FUNCTION mrl._queue_changes(%L)', 'mrl_' || slug || '_upd', source, set_id);
    END IF;

    -- Backfill: queue every existing row with text.
    EXECUTE format('INSERT INTO mrl.queue (set_id, id) SELECT $1, (%I)::text FROM %s WHERE coalesce((%s)::text, '''') <> ''''',
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
AS $fn$ SELECT (mrl._set(set_slug)).vectors_table $fn$;

CREATE OR REPLACE FUNCTION mrl.drop_embedding_set(set_slug text)
RETURNS void
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $fn$
DECLARE
    s mrl.embedding_sets := mrl._set(set_slug);
BEGIN
    IF EXISTS (SELECT FROM pg_class WHERE oid = s.source) THEN
        EXECUTE format('DROP TRIGGER IF EXISTS %I ON %s', 'mrl_' || s.slug || '_ins', s.source);
        EXECUTE format('DROP TRIGGER IF EXISTS %I ON %s', 'mrl_' || s.slug || '_upd', s.source);
    END IF;
    EXECUTE format('DROP TABLE IF EXISTS %s', s.vectors_table);
    DELETE FROM mrl.queue WHERE set_id = s.id;
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
    s mrl.embedding_sets := mrl._set(set_slug);
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


-- 040_search.sql
-- Search. Stage 1: HNSW on the coarse vector (query projected by mrl.coarse_of, like the documents).
-- Stage 2: exact cosine distance on the full vector, for the stage-1 candidates only.

CREATE OR REPLACE FUNCTION mrl.search(
    set_slug text,
    query "public".vector,
    k int DEFAULT 10,
    strategy text DEFAULT 'two_stage',
    coarse_k int DEFAULT NULL,
    coarse_dim int DEFAULT NULL
)
RETURNS TABLE (id text, distance double precision)
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $fn$
DECLARE
    s mrl.embedding_sets := mrl._set(set_slug);
    ck int;
    cd int;
    q_coarse "public".halfvec;
    old_ef text;
    coarse_expr text := 'v.coarse';
    allowed int[];
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
    IF k IS NULL OR k <= 0 OR k > 10000 THEN
        RAISE EXCEPTION 'k must be between 1 and 10000, got %', coalesce(k::text, 'NULL') USING ERRCODE = 'invalid_parameter_value',
              HINT = 'k is the number of results, e.g. 10.';
    END IF;
    IF strategy IS NULL OR strategy NOT IN ('two_stage', 'exact', 'coarse') THEN
        RAISE EXCEPTION 'unknown strategy %', coalesce(quote_literal(strategy), 'NULL') USING ERRCODE = 'invalid_parameter_value',
              HINT = 'Use ''two_stage'' (default), ''coarse'' or ''exact''.';
    END IF;
    ck := coalesce(coarse_k, greatest(s.default_coarse_k, k));
    IF ck < k OR ck > 100000 THEN
        RAISE EXCEPTION 'coarse_k % must be at least k (%) and at most 100000', ck, k USING ERRCODE = 'invalid_parameter_value',
              HINT = 'coarse_k is the number of stage-1 candidates re-ranked exactly; 100 is a good start.';
    END IF;
    cd := coalesce(coarse_dim, s.truncate_dim);
    IF coarse_dim IS NOT NULL THEN
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
    END IF;

    IF strategy <> 'exact' THEN
        q_coarse := mrl.coarse_of(s.id, query, cd);
        IF q_coarse IS NULL THEN
            RAISE NOTICE 'set "%" has no coarse vectors yet (%); searching exactly', s.slug,
                CASE WHEN s.coarse_method = 'none' THEN 'it stores full vectors only'
                     ELSE format('its rotation is fitted once %s rows are embedded; SELECT mrl.refit_rotation(%L) asks for it now', s.rotation_min_rows, s.slug) END;
            strategy := 'exact';
        END IF;
    END IF;

    IF strategy = 'exact' THEN
        RETURN QUERY EXECUTE format(
            'SELECT v.id::text, (v.embedding OPERATOR("public".<=>) $1)::float8 AS distance
               FROM %s v ORDER BY v.embedding OPERATOR("public".<=>) $1 LIMIT $2', s.vectors_table)
            USING query, k;
        RETURN;
    END IF;

    IF cd <> s.truncate_dim THEN
        coarse_expr := format('("public".l2_normalize("public".subvector(v.coarse, 1, %s)))::"public".halfvec(%s)', cd, cd);
    END IF;
    -- HNSW returns at most ef_search rows: raise it for this call, then put it back.
    old_ef := current_setting('hnsw.ef_search', true);
    PERFORM set_config('hnsw.ef_search', greatest(ck, coalesce(nullif(old_ef, '')::int, 40))::text, true);
    IF strategy = 'coarse' THEN
        RETURN QUERY EXECUTE format(
            'SELECT v.id::text, (%1$s OPERATOR("public".<=>) $1)::float8 AS distance
               FROM %2$s v ORDER BY %1$s OPERATOR("public".<=>) $1 LIMIT $2', coarse_expr, s.vectors_table)
            USING q_coarse, k;
    ELSE
        RETURN QUERY EXECUTE format(
            'WITH candidates AS MATERIALIZED (
                 SELECT v.id, v.embedding FROM %2$s v ORDER BY %1$s OPERATOR("public".<=>) $1 LIMIT $2)
             SELECT c.id::text, (c.embedding OPERATOR("public".<=>) $3)::float8 AS distance
               FROM candidates c ORDER BY 2 LIMIT $4', coarse_expr, s.vectors_table)
            USING q_coarse, ck, query, k;
    END IF;
    PERFORM set_config('hnsw.ef_search', coalesce(old_ef, '40'), true);
END
$fn$;

CREATE OR REPLACE FUNCTION mrl.two_stage_search(
    set_slug text,
    query "public".vector,
    k int DEFAULT 10,
    coarse_k int DEFAULT NULL,
    coarse_dim int DEFAULT NULL
)
RETURNS TABLE (id text, distance double precision)
LANGUAGE sql
SET search_path = pg_catalog, pg_temp
AS $fn$
    SELECT * FROM mrl.search(set_slug, query, k, 'two_stage', coarse_k, coarse_dim)
$fn$;


-- 050_status.sql
-- What a DBA looks at: how far each set is from being fully embedded.

CREATE OR REPLACE VIEW mrl.queue_status AS
SELECT e.slug,
       count(q.qid) FILTER (WHERE NOT q.dead)                  AS queued,
       count(q.qid) FILTER (WHERE q.dead)                      AS failed,
       clock_timestamp() - min(q.queued_at) FILTER (WHERE NOT q.dead) AS oldest_queued_age
  FROM mrl.embedding_sets e
  LEFT JOIN mrl.queue q ON q.set_id = e.id
 GROUP BY e.slug;

CREATE OR REPLACE FUNCTION mrl.set_status(set_slug text)
RETURNS TABLE (slug text, config text, coarse_method text, truncate_dim int, rows bigint, embedded bigint,
               queued bigint, failed bigint, oldest_queued_age interval, rotation_fitted_at timestamptz)
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pg_temp
AS $fn$
DECLARE
    s mrl.embedding_sets := mrl._set(set_slug);
    n_rows bigint;
    n_vec bigint;
BEGIN
    IF EXISTS (SELECT FROM pg_class WHERE oid = s.source) THEN
        EXECUTE format('SELECT count(*) FROM %s', s.source) INTO n_rows;
    END IF;
    EXECUTE format('SELECT count(*) FROM %s', s.vectors_table) INTO n_vec;
    RETURN QUERY
    SELECT s.slug, s.config, s.coarse_method, s.truncate_dim, n_rows, n_vec,
           qs.queued, qs.failed, qs.oldest_queued_age, s.rotation_fitted_at
      FROM mrl.queue_status qs WHERE qs.slug = s.slug;
END
$fn$;


-- 060_worker.sql
-- Functions the embedding worker calls. Each works inside the caller's transaction.

-- Current text of the given keys. content_hash = md5(text); stored_hash = the hash of the vector stored now
-- (so unchanged texts are not embedded again). Keys whose row is gone come back with body NULL.
CREATE OR REPLACE FUNCTION mrl._fetch_texts(set_id int, ids text[])
RETURNS TABLE (id text, body text, content_hash text, stored_hash text)
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pg_temp
AS $fn$
DECLARE
    s mrl.embedding_sets;
BEGIN
    SELECT * INTO s FROM mrl.embedding_sets e WHERE e.id = _fetch_texts.set_id;
    RETURN QUERY EXECUTE format(
        'SELECT k.id, x.body, md5(x.body), v.content_hash
           FROM unnest($1) AS k(id)
      LEFT JOIN (SELECT %1$I AS mrl_key, (%2$s)::text AS body FROM %3$s WHERE %1$I = ANY ($1::%4$s[])) x
             ON x.mrl_key = k.id::%4$s
      LEFT JOIN %5$s v ON v.id = x.mrl_key',
        s.pk_column, s.text_expr, s.source, s.pk_type, s.vectors_table) USING ids;
END
$fn$;

-- Writes a batch: vectors whose source text still has the hash they were computed from
-- (a text changed meanwhile was queued again by its UPDATE and is embedded later),
-- removes vectors of keys whose text is now NULL or empty, and deletes the claimed queue rows.
CREATE OR REPLACE FUNCTION mrl._apply_batch(set_id int, qids bigint[], ids text[], hashes text[],
                                            embeddings "public".vector[])
RETURNS bigint
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $fn$
DECLARE
    s mrl.embedding_sets;
    written bigint := 0;
BEGIN
    SELECT * INTO s FROM mrl.embedding_sets e WHERE e.id = _apply_batch.set_id FOR SHARE;
    IF NOT FOUND THEN
        RETURN 0;  -- the set was dropped
    END IF;
    IF coalesce(array_length(ids, 1), 0) > 0 THEN
        EXECUTE format(
            'INSERT INTO %1$s AS v (id, embedding, coarse, content_hash, embedded_at)
             SELECT x.mrl_key, b.embedding, %6$s, b.hash, clock_timestamp()
               FROM unnest($1, $2, $3) AS b(id, hash, embedding)
               JOIN (SELECT %2$I AS mrl_key, md5((%3$s)::text) AS mrl_hash FROM %4$s WHERE %2$I = ANY ($1::%5$s[])) x
                 ON x.mrl_key = b.id::%5$s AND x.mrl_hash = b.hash
             ON CONFLICT (id) DO UPDATE SET embedding = EXCLUDED.embedding, coarse = EXCLUDED.coarse,
                 content_hash = EXCLUDED.content_hash, embedded_at = EXCLUDED.embedded_at',
            s.vectors_table, s.pk_column, s.text_expr, s.source, s.pk_type,
            CASE WHEN s.coarse_method = 'none' THEN 'NULL' ELSE 'mrl.coarse_of($4, b.embedding)' END)
            USING ids, hashes, embeddings, s.id;
        GET DIAGNOSTICS written = ROW_COUNT;
    END IF;
    -- Texts that became NULL or empty lose their vector. Keys are those of the claimed queue rows.
    EXECUTE format(
        'DELETE FROM %1$s v USING (SELECT %2$I AS mrl_key FROM %4$s
                                    WHERE %2$I = ANY ((SELECT array_agg(q.id) FROM mrl.queue q WHERE q.qid = ANY ($1))::%5$s[])
                                      AND coalesce((%3$s)::text, '''') = '''') x
          WHERE v.id = x.mrl_key',
        s.vectors_table, s.pk_column, s.text_expr, s.source, s.pk_type) USING qids;
    DELETE FROM mrl.queue WHERE qid = ANY (qids);
    RETURN written;
END
$fn$;

-- Records a failed attempt: exponential backoff (capped), dead-lettered after max_attempts.
CREATE OR REPLACE FUNCTION mrl._fail_items(qids bigint[], error text, max_attempts int DEFAULT 5)
RETURNS void
LANGUAGE sql
SET search_path = pg_catalog, pg_temp
AS $fn$
    UPDATE mrl.queue
       SET attempts = attempts + 1,
           last_error = left(error, 2000),
           next_attempt_at = clock_timestamp() + least(interval '1 second' * power(2, attempts + 1), interval '10 minutes'),
           dead = attempts + 1 >= max_attempts
     WHERE qid = ANY (qids)
$fn$;


-- 065_rotation.sql
-- The fitted rotation of non-MRL sets. The sidecar fits it (numpy SVD) and stores it with
-- mrl._store_rotation(), which rewrites every coarse vector in the same transaction.

-- Sets whose rotation should be (re)fitted now: asked for, or first reaching rotation_min_rows embedded rows,
-- or grown to twice the rows of the last fit. Never while the set still has queued work (except when asked).
CREATE OR REPLACE FUNCTION mrl._rotation_due()
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
        CONTINUE WHEN EXISTS (SELECT FROM mrl.queue q WHERE q.set_id = s.id AND NOT q.dead);
        EXECUTE format('SELECT count(*) FROM %s', s.vectors_table) INTO n;
        IF (s.rotation_version = 0 AND n >= s.rotation_min_rows)
           OR (s.rotation_version > 0 AND n >= 2 * s.rotation_rows) THEN
            RETURN NEXT s.id;
        END IF;
    END LOOP;
END
$fn$;

-- Up to `sample` stored full vectors of a set (all of them when there are fewer), for fitting.
CREATE OR REPLACE FUNCTION mrl._sample_embeddings(set_id int, sample int DEFAULT 50000)
RETURNS SETOF "public".vector
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pg_temp
AS $fn$
DECLARE
    vt regclass := (SELECT vectors_table FROM mrl.embedding_sets e WHERE e.id = _sample_embeddings.set_id);
BEGIN
    RETURN QUERY EXECUTE format('SELECT embedding FROM %s ORDER BY md5(id::text) LIMIT $1', vt) USING sample;
END
$fn$;

CREATE OR REPLACE FUNCTION mrl._store_rotation(set_id int, directions "public".vector[],
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
    -- Rewrite the coarse vectors; rebuilding the index once is cheaper than updating it row by row.
    idx := s.slug || '_coarse_hnsw';
    EXECUTE format('DROP INDEX IF EXISTS mrl_data.%I', idx);
    EXECUTE format('UPDATE %s SET coarse = mrl.coarse_of($1, embedding)', s.vectors_table) USING s.id;
    EXECUTE format('CREATE INDEX %I ON %s USING hnsw (coarse "public".halfvec_cosine_ops)', idx, s.vectors_table);
END
$fn$;


-- 070_configs.sql
-- The models of the embedding model selection guide. Re-running the install refreshes these rows;
-- configs that users register (builtin = false) are never touched.
INSERT INTO mrl.embedding_configs AS c
       (name, model, provider, dims, supports_mrl, matryoshka_dims, default_truncate_dim,
        query_prefix, document_prefix, max_seq_length, params_millions, best_for, aliases, builtin)
VALUES
    ('all-minilm-l6-v2', 'sentence-transformers/all-MiniLM-L6-v2', 'sentence-transformers', 384, false, NULL, NULL,
     '', '', 256, 22.7, 'fast general English search; first stage before LLM re-ranking; bundled, works offline',
     '{all-minilm,minilm,all-minilm-l6}', true),
    ('nomic-embed-text-v1.5', 'nomic-ai/nomic-embed-text-v1.5', 'sentence-transformers', 768, true,
     '{768,512,256,128,64}', 256, 'search_query: ', 'search_document: ', 8192, 137,
     'storage-optimised search with Matryoshka truncation; long documents', '{nomic-embed-text,nomic}', true),
    ('mxbai-embed-large-v1', 'mixedbread-ai/mxbai-embed-large-v1', 'sentence-transformers', 1024, true,
     '{1024,512,256,128,64}', 512, 'Represent this sentence for searching relevant passages: ', '', 512, 335,
     'high-quality English search with Matryoshka truncation', '{mxbai-embed-large,mxbai}', true),
    ('bge-large-en-v1.5', 'BAAI/bge-large-en-v1.5', 'sentence-transformers', 1024, false, NULL, NULL,
     'Represent this sentence for searching relevant passages: ', '', 512, 335,
     'high-quality general English retrieval', '{bge-large-en,bge-large}', true),
    ('e5-mistral-7b', 'intfloat/e5-mistral-7b-instruct', 'sentence-transformers', 4096, false, NULL, NULL,
     E'Instruct: Given a web search query, retrieve relevant passages that answer the query\nQuery: ', '', 4096, 7111,
     'best quality when a GPU is available; base for domain fine-tuning', '{e5-mistral,e5-mistral-7b-instruct}', true),
    ('multilingual-e5-large', 'intfloat/multilingual-e5-large', 'sentence-transformers', 1024, false, NULL, NULL,
     'query: ', 'passage: ', 512, 560, 'multilingual and CJK search', '{multilingual-e5}', true),
    ('gte-large-en-v1.5', 'Alibaba-NLP/gte-large-en-v1.5', 'sentence-transformers', 1024, false, NULL, NULL,
     '', '', 8192, 434, 'domain-specific search after fine-tuning; long context', '{gte-large-en,gte-large}', true)
ON CONFLICT (name) DO UPDATE
   SET model = EXCLUDED.model, provider = EXCLUDED.provider, dims = EXCLUDED.dims,
       supports_mrl = EXCLUDED.supports_mrl, matryoshka_dims = EXCLUDED.matryoshka_dims,
       default_truncate_dim = EXCLUDED.default_truncate_dim, query_prefix = EXCLUDED.query_prefix,
       document_prefix = EXCLUDED.document_prefix, max_seq_length = EXCLUDED.max_seq_length,
       params_millions = EXCLUDED.params_millions, best_for = EXCLUDED.best_for, aliases = EXCLUDED.aliases
 WHERE c.builtin;

