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
-- A row holds only what a search reads (the full and coarse vectors) and what the worker checks: stage 1 and 2 of a
-- two-stage search read one row per candidate, so the fewer bytes, the fewer pages when memory is short. The
-- full-text words live in the set's words table (below).
-- full_type: the full vector's type, 'vector' or 'halfvec' (mrl_internal._check_full_type).
DROP FUNCTION IF EXISTS mrl_internal._create_vectors_table(text, regclass, name, text, int, int);
DROP FUNCTION IF EXISTS mrl_internal._create_vectors_table(text, regclass, name, text, int, int, bool);
CREATE OR REPLACE FUNCTION mrl_internal._create_vectors_table(slug text, source regclass, pk_col name, pk_typ text,
                                                              dims int, tdim int, chunked bool, full_type text)
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
             embedding @vec@.%s(%s) NOT NULL,
             coarse @vec@.halfvec%s,
             content_hash text NOT NULL,
             embedded_at timestamptz NOT NULL DEFAULT now(),
             truncated bool NOT NULL DEFAULT false,
             PRIMARY KEY (id%s))',
        vname, pk_typ, source, pk_col,
        CASE WHEN chunked THEN '
             chunk int NOT NULL CHECK (chunk >= 0),
             start_char int NOT NULL,
             end_char int NOT NULL,' ELSE '' END,
        mrl_internal._check_full_type(full_type), dims, CASE WHEN tdim IS NULL THEN '' ELSE format('(%s)', tdim) END,
        CASE WHEN chunked THEN ', chunk' ELSE '' END);
    -- the vectors stay in the row (compressed or moved out of line only if the row would not fit in a page): a re-rank
    -- reads them for every candidate
    EXECUTE format('ALTER TABLE %s ALTER COLUMN embedding SET STORAGE MAIN, ALTER COLUMN coarse SET STORAGE MAIN', vname);
    RETURN vname::regclass;
END
$fn$;

-- The full-text words (tsv) of each row (or chunk) of a set's vectors, for mrl.hybrid_search: mrl_words.<slug>, one
-- row per vectors row, deleted and re-keyed with it; GIN-indexed.
CREATE OR REPLACE FUNCTION mrl_internal._create_words_table(slug text, vt regclass, pk_typ text, chunked bool)
RETURNS regclass
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $fn$
DECLARE
    wname text := format('%I.%I', 'mrl_words', slug);
    key text := CASE WHEN chunked THEN 'id, chunk' ELSE 'id' END;
BEGIN
    EXECUTE format('CREATE TABLE %1$s (id %2$s NOT NULL,%3$s tsv tsvector NOT NULL, PRIMARY KEY (%4$s),
                                       FOREIGN KEY (%4$s) REFERENCES %5$s ON DELETE CASCADE ON UPDATE CASCADE)',
                   wname, pk_typ, CASE WHEN chunked THEN ' chunk int NOT NULL,' ELSE '' END, key, vt);
    EXECUTE format('CREATE INDEX %I ON %s USING gin (tsv)', slug || '_fts', wname);
    RETURN wname::regclass;
END
$fn$;

-- How a set keeps its full vectors: 'halfvec' (2 bytes a dimension: stage 2 of a two-stage search reads half the
-- pages, and cosine ranking barely changes; scripts/bench_scale.py) or 'vector' (4 bytes, pgvector's default type).
CREATE OR REPLACE FUNCTION mrl_internal._check_full_type(full_type text)
RETURNS text
LANGUAGE plpgsql IMMUTABLE
SET search_path = pg_catalog, pg_temp
AS $fn$
BEGIN
    IF full_type IS NULL OR full_type NOT IN ('halfvec', 'vector') THEN
        RAISE EXCEPTION 'unknown full_type %', coalesce(quote_literal(full_type), 'NULL') USING ERRCODE = 'invalid_parameter_value',
              HINT = 'Use ''halfvec'' (half the storage, the default) or ''vector'' (single precision).';
    END IF;
    RETURN full_type;
END
$fn$;

-- How a set cuts its texts: NULL (one vector per row, from its beginning) or a checked, completed JSON object
--   {"method": "tokens" | "paragraphs" | "sections", "size": tokens per chunk, "overlap": tokens shared by
--   neighbours} (pgmrl/chunking.py says how each method cuts).
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
    IF jsonb_typeof(chunking) <> 'object' OR method IS NULL OR method NOT IN ('tokens', 'paragraphs', 'sections')
       OR EXISTS (SELECT FROM jsonb_object_keys(chunking) k WHERE k NOT IN ('method', 'size', 'overlap')) THEN
        RAISE EXCEPTION 'invalid chunking %', chunking USING ERRCODE = 'invalid_parameter_value',
              HINT = 'Use NULL (no chunking), ''"tokens"'', ''"paragraphs"'', ''"sections"'' or e.g. ''{"method": "tokens", "size": 256, "overlap": 32}''.';
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
